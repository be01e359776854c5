//! `--ssh-host-keys`: the node's SSH host keys, generated once into its bundle tree
//! (`DIR/etc/ssh/ssh_host_{ed25519,ecdsa,rsa}_key` and `.pub`) and kept there, so the node's
//! host key survives reboots and reinstalls of the image (rather than one key on every node,
//! or a new one at each boot).
//!
//! A key already in the tree is never replaced; a missing `.pub` is derived from its private
//! key. Keys come from `ssh-keygen` when the boot server has it (the reference implementation,
//! and fast RSA), else from the `ssh-key` crate (pure Rust, part of the static binary).
//!
//! `etc` and `etc/ssh` are opened (or created) from the tree's directory fd without following a
//! link before a key is generated, and the keys are written there ([`Dir::write`]): a tree with
//! `etc/ssh -> /elsewhere` is refused with nothing generated or written.

use super::error::{BuildError, KeygenError};
use crate::server::safe_file::{Dir, FileError};
use crate::sys::fs::FileType;
use ssh_key::{Algorithm, EcdsaCurve, LineEnding, PrivateKey};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key types generated, as OpenSSH names them in the file names.
pub const TYPES: &[&str] = &["ed25519", "ecdsa", "rsa"];
/// RSA size: ssh-keygen's default.
const RSA_BITS: usize = 3072;

/// How keys are generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keygen {
    /// The `ssh-keygen` at this path.
    SshKeygen(PathBuf),
    /// The `ssh-key` crate.
    Builtin,
}

impl Keygen {
    /// `ssh-keygen` from `PATH` when there is one, else the built-in generator.
    pub fn detect() -> Keygen {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("ssh-keygen"))
            .find(|p| p.is_file())
            .map_or(Keygen::Builtin, Keygen::SshKeygen)
    }
}

/// The private key file of `ty` in a tree.
pub fn key_path(dir: &Path, ty: &str) -> PathBuf {
    dir.join(format!("etc/ssh/ssh_host_{ty}_key"))
}

/// Generates the host keys the tree lacks; returns the files written. Private keys are 0600,
/// public keys 0644, `DIR/etc` and `DIR/etc/ssh` are created 0755 when missing. A link (or
/// anything but a directory) at `etc` or `etc/ssh`, or anything but a regular file at a key's
/// name, is refused before anything is generated.
pub fn ensure(tree: &Dir, keygen: &Keygen) -> Result<Vec<PathBuf>, BuildError> {
    let missing = |p: PathBuf| BuildError::Write {
        path: p,
        source: std::io::ErrorKind::NotFound.into(),
    };
    let etc = tree
        .sub("etc", Some(0o755))?
        .ok_or_else(|| missing(tree.path().join("etc")))?;
    let ssh = etc
        .sub("ssh", Some(0o755))?
        .ok_or_else(|| missing(etc.path().join("ssh")))?;
    let comment = format!(
        "root@{}",
        tree.path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("rustlive")
    );
    // Every name looked at first: a link or a FIFO at any of them stops before a key is made.
    let mut plan = Vec::new();
    for ty in TYPES {
        let private = format!("ssh_host_{ty}_key");
        let public = format!("{private}.pub");
        let have_private = is_key_file(&ssh, &private)?;
        let have_public = is_key_file(&ssh, &public)?;
        plan.push((*ty, private, public, have_private, have_public));
    }
    let mut made = Vec::new();
    for (ty, private, public, have_private, have_public) in plan {
        let private_path = ssh.path().join(&private);
        let public_path = ssh.path().join(&public);
        let fail = |source| BuildError::HostKey {
            path: private_path.clone(),
            source,
        };
        let public_name = OsStr::new(&public);
        if have_private {
            if !have_public {
                let (key, _) = super::tree::read_file(&ssh, &private)?;
                let key = std::str::from_utf8(&key)
                    .map_err(|_| fail(ssh_key::Error::FormatEncoding.into()))
                    .and_then(|s| PrivateKey::from_openssh(s).map_err(|e| fail(e.into())))?;
                let line = key.public_key().to_openssh().map_err(|e| fail(e.into()))?;
                ssh.write(public_name, public_line(&line).as_bytes(), 0o644)?;
                made.push(public_path);
            }
        } else {
            let (key, line) = generate(keygen, ty, &comment).map_err(fail)?;
            ssh.write(OsStr::new(&private), key.as_bytes(), 0o600)?;
            ssh.write(public_name, public_line(&line).as_bytes(), 0o644)?;
            made.push(private_path);
            made.push(public_path);
        }
    }
    Ok(made)
}

/// Whether the key file `name` exists in `ssh`: a regular file, or absent; anything else there
/// (a link, a FIFO, a directory) is refused.
fn is_key_file(ssh: &Dir, name: &str) -> Result<bool, BuildError> {
    let path = || ssh.path().join(name);
    match ssh.kind(name)? {
        None => Ok(false),
        Some(FileType::RegularFile) => Ok(true),
        Some(FileType::Symlink) => Err(FileError::Symlink(path()).into()),
        Some(_) => Err(BuildError::Special(path())),
    }
}

fn public_line(line: &str) -> String {
    format!("{}\n", line.trim_end())
}

/// A new key of `ty`: the OpenSSH private key text and the public key line.
pub fn generate(
    keygen: &Keygen,
    ty: &str,
    comment: &str,
) -> Result<(zeroize::Zeroizing<String>, String), KeygenError> {
    match keygen {
        Keygen::Builtin => {
            let mut rng = crate::sys::random::OsRandom;
            let mut key = match ty {
                "ed25519" => PrivateKey::random(&mut rng, Algorithm::Ed25519)?,
                "ecdsa" => PrivateKey::random(
                    &mut rng,
                    Algorithm::Ecdsa {
                        curve: EcdsaCurve::NistP256,
                    },
                )?,
                "rsa" => {
                    let kp = ssh_key::private::RsaKeypair::random(&mut rng, RSA_BITS)?;
                    PrivateKey::new(ssh_key::private::KeypairData::from(kp), comment)?
                }
                _ => return Err(ssh_key::Error::AlgorithmUnknown.into()),
            };
            key.set_comment(comment);
            let text = key.to_openssh(LineEnding::LF)?;
            let line = key.public_key().to_openssh()?;
            Ok((text, line))
        }
        Keygen::SshKeygen(bin) => {
            // Into a private temporary directory, read back, then placed by the caller.
            let tmp = tempdir_0700()?;
            let f = tmp.join("key");
            let mut cmd = std::process::Command::new(bin);
            cmd.args(["-q", "-N", "", "-t", ty, "-C", comment, "-f"])
                .arg(&f);
            if ty == "rsa" {
                cmd.args(["-b", &RSA_BITS.to_string()]);
            }
            let out = cmd.output();
            let result = match out {
                Err(e) => Err(KeygenError::Spawn(e)),
                Ok(o) if !o.status.success() => Err(KeygenError::SshKeygen {
                    status: o.status.to_string(),
                    stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                }),
                Ok(_) => (|| {
                    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&f)?);
                    let line = std::fs::read_to_string(f.with_extension("pub"))?;
                    Ok((text, line.trim_end().to_string()))
                })(),
            };
            if let Ok(meta) = f.metadata() {
                // Best effort: overwrite the temporary private key before removing it.
                if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&f) {
                    let _ = w.write_all(&vec![0u8; usize::try_from(meta.len()).unwrap_or(0)]);
                }
            }
            let _ = std::fs::remove_dir_all(&tmp);
            result
        }
    }
}

/// A fresh 0700 directory under the system's temporary directory.
fn tempdir_0700() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0u32..100 {
        let d = base.join(format!("rustlive-keygen.{}.{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary directory name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// ssh-keygen (openssh-client, installed by scripts/install-deps.sh) reads what was written.
    fn fingerprint(p: &Path) -> String {
        let out = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(p)
            .output()
            .expect("ssh-keygen is installed by scripts/install-deps.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn check_generates_once_and_keeps(keygen: Keygen) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("n001");
        std::fs::create_dir(&dir).unwrap();
        let tree = Dir::open(&dir).unwrap();
        let made = ensure(&tree, &keygen).unwrap();
        assert_eq!(made.len(), 6, "{made:?}");
        for ty in TYPES {
            let k = key_path(&dir, ty);
            assert_eq!(mode(&k), 0o600, "{ty}");
            assert_eq!(mode(&k.with_extension("pub")), 0o644, "{ty}");
            let fp = fingerprint(&k);
            assert_eq!(fp, fingerprint(&k.with_extension("pub")), "{ty}");
            assert!(fp.contains("root@n001"), "{fp}");
            let want = match *ty {
                "ed25519" => "(ED25519)",
                "ecdsa" => "(ECDSA)",
                _ => "3072 ",
            };
            assert!(fp.contains(want), "{ty}: {fp}");
        }
        let before = std::fs::read(key_path(&dir, "ed25519")).unwrap();
        // Kept: a second run writes nothing; a lost .pub is derived from the private key.
        assert!(ensure(&tree, &keygen).unwrap().is_empty());
        let rsa_pub = key_path(&dir, "rsa").with_extension("pub");
        let line = std::fs::read(&rsa_pub).unwrap();
        std::fs::remove_file(&rsa_pub).unwrap();
        assert_eq!(
            ensure(&tree, &keygen).unwrap(),
            std::slice::from_ref(&rsa_pub)
        );
        let (a, b) = (
            String::from_utf8(line).unwrap(),
            std::fs::read_to_string(&rsa_pub).unwrap(),
        );
        assert_eq!(a.split(' ').nth(1), b.split(' ').nth(1), "same public key");
        assert_eq!(std::fs::read(key_path(&dir, "ed25519")).unwrap(), before);
    }

    #[test]
    fn builtin_generates_once_and_keeps() {
        check_generates_once_and_keeps(Keygen::Builtin);
    }

    #[test]
    fn ssh_keygen_generates_once_and_keeps() {
        match Keygen::detect() {
            k @ Keygen::SshKeygen(_) => check_generates_once_and_keeps(k),
            Keygen::Builtin => {
                crate::support::testing::skip("ssh-keygen (openssh-client) is not installed")
            }
        }
    }
}
