//! MakeCredential done in software on the boot server (TPM 2.0 Part 1 §24 "Credential
//! Protection", Part 3 TPM2_MakeCredential), byte-compatible with `tpm2_makecredential`'s
//! output file so tpm2-tools can cross-check both ways.
//!
//! A random seed is encrypted to the EK (RSA-OAEP with label `IDENTITY`, or ECDH on P-256 and
//! KDFe), and from the seed come an AES-128 key (KDFa `STORAGE`, bound to the object's name)
//! that encrypts the credential with CFB, and an HMAC key (KDFa `INTEGRITY`) over the encrypted
//! credential and the name. Only the TPM holding the EK's private part recovers the seed.

use super::ek::{ecc_xy, EkPublic};
use super::kdf::{kdfa, kdfe};
use super::wire::{Reader, Short, Writer};
use crate::sys::random::OsRandom;
use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// `tpm2_makecredential`'s file: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
const FILE_MAGIC: u32 = 0xBADC_C0DE;
const FILE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot encrypt to the EK: {0}")]
    Encrypt(String),
    #[error("the credential is larger than a SHA-256 digest")]
    TooLong,
    #[error("not a credential file (tpm2_makecredential format)")]
    Format,
    #[error(transparent)]
    Short(#[from] Short),
}

/// The credential blob and the encrypted seed, as TPM2_ActivateCredential takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT contents: TPM2B integrityHMAC || encIdentity.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents.
    pub secret: Vec<u8>,
}

impl Credential {
    /// The file `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads.
    pub fn to_file(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(FILE_MAGIC)
            .u32(FILE_VERSION)
            .tpm2b(&self.id_object)
            .tpm2b(&self.secret);
        w.0
    }

    pub fn from_file(b: &[u8]) -> Result<Credential, CredentialError> {
        let mut r = Reader::new(b);
        if r.u32()? != FILE_MAGIC || r.u32()? != FILE_VERSION {
            return Err(CredentialError::Format);
        }
        let id_object = r.tpm2b()?.to_vec();
        let secret = r.tpm2b()?.to_vec();
        if !r.is_empty() || id_object.is_empty() || secret.is_empty() {
            return Err(CredentialError::Format);
        }
        Ok(Credential { id_object, secret })
    }
}

/// A fresh 32-byte seed and its encryption to `ek` for `label` ("IDENTITY" for credentials,
/// "SECRET" for session salts), as TPM 2.0 Part 1 Annex B.10.3 (RSA) and C.6.1 (ECC) define.
pub fn secret_for_ek(
    ek: &EkPublic,
    label: &str,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CredentialError> {
    match ek {
        EkPublic::Rsa(k) => {
            let mut seed = Zeroizing::new(vec![0u8; 32]);
            rand_core::RngCore::fill_bytes(&mut OsRandom, &mut seed);
            let padding = rsa::Oaep::new_with_label::<Sha256, _>(format!("{label}\0"));
            let enc = k
                .encrypt(&mut OsRandom, padding, &seed)
                .map_err(|e| CredentialError::Encrypt(e.to_string()))?;
            Ok((seed, enc))
        }
        EkPublic::Ecc(k) => {
            let eph = p256::ecdh::EphemeralSecret::random(&mut OsRandom);
            let eph_pub = p256::PublicKey::from(&eph);
            let shared = eph.diffie_hellman(k);
            let (ex, ey) = ecc_xy(&eph_pub);
            let (kx, _) = ecc_xy(k);
            let seed = kdfe(shared.raw_secret_bytes(), label, &ex, &kx, 256);
            let mut w = Writer::new();
            w.tpm2b(&ex).tpm2b(&ey);
            Ok((seed, w.0))
        }
    }
}

/// TPM2_MakeCredential: binds `credential` (at most 32 bytes) to the object named `name`
/// (TPM2B_NAME contents) under `ek`.
pub fn make_credential(
    ek: &EkPublic,
    name: &[u8],
    credential: &[u8],
) -> Result<Credential, CredentialError> {
    if credential.len() > 32 {
        return Err(CredentialError::TooLong);
    }
    let (seed, secret) = secret_for_ek(ek, "IDENTITY")?;
    let id_object = protect(&seed, name, credential);
    Ok(Credential { id_object, secret })
}

/// The ID object for `seed`: TPM2B(HMAC) || AES-128-CFB(TPM2B(credential)).
pub fn protect(seed: &[u8], name: &[u8], credential: &[u8]) -> Vec<u8> {
    let sym = kdfa(seed, "STORAGE", name, &[], 128);
    let mut enc = Zeroizing::new(Writer::new().tpm2b(credential).0.clone());
    cfb_encrypt(&sym, &[0u8; 16], &mut enc);
    let mac = integrity(seed, &enc, name);
    let mut w = Writer::new();
    w.tpm2b(&mac).bytes(&enc);
    w.0
}

/// The outer HMAC: HMAC-SHA256(KDFa(seed, "INTEGRITY"), encIdentity || name).
pub fn integrity(seed: &[u8], enc_identity: &[u8], name: &[u8]) -> Vec<u8> {
    let key = kdfa(seed, "INTEGRITY", &[], &[], 256);
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&key) else {
        return Vec::new();
    };
    m.update(enc_identity);
    m.update(name);
    m.finalize().into_bytes().to_vec()
}

/// AES-128-CFB (full-block feedback, as the TPM uses) in place; `key` and `iv` are 16 bytes,
/// shorter input is padded with zeros so a wrong size cannot panic.
pub fn cfb_encrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) {
    let (k, v) = (block16(key), block16(iv));
    cfb_mode::Encryptor::<aes::Aes128>::new(&k.into(), &v.into()).encrypt(buf);
}

pub fn cfb_decrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) {
    let (k, v) = (block16(key), block16(iv));
    cfb_mode::Decryptor::<aes::Aes128>::new(&k.into(), &v.into()).decrypt(buf);
}

fn block16(b: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey;

    /// What the TPM does in TPM2_ActivateCredential, in software with a known private key, so
    /// a blob made by `tpm2_makecredential` is a known-answer test of KDFa/KDFe, the HMAC and
    /// CFB here.
    pub fn activate_in_software(
        private_pem: &str,
        name: &[u8],
        cred: &Credential,
    ) -> Option<Vec<u8>> {
        let seed: Zeroizing<Vec<u8>> =
            if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem) {
                let padding = rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0");
                Zeroizing::new(k.decrypt(padding, &cred.secret).ok()?)
            } else {
                let k = p256::SecretKey::from_pkcs8_pem(private_pem).ok()?;
                let mut r = Reader::new(&cred.secret);
                let eph = super::super::ek::ecc_from_xy(r.tpm2b().ok()?, r.tpm2b().ok()?)?;
                let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), eph.as_affine());
                let (ex, _) = ecc_xy(&eph);
                let (kx, _) = ecc_xy(&k.public_key());
                kdfe(shared.raw_secret_bytes(), "IDENTITY", &ex, &kx, 256)
            };
        let mut r = Reader::new(&cred.id_object);
        let mac = r.tpm2b().ok()?;
        let enc = r.rest();
        if integrity(&seed, enc, name) != mac {
            return None;
        }
        let sym = kdfa(&seed, "STORAGE", name, &[], 128);
        let mut plain = enc.to_vec();
        cfb_decrypt(&sym, &[0; 16], &mut plain);
        Some(Reader::new(&plain).tpm2b().ok()?.to_vec())
    }

    const RSA_KEY: &str = include_str!("testdata/soft-rsa.key");
    const ECC_KEY: &str = include_str!("testdata/soft-ecc.key");
    /// Made by `tpm2_makecredential -T none -e soft-*.tss -s secret -n NAME` (tpm2-tools 5.4),
    /// see testdata/README.
    const RSA_BLOB: &[u8] = include_bytes!("testdata/soft-rsa.cred");
    const ECC_BLOB: &[u8] = include_bytes!("testdata/soft-ecc.cred");
    const NAME: &str = include_str!("testdata/soft.name");
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.trim().len() / 2)
            .map(|i| u8::from_str_radix(&s.trim()[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn opens_what_tpm2_makecredential_made_rsa() {
        let c = Credential::from_file(RSA_BLOB).unwrap();
        assert_eq!(c.to_file(), RSA_BLOB);
        let got = activate_in_software(RSA_KEY, &unhex(NAME), &c).unwrap();
        assert_eq!(got, SECRET);
        // Bound to the name: another name fails the HMAC.
        let mut other = unhex(NAME);
        other[5] ^= 1;
        assert!(activate_in_software(RSA_KEY, &other, &c).is_none());
    }

    #[test]
    fn opens_what_tpm2_makecredential_made_ecc() {
        let c = Credential::from_file(ECC_BLOB).unwrap();
        let got = activate_in_software(ECC_KEY, &unhex(NAME), &c).unwrap();
        assert_eq!(got, SECRET);
    }

    #[test]
    fn own_credentials_round_trip_in_software() {
        for key in [RSA_KEY, ECC_KEY] {
            let ek = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(key) {
                EkPublic::Rsa(k.to_public_key())
            } else {
                EkPublic::Ecc(p256::SecretKey::from_pkcs8_pem(key).unwrap().public_key())
            };
            let name = unhex(NAME);
            let c = make_credential(&ek, &name, SECRET).unwrap();
            let c = Credential::from_file(&c.to_file()).unwrap();
            assert_eq!(activate_in_software(key, &name, &c).unwrap(), SECRET);
            // A flipped bit in the encrypted credential fails the integrity check.
            let mut bad = c.clone();
            if let Some(b) = bad.id_object.last_mut() {
                *b ^= 1;
            }
            assert!(activate_in_software(key, &name, &bad).is_none());
        }
        assert!(matches!(
            make_credential(
                &EkPublic::from_pem(include_str!("testdata/ek-rsa.pem")).unwrap(),
                b"n",
                &[0; 33]
            ),
            Err(CredentialError::TooLong)
        ));
    }

    #[test]
    fn credential_file_parsing_is_strict() {
        assert!(Credential::from_file(&RSA_BLOB[..RSA_BLOB.len() - 1]).is_err());
        let mut extra = RSA_BLOB.to_vec();
        extra.push(0);
        assert!(Credential::from_file(&extra).is_err());
        let mut magic = RSA_BLOB.to_vec();
        magic[0] ^= 1;
        assert!(Credential::from_file(&magic).is_err());
        assert!(Credential::from_file(&[]).is_err());
    }
}
