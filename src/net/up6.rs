//! IPv6 in the standalone initramfs (`ip=auto6`, `dhcp6`, `either6`, `link6`, a static `[v6]`
//! address): the link-local address, router solicitations and advertisements (SLAAC address,
//! default route, RDNSS and DNSSL), DHCPv6 stateful or stateless as the method or the router's
//! M and O flags say, duplicate address detection awaited before an address is used, the result
//! kept for the booted system (`/run/rustlive/lease6-IFACE.json`). The protocols are pure
//! (`net::ra`, `net::dhcp6`); this file performs them on the links `net::up` brought up.
//!
//! The kernel's own router-advertisement handling is turned off on the interfaces configured
//! here (`accept_ra=0`), so that one client decides the addresses and routes; the addresses are
//! added without lifetimes, like the DHCPv4 address, and stay for the booted system until its
//! own network manager takes the interface over.

use super::dhcp6::{self, Lease6};
use super::ra::{self, Advert};
use super::rtnl::{Rtnl, RtnlError};
use crate::config::ipconfig::{IpConfig, Method};
use crate::support::deadline::Deadline;
use serde::Serialize;
use std::net::{IpAddr, Ipv6Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `either6`: this long without a router advertisement, then DHCPv6 as well.
pub const EITHER_FALLBACK: Duration = Duration::from_secs(10);
/// `dhcp6`: after the DHCPv6 reply, this long for a router advertisement (the default route
/// and the on-link prefix come only from one).
pub const RA_AFTER_DHCP6: Duration = Duration::from_secs(2);
/// Dual stack: once IPv4 is up, IPv6 gets this much longer before the boot goes on without it.
pub const DUAL_GRACE: Duration = Duration::from_secs(15);
/// Duplicate address detection takes about a second (one probe, `RetransTimer` 1 s) plus the
/// kernel's random delay; this is the most waited for one address.
pub const DAD_WAIT: Duration = Duration::from_secs(10);
pub const LEASE6_DIR: &str = "/run/rustlive";
/// The file `net::up` writes for IPv4 too; dual stack rewrites it with both families.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// An Ethernet interface up with carrier (`net::up`'s `Link`, which this file does not use:
/// `net::up` uses this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

#[derive(Debug, thiserror::Error)]
pub enum Net6Error {
    #[error("no router advertisement {}", per_link(.waited_secs, .sent, "router solicitations"))]
    NoAdvert {
        waited_secs: u64,
        sent: Vec<(String, u32)>,
    },
    /// `sent`: per interface, how many messages of the kind it was sending at the end.
    #[error("no DHCPv6 answer {}", per_link(.waited_secs, .sent, .kind))]
    NoDhcp6 {
        waited_secs: u64,
        sent: Vec<(String, u32)>,
        kind: &'static str,
    },
    #[error("no usable link-local IPv6 address on {iface} after {waited_secs} s (IPv6 disabled, or duplicate address detection failed?)")]
    NoLinkLocal { iface: String, waited_secs: u64 },
    #[error("duplicate address detection failed for {addr} on {iface}: another node on the link uses it")]
    Duplicate { iface: String, addr: Ipv6Addr },
    #[error("the address {addr} on {iface} is still tentative after {} s (duplicate address detection unfinished)", DAD_WAIT.as_secs())]
    StillTentative { iface: String, addr: Ipv6Addr },
    #[error("cannot open the {what} socket on {iface}")]
    Socket {
        what: &'static str,
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no link to configure IPv6 on")]
    NoLink,
    #[error(transparent)]
    Rtnl(#[from] RtnlError),
}

fn per_link(waited: &u64, sent: &[(String, u32)], what: &str) -> String {
    match sent {
        [(iface, n)] => format!("on {iface} after {waited} s (sent {n} {what})"),
        _ => format!(
            "after {waited} s (sent {})",
            sent.iter()
                .map(|(i, n)| format!("{n} {what} on {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Which IPv6 configuration a set of `ip=` values asks for, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan6 {
    /// `auto6`: router advertisements decide (SLAAC; DHCPv6 on M or O).
    Auto,
    /// `dhcp6`: a DHCPv6 address at once; a router advertisement, if one comes, for the routes.
    Dhcp6,
    /// `either6`: `auto6`, and DHCPv6 too when no router advertises within
    /// [`EITHER_FALLBACK`].
    Either,
    /// `link6`: the link-local address only.
    LinkLocal,
    /// `ip=[ADDR]::[GW]:PREFIX:…:none`.
    Static {
        addr: Ipv6Addr,
        prefix: u8,
        gateway: Option<Ipv6Addr>,
    },
}

/// Whether `c` configures IPv6.
pub fn is_v6(c: &IpConfig) -> bool {
    c.method.is_v6() || (c.method == Method::Static && matches!(c.addr, Some(IpAddr::V6(_))))
}

/// The IPv6 plan of one `ip=` value.
pub fn plan(c: &IpConfig) -> Option<Plan6> {
    Some(match (c.method, c.addr) {
        (Method::Auto6, _) => Plan6::Auto,
        (Method::Dhcp6, _) => Plan6::Dhcp6,
        (Method::Either6, _) => Plan6::Either,
        (Method::Link6, _) => Plan6::LinkLocal,
        (Method::Static, Some(IpAddr::V6(addr))) => Plan6::Static {
            addr,
            prefix: c.prefix.unwrap_or(64).min(128),
            gateway: match c.gateway {
                Some(IpAddr::V6(g)) => Some(g),
                _ => None,
            },
        },
        _ => return None,
    })
}

/// What IPv6 gave one interface; also `/run/rustlive/lease6-IFACE.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Config6 {
    pub method: &'static str,
    pub iface: String,
    pub mac: String,
    pub link_local: Option<Ipv6Addr>,
    /// Address, prefix length, and where it came from (`slaac`, `dhcp6`, `static`).
    pub addrs: Vec<(Ipv6Addr, u8, &'static str)>,
    pub gateway: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
    pub mtu: Option<u32>,
    /// The router advertisement's flags and router lifetime, when one came.
    pub router: Option<RouterRecord>,
    pub dhcp6: Option<Lease6>,
    pub obtained_uptime_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouterRecord {
    pub address: Ipv6Addr,
    pub managed: bool,
    pub other: bool,
    pub lifetime_secs: u16,
    pub prefixes: Vec<ra::Prefix>,
}

impl Config6 {
    /// `nameserver` values for resolv.conf: a link-local server with its interface (`%eth0`),
    /// which musl and glibc both read.
    pub fn resolvers(&self) -> Vec<String> {
        self.dns
            .iter()
            .map(|d| {
                if ra::link_local(*d) {
                    format!("{d}%{}", self.iface)
                } else {
                    d.to_string()
                }
            })
            .collect()
    }

    pub fn summary(&self) -> String {
        let addrs: Vec<String> = self
            .addrs
            .iter()
            .map(|(a, p, how)| format!("{a}/{p} ({how})"))
            .collect();
        format!(
            "{} on {}{}{}",
            if addrs.is_empty() {
                self.link_local
                    .map(|l| format!("{l} (link-local)"))
                    .unwrap_or_default()
            } else {
                addrs.join(", ")
            },
            self.iface,
            self.gateway
                .map(|g| format!(", gateway {g}"))
                .unwrap_or_default(),
            if self.dns.is_empty() {
                String::new()
            } else {
                format!(", DNS {}", self.resolvers().join(" "))
            }
        )
    }
}

/// What the loop waits for on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    LinkLocal,
    Soliciting,
    Dhcp6,
    Done,
}

struct Run<'a> {
    link: &'a Link,
    icmp: crate::sys::net::Icmp6,
    udp: Option<UdpSocket>,
    phase: Phase,
    link_local: Option<Ipv6Addr>,
    rs_sent: u32,
    next_rs: Instant,
    advert: Option<Advert>,
    dhcp: Option<dhcp6::Client>,
    dhcp_next: Instant,
    dhcp_rt: Option<Duration>,
    dhcp_sent: u32,
    lease: Option<Lease6>,
    lease_at: Option<Instant>,
}

/// IPv6 with `plan` on `links` (already up with carrier): the first link to finish is
/// configured and returned. `stop` ends the wait early (dual stack: IPv4 is up and IPv6 had
/// its grace), as a timeout.
pub fn bring_up6(
    plan: &Plan6,
    links: &[&Link],
    deadline: &Deadline,
    stop: &AtomicBool,
) -> Result<Config6, Net6Error> {
    let start = Instant::now();
    let mut rt = Rtnl::open()?;
    let mut runs = Vec::new();
    for l in links {
        // One client decides (this one), not the kernel as well; a failure to say so (IPv6
        // disabled) shows below as no link-local address.
        for (k, v) in [("accept_ra", "0"), ("autoconf", "0")] {
            if let Err(e) = crate::sys::net::set_ipv6_conf(&l.name, k, v) {
                log::debug!("cannot set {k} on {}: {e}", l.name);
            }
        }
        let icmp =
            crate::sys::net::Icmp6::on_device(&l.name).map_err(|source| Net6Error::Socket {
                what: "ICMPv6",
                iface: l.name.clone(),
                source,
            })?;
        runs.push(Run {
            link: l,
            icmp,
            udp: None,
            phase: Phase::LinkLocal,
            link_local: None,
            rs_sent: 0,
            next_rs: start,
            advert: None,
            dhcp: None,
            dhcp_next: start,
            dhcp_rt: None,
            dhcp_sent: 0,
            lease: None,
            lease_at: None,
        });
    }
    if runs.is_empty() {
        return Err(Net6Error::NoLink);
    }
    let mut rng = crate::sys::random::Rng::from_entropy();
    let mut buf = vec![0u8; 9216];
    loop {
        let now = Instant::now();
        if deadline.passed_at(now) || stop.load(Ordering::Relaxed) {
            return Err(timeout(&runs, now.saturating_duration_since(start)));
        }
        for r in runs.iter_mut() {
            step(r, plan, &mut rt, &mut rng, start, now)?;
        }
        if let Some(r) = runs.iter().find(|r| r.phase == Phase::Done) {
            return apply(r, plan, &mut rt, deadline, stop);
        }
        // Wake for the next transmission, or every 100 ms while an address is tentative.
        let mut wake = now.checked_add(Duration::from_millis(100)).unwrap_or(now);
        for r in &runs {
            if r.phase == Phase::Soliciting || r.phase == Phase::Dhcp6 {
                wake = wake.min(r.next_rs);
            }
            if r.dhcp.is_some() {
                wake = wake.min(r.dhcp_next);
            }
        }
        let wait = deadline.clamp_at(now, wake.saturating_duration_since(now));
        let mut fds = Vec::new();
        for r in &runs {
            fds.push(std::os::fd::AsFd::as_fd(&r.icmp));
            if let Some(u) = &r.udp {
                fds.push(std::os::fd::AsFd::as_fd(u));
            }
        }
        let _ = crate::sys::net::readable(&fds, wait);
        drop(fds);
        for r in runs.iter_mut() {
            receive(r, &mut buf, &mut rng);
        }
    }
}

/// Sends what is due on one link and moves its phase on.
fn step(
    r: &mut Run<'_>,
    plan: &Plan6,
    rt: &mut Rtnl,
    rng: &mut crate::sys::random::Rng,
    start: Instant,
    now: Instant,
) -> Result<(), Net6Error> {
    let name = &r.link.name;
    // A static address needs nothing from the link-local one: its duplicate address
    // detection runs beside the link-local's.
    if r.phase == Phase::LinkLocal && matches!(plan, Plan6::Static { .. }) {
        r.phase = Phase::Done;
        return Ok(());
    }
    if r.phase == Phase::LinkLocal {
        let addrs = rt.addresses6(r.link.index)?;
        if let Some(a) = addrs
            .iter()
            .find(|a| ra::link_local(a.addr) && a.dad_failed)
        {
            return Err(Net6Error::Duplicate {
                iface: name.clone(),
                addr: a.addr,
            });
        }
        let Some(ll) = addrs
            .iter()
            .find(|a| ra::link_local(a.addr) && !a.tentative)
        else {
            if now.saturating_duration_since(start) > DAD_WAIT {
                return Err(Net6Error::NoLinkLocal {
                    iface: name.clone(),
                    waited_secs: now.saturating_duration_since(start).as_secs(),
                });
            }
            return Ok(());
        };
        log::debug!("link-local address {} on {name}", ll.addr);
        r.link_local = Some(ll.addr);
        r.phase = match plan {
            Plan6::LinkLocal | Plan6::Static { .. } => Phase::Done,
            Plan6::Auto | Plan6::Either => Phase::Soliciting,
            Plan6::Dhcp6 => {
                start_dhcp6(r, dhcp6::Mode::Stateful, rng, now)?;
                Phase::Dhcp6
            }
        };
        r.next_rs = now;
    }
    if matches!(r.phase, Phase::Soliciting | Phase::Dhcp6) && r.advert.is_none() && r.next_rs <= now
    {
        match r.icmp.send(
            &ra::solicitation(&r.link.mac),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2),
            r.link.index,
        ) {
            Ok(()) => log::debug!("router solicitation on {name}"),
            Err(e) => log::warn!("cannot send a router solicitation on {name}: {e}"),
        }
        r.rs_sent = r.rs_sent.saturating_add(1);
        r.next_rs = now.checked_add(ra::RS_INTERVAL).unwrap_or(now);
    }
    if *plan == Plan6::Either
        && r.phase == Phase::Soliciting
        && r.advert.is_none()
        && now.saturating_duration_since(start) >= EITHER_FALLBACK
    {
        log::info!(
            "no router advertisement on {name} after {} s: trying DHCPv6 (ip=either6)",
            EITHER_FALLBACK.as_secs()
        );
        start_dhcp6(r, dhcp6::Mode::Stateful, rng, now)?;
        r.phase = Phase::Dhcp6;
    }
    if let Some(c) = r.dhcp.as_mut().filter(|_| r.lease.is_none()) {
        if r.dhcp_next <= now {
            if r.dhcp_sent > 0 {
                c.note_retransmit(rng.next_u32());
            }
            let to = std::net::SocketAddrV6::new(
                dhcp6::ALL_SERVERS,
                dhcp6::SERVER_PORT,
                0,
                r.link.index,
            );
            if let Some(u) = &r.udp {
                match u.send_to(&c.packet(now), to) {
                    Ok(_) => log::debug!("DHCPv6 {} on {name}", c.kind()),
                    Err(e) => log::warn!("cannot send a DHCPv6 {} on {name}: {e}", c.kind()),
                }
            }
            r.dhcp_sent = r.dhcp_sent.saturating_add(1);
            let jitter = i64::try_from(rng.up_to(200))
                .unwrap_or(100)
                .saturating_sub(100);
            let rt_next = dhcp6::backoff(r.dhcp_rt, jitter);
            r.dhcp_rt = Some(rt_next);
            r.dhcp_next = now.checked_add(rt_next).unwrap_or(now);
        }
    }
    // Done: what the method needs has come.
    let done = match r.phase {
        Phase::Soliciting => r.advert.as_ref().is_some_and(|a| !a.managed && !a.other),
        Phase::Dhcp6 => {
            r.lease.is_some()
                && (r.advert.is_some()
                    || *plan != Plan6::Dhcp6
                    || r.lease_at
                        .is_some_and(|t| now.saturating_duration_since(t) >= RA_AFTER_DHCP6))
        }
        _ => false,
    };
    if done {
        r.phase = Phase::Done;
    }
    Ok(())
}

fn start_dhcp6(
    r: &mut Run<'_>,
    mode: dhcp6::Mode,
    rng: &mut crate::sys::random::Rng,
    now: Instant,
) -> Result<(), Net6Error> {
    if r.udp.is_none() {
        let u = crate::sys::net::udp6_on_device(&r.link.name, dhcp6::CLIENT_PORT).map_err(
            |source| Net6Error::Socket {
                what: "DHCPv6",
                iface: r.link.name.clone(),
                source,
            },
        )?;
        let _ = u.set_nonblocking(true);
        r.udp = Some(u);
    }
    r.dhcp = Some(dhcp6::Client::new(
        &r.link.name,
        &r.link.mac,
        rng.next_u32(),
        mode,
        now,
    ));
    r.dhcp_next = now;
    r.dhcp_rt = None;
    Ok(())
}

/// Reads what is waiting on one link's sockets.
fn receive(r: &mut Run<'_>, buf: &mut [u8], rng: &mut crate::sys::random::Rng) {
    let name = r.link.name.clone();
    loop {
        let (n, from) = match r.icmp.recv(buf) {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                log::debug!("ICMPv6 on {name}: {e}");
                break;
            }
        };
        let Some(bytes) = buf.get(..n) else { break };
        match ra::parse(bytes, from) {
            Ok(None) => {}
            Err(why) => log::warn!("ignoring a router advertisement on {name}: {why}"),
            Ok(Some(_)) if r.advert.is_some() || r.phase == Phase::LinkLocal => {}
            // auto6 needs an address from it: a prefix for SLAAC, or M or O for DHCPv6.
            Ok(Some(a))
                if r.phase == Phase::Soliciting
                    && !a.managed
                    && !a.other
                    && !a
                        .prefixes
                        .iter()
                        .any(|p| ra::slaac_address(p, &r.link.mac).is_ok()) =>
            {
                log::warn!(
                    "router advertisement on {name} from {} gives no address (no /64 prefix with the A flag, no M or O flag); waiting for another",
                    a.router
                );
            }
            Ok(Some(a)) => {
                for note in &a.notes {
                    log::warn!("router advertisement on {name} from {}: {note}", a.router);
                }
                log::info!(
                    "router advertisement on {name} from {}: M={} O={}, router lifetime {} s, {} prefix(es)",
                    a.router,
                    u8::from(a.managed),
                    u8::from(a.other),
                    a.router_lifetime,
                    a.prefixes.len()
                );
                let now = Instant::now();
                if r.phase == Phase::Soliciting {
                    let mode = if a.managed {
                        Some(dhcp6::Mode::Stateful)
                    } else if a.other {
                        Some(dhcp6::Mode::Stateless)
                    } else {
                        None
                    };
                    if let Some(m) = mode {
                        if let Err(e) = start_dhcp6(r, m, rng, now) {
                            log::warn!("{e}");
                        }
                        r.phase = Phase::Dhcp6;
                    }
                }
                r.advert = Some(a);
            }
        }
    }
    let Some(u) = &r.udp else { return };
    while let Ok((n, from)) = u.recv_from(buf) {
        let Some(bytes) = buf.get(..n) else { break };
        let std::net::SocketAddr::V6(from) = from else {
            continue;
        };
        let Some(c) = r.dhcp.as_mut() else { break };
        match c.handle(bytes, *from.ip(), rng.next_u32()) {
            dhcp6::Outcome::NotOurs => {}
            dhcp6::Outcome::Rejected(why) => {
                log::warn!(
                    "ignoring a DHCPv6 reply on {name} from {}: {why}",
                    from.ip()
                )
            }
            dhcp6::Outcome::Requesting => {
                r.dhcp_next = Instant::now();
                r.dhcp_rt = None;
                r.dhcp_sent = 0;
            }
            dhcp6::Outcome::Restart(why) => {
                log::warn!("DHCPv6 on {name}: {why}; soliciting again");
                r.dhcp_next = Instant::now();
                r.dhcp_rt = None;
                r.dhcp_sent = 0;
            }
            dhcp6::Outcome::Bound(l) => {
                log::info!(
                    "DHCPv6 ({}) on {name} from {}: {}",
                    if l.addr.is_some() {
                        "stateful"
                    } else {
                        "stateless"
                    },
                    l.server,
                    l.addr
                        .map_or_else(|| "name servers only".to_string(), |a| a.to_string())
                );
                r.lease = Some(l);
                r.lease_at = Some(Instant::now());
            }
        }
    }
}

fn timeout(runs: &[Run<'_>], waited: Duration) -> Net6Error {
    let waited_secs = waited.as_secs();
    if let Some(r) = runs.iter().find(|r| r.phase == Phase::LinkLocal) {
        return Net6Error::NoLinkLocal {
            iface: r.link.name.clone(),
            waited_secs,
        };
    }
    if let Some(c) = runs.iter().find_map(|r| r.dhcp.as_ref()) {
        return Net6Error::NoDhcp6 {
            waited_secs,
            sent: runs
                .iter()
                .filter(|r| r.dhcp.is_some())
                .map(|r| (r.link.name.clone(), r.dhcp_sent))
                .collect(),
            kind: c.kind(),
        };
    }
    Net6Error::NoAdvert {
        waited_secs,
        sent: runs
            .iter()
            .map(|r| (r.link.name.clone(), r.rs_sent))
            .collect(),
    }
}

/// Adds the addresses and routes, waits for their duplicate address detection, writes the
/// lease file.
fn apply(
    r: &Run<'_>,
    plan: &Plan6,
    rt: &mut Rtnl,
    deadline: &Deadline,
    stop: &AtomicBool,
) -> Result<Config6, Net6Error> {
    let l = r.link;
    let mut addrs: Vec<(Ipv6Addr, u8, &'static str)> = Vec::new();
    let mut gateway = None;
    let mut dns = Vec::new();
    let mut domains = Vec::new();
    let mut mtu = None;
    if let Some(a) = &r.advert {
        for p in &a.prefixes {
            match ra::slaac_address(p, &l.mac) {
                Ok(addr) => addrs.push((addr, p.len, "slaac")),
                Err(why) if p.autonomous => {
                    log::warn!(
                        "router advertisement on {}: no SLAAC address: {why}",
                        l.name
                    )
                }
                Err(_) => {}
            }
        }
        if a.router_lifetime > 0 {
            gateway = Some(a.router);
        }
        dns.extend(&a.rdnss);
        domains.extend(a.dnssl.iter().cloned());
        mtu = a.mtu;
    }
    if let Some(d) = &r.lease {
        if let Some(addr) = d.addr {
            // The prefix length comes from an on-link prefix the router announced; without one,
            // the address alone (/128), as DHCPv6 clients do.
            let len = r
                .advert
                .iter()
                .flat_map(|a| &a.prefixes)
                .find(|p| p.on_link && within(addr, p.prefix, p.len))
                .map_or(128, |p| p.len);
            if !addrs.iter().any(|(a, _, _)| *a == addr) {
                addrs.push((addr, len, "dhcp6"));
            }
        }
        for s in &d.dns {
            if !dns.contains(s) {
                dns.push(*s);
            }
        }
        for n in &d.domains {
            if !domains.contains(n) {
                domains.push(n.clone());
            }
        }
    }
    if let Plan6::Static {
        addr,
        prefix,
        gateway: g,
    } = plan
    {
        addrs.push((*addr, *prefix, "static"));
        gateway = *g;
    }
    if let Some(m) = mtu {
        if let Err(e) = crate::sys::net::set_ipv6_conf(&l.name, "mtu", &m.to_string()) {
            log::warn!("cannot set the IPv6 MTU {m} on {}: {e}", l.name);
        }
    }
    for (a, p, _) in &addrs {
        rt.add_address6(&l.name, l.index, *a, *p)?;
    }
    // On-link prefixes without an address of ours in them (M without A): a route each.
    if let Some(a) = &r.advert {
        for p in a
            .prefixes
            .iter()
            .filter(|p| p.on_link && !addrs.iter().any(|(x, _, _)| within(*x, p.prefix, p.len)))
        {
            rt.add_route6(&l.name, l.index, p.prefix, p.len, None, true)?;
        }
    }
    wait_dad(rt, l, &addrs, deadline, stop)?;
    let link_local = r.link_local.or_else(|| {
        rt.addresses6(l.index)
            .ok()?
            .into_iter()
            .find(|a| ra::link_local(a.addr))
            .map(|a| a.addr)
    });
    if let Some(g) = gateway {
        rt.add_route6(
            &l.name,
            l.index,
            Ipv6Addr::UNSPECIFIED,
            0,
            Some(g),
            r.advert.is_some(),
        )?;
    }
    let c = Config6 {
        method: match plan {
            Plan6::Auto => "auto6",
            Plan6::Dhcp6 => "dhcp6",
            Plan6::Either => "either6",
            Plan6::LinkLocal => "link6",
            Plan6::Static { .. } => "static",
        },
        iface: l.name.clone(),
        mac: l
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        link_local,
        addrs,
        gateway,
        dns,
        domains,
        mtu,
        router: r.advert.as_ref().map(|a| RouterRecord {
            address: a.router,
            managed: a.managed,
            other: a.other,
            lifetime_secs: a.router_lifetime,
            prefixes: a.prefixes.clone(),
        }),
        dhcp6: r.lease.clone(),
        obtained_uptime_secs: uptime(),
    };
    let json = serde_json::to_string_pretty(&c).unwrap_or_default();
    let path = format!("{LEASE6_DIR}/lease6-{}.json", l.name);
    if let Err(e) = std::fs::create_dir_all(LEASE6_DIR)
        .and_then(|()| std::fs::write(&path, format!("{json}\n")))
    {
        log::warn!("cannot write {path}: {e}");
    }
    Ok(c)
}

/// Whether `a` lies in `prefix/len`.
pub fn within(a: Ipv6Addr, prefix: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(len.min(128))))
        .unwrap_or(0);
    u128::from(a) & mask == u128::from(prefix) & mask
}

/// Waits until none of `addrs` is tentative; a failed one is an error.
fn wait_dad(
    rt: &mut Rtnl,
    l: &Link,
    addrs: &[(Ipv6Addr, u8, &'static str)],
    deadline: &Deadline,
    stop: &AtomicBool,
) -> Result<(), Net6Error> {
    let start = Instant::now();
    loop {
        let state = rt.addresses6(l.index)?;
        let mut pending = None;
        for (a, _, _) in addrs {
            match state.iter().find(|s| s.addr == *a) {
                Some(s) if s.dad_failed => {
                    return Err(Net6Error::Duplicate {
                        iface: l.name.clone(),
                        addr: *a,
                    })
                }
                Some(s) if s.tentative => pending = Some(*a),
                _ => {}
            }
        }
        let Some(addr) = pending else {
            log::debug!(
                "duplicate address detection done on {} in {:.1} s",
                l.name,
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        };
        if start.elapsed() > DAD_WAIT || deadline.passed() || stop.load(Ordering::Relaxed) {
            return Err(Net6Error::StillTentative {
                iface: l.name.clone(),
                addr,
            });
        }
        std::thread::sleep(deadline.clamp(Duration::from_millis(50)));
    }
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|u| u.parse().ok()))
        .unwrap_or(0.0)
}

/// IPv6 running beside IPv4 (dual stack), on a thread of its own.
pub struct Pending {
    handle: std::thread::JoinHandle<Result<Config6, Net6Error>>,
    stop: Arc<AtomicBool>,
}

/// Starts IPv6 on a thread: `links` are owned copies (the thread outlives the borrow).
pub fn spawn(plan: Plan6, links: Vec<Link>, deadline: Deadline) -> Pending {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let refs: Vec<&Link> = links.iter().collect();
        bring_up6(&plan, &refs, &deadline, &s)
    });
    Pending { handle, stop }
}

impl Pending {
    /// Its result, waiting at most `grace` more (then it is stopped and counts as failed).
    pub fn finish(self, grace: Duration) -> Result<Config6, Net6Error> {
        let until = Instant::now().checked_add(grace);
        while !self.handle.is_finished() {
            if until.is_none_or(|u| Instant::now() >= u) {
                self.stop.store(true, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.handle.join().unwrap_or(Err(Net6Error::NoLink))
    }
}

/// `/etc/resolv.conf` for both families: the command line's servers, then the IPv4 lease's,
/// then IPv6's; the search list from both.
pub fn resolv_conf(servers: &[String], domains: &[String]) -> String {
    let mut s = String::from("# written by rustlive (standalone initramfs)\n");
    let mut search: Vec<&str> = Vec::new();
    for d in domains {
        if !search.contains(&d.as_str()) {
            search.push(d);
        }
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut seen: Vec<&str> = Vec::new();
    for n in servers {
        if !seen.contains(&n.as_str()) {
            seen.push(n);
            s.push_str(&format!("nameserver {n}\n"));
        }
    }
    s
}

// --- how `net::up::bring_up` calls this -----------------------------------------------------

/// The plan of the first IPv6 `ip=` value, and the links with carrier it applies to.
fn plan_links(specs6: &[IpConfig], up: &[Link]) -> Option<(Plan6, Vec<Link>)> {
    let (c, p) = specs6.iter().find_map(|c| Some((c, plan(c)?)))?;
    let links: Vec<Link> = up
        .iter()
        .filter(|l| c.iface.as_deref().is_none_or(|i| i == l.name))
        .cloned()
        .collect();
    Some((p, links))
}

/// IPv6 only (no `ip=` asks for IPv4): configured here, then resolv.conf.
pub fn only(
    specs6: &[IpConfig],
    up: &[Link],
    deadline: &Deadline,
    nameservers: &[IpAddr],
    peerdns: bool,
    started: Instant,
) -> Result<(), Net6Error> {
    let Some((p, links)) = plan_links(specs6, up) else {
        return Err(Net6Error::NoLink);
    };
    let refs: Vec<&Link> = links.iter().collect();
    let c = bring_up6(&p, &refs, deadline, &AtomicBool::new(false))?;
    write_resolv(nameservers, &[], None, Some(&c), peerdns);
    log::info!(
        "network up in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        c.summary()
    );
    Ok(())
}

/// Dual stack: IPv6 on a thread while `net::up` runs DHCPv4 (or a static IPv4 address).
pub fn start(specs6: &[IpConfig], up: &[Link], deadline: &Deadline) -> Option<Pending> {
    let (p, links) = plan_links(specs6, up)?;
    if links.is_empty() {
        return None;
    }
    Some(spawn(p, links, *deadline))
}

/// Dual stack, IPv4 up: IPv6's result within [`DUAL_GRACE`] more, resolv.conf for both. An
/// IPv6 failure is a warning: the node boots on IPv4 (the image's route decides later).
pub fn after_v4(
    pending: Pending,
    nameservers: &[IpAddr],
    v4_dns: &[std::net::Ipv4Addr],
    v4_domain: Option<&str>,
    peerdns: bool,
) {
    match pending.finish(DUAL_GRACE) {
        Ok(c) => {
            write_resolv(nameservers, v4_dns, v4_domain, Some(&c), peerdns);
            log::info!("IPv6 up: {}", c.summary());
        }
        Err(e) => log::warn!("IPv6 not configured, going on with IPv4 only: {e}"),
    }
}

/// Dual stack, IPv4 failed: the boot goes on if IPv6 comes up (with a warning naming the
/// IPv4 failure), else IPv4's error stands.
pub fn v4_failed(
    pending: Pending,
    v4_error: &dyn std::fmt::Display,
    nameservers: &[IpAddr],
    peerdns: bool,
) -> bool {
    match pending.finish(DUAL_GRACE) {
        Ok(c) => {
            log::warn!("IPv4 not configured, going on with IPv6 only: {v4_error}");
            write_resolv(nameservers, &[], None, Some(&c), peerdns);
            log::info!("IPv6 up: {}", c.summary());
            true
        }
        Err(e) => {
            log::warn!("IPv6 not configured either: {e}");
            false
        }
    }
}

fn write_resolv(
    nameservers: &[IpAddr],
    v4_dns: &[std::net::Ipv4Addr],
    v4_domain: Option<&str>,
    c: Option<&Config6>,
    peerdns: bool,
) {
    let mut servers: Vec<String> = nameservers.iter().map(|n| n.to_string()).collect();
    let mut domains: Vec<String> = v4_domain.map(str::to_string).into_iter().collect();
    if peerdns {
        servers.extend(v4_dns.iter().map(|d| d.to_string()));
        if let Some(c) = c {
            servers.extend(c.resolvers());
            domains.extend(c.domains.iter().cloned());
        }
    }
    let text = resolv_conf(&servers, &domains);
    if let Err(e) = std::fs::write(RESOLV_CONF, text) {
        log::warn!("cannot write {}: {e}", RESOLV_CONF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ipconfig::parse_ip;

    #[test]
    fn plans_from_the_command_line() {
        let p = |s: &str| plan(&parse_ip(s).unwrap());
        assert_eq!(p("auto6"), Some(Plan6::Auto));
        assert_eq!(p("dhcp6"), Some(Plan6::Dhcp6));
        assert_eq!(p("eth0:either6"), Some(Plan6::Either));
        assert_eq!(p("link6"), Some(Plan6::LinkLocal));
        assert_eq!(p("dhcp"), None);
        assert_eq!(
            p("[2001:db8::10]::[2001:db8::1]:64:node1:eth0:none"),
            Some(Plan6::Static {
                addr: "2001:db8::10".parse().unwrap(),
                prefix: 64,
                gateway: Some("2001:db8::1".parse().unwrap())
            })
        );
        assert!(is_v6(
            &parse_ip("[2001:db8::10]::[2001:db8::1]:64:node1:eth0:none").unwrap()
        ));
        assert!(!is_v6(
            &parse_ip("10.0.2.15::10.0.2.2:24:node1:eth0:none").unwrap()
        ));
    }

    #[test]
    fn failures_say_where_and_what_was_sent() {
        let e = Net6Error::NoAdvert {
            waited_secs: 20,
            sent: vec![("eth0".into(), 5)],
        };
        assert_eq!(
            e.to_string(),
            "no router advertisement on eth0 after 20 s (sent 5 router solicitations)"
        );
        let e = Net6Error::NoDhcp6 {
            waited_secs: 9,
            sent: vec![("eth0".into(), 4), ("eth1".into(), 3)],
            kind: "SOLICIT",
        };
        assert_eq!(
            e.to_string(),
            "no DHCPv6 answer after 9 s (sent 4 SOLICIT on eth0, 3 SOLICIT on eth1)"
        );
    }

    #[test]
    fn prefixes_contain() {
        let a: Ipv6Addr = "fd00:2::15".parse().unwrap();
        assert!(within(a, "fd00:2::".parse().unwrap(), 64));
        assert!(!within(a, "fd00:3::".parse().unwrap(), 64));
        assert!(within(a, Ipv6Addr::UNSPECIFIED, 0));
        assert!(within(a, a, 200));
    }

    #[test]
    fn resolv_conf_for_both_families() {
        assert_eq!(
            resolv_conf(
                &["10.0.2.2".into(), "fe80::1%eth0".into(), "10.0.2.2".into()],
                &["rig.test".into(), "rig.test".into(), "example".into()]
            ),
            "# written by rustlive (standalone initramfs)\nsearch rig.test example\nnameserver 10.0.2.2\nnameserver fe80::1%eth0\n"
        );
    }
}
