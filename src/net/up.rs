//! The network stage of the standalone initramfs: drivers for the devices present, Ethernet
//! links up and with carrier, then `ip=` (DHCP by default, or a static address), routes, MTU,
//! `/etc/resolv.conf` and `/run/rustlive/lease.json`. The address stays for the booted system.

use super::dhcp::{self, Candidate, DhcpError, Lease};
use super::rtnl::{Rtnl, RtnlError};
use crate::config::ipconfig::{IpConfig, Method};
use crate::config::netdev::{Bond, BootIf, IfName, Vlan};
use crate::drivers::coldplug::Unclaimed;
use crate::support::deadline::Deadline;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long links get to report carrier after they are set up, within the deadline.
pub const LINK_WAIT: Duration = Duration::from_secs(15);
/// Without `rd.rustlive.timeout`, the network gets this long (dracut's initqueue waits 180 s
/// before giving up on the root, too).
pub const DEFAULT_NET_TIMEOUT: Duration = Duration::from_secs(180);
pub const LEASE_FILE: &str = "/run/rustlive/lease.json";
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{}", .0.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("; "))]
    NoDriver(Vec<Unclaimed>),
    #[error("no Ethernet interface found (no network device, or its driver failed to load; see the kernel log)")]
    NoNic,
    #[error("no link with carrier on {} after {waited_secs} s (is the cable or the switch port up?)", .links.join(", "))]
    NoCarrier {
        links: Vec<String>,
        waited_secs: u64,
    },
    /// A form the command line may carry (the dracut path's network managers read it) that
    /// this initramfs does not configure.
    #[error("{0} is not configured by the standalone initramfs (boot it with the dracut module)")]
    Unsupported(String),
    #[error("interface {0} named by ip= does not exist (present: {1})")]
    NoSuchIface(String, String),
    #[error(transparent)]
    Dhcp(#[from] DhcpError),
    #[error(transparent)]
    V6(#[from] super::up6::Net6Error),
    #[error("cannot configure the network")]
    Rtnl(#[from] RtnlError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An Ethernet interface, from `/sys/class/net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Ethernet interfaces (ARPHRD_ETHER, a real device behind it) under `sys`, sorted by name.
pub fn ethernet_links(sys: &Path) -> Vec<Link> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(sys.join("class/net")) else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        if read("type").trim() != "1" || !p.join("device").exists() {
            continue;
        }
        let (Ok(index), Some(mac)) = (read("ifindex").trim().parse(), parse_mac(&read("address")))
        else {
            continue;
        };
        out.push(Link {
            name: e.file_name().to_string_lossy().into_owned(),
            index,
            mac,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Carrier, and the kernel has finished bringing the link up: `operstate` turns `up` only once
/// linkwatch has activated the queueing discipline (up to a second after carrier), and a
/// DISCOVER sent before that is silently dropped, costing a 4 s retransmission.
fn has_carrier(sys: &Path, name: &str) -> bool {
    let read = |f: &str| {
        std::fs::read_to_string(sys.join("class/net").join(name).join(f)).unwrap_or_default()
    };
    read("carrier").trim() == "1" && matches!(read("operstate").trim(), "up" | "unknown" | "")
}

/// Whether some interface other than loopback already has an IPv4 address (the kernel's own
/// `ip=` autoconfiguration, or a second run).
fn already_configured() -> Option<(String, Ipv4Addr)> {
    super::rtnl::addresses()
        .ok()?
        .into_iter()
        .find_map(|i| match i.addr {
            std::net::IpAddr::V4(a) if !a.is_loopback() => Some((i.ifname, a)),
            _ => None,
        })
}

/// What the booted system inherits, as `/run/rustlive/lease.json`.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub method: Method,
    pub iface: &'a str,
    pub mac: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: &'a [IpAddr],
    pub domain: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub mtu: Option<u16>,
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    pub server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    /// Seconds since boot when the lease was obtained (CLOCK_BOOTTIME has no wall clock yet).
    pub obtained_uptime_secs: f64,
}

/// `/etc/resolv.conf` for musl's resolver (at most 3 servers are used).
pub fn resolv_conf(servers: &[IpAddr], domain: Option<&str>) -> String {
    let mut s = String::from("# written by rustlive (standalone initramfs)\n");
    if let Some(d) = domain {
        s.push_str(&format!("search {d}\n"));
    }
    let mut seen = Vec::new();
    for n in servers {
        if !seen.contains(n) {
            seen.push(*n);
            s.push_str(&format!("nameserver {n}\n"));
        }
    }
    s
}

/// Whether `gw` is inside `addr/prefix` (else the route to it is added on-link).
pub fn in_subnet(addr: Ipv4Addr, prefix: u8, gw: Ipv4Addr) -> bool {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix.min(32))))
        .unwrap_or(0);
    u32::from(addr) & mask == u32::from(gw) & mask
}

/// The routes a lease or a static `ip=` installs: the classless routes when there are any
/// (RFC 3442: they replace the router option), else a default route via the first router.
pub fn routes_for(
    routers: &[Ipv4Addr],
    classless: &[(Ipv4Addr, u8, Ipv4Addr)],
) -> Vec<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
    if !classless.is_empty() {
        return classless
            .iter()
            .map(|(d, p, g)| (*d, *p, (!g.is_unspecified()).then_some(*g)))
            .collect();
    }
    routers
        .first()
        .map(|g| vec![(Ipv4Addr::UNSPECIFIED, 0, Some(*g))])
        .unwrap_or_default()
}

fn write(path: &str, text: &str) -> Result<(), NetError> {
    let p = Path::new(path);
    let fail = |source| NetError::Write {
        path: p.to_owned(),
        source,
    };
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(fail)?;
    }
    std::fs::write(p, text).map_err(fail)
}

/// What the network stage does (`ip=`, `nameserver=`, `rd.rustlive.drivers=`,
/// `rd.driver.blacklist=`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetOptions {
    /// Whether the boot needs the network at all: an image or a secrets bundle over the
    /// network (the configuration decided it once, for the dracut hooks as well). Drivers are
    /// loaded either way.
    pub needed: bool,
    /// Empty: DHCP on every Ethernet interface with carrier.
    pub ip: Vec<IpConfig>,
    /// Name servers ahead of the lease's.
    pub nameservers: Vec<IpAddr>,
    /// `vlan=`: 802.1Q devices to create.
    pub vlans: Vec<Vlan>,
    /// `bond=`: bonds to create.
    pub bonds: Vec<Bond>,
    /// `ifname=`: renames before use.
    pub ifnames: Vec<IfName>,
    /// `BOOTIF=`: the only interface to configure.
    pub bootif: Option<BootIf>,
    /// `rd.peerdns=0`: the lease's name servers are not used.
    pub peerdns: bool,
    /// Modules to load besides those the devices ask for.
    pub drivers: Vec<String>,
    /// Modules never loaded.
    pub blacklist: Vec<String>,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            needed: false,
            ip: Vec::new(),
            nameservers: Vec::new(),
            vlans: Vec::new(),
            bonds: Vec::new(),
            ifnames: Vec::new(),
            bootif: None,
            peerdns: true,
            drivers: Vec::new(),
            blacklist: Vec::new(),
        }
    }
}

/// The network stage: a no-op when the boot needs no network or it is already configured.
pub fn bring_up(opts: &NetOptions, deadline: &Deadline) -> Result<(), NetError> {
    let started = Instant::now();
    let report = crate::drivers::coldplug::load_drivers(&opts.drivers, &opts.blacklist);
    if !opts.needed {
        return Ok(());
    }
    if let Some((ifname, a)) = already_configured() {
        log::info!("network already configured ({a} on {ifname}); not running DHCP");
        return Ok(());
    }
    if let Some(form) = unsupported(opts) {
        return Err(NetError::Unsupported(form));
    }
    let specs: Vec<IpConfig> = if opts.ip.is_empty() {
        vec![crate::config::ipconfig::parse_ip("dhcp").map_err(|_| NetError::NoNic)?]
    } else {
        opts.ip
            .iter()
            .filter(|c| c.method != Method::Off)
            .cloned()
            .collect()
    };
    if specs.is_empty() {
        log::warn!("ip=off: not configuring the network");
        return Ok(());
    }
    let deadline = if deadline.is_limited() {
        *deadline
    } else {
        Deadline::after(Some(DEFAULT_NET_TIMEOUT))
    };
    let sys = Path::new("/sys");
    let links = ethernet_links(sys);
    if links.is_empty() {
        if !report.unclaimed.is_empty() {
            return Err(NetError::NoDriver(report.unclaimed));
        }
        return Err(NetError::NoNic);
    }
    for u in &report.unclaimed {
        log::warn!("{u}");
    }
    let names: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
    for c in &specs {
        if let Some(i) = &c.iface {
            if !names.contains(i) {
                return Err(NetError::NoSuchIface(i.clone(), names.join(", ")));
            }
        }
    }
    let wanted: Vec<&Link> = links
        .iter()
        .filter(|l| {
            specs
                .iter()
                .any(|c| c.iface.as_deref().is_none_or(|i| i == l.name))
        })
        .collect();
    let mut rt = Rtnl::open()?;
    for l in &wanted {
        rt.link_up(&l.name, l.index, None)?;
    }
    let up = wait_for_carrier(sys, &wanted, &deadline);
    if up.is_empty() {
        return Err(NetError::NoCarrier {
            links: wanted.iter().map(|l| l.name.clone()).collect(),
            waited_secs: started.elapsed().as_secs(),
        });
    }
    log::info!(
        "links with carrier: {}",
        up.iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // IPv6 (net::up6): alone when no ip= asks for IPv4, else on a thread beside it.
    let (specs, specs6): (Vec<IpConfig>, Vec<IpConfig>) =
        specs.into_iter().partition(|c| !super::up6::is_v6(c));
    let up6: Vec<super::up6::Link> = up
        .iter()
        .map(|l| super::up6::Link {
            name: l.name.clone(),
            index: l.index,
            mac: l.mac,
        })
        .collect();
    if specs.is_empty() {
        return Ok(super::up6::only(
            &specs6,
            &up6,
            &deadline,
            &opts.nameservers,
            opts.peerdns,
            started,
        )?);
    }
    let v6 = super::up6::start(&specs6, &up6, &deadline);

    // A static ip= for a link with carrier wins; otherwise DHCP on the links it names.
    let static_cfg = specs.iter().find_map(|c| {
        (c.method == Method::Static)
            .then(|| {
                up.iter()
                    .find(|l| c.iface.as_deref().is_none_or(|i| i == l.name))
                    .map(|l| (c, *l))
            })
            .flatten()
    });
    let (lease, method, v6) = match static_cfg {
        Some((c, l)) => (static_lease(c, l), Method::Static, v6),
        None => {
            let cands: Vec<Candidate> = up
                .iter()
                .filter(|l| {
                    specs.iter().any(|c| {
                        c.method == Method::Dhcp && c.iface.as_deref().is_none_or(|i| i == l.name)
                    })
                })
                .map(|l| Candidate {
                    name: l.name.clone(),
                    mac: l.mac,
                })
                .collect();
            if cands.is_empty() {
                return Err(NetError::NoCarrier {
                    links: wanted.iter().map(|l| l.name.clone()).collect(),
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            match (dhcp::acquire(&cands, &deadline), v6) {
                (Ok(l), v6) => (l, Method::Dhcp, v6),
                (Err(e), Some(p)) => {
                    return if super::up6::v4_failed(p, &e, &opts.nameservers, opts.peerdns) {
                        Ok(())
                    } else {
                        Err(e.into())
                    }
                }
                (Err(e), None) => return Err(e.into()),
            }
        }
    };
    let link = up.iter().find(|l| l.name == lease.iface).copied();
    let Some(link) = link else {
        return Err(NetError::NoSuchIface(lease.iface.clone(), names.join(", ")));
    };
    // A host name from ip= wins over the server's.
    let hostname = specs
        .iter()
        .find_map(|c| c.hostname.clone())
        .or(lease.hostname.clone());
    let mtu = specs.iter().find_map(|c| c.mtu).or(lease.mtu);
    configure(&mut rt, link, &lease, mtu)?;
    let mut dns: Vec<IpAddr> = opts.nameservers.clone();
    if opts.peerdns {
        dns.extend(lease.dns.iter().map(|&d| IpAddr::V4(d)));
    }
    write(RESOLV_CONF, &resolv_conf(&dns, lease.domain.as_deref()))?;
    if let Some(h) = &hostname {
        if let Err(e) = crate::sys::hostname::set(h) {
            log::warn!("cannot set the host name {h}: {e}");
        }
    }
    let record = Record {
        method,
        iface: &lease.iface,
        mac: mac_string(&link.mac),
        addr: lease.addr,
        prefix: lease.prefix,
        gateway: lease.routers.first().copied(),
        dns: &dns,
        domain: lease.domain.as_deref(),
        hostname: hostname.as_deref(),
        mtu,
        routes: lease.routes.clone(),
        server: (method == Method::Dhcp).then_some(lease.server),
        lease_secs: lease.lease_secs,
        obtained_uptime_secs: uptime(),
    };
    let json = serde_json::to_string_pretty(&record).unwrap_or_default();
    write(LEASE_FILE, &format!("{json}\n"))?;
    log::info!(
        "network up in {:.1} s: {}/{} on {} ({}){}{}",
        started.elapsed().as_secs_f64(),
        lease.addr,
        lease.prefix,
        lease.iface,
        match method {
            Method::Dhcp => format!("DHCP from {}", lease.server),
            _ => "static".to_string(),
        },
        lease
            .routers
            .first()
            .map(|g| format!(", gateway {g}"))
            .unwrap_or_default(),
        if dns.is_empty() {
            String::new()
        } else {
            format!(
                ", DNS {}",
                dns.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    if let Some(p) = v6 {
        super::up6::after_v4(
            p,
            &opts.nameservers,
            &lease.dns,
            lease.domain.as_deref(),
            opts.peerdns,
        );
    }
    Ok(())
}

/// The first command-line form [`bring_up`] cannot configure yet, named as the user wrote it.
fn unsupported(opts: &NetOptions) -> Option<String> {
    if let Some(v) = opts.vlans.first() {
        return Some(format!("vlan={}:{}", v.name, v.parent));
    }
    if let Some(b) = opts.bonds.first() {
        return Some(format!("bond={}", b.name));
    }
    if let Some(i) = opts.ifnames.first() {
        return Some(format!("ifname={}", i.name));
    }
    if opts.bootif.is_some() {
        return Some("BOOTIF=".into());
    }
    None
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|u| u.parse().ok()))
        .unwrap_or(0.0)
}

/// A static `ip=` as a lease, so both take the same path to the kernel.
fn static_lease(c: &IpConfig, l: &Link) -> Lease {
    let v4 = |a: &IpAddr| match a {
        IpAddr::V4(v) => Some(*v),
        IpAddr::V6(_) => None,
    };
    Lease {
        iface: l.name.clone(),
        addr: c
            .addr
            .as_ref()
            .and_then(v4)
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
        prefix: c.prefix.unwrap_or(24),
        server: Ipv4Addr::UNSPECIFIED,
        routers: c.gateway.as_ref().and_then(v4).into_iter().collect(),
        dns: c.dns.iter().filter_map(v4).collect(),
        domain: None,
        hostname: c.hostname.clone(),
        mtu: c.mtu,
        routes: Vec::new(),
        lease_secs: None,
    }
}

fn configure(rt: &mut Rtnl, l: &Link, lease: &Lease, mtu: Option<u16>) -> Result<(), NetError> {
    if mtu.is_some() {
        rt.link_up(&l.name, l.index, mtu)?;
    }
    rt.add_address(&l.name, l.index, lease.addr, lease.prefix)?;
    for (dest, prefix, gw) in routes_for(&lease.routers, &lease.routes) {
        let onlink = gw.is_some_and(|g| !in_subnet(lease.addr, lease.prefix, g));
        rt.add_route(&l.name, l.index, dest, prefix, gw, onlink)?;
    }
    Ok(())
}

/// Links among `links` with carrier: waits until all have it, or until 2 s after the first
/// one did, or [`LINK_WAIT`], within `deadline`.
fn wait_for_carrier<'a>(sys: &Path, links: &[&'a Link], deadline: &Deadline) -> Vec<&'a Link> {
    let start = Instant::now();
    let limit = Deadline::after(Some(deadline.clamp(LINK_WAIT)));
    let mut first_up: Option<Instant> = None;
    loop {
        let up: Vec<&Link> = links
            .iter()
            .copied()
            .filter(|l| has_carrier(sys, &l.name))
            .collect();
        let now = Instant::now();
        if !up.is_empty() && first_up.is_none() {
            first_up = Some(now);
        }
        let grace_over =
            first_up.is_some_and(|t| now.saturating_duration_since(t) >= Duration::from_secs(2));
        if up.len() == links.len() || grace_over || limit.passed_at(now) {
            if up.is_empty() {
                log::warn!(
                    "no carrier on {} after {:.1} s",
                    links
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    start.elapsed().as_secs_f64()
                );
            }
            return up;
        }
        std::thread::sleep(limit.clamp_at(now, Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn resolv_conf_dedups_and_searches() {
        assert_eq!(
            resolv_conf(
                &[a("10.0.2.3").into(), a("10.0.2.3").into(), a("8.8.8.8").into()],
                Some("cluster.example")
            ),
            "# written by rustlive (standalone initramfs)\nsearch cluster.example\nnameserver 10.0.2.3\nnameserver 8.8.8.8\n"
        );
    }

    #[test]
    fn routes_prefer_classless() {
        assert_eq!(
            routes_for(&[a("10.0.2.2")], &[]),
            [(a("0.0.0.0"), 0, Some(a("10.0.2.2")))]
        );
        assert_eq!(
            routes_for(
                &[a("10.0.2.2")],
                &[
                    (a("192.168.0.0"), 16, a("10.0.2.9")),
                    (a("10.9.0.0"), 16, a("0.0.0.0"))
                ]
            ),
            [
                (a("192.168.0.0"), 16, Some(a("10.0.2.9"))),
                (a("10.9.0.0"), 16, None)
            ]
        );
        assert!(routes_for(&[], &[]).is_empty());
    }

    #[test]
    fn subnets() {
        assert!(in_subnet(a("10.0.2.15"), 24, a("10.0.2.2")));
        assert!(!in_subnet(a("10.0.2.15"), 24, a("10.0.3.2")));
        assert!(!in_subnet(a("10.0.2.15"), 32, a("10.0.2.2")));
        assert!(in_subnet(a("10.0.2.15"), 0, a("1.2.3.4")));
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56\n"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(
            mac_string(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "52:54:00:12:34:56"
        );
    }

    #[test]
    fn links_from_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let add = |name: &str, ty: &str, dev: bool| {
            let p = d.path().join("class/net").join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("type"), format!("{ty}\n")).unwrap();
            std::fs::write(p.join("ifindex"), "2\n").unwrap();
            std::fs::write(p.join("address"), "52:54:00:12:34:56\n").unwrap();
            std::fs::write(p.join("carrier"), "1\n").unwrap();
            std::fs::write(p.join("operstate"), "up\n").unwrap();
            if dev {
                std::fs::create_dir(p.join("device")).unwrap();
            }
        };
        add("lo", "772", false);
        add("eth0", "1", true);
        add("bond0", "1", false);
        let l = ethernet_links(d.path());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "eth0");
        assert!(has_carrier(d.path(), "eth0"));
        std::fs::write(d.path().join("class/net/eth0/operstate"), "down\n").unwrap();
        assert!(
            !has_carrier(d.path(), "eth0"),
            "carrier before linkwatch set the link up"
        );
        assert!(!has_carrier(d.path(), "eth9"));
    }
}
