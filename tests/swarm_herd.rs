//! The swarm at herd scale with real software: 16 `rustlive fetch torrent://…` processes, each
//! in its own network namespace behind a veth capped by tc (tbf, both directions), nginx as the
//! web seed behind a link with the same cap, opentracker on the bridge
//! (`tests/support/herd.rs`). Every node must exit 0 with the verified file, the origin must
//! serve at most 1.5× the image, and a node killed (SIGKILL) half-way must stall nobody.
//! Assertions on counts and bytes only; the times are printed.

#[path = "support/herd.rs"]
mod herd;

use std::time::Duration;

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");
const NODES: usize = 16;
const IMAGE: u64 = 16 << 20;
/// Every node's link and the server's: 100 Mbit/s, so one node alone takes about 1.4 s.
const MBIT: u32 = 100;

#[test]
fn sixteen_nodes_share_the_image_and_one_leaving_half_way_stalls_nobody() {
    if let Err(why) = herd::available() {
        rustlive::support::testing::skip(&why);
        return;
    }
    let net = herd::Net::create(NODES, MBIT, MBIT).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = herd::Image::create(dir.path(), RUSTLIVE.as_ref(), IMAGE, 20, None).unwrap();
    let victim = NODES - 1;
    let cfg = herd::RunConfig {
        mode: herd::Mode::Torrent,
        bin: RUSTLIVE.into(),
        nodes: NODES,
        // Long enough that the first to finish still serve the last (the whole herd takes a
        // few seconds at these caps), short enough to keep the test short.
        seed: Duration::from_secs(15),
        timeout: Duration::from_secs(60),
        kill_half: Some(victim),
        stop_when_done: false,
        verify: true,
        extra: vec![],
    };
    let o = herd::run_herd(&net, &img, &cfg, &dir.path().join("run")).unwrap();
    for n in &o.nodes {
        println!(
            "node {:2}: completed {:?}, exit {:?}, killed at {:?}: {}",
            n.index,
            n.completed,
            n.exit,
            n.killed_at,
            n.summary.as_deref().unwrap_or("-")
        );
    }
    println!(
        "herd time {:?}; origin served {} bytes in {} requests: {:.2}x the image; \
         a node's CPU {:?} on average, its peak RSS at most {:?} bytes",
        o.herd_time,
        o.origin_bytes,
        o.origin_requests,
        o.origin_ratio(),
        o.node_cpu,
        o.node_peak_rss
    );
    // The victim was killed half-way, not before and not after it had the file.
    let v = &o.nodes[victim];
    assert!(
        v.killed_at.is_some_and(|f| f < 1.0) && v.completed.is_none(),
        "the node to kill half-way was not: {v:?}"
    );
    // Every other node: its file, verified, and exit 0.
    assert_eq!(o.completed(), NODES - 1, "{}", o.failures());
    for n in o.survivors() {
        assert!(n.verified, "node {} has other bytes", n.index);
        assert_eq!(
            n.exit,
            Some(0),
            "node {} did not exit 0:\n{}",
            n.index,
            n.log_tail()
        );
        let s = n.summary.as_deref().unwrap_or_default();
        assert!(s.contains("from the swarm"), "node {}: {s}", n.index);
    }
    // The origin sent the image about once, not once per node.
    assert!(
        o.origin_bytes * 2 <= img.len * 3,
        "the origin served {} bytes, {:.2}x the image (at most 1.5x); its requests \
         (URI STATUS BYTES CLIENT RANGE SECONDS END):\n{}",
        o.origin_bytes,
        o.origin_ratio(),
        o.origin_log
    );
    drop(net);
    assert!(
        !std::fs::read_dir("/run/netns")
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(&format!(
                "{}{}-",
                herd::PREFIX,
                std::process::id()
            ))),
        "namespaces left behind"
    );
}
