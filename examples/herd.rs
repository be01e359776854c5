//! The herd benchmark behind `bench/herd-p2p.sh` (dev only, never shipped): for each N, N
//! `rustlive fetch` processes in network namespaces with the same capped link each, and nginx
//! (the origin) behind the same cap, once with BitTorrent (`torrent://`, opentracker, nginx as
//! web seed) and once from the mirror only (`http://…/img`, today's boot), in the same run on
//! the same network (`tests/support/herd.rs`). One node alone in each mode first: the
//! reference for the time ratios. Prints a table (herd completion time, origin bytes, ratios)
//! and writes it as CSV.
//!
//! `cargo run --example herd -- --bin RUSTLIVE [--nodes 16,64,256] [--image-mib 32]
//! [--node-mbit 100] [--server-mbit 100] [--modes bittorrent,mirrors-only] [--work DIR]
//! [--csv FILE]`
//! (root; `--work` gets the nodes' files: N × image at once).

#[path = "../tests/support/herd.rs"]
mod herd;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

struct Args {
    bin: PathBuf,
    nodes: Vec<usize>,
    image_mib: u64,
    node_mbit: u32,
    server_mbit: u32,
    work: PathBuf,
    csv: Option<PathBuf>,
    modes: Vec<herd::Mode>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        bin: "target/x86_64-unknown-linux-musl/release/rustlive".into(),
        nodes: vec![16, 64, 256],
        image_mib: 32,
        node_mbit: 100,
        server_mbit: 100,
        work: "/var/tmp".into(),
        csv: None,
        modes: vec![herd::Mode::Torrent, herd::Mode::Mirrors],
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k} {v}: {e}"));
        match k.as_str() {
            "--bin" => a.bin = v.into(),
            "--nodes" => {
                a.nodes = v
                    .split(',')
                    .map(|n| num(n).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--image-mib" => a.image_mib = num(&v)?,
            "--node-mbit" => a.node_mbit = num(&v)? as u32,
            "--server-mbit" => a.server_mbit = num(&v)? as u32,
            "--work" => a.work = v.into(),
            "--csv" => a.csv = Some(v.into()),
            "--modes" => {
                a.modes = v
                    .split(',')
                    .map(|m| match m {
                        "bittorrent" => Ok(herd::Mode::Torrent),
                        "mirrors-only" => Ok(herd::Mode::Mirrors),
                        _ => Err(format!("--modes: bittorrent or mirrors-only, not {m}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.nodes.iter().any(|&n| n == 0 || n > 1000) {
        return Err("--nodes: 1 to 1000 each".into());
    }
    Ok(a)
}

fn main() {
    if let Err(e) = herd::available().and_then(|()| bench(&parse()?)) {
        eprintln!("herd: {e}");
        std::process::exit(1);
    }
}

/// The herd-time goal: the largest herd within this many times one node alone.
const HERD_GOAL: f64 = 4.0;

struct Row {
    mode: herd::Mode,
    nodes: usize,
    completed: usize,
    herd_s: Option<f64>,
    median_s: Option<f64>,
    origin: u64,
    origin_ratio: f64,
    /// The host's CPUs, busy share during the run.
    cpu: Option<f64>,
    /// CPU seconds one node used, on average.
    node_cpu: Option<f64>,
    /// The largest peak RSS of a node, MiB.
    node_rss: Option<f64>,
}

impl Row {
    /// How long the nodes' own CPU time takes on `cores` cores, at the least: every node's work
    /// shares this host's cores, where a cluster's nodes each have their own.
    fn cpu_floor(&self, cores: usize) -> Option<f64> {
        let cores = cores.max(1) as f64;
        self.node_cpu.map(|c| c * self.nodes as f64 / cores)
    }
}

fn bench(a: &Args) -> Result<(), String> {
    let max = a.nodes.iter().copied().max().unwrap_or(1);
    let t = std::time::Instant::now();
    let net = herd::Net::create(max, a.node_mbit, a.server_mbit)?;
    eprintln!(
        "herd: {max} node namespaces up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::Builder::new()
        .prefix("rustlive-herd-p2p.")
        .tempdir_in(&a.work)
        .map_err(|e| format!("{}: {e}", a.work.display()))?;
    let img = herd::Image::create(dir.path(), &a.bin, a.image_mib << 20, 42, None)?;
    // What the slowest plausible run needs: every node's bytes through the server's cap
    // (mirrors only), twice, plus a margin.
    let server_bps = u64::from(a.server_mbit) * 1_000_000 / 8;
    let mut rows = Vec::new();
    let mut csv = String::from(
        "mode,nodes,completed,herd_s,median_s,origin_bytes,origin_ratio,time_ratio,image_bytes,node_mbit,server_mbit,host_cpu_busy,node_cpu_s,node_peak_rss_mib\n",
    );
    println!(
        "{:>5}  {:<12}  {:>9}  {:>8}  {:>8}  {:>10}  {:>12}  {:>10}  {:>8}  {:>10}  {:>8}",
        "N",
        "mode",
        "completed",
        "herd s",
        "median s",
        "origin MiB",
        "origin/image",
        "herd/alone",
        "host cpu",
        "node cpu s",
        "node MiB"
    );
    let mut alone: Option<f64> = None;
    let runs = std::iter::once(1).chain(a.nodes.iter().copied());
    for n in runs {
        // One node alone from the mirror first: the reference of every time ratio.
        let modes = if n == 1 {
            vec![herd::Mode::Mirrors, herd::Mode::Torrent]
        } else {
            a.modes.clone()
        };
        for mode in modes {
            let need = (n as u64 * img.len * 2 / server_bps.max(1)).max(60) + 120;
            let cfg = herd::RunConfig {
                mode,
                bin: a.bin.clone(),
                nodes: n,
                seed: Duration::from_secs(need),
                timeout: Duration::from_secs(need),
                kill_half: None,
                stop_when_done: true,
                verify: false,
                // More `rustlive fetch` arguments for every node (`HERD_EXTRA=--debug`).
                extra: std::env::var("HERD_EXTRA")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            };
            let work = dir.path().join(format!("{}-{n}", mode.name()));
            let o = herd::run_herd(&net, &img, &cfg, &work)?;
            let mut times: Vec<f64> = o
                .nodes
                .iter()
                .filter_map(|x| x.completed.map(|c| c.as_secs_f64()))
                .collect();
            times.sort_by(f64::total_cmp);
            let row = Row {
                mode,
                nodes: n,
                completed: o.completed(),
                herd_s: o.herd_time.map(|d| d.as_secs_f64()),
                median_s: times.get(times.len() / 2).copied(),
                origin: o.origin_bytes,
                origin_ratio: o.origin_ratio(),
                cpu: o.cpu_busy,
                node_cpu: o.node_cpu.map(|d| d.as_secs_f64()),
                node_rss: o.node_peak_rss.map(|b| b as f64 / f64::from(1 << 20)),
            };
            if n == 1 && mode == herd::Mode::Mirrors {
                alone = row.herd_s;
            }
            if std::env::var_os("HERD_KEEP").is_some() {
                let _ = std::fs::write(work.join("access.log.kept"), &o.origin_log);
            }
            if row.completed < n {
                eprint!("{}", o.failures());
            }
            let ratio = row.herd_s.zip(alone).map(|(h, a)| h / a);
            let f = |x: Option<f64>, p: usize| x.map_or("-".into(), |x| format!("{x:.p$}"));
            println!(
                "{:>5}  {:<12}  {:>9}  {:>8}  {:>8}  {:>10.1}  {:>12.2}  {:>10}  {:>8}  {:>10}  {:>8}",
                n,
                mode.name(),
                format!("{}/{n}", row.completed),
                f(row.herd_s, 1),
                f(row.median_s, 1),
                row.origin as f64 / f64::from(1 << 20),
                row.origin_ratio,
                f(ratio, 2),
                f(row.cpu.map(|c| c * 100.0), 0) + " %",
                f(row.node_cpu, 2),
                f(row.node_rss, 1)
            );
            let _ = std::io::stdout().flush();
            csv.push_str(&format!(
                "{},{n},{},{},{},{},{:.3},{},{},{},{},{},{},{}\n",
                mode.name(),
                row.completed,
                f(row.herd_s, 2),
                f(row.median_s, 2),
                row.origin,
                row.origin_ratio,
                f(ratio, 3),
                img.len,
                a.node_mbit,
                a.server_mbit,
                f(row.cpu, 3),
                f(row.node_cpu, 3),
                f(row.node_rss, 1)
            ));
            if let Some(p) = &a.csv {
                std::fs::write(p, &csv).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            rows.push(row);
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "image {} MiB, every node's link {} Mbit/s, the server's {} Mbit/s (tbf), {cores} cores; \
         herd/alone: against one node alone from the mirror ({})",
        a.image_mib,
        a.node_mbit,
        a.server_mbit,
        alone.map_or("-".into(), |s| format!("{s:.1} s"))
    );
    let bt: Vec<&Row> = rows
        .iter()
        .filter(|r| r.mode == herd::Mode::Torrent && r.nodes > 1)
        .collect();
    let origin_ok = bt.iter().all(|r| r.origin_ratio <= 2.0);
    println!(
        "goal: BitTorrent origin bytes <= 2x the image at every N: {}",
        if origin_ok { "met" } else { "NOT met" }
    );
    let over_alone = |r: &Row| r.herd_s.zip(alone).map(|(h, a)| h / a);
    let shown = |x: Option<f64>| x.map_or("incomplete".into(), |r| format!("{r:.2}x"));
    // Whether this host carries a herd of N: when the nodes' own CPU time, spread over the
    // host's cores, takes longer than the goal allows, no protocol can meet the goal here and
    // the herd time measures this machine, not the network or the protocol (on a cluster each
    // node has its own cores). The bench runs "as many as this machine carries".
    let floor_ratio = |r: &Row| r.cpu_floor(cores).zip(alone).map(|(s, a)| s / a);
    let carried = |r: &Row| floor_ratio(r).is_some_and(|f| f < HERD_GOAL);
    for r in &bt {
        println!(
            "N={}: the nodes' own CPU time ({:.2} s each) needs {} of the {cores} cores: {}; the \
             herd took {} one node alone, the host's CPUs {:.0} % busy",
            r.nodes,
            r.node_cpu.unwrap_or(0.0),
            r.cpu_floor(cores).map_or("-".into(), |s| format!(
                "{s:.1} s ({})",
                shown(floor_ratio(r))
            )),
            if carried(r) {
                "carried"
            } else {
                "NOT carried (over the goal before any network)"
            },
            shown(over_alone(r)),
            r.cpu.unwrap_or(0.0) * 100.0,
        );
    }
    match bt.iter().filter(|r| carried(r)).max_by_key(|r| r.nodes) {
        Some(last) => {
            let ratio = over_alone(last);
            println!(
                "goal: BitTorrent herd time at N={}, the largest N this host carries, <= {HERD_GOAL}x \
                 one node alone: {} ({})",
                last.nodes,
                if ratio.is_some_and(|r| r <= HERD_GOAL) {
                    "met"
                } else {
                    "NOT met"
                },
                shown(ratio)
            );
        }
        None => println!(
            "goal: BitTorrent herd time <= {HERD_GOAL}x one node alone: NOT met (no N carried)"
        ),
    }
    drop(net);
    if std::env::var_os("HERD_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    Ok(())
}
