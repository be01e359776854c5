//! The links the standalone initramfs sets up before any address: `ifname=` renames, bonds
//! (`bond=`) and their slaves, 802.1Q VLANs (`vlan=`), and which interfaces get an address
//! (`BOOTIF=`). What to do is decided by pure functions ([`renames`], [`plan`], [`targets`],
//! [`bond_options`], [`bootif_link`]), tested without root; [`apply_renames`] and [`apply`]
//! perform it through rtnetlink. The devices stay for the booted system.

use super::dhcp::Hw;
use super::rtnl::{Rtnl, RtnlError};
use crate::config::netdev::{Bond, BondMode, BootIf, IfName, Vlan};
use netlink_packet_route::link::{
    BondAdSelect, BondFailOverMac, BondLacpRate, BondMode as NlBondMode, BondPrimaryReselect,
    BondXmitHashPolicy, InfoBond,
};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

/// bonding's own default, set explicitly: a bond without link monitoring never notices that
/// a slave lost its carrier (the kernel only warns).
pub const DEFAULT_MIIMON_MS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("VLAN {vlan}: its parent interface {parent} does not exist (present: {present})")]
    NoParent {
        vlan: String,
        parent: String,
        present: String,
    },
    #[error("bond {bond}: none of its slaves ({}) exists (present: {present})", .slaves.join(", "))]
    NoSlaves {
        bond: String,
        slaves: Vec<String>,
        present: String,
    },
    #[error("{name} is named as a slave of both {first} and {second}")]
    SlaveTwice {
        name: String,
        first: String,
        second: String,
    },
    #[error("{name} cannot be a slave of {bond} and the parent of VLAN {vlan} at once")]
    SlaveAndParent {
        name: String,
        bond: String,
        vlan: String,
    },
    #[error("{name} ({what}) is already the name of another interface of this node")]
    NameTaken { name: String, what: String },
    #[error(
        "bond {bond}: option {option}={value} cannot be set by the standalone initramfs ({why})"
    )]
    BondOption {
        bond: String,
        option: String,
        value: String,
        why: String,
    },
    #[error("BOOTIF={bootif} names no interface of this node (present: {present})")]
    NoBootIf { bootif: String, present: String },
    #[error("bond {bond} has no carrier after {waited_secs} s: no slave ({}) has a link (are the cables or the switch ports up?)", .slaves.join(", "))]
    NoSlaveCarrier {
        bond: String,
        slaves: Vec<String>,
        waited_secs: u64,
    },
    #[error("IPoIB interface {iface} has no carrier: port {port} of {hca} is {state}, not ACTIVE (is a subnet manager running on the fabric?)")]
    IbPortNotActive {
        iface: String,
        hca: String,
        port: u32,
        state: String,
    },
    #[error(transparent)]
    Rtnl(#[from] RtnlError),
}

/// The kernel modules the links need, besides the NIC drivers coldplug loads.
pub fn modules(vlans: &[Vlan], bonds: &[Bond]) -> Vec<String> {
    let mut out = Vec::new();
    if !bonds.is_empty() {
        out.push("bonding".to_string());
    }
    if !vlans.is_empty() {
        out.push("8021q".to_string());
    }
    out
}

// --- ifname= --------------------------------------------------------------------------------

/// The renames `ifname=` asks for, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renames {
    /// (current name, new name), performed in this order.
    pub steps: Vec<(String, String)>,
    /// `ifname=` entries whose MAC no interface has (a warning; `ip=NAME` then fails).
    pub unmatched: Vec<IfName>,
}

/// What `ifname=` does to `present` (name, hardware address). A swap (`ifname=eth0:<eth1's
/// MAC> ifname=eth1:<eth0's MAC>`) goes through temporary names, as udev does; a new name
/// already held by an interface that keeps its name is an error.
pub fn renames(ifnames: &[IfName], present: &[(String, Hw)]) -> Result<Renames, LinkError> {
    let mut out = Renames::default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for i in ifnames {
        let Some((cur, _)) = present.iter().find(|(_, hw)| hw.mac() == Some(i.mac)) else {
            out.unmatched.push(i.clone());
            continue;
        };
        if *cur != i.name && !pairs.iter().any(|(f, _)| f == cur) {
            pairs.push((cur.clone(), i.name.clone()));
        }
    }
    let moving: BTreeSet<&str> = pairs.iter().map(|(f, _)| f.as_str()).collect();
    for (n, (from, to)) in pairs.iter().enumerate() {
        if let Some((other, _)) = pairs.iter().take(n).find(|(_, t)| t == to) {
            return Err(LinkError::NameTaken {
                name: to.clone(),
                what: format!("ifname= for both {other} and {from}"),
            });
        }
        let held = present.iter().any(|(n, _)| n == to);
        if held && !moving.contains(to.as_str()) {
            return Err(LinkError::NameTaken {
                name: to.clone(),
                what: format!("ifname= for {from}"),
            });
        }
    }
    let clash = pairs.iter().any(|(_, to)| moving.contains(to.as_str()));
    if clash {
        // Every mover off to a name nothing has, then to its own.
        for (n, (from, _)) in pairs.iter().enumerate() {
            out.steps.push((from.clone(), format!("rltmp{n}")));
        }
        for (n, (_, to)) in pairs.iter().enumerate() {
            out.steps.push((format!("rltmp{n}"), to.clone()));
        }
    } else {
        out.steps = pairs;
    }
    Ok(out)
}

// --- BOOTIF= --------------------------------------------------------------------------------

/// The interface `BOOTIF=` names: on Ethernet (type 1) the one with that MAC; on InfiniBand
/// (type 32) the one with that port GUID (the last 8 bytes; the queue pair number before it
/// changes from boot to boot).
pub fn bootif_link<'a>(b: &BootIf, present: &'a [(String, Hw)]) -> Option<&'a str> {
    present
        .iter()
        .find(|(_, hw)| match (b.hwtype, hw) {
            (1, Hw::Ether(m)) => b.addr.as_slice() == m,
            (32, Hw::Infiniband(_)) => {
                b.addr.len() >= 8 && hw.guid().is_some_and(|g| b.addr.ends_with(&g))
            }
            _ => false,
        })
        .map(|(n, _)| n.as_str())
}

/// `01-aa-bb-cc-dd-ee-ff`, for messages.
pub fn bootif_string(b: &BootIf) -> String {
    std::iter::once(b.hwtype)
        .chain(b.addr.iter().copied())
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join("-")
}

// --- bond= and vlan= ------------------------------------------------------------------------

/// A bond to create, with the slaves that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondStep {
    pub bond: Bond,
    pub slaves: Vec<String>,
}

/// The links to create, bonds first (a VLAN may sit on a bond), then VLANs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub bonds: Vec<BondStep>,
    pub vlans: Vec<Vlan>,
    /// (bond, slave) named but absent: a warning, as long as the bond keeps one slave.
    pub missing_slaves: Vec<(String, String)>,
}

impl Plan {
    /// The interfaces this plan creates.
    pub fn created(&self) -> Vec<String> {
        self.bonds
            .iter()
            .map(|b| b.bond.name.clone())
            .chain(self.vlans.iter().map(|v| v.name.clone()))
            .collect()
    }

    fn master_of(&self, name: &str) -> Option<&str> {
        self.bonds
            .iter()
            .find(|b| b.slaves.iter().any(|s| s == name))
            .map(|b| b.bond.name.as_str())
    }

    fn is_parent(&self, name: &str) -> bool {
        self.vlans.iter().any(|v| v.parent == name)
    }
}

/// What `bond=` and `vlan=` create on top of `present` (the physical interfaces, after
/// renames), or why they cannot be.
pub fn plan(present: &[String], vlans: &[Vlan], bonds: &[Bond]) -> Result<Plan, LinkError> {
    let list = || present.join(", ");
    let mut out = Plan::default();
    let mut seen: Vec<(&str, &str)> = Vec::new(); // (slave, bond)
    for b in bonds {
        if present.contains(&b.name) {
            return Err(LinkError::NameTaken {
                name: b.name.clone(),
                what: format!("bond={}", b.name),
            });
        }
        let mut slaves = Vec::new();
        for s in &b.slaves {
            if let Some((_, first)) = seen.iter().find(|(x, _)| x == s) {
                return Err(LinkError::SlaveTwice {
                    name: s.clone(),
                    first: first.to_string(),
                    second: b.name.clone(),
                });
            }
            seen.push((s, &b.name));
            if present.contains(s) {
                if !slaves.contains(s) {
                    slaves.push(s.clone());
                }
            } else {
                out.missing_slaves.push((b.name.clone(), s.clone()));
            }
        }
        if slaves.is_empty() {
            return Err(LinkError::NoSlaves {
                bond: b.name.clone(),
                slaves: b.slaves.clone(),
                present: list(),
            });
        }
        out.bonds.push(BondStep {
            bond: b.clone(),
            slaves,
        });
    }
    for v in vlans {
        if present.contains(&v.name) || bonds.iter().any(|b| b.name == v.name) {
            return Err(LinkError::NameTaken {
                name: v.name.clone(),
                what: format!("vlan={}:{}", v.name, v.parent),
            });
        }
        let parent_ok = present.contains(&v.parent) || bonds.iter().any(|b| b.name == v.parent);
        if !parent_ok {
            return Err(LinkError::NoParent {
                vlan: v.name.clone(),
                parent: v.parent.clone(),
                present: list(),
            });
        }
        if let Some(bond) = out.master_of(&v.parent) {
            return Err(LinkError::SlaveAndParent {
                name: v.parent.clone(),
                bond: bond.to_string(),
                vlan: v.name.clone(),
            });
        }
        if !out.vlans.iter().any(|x| x.name == v.name) {
            out.vlans.push(v.clone());
        }
    }
    Ok(out)
}

/// The interfaces that get an address when `ip=` names none: every interface that is neither
/// a bond's slave nor a VLAN's parent (those carry the bond's or the VLAN's traffic only). With
/// `BOOTIF=`, only what sits on that interface: itself, or its bond, or its VLANs (and the
/// bond's).
pub fn targets(present: &[String], plan: &Plan, bootif: Option<&str>) -> Vec<String> {
    let all: Vec<String> = present.iter().cloned().chain(plan.created()).collect();
    let leaf = |n: &str| plan.master_of(n).is_none() && !plan.is_parent(n);
    let Some(boot) = bootif else {
        return all.into_iter().filter(|n| leaf(n)).collect();
    };
    // The interface itself and what is stacked on it.
    let mut stack: Vec<String> = vec![boot.to_string()];
    if let Some(m) = plan.master_of(boot) {
        stack.push(m.to_string());
    }
    let vlans_on: Vec<String> = plan
        .vlans
        .iter()
        .filter(|v| stack.contains(&v.parent))
        .map(|v| v.name.clone())
        .collect();
    stack.extend(vlans_on);
    stack.into_iter().filter(|n| leaf(n)).collect()
}

/// The kernel's number for a bonding mode.
fn mode_number(m: BondMode) -> u8 {
    match m {
        BondMode::BalanceRr => 0,
        BondMode::ActiveBackup => 1,
        BondMode::BalanceXor => 2,
        BondMode::Broadcast => 3,
        BondMode::Ieee8023ad => 4,
        BondMode::BalanceTlb => 5,
        BondMode::BalanceAlb => 6,
    }
}

/// A bonding option's value by the kernel's name or number (both are accepted in
/// `/sys/class/net/BOND/bonding/`, and so by `bond=`): its position in `names`.
fn by_name(value: &str, names: &[&str]) -> Result<u8, String> {
    if let Some(i) = names.iter().position(|n| *n == value) {
        return u8::try_from(i).map_err(|_| "too many names".to_string());
    }
    match value.parse::<u8>() {
        Ok(n) if usize::from(n) < names.len() => Ok(n),
        _ => Err(format!("one of {}", names.join(", "))),
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .map_err(|_| "not a number in range".to_string())
}

/// `bond=`'s mode, `miimon` and options as rtnetlink attributes. `index_of` gives a slave's
/// interface index (for `primary`). Every option `bond=` passes is either set or refused:
/// none is silently dropped.
pub fn bond_options(
    b: &Bond,
    index_of: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<InfoBond>, LinkError> {
    let mut out = vec![
        InfoBond::Mode(NlBondMode::from(mode_number(b.mode))),
        InfoBond::MiiMon(b.miimon.unwrap_or(DEFAULT_MIIMON_MS)),
    ];
    // Several targets come as several options (arp_ip_target=A,arp_ip_target=B: bond= splits
    // options at commas) and go to the kernel as one list.
    let mut arp_targets: Vec<Ipv4Addr> = Vec::new();
    for (k, v) in &b.options {
        let fail = |why: String| LinkError::BondOption {
            bond: b.name.clone(),
            option: k.clone(),
            value: v.clone(),
            why,
        };
        let attr = match k.as_str() {
            // Already in the typed fields.
            "mode" | "miimon" => continue,
            "updelay" => InfoBond::UpDelay(number(v).map_err(fail)?),
            "downdelay" => InfoBond::DownDelay(number(v).map_err(fail)?),
            "use_carrier" => InfoBond::UseCarrier(number::<u8>(v).map_err(fail)? != 0),
            "min_links" => InfoBond::MinLinks(number(v).map_err(fail)?),
            "arp_interval" => InfoBond::ArpInterval(number(v).map_err(fail)?),
            "arp_ip_target" => {
                for a in v.split('+') {
                    arp_targets.push(a.parse::<Ipv4Addr>().map_err(|_| {
                        fail("IPv4 addresses, one per option or joined by '+'".into())
                    })?);
                }
                continue;
            }
            "primary" => InfoBond::Primary(
                index_of(v).ok_or_else(|| fail("no interface of that name".into()))?,
            ),
            "primary_reselect" => InfoBond::PrimaryReselect(BondPrimaryReselect::from(
                by_name(v, &["always", "better", "failure"]).map_err(fail)?,
            )),
            "fail_over_mac" => InfoBond::FailOverMac(BondFailOverMac::from(
                by_name(v, &["none", "active", "follow"]).map_err(fail)?,
            )),
            "xmit_hash_policy" => InfoBond::XmitHashPolicy(BondXmitHashPolicy::from(
                by_name(
                    v,
                    &[
                        "layer2",
                        "layer3+4",
                        "layer2+3",
                        "encap2+3",
                        "encap3+4",
                        "vlan+srcmac",
                    ],
                )
                .map_err(fail)?,
            )),
            "lacp_rate" => InfoBond::AdLacpRate(BondLacpRate::from(
                by_name(v, &["slow", "fast"]).map_err(fail)?,
            )),
            "ad_select" => InfoBond::AdSelect(BondAdSelect::from(
                by_name(v, &["stable", "bandwidth", "count"]).map_err(fail)?,
            )),
            "resend_igmp" => InfoBond::ResendIgmp(number(v).map_err(fail)?),
            "num_grat_arp" | "num_unsol_na" => InfoBond::NumPeerNotif(number(v).map_err(fail)?),
            "lp_interval" => InfoBond::LpInterval(number(v).map_err(fail)?),
            "packets_per_slave" => InfoBond::PacketsPerPort(number(v).map_err(fail)?),
            "tlb_dynamic_lb" => InfoBond::TlbDynamicLb(number::<u8>(v).map_err(fail)? != 0),
            "ad_actor_sys_prio" => InfoBond::AdActorSysPrio(number(v).map_err(fail)?),
            "ad_user_port_key" => InfoBond::AdUserPortKey(number(v).map_err(fail)?),
            "peer_notif_delay" => InfoBond::PeerNotifDelay(number(v).map_err(fail)?),
            _ => return Err(fail("not a bonding option rustlive knows".into())),
        };
        out.push(attr);
    }
    if !arp_targets.is_empty() {
        out.push(InfoBond::ArpIpTarget(arp_targets));
    }
    Ok(out)
}

// --- IPoIB ----------------------------------------------------------------------------------

/// `/sys/class/infiniband/HCA/ports/N/state`: `4: ACTIVE` → (4, "ACTIVE").
pub fn ib_port_state(text: &str) -> Option<(u8, String)> {
    let (n, name) = text.trim().split_once(':')?;
    Some((n.trim().parse().ok()?, name.trim().to_string()))
}

/// The HCA, port number and port state behind IPoIB interface `iface`: its `dev_port` is the
/// port number minus one, and its device directory holds `infiniband/HCA`.
pub fn ib_port_of(sys: &Path, iface: &str) -> Option<(String, u32, String)> {
    let net = sys.join("class/net").join(iface);
    let dev_port: u32 = std::fs::read_to_string(net.join("dev_port"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let port = dev_port.checked_add(1)?;
    let hca = std::fs::read_dir(net.join("device/infiniband"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .min()?;
    let state = std::fs::read_to_string(
        sys.join("class/infiniband")
            .join(&hca)
            .join(format!("ports/{port}/state")),
    )
    .ok()?;
    let (_, name) = ib_port_state(&state)?;
    Some((hca, port, name))
}

/// Loads `names` from this kernel's modules (those that coldplug has no device alias for).
pub fn load_modules(names: &[&str]) {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return;
    };
    let dir = Path::new("/lib/modules").join(release.trim());
    if let Err(e) = crate::drivers::kmod::load(&dir, names) {
        log::warn!("{}", crate::support::exit::report(&e));
    }
}

/// Whether an RDMA device has an InfiniBand port (then `ib_ipoib` is loaded for its IPoIB
/// interfaces). A ConnectX in Ethernet mode registers an RDMA device too, whose ports'
/// `link_layer` is `Ethernet` (RoCE): no IPoIB there, and no module to load.
pub fn has_infiniband(sys: &Path) -> bool {
    let Ok(hcas) = std::fs::read_dir(sys.join("class/infiniband")) else {
        return false;
    };
    hcas.flatten().any(|h| {
        std::fs::read_dir(h.path().join("ports")).is_ok_and(|ports| {
            ports.flatten().any(|p| {
                std::fs::read_to_string(p.path().join("link_layer"))
                    .is_ok_and(|l| l.trim() == "InfiniBand")
            })
        })
    })
}

// --- effects --------------------------------------------------------------------------------

fn index_in(sys: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(sys.join("class/net").join(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn missing(name: &str) -> LinkError {
    LinkError::Rtnl(RtnlError {
        what: format!("find the interface index of {name}"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// Performs [`renames`]' steps: each link down (it is not up yet at boot), then renamed.
pub fn apply_renames(
    rt: &mut Rtnl,
    sys: &Path,
    steps: &[(String, String)],
) -> Result<(), LinkError> {
    for (from, to) in steps {
        let index = index_in(sys, from).ok_or_else(|| missing(from))?;
        rt.link_down(from, index)?;
        rt.rename(from, index, to)?;
        if !to.starts_with("rltmp") {
            log::info!("renamed {from} to {to} (ifname=)");
        }
    }
    Ok(())
}

/// Creates [`plan`]'s links: each bond with its options, its slaves down then enslaved, the
/// bond up; each VLAN's parent up, the VLAN created and up.
pub fn apply(rt: &mut Rtnl, sys: &Path, plan: &Plan) -> Result<(), LinkError> {
    for (bond, slave) in &plan.missing_slaves {
        log::warn!("bond {bond}: slave {slave} does not exist; going on without it");
    }
    for step in &plan.bonds {
        let b = &step.bond;
        let opts = bond_options(b, &|n| index_in(sys, n))?;
        rt.create_bond(&b.name, opts, b.mtu)?;
        let bi = index_in(sys, &b.name).ok_or_else(|| missing(&b.name))?;
        for s in &step.slaves {
            let si = index_in(sys, s).ok_or_else(|| missing(s))?;
            rt.link_down(s, si)?;
            rt.enslave(s, si, &b.name, bi)?;
        }
        rt.link_up(&b.name, bi, None)?;
        log::info!(
            "bond {} ({:?}) over {}",
            b.name,
            b.mode,
            step.slaves.join(", ")
        );
    }
    for v in &plan.vlans {
        let pi = index_in(sys, &v.parent).ok_or_else(|| missing(&v.parent))?;
        rt.link_up(&v.parent, pi, None)?;
        rt.create_vlan(&v.name, &v.parent, pi, v.id)?;
        let vi = index_in(sys, &v.name).ok_or_else(|| missing(&v.name))?;
        rt.link_up(&v.name, vi, None)?;
        log::info!("VLAN {} (id {}) on {}", v.name, v.id, v.parent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn bond(name: &str, slaves: &[&str], mode: BondMode, options: &[(&str, &str)]) -> Bond {
        Bond {
            name: name.into(),
            slaves: names(slaves),
            mode,
            miimon: None,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mtu: None,
        }
    }

    fn vlan(name: &str, parent: &str, id: u16) -> Vlan {
        Vlan {
            name: name.into(),
            parent: parent.into(),
            id,
        }
    }

    const M0: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const M1: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];

    fn present() -> Vec<(String, Hw)> {
        vec![
            ("eth0".into(), Hw::Ether(M0)),
            ("eth1".into(), Hw::Ether(M1)),
        ]
    }

    #[test]
    fn renames_by_mac() {
        let r = renames(
            &[IfName {
                name: "lan0".into(),
                mac: M1,
            }],
            &present(),
        )
        .unwrap();
        assert_eq!(r.steps, [("eth1".to_string(), "lan0".to_string())]);
        // Already named so: nothing to do.
        let r = renames(
            &[IfName {
                name: "eth0".into(),
                mac: M0,
            }],
            &present(),
        )
        .unwrap();
        assert!(r.steps.is_empty() && r.unmatched.is_empty());
        // No such MAC: reported, not fatal.
        let r = renames(
            &[IfName {
                name: "x".into(),
                mac: [9; 6],
            }],
            &present(),
        )
        .unwrap();
        assert_eq!(r.unmatched.len(), 1);
    }

    #[test]
    fn swapped_names_go_through_temporary_ones() {
        let r = renames(
            &[
                IfName {
                    name: "eth0".into(),
                    mac: M1,
                },
                IfName {
                    name: "eth1".into(),
                    mac: M0,
                },
            ],
            &present(),
        )
        .unwrap();
        let s: Vec<(&str, &str)> = r
            .steps
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            s,
            [
                ("eth1", "rltmp0"),
                ("eth0", "rltmp1"),
                ("rltmp0", "eth0"),
                ("rltmp1", "eth1")
            ]
        );
    }

    #[test]
    fn a_name_held_by_an_interface_that_keeps_it_is_refused() {
        let e = renames(
            &[IfName {
                name: "eth0".into(),
                mac: M1,
            }],
            &present(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth0 (ifname= for eth1) is already the name of another interface of this node"
        );
    }

    #[test]
    fn bootif_picks_by_mac_or_port_guid() {
        let b = BootIf {
            hwtype: 1,
            addr: M1.to_vec(),
        };
        assert_eq!(bootif_link(&b, &present()), Some("eth1"));
        assert_eq!(bootif_string(&b), "01-52-54-00-12-34-57");
        let none = BootIf {
            hwtype: 1,
            addr: vec![1; 6],
        };
        assert_eq!(bootif_link(&none, &present()), None);
        let mut ib = [0u8; 20];
        ib[12..].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut p = present();
        p.push(("ib0".into(), Hw::Infiniband(ib)));
        // Another queue pair number, the same port GUID.
        let mut addr = ib.to_vec();
        addr[2] = 0x77;
        let b = BootIf { hwtype: 32, addr };
        assert_eq!(bootif_link(&b, &p), Some("ib0"));
        // An Ethernet BOOTIF never names an IPoIB port, nor the reverse.
        let b = BootIf {
            hwtype: 32,
            addr: M0.to_vec(),
        };
        assert_eq!(bootif_link(&b, &p), None);
    }

    #[test]
    fn bonds_first_then_vlans_and_the_leaves_get_addresses() {
        let p = names(&["eth0", "eth1", "eth2"]);
        let bonds = [bond(
            "bond0",
            &["eth0", "eth1"],
            BondMode::ActiveBackup,
            &[],
        )];
        let vlans = [vlan("vlan5", "bond0", 5), vlan("eth2.7", "eth2", 7)];
        let plan = plan(&p, &vlans, &bonds).unwrap();
        assert_eq!(plan.created(), names(&["bond0", "vlan5", "eth2.7"]));
        assert_eq!(plan.bonds[0].slaves, names(&["eth0", "eth1"]));
        // Slaves and parents carry their master's or VLAN's traffic only.
        assert_eq!(targets(&p, &plan, None), names(&["vlan5", "eth2.7"]));
        // BOOTIF on a slave: the bond's VLAN.
        assert_eq!(targets(&p, &plan, Some("eth1")), names(&["vlan5"]));
        assert_eq!(targets(&p, &plan, Some("eth2")), names(&["eth2.7"]));
        // No bond or VLAN: every interface, or BOOTIF's alone.
        let empty = super::plan(&p, &[], &[]).unwrap();
        assert_eq!(targets(&p, &empty, None), p);
        assert_eq!(targets(&p, &empty, Some("eth1")), names(&["eth1"]));
    }

    #[test]
    fn failures_are_one_sentence_each() {
        let p = names(&["eth0", "eth1"]);
        let e = plan(&p, &[vlan("vlan5", "eth9", 5)], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VLAN vlan5: its parent interface eth9 does not exist (present: eth0, eth1)"
        );
        let e = plan(
            &p,
            &[],
            &[bond(
                "bond0",
                &["eth7", "eth8"],
                BondMode::ActiveBackup,
                &[],
            )],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bond bond0: none of its slaves (eth7, eth8) exists (present: eth0, eth1)"
        );
        let e = plan(
            &p,
            &[],
            &[
                bond("bond0", &["eth0"], BondMode::ActiveBackup, &[]),
                bond("bond1", &["eth0", "eth1"], BondMode::ActiveBackup, &[]),
            ],
        )
        .unwrap_err();
        assert!(matches!(e, LinkError::SlaveTwice { .. }), "{e}");
        let e = plan(
            &p,
            &[vlan("vlan5", "eth0", 5)],
            &[bond(
                "bond0",
                &["eth0", "eth1"],
                BondMode::ActiveBackup,
                &[],
            )],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth0 cannot be a slave of bond0 and the parent of VLAN vlan5 at once"
        );
        let e = plan(&p, &[vlan("eth1", "eth0", 5)], &[]).unwrap_err();
        assert!(matches!(e, LinkError::NameTaken { .. }), "{e}");
        let e = LinkError::NoSlaveCarrier {
            bond: "bond0".into(),
            slaves: names(&["eth0", "eth1"]),
            waited_secs: 15,
        };
        assert_eq!(e.to_string(), "bond bond0 has no carrier after 15 s: no slave (eth0, eth1) has a link (are the cables or the switch ports up?)");
        let e = LinkError::IbPortNotActive {
            iface: "ib0".into(),
            hca: "mlx5_0".into(),
            port: 1,
            state: "INIT".into(),
        };
        assert_eq!(e.to_string(), "IPoIB interface ib0 has no carrier: port 1 of mlx5_0 is INIT, not ACTIVE (is a subnet manager running on the fabric?)");
    }

    #[test]
    fn a_bond_goes_on_without_a_missing_slave() {
        let p = names(&["eth0"]);
        let plan = plan(
            &p,
            &[],
            &[bond("bond0", &["eth0", "eth1"], BondMode::Ieee8023ad, &[])],
        )
        .unwrap();
        assert_eq!(plan.bonds[0].slaves, names(&["eth0"]));
        assert_eq!(
            plan.missing_slaves,
            [("bond0".to_string(), "eth1".to_string())]
        );
    }

    #[test]
    fn bond_options_become_attributes() {
        let b = bond(
            "bond0",
            &["eth0", "eth1"],
            BondMode::Ieee8023ad,
            &[
                ("mode", "802.3ad"),
                ("lacp_rate", "fast"),
                ("xmit_hash_policy", "layer3+4"),
                ("updelay", "200"),
                ("primary", "eth1"),
                ("arp_ip_target", "10.0.0.1"),
                ("ad_select", "1"),
                ("arp_ip_target", "10.0.0.2"),
            ],
        );
        let idx = |n: &str| (n == "eth1").then_some(3);
        let o = bond_options(&b, &idx).unwrap();
        assert_eq!(
            o,
            [
                InfoBond::Mode(NlBondMode::Ieee8023Ad),
                InfoBond::MiiMon(100),
                InfoBond::AdLacpRate(BondLacpRate::Fast),
                InfoBond::XmitHashPolicy(BondXmitHashPolicy::Layer34),
                InfoBond::UpDelay(200),
                InfoBond::Primary(3),
                InfoBond::AdSelect(BondAdSelect::Bandwidth),
                InfoBond::ArpIpTarget(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]),
            ]
        );
        let mut ab = bond("bond0", &["eth0"], BondMode::ActiveBackup, &[]);
        ab.miimon = Some(50);
        assert_eq!(
            bond_options(&ab, &idx).unwrap(),
            [
                InfoBond::Mode(NlBondMode::ActiveBackup),
                InfoBond::MiiMon(50)
            ]
        );
        for (k, v, why) in [
            ("lacp_rate", "medium", "one of slow, fast"),
            ("updelay", "-1", "not a number"),
            ("primary", "eth9", "no interface"),
            ("frobnicate", "1", "not a bonding option"),
            ("arp_ip_target", "10.0.0.1+x", "IPv4"),
        ] {
            let b = bond("bond0", &["eth0"], BondMode::ActiveBackup, &[(k, v)]);
            let e = bond_options(&b, &idx).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("bond bond0: option {k}={v} cannot be set")),
                "{e}"
            );
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn modules_for_links() {
        assert!(modules(&[], &[]).is_empty());
        assert_eq!(
            modules(
                &[vlan("vlan5", "eth0", 5)],
                &[bond("bond0", &["eth0"], BondMode::ActiveBackup, &[])]
            ),
            ["bonding", "8021q"]
        );
    }

    #[test]
    fn ib_ports_from_sysfs() {
        assert_eq!(ib_port_state("4: ACTIVE\n"), Some((4, "ACTIVE".into())));
        assert_eq!(ib_port_state("2: INIT"), Some((2, "INIT".into())));
        assert_eq!(ib_port_state("ACTIVE"), None);
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let net = sys.join("class/net/ib0");
        std::fs::create_dir_all(net.join("device/infiniband/mlx5_0")).unwrap();
        std::fs::write(net.join("dev_port"), "0\n").unwrap();
        assert!(!has_infiniband(sys));
        let port = sys.join("class/infiniband/mlx5_0/ports/1");
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(port.join("state"), "2: INIT\n").unwrap();
        std::fs::write(port.join("link_layer"), "Ethernet\n").unwrap();
        assert!(!has_infiniband(sys), "RoCE is not InfiniBand");
        std::fs::write(port.join("link_layer"), "InfiniBand\n").unwrap();
        assert!(has_infiniband(sys));
        assert_eq!(
            ib_port_of(sys, "ib0"),
            Some(("mlx5_0".into(), 1, "INIT".into()))
        );
        assert_eq!(ib_port_of(sys, "eth0"), None);
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("eth0".to_string()),
            Just("eth1".to_string()),
            Just("eth2".to_string()),
            Just("bond0".to_string()),
            Just("vlan5".to_string()),
        ]
    }

    proptest! {
        /// Whatever the command line asks, a plan that is accepted creates each link once,
        /// every slave exists and belongs to one bond, every VLAN's parent exists or is a bond
        /// created before it, and no target is a slave or a parent.
        #[test]
        fn accepted_plans_are_consistent(
            present in proptest::collection::vec(arb_name(), 0..4),
            bonds in proptest::collection::vec((arb_name(), proptest::collection::vec(arb_name(), 0..3)), 0..3),
            vlans in proptest::collection::vec((arb_name(), arb_name(), 1u16..4095), 0..3),
            bootif in proptest::option::of(arb_name()),
        ) {
            let bonds: Vec<Bond> = bonds.iter().map(|(n, s)| {
                let s: Vec<&str> = s.iter().map(String::as_str).collect();
                bond(n, &s, BondMode::ActiveBackup, &[])
            }).collect();
            let vlans: Vec<Vlan> = vlans.iter().map(|(n, p, id)| vlan(n, p, *id)).collect();
            let Ok(plan) = plan(&present, &vlans, &bonds) else { return Ok(()) };
            let created = plan.created();
            let mut uniq = created.clone();
            uniq.sort();
            uniq.dedup();
            // A name given twice (bond0 and bond0) is created once per entry: config refuses
            // duplicates; the plan at least never creates over a present interface.
            prop_assert!(created.iter().all(|c| !present.contains(c)));
            let mut slaves = Vec::new();
            for b in &plan.bonds {
                prop_assert!(!b.slaves.is_empty());
                for s in &b.slaves {
                    prop_assert!(present.contains(s));
                    prop_assert!(!slaves.contains(s));
                    slaves.push(s.clone());
                }
            }
            for (i, v) in plan.vlans.iter().enumerate() {
                let on_bond = plan.bonds.iter().any(|b| b.bond.name == v.parent);
                prop_assert!(present.contains(&v.parent) || on_bond);
                prop_assert!(!slaves.contains(&v.parent));
                prop_assert!(plan.vlans.iter().take(i).all(|x| x.name != v.name));
            }
            for t in targets(&present, &plan, bootif.as_deref()) {
                prop_assert!(!slaves.contains(&t));
                prop_assert!(plan.vlans.iter().all(|v| v.parent != t));
            }
        }

        #[test]
        fn renames_never_leave_two_links_with_one_name(
            wanted in proptest::collection::vec((arb_name(), 0u8..3), 0..4),
        ) {
            let present: Vec<(String, Hw)> = (0u8..3)
                .map(|i| (format!("eth{i}"), Hw::Ether([2, 0, 0, 0, 0, i])))
                .collect();
            let ifnames: Vec<IfName> = wanted
                .iter()
                .map(|(n, i)| IfName { name: n.clone(), mac: [2, 0, 0, 0, 0, *i] })
                .collect();
            let Ok(r) = renames(&ifnames, &present) else { return Ok(()) };
            let mut now: Vec<String> = present.iter().map(|(n, _)| n.clone()).collect();
            for (from, to) in &r.steps {
                let i = now.iter().position(|n| n == from);
                prop_assert!(i.is_some(), "{} renamed before it exists", from);
                prop_assert!(!now.contains(to), "{} taken when {} is renamed", to, from);
                if let Some(i) = i { now[i] = to.clone(); }
            }
        }
    }
}
