//! The seam to the TPM: one command in, one response out. In production the kernel's resource
//! manager `/dev/tpmrm0` (else the raw `/dev/tpm0`); in tests swtpm's TCP command channel,
//! which carries the same bytes.

use crate::support::deadline::Deadline;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Largest response accepted (TPM2's MAX_RESPONSE_SIZE is 4096 on every TPM seen so far).
pub const MAX_RESPONSE: usize = 8192;

/// `RUSTLIVE_TPM=swtpm:HOST:PORT` talks to a swtpm instead of the device: for tests and for
/// trying a bundle on a machine without the node's TPM.
pub const ENV_OVERRIDE: &str = "RUSTLIVE_TPM";

pub trait Transport: Send {
    /// Sends one command and returns the whole response.
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>>;
    /// What this is, for error messages.
    fn describe(&self) -> String;
}

/// The kernel's TPM character device.
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    pub fn open(path: &Path) -> io::Result<Device> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Device {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.file.write_all(command)?;
        // The driver hands the whole response to one read.
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = self.file.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// swtpm's `--server type=tcp` command channel.
pub struct Swtpm {
    stream: TcpStream,
    addr: String,
}

impl Swtpm {
    pub fn connect(addr: &str) -> io::Result<Swtpm> {
        let stream = TcpStream::connect(addr)?;
        // A TPM command takes well under a second; RSA key generation in swtpm a few.
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Swtpm {
            stream,
            addr: addr.to_string(),
        })
    }
}

impl Transport for Swtpm {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.stream.write_all(command)?;
        let mut head = [0u8; 10];
        self.stream.read_exact(&mut head)?;
        let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        if !(10..=MAX_RESPONSE).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response size {size} out of range"),
            ));
        }
        let mut resp = head.to_vec();
        resp.resize(size, 0);
        self.stream
            .read_exact(resp.get_mut(10..).unwrap_or_default())?;
        Ok(resp)
    }
    fn describe(&self) -> String {
        format!("swtpm at {}", self.addr)
    }
}

/// A transport whose every command ends by the boot's deadline: a TPM that never answers (a
/// wedged firmware TPM, a swtpm gone silent) must not keep the node from its failure policy.
/// Each command runs on a worker thread; past the deadline the caller gets `TimedOut` and the
/// worker, still blocked in the driver, is left behind with the transport (the boot is failing
/// by then, and no later command may interleave with the unanswered one).
pub struct Bounded {
    inner: Option<Box<dyn Transport>>,
    what: String,
    deadline: Deadline,
}

impl Bounded {
    pub fn new(inner: Box<dyn Transport>, deadline: Deadline) -> Bounded {
        let what = inner.describe();
        Bounded {
            inner: Some(inner),
            what,
            deadline,
        }
    }
}

impl Transport for Bounded {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        let Some(remaining) = self.deadline.remaining() else {
            return match self.inner.as_mut() {
                Some(t) => t.transact(command),
                None => Err(abandoned()),
            };
        };
        let mut inner = self.inner.take().ok_or_else(abandoned)?;
        let (tx, rx) = mpsc::channel();
        let cmd = command.to_vec();
        std::thread::Builder::new()
            .name("rustlive-tpm".into())
            .spawn(move || {
                let r = inner.transact(&cmd);
                let _ = tx.send((inner, r));
            })?;
        match rx.recv_timeout(remaining) {
            Ok((inner, r)) => {
                self.inner = Some(inner);
                r
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer before the boot's deadline",
            )),
        }
    }
    fn describe(&self) -> String {
        self.what.clone()
    }
}

fn abandoned() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "an earlier command got no answer before the boot's deadline",
    )
}

/// Opens the TPM: `RUSTLIVE_TPM` when set, else `DEV/tpmrm0`, else `DEV/tpm0` (`dev` is `/dev`
/// except in tests). `None` when there is none.
pub fn open_default(dev: &Path) -> io::Result<Box<dyn Transport>> {
    if let Ok(spec) = std::env::var(ENV_OVERRIDE) {
        let addr = spec.strip_prefix("swtpm:").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{ENV_OVERRIDE} must be swtpm:HOST:PORT"),
            )
        })?;
        return Ok(Box::new(Swtpm::connect(addr)?));
    }
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no TPM device");
    for name in ["tpmrm0", "tpm0"] {
        match Device::open(&dev.join(name)) {
            Ok(d) => return Ok(Box::new(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => last = e,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", dev.join(name).display()),
                ))
            }
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!(
            "no TPM: neither {} nor {} exists (is tpm_tis or tpm_crb loaded?)",
            dev.join("tpmrm0").display(),
            dev.join("tpm0").display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Answers after `delay`, echoing the command.
    struct Slow(Duration);
    impl Transport for Slow {
        fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
            std::thread::sleep(self.0);
            Ok(command.to_vec())
        }
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    #[test]
    fn commands_end_by_the_deadline() {
        let mut t = Bounded::new(
            Box::new(Slow(Duration::from_millis(10))),
            Deadline::after(Some(Duration::from_secs(30))),
        );
        assert_eq!(t.transact(b"abc").unwrap(), b"abc");
        assert_eq!(t.transact(b"de").unwrap(), b"de");

        let start = Instant::now();
        let mut t = Bounded::new(
            Box::new(Slow(Duration::from_secs(30))),
            Deadline::after(Some(Duration::from_millis(200))),
        );
        let e = t.transact(b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        // The unanswered command keeps the transport: nothing else may be sent.
        assert_eq!(
            t.transact(b"y").unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(t.describe(), "slow");
    }

    #[test]
    fn no_deadline_means_the_caller_waits() {
        let mut t = Bounded::new(Box::new(Slow(Duration::ZERO)), Deadline::after(None));
        assert_eq!(t.transact(b"z").unwrap(), b"z");
    }
}
