//! The errors of `rustlive bundle`: each names the server file or tree at fault; a bundle the
//! node would refuse carries the node's own [`BundleError`] as its cause.

use crate::secrets::bundle::{BundleError, Rule};
use crate::support::exit::Exit;
use std::path::PathBuf;

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
        source: KeygenError,
    },
    #[error("{}: {what}", dir.display())]
    Node { dir: PathBuf, what: String },
    #[error("node {host} has no enrolled EK in {} (save what `rustlive tpm ek` prints on the node as {host}.ek; {host}.pem, .crt or .der are read too)", ek_dir.display())]
    NoEk { host: String, ek_dir: PathBuf },
    /// A file or directory refused or failed by the boot server's file layer.
    #[error(transparent)]
    File(#[from] crate::server::safe_file::FileError),
    #[error("cannot seal the bundle of node {host}")]
    Seal {
        host: String,
        #[source]
        source: crate::server::seal::SealError,
    },
    #[error("--sign-key")]
    SignKey(#[source] crate::server::sign::SignError),
    #[error("--seal-to and --sign-key go together: sealed bundles are signed")]
    SealWithoutKey,
}

impl BuildError {
    pub fn exit_code(&self) -> Exit {
        match self {
            BuildError::OutputKind(_) | BuildError::SealWithoutKey => Exit::Usage,
            BuildError::SignKey(crate::server::sign::SignError::Sign(..)) => Exit::Secrets,
            BuildError::SignKey(_) => Exit::Usage,
            _ => Exit::Secrets,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("ssh-keygen failed ({status}): {stderr}")]
    SshKeygen { status: String, stderr: String },
    #[error("cannot run ssh-keygen")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Key(#[from] ssh_key::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
