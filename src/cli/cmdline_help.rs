//! The kernel command-line options, as `rustlive boot --help` and `rustlive config --help` list
//! them (and so their man pages). The contract is docs/reference/cmdline.md; this is its short
//! form. The tests hold the three together: every option the parser in `config/mod.rs` accepts
//! is listed here, and every option listed here is in the reference.

/// The options, grouped as in docs/reference/cmdline.md.
pub const OPTIONS: &str = "\
Kernel command-line options (the full reference:
docs/reference/cmdline.md, installed in /usr/share/doc/rustlive/;
rustlive config --cmdline '...' shows how a line is read).

Image source
  root=live:URL, root=http(s)://...
      the image URL, as dracut livenet takes it (a later root= that is
      not a URL cancels it)
  rd.rustlive.url=URL[,URL...]
      mirrors (repeatable), rotated on failure; wins over root=
  rd.rustlive.mirrors=spread|listed
      pieces from all mirrors (default), or one mirror at a time
  root=live:torrent://HOST/PATH.torrent, torrent+https://...
      the image through BitTorrent (the .torrent over http or https)
  rd.rustlive.torrent=URL
      the same; rd.rustlive.url mirrors become its web seeds
  rd.rustlive.bt.port=PORT
      port for peers while booting and seeding (default 6881)
  rd.rustlive.seed=DURATION
      keep sharing the image after switch-root (default 15m; 0: off)
  rd.rustlive.seed.rate=RATE
      the seeder's upload cap, bytes/s, K/M/G (default 32M; 0: none)

Verification
  rd.rustlive.sha256=HEX
      the image's SHA-256
  rd.rustlive.sha256sums=URL
      a sha256sum list; the line naming the image is used
  rd.rustlive.sig=URL
      minisign signature (default IMAGEURL.minisig); any key in
      /etc/rustlive/keys/*.pub makes a valid signature required
  rd.rustlive.verify=required|optional
      refuse an image that no hash or signature covers

Transfer
  rd.rustlive.timeout=SECS
      overall deadline (default: none)
  rd.rustlive.retries=N
      retries after the first attempt (default: until the deadline)
  rd.rustlive.stall=SECS
      resume an attempt that received nothing this long (default 30)
  rd.rustlive.ca=PATH
      CA bundle in the initramfs for https (/etc/rustlive/ca.pem)
  rd.noverifyssl
      no TLS check for the image (a hash or signature still applies)
  proxy=URL
      HTTP proxy
  rd.rustlive.minmem=MiB, rd.minmem=MiB
      RAM left free once the image is in memory (default 512)

Root assembly
  rd.rustlive.overlay.size=SIZE
      tmpfs of the writable layer (default 50%); aliases:
      rd.live.overlay.size=MiB, rd.overlay=tmpfs:size=SIZE
  rd.live.image, rd.live.overlay.overlayfs, rd.live.ram
      accepted: the image is always in RAM under overlayfs
  rd.live.dir=DIR, rd.live.squashimg=NAME
      nested image (default LiveOS/squashfs.img)
  rd.rustlive.init=PATH, init=PATH
      the new root's init (default /sbin/init)

Node secrets
  rd.rustlive.secrets=URL
      bundle source; {mac}, {uuid}, {hostname} are substituted
      (default file:///rustlive/secrets.json when it exists)
  rd.rustlive.secrets.sha256=HEX
      pin of the bundle
  rd.rustlive.secrets.sealed=required|optional
      accept only bundles sealed to this node's TPM and signed
  rd.rustlive.secrets.cert=PATH, rd.rustlive.secrets.key=PATH
      mTLS client certificate and key in the initramfs
  rd.rustlive.secrets.required=BOOL
      a secrets failure stops the boot (default 1)

Network and drivers (dracut's spelling; the dracut path's network
manager reads them, the standalone initramfs configures them itself)
  ip=dhcp|dhcp6|auto6|either6|link6|off
      DHCPv4 everywhere (default), DHCPv6, router advertisements
      (SLAAC), auto6 else dhcp6, link-local only, or nothing
  ip=IFACE:METHOD[:MTU[:MAC]]
      that method on one interface (one ip= per IP version)
  ip=CLIENT:[PEER]:GW:NETMASK:HOST:IFACE:none
      static; IPv6 in brackets: [2001:db8::10]::[2001:db8::1]:64
  nameserver=IP
      name server, IPv4 or IPv6 (repeatable)
  rd.peerdns=0
      ignore the name servers of DHCP and router advertisements
  vlan=NAME:PARENT
      802.1Q device; the id from NAME (vlan5, eth0.5)
  bond=NAME[:SLAVES[:OPTIONS[:MTU]]]
      bond of SLAVES (eth0,eth1) with mode=...,miimon=...
  ifname=NAME:MAC
      name the interface with that MAC
  BOOTIF=01-aa-bb-cc-dd-ee-ff, rd.bootif=0
      configure only the boot interface; rd.bootif=0 ignores it
  rd.neednet=1
      bring the network up even when nothing is fetched over it
  rd.rustlive.drivers=M[,M...]
      modules loaded first (repeatable)
  rd.driver.blacklist=M[,M...]
      modules never loaded (repeatable)

Failure and diagnostics
  rd.rustlive.onfail=shell|reboot|poweroff|halt
      what follows a fatal error (default shell)
  rd.rustlive.onfail.delay=SECS
      how long reboot waits (default 30)
  rd.rustlive.debug
      verbose logs (never secret values)
  rd.rustlive.syslog=udp://HOST[:PORT], tcp://HOST[:PORT]
      also send every log line to the site's syslog collector";

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` names `key` as a whole option (`rd.rustlive.secrets` is not named by
    /// `rd.rustlive.secrets.sha256`, nor `init` by `rd.rustlive.init`).
    fn mentions(text: &str, key: &str) -> bool {
        let part = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_';
        text.match_indices(key).any(|(i, _)| {
            let before = text.get(..i).and_then(|s| s.chars().next_back());
            let after = text.get(i + key.len()..).and_then(|s| s.chars().next());
            !before.is_some_and(part) && !after.is_some_and(part)
        })
    }

    /// The keys the parser's `match key` accepts (its arms at the match's own indentation),
    /// read from the source so that an option added there and not here fails this test.
    fn parser_keys() -> Vec<String> {
        let src = include_str!("../config/mod.rs");
        let start = src.find("fn apply(&mut self, p: &Param)").unwrap();
        let body = &src[start..];
        let end = body.find("\n    fn ").unwrap_or(body.len());
        let mut keys: Vec<String> = crate::config::RUSTLIVE_KEYS
            .iter()
            .map(|k| k.to_string())
            .collect();
        for line in body[..end].lines() {
            if !line.starts_with("            \"") {
                continue;
            }
            let Some((pattern, _)) = line.split_once("=>") else {
                continue;
            };
            for alt in pattern.split('|') {
                keys.push(alt.trim().trim_matches('"').to_string());
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn every_option_the_parser_accepts_is_listed() {
        let keys = parser_keys();
        // The source scan found the arms (not nothing, which would pass vacuously).
        for k in [
            "root",
            "ip",
            "rd.live.squashimg",
            "rd.driver.blacklist",
            "rd.noverifyssl",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not found in {keys:?}");
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !mentions(OPTIONS, k)).collect();
        assert!(missing.is_empty(), "not in the --help list: {missing:?}");
    }

    #[test]
    fn every_listed_option_is_in_the_reference() {
        let reference = include_str!("../../docs/reference/cmdline.md");
        let missing: Vec<String> = parser_keys()
            .into_iter()
            .filter(|k| !mentions(reference, k))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/reference/cmdline.md: {missing:?}"
        );
    }

    /// Short enough for a man page on an 80-column terminal, which indents by 7.
    #[test]
    fn lines_fit_a_man_page() {
        for l in OPTIONS.lines() {
            assert!(l.chars().count() <= 72, "{l}");
        }
    }

    #[test]
    fn mentions_is_whole_words() {
        assert!(mentions("  rd.rustlive.secrets=URL", "rd.rustlive.secrets"));
        assert!(!mentions(
            "rd.rustlive.secrets.sha256=HEX",
            "rd.rustlive.secrets"
        ));
        assert!(!mentions("rd.rustlive.init=PATH", "init"));
        assert!(mentions("rd.rustlive.init=PATH, init=PATH", "init"));
    }
}
