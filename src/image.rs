//! What a root image file is: its filesystem, recognised by magic bytes (never by file name), and
//! where the root filesystem sits inside it when the image uses dmsquash-live's `LiveOS` layout.
//!
//! Everything here is pure or reads only the first few KiB of a file, so every rule is
//! unit-tested without mounting anything.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes to read to recognise every supported format (the ISO 9660 descriptor starts at 32 KiB).
const HEADER_LEN: usize = 0x8000 + 8;

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
    #[error("{path} is not a squashfs, erofs or ext2/3/4 image: found {found}")]
    Unrecognized { path: PathBuf, found: String },
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
}

/// Recognises the format of `path` from its first bytes.
pub fn detect_file(path: &Path) -> Result<Format, ImageError> {
    let read_err = |source| ImageError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let len = f.metadata().map_err(read_err)?.len();
    let mut header = Vec::with_capacity(HEADER_LEN);
    f.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(read_err)?;
    match detect(&header) {
        Ok(Format::Squashfs) => {
            let sb = SquashfsSuper::parse(&header).expect("magic implies a superblock");
            if sb.major != 4 {
                return Err(ImageError::SquashfsVersion {
                    path: path.to_owned(),
                    major: sb.major,
                    minor: sb.minor,
                });
            }
            if sb.bytes_used > len {
                return Err(ImageError::Truncated {
                    path: path.to_owned(),
                    format: Format::Squashfs,
                    expected: sb.bytes_used,
                    actual: len,
                });
            }
            Ok(Format::Squashfs)
        }
        Ok(fmt) => Ok(fmt),
        Err(found) => Err(ImageError::Unrecognized {
            path: path.to_owned(),
            found,
        }),
    }
}

/// Recognises a filesystem from the start of an image; on failure, describes what was found
/// instead (an operator who sees "an HTML document" knows the server sent an error page).
pub fn detect(h: &[u8]) -> Result<Format, String> {
    let at = |off: usize, magic: &[u8]| h.get(off..off + magic.len()) == Some(magic);
    if at(0, b"hsqs") {
        return Ok(Format::Squashfs);
    }
    // erofs: 0xE0F5E1E2 little-endian at 1024; ext2/3/4: 0xEF53 little-endian at 1024 + 56.
    if at(1024, &[0xe2, 0xe1, 0xf5, 0xe0]) {
        return Ok(Format::Erofs);
    }
    if at(1080, &[0x53, 0xef]) {
        return Ok(Format::Ext);
    }
    if at(0x8001, b"CD001") {
        return Ok(Format::Iso9660);
    }
    Err(describe_unknown(h))
}

fn describe_unknown(h: &[u8]) -> String {
    let at = |off: usize, magic: &[u8]| h.get(off..off + magic.len()) == Some(magic);
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
        if at(0, magic) {
            return (*what).into();
        }
    }
    if at(257, b"ustar") {
        return "a tar archive".into();
    }
    if at(512, b"EFI PART") || at(510, &[0x55, 0xaa]) {
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
    let n = h.len().min(8);
    let bytes: Vec<String> = h[..n].iter().map(|b| format!("{b:02x}")).collect();
    format!("unknown data starting with {}", bytes.join(" "))
}

/// The fields of a squashfs superblock that tell whether the file is whole.
struct SquashfsSuper {
    major: u16,
    minor: u16,
    bytes_used: u64,
}

impl SquashfsSuper {
    fn parse(h: &[u8]) -> Option<Self> {
        let u16_at = |o: usize| Some(u16::from_le_bytes(h.get(o..o + 2)?.try_into().ok()?));
        let u64_at = |o: usize| Some(u64::from_le_bytes(h.get(o..o + 8)?.try_into().ok()?));
        Some(SquashfsSuper {
            major: u16_at(28)?,
            minor: u16_at(30)?,
            bytes_used: u64_at(40)?,
        })
    }
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
    /// Where the next image is inside a mounted filesystem of format `fmt`, relative to its
    /// root, or `None` when that filesystem is the root itself.
    ///
    /// The order is dmsquash-live's: a live medium holds `DIR/SQUASHIMG`; a squashfs holds
    /// `DIR/ext3fs.img` (older Fedora) or `DIR/rootfs.img`, or is the root itself.
    pub fn nested(&self, fmt: Format, is_file: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let dir = Path::new(&self.dir);
        let candidates: Vec<PathBuf> = match fmt {
            Format::Iso9660 => vec![dir.join(&self.squash_img)],
            Format::Squashfs => vec![dir.join("ext3fs.img"), dir.join("rootfs.img")],
            Format::Erofs | Format::Ext => vec![],
        };
        candidates.into_iter().find(|p| is_file(p))
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

    fn with_at(off: usize, magic: &[u8], len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[off..off + magic.len()].copy_from_slice(magic);
        v
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
    fn short_headers_are_not_misread() {
        // Magic offsets past the end of a small file must not panic or match.
        assert!(detect(b"hsq").is_err());
        assert!(detect(&[0u8; 1081]).is_err());
        assert_eq!(detect(&[]), Err("an empty file".to_string()));
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
            (
                b"\x01\x02\x03\x04\x05\x06\x07\x08\x09",
                "01 02 03 04 05 06 07 08",
            ),
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

    #[test]
    fn squashfs_superblock_fields() {
        let mut h = with_at(0, b"hsqs", 96);
        h[28..30].copy_from_slice(&4u16.to_le_bytes());
        h[40..48].copy_from_slice(&123_456u64.to_le_bytes());
        let sb = SquashfsSuper::parse(&h).unwrap();
        assert_eq!((sb.major, sb.minor, sb.bytes_used), (4, 0, 123_456));
        assert!(SquashfsSuper::parse(&h[..40]).is_none());
    }

    #[test]
    fn truncated_and_old_squashfs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = with_at(0, b"hsqs", 4096);
        h[28..30].copy_from_slice(&4u16.to_le_bytes());
        h[40..48].copy_from_slice(&8192u64.to_le_bytes());
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

        h[28..30].copy_from_slice(&4u16.to_le_bytes());
        h[40..48].copy_from_slice(&4096u64.to_le_bytes());
        std::fs::write(&p, &h).unwrap();
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
    fn nested_layout_follows_dmsquash_live() {
        let l = LiveLayout::default();
        let has = |names: &'static [&'static str]| {
            move |p: &Path| names.iter().any(|n| p == Path::new(n))
        };
        // A squashfs with a nested ext image mounts the inner one; ext3fs.img wins, as in
        // dmsquash-live.
        assert_eq!(
            l.nested(Format::Squashfs, has(&["LiveOS/rootfs.img"])),
            Some("LiveOS/rootfs.img".into())
        );
        assert_eq!(
            l.nested(
                Format::Squashfs,
                has(&["LiveOS/rootfs.img", "LiveOS/ext3fs.img"])
            ),
            Some("LiveOS/ext3fs.img".into())
        );
        // A plain squashfs is the root.
        assert_eq!(l.nested(Format::Squashfs, has(&[])), None);
        // An ISO holds the squashfs; erofs and ext are always the root.
        assert_eq!(
            l.nested(Format::Iso9660, has(&["LiveOS/squashfs.img"])),
            Some("LiveOS/squashfs.img".into())
        );
        assert_eq!(l.nested(Format::Erofs, |_| true), None);
        assert_eq!(l.nested(Format::Ext, |_| true), None);
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
            l.nested(Format::Squashfs, |p| p
                == Path::new("images/live/rootfs.img")),
            Some("images/live/rootfs.img".into())
        );
        assert_eq!(
            l.nested(Format::Squashfs, |p| p == Path::new("LiveOS/rootfs.img")),
            None
        );
        assert_eq!(
            l.nested(Format::Iso9660, |p| p == Path::new("images/live/root.sqfs")),
            Some("images/live/root.sqfs".into())
        );
    }
}
