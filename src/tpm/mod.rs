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
pub mod envelope;
pub mod kdf;
pub mod transport;
pub mod wire;
