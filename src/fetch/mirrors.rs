//! Which mirror a node tries first: rendezvous (highest-random-weight) hashing of the node's
//! identity and each mirror.
//!
//! Every node scores every mirror with `SHA-256(identity, 0, mirror)` and tries them from the
//! highest score down. Scores are independent per (node, mirror), so N mirrors each come first for
//! about 1/N of the nodes; when one mirror fails, each of its nodes falls through to its own
//! second choice, which is again uniform over the others — the failed mirror's load spreads
//! evenly instead of landing on the next one in the list, and no other node changes mirror. A
//! node keeps the same first choice from boot to boot (mirror caches stay warm), and the whole
//! decision is a pure function of the two strings, tested here without a network.
//!
//! The mirror's key is its URL without userinfo, query or fragment, so rotating a token in a query string does not reshuffle the nodes.

use crate::support::log::redact_url;
use reqwest::Url;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::support::values::MirrorPolicy;

/// Where a node's identity came from (logged, so an operator can predict the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The MAC address of the interface that routes to the first mirror.
    Mac,
    /// `/sys/class/dmi/id/product_uuid`.
    ProductUuid,
    /// The kernel's host name.
    Hostname,
    /// Given by hand (`--node-id`).
    Given,
}

impl std::fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentitySource::Mac => "MAC address",
            IdentitySource::ProductUuid => "DMI product_uuid",
            IdentitySource::Hostname => "host name",
            IdentitySource::Given => "--node-id",
        })
    }
}

/// The string a node is known by for mirror ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeId {
    pub id: String,
    pub source: IdentitySource,
}

impl NodeId {
    pub fn given(id: &str) -> NodeId {
        NodeId {
            id: id.to_string(),
            source: IdentitySource::Given,
        }
    }

    /// The first usable of: the MAC (lower-case `xx:…`, not all zeros, which is loopback's and
    /// identifies no node), the DMI UUID, the host name (each already validated by the caller,
    /// `secrets::NodeFacts` on a node).
    pub fn choose(
        mac: Option<String>,
        uuid: Option<String>,
        hostname: Option<String>,
    ) -> Option<NodeId> {
        let mac = mac.filter(|m| m != "00:00:00:00:00:00");
        let pick = |id: Option<String>, source| id.map(|id| NodeId { id, source });
        pick(mac, IdentitySource::Mac)
            .or_else(|| pick(uuid, IdentitySource::ProductUuid))
            .or_else(|| pick(hostname, IdentitySource::Hostname))
    }
}

/// The rendezvous weight of `mirror` for node `id`: the first 8 bytes of
/// `SHA-256(id ‖ 0x00 ‖ mirror)`. The NUL keeps `("ab", "c")` and `("a", "bc")` apart.
pub fn weight(id: &str, mirror: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0u8]);
    h.update(mirror.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, f, g, i, j, ..] = d;
    u64::from_be_bytes([a, b, c, e, f, g, i, j])
}

/// Indices of `mirrors` from the highest weight for `id` down; equal weights (identical
/// mirrors) keep the listed order.
pub fn rank(id: &str, mirrors: &[&str]) -> Vec<usize> {
    let mut idx: Vec<(u64, usize)> = mirrors
        .iter()
        .enumerate()
        .map(|(i, m)| (weight(id, m), i))
        .collect();
    idx.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    idx.into_iter().map(|(_, i)| i).collect()
}

/// The order a node fetches piece `piece` of the image in (see `pieces`): piece 0 in the
/// node's own order (the one `rustlive config --node-id` shows), every later piece in an
/// order of its own, so the pieces of one node spread over all the mirrors and a failed
/// mirror's pieces spread over the others.
pub fn piece_rank(id: &str, piece: u64, keys: &[&str]) -> Vec<usize> {
    if piece == 0 {
        return rank(id, keys);
    }
    rank(&format!("{id}\0{piece}"), keys)
}

/// Each mirror's key for hashing (see [`mirror_key`]), in the order given.
pub fn keys(urls: &[Url]) -> Vec<String> {
    urls.iter().map(mirror_key).collect()
}

/// The order a node tries `urls` in under `policy`. Without an identity, `spread` falls back
/// to the listed order (every node then agrees, which is the old behaviour, never worse).
pub fn order(urls: &[Url], policy: MirrorPolicy, node: Option<&NodeId>) -> Vec<Url> {
    match (policy, node) {
        (MirrorPolicy::Spread, Some(n)) if urls.len() > 1 => {
            let keys = keys(urls);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            rank(&n.id, &refs)
                .into_iter()
                .filter_map(|i| urls.get(i).cloned())
                .collect()
        }
        _ => urls.to_vec(),
    }
}

/// What a booting node does with its identity (found by the caller only when it matters, see
/// [`needs_identity`]): order the mirrors, saying in the debug log which identity it used.
pub fn order_for_node(urls: &[Url], policy: MirrorPolicy, node: Option<&NodeId>) -> Vec<Url> {
    if !needs_identity(urls, policy) {
        return urls.to_vec();
    }
    let ordered = order(urls, policy, node);
    match node {
        Some(n) => log::debug!(
            "mirrors: spread by the node's {} ({}); order: {}",
            n.source,
            n.id,
            urls_line(&ordered)
        ),
        None => log::warn!(
            "mirrors: no MAC address, DMI product_uuid or host name identifies this node; using the listed order"
        ),
    }
    ordered
}

/// Whether the order depends on the node at all.
pub fn needs_identity(urls: &[Url], policy: MirrorPolicy) -> bool {
    policy == MirrorPolicy::Spread && urls.len() > 1
}

/// A mirror's identity for hashing: its URL without userinfo, query or fragment.
fn mirror_key(u: &Url) -> String {
    let mut k = u.clone();
    let _ = k.set_username("");
    let _ = k.set_password(None);
    k.set_query(None);
    k.set_fragment(None);
    k.to_string()
}

fn urls_line(urls: &[Url]) -> String {
    urls.iter().map(redact_url).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("http://mirror{i}.site/img"))
            .collect()
    }

    fn ids(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| {
            format!(
                "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
                i >> 24,
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
    }

    #[test]
    fn first_choices_are_even_over_2_to_16_mirrors() {
        for n in 2..=16 {
            let m = mirrors(n);
            let refs: Vec<&str> = m.iter().map(String::as_str).collect();
            let mut count = vec![0usize; n];
            for id in ids(10_000) {
                count[rank(&id, &refs)[0]] += 1;
            }
            let share = 10_000.0 / n as f64;
            for (i, c) in count.iter().enumerate() {
                // A binomial spread at 10,000 draws: 4 standard deviations is well under 10 %
                // of the share for n ≤ 16; a biased hash would miss by far more.
                let sd = (10_000.0 * (1.0 / n as f64) * (1.0 - 1.0 / n as f64)).sqrt();
                let dev = (*c as f64 - share).abs();
                assert!(
                    dev <= 4.0 * sd,
                    "{n} mirrors: mirror {i} is first for {c} ids, share {share:.0} (sd {sd:.1})"
                );
                assert!(dev / share < 0.10, "{n} mirrors: {count:?}");
            }
        }
    }

    #[test]
    fn removing_a_mirror_moves_only_its_nodes_and_spreads_them() {
        for n in 3..=16 {
            let m = mirrors(n);
            let all: Vec<&str> = m.iter().map(String::as_str).collect();
            let gone = n / 2;
            let rest: Vec<&str> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, s)| *s)
                .collect();
            let mut moved_to = vec![0usize; n];
            let mut moved = 0;
            for id in ids(10_000) {
                let before = all[rank(&id, &all)[0]];
                let after = rest[rank(&id, &rest)[0]];
                if before == all[gone] {
                    moved += 1;
                    let j = all.iter().position(|s| *s == after).unwrap();
                    moved_to[j] += 1;
                    // Its new mirror is its own second choice: the retry order is stable.
                    assert_eq!(after, all[rank(&id, &all)[1]]);
                } else {
                    assert_eq!(before, after, "{id} moved although its mirror stayed");
                }
            }
            let share = moved as f64 / (n - 1) as f64;
            for (j, c) in moved_to.iter().enumerate().filter(|(j, _)| *j != gone) {
                let sd = (moved as f64 / (n - 1) as f64).sqrt();
                assert!(
                    (*c as f64 - share).abs() <= 4.5 * sd + 1.0,
                    "{n} mirrors: mirror {j} took {c} of {moved} moved ids (share {share:.0})"
                );
            }
        }
    }

    #[test]
    fn order_is_a_permutation_and_stable() {
        let urls: Vec<Url> = mirrors(5).iter().map(|s| Url::parse(s).unwrap()).collect();
        let node = NodeId::given("node-17");
        let a = order(&urls, MirrorPolicy::Spread, Some(&node));
        let b = order(&urls, MirrorPolicy::Spread, Some(&node));
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        let mut orig = urls.clone();
        orig.sort();
        assert_eq!(sorted, orig);
        assert_eq!(order(&urls, MirrorPolicy::Listed, Some(&node)), urls);
        assert_eq!(order(&urls, MirrorPolicy::Spread, None), urls);
        // Secrets in a query string do not change the order.
        let q: Vec<Url> = urls
            .iter()
            .map(|u| Url::parse(&format!("{u}?token=x")).unwrap())
            .collect();
        let qa: Vec<String> = order(&q, MirrorPolicy::Spread, Some(&node))
            .iter()
            .map(mirror_key)
            .collect();
        let plain: Vec<String> = a.iter().map(mirror_key).collect();
        assert_eq!(qa, plain);
    }

    #[test]
    fn the_first_piece_follows_the_nodes_order_and_the_others_their_own() {
        let m = mirrors(4);
        let refs: Vec<&str> = m.iter().map(String::as_str).collect();
        let mut firsts = std::collections::BTreeSet::new();
        for k in 0..64 {
            let r = piece_rank("node-3", k, &refs);
            if k == 0 {
                assert_eq!(r, rank("node-3", &refs));
            }
            assert_eq!(r, piece_rank("node-3", k, &refs), "stable");
            firsts.insert(r[0]);
        }
        assert_eq!(firsts.len(), 4, "one node's pieces reach every mirror");
    }

    #[test]
    fn weight_separates_its_inputs() {
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
        assert_eq!(weight("n", "m"), weight("n", "m"));
    }

    #[test]
    fn identity_preference() {
        let s = |v: &str| Some(v.to_string());
        let uuid = "4c4c4544-0042-3510-8052-b4c04f4e3432";
        let n = NodeId::choose(s("52:54:00:aa:bb:01"), s(uuid), s("n1")).unwrap();
        assert_eq!(
            (n.id.as_str(), n.source),
            ("52:54:00:aa:bb:01", IdentitySource::Mac)
        );
        let n = NodeId::choose(s("00:00:00:00:00:00"), s(uuid), s("n1")).unwrap();
        assert_eq!(n.source, IdentitySource::ProductUuid);
        let n = NodeId::choose(None, None, s("n1")).unwrap();
        assert_eq!((n.id.as_str(), n.source), ("n1", IdentitySource::Hostname));
        assert_eq!(NodeId::choose(None, None, None), None);
    }

    #[test]
    fn policy_values() {
        assert_eq!(MirrorPolicy::parse("spread"), Ok(MirrorPolicy::Spread));
        assert_eq!(MirrorPolicy::parse("listed"), Ok(MirrorPolicy::Listed));
        assert!(MirrorPolicy::parse("random").is_err());
        assert_eq!(MirrorPolicy::default(), MirrorPolicy::Spread);
    }
}
