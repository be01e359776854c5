//! The sealed bundle: a small JSON document that the boot server writes with
//! `rustlive bundle seal` (or `build-all --seal-to`) and serves to anyone (plain http is fine),
//! that only the node whose TPM holds the EK can open, and that the boot server signs.
//!
//! ```json
//! { "format": "rustlive-sealed", "version": 2, "ek": "rsa2048",
//!   "ek_name": "000b…", "credential": "<base64>", "nonce": "<base64>", "ciphertext": "<base64>",
//!   "signature": "untrusted comment: …\nRU…\ntrusted comment: …\n…\n" }
//! ```
//!
//! - `ek`: `rsa2048` or `eccp256`, which TCG default EK the bundle is sealed to;
//! - `ek_name`: that EK's TPM2B_NAME in hex (SHA-256 of its public area), so a node can say
//!   "sealed to another TPM" before asking its TPM anything;
//! - `credential`: `tpm2_makecredential`'s output file (magic `BADCC0DE`, version 1,
//!   TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET) binding the 32-byte bundle key to
//!   [`ActivationObject`]'s name under the EK, so tpm2-tools can open or produce it;
//! - `nonce`, `ciphertext`: AES-256-GCM (12-byte nonce, tag appended) of the plain bundle JSON,
//!   with the associated data `rustlive-sealed V` NUL `ek_name bytes` (V the version), so the
//!   envelope cannot be re-pointed at another EK, nor a version 2 one passed off as version 1;
//! - `pcr_policy` (optional): the PCR values the node must have;
//! - `signature` (version 2 only): a minisign signature (prehashed Ed25519, the whole
//!   `.minisig` text) of [`Envelope::signed_message`], which binds every other field.
//!
//! Version 1 is the same document without `signature`, as rustlive wrote before sealed bundles
//! were signed. Sealing needs only the node's public EK, so a version 1 envelope may come from
//! anyone; whether a node still accepts one is the secrets stage's policy
//! (`crate::secrets::trust`). This module only parses (a pure function), checks a signature
//! against the keys it is given ([`check_signature`]) and opens.

use super::client::{ActivationObject, Tpm, TpmError};
use super::credential::{make_credential, Credential, CredentialError};
use super::ek::{hex, EkPublic};
use super::pcr::PcrPolicy;
use crate::sys::random::OsRandom;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub const FORMAT: &str = "rustlive-sealed";
/// The version written: signed.
pub const VERSION: u32 = 2;
/// The unsigned version rustlive wrote before sealed bundles were signed; still read.
pub const VERSION_UNSIGNED: u32 = 1;
/// Largest sealed bundle read (the plain bundle is at most 1 MiB, base64 adds a third).
pub const MAX_SEALED_SIZE: usize = 3 << 20;
/// Largest `signature` field (a minisign signature is four lines, about 350 bytes with its
/// comments).
pub const MAX_SIGNATURE_SIZE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub format: String,
    pub version: u32,
    pub ek: String,
    pub ek_name: String,
    pub credential: String,
    pub nonce: String,
    pub ciphertext: String,
    /// `N=HEX,…`: the SHA-256 PCR values the node must have (see [`PcrPolicy`]); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcr_policy: Option<String>,
    /// Version 2: the minisign signature of [`Envelope::signed_message`] (`.minisig` text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A minisign key id: the 8 bytes a signature and the public key that checks it share, printed
/// as minisign prints it (the hexadecimal of a little-endian u64, as in the `untrusted comment:
/// minisign public key 2CCAB0C4936B1BB3` line of a `.pub` file).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the sealed bundle is not valid: {0}")]
    Malformed(String),
    #[error("the sealed bundle has version {0}; this rustlive reads versions {VERSION_UNSIGNED} and {VERSION}")]
    Version(u32),
    #[error("the bundle is sealed to another TPM (its EK name is {want}, this TPM's {kind} EK is {have})")]
    OtherTpm {
        want: String,
        have: String,
        kind: &'static str,
    },
    #[error("cannot open the sealed bundle with {tpm}")]
    Tpm {
        tpm: String,
        #[source]
        source: TpmError,
    },
    #[error("the sealed bundle was tampered with or truncated (authentication failed)")]
    Tampered,
    #[error(
        "the node's PCRs differ from those the bundle was sealed to (booted into something else?)"
    )]
    PcrMismatch,
    #[error(
        "the sealed bundle's signature by key {0} does not verify: it was changed after signing"
    )]
    BadSignature(KeyId),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("cannot encrypt the bundle")]
    Encrypt,
}

#[derive(Deserialize)]
struct Probe {
    format: Option<serde::de::IgnoredAny>,
}

/// Whether `bytes` look like a sealed bundle (a JSON object with a `format` field); anything
/// else is left to the plain bundle parser.
pub fn is_sealed(bytes: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<Probe>(bytes),
        Ok(Probe { format: Some(_) })
    )
}

/// The AES-GCM associated data: the format, the version and the EK's name.
fn aad(version: u32, ek_name: &[u8]) -> Vec<u8> {
    let mut a = format!("{FORMAT} {version}\0").into_bytes();
    a.extend_from_slice(ek_name);
    a
}

fn b64() -> base64::engine::general_purpose::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Envelope {
    /// The bytes a version 2 envelope's signature covers: `rustlive-sealed 2` NUL, then `ek`,
    /// `ek_name`, `credential`, `nonce`, `ciphertext` and `pcr_policy` (empty when absent), each
    /// as its length (8 bytes, big-endian) and its UTF-8 text as the JSON string holds it. Every
    /// field but the signature is bound, and no two envelopes share these bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        let fields = [
            self.ek.as_str(),
            &self.ek_name,
            &self.credential,
            &self.nonce,
            &self.ciphertext,
            self.pcr_policy.as_deref().unwrap_or_default(),
        ];
        let total = fields
            .iter()
            .fold(32usize, |n, f| n.saturating_add(f.len()).saturating_add(8));
        let mut m = Vec::with_capacity(total);
        m.extend_from_slice(format!("{FORMAT} {VERSION}\0").as_bytes());
        for f in fields {
            // usize is at most 64 bits on every target rustlive builds for.
            m.extend_from_slice(&u64::try_from(f.len()).unwrap_or(u64::MAX).to_be_bytes());
            m.extend_from_slice(f.as_bytes());
        }
        m
    }

    /// The envelope as written: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = serde_json::to_vec_pretty(self).map_err(|_| EnvelopeError::Encrypt)?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Seals `plain` (a bundle's JSON) to `ek`, and to the PCR values of `pcr` when given, as
/// version 2 without its signature yet: the boot server signs
/// [`Envelope::signed_message`] into [`Envelope::signature`] (`crate::server::seal`).
pub fn seal(
    plain: &[u8],
    ek: &EkPublic,
    pcr: Option<&PcrPolicy>,
) -> Result<Envelope, EnvelopeError> {
    encrypt(plain, ek, pcr, VERSION)
}

/// Seals `plain` as version 1, unsigned, as rustlive wrote before sealed bundles were signed:
/// for tests of the transition rule, never written by the boot server's commands.
pub fn seal_unsigned_v1(
    plain: &[u8],
    ek: &EkPublic,
    pcr: Option<&PcrPolicy>,
) -> Result<Vec<u8>, EnvelopeError> {
    encrypt(plain, ek, pcr, VERSION_UNSIGNED)?.to_bytes()
}

fn encrypt(
    plain: &[u8],
    ek: &EkPublic,
    pcr: Option<&PcrPolicy>,
    version: u32,
) -> Result<Envelope, EnvelopeError> {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRandom.fill_bytes(key.as_mut());
    let mut nonce = [0u8; 12];
    OsRandom.fill_bytes(&mut nonce);
    let name = ek.name();
    let cred = make_credential(ek, &ActivationObject::name_with(pcr), key.as_ref())?;
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| EnvelopeError::Encrypt)?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad(version, &name),
            },
        )
        .map_err(|_| EnvelopeError::Encrypt)?;
    Ok(Envelope {
        format: FORMAT.into(),
        version,
        ek: ek.kind().into(),
        ek_name: hex(&name),
        credential: b64().encode(cred.to_file()),
        nonce: b64().encode(nonce),
        ciphertext: b64().encode(ct),
        pcr_policy: pcr.map(PcrPolicy::to_spec),
        signature: None,
    })
}

/// A version 2 envelope's signature, parsed but not yet checked.
#[derive(Clone)]
pub struct Signature {
    /// The key id the signature names (not yet a proof of anything).
    pub key_id: KeyId,
    signature: minisign_verify::Signature,
    message: Vec<u8>,
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", self.key_id)
    }
}

/// The parts of a parsed envelope, checked for shape (not yet for authenticity).
#[derive(Debug)]
pub struct Parsed {
    pub version: u32,
    pub rsa: bool,
    pub ek_name: Vec<u8>,
    pub credential: Credential,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub pcr: Option<PcrPolicy>,
    /// Version 2: the signature to check ([`check_signature`]); version 1: none.
    pub signature: Option<Signature>,
}

pub fn parse(bytes: &[u8]) -> Result<Parsed, EnvelopeError> {
    let bad = |s: &str| EnvelopeError::Malformed(s.to_string());
    if bytes.len() > MAX_SEALED_SIZE {
        return Err(bad("larger than 3 MiB"));
    }
    // serde_json's message names a line and column, never a value.
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(json_position(&e)))?;
    if env.format != FORMAT {
        return Err(bad("format is not rustlive-sealed"));
    }
    let signature = match (env.version, &env.signature) {
        (VERSION_UNSIGNED, None) => None,
        (VERSION_UNSIGNED, Some(_)) => return Err(bad("a version 1 envelope has no signature")),
        (VERSION, None) => return Err(bad("signature is missing")),
        (VERSION, Some(text)) => Some(parse_signature(text, env.signed_message())?),
        (v, _) => return Err(EnvelopeError::Version(v)),
    };
    let rsa = match env.ek.as_str() {
        "rsa2048" => true,
        "eccp256" => false,
        _ => return Err(bad("ek must be rsa2048 or eccp256")),
    };
    let ek_name = unhex(&env.ek_name).filter(|n| n.len() == 34 && n.starts_with(&[0, 0x0b]));
    let ek_name = ek_name.ok_or_else(|| bad("ek_name must be 34 bytes of hex starting 000b"))?;
    let cred = b64()
        .decode(&env.credential)
        .map_err(|_| bad("credential is not base64"))?;
    let credential = Credential::from_file(&cred)
        .map_err(|_| bad("credential is not a tpm2_makecredential blob"))?;
    let nonce: [u8; 12] = b64()
        .decode(&env.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("nonce must be 12 bytes of base64"))?;
    let ciphertext = b64()
        .decode(&env.ciphertext)
        .map_err(|_| bad("ciphertext is not base64"))?;
    if ciphertext.len() < 16 {
        return Err(bad("ciphertext is shorter than its tag"));
    }
    let pcr = match &env.pcr_policy {
        None => None,
        Some(spec) => Some(
            PcrPolicy::parse(spec)
                .map_err(|_| bad("pcr_policy must be N=HEX,… (SHA-256 PCR values)"))?,
        ),
    };
    Ok(Parsed {
        version: env.version,
        rsa,
        ek_name,
        credential,
        nonce,
        ciphertext,
        pcr,
        signature,
    })
}

/// A minisign signature (the `.minisig` text): prehashed Ed25519 (`ED`) only, whose key id is
/// read here so that a message can name the key that signed.
fn parse_signature(text: &str, message: Vec<u8>) -> Result<Signature, EnvelopeError> {
    let bad = |s: &str| EnvelopeError::Malformed(s.to_string());
    if text.len() > MAX_SIGNATURE_SIZE {
        return Err(bad("signature is longer than 4 KiB"));
    }
    let signature = minisign_verify::Signature::decode(text)
        .map_err(|_| bad("signature is not a minisign signature"))?;
    // The second line: algorithm (2 bytes), key id (8), Ed25519 signature (64).
    let line = text.lines().nth(1).unwrap_or_default();
    let raw = b64()
        .decode(line.trim())
        .map_err(|_| bad("signature is not a minisign signature"))?;
    if raw.get(..2) != Some(b"ED".as_slice()) {
        return Err(bad(
            "signature must be a prehashed (ED) minisign signature, not a legacy one",
        ));
    }
    let key_id: [u8; 8] = raw
        .get(2..10)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("signature is not a minisign signature"))?;
    Ok(Signature {
        key_id: KeyId(key_id),
        signature,
        message,
    })
}

/// Who signed an envelope, as far as `keys` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// Version 1: no signature at all.
    Unsigned,
    /// Signed by this key, which is one of `keys`, and the signature verifies.
    Trusted(KeyId),
    /// Signed with a key id none of `keys` has: nothing is known about who signed.
    Unknown(KeyId),
}

/// Checks a version 2 envelope's signature against `keys` (the node's trusted keys): pure, and
/// done before the TPM is asked anything. A key with the signature's id whose check fails is an
/// error: the envelope was changed after it was signed (or signed by another key with the same
/// id, which is as good as forged).
pub fn check_signature(
    p: &Parsed,
    keys: &[minisign_verify::PublicKey],
) -> Result<Signer, EnvelopeError> {
    let Some(s) = &p.signature else {
        return Ok(Signer::Unsigned);
    };
    let mut failed = false;
    for k in keys {
        match k.verify(&s.message, &s.signature, false) {
            Ok(()) => return Ok(Signer::Trusted(s.key_id)),
            Err(minisign_verify::Error::UnexpectedKeyId) => {}
            Err(_) => failed = true,
        }
    }
    if failed {
        Err(EnvelopeError::BadSignature(s.key_id))
    } else {
        Ok(Signer::Unknown(s.key_id))
    }
}

/// Where the JSON broke, never what it held.
fn json_position(e: &serde_json::Error) -> String {
    format!(
        "not the sealed bundle JSON (line {}, column {})",
        e.line(),
        e.column()
    )
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    crate::support::values::decode_hex(s)
}

/// Decrypts the payload with a key recovered from the TPM.
pub fn decrypt(p: &Parsed, key: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| EnvelopeError::Tampered)?;
    cipher
        .decrypt(
            Nonce::from_slice(&p.nonce),
            Payload {
                msg: &p.ciphertext,
                aad: &aad(p.version, &p.ek_name),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Tampered)
}

/// Opens a parsed sealed bundle with the node's TPM: the EK it names must be this TPM's, the
/// TPM recovers the key (over an encrypted session), and the payload must authenticate. Whether
/// its signature is good enough is decided before, by the caller ([`check_signature`]).
pub fn open(p: &Parsed, tpm: &mut Tpm) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let tpm_err = |tpm: &Tpm, source| EnvelopeError::Tpm {
        tpm: tpm.describe(),
        source,
    };
    let ek = tpm.ek(p.rsa).map_err(|e| tpm_err(tpm, e))?;
    let have = ek.public.name();
    if have != p.ek_name {
        tpm.release(&ek);
        return Err(EnvelopeError::OtherTpm {
            want: hex(&p.ek_name),
            have: hex(&have),
            kind: ek.public.kind(),
        });
    }
    let key = tpm.activate_pcr(&ek, &p.credential, p.pcr.as_ref());
    tpm.release(&ek);
    let key = key.map_err(|e| match e {
        TpmError::Refused(_) => EnvelopeError::Tampered,
        TpmError::PcrMismatch => EnvelopeError::PcrMismatch,
        e => tpm_err(tpm, e),
    })?;
    if key.len() != 32 {
        return Err(EnvelopeError::Tampered);
    }
    decrypt(p, &key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sign::tests as signer;
    use crate::tpm::credential::tests::activate_in_software;
    use proptest::prelude::*;
    use rsa::pkcs8::DecodePrivateKey;

    const RSA_KEY: &str = include_str!("testdata/soft-rsa.key");
    const ECC_KEY: &str = include_str!("testdata/soft-ecc.key");

    fn soft_ek(pem: &str) -> EkPublic {
        match rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            Ok(k) => EkPublic::Rsa(k.to_public_key()),
            Err(_) => EkPublic::Ecc(p256::SecretKey::from_pkcs8_pem(pem).unwrap().public_key()),
        }
    }

    /// Sealed and signed as the boot server does (version 2).
    fn signed(plain: &[u8], pem: &str, pcr: Option<&PcrPolicy>) -> Vec<u8> {
        crate::server::seal::seal_signed(plain, &soft_ek(pem), pcr, &signer::key()).unwrap()
    }

    fn trusted() -> Vec<minisign_verify::PublicKey> {
        vec![minisign_verify::PublicKey::decode(signer::PUBLIC).unwrap()]
    }

    /// Another key: `minisign -G -W`, key id 9DEBB95DA0B4AD10 (src/fetch/verify.rs's).
    fn untrusted() -> Vec<minisign_verify::PublicKey> {
        vec![minisign_verify::PublicKey::from_base64(
            "RWQQrbSgXbnrnWo0wShV+Fn/XN1qY1qB2l7vEQmKQGPQhpW8omxjZigc",
        )
        .unwrap()]
    }

    fn open_soft(pem: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let p = parse(sealed)?;
        let key = activate_in_software(
            pem,
            &ActivationObject::name_with(p.pcr.as_ref()),
            &p.credential,
        )
        .ok_or(EnvelopeError::Tampered)?;
        decrypt(&p, &key)
    }

    fn edit(sealed: &[u8], f: impl FnOnce(&mut Envelope)) -> Vec<u8> {
        let mut env: Envelope = serde_json::from_slice(sealed).unwrap();
        f(&mut env);
        serde_json::to_vec(&env).unwrap()
    }

    #[test]
    fn seal_then_open_in_software() {
        let plain = br#"{"version": 1, "files": []}"#;
        for pem in [RSA_KEY, ECC_KEY] {
            for sealed in [
                signed(plain, pem, None),
                seal_unsigned_v1(plain, &soft_ek(pem), None).unwrap(),
            ] {
                assert!(is_sealed(&sealed));
                assert_eq!(&open_soft(pem, &sealed).unwrap()[..], plain);
            }
        }
        assert!(!is_sealed(plain));
        assert!(!is_sealed(b"not json"));
        // Sealed to the RSA key, opened with the ECC one: refused.
        let sealed = signed(plain, RSA_KEY, None);
        assert!(open_soft(ECC_KEY, &sealed).is_err());
    }

    #[test]
    fn a_pcr_policy_binds_the_credential() {
        let v = "ab".repeat(32);
        let pcr = PcrPolicy::parse(&format!("7={v}")).unwrap();
        let sealed = signed(b"{}", ECC_KEY, Some(&pcr));
        assert_eq!(&open_soft(ECC_KEY, &sealed).unwrap()[..], b"{}");
        // Dropping or changing the policy changes the activation object's name: the
        // credential's integrity check fails (and the signature no longer verifies).
        let dropped = edit(&sealed, |e| e.pcr_policy = None);
        assert!(open_soft(ECC_KEY, &dropped).is_err());
        assert!(matches!(
            check_signature(&parse(&dropped).unwrap(), &trusted()),
            Err(EnvelopeError::BadSignature(_))
        ));
        let changed = edit(&sealed, |e| {
            e.pcr_policy = Some(format!("7={}", "cd".repeat(32)))
        });
        assert!(open_soft(ECC_KEY, &changed).is_err());
    }

    #[test]
    fn a_repointed_or_flipped_envelope_is_refused() {
        let sealed = signed(b"{}", RSA_KEY, None);
        let flipped = edit(&sealed, |env| {
            let mut ct = b64().decode(&env.ciphertext).unwrap();
            ct[0] ^= 1;
            env.ciphertext = b64().encode(&ct);
        });
        assert!(matches!(
            open_soft(RSA_KEY, &flipped),
            Err(EnvelopeError::Tampered)
        ));

        let repointed = edit(&sealed, |env| {
            env.ek_name = format!("000b{}", "ab".repeat(32))
        });
        assert!(matches!(
            open_soft(RSA_KEY, &repointed),
            Err(EnvelopeError::Tampered)
        ));

        let v3 = edit(&sealed, |env| env.version = 3);
        assert!(matches!(parse(&v3), Err(EnvelopeError::Version(3))));
        assert!(parse(&sealed[..sealed.len() / 2]).is_err());
    }

    /// A signed envelope stripped of its signature and relabelled version 1 does not open: the
    /// version is part of the associated data.
    #[test]
    fn a_stripped_signature_does_not_make_a_version_1_envelope() {
        let sealed = signed(b"{}", ECC_KEY, None);
        let stripped = edit(&sealed, |env| {
            env.version = VERSION_UNSIGNED;
            env.signature = None;
        });
        let p = parse(&stripped).unwrap();
        assert_eq!(check_signature(&p, &trusted()).unwrap(), Signer::Unsigned);
        assert!(matches!(
            open_soft(ECC_KEY, &stripped),
            Err(EnvelopeError::Tampered)
        ));
        // Version 2 without its signature, or version 1 with one: malformed.
        let unsigned_v2 = edit(&sealed, |env| env.signature = None);
        assert!(matches!(
            parse(&unsigned_v2),
            Err(EnvelopeError::Malformed(_))
        ));
        let signed_v1 = edit(&sealed, |env| env.version = VERSION_UNSIGNED);
        assert!(matches!(
            parse(&signed_v1),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn the_signature_names_its_key_and_binds_every_field() {
        let sealed = signed(b"{}", ECC_KEY, None);
        let p = parse(&sealed).unwrap();
        let id = signer::key().key_id();
        assert_eq!(p.signature.as_ref().unwrap().key_id, id);
        assert_eq!(
            check_signature(&p, &trusted()).unwrap(),
            Signer::Trusted(id)
        );
        assert_eq!(
            check_signature(&p, &untrusted()).unwrap(),
            Signer::Unknown(id)
        );
        assert_eq!(check_signature(&p, &[]).unwrap(), Signer::Unknown(id));
        let both: Vec<_> = untrusted().into_iter().chain(trusted()).collect();
        assert_eq!(check_signature(&p, &both).unwrap(), Signer::Trusted(id));
        let v1 = seal_unsigned_v1(b"{}", &soft_ek(ECC_KEY), None).unwrap();
        assert_eq!(
            check_signature(&parse(&v1).unwrap(), &trusted()).unwrap(),
            Signer::Unsigned
        );

        // Any field changed after signing: the trusted key's check fails.
        let edits: [fn(&mut Envelope); 6] = [
            |e| e.ek = "rsa2048".into(),
            |e| e.ek_name = format!("000b{}", "ab".repeat(32)),
            |e| e.credential = seal_unsigned_v1_field(|x| x.credential.clone()),
            |e| e.nonce = b64().encode([7u8; 12]),
            |e| e.ciphertext = b64().encode([7u8; 40]),
            |e| e.pcr_policy = Some(format!("7={}", "cd".repeat(32))),
        ];
        for f in edits {
            let bad = edit(&sealed, f);
            let p = parse(&bad).unwrap();
            assert!(
                matches!(
                    check_signature(&p, &trusted()),
                    Err(EnvelopeError::BadSignature(k)) if k == id
                ),
                "{p:?}"
            );
            // A node that trusts other keys cannot tell who signed: not trusted either.
            assert_eq!(
                check_signature(&p, &untrusted()).unwrap(),
                Signer::Unknown(id)
            );
        }
        // The signature itself changed: its trusted comment, or a byte of the Ed25519 signature.
        let comment = edit(&sealed, |e| {
            let s = e.signature.take().unwrap();
            e.signature = Some(s.replace("timestamp:", "timestamp:1"));
        });
        assert!(matches!(
            check_signature(&parse(&comment).unwrap(), &trusted()),
            Err(EnvelopeError::BadSignature(_))
        ));
        let sig_byte = edit(&sealed, |e| {
            let s = e.signature.take().unwrap();
            let lines: Vec<&str> = s.lines().collect();
            let mut raw = b64().decode(lines[1]).unwrap();
            raw[40] ^= 0x80;
            let line = b64().encode(&raw);
            e.signature = Some(format!(
                "{}\n{line}\n{}\n{}\n",
                lines[0], lines[2], lines[3]
            ));
        });
        assert!(matches!(
            check_signature(&parse(&sig_byte).unwrap(), &trusted()),
            Err(EnvelopeError::BadSignature(_))
        ));
        // A legacy (not prehashed) signature, or no minisign signature at all: malformed.
        let legacy = edit(&sealed, |e| {
            let s = e.signature.take().unwrap();
            let lines: Vec<&str> = s.lines().collect();
            let mut raw = b64().decode(lines[1]).unwrap();
            raw[1] = b'd';
            let line = b64().encode(&raw);
            e.signature = Some(format!(
                "{}\n{line}\n{}\n{}\n",
                lines[0], lines[2], lines[3]
            ));
        });
        assert!(matches!(parse(&legacy), Err(EnvelopeError::Malformed(_))));
        let garbage = edit(&sealed, |e| e.signature = Some("RWQ=".into()));
        assert!(matches!(parse(&garbage), Err(EnvelopeError::Malformed(_))));
        let long = edit(&sealed, |e| {
            e.signature = Some("a".repeat(MAX_SIGNATURE_SIZE + 1))
        });
        assert!(matches!(parse(&long), Err(EnvelopeError::Malformed(_))));
    }

    /// A field of another valid envelope, to swap in.
    fn seal_unsigned_v1_field(f: impl FnOnce(&Envelope) -> String) -> String {
        let other = seal_unsigned_v1(b"{}", &soft_ek(ECC_KEY), None).unwrap();
        f(&serde_json::from_slice(&other).unwrap())
    }

    /// The signed bytes: a length before each field, so no two envelopes share them.
    #[test]
    fn signed_message_is_length_prefixed() {
        let env = |ek: &str, ek_name: &str| Envelope {
            format: FORMAT.into(),
            version: VERSION,
            ek: ek.into(),
            ek_name: ek_name.into(),
            credential: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
            pcr_policy: None,
            signature: None,
        };
        let m = env("ab", "c").signed_message();
        assert!(m.starts_with(b"rustlive-sealed 2\0\0\0\0\0\0\0\0\x02ab\0\0\0\0\0\0\0\x01c"));
        assert_eq!(m.len(), 18 + 6 * 8 + 3);
        assert_ne!(m, env("a", "bc").signed_message());
        let with_pcr = Envelope {
            pcr_policy: Some(String::new()),
            ..env("ab", "c")
        };
        // An empty policy signs as an absent one; it never parses (PcrPolicy refuses it).
        assert_eq!(m, with_pcr.signed_message());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Hostile envelopes: arbitrary bytes, and a real envelope with one field replaced by
        /// arbitrary text, never panic and never parse into something that opens.
        #[test]
        fn hostile_envelopes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                         field in 0usize..9, text in ".{0,80}", v1 in any::<bool>()) {
            let _ = parse(&bytes);
            let _ = is_sealed(&bytes);
            let sealed = if v1 {
                seal_unsigned_v1(b"{}", &soft_ek(ECC_KEY), None).unwrap()
            } else {
                signed(b"{}", ECC_KEY, None)
            };
            let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
            let key = ["format", "version", "ek", "ek_name", "credential", "nonce", "ciphertext", "pcr_policy", "signature"][field];
            v[key] = serde_json::Value::String(text.clone());
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(p) = parse(&bytes) {
                let _ = decrypt(&p, &[0u8; 32]);
                // A signed envelope with a field replaced is never trusted.
                if let Ok(Signer::Trusted(_)) = check_signature(&p, &trusted()) {
                    prop_assert!(!v1);
                    prop_assert_eq!(&open_soft(ECC_KEY, &bytes).unwrap()[..], b"{}");
                }
            }
        }

        /// Any flipped bit of a signed envelope: refused, or (whitespace, an escape, a base64
        /// padding bit that decodes the same) trusted and opening to the original.
        #[test]
        fn any_flipped_byte_is_refused(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let sealed = signed(b"{\"version\": 1}", ECC_KEY, None);
            let mut bad = sealed.clone();
            let i = pos.index(bad.len());
            bad[i] ^= 1 << bit;
            if let Ok(p) = parse(&bad) {
                if let Ok(Signer::Trusted(_)) = check_signature(&p, &trusted()) {
                    prop_assert_eq!(&open_soft(ECC_KEY, &bad).unwrap()[..], b"{\"version\": 1}");
                }
            }
        }
    }
}
