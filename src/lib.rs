//! rustlive: the initramfs agent that netboots a diskless node.
//!
//! The stages of `rustlive boot`, each in its own module: [`config`] (the kernel command line),
//! fetch and verify (the image into RAM), mount and image (the overlay root), secrets, and
//! switchroot. [`cli`] maps subcommands onto them; `main.rs` only calls [`cli::main`].
//!
//! As PID 1 a panic is a kernel panic, so outside tests nothing may panic on data from the
//! network, an image, a bundle or the command line: no unwrap/expect, no indexing that can go
//! out of bounds, no unchecked arithmetic. The one `unsafe` (ioctls) is in [`sys`].
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod boot;
pub mod bundle;
pub mod cli;
pub mod cmdline;
pub mod coldplug;
pub mod config;
pub mod cpio;
pub mod deadline;
pub mod error;
pub mod fetch;
pub mod image;
pub mod initramfs;
pub mod ipconfig;
pub mod kmod;
pub mod log;
pub mod modalias;
pub mod mount;
pub mod net;
pub mod oci;
pub mod oci_ref;
pub mod onfail;
pub mod panic_hook;
pub mod paths;
pub mod pid1;
pub mod ram;
pub mod rootfs;
pub mod sealing;
pub mod secrets;
pub mod switchroot;
pub mod sys;
pub mod syslog;
#[doc(hidden)]
pub mod testing;
pub mod tpm;
pub mod url_template;
pub mod values;
pub mod verify;

pub use boot::Error;
pub use config::Config;
pub use error::Exit;
