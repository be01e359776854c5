//! The `rustlive` command line: one subcommand per stage, so an operator can run any stage by
//! hand on a node (or a benchmark can run it alone), plus `boot`, which runs them all.

use crate::boot::Error;
use crate::config::Config;
use crate::support::exit::{report, Exit};
use crate::support::paths::Paths;
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
    /// On the boot server: build node secrets bundles (JSON or a per-node initrd) from
    /// directories that mirror each node's root.
    Bundle(BundleArgs),
    /// Push a squashfs, erofs or ext4 root image to an OCI registry as a bootable artifact
    /// (boot server side); prints the manifest digest and the kernel command line.
    #[command(
        after_help = "Example: rustlive publish compute.squashfs oci://registry.site:5000/images/compute:2026-12 --signature compute.squashfs.minisig\n\
Credentials (docker config.json format): --registry-auth, else $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json."
    )]
    Publish(PublishArgs),
    /// Build a standalone netboot initramfs (no dracut): rustlive as /init, the kernel
    /// modules for the image filesystems and the usual server NICs with their dependencies and
    /// firmware, the CA bundle and minisign keys. Deterministic: same inputs, same bytes.
    Initramfs(Box<InitramfsArgs>),
    /// The node's TPM: `tpm ek` prints its endorsement key for enrollment.
    #[command(subcommand)]
    Tpm(TpmCommand),
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
pub struct PublishArgs {
    /// The root image file.
    #[arg(value_name = "IMAGE")]
    pub image: std::path::PathBuf,
    /// Where to push it: oci://HOST[:PORT]/REPO:TAG (or oci+http:// for a plain-http registry).
    #[arg(value_name = "REFERENCE", value_parser = publish_reference)]
    pub reference: crate::oci::Reference,
    /// A minisign signature of IMAGE, pushed as a second layer.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<std::path::PathBuf>,
    /// Upload in chunks of this size (e.g. 64M) instead of one request.
    #[arg(long, value_name = "SIZE", value_parser = chunk_size)]
    pub chunk_size: Option<u64>,
    /// Registry credentials (docker config.json format).
    #[arg(long, value_name = "FILE")]
    pub registry_auth: Option<std::path::PathBuf>,
    /// PEM CA bundle for https.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Do not verify the registry's certificate.
    #[arg(long)]
    pub insecure_tls: bool,
    /// Log every request.
    #[arg(long)]
    pub debug: bool,
}

fn oci_reference(s: &str) -> Result<crate::oci::Reference, String> {
    crate::oci::Reference::parse(s)
}

/// A tag, never a digest: the digest is what publishing produces (a usage error, exit 2).
fn publish_reference(s: &str) -> Result<crate::oci::Reference, String> {
    let r = oci_reference(s)?;
    if r.pinned() {
        return Err(
            "publish to a tag (oci://HOST/REPO:TAG); the manifest digest is printed afterwards"
                .into(),
        );
    }
    Ok(r)
}

fn chunk_size(s: &str) -> Result<u64, String> {
    match crate::support::values::parse_size(s)? {
        crate::support::values::Size::Bytes(b) if b > 0 => Ok(b),
        _ => Err("expected a size in bytes (K/M/G suffixes)".into()),
    }
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
    #[arg(long, value_name = "DIR", default_value = crate::server::initramfs::KEYS_DEFAULT)]
    pub keys: std::path::PathBuf,
    /// A static shell installed as /bin/sh, for rd.rustlive.onfail=shell.
    #[arg(long, value_name = "PATH")]
    pub shell: Option<std::path::PathBuf>,
    /// Compression of the archive.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compress: crate::server::initramfs::Compress,
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
    #[arg(long, value_name = "SIZE", value_parser = crate::support::values::parse_size)]
    pub overlay_size: Option<crate::support::values::Size>,
    /// Then switch into the new root and execute its init (rd.rustlive.init, init=, or
    /// /sbin/init), as `rustlive switch-root` does.
    #[arg(long)]
    pub switch_root: bool,
    /// Parent of the helper mounts (tests point it at a temporary directory).
    #[arg(long, value_name = "DIR", default_value = crate::root::assemble::RUN_DIR, hide = true)]
    pub run_dir: std::path::PathBuf,
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
    /// Also show the mirror order a node with this identity (MAC, DMI UUID or host name)
    /// uses, as `mirror_order`.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
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
    #[arg(long, value_name = "URL", value_parser = crate::config::url_template::UrlTemplate::parse)]
    pub source: Option<crate::config::url_template::UrlTemplate>,
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
    /// Mirrors of the same file, tried in order and rotated on failure (http, https, file;
    /// or oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX] and oci+http:// registry mirrors).
    #[arg(required = true, value_name = "URL", value_parser = fetchable_url)]
    pub urls: Vec<reqwest::Url>,
    /// Expected SHA-256 (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = crate::support::values::parse_sha256)]
    pub sha256: Option<crate::support::values::Sha256Hex>,
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
    #[arg(long, value_name = "SECS", value_parser = crate::support::values::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Abort and resume an attempt that received nothing for this long.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::support::values::parse_duration)]
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
    /// Mirror order: `listed` (one mirror at a time as given, the default here) or `spread`
    /// (the image's pieces from all mirrors, each piece from the mirror this node's rendezvous
    /// order for it ranks first, as `rustlive boot` does by default).
    #[arg(long, value_name = "POLICY", default_value = "listed", value_parser = crate::fetch::mirrors::MirrorPolicy::parse)]
    pub mirrors: crate::fetch::mirrors::MirrorPolicy,
    /// Registry credentials for oci:// URLs (docker config.json format; default
    /// /etc/rustlive/registry-auth.json, as in the initramfs).
    #[arg(long, value_name = "FILE")]
    pub registry_auth: Option<std::path::PathBuf>,
    /// With --mirrors spread: the node identity to order the mirrors for (default: this
    /// machine's MAC toward the first mirror, DMI product_uuid, or host name).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub command: BundleCommand,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Seal a plain bundle (JSON) to a node's EK: only that node's TPM can open the result,
    /// which may then be served over plain http.
    Seal(BundleSealArgs),
    /// Build one node's bundle from DIR, a directory that mirrors the node's root
    /// (DIR/etc/munge/munge.key is /etc/munge/munge.key).
    ///
    /// Modes come from the files; owners and groups by name from DIR/rustlive-bundle.json
    /// ({"owners": {"/etc/munge/munge.key": "munge:munge"}}; a file it does not name is
    /// root:root). The result is validated by the node's own validator: anything the node would
    /// refuse (links in DIR, setuid modes, paths under /proc, /sys, /dev or /run, bad owner
    /// names) is refused here with the node's message. FILE.json is for an https source;
    /// FILE.cpio is a gzip'ed newc initrd holding /rustlive/secrets.json, which works as an
    /// iPXE initrd and appended with a plain `cat` after any initramfs. Written 0600.
    #[command(
        after_long_help = "Example:\n  rustlive bundle build /srv/nodes/n001 --common /srv/nodes/_common --ssh-host-keys -o /srv/www/nodes/n001.cpio"
    )]
    Build(BundleBuildArgs),
    /// Build every node's bundle: each directory NODES_DIR/HOSTNAME is one node's DIR (its
    /// manifest lists its "macs"); writes WWW_DIR/by-mac/MAC.{json,cpio} (MAC as iPXE prints
    /// ${mac}) and WWW_DIR/by-host/HOSTNAME.{json,cpio}, rewriting only what changed and
    /// removing outputs no node produces any more. Names starting with '.' or '_' are skipped.
    #[command(name = "build-all")]
    BuildAll(BundleBuildAllArgs),
}

#[derive(Debug, Args)]
pub struct BundleCommonArgs {
    /// A tree shared by all nodes (the munge key), merged before the node's own; repeatable.
    /// The node's files win over a common tree's, a later common tree over an earlier one.
    #[arg(long, value_name = "DIR")]
    pub common: Vec<std::path::PathBuf>,
    /// The node image's root: check owner and group names against its /etc/passwd and
    /// /etc/group, as the node will at boot (default: any well-formed name).
    #[arg(long, value_name = "DIR")]
    pub image_root: Option<std::path::PathBuf>,
    /// Generate the missing SSH host keys (ed25519, ecdsa, rsa) into DIR/etc/ssh first; keys
    /// already there are kept, so a node keeps its host key across rebuilds.
    #[arg(long)]
    pub ssh_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct BundleBuildArgs {
    /// The node's tree.
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
    #[command(flatten)]
    pub opts: BundleCommonArgs,
    /// FILE.json or FILE.cpio.
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct BundleBuildAllArgs {
    /// One directory per node, named by host name.
    #[arg(value_name = "NODES_DIR")]
    pub nodes_dir: std::path::PathBuf,
    #[command(flatten)]
    pub opts: BundleCommonArgs,
    /// The web server's directory for the bundles.
    #[arg(short, long, value_name = "WWW_DIR")]
    pub output: std::path::PathBuf,
    /// Seal every node's bundle to its TPM's endorsement key, EK_DIR/HOSTNAME.pem (or .crt,
    /// .der: what `rustlive tpm ek` prints on the node); a node without one is refused.
    #[arg(long, value_name = "EK_DIR")]
    pub seal_to: Option<std::path::PathBuf>,
    /// With --seal-to: also bind each bundle to these PCR values (N=HEX[,N=HEX…]).
    #[arg(long, value_name = "SPEC", requires = "seal_to", value_parser = pcr_policy)]
    pub pcr: Option<crate::tpm::pcr::PcrPolicy>,
}

fn pcr_policy(s: &str) -> Result<crate::tpm::pcr::PcrPolicy, String> {
    crate::tpm::pcr::PcrPolicy::parse(s)
}

fn fetchable_url(s: &str) -> Result<reqwest::Url, String> {
    crate::config::parse_image_url(s)
}

fn proxy_url(s: &str) -> Result<reqwest::Url, String> {
    crate::support::values::parse_url(s, crate::support::values::Schemes::Http)
}

/// Parses the process arguments, runs the subcommand and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // As the initramfs's /init, nothing has mounted /proc or /dev or loaded drivers yet.
    let pid1 = crate::boot::pid1::is_pid1();
    let early_warnings = if pid1 {
        crate::boot::pid1::prepare()
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
        Command::Boot(_) => crate::support::log::Target::Kmsg,
        _ if pid1 => crate::support::log::Target::Kmsg,
        _ => crate::support::log::Target::Stderr,
    };
    let debug = matches!(&cli.command, Command::Fetch(a) if a.debug)
        || matches!(&cli.command, Command::Publish(a) if a.debug);
    crate::support::log::init(target, debug);
    if pid1 || matches!(cli.command, Command::Boot(_)) {
        crate::boot::panic_hook::install(pid1);
    }
    if pid1 {
        for w in early_warnings {
            log::warn!("{w}");
        }
        crate::boot::pid1::load_modules();
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
        Command::Fetch(a) => fetch(&a),
        Command::Config(a) => config(&a),
        Command::Publish(a) => publish(&a),
        Command::Assemble(a) => assemble(&a),
        Command::SwitchRoot(a) => switch_root(a),
        // A boot server's command: its own error type and exit code (6, or 2 for the output name).
        Command::Bundle(a) => return bundle(&a),
        Command::Initramfs(a) => initramfs(&a),
        Command::Tpm(TpmCommand::Ek(a)) => {
            crate::server::seal::ek_command(a.json, &Paths::system()).map_err(Error::from)
        }
    };
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("{}", report(&e));
            if pid1 {
                crate::boot::pid1::halt(std::time::Duration::from_secs(5));
            }
            e.exit_code().into()
        }
    }
}

/// `rustlive fetch`: the engine on its own, for operators debugging a node and for benchmarks.
fn fetch(a: &FetchArgs) -> Result<(), Error> {
    use crate::fetch::verify;
    use crate::fetch::{fetch_to_file, FetchOptions};
    let mut keys = match &a.keys_dir {
        Some(d) => verify::load_keys_dir(d).map_err(crate::fetch::FetchError::from)?,
        None => Vec::new(),
    };
    for p in &a.pubkey {
        keys.push(verify::load_key(p).map_err(crate::fetch::FetchError::from)?);
    }
    let opts = FetchOptions {
        retries: a.retries,
        deadline: crate::support::deadline::Deadline::after(a.timeout),
        stall: a.stall,
        connect_timeout: a.stall.min(std::time::Duration::from_secs(15)),
        ca: a.ca.clone(),
        insecure_tls: a.insecure_tls,
        proxy: a.proxy.clone(),
        sha256: a.sha256,
        sha256sums: a.sha256sums.clone(),
        sig: a.sig.clone(),
        keys,
        verify_required: a.require_verified,
        ..FetchOptions::default()
    };
    use crate::fetch::mirrors::{self, MirrorPolicy, NodeId};
    let node = match &a.node_id {
        Some(id) => Some(NodeId::given(id)),
        None if a.mirrors == MirrorPolicy::Spread => {
            let first = a.urls.first().and_then(|u| u.host_str());
            crate::boot::node_identity(first, &Paths::system())
        }
        None => None,
    };
    let urls = mirrors::order(&a.urls, a.mirrors, node.as_ref());
    if let Some(n) = &node {
        let shown: Vec<String> = urls.iter().map(crate::support::log::redact_url).collect();
        log::debug!("mirrors for {} ({}): {}", n.id, n.source, shown.join(", "));
    }
    let opts = FetchOptions {
        spread: node
            .filter(|_| mirrors::needs_identity(&urls, a.mirrors))
            .map(|n| n.id),
        ..opts
    };
    let creds = a
        .registry_auth
        .clone()
        .unwrap_or_else(|| crate::oci::auth::CREDENTIALS_FILE.into());
    let (urls, opts) = crate::oci::pull::prepare(&urls, &opts, &creds)?;
    fetch_to_file(&urls, &a.output, &opts)?;
    Ok(())
}

/// `rustlive bundle build` and `rustlive bundle build-all`.
fn bundle(args: &BundleArgs) -> ExitCode {
    let result = match &args.command {
        BundleCommand::Seal(a) => {
            return match crate::server::seal::seal_command(
                &a.ek,
                &a.input,
                &a.output,
                a.pcr.as_deref(),
            ) {
                Ok(()) => Exit::Success.into(),
                Err(e) => {
                    log::error!("cannot seal the secrets bundle: {}", report(&e));
                    e.exit_code().into()
                }
            };
        }
        BundleCommand::Build(a) => bundle_build(a),
        BundleCommand::BuildAll(a) => bundle_build_all(a),
    };
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("cannot build the secrets bundle: {}", report(&e));
            e.exit_code().into()
        }
    }
}

fn bundle_options(a: &BundleCommonArgs) -> crate::server::bundle::Options {
    crate::server::bundle::Options {
        commons: a.common.clone(),
        image_root: a.image_root.clone(),
    }
}

fn bundle_build(a: &BundleBuildArgs) -> Result<(), crate::server::bundle::BuildError> {
    let keygen = a
        .opts
        .ssh_host_keys
        .then(crate::server::bundle::hostkeys::Keygen::detect);
    let w = crate::server::bundle::build_to_file(
        &a.dir,
        &bundle_options(&a.opts),
        &a.output,
        keygen.as_ref(),
    )?;
    for p in &w.generated {
        log::info!("bundle: generated {}", p.display());
    }
    log::info!(
        "bundle: wrote {} ({} files, {} bytes)",
        a.output.display(),
        w.files,
        w.bytes
    );
    Ok(())
}

fn bundle_build_all(a: &BundleBuildAllArgs) -> Result<(), crate::server::bundle::BuildError> {
    let keygen = a
        .opts
        .ssh_host_keys
        .then(crate::server::bundle::hostkeys::Keygen::detect);
    let r = crate::server::bundle::all::build_all(
        &a.nodes_dir,
        &a.output,
        &bundle_options(&a.opts),
        keygen.as_ref(),
        a.seal_to
            .as_ref()
            .map(|ek_dir| crate::server::bundle::all::Sealing {
                ek_dir: ek_dir.clone(),
                pcr: a.pcr.clone(),
            })
            .as_ref(),
    )?;
    log::info!(
        "bundle: {} nodes: {} written, {} unchanged, {} stale files removed, into {}",
        r.nodes.len(),
        r.written.len(),
        r.nodes.len().saturating_sub(r.written.len()),
        r.removed.len(),
        a.output.display()
    );
    Ok(())
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
    let deadline = crate::support::deadline::Deadline::after(cfg.transfer.timeout);
    crate::secrets::apply(&cfg, &a.root, &facts, &paths, deadline)?;
    Ok(())
}

fn config(a: &ConfigArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    // Serializing plain structs of strings and numbers cannot fail.
    let mut value = serde_json::to_value(&cfg).unwrap_or_default();
    if let (Some(id), Some(obj)) = (&a.node_id, value.as_object_mut()) {
        let node = crate::fetch::mirrors::NodeId::given(id);
        let order =
            crate::fetch::mirrors::order(cfg.image_urls(), cfg.transfer.mirrors, Some(&node));
        let shown: Vec<String> = order.iter().map(crate::support::log::redact_url).collect();
        // Spread over http(s) mirrors, each piece of the image has an order of its own; `urls`
        // is the first piece's, and the whole file's when it cannot be spread.
        let by_piece =
            crate::fetch::mirrors::needs_identity(cfg.image_urls(), cfg.transfer.mirrors)
                && crate::fetch::pieces::applies(cfg.image_urls());
        obj.insert(
            "mirror_order".into(),
            serde_json::json!({
                "node_id": id,
                "policy": cfg.transfer.mirrors,
                "urls": shown,
                "by_piece": by_piece,
            }),
        );
    }
    let json = serde_json::to_string_pretty(&value).unwrap_or_default();
    println!("{json}");
    Ok(())
}

fn publish(a: &PublishArgs) -> Result<(), Error> {
    let p = crate::server::publish::publish(&crate::server::publish::PublishOptions {
        image: a.image.clone(),
        signature: a.signature.clone(),
        reference: a.reference.clone(),
        chunk: a.chunk_size,
        credentials: a.registry_auth.clone(),
        ca: a.ca.clone(),
        insecure_tls: a.insecure_tls,
    })?;
    log::info!(
        "pushed {} as {} (layer {}, {} blob(s) already there)",
        a.image.display(),
        p.media_type,
        crate::oci::digest_str(&p.layer_digest),
        p.skipped
    );
    println!("{}", crate::oci::digest_str(&p.manifest_digest));
    println!("{}", p.cmdline());
    Ok(())
}

fn assemble(a: &AssembleArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    let mut opts = crate::root::assemble::AssembleOptions::from_config(&cfg);
    if let Some(size) = a.overlay_size {
        opts.overlay_size = size;
    }
    opts.run_dir.clone_from(&a.run_dir);
    let root = crate::root::assemble::assemble(&a.image, &a.newroot, &opts)?;
    root.persist();
    if a.switch_root {
        let never = crate::root::switchroot::switch_root(&a.newroot, &opts.init, &[])?;
        match never {}
    }
    Ok(())
}

fn initramfs(a: &InitramfsArgs) -> Result<(), Error> {
    let kver = match &a.kver {
        Some(k) => k.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .map_err(|source| crate::server::initramfs::BuildError::Read {
                path: "/proc/sys/kernel/osrelease".into(),
                source,
            })?,
    };
    let opts = crate::server::initramfs::Options {
        kmoddir: a
            .kmoddir
            .clone()
            .unwrap_or_else(|| crate::server::initramfs::default_kmoddir(&kver)),
        kver,
        net_drivers: a.net_drivers.clone().unwrap_or_else(|| {
            crate::server::initramfs::NIC_MODULES
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
    let report = crate::server::initramfs::build(&opts, &a.output)?;
    log::info!("{}", crate::server::initramfs::summary(&report, &a.output));
    println!("{}", report.bytes);
    Ok(())
}

fn switch_root(a: SwitchRootArgs) -> Result<(), Error> {
    let init = match a.init {
        Some(i) => i,
        None => CmdlineArg { cmdline: None }.load()?.root.init,
    };
    let never = crate::root::switchroot::switch_root(&a.newroot, &init, &a.args)?;
    match never {}
}
