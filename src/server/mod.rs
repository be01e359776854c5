//! The boot server's tools; nothing here runs on a booting node (`tests/layering.rs` checks that
//! no node module uses this one): per-node secrets bundles ([`bundle`]), sealing them to a node's
//! TPM ([`seal`]), the standalone initramfs ([`initramfs`]) and its newc archives ([`cpio`]), and
//! publishing an image to an OCI registry ([`publish`]), once [`image_check`] found no node
//! secret in it, `.torrent` files for images ([`torrent`]). The bundle, sealing and initramfs tools
//! read and write every file through [`safe_file`]: no symlink followed where none is expected,
//! regular files only, bounded reads, outputs renamed into place from a directory fd.

pub mod bundle;
pub mod cpio;
pub mod image_check;
pub mod initramfs;
pub mod publish;
pub mod safe_file;
pub mod seal;
pub mod sign;
pub mod torrent;
