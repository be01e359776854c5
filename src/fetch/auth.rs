//! The hook a source needs when a plain GET is not enough: extra headers and 401 handling.

use reqwest::blocking::Client;
use reqwest::Url;

/// What a source adds to each request, for sources that need more than a GET (OCI
/// registries: `Accept`, a Bearer token refreshed on 401). Defined here, implemented by the
/// `oci` stage, so the engine knows nothing of registries.
pub trait RequestAuth: std::fmt::Debug + Send + Sync {
    /// Headers for a request to `url` (none for a host it holds no credentials for).
    fn headers(&self, url: &Url) -> reqwest::header::HeaderMap;
    /// `url` answered 401 with `headers`: obtain new credentials; `true` when the request is
    /// worth repeating with them.
    fn unauthorized(
        &self,
        client: &Client,
        url: &Url,
        headers: &reqwest::header::HeaderMap,
    ) -> bool;
}
