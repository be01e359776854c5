//! The `.torrent` file (BEP 3 metainfo, single-file, v1): what rustlive downloads and how each
//! piece is checked. The info-hash is the SHA-1 of the `info` dictionary's bytes exactly as they
//! appear in the file (`bencode` keeps them), so it matches what every other client computes.
//!
//! Trackers come from `announce` and `announce-list` (BEP 12, flattened, in order, without
//! duplicates); web seeds from `url-list` (BEP 19, a string or a list). Multi-file torrents and
//! v2-only torrents (BEP 52) are refused with a sentence saying so; a hybrid torrent is used
//! through its v1 half.

use super::bencode::{self, BencodeError, Value};
use sha1::{Digest, Sha1};
use std::fmt;

/// The largest `.torrent` accepted (a 64 GiB image in 64 KiB pieces needs 20 MiB of hashes;
/// real ones are far smaller).
pub const MAX_TORRENT: usize = 32 << 20;
/// Largest piece accepted: a piece is held in memory until it verifies.
pub const MAX_PIECE_LENGTH: u32 = 64 << 20;
/// Most pieces accepted (bookkeeping is a few bytes per piece and per peer).
pub const MAX_PIECES: usize = 1 << 20;
/// Most trackers and web seeds kept from one torrent.
pub const MAX_URLS: usize = 64;

/// The 20-byte SHA-1 that names a torrent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    /// The file name the torrent suggests (a single path component).
    pub name: String,
    pub length: u64,
    pub piece_length: u32,
    pub pieces: Vec<[u8; 20]>,
    /// HTTP(S) trackers, in order (other schemes, such as udp://, are kept out).
    pub trackers: Vec<String>,
    /// BEP 19 web seeds, in order.
    pub web_seeds: Vec<String>,
    /// BEP 27: peers only from the tracker, no peer exchange.
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("the torrent is not valid bencode")]
    Bencode(#[from] BencodeError),
    #[error("the torrent is larger than {MAX_TORRENT} bytes")]
    TooLarge,
    #[error("the torrent has no {0}")]
    Missing(&'static str),
    #[error("the torrent's {0} is invalid")]
    Invalid(&'static str),
    #[error("the torrent describes several files; rustlive fetches one image file (single-file torrents only)")]
    MultiFile,
    #[error("the torrent is BitTorrent v2 only (BEP 52); rustlive reads v1 and hybrid torrents")]
    V2Only,
    #[error("the torrent's name {0:?} is not a single file name")]
    BadName(String),
    #[error("the torrent has {got} piece hashes where {expected} bytes in pieces of {piece_length} need {need}")]
    PieceCount {
        got: usize,
        need: u64,
        expected: u64,
        piece_length: u32,
    },
}

impl Metainfo {
    /// Parses and checks a `.torrent` file.
    pub fn parse(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_TORRENT {
            return Err(MetainfoError::TooLarge);
        }
        let top = bencode::decode(bytes)?;
        if top.raw_dict().is_none() {
            return Err(MetainfoError::Invalid("top level (not a dictionary)"));
        }
        let info = top.get("info").ok_or(MetainfoError::Missing("info"))?;
        let raw = info
            .raw_dict()
            .ok_or(MetainfoError::Invalid("info (not a dictionary)"))?;
        let info_hash = InfoHash(Sha1::digest(raw).into());
        if info.get("files").is_some() {
            return Err(MetainfoError::MultiFile);
        }
        let Some(pieces) = info.get("pieces") else {
            return Err(if info.get("file tree").is_some() {
                MetainfoError::V2Only
            } else {
                MetainfoError::Missing("pieces")
            });
        };
        let name = info
            .get("name")
            .ok_or(MetainfoError::Missing("name"))?
            .as_str()
            .ok_or(MetainfoError::Invalid("name"))?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(MetainfoError::BadName(name.chars().take(80).collect()));
        }
        let length = info
            .get("length")
            .ok_or(MetainfoError::Missing("length"))?
            .as_int()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or(MetainfoError::Invalid("length"))?;
        let piece_length = info
            .get("piece length")
            .ok_or(MetainfoError::Missing("piece length"))?
            .as_int()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0 && n <= MAX_PIECE_LENGTH)
            .ok_or(MetainfoError::Invalid("piece length"))?;
        let pieces = pieces
            .as_bytes()
            .filter(|p| p.len() % 20 == 0)
            .ok_or(MetainfoError::Invalid("pieces"))?;
        let need = length.div_ceil(u64::from(piece_length));
        let got = pieces.len() / 20;
        if u64::try_from(got).ok() != Some(need) || got > MAX_PIECES {
            return Err(MetainfoError::PieceCount {
                got,
                need,
                expected: length,
                piece_length,
            });
        }
        let pieces = pieces
            .chunks_exact(20)
            .filter_map(|c| <[u8; 20]>::try_from(c).ok())
            .collect();
        let private = info.get("private").and_then(Value::as_int) == Some(1);
        let mut trackers = Vec::new();
        let mut add_tracker = |v: &Value<'_>| {
            if let Some(u) = v.as_str().filter(|u| is_http(u)) {
                if !trackers.iter().any(|t| t == u) && trackers.len() < MAX_URLS {
                    trackers.push(u.to_string());
                }
            }
        };
        if let Some(tiers) = top.get("announce-list").and_then(Value::as_list) {
            for tier in tiers {
                for t in tier.as_list().unwrap_or_default() {
                    add_tracker(t);
                }
            }
        }
        if let Some(a) = top.get("announce") {
            add_tracker(a);
        }
        let mut web_seeds = Vec::new();
        let seeds: Vec<&Value<'_>> = match top.get("url-list") {
            Some(Value::List(l)) => l.iter().collect(),
            Some(v @ Value::Bytes(_)) => vec![v],
            _ => Vec::new(),
        };
        for s in seeds {
            if let Some(u) = s.as_str().filter(|u| is_http(u)) {
                if !web_seeds.iter().any(|w| w == u) && web_seeds.len() < MAX_URLS {
                    web_seeds.push(u.to_string());
                }
            }
        }
        Ok(Metainfo {
            info_hash,
            name: name.to_string(),
            length,
            piece_length,
            pieces,
            trackers,
            web_seeds,
            private,
        })
    }

    pub fn piece_count(&self) -> u32 {
        u32::try_from(self.pieces.len()).unwrap_or(u32::MAX)
    }

    /// Where piece `index` starts in the file and how long it is (the last may be shorter).
    pub fn piece_span(&self, index: u32) -> Option<(u64, u32)> {
        if index >= self.piece_count() {
            return None;
        }
        let start = u64::from(index).checked_mul(u64::from(self.piece_length))?;
        let left = self.length.checked_sub(start)?;
        let len = u32::try_from(left.min(u64::from(self.piece_length))).ok()?;
        Some((start, len))
    }

    pub fn piece_hash(&self, index: u32) -> Option<&[u8; 20]> {
        self.pieces.get(usize::try_from(index).ok()?)
    }

    /// Whether `data` is piece `index`, byte for byte.
    pub fn verify_piece(&self, index: u32, data: &[u8]) -> bool {
        let ok_len = self
            .piece_span(index)
            .is_some_and(|(_, len)| usize::try_from(len).ok() == Some(data.len()));
        let digest: [u8; 20] = Sha1::digest(data).into();
        ok_len && self.piece_hash(index) == Some(&digest)
    }
}

fn is_http(u: &str) -> bool {
    u.starts_with("http://") || u.starts_with("https://")
}

/// A web seed's URL for the file (BEP 19: a URL ending in `/` names a directory).
pub fn web_seed_file_url(seed: &str, name: &str) -> String {
    if seed.ends_with('/') {
        let enc = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("{seed}{enc}")
    } else {
        seed.to_string()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::swarm::bencode::Encoder;
    use proptest::prelude::*;

    /// A v1 single-file torrent of `data` in pieces of `piece` bytes (info keys sorted).
    pub fn torrent_of(data: &[u8], piece: u32, announce: &str, seeds: &[&str]) -> Vec<u8> {
        let mut hashes = Vec::new();
        for c in data.chunks(piece as usize) {
            hashes.extend_from_slice(&Sha1::digest(c));
        }
        let mut e = Encoder::default();
        e.dict().str("announce").str(announce);
        e.str("info").dict();
        e.str("length").int(data.len() as i64);
        e.str("name").str("img");
        e.str("piece length").int(i64::from(piece));
        e.str("pieces").bytes(&hashes);
        e.end();
        if !seeds.is_empty() {
            e.str("url-list").list();
            for s in seeds {
                e.str(s);
            }
            e.end();
        }
        e.end();
        e.out
    }

    #[test]
    fn parses_single_file() {
        let data = vec![7u8; 100_000];
        let t = torrent_of(&data, 32768, "http://t/announce", &["http://w/img"]);
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!(m.length, 100_000);
        assert_eq!(m.piece_count(), 4);
        assert_eq!(m.piece_span(3), Some((98304, 1696)));
        assert_eq!(m.piece_span(4), None);
        assert_eq!(m.trackers, ["http://t/announce"]);
        assert_eq!(m.web_seeds, ["http://w/img"]);
        assert!(m.verify_piece(3, &data[98304..]));
        assert!(!m.verify_piece(3, &data[98303..]));
        assert!(!m.verify_piece(2, &data[..32768].iter().map(|b| b ^ 1).collect::<Vec<_>>()));
        // The info-hash is the SHA-1 of the info dictionary's own bytes.
        let start = t.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        let info = bencode::decode_prefix(&t[start..]).unwrap().1;
        let h: [u8; 20] = Sha1::digest(&t[start..start + info]).into();
        assert_eq!(m.info_hash, InfoHash(h));
    }

    #[test]
    fn refuses_multi_file_and_v2_only() {
        let t = b"d4:infod5:filesld6:lengthi1e4:pathl1:aeee4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert_eq!(Metainfo::parse(t), Err(MetainfoError::MultiFile));
        let t = b"d4:infod9:file treede4:name1:x12:piece lengthi16384eee";
        assert_eq!(Metainfo::parse(t), Err(MetainfoError::V2Only));
        assert!(MetainfoError::MultiFile.to_string().contains("single-file"));
    }

    #[test]
    fn refuses_wrong_piece_count_and_names() {
        let t = b"d4:infod6:lengthi40000e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert!(matches!(
            Metainfo::parse(t),
            Err(MetainfoError::PieceCount {
                got: 1,
                need: 3,
                ..
            })
        ));
        let t =
            b"d4:infod6:lengthi1e4:name2:..12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert!(matches!(Metainfo::parse(t), Err(MetainfoError::BadName(_))));
    }

    #[test]
    fn announce_list_and_url_list_string() {
        let t = b"d8:announce9:http://a/13:announce-listll9:http://b/el9:http://a/6:udp://ee4:infod6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae8:url-list9:http://w/e";
        let m = Metainfo::parse(t).unwrap();
        assert_eq!(m.trackers, ["http://b/", "http://a/"]);
        assert_eq!(m.web_seeds, ["http://w/"]);
        assert_eq!(web_seed_file_url("http://w/", "a b"), "http://w/a%20b");
        assert_eq!(web_seed_file_url("http://w/x.img", "a"), "http://w/x.img");
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Metainfo::parse(&bytes);
        }

        #[test]
        fn mutated_torrents_never_panic(
            data in proptest::collection::vec(any::<u8>(), 1..5000),
            at in any::<usize>(),
            b in any::<u8>(),
        ) {
            let mut t = torrent_of(&data, 1024, "http://t/a", &["http://w/"]);
            let i = at % t.len();
            t[i] = b;
            if let Ok(m) = Metainfo::parse(&t) {
                prop_assert_eq!(u64::from(m.piece_count()), m.length.div_ceil(u64::from(m.piece_length)));
                let last = m.piece_count() - 1;
                prop_assert!(m.piece_span(last).is_some());
            }
        }

        #[test]
        fn generated_torrents_parse(data in proptest::collection::vec(any::<u8>(), 1..5000), piece in 1u32..3000) {
            let t = torrent_of(&data, piece, "http://t/a", &[]);
            let m = Metainfo::parse(&t).unwrap();
            for i in 0..m.piece_count() {
                let (start, len) = m.piece_span(i).unwrap();
                prop_assert!(m.verify_piece(i, &data[start as usize..(start + u64::from(len)) as usize]));
            }
        }
    }
}
