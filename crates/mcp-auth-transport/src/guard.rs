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

use axum::response::{IntoResponse, Response};
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
    List(Vec<String>),
}

impl HostRule {
    /// A list rule.
    pub fn list<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::List(
            hosts
                .into_iter()
                .map(|h| normalize_host(&h.into()))
                .collect(),
        )
    }

    /// Whether `authority` (`host[:port]`) is allowed.
    pub fn allows(&self, authority: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => {
                let authority = normalize_host(authority);
                let (host, _) = split_host_port(&authority);
                list.iter().any(|entry| {
                    let (eh, ep) = split_host_port(entry);
                    match ep {
                        Some(_) => *entry == authority,
                        None => eh == host,
                    }
                })
            }
        }
    }
}

fn normalize_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    // Bare IPv6 addresses get brackets so a port can be told apart.
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{h}]")
    } else {
        h
    }
}

/// Splits `host[:port]`, bracket-aware.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &s[..end + 2];
            let port = rest[end + 1..].strip_prefix(':');
            return (host, port);
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
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
    /// Parses `scheme://host[:port|:*]` or `null`.
    pub fn parse(s: &str) -> Result<Self, BadOrigin> {
        let bad = || BadOrigin(s.to_owned());
        let t = s.trim().trim_end_matches('/').to_ascii_lowercase();
        if t == "null" {
            return Ok(Self {
                scheme: "null".into(),
                host: String::new(),
                port: Some(0),
            });
        }
        let (scheme, rest) = t.split_once("://").ok_or_else(bad)?;
        if scheme.is_empty() || rest.is_empty() || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = split_host_port(rest);
        let port = match port {
            Some("*") => None,
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None => Some(default_port(scheme).ok_or_else(bad)?),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            host: normalize_host(host),
            port,
        })
    }

    fn matches(&self, other: &OriginEntry) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && (self.port.is_none() || self.port == other.port)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
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
                Ok(o) if o.port.is_some() => list.iter().any(|e| e.matches(&o)),
                _ => false,
            },
        }
    }
}

/// Rejects requests whose `Host` or `Origin` is not allowed with 403.
#[derive(Clone)]
pub struct GuardLayer {
    rules: Arc<(HostRule, OriginRule)>,
}

impl GuardLayer {
    /// A guard with these rules.
    pub fn new(hosts: HostRule, origins: OriginRule) -> Self {
        Self {
            rules: Arc::new((hosts, origins)),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service produced by [`GuardLayer`].
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    rules: Arc<(HostRule, OriginRule)>,
}

/// Why a request was refused by the guard, if it was.
fn check(
    rules: &(HostRule, OriginRule),
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<(StatusCode, &'static str)> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
    match host {
        None if rules.0 != HostRule::Any => {
            return Some((StatusCode::BAD_REQUEST, "missing Host header"));
        }
        Some(h) if !rules.0.allows(&h) => {
            return Some((StatusCode::FORBIDDEN, "Host not allowed"));
        }
        _ => {}
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
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
        match check(&self.rules, req.uri(), req.headers()) {
            None => self.inner.call(req).boxed(),
            Some((status, why)) => {
                tracing::debug!(
                    status = status.as_u16(),
                    why,
                    "request refused by Host/Origin guard"
                );
                let body = serde_json::json!({ "error": "forbidden", "error_description": why });
                let resp = (status, axum::Json(body)).into_response();
                async move { Ok(resp) }.boxed()
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
            "example.com:8443",
        ] {
            assert!(r.allows(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "example.com",
            "example.com:443",
            "127.0.0.2",
            "[::2]:80",
            "",
        ] {
            assert!(!r.allows(bad), "{bad}");
        }
        assert!(HostRule::Any.allows("anything"));
    }

    #[test]
    fn origins() {
        let r =
            OriginRule::list(["https://app.example.com", "http://localhost:*", "null"]).unwrap();
        for ok in [
            "https://app.example.com",
            "https://app.example.com:443",
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
            check(&rules, &uri, &h).map(|c| c.0),
            Some(StatusCode::BAD_REQUEST)
        );
        h.insert(header::HOST, "localhost:1".parse().unwrap());
        assert_eq!(check(&rules, &uri, &h), None);
        h.append(header::ORIGIN, "http://localhost:3".parse().unwrap());
        assert_eq!(check(&rules, &uri, &h), None);
        h.append(header::ORIGIN, "http://localhost:3".parse().unwrap());
        assert_eq!(
            check(&rules, &uri, &h).map(|c| c.0),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
