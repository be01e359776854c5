//! Loading a kernel module from its file (`finit_module(2)`).

use rustix::io::Errno;
use std::os::fd::AsFd;

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst`/`.ko.gz` itself.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

/// Loads the module in `file` with no parameters; `compressed` when the kernel must
/// decompress it. `EEXIST` when it is loaded already.
pub fn load(file: impl AsFd, compressed: bool) -> Result<(), Errno> {
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    rustix::system::finit_module(file, c"", flags)
}
