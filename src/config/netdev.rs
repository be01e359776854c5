//! The network devices dracut's command line declares besides `ip=`: `vlan=`, `bond=`,
//! `ifname=` and `BOOTIF=` (dracut.cmdline(7)). Pure: a value in, a typed device or a reason
//! out. Under the dracut module these pass through to NetworkManager or networkd untouched;
//! the standalone initramfs creates the devices itself.

use crate::config::ipconfig::{parse_mac, valid_ifname};
use serde::Serialize;

/// `vlan=NAME:PARENT`: an 802.1Q device on PARENT, its id taken from NAME.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

/// The bonding driver's modes, by the names `mode=` takes (or their numbers 0..6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BondMode {
    BalanceRr,
    ActiveBackup,
    BalanceXor,
    Broadcast,
    #[serde(rename = "802.3ad")]
    Ieee8023ad,
    BalanceTlb,
    BalanceAlb,
}

impl BondMode {
    fn parse(s: &str) -> Option<BondMode> {
        Some(match s {
            "balance-rr" | "0" => BondMode::BalanceRr,
            "active-backup" | "1" => BondMode::ActiveBackup,
            "balance-xor" | "2" => BondMode::BalanceXor,
            "broadcast" | "3" => BondMode::Broadcast,
            "802.3ad" | "4" => BondMode::Ieee8023ad,
            "balance-tlb" | "5" => BondMode::BalanceTlb,
            "balance-alb" | "6" => BondMode::BalanceAlb,
            _ => return None,
        })
    }
}

/// `bond=NAME[:SLAVES[:OPTIONS[:MTU]]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bond {
    pub name: String,
    pub slaves: Vec<String>,
    pub mode: BondMode,
    /// Link monitoring interval in milliseconds (`miimon=`).
    pub miimon: Option<u32>,
    /// Every option as given, `mode` and `miimon` included, in order: what the dracut path's
    /// network manager receives, and what the standalone initramfs maps to netlink.
    pub options: Vec<(String, String)>,
    pub mtu: Option<u16>,
}

/// `ifname=NAME:MAC`: the interface with that MAC is renamed NAME before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfName {
    pub name: String,
    #[serde(serialize_with = "ser_mac")]
    pub mac: [u8; 6],
}

/// `BOOTIF=`: the interface the firmware booted from, as pxelinux and iPXE pass it
/// (`01-aa-bb-cc-dd-ee-ff`: the ARP hardware type, then the address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootIf {
    /// ARP hardware type: 1 Ethernet, 32 InfiniBand.
    pub hwtype: u8,
    /// 6 bytes for Ethernet, 20 for InfiniBand.
    #[serde(serialize_with = "ser_hex")]
    pub addr: Vec<u8>,
}

impl BootIf {
    /// The Ethernet MAC, for matching `/sys/class/net/*/address`.
    pub fn mac(&self) -> Option<[u8; 6]> {
        <[u8; 6]>::try_from(self.addr.as_slice()).ok()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ser_mac<S: serde::Serializer>(m: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(m))
}

fn ser_hex<S: serde::Serializer>(m: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(m))
}

fn ifname(s: &str, what: &str) -> Result<String, String> {
    if valid_ifname(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{what} {s:?} is not an interface name"))
    }
}

fn mtu(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(m) if (576..=65520).contains(&m) => Ok(m),
        _ => Err(format!("MTU {s:?} is outside 576..65520")),
    }
}

/// The VLAN id in a name, as the kernel's four naming types write it: `vlan0005`, `vlan5`,
/// `eth0.0005`, `eth0.5`.
fn vlan_id(name: &str) -> Option<u16> {
    let digits = match name.rsplit_once('.') {
        Some((dev, id)) if !dev.is_empty() => id,
        _ => name.strip_prefix("vlan")?,
    };
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id))
}

/// Parses one `vlan=` value.
pub fn parse_vlan(v: &str) -> Result<Vlan, String> {
    let Some((name, parent)) = v.split_once(':') else {
        return Err("expected NAME:PARENT (vlan=vlan100:eth0 or vlan=eth0.100:eth0)".into());
    };
    let name = ifname(name, "VLAN name")?;
    let parent = ifname(parent, "VLAN parent")?;
    let id = vlan_id(&name).ok_or_else(|| {
        format!(
            "{name:?} names no VLAN id in 1..4094 (use vlanN, vlan000N, PARENT.N or PARENT.000N)"
        )
    })?;
    if name == parent {
        return Err(format!("VLAN {name:?} cannot be its own parent"));
    }
    Ok(Vlan { name, parent, id })
}

/// Parses one `bond=` value; dracut's defaults fill what is left out (`bond0`, slaves `eth0`
/// and `eth1`, `mode=balance-rr`).
pub fn parse_bond(v: &str) -> Result<Bond, String> {
    let mut f = v.splitn(4, ':');
    let name = ifname(
        f.next().filter(|s| !s.is_empty()).unwrap_or("bond0"),
        "bond name",
    )?;
    let slaves = match f.next().filter(|s| !s.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|s| ifname(s, "bond slave"))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec!["eth0".to_string(), "eth1".to_string()],
    };
    if let Some(dup) = slaves
        .iter()
        .enumerate()
        .find_map(|(i, s)| slaves.get(..i)?.contains(s).then_some(s))
    {
        return Err(format!("slave {dup:?} is listed twice"));
    }
    if slaves.contains(&name) {
        return Err(format!("bond {name:?} cannot be its own slave"));
    }
    let mut b = Bond {
        name,
        slaves,
        mode: BondMode::BalanceRr,
        miimon: None,
        options: Vec::new(),
        mtu: None,
    };
    // dracut's documentation separates options with commas; older releases took semicolons.
    for o in f
        .next()
        .unwrap_or_default()
        .split([',', ';'])
        .filter(|o| !o.is_empty())
    {
        let Some((k, val)) = o.split_once('=') else {
            return Err(format!("bond option {o:?} is not KEY=VALUE"));
        };
        if k.is_empty() || !k.bytes().all(|c| c.is_ascii_lowercase() || c == b'_') {
            return Err(format!("{k:?} is not a bonding option name"));
        }
        if val.is_empty() || !val.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(format!("bond option {k}: {val:?} is not a value"));
        }
        match k {
            "mode" => {
                b.mode =
                    BondMode::parse(val).ok_or_else(|| format!("{val:?} is not a bonding mode"))?
            }
            "miimon" => {
                b.miimon = Some(
                    val.parse()
                        .map_err(|_| format!("miimon {val:?} is not a number of milliseconds"))?,
                )
            }
            _ => {}
        }
        b.options.push((k.to_string(), val.to_string()));
    }
    if let Some(m) = f.next().filter(|s| !s.is_empty()) {
        b.mtu = Some(mtu(m)?);
    }
    Ok(b)
}

/// Parses one `ifname=` value (the MAC's colons are part of the value).
pub fn parse_ifname(v: &str) -> Result<IfName, String> {
    let Some((name, mac)) = v.split_once(':') else {
        return Err("expected NAME:MAC".into());
    };
    let name = ifname(name, "interface name")?;
    let mac = parse_mac(mac).ok_or_else(|| format!("{mac:?} is not a MAC address"))?;
    Ok(IfName { name, mac })
}

/// Parses `BOOTIF=`: `TT-b1-b2-…` (pxelinux: the hardware type first) or a bare Ethernet MAC.
pub fn parse_bootif(v: &str) -> Result<BootIf, String> {
    let bad = || format!("{v:?} is not a boot interface (expected 01-aa-bb-cc-dd-ee-ff)");
    let mut bytes = Vec::new();
    for p in v.split(['-', ':']) {
        if p.len() != 2 || bytes.len() > 21 {
            return Err(bad());
        }
        bytes.push(u8::from_str_radix(p, 16).map_err(|_| bad())?);
    }
    let (hwtype, addr) = match bytes.len() {
        6 => (1, bytes),
        7 | 21 => {
            let (t, rest) = bytes.split_first().ok_or_else(bad)?;
            (*t, rest.to_vec())
        }
        _ => return Err(bad()),
    };
    match (hwtype, addr.len()) {
        (1, 6) | (32, 20) => Ok(BootIf { hwtype, addr }),
        _ => Err(format!(
            "{v:?}: hardware type {hwtype} with a {}-byte address is neither Ethernet (01, 6 bytes) nor InfiniBand (20, 20 bytes)",
            addr.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The examples and naming types of dracut.cmdline(7).
    #[test]
    fn vlans() {
        for (v, name, parent, id) in [
            ("vlan0005:eth0", "vlan0005", "eth0", 5),
            ("vlan5:eth0", "vlan5", "eth0", 5),
            ("eth0.0005:eth0", "eth0.0005", "eth0", 5),
            ("eth0.5:eth0", "eth0.5", "eth0", 5),
            ("bond0.100:bond0", "bond0.100", "bond0", 100),
            ("vlan4094:enp1s0", "vlan4094", "enp1s0", 4094),
        ] {
            let got = parse_vlan(v).unwrap();
            assert_eq!(
                got,
                Vlan {
                    name: name.into(),
                    parent: parent.into(),
                    id
                },
                "{v}"
            );
        }
        for (v, why) in [
            ("vlan5", "NAME:PARENT"),
            ("vlan0:eth0", "no VLAN id"),
            ("vlan4095:eth0", "no VLAN id"),
            ("vlan00005:eth0", "no VLAN id"),
            ("mgmt:eth0", "no VLAN id"),
            ("eth0.:eth0", "no VLAN id"),
            ("vlan5:", "VLAN parent"),
            ("vlan5:eth/0", "VLAN parent"),
            ("eth0.5:eth0.5", "own parent"),
        ] {
            let e = parse_vlan(v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn bonds() {
        let b = parse_bond("bond0:eth0,eth1:mode=active-backup,miimon=100:9000").unwrap();
        assert_eq!(b.name, "bond0");
        assert_eq!(b.slaves, ["eth0", "eth1"]);
        assert_eq!(
            (b.mode, b.miimon, b.mtu),
            (BondMode::ActiveBackup, Some(100), Some(9000))
        );
        assert_eq!(
            b.options,
            [
                ("mode".to_string(), "active-backup".to_string()),
                ("miimon".to_string(), "100".to_string())
            ]
        );
        // dracut's defaults.
        let d = parse_bond("").unwrap();
        assert_eq!((d.name.as_str(), d.mode), ("bond0", BondMode::BalanceRr));
        assert_eq!(d.slaves, ["eth0", "eth1"]);
        let b = parse_bond("bond1:ens1f0,ens1f1:mode=4;lacp_rate=fast;xmit_hash_policy=layer3+4")
            .unwrap();
        assert_eq!(b.mode, BondMode::Ieee8023ad);
        assert_eq!(b.options.len(), 3);
        assert_eq!(parse_bond("bond2").unwrap().name, "bond2");
        for (v, why) in [
            ("bond0:eth0,eth0", "twice"),
            ("bond0:bond0", "own slave"),
            ("bond0:eth0,:mode=1", "bond slave"),
            ("bond0:eth0:mode=fast", "bonding mode"),
            ("bond0:eth0:miimon=-1", "miimon"),
            ("bond0:eth0:miimon", "KEY=VALUE"),
            ("bond0:eth0:Mode=1", "option name"),
            ("bond0:eth0:mode=1:100", "MTU"),
            ("bo/nd:eth0", "bond name"),
        ] {
            let e = parse_bond(v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn ifnames() {
        let i = parse_ifname("bootnet:52:54:00:12:34:56").unwrap();
        assert_eq!(
            (i.name.as_str(), i.mac),
            ("bootnet", [0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_ifname("bootnet:525400123456").unwrap().mac, i.mac);
        for v in [
            "bootnet",
            "bootnet:52:54:00:12:34",
            ":52:54:00:12:34:56",
            "a/b:52:54:00:12:34:56",
        ] {
            assert!(parse_ifname(v).is_err(), "{v}");
        }
    }

    #[test]
    fn bootifs() {
        let b = parse_bootif("01-52-54-00-12-34-56").unwrap();
        assert_eq!(b.hwtype, 1);
        assert_eq!(b.mac(), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(parse_bootif("52:54:00:12:34:56").unwrap(), b);
        assert_eq!(parse_bootif("52-54-00-12-34-56").unwrap(), b);
        let ib = format!("20-{}", ["0a"; 20].join("-"));
        let b = parse_bootif(&ib).unwrap();
        assert_eq!((b.hwtype, b.addr.len(), b.mac()), (32, 20, None));
        for v in [
            "",
            "01-52-54-00-12",
            "02-52-54-00-12-34-56",
            "01-52-54-00-12-34-5g",
            "01-52-54-00-12-34-56-78",
        ] {
            assert!(parse_bootif(v).is_err(), "{v}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse_vlan(&s);
            let _ = parse_bond(&s);
            let _ = parse_ifname(&s);
            let _ = parse_bootif(&s);
        }

        #[test]
        fn vlan_names_round_trip(id in 1u16..=4094, padded in any::<bool>()) {
            let name = if padded { format!("vlan{id:04}") } else { format!("eth0.{id}") };
            prop_assert_eq!(parse_vlan(&format!("{name}:eth0")).unwrap().id, id);
        }
    }
}
