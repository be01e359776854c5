//! What every part of one attempt shares: the [`Sink`] the body goes to, and how an attempt
//! ends badly ([`AttemptError`], or the sink's own error in [`Failure::Sink`]).
//!
//! Whether an error is worth another attempt ([`AttemptError::is_retryable`]) and how long a
//! server asked to wait ([`AttemptError::retry_after`]) are decided here, for [`super::planner`].

use reqwest::StatusCode;
use std::io;
use std::time::Duration;

/// Where the body goes.
pub trait Sink {
    type Error;
    /// Called once per accepted response, before its first byte: the body starts at `offset`
    /// (0: from scratch, drop anything received so far) of a file `total` bytes long.
    fn begin(&mut self, offset: u64, total: Option<u64>) -> Result<(), Self::Error>;
    fn write(&mut self, buf: &[u8]) -> Result<(), Self::Error>;
}

/// How an attempt ended badly: the transfer, or the sink (its own error, passed through).
#[derive(Debug)]
pub enum Failure<E> {
    Attempt(AttemptError),
    Sink(E),
}

impl<E> From<AttemptError> for Failure<E> {
    fn from(e: AttemptError) -> Self {
        Failure::Attempt(e)
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot connect")]
    Connect(#[source] reqwest::Error),
    #[error("TLS handshake failed")]
    Tls(#[source] reqwest::Error),
    #[error("redirect refused")]
    Redirect(#[source] reqwest::Error),
    #[error("no valid HTTP response")]
    Protocol(#[source] reqwest::Error),
    #[error("no data for {0} s (stalled)")]
    Stall(u64),
    #[error(
        "too slow: {bytes} bytes in {secs} s, below the minimum of {min_rate} bytes/s (trickling?)"
    )]
    TooSlow {
        bytes: u64,
        secs: u64,
        min_rate: u64,
    },
    #[error("the server answered {status}")]
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("the transfer broke")]
    Body(#[source] io::Error),
    #[error("the body ended after {got} of {expected} bytes")]
    Incomplete { got: u64, expected: u64 },
    #[error("bad partial response: {0}")]
    BadRange(String),
    #[error("the body is longer than announced ({expected} bytes); refusing the extra data")]
    Oversize { expected: u64 },
    /// More bytes than the source itself says the file has (an OCI layer descriptor's size),
    /// whatever the headers said: the source is refused as corrupt.
    #[error("the body is longer than the {max} bytes its descriptor states; refused as corrupt")]
    TooLong { max: u64 },
    #[error("cannot read {path}")]
    File {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the overall deadline passed")]
    Deadline,
    /// A 401 after which [`super::auth::RequestAuth`] obtained new credentials (an expired
    /// registry token): worth repeating at once.
    #[error("the server refused the credentials (401); new ones were obtained")]
    Reauthorized,
    /// A mirror asked for one piece of an image spread over several mirrors answered with
    /// something that does not continue the bytes received so far (another length, other
    /// validators, the whole file). The bytes received are kept; that mirror is left out.
    #[error("it does not serve the same file as the other mirrors: {0}")]
    OtherFile(String),
}

impl AttemptError {
    /// Whether trying again (possibly on another mirror) can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Connect(_)
            | AttemptError::Protocol(_)
            | AttemptError::Stall(_)
            | AttemptError::TooSlow { .. }
            | AttemptError::Body(_)
            | AttemptError::Incomplete { .. }
            | AttemptError::BadRange(_)
            | AttemptError::Reauthorized => true,
            AttemptError::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            AttemptError::Tls(_)
            | AttemptError::Redirect(_)
            | AttemptError::Oversize { .. }
            | AttemptError::TooLong { .. }
            | AttemptError::File { .. }
            | AttemptError::OtherFile(_)
            | AttemptError::Deadline => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Status { retry_after, .. } => *retry_after,
            AttemptError::Reauthorized => Some(Duration::from_millis(100)),
            _ => None,
        }
    }
}
