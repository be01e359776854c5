//! Logging: `log` records go to `/dev/kmsg` (so they interleave with the kernel's and reach the
//! console and the journal) when rustlive boots a node, or to stderr when kmsg is not writable,
//! for the subcommands an operator runs by hand, or when the environment says
//! `RUSTLIVE_LOG=stderr` (`RUSTLIVE_LOG=kmsg` forces the kernel log).
//!
//! The kernel rate-limits each open `/dev/kmsg` file to 10 lines per 5 s unless booted with
//! `printk.devkmsg=on`, and silently drops the rest: so every line is written through a freshly
//! opened kmsg (its own rate-limit state) rather than one long-lived descriptor.
//!
//! Lines carry the `rustlive` prefix. Nothing here knows about secrets: callers never pass secret
//! values to a log macro, and URLs go through [`redact_url`] first.
//!
//! One rule for values from outside (a server's headers and documents, an image, a bundle, the
//! command line, DHCP): they are escaped before they reach a line, so a registry cannot clear
//! the console or forge a `rustlive: error:` line. Call sites wrap such a value in [`Escaped`]
//! (error messages too, which may be shown elsewhere); and the logger escapes the control
//! characters of every whole line once more before it goes to kmsg, stderr or the collector
//! ([`clean_line`]), so the rule holds even where a call site forgot.
//!
//! When a collector is configured (`rd.rustlive.syslog`), each line printed here is also handed,
//! as the same text, to [`crate::support::syslog`], tagged with the boot [`Stage`] it belongs to.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The stage of `rustlive boot` a log line belongs to (the collector files lines by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Boot = 0,
    Config,
    Fetch,
    Assemble,
    Secrets,
    SwitchRoot,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Boot,
        Stage::Config,
        Stage::Fetch,
        Stage::Assemble,
        Stage::Secrets,
        Stage::SwitchRoot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Boot => "boot",
            Stage::Config => "config",
            Stage::Fetch => "fetch",
            Stage::Assemble => "assemble",
            Stage::Secrets => "secrets",
            Stage::SwitchRoot => "switch-root",
        }
    }
}

static STAGE: AtomicU8 = AtomicU8::new(Stage::Boot as u8);

/// Marks the start of a stage: later lines (the stage's failure reason included) carry it.
pub fn set_stage(s: Stage) {
    STAGE.store(s as u8, Ordering::Relaxed);
}

/// The current stage.
pub fn stage() -> Stage {
    let i = usize::from(STAGE.load(Ordering::Relaxed));
    Stage::ALL.get(i).copied().unwrap_or(Stage::Boot)
}

#[derive(Clone, Copy)]
enum Sink {
    Kmsg,
    Stderr,
}

struct Logger {
    sink: Sink,
}

impl Log for Logger {
    // The level is `log`'s global maximum alone ([`set_debug`]): no second copy to keep in step.
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = r.args().to_string();
        let lines = Lines::render(r.level(), &text, std::process::id());
        let on_kmsg = match self.sink {
            Sink::Kmsg => write_kmsg(&lines.kmsg),
            Sink::Stderr => false,
        };
        if !on_kmsg {
            let _ = std::io::stderr().lock().write_all(lines.stderr.as_bytes());
        }
        // The same text as the console's, so the same redaction and escaping.
        if crate::support::syslog::accepting() {
            crate::support::syslog::record(crate::support::syslog::Entry::new(
                r.level(),
                stage().name(),
                lines.msg,
            ));
        }
    }

    fn flush(&self) {}
}

/// One record as each sink gets it, from the message's control-free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines {
    /// The message, control characters escaped ([`clean_line`]): what the collector gets.
    pub msg: String,
    /// The `/dev/kmsg` record: `<PRIO>rustlive[PID]: MSG\n` (one write, one record; the
    /// fixed name keeps module paths off the console and lets journald file it under
    /// `rustlive`).
    pub kmsg: String,
    /// The stderr line: `rustlive: [error: |warning: ]MSG\n`.
    pub stderr: String,
}

impl Lines {
    pub fn render(level: Level, text: &str, pid: u32) -> Lines {
        let msg = clean_line(text).into_owned();
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 5,
            Level::Debug => 6,
            Level::Trace => 7,
        };
        let tag = match level {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        Lines {
            kmsg: format!("<{prio}>rustlive[{pid}]: {msg}\n"),
            stderr: format!("rustlive: {tag}{msg}\n"),
            msg,
        }
    }
}

/// Writes one record through a freshly opened `/dev/kmsg` (its own rate-limit state); false
/// when it cannot be opened or refuses the record (then the line goes to stderr instead).
fn write_kmsg(record: &str) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| k.write_all(record.as_bytes()))
        .is_ok()
}

/// Whether `c` must not reach a terminal or a log file as it is: the C0 and C1 controls and
/// DEL (what moves a cursor, clears a screen, ends a line), and the invisible format
/// characters that reorder or hide text (bidi overrides, zero-width characters, line and
/// paragraph separators, the byte-order mark).
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
}

/// `\xNN` for an ASCII control, `\u{NNNN}` for the others.
fn write_escape(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    let n = u32::from(c);
    if n < 0x80 {
        write!(out, "\\x{n:02x}")
    } else {
        write!(out, "\\u{{{n:04x}}}")
    }
}

/// A value from outside (a server, an image, a bundle, the command line), fit for a log line
/// or an error message: every character [`needs_escape`] names is written as `\xNN` or
/// `\u{NNNN}` and a backslash as `\\` (so an escape in the value cannot pass for one of
/// ours); printable text, UTF-8 included, is kept.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c == '\\' {
                f.write_str("\\\\")?;
            } else if needs_escape(c) {
                write_escape(f, c)?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// [`Escaped`] as a `String`.
pub fn escaped(s: &str) -> String {
    Escaped(s).to_string()
}

/// The logger's last line of defence: the characters [`needs_escape`] names, escaped in a
/// whole formatted line. Backslashes are kept, so a field already [`Escaped`] is not escaped
/// twice; a line without such characters is returned as it is.
pub fn clean_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().saturating_add(16));
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Where log lines should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/dev/kmsg` when writable, else stderr.
    Kmsg,
    Stderr,
}

/// Installs the logger; the first call decides the target, later calls only the level.
pub fn init(target: Target, debug: bool) {
    // RUSTLIVE_LOG=stderr keeps a run by hand or a test off the host's kernel log.
    let target = match std::env::var_os("RUSTLIVE_LOG") {
        Some(v) if v == "stderr" => Target::Stderr,
        Some(v) if v == "kmsg" => Target::Kmsg,
        _ => target,
    };
    let logger = LOGGER.get_or_init(|| {
        let kmsg_writable = crate::sys::fs::is_writable(std::path::Path::new("/dev/kmsg"));
        let sink = match target {
            Target::Kmsg if kmsg_writable => Sink::Kmsg,
            _ => Sink::Stderr,
        };
        Logger { sink }
    });
    let _ = log::set_logger(logger);
    set_debug(debug);
}

/// Turns debug lines on or off (`rd.rustlive.debug` is known only once the config is parsed).
pub fn set_debug(debug: bool) {
    log::set_max_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// A URL fit for a log line: no user, password, query or fragment.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let had_query = u.query().is_some();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    // A parsed URL serializes without controls; cleaned all the same, as every outside value.
    let mut s = clean_line(u.as_str()).into_owned();
    if had_query {
        s.push_str("?…");
    }
    s
}

/// [`redact_url`] for text that may hold one or several URLs, parsable or not (a bad
/// command-line value, a comma-separated mirror list): each word between commas, whitespace and
/// quotes is redacted on its own, so a second URL's password is not taken for the first one's
/// path. Control characters come out escaped ([`clean_line`]).
pub fn redact_url_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    for c in s.chars() {
        if c == ',' || c == '"' || c == '\'' || c.is_whitespace() {
            out.push_str(&redact_word(&word));
            word.clear();
            out.push_str(&clean_line(c.encode_utf8(&mut [0; 4])));
        } else {
            word.push(c);
        }
    }
    out.push_str(&redact_word(&word));
    out
}

/// One URL-like word: anything between `://` and `@` and everything from `?` or `#` on goes.
fn redact_word(s: &str) -> String {
    if let Ok(u) = reqwest::Url::parse(s) {
        if u.has_host() {
            return redact_url(&u);
        }
    }
    let mut out = s.to_string();
    if let Some(q) = out.find(['?', '#']) {
        out.truncate(q);
        out.push_str("?…");
    }
    if let Some((scheme, rest)) = out.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some((_userinfo, host)) = authority.rsplit_once('@') {
            let path = rest.get(authority.len()..).unwrap_or_default();
            out = format!("{scheme}://{host}{path}");
        }
    }
    clean_line(&out).into_owned()
}

/// Human-readable byte count in MiB with one decimal, as used in progress lines.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn outside_values_are_escaped() {
        assert_eq!(
            escaped("a\x1b[2Jb\rc\0d\x07e\x7f\u{85}\u{202e}é✓"),
            "a\\x1b[2Jb\\x0dc\\x00d\\x07e\\x7f\\u{0085}\\u{202e}é✓"
        );
        // A backslash in the value cannot pass for an escape.
        assert_eq!(escaped("\\x1b"), "\\\\x1b");
        assert_eq!(
            escaped("application/vnd.oci.image.manifest.v1+json"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        // The logger's pass leaves an escaped field as it is.
        let field = escaped("x\x1by");
        assert_eq!(
            clean_line(&format!("layer {field}")),
            format!("layer {field}")
        );
        assert_eq!(
            clean_line("fake\nrustlive: error: forged"),
            "fake\\x0arustlive: error: forged"
        );
    }

    #[test]
    fn redaction_escapes_too() {
        assert_eq!(redact_url_str("htp://h/\x1b[2J?q=1"), "htp://h/%1B[2J?…");
        assert_eq!(
            redact_url_str("https://u:pw@[bad/\x1b[2J?q=1"),
            "https://[bad/\\x1b[2J?…"
        );
        assert_eq!(redact_url_str("a\rb"), "a\\x0db");
        let u = reqwest::Url::parse("oci://h/x\\y").unwrap();
        assert!(!redact_url(&u).chars().any(needs_escape));
    }

    /// No control character of a message reaches any sink: kmsg, stderr, the collector's UDP
    /// and TCP frames; only the line terminator the sink itself adds.
    fn assert_clean(text: &str) -> Result<(), TestCaseError> {
        for level in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            let l = Lines::render(level, text, 4242);
            for line in [&l.kmsg, &l.stderr] {
                let body = line.strip_suffix('\n').unwrap_or(line);
                prop_assert!(line.ends_with('\n'));
                prop_assert!(
                    !body.bytes().any(|b| b < 0x20 || b == 0x7f),
                    "control byte in {:?}",
                    line
                );
                prop_assert!(!body.chars().any(needs_escape), "{:?}", line);
            }
            prop_assert!(!l.msg.chars().any(needs_escape));
            let entry = crate::support::syslog::Entry::new(level, "fetch", l.msg.clone());
            let msg = crate::support::syslog::format(&entry, "node\x1b1", 4242);
            for t in [
                crate::support::syslog::Transport::Udp,
                crate::support::syslog::Transport::Tcp,
            ] {
                let frame = crate::support::syslog::frame(t, &msg);
                prop_assert!(
                    !frame.iter().any(|&b| b < 0x20 || b == 0x7f),
                    "control byte in {:?}",
                    String::from_utf8_lossy(&frame)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn every_control_byte_is_kept_off_every_sink() {
        let all: String = (0u32..0x100)
            .chain([0x200b, 0x202e, 0x2028, 0x2066, 0xfeff])
            .filter_map(char::from_u32)
            .collect();
        assert_clean(&all).unwrap();
        assert_clean(&format!("manifest {} has no layer", Escaped(&all))).unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_reaches_a_sink_with_a_control_byte(
            text in proptest::collection::vec(
                prop_oneof![
                    (0u8..0x20).prop_map(char::from),
                    Just('\x7f'),
                    (0x80u32..0xa0).prop_map(|n| char::from_u32(n).unwrap()),
                    any::<char>(),
                    "[ -~]".prop_map(|s| s.chars().next().unwrap()),
                ],
                0..200,
            ).prop_map(|v| v.into_iter().collect::<String>())
        ) {
            assert_clean(&text)?;
            assert_clean(&escaped(&text))?;
            assert_clean(&redact_url_str(&text))?;
            // Escaping is lossless: printable text is kept as it is.
            if !text.contains('\\') && !text.chars().any(needs_escape) {
                prop_assert_eq!(escaped(&text), text.clone());
            }
        }
    }

    #[test]
    fn stages_round_trip() {
        for s in Stage::ALL {
            set_stage(s);
            assert_eq!(stage(), s);
        }
        set_stage(Stage::Boot);
        assert_eq!(Stage::SwitchRoot.name(), "switch-root");
    }

    #[test]
    fn redacts_userinfo_and_query() {
        let u = reqwest::Url::parse("https://bob:hunter2@h.example/x/img?token=abc#f").unwrap();
        let r = redact_url(&u);
        assert_eq!(r, "https://h.example/x/img?…");
        assert!(!r.contains("hunter2") && !r.contains("bob") && !r.contains("abc"));
    }

    #[test]
    fn plain_url_is_unchanged() {
        let u = reqwest::Url::parse("http://10.0.0.1/img.squashfs").unwrap();
        assert_eq!(redact_url(&u), "http://10.0.0.1/img.squashfs");
    }

    #[test]
    fn redacts_unparsable_strings() {
        for (input, want) in [
            ("htp://u:pw@host/p?t=1", "htp://host/p?…"),
            ("https://u:pw@[bad/x", "https://[bad/x"),
            ("ftp://host/p", "ftp://host/p"),
            ("no url at all", "no url at all"),
            ("x?secret", "x?…"),
            (
                "http://u:pw1@a/x,https://v:pw2@b/y?k=1",
                "http://a/x,https://b/y?…",
            ),
            ("root=live:http://u:pw@h/i q", "root=live:http://h/i q"),
        ] {
            assert_eq!(redact_url_str(input), want, "{input}");
        }
    }
}
