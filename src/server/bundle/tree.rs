//! A bundle tree on the boot server: `DIR` mirrors the node's root (`DIR/etc/munge/munge.key` is
//! `/etc/munge/munge.key`), with an optional manifest, [`MANIFEST`], at its top.
//!
//! The walk never follows a symbolic link and accepts regular files and directories only: a
//! link in the tree would be ambiguous (copy its target? the node never writes through one) and
//! could pull a file from outside the tree into a node's bundle. A file is read through
//! `O_NOFOLLOW` and its mode taken from the open descriptor, so a file swapped for a link after
//! the walk is refused too.

use super::error::BuildError;
use crate::secrets::bundle::{check_path, MAX_BUNDLE_SIZE};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The manifest's file name, at the top of a tree; it is not part of the bundle.
pub const MANIFEST: &str = "rustlive-bundle.json";

/// What a tree's manifest says. Names, not numbers: they are resolved against the node's image at
/// boot, not against the boot server's accounts.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Node path → `"OWNER"` or `"OWNER:GROUP"` (group default `root`). A file not named here
    /// is `root:root`.
    #[serde(default)]
    pub owners: BTreeMap<String, String>,
    /// The node's MAC addresses, for `bundle build-all` (`xx:xx:xx:xx:xx:xx`).
    #[serde(default)]
    pub macs: Vec<String>,
}

/// Owner and group of one file, as names (or decimal ids) for the node to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub owner: String,
    pub group: String,
}

impl Default for Owner {
    fn default() -> Owner {
        Owner {
            owner: "root".into(),
            group: "root".into(),
        }
    }
}

/// `"OWNER"` or `"OWNER:GROUP"`, as `chown` takes it; `None` when a part is empty.
pub fn parse_owner(s: &str) -> Option<Owner> {
    let (owner, group) = s.split_once(':').unwrap_or((s, "root"));
    (!owner.is_empty() && !group.is_empty()).then(|| Owner {
        owner: owner.to_string(),
        group: group.to_string(),
    })
}

/// Reads `DIR/rustlive-bundle.json`; an absent manifest is an empty one.
pub fn load_manifest(dir: &Path) -> Result<Manifest, BuildError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(source) => return Err(BuildError::Read { path, source }),
    };
    // The manifest holds names and paths, never a secret: serde's messages may quote it.
    serde_json::from_slice(&text).map_err(|source| BuildError::Manifest { path, source })
}

/// One file of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// The node path, `/`-rooted.
    pub node_path: String,
    /// The file on the server.
    pub source: PathBuf,
}

/// Every regular file under `dir` (the manifest at its top excepted), sorted by node path.
/// Symbolic links, devices, FIFOs, sockets and names that are not UTF-8 are refused.
pub fn walk(dir: &Path) -> Result<Vec<TreeFile>, BuildError> {
    let mut out = Vec::new();
    // (directory on the server, its node path without the trailing slash)
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| BuildError::Read {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| BuildError::Read {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(BuildError::NotUtf8(path));
            };
            if prefix.is_empty() && name == MANIFEST {
                continue;
            }
            let ty = entry.file_type().map_err(|source| BuildError::Read {
                path: path.clone(),
                source,
            })?;
            let node_path = format!("{prefix}/{name}");
            if ty.is_symlink() {
                return Err(BuildError::Symlink(path));
            } else if ty.is_dir() {
                stack.push((path, node_path));
            } else if ty.is_file() {
                out.push(TreeFile {
                    node_path,
                    source: path,
                });
            } else {
                return Err(BuildError::Special(path));
            }
        }
    }
    out.sort_by(|a, b| a.node_path.cmp(&b.node_path));
    Ok(out)
}

/// A tree's files with their owners: the manifest checked against the walk. A manifest entry
/// must name a valid node path (the node's own path rules) and a file of this tree.
pub fn files_with_owners(dir: &Path) -> Result<(Manifest, Vec<(TreeFile, Owner)>), BuildError> {
    let manifest = load_manifest(dir)?;
    let files = walk(dir)?;
    let manifest_path = dir.join(MANIFEST);
    for (p, spec) in &manifest.owners {
        check_path(p).map_err(|rule| BuildError::ManifestPath {
            manifest: manifest_path.clone(),
            path: p.clone(),
            rule,
        })?;
        if parse_owner(spec).is_none() {
            return Err(BuildError::OwnerSyntax {
                manifest: manifest_path.clone(),
                path: p.clone(),
            });
        }
        if files
            .binary_search_by(|f| f.node_path.as_str().cmp(p))
            .is_err()
        {
            return Err(BuildError::ManifestAbsent {
                manifest: manifest_path.clone(),
                path: p.clone(),
                dir: dir.to_path_buf(),
            });
        }
    }
    let with = files
        .into_iter()
        .map(|f| {
            let owner = manifest
                .owners
                .get(&f.node_path)
                .and_then(|s| parse_owner(s))
                .unwrap_or_default();
            (f, owner)
        })
        .collect();
    Ok((manifest, with))
}

/// A file's bytes (in a buffer zeroed on drop) and permission bits, read without following a
/// link; more than the bundle's size limit is refused before it is read whole.
pub fn read_file(path: &Path) -> Result<(Zeroizing<Vec<u8>>, u32), BuildError> {
    let read_err = |source| BuildError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO swapped in after the walk must not hang the build.
        .custom_flags(crate::sys::fs::O_NOFOLLOW | crate::sys::fs::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(crate::sys::Errno::LOOP.raw_os_error()) {
                BuildError::Symlink(path.to_path_buf())
            } else {
                read_err(e)
            }
        })?;
    let md = f.metadata().map_err(read_err)?;
    if !md.is_file() {
        return Err(BuildError::Special(path.to_path_buf()));
    }
    let len = usize::try_from(md.len()).unwrap_or(usize::MAX);
    if len > MAX_BUNDLE_SIZE {
        return Err(BuildError::FileTooLarge(path.to_path_buf()));
    }
    // One allocation up front (plus one byte to notice growth): no stray copy in freed memory.
    let mut buf = Zeroizing::new(vec![0u8; len.saturating_add(1)]);
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match f.read(rest) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    if n > len {
        return Err(BuildError::Changed(path.to_path_buf()));
    }
    buf.truncate(n);
    Ok((buf, md.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn owner_specs() {
        let o = |s| parse_owner(s).map(|o| (o.owner, o.group));
        assert_eq!(o("munge:munge"), Some(("munge".into(), "munge".into())));
        assert_eq!(o("munge"), Some(("munge".into(), "root".into())));
        assert_eq!(o("0:991"), Some(("0".into(), "991".into())));
        assert_eq!(o(""), None);
        assert_eq!(o(":munge"), None);
        assert_eq!(o("munge:"), None);
    }

    #[test]
    fn walk_sorts_skips_the_manifest_and_keeps_nested_ones() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("etc/ssh")).unwrap();
        std::fs::create_dir_all(d.join("etc/empty")).unwrap();
        std::fs::write(d.join("etc/ssh/k"), "k").unwrap();
        std::fs::write(d.join("etc/a"), "a").unwrap();
        std::fs::write(d.join(MANIFEST), "{}").unwrap();
        // Only the top-level manifest is the tree's; one deeper down is a node file.
        std::fs::write(d.join("etc").join(MANIFEST), "x").unwrap();
        let got: Vec<_> = walk(d).unwrap().into_iter().map(|f| f.node_path).collect();
        assert_eq!(
            got,
            ["/etc/a", "/etc/rustlive-bundle.json", "/etc/ssh/k"].map(String::from)
        );
    }

    #[test]
    fn walk_refuses_links_and_special_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("etc/link")).unwrap();
        assert!(matches!(walk(d), Err(BuildError::Symlink(p)) if p.ends_with("etc/link")));
        std::fs::remove_file(d.join("etc/link")).unwrap();
        crate::sys::fs::make_fifo(&d.join("etc/fifo"), 0o700).unwrap();
        assert!(matches!(walk(d), Err(BuildError::Special(p)) if p.ends_with("etc/fifo")));
        assert!(matches!(
            read_file(&d.join("etc/fifo")),
            Err(BuildError::Special(_))
        ));
        std::os::unix::fs::symlink("/etc/passwd", d.join("l")).unwrap();
        assert!(matches!(
            read_file(&d.join("l")),
            Err(BuildError::Symlink(_))
        ));
    }

    #[test]
    fn read_file_takes_the_mode_and_caps_the_size() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("k");
        std::fs::write(&f, "secret").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (bytes, mode) = read_file(&f).unwrap();
        assert_eq!((bytes.as_slice(), mode), (&b"secret"[..], 0o640));
        let big = t.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_BUNDLE_SIZE as u64 + 1)
            .unwrap();
        assert!(matches!(read_file(&big), Err(BuildError::FileTooLarge(_))));
    }

    #[test]
    fn manifest_entries_must_be_files_of_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("etc/munge")).unwrap();
        std::fs::write(d.join("etc/munge/munge.key"), "k").unwrap();
        std::fs::write(d.join("etc/other"), "o").unwrap();
        let write = |m: &str| std::fs::write(d.join(MANIFEST), m).unwrap();

        write(r#"{"owners": {"/etc/munge/munge.key": "munge:munge"}}"#);
        let (_, files) = files_with_owners(d).unwrap();
        let owners: Vec<_> = files
            .iter()
            .map(|(f, o)| (f.node_path.as_str(), o.owner.as_str(), o.group.as_str()))
            .collect();
        assert_eq!(
            owners,
            [
                ("/etc/munge/munge.key", "munge", "munge"),
                ("/etc/other", "root", "root")
            ]
        );

        write(r#"{"owners": {"/etc/munge/munge.keys": "munge:munge"}}"#);
        let e = files_with_owners(d).unwrap_err();
        assert!(
            matches!(&e, BuildError::ManifestAbsent { path, .. } if path == "/etc/munge/munge.keys"),
            "{e}"
        );
        write(r#"{"owners": {"/etc/../etc/other": "munge"}}"#);
        let e = files_with_owners(d).unwrap_err();
        assert!(matches!(&e, BuildError::ManifestPath { .. }), "{e}");
        write(r#"{"owners": {"/etc/other": "munge:"}}"#);
        let e = files_with_owners(d).unwrap_err();
        assert!(matches!(&e, BuildError::OwnerSyntax { .. }), "{e}");
        write(r#"{"owner": {}}"#);
        let e = files_with_owners(d).unwrap_err();
        assert!(matches!(&e, BuildError::Manifest { .. }), "{e}");
    }
}
