//! The image through BitTorrent (`root=live:torrent://…`, `rd.rustlive.torrent`): the
//! `.torrent` fetched (bounded) and parsed, the image tmpfs mounted for its length (the same
//! memory check as every other source), then the swarm download into it under the boot's
//! deadline, verified as any image is (`rd.rustlive.sha256`, sha256sums, signature). What the
//! seeder after switch-root needs (the torrent's bytes, the image's path) comes back with it.

use crate::config::Config;
use crate::fetch::{self, FetchOptions};
use crate::root::ram::Tmpfs;
use crate::support::log::{mib, redact_url, Escaped};
use crate::support::paths::Paths;
use crate::swarm::metainfo::{self, Metainfo};
use crate::swarm::session::{self, SwarmError, SwarmOptions};
use reqwest::Url;
use std::path::PathBuf;

/// A verified image from the swarm, in its own tmpfs.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
    pub tmpfs: Tmpfs,
    /// The summary for the "root ready" line: bytes from peers and from each mirror, and what
    /// verified the image.
    pub summary: String,
    /// The `.torrent`'s bytes, for the seeder.
    pub torrent: Vec<u8>,
}

/// The swarm's options for the boot: the port, the mirrors as web seeds; no seeding in the
/// boot itself (the seeder after switch-root does it).
pub fn options(cfg: &Config, mirrors: Vec<Url>) -> SwarmOptions {
    SwarmOptions {
        port: cfg.swarm.port,
        mirrors,
        ..SwarmOptions::default()
    }
}

/// Whether a hash or a signing key covers the image: what a `.torrent` over plain http needs
/// (the rule of plain-http registries), checked before anything is fetched.
fn pinned(fopts: &FetchOptions) -> bool {
    fopts.sha256.is_some() || fopts.sha256sums.is_some() || !fopts.keys.is_empty()
}

/// Fetches and verifies the image `torrent_url` describes into the image tmpfs.
pub fn stage(
    torrent_url: &Url,
    sopts: &SwarmOptions,
    fopts: &FetchOptions,
    minmem: u64,
    paths: &Paths,
) -> Result<Staged, SwarmError> {
    let shown = redact_url(torrent_url);
    if torrent_url.scheme() == "http" && !pinned(fopts) {
        return Err(SwarmError::Unpinned { url: shown });
    }
    // The hashes in the options are the image's, not the torrent's.
    let topts = FetchOptions {
        sha256: None,
        content: None,
        ..fopts.clone()
    };
    let bytes = fetch::fetch_bytes(torrent_url, &topts, metainfo::MAX_TORRENT)?;
    let meta = Metainfo::parse(&bytes).map_err(|source| SwarmError::Torrent {
        url: shown.clone(),
        source,
    })?;
    log::info!(
        "torrent {shown}: {} ({}), {} pieces of {}, info-hash {}, {} tracker(s), {} web seed(s), {} mirror(s)",
        Escaped(&meta.name),
        mib(meta.length),
        meta.piece_count(),
        mib(u64::from(meta.piece_length)),
        meta.info_hash,
        meta.trackers.len(),
        meta.web_seeds.len(),
        sopts.mirrors.len(),
    );
    let tmpfs = fetch::image_tmpfs(Some(meta.length), minmem, paths)?;
    // The name is a single file name (`Metainfo::parse` checks it); sha256sums lines and
    // `IMAGE.minisig` go by the image's name beside the torrent.
    let path = fetch::image_dir(paths).join(&meta.name);
    let image = torrent_url
        .join(&meta.name)
        .unwrap_or_else(|_| torrent_url.clone());
    let report = session::download(&meta, &image, &path, sopts, fopts)?;
    Ok(Staged {
        path,
        tmpfs,
        summary: format!("{}; {}", report.summary(), verified_by(fopts)),
        torrent: bytes.to_vec(),
    })
}

/// What vouched for the image, in the words of [`fetch::verify::describe`] (the download
/// checked every one of these, or it failed).
fn verified_by(fopts: &FetchOptions) -> String {
    let mut by = Vec::new();
    if fopts.sha256.is_some() {
        by.push("the pinned sha256".to_string());
    }
    if let Some(u) = &fopts.sha256sums {
        by.push(format!("sha256sums {}", redact_url(u)));
    }
    if !fopts.keys.is_empty() {
        by.push("a minisign signature by a trusted key".to_string());
    }
    if by.is_empty() {
        "not verified: no hash or signature configured (each piece matched the torrent's SHA-1)"
            .into()
    } else {
        format!("verified by {}", by.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torrent_over_plain_http_needs_a_pin() {
        let u = Url::parse("http://boot/img.torrent").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = stage(
            &u,
            &SwarmOptions::default(),
            &FetchOptions::default(),
            0,
            &Paths::under(dir.path()),
        )
        .unwrap_err();
        assert!(matches!(e, SwarmError::Unpinned { .. }), "{e}");
        assert_eq!(e.exit_code(), crate::support::exit::Exit::Verify);
        assert_eq!(e.exit_code() as u8, 4);
    }

    #[test]
    fn says_what_verified_the_image() {
        let mut o = FetchOptions::default();
        assert!(verified_by(&o).starts_with("not verified"));
        o.sha256 = Some(crate::fetch::verify::sha256(b"x"));
        o.sha256sums = Some(Url::parse("https://u:p@h/SHA256SUMS?t=1").unwrap());
        let s = verified_by(&o);
        assert!(
            s.starts_with("verified by the pinned sha256, sha256sums https://h/SHA256SUMS"),
            "{s}"
        );
        assert!(!s.contains("u:p") && !s.contains("t=1"), "{s}");
    }

    #[test]
    fn boot_options_listen_on_the_configured_port() {
        let cfg = Config::from_cmdline("root=live:torrent://b/i.torrent rd.rustlive.bt.port=7000")
            .unwrap();
        let m = vec![Url::parse("http://m/i").unwrap()];
        let o = options(&cfg, m.clone());
        assert_eq!(
            (o.port, o.mirrors, o.seed),
            (7000, m, std::time::Duration::ZERO)
        );
    }
}
