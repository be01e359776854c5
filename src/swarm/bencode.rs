//! Bencode (BEP 3), parsed without copying and with the exact bytes of every dictionary kept:
//! a torrent's info-hash is the SHA-1 of the `info` dictionary *as it appears in the file*,
//! which a decoder that re-encodes (to canonical key order, say) gets wrong for any torrent
//! whose creator did not write canonical bencode. That, and the bounds below, are why this is
//! hand-written rather than taken from `serde_bencode` or `lava_torrent` (both re-encode).
//!
//! Bounded: nesting depth, the number of values, and lengths that never exceed the input.
//! Strict where ambiguity would matter: no leading zeros, no `-0`, no duplicate keys, no
//! trailing bytes after the top-level value.

use std::fmt;

/// Deepest nesting accepted (a torrent needs 4: announce-list's lists in the top dictionary).
pub const MAX_DEPTH: usize = 32;
/// Most values in one document (a torrent has a few dozen; a PEX message a handful).
pub const MAX_VALUES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// The entries in file order, and the dictionary's own bytes (`d…e`) as they appeared.
    Dict(Vec<(&'a [u8], Value<'a>)>, &'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    #[error("bencode ends early at byte {0}")]
    Eof(usize),
    #[error("unexpected byte at {0} in bencode")]
    Unexpected(usize),
    #[error("bad integer at byte {0} in bencode")]
    BadInt(usize),
    #[error("bad string length at byte {0} in bencode")]
    BadLength(usize),
    #[error("bencode nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("bencode holds more than {MAX_VALUES} values")]
    TooMany,
    #[error("duplicate dictionary key in bencode")]
    DuplicateKey,
    #[error("{0} bytes follow the bencode value")]
    Trailing(usize),
}

impl<'a> Value<'a> {
    /// The entry `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries, _) => entries
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// A dictionary's bytes as they appeared in the input.
    pub fn raw_dict(&self) -> Option<&'a [u8]> {
        match self {
            Value::Dict(_, raw) => Some(raw),
            _ => None,
        }
    }
}

/// Parses one complete document: exactly one value, nothing after it.
pub fn decode(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let (v, used) = decode_prefix(input)?;
    match input.len().checked_sub(used) {
        Some(0) => Ok(v),
        Some(n) => Err(BencodeError::Trailing(n)),
        None => Err(BencodeError::Eof(used)),
    }
}

/// Parses the value at the start of `input`; returns it and how many bytes it took.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    let mut p = Parser {
        input,
        pos: 0,
        values: 0,
    };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    values: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Eof(self.pos))
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        self.values = self.values.saturating_add(1);
        if self.values > MAX_VALUES {
            return Err(BencodeError::TooMany);
        }
        match self.peek()? {
            b'i' => {
                self.bump();
                Ok(Value::Int(self.int(b'e')?))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            b'l' => {
                self.bump();
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth.saturating_add(1))?);
                }
                self.bump();
                Ok(Value::List(items))
            }
            b'd' => {
                let start = self.pos;
                self.bump();
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                let mut sorted = true;
                while self.peek()? != b'e' {
                    let key = self.bytes()?;
                    if let Some((last, _)) = entries.last() {
                        sorted &= *last < key;
                    }
                    let v = self.value(depth.saturating_add(1))?;
                    entries.push((key, v));
                }
                self.bump();
                // Creators that do not sort keys exist and are accepted (the raw bytes are what
                // is hashed); a key given twice is ambiguous and refused.
                if !sorted {
                    let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
                    keys.sort_unstable();
                    if keys.windows(2).any(|w| w.first() == w.get(1)) {
                        return Err(BencodeError::DuplicateKey);
                    }
                }
                let raw = self
                    .input
                    .get(start..self.pos)
                    .ok_or(BencodeError::Eof(self.pos))?;
                Ok(Value::Dict(entries, raw))
            }
            _ => Err(BencodeError::Unexpected(self.pos)),
        }
    }

    /// Digits up to `end` (consumed), as a canonical decimal: no leading zero, no `-0`.
    fn int(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(BencodeError::Eof(self.input.len()))?;
        let text = rest.get(..len).unwrap_or_default();
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || !digits.starts_with(b"0"))
            && !(text.starts_with(b"-") && digits == b"0")
            && digits.len() <= 19;
        if !canonical {
            return Err(BencodeError::BadInt(start));
        }
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(BencodeError::BadInt(start))?;
        self.pos = start.saturating_add(len).saturating_add(1);
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        if !self.peek()?.is_ascii_digit() {
            return Err(BencodeError::Unexpected(start));
        }
        let n = self.int(b':').map_err(|_| BencodeError::BadLength(start))?;
        let n = usize::try_from(n).map_err(|_| BencodeError::BadLength(start))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or(BencodeError::BadLength(start))?;
        let b = self
            .input
            .get(self.pos..end)
            .ok_or(BencodeError::BadLength(start))?;
        self.pos = end;
        Ok(b)
    }
}

/// A bencode writer. Dictionaries are written as the caller orders them: callers that want
/// canonical output (`rustlive torrent create`) give keys in sorted order.
#[derive(Default)]
pub struct Encoder {
    pub out: Vec<u8>,
}

impl Encoder {
    pub fn int(&mut self, n: i64) -> &mut Self {
        self.out.push(b'i');
        self.out.extend_from_slice(n.to_string().as_bytes());
        self.out.push(b'e');
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(b);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        self
    }

    pub fn list(&mut self) -> &mut Self {
        self.out.push(b'l');
        self
    }

    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        self
    }

    /// Bytes already bencoded (the `info` dictionary inside the torrent).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }
}

/// Re-encodes a value (tests, and the property that decoding what this writes gives it back).
pub fn encode(v: &Value<'_>) -> Vec<u8> {
    let mut e = Encoder::default();
    write_value(&mut e, v);
    e.out
}

fn write_value(e: &mut Encoder, v: &Value<'_>) {
    match v {
        Value::Int(i) => {
            e.int(*i);
        }
        Value::Bytes(b) => {
            e.bytes(b);
        }
        Value::List(l) => {
            e.list();
            for x in l {
                write_value(e, x);
            }
            e.end();
        }
        Value::Dict(entries, _) => {
            e.dict();
            for (k, x) in entries {
                e.bytes(k);
                write_value(e, x);
            }
            e.end();
        }
    }
}

/// Bytes shown in errors and logs: printable ASCII as is, the rest as `\xNN`, at most 64.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.iter().take(64) {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > 64 {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"4:spam"), Ok(Value::Bytes(b"spam")));
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(b"")));
        let d = decode(b"d3:cow3:moo4:spaml1:a1:bee").unwrap();
        assert_eq!(d.get("cow").and_then(Value::as_str), Some("moo"));
        assert_eq!(
            d.get("spam").and_then(Value::as_list).map(<[_]>::len),
            Some(2)
        );
        assert_eq!(d.raw_dict(), Some(&b"d3:cow3:moo4:spaml1:a1:bee"[..]));
    }

    #[test]
    fn refused() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i1",
            b"i99999999999999999999e",
            b"03:abc",
            b"5:abc",
            b"d1:ai1e1:ai2ee",
            b"i1ei2e",
            b"x",
            b"",
            b"l",
            b"d1:a",
            b"-1:a",
        ] {
            assert!(decode(bad).is_err(), "{}", Shown(bad));
        }
        let deep = [vec![b'l'; 40], vec![b'e'; 40]].concat();
        assert_eq!(decode(&deep), Err(BencodeError::TooDeep));
    }

    #[test]
    fn unsorted_keys_are_kept_as_written() {
        let raw = b"d1:bi1e1:ai2ee";
        let d = decode(raw).unwrap();
        assert_eq!(d.raw_dict(), Some(&raw[..]));
        assert_eq!(encode(&d), raw);
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| format!("i{i}e").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| {
                let mut e = Encoder::default();
                e.bytes(&b);
                e.out
            }),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| [
                    vec![b'l'],
                    items.concat(),
                    vec![b'e']
                ]
                .concat()),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6).prop_map(|m| {
                    let mut e = Encoder::default();
                    e.dict();
                    for (k, v) in m {
                        e.str(&k).raw(&v);
                    }
                    e.end();
                    e.out
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_input_parses_or_errs(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn canonical_documents_round_trip(doc in value()) {
            let v = decode(&doc).unwrap();
            prop_assert_eq!(encode(&v), doc);
        }

        #[test]
        fn mutated_documents_never_panic(doc in value(), at in any::<usize>(), b in any::<u8>()) {
            let mut d = doc;
            if !d.is_empty() {
                let i = at % d.len();
                d[i] = b;
            }
            if let Ok(v) = decode(&d) {
                // The parser is strict enough that whatever it accepts has one encoding.
                prop_assert_eq!(encode(&v), d);
            }
        }
    }
}
