//! The `rustlive` command line: one subcommand per stage, so an operator can run any stage by
//! hand on a node (or a benchmark can run it alone), plus `boot`, which runs them all.

use crate::boot::Error;
use crate::config::Config;
use crate::error::{report, Exit};
use crate::paths::Paths;
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
    /// Mount a root image read-only under a tmpfs overlay on NEWROOT and check it can boot.
    Assemble(AssembleArgs),
    /// Move /dev, /proc, /sys and /run into NEWROOT, make it the root, free the initramfs and
    /// execute INIT (for an initramfs without systemd).
    SwitchRoot(SwitchRootArgs),
    /// Download a file the way `boot` downloads the image: retries with backoff, resume,
    /// mirrors, SHA-256 and minisign verification. The file appears only once verified.
    Fetch(Box<FetchArgs>),
    /// The node's TPM: `tpm ek` prints its endorsement key for enrollment.
    #[command(subcommand)]
    Tpm(TpmCommand),
    /// Secrets bundles on the boot server: `bundle seal` encrypts one to a node's TPM.
    #[command(subcommand)]
    Bundle(BundleCommand),
}

#[derive(Debug, Subcommand)]
pub enum TpmCommand {
    /// Print the TPM's endorsement keys (TCG default templates RSA 2048 and ECC P-256: the
    /// persistent one when provisioned, else created as a primary), their certificates from
    /// NV when present, the node's MACs and DMI UUID: what the site records to seal to it.
    Ek(TpmEkArgs),
}

#[derive(Debug, Args)]
pub struct TpmEkArgs {
    /// Print JSON instead of text and PEM.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Seal a plain bundle (JSON) to a node's EK: only that node's TPM can open the result,
    /// which may then be served over plain http.
    Seal(BundleSealArgs),
}

#[derive(Debug, Args)]
pub struct BundleSealArgs {
    /// The node's EK: a PEM public key (`rustlive tpm ek`, `tpm2_createek -f pem`) or its EK
    /// certificate (PEM or DER).
    #[arg(long, value_name = "EK")]
    pub ek: std::path::PathBuf,
    /// The plain bundle (JSON, format 1).
    #[arg(value_name = "IN")]
    pub input: std::path::PathBuf,
    /// Where the sealed bundle is written.
    #[arg(short, long, value_name = "OUT")]
    pub output: std::path::PathBuf,
    /// Also require these SHA-256 PCR values on the node (`N=HEX[,N=HEX…]`, as
    /// `rustlive tpm ek` prints them; e.g. PCR 7, the Secure Boot state).
    #[arg(long, value_name = "N=HEX,…")]
    pub pcr: Option<String>,
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
        let bytes = crate::boot::read_cmdline(self.cmdline.as_deref(), &Paths::system())?;
        Ok(Config::from_cmdline_bytes(&bytes)?)
    }
}

#[derive(Debug, Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub cmdline: CmdlineArg,
    /// Where the new root is assembled.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    pub sysroot: std::path::PathBuf,
    /// Switch into the new root and exec its init once it is ready (implied when rustlive is
    /// PID 1; under dracut, the initramfs's own switch-root does this).
    #[arg(long)]
    pub switch_root: bool,
}

#[derive(Debug, Args)]
pub struct AssembleArgs {
    #[command(flatten)]
    pub cmdline: CmdlineArg,
    /// The root image: squashfs, erofs or ext2/3/4, or a squashfs holding LiveOS/rootfs.img.
    #[arg(long, value_name = "FILE")]
    pub image: std::path::PathBuf,
    /// Where the new root is mounted.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    pub newroot: std::path::PathBuf,
    /// Size of the writable tmpfs layer (bytes, K/M/G/T suffix, or N% of RAM); default from
    /// rd.rustlive.overlay.size, else 50%.
    #[arg(long, value_name = "SIZE", value_parser = crate::values::parse_size)]
    pub overlay_size: Option<crate::values::Size>,
    /// Then switch into the new root and execute its init (rd.rustlive.init, init=, or
    /// /sbin/init), as `rustlive switch-root` does.
    #[arg(long)]
    pub switch_root: bool,
}

#[derive(Debug, Args)]
pub struct SwitchRootArgs {
    /// The new root; must be a mount point.
    #[arg(value_name = "NEWROOT")]
    pub newroot: std::path::PathBuf,
    /// The init to execute, inside NEWROOT; default from rd.rustlive.init= or init= on the
    /// kernel command line, else /sbin/init.
    #[arg(value_name = "INIT")]
    pub init: Option<std::path::PathBuf>,
    /// Arguments for INIT.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
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
    #[arg(long, value_name = "URL", value_parser = crate::url_template::UrlTemplate::parse)]
    pub source: Option<crate::url_template::UrlTemplate>,
    /// MAC address substituted for {mac} (xx:xx:xx:xx:xx:xx).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
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
    // As the initramfs's /init, nothing has mounted /proc or /dev or loaded drivers yet.
    let pid1 = crate::pid1::is_pid1();
    let early_warnings = if pid1 {
        crate::pid1::prepare()
    } else {
        Vec::new()
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // As /init, argv holds whatever words of the kernel command line the kernel did not
        // recognise (`single`, `3`): they are not ours, and exiting would panic the kernel.
        Err(_) if pid1 => Cli::parse_from(["rustlive", "boot"]),
        Err(e) => e.exit(),
    };
    // Booting a node logs to the kernel log (console and journal); a command run by hand
    // answers on stderr.
    let target = match &cli.command {
        Command::Boot(_) => crate::log::Target::Kmsg,
        _ if pid1 => crate::log::Target::Kmsg,
        _ => crate::log::Target::Stderr,
    };
    let debug = matches!(&cli.command, Command::Fetch(a) if a.debug);
    crate::log::init(target, debug);
    if pid1 || matches!(cli.command, Command::Boot(_)) {
        crate::panic_hook::install(pid1);
    }
    if pid1 {
        for w in early_warnings {
            log::warn!("{w}");
        }
        crate::pid1::load_modules();
    }
    let result = match cli.command {
        // boot reports its own errors: it must do so before its failure policy reboots.
        Command::Boot(a) => {
            return crate::boot::main(&crate::boot::Request {
                cmdline: a.cmdline.cmdline,
                sysroot: a.sysroot,
                switch_root: a.switch_root,
                pid1,
                paths: Paths::system(),
            })
        }
        Command::InjectSecrets(a) => inject_secrets(&a),
        Command::Fetch(a) => crate::fetch::command::run(&a).map_err(Error::from),
        Command::Config(a) => config(&a),
        Command::Assemble(a) => assemble(&a),
        Command::SwitchRoot(a) => switch_root(a),
        Command::Tpm(TpmCommand::Ek(a)) => {
            crate::tpm::command::ek_command(a.json, &Paths::system()).map_err(Error::from)
        }
        Command::Bundle(BundleCommand::Seal(a)) => {
            crate::tpm::command::seal_command(&a.ek, &a.input, &a.output, a.pcr.as_deref())
                .map_err(Error::from)
        }
    };
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("{}", report(&e));
            if pid1 {
                crate::pid1::halt(std::time::Duration::from_secs(5));
            }
            e.exit_code().into()
        }
    }
}

/// `rustlive inject-secrets`.
fn inject_secrets(a: &InjectSecretsArgs) -> Result<(), Error> {
    let mut cfg = a.cmdline.load()?;
    cfg.announce();
    if let Some(s) = &a.source {
        cfg.secrets.source = Some(s.clone());
    }
    let paths = Paths::system();
    let facts = crate::secrets::NodeFacts::gather(&paths, a.mac.clone());
    crate::secrets::apply(&cfg, &a.root, &facts, &paths)?;
    Ok(())
}

fn config(a: &ConfigArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    let json = serde_json::to_string_pretty(&cfg).expect("config serializes");
    println!("{json}");
    Ok(())
}

fn assemble(a: &AssembleArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    let mut opts = crate::mount::AssembleOptions::from_config(&cfg);
    if let Some(size) = a.overlay_size {
        opts.overlay_size = size;
    }
    let root = crate::mount::assemble(&a.image, &a.newroot, &opts)?;
    root.persist();
    if a.switch_root {
        let never = crate::switchroot::switch_root(&a.newroot, &opts.init, &[])?;
        match never {}
    }
    Ok(())
}

fn switch_root(a: SwitchRootArgs) -> Result<(), Error> {
    let init = match a.init {
        Some(i) => i,
        None => CmdlineArg { cmdline: None }.load()?.root.init,
    };
    let never = crate::switchroot::switch_root(&a.newroot, &init, &a.args)?;
    match never {}
}
