//! The node's stages run by hand: `rustlive fetch`, `config`, `inject-secrets`, `assemble`,
//! `switch-root` and `tpm ek`. The same code `boot` runs, one stage at a time, for operators
//! debugging a node and for benchmarks.

use super::error::Error;
use crate::config::Config;
use crate::support::paths::Paths;
use clap::{Args, Subcommand};

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

#[derive(Debug, Subcommand)]
pub enum TpmCommand {
    /// Print the TPM's endorsement keys (TCG default templates RSA 2048 and ECC P-256: the
    /// persistent one when provisioned, else created as a primary), their certificates from
    /// NV when present, the node's MACs and DMI UUID: what the site records to seal to it.
    ///
    /// The output, saved unedited, is the EK file of the boot server's tools: `rustlive bundle
    /// seal --ek FILE`, or EK_DIR/HOSTNAME.ek for `rustlive bundle build-all --seal-to EK_DIR`.
    #[command(after_long_help = "Example (on node n001, then on the boot server):
  rustlive tpm ek > n001.ek
  rustlive bundle seal --ek n001.ek --sign-key /etc/rustlive/sealing.key n001.json -o n001.sealed
  cp n001.ek /srv/eks/n001.ek   # for build-all --seal-to /srv/eks")]
    Ek(TpmEkArgs),
}

#[derive(Debug, Args)]
pub struct TpmEkArgs {
    /// Print JSON instead of text and PEM.
    #[arg(long)]
    pub json: bool,
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
    after_help = "The summary line ends with what verified the file (the pinned sha256, sha256sums URL, minisign signature by key ID (FILE)) or \"not verified: no hash or signature configured\".\n\
Exit status: 0 verified and written, 2 bad option, 3 transfer failed, 4 verification failed.\n\
Example: rustlive fetch --sha256 HEX -o /run/img http://mirror1/img http://mirror2/img"
)]
pub struct FetchArgs {
    /// Write the file here (bytes go to FILE.part until verified).
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// Mirrors of the same file, tried in order and rotated on failure (http, https, file;
    /// or oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX] and oci+http:// registry mirrors). Or one
    /// torrent source, torrent://HOST[:PORT]/PATH.torrent (fetched over http; a plain-http
    /// torrent needs --sha256, --sha256sums or a key) or torrent+https://…, with the other
    /// URLs as its web seeds: pieces from peers, each SHA-1-checked, and from the mirrors.
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
    /// The CA bundle (PEM) to verify https servers with (default: /etc/rustlive/ca.pem, the
    /// initramfs's copy of the site's CAs, then the system bundle).
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
    #[command(flatten)]
    pub swarm: super::torrent::SwarmArgs,
}

fn fetchable_url(s: &str) -> Result<reqwest::Url, String> {
    match reqwest::Url::parse(s) {
        Ok(u) if crate::swarm::session::torrent_http_url(&u).is_some() => Ok(u),
        _ => crate::config::parse_image_url(s),
    }
}

fn proxy_url(s: &str) -> Result<reqwest::Url, String> {
    crate::support::values::parse_url(s, crate::support::values::Schemes::Http)
}

/// `rustlive fetch`: the engine on its own, for operators debugging a node and for benchmarks.
pub(super) fn fetch(a: &FetchArgs) -> Result<(), Error> {
    use crate::fetch::verify;
    use crate::fetch::{fetch_to_file, FetchOptions};
    let mut keys = match &a.keys_dir {
        Some(d) => verify::load_trusted_dir(d).map_err(crate::fetch::FetchError::from)?,
        None => Vec::new(),
    };
    for p in &a.pubkey {
        keys.push(verify::load_trusted(p).map_err(crate::fetch::FetchError::from)?);
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
    if a.urls.iter().any(super::torrent::is_torrent) {
        return super::torrent::fetch(&a.urls, &a.output, &a.swarm, &opts);
    }
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

/// `rustlive inject-secrets`.
pub(super) fn inject_secrets(a: &InjectSecretsArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    let mut opts = crate::boot::options::secrets(&cfg, &crate::boot::options::transfer(&cfg));
    if let Some(s) = &a.source {
        opts.source = Some(s.clone());
    }
    let paths = Paths::system();
    let facts = crate::secrets::NodeFacts::gather(&paths, a.mac.clone());
    let deadline = crate::support::deadline::Deadline::after(cfg.transfer.timeout);
    crate::secrets::apply(&opts, &a.root, &facts, &paths, deadline)?;
    Ok(())
}

pub(super) fn config(a: &ConfigArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    // Serializing plain structs of strings and numbers cannot fail.
    let mut value = serde_json::to_value(&cfg).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("standalone_network".into(), cfg.network.plan().into());
    }
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

pub(super) fn assemble(a: &AssembleArgs) -> Result<(), Error> {
    let cfg = a.cmdline.load()?;
    cfg.announce();
    let mut opts = crate::boot::options::assemble(&cfg);
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

pub(super) fn switch_root(a: SwitchRootArgs) -> Result<(), Error> {
    let init = match a.init {
        Some(i) => i,
        None => CmdlineArg { cmdline: None }.load()?.root.init,
    };
    let never = crate::root::switchroot::switch_root(&a.newroot, &init, &a.args)?;
    match never {}
}
