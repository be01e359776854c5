//! A user-space 802.1Q switch port for the QEMU suite (dev only, never shipped): this machine's
//! kernel has no 8021q module and no VLAN filtering on bridges, so the node's tagged frames are
//! untagged here. One end is the node's QEMU NIC (`-netdev dgram` over two Unix datagram
//! sockets, one frame per datagram), the other a tap on the network rig's bridge
//! (qemu/rig.sh). From the node only frames tagged with VID N pass, untagged; everything else
//! is dropped, so an untagged DHCP DISCOVER gets no answer. Frames from the bridge go to the
//! node tagged with VID N.
//!
//! `cargo run --example vlan-relay -- --tap TAP --vid N --listen RELAY.sock --qemu QEMU.sock`
//! (QEMU: `-netdev dgram,id=n0,local.type=unix,local.path=QEMU.sock,remote.type=unix,remote.path=RELAY.sock`).
//! On SIGTERM it just dies; every 5 s, and on each of the first frames, it prints its counts.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const TPID: [u8; 2] = [0x81, 0x00];

/// The node's frame without its 802.1Q tag, when it carries VID `vid`; `None` otherwise
/// (untagged, another VID, too short to hold a tag).
fn untag(frame: &[u8], vid: u16) -> Option<Vec<u8>> {
    let tpid = frame.get(12..14)?;
    let tci = frame.get(14..16)?;
    if tpid != TPID || u16::from_be_bytes([tci[0], tci[1]]) & 0x0fff != vid {
        return None;
    }
    // Destination and source MAC, then what followed the tag (its EtherType on).
    let mut out = frame.get(..12)?.to_vec();
    out.extend_from_slice(frame.get(16..)?);
    Some(out)
}

/// A frame from the bridge, tagged with VID `vid` (priority 0) for the node.
fn tag(frame: &[u8], vid: u16) -> Option<Vec<u8>> {
    let mut out = frame.get(..12)?.to_vec();
    out.extend_from_slice(&TPID);
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(frame.get(12..)?);
    Some(out)
}

struct Args {
    tap: String,
    vid: u16,
    listen: PathBuf,
    qemu: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let (mut tap, mut vid, mut listen, mut qemu) = (None, None, None, None);
    while let Some(k) = a.next() {
        let v = a.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--tap" => tap = Some(v),
            "--vid" => vid = Some(v.parse::<u16>().map_err(|e| format!("--vid: {e}"))?),
            "--listen" => listen = Some(PathBuf::from(v)),
            "--qemu" => qemu = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(Args {
        tap: tap.ok_or("--tap is required")?,
        vid: vid
            .filter(|v| (1..=4094).contains(v))
            .ok_or("--vid 1..4094 is required")?,
        listen: listen.ok_or("--listen is required")?,
        qemu: qemu.ok_or("--qemu is required")?,
    })
}

#[derive(Default)]
struct Counts {
    tagged_in: AtomicU64,
    dropped_in: AtomicU64,
    out: AtomicU64,
}

impl Counts {
    fn show(&self, why: &str) {
        println!(
            "vlan-relay: {why}: {} tagged frames from the node forwarded, {} dropped (untagged or another VID), {} frames to the node",
            self.tagged_in.load(Ordering::Relaxed),
            self.dropped_in.load(Ordering::Relaxed),
            self.out.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
    }
}

fn main() -> Result<(), String> {
    let a = args()?;
    let _ = std::fs::remove_file(&a.listen);
    let sock = UnixDatagram::bind(&a.listen).map_err(|e| format!("{}: {e}", a.listen.display()))?;
    let mut cfg = tun::Configuration::default();
    cfg.tun_name(&a.tap).layer(tun::Layer::L2);
    // The rig made the tap and put it on the bridge: attach, configure nothing.
    cfg.platform_config(|p| {
        p.ensure_root_privileges(false);
    });
    let dev = tun::create(&cfg).map_err(|e| format!("tap {}: {e}", a.tap))?;
    let counts = Counts::default();
    println!(
        "vlan-relay: VID {} between {} and tap {}",
        a.vid,
        a.listen.display(),
        a.tap
    );
    std::thread::scope(|s| {
        s.spawn(|| loop {
            std::thread::sleep(Duration::from_secs(5));
            counts.show("so far");
        });
        s.spawn(|| {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                let frame = buf.get(..n).unwrap_or_default();
                match untag(frame, a.vid) {
                    Some(f) => {
                        let _ = dev.send(&f);
                        counts.tagged_in.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        if counts.dropped_in.fetch_add(1, Ordering::Relaxed) < 3 {
                            counts.show("dropped a frame that is not tagged for this VLAN");
                        }
                    }
                }
            }
        });
        s.spawn(|| {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(n) = dev.recv(&mut buf) else { continue };
                if let Some(f) = tag(buf.get(..n).unwrap_or_default(), a.vid) {
                    // Nobody there yet (QEMU not started) is not an error worth stopping for.
                    if sock.send_to(&f, &a.qemu).is_ok() {
                        counts.out.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn tagging_round_trips() {
        let plain = frame([0x08, 0x00], b"ip packet");
        let tagged = tag(&plain, 5).unwrap();
        assert_eq!(&tagged[12..18], &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        assert_eq!(untag(&tagged, 5).unwrap(), plain);
    }

    #[test]
    fn only_our_vid_passes() {
        let plain = frame([0x08, 0x00], b"x");
        assert_eq!(untag(&plain, 5), None, "untagged");
        assert_eq!(untag(&tag(&plain, 6).unwrap(), 5), None, "another VID");
        // Priority bits do not matter, the VID does.
        let mut prio = tag(&plain, 5).unwrap();
        prio[14] |= 0xe0;
        assert_eq!(untag(&prio, 5).unwrap(), plain);
        assert_eq!(untag(&plain[..13], 5), None, "too short");
        assert_eq!(tag(&plain[..11], 5), None, "too short");
    }
}
