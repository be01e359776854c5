//! `rustlive bundle seal`, on the boot server (no TPM needed): a plain secrets bundle sealed to
//! one node's endorsement key, which `rustlive tpm ek` printed on that node, and signed with the
//! boot server's minisign key ([`super::sign`]) so that the node can tell it came from here.
//!
//! The input, `--ek` and `--sign-key` are named on the command line (a link there is followed)
//! and must be regular files of bounded size ([`read_named`]); the output is written through a
//! temporary beside it and renamed, mode 0644 whatever the umask ([`Dir::write`]).

use super::sign::{SignError, SigningKey};
use crate::secrets::bundle::MAX_BUNDLE_SIZE;
use crate::server::safe_file::{read_named, Dir, FileError, Limit};
use crate::support::exit::Exit;
use crate::tpm::ek::{hex, EkError, EkPublic};
use crate::tpm::envelope::{self, EnvelopeError};
use crate::tpm::pcr::PcrPolicy;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{} is not an EK file (what `rustlive tpm ek` prints, an EK public key or certificate)", .0.display())]
    Ek(PathBuf, #[source] EkError),
    #[error("{} is not a plain secrets bundle: {}", .0.display(), .1)]
    Input(PathBuf, String),
    #[error("cannot seal the bundle")]
    Seal(#[source] EnvelopeError),
    #[error("--pcr: {0}")]
    Pcr(String),
    /// The input or `--ek` refused (a FIFO, a device, over its limit) or unreadable.
    #[error(transparent)]
    InputFile(FileError),
    /// The output's directory or the output itself cannot be written.
    #[error(transparent)]
    OutputFile(FileError),
    #[error("--sign-key")]
    Sign(#[source] SignError),
}

impl SealError {
    pub fn exit_code(&self) -> Exit {
        match self {
            SealError::Ek(..)
            | SealError::Input(..)
            | SealError::Pcr(..)
            | SealError::InputFile(..) => Exit::Usage,
            SealError::Sign(SignError::Sign(..)) => Exit::Secrets,
            SealError::Sign(..) => Exit::Usage,
            SealError::Seal(..) | SealError::OutputFile(..) => Exit::Secrets,
        }
    }
}

/// The EK of `--ek`: what `rustlive tpm ek` printed (text or JSON, saved unedited), a PEM public
/// key, or an EK certificate (PEM or DER), read by [`crate::tpm::ek_file`]; a regular file of
/// at most [`Limit::EK`].
pub fn load_ek(path: &Path) -> Result<EkPublic, SealError> {
    let c = read_named(path, Limit::EK).map_err(SealError::InputFile)?;
    parse_ek(path, &c.bytes)
}

/// [`load_ek`] of bytes already read from `path`.
pub fn parse_ek(path: &Path, bytes: &[u8]) -> Result<EkPublic, SealError> {
    crate::tpm::ek_file::parse(bytes).map_err(|e| SealError::Ek(path.into(), e))
}

/// Seals `plain` to `ek` (and `pcr`) and signs it with `key`: the sealed bundle (envelope
/// version 2) that `bundle seal` and `build-all --seal-to` write.
pub fn seal_signed(
    plain: &[u8],
    ek: &EkPublic,
    pcr: Option<&PcrPolicy>,
    key: &SigningKey,
) -> Result<Vec<u8>, SealError> {
    let mut env = envelope::seal(plain, ek, pcr).map_err(SealError::Seal)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let comment = format!(
        "timestamp:{now}\t{} {} to the {} EK {}",
        envelope::FORMAT,
        envelope::VERSION,
        ek.kind(),
        env.ek_name
    );
    env.signature = Some(
        key.sign(&env.signed_message(), &comment)
            .map_err(SealError::Sign)?,
    );
    env.to_bytes().map_err(SealError::Seal)
}

/// `rustlive bundle seal --ek EK --sign-key KEY IN -o OUT`: OUT is written whole (a temporary
/// file renamed) and readable by all (0644 whatever the umask): it is made to be served to anyone.
pub fn seal_command(
    ek_path: &Path,
    sign_key: &Path,
    input: &Path,
    output: &Path,
    pcr: Option<&str>,
) -> Result<(), SealError> {
    let pcr = pcr
        .map(PcrPolicy::parse)
        .transpose()
        .map_err(SealError::Pcr)?;
    let ek = load_ek(ek_path)?;
    let key = SigningKey::load(sign_key).map_err(SealError::Sign)?;
    let plain = Zeroizing::new(
        read_named(input, Limit::BUNDLE)
            .map_err(SealError::InputFile)?
            .bytes,
    );
    check_plain(&plain).map_err(|why| SealError::Input(input.into(), why))?;
    let sealed = seal_signed(&plain, &ek, pcr.as_ref(), &key)?;
    let (dir, name) = Dir::open_parent_of(output).map_err(SealError::OutputFile)?;
    dir.write(&name, &sealed, 0o644)
        .map_err(SealError::OutputFile)?;
    log::info!(
        "sealed {} to the {} EK {} into {}, signed by key {}",
        input.display(),
        ek.kind(),
        hex(&ek.name()),
        output.display(),
        key.key_id()
    );
    Ok(())
}

/// A plain bundle: at most 1 MiB of JSON with `"version": 1`, not already sealed. The full
/// validation (owners against the node's new root) happens on the node.
fn check_plain(plain: &[u8]) -> Result<(), String> {
    if plain.len() > MAX_BUNDLE_SIZE {
        return Err(format!("over the {} MiB limit", MAX_BUNDLE_SIZE >> 20));
    }
    if envelope::is_sealed(plain) {
        return Err("it is already sealed".into());
    }
    #[derive(serde::Deserialize)]
    struct Head {
        version: Option<u32>,
    }
    match serde_json::from_slice::<Head>(plain) {
        Ok(Head { version: Some(1) }) => Ok(()),
        Ok(_) => Err("\"version\" must be 1".into()),
        Err(e) => Err(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_command_reads_pem_or_certificate_and_refuses_bad_input() {
        let t = tempfile::tempdir().unwrap();
        let ek = t.path().join("ek.pem");
        std::fs::write(&ek, include_str!("../tpm/testdata/ek-rsa.pem")).unwrap();
        let input = t.path().join("b.json");
        std::fs::write(&input, br#"{"version": 1, "files": []}"#).unwrap();
        let out = t.path().join("b.sealed");
        let key = t.path().join("sign.key");
        std::fs::write(&key, crate::server::sign::tests::SECRET).unwrap();
        seal_command(&ek, &key, &input, &out, None).unwrap();
        let sealed = std::fs::read(&out).unwrap();
        assert!(envelope::is_sealed(&sealed));
        let p = envelope::parse(&sealed).unwrap();
        assert_eq!(
            hex(&p.ek_name),
            include_str!("../tpm/testdata/ek-rsa.name").trim()
        );
        // Version 2, signed by the key, whose public half the node trusts.
        assert_eq!(p.version, envelope::VERSION);
        let trusted =
            minisign_verify::PublicKey::decode(crate::server::sign::tests::PUBLIC).unwrap();
        assert_eq!(
            envelope::check_signature(&p, &[trusted]).unwrap(),
            envelope::Signer::Trusted(crate::server::sign::tests::key().key_id())
        );

        // Sealing a sealed bundle, or something that is not a bundle, is refused.
        let again = seal_command(&ek, &key, &out, &t.path().join("x"), None);
        assert!(matches!(again, Err(SealError::Input(..))));
        std::fs::write(&input, b"{\"version\": 2}").unwrap();
        assert!(matches!(
            seal_command(&ek, &key, &input, &out, None),
            Err(SealError::Input(..))
        ));
        std::fs::write(&ek, b"garbage").unwrap();
        let e = seal_command(&ek, &key, &input, &out, None).unwrap_err();
        assert!(matches!(e, SealError::Ek(..)));
        assert_eq!(e.exit_code(), Exit::Usage);
        // Without a usable signing key nothing is sealed.
        std::fs::write(&ek, include_str!("../tpm/testdata/ek-rsa.pem")).unwrap();
        std::fs::write(&key, crate::server::sign::tests::PUBLIC).unwrap();
        std::fs::remove_file(&out).unwrap();
        let e = seal_command(&ek, &key, &input, &out, None).unwrap_err();
        assert!(matches!(e, SealError::Sign(..)), "{e}");
        assert_eq!(e.exit_code(), Exit::Usage);
        assert!(!out.exists());
    }
}
