//! Typed values of command-line options: sizes, booleans, durations, hashes, URLs and the
//! mirror policy.
//!
//! Each parser returns a short reason on failure; the caller adds the option name and the
//! offending value so the operator sees exactly which word of the command line is wrong.

use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// A size given either in bytes or as a share of physical RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// 1..=100 percent of total RAM.
    Percent(u8),
}

impl Size {
    /// Resolves the size in bytes for a machine with `total_ram` bytes of memory.
    pub fn to_bytes(self, total_ram: u64) -> u64 {
        match self {
            Size::Bytes(b) => b,
            // p <= 100, so (total / 100) * p <= total: no overflow.
            Size::Percent(p) => (total_ram / 100).saturating_mul(u64::from(p)),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Bytes(b) => write!(f, "{b}"),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses `N`, `N[KMGT]` (binary units, optional `i`/`iB`/`B`), or `N%` (1..=100).
pub fn parse_size(s: &str) -> Result<Size, String> {
    if let Some(p) = s.strip_suffix('%') {
        let n: u8 = p
            .parse()
            .map_err(|_| "a percentage must be an integer from 1 to 100".to_string())?;
        if !(1..=100).contains(&n) {
            return Err("a percentage must be from 1 to 100".into());
        }
        return Ok(Size::Percent(n));
    }
    parse_bytes(s, 1).map(Size::Bytes)
}

/// Parses a byte count where a bare number is in `unit` bytes (1 for bytes, 1 MiB for the
/// livenet options that are documented in MiB).
pub fn parse_bytes(s: &str, unit: u64) -> Result<u64, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    if num.is_empty() {
        return Err("expected a number, optionally followed by K, M, G or T".into());
    }
    let mult: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" => unit,
        "B" => 1,
        "K" | "KB" | "KI" | "KIB" => 1 << 10,
        "M" | "MB" | "MI" | "MIB" => 1 << 20,
        "G" | "GB" | "GI" | "GIB" => 1 << 30,
        "T" | "TB" | "TI" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown size suffix {suffix:?} (use K, M, G, T or %)"
            ))
        }
    };
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_string())
}

/// Parses a transfer rate in bytes per second: a size as [`parse_bytes`] takes it (`10M`,
/// `512K`, `1G`), optionally followed by `/s`. What 0 means is the caller's (usually: no
/// limit, `NonZeroU64::new`).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_bytes(s.strip_suffix("/s").unwrap_or(s), 1)
}

/// Parses a boolean the way dracut options are written.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" | "y" => Ok(true),
        "0" | "no" | "false" | "off" | "n" => Ok(false),
        _ => Err("expected 1/yes/true/on or 0/no/false/off".into()),
    }
}

/// Longest duration any option takes: a week. Longer values are typos (or attacks on the
/// deadline arithmetic), and a boot that waits for a week has failed anyway.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a duration: plain seconds, or a number with `s`, `m` or `h`, at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    if num.is_empty() {
        return Err("expected seconds, optionally with an s, m or h suffix".into());
    }
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let mult = match suffix {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "unknown duration suffix {suffix:?} (use s, m or h)"
            ))
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| "durations are limited to 7 days (168h)".to_string())
}

/// A SHA-256 digest, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Hex(pub [u8; 32]);

impl Sha256Hex {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex digits (either case); `None` for an odd length or a non-hex character
/// (`from_str_radix` alone would take a sign).
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Parses 64 hex digits (either case).
pub fn parse_sha256(s: &str) -> Result<Sha256Hex, String> {
    if s.len() == 64 && !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 64 hex digits (0-9, a-f)".into());
    }
    if s.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, got {} characters",
            s.len()
        ));
    }
    let mut out = [0u8; 32];
    for (byte, chunk) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(chunk).map_err(|_| "not hex".to_string())?;
        *byte = u8::from_str_radix(pair, 16)
            .map_err(|_| format!("{pair:?} is not a pair of hex digits"))?;
    }
    Ok(Sha256Hex(out))
}

/// URL schemes an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// http, https, file: image sources and signatures.
    Fetchable,
    /// http, https: proxies.
    Http,
}

/// Parses an absolute URL and checks its scheme.
pub fn parse_url(s: &str, allowed: Schemes) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    let ok = match allowed {
        Schemes::Fetchable => matches!(url.scheme(), "http" | "https" | "file"),
        Schemes::Http => matches!(url.scheme(), "http" | "https"),
    };
    if !ok {
        let list = match allowed {
            Schemes::Fetchable => "http, https or file",
            Schemes::Http => "http or https",
        };
        return Err(format!(
            "unsupported scheme {:?} (use {list})",
            url.scheme()
        ));
    }
    if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

/// `rd.rustlive.mirrors`: how a node orders `rd.rustlive.url`'s mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorPolicy {
    /// Rendezvous order per node (the default: several mirrors are listed to share the load).
    #[default]
    Spread,
    /// The listed order: the first mirror is the primary, the others fallbacks.
    Listed,
}

impl MirrorPolicy {
    pub fn parse(s: &str) -> Result<MirrorPolicy, String> {
        match s {
            "spread" => Ok(MirrorPolicy::Spread),
            "listed" => Ok(MirrorPolicy::Listed),
            _ => Err("expected spread or listed".into()),
        }
    }
}

/// Checks that `s` is an absolute path without `..` components.
pub fn parse_abs_path(s: &str) -> Result<std::path::PathBuf, String> {
    if !s.starts_with('/') {
        return Err("expected an absolute path".into());
    }
    if s.split('/').any(|c| c == "..") {
        return Err("the path may not contain '..'".into());
    }
    Ok(s.into())
}

/// Checks a relative path inside the image (`rd.live.dir`, `rd.live.squashimg`).
pub fn parse_rel_path(s: &str) -> Result<String, String> {
    let t = s.trim_matches('/');
    if t.is_empty() {
        return Err("expected a non-empty path".into());
    }
    if t.split('/').any(|c| c == ".." || c == ".") {
        return Err("the path may not contain '.' or '..' components".into());
    }
    Ok(t.to_string())
}

/// A piece of a URL template such as `https://bss/{mac}.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    Text(&'a str),
    /// The name between `{` and `}`.
    Placeholder(&'a str),
}

/// A `{` without its `}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unclosed;

/// Splits a template into text and `{placeholder}` parts; callers decide which names exist.
pub fn template_parts(template: &str) -> Result<Vec<TemplatePart<'_>>, Unclosed> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some((text, after)) = rest.split_once('{') {
        let (name, tail) = after.split_once('}').ok_or(Unclosed)?;
        if !text.is_empty() {
            parts.push(TemplatePart::Text(text));
        }
        parts.push(TemplatePart::Placeholder(name));
        rest = tail;
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r = parse_rate;
        assert_eq!(r("10M"), Ok(10 << 20));
        assert_eq!(r("512K/s"), Ok(512 << 10));
        assert_eq!(r("1000"), Ok(1000));
        assert_eq!(r("0"), Ok(0));
        for bad in ["", "/s", "10Q", "-1", "1.5M"] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        let ok: &[(&str, Size)] = &[
            ("0", Size::Bytes(0)),
            ("4096", Size::Bytes(4096)),
            ("512K", Size::Bytes(512 << 10)),
            ("2M", Size::Bytes(2 << 20)),
            ("2g", Size::Bytes(2 << 30)),
            ("3GiB", Size::Bytes(3 << 30)),
            ("1T", Size::Bytes(1 << 40)),
            ("50%", Size::Percent(50)),
            ("100%", Size::Percent(100)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_size(s).as_ref(), Ok(want), "{s}");
        }
        for bad in [
            "",
            "12Q",
            "G",
            "-1",
            "0%",
            "101%",
            "x%",
            "1.5G",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn bytes_with_mib_default_unit() {
        assert_eq!(parse_bytes("512", 1 << 20), Ok(512 << 20));
        assert_eq!(parse_bytes("1G", 1 << 20), Ok(1 << 30));
    }

    #[test]
    fn percent_resolves_against_ram() {
        assert_eq!(Size::Percent(50).to_bytes(1000), 500);
        assert_eq!(Size::Bytes(7).to_bytes(1000), 7);
    }

    #[test]
    fn bools() {
        for t in ["1", "yes", "TRUE", "on"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["0", "no", "false", "Off"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in ["", "2", "maybe"] {
            assert!(parse_bool(bad).is_err());
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("168h"), Ok(MAX_DURATION));
        for bad in [
            "",
            "s",
            "1d",
            "-5",
            "1.5",
            "18446744073709551615",
            "604801",
            "169h",
            "5124095576030431h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes() {
        let h = "ab".repeat(32);
        assert_eq!(parse_sha256(&h).unwrap().to_hex(), h);
        assert_eq!(parse_sha256(&h.to_uppercase()).unwrap().to_hex(), h);
        assert!(parse_sha256(&"ab".repeat(31)).is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
        assert!(parse_sha256(&"é".repeat(32)).is_err());
        // from_str_radix alone takes a sign: "+0" would pass as a pair of digits.
        assert!(parse_sha256(&"+0".repeat(32)).is_err());
        assert!(parse_sha256(&format!("-1{}", "0".repeat(62))).is_err());
    }

    #[test]
    fn urls() {
        assert!(parse_url("http://10.0.0.1/img", Schemes::Fetchable).is_ok());
        assert!(parse_url("https://h/img", Schemes::Fetchable).is_ok());
        assert!(parse_url("file:///images/root.squashfs", Schemes::Fetchable).is_ok());
        assert!(parse_url("ftp://h/img", Schemes::Fetchable).is_err());
        assert!(parse_url("nfs://h/img", Schemes::Fetchable).is_err());
        assert!(parse_url("/img", Schemes::Fetchable).is_err());
        assert!(parse_url("http://", Schemes::Fetchable).is_err());
        assert!(parse_url("file:///x", Schemes::Http).is_err());
    }

    #[test]
    fn templates() {
        use TemplatePart::{Placeholder as P, Text as T};
        assert_eq!(
            template_parts("https://h/{mac}/x{uuid}"),
            Ok(vec![T("https://h/"), P("mac"), T("/x"), P("uuid")])
        );
        assert_eq!(template_parts("{a}{b}"), Ok(vec![P("a"), P("b")]));
        assert_eq!(template_parts("plain"), Ok(vec![T("plain")]));
        assert_eq!(template_parts("x/{mac.json"), Err(Unclosed));
    }

    #[test]
    fn paths() {
        assert!(parse_abs_path("/etc/ca.pem").is_ok());
        assert!(parse_abs_path("etc/ca.pem").is_err());
        assert!(parse_abs_path("/etc/../x").is_err());
        assert_eq!(parse_rel_path("/LiveOS/"), Ok("LiveOS".into()));
        assert!(parse_rel_path("../x").is_err());
        assert!(parse_rel_path("").is_err());
    }
}
