//! The sealed bundle, format 1: a small JSON document that the boot server writes with
//! `rustlive bundle seal` and serves to anyone (plain http is fine), and that only the node
//! whose TPM holds the EK can open.
//!
//! ```json
//! { "format": "rustlive-sealed", "version": 1, "ek": "rsa2048",
//!   "ek_name": "000b…", "credential": "<base64>", "nonce": "<base64>", "ciphertext": "<base64>" }
//! ```
//!
//! - `ek`: `rsa2048` or `eccp256`, which TCG default EK the bundle is sealed to;
//! - `ek_name`: that EK's TPM2B_NAME in hex (SHA-256 of its public area), so a node can say
//!   "sealed to another TPM" before asking its TPM anything;
//! - `credential`: `tpm2_makecredential`'s output file (magic `BADCC0DE`, version 1,
//!   TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET) binding the 32-byte bundle key to
//!   [`ActivationObject`]'s name under the EK, so tpm2-tools can open or produce it;
//! - `nonce`, `ciphertext`: AES-256-GCM (12-byte nonce, tag appended) of the plain bundle JSON,
//!   with the associated data `rustlive-sealed 1` NUL `ek_name bytes`, so the envelope cannot be
//!   re-pointed at another EK.

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
pub const VERSION: u32 = 1;
/// Largest sealed bundle read (the plain bundle is at most 1 MiB, base64 adds a third).
pub const MAX_SEALED_SIZE: usize = 3 << 20;

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
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the sealed bundle is not valid: {0}")]
    Malformed(String),
    #[error("the sealed bundle has version {0}; this rustlive reads version {VERSION}")]
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

fn aad(ek_name: &[u8]) -> Vec<u8> {
    let mut a = format!("{FORMAT} {VERSION}\0").into_bytes();
    a.extend_from_slice(ek_name);
    a
}

fn b64() -> base64::engine::general_purpose::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Seals `plain` (a bundle's JSON) to `ek`.
pub fn seal(plain: &[u8], ek: &EkPublic) -> Result<Vec<u8>, EnvelopeError> {
    seal_with(plain, ek, None)
}

/// Seals `plain` to `ek`, and to the PCR values of `pcr` when given.
pub fn seal_with(
    plain: &[u8],
    ek: &EkPublic,
    pcr: Option<&PcrPolicy>,
) -> Result<Vec<u8>, EnvelopeError> {
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
                aad: &aad(&name),
            },
        )
        .map_err(|_| EnvelopeError::Encrypt)?;
    let env = Envelope {
        format: FORMAT.into(),
        version: VERSION,
        ek: ek.kind().into(),
        ek_name: hex(&name),
        credential: b64().encode(cred.to_file()),
        nonce: b64().encode(nonce),
        ciphertext: b64().encode(ct),
        pcr_policy: pcr.map(PcrPolicy::to_spec),
    };
    let mut out = serde_json::to_vec_pretty(&env).map_err(|_| EnvelopeError::Encrypt)?;
    out.push(b'\n');
    Ok(out)
}

/// The parts of a parsed envelope, checked for shape (not yet for authenticity).
#[derive(Debug)]
pub struct Parsed {
    pub rsa: bool,
    pub ek_name: Vec<u8>,
    pub credential: Credential,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub pcr: Option<PcrPolicy>,
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
    if env.version != VERSION {
        return Err(EnvelopeError::Version(env.version));
    }
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
        rsa,
        ek_name,
        credential,
        nonce,
        ciphertext,
        pcr,
    })
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
                aad: &aad(&p.ek_name),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Tampered)
}

/// Opens a sealed bundle with the node's TPM: the EK it names must be this TPM's, the TPM
/// recovers the key (over an encrypted session), and the payload must authenticate.
pub fn open(bytes: &[u8], tpm: &mut Tpm) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let p = parse(bytes)?;
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
    decrypt(&p, &key)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn seal_then_open_in_software() {
        let plain = br#"{"version": 1, "files": []}"#;
        for pem in [RSA_KEY, ECC_KEY] {
            let sealed = seal(plain, &soft_ek(pem)).unwrap();
            assert!(is_sealed(&sealed));
            assert_eq!(&open_soft(pem, &sealed).unwrap()[..], plain);
        }
        assert!(!is_sealed(plain));
        assert!(!is_sealed(b"not json"));
        // Sealed to the RSA key, opened with the ECC one: refused.
        let sealed = seal(plain, &soft_ek(RSA_KEY)).unwrap();
        assert!(open_soft(ECC_KEY, &sealed).is_err());
    }

    #[test]
    fn a_pcr_policy_binds_the_credential() {
        let v = "ab".repeat(32);
        let pcr = PcrPolicy::parse(&format!("7={v}")).unwrap();
        let sealed = seal_with(b"{}", &soft_ek(ECC_KEY), Some(&pcr)).unwrap();
        assert_eq!(&open_soft(ECC_KEY, &sealed).unwrap()[..], b"{}");
        // Dropping or changing the policy changes the activation object's name: the
        // credential's integrity check fails.
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.pcr_policy = None;
        assert!(open_soft(ECC_KEY, &serde_json::to_vec(&env).unwrap()).is_err());
        env.pcr_policy = Some(format!("7={}", "cd".repeat(32)));
        assert!(open_soft(ECC_KEY, &serde_json::to_vec(&env).unwrap()).is_err());
    }

    #[test]
    fn a_repointed_or_flipped_envelope_is_refused() {
        let sealed = seal(b"{}", &soft_ek(RSA_KEY)).unwrap();
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        let mut ct = b64().decode(&env.ciphertext).unwrap();
        ct[0] ^= 1;
        env.ciphertext = b64().encode(&ct);
        let bytes = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            open_soft(RSA_KEY, &bytes),
            Err(EnvelopeError::Tampered)
        ));

        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.ek_name = format!("000b{}", "ab".repeat(32));
        let bytes = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            open_soft(RSA_KEY, &bytes),
            Err(EnvelopeError::Tampered)
        ));

        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.version = 2;
        let bytes = serde_json::to_vec(&env).unwrap();
        assert!(matches!(parse(&bytes), Err(EnvelopeError::Version(2))));
        assert!(parse(&sealed[..sealed.len() / 2]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Hostile envelopes: arbitrary bytes, and a real envelope with one field replaced by
        /// arbitrary text, never panic and never parse into something that opens.
        #[test]
        fn hostile_envelopes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                         field in 0usize..8, text in ".{0,80}") {
            let _ = parse(&bytes);
            let _ = is_sealed(&bytes);
            let sealed = seal(b"{}", &soft_ek(ECC_KEY)).unwrap();
            let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
            let key = ["format", "version", "ek", "ek_name", "credential", "nonce", "ciphertext", "pcr_policy"][field];
            v[key] = serde_json::Value::String(text.clone());
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(p) = parse(&bytes) {
                let _ = decrypt(&p, &[0u8; 32]);
            }
        }

        #[test]
        fn any_flipped_byte_is_refused(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let sealed = seal(b"{\"version\": 1}", &soft_ek(ECC_KEY)).unwrap();
            let mut bad = sealed.clone();
            let i = pos.index(bad.len());
            bad[i] ^= 1 << bit;
            // Whitespace or a base64 padding bit may change without changing the decoded
            // envelope; anything that opens must then be the original plain text.
            if let Ok(plain) = open_soft(ECC_KEY, &bad) {
                prop_assert_eq!(&plain[..], b"{\"version\": 1}");
            }
        }
    }
}
