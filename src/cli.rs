//! The `rustlive` command line: one subcommand per stage, so an operator can run any stage by
//! hand on a node (or a benchmark can run it alone), plus `boot`, which runs them all.

use crate::config::Config;
use crate::error::{report, Error, Exit};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "rustlive",
    version,
    about = "Netboot a diskless node: fetch, verify and assemble a live root image from the initramfs",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initramfs entry point: read the kernel command line and, when an image source is
    /// configured, fetch, verify and assemble the root and install the node's secrets.
    Boot(BootArgs),
    /// Print the effective configuration parsed from the kernel command line as JSON.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct CmdlineArg {
    /// Parse this string instead of /proc/cmdline.
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,
}

impl CmdlineArg {
    /// The configuration from `--cmdline` or `/proc/cmdline`.
    pub fn load(&self) -> Result<Config, Error> {
        Ok(match &self.cmdline {
            Some(s) => Config::from_cmdline(s)?,
            None => Config::from_proc().map_err(Error::ReadCmdline)??,
        })
    }
}

#[derive(Debug, Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub cmdline: CmdlineArg,
    /// Where the new root is assembled.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    pub sysroot: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub cmdline: CmdlineArg,
}

/// Parses the process arguments, runs the subcommand and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (target, debug) = match &cli.command {
        Command::Config(_) => (crate::log::Target::Stderr, false),
        _ => (crate::log::Target::Auto, false),
    };
    crate::log::init(target, debug);
    match run(cli.command) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("{}", report(&e));
            e.exit_code().into()
        }
    }
}

fn run(cmd: Command) -> Result<(), Error> {
    match cmd {
        Command::Boot(a) => crate::boot::run(&a),
        Command::Config(a) => {
            let cfg = a.cmdline.load()?;
            for w in &cfg.warnings {
                log::warn!("{w}");
            }
            let json = serde_json::to_string_pretty(&cfg).expect("config serializes");
            println!("{json}");
            Ok(())
        }
    }
}
