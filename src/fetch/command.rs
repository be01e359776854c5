//! `rustlive fetch`: the engine on its own, for operators debugging a node and for benchmarks.

use super::{fetch_to_file, FetchError, FetchOptions};
use crate::cli::FetchArgs;
use crate::verify;
use std::time::Instant;

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
        deadline: a.timeout.map(|d| Instant::now() + d),
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
    let node = match &a.node_id {
        Some(id) => Some(super::mirrors::NodeId::given(id)),
        None if a.mirrors == super::mirrors::MirrorPolicy::Spread => {
            let first = a.urls.first().and_then(|u| u.host_str());
            super::mirrors::NodeId::of_this_node(first, std::path::Path::new("/"))
        }
        None => None,
    };
    let urls = super::mirrors::order(&a.urls, a.mirrors, node.as_ref());
    if let Some(n) = &node {
        log::debug!(
            "mirrors ({:?}) for {} ({}): {:?}",
            a.mirrors,
            n.id,
            n.source,
            urls.iter().map(crate::log::redact_url).collect::<Vec<_>>()
        );
    }
    let creds = a
        .registry_auth
        .clone()
        .unwrap_or_else(|| crate::oci::auth::CREDENTIALS_FILE.into());
    let (urls, opts) = crate::oci::pull::prepare(&urls, &opts, &creds)?;
    fetch_to_file(&urls, &a.output, &opts)?;
    Ok(())
}
