//! The syscall seam below the stages: thin, RAII-guarded wrappers over rustix, so that the
//! modules above (`mount`, `ram`, …) hold policy and never call the kernel directly.

// The loop ioctls have no safe wrapper in rustix; their `unsafe` is confined to that module.
#[allow(unsafe_code)]
pub mod loopdev;
pub mod mount;
