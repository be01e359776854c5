//! DHCPv6 client (RFC 8415) for the standalone initramfs: stateful (SOLICIT, ADVERTISE,
//! REQUEST, REPLY: one address, IA_NA, and the name servers) and stateless (an
//! INFORMATION-REQUEST for the name servers when a router says O without M). A state machine
//! as pure functions over bytes, like `net::dhcp`; the socket and the loop are `net::up6`'s.
//!
//! Every reply comes from whoever is on the link: its structure is checked (options within
//! bounds, our client identifier echoed, a server identifier present), its values bounded (a
//! unicast address, at most [`MAX_SERVERS`] name servers and [`MAX_DOMAINS`] domains, valid
//! names); anything else is refused with the reason, which the caller logs.

use super::ra::{domain_names, global_unicast};
use serde::Serialize;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

pub const SOLICIT: u8 = 1;
pub const ADVERTISE: u8 = 2;
pub const REQUEST: u8 = 3;
pub const REPLY: u8 = 7;
pub const INFORMATION_REQUEST: u8 = 11;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;

pub const MAX_SERVERS: usize = 8;
pub const MAX_DOMAINS: usize = 6;
/// RFC 8415 §7.6: a Request is sent at most 10 times, then the client solicits again.
pub const REQ_MAX_RC: u32 = 10;
/// The retransmission ceiling. RFC 8415's SOL_MAX_RT is an hour; a booting node keeps asking
/// every 16 s at most, within its deadline, so a server that comes up late is found quickly.
pub const MAX_RT: Duration = Duration::from_secs(16);

/// What the node asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An address (IA_NA) and the name servers.
    Stateful,
    /// The name servers only (INFORMATION-REQUEST).
    Stateless,
}

/// What a DHCPv6 exchange gave the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease6 {
    pub mode: Mode,
    /// `None` for a stateless exchange.
    pub addr: Option<Ipv6Addr>,
    /// The server's (link-local) address the reply came from.
    pub server: Ipv6Addr,
    /// The server's DUID, hexadecimal.
    pub server_duid: String,
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
    pub preferred_secs: Option<u32>,
    pub valid_secs: Option<u32>,
    pub t1_secs: Option<u32>,
    pub t2_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Soliciting,
    Requesting {
        server_duid: Vec<u8>,
        addr: Ipv6Addr,
        requests: u32,
    },
    Informing,
    Bound,
}

/// What a received datagram did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another transaction or another client: dropped silently.
    NotOurs,
    /// For us but unusable: dropped, with the reason for a warning.
    Rejected(String),
    /// An ADVERTISE was taken: send [`Client::packet`] (a REQUEST) now.
    Requesting,
    Bound(Lease6),
    /// The server's REPLY refused the address: soliciting again with a new transaction.
    Restart(String),
}

/// One interface's DHCPv6 exchange.
#[derive(Debug, Clone)]
pub struct Client {
    pub iface: String,
    duid: Vec<u8>,
    iaid: u32,
    xid: u32,
    mode: Mode,
    state: State,
    started: Instant,
}

/// DUID-LL (RFC 8415 §11.4): the MAC address, stable across boots without a clock or
/// storage, so a server can key reservations on it.
pub fn duid_ll(mac: &[u8; 6]) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(mac);
    d
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn put(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
    b.extend_from_slice(value);
}

/// The options of a DHCPv6 message (or of an option's payload): code and value, in order.
/// `None`: an option runs past the end.
pub fn options(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let code = u16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?));
        let (value, tail) = b.get(4..)?.split_at_checked(len)?;
        out.push((code, value));
        b = tail;
        // Bounded: a message of 64 KiB holds at most 16 Ki empty options.
        if out.len() > 256 {
            return None;
        }
    }
    Some(out)
}

fn find<'a>(opts: &[(u16, &'a [u8])], code: u16) -> Option<&'a [u8]> {
    opts.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A status code option: its code and printable message.
fn status(v: &[u8]) -> (u16, String) {
    let code = v
        .get(0..2)
        .and_then(|c| c.try_into().ok())
        .map(u16::from_be_bytes)
        .unwrap_or(1);
    let text: String = String::from_utf8_lossy(v.get(2..).unwrap_or_default())
        .chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    (code, text)
}

fn status_name(code: u16) -> &'static str {
    match code {
        1 => "UnspecFail",
        2 => "NoAddrsAvail",
        3 => "NoBinding",
        4 => "NotOnLink",
        5 => "UseMulticast",
        6 => "NoPrefixAvail",
        _ => "an unknown status",
    }
}

/// The address of an IA_NA for `iaid`, with its lifetimes and T1/T2, or why there is none.
struct Ia {
    addr: Ipv6Addr,
    preferred: u32,
    valid: u32,
    t1: u32,
    t2: u32,
}

fn ia_na(opts: &[(u16, &[u8])], iaid: u32) -> Result<Ia, String> {
    let Some(v) = opts
        .iter()
        .filter(|(c, _)| *c == OPT_IA_NA)
        .map(|(_, v)| *v)
        .find(|v| be32(v, 0) == Some(iaid))
    else {
        return Err("no address for this client (no IA_NA)".into());
    };
    let (Some(t1), Some(t2)) = (be32(v, 4), be32(v, 8)) else {
        return Err("malformed IA_NA".into());
    };
    let inner = options(v.get(12..).unwrap_or_default()).ok_or("malformed IA_NA options")?;
    if let Some(s) = find(&inner, OPT_STATUS_CODE) {
        let (code, text) = status(s);
        if code != 0 {
            return Err(format!("{} ({code}) {text}", status_name(code)));
        }
    }
    let mut refused = None;
    for (_, a) in inner.iter().filter(|(c, _)| *c == OPT_IAADDR) {
        let (Some(o), Some(preferred), Some(valid)) = (
            a.get(0..16).and_then(|o| <[u8; 16]>::try_from(o).ok()),
            be32(a, 16),
            be32(a, 20),
        ) else {
            refused = Some("malformed IAADDR".to_string());
            continue;
        };
        let addr = Ipv6Addr::from(o);
        if !global_unicast(addr) {
            refused = Some(format!("offered address {addr} is not a unicast address"));
            continue;
        }
        if valid == 0 || preferred > valid {
            refused = Some(format!(
                "offered address {addr} with lifetimes {valid} s valid, {preferred} s preferred"
            ));
            continue;
        }
        return Ok(Ia {
            addr,
            preferred,
            valid,
            t1,
            t2,
        });
    }
    Err(refused.unwrap_or_else(|| "no address in the IA_NA".into()))
}

/// Name servers and domains, bounded and checked.
fn dns_of(opts: &[(u16, &[u8])]) -> Result<(Vec<Ipv6Addr>, Vec<String>), String> {
    let mut dns = Vec::new();
    if let Some(v) = find(opts, OPT_DNS_SERVERS) {
        if v.len() % 16 != 0 {
            return Err(format!("DNS servers option of {} bytes", v.len()));
        }
        for c in v.chunks_exact(16) {
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap_or_default());
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(format!("name server {a} is not a unicast address"));
            }
            if dns.len() < MAX_SERVERS && !dns.contains(&a) {
                dns.push(a);
            }
        }
    }
    let mut domains = Vec::new();
    if let Some(v) = find(opts, OPT_DOMAIN_LIST) {
        for n in domain_names(v)? {
            if domains.len() < MAX_DOMAINS && !domains.contains(&n) {
                domains.push(n);
            }
        }
    }
    Ok((dns, domains))
}

impl Client {
    pub fn new(iface: &str, mac: &[u8; 6], xid: u32, mode: Mode, now: Instant) -> Client {
        let [_, _, a, b, c, d] = *mac;
        Client {
            iface: iface.to_string(),
            duid: duid_ll(mac),
            // The MAC's last four bytes: stable per interface across boots.
            iaid: u32::from_be_bytes([a, b, c, d]),
            xid: xid & 0x00ff_ffff,
            mode,
            state: match mode {
                Mode::Stateful => State::Soliciting,
                Mode::Stateless => State::Informing,
            },
            started: now,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The message type [`Client::packet`] sends now, for the log.
    pub fn kind(&self) -> &'static str {
        match self.state {
            State::Soliciting => "SOLICIT",
            State::Requesting { .. } => "REQUEST",
            State::Informing | State::Bound => "INFORMATION-REQUEST",
        }
    }

    pub fn is_requesting(&self) -> bool {
        matches!(self.state, State::Requesting { .. })
    }

    /// The message to (re)send in the current state.
    pub fn packet(&self, now: Instant) -> Vec<u8> {
        let kind = match self.state {
            State::Soliciting => SOLICIT,
            State::Requesting { .. } => REQUEST,
            _ => INFORMATION_REQUEST,
        };
        let mut b = vec![kind];
        b.extend_from_slice(self.xid.to_be_bytes().get(1..4).unwrap_or_default());
        put(&mut b, OPT_CLIENTID, &self.duid);
        let cs = now.saturating_duration_since(self.started).as_millis() / 10;
        put(
            &mut b,
            OPT_ELAPSED_TIME,
            &u16::try_from(cs).unwrap_or(u16::MAX).to_be_bytes(),
        );
        let mut oro = Vec::new();
        oro.extend_from_slice(&OPT_DNS_SERVERS.to_be_bytes());
        oro.extend_from_slice(&OPT_DOMAIN_LIST.to_be_bytes());
        put(&mut b, OPT_ORO, &oro);
        let mut ia = self.iaid.to_be_bytes().to_vec();
        ia.extend_from_slice(&[0; 8]);
        match &self.state {
            State::Soliciting => put(&mut b, OPT_IA_NA, &ia),
            State::Requesting {
                server_duid, addr, ..
            } => {
                put(&mut b, OPT_SERVERID, server_duid);
                let mut a = addr.octets().to_vec();
                a.extend_from_slice(&[0; 8]);
                put(&mut ia, OPT_IAADDR, &a);
                put(&mut b, OPT_IA_NA, &ia);
            }
            _ => {}
        }
        b
    }

    /// Counts a retransmission of REQUEST: after [`REQ_MAX_RC`], solicits again.
    pub fn note_retransmit(&mut self, new_xid: u32) {
        if let State::Requesting { requests, .. } = &mut self.state {
            *requests = requests.saturating_add(1);
            if *requests >= REQ_MAX_RC {
                self.state = State::Soliciting;
                self.xid = new_xid & 0x00ff_ffff;
            }
        }
    }

    /// Feeds one datagram received on the client port from `from`.
    pub fn handle(&mut self, bytes: &[u8], from: Ipv6Addr, new_xid: u32) -> Outcome {
        let (Some(&kind), Some(xid)) = (bytes.first(), bytes.get(1..4)) else {
            return Outcome::NotOurs;
        };
        if xid != self.xid.to_be_bytes().get(1..4).unwrap_or_default() {
            return Outcome::NotOurs;
        }
        let expected = match self.state {
            State::Soliciting => ADVERTISE,
            State::Requesting { .. } | State::Informing => REPLY,
            State::Bound => return Outcome::NotOurs,
        };
        if kind != expected {
            return Outcome::NotOurs;
        }
        let Some(opts) = options(bytes.get(4..).unwrap_or_default()) else {
            return Outcome::Rejected(format!("malformed DHCPv6 message ({} bytes)", bytes.len()));
        };
        // RFC 8415 §16.10, 16.11: our client identifier echoed, a server identifier present.
        if find(&opts, OPT_CLIENTID) != Some(&self.duid[..]) {
            return Outcome::Rejected("reply without our client identifier".into());
        }
        let Some(server_duid) = find(&opts, OPT_SERVERID).filter(|d| (1..=130).contains(&d.len()))
        else {
            return Outcome::Rejected("reply without a valid server identifier".into());
        };
        let top_status = find(&opts, OPT_STATUS_CODE).map(status);
        if let Some((code, text)) = top_status.as_ref().filter(|(c, _)| *c != 0) {
            let why = format!("server {from}: {} ({code}) {text}", status_name(*code));
            return match self.state {
                State::Requesting { .. } => {
                    self.state = State::Soliciting;
                    self.xid = new_xid & 0x00ff_ffff;
                    Outcome::Restart(why)
                }
                _ => Outcome::Rejected(why),
            };
        }
        let (dns, domains) = match dns_of(&opts) {
            Ok(d) => d,
            Err(why) => return Outcome::Rejected(format!("server {from}: {why}")),
        };
        let mut lease = Lease6 {
            mode: self.mode,
            addr: None,
            server: from,
            server_duid: hex(server_duid),
            dns,
            domains,
            preferred_secs: None,
            valid_secs: None,
            t1_secs: None,
            t2_secs: None,
        };
        match &self.state {
            State::Informing => {
                self.state = State::Bound;
                Outcome::Bound(lease)
            }
            State::Soliciting => match ia_na(&opts, self.iaid) {
                Ok(ia) => {
                    self.state = State::Requesting {
                        server_duid: server_duid.to_vec(),
                        addr: ia.addr,
                        requests: 0,
                    };
                    Outcome::Requesting
                }
                Err(why) => Outcome::Rejected(format!("advertise from {from}: {why}")),
            },
            State::Requesting {
                server_duid: wanted,
                ..
            } => {
                if server_duid != &wanted[..] {
                    return Outcome::NotOurs;
                }
                match ia_na(&opts, self.iaid) {
                    Ok(ia) => {
                        lease.addr = Some(ia.addr);
                        lease.preferred_secs = Some(ia.preferred);
                        lease.valid_secs = Some(ia.valid);
                        lease.t1_secs = Some(ia.t1);
                        lease.t2_secs = Some(ia.t2);
                        self.state = State::Bound;
                        Outcome::Bound(lease)
                    }
                    Err(why) => {
                        self.state = State::Soliciting;
                        self.xid = new_xid & 0x00ff_ffff;
                        Outcome::Restart(format!("reply from {from}: {why}"))
                    }
                }
            }
            State::Bound => Outcome::NotOurs,
        }
    }
}

/// RFC 8415 §15 retransmission: the first timeout `IRT` (1 s) plus up to 10 % (positive for
/// the first SOLICIT, so that it waits for more advertisements), then doubling, within
/// [`MAX_RT`]; `rand_permille` in −100..=100.
pub fn backoff(prev: Option<Duration>, rand_permille: i64) -> Duration {
    let r = rand_permille.clamp(-100, 100);
    let base_ms: i64 = match prev {
        None => 1000,
        Some(p) => i64::try_from(p.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(2),
    };
    let max_ms = i64::try_from(MAX_RT.as_millis()).unwrap_or(16_000);
    let base = base_ms.min(max_ms);
    let jitter = base.saturating_mul(if prev.is_none() { r.abs() } else { r }) / 1000;
    let ms = base
        .saturating_add(jitter)
        .clamp(1, max_ms.saturating_add(max_ms / 10));
    Duration::from_millis(u64::try_from(ms).unwrap_or(1000))
}

/// A server message, for tests and the recorded fixtures: `kind`, `xid`, then `opts`.
pub fn encode(kind: u8, xid: u32, opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(xid.to_be_bytes().get(1..4).unwrap_or_default());
    for (c, v) in opts {
        put(&mut b, *c, v);
    }
    b
}

/// An IA_NA option's value holding one address, for tests.
pub fn encode_ia(iaid: u32, addr: Ipv6Addr, preferred: u32, valid: u32) -> Vec<u8> {
    let mut ia = iaid.to_be_bytes().to_vec();
    ia.extend_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0x0b, 0x40]);
    let mut a = addr.octets().to_vec();
    a.extend_from_slice(&preferred.to_be_bytes());
    a.extend_from_slice(&valid.to_be_bytes());
    put(&mut ia, OPT_IAADDR, &a);
    ia
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const IAID: u32 = 0x0012_3456;
    fn server() -> Ipv6Addr {
        "fe80::6ced:32ff:fe47:d884".parse().unwrap()
    }
    fn addr() -> Ipv6Addr {
        "fd00:2::15".parse().unwrap()
    }
    fn sid() -> Vec<u8> {
        // dnsmasq's DUID-LLT
        vec![
            0, 1, 0, 1, 0x2e, 0x5c, 0x3a, 0x10, 0x6e, 0xed, 0x32, 0x47, 0xd8, 0x84,
        ]
    }
    /// What the rig's dnsmasq answers (recorded shape): server and client ids, the IA_NA with
    /// the reserved address, DNS servers and the domain list.
    fn answer(kind: u8, xid: u32) -> Vec<u8> {
        encode(
            kind,
            xid,
            &[
                (OPT_SERVERID, sid()),
                (OPT_CLIENTID, duid_ll(&MAC)),
                (OPT_IA_NA, encode_ia(IAID, addr(), 3600, 3600)),
                (
                    OPT_DNS_SERVERS,
                    "fd00:2::2".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                ),
                (OPT_DOMAIN_LIST, super::super::ra::encode_name("rig.test")),
            ],
        )
    }

    #[test]
    fn stateful_exchange() {
        let t = Instant::now();
        let mut c = Client::new("eth0", &MAC, 0xabcdef, Mode::Stateful, t);
        let sol = c.packet(t);
        assert_eq!(sol[..4], [SOLICIT, 0xab, 0xcd, 0xef]);
        let o = options(&sol[4..]).unwrap();
        assert_eq!(find(&o, OPT_CLIENTID), Some(&duid_ll(&MAC)[..]));
        assert_eq!(&find(&o, OPT_IA_NA).unwrap()[..4], &IAID.to_be_bytes());
        // A reply to another transaction, and a REPLY while soliciting: not ours.
        assert_eq!(
            c.handle(&answer(ADVERTISE, 0x111111), server(), 9),
            Outcome::NotOurs
        );
        assert_eq!(
            c.handle(&answer(REPLY, 0xabcdef), server(), 9),
            Outcome::NotOurs
        );
        assert_eq!(
            c.handle(&answer(ADVERTISE, 0xabcdef), server(), 9),
            Outcome::Requesting
        );
        let req = c.packet(t);
        assert_eq!(req[0], REQUEST);
        let o = options(&req[4..]).unwrap();
        assert_eq!(find(&o, OPT_SERVERID), Some(&sid()[..]));
        let ia = options(&find(&o, OPT_IA_NA).unwrap()[12..]).unwrap();
        assert_eq!(&find(&ia, OPT_IAADDR).unwrap()[..16], &addr().octets());
        let Outcome::Bound(l) = c.handle(&answer(REPLY, 0xabcdef), server(), 9) else {
            panic!()
        };
        assert_eq!(l.addr, Some(addr()));
        assert_eq!(l.dns, vec!["fd00:2::2".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(l.domains, ["rig.test"]);
        assert_eq!(
            (l.valid_secs, l.t1_secs, l.t2_secs),
            (Some(3600), Some(1800), Some(2880))
        );
        assert_eq!(l.server_duid, "000100012e5c3a106eed3247d884");
    }

    #[test]
    fn stateless_exchange() {
        let t = Instant::now();
        let mut c = Client::new("eth0", &MAC, 7, Mode::Stateless, t);
        let p = c.packet(t);
        assert_eq!(p[0], INFORMATION_REQUEST);
        assert_eq!(find(&options(&p[4..]).unwrap(), OPT_IA_NA), None);
        let reply = encode(
            REPLY,
            7,
            &[
                (OPT_SERVERID, sid()),
                (OPT_CLIENTID, duid_ll(&MAC)),
                (
                    OPT_DNS_SERVERS,
                    "fd00:2::2".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                ),
            ],
        );
        let Outcome::Bound(l) = c.handle(&reply, server(), 9) else {
            panic!()
        };
        assert_eq!(l.addr, None);
        assert_eq!(l.dns.len(), 1);
    }

    #[test]
    fn hostile_replies_are_refused() {
        let t = Instant::now();
        let mut c = Client::new("eth0", &MAC, 5, Mode::Stateful, t);
        let base = |ia: Vec<u8>, dns: Vec<u8>| {
            encode(
                ADVERTISE,
                5,
                &[
                    (OPT_SERVERID, sid()),
                    (OPT_CLIENTID, duid_ll(&MAC)),
                    (OPT_IA_NA, ia),
                    (OPT_DNS_SERVERS, dns),
                ],
            )
        };
        let ok_dns = "fd00:2::2".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        for (msg, why) in [
            (
                base(
                    encode_ia(IAID, "ff02::1".parse().unwrap(), 1, 1),
                    ok_dns.clone(),
                ),
                "not a unicast",
            ),
            (
                base(
                    encode_ia(IAID, "fe80::1".parse().unwrap(), 1, 1),
                    ok_dns.clone(),
                ),
                "not a unicast",
            ),
            (
                base(encode_ia(IAID, addr(), 10, 5), ok_dns.clone()),
                "lifetimes",
            ),
            (
                base(encode_ia(IAID, addr(), 0, 0), ok_dns.clone()),
                "lifetimes",
            ),
            (
                base(encode_ia(IAID + 1, addr(), 1, 1), ok_dns.clone()),
                "no IA_NA",
            ),
            (base(encode_ia(IAID, addr(), 1, 1), vec![0; 15]), "15 bytes"),
            (
                base(encode_ia(IAID, addr(), 1, 1), vec![0; 16]),
                "not a unicast",
            ),
            (
                encode(ADVERTISE, 5, &[(OPT_SERVERID, sid())]),
                "client identifier",
            ),
            (
                encode(ADVERTISE, 5, &[(OPT_CLIENTID, duid_ll(&MAC))]),
                "server identifier",
            ),
            (vec![ADVERTISE, 0, 0, 5, 0, 1, 0, 200], "malformed"),
        ] {
            match c.handle(&msg, server(), 9) {
                Outcome::Rejected(w) => assert!(w.contains(why), "{w} / {why}"),
                o => panic!("{o:?} for {why}"),
            }
        }
        // A NoAddrsAvail advertise is passed over; in a REPLY to our REQUEST it restarts.
        let no_addrs = encode(
            ADVERTISE,
            5,
            &[
                (OPT_SERVERID, sid()),
                (OPT_CLIENTID, duid_ll(&MAC)),
                (OPT_STATUS_CODE, b"\0\x02none left".to_vec()),
            ],
        );
        assert!(
            matches!(c.handle(&no_addrs, server(), 9), Outcome::Rejected(w) if w.contains("NoAddrsAvail"))
        );
        assert_eq!(
            c.handle(&answer(ADVERTISE, 5), server(), 9),
            Outcome::Requesting
        );
        let mut refused = no_addrs.clone();
        refused[0] = REPLY;
        assert!(matches!(
            c.handle(&refused, server(), 77),
            Outcome::Restart(_)
        ));
        assert_eq!(c.kind(), "SOLICIT");
        assert_eq!(c.packet(t)[1..4], [0, 0, 77]);
    }

    #[test]
    fn requests_give_up_after_ten() {
        let t = Instant::now();
        let mut c = Client::new("eth0", &MAC, 5, Mode::Stateful, t);
        assert_eq!(
            c.handle(&answer(ADVERTISE, 5), server(), 9),
            Outcome::Requesting
        );
        for _ in 0..9 {
            c.note_retransmit(6);
            assert!(c.is_requesting());
        }
        c.note_retransmit(6);
        assert!(!c.is_requesting());
    }

    #[test]
    fn retransmission_times() {
        assert_eq!(backoff(None, 0), Duration::from_secs(1));
        assert_eq!(backoff(None, -100), Duration::from_millis(1100));
        assert_eq!(
            backoff(Some(Duration::from_secs(1)), 100),
            Duration::from_millis(2200)
        );
        assert_eq!(backoff(Some(Duration::from_secs(100)), 0), MAX_RT);
        assert!(backoff(Some(Duration::MAX), 100) <= MAX_RT + MAX_RT / 10);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), src in any::<[u8; 16]>(), r in any::<i64>(), ms in any::<u64>()) {
            let t = Instant::now();
            for mode in [Mode::Stateful, Mode::Stateless] {
                let mut c = Client::new("eth0", &MAC, 5, mode, t);
                let _ = c.handle(&bytes, Ipv6Addr::from(src), 1);
                let mut b = bytes.clone();
                if b.len() >= 4 { b[1] = 0; b[2] = 0; b[3] = 5; }
                let _ = c.handle(&b, Ipv6Addr::from(src), 1);
                let _ = c.packet(t);
            }
            let _ = backoff(Some(Duration::from_millis(ms)), r);
        }

        #[test]
        fn options_after_a_valid_header(opts in proptest::collection::vec(any::<u8>(), 0..400)) {
            let t = Instant::now();
            let mut c = Client::new("eth0", &MAC, 5, Mode::Stateful, t);
            let mut b = vec![ADVERTISE, 0, 0, 5];
            b.extend(&opts);
            let _ = c.handle(&b, server(), 1);
            let mut b = answer(ADVERTISE, 5);
            b.extend(&opts);
            let _ = c.handle(&b, server(), 1);
        }
    }
}
