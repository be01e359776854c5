//! rustlive: the initramfs agent that netboots a diskless node.
//!
//! The stages of `rustlive boot`, each in its own module: [`config`] (the kernel command line),
//! fetch and verify (the image into RAM), mount and image (the overlay root), secrets, and
//! switchroot. [`cli`] maps subcommands onto them; `main.rs` only calls [`cli::main`].

pub mod boot;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod cpio;
pub mod deadline;
pub mod error;
pub mod fetch;
pub mod image;
pub mod kmod;
pub mod log;
pub mod mount;
pub mod net;
pub mod onfail;
pub mod panic_hook;
pub mod paths;
pub mod pid1;
pub mod ram;
pub mod rootfs;
pub mod secrets;
pub mod switchroot;
#[doc(hidden)]
pub mod testing;
pub mod tpm;
pub mod url_template;
pub mod values;
pub mod verify;

pub use boot::Error;
pub use config::Config;
pub use error::Exit;
