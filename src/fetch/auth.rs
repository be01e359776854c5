//! The hook a source needs when a plain GET is not enough: extra headers and 401 handling.

use super::watchdog::Limits;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use reqwest::Url;

/// A 401 as an attempt received it.
#[derive(Debug, Clone, Copy)]
pub struct Unauthorized<'a> {
    /// The URL the attempt asked for: the source's own (a registry's), whose credentials apply.
    pub url: &'a Url,
    /// The URL that answered 401: `url`, or where its redirects led (blob storage elsewhere,
    /// which must get none of the source's credentials).
    pub answered: &'a Url,
    /// The 401's headers (`WWW-Authenticate`).
    pub headers: &'a HeaderMap,
    /// The attempt's deadline, stall and minimum rate: a request for new credentials (a
    /// registry token) obeys them like every other request.
    pub limits: &'a Limits,
}

/// What a source adds to each request, for sources that need more than a GET (OCI
/// registries: `Accept`, a Bearer token refreshed on 401). Defined here, implemented by the
/// `oci` stage, so the engine knows nothing of registries.
pub trait RequestAuth: std::fmt::Debug + Send + Sync {
    /// Headers for a request to `url` (none for a host it holds no credentials for).
    fn headers(&self, url: &Url) -> HeaderMap;
    /// A request answered 401: obtain new credentials; `true` when the request is worth
    /// repeating with them.
    fn unauthorized(&self, client: &Client, u: &Unauthorized) -> bool;
}
