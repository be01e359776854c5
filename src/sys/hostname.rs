//! The host name (`uname(2)`'s nodename, `sethostname(2)`).

use rustix::io::Errno;

/// The host name, `(none)` when the kernel has none yet.
pub fn get() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Sets the host name.
pub fn set(name: &str) -> Result<(), Errno> {
    rustix::system::sethostname(name.as_bytes())
}
