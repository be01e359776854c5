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
    /// Mount a root image read-only under a tmpfs overlay on NEWROOT and check it can boot.
    Assemble(AssembleArgs),
    /// Move /dev, /proc, /sys and /run into NEWROOT, make it the root, free the initramfs and
    /// execute INIT (for an initramfs without systemd).
    SwitchRoot(SwitchRootArgs),
    /// Download a file the way `boot` downloads the image: retries with backoff, resume,
    /// mirrors, SHA-256 and minisign verification. The file appears only once verified.
    Fetch(Box<FetchArgs>),
    /// Build a standalone netboot initramfs (no dracut): rustlive as /init, the kernel
    /// modules for the image filesystems and the usual server NICs with their dependencies and
    /// firmware, the CA bundle and minisign keys. Deterministic: same inputs, same bytes.
    Initramfs(Box<InitramfsArgs>),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: rustlive initramfs -o /srv/tftp/rustlive.img --kver 6.1.0-57-amd64 --add-drivers bonding"
)]
pub struct InitramfsArgs {
    /// Write the initramfs here.
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// Kernel version (default: the running kernel's).
    #[arg(long, value_name = "KVER")]
    pub kver: Option<String>,
    /// The kernel's modules directory, lib/modules/KVER (default /lib/modules/KVER).
    #[arg(long, value_name = "DIR")]
    pub kmoddir: Option<std::path::PathBuf>,
    /// Extra kernel modules (comma-separated, repeatable), with their dependencies.
    #[arg(long, value_name = "M,…", value_delimiter = ',')]
    pub add_drivers: Vec<String>,
    /// Replace the default NIC driver set (virtio_net e1000 e1000e igb igc ixgbe i40e ice
    /// bnxt_en tg3 mlx4_en mlx5_core) with these.
    #[arg(long, value_name = "M,…", value_delimiter = ',')]
    pub net_drivers: Option<Vec<String>>,
    /// Where the firmware the modules declare is looked up.
    #[arg(long, value_name = "DIR", default_value = "/lib/firmware")]
    pub firmware_dir: std::path::PathBuf,
    /// PEM CA bundle for https (default: /etc/rustlive/ca.pem, else the distribution's bundle).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<std::path::PathBuf>,
    /// Directory of trusted minisign keys (*.pub); any key makes signatures mandatory.
    #[arg(long, value_name = "DIR", default_value = crate::initramfs::KEYS_DEFAULT)]
    pub keys: std::path::PathBuf,
    /// A static shell installed as /bin/sh, for rd.rustlive.onfail=shell.
    #[arg(long, value_name = "PATH")]
    pub shell: Option<std::path::PathBuf>,
    /// Compression of the archive.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compress: crate::initramfs::Compress,
    /// The rustlive binary to install as /init (default: this one).
    #[arg(long, value_name = "FILE")]
    pub init: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct CmdlineArg {
    /// Parse this string instead of /proc/cmdline.
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,
}

impl CmdlineArg {
    /// The command line: `--cmdline` or `/proc/cmdline`.
    pub fn text(&self) -> Result<String, Error> {
        match &self.cmdline {
            Some(s) => Ok(s.clone()),
            None => std::fs::read_to_string("/proc/cmdline").map_err(Error::ReadCmdline),
        }
    }

    /// The configuration from `--cmdline` or `/proc/cmdline`.
    pub fn load(&self) -> Result<Config, Error> {
        Ok(Config::from_cmdline(&self.text()?)?)
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
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
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
    if pid1 {
        for w in early_warnings {
            log::warn!("{w}");
        }
        crate::pid1::load_modules();
    }
    let result = match cli.command {
        // boot reports its own errors: it must do so before its failure policy reboots.
        Command::Boot(a) => return crate::boot::main(&a, pid1),
        Command::InjectSecrets(a) => crate::secrets::run_cli(&a),
        Command::Fetch(a) => crate::fetch::command::run(&a).map_err(Error::from),
        Command::Config(a) => config(&a),
        Command::Assemble(a) => assemble(&a),
        Command::SwitchRoot(a) => switch_root(a),
        Command::Initramfs(a) => initramfs(&a),
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

fn initramfs(a: &InitramfsArgs) -> Result<(), Error> {
    let kver = match &a.kver {
        Some(k) => k.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .map_err(|source| crate::initramfs::BuildError::Read {
                path: "/proc/sys/kernel/osrelease".into(),
                source,
            })?,
    };
    let opts = crate::initramfs::Options {
        kmoddir: a
            .kmoddir
            .clone()
            .unwrap_or_else(|| crate::initramfs::default_kmoddir(&kver)),
        kver,
        net_drivers: a.net_drivers.clone().unwrap_or_else(|| {
            crate::initramfs::NIC_MODULES
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        add_drivers: a.add_drivers.clone(),
        firmware_dir: a.firmware_dir.clone(),
        ca: a.ca.clone(),
        keys: a.keys.clone(),
        shell: a.shell.clone(),
        compress: a.compress,
        init: a
            .init
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/exe")),
    };
    let report = crate::initramfs::build(&opts, &a.output)?;
    log::info!("{}", crate::initramfs::summary(&report, &a.output));
    println!("{}", report.bytes);
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
