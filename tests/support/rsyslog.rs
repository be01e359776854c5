//! A real rsyslogd on 127.0.0.1 (UDP and TCP inputs on free ports), started per test with its
//! own configuration and stopped on drop; everything it receives goes to one file in a temp dir,
//! in RFC 5424 form (`RSYSLOG_SyslogProtocol23Format`), so tests read back exactly what a site's
//! collector would have filed.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub out: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A port nothing listens on right now (bind, read, release).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Rsyslog {
    /// Starts rsyslogd; `None` (after [`rustlive::support::testing::skip`]) when it is not installed.
    pub fn start() -> Option<Rsyslog> {
        Rsyslog::start_on(free_udp_port(), free_tcp_port())
    }

    /// [`Rsyslog::start`] on given ports (a test that starts the collector late picks them
    /// first).
    pub fn start_on(udp_port: u16, tcp_port: u16) -> Option<Rsyslog> {
        let Some(bin) = binary() else {
            rustlive::support::testing::skip("rsyslogd is not installed (Debian package rsyslog)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let udp: SocketAddr = ([127, 0, 0, 1], udp_port).into();
        let tcp: SocketAddr = ([127, 0, 0, 1], tcp_port).into();
        let out = dir.path().join("received.log");
        let d = dir.path().display();
        let conf = format!(
            "global(workDirectory=\"{d}\")\n\
             module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"test\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"test\")\n\
             ruleset(name=\"test\") {{ action(type=\"omfile\" file=\"{}\" \
             template=\"RSYSLOG_SyslogProtocol23Format\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n",
            udp.port(),
            tcp.port(),
            out.display()
        );
        let cf = dir.path().join("rsyslog.conf");
        std::fs::write(&cf, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&cf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        let r = Rsyslog {
            udp,
            tcp,
            out,
            dir,
            child,
        };
        // Ready when a probe sent over UDP has been written (the TCP input is up by then too).
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        loop {
            let _ = probe.send_to(b"<14>1 - probe test - - - ready", udp);
            if r.text().contains("ready") && TcpStream::connect(tcp).is_ok() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "rsyslogd did not start: {}",
                std::fs::read_to_string(r.dir.path().join("rsyslogd.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    /// Everything received so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The lines from rustlive, once `want` shows up among them or after `wait`.
    pub fn rustlive_lines(&self, want: &str, wait: Duration) -> Vec<String> {
        let t = Instant::now();
        loop {
            let lines: Vec<String> = self
                .text()
                .lines()
                .filter(|l| l.split(' ').nth(3) == Some("rustlive"))
                .map(String::from)
                .collect();
            if lines.iter().any(|l| l.contains(want)) || t.elapsed() > wait {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
