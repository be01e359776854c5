//! OCI references as the command line writes them: `oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]`
//! and `oci+http://…`, parsed into a bounded type once (the distribution spec's grammar). A shared
//! piece: `config` checks image URLs with it, the `oci` stage pulls with it.

use crate::support::values::{hex, Sha256Hex};
use reqwest::Url;

/// What the reference names in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    Digest(Sha256Hex),
}

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `https://HOST[:PORT]` (or `http://` for `oci+http://`).
    pub registry: Url,
    pub repository: String,
    pub target: Target,
}

impl Reference {
    /// Parses `oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]` or `oci+http://…`. Without a tag
    /// or digest, `latest`.
    pub fn parse(s: &str) -> Result<Reference, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("oci://") {
            ("https", r)
        } else if let Some(r) = s.strip_prefix("oci+http://") {
            ("http", r)
        } else {
            return Err("an OCI reference starts with oci:// or oci+http://".into());
        };
        // A query or fragment has no meaning in a reference, and a token in one would be
        // printed wherever the reference is: refused without quoting any of it.
        if rest.contains(['?', '#']) {
            return Err("an OCI reference takes no query string or fragment (registry credentials belong in the credentials file, never on the command line)".into());
        }
        let (host, path) = rest
            .split_once('/')
            .ok_or("expected oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]")?;
        if host.is_empty() || host.contains('@') {
            return Err("the reference needs a registry host (and no user name)".into());
        }
        let registry = Url::parse(&format!("{scheme}://{host}"))
            .map_err(|e| format!("bad registry host \"{}\": {e}", short(host)))?;
        if registry.host_str().is_none_or(str::is_empty) || registry.path() != "/" {
            return Err(format!("bad registry host \"{}\"", short(host)));
        }
        let (repository, target) = if let Some((repo, digest)) = path.split_once('@') {
            (repo, Target::Digest(parse_digest(digest)?))
        } else {
            // A ':' after the last '/' starts the tag.
            let last = path.rfind('/').map_or(0, |i| i.saturating_add(1));
            match path.get(last..).and_then(|t| t.find(':')) {
                Some(i) => {
                    let at = last.saturating_add(i);
                    let tag = path.get(at.saturating_add(1)..).unwrap_or("");
                    check_tag(tag)?;
                    (path.get(..at).unwrap_or(""), Target::Tag(tag.into()))
                }
                None => (path, Target::Tag("latest".into())),
            }
        };
        check_repository(repository)?;
        Ok(Reference {
            registry,
            repository: repository.into(),
            target,
        })
    }

    /// Whether the reference pins the manifest by digest.
    pub fn pinned(&self) -> bool {
        matches!(self.target, Target::Digest(_))
    }

    pub fn plain_http(&self) -> bool {
        self.registry.scheme() == "http"
    }

    /// `TAG` or `sha256:HEX`, as it goes into a manifest URL.
    pub fn target_str(&self) -> String {
        match &self.target {
            Target::Tag(t) => t.clone(),
            Target::Digest(d) => digest_str(d),
        }
    }

    /// Whether `other` names the same repository and tag or digest (a mirror of this one).
    pub fn same_content(&self, other: &Reference) -> bool {
        self.repository == other.repository && self.target == other.target
    }

    /// `oci://HOST:PORT/REPO@sha256:HEX` for this repository on this registry.
    pub fn with_digest(&self, d: &Sha256Hex) -> String {
        let scheme = if self.plain_http() { "oci+http" } else { "oci" };
        format!(
            "{scheme}://{}/{}@{}",
            host_port(&self.registry),
            self.repository,
            digest_str(d)
        )
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.plain_http() { "oci+http" } else { "oci" };
        let sep = if self.pinned() { '@' } else { ':' };
        write!(
            f,
            "{scheme}://{}/{}{sep}{}",
            host_port(&self.registry),
            self.repository,
            self.target_str()
        )
    }
}

/// `HOST[:PORT]` of a registry URL.
pub fn host_port(u: &Url) -> String {
    let host = u.host_str().unwrap_or("");
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// `sha256:HEX`.
pub fn digest_str(d: &Sha256Hex) -> String {
    format!("sha256:{}", hex(&d.0))
}

/// Parses `sha256:` and 64 lower-case hex digits; other algorithms are refused by name.
pub fn parse_digest(s: &str) -> Result<Sha256Hex, String> {
    let Some((alg, h)) = s.split_once(':') else {
        return Err(format!("\"{}\" is not a digest (sha256:HEX)", short(s)));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest algorithm \"{}\" is not supported (only sha256)",
            short(alg)
        ));
    }
    if h.len() != 64 || !h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("a sha256 digest is 64 lower-case hex digits".into());
    }
    crate::support::values::parse_sha256(h)
}

/// At most 80 characters of a value from outside for a message (a hostile manifest may be
/// huge), escaped ([`crate::support::log::Escaped`]).
pub fn short(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut out = crate::support::log::escaped(&cut);
    if cut.len() < s.len() {
        out.push('…');
    }
    out
}

/// The distribution spec's repository grammar: lower-case components
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
fn check_repository(r: &str) -> Result<(), String> {
    if r.is_empty() || r.len() > 255 {
        return Err("the repository name is empty or longer than 255 characters".into());
    }
    for comp in r.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = b.first().is_some_and(|c| alnum(*c))
            && b.last().is_some_and(|c| alnum(*c))
            && b.iter()
                .all(|c| alnum(*c) || matches!(c, b'.' | b'_' | b'-'))
            && !comp.contains("..")
            && !comp.contains("___")
            && !comp.contains("._")
            && !comp.contains("_.")
            && !comp.contains(".-")
            && !comp.contains("-.")
            && !comp.contains("_-")
            && !comp.contains("-_");
        if !ok {
            return Err(format!(
                "\"{}\" is not a valid repository name (lower-case letters, digits, '.', '_', '-' between them, '/' between components)",
                short(r)
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a valid tag (letters, digits, '_', '.', '-', at most 128)",
            short(t)
        ))
    }
}

/// Checks an `oci://` or `oci+http://` image URL from the command line; the `Url` kept in the
/// configuration is the reference as written.
pub fn parse_image_url(s: &str) -> Result<Url, String> {
    Reference::parse(s)?;
    Url::parse(s).map_err(|e| format!("not a URL: {e}"))
}

/// Whether `u` is an OCI reference (`oci://`, `oci+http://`).
pub fn is_oci(u: &Url) -> bool {
    matches!(u.scheme(), "oci" | "oci+http")
}

/// The references of several mirrors, which must all name the same repository and tag or
/// digest (they are mirrors of one image).
pub fn references(urls: &[Url]) -> Result<Vec<Reference>, String> {
    let refs = urls
        .iter()
        .map(|u| Reference::parse(u.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = refs.first() {
        if let Some(other) = refs.iter().find(|r| !first.same_content(r)) {
            return Err(format!(
                "registry mirrors must name the same repository and tag or digest ({other} is not {first})"
            ));
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references() {
        let r = Reference::parse("oci://10.0.2.2:5000/site/compute:v1.2").unwrap();
        assert_eq!(r.registry.as_str(), "https://10.0.2.2:5000/");
        assert_eq!(r.repository, "site/compute");
        assert_eq!(r.target, Target::Tag("v1.2".into()));
        assert!(!r.pinned() && !r.plain_http());
        assert_eq!(r.to_string(), "oci://10.0.2.2:5000/site/compute:v1.2");
        let r = Reference::parse(&format!("oci+http://reg.site/a/b/c@{D}")).unwrap();
        assert!(r.pinned() && r.plain_http());
        assert_eq!(r.registry.as_str(), "http://reg.site/");
        assert_eq!(r.to_string(), format!("oci+http://reg.site/a/b/c@{D}"));
        let r = Reference::parse("oci://[::1]:5000/img").unwrap();
        assert_eq!(r.target, Target::Tag("latest".into()));
        assert_eq!(host_port(&r.registry), "[::1]:5000");
        assert!(parse_image_url("oci://h:5000/a/b:t").is_ok());
    }

    #[test]
    fn bad_references() {
        for bad in [
            "http://h/x",
            "oci://",
            "oci:///repo",
            "oci://h",
            "oci://h/",
            "oci://user:pw@h/repo",
            "oci://h/Repo",
            "oci://h/repo:",
            "oci://h/repo:-x",
            "oci://h/re..po",
            "oci://h/repo@sha512:abcd",
            "oci://h/repo@sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
            "oci://h/repo@sha256:0123",
            "oci://h/repo:t@x",
            "oci://h:notaport/repo",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_query_or_userinfo_is_refused_without_being_quoted() {
        for bad in [
            "oci://reg/x/y:t?token=S3CRET",
            "oci://reg/x/y?token=S3CRET",
            "oci://reg?token=S3CRET/x/y:t",
            "oci://reg/x/y:t#S3CRET",
            &format!("oci://reg/x/y@{D}?token=S3CRET"),
            "oci+http://reg:5000/x:t?S3CRET",
            "oci://user:S3CRET@reg/x/y:t",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(!e.contains("S3CRET"), "{bad}: {e}");
            let e = parse_image_url(bad).unwrap_err();
            assert!(!e.contains("S3CRET"), "{bad}: {e}");
        }
    }

    #[test]
    fn values_in_errors_are_escaped() {
        let e = Reference::parse("oci://reg/x/y:t\x1b[2J").unwrap_err();
        assert!(e.contains("\\x1b[2J") && !e.contains('\x1b'), "{e}");
        let e = parse_digest("md5\r:x").unwrap_err();
        assert!(!e.contains('\r'), "{e}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = Reference::parse(&s);
            let _ = parse_digest(&s);
        }

        #[test]
        fn valid_references_round_trip(
            host in "[a-z][a-z0-9]{0,10}(\\.[a-z]{2,5})?",
            port in proptest::option::of(1024u16..),
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}(-[a-z0-9]{1,4})?){0,3}",
            tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
            plain in any::<bool>(),
        ) {
            let scheme = if plain { "oci+http" } else { "oci" };
            let hp = port.map_or(host.clone(), |p| format!("{host}:{p}"));
            let s = format!("{scheme}://{hp}/{repo}:{tag}");
            let r = Reference::parse(&s).unwrap();
            prop_assert_eq!(&r.repository, &repo);
            prop_assert_eq!(r.to_string(), s);
        }
    }
}
