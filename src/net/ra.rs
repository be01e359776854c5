//! IPv6 router discovery for the standalone initramfs (RFC 4861 §4.1–4.2, §6.1.2; SLAAC, RFC
//! 4862; RDNSS and DNSSL, RFC 8106): the router solicitation sent, and router advertisements
//! parsed and checked into what the node configures. Pure: bytes in, a typed advertisement or a
//! reason out; the socket and the kernel are `net::up6`'s.
//!
//! Every value comes from whoever is on the link, so each is bounded here: a message with a
//! broken structure (an option of length 0 or running past the end) is refused whole, as RFC
//! 4861 §6.1.2 asks; a prefix, server or name that is not usable is left out with a note the
//! caller logs; lists are capped.

use std::net::Ipv6Addr;

pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// RFC 4861 §10: at most 3 solicitations 4 s apart; the node keeps soliciting until its
/// deadline (a router that boots after the node answers the next one), every [`RS_INTERVAL`].
pub const RS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(4);

/// Caps on what one advertisement may carry into the configuration.
pub const MAX_PREFIXES: usize = 8;
pub const MAX_SERVERS: usize = 8;
pub const MAX_DOMAINS: usize = 6;
/// IPv6's minimum MTU (RFC 8200) to the largest a node's NIC is configured with here.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 1280..=9216;

/// One Prefix Information option.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prefix {
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: addresses may be formed from it (SLAAC).
    pub autonomous: bool,
    pub valid_secs: u32,
    pub preferred_secs: u32,
}

/// A router advertisement that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The router's link-local address (the packet's source).
    pub router: Ipv6Addr,
    /// M: addresses by DHCPv6.
    pub managed: bool,
    /// O: other configuration (DNS) by DHCPv6.
    pub other: bool,
    /// Seconds; 0: not a default router.
    pub router_lifetime: u16,
    pub prefixes: Vec<Prefix>,
    pub mtu: Option<u32>,
    pub rdnss: Vec<Ipv6Addr>,
    pub dnssl: Vec<String>,
    /// What was left out, for a warning each.
    pub notes: Vec<String>,
}

/// A router solicitation from `mac` (with its source link-layer address option: the router
/// answers without resolving us first).
pub fn solicitation(mac: &[u8; 6]) -> Vec<u8> {
    let mut b = vec![ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    b.extend_from_slice(mac);
    b
}

/// The modified EUI-64 interface identifier of a MAC address (RFC 4291 appendix A): what the
/// kernel forms the link-local address from, and the node's SLAAC addresses here, so a node's
/// address is predictable from its MAC (the boot server's DNS and firewall can list it).
pub fn eui64(mac: &[u8; 6]) -> [u8; 8] {
    let [a, b, c, d, e, f] = *mac;
    [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]
}

/// The SLAAC address for `p` and `mac`, when the prefix allows one: the A flag, a /64 (the
/// interface identifier is 64 bits on Ethernet, RFC 4862 §5.5.3 d), a global or unique-local
/// unicast prefix, and a non-zero valid lifetime no shorter than the preferred one.
pub fn slaac_address(p: &Prefix, mac: &[u8; 6]) -> Result<Ipv6Addr, String> {
    if !p.autonomous {
        return Err(format!("{}/{} has no A flag", p.prefix, p.len));
    }
    if p.len != 64 {
        return Err(format!(
            "{}/{} is not a /64: no SLAAC address on Ethernet",
            p.prefix, p.len
        ));
    }
    if !global_unicast(p.prefix) {
        return Err(format!("{}/{} is not a unicast prefix", p.prefix, p.len));
    }
    if p.valid_secs == 0 || p.preferred_secs > p.valid_secs {
        return Err(format!(
            "{}/{}: lifetimes {} s valid, {} s preferred",
            p.prefix, p.len, p.valid_secs, p.preferred_secs
        ));
    }
    let mut o = p.prefix.octets();
    for (dst, src) in o.iter_mut().skip(8).zip(eui64(mac)) {
        *dst = src;
    }
    Ok(Ipv6Addr::from(o))
}

/// Neither unspecified, loopback, multicast nor link-local (fe80::/10): an address a node may
/// be configured with, or a server outside the link-local scope.
pub fn global_unicast(a: Ipv6Addr) -> bool {
    let s = a.segments();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || s.first().is_some_and(|x| x & 0xffc0 == 0xfe80)
        || a.to_ipv4_mapped().is_some())
}

pub fn link_local(a: Ipv6Addr) -> bool {
    a.segments().first().is_some_and(|x| x & 0xffc0 == 0xfe80)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn addr_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let o: [u8; 16] = b.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(o))
}

/// `Ok(None)`: an ICMPv6 message that is not a router advertisement (the raw socket sees every
/// ICMPv6 message on the link). `Err`: an advertisement refused whole, with the reason.
pub fn parse(bytes: &[u8], source: Ipv6Addr) -> Result<Option<Advert>, String> {
    if bytes.first() != Some(&ROUTER_ADVERTISEMENT) {
        return Ok(None);
    }
    // RFC 4861 §6.1.2: from a link-local address (routers never forward such a packet, so it
    // comes from this link), code 0, at least 16 bytes.
    if !link_local(source) {
        return Err(format!(
            "router advertisement from {source}, not a link-local address"
        ));
    }
    if bytes.get(1) != Some(&0) {
        return Err("router advertisement with a non-zero code".into());
    }
    if bytes.len() < 16 {
        return Err(format!(
            "router advertisement of {} bytes (at least 16)",
            bytes.len()
        ));
    }
    let flags = bytes.get(5).copied().unwrap_or(0);
    let mut ra = Advert {
        router: source,
        managed: flags & 0x80 != 0,
        other: flags & 0x40 != 0,
        router_lifetime: be16(bytes, 6).unwrap_or(0),
        prefixes: Vec::new(),
        mtu: None,
        rdnss: Vec::new(),
        dnssl: Vec::new(),
        notes: Vec::new(),
    };
    let mut rest = bytes.get(16..).unwrap_or_default();
    while !rest.is_empty() {
        let (Some(&kind), Some(&units)) = (rest.first(), rest.get(1)) else {
            return Err("router advertisement option cut short".into());
        };
        if units == 0 {
            return Err(format!("router advertisement option {kind} of length 0"));
        }
        let len = usize::from(units).saturating_mul(8);
        let Some((opt, tail)) = rest.split_at_checked(len) else {
            return Err(format!(
                "router advertisement option {kind} runs past the end"
            ));
        };
        rest = tail;
        match kind {
            3 => prefix_option(opt, &mut ra),
            5 => {
                let m = be32(opt, 4).unwrap_or(0);
                if units == 1 && MTU_RANGE.contains(&m) {
                    ra.mtu = Some(m);
                } else {
                    ra.notes.push(format!("MTU option {m} left out"));
                }
            }
            25 => rdnss_option(opt, &mut ra),
            31 => dnssl_option(opt, &mut ra),
            _ => {}
        }
    }
    Ok(Some(ra))
}

fn prefix_option(opt: &[u8], ra: &mut Advert) {
    let parsed = (|| {
        if opt.len() != 32 {
            return None;
        }
        let len = *opt.get(2)?;
        let flags = *opt.get(3)?;
        Some(Prefix {
            prefix: addr_at(opt, 16)?,
            len,
            on_link: flags & 0x80 != 0,
            autonomous: flags & 0x40 != 0,
            valid_secs: be32(opt, 4)?,
            preferred_secs: be32(opt, 8)?,
        })
    })();
    match parsed {
        Some(p) if p.len <= 128 && global_unicast(p.prefix) => {
            if ra.prefixes.len() < MAX_PREFIXES {
                ra.prefixes.push(p);
            } else {
                ra.notes
                    .push(format!("prefix {}/{} left out (too many)", p.prefix, p.len));
            }
        }
        // RFC 4862 §5.5.3 b: the link-local prefix is ignored, and so is anything else that is
        // not a unicast prefix.
        Some(p) => ra
            .notes
            .push(format!("prefix {}/{} left out", p.prefix, p.len)),
        None => ra.notes.push("malformed prefix option left out".into()),
    }
}

fn rdnss_option(opt: &[u8], ra: &mut Advert) {
    // Length 3, 5, 7…: 8 bytes of header, then 16 per server (RFC 8106 §5.1).
    let lifetime = be32(opt, 4).unwrap_or(0);
    if opt.len() < 24 || opt.len().checked_sub(8).is_none_or(|n| n % 16 != 0) {
        ra.notes.push("malformed RDNSS option left out".into());
        return;
    }
    if lifetime == 0 {
        return;
    }
    let mut at = 8usize;
    while let Some(a) = addr_at(opt, at) {
        at = at.saturating_add(16);
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            ra.notes.push(format!("name server {a} left out"));
        } else if ra.rdnss.len() < MAX_SERVERS && !ra.rdnss.contains(&a) {
            ra.rdnss.push(a);
        }
    }
}

fn dnssl_option(opt: &[u8], ra: &mut Advert) {
    let lifetime = be32(opt, 4).unwrap_or(0);
    if lifetime == 0 {
        return;
    }
    match domain_names(opt.get(8..).unwrap_or_default()) {
        Ok(names) => {
            for n in names {
                if ra.dnssl.len() < MAX_DOMAINS && !ra.dnssl.contains(&n) {
                    ra.dnssl.push(n);
                }
            }
        }
        Err(why) => ra.notes.push(format!("DNSSL option left out: {why}")),
    }
}

/// Domain names in DNS wire format, uncompressed (RFC 8106 §5.2, RFC 8415 §10), each checked
/// as a host name; trailing zero bytes are padding.
pub fn domain_names(mut b: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    while b.iter().any(|x| *x != 0) {
        let mut labels: Vec<String> = Vec::new();
        loop {
            let Some((&n, tail)) = b.split_first() else {
                return Err("a name runs past the end".into());
            };
            b = tail;
            if n == 0 {
                break;
            }
            if n > 63 {
                return Err("a label longer than 63 bytes (or a compression pointer)".into());
            }
            let Some((label, tail)) = b.split_at_checked(usize::from(n)) else {
                return Err("a label runs past the end".into());
            };
            b = tail;
            labels.push(String::from_utf8_lossy(label).into_owned());
        }
        let name = labels.join(".");
        if !crate::config::ipconfig::valid_hostname(&name) {
            return Err(format!(
                "{} is not a valid domain name",
                crate::support::log::Escaped(&name)
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// A host name in DNS wire format (for tests and the DHCPv6 domain list).
pub fn encode_name(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for l in name.split('.').filter(|l| !l.is_empty()) {
        b.push(u8::try_from(l.len()).unwrap_or(0));
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    fn router() -> Ipv6Addr {
        "fe80::6ced:32ff:fe47:d884".parse().unwrap()
    }

    /// Recorded from the rig's dnsmasq 2.90 (`--dhcp-range=fd00:2::,ra-only,64,1h`, RDNSS and
    /// DNSSL rig.test, `--ra-param=br0,10,1800`): flags 0, lifetime 1800, a prefix with L and A,
    /// MTU 1500, RDNSS, DNSSL, source link-layer address.
    fn recorded() -> Vec<u8> {
        let mut b = vec![134, 0, 0, 0, 64, 0x00, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        // prefix information fd00:2::/64, L+A, valid 3600, preferred 3600
        b.extend_from_slice(&[
            3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
        ]);
        b.extend_from_slice(&"fd00:2::".parse::<Ipv6Addr>().unwrap().octets());
        // MTU 1500
        b.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        // RDNSS fe80::6ced:32ff:fe47:d884, lifetime 1200
        b.extend_from_slice(&[25, 3, 0, 0, 0, 0, 0x04, 0xb0]);
        b.extend_from_slice(&router().octets());
        // DNSSL rig.test, padded to 8 bytes
        let mut n = encode_name("rig.test");
        while (n.len() + 8) % 8 != 0 {
            n.push(0);
        }
        b.extend_from_slice(&[
            31,
            u8::try_from((n.len() + 8) / 8).unwrap(),
            0,
            0,
            0,
            0,
            0x04,
            0xb0,
        ]);
        b.extend_from_slice(&n);
        // source link-layer address
        b.extend_from_slice(&[1, 1, 0x6e, 0xed, 0x32, 0x47, 0xd8, 0x84]);
        b
    }

    #[test]
    fn a_recorded_advertisement() {
        let ra = parse(&recorded(), router()).unwrap().unwrap();
        assert!(!ra.managed && !ra.other);
        assert_eq!(ra.router_lifetime, 1800);
        assert_eq!(ra.mtu, Some(1500));
        assert_eq!(ra.rdnss, vec![router()]);
        assert_eq!(ra.dnssl, vec!["rig.test".to_string()]);
        assert_eq!(ra.prefixes.len(), 1);
        let p = &ra.prefixes[0];
        assert!(p.on_link && p.autonomous);
        assert_eq!((p.len, p.valid_secs, p.preferred_secs), (64, 3600, 3600));
        assert_eq!(
            slaac_address(p, &MAC).unwrap(),
            "fd00:2::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert!(ra.notes.is_empty(), "{:?}", ra.notes);
    }

    #[test]
    fn flags() {
        let mut b = recorded();
        b[5] = 0xc0;
        let ra = parse(&b, router()).unwrap().unwrap();
        assert!(ra.managed && ra.other);
    }

    #[test]
    fn not_an_advertisement() {
        assert_eq!(parse(&solicitation(&MAC), router()), Ok(None));
        assert_eq!(parse(&[], router()), Ok(None));
        assert_eq!(parse(&[135, 0, 0, 0], router()), Ok(None));
    }

    #[test]
    fn hostile_advertisements_are_refused() {
        let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(parse(&recorded(), global)
            .unwrap_err()
            .contains("not a link-local"));
        let mut b = recorded();
        b[1] = 1;
        assert!(parse(&b, router()).unwrap_err().contains("code"));
        assert!(parse(&recorded()[..12], router())
            .unwrap_err()
            .contains("12 bytes"));
        // An option of length 0 would loop forever in a naive parser.
        let mut b = recorded();
        b[17] = 0;
        assert!(parse(&b, router()).unwrap_err().contains("length 0"));
        // An option running past the end.
        let mut b = recorded();
        b[17] = 200;
        assert!(parse(&b, router()).unwrap_err().contains("past the end"));
    }

    #[test]
    fn unusable_values_are_left_out() {
        let mut b = recorded();
        // The prefix becomes link-local, the MTU absurd.
        b[32] = 0xfe;
        b[33] = 0x80;
        b[54] = 0;
        b[55] = 10;
        let ra = parse(&b, router()).unwrap().unwrap();
        assert!(ra.prefixes.is_empty());
        assert_eq!(ra.mtu, None);
        assert_eq!(ra.notes.len(), 2, "{:?}", ra.notes);
    }

    #[test]
    fn slaac_needs_a_64_with_a_and_sane_lifetimes() {
        let p = Prefix {
            prefix: "2001:db8:1::".parse().unwrap(),
            len: 64,
            on_link: true,
            autonomous: true,
            valid_secs: 100,
            preferred_secs: 50,
        };
        assert!(slaac_address(&p, &MAC).is_ok());
        for bad in [
            Prefix {
                autonomous: false,
                ..p.clone()
            },
            Prefix {
                len: 48,
                ..p.clone()
            },
            Prefix {
                valid_secs: 0,
                ..p.clone()
            },
            Prefix {
                preferred_secs: 101,
                ..p.clone()
            },
            Prefix {
                prefix: "ff02::".parse().unwrap(),
                ..p.clone()
            },
        ] {
            assert!(slaac_address(&bad, &MAC).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domain_names_in_wire_format() {
        let mut b = encode_name("a.example");
        b.extend(encode_name("rig.test"));
        b.extend([0, 0, 0]);
        assert_eq!(domain_names(&b).unwrap(), ["a.example", "rig.test"]);
        assert!(domain_names(&[3, b'a', b'b']).is_err());
        assert!(domain_names(&[0xc0, 0x0c]).is_err());
        assert!(domain_names(&[3, b'a', b'\n', b'b', 0]).is_err());
        assert_eq!(domain_names(&[0, 0]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn solicitation_and_eui64() {
        let rs = solicitation(&MAC);
        assert_eq!(rs.len(), 16);
        assert_eq!(rs[0], 133);
        assert_eq!(eui64(&MAC), [0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), src in any::<[u8; 16]>()) {
            let _ = parse(&bytes, Ipv6Addr::from(src));
            let mut b = bytes.clone();
            if !b.is_empty() { b[0] = 134; }
            if b.len() > 1 { b[1] = 0; }
            if let Ok(Some(ra)) = parse(&b, router()) {
                for p in &ra.prefixes { let _ = slaac_address(p, &MAC); }
                prop_assert!(ra.rdnss.len() <= MAX_SERVERS && ra.dnssl.len() <= MAX_DOMAINS && ra.prefixes.len() <= MAX_PREFIXES);
            }
            let _ = domain_names(&bytes);
        }

        #[test]
        fn options_after_a_valid_header(opts in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = recorded()[..16].to_vec();
            b.extend(opts);
            let _ = parse(&b, router());
        }
    }
}
