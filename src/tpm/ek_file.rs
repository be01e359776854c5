//! The EK file the boot server seals to (`bundle seal --ek FILE`, `build-all --seal-to
//! EK_DIR`): whatever `rustlive tpm ek` printed on the node, saved as is (`rustlive tpm ek >
//! n001.ek`, text or `--json`), or a lone PEM public key (`tpm2_createek -f pem`), or an EK
//! certificate (PEM or DER). What one command prints the next one takes, without editing.
//!
//! `tpm ek` prints every EK the TPM has (RSA 2048 and ECC P-256), each under an
//! `ek: KIND HANDLE name NAME` line, with its certificate when NV holds one. Either key opens a
//! bundle sealed to it (the envelope records which), so the one [`choose`] takes is the one the
//! node loads fastest at boot: a persistent one (provisioned at a handle) first, since a key
//! created as a primary is derived again on every boot; then ECC before RSA, since deriving an
//! RSA primary means a prime search that takes a slow TPM tens of seconds, ECC milliseconds.
//!
//! An edited file is refused rather than guessed at: a printed name that does not match the key
//! under it, a certificate holding another key than the one it follows, a header with no key,
//! or a PEM block of another kind (a private key saved here by mistake).

use super::ek::{hex, EkError, EkPublic};

/// One EK found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub key: EkPublic,
    /// `tpm ek` read it from a persistent handle (unknown, so false, for a lone PEM or cert).
    pub persistent: bool,
}

/// The EK to seal to in an EK file's bytes (see the module doc for which one).
pub fn parse(bytes: &[u8]) -> Result<EkPublic, EkError> {
    choose(&candidates(bytes)?).ok_or(EkError::NoKey)
}

/// The key [`parse`] takes among `keys`: persistent first, then ECC before RSA, then the first.
pub fn choose(keys: &[Enrolled]) -> Option<EkPublic> {
    let rank = |e: &Enrolled| (!e.persistent, matches!(e.key, EkPublic::Rsa(_)));
    keys.iter().min_by_key(|e| rank(e)).map(|e| e.key.clone())
}

/// Every EK the file holds, each once, in file order.
pub fn candidates(bytes: &[u8]) -> Result<Vec<Enrolled>, EkError> {
    let text = std::str::from_utf8(bytes).ok();
    let found = match text {
        Some(t) if t.trim_start().starts_with('{') => from_json(t)?,
        Some(t) if t.contains("-----BEGIN ") || t.contains("ek:") => from_text(t)?,
        // Neither text nor PEM: a DER certificate, or nothing we know.
        _ => vec![Enrolled {
            key: super::ek_from_certificate(bytes)?,
            persistent: false,
        }],
    };
    let mut out: Vec<Enrolled> = Vec::new();
    for e in found {
        match out.iter_mut().find(|o| o.key == e.key) {
            Some(o) => o.persistent |= e.persistent,
            None => out.push(e),
        }
    }
    if out.is_empty() {
        return Err(EkError::NoKey);
    }
    Ok(out)
}

/// One `ek:` entry of the text, or a PEM block outside any entry.
#[derive(Default)]
struct Entry {
    /// The header's line number, kind, whether a handle was given, and the printed name.
    header: Option<(usize, String, bool, String)>,
    public: Option<EkPublic>,
    cert: Option<EkPublic>,
}

fn bad(line: usize, what: impl Into<String>) -> EkError {
    EkError::File {
        line,
        what: what.into(),
    }
}

/// `tpm ek`'s text: `ek:` headers, each followed by its PUBLIC KEY and maybe its CERTIFICATE;
/// `uuid:`, `mac:`, `pcr:` and other lines are the site's inventory and ignored here.
fn from_text(text: &str) -> Result<Vec<Enrolled>, EkError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut current: Option<Entry> = None;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i.saturating_add(1), l));
    while let Some((n, line)) = lines.next() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("ek:") {
            entries.extend(current.take());
            current = Some(Entry {
                header: Some(header(n, rest)?),
                ..Entry::default()
            });
            continue;
        }
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut block = format!("{line}\n");
        loop {
            let Some((_, l)) = lines.next() else {
                return Err(bad(n, format!("the PEM block has no {end} line")));
            };
            let l = l.trim_end_matches('\r');
            block.push_str(l);
            block.push('\n');
            if l == end {
                break;
            }
        }
        let key = match label {
            "PUBLIC KEY" => EkPublic::from_pem(&block),
            "CERTIFICATE" => super::ek_from_certificate(block.as_bytes()),
            _ => {
                return Err(bad(
                    n,
                    "a PEM block other than PUBLIC KEY or CERTIFICATE (only the EK's public \
                     part belongs here)",
                ))
            }
        }
        .map_err(|e| bad(n, e.to_string()))?;
        // A block outside an `ek:` entry (a lone PEM file) is an entry of its own.
        if current.as_ref().is_none_or(|e| e.header.is_none()) {
            current = Some(Entry::default());
        }
        let Some(entry) = current.as_mut() else {
            continue;
        };
        let slot = if label == "PUBLIC KEY" {
            &mut entry.public
        } else {
            &mut entry.cert
        };
        if slot.is_some() {
            return Err(bad(n, format!("a second {label} in the same EK entry")));
        }
        *slot = Some(key);
        if entry.header.is_none() {
            entries.extend(current.take());
        }
    }
    entries.extend(current);
    entries.into_iter().map(checked).collect()
}

/// `ek: rsa2048 0x81010001 name 000b…` (the handle `(primary)` when it was created).
fn header(n: usize, rest: &str) -> Result<(usize, String, bool, String), EkError> {
    let f: Vec<&str> = rest.split_whitespace().collect();
    match f.as_slice() {
        [kind, handle, "name", name] => Ok((
            n,
            (*kind).to_string(),
            handle.starts_with("0x"),
            name.to_ascii_lowercase(),
        )),
        _ => Err(bad(
            n,
            "expected `ek: KIND HANDLE name NAME`, as `rustlive tpm ek` prints it",
        )),
    }
}

/// An entry's key, once its parts agree with each other.
fn checked(e: Entry) -> Result<Enrolled, EkError> {
    let line = e.header.as_ref().map_or(0, |h| h.0);
    let key = match (e.public, e.cert) {
        (Some(p), Some(c)) if p != c => {
            return Err(bad(
                line,
                "the EK certificate holds another key than the public key before it",
            ))
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => return Err(bad(line, "the `ek:` line is not followed by its key")),
    };
    let persistent = match e.header {
        None => false,
        Some((line, kind, persistent, name)) => {
            if kind != key.kind() {
                return Err(bad(line, format!("the key under it is {}", key.kind())));
            }
            if name != hex(&key.name()) {
                return Err(bad(
                    line,
                    "the EK's name does not match the key under it (was the file edited?)",
                ));
            }
            persistent
        }
    };
    Ok(Enrolled { key, persistent })
}

/// `tpm ek --json`: `{"keys": [{"type", "handle", "name", "public_pem", "certificate_pem"}]}`.
fn from_json(text: &str) -> Result<Vec<Enrolled>, EkError> {
    #[derive(serde::Deserialize)]
    struct Report {
        keys: Vec<Key>,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(rename = "type")]
        kind: String,
        handle: Option<String>,
        name: String,
        public_pem: String,
        certificate_pem: Option<String>,
    }
    let r: Report = serde_json::from_str(text).map_err(|e| {
        bad(
            e.line(),
            format!(
                "not the JSON of `rustlive tpm ek --json` (column {})",
                e.column()
            ),
        )
    })?;
    r.keys
        .into_iter()
        .map(|k| {
            let public = EkPublic::from_pem(&k.public_pem).map_err(|e| bad(0, e.to_string()))?;
            let cert = k
                .certificate_pem
                .map(|c| super::ek_from_certificate(c.as_bytes()))
                .transpose()
                .map_err(|e| bad(0, e.to_string()))?;
            checked(Entry {
                header: Some((0, k.kind, k.handle.is_some(), k.name.to_ascii_lowercase())),
                public: Some(public),
                cert,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub const RSA_PEM: &str = include_str!("testdata/ek-rsa.pem");

    /// A P-256 key that is not any TPM's (a fixed scalar).
    pub fn ecc() -> EkPublic {
        let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        EkPublic::Ecc(sk.public_key())
    }

    fn rsa() -> EkPublic {
        EkPublic::from_pem(RSA_PEM).unwrap()
    }

    /// The text `rustlive tpm ek` prints (see `secrets::enroll::render_text`).
    fn printed(rsa_handle: &str, ecc_handle: &str) -> String {
        format!(
            "uuid: 4c4c4544-0000-1000-8000-000000000001\nmac: eth0 52:54:00:12:34:56\n\
             ek: rsa2048 {rsa_handle} name {}\n{}ek: eccp256 {ecc_handle} name {}\n{}\
             pcr: sha256:7 {}\n",
            hex(&rsa().name()),
            rsa().to_pem(),
            hex(&ecc().name()),
            ecc().to_pem(),
            "00".repeat(32)
        )
    }

    #[test]
    fn tpm_ek_text_picks_the_persistent_then_the_ecc_key() {
        let t = printed("(primary)", "(primary)");
        assert_eq!(parse(t.as_bytes()).unwrap(), ecc());
        let t = printed("0x81010001", "(primary)");
        assert_eq!(parse(t.as_bytes()).unwrap(), rsa());
        let t = printed("0x81010001", "0x81010002");
        assert_eq!(parse(t.as_bytes()).unwrap(), ecc());
        assert_eq!(candidates(t.as_bytes()).unwrap().len(), 2);
        // CRLF line ends (a file copied through Windows) read the same.
        let crlf = t.replace('\n', "\r\n");
        assert_eq!(parse(crlf.as_bytes()).unwrap(), ecc());
    }

    #[test]
    fn a_lone_pem_or_certificate_still_reads() {
        assert_eq!(parse(RSA_PEM.as_bytes()).unwrap(), rsa());
        assert_eq!(parse(ecc().to_pem().as_bytes()).unwrap(), ecc());
        // Two lone keys concatenated: the same preference.
        let both = format!("{}{}", rsa().to_pem(), ecc().to_pem());
        assert_eq!(parse(both.as_bytes()).unwrap(), ecc());
        assert!(matches!(parse(b"garbage"), Err(EkError::Pem(_))));
        assert!(matches!(parse(b""), Err(EkError::Pem(_))));
    }

    #[test]
    fn json_output_reads_too() {
        let json = serde_json::json!({
            "uuid": null,
            "macs": [["eth0", "52:54:00:12:34:56"]],
            "keys": [
                {"type": "rsa2048", "handle": "0x81010001", "name": hex(&rsa().name()),
                 "public_pem": rsa().to_pem(), "certificate_pem": null},
                {"type": "eccp256", "handle": null, "name": hex(&ecc().name()),
                 "public_pem": ecc().to_pem(), "certificate_pem": null},
            ],
            "pcrs": [],
        });
        assert_eq!(parse(json.to_string().as_bytes()).unwrap(), rsa());
        let e = parse(b"{\"keys\": 3}").unwrap_err();
        assert!(e.to_string().contains("tpm ek --json"), "{e}");
    }

    #[test]
    fn an_edited_file_is_refused() {
        let t = printed("(primary)", "(primary)");
        // The name of one key over the other.
        let swapped = t.replacen(&hex(&ecc().name()), &hex(&rsa().name()), 1);
        let e = parse(swapped.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        // A header whose key was cut out.
        let cut = t.replacen(&ecc().to_pem(), "", 1);
        let e = parse(cut.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("not followed by its key"), "{e}");
        // A private key saved here by mistake.
        let private = format!("{t}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let e = parse(private.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("PUBLIC KEY or CERTIFICATE"), "{e}");
        // A truncated block, a mangled header.
        let e = parse(&t.as_bytes()[..t.len() - 120]).unwrap_err();
        assert!(e.to_string().contains("no -----END"), "{e}");
        let e = parse(t.replacen("name ", "", 1).as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("line 3:"), "{e}");
    }

    proptest! {
        /// Any bytes: an answer, never a panic; and a valid file with a line inserted anywhere
        /// still yields a key or a refusal, never another key than one it holds.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn inserted_lines_never_change_the_key(at in 0usize..40, junk in "[ -~]{0,40}") {
            let t = printed("(primary)", "0x81010002");
            let mut lines: Vec<&str> = t.lines().collect();
            let at = at.min(lines.len());
            lines.insert(at, &junk);
            let edited = lines.join("\n") + "\n";
            if let Ok(k) = parse(edited.as_bytes()) {
                prop_assert!(k == ecc() || k == rsa());
            }
        }
    }
}
