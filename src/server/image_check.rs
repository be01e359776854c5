//! `rustlive image check PATH`, and the same check before `rustlive publish`: an image served
//! to anyone must not hold a node's secrets. Today's list is the SSH host private keys
//! (`etc/ssh/ssh_host_*_key`) and the munge key (`etc/munge/munge.key`): an image built from a
//! system that ran sshd or munge keeps them unless they were removed (a `buildah run rm -f
//! /etc/ssh/ssh_host_*_key` without a shell removes nothing and exits 0), and every node booted
//! from it then shares keys anyone who can download the image holds. They belong in the node's
//! secrets bundle.
//!
//! PATH is a directory (a root tree, e.g. buildah's mount) or a squashfs, erofs or ext2/3/4
//! image file. A tree is read through [`Dir`]: no symbolic link is followed below PATH, so a
//! link in the tree cannot lead the check onto the boot server's own `/etc/ssh`; a directory on
//! the way that is a link is reported as not checkable rather than passed. An image file is
//! listed with the tools that made it (`unsquashfs -lls`, `dump.erofs --ls`, `debugfs -R 'ls
//! -l'`), which resolve names inside the image only, without mounting it (no root needed).
//! Only regular files count: a link named like a key points elsewhere (a key generated at boot
//! into a tmpfs, say). A squashfs in dmsquash-live's layout has its `LiveOS/rootfs.img`
//! checked as well (`scan_nested`).

use crate::server::safe_file::{Dir, FileError};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directories checked, relative to the root.
pub const CHECKED_DIRS: [&str; 2] = ["etc/ssh", "etc/munge"];

/// What a file at `rel` (relative to the root, `/`-separated) is, when it is a secret that must
/// not be in a served image.
pub fn secret_kind(rel: &str) -> Option<&'static str> {
    if rel == "etc/munge/munge.key" {
        return Some("the munge key");
    }
    let name = rel.strip_prefix("etc/ssh/")?;
    // ssh_host_TYPE_key, and SSH 1's ssh_host_key; never below etc/ssh.
    let key = name == "ssh_host_key"
        || name
            .strip_prefix("ssh_host_")
            .and_then(|n| n.strip_suffix("_key"))
            .is_some_and(|t| !t.is_empty());
    (key && !name.contains('/')).then_some("an SSH host private key")
}

/// A kind of directory entry, as the listings tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Link,
    Dir,
    Other,
}

/// A secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Relative to the root, escaped for display.
    pub path: String,
    pub what: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "{} holds {}: anyone who can download the image has them; remove them from the image \
         (they belong in each node's secrets bundle)", .image.display(), list(.found)
    )]
    Secrets { image: PathBuf, found: Vec<Finding> },
    #[error("cannot check {}: {why}", .image.display())]
    Unchecked { image: PathBuf, why: String },
    #[error(transparent)]
    File(#[from] FileError),
}

impl CheckError {
    pub fn exit_code(&self) -> crate::support::exit::Exit {
        match self {
            CheckError::Secrets { .. } => crate::support::exit::Exit::Secrets,
            _ => crate::support::exit::Exit::Usage,
        }
    }
}

/// `etc/ssh/ssh_host_rsa_key (an SSH host private key), …`: the first ten, then how many more.
fn list(found: &[Finding]) -> String {
    let mut s: Vec<String> = found
        .iter()
        .take(10)
        .map(|f| format!("{} ({})", f.path, f.what))
        .collect();
    if found.len() > 10 {
        s.push(format!("and {} more", found.len().saturating_sub(10)));
    }
    s.join(", ")
}

/// What PATH is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tree,
    Squashfs,
    Erofs,
    Ext4,
}

/// Checks PATH (see the module doc): `Ok` when it holds none of the secrets.
pub fn check(path: &Path) -> Result<(), CheckError> {
    let found = scan(path)?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Secrets {
            image: path.into(),
            found,
        })
    }
}

/// What `rustlive publish` runs before anything is pushed: an IMAGE found to hold an SSH host
/// private key or the munge key is refused ([`check`]), unless `allow`
/// (`--allow-secrets-in-image`), which says so loudly. An image the check cannot read (its
/// tool missing, a file the tool does not take) is published with a loud warning rather than
/// refused: the node's kernel is the judge of what mounts, and `rustlive image check` on the
/// tree it was built from is the strict check.
pub fn before_publish(image: &Path, allow: bool) -> Result<(), CheckError> {
    if allow {
        log::warn!(
            "NOT checking {} for SSH host private keys and the munge key \
             (--allow-secrets-in-image): whoever can pull it gets any it holds",
            image.display()
        );
        return Ok(());
    }
    match check(image) {
        Err(e @ CheckError::Secrets { .. }) => Err(e),
        Err(e) => {
            log::warn!(
                "{}; publishing it UNCHECKED for SSH host keys and the munge key (run \
                 `rustlive image check` on the root tree it was built from)",
                crate::support::exit::report(&e)
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The secrets PATH holds.
pub fn scan(path: &Path) -> Result<Vec<Finding>, CheckError> {
    let unchecked = |why: String| CheckError::Unchecked {
        image: path.into(),
        why,
    };
    let format = format_of(path).map_err(unchecked)?;
    let mut found = Vec::new();
    for dir in CHECKED_DIRS {
        let entries = match format {
            Format::Tree => list_tree(path, dir)?,
            _ => list_image(path, format, dir).map_err(unchecked)?,
        };
        for (name, kind) in entries {
            let rel = format!("{dir}/{name}");
            if kind != Kind::File {
                continue;
            }
            if let Some(what) = secret_kind(&rel) {
                found.push(Finding {
                    path: crate::support::log::escaped(&rel),
                    what,
                });
            }
        }
    }
    if format == Format::Squashfs {
        found.extend(scan_nested(path).map_err(unchecked)??);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// dmsquash-live's layout, which the node boots too: a squashfs whose root is in
/// `LiveOS/rootfs.img` (or `ext3fs.img`). That image is copied out (`unsquashfs -cat`) into a
/// private directory under `$TMPDIR`, which needs room for it, checked, and removed.
fn scan_nested(path: &Path) -> Result<Result<Vec<Finding>, CheckError>, String> {
    let nested: Vec<String> = list_image(path, Format::Squashfs, NESTED_DIR)?
        .into_iter()
        .filter(|(n, k)| *k == Kind::File && NESTED_IMAGES.contains(&n.as_str()))
        .map(|(n, _)| n)
        .collect();
    let mut found = Vec::new();
    for name in nested {
        let rel = format!("{NESTED_DIR}/{name}");
        let tmp = PrivateDir::new()?;
        let copy = tmp.0.join("nested.img");
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy)
            .map_err(|e| format!("cannot create {}: {e}", copy.display()))?;
        let st = Command::new("unsquashfs")
            .args(["-cat", "-no-progress"])
            .arg(path)
            .arg(&rel)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run unsquashfs: {e}"))?;
        if !st.success() {
            return Err(format!("unsquashfs could not copy out {rel} ({st})"));
        }
        match scan(&copy) {
            Ok(inner) => found.extend(inner.into_iter().map(|f| Finding {
                path: format!("{rel}:{}", f.path),
                what: f.what,
            })),
            Err(CheckError::Unchecked { why, .. }) => return Err(format!("{rel}: {why}")),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(found))
}

/// Where dmsquash-live looks for the nested root image, and its names.
const NESTED_DIR: &str = "LiveOS";
const NESTED_IMAGES: [&str; 2] = ["rootfs.img", "ext3fs.img"];

/// A directory only this process can use, removed with what it holds when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<PrivateDir, String> {
        let mut id = [0u8; 8];
        crate::sys::random::fill(&mut id).map_err(|e| format!("no random bytes: {e}"))?;
        let p = std::env::temp_dir().join(format!(
            "rustlive-image-check.{}",
            crate::support::values::hex(&id)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(PrivateDir(p))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory, or an image file by its magic number.
fn format_of(path: &Path) -> Result<Format, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Ok(Format::Tree);
    }
    if !meta.is_file() {
        return Err("not a directory nor a regular file".into());
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| e.to_string())?;
    match crate::server::publish::media_type_of(&head) {
        Some(crate::oci::MEDIA_SQUASHFS) => Ok(Format::Squashfs),
        Some(crate::oci::MEDIA_EROFS) => Ok(Format::Erofs),
        Some(crate::oci::MEDIA_EXT4) => Ok(Format::Ext4),
        _ => Err("not a squashfs, erofs or ext2/3/4 image, nor a directory".into()),
    }
}

/// The entries of `root/dir`, no link followed on the way; none when it is absent.
fn list_tree(root: &Path, dir: &str) -> Result<Vec<(String, Kind)>, CheckError> {
    let top = Dir::open(root)?;
    let d = match top.dir_at(Path::new(dir)) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Vec::new()),
        Err(FileError::Symlink(p)) => {
            return Err(CheckError::Unchecked {
                image: root.into(),
                why: format!(
                    "{} is a symbolic link, which the check does not follow",
                    p.display()
                ),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in d.names()? {
        let kind = match d.kind(&name)? {
            Some(crate::sys::fs::FileType::RegularFile) => Kind::File,
            Some(crate::sys::fs::FileType::Symlink) => Kind::Link,
            Some(crate::sys::fs::FileType::Directory) => Kind::Dir,
            _ => Kind::Other,
        };
        out.push((name.to_string_lossy().into_owned(), kind));
    }
    Ok(out)
}

/// At most this much of a listing is read: a directory of a few entries lists in a few KiB.
const LISTING_MAX: u64 = 16 << 20;

/// The entries of `dir` inside an image file, by its filesystem's own tool.
fn list_image(image: &Path, format: Format, dir: &str) -> Result<Vec<(String, Kind)>, String> {
    let (tool, package) = match format {
        Format::Squashfs => ("unsquashfs", "squashfs-tools"),
        Format::Erofs => ("dump.erofs", "erofs-utils"),
        _ => ("debugfs", "e2fsprogs"),
    };
    let mut cmd = Command::new(tool);
    match format {
        Format::Squashfs => {
            cmd.args(["-lls", "-no-progress"]).arg(image).arg(dir);
        }
        Format::Erofs => {
            cmd.arg("--ls").arg(format!("--path=/{dir}")).arg(image);
        }
        _ => {
            cmd.arg("-R").arg(format!("ls -l /{dir}")).arg(image);
        }
    }
    let mut child = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {tool} ({package}): {e}"))?;
    let mut out = Vec::new();
    let mut err = Vec::new();
    if let Some(o) = child.stdout.take() {
        o.take(LISTING_MAX)
            .read_to_end(&mut out)
            .map_err(|e| format!("{tool}: {e}"))?;
    }
    if let Some(e) = child.stderr.take() {
        let _ = e.take(64 << 10).read_to_end(&mut err);
    }
    let status = child.wait().map_err(|e| format!("{tool}: {e}"))?;
    let out = String::from_utf8_lossy(&out);
    let err = String::from_utf8_lossy(&err);
    // Only a listing that shows it read the image passes: a tool that could not open it may
    // still exit 0 (debugfs does), and an empty answer must not read as "no keys".
    let failed = || {
        format!(
            "{tool} could not list /{dir} ({status}): {}",
            crate::support::log::escaped(err.trim())
        )
    };
    match format {
        Format::Squashfs if status.success() && out.contains("squashfs-root") => {
            let link = format!("squashfs-root/{dir} -> ");
            if out.lines().any(|l| l.starts_with('l') && l.contains(&link)) {
                return Err(format!(
                    "/{dir} is a symbolic link in the image, which the check does not follow"
                ));
            }
            Ok(parse_unsquashfs(&out, dir))
        }
        Format::Erofs if out.contains("NID TYPE") => Ok(parse_dump_erofs(&out)),
        Format::Erofs if err.contains("read inode failed") => Ok(Vec::new()),
        Format::Ext4 if out.lines().any(|l| l.ends_with(" .")) => Ok(parse_debugfs(&out)),
        Format::Ext4 if err.contains("File not found by ext2_lookup") => Ok(Vec::new()),
        _ => Err(failed()),
    }
}

/// `unsquashfs -lls IMAGE DIR`: `-rw------- root/root 399 2026-12-06 16:03
/// squashfs-root/etc/ssh/ssh_host_rsa_key` (a link ends `-> TARGET`); entries directly in DIR.
pub fn parse_unsquashfs(out: &str, dir: &str) -> Vec<(String, Kind)> {
    let prefix = format!("squashfs-root/{dir}/");
    out.lines()
        .filter_map(|l| {
            let kind = match l.chars().next()? {
                '-' => Kind::File,
                'l' => Kind::Link,
                'd' => Kind::Dir,
                _ => Kind::Other,
            };
            let at = l.find(&prefix)?;
            let rest = l.get(at.checked_add(prefix.len())?..)?;
            let name = if kind == Kind::Link {
                rest.split(" -> ").next()?
            } else {
                rest
            };
            (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), kind))
        })
        .collect()
}

/// `dump.erofs --ls --path=DIR`: after the `NID TYPE FILENAME` header, `54 2 .` rows (type 1 a
/// regular file, 2 a directory, 7 a link).
pub fn parse_dump_erofs(out: &str) -> Vec<(String, Kind)> {
    out.lines()
        .skip_while(|l| !l.trim_start().starts_with("NID"))
        .skip(1)
        .filter_map(|l| {
            let l = l.trim_start();
            let (_nid, rest) = l.split_once(char::is_whitespace)?;
            let rest = rest.trim_start();
            let (ty, name) = rest.split_once(char::is_whitespace)?;
            let name = name.trim_start();
            let kind = match ty {
                "1" => Kind::File,
                "2" => Kind::Dir,
                "7" => Kind::Link,
                _ => Kind::Other,
            };
            (name != "." && name != ".." && !name.is_empty()).then(|| (name.to_string(), kind))
        })
        .collect()
}

/// `debugfs -R 'ls -l DIR'`: `18  100644 (1)  0  0  2  6-Dec-2026 16:03 ssh_host_rsa_key`, the
/// octal mode's file type (`10` a regular file, `12` a link, `4` a directory), the name last.
pub fn parse_debugfs(out: &str) -> Vec<(String, Kind)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let mode = f.get(1)?;
            let time = f.get(7)?;
            // The name is what follows the HH:MM column, as is (it may hold spaces).
            let at = l.find(&format!(" {time} "))?;
            let name = l.get(at.checked_add(time.len())?.checked_add(2)?..)?;
            let mode = u32::from_str_radix(mode, 8).ok()?;
            let kind = match mode >> 12 {
                0o10 => Kind::File,
                0o12 => Kind::Link,
                0o4 => Kind::Dir,
                _ => Kind::Other,
            };
            (name != "." && name != ".." && !name.is_empty()).then(|| (name.to_string(), kind))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn which_files_are_secrets() {
        for k in [
            "etc/ssh/ssh_host_rsa_key",
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ecdsa_key",
            "etc/ssh/ssh_host_key",
            "etc/munge/munge.key",
        ] {
            assert!(secret_kind(k).is_some(), "{k}");
        }
        for k in [
            "etc/ssh/ssh_host_rsa_key.pub",
            "etc/ssh/sshd_config",
            "etc/ssh/ssh_host_rsa_key-cert.pub",
            "etc/munge/munge.key.bak",
            "etc/ssh/x/ssh_host_rsa_key",
            "root/etc/ssh/ssh_host_rsa_key",
        ] {
            assert!(secret_kind(k).is_none(), "{k}");
        }
    }

    #[test]
    fn listings_of_the_three_tools() {
        let sq = "drwxr-xr-x root/root                95 2026-12-06 16:03 squashfs-root/etc/ssh
lrwxrwxrwx root/root                11 2026-12-06 16:03 squashfs-root/etc/ssh/ssh_host_ed25519_key -> /etc/shadow
-rw------- root/root                 2 2026-12-06 16:03 squashfs-root/etc/ssh/ssh_host_rsa_key
-rw-r--r-- root/root                 2 2026-12-06 16:03 squashfs-root/etc/ssh/a name
";
        assert_eq!(
            parse_unsquashfs(sq, "etc/ssh"),
            [
                ("ssh_host_ed25519_key".into(), Kind::Link),
                ("ssh_host_rsa_key".into(), Kind::File),
                ("a name".into(), Kind::File),
            ]
        );
        let erofs = "File : /etc/ssh
Size: 119  On-disk size: 119  directory
Uid: 0   Gid: 0  Access: 0755/rwxr-xr-x

       NID TYPE  FILENAME
        54    2  .
        43    2  ..
        60    7  ssh_host_ed25519_key
        63    1  ssh_host_rsa_key
";
        assert_eq!(
            parse_dump_erofs(erofs),
            [
                ("ssh_host_ed25519_key".into(), Kind::Link),
                ("ssh_host_rsa_key".into(), Kind::File),
            ]
        );
        let debugfs = "     16   40755 (2)      0      0    1024  6-Dec-2026 16:03 .
     17  120777 (7)      0      0      11  6-Dec-2026 16:03 ssh_host_ed25519_key
     18  100600 (1)      0      0       2  6-Dec-2026 16:03 ssh_host_rsa_key

";
        assert_eq!(
            parse_debugfs(debugfs),
            [
                ("ssh_host_ed25519_key".into(), Kind::Link),
                ("ssh_host_rsa_key".into(), Kind::File),
            ]
        );
    }

    #[test]
    fn the_refusal_names_the_files_bounded() {
        let found: Vec<Finding> = (0..12)
            .map(|i| Finding {
                path: format!("etc/ssh/ssh_host_k{i}_key"),
                what: "an SSH host private key",
            })
            .collect();
        let e = CheckError::Secrets {
            image: "root.squashfs".into(),
            found,
        };
        let s = e.to_string();
        assert!(
            s.starts_with("root.squashfs holds etc/ssh/ssh_host_k0_key (an SSH host"),
            "{s}"
        );
        assert!(s.contains("and 2 more:") || s.contains("and 2 more"), "{s}");
        assert!(!s.contains("k10"), "{s}");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "(?s).{0,300}") {
            let _ = parse_unsquashfs(&s, "etc/ssh");
            let _ = parse_dump_erofs(&s);
            let _ = parse_debugfs(&s);
            let _ = secret_kind(&s);
        }
    }
}
