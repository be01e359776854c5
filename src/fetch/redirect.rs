//! The redirect policy (bounded, no loops, no silent https→http downgrade) and how to find
//! its refusal in a reqwest error. Depends on nothing else in `fetch`, so both the client
//! builder and the transfer can use it without importing each other.

use crate::support::log::redact_url;
use reqwest::Url;

/// Why a redirect was not followed. Found in a reqwest error's source chain.
#[derive(Debug, thiserror::Error)]
pub enum RedirectRefused {
    #[error("more than {0} redirects")]
    TooMany(usize),
    #[error("redirect loop back to {0}")]
    Loop(String),
    #[error(
        "redirect from https to plain http ({0}) refused because no hash or signature pins the content"
    )]
    Downgrade(String),
}

/// The redirect decision, separate from reqwest so it is unit-tested directly.
pub fn check_redirect(
    next: &Url,
    previous: &[Url],
    max: usize,
    allow_downgrade: bool,
) -> Result<(), RedirectRefused> {
    if previous.contains(next) {
        return Err(RedirectRefused::Loop(redact_url(next)));
    }
    if previous.len() > max {
        return Err(RedirectRefused::TooMany(max));
    }
    if !allow_downgrade && next.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https")
    {
        return Err(RedirectRefused::Downgrade(redact_url(next)));
    }
    Ok(())
}

/// The first [`RedirectRefused`] in an error's source chain.
pub fn redirect_refusal(e: &reqwest::Error) -> Option<&RedirectRefused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<RedirectRefused>() {
            return Some(r);
        }
        cur = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirects() {
        let a = u("https://a/img");
        let b = u("https://b/img");
        let plain = u("http://c/img");
        assert!(check_redirect(&b, std::slice::from_ref(&a), 10, false).is_ok());
        assert!(matches!(
            check_redirect(&a, &[a.clone(), b.clone()], 10, false),
            Err(RedirectRefused::Loop(_))
        ));
        assert!(matches!(
            check_redirect(&plain, std::slice::from_ref(&a), 10, false),
            Err(RedirectRefused::Downgrade(_))
        ));
        assert!(check_redirect(&plain, std::slice::from_ref(&a), 10, true).is_ok());
        assert!(check_redirect(&u("http://d/"), std::slice::from_ref(&plain), 10, false).is_ok());
        let chain: Vec<Url> = (0..11).map(|i| u(&format!("http://h/{i}"))).collect();
        assert!(matches!(
            check_redirect(&u("http://h/x"), &chain, 10, false),
            Err(RedirectRefused::TooMany(10))
        ));
    }
}
