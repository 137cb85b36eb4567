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
use http::{Request, StatusCode};
use mcp_auth_core::{
    Principal,
    settings::{ConfigError, Lookup, parse_bool, parse_millis},
};
use mcp_auth_session::{SharedStore, session_owner};

use crate::net::{IpNet, client_ip, client_network};
use tower_layer::Layer;
use tower_service::Service;

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
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window: Duration::from_secs(900),
            max_requests: 1000,
            max_auth_failures: 30,
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
        Ok(Self {
            enabled: parse_bool(l, "HTTP_RATE_LIMIT_ENABLED", d.enabled)?,
            window: parse_millis(l, "HTTP_RATE_LIMIT_WINDOW", d.window)?,
            max_requests: count("HTTP_RATE_LIMIT_MAX_REQUESTS", d.max_requests)?,
            max_auth_failures: count("HTTP_AUTH_FAILURE_LIMIT", d.max_auth_failures)?,
        })
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
    trusted_proxies: Vec<IpNet>,
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
    /// A limiter counting in `store`, by TCP peer address.
    pub fn new(cfg: RateLimitConfig, store: SharedStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                cfg,
                store,
                trusted_proxies: Vec::new(),
            }),
        }
    }

    /// Believes `X-Forwarded-For` from these proxies
    /// (`HTTP_TRUSTED_PROXIES`; see [`client_ip`](crate::client_ip)).
    pub fn trusting(mut self, proxies: Vec<IpNet>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.trusted_proxies = proxies;
        }
        self
    }
}

/// Limits requests per principal (or per address when anonymous). Goes
/// behind the auth layer.
#[derive(Clone)]
pub struct RequestRateLimitLayer {
    shared: Arc<Shared>,
}

impl RequestRateLimitLayer {
    /// A limiter counting in `store`, by TCP peer address.
    pub fn new(cfg: RateLimitConfig, store: SharedStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                cfg,
                store,
                trusted_proxies: Vec::new(),
            }),
        }
    }

    /// Believes `X-Forwarded-For` from these proxies
    /// (`HTTP_TRUSTED_PROXIES`; see [`client_ip`](crate::client_ip)).
    pub fn trusting(mut self, proxies: Vec<IpNet>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.trusted_proxies = proxies;
        }
        self
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
            let ip = address_key(client_ip(
                &shared.trusted_proxies,
                peer_of(&req),
                req.headers(),
            ));
            if failures {
                // Count first, atomically: parallel guesses cannot all slip in
                // before any is counted. A request that turns out not to be an
                // authentication failure is taken back.
                let key = format!("fail:{ip}");
                match shared.store.hit(&key, cfg.window).await {
                    Ok((n, left)) if n > cfg.max_auth_failures => {
                        let _ = shared.store.unhit(&key).await;
                        tracing::warn!(client = %ip, "too many failed authentications");
                        crate::observe::rate_limited("failed_logins");
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
                    crate::observe::rate_limited("requests");
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
        ] {
            let vars = std::collections::HashMap::from([(k.to_owned(), v.to_owned())]);
            assert_eq!(
                RateLimitConfig::from_settings(&vars).unwrap_err().variable,
                k
            );
        }
        // The trusted proxies are the connection options' (one list).
        let vars = std::collections::HashMap::from([(
            "HTTP_TRUSTED_PROXIES".to_owned(),
            "10.0.0.0/99".to_owned(),
        )]);
        assert!(RateLimitConfig::from_settings(&vars).is_ok());
        let e = crate::ServeOptions::from_settings(&vars).unwrap_err();
        assert_eq!(e.variable, "HTTP_TRUSTED_PROXIES");
    }
}
