//! A real nginx on 127.0.0.1 serving a directory, started per test and stopped on drop, and a
//! TCP relay in front of it that resets the first connection after some bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Nginx {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Nginx {
    /// Starts nginx serving a fresh directory; `None` when nginx is not installed.
    pub fn start() -> Option<Nginx> {
        let Some(bin) = binary() else {
            rustlive::support::testing::skip("nginx is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        // A free port: bind, read, release (nginx gets it a moment later).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/t1;\n\
             proxy_temp_path {d}/t2;\n fastcgi_temp_path {d}/t3;\n uwsgi_temp_path {d}/t4;\n\
             scgi_temp_path {d}/t5;\n server {{ listen {addr}; root {}; }}\n}}\n",
            root.display()
        );
        let cf = dir.path().join("nginx.conf");
        std::fs::write(&cf, conf).unwrap();
        let child = Command::new(bin)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&cf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let n = Nginx {
            addr,
            root,
            dir,
            child,
        };
        let t = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(n.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(n)
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay to `upstream` that resets the first connection once `after` response bytes went
/// through, calling `on_reset` at that moment.
pub fn resetting_relay(
    upstream: SocketAddr,
    after: usize,
    on_reset: impl Fn() + Send + Sync + 'static,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let on_reset = Arc::new(on_reset);
    std::thread::spawn(move || {
        // Ends when the test process does; bounded by the connections the test makes.
        for c in l.incoming().take(16) {
            let Ok(client) = c else { return };
            let n = conns.fetch_add(1, Ordering::SeqCst);
            let on_reset = on_reset.clone();
            std::thread::spawn(move || {
                let up = TcpStream::connect(upstream).unwrap();
                let (mut c_in, mut u_out) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut u_out);
                });
                let (mut up, mut client) = (up, client);
                let mut buf = vec![0; 64 << 10];
                let mut sent = 0;
                loop {
                    let k = match up.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => k,
                    };
                    let k = if n == 0 { k.min(after - sent) } else { k };
                    if client.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    sent += k;
                    if n == 0 && sent >= after {
                        std::thread::sleep(Duration::from_millis(150));
                        on_reset();
                        super::http::reset(&client);
                        break;
                    }
                }
            });
        }
    });
    addr
}
