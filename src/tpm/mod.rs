//! Secrets sealed to the node's TPM (issue 13): the boot server encrypts a bundle with a fresh
//! AES-256-GCM key and binds that key to the node's endorsement key with TPM2_MakeCredential,
//! done in software ([`credential`]); only that TPM can run TPM2_ActivateCredential on it
//! ([`client`]), over a salted, parameter-encrypted session so the key never crosses the bus in
//! clear. [`envelope`] is the sealed bundle's format; [`transport`] the seam to the TPM (the
//! kernel's character device, or swtpm's socket in tests).
//!
//! TPM commands are marshalled by hand ([`wire`], [`client`]): rustlive needs eight commands,
//! and the `tpm2-protocol` crate's API changed shape across its recent releases (0.10's
//! builders, 0.17's wire views), while session HMACs and parameter encryption need the raw
//! parameter bytes anyway.

pub mod client;
pub mod credential;
pub mod ek;
pub mod ek_file;
pub mod envelope;
pub mod kdf;
pub mod pcr;
pub mod transport;
pub mod wire;

/// The EK in an EK certificate (PEM `CERTIFICATE` or DER, as read from NV index 0x01c00002 or
/// 0x01c0000a or handed out by the TPM vendor). The certificate's signature chain is the site's
/// business at enrollment; here it only carries the key.
pub fn ek_from_certificate(bytes: &[u8]) -> Result<ek::EkPublic, ek::EkError> {
    use x509_cert::der::{Decode, DecodePem, Encode};
    let cert = match std::str::from_utf8(bytes) {
        Ok(s) if s.contains("-----BEGIN CERTIFICATE-----") => {
            x509_cert::Certificate::from_pem(s.trim().as_bytes())
        }
        _ => x509_cert::Certificate::from_der(bytes),
    }
    .map_err(|e| ek::EkError::Pem(format!("not an X.509 certificate: {e}")))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| ek::EkError::Pem(e.to_string()))?;
    ek::EkPublic::from_spki_der(&spki)
}

/// Opens the node's TPM (`RUSTLIVE_TPM`, else `/dev/tpmrm0`, else `/dev/tpm0`); every command
/// sent to it ends by `deadline`.
pub fn open_tpm(
    paths: &crate::support::paths::Paths,
    deadline: crate::support::deadline::Deadline,
) -> Result<client::Tpm, std::io::Error> {
    let t = transport::open_default(&paths.join("dev"))?;
    let mut tpm = client::Tpm::new(Box::new(transport::Bounded::new(t, deadline)));
    // swtpm started without --flags startup-clear needs it; a started TPM answers
    // TPM_RC_INITIALIZE, which `startup` accepts.
    if std::env::var_os(transport::ENV_OVERRIDE).is_some() {
        tpm.startup()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(tpm)
}
