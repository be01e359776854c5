//! The fetch engine: the root image from one of several mirrors, with retries, resume and
//! verification on the same pass, into RAM.
//!
//! [`fetch_to_file`] is the engine; [`stage_image`] is what `rustlive boot` calls (network
//! wait, memory check, image tmpfs, download); [`fetch_bytes`] is the bounded in-memory variant
//! for small files (checksum lists, signatures, the secrets bundle).
//!
//! Layering inside `fetch`: `mod.rs` (options, errors, sinks, the attempt loop) uses
//! `planner` (the loop's decisions: mirrors, pieces, retries, backoff, when to give up) and
//! `transfer` (one attempt), `client`, `progress`; `transfer` drives `response` (is the answer
//! the file's continuation), `reader` (the reader thread under the `watchdog`) and `file`
//! (`file://` copies), which share `attempt` (errors, the sink); `planner` uses `pieces` and
//! `retry`. None of them uses this file.
//!
//! Everything here handles bytes and headers from the network: no unwrap, expect, panic,
//! indexing or unchecked arithmetic outside tests (checked by the crate-wide lints in `lib.rs`).

pub mod attempt;
pub mod auth;
pub mod client;
pub mod file;
pub mod mirrors;
pub mod pieces;
pub mod planner;
pub mod progress;
pub mod reader;
pub mod redirect;
pub mod response;
pub mod retry;
pub mod transfer;
pub mod verify;
pub mod watchdog;

use crate::root::ram::{self, MemInfo, RamError, Tmpfs};
use crate::support::deadline::Deadline;
use crate::support::exit::Exit;
use crate::support::log::{mib, redact_url};
use crate::support::paths::Paths;
use crate::support::values::Sha256Hex;
use attempt::{AttemptError, Failure, Sink};
pub use auth::RequestAuth;
pub use client::ClientIdentity;
use planner::{Done, Planner, Step, Stop};
use progress::Progress;
use reqwest::blocking::Client;
use reqwest::Url;
use retry::{Backoff, Rng};
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use verify::{Check, Expected, SignatureCheck, VerifyError};
use zeroize::Zeroizing;

/// Largest checksum list or signature rustlive downloads.
const SMALL_FILE_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("gave up on {url} after {}", attempts_shown(.attempts))]
    GaveUp {
        url: String,
        attempts: u32,
        #[source]
        last: AttemptError,
    },
    #[error("the deadline passed while fetching {url} ({})", attempts_shown(.attempts))]
    Deadline {
        url: String,
        attempts: u32,
        #[source]
        last: AttemptError,
    },
    #[error("cannot fetch {url}")]
    Refused {
        url: String,
        #[source]
        source: AttemptError,
    },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Ram(#[from] RamError),
    #[error(transparent)]
    Network(#[from] crate::net::NoRoute),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} is larger than the {max} bytes allowed")]
    TooLarge { url: String, max: usize },
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("no image URL to fetch")]
    NoUrl,
    #[error("{url} announced {got} bytes where {expected} were expected")]
    SizeMismatch {
        url: String,
        expected: u64,
        got: u64,
    },
}

/// A hash the bytes must have that comes with the source itself (an OCI layer digest and
/// size), checked while streaming like `rd.rustlive.sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentDigest {
    pub sha256: Sha256Hex,
    pub len: u64,
    /// Whether it counts as a pin: the manifest it came from was itself pinned by digest.
    /// A tag's manifest is only as trustworthy as the connection that delivered it.
    pub pins: bool,
}

/// `1 attempt`, `2 attempts`.
fn attempts_shown(n: &u32) -> String {
    format!("{n} attempt{}", if *n == 1 { "" } else { "s" })
}

impl FetchError {
    /// 4 when the bytes (or a required signature) failed verification, 2 for unusable local
    /// configuration, 3 for everything about the transfer.
    pub fn exit_code(&self) -> Exit {
        match self {
            FetchError::Verify(_) | FetchError::SizeMismatch { .. } => Exit::Verify,
            // More bytes than the layer's descriptor states: corrupt, like a wrong length.
            FetchError::Refused {
                source: AttemptError::TooLong { .. },
                ..
            } => Exit::Verify,
            FetchError::Client(e) if e.is_local_configuration() => Exit::Usage,
            FetchError::NoUrl => Exit::Usage,
            _ => Exit::Transfer,
        }
    }
}

/// Everything that shapes a download.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Retries after the first attempt; `None`: until the deadline.
    pub retries: Option<u32>,
    /// Overall deadline shared by every stage that uses these options.
    pub deadline: Deadline,
    /// Abort and resume an attempt that received nothing for this long; also the window of
    /// the minimum-progress rule.
    pub stall: Duration,
    /// Bytes per second an attempt must average over each stall window, so a server that
    /// trickles bytes to keep the stall timer quiet is dropped and retried (0: no minimum).
    pub min_rate: u64,
    pub connect_timeout: Duration,
    /// PEM CA bundle; `None` uses [`client::DEFAULT_CA_BUNDLES`].
    pub ca: Option<PathBuf>,
    /// Skip certificate verification (the image and its signature only, never checksums).
    pub insecure_tls: bool,
    pub identity: Option<ClientIdentity>,
    pub proxy: Option<Url>,
    pub sha256: Option<Sha256Hex>,
    pub sha256sums: Option<Url>,
    /// Explicit signature URL; with keys and no URL, `IMAGEURL.minisig` of each mirror.
    pub sig: Option<Url>,
    /// Trusted keys; when any is present a valid signature is required.
    pub keys: Vec<verify::TrustedKey>,
    /// Refuse content no hash or signature covers.
    pub verify_required: bool,
    pub max_redirects: usize,
    pub backoff: Backoff,
    pub progress_interval: Duration,
    /// Headers and 401 handling for every request (OCI registries).
    pub auth: Option<std::sync::Arc<dyn RequestAuth>>,
    /// The digest and length the source itself gives (OCI layers).
    pub content: Option<ContentDigest>,
    /// The node identity to spread the image's pieces over the mirrors for (`pieces`);
    /// `None`: one mirror at a time, in the listed order.
    pub spread: Option<String>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            retries: None,
            deadline: Deadline::NONE,
            stall: Duration::from_secs(30),
            min_rate: watchdog::MIN_RATE,
            connect_timeout: Duration::from_secs(15),
            ca: None,
            insecure_tls: false,
            identity: None,
            proxy: None,
            sha256: None,
            sha256sums: None,
            sig: None,
            keys: Vec::new(),
            verify_required: false,
            max_redirects: 10,
            backoff: Backoff::default(),
            progress_interval: progress::INTERVAL,
            auth: None,
            content: None,
            spread: None,
        }
    }
}

impl FetchOptions {
    /// The same options bound by `deadline` (the one a boot owns) instead of their own.
    pub fn with_deadline(self, deadline: Deadline) -> FetchOptions {
        FetchOptions { deadline, ..self }
    }

    pub(crate) fn client(&self, insecure: bool, pinned: bool) -> Result<Client, FetchError> {
        Ok(client::build(&client::Settings {
            ca: self.ca.as_deref(),
            insecure_tls: insecure,
            identity: self.identity.as_ref(),
            proxy: self.proxy.as_ref(),
            connect_timeout: self.connect_timeout,
            stall: self.stall,
            max_redirects: self.max_redirects,
            allow_downgrade: pinned,
        })?)
    }
}

/// What a download took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub bytes: u64,
    pub elapsed: Duration,
    pub attempts: u32,
    pub resumes: u32,
    pub restarts: u32,
    pub sha256: Sha256Hex,
    /// The mirror that delivered the bytes (redacted).
    pub url: String,
    /// What the bytes were checked against ([`verify::describe`]).
    pub verified: Vec<Check>,
}

impl FetchReport {
    /// The summary line: bytes, seconds, MiB/s, attempts, resumes, sha256, and what verified
    /// the file (or that nothing did).
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "fetched {} in {secs:.1} s ({:.1} MiB/s), {} attempt{}, {} resume{}, sha256 {}; {}",
            mib(self.bytes),
            self.bytes as f64 / (1u64 << 20) as f64 / secs.max(1e-3),
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.resumes,
            if self.resumes == 1 { "" } else { "s" },
            self.sha256,
            verify::describe(&self.verified)
        )
    }
}

/// Downloads from `urls` (mirrors, rotated on failure) into `dest`, verifying on the way.
/// Bytes land in `dest.part`, renamed to `dest` only once every hash and signature matched;
/// on any failure the partial file is removed.
pub fn fetch_to_file(
    urls: &[Url],
    dest: &Path,
    opts: &FetchOptions,
) -> Result<FetchReport, FetchError> {
    download_to_file(urls, dest, opts, &mut |_| Ok(()))
}

/// [`fetch_to_file`] with a hook run once, before the first byte is written, with the image
/// length when the server announced it (the memory check and tmpfs mount of [`stage_image`]).
///
/// A copy that does not verify is fetched again, whole, from one mirror at a time until one
/// verifies: after pieces from several mirrors (one of which serves other bytes of the same
/// length, and nothing tells which) from the node's first mirror; after a copy from one
/// mirror, from the next in the node's order, never from that one again. So neither a split
/// nor a stale mirror fails a boot another mirror would have passed; the download fails when
/// every mirror's copy failed verification or the deadline passed.
fn download_to_file(
    urls: &[Url],
    dest: &Path,
    opts: &FetchOptions,
    prepare: &mut dyn FnMut(Option<u64>) -> Result<(), FetchError>,
) -> Result<FetchReport, FetchError> {
    let first = urls.first().ok_or(FetchError::NoUrl)?;
    let expected = expectations(urls, opts)?;
    // (An OCI layer digest makes `pins()` true: the https→http redirect it allows is safe,
    // the bytes are checked against the digest either way.)
    let client = opts.client(opts.insecure_tls, expected.pins())?;
    if opts.insecure_tls && urls.iter().any(|u| u.scheme() == "https") {
        log::warn!(
            "TLS certificate verification is OFF for the image (rd.noverifyssl); {}",
            if expected.pins() {
                "the hash or signature still applies"
            } else {
                "NOTHING protects it from tampering"
            }
        );
    }
    let part = part_path(dest);
    // Whatever is there from an earlier run is not ours to resume from.
    let _ = std::fs::remove_file(&part);
    // A source that states the length (an OCI descriptor) is held to it before the first
    // byte of every copy, and the tmpfs is sized for it when the server does not say. The
    // hook runs for the first copy only: a later one lands where the first was to.
    let content = opts.content;
    let shown = redact_url(first);
    let mut prepare = Some(prepare);
    let mut checked = |total: Option<u64>| -> Result<(), FetchError> {
        let len = match (content, total) {
            (Some(c), Some(t)) if t != c.len => {
                return Err(FetchError::SizeMismatch {
                    url: shown.clone(),
                    expected: c.len,
                    got: t,
                })
            }
            (Some(c), None) => Some(c.len),
            _ => total,
        };
        prepare.take().map_or(Ok(()), |p| p(len))
    };
    let mut progress = Progress::new(Instant::now(), opts.progress_interval);
    // A hash or signature checks the assembled bytes; without one, only mirrors with the
    // same validators may share the pieces.
    let plan = opts
        .spread
        .as_deref()
        .and_then(|node| pieces::Plan::new(urls, node, !expected.pins()));
    // `None` for the first copy; then the mirrors whose copies did not verify, and each
    // copy whole from one mirror.
    let mut refused: Option<Vec<usize>> = None;
    let (mut attempts, mut thrown_away) = (0u32, 0u32);
    loop {
        let planner = match &refused {
            None => new_planner(urls, opts, plan.as_ref()),
            Some(r) => new_planner(urls, opts, None).whole_copies(r),
        };
        let mut sink = FileSink {
            path: part.clone(),
            file: None,
            digests: expected.digests(),
            prepare: Some(&mut checked),
        };
        let outcome = download(urls, &client, opts, &mut sink, Some(&mut progress), planner);
        let FileSink { file, digests, .. } = sink;
        let done = match outcome {
            Ok(done) => done,
            Err(e) => return Err(discard(&part, e)),
        };
        attempts = attempts.saturating_add(done.attempts);
        // The error names the mirror the copy came from, when it came from one.
        let what = match done.from {
            Some(m) => urls.get(m).map(redact_url).unwrap_or_default(),
            None => format!("{shown} (bytes from several mirrors)"),
        };
        let verified = finish(file, digests, &part, &what).and_then(|sha256| {
            std::fs::rename(&part, dest).map_err(|source| FetchError::Write {
                path: dest.into(),
                source,
            })?;
            Ok(sha256)
        });
        let err = match verified {
            Ok(sha256) => {
                let r = FetchReport {
                    bytes: done.state.have,
                    elapsed: progress.elapsed(Instant::now()),
                    attempts,
                    resumes: done.state.resumes,
                    // A copy that did not verify was thrown away: a restart.
                    restarts: done.state.restarts.saturating_add(thrown_away),
                    sha256,
                    url: done.url,
                    verified: expected.checks.clone(),
                };
                log::info!("{}", r.summary());
                return Ok(r);
            }
            Err(e) => discard(&part, e),
        };
        let e = match err {
            FetchError::Verify(
                e @ (VerifyError::Sha256Mismatch { .. } | VerifyError::BadSignature { .. }),
            ) if urls.len() > 1 => e,
            e => return Err(e),
        };
        thrown_away = thrown_away.saturating_add(1);
        let spread = refused.is_none() && plan.is_some();
        let list = refused.get_or_insert_with(Vec::new);
        if next_copy(urls, list, done.from, spread, &e).is_none() {
            return Err(e.into());
        }
    }
}

/// After a copy that did not verify (`e`), from mirror `from` or from several (pieces when
/// `spread`, else a resume on another mirror): `from` joins the `refused` mirrors and the next
/// copy comes from the first other one in the node's order, which is logged with the mirror
/// whose copy did not verify. `None`: every mirror's copy failed verification.
fn next_copy(
    urls: &[Url],
    refused: &mut Vec<usize>,
    from: Option<usize>,
    spread: bool,
    e: &VerifyError,
) -> Option<usize> {
    let next = planner::next_whole_copy(refused, from, urls.len());
    let url = |m: usize| urls.get(m).map(redact_url).unwrap_or_default();
    let why = crate::support::exit::report(e);
    match (from, next) {
        (Some(m), Some(n)) => log::warn!(
            "the copy from {} does not verify ({why}); fetching it whole from {}",
            url(m),
            url(n)
        ),
        (Some(m), None) => log::warn!(
            "the copy from {} does not verify either: no mirror's whole file verifies",
            url(m)
        ),
        (None, Some(n)) => log::warn!(
            "{why}; the image came {} from several mirrors, one of which serves other bytes: fetching it whole from {}",
            if spread { "in pieces" } else { "resumed" },
            url(n)
        ),
        (None, None) => {}
    }
    next
}

/// The partial file removed: nothing is left of a download that failed.
fn discard(part: &Path, e: FetchError) -> FetchError {
    let _ = std::fs::remove_file(part);
    e
}

/// A complete copy's hashes and signature checked (`what`: where it came from, for the error),
/// the file made durable first: on tmpfs this is free, on a disk it is the point.
fn finish(
    file: Option<File>,
    digests: verify::Digests<'_>,
    part: &Path,
    what: &str,
) -> Result<Sha256Hex, FetchError> {
    let file = file.ok_or_else(|| FetchError::Write {
        path: part.into(),
        source: std::io::Error::other("no response body"),
    })?;
    file.sync_all().map_err(|source| FetchError::Write {
        path: part.into(),
        source,
    })?;
    Ok(digests.finish(what)?)
}

/// A verified image in its own tmpfs; the tmpfs goes away when this is dropped.
#[derive(Debug)]
pub struct StagedImage {
    pub path: PathBuf,
    pub report: FetchReport,
    pub tmpfs: Option<Tmpfs>,
}

/// The boot stage: fetch and verify the image into a tmpfs of its own at
/// `/run/rustlive/image` sized for it, refusing early when RAM minus `minmem` cannot hold it
/// (`/proc/meminfo` read below `paths`). The network is already up (boot waited for it); an
/// `oci://` source has been resolved to its root layer's blobs (`oci::pull::prepare`).
pub fn stage_image(
    urls: &[Url],
    opts: &FetchOptions,
    minmem: u64,
    paths: &Paths,
) -> Result<StagedImage, FetchError> {
    let dir = image_dir(paths);
    let first = urls.first().ok_or(FetchError::NoUrl)?;
    let name = file_name(first).unwrap_or_else(|| IMAGE_NAME.into());
    let mut tmpfs = None;
    let report = download_to_file(urls, &dir.join(&name), opts, &mut |len| {
        tmpfs = Some(image_tmpfs(len, minmem, paths)?);
        Ok(())
    })?;
    Ok(StagedImage {
        path: dir.join(name),
        report,
        tmpfs,
    })
}

/// The image's name in its tmpfs when its URL names none.
pub const IMAGE_NAME: &str = "root.img";

/// Where the image's tmpfs is mounted: `/run/rustlive/image`.
pub fn image_dir(paths: &Paths) -> PathBuf {
    paths.run_dir().join("image")
}

/// Mounts the image's tmpfs on [`image_dir`], sized for an image of `len` bytes (when known),
/// refusing when RAM minus `minmem` cannot hold it (`/proc/meminfo` read below `paths`): the
/// memory check every source of the image shares (mirrors, registries, the swarm).
pub fn image_tmpfs(len: Option<u64>, minmem: u64, paths: &Paths) -> Result<Tmpfs, FetchError> {
    let dir = image_dir(paths);
    let mem = MemInfo::read(&paths.join(ram::PROC_MEMINFO))?;
    let size = ram::plan(len, mem, minmem)?;
    log::info!(
        "image {}; {} of RAM available, {} reserved; tmpfs of {} on {}",
        len.map_or("of unknown size".into(), mib),
        mib(mem.available),
        mib(minmem),
        mib(size),
        dir.display()
    );
    Ok(Tmpfs::mount(&dir, size)?)
}

/// Downloads `url` into memory, at most `max_len` bytes, with the retry policy and TLS
/// settings of `opts` (its `sha256`, when set, must match). For small files only: the buffer
/// is allocated once at `max_len` and zeroed on drop, so a secrets bundle leaves no stray copy.
pub fn fetch_bytes(
    url: &Url,
    opts: &FetchOptions,
    max_len: usize,
) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let expected = Expected {
        sha256: opts.sha256.into_iter().collect(),
        ..Expected::default()
    };
    let bytes = fetch_small(std::slice::from_ref(url), opts, opts.insecure_tls, max_len)?;
    let mut d = expected.digests();
    d.update(&bytes);
    d.finish(&redact_url(url))?;
    Ok(bytes)
}

/// Bytes reserved up front by `fetch_small`.
const SMALL_RESERVE: usize = 1 << 20;

pub(crate) fn fetch_small(
    urls: &[Url],
    opts: &FetchOptions,
    insecure: bool,
    max_len: usize,
) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let client = opts.client(insecure, false)?;
    let first = urls.first().ok_or(FetchError::NoUrl)?;
    let mut sink = MemSink {
        // Reserved up front so a secret never leaves an unzeroed copy behind when the vector
        // grows; but only up to 1 MiB (secrets are far smaller): Zeroizing zeroes the whole
        // capacity on drop, so a 32 MiB bound (a .torrent's) would touch 32 MiB of memory.
        buf: Zeroizing::new(Vec::with_capacity(max_len.min(SMALL_RESERVE))),
        max: max_len,
        url: redact_url(first),
    };
    download(
        urls,
        &client,
        opts,
        &mut sink,
        None,
        new_planner(urls, opts, None),
    )?;
    Ok(sink.buf)
}

/// Resolves what the image must match: the pinned hash, the checksum list's line, the
/// signature (required when keys are installed). Also what a swarm download (`swarm`) checks
/// its assembled file against.
pub fn expectations(urls: &[Url], opts: &FetchOptions) -> Result<Expected, FetchError> {
    let mut exp = Expected::default();
    if let Some(h) = opts.sha256 {
        exp.sha256.push(h);
        exp.checks.push(Check::Pinned);
    }
    if let Some(u) = &opts.sha256sums {
        let name = urls.first().and_then(file_name).unwrap_or_default();
        // Checksums are fetched with certificate checks even under rd.noverifyssl: they are
        // what makes the image trustworthy.
        let text = fetch_small(std::slice::from_ref(u), opts, false, SMALL_FILE_MAX)?;
        let h = verify::parse_sha256sums(&String::from_utf8_lossy(&text), &name, &redact_url(u))?;
        exp.sha256.push(h);
        exp.checks.push(Check::Sums { url: redact_url(u) });
    }
    if !opts.keys.is_empty() {
        let sig_urls: Vec<Url> = match &opts.sig {
            Some(u) => vec![u.clone()],
            None => urls.iter().map(minisig_url).collect(),
        };
        let shown = sig_urls.first().map(redact_url).unwrap_or_default();
        // The signature authenticates itself, so rd.noverifyssl may apply to it too.
        let text = match fetch_small(&sig_urls, opts, opts.insecure_tls, SMALL_FILE_MAX) {
            Ok(t) => t,
            Err(e @ FetchError::Refused { .. }) => {
                return Err(VerifyError::SignatureMissing {
                    url: shown,
                    source: Box::new(e),
                }
                .into())
            }
            Err(e) => return Err(e),
        };
        let sig = verify::parse_signature(&String::from_utf8_lossy(&text), &shown)?;
        let check = SignatureCheck::new(&opts.keys, sig, &shown)?;
        exp.checks.push(Check::Signature {
            key_id: check.key_id.clone(),
            key_file: check.key_file.clone(),
        });
        exp.signature = Some(check);
    } else if let Some(u) = &opts.sig {
        log::warn!(
            "a signature URL ({}) is given but no trusted key is installed; it cannot be checked",
            redact_url(u)
        );
    }
    // An OCI layer digest is always checked, but pins the image only when the manifest
    // naming it was pinned: a tag is only as trustworthy as the registry connection.
    let pinned = exp.pins() || opts.content.is_some_and(|c| c.pins);
    if let Some(c) = opts.content {
        exp.sha256.push(c.sha256);
        exp.checks.push(Check::Layer { pinned: c.pins });
    }
    if !pinned {
        if opts.verify_required {
            return Err(VerifyError::Unverifiable.into());
        }
        log::warn!(
            "the image is NOT verified: no rd.rustlive.sha256, sha256sums or signing key covers it"
        );
    }
    Ok(exp)
}

/// The last segment of the URL's path, percent-decoded (`my%20img` is `my img`): the name the
/// image is stored under, and the one a sha256sums line must name. `None` when it is empty,
/// `.`/`..`, not UTF-8, or decodes to something that is not a single file name (`%2F`, NUL).
pub fn file_name(u: &Url) -> Option<String> {
    let raw = u.path_segments()?.next_back()?;
    let name = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']);
    (!bad).then_some(name)
}

/// `IMAGEURL.minisig`.
pub fn minisig_url(u: &Url) -> Url {
    let mut s = u.clone();
    s.set_path(&format!("{}.minisig", u.path()));
    s
}

/// `DEST.part`, where the bytes land until they verify.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// A planner for a download from `urls` under the retry rules of `opts`, its pieces spread
/// with a `plan`.
fn new_planner(urls: &[Url], opts: &FetchOptions, plan: Option<&pieces::Plan>) -> Planner {
    let policy = planner::Policy {
        retries: opts.retries,
        backoff: opts.backoff,
        deadline: opts.deadline,
    };
    Planner::new(urls, plan, policy, Rng::from_entropy())
}

/// The attempt loop: performs what the `planner` decides (an attempt, from one mirror or one
/// piece spread over several; a backoff under the deadline; the end) until the file is
/// complete or it gives up.
fn download(
    urls: &[Url],
    client: &Client,
    opts: &FetchOptions,
    sink: &mut dyn Sink<Error = FetchError>,
    mut progress: Option<&mut Progress>,
    mut planner: Planner,
) -> Result<Done, FetchError> {
    let limits = watchdog::Limits {
        deadline: opts.deadline,
        stall: opts.stall,
        min_rate: opts.min_rate,
    };
    // The next piece's request, sent while this one drains.
    let mut ahead: Option<transfer::Ahead> = None;
    loop {
        let attempt = match planner.next(Instant::now()) {
            Step::Attempt(a) => a,
            // A backoff, already cut to what is left of the deadline.
            Step::Wait(d) => {
                std::thread::sleep(d);
                continue;
            }
            Step::Done(done) => return Ok(done),
            Step::Stop(stop) => return Err(stop.into()),
        };
        let url = urls.get(attempt.mirror).ok_or(FetchError::NoUrl)?;
        let sent = ahead.take();
        // Called once this piece's last bytes are on the way; if the piece fails after all,
        // the request sent ahead is dropped unused.
        let mut send_next = || {
            ahead = attempt.then.as_ref().and_then(|n| {
                let url = urls.get(n.mirror)?;
                let auth = opts.auth.as_deref();
                transfer::send_ahead(client, url, n.from, n.piece, &n.validators, auth)
            });
        };
        let mut ctx = transfer::Ctx {
            limits,
            progress: progress.as_deref_mut(),
            auth: opts.auth.as_deref(),
            piece: attempt.piece,
            limit: opts.content.map(|c| c.len),
            ahead: sent,
            received_all: attempt
                .then
                .is_some()
                .then_some(&mut send_next as &mut dyn FnMut()),
        };
        let result = transfer::run(client, url, planner.state_mut(), sink, &mut ctx);
        // Ends the borrow of `ahead` that `send_next` holds (Ctx has drop glue).
        drop(ctx);
        match result {
            Ok(()) => planner.record(&attempt, Ok(()), Instant::now()),
            Err(Failure::Attempt(e)) => planner.record(&attempt, Err(e), Instant::now()),
            Err(Failure::Sink(e)) => return Err(e),
        }
    }
}

impl From<Stop> for FetchError {
    fn from(stop: Stop) -> FetchError {
        match stop {
            Stop::NoMirror => FetchError::NoUrl,
            Stop::Deadline {
                url,
                attempts,
                last,
            } => FetchError::Deadline {
                url,
                attempts,
                last,
            },
            Stop::GaveUp {
                url,
                attempts,
                last,
            } => FetchError::GaveUp {
                url,
                attempts,
                last,
            },
            Stop::Refused { url, source } => FetchError::Refused { url, source },
        }
    }
}

/// The image's `.part` file and the running hashes.
struct FileSink<'e, 'p> {
    path: PathBuf,
    file: Option<File>,
    digests: verify::Digests<'e>,
    prepare: Option<&'p mut dyn FnMut(Option<u64>) -> Result<(), FetchError>>,
}

impl Sink for FileSink<'_, '_> {
    type Error = FetchError;

    fn begin(&mut self, offset: u64, total: Option<u64>) -> Result<(), FetchError> {
        if let Some(p) = self.prepare.take() {
            p(total)?;
        }
        let werr = |source| FetchError::Write {
            path: self.path.clone(),
            source,
        };
        let f = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(File::create(&self.path).map_err(werr)?),
        };
        if offset == 0 {
            f.set_len(0).map_err(werr)?;
            f.rewind().map_err(werr)?;
            self.digests.reset();
        } else {
            debug_assert_eq!(f.stream_position().ok(), Some(offset));
        }
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), FetchError> {
        let werr = |source| FetchError::Write {
            path: self.path.clone(),
            source,
        };
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| werr(std::io::Error::other("written before begin()")))?;
        self.digests.update(buf);
        f.write_all(buf).map_err(werr)
    }
}

struct MemSink {
    /// Never grows past its initial capacity (no reallocation copies).
    buf: Zeroizing<Vec<u8>>,
    max: usize,
    url: String,
}

impl MemSink {
    fn too_large(&self) -> FetchError {
        FetchError::TooLarge {
            url: self.url.clone(),
            max: self.max,
        }
    }
}

impl Sink for MemSink {
    type Error = FetchError;

    fn begin(&mut self, offset: u64, total: Option<u64>) -> Result<(), FetchError> {
        // Refused before the first byte when the length is announced.
        if total.is_some_and(|t| usize::try_from(t).map_or(true, |t| t > self.max)) {
            return Err(self.too_large());
        }
        let keep = usize::try_from(offset).map_err(|_| self.too_large())?;
        self.buf.truncate(keep);
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), FetchError> {
        if self
            .buf
            .len()
            .checked_add(buf.len())
            .is_none_or(|l| l > self.max)
        {
            return Err(self.too_large());
        }
        self.buf.extend_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_and_part_names() {
        let u = Url::parse("https://h/images/root.squashfs?x=1").unwrap();
        assert_eq!(
            minisig_url(&u).as_str(),
            "https://h/images/root.squashfs.minisig?x=1"
        );
        assert_eq!(
            part_path(Path::new("/run/x/img")),
            Path::new("/run/x/img.part")
        );
    }

    #[test]
    fn summary_line() {
        let r = FetchReport {
            bytes: 1 << 30,
            elapsed: Duration::from_secs(8),
            attempts: 2,
            resumes: 1,
            restarts: 0,
            sha256: crate::fetch::verify::sha256(b"abc"),
            url: "http://h/img".into(),
            verified: vec![Check::Pinned],
        };
        assert_eq!(
            r.summary(),
            "fetched 1024.0 MiB in 8.0 s (128.0 MiB/s), 2 attempts, 1 resume, sha256 \
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad; verified by the \
             pinned sha256"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            FetchError::Verify(VerifyError::Unverifiable).exit_code(),
            Exit::Verify
        );
        assert_eq!(
            FetchError::TooLarge {
                url: "u".into(),
                max: 1
            }
            .exit_code(),
            Exit::Transfer
        );
    }
}
