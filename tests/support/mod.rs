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
