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
        if prefix > max {
            return None;
        }
        // An IPv4 network written IPv4-mapped (`::ffff:10.0.0.0/104`) is
        // that IPv4 network: peers are compared in their IPv4 form.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Some(Self {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Some(Self { addr, prefix })
    }

    /// Whether `ip` is in the network. An IPv4 network contains the
    /// IPv4-mapped form (`::ffff:a.b.c.d`) of its addresses; an IPv6
    /// network contains no IPv4 address (so `::/0` does not trust every
    /// IPv4 client).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
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
    let nets = parse_list(l, "HTTP_TRUSTED_PROXIES")
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
        .collect::<Result<Vec<_>, _>>()?;
    if nets.iter().any(|n| n.prefix == 0) {
        tracing::warn!(
            variable = "HTTP_TRUSTED_PROXIES",
            "a trusted network covers every address of its family (0.0.0.0/0, ::/0, ::ffff:0:0/96): any such client can name its own address in a forwarded header"
        );
    }
    Ok(nets)
}

/// The header trusted proxies write the client's address in
/// (`HTTP_FORWARDED_HEADER`). A proxy passes on the header it does not
/// write as the client sent it, so naming the one it writes keeps a client
/// from choosing its own address in the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` when the request has one, else RFC 7239
    /// `Forwarded` (`auto`, the default). Behind a proxy that writes only
    /// `Forwarded`, choose [`Forwarded`](Self::Forwarded), or make the
    /// proxy drop a client's `X-Forwarded-For`.
    #[default]
    Auto,
    /// `X-Forwarded-For` only (`x-forwarded-for`).
    XForwardedFor,
    /// RFC 7239 `Forwarded` only (`forwarded`).
    Forwarded,
}

/// Reads `HTTP_FORWARDED_HEADER`: `auto` (default), `x-forwarded-for` or
/// `forwarded`, in any case.
pub(crate) fn forwarded_header(l: &dyn Lookup) -> Result<ForwardedHeader, ConfigError> {
    match l.get("HTTP_FORWARDED_HEADER") {
        None => Ok(ForwardedHeader::Auto),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(ForwardedHeader::Auto),
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err(ConfigError::new(
                "HTTP_FORWARDED_HEADER",
                format!("{v:?} is not one of auto, x-forwarded-for, forwarded"),
            )),
        },
    }
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

/// An address as its `Display` writes it, in a buffer of its own: IPv4
/// without the formatting machinery, nothing allocated (the audit log
/// writes an address per request).
#[cfg(feature = "mcp")]
pub(crate) struct IpText {
    // The longest: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
    buf: [u8; 45],
    len: usize,
}

#[cfg(feature = "mcp")]
impl Default for IpText {
    fn default() -> Self {
        Self {
            buf: [0; 45],
            len: 0,
        }
    }
}

#[cfg(feature = "mcp")]
impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(feature = "mcp")]
impl IpText {
    /// `ip` as its `Display` writes it.
    pub(crate) fn write(&mut self, ip: IpAddr) -> &str {
        self.len = 0;
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    if octet >= 100 {
                        self.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.push(b'0' + octet / 10 % 10);
                    }
                    self.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                if std::fmt::Write::write_fmt(self, format_args!("{v6}")).is_err() {
                    // (Cannot happen: no address is longer.)
                    self.len = 0;
                }
            }
        }
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
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
///
/// The RFC 7239 `Forwarded` header is read by the same rule: the `for=`
/// of each element, from the right (`for="[2001:db8::1]:4711"`, quoted or
/// not; an element without `for`, an obfuscated `_name` or `unknown` is
/// not an address). Proxies that write only `Forwarded` then key each
/// client by its address rather than every client by theirs.
///
/// A request carrying both headers is read from `X-Forwarded-For`, which
/// most proxies write; a disagreement is logged once, as a warning. A
/// proxy passes on the header it does not write as the client sent it, so
/// behind one that writes only `Forwarded` a client could name its own
/// address in `X-Forwarded-For` (a new one for each guess past the
/// failed-login limit, or someone else's to lock them out): name the
/// header with [`client_ip_by`] (`HTTP_FORWARDED_HEADER=forwarded`).
/// (Choosing by agreement instead would put every client behind a chain of
/// proxies that write one header each under the last proxy's address.)
pub fn client_ip(
    trusted_proxies: &[IpNet],
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
) -> Option<IpAddr> {
    client_ip_by(trusted_proxies, peer, headers, ForwardedHeader::Auto)
}

/// [`client_ip`], reading only the header `which` names
/// ([`ForwardedHeader::Auto`]: as `client_ip`).
pub fn client_ip_by(
    trusted_proxies: &[IpNet],
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
    which: ForwardedHeader,
) -> Option<IpAddr> {
    // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
    let peer = peer?.to_canonical();
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(peer) {
        return Some(peer);
    }
    // The client one header names (the peer when it names none), or `None`
    // without the header.
    let named = |name: http::HeaderName, split: fn(&str) -> Vec<Option<IpAddr>>| {
        let mut entries: Vec<Option<IpAddr>> = Vec::new();
        for v in headers.get_all(name) {
            // Bytes past ASCII are a client's (proxies append entries of
            // their own to what the client sent, in the same value): read
            // them as not an address in their entry, not as a value that
            // is none at all, which would give the proxy's address.
            entries.extend(split(&String::from_utf8_lossy(v.as_bytes())));
        }
        if entries.is_empty() {
            return None;
        }
        for entry in entries.into_iter().rev() {
            match entry {
                Some(ip) if trusted(ip) => {}
                Some(ip) => return Some(ip),
                None => return Some(peer),
            }
        }
        Some(peer)
    };
    let xff = match which {
        ForwardedHeader::Forwarded => None,
        _ => named(crate::names::X_FORWARDED_FOR, |v| {
            v.split(',').map(forwarded_address).collect()
        }),
    };
    let fwd = match which {
        ForwardedHeader::XForwardedFor => None,
        _ => named(http::header::FORWARDED, forwarded_elements),
    };
    match (xff, fwd) {
        (Some(a), Some(b)) => {
            if a != b {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        "a request from a trusted proxy names one client in X-Forwarded-For and \
                         another in Forwarded; X-Forwarded-For is used. If the proxy writes only \
                         Forwarded, set HTTP_FORWARDED_HEADER=forwarded"
                    );
                }
            }
            Some(a)
        }
        (Some(a), None) | (None, Some(a)) => Some(a),
        (None, None) => Some(peer),
    }
}

/// The `for=` address of each element of an RFC 7239 `Forwarded` value,
/// in order (`None` for an element without one, or whose node is not an
/// address: `unknown`, an obfuscated `_name`, anything malformed).
/// Commas and semicolons inside quoted strings do not split, unless the
/// value leaves a quote open: then every comma and semicolon splits. The
/// proxies' elements, appended on the right, never leave one open, so an
/// open quote is a client's, and the quotes it makes unbalanced must not
/// join the elements the proxies appended to the client's (`for="x`
/// followed by a proxy's `, for="[2001:db8::7]:80"`).
fn forwarded_elements(value: &str) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    let mut node: Option<Option<IpAddr>> = None;
    let mut pair = String::new();
    let mut quoted = false;
    let mut escaped = false;
    // Ends the pair in `pair`; `for=` sets the element's node (a second
    // `for` in one element makes it no address).
    let end_pair = |pair: &mut String, node: &mut Option<Option<IpAddr>>| {
        if let Some((name, v)) = pair.split_once('=')
            && name.trim().eq_ignore_ascii_case("for")
        {
            let found = unquote(ascii_trim(v)).and_then(|v| forwarded_address(&v));
            *node = match node {
                None => Some(found),
                Some(_) => Some(None),
            };
        }
        pair.clear();
    };
    for c in value.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            pair.push(c);
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                pair.push(c);
            }
            ';' => end_pair(&mut pair, &mut node),
            ',' => {
                end_pair(&mut pair, &mut node);
                out.push(node.take().flatten());
            }
            _ => pair.push(c),
        }
    }
    if quoted {
        // An unterminated quote: split on every comma (a quoted value
        // split this way is not an address).
        return value
            .split(',')
            .map(|element| {
                let mut node = None;
                for pair in element.split(';') {
                    end_pair(&mut pair.to_owned(), &mut node);
                }
                node.flatten()
            })
            .collect();
    }
    end_pair(&mut pair, &mut node);
    out.push(node.take().flatten());
    out
}

/// A `Forwarded` parameter value: a token as it is, a quoted string
/// without its quotes and escapes; `None` when the quoting is broken.
/// `s` without the spaces and tabs around it (HTTP's whitespace; not
/// Unicode's, which a client's bytes past ASCII could make).
fn ascii_trim(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains(['"', '\\'])).then(|| v.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// One `X-Forwarded-For` entry as an address (canonical): an IP address,
/// `a.b.c.d:port`, `[v6]` or `[v6]:port`, the port being 1 to 5 digits up
/// to 65535. Anything else (`unknown`, a zone id, an empty entry) is not.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = ascii_trim(entry);
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

    /// Behind a proxy that appends to what the client sent, bytes past
    /// ASCII in the client's part do not make the client count as its
    /// proxy: the entries the proxy wrote are read from the right as ever.
    #[test]
    fn a_clients_bytes_past_ascii_do_not_make_it_its_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        for (name, value) in [
            ("x-forwarded-for", &b"\xff, 198.51.100.7"[..]),
            ("forwarded", &b"for=\"\xff\", for=198.51.100.7"[..]),
        ] {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            assert_eq!(
                client_ip(&trusted, Some(proxy), &h),
                Some("198.51.100.7".parse().unwrap()),
                "{name}"
            );
        }
        // Unicode whitespace is no whitespace here: bytes past ASCII before
        // an address do not make it one.
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"198.51.100.7, \xc2\xa0203.0.113.5").unwrap(),
        );
        assert_eq!(client_ip(&trusted, Some(proxy), &h), Some(proxy));
        // What the proxy wrote itself is not an address: the proxy.
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"198.51.100.7, \xff").unwrap(),
        );
        assert_eq!(client_ip(&trusted, Some(proxy), &h), Some(proxy));
    }

    /// A trusted network written IPv4-mapped is the IPv4 network (peers
    /// are compared in their IPv4 form): it matches them.
    #[test]
    fn ipv4_mapped_networks_are_their_ipv4_networks() {
        let net = IpNet::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(net, IpNet::parse("10.0.0.0/8").unwrap());
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.1.2.3".parse().unwrap()));
        let one = IpNet::parse("::ffff:192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        // Either form of an address is that address (a network contains
        // its own address however it was written).
        assert!(one.contains("::ffff:192.0.2.7".parse().unwrap()));
        let v4 = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(v4.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!v4.contains("::192.0.2.9".parse().unwrap()));
        // An IPv6 network contains no IPv4 client, however wide.
        let wide = IpNet::parse("::ffff:0.0.0.0/80").unwrap();
        assert!(!wide.contains("10.1.2.3".parse().unwrap()));
        assert!(
            !IpNet::parse("::/0")
                .unwrap()
                .contains("10.1.2.3".parse().unwrap())
        );
        assert!(
            !IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(IpNet::parse("::1/129").is_none());
    }

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
                assert_eq!(IpText::default().write(ip), ip.to_string());
            }
        }
        for v6 in [
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
            "fe80::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "1:2:3:4:5:6:7:8",
        ] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(IpText::default().write(ip), ip.to_string());
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

    /// RFC 7239 `Forwarded`, read when a trusted proxy sent no
    /// `X-Forwarded-For`, by the same rule.
    #[test]
    fn the_forwarded_header_is_read_when_there_is_no_x_forwarded_for() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let with = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(http::header::FORWARDED, v.parse().unwrap());
            }
            client_ip(&trusted, Some(proxy), &h)
        };
        for (values, want) in [
            (
                &["for=192.0.2.60;proto=http;by=203.0.113.43"][..],
                ip("192.0.2.60"),
            ),
            (
                &["For=\"[2001:db8:cafe::17]:4711\""],
                ip("2001:db8:cafe::17"),
            ),
            (&["for=\"192.0.2.60:8080\";proto=https"], ip("192.0.2.60")),
            // From the right: the proxies' own, then the client.
            (&["for=192.0.2.60, for=10.0.0.5"], ip("192.0.2.60")),
            (
                &["for=192.0.2.60", "for=10.0.0.5;by=10.0.0.9"],
                ip("192.0.2.60"),
            ),
            // What the client wrote left of its own address is never read.
            (
                &["for=\"garbage,;\\\"\", for=198.51.100.1"],
                ip("198.51.100.1"),
            ),
            (
                &["for=1.1.1.1;for=2.2.2.2, for=198.51.100.1"],
                ip("198.51.100.1"),
            ),
            // Not an address where the proxies write: the peer.
            (&["for=192.0.2.60, for=unknown"], Some(proxy)),
            (&["for=192.0.2.60, for=_hidden"], Some(proxy)),
            (&["for=192.0.2.60, proto=https"], Some(proxy)),
            (&["for=192.0.2.60, for=\"[::1]"], Some(proxy)),
            (&["for=192.0.2.60, for=\"1.2.3.4"], Some(proxy)),
            (&["for=192.0.2.60;for=198.51.100.1"], Some(proxy)),
            // A client's quote left open does not swallow what the proxy
            // appends to the same value.
            (&["for=\"x, for=198.51.100.7"], ip("198.51.100.7")),
            (&["for=\"x, for=\"1.2.3.4\""], ip("1.2.3.4")),
            (&["for=\"x\\, for=\"1.2.3.4\""], ip("1.2.3.4")),
            (
                &["for=\"[::1]\", for=\"a,b, for=\"[2001:db8::7]:80\";proto=https"],
                ip("2001:db8::7"),
            ),
            (&["for=192.0.2.1, for=\"x, for=10.0.0.5"], Some(proxy)),
            (
                &["for=192.0.2.1, for=\"x, for=10.0.0.5, for=192.0.2.9"],
                ip("192.0.2.9"),
            ),
            (&["for=192.0.2.1, for=\"x, for=\"y"], Some(proxy)),
        ] {
            assert_eq!(with(values), want, "{values:?}");
        }
        // Both headers: X-Forwarded-For is what is read.
        let mut h = http::HeaderMap::new();
        h.insert(http::header::FORWARDED, "for=192.0.2.60".parse().unwrap());
        h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(client_ip(&trusted, Some(proxy), &h), ip("198.51.100.7"));
        h.insert("x-forwarded-for", "192.0.2.60".parse().unwrap());
        assert_eq!(client_ip(&trusted, Some(proxy), &h), ip("192.0.2.60"));
        // Naming the header the proxies write: only that one is read.
        assert_eq!(
            client_ip_by(&trusted, Some(proxy), &h, ForwardedHeader::Forwarded),
            ip("192.0.2.60")
        );
        h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(
            client_ip_by(&trusted, Some(proxy), &h, ForwardedHeader::Forwarded),
            ip("192.0.2.60"),
            "a client's own X-Forwarded-For"
        );
        assert_eq!(
            client_ip_by(&trusted, Some(proxy), &h, ForwardedHeader::XForwardedFor),
            ip("198.51.100.7")
        );
        h.remove("x-forwarded-for");
        assert_eq!(
            client_ip_by(&trusted, Some(proxy), &h, ForwardedHeader::XForwardedFor),
            Some(proxy),
            "a client's own Forwarded"
        );
        // From a peer that is not a proxy, neither is believed.
        let direct: IpAddr = "3.3.3.3".parse().unwrap();
        assert_eq!(client_ip(&trusted, Some(direct), &h), Some(direct));
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
