//! `rustlive publish IMAGE oci://HOST/REPO:TAG`: the boot server side. Pushes a squashfs,
//! erofs or ext4 image as a single-layer OCI artifact (empty config, the rustlive media type,
//! a title annotation), optionally its minisign signature as a second layer, and prints the
//! manifest digest and the kernel command line that boots it pinned.
//!
//! Blobs already in the repository are skipped (HEAD); an upload is one PUT (monolithic) or a
//! series of PATCHes (chunked, for registries or proxies that limit request sizes). The
//! manifest is built here, so its digest is known before the registry answers and checked
//! against the `Docker-Content-Digest` it returns.
//!
//! Everything runs under one deadline (`--timeout`, [`DEFAULT_TIMEOUT`]): every request is
//! bounded by what is left of it; a request that moves no blob (HEAD, POST, the manifest) and a
//! token request also by the stall timer, a token request by the minimum rate as well.

use crate::fetch::auth::Unauthorized;
use crate::fetch::watchdog::Limits;
use crate::fetch::{FetchOptions, RequestAuth};
use crate::oci::auth::{self, RegistryAuth};
use crate::oci::*;
use crate::support::deadline::Deadline;
use crate::support::values::Sha256Hex;
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use reqwest::Url;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to publish and how.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub image: PathBuf,
    pub signature: Option<PathBuf>,
    pub reference: Reference,
    /// Upload in PATCH chunks of this many bytes; `None`: one PUT.
    pub chunk: Option<u64>,
    pub credentials: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub insecure_tls: bool,
    /// The whole publish ends by this ([`DEFAULT_TIMEOUT`] from the command line).
    pub deadline: Deadline,
    /// A request that moves no blob gets nothing for this long: given up.
    pub stall: Duration,
}

/// `--timeout`'s default: room for a multi-GiB image over a slow link, and still an end.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The outcome: the pinned reference and what to put on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub manifest_digest: Sha256Hex,
    pub pinned: String,
    pub media_type: &'static str,
    pub layer_digest: Sha256Hex,
    /// Blobs that were already in the repository.
    pub skipped: usize,
}

impl Published {
    pub fn cmdline(&self) -> String {
        format!("root=live:{}", self.pinned)
    }
}

/// The layer media type from the file system's magic number.
pub fn media_type_of(head: &[u8]) -> Option<&'static str> {
    let at = |off: usize, magic: &[u8]| {
        off.checked_add(magic.len())
            .and_then(|end| head.get(off..end))
            == Some(magic)
    };
    if at(0, b"hsqs") {
        Some(MEDIA_SQUASHFS)
    } else if at(1024, &0xE0F5_E1E2u32.to_le_bytes()) {
        Some(MEDIA_EROFS)
    } else if at(1080, &0xEF53u16.to_le_bytes()) {
        Some(MEDIA_EXT4)
    } else {
        None
    }
}

fn rerr(path: &Path) -> impl Fn(std::io::Error) -> OciError + '_ {
    move |source| OciError::Read {
        path: path.into(),
        source,
    }
}

/// SHA-256 and length of a file, streamed.
fn digest_file(path: &Path) -> Result<(Sha256Hex, u64), OciError> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(rerr(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(rerr(path))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        len = len.saturating_add(n as u64);
    }
    Ok((Sha256Hex(h.finalize().into()), len))
}

/// A blob to push: a file or a few bytes.
enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

struct Pusher<'a> {
    client: Client,
    auth: RegistryAuth,
    r: &'a Reference,
    what: String,
    limits: Limits,
}

/// Whether a request carries or commits a blob: bounded by the deadline only (a large upload
/// takes long, and a registry may take long to commit it), not by the stall timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moves {
    Blob,
    Nothing,
}

impl Pusher<'_> {
    /// How long the next request may take, all of it (reqwest's per-request timeout covers
    /// connecting, sending, the answer and reading its body): what is left of the deadline,
    /// and at most the stall period unless it moves a blob.
    fn budget(&self, step: &str, moves: Moves) -> Result<Duration, OciError> {
        let left = self
            .limits
            .deadline
            .remaining()
            .unwrap_or(crate::fetch::client::MAX_WAIT)
            .min(crate::fetch::client::MAX_WAIT);
        if left.is_zero() {
            return Err(self.deadline_passed(step));
        }
        Ok(match moves {
            Moves::Blob => left,
            Moves::Nothing => left.min(self.limits.stall),
        })
    }

    fn deadline_passed(&self, step: &str) -> OciError {
        OciError::Deadline {
            what: self.what.clone(),
            step: step.into(),
        }
    }

    /// Sends the request `make` builds, with the registry's token, within its budget; on a
    /// 401 gets a token (under the same deadline) and sends it again (a few times at most).
    fn send(
        &self,
        step: &str,
        url: &Url,
        moves: Moves,
        make: &dyn Fn() -> Result<RequestBuilder, OciError>,
    ) -> Result<Response, OciError> {
        for _ in 0..4 {
            let req = make()?.timeout(self.budget(step, moves)?);
            let resp = req
                .headers(self.auth.headers(url))
                .send()
                .map_err(|source| {
                    if source.is_timeout() && self.limits.deadline.passed() {
                        return self.deadline_passed(step);
                    }
                    OciError::Http {
                        what: self.what.clone(),
                        step: step.into(),
                        source: source.without_url(),
                    }
                })?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                let u = Unauthorized {
                    url,
                    answered: resp.url(),
                    headers: resp.headers(),
                    limits: &self.limits,
                };
                let refreshed = self.auth.refresh(&self.client, &u);
                if self.limits.deadline.passed() {
                    return Err(self.deadline_passed(step));
                }
                if refreshed? {
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(OciError::Status {
            what: self.what.clone(),
            step: step.into(),
            status: StatusCode::UNAUTHORIZED,
        })
    }

    fn expect(&self, resp: Response, step: &str, ok: &[StatusCode]) -> Result<Response, OciError> {
        if ok.contains(&resp.status()) {
            Ok(resp)
        } else {
            let status = resp.status();
            let mut body = String::new();
            let _ = resp.take(512).read_to_string(&mut body);
            log::debug!("{step}: {status}: {}", short(body.trim()));
            Err(OciError::Status {
                what: self.what.clone(),
                step: step.into(),
                status,
            })
        }
    }

    fn location(&self, resp: &Response, base: &Url, step: &str) -> Result<Url, OciError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::Protocol {
                what: self.what.clone(),
                reason: format!("{step}: the registry sent no Location"),
            })?;
        base.join(loc).map_err(|e| OciError::Protocol {
            what: self.what.clone(),
            reason: format!("{step}: bad Location: {e}"),
        })
    }

    /// Whether the blob is already in the repository.
    fn exists(&self, d: &Sha256Hex) -> Result<bool, OciError> {
        let u = self.r.blob_url(d)?;
        let resp = self.send("HEAD blob", &u, Moves::Nothing, &|| {
            Ok(self.client.head(u.clone()))
        })?;
        Ok(resp.status() == StatusCode::OK)
    }

    /// Pushes one blob unless it is there. Returns whether it was skipped.
    fn push_blob(
        &self,
        d: &Sha256Hex,
        len: u64,
        src: &Source,
        chunk: Option<u64>,
    ) -> Result<bool, OciError> {
        if self.exists(d)? {
            log::info!("{}: blob {} already there", self.what, digest_str(d));
            return Ok(true);
        }
        let start = self.r.api("blobs/uploads/")?;
        let resp = self.send("POST upload", &start, Moves::Nothing, &|| {
            Ok(self.client.post(start.clone()).header(CONTENT_LENGTH, 0))
        })?;
        let resp = self.expect(resp, "POST upload", &[StatusCode::ACCEPTED])?;
        let mut loc = self.location(&resp, &start, "POST upload")?;
        let body = |off: u64, n: u64| -> Result<Body, OciError> {
            match src {
                Source::File(p) => {
                    let mut f = std::fs::File::open(p).map_err(rerr(p))?;
                    f.seek(SeekFrom::Start(off)).map_err(rerr(p))?;
                    Ok(Body::sized(f.take(n), n))
                }
                Source::Bytes(b) => {
                    let s = usize::try_from(off).unwrap_or(usize::MAX);
                    let e = usize::try_from(off.saturating_add(n)).unwrap_or(usize::MAX);
                    Ok(Body::from(b.get(s..e).unwrap_or_default().to_vec()))
                }
            }
        };
        let mut sent = 0u64;
        if let Some(size) = chunk.filter(|c| *c > 0 && *c < len) {
            while sent < len {
                let n = size.min(len.saturating_sub(sent));
                let (at, off) = (loc.clone(), sent);
                let resp = self.send("PATCH chunk", &at, Moves::Blob, &|| {
                    Ok(self
                        .client
                        .patch(at.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(
                            CONTENT_RANGE,
                            format!("{}-{}", off, off.saturating_add(n).saturating_sub(1)),
                        )
                        .header(CONTENT_LENGTH, n)
                        .body(body(off, n)?))
                })?;
                let resp = self.expect(resp, "PATCH chunk", &[StatusCode::ACCEPTED])?;
                loc = self.location(&resp, &at, "PATCH chunk")?;
                sent = sent.saturating_add(n);
            }
            log::info!(
                "{}: uploaded {} in {} chunks",
                self.what,
                crate::support::log::mib(len),
                len.div_ceil(size)
            );
        }
        let mut put = loc.clone();
        put.query_pairs_mut().append_pair("digest", &digest_str(d));
        let rest = len.saturating_sub(sent);
        let resp = self.send("PUT blob", &put, Moves::Blob, &|| {
            Ok(self
                .client
                .put(put.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, rest)
                .body(body(sent, rest)?))
        })?;
        self.expect(resp, "PUT blob", &[StatusCode::CREATED])?;
        Ok(false)
    }
}

/// The manifest of a rustlive artifact (deterministic: the same inputs give the same digest).
pub fn manifest_json(layers: &[(&str, Sha256Hex, u64, String)]) -> Vec<u8> {
    let empty = crate::fetch::verify::sha256(b"{}");
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(m, d, n, title)| {
            serde_json::json!({
                "mediaType": m,
                "digest": digest_str(d),
                "size": n,
                "annotations": { ANNOTATION_TITLE: title },
            })
        })
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": { "mediaType": MEDIA_EMPTY, "digest": digest_str(&empty), "size": 2 },
        "layers": layers,
    });
    serde_json::to_vec(&m).unwrap_or_default()
}

fn file_title(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root.img".into())
}

pub fn publish(o: &PublishOptions) -> Result<Published, OciError> {
    let r = &o.reference;
    let what = r.to_string();
    if r.pinned() {
        // The digest is the result of publishing, not an input.
        return Err(OciError::Protocol {
            what,
            reason:
                "publish to a tag (oci://HOST/REPO:TAG); the manifest digest is printed afterwards"
                    .into(),
        });
    }
    let mut head = vec![0u8; 4096];
    let n = {
        let mut f = std::fs::File::open(&o.image).map_err(rerr(&o.image))?;
        let mut got = 0;
        while got < head.len() {
            let Some(buf) = head.get_mut(got..) else {
                break;
            };
            let k = f.read(buf).map_err(rerr(&o.image))?;
            if k == 0 {
                break;
            }
            got = got.saturating_add(k);
        }
        got
    };
    head.truncate(n);
    let media_type = media_type_of(&head).ok_or_else(|| OciError::Protocol {
        what: o.image.display().to_string(),
        reason: "not a squashfs, erofs or ext4 image (no magic number found)".into(),
    })?;
    let (layer_digest, len) = digest_file(&o.image)?;
    let opts = FetchOptions {
        ca: o.ca.clone(),
        insecure_tls: o.insecure_tls,
        stall: o.stall,
        connect_timeout: o.stall.min(Duration::from_secs(15)),
        ..FetchOptions::default()
    };
    let client = opts.client(o.insecure_tls, false)?;
    let creds = match o.credentials.clone().or_else(auth::host_credentials_file) {
        Some(p) => auth::load_credentials(&p)?,
        None => Default::default(),
    };
    let p = Pusher {
        client,
        auth: RegistryAuth::new(creds, &r.repository, "pull,push"),
        r,
        what: what.clone(),
        limits: Limits {
            deadline: o.deadline,
            stall: o.stall,
            min_rate: opts.min_rate,
        },
    };
    let mut skipped = 0usize;
    let empty = b"{}";
    skipped = skipped.saturating_add(usize::from(p.push_blob(
        &crate::fetch::verify::sha256(empty),
        2,
        &Source::Bytes(empty),
        None,
    )?));
    skipped = skipped.saturating_add(usize::from(p.push_blob(
        &layer_digest,
        len,
        &Source::File(&o.image),
        o.chunk,
    )?));
    let mut layers = vec![(media_type, layer_digest, len, file_title(&o.image))];
    if let Some(sig) = &o.signature {
        let (d, n) = digest_file(sig)?;
        if n > 64 << 10 {
            return Err(OciError::Protocol {
                what: sig.display().to_string(),
                reason: "too large for a minisign signature".into(),
            });
        }
        skipped =
            skipped.saturating_add(usize::from(p.push_blob(&d, n, &Source::File(sig), None)?));
        layers.push((MEDIA_MINISIG, d, n, file_title(sig)));
    }
    let body = manifest_json(&layers);
    let manifest_digest = crate::fetch::verify::sha256(&body);
    let u = r.manifest_url(&r.target_str())?;
    let resp = p.send("PUT manifest", &u, Moves::Nothing, &|| {
        Ok(p.client
            .put(u.clone())
            .header(CONTENT_TYPE, MEDIA_OCI_MANIFEST)
            .body(body.clone()))
    })?;
    let resp = p.expect(resp, "PUT manifest", &[StatusCode::CREATED])?;
    if let Some(d) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if d != digest_str(&manifest_digest) {
            return Err(OciError::DigestMismatch {
                what,
                expected: digest_str(&manifest_digest),
                actual: short(d),
            });
        }
    }
    Ok(Published {
        manifest_digest,
        pinned: r.with_digest(&manifest_digest),
        media_type,
        layer_digest,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_by_magic() {
        let mut b = vec![0u8; 2048];
        assert_eq!(media_type_of(&b), None);
        b[..4].copy_from_slice(b"hsqs");
        assert_eq!(media_type_of(&b), Some(MEDIA_SQUASHFS));
        let mut b = vec![0u8; 2048];
        b[1024..1028].copy_from_slice(&[0xe2, 0xe1, 0xf5, 0xe0]);
        assert_eq!(media_type_of(&b), Some(MEDIA_EROFS));
        let mut b = vec![0u8; 2048];
        b[1080..1082].copy_from_slice(&[0x53, 0xef]);
        assert_eq!(media_type_of(&b), Some(MEDIA_EXT4));
        assert_eq!(media_type_of(b"hs"), None);
    }

    #[test]
    fn the_manifest_is_one_rustlive_pulls() {
        let d = crate::fetch::verify::sha256(b"img");
        let s = crate::fetch::verify::sha256(b"sig");
        let body = manifest_json(&[
            (MEDIA_SQUASHFS, d, 3, "root.squashfs".into()),
            (MEDIA_MINISIG, s, 3, "root.squashfs.minisig".into()),
        ]);
        assert_eq!(
            body,
            manifest_json(&[
                (MEDIA_SQUASHFS, d, 3, "root.squashfs".into()),
                (MEDIA_MINISIG, s, 3, "root.squashfs.minisig".into()),
            ])
        );
        let crate::oci::manifest::Document::Manifest { layers } =
            crate::oci::manifest::parse("t", &body, None).unwrap()
        else {
            panic!("a manifest")
        };
        let sel = crate::oci::manifest::select_layers("t", &layers).unwrap();
        assert_eq!(sel.root.digest, d);
        assert_eq!(sel.signature.unwrap().digest, s);
    }
}
