//! The syscall seam below the stages: thin, RAII-guarded wrappers over rustix, so that the
//! modules above (`root`, `secrets`, `boot`, …) hold policy and never call the kernel directly.
//! Nothing here uses the rest of the crate (tests aside), and nothing outside uses rustix: a
//! stage that needs a kernel type (an errno, mount flags, a file type) takes it from here.

// Closing inherited descriptors needs the raw `close`; its `unsafe` is confined to that module.
#[allow(unsafe_code)]
pub mod fds;
pub mod fs;
pub mod hostname;
// The loop ioctls have no safe wrapper in rustix; their `unsafe` is confined to that module.
#[allow(unsafe_code)]
pub mod loopdev;
pub mod module;
pub mod mount;
pub mod net;
pub mod power;
pub mod process;
pub mod random;
// The seeder's SIGTERM handler needs sigaction; its `unsafe` is confined to that module.
#[allow(unsafe_code)]
pub mod signals;
pub mod walk;

/// The errno every wrapper here returns (`std::io::Error` converts from it).
pub use rustix::io::Errno;
