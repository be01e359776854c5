//! Loading kernel modules without modprobe, for when rustlive is PID 1 and nothing (udev,
//! systemd, a shell) loads the drivers it needs: modules.dep gives each module's file and its
//! dependencies; `finit_module(2)` loads them, dependencies first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The modules assembling a root may need: loop devices, the image filesystems, overlayfs.
pub const ASSEMBLY_MODULES: &[&str] = &["loop", "squashfs", "erofs", "ext4", "isofs", "overlay"];

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst`/`.ko.gz` itself.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

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
        source: nix::errno::Errno,
    },
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

/// Loads each of `names` (with dependencies) that is neither built in nor loaded yet, from
/// `modules_dir` (`/lib/modules/$(uname -r)`). Each module is tried on its own: one that this
/// kernel or initramfs lacks is logged, not fatal (not every initramfs ships every
/// filesystem), and the stage that needs it reports the missing feature. Only an unreadable
/// modules.dep is an error.
pub fn load(modules_dir: &Path, names: &[&str]) -> Result<(), KmodError> {
    let read = |rel: &str| {
        let path = modules_dir.join(rel);
        std::fs::read_to_string(&path).map_err(|source| KmodError::Read { path, source })
    };
    let deps = ModulesDep::parse(&read("modules.dep")?);
    let builtin = read("modules.builtin")
        .map(|t| parse_builtin(&t))
        .unwrap_or_default();
    for name in names {
        if builtin.contains(*name) || Path::new("/sys/module").join(name).exists() {
            continue;
        }
        let files = match deps.load_order(&[name]) {
            Ok(f) => f,
            Err(e) => {
                log::debug!("{e}");
                continue;
            }
        };
        let loaded = files.iter().try_for_each(|rel| {
            let modname = module_name(rel);
            if builtin.contains(&modname) || Path::new("/sys/module").join(&modname).exists() {
                return Ok(());
            }
            insert(&modname, &modules_dir.join(rel))
        });
        match loaded {
            Ok(()) => {}
            Err(KmodError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                log::debug!("module {name} is not in this initramfs");
            }
            Err(e) => log::warn!("{}", crate::error::report(&e)),
        }
    }
    Ok(())
}

fn insert(name: &str, path: &Path) -> Result<(), KmodError> {
    let f = std::fs::File::open(path).map_err(|source| KmodError::Read {
        path: path.to_owned(),
        source,
    })?;
    let compressed = path
        .extension()
        .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
    let flags = if compressed {
        nix::kmod::ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    } else {
        nix::kmod::ModuleInitFlags::empty()
    };
    match nix::kmod::finit_module(&f, c"", flags) {
        Ok(()) => {
            log::info!("loaded kernel module {name}");
            Ok(())
        }
        // Loaded meanwhile (or built in under another name): what we wanted.
        Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(source) => Err(KmodError::Load {
            name: name.to_string(),
            path: path.to_owned(),
            source,
        }),
    }
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
