//! Files of the trees → one bundle (format 1), validated by the node's own validator
//! ([`crate::secrets::bundle::parse`]) on the exact bytes, so that anything a node would refuse
//! is refused on the server, with the node's message.

use super::error::BuildError;
use super::tree::{self, Owner};
use crate::secrets::bundle::BundleError;
use crate::secrets::owners::{Accounts, Id};
use crate::server::safe_file::{Dir, Limit};
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What a bundle is built from besides the node's own tree.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Trees shared by all nodes (the munge key), merged first; the node's own files win over
    /// theirs, a later common tree over an earlier one.
    pub commons: Vec<PathBuf>,
    /// The node image's root: owner and group names are checked against its `/etc/passwd` and
    /// `/etc/group`, exactly as the node will. Without it, any well-formed name is accepted.
    pub image_root: Option<PathBuf>,
}

/// A built bundle: the JSON, zeroed on drop, and the node paths it carries.
pub struct Bundle {
    pub json: Zeroizing<Vec<u8>>,
    pub paths: Vec<String>,
}

/// One file as it goes into the bundle.
struct Item {
    /// Which tree it comes from: a common tree's index, or past them the node's own.
    tree: usize,
    /// Its node path, which is also its path in that tree.
    node_path: String,
    source: PathBuf,
    owner: Owner,
}

#[derive(Serialize)]
struct OutBundle<'a> {
    version: u64,
    files: Vec<OutEntry<'a>>,
}

#[derive(Serialize)]
struct OutEntry<'a> {
    path: &'a str,
    mode: String,
    owner: &'a str,
    group: &'a str,
    content_base64: &'a str,
}

/// Builds the bundle of `dir` (plus the common trees) and validates it as the node would. `dir`
/// and the common trees are named by the operator: a symlink at their top is followed, never
/// one inside.
pub fn build(dir: &Path, opts: &Options) -> Result<Bundle, BuildError> {
    build_tree(&Dir::open(dir)?, opts)
}

/// [`build`] of a tree already open (a node's directory in `NODES_DIR`, opened without
/// following a link).
pub fn build_tree(node: &Dir, opts: &Options) -> Result<Bundle, BuildError> {
    let dir = node.path();
    let trees = opts
        .commons
        .iter()
        .map(|c| Dir::open(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for (index, tree_dir) in trees.iter().chain([node]).enumerate() {
        let (_, files) = tree::files_with_owners(tree_dir)?;
        for (f, owner) in files {
            if let Some(old) = items.get(&f.node_path) {
                log::info!(
                    "bundle: {} overrides {} for {}",
                    f.source.display(),
                    old.source.display(),
                    f.node_path
                );
            }
            items.insert(
                f.node_path.clone(),
                Item {
                    tree: index,
                    node_path: f.node_path,
                    source: f.source,
                    owner,
                },
            );
        }
    }

    // Contents read and encoded into buffers zeroed on drop; the JSON borrows them.
    let mut encoded: Vec<(u32, Zeroizing<String>)> = Vec::with_capacity(items.len());
    let mut total = 0usize;
    for item in items.values() {
        let tree = trees.get(item.tree).unwrap_or(node);
        let (bytes, mode) = tree::read_file(tree, &item.node_path)?;
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&bytes[..]));
        total = total.saturating_add(b64.len());
        if total > crate::secrets::bundle::MAX_BUNDLE_SIZE {
            return Err(BuildError::RefusedBundle {
                dir: dir.to_path_buf(),
                source: BundleError::TooLarge,
            });
        }
        encoded.push((mode, b64));
    }
    let out = OutBundle {
        version: crate::secrets::bundle::VERSION,
        files: items
            .iter()
            .zip(&encoded)
            .map(|((path, item), (mode, b64))| OutEntry {
                path,
                // All twelve bits: a setuid file is refused by the validator below, not dropped.
                mode: format!("{mode:04o}"),
                owner: &item.owner.owner,
                group: &item.owner.group,
                content_base64: b64,
            })
            .collect(),
    };
    // Sized up front so that growing the buffer leaves no copy of a secret in freed memory.
    let mut json = Zeroizing::new(Vec::with_capacity(
        total.saturating_add(items.len().saturating_mul(256).saturating_add(64)),
    ));
    serde_json::to_writer_pretty(&mut *json, &out).map_err(|e| BuildError::Write {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    json.push(b'\n');
    drop(out);

    let accounts = accounts_for(opts, items.values())?;
    let sources: Vec<&PathBuf> = items.values().map(|i| &i.source).collect();
    crate::secrets::bundle::parse(&json, &accounts).map_err(|source| match &source {
        BundleError::Entry { index, .. } => match sources.get(*index) {
            Some(file) => BuildError::Refused {
                file: file.to_path_buf(),
                source,
            },
            None => BuildError::RefusedBundle {
                dir: dir.to_path_buf(),
                source,
            },
        },
        _ => BuildError::RefusedBundle {
            dir: dir.to_path_buf(),
            source,
        },
    })?;
    Ok(Bundle {
        json,
        paths: items.into_keys().collect(),
    })
}

/// The accounts the validator resolves names with: the image's when given; otherwise every
/// well-formed name the bundle uses (the node checks them against its image at boot).
fn accounts_for<'a>(
    opts: &Options,
    items: impl Iterator<Item = &'a Item>,
) -> Result<Accounts, BuildError> {
    if let Some(root) = &opts.image_root {
        let root = Dir::open(root)?;
        let read = |p: &str| match root.read(Path::new(p), Limit::ACCOUNTS)? {
            Some(c) => Ok(String::from_utf8_lossy(&c.bytes).into_owned()),
            None => Err(BuildError::Read {
                path: root.path().join(p),
                source: std::io::ErrorKind::NotFound.into(),
            }),
        };
        return Ok(Accounts::parse(&read("etc/passwd")?, &read("etc/group")?));
    }
    let (mut passwd, mut group) = (String::new(), String::new());
    for item in items {
        // Names that do not parse are left out: the validator then reports them as the node would.
        if let Some(Id::Name(n)) = Id::parse(&item.owner.owner) {
            passwd.push_str(&format!("{n}:x:0:0::/:/bin/false\n"));
        }
        if let Some(Id::Name(n)) = Id::parse(&item.owner.group) {
            group.push_str(&format!("{n}:x:0:\n"));
        }
    }
    Ok(Accounts::parse(&passwd, &group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(p: &Path, content: &str, mode: u32) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn bundle_is_sorted_deterministic_and_valid_for_the_node() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        file(&d.join("etc/ssh/ssh_host_ed25519_key"), "k", 0o600);
        file(&d.join("etc/munge/munge.key"), "m", 0o400);
        file(
            &d.join(tree::MANIFEST),
            r#"{"owners": {"/etc/munge/munge.key": "munge:munge"}}"#,
            0o644,
        );
        let a = build(d, &Options::default()).unwrap();
        let b = build(d, &Options::default()).unwrap();
        assert_eq!(a.json.as_slice(), b.json.as_slice());
        assert_eq!(
            a.paths,
            ["/etc/munge/munge.key", "/etc/ssh/ssh_host_ed25519_key"]
        );
        // The node, with an image that has the munge account, accepts it as written.
        let image = Accounts::parse("munge:x:998:997::/:/bin/false\n", "munge:x:997:\n");
        let e = crate::secrets::bundle::parse(&a.json, &image).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.path.as_str(), e.mode, e.uid, e.gid, e.content.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                ("/etc/munge/munge.key", 0o400, 998, 997, b"m".to_vec()),
                ("/etc/ssh/ssh_host_ed25519_key", 0o600, 0, 0, b"k".to_vec()),
            ]
        );
    }

    #[test]
    fn a_refused_entry_names_the_server_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        file(&d.join("etc/a"), "a", 0o600);
        file(&d.join("etc/b"), "b", 0o2600);
        match build(d, &Options::default()) {
            Err(BuildError::Refused { file, source }) => {
                assert_eq!(file, d.join("etc/b"));
                assert!(matches!(
                    source,
                    BundleError::Entry {
                        index: 1,
                        rule: crate::secrets::bundle::Rule::ModeSpecialBits,
                        ..
                    }
                ));
            }
            other => panic!("{:?}", other.map(|b| b.paths)),
        }
    }
}
