//! A bundle tree on the boot server: `DIR` mirrors the node's root (`DIR/etc/munge/munge.key` is
//! `/etc/munge/munge.key`), with an optional manifest, [`MANIFEST`], at its top.
//!
//! The walk never follows a symbolic link and accepts regular files and directories only: a
//! link in the tree would be ambiguous (copy its target? the node never writes through one) and
//! could pull a file from outside the tree into a node's bundle. Everything goes through the
//! tree's directory fd ([`Dir`]): each directory and file is reached one component at a time
//! without following a link, and a file's mode is taken from the open descriptor, so a file or
//! directory swapped for a link after the walk is refused too, and a FIFO or device is never
//! opened.

use super::error::BuildError;
use crate::secrets::bundle::check_path;
use crate::server::safe_file::{Dir, FileError, Limit};
use crate::sys::fs::FileType;
use serde::Deserialize;
use std::collections::BTreeMap;
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

/// Reads `DIR/rustlive-bundle.json` (a regular file of at most [`Limit::MANIFEST`]); an absent
/// manifest is an empty one.
pub fn load_manifest(tree: &Dir) -> Result<Manifest, BuildError> {
    let Some(text) = tree.read(Path::new(MANIFEST), Limit::MANIFEST)? else {
        return Ok(Manifest::default());
    };
    // The manifest holds names and paths, never a secret: serde's messages may quote it.
    serde_json::from_slice(&text.bytes).map_err(|source| BuildError::Manifest {
        path: tree.path().join(MANIFEST),
        source,
    })
}

/// One file of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// The node path, `/`-rooted.
    pub node_path: String,
    /// The file on the server.
    pub source: PathBuf,
}

/// Every regular file under the tree (the manifest at its top excepted), sorted by node path.
/// Symbolic links, devices, FIFOs, sockets and names that are not UTF-8 are refused.
pub fn walk(tree: &Dir) -> Result<Vec<TreeFile>, BuildError> {
    let mut out = Vec::new();
    // Node paths of the directories still to list ("" for the top). Each is opened again from
    // the top when its turn comes: no pile of open descriptors however wide the tree.
    let mut stack = vec![String::new()];
    while let Some(prefix) = stack.pop() {
        let rel = Path::new(prefix.trim_start_matches('/'));
        let Some(d) = tree.dir_at(rel)? else {
            // Removed while it was walked.
            return Err(BuildError::Read {
                path: tree.path().join(rel),
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        for name in d.names()? {
            let path = d.path().join(&name);
            let Some(name) = name.to_str() else {
                return Err(BuildError::NotUtf8(path));
            };
            if prefix.is_empty() && name == MANIFEST {
                continue;
            }
            let node_path = format!("{prefix}/{name}");
            match d.kind(name)? {
                None => {}
                Some(FileType::Symlink) => return Err(BuildError::Symlink(path)),
                Some(FileType::Directory) => stack.push(node_path),
                Some(FileType::RegularFile) => out.push(TreeFile {
                    node_path,
                    source: path,
                }),
                Some(_) => return Err(BuildError::Special(path)),
            }
        }
    }
    out.sort_by(|a, b| a.node_path.cmp(&b.node_path));
    Ok(out)
}

/// A tree's files with their owners: the manifest checked against the walk. A manifest entry
/// must name a valid node path (the node's own path rules) and a file of this tree.
pub fn files_with_owners(tree: &Dir) -> Result<(Manifest, Vec<(TreeFile, Owner)>), BuildError> {
    let manifest = load_manifest(tree)?;
    let files = walk(tree)?;
    let manifest_path = tree.path().join(MANIFEST);
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
                dir: tree.path().to_path_buf(),
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

/// The bytes (in a buffer zeroed on drop) and permission bits of the file at `node_path` in the
/// tree, read without following a link; more than the bundle's size limit is refused before it
/// is read whole.
pub fn read_file(tree: &Dir, node_path: &str) -> Result<(Zeroizing<Vec<u8>>, u32), BuildError> {
    let rel = Path::new(node_path.trim_start_matches('/'));
    let path = tree.path().join(rel);
    match tree.read(rel, Limit::BUNDLE_FILE) {
        Ok(Some(c)) => Ok((c.bytes, c.mode)),
        Ok(None) => Err(BuildError::Read {
            path,
            source: std::io::ErrorKind::NotFound.into(),
        }),
        Err(FileError::Symlink(p)) => Err(BuildError::Symlink(p)),
        Err(FileError::NotRegular { path, .. }) => Err(BuildError::Special(path)),
        Err(FileError::TooLarge { path, .. }) => Err(BuildError::FileTooLarge(path)),
        Err(e) => Err(e.into()),
    }
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
        let got: Vec<_> = walk(&Dir::open(d).unwrap())
            .unwrap()
            .into_iter()
            .map(|f| f.node_path)
            .collect();
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
        assert!(
            matches!(walk(&Dir::open(d).unwrap()), Err(BuildError::Symlink(p)) if p.ends_with("etc/link"))
        );
        std::fs::remove_file(d.join("etc/link")).unwrap();
        crate::sys::fs::make_fifo(&d.join("etc/fifo"), 0o700).unwrap();
        assert!(
            matches!(walk(&Dir::open(d).unwrap()), Err(BuildError::Special(p)) if p.ends_with("etc/fifo"))
        );
        let tree = Dir::open(d).unwrap();
        assert!(matches!(
            read_file(&tree, "/etc/fifo"),
            Err(BuildError::Special(_))
        ));
        std::os::unix::fs::symlink("/etc/passwd", d.join("l")).unwrap();
        assert!(matches!(
            read_file(&tree, "/l"),
            Err(BuildError::Symlink(_))
        ));
        // A directory on the way swapped for a link after the walk is not followed either.
        std::fs::remove_file(d.join("etc/fifo")).unwrap();
        std::fs::rename(d.join("etc"), d.join("etc.real")).unwrap();
        std::os::unix::fs::symlink("etc.real", d.join("etc")).unwrap();
        std::fs::write(d.join("etc.real/k"), "k").unwrap();
        assert!(matches!(
            read_file(&tree, "/etc/k"),
            Err(BuildError::Symlink(p)) if p.ends_with("etc")
        ));
    }

    #[test]
    fn read_file_takes_the_mode_and_caps_the_size() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("k");
        std::fs::write(&f, "secret").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let tree = Dir::open(t.path()).unwrap();
        let (bytes, mode) = read_file(&tree, "/k").unwrap();
        assert_eq!((bytes.as_slice(), mode), (&b"secret"[..], 0o640));
        let big = t.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(crate::secrets::bundle::MAX_BUNDLE_SIZE as u64 + 1)
            .unwrap();
        assert!(matches!(
            read_file(&tree, "/big"),
            Err(BuildError::FileTooLarge(_))
        ));
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
        let (_, files) = files_with_owners(&Dir::open(d).unwrap()).unwrap();
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
        let e = files_with_owners(&Dir::open(d).unwrap()).unwrap_err();
        assert!(
            matches!(&e, BuildError::ManifestAbsent { path, .. } if path == "/etc/munge/munge.keys"),
            "{e}"
        );
        write(r#"{"owners": {"/etc/../etc/other": "munge"}}"#);
        let e = files_with_owners(&Dir::open(d).unwrap()).unwrap_err();
        assert!(matches!(&e, BuildError::ManifestPath { .. }), "{e}");
        write(r#"{"owners": {"/etc/other": "munge:"}}"#);
        let e = files_with_owners(&Dir::open(d).unwrap()).unwrap_err();
        assert!(matches!(&e, BuildError::OwnerSyntax { .. }), "{e}");
        write(r#"{"owner": {}}"#);
        let e = files_with_owners(&Dir::open(d).unwrap()).unwrap_err();
        assert!(matches!(&e, BuildError::Manifest { .. }), "{e}");
    }
}
