//! The HTTP client: rustls with an explicit CA bundle, optional client identity, proxy,
//! connect timeout, stall timeout and a bounded redirect policy.
//!
//! reqwest's blocking client applies its `timeout` to each wait separately (the response
//! headers, then every body read), not to the transfer as a whole, so it is exactly the stall
//! timer: a slow but moving download never times out, a silent one does after `stall`.
//! Leaving it at its 30 s default would silently override `rd.rustlive.stall`.

pub use super::redirect::{check_redirect, redirect_refusal, RedirectRefused};
use reqwest::blocking::Client;
use reqwest::{redirect, Certificate, Identity, Url};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// CA bundles tried in order when `rd.rustlive.ca` is not given: the one the rustlive dracut
/// module installs, then the usual distribution bundles (for `rustlive fetch` on a host).
pub const DEFAULT_CA_BUNDLES: &[&str] = &[
    "/etc/rustlive/ca.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Why no client could be built. Apart from [`ClientError::Build`], these are local
/// configuration errors (exit 2): a CA bundle or client identity that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("cannot read the CA bundle {path}")]
    CaRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA bundle {path} holds no usable PEM certificate")]
    CaParse {
        path: PathBuf,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("cannot read the client certificate or key {path}")]
    IdentityRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the client certificate {cert} and its key do not form a usable identity")]
    IdentityParse {
        cert: PathBuf,
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// A file given on the command line is unusable (as opposed to reqwest failing).
    pub fn is_local_configuration(&self) -> bool {
        !matches!(self, ClientError::Build(_))
    }
}

/// Longest single wait handed to reqwest (which adds it to `Instant::now()` unchecked): a
/// day, far beyond any sensible stall, far below any overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A client certificate and key (PEM files) for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything that shapes a client; one is built per download.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// Explicit CA bundle; `None` tries [`DEFAULT_CA_BUNDLES`].
    pub ca: Option<&'a Path>,
    pub insecure_tls: bool,
    pub identity: Option<&'a ClientIdentity>,
    pub proxy: Option<&'a Url>,
    pub connect_timeout: Duration,
    pub stall: Duration,
    pub max_redirects: usize,
    /// Follow an https→http redirect (only when a hash or signature pins the content).
    pub allow_downgrade: bool,
}

pub fn build(s: &Settings) -> Result<Client, ClientError> {
    let (max, downgrade) = (s.max_redirects, s.allow_downgrade);
    let policy = redirect::Policy::custom(move |a| {
        match check_redirect(a.url(), a.previous(), max, downgrade) {
            Ok(()) => a.follow(),
            Err(e) => a.error(e),
        }
    });
    let mut b = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .https_only(false)
        .redirect(policy)
        .connect_timeout(s.connect_timeout.min(MAX_WAIT))
        // A backstop only: the transfer enforces the stall and the deadline itself. reqwest
        // adds this to `Instant::now()` unchecked, hence the clamp.
        .timeout(s.stall.min(MAX_WAIT))
        // One connection per download: nothing to gain from idle pooled sockets, and a
        // connection that went bad must not be reused by the retry.
        .pool_max_idle_per_host(0)
        .no_proxy();
    if let Some(p) = s.proxy {
        b = b.proxy(reqwest::Proxy::all(p.clone()).map_err(ClientError::Build)?);
    }
    for c in load_ca(s.ca)? {
        b = b.add_root_certificate(c);
    }
    if s.insecure_tls {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(id) = s.identity {
        b = b.identity(load_identity(id)?);
    }
    b.build().map_err(ClientError::Build)
}

fn load_ca(explicit: Option<&Path>) -> Result<Vec<Certificate>, ClientError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match DEFAULT_CA_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
        {
            Some(p) => p.to_path_buf(),
            // Plain http still works; an https URL fails with an unknown-issuer error.
            None => return Ok(Vec::new()),
        },
    };
    let pem = std::fs::read(&path).map_err(|source| ClientError::CaRead {
        path: path.clone(),
        source,
    })?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::CaParse {
        path: path.clone(),
        source: Some(source),
    })?;
    if certs.is_empty() {
        return Err(ClientError::CaParse { path, source: None });
    }
    Ok(certs)
}

fn load_identity(id: &ClientIdentity) -> Result<Identity, ClientError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map(Zeroizing::new)
            .map_err(|source| ClientError::IdentityRead {
                path: p.into(),
                source,
            })
    };
    let mut pem = read(&id.key)?;
    pem.push(b'\n');
    pem.extend_from_slice(&read(&id.cert)?);
    Identity::from_pem(&pem).map_err(|source| ClientError::IdentityParse {
        cert: id.cert.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_ca_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        assert!(matches!(load_ca(Some(&p)), Err(ClientError::CaRead { .. })));
        std::fs::write(&p, "no certificates here\n").unwrap();
        assert!(matches!(
            load_ca(Some(&p)),
            Err(ClientError::CaParse { .. })
        ));
    }
}
