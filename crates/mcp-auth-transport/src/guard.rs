//! Host and Origin validation (DNS-rebinding and cross-site protection).
//!
//! ```
//! use axum::{Router, routing::get};
//! use mcp_auth_transport::{GuardLayer, HostRule, OriginRule};
//!
//! let guard = GuardLayer::new(
//!     HostRule::list(["localhost", "mcp.example.com"]),
//!     OriginRule::list(["https://app.example.com"]).unwrap(),
//! );
//! let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(guard);
//! # let _ = app;
//! ```

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::Response;
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, Request, StatusCode, Uri, header};
use tower_layer::Layer;
use tower_service::Service;

/// Which `Host` values are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// Any host (DNS-rebinding protection off). Choose it only behind a
    /// proxy that validates `Host` itself.
    Any,
    /// These hosts. An entry without a port accepts any port; `host:port`
    /// accepts only that port. Case-insensitive; IPv6 with or without brackets.
    List(Vec<HostEntry>),
}

/// One allowed host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    host: String,
    /// `None` = any port.
    port: Option<u16>,
}

/// Parses `host[:port]` strictly: a DNS name or IPv4 address of letters,
/// digits, `.`, `-` and `_`, or a bracketed IPv6 address, then optionally `:`
/// and a numeric port. No userinfo, path or anything else. Hosts come back
/// lowercase, IPv6 in brackets.
fn parse_authority(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    let port = |p: &str| -> Option<u16> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    if let Ok(ip) = s.parse::<std::net::Ipv6Addr>() {
        return Some((format!("[{ip}]"), None));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = inner.parse().ok()?;
        // An empty port (`[::1]:`) is no port (RFC 3986 3.2.3).
        let p = match after {
            "" | ":" => None,
            a => Some(port(a.strip_prefix(':')?)?),
        };
        return Some((format!("[{ip}]"), p));
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, "")) => (h, None),
        Some((h, p)) => (h, Some(port(p)?)),
        None => (s, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    valid.then(|| (host.to_ascii_lowercase(), p))
}

/// Whether a Host header and `:authority` name one entity: the same host
/// (case and a trailing dot aside) and port, a missing port being the
/// scheme's default (RFC 9113 §8.3.1 asks for the comparison after that
/// normalisation).
fn same_entity(
    host: &(String, Option<u16>),
    authority: Option<(String, Option<u16>)>,
    scheme: Option<&str>,
) -> bool {
    let Some(authority) = authority else {
        return false;
    };
    let default = match scheme {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let norm = |(h, p): &(String, Option<u16>)| (h.trim_end_matches('.').to_owned(), p.or(default));
    norm(host) == norm(&authority)
}

impl HostRule {
    /// A list rule; entries that are not `host[:port]` are dropped (use
    /// [`HostRule::parse_list`] to be told).
    pub fn list<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::List(
            hosts
                .into_iter()
                .filter_map(|h| parse_authority(h.as_ref()))
                .map(|(host, port)| HostEntry { host, port })
                .collect(),
        )
    }

    /// The hosts a list allows (lowercase, IPv6 in brackets); none for
    /// [`HostRule::Any`].
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        let entries: &[HostEntry] = match self {
            HostRule::Any => &[],
            HostRule::List(entries) => entries,
        };
        entries.iter().map(|e| e.host.as_str())
    }

    /// A list rule, refusing any entry that is not `host[:port]`.
    pub fn parse_list<I, S>(hosts: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for h in hosts {
            let (host, port) = parse_authority(h.as_ref())
                .ok_or_else(|| format!("{:?} is not a host or host:port", h.as_ref()))?;
            out.push(HostEntry { host, port });
        }
        Ok(Self::List(out))
    }

    /// Whether `authority` (`host[:port]`, as in a `Host` header) is allowed.
    /// Malformed authorities never are.
    pub fn allows(&self, authority: &str) -> bool {
        parse_authority(authority).is_some_and(|a| self.allows_parsed(&a))
    }

    /// [`allows`](Self::allows) for an authority parsed already.
    fn allows_parsed(&self, (host, port): &(String, Option<u16>)) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list
                .iter()
                .any(|e| e.host == *host && (e.port.is_none() || e.port == *port)),
        }
    }
}

/// Which `Origin` values are accepted. Requests without `Origin` (non-browser
/// clients) always pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// Any origin.
    Any,
    /// These origins: `scheme://host[:port]`, with `:*` for any port and
    /// `null` for the opaque origin. A missing port means the scheme's default.
    List(Vec<OriginEntry>),
}

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginEntry {
    scheme: String,
    host: String,
    /// `None` = any port.
    port: Option<u16>,
}

/// An origin entry that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an origin like https://app.example.com or http://localhost:*")]
pub struct BadOrigin(pub String);

impl OriginEntry {
    /// Parses `scheme://host[:port|:*]` (http or https) or `null`.
    pub fn parse(s: &str) -> Result<Self, BadOrigin> {
        let bad = || BadOrigin(s.to_owned());
        let t = s.trim();
        if t.eq_ignore_ascii_case("null") {
            return Ok(Self {
                scheme: "null".into(),
                host: String::new(),
                port: Some(0),
            });
        }
        let (t, any_port) = match t.strip_suffix(":*") {
            Some(rest) => (rest, true),
            None => (t, false),
        };
        let (scheme, rest) = t.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // An origin is serialized without an empty port (RFC 6454 6.2).
        if rest.ends_with(':') {
            return Err(bad());
        }
        let (host, port) = parse_authority(rest).ok_or_else(bad)?;
        if any_port && port.is_some() {
            return Err(bad());
        }
        Ok(Self {
            scheme,
            host,
            port: if any_port {
                None
            } else {
                Some(port.unwrap_or(default))
            },
        })
    }

    /// Whether this is the opaque origin, `null`.
    #[cfg_attr(not(feature = "mcp"), allow(dead_code))]
    pub(crate) fn is_null(&self) -> bool {
        self.scheme == "null"
    }

    fn matches(&self, other: &OriginEntry) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && (self.port.is_none() || self.port == other.port)
    }
}

impl OriginRule {
    /// A list rule; `*` anywhere makes it [`OriginRule::Any`].
    pub fn list<I, S>(origins: I) -> Result<Self, BadOrigin>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for o in origins {
            if o.as_ref().trim() == "*" {
                return Ok(Self::Any);
            }
            out.push(OriginEntry::parse(o.as_ref())?);
        }
        Ok(Self::List(out))
    }

    /// Whether the `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => match OriginEntry::parse(origin) {
                // A request's Origin never has a path or a wildcard port.
                Ok(o) if o.port.is_some() && !origin.trim_end().ends_with('/') => {
                    list.iter().any(|e| e.matches(&o))
                }
                _ => false,
            },
        }
    }
}

/// Rejects requests whose `Host` or `Origin` is not allowed with 403.
#[derive(Clone)]
pub struct GuardLayer {
    rules: Arc<(HostRule, OriginRule)>,
    refusals: Option<RefusalHook>,
    /// Paths any `Origin` may call (public documents and endpoints that
    /// use no ambient credential); the Host check still applies.
    open: Arc<[String]>,
    /// Paths answered whatever the `Host` (health probes), and the rules
    /// they are checked by (any host, the same origins).
    any_host: Arc<[String]>,
    any_host_rules: Arc<(HostRule, OriginRule)>,
}

/// What a guard's refusal is also handed to (the app's audit log): the
/// request's parts and the refusal, which it gives back.
pub(crate) type RefusalHook =
    Arc<dyn Fn(http::request::Parts, Response) -> BoxFuture<'static, Response> + Send + Sync>;

impl GuardLayer {
    /// A guard with these rules.
    pub fn new(hosts: HostRule, origins: OriginRule) -> Self {
        Self {
            any_host_rules: Arc::new((HostRule::Any, origins.clone())),
            rules: Arc::new((hosts, origins)),
            refusals: None,
            open: Arc::from([]),
            any_host: Arc::from([]),
        }
    }

    /// Answers exactly these paths whatever the `Host` (the `Origin` check
    /// still applies): health probes, which an orchestrator sends to the
    /// address it knows (Kubernetes: `Host: <pod IP>:<port>`), not to a
    /// name the server allows. Only for paths whose answer is the same for
    /// everyone and says nothing worth a DNS-rebinding attack.
    pub fn open_to_any_host(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.any_host = paths.into_iter().collect();
        self
    }

    /// Accepts any `Origin` on exactly these paths (the Host check still
    /// applies): for public documents and endpoints a browser application
    /// on another origin must reach and that act on no ambient credential,
    /// such as OAuth metadata and token endpoints. Never the MCP endpoint.
    pub fn open_to_any_origin(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.open = paths.into_iter().collect();
        self
    }

    /// Hands each refusal to `hook` too (the audit log: a refused Host or
    /// Origin is a DNS-rebinding or cross-site attempt worth a record).
    #[cfg(feature = "mcp")]
    pub(crate) fn refusals_to(mut self, hook: Option<RefusalHook>) -> Self {
        self.refusals = hook;
        self
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            rules: self.rules.clone(),
            refusals: self.refusals.clone(),
            open: self.open.clone(),
            any_host: self.any_host.clone(),
            any_host_rules: self.any_host_rules.clone(),
        }
    }
}

/// The service produced by [`GuardLayer`].
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    rules: Arc<(HostRule, OriginRule)>,
    refusals: Option<RefusalHook>,
    open: Arc<[String]>,
    any_host: Arc<[String]>,
    any_host_rules: Arc<(HostRule, OriginRule)>,
}

/// Why a request was refused by the guard, if it was.
///
/// The authority is the request target's when it has one (absolute-form,
/// HTTP/2 `:authority`), else the single `Host` header; several `Host`
/// headers, one that is not an authority, or none on HTTP/1.1 are a bad
/// request (RFC 9112 §3.2), whether or not hosts are checked, and so is an
/// HTTP/2 `Host` naming another authority than `:authority`.
fn check(
    rules: &(HostRule, OriginRule),
    version: http::Version,
    uri: &Uri,
    headers: &HeaderMap,
    any_origin: bool,
) -> Option<(StatusCode, &'static str)> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Some((StatusCode::BAD_REQUEST, "more than one Host header"));
    }
    let authority = match (uri.authority(), first) {
        // The target's authority decides, but the Host header must still be
        // one (RFC 9112 §3.2: an HTTP/1.1 request without one, or with an
        // invalid one, is a bad request, absolute-form or not) and, on
        // HTTP/2, the same as `:authority` (RFC 9113 §8.3.1).
        (Some(a), Some(h)) => {
            let Some(host) = h.to_str().ok().and_then(parse_authority) else {
                return Some((StatusCode::BAD_REQUEST, "malformed Host header"));
            };
            if version == http::Version::HTTP_2
                && !same_entity(&host, parse_authority(a.as_str()), uri.scheme_str())
            {
                return Some((StatusCode::BAD_REQUEST, "Host and :authority differ"));
            }
            Some(a.as_str())
        }
        (Some(_), None) if version == http::Version::HTTP_11 => {
            return Some((StatusCode::BAD_REQUEST, "missing Host header"));
        }
        (Some(a), None) => Some(a.as_str()),
        (None, Some(h)) => match h.to_str() {
            Ok(h) => Some(h),
            Err(_) => return Some((StatusCode::BAD_REQUEST, "malformed Host header")),
        },
        (None, None) => None,
    };
    match authority {
        None if rules.0 != HostRule::Any || version == http::Version::HTTP_11 => {
            return Some((StatusCode::BAD_REQUEST, "missing Host header"));
        }
        Some(h) => match parse_authority(h) {
            None => return Some((StatusCode::BAD_REQUEST, "malformed Host header")),
            Some(a) if !rules.0.allows_parsed(&a) => {
                return Some((StatusCode::FORBIDDEN, "Host not allowed"));
            }
            Some(_) => {}
        },
        None => {}
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if any_origin {
        return None;
    }
    if let Some(origin) = origins.next() {
        let ok = origins.next().is_none() && origin.to_str().is_ok_and(|o| rules.1.allows(o));
        if !ok {
            return Some((StatusCode::FORBIDDEN, "Origin not allowed"));
        }
    }
    None
}

impl<S, B> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<B>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let any_origin = self.open.iter().any(|p| p == path);
        let rules = match self.any_host.iter().any(|p| p == path) {
            true => &self.any_host_rules,
            false => &self.rules,
        };
        match check(rules, req.version(), req.uri(), req.headers(), any_origin) {
            None => self.inner.call(req).boxed(),
            Some((status, why)) => {
                tracing::debug!(
                    status = status.as_u16(),
                    why,
                    "request refused by Host/Origin guard"
                );
                let code = match status {
                    StatusCode::BAD_REQUEST => "invalid_request",
                    _ => "forbidden",
                };
                let resp = crate::refusal::refuse(status, code, why);
                match self.refusals.clone() {
                    Some(hook) => {
                        let (parts, _) = req.into_parts();
                        async move { Ok(hook(parts, resp).await) }.boxed()
                    }
                    None => async move { Ok(resp) }.boxed(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let r = HostRule::list(["localhost", "127.0.0.1", "::1", "Example.com:8443"]);
        for ok in [
            "localhost",
            "localhost:8001",
            "LOCALHOST:1",
            "127.0.0.1:9",
            "[::1]:8001",
            "[::1]",
            // An empty port is no port (RFC 3986 3.2.3).
            "localhost:",
            "[::1]:",
            "example.com:8443",
        ] {
            assert!(r.allows(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "localhost.",
            "example.com",
            "example.com:443",
            "127.0.0.2",
            "[::2]:80",
            "",
            "[::1]evil.com",
            "localhost:80@evil.com",
            "user@localhost",
            "localhost:junk",
            "localhost:junk/x",
            "example.com:",
            "localhost:99999",
            "localhost/x",
            "[localhost]",
        ] {
            assert!(!r.allows(bad), "{bad}");
        }
        assert!(HostRule::Any.allows("anything"));
        assert!(!HostRule::Any.allows("a@b"));
        assert!(HostRule::parse_list(["ok", "bad host"]).is_err());
    }

    #[test]
    fn origins() {
        let r =
            OriginRule::list(["https://app.example.com", "http://localhost:*", "null"]).unwrap();
        for ok in [
            "https://app.example.com",
            "https://app.example.com:443",
            "HTTPS://APP.example.com",
            "http://localhost:6274",
            "http://localhost",
            "null",
        ] {
            assert!(r.allows(ok), "{ok}");
        }
        for bad in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil.com",
            "http://localhost.evil.com:80",
            "garbage",
            "https://app.example.com/path",
            "https://app.example.com/",
            "http://[::1]evil",
            "http://user@localhost:1",
            "http://localhost:*",
            "",
        ] {
            assert!(!r.allows(bad), "{bad}");
        }
        assert_eq!(
            OriginRule::list(["https://a", "*"]).unwrap(),
            OriginRule::Any
        );
        assert!(OriginRule::list(["app.example.com"]).is_err());
        assert!(OriginRule::list(["ftp://x"]).is_err());
        assert!(OriginRule::list(["http://[::1]evil"]).is_err());
        assert!(OriginRule::list(["http://localhost::*"]).is_err());
        assert!(
            !OriginRule::list(["http://localhost"])
                .unwrap()
                .allows("http://localhost:")
        );
        assert!(
            OriginRule::list(["http://[::1]:*"])
                .unwrap()
                .allows("http://[::1]:3000")
        );
    }

    #[test]
    fn absolute_form_targets_are_checked_over_the_host_header() {
        let rules = (HostRule::list(["localhost"]), OriginRule::Any);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "localhost".parse().unwrap());
        let uri: Uri = "http://evil.example/mcp".parse().unwrap();
        assert_eq!(
            check(&rules, http::Version::HTTP_11, &uri, &h, false).map(|c| c.0),
            Some(StatusCode::FORBIDDEN)
        );
        let uri: Uri = "http://localhost:8001/mcp".parse().unwrap();
        assert_eq!(check(&rules, http::Version::HTTP_11, &uri, &h, false), None);
    }

    #[test]
    fn check_refuses_duplicates_and_missing_host() {
        let rules = (
            HostRule::list(["localhost"]),
            OriginRule::list(["http://localhost:*"]).unwrap(),
        );
        let uri: Uri = "/mcp".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(
            check(&rules, http::Version::HTTP_11, &uri, &h, false).map(|c| c.0),
            Some(StatusCode::BAD_REQUEST)
        );
        h.insert(header::HOST, "localhost:1".parse().unwrap());
        assert_eq!(check(&rules, http::Version::HTTP_11, &uri, &h, false), None);
        h.append(header::ORIGIN, "http://localhost:3".parse().unwrap());
        assert_eq!(check(&rules, http::Version::HTTP_11, &uri, &h, false), None);
        h.append(header::ORIGIN, "http://localhost:3".parse().unwrap());
        assert_eq!(
            check(&rules, http::Version::HTTP_11, &uri, &h, false).map(|c| c.0),
            Some(StatusCode::FORBIDDEN)
        );
    }

    /// A `Host` that is not an authority is a bad request (400), not a
    /// host that is not allowed (403), and HTTP/1.1 needs one even when
    /// hosts are not checked (RFC 9112 §3.2).
    #[test]
    fn a_malformed_or_missing_host_is_a_bad_request_whatever_the_rule() {
        let uri: Uri = "/mcp".parse().unwrap();
        for rule in [HostRule::list(["localhost"]), HostRule::Any] {
            let rules = (rule, OriginRule::Any);
            // An empty port is no port.
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "localhost:".parse().unwrap());
            assert_eq!(check(&rules, http::Version::HTTP_11, &uri, &h, false), None);
            for bad in ["user@localhost", "local host", "localhost:99999", "[::1"] {
                let mut h = HeaderMap::new();
                h.insert(header::HOST, bad.parse().unwrap());
                assert_eq!(
                    check(&rules, http::Version::HTTP_11, &uri, &h, false),
                    Some((StatusCode::BAD_REQUEST, "malformed Host header")),
                    "{bad} {:?}",
                    rules.0
                );
            }
            let none = HeaderMap::new();
            assert_eq!(
                check(&rules, http::Version::HTTP_11, &uri, &none, false).map(|c| c.0),
                Some(StatusCode::BAD_REQUEST)
            );
        }
        // HTTP/1.0 may come without one where hosts are not checked.
        let any = (HostRule::Any, OriginRule::Any);
        assert_eq!(
            check(&any, http::Version::HTTP_10, &uri, &HeaderMap::new(), false),
            None
        );
    }

    /// An absolute-form target does not excuse the Host header (an attack
    /// pass: without one, or with `user@evil`, the request was served), and
    /// on HTTP/2 a Host naming another authority than `:authority` is a bad
    /// request (RFC 9112 §3.2, RFC 9113 §8.3.1).
    #[test]
    fn the_host_header_is_checked_beside_the_targets_authority() {
        let uri: Uri = "http://localhost:8001/mcp".parse().unwrap();
        for rule in [HostRule::list(["localhost"]), HostRule::Any] {
            let rules = (rule, OriginRule::Any);
            assert_eq!(
                check(
                    &rules,
                    http::Version::HTTP_11,
                    &uri,
                    &HeaderMap::new(),
                    false
                ),
                Some((StatusCode::BAD_REQUEST, "missing Host header"))
            );
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "user@evil".parse().unwrap());
            assert_eq!(
                check(&rules, http::Version::HTTP_11, &uri, &h, false),
                Some((StatusCode::BAD_REQUEST, "malformed Host header"))
            );
            // HTTP/2 without Host (`:authority` only), or with the same one.
            assert_eq!(
                check(
                    &rules,
                    http::Version::HTTP_2,
                    &uri,
                    &HeaderMap::new(),
                    false
                ),
                None
            );
            h.insert(header::HOST, "LOCALHOST:8001".parse().unwrap());
            assert_eq!(check(&rules, http::Version::HTTP_2, &uri, &h, false), None);
            // The scheme's default port and a trailing dot name the same
            // entity (a review: `localhost` and `localhost:443` differed).
            let https: Uri = "https://localhost/mcp".parse().unwrap();
            for same in ["localhost:443", "localhost.", "localhost"] {
                h.insert(header::HOST, same.parse().unwrap());
                assert_eq!(
                    check(&rules, http::Version::HTTP_2, &https, &h, false),
                    None,
                    "{same}"
                );
            }
            h.insert(header::HOST, "localhost:80".parse().unwrap());
            assert_eq!(
                check(&rules, http::Version::HTTP_2, &https, &h, false).map(|c| c.0),
                Some(StatusCode::BAD_REQUEST)
            );
            h.insert(header::HOST, "evil.example".parse().unwrap());
            assert_eq!(
                check(&rules, http::Version::HTTP_2, &uri, &h, false),
                Some((StatusCode::BAD_REQUEST, "Host and :authority differ"))
            );
            // HTTP/1.1: the target's authority decides (RFC 9112 §3.2.2).
            assert_eq!(check(&rules, http::Version::HTTP_11, &uri, &h, false), None);
        }
    }
}
