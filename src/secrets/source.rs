//! Where the bundle comes from: `file://` (a file inside the initramfs, by default
//! `/rustlive/secrets.json`), `https://`, or `http://` only when the bundle is pinned by
//! `rd.rustlive.secrets.sha256`. `{mac}`, `{uuid}` and `{hostname}` in the URL are filled in
//! from [`NodeFacts`].
//!
//! The https getter here is deliberately small and self-contained (CA from the initramfs, optional
//! client certificate, bounded size and retries); [`https_get`] is the one seam to swap for the
//! image fetch engine's getter. TLS verification is never skipped for secrets: `rd.noverifyssl`
//! is not consulted.

use super::bundle::MAX_BUNDLE_SIZE;
use super::NodeFacts;
use crate::config::Config;
use crate::log::redact_url;
use reqwest::Url;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// CA bundle the dracut module installs, used when `rd.rustlive.ca` is not given.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/rustlive/ca.pem";

/// A bundle source with its placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file inside the initramfs.
    File(PathBuf),
    /// `https://`, or `http://` with a pin.
    Url(Url),
}

impl Source {
    /// The source as it may appear in a log line: no userinfo, query or fragment.
    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => format!("file://{}", p.display()),
            Source::Url(u) => redact_url(u),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the source URL uses {{{0}}} but this node's {1} is unknown or malformed")]
    MissingFact(&'static str, &'static str),
    #[error(
        "unknown placeholder {{{0}}} in the source URL (use {{mac}}, {{uuid}} or {{hostname}})"
    )]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in the source URL")]
    Unclosed,
    #[error("the source is not a valid URL once filled in ({0})")]
    BadUrl(String),
    #[error("unsupported scheme {0:?} for secrets (use https or file)")]
    Scheme(String),
    #[error("plain http exposes the secrets; use https, or pin the bundle with rd.rustlive.secrets.sha256")]
    UnpinnedHttp,
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("the bundle is over the {} MiB limit", MAX_BUNDLE_SIZE >> 20)]
    TooLarge,
    #[error("cannot read the CA bundle {} (set rd.rustlive.ca)", .0.display())]
    Ca(PathBuf, #[source] io::Error),
    #[error("no usable certificate in the CA bundle {}", .0.display())]
    CaInvalid(PathBuf),
    #[error("cannot read the client certificate {}", .0.display())]
    Identity(PathBuf, #[source] io::Error),
    #[error("the client certificate and key are not a usable PEM pair")]
    IdentityInvalid,
    #[error("cannot set up the https client")]
    Client(#[source] reqwest::Error),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    #[error("reading the response failed")]
    Body(#[source] io::Error),
    #[error("gave up after {attempts} attempts")]
    Exhausted {
        attempts: u32,
        #[source]
        last: Box<SourceError>,
    },
    #[error("the bundle does not match rd.rustlive.secrets.sha256")]
    PinMismatch,
}

impl SourceError {
    /// Whether another attempt could succeed (the network or the server, not the setup).
    fn is_transient(&self) -> bool {
        match self {
            SourceError::Request(_) | SourceError::Body(_) => true,
            SourceError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            _ => false,
        }
    }
}

/// Fills `{mac}`, `{uuid}` and `{hostname}` in a source template. A placeholder whose fact is
/// unknown is an error rather than an empty string: it would fetch another node's bundle.
pub fn fill_template(template: &str, facts: &NodeFacts) -> Result<String, SourceError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or(SourceError::Unclosed)? + open;
        let (name, what, value) = match &rest[open + 1..close] {
            "mac" => ("mac", "MAC address", facts.mac()),
            "uuid" => ("uuid", "SMBIOS UUID", facts.uuid()),
            "hostname" => ("hostname", "host name", facts.hostname()),
            other => return Err(SourceError::UnknownPlaceholder(other.into())),
        };
        out.push_str(&value.ok_or(SourceError::MissingFact(name, what))?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills a template and checks its scheme: `file`, `https`, or `http` when `pinned`.
pub fn resolve(template: &str, facts: &NodeFacts, pinned: bool) -> Result<Source, SourceError> {
    let filled = fill_template(template, facts)?;
    let url = Url::parse(&filled).map_err(|e| {
        SourceError::BadUrl(format!("{e}: {}", crate::log::redact_url_str(&filled)))
    })?;
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(Source::File)
            .map_err(|()| SourceError::BadUrl("a file URL must be an absolute local path".into())),
        "https" => Ok(Source::Url(url)),
        "http" if pinned => Ok(Source::Url(url)),
        "http" => Err(SourceError::UnpinnedHttp),
        s => Err(SourceError::Scheme(s.into())),
    }
}

/// How hard to try an https source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Overall limit, from `rd.rustlive.timeout`.
    pub deadline: Option<Duration>,
}

impl Retry {
    /// Without `rd.rustlive.retries`, a few attempts: the image may wait for its server forever,
    /// but a boot should not hang silently on a secrets server.
    pub const DEFAULT_RETRIES: u32 = 5;

    pub fn from_config(cfg: &Config) -> Retry {
        Retry {
            attempts: cfg
                .transfer
                .retries
                .unwrap_or(Self::DEFAULT_RETRIES)
                .saturating_add(1),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            deadline: cfg.transfer.timeout,
        }
    }

    /// The pause before attempt `n + 1` (n ≥ 1): doubling from `first_delay`, capped, with up to
    /// ±25 % jitter so that a rack of nodes booting together does not retry in lockstep.
    pub fn delay(&self, n: u32, jitter: u64) -> Duration {
        let base = self
            .first_delay
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
            .min(self.max_delay);
        let quarter = base / 4;
        let span = quarter.as_millis() as u64 * 2;
        let offset = if span == 0 { 0 } else { jitter % (span + 1) };
        base - quarter + Duration::from_millis(offset)
    }
}

/// TLS and network settings for an https source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsOptions {
    pub ca: PathBuf,
    /// Client certificate and key (PEM files), for mTLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub proxy: Option<Url>,
    pub retry: Retry,
}

impl HttpsOptions {
    pub fn from_config(cfg: &Config) -> HttpsOptions {
        let s = &cfg.secrets;
        HttpsOptions {
            ca: cfg
                .transfer
                .ca
                .clone()
                .unwrap_or_else(|| DEFAULT_CA_BUNDLE.into()),
            identity: s.cert.clone().zip(s.key.clone()),
            proxy: cfg.transfer.proxy.clone(),
            retry: Retry::from_config(cfg),
        }
    }
}

/// The bundle's bytes, at most [`MAX_BUNDLE_SIZE`], in a buffer zeroed on drop.
pub fn load(src: &Source, opts: &HttpsOptions) -> Result<Zeroizing<Vec<u8>>, SourceError> {
    match src {
        Source::File(p) => {
            let mut f = File::open(p).map_err(|e| SourceError::Read(p.clone(), e))?;
            read_capped(&mut f, MAX_BUNDLE_SIZE).map_err(|e| match e {
                Capped::TooLarge => SourceError::TooLarge,
                Capped::Io(e) => SourceError::Read(p.clone(), e),
            })
        }
        Source::Url(u) => https_get(u, opts, MAX_BUNDLE_SIZE),
    }
}

enum Capped {
    TooLarge,
    Io(io::Error),
}

/// Reads everything into one buffer allocated up front, so no reallocation leaves a stray
/// copy of secret bytes behind in freed memory.
fn read_capped(r: &mut impl Read, limit: usize) -> Result<Zeroizing<Vec<u8>>, Capped> {
    let mut buf = Zeroizing::new(vec![0u8; limit + 1]);
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Capped::Io(e)),
        }
    }
    if n > limit {
        return Err(Capped::TooLarge);
    }
    buf.truncate(n);
    Ok(buf)
}

/// GETs `url` with retries; the seam for the image fetch engine's getter.
pub fn https_get(
    url: &Url,
    opts: &HttpsOptions,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, SourceError> {
    let client = client(url, opts)?;
    let started = Instant::now();
    let jitter = std::collections::hash_map::RandomState::new();
    let shown = redact_url(url);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match get_once(&client, url, limit) {
            Ok(body) => return Ok(body),
            Err(e) => e,
        };
        let out_of_time = |pause: Duration| {
            opts.retry
                .deadline
                .is_some_and(|d| started.elapsed() + pause >= d)
        };
        let pause = opts.retry.delay(attempt, jitter.build_hasher().finish());
        if !err.is_transient() || attempt >= opts.retry.attempts || out_of_time(pause) {
            if attempt == 1 {
                return Err(err);
            }
            return Err(SourceError::Exhausted {
                attempts: attempt,
                last: Box::new(err),
            });
        }
        log::warn!(
            "secrets: {shown}: {}; retrying in {:.1}s (attempt {attempt} of {})",
            crate::error::report(&err),
            pause.as_secs_f32(),
            opts.retry.attempts
        );
        std::thread::sleep(pause);
    }
}

fn client(url: &Url, opts: &HttpsOptions) -> Result<reqwest::blocking::Client, SourceError> {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        // An https source must never be redirected to plain http.
        .https_only(url.scheme() == "https")
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(10))
        // A whole attempt: the bundle is at most 1 MiB.
        .timeout(Duration::from_secs(60));
    match std::fs::read(&opts.ca) {
        Ok(pem) => {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| SourceError::CaInvalid(opts.ca.clone()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        // A pinned http source needs no CA; https without one cannot be verified.
        Err(e) if url.scheme() == "https" => return Err(SourceError::Ca(opts.ca.clone(), e)),
        Err(_) => {}
    }
    if let Some((cert, key)) = &opts.identity {
        let mut pem = Zeroizing::new(
            std::fs::read(cert).map_err(|e| SourceError::Identity(cert.clone(), e))?,
        );
        let key_pem =
            Zeroizing::new(std::fs::read(key).map_err(|e| SourceError::Identity(key.clone(), e))?);
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        let id = reqwest::Identity::from_pem(&pem).map_err(|_| SourceError::IdentityInvalid)?;
        b = b.identity(id);
    }
    b = match &opts.proxy {
        Some(p) => b.proxy(
            reqwest::Proxy::all(p.clone()).map_err(|e| SourceError::Client(e.without_url()))?,
        ),
        None => b.no_proxy(),
    };
    b.build().map_err(|e| SourceError::Client(e.without_url()))
}

fn get_once(
    client: &reqwest::blocking::Client,
    url: &Url,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, SourceError> {
    // reqwest's errors print the full URL, query string included: strip it.
    let mut resp = client
        .get(url.clone())
        .send()
        .map_err(|e| SourceError::Request(e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(SourceError::Status(status.as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(SourceError::TooLarge);
    }
    read_capped(&mut resp, limit).map_err(|e| match e {
        Capped::TooLarge => SourceError::TooLarge,
        Capped::Io(e) => SourceError::Body(e),
    })
}

/// Overwrites a file of the initramfs with zeros, then removes it. A symlink is removed without
/// touching its target. `Ok(false)` when there was nothing to remove.
pub fn wipe_file(path: &Path) -> io::Result<bool> {
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        // A symlink (ELOOP) or something not writable: still unlink it below.
        Err(_) => None,
    };
    if let Some(mut f) = f {
        let md = f.metadata()?;
        if md.is_file() {
            let zeros = [0u8; 64 * 1024];
            let mut left = md.len();
            while left > 0 {
                let k = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..k])?;
                left -= k as u64;
            }
            f.sync_all()?;
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            mac: Some("52:54:00:AB:cd:01".into()),
            uuid: Some("4C4C4544-0042-3510-8050-B4C04F4A4B33".into()),
            hostname: Some("node001.cluster".into()),
        }
    }

    #[test]
    fn fills_every_placeholder() {
        assert_eq!(
            fill_template("https://s/{mac}/{uuid}/{hostname}.json", &facts()).unwrap(),
            "https://s/52:54:00:ab:cd:01/4c4c4544-0042-3510-8050-b4c04f4a4b33/node001.cluster.json"
        );
        assert_eq!(
            fill_template("file:///rustlive/secrets.json", &NodeFacts::default()).unwrap(),
            "file:///rustlive/secrets.json"
        );
        assert_eq!(
            fill_template("https://s/{hostname}{hostname}", &facts()).unwrap(),
            "https://s/node001.clusternode001.cluster"
        );
    }

    #[test]
    fn missing_or_malformed_facts_are_errors() {
        for (t, name) in [
            ("https://s/{mac}", "mac"),
            ("https://s/{uuid}", "uuid"),
            ("https://s/{hostname}", "hostname"),
        ] {
            match fill_template(t, &NodeFacts::default()) {
                Err(SourceError::MissingFact(n, _)) => assert_eq!(n, name),
                other => panic!("{t}: {other:?}"),
            }
        }
        // Values that could change the URL's structure are not substituted.
        let hostile = NodeFacts {
            mac: Some("52:54:00:ab:cd:01/../x".into()),
            uuid: Some("x?token=1".into()),
            hostname: Some("evil.example/@x".into()),
        };
        for t in [
            "https://s/{mac}",
            "https://s/{uuid}",
            "https://s/{hostname}",
        ] {
            assert!(matches!(
                fill_template(t, &hostile),
                Err(SourceError::MissingFact(..))
            ));
        }
    }

    #[test]
    fn template_syntax_errors() {
        assert!(matches!(
            fill_template("https://s/{serial}", &facts()),
            Err(SourceError::UnknownPlaceholder(p)) if p == "serial"
        ));
        assert!(matches!(
            fill_template("https://s/{mac", &facts()),
            Err(SourceError::Unclosed)
        ));
    }

    #[test]
    fn resolves_schemes() {
        let f = facts();
        assert_eq!(
            resolve("file:///rustlive/{hostname}.json", &f, false).unwrap(),
            Source::File("/rustlive/node001.cluster.json".into())
        );
        assert!(matches!(
            resolve("https://s/{uuid}", &f, false).unwrap(),
            Source::Url(u) if u.as_str().ends_with("4a4b33")
        ));
        assert!(matches!(
            resolve("http://s/x", &f, false),
            Err(SourceError::UnpinnedHttp)
        ));
        assert!(matches!(
            resolve("http://s/x", &f, true),
            Ok(Source::Url(_))
        ));
        assert!(matches!(
            resolve("ftp://s/x", &f, true),
            Err(SourceError::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            resolve("not a url", &f, false),
            Err(SourceError::BadUrl(_))
        ));
    }

    #[test]
    fn describe_redacts_credentials_and_query() {
        let s = resolve("https://u:pw@s/b?token=t0psecret", &facts(), false).unwrap();
        assert_eq!(s.describe(), "https://s/b?…");
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_a_quarter() {
        let r = Retry {
            attempts: 6,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            deadline: None,
        };
        for (n, base) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (5, 16000),
            (6, 30000),
            (40, 30000),
        ] {
            let lo = r.delay(n, 0).as_millis();
            let hi = r.delay(n, u64::MAX).as_millis();
            assert!(lo >= base * 3 / 4 && hi <= base * 5 / 4, "{n}: {lo}..{hi}");
            for j in [1, 77, 12345, 999_999] {
                let d = r.delay(n, j).as_millis();
                assert!((base * 3 / 4..=base * 5 / 4).contains(&d), "{n}/{j}: {d}");
            }
        }
    }

    #[test]
    fn retry_policy_from_config() {
        let mut cfg = Config::default();
        assert_eq!(
            Retry::from_config(&cfg).attempts,
            Retry::DEFAULT_RETRIES + 1
        );
        cfg.transfer.retries = Some(0);
        assert_eq!(Retry::from_config(&cfg).attempts, 1);
    }

    #[test]
    fn transient_errors() {
        assert!(SourceError::Status(503).is_transient());
        assert!(SourceError::Status(429).is_transient());
        assert!(!SourceError::Status(404).is_transient());
        assert!(!SourceError::Status(403).is_transient());
        assert!(!SourceError::TooLarge.is_transient());
        assert!(!SourceError::PinMismatch.is_transient());
    }

    #[test]
    fn reads_up_to_the_cap_and_no_further() {
        let data = [7u8; 100];
        assert_eq!(
            read_capped(&mut &data[..], 100).ok().unwrap().as_slice(),
            &data[..]
        );
        assert!(matches!(
            read_capped(&mut &data[..], 99),
            Err(Capped::TooLarge)
        ));
    }

    #[test]
    fn loads_a_file_and_refuses_an_oversized_one() {
        let t = tempfile::tempdir().unwrap();
        let ok = t.path().join("ok.json");
        std::fs::write(&ok, b"{}").unwrap();
        let opts = HttpsOptions::from_config(&Config::default());
        assert_eq!(load(&Source::File(ok), &opts).unwrap().as_slice(), b"{}");
        let big = t.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_BUNDLE_SIZE + 1]).unwrap();
        assert!(matches!(
            load(&Source::File(big), &opts),
            Err(SourceError::TooLarge)
        ));
        assert!(matches!(
            load(&Source::File(t.path().join("none")), &opts),
            Err(SourceError::Read(..))
        ));
    }

    #[test]
    fn wipe_removes_files_and_only_the_link_of_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("secrets.json");
        std::fs::write(&f, b"secret").unwrap();
        assert!(wipe_file(&f).unwrap());
        assert!(!f.exists());
        assert!(!wipe_file(&f).unwrap());
        let target = t.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, &f).unwrap();
        assert!(wipe_file(&f).unwrap());
        assert!(f.symlink_metadata().is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
