//! rustlive: the initramfs agent that netboots a diskless node, and the boot server's tools
//! that prepare what it fetches.
//!
//! The tree says who runs what (`docs/developers/layout.md` draws it):
//! - on the node: [`boot`] (the whole boot under one deadline, PID 1, the failure policy) and
//!   its stages [`drivers`], [`net`], [`fetch`], [`swarm`], [`oci`], [`root`], [`secrets`], [`tpm`];
//! - on the boot server: [`server`] (bundles, sealing, the standalone initramfs, publishing);
//! - below both: [`config`] (the kernel command line), [`sys`] (every syscall) and
//!   [`support`] (logging, the deadline, paths, exit codes, bounded values);
//! - above all: [`cli`], which maps subcommands onto them; `main.rs` only calls [`cli::main`].
//!
//! Layers only point down, and nothing the node runs uses `server`: `tests/layering.rs` checks
//! both on the source.
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
pub mod cli;
pub mod config;
pub mod drivers;
pub mod fetch;
pub mod net;
pub mod oci;
pub mod root;
pub mod secrets;
pub mod server;
pub mod support;
pub mod swarm;
pub mod sys;
pub mod tpm;
