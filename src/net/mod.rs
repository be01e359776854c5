//! Network readiness: is there an interface with an address and a route to the image server?
//! And, for the standalone initramfs, bringing the network up ([`bring_up`]: drivers, links,
//! DHCPv4 or a static `ip=`).
//!
//! `rustlive boot` waits for this itself instead of relying on dracut's netroot hook, which
//! never fires with systemd-networkd (dracut-ng issue 719). The probe is a UDP `connect`: it
//! sends nothing, but the kernel must pick a route and a source address for it, so it fails
//! (`ENETUNREACH`) exactly while there is no route.

use crate::support::deadline::Deadline;
pub mod dhcp;
pub mod dhcp6;
pub mod links;
pub mod ra;
pub mod rtnl;
pub mod up;
pub mod up6;

pub use up::{bring_up, NetError};

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// The interface the kernel would use to reach a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub ifname: String,
    /// Hardware address, when the interface has one.
    pub mac: Option<[u8; 6]>,
    /// Our source address on that interface.
    pub addr: IpAddr,
}

impl Route {
    /// `52:54:00:12:34:56`, the form the secrets `{mac}` placeholder takes.
    pub fn mac_string(&self) -> Option<String> {
        self.mac.map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no route to {host} after {waited_secs} s (is the network up? does DHCP answer?)")]
pub struct NoRoute {
    pub host: String,
    pub waited_secs: u64,
}

/// The route to `host` (a name or an IP literal), or `None` while the network is not ready:
/// the name does not resolve, no route exists, or the source address is not assigned yet.
pub fn route_to(host: &str) -> Option<Route> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // Port 9 (discard): no datagram is ever sent, any port works for route selection.
    let targets: Vec<SocketAddr> = (host, 9).to_socket_addrs().ok()?.collect();
    targets.iter().find_map(|t| {
        let bind = match t {
            SocketAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        };
        let sock = UdpSocket::bind(bind).ok()?;
        sock.connect(t).ok()?;
        let local = sock.local_addr().ok()?.ip();
        if local.is_unspecified() {
            return None;
        }
        interface_of(local)
    })
}

/// The interface holding `addr`, with its MAC address.
fn interface_of(addr: IpAddr) -> Option<Route> {
    let i = rtnl::addresses()
        .ok()?
        .into_iter()
        .find(|i| i.addr == addr)?;
    Some(Route {
        ifname: i.ifname,
        mac: i.mac,
        addr,
    })
}

/// Waits until [`route_to`] finds one of `hosts`, logging every `log_every`, until `deadline`.
pub fn wait_for_route(
    hosts: &[&str],
    deadline: Deadline,
    log_every: Duration,
) -> Result<Route, NoRoute> {
    let start = Instant::now();
    let mut next_log = start.checked_add(log_every);
    loop {
        if let Some(r) = hosts.iter().find_map(|h| route_to(h)) {
            if start.elapsed() > Duration::from_secs(1) {
                log::info!(
                    "network ready after {:.1} s: {} via {}",
                    start.elapsed().as_secs_f64(),
                    r.addr,
                    r.ifname
                );
            }
            return Ok(r);
        }
        let now = Instant::now();
        if deadline.passed_at(now) {
            return Err(NoRoute {
                host: hosts.join(", "),
                waited_secs: start.elapsed().as_secs(),
            });
        }
        if next_log.is_some_and(|t| now >= t) {
            log::info!(
                "waiting for a route to {} ({} s so far)",
                hosts.join(", "),
                start.elapsed().as_secs()
            );
            next_log = now.checked_add(log_every);
        }
        let nap = Duration::from_millis(250);
        std::thread::sleep(deadline.clamp_at(now, nap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_route() {
        let r = route_to("127.0.0.1").expect("a route to loopback");
        assert_eq!(r.ifname, "lo");
        assert_eq!(r.addr, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(r.mac_string().as_deref(), Some("00:00:00:00:00:00"));
    }

    /// The dracut path waits for a route to an image at `http://[v6]:port/…` the same way.
    #[test]
    fn ipv6_route_from_a_url_host() {
        let r = route_to("[::1]").expect("a route to the IPv6 loopback");
        assert_eq!(
            (r.ifname.as_str(), r.addr),
            ("lo", IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn unresolvable_host_is_not_ready() {
        assert_eq!(route_to("no-such-host.invalid"), None);
    }

    #[test]
    fn waiting_is_bounded_by_the_deadline() {
        let t = Instant::now();
        let e = wait_for_route(
            &["no-such-host.invalid"],
            Deadline::after_from(t, Some(Duration::from_millis(600))),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
        let passed = Deadline::after_from(t, Some(Duration::ZERO));
        let r = wait_for_route(&["127.0.0.1"], passed, Duration::from_secs(5)).unwrap();
        assert_eq!(r.ifname, "lo");
        // An absurd log interval does not overflow either.
        let r = wait_for_route(&["127.0.0.1"], Deadline::NONE, Duration::MAX).unwrap();
        assert_eq!(r.ifname, "lo");
    }

    #[test]
    fn mac_format() {
        let r = Route {
            ifname: "eth0".into(),
            mac: Some([0x52, 0x54, 0, 0x12, 0xab, 0x0f]),
            addr: IpAddr::from([10, 0, 0, 2]),
        };
        assert_eq!(r.mac_string().as_deref(), Some("52:54:00:12:ab:0f"));
    }
}
