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
pub mod pull;

use crate::support::exit::Exit;
use crate::support::values::Sha256Hex;
use reqwest::Url;

/// The rustlive root image layers (see `docs/admins/oci.md`).
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

pub(crate) use crate::config::oci_ref::short;
pub use crate::config::oci_ref::{
    digest_str, host_port, is_oci, parse_digest, parse_image_url, Reference, Target,
};

/// The registry API URLs of a reference.
impl Reference {
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
    /// The engine's error fetching a manifest (retries, TLS, deadline…).
    #[error(transparent)]
    Fetch(Box<crate::fetch::FetchError>),
    #[error("{what}: the server answered {status} to {step}")]
    Status {
        what: String,
        step: String,
        status: reqwest::StatusCode,
    },
    /// A request under the fetch engine's limits (a registry token) that failed.
    #[error("{what}: {step} failed")]
    Request {
        what: String,
        step: String,
        #[source]
        source: Box<crate::fetch::attempt::AttemptError>,
    },
    #[error("{what}: {step} failed")]
    Http {
        what: String,
        step: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: the deadline passed during {step}")]
    Deadline { what: String, step: String },
    #[error("{what}: a plain-http registry is accepted only with a pinned manifest (@sha256:…) or a hash or signature covering the image")]
    PlainHttp { what: String },
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::fetch::FetchError> for OciError {
    fn from(e: crate::fetch::FetchError) -> Self {
        OciError::Fetch(Box::new(e))
    }
}

impl OciError {
    pub fn exit_code(&self) -> Exit {
        match self {
            OciError::DigestMismatch { .. } => Exit::Verify,
            OciError::Fetch(e) => e.exit_code(),
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

    #[test]
    fn api_urls() {
        let r = Reference::parse("oci://10.0.2.2:5000/site/compute:v1.2").unwrap();
        assert_eq!(
            r.manifest_url("v1.2").unwrap().as_str(),
            "https://10.0.2.2:5000/v2/site/compute/manifests/v1.2"
        );
        let d = crate::fetch::verify::sha256(b"x");
        assert_eq!(
            r.blob_url(&d).unwrap().as_str(),
            format!(
                "https://10.0.2.2:5000/v2/site/compute/blobs/sha256:{}",
                d.to_hex()
            )
        );
    }
}
