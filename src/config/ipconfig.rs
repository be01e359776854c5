//! `ip=` and `nameserver=` as dracut and the kernel spell them (dracut.cmdline(7),
//! Documentation/admin-guide/nfs/nfsroot.rst), for when rustlive configures the network
//! itself. Pure: a value in, a typed configuration or a reason out.
//!
//! Accepted, as dracut.cmdline(7) lists them:
//! - `ip=dhcp|on|any|single-dhcp|bootp|both`, `ip=dhcp6`, `ip=auto6`, `ip=either6`,
//!   `ip=link6|link-local`, `ip=off|none`
//! - `ip=IFACE:METHOD[:MTU[:MAC]]` with any of those methods
//! - `ip=CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:IFACE:none|off|METHOD[:MTU[:MAC]]` and the
//!   kernel's `…:AUTOCONF[:DNS0[:DNS1[:NTP]]]`; IPv6 addresses in brackets
//!   (`[2001:db8::10]::[2001:db8::1]:64:n1:eth0:none`), NETMASK dotted or a prefix length;
//!   an empty CLIENT with a method is that method on IFACE (with HOSTNAME).
//!
//! `ibft` and `rarp` are refused by name: neither the standalone initramfs nor the dracut
//! path's network managers configure them for rustlive.

use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// DHCPv4.
    Dhcp,
    /// DHCPv6 (stateful), without waiting for a router advertisement's say.
    Dhcp6,
    /// Router advertisements: SLAAC, and DHCPv6 when the RA's M or O flag asks for it.
    Auto6,
    /// `auto6`, falling back to `dhcp6` when no router advertises.
    Either6,
    /// The link-local address only.
    Link6,
    Static,
    Off,
}

impl Method {
    /// Whether the method configures IPv6 (the rest are IPv4, or nothing).
    pub fn is_v6(self) -> bool {
        matches!(
            self,
            Method::Dhcp6 | Method::Auto6 | Method::Either6 | Method::Link6
        )
    }
}

/// One `ip=` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    pub method: Method,
    /// The interface it applies to; `None`: every Ethernet interface with carrier (DHCP) or
    /// the first one (static).
    pub iface: Option<String>,
    pub addr: Option<IpAddr>,
    pub prefix: Option<u8>,
    pub gateway: Option<IpAddr>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub dns: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl IpConfig {
    fn new(method: Method) -> IpConfig {
        IpConfig {
            method,
            iface: None,
            addr: None,
            prefix: None,
            gateway: None,
            hostname: None,
            mtu: None,
            dns: Vec::new(),
            mac: None,
        }
    }
}

fn method(word: &str) -> Result<Option<Method>, String> {
    Ok(Some(match word {
        "dhcp" | "on" | "any" | "single-dhcp" | "bootp" | "both" => Method::Dhcp,
        "dhcp6" => Method::Dhcp6,
        "auto6" => Method::Auto6,
        "either6" => Method::Either6,
        "link6" | "link-local" => Method::Link6,
        "off" | "none" => Method::Off,
        "rarp" | "ibft" => {
            return Err(format!(
                "{word} is not supported (use dhcp, dhcp6, auto6 or a static address)"
            ))
        }
        _ => return Ok(None),
    }))
}

/// A prefix length from a dotted netmask (contiguous) or a number 1..=32 (IPv4).
pub fn parse_netmask(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        return if (1..=32).contains(&n) {
            Ok(n)
        } else {
            Err(format!("prefix length {n} is outside 1..32"))
        };
    }
    let m: Ipv4Addr = s.parse().map_err(|_| format!("{s:?} is not a netmask"))?;
    mask_prefix(m).ok_or_else(|| format!("netmask {m} is not contiguous or is empty"))
}

/// The prefix length of a contiguous, non-empty netmask.
pub fn mask_prefix(m: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(m);
    let ones = bits.leading_ones();
    (ones > 0 && bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The classful prefix the kernel assumes when no netmask is given.
pub fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// An interface name the kernel would accept (IFNAMSIZ, no `/`, no whitespace).
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// A host name fit for `/etc/hostname` and `sethostname`: RFC 1123 labels.
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An address as `ip=` and `nameserver=` write it: IPv4 dotted, IPv6 in brackets (bare IPv6 is
/// taken too where the field cannot be split further, as in `nameserver=`).
fn address(s: &str, what: &str) -> Result<IpAddr, String> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let a: IpAddr = inner
        .parse()
        .map_err(|_| format!("{what} {s:?} is not an IP address"))?;
    if s.starts_with('[') != a.is_ipv6() {
        return Err(format!(
            "{what} {s:?}: IPv6 addresses are written in brackets, IPv4 ones without"
        ));
    }
    Ok(a)
}

fn unicast(s: &str, what: &str) -> Result<IpAddr, String> {
    let a = address(s, what)?;
    let bad = match a {
        IpAddr::V4(v) => {
            v.is_unspecified() || v.is_broadcast() || v.is_multicast() || v.is_loopback()
        }
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
    };
    if bad {
        return Err(format!("{what} {a} is not a unicast address"));
    }
    Ok(a)
}

/// Splits at `:` outside brackets, so `[2001:db8::1]` stays one field.
fn fields(v: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut start, mut depth) = (0usize, 0u8);
    for (i, c) in v.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            ']' if depth == 1 => depth = 0,
            '[' | ']' => return Err("unbalanced brackets".into()),
            ':' if depth == 0 => {
                out.push(v.get(start..i).unwrap_or_default());
                // ':' is one byte: the next field starts right after it.
                start = i.saturating_add(1);
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced brackets".into());
    }
    out.push(v.get(start..).unwrap_or_default());
    Ok(out)
}

fn opt<'a>(f: &[&'a str], i: usize) -> Option<&'a str> {
    f.get(i).copied().filter(|s| !s.is_empty())
}

fn mtu(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(m) if (576..=9216).contains(&m) => Ok(m),
        _ => Err(format!("MTU {s:?} is outside 576..9216")),
    }
}

/// A MAC address written with `:` or `-` between its six bytes, or as 12 hex digits.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = if s.len() == 12 {
        [0usize, 2, 4, 6, 8, 10]
            .iter()
            .filter_map(|&i| s.get(i..i.saturating_add(2)))
            .collect()
    } else {
        s.split([':', '-']).collect()
    };
    let mut mac = [0u8; 6];
    if parts.len() != mac.len() {
        return None;
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// `MTU` and `MAC` trailing fields (the MAC's own colons split it into six fields).
fn mtu_mac(c: &mut IpConfig, rest: &[&str]) -> Result<(), String> {
    if let Some(m) = opt(rest, 0) {
        c.mtu = Some(mtu(m)?);
    }
    if rest.len() > 1 {
        let mac = rest.get(1..).unwrap_or_default().join(":");
        let Some(m) = parse_mac(&mac).filter(|_| mac.len() == 17) else {
            return Err(format!("{mac:?} is not a MAC address"));
        };
        c.mac = Some(
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        );
    }
    Ok(())
}

/// Parses one `ip=` value.
pub fn parse_ip(v: &str) -> Result<IpConfig, String> {
    let f = fields(v)?;
    if let [one] = f.as_slice() {
        return match method(one)? {
            Some(m) => Ok(IpConfig::new(m)),
            None => Err("expected dhcp, dhcp6, auto6, on, any, off, none, IFACE:dhcp or CLIENT::GATEWAY:NETMASK:HOSTNAME:IFACE:none".into()),
        };
    }
    // IFACE:METHOD[:MTU[:MAC]]
    if f.len() < 7 || f.get(1).is_some_and(|w| method(w).ok().flatten().is_some()) {
        let (Some(iface), Some(word)) = (f.first(), f.get(1)) else {
            return Err("expected IFACE:dhcp".into());
        };
        let Some(m) = method(word)? else {
            return Err(format!(
                "{word:?} is not a configuration method (the static form has 7 fields: CLIENT:PEER:GATEWAY:NETMASK:HOSTNAME:IFACE:none)"
            ));
        };
        if !valid_ifname(iface) {
            return Err(format!("{iface:?} is not an interface name"));
        }
        let mut c = IpConfig::new(m);
        c.iface = Some(iface.to_string());
        mtu_mac(&mut c, f.get(2..).unwrap_or_default())?;
        return Ok(c);
    }
    // CLIENT:PEER:GATEWAY:NETMASK:HOSTNAME:IFACE:AUTOCONF[:…]
    let client = opt(&f, 0);
    let autoconf = match opt(&f, 6) {
        Some(w) => method(w)?.ok_or_else(|| format!("{w:?} is not a configuration method"))?,
        None if client.is_some() => Method::Static,
        None => Method::Dhcp,
    };
    // As the kernel and dracut read it: a method other than none/off wins over a client
    // address (DHCP on IFACE with HOSTNAME); none/off with an address is the static form.
    let m = match (autoconf, client) {
        (Method::Off, Some(_)) | (Method::Static, _) => Method::Static,
        (m, _) => m,
    };
    let mut c = IpConfig::new(m);
    if let Some(i) = opt(&f, 5) {
        if !valid_ifname(i) {
            return Err(format!("{i:?} is not an interface name"));
        }
        c.iface = Some(i.to_string());
    }
    if let Some(h) = opt(&f, 4) {
        if !valid_hostname(h) {
            return Err(format!("{h:?} is not a host name"));
        }
        c.hostname = Some(h.to_string());
    }
    if m == Method::Static {
        let a = unicast(client.unwrap_or_default(), "client address")?;
        let prefix = match (opt(&f, 3), a) {
            (Some(n), IpAddr::V4(_)) => parse_netmask(n)?,
            (Some(n), IpAddr::V6(_)) => match n.parse::<u8>() {
                Ok(p) if (1..=128).contains(&p) => p,
                _ => return Err(format!("IPv6 prefix length {n:?} is outside 1..128")),
            },
            (None, IpAddr::V4(v4)) => classful_prefix(v4),
            (None, IpAddr::V6(_)) => 64,
        };
        c.addr = Some(a);
        c.prefix = Some(prefix);
        if let Some(g) = opt(&f, 2) {
            let g = unicast(g, "gateway")?;
            if g.is_ipv6() != a.is_ipv6() {
                return Err(format!(
                    "gateway {g} and client address {a} are of different IP versions"
                ));
            }
            c.gateway = Some(g);
        }
    }
    // Field 7 on: the kernel's DNS0:DNS1:NTP, or dracut's MTU:MAC.
    let rest = f.get(7..).unwrap_or_default();
    let is_addr = |s: &&str| s.contains('.') || s.starts_with('[');
    if rest.first().is_some_and(is_addr) || rest.get(1).is_some_and(is_addr) {
        for d in rest.iter().take(2).filter(|s| !s.is_empty()) {
            c.dns.push(unicast(d, "name server")?);
        }
    } else {
        mtu_mac(&mut c, rest)?;
    }
    Ok(c)
}

/// Parses one `nameserver=` value: IPv4, or IPv6 with or without brackets.
pub fn parse_nameserver(v: &str) -> Result<IpAddr, String> {
    if !v.starts_with('[') && v.contains(':') {
        return unicast(&format!("[{v}]"), "name server");
    }
    unicast(v, "name server")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dhcp_forms() {
        for v in ["dhcp", "on", "any", "single-dhcp", "bootp"] {
            assert_eq!(parse_ip(v).unwrap().method, Method::Dhcp, "{v}");
        }
        assert_eq!(parse_ip("off").unwrap().method, Method::Off);
        let c = parse_ip("eth0:dhcp").unwrap();
        assert_eq!((c.method, c.iface.as_deref()), (Method::Dhcp, Some("eth0")));
        let c = parse_ip("enp1s0:dhcp:9000:52:54:00:12:34:56").unwrap();
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.mac.as_deref(), Some("52:54:00:12:34:56"));
        // The kernel's form with an empty client: DHCP on that interface with that name.
        let c = parse_ip(":::::eth1:dhcp").unwrap();
        assert_eq!((c.method, c.iface.as_deref()), (Method::Dhcp, Some("eth1")));
        let c = parse_ip("::::node7:eth0:").unwrap();
        assert_eq!(
            (c.method, c.hostname.as_deref()),
            (Method::Dhcp, Some("node7"))
        );
    }

    /// The IPv6 forms of dracut.cmdline(7).
    #[test]
    fn ipv6_forms() {
        for (v, m) in [
            ("dhcp6", Method::Dhcp6),
            ("auto6", Method::Auto6),
            ("either6", Method::Either6),
            ("link6", Method::Link6),
            ("link-local", Method::Link6),
        ] {
            let c = parse_ip(v).unwrap();
            assert_eq!(c.method, m, "{v}");
            assert!(m.is_v6());
            let c = parse_ip(&format!("eth0:{v}:1500")).unwrap();
            assert_eq!(
                (c.method, c.iface.as_deref(), c.mtu),
                (m, Some("eth0"), Some(1500))
            );
        }
        assert!(!Method::Dhcp.is_v6() && !Method::Static.is_v6());
        let c = parse_ip("[2001:db8::10]::[2001:db8::1]:64:node1:eth0:none").unwrap();
        assert_eq!(c.method, Method::Static);
        assert_eq!(c.addr, Some(ip("2001:db8::10")));
        assert_eq!(c.prefix, Some(64));
        assert_eq!(c.gateway, Some(ip("2001:db8::1")));
        assert_eq!(c.hostname.as_deref(), Some("node1"));
        // No prefix length: /64, the only one SLAAC knows.
        let c = parse_ip("[fd00::5]:::::eth1:off").unwrap();
        assert_eq!((c.prefix, c.iface.as_deref()), (Some(64), Some("eth1")));
        // IPv6 name servers after the method, MTU and MAC after an IPv6 form.
        let c = parse_ip("[fd00::5]::[fd00::1]:48::eth0:none:[fd00::53]:[fd00::54]").unwrap();
        assert_eq!(c.dns, [ip("fd00::53"), ip("fd00::54")]);
        let c = parse_ip("[fd00::5]::[fd00::1]:48::eth0:none:9000:52:54:00:aa:bb:cc").unwrap();
        assert_eq!(
            (c.mtu, c.mac.as_deref()),
            (Some(9000), Some("52:54:00:aa:bb:cc"))
        );
        // An empty client with dhcp6: DHCPv6 on that interface.
        let c = parse_ip(":::::eth2:dhcp6").unwrap();
        assert_eq!(
            (c.method, c.iface.as_deref()),
            (Method::Dhcp6, Some("eth2"))
        );
    }

    #[test]
    fn macs() {
        for s in ["52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456"] {
            assert_eq!(parse_mac(s), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]), "{s}");
        }
        for s in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:5g",
            "5254001234567",
            "52:54:00:12:34:567",
        ] {
            assert_eq!(parse_mac(s), None, "{s}");
        }
    }

    #[test]
    fn static_forms() {
        let c = parse_ip("10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:none").unwrap();
        assert_eq!(c.method, Method::Static);
        assert_eq!(c.addr, Some(ip("10.0.2.15")));
        assert_eq!(c.prefix, Some(24));
        assert_eq!(c.gateway, Some(ip("10.0.2.2")));
        assert_eq!(c.hostname.as_deref(), Some("node1"));
        assert_eq!(c.iface.as_deref(), Some("eth0"));
        // Prefix length instead of a netmask, no interface, kernel DNS fields.
        let c = parse_ip("192.168.1.9::192.168.1.1:20:::off:192.168.1.1:8.8.8.8").unwrap();
        assert_eq!(c.prefix, Some(20));
        assert_eq!(c.iface, None);
        assert_eq!(c.dns, [ip("192.168.1.1"), ip("8.8.8.8")]);
        // dracut's MTU and MAC after the method.
        let c =
            parse_ip("10.1.0.5::10.1.0.1:255.255.0.0::eth0:none:1500:aa:bb:cc:dd:ee:ff").unwrap();
        assert_eq!(
            (c.mtu, c.mac.as_deref()),
            (Some(1500), Some("aa:bb:cc:dd:ee:ff"))
        );
        // No netmask: classful, as the kernel does.
        let c = parse_ip("172.16.0.4::::::none").unwrap();
        assert_eq!(c.prefix, Some(16));
    }

    #[test]
    fn invalid_values_say_why() {
        let cases = [
            ("", "expected"),
            ("dhcpp", "expected"),
            ("[2001:db8::1::[2001:db8::2]:64::eth0:none", "brackets"),
            ("2001:db8::1]:64", "brackets"),
            (
                "[2001:db8::10]::10.0.2.2:64::eth0:none",
                "different IP versions",
            ),
            (
                "[2001:db8::10]::[2001:db8::1]:129::eth0:none",
                "outside 1..128",
            ),
            ("[10.0.2.15]::10.0.2.2:24::eth0:none", "brackets"),
            ("[::1]:::64::eth0:none", "unicast"),
            ("eth0:ibft", "not supported"),
            ("eth0:static", "not a configuration method"),
            ("eth/0:dhcp", "interface name"),
            ("averyveryverylongname:dhcp", "interface name"),
            ("eth0:dhcp:70000", "MTU"),
            ("eth0:dhcp:1500:zz:bb:cc:dd:ee:ff", "MAC"),
            (
                "10.0.2.300::10.0.2.2:255.255.255.0::eth0:none",
                "client address",
            ),
            ("10.0.2.15::10.0.2.2:255.0.255.0::eth0:none", "contiguous"),
            ("10.0.2.15::10.0.2.2:0::eth0:none", "outside 1..32"),
            ("10.0.2.15::10.0.2.2:33::eth0:none", "outside 1..32"),
            ("255.255.255.255::10.0.2.2:24::eth0:none", "unicast"),
            ("10.0.2.15::224.0.0.1:24::eth0:none", "gateway"),
            ("10.0.2.15::10.0.2.2:24:bad_host!:eth0:none", "host name"),
            ("10.0.2.15::10.0.2.2:24::eth0:rarp", "not supported"),
        ];
        for (v, why) in cases {
            match parse_ip(v) {
                Ok(c) => panic!("{v:?} accepted as {c:?}"),
                Err(e) => assert!(e.contains(why), "{v:?}: {e}"),
            }
        }
        assert_eq!(parse_nameserver("10.0.2.3"), Ok(ip("10.0.2.3")));
        assert_eq!(parse_nameserver("[2001:db8::53]"), Ok(ip("2001:db8::53")));
        assert_eq!(parse_nameserver("2001:db8::53"), Ok(ip("2001:db8::53")));
        assert!(parse_nameserver("::").is_err());
        assert!(parse_nameserver("0.0.0.0").is_err());
        assert!(parse_nameserver("dns.example").is_err());
    }

    #[test]
    fn netmasks() {
        assert_eq!(mask_prefix(a("255.255.255.255")), Some(32));
        assert_eq!(mask_prefix(a("128.0.0.0")), Some(1));
        assert_eq!(mask_prefix(a("0.0.0.0")), None);
        assert_eq!(mask_prefix(a("255.255.0.255")), None);
        assert_eq!(parse_netmask("24"), Ok(24));
    }

    proptest! {
        #[test]
        fn never_panics(s in "[0-9a-z.:\\[\\]-]{0,60}") {
            let _ = parse_ip(&s);
            let _ = parse_nameserver(&s);
            let _ = parse_mac(&s);
        }

        #[test]
        fn any_unicode_never_panics(s in "\\PC{0,40}") {
            let _ = parse_ip(&s);
            let _ = parse_mac(&s);
        }
    }
}
