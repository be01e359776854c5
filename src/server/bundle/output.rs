//! The two forms of a bundle on the boot server, both written 0600 and atomically (through
//! [`crate::server::safe_file`]).
//!
//! - JSON: what `rd.rustlive.secrets=https://…` fetches.
//! - A per-node initrd: a newc cpio holding `rustlive/secrets.json` (0600), gzip-compressed.
//!   The compression is what lets it follow ANY initramfs with a plain `cat`: the kernel's
//!   `unpack_to_rootfs()` (init/initramfs.c) recognises an uncompressed cpio header only at a
//!   4-byte boundary (`!(this_header & 3)`), but at any other byte it looks for a compression
//!   magic (`decompress_method()`). Dracut's initramfs is compressed and its length is rarely a
//!   multiple of 4, so a plain cpio after it is "invalid magic at start of compressed archive"
//!   and the node boots without its secrets; a gzip stream is found wherever it starts. iPXE
//!   pads each initrd to 4 bytes anyway, so the same file works there too.
//!
//! Same JSON, same bytes: the cpio writer is deterministic ([`crate::server::cpio`]) and the gzip header
//! carries no name and mtime 0.

use super::error::BuildError;
use crate::server::cpio::Archive;
use crate::server::safe_file::Dir;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where the node looks for a bundle inside its initramfs (`/rustlive/secrets.json`).
pub const CPIO_ENTRY: &str = "rustlive/secrets.json";

/// Which form `-o FILE` asks for, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    /// `.cpio` or `.cpio.gz`: gzip'ed either way (see the module doc).
    Cpio,
}

impl Kind {
    pub fn of(path: &Path) -> Result<Kind, BuildError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".json") {
            Ok(Kind::Json)
        } else if name.ends_with(".cpio") || name.ends_with(".cpio.gz") {
            Ok(Kind::Cpio)
        } else {
            Err(BuildError::OutputKind(path.to_path_buf()))
        }
    }
}

/// The bytes of `kind` for a bundle's JSON.
pub fn render(json: &[u8], kind: Kind) -> Result<Zeroizing<Vec<u8>>, BuildError> {
    match kind {
        Kind::Json => Ok(Zeroizing::new(json.to_vec())),
        Kind::Cpio => cpio_gz(json),
    }
}

/// The gzip'ed newc cpio holding `rustlive/secrets.json` (0600) and its directory (0755).
pub fn cpio_gz(json: &[u8]) -> Result<Zeroizing<Vec<u8>>, BuildError> {
    let mut a = Archive::new();
    let io = |e: std::io::Error| BuildError::Write {
        path: PathBuf::from(CPIO_ENTRY),
        source: e,
    };
    a.file(CPIO_ENTRY, 0o600, json.to_vec())
        .map_err(|e| io(std::io::Error::other(e)))?;
    // The archive is small (1 MiB at most): one buffer, sized once.
    let mut out = Zeroizing::new(Vec::with_capacity(json.len().saturating_add(1024)));
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3) // Unix, fixed rather than whatever the build host is
        .write(&mut *out, flate2::Compression::best());
    write_archive(&a, &mut gz).map_err(io)?;
    gz.finish().map_err(io)?;
    Ok(out)
}

fn write_archive(a: &Archive, gz: &mut GzEncoder<&mut Vec<u8>>) -> std::io::Result<()> {
    a.write_to(gz)?;
    gz.flush()
}

/// Writes `bytes` to `path` (named by the operator) with mode 0600: a temporary created with
/// no permission bits beside it, filled, `fchmod`ed 0600 whatever the umask, synced, then renamed
/// over `path` ([`Dir::write`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let (dir, name) = Dir::open_parent_of(path)?;
    dir.write(&name, bytes, 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn output_kind_from_the_name() {
        let k = |s: &str| Kind::of(Path::new(s));
        assert_eq!(k("n1.json").unwrap(), Kind::Json);
        assert_eq!(k("www/n1.cpio").unwrap(), Kind::Cpio);
        assert_eq!(k("n1.cpio.gz").unwrap(), Kind::Cpio);
        assert!(matches!(k("n1.tar"), Err(BuildError::OutputKind(_))));
        assert_eq!(
            k("n1.tar").unwrap_err().exit_code(),
            crate::support::exit::Exit::Usage
        );
    }

    #[test]
    fn cpio_is_gzip_of_a_newc_archive_and_deterministic() {
        let json = br#"{"version": 1, "files": []}"#;
        let a = cpio_gz(json).unwrap();
        assert_eq!(a.as_slice(), cpio_gz(json).unwrap().as_slice());
        // gzip magic, deflate, no flags (no name), mtime 0, OS Unix.
        assert_eq!(&a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut plain)
            .unwrap();
        let mut expect = Archive::new();
        expect.file(CPIO_ENTRY, 0o600, json.to_vec()).unwrap();
        assert_eq!(plain, expect.to_bytes());
    }

    #[test]
    fn written_0600_and_replaced_atomically() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("n1.json");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
