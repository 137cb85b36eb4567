//! IP address classes the metadata-document fetcher refuses, and CIDR
//! networks that may be let through.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an address is not a public unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), RFC 4193 ULA
    /// (`fc00::/7`), deprecated site-local `fec0::/10`, local-use NAT64
    /// `64:ff9b:1::/48`.
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT), `100.64/10`.
    SharedCgnat,
    /// `169.254/16` (cloud metadata services live at 169.254.169.254),
    /// `fe80::/10`.
    LinkLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`,
    /// `3fff::/20`.
    Documentation,
    /// Everything else that is not global unicast: `192.0.0/24`,
    /// `192.88.99/24`, `198.18/15`, `240/4`, IPv4-compatible `::/96`,
    /// `100::/64`, `2001::/23` (Teredo included), 6to4 `2002::/16`, and any
    /// IPv6 address outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// A short name: `private`, `link-local`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared (CGNAT)",
            Self::LinkLocal => "link-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of a non-public address, `None` for a public unicast one.
/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses
/// are classified by their IPv4 address.
///
/// ```
/// use mcp_auth_proxy::clients::{AddressClass, classify_address};
/// let c = |s: &str| classify_address(s.parse().unwrap());
/// assert_eq!(c("169.254.169.254"), Some(AddressClass::LinkLocal));
/// assert_eq!(c("::ffff:10.0.0.1"), Some(AddressClass::Private));
/// assert_eq!(c("93.184.215.14"), None);
/// ```
pub fn classify_address(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    ip & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(ip: u128, net: u128, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    ip & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let n = u32::from(ip);
    let table: [([u8; 4], u32, AddressClass); 16] = [
        ([255, 255, 255, 255], 32, Broadcast),
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(n, *net, *prefix))
        .map(|(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let n = u128::from(ip);
    if n == 0 {
        return Some(Unspecified);
    }
    if n == 1 {
        return Some(Loopback);
    }
    let nat64: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;
    if in_v6(n, nat64, 96) {
        // The low 32 bits are the IPv4 address the NAT64 gateway reaches.
        let v4 = Ipv4Addr::from((n & 0xffff_ffff) as u32);
        return classify_v4(v4);
    }
    let table: [(u128, u32, AddressClass); 10] = [
        (0, 96, Reserved), // IPv4-compatible (deprecated)
        (0x0064_ff9b_0001 << 80, 48, Private),
        (0x0100 << 112, 64, Reserved),
        (0x2001_0db8 << 96, 32, Documentation),
        (0x3fff << 112, 20, Documentation),
        (0x2001 << 112, 23, Reserved),
        (0x2002 << 112, 16, Reserved),
        (0xfc00 << 112, 7, Private),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfec0 << 112, 10, Private),
    ];
    if let Some((_, _, class)) = table.iter().find(|(net, p, _)| in_v6(n, *net, *p)) {
        return Some(*class);
    }
    if in_v6(n, 0xff00 << 112, 8) {
        return Some(Multicast);
    }
    // Only 2000::/3 is allocated as global unicast.
    if !in_v6(n, 0x2000 << 112, 3) {
        return Some(Reserved);
    }
    None
}

/// A CIDR network (`10.1.0.0/16`, `fd00:1::/64`; a bare address is a
/// single-address network). Serialized as that string.
///
/// ```
/// use mcp_auth_proxy::clients::IpNetwork;
/// let net: IpNetwork = "10.1.0.0/16".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("10.2.0.1".parse().unwrap()));
/// assert!("10.1.0.1/16".parse::<IpNetwork>().is_err()); // host bits set
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR network string is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNetwork {
    /// Not `address` or `address/prefix`.
    #[error("a network must be an IP address, optionally followed by /prefix")]
    Syntax,
    /// The prefix is longer than the address.
    #[error("the prefix length is too long for the address family")]
    PrefixTooLong,
    /// Bits after the prefix are set (`10.0.0.1/8`): probably a typo.
    #[error("the address has bits set after the prefix")]
    HostBitsSet,
}

impl IpNetwork {
    /// The network `addr/prefix`; `addr` must have no bits after the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, InvalidNetwork> {
        let host_bits_clear = match addr {
            IpAddr::V4(a) => {
                if prefix > 32 {
                    return Err(InvalidNetwork::PrefixTooLong);
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(a) & !mask == 0
            }
            IpAddr::V6(a) => {
                if prefix > 128 {
                    return Err(InvalidNetwork::PrefixTooLong);
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(a) & !mask == 0
            }
        };
        if !host_bits_clear {
            return Err(InvalidNetwork::HostBitsSet);
        }
        Ok(Self { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is tested in its IPv4 form, so write IPv4
    /// networks in IPv4 notation.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                in_v4(u32::from(ip), net.octets(), u32::from(self.prefix))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                in_v6(u128::from(ip), u128::from(net), u32::from(self.prefix))
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(InvalidNetwork::Syntax);
                }
                (
                    a,
                    Some(p.parse::<u8>().map_err(|_| InvalidNetwork::Syntax)?),
                )
            }
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| InvalidNetwork::Syntax)?;
        let prefix = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Self::new(addr, prefix)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for IpNetwork {
    type Error = InvalidNetwork;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IpNetwork> for String {
    fn from(n: IpNetwork) -> Self {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn class(s: &str) -> Option<AddressClass> {
        classify_address(s.parse().unwrap())
    }

    #[test]
    fn ipv4_classes() {
        let table = [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("11.0.0.1", None),
            ("100.63.255.255", None),
            ("100.64.0.1", Some(SharedCgnat)),
            ("100.127.255.255", Some(SharedCgnat)),
            ("100.128.0.0", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.0.1", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal)),
            ("172.15.255.255", None),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            ("192.0.0.170", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("192.88.99.1", Some(Reserved)),
            ("192.168.1.1", Some(Private)),
            ("198.18.0.1", Some(Reserved)),
            ("198.19.255.255", Some(Reserved)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
        ];
        for (ip, want) in table {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_classes() {
        let table = [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:8.8.8.8", None),
            ("::10.0.0.1", Some(Reserved)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::169.254.169.254", Some(LinkLocal)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some(Private)),
            ("100::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2002:a00:1::1", Some(Reserved)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("4000::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::1", None),
        ];
        for (ip, want) in table {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let n: IpNetwork = "192.168.0.0/16".parse().unwrap();
        assert_eq!(n.to_string(), "192.168.0.0/16");
        assert!(n.contains("192.168.255.1".parse().unwrap()));
        assert!(!n.contains("192.169.0.1".parse().unwrap()));
        assert!(!n.contains("fd00::1".parse().unwrap()));
        let one: IpNetwork = "10.0.0.7".parse().unwrap();
        assert_eq!(one.prefix(), 32);
        assert!(one.contains("10.0.0.7".parse().unwrap()));
        assert!(!one.contains("10.0.0.8".parse().unwrap()));
        let v6: IpNetwork = "fd00:1::/32".parse().unwrap();
        assert!(v6.contains("fd00:1:ffff::2".parse().unwrap()));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let ten: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(ten.contains("::ffff:10.9.8.7".parse().unwrap()));

        assert_eq!(
            "10.0.0.1/8".parse::<IpNetwork>(),
            Err(InvalidNetwork::HostBitsSet)
        );
        assert_eq!(
            "10.0.0.0/33".parse::<IpNetwork>(),
            Err(InvalidNetwork::PrefixTooLong)
        );
        assert_eq!(
            "::/129".parse::<IpNetwork>(),
            Err(InvalidNetwork::PrefixTooLong)
        );
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/0008",
        ] {
            assert_eq!(
                bad.parse::<IpNetwork>(),
                Err(InvalidNetwork::Syntax),
                "{bad}"
            );
        }
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"192.168.0.0/16\"");
        assert_eq!(serde_json::from_str::<IpNetwork>(&json).unwrap(), n);
        assert!(serde_json::from_str::<IpNetwork>("\"10.0.0.1/8\"").is_err());
    }
}
