//! Loading a kernel module: from its file (`finit_module(2)`), or from its image in memory
//! (`init_module(2)`) when rustlive had to decompress it.

use rustix::io::Errno;
use std::os::fd::AsFd;

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst`/`.ko.gz` itself.
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

/// Loads the module in `file` with no parameters; `compressed` when the kernel must
/// decompress it. `EEXIST` when it is loaded already. A kernel that cannot decompress says
/// `EOPNOTSUPP` (built without `CONFIG_MODULE_DECOMPRESS`) or `EINVAL` (before 5.17, which
/// knows no such flag, or a compression it was not built for).
pub fn load(file: impl AsFd, compressed: bool) -> Result<(), Errno> {
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    rustix::system::finit_module(file, c"", flags)
}

/// Loads the module whose ELF image is `image`, with no parameters. `EEXIST` when it is
/// loaded already.
pub fn load_image(image: &[u8]) -> Result<(), Errno> {
    rustix::system::init_module(image, c"")
}
