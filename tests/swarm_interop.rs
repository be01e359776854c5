//! rustlive's BitTorrent against real BitTorrent software from Debian: torrents from
//! `rustlive torrent create` read by `transmission-show` with the same info-hash and torrents
//! from `mktorrent` read by rustlive with the same info-hash; `opentracker` (whitelisting the
//! torrent, as Debian's build requires) as the tracker; `aria2c` as a seed rustlive downloads
//! from, and as a leecher that downloads from a rustlive seed; nginx as a web seed.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::nginx::Nginx;
use support::{random_bytes, run_bounded, run_ok, sha256_hex};

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");

fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        rustlive::support::testing::skip(&format!(
            "{tool} is not installed (scripts/install-deps.sh)"
        ));
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `transmission-show`'s info-hash of a torrent.
fn transmission_hash(t: &Path) -> String {
    let out = run_ok(Command::new("transmission-show").arg(t));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Hash: ")
                .or_else(|| l.trim().strip_prefix("Hash v1: "))
        })
        .unwrap_or_else(|| panic!("no hash in {text}"))
        .trim()
        .to_string()
}

fn rustlive_hash(t: &Path) -> String {
    let out = run_ok(Command::new(RUSTLIVE).args(["torrent", "show"]).arg(t));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("info-hash: "))
        .unwrap_or_else(|| panic!("no info-hash in {text}"))
        .to_string()
}

#[test]
fn rustlive_torrent_reads_in_transmission_with_the_same_info_hash() {
    if !have("transmission-show") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("root.squashfs");
    std::fs::write(&img, random_bytes(3_000_001, 1)).unwrap();
    let t = d.path().join("root.torrent");
    let out = run_ok(
        Command::new(RUSTLIVE)
            .args(["torrent", "create"])
            .arg(&img)
            .args([
                "--tracker",
                "http://boot:6969/announce",
                "--webseed",
                "http://boot/root.squashfs",
                "-o",
            ])
            .arg(&t),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let ours = rustlive_hash(&t);
    assert!(printed.starts_with(&ours), "{printed}");
    assert_eq!(transmission_hash(&t), ours);
    // Deterministic: the same inputs give the same bytes.
    let t2 = d.path().join("again.torrent");
    run_ok(
        Command::new(RUSTLIVE)
            .args(["torrent", "create"])
            .arg(&img)
            .args([
                "--tracker",
                "http://boot:6969/announce",
                "--webseed",
                "http://boot/root.squashfs",
                "-o",
            ])
            .arg(&t2),
    );
    assert_eq!(std::fs::read(&t).unwrap(), std::fs::read(&t2).unwrap());
    // 3 MB: the smallest automatic piece size, 256 KiB.
    let shown = String::from_utf8_lossy(
        &run_ok(Command::new(RUSTLIVE).args(["torrent", "show"]).arg(&t)).stdout,
    )
    .into_owned();
    assert!(shown.contains("piece length: 262144"), "{shown}");
    assert!(
        shown.contains("web seed: http://boot/root.squashfs"),
        "{shown}"
    );
}

#[test]
fn mktorrent_torrent_reads_in_rustlive_with_the_same_info_hash() {
    if !have("mktorrent") || !have("transmission-show") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    std::fs::write(&img, random_bytes(1_000_000, 2)).unwrap();
    let t = d.path().join("img.torrent");
    run_ok(
        Command::new("mktorrent")
            .args([
                "-a",
                "http://t:6969/announce",
                "-w",
                "http://w/img",
                "-l",
                "16",
                "-o",
            ])
            .arg(&t)
            .arg(&img),
    );
    assert_eq!(rustlive_hash(&t), transmission_hash(&t));
    // A multi-file torrent is refused with a sentence that says so.
    let dir = d.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a"), b"a").unwrap();
    std::fs::write(dir.join("b"), b"b").unwrap();
    let multi = d.path().join("multi.torrent");
    run_ok(
        Command::new("mktorrent")
            .args(["-a", "http://t/a", "-o"])
            .arg(&multi)
            .arg(&dir),
    );
    let r = run_bounded(
        Command::new(RUSTLIVE).args(["torrent", "show"]).arg(&multi),
        Duration::from_secs(10),
    );
    assert_ne!(r.code, Some(0));
    assert!(
        r.output.contains("single-file torrents only"),
        "{}",
        r.output
    );
}

/// opentracker on 127.0.0.1, answering for `hash` only.
fn opentracker(dir: &Path, hash: &str) -> Option<(Killed, u16)> {
    if !have("opentracker") {
        return None;
    }
    let wl = dir.join("whitelist");
    std::fs::write(&wl, format!("{hash}\n")).unwrap();
    let port = free_port();
    // Debian's opentracker chroots to -d and reads the whitelist from there: `/` keeps the
    // absolute path valid.
    let child = Command::new("opentracker")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
            "-d",
            "/",
            "-w",
        ])
        .arg(&wl)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let k = Killed(child);
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "opentracker did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((k, port))
}

struct Swarm {
    dir: tempfile::TempDir,
    nginx: Nginx,
    image: Vec<u8>,
    torrent: PathBuf,
    tracker: Killed,
}

/// nginx serving the image and its torrent (opentracker as its tracker; web seed optional).
fn swarm(len: usize, webseed: bool) -> Option<Swarm> {
    if !have("aria2c") {
        return None;
    }
    let nginx = Nginx::start()?;
    let dir = tempfile::tempdir().unwrap();
    let image = random_bytes(len, 7);
    std::fs::write(nginx.root.join("img"), &image).unwrap();
    let port = free_port();
    let torrent = nginx.root.join("img.torrent");
    let mut cmd = Command::new(RUSTLIVE);
    cmd.args(["torrent", "create"])
        .arg(nginx.root.join("img"))
        .args([
            "--tracker",
            &format!("http://127.0.0.1:{port}/announce"),
            "--piece-size",
            "256K",
            "-o",
        ])
        .arg(&torrent);
    if webseed {
        cmd.args(["--webseed", &format!("http://{}/img", nginx.addr)]);
    }
    run_ok(&mut cmd);
    let hash = rustlive_hash(&torrent);
    // The tracker must come up on the port the torrent names.
    let wl = dir.path().join("whitelist");
    std::fs::write(&wl, format!("{hash}\n")).unwrap();
    if !have("opentracker") {
        return None;
    }
    let child = Command::new("opentracker")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
            "-d",
            "/",
            "-w",
        ])
        .arg(&wl)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tracker = Killed(child);
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "opentracker did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Swarm {
        dir,
        nginx,
        image,
        torrent,
        tracker,
    })
}

fn aria2(torrent: &Path, dir: &Path, seed_minutes: &str) -> Command {
    let mut c = Command::new("aria2c");
    c.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--check-integrity=true",
        "--seed-time",
        seed_minutes,
        "--listen-port",
        &free_port().to_string(),
        "--summary-interval=0",
        "--console-log-level=warn",
        "-d",
    ])
    .arg(dir)
    .arg(torrent);
    c
}

#[test]
fn fetch_from_an_aria2_seed_through_opentracker() {
    let Some(s) = swarm(6 << 20, false) else {
        return;
    };
    // aria2 checks the complete file it is given, then seeds it.
    let seed_dir = s.dir.path().join("seed");
    std::fs::create_dir(&seed_dir).unwrap();
    std::fs::write(seed_dir.join("img"), &s.image).unwrap();
    let _seed = Killed(
        aria2(&s.torrent, &seed_dir, "10")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = s.dir.path().join("out");
    let r = run_bounded(
        Command::new(RUSTLIVE)
            .args(["fetch", "-o"])
            .arg(&out)
            .arg(format!("torrent://{}/img.torrent", s.nginx.addr))
            .args([
                "--sha256",
                &sha256_hex(&s.image),
                "--bt-port",
                "0",
                "--timeout",
                "60",
            ]),
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{}", r.output);
    assert_eq!(std::fs::read(&out).unwrap(), s.image);
    assert!(r.output.contains("6.0 MiB from peers"), "{}", r.output);
    // nginx served the torrent and nothing of the image.
    let log = s.nginx.access_log();
    assert!(!log.contains("GET /img "), "{log}");
    drop(s.tracker);
}

#[test]
fn aria2_downloads_from_a_rustlive_seed() {
    let Some(s) = swarm(6 << 20, true) else {
        return;
    };
    // rustlive gets the image from the web seed (no peer yet), then seeds it.
    let out = s.dir.path().join("out");
    let mut rl = Command::new(RUSTLIVE);
    rl.args(["fetch", "-o"])
        .arg(&out)
        .arg(format!("torrent://{}/img.torrent", s.nginx.addr))
        .args([
            "--sha256",
            &sha256_hex(&s.image),
            "--bt-port",
            "0",
            "--timeout",
            "60",
            "--seed",
            "60",
            "--upload-rate",
            "4M",
            "--debug",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.dir.path().join("seeder.log")).unwrap());
    let mut seeder = Killed(rl.spawn().unwrap());
    let t = std::time::Instant::now();
    while !out.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "rustlive did not complete from the web seed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // nginx stops serving the image: aria2 can only get it from rustlive.
    std::fs::remove_file(s.nginx.root.join("img")).unwrap();
    let leech = s.dir.path().join("leech");
    std::fs::create_dir(&leech).unwrap();
    let began = std::time::Instant::now();
    let r = run_bounded(&mut aria2(&s.torrent, &leech, "0"), Duration::from_secs(90));
    let elapsed = began.elapsed();
    let _ = seeder.0.kill();
    let _ = seeder.0.wait();
    let err = std::fs::read_to_string(s.dir.path().join("seeder.log")).unwrap();
    assert_eq!(r.code, Some(0), "{}\nrustlive:\n{err}", r.output);
    assert_eq!(std::fs::read(leech.join("img")).unwrap(), s.image);
    assert!(err.contains("from http://"), "{err}");
    // The upload cap (4 MiB/s, a burst of 1 MiB): 6 MiB cannot have left faster.
    assert_within_cap(6 << 20, 4 << 20, 1 << 20, elapsed);
    drop(s.tracker);
}

/// The bucket lets at most `burst + rate × t` bytes out in `t`: `bytes` sent in `elapsed`
/// must fit that, with a factor of 2 of slack for clocks and buffers (a bound on bytes by
/// elapsed time, which only a broken cap can fail, however slow the machine).
fn assert_within_cap(bytes: u64, rate: u64, burst: u64, elapsed: Duration) {
    let cap = burst as f64 + rate as f64 * elapsed.as_secs_f64();
    println!(
        "{bytes} bytes in {:.2} s under a cap of {rate} B/s: {:.2} of the cap",
        elapsed.as_secs_f64(),
        bytes as f64 / cap
    );
    assert!(
        (bytes as f64) <= 2.0 * cap,
        "{bytes} bytes in {elapsed:?}: above the cap of {rate} B/s"
    );
}

type SeedResult =
    Result<rustlive::swarm::session::SeedReport, rustlive::swarm::session::SwarmError>;

/// `seed_file` on a thread, serving a copy of the swarm's image (`DIR/seeded`) on a port of
/// its own, announced to the swarm's tracker.
fn spawn_seed_file(
    s: &Swarm,
    opts: rustlive::swarm::session::SeedOptions,
) -> (PathBuf, std::thread::JoinHandle<SeedResult>) {
    let seed_path = s.dir.path().join("seeded");
    std::fs::write(&seed_path, &s.image).unwrap();
    let meta =
        rustlive::swarm::metainfo::Metainfo::parse(&std::fs::read(&s.torrent).unwrap()).unwrap();
    let file = std::fs::File::open(&seed_path).unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let seeder = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        rustlive::swarm::session::seed_file(&meta, file, listener, &opts, &client)
    });
    (seed_path, seeder)
}

/// `swarm::session::seed_file` (what the seeder after switch-root runs): a complete file
/// served to aria2 through the tracker, under an upload cap of 1 MiB/s, for its whole duration.
#[test]
fn seed_file_serves_a_complete_file_under_its_cap() {
    let Some(s) = swarm(4 << 20, false) else {
        return;
    };
    let opts = rustlive::swarm::session::SeedOptions {
        duration: Duration::from_secs(15),
        limits: rustlive::swarm::shared::Limits {
            upload_rate: std::num::NonZeroU64::new(1 << 20),
            ..Default::default()
        },
        stop: None,
    };
    let began = std::time::Instant::now();
    let (seed_path, seeder) = spawn_seed_file(&s, opts);
    let leech = s.dir.path().join("leech");
    std::fs::create_dir(&leech).unwrap();
    let r = run_bounded(&mut aria2(&s.torrent, &leech, "0"), Duration::from_secs(60));
    let elapsed = began.elapsed();
    assert_eq!(r.code, Some(0), "{}", r.output);
    assert_eq!(std::fs::read(leech.join("img")).unwrap(), s.image);
    // 1 MiB/s with a burst of a quarter second's worth.
    assert_within_cap(4 << 20, 1 << 20, 256 << 10, elapsed);
    let report = seeder.join().unwrap().unwrap();
    assert!(
        report.elapsed >= Duration::from_secs(15),
        "it serves its whole duration: {report:?}"
    );
    assert!(report.uploaded >= 4 << 20, "{report:?}");
    assert_eq!(report.peers_served, 1, "{report:?}");
    // It never wrote to the file.
    assert_eq!(std::fs::read(&seed_path).unwrap(), s.image);
    drop(s.tracker);
}

/// Asks the tracker of `torrent` (as a leecher that wants no peers) how many seeds it counts.
fn seeds_counted(torrent: &Path) -> Option<u64> {
    let meta = rustlive::swarm::metainfo::Metainfo::parse(&std::fs::read(torrent).ok()?).ok()?;
    let hash: String = rustlive_hash(torrent)
        .as_bytes()
        .chunks(2)
        .map(|h| format!("%{}", std::str::from_utf8(h).unwrap()))
        .collect();
    let url = format!(
        "{}?info_hash={hash}&peer_id=-TEST00-000000000000&port=1&uploaded=0&downloaded=0\
         &left=1&compact=1&numwant=0",
        meta.trackers.first()?
    );
    let body = reqwest::blocking::get(url).ok()?.bytes().ok()?;
    let text = String::from_utf8_lossy(&body);
    let at = text.find("8:completei")? + "8:completei".len();
    text.get(at..)?.split('e').next()?.parse().ok()
}

static STOP_SEEDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stop_seeding() -> bool {
    STOP_SEEDING.load(std::sync::atomic::Ordering::SeqCst)
}

/// `seed_file` asked to stop (the seeder's first SIGTERM): it ends at once, long before its
/// duration, and tells the tracker `stopped`, so the tracker no longer counts it as a seed.
#[test]
fn seed_file_stops_when_asked_and_tells_the_tracker() {
    let Some(s) = swarm(1 << 20, false) else {
        return;
    };
    let opts = rustlive::swarm::session::SeedOptions {
        duration: Duration::from_secs(120),
        limits: Default::default(),
        stop: Some(stop_seeding),
    };
    let (_, seeder) = spawn_seed_file(&s, opts);
    let t = std::time::Instant::now();
    while seeds_counted(&s.torrent) != Some(1) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the tracker never counted the seed: {:?}",
            seeds_counted(&s.torrent)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    STOP_SEEDING.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked = std::time::Instant::now();
    let report = seeder.join().unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "it stopped {:?} after being asked",
        asked.elapsed()
    );
    assert!(report.elapsed < Duration::from_secs(60), "{report:?}");
    assert_eq!(
        seeds_counted(&s.torrent),
        Some(0),
        "the tracker still counts it"
    );
    drop(s.tracker);
}

#[test]
fn opentracker_refuses_unlisted_torrents_and_rustlive_says_so() {
    let d = tempfile::tempdir().unwrap();
    let Some((_ot, port)) = opentracker(d.path(), &"0".repeat(40)) else {
        return;
    };
    let Some(n) = Nginx::start() else { return };
    let image = random_bytes(300_000, 9);
    std::fs::write(n.root.join("img"), &image).unwrap();
    run_ok(
        Command::new(RUSTLIVE)
            .args(["torrent", "create"])
            .arg(n.root.join("img"))
            .args([
                "--tracker",
                &format!("http://127.0.0.1:{port}/announce"),
                "--webseed",
                &format!("http://{}/img", n.addr),
                "-o",
            ])
            .arg(n.root.join("img.torrent")),
    );
    let out = d.path().join("out");
    let r = run_bounded(
        Command::new(RUSTLIVE)
            .args(["fetch", "-o"])
            .arg(&out)
            .arg(format!("torrent://{}/img.torrent", n.addr))
            .args([
                "--sha256",
                &sha256_hex(&image),
                "--bt-port",
                "0",
                "--timeout",
                "30",
            ]),
        Duration::from_secs(60),
    );
    // The tracker's refusal is logged; the web seed still delivers.
    assert_eq!(r.code, Some(0), "{}", r.output);
    assert!(r.output.contains("the tracker refused"), "{}", r.output);
    assert_eq!(std::fs::read(&out).unwrap(), image);
}

#[test]
fn plain_http_torrent_needs_a_pinned_image() {
    let d = tempfile::tempdir().unwrap();
    let r = run_bounded(
        Command::new(RUSTLIVE)
            .args(["fetch", "-o"])
            .arg(d.path().join("out"))
            .arg("torrent://127.0.0.1:9/img.torrent"),
        Duration::from_secs(10),
    );
    assert_eq!(r.code, Some(4), "{}", r.output);
    assert!(r.output.contains("plain http"), "{}", r.output);
}

/// rustlive with rustlive: one node gets the image from the web seed and seeds it; the web
/// seed then goes away, and four nodes started together get it from that seeder and from each
/// other (every one verifies; the summary of each says how much it took from peers), while a
/// fifth is killed a moment after it started.
#[test]
fn rustlive_nodes_share_the_image_among_themselves() {
    let Some(s) = swarm(8 << 20, true) else {
        return;
    };
    let sha = sha256_hex(&s.image);
    let fetch = |out: &Path, seed: &str, log: &Path| {
        let mut c = Command::new(RUSTLIVE);
        c.args(["fetch", "-o"])
            .arg(out)
            .arg(format!("torrent://{}/img.torrent", s.nginx.addr))
            .args([
                "--sha256",
                &sha,
                "--bt-port",
                "0",
                "--timeout",
                "90",
                "--seed",
                seed,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        c
    };
    let first = s.dir.path().join("first");
    let mut seeder = Killed(
        fetch(&first, "120", &s.dir.path().join("first.log"))
            .spawn()
            .unwrap(),
    );
    let t = std::time::Instant::now();
    while !first.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the first node did not complete"
        );
        assert!(
            seeder.0.try_wait().unwrap().is_none(),
            "the first node exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(s.nginx.root.join("img")).unwrap();
    // Each node seeds a little after completing, so a slower one still has the others.
    let mut nodes: Vec<(PathBuf, PathBuf, Killed)> = (0..4)
        .map(|i| {
            let out = s.dir.path().join(format!("node{i}"));
            let log = s.dir.path().join(format!("node{i}.log"));
            let child = fetch(&out, "5", &log).spawn().unwrap();
            (out, log, Killed(child))
        })
        .collect();
    // A node that leaves half-way stalls nobody.
    let mut leaver = fetch(
        &s.dir.path().join("leaver"),
        "0",
        &s.dir.path().join("leaver.log"),
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = leaver.kill();
    let _ = leaver.wait();
    for (out, log, child) in &mut nodes {
        let status = child.0.wait().unwrap();
        let text = std::fs::read_to_string(&*log).unwrap();
        assert!(status.success(), "{text}");
        assert_eq!(std::fs::read(&*out).unwrap(), s.image);
        let summary = text
            .lines()
            .find(|l| l.contains("from the swarm"))
            .unwrap_or_default();
        assert!(summary.contains("8.0 MiB from peers"), "{text}");
        println!("{summary}");
    }
    let _ = seeder.0.kill();
    let _ = seeder.0.wait();
    let log = std::fs::read_to_string(s.dir.path().join("first.log")).unwrap();
    println!(
        "{}",
        log.lines()
            .filter(|l| l.contains("seeding done"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
