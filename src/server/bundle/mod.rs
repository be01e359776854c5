//! `rustlive bundle`: the boot server's side of node secrets. A directory that mirrors the
//! node's root becomes a secrets bundle (format 1, `docs/reference/secrets-bundle.md`), as JSON for an https source or
//! as a per-node initrd.
//!
//! - [`tree`]: the walk (regular files only, no links) and the manifest of owners by name.
//! - [`error`]: what can go wrong, naming the file at fault.
//! - [`build`]: files → bundle JSON, validated by the node's own validator
//!   ([`crate::secrets::bundle::parse`]) so anything a node would refuse is refused here, with
//!   the node's message.
//! - [`output`]: the JSON and the gzip'ed cpio, written 0600.
//!
//! Every file is read and written through [`crate::server::safe_file`]: no link followed inside
//! a tree, regular files only, bounded reads, outputs renamed into place.
//! - [`hostkeys`]: SSH host keys generated once into the tree and kept.
//! - [`all`]: one bundle per node directory, named by MAC and host name, rewritten only when
//!   its bytes change.

pub mod all;
pub mod build;
pub mod error;
pub mod hostkeys;
pub mod output;
pub mod tree;

pub use build::{build, build_tree, Bundle, Options};
pub use error::{BuildError, KeygenError};

use crate::server::safe_file::Dir;
use std::path::{Path, PathBuf};

/// What [`build_to_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Host key files generated into the tree.
    pub generated: Vec<PathBuf>,
    pub files: usize,
    pub bytes: usize,
}

/// `rustlive bundle build`: host keys first when asked, then the bundle of `dir` written to
/// `output` in the form its name asks for (checked before anything is generated or read). A
/// tree the walk refuses is refused before a host key is generated into it.
pub fn build_to_file(
    dir: &Path,
    opts: &Options,
    output: &Path,
    keygen: Option<&hostkeys::Keygen>,
) -> Result<Written, BuildError> {
    let kind = output::Kind::of(output)?;
    let tree = Dir::open(dir)?;
    let generated = match keygen {
        Some(k) => {
            tree::walk(&tree)?;
            hostkeys::ensure(&tree, k)?
        }
        None => Vec::new(),
    };
    let b = build_tree(&tree, opts)?;
    let bytes = output::render(&b.json, kind)?;
    output::write_private(output, &bytes)?;
    Ok(Written {
        generated,
        files: b.paths.len(),
        bytes: bytes.len(),
    })
}
