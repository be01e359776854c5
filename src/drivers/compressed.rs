//! Kernel modules stored compressed (`.ko.xz`, `.ko.zst`, `.ko.gz`, as RHEL, Fedora, SUSE and
//! Debian 13 ship them): which compression a file name says, and the module's ELF image decoded
//! within a size cap. `rustlive initramfs` stores every module decompressed (as dracut does: a
//! kernel before 5.17, or one built without `CONFIG_MODULE_DECOMPRESS`, cannot load them, and
//! the archive compresses better); the node decodes one itself only when a module arrived
//! compressed anyway and the kernel refuses it.
//!
//! The decoders are those the builder already links for the initramfs's own compression
//! (liblzma through `xz2`, libzstd through `zstd`, miniz_oxide through `flate2`), so the node's
//! fallback costs no binary size.

use std::io::Read;

/// At most this many bytes decompressed: the largest modules (GPU drivers with debug info) are
/// tens of MiB; a file that inflates beyond this is refused rather than filling PID 1's memory.
pub const MAX_MODULE_BYTES: u64 = 128 * 1024 * 1024;

/// How a module file is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    /// `Some` for `….ko.xz`, `….ko.zst` and `….ko.gz`; `None` for a plain `….ko` (or anything
    /// else).
    pub fn of(name: &str) -> Option<Compression> {
        [
            (Compression::Xz, ".ko.xz"),
            (Compression::Zstd, ".ko.zst"),
            (Compression::Gzip, ".ko.gz"),
        ]
        .into_iter()
        .find(|(_, suffix)| name.ends_with(suffix))
        .map(|(c, _)| c)
    }

    /// The suffix after `.ko`, as `xz`'s, `zstd`'s and `gzip`'s command lines write it.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Xz => "xz",
            Compression::Zstd => "zst",
            Compression::Gzip => "gz",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// The name a module has once decompressed: `kernel/fs/ext4/ext4.ko.xz` → `kernel/fs/ext4/ext4.ko`;
/// any other name unchanged.
pub fn decompressed_name(name: &str) -> &str {
    match Compression::of(name) {
        Some(c) => name
            .len()
            .checked_sub(c.extension().len().saturating_add(1))
            .and_then(|end| name.get(..end))
            .unwrap_or(name),
        None => name,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("it is larger than {} MiB decompressed", .limit / (1024 * 1024))]
    TooLarge { limit: u64 },
    #[error("it is not valid {0} data")]
    Corrupt(Compression, #[source] std::io::Error),
}

/// The module image inside `data`, at most `limit` bytes. Concatenated streams (frames, gzip
/// members) are decoded as one, as the kernel and kmod do.
pub fn decompress(how: Compression, data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |e| DecompressError::Corrupt(how, e);
    let reader: Box<dyn Read + '_> = match how {
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(data)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(corrupt)?)
        }
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
    };
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if u64::try_from(out.len()).unwrap_or(u64::MAX) > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn xz(data: &[u8]) -> Vec<u8> {
        // What the kernel's `make modules_install` runs: xz --check=crc32 --lzma2=dict=1MiB.
        let mut opts = xz2::stream::LzmaOptions::new_preset(6).unwrap();
        opts.dict_size(1 << 20);
        let mut filters = xz2::stream::Filters::new();
        filters.lzma2(&opts);
        let stream =
            xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32).unwrap();
        let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    fn zst(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(Compression::of("a/e1000.ko.xz"), Some(Compression::Xz));
        assert_eq!(Compression::of("a/e1000.ko.zst"), Some(Compression::Zstd));
        assert_eq!(Compression::of("a/e1000.ko.gz"), Some(Compression::Gzip));
        assert_eq!(Compression::of("a/e1000.ko"), None);
        assert_eq!(Compression::of("a/firmware.bin.xz"), None);
        assert_eq!(
            decompressed_name("kernel/fs/ext4/ext4.ko.xz"),
            "kernel/fs/ext4/ext4.ko"
        );
        assert_eq!(decompressed_name("k/virtio-net.ko.zst"), "k/virtio-net.ko");
        assert_eq!(decompressed_name("k/tg3.ko.gz"), "k/tg3.ko");
        assert_eq!(decompressed_name("k/tg3.ko"), "k/tg3.ko");
        assert_eq!(decompressed_name(".ko.xz"), ".ko");
    }

    #[test]
    fn every_compression_round_trips_and_concatenated_streams_decode_whole() {
        let module: Vec<u8> = b"\x7fELF\x02\x01"
            .iter()
            .copied()
            .chain((0..200_000u32).map(|i| (i % 253) as u8))
            .collect();
        for (how, packed) in [
            (Compression::Xz, xz(&module)),
            (Compression::Zstd, zst(&module)),
            (Compression::Gzip, gz(&module)),
        ] {
            assert_eq!(
                decompress(how, &packed, MAX_MODULE_BYTES).unwrap(),
                module,
                "{how}"
            );
            let (a, b) = module.split_at(1000);
            let (pa, pb) = match how {
                Compression::Xz => (xz(a), xz(b)),
                Compression::Zstd => (zst(a), zst(b)),
                Compression::Gzip => (gz(a), gz(b)),
            };
            let two = [pa, pb].concat();
            assert_eq!(
                decompress(how, &two, MAX_MODULE_BYTES).unwrap(),
                module,
                "{how}"
            );
        }
    }

    #[test]
    fn the_cap_and_corrupt_data_are_errors() {
        let big = vec![0u8; 1 << 20];
        for (how, packed) in [
            (Compression::Xz, xz(&big)),
            (Compression::Zstd, zst(&big)),
            (Compression::Gzip, gz(&big)),
        ] {
            assert!(
                decompress(how, &packed, 1 << 20).is_ok(),
                "{how}: exactly the cap"
            );
            let e = decompress(how, &packed, (1 << 20) - 1).unwrap_err();
            assert!(matches!(e, DecompressError::TooLarge { .. }), "{how}: {e}");
            let half = packed.get(..packed.len() / 2).unwrap();
            let e = decompress(how, half, MAX_MODULE_BYTES).unwrap_err();
            assert!(
                matches!(e, DecompressError::Corrupt(h, _) if h == how),
                "{how}: {e}"
            );
            assert!(e.to_string().contains(how.extension()), "{e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for how in [Compression::Xz, Compression::Zstd, Compression::Gzip] {
                let _ = decompress(how, &data, 4096);
            }
        }

        #[test]
        fn names_never_panic_and_only_strip_a_compression_suffix(name in ".{0,40}") {
            let short = decompressed_name(&name);
            prop_assert!(name.starts_with(short));
            prop_assert_eq!(short == name, Compression::of(&name).is_none());
        }
    }
}
