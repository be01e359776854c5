//! What the downloaded bytes must be: SHA-256 pins, `sha256sum`-format lists, and minisign
//! signatures checked against the keys installed in the initramfs.
//!
//! Hashing is incremental ([`Digests`]) so the fetch engine verifies on the same pass that
//! writes the file; nothing here holds the image in memory.

use crate::support::values::{parse_sha256, Sha256Hex};
use minisign_verify::{PublicKey, Signature};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where the dracut module installs the trusted minisign public keys.
pub const KEYS_DIR: &str = "/etc/rustlive/keys";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("SHA-256 mismatch for {what}: expected {expected}, got {actual}")]
    Sha256Mismatch {
        what: String,
        expected: Sha256Hex,
        actual: Sha256Hex,
    },
    #[error("the minisign signature of {what} does not verify with any trusted key")]
    BadSignature {
        what: String,
        #[source]
        source: minisign_verify::Error,
    },
    #[error("the signature {url} cannot be parsed as a minisign signature")]
    SignatureFormat {
        url: String,
        #[source]
        source: minisign_verify::Error,
    },
    #[error(
        "the signature {url} is a legacy (non-prehashed) minisign signature; re-sign the image \
         with a current minisign, which prehashes by default"
    )]
    LegacySignature { url: String },
    #[error("a trusted signing key is installed but the signature {url} could not be fetched")]
    SignatureMissing {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read the trusted key {path}")]
    KeyRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a minisign public key")]
    KeyFormat {
        path: PathBuf,
        #[source]
        source: minisign_verify::Error,
    },
    #[error("{url} has no line for {name}")]
    SumsNoEntry { url: String, name: String },
    #[error("{url} has {count} different hashes for {name}")]
    SumsAmbiguous {
        url: String,
        name: String,
        count: usize,
    },
    #[error(
        "rd.rustlive.verify=required but no hash, checksum list or signing key covers the image"
    )]
    Unverifiable,
}

/// A trusted minisign key and the file it came from, so that a summary can say which key
/// signed the image.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: PublicKey,
    /// The key id as minisign prints it (16 uppercase hex digits).
    pub id: String,
    /// The key file's name (without its directory), escaped for logging.
    pub file: String,
}

/// Trusted minisign keys: every `*.pub` in `dir`, sorted by name. A missing directory means no
/// keys (signatures are then optional); an unreadable or malformed key file is an error, never
/// silently skipped, because skipping it could turn "signature required" into "optional".
pub fn load_trusted_dir(dir: &Path) -> Result<Vec<TrustedKey>, VerifyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(VerifyError::KeyRead {
                path: dir.into(),
                source,
            })
        }
    };
    let mut paths = Vec::new();
    for e in entries {
        let e = e.map_err(|source| VerifyError::KeyRead {
            path: dir.into(),
            source,
        })?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pub") {
            paths.push(p);
        }
    }
    paths.sort();
    paths.iter().map(|p| load_trusted(p)).collect()
}

/// [`load_trusted_dir`] without the file names (the sealed-bundle keys).
pub fn load_keys_dir(dir: &Path) -> Result<Vec<PublicKey>, VerifyError> {
    Ok(load_trusted_dir(dir)?.into_iter().map(|k| k.key).collect())
}

/// One minisign public key file (`untrusted comment:` line + base64 line, or the bare base64).
pub fn load_trusted(path: &Path) -> Result<TrustedKey, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| VerifyError::KeyRead {
        path: path.into(),
        source,
    })?;
    let key = parse_key(&text).map_err(|source| VerifyError::KeyFormat {
        path: path.into(),
        source,
    })?;
    let file = path
        .file_name()
        .map(|n| crate::support::log::escaped(&n.to_string_lossy()))
        .unwrap_or_default();
    Ok(TrustedKey {
        key,
        id: key_id(&text).unwrap_or_else(|| "(unknown id)".into()),
        file,
    })
}

/// [`load_trusted`] without the file name.
pub fn load_key(path: &Path) -> Result<PublicKey, VerifyError> {
    load_trusted(path).map(|k| k.key)
}

/// The key id of a minisign key or signature (the base64 line: 2 bytes of algorithm, then the
/// 8-byte key number), printed as minisign prints it: the little-endian number in hex.
pub fn key_id(text: &str) -> Option<String> {
    use base64::Engine as _;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    let id: [u8; 8] = raw.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}

fn parse_key(text: &str) -> Result<PublicKey, minisign_verify::Error> {
    let t = text.trim();
    if t.starts_with("untrusted comment:") {
        PublicKey::decode(t)
    } else {
        PublicKey::from_base64(t)
    }
}

/// Parses a downloaded `.minisig`. Legacy signatures cannot be checked while streaming (they
/// sign the whole file, not its hash), so they are refused with a hint.
pub fn parse_signature(text: &str, url: &str) -> Result<Signature, VerifyError> {
    let sig = Signature::decode(text).map_err(|source| VerifyError::SignatureFormat {
        url: url.into(),
        source,
    })?;
    Ok(sig)
}

/// The hash `sha256sum`-format text gives for `name`. Accepts `HASH  NAME`, `HASH *NAME`
/// (binary mode), `HASH NAME`, `./NAME` and path prefixes (`images/NAME`), and BSD
/// `SHA256 (NAME) = HASH`; CRLF line ends. The name is the rest of the line verbatim, as
/// `sha256sum` writes it (a trailing space is part of a name, not something to trim away).
/// Several lines for the same name must agree.
pub fn parse_sha256sums(text: &str, name: &str, url: &str) -> Result<Sha256Hex, VerifyError> {
    let mut found: Vec<Sha256Hex> = Vec::new();
    for line in text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        let line = line.trim_start();
        let (hash, file) = if let Some(rest) = line.strip_prefix("SHA256 (") {
            match rest.rsplit_once(") = ") {
                Some((f, h)) => (h.trim_end(), f),
                None => continue,
            }
        } else {
            match line.split_once([' ', '\t']) {
                // One separator, then the mode character: ' ' (text) or '*' (binary).
                Some((h, f)) => (h, f.strip_prefix([' ', '*']).unwrap_or(f)),
                None => continue,
            }
        };
        let base = file.rsplit('/').next().unwrap_or(file);
        if base != name {
            continue;
        }
        if let Ok(h) = parse_sha256(hash) {
            if !found.contains(&h) {
                found.push(h);
            }
        }
    }
    match (found.first(), found.len()) {
        (None, _) => Err(VerifyError::SumsNoEntry {
            url: url.into(),
            name: name.into(),
        }),
        (Some(h), 1) => Ok(*h),
        (_, count) => Err(VerifyError::SumsAmbiguous {
            url: url.into(),
            name: name.into(),
            count,
        }),
    }
}

/// A minisign signature and the trusted key it names.
#[derive(Clone)]
pub struct SignatureCheck {
    pub key: PublicKey,
    pub signature: Signature,
    /// Where the signature came from, for messages.
    pub url: String,
    /// The key's id and file, for the summary.
    pub key_id: String,
    pub key_file: String,
}

impl SignatureCheck {
    /// Picks the trusted key that made `signature` (minisign embeds the key id).
    pub fn new(keys: &[TrustedKey], signature: Signature, url: &str) -> Result<Self, VerifyError> {
        let mut last = minisign_verify::Error::UnexpectedKeyId;
        for k in keys {
            match k.key.verify_stream(&signature) {
                Ok(_) => {
                    return Ok(SignatureCheck {
                        key: k.key.clone(),
                        signature,
                        url: url.into(),
                        key_id: k.id.clone(),
                        key_file: k.file.clone(),
                    })
                }
                Err(minisign_verify::Error::UnsupportedLegacyMode) => {
                    return Err(VerifyError::LegacySignature { url: url.into() })
                }
                Err(e) => last = e,
            }
        }
        Err(VerifyError::BadSignature {
            what: url.into(),
            source: last,
        })
    }
}

/// What the bytes must match.
#[derive(Clone, Default)]
pub struct Expected {
    /// Every hash that applies (`rd.rustlive.sha256`, the `sha256sums` line); all must match.
    pub sha256: Vec<Sha256Hex>,
    pub signature: Option<SignatureCheck>,
    /// Where each of them came from, for the summary line ([`describe`]).
    pub checks: Vec<Check>,
}

/// One thing a fetched file was checked against, as the summary line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The SHA-256 given with the URL (`rd.rustlive.sha256`, `fetch --sha256`).
    Pinned,
    /// The line naming the file in this `sha256sum` list (its URL, redacted).
    Sums { url: String },
    /// A minisign signature by this trusted key (id, file name).
    Signature { key_id: String, key_file: String },
    /// An OCI layer's digest, from a manifest pinned by digest (`pinned`) or named by a tag,
    /// which is only as trustworthy as the connection to the registry.
    Layer { pinned: bool },
}

/// What vouched for a file, for the summary line and the boot log: `verified by the pinned
/// sha256, sha256sums URL, minisign signature by key ID (FILE)`, or plainly that nothing did.
pub fn describe(checks: &[Check]) -> String {
    let by: Vec<String> = checks
        .iter()
        .filter_map(|c| match c {
            Check::Pinned => Some("the pinned sha256".to_string()),
            Check::Sums { url } => Some(format!("sha256sums {url}")),
            Check::Signature { key_id, key_file } => {
                Some(format!("minisign signature by key {key_id} ({key_file})"))
            }
            Check::Layer { pinned: true } => {
                Some("the layer digest of a manifest pinned by digest".to_string())
            }
            Check::Layer { pinned: false } => None,
        })
        .collect();
    if !by.is_empty() {
        return format!("verified by {}", by.join(", "));
    }
    let mut s = "not verified: no hash or signature configured".to_string();
    if checks.contains(&Check::Layer { pinned: false }) {
        s.push_str(" (the layer digest of a manifest named by tag guards only against corruption)");
    }
    s
}

impl Expected {
    /// Whether any hash or signature pins the content.
    pub fn pins(&self) -> bool {
        !self.sha256.is_empty() || self.signature.is_some()
    }

    pub fn digests(&self) -> Digests<'_> {
        Digests {
            sha256: Sha256::new(),
            // SignatureCheck::new matched key and signature, so this is Ok; were it not, the
            // error surfaces in finish() as a bad signature instead of a panic.
            minisign: self
                .signature
                .as_ref()
                .map(|s| s.key.verify_stream(&s.signature)),
            expected: self,
        }
    }
}

/// The running hashes of one pass over the bytes.
pub struct Digests<'a> {
    sha256: Sha256,
    minisign: Option<Result<minisign_verify::StreamVerifier<'a>, minisign_verify::Error>>,
    expected: &'a Expected,
}

impl Digests<'_> {
    pub fn update(&mut self, buf: &[u8]) {
        self.sha256.update(buf);
        if let Some(Ok(m)) = &mut self.minisign {
            m.update(buf);
        }
    }

    /// Starts over (the server sent the whole file again).
    pub fn reset(&mut self) {
        *self = self.expected.digests();
    }

    /// Checks every expectation; returns the SHA-256 of the bytes either way it can.
    pub fn finish(self, what: &str) -> Result<Sha256Hex, VerifyError> {
        let actual = Sha256Hex(self.sha256.finalize().into());
        for e in &self.expected.sha256 {
            if *e != actual {
                return Err(VerifyError::Sha256Mismatch {
                    what: what.into(),
                    expected: *e,
                    actual,
                });
            }
        }
        if let Some(m) = self.minisign {
            m.and_then(|mut m| m.finalize())
                .map_err(|source| VerifyError::BadSignature {
                    what: what.into(),
                    source,
                })?;
        }
        Ok(actual)
    }
}

/// SHA-256 of a byte slice, as used for small downloads (sums lists, secrets bundles).
pub fn sha256(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with minisign 0.11: `minisign -G -W`, then `minisign -S` (prehashed) and
    // `minisign -S -l` (legacy) of the four bytes "test".
    const PUBKEY: &str = "untrusted comment: minisign public key 9DEBB95DA0B4AD10\nRWQQrbSgXbnrnWo0wShV+Fn/XN1qY1qB2l7vEQmKQGPQhpW8omxjZigc\n";
    const SIG: &str = "untrusted comment: signature from minisign secret key
RUQQrbSgXbnrnTQwPd1O+Ghm36e1Ymyv6nA0bvec01MUvj/ft3RuQZv3Y/T9ivo9OpYa9j7WFWtGi+0XJmzcn+B8lYLa4nFh2Aw=
trusted comment: timestamp:1795627335\tfile:t\thashed
vzoCqRQHclV4nMJhiMmQITOCg+ZiLGB0cZR55kWOy0TjwkBe7YOL0Z/jkj625Bdoa8BkD9V/j9VWnBBAfhQ4Cg==
";
    const LEGACY_SIG: &str = "untrusted comment: signature from minisign secret key
RWQQrbSgXbnrnb0tfVSdCRtrKBPdC8awa7iczkM8tvv9StdcnQxj35tvvCARMLyv/a0d7cCxEVKU5rpCTld9x6LalkuipB+E8wo=
trusted comment: timestamp:1795627336\tfile:t
HYGYWEVlc0olRgaRtM94S05mv9TT01q74aoCzQAXhTSjqAApt4K0aHQbJwhwDP5g54hD/rlZTgPY9FRx5a35Bg==
";

    fn trusted(text: &str) -> TrustedKey {
        TrustedKey {
            key: parse_key(text).unwrap(),
            id: key_id(text).unwrap(),
            file: "site.pub".into(),
        }
    }

    fn expect_sig() -> Result<Expected, VerifyError> {
        let sig = parse_signature(SIG, "t.minisig")?;
        Ok(Expected {
            signature: Some(SignatureCheck::new(&[trusted(PUBKEY)], sig, "t.minisig")?),
            ..Expected::default()
        })
    }

    #[test]
    fn streamed_signature() {
        let exp = expect_sig().unwrap();
        assert!(exp.pins());
        let mut d = exp.digests();
        d.update(b"te");
        d.update(b"st");
        d.finish("t").unwrap();
        let mut d = exp.digests();
        d.update(b"tesT");
        assert!(matches!(
            d.finish("t"),
            Err(VerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn signature_needs_a_matching_key_and_prehash() {
        let other = trusted("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3");
        let sig = parse_signature(SIG, "t.minisig").unwrap();
        assert!(matches!(
            SignatureCheck::new(&[other], sig, "t.minisig"),
            Err(VerifyError::BadSignature { .. })
        ));
        let legacy = parse_signature(LEGACY_SIG, "t.minisig").unwrap();
        assert!(matches!(
            SignatureCheck::new(&[trusted(PUBKEY)], legacy, "t.minisig"),
            Err(VerifyError::LegacySignature { .. })
        ));
        assert!(matches!(
            parse_signature("not a signature", "u"),
            Err(VerifyError::SignatureFormat { .. })
        ));
    }

    #[test]
    fn sums_formats() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let text =
            format!("{a}  other.img\n{b} *images/root.squashfs\n\nSHA256 (x.img) = {a}\ngarbage\n");
        assert_eq!(
            parse_sha256sums(&text, "root.squashfs", "u")
                .unwrap()
                .to_hex(),
            b
        );
        assert_eq!(parse_sha256sums(&text, "x.img", "u").unwrap().to_hex(), a);
        assert!(matches!(
            parse_sha256sums(&text, "missing.img", "u"),
            Err(VerifyError::SumsNoEntry { .. })
        ));
        let dup = format!("{a}  r.img\n{b}  ./r.img\n");
        assert!(matches!(
            parse_sha256sums(&dup, "r.img", "u"),
            Err(VerifyError::SumsAmbiguous { count: 2, .. })
        ));
        let same = format!("{a}  r.img\n{}  r.img\n", a.to_uppercase());
        assert_eq!(parse_sha256sums(&same, "r.img", "u").unwrap().to_hex(), a);
        let crlf = format!("{a}  r.img\r\n{b} r2.img\r\n");
        assert_eq!(parse_sha256sums(&crlf, "r.img", "u").unwrap().to_hex(), a);
        assert_eq!(parse_sha256sums(&crlf, "r2.img", "u").unwrap().to_hex(), b);
    }

    #[test]
    fn a_trailing_space_is_part_of_the_name() {
        // Found by tests/fetch_fuzz.rs (sha256sums_finds_its_line): the line for "b " was
        // trimmed into a second, conflicting hash for "b".
        let (a, b) = ("0".repeat(64), "1".repeat(64));
        let text = format!("{a}  b \n{b}  b\n");
        assert_eq!(parse_sha256sums(&text, "b", "u").unwrap().to_hex(), b);
        assert_eq!(parse_sha256sums(&text, "b ", "u").unwrap().to_hex(), a);
    }

    #[test]
    fn key_ids_are_minisigns() {
        // The id minisign printed in the key's comment, from the key and from its signature.
        assert_eq!(key_id(PUBKEY).unwrap(), "9DEBB95DA0B4AD10");
        assert_eq!(key_id(SIG).unwrap(), "9DEBB95DA0B4AD10");
        assert_eq!(
            key_id("RWQQrbSgXbnrnWo0wShV+Fn/XN1qY1qB2l7vEQmKQGPQhpW8omxjZigc").unwrap(),
            "9DEBB95DA0B4AD10"
        );
        assert_eq!(key_id("not base64!"), None);
        assert_eq!(key_id("AAAA"), None);
        let exp = expect_sig().unwrap();
        let s = exp.signature.unwrap();
        assert_eq!(
            (s.key_id.as_str(), s.key_file.as_str()),
            ("9DEBB95DA0B4AD10", "site.pub")
        );
    }

    #[test]
    fn the_summary_names_what_verified() {
        let sums = Check::Sums {
            url: "http://h/SHA256SUMS".into(),
        };
        let sig = Check::Signature {
            key_id: "9DEBB95DA0B4AD10".into(),
            key_file: "site.pub".into(),
        };
        assert_eq!(describe(&[Check::Pinned]), "verified by the pinned sha256");
        assert_eq!(
            describe(&[sums.clone(), sig.clone()]),
            "verified by sha256sums http://h/SHA256SUMS, minisign signature by key \
             9DEBB95DA0B4AD10 (site.pub)"
        );
        assert_eq!(
            describe(&[]),
            "not verified: no hash or signature configured"
        );
        assert!(describe(&[Check::Layer { pinned: false }])
            .starts_with("not verified: no hash or signature configured (the layer digest"));
        assert_eq!(
            describe(&[Check::Layer { pinned: true }]),
            "verified by the layer digest of a manifest pinned by digest"
        );
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digests_check_every_pin() {
        let good = sha256(b"hello");
        let exp = Expected {
            sha256: vec![good],
            ..Expected::default()
        };
        let mut d = exp.digests();
        d.update(b"hel");
        d.update(b"lo");
        assert_eq!(d.finish("img").unwrap(), good);

        let mut d = exp.digests();
        d.update(b"junk");
        d.reset();
        d.update(b"hello");
        assert_eq!(d.finish("img").unwrap(), good);

        let mut d = exp.digests();
        d.update(b"hellO");
        assert!(matches!(
            d.finish("img"),
            Err(VerifyError::Sha256Mismatch { .. })
        ));
    }

    #[test]
    fn keys_dir_loading() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_keys_dir(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
        std::fs::write(dir.path().join("site.pub"), PUBKEY).unwrap();
        std::fs::write(dir.path().join("README"), "not a key").unwrap();
        assert_eq!(load_keys_dir(dir.path()).unwrap().len(), 1);
        let k = load_trusted_dir(dir.path()).unwrap();
        assert_eq!(
            (k[0].id.as_str(), k[0].file.as_str()),
            ("9DEBB95DA0B4AD10", "site.pub")
        );
        std::fs::write(
            dir.path().join("bad.pub"),
            "untrusted comment: x\nnot base64!\n",
        )
        .unwrap();
        assert!(matches!(
            load_keys_dir(dir.path()),
            Err(VerifyError::KeyFormat { .. })
        ));
    }
}
