//! `ip=` and `nameserver=` as dracut and the kernel spell them (dracut.cmdline(7),
//! Documentation/admin-guide/nfs/nfsroot.rst), for when rustlive configures the network
//! itself. Pure: a value in, a typed configuration or a reason out.
//!
//! Accepted (IPv4 only; an IPv6 form is refused by name):
//! - `ip=dhcp|on|any|single-dhcp|bootp|both`, `ip=off|none`
//! - `ip=IFACE:dhcp|on|any[:MTU[:MAC]]`
//! - `ip=CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:IFACE:none|off[:MTU[:MAC]]` and the kernel's
//!   `…:AUTOCONF[:DNS0[:DNS1[:NTP]]]`; NETMASK dotted or a prefix length; an empty CLIENT
//!   with `dhcp` is DHCP on IFACE (with HOSTNAME).

use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Dhcp,
    Static,
    Off,
}

/// One `ip=` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    pub method: Method,
    /// The interface it applies to; `None`: every Ethernet interface with carrier (DHCP) or
    /// the first one (static).
    pub iface: Option<String>,
    pub addr: Option<Ipv4Addr>,
    pub prefix: Option<u8>,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub dns: Vec<Ipv4Addr>,
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
        "off" | "none" => Method::Off,
        "dhcp6" | "auto6" | "either6" | "link6" | "link-local" => {
            return Err(format!(
                "{word}: IPv6 configuration is not supported by the standalone initramfs (use dhcp or a static IPv4 address)"
            ))
        }
        "rarp" | "ibft" => return Err(format!("{word} is not supported (use dhcp or a static address)")),
        _ => return Ok(None),
    }))
}

/// A prefix length from a dotted netmask (contiguous) or a number 1..=32.
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

fn unicast(s: &str, what: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("{what} {s:?} is not an IPv4 address"))?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Err(format!("{what} {a} is not a unicast address"));
    }
    Ok(a)
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

/// `MTU` and `MAC` trailing fields (the MAC's own colons split it into six fields).
fn mtu_mac(c: &mut IpConfig, rest: &[&str]) -> Result<(), String> {
    if let Some(m) = opt(rest, 0) {
        c.mtu = Some(mtu(m)?);
    }
    if rest.len() > 1 {
        let mac = rest.get(1..).unwrap_or_default().join(":");
        let ok = mac.split(':').count() == 6
            && mac
                .split(':')
                .all(|b| b.len() == 2 && b.bytes().all(|x| x.is_ascii_hexdigit()));
        if !ok {
            return Err(format!("{mac:?} is not a MAC address"));
        }
        c.mac = Some(mac.to_lowercase());
    }
    Ok(())
}

/// Parses one `ip=` value.
pub fn parse_ip(v: &str) -> Result<IpConfig, String> {
    if v.contains('[') {
        return Err("IPv6 addresses are not supported by the standalone initramfs".into());
    }
    let f: Vec<&str> = v.split(':').collect();
    if let [one] = f.as_slice() {
        return match method(one)? {
            Some(m) => Ok(IpConfig::new(m)),
            None => Err("expected dhcp, on, any, off, none, IFACE:dhcp or CLIENT::GATEWAY:NETMASK:HOSTNAME:IFACE:none".into()),
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
    let m = match (autoconf, client) {
        (Method::Off, Some(_)) => Method::Static,
        (Method::Off, None) => Method::Off,
        (Method::Dhcp, _) => Method::Dhcp,
        (Method::Static, _) => Method::Static,
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
        let prefix = match opt(&f, 3) {
            Some(n) => parse_netmask(n)?,
            None => classful_prefix(a),
        };
        c.addr = Some(a);
        c.prefix = Some(prefix);
        if let Some(g) = opt(&f, 2) {
            c.gateway = Some(unicast(g, "gateway")?);
        }
    }
    // Field 7 on: the kernel's DNS0:DNS1:NTP, or dracut's MTU:MAC.
    let rest = f.get(7..).unwrap_or_default();
    if rest.first().is_some_and(|s| s.contains('.')) || rest.get(1).is_some_and(|s| s.contains('.'))
    {
        for d in rest.iter().take(2).filter(|s| !s.is_empty()) {
            c.dns.push(unicast(d, "name server")?);
        }
    } else {
        mtu_mac(&mut c, rest)?;
    }
    Ok(c)
}

/// Parses one `nameserver=` value.
pub fn parse_nameserver(v: &str) -> Result<Ipv4Addr, String> {
    unicast(v, "name server")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Ipv4Addr {
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

    #[test]
    fn static_forms() {
        let c = parse_ip("10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:none").unwrap();
        assert_eq!(c.method, Method::Static);
        assert_eq!(c.addr, Some(a("10.0.2.15")));
        assert_eq!(c.prefix, Some(24));
        assert_eq!(c.gateway, Some(a("10.0.2.2")));
        assert_eq!(c.hostname.as_deref(), Some("node1"));
        assert_eq!(c.iface.as_deref(), Some("eth0"));
        // Prefix length instead of a netmask, no interface, kernel DNS fields.
        let c = parse_ip("192.168.1.9::192.168.1.1:20:::off:192.168.1.1:8.8.8.8").unwrap();
        assert_eq!(c.prefix, Some(20));
        assert_eq!(c.iface, None);
        assert_eq!(c.dns, [a("192.168.1.1"), a("8.8.8.8")]);
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
            ("dhcp6", "IPv6"),
            ("[fe80::1]::[fe80::2]:64::eth0:none", "IPv6"),
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
        assert!(parse_nameserver("10.0.2.3").is_ok());
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
        }
    }
}
