//! What a node knows about itself, for the `{mac}`, `{uuid}` and `{hostname}` of a secrets
//! source: read once, validated before any of it goes into a URL.

use crate::support::paths::Paths;

/// What the node knows about itself, for `{mac}`, `{uuid}` and `{hostname}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// MAC of the interface that routes to the secrets server.
    pub mac: Option<String>,
    /// SMBIOS product UUID.
    pub uuid: Option<String>,
    pub hostname: Option<String>,
}

impl NodeFacts {
    /// Reads the UUID from `SYS_ROOT/sys/class/dmi/id/product_uuid` and the host name from
    /// `SYS_ROOT/proc/sys/kernel/hostname` (set by DHCP in the initramfs); `sys_root` is `/`
    /// except in tests.
    pub fn gather(paths: &Paths, mac: Option<String>) -> NodeFacts {
        let read = |p: &str| {
            std::fs::read_to_string(paths.join(p))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        NodeFacts {
            mac,
            uuid: read("sys/class/dmi/id/product_uuid"),
            hostname: read("proc/sys/kernel/hostname"),
        }
    }

    /// The MAC, lowercase `xx:xx:xx:xx:xx:xx`, when well formed.
    pub fn mac(&self) -> Option<String> {
        let m = self.mac.as_deref()?.to_ascii_lowercase();
        let ok = m.len() == 17
            && m.split(':').count() == 6
            && m.split(':')
                .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
        ok.then_some(m)
    }

    /// The UUID, lowercase, when it is hex digits and dashes. Firmware that leaves it unset
    /// reports all zeros or all `f`s, which identify no node.
    pub fn uuid(&self) -> Option<String> {
        let u = self.uuid.as_deref()?.to_ascii_lowercase();
        let ok = u.len() == 36
            && u.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
            && u.bytes().any(|c| c != b'0' && c != b'-')
            && u.bytes().any(|c| c != b'f' && c != b'-');
        ok.then_some(u)
    }

    /// The host name, when it is a real DNS name (not `localhost` or the kernel's `(none)`).
    pub fn hostname(&self) -> Option<String> {
        let h = self.hostname.as_deref()?;
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            && !h.starts_with(['-', '.'])
            && !matches!(h, "localhost" | "localhost.localdomain");
        ok.then(|| h.to_string())
    }
}
