//! Where the bundle comes from: `file://` (a file inside the initramfs, by default
//! `/rustlive/secrets.json`), `https://`, or `http://` (whose bundle the secrets stage accepts
//! only when it is sealed to the node's TPM or pinned by `rd.rustlive.secrets.sha256`). `{mac}`, `{uuid}` and `{hostname}` in the URL are filled in
//! from [`NodeFacts`].
//!
//! Network sources go through the image's fetch engine ([`crate::fetch::fetch_bytes`]) with
//! [`super::SecretsOptions::download`]: the same CA, proxy, deadline and retry policy, plus the
//! client certificate, a 1 MiB cap, and TLS verification that `rd.noverifyssl` never turns off.

use super::bundle::MAX_BUNDLE_SIZE;
use super::facts::NodeFacts;
use crate::config::url_template::{MissingFact, Placeholder, Scheme, UrlTemplate};
use crate::fetch::{fetch_bytes, FetchError, FetchOptions};
use crate::support::deadline::Deadline;
use crate::support::log::redact_url;
use reqwest::Url;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A bundle source with its placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file inside the initramfs.
    File(PathBuf),
    /// `https://` or `http://`.
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

    /// Whether the bundle travels over plain http, where anyone on the path can read it.
    pub fn is_plain_http(&self) -> bool {
        matches!(self, Source::Url(u) if u.scheme() == "http")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    MissingFact(#[from] MissingFact),
    #[error("the source is not a valid URL once filled in ({0})")]
    BadUrl(String),
    #[error("plain http exposes an unsealed bundle; seal it to the node's TPM (rustlive bundle seal), use https, or pin it with rd.rustlive.secrets.sha256")]
    UnpinnedHttp,
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("the bundle is over the {} MiB limit", MAX_BUNDLE_SIZE >> 20)]
    TooLarge,
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the bundle does not match rd.rustlive.secrets.sha256")]
    PinMismatch,
}

/// The value of `p` for this node. A fact that is unknown or malformed gives `None` rather than
/// an empty string: the URL would name another node's bundle.
pub fn fact(facts: &NodeFacts, p: Placeholder) -> Option<String> {
    match p {
        Placeholder::Mac => facts.mac(),
        Placeholder::Uuid => facts.uuid(),
        Placeholder::Hostname => facts.hostname(),
    }
}

/// Fills a template with this node's facts and checks its scheme: `file`, `https` or `http`
/// (an unpinned http bundle must turn out sealed: checked once its bytes are in).
pub fn resolve(template: &UrlTemplate, facts: &NodeFacts) -> Result<Source, SourceError> {
    let filled = template.fill(|p| fact(facts, p))?;
    let url = Url::parse(&filled).map_err(|e| {
        SourceError::BadUrl(format!(
            "{e}: {}",
            crate::support::log::redact_url_str(&filled)
        ))
    })?;
    match template.scheme() {
        Scheme::File => url
            .to_file_path()
            .map(Source::File)
            .map_err(|()| SourceError::BadUrl("a file URL must be an absolute local path".into())),
        Scheme::Https | Scheme::Http => Ok(Source::Url(url)),
    }
}

/// The bundle's bytes, at most [`MAX_BUNDLE_SIZE`], in a buffer zeroed on drop; a network
/// source is downloaded with `download` (see [`super::SecretsOptions::download`]) within
/// `deadline`.
pub fn load(
    src: &Source,
    download: &FetchOptions,
    deadline: Deadline,
) -> Result<Zeroizing<Vec<u8>>, SourceError> {
    match src {
        Source::File(p) => {
            let mut f = File::open(p).map_err(|e| SourceError::Read(p.clone(), e))?;
            read_capped(&mut f, MAX_BUNDLE_SIZE).map_err(|e| match e {
                Capped::TooLarge => SourceError::TooLarge,
                Capped::Io(e) => SourceError::Read(p.clone(), e),
            })
        }
        Source::Url(u) => {
            let opts = download.clone().with_deadline(deadline);
            fetch_bytes(u, &opts, MAX_BUNDLE_SIZE).map_err(|e| match e {
                FetchError::TooLarge { .. } => SourceError::TooLarge,
                e => SourceError::Fetch(e),
            })
        }
    }
}

enum Capped {
    TooLarge,
    Io(io::Error),
}

/// Reads everything into one buffer allocated up front, so no reallocation leaves a stray
/// copy of secret bytes behind in freed memory.
fn read_capped(r: &mut impl Read, limit: usize) -> Result<Zeroizing<Vec<u8>>, Capped> {
    let mut buf = Zeroizing::new(vec![0u8; limit.saturating_add(1)]);
    let mut n = 0usize;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k),
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

/// Overwrites a file of the initramfs with zeros, then removes it. A symlink is removed without
/// touching its target. `Ok(false)` when there was nothing to remove.
pub fn wipe_file(path: &Path) -> io::Result<bool> {
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(crate::sys::fs::O_NOFOLLOW)
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
                let k = usize::try_from(left).map_or(zeros.len(), |l| l.min(zeros.len()));
                f.write_all(zeros.get(..k).unwrap_or(&zeros))?;
                left = left.saturating_sub(k as u64);
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

    fn t(s: &str) -> UrlTemplate {
        UrlTemplate::parse(s).unwrap()
    }

    fn fill(s: &str, f: &NodeFacts) -> Result<String, MissingFact> {
        t(s).fill(|p| fact(f, p))
    }

    #[test]
    fn fills_every_placeholder() {
        assert_eq!(
            fill("https://s/{mac}/{uuid}/{hostname}.json", &facts()).unwrap(),
            "https://s/52:54:00:ab:cd:01/4c4c4544-0042-3510-8050-b4c04f4a4b33/node001.cluster.json"
        );
        assert_eq!(
            fill("file:///rustlive/secrets.json", &NodeFacts::default()).unwrap(),
            "file:///rustlive/secrets.json"
        );
        assert_eq!(
            fill("https://s/{hostname}{hostname}", &facts()).unwrap(),
            "https://s/node001.clusternode001.cluster"
        );
    }

    #[test]
    fn missing_or_malformed_facts_are_errors() {
        for (s, want) in [
            ("https://s/{mac}", Placeholder::Mac),
            ("https://s/{uuid}", Placeholder::Uuid),
            ("https://s/{hostname}", Placeholder::Hostname),
        ] {
            assert_eq!(
                fill(s, &NodeFacts::default()),
                Err(MissingFact(want)),
                "{s}"
            );
        }
        // Values that could change the URL's structure are not substituted.
        let hostile = NodeFacts {
            mac: Some("52:54:00:ab:cd:01/../x".into()),
            uuid: Some("x?token=1".into()),
            hostname: Some("evil.example/@x".into()),
        };
        for s in [
            "https://s/{mac}",
            "https://s/{uuid}",
            "https://s/{hostname}",
        ] {
            assert!(fill(s, &hostile).is_err(), "{s}");
        }
    }

    #[test]
    fn resolves_schemes() {
        let f = facts();
        assert_eq!(
            resolve(&t("file:///rustlive/{hostname}.json"), &f).unwrap(),
            Source::File("/rustlive/node001.cluster.json".into())
        );
        assert!(matches!(
            resolve(&t("https://s/{uuid}"), &f).unwrap(),
            Source::Url(u) if u.as_str().ends_with("4a4b33")
        ));
        // Plain http resolves (a sealed bundle may come that way); install refuses an
        // unsealed, unpinned one once it has its bytes.
        for u in ["http://s/x", "HTTP://s/x"] {
            let s = resolve(&t(u), &f).unwrap();
            assert!(s.is_plain_http(), "{u}");
        }
        assert!(!resolve(&t("https://s/x"), &f).unwrap().is_plain_http());
    }

    #[test]
    fn describe_redacts_credentials_and_query() {
        let s = resolve(&t("https://u:pw@s/b?token=t0psecret"), &facts()).unwrap();
        assert_eq!(s.describe(), "https://s/b?…");
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
        let opts = FetchOptions::default();
        assert_eq!(
            load(&Source::File(ok), &opts, Deadline::NONE)
                .unwrap()
                .as_slice(),
            b"{}"
        );
        let big = t.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_BUNDLE_SIZE + 1]).unwrap();
        assert!(matches!(
            load(&Source::File(big), &opts, Deadline::NONE),
            Err(SourceError::TooLarge)
        ));
        assert!(matches!(
            load(&Source::File(t.path().join("none")), &opts, Deadline::NONE),
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
