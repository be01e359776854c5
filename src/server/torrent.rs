//! `rustlive torrent create`: a BitTorrent v1 single-file `.torrent` for an image, so nodes
//! (and any BitTorrent client) can share it. Deterministic: the same image, trackers, web
//! seeds and piece size give the same bytes (no creation date, keys in sorted order, the
//! creator named without a version), so a rebuilt torrent keeps its info-hash and a tracker's
//! whitelist stays valid. The piece size, when not given, keeps the piece count between about
//! 1000 and 2000 within 256 KiB to 16 MiB: few enough hashes for a small torrent, small enough
//! pieces for peers to start sharing early.

use super::safe_file::{Dir, FileError};
use crate::swarm::bencode::Encoder;
use crate::swarm::metainfo::{InfoHash, Metainfo, MetainfoError};
use sha1::{Digest, Sha1};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const MIN_AUTO_PIECE: u32 = 256 << 10;
pub const MAX_AUTO_PIECE: u32 = 16 << 20;
/// Bounds on a piece size given by hand (powers of two, as every client expects).
pub const MIN_PIECE: u32 = 16 << 10;
pub const MAX_PIECE: u32 = crate::swarm::metainfo::MAX_PIECE_LENGTH;
const TARGET_PIECES: u64 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    #[error("cannot read the image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    #[error("{path} changed size while it was hashed")]
    Changed { path: PathBuf },
    #[error("the torrent name {0:?} is not a single UTF-8 file name")]
    BadName(String),
    #[error("{0} is not an http(s) URL")]
    BadUrl(String),
    #[error("the image needs {0} pieces of this size; choose a larger --piece-size")]
    TooManyPieces(u64),
    #[error("cannot write the torrent")]
    Output(#[from] FileError),
    #[error("cannot read the torrent {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    #[error("{path} is not a torrent rustlive can use")]
    Parse {
        path: PathBuf,
        #[source]
        source: MetainfoError,
    },
}

/// What goes into the torrent besides the image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Trackers, the first as `announce`, all as `announce-list` tiers when several.
    pub trackers: Vec<String>,
    /// BEP 19 web seeds (`url-list`): the image's URLs on the site's mirrors.
    pub web_seeds: Vec<String>,
    pub piece_size: Option<u32>,
    /// The file name inside the torrent (default: the image's).
    pub name: Option<String>,
}

/// `--piece-size`: a power of two between 16 KiB and 64 MiB.
pub fn parse_piece_size(s: &str) -> Result<u32, String> {
    match crate::support::values::parse_size(s)? {
        crate::support::values::Size::Bytes(b) => u32::try_from(b)
            .ok()
            .filter(|b| b.is_power_of_two() && (MIN_PIECE..=MAX_PIECE).contains(b))
            .ok_or_else(|| "expected a power of two between 16K and 64M".into()),
        _ => Err("expected a size in bytes (K/M suffixes)".into()),
    }
}

/// The piece size for an image of `len` bytes: the smallest power of two from 256 KiB that
/// keeps the count at or below 2000, at most 16 MiB.
pub fn auto_piece_size(len: u64) -> u32 {
    let mut p = MIN_AUTO_PIECE;
    while p < MAX_AUTO_PIECE && len.div_ceil(u64::from(p)) > TARGET_PIECES {
        p = p.saturating_mul(2);
    }
    p
}

fn check_url(u: &str) -> Result<(), TorrentError> {
    match reqwest::Url::parse(u) {
        Ok(x) if matches!(x.scheme(), "http" | "https") => Ok(()),
        _ => Err(TorrentError::BadUrl(crate::support::log::redact_url_str(u))),
    }
}

/// The torrent's bytes for an image of `len` bytes read from `image` (hashed piece by piece).
pub fn build(
    image: &mut dyn Read,
    len: u64,
    name: &str,
    opts: &CreateOptions,
    path: &Path,
) -> Result<Vec<u8>, TorrentError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(TorrentError::BadName(name.into()));
    }
    for u in opts.trackers.iter().chain(&opts.web_seeds) {
        check_url(u)?;
    }
    let piece = opts.piece_size.unwrap_or_else(|| auto_piece_size(len));
    let count = len.div_ceil(u64::from(piece));
    if count > u64::try_from(crate::swarm::metainfo::MAX_PIECES).unwrap_or(u64::MAX) {
        return Err(TorrentError::TooManyPieces(count));
    }
    let mut hashes = Vec::with_capacity(usize::try_from(count.saturating_mul(20)).unwrap_or(0));
    let mut buf = vec![0u8; usize::try_from(piece).unwrap_or(0)];
    let mut left = len;
    let err = |source| TorrentError::Image {
        path: path.into(),
        source,
    };
    while left > 0 {
        let n = usize::try_from(left.min(u64::from(piece))).unwrap_or(0);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        image.read_exact(chunk).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => TorrentError::Changed { path: path.into() },
            _ => err(e),
        })?;
        hashes.extend_from_slice(&Sha1::digest(&*chunk));
        left = left.saturating_sub(u64::try_from(n).unwrap_or(0));
    }
    // A byte past the stated length means the image grew while it was read.
    if image.read(&mut [0u8; 1]).map_err(err)? != 0 {
        return Err(TorrentError::Changed { path: path.into() });
    }
    let mut e = Encoder::default();
    e.dict();
    if let Some(first) = opts.trackers.first() {
        e.str("announce").str(first);
    }
    if opts.trackers.len() > 1 {
        e.str("announce-list").list();
        for t in &opts.trackers {
            e.list().str(t).end();
        }
        e.end();
    }
    e.str("created by").str("rustlive");
    e.str("info").dict();
    e.str("length").int(i64::try_from(len).unwrap_or(i64::MAX));
    e.str("name").str(name);
    e.str("piece length").int(i64::from(piece));
    e.str("pieces").bytes(&hashes);
    e.end();
    if !opts.web_seeds.is_empty() {
        e.str("url-list").list();
        for w in &opts.web_seeds {
            e.str(w);
        }
        e.end();
    }
    e.end();
    Ok(e.out)
}

/// `rustlive torrent create`: hashes `image`, writes `out` (a temporary renamed into place);
/// returns the torrent as parsed back (its info-hash, piece count).
pub fn create(image: &Path, out: &Path, opts: &CreateOptions) -> Result<Metainfo, TorrentError> {
    let err = |source| TorrentError::Image {
        path: image.into(),
        source,
    };
    let meta = std::fs::metadata(image).map_err(err)?;
    if !meta.is_file() {
        return Err(TorrentError::NotRegular { path: image.into() });
    }
    let mut f = std::fs::File::open(image).map_err(err)?;
    // The file opened is the file checked (no swap between stat and open).
    let opened = f.metadata().map_err(err)?;
    if !opened.is_file() {
        return Err(TorrentError::NotRegular { path: image.into() });
    }
    let len = opened.len();
    if len == 0 {
        return Err(TorrentError::Empty { path: image.into() });
    }
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => image
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| TorrentError::BadName(image.display().to_string()))?,
    };
    let bytes = build(&mut f, len, &name, opts, image)?;
    let parsed = Metainfo::parse(&bytes).map_err(|source| TorrentError::Parse {
        path: out.into(),
        source,
    })?;
    let (dir, file) = Dir::open_parent_of(out)?;
    dir.write(&file, &bytes, 0o644)?;
    Ok(parsed)
}

/// `rustlive torrent show`: a `.torrent` read and checked as `rustlive fetch` would.
pub fn show(path: &Path) -> Result<Metainfo, TorrentError> {
    let limit = super::safe_file::Limit {
        bytes: u64::try_from(crate::swarm::metainfo::MAX_TORRENT).unwrap_or(u64::MAX),
        what: "a torrent",
    };
    let content =
        super::safe_file::read_named(path, limit).map_err(|source| TorrentError::Read {
            path: path.into(),
            source,
        })?;
    Metainfo::parse(&content.bytes).map_err(|source| TorrentError::Parse {
        path: path.into(),
        source,
    })
}

/// The info-hash as trackers' whitelists and clients print it.
pub fn hex(h: &InfoHash) -> String {
    h.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_sizes() {
        assert_eq!(auto_piece_size(1), MIN_AUTO_PIECE);
        assert_eq!(auto_piece_size(500 << 20), 256 << 10);
        assert_eq!(auto_piece_size(600 << 20), 512 << 10);
        assert_eq!(auto_piece_size(2 << 30), 2 << 20);
        assert_eq!(auto_piece_size(1 << 40), MAX_AUTO_PIECE);
        for len in [1u64 << 30, 3 << 30, 10 << 30] {
            let n = len.div_ceil(u64::from(auto_piece_size(len)));
            assert!((1000..=2000).contains(&n), "{len}: {n}");
        }
        assert_eq!(parse_piece_size("1M"), Ok(1 << 20));
        assert!(parse_piece_size("1000K").is_err());
        assert!(parse_piece_size("8K").is_err());
    }

    #[test]
    fn deterministic_and_parsable() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let opts = CreateOptions {
            trackers: vec!["http://t:6969/announce".into(), "http://t2/announce".into()],
            web_seeds: vec!["http://w/img".into()],
            piece_size: Some(64 << 10),
            name: None,
        };
        let a = build(
            &mut &data[..],
            data.len() as u64,
            "img",
            &opts,
            Path::new("x"),
        )
        .unwrap();
        let b = build(
            &mut &data[..],
            data.len() as u64,
            "img",
            &opts,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(a, b);
        let m = Metainfo::parse(&a).unwrap();
        assert_eq!(m.piece_count(), 5);
        assert_eq!(m.trackers, ["http://t:6969/announce", "http://t2/announce"]);
        assert_eq!(m.web_seeds, ["http://w/img"]);
        assert!(m.verify_piece(4, &data[4 * 65536..]));
        // Keys in sorted order: canonical bencode.
        let v = crate::swarm::bencode::decode(&a).unwrap();
        assert_eq!(crate::swarm::bencode::encode(&v), a);
        // A short read is a changed file, not a short torrent.
        assert!(matches!(
            build(
                &mut &data[..10],
                data.len() as u64,
                "img",
                &opts,
                Path::new("x")
            ),
            Err(TorrentError::Changed { .. })
        ));
        assert!(matches!(
            build(&mut &data[..], 10, "img", &opts, Path::new("x")),
            Err(TorrentError::Changed { .. })
        ));
        assert!(build(&mut &data[..], 1, "a/b", &opts, Path::new("x")).is_err());
    }
}
