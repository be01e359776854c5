//! Whether a sealed bundle's signature is good enough, decided before the TPM is asked
//! anything and before anything is written.
//!
//! Sealing needs only the node's public EK, so anyone can seal a bundle to a node; the boot
//! server's signature (envelope version 2) says where it came from. The node trusts the minisign
//! keys in its initramfs's `/etc/rustlive/keys/sealed/` ([`SEALED_KEYS_DIR`]), apart from the
//! image-signing keys of `/etc/rustlive/keys/`: the bundle key lives on the boot server and
//! signs unattended, the image key may be kept offline, and adding one must not make the other
//! kind of signature mandatory.
//!
//! | signature                    | `sealed=required` | trusted keys | verdict                      |
//! |------------------------------|-------------------|--------------|------------------------------|
//! | by a trusted key, verifies   | any               | (some)       | accepted                     |
//! | by a trusted key, fails      | any               | (some)       | refused (changed after signing) |
//! | by another key               | yes, or keys      | any / some   | refused                      |
//! | by another key               | no                | none         | accepted, warned: unchecked  |
//! | none (version 1)             | yes, or keys      | any / some   | refused                      |
//! | none (version 1)             | no                | none         | accepted, warned: unsigned   |
//!
//! The last rows are the transition: a node whose initramfs holds no sealed-bundle key (built
//! before signing existed) keeps opening what it opened before, loudly; installing a key, or
//! `rd.rustlive.secrets.sealed=required`, ends that.

use crate::tpm::envelope::{KeyId, Signer};
use std::path::PathBuf;

/// Where the initramfs holds the public keys whose signatures on sealed bundles the node trusts
/// (`*.pub`, minisign format), below the image keys' [`crate::fetch::verify::KEYS_DIR`].
pub const SEALED_KEYS_DIR: &str = "/etc/rustlive/keys/sealed";

/// Why a sealed bundle's origin is not good enough.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("it is not signed (a version 1 envelope), and {0}")]
    Unsigned(Because),
    #[error("it is signed by key {key}, which is not a trusted key in {}, and {because}", dir.display())]
    Untrusted {
        key: KeyId,
        dir: PathBuf,
        because: Because,
    },
    #[error(transparent)]
    Signature(crate::tpm::envelope::EnvelopeError),
    #[error("cannot load the trusted keys of {}", dir.display())]
    Keys {
        dir: PathBuf,
        #[source]
        source: crate::fetch::verify::VerifyError,
    },
}

/// The rule that made a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Because {
    /// `rd.rustlive.secrets.sealed=required`.
    Required { dir: PathBuf, keys: usize },
    /// The node trusts some keys, so a sealed bundle must carry one's signature.
    KeysInstalled { dir: PathBuf },
}

impl std::fmt::Display for Because {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Because::Required { dir, keys: 0 } => write!(
                f,
                "rd.rustlive.secrets.sealed=required accepts only a bundle signed by a key in {}, \
                 which holds none",
                dir.display()
            ),
            Because::Required { dir, .. } => write!(
                f,
                "rd.rustlive.secrets.sealed=required accepts only a bundle signed by a key in {}",
                dir.display()
            ),
            Because::KeysInstalled { dir } => write!(
                f,
                "{} holds trusted keys, so a sealed bundle must be signed by one of them",
                dir.display()
            ),
        }
    }
}

/// What the node knows when it decides.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `rd.rustlive.secrets.sealed=required`.
    pub sealed_required: bool,
    /// The directory the keys came from, for messages.
    pub dir: PathBuf,
    /// How many trusted keys it holds.
    pub keys: usize,
}

/// The verdict on a signature that verified or could not be checked: `Ok(None)` accepted,
/// `Ok(Some(warning))` accepted with a warning to log, `Err` refused. (A signature by a trusted
/// key that fails to verify never gets here: it is refused by `check_signature` already.)
pub fn decide(signer: Signer, policy: &Policy) -> Result<Option<String>, Refusal> {
    let because = || {
        if policy.sealed_required {
            Some(Because::Required {
                dir: policy.dir.clone(),
                keys: policy.keys,
            })
        } else if policy.keys > 0 {
            Some(Because::KeysInstalled {
                dir: policy.dir.clone(),
            })
        } else {
            None
        }
    };
    match signer {
        Signer::Trusted(_) => Ok(None),
        Signer::Unknown(key) => match because() {
            Some(because) => Err(Refusal::Untrusted {
                key,
                dir: policy.dir.clone(),
                because,
            }),
            None => Ok(Some(format!(
                "the sealed bundle is signed by key {key}, but {} holds no trusted key, so the \
                 signature is NOT checked: anyone who knows this node's EK could have sealed it. \
                 Install the boot server's public key there (and set \
                 rd.rustlive.secrets.sealed=required)",
                policy.dir.display()
            ))),
        },
        Signer::Unsigned => match because() {
            Some(because) => Err(Refusal::Unsigned(because)),
            None => Ok(Some(format!(
                "the sealed bundle is NOT signed (a version 1 envelope): anyone who knows this \
                 node's EK could have sealed it. Seal it again with `rustlive bundle seal \
                 --sign-key` and install the public key in {} (accepted only while that \
                 directory is empty and rd.rustlive.secrets.sealed=required is not set)",
                policy.dir.display()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table() {
        let id = KeyId([1; 8]);
        let p = |sealed_required, keys| Policy {
            sealed_required,
            dir: PathBuf::from(SEALED_KEYS_DIR),
            keys,
        };
        // Signed by a trusted key: always accepted, never a warning.
        for (r, k) in [(false, 1), (true, 1), (true, 3)] {
            assert!(decide(Signer::Trusted(id), &p(r, k)).unwrap().is_none());
        }
        // Another key, or no signature: refused once keys are installed or sealing is required.
        for (r, k) in [(true, 0), (true, 1), (false, 1)] {
            let e = decide(Signer::Unknown(id), &p(r, k)).unwrap_err();
            assert!(matches!(e, Refusal::Untrusted { .. }), "{e}");
            assert!(e.to_string().contains("0101010101010101"), "{e}");
            let e = decide(Signer::Unsigned, &p(r, k)).unwrap_err();
            assert!(matches!(e, Refusal::Unsigned(_)), "{e}");
            let why = if r {
                "rd.rustlive.secrets.sealed=required"
            } else {
                "holds trusted keys"
            };
            assert!(e.to_string().contains(why), "{e}");
        }
        let e = decide(Signer::Unsigned, &p(true, 0)).unwrap_err();
        assert!(e.to_string().contains("which holds none"), "{e}");
        // No keys and not required: the transition, accepted with a warning.
        let w = decide(Signer::Unsigned, &p(false, 0)).unwrap().unwrap();
        assert!(w.contains("NOT signed"), "{w}");
        let w = decide(Signer::Unknown(id), &p(false, 0)).unwrap().unwrap();
        assert!(w.contains("NOT checked"), "{w}");
    }
}
