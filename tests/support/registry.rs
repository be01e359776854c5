//! The CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1 with its own
//! config and storage, and a byte-level fault proxy to put in front of it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BINARY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Registry {
    /// Starts a registry whose config is the base (storage, address) plus `extra` YAML
    /// (top-level sections: `auth:`, `proxy:`). `None` when the binary is missing.
    pub fn start(extra: &str) -> Option<Registry> {
        Registry::start_with("", extra)
    }

    /// [`Registry::start`] with more lines for the `http:` section (indented two spaces).
    pub fn start_with(http_extra: &str, extra: &str) -> Option<Registry> {
        if !Path::new(BINARY).exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rustlive-test\n{http_extra}{extra}",
            storage.display()
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let r = Registry { addr, dir, child };
        let t = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(r)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to responses to blob requests (`/blobs/` in the request line).
#[derive(Debug, Clone, Copy)]
pub enum ProxyFault {
    None,
    /// The first blob response: forward this many body bytes, wait, then cut the connection.
    CutFirstBlob {
        after: u64,
        pause: Duration,
    },
    /// Every blob response: flip the body byte at this offset.
    FlipByte(u64),
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, counting the blob body bytes it forwards.
pub struct Proxy {
    pub addr: SocketAddr,
    pub blob_bytes: Arc<AtomicU64>,
    pub blob_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, fault: ProxyFault) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let blob_bytes = Arc::new(AtomicU64::new(0));
        let blob_requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (bb, br, st) = (blob_bytes.clone(), blob_requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { continue };
                let (bb, br) = (bb.clone(), br.clone());
                std::thread::spawn(move || relay(c, upstream, fault, &bb, &br));
            }
        });
        Proxy {
            addr,
            blob_bytes,
            blob_requests,
            stop,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: ProxyFault,
    blob_bytes: &AtomicU64,
    blob_requests: &AtomicUsize,
) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    // The request head tells whether this is a blob request.
    let mut req = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while head_end(&req).is_none() {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req[..req.iter().position(|b| *b == b'\r').unwrap_or(0)])
        .to_string();
    let blob = line.starts_with("GET ") && line.contains("/blobs/");
    let nth = if blob {
        blob_requests.fetch_add(1, Ordering::SeqCst)
    } else {
        usize::MAX
    };
    if up.write_all(&req).is_err() {
        return;
    }
    let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let mut head = Vec::new();
    let mut body_sent = 0u64;
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        let mut body_start = 0;
        if head_end(&head).is_none() {
            head.extend_from_slice(&chunk);
            match head_end(&head) {
                Some(e) => body_start = chunk.len() - (head.len() - e),
                None => {
                    if client.write_all(&chunk).is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let body_len = (chunk.len() - body_start) as u64;
        if blob {
            blob_bytes.fetch_add(body_len, Ordering::SeqCst);
            match fault {
                ProxyFault::FlipByte(at) if at >= body_sent && at < body_sent + body_len => {
                    let i = body_start + (at - body_sent) as usize;
                    chunk[i] ^= 0x01;
                }
                ProxyFault::CutFirstBlob { after, pause }
                    if nth == 0 && body_sent + body_len > after =>
                {
                    let keep = body_start + (after - body_sent) as usize;
                    let _ = client.write_all(&chunk[..keep]);
                    let _ = client.flush();
                    std::thread::sleep(pause);
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = up.shutdown(Shutdown::Both);
                    return;
                }
                _ => {}
            }
        }
        body_sent += body_len;
        if client.write_all(&chunk).is_err() {
            return;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}
