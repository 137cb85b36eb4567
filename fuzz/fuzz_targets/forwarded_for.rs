//! Client addresses behind proxies: `IpNet::parse` and
//! `client_ip`. The input is NUL-separated: the
//! `HTTP_TRUSTED_PROXIES` list, the TCP peer (text, or 4/16 raw bytes), then
//! one `X-Forwarded-For` header value per remaining field.
//!
//! Asserts: the trusted list read through `from_settings` is exactly the
//! items `IpNet::parse` accepts (or an error naming the variable); a network
//! contains its own address; no peer, no address; an untrusted peer's own
//! address is used whatever the headers say; otherwise, reading the
//! forwarded entries from the right, the first that is not a trusted
//! proxy, or the peer when an entry before it is not an address (or all
//! are trusted); entries may carry a port or brackets; the answer is
//! canonical (no IPv4-mapped IPv6) and, unless it is the peer, never a
//! trusted proxy.
//! Plus `IpNet::contains` against an independent prefix comparison.

#![no_main]

mod common;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_auth_transport::{IpNet, ServeOptions, client_ip};

fn peer(field: &[u8]) -> Option<IpAddr> {
    match field.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(field).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(field).ok()?,
        ))),
        _ => common::text(field).trim().parse().ok(),
    }
}

/// A forwarded entry's address: a plain address, or with a port (1 to 5
/// digits, at most 65535) after `a.b.c.d:` or `[v6]:`, or `[v6]` alone.
fn entry_address(entry: &str) -> Option<IpAddr> {
    // HTTP's whitespace only (a no-break space is no space).
    let e = entry.trim_matches(|c| c == ' ' || c == '\t');
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = match e.rfind(']') {
        // Bracketed: what follows `]` is empty or `:port`.
        Some(close) if e.starts_with('[') => {
            let after = &e[close + 1..];
            let port = if after.is_empty() {
                None
            } else {
                Some(after.strip_prefix(':')?)
            };
            let v6: Ipv6Addr = e[1..close].parse().ok()?;
            (IpAddr::V6(v6), port)
        }
        Some(_) => return None,
        None => {
            let colon = e.rfind(':')?;
            let v4: Ipv4Addr = e[..colon].parse().ok()?;
            (IpAddr::V4(v4), Some(&e[colon + 1..]))
        }
    };
    if let Some(p) = port {
        let digits = !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit());
        if !digits || p.parse::<u32>().ok()? > 65_535 {
            return None;
        }
    }
    Some(host.to_canonical())
}

/// Whether `a` and `b` share their first `prefix` bits, in `a`'s family:
/// an IPv4 `a` is compared with the IPv4 address a mapped `b`
/// (`::ffff:a.b.c.d`) stands for; an IPv6 `a` never with an IPv4 `b`.
fn same_prefix(a: IpAddr, b: IpAddr, prefix: u32) -> bool {
    let b = match (a, b) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.octets() {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, w, x, y, z] => {
                IpAddr::V4(Ipv4Addr::new(w, x, y, z))
            }
            _ => b,
        },
        _ => b,
    };
    let (x, y, bits) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    (0..prefix.min(bits)).all(|i| (x >> (bits - 1 - i)) & 1 == (y >> (bits - 1 - i)) & 1)
}

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data);
    let list = common::text(f.first().copied().unwrap_or_default());
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let parsed: Vec<Option<IpNet>> = items.iter().map(|i| IpNet::parse(i)).collect();

    for (item, net) in items.iter().zip(&parsed) {
        let Some(net) = net else { continue };
        let addr = item.split_once('/').map_or(*item, |(a, _)| a);
        let addr: IpAddr = addr
            .trim()
            .parse()
            .expect("IpNet::parse accepted a bad address");
        assert!(
            net.contains(addr),
            "{item:?} does not contain its own address"
        );
    }

    let vars = HashMap::from([("HTTP_TRUSTED_PROXIES".to_owned(), list.clone())]);
    let trusted_proxies: Vec<IpNet> = match ServeOptions::from_settings(&vars) {
        Ok(opts) => {
            let expected: Vec<IpNet> = parsed.iter().flatten().copied().collect();
            assert_eq!(
                expected.len(),
                items.len(),
                "from_settings accepted a bad item"
            );
            assert_eq!(opts.trusted_proxies, expected);
            opts.trusted_proxies
        }
        Err(e) => {
            assert_eq!(e.variable, "HTTP_TRUSTED_PROXIES");
            assert!(
                parsed.iter().any(Option::is_none),
                "from_settings refused good items"
            );
            parsed.iter().flatten().copied().collect()
        }
    };

    let mut headers = HeaderMap::new();
    for v in f.iter().skip(2) {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append("x-forwarded-for", v);
        }
    }
    assert_eq!(client_ip(&trusted_proxies, None, &headers), None);
    let Some(p) = f.get(1).and_then(|x| peer(x)) else {
        return;
    };
    let got = client_ip(&trusted_proxies, Some(p), &headers).expect("a peer gives an address");
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    let pc = p.to_canonical();
    assert_eq!(got, got.to_canonical(), "non-canonical answer");

    // The specification, computed independently.
    let expected = if !trusted(pc) {
        pc
    } else {
        // Every entry in order, `None` where it is not an address.
        let mut entries: Vec<Option<IpAddr>> = Vec::new();
        // Bytes past ASCII are not an address in their own entry.
        for v in headers.get_all("x-forwarded-for") {
            let s = String::from_utf8_lossy(v.as_bytes());
            entries.extend(s.split(',').map(entry_address));
        }
        let mut answer = pc;
        for e in entries.iter().rev() {
            match e {
                Some(ip) if trusted(*ip) => continue,
                Some(ip) => answer = *ip,
                None => answer = pc,
            }
            break;
        }
        answer
    };
    assert_eq!(
        got, expected,
        "peer {p}, headers {headers:?}, trusted {:?}",
        trusted_proxies
    );
    if got != pc {
        assert!(!trusted(got), "a trusted proxy was taken for the client");
    }

    // contains() against a bit-by-bit prefix comparison: the peer as the
    // network address, every prefix length of its family.
    let max = if pc.is_ipv4() { 32 } else { 128 };
    let prefix = u32::from(data.len() as u8) % (max + 1);
    let net = IpNet::parse(&format!("{pc}/{prefix}")).expect("a valid network");
    for other in [
        got,
        pc,
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        assert_eq!(
            net.contains(other),
            same_prefix(pc, other, prefix),
            "{pc}/{prefix} vs {other}"
        );
    }
});
