//! `rd.rustlive.syslog` against a real rsyslogd on 127.0.0.1: every line `rustlive boot` prints
//! arrives (UDP and TCP), as RFC 5424 with the stage in structured data, and never a secret; a
//! collector that is down (closed port, or a listener that never completes a handshake) makes
//! the command slower by less than a second.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::rsyslog::{free_tcp_port, Rsyslog};

/// In URL userinfo and query: the console redacts both, and so must the collector's copy.
const CANARY: &str = "CANARY-5b1d-syslog-never";

/// A boot that fails fast without touching the host: the image server's port is closed.
fn failing_cmdline(extra: &str) -> String {
    format!(
        "root=live:http://node:{CANARY}@127.0.0.1:{}/root.squashfs?token={CANARY} \
         rd.rustlive.retries=0 rd.rustlive.timeout=5 {extra}",
        free_tcp_port()
    )
}

/// Runs `rustlive boot` with logs on stderr: (exit code, stderr lines, seconds taken).
fn boot(cmdline: &str) -> (i32, Vec<String>, f64) {
    let sysroot = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(["boot", "--cmdline", cmdline, "--sysroot"])
        .arg(sysroot.path())
        .env("RUSTLIVE_LOG", "stderr")
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| {
            // The console form is `rustlive: [error: |warning: ]MSG`; the collector gets MSG.
            let l = l.strip_prefix("rustlive: ").unwrap_or(l);
            let l = l.strip_prefix("error: ").unwrap_or(l);
            l.strip_prefix("warning: ").unwrap_or(l).to_string()
        })
        .collect();
    (out.status.code().unwrap_or(-1), lines, secs)
}

/// The fields of an RFC 5424 line as rsyslog files it: PRI+VERSION, TIMESTAMP, HOSTNAME,
/// APP-NAME, PROCID, MSGID, then SD and MSG together.
fn fields(line: &str) -> Vec<&str> {
    line.splitn(7, ' ').collect()
}

fn assert_all_lines_arrive(r: &Rsyslog, transport: &str) {
    let target = match transport {
        "udp" => format!("udp://127.0.0.1:{}", r.udp.port()),
        _ => format!("tcp://127.0.0.1:{}", r.tcp.port()),
    };
    let (code, console, _) = boot(&failing_cmdline(&format!("rd.rustlive.syslog={target}")));
    assert_eq!(code, 3, "{console:?}");
    let reason = console
        .iter()
        .find(|l| l.contains("127.0.0.1") && l.contains("refused"))
        .unwrap_or_else(|| panic!("no failure reason on the console: {console:?}"))
        .clone();
    let got = r.rustlive_lines("emergency shell", Duration::from_secs(10));
    let text = got.join("\n");
    assert!(
        !r.text().contains(CANARY),
        "a secret reached the collector:\n{text}"
    );
    // Every console line, in order, and nothing else.
    let msgs: Vec<&str> = got
        .iter()
        .map(|l| {
            let sd_and_msg = fields(l)[6];
            sd_and_msg.split_once("] ").map_or("", |(_, m)| m)
        })
        .collect();
    assert_eq!(msgs, console, "{transport}: collector got\n{text}");
    for l in &got {
        let f = fields(l);
        assert!(f[0].starts_with('<') && f[0].ends_with(">1"), "{l}");
        assert!(f[1].ends_with('Z') && f[1].len() == 27, "TIMESTAMP: {l}");
        assert_ne!(f[2], "-", "no HOSTNAME: {l}");
        assert_eq!(f[3], "rustlive", "APP-NAME: {l}");
        assert!(f[4].parse::<u32>().is_ok(), "PROCID: {l}");
        assert_eq!(f[5], "-", "MSGID: {l}");
        assert!(f[6].starts_with("[rustlive@32473 stage=\""), "SD: {l}");
    }
    // The reason is an error (daemon.err = <27>) of the fetch stage.
    let line = got
        .iter()
        .find(|l| l.ends_with(&reason))
        .unwrap_or_else(|| panic!("{transport}: reason {reason:?} not received:\n{text}"));
    assert!(line.starts_with("<27>1 "), "{line}");
    assert!(line.contains("[rustlive@32473 stage=\"fetch\"]"), "{line}");
    assert!(
        got.iter()
            .any(|l| l.contains("stage=\"config\"] boot logs also go to")),
        "{text}"
    );
}

#[test]
fn every_line_reaches_rsyslog_over_udp_and_tcp_without_secrets() {
    let Some(r) = Rsyslog::start() else { return };
    assert_all_lines_arrive(&r, "udp");
    // A second boot, a fresh collector file: the TCP run is checked on its own lines.
    drop(r);
    let Some(r) = Rsyslog::start() else { return };
    assert_all_lines_arrive(&r, "tcp");
}

#[test]
fn a_bad_command_line_is_reported_to_the_collector_too() {
    let Some(r) = Rsyslog::start() else { return };
    let (code, console, _) = boot(&format!(
        "root=live:http://127.0.0.1:1/r rd.rustlive.overlay.size=12Q rd.rustlive.syslog=tcp://127.0.0.1:{}",
        r.tcp.port()
    ));
    assert_eq!(code, 2, "{console:?}");
    let got = r.rustlive_lines("rd.rustlive.overlay.size", Duration::from_secs(10));
    assert!(
        got.iter().any(|l| l.starts_with("<27>1 ")
            && l.contains("stage=\"config\"] invalid value \"12Q\" for rd.rustlive.overlay.size")),
        "{got:#?}"
    );
}

/// A TCP listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs, like a collector behind a firewall that drops packets.
fn blackhole() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..1000 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return (addr, l, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[test]
fn a_dead_collector_costs_less_than_a_second() {
    let (hole, _listener, _held) = blackhole();
    let closed = free_tcp_port();
    let cases = [
        ("no collector", String::new()),
        (
            "tcp, closed port",
            format!("rd.rustlive.syslog=tcp://127.0.0.1:{closed}"),
        ),
        (
            "udp, closed port",
            format!("rd.rustlive.syslog=udp://127.0.0.1:{closed}"),
        ),
        (
            "tcp, blackhole",
            format!("rd.rustlive.syslog=tcp://127.0.0.1:{}", hole.port()),
        ),
    ];
    let mut base = None;
    for (name, extra) in cases {
        // The best of two runs: the machine is shared, a single run measures its neighbours.
        let secs = (0..2)
            .map(|_| {
                let (code, console, secs) = boot(&failing_cmdline(&extra));
                assert_eq!(code, 3, "{name}: {console:?}");
                secs
            })
            .fold(f64::MAX, f64::min);
        eprintln!("{name}: {secs:.3} s");
        match base {
            None => base = Some(secs),
            Some(b) => assert!(
                secs - b < 1.0,
                "{name}: {secs:.3} s against {b:.3} s without a collector"
            ),
        }
    }
}

#[test]
fn lines_wait_for_a_collector_that_comes_up_late() {
    if support::rsyslog::binary().is_none() {
        rustlive::support::testing::skip("rsyslogd is not installed (Debian package rsyslog)");
        return;
    }
    let tcp = free_tcp_port();
    // A fetch that retries for 6 s; the collector starts 1.5 s into it.
    let cmdline = format!(
        "root=live:http://127.0.0.1:{}/root.squashfs rd.rustlive.timeout=6 \
         rd.rustlive.syslog=tcp://127.0.0.1:{tcp}",
        free_tcp_port()
    );
    let run = std::thread::spawn(move || boot(&cmdline));
    std::thread::sleep(Duration::from_millis(1500));
    let Some(r) = Rsyslog::start_on(support::rsyslog::free_udp_port(), tcp) else {
        return;
    };
    let (code, console, _) = run.join().unwrap();
    assert_eq!(code, 3, "{console:?}");
    let got = r.rustlive_lines("emergency shell", Duration::from_secs(10));
    let text = got.join("\n");
    // The first line was logged while nothing listened: it waited in the queue.
    assert!(
        got.first()
            .is_some_and(|l| l.contains("stage=\"config\"] boot logs also go to")),
        "{text}"
    );
    assert!(got.iter().any(|l| l.contains("emergency shell")), "{text}");
    assert_eq!(
        got.len(),
        console.len(),
        "collector:\n{text}\nconsole: {console:#?}"
    );
}
