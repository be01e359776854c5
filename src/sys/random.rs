//! The one random source of rustlive: the kernel's, through `getrandom(2)`.
//!
//! - [`fill`]: secret bytes (keys, TPM nonces, sealing seeds), waiting, if it must, until the
//!   kernel's pool is initialised; [`OsRandom`] is the same as a `rand_core` generator for the
//!   crates that take one (RSA, P-256, SSH keys).
//! - [`Rng`]: spread, not secrecy (retry jitter, DHCP transaction ids), a small generator seeded
//!   from the kernel without ever waiting: a node early in boot on an old kernel may have no
//!   initialised pool yet, and must not stall its DHCP or its downloads for it. Tests seed it
//!   themselves ([`Rng::from_seed`]) so that every decision it feeds is reproducible.

use rustix::io::Errno;
use rustix::rand::GetRandomFlags;
use std::time::Duration;

/// Fills `buf` with secret random bytes from the kernel, waiting for its pool to be initialised
/// if it is not yet (as `getrandom(2)` with no flags does).
pub fn fill(buf: &mut [u8]) -> Result<(), Errno> {
    fill_with(buf, GetRandomFlags::empty())
}

fn fill_with(mut buf: &mut [u8], flags: GetRandomFlags) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::rand::getrandom(&mut *buf, flags) {
            // The kernel returns at least one byte unless it fails.
            Ok(n) => buf = buf.get_mut(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Random bytes without ever waiting, for what needs spread and not secrecy: the kernel's
/// generator even before its pool is initialised (`GRND_INSECURE`, Linux 5.6+, else
/// `GRND_NONBLOCK`, else `/dev/urandom`), and as a last resort the clock and the pid.
fn fill_without_waiting(buf: &mut [u8]) {
    use std::io::Read;
    // EINVAL before 5.6 (no GRND_INSECURE); EAGAIN from GRND_NONBLOCK while the pool is not
    // initialised yet.
    if fill_with(buf, GetRandomFlags::INSECURE).is_ok()
        || fill_with(buf, GetRandomFlags::NONBLOCK).is_ok()
    {
        return;
    }
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
    {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut seed = Rng::from_seed(
        u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) ^ u64::from(std::process::id()),
    );
    for chunk in buf.chunks_mut(8) {
        let bytes = seed.next_u64().to_le_bytes();
        for (b, r) in chunk.iter_mut().zip(bytes) {
            *b = r;
        }
    }
}

/// The kernel's generator as a `rand_core` RNG, for the crates that draw their own randomness
/// (RSA padding, P-256 ephemeral keys, SSH host keys): the same bytes as [`fill`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl rand_core::CryptoRng for OsRandom {}

impl rand_core::RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    /// As `rand_core::OsRng`, a key without randomness is not an option: when the kernel
    /// cannot give any (only on a kernel older than 3.17), the process aborts.
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = fill(dest) {
            log::error!("the kernel gives no random bytes: {e}");
            std::process::abort();
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        fill(dest).map_err(|e| {
            let code = u32::try_from(e.raw_os_error()).unwrap_or(0);
            rand_core::Error::from(
                std::num::NonZeroU32::new(code).unwrap_or(std::num::NonZeroU32::MIN),
            )
        })
    }
}

/// A small non-cryptographic generator (SplitMix64) for jitter and transaction ids: spread,
/// not secrecy. [`Rng::from_entropy`] seeds it from the kernel without waiting, so nodes booted
/// from the same initramfs at the same instant still draw different numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose draws are fixed by `seed` (tests).
    pub fn from_seed(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator seeded from the kernel, never waiting for its pool.
    pub fn from_entropy() -> Self {
        let mut b = [0u8; 8];
        fill_without_waiting(&mut b);
        Rng(u64::from_le_bytes(b))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        // The high half: SplitMix64's best-mixed bits.
        u32::try_from(self.next_u64() >> 32).unwrap_or(0)
    }

    /// Uniform in `[0, max]`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(range) => self.next_u64().checked_rem(range).unwrap_or(0),
            None => self.next_u64(),
        }
    }

    /// Uniform in `[0, max]` at millisecond resolution.
    pub fn below(&mut self, max: Duration) -> Duration {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.up_to(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn fills_whole_buffers() {
        // A getrandom call may return fewer bytes than asked; the buffer is still filled.
        let mut big = vec![0u8; 4096];
        fill(&mut big).unwrap();
        assert!(big.iter().filter(|&&b| b != 0).count() > 3000);
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        OsRandom.fill_bytes(&mut a);
        OsRandom.try_fill_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        fill(&mut []).unwrap();
    }

    #[test]
    fn seeded_generators_repeat_and_entropy_ones_differ() {
        let draws = |mut r: Rng| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        assert_eq!(draws(Rng::from_seed(7)), draws(Rng::from_seed(7)));
        assert_ne!(draws(Rng::from_seed(7)), draws(Rng::from_seed(8)));
        assert_ne!(draws(Rng::from_entropy()), draws(Rng::from_entropy()));
        let mut b = [0u8; 64];
        fill_without_waiting(&mut b);
        assert!(b.iter().any(|&x| x != 0));
    }

    #[test]
    fn ranges_are_inclusive_and_bounded() {
        let mut r = Rng::from_seed(1);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = r.up_to(3);
            seen[v as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
        assert_eq!(r.up_to(0), 0);
        let _ = r.up_to(u64::MAX);
        assert!(r.below(Duration::from_millis(10)) <= Duration::from_millis(10));
        assert_eq!(r.below(Duration::ZERO), Duration::ZERO);
    }
}
