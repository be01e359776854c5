//! A swarm download from start to end: the `.torrent` fetched (over http(s), bounded), the
//! image's expectations resolved as `fetch` resolves them (`--sha256`, sha256sums, signature),
//! a listening socket for peers, the trackers announced to, peers connected (each in its own
//! thread, `peer`), web seeds and mirrors started (`webseed`), and the loop that waits for
//! the last piece under the deadline. Every piece is checked against its SHA-1 before it is
//! written into `DEST.part` at its offset; the whole file is hashed in file order as it arrives
//! and verified as `fetch` verifies it, then renamed to `DEST`. With `seed`, the verified file
//! keeps being served for that long; `seed_file` serves a complete file with the same loop.

use super::choke::ROTATE_EVERY;
use super::metainfo::{self, Metainfo, MetainfoError};
use super::peer;
use super::picker::Picker;
use super::rate::Bucket;
use super::shared::{Limits, Shared, State};
use super::tracker::{self, Announce, Event};
use super::webseed;
use super::wire::MAX_REQUEST;
use crate::fetch::verify::{describe, Check, VerifyError};
use crate::fetch::{self, progress::Progress, FetchError, FetchOptions};
use crate::support::exit::Exit;
use crate::support::log::{mib, redact_url, Escaped};
use crate::support::values::Sha256Hex;
use reqwest::blocking::Client;
use reqwest::Url;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOOP: Duration = Duration::from_millis(100);
/// Before an address that failed or left is tried again.
const RETRY_PEER: Duration = Duration::from_secs(30);
/// Before a tracker that did not answer is asked again.
const TRACKER_RETRY: Duration = Duration::from_secs(15);
/// Peers asked of the tracker per announce.
const NUMWANT: u32 = 50;
/// While downloading, the first announces after `started` come this often, this many times: a
/// herd that starts together is still arriving at the tracker when the first nodes ask, and a
/// node that took a swarm of 64 for one of 5 would ask the mirrors for 12 times its share of
/// the pieces nobody has (and know 5 peers instead of 50). (More, while the count grows, cost
/// origin bytes at 256 nodes on two cores: 6.0 and 7.5 times the image against 2.7 to 4.1.)
const QUICK_ANNOUNCE: Duration = Duration::from_secs(1);
const QUICK_ANNOUNCES: u8 = 2;

/// What shapes a swarm download beyond the fetch options.
#[derive(Debug, Clone, Default)]
pub struct SwarmOptions {
    /// The port peers reach us on; 0: any free port.
    pub port: u16,
    /// How long to keep serving the complete file (zero: stop at once).
    pub seed: Duration,
    pub limits: Limits,
    /// The site's mirrors of the image, used as web seeds after the torrent's own.
    pub mirrors: Vec<Url>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmReport {
    pub bytes: u64,
    pub elapsed: Duration,
    pub from_peers: u64,
    /// Each web seed (redacted) and the bytes it delivered.
    pub from_web: Vec<(String, u64)>,
    pub uploaded: u64,
    pub dropped: u32,
    pub sha256: Sha256Hex,
    pub port: u16,
    /// What the whole file was checked against (`fetch::verify::describe` names them).
    pub verified: Vec<Check>,
}

impl SwarmReport {
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mut from = vec![format!("{} from peers", mib(self.from_peers))];
        for (u, n) in &self.from_web {
            from.push(format!("{} from {u}", mib(*n)));
        }
        format!(
            "fetched {} in {secs:.1} s ({:.1} MiB/s) from the swarm: {}; uploaded {}, {} peer{} dropped, sha256 {}; {}{}",
            mib(self.bytes),
            self.bytes as f64 / (1u64 << 20) as f64 / secs.max(1e-3),
            from.join(", "),
            mib(self.uploaded),
            self.dropped,
            if self.dropped == 1 { "" } else { "s" },
            self.sha256,
            describe(&self.verified),
            // Nothing pinned the image (a torrent over https): only the torrent vouched for it.
            if self.verified.is_empty() {
                " (each piece matched the torrent's SHA-1)"
            } else {
                ""
            }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("cannot use the torrent {url}")]
    Torrent {
        url: String,
        #[source]
        source: MetainfoError,
    },
    #[error("the torrent {url} came over plain http: rustlive uses it only when a pinned hash (--sha256, rd.rustlive.sha256), a sha256sums list or a signing key covers the image")]
    Unpinned { url: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for peers on port {port}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("nothing to fetch {name} from: the torrent names no HTTP tracker and no web seed, and no mirror is given")]
    NoSource { name: String },
    #[error("{0}")]
    Usage(&'static str),
    #[error("the file to seed holds {have} bytes, the torrent describes {want}")]
    SeedLength { have: u64, want: u64 },
    #[error("the deadline passed with {have} of {total} pieces")]
    Deadline { have: u32, total: u32 },
}

impl SwarmError {
    pub fn exit_code(&self) -> Exit {
        match self {
            SwarmError::Verify(_) | SwarmError::Unpinned { .. } => Exit::Verify,
            SwarmError::Fetch(e) => e.exit_code(),
            SwarmError::Listen { .. }
            | SwarmError::NoSource { .. }
            | SwarmError::Usage(_)
            | SwarmError::SeedLength { .. } => Exit::Usage,
            _ => Exit::Transfer,
        }
    }
}

/// The http(s) URL a torrent source names: `torrent://HOST[:PORT]/PATH` (as dracut's livenet
/// spells it) and `torrent+http://` are fetched over http, `torrent+https://` over https.
pub fn torrent_http_url(u: &Url) -> Option<Url> {
    let scheme = match u.scheme() {
        "torrent" | "torrent+http" => "http",
        "torrent+https" => "https",
        _ => return None,
    };
    let rest = u.as_str().split_once("://")?.1;
    Url::parse(&format!("{scheme}://{rest}")).ok()
}

/// A `.torrent` fetched and parsed: its bytes (what a seeder serves on), what it says, and the
/// image's URL beside it (the name sha256sums lines give and where `IMAGE.minisig` is looked for).
#[derive(Debug, Clone)]
pub struct Torrent {
    pub bytes: Vec<u8>,
    pub meta: Metainfo,
    pub image: Url,
}

/// Whether a hash or a signing key covers the image: what a `.torrent` over plain http needs
/// (the rule of plain-http registries).
fn pinned(fopts: &FetchOptions) -> bool {
    fopts.sha256.is_some() || fopts.sha256sums.is_some() || !fopts.keys.is_empty()
}

/// Fetches (bounded) and parses the `.torrent` at `torrent_url` (http or https); a plain-http
/// one is refused before anything is fetched unless `fopts` pins the image.
pub fn fetch_metainfo(torrent_url: &Url, fopts: &FetchOptions) -> Result<Torrent, SwarmError> {
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
        "torrent {shown}: {} ({}), {} pieces of {}, info-hash {}, {} tracker{}, {} web seed{}",
        Escaped(&meta.name),
        mib(meta.length),
        meta.piece_count(),
        mib(u64::from(meta.piece_length)),
        meta.info_hash,
        meta.trackers.len(),
        if meta.trackers.len() == 1 { "" } else { "s" },
        meta.web_seeds.len(),
        if meta.web_seeds.len() == 1 { "" } else { "s" },
    );
    // `Metainfo::parse` checked the name is a single file name.
    let image = torrent_url
        .join(&meta.name)
        .unwrap_or_else(|_| torrent_url.clone());
    Ok(Torrent {
        bytes: bytes.to_vec(),
        meta,
        image,
    })
}

/// Downloads the image a `.torrent` at `torrent_url` (http or https) describes into `dest`.
pub fn fetch_torrent(
    torrent_url: &Url,
    dest: &Path,
    opts: &SwarmOptions,
    fopts: &FetchOptions,
) -> Result<SwarmReport, SwarmError> {
    let t = fetch_metainfo(torrent_url, fopts)?;
    download(&t.meta, &t.image, dest, opts, fopts)
}

struct Tracker {
    url: String,
    next: Instant,
    started: bool,
    warned: bool,
    /// Answers so far (saturating): the first few come quickly ([`QUICK_ANNOUNCES`]).
    answers: u8,
}

/// Downloads `meta`'s file into `dest` (`image`: the name its checksums and signature go by).
pub fn download(
    meta: &Metainfo,
    image: &Url,
    dest: &Path,
    opts: &SwarmOptions,
    fopts: &FetchOptions,
) -> Result<SwarmReport, SwarmError> {
    let mut web: Vec<Url> = Vec::new();
    let seeds = meta
        .web_seeds
        .iter()
        .filter_map(|s| Url::parse(&metainfo::web_seed_file_url(s, &meta.name)).ok());
    for u in seeds.chain(opts.mirrors.iter().cloned()) {
        if !web.contains(&u) {
            web.push(u);
        }
    }
    if meta.trackers.is_empty() && web.is_empty() {
        return Err(SwarmError::NoSource {
            name: meta.name.clone(),
        });
    }
    let mut names = vec![image.clone()];
    names.extend(web.iter().cloned());
    let expected = fetch::expectations(&names, fopts)?;
    let client = fopts.client(fopts.insecure_tls, expected.pins())?;
    let part = fetch::part_path(dest);
    let werr = |source| SwarmError::Write {
        path: part.clone(),
        source,
    };
    let _ = std::fs::remove_file(&part);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(werr)?;
    file.set_len(meta.length).map_err(werr)?;
    let listener =
        TcpListener::bind(("0.0.0.0", opts.port)).map_err(|source| SwarmError::Listen {
            port: opts.port,
            source,
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(opts.port);
    let mut rng = crate::sys::random::Rng::from_entropy();
    let peer_id = new_peer_id(&mut rng);
    let state = new_state(
        Picker::new(meta.piece_count(), rng.next_u64()),
        web.len(),
        &opts.limits,
    );
    let shared = Arc::new(Shared {
        meta: meta.clone(),
        file,
        part: part.clone(),
        peer_id,
        port,
        limits: opts.limits.clone(),
        pex: !meta.private,
        deadline: fopts.deadline,
        stop: Default::default(),
        announced: Default::default(),
        uploaded: Default::default(),
        state: Mutex::new(state),
        wake: Default::default(),
        spare: Default::default(),
    });
    log::info!("listening for peers on port {port}");
    let result = run(
        &shared, listener, &web, &client, &expected, image, dest, opts,
    );
    shared.stop.store(true, Ordering::Relaxed);
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// A peer id in Azureus style (`-RL0010-` and twelve random alphanumerics).
fn new_peer_id(rng: &mut crate::sys::random::Rng) -> [u8; 20] {
    let mut peer_id = *b"-RL0010-000000000000";
    for b in peer_id.iter_mut().skip(8) {
        let alnum = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let i = usize::try_from(rng.up_to(35)).unwrap_or(0);
        *b = alnum.get(i).copied().unwrap_or(b'0');
    }
    peer_id
}

/// A session's starting state: its picker, a counter per web seed, the upload cap's bucket.
fn new_state(picker: Picker, webs: usize, limits: &Limits) -> State {
    State {
        picker: Some(picker),
        from_web: vec![0; webs],
        upload: limits
            .upload_rate
            .map(|r| Bucket::new(r, u64::from(MAX_REQUEST), Instant::now())),
        ..State::default()
    }
}

fn trackers_of(meta: &Metainfo, start: Instant) -> Vec<Tracker> {
    meta.trackers
        .iter()
        .map(|u| Tracker {
            url: u.clone(),
            next: start,
            started: false,
            warned: false,
            answers: 0,
        })
        .collect()
}

/// The listener made non-blocking and its accepting thread started.
fn start_accepting(shared: &Arc<Shared>, listener: TcpListener) -> Result<(), SwarmError> {
    listener
        .set_nonblocking(true)
        .map_err(|source| SwarmError::Listen {
            port: shared.port,
            source,
        })?;
    let shared = Arc::clone(shared);
    std::thread::spawn(move || accept_loop(&shared, &listener));
    Ok(())
}

/// The serving loop of a complete file, shared by a download's seeding time and `seed_file`:
/// peers accepted (by the accepting thread), trackers announced to when due (`left` 0), known
/// peers connected, until `end`.
fn serve(
    shared: &Arc<Shared>,
    client: &Client,
    trackers: &mut [Tracker],
    downloaded: u64,
    end: Option<Instant>,
    stop: Option<fn() -> bool>,
) {
    loop {
        if stop.is_some_and(|asked| asked()) {
            log::info!("seeding stopped early, as asked");
            break;
        }
        let now = Instant::now();
        let Some(rest) = end.and_then(|e| e.checked_duration_since(now)) else {
            break;
        };
        if rest.is_zero() {
            break;
        }
        announce_due(shared, client, trackers, now, downloaded, 0, None);
        connect_more(shared, now);
        rotate_slots(shared, now);
        std::thread::sleep(LOOP.min(rest));
    }
}

/// What a seed-only session (a file already complete and verified) needs beyond Limits.
#[derive(Debug, Clone, Default)]
pub struct SeedOptions {
    /// How long to serve; the function returns when it has passed (or when nobody can be served
    /// any more is NOT a reason: it serves for the whole duration).
    pub duration: Duration,
    pub limits: Limits,
    /// Asked every loop: `true` ends the serving early (the trackers still hear `stopped`).
    pub stop: Option<fn() -> bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeedReport {
    pub uploaded: u64,
    pub elapsed: Duration,
    pub peers_served: u32,
}

/// Serves the complete, verified `file` (length meta.length) to peers: accepts on `listener`,
/// announces to meta's trackers (started with left=0, then `stopped` at the end), connects to
/// peers the tracker/PEX gives, answers requests from `file` with pread, never writes to it.
/// `client` is used only for the trackers (the caller builds it: before any chroot, with the
/// TLS roots it needs).
pub fn seed_file(
    meta: &Metainfo,
    file: std::fs::File,
    listener: TcpListener,
    opts: &SeedOptions,
    client: &Client,
) -> Result<SeedReport, SwarmError> {
    let start = Instant::now();
    let path = PathBuf::from(&meta.name);
    let have = file
        .metadata()
        .map_err(|source| SwarmError::Write {
            path: path.clone(),
            source,
        })?
        .len();
    if have != meta.length {
        return Err(SwarmError::SeedLength {
            have,
            want: meta.length,
        });
    }
    let port = listener
        .local_addr()
        .map_err(|source| SwarmError::Listen { port: 0, source })?
        .port();
    let mut rng = crate::sys::random::Rng::from_entropy();
    let peer_id = new_peer_id(&mut rng);
    let state = new_state(
        Picker::full(meta.piece_count(), rng.next_u64()),
        0,
        &opts.limits,
    );
    let shared = Arc::new(Shared {
        meta: meta.clone(),
        file,
        part: path,
        peer_id,
        port,
        limits: opts.limits.clone(),
        pex: !meta.private,
        deadline: crate::support::deadline::Deadline::NONE,
        stop: Default::default(),
        announced: Default::default(),
        uploaded: Default::default(),
        state: Mutex::new(state),
        wake: Default::default(),
        spare: Default::default(),
    });
    start_accepting(&shared, listener)?;
    log::info!(
        "seeding {} ({}) for {} s on port {port}",
        Escaped(&meta.name),
        mib(meta.length),
        opts.duration.as_secs()
    );
    let mut trackers = trackers_of(meta, start);
    serve(
        &shared,
        client,
        &mut trackers,
        0,
        start.checked_add(opts.duration),
        opts.stop,
    );
    shared.stop.store(true, Ordering::Relaxed);
    announce_now(&shared, client, &mut trackers, Event::Stopped);
    let report = SeedReport {
        uploaded: shared.uploaded.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        peers_served: shared.lock().peers_served,
    };
    log::info!(
        "seeding done: uploaded {} to {} peer{}",
        mib(report.uploaded),
        report.peers_served,
        if report.peers_served == 1 { "" } else { "s" }
    );
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn run(
    shared: &Arc<Shared>,
    listener: TcpListener,
    web: &[Url],
    client: &Client,
    expected: &fetch::verify::Expected,
    image: &Url,
    dest: &Path,
    opts: &SwarmOptions,
) -> Result<SwarmReport, SwarmError> {
    let start = Instant::now();
    start_accepting(shared, listener)?;
    for (slot, u) in web.iter().enumerate() {
        for worker in 0..webseed::WORKERS {
            let id = shared.lock().new_source();
            let (s, u, c) = (Arc::clone(shared), u.clone(), client.clone());
            std::thread::spawn(move || webseed::run(s, id, (slot, worker), u, c, start));
        }
    }
    let mut trackers = trackers_of(&shared.meta, start);
    let mut progress = Progress::new(start, Duration::from_secs(5));
    let total = shared.meta.piece_count();
    // The whole file is hashed as `fetch` hashes it, in file order, while it arrives: each
    // piece once the pieces before it are in (read back from the page cache), so completion
    // needs no second pass when the pieces come in order (web seeds alone take them so).
    let what = format!("{} (from the swarm)", redact_url(image));
    let mut digests = expected.digests();
    let mut hashed = Hashed {
        next: 0,
        buf: Vec::new(),
    };
    loop {
        let now = Instant::now();
        let (missing, have_bytes) = {
            let mut st = shared.lock();
            if let Some(e) = st.fatal.take() {
                return Err(SwarmError::Write {
                    path: shared.part.clone(),
                    source: e,
                });
            }
            let missing = st.picker.as_ref().map_or(0, Picker::missing);
            let bytes = st
                .from_web
                .iter()
                .fold(st.from_peers, |a, b| a.saturating_add(*b));
            (missing, bytes)
        };
        hashed.advance(shared, &mut digests)?;
        if missing == 0 {
            break;
        }
        if shared.deadline.passed_at(now) {
            return Err(SwarmError::Deadline {
                have: total.saturating_sub(missing),
                total,
            });
        }
        let left = shared.meta.length.saturating_sub(have_bytes);
        announce_due(shared, client, &mut trackers, now, have_bytes, left, None);
        shared.announced.store(true, Ordering::Relaxed);
        connect_more(shared, now);
        rotate_slots(shared, now);
        if let Some(line) = progress.tick(now, have_bytes, Some(shared.meta.length)) {
            let peers = shared.lock().conns.len();
            log::info!("{line}, {peers} peer{}", if peers == 1 { "" } else { "s" });
        }
        let seen = shared.lock().completed.len();
        shared.wait_progress(LOOP, seen);
    }
    // Every piece verified: the rest of the whole file as `fetch` checks it.
    hashed.advance(shared, &mut digests)?;
    let sha256 = digests.finish(&what)?;
    let werr = |source| SwarmError::Write {
        path: dest.into(),
        source,
    };
    shared.file.sync_all().map_err(werr)?;
    std::fs::rename(&shared.part, dest).map_err(werr)?;
    let report = {
        let st = shared.lock();
        SwarmReport {
            bytes: shared.meta.length,
            elapsed: start.elapsed(),
            from_peers: st.from_peers,
            from_web: web
                .iter()
                .map(redact_url)
                .zip(st.from_web.iter().copied())
                .collect(),
            uploaded: shared.uploaded.load(Ordering::Relaxed),
            dropped: st.dropped,
            sha256,
            port: shared.port,
            verified: expected.checks.clone(),
        }
    };
    log::info!("{}", report.summary());
    let now = announce_now(shared, client, &mut trackers, Event::Completed);
    if !opts.seed.is_zero() {
        log::info!(
            "seeding {} for {} s on port {}",
            dest.display(),
            opts.seed.as_secs(),
            shared.port
        );
        serve(
            shared,
            client,
            &mut trackers,
            shared.meta.length,
            now.checked_add(opts.seed),
            None,
        );
        log::info!(
            "seeding done: uploaded {}",
            mib(shared.uploaded.load(Ordering::Relaxed))
        );
    }
    shared.stop.store(true, Ordering::Relaxed);
    announce_now(shared, client, &mut trackers, Event::Stopped);
    Ok(report)
}

/// The whole-file digest's progress: the pieces before `next` are hashed.
struct Hashed {
    next: u32,
    buf: Vec<u8>,
}

impl Hashed {
    /// Hashes every held piece from `next` on, up to the first one missing.
    fn advance(
        &mut self,
        shared: &Shared,
        digests: &mut fetch::verify::Digests<'_>,
    ) -> Result<(), SwarmError> {
        let rerr = |source| SwarmError::Write {
            path: shared.part.clone(),
            source,
        };
        loop {
            let held = shared
                .lock()
                .picker
                .as_ref()
                .is_some_and(|p| p.has(self.next));
            let Some((mut at, len)) = shared.meta.piece_span(self.next).filter(|_| held) else {
                return Ok(());
            };
            if self.buf.is_empty() {
                self.buf = vec![0u8; 1 << 20];
            }
            let end = at.saturating_add(u64::from(len));
            while at < end {
                let want = usize::try_from(end.saturating_sub(at))
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let chunk = self.buf.get_mut(..want).unwrap_or_default();
                shared.file.read_exact_at(chunk, at).map_err(rerr)?;
                digests.update(chunk);
                at = at.saturating_add(u64::try_from(want).unwrap_or(0));
            }
            self.next = self.next.saturating_add(1);
        }
    }
}

/// Accepts peers until the download stops, within the connection limit.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, addr)) => {
                let id = {
                    let mut st = shared.lock();
                    if st.conns.len() >= shared.limits.max_peers || st.banned.contains(&addr) {
                        continue;
                    }
                    let id = st.new_source();
                    st.conns.insert(id, addr);
                    id
                };
                if stream.set_nonblocking(false).is_err() {
                    shared.lock().conns.remove(&id);
                    continue;
                }
                let s = Arc::clone(shared);
                std::thread::spawn(move || peer::accepted(s, id, stream, addr));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The optimistic unchoke, when its time has come.
fn rotate_slots(shared: &Shared, now: Instant) {
    shared
        .lock()
        .chokes
        .rotate(now, shared.limits.upload_slots, ROTATE_EVERY);
}

/// Opens connections to known peers up to the limit.
fn connect_more(shared: &Arc<Shared>, now: Instant) {
    let picks: Vec<(u64, SocketAddr)> = {
        let mut st = shared.lock();
        let due = peers_to_dial(&st, shared.limits.max_peers, now);
        let mut out = Vec::new();
        for a in due {
            st.known.insert(a, Some(now));
            let id = st.new_source();
            st.conns.insert(id, a);
            out.push((id, a));
        }
        out
    };
    for (id, a) in picks {
        let s = Arc::clone(shared);
        std::thread::spawn(move || peer::connect(s, id, a));
    }
}

/// The known peers to dial now: not connected, not tried within `RETRY_PEER`, as many as
/// three quarters of `max_peers` leave room for: the last quarter is for peers that dial this
/// node. A herd's first wave dialled each other up to the limit, and nodes that came seconds
/// later (at 256 nodes, 50 took over 10 s to fetch the torrent) found every peer full, saw
/// nobody with a piece and asked the mirrors. None once this node has every piece: a seed
/// waits for the peers that still need pieces to dial it (they know it from the trackers and
/// peer exchange).
/// A seed that dialled every address it learned met mostly other seeds: in a herd of 256,
/// 41,000 connections opened only to find both sides complete, about a tenth of the herd's CPU.
fn peers_to_dial(st: &State, max_peers: usize, now: Instant) -> Vec<SocketAddr> {
    if st.picker.as_ref().is_some_and(Picker::is_complete) {
        return Vec::new();
    }
    let room = max_peers
        .saturating_sub(max_peers / 4)
        .saturating_sub(st.conns.len());
    let connected: HashSet<&SocketAddr> = st.conns.values().collect();
    st.known
        .iter()
        .filter(|(a, last)| {
            !connected.contains(a)
                && last.is_none_or(|t| now.saturating_duration_since(t) >= RETRY_PEER)
        })
        .map(|(a, _)| *a)
        .take(room)
        .collect()
}

#[allow(clippy::too_many_arguments)]
/// Tells every tracker `event` at once, whatever its interval (completed, stopped: the events a
/// tracker must hear when they happen, with the whole file held). Returns the time it used.
fn announce_now(
    shared: &Shared,
    client: &Client,
    trackers: &mut [Tracker],
    event: Event,
) -> Instant {
    let now = Instant::now();
    for t in trackers.iter_mut() {
        t.next = now;
    }
    announce_due(
        shared,
        client,
        trackers,
        now,
        shared.meta.length,
        0,
        Some(event),
    );
    now
}

fn announce_due(
    shared: &Shared,
    client: &Client,
    trackers: &mut [Tracker],
    now: Instant,
    downloaded: u64,
    left: u64,
    event: Option<Event>,
) {
    for t in trackers.iter_mut().filter(|t| t.next <= now) {
        let ev = match event {
            Some(e) => Some(e),
            None if !t.started => Some(Event::Started),
            None => None,
        };
        let a = Announce {
            info_hash: shared.meta.info_hash,
            peer_id: shared.peer_id,
            port: shared.port,
            uploaded: shared.uploaded.load(Ordering::Relaxed),
            downloaded,
            left,
            event: ev,
            numwant: if ev == Some(Event::Stopped) {
                0
            } else {
                NUMWANT
            },
        };
        let shown = Url::parse(&t.url)
            .map(|u| redact_url(&u))
            .unwrap_or_default();
        match announce(client, &t.url, &a) {
            Ok(r) => {
                t.started = true;
                t.warned = false;
                let quick = left > 0 && t.answers < QUICK_ANNOUNCES && event.is_none();
                t.answers = t.answers.saturating_add(1);
                let every = if quick { QUICK_ANNOUNCE } else { r.interval };
                t.next = now.checked_add(every).unwrap_or(now);
                log::debug!(
                    "tracker {shown}: {} peers, next in {} s",
                    r.peers.len(),
                    r.interval.as_secs()
                );
                let mut st = shared.lock();
                st.learn(&r.peers, None);
                st.tracker_swarm = st.tracker_swarm.max(r.swarm.unwrap_or(0));
                st.tracker_seeds = r.seeds;
            }
            Err(why) => {
                t.next = now.checked_add(TRACKER_RETRY).unwrap_or(now);
                if !t.warned && ev != Some(Event::Stopped) {
                    log::warn!("tracker {shown}: {why}");
                    t.warned = true;
                }
            }
        }
    }
}

fn announce(client: &Client, base: &str, a: &Announce) -> Result<tracker::Response, String> {
    let url = Url::parse(&tracker::announce_url(base, a)).map_err(|e| e.to_string())?;
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        // Without the URL: its query may hold a private tracker's passkey.
        .map_err(|e| crate::support::exit::report(&e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    resp.take(u64::try_from(tracker::MAX_RESPONSE).unwrap_or(u64::MAX))
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    tracker::parse_response(&body).map_err(|e| crate::support::exit::report(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_dials_nobody_and_a_leecher_dials_within_its_room() {
        let now = Instant::now();
        let mut st = State {
            picker: Some(Picker::new(4, 1)),
            ..State::default()
        };
        let a: Vec<SocketAddr> = (1..=5)
            .map(|i| format!("10.0.0.{i}:6881").parse().unwrap())
            .collect();
        for x in &a {
            st.known.insert(*x, None);
        }
        // Connected to one, tried another just now: three are due, two fit.
        st.conns.insert(1, a[0]);
        st.known.insert(a[1], Some(now));
        let due = peers_to_dial(&st, 3, now);
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|d| !a[..2].contains(d)));
        assert_eq!(peers_to_dial(&st, 40, now + RETRY_PEER).len(), 4);
        // A quarter of the places is left to peers that dial us.
        assert_eq!(peers_to_dial(&st, 4, now + RETRY_PEER).len(), 2);
        st.picker = Some(Picker::full(4, 1));
        assert!(peers_to_dial(&st, 40, now).is_empty());
    }

    #[test]
    fn torrent_urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            torrent_http_url(&u("torrent://boot:8080/images/a.torrent")),
            Some(u("http://boot:8080/images/a.torrent"))
        );
        assert_eq!(
            torrent_http_url(&u("torrent+https://boot/a.torrent")),
            Some(u("https://boot/a.torrent"))
        );
        assert_eq!(torrent_http_url(&u("http://boot/a.torrent")), None);
    }

    #[test]
    fn summary_names_every_source() {
        let r = SwarmReport {
            bytes: 4 << 20,
            elapsed: Duration::from_secs(2),
            from_peers: 3 << 20,
            from_web: vec![("http://w/img".into(), 1 << 20)],
            uploaded: 0,
            dropped: 1,
            sha256: crate::fetch::verify::sha256(b"abc"),
            port: 6881,
            verified: vec![Check::Pinned],
        };
        let s = r.summary();
        assert!(s.ends_with("; verified by the pinned sha256"), "{s}");
        let unpinned = SwarmReport {
            verified: Vec::new(),
            ..r.clone()
        }
        .summary();
        assert!(
            unpinned.ends_with("not verified: no hash or signature configured (each piece matched the torrent's SHA-1)"),
            "{unpinned}"
        );
        assert!(
            s.contains("3.0 MiB from peers, 1.0 MiB from http://w/img"),
            "{s}"
        );
        assert!(s.contains("1 peer dropped"), "{s}");
    }
}
