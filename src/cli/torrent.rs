//! `rustlive torrent create|show` (the boot server's side of sharing an image over
//! BitTorrent) and the swarm half of `rustlive fetch` (a `torrent://` source).

use super::error::Error;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum TorrentCommand {
    /// Write a BitTorrent v1 single-file .torrent for IMAGE: deterministic bytes (no creation
    /// date, sorted keys), the piece size chosen for the image's size unless given; prints the
    /// info-hash (what a tracker's whitelist lists).
    #[command(
        after_help = "Example: rustlive torrent create /srv/www/compute.squashfs --tracker http://boot:6969/announce --webseed http://boot/compute.squashfs -o /srv/www/compute.squashfs.torrent"
    )]
    Create(TorrentCreateArgs),
    /// Read a .torrent as `rustlive fetch` would and print its name, length, pieces,
    /// info-hash, trackers and web seeds.
    Show(TorrentShowArgs),
}

#[derive(Debug, Args)]
pub struct TorrentCreateArgs {
    /// The image file.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// An HTTP tracker's announce URL; repeatable (the first is `announce`, all of them
    /// `announce-list`).
    #[arg(long, value_name = "URL")]
    pub tracker: Vec<String>,
    /// A web seed (BEP 19): the image's URL on a mirror; repeatable.
    #[arg(long, value_name = "URL")]
    pub webseed: Vec<String>,
    /// Piece size, a power of two from 16K to 64M (default: from the image's size, 1000 to
    /// 2000 pieces of 256K to 16M).
    #[arg(long, value_name = "SIZE", value_parser = crate::server::torrent::parse_piece_size)]
    pub piece_size: Option<u32>,
    /// The file name inside the torrent (default: IMAGE's).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Where the .torrent is written.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct TorrentShowArgs {
    /// The .torrent file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// The swarm options of `rustlive fetch`, flattened into its arguments.
#[derive(Debug, Args, Clone)]
pub struct SwarmArgs {
    /// With a torrent source: the port peers reach this node on (0: any free port).
    #[arg(long, value_name = "PORT", default_value = "6881")]
    pub bt_port: u16,
    /// With a torrent source: keep serving the verified file to peers this long after it is
    /// complete (e.g. 10m; 0: stop at once).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = crate::support::values::parse_duration)]
    pub seed: std::time::Duration,
    /// With a torrent source: most peer connections at once.
    #[arg(long, value_name = "N", default_value = "40")]
    pub max_peers: usize,
    /// With a torrent source: most peers served at once.
    #[arg(long, value_name = "N", default_value = "8")]
    pub upload_slots: usize,
    /// With a torrent source: most bytes per second sent to all peers together, while
    /// downloading and seeding (e.g. 10M, 512K; 0: no limit).
    #[arg(long, value_name = "RATE", default_value = "0", value_parser = crate::support::values::parse_rate)]
    pub upload_rate: u64,
}

pub(super) fn torrent(c: &TorrentCommand) -> Result<(), Error> {
    match c {
        TorrentCommand::Create(a) => {
            let opts = crate::server::torrent::CreateOptions {
                trackers: a.tracker.clone(),
                web_seeds: a.webseed.clone(),
                piece_size: a.piece_size,
                name: a.name.clone(),
            };
            let m = crate::server::torrent::create(&a.image, &a.output, &opts)?;
            println!(
                "{}  {} ({} bytes, {} pieces of {} bytes)",
                m.info_hash,
                a.output.display(),
                m.length,
                m.piece_count(),
                m.piece_length
            );
            Ok(())
        }
        TorrentCommand::Show(a) => {
            let m = crate::server::torrent::show(&a.file)?;
            let esc = crate::support::log::escaped;
            println!("name: {}", esc(&m.name));
            println!("info-hash: {}", m.info_hash);
            println!("length: {}", m.length);
            println!("piece length: {}", m.piece_length);
            println!("pieces: {}", m.piece_count());
            for t in &m.trackers {
                println!("tracker: {}", esc(t));
            }
            for w in &m.web_seeds {
                println!("web seed: {}", esc(w));
            }
            if m.private {
                println!("private: yes");
            }
            Ok(())
        }
    }
}

/// Whether a `rustlive fetch` URL is a torrent source.
pub(super) fn is_torrent(u: &reqwest::Url) -> bool {
    crate::swarm::session::torrent_http_url(u).is_some()
}

/// `rustlive fetch torrent://…`: the image from the swarm; the other URLs are its mirrors,
/// used as web seeds beside the torrent's own.
pub(super) fn fetch(
    urls: &[reqwest::Url],
    output: &std::path::Path,
    swarm: &SwarmArgs,
    opts: &crate::fetch::FetchOptions,
) -> Result<(), Error> {
    let mut torrents = urls.iter().filter(|u| is_torrent(u));
    let (Some(t), None) = (torrents.next(), torrents.next()) else {
        return Err(crate::swarm::session::SwarmError::Usage(
            "give one torrent source; the other URLs are its mirrors",
        )
        .into());
    };
    let url = crate::swarm::session::torrent_http_url(t).ok_or(crate::fetch::FetchError::NoUrl)?;
    let mirrors: Vec<reqwest::Url> = urls.iter().filter(|u| !is_torrent(u)).cloned().collect();
    let limits = crate::swarm::shared::Limits {
        max_peers: swarm.max_peers.max(1),
        upload_slots: swarm.upload_slots,
        stall: opts.stall,
        min_rate: opts.min_rate,
        upload_rate: std::num::NonZeroU64::new(swarm.upload_rate),
        ..crate::swarm::shared::Limits::default()
    };
    let sopts = crate::swarm::session::SwarmOptions {
        port: swarm.bt_port,
        seed: swarm.seed,
        limits,
        mirrors,
    };
    crate::swarm::session::fetch_torrent(&url, output, &sopts, opts)?;
    Ok(())
}

/// `rustlive seed-image` (hidden): the seeder `boot` starts after the image is verified
/// (`boot::seed`); its standard input is the `.torrent`, its standard output the ready line.
#[derive(Debug, clap::Args)]
pub struct SeedImageArgs {
    #[arg(long, value_name = "PATH")]
    pub image: std::path::PathBuf,
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// Seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: u64,
    /// Bytes per second; 0: no cap.
    #[arg(long, value_name = "BYTES")]
    pub rate: u64,
    #[arg(long, value_name = "DIR")]
    pub root: std::path::PathBuf,
    #[arg(long, value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
}

impl SeedImageArgs {
    /// The seeder's arguments, as `boot::seed::arguments` wrote them.
    pub(super) fn to_args(&self) -> crate::swarm::seeder::Args {
        crate::swarm::seeder::Args {
            image: self.image.clone(),
            root: self.root.clone(),
            settings: crate::swarm::seeder::Settings {
                port: self.port,
                duration: std::time::Duration::from_secs(self.duration),
                rate: std::num::NonZeroU64::new(self.rate),
                ca: self.ca.clone(),
            },
        }
    }
}

pub(super) fn seed_image(a: &SeedImageArgs) -> Result<(), Error> {
    // A session of its own: nothing aimed at the boot's process group or terminal reaches it
    // (already a leader, when started by hand, is fine).
    let _ = crate::sys::process::new_session();
    // Started as /proc/self/exe: named after the program, not `exe` (argv[0] is
    // `@rustlive-seed`, systemd's mark for a process from the initramfs).
    let _ = crate::sys::process::set_name(c"rustlive");
    let args = a.to_args();
    crate::swarm::seeder::run(&args, std::io::stdin().lock(), std::io::stdout().lock())?;
    Ok(())
}
