//! Shared test helpers: a fault-injecting HTTP/1.1 server, TLS material, nginx, rsyslog, root
//! images.
#![allow(dead_code)]

pub mod http;
pub mod image;
pub mod nginx;
pub mod registry;
pub mod rsyslog;
pub mod tls;

/// Deterministic pseudo-random bytes (SplitMix64), so failures are reproducible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `cmd`, failing the test (with the command and its stderr) when it cannot be started
/// or does not succeed.
#[track_caller]
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// What [`run_bounded`] saw: the exit code (`None` when the command was killed at the bound),
/// stdout and stderr together, and how long it ran.
#[derive(Debug)]
pub struct Bounded {
    pub code: Option<i32>,
    pub output: String,
    pub elapsed: std::time::Duration,
}

/// Runs `cmd` (stdin closed, output captured, at most 4 GiB of address space) and kills it
/// after `bound`: a command that hangs on a FIFO or reads `/dev/zero` without end fails the
/// test instead of hanging it or exhausting memory.
pub fn run_bounded(cmd: &mut std::process::Command, bound: std::time::Duration) -> Bounded {
    use std::io::Read;
    use std::process::Stdio;
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A regression that reads /dev/zero into memory must fail, not take the machine's memory.
    let _ = rustix::process::prlimit(
        Some(rustix::process::Pid::from_child(&child)),
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(4 << 30),
            maximum: Some(4 << 30),
        },
    );
    // Drained on their own threads so that a chatty command cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st.code().unwrap_or(-1));
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut output = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Bounded {
        code,
        output,
        elapsed: start.elapsed(),
    }
}

/// `minisign -G -W` (an unencrypted key, as for unattended runs) into `dir`: (secret, public).
/// Needs the `minisign` tool (Debian's `minisign` package).
pub fn minisign_keys(dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (sk, pk) = (dir.join("sign.key"), dir.join("sign.pub"));
    match std::process::Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&pk)
        .arg("-s")
        .arg(&sk)
        .output()
    {
        Ok(o) if o.status.success() => Some((sk, pk)),
        Ok(o) => panic!("minisign -G: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            rustlive::support::testing::skip("minisign is not installed (Debian: minisign)");
            None
        }
    }
}
