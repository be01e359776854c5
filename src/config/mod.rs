//! The effective configuration, built from the kernel command line (`docs/reference/cmdline.md`).
//!
//! Parsing is a pure function of the command-line string so that every rule (last wins,
//! accumulating mirrors, aliases and their precedence, typed values) is unit-tested without a
//! booted system. Facts that need the running system (is there a default secrets file, are
//! signing keys installed) are decided later by the stage that uses them.

pub mod cmdline;
pub mod ipconfig;
pub mod netdev;
pub mod oci_ref;
pub mod url_template;

use crate::config::url_template::UrlTemplate;
use crate::support::log::redact_url_str;
use crate::support::values::{self, MirrorPolicy, Schemes, Sha256Hex, Size};
use cmdline::Param;
use reqwest::Url;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

/// Default secrets bundle inside the initramfs, used when it exists and no source is given.
pub const DEFAULT_SECRETS_FILE: &str = "/rustlive/secrets.json";

/// A value on the command line that rustlive cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// `value` is redacted and escaped already (`redact_url_str`): quoted, not debug-printed again.
#[error("invalid value \"{value}\" for {option}: {reason}")]
pub struct ConfigError {
    /// The option as written on the command line (`rd.rustlive.overlay.size`).
    pub option: String,
    /// The offending value, with URL credentials and query strings removed.
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where the root image comes from; `None` means rustlive has nothing to do.
    pub image: Option<ImageSource>,
    pub verify: Verify,
    pub transfer: Transfer,
    pub root: Root,
    pub secrets: Secrets,
    pub failure: Failure,
    /// Network and drivers, used when rustlive is PID 1 (the standalone initramfs).
    pub network: Network,
    /// BitTorrent settings, used when the image comes through a torrent.
    pub swarm: Swarm,
    pub debug: bool,
    /// Whether the image or the secrets come over the network (the dracut hooks ask for the
    /// network on this, not on URL spellings).
    pub needs_network: bool,
    /// The site's syslog collector (`rd.rustlive.syslog`), if any.
    pub syslog: Option<crate::support::syslog::Target>,
    /// Which command-line option set each field that is not at its default.
    pub sources: BTreeMap<&'static str, String>,
    /// Problems that do not stop the boot (unknown `rd.rustlive.*` keys, ignored aliases).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSource {
    /// Mirrors in the order they are tried; never empty without a torrent. With one they are
    /// the swarm's web seeds (http or https only), and may be empty.
    #[serde(serialize_with = "ser_urls")]
    pub urls: Vec<Url>,
    /// Where the image's `.torrent` is fetched (http or https: `root=live:torrent://…` is
    /// stored as its `http://…`), from `rd.rustlive.torrent` or `root=`.
    #[serde(serialize_with = "ser_opt_url")]
    pub torrent: Option<Url>,
}

/// The default port a booting node listens for peers on (`rd.rustlive.bt.port`), the
/// BitTorrent tradition.
pub const DEFAULT_BT_PORT: u16 = 6881;
/// How long a booted node keeps seeding by default (`rd.rustlive.seed`): long enough for a herd
/// that powers on in waves to find the first nodes still sharing, short enough that a node is
/// quiet again soon after the herd is up.
pub const DEFAULT_SEED: Duration = Duration::from_secs(15 * 60);
/// The default upload cap of the seeder after switch-root (`rd.rustlive.seed.rate`), bytes/s:
/// 32 MiB/s, about a quarter of a 1 Gb/s link and 1 % of 25 Gb/s, so the booted system's own
/// work keeps the link.
pub const DEFAULT_SEED_RATE: u64 = 32 << 20;

/// The swarm's settings (`rd.rustlive.bt.port`, `rd.rustlive.seed`, `rd.rustlive.seed.rate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Swarm {
    /// The port peers reach the booting node (and then its seeder) on; 0: any free port.
    pub port: u16,
    /// How long the seeder keeps serving the image after switch-root; zero: no seeder.
    #[serde(serialize_with = "ser_secs")]
    pub seed: Duration,
    /// The seeder's upload cap in bytes/s, all peers together; `None`: no cap
    /// (`rd.rustlive.seed.rate=0`).
    pub seed_rate: Option<NonZeroU64>,
}

impl Default for Swarm {
    fn default() -> Self {
        Swarm {
            port: DEFAULT_BT_PORT,
            seed: DEFAULT_SEED,
            seed_rate: NonZeroU64::new(DEFAULT_SEED_RATE),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verify {
    pub sha256: Option<Sha256Hex>,
    #[serde(serialize_with = "ser_opt_url")]
    pub sha256sums: Option<Url>,
    /// Explicit signature URL; when keys are installed and this is `None`, `IMAGEURL.minisig`.
    #[serde(serialize_with = "ser_opt_url")]
    pub sig: Option<Url>,
    /// Refuse an image that no hash or signature covers.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    /// Overall deadline for a verified image; `None` waits forever (the default).
    #[serde(serialize_with = "ser_opt_secs")]
    pub timeout: Option<Duration>,
    /// Retries after the first attempt; `None` retries until the deadline.
    pub retries: Option<u32>,
    #[serde(serialize_with = "ser_secs")]
    pub stall: Duration,
    /// PEM bundle for https; `None` uses the bundle the dracut module installed.
    pub ca: Option<PathBuf>,
    /// Skip TLS verification for the image only.
    pub insecure_tls: bool,
    #[serde(serialize_with = "ser_opt_url")]
    pub proxy: Option<Url>,
    /// Bytes of RAM that must remain free once the image is in memory.
    pub minmem: u64,
    /// How the node orders the mirrors (`rd.rustlive.mirrors`).
    pub mirrors: MirrorPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Root {
    pub overlay_size: Size,
    /// Directory of the nested image inside a squashfs (`LiveOS`).
    pub live_dir: String,
    /// Name of the squashfs inside a LiveOS ISO-style tree (`squashfs.img`).
    pub squash_img: String,
    pub init: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Secrets {
    /// Explicit source template (`{mac}`, `{uuid}`, `{hostname}` not yet substituted).
    pub source: Option<UrlTemplate>,
    pub sha256: Option<Sha256Hex>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Explicit `rd.rustlive.secrets.required`; see [`Secrets::required`].
    #[serde(rename = "required_option")]
    pub required_opt: Option<bool>,
    /// `rd.rustlive.secrets.sealed=required`: only a bundle sealed to the node's TPM is accepted.
    pub sealed_required: bool,
}

impl Secrets {
    /// Whether a failure to apply secrets stops the boot, given whether a source (explicit or the
    /// default file) is in use.
    pub fn required(&self, have_source: bool) -> bool {
        have_source && self.required_opt.unwrap_or(true)
    }
}

/// dracut's network options (`ip=`, `nameserver=`, `vlan=`, `bond=`, `ifname=`, `BOOTIF=`,
/// `rd.bootif=`, `rd.neednet=`, `rd.peerdns=`), `rd.rustlive.drivers=`, `rd.driver.blacklist=`.
/// The repeatable ones accumulate. Under the dracut module the network manager reads the same
/// words; the standalone initramfs configures what they say itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    /// Empty: DHCP on every Ethernet interface with carrier.
    pub ip: Vec<crate::config::ipconfig::IpConfig>,
    pub nameservers: Vec<std::net::IpAddr>,
    pub vlans: Vec<crate::config::netdev::Vlan>,
    pub bonds: Vec<crate::config::netdev::Bond>,
    pub ifnames: Vec<crate::config::netdev::IfName>,
    /// `BOOTIF=`, unless `rd.bootif=0` turned it off.
    pub bootif: Option<crate::config::netdev::BootIf>,
    /// `rd.neednet=`: `Some(true)` brings the network up even when nothing is fetched.
    pub neednet: Option<bool>,
    /// `rd.peerdns=0`: name servers from DHCP/RA are not used.
    pub peerdns: bool,
    pub drivers: Vec<String>,
    pub blacklist: Vec<String>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            ip: Vec::new(),
            nameservers: Vec::new(),
            vlans: Vec::new(),
            bonds: Vec::new(),
            ifnames: Vec::new(),
            bootif: None,
            neednet: None,
            peerdns: true,
            drivers: Vec::new(),
            blacklist: Vec::new(),
        }
    }
}

impl Network {
    /// What the standalone initramfs does with the network options, one sentence per step in the
    /// order it takes them (`rustlive config` shows it; the dracut path's network manager reads the
    /// same options its own way).
    pub fn plan(&self) -> Vec<String> {
        let n = self;
        use crate::config::ipconfig::Method;
        use crate::config::netdev::hex;
        let mut out = Vec::new();
        for i in &n.ifnames {
            out.push(format!(
                "rename the interface with MAC {} to {}",
                hex(&i.mac),
                i.name
            ));
        }
        if let Some(b) = &n.bootif {
            out.push(format!(
                "configure only the interface with hardware address {} (BOOTIF)",
                hex(&b.addr)
            ));
        }
        for b in &n.bonds {
            let mode = serde_json::to_value(b.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            out.push(format!(
                "create bond {} ({mode}{}) of {}, up when any of them has carrier",
                b.name,
                // The standalone bring-up's default, as NetworkManager's: link monitoring on.
                match b.miimon {
                    Some(m) => format!(", miimon {m} ms"),
                    None => ", miimon 100 ms (default)".to_string(),
                },
                b.slaves.join(", ")
            ));
        }
        for v in &n.vlans {
            out.push(format!(
                "create VLAN {} (802.1Q id {}) on {}",
                v.name, v.id, v.parent
            ));
        }
        if !n.bonds.is_empty() || !n.vlans.is_empty() {
            out.push("bond slaves and VLAN parents get no address of their own".into());
        }
        if n.ip.is_empty() {
            out.push(
                "DHCPv4 on every Ethernet or IPoIB interface with carrier; the first lease wins"
                    .into(),
            );
        }
        for c in &n.ip {
            let on = c.iface.as_deref().unwrap_or("every interface with carrier");
            let what = match c.method {
                Method::Dhcp => "DHCPv4".to_string(),
                Method::Dhcp6 => "DHCPv6 (stateful)".to_string(),
                Method::Auto6 => {
                    "router advertisements: SLAAC, and DHCPv6 when the router asks for it"
                        .to_string()
                }
                Method::Either6 => {
                    "router advertisements, falling back to DHCPv6 when no router answers"
                        .to_string()
                }
                Method::Link6 => "the IPv6 link-local address only".to_string(),
                Method::Off => "nothing (off)".to_string(),
                Method::Static => format!(
                    "static {}/{}{}",
                    c.addr.map(|a| a.to_string()).unwrap_or_default(),
                    c.prefix.unwrap_or_default(),
                    c.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                ),
            };
            out.push(format!("{on}: {what}"));
        }
        if !n.nameservers.is_empty() {
            let list: Vec<String> = n.nameservers.iter().map(|a| a.to_string()).collect();
            out.push(format!("name servers {} first", list.join(", ")));
        }
        if !n.peerdns {
            out.push(
                "name servers from DHCP and router advertisements are not used (rd.peerdns=0)"
                    .into(),
            );
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    Shell,
    Reboot,
    Poweroff,
    Halt,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub onfail: OnFail,
    #[serde(serialize_with = "ser_secs")]
    pub delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            image: None,
            verify: Verify {
                sha256: None,
                sha256sums: None,
                sig: None,
                required: false,
            },
            transfer: Transfer {
                timeout: None,
                retries: None,
                stall: Duration::from_secs(30),
                ca: None,
                insecure_tls: false,
                proxy: None,
                minmem: 512 << 20,
                mirrors: MirrorPolicy::default(),
            },
            root: Root {
                overlay_size: Size::Percent(50),
                live_dir: "LiveOS".into(),
                squash_img: "squashfs.img".into(),
                init: "/sbin/init".into(),
            },
            secrets: Secrets {
                source: None,
                sha256: None,
                cert: None,
                key: None,
                required_opt: None,
                sealed_required: false,
            },
            failure: Failure {
                onfail: OnFail::Shell,
                delay: Duration::from_secs(30),
            },
            network: Network::default(),
            swarm: Swarm::default(),
            debug: false,
            needs_network: false,
            syslog: None,
            sources: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

/// Every `rd.rustlive.*` key rustlive understands (used for typo suggestions).
pub const RUSTLIVE_KEYS: &[&str] = &[
    "rd.rustlive.url",
    "rd.rustlive.torrent",
    "rd.rustlive.bt.port",
    "rd.rustlive.seed",
    "rd.rustlive.seed.rate",
    "rd.rustlive.sha256",
    "rd.rustlive.sha256sums",
    "rd.rustlive.sig",
    "rd.rustlive.verify",
    "rd.rustlive.timeout",
    "rd.rustlive.retries",
    "rd.rustlive.stall",
    "rd.rustlive.ca",
    "rd.rustlive.minmem",
    "rd.rustlive.overlay.size",
    "rd.rustlive.init",
    "rd.rustlive.secrets",
    "rd.rustlive.secrets.sha256",
    "rd.rustlive.secrets.cert",
    "rd.rustlive.secrets.key",
    "rd.rustlive.secrets.required",
    "rd.rustlive.secrets.sealed",
    "rd.rustlive.onfail",
    "rd.rustlive.onfail.delay",
    "rd.rustlive.debug",
    "rd.rustlive.syslog",
    "rd.rustlive.mirrors",
    "rd.rustlive.drivers",
];

impl Config {
    /// Parses a kernel command line. The first invalid value is an error; unknown
    /// `rd.rustlive.*` keys are warnings.
    pub fn from_cmdline(cmdline: &str) -> Result<Config, ConfigError> {
        Config::from_cmdline_bytes(cmdline.as_bytes())
    }

    /// [`Config::from_cmdline`] for the raw bytes of `/proc/cmdline`, which need not be UTF-8:
    /// a word that is not rustlive's may hold anything; one of rustlive's must be UTF-8.
    pub fn from_cmdline_bytes(cmdline: &[u8]) -> Result<Config, ConfigError> {
        let mut b = Builder::default();
        for p in cmdline::parse_bytes(cmdline) {
            b.apply(&p)?;
        }
        b.finish()
    }

    /// Applies `rd.rustlive.debug` to the logger and logs the warnings: what every command
    /// that parsed the command line does first.
    pub fn announce(&self) {
        crate::support::log::set_debug(self.debug);
        for w in &self.warnings {
            log::warn!("{w}");
        }
    }

    /// The image URLs, or an empty slice when no source is configured.
    pub fn image_urls(&self) -> &[Url] {
        self.image.as_ref().map_or(&[], |i| &i.urls)
    }

    /// The `.torrent`'s URL when the image comes through a swarm.
    pub fn torrent(&self) -> Option<&Url> {
        self.image.as_ref().and_then(|i| i.torrent.as_ref())
    }

    /// Every URL the image's download reaches: the torrent's, then the mirrors.
    pub fn image_hosts(&self) -> Vec<String> {
        self.torrent()
            .into_iter()
            .chain(self.image_urls())
            .filter(|u| u.scheme() != "file")
            .filter_map(|u| u.host_str().map(String::from))
            .collect()
    }
}

/// The failure policy alone, for when the rest of the command line is invalid: the policy must
/// still apply (the contract says so), unless its own options are the invalid ones, in which
/// case the default (`shell`) does.
pub fn failure_policy(cmdline: &[u8]) -> Failure {
    let mut b = Builder::default();
    for p in cmdline::parse_bytes(cmdline) {
        if p.key.starts_with("rd.rustlive.onfail") && b.apply(&p).is_err() {
            return Config::default().failure;
        }
    }
    b.cfg.failure
}

/// The syslog collector alone, for when the rest of the command line is invalid: the reason
/// should reach the site's collector too. `None` when absent or itself invalid.
pub fn syslog_target(cmdline: &[u8]) -> Option<crate::support::syslog::Target> {
    let mut b = Builder::default();
    for p in cmdline::parse_bytes(cmdline) {
        if p.key == "rd.rustlive.syslog" && b.apply(&p).is_err() {
            return None;
        }
    }
    b.cfg.syslog
}

/// Option values as seen so far, before precedence between aliases is resolved.
#[derive(Default)]
struct Builder {
    cfg: Config,
    mirrors: Vec<Url>,
    root_url: Option<Url>,
    /// `root=live:torrent://…` (as its http(s) URL), and `rd.rustlive.torrent`.
    root_torrent: Option<Url>,
    torrent: Option<Url>,
    overlay_size: Option<(Size, String)>,
    overlay_size_alias: Option<(Size, String)>,
    minmem: Option<u64>,
    minmem_alias: Option<u64>,
    init: Option<PathBuf>,
    init_alias: Option<PathBuf>,
    bootif: Option<crate::config::netdev::BootIf>,
    /// `rd.bootif=0`: `BOOTIF=` is ignored, as dracut does.
    bootif_off: bool,
}

fn err(p: &Param, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        option: p.key.clone(),
        value: redact_url_str(p.value.as_deref().unwrap_or("")),
        reason: reason.into(),
    }
}

impl Builder {
    fn apply(&mut self, p: &Param) -> Result<(), ConfigError> {
        let key = p.key.as_str();
        if p.invalid_utf8 {
            if is_ours(p) {
                return Err(err(p, "the value is not valid UTF-8"));
            }
            if key == "root" {
                // Still a root=, for a disk: last wins, as below.
                self.root_url = None;
            }
            return Ok(());
        }
        // Typed getters: each maps a reason to an error that names this option and value.
        let val = || -> Result<&str, ConfigError> {
            match p.value.as_deref() {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(err(p, "a value is required")),
            }
        };
        let flag = || -> Result<bool, ConfigError> {
            match p.value.as_deref() {
                None => Ok(true),
                Some(v) => values::parse_bool(v).map_err(|r| err(p, r)),
            }
        };
        let url = |s: Schemes| -> Result<Url, ConfigError> {
            values::parse_url(val()?, s).map_err(|r| err(p, r))
        };
        let hash = || values::parse_sha256(val()?).map_err(|r| err(p, r));
        let secs = || values::parse_duration(val()?).map_err(|r| err(p, r));
        let path = || values::parse_abs_path(val()?).map_err(|r| err(p, r));
        let mib = || values::parse_bytes(val()?, 1 << 20).map_err(|r| err(p, r));
        let c = &mut self.cfg;

        let field: &'static str = match key {
            "root" => {
                let v = p.value.as_deref().unwrap_or("");
                let candidate = v.strip_prefix("live:").unwrap_or(v);
                self.root_torrent = None;
                if is_torrent_scheme(candidate) {
                    self.root_url = None;
                    self.root_torrent = Some(parse_torrent_url(candidate).map_err(|r| err(p, r))?);
                } else if candidate.contains("://") {
                    self.root_url = Some(parse_image_url(candidate).map_err(|r| err(p, r))?);
                } else {
                    // root=/dev/sda1, root=live:CDLABEL=…: a disk root, not ours. Last wins,
                    // so an earlier root=live:URL is cancelled.
                    self.root_url = None;
                }
                return Ok(());
            }
            "rd.rustlive.url" => {
                let v = val()?;
                for part in v.split(',').filter(|s| !s.is_empty()) {
                    let u = parse_image_url(part).map_err(|r| err(p, r))?;
                    self.mirrors.push(u);
                }
                if self.mirrors.is_empty() {
                    return Err(err(p, "no URL given"));
                }
                return Ok(());
            }
            "rd.rustlive.torrent" => {
                let v = val()?;
                if v.contains(',') {
                    return Err(err(p, "one torrent only: a node boots one image"));
                }
                let u = parse_torrent_url(v).map_err(|r| err(p, r))?;
                if self.torrent.as_ref().is_some_and(|t| *t != u) {
                    return Err(err(
                        p,
                        "a second, different torrent: a node boots one image",
                    ));
                }
                self.torrent = Some(u);
                return Ok(());
            }
            "rd.rustlive.bt.port" => {
                c.swarm.port = val()?
                    .parse()
                    .map_err(|_| err(p, "expected a port number from 0 to 65535"))?;
                "swarm.port"
            }
            "rd.rustlive.seed" => {
                c.swarm.seed = secs()?;
                "swarm.seed"
            }
            "rd.rustlive.seed.rate" => {
                c.swarm.seed_rate =
                    NonZeroU64::new(values::parse_bytes(val()?, 1).map_err(|r| err(p, r))?);
                "swarm.seed_rate"
            }
            "rd.rustlive.sha256" => {
                c.verify.sha256 = Some(hash()?);
                "verify.sha256"
            }
            "rd.rustlive.sha256sums" => {
                c.verify.sha256sums = Some(url(Schemes::Fetchable)?);
                "verify.sha256sums"
            }
            "rd.rustlive.sig" => {
                c.verify.sig = Some(url(Schemes::Fetchable)?);
                "verify.sig"
            }
            "rd.rustlive.verify" => {
                c.verify.required = match val()? {
                    "required" => true,
                    "optional" => false,
                    _ => return Err(err(p, "expected required or optional")),
                };
                "verify.required"
            }
            "rd.rustlive.timeout" => {
                let d = secs()?;
                c.transfer.timeout = (!d.is_zero()).then_some(d);
                "transfer.timeout"
            }
            "rd.rustlive.retries" => {
                c.transfer.retries = Some(
                    val()?
                        .parse()
                        .map_err(|_| err(p, "expected a whole number of retries"))?,
                );
                "transfer.retries"
            }
            "rd.rustlive.stall" => {
                let d = secs()?;
                if d.is_zero() {
                    return Err(err(p, "the stall timeout must be at least 1 second"));
                }
                c.transfer.stall = d;
                "transfer.stall"
            }
            "rd.rustlive.ca" => {
                c.transfer.ca = Some(path()?);
                "transfer.ca"
            }
            "rd.noverifyssl" => {
                c.transfer.insecure_tls = flag()?;
                "transfer.insecure_tls"
            }
            "proxy" => {
                let v = val()?;
                // dracut's url-lib takes `[protocol://][user[:pass]@]host[:port]`.
                let full = if v.contains("://") {
                    v.to_string()
                } else {
                    format!("http://{v}")
                };
                c.transfer.proxy =
                    Some(values::parse_url(&full, Schemes::Http).map_err(|r| err(p, r))?);
                "transfer.proxy"
            }
            "rd.rustlive.mirrors" => {
                c.transfer.mirrors = MirrorPolicy::parse(val()?).map_err(|r| err(p, r))?;
                "transfer.mirrors"
            }
            "rd.rustlive.minmem" => {
                self.minmem = Some(mib()?);
                self.note("transfer.minmem", key);
                return Ok(());
            }
            "rd.minmem" => {
                self.minmem_alias = Some(mib()?);
                self.note_alias("transfer.minmem", key);
                return Ok(());
            }
            "rd.rustlive.overlay.size" => {
                let s = overlay_size(values::parse_size(val()?)).map_err(|r| err(p, r))?;
                self.overlay_size = Some((s, key.into()));
                return Ok(());
            }
            "rd.live.overlay.size" => {
                let s = overlay_size(mib().map(Size::Bytes).map_err(|e| e.reason))
                    .map_err(|r| err(p, r))?;
                self.overlay_size_alias = Some((s, key.into()));
                return Ok(());
            }
            "rd.overlay" => {
                match p.value.as_deref() {
                    None => {}
                    Some(v) if values::parse_bool(v).is_ok() => {}
                    Some("tmpfs") => {}
                    Some(v) if v.starts_with("tmpfs:") => {
                        for opt in v["tmpfs:".len()..].split(',') {
                            match opt.split_once('=') {
                                Some(("size", s)) => {
                                    let s = overlay_size(values::parse_size(s))
                                        .map_err(|r| err(p, r))?;
                                    self.overlay_size_alias = Some((s, key.into()));
                                }
                                _ => {
                                    return Err(err(
                                        p,
                                        format!(
                                        "unknown tmpfs option {opt:?} (only size= is supported)"
                                    ),
                                    ))
                                }
                            }
                        }
                    }
                    Some(_) => {
                        self.cfg.warnings.push(format!(
                            "rd.overlay={}: persistent overlays are not supported, using a tmpfs overlay",
                            redact_url_str(p.value.as_deref().unwrap_or(""))
                        ));
                    }
                }
                return Ok(());
            }
            "rd.live.image" | "rd.live.overlay.overlayfs" | "rd.live.ram" => {
                // Accepted for livenet compatibility: rustlive always copies to RAM and uses
                // overlayfs. A malformed value is still an error, it is a typo.
                flag()?;
                return Ok(());
            }
            "rd.live.dir" => {
                c.root.live_dir = values::parse_rel_path(val()?).map_err(|r| err(p, r))?;
                "root.live_dir"
            }
            "rd.live.squashimg" => {
                let v = values::parse_rel_path(val()?).map_err(|r| err(p, r))?;
                if v.contains('/') {
                    return Err(err(p, "expected a file name, not a path"));
                }
                c.root.squash_img = v;
                "root.squash_img"
            }
            "rd.rustlive.init" => {
                self.init = Some(path()?);
                self.note("root.init", key);
                return Ok(());
            }
            "init" => {
                self.init_alias = Some(path()?);
                self.note_alias("root.init", key);
                return Ok(());
            }
            "rd.rustlive.secrets" => {
                c.secrets.source = Some(UrlTemplate::parse(val()?).map_err(|r| err(p, r))?);
                "secrets.source"
            }
            "rd.rustlive.secrets.sha256" => {
                c.secrets.sha256 = Some(hash()?);
                "secrets.sha256"
            }
            "rd.rustlive.secrets.cert" => {
                c.secrets.cert = Some(path()?);
                "secrets.cert"
            }
            "rd.rustlive.secrets.key" => {
                c.secrets.key = Some(path()?);
                "secrets.key"
            }
            "rd.rustlive.secrets.required" => {
                c.secrets.required_opt = Some(flag()?);
                "secrets.required"
            }
            "rd.rustlive.secrets.sealed" => {
                c.secrets.sealed_required = match val()? {
                    "required" => true,
                    "optional" => false,
                    _ => return Err(err(p, "expected required or optional")),
                };
                "secrets.sealed"
            }
            "rd.rustlive.onfail" => {
                c.failure.onfail = match val()? {
                    "shell" => OnFail::Shell,
                    "reboot" => OnFail::Reboot,
                    "poweroff" => OnFail::Poweroff,
                    "halt" => OnFail::Halt,
                    _ => return Err(err(p, "expected shell, reboot, poweroff or halt")),
                };
                "failure.onfail"
            }
            "rd.rustlive.onfail.delay" => {
                c.failure.delay = secs()?;
                "failure.delay"
            }
            "rd.rustlive.debug" => {
                c.debug = flag()?;
                "debug"
            }
            "rd.rustlive.syslog" => {
                c.syslog =
                    Some(crate::support::syslog::parse_target(val()?).map_err(|r| err(p, r))?);
                "syslog"
            }
            "ip" => {
                let v = crate::config::ipconfig::parse_ip(val()?).map_err(|r| err(p, r))?;
                c.network.ip.push(v);
                "network.ip"
            }
            "nameserver" => {
                let v = crate::config::ipconfig::parse_nameserver(val()?).map_err(|r| err(p, r))?;
                c.network.nameservers.push(v);
                "network.nameservers"
            }
            "vlan" => {
                let v = crate::config::netdev::parse_vlan(val()?).map_err(|r| err(p, r))?;
                c.network.vlans.push(v);
                "network.vlans"
            }
            "bond" => {
                // A bare `bond` is dracut's default bond.
                let v = crate::config::netdev::parse_bond(p.value.as_deref().unwrap_or_default())
                    .map_err(|r| err(p, r))?;
                c.network.bonds.push(v);
                "network.bonds"
            }
            "ifname" => {
                let v = crate::config::netdev::parse_ifname(val()?).map_err(|r| err(p, r))?;
                c.network.ifnames.push(v);
                "network.ifnames"
            }
            "BOOTIF" => {
                self.bootif =
                    Some(crate::config::netdev::parse_bootif(val()?).map_err(|r| err(p, r))?);
                "network.bootif"
            }
            "rd.bootif" => {
                self.bootif_off = !flag()?;
                "network.bootif"
            }
            "rd.neednet" => {
                c.network.neednet = Some(flag()?);
                "network.neednet"
            }
            "rd.peerdns" => {
                c.network.peerdns = flag()?;
                "network.peerdns"
            }
            "rd.rustlive.drivers" | "rd.driver.blacklist" => {
                let mut names = Vec::new();
                for m in val()?.split(',').filter(|m| !m.is_empty()) {
                    if !m
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        return Err(err(p, format!("{m:?} is not a module name")));
                    }
                    names.push(m.replace('-', "_"));
                }
                if key == "rd.rustlive.drivers" {
                    c.network.drivers.extend(names);
                    "network.drivers"
                } else {
                    c.network.blacklist.extend(names);
                    "network.blacklist"
                }
            }
            k if k.starts_with("rd.rustlive.") => {
                let hint = suggest(k)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                c.warnings.push(format!("unknown option {k} ignored{hint}"));
                return Ok(());
            }
            _ => return Ok(()),
        };
        self.note(field, key);
        Ok(())
    }

    fn note(&mut self, field: &'static str, key: &str) {
        self.cfg.sources.insert(field, key.to_string());
    }

    /// Records an alias as the source only when the primary option has not set the field.
    fn note_alias(&mut self, field: &'static str, key: &str) {
        self.cfg
            .sources
            .entry(field)
            .or_insert_with(|| key.to_string());
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        let c = &mut self.cfg;
        let torrent = match (self.torrent, self.root_torrent) {
            (Some(t), Some(r)) if t != r => {
                return Err(ConfigError {
                    option: "rd.rustlive.torrent".into(),
                    value: redact_url_str(t.as_str()),
                    reason: format!(
                        "root= names another torrent ({}): a node boots one image",
                        redact_url_str(r.as_str())
                    ),
                })
            }
            (Some(t), _) => {
                c.sources
                    .insert("image.torrent", "rd.rustlive.torrent".into());
                Some(t)
            }
            (None, Some(r)) => {
                c.sources.insert("image.torrent", "root".into());
                Some(r)
            }
            (None, None) => None,
        };
        if !self.mirrors.is_empty() {
            c.image = Some(ImageSource {
                urls: self.mirrors,
                torrent,
            });
            c.sources.insert("image.urls", "rd.rustlive.url".into());
        } else if let Some(u) = self.root_url {
            c.image = Some(ImageSource {
                urls: vec![u],
                torrent,
            });
            c.sources.insert("image.urls", "root".into());
        } else if torrent.is_some() {
            c.image = Some(ImageSource {
                urls: Vec::new(),
                torrent,
            });
        }
        if let Some((s, key)) = self.overlay_size.or(self.overlay_size_alias) {
            c.root.overlay_size = s;
            c.sources.insert("root.overlay_size", key);
        }
        if let Some(m) = self.minmem.or(self.minmem_alias) {
            c.transfer.minmem = m;
        }
        if let Some(i) = self.init.or(self.init_alias) {
            c.root.init = i;
        }
        if !self.bootif_off {
            c.network.bootif = self.bootif;
        }
        check_network(&c.network)?;
        c.needs_network = c.network.neednet == Some(true)
            || c.image.as_ref().is_some_and(|i| {
                i.torrent.is_some() || i.urls.iter().any(|u| u.scheme() != "file")
            })
            || c.secrets
                .source
                .as_ref()
                .is_some_and(UrlTemplate::is_network);
        // Cross-option rules, checked once every value is known.
        if let Some(img) = &c.image {
            check_torrent_mirrors(img)?;
            check_oci_sources(&img.urls, &c.verify)?;
        }
        // Plain http without a pin exposes the bundle: only a bundle sealed to the node's TPM
        // may travel that way, so it needs rd.rustlive.secrets.sealed=required (the secrets
        // stage then refuses anything unsealed, whatever the source).
        if let Some(src) = &c.secrets.source {
            let s = &c.secrets;
            if src.scheme() == crate::config::url_template::Scheme::Http
                && s.sha256.is_none()
                && !s.sealed_required
            {
                return Err(ConfigError {
                    option: "rd.rustlive.secrets".into(),
                    value: src.redacted(),
                    reason: "plain http exposes the secrets; use https, pin the bundle with rd.rustlive.secrets.sha256, or require a TPM-sealed bundle with rd.rustlive.secrets.sealed=required".into(),
                });
            }
        }
        let s = &c.secrets;
        match (&s.cert, &s.key) {
            (Some(cert), None) => {
                return Err(ConfigError {
                    option: "rd.rustlive.secrets.cert".into(),
                    value: cert.display().to_string(),
                    reason: "a client certificate needs rd.rustlive.secrets.key as well".into(),
                })
            }
            (None, Some(key)) => {
                return Err(ConfigError {
                    option: "rd.rustlive.secrets.key".into(),
                    value: key.display().to_string(),
                    reason: "a client key needs rd.rustlive.secrets.cert as well".into(),
                })
            }
            _ => {}
        }
        Ok(self.cfg)
    }
}

/// Rules across the network options: one IPv4 and one IPv6 method per interface (dracut refuses
/// duplicate configurations too), device names declared once, and no device both a VLAN or bond
/// and a bond's slave.
fn check_network(n: &Network) -> Result<(), ConfigError> {
    let fail = |option: &str, value: &str, reason: String| ConfigError {
        option: option.into(),
        value: value.into(),
        reason,
    };
    for (i, a) in n.ip.iter().enumerate() {
        let earlier = n.ip.get(..i).unwrap_or_default();
        let same_family = |b: &&crate::config::ipconfig::IpConfig| {
            let v6 = |c: &crate::config::ipconfig::IpConfig| {
                c.method.is_v6() || c.addr.is_some_and(|x| x.is_ipv6())
            };
            b.iface == a.iface && v6(b) == v6(a)
        };
        if let Some(b) = earlier.iter().find(same_family) {
            let iface = a.iface.as_deref().unwrap_or("every interface");
            let family = if b.method.is_v6() || b.addr.is_some_and(|x| x.is_ipv6()) {
                "IPv6"
            } else {
                "IPv4"
            };
            return Err(fail("ip", iface, format!("{iface} has two {family} configurations (one ip= per interface and IP version)")));
        }
    }
    let mut names: Vec<&str> = Vec::new();
    let declared = n
        .vlans
        .iter()
        .map(|v| v.name.as_str())
        .chain(n.bonds.iter().map(|b| b.name.as_str()));
    for name in declared {
        if names.contains(&name) {
            return Err(fail("vlan/bond", name, format!("{name} is declared twice")));
        }
        names.push(name);
    }
    for b in &n.bonds {
        if let Some(s) = b.slaves.iter().find(|s| names.contains(&s.as_str())) {
            return Err(fail(
                "bond",
                &b.name,
                format!("slave {s} is itself a VLAN or bond declared on the command line"),
            ));
        }
    }
    for (i, f) in n.ifnames.iter().enumerate() {
        if n.ifnames
            .get(..i)
            .unwrap_or_default()
            .iter()
            .any(|g| g.name == f.name || g.mac == f.mac)
        {
            return Err(fail(
                "ifname",
                &f.name,
                format!("{} or its MAC is named twice", f.name),
            ));
        }
    }
    Ok(())
}

/// An image URL: http, https, file, or an OCI reference (`oci://`, `oci+http://`).
pub fn parse_image_url(s: &str) -> Result<Url, String> {
    if s.starts_with("oci://") || s.starts_with("oci+http://") {
        return crate::config::oci_ref::parse_image_url(s);
    }
    values::parse_url(s, Schemes::Fetchable).map_err(|r| {
        if r.starts_with("unsupported scheme") {
            format!("{r}, or oci://, oci+http://")
        } else {
            r
        }
    })
}

/// Whether an image source is written as a torrent (`torrent://`, `torrent+http(s)://`).
fn is_torrent_scheme(s: &str) -> bool {
    ["torrent://", "torrent+http://", "torrent+https://"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// A `.torrent`'s location: `torrent://HOST[:PORT]/PATH` as dracut's livenet spells it and
/// `torrent+http://` (both fetched over http), `torrent+https://`, or a plain http(s) URL
/// (`rd.rustlive.torrent`); returned as the http(s) URL it is fetched from.
pub fn parse_torrent_url(s: &str) -> Result<Url, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| "expected torrent://HOST/PATH or an http(s) URL".to_string())?;
    let http = match scheme {
        "torrent" | "torrent+http" | "http" => "http",
        "torrent+https" | "https" => "https",
        other => {
            return Err(format!(
                "unsupported scheme {:?} for a torrent (use torrent://, torrent+http://, torrent+https://, http or https)",
                other
            ))
        }
    };
    values::parse_url(&format!("{http}://{rest}"), Schemes::Http)
}

/// With a torrent the mirrors are web seeds: http(s) only (no `file://`, no `oci://`).
fn check_torrent_mirrors(img: &ImageSource) -> Result<(), ConfigError> {
    if img.torrent.is_none() {
        return Ok(());
    }
    match img
        .urls
        .iter()
        .find(|u| !matches!(u.scheme(), "http" | "https"))
    {
        Some(u) => Err(ConfigError {
            option: "rd.rustlive.url".into(),
            value: redact_url_str(u.as_str()),
            reason: if crate::config::oci_ref::is_oci(u) {
                "an oci:// image cannot come through a torrent; give one or the other".into()
            } else {
                "beside a torrent, mirrors are its web seeds: http or https only".into()
            },
        }),
        None => Ok(()),
    }
}

/// OCI mirrors are all OCI and agree on the repository and target; a plain-http registry
/// needs a pinned manifest or a hash or signature (as the secrets source's plain http does;
/// installed keys are checked again at fetch time).
fn check_oci_sources(urls: &[Url], v: &Verify) -> Result<(), ConfigError> {
    let oci = urls
        .iter()
        .filter(|u| crate::config::oci_ref::is_oci(u))
        .count();
    let bad = |u: &Url, reason: String| ConfigError {
        option: "rd.rustlive.url".into(),
        value: redact_url_str(u.as_str()),
        reason,
    };
    if oci == 0 {
        return Ok(());
    }
    if let Some(u) = urls.iter().find(|u| !crate::config::oci_ref::is_oci(u)) {
        return Err(bad(u, "oci:// and http(s) mirrors cannot be mixed".into()));
    }
    let refs = crate::config::oci_ref::references(urls).map_err(|e| ConfigError {
        option: "rd.rustlive.url".into(),
        value: urls
            .iter()
            .map(|u| redact_url_str(u.as_str()))
            .collect::<Vec<_>>()
            .join(","),
        reason: e,
    })?;
    let covered = v.sha256.is_some() || v.sha256sums.is_some() || v.sig.is_some();
    if let Some((u, _)) = urls
        .iter()
        .zip(&refs)
        .find(|(_, r)| r.plain_http() && !r.pinned())
    {
        if !covered {
            return Err(bad(
                u,
                "a plain-http registry is accepted only with a pinned manifest (@sha256:…) or rd.rustlive.sha256/sha256sums/sig".into(),
            ));
        }
    }
    Ok(())
}

/// A writable-layer size as the mount stage will take it: tmpfs reads 0 as "unlimited".
fn overlay_size(s: Result<Size, String>) -> Result<Size, String> {
    match s? {
        Size::Bytes(0) => {
            Err("0 would make the writable layer unlimited; give a size above 0".into())
        }
        s => Ok(s),
    }
}

/// Keys rustlive reads besides `rd.rustlive.*` (aliases and dracut/kernel options).
const OTHER_KEYS: &[&str] = &[
    "init",
    "proxy",
    "rd.noverifyssl",
    "rd.minmem",
    "rd.overlay",
    "rd.live.image",
    "rd.live.overlay.overlayfs",
    "rd.live.ram",
    "rd.live.dir",
    "rd.live.squashimg",
    "rd.live.overlay.size",
    "ip",
    "vlan",
    "bond",
    "ifname",
    "BOOTIF",
    "rd.bootif",
    "rd.neednet",
    "rd.peerdns",
    "nameserver",
    "rd.driver.blacklist",
];

/// Whether a word is one rustlive reads. `root=` is shared with every other root handler: it
/// is rustlive's only when it names a URL.
fn is_ours(p: &Param) -> bool {
    match p.key.as_str() {
        "root" => p.value.as_deref().is_some_and(|v| v.contains("://")),
        k => k.starts_with("rd.rustlive.") || OTHER_KEYS.contains(&k),
    }
}

/// The known key closest to `key`, when it is close enough to be a typo.
fn suggest(key: &str) -> Option<&'static str> {
    RUSTLIVE_KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance; keys are short, so saturating arithmetic never saturates in practice.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i.saturating_add(1)];
        for (j, cb) in b.iter().enumerate() {
            let at = |v: &[usize], k: usize| v.get(k).copied().unwrap_or(usize::MAX);
            let sub = at(&prev, j).saturating_add(usize::from(ca != *cb));
            let del = at(&prev, j.saturating_add(1)).saturating_add(1);
            let ins = at(&cur, j).saturating_add(1);
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(usize::MAX)
}

fn ser_urls<S: Serializer>(urls: &[Url], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(crate::support::log::redact_url))
}

fn ser_opt_url<S: Serializer>(u: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_str(&crate::support::log::redact_url(u)),
        None => s.serialize_none(),
    }
}

fn ser_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn ser_opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const H2: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn parse(s: &str) -> Config {
        Config::from_cmdline(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn urls(c: &Config) -> Vec<String> {
        c.image_urls().iter().map(Url::to_string).collect()
    }

    #[test]
    fn empty_cmdline_means_nothing_to_do() {
        let c = parse("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet");
        assert_eq!(c.image, None);
        assert_eq!(
            c,
            Config {
                ..Config::default()
            }
        );
    }

    #[test]
    fn livenet_cmdline() {
        let c = parse(&format!(
            "root=live:http://10.0.0.1/img.squashfs rd.live.image rd.live.overlay.overlayfs=1 rd.rustlive.sha256={H1}"
        ));
        assert_eq!(urls(&c), ["http://10.0.0.1/img.squashfs"]);
        assert_eq!(c.verify.sha256.unwrap().to_hex(), H1);
        assert_eq!(c.sources["image.urls"], "root");
    }

    #[test]
    fn image_sources() {
        let cases: &[(&str, &[&str])] = &[
            ("root=https://h/a.img", &["https://h/a.img"]),
            ("root=live:file:///images/a.img", &["file:///images/a.img"]),
            ("root=live:http://a/1 root=live:http://b/2", &["http://b/2"]),
            // a later disk root cancels an earlier live root: last wins
            ("root=live:http://a/1 root=/dev/sda1", &[]),
            ("root=live:CDLABEL=Fedora", &[]),
            ("root=UUID=1234", &[]),
            (
                "rd.rustlive.url=http://a/1,http://b/1",
                &["http://a/1", "http://b/1"],
            ),
            (
                "rd.rustlive.url=http://a/1 rd.rustlive.url=https://b/1,http://c/1",
                &["http://a/1", "https://b/1", "http://c/1"],
            ),
            // rd.rustlive.url wins over root= whatever the order
            (
                "rd.rustlive.url=http://m/1 root=live:http://r/1",
                &["http://m/1"],
            ),
            (
                "root=live:http://r/1 rd.rustlive.url=http://m/1",
                &["http://m/1"],
            ),
            (r#"rd.rustlive.url="http://a/x y""#, &["http://a/x%20y"]),
        ];
        for (line, want) in cases {
            assert_eq!(urls(&parse(line)), *want, "{line}");
        }
    }

    #[test]
    fn every_option_accepts_valid_values() {
        let c = parse(&format!(
            "rd.rustlive.url=http://h/i rd.rustlive.sha256={H1} rd.rustlive.sha256={H2} \
             rd.rustlive.sha256sums=http://h/SHA256SUMS rd.rustlive.sig=https://h/i.minisig \
             rd.rustlive.verify=required rd.rustlive.timeout=10m rd.rustlive.retries=5 \
             rd.rustlive.stall=45 rd.rustlive.ca=/etc/ca.pem rd.noverifyssl proxy=proxy.site:3128 \
             rd.rustlive.minmem=1024 rd.rustlive.overlay.size=2G rd.live.dir=/images/ \
             rd.live.squashimg=root.img rd.rustlive.init=/usr/lib/systemd/systemd \
             rd.rustlive.secrets=https://bss/{{mac}}/{{uuid}}/{{hostname}}.json \
             rd.rustlive.secrets.sha256={H1} rd.rustlive.secrets.cert=/etc/c.pem \
             rd.rustlive.secrets.key=/etc/k.pem rd.rustlive.secrets.required=0 \
             rd.rustlive.onfail=reboot rd.rustlive.onfail.delay=90 rd.rustlive.debug=yes \
             rd.rustlive.syslog=tcp://logs.site:6514"
        ));
        // last wins for single-valued options
        assert_eq!(c.verify.sha256.unwrap().to_hex(), H2);
        assert_eq!(
            c.verify.sha256sums.as_ref().unwrap().as_str(),
            "http://h/SHA256SUMS"
        );
        assert_eq!(
            c.verify.sig.as_ref().unwrap().as_str(),
            "https://h/i.minisig"
        );
        assert!(c.verify.required);
        assert_eq!(c.transfer.timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.transfer.retries, Some(5));
        assert_eq!(c.transfer.stall, Duration::from_secs(45));
        assert_eq!(
            c.transfer.ca.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert!(c.transfer.insecure_tls);
        assert_eq!(
            c.transfer.proxy.as_ref().unwrap().as_str(),
            "http://proxy.site:3128/"
        );
        assert_eq!(c.transfer.minmem, 1024 << 20);
        assert_eq!(c.root.overlay_size, Size::Bytes(2 << 30));
        assert_eq!(c.root.live_dir, "images");
        assert_eq!(c.root.squash_img, "root.img");
        assert_eq!(
            c.root.init,
            std::path::Path::new("/usr/lib/systemd/systemd")
        );
        assert_eq!(
            c.secrets.source.as_ref().map(|t| t.as_written()).as_deref(),
            Some("https://bss/{mac}/{uuid}/{hostname}.json")
        );
        assert_eq!(c.secrets.sha256.unwrap().to_hex(), H1);
        assert_eq!(
            c.secrets.cert.as_deref(),
            Some(std::path::Path::new("/etc/c.pem"))
        );
        assert_eq!(
            c.secrets.key.as_deref(),
            Some(std::path::Path::new("/etc/k.pem"))
        );
        assert!(!c.secrets.required(true));
        assert_eq!(c.failure.onfail, OnFail::Reboot);
        assert_eq!(c.failure.delay, Duration::from_secs(90));
        assert!(c.debug);
        assert_eq!(
            c.syslog.as_ref().map(|t| t.to_string()).as_deref(),
            Some("tcp://logs.site:6514")
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn syslog_target_survives_a_bad_command_line() {
        let line = "root=live:http://h/i rd.rustlive.sha256=xyz rd.rustlive.syslog=udp://10.0.2.2";
        assert!(Config::from_cmdline(line).is_err());
        let t = syslog_target(line.as_bytes()).unwrap();
        assert_eq!(t.to_string(), "udp://10.0.2.2:514");
        assert_eq!(syslog_target(b"rd.rustlive.syslog=http://x"), None);
        assert_eq!(syslog_target(b"root=live:http://h/i"), None);
        assert_eq!(parse("root=live:http://h/i").syslog, None);
        let e = Config::from_cmdline("rd.rustlive.syslog=udp://u:pw@h").unwrap_err();
        assert_eq!(e.option, "rd.rustlive.syslog");
        assert!(!e.value.contains("pw"), "{e}");
    }

    #[test]
    fn oci_sources() {
        let d = format!("sha256:{H1}");
        let c = parse("root=live:oci://reg.site:5000/images/compute:v1");
        assert_eq!(urls(&c), ["oci://reg.site:5000/images/compute:v1"]);
        let c = parse(&format!(
            "rd.rustlive.url=oci://a:5000/img@{d},oci+http://b:5000/img@{d}"
        ));
        assert_eq!(c.image_urls().len(), 2);
        // Plain http: only pinned, or covered by a hash or signature.
        assert!(parse(&format!("root=live:oci+http://b/img@{d}"))
            .image
            .is_some());
        assert!(parse(&format!(
            "root=live:oci+http://b/img:v1 rd.rustlive.sha256={H1}"
        ))
        .image
        .is_some());
        assert!(
            parse("root=live:oci+http://b/img:v1 rd.rustlive.sig=https://h/s.minisig")
                .image
                .is_some()
        );
        for bad in [
            "root=live:oci+http://b/img:v1".to_string(),
            "rd.rustlive.url=oci://a/img:v1,http://h/img".to_string(),
            "rd.rustlive.url=oci://a/img:v1,oci://b/other:v1".to_string(),
            "root=live:oci://a/Img".to_string(),
            "root=live:oci://a/img@sha256:abc".to_string(),
            "root=live:ftp://a/img".to_string(),
        ] {
            let e = Config::from_cmdline(&bad).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
        let e = Config::from_cmdline("root=live:oci+http://b/img:v1").unwrap_err();
        assert!(e.reason.contains("plain-http registry"), "{e}");
        let e = Config::from_cmdline("root=live:ftp://a/img").unwrap_err();
        assert!(e.reason.contains("oci://"), "{e}");
    }

    #[test]
    fn mirror_policy() {
        // spread is the default: several mirrors are listed to share the load.
        assert_eq!(
            parse("root=live:http://h/i").transfer.mirrors,
            MirrorPolicy::Spread
        );
        let c = parse("rd.rustlive.url=http://a/i,http://b/i rd.rustlive.mirrors=listed");
        assert_eq!(c.transfer.mirrors, MirrorPolicy::Listed);
        assert_eq!(c.sources["transfer.mirrors"], "rd.rustlive.mirrors");
        let e = Config::from_cmdline("rd.rustlive.mirrors=random").unwrap_err();
        assert_eq!(e.option, "rd.rustlive.mirrors");
        assert!(e.reason.contains("spread or listed"), "{e}");
    }

    #[test]
    fn network_options() {
        let c = parse(
            "ip=eth0:dhcp ip=10.0.2.15::10.0.2.2:255.255.255.0:n1:eth1:none nameserver=10.0.2.3 \
             rd.rustlive.drivers=e1000,virtio-net rd.rustlive.drivers=igb rd.driver.blacklist=ice",
        );
        assert_eq!(c.network.ip.len(), 2);
        assert_eq!(c.network.ip[1].addr, Some("10.0.2.15".parse().unwrap()));
        assert_eq!(
            c.network.nameservers,
            ["10.0.2.3".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert_eq!(c.network.drivers, ["e1000", "virtio_net", "igb"]);
        assert_eq!(c.network.blacklist, ["ice"]);
        assert!(parse("").network.ip.is_empty());
        for (line, needle) in [
            ("ip=10.0.2.15::10.0.2.2:255.0.255.0::eth0:none", "ip"),
            ("ip=bogus", "ip"),
            ("nameserver=x", "nameserver"),
            ("rd.rustlive.drivers=../evil", "rd.rustlive.drivers"),
            ("rd.driver.blacklist=a;b", "rd.driver.blacklist"),
        ] {
            let e = Config::from_cmdline(line).unwrap_err();
            assert_eq!(e.option, needle, "{line}");
            assert!(line.contains(&e.value), "{line}: the value is named: {e}");
        }
    }

    #[test]
    fn the_plan_names_every_step_in_order() {
        let c = Config::from_cmdline(
            "ifname=mgmt:52:54:00:00:00:01 BOOTIF=01-52-54-00-00-00-01 \
             bond=bond0:eth1,eth2:mode=active-backup,miimon=100 vlan=vlan7:bond0 \
             ip=vlan7:dhcp ip=vlan7:auto6 nameserver=[fd00::53] rd.peerdns=0",
        )
        .unwrap();
        let p = c.network.plan();
        assert_eq!(
            p,
            [
                "rename the interface with MAC 52:54:00:00:00:01 to mgmt",
                "configure only the interface with hardware address 52:54:00:00:00:01 (BOOTIF)",
                "create bond bond0 (active-backup, miimon 100 ms) of eth1, eth2, up when any of them has carrier",
                "create VLAN vlan7 (802.1Q id 7) on bond0",
                "bond slaves and VLAN parents get no address of their own",
                "vlan7: DHCPv4",
                "vlan7: router advertisements: SLAAC, and DHCPv6 when the router asks for it",
                "name servers fd00::53 first",
                "name servers from DHCP and router advertisements are not used (rd.peerdns=0)",
            ]
        );
        let d = Config::from_cmdline("").unwrap().network.plan();
        assert_eq!(
            d,
            ["DHCPv4 on every Ethernet or IPoIB interface with carrier; the first lease wins"]
        );
    }

    /// Every dracut network option the dracut path may see is accepted (dracut.cmdline(7)),
    /// and the rules across them hold.
    #[test]
    fn dracut_network_options() {
        let c = Config::from_cmdline(
            "root=live:http://[fd00::1]:8080/img ip=eth0:dhcp ip=eth0:dhcp6 \
             ip=[fd00::10]::[fd00::1]:64:n1:eth1:none nameserver=10.0.2.3 nameserver=[fd00::53] \
             vlan=vlan100:eth2 bond=bond0:eth3,eth4:mode=802.3ad,miimon=100 \
             ifname=boot0:52:54:00:12:34:56 BOOTIF=01-52-54-00-12-34-56 rd.neednet=1 rd.peerdns=0",
        )
        .unwrap();
        let n = &c.network;
        assert_eq!(n.ip.len(), 3);
        assert_eq!(n.nameservers.len(), 2);
        assert_eq!((n.vlans.len(), n.bonds.len(), n.ifnames.len()), (1, 1, 1));
        assert!(n.bootif.is_some());
        assert_eq!((n.neednet, n.peerdns), (Some(true), false));
        assert_eq!(
            c.sources.get("network.vlans").map(String::as_str),
            Some("vlan")
        );
        // rd.bootif=0 turns BOOTIF off, before or after it.
        for line in [
            "BOOTIF=01-52-54-00-12-34-56 rd.bootif=0",
            "rd.bootif=0 BOOTIF=01-52-54-00-12-34-56",
        ] {
            assert_eq!(
                Config::from_cmdline(line).unwrap().network.bootif,
                None,
                "{line}"
            );
        }
        // rd.neednet=1 alone asks for the network.
        assert!(Config::from_cmdline("rd.neednet=1").unwrap().needs_network);
        assert!(!Config::from_cmdline("rd.neednet=0").unwrap().needs_network);
        // A bare `bond` is dracut's default bond.
        assert_eq!(
            Config::from_cmdline("bond").unwrap().network.bonds[0].name,
            "bond0"
        );
        for (line, option, why) in [
            ("ip=eth0:dhcp ip=eth0:on", "ip", "two IPv4"),
            ("ip=eth0:auto6 ip=eth0:dhcp6", "ip", "two IPv6"),
            ("ip=dhcp ip=dhcp", "ip", "two IPv4"),
            (
                "vlan=vlan5:eth0 vlan=vlan5:eth1",
                "vlan/bond",
                "declared twice",
            ),
            (
                "vlan=vlan5:eth0 bond=bond0:vlan5,eth1",
                "bond",
                "slave vlan5",
            ),
            (
                "ifname=a:52:54:00:12:34:56 ifname=b:52:54:00:12:34:56",
                "ifname",
                "named twice",
            ),
            ("vlan=eth0", "vlan", "NAME:PARENT"),
            ("BOOTIF=zz", "BOOTIF", "boot interface"),
            ("rd.peerdns=maybe", "rd.peerdns", ""),
        ] {
            let e = Config::from_cmdline(line).unwrap_err();
            assert_eq!(e.option, option, "{line}: {e}");
            assert!(e.reason.contains(why), "{line}: {e}");
        }
        // One IPv4 and one IPv6 configuration on the same interface: dual stack.
        assert!(Config::from_cmdline("ip=eth0:dhcp ip=eth0:auto6").is_ok());
    }

    #[test]
    fn defaults() {
        let c = parse("root=live:http://h/i");
        assert_eq!(c.transfer.timeout, None);
        assert_eq!(c.transfer.retries, None);
        assert_eq!(c.transfer.stall, Duration::from_secs(30));
        assert_eq!(c.transfer.minmem, 512 << 20);
        assert!(!c.transfer.insecure_tls);
        assert_eq!(c.root.overlay_size, Size::Percent(50));
        assert_eq!(
            (c.root.live_dir.as_str(), c.root.squash_img.as_str()),
            ("LiveOS", "squashfs.img")
        );
        assert_eq!(c.root.init, std::path::Path::new("/sbin/init"));
        assert_eq!(c.failure.onfail, OnFail::Shell);
        assert_eq!(c.failure.delay, Duration::from_secs(30));
        assert!(!c.verify.required && !c.debug);
        // secrets are required by default only when a source is in use
        assert!(c.secrets.required(true));
        assert!(!c.secrets.required(false));
    }

    #[test]
    fn booleans_bare_and_valued() {
        for (line, want) in [
            ("rd.rustlive.debug", true),
            ("rd.rustlive.debug=1", true),
            ("rd.rustlive.debug=on", true),
            ("rd.rustlive.debug=off", false),
            ("rd.rustlive.debug rd.rustlive.debug=0", false),
            ("rd.rustlive.debug=no rd.rustlive.debug", true),
        ] {
            assert_eq!(parse(line).debug, want, "{line}");
        }
        assert!(parse("rd.noverifyssl=1").transfer.insecure_tls);
        assert!(!parse("rd.noverifyssl=0").transfer.insecure_tls);
        assert_eq!(
            parse("rd.rustlive.secrets.required=1").secrets.required_opt,
            Some(true)
        );
    }

    #[test]
    fn timeout_zero_means_no_limit() {
        assert_eq!(parse("rd.rustlive.timeout=0").transfer.timeout, None);
        assert_eq!(
            parse("rd.rustlive.timeout=90").transfer.timeout,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn overlay_size_and_aliases() {
        let cases: &[(&str, Size, &str)] = &[
            (
                "rd.rustlive.overlay.size=75%",
                Size::Percent(75),
                "rd.rustlive.overlay.size",
            ),
            (
                "rd.rustlive.overlay.size=1073741824",
                Size::Bytes(1 << 30),
                "rd.rustlive.overlay.size",
            ),
            (
                "rd.live.overlay.size=4096",
                Size::Bytes(4096 << 20),
                "rd.live.overlay.size",
            ),
            (
                "rd.overlay=tmpfs:size=3G",
                Size::Bytes(3 << 30),
                "rd.overlay",
            ),
            ("rd.overlay=tmpfs:size=25%", Size::Percent(25), "rd.overlay"),
            // the rustlive option wins over the aliases in either order
            (
                "rd.rustlive.overlay.size=1G rd.live.overlay.size=4096",
                Size::Bytes(1 << 30),
                "rd.rustlive.overlay.size",
            ),
            (
                "rd.live.overlay.size=4096 rd.rustlive.overlay.size=1G",
                Size::Bytes(1 << 30),
                "rd.rustlive.overlay.size",
            ),
            // between aliases, the last one wins
            (
                "rd.live.overlay.size=100 rd.overlay=tmpfs:size=2G",
                Size::Bytes(2 << 30),
                "rd.overlay",
            ),
        ];
        for (line, size, src) in cases {
            let c = parse(line);
            assert_eq!(c.root.overlay_size, *size, "{line}");
            assert_eq!(c.sources["root.overlay_size"], *src, "{line}");
        }
    }

    #[test]
    fn minmem_and_init_aliases() {
        assert_eq!(parse("rd.minmem=2048").transfer.minmem, 2048 << 20);
        assert_eq!(
            parse("rd.rustlive.minmem=64 rd.minmem=2048")
                .transfer
                .minmem,
            64 << 20
        );
        assert_eq!(
            parse("rd.minmem=2048 rd.rustlive.minmem=64")
                .transfer
                .minmem,
            64 << 20
        );
        let c = parse("init=/bin/sh");
        assert_eq!(c.root.init, std::path::Path::new("/bin/sh"));
        assert_eq!(c.sources["root.init"], "init");
        let c = parse("rd.rustlive.init=/sbin/x init=/bin/sh");
        assert_eq!(c.root.init, std::path::Path::new("/sbin/x"));
        assert_eq!(c.sources["root.init"], "rd.rustlive.init");
    }

    #[test]
    fn livenet_flags_are_accepted_silently() {
        let c = parse(
            "rd.live.image rd.live.overlay.overlayfs=1 rd.overlay rd.live.ram=1 rd.overlay=tmpfs",
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn persistent_overlay_device_is_a_warning() {
        let c = parse("rd.overlay=LABEL=persist");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("rd.overlay"), "{:?}", c.warnings);
    }

    #[test]
    fn proxy_forms() {
        for (v, want) in [
            ("http://p:3128", "http://p:3128/"),
            ("p.site:8080", "http://p.site:8080/"),
            ("https://p.site", "https://p.site/"),
        ] {
            let c = parse(&format!("proxy={v}"));
            assert_eq!(c.transfer.proxy.unwrap().as_str(), want, "{v}");
        }
    }

    #[test]
    fn unknown_rustlive_keys_warn_with_a_suggestion() {
        let c = parse("rd.rustlive.sha265=abc rd.rustlive.frobnicate rd.something.else=1 foo=bar");
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("rd.rustlive.sha265"));
        assert!(
            c.warnings[0].contains("did you mean rd.rustlive.sha256"),
            "{}",
            c.warnings[0]
        );
        assert!(c.warnings[1].contains("rd.rustlive.frobnicate"));
        assert!(!c.warnings[1].contains("did you mean"));
    }

    #[test]
    fn every_bad_value_names_its_option() {
        let h63 = &H1[1..];
        let cases: Vec<(String, &str)> = vec![
            ("root=live:ftp://h/i".into(), "root"),
            ("root=https://".into(), "root"),
            ("root=live:nfs://h/i".into(), "root"),
            ("rd.rustlive.url=".into(), "rd.rustlive.url"),
            ("rd.rustlive.url".into(), "rd.rustlive.url"),
            ("rd.rustlive.url=,".into(), "rd.rustlive.url"),
            (
                "rd.rustlive.url=http://a/1,tftp://b/2".into(),
                "rd.rustlive.url",
            ),
            ("rd.rustlive.url=/images/root.img".into(), "rd.rustlive.url"),
            (format!("rd.rustlive.sha256={h63}"), "rd.rustlive.sha256"),
            (format!("rd.rustlive.sha256={H1}0"), "rd.rustlive.sha256"),
            (format!("rd.rustlive.sha256=g{h63}"), "rd.rustlive.sha256"),
            ("rd.rustlive.sha256".into(), "rd.rustlive.sha256"),
            (
                "rd.rustlive.sha256sums=sums.txt".into(),
                "rd.rustlive.sha256sums",
            ),
            ("rd.rustlive.sig=gopher://h/x".into(), "rd.rustlive.sig"),
            ("rd.rustlive.verify=always".into(), "rd.rustlive.verify"),
            ("rd.rustlive.timeout=soon".into(), "rd.rustlive.timeout"),
            ("rd.rustlive.timeout=-1".into(), "rd.rustlive.timeout"),
            ("rd.rustlive.timeout=5d".into(), "rd.rustlive.timeout"),
            ("rd.rustlive.retries=many".into(), "rd.rustlive.retries"),
            ("rd.rustlive.retries=-1".into(), "rd.rustlive.retries"),
            (
                "rd.rustlive.retries=99999999999".into(),
                "rd.rustlive.retries",
            ),
            ("rd.rustlive.stall=0".into(), "rd.rustlive.stall"),
            ("rd.rustlive.stall=1.5".into(), "rd.rustlive.stall"),
            ("rd.rustlive.ca=ca.pem".into(), "rd.rustlive.ca"),
            ("rd.rustlive.ca=/etc/../ca.pem".into(), "rd.rustlive.ca"),
            ("rd.noverifyssl=sometimes".into(), "rd.noverifyssl"),
            ("proxy=socks5://p:1080".into(), "proxy"),
            ("proxy=".into(), "proxy"),
            ("rd.rustlive.minmem=lots".into(), "rd.rustlive.minmem"),
            ("rd.minmem=12Q".into(), "rd.minmem"),
            (
                "rd.rustlive.overlay.size=12Q".into(),
                "rd.rustlive.overlay.size",
            ),
            (
                "rd.rustlive.overlay.size=0%".into(),
                "rd.rustlive.overlay.size",
            ),
            (
                "rd.rustlive.overlay.size=150%".into(),
                "rd.rustlive.overlay.size",
            ),
            (
                "rd.rustlive.overlay.size=".into(),
                "rd.rustlive.overlay.size",
            ),
            ("rd.live.overlay.size=big".into(), "rd.live.overlay.size"),
            ("rd.overlay=tmpfs:size=huge".into(), "rd.overlay"),
            ("rd.overlay=tmpfs:mode=0755".into(), "rd.overlay"),
            ("rd.live.image=maybe".into(), "rd.live.image"),
            (
                "rd.live.overlay.overlayfs=2".into(),
                "rd.live.overlay.overlayfs",
            ),
            ("rd.live.ram=x".into(), "rd.live.ram"),
            ("rd.live.dir=../etc".into(), "rd.live.dir"),
            ("rd.live.dir=".into(), "rd.live.dir"),
            ("rd.live.squashimg=a/b.img".into(), "rd.live.squashimg"),
            ("rd.live.squashimg=..".into(), "rd.live.squashimg"),
            ("rd.rustlive.init=sbin/init".into(), "rd.rustlive.init"),
            ("init=bash".into(), "init"),
            (
                "rd.rustlive.secrets=ftp://h/s.json".into(),
                "rd.rustlive.secrets",
            ),
            (
                "rd.rustlive.secrets=https://h/{serial}.json".into(),
                "rd.rustlive.secrets",
            ),
            (
                "rd.rustlive.secrets=https://h/{mac.json".into(),
                "rd.rustlive.secrets",
            ),
            (
                "rd.rustlive.secrets.sealed=yes".into(),
                "rd.rustlive.secrets.sealed",
            ),
            (
                "rd.rustlive.secrets=secrets.json".into(),
                "rd.rustlive.secrets",
            ),
            (
                "rd.rustlive.secrets.sha256=abc".into(),
                "rd.rustlive.secrets.sha256",
            ),
            (
                "rd.rustlive.secrets.cert=c.pem".into(),
                "rd.rustlive.secrets.cert",
            ),
            (
                "rd.rustlive.secrets.cert=/c.pem".into(),
                "rd.rustlive.secrets.cert",
            ),
            (
                "rd.rustlive.secrets.key=/k.pem".into(),
                "rd.rustlive.secrets.key",
            ),
            (
                "rd.rustlive.secrets.key=k.pem".into(),
                "rd.rustlive.secrets.key",
            ),
            (
                "rd.rustlive.secrets.required=perhaps".into(),
                "rd.rustlive.secrets.required",
            ),
            ("rd.rustlive.onfail=explode".into(), "rd.rustlive.onfail"),
            ("rd.rustlive.onfail".into(), "rd.rustlive.onfail"),
            (
                "rd.rustlive.onfail.delay=later".into(),
                "rd.rustlive.onfail.delay",
            ),
            ("rd.rustlive.debug=verbose".into(), "rd.rustlive.debug"),
        ];
        for (line, option) in &cases {
            match Config::from_cmdline(line) {
                Ok(_) => panic!("{line:?} should be refused"),
                Err(e) => {
                    assert_eq!(e.option, *option, "{line:?}: {e}");
                    let msg = e.to_string();
                    assert!(msg.contains(option), "{msg}");
                }
            }
        }
    }

    #[test]
    fn failure_policy_survives_other_bad_values() {
        let f = failure_policy(
            b"rd.rustlive.sha256=xyz rd.rustlive.onfail=reboot rd.rustlive.onfail.delay=5",
        );
        assert_eq!(
            (f.onfail, f.delay),
            (OnFail::Reboot, Duration::from_secs(5))
        );
        let f = failure_policy(b"rd.rustlive.onfail=reboot rd.rustlive.onfail=explode");
        assert_eq!(f.onfail, OnFail::Shell);
        let f = failure_policy(b"rd.rustlive.onfail=poweroff rd.rustlive.onfail.delay=soon");
        assert_eq!(f, Config::default().failure);
        assert_eq!(failure_policy(b""), Config::default().failure);
    }

    #[test]
    fn unpinned_http_secrets_and_the_sealed_policy_parse() {
        let c =
            parse("rd.rustlive.secrets=http://h/{mac}.sealed rd.rustlive.secrets.sealed=required");
        assert!(c.secrets.source.is_some());
        assert!(c.secrets.sealed_required);
        assert!(
            !parse("rd.rustlive.secrets.sealed=optional")
                .secrets
                .sealed_required
        );
        assert!(!Config::default().secrets.sealed_required);
    }

    #[test]
    fn http_secrets_are_accepted_when_pinned() {
        let c = parse(&format!(
            "rd.rustlive.secrets=http://h/{{hostname}}.json rd.rustlive.secrets.sha256={H1}"
        ));
        assert!(c.secrets.source.is_some());
    }

    #[test]
    fn errors_never_echo_url_credentials_or_queries() {
        let e =
            Config::from_cmdline("rd.rustlive.url=gopher://user:pw@h/x?token=s3cr3t").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("pw@") && !msg.contains("s3cr3t"), "{msg}");
        let e =
            Config::from_cmdline("rd.rustlive.secrets=ftp://h/s.json?token=s3cr3t").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn json_output_redacts_urls() {
        let c = parse("rd.rustlive.url=https://u:pw@h/img?sig=abc");
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("https://h/img"), "{json}");
        assert!(!json.contains("pw") && !json.contains("sig=abc"), "{json}");
    }

    /// Issue 9, item 13: the secrets source (with its password and token) and a mirror list
    /// whose second URL has credentials.
    #[test]
    fn config_output_and_errors_redact_every_url() {
        let c = parse(&format!(
            "root=live:http://h/i rd.rustlive.secrets=https://bob:hunter2@s/{{mac}}?token=t0k \
             rd.rustlive.secrets.sha256={H1}"
        ));
        let json = serde_json::to_string_pretty(&c).unwrap();
        assert!(json.contains("https://s/{mac}"), "{json}");
        for leak in ["hunter2", "bob", "t0k"] {
            assert!(!json.contains(leak), "{leak} in {json}");
        }
        let e =
            Config::from_cmdline("rd.rustlive.url=http://a:pw1@m1/i,gopher://b:pw2@m2/i?token=t2")
                .unwrap_err();
        let msg = e.to_string();
        for leak in ["pw1", "pw2", "t2"] {
            assert!(!msg.contains(leak), "{leak} in {msg}");
        }
    }

    /// Issue 9, item 10: a byte that is not UTF-8 in a word that is not rustlive's does not
    /// matter; in one of rustlive's it is a clear error naming the option.
    #[test]
    fn non_utf8_words_matter_only_when_they_are_rustlive_options() {
        let c = Config::from_cmdline_bytes(
            b"BOOT_IMAGE=/vmlinuz-caf\xe9 root=LABEL=r\xf8ot quiet root=live:http://h/i",
        )
        .unwrap();
        assert_eq!(c.image_urls().len(), 1);
        let c = Config::from_cmdline_bytes(b"root=live:http://h/i root=LABEL=\xff").unwrap();
        assert!(c.image.is_none(), "a later disk root cancels the URL");
        for (line, option) in [
            (&b"root=live:http://h/\xffimg"[..], "root"),
            (b"root=live:http://h/i rd.live.dir=Live\xff", "rd.live.dir"),
            (
                b"root=live:http://h/i rd.rustlive.typo\xff=1",
                "rd.rustlive.typo\u{fffd}",
            ),
        ] {
            let e = Config::from_cmdline_bytes(line).unwrap_err();
            assert_eq!(e.option, option);
            assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        }
    }

    /// Issue 9, item 11: what the mount and secrets stages always refuse, `config` refuses.
    #[test]
    fn config_refuses_what_a_later_stage_would() {
        for (line, option) in [
            ("rd.rustlive.overlay.size=0", "rd.rustlive.overlay.size"),
            ("rd.rustlive.overlay.size=0G", "rd.rustlive.overlay.size"),
            ("rd.live.overlay.size=0", "rd.live.overlay.size"),
            ("rd.overlay=tmpfs:size=0", "rd.overlay"),
            ("rd.rustlive.secrets=FTP://h/s.json", "rd.rustlive.secrets"),
            (
                "rd.rustlive.sha256=+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0",
                "rd.rustlive.sha256",
            ),
            ("rd.rustlive.timeout=18446744073709551615", "rd.rustlive.timeout"),
            ("rd.rustlive.stall=18446744073709551615", "rd.rustlive.stall"),
            ("rd.rustlive.onfail.delay=999999999999", "rd.rustlive.onfail.delay"),
        ] {
            let e = Config::from_cmdline(line).expect_err(line);
            assert_eq!(e.option, option, "{line}: {e}");
        }
        // An upper-case https scheme is https, and the hooks see it as a network source.
        let c = parse("root=live:http://h/i rd.rustlive.secrets=HTTPS://s/{mac}");
        assert!(serde_json::to_string(&c)
            .unwrap()
            .contains("\"https://s/{mac}\""));
    }

    #[test]
    fn torrent_sources() {
        let t = |c: &Config| c.torrent().map(Url::to_string);
        // livenet's spelling, fetched over http; the https form; rd.rustlive.torrent.
        let c = parse("root=live:torrent://boot:8080/images/a.torrent");
        assert_eq!(t(&c).as_deref(), Some("http://boot:8080/images/a.torrent"));
        assert!(urls(&c).is_empty() && c.needs_network);
        assert_eq!(c.sources["image.torrent"], "root");
        let c = parse("root=live:torrent+https://boot/a.torrent");
        assert_eq!(t(&c).as_deref(), Some("https://boot/a.torrent"));
        let c = parse(
            "rd.rustlive.torrent=https://boot/a.torrent rd.rustlive.url=http://m1/a,https://m2/a",
        );
        assert_eq!(t(&c).as_deref(), Some("https://boot/a.torrent"));
        // The mirrors beside it are its web seeds.
        assert_eq!(urls(&c), ["http://m1/a", "https://m2/a"]);
        assert_eq!(c.image_hosts(), ["boot", "m1", "m2"]);
        // root= as a plain URL beside rd.rustlive.torrent: a web seed too.
        let c = parse("root=live:http://r/a rd.rustlive.torrent=torrent://b/a.torrent");
        assert_eq!(urls(&c), ["http://r/a"]);
        assert_eq!(t(&c).as_deref(), Some("http://b/a.torrent"));
        // The same torrent twice is one torrent; a later root= cancels an earlier one.
        let c = parse("root=live:torrent://b/a.torrent rd.rustlive.torrent=http://b/a.torrent");
        assert_eq!(t(&c).as_deref(), Some("http://b/a.torrent"));
        assert_eq!(
            parse("root=live:torrent://b/a.torrent root=/dev/sda").image,
            None
        );
        assert_eq!(parse("root=live:http://a/1").torrent(), None);
    }

    #[test]
    fn torrent_settings_and_defaults() {
        let d = parse("root=live:torrent://b/a.torrent");
        assert_eq!(d.swarm.port, 6881);
        assert_eq!(d.swarm.seed, Duration::from_secs(900));
        assert_eq!(d.swarm.seed_rate.map(NonZeroU64::get), Some(32 << 20));
        let c = parse(
            "root=live:torrent://b/a.torrent rd.rustlive.bt.port=7000 rd.rustlive.seed=40s \
             rd.rustlive.seed.rate=10M",
        );
        assert_eq!(c.swarm.port, 7000);
        assert_eq!(c.swarm.seed, Duration::from_secs(40));
        assert_eq!(c.swarm.seed_rate.map(NonZeroU64::get), Some(10 << 20));
        let c = parse("rd.rustlive.seed=0 rd.rustlive.seed.rate=0 rd.rustlive.bt.port=0");
        assert!(c.swarm.seed.is_zero() && c.swarm.seed_rate.is_none() && c.swarm.port == 0);
        // `rustlive config` shows them.
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.contains("\"torrent\":\"http://b/a.torrent\""),
            "{json}"
        );
        assert!(
            json.contains("\"swarm\":{\"port\":6881,\"seed\":900,\"seed_rate\":33554432}"),
            "{json}"
        );
    }

    #[test]
    fn torrent_mistakes_are_refused_in_one_sentence() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "rd.rustlive.torrent=http://a/1.torrent,http://b/2.torrent",
                "rd.rustlive.torrent",
                "one torrent only",
            ),
            (
                "rd.rustlive.torrent=http://a/1.torrent rd.rustlive.torrent=http://b/2.torrent",
                "rd.rustlive.torrent",
                "a second, different torrent",
            ),
            (
                "root=live:torrent://a/1.torrent rd.rustlive.torrent=http://b/2.torrent",
                "rd.rustlive.torrent",
                "root= names another torrent",
            ),
            (
                "rd.rustlive.torrent=http://a/1.torrent rd.rustlive.url=oci://reg/r:t",
                "rd.rustlive.url",
                "cannot come through a torrent",
            ),
            (
                "rd.rustlive.torrent=http://a/1.torrent rd.rustlive.url=file:///i",
                "rd.rustlive.url",
                "web seeds: http or https",
            ),
            (
                "rd.rustlive.torrent=ftp://a/1.torrent",
                "rd.rustlive.torrent",
                "unsupported scheme",
            ),
            ("root=live:torrent://", "root", "not a URL"),
            (
                "rd.rustlive.bt.port=65536",
                "rd.rustlive.bt.port",
                "port number",
            ),
            ("rd.rustlive.seed=1y", "rd.rustlive.seed", "duration"),
            (
                "rd.rustlive.seed.rate=fast",
                "rd.rustlive.seed.rate",
                "expected a number",
            ),
        ];
        for (line, option, reason) in cases {
            let e = Config::from_cmdline(line).unwrap_err();
            assert_eq!(e.option, *option, "{line}: {e}");
            assert!(e.reason.contains(reason), "{line}: {e}");
            assert!(!e.to_string().contains('\n'), "{line}: {e}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn parser_never_panics(s in "\\PC*") {
            let _ = Config::from_cmdline(&s);
        }

        #[test]
        fn byte_parser_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Config::from_cmdline_bytes(&b);
            let _ = failure_policy(&b);
        }

        #[test]
        fn parser_never_panics_on_known_keys(
            key in proptest::sample::select(RUSTLIVE_KEYS.iter().copied().chain([
                "root", "proxy", "init", "rd.minmem", "rd.overlay", "rd.live.dir",
                "rd.live.squashimg", "rd.live.overlay.size", "rd.noverifyssl",
            ]).collect::<Vec<_>>()),
            value in "[ -~]{0,80}",
        ) {
            let _ = Config::from_cmdline(&format!("{key}={value}"));
            let _ = Config::from_cmdline(&format!("{key}=\"{value}\""));
        }

        #[test]
        fn torrent_urls_are_http_or_https(s in "(torrent|torrent\\+https?|https?|ftp)://[ -~]{0,60}") {
            if let Ok(u) = parse_torrent_url(&s) {
                proptest::prop_assert!(matches!(u.scheme(), "http" | "https"));
                proptest::prop_assert!(u.host_str().is_some_and(|h| !h.is_empty()));
            }
        }
    }
}
