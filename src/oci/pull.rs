//! Pulling a root image: from `oci://` references to blob URLs the engine fetches.

use super::auth::{self, RegistryAuth};
use super::manifest::{self, Document, Selection};
use super::*;
use crate::fetch::{fetch_small, ContentDigest, FetchOptions};
use std::path::Path;
use std::sync::Arc;

/// What the engine needs once the manifest is known.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The root layer's blob on every registry mirror, in the node's order.
    pub blob_urls: Vec<Url>,
    pub selection: Selection,
    pub manifest_digest: Sha256Hex,
    /// The signature layer's blob on the first registry, when the manifest has one.
    pub signature_url: Option<Url>,
}

/// The references of `urls` (mirrors of one image).
pub fn references(urls: &[Url]) -> Result<Vec<Reference>, OciError> {
    crate::config::oci_ref::references(urls).map_err(|reason| OciError::Protocol {
        what: urls
            .iter()
            .map(crate::support::log::redact_url)
            .collect::<Vec<_>>()
            .join(", "),
        reason,
    })
}

/// The plain-http rule (as for the secrets source): `oci+http://` only when the manifest is
/// pinned by digest or a hash or signature covers the image.
pub fn check_plain_http(refs: &[Reference], opts: &FetchOptions) -> Result<(), OciError> {
    let covered = opts.sha256.is_some() || opts.sha256sums.is_some() || !opts.keys.is_empty();
    match refs.iter().find(|r| r.plain_http() && !r.pinned()) {
        Some(r) if !covered => Err(OciError::PlainHttp {
            what: r.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Fetches one manifest by `reference` from the registries (rotating on failure), checks its
/// digest when `pinned` names one, and parses it.
fn get_manifest(
    refs: &[Reference],
    reference: &str,
    pinned: Option<&Sha256Hex>,
    opts: &FetchOptions,
) -> Result<(Document, Sha256Hex), OciError> {
    let urls = refs
        .iter()
        .map(|r| r.manifest_url(reference))
        .collect::<Result<Vec<_>, _>>()?;
    // The manifest decides what the image is: TLS checks stay on unless a digest pins it.
    let insecure = opts.insecure_tls && pinned.is_some();
    let body = fetch_small(&urls, opts, insecure, MANIFEST_MAX)?;
    let digest = crate::fetch::verify::sha256(&body);
    let what = refs.first().map(|r| r.to_string()).unwrap_or_default();
    if let Some(p) = pinned {
        if *p != digest {
            return Err(OciError::DigestMismatch {
                what,
                expected: digest_str(p),
                actual: digest_str(&digest),
            });
        }
    }
    Ok((manifest::parse(&what, &body, None)?, digest))
}

/// Resolves the references to the root layer: manifest (through an index when there is one),
/// layer selection, blob URLs on every mirror. `opts` carries the registry auth.
pub fn resolve(refs: &[Reference], opts: &FetchOptions) -> Result<Resolved, OciError> {
    let first = refs.first().ok_or(crate::fetch::FetchError::NoUrl)?;
    let what = first.to_string();
    // Only the manifest: none of the image's hashes or keys apply to it.
    let mopts = FetchOptions {
        sha256: None,
        sha256sums: None,
        sig: None,
        keys: Vec::new(),
        verify_required: false,
        content: None,
        ..opts.clone()
    };
    let pinned = match &first.target {
        Target::Digest(d) => Some(*d),
        Target::Tag(_) => None,
    };
    let (mut doc, mut digest) = get_manifest(refs, &first.target_str(), pinned.as_ref(), &mopts)?;
    if let Document::Index { manifests } = &doc {
        let entry = manifest::select_platform(&what, manifests, manifest::this_platform())?;
        let (d, size) = (entry.digest, entry.size);
        if size > MANIFEST_MAX as u64 {
            return Err(OciError::Protocol {
                what,
                reason: format!("the platform manifest is {size} bytes, over {MANIFEST_MAX}"),
            });
        }
        log::info!(
            "{what}: index entry for {}/{} is {}",
            manifest::this_platform().0,
            manifest::this_platform().1,
            digest_str(&d)
        );
        let (child, _) = get_manifest(refs, &digest_str(&d), Some(&d), &mopts)?;
        doc = child;
        digest = match pinned {
            // The pin names the index; report that, it is what an operator writes.
            Some(p) => p,
            None => digest,
        };
    }
    let Document::Manifest { layers } = doc else {
        return Err(OciError::Protocol {
            what,
            reason: "an index entry is itself an index".into(),
        });
    };
    let selection = manifest::select_layers(&what, &layers)?;
    match &first.target {
        Target::Tag(_) => log::info!(
            "{what} resolved to manifest {}; pin it with root=live:{}",
            digest_str(&digest),
            first.with_digest(&digest)
        ),
        Target::Digest(_) => log::info!("{what}: manifest digest verified"),
    }
    log::info!(
        "{what}: root layer {} ({}, {} bytes){}",
        digest_str(&selection.root.digest),
        short(&selection.root.media_type),
        selection.root.size,
        if selection.signature.is_some() {
            ", with a signature layer"
        } else {
            ""
        }
    );
    let blob_urls = refs
        .iter()
        .map(|r| r.blob_url(&selection.root.digest))
        .collect::<Result<Vec<_>, _>>()?;
    let signature_url = selection
        .signature
        .as_ref()
        .map(|s| first.blob_url(&s.digest))
        .transpose()?;
    Ok(Resolved {
        blob_urls,
        selection,
        manifest_digest: digest,
        signature_url,
    })
}

/// For an OCI source: resolves it and returns the blob URLs and the options to fetch them
/// with (the layer digest and size expected, the registry auth, the signature layer as the
/// signature when none is given). Other sources pass through unchanged.
pub fn prepare(
    urls: &[Url],
    opts: &FetchOptions,
    credentials: &Path,
) -> Result<(Vec<Url>, FetchOptions), OciError> {
    if !urls.iter().any(is_oci) {
        return Ok((urls.to_vec(), opts.clone()));
    }
    if !urls.iter().all(is_oci) {
        return Err(OciError::Protocol {
            what: urls
                .iter()
                .map(crate::support::log::redact_url)
                .collect::<Vec<_>>()
                .join(", "),
            reason: "oci:// and http(s) mirrors cannot be mixed".into(),
        });
    }
    let refs = references(urls)?;
    check_plain_http(&refs, opts)?;
    let first = refs.first().ok_or(crate::fetch::FetchError::NoUrl)?;
    let creds = auth::load_credentials(credentials)?;
    let mut o = opts.clone();
    // A blob comes whole from each node's registry: a pull-through cache serves a blob it is
    // still fetching by streaming it, and ranges of such a blob are not something to count on.
    o.spread = None;
    o.auth = Some(Arc::new(RegistryAuth::new(
        creds,
        &first.repository,
        "pull",
    )));
    let r = resolve(&refs, &o)?;
    o.content = Some(ContentDigest {
        sha256: r.selection.root.digest,
        len: r.selection.root.size,
        pins: first.pinned(),
    });
    if o.sig.is_none() && !o.keys.is_empty() {
        o.sig = r.signature_url.clone();
    }
    Ok((r.blob_urls, o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn mirrors_must_agree() {
        let ok = references(&[u("oci://a:5000/x/y:t"), u("oci://b/x/y:t")]).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(references(&[u("oci://a/x/y:t"), u("oci://b/x/y:u")]).is_err());
    }

    #[test]
    fn plain_http_needs_a_pin() {
        let d = "0".repeat(63) + "1";
        let tag = references(&[u("oci+http://a/x:t")]).unwrap();
        let pinned = references(&[u(&format!("oci+http://a/x@sha256:{d}"))]).unwrap();
        let tls = references(&[u("oci://a/x:t")]).unwrap();
        let none = FetchOptions::default();
        assert!(check_plain_http(&tag, &none).is_err());
        assert!(check_plain_http(&pinned, &none).is_ok());
        assert!(check_plain_http(&tls, &none).is_ok());
        let hashed = FetchOptions {
            sha256: Some(crate::fetch::verify::sha256(b"x")),
            ..FetchOptions::default()
        };
        assert!(check_plain_http(&tag, &hashed).is_ok());
    }

    #[test]
    fn other_sources_pass_through() {
        let urls = [u("http://h/img")];
        let (out, _) = prepare(&urls, &FetchOptions::default(), Path::new("/nonexistent")).unwrap();
        assert_eq!(out, urls);
        assert!(prepare(
            &[u("http://h/img"), u("oci://h/x:t")],
            &FetchOptions::default(),
            Path::new("/x")
        )
        .is_err());
    }
}
