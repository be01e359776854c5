//! Questions about a root filesystem seen from outside it (before switching into it): where a
//! path leads once symlinks are resolved inside that root, and whether the root can boot.

use crate::sys::walk::{Step, Walk};
use crate::sys::Errno;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Where the os-release file may be; systemd reads the first that exists.
pub const OS_RELEASE: &[&str] = &["etc/os-release", "usr/lib/os-release"];

/// Resolves `path` inside `root` as if `root` were `/`: absolute symlink targets and `..` stay
/// inside `root` (`/sbin/init -> /lib/systemd/systemd` must not resolve against the initramfs).
/// Returns the host path of the final file, which need not exist.
///
/// The walk is [`Walk`]'s, which never follows a symlink: each one met is read and its target
/// walked from here (or from `root`, when absolute), as the kernel's `RESOLVE_IN_ROOT` would.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    // Components still to walk, last one first so that a symlink's target can be pushed on.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    // Directories walked into, then perhaps one last name that is not a directory.
    let mut done: Vec<OsString> = Vec::new();
    let mut walk = match Walk::open(root) {
        Ok(w) => w,
        // No root at all: nothing in it is a symlink, the path is what it is.
        Err(Errno::NOENT) => {
            finish_lexically(&mut done, &mut todo);
            return Ok(joined(root, &done));
        }
        Err(e) => return Err(e.into()),
    };
    // The last of `done` is not a directory: only `..` may follow it.
    let mut at_file = false;
    let mut links: usize = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if done.pop().is_some() && !at_file {
                walk.up();
            }
            at_file = false;
            continue;
        }
        if at_file {
            return Err(Errno::NOTDIR.into());
        }
        match walk.step(&c)? {
            Step::Entered => done.push(c),
            Step::Symlink => {
                links = links.saturating_add(1);
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = walk.read_link(&c)?;
                if target.is_absolute() {
                    done.clear();
                    walk.to_start();
                }
                push_components(&mut todo, &target);
            }
            Step::NotDir(_) | Step::OtherFilesystem => {
                done.push(c);
                at_file = true;
            }
            // A missing component: the rest cannot be symlinks, so the path is what it is.
            Step::Missing => {
                done.push(c);
                finish_lexically(&mut done, &mut todo);
            }
        }
    }
    Ok(joined(root, &done))
}

/// Appends what is left of `todo` to `done`, `..` removing the last name.
fn finish_lexically(done: &mut Vec<OsString>, todo: &mut Vec<OsString>) {
    while let Some(rest) = todo.pop() {
        if rest == ".." {
            done.pop();
        } else {
            done.push(rest);
        }
    }
}

fn joined(root: &Path, done: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(done);
    out
}

fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let comps: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(comps.into_iter().rev());
}

/// Why a root cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum NotBootable {
    #[error(
        "the new root has no init {init} (set rd.rustlive.init= or init= if it lives elsewhere)"
    )]
    NoInit { init: PathBuf },
    #[error("init {init} in the new root is not an executable file")]
    InitNotExecutable { init: PathBuf },
    #[error("the new root has no os-release file (/etc/os-release or /usr/lib/os-release); systemd refuses to switch into it")]
    NoOsRelease,
    #[error("cannot inspect {path} in the new root")]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks that `init` (an absolute path inside `root`) is an executable regular file.
pub fn check_init(root: &Path, init: &Path) -> Result<PathBuf, NotBootable> {
    let inspect = |source| NotBootable::Inspect {
        path: init.to_owned(),
        source,
    };
    let host = resolve_in_root(root, init).map_err(inspect)?;
    match std::fs::metadata(&host) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(host),
        Ok(_) => Err(NotBootable::InitNotExecutable {
            init: init.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NotBootable::NoInit {
            init: init.to_owned(),
        }),
        Err(e) => Err(inspect(e)),
    }
}

/// Checks that `root` has an executable `init` and an os-release file.
pub fn check_bootable(root: &Path, init: &Path) -> Result<(), NotBootable> {
    check_init(root, init)?;
    for rel in OS_RELEASE {
        let host =
            resolve_in_root(root, Path::new(rel)).map_err(|source| NotBootable::Inspect {
                path: Path::new("/").join(rel),
                source,
            })?;
        if host.is_file() {
            return Ok(());
        }
    }
    Err(NotBootable::NoOsRelease)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn exe(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        exe(&r.join("usr/lib/systemd/systemd"));
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        symlink("usr/sbin", r.join("sbin")).unwrap();
        symlink("/usr/lib/systemd/systemd", r.join("usr/sbin/init")).unwrap();
        let got = resolve_in_root(r, Path::new("/sbin/init")).unwrap();
        assert_eq!(got, r.join("usr/lib/systemd/systemd"));
        assert!(check_init(r, Path::new("/sbin/init")).is_ok());
    }

    #[test]
    fn dotdot_cannot_escape_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        symlink("../../../../../etc/passwd", r.join("etc/escape")).unwrap();
        let got = resolve_in_root(&r, Path::new("/etc/escape")).unwrap();
        assert_eq!(got, r.join("etc/passwd"));
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let d = tempfile::tempdir().unwrap();
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        let e = resolve_in_root(d.path(), Path::new("/a")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
    }

    #[test]
    fn missing_tail_is_returned_as_is() {
        let d = tempfile::tempdir().unwrap();
        let got = resolve_in_root(d.path(), Path::new("/no/such/../file")).unwrap();
        assert_eq!(got, d.path().join("no/file"));
    }

    #[test]
    fn files_on_the_way_and_a_missing_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "").unwrap();
        let got = resolve_in_root(r, Path::new("/etc/passwd/../group")).unwrap();
        assert_eq!(got, r.join("etc/group"));
        let e = resolve_in_root(r, Path::new("/etc/passwd/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::NOTDIR.raw_os_error()));
        // `..` never climbs above the root, even through a directory symlink.
        symlink("/etc", r.join("etc/self")).unwrap();
        let got = resolve_in_root(r, Path::new("/etc/self/../../../etc/self/passwd")).unwrap();
        assert_eq!(got, r.join("etc/passwd"));
        let gone = r.join("no-root");
        let got = resolve_in_root(&gone, Path::new("/a/../b")).unwrap();
        assert_eq!(got, gone.join("b"));
    }

    #[test]
    fn bootable_needs_init_and_os_release() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let init = Path::new("/sbin/init");
        assert!(matches!(
            check_bootable(r, init),
            Err(NotBootable::NoInit { .. })
        ));
        std::fs::create_dir_all(r.join("sbin")).unwrap();
        std::fs::write(r.join("sbin/init"), "not executable").unwrap();
        assert!(matches!(
            check_bootable(r, init),
            Err(NotBootable::InitNotExecutable { .. })
        ));
        exe(&r.join("sbin/init"));
        let e = check_bootable(r, init).unwrap_err();
        assert!(matches!(e, NotBootable::NoOsRelease), "{e}");
        // The usual layout: /etc/os-release -> ../usr/lib/os-release.
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("usr/lib/os-release"), "ID=test\n").unwrap();
        symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
        check_bootable(r, init).unwrap();
        // A custom init from rd.rustlive.init.
        let custom = Path::new("/opt/init");
        assert!(matches!(
            check_bootable(r, custom),
            Err(NotBootable::NoInit { .. })
        ));
        exe(&r.join("opt/init"));
        check_bootable(r, custom).unwrap();
    }

    #[test]
    fn a_directory_is_not_an_init() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sbin/init")).unwrap();
        assert!(matches!(
            check_init(d.path(), Path::new("/sbin/init")),
            Err(NotBootable::InitNotExecutable { .. })
        ));
    }
}
