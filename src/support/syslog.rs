//! Boot logs to the site's collector (`rd.rustlive.syslog=udp://HOST[:PORT]|tcp://HOST[:PORT]`).
//!
//! Every line the logger prints (the same text, so the same redaction: no secret, no URL
//! userinfo or query) is also queued here and shipped as RFC 5424 by a background thread: UDP
//! datagrams (RFC 5426), or TCP with octet-counting framing (RFC 6587 §3.4.1). A dead collector
//! must never slow or fail a boot, so:
//! - the logger only pushes onto a bounded queue (never waits on the network); when the queue is
//!   full the **oldest** line is dropped and counted (the newest lines — a failing boot's reason —
//!   are the ones a site needs), and the count is reported to the collector once it answers;
//! - lines logged before the network is up wait in that queue until a route to the collector
//!   exists (the sender polls the [`Probe`] the boot gives it);
//! - connects are bounded ([`CONNECT_TIMEOUT`]) and writes too ([`WRITE_TIMEOUT`]); after a
//!   failure the sender backs off, and [`flush`] returns at once while the collector is known
//!   down, else after at most the wait it is given.
//!
//! Formatting and framing are pure functions ([`format`], [`frame`]); the global state is
//! [`buffer_early`] → [`start`] (or [`disable`]) → [`flush`].
//!
//! Structured data: `[rustlive@32473 stage="fetch"]`. 32473 is the private enterprise number
//! IANA reserves for documentation and examples (RFC 5612); rustlive has none of its own.

use crate::support::deadline::Deadline;
use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The standard syslog port, for UDP and (by common practice) TCP.
pub const DEFAULT_PORT: u16 = 514;
/// Lines kept while the collector is unreachable (about 2 KiB each at most).
pub const QUEUE_LINES: usize = 256;
/// A formatted message is cut to this many bytes: what RFC 5424 §6.1 says every receiver must
/// accept, and well inside one UDP datagram.
pub const MAX_MESSAGE: usize = 2048;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The SD-ID of rustlive's structured data (see the module doc for the number).
pub const SD_ID: &str = "rustlive@32473";
const APP_NAME: &str = "rustlive";
/// Facility `daemon` (3): what an initramfs service is.
const FACILITY: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where the collector is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub transport: Transport,
    /// A host name or an IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Parses `udp://HOST[:PORT]` or `tcp://HOST[:PORT]` (`[V6]` in brackets); the reason on error.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let (transport, rest) = if let Some(r) = s.strip_prefix("udp://") {
        (Transport::Udp, r)
    } else if let Some(r) = s.strip_prefix("tcp://") {
        (Transport::Tcp, r)
    } else {
        return Err("expected udp://HOST[:PORT] or tcp://HOST[:PORT]".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err("expected only a host and a port after the scheme".into());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 address between the brackets".into());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :PORT after ']'")?),
        };
        (h, port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if !host.contains(':')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err("not a host name or an IP address".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err("the port must be a number from 1 to 65535".into()),
        },
    };
    Ok(Target {
        transport,
        host: host.to_string(),
        port,
    })
}

/// One log line waiting to be shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: SystemTime,
    /// RFC 5424 severity (0 emergency … 7 debug).
    pub severity: u8,
    pub stage: &'static str,
    pub msg: String,
}

impl Entry {
    pub fn new(level: log::Level, stage: &'static str, msg: String) -> Entry {
        Entry {
            time: SystemTime::now(),
            severity: severity(level),
            stage,
            msg,
        }
    }
}

/// The RFC 5424 severity of a `log` level.
pub fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The RFC 5424 message for `e`: `<PRI>1 TIMESTAMP HOST rustlive PID - [SD] MSG`, at most
/// [`MAX_MESSAGE`] bytes (the text is cut at a character boundary).
pub fn format(e: &Entry, hostname: &str, pid: u32) -> String {
    let pri = u16::from(FACILITY)
        .saturating_mul(8)
        .saturating_add(u16::from(e.severity.min(7)));
    let host = header_field(hostname, 255);
    let mut out = format!(
        "<{pri}>1 {} {host} {APP_NAME} {pid} - [{SD_ID} stage=\"{}\"] ",
        timestamp(e.time),
        sd_escape(e.stage)
    );
    // Control characters would end a line in a collector's file; the console shows them as
    // nothing useful either.
    for c in e.msg.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len().saturating_add(c.len_utf8()) > MAX_MESSAGE {
            break;
        }
        out.push(c);
    }
    out
}

/// A header field (HOSTNAME): printable US-ASCII without spaces, at most `max` long; `-`
/// (NILVALUE) when nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` take a backslash.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `2026-12-01T21:34:24.123456Z`, or `-` for a clock before 1970 (RFC 5424 NILVALUE).
pub fn timestamp(t: SystemTime) -> String {
    let Ok(d) = t.duration_since(UNIX_EPOCH) else {
        return "-".into();
    };
    let u = super::time::Utc::from_unix(d.as_secs());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        u.year,
        u.month,
        u.day,
        u.hour,
        u.minute,
        u.second,
        d.subsec_micros()
    )
}

/// The bytes on the wire: the message itself over UDP, `LEN SP MSG` over TCP (octet counting).
pub fn frame(transport: Transport, msg: &str) -> Vec<u8> {
    match transport {
        Transport::Udp => msg.as_bytes().to_vec(),
        Transport::Tcp => {
            let mut v = format!("{} ", msg.len()).into_bytes();
            v.extend_from_slice(msg.as_bytes());
            v
        }
    }
}

/// The HOSTNAME of the node: its host name when it has a real one, else the MAC of the
/// interface that reaches the collector, else `-`.
pub fn node_name(uname_host: &str, mac: Option<&str>) -> String {
    let h = uname_host.trim();
    let meaningless = h.is_empty()
        || h == "(none)"
        || h == "localhost"
        || h.starts_with("localhost.")
        || h == "(unknown)";
    if !meaningless {
        return header_field(h, 255);
    }
    mac.map_or_else(|| "-".into(), |m| header_field(m, 255))
}

/// A bounded FIFO that drops its oldest line when full, and counts what it dropped.
#[derive(Debug)]
pub struct Queue {
    lines: VecDeque<Entry>,
    cap: usize,
    dropped: u64,
}

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue {
            lines: VecDeque::with_capacity(cap.min(QUEUE_LINES)),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    pub fn push(&mut self, e: Entry) {
        if self.lines.len() >= self.cap {
            self.lines.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.lines.push_back(e);
    }

    pub fn pop(&mut self) -> Option<Entry> {
        self.lines.pop_front()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Lines dropped so far (never reset: the collector is told the running total).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// What the logger and the sender thread share.
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    queue: Queue,
    /// `false` once the configuration says there is no collector: stop keeping lines.
    accepting: bool,
    /// The sender holds a line it took off the queue and has not finished with.
    in_flight: bool,
    /// The last connect or send failed (or there is no route): [`flush`] does not wait.
    down: bool,
    /// The sender thread exists.
    started: bool,
    /// The dropped count the collector has been told about.
    reported_dropped: u64,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| Shared {
        state: Mutex::new(State {
            queue: Queue::new(QUEUE_LINES),
            accepting: false,
            in_flight: false,
            down: false,
            started: false,
            reported_dropped: 0,
        }),
        wake: Condvar::new(),
    })
}

/// A poisoned lock only means another thread panicked mid-push; the queue is still usable.
fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts keeping log lines for a collector not known yet (`rustlive boot` calls this first,
/// before the command line is parsed, so its first lines are not lost).
pub fn buffer_early() {
    lock(shared()).accepting = true;
}

/// No collector is configured: forget the lines kept so far and keep no more.
pub fn disable() {
    let s = shared();
    let mut st = lock(s);
    if !st.started {
        st.accepting = false;
        st.queue = Queue::new(QUEUE_LINES);
    }
}

/// Whether the logger should hand lines over (cheap; called for every line).
pub fn accepting() -> bool {
    SHARED.get().is_some_and(|s| lock(s).accepting)
}

/// Queues one line (the logger's side: never blocks on the network).
pub fn record(e: Entry) {
    let Some(s) = SHARED.get() else { return };
    let mut st = lock(s);
    if st.accepting {
        st.queue.push(e);
        drop(st);
        s.wake.notify_all();
    }
}

/// Starts shipping to `target` on a background thread (once; later calls are ignored).
/// How the collector is reached once the network is up: the sender asks before each connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// MAC of the interface the collector is reached through (the node's name until it has one).
    pub mac: Option<String>,
    /// Whether that route is IPv4 (the collector's address of the same family is used).
    pub ipv4: bool,
}

/// The route probe, `None` while there is no route; passed in by the boot (the network stage
/// knows routes, this shared piece does not).
pub type Probe = fn(&str) -> Option<Reach>;

pub fn start(target: Target, probe: Probe) -> std::io::Result<()> {
    let s = shared();
    {
        let mut st = lock(s);
        if st.started {
            return Ok(());
        }
        st.started = true;
        st.accepting = true;
    }
    std::thread::Builder::new()
        .name("rustlive-syslog".into())
        .spawn(move || Sender::new(target, probe).run(s))
        .map(drop)
}

/// How long a boot waits for its last lines to reach the collector, in all (before the
/// failure policy runs, before switch-root, before exiting).
pub const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// Waits until every queued line has been sent, until `deadline`, and not at all while the
/// collector is known to be down. Returns whether the queue was emptied.
pub fn flush(deadline: Deadline) -> bool {
    let Some(s) = SHARED.get() else { return true };
    // Never unbounded: a deadline without a limit means one FLUSH_WAIT.
    let deadline = if deadline.is_limited() {
        deadline
    } else {
        Deadline::after(Some(FLUSH_WAIT))
    };
    let mut st = lock(s);
    loop {
        if !st.started {
            return st.queue.is_empty();
        }
        if st.queue.is_empty() && !st.in_flight {
            return true;
        }
        if st.down {
            return false;
        }
        let left = deadline.clamp(FLUSH_WAIT);
        if left.is_zero() {
            return false;
        }
        st = s
            .wake
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Lines dropped because the queue was full.
pub fn dropped() -> u64 {
    SHARED.get().map_or(0, |s| lock(s).queue.dropped())
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// The background side: one connection, re-established with backoff.
struct Sender {
    target: Target,
    probe: Probe,
    conn: Option<Conn>,
    /// No connect attempt before this (backoff after a failure).
    retry_at: Instant,
    backoff: Duration,
    pid: u32,
    /// Host name and MAC are looked up once a route exists (DHCP may set the host name).
    hostname: Option<String>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the sender looks for a route while lines wait.
const ROUTE_POLL: Duration = Duration::from_millis(250);

impl Sender {
    fn new(target: Target, probe: Probe) -> Sender {
        Sender {
            target,
            probe,
            conn: None,
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            pid: std::process::id(),
            hostname: None,
        }
    }

    fn run(mut self, s: &Shared) {
        loop {
            // Wait for a line, and for the backoff to end when there is no connection.
            {
                let mut st = lock(s);
                loop {
                    let now = Instant::now();
                    if st.queue.is_empty() {
                        st = s.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    } else if self.conn.is_some() || now >= self.retry_at {
                        break;
                    } else {
                        let nap = self.retry_at.saturating_duration_since(now);
                        st = s
                            .wake
                            .wait_timeout(st, nap)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
            // Connect without holding the lock: the logger never waits on the network.
            if self.conn.is_none() {
                let ok = self.connect();
                lock(s).down = !ok;
                s.wake.notify_all();
                if !ok {
                    continue;
                }
            }
            let entry = {
                let mut st = lock(s);
                // A note about dropped lines goes first, so the gap shows where it is.
                let dropped = st.queue.dropped();
                let note = (dropped > st.reported_dropped).then(|| {
                    let n = dropped.saturating_sub(st.reported_dropped);
                    Entry::new(
                        log::Level::Warn,
                        "syslog",
                        format!(
                            "{n} log lines were dropped before this one (the queue to the collector was full)"
                        ),
                    )
                });
                if note.is_some() {
                    st.reported_dropped = dropped;
                }
                let Some(e) = note.or_else(|| st.queue.pop()) else {
                    continue;
                };
                st.in_flight = true;
                e
            };
            let ok = self.send(&entry);
            {
                let mut st = lock(s);
                st.in_flight = false;
                st.down = !ok;
            }
            s.wake.notify_all();
        }
    }

    /// Connects (or, for UDP, picks the route); false after a failure, with the backoff set.
    fn connect(&mut self) -> bool {
        let t = &self.target;
        let conn = (self.probe)(&t.host).and_then(|route| {
            if self.hostname.is_none() {
                let uname = crate::sys::hostname::get();
                self.hostname = Some(node_name(&uname, route.mac.as_deref()));
            }
            let addr: SocketAddr = (t.host.as_str(), t.port)
                .to_socket_addrs()
                .ok()?
                .find(|a| a.is_ipv4() == route.ipv4)?;
            match t.transport {
                Transport::Udp => {
                    let bind: SocketAddr = if addr.is_ipv4() {
                        SocketAddr::from(([0, 0, 0, 0], 0))
                    } else {
                        SocketAddr::from(([0u16; 8], 0))
                    };
                    let sock = UdpSocket::bind(bind).ok()?;
                    sock.connect(addr).ok()?;
                    sock.set_write_timeout(Some(WRITE_TIMEOUT)).ok()?;
                    Some(Conn::Udp(sock))
                }
                Transport::Tcp => {
                    let sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
                    sock.set_write_timeout(Some(WRITE_TIMEOUT)).ok()?;
                    let _ = sock.set_nodelay(true);
                    Some(Conn::Tcp(sock))
                }
            }
        });
        match conn {
            Some(c) => {
                self.conn = Some(c);
                self.backoff = BACKOFF_MIN;
                true
            }
            None => {
                // No route yet is the normal state early in a boot: poll for it quickly.
                let wait = if (self.probe)(&t.host).is_none() {
                    ROUTE_POLL
                } else {
                    let b = self.backoff;
                    self.backoff = b.saturating_mul(2).min(BACKOFF_MAX);
                    b
                };
                self.retry_at = Instant::now()
                    .checked_add(wait)
                    .unwrap_or_else(Instant::now);
                false
            }
        }
    }

    /// Sends one line; on failure the connection is dropped (the line is lost: the collector
    /// was not listening) and the next line reconnects after the backoff.
    fn send(&mut self, e: &Entry) -> bool {
        let host = self.hostname.as_deref().unwrap_or("-");
        let bytes = frame(self.target.transport, &format(e, host, self.pid));
        let ok = match &mut self.conn {
            Some(Conn::Udp(s)) => s.send(&bytes).is_ok(),
            Some(Conn::Tcp(s)) => s.write_all(&bytes).is_ok(),
            None => false,
        };
        if !ok {
            self.conn = None;
            self.retry_at = Instant::now()
                .checked_add(self.backoff)
                .unwrap_or_else(Instant::now);
            self.backoff = self.backoff.saturating_mul(2).min(BACKOFF_MAX);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    fn entry(msg: &str) -> Entry {
        Entry {
            time: at(1_764_624_864, 123_456),
            severity: 3,
            stage: "fetch",
            msg: msg.into(),
        }
    }

    #[test]
    fn targets() {
        let t = |transport, host: &str, port| Target {
            transport,
            host: host.into(),
            port,
        };
        for (s, want) in [
            ("udp://10.0.2.2", t(Transport::Udp, "10.0.2.2", 514)),
            ("tcp://10.0.2.2:6514", t(Transport::Tcp, "10.0.2.2", 6514)),
            (
                "tcp://log.site.example/",
                t(Transport::Tcp, "log.site.example", 514),
            ),
            ("udp://[fd00::1]:1514", t(Transport::Udp, "fd00::1", 1514)),
            ("udp://[fd00::1]", t(Transport::Udp, "fd00::1", 514)),
        ] {
            assert_eq!(parse_target(s).as_ref(), Ok(&want), "{s}");
            // Display gives back a form that parses to the same target.
            assert_eq!(parse_target(&want.to_string()), Ok(want), "{s}");
        }
        for bad in [
            "",
            "10.0.2.2",
            "http://10.0.2.2",
            "udp://",
            "udp://:514",
            "tcp://h:0",
            "tcp://h:65536",
            "tcp://h:x",
            "tcp://u:p@h",
            "tcp://h/path",
            "udp://[fd00::1",
            "udp://[nothost]:5",
            "udp://h h",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rfc5424_line() {
        assert_eq!(
            format(&entry("fetch failed: connection refused"), "node17", 412),
            "<27>1 2025-12-01T21:34:24.123456Z node17 rustlive 412 - \
             [rustlive@32473 stage=\"fetch\"] fetch failed: connection refused"
        );
        let mut e = entry("progress");
        e.severity = severity(log::Level::Info);
        assert!(format(&e, "n", 1).starts_with("<30>1 "));
        e.severity = severity(log::Level::Debug);
        assert!(format(&e, "n", 1).starts_with("<31>1 "));
    }

    #[test]
    fn fields_are_sanitised() {
        let mut e = entry("two\nlines\tand\u{7f}more");
        e.stage = "a\"b]c\\";
        let line = format(&e, "bad host\n", 1);
        assert!(
            line.contains(" badhost rustlive 1 - [rustlive@32473 stage=\"a\\\"b\\]c\\\\\"] "),
            "{line}"
        );
        assert!(line.ends_with("two lines and more"), "{line}");
        assert!(format(&e, "", 1).contains(" - rustlive 1 "));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let line = format(&entry(&"é".repeat(4000)), "n", 1);
        assert!(line.len() <= MAX_MESSAGE && line.len() > MAX_MESSAGE - 2);
        assert!(line.ends_with('é'));
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(at(951_782_400, 7)), "2000-02-29T00:00:00.000007Z");
        assert_eq!(
            timestamp(at(4_107_542_399, 0)),
            "2100-02-28T23:59:59.000000Z"
        );
        assert_eq!(timestamp(UNIX_EPOCH - Duration::from_secs(1)), "-");
    }

    #[test]
    fn octet_counting() {
        assert_eq!(frame(Transport::Tcp, "<27>1 x"), b"7 <27>1 x");
        assert_eq!(frame(Transport::Tcp, "é"), "2 é".as_bytes());
        assert_eq!(frame(Transport::Udp, "<27>1 x"), b"<27>1 x");
    }

    #[test]
    fn node_names() {
        let mac = Some("52:54:00:12:34:56");
        assert_eq!(node_name("node17", mac), "node17");
        for none in ["", "(none)", "localhost", "localhost.localdomain"] {
            assert_eq!(node_name(none, mac), "52:54:00:12:34:56", "{none:?}");
            assert_eq!(node_name(none, None), "-");
        }
    }

    #[test]
    fn queue_drops_the_oldest_and_counts() {
        let mut q = Queue::new(3);
        for i in 0..5 {
            q.push(entry(&format!("line {i}")));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 2);
        let kept: Vec<String> = std::iter::from_fn(|| q.pop()).map(|e| e.msg).collect();
        assert_eq!(kept, ["line 2", "line 3", "line 4"]);
        assert!(q.is_empty());
        assert_eq!(Queue::new(0).cap, 1);
    }

    proptest! {
        #[test]
        fn parse_target_never_panics(s in "\\PC{0,40}") {
            let _ = parse_target(&s);
        }

        #[test]
        fn timestamp_matches_its_shape(secs in 0u64..253_402_300_799, us in 0u32..1_000_000) {
            let t = timestamp(at(secs, us));
            prop_assert_eq!(t.len(), 27);
            prop_assert!(t.ends_with('Z'));
        }

        #[test]
        fn frames_carry_their_length(msg in "\\PC{0,300}") {
            let f = frame(Transport::Tcp, &msg);
            let s = String::from_utf8(f).unwrap();
            let (len, rest) = s.split_once(' ').unwrap();
            prop_assert_eq!(len.parse::<usize>().unwrap(), rest.len());
            prop_assert_eq!(rest, msg);
        }

        #[test]
        fn formatted_lines_are_bounded(msg in "\\PC{0,3000}", host in "\\PC{0,300}") {
            let mut e = entry(&msg);
            e.severity = 6;
            let line = format(&e, &host, u32::MAX);
            prop_assert!(line.len() <= MAX_MESSAGE);
            prop_assert!(!line.contains('\n'));
        }
    }
}
