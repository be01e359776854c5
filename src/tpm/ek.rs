//! The endorsement key as the TCG EK Credential Profile defines it: the default templates L-1
//! (RSA 2048) and L-2 (ECC NIST P-256), both SHA-256 with the policy
//! `PolicySecret(TPM_RH_ENDORSEMENT)` and AES-128-CFB as their symmetric algorithm. Given only
//! the public key (PEM, as `rustlive tpm ek` and `tpm2_createek -f pem` print it), the template
//! gives the whole public area, hence the EK's name, which binds a credential to it.

use super::wire::{Reader, Short, Writer};
use p256::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

pub const ALG_RSA: u16 = 0x0001;
pub const ALG_SHA256: u16 = 0x000B;
pub const ALG_AES: u16 = 0x0006;
pub const ALG_KEYEDHASH: u16 = 0x0008;
pub const ALG_NULL: u16 = 0x0010;
pub const ALG_CFB: u16 = 0x0043;
pub const ALG_ECC: u16 = 0x0023;
pub const ECC_NIST_P256: u16 = 0x0003;

/// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
pub const EK_ATTRIBUTES: u32 = 0x0003_00B2;
/// PolicySecret(TPM_RH_ENDORSEMENT), the default EK policy.
pub const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// Persistent handles of the TCG EK Credential Profile (RSA 2048, ECC P-256).
pub const EK_HANDLE_RSA: u32 = 0x8101_0001;
pub const EK_HANDLE_ECC: u32 = 0x8101_0002;
/// NV indices of the EK certificates (RSA 2048, ECC P-256).
pub const EK_CERT_NV_RSA: u32 = 0x01c0_0002;
pub const EK_CERT_NV_ECC: u32 = 0x01c0_000a;

/// The public part of a default-template EK.
#[derive(Clone, PartialEq, Eq)]
pub enum EkPublic {
    /// RSA 2048, exponent 65537.
    Rsa(rsa::RsaPublicKey),
    /// ECC NIST P-256.
    Ecc(p256::PublicKey),
}

impl std::fmt::Debug for EkPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EkPublic({}, name {})", self.kind(), hex(&self.name()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EkError {
    #[error("not a PEM public key or certificate: {0}")]
    Pem(String),
    #[error("an RSA EK must be 2048 bits with exponent 65537 (the TCG default template)")]
    RsaShape,
    #[error("an ECC EK must be on NIST P-256 (the TCG default template)")]
    Curve,
    #[error("the TPM's key is not a TCG default-template EK")]
    NotDefault,
    #[error(transparent)]
    Short(#[from] Short),
    /// An EK file ([`super::ek_file`]) that is not as `rustlive tpm ek` printed it.
    #[error("{}{what}", at_line(*.line))]
    File { line: usize, what: String },
    #[error("it holds no EK public key or certificate")]
    NoKey,
}

fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl EkPublic {
    pub fn kind(&self) -> &'static str {
        match self {
            EkPublic::Rsa(_) => "rsa2048",
            EkPublic::Ecc(_) => "eccp256",
        }
    }

    /// The TPMT_PUBLIC of the default template, with `unique` holding this key (or zeros, the
    /// template given to TPM2_CreatePrimary, when `key` is `None`).
    pub fn template(kind_rsa: bool, key: Option<&EkPublic>) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(if kind_rsa { ALG_RSA } else { ALG_ECC })
            .u16(ALG_SHA256)
            .u32(EK_ATTRIBUTES)
            .tpm2b(&EK_POLICY)
            .u16(ALG_AES)
            .u16(128)
            .u16(ALG_CFB)
            .u16(ALG_NULL);
        if kind_rsa {
            w.u16(2048).u32(0);
            let n = match key {
                Some(EkPublic::Rsa(k)) => left_pad(&k.n().to_bytes_be(), 256),
                _ => vec![0; 256],
            };
            w.tpm2b(&n);
        } else {
            w.u16(ECC_NIST_P256).u16(ALG_NULL);
            let (x, y) = match key {
                Some(EkPublic::Ecc(k)) => ecc_xy(k),
                _ => (vec![0; 32], vec![0; 32]),
            };
            w.tpm2b(&x).tpm2b(&y);
        }
        w.0
    }

    /// TPMT_PUBLIC of this key.
    pub fn public_area(&self) -> Vec<u8> {
        EkPublic::template(matches!(self, EkPublic::Rsa(_)), Some(self))
    }

    /// TPM2B_NAME: the name algorithm (SHA-256) then the digest of the public area.
    pub fn name(&self) -> Vec<u8> {
        object_name(&self.public_area())
    }

    /// Reads a TPMT_PUBLIC from the TPM; only the default templates are accepted, checked by
    /// rebuilding the public area from the key and comparing byte for byte.
    pub fn from_public_area(area: &[u8]) -> Result<EkPublic, EkError> {
        let mut r = Reader::new(area);
        let ty = r.u16()?;
        let ek = match ty {
            ALG_RSA => {
                // type, nameAlg, attributes, policy, sym (3), scheme, keyBits, exponent
                let mut r2 = Reader::new(area);
                r2.take(2 + 2 + 4)?;
                r2.tpm2b()?;
                r2.take(2 * 4 + 2 + 4)?;
                let n = r2.tpm2b()?;
                let key = rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(n),
                    rsa::BigUint::from(65537u32),
                )
                .map_err(|_| EkError::RsaShape)?;
                EkPublic::Rsa(key)
            }
            ALG_ECC => {
                let mut r2 = Reader::new(area);
                r2.take(2 + 2 + 4)?;
                r2.tpm2b()?;
                r2.take(2 * 4 + 2 + 2)?;
                let x = r2.tpm2b()?;
                let y = r2.tpm2b()?;
                EkPublic::Ecc(ecc_from_xy(x, y).ok_or(EkError::Curve)?)
            }
            _ => return Err(EkError::NotDefault),
        };
        if ek.public_area() != area {
            return Err(EkError::NotDefault);
        }
        Ok(ek)
    }

    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo), RSA or P-256.
    pub fn from_pem(text: &str) -> Result<EkPublic, EkError> {
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(text) {
            return EkPublic::from_rsa(k);
        }
        if let Ok(k) = p256::PublicKey::from_public_key_pem(text) {
            return Ok(EkPublic::Ecc(k));
        }
        Err(EkError::Pem(
            "expected -----BEGIN PUBLIC KEY----- holding an RSA 2048 or NIST P-256 key".into(),
        ))
    }

    /// A DER SubjectPublicKeyInfo (as found in an EK certificate).
    pub fn from_spki_der(der: &[u8]) -> Result<EkPublic, EkError> {
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
            return EkPublic::from_rsa(k);
        }
        if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            return Ok(EkPublic::Ecc(k));
        }
        Err(EkError::Pem(
            "the certificate's key is neither RSA 2048 nor NIST P-256".into(),
        ))
    }

    fn from_rsa(k: rsa::RsaPublicKey) -> Result<EkPublic, EkError> {
        if k.size() != 256 || k.e() != &rsa::BigUint::from(65537u32) {
            return Err(EkError::RsaShape);
        }
        Ok(EkPublic::Rsa(k))
    }

    pub fn to_pem(&self) -> String {
        let r = match self {
            EkPublic::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
            EkPublic::Ecc(k) => k.to_public_key_pem(LineEnding::LF),
        };
        r.unwrap_or_default()
    }
}

/// TPM2B_NAME contents of an object whose public area is `area` (SHA-256 name algorithm).
pub fn object_name(area: &[u8]) -> Vec<u8> {
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(area));
    name
}

fn left_pad(b: &[u8], len: usize) -> Vec<u8> {
    let mut v = vec![0; len.saturating_sub(b.len())];
    v.extend_from_slice(b);
    v
}

pub fn ecc_xy(k: &p256::PublicKey) -> (Vec<u8>, Vec<u8>) {
    let p = k.to_encoded_point(false);
    (
        p.x().map(|x| x.to_vec()).unwrap_or_default(),
        p.y().map(|y| y.to_vec()).unwrap_or_default(),
    )
}

pub fn ecc_from_xy(x: &[u8], y: &[u8]) -> Option<p256::PublicKey> {
    if x.len() > 32 || y.len() > 32 {
        return None;
    }
    let (x, y) = (left_pad(x, 32), left_pad(y, 32));
    let point = EncodedPoint::<p256::NistP256>::from_affine_coordinates(
        x.as_slice().into(),
        y.as_slice().into(),
        false,
    );
    Option::from(p256::PublicKey::from_encoded_point(&point))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// swtpm's RSA EK at 0x81010001 as `tpm2_readpublic -f pem` prints it, and the name
    /// tpm2_readpublic reported for it.
    pub const SWTPM_EK_PEM: &str = include_str!("testdata/ek-rsa.pem");
    pub const SWTPM_EK_NAME: &str = include_str!("testdata/ek-rsa.name");

    #[test]
    fn name_of_a_pem_ek_matches_the_tpm() {
        let ek = EkPublic::from_pem(SWTPM_EK_PEM).unwrap();
        assert_eq!(ek.kind(), "rsa2048");
        assert_eq!(hex(&ek.name()), SWTPM_EK_NAME.trim());
        let again = EkPublic::from_pem(&ek.to_pem()).unwrap();
        assert_eq!(again, ek);
        assert_eq!(EkPublic::from_public_area(&ek.public_area()).unwrap(), ek);
    }

    #[test]
    fn a_non_default_public_area_is_refused() {
        let ek = EkPublic::from_pem(SWTPM_EK_PEM).unwrap();
        let mut area = ek.public_area();
        area[5] ^= 0x40; // userWithAuth: not the default template
        assert!(matches!(
            EkPublic::from_public_area(&area),
            Err(EkError::NotDefault)
        ));
        assert!(EkPublic::from_public_area(&area[..40]).is_err());
        assert!(
            EkPublic::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }
}
