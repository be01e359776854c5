//! `rustlive bundle`: the boot server's side of node secrets. A directory that mirrors the
//! node's root becomes a secrets bundle (format 1, `secrets.md`), as JSON for an https source or
//! as a per-node initrd.
//!
//! - [`tree`]: the walk (regular files only, no links) and the manifest of owners by name.
//! - [`build`]: files → bundle JSON, validated by the node's own validator
//!   ([`crate::secrets::bundle::parse`]) so anything a node would refuse is refused here, with
//!   the node's message.
//! - [`output`]: the JSON and the gzip'ed cpio, written 0600.
//! - [`hostkeys`]: SSH host keys generated once into the tree and kept.
//! - [`all`]: one bundle per node directory, named by MAC and host name, rewritten only when
//!   its bytes change.

pub mod all;
pub mod hostkeys;
pub mod output;
pub mod tree;

use crate::error::Exit;
use crate::secrets::bundle::{BundleError, Rule};
use crate::secrets::owners::{Accounts, Id};
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tree::Owner;
use zeroize::Zeroizing;

/// A bundle cannot be built, or would be refused by the node.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is a symbolic link; a bundle tree holds regular files and directories only", .0.display())]
    Symlink(PathBuf),
    #[error("{} is not a regular file or a directory", .0.display())]
    Special(PathBuf),
    #[error("{} has a name that is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("{} is over the bundle's {} MiB limit", .0.display(), crate::secrets::bundle::MAX_BUNDLE_SIZE >> 20)]
    FileTooLarge(PathBuf),
    #[error("{} changed while it was read", .0.display())]
    Changed(PathBuf),
    #[error("{} is not a valid manifest", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {path}: {rule}", manifest.display())]
    ManifestPath {
        manifest: PathBuf,
        path: String,
        rule: Rule,
    },
    #[error("{}: the owner of {path} must be \"OWNER\" or \"OWNER:GROUP\"", manifest.display())]
    OwnerSyntax { manifest: PathBuf, path: String },
    #[error("{} names {path}, which is not a file of {}", manifest.display(), dir.display())]
    ManifestAbsent {
        manifest: PathBuf,
        path: String,
        dir: PathBuf,
    },
    #[error("{}: the node would refuse this file", file.display())]
    Refused {
        file: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("the bundle built from {} would be refused by the node", dir.display())]
    RefusedBundle {
        dir: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the output name must end in .json or .cpio", .0.display())]
    OutputKind(PathBuf),
    #[error("cannot generate {}", path.display())]
    HostKey {
        path: PathBuf,
        #[source]
        source: hostkeys::KeygenError,
    },
    #[error("{}: {what}", dir.display())]
    Node { dir: PathBuf, what: String },
}

impl BuildError {
    pub fn exit_code(&self) -> Exit {
        match self {
            BuildError::OutputKind(_) => Exit::Usage,
            _ => Exit::Secrets,
        }
    }
}

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

/// Builds the bundle of `dir` (plus the common trees) and validates it as the node would.
pub fn build(dir: &Path, opts: &Options) -> Result<Bundle, BuildError> {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for tree_dir in opts.commons.iter().map(PathBuf::as_path).chain([dir]) {
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
                f.node_path,
                Item {
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
        let (bytes, mode) = tree::read_file(&item.source)?;
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
        total.saturating_add(256 * items.len() + 64),
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
        let read = |p: &str| {
            let path = root.join(p);
            std::fs::read_to_string(&path).map_err(|source| BuildError::Read { path, source })
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

/// `rustlive bundle build` and `rustlive bundle build-all`.
pub fn run_cli(args: &crate::cli::BundleArgs) -> Result<(), BuildError> {
    use crate::cli::BundleCommand;
    match &args.command {
        BundleCommand::Build(a) => {
            let kind = output::Kind::of(&a.output)?;
            if a.opts.ssh_host_keys {
                let made = hostkeys::ensure(&a.dir, &hostkeys::Keygen::detect())?;
                for p in made {
                    log::info!("bundle: generated {}", p.display());
                }
            }
            let opts = Options {
                commons: a.opts.common.clone(),
                image_root: a.opts.image_root.clone(),
            };
            let b = build(&a.dir, &opts)?;
            let bytes = output::render(&b.json, kind)?;
            output::write_private(&a.output, &bytes)?;
            log::info!(
                "bundle: wrote {} ({} files, {} bytes)",
                a.output.display(),
                b.paths.len(),
                bytes.len()
            );
            Ok(())
        }
        BundleCommand::BuildAll(a) => {
            let opts = Options {
                commons: a.opts.common.clone(),
                image_root: a.opts.image_root.clone(),
            };
            let keygen = a.opts.ssh_host_keys.then(hostkeys::Keygen::detect);
            let r = all::build_all(&a.nodes_dir, &a.output, &opts, keygen.as_ref())?;
            log::info!(
                "bundle: {} nodes: {} written, {} unchanged, {} stale files removed, into {}",
                r.nodes.len(),
                r.written.len(),
                r.nodes.len().saturating_sub(r.written.len()),
                r.removed.len(),
                a.output.display()
            );
            Ok(())
        }
    }
}
