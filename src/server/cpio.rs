//! A deterministic newc (`070701`) cpio writer: the format the kernel unpacks an initramfs from.
//!
//! Used for the standalone initramfs and the per-node secrets initrd. Same inputs, same bytes:
//! entries sorted by path (a parent always precedes its children), inode numbers assigned in that
//! order, mtime 0, owner root:root. Missing parent directories are added (0755).

use std::collections::BTreeMap;
use std::io::{self, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Permission bits (`0o7777` at most); the type bits come from the kind.
    perm: u32,
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("invalid path {0:?} in the archive (empty, NUL, `.` or `..` component)")]
    BadPath(String),
    #[error("{path} is {len} bytes, more than a newc archive can hold (4 GiB)")]
    TooLarge { path: String, len: usize },
    #[error("{0} is both a directory and something else in the archive")]
    Conflict(String),
}

/// An archive under construction; paths are relative (a leading `/` is dropped).
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

fn normalize(path: &str) -> Result<String, CpioError> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    let bad = p.is_empty()
        || p.contains('\0')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(p.to_string())
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.insert(path, perm, Kind::Dir)
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge {
                path: path.to_string(),
                len: data.len(),
            });
        }
        self.insert(path, perm, Kind::File(data))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.insert(path, 0o777, Kind::Symlink(target.to_string()))
    }

    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, perm, Kind::CharDev { major, minor })
    }

    /// Whether `path` is in the archive.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// Paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn insert(&mut self, path: &str, perm: u32, kind: Kind) -> Result<(), CpioError> {
        let p = normalize(path)?;
        let mut parent = String::new();
        let components: Vec<&str> = p.split('/').collect();
        let (_, parents) = components
            .split_last()
            .ok_or_else(|| CpioError::BadPath(path.into()))?;
        for c in parents {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            match self.entries.get(&parent) {
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => {}
                Some(_) => return Err(CpioError::Conflict(parent)),
                None => {
                    self.entries.insert(
                        parent.clone(),
                        Entry {
                            perm: 0o755,
                            kind: Kind::Dir,
                        },
                    );
                }
            }
        }
        let is_dir = kind == Kind::Dir;
        if let Some(old) = self.entries.get(&p) {
            if (old.kind == Kind::Dir) != is_dir {
                return Err(CpioError::Conflict(p));
            }
        }
        self.entries.insert(
            p,
            Entry {
                perm: perm & 0o7777,
                kind,
            },
        );
        Ok(())
    }

    /// The archive's bytes, trailer included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes the archive; returns the number of bytes written.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<u64> {
        let mut n = 0u64;
        let mut ino = 0u32;
        for (path, e) in &self.entries {
            ino = ino.wrapping_add(1);
            let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &e.kind {
                Kind::Dir => (S_IFDIR | e.perm, &[], 2, (0, 0)),
                Kind::File(d) => (S_IFREG | e.perm, d, 1, (0, 0)),
                Kind::Symlink(t) => (S_IFLNK | 0o777, t.as_bytes(), 1, (0, 0)),
                Kind::CharDev { major, minor } => (S_IFCHR | e.perm, &[], 1, (*major, *minor)),
            };
            n = n.saturating_add(write_entry(w, ino, mode, nlink, rdev, path, data)?);
        }
        n = n.saturating_add(write_entry(w, 0, 0, 1, (0, 0), "TRAILER!!!", &[])?);
        Ok(n)
    }
}

/// Zeros up to the next 4-byte boundary after `len` bytes.
fn pad4(w: &mut dyn Write, len: u64) -> io::Result<u64> {
    let pad: &[u8] = match len % 4 {
        1 => &[0; 3],
        2 => &[0; 2],
        3 => &[0; 1],
        _ => &[],
    };
    w.write_all(pad)?;
    Ok(pad.len() as u64)
}

fn write_entry(
    w: &mut dyn Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> io::Result<u64> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB");
    let size = u32::try_from(data.len()).map_err(|_| too_big())?;
    let namesize = u32::try_from(name.len().saturating_add(1)).map_err(|_| too_big())?;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, rdev.0, rdev.1, 0
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let mut n = (header.len() as u64).saturating_add(u64::from(namesize));
    n = n.saturating_add(pad4(w, n)?);
    w.write_all(data)?;
    n = n.saturating_add(u64::from(size));
    n = n.saturating_add(pad4(w, n)?);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_first_sorted_and_deterministic() {
        let mut a = Archive::new();
        a.file("/usr/lib/modules/x.ko", 0o644, b"ko".to_vec())
            .unwrap();
        a.file("init", 0o755, b"#!".to_vec()).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let paths: Vec<_> = a.paths().collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "init",
                "usr",
                "usr/lib",
                "usr/lib/modules",
                "usr/lib/modules/x.ko"
            ]
        );
        assert_eq!(a.to_bytes(), a.clone().to_bytes());
        let bytes = a.to_bytes();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn refuses_bad_paths_and_conflicts() {
        let mut a = Archive::new();
        for p in ["", "/", "a/../b", "a//b", "./a", "a\0b"] {
            assert!(
                matches!(a.file(p, 0o644, vec![]), Err(CpioError::BadPath(_))),
                "{p:?}"
            );
        }
        a.file("a/b", 0o644, vec![]).unwrap();
        assert!(matches!(
            a.file("a/b/c", 0o644, vec![]),
            Err(CpioError::Conflict(_))
        ));
        assert!(matches!(a.dir("a/b", 0o755), Err(CpioError::Conflict(_))));
    }

    /// `cpio -t` (GNU cpio, a dev-time tool on every test machine) lists what was written.
    #[test]
    fn gnu_cpio_reads_it() {
        let mut a = Archive::new();
        a.file("rustlive/secrets.json", 0o600, b"{}".to_vec())
            .unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.cpio");
        std::fs::write(&f, a.to_bytes()).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&f)
            .output()
            .expect("cpio (Debian package cpio) is installed by scripts/install-deps.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(list.contains("-rw-------"), "{list}");
        assert!(list.contains("rustlive/secrets.json"), "{list}");
        assert!(list.contains("bin/sh -> busybox"), "{list}");
    }
}
