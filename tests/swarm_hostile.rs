//! Hostile peers against `rustlive fetch torrent://…`: small fake peers in this test, listed by
//! a fake tracker, each misbehaving one way — a piece with wrong bytes, a `have` for a piece
//! that does not exist, a message longer than any allowed, a handshake for another torrent, a
//! message flood, silence, a trickle, a peer that says it fetches every piece from the mirrors
//! (`rl_fetching`) and never has one. The download still ends byte-exact from the web seed,
//! every hostile peer is dropped (the wrong-bytes and other-torrent ones banned), and without a
//! web seed the deadline still holds and nothing is left behind.

mod support;

use rustlive::swarm::bencode::Encoder;
use rustlive::swarm::metainfo::{InfoHash, Metainfo};
use rustlive::swarm::wire::{self, Fetching, Handshake, Message, HANDSHAKE_LEN, RL_FETCHING_ID};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use support::http::{Reply, Server};
use support::{random_bytes, run_bounded, sha256_hex};

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");
const PIECE: u32 = 64 << 10;

#[derive(Clone, Copy, Debug)]
enum Kind {
    WrongBytes,
    BadIndex,
    HugeLength,
    OtherTorrent,
    Flood,
    Silent,
    Trickle,
    ClaimsEverything,
}

fn read_msg(s: &mut TcpStream) -> Option<Message> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Message::parse(&body).ok()
}

fn send(s: &mut TcpStream, m: &Message) -> bool {
    let mut out = Vec::new();
    m.encode(&mut out);
    s.write_all(&out).is_ok()
}

/// A fake peer for `hash` with `pieces` pieces, behaving as `kind`, on its own thread.
fn fake_peer(kind: Kind, hash: InfoHash, pieces: u32) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || serve(kind, &mut s, hash, pieces));
        }
    });
    addr
}

fn serve(kind: Kind, s: &mut TcpStream, hash: InfoHash, pieces: u32) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let mut theirs = [0u8; HANDSHAKE_LEN];
    if s.read_exact(&mut theirs).is_err() {
        return;
    }
    if let Kind::Silent = kind {
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let h = match kind {
        Kind::OtherTorrent => InfoHash([0xee; 20]),
        _ => hash,
    };
    let mut id = [b'x'; 20];
    id[0] = kind as u8;
    if s.write_all(
        &Handshake {
            reserved: [0; 8],
            info_hash: h,
            peer_id: id,
        }
        .encode(),
    )
    .is_err()
    {
        return;
    }
    if let Kind::ClaimsEverything = kind {
        // Every piece, again and again (only the first word on a piece counts), and words
        // that name no piece of this torrent; for at most 30 s.
        let all = Fetching {
            first: 0,
            count: pieces,
            stopped: false,
            relayed: false,
        };
        for _ in 0..600 {
            for payload in [all.encode(), b"d5:counti9999e5:firsti0ee".to_vec()] {
                let m = Message::Extended {
                    id: RL_FETCHING_ID,
                    payload,
                };
                if !send(s, &m) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    send(
        s,
        &Message::Bitfield(wire::bitfield(&vec![true; pieces as usize])),
    );
    send(s, &Message::Unchoke);
    match kind {
        Kind::BadIndex => {
            send(s, &Message::Have(pieces + 1000));
        }
        Kind::HugeLength => {
            let _ = s.write_all(&0xffff_fff0u32.to_be_bytes());
        }
        Kind::Flood => {
            let mut burst = Vec::new();
            for _ in 0..50_000 {
                Message::Unknown(99).encode(&mut burst);
            }
            while s.write_all(&burst).is_ok() {}
            return;
        }
        _ => {}
    }
    while let Some(m) = read_msg(s) {
        if let Message::Request {
            index,
            begin,
            length,
        } = m
        {
            match kind {
                Kind::WrongBytes => {
                    let data = vec![0x5a; length as usize];
                    if !send(s, &Message::Piece { index, begin, data }) {
                        return;
                    }
                }
                Kind::Trickle => {
                    // One byte a second: a live connection far below any useful rate.
                    let mut out = Vec::new();
                    Message::Piece {
                        index,
                        begin,
                        data: vec![0; length as usize],
                    }
                    .encode(&mut out);
                    for b in out {
                        if s.write_all(&[b]).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                _ => {}
            }
        }
    }
}

fn torrent(image: &[u8], announce: &str, seed: Option<&str>) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let mut hashes = Vec::new();
    for c in image.chunks(PIECE as usize) {
        hashes.extend_from_slice(&Sha1::digest(c));
    }
    let mut e = Encoder::default();
    e.dict().str("announce").str(announce);
    e.str("info").dict();
    e.str("length").int(image.len() as i64);
    e.str("name").str("img");
    e.str("piece length").int(i64::from(PIECE));
    e.str("pieces").bytes(&hashes);
    e.end();
    if let Some(s) = seed {
        e.str("url-list").str(s);
    }
    e.end();
    e.out
}

/// A tracker, the torrent and (optionally) the image on one fake HTTP server; the tracker
/// lists `peers`.
fn site(image: Vec<u8>, kinds: &[Kind], webseed: bool) -> (Server, Vec<u8>) {
    // The info-hash depends on the announce URL only through the torrent's other keys, so the
    // server's address is known before the peers are: bind it first.
    let peers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<SocketAddr>::new()));
    let torrent_bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (p, t, img) = (peers.clone(), torrent_bytes.clone(), image.clone());
    let server = Server::start(move |req| {
        if req.path.starts_with("/announce") {
            let mut e = Encoder::default();
            let list = p.lock().unwrap().clone();
            e.dict()
                .str("interval")
                .int(60)
                .str("peers")
                .bytes(&wire::compact(&list, false))
                .end();
            Reply::ok(&e.out)
        } else if req.path == "/img.torrent" {
            Reply::ok(&t.lock().unwrap())
        } else if req.path == "/img" && webseed {
            Reply::file(req, &img, "\"e\"")
        } else {
            Reply::status(404)
        }
    });
    let tb = torrent(&image, &server.url("/announce"), Some(&server.url("/img")));
    let meta = Metainfo::parse(&tb).unwrap();
    *torrent_bytes.lock().unwrap() = tb;
    for k in kinds {
        peers
            .lock()
            .unwrap()
            .push(fake_peer(*k, meta.info_hash, meta.piece_count()));
    }
    (server, image)
}

#[test]
fn hostile_peers_are_dropped_and_the_web_seed_completes_the_file() {
    let all = [
        Kind::WrongBytes,
        Kind::BadIndex,
        Kind::HugeLength,
        Kind::OtherTorrent,
        Kind::Flood,
        Kind::Silent,
        Kind::Trickle,
        Kind::ClaimsEverything,
    ];
    let (server, image) = site(random_bytes(2 << 20, 5), &all, true);
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    let r = run_bounded(
        Command::new(RUSTLIVE)
            .args(["fetch", "-o"])
            .arg(&out)
            .arg(server.url("/img.torrent").replace("http://", "torrent://"))
            .args([
                "--sha256",
                &sha256_hex(&image),
                "--bt-port",
                "0",
                "--timeout",
                "60",
                "--stall",
                "3",
            ]),
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{}", r.output);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        image,
        "a corrupt byte reached the file"
    );
    for why in [
        "banned for the rest of the download: piece",
        "banned for the rest of the download: its handshake names another torrent",
        "dropped: have for piece",
        "announced a 4294967280-byte message",
        "message flood",
    ] {
        assert!(r.output.contains(why), "no {why:?} in\n{}", r.output);
    }
    assert!(r.output.contains("2.0 MiB from http://"), "{}", r.output);
}

#[test]
fn only_hostile_peers_the_deadline_holds_and_nothing_is_left() {
    let (server, image) = site(
        random_bytes(1 << 20, 6),
        &[Kind::WrongBytes, Kind::Silent, Kind::Trickle],
        false,
    );
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    let r = run_bounded(
        Command::new(RUSTLIVE)
            .args(["fetch", "-o"])
            .arg(&out)
            .arg(server.url("/img.torrent").replace("http://", "torrent://"))
            .args([
                "--sha256",
                &sha256_hex(&image),
                "--bt-port",
                "0",
                "--timeout",
                "8",
                "--stall",
                "3",
            ]),
        Duration::from_secs(60),
    );
    // Killed at the bound would be `None`: the deadline ended it, as a transfer failure.
    assert_eq!(r.code, Some(3), "{}", r.output);
    assert!(r.output.contains("the deadline passed"), "{}", r.output);
    assert!(!out.exists());
    assert!(!d.path().join("img.part").exists());
    println!("ended after {:?} with a deadline of 8 s", r.elapsed);
}
