//! The herd harness: N `rustlive fetch` processes, each in its own network namespace behind a
//! rate-capped veth link to one bridge, against real software: nginx as the origin (the web
//! seed, or the mirror in the "mirrors only" baseline) in a namespace of its own behind a capped
//! link, and opentracker on the bridge. Used by `tests/swarm_herd.rs` (16 nodes, asserts counts
//! and bytes) and `examples/herd.rs` (the benchmark behind `bench/herd-p2p.sh`), both through
//! `#[path]`, so it depends on nothing but std, rustix, sha2 and tempfile.
//!
//! Layout: a hub namespace holds a bridge (10.77.0.1/16, where opentracker listens); the web
//! namespace (10.77.0.2) and node namespaces (10.77.1.1, …) each have a veth whose other end is
//! a port of that bridge. Every link is capped by `tc … tbf` in both directions (this kernel has
//! no netem): on the namespace's side for what it sends, on the hub's side for what it receives.
//! Namespaces are named `rlherd-PID-K-…`; [`Net`]'s drop removes them (killing whatever still
//! runs inside), and [`reap`], called by every new [`Net`], removes those of a run whose process
//! is gone (a run killed before its drop could run).
//!
//! The origin's bytes are what nginx's access log says it sent for the image
//! (`$body_bytes_sent` summed over the image's requests; the `.torrent` is not counted).

#![allow(dead_code)] // Each user (test, example) uses part of it.

use sha2::Digest;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Every namespace of the harness starts with this.
pub const PREFIX: &str = "rlherd-";
pub const HUB_IP: &str = "10.77.0.1";
pub const WEB_IP: &str = "10.77.0.2";
const TRACKER_PORT: u16 = 6969;
/// The port every node listens for peers on (the default of a booting node).
pub const BT_PORT: u16 = 6881;
const NETNS_DIR: &str = "/run/netns";

/// What the harness needs from the host: root, `ip`, `tc`, nginx, opentracker. `Err` names
/// what is missing.
pub fn available() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("the herd needs root (network namespaces, tc)".into());
    }
    for tool in ["ip", "tc", "nginx", "opentracker"] {
        if which(tool).is_none() {
            return Err(format!("{tool} is not installed (scripts/install-deps.sh)"));
        }
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The address of node `i` (0-based) on the bridge.
pub fn node_ip(i: usize) -> String {
    format!("10.77.{}.{}", 1 + i / 200, 1 + i % 200)
}

/// Runs `cmd` to completion; its stdout, or an error naming the command and its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `PROG [-n NS] -batch -` with `lines` on its stdin: one process for many commands.
fn batch(prog: &str, ns: Option<&str>, lines: &str) -> Result<(), String> {
    let mut cmd = Command::new(prog);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{prog}: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(lines.as_bytes())
            .map_err(|e| format!("{prog} -batch: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} -n {ns:?} -batch failed: {}\ninput:\n{lines}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A tbf line capping `dev` at `mbit` Mbit/s: a burst of 20 ms at that rate, packets queued up
/// to 100 ms. At least 128 KiB: tbf counts a 64 KiB GSO packet with every segment's headers,
/// and cuts one longer than the burst into 1500-byte packets (256 nodes at 25 Mbit/s used 0.80
/// CPU s each with a 64 KiB burst, 0.49 s with this).
fn tbf(dev: &str, mbit: u32) -> String {
    let burst = (u64::from(mbit) * 1_000_000 / 8 / 50).max(128 << 10);
    format!("qdisc add dev {dev} root tbf rate {mbit}mbit burst {burst} latency 100ms\n")
}

/// The pids of the processes inside namespace `ns`.
fn pids_in(ns: &str) -> Vec<i32> {
    run(Command::new("ip").args(["netns", "pids", ns]))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn kill(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Kills what runs in namespace `ns` and removes it.
fn remove_ns(ns: &str) {
    for _ in 0..50 {
        let pids = pids_in(ns);
        if pids.is_empty() {
            break;
        }
        pids.into_iter().for_each(kill);
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = run(Command::new("ip").args(["netns", "del", ns]));
}

/// The harness's namespaces, all of them or those whose names start with `start`.
fn namespaces(start: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(start))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Removes the namespaces of harness runs whose process is gone (killed before it could clean
/// up), with whatever still runs in them.
pub fn reap() {
    for ns in namespaces(PREFIX) {
        let pid = ns
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            remove_ns(&ns);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Hub,
    Web,
    Node(usize),
}

impl Host {
    fn ip(self) -> String {
        match self {
            Host::Hub => HUB_IP.into(),
            Host::Web => WEB_IP.into(),
            Host::Node(i) => node_ip(i),
        }
    }
}

/// Locally administered MACs, one per address.
fn mac(h: Host) -> String {
    let (a, i) = match h {
        Host::Hub => (2, 1),
        Host::Web => (2, 2),
        Host::Node(i) => (1, i),
    };
    format!("02:77:{a:02x}:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff)
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The network of one herd: hub (bridge, tracker), web (nginx), nodes. Removed on drop.
pub struct Net {
    /// `rlherd-PID-K-`: what every namespace of this net starts with.
    pub tag: String,
    pub hub: String,
    pub web: String,
    pub nodes: Vec<String>,
}

impl Net {
    /// Builds the hub, the web namespace and `nodes` node namespaces, every link capped:
    /// nodes at `node_mbit`, the web server at `server_mbit` (both directions).
    pub fn create(nodes: usize, node_mbit: u32, server_mbit: u32) -> Result<Net, String> {
        reap();
        let tag = format!(
            "{PREFIX}{}-{}-",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net {
            hub: format!("{tag}hub"),
            web: format!("{tag}web"),
            nodes: (0..nodes).map(|i| format!("{tag}n{i}")).collect(),
            tag,
        };
        // From here on, a failure drops `net`, which removes whatever was made.
        for ns in [&net.hub, &net.web].into_iter().chain(&net.nodes) {
            run(Command::new("ip").args(["netns", "add", ns]))?;
        }
        let mut hub = format!(
            "link set lo up\nlink add br0 address {} type bridge\nlink set br0 up\n\
             addr add {HUB_IP}/16 dev br0\n\
             link add hw type veth peer name eth0 address {} netns {}\nlink set hw master br0 up\n",
            mac(Host::Hub),
            mac(Host::Web),
            net.web
        );
        let mut hub_tc = tbf("hw", server_mbit);
        for (i, ns) in net.nodes.iter().enumerate() {
            let _ = write!(
                hub,
                "link add h{i} type veth peer name eth0 address {} netns {ns}\n\
                 link set h{i} master br0 up\n",
                mac(Host::Node(i))
            );
            hub_tc.push_str(&tbf(&format!("h{i}"), node_mbit));
        }
        // Every address's MAC, known in advance: a full FIFO on a capped link (tbf is one
        // FIFO, and this kernel has no fq_codel or prio to keep small packets out of it) drops
        // ARP replies, and a neighbour that fails ARP three times is "unreachable" for a while.
        // A real NIC's multiqueue fair queueing does not starve ARP like that.
        let hosts: Vec<Host> = [Host::Hub, Host::Web]
            .into_iter()
            .chain((0..nodes).map(Host::Node))
            .collect();
        let neighbours = |me: Host, dev: &str| -> String {
            hosts
                .iter()
                .filter(|&&h| h != me)
                .map(|&h| {
                    format!(
                        "neigh replace {} lladdr {} dev {dev} nud permanent\n",
                        h.ip(),
                        mac(h)
                    )
                })
                .collect()
        };
        hub.push_str(&neighbours(Host::Hub, "br0"));
        batch("ip", Some(&net.hub), &hub)?;
        batch("tc", Some(&net.hub), &hub_tc)?;
        let inside = |ns: &str, me: Host, mbit: u32| -> Result<(), String> {
            let mut lines = format!(
                "link set lo up\naddr add {}/16 dev eth0\nlink set eth0 up\n",
                me.ip()
            );
            lines.push_str(&neighbours(me, "eth0"));
            batch("ip", Some(ns), &lines)?;
            batch("tc", Some(ns), &tbf("eth0", mbit))
        };
        inside(&net.web, Host::Web, server_mbit)?;
        for (i, ns) in net.nodes.iter().enumerate() {
            inside(ns, Host::Node(i), node_mbit)?;
        }
        Ok(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in namespaces(&self.tag) {
            remove_ns(&ns);
        }
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the process `pid` (in its own network namespace) listens on TCP `port`, from
/// /proc/PID/net/tcp (which shows the sockets of that process's namespace).
fn listens(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X} ");
    std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1).is_some_and(|a| format!("{a} ").ends_with(&want)) && f.get(3) == Some(&"0A")
        })
    })
}

fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) -> Result<(), String> {
    let t = Instant::now();
    while !listens(child.id(), port) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!(
                "{what} exited ({st}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!("{what} did not start listening on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The image every node fetches, beside its torrent.
pub struct Image {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub len: u64,
    pub sha256: String,
    pub torrent: PathBuf,
    pub info_hash: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Image {
    /// `len` pseudo-random bytes (SplitMix64 from `seed`) in `dir/img`, and `dir/img.torrent`
    /// made by `bin torrent create` with the hub's tracker and the web namespace's nginx as web
    /// seed (`piece_size`: as `--piece-size` takes it; `None`: rustlive's choice).
    pub fn create(
        dir: &Path,
        bin: &Path,
        len: u64,
        seed: u64,
        piece_size: Option<&str>,
    ) -> Result<Image, String> {
        let path = dir.join("img");
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let mut hash = sha2::Sha256::new();
        let mut s = seed;
        let mut left = len;
        let mut buf = Vec::with_capacity(1 << 16);
        while left > 0 {
            buf.clear();
            while buf.len() < 1 << 16 {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                buf.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
            }
            let k = usize::try_from(left.min(1 << 16)).unwrap_or(1 << 16);
            let chunk = buf.get(..k).unwrap_or_default();
            hash.update(chunk);
            f.write_all(chunk).map_err(|e| e.to_string())?;
            left -= k as u64;
        }
        f.flush().map_err(|e| e.to_string())?;
        drop(f);
        let torrent = dir.join("img.torrent");
        let mut cmd = Command::new(bin);
        cmd.args(["torrent", "create"])
            .arg(&path)
            .args([
                "--tracker",
                &format!("http://{HUB_IP}:{TRACKER_PORT}/announce"),
                "--webseed",
                &format!("http://{WEB_IP}/img"),
                "-o",
            ])
            .arg(&torrent);
        if let Some(p) = piece_size {
            cmd.args(["--piece-size", p]);
        }
        let out = run(&mut cmd)?;
        let info_hash = out
            .split_whitespace()
            .next()
            .filter(|h| h.len() == 40)
            .ok_or_else(|| format!("no info-hash in {out:?}"))?
            .to_string();
        Ok(Image {
            dir: dir.to_path_buf(),
            path,
            len,
            sha256: hex(&hash.finalize()),
            torrent,
            info_hash,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `rustlive fetch torrent://…`: peers, the tracker, nginx as web seed.
    Torrent,
    /// `rustlive fetch http://…/img`: every node from nginx (the baseline).
    Mirrors,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Torrent => "bittorrent",
            Mode::Mirrors => "mirrors-only",
        }
    }
}

/// One herd run on a [`Net`].
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub mode: Mode,
    /// The rustlive binary the nodes run.
    pub bin: PathBuf,
    /// Nodes that take part (the first ones of the net).
    pub nodes: usize,
    /// `--seed` of each node (torrent mode): long enough that the first to finish still serve
    /// the last.
    pub seed: Duration,
    /// `--timeout` of each node; the harness gives up on the run at twice this.
    pub timeout: Duration,
    /// This node is killed (SIGKILL) once its `.part` holds half the image.
    pub kill_half: Option<usize>,
    /// Once every node has the file, stop the seeding ones (SIGKILL) instead of waiting for
    /// their `--seed` to end; their exit code is then `None`.
    pub stop_when_done: bool,
    /// Compare every node's file with the image (otherwise its length only: rustlive renames
    /// it into place only after its own verification).
    pub verify: bool,
    /// Extra arguments for every `rustlive fetch`.
    pub extra: Vec<String>,
}

/// What one node did.
#[derive(Debug, Clone, Default)]
pub struct NodeOutcome {
    pub index: usize,
    /// From its start to its file in place (verified and renamed by rustlive).
    pub completed: Option<Duration>,
    /// Its exit code; `None` if it was killed (or is still running at the end: then `stopped`).
    pub exit: Option<i32>,
    /// Killed half-way, at this fraction of the image held.
    pub killed_at: Option<f64>,
    /// Stopped by the harness after the herd completed (`stop_when_done`) or at the bound.
    pub stopped: bool,
    /// Its file has the image's bytes (or length, without `verify`).
    pub verified: bool,
    /// rustlive's summary line ("fetched …").
    pub summary: Option<String>,
    pub log: PathBuf,
}

impl NodeOutcome {
    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: Mode,
    pub nodes: Vec<NodeOutcome>,
    pub image_len: u64,
    /// Bytes of the image nginx sent (access log).
    pub origin_bytes: u64,
    pub origin_requests: usize,
    /// nginx's access log: `URI STATUS BYTES CLIENT "RANGE" SECONDS END` per request.
    pub origin_log: String,
    /// From the start (every node released at once) to the last completion (killed nodes
    /// aside); `None` when a node that was not killed never completed.
    pub herd_time: Option<Duration>,
    /// How busy the host's CPUs were from the start to the last completion (0 to 1, from
    /// `/proc/stat`): near 1, the figures measure this machine, not the network.
    pub cpu_busy: Option<f64>,
    /// The CPU time (user and system) the nodes used, on average, from their start to the
    /// herd's end (`/proc/PID/stat` of the nodes still running then): what one node's work
    /// costs, whatever else shares the host.
    pub node_cpu: Option<Duration>,
    /// The largest peak resident memory of a node (`VmHWM`, the same nodes): the image is
    /// in a file on a tmpfs, outside it, so this is what a node needs beside the image.
    pub node_peak_rss: Option<u64>,
}

impl Outcome {
    /// Nodes not killed on purpose.
    pub fn survivors(&self) -> impl Iterator<Item = &NodeOutcome> {
        self.nodes.iter().filter(|n| n.killed_at.is_none())
    }

    pub fn completed(&self) -> usize {
        self.survivors().filter(|n| n.completed.is_some()).count()
    }

    pub fn origin_ratio(&self) -> f64 {
        self.origin_bytes as f64 / self.image_len.max(1) as f64
    }

    /// One line per node that did not complete verified (killed nodes aside), with its log.
    pub fn failures(&self) -> String {
        self.survivors()
            .filter(|n| n.completed.is_none() || !n.verified)
            .map(|n| {
                format!(
                    "node {}: completed {:?}, exit {:?}, verified {}\n{}\n",
                    n.index,
                    n.completed,
                    n.exit,
                    n.verified,
                    n.log_tail()
                )
            })
            .collect()
    }
}

/// The bytes and requests for `/img` in an access log whose lines start with `$request_uri
/// $status $body_bytes_sent`.
pub fn origin_bytes(log: &str) -> (u64, usize) {
    log.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (uri, _status, bytes) = (f.next()?, f.next()?, f.next()?);
            (uri == "/img").then(|| bytes.parse::<u64>().ok()).flatten()
        })
        .fold((0, 0), |(b, n), x| (b + x, n + 1))
}

/// Starts nginx in the web namespace serving `www` on WEB_IP:80 (the access log in `dir`).
fn start_nginx(net: &Net, dir: &Path, www: &Path) -> Result<Killed, String> {
    let nginx = which("nginx").ok_or("no nginx")?;
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nworker_rlimit_nofile 8192;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n log_format herd '$request_uri $status $body_bytes_sent $remote_addr \"$http_range\" $request_time $msec';\n\
         access_log {d}/access.log herd;\n client_body_temp_path {d}/t1;\n\
         proxy_temp_path {d}/t2;\n fastcgi_temp_path {d}/t3;\n uwsgi_temp_path {d}/t4;\n\
         scgi_temp_path {d}/t5;\n sendfile on;\n tcp_nopush on;\n keepalive_requests 100000;\n\
         server {{ listen {WEB_IP}:80 backlog=4096; root {}; }}\n}}\n",
        www.display()
    );
    let cf = dir.join("nginx.conf");
    std::fs::write(&cf, conf).map_err(|e| e.to_string())?;
    let log = dir.join("error.log");
    let mut child = Killed(
        Command::new("ip")
            .args(["netns", "exec", &net.web])
            .arg(nginx)
            .arg("-e")
            .arg(&log)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&cf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx: {e}"))?,
    );
    wait_listening(&mut child.0, 80, "nginx", &log)?;
    Ok(child)
}

/// Starts opentracker on the hub, answering for `info_hash` only (Debian's build whitelists).
fn start_tracker(net: &Net, dir: &Path, info_hash: &str) -> Result<Killed, String> {
    let wl = dir.join("whitelist");
    std::fs::write(&wl, format!("{info_hash}\n")).map_err(|e| e.to_string())?;
    let log = dir.join("opentracker.log");
    let port = TRACKER_PORT.to_string();
    let mut child = Killed(
        Command::new("ip")
            .args(["netns", "exec", &net.hub, "opentracker", "-i", HUB_IP])
            .args(["-p", &port, "-P", &port])
            // Debian's opentracker chroots to -d before reading the whitelist: `/` keeps the
            // absolute path valid.
            .args(["-d", "/", "-w"])
            .arg(&wl)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("opentracker: {e}"))?,
    );
    wait_listening(&mut child.0, TRACKER_PORT, "opentracker", &log)?;
    Ok(child)
}

struct Node {
    child: Option<Killed>,
    out: PathBuf,
    part: PathBuf,
    started: Instant,
    o: NodeOutcome,
}

/// Runs one herd: fresh nginx and tracker, `cfg.nodes` fetches started together, watched until
/// every one completed (or exited), then until they exit (or are stopped). `work`: a directory
/// for this run's logs and outputs (the nodes' files are removed at the end).
pub fn run_herd(net: &Net, img: &Image, cfg: &RunConfig, work: &Path) -> Result<Outcome, String> {
    let www = work.join("www");
    let out = work.join("out");
    for d in [&www, &out] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    for (from, to) in [(&img.path, "img"), (&img.torrent, "img.torrent")] {
        let to = www.join(to);
        let _ = std::fs::remove_file(&to);
        std::fs::hard_link(from, &to)
            .or_else(|_| std::fs::copy(from, &to).map(|_| ()))
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    let _ = std::fs::remove_file(work.join("access.log"));
    let _nginx = start_nginx(net, work, &www)?;
    let _tracker = match cfg.mode {
        Mode::Torrent => Some(start_tracker(net, work, &img.info_hash)?),
        Mode::Mirrors => None,
    };
    if cfg.nodes > net.nodes.len() {
        return Err(format!(
            "{} nodes asked, the net has {}",
            cfg.nodes,
            net.nodes.len()
        ));
    }
    // Every node waits on this fifo for its line before its fetch starts: the herd starts
    // together, not over the seconds it takes to spawn hundreds of processes (a herd is
    // powered on at once, and a late start would count in the herd's time). Held open for
    // reading and writing, so a node that reaches its `read` late still finds its line.
    let gate_path = work.join("gate");
    let _ = std::fs::remove_file(&gate_path);
    run(Command::new("mkfifo").arg(&gate_path))?;
    let mut gate = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&gate_path)
        .map_err(|e| format!("{}: {e}", gate_path.display()))?;
    let mut nodes = Vec::with_capacity(cfg.nodes);
    let mut ready = Vec::with_capacity(cfg.nodes);
    for (i, ns) in net.nodes.iter().take(cfg.nodes).enumerate() {
        let dest = out.join(format!("n{i}.img"));
        let log = out.join(format!("n{i}.log"));
        let mark = out.join(format!("n{i}.ready"));
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::remove_file(&mark);
        let mut cmd = Command::new("ip");
        // dash reads a fifo a byte at a time: each node takes one line. The mark says the
        // node is past `ip netns exec`, which on a host already busy with a herd took 12 s
        // for the last 74 of 256 nodes: the gate opens only once every node is at it.
        cmd.args([
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            ": >\"$1\" && read -r _ <\"$0\" && shift && exec \"$@\"",
        ])
        .arg(&gate_path)
        .arg(&mark)
        .arg(&cfg.bin)
        .args(["fetch", "--sha256", &img.sha256, "-o"])
        .arg(&dest)
        .args(["--timeout", &cfg.timeout.as_secs().to_string()])
        .args(&cfg.extra);
        match cfg.mode {
            Mode::Torrent => cmd
                .args(["--bt-port", &BT_PORT.to_string()])
                .args(["--seed", &cfg.seed.as_secs().to_string()])
                .arg(format!("torrent://{WEB_IP}/img.torrent")),
            Mode::Mirrors => cmd.arg(format!("http://{WEB_IP}/img")),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        let part = {
            let mut p = dest.clone().into_os_string();
            p.push(".part");
            PathBuf::from(p)
        };
        ready.push(mark);
        nodes.push(Node {
            child: Some(Killed(child)),
            out: dest,
            part,
            started: Instant::now(),
            o: NodeOutcome {
                index: i,
                log,
                ..NodeOutcome::default()
            },
        });
    }
    let at_gate = Instant::now() + Duration::from_secs(120);
    while !ready.iter().all(|m| m.exists()) {
        if Instant::now() > at_gate {
            return Err("the nodes did not all reach the start gate within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_start = cpu_times();
    gate.write_all("\n".repeat(nodes.len()).as_bytes())
        .map_err(|e| format!("{}: {e}", gate_path.display()))?;
    let start = Instant::now();
    for n in &mut nodes {
        n.started = start;
    }
    let mut cpu_end = None;
    let bound = cfg.timeout.saturating_mul(2);
    // Until every node has its file or has exited.
    let mut last_completion = None;
    loop {
        let mut pending = 0;
        for n in &mut nodes {
            poll(n);
            if n.o.completed.is_some() {
                let at = n.o.completed.map(|c| n.started + c);
                if at > last_completion {
                    last_completion = at;
                    cpu_end = cpu_times();
                }
            }
            if cfg.kill_half == Some(n.o.index) && n.o.killed_at.is_none() && n.o.exit.is_none() {
                let held = std::fs::metadata(&n.part).map_or(0, |m| m.blocks() * 512);
                if held * 2 >= img.len && n.o.completed.is_none() {
                    if let Some(c) = n.child.take() {
                        drop(c);
                        n.o.killed_at = Some(held as f64 / img.len as f64);
                    }
                }
            }
            let done = n.o.completed.is_some() || n.o.exit.is_some() || n.child.is_none();
            if !done {
                pending += 1;
            }
        }
        if pending == 0 || start.elapsed() > bound {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Read before they are stopped; a node that exited by itself has no record left.
    let running: Vec<u32> = nodes
        .iter()
        .filter(|n| n.o.exit.is_none())
        .filter_map(|n| n.child.as_ref().map(|c| c.0.id()))
        .collect();
    let cpu: Vec<Duration> = running.iter().filter_map(|p| process_cpu(*p)).collect();
    let node_cpu = (!cpu.is_empty()).then(|| cpu.iter().sum::<Duration>() / cpu.len() as u32);
    let node_peak_rss = running.iter().filter_map(|p| peak_rss(*p)).max();
    // Then until they exit (their `--seed` ends), or stop them.
    let exit_bound = Instant::now() + cfg.seed + Duration::from_secs(30);
    loop {
        let mut running = 0;
        for n in &mut nodes {
            poll(n);
            if n.child.is_some() && n.o.exit.is_none() {
                running += 1;
            }
        }
        if running == 0 || cfg.stop_when_done || Instant::now() > exit_bound {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in &mut nodes {
        if n.o.exit.is_none() && n.o.killed_at.is_none() {
            if let Some(c) = n.child.take() {
                drop(c);
                n.o.stopped = true;
            }
        }
        let text = std::fs::read_to_string(&n.o.log).unwrap_or_default();
        n.o.summary = text
            .lines()
            .find(|l| l.contains(": fetched "))
            .map(str::to_string);
        n.o.verified = n.o.completed.is_some()
            && if cfg.verify {
                std::fs::read(&n.out).is_ok_and(|b| hex(&sha2::Sha256::digest(&b)) == img.sha256)
            } else {
                std::fs::metadata(&n.out).is_ok_and(|m| m.len() == img.len)
            };
        let _ = std::fs::remove_file(&n.out);
        let _ = std::fs::remove_file(&n.part);
    }
    drop(_tracker);
    drop(_nginx);
    let origin_log = std::fs::read_to_string(work.join("access.log")).unwrap_or_default();
    let (origin_bytes, origin_requests) = origin_bytes(&origin_log);
    let outcomes: Vec<NodeOutcome> = nodes.into_iter().map(|n| n.o).collect();
    let all = outcomes
        .iter()
        .filter(|n| n.killed_at.is_none())
        .all(|n| n.completed.is_some());
    Ok(Outcome {
        mode: cfg.mode,
        image_len: img.len,
        origin_bytes,
        origin_requests,
        origin_log,
        herd_time: last_completion
            .filter(|_| all)
            .map(|t: Instant| t.saturating_duration_since(start)),
        cpu_busy: cpu_start.zip(cpu_end).and_then(|((b0, t0), (b1, t1))| {
            let total = t1.checked_sub(t0).filter(|t| *t > 0)?;
            Some(b1.saturating_sub(b0) as f64 / total as f64)
        }),
        node_cpu,
        node_peak_rss,
        nodes: outcomes,
    })
}

/// The host's CPU time so far, in ticks: (busy, total), from `/proc/stat`'s `cpu` line (idle
/// and iowait are not busy).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total.saturating_sub(idle), total))
}

/// The CPU time a process has used so far (user and system, its threads included): fields 14
/// and 15 of `/proc/PID/stat`, in the kernel's fixed user-visible clock of 100 ticks a second.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it follow its last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = rest.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A process's peak resident memory so far, in bytes (`VmHWM` in `/proc/PID/status`).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Notes a node's completion (its file in place) and exit.
fn poll(n: &mut Node) {
    if n.o.completed.is_none() && n.out.exists() {
        n.o.completed = Some(n.started.elapsed());
    }
    if n.o.exit.is_none() {
        if let Some(c) = n.child.as_mut() {
            if let Ok(Some(st)) = c.0.try_wait() {
                n.o.exit = st.code();
                if st.code().is_none() {
                    n.child = None;
                }
            }
        }
    }
}
