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
    /// Install the node's secrets bundle into an assembled root (`boot` runs this step after
    /// assembling the root, before switch-root).
    ///
    /// The bundle (format: secrets.md) comes from --source, else rd.rustlive.secrets, else
    /// /rustlive/secrets.json when it exists. It is validated as a whole before anything is
    /// written; files are created with their final mode and owner, never through a symlink.
    /// A file:// source and /rustlive/secrets.json are overwritten and removed afterwards.
    /// Exit code 6 when the bundle cannot be fetched or applied (unless
    /// rd.rustlive.secrets.required=0).
    #[command(
        name = "inject-secrets",
        after_long_help = "Example, by hand on a node:\n  rustlive inject-secrets --root /sysroot \\\n    --source 'https://boot.example/secrets/{uuid}.json' \\\n    --cmdline 'rd.rustlive.ca=/etc/rustlive/ca.pem rd.rustlive.secrets.cert=/etc/rustlive/node.crt rd.rustlive.secrets.key=/etc/rustlive/node.key'"
    )]
    InjectSecrets(InjectSecretsArgs),
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

#[derive(Debug, Args)]
pub struct InjectSecretsArgs {
    #[command(flatten)]
    pub cmdline: CmdlineArg,
    /// The assembled root to write into (e.g. /sysroot).
    #[arg(long, value_name = "DIR")]
    pub root: std::path::PathBuf,
    /// Bundle source, overriding rd.rustlive.secrets: https://…, file:///…, or http://… when
    /// rd.rustlive.secrets.sha256 pins it. {mac}, {uuid} and {hostname} are substituted.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// MAC address substituted for {mac} (xx:xx:xx:xx:xx:xx).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
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
        Command::InjectSecrets(a) => crate::secrets::run_cli(&a),
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
