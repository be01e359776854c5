//! The image through BitTorrent (`root=live:torrent://…`, `rd.rustlive.torrent`): the
//! `.torrent` fetched (bounded) and parsed, the image tmpfs mounted for its length (the same
//! memory check as every other source), then the swarm download into it under the boot's
//! deadline, verified as any image is (`rd.rustlive.sha256`, sha256sums, signature). What the
//! seeder after switch-root needs (the torrent's bytes, the image's path) comes back with it.

use crate::config::Config;
use crate::fetch::{self, FetchOptions};
use crate::root::ram::Tmpfs;
use crate::support::paths::Paths;
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

/// Fetches and verifies the image `torrent_url` describes into the image tmpfs.
pub fn stage(
    torrent_url: &Url,
    sopts: &SwarmOptions,
    fopts: &FetchOptions,
    minmem: u64,
    paths: &Paths,
) -> Result<Staged, SwarmError> {
    let t = session::fetch_metainfo(torrent_url, fopts)?;
    if !sopts.mirrors.is_empty() {
        log::info!(
            "{} mirror{} of the image as web seeds beside the torrent's",
            sopts.mirrors.len(),
            if sopts.mirrors.len() == 1 { "" } else { "s" }
        );
    }
    let tmpfs = fetch::image_tmpfs(Some(t.meta.length), minmem, paths)?;
    let path = fetch::image_dir(paths).join(&t.meta.name);
    let report = session::download(&t.meta, &t.image, &path, sopts, fopts)?;
    Ok(Staged {
        path,
        tmpfs,
        summary: report.summary(),
        torrent: t.bytes,
    })
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
