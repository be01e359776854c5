//! The few rtnetlink requests the standalone initramfs makes (link up, MTU, address, routes;
//! renames, bonds and their slaves, VLANs),
//! synchronous, each acknowledged by the kernel before the next, and the address list every
//! boot reads ([`addresses`], what `getifaddrs(3)` asks the kernel). This is the syscall seam of
//! the network stage: everything above it is pure.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBond, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, thiserror::Error)]
#[error("netlink: cannot {what}")]
pub struct RtnlError {
    pub what: String,
    #[source]
    pub source: std::io::Error,
}

pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

/// An address assigned to an interface, with the interface's name and hardware address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub ifname: String,
    pub mac: Option<[u8; 6]>,
    pub addr: IpAddr,
}

/// Every address of every interface, in the kernel's order (IPv4 first), as `getifaddrs(3)`
/// lists them.
pub fn addresses() -> Result<Vec<IfAddr>, RtnlError> {
    let mut rt = Rtnl::open()?;
    let mut links = std::collections::HashMap::new();
    for m in rt.dump(
        "list the links",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )? {
        if let RouteNetlinkMessage::NewLink(l) = m {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            let mac = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
                _ => None,
            });
            if let Some(name) = name {
                links.insert(l.header.index, (name, mac));
            }
        }
    }
    let mut out = Vec::new();
    for m in rt.dump(
        "list the addresses",
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )? {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        // The local address; IFA_ADDRESS is the peer's on a point-to-point link.
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = local.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let (Some(addr), Some((ifname, mac))) = (addr, links.get(&a.header.index)) {
            out.push(IfAddr {
                ifname: ifname.clone(),
                mac: *mac,
                addr,
            });
        }
    }
    Ok(out)
}

impl Rtnl {
    pub fn open() -> Result<Rtnl, RtnlError> {
        let err = |source| RtnlError {
            what: "open a NETLINK_ROUTE socket".into(),
            source,
        };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(
        &mut self,
        what: String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), RtnlError> {
        self.exchange(
            &what,
            msg,
            NLM_F_ACK | flags,
            8192,
            |payload| match payload {
                NetlinkPayload::Error(e) => Some(match e.code {
                    None => Ok(()),
                    Some(_) => Err(e.to_io()),
                }),
                _ => None,
            },
        )
    }

    /// Sends a dump request and collects the replies until the kernel says it is done.
    fn dump(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        let mut out = Vec::new();
        // Big enough for any one datagram of a dump (the kernel fills at most 32 KiB).
        self.exchange(what, msg, NLM_F_DUMP, 32 * 1024, |payload| match payload {
            NetlinkPayload::Done(_) => Some(Ok(())),
            NetlinkPayload::Error(e) if e.code.is_some() => Some(Err(e.to_io())),
            NetlinkPayload::InnerMessage(m) => {
                out.push(m);
                None
            }
            _ => None,
        })?;
        Ok(out)
    }

    /// Sends `msg` as a new request and hands each reply to it to `take`, until `take` says
    /// the exchange is over (and how it ended). Replies to older requests are passed over.
    fn exchange(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        rx_size: usize,
        mut take: impl FnMut(NetlinkPayload<RouteNetlinkMessage>) -> Option<Result<(), std::io::Error>>,
    ) -> Result<(), RtnlError> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        let fail = |source| RtnlError {
            what: what.to_string(),
            source,
        };
        self.sock.send(&buf, 0).map_err(fail)?;
        let mut rx = vec![0u8; rx_size];
        loop {
            let n = self.sock.recv(&mut &mut rx[..], 0).map_err(fail)?;
            let mut off = 0usize;
            while off < n {
                let Some(chunk) = rx.get(off..n) else { break };
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk)
                    .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
                let len = usize::try_from(reply.header.length).unwrap_or(0);
                if reply.header.sequence_number == self.seq {
                    if let Some(end) = take(reply.payload) {
                        return end.map_err(fail);
                    }
                }
                if len == 0 {
                    break;
                }
                off = off.saturating_add(len.saturating_add(3) & !3);
            }
        }
    }

    /// `ip link set IFACE up` (and `mtu MTU`).
    pub fn link_up(&mut self, iface: &str, index: u32, mtu: Option<u16>) -> Result<(), RtnlError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(u32::from(mtu)));
        }
        let what = match mtu {
            Some(v) => format!("bring {iface} up with MTU {v}"),
            None => format!("bring {iface} up"),
        };
        self.request(what, RouteNetlinkMessage::SetLink(m), 0)
    }

    /// `ip link set IFACE down`: a link is renamed, and a slave enslaved, only while down.
    pub fn link_down(&mut self, iface: &str, index: u32) -> Result<(), RtnlError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Up;
        self.request(
            format!("bring {iface} down"),
            RouteNetlinkMessage::SetLink(m),
            0,
        )
    }

    /// `ip link set IFACE name NEW` (the link must be down).
    pub fn rename(&mut self, iface: &str, index: u32, new: &str) -> Result<(), RtnlError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(new.to_string()));
        self.request(
            format!("rename {iface} to {new}"),
            RouteNetlinkMessage::SetLink(m),
            0,
        )
    }

    /// `ip link add NAME link PARENT type vlan id ID`. An existing VLAN of that name is
    /// updated instead (a second run).
    pub fn create_vlan(
        &mut self,
        name: &str,
        parent: &str,
        parent_index: u32,
        id: u16,
    ) -> Result<(), RtnlError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(parent_index));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vlan),
            LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id)])),
        ]));
        self.request(
            format!("create VLAN {name} (id {id} on {parent})"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE,
        )
    }

    /// `ip link add NAME type bond OPTIONS [mtu MTU]`. Without `NLM_F_EXCL` an existing bond of
    /// that name is reconfigured instead: loading `bonding` creates `bond0` by itself
    /// (`max_bonds=1`).
    pub fn create_bond(
        &mut self,
        name: &str,
        options: Vec<InfoBond>,
        mtu: Option<u16>,
    ) -> Result<(), RtnlError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(u32::from(mtu)));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bond),
            LinkInfo::Data(InfoData::Bond(options)),
        ]));
        self.request(
            format!("create bond {name}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE,
        )
    }

    /// `ip link set SLAVE master BOND` (the slave must be down; the bond brings it up).
    pub fn enslave(
        &mut self,
        slave: &str,
        slave_index: u32,
        bond: &str,
        bond_index: u32,
    ) -> Result<(), RtnlError> {
        let mut m = LinkMessage::default();
        m.header.index = slave_index;
        m.attributes.push(LinkAttribute::Controller(bond_index));
        self.request(
            format!("enslave {slave} to {bond}"),
            RouteNetlinkMessage::SetLink(m),
            0,
        )
    }

    /// `ip addr replace ADDR/PREFIX brd + dev IFACE`.
    pub fn add_address(
        &mut self,
        iface: &str,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), RtnlError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.scope = AddressScope::Universe;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        if prefix < 31 {
            m.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                    u32::from(addr) | host_bits,
                )));
        }
        self.request(
            format!("add address {addr}/{prefix} to {iface}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// `ip route replace DEST/PREFIX [via GW] dev IFACE [onlink]`. A gateway outside the
    /// subnet (a /32 lease, a classless route) is added on-link, as DHCP clients do.
    pub fn add_route(
        &mut self,
        iface: &str,
        index: u32,
        dest: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        onlink: bool,
    ) -> Result<(), RtnlError> {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet,
            destination_prefix_length: prefix,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Dhcp,
            scope: if gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            },
            kind: RouteType::Unicast,
            flags: if onlink {
                RouteFlags::Onlink
            } else {
                RouteFlags::empty()
            },
            ..RouteHeader::default()
        };
        if prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(dest)));
        }
        if let Some(gw) = gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        self.request(
            format!("add route {dest}/{prefix}{via} on {iface}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }
}

// --- IPv6 (the standalone initramfs's `net::up6`) ------------------------------------------

/// The state of an IPv6 address the kernel holds: duplicate address detection under way
/// (`IFA_F_TENTATIVE`), or failed (`IFA_F_DADFAILED`: another node has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr6State {
    pub addr: std::net::Ipv6Addr,
    pub prefix: u8,
    pub tentative: bool,
    pub dad_failed: bool,
}

impl Rtnl {
    /// The IPv6 addresses of interface `index`, with their DAD state.
    pub fn addresses6(&mut self, index: u32) -> Result<Vec<Addr6State>, RtnlError> {
        use netlink_packet_route::address::AddressFlags;
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet6;
        let mut out = Vec::new();
        for m in self.dump(
            "list the IPv6 addresses",
            RouteNetlinkMessage::GetAddress(req),
        )? {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.index != index || a.header.family != AddressFamily::Inet6 {
                continue;
            }
            // IFA_FLAGS (32 bits) when present supersedes the header's 8.
            let flags = a
                .attributes
                .iter()
                .find_map(|x| match x {
                    AddressAttribute::Flags(f) => Some(*f),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    AddressFlags::from_bits_retain(u32::from(a.header.flags.bits()))
                });
            let addr = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(IpAddr::V6(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(addr) = addr {
                out.push(Addr6State {
                    addr,
                    prefix: a.header.prefix_len,
                    tentative: flags.contains(AddressFlags::Tentative),
                    dad_failed: flags.contains(AddressFlags::Dadfailed),
                });
            }
        }
        Ok(out)
    }

    /// `ip -6 addr replace ADDR/PREFIX dev IFACE`: permanent (no lifetimes: the booted system
    /// keeps it, as it keeps a DHCPv4 address, until its own network manager takes over), the
    /// kernel's duplicate address detection on.
    pub fn add_address6(
        &mut self,
        iface: &str,
        index: u32,
        addr: std::net::Ipv6Addr,
        prefix: u8,
    ) -> Result<(), RtnlError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = prefix;
        m.header.scope = AddressScope::Universe;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V6(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V6(addr)));
        self.request(
            format!("add address {addr}/{prefix} to {iface}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// `ip -6 route replace DEST/PREFIX [via GW] dev IFACE proto ra|dhcp`; a link-local gateway
    /// is reached through `index`.
    pub fn add_route6(
        &mut self,
        iface: &str,
        index: u32,
        dest: std::net::Ipv6Addr,
        prefix: u8,
        gateway: Option<std::net::Ipv6Addr>,
        from_ra: bool,
    ) -> Result<(), RtnlError> {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet6,
            destination_prefix_length: prefix,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: if from_ra {
                RouteProtocol::Ra
            } else {
                RouteProtocol::Dhcp
            },
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        if prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet6(dest)));
        }
        if let Some(gw) = gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw)));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        // The kernel's own metric for routes from router advertisements.
        m.attributes.push(RouteAttribute::Priority(1024));
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        self.request(
            format!("add route {dest}/{prefix}{via} on {iface}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }
}
