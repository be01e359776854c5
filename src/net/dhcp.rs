//! DHCPv4 client (RFC 2131): a state machine as pure functions over `dhcproto` messages, and a
//! thin driver that runs it on every candidate interface at once until the first lease.
//!
//! The driver uses one UDP socket per interface, bound to port 68 with `SO_BINDTODEVICE` and
//! `SO_BROADCAST`: the DISCOVER goes out from 0.0.0.0 with the broadcast flag set, so the
//! server's replies are broadcast and the kernel delivers them to that socket even though the
//! interface has no address yet. Retransmissions follow RFC 2131 §4.1 (4 s doubling to 64 s,
//! randomized by ±1 s), bounded by the caller's [`Deadline`].
//!
//! Over IPoIB (RFC 4390) the link-layer address (20 bytes) does not fit `chaddr`: the client
//! sends `htype` 32, `hlen` 0 and an empty `chaddr`, always sets the broadcast flag (the server
//! cannot unicast to an address it does not know), and identifies itself by the client
//! identifier alone ([`ipoib_client_id`]).

use crate::support::deadline::Deadline;
use dhcproto::v4::{self, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The link-layer address a client runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hw {
    Ether([u8; 6]),
    /// IPoIB: flags and queue pair number (4 bytes), then the port GID (16 bytes), whose last
    /// 8 bytes are the port GUID.
    Infiniband([u8; 20]),
}

impl From<[u8; 6]> for Hw {
    fn from(mac: [u8; 6]) -> Hw {
        Hw::Ether(mac)
    }
}

impl Hw {
    /// From the bytes of `/sys/class/net/IFACE/address`: 6 (Ethernet) or 20 (IPoIB).
    pub fn from_bytes(b: &[u8]) -> Option<Hw> {
        if let Ok(m) = <[u8; 6]>::try_from(b) {
            return Some(Hw::Ether(m));
        }
        <[u8; 20]>::try_from(b).ok().map(Hw::Infiniband)
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Hw::Ether(m) => m,
            Hw::Infiniband(a) => a,
        }
    }

    /// The Ethernet MAC, which IPoIB has none of.
    pub fn mac(&self) -> Option<[u8; 6]> {
        match self {
            Hw::Ether(m) => Some(*m),
            Hw::Infiniband(_) => None,
        }
    }

    /// The IPoIB port GUID: the last 8 bytes of the address.
    pub fn guid(&self) -> Option<[u8; 8]> {
        match self {
            Hw::Ether(_) => None,
            Hw::Infiniband(a) => a.get(12..).and_then(|g| <[u8; 8]>::try_from(g).ok()),
        }
    }

    /// The DHCP `htype`: 1 (Ethernet) or 32 (InfiniBand, RFC 4390).
    fn htype(&self) -> u8 {
        match self {
            Hw::Ether(_) => 1,
            Hw::Infiniband(_) => 32,
        }
    }

    /// The client identifier (option 61): type 1 and the MAC on Ethernet (what the node sent
    /// before, so existing reservations stay valid), [`ipoib_client_id`] on IPoIB.
    pub fn client_id(&self) -> Vec<u8> {
        match self {
            Hw::Ether(m) => {
                let mut id = vec![1u8];
                id.extend_from_slice(m);
                id
            }
            Hw::Infiniband(_) => ipoib_client_id(&self.guid().unwrap_or_default()),
        }
    }
}

impl std::fmt::Display for Hw {
    /// `52:54:00:12:34:56`, or the 20 bytes of an IPoIB address the same way (`ip link`'s form).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: Vec<String> = self.bytes().iter().map(|b| format!("{b:02x}")).collect();
        f.write_str(&hex.join(":"))
    }
}

/// The IPoIB client identifier of the port with GUID `guid` (RFC 4390 §2.1: type 255, then an
/// IAID and a DUID as RFC 4361 describes). The IAID is 0 and the DUID is a DUID-EN of
/// enterprise 713 (0x2c9, Mellanox) whose identifier is a zero byte and the port GUID: the
/// identifier RHEL's network scripts, NetworkManager and dnsmasq's documented examples have used
/// for a decade (`ff:00:00:00:00:00:02:00:00:02:c9:00:` and the GUID), so the reservations a
/// site already keys on it keep working. It depends only on the port, not on the queue pair
/// number, which changes from boot to boot.
pub fn ipoib_client_id(guid: &[u8; 8]) -> Vec<u8> {
    let mut id = Vec::with_capacity(20);
    id.push(0xff); // RFC 4361: the IAID and DUID follow
    id.extend_from_slice(&[0, 0, 0, 0]); // IAID
    id.extend_from_slice(&[0, 2]); // DUID-EN
    id.extend_from_slice(&713u32.to_be_bytes()); // enterprise number
    id.push(0);
    id.extend_from_slice(guid);
    id
}

/// What a lease gives the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    /// Classless static routes (option 121): destination, prefix, gateway (0.0.0.0: on-link).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Seconds; `None` when the server gave none (treated as infinite).
    pub lease_secs: Option<u32>,
}

/// The options requested (parameter request list).
pub const REQUESTED: &[OptionCode] = &[
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::DomainName,
    OptionCode::Hostname,
    OptionCode::InterfaceMtu,
    OptionCode::ClasslessStaticRoute,
    OptionCode::AddressLeaseTime,
];

pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9216;
/// Smaller networks are not a LAN a node boots on; a server sending one is misconfigured.
pub const MIN_PREFIX: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Selecting,
    Requesting { offer: Lease, requests: u32 },
    Bound,
}

/// What a received datagram did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not for this client (another transaction, another MAC, a request): silently dropped.
    NotOurs,
    /// For this client but unusable: dropped, with the reason for a warning.
    Rejected(String),
    /// An offer was taken: send [`Client::packet`] (a REQUEST) now.
    Requesting,
    Bound(Lease),
    /// The server refused the address: back to DISCOVER with a new transaction.
    Nak(String),
}

/// One interface's DHCP exchange.
#[derive(Debug, Clone)]
pub struct Client {
    pub iface: String,
    hw: Hw,
    xid: u32,
    state: State,
    started: Instant,
}

impl Client {
    pub fn new(iface: &str, hw: impl Into<Hw>, xid: u32, now: Instant) -> Client {
        Client {
            iface: iface.to_string(),
            hw: hw.into(),
            xid,
            state: State::Selecting,
            started: now,
        }
    }

    pub fn xid(&self) -> u32 {
        self.xid
    }

    pub fn is_requesting(&self) -> bool {
        matches!(self.state, State::Requesting { .. })
    }

    /// The message to (re)send in the current state: DISCOVER or REQUEST.
    pub fn packet(&self, now: Instant) -> Vec<u8> {
        let Some(mut m) = blank(1, self.xid, &self.hw) else {
            return Vec::new();
        };
        // Broadcast replies: the interface has no address yet (and over IPoIB the server could
        // not address a unicast reply anyway, RFC 4390 §2.2).
        m.set_opcode(Opcode::BootRequest)
            .set_flags(Flags::default().set_broadcast())
            .set_secs(
                u16::try_from(now.saturating_duration_since(self.started).as_secs())
                    .unwrap_or(u16::MAX),
            );
        let o = m.opts_mut();
        o.insert(DhcpOption::ClientIdentifier(self.hw.client_id()));
        o.insert(DhcpOption::ParameterRequestList(REQUESTED.to_vec()));
        o.insert(DhcpOption::MaxMessageSize(1500));
        match &self.state {
            State::Requesting { offer, .. } => {
                o.insert(DhcpOption::MessageType(MessageType::Request));
                o.insert(DhcpOption::RequestedIpAddress(offer.addr));
                o.insert(DhcpOption::ServerIdentifier(offer.server));
            }
            _ => {
                o.insert(DhcpOption::MessageType(MessageType::Discover));
            }
        }
        // A message this small always encodes; an empty datagram is dropped by servers.
        m.to_vec().unwrap_or_default()
    }

    /// Counts a retransmission of REQUEST; after 4 unanswered ones, starts over (RFC 2131
    /// §3.1.5: the client "SHOULD restart the initialization procedure").
    pub fn note_retransmit(&mut self, new_xid: u32) {
        if let State::Requesting { requests, .. } = &mut self.state {
            *requests = requests.saturating_add(1);
            if *requests > 4 {
                self.state = State::Selecting;
                self.xid = new_xid;
            }
        }
    }

    /// Feeds one received datagram (a BOOTP message, UDP payload).
    pub fn handle(&mut self, bytes: &[u8], new_xid: u32) -> Outcome {
        // Checked on the raw bytes first: dhcproto slices chaddr by the message's own hlen
        // and panics when it exceeds 16, so nothing with another hlen reaches the decoder.
        let head_ok = bytes.get(4..8) == Some(&self.xid.to_be_bytes()[..])
            && match &self.hw {
                Hw::Ether(mac) => {
                    bytes.get(0..3) == Some(&[2, 1, 6][..]) && bytes.get(28..34) == Some(&mac[..])
                }
                // RFC 4390 §2.2: the server answers with htype 32 and hlen 0; nothing in chaddr
                // to compare, the transaction id and the client identifier tell.
                Hw::Infiniband(_) => bytes.get(0..3) == Some(&[2, 32, 0][..]),
            };
        if !head_ok {
            return if bytes.len() < 240 && bytes.first() == Some(&2) {
                Outcome::Rejected(format!("malformed DHCP message ({} bytes)", bytes.len()))
            } else {
                Outcome::NotOurs
            };
        }
        let Some(msg) =
            options_we_read(bytes).and_then(|b| Message::decode(&mut Decoder::new(&b)).ok())
        else {
            return Outcome::Rejected(format!("malformed DHCP message ({} bytes)", bytes.len()));
        };
        if msg.opcode() != Opcode::BootReply
            || msg.xid() != self.xid
            || self
                .hw
                .mac()
                .is_some_and(|mac| msg.chaddr().get(..6) != Some(&mac[..]))
        {
            return Outcome::NotOurs;
        }
        // A server that echoes the client identifier (RFC 6842) names whose reply this is.
        if let Some(DhcpOption::ClientIdentifier(id)) = msg.opts().get(OptionCode::ClientIdentifier)
        {
            if *id != self.hw.client_id() {
                return Outcome::NotOurs;
            }
        }
        let kind = msg.opts().msg_type();
        match (&self.state, kind) {
            (State::Selecting, Some(MessageType::Offer)) => match lease_of(&self.iface, &msg) {
                Ok(offer) => {
                    self.state = State::Requesting { offer, requests: 0 };
                    Outcome::Requesting
                }
                Err(why) => Outcome::Rejected(format!("offer from {}: {why}", source(&msg))),
            },
            (State::Requesting { offer, .. }, Some(MessageType::Ack)) => {
                match lease_of(&self.iface, &msg) {
                    Ok(l) if l.server != offer.server => Outcome::Rejected(format!(
                        "ACK from server {} while requesting from {}",
                        l.server, offer.server
                    )),
                    Ok(l) if l.addr != offer.addr => Outcome::Rejected(format!(
                        "ACK for {} while requesting {}",
                        l.addr, offer.addr
                    )),
                    Ok(l) => {
                        self.state = State::Bound;
                        Outcome::Bound(l)
                    }
                    Err(why) => Outcome::Rejected(format!("ACK from {}: {why}", source(&msg))),
                }
            }
            (State::Requesting { offer, .. }, Some(MessageType::Nak)) => {
                let (server, addr) = (offer.server, offer.addr);
                if server_id(&msg).is_some_and(|s| s != server) {
                    return Outcome::NotOurs;
                }
                let text = match msg.opts().get(OptionCode::Message) {
                    Some(DhcpOption::Message(t)) => format!(": {}", printable(t)),
                    _ => String::new(),
                };
                self.state = State::Selecting;
                self.xid = new_xid;
                Outcome::Nak(format!("server {server} refused {addr}{text}"))
            }
            _ => Outcome::NotOurs,
        }
    }
}

/// An empty BOOTP message with `op`, `xid` and `mac`. Decoded from bytes on purpose:
/// dhcproto's constructors go through `Message::default()`, which draws a random xid from
/// `rand`'s OS-seeded generator, and that blocks in getrandom(2) until the kernel's CRNG is
/// initialised: seconds, early in a boot, on a machine with little entropy (measured: 3 s
/// under QEMU TCG).
fn blank(op: u8, xid: u32, hw: &Hw) -> Option<Message> {
    // IPoIB: hlen 0 and chaddr empty (RFC 4390 §2.1), the address does not fit.
    let mac = hw.mac();
    let chaddr: &[u8] = match &mac {
        Some(m) => m,
        None => &[],
    };
    let mut b = Vec::with_capacity(241);
    b.extend_from_slice(&[op, hw.htype(), u8::try_from(chaddr.len()).ok()?, 0]); // op, htype, hlen, hops
    b.extend_from_slice(&xid.to_be_bytes()); // 4..8
    b.extend_from_slice(&[0u8; 20]); // secs, flags, ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(chaddr); // chaddr from 28
    b.resize(236, 0); // chaddr padding, sname, file
    b.extend_from_slice(&[99, 130, 83, 99]); // magic cookie 236..240
    b.push(255);
    Message::decode(&mut Decoder::new(&b)).ok()
}

/// The message with only the options the client reads, each with a length its type allows.
///
/// dhcproto decodes fixed-size options without looking at their length byte (so a wrong one
/// misaligns every option after it) and `debug_assert!`s the length of a few it does not use,
/// which panics in debug builds. A server's other options mean nothing to a booting node, so they
/// are dropped here instead of being trusted to the decoder. `None`: not a DHCP message, or an
/// option runs past the end.
fn options_we_read(bytes: &[u8]) -> Option<Vec<u8>> {
    const COOKIE_END: usize = 240;
    let head = bytes.get(..COOKIE_END)?;
    if head.get(236..) != Some(&[99, 130, 83, 99][..]) {
        return None;
    }
    let mut out = head.to_vec();
    let mut rest = bytes.get(COOKIE_END..)?;
    loop {
        match rest {
            [] | [255, ..] => break,
            [0, tail @ ..] => rest = tail,
            [code, len, tail @ ..] => {
                let (value, tail) = tail.split_at_checked(usize::from(*len))?;
                if option_length_ok(*code, value.len()) {
                    out.extend_from_slice(&[*code, *len]);
                    out.extend_from_slice(value);
                }
                rest = tail;
            }
            [_] => return None,
        }
    }
    out.push(255);
    Some(out)
}

/// Whether option `code` is one the client reads, with a length its type allows.
fn option_length_ok(code: u8, len: usize) -> bool {
    match code {
        // subnet mask, server identifier, lease time
        1 | 54 | 51 => len == 4,
        // routers, DNS servers
        3 | 6 => len >= 4 && len % 4 == 0,
        // host name, domain name, NAK message, classless static routes (parsed in bounds)
        12 | 15 | 56 | 121 => len >= 1,
        26 => len == 2,
        53 => len == 1,
        // client identifier, when the server echoes it (RFC 6842)
        61 => len >= 2,
        _ => false,
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    }
}

fn source(msg: &Message) -> String {
    server_id(msg).map_or_else(|| "an unidentified server".to_string(), |s| s.to_string())
}

/// A server string for a log line: control characters replaced, length bounded.
fn printable(s: &str) -> String {
    s.chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        && a.octets()[0] < 240
}

/// Whether `a` is the network or the broadcast address of the /`prefix` subnet that `host` is
/// on: `Some("network")`, `Some("broadcast")`, else `None` (another address, or one off that
/// subnet). A /31 (RFC 3021: both addresses are hosts', on a point-to-point link) or a /32 has
/// neither.
pub fn subnet_edge(a: Ipv4Addr, host: Ipv4Addr, prefix: u8) -> Option<&'static str> {
    if prefix >= 31 {
        return None;
    }
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let (a, host) = (u32::from(a), u32::from(host));
    if a & !host_bits != host & !host_bits {
        return None;
    }
    match a & host_bits {
        0 => Some("network"),
        h if h == host_bits => Some("broadcast"),
        _ => None,
    }
}

/// `10.99.0.0/24`: the subnet `a` lies in.
fn subnet_shown(a: Ipv4Addr, prefix: u8) -> String {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0);
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(a) & mask))
}

/// The lease an OFFER or ACK describes, or why it is unusable. Every value a hostile server
/// controls is checked here, before anything reaches the kernel or a file.
pub fn lease_of(iface: &str, msg: &Message) -> Result<Lease, String> {
    let addr = msg.yiaddr();
    if !unicast(addr) {
        return Err(format!("offered address {addr} is not a unicast address"));
    }
    let server = server_id(msg).ok_or("no server identifier (option 54)")?;
    let o = msg.opts();
    let prefix = match o.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => {
            let p = crate::config::ipconfig::mask_prefix(*m)
                .ok_or_else(|| format!("subnet mask {m} is not contiguous"))?;
            if p < MIN_PREFIX {
                return Err(format!("subnet mask {m} (/{p}) is absurdly large"));
            }
            p
        }
        _ => crate::config::ipconfig::classful_prefix(addr),
    };
    // Unicast on the internet's terms, but not on this subnet: configured, the node would
    // answer for the whole link (RFC 1122 §3.2.1.3, RFC 3021 for the /31 exception).
    if let Some(edge) = subnet_edge(addr, addr, prefix) {
        return Err(format!(
            "offered address {addr} is the {edge} address of {}, not a unicast address",
            subnet_shown(addr, prefix)
        ));
    }
    let list = |code| match o.get(code) {
        Some(DhcpOption::Router(v)) | Some(DhcpOption::DomainNameServer(v)) => v.clone(),
        _ => Vec::new(),
    };
    let routers = list(OptionCode::Router);
    let dns = list(OptionCode::DomainNameServer);
    if let Some(bad) = routers.iter().chain(&dns).find(|a| !unicast(**a)) {
        return Err(format!(
            "router or name server {bad} is not a unicast address"
        ));
    }
    if let Some((bad, edge)) = routers
        .iter()
        .chain(&dns)
        .find_map(|a| Some((a, subnet_edge(*a, addr, prefix)?)))
    {
        return Err(format!(
            "router or name server {bad} is the {edge} address of {}, not a unicast address",
            subnet_shown(addr, prefix)
        ));
    }
    let name = |code, what| -> Result<Option<String>, String> {
        match o.get(code) {
            Some(DhcpOption::Hostname(s)) | Some(DhcpOption::DomainName(s)) => {
                let s = s.trim_end_matches(['\0', '.']);
                if crate::config::ipconfig::valid_hostname(s) {
                    Ok(Some(s.to_string()))
                } else {
                    Err(format!("{what} {:?} is not a valid name", printable(s)))
                }
            }
            _ => Ok(None),
        }
    };
    let hostname = name(OptionCode::Hostname, "host name")?;
    let domain = name(OptionCode::DomainName, "domain name")?;
    let mtu = match o.get(OptionCode::InterfaceMtu) {
        Some(DhcpOption::InterfaceMtu(m)) if MTU_RANGE.contains(m) => Some(*m),
        Some(DhcpOption::InterfaceMtu(m)) => {
            return Err(format!(
                "MTU {m} is outside {}..{}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ))
        }
        _ => None,
    };
    let mut routes = Vec::new();
    if let Some(DhcpOption::ClasslessStaticRoute(list)) = o.get(OptionCode::ClasslessStaticRoute) {
        for (net, gw) in list {
            if !(gw.is_unspecified() || (unicast(*gw) && subnet_edge(*gw, addr, prefix).is_none()))
            {
                return Err(format!(
                    "static route to {net} via {gw}: not a unicast gateway"
                ));
            }
            routes.push((net.network(), net.prefix_len(), *gw));
        }
    }
    let lease_secs = match o.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) if *t != u32::MAX => Some(*t),
        _ => None,
    };
    Ok(Lease {
        iface: iface.to_string(),
        addr,
        prefix,
        server,
        routers,
        dns,
        domain,
        hostname,
        mtu,
        routes,
        lease_secs,
    })
}

/// RFC 2131 §4.1 retransmission delay for attempt `n` (0-based): 4 s doubling to 64 s, plus a
/// uniform −1..+1 s (`jitter_ms` in 0..=2000).
pub fn backoff(n: u32, jitter_ms: u64) -> Duration {
    let base = 4u64
        .saturating_mul(1u64 << n.min(4))
        .min(64)
        .saturating_mul(1000);
    Duration::from_millis(
        base.saturating_add(jitter_ms.min(2000))
            .saturating_sub(1000),
    )
}

// --- the driver ----------------------------------------------------------------------------

/// An interface to run DHCP on.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub hw: Hw,
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("cannot open a DHCP socket on {iface}")]
    Socket {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no DHCP answer within {waited_secs} s: {}", sent_summary(.sent))]
    NoAnswer {
        waited_secs: u64,
        sent: Vec<(String, u32)>,
    },
}

fn sent_summary(sent: &[(String, u32)]) -> String {
    sent.iter()
        .map(|(i, n)| format!("{n} DISCOVER/REQUEST on {i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn socket_on(iface: &str) -> std::io::Result<std::net::UdpSocket> {
    crate::sys::net::udp_on_device(iface, 68)
}

/// Runs DHCP on every candidate until the first lease, or until `deadline`.
pub fn acquire(cands: &[Candidate], deadline: &Deadline) -> Result<Lease, DhcpError> {
    struct Run {
        client: Client,
        sock: std::net::UdpSocket,
        next: Instant,
        attempt: u32,
        sent: u32,
    }
    let start = Instant::now();
    let mut rng = crate::sys::random::Rng::from_entropy();
    let mut runs = Vec::new();
    for c in cands {
        let sock = socket_on(&c.name).map_err(|source| DhcpError::Socket {
            iface: c.name.clone(),
            source,
        })?;
        // Non-blocking: the poll below says when there is something to read.
        let _ = sock.set_nonblocking(true);
        runs.push(Run {
            client: Client::new(&c.name, c.hw, rng.next_u32(), start),
            sock,
            next: start,
            attempt: 0,
            sent: 0,
        });
    }
    let dest = std::net::SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if deadline.passed_at(now) {
            return Err(DhcpError::NoAnswer {
                waited_secs: now.saturating_duration_since(start).as_secs(),
                sent: runs
                    .iter()
                    .map(|r| (r.client.iface.clone(), r.sent))
                    .collect(),
            });
        }
        for r in runs.iter_mut().filter(|r| r.next <= now) {
            if r.sent > 0 {
                r.client.note_retransmit(rng.next_u32());
            }
            let kind = if r.client.is_requesting() {
                "REQUEST"
            } else {
                "DISCOVER"
            };
            match r.sock.send_to(&r.client.packet(now), dest) {
                Ok(_) => log::debug!(
                    "DHCP {kind} on {} (xid {:08x})",
                    r.client.iface,
                    r.client.xid()
                ),
                Err(e) => log::warn!("cannot send a DHCP {kind} on {}: {e}", r.client.iface),
            }
            r.sent = r.sent.saturating_add(1);
            r.next = now
                .checked_add(backoff(r.attempt, rng.up_to(2000)))
                .unwrap_or(now);
            r.attempt = r.attempt.saturating_add(1);
        }
        let wake = runs.iter().map(|r| r.next).min().unwrap_or(now);
        let wait = deadline.clamp_at(now, wake.saturating_duration_since(now));
        let fds: Vec<_> = runs
            .iter()
            .map(|r| std::os::fd::AsFd::as_fd(&r.sock))
            .collect();
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let ready = crate::sys::net::readable(&fds, Duration::from_millis(u64::from(ms)));
        drop(fds);
        for (r, _) in runs.iter_mut().zip(ready).filter(|(_, ok)| *ok) {
            while let Ok((n, from)) = r.sock.recv_from(&mut buf) {
                let Some(data) = buf.get(..n) else { break };
                match r.client.handle(data, rng.next_u32()) {
                    Outcome::NotOurs => {}
                    Outcome::Rejected(why) => {
                        log::warn!(
                            "ignoring a DHCP reply on {} from {from}: {why}",
                            r.client.iface
                        )
                    }
                    Outcome::Requesting => {
                        // Send the REQUEST now; the retransmission schedule starts over.
                        r.next = Instant::now();
                        r.attempt = 0;
                    }
                    Outcome::Nak(why) => {
                        log::warn!("DHCP NAK on {}: {why}; starting over", r.client.iface);
                        r.next = Instant::now();
                        r.attempt = 0;
                    }
                    Outcome::Bound(lease) => return Ok(lease),
                }
            }
        }
    }
}

/// Encodes a server reply; for tests and the recorded-reply fixtures.
pub fn encode_reply(
    xid: u32,
    hw: impl Into<Hw>,
    yiaddr: Ipv4Addr,
    kind: MessageType,
    opts: Vec<DhcpOption>,
) -> Vec<u8> {
    let Some(mut m) = blank(2, xid, &hw.into()) else {
        return Vec::new();
    };
    m.set_yiaddr(yiaddr);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap_or_default()
}

pub use v4::MessageType as Kind;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    fn slirp_opts() -> Vec<DhcpOption> {
        // What QEMU's slirp sends (recorded from a boot): mask, router, DNS, lease, server id.
        vec![
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![SERVER]),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 2, 3)]),
            DhcpOption::AddressLeaseTime(86400),
        ]
    }

    fn client() -> Client {
        Client::new("eth0", MAC, 0x1234_5678, Instant::now())
    }

    fn decode(b: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(b)).unwrap()
    }

    #[test]
    fn discover_request_ack() {
        let mut c = client();
        let d = decode(&c.packet(Instant::now()));
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        assert!(d.flags().broadcast());
        assert_eq!(d.xid(), 0x1234_5678);
        assert_eq!(&d.chaddr()[..6], &MAC);
        match d.opts().get(OptionCode::ParameterRequestList) {
            Some(DhcpOption::ParameterRequestList(l)) => {
                let codes: Vec<u8> = l.iter().map(|c| u8::from(*c)).collect();
                assert_eq!(codes, [1, 3, 6, 15, 12, 26, 121, 51]);
            }
            o => panic!("no parameter request list: {o:?}"),
        }
        let offer = encode_reply(c.xid(), MAC, ADDR, MessageType::Offer, slirp_opts());
        assert_eq!(c.handle(&offer, 1), Outcome::Requesting);
        let r = decode(&c.packet(Instant::now()));
        assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            r.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(ADDR))
        );
        assert_eq!(
            r.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        // A second offer while requesting is not ours to act on.
        assert_eq!(c.handle(&offer, 1), Outcome::NotOurs);
        let ack = encode_reply(c.xid(), MAC, ADDR, MessageType::Ack, slirp_opts());
        let Outcome::Bound(l) = c.handle(&ack, 1) else {
            panic!("not bound")
        };
        assert_eq!((l.addr, l.prefix, l.server), (ADDR, 24, SERVER));
        assert_eq!(l.routers, [SERVER]);
        assert_eq!(l.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(l.lease_secs, Some(86400));
    }

    #[test]
    fn nak_starts_over_with_a_new_transaction() {
        let mut c = client();
        let offer = encode_reply(c.xid(), MAC, ADDR, MessageType::Offer, slirp_opts());
        c.handle(&offer, 7);
        let mut opts = vec![DhcpOption::ServerIdentifier(SERVER)];
        opts.push(DhcpOption::Message("address in use\n".into()));
        let nak = encode_reply(c.xid(), MAC, Ipv4Addr::UNSPECIFIED, MessageType::Nak, opts);
        match c.handle(&nak, 7) {
            Outcome::Nak(why) => {
                assert!(why.contains("refused 10.0.2.15: address in use?"), "{why}")
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(c.xid(), 7);
        let d = decode(&c.packet(Instant::now()));
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
    }

    #[test]
    fn unanswered_requests_restart_discovery() {
        let mut c = client();
        c.handle(
            &encode_reply(c.xid(), MAC, ADDR, MessageType::Offer, slirp_opts()),
            0,
        );
        for _ in 0..4 {
            c.note_retransmit(9);
            assert!(c.is_requesting());
        }
        c.note_retransmit(9);
        assert!(!c.is_requesting());
        assert_eq!(c.xid(), 9);
    }

    #[test]
    fn other_transactions_and_macs_are_not_ours() {
        let mut c = client();
        let wrong_xid = encode_reply(1, MAC, ADDR, MessageType::Offer, slirp_opts());
        assert_eq!(c.handle(&wrong_xid, 0), Outcome::NotOurs);
        let wrong_mac = encode_reply(
            c.xid(),
            [1, 2, 3, 4, 5, 6],
            ADDR,
            MessageType::Offer,
            slirp_opts(),
        );
        assert_eq!(c.handle(&wrong_mac, 0), Outcome::NotOurs);
        // Our own DISCOVER, looped back by a broadcast.
        let mine = c.packet(Instant::now());
        assert_eq!(c.handle(&mine, 0), Outcome::NotOurs);
    }

    #[test]
    fn hostile_replies_are_rejected_with_a_reason() {
        let with = |extra: Vec<DhcpOption>, yi: Ipv4Addr| {
            let mut o = slirp_opts();
            o.extend(extra);
            encode_reply(0x1234_5678, MAC, yi, MessageType::Offer, o)
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (with(vec![DhcpOption::InterfaceMtu(68)], ADDR), "MTU 68"),
            (
                with(vec![DhcpOption::InterfaceMtu(65000)], ADDR),
                "MTU 65000",
            ),
            (
                with(
                    vec![DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0))],
                    ADDR,
                ),
                "not contiguous",
            ),
            (
                with(
                    vec![DhcpOption::SubnetMask(Ipv4Addr::new(240, 0, 0, 0))],
                    ADDR,
                ),
                "absurdly large",
            ),
            (with(vec![], Ipv4Addr::BROADCAST), "not a unicast"),
            (with(vec![], Ipv4Addr::UNSPECIFIED), "not a unicast"),
            (
                with(
                    vec![DhcpOption::Router(vec![Ipv4Addr::new(224, 0, 0, 1)])],
                    ADDR,
                ),
                "224.0.0.1",
            ),
            (
                with(
                    vec![DhcpOption::Hostname("a b\nnameserver 6.6.6.6".into())],
                    ADDR,
                ),
                "host name",
            ),
            (
                with(vec![DhcpOption::DomainName("evil;rm".into())], ADDR),
                "domain name",
            ),
            (
                with(
                    vec![DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 255)])],
                    ADDR,
                ),
                "router or name server 10.0.2.255 is the broadcast address of 10.0.2.0/24",
            ),
            (
                with(
                    vec![DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
                        10, 0, 2, 0,
                    )])],
                    ADDR,
                ),
                "10.0.2.0 is the network address",
            ),
            (
                with(
                    vec![DhcpOption::ClasslessStaticRoute(vec![(
                        "192.168.7.0/24".parse().unwrap(),
                        Ipv4Addr::new(10, 0, 2, 255),
                    )])],
                    ADDR,
                ),
                "not a unicast gateway",
            ),
            (b"\x02\x01\x06".to_vec(), "malformed"),
        ];
        for (bytes, why) in cases {
            let mut c = client();
            match c.handle(&bytes, 0) {
                Outcome::Rejected(r) => assert!(r.contains(why), "{why}: {r}"),
                o => panic!("{why}: {o:?}"),
            }
            assert!(!c.is_requesting(), "{why}: a rejected offer is not taken");
        }
        // No server identifier.
        let mut c = client();
        let bare = encode_reply(c.xid(), MAC, ADDR, MessageType::Offer, vec![]);
        assert!(
            matches!(c.handle(&bare, 0), Outcome::Rejected(r) if r.contains("server identifier"))
        );
    }

    #[test]
    fn truncated_replies_are_rejected() {
        let good = encode_reply(0x1234_5678, MAC, ADDR, MessageType::Offer, slirp_opts());
        for cut in [0, 10, 100, 236, 240, good.len() - 3] {
            let mut c = client();
            let o = c.handle(&good[..cut], 0);
            assert!(
                !matches!(o, Outcome::Requesting | Outcome::Bound(_)),
                "cut {cut}: {o:?}"
            );
        }
    }

    #[test]
    fn classless_routes_and_names() {
        let mut o = slirp_opts();
        o.push(DhcpOption::ClasslessStaticRoute(vec![
            ("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(10, 0, 2, 1)),
            (
                "192.168.7.0/24".parse().unwrap(),
                Ipv4Addr::new(10, 0, 2, 9),
            ),
        ]));
        o.push(DhcpOption::Hostname("node17".into()));
        o.push(DhcpOption::DomainName("cluster.example".into()));
        o.push(DhcpOption::InterfaceMtu(9000));
        let m = decode(&encode_reply(1, MAC, ADDR, MessageType::Ack, o));
        let l = lease_of("eth0", &m).unwrap();
        assert_eq!(
            l.routes,
            [
                (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(10, 0, 2, 1)),
                (
                    Ipv4Addr::new(192, 168, 7, 0),
                    24,
                    Ipv4Addr::new(10, 0, 2, 9)
                )
            ]
        );
        assert_eq!(l.hostname.as_deref(), Some("node17"));
        assert_eq!(l.domain.as_deref(), Some("cluster.example"));
        assert_eq!(l.mtu, Some(9000));
    }

    #[test]
    fn backoff_follows_rfc2131() {
        let secs: Vec<u64> = (0..7).map(|n| backoff(n, 1000).as_secs()).collect();
        assert_eq!(secs, [4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(backoff(0, 0), Duration::from_secs(3));
        assert_eq!(backoff(0, 2000), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX, u64::MAX), Duration::from_secs(65));
    }

    #[test]
    fn no_answer_names_interfaces_and_counts() {
        let e = DhcpError::NoAnswer {
            waited_secs: 20,
            sent: vec![("eth0".into(), 4), ("eth1".into(), 3)],
        };
        assert_eq!(
            e.to_string(),
            "no DHCP answer within 20 s: 4 DISCOVER/REQUEST on eth0, 3 DISCOVER/REQUEST on eth1"
        );
    }

    #[test]
    fn options_the_client_does_not_read_are_dropped_before_decoding() {
        let good = encode_reply(0x1234_5678, MAC, ADDR, MessageType::Offer, slirp_opts());
        // Found by mutated_offers_never_panic: option 152 (bulk lease query base time) with a
        // length other than 4 tripped a debug_assert! inside dhcproto.
        let mut b = good.clone();
        let end = b.iter().rposition(|&x| x == 255).unwrap();
        b.splice(end..end, [152, 1, 7, 26, 3, 1, 2, 3, 1, 2, 255, 255]);
        let mut c = client();
        assert_eq!(c.handle(&b, 0), Outcome::Requesting);
        let kept = options_we_read(&b).unwrap();
        assert!(!kept.windows(2).any(|w| w == [152, 1]));
        // A wrong-length MTU is dropped, not read as the start of the next option.
        assert!(!kept.windows(2).any(|w| w == [26, 3]));
        // An option that runs past the end makes the message malformed.
        let mut cut = good[..good.len() - 1].to_vec();
        cut.extend_from_slice(&[12, 9, b'x']);
        assert!(options_we_read(&cut).is_none());
        assert!(matches!(client().handle(&cut, 0), Outcome::Rejected(_)));
    }

    /// An offer of `yiaddr` on a subnet of /`prefix` (the mask as option 1).
    fn offer_on(yiaddr: Ipv4Addr, prefix: u8) -> Vec<u8> {
        let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0));
        let mut o = vec![
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::SubnetMask(mask),
        ];
        o.push(DhcpOption::AddressLeaseTime(3600));
        encode_reply(0x1234_5678, MAC, yiaddr, MessageType::Offer, o)
    }

    #[test]
    fn the_subnets_network_and_broadcast_addresses_are_refused() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        for (addr, prefix, why) in [
            ("10.99.0.0", 24, "network address of 10.99.0.0/24"),
            ("10.99.0.255", 24, "broadcast address of 10.99.0.0/24"),
            ("10.99.0.0", 16, "network address of 10.99.0.0/16"),
            ("10.99.255.255", 16, "broadcast address of 10.99.0.0/16"),
            ("192.168.1.4", 30, "network address of 192.168.1.4/30"),
            ("192.168.1.7", 30, "broadcast address of 192.168.1.4/30"),
        ] {
            let mut c = client();
            match c.handle(&offer_on(a(addr), prefix), 0) {
                Outcome::Rejected(r) => {
                    assert!(
                        r.contains(why) && r.contains("not a unicast"),
                        "{addr}/{prefix}: {r}"
                    )
                }
                o => panic!("{addr}/{prefix}: {o:?}"),
            }
            assert!(!c.is_requesting(), "{addr}/{prefix}");
        }
        // The same addresses as an ACK are refused too.
        let mut c = client();
        c.handle(&offer_on(ADDR, 24), 0);
        let ack = encode_reply(
            c.xid(),
            MAC,
            Ipv4Addr::new(10, 0, 2, 255),
            MessageType::Ack,
            slirp_opts(),
        );
        assert!(matches!(c.handle(&ack, 0), Outcome::Rejected(r) if r.contains("broadcast")));
        // Without a mask the classful prefix decides: 10.0.0.0 is a /8's network address.
        let bare = vec![DhcpOption::ServerIdentifier(SERVER)];
        let m = encode_reply(0x1234_5678, MAC, a("10.0.0.0"), MessageType::Offer, bare);
        assert!(matches!(client().handle(&m, 0), Outcome::Rejected(r) if r.contains("10.0.0.0/8")));
        // Host addresses next to them are fine.
        for (addr, prefix) in [("10.99.0.1", 24), ("10.99.0.254", 24), ("10.99.1.0", 16)] {
            assert_eq!(
                client().handle(&offer_on(a(addr), prefix), 0),
                Outcome::Requesting
            );
        }
    }

    #[test]
    fn point_to_point_and_host_subnets_have_no_address_to_refuse() {
        // RFC 3021: both addresses of a /31 are hosts'; a /32 is the host alone.
        for (addr, prefix) in [
            ("10.99.0.0", 31),
            ("10.99.0.1", 31),
            ("10.99.0.255", 31),
            ("10.99.0.0", 32),
            ("10.99.0.255", 32),
        ] {
            let a: Ipv4Addr = addr.parse().unwrap();
            let mut c = client();
            assert_eq!(
                c.handle(&offer_on(a, prefix), 0),
                Outcome::Requesting,
                "{addr}/{prefix}"
            );
            let m = decode(&offer_on(a, prefix));
            assert_eq!(
                lease_of("eth0", &m).map(|l| (l.addr, l.prefix)),
                Ok((a, prefix))
            );
        }
    }

    proptest! {
        /// The acceptance rule for the offered address, stated apart from the code: a unicast
        /// address that is neither the first nor the last of its subnet, unless the subnet is a
        /// /31 or /32.
        #[test]
        fn an_offer_is_taken_iff_its_address_is_a_host_of_its_subnet(
            bits in any::<u32>(),
            prefix in 8u8..=32,
            edge in 0u8..3,
        ) {
            let mask = u32::MAX << (32 - u32::from(prefix));
            // A third of the cases on the subnet's first or last address.
            let bits = match edge {
                0 => bits & mask,
                1 => bits | !mask,
                _ => bits,
            };
            let addr = Ipv4Addr::from(bits);
            let unicast = !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast()
                || addr.is_loopback() || addr.octets()[0] >= 240);
            let host = prefix >= 31 || (bits & !mask != 0 && bits | mask != u32::MAX);
            let mut c = client();
            let taken = c.handle(&offer_on(addr, prefix), 0) == Outcome::Requesting;
            prop_assert_eq!(taken, unicast && host, "{}/{}", addr, prefix);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut c = client();
            let _ = c.handle(&bytes, 0);
        }

        #[test]
        fn mutated_offers_never_panic(pos in 0usize..400, val in any::<u8>(), cut in 0usize..400) {
            let mut b = encode_reply(0x1234_5678, MAC, ADDR, MessageType::Offer, slirp_opts());
            if let Some(x) = b.get_mut(pos) { *x = val; }
            b.truncate(cut.max(1));
            let mut c = client();
            let _ = c.handle(&b, 0);
        }
    }

    // --- IPoIB (RFC 4390) -------------------------------------------------------------------

    /// dnsmasq's documented example (dnsmasq.conf.example): the port with this hardware
    /// address has the client id `ff:00:00:00:00:00:02:00:00:02:c9:00:f4:52:14:03:00:28:05:81`.
    const IB: [u8; 20] = [
        0x80, 0, 0, 0x48, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0xf4, 0x52, 0x14, 0x03, 0, 0x28, 0x05, 0x81,
    ];

    fn ib_client() -> Client {
        Client::new("ib0", Hw::Infiniband(IB), 0x1234_5678, Instant::now())
    }

    #[test]
    fn ipoib_client_id_is_the_guid_under_the_usual_prefix() {
        let hw = Hw::Infiniband(IB);
        assert_eq!(
            hw.guid(),
            Some([0xf4, 0x52, 0x14, 0x03, 0, 0x28, 0x05, 0x81])
        );
        let id: Vec<String> = hw.client_id().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            id.join(":"),
            "ff:00:00:00:00:00:02:00:00:02:c9:00:f4:52:14:03:00:28:05:81"
        );
        // Type 255, IAID 0, then a DUID-EN: type 2, enterprise 713.
        let raw = hw.client_id();
        assert_eq!(
            (raw[0], &raw[1..5], &raw[5..7]),
            (0xff, &[0u8; 4][..], &[0u8, 2][..])
        );
        assert_eq!(u32::from_be_bytes(raw[7..11].try_into().unwrap()), 713);
        // The queue pair number (bytes 1..4) changes from boot to boot; the identifier does not.
        let mut other_qpn = IB;
        other_qpn[1..4].copy_from_slice(&[0x12, 0x34, 0x56]);
        assert_eq!(Hw::Infiniband(other_qpn).client_id(), raw);
        assert_eq!(
            Hw::Ether(MAC).client_id(),
            [1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );
        assert_eq!(Hw::Ether(MAC).guid(), None);
        assert_eq!(Hw::Infiniband(IB).mac(), None);
    }

    #[test]
    fn hardware_addresses_from_sysfs_bytes() {
        assert_eq!(Hw::from_bytes(&MAC), Some(Hw::Ether(MAC)));
        assert_eq!(Hw::from_bytes(&IB), Some(Hw::Infiniband(IB)));
        assert_eq!(Hw::from_bytes(&IB[..8]), None);
        assert_eq!(
            Hw::Infiniband(IB).to_string(),
            "80:00:00:48:fe:80:00:00:00:00:00:00:f4:52:14:03:00:28:05:81"
        );
        assert_eq!(Hw::Ether(MAC).to_string(), "52:54:00:12:34:56");
    }

    #[test]
    fn ipoib_discover_has_no_chaddr_and_asks_for_broadcast() {
        let c = ib_client();
        let raw = c.packet(Instant::now());
        // op 1, htype 32, hlen 0; chaddr (28..44) all zero.
        assert_eq!(&raw[0..3], &[1, 32, 0]);
        assert!(raw[28..44].iter().all(|b| *b == 0));
        let d = decode(&raw);
        assert!(d.flags().broadcast(), "RFC 4390 §2.2: the broadcast flag");
        assert_eq!(d.chaddr(), &[] as &[u8]);
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(
            d.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(
                Hw::Infiniband(IB).client_id()
            ))
        );
    }

    #[test]
    fn ipoib_exchange_binds() {
        let mut c = ib_client();
        let hw = Hw::Infiniband(IB);
        let offer = encode_reply(c.xid(), hw, ADDR, MessageType::Offer, slirp_opts());
        assert_eq!(&offer[0..3], &[2, 32, 0]);
        assert_eq!(c.handle(&offer, 1), Outcome::Requesting);
        let r = decode(&c.packet(Instant::now()));
        assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(r.hlen(), 0);
        // A server that echoes the client identifier (RFC 6842).
        let mut opts = slirp_opts();
        opts.push(DhcpOption::ClientIdentifier(hw.client_id()));
        let ack = encode_reply(c.xid(), hw, ADDR, MessageType::Ack, opts);
        assert!(
            matches!(c.handle(&ack, 1), Outcome::Bound(l) if l.iface == "ib0" && l.addr == ADDR)
        );
    }

    #[test]
    fn ipoib_replies_for_others_are_not_ours() {
        let hw = Hw::Infiniband(IB);
        // Another port's identifier echoed back, same transaction id.
        let mut opts = slirp_opts();
        opts.push(DhcpOption::ClientIdentifier(ipoib_client_id(&[9; 8])));
        let other = encode_reply(0x1234_5678, hw, ADDR, MessageType::Offer, opts);
        assert_eq!(ib_client().handle(&other, 0), Outcome::NotOurs);
        // An Ethernet-form reply (htype 1, hlen 6) is not an IPoIB client's.
        let eth = encode_reply(0x1234_5678, MAC, ADDR, MessageType::Offer, slirp_opts());
        assert_eq!(ib_client().handle(&eth, 0), Outcome::NotOurs);
        // Nor is an IPoIB reply an Ethernet client's.
        let ib = encode_reply(0x1234_5678, hw, ADDR, MessageType::Offer, slirp_opts());
        assert_eq!(client().handle(&ib, 0), Outcome::NotOurs);
    }

    proptest! {
        #[test]
        fn ipoib_client_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ib_client().handle(&bytes, 0);
        }

        #[test]
        fn mutated_ipoib_offers_never_panic(pos in 0usize..400, val in any::<u8>(), cut in 0usize..400) {
            let mut b = encode_reply(0x1234_5678, Hw::Infiniband(IB), ADDR, MessageType::Offer, slirp_opts());
            if let Some(x) = b.get_mut(pos) { *x = val; }
            b.truncate(cut.max(1));
            let _ = ib_client().handle(&b, 0);
        }

        #[test]
        fn ipoib_client_id_is_twenty_bytes_ending_in_the_guid(guid in any::<[u8; 8]>()) {
            let id = ipoib_client_id(&guid);
            prop_assert_eq!(id.len(), 20);
            prop_assert_eq!(&id[12..], &guid[..]);
        }
    }
}
