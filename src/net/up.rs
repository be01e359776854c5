//! The network stage of the standalone initramfs: drivers for the devices present, `ifname=`
//! renames, bonds and VLANs ([`super::links`]), the interfaces to configure (`BOOTIF=`, `ip=`)
//! up and with carrier, then `ip=` (DHCP by default, or a static address), routes, MTU,
//! `/etc/resolv.conf`, `/run/rustlive/lease.json` and `/run/rustlive/lease-IFACE.json`. The
//! address and the links stay for the booted system.

use super::dhcp::{self, Candidate, DhcpError, Hw, Lease};
use super::links::{self, LinkError};
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
/// One lease file per configured interface, `lease-IFACE.json` in this directory, for the
/// booted system's tools (beside IPv6's `lease6-IFACE.json`).
pub const LEASE_DIR: &str = "/run/rustlive";
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{}", .0.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("; "))]
    NoDriver(Vec<Unclaimed>),
    #[error("no Ethernet or IPoIB interface found (no network device, or its driver failed to load; see the kernel log)")]
    NoNic,
    #[error("no link with carrier on {} after {waited_secs} s (is the cable or the switch port up?)", .links.join(", "))]
    NoCarrier {
        links: Vec<String>,
        waited_secs: u64,
    },
    #[error("interface {0} named by ip= does not exist (present: {1})")]
    NoSuchIface(String, String),
    #[error(transparent)]
    Dhcp(#[from] DhcpError),
    #[error(transparent)]
    Links(#[from] LinkError),
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

/// An interface, from `/sys/class/net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub hw: Hw,
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

/// `aa:bb:…` of any length (6 bytes on Ethernet, 20 on IPoIB) → bytes.
fn parse_hw(s: &str) -> Option<Hw> {
    let bytes: Option<Vec<u8>> = s
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    Hw::from_bytes(&bytes?)
}

/// Interface `name` under `sys`, whatever its kind (a bond, a VLAN): index and address.
pub fn read_link(sys: &Path, name: &str) -> Option<Link> {
    let p = sys.join("class/net").join(name);
    let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
    Some(Link {
        name: name.to_string(),
        index: read("ifindex").trim().parse().ok()?,
        hw: parse_hw(&read("address"))?,
    })
}

/// Physical Ethernet and IPoIB interfaces (ARPHRD_ETHER or ARPHRD_INFINIBAND, a real device
/// behind it) under `sys`, sorted by name.
pub fn physical_links(sys: &Path) -> Vec<Link> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(sys.join("class/net")) else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let ty = std::fs::read_to_string(p.join("type")).unwrap_or_default();
        if !matches!(ty.trim(), "1" | "32") || !p.join("device").exists() {
            continue;
        }
        if let Some(l) = read_link(sys, &e.file_name().to_string_lossy()) {
            out.push(l);
        }
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
    /// The interface's hardware address (20 bytes on IPoIB).
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
    /// The bonds and VLANs the network stage created (they stay for the booted system).
    pub created_links: Vec<String>,
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
    let sys = Path::new("/sys");
    let mut extra = opts.drivers.clone();
    extra.extend(links::modules(&opts.vlans, &opts.bonds));
    let report = crate::drivers::coldplug::load_drivers(&extra, &opts.blacklist);
    if links::has_infiniband(sys) {
        // ib_ipoib has no device alias: it attaches to every HCA coldplug found.
        links::load_modules(&["ib_ipoib"]);
    }
    if !opts.needed {
        return Ok(());
    }
    if let Some((ifname, a)) = already_configured() {
        log::info!("network already configured ({a} on {ifname}); not running DHCP");
        return Ok(());
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
    let mut phys = physical_links(sys);
    if phys.is_empty() {
        if !report.unclaimed.is_empty() {
            return Err(NetError::NoDriver(report.unclaimed));
        }
        return Err(NetError::NoNic);
    }
    for u in &report.unclaimed {
        log::warn!("{u}");
    }
    let mut rt = Rtnl::open()?;
    let (phys_names, plan, bootif) = set_up_links(&mut rt, sys, opts, &mut phys)?;
    let created = plan.created();
    let names: Vec<String> = phys_names.iter().chain(&created).cloned().collect();
    for c in &specs {
        if let Some(i) = &c.iface {
            if !names.contains(i) {
                return Err(NetError::NoSuchIface(i.clone(), names.join(", ")));
            }
        }
    }
    // ip= without an interface: the interfaces links::targets picks (BOOTIF's, or every one
    // that is not a slave or a VLAN's parent); ip=IFACE: that one.
    let leaves = links::targets(&phys_names, &plan, bootif.as_deref());
    let wanted: Vec<Link> = names
        .iter()
        .filter(|n| {
            specs.iter().any(|c| match &c.iface {
                None => leaves.contains(n),
                Some(i) => i == *n,
            })
        })
        .filter_map(|n| read_link(sys, n))
        .collect();
    let wanted: Vec<&Link> = wanted.iter().collect();
    for l in &wanted {
        rt.link_up(&l.name, l.index, None)?;
    }
    let up = wait_for_carrier(sys, &wanted, &deadline);
    if up.is_empty() {
        return Err(carrier_failure(sys, &wanted, &plan, started));
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
    // IPv6 runs on Ethernet links (VLANs and bonds included); IPoIB interface identifiers
    // (RFC 4391) are not built here, so an IPoIB link is configured over IPv4 only.
    let up6: Vec<super::up6::Link> = up
        .iter()
        .filter_map(|l| match l.hw {
            Hw::Ether(mac) => Some(super::up6::Link {
                name: l.name.clone(),
                index: l.index,
                mac,
            }),
            Hw::Infiniband(_) => None,
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
                    hw: l.hw,
                })
                .collect();
            if cands.is_empty() {
                return Err(carrier_failure(sys, &wanted, &plan, started));
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
        mac: link.hw.to_string(),
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
        created_links: created.clone(),
    };
    let json = serde_json::to_string_pretty(&record).unwrap_or_default();
    write(LEASE_FILE, &format!("{json}\n"))?;
    // Interface names come from the kernel (no '/', never "." or ".."): safe as a file name.
    write(
        &format!("{LEASE_DIR}/lease-{}.json", lease.iface),
        &format!("{json}\n"),
    )?;
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

/// `ifname=` renames, `BOOTIF=`'s interface, then the bonds and VLANs: the physical
/// interfaces' names afterwards, what was created, and the interface BOOTIF names.
fn set_up_links(
    rt: &mut Rtnl,
    sys: &Path,
    opts: &NetOptions,
    phys: &mut Vec<Link>,
) -> Result<(Vec<String>, links::Plan, Option<String>), NetError> {
    let hw =
        |p: &[Link]| -> Vec<(String, Hw)> { p.iter().map(|l| (l.name.clone(), l.hw)).collect() };
    let r = links::renames(&opts.ifnames, &hw(phys))?;
    for u in &r.unmatched {
        log::warn!(
            "ifname={}:{}: no interface has that MAC",
            u.name,
            Hw::Ether(u.mac)
        );
    }
    if !r.steps.is_empty() {
        links::apply_renames(rt, sys, &r.steps)?;
        *phys = physical_links(sys);
    }
    let present = hw(phys);
    let names: Vec<String> = phys.iter().map(|l| l.name.clone()).collect();
    let bootif = match &opts.bootif {
        None => None,
        Some(b) => {
            let Some(n) = links::bootif_link(b, &present) else {
                return Err(LinkError::NoBootIf {
                    bootif: links::bootif_string(b),
                    present: present
                        .iter()
                        .map(|(n, h)| format!("{n} {h}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into());
            };
            log::info!("BOOTIF={}: {n}", links::bootif_string(b));
            Some(n.to_string())
        }
    };
    let plan = links::plan(&names, &opts.vlans, &opts.bonds)?;
    links::apply(rt, sys, &plan)?;
    Ok((names, plan, bootif))
}

/// Why no interface to configure has carrier, in one sentence: a bond's slaves (also under a
/// VLAN on the bond), an IPoIB port that is not ACTIVE, or plain no carrier.
fn carrier_failure(sys: &Path, wanted: &[&Link], plan: &links::Plan, started: Instant) -> NetError {
    let waited_secs = started.elapsed().as_secs();
    for l in wanted {
        let under = plan
            .vlans
            .iter()
            .find(|v| v.name == l.name)
            .map_or(l.name.as_str(), |v| v.parent.as_str());
        if let Some(b) = plan.bonds.iter().find(|b| b.bond.name == under) {
            return LinkError::NoSlaveCarrier {
                bond: b.bond.name.clone(),
                slaves: b.slaves.clone(),
                waited_secs,
            }
            .into();
        }
        if let Hw::Infiniband(_) = l.hw {
            if let Some((hca, port, state)) = links::ib_port_of(sys, &l.name) {
                if state != "ACTIVE" {
                    return LinkError::IbPortNotActive {
                        iface: l.name.clone(),
                        hca,
                        port,
                        state,
                    }
                    .into();
                }
            }
        }
    }
    NetError::NoCarrier {
        links: wanted.iter().map(|l| l.name.clone()).collect(),
        waited_secs,
    }
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
            parse_hw("52:54:00:12:34:56\n"),
            Some(Hw::Ether([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
        );
        let ib = "80:00:00:48:fe:80:00:00:00:00:00:00:f4:52:14:03:00:28:05:81\n";
        assert!(matches!(parse_hw(ib), Some(Hw::Infiniband(a)) if a[19] == 0x81));
        assert_eq!(parse_hw("52:54:00:12:34"), None);
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
        let l = physical_links(d.path());
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

    #[test]
    fn no_carrier_is_said_by_what_lies_below() {
        use crate::config::netdev::{Bond, BondMode, Vlan};
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let link = |name: &str, hw: Hw| Link {
            name: name.into(),
            index: 2,
            hw,
        };
        let present: Vec<String> = ["eth0", "eth1", "ib0"].map(String::from).to_vec();
        let bond = Bond {
            name: "bond0".into(),
            slaves: vec!["eth0".into(), "eth1".into()],
            mode: BondMode::ActiveBackup,
            miimon: None,
            options: Vec::new(),
            mtu: None,
        };
        let vlan = Vlan {
            name: "vlan5".into(),
            parent: "bond0".into(),
            id: 5,
        };
        let plan = links::plan(&present, &[vlan], &[bond]).unwrap();
        let t = Instant::now();
        // A VLAN on a bond: the bond's slaves are named.
        let v = link("vlan5", Hw::Ether([2; 6]));
        let e = carrier_failure(sys, &[&v], &plan, t).to_string();
        assert!(
            e.starts_with("bond bond0 has no carrier after 0 s: no slave (eth0, eth1) has a link"),
            "{e}"
        );
        // An IPoIB port the subnet manager has not brought up.
        let net = sys.join("class/net/ib0");
        std::fs::create_dir_all(net.join("device/infiniband/mlx5_0")).unwrap();
        std::fs::write(net.join("dev_port"), "0\n").unwrap();
        let port = sys.join("class/infiniband/mlx5_0/ports/1");
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(port.join("state"), "2: INIT\n").unwrap();
        let ib = link("ib0", Hw::Infiniband([0x80; 20]));
        let none = links::Plan::default();
        let e = carrier_failure(sys, &[&ib], &none, t).to_string();
        assert!(e.contains("port 1 of mlx5_0 is INIT, not ACTIVE"), "{e}");
        // ACTIVE, or plain Ethernet: the plain sentence.
        std::fs::write(port.join("state"), "4: ACTIVE\n").unwrap();
        let e = carrier_failure(sys, &[&ib], &none, t).to_string();
        assert!(e.starts_with("no link with carrier on ib0"), "{e}");
        let eth = link("eth2", Hw::Ether([3; 6]));
        assert!(matches!(
            carrier_failure(sys, &[&eth], &none, t),
            NetError::NoCarrier { .. }
        ));
    }

    #[test]
    fn ipoib_links_from_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("class/net/ib0");
        std::fs::create_dir_all(p.join("device")).unwrap();
        std::fs::write(p.join("type"), "32\n").unwrap();
        std::fs::write(p.join("ifindex"), "3\n").unwrap();
        std::fs::write(
            p.join("address"),
            "80:00:00:48:fe:80:00:00:00:00:00:00:f4:52:14:03:00:28:05:81\n",
        )
        .unwrap();
        let l = physical_links(d.path());
        assert_eq!(l.len(), 1);
        assert!(matches!(l[0].hw, Hw::Infiniband(_)));
        assert_eq!(l[0].hw.mac(), None);
    }
}
