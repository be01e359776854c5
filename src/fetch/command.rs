//! `rustlive fetch`: the engine on its own, for operators debugging a node and for benchmarks.

use super::{fetch_to_file, FetchError, FetchOptions};
use crate::cli::FetchArgs;
use crate::deadline::Deadline;
use crate::verify;

pub fn run(a: &FetchArgs) -> Result<(), FetchError> {
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
