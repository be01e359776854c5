//! The secrets bundle, format 1 (`docs/reference/secrets-bundle.md`): parsing and validation.
//!
//! `#[derive(Deserialize)]` is deliberately not used for the bundle: serde's generated errors
//! quote the offending input (`invalid type: string "…"`, `unknown field `…``), and a bundle's
//! values are secrets. Instead the JSON is read into a small [`Node`] tree (only syntax errors,
//! which carry a line and column and no text, can fail there), whose strings are zeroed on drop
//! and whose objects keep duplicate keys, and [`parse`] checks every rule itself: unknown fields
//! and duplicates are refused as `deny_unknown_fields` would, and each error names the entry
//! index and the rule broken, never a value.

use super::owners::{Accounts, Id};
use base64::Engine;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_SIZE: usize = 1 << 20;
/// The only format version this rustlive reads.
pub const VERSION: u64 = 1;
/// Mode of an entry that does not give one.
pub const DEFAULT_MODE: u32 = 0o600;
/// Top-level directories that are not part of the root image (kernel filesystems, and `/run`,
/// which survives switch-root).
pub const FORBIDDEN_TOP: &[&str] = &["proc", "sys", "dev", "run"];

const ENTRY_FIELDS: &[&str] = &["path", "mode", "owner", "group", "content_base64"];
const TOP_FIELDS: &[&str] = &["version", "files"];
const PATH_MAX: usize = 4095;
const NAME_MAX: usize = 255;

/// One validated file of the bundle, owners resolved against the new root.
pub struct Entry {
    /// Absolute and normalized (checked by [`check_path`]).
    pub path: String,
    /// Permission bits only (no setuid, setgid or sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Entry {
    // Written by hand so that `{:?}` of an entry, or of a Vec of them, never prints the content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("path", &self.path)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .finish()
    }
}

/// The bundle is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is over the {} MiB limit", MAX_BUNDLE_SIZE >> 20)]
    TooLarge,
    #[error("the bundle is not valid JSON (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("the bundle must be a JSON object with \"version\" and \"files\"")]
    NotObject,
    #[error("unknown top-level field {0}")]
    UnknownField(FieldName),
    #[error("top-level field {0} appears more than once")]
    DuplicateField(FieldName),
    #[error("\"version\" is missing")]
    NoVersion,
    #[error("unsupported version {0} (this rustlive reads version {VERSION})")]
    Version(String),
    #[error("\"files\" is missing or not an array")]
    NoFiles,
    #[error("files[{index}]{}: {rule}", path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Entry {
        index: usize,
        /// The entry's path, only when it passed the path rules (so it is known to be a path).
        path: Option<String>,
        rule: Rule,
    },
}

/// The rule an entry breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("an entry must be a JSON object")]
    NotObject,
    #[error("unknown field {0} (allowed: path, mode, owner, group, content_base64)")]
    UnknownField(FieldName),
    #[error("field {0} appears more than once")]
    DuplicateField(FieldName),
    #[error("\"{0}\" is missing")]
    Missing(&'static str),
    #[error("\"{field}\" must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("path must be absolute")]
    PathNotAbsolute,
    #[error("path must not contain NUL or other control characters")]
    PathControl,
    #[error("path must be normalized (no empty, \".\" or \"..\" component, no trailing slash)")]
    PathNotNormalized,
    #[error("path must name a file, not /")]
    PathIsRoot,
    #[error("path is too long")]
    PathTooLong,
    #[error("path is under /{0}, which is not part of the root image")]
    PathForbidden(&'static str),
    #[error("mode must be 3 or 4 octal digits, like \"0600\"")]
    ModeSyntax,
    #[error("setuid, setgid and sticky bits are refused")]
    ModeSpecialBits,
    #[error("\"{0}\" must be a user or group name, or a number below 4294967295")]
    IdSyntax(&'static str),
    // The name is not quoted: a bundle's values may be secret-adjacent (a mistyped field holding
    // key material), so errors name the entry and the rule only.
    #[error("owner is not a user in the new root's /etc/passwd")]
    UnknownOwner,
    #[error("group is not a group in the new root's /etc/group")]
    UnknownGroup,
    #[error("content_base64 is not valid standard base64 (RFC 4648, padded)")]
    Base64,
    #[error("path duplicates files[{0}]")]
    DuplicatePath(usize),
    #[error("path is below files[{0}], which is a file")]
    NestedPath(usize),
}

/// A JSON key as it may appear in an error: shown only when it looks like a field name (a typo
/// of ours), since anything else could be a value pasted in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldName(Option<String>);

impl FieldName {
    fn new(key: &str) -> FieldName {
        let shown = !key.is_empty()
            && key.len() <= 32
            && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        FieldName(shown.then(|| key.to_string()))
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(k) => write!(f, "\"{k}\""),
            None => f.write_str("(name not shown)"),
        }
    }
}

/// A parsed JSON value. Strings are zeroed when dropped; objects keep their keys in order,
/// duplicates included, so that a duplicate can be refused rather than silently overwritten.
enum Node {
    Null,
    Bool,
    UInt(u64),
    /// A negative or fractional number: never valid anywhere in the bundle.
    OtherNumber,
    Str(Zeroizing<String>),
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool => "a boolean",
            Node::UInt(_) | Node::OtherNumber => "a number",
            Node::Str(_) => "a string",
            Node::Arr(_) => "an array",
            Node::Obj(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Accepts every JSON value, so the only errors serde_json can produce are syntax errors.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Bool)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(u64::try_from(v).map_or(Node::OtherNumber, Node::UInt))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::OtherNumber)
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = seq.next_element()? {
            v.push(n);
        }
        Ok(Node::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            v.push((k, map.next_value()?));
        }
        Ok(Node::Obj(v))
    }
}

fn read_tree(text: &[u8]) -> Result<Node, BundleError> {
    serde_json::from_slice(text).map_err(|e| BundleError::Json {
        line: e.line(),
        column: e.column(),
    })
}

/// The fields of an object by name, refusing unknown and repeated keys.
fn fields<'a, E>(
    obj: &'a [(String, Node)],
    allowed: &[&'static str],
    unknown: impl Fn(FieldName) -> E,
    duplicate: impl Fn(FieldName) -> E,
) -> Result<Vec<(&'static str, &'a Node)>, E> {
    let mut out: Vec<(&'static str, &Node)> = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        let Some(name) = allowed.iter().find(|a| **a == k) else {
            return Err(unknown(FieldName::new(k)));
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(duplicate(FieldName::new(k)));
        }
        out.push((name, v));
    }
    Ok(out)
}

fn get<'a>(fields: &[(&'static str, &'a Node)], name: &str) -> Option<&'a Node> {
    fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Parses and validates a whole bundle; owners and groups are resolved with `accounts` (the new
/// root's). Nothing is returned unless every entry is valid.
pub fn parse(text: &[u8], accounts: &Accounts) -> Result<Vec<Entry>, BundleError> {
    if text.len() > MAX_BUNDLE_SIZE {
        return Err(BundleError::TooLarge);
    }
    let tree = read_tree(text)?;
    let Node::Obj(top) = &tree else {
        return Err(BundleError::NotObject);
    };
    let top = fields(
        top,
        TOP_FIELDS,
        BundleError::UnknownField,
        BundleError::DuplicateField,
    )?;
    match get(&top, "version") {
        None => return Err(BundleError::NoVersion),
        Some(Node::UInt(VERSION)) => {}
        Some(Node::UInt(n)) => return Err(BundleError::Version(n.to_string())),
        Some(other) => return Err(BundleError::Version(format!("({})", other.kind()))),
    }
    let Some(Node::Arr(files)) = get(&top, "files") else {
        return Err(BundleError::NoFiles);
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(files.len());
    let mut seen = BTreeMap::new();
    for (index, node) in files.iter().enumerate() {
        let entry = parse_entry(node, accounts, index)?;
        check_overlap(&seen, &entry.path).map_err(|rule| BundleError::Entry {
            index,
            path: Some(entry.path.clone()),
            rule,
        })?;
        seen.insert(entry.path.clone(), index);
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_entry(node: &Node, accounts: &Accounts, index: usize) -> Result<Entry, BundleError> {
    let fail = |path: Option<&str>, rule| BundleError::Entry {
        index,
        path: path.map(str::to_string),
        rule,
    };
    let Node::Obj(obj) = node else {
        return Err(fail(None, Rule::NotObject));
    };
    let f = fields(obj, ENTRY_FIELDS, Rule::UnknownField, Rule::DuplicateField)
        .map_err(|r| fail(None, r))?;

    let path = match get(&f, "path") {
        None => return Err(fail(None, Rule::Missing("path"))),
        Some(Node::Str(s)) => s.as_str(),
        Some(_) => return Err(fail(None, wrong("path", "a string"))),
    };
    check_path(path).map_err(|r| fail(None, r))?;
    let here = |rule| fail(Some(path), rule);

    let mode = match get(&f, "mode") {
        None => DEFAULT_MODE,
        Some(Node::Str(s)) => parse_mode(s).map_err(here)?,
        Some(_) => return Err(here(wrong("mode", "an octal string like \"0600\""))),
    };
    let owner = id_field(get(&f, "owner"), "owner").map_err(here)?;
    let group = id_field(get(&f, "group"), "group").map_err(here)?;
    let content = match get(&f, "content_base64") {
        None => return Err(here(Rule::Missing("content_base64"))),
        Some(Node::Str(s)) => decode_base64(s).map_err(here)?,
        Some(_) => return Err(here(wrong("content_base64", "a string"))),
    };
    let uid = accounts
        .uid(&owner)
        .ok_or_else(|| here(Rule::UnknownOwner))?;
    let gid = accounts
        .gid(&group)
        .ok_or_else(|| here(Rule::UnknownGroup))?;
    Ok(Entry {
        path: path.to_string(),
        mode,
        uid,
        gid,
        content,
    })
}

fn wrong(field: &'static str, expected: &'static str) -> Rule {
    Rule::WrongType { field, expected }
}

fn id_field(node: Option<&Node>, field: &'static str) -> Result<Id, Rule> {
    match node {
        None => Ok(Id::Name("root".into())),
        Some(Node::UInt(n)) => u32::try_from(*n)
            .ok()
            .filter(|n| *n != u32::MAX)
            .map(Id::Num)
            .ok_or(Rule::IdSyntax(field)),
        Some(Node::Str(s)) => Id::parse(s).ok_or(Rule::IdSyntax(field)),
        Some(_) => Err(Rule::IdSyntax(field)),
    }
}

/// Checks that `path` is absolute, normalized and outside the kernel filesystems and /run.
pub fn check_path(path: &str) -> Result<(), Rule> {
    // NUL cannot be in a file name; other control characters would let a path forge log lines.
    if path.chars().any(char::is_control) {
        return Err(Rule::PathControl);
    }
    let Some(rel) = path.strip_prefix('/') else {
        return Err(Rule::PathNotAbsolute);
    };
    if rel.is_empty() {
        return Err(Rule::PathIsRoot);
    }
    if path.len() > PATH_MAX {
        return Err(Rule::PathTooLong);
    }
    for c in rel.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(Rule::PathNotNormalized);
        }
        if c.len() > NAME_MAX {
            return Err(Rule::PathTooLong);
        }
    }
    let top = rel.split('/').next().unwrap_or_default();
    if let Some(t) = FORBIDDEN_TOP.iter().find(|t| **t == top) {
        return Err(Rule::PathForbidden(t));
    }
    Ok(())
}

/// Parses a mode written as 3 or 4 octal digits and refuses the setuid, setgid and sticky bits.
pub fn parse_mode(s: &str) -> Result<u32, Rule> {
    if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(Rule::ModeSyntax);
    }
    let mode = u32::from_str_radix(s, 8).map_err(|_| Rule::ModeSyntax)?;
    if mode & 0o7000 != 0 {
        return Err(Rule::ModeSpecialBits);
    }
    Ok(mode)
}

/// Decodes into a buffer that is zeroed on drop, failure included.
fn decode_base64(s: &str) -> Result<Zeroizing<Vec<u8>>, Rule> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut buf = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(s.len())]);
    // The decoder's own error quotes the offending byte and offset: it is dropped here.
    let n = engine.decode_slice(s, &mut buf).map_err(|_| Rule::Base64)?;
    buf.truncate(n);
    Ok(buf)
}

/// Refuses a path equal to an earlier entry's, or one that needs an earlier file to be a
/// directory (or the reverse). `earlier` maps paths to entry indexes; lookups are by prefix so a
/// bundle of many small entries stays linear-logarithmic.
fn check_overlap(earlier: &BTreeMap<String, usize>, path: &str) -> Result<(), Rule> {
    if let Some(i) = earlier.get(path) {
        return Err(Rule::DuplicatePath(*i));
    }
    // An earlier file at one of this path's ancestors.
    for (end, _) in path.match_indices('/').skip(1) {
        if let Some(i) = earlier.get(&path[..end]) {
            return Err(Rule::NestedPath(*i));
        }
    }
    // An earlier file below this path: the first key after "path/" starts with it if any does.
    let dir = format!("{path}/");
    match earlier.range(dir.clone()..).next() {
        Some((p, i)) if p.starts_with(&dir) => Err(Rule::NestedPath(*i)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64_HELLO: &str = "aGVsbG8="; // "hello"

    fn accounts() -> Accounts {
        Accounts::parse(
            "root:x:0:0:root:/root:/bin/sh\nmunge:x:998:997::/run/munge:/sbin/nologin\n",
            "root:x:0:\nmunge:x:997:\n",
        )
    }

    fn bundle(entry: &str) -> String {
        format!(r#"{{"version": 1, "files": [{entry}]}}"#)
    }

    fn one(entry: &str) -> Result<Vec<Entry>, BundleError> {
        parse(bundle(entry).as_bytes(), &accounts())
    }

    /// The rule broken by the single entry of a bundle.
    fn rule(entry: &str) -> Rule {
        match one(entry) {
            Err(BundleError::Entry { index: 0, rule, .. }) => rule,
            other => panic!("expected an entry error, got {other:?}"),
        }
    }

    #[test]
    fn valid_entry_with_defaults() {
        let e = one(&format!(
            r#"{{"path": "/etc/x", "content_base64": "{B64_HELLO}"}}"#
        ))
        .unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "/etc/x");
        assert_eq!(e[0].mode, 0o600);
        assert_eq!((e[0].uid, e[0].gid), (0, 0));
        assert_eq!(e[0].content.as_slice(), b"hello");
    }

    #[test]
    fn valid_entry_with_names_and_numbers() {
        let e = one(&format!(
            r#"{{"path": "/etc/munge/munge.key", "mode": "0400", "owner": "munge", "group": "munge", "content_base64": "{B64_HELLO}"}},
               {{"path": "/etc/y", "mode": "644", "owner": 1234, "group": "4321", "content_base64": ""}}"#
        ))
        .unwrap();
        assert_eq!((e[0].mode, e[0].uid, e[0].gid), (0o400, 998, 997));
        assert_eq!((e[1].mode, e[1].uid, e[1].gid), (0o644, 1234, 4321));
        assert!(e[1].content.is_empty());
    }

    #[test]
    fn empty_file_list_is_valid() {
        assert!(parse(br#"{"version":1,"files":[]}"#, &accounts())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn top_level_rules() {
        let a = accounts();
        let p = |s: &str| parse(s.as_bytes(), &a).unwrap_err();
        assert_eq!(
            p(r#"{"version": 2, "files": []}"#),
            BundleError::Version("2".into())
        );
        assert_eq!(
            p(r#"{"version": "1", "files": []}"#),
            BundleError::Version("(a string)".into())
        );
        assert_eq!(p(r#"{"files": []}"#), BundleError::NoVersion);
        assert_eq!(p(r#"{"version": 1}"#), BundleError::NoFiles);
        assert_eq!(p(r#"{"version": 1, "files": {}}"#), BundleError::NoFiles);
        assert_eq!(p(r#"[1]"#), BundleError::NotObject);
        assert_eq!(
            p(r#"{"version": 1, "files": [], "comment": "x"}"#),
            BundleError::UnknownField(FieldName(Some("comment".into())))
        );
        assert_eq!(
            p(r#"{"version": 1, "version": 1, "files": []}"#),
            BundleError::DuplicateField(FieldName(Some("version".into())))
        );
        assert!(matches!(
            p(r#"{"version": 1,"#),
            BundleError::Json { line: 1, .. }
        ));
        assert!(matches!(p("\u{feff}{}"), BundleError::Json { .. }));
        let big = vec![b' '; MAX_BUNDLE_SIZE + 1];
        assert_eq!(parse(&big, &a).unwrap_err(), BundleError::TooLarge);
    }

    #[test]
    fn entry_must_be_an_object() {
        assert_eq!(rule(r#""/etc/x""#), Rule::NotObject);
    }

    #[test]
    fn unknown_and_duplicate_fields() {
        assert_eq!(
            rule(r#"{"path": "/etc/x", "content_base64": "", "contents": "x"}"#),
            Rule::UnknownField(FieldName(Some("contents".into())))
        );
        assert_eq!(
            rule(r#"{"path": "/etc/x", "content_base64": "", "mode": "0600", "mode": "0644"}"#),
            Rule::DuplicateField(FieldName(Some("mode".into())))
        );
        // A key that does not look like a field name could be a misplaced secret.
        let r = rule(r#"{"path": "/etc/x", "content_base64": "", "c2VjcmV0Cg==": 1}"#);
        assert_eq!(r, Rule::UnknownField(FieldName(None)));
        assert!(!r.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn missing_fields() {
        assert_eq!(rule(r#"{"content_base64": ""}"#), Rule::Missing("path"));
        assert_eq!(
            rule(r#"{"path": "/etc/x"}"#),
            Rule::Missing("content_base64")
        );
    }

    #[test]
    fn wrong_types() {
        assert!(matches!(
            rule(r#"{"path": 5, "content_base64": ""}"#),
            Rule::WrongType { field: "path", .. }
        ));
        assert!(matches!(
            rule(r#"{"path": "/etc/x", "mode": 384, "content_base64": ""}"#),
            Rule::WrongType { field: "mode", .. }
        ));
        assert!(matches!(
            rule(r#"{"path": "/etc/x", "content_base64": 12345}"#),
            Rule::WrongType {
                field: "content_base64",
                ..
            }
        ));
        assert_eq!(
            rule(r#"{"path": "/etc/x", "owner": true, "content_base64": ""}"#),
            Rule::IdSyntax("owner")
        );
        assert_eq!(
            rule(r#"{"path": "/etc/x", "group": -1, "content_base64": ""}"#),
            Rule::IdSyntax("group")
        );
        assert_eq!(
            rule(r#"{"path": "/etc/x", "owner": 4294967295, "content_base64": ""}"#),
            Rule::IdSyntax("owner")
        );
    }

    #[test]
    fn path_rules() {
        assert_eq!(check_path("etc/x"), Err(Rule::PathNotAbsolute));
        assert_eq!(check_path(""), Err(Rule::PathNotAbsolute));
        assert_eq!(check_path("/"), Err(Rule::PathIsRoot));
        for p in [
            "/etc/\0x",
            "/etc/x\nrustlive: forged",
            "/etc/\u{1b}[2J",
            "/etc/\u{85}",
        ] {
            assert_eq!(check_path(p), Err(Rule::PathControl), "{p:?}");
        }
        assert_eq!(check_path("/etc/clé"), Ok(()));
        for p in [
            "/etc/../x",
            "/../x",
            "/etc/./x",
            "/etc//x",
            "/etc/x/",
            "/..",
        ] {
            assert_eq!(check_path(p), Err(Rule::PathNotNormalized), "{p}");
        }
        for (p, top) in [
            ("/proc/x", "proc"),
            ("/sys/a/b", "sys"),
            ("/dev/x", "dev"),
            ("/run/secret", "run"),
        ] {
            assert_eq!(check_path(p), Err(Rule::PathForbidden(top)), "{p}");
        }
        assert_eq!(
            check_path(&format!("/{}", "a".repeat(256))),
            Err(Rule::PathTooLong)
        );
        assert_eq!(check_path(&"/abc".repeat(1100)), Err(Rule::PathTooLong));
        for p in [
            "/etc/x",
            "/running/x",
            "/etc/ssh/ssh_host_ed25519_key",
            "/x..y",
            "/.k",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
        assert_eq!(
            rule(r#"{"path": "/etc/../../x", "content_base64": ""}"#),
            Rule::PathNotNormalized
        );
    }

    #[test]
    fn mode_parsing() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0400"), Ok(0o400));
        assert_eq!(parse_mode("0777"), Ok(0o777));
        assert_eq!(parse_mode("000"), Ok(0));
        for bad in [
            "",
            "6",
            "60",
            "06000",
            "0800",
            "rw-------",
            "0x600",
            " 600",
            "+600",
            "0o60",
        ] {
            assert_eq!(parse_mode(bad), Err(Rule::ModeSyntax), "{bad:?}");
        }
        for special in ["4755", "2755", "1777", "7000", "4000"] {
            assert_eq!(parse_mode(special), Err(Rule::ModeSpecialBits), "{special}");
        }
        assert_eq!(
            rule(r#"{"path": "/etc/x", "mode": "4755", "content_base64": ""}"#),
            Rule::ModeSpecialBits
        );
    }

    #[test]
    fn base64_rule() {
        for bad in ["aGVsbG8", "aGVs bG8=", "aGVsbG8=\\n", "a-_b", "!!!!"] {
            let r = rule(&format!(
                r#"{{"path": "/etc/x", "content_base64": "{bad}"}}"#
            ));
            assert_eq!(r, Rule::Base64, "{bad:?}");
        }
    }

    #[test]
    fn unknown_owner_and_group() {
        assert_eq!(
            rule(r#"{"path": "/etc/x", "owner": "slurm", "content_base64": ""}"#),
            Rule::UnknownOwner
        );
        assert_eq!(
            rule(r#"{"path": "/etc/x", "group": "slurm", "content_base64": ""}"#),
            Rule::UnknownGroup
        );
        assert_eq!(
            rule(r#"{"path": "/etc/x", "owner": "bad name", "content_base64": ""}"#),
            Rule::IdSyntax("owner")
        );
        // Issue 9, item 14: the message names the rule, never the field's value.
        for field in ["owner", "group"] {
            let text =
                format!(r#"{{"path": "/etc/x", "{field}": "k3yMaterial", "content_base64": ""}}"#);
            let msg = rule(&text).to_string();
            assert!(!msg.contains("k3yMaterial"), "{msg}");
        }
    }

    #[test]
    fn duplicate_and_nested_paths() {
        let dup = format!(
            r#"{{"path": "/etc/a", "content_base64": ""}}, {{"path": "/etc/b", "content_base64": ""}}, {{"path": "/etc/a", "content_base64": "{B64_HELLO}"}}"#
        );
        assert_eq!(
            one(&dup).unwrap_err(),
            BundleError::Entry {
                index: 2,
                path: Some("/etc/a".into()),
                rule: Rule::DuplicatePath(0)
            }
        );
        let nested = r#"{"path": "/etc/a", "content_base64": ""}, {"path": "/etc/a/b", "content_base64": ""}"#;
        assert!(matches!(
            one(nested).unwrap_err(),
            BundleError::Entry {
                index: 1,
                rule: Rule::NestedPath(0),
                ..
            }
        ));
        let reverse = r#"{"path": "/etc/a/b", "content_base64": ""}, {"path": "/etc/a", "content_base64": ""}"#;
        assert!(one(reverse).is_err());
        let siblings = r#"{"path": "/etc/a", "content_base64": ""}, {"path": "/etc/ab", "content_base64": ""}"#;
        assert_eq!(one(siblings).unwrap().len(), 2);
    }

    #[test]
    fn errors_name_index_and_path_but_never_content() {
        let canary = "Q0FOQVJZLXNlY3JldC12YWx1ZQ=="; // base64 of a canary
        let text = format!(
            r#"{{"version": 1, "files": [
                {{"path": "/etc/ok", "content_base64": "{canary}"}},
                {{"path": "/etc/bad", "mode": "4755", "content_base64": "{canary}"}}]}}"#
        );
        let e = parse(text.as_bytes(), &accounts()).unwrap_err();
        let msg = e.to_string();
        assert_eq!(
            msg,
            "files[1] (/etc/bad): setuid, setgid and sticky bits are refused"
        );
        // Values in the wrong place or of the wrong type are never echoed either.
        for entry in [
            format!(r#"{{"path": "/etc/x", "mode": "{canary}", "content_base64": ""}}"#),
            format!(r#"{{"path": "/etc/x", "owner": "{canary}", "content_base64": ""}}"#),
            format!(r#"{{"path": "{canary}", "content_base64": ""}}"#),
            format!(r#"{{"path": "/etc/x", "{canary}": 1, "content_base64": ""}}"#),
            format!(r#"{{"path": "/etc/x", "content_base64": "{canary}!"}}"#),
            format!(r#"{{"path": "/etc/x", "content_base64": ["{canary}"]}}"#),
        ] {
            let e = one(&entry).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("Q0FOQVJZ"), "{shown}");
        }
    }

    #[test]
    fn many_small_entries_validate_quickly() {
        let entries: Vec<String> = (0..20_000)
            .map(|i| format!(r#"{{"path":"/d{}/f{i}","content_base64":""}}"#, i % 100))
            .collect();
        let text = bundle(&entries.join(","));
        let started = std::time::Instant::now();
        assert_eq!(parse(text.as_bytes(), &accounts()).unwrap().len(), 20_000);
        // Generous for a loaded 2-core CI machine: this guards against quadratic checks, which
        // take minutes here, not against a slow machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    /// Structure-aware bundles: every field present or not, of the right type or not, with
    /// values from the edge cases of each rule.
    fn arb_entry() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let path = prop_oneof![
            Just("\"/etc/k\"".to_string()),
            Just("\"/etc/../x\"".to_string()),
            Just("\"relative\"".to_string()),
            Just("\"/proc/x\"".to_string()),
            Just("\"/\"".to_string()),
            Just("7".to_string()),
            "\"/[a-z/.]{0,40}\"",
            "\"\\\\u[0-9a-f]{4}\"",
        ];
        let mode = prop_oneof![
            Just("\"0600\"".to_string()),
            Just("\"4755\"".to_string()),
            Just("\"99999\"".to_string()),
            Just("384".to_string()),
            "\"[0-7]{0,6}\"",
        ];
        let id = prop_oneof![
            Just("\"root\"".to_string()),
            Just("\"munge\"".to_string()),
            Just("4294967295".to_string()),
            Just("-1".to_string()),
            Just("1e99".to_string()),
            Just("null".to_string()),
            "\"[a-z ]{0,10}\"",
        ];
        let content = prop_oneof![
            Just("\"\"".to_string()),
            Just("\"aGVsbG8=\"".to_string()),
            "\"[A-Za-z0-9+/=]{0,40}\"",
            Just("[]".to_string()),
        ];
        (
            proptest::option::of(path),
            proptest::option::of(mode),
            proptest::option::of(id.clone()),
            proptest::option::of(id),
            proptest::option::of(content),
            any::<bool>(),
        )
            .prop_map(|(p, m, o, g, c, extra)| {
                let mut fields = Vec::new();
                for (k, v) in [
                    ("path", p),
                    ("mode", m),
                    ("owner", o),
                    ("group", g),
                    ("content_base64", c),
                ] {
                    if let Some(v) = v {
                        fields.push(format!("\"{k}\": {v}"));
                    }
                }
                if extra {
                    fields.push("\"path\": \"/etc/dup\"".into());
                }
                format!("{{{}}}", fields.join(", "))
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&b, &accounts());
        }

        #[test]
        fn structured_bundles_never_panic(
            entries in proptest::collection::vec(arb_entry(), 0..6),
            version in proptest::prop_oneof![proptest::strategy::Just("1".to_string()), "[0-9.e-]{1,5}"],
        ) {
            let text = format!(r#"{{"version": {version}, "files": [{}]}}"#, entries.join(","));
            let _ = parse(text.as_bytes(), &accounts());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Any corruption of a valid bundle is refused or accepted, never a panic; a refusal
        /// never quotes the content.
        #[test]
        fn corrupted_bundles_never_panic(pos in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let canary = "Q0FOQVJZLXNlY3JldC12YWx1ZQ==";
            let mut text = format!(
                r#"{{"version": 1, "files": [{{"path": "/etc/k", "mode": "0400", "owner": "munge", "group": 997, "content_base64": "{canary}"}}]}}"#
            ).into_bytes();
            let at = pos % text.len();
            text[at] = byte;
            if let Err(e) = parse(&text, &accounts()) {
                let shown = format!("{e} {e:?}");
                // A corrupted quote can merge the content into the path, which errors do
                // show; everything else must not carry it.
                if !matches!(&e, BundleError::Entry { path: Some(p), .. } if p.contains("Q0FO")) {
                    proptest::prop_assert!(!shown.contains("Q0FOQVJZ"), "{}", shown);
                }
            }
        }
    }

    #[test]
    fn debug_of_an_entry_hides_the_content() {
        let e = one(&format!(
            r#"{{"path": "/etc/x", "content_base64": "{B64_HELLO}"}}"#
        ))
        .unwrap();
        let d = format!("{e:?}");
        assert!(d.contains("/etc/x") && d.contains("<5 bytes>"), "{d}");
        assert!(!d.contains("hello") && !d.contains("104"), "{d}");
    }
}
