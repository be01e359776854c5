//! The error of any command: a stage's (the same mapping `boot` uses) or a boot-server tool's.
//! `main` reports every one the same way: one line, the cause chain, this exit code.

use crate::server::bundle::BuildError as BundleError;
use crate::server::initramfs::BuildError as InitramfsError;
use crate::server::seal::SealError;
use crate::support::exit::Exit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node stage run by hand (fetch, secrets, assembly, switch-root, the configuration), or
    /// a registry's answer to `rustlive publish`.
    #[error(transparent)]
    Stage(#[from] crate::boot::Error),
    #[error(transparent)]
    Enroll(#[from] crate::secrets::enroll::EnrollError),
    #[error("cannot build the secrets bundle")]
    Bundle(#[from] BundleError),
    #[error("cannot seal the secrets bundle")]
    Seal(#[from] SealError),
    #[error("cannot build the initramfs")]
    Initramfs(#[from] InitramfsError),
    /// `image check`, and `publish` before it pushes: the image holds a node's secrets, or
    /// cannot be checked.
    #[error(transparent)]
    ImageCheck(#[from] crate::server::image_check::CheckError),
    /// `initramfs --ca FILE` names a file that is not there.
    #[error(
        "--ca {}: no such file; it is the PEM bundle of the CAs the node trusts to verify the https \
         servers it fetches from (image, sha256sums, secrets); give an existing bundle, or leave \
         --ca out to take the first of {} that exists",
        .0.display(),
        crate::server::initramfs::CA_DEFAULTS.join(", ")
    )]
    CaMissing(std::path::PathBuf),
    #[error("cannot create the torrent")]
    Torrent(#[from] crate::server::torrent::TorrentError),
    #[error("cannot fetch from the swarm")]
    Swarm(#[from] crate::swarm::session::SwarmError),
    #[error("the seeder stopped")]
    Seeder(#[from] crate::swarm::seeder::SeederError),
}

impl Error {
    /// The contract's exit code.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Stage(e) => e.exit_code(),
            Error::Enroll(e) => e.exit_code(),
            Error::Bundle(e) => e.exit_code(),
            Error::Seal(e) => e.exit_code(),
            Error::Initramfs(_) | Error::CaMissing(_) => Exit::Usage,
            Error::ImageCheck(e) => e.exit_code(),
            Error::Torrent(_) => Exit::Usage,
            Error::Swarm(e) => e.exit_code(),
            Error::Seeder(e) => e.exit_code(),
        }
    }
}

/// A stage's error, through the boot's mapping.
macro_rules! stage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Stage(e.into())
            }
        }
    )*};
}
stage_errors!(
    crate::config::ConfigError,
    crate::fetch::FetchError,
    crate::oci::OciError,
    crate::secrets::SecretsError,
    crate::root::assemble::AssembleError,
    crate::root::switchroot::SwitchRootError
);
