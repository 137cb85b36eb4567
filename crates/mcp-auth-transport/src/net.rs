//! Client addresses: IP networks, trusted proxies, and the network a
//! client is counted by (rate limits and connection caps share it).
//!
//! ```
//! use mcp_auth_transport::IpNet;
//! let net = IpNet::parse("10.0.0.0/8").unwrap();
//! assert!(net.contains("10.1.2.3".parse().unwrap()));
//! assert!(!net.contains("11.0.0.1".parse().unwrap()));
//! ```

use std::net::IpAddr;

use mcp_auth_core::settings::{ConfigError, Lookup, parse_list};

/// An IP network (`10.0.0.0/8`, `::1`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ip` or `ip/prefix`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// Reads `HTTP_TRUSTED_PROXIES`: addresses and networks whose
/// `X-Forwarded-For` is believed and whose connections are not capped per
/// address.
pub(crate) fn trusted_proxies(l: &dyn Lookup) -> Result<Vec<IpNet>, ConfigError> {
    parse_list(l, "HTTP_TRUSTED_PROXIES")
        .unwrap_or_default()
        .iter()
        .map(|item| {
            IpNet::parse(item).ok_or_else(|| {
                ConfigError::new(
                    "HTTP_TRUSTED_PROXIES",
                    format!("{item:?} is not an IP address or network like 10.0.0.0/8"),
                )
            })
        })
        .collect()
}

/// The network one client is counted by: the canonical address, IPv4 as
/// is, IPv6 by its /64 (one client usually owns a whole /64, and could
/// otherwise rotate through it). Rate limits and connection caps share it.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// `ip` as its `Display` writes it; IPv4 without the formatting machinery
/// (the audit log writes an address per request).
#[cfg(feature = "mcp")]
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// The client's address: the TCP peer, or, when the peer is one of the
/// `trusted_proxies` (`HTTP_TRUSTED_PROXIES`), the right-most
/// `X-Forwarded-For` entry that is not one.
///
/// The entries are read from the right: the trusted proxies' own, then the
/// first one they did not write, which is the client as the nearest
/// proxy saw it. What lies left of it came from the client and is never
/// looked at, so a client cannot turn the answer into its proxy's address
/// by sending garbage. An entry that is not an address before that point
/// (a proxy's `unknown`) gives the peer. Entries may carry a port
/// (`203.0.113.7:41234`, `[2001:db8::1]:443`) or brackets, as some proxies
/// write them.
pub fn client_ip(
    trusted_proxies: &[IpNet],
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
) -> Option<IpAddr> {
    // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
    let peer = peer?.to_canonical();
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(peer) {
        return Some(peer);
    }
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for v in headers.get_all(crate::names::X_FORWARDED_FOR) {
        match v.to_str() {
            Ok(v) => entries.extend(v.split(',').map(forwarded_address)),
            Err(_) => entries.push(None),
        }
    }
    for entry in entries.into_iter().rev() {
        match entry {
            Some(ip) if trusted(ip) => {}
            Some(ip) => return Some(ip),
            None => return Some(peer),
        }
    }
    Some(peer)
}

/// One `X-Forwarded-For` entry as an address (canonical): an IP address,
/// `a.b.c.d:port`, `[v6]` or `[v6]:port`, the port being 1 to 5 digits up
/// to 65535. Anything else (`unknown`, a zone id, an empty entry) is not.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let port_ok = |p: &str| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    };
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (v6, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok)) {
            return None;
        }
        return v6
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|v6| IpAddr::V6(v6).to_canonical());
    }
    let (v4, port) = entry.rsplit_once(':')?;
    if !port_ok(port) {
        return None;
    }
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "mcp")]
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for n in 0..=255u8 {
            for ip in [
                [n, 0, 9, 10],
                [99, n, 100, 255],
                [1, 2, n, 3],
                [255, 19, 200, n],
            ] {
                let ip = IpAddr::from(ip);
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        for v6 in [
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
            "fe80::1",
        ] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn networks() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", ""] {
            assert!(IpNet::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 10.0.0.5".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let direct: IpAddr = "3.3.3.3".parse().unwrap();
        assert_eq!(
            client_ip(&trusted, Some(proxy), &h),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(client_ip(&trusted, Some(direct), &h), Some(direct));
        // What the client sent left of the answer is never looked at: it
        // cannot make itself the proxy (and share or split its budgets).
        h.insert("x-forwarded-for", "garbage, 2.2.2.2".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, Some(proxy), &h),
            Some("2.2.2.2".parse().unwrap())
        );
        // Garbage where the proxies write (their `unknown`) gives the peer.
        h.insert(
            "x-forwarded-for",
            "2.2.2.2, unknown, 10.0.0.5".parse().unwrap(),
        );
        assert_eq!(client_ip(&trusted, Some(proxy), &h), Some(proxy));
        // Ports and brackets, as some proxies write the entries.
        for (entry, client) in [
            ("203.0.113.7:41234", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[::ffff:203.0.113.7]:80", "203.0.113.7"),
        ] {
            h.insert("x-forwarded-for", entry.parse().unwrap());
            assert_eq!(
                client_ip(&trusted, Some(proxy), &h),
                Some(client.parse().unwrap()),
                "{entry}"
            );
        }
        for bad in [
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:+80",
            "[::1]x",
            "[fe80::1%eth0]:80",
            "::1:80:",
        ] {
            h.insert("x-forwarded-for", bad.parse().unwrap());
            assert_eq!(client_ip(&trusted, Some(proxy), &h), Some(proxy), "{bad}");
        }
        assert_eq!(
            client_ip(&trusted, Some(proxy), &http::HeaderMap::new()),
            Some(proxy)
        );
        // Dual-stack listeners see IPv4 peers as mapped IPv6 addresses.
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        h.insert("x-forwarded-for", "2.2.2.2".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, Some(mapped), &h),
            Some("2.2.2.2".parse().unwrap())
        );
    }
}
