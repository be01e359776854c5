//! The seeder after switch-root, the boot's side: once the image from the swarm is verified,
//! the boot starts `@rustlive-seed` (this binary again, `/proc/self/exe`, with the hidden
//! `seed-image` command), which keeps serving the image's pieces from the same RAM copy for
//! `rd.rustlive.seed` under `rd.rustlive.seed.rate` and then exits on its own
//! (`swarm::seeder` is the process itself).
//!
//! It must outlive the initramfs: `argv[0]` starts with `@` (systemd's convention for
//! processes from the initramfs, see its ROOT_STORAGE_DAEMONS document), it runs in a session
//! of its own, it leaves the cgroup of the unit that started it (under dracut, a stop of
//! rustlive.service kills the unit's cgroup), and it ignores systemd's `SIGTERM` broadcast at
//! switch-root, which spares only root's `@` processes (`sys::signals`). As PID 1 (the
//! standalone initramfs) rustlive switches root itself: `/run`, where the image and the
//! seeder's empty root are, moves into the new root, and nothing is killed. Its standard input carries the `.torrent`'s
//! bytes; its standard output says `ready` once it holds the image, the listening socket and
//! the tracker client, has closed everything else and dropped its privileges (then the boot
//! writes its pid to `/run/rustlive/seed.pid`); its standard error is `/dev/kmsg`. Seeding is
//! a courtesy to the rest of the herd: any failure here is a warning, never a failed boot.

use crate::support::log::{mib, Escaped};
use crate::support::paths::Paths;
pub use crate::swarm::seeder::Settings;
use std::io::{Read, Write};
use std::num::NonZeroU64;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `argv[0]` of the seeder, as `ps` shows it in the booted system.
pub const ARGV0: &str = "@rustlive-seed";
/// The hidden subcommand the seeder runs.
pub const SUBCOMMAND: &str = "seed-image";
/// The pid file, under the run directory (`/run/rustlive`).
pub const PID_FILE: &str = "seed.pid";
/// The empty directory the seeder makes its root, under the run directory.
pub const EMPTY_ROOT: &str = "seed-root";
/// How long the boot waits for the seeder to say it is ready.
const READY_WAIT: Duration = Duration::from_secs(15);

/// The seeder's arguments after `argv[0]`.
pub fn arguments(o: &Settings, image: &Path, root: &Path) -> Vec<String> {
    let mut a = vec![
        SUBCOMMAND.to_string(),
        "--image".into(),
        image.display().to_string(),
        "--port".into(),
        o.port.to_string(),
        "--duration".into(),
        o.duration.as_secs().to_string(),
        "--rate".into(),
        o.rate.map_or(0, NonZeroU64::get).to_string(),
        "--root".into(),
        root.display().to_string(),
    ];
    if let Some(ca) = &o.ca {
        a.push("--ca".into());
        a.push(ca.display().to_string());
    }
    a
}

/// Starts the seeder for the verified `image` described by `torrent` (its `.torrent` bytes);
/// logs what happened. Never fails the boot.
pub fn start(o: &Settings, torrent: &[u8], image: &Path, paths: &Paths) {
    if o.duration.is_zero() {
        log::info!("not sharing the image after switch-root (rd.rustlive.seed=0)");
        return;
    }
    match spawn(o, torrent, image, paths) {
        Ok(pid) => log::info!(
            "sharing the image after switch-root for {} s on port {} at most {} as {ARGV0} (pid {pid}); stop it early: kill $(cat {})",
            o.duration.as_secs(),
            o.port,
            o.rate.map_or("unlimited".into(), |r| format!("{}/s", mib(r.get()))),
            paths.run_dir().join(PID_FILE).display()
        ),
        Err(why) => log::warn!("the image is not shared after switch-root: {why}"),
    }
}

fn spawn(o: &Settings, torrent: &[u8], image: &Path, paths: &Paths) -> Result<u32, String> {
    let run = paths.run_dir();
    let root = run.join(EMPTY_ROOT);
    let exe = paths.join("proc/self/exe");
    // Its log lines go to the kernel log through a descriptor opened here: in its empty root
    // there is no /dev/kmsg to open.
    let stderr = std::fs::OpenOptions::new()
        .write(true)
        .open(paths.join("dev/kmsg"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut cmd = Command::new(&exe);
    cmd.arg0(ARGV0)
        .args(arguments(o, image, &root))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .current_dir("/");
    if let Some(v) = std::env::var_os("RUSTLIVE_LOG") {
        cmd.env("RUSTLIVE_LOG", v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {ARGV0}: {e}"))?;
    let pid = child.id();
    let fed = child
        .stdin
        .take()
        .ok_or_else(|| "no pipe to the seeder".to_string())
        .and_then(|mut w| {
            w.write_all(torrent)
                .map_err(|e| format!("cannot hand the torrent to {ARGV0}: {e}"))
        });
    let answer = fed.and_then(|()| {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| "no pipe from the seeder".to_string())?;
        ready_line(out, READY_WAIT)
    });
    match answer.as_deref().map(str::trim) {
        Ok("ready") => {}
        other => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match other {
                Ok("") => {
                    format!("{ARGV0} exited before it was ready (its reason is in the kernel log)")
                }
                Ok(line) => format!("{ARGV0}: {}", Escaped(line)),
                Err(e) => e.clone(),
            });
        }
    }
    let pid_file = run.join(PID_FILE);
    write_pid(&pid_file, pid).map_err(|e| format!("cannot write {}: {e}", pid_file.display()))?;
    // Not waited for: it outlives this process (under dracut this process exits; as PID 1 it
    // becomes the booted system's init, which reaps it).
    drop(child);
    Ok(pid)
}

/// `pid` into `path`, through a new file beside it (`O_EXCL`: never through a link) renamed
/// over it.
fn write_pid(path: &Path, pid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(format!("{pid}\n").as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// The seeder's first line, read in a thread so that a seeder that never answers costs at most
/// `wait`; empty when it closed its output without one.
fn ready_line(mut out: impl Read + Send + 'static, wait: Duration) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while buf.len() < 512 {
            match out.read(&mut byte) {
                Ok(1) if byte == *b"\n" => break,
                Ok(1) => buf.extend_from_slice(&byte),
                _ => break,
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx.recv_timeout(wait)
        .map_err(|_| format!("{ARGV0} did not get ready within {} s", wait.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_seeder_everything_on_its_command_line() {
        let o = Settings {
            port: 6881,
            duration: Duration::from_secs(900),
            rate: NonZeroU64::new(32 << 20),
            ca: Some("/etc/rustlive/ca.pem".into()),
        };
        let a = arguments(
            &o,
            Path::new("/run/rustlive/image/i.sqfs"),
            Path::new("/run/rustlive/seed-root"),
        );
        assert_eq!(
            a.join(" "),
            "seed-image --image /run/rustlive/image/i.sqfs --port 6881 --duration 900 --rate 33554432 --root /run/rustlive/seed-root --ca /etc/rustlive/ca.pem"
        );
        let o = Settings {
            rate: None,
            ca: None,
            ..o
        };
        let a = arguments(&o, Path::new("/i"), Path::new("/e"));
        assert!(a.join(" ").ends_with("--rate 0 --root /e"), "{a:?}");
    }

    #[test]
    fn reads_the_first_line_or_gives_up() {
        let r = ready_line(std::io::Cursor::new(b"ready\nmore".to_vec()), READY_WAIT);
        assert_eq!(r.unwrap(), "ready");
        let r = ready_line(std::io::Cursor::new(Vec::new()), READY_WAIT);
        assert_eq!(r.unwrap(), "");
        // A pipe nobody writes to: the wait ends it.
        let (rd, _wr) = std::io::pipe().unwrap();
        let e = ready_line(rd, Duration::from_millis(50)).unwrap_err();
        assert!(e.contains("did not get ready"), "{e}");
    }

    #[test]
    fn writes_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PID_FILE);
        write_pid(&p, 42).unwrap();
        write_pid(&p, 43).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "43\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn zero_means_no_seeder() {
        let dir = tempfile::tempdir().unwrap();
        let o = Settings {
            port: 0,
            duration: Duration::ZERO,
            rate: None,
            ca: None,
        };
        start(
            &o,
            b"",
            Path::new("/nonexistent"),
            &Paths::under(dir.path()),
        );
        assert!(!dir.path().join("run/rustlive").join(PID_FILE).exists());
    }
}
