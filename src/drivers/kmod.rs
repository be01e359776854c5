//! Loading kernel modules without modprobe, for when rustlive is PID 1 and nothing (udev,
//! systemd, a shell) loads the drivers it needs: modules.dep gives each module's file and its
//! dependencies; `finit_module(2)` loads them, dependencies first. A compressed module the
//! kernel refuses (no in-kernel decompression: before 5.17, or built without
//! `CONFIG_MODULE_DECOMPRESS`) is decompressed here and loaded with `init_module(2)`.

use crate::drivers::compressed::{self, Compression, DecompressError};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The modules assembling a root may need: loop devices, the image filesystems, overlayfs.
pub const ASSEMBLY_MODULES: &[&str] = &["loop", "squashfs", "erofs", "ext4", "isofs", "overlay"];

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("cannot load module {name} from {path}")]
    Load {
        name: String,
        path: PathBuf,
        #[source]
        source: crate::sys::Errno,
    },
    #[error("cannot decompress module {name} from {path}, which the kernel refused compressed")]
    Decompress {
        name: String,
        path: PathBuf,
        #[source]
        source: DecompressError,
    },
    #[error("cannot load module {name} from {path}, decompressed by rustlive since the kernel refused it compressed")]
    LoadDecompressed {
        name: String,
        path: PathBuf,
        #[source]
        source: crate::sys::Errno,
    },
}

/// A module that was asked for and did not load, with the reason (the module that failed may
/// be one of its dependencies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The name asked for (`e1000`).
    pub requested: String,
    /// Why, in one line: which module file, which error.
    pub reason: String,
}

/// What [`load`] did.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Modules loaded, dependencies included, in load order.
    pub loaded: Vec<String>,
    /// Modules asked for that this kernel has and the initramfs holds, but that did not load.
    pub failed: Vec<Failure>,
}

/// The contents of `modules.dep`: module name → (file, dependency files), paths relative to
/// the modules directory.
#[derive(Debug, Default)]
pub struct ModulesDep {
    by_name: HashMap<String, (PathBuf, Vec<PathBuf>)>,
}

/// The module name of a file: `kernel/fs/overlayfs/overlay.ko.xz` → `overlay`; dashes become
/// underscores as in `/sys/module`.
pub fn module_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let stem = file.split(".ko").next().unwrap_or(&file);
    stem.replace('-', "_")
}

impl ModulesDep {
    pub fn parse(text: &str) -> Self {
        let mut by_name = HashMap::new();
        for line in text.lines() {
            let Some((file, deps)) = line.split_once(':') else {
                continue;
            };
            let file = PathBuf::from(file.trim());
            let deps = deps.split_whitespace().map(PathBuf::from).collect();
            by_name.insert(module_name(&file), (file, deps));
        }
        ModulesDep { by_name }
    }

    /// Files to load for `names`, each dependency before its users, without repeats.
    /// depmod lists a module's dependencies transitively with the deepest last, so they load
    /// in reverse order (as modprobe does).
    pub fn load_order(&self, names: &[&str]) -> Result<Vec<PathBuf>, KmodError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for name in names {
            let name = name.replace('-', "_");
            let (file, deps) = self
                .by_name
                .get(&name)
                .ok_or_else(|| KmodError::Unknown(name.clone()))?;
            for f in deps.iter().rev().chain(std::iter::once(file)) {
                if seen.insert(f.clone()) {
                    out.push(f.clone());
                }
            }
        }
        Ok(out)
    }
}

/// Names of the modules built into the kernel, from `modules.builtin`.
pub fn parse_builtin(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| module_name(Path::new(l.trim())))
        .collect()
}

/// `softdep NAME pre: A B …` lines of `modules.softdep`: what must be loaded before NAME even
/// though no symbol says so (ext4 and jbd2 need `crypto-crc32c`). Post-dependencies are not
/// needed to mount anything and are ignored.
pub fn parse_softdeps(text: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(name) = words.next() else { continue };
        let mut pre = Vec::new();
        let mut in_pre = false;
        for w in words {
            match w {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                _ if in_pre => pre.push(w.to_string()),
                _ => {}
            }
        }
        out.insert(name.replace('-', "_"), pre);
    }
    out
}

/// `alias NAME MODULE` lines of `modules.alias` without wildcards (device aliases have them;
/// the ones a softdep names, like `crypto-crc32c`, do not).
pub fn parse_aliases(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("alias"), Some(alias), Some(module)) =
            (words.next(), words.next(), words.next())
        {
            if !alias.contains(['*', '?', '[']) {
                out.entry(alias.to_string())
                    .or_default()
                    .push(module.replace('-', "_"));
            }
        }
    }
    out
}

/// The module index of one kernel, and what has been loaded from it.
struct Loader<'a> {
    dir: &'a Path,
    deps: ModulesDep,
    builtin: HashSet<String>,
    softdeps: HashMap<String, Vec<String>>,
    aliases: HashMap<String, Vec<String>>,
    done: HashSet<String>,
    /// In load order, for one summary line (kmsg rate-limits a line per module).
    loaded: Vec<String>,
    /// Cleared by the first compressed module the kernel refuses and rustlive then loads
    /// decompressed: the later ones skip the kernel's attempt.
    kernel_decompresses: bool,
}

impl Loader<'_> {
    fn present(&self, name: &str) -> bool {
        self.done.contains(name)
            || self.builtin.contains(name)
            || Path::new("/sys/module").join(name).exists()
    }

    /// Loads `name`, its soft pre-dependencies and its dependencies.
    fn load(&mut self, name: &str) -> Result<(), KmodError> {
        let name = name.replace('-', "_");
        if self.present(&name) {
            return Ok(());
        }
        for files in self.deps.load_order(&[&name])? {
            let modname = module_name(&files);
            if self.present(&modname) {
                continue;
            }
            self.soft_pre(&modname);
            self.insert(&modname, &self.dir.join(&files))?;
            self.done.insert(modname.clone());
            self.loaded.push(modname);
        }
        Ok(())
    }

    /// Best effort: a softdep names alternatives (crc32c_intel needs SSE4.2, crc32c_generic
    /// works everywhere), so each is tried and failures are only logged.
    fn soft_pre(&mut self, name: &str) {
        let Some(pre) = self.softdeps.get(name).cloned() else {
            return;
        };
        // Marked first so that a softdep cycle ends.
        self.done.insert(name.to_string());
        for p in pre {
            let candidates = self
                .aliases
                .get(&p)
                .cloned()
                .unwrap_or_else(|| vec![p.clone()]);
            for c in candidates {
                if let Err(e) = self.load(&c) {
                    log::debug!(
                        "soft dependency {c} of {name}: {}",
                        crate::support::exit::report(&e)
                    );
                }
            }
        }
        self.done.remove(name);
    }
}

/// `/lib/modules/$(uname -r)`: the running kernel's modules.
pub fn modules_dir() -> Result<PathBuf, KmodError> {
    let path = PathBuf::from("/proc/sys/kernel/osrelease");
    match std::fs::read_to_string(&path) {
        Ok(release) => Ok(Path::new("/lib/modules").join(release.trim())),
        Err(source) => Err(KmodError::Read { path, source }),
    }
}

/// Loads each of `names` (with dependencies) that is neither built in nor loaded yet, from
/// `modules_dir` (`/lib/modules/$(uname -r)`). Each module is tried on its own: one that this
/// kernel or initramfs lacks is logged, not fatal (not every initramfs ships every
/// filesystem), and the stage that needs it reports the missing feature; one that is there but
/// does not load is logged as a warning and returned in [`Loaded::failed`]. Only an unreadable
/// modules.dep is an error.
pub fn load(modules_dir: &Path, names: &[&str]) -> Result<Loaded, KmodError> {
    let read = |rel: &str| {
        let path = modules_dir.join(rel);
        std::fs::read_to_string(&path).map_err(|source| KmodError::Read { path, source })
    };
    let optional = |rel: &str| read(rel).unwrap_or_default();
    let mut loader = Loader {
        dir: modules_dir,
        deps: ModulesDep::parse(&read("modules.dep")?),
        builtin: parse_builtin(&optional("modules.builtin")),
        softdeps: parse_softdeps(&optional("modules.softdep")),
        aliases: parse_aliases(&optional("modules.alias")),
        done: HashSet::new(),
        loaded: Vec::new(),
        kernel_decompresses: true,
    };
    let mut failed = Vec::new();
    for name in names {
        match loader.load(name) {
            Ok(()) => {}
            Err(KmodError::Unknown(_)) => log::debug!("this kernel has no module {name}"),
            Err(KmodError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                log::debug!("module {name} is not in this initramfs");
            }
            Err(e) => {
                let reason = crate::support::exit::report(&e);
                log::warn!("{reason}");
                failed.push(Failure {
                    requested: name.replace('-', "_"),
                    reason,
                });
            }
        }
    }
    if !loader.loaded.is_empty() {
        log::info!("loaded kernel modules: {}", loader.loaded.join(", "));
    }
    Ok(Loaded {
        loaded: loader.loaded,
        failed,
    })
}

/// At most this many bytes of a compressed module are read (its decompressed image is
/// capped the same way).
const MAX_COMPRESSED_BYTES: u64 = compressed::MAX_MODULE_BYTES;

impl Loader<'_> {
    /// Loads one module file: `finit_module`, asking the kernel to decompress a compressed
    /// one; when it cannot, rustlive decompresses and uses `init_module`.
    fn insert(&mut self, name: &str, path: &Path) -> Result<(), KmodError> {
        let f = std::fs::File::open(path).map_err(|source| KmodError::Read {
            path: path.to_owned(),
            source,
        })?;
        let loaded = |how: Result<(), crate::sys::Errno>| match how {
            // Loaded meanwhile (or built in under another name): what we wanted.
            Ok(()) | Err(crate::sys::Errno::EXIST) => {
                log::debug!("loaded kernel module {name}");
                Ok(())
            }
            Err(e) => Err(e),
        };
        let load_error = |source| KmodError::Load {
            name: name.to_string(),
            path: path.to_owned(),
            source,
        };
        let Some(c) = path.to_str().and_then(Compression::of) else {
            return loaded(crate::sys::module::load(&f, false)).map_err(load_error);
        };
        let refused = if self.kernel_decompresses {
            match loaded(crate::sys::module::load(&f, true)) {
                Ok(_) => return Ok(()),
                Err(e @ (crate::sys::Errno::OPNOTSUPP | crate::sys::Errno::INVAL)) => Some(e),
                Err(source) => return Err(load_error(source)),
            }
        } else {
            None
        };
        let image = read_decompressed(f, c).map_err(|e| match e {
            Unpacked::Read(source) => KmodError::Read {
                path: path.to_owned(),
                source,
            },
            Unpacked::Decompress(source) => KmodError::Decompress {
                name: name.to_string(),
                path: path.to_owned(),
                source,
            },
        })?;
        match crate::sys::module::load_image(&image) {
            Ok(()) | Err(crate::sys::Errno::EXIST) => {}
            Err(source) => {
                return Err(KmodError::LoadDecompressed {
                    name: name.to_string(),
                    path: path.to_owned(),
                    source,
                })
            }
        }
        if let Some(e) = refused {
            log::info!(
                "the kernel cannot decompress modules itself (it refused {name}.ko.{c}: {e}); rustlive decompresses them"
            );
            self.kernel_decompresses = false;
        }
        log::debug!("loaded kernel module {name} (decompressed by rustlive)");
        Ok(())
    }
}

enum Unpacked {
    Read(std::io::Error),
    Decompress(DecompressError),
}

/// The ELF image of the compressed module in `f`, both sizes bounded.
fn read_decompressed(f: std::fs::File, c: Compression) -> Result<Vec<u8>, Unpacked> {
    let mut packed = Vec::new();
    f.take(MAX_COMPRESSED_BYTES.saturating_add(1))
        .read_to_end(&mut packed)
        .map_err(Unpacked::Read)?;
    if u64::try_from(packed.len()).unwrap_or(u64::MAX) > MAX_COMPRESSED_BYTES {
        return Err(Unpacked::Decompress(DecompressError::TooLarge {
            limit: MAX_COMPRESSED_BYTES,
        }));
    }
    compressed::decompress(c, &packed, compressed::MAX_MODULE_BYTES).map_err(Unpacked::Decompress)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/squashfs/squashfs.ko:
kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/drivers/virtio/virtio-ring.ko.xz:
";

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name(Path::new("kernel/fs/overlayfs/overlay.ko")),
            "overlay"
        );
        assert_eq!(module_name(Path::new("a/virtio-ring.ko.xz")), "virtio_ring");
        assert_eq!(module_name(Path::new("kernel/fs/ext4/ext4.ko.zst")), "ext4");
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let d = ModulesDep::parse(DEP);
        let order = d.load_order(&["ext4", "squashfs", "jbd2"]).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(names, ["jbd2", "mbcache", "crc16", "ext4", "squashfs"]);
        assert_eq!(
            d.load_order(&["virtio-ring"]).unwrap(),
            [PathBuf::from("kernel/drivers/virtio/virtio-ring.ko.xz")]
        );
        assert!(matches!(
            d.load_order(&["nosuch"]),
            Err(KmodError::Unknown(n)) if n == "nosuch"
        ));
    }

    #[test]
    fn softdeps_and_aliases() {
        let soft = parse_softdeps(
            "# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep virtio-net pre: net_failover post: x y\n",
        );
        assert_eq!(soft["ext4"], ["crypto-crc32c"]);
        assert_eq!(soft["virtio_net"], ["net_failover"]);
        let aliases = parse_aliases(
            "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c-generic\nalias pci:v*d* e1000\n",
        );
        assert_eq!(aliases["crypto-crc32c"], ["crc32c_intel", "crc32c_generic"]);
        assert_eq!(aliases.len(), 1, "wildcard aliases are skipped");
    }

    #[test]
    fn builtin_names() {
        let b = parse_builtin("kernel/fs/ext4/ext4.ko\nkernel/drivers/block/loop.ko\n\n");
        assert!(b.contains("ext4") && b.contains("loop") && b.len() == 2);
    }

    #[test]
    fn missing_modules_dir_is_a_read_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(d.path(), &["loop"]),
            Err(KmodError::Read { .. })
        ));
    }
}
