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
//! When a collector is configured (`rd.rustlive.syslog`), each line printed here is also handed,
//! as the same text, to [`crate::support::syslog`], tagged with the boot [`Stage`] it belongs to.

use log::{Level, LevelFilter, Log, Metadata, Record};
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
        // kernlog prints `<prio>TARGET[pid]: msg`; a fixed target keeps module paths out
        // of the console and lets journald file the lines under `rustlive`.
        let kmsg = match self.sink {
            Sink::Kmsg => kernlog::KernelLog::with_level(LevelFilter::Trace).ok(),
            Sink::Stderr => None,
        };
        match kmsg {
            Some(k) => k.log(
                &Record::builder()
                    .args(*r.args())
                    .level(r.level())
                    .target("rustlive")
                    .build(),
            ),
            None => {
                let tag = match r.level() {
                    Level::Error => "error: ",
                    Level::Warn => "warning: ",
                    _ => "",
                };
                let _ = writeln!(std::io::stderr().lock(), "rustlive: {tag}{}", r.args());
            }
        }
        // The same text as the console's, so the same redaction.
        if crate::support::syslog::accepting() {
            crate::support::syslog::record(crate::support::syslog::Entry::new(
                r.level(),
                stage().name(),
                r.args().to_string(),
            ));
        }
    }

    fn flush(&self) {}
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
    let mut s = u.to_string();
    if had_query {
        s.push_str("?…");
    }
    s
}

/// [`redact_url`] for text that may hold one or several URLs, parsable or not (a bad
/// command-line value, a comma-separated mirror list): each word between commas, whitespace and
/// quotes is redacted on its own, so a second URL's password is not taken for the first one's
/// path.
pub fn redact_url_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    for c in s.chars() {
        if c == ',' || c == '"' || c == '\'' || c.is_whitespace() {
            out.push_str(&redact_word(&word));
            word.clear();
            out.push(c);
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
    out
}

/// Human-readable byte count in MiB with one decimal, as used in progress lines.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
