//! `rustlive config --node-id` shows a node's mirror order, and `rustlive fetch --mirrors
//! spread --node-id` fetches in exactly that order (real servers on 127.0.0.1).

mod support;

use std::process::Command;
use support::http::{Reply, Server};
use support::{random_bytes, run_ok, sha256_hex};

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");

fn order(cmdline: &str, id: &str) -> Vec<String> {
    let out =
        run_ok(Command::new(RUSTLIVE).args(["config", "--cmdline", cmdline, "--node-id", id]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["mirror_order"]["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fetch_follows_the_order_config_shows() {
    let img = random_bytes(64 << 10, 11);
    let servers: Vec<Server> = (0..4)
        .map(|_| {
            let body = img.clone();
            Server::start(move |req| Reply::file(req, &body, "\"e\""))
        })
        .collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url("/img")).collect();
    let cmdline = format!("rd.rustlive.url={}", urls.join(","));
    let mut firsts = std::collections::BTreeSet::new();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..24 {
        let id = format!("52:54:00:00:00:{i:02x}");
        let o = order(&cmdline, &id);
        let mut sorted = o.clone();
        sorted.sort();
        let mut want = urls.clone();
        want.sort();
        assert_eq!(sorted, want, "a permutation of the mirrors");
        firsts.insert(o[0].clone());
        // The same node fetching: its first mirror, and only that one, gets the request.
        let before: Vec<usize> = servers.iter().map(|s| s.requests().len()).collect();
        let dest = dir.path().join(format!("{i}.img"));
        let mut args = vec![
            "fetch".to_string(),
            "-o".into(),
            dest.to_str().unwrap().into(),
            "--sha256".into(),
            sha256_hex(&img),
            "--mirrors".into(),
            "spread".into(),
            "--node-id".into(),
            id.clone(),
        ];
        args.extend(urls.iter().cloned());
        run_ok(Command::new(RUSTLIVE).args(&args));
        assert_eq!(std::fs::read(&dest).unwrap(), img);
        for (s, b) in servers.iter().zip(before) {
            let got = s.requests().len() - b;
            let first = s.url("/img") == o[0];
            assert_eq!(
                got,
                usize::from(first),
                "{id}: {} served {got}",
                s.url("/img")
            );
        }
    }
    assert!(firsts.len() >= 3, "24 nodes all start on {firsts:?}");
    // listed: everyone starts on the first mirror.
    let out = Command::new(RUSTLIVE)
        .args([
            "config",
            "--cmdline",
            &format!("{cmdline} rd.rustlive.mirrors=listed"),
            "--node-id",
            "x",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mirror_order"]["policy"], "listed");
    assert_eq!(v["mirror_order"]["urls"][0], urls[0].as_str());
}
