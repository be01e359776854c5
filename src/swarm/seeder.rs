//! `@rustlive-seed`: the process that keeps sharing a booted node's image from its RAM copy
//! after switch-root (`boot::seed` starts it), for a bounded time under an upload cap, then
//! exits on its own.
//!
//! Everything it will ever need is taken first, while it is root, single-threaded and still sees
//! the initramfs: the `.torrent` (its standard input), the image (read-only, no-follow, the
//! length the torrent says), the listening socket, the trackers' addresses (resolved now: there
//! is no resolver in an empty root) and, for https trackers, the CA bundle's certificates. Then
//! it leaves its parent's cgroup (a unit's stop kills that one), closes every other descriptor,
//! makes an empty directory its root, drops to `nobody` with no groups and no way to regain
//! privileges, and caps its address space. Only then is the tracker client built (reqwest
//! starts threads, and credentials can be dropped safely only by a lone thread) and `ready`
//! written to standard output for the boot. No secret and no other file is reachable from it.

use super::metainfo::{self, Metainfo, MetainfoError};
use super::session::{self, SeedOptions, SeedReport, SwarmError};
use super::shared::Limits;
use crate::support::log::{mib, redact_url, Escaped};
use reqwest::Url;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::num::NonZeroU64;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `nobody`'s uid and gid: no file on the node belongs to it.
pub const NOBODY: u32 = 65534;
/// The seeder's address-space cap: its threads' stacks (one per peer, `Limits::max_peers`),
/// the tracker client's runtime and the blocks in flight fit well within it; the image is read
/// with `pread`, never mapped.
pub const MAX_MEMORY: u64 = 256 << 20;
/// The cgroup (v2) it moves to, beside the units' slices.
pub const CGROUP: &str = "rustlive-seed";
/// How long the port may stay taken by the boot's own listener, which closes as the download
/// ends.
const BIND_WAIT: Duration = Duration::from_secs(5);

/// What an admin sets for the seeder (`rd.rustlive.bt.port`, `rd.rustlive.seed`,
/// `rd.rustlive.seed.rate`) and the CA bundle for https trackers: the boot's options
/// (`boot::options::seed`), handed to the seeder on its command line (`boot::seed::arguments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    /// Zero: no seeder.
    pub duration: Duration,
    /// Bytes per second, all peers together; `None`: no cap.
    pub rate: Option<NonZeroU64>,
    /// The CA bundle for https trackers (else the installed defaults).
    pub ca: Option<PathBuf>,
}

/// What the seeder runs with: the settings, and where the image and its empty root are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub image: PathBuf,
    /// The empty directory it makes its root (created when missing).
    pub root: PathBuf,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum SeederError {
    #[error("cannot read the torrent from standard input")]
    ReadTorrent(#[source] std::io::Error),
    #[error("the torrent handed to the seeder is unusable")]
    Torrent(#[source] MetainfoError),
    #[error("cannot open the image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image {path} has {got} bytes, the torrent says {want}")]
    Length { path: PathBuf, got: u64, want: u64 },
    #[error("cannot listen for peers on port {port}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot confine the seeder ({step})")]
    Confine {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the tracker client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

impl SeederError {
    pub fn exit_code(&self) -> crate::support::exit::Exit {
        match self {
            SeederError::Swarm(e) => e.exit_code(),
            _ => crate::support::exit::Exit::Usage,
        }
    }
}

/// The host names (with their ports) of the http(s) trackers, to resolve before the root goes.
pub fn tracker_hosts(trackers: &[String]) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    for t in trackers {
        let Ok(u) = Url::parse(t) else { continue };
        if !matches!(u.scheme(), "http" | "https") {
            continue;
        }
        let (Some(h), Some(p)) = (u.host_str(), u.port_or_known_default()) else {
            continue;
        };
        // An address needs no resolving.
        if h.parse::<std::net::IpAddr>().is_ok() || h.starts_with('[') {
            continue;
        }
        if !out.iter().any(|(x, _)| x == h) {
            out.push((h.to_string(), p));
        }
    }
    out
}

/// Whether `dir` can serve as the empty root: created now (mode 0555), or an existing
/// directory with nothing in it.
fn empty_root(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o555).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)?;
            if !meta.is_dir() || std::fs::read_dir(dir)?.next().is_some() {
                return Err(std::io::Error::other(format!(
                    "{} exists and is not an empty directory",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Binds the peers' port, waiting up to [`BIND_WAIT`] for the boot's own listener to close.
fn bind(port: u16) -> Result<TcpListener, SeederError> {
    let start = Instant::now();
    loop {
        match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && start.elapsed() < BIND_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(source) => return Err(SeederError::Listen { port, source }),
        }
    }
}

/// The PEM certificates for https trackers, read while the files are reachable.
fn tls_roots(ca: Option<&Path>) -> Vec<reqwest::Certificate> {
    let path = match ca {
        Some(p) => Some(p.to_path_buf()),
        None => crate::fetch::client::DEFAULT_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
    };
    path.and_then(|p| std::fs::read(p).ok())
        .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok())
        .unwrap_or_default()
}

/// Runs the seeder: `input` is the `.torrent`, `ready` hears `ready` (or, before that, the
/// reason it could not start).
pub fn run(a: &Args, input: impl Read, mut ready: impl Write) -> Result<SeedReport, SeederError> {
    let prepared = prepare(a, input);
    let (meta, file, listener, client, null) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                ready,
                "{}",
                crate::support::exit::report(&e).replace('\n', " ")
            );
            return Err(e);
        }
    };
    let set = &a.settings;
    let port = listener.local_addr().map_or(set.port, |l| l.port());
    log::info!(
        "seeding {} ({}) on port {port} for {} s, at most {}, as uid {NOBODY} in an empty root",
        Escaped(&meta.name),
        mib(meta.length),
        set.duration.as_secs(),
        set.rate
            .map_or("unlimited".into(), |r| format!("{}/s", mib(r.get())))
    );
    let _ = writeln!(ready, "ready");
    let _ = ready.flush();
    drop(ready);
    // The start-up pipes are done with: nothing is read or written through them again.
    if let Err(e) = crate::sys::process::stdin_stdout_to(&null) {
        log::debug!("cannot detach the start-up pipes: {e}");
    }
    drop(null);
    let opts = SeedOptions {
        duration: set.duration,
        limits: Limits {
            upload_rate: set.rate,
            ..Limits::default()
        },
        stop: Some(crate::sys::signals::term_requested),
    };
    let report = session::seed_file(&meta, file, listener, &opts, &client)?;
    log::info!(
        "seeding done after {} s: uploaded {} to {} peer(s)",
        report.elapsed.as_secs(),
        mib(report.uploaded),
        report.peers_served
    );
    Ok(report)
}

type Prepared = (
    Metainfo,
    std::fs::File,
    TcpListener,
    reqwest::blocking::Client,
    std::fs::File,
);

/// Everything taken, then confined (the module's order).
fn prepare(a: &Args, input: impl Read) -> Result<Prepared, SeederError> {
    let mut bytes = Vec::new();
    input
        .take(
            u64::try_from(metainfo::MAX_TORRENT)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        )
        .read_to_end(&mut bytes)
        .map_err(SeederError::ReadTorrent)?;
    let meta = Metainfo::parse(&bytes).map_err(SeederError::Torrent)?;
    drop(bytes);
    let image_err = |source| SeederError::Image {
        path: a.image.clone(),
        source,
    };
    let (file, len) = crate::sys::fs::open_regular_read(&a.image).map_err(image_err)?;
    if len != meta.length {
        return Err(SeederError::Length {
            path: a.image.clone(),
            got: len,
            want: meta.length,
        });
    }
    let listener = bind(a.settings.port)?;
    let mut resolved: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    for (host, port) in tracker_hosts(&meta.trackers) {
        match (host.as_str(), port).to_socket_addrs() {
            Ok(addrs) => resolved.push((host, addrs.collect())),
            Err(e) => log::warn!("cannot resolve the tracker host {}: {e}", Escaped(&host)),
        }
    }
    let https = meta.trackers.iter().any(|t| t.starts_with("https://"));
    let roots = if https {
        tls_roots(a.settings.ca.as_deref())
    } else {
        Vec::new()
    };
    let confine = |step: &'static str| move |source| SeederError::Confine { step, source };
    // SIGTERM ends the seeder (`kill $(cat /run/rustlive/seed.pid)`), but not systemd's
    // broadcast as it leaves the initramfs: that one is for processes the initramfs leaves
    // behind by mistake, and this one stays on purpose (it is not root's, so `@` alone does
    // not spare it).
    let broadcast = crate::sys::signals::switch_root_broadcast_ahead(
        Path::new("/etc/initrd-release").exists(),
        &std::fs::read_to_string("/proc/1/comm").unwrap_or_default(),
    );
    crate::sys::signals::exit_on_term(broadcast).map_err(confine("SIGTERM handler"))?;
    // What the start-up pipes are replaced with once the boot heard `ready`.
    let null = std::fs::File::open("/dev/null").map_err(confine("/dev/null"))?;
    match crate::sys::process::move_to_own_cgroup(CGROUP) {
        Ok(_) => {}
        Err(e) => log::warn!("cannot leave the boot's cgroup: {e}"),
    }
    empty_root(&a.root).map_err(confine("empty root"))?;
    let alone = crate::sys::process::single_threaded().map_err(confine("threads"))?;
    let keep = [file.as_raw_fd(), listener.as_raw_fd(), null.as_raw_fd()];
    crate::sys::fds::close_all_except(&keep).map_err(confine("close descriptors"))?;
    crate::sys::process::change_root(&a.root)
        .map_err(std::io::Error::from)
        .map_err(confine("chroot"))?;
    crate::sys::process::change_dir(Path::new("/"))
        .map_err(std::io::Error::from)
        .map_err(confine("chdir"))?;
    crate::sys::process::drop_privileges(&alone, NOBODY, NOBODY)
        .map_err(confine("drop privileges"))?;
    crate::sys::process::no_new_privs()
        .map_err(std::io::Error::from)
        .map_err(confine("no_new_privs"))?;
    crate::sys::process::limit_address_space(MAX_MEMORY)
        .map_err(std::io::Error::from)
        .map_err(confine("address space"))?;
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0);
    for (host, addrs) in &resolved {
        b = b.resolve_to_addrs(host, addrs);
    }
    for c in roots {
        b = b.add_root_certificate(c);
    }
    let client = b.build().map_err(SeederError::Client)?;
    for t in &meta.trackers {
        if let Ok(u) = Url::parse(t) {
            log::debug!("tracker {}", redact_url(&u));
        }
    }
    Ok((meta, file, listener, client, null))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeder's arguments with its image and empty root in `dir`.
    fn args_in(dir: &Path) -> Args {
        Args {
            image: dir.join("img"),
            root: dir.join("root"),
            settings: Settings {
                port: 0,
                duration: Duration::from_secs(1),
                rate: None,
                ca: None,
            },
        }
    }

    #[test]
    fn resolves_only_named_http_trackers_once() {
        let t: Vec<String> = [
            "http://tracker.site:6969/announce",
            "https://tracker.site/announce",
            "http://10.0.0.1:6969/announce",
            "http://[2001:db8::1]:6969/announce",
            "udp://tracker.site:6969",
            "not a url",
            "https://other.site/a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            tracker_hosts(&t),
            [
                ("tracker.site".to_string(), 6969),
                ("other.site".to_string(), 443)
            ]
        );
    }

    #[test]
    fn the_root_must_be_empty() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        empty_root(&r).unwrap();
        empty_root(&r).unwrap();
        let full = d.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("secret"), b"x").unwrap();
        assert!(empty_root(&full).is_err());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&r, &link).unwrap();
        assert!(empty_root(&link).is_err());
    }

    #[test]
    fn refuses_a_torrent_that_is_not_one_before_anything_else() {
        let d = tempfile::tempdir().unwrap();
        let a = args_in(d.path());
        let mut said = Vec::new();
        let e = run(&a, &b"garbage"[..], &mut said).unwrap_err();
        assert!(matches!(e, SeederError::Torrent(_)), "{e}");
        let said = String::from_utf8(said).unwrap();
        assert!(
            said.starts_with("the torrent handed to the seeder is unusable"),
            "{said}"
        );
        assert!(!d.path().join("root").exists());
    }

    #[test]
    fn refuses_an_image_of_another_length() {
        let d = tempfile::tempdir().unwrap();
        let data = vec![7u8; 40_000];
        let t = metainfo::tests::torrent_of(&data, 16384, "http://t/announce", &[]);
        std::fs::write(d.path().join("img"), &data[..100]).unwrap();
        let a = args_in(d.path());
        let e = run(&a, &t[..], std::io::sink()).unwrap_err();
        assert!(
            matches!(
                e,
                SeederError::Length {
                    got: 100,
                    want: 40_000,
                    ..
                }
            ),
            "{e}"
        );
    }
}
