//! Which kernel module drives a device: the device's `modalias` (from
//! `/sys/bus/*/devices/*/modalias`) matched against the glob patterns of `modules.alias`, the
//! way modprobe does it. Pure: the boot-time scan that feeds it lives in [`crate::drivers::coldplug`].

/// fnmatch(3) without flags, as kmod uses it for `modules.alias`: `*` any run, `?` one
/// character, `[abc]` / `[a-z]` / `[!a]` one character of a set. A malformed set (no closing
/// `]`) matches the `[` literally, as fnmatch does.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it absorbed to).
    let mut star: Option<(usize, usize)> = None;
    // Indices stay below the lengths of two in-memory strings: `+ 1` cannot overflow, and
    // saturating arithmetic says so to the lints.
    while let Some(&tc) = t.get(ti) {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi.saturating_add(1), ti));
                pi = pi.saturating_add(1);
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match class(p, pi, tc) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (tc == b'[').then_some(1),
            },
            Some(&c) => (c == tc).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi = pi.saturating_add(len);
                ti = ti.saturating_add(1);
            }
            None => match star {
                // Let the last `*` absorb one more character and retry from there.
                Some((sp, st)) => {
                    pi = sp;
                    ti = st.saturating_add(1);
                    star = Some((sp, ti));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// A `[...]` set at `p[start]`: whether `c` is in it and the set's length in the pattern, or
/// `None` when the set is not closed.
fn class(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start.saturating_add(1);
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i = i.saturating_add(1);
    }
    let mut found = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((found != negate, i.saturating_add(1).saturating_sub(start)));
        }
        first = false;
        let (next, after) = (i.saturating_add(1), i.saturating_add(2));
        if p.get(next) == Some(&b'-') && p.get(after).is_some_and(|&h| h != b']') {
            let hi = *p.get(after)?;
            found |= lo <= c && c <= hi;
            i = i.saturating_add(3);
        } else {
            found |= lo == c;
            i = next;
        }
    }
}

/// The `alias PATTERN MODULE` lines of a `modules.alias`, in file order.
#[derive(Debug, Default, Clone)]
pub struct AliasTable {
    entries: Vec<(String, String)>,
}

impl AliasTable {
    pub fn parse(text: &str) -> AliasTable {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut w = line.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("alias"), Some(pattern), Some(module)) => {
                        Some((pattern.to_string(), module.replace('-', "_")))
                    }
                    _ => None,
                }
            })
            .collect();
        AliasTable { entries }
    }

    /// The modules whose patterns match `modalias`, each once, in file order.
    pub fn modules_for(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (pattern, module) in &self.entries {
            if !out.contains(module) && glob_match(pattern, modalias) {
                out.push(module.clone());
            }
        }
        out
    }

    /// Only the lines for `keep` (module names, underscores), as `modules.alias` text.
    pub fn pruned_text(&self, keep: &dyn Fn(&str) -> bool) -> String {
        let mut s = String::new();
        for (pattern, module) in &self.entries {
            if keep(module) {
                s.push_str("alias ");
                s.push_str(pattern);
                s.push(' ');
                s.push_str(module);
                s.push('\n');
            }
        }
        s
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `vendor:device` of a PCI modalias (`pci:v00008086d0000100Esv…` → `8086:100e`), the form
/// `lspci -nn` prints and an operator searches for.
pub fn pci_id(modalias: &str) -> Option<String> {
    let rest = modalias.strip_prefix("pci:v")?;
    let vendor = rest.get(4..8)?;
    let device = rest.get(8..).and_then(|r| r.strip_prefix('d'))?.get(4..8)?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(vendor) && hex(device))
        .then(|| format!("{}:{}", vendor.to_lowercase(), device.to_lowercase()))
}

/// Whether a PCI modalias is of an Ethernet controller (class 02, subclass 00).
pub fn pci_is_ethernet(modalias: &str) -> bool {
    modalias.starts_with("pci:") && modalias.contains("bc02sc00")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURE: &str = include_str!("testdata/modules.alias");
    // What QEMU's devices show in /sys/bus/*/devices/*/modalias.
    const VIRTIO_NET_PCI: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
    const VIRTIO_NET: &str = "virtio:d00000001v00001AF4";
    const E1000: &str = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00";
    const E1000E: &str = "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00";
    const AHCI_CLASS: &str = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";

    #[test]
    fn real_aliases_pick_the_real_drivers() {
        let t = AliasTable::parse(FIXTURE);
        assert!(t.len() > 40, "fixture parsed: {}", t.len());
        assert_eq!(t.modules_for(VIRTIO_NET_PCI), ["virtio_pci"]);
        assert_eq!(t.modules_for(VIRTIO_NET), ["virtio_net"]);
        assert_eq!(t.modules_for(E1000), ["e1000"]);
        assert_eq!(t.modules_for(E1000E), ["e1000e"]);
        // ahci matches by class (bc01sc06i01), whatever the vendor.
        assert_eq!(t.modules_for(AHCI_CLASS), ["ahci"]);
        assert!(t.modules_for("virtio:d00000004v00001AF4").is_empty());
        assert_eq!(t.modules_for("platform:pcspkr"), ["pcspkr"]);
        assert!(t.modules_for("platform:pcspkrx").is_empty());
    }

    #[test]
    fn bracket_sets_from_the_real_file() {
        let t = AliasTable::parse(FIXTURE);
        // alias usb:v13FDp3940d0[0-2]*dc*… uas and usb_storage
        let dev = "usb:v13FDp3940d0100dc00dsc00dp00ic08isc06ip50in00";
        assert_eq!(t.modules_for(dev), ["uas", "usb_storage"]);
        let outside = "usb:v13FDp3940d0300dc00dsc00dp00ic08isc06ip50in00";
        assert!(t.modules_for(outside).is_empty());
    }

    #[test]
    fn glob_rules() {
        assert!(glob_match("abc", "abc"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("a*", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c*e", "abxcxxe"));
        assert!(!glob_match("a*c*e", "abxcxxf"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[a-c]x", "dx"));
        assert!(glob_match("[!a-c]x", "dx"));
        assert!(glob_match("[]]", "]"));
        assert!(glob_match("a[", "a["), "an unclosed set is a literal [");
        assert!(glob_match("*d*sv*", "pci:v1d2sv3"));
    }

    #[test]
    fn pruning_keeps_only_included_modules() {
        let t = AliasTable::parse(FIXTURE);
        let text = t.pruned_text(&|m| m == "virtio_net" || m == "e1000");
        let again = AliasTable::parse(&text);
        assert_eq!(again.modules_for(VIRTIO_NET), ["virtio_net"]);
        assert!(again.modules_for(VIRTIO_NET_PCI).is_empty());
        assert!(text
            .lines()
            .all(|l| l.ends_with(" e1000") || l.ends_with(" virtio_net")));
    }

    #[test]
    fn pci_ids() {
        assert_eq!(pci_id(E1000).as_deref(), Some("8086:100e"));
        assert_eq!(pci_id(VIRTIO_NET_PCI).as_deref(), Some("1af4:1000"));
        assert_eq!(pci_id("pci:v0000"), None);
        assert_eq!(pci_id("virtio:d00000001v00001AF4"), None);
        assert!(pci_is_ethernet(E1000) && !pci_is_ethernet(AHCI_CLASS));
    }

    proptest! {
        #[test]
        fn glob_never_panics(p in "[a-c*?\\[\\]!^-]{0,12}", t in "[a-c\\[\\]-]{0,12}") {
            let _ = glob_match(&p, &t);
        }

        #[test]
        fn literal_patterns_match_only_themselves(s in "[a-z0-9:]{0,16}", t in "[a-z0-9:]{0,16}") {
            prop_assert!(glob_match(&s, &s));
            prop_assert_eq!(glob_match(&s, &t), s == t);
        }
    }
}
