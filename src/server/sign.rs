//! The boot server's signing key: every sealed bundle it writes is signed (envelope version 2,
//! [`crate::tpm::envelope`]) with a minisign secret key, the same Ed25519 format as image
//! signatures, so that a node trusts a sealed bundle only when its public key is in the node's
//! initramfs (`/etc/rustlive/keys/sealed/`).
//!
//! The `minisign` crate (by minisign's author, pure Rust) makes the signatures and decrypts
//! password-protected keys (scrypt). Its `from_unencrypted_box` refuses the keys that
//! `minisign -G -W` writes (minisign leaves their checksum zero and never checks it), so an
//! unencrypted key is read here from its bytes, as minisign itself reads it; every signature is
//! then checked against the key's public half before it is used, so a damaged key cannot sign.

use crate::server::safe_file::{read_named, FileError, Limit};
use crate::tpm::envelope::KeyId;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest secret key file read (a minisign secret key is two lines, about 270 bytes).
/// The decoded key: algorithm, KDF and checksum algorithms (2 bytes each), salt (32), scrypt
/// limits (8 + 8), key id (8), Ed25519 secret and public key (64), checksum (32).
const KEY_BYTES: usize = 158;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read the signing key")]
    File(#[source] Box<FileError>),
    #[error("{} is not a minisign secret key: {}", .0.display(), .1)]
    Format(PathBuf, &'static str),
    #[error("cannot read the password of the encrypted signing key {} (a key for unattended runs is made with `minisign -G -W`)", .0.display())]
    Password(PathBuf, #[source] std::io::Error),
    #[error("cannot decrypt the signing key {}: {}", .0.display(), .1)]
    Decrypt(PathBuf, String),
    #[error("cannot sign with the key {}: {}", .0.display(), .1)]
    Sign(PathBuf, String),
}

/// A minisign secret key, ready to sign.
pub struct SigningKey {
    path: PathBuf,
    secret: minisign::SecretKey,
    public: minisign::PublicKey,
    id: KeyId,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.path.display(), self.id)
    }
}

impl SigningKey {
    /// Reads the minisign secret key at `path` (`minisign -G`); an encrypted one asks for its
    /// password on the terminal.
    pub fn load(path: &Path) -> Result<SigningKey, SignError> {
        let text = read_key_file(path)?;
        Self::from_text(&text, path, || {
            rpassword::prompt_password(format!("Password for {}: ", path.display()))
                .map(Zeroizing::new)
        })
    }

    /// The key in `text` (the file's content); `password` is asked only for an encrypted key.
    pub fn from_text(
        text: &str,
        path: &Path,
        password: impl FnOnce() -> std::io::Result<Zeroizing<String>>,
    ) -> Result<SigningKey, SignError> {
        let format = |why| SignError::Format(path.to_path_buf(), why);
        let mut lines = text.lines();
        if !lines
            .next()
            .is_some_and(|l| l.starts_with("untrusted comment:"))
        {
            return Err(format("the first line is not an untrusted comment"));
        }
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(lines.next().unwrap_or_default().trim())
                .map_err(|_| format("the second line is not base64"))?,
        );
        if raw.len() != KEY_BYTES {
            return Err(format("the key has the wrong length"));
        }
        if raw.get(..2) != Some(b"Ed".as_slice()) {
            return Err(format("not an Ed25519 key"));
        }
        if raw.get(4..6) != Some(b"B2".as_slice()) {
            return Err(format("unknown checksum algorithm"));
        }
        let secret = match raw.get(2..4) {
            Some([0, 0]) => minisign::SecretKey::from_bytes(&raw)
                .map_err(|e| SignError::Decrypt(path.to_path_buf(), e.to_string()))?,
            Some(b"Sc") => {
                let pw = password().map_err(|e| SignError::Password(path.to_path_buf(), e))?;
                minisign::SecretKey::from_box(
                    minisign::SecretKeyBox::from_string(text)
                        .map_err(|e| SignError::Decrypt(path.to_path_buf(), e.to_string()))?,
                    Some(pw.to_string()),
                )
                .map_err(|e| SignError::Decrypt(path.to_path_buf(), e.to_string()))?
            }
            _ => return Err(format("unknown key derivation (neither none nor scrypt)")),
        };
        let public = minisign::PublicKey::from_secret_key(&secret)
            .map_err(|e| SignError::Decrypt(path.to_path_buf(), e.to_string()))?;
        let id = public
            .keynum()
            .try_into()
            .map(KeyId)
            .map_err(|_| format("the key id is not 8 bytes"))?;
        Ok(SigningKey {
            path: path.to_path_buf(),
            secret,
            public,
            id,
        })
    }

    /// The key id, which the node's trusted public key must share.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// The public key (algorithm, key id, Ed25519 key), which identifies the signer in
    /// `build-all`'s record of what a node's outputs were sealed with.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.public.to_bytes()
    }

    /// The public key as a minisign `.pub` file: what goes into the nodes' initramfs.
    pub fn public_file(&self) -> Result<String, SignError> {
        self.public
            .to_box()
            .map(|b| b.into_string())
            .map_err(|e| SignError::Sign(self.path.clone(), e.to_string()))
    }

    /// A prehashed minisign signature of `message` (the `.minisig` text), with
    /// `trusted_comment` signed along; checked against the public key before it is returned.
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> Result<String, SignError> {
        let err = |e: minisign::PError| SignError::Sign(self.path.clone(), e.to_string());
        let sig = minisign::sign(
            Some(&self.public),
            &self.secret,
            message,
            Some(trusted_comment),
            Some("rustlive sealed bundle signature"),
        )
        .map_err(err)?;
        // minisign::sign checks the comment's signature against the public key; the message's
        // signature is checked too, by the verifier the nodes use.
        let text = sig.into_string();
        let check = minisign_verify::PublicKey::from_base64(
            &base64::engine::general_purpose::STANDARD.encode(self.public.to_bytes()),
        )
        .and_then(|pk| {
            minisign_verify::Signature::decode(&text).and_then(|s| pk.verify(message, &s, false))
        });
        check.map_err(|e| SignError::Sign(self.path.clone(), e.to_string()))?;
        Ok(text)
    }
}

/// The signing key file: a regular file of at most [`Limit::SIGNING_KEY`] (read through the
/// boot-server tools' file layer), with a warning when others than its owner can read it.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, SignError> {
    let c = read_named(path, Limit::SIGNING_KEY).map_err(|e| SignError::File(Box::new(e)))?;
    if c.mode & 0o077 != 0 {
        log::warn!(
            "sign: the signing key {} can be read by others than its owner (mode {:04o}); \
             whoever reads it can sign sealed bundles that nodes trust",
            path.display(),
            c.mode & 0o7777
        );
    }
    let text = std::str::from_utf8(&c.bytes)
        .map_err(|_| SignError::Format(path.to_path_buf(), "not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `minisign -G -W` (minisign 0.11): unencrypted, zero checksum.
    pub const SECRET: &str = "untrusted comment: minisign encrypted secret key
RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAsxtrk8SwyizInhvCXTAhkq4kJy/nSieLsDWBanJmQfk9nuya8epTtd9pz1xJxIQxLXOfxxXRbm7Nl+7yjse46O9mn7B1ZHC5AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
";
    pub const PUBLIC: &str = "untrusted comment: minisign public key 2CCAB0C4936B1BB3
RWSzG2uTxLDKLN9pz1xJxIQxLXOfxxXRbm7Nl+7yjse46O9mn7B1ZHC5
";

    pub fn key() -> SigningKey {
        SigningKey::from_text(SECRET, Path::new("test.key"), || unreachable!()).unwrap()
    }

    #[test]
    fn signs_with_a_minisign_w_key_and_verifies_with_its_public_key() {
        let k = key();
        assert_eq!(k.key_id().to_string(), "2CCAB0C4936B1BB3");
        let sig = k.sign(b"hello", "timestamp:1\tfile:x").unwrap();
        let pk = minisign_verify::PublicKey::decode(PUBLIC).unwrap();
        let s = minisign_verify::Signature::decode(&sig).unwrap();
        pk.verify(b"hello", &s, false).unwrap();
        assert!(pk.verify(b"hellO", &s, false).is_err());
        assert_eq!(s.trusted_comment(), "timestamp:1\tfile:x");
        assert!(k
            .public_file()
            .unwrap()
            .contains(PUBLIC.lines().nth(1).unwrap()));
    }

    #[test]
    fn bad_key_files_are_refused() {
        let p = Path::new("k");
        let f = |t: &str| SigningKey::from_text(t, p, || unreachable!()).unwrap_err();
        assert!(matches!(f(""), SignError::Format(..)));
        assert!(matches!(f(PUBLIC), SignError::Format(..)));
        assert!(matches!(
            f("untrusted comment: x\nnot base64!\n"),
            SignError::Format(..)
        ));
        // A damaged key (its public half changed) cannot sign.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(SECRET.lines().nth(1).unwrap())
            .unwrap();
        raw[100] ^= 1;
        let text = format!(
            "untrusted comment: x\n{}\n",
            base64::engine::general_purpose::STANDARD.encode(&raw)
        );
        let k = SigningKey::from_text(&text, p, || unreachable!()).unwrap();
        assert!(matches!(k.sign(b"m", "c"), Err(SignError::Sign(..))));
    }

    #[test]
    fn an_encrypted_key_asks_for_its_password() {
        // The crate's own encrypted key (minisign's format; lower scrypt limits than
        // `minisign -G` uses, so the test is quick).
        let kp = minisign::KeyPair::generate_encrypted_keypair(Some("rustlive".into())).unwrap();
        let text = kp.sk.to_box(None).unwrap().into_string();
        let e = SigningKey::from_text(&text, Path::new("k"), || {
            Err(std::io::Error::other("no terminal"))
        })
        .unwrap_err();
        assert!(matches!(e, SignError::Password(..)), "{e}");
        let e = SigningKey::from_text(&text, Path::new("k"), || Ok(Zeroizing::new("wrong".into())))
            .unwrap_err();
        assert!(matches!(e, SignError::Decrypt(..)), "{e}");
        let k = SigningKey::from_text(&text, Path::new("k"), || {
            Ok(Zeroizing::new("rustlive".into()))
        })
        .unwrap();
        k.sign(b"m", "c").unwrap();
    }
}
