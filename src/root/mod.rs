//! The node's new root: the image tmpfs and memory check ([`ram`]), what the image file is
//! ([`image`]), the read-only image under a tmpfs overlay ([`assemble`]), whether the result can
//! boot ([`rootfs`]) and the hand-over into it ([`switchroot`]).

pub mod assemble;
pub mod image;
pub mod ram;
pub mod rootfs;
pub mod switchroot;
