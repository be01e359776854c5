//! The boot server's tools; nothing here runs on a booting node (`tests/layering.rs` checks that
//! no node module uses this one): per-node secrets bundles ([`bundle`]), sealing them to a node's
//! TPM ([`seal`]), the standalone initramfs ([`initramfs`]) and its newc archives ([`cpio`]), and
//! publishing an image to an OCI registry ([`publish`]).

pub mod bundle;
pub mod cpio;
pub mod initramfs;
pub mod publish;
pub mod seal;
pub mod sign;
