//! Manifests and indexes (OCI image spec and Docker schema 2), parsed with plain serde types,
//! and the choice of the root layer.
//!
//! Plain serde types rather than the `oci-spec` crate: rustlive reads four fields of two
//! documents, and every one of them is checked here (digest grammar, sizes, media types) with
//! a message that names the offending value; unknown fields are ignored as the spec requires.
//! The body is bounded before it gets here ([`super::MANIFEST_MAX`]).

use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i128>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
}

/// A checked content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Sha256Hex,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_TITLE).map(String::as_str)
    }

    fn describe(&self) -> String {
        match self.title() {
            Some(t) => format!("{} ({})", short(&self.media_type), short(t)),
            None => short(&self.media_type),
        }
    }
}

/// A parsed manifest document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Manifest { layers: Vec<Descriptor> },
    Index { manifests: Vec<Descriptor> },
}

fn protocol(what: &str, reason: impl Into<String>) -> OciError {
    OciError::Protocol {
        what: what.into(),
        reason: reason.into(),
    }
}

fn descriptor(what: &str, d: RawDescriptor) -> Result<Descriptor, OciError> {
    let media_type = d
        .media_type
        .filter(|m| !m.is_empty())
        .ok_or_else(|| protocol(what, "a descriptor has no mediaType"))?;
    let digest = d
        .digest
        .ok_or_else(|| protocol(what, "a descriptor has no digest"))?;
    let digest = parse_digest(&digest).map_err(|r| protocol(what, r))?;
    let size = d
        .size
        .ok_or_else(|| protocol(what, "a descriptor has no size"))?;
    let size = u64::try_from(size)
        .map_err(|_| protocol(what, format!("a descriptor has a negative size ({size})")))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
        annotations: d.annotations,
        platform: d.platform,
    })
}

/// Parses a manifest or index body. `content_type` is the response's, when it said.
pub fn parse(what: &str, body: &[u8], content_type: Option<&str>) -> Result<Document, OciError> {
    if body.len() > MANIFEST_MAX {
        return Err(protocol(
            what,
            format!("the manifest is larger than {MANIFEST_MAX} bytes"),
        ));
    }
    let raw: RawDocument = serde_json::from_slice(body).map_err(|e| {
        // serde's message may quote a value of the document: escaped and cut short.
        protocol(
            what,
            format!("the manifest is not valid JSON: {}", short(&e.to_string())),
        )
    })?;
    if raw.schema_version != Some(2) {
        return Err(protocol(
            what,
            format!(
                "schemaVersion {} is not supported (only 2: OCI or Docker schema 2)",
                raw.schema_version
                    .map_or("missing".into(), |v| v.to_string())
            ),
        ));
    }
    // The body's mediaType wins over the header (a cache may rewrite headers); without either,
    // the shape decides (OCI's mediaType is optional).
    let media = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .filter(|m| !m.is_empty() && m != "application/json");
    let is_index = match media.as_deref() {
        Some(MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST) => true,
        Some(MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST) => false,
        Some(m) => {
            return Err(protocol(
                what,
                format!("unsupported manifest media type \"{}\"", short(m)),
            ))
        }
        None => raw.manifests.is_some() && raw.layers.is_none(),
    };
    if is_index {
        if raw.layers.is_some() {
            return Err(protocol(what, "an index with layers"));
        }
        let manifests = raw
            .manifests
            .ok_or_else(|| protocol(what, "an index without manifests"))?
            .into_iter()
            .map(|d| descriptor(what, d))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Document::Index { manifests });
    }
    if raw.manifests.is_some() {
        return Err(protocol(what, "a manifest with a manifests list"));
    }
    if let Some(c) = raw.config {
        descriptor(what, c)?;
    } else {
        return Err(protocol(what, "the manifest has no config descriptor"));
    }
    let layers = raw
        .layers
        .ok_or_else(|| protocol(what, "the manifest has no layers"))?
        .into_iter()
        .map(|d| descriptor(what, d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Document::Manifest { layers })
}

/// `linux/amd64` (the platform names of the OCI spec for this build's architecture).
pub fn this_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// The index entry for `(os, arch)`; an index of one entry without a platform (an artifact
/// index) is that entry. Several entries for the platform must all be the same manifest.
pub fn select_platform<'a>(
    what: &str,
    manifests: &'a [Descriptor],
    (os, arch): (&str, &str),
) -> Result<&'a Descriptor, OciError> {
    let matching: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .collect();
    let chosen = match matching.as_slice() {
        [] => match manifests {
            [only] if only.platform.is_none() => only,
            _ => {
                let have: Vec<String> = manifests
                    .iter()
                    .take(16)
                    .map(|d| {
                        d.platform.as_ref().map_or("(no platform)".into(), |p| {
                            format!("{}/{}", short(&p.os), short(&p.architecture))
                        })
                    })
                    .collect();
                return Err(OciError::NoPlatform {
                    what: what.into(),
                    platform: format!("{os}/{arch}"),
                    have: have.join(", "),
                });
            }
        },
        [first, rest @ ..] => {
            if rest.iter().any(|d| d.digest != first.digest) {
                return Err(OciError::Ambiguous {
                    what: what.into(),
                    count: matching.len(),
                    layers: format!("manifests for {os}/{arch}"),
                });
            }
            first
        }
    };
    if !matches!(
        chosen.media_type.as_str(),
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST
    ) {
        return Err(protocol(
            what,
            format!(
                "the {os}/{arch} entry is a \"{}\", not an image manifest",
                short(&chosen.media_type)
            ),
        ));
    }
    Ok(chosen)
}

/// The root layer and, when present, its minisign signature layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub root: Descriptor,
    pub signature: Option<Descriptor>,
}

fn is_root_media_type(m: &str) -> bool {
    matches!(
        m,
        MEDIA_SQUASHFS | MEDIA_EROFS | MEDIA_EXT4 | MEDIA_IRONCORE_SQUASHFS
    )
}

/// Layer media types that are compressed: rustlive mounts blobs as they are, so a title
/// annotation on one of these does not make it a root image.
fn is_compressed(m: &str) -> bool {
    m.ends_with("+gzip")
        || m.ends_with("+zstd")
        || m.ends_with(".tar.gzip")
        || m.ends_with("+encrypted")
}

fn is_tar_layer(m: &str) -> bool {
    m.starts_with("application/vnd.oci.image.layer.")
        || m.starts_with("application/vnd.docker.image.rootfs.")
}

fn titled_root(d: &Descriptor) -> bool {
    !is_compressed(&d.media_type)
        && d.media_type != MEDIA_MINISIG
        && d.title().is_some_and(|t| {
            [".squashfs", ".sqfs", ".erofs", ".img"]
                .iter()
                .any(|ext| t.ends_with(ext))
        })
}

/// Chooses the root layer: exactly one layer of a rustlive or IronCore root media type, else
/// exactly one (uncompressed) layer whose title ends in `.squashfs`, `.sqfs`, `.erofs` or
/// `.img`. Tar layers only: an ordinary container image, refused with a hint.
pub fn select_layers(what: &str, layers: &[Descriptor]) -> Result<Selection, OciError> {
    let list = || {
        let mut v: Vec<String> = layers.iter().take(8).map(Descriptor::describe).collect();
        if layers.len() > 8 {
            v.push(format!("… {} in all", layers.len()));
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    };
    let by_type: Vec<&Descriptor> = layers
        .iter()
        .filter(|d| is_root_media_type(&d.media_type))
        .collect();
    let candidates = if by_type.is_empty() {
        layers.iter().filter(|d| titled_root(d)).collect()
    } else {
        by_type
    };
    let root = match candidates.as_slice() {
        [one] => (*one).clone(),
        [] if !layers.is_empty() && layers.iter().all(|d| is_tar_layer(&d.media_type)) => {
            return Err(OciError::ContainerImage {
                what: what.into(),
                layers: list(),
            })
        }
        [] => {
            return Err(OciError::NoRootLayer {
                what: what.into(),
                layers: list(),
            })
        }
        many => {
            return Err(OciError::Ambiguous {
                what: what.into(),
                count: many.len(),
                layers: list(),
            })
        }
    };
    if root.size == 0 {
        return Err(protocol(what, "the root layer is empty (size 0)"));
    }
    let sigs: Vec<&Descriptor> = layers
        .iter()
        .filter(|d| {
            d.digest != root.digest
                && (d.media_type == MEDIA_MINISIG
                    || d.title().is_some_and(|t| t.ends_with(".minisig")))
        })
        .collect();
    let signature = match sigs.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => {
            return Err(OciError::Ambiguous {
                what: what.into(),
                count: many.len(),
                layers: "signature layers".into(),
            })
        }
    };
    if let Some(s) = &signature {
        if s.size > 64 << 10 {
            return Err(protocol(
                what,
                format!(
                    "the signature layer is {} bytes; a minisign signature is under 1 KiB",
                    s.size
                ),
            ));
        }
    }
    Ok(Selection { root, signature })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn dg(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest(layers: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_EMPTY, "digest": dg('4'), "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    fn layers_of(body: &[u8]) -> Result<Selection, OciError> {
        match parse("t", body, None)? {
            Document::Manifest { layers } => select_layers("t", &layers),
            Document::Index { .. } => panic!("not a manifest"),
        }
    }

    #[test]
    fn rustlive_and_ironcore_layers() {
        let s = layers_of(&manifest(json!([
            {"mediaType": MEDIA_SQUASHFS, "digest": dg('a'), "size": 4096},
            {"mediaType": MEDIA_MINISIG, "digest": dg('b'), "size": 300},
        ])))
        .unwrap();
        assert_eq!(s.root.digest.to_hex(), "a".repeat(64));
        assert_eq!(s.root.size, 4096);
        assert_eq!(s.signature.unwrap().size, 300);
        let s = layers_of(&manifest(json!([
            {"mediaType": "application/vnd.ironcore.image.rootfs.v1alpha1.rootfs", "digest": dg('c'), "size": 9},
            {"mediaType": MEDIA_IRONCORE_SQUASHFS, "digest": dg('d'), "size": 10},
        ])))
        .unwrap();
        assert_eq!(s.root.digest.to_hex(), "d".repeat(64));
        assert_eq!(s.signature, None);
    }

    #[test]
    fn title_annotation_rule() {
        let s = layers_of(&manifest(json!([
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg('a'), "size": 5,
             "annotations": {ANNOTATION_TITLE: "compute.sqfs"}},
            {"mediaType": "application/octet-stream", "digest": dg('b'), "size": 5,
             "annotations": {ANNOTATION_TITLE: "compute.sqfs.minisig"}},
        ])))
        .unwrap();
        assert_eq!(s.root.digest.to_hex(), "a".repeat(64));
        assert!(s.signature.is_some());
        // A compressed layer is never mounted as is, whatever its title.
        let e = layers_of(&manifest(json!([
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg('a'), "size": 5,
             "annotations": {ANNOTATION_TITLE: "root.img"}},
        ])))
        .unwrap_err();
        assert!(matches!(e, OciError::ContainerImage { .. }), "{e}");
    }

    #[test]
    fn container_images_missing_and_ambiguous_layers() {
        let e = layers_of(&manifest(json!([
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": dg('a'), "size": 5},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": dg('b'), "size": 5},
        ])))
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("ordinary container image") && msg.contains("rustlive publish"),
            "{msg}"
        );
        let e = layers_of(&manifest(json!([]))).unwrap_err();
        assert!(matches!(e, OciError::NoRootLayer { .. }), "{e}");
        let e = layers_of(&manifest(json!([
            {"mediaType": "application/x-unknown", "digest": dg('a'), "size": 5},
        ])))
        .unwrap_err();
        assert!(e.to_string().contains("application/x-unknown"), "{e}");
        let e = layers_of(&manifest(json!([
            {"mediaType": MEDIA_SQUASHFS, "digest": dg('a'), "size": 5},
            {"mediaType": MEDIA_EROFS, "digest": dg('b'), "size": 5},
        ])))
        .unwrap_err();
        assert!(matches!(e, OciError::Ambiguous { count: 2, .. }), "{e}");
    }

    #[test]
    fn hostile_documents() {
        // Too large, not JSON, wrong schema, bad digests and sizes, confused shapes.
        let huge = vec![b' '; MANIFEST_MAX + 1];
        assert!(parse("t", &huge, None)
            .unwrap_err()
            .to_string()
            .contains("larger"));
        assert!(parse("t", b"{not json", None).is_err());
        assert!(parse("t", br#"{"schemaVersion":1,"fsLayers":[]}"#, None).is_err());
        for (digest, size) in [
            (json!("sha512:".to_string() + &"a".repeat(128)), json!(1)),
            (json!("sha256:abc"), json!(1)),
            (json!("sha256:".to_string() + &"A".repeat(64)), json!(1)),
            (json!(dg('a')), json!(-1)),
            (json!(dg('a')), json!("12")),
            (json!(dg('a')), json!(1e30)),
            (json!(7), json!(1)),
        ] {
            let body =
                manifest(json!([{"mediaType": MEDIA_SQUASHFS, "digest": digest, "size": size}]));
            assert!(
                layers_of(&body).is_err(),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let e = layers_of(&manifest(
            json!([{"mediaType": MEDIA_SQUASHFS, "digest": dg('a'), "size": 0}]),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        // A huge declared size parses; the RAM check refuses it before any byte is fetched.
        let s = layers_of(&manifest(
            json!([{"mediaType": MEDIA_SQUASHFS, "digest": dg('a'), "size": u64::MAX}]),
        ))
        .unwrap();
        assert_eq!(s.root.size, u64::MAX);
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
            "manifests": [], "layers": []}))
        .unwrap();
        assert!(parse("t", &body, None).is_err());
        let body = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": "application/vnd.evil+json",
            "layers": []}),
        )
        .unwrap();
        assert!(parse("t", &body, None)
            .unwrap_err()
            .to_string()
            .contains("vnd.evil"));
        let e = layers_of(&manifest(json!([
            {"mediaType": MEDIA_SQUASHFS, "digest": dg('a'), "size": 5},
            {"mediaType": MEDIA_MINISIG, "digest": dg('b'), "size": 1 << 30},
        ])))
        .unwrap_err();
        assert!(e.to_string().contains("signature layer"), "{e}");
    }

    /// Every value of a manifest or index that an error names comes out escaped: no control
    /// character of the registry's reaches a message.
    #[test]
    fn values_from_the_registry_are_escaped_in_errors() {
        const EVIL: &str = "x\u{1b}[2J\r\u{0}\u{7}\u{9b}\nrustlive: error: forged";
        let clean = |e: OciError| {
            let m = crate::support::exit::report(&e);
            assert!(!m.chars().any(crate::support::log::needs_escape), "{m:?}");
            // Our escape, or serde's own when it quotes the value.
            assert!(m.contains("\\x1b[2J") || m.contains("u{1b}[2J"), "{m:?}");
        };
        // No root layer: the media types and titles listed.
        clean(
            layers_of(&manifest(json!([
                {"mediaType": EVIL, "digest": dg('a'), "size": 5,
                 "annotations": {ANNOTATION_TITLE: EVIL}},
            ])))
            .unwrap_err(),
        );
        // Ambiguous: two titled candidates.
        clean(
            layers_of(&manifest(json!([
                {"mediaType": EVIL, "digest": dg('a'), "size": 5,
                 "annotations": {ANNOTATION_TITLE: "a.squashfs"}},
                {"mediaType": EVIL, "digest": dg('b'), "size": 5,
                 "annotations": {ANNOTATION_TITLE: "b.squashfs"}},
            ])))
            .unwrap_err(),
        );
        // An unsupported manifest media type; a value serde quotes.
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": EVIL})).unwrap();
        clean(parse("t", &body, None).unwrap_err());
        let body = serde_json::to_vec(&json!({"schemaVersion": EVIL})).unwrap();
        clean(parse("t", &body, None).unwrap_err());
        // An index: the platforms it has, and an entry of another media type.
        let entry = |media: &str, os: &str, arch: &str| Descriptor {
            media_type: media.into(),
            digest: crate::fetch::verify::sha256(b"m"),
            size: 1,
            annotations: BTreeMap::new(),
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
        };
        clean(
            select_platform(
                "t",
                &[entry(MEDIA_OCI_MANIFEST, EVIL, EVIL)],
                ("linux", "amd64"),
            )
            .unwrap_err(),
        );
        clean(
            select_platform("t", &[entry(EVIL, "linux", "amd64")], ("linux", "amd64")).unwrap_err(),
        );
        // A root layer chosen by its title: its media type, as the info line shows it.
        let s = layers_of(&manifest(json!([
            {"mediaType": EVIL, "digest": dg('a'), "size": 5,
             "annotations": {ANNOTATION_TITLE: "root.squashfs"}},
        ])))
        .unwrap();
        assert!(!short(&s.root.media_type)
            .chars()
            .any(crate::support::log::needs_escape));
    }

    #[test]
    fn indexes_and_platforms() {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [
                {"mediaType": MEDIA_OCI_MANIFEST, "digest": dg('1'), "size": 300,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": MEDIA_OCI_MANIFEST, "digest": dg('2'), "size": 300,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }))
        .unwrap();
        let Document::Index { manifests } = parse("t", &body, None).unwrap() else {
            panic!("an index")
        };
        let d = select_platform("t", &manifests, ("linux", "amd64")).unwrap();
        assert_eq!(d.digest.to_hex(), "2".repeat(64));
        let e = select_platform("t", &manifests, ("linux", "riscv64")).unwrap_err();
        assert!(e.to_string().contains("linux/arm64, linux/amd64"), "{e}");
        // An artifact index: one entry, no platform.
        let one = vec![Descriptor {
            platform: None,
            ..manifests[0].clone()
        }];
        assert!(select_platform("t", &one, ("linux", "amd64")).is_ok());
        // Two different manifests for the same platform.
        let mut two = manifests.clone();
        two[0].platform = two[1].platform.clone();
        assert!(matches!(
            select_platform("t", &two, ("linux", "amd64")),
            Err(OciError::Ambiguous { .. })
        ));
        // An index pointing at an index is not followed.
        let mut nested = manifests.clone();
        nested[1].media_type = MEDIA_OCI_INDEX.into();
        assert!(select_platform("t", &nested, ("linux", "amd64")).is_err());
        // No mediaType in the body: the shape and the header decide.
        let body = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse("t", body, None), Ok(Document::Index { .. })));
        let body = serde_json::to_vec(&json!({"schemaVersion": 2,
            "config": {"mediaType": MEDIA_EMPTY, "digest": dg('4'), "size": 2}, "layers": []}))
        .unwrap();
        assert!(matches!(
            parse(
                "t",
                &body,
                Some("application/vnd.oci.image.manifest.v1+json; charset=x")
            ),
            Ok(Document::Manifest { .. })
        ));
        assert_eq!(this_platform().0, "linux");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = parse("t", s.as_bytes(), None);
        }

        #[test]
        fn arbitrary_layer_lists_select_at_most_one(
            types in proptest::collection::vec(
                prop_oneof![
                    Just(MEDIA_SQUASHFS), Just(MEDIA_EROFS), Just(MEDIA_MINISIG),
                    Just("application/vnd.oci.image.layer.v1.tar+gzip"),
                    Just("application/octet-stream"),
                ], 0..6),
            titles in proptest::collection::vec(proptest::option::of("[a-z]{1,5}\\.(squashfs|img|txt|minisig)"), 6),
        ) {
            let layers: Vec<serde_json::Value> = types.iter().enumerate().map(|(i, t)| {
                let mut v = json!({"mediaType": t, "digest": format!("sha256:{:064x}", i + 1), "size": 10});
                if let Some(Some(title)) = titles.get(i) {
                    v["annotations"] = json!({ANNOTATION_TITLE: title});
                }
                v
            }).collect();
            if let Ok(s) = layers_of(&manifest(serde_json::Value::Array(layers))) {
                prop_assert!(s.root.size > 0);
                prop_assert!(s.signature.as_ref().is_none_or(|x| x.digest != s.root.digest));
            }
        }
    }
}
