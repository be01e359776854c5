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
    /// Download a file the way `boot` downloads the image: retries with backoff, resume,
    /// mirrors, SHA-256 and minisign verification. The file appears only once verified.
    Fetch(Box<FetchArgs>),
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
#[command(
    after_help = "Exit status: 0 verified and written, 2 bad option, 3 transfer failed, 4 verification failed.\n\
Example: rustlive fetch --sha256 HEX -o /run/img http://mirror1/img http://mirror2/img"
)]
pub struct FetchArgs {
    /// Write the file here (bytes go to FILE.part until verified).
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// Mirrors of the same file, tried in order and rotated on failure (http, https, file).
    #[arg(required = true, value_name = "URL", value_parser = fetchable_url)]
    pub urls: Vec<reqwest::Url>,
    /// Expected SHA-256 (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = crate::values::parse_sha256)]
    pub sha256: Option<crate::values::Sha256Hex>,
    /// A sha256sum-format list; the line naming the file is used.
    #[arg(long, value_name = "URL", value_parser = fetchable_url)]
    pub sha256sums: Option<reqwest::Url>,
    /// Minisign signature URL (default URL.minisig when a key is given).
    #[arg(long, value_name = "URL", value_parser = fetchable_url)]
    pub sig: Option<reqwest::Url>,
    /// Trusted minisign public key file; repeatable. Any key makes a valid signature required.
    #[arg(long, value_name = "FILE")]
    pub pubkey: Vec<std::path::PathBuf>,
    /// Also trust every *.pub in this directory (boot uses /etc/rustlive/keys).
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<std::path::PathBuf>,
    /// Retries after the first attempt (default: unlimited within --timeout).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Overall deadline, e.g. 300, 5m (default: none).
    #[arg(long, value_name = "SECS", value_parser = crate::values::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Abort and resume an attempt that received nothing for this long.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::values::parse_duration)]
    pub stall: std::time::Duration,
    /// PEM CA bundle for https (default: /etc/rustlive/ca.pem, then the system bundle).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Do not verify the server certificate (a hash or signature still applies).
    #[arg(long)]
    pub insecure_tls: bool,
    /// HTTP proxy, e.g. http://proxy:3128.
    #[arg(long, value_name = "URL", value_parser = proxy_url)]
    pub proxy: Option<reqwest::Url>,
    /// Refuse to write a file that no hash or signature covers.
    #[arg(long)]
    pub require_verified: bool,
    /// Log retries and resumes in detail.
    #[arg(long)]
    pub debug: bool,
}

fn fetchable_url(s: &str) -> Result<reqwest::Url, String> {
    crate::values::parse_url(s, crate::values::Schemes::Fetchable)
}

fn proxy_url(s: &str) -> Result<reqwest::Url, String> {
    crate::values::parse_url(s, crate::values::Schemes::Http)
}

/// Parses the process arguments, runs the subcommand and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (target, debug) = match &cli.command {
        Command::Config(_) => (crate::log::Target::Stderr, false),
        Command::Fetch(a) => (crate::log::Target::Stderr, a.debug),
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
        Command::Fetch(a) => Ok(crate::fetch::command::run(&a)?),
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
