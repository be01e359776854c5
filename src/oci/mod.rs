//! OCI registries as image sources: `oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]`
//! (https) and `oci+http://…` (plain http, accepted only when something pins the content).
//!
//! A pull is: the manifest (or an index, then the node's platform's manifest) fetched with the
//! engine's retries into memory, its digest checked when the reference pins it and logged when
//! it is a tag; the root layer chosen by media type or title annotation ([`manifest`]); then the
//! blob fetched by the ordinary engine from every registry mirror, with the layer's digest and
//! size as the expected content ([`crate::fetch::ContentDigest`]). Because a blob is named by
//! its digest, any registry mirror or pull-through cache can serve it: the node checks every
//! byte itself.

pub mod auth;
pub mod manifest;
pub mod publish;
pub mod pull;

use crate::values::{hex, Sha256Hex};
use crate::Exit;
use reqwest::Url;

/// The rustlive root image layers (see README, "OCI registries").
pub const MEDIA_SQUASHFS: &str = "application/vnd.rustlive.image.v1.squashfs";
pub const MEDIA_EROFS: &str = "application/vnd.rustlive.image.v1.erofs";
pub const MEDIA_EXT4: &str = "application/vnd.rustlive.image.v1.ext4";
/// A minisign signature of the root layer, as a second layer.
pub const MEDIA_MINISIG: &str = "application/vnd.rustlive.image.v1.minisig";
/// The artifact type of a rustlive image manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.rustlive.image.v1";
/// IronCore's squashfs root layer (accepted as is).
pub const MEDIA_IRONCORE_SQUASHFS: &str =
    "application/vnd.ironcore.image.squashfs.v1alpha1.squashfs";
/// The OCI empty config (`{}`), what artifacts use as their config blob.
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header of a manifest request: every form rustlive can read.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// The title annotation of a file pushed as a layer (oras, buildah's artifacts).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// Largest manifest or index rustlive reads (the distribution spec's recommended limit).
pub const MANIFEST_MAX: usize = 4 << 20;

/// What the reference names in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    Digest(Sha256Hex),
}

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `https://HOST[:PORT]` (or `http://` for `oci+http://`).
    pub registry: Url,
    pub repository: String,
    pub target: Target,
}

impl Reference {
    /// Parses `oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]` or `oci+http://…`. Without a tag
    /// or digest, `latest`.
    pub fn parse(s: &str) -> Result<Reference, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("oci://") {
            ("https", r)
        } else if let Some(r) = s.strip_prefix("oci+http://") {
            ("http", r)
        } else {
            return Err("an OCI reference starts with oci:// or oci+http://".into());
        };
        let (host, path) = rest
            .split_once('/')
            .ok_or("expected oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]")?;
        if host.is_empty() || host.contains('@') {
            return Err("the reference needs a registry host (and no user name)".into());
        }
        let registry = Url::parse(&format!("{scheme}://{host}"))
            .map_err(|e| format!("bad registry host {host:?}: {e}"))?;
        if registry.host_str().is_none_or(str::is_empty) || registry.path() != "/" {
            return Err(format!("bad registry host {host:?}"));
        }
        let (repository, target) = if let Some((repo, digest)) = path.split_once('@') {
            (repo, Target::Digest(parse_digest(digest)?))
        } else {
            // A ':' after the last '/' starts the tag.
            let last = path.rfind('/').map_or(0, |i| i + 1);
            match path.get(last..).and_then(|t| t.find(':')) {
                Some(i) => {
                    let at = last + i;
                    let tag = path.get(at + 1..).unwrap_or("");
                    check_tag(tag)?;
                    (path.get(..at).unwrap_or(""), Target::Tag(tag.into()))
                }
                None => (path, Target::Tag("latest".into())),
            }
        };
        check_repository(repository)?;
        Ok(Reference {
            registry,
            repository: repository.into(),
            target,
        })
    }

    /// Whether the reference pins the manifest by digest.
    pub fn pinned(&self) -> bool {
        matches!(self.target, Target::Digest(_))
    }

    pub fn plain_http(&self) -> bool {
        self.registry.scheme() == "http"
    }

    /// `TAG` or `sha256:HEX`, as it goes into a manifest URL.
    pub fn target_str(&self) -> String {
        match &self.target {
            Target::Tag(t) => t.clone(),
            Target::Digest(d) => digest_str(d),
        }
    }

    /// `/v2/REPO/manifests/REF`.
    pub fn manifest_url(&self, reference: &str) -> Result<Url, OciError> {
        self.api(&format!("manifests/{reference}"))
    }

    /// `/v2/REPO/blobs/sha256:HEX`.
    pub fn blob_url(&self, digest: &Sha256Hex) -> Result<Url, OciError> {
        self.api(&format!("blobs/{}", digest_str(digest)))
    }

    /// `/v2/REPO/SUFFIX` on this registry.
    pub fn api(&self, suffix: &str) -> Result<Url, OciError> {
        self.registry
            .join(&format!("/v2/{}/{suffix}", self.repository))
            .map_err(|e| OciError::Protocol {
                what: self.to_string(),
                reason: format!("cannot form the API URL: {e}"),
            })
    }

    /// Whether `other` names the same repository and tag or digest (a mirror of this one).
    pub fn same_content(&self, other: &Reference) -> bool {
        self.repository == other.repository && self.target == other.target
    }

    /// `oci://HOST:PORT/REPO@sha256:HEX` for this repository on this registry.
    pub fn with_digest(&self, d: &Sha256Hex) -> String {
        let scheme = if self.plain_http() { "oci+http" } else { "oci" };
        format!(
            "{scheme}://{}/{}@{}",
            host_port(&self.registry),
            self.repository,
            digest_str(d)
        )
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.plain_http() { "oci+http" } else { "oci" };
        let sep = if self.pinned() { '@' } else { ':' };
        write!(
            f,
            "{scheme}://{}/{}{sep}{}",
            host_port(&self.registry),
            self.repository,
            self.target_str()
        )
    }
}

/// `HOST[:PORT]` of a registry URL.
pub fn host_port(u: &Url) -> String {
    let host = u.host_str().unwrap_or("");
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// `sha256:HEX`.
pub fn digest_str(d: &Sha256Hex) -> String {
    format!("sha256:{}", hex(&d.0))
}

/// Parses `sha256:` and 64 lower-case hex digits; other algorithms are refused by name.
pub fn parse_digest(s: &str) -> Result<Sha256Hex, String> {
    let Some((alg, h)) = s.split_once(':') else {
        return Err(format!("{:?} is not a digest (sha256:HEX)", short(s)));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest algorithm {:?} is not supported (only sha256)",
            short(alg)
        ));
    }
    if h.len() != 64 || !h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("a sha256 digest is 64 lower-case hex digits".into());
    }
    crate::values::parse_sha256(h)
}

/// At most 80 characters of a value for an error message (a hostile manifest may be huge).
pub(crate) fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// The distribution spec's repository grammar: lower-case components
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
fn check_repository(r: &str) -> Result<(), String> {
    if r.is_empty() || r.len() > 255 {
        return Err("the repository name is empty or longer than 255 characters".into());
    }
    for comp in r.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = b.first().is_some_and(|c| alnum(*c))
            && b.last().is_some_and(|c| alnum(*c))
            && b.iter()
                .all(|c| alnum(*c) || matches!(c, b'.' | b'_' | b'-'))
            && !comp.contains("..")
            && !comp.contains("___")
            && !comp.contains("._")
            && !comp.contains("_.")
            && !comp.contains(".-")
            && !comp.contains("-.")
            && !comp.contains("_-")
            && !comp.contains("-_");
        if !ok {
            return Err(format!(
                "{:?} is not a valid repository name (lower-case letters, digits, '.', '_', '-' between them, '/' between components)",
                short(r)
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid tag (letters, digits, '_', '.', '-', at most 128)",
            short(t)
        ))
    }
}

/// Checks an `oci://` or `oci+http://` image URL from the command line; the `Url` kept in the
/// configuration is the reference as written.
pub fn parse_image_url(s: &str) -> Result<Url, String> {
    Reference::parse(s)?;
    Url::parse(s).map_err(|e| format!("not a URL: {e}"))
}

/// Whether `u` is an OCI reference (`oci://`, `oci+http://`).
pub fn is_oci(u: &Url) -> bool {
    matches!(u.scheme(), "oci" | "oci+http")
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
    #[error("{what} is an ordinary container image (layers: {layers}), not a bootable root image; push the squashfs or erofs itself as an artifact: `rustlive publish IMAGE oci://HOST/REPO:TAG` (or `oras push HOST/REPO:TAG root.squashfs:application/vnd.rustlive.image.v1.squashfs`)")]
    ContainerImage { what: String, layers: String },
    #[error("{what} has no bootable layer (layers: {layers}); expected media type {MEDIA_SQUASHFS}, {MEDIA_EROFS}, {MEDIA_EXT4} or {MEDIA_IRONCORE_SQUASHFS}, or a title annotation ending in .squashfs, .sqfs, .erofs or .img")]
    NoRootLayer { what: String, layers: String },
    #[error("{what} has {count} candidate root layers ({layers}); it must have exactly one")]
    Ambiguous {
        what: String,
        count: usize,
        layers: String,
    },
    #[error("{what} has no manifest for {platform} (it has: {have})")]
    NoPlatform {
        what: String,
        platform: String,
        have: String,
    },
    #[error("the manifest of {what} has digest {actual}, not the pinned {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("cannot read the registry credentials {path}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no registry answered for {what}")]
    NoRegistry {
        what: String,
        #[source]
        last: Box<crate::fetch::FetchError>,
    },
    #[error("{what}: the server answered {status} to {step}")]
    Status {
        what: String,
        step: String,
        status: reqwest::StatusCode,
    },
    #[error("{what}: {step} failed")]
    Http {
        what: String,
        step: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: a plain-http registry is accepted only with a pinned manifest (@sha256:…) or a hash or signature covering the image")]
    PlainHttp { what: String },
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl OciError {
    pub fn exit_code(&self) -> Exit {
        match self {
            OciError::DigestMismatch { .. } => Exit::Verify,
            OciError::NoRegistry { last, .. } => last.exit_code(),
            OciError::Credentials { .. } | OciError::Read { .. } | OciError::PlainHttp { .. } => {
                Exit::Usage
            }
            _ => Exit::Transfer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references() {
        let r = Reference::parse("oci://10.0.2.2:5000/site/compute:v1.2").unwrap();
        assert_eq!(r.registry.as_str(), "https://10.0.2.2:5000/");
        assert_eq!(r.repository, "site/compute");
        assert_eq!(r.target, Target::Tag("v1.2".into()));
        assert!(!r.pinned() && !r.plain_http());
        assert_eq!(r.to_string(), "oci://10.0.2.2:5000/site/compute:v1.2");
        assert_eq!(
            r.manifest_url("v1.2").unwrap().as_str(),
            "https://10.0.2.2:5000/v2/site/compute/manifests/v1.2"
        );
        let r = Reference::parse(&format!("oci+http://reg.site/a/b/c@{D}")).unwrap();
        assert!(r.pinned() && r.plain_http());
        assert_eq!(r.registry.as_str(), "http://reg.site/");
        assert_eq!(r.to_string(), format!("oci+http://reg.site/a/b/c@{D}"));
        let r = Reference::parse("oci://[::1]:5000/img").unwrap();
        assert_eq!(r.target, Target::Tag("latest".into()));
        assert_eq!(host_port(&r.registry), "[::1]:5000");
        assert!(parse_image_url("oci://h:5000/a/b:t").is_ok());
    }

    #[test]
    fn bad_references() {
        for bad in [
            "http://h/x",
            "oci://",
            "oci:///repo",
            "oci://h",
            "oci://h/",
            "oci://user:pw@h/repo",
            "oci://h/Repo",
            "oci://h/repo:",
            "oci://h/repo:-x",
            "oci://h/re..po",
            "oci://h/repo@sha512:abcd",
            "oci://h/repo@sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
            "oci://h/repo@sha256:0123",
            "oci://h/repo:t@x",
            "oci://h:notaport/repo",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = Reference::parse(&s);
            let _ = parse_digest(&s);
        }

        #[test]
        fn valid_references_round_trip(
            host in "[a-z][a-z0-9]{0,10}(\\.[a-z]{2,5})?",
            port in proptest::option::of(1024u16..),
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}(-[a-z0-9]{1,4})?){0,3}",
            tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
            plain in any::<bool>(),
        ) {
            let scheme = if plain { "oci+http" } else { "oci" };
            let hp = port.map_or(host.clone(), |p| format!("{host}:{p}"));
            let s = format!("{scheme}://{hp}/{repo}:{tag}");
            let r = Reference::parse(&s).unwrap();
            prop_assert_eq!(&r.repository, &repo);
            prop_assert_eq!(r.to_string(), s);
        }
    }
}
