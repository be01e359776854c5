//! Where rustlive reads and writes on the running node, below one root: `/` in production, a
//! temporary directory in tests (so every stage runs unprivileged against a fake tree).

use std::path::{Path, PathBuf};

/// Run-time directory of rustlive (`docs/operators/booted-node.md`).
pub const RUN_DIR: &str = "run/rustlive";
/// Default secrets bundle inside the initramfs, used when it exists and no source is given.
pub const DEFAULT_SECRETS_FILE: &str = "rustlive/secrets.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths::system()
    }
}

impl Paths {
    /// The running system.
    pub fn system() -> Paths {
        Paths::under("/")
    }

    /// Everything below `root` (tests).
    pub fn under(root: impl Into<PathBuf>) -> Paths {
        Paths { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` (written without a leading `/`) below the root.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// `/run/rustlive`: the image tmpfs, the mount points, the lease.
    pub fn run_dir(&self) -> PathBuf {
        self.join(RUN_DIR)
    }

    /// `/rustlive/secrets.json`: the per-node initrd's bundle.
    pub fn default_secrets(&self) -> PathBuf {
        self.join(DEFAULT_SECRETS_FILE)
    }
}
