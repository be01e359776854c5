//! Splitting a kernel command line into `key[=value]` words.
//!
//! The rules follow what the kernel and systemd do with `/proc/cmdline`: whitespace separates
//! words, double quotes group (and are removed), and a bare `--` ends the kernel's parameters
//! (everything after it belongs to init, so it is not ours to interpret).

/// One `key` or `key=value` word of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    /// `None` for a bare word (`rd.live.image`), `Some("")` for `key=`.
    pub value: Option<String>,
    /// The word was not valid UTF-8; `key` and `value` hold it with U+FFFD replacements. Only
    /// the options rustlive reads care: a label or another program's option must not matter.
    pub invalid_utf8: bool,
}

/// Splits `cmdline` into words with kernel quoting rules (ASCII whitespace, as the kernel's
/// `isspace`), on bytes: `/proc/cmdline` is not necessarily UTF-8.
pub fn split_words(cmdline: &[u8]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut cur = Vec::new();
    let mut in_word = false;
    let mut quoted = false;
    for &c in cmdline {
        match c {
            b'"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Parses `cmdline` into parameters, in order, stopping at a bare `--`.
pub fn parse(cmdline: &str) -> Vec<Param> {
    parse_bytes(cmdline.as_bytes())
}

/// [`parse`] for the raw bytes of `/proc/cmdline`.
pub fn parse_bytes(cmdline: &[u8]) -> Vec<Param> {
    split_words(cmdline)
        .into_iter()
        .take_while(|w| w != b"--")
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (word, invalid_utf8) = match String::from_utf8(w) {
                Ok(s) => (s, false),
                Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
            };
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (word, None),
            };
            Param {
                key,
                value,
                invalid_utf8,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: Option<&str>) -> Param {
        Param {
            key: k.into(),
            value: v.map(Into::into),
            invalid_utf8: false,
        }
    }

    #[test]
    fn invalid_utf8_words_are_marked_not_fatal() {
        let got = parse_bytes(b"LABEL=caf\xe9 rd.live.dir=x\xff root=live:http://h/i");
        assert_eq!(got.len(), 3);
        assert!(got[0].invalid_utf8 && got[0].key == "LABEL");
        assert!(got[1].invalid_utf8 && got[1].key == "rd.live.dir");
        assert_eq!(got[2], p("root", Some("live:http://h/i")));
    }

    #[test]
    fn splits_on_whitespace_and_keeps_order() {
        assert_eq!(
            parse("  quiet\trd.live.image root=live:http://x/y \n"),
            vec![
                p("quiet", None),
                p("rd.live.image", None),
                p("root", Some("live:http://x/y")),
            ]
        );
    }

    #[test]
    fn quotes_group_and_are_removed() {
        assert_eq!(
            parse(r#"a="b c" "d=e f""#),
            vec![p("a", Some("b c")), p("d", Some("e f"))]
        );
        assert_eq!(parse(r#"x="""#), vec![p("x", Some(""))]);
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        assert_eq!(parse(r#"a="b c"#), vec![p("a", Some("b c"))]);
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(
            parse("rd.overlay=tmpfs:size=2G"),
            vec![p("rd.overlay", Some("tmpfs:size=2G"))]
        );
    }

    #[test]
    fn double_dash_ends_kernel_parameters() {
        assert_eq!(parse("a=1 -- rd.rustlive.url=x"), vec![p("a", Some("1"))]);
    }

    #[test]
    fn empty_value_is_distinct_from_bare() {
        assert_eq!(parse("a= b"), vec![p("a", Some("")), p("b", None)]);
    }
}
