//! Stand-in for `config::netdev` (the lead's configuration model for issue 19, same shapes),
//! so the link code builds before that commit is merged. Deleted at the merge: `links.rs` then
//! uses `crate::config::netdev` instead.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    BalanceRr,
    ActiveBackup,
    BalanceXor,
    Broadcast,
    Ieee8023ad,
    BalanceTlb,
    BalanceAlb,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub name: String,
    pub slaves: Vec<String>,
    pub mode: BondMode,
    pub miimon: Option<u32>,
    pub options: Vec<(String, String)>,
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName {
    pub name: String,
    pub mac: [u8; 6],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootIf {
    pub hwtype: u8,
    pub addr: Vec<u8>,
}
