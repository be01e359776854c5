//! `rd.rustlive.secrets`: a URL template with `{mac}`, `{uuid}` and `{hostname}` placeholders,
//! parsed and validated once. `config` refuses what a later stage would; the secrets source
//! fills it; boot asks it for the host to route to. The template prints only redacted.

use crate::support::log::redact_url_str;
use crate::support::values::{template_parts, TemplatePart};
use reqwest::Url;
use serde::{Serialize, Serializer};
use std::fmt;

/// A node fact a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Mac,
    Uuid,
    Hostname,
}

impl Placeholder {
    pub const ALL: [Placeholder; 3] = [Placeholder::Mac, Placeholder::Uuid, Placeholder::Hostname];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Mac => "mac",
            Placeholder::Uuid => "uuid",
            Placeholder::Hostname => "hostname",
        }
    }

    /// What the fact is, for an error message.
    pub fn what(self) -> &'static str {
        match self {
            Placeholder::Mac => "MAC address",
            Placeholder::Uuid => "SMBIOS UUID",
            Placeholder::Hostname => "host name",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// How the bundle travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    File,
    Https,
    /// Only with a pin (`rd.rustlive.secrets.sha256`).
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Fact(Placeholder),
}

/// A parsed secrets source template.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Vec<Part>,
    scheme: Scheme,
}

/// A placeholder whose fact this node does not have (it would fetch another node's bundle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the source URL uses {{{}}} but this node's {} is unknown or malformed", .0.name(), .0.what())]
pub struct MissingFact(pub Placeholder);

impl UrlTemplate {
    /// Parses and checks a template: placeholders known, braces closed, scheme `file`, `https`
    /// or `http` (any case), a host unless `file`, and a valid URL once filled in.
    pub fn parse(text: &str) -> Result<UrlTemplate, String> {
        let mut parts = Vec::new();
        for part in template_parts(text).map_err(|_| "unclosed '{' in the URL template")? {
            parts.push(match part {
                TemplatePart::Text(t) => Part::Text(t.to_string()),
                TemplatePart::Placeholder(name) => {
                    Part::Fact(Placeholder::from_name(name).ok_or_else(|| {
                        format!(
                            "unknown placeholder {{{name}}} (use {{mac}}, {{uuid}} or {{hostname}})"
                        )
                    })?)
                }
            });
        }
        let probe = fill_parts(&parts, |_| Some("x".to_string())).map_err(|e| e.to_string())?;
        let url = Url::parse(&probe).map_err(|e| format!("not a URL: {e}"))?;
        // Url lower-cases the scheme: `HTTPS://` is https, `HTTP://` is plain http.
        let scheme = match url.scheme() {
            "file" => Scheme::File,
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            s => return Err(format!("unsupported scheme {s:?} (use https or file)")),
        };
        if scheme == Scheme::File {
            if url.host_str().is_some_and(|h| !h.is_empty()) {
                return Err("a file URL must be an absolute local path (file:///…)".into());
            }
        } else if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        // Keep the scheme in lower case so every later check (and `config`'s JSON) sees it so.
        if let Some(Part::Text(first)) = parts.first_mut() {
            if let Some(end) = first.find(':') {
                let lower = first.get(..end).unwrap_or_default().to_ascii_lowercase();
                first.replace_range(..end, &lower);
            }
        }
        Ok(UrlTemplate { parts, scheme })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether fetching it needs the network.
    pub fn is_network(&self) -> bool {
        self.scheme != Scheme::File
    }

    /// Whether the template names `p`.
    pub fn uses(&self, p: Placeholder) -> bool {
        self.parts.contains(&Part::Fact(p))
    }

    /// The server's host name or address, when it does not depend on a placeholder.
    pub fn host(&self) -> Option<String> {
        if !self.is_network() {
            return None;
        }
        let a = self.fill(|_| Some("rustlive-placeholder-a".into())).ok()?;
        let b = self.fill(|_| Some("rustlive-placeholder-b".into())).ok()?;
        let ha = Url::parse(&a).ok()?.host_str()?.to_string();
        let hb = Url::parse(&b).ok()?.host_str()?.to_string();
        (ha == hb).then_some(ha)
    }

    /// The URL with each placeholder replaced by `fact(p)`.
    pub fn fill(
        &self,
        fact: impl FnMut(Placeholder) -> Option<String>,
    ) -> Result<String, MissingFact> {
        fill_parts(&self.parts, fact)
    }

    /// The template as written (scheme lower-cased), for the secrets stage only: it may hold
    /// credentials. Everything that prints uses [`UrlTemplate::redacted`].
    pub fn as_written(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Fact(f) => format!("{{{}}}", f.name()),
            })
            .collect()
    }

    /// The template without userinfo or query string, placeholders kept as written.
    pub fn redacted(&self) -> String {
        // Stand-ins that URL parsing leaves alone (braces would be percent-encoded).
        let standin = |p: Placeholder| format!("rustlive-placeholder-{}", p.name());
        let Ok(filled) = self.fill(|p| Some(standin(p))) else {
            return redact_url_str(&self.as_written());
        };
        let mut out = redact_url_str(&filled);
        for p in Placeholder::ALL {
            out = out.replace(&standin(p), &format!("{{{}}}", p.name()));
        }
        out
    }
}

fn fill_parts(
    parts: &[Part],
    mut fact: impl FnMut(Placeholder) -> Option<String>,
) -> Result<String, MissingFact> {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Fact(f) => out.push_str(&fact(*f).ok_or(MissingFact(*f))?),
        }
    }
    Ok(out)
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UrlTemplate({})", self.redacted())
    }
}

impl Serialize for UrlTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_case_insensitively() {
        let t = UrlTemplate::parse("HTTPS://boot/{mac}.json").unwrap();
        assert_eq!(t.scheme(), Scheme::Https);
        assert_eq!(t.as_written(), "https://boot/{mac}.json");
        assert_eq!(
            UrlTemplate::parse("HTTP://boot/x").unwrap().scheme(),
            Scheme::Http
        );
        assert_eq!(
            UrlTemplate::parse("FiLe:///rustlive/{hostname}.json")
                .unwrap()
                .scheme(),
            Scheme::File
        );
    }

    #[test]
    fn refuses_what_the_secrets_stage_would() {
        for bad in [
            "ftp://h/x",
            "https://h/{serial}",
            "https://h/{mac",
            "https://",
            "file://host/x",
            "{mac}",
            "not a url",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_only_when_not_templated() {
        let t = UrlTemplate::parse("https://u:pw@boot.site:8443/{mac}?t=1").unwrap();
        assert_eq!(t.host().as_deref(), Some("boot.site"));
        let t = UrlTemplate::parse("https://{hostname}.boot/x").unwrap();
        assert_eq!(t.host(), None);
        assert_eq!(UrlTemplate::parse("file:///x").unwrap().host(), None);
    }

    #[test]
    fn fills_and_names_missing_facts() {
        let t = UrlTemplate::parse("https://s/{mac}/{uuid}/{hostname}").unwrap();
        let got = t
            .fill(|p| match p {
                Placeholder::Mac => Some("52:54:00:12:34:56".into()),
                Placeholder::Uuid => Some("u".into()),
                Placeholder::Hostname => None,
            })
            .unwrap_err();
        assert_eq!(got, MissingFact(Placeholder::Hostname));
        assert!(t.uses(Placeholder::Mac) && t.uses(Placeholder::Hostname));
    }

    #[test]
    fn prints_only_redacted() {
        let t = UrlTemplate::parse("https://bob:hunter2@h/{mac}?token=abc").unwrap();
        for s in [
            format!("{t:?}"),
            serde_json::to_string(&t).unwrap(),
            t.redacted(),
        ] {
            assert!(
                !s.contains("hunter2") && !s.contains("bob") && !s.contains("abc"),
                "{s}"
            );
        }
    }
}
