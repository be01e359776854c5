//! The peer wire protocol (BEP 3), pure: the handshake, the length-prefixed messages with a hard
//! size limit, the fast extension's messages (BEP 6, understood when a peer sends them), the
//! extension protocol's handshake (BEP 10), peer exchange (BEP 11, `ut_pex`) and rustlive's own
//! `rl_fetching` (which pieces a node is fetching from the mirrors). Parsing takes bytes and
//! returns typed messages or an error; nothing here touches a socket.

use super::bencode::{self, Encoder, Value};
use super::metainfo::InfoHash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// The block size every client requests (BEP 3 recommends 16 KiB; most refuse more).
pub const BLOCK: u32 = 16 * 1024;
/// Largest block a peer may ask rustlive for (some clients ask 32 KiB; more is abuse).
pub const MAX_REQUEST: u32 = 128 * 1024;
/// Our own extended-message id for `ut_pex` (BEP 10: each side picks its own ids).
pub const UT_PEX_ID: u8 = 1;
/// Our own extended-message id for `rl_fetching` ([`Fetching`]).
pub const RL_FETCHING_ID: u8 = 2;
/// Most pieces one `rl_fetching` message may name (a web seed run is at most 4 MiB: 256 pieces
/// of the smallest size, 16 KiB).
pub const MAX_FETCHING: u32 = 256;
/// Most peers taken from one PEX message (BEP 11 suggests at most 50 added per message).
pub const MAX_PEX_PEERS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the peer does not speak the BitTorrent protocol")]
    NotBitTorrent,
    #[error("the peer announced a {0}-byte message, above the limit")]
    TooLong(u32),
    #[error("the peer sent a malformed message {0}")]
    Malformed(u8),
    #[error("the peer sent a malformed extension message")]
    BadExtension,
}

impl Handshake {
    /// Ours: the extension protocol bit (BEP 10) set, for peer exchange.
    pub fn ours(info_hash: InfoHash, peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[5] = 0x10;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    pub fn parse(b: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, WireError> {
        let (head, rest) = b.split_at(20);
        if head.first() != Some(&19) || head.get(1..) != Some(&PROTOCOL[..]) {
            return Err(WireError::NotBitTorrent);
        }
        let (reserved, rest) = rest.split_at(8);
        let (hash, id) = rest.split_at(20);
        Ok(Handshake {
            reserved: reserved.try_into().map_err(|_| WireError::NotBitTorrent)?,
            info_hash: InfoHash(hash.try_into().map_err(|_| WireError::NotBitTorrent)?),
            peer_id: id.try_into().map_err(|_| WireError::NotBitTorrent)?,
        })
    }

    pub fn extensions(&self) -> bool {
        self.reserved.get(5).is_some_and(|b| b & 0x10 != 0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    Port(u16),
    // BEP 6.
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    AllowedFast(u32),
    /// BEP 10: id 0 is the extension handshake, others the ids we announced.
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    /// A message id nobody defined; ignored, as BEP 3 asks.
    Unknown(u8),
}

/// The length of the frame at the start of `buf`: `Ok(None)` while fewer than 4 bytes are
/// there, else the payload length, refused above `max`.
pub fn frame_len(buf: &[u8], max: u32) -> Result<Option<u32>, WireError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let n = u32::from_be_bytes(prefix.try_into().map_err(|_| WireError::TooLong(0))?);
    if n > max {
        return Err(WireError::TooLong(n));
    }
    Ok(Some(n))
}

/// The first 13 bytes of a piece message carrying `length` bytes of piece `index` from `begin`
/// (length prefix, id 7, index, begin): the block's bytes follow. Serving writes the block
/// straight after it, read from the file into the connection's buffer, with no message built.
pub fn piece_header(index: u32, begin: u32, length: u32) -> [u8; 13] {
    let mut h = [0u8; 13];
    let fields = length
        .saturating_add(9)
        .to_be_bytes()
        .into_iter()
        .chain([7])
        .chain(index.to_be_bytes())
        .chain(begin.to_be_bytes());
    for (d, b) in h.iter_mut().zip(fields) {
        *d = b;
    }
    h
}

/// A received block: a piece message's fields, borrowed from its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Block<'a> {
    pub index: u32,
    pub begin: u32,
    pub data: &'a [u8],
}

/// A piece message's block, borrowed from its payload (the bytes after the length prefix);
/// `None` for any other message. Received blocks are copied once, into the piece they belong
/// to.
pub fn parse_piece(p: &[u8]) -> Result<Option<Block<'_>>, WireError> {
    match p.split_first() {
        Some((&7, body)) => Ok(Some(Block {
            index: u32_at(body, 0, 7)?,
            begin: u32_at(body, 4, 7)?,
            data: body.get(8..).ok_or(WireError::Malformed(7))?,
        })),
        _ => Ok(None),
    }
}

fn u32_at(b: &[u8], at: usize, id: u8) -> Result<u32, WireError> {
    let end = at.checked_add(4).ok_or(WireError::Malformed(id))?;
    let s = b.get(at..end).ok_or(WireError::Malformed(id))?;
    Ok(u32::from_be_bytes(
        s.try_into().map_err(|_| WireError::Malformed(id))?,
    ))
}

impl Message {
    /// One message from its payload (the bytes after the length prefix).
    pub fn parse(p: &[u8]) -> Result<Message, WireError> {
        let Some((&id, body)) = p.split_first() else {
            return Ok(Message::KeepAlive);
        };
        let exact = |n: usize| {
            if body.len() == n {
                Ok(())
            } else {
                Err(WireError::Malformed(id))
            }
        };
        let triple = || -> Result<(u32, u32, u32), WireError> {
            exact(12)?;
            Ok((
                u32_at(body, 0, id)?,
                u32_at(body, 4, id)?,
                u32_at(body, 8, id)?,
            ))
        };
        Ok(match id {
            0 => exact(0).map(|_| Message::Choke)?,
            1 => exact(0).map(|_| Message::Unchoke)?,
            2 => exact(0).map(|_| Message::Interested)?,
            3 => exact(0).map(|_| Message::NotInterested)?,
            4 => {
                exact(4)?;
                Message::Have(u32_at(body, 0, id)?)
            }
            5 => Message::Bitfield(body.to_vec()),
            6 => {
                let (index, begin, length) = triple()?;
                Message::Request {
                    index,
                    begin,
                    length,
                }
            }
            7 => match parse_piece(p)? {
                Some(b) => Message::Piece {
                    index: b.index,
                    begin: b.begin,
                    data: b.data.to_vec(),
                },
                None => Message::Unknown(id),
            },
            8 => {
                let (index, begin, length) = triple()?;
                Message::Cancel {
                    index,
                    begin,
                    length,
                }
            }
            9 => {
                exact(2)?;
                let b: [u8; 2] = body.try_into().map_err(|_| WireError::Malformed(id))?;
                Message::Port(u16::from_be_bytes(b))
            }
            0x0d => {
                exact(4)?;
                Message::Suggest(u32_at(body, 0, id)?)
            }
            0x0e => exact(0).map(|_| Message::HaveAll)?,
            0x0f => exact(0).map(|_| Message::HaveNone)?,
            0x10 => {
                let (index, begin, length) = triple()?;
                Message::Reject {
                    index,
                    begin,
                    length,
                }
            }
            0x11 => {
                exact(4)?;
                Message::AllowedFast(u32_at(body, 0, id)?)
            }
            20 => {
                let (&ext, payload) = body.split_first().ok_or(WireError::Malformed(id))?;
                Message::Extended {
                    id: ext,
                    payload: payload.to_vec(),
                }
            }
            other => Message::Unknown(other),
        })
    }

    /// The message with its length prefix, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body: Vec<u8> = Vec::new();
        let triple = |b: &mut Vec<u8>, id: u8, x: u32, y: u32, z: u32| {
            b.push(id);
            b.extend_from_slice(&x.to_be_bytes());
            b.extend_from_slice(&y.to_be_bytes());
            b.extend_from_slice(&z.to_be_bytes());
        };
        match self {
            Message::KeepAlive => {}
            Message::Choke => body.push(0),
            Message::Unchoke => body.push(1),
            Message::Interested => body.push(2),
            Message::NotInterested => body.push(3),
            Message::Have(i) => {
                body.push(4);
                body.extend_from_slice(&i.to_be_bytes());
            }
            Message::Bitfield(b) => {
                body.push(5);
                body.extend_from_slice(b);
            }
            Message::Request {
                index,
                begin,
                length,
            } => triple(&mut body, 6, *index, *begin, *length),
            Message::Piece { index, begin, data } => {
                let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&piece_header(*index, *begin, length));
                out.extend_from_slice(data);
                return;
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => triple(&mut body, 8, *index, *begin, *length),
            Message::Port(p) => {
                body.push(9);
                body.extend_from_slice(&p.to_be_bytes());
            }
            Message::Suggest(i) => {
                body.push(0x0d);
                body.extend_from_slice(&i.to_be_bytes());
            }
            Message::HaveAll => body.push(0x0e),
            Message::HaveNone => body.push(0x0f),
            Message::Reject {
                index,
                begin,
                length,
            } => triple(&mut body, 0x10, *index, *begin, *length),
            Message::AllowedFast(i) => {
                body.push(0x11);
                body.extend_from_slice(&i.to_be_bytes());
            }
            Message::Extended { id, payload } => {
                body.push(20);
                body.push(*id);
                body.extend_from_slice(payload);
            }
            Message::Unknown(id) => body.push(*id),
        }
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
    }
}

/// A bitfield of `pieces` bits from a list of booleans (spare bits zero).
pub fn bitfield(have: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; have.len().div_ceil(8)];
    for (i, h) in have.iter().enumerate() {
        if *h {
            if let Some(b) = out.get_mut(i / 8) {
                *b |= 0x80 >> (i % 8);
            }
        }
    }
    out
}

/// The pieces a bitfield says a peer has; `None` when its length is wrong or a spare bit is
/// set (BEP 3: the peer is then dropped).
pub fn parse_bitfield(b: &[u8], pieces: u32) -> Option<Vec<bool>> {
    let n = usize::try_from(pieces).ok()?;
    if b.len() != n.div_ceil(8) {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..b.len().saturating_mul(8) {
        let bit = b.get(i / 8).is_some_and(|x| x & (0x80 >> (i % 8)) != 0);
        if i < n {
            out.push(bit);
        } else if bit {
            return None;
        }
    }
    Some(out)
}

/// What a peer's extension handshake (BEP 10) told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// The id the peer wants its `ut_pex` messages sent with (0: none).
    pub ut_pex: u8,
    /// The id the peer wants its `rl_fetching` messages sent with (0: none; other clients
    /// do not know it and never get one).
    pub rl_fetching: u8,
    /// The port the peer listens on.
    pub port: Option<u16>,
}

/// Our extension handshake: `rl_fetching` under [`RL_FETCHING_ID`], `ut_pex` under
/// [`UT_PEX_ID`], our listening port.
pub fn ext_handshake(port: u16, pex: bool) -> Vec<u8> {
    let mut e = Encoder::default();
    // Keys in sorted order (bencode's rule for dictionaries).
    e.dict().str("m").dict();
    e.str("rl_fetching").int(i64::from(RL_FETCHING_ID));
    if pex {
        e.str("ut_pex").int(i64::from(UT_PEX_ID));
    }
    e.end();
    e.str("p").int(i64::from(port));
    e.str("v")
        .str(concat!("rustlive ", env!("CARGO_PKG_VERSION")));
    e.end();
    e.out
}

pub fn parse_ext_handshake(payload: &[u8]) -> Result<ExtHandshake, WireError> {
    let v = bencode::decode(payload).map_err(|_| WireError::BadExtension)?;
    if v.raw_dict().is_none() {
        return Err(WireError::BadExtension);
    }
    let id = |name: &str| {
        v.get("m")
            .and_then(|m| m.get(name))
            .and_then(Value::as_int)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(0)
    };
    let (ut_pex, rl_fetching) = (id("ut_pex"), id("rl_fetching"));
    let port = v
        .get("p")
        .and_then(Value::as_int)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0);
    Ok(ExtHandshake {
        ut_pex,
        rl_fetching,
        port,
    })
}

/// A peer exchange message (BEP 11): peers that joined and left since the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pex {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
}

/// Compact peers (BEP 23): 6 bytes per IPv4 peer, 18 per IPv6 peer; at most `max`.
pub fn parse_compact(b: &[u8], v6: bool, max: usize) -> Option<Vec<SocketAddr>> {
    let size = if v6 { 18 } else { 6 };
    if b.len().checked_rem(size) != Some(0) {
        return None;
    }
    let mut out = Vec::new();
    for c in b.chunks_exact(size).take(max) {
        let (ip, port) = c.split_at(size.saturating_sub(2));
        let port = u16::from_be_bytes(port.try_into().ok()?);
        let ip: IpAddr = if v6 {
            Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?).into()
        } else {
            Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?).into()
        };
        if port != 0 {
            out.push(SocketAddr::new(ip, port));
        }
    }
    Some(out)
}

pub fn compact(peers: &[SocketAddr], v6: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for p in peers {
        match (p.ip(), v6) {
            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        out.extend_from_slice(&p.port().to_be_bytes());
    }
    out
}

pub fn parse_pex(payload: &[u8]) -> Result<Pex, WireError> {
    let v = bencode::decode(payload).map_err(|_| WireError::BadExtension)?;
    if v.raw_dict().is_none() {
        return Err(WireError::BadExtension);
    }
    let list = |key: &str, v6: bool| -> Result<Vec<SocketAddr>, WireError> {
        match v.get(key) {
            None => Ok(Vec::new()),
            Some(x) => x
                .as_bytes()
                .and_then(|b| parse_compact(b, v6, MAX_PEX_PEERS))
                .ok_or(WireError::BadExtension),
        }
    };
    let mut added = list("added", false)?;
    added.extend(list("added6", true)?);
    let mut dropped = list("dropped", false)?;
    dropped.extend(list("dropped6", true)?);
    added.truncate(MAX_PEX_PEERS);
    dropped.truncate(MAX_PEX_PEERS);
    Ok(Pex { added, dropped })
}

pub fn encode_pex(p: &Pex) -> Vec<u8> {
    let mut e = Encoder::default();
    e.dict();
    e.str("added").bytes(&compact(&p.added, false));
    e.str("added6").bytes(&compact(&p.added, true));
    e.str("dropped").bytes(&compact(&p.dropped, false));
    e.str("dropped6").bytes(&compact(&p.dropped, true));
    e.end();
    e.out
}

/// `rl_fetching`: pieces `first .. first + count` a node started fetching from the mirrors
/// (`stopped`: it no longer does, without having them). Peers that hear it leave those pieces
/// to it for a while instead of asking the mirrors for them too: a herd's first requests are
/// made before anyone holds a piece, and a piece in flight from a loaded mirror is invisible to
/// the herd for seconds. Advisory: a node that does not deliver costs the others that while.
/// `relayed`: passed on by a node that heard it from the fetching one (not passed on again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetching {
    pub first: u32,
    pub count: u32,
    pub stopped: bool,
    pub relayed: bool,
}

impl Fetching {
    /// `d5:counti<n>e5:firsti<n>e7:relayedi<0|1>e7:stoppedi<0|1>ee`.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.dict();
        e.str("count").int(i64::from(self.count));
        e.str("first").int(i64::from(self.first));
        e.str("relayed").int(i64::from(self.relayed));
        e.str("stopped").int(i64::from(self.stopped));
        e.end();
        e.out
    }

    /// The message, when it names 1 to [`MAX_FETCHING`] pieces within `pieces`.
    pub fn parse(payload: &[u8], pieces: u32) -> Result<Fetching, WireError> {
        let v = bencode::decode(payload).map_err(|_| WireError::BadExtension)?;
        let int = |k: &str| {
            v.get(k)
                .and_then(Value::as_int)
                .and_then(|i| u32::try_from(i).ok())
        };
        let (first, count) = int("first")
            .zip(int("count"))
            .ok_or(WireError::BadExtension)?;
        let flag = |k: &str| match v.get(k).map(Value::as_int) {
            None | Some(Some(0)) => Ok(false),
            Some(Some(1)) => Ok(true),
            Some(_) => Err(WireError::BadExtension),
        };
        let (stopped, relayed) = (flag("stopped")?, flag("relayed")?);
        let fits = (1..=MAX_FETCHING).contains(&count)
            && first.checked_add(count).is_some_and(|end| end <= pieces);
        if !fits {
            return Err(WireError::BadExtension);
        }
        Ok(Fetching {
            first,
            count,
            stopped,
            relayed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handshake_round_trip() {
        let h = Handshake::ours(InfoHash([3; 20]), [9; 20]);
        let b = h.encode();
        assert_eq!(&b[1..20], PROTOCOL);
        assert_eq!(Handshake::parse(&b), Ok(h));
        assert!(h.extensions());
        let mut bad = b;
        bad[3] = b'x';
        assert_eq!(Handshake::parse(&bad), Err(WireError::NotBitTorrent));
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(vec![0xf0]),
            Message::Request {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            Message::Piece {
                index: 2,
                begin: 0,
                data: vec![1, 2, 3],
            },
            Message::Cancel {
                index: 1,
                begin: 2,
                length: 3,
            },
            Message::Port(6881),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject {
                index: 1,
                begin: 2,
                length: 3,
            },
            Message::Extended {
                id: 0,
                payload: b"de".to_vec(),
            },
        ] {
            let mut out = Vec::new();
            m.encode(&mut out);
            let n = frame_len(&out, 1 << 20).unwrap().unwrap();
            assert_eq!(n as usize, out.len() - 4);
            assert_eq!(Message::parse(&out[4..]), Ok(m));
        }
    }

    #[test]
    fn bad_messages() {
        assert_eq!(Message::parse(&[4, 0, 0]), Err(WireError::Malformed(4)));
        assert_eq!(Message::parse(&[0, 1]), Err(WireError::Malformed(0)));
        assert_eq!(
            Message::parse(&[7, 0, 0, 0, 1]),
            Err(WireError::Malformed(7))
        );
        assert_eq!(Message::parse(&[99]), Ok(Message::Unknown(99)));
        assert_eq!(frame_len(&[0, 0, 1], 10), Ok(None));
        assert_eq!(
            frame_len(&[0xff, 0, 0, 0], 1 << 20),
            Err(WireError::TooLong(0xff00_0000))
        );
    }

    #[test]
    fn bitfields() {
        let have = [true, false, true, true, false, false, false, false, true];
        let b = bitfield(&have);
        assert_eq!(b, vec![0b1011_0000, 0b1000_0000]);
        assert_eq!(parse_bitfield(&b, 9).unwrap(), have);
        assert_eq!(parse_bitfield(&[0b1011_0000, 0b1100_0000], 9), None);
        assert_eq!(parse_bitfield(&[0], 9), None);
    }

    #[test]
    fn extension_handshake_and_pex() {
        let h = parse_ext_handshake(&ext_handshake(6881, true)).unwrap();
        assert_eq!(
            h,
            ExtHandshake {
                ut_pex: UT_PEX_ID,
                rl_fetching: RL_FETCHING_ID,
                port: Some(6881)
            }
        );
        let p = Pex {
            added: vec![
                "10.0.0.1:6881".parse().unwrap(),
                "[fe80::1]:7000".parse().unwrap(),
            ],
            dropped: vec!["10.0.0.2:1".parse().unwrap()],
        };
        assert_eq!(parse_pex(&encode_pex(&p)), Ok(p));
        assert_eq!(parse_pex(b"d5:added5:abcdee"), Err(WireError::BadExtension));
        assert_eq!(parse_pex(b"le"), Err(WireError::BadExtension));
    }

    #[test]
    fn fetching_names_pieces_of_the_torrent() {
        let f = Fetching {
            first: 3,
            count: 2,
            stopped: false,
            relayed: true,
        };
        assert_eq!(
            f.encode(),
            b"d5:counti2e5:firsti3e7:relayedi1e7:stoppedi0ee"
        );
        assert_eq!(Fetching::parse(&f.encode(), 5), Ok(f));
        // Past the last piece, none, too many, a negative index, a bad flag, not a dict.
        for bad in [
            &b"d5:counti2e5:firsti4ee"[..],
            b"d5:counti0e5:firsti0ee",
            b"d5:counti257e5:firsti0ee",
            b"d5:counti1e5:firsti-1ee",
            b"d5:counti1e5:firsti0e7:stoppedi2ee",
            b"d5:counti1e5:firsti0e7:relayedi-1ee",
            b"li1ei2ee",
        ] {
            assert_eq!(Fetching::parse(bad, 5), Err(WireError::BadExtension));
        }
        // Without `stopped` and `relayed`: fetching, from the node itself.
        assert_eq!(
            Fetching::parse(b"d5:counti1e5:firsti0ee", 5).map(|f| (f.stopped, f.relayed)),
            Ok((false, false))
        );
    }

    proptest! {
        #[test]
        fn any_payload_parses_or_errs(p in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = Message::parse(&p) {
                let mut out = Vec::new();
                m.encode(&mut out);
                // Unknown ids are kept without their body; everything else round-trips.
                if !matches!(m, Message::Unknown(_)) {
                    prop_assert_eq!(&out[4..], &p[..]);
                }
            }
        }

        #[test]
        fn piece_parts_agree_with_the_message(body in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut p = vec![7u8];
            p.extend_from_slice(&body);
            match (parse_piece(&p), Message::parse(&p)) {
                (Ok(Some(got)), Ok(Message::Piece { index, begin, data })) => {
                    prop_assert_eq!(&got, &Block { index, begin, data: &data });
                    let mut out = piece_header(index, begin, data.len() as u32).to_vec();
                    out.extend_from_slice(&data);
                    prop_assert_eq!(&out[4..], &p[..]);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "{:?} against {:?}", a, b),
            }
        }

        #[test]
        fn any_handshake_parses_or_errs(b in proptest::array::uniform32(any::<u8>()), c in proptest::array::uniform32(any::<u8>()), d in proptest::array::uniform4(any::<u8>())) {
            let mut h = [0u8; HANDSHAKE_LEN];
            h[..32].copy_from_slice(&b);
            h[32..64].copy_from_slice(&c);
            h[64..].copy_from_slice(&d);
            let _ = Handshake::parse(&h);
        }

        #[test]
        fn any_pex_parses_or_errs(p in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_pex(&p);
            let _ = parse_ext_handshake(&p);
        }

        #[test]
        fn any_fetching_parses_or_errs(p in proptest::collection::vec(any::<u8>(), 0..64), pieces in 0u32..1000) {
            if let Ok(f) = Fetching::parse(&p, pieces) {
                prop_assert!(f.count >= 1 && f.count <= MAX_FETCHING);
                prop_assert!(u64::from(f.first) + u64::from(f.count) <= u64::from(pieces));
            }
        }

        #[test]
        fn fetching_round_trips(first in 0u32..1000, count in 1u32..=MAX_FETCHING, stopped in any::<bool>(), relayed in any::<bool>()) {
            let f = Fetching { first, count, stopped, relayed };
            prop_assert_eq!(Fetching::parse(&f.encode(), first + count), Ok(f));
        }

        #[test]
        fn pex_round_trips(v4 in proptest::collection::vec((any::<[u8; 4]>(), 1u16..), 0..20)) {
            let added: Vec<SocketAddr> = v4.iter().map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(*ip).into(), *port)).collect();
            let p = Pex { added, dropped: vec![] };
            prop_assert_eq!(parse_pex(&encode_pex(&p)), Ok(p));
        }

        #[test]
        fn bitfields_round_trip(have in proptest::collection::vec(any::<bool>(), 0..100)) {
            let n = have.len() as u32;
            prop_assert_eq!(parse_bitfield(&bitfield(&have), n), Some(have));
        }
    }
}
