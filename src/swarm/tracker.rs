//! HTTP tracker announces (BEP 3) and their answers: compact peer lists (BEP 23, IPv4 `peers`
//! and IPv6 `peers6`), the dictionary form some trackers still send, `failure reason`. Pure: the
//! query is built here and the answer parsed here; the request itself is the session's.

use super::bencode::{self, Value};
use super::metainfo::InfoHash;
use super::wire::parse_compact;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The largest answer read from a tracker.
pub const MAX_RESPONSE: usize = 1 << 20;
/// Most peers taken from one answer.
pub const MAX_PEERS: usize = 500;
/// Bounds on the re-announce interval a tracker asks for.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// RFC 3986 unreserved characters stay as they are; every other byte is `%XX`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

#[derive(Debug, Clone, Copy)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    pub numwant: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub interval: Duration,
    pub peers: Vec<SocketAddr>,
    /// The swarm's size as the tracker counts it (`complete` + `incomplete`), when it says.
    pub swarm: Option<u32>,
    /// The seeds among them (`complete`), when it says.
    pub seeds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    #[error("the tracker refused: {0}")]
    Failure(String),
    #[error("the tracker's answer is not valid bencode")]
    Bencode(#[from] bencode::BencodeError),
    #[error("the tracker's answer has an invalid {0}")]
    Invalid(&'static str),
}

/// The announce URL: the tracker's own URL with the BEP 3 parameters appended (after its own
/// query, if it has one: private trackers put a passkey there).
pub fn announce_url(base: &str, a: &Announce) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}",
        percent_encode(&a.info_hash.0, QUERY),
        percent_encode(&a.peer_id, QUERY),
        a.port,
        a.uploaded,
        a.downloaded,
        a.left,
        a.numwant,
    );
    match a.event {
        Some(Event::Started) => url.push_str("&event=started"),
        Some(Event::Completed) => url.push_str("&event=completed"),
        Some(Event::Stopped) => url.push_str("&event=stopped"),
        None => {}
    }
    url
}

/// A tracker's answer.
pub fn parse_response(body: &[u8]) -> Result<Response, TrackerError> {
    let v = bencode::decode(body)?;
    if v.raw_dict().is_none() {
        return Err(TrackerError::Invalid("top level"));
    }
    if let Some(reason) = v.get("failure reason") {
        let text = reason.as_bytes().unwrap_or_default();
        // The tracker's words, escaped once here so that every log line that shows them is safe.
        let shown = String::from_utf8_lossy(text.get(..200).unwrap_or(text)).into_owned();
        return Err(TrackerError::Failure(crate::support::log::escaped(&shown)));
    }
    let interval = v
        .get("interval")
        .and_then(Value::as_int)
        .and_then(|i| u64::try_from(i).ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs)
        .clamp(MIN_INTERVAL, MAX_INTERVAL);
    let mut peers = match v.get("peers") {
        None => Vec::new(),
        Some(Value::Bytes(b)) => {
            parse_compact(b, false, MAX_PEERS).ok_or(TrackerError::Invalid("peers"))?
        }
        Some(Value::List(l)) => l.iter().take(MAX_PEERS).filter_map(dict_peer).collect(),
        Some(_) => return Err(TrackerError::Invalid("peers")),
    };
    if let Some(p6) = v.get("peers6") {
        let b = p6.as_bytes().ok_or(TrackerError::Invalid("peers6"))?;
        peers.extend(parse_compact(b, true, MAX_PEERS).ok_or(TrackerError::Invalid("peers6"))?);
    }
    peers.truncate(MAX_PEERS);
    let count = |k: &str| {
        v.get(k)
            .and_then(Value::as_int)
            .and_then(|i| u32::try_from(i).ok())
    };
    let swarm = match (count("complete"), count("incomplete")) {
        (None, None) => None,
        (c, i) => Some(c.unwrap_or(0).saturating_add(i.unwrap_or(0))),
    };
    Ok(Response {
        interval,
        peers,
        swarm,
        seeds: count("complete"),
    })
}

/// `{ip: "1.2.3.4", port: 6881}` (non-compact answers); names other than literal
/// addresses are skipped (no DNS lookups on a tracker's say-so).
fn dict_peer(v: &Value<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = v.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(v.get("port")?.as_int()?)
        .ok()
        .filter(|&p| p != 0)?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn query_is_percent_encoded() {
        let mut h = [0u8; 20];
        h[..6].copy_from_slice(&[0x12, 0x34, b'a', b'-', b' ', 0xff]);
        let a = Announce {
            info_hash: InfoHash(h),
            peer_id: *b"-RL0100-abcdefghijkl",
            port: 6881,
            uploaded: 0,
            downloaded: 10,
            left: 20,
            event: Some(Event::Started),
            numwant: 50,
        };
        let u = announce_url("http://t:6969/announce", &a);
        assert_eq!(
            u,
            "http://t:6969/announce?info_hash=%124a-%20%FF%00%00%00%00%00%00%00%00%00%00%00%00%00%00\
             &peer_id=-RL0100-abcdefghijkl&port=6881&uploaded=0&downloaded=10&left=20&compact=1&numwant=50&event=started"
        );
        assert!(announce_url("http://t/a?pk=1", &a).starts_with("http://t/a?pk=1&info_hash="));
    }

    #[test]
    fn compact_and_dict_answers() {
        let r = parse_response(
            b"d8:intervali900e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x1a\xe2e",
        )
        .unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.swarm, None);
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:6882".parse().unwrap()
            ]
        );
        let r = parse_response(
            b"d8:intervali1e5:peersld2:ip8:10.0.0.14:porti7eed2:ip4:host4:porti8eeee",
        )
        .unwrap();
        assert_eq!(r.interval, MIN_INTERVAL);
        assert_eq!(r.peers, vec!["10.0.0.1:7".parse().unwrap()]);
        let r = parse_response(b"d5:peers0:6:peers618:\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x07e").unwrap();
        assert_eq!(r.peers, vec!["[fe80::1]:7".parse().unwrap()]);
        // opentracker's counts: the swarm's size, seeds and leechers together.
        let r =
            parse_response(b"d8:completei3e10:incompletei250e8:intervali60e5:peers0:e").unwrap();
        assert_eq!(r.swarm, Some(253));
        assert_eq!(r.seeds, Some(3));
        let r = parse_response(b"d10:incompletei-4e5:peers0:e").unwrap();
        assert_eq!(r.swarm, None);
        assert_eq!(r.seeds, None);
    }

    #[test]
    fn failures() {
        assert_eq!(
            parse_response(b"d14:failure reason9:not founde"),
            Err(TrackerError::Failure("not found".into()))
        );
        assert_eq!(
            parse_response(b"d5:peers5:abcdee"),
            Err(TrackerError::Invalid("peers"))
        );
        assert!(parse_response(b"<html>").is_err());
    }

    proptest! {
        #[test]
        fn any_answer_parses_or_errs(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(r) = parse_response(&b) {
                prop_assert!(r.peers.len() <= MAX_PEERS);
                prop_assert!(r.interval >= MIN_INTERVAL && r.interval <= MAX_INTERVAL);
            }
        }

        #[test]
        fn compact_lists_parse(peers in proptest::collection::vec((any::<[u8; 4]>(), 1u16..), 0..40)) {
            let addrs: Vec<SocketAddr> = peers.iter().map(|(ip, p)| SocketAddr::new(std::net::Ipv4Addr::from(*ip).into(), *p)).collect();
            let mut e = bencode::Encoder::default();
            e.dict().str("interval").int(60).str("peers").bytes(&crate::swarm::wire::compact(&addrs, false)).end();
            prop_assert_eq!(parse_response(&e.out).unwrap().peers, addrs);
        }
    }
}
