//! Rate limits: requests per principal (or address), and failed
//! authentication attempts per address, counted in the session store so
//! replicas share them.
//!
//! ```
//! use std::collections::HashMap;
//! use mcp_auth_transport::RateLimitConfig;
//!
//! let vars = HashMap::from([
//!     ("HTTP_RATE_LIMIT_ENABLED".to_owned(), "true".to_owned()),
//!     ("HTTP_RATE_LIMIT_MAX_REQUESTS".to_owned(), "100".to_owned()),
//!     ("HTTP_TRUSTED_PROXIES".to_owned(), "10.0.0.0/8".to_owned()),
//! ]);
//! let cfg = RateLimitConfig::from_settings(&vars).unwrap();
//! assert!(cfg.enabled && cfg.max_requests == 100);
//! ```

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{extract::ConnectInfo, response::Response};
use futures::future::BoxFuture;
use http::{HeaderMap, Request, StatusCode};
use mcp_auth_core::{
    Principal,
    settings::{ConfigError, Lookup, parse_bool, parse_list, parse_millis},
};
use mcp_auth_session::{SharedStore, session_owner};
use tower_layer::Layer;
use tower_service::Service;

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

/// Rate-limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Limit requests per principal / address (`HTTP_RATE_LIMIT_ENABLED`, default false).
    pub enabled: bool,
    /// The window (`HTTP_RATE_LIMIT_WINDOW`, ms; default 15 minutes).
    pub window: Duration,
    /// Requests per window (`HTTP_RATE_LIMIT_MAX_REQUESTS`, default 1000).
    pub max_requests: u64,
    /// Failed authentication attempts per address per window before 429
    /// (`HTTP_AUTH_FAILURE_LIMIT`, default 30). Always on: it is what stops
    /// key guessing.
    pub max_auth_failures: u64,
    /// Proxies whose `X-Forwarded-For` is believed (`HTTP_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window: Duration::from_secs(900),
            max_requests: 1000,
            max_auth_failures: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

impl RateLimitConfig {
    /// Reads the variables named on the fields.
    pub fn from_settings(l: &dyn Lookup) -> Result<Self, ConfigError> {
        let d = Self::default();
        let count = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match l.get(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError::new(name, format!("expected a whole number above 0, got {v:?}"))
                }),
            }
        };
        let trusted = trusted_proxies(l)?;
        Ok(Self {
            enabled: parse_bool(l, "HTTP_RATE_LIMIT_ENABLED", d.enabled)?,
            window: parse_millis(l, "HTTP_RATE_LIMIT_WINDOW", d.window)?,
            max_requests: count("HTTP_RATE_LIMIT_MAX_REQUESTS", d.max_requests)?,
            max_auth_failures: count("HTTP_AUTH_FAILURE_LIMIT", d.max_auth_failures)?,
            trusted_proxies: trusted,
        })
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted
    /// proxy, the right-most `X-Forwarded-For` entry that is not one.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
        let peer = peer?.to_canonical();
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            let Ok(v) = v.to_str() else { return Some(peer) };
            for item in v.split(',') {
                match item.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(ip.to_canonical()),
                    // A malformed chain cannot be trusted past this proxy.
                    Err(_) => return Some(peer),
                }
            }
        }
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !trusted(*ip))
                .unwrap_or(peer),
        )
    }
}

/// The network one client is counted by: the canonical address, IPv4 as
/// is, IPv6 by its /64 (one client usually owns a whole /64, and could
/// otherwise rotate through it). Rate limits and connection caps share it.
pub(crate) fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The rate-limit key of an address: its [`client_network`].
fn address_key(ip: Option<IpAddr>) -> String {
    match ip.map(client_network) {
        Some(IpAddr::V6(net)) => format!("{net}/64"),
        Some(v4) => v4.to_string(),
        None => "unknown".to_owned(),
    }
}

fn too_many(retry: Duration, what: &str) -> Response {
    crate::refusal::refuse_after(StatusCode::TOO_MANY_REQUESTS, "rate_limited", what, retry)
}

fn store_down(e: &mcp_auth_session::StoreError) -> Response {
    tracing::error!(store = %e.store, reason = %e.reason, "rate-limit store unavailable; refusing");
    crate::refusal::refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "rate-limit store unavailable",
    )
}

struct Shared {
    cfg: RateLimitConfig,
    store: SharedStore,
}

/// One request's provisional entry in the failed-login count. The auth
/// layer settles it the moment it accepts the credentials, so legitimate
/// requests hold a slot only while they are being authenticated, not for
/// as long as the tool call they carry takes.
#[derive(Clone)]
pub(crate) struct PendingAttempt(Arc<Attempt>);

struct Attempt {
    shared: Arc<Shared>,
    key: String,
    settled: std::sync::atomic::AtomicBool,
}

impl PendingAttempt {
    /// Takes the provisional count back (once; later calls do nothing).
    pub(crate) async fn accepted(&self) {
        let a = &self.0;
        if !a.settled.swap(true, std::sync::atomic::Ordering::AcqRel)
            && let Err(e) = a.shared.store.unhit(&a.key).await
        {
            tracing::warn!(store = %e.store, "could not settle a login-attempt count");
        }
    }
}

fn peer_of<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Answers 429 to addresses with too many failed logins; counts every
/// response the auth layer marks [`AuthRejected`](crate::AuthRejected)
/// (a wrong or malformed credential, not a request without any). Goes in
/// front of the auth layer.
#[derive(Clone)]
pub struct AuthFailureLimitLayer {
    shared: Arc<Shared>,
}

impl AuthFailureLimitLayer {
    /// A limiter counting in `store`.
    pub fn new(cfg: RateLimitConfig, store: SharedStore) -> Self {
        Self {
            shared: Arc::new(Shared { cfg, store }),
        }
    }
}

/// Limits requests per principal (or per address when anonymous). Goes
/// behind the auth layer.
#[derive(Clone)]
pub struct RequestRateLimitLayer {
    shared: Arc<Shared>,
}

impl RequestRateLimitLayer {
    /// A limiter counting in `store`.
    pub fn new(cfg: RateLimitConfig, store: SharedStore) -> Self {
        Self {
            shared: Arc::new(Shared { cfg, store }),
        }
    }
}

/// The service of either rate-limit layer.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    shared: Arc<Shared>,
    failures: bool,
}

impl<S> Layer<S> for AuthFailureLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: self.shared.clone(),
            failures: true,
        }
    }
}

impl<S> Layer<S> for RequestRateLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: self.shared.clone(),
            failures: false,
        }
    }
}

impl<S, B> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let failures = self.failures;
        Box::pin(async move {
            let cfg = &shared.cfg;
            let ip = address_key(cfg.client_ip(peer_of(&req), req.headers()));
            if failures {
                // Count first, atomically: parallel guesses cannot all slip in
                // before any is counted. A request that turns out not to be an
                // authentication failure is taken back.
                let key = format!("fail:{ip}");
                match shared.store.hit(&key, cfg.window).await {
                    Ok((n, left)) if n > cfg.max_auth_failures => {
                        let _ = shared.store.unhit(&key).await;
                        tracing::warn!(client = %ip, "too many failed authentications");
                        return Ok(too_many(
                            left,
                            "too many failed authentication attempts from this address",
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Ok(store_down(&e)),
                }
                let attempt = PendingAttempt(Arc::new(Attempt {
                    shared: shared.clone(),
                    key,
                    settled: false.into(),
                }));
                req.extensions_mut().insert(attempt.clone());
                let resp = inner.call(req).await?;
                if resp.extensions().get::<crate::AuthRejected>().is_none() {
                    attempt.accepted().await;
                }
                return Ok(resp);
            }
            let key = match session_owner(req.extensions().get::<Principal>()) {
                Some(owner) => format!("req:p:{owner}"),
                None => format!("req:ip:{ip}"),
            };
            match shared.store.hit(&key, cfg.window).await {
                Ok((n, left)) if n > cfg.max_requests => {
                    Ok(too_many(left, "rate limit exceeded; retry later"))
                }
                Ok(_) => inner.call(req).await,
                Err(e) => Ok(store_down(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cfg = RateLimitConfig {
            trusted_proxies: vec![IpNet::parse("10.0.0.0/8").unwrap()],
            ..RateLimitConfig::default()
        };
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 10.0.0.5".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let direct: IpAddr = "3.3.3.3".parse().unwrap();
        assert_eq!(
            cfg.client_ip(Some(proxy), &h),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(cfg.client_ip(Some(direct), &h), Some(direct));
        h.insert("x-forwarded-for", "garbage, 2.2.2.2".parse().unwrap());
        assert_eq!(cfg.client_ip(Some(proxy), &h), Some(proxy));
        assert_eq!(cfg.client_ip(Some(proxy), &HeaderMap::new()), Some(proxy));
        // Dual-stack listeners see IPv4 peers as mapped IPv6 addresses.
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        h.insert("x-forwarded-for", "2.2.2.2".parse().unwrap());
        assert_eq!(
            cfg.client_ip(Some(mapped), &h),
            Some("2.2.2.2".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = address_key(Some("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = address_key(Some("2001:db8:1:2:bbbb::9".parse().unwrap()));
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_ne!(a, address_key(Some("2001:db8:1:3::1".parse().unwrap())));
        assert_eq!(address_key(Some("1.2.3.4".parse().unwrap())), "1.2.3.4");
    }

    #[test]
    fn settings_errors_name_the_variable() {
        for (k, v) in [
            ("HTTP_RATE_LIMIT_ENABLED", "sometimes"),
            ("HTTP_RATE_LIMIT_WINDOW", "0"),
            ("HTTP_RATE_LIMIT_MAX_REQUESTS", "-3"),
            ("HTTP_AUTH_FAILURE_LIMIT", "0"),
            ("HTTP_TRUSTED_PROXIES", "10.0.0.0/99"),
        ] {
            let vars = std::collections::HashMap::from([(k.to_owned(), v.to_owned())]);
            assert_eq!(
                RateLimitConfig::from_settings(&vars).unwrap_err().variable,
                k
            );
        }
    }
}
