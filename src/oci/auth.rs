//! Registry authentication: the `WWW-Authenticate` challenge, docker-style `config.json`
//! credentials, and the Bearer token flow of the distribution spec.
//!
//! Credentials only ever come from a file (inside the initramfs: [`CREDENTIALS_FILE`]), never
//! from the command line, which every process can read in `/proc/cmdline`. A token is asked
//! for when the registry answers 401 and asked for again when it answers 401 to a token that
//! worked before (it expired mid-transfer); the engine then repeats the request at once.
//!
//! What credentials and tokens go where ([`realm_gets_credentials`]):
//! - only a 401 from the registry's own origin (scheme, host, port) is a challenge: a 401
//!   from where a redirect led (blob storage, a CDN) fails that attempt, and neither the
//!   password nor the registry's token goes to the realm it names;
//! - the password goes to a token server on the registry's own host, over https (any port:
//!   token servers often sit on :5001) or, for a plain-http registry, over http too; a realm
//!   on another host or over http for an https registry is asked anonymously;
//! - the Authorization header is only added to requests for the origin that issued the
//!   challenge (reqwest also drops it on a redirect to another host or port);
//! - the token request obeys the attempt's deadline, stall timer and minimum rate.

use super::{host_port, OciError};
use crate::fetch::auth::Unauthorized;
use crate::fetch::watchdog::Limits;
use crate::support::log::redact_url;
use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::Url;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Registry credentials inside the initramfs (docker `config.json` format).
pub const CREDENTIALS_FILE: &str = "/etc/rustlive/registry-auth.json";
/// Largest credentials file or token response read.
const SMALL_MAX: u64 = 1 << 20;
/// Token requests per registry host during one fetch: enough for a few expiries, not a loop.
const MAX_TOKENS: u32 = 16;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic`, lower-cased.
    pub scheme: String,
    /// Parameter names lower-cased (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses one challenge: `SCHEME name=value, name="quoted \" value", …` (RFC 9110 §11.6.1).
/// Only the first challenge of a header is read (registries send one).
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let v = v.trim();
    let (scheme, mut rest) = match v.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (v.get(..i)?, v.get(i..)?),
        None => (v, ""),
    };
    if scheme.is_empty() || !scheme.bytes().all(is_tchar) {
        return None;
    }
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let name = rest.get(..eq)?.trim();
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        // '=' is one byte, so the value starts right after it.
        rest = rest.get(eq.checked_add(1)?..)?.trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?.1),
                    '"' => {
                        end = i.checked_add(1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = q.get(end?..)?;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest.get(..end)?.trim().to_string();
            rest = rest.get(end..)?;
        }
        params.insert(name.to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: … }}",
            self.username
        )
    }
}

impl Credentials {
    fn basic(&self) -> Zeroizing<String> {
        let raw = Zeroizing::new(format!("{}:{}", self.username, &*self.password));
        Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
        ))
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    #[serde(default, deserialize_with = "secret")]
    auth: Option<Zeroizing<String>>,
    username: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    password: Option<Zeroizing<String>>,
}

/// A string that is zeroed when dropped (moved, not copied, out of the parser).
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(<Option<String> as serde::Deserialize>::deserialize(d)?.map(Zeroizing::new))
}

/// Credentials for every registry of a docker `config.json` (`auths.HOST.auth` =
/// base64 `user:password`, or `username` and `password`), keyed by `HOST[:PORT]`.
pub fn parse_docker_config(text: &str) -> Result<BTreeMap<String, Credentials>, String> {
    let cfg: DockerConfig = serde_json::from_str(text)
        // serde_json's message may quote the text: only its position is kept.
        .map_err(|e| {
            format!(
                "not a docker config.json (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
    let mut out = BTreeMap::new();
    for (key, a) in cfg.auths {
        let creds = if let Some(b64) = &a.auth {
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim().as_bytes())
                    .map_err(|_| format!("auths.{key}.auth is not base64"))?,
            );
            let s =
                std::str::from_utf8(&raw).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
            Credentials {
                username: u.into(),
                password: Zeroizing::new(p.into()),
            }
        } else if let (Some(u), Some(p)) = (a.username, a.password) {
            Credentials {
                username: u,
                password: p,
            }
        } else {
            continue;
        };
        // "https://reg:5000", "reg:5000/v2/", "reg:5000" all name the same registry.
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        if !host.is_empty() {
            out.insert(host, creds);
        }
    }
    Ok(out)
}

/// Reads credentials from `path`; a missing file means anonymous access.
pub fn load_credentials(path: &Path) -> Result<BTreeMap<String, Credentials>, OciError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| OciError::Credentials {
        path: path.into(),
        source,
    };
    let text = match std::fs::read(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(err(Box::new(e))),
    };
    if text.len() as u64 > SMALL_MAX {
        return Err(err("the file is larger than 1 MiB".into()));
    }
    let s = std::str::from_utf8(&text).map_err(|_| err("the file is not UTF-8".into()))?;
    parse_docker_config(s).map_err(|r| err(r.into()))
}

/// The default credentials file for `rustlive publish` on a host: `$REGISTRY_AUTH_FILE`,
/// `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`.
pub fn host_credentials_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Some(p.into());
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Whether the registry at `registry` may send its password to the token server at `realm`:
/// the same host, and https unless the registry itself is plain http (whose password crosses
/// the network in clear text anyway). The port may differ: a token server beside the registry
/// on another port of the same host is common.
pub fn realm_gets_credentials(registry: &Url, realm: &Url) -> bool {
    let same_host = match (registry.host(), realm.host()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    let private = match realm.scheme() {
        "https" => true,
        "http" => registry.scheme() == "http",
        _ => false,
    };
    same_host && private
}

/// `SCHEME://HOST[:PORT]`, the origin a token is bound to.
fn origin(u: &Url) -> String {
    u.origin().ascii_serialization()
}

#[derive(Debug, Default)]
struct HostState {
    /// The Authorization value to send (Bearer token, or Basic credentials).
    header: Option<Zeroizing<String>>,
    tokens: u32,
}

/// The [`crate::fetch::RequestAuth`] of registries: adds `Accept` to manifest requests and the
/// host's token to every request, and
/// gets a (new) token on a 401 Bearer challenge.
#[derive(Debug)]
pub struct RegistryAuth {
    credentials: BTreeMap<String, Credentials>,
    /// What a token is asked for when the challenge names no scope.
    default_scope: String,
    state: Mutex<BTreeMap<String, HostState>>,
}

impl RegistryAuth {
    /// `actions` is `pull` or `pull,push`.
    pub fn new(
        credentials: BTreeMap<String, Credentials>,
        repository: &str,
        actions: &str,
    ) -> RegistryAuth {
        RegistryAuth {
            credentials,
            default_scope: format!("repository:{repository}:{actions}"),
            state: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HostState>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles a 401: true when a new Authorization value is ready.
    pub fn refresh(&self, client: &Client, u: &Unauthorized) -> Result<bool, OciError> {
        let (url, headers) = (u.url, u.headers);
        let host = host_port(url);
        let key = origin(url);
        if origin(u.answered) != key {
            log::warn!(
                "{}: where {host} redirected to asks for credentials (401); the registry's are not sent to another host",
                redact_url(u.answered)
            );
            return Ok(false);
        }
        let Some(ch) = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .find(|c| c.scheme == "bearer" || c.scheme == "basic")
        else {
            return Ok(false);
        };
        let creds = self.credentials.get(&host);
        {
            let st = self.lock();
            if st.get(&key).is_some_and(|s| s.tokens >= MAX_TOKENS) {
                log::warn!("{host}: {MAX_TOKENS} tokens refused in a row; giving up on it");
                return Ok(false);
            }
        }
        let header = if ch.scheme == "basic" {
            let Some(c) = creds else {
                log::warn!(
                    "{host} asks for a password and {} has none for it",
                    CREDENTIALS_FILE
                );
                return Ok(false);
            };
            let already = self.lock().get(&key).and_then(|s| s.header.clone());
            if already.as_deref().is_some_and(|h| h.starts_with("Basic ")) {
                return Ok(false); // the password itself was refused
            }
            c.basic()
        } else {
            let token = self.token(client, u.limits, url, &ch, creds)?;
            Zeroizing::new(format!("Bearer {}", &*token))
        };
        let mut st = self.lock();
        let e = st.entry(key).or_default();
        e.header = Some(header);
        e.tokens = e.tokens.saturating_add(1);
        Ok(true)
    }

    fn token(
        &self,
        client: &Client,
        limits: &Limits,
        registry: &Url,
        ch: &Challenge,
        creds: Option<&Credentials>,
    ) -> Result<Zeroizing<String>, OciError> {
        let host = host_port(registry);
        let what = format!("token for {host}");
        let realm = ch.param("realm").ok_or_else(|| OciError::Protocol {
            what: what.clone(),
            reason: "the Bearer challenge names no realm".into(),
        })?;
        let mut u = Url::parse(realm).map_err(|e| OciError::Protocol {
            what: what.clone(),
            reason: format!("the realm \"{}\" is not a URL: {e}", super::short(realm)),
        })?;
        if !matches!(u.scheme(), "https" | "http") {
            return Err(OciError::Protocol {
                what,
                reason: "the realm is not an http(s) URL".into(),
            });
        }
        let creds = match creds {
            Some(c) if realm_gets_credentials(registry, &u) => Some(c),
            Some(_) => {
                log::warn!(
                    "{host}: its token server {} is not on {} over {}; asking it without {host}'s credentials",
                    redact_url(&u),
                    registry.host_str().unwrap_or_default(),
                    if registry.scheme() == "https" {
                        "https"
                    } else {
                        "http(s)"
                    }
                );
                None
            }
            None => None,
        };
        {
            let mut q = u.query_pairs_mut();
            if let Some(s) = ch.param("service") {
                q.append_pair("service", s);
            }
            q.append_pair("scope", ch.param("scope").unwrap_or(&self.default_scope));
        }
        let mut req = client.get(u.clone());
        if let Some(c) = creds {
            let mut v = HeaderValue::from_str(&c.basic()).map_err(|_| OciError::Protocol {
                what: what.clone(),
                reason: "the credentials cannot be sent in a header".into(),
            })?;
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        let step = format!("the token request to {}", redact_url(&u));
        let req = req.build().map_err(|source| OciError::Http {
            what: what.clone(),
            step: step.clone(),
            source: source.without_url(),
        })?;
        // Under the attempt's own limits: a token server that never answers or trickles is
        // cut off by the deadline, the stall timer or the minimum rate like any server.
        let resp =
            crate::fetch::transfer::small(client, req, limits, SMALL_MAX).map_err(|source| {
                OciError::Request {
                    what: what.clone(),
                    step: step.clone(),
                    source: Box::new(source),
                }
            })?;
        if !resp.status.is_success() {
            return Err(OciError::Status {
                what,
                step,
                status: resp.status,
            });
        }
        let body = resp.body;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default, deserialize_with = "secret")]
            token: Option<Zeroizing<String>>,
            #[serde(default, deserialize_with = "secret")]
            access_token: Option<Zeroizing<String>>,
        }
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|_| OciError::Protocol {
            what: what.clone(),
            reason: "the token response is not the expected JSON".into(),
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OciError::Protocol {
                what: what.clone(),
                reason: "the token response holds no token".into(),
            })?;
        if token.bytes().any(|c| !(0x21..0x7f).contains(&c)) {
            return Err(OciError::Protocol {
                what,
                reason: "the token has characters a header cannot carry".into(),
            });
        }
        log::debug!(
            "{host}: got a registry token{}",
            if creds.is_some() {
                " with credentials"
            } else {
                " (anonymous)"
            }
        );
        Ok(token)
    }
}

impl crate::fetch::RequestAuth for RegistryAuth {
    fn headers(&self, url: &Url) -> HeaderMap {
        let mut h = HeaderMap::new();
        if url.path().contains("/manifests/") {
            h.insert(ACCEPT, HeaderValue::from_static(super::MANIFEST_ACCEPT));
        }
        let st = self.lock();
        if let Some(v) = st.get(&origin(url)).and_then(|s| s.header.as_ref()) {
            if let Ok(mut v) = HeaderValue::from_str(v) {
                v.set_sensitive(true);
                h.insert(AUTHORIZATION, v);
            }
        }
        h
    }

    fn unauthorized(&self, client: &Client, u: &Unauthorized) -> bool {
        match self.refresh(client, u) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{}", crate::support::exit::report(&e));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/alpine:pull"));
        let c = parse_challenge(
            r#"bearer Realm="http://h/t", scope="repository:a:pull,push", error="invalid_token""#,
        )
        .unwrap();
        assert_eq!(c.param("scope"), Some("repository:a:pull,push"));
        assert_eq!(c.param("error"), Some("invalid_token"));
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("Registry Realm"))
        );
        let c = parse_challenge(r#"Bearer realm=https://h/t,service=reg"#).unwrap();
        assert_eq!(c.param("service"), Some("reg"));
        let c = parse_challenge(r#"Bearer realm="a\"b""#).unwrap();
        assert_eq!(c.param("realm"), Some("a\"b"));
        assert_eq!(parse_challenge("Bearer").unwrap().params.len(), 0);
        for bad in [
            "",
            r#"Bearer realm="unterminated"#,
            "Bearer =x",
            "Bea(rer realm=x",
            "Bearer realm",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn docker_config() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let text = format!(
            r#"{{"auths": {{"https://reg.site:5000/v2/": {{"auth": "{b64}"}},
                "other": {{"username": "bob", "password": "pw"}}, "empty": {{}}}},
               "credHelpers": {{"x": "y"}}}}"#
        );
        let c = parse_docker_config(&text).unwrap();
        assert_eq!(c["reg.site:5000"].username, "alice");
        assert_eq!(c["reg.site:5000"].password.as_str(), "s3:cret");
        assert_eq!(c["other"].username, "bob");
        assert!(!c.contains_key("empty"));
        assert!(!format!("{:?}", c["other"]).contains("pw"));
        let e = parse_docker_config(r#"{"auths": {"h": {"auth": "!!"}}}"#).unwrap_err();
        assert!(e.contains("not base64"));
        let e = parse_docker_config(r#"{"auths": {"h": {"auth": "c2VjcmV0"}}}"#).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        let e = parse_docker_config(r#"{"auths": "secret-value"}"#).unwrap_err();
        assert!(!e.contains("secret-value"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        assert!(load_credentials(&dir.path().join("none.json"))
            .unwrap()
            .is_empty());
    }

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_go_only_to_the_registrys_own_host_over_tls() {
        let https = u("https://reg.site:5000/v2/x/blobs/sha256:00");
        let http = u("http://reg.site:5000/v2/x/manifests/t");
        for (registry, realm, ok) in [
            (&https, "https://reg.site/token", true),
            (&https, "https://reg.site:5001/token", true),
            (&https, "https://REG.site:5000/token", true),
            (&https, "http://reg.site:5001/token", false),
            (&https, "http://reg.site:5000/token", false),
            (&https, "https://auth.elsewhere/token", false),
            (&https, "https://reg.site.evil/token", false),
            (&https, "ftp://reg.site/token", false),
            (&http, "http://reg.site:5001/token", true),
            (&http, "https://reg.site/token", true),
            (&http, "http://other.site:5000/token", false),
        ] {
            assert_eq!(
                realm_gets_credentials(registry, &u(realm)),
                ok,
                "{registry} → {realm}"
            );
        }
    }

    fn creds_for(host: &str) -> BTreeMap<String, Credentials> {
        BTreeMap::from([(
            host.to_string(),
            Credentials {
                username: "alice".into(),
                password: Zeroizing::new("s3cret".into()),
            },
        )])
    }

    fn limits() -> Limits {
        Limits {
            deadline: crate::support::deadline::Deadline::after(Some(
                std::time::Duration::from_secs(5),
            )),
            stall: std::time::Duration::from_secs(1),
            min_rate: 0,
        }
    }

    /// Connections made to `l` so far (a token server that must never be asked).
    fn connections(l: &std::net::TcpListener) -> usize {
        l.set_nonblocking(true).unwrap();
        std::iter::from_fn(|| l.accept().ok()).count()
    }

    #[test]
    fn a_401_from_where_a_redirect_led_gets_neither_password_nor_token() {
        let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", evil.local_addr().unwrap());
        let reg = u("http://127.0.0.1:5000/v2/site/root/blobs/sha256:00");
        let storage = u("http://127.0.0.1:9000/bucket/blob?X-Signature=abc");
        let auth = RegistryAuth::new(creds_for("127.0.0.1:5000"), "site/root", "pull");
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!(r#"Bearer realm="{realm}",service="s""#)).unwrap(),
        );
        let client = Client::new();
        let l = limits();
        let from_storage = Unauthorized {
            url: &reg,
            answered: &storage,
            headers: &h,
            limits: &l,
        };
        assert!(!auth.refresh(&client, &from_storage).unwrap());
        assert_eq!(connections(&evil), 0, "the storage host's realm was asked");
        assert!(crate::fetch::RequestAuth::headers(&auth, &storage)
            .get(AUTHORIZATION)
            .is_none());
        // The same challenge from the registry itself is followed (same host, plain-http
        // registry): the token server is asked.
        let from_registry = Unauthorized {
            answered: &reg,
            ..from_storage
        };
        assert!(auth.refresh(&client, &from_registry).is_err());
        assert_eq!(connections(&evil), 1);
    }

    #[test]
    fn an_https_registry_never_sends_its_password_over_http() {
        // The realm answers after reading the request: what it received is checked.
        let ts = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", ts.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (mut c, _) = ts.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let n = std::io::Read::read(&mut c, &mut buf).unwrap();
            let body = r#"{"token":"t0k"}"#;
            let _ = std::io::Write::write_all(
                &mut c,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let reg = u("https://127.0.0.1:5000/v2/site/root/manifests/t");
        let auth = RegistryAuth::new(creds_for("127.0.0.1:5000"), "site/root", "pull");
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!(r#"Bearer realm="{realm}""#)).unwrap(),
        );
        let l = limits();
        let un = Unauthorized {
            url: &reg,
            answered: &reg,
            headers: &h,
            limits: &l,
        };
        assert!(auth.refresh(&Client::new(), &un).unwrap());
        let req = seen.join().unwrap();
        assert!(
            !req.to_ascii_lowercase().contains("authorization"),
            "the password went over http: {req}"
        );
    }

    proptest! {
        #[test]
        fn challenge_parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_challenge(&s);
        }

        #[test]
        fn quoted_values_round_trip(realm in "[ -~]{0,40}", service in "[a-z0-9.:-]{1,20}") {
            let q = realm.replace('\\', "\\\\").replace('"', "\\\"");
            let h = format!("Bearer realm=\"{q}\",service=\"{service}\"");
            let c = parse_challenge(&h).unwrap();
            prop_assert_eq!(c.param("realm"), Some(realm.as_str()));
            prop_assert_eq!(c.param("service"), Some(service.as_str()));
        }
    }
}
