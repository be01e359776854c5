//! `rustlive initramfs`: the standalone netboot initramfs, built without dracut.
//!
//! A newc cpio (see [`crate::server::cpio`]) with rustlive as `/init`, the kernel modules a diskless node
//! needs (the image filesystems and the usual server NICs, with their dependencies and soft
//! pre-dependencies from the kernel's own `modules.dep`/`modules.softdep`), the module index
//! pruned to what is included, the firmware those modules declare, the CA bundle and minisign
//! keys, and optionally a static shell. Every input is read in a fixed order and the archive is
//! sorted with fixed owners and mtimes, so the same inputs give the same bytes.
//!
//! Files come through [`crate::server::safe_file`]: nothing is read from outside `--kmoddir`,
//! `--firmware-dir` or `--keys` (a link inside them is resolved there, and refused when it
//! leads out), every input is a regular file of bounded size (a FIFO or a device is refused
//! before it is opened), and the output is written through a temporary beside it
//! (`.FILE.<16 hex digits>.part`) renamed into place.

pub mod modinfo;

use crate::drivers::coldplug::NET_HINTS_FILE;
use crate::drivers::compressed::{self, decompressed_name, Compression, DecompressError};
use crate::drivers::kmod::{self, ModulesDep};
use crate::drivers::modalias::AliasTable;
use crate::server::cpio::{Archive, CpioError};
use crate::server::safe_file::{read_named, Dir, FileError, Limit};
use crate::sys::fs::FileType;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Server NIC drivers included by default (those this kernel has).
pub const NIC_MODULES: &[&str] = &[
    "virtio_net",
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "i40e",
    "ice",
    "bnxt_en",
    "tg3",
    "mlx4_en",
    "mlx5_core",
];

/// Bus drivers a NIC sits behind: without virtio_pci no virtio device ever appears.
/// Also: the TPM interface drivers, for sealed bundles (built into Debian's and Fedora's kernels,
/// modules elsewhere; loaded by their ACPI modalias like any other device's driver).
pub const BUS_MODULES: &[&str] = &["virtio_pci", "tpm_tis", "tpm_crb"];

/// What `vlan=`, `bond=` and IPoIB need besides a NIC driver: 802.1Q, bonding, and IPoIB with
/// the InfiniBand half of ConnectX-4 and later (whose mlx5_core is a NIC driver already). Older
/// HCAs (mlx4_ib) and Omni-Path (hfi1) come in by `--add-drivers`. Each is loaded only when
/// the command line or a device asks for it.
pub const LINK_MODULES: &[&str] = &["8021q", "bonding", "ib_ipoib", "mlx5_ib"];

/// Where the CA bundle goes and which host files provide it (the dracut module's defaults).
pub const CA_TARGET: &str = "etc/rustlive/ca.pem";
pub const CA_DEFAULTS: &[&str] = &[
    "/etc/rustlive/ca.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];
pub const KEYS_DEFAULT: &str = "/etc/rustlive/keys";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    Gzip,
    Zstd,
    Xz,
    None,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub kver: String,
    /// `lib/modules/KVER` of that kernel (dracut's `--kmoddir`).
    pub kmoddir: PathBuf,
    /// NIC drivers; [`NIC_MODULES`] unless replaced.
    pub net_drivers: Vec<String>,
    /// Extra modules: each must exist in that kernel (or be built in).
    pub add_drivers: Vec<String>,
    pub firmware_dir: PathBuf,
    /// The CA bundle; `None` takes the first of [`CA_DEFAULTS`] that exists.
    pub ca: Option<PathBuf>,
    pub keys: PathBuf,
    pub shell: Option<PathBuf>,
    pub compress: Compress,
    /// The rustlive binary that becomes `/init`.
    pub init: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module {0} (from --add-drivers) is neither in modules.dep nor built into kernel {1}")]
    UnknownModule(String, String),
    #[error("cannot add {path} to the archive")]
    Archive {
        path: String,
        #[source]
        source: CpioError,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decompress the kernel module {path}")]
    Decompress {
        path: PathBuf,
        #[source]
        source: DecompressError,
    },
    #[error("cannot compress the archive with {0:?}")]
    Compress(Compress, #[source] std::io::Error),
    #[error("{0} is not a static executable: the initramfs has no dynamic loader or libraries")]
    NotStatic(PathBuf),
    /// An input refused (a link out of its tree, not a regular file, over its limit) or a file
    /// that cannot be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// What went into an archive.
#[derive(Debug, Default)]
pub struct Report {
    /// Module names in load order.
    pub modules: Vec<String>,
    /// Requested modules that are built into the kernel.
    pub builtin: Vec<String>,
    /// Default modules this kernel does not have.
    pub absent: Vec<String>,
    /// Modules the kernel tree holds compressed, stored decompressed.
    pub decompressed: usize,
    pub firmware: Vec<String>,
    pub firmware_missing: Vec<String>,
    pub files: usize,
    pub cpio_bytes: u64,
    pub bytes: u64,
}

/// A file named on the command line (`--init`, `--shell`, `--ca`).
fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, BuildError> {
    Ok(read_named(path, limit)?.bytes.to_vec())
}

/// A file of a tree (the modules, the firmware, the keys), never from outside it; `None` when
/// absent.
fn read_in(tree: &Dir, rel: &Path, limit: Limit) -> Result<Option<Vec<u8>>, BuildError> {
    Ok(tree.read_resolving(rel, limit)?.map(|c| c.bytes.to_vec()))
}

/// [`read_in`] of a file that must be there.
fn read_needed(tree: &Dir, rel: &Path, limit: Limit) -> Result<Vec<u8>, BuildError> {
    read_in(tree, rel, limit)?.ok_or_else(|| BuildError::Read {
        path: tree.path().join(rel),
        source: std::io::ErrorKind::NotFound.into(),
    })
}
fn add(a: &mut Archive, path: &str, perm: u32, data: Vec<u8>) -> Result<(), BuildError> {
    a.file(path, perm, data)
        .map_err(|source| BuildError::Archive {
            path: path.to_string(),
            source,
        })
}

/// The kernel's module index, and which of its modules a build selects.
#[derive(Debug)]
pub struct Selection {
    /// Module files (relative to the modules directory), dependencies before users, each once.
    pub files: Vec<PathBuf>,
    pub builtin: Vec<String>,
    pub absent: Vec<String>,
}

/// Selects `wanted` (required: `--add-drivers`; optional: the default sets) with their
/// dependencies and soft pre-dependencies. Pure over the index texts.
pub fn select(
    dep_text: &str,
    builtin_text: &str,
    softdep_text: &str,
    alias_text: &str,
    optional: &[String],
    required: &[String],
    kver: &str,
) -> Result<Selection, BuildError> {
    let deps = ModulesDep::parse(dep_text);
    let builtin = kmod::parse_builtin(builtin_text);
    let softdeps = kmod::parse_softdeps(softdep_text);
    let aliases = kmod::parse_aliases(alias_text);
    let mut sel = Selection {
        files: Vec::new(),
        builtin: Vec::new(),
        absent: Vec::new(),
    };
    let mut seen_files = BTreeSet::new();
    let mut done = BTreeSet::new();
    let mut state = SelectState {
        deps: &deps,
        builtin: &builtin,
        softdeps: &softdeps,
        aliases: &aliases,
        kver,
        seen_files: &mut seen_files,
        done: &mut done,
        sel: &mut sel,
    };
    for m in optional {
        state.add(m, false, 0)?;
    }
    for m in required {
        state.add(m, true, 0)?;
    }
    Ok(sel)
}

struct SelectState<'a> {
    deps: &'a ModulesDep,
    builtin: &'a std::collections::HashSet<String>,
    softdeps: &'a std::collections::HashMap<String, Vec<String>>,
    aliases: &'a std::collections::HashMap<String, Vec<String>>,
    kver: &'a str,
    seen_files: &'a mut BTreeSet<PathBuf>,
    done: &'a mut BTreeSet<String>,
    sel: &'a mut Selection,
}

impl SelectState<'_> {
    /// Adds `name`: its soft pre-dependencies, then its dependencies, then itself. `depth`
    /// bounds softdep chains (they may form cycles; `done` also ends those).
    fn add(&mut self, name: &str, required: bool, depth: u32) -> Result<(), BuildError> {
        let name = name.replace('-', "_");
        if depth > 8 || !self.done.insert(name.clone()) {
            return Ok(());
        }
        if self.builtin.contains(&name) {
            self.sel.builtin.push(name);
            return Ok(());
        }
        let files = match self.deps.load_order(&[&name]) {
            Ok(f) => f,
            Err(_) if required => {
                return Err(BuildError::UnknownModule(name, self.kver.to_string()));
            }
            Err(_) => {
                self.sel.absent.push(name);
                return Ok(());
            }
        };
        for f in &files {
            let pre = self
                .softdeps
                .get(&kmod::module_name(f))
                .cloned()
                .unwrap_or_default();
            for p in pre {
                // `crypto-crc32c` names alternatives through modules.alias.
                let alts = self
                    .aliases
                    .get(&p)
                    .cloned()
                    .unwrap_or_else(|| vec![p.clone()]);
                for c in alts {
                    self.add(&c, false, depth.saturating_add(1))?;
                }
            }
        }
        for f in files {
            if self.seen_files.insert(f.clone()) {
                self.sel.files.push(f);
            }
        }
        Ok(())
    }
}

/// Only the `modules.dep` lines of included files, every path under the name the module has
/// in the archive (decompressed: `e1000.ko.xz` → `e1000.ko`, in the dependencies too).
fn prune_dep(text: &str, files: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for (file, deps) in text.lines().filter_map(|l| l.split_once(':')) {
        let file = file.trim();
        if !files.contains(file) {
            continue;
        }
        out.push_str(decompressed_name(file));
        out.push(':');
        for d in deps.split_whitespace() {
            out.push(' ');
            out.push_str(decompressed_name(d));
        }
        out.push('\n');
    }
    out
}

fn prune_softdep(text: &str, names: &BTreeSet<String>) -> String {
    text.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("softdep")
                && w.next()
                    .is_some_and(|n| names.contains(&n.replace('-', "_")))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Builds the archive in memory and returns it with its report (uncompressed).
pub fn build_archive(opts: &Options) -> Result<(Archive, Report), BuildError> {
    let k = Dir::open(&opts.kmoddir)?;
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let dep_text = text(read_needed(
        &k,
        Path::new("modules.dep"),
        Limit::MODULE_INDEX,
    )?);
    let opt_text = |name: &str| -> Result<String, BuildError> {
        Ok(read_in(&k, Path::new(name), Limit::MODULE_INDEX)?
            .map(text)
            .unwrap_or_default())
    };
    let builtin_text = opt_text("modules.builtin")?;
    let softdep_text = opt_text("modules.softdep")?;
    let alias_text = opt_text("modules.alias")?;

    let optional: Vec<String> = kmod::ASSEMBLY_MODULES
        .iter()
        .chain(BUS_MODULES)
        .chain(LINK_MODULES)
        .map(|s| s.to_string())
        .chain(opts.net_drivers.iter().cloned())
        .collect();
    let sel = select(
        &dep_text,
        &builtin_text,
        &softdep_text,
        &alias_text,
        &optional,
        &opts.add_drivers,
        &opts.kver,
    )?;

    let mut a = Archive::new();
    let mut report = Report {
        builtin: sel.builtin.clone(),
        absent: sel.absent.clone(),
        ..Report::default()
    };
    let init = read(&opts.init, Limit::PROGRAM)?;
    if !is_static_elf(&init) {
        return Err(BuildError::NotStatic(opts.init.clone()));
    }
    add(&mut a, "init", 0o755, init)?;
    for d in ["dev", "proc", "sys", "run", "sysroot", "tmp", "etc", "root"] {
        a.dir(d, 0o755).map_err(|source| BuildError::Archive {
            path: d.into(),
            source,
        })?;
    }
    // The kernel opens /dev/console for init's fds 0-2 before anything mounts devtmpfs.
    a.char_dev("dev/console", 0o600, 5, 1)
        .map_err(|source| BuildError::Archive {
            path: "dev/console".into(),
            source,
        })?;

    let mdir = format!("lib/modules/{}", opts.kver);
    let mut names = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut firmware = BTreeSet::new();
    for f in &sel.files {
        let rel = f.to_string_lossy().into_owned();
        let bytes = read_needed(&k, f, Limit::MODULE)?;
        // Stored decompressed, as dracut does: a kernel without in-kernel decompression
        // (before 5.17, or without CONFIG_MODULE_DECOMPRESS) can load it, and the archive's
        // own compression then does better than on already-compressed files.
        let elf = match Compression::of(&rel) {
            Some(c) => {
                report.decompressed = report.decompressed.saturating_add(1);
                compressed::decompress(c, &bytes, compressed::MAX_MODULE_BYTES).map_err(
                    |source| BuildError::Decompress {
                        path: k.path().join(f),
                        source,
                    },
                )?
            }
            None => bytes,
        };
        match modinfo::firmware(&elf) {
            Ok(fw) => firmware.extend(fw),
            Err(e) => log::warn!("cannot read the firmware list of {rel}: {e}"),
        }
        add(
            &mut a,
            &format!("{mdir}/{}", decompressed_name(&rel)),
            0o644,
            elf,
        )?;
        names.insert(kmod::module_name(f));
        report.modules.push(kmod::module_name(f));
        files.insert(rel);
    }
    let aliases = AliasTable::parse(&alias_text);
    add(
        &mut a,
        &format!("{mdir}/modules.dep"),
        0o644,
        prune_dep(&dep_text, &files).into_bytes(),
    )?;
    add(
        &mut a,
        &format!("{mdir}/modules.alias"),
        0o644,
        aliases.pruned_text(&|m| names.contains(m)).into_bytes(),
    )?;
    add(
        &mut a,
        &format!("{mdir}/modules.softdep"),
        0o644,
        prune_softdep(&softdep_text, &names).into_bytes(),
    )?;
    add(
        &mut a,
        &format!("{mdir}/modules.builtin"),
        0o644,
        builtin_text.into_bytes(),
    )?;
    let net_modules: BTreeSet<String> = dep_text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(f, _)| f))
        .filter(|f| f.starts_with("kernel/drivers/net/"))
        .map(|f| kmod::module_name(Path::new(f)))
        .filter(|m| !names.contains(m))
        .collect();
    let hints: String = aliases
        .pruned_text(&|m| net_modules.contains(m))
        .lines()
        .filter(|l| l.starts_with("alias pci:"))
        .map(|l| format!("{l}\n"))
        .collect();
    add(
        &mut a,
        &format!("{mdir}/{NET_HINTS_FILE}"),
        0o644,
        hints.into_bytes(),
    )?;

    let fw_dir = Dir::try_open(&opts.firmware_dir)?;
    for fw in firmware {
        let mut found = None;
        for ext in ["", ".zst", ".xz"] {
            let name = format!("{fw}{ext}");
            let Some(dir) = &fw_dir else {
                break;
            };
            if let Some(b) = read_in(dir, Path::new(&name), Limit::FIRMWARE)? {
                found = Some((name, b));
                break;
            }
        }
        match found {
            Some((name, bytes)) => {
                add(&mut a, &format!("lib/firmware/{name}"), 0o644, bytes)?;
                report.firmware.push(name);
            }
            None => report.firmware_missing.push(fw),
        }
    }

    let ca = match &opts.ca {
        Some(p) => Some(p.clone()),
        None => CA_DEFAULTS.iter().map(PathBuf::from).find(|p| p.is_file()),
    };
    if let Some(ca) = ca {
        add(&mut a, CA_TARGET, 0o644, read(&ca, Limit::CA)?)?;
    }
    // The image-signing keys, and in `sealed/` the keys that sign sealed secrets bundles.
    let top = Dir::try_open(&opts.keys)?;
    let sealed = match &top {
        Some(dir) => dir.dir_at(Path::new("sealed"))?,
        None => None,
    };
    for (dir, to) in [
        (top, "etc/rustlive/keys"),
        (sealed, "etc/rustlive/keys/sealed"),
    ] {
        let Some(dir) = dir else { continue };
        let mut keys: Vec<_> = dir
            .names()?
            .into_iter()
            .filter(|n| Path::new(n).extension().is_some_and(|e| e == "pub"))
            .collect();
        keys.sort();
        for key in keys {
            // A directory named *.pub is not a key; anything else must be a regular file.
            if dir.kind(&key)? == Some(FileType::Directory) {
                continue;
            }
            let bytes = read_needed(&dir, Path::new(&key), Limit::KEY)?;
            add(
                &mut a,
                &format!("{to}/{}", key.to_string_lossy()),
                0o644,
                bytes,
            )?;
        }
    }
    if let Some(sh) = &opts.shell {
        let bytes = read(sh, Limit::PROGRAM)?;
        if !is_static_elf(&bytes) {
            return Err(BuildError::NotStatic(sh.clone()));
        }
        add(&mut a, "bin/sh", 0o755, bytes)?;
    }
    report.files = a.paths().count();
    Ok((a, report))
}

/// Builds the initramfs and writes it to `out`, mode 0644: through a temporary beside it
/// (`.FILE.<16 hex digits>.part`, created `O_EXCL|O_NOFOLLOW`), renamed when whole.
pub fn build(opts: &Options, out: &Path) -> Result<Report, BuildError> {
    let (archive, mut report) = build_archive(opts)?;
    let cpio = archive.to_bytes();
    report.cpio_bytes = cpio.len() as u64;
    let bytes =
        compress(&cpio, opts.compress).map_err(|e| BuildError::Compress(opts.compress, e))?;
    report.bytes = bytes.len() as u64;
    let (dir, name) = Dir::open_parent_of(out)?;
    dir.write(&name, &bytes, 0o644)?;
    Ok(report)
}

/// The compressed archive. Every encoder here is deterministic (gzip without a name or mtime).
pub fn compress(data: &[u8], how: Compress) -> std::io::Result<Vec<u8>> {
    match how {
        Compress::None => Ok(data.to_vec()),
        Compress::Gzip => {
            let mut e = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            e.write_all(data)?;
            e.finish()
        }
        // dracut's default for this kernel; -15 is dracut's level too.
        Compress::Zstd => zstd::stream::encode_all(data, 15),
        Compress::Xz => {
            // The kernel's XZ decoder checks CRC32 only (as `xz --check=crc32` writes).
            let stream = xz2::stream::Stream::new_easy_encoder(6, xz2::stream::Check::Crc32)?;
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(data)?;
            e.finish()
        }
    }
}

/// An ELF executable with no `PT_INTERP` program header (no dynamic loader needed).
pub fn is_static_elf(b: &[u8]) -> bool {
    if b.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let rd = |off: usize, n: usize| -> Option<u64> {
        let s = b.get(off..off.checked_add(n)?)?;
        let mut v = [0u8; 8];
        v.get_mut(..n)?.copy_from_slice(s);
        Some(u64::from_le_bytes(v))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    else {
        return false;
    };
    const PT_INTERP: u64 = 3;
    (0..phnum).all(|i| {
        let off = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok());
        off.and_then(|o| rd(o, 4)).is_some_and(|t| t != PT_INTERP)
    })
}

/// The modules directory for `kver` on the build host.
pub fn default_kmoddir(kver: &str) -> PathBuf {
    Path::new("/lib/modules").join(kver)
}

/// Which files a report groups by kind, for one summary line.
pub fn summary(r: &Report, out: &Path) -> String {
    let mut by_dir: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &r.modules {
        let n = by_dir
            .entry(
                if crate::server::initramfs::NIC_MODULES.contains(&m.as_str()) {
                    "nic"
                } else {
                    "other"
                },
            )
            .or_default();
        *n = n.saturating_add(1);
    }
    format!(
        "wrote {}: {} bytes ({} bytes uncompressed, {} files); {} modules ({} NIC drivers{}), {} firmware files{}{}",
        out.display(),
        r.bytes,
        r.cpio_bytes,
        r.files,
        r.modules.len(),
        by_dir.get("nic").copied().unwrap_or(0),
        if r.decompressed == 0 {
            String::new()
        } else {
            format!("; {} stored decompressed", r.decompressed)
        },
        r.firmware.len(),
        missing_firmware(&r.firmware_missing),
        if r.absent.is_empty() {
            String::new()
        } else {
            format!("; not in this kernel: {}", r.absent.join(", "))
        }
    )
}

/// The summary's note on firmware the modules declare that the firmware directory lacks: the
/// first [`MISSING_SHOWN`] names (escaped: they come from the modules), then how many more.
fn missing_firmware(missing: &[String]) -> String {
    if missing.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = missing
        .iter()
        .take(MISSING_SHOWN)
        .map(|f| crate::support::log::escaped(f))
        .collect();
    let more = missing.len().saturating_sub(MISSING_SHOWN);
    format!(
        " ({} declared but not in the firmware directory: {}{})",
        missing.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// How many missing firmware files the summary names.
const MISSING_SHOWN: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_firmware_is_named_up_to_ten() {
        assert_eq!(missing_firmware(&[]), "");
        let two = strs(&["i915/tgl_dmc.bin", "bnx2x/x\n.fw"]);
        assert_eq!(
            missing_firmware(&two),
            " (2 declared but not in the firmware directory: i915/tgl_dmc.bin, bnx2x/x\\x0a.fw)"
        );
        let many: Vec<String> = (0..13).map(|i| format!("f{i}.bin")).collect();
        let s = missing_firmware(&many);
        assert!(
            s.starts_with(" (13 declared but not in the firmware directory: f0.bin, "),
            "{s}"
        );
        assert!(s.ends_with("f9.bin and 3 more)"), "{s}");
        assert!(!s.contains("f10.bin"), "{s}");
    }

    const DEP: &str = include_str!("../../drivers/testdata/modules.dep");
    const ALIAS: &str = include_str!("../../drivers/testdata/modules.alias");
    const SOFTDEP: &str = "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n";

    fn names(s: &Selection) -> Vec<String> {
        s.files.iter().map(|f| kmod::module_name(f)).collect()
    }
    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_first_each_once_from_the_real_modules_dep() {
        let s = select(
            DEP,
            "",
            "",
            "",
            &strs(&["virtio_net", "virtio_pci", "ixgbe", "igb"]),
            &[],
            "k",
        )
        .unwrap();
        let n = names(&s);
        let pos = |m: &str| {
            n.iter()
                .position(|x| x == m)
                .unwrap_or_else(|| panic!("{m} in {n:?}"))
        };
        assert!(pos("virtio_ring") < pos("virtio") && pos("virtio") < pos("virtio_net"));
        assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
        assert!(pos("virtio_pci_modern_dev") < pos("virtio_pci"));
        assert!(pos("libphy") < pos("mdio_devres") && pos("mdio_devres") < pos("ixgbe"));
        assert!(pos("dca") < pos("ixgbe") && pos("dca") < pos("igb"));
        let mut sorted = n.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), n.len(), "each module once: {n:?}");
    }

    #[test]
    fn softdeps_builtins_and_absent_modules() {
        let s = select(
            DEP,
            "kernel/drivers/block/loop.ko\n",
            SOFTDEP,
            ALIAS,
            &strs(&["loop", "ext4", "nosuch_nic"]),
            &[],
            "k",
        )
        .unwrap();
        let n = names(&s);
        assert_eq!(s.builtin, ["loop"]);
        assert_eq!(s.absent, ["nosuch_nic"]);
        // crypto-crc32c resolves through modules.alias to the modules that provide it.
        assert!(n.contains(&"crc32c_generic".to_string()), "{n:?}");
        assert!(n.contains(&"ext4".to_string()));
        let e = select(DEP, "", "", "", &[], &strs(&["nosuch"]), "6.1.0-x").unwrap_err();
        assert!(
            e.to_string().contains("nosuch") && e.to_string().contains("6.1.0-x"),
            "{e}"
        );
    }

    #[test]
    fn pruned_index_keeps_only_included_lines() {
        let files: BTreeSet<String> =
            ["kernel/drivers/net/ethernet/intel/e1000/e1000.ko".to_string()].into();
        assert_eq!(
            prune_dep(DEP, &files),
            "kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n"
        );
        // A compressed tree's lines name the files as the archive stores them: decompressed.
        let packed = "kernel/a/x.ko.xz: kernel/b/y.ko.zst kernel/c/z.ko\nkernel/b/y.ko.zst:\nkernel/d/w.ko.gz:\n";
        let files: BTreeSet<String> = [
            "kernel/a/x.ko.xz".to_string(),
            "kernel/b/y.ko.zst".to_string(),
        ]
        .into();
        assert_eq!(
            prune_dep(packed, &files),
            "kernel/a/x.ko: kernel/b/y.ko kernel/c/z.ko\nkernel/b/y.ko:\n"
        );
        let names: BTreeSet<String> = ["ext4".to_string()].into();
        assert_eq!(
            prune_softdep(SOFTDEP, &names),
            "softdep ext4 pre: crypto-crc32c\n"
        );
    }

    #[test]
    fn static_elf_detection() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        // Test binaries link dynamically against the host libc unless built for musl.
        let dynamic = me.windows(11).any(|w| w == b"ld-linux-x8");
        assert_eq!(is_static_elf(&me), !dynamic);
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&me[..0x30]));
    }

    #[test]
    fn compression_is_deterministic_and_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for how in [Compress::Gzip, Compress::Zstd, Compress::Xz, Compress::None] {
            let a = compress(&data, how).unwrap();
            assert_eq!(a, compress(&data, how).unwrap(), "{how:?}");
            let back = match how {
                Compress::Gzip => {
                    let mut o = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut o)
                        .unwrap();
                    o
                }
                Compress::Zstd => zstd::stream::decode_all(&a[..]).unwrap(),
                Compress::Xz => {
                    let mut o = Vec::new();
                    std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&a[..]), &mut o)
                        .unwrap();
                    o
                }
                Compress::None => a.clone(),
            };
            assert_eq!(back, data, "{how:?}");
        }
    }
}
