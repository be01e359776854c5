//! What a root image file is: its filesystem, recognised by magic bytes (never by file name), and
//! where the root filesystem sits inside it when the image uses dmsquash-live's `LiveOS` layout.
//!
//! Everything here is pure or reads only the first few KiB of a file, so every rule is
//! unit-tested without mounting anything.

use crate::sys::fs::{FileType, Stat};
use crate::sys::walk::{Step, Walk};
use crate::sys::Errno;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Bytes to read to recognise and check every supported format: up to the end of the ISO 9660
/// primary volume descriptor, which starts at 32 KiB.
pub const HEADER_LEN: usize = 0x8000 + 2048;

/// A filesystem rustlive can mount as (part of) the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Squashfs,
    Erofs,
    /// ext2, ext3 or ext4; all are mounted by the ext4 driver.
    Ext,
    /// Only as a container of `LiveOS/squashfs.img` (a live ISO).
    Iso9660,
}

impl Format {
    /// The filesystem type for mount(2).
    pub fn fstype(self) -> &'static str {
        match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
            Format::Ext => "ext4",
            Format::Iso9660 => "iso9660",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
            Format::Ext => "ext2/3/4",
            Format::Iso9660 => "ISO 9660",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read the image {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file but {kind}")]
    NotRegularFile { path: PathBuf, kind: &'static str },
    #[error("{path} is a symbolic link, or lies under one; a nested image must be a regular file inside its image, never a link that could lead outside it")]
    Symlink { path: PathBuf },
    #[error("{path} is on another filesystem than the image that should hold it")]
    OtherFilesystem { path: PathBuf },
    #[error("nested image path {rel} must be relative and without `..` (check rd.live.dir and rd.live.squashimg)")]
    NestedPath { rel: PathBuf },
    #[error("{path} is not a squashfs, erofs or ext2/3/4 image: found {found}")]
    Unrecognized { path: PathBuf, found: String },
    #[error("{path} is too short for a {format} image: its superblock needs {need} bytes, the file has {have}")]
    TooShort {
        path: PathBuf,
        format: Format,
        need: u64,
        have: u64,
    },
    #[error("{path} is a truncated {format} image: its superblock says {expected} bytes, the file has {actual}")]
    Truncated {
        path: PathBuf,
        format: Format,
        expected: u64,
        actual: u64,
    },
    #[error("{path} is a squashfs of version {major}.{minor}; only version 4 is supported")]
    SquashfsVersion {
        path: PathBuf,
        major: u16,
        minor: u16,
    },
    #[error("{path} has an invalid {format} superblock: {what}")]
    BadSuperblock {
        path: PathBuf,
        format: Format,
        what: String,
    },
}

/// Why the start of a file is not a mountable image (the pure half of [`ImageError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No known magic; what was found instead.
    Unrecognized(String),
    /// The magic is there but the superblock is cut off.
    TooShort {
        format: Format,
        need: u64,
    },
    /// The superblock describes more bytes than the file has.
    Truncated {
        format: Format,
        expected: u64,
    },
    SquashfsVersion {
        major: u16,
        minor: u16,
    },
    BadSuperblock {
        format: Format,
        what: String,
    },
}

impl Refusal {
    fn at(self, path: &Path, len: u64) -> ImageError {
        let path = path.to_owned();
        match self {
            Refusal::Unrecognized(found) => ImageError::Unrecognized { path, found },
            Refusal::TooShort { format, need } => ImageError::TooShort {
                path,
                format,
                need,
                have: len,
            },
            Refusal::Truncated { format, expected } => ImageError::Truncated {
                path,
                format,
                expected,
                actual: len,
            },
            Refusal::SquashfsVersion { major, minor } => {
                ImageError::SquashfsVersion { path, major, minor }
            }
            Refusal::BadSuperblock { format, what } => {
                ImageError::BadSuperblock { path, format, what }
            }
        }
    }
}

/// An image file opened read-only: what is detected is what gets attached to the loop device
/// (the same open file, never the path again).
#[derive(Debug)]
pub struct ImageFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl ImageFile {
    /// Opens the top-level image `path` (a symlink to it is fine: the operator named it).
    /// `O_NONBLOCK` keeps a FIFO from hanging the open; anything but a regular file is refused.
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let read_err = |e: Errno| ImageError::Read {
            path: path.to_owned(),
            source: e.into(),
        };
        let fd = crate::sys::fs::open_nonblocking(path).map_err(read_err)?;
        let st = crate::sys::fs::stat(fd.as_fd()).map_err(read_err)?;
        Self::regular(fd, &st, path)
    }

    /// Opens `rel` inside the directory `dir` (a mounted image) without following any symlink
    /// on the way and without leaving `dir`'s filesystem; `Ok(None)` when it does not exist.
    ///
    /// The walk is [`Walk`]'s, component by component with `O_NOFOLLOW` (the kernels of
    /// long-lived clusters, RHEL 8's 4.18, lack `openat2`); no directory on the way is left
    /// for another filesystem. The file itself is looked at with `fstatat` before it is opened,
    /// so that a device node or FIFO in a hostile image is never opened for real.
    pub fn open_nested(dir: &Path, rel: &Path) -> Result<Option<Self>, ImageError> {
        let path = dir.join(rel);
        let read_err = |e: Errno| ImageError::Read {
            path: path.clone(),
            source: e.into(),
        };
        let names: Vec<&std::ffi::OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(ImageError::NestedPath {
                    rel: rel.to_owned(),
                }),
            })
            .collect::<Result<_, _>>()?;
        let Some((last, parents)) = names.split_last() else {
            return Err(ImageError::NestedPath {
                rel: rel.to_owned(),
            });
        };
        let mut walk = Walk::open_no_follow(dir)
            .and_then(Walk::one_filesystem)
            .map_err(read_err)?;
        for name in parents {
            match walk.step(name).map_err(read_err)? {
                Step::Entered => {}
                Step::Missing | Step::NotDir(_) => return Ok(None),
                Step::Symlink => return Err(ImageError::Symlink { path }),
                Step::OtherFilesystem => return Err(ImageError::OtherFilesystem { path }),
            }
        }
        let Some(st) = walk.stat(last).map_err(read_err)? else {
            return Ok(None);
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(ImageError::Symlink { path });
        }
        if !walk.on_its_filesystem(&st) {
            return Err(ImageError::OtherFilesystem { path });
        }
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(ImageError::NotRegularFile {
                path,
                kind: crate::sys::fs::describe(FileType::from_raw_mode(st.st_mode)),
            });
        }
        // Now open it for reading, still without following a link; the filesystem is mounted
        // read-only, and the inode check below catches anything swapped in between anyway.
        let fd = match walk.open_file(last) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Err(read_err(Errno::NOENT)),
            Err(Errno::LOOP) => return Err(ImageError::Symlink { path }),
            Err(e) => return Err(read_err(e)),
        };
        let again = crate::sys::fs::stat(fd.as_fd()).map_err(read_err)?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return Err(ImageError::Read {
                path,
                source: std::io::Error::other("the file changed while it was being opened"),
            });
        }
        Self::regular(fd, &again, &path).map(Some)
    }

    fn regular(fd: OwnedFd, st: &Stat, path: &Path) -> Result<Self, ImageError> {
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(ImageError::NotRegularFile {
                path: path.to_owned(),
                kind: crate::sys::fs::describe(FileType::from_raw_mode(st.st_mode)),
            });
        }
        let len = u64::try_from(st.st_size).map_err(|_| ImageError::Read {
            path: path.to_owned(),
            source: std::io::Error::other("negative file size"),
        })?;
        // O_NONBLOCK was only for the open (a FIFO); the loop device reads a plain file.
        crate::sys::fs::set_blocking(fd.as_fd()).map_err(|e| ImageError::Read {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(ImageFile {
            file: File::from(fd),
            path: path.to_owned(),
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Recognises the format from the first bytes and checks the superblock against the
    /// file's length.
    pub fn detect(&self) -> Result<Format, ImageError> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.take(HEADER_LEN as u64).read_to_end(&mut header))
            .map_err(|source| ImageError::Read {
                path: self.path.clone(),
                source,
            })?;
        inspect(&header, self.len).map_err(|r| r.at(&self.path, self.len))
    }
}

/// Recognises the format of the file at `path` and checks it is whole.
pub fn detect_file(path: &Path) -> Result<Format, ImageError> {
    ImageFile::open(path)?.detect()
}

/// Recognises a filesystem from the start of a file (`h`, up to [`HEADER_LEN`] bytes) of `len`
/// bytes and checks that its superblock is complete and describes no more than `len` bytes:
/// a truncated download fails here, with its cause, rather than as EIO in the booted system.
pub fn inspect(h: &[u8], len: u64) -> Result<Format, Refusal> {
    let format = detect(h).map_err(Refusal::Unrecognized)?;
    let sb = Superblock { h, format };
    let need = sb.min_len();
    if usize::try_from(need).map_or(true, |n| h.len() < n) {
        return Err(Refusal::TooShort { format, need });
    }
    let expected = match format {
        Format::Squashfs => sb.squashfs()?,
        Format::Erofs => sb.erofs()?,
        Format::Ext => sb.ext()?,
        Format::Iso9660 => sb.iso9660()?,
    };
    if expected > len {
        return Err(Refusal::Truncated { format, expected });
    }
    Ok(format)
}

/// Recognises a filesystem from the start of an image by its magic alone; on failure,
/// describes what was found instead (an operator who sees "an HTML document" knows the server
/// sent an error page).
pub fn detect(h: &[u8]) -> Result<Format, String> {
    if at(h, 0, SQUASHFS_MAGIC) {
        return Ok(Format::Squashfs);
    }
    if at(h, EROFS_SB, EROFS_MAGIC) {
        return Ok(Format::Erofs);
    }
    if at(h, EXT_SB.saturating_add(56), EXT_MAGIC) {
        return Ok(Format::Ext);
    }
    if at(h, ISO_PVD.saturating_add(1), ISO_MAGIC) {
        return Ok(Format::Iso9660);
    }
    Err(describe_unknown(h))
}

const SQUASHFS_MAGIC: &[u8] = b"hsqs";
/// erofs: 0xE0F5E1E2 little-endian at 1024.
const EROFS_SB: usize = 1024;
const EROFS_MAGIC: &[u8] = &[0xe2, 0xe1, 0xf5, 0xe0];
/// ext2/3/4: 0xEF53 little-endian at 1024 + 56.
const EXT_SB: usize = 1024;
const EXT_MAGIC: &[u8] = &[0x53, 0xef];
/// ISO 9660: the primary volume descriptor (type 1, "CD001") at sector 16.
const ISO_PVD: usize = 0x8000;
const ISO_MAGIC: &[u8] = b"CD001";

fn at(h: &[u8], off: usize, magic: &[u8]) -> bool {
    off.checked_add(magic.len())
        .and_then(|end| h.get(off..end))
        .is_some_and(|b| b == magic)
}

/// Little-endian fields of a superblock, read with bounds checks.
struct Superblock<'a> {
    h: &'a [u8],
    format: Format,
}

impl Superblock<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> Result<[u8; N], Refusal> {
        off.checked_add(N)
            .and_then(|end| self.h.get(off..end))
            .and_then(|b| b.try_into().ok())
            .ok_or(Refusal::TooShort {
                format: self.format,
                need: self.min_len(),
            })
    }
    fn u16(&self, off: usize) -> Result<u16, Refusal> {
        self.bytes(off).map(u16::from_le_bytes)
    }
    fn u32(&self, off: usize) -> Result<u32, Refusal> {
        self.bytes(off).map(u32::from_le_bytes)
    }
    fn u64(&self, off: usize) -> Result<u64, Refusal> {
        self.bytes(off).map(u64::from_le_bytes)
    }
    fn bad(&self, what: String) -> Refusal {
        Refusal::BadSuperblock {
            format: self.format,
            what,
        }
    }

    /// Bytes from the start of the file to the end of the superblock.
    fn min_len(&self) -> u64 {
        match self.format {
            Format::Squashfs => 96,
            Format::Erofs => 1024 + 128,
            Format::Ext => 1024 + 1024,
            Format::Iso9660 => 0x8000 + 2048,
        }
    }

    /// squashfs 4: `bytes_used` at 40 is the length of the filesystem.
    fn squashfs(&self) -> Result<u64, Refusal> {
        let (major, minor) = (self.u16(28)?, self.u16(30)?);
        if major != 4 {
            return Err(Refusal::SquashfsVersion { major, minor });
        }
        self.u64(40)
    }

    /// erofs: `blocks` (32 bits at 36) of 2^`blkszbits` (at 12) bytes. With the 48-bit layout
    /// this is the low word of the count, still a lower bound of the length.
    fn erofs(&self) -> Result<u64, Refusal> {
        let [bits] = self.bytes::<1>(EROFS_SB + 12)?;
        // The kernel takes 512 B up to the page size (64 KiB at most).
        if !(9..=16).contains(&bits) {
            return Err(self.bad(format!("block size 2^{bits} is out of range")));
        }
        let blocks = u64::from(self.u32(EROFS_SB + 36)?);
        // At most 2^32 blocks of 2^16 bytes: no overflow.
        Ok(blocks.checked_shl(u32::from(bits)).unwrap_or(u64::MAX))
    }

    /// ext2/3/4: `s_blocks_count` (low word at 4, high word at 0x150 with INCOMPAT_64BIT) of
    /// 1024 << `s_log_block_size` (at 24) bytes.
    fn ext(&self) -> Result<u64, Refusal> {
        let log = self.u32(EXT_SB + 24)?;
        // 64 KiB is ext4's largest block.
        if log > 6 {
            return Err(self.bad(format!("block size 1024 << {log} is out of range")));
        }
        let lo = u64::from(self.u32(EXT_SB + 4)?);
        let incompat = self.u32(EXT_SB + 0x60)?;
        let hi = if incompat & 0x80 != 0 {
            u64::from(self.u32(EXT_SB + 0x150)?)
        } else {
            0
        };
        let blocks = (hi << 32) | lo;
        let block = 1024u64.checked_shl(log).unwrap_or(u64::MAX);
        blocks
            .checked_mul(block)
            .ok_or_else(|| self.bad(format!("{blocks} blocks of {block} bytes overflow")))
    }

    /// ISO 9660: the volume space size (both-endian 32 bits at 80, little-endian half first)
    /// in logical blocks (both-endian 16 bits at 128).
    fn iso9660(&self) -> Result<u64, Refusal> {
        let blocks = u64::from(self.u32(ISO_PVD + 80)?);
        let block = u64::from(self.u16(ISO_PVD + 128)?);
        if !block.is_power_of_two() || !(512..=2048).contains(&block) {
            return Err(self.bad(format!("logical block size {block} is invalid")));
        }
        Ok(blocks.saturating_mul(block))
    }
}

fn describe_unknown(h: &[u8]) -> String {
    if h.is_empty() {
        return "an empty file".into();
    }
    let known: &[(&[u8], &str)] = &[
        (
            b"sqsh",
            "a big-endian squashfs (not supported by Linux 2.6.29+)",
        ),
        (
            &[0x1f, 0x8b],
            "gzip-compressed data (decompress the image first)",
        ),
        (
            &[0xfd, b'7', b'z', b'X', b'Z', 0],
            "xz-compressed data (decompress the image first)",
        ),
        (
            &[0x28, 0xb5, 0x2f, 0xfd],
            "zstd-compressed data (decompress the image first)",
        ),
        (b"BZh", "bzip2-compressed data (decompress the image first)"),
        (b"070701", "a cpio archive"),
        (b"070702", "a cpio archive"),
        (b"\x7fELF", "an ELF executable"),
        (b"untrusted comment:", "a minisign signature"),
    ];
    for (magic, what) in known {
        if at(h, 0, magic) {
            return (*what).into();
        }
    }
    if at(h, 257, b"ustar") {
        return "a tar archive".into();
    }
    if at(h, 512, b"EFI PART") || at(h, 510, &[0x55, 0xaa]) {
        return "a partitioned disk image (give the filesystem itself, not a whole disk)".into();
    }
    let text = h.iter().take(512).skip_while(|b| b.is_ascii_whitespace());
    let start: Vec<u8> = text.take(16).copied().collect();
    let lower = String::from_utf8_lossy(&start).to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return "an HTML document (the server sent a web page, not the image)".into();
    }
    if h.iter().all(|&b| b == 0) {
        return format!("only zero bytes in the first {} bytes", h.len());
    }
    // Never the bytes themselves: the file may be something else than an image (a secret in
    // the initramfs, say), and this message goes to the console and the journal.
    "unknown data (no squashfs, erofs, ext2/3/4 or ISO 9660 magic number)".into()
}

/// dmsquash-live's nested layout, configured by `rd.live.dir` and `rd.live.squashimg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLayout {
    /// Directory holding the nested images (`LiveOS`).
    pub dir: String,
    /// Name of the squashfs inside a live ISO (`squashfs.img`).
    pub squash_img: String,
}

impl Default for LiveLayout {
    fn default() -> Self {
        LiveLayout {
            dir: "LiveOS".into(),
            squash_img: "squashfs.img".into(),
        }
    }
}

/// Most filesystems stacked inside each other: ISO → squashfs.img → rootfs.img.
pub const MAX_DEPTH: usize = 3;

impl LiveLayout {
    /// Where the next image may be inside a mounted filesystem of format `fmt`, relative to
    /// its root, in the order to try; the first that exists is the next image, and when none
    /// does, that filesystem is the root itself.
    ///
    /// The order is dmsquash-live's: a live medium holds `DIR/SQUASHIMG`; a squashfs holds
    /// `DIR/ext3fs.img` (older Fedora) or `DIR/rootfs.img`, or is the root itself.
    pub fn candidates(&self, fmt: Format) -> Vec<PathBuf> {
        let dir = Path::new(&self.dir);
        match fmt {
            Format::Iso9660 => vec![dir.join(&self.squash_img)],
            Format::Squashfs => vec![dir.join("ext3fs.img"), dir.join("rootfs.img")],
            Format::Erofs | Format::Ext => vec![],
        }
    }

    /// What must be present inside a filesystem of format `fmt` that cannot be a root itself.
    pub fn required_inside(&self, fmt: Format) -> Option<String> {
        match fmt {
            Format::Iso9660 => Some(format!("{}/{}", self.dir, self.squash_img)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_at(off: usize, magic: &[u8], len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[off..off + magic.len()].copy_from_slice(magic);
        v
    }

    fn put(h: &mut [u8], off: usize, bytes: &[u8]) {
        h[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// A squashfs 4 superblock for a filesystem of `bytes_used` bytes.
    fn squashfs(bytes_used: u64) -> Vec<u8> {
        let mut h = with_at(0, b"hsqs", 4096);
        put(&mut h, 28, &4u16.to_le_bytes());
        put(&mut h, 40, &bytes_used.to_le_bytes());
        h
    }

    /// An erofs superblock of `blocks` blocks of 2^`bits` bytes.
    fn erofs(blocks: u32, bits: u8) -> Vec<u8> {
        let mut h = with_at(1024, &0xE0F5_E1E2u32.to_le_bytes(), 4096);
        h[1024 + 12] = bits;
        put(&mut h, 1024 + 36, &blocks.to_le_bytes());
        h
    }

    /// An ext4 superblock of `blocks` blocks of 1024 << `log` bytes (64-bit when `hi` > 0).
    fn ext(blocks_lo: u32, hi: u32, log: u32) -> Vec<u8> {
        let mut h = with_at(1080, &0xEF53u16.to_le_bytes(), 4096);
        put(&mut h, 1024 + 4, &blocks_lo.to_le_bytes());
        put(&mut h, 1024 + 24, &log.to_le_bytes());
        if hi > 0 {
            put(&mut h, 1024 + 0x60, &0x80u32.to_le_bytes());
            put(&mut h, 1024 + 0x150, &hi.to_le_bytes());
        }
        h
    }

    /// An ISO 9660 primary volume descriptor of `blocks` logical blocks of `block` bytes.
    fn iso(blocks: u32, block: u16) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0x8000] = 1;
        put(&mut h, 0x8001, b"CD001");
        put(&mut h, 0x8000 + 80, &blocks.to_le_bytes());
        put(&mut h, 0x8000 + 84, &blocks.to_be_bytes());
        put(&mut h, 0x8000 + 128, &block.to_le_bytes());
        put(&mut h, 0x8000 + 130, &block.to_be_bytes());
        h
    }

    #[test]
    fn detects_each_format_by_magic() {
        assert_eq!(detect(&with_at(0, b"hsqs", 4096)), Ok(Format::Squashfs));
        assert_eq!(
            detect(&with_at(1024, &0xE0F5_E1E2u32.to_le_bytes(), 4096)),
            Ok(Format::Erofs)
        );
        assert_eq!(
            detect(&with_at(1080, &0xEF53u16.to_le_bytes(), 4096)),
            Ok(Format::Ext)
        );
        assert_eq!(
            detect(&with_at(0x8001, b"CD001", HEADER_LEN)),
            Ok(Format::Iso9660)
        );
    }

    #[test]
    fn whole_images_of_each_format_pass() {
        assert_eq!(inspect(&squashfs(4096), 4096), Ok(Format::Squashfs));
        assert_eq!(inspect(&erofs(3, 12), 3 << 12), Ok(Format::Erofs));
        assert_eq!(inspect(&ext(16, 0, 2), 16 << 12), Ok(Format::Ext));
        assert_eq!(inspect(&iso(40, 2048), 40 * 2048), Ok(Format::Iso9660));
        // Longer than the filesystem (padding) is fine.
        assert_eq!(inspect(&erofs(3, 12), 1 << 30), Ok(Format::Erofs));
    }

    #[test]
    fn short_headers_are_not_misread() {
        // Magic offsets past the end of a small file must not panic or match.
        assert!(detect(b"hsq").is_err());
        assert!(detect(&[0u8; 1081]).is_err());
        assert_eq!(detect(&[]), Err("an empty file".to_string()));
    }

    /// Regression (issue 9 item 1): `hsqs` followed by fewer bytes than a superblock panicked
    /// (`expect("magic implies a superblock")`).
    #[test]
    fn tiny_hsqs_files_are_too_short_not_a_panic() {
        for n in 4..96 {
            let h = &squashfs(1)[..n];
            assert_eq!(
                inspect(h, n as u64),
                Err(Refusal::TooShort {
                    format: Format::Squashfs,
                    need: 96
                }),
                "{n} bytes"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.img");
        std::fs::write(&p, b"hsqs\x01\x02").unwrap();
        let e = detect_file(&p).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::TooShort {
                    need: 96,
                    have: 6,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("tiny.img"), "{e}");
    }

    /// Regression (issue 9 item 9): a truncated erofs was accepted.
    #[test]
    fn truncated_erofs_is_refused() {
        let h = erofs(100, 12);
        assert_eq!(
            inspect(&h, 4096),
            Err(Refusal::Truncated {
                format: Format::Erofs,
                expected: 100 << 12
            })
        );
        assert_eq!(inspect(&h, 100 << 12), Ok(Format::Erofs));
        // Block sizes the kernel never takes are refused rather than shifted out of range.
        for bits in [0u8, 8, 17, 64, 255] {
            assert!(
                matches!(
                    inspect(&erofs(1, bits), 1 << 20),
                    Err(Refusal::BadSuperblock { .. })
                ),
                "blkszbits {bits}"
            );
        }
        // The superblock itself cut off.
        assert!(matches!(
            inspect(&h[..1100], 1100),
            Err(Refusal::TooShort { need: 1152, .. })
        ));
    }

    #[test]
    fn truncated_ext_and_iso_are_refused() {
        assert!(matches!(
            inspect(&ext(4096, 0, 0), 1 << 20),
            Err(Refusal::Truncated {
                expected: 4194304,
                ..
            })
        ));
        // 64-bit block count: the high word counts.
        assert!(matches!(
            inspect(&ext(0, 1, 2), 1 << 40),
            Err(Refusal::Truncated {
                expected: 17592186044416,
                ..
            })
        ));
        assert!(matches!(
            inspect(&ext(1, 0, 7), 1 << 20),
            Err(Refusal::BadSuperblock { .. })
        ));
        assert!(matches!(
            inspect(&ext(u32::MAX, u32::MAX, 6), u64::MAX),
            Err(Refusal::BadSuperblock { .. })
        ));
        assert!(matches!(
            inspect(&iso(1000, 2048), 1 << 20),
            Err(Refusal::Truncated {
                expected: 2048000,
                ..
            })
        ));
        assert!(matches!(
            inspect(&iso(1, 0), 1 << 20),
            Err(Refusal::BadSuperblock { .. })
        ));
    }

    #[test]
    fn describes_what_was_found() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x1f\x8b\x08\x00rest", "gzip"),
            (b"\xfd7zXZ\x00rest", "xz"),
            (b"\x28\xb5\x2f\xfdrest", "zstd"),
            (b"  \n<!DOCTYPE html><html>", "HTML document"),
            (b"<html><body>404</body></html>", "HTML document"),
            (b"\x7fELF\x02\x01", "ELF"),
            (b"sqsh", "big-endian squashfs"),
            (b"\x01\x02\x03\x04\x05\x06\x07\x08\x09", "unknown data"),
        ];
        for (input, want) in cases {
            let got = detect(input).unwrap_err();
            assert!(got.contains(want), "{got:?} should mention {want:?}");
        }
        let zeros = detect(&[0u8; 4096]).unwrap_err();
        assert!(zeros.contains("zero bytes"), "{zeros}");
        let mbr = detect(&with_at(510, &[0x55, 0xaa], 4096)).unwrap_err();
        assert!(mbr.contains("partitioned disk"), "{mbr}");
    }

    /// Regression (issue 9 item 8): the error quoted the first bytes of whatever file it was
    /// given, which may be a secret rather than an image.
    #[test]
    fn unknown_data_is_never_quoted() {
        let secret = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=";
        let got = detect(secret).unwrap_err();
        let hex: Vec<String> = secret[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!got.contains(&hex.join(" ")), "{got}");
        assert!(!got.contains("BEGIN"), "{got}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.img");
        std::fs::write(&p, secret).unwrap();
        let msg = detect_file(&p).unwrap_err().to_string();
        assert!(!msg.contains("2d 2d") && !msg.contains("OPENSSH"), "{msg}");
    }

    #[test]
    fn truncated_and_old_squashfs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = squashfs(8192);
        let p = dir.path().join("short.img");
        std::fs::write(&p, &h).unwrap();
        let e = detect_file(&p).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Truncated {
                    expected: 8192,
                    actual: 4096,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("short.img"));

        h[28..30].copy_from_slice(&3u16.to_le_bytes());
        std::fs::write(&p, &h).unwrap();
        assert!(matches!(
            detect_file(&p).unwrap_err(),
            ImageError::SquashfsVersion { major: 3, .. }
        ));

        std::fs::write(&p, squashfs(4096)).unwrap();
        assert_eq!(detect_file(&p).unwrap(), Format::Squashfs);
    }

    #[test]
    fn unrecognized_file_error_names_file_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.img");
        std::fs::write(&p, b"<html>502 Bad Gateway</html>").unwrap();
        let msg = detect_file(&p).unwrap_err().to_string();
        assert!(msg.contains("root.img") && msg.contains("HTML"), "{msg}");
        let missing = detect_file(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, ImageError::Read { .. }));
    }

    #[test]
    fn only_regular_files_are_images() {
        let dir = tempfile::tempdir().unwrap();
        let e = ImageFile::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::NotRegularFile {
                    kind: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        // A FIFO is refused at once (O_NONBLOCK), not waited on for ever.
        let fifo = dir.path().join("fifo");
        crate::sys::fs::make_fifo(&fifo, 0o600).unwrap();
        let e = ImageFile::open(&fifo).unwrap_err();
        assert!(
            matches!(e, ImageError::NotRegularFile { kind: "a FIFO", .. }),
            "{e}"
        );
        let e = ImageFile::open(Path::new("/dev/null")).unwrap_err();
        assert!(matches!(e, ImageError::NotRegularFile { .. }), "{e}");
    }

    /// A mounted image stand-in: `LiveOS/` with whatever a test puts there.
    fn live_dir() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let mnt = d.path().join("mnt");
        std::fs::create_dir_all(mnt.join("LiveOS")).unwrap();
        (d, mnt)
    }

    #[test]
    fn nested_images_are_opened_inside_the_image_only() {
        let rel = Path::new("LiveOS/rootfs.img");
        let (d, mnt) = live_dir();
        assert!(ImageFile::open_nested(&mnt, rel).unwrap().is_none());
        std::fs::write(mnt.join(rel), squashfs(4096)).unwrap();
        let f = ImageFile::open_nested(&mnt, rel).unwrap().unwrap();
        assert_eq!((f.len(), f.detect().unwrap()), (4096, Format::Squashfs));
        assert_eq!(f.path(), mnt.join(rel));

        // Regression (issue 9 item 8): a symlink, absolute or relative, to a real image
        // outside was followed.
        let outside = d.path().join("outside.img");
        std::fs::write(&outside, squashfs(4096)).unwrap();
        for target in [outside.clone(), PathBuf::from("../../outside.img")] {
            std::fs::remove_file(mnt.join(rel)).unwrap();
            std::os::unix::fs::symlink(&target, mnt.join(rel)).unwrap();
            let e = ImageFile::open_nested(&mnt, rel).unwrap_err();
            assert!(matches!(e, ImageError::Symlink { .. }), "{target:?}: {e}");
            assert!(e.to_string().contains("rootfs.img"), "{e}");
        }
        // A dangling link is refused too, not taken for "absent".
        std::fs::remove_file(mnt.join(rel)).unwrap();
        std::os::unix::fs::symlink("/nonexistent", mnt.join(rel)).unwrap();
        assert!(matches!(
            ImageFile::open_nested(&mnt, rel),
            Err(ImageError::Symlink { .. })
        ));

        // A symlinked directory on the way.
        let (d2, mnt2) = live_dir();
        std::fs::remove_dir(mnt2.join("LiveOS")).unwrap();
        let real = d2.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("rootfs.img"), squashfs(4096)).unwrap();
        std::os::unix::fs::symlink(&real, mnt2.join("LiveOS")).unwrap();
        assert!(matches!(
            ImageFile::open_nested(&mnt2, rel),
            Err(ImageError::Symlink { .. })
        ));
    }

    #[test]
    fn nested_special_files_are_refused_without_opening_them() {
        let rel = Path::new("LiveOS/rootfs.img");
        let (_d, mnt) = live_dir();
        std::fs::create_dir(mnt.join(rel)).unwrap();
        assert!(matches!(
            ImageFile::open_nested(&mnt, rel),
            Err(ImageError::NotRegularFile {
                kind: "a directory",
                ..
            })
        ));
        std::fs::remove_dir(mnt.join(rel)).unwrap();
        crate::sys::fs::make_fifo(&mnt.join(rel), 0o600).unwrap();
        assert!(matches!(
            ImageFile::open_nested(&mnt, rel),
            Err(ImageError::NotRegularFile { kind: "a FIFO", .. })
        ));
        // LiveOS a file: nothing nested there.
        let (_d, mnt) = live_dir();
        std::fs::remove_dir(mnt.join("LiveOS")).unwrap();
        std::fs::write(mnt.join("LiveOS"), "x").unwrap();
        assert!(ImageFile::open_nested(&mnt, rel).unwrap().is_none());
    }

    #[test]
    fn nested_paths_stay_relative() {
        let (_d, mnt) = live_dir();
        for rel in ["../x.img", "/etc/x.img", "LiveOS/../../x.img", ""] {
            assert!(
                matches!(
                    ImageFile::open_nested(&mnt, Path::new(rel)),
                    Err(ImageError::NestedPath { .. })
                ),
                "{rel:?}"
            );
        }
    }

    #[test]
    fn nested_layout_follows_dmsquash_live() {
        let l = LiveLayout::default();
        // ext3fs.img first, as in dmsquash-live.
        assert_eq!(
            l.candidates(Format::Squashfs),
            [
                Path::new("LiveOS/ext3fs.img"),
                Path::new("LiveOS/rootfs.img")
            ]
        );
        // An ISO holds the squashfs; erofs and ext are always the root.
        assert_eq!(
            l.candidates(Format::Iso9660),
            [Path::new("LiveOS/squashfs.img")]
        );
        assert!(l.candidates(Format::Erofs).is_empty());
        assert!(l.candidates(Format::Ext).is_empty());
        assert_eq!(
            l.required_inside(Format::Iso9660).as_deref(),
            Some("LiveOS/squashfs.img")
        );
        assert_eq!(l.required_inside(Format::Squashfs), None);
    }

    #[test]
    fn nested_layout_honours_live_dir_and_squashimg() {
        let l = LiveLayout {
            dir: "images/live".into(),
            squash_img: "root.sqfs".into(),
        };
        assert_eq!(
            l.candidates(Format::Squashfs)[1],
            Path::new("images/live/rootfs.img")
        );
        assert_eq!(
            l.candidates(Format::Iso9660),
            [Path::new("images/live/root.sqfs")]
        );
    }

    // Fuzzing on stable: the detector over arbitrary bytes, and over valid superblocks with
    // mutated fields, cut-off headers and wrong file lengths. A few thousand cases, about a
    // second; inputs that once failed are the explicit regression tests above.

    /// A valid header of one format and the length its superblock declares.
    fn valid_image() -> impl Strategy<Value = (Format, Vec<u8>, u64)> {
        prop_oneof![
            (96u64..1 << 40).prop_map(|n| (Format::Squashfs, squashfs(n), n)),
            (any::<u32>(), 9u8..=16).prop_map(|(b, bits)| (
                Format::Erofs,
                erofs(b, bits),
                u64::from(b) << bits
            )),
            (any::<u32>(), 0u32..4, 0u32..=6).prop_map(|(lo, hi, log)| (
                Format::Ext,
                ext(lo, hi, log),
                ((u64::from(hi) << 32) | u64::from(lo)) * (1024 << log)
            )),
            (any::<u32>(), prop::sample::select(vec![512u16, 1024, 2048])).prop_map(|(b, bs)| (
                Format::Iso9660,
                iso(b, bs),
                u64::from(b) * u64::from(bs)
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn fuzz_arbitrary_bytes_never_panic(
            h in prop::collection::vec(any::<u8>(), 0..600),
            len in any::<u64>(),
        ) {
            let r = inspect(&h, len);
            // Whatever it says, an accepted format is the one its magic names.
            if let Ok(f) = r {
                prop_assert_eq!(detect(&h), Ok(f));
            }
        }

        #[test]
        fn fuzz_magic_at_every_offset_never_panics(
            fmt in 0usize..4,
            cut in 0usize..HEADER_LEN,
            fill in any::<u8>(),
            len in any::<u64>(),
        ) {
            let mut h = vec![fill; HEADER_LEN];
            let (off, magic): (usize, &[u8]) = [
                (0, SQUASHFS_MAGIC),
                (EROFS_SB, EROFS_MAGIC),
                (EXT_SB + 56, EXT_MAGIC),
                (ISO_PVD + 1, ISO_MAGIC),
            ][fmt];
            put(&mut h, off, magic);
            h.truncate(cut);
            let _ = inspect(&h, len);
        }

        #[test]
        fn fuzz_valid_superblocks(
            (fmt, h, declared) in valid_image(),
            extra in 0u64..1 << 20,
            short in 1u64..1 << 20,
        ) {
            // Long enough: accepted, whatever the padding.
            prop_assert_eq!(inspect(&h, declared.saturating_add(extra)), Ok(fmt));
            // One byte short or more: truncated, with the superblock's figure.
            if let Some(len) = declared.checked_sub(short) {
                prop_assert_eq!(
                    inspect(&h, len),
                    Err(Refusal::Truncated { format: fmt, expected: declared })
                );
            }
        }

        #[test]
        fn fuzz_cut_superblocks_are_never_accepted(
            (fmt, h, _declared) in valid_image(),
            cut_frac in 0.0f64..1.0,
        ) {
            let need = Superblock { h: &h, format: fmt }.min_len() as usize;
            let cut = (need as f64 * cut_frac) as usize;
            let r = inspect(&h[..cut.min(h.len())], u64::MAX);
            prop_assert!(r.is_err(), "{fmt} cut at {cut}: {r:?}");
        }

        #[test]
        fn fuzz_mutated_superblocks_never_panic(
            (_fmt, mut h, declared) in valid_image(),
            flips in prop::collection::vec((0usize..HEADER_LEN, any::<u8>()), 1..16),
            len_delta in any::<i32>(),
        ) {
            for (i, b) in flips {
                if let Some(x) = h.get_mut(i) {
                    *x = b;
                }
            }
            let len = declared.saturating_add_signed(i64::from(len_delta));
            // Acceptance is monotonic in the file length: more bytes never hurt.
            if inspect(&h, len).is_ok() {
                prop_assert!(inspect(&h, len.saturating_add(1 << 20)).is_ok());
            }
        }
    }
}
