//! `rustlive fetch`: the engine on its own, for operators debugging a node and for benchmarks.
//!
//! The command line (`cli`, a higher layer) fills a [`Request`]; this module never looks at
//! the argument parser.

use super::{fetch_to_file, FetchError, FetchOptions};
use crate::deadline::Deadline;
use crate::values::Sha256Hex;
use crate::verify;
use reqwest::Url;
use std::path::PathBuf;
use std::time::Duration;

/// What `rustlive fetch` was asked to do (the options of `cli::FetchArgs`).
#[derive(Debug, Clone)]
pub struct Request {
    pub urls: Vec<Url>,
    pub output: PathBuf,
    pub sha256: Option<Sha256Hex>,
    pub sha256sums: Option<Url>,
    pub sig: Option<Url>,
    pub pubkey: Vec<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    pub retries: Option<u32>,
    pub timeout: Option<Duration>,
    pub stall: Duration,
    pub ca: Option<PathBuf>,
    pub insecure_tls: bool,
    pub proxy: Option<Url>,
    pub require_verified: bool,
}

pub fn run(a: &Request) -> Result<(), FetchError> {
    let mut keys = match &a.keys_dir {
        Some(d) => verify::load_keys_dir(d)?,
        None => Vec::new(),
    };
    for p in &a.pubkey {
        keys.push(verify::load_key(p)?);
    }
    let opts = FetchOptions {
        retries: a.retries,
        deadline: Deadline::after(a.timeout),
        stall: a.stall,
        connect_timeout: a.stall.min(std::time::Duration::from_secs(15)),
        ca: a.ca.clone(),
        insecure_tls: a.insecure_tls,
        proxy: a.proxy.clone(),
        sha256: a.sha256,
        sha256sums: a.sha256sums.clone(),
        sig: a.sig.clone(),
        keys,
        verify_required: a.require_verified,
        ..FetchOptions::default()
    };
    fetch_to_file(&a.urls, &a.output, &opts)?;
    Ok(())
}
