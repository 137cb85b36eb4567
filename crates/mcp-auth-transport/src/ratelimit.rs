//! Rate limits: requests per user (or address), and failed
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
use mcp_auth_session::{SharedStore, session_owner, subject_of};

use crate::net::{IpNet, client_network};
use tower_layer::Layer;
use tower_service::Service;

/// Rate-limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Limit requests per user / address (`HTTP_RATE_LIMIT_ENABLED`, default false).
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
        let cfg = Self {
            enabled: parse_bool(l, "HTTP_RATE_LIMIT_ENABLED", d.enabled)?,
            window: parse_millis(l, "HTTP_RATE_LIMIT_WINDOW", d.window)?,
            max_requests: count("HTTP_RATE_LIMIT_MAX_REQUESTS", d.max_requests)?,
            max_auth_failures: count("HTTP_AUTH_FAILURE_LIMIT", d.max_auth_failures)?,
        };
        // The window is the failed-login limiter's too, which is always
        // on (an attack pass: a 1 s window let one address try 2.6 million
        // credentials a day without a word).
        if cfg.lets_faster_guessing() {
            tracing::warn!(
                window_ms = u64::try_from(cfg.window.as_millis()).unwrap_or(u64::MAX),
                failures = cfg.max_auth_failures,
                "HTTP_RATE_LIMIT_WINDOW is also the failed-login limiter's window: with HTTP_AUTH_FAILURE_LIMIT it lets each address try credentials faster than the default 30 per 15 minutes"
            );
        }
        Ok(cfg)
    }
}

impl RateLimitConfig {
    /// Whether the failed-login limit and window let an address try
    /// credentials faster than the defaults (30 per 15 minutes).
    fn lets_faster_guessing(&self) -> bool {
        let d = Self::default();
        u128::from(self.max_auth_failures) * d.window.as_millis()
            > u128::from(d.max_auth_failures) * self.window.as_millis()
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
    forwarded: crate::ForwardedHeader,
    accepted: KnownGood,
}

impl Shared {
    /// Changes a layer's settings: in place when the layer is the only one
    /// holding them, else in a copy of its own (a builder call on a layer
    /// that was cloned first must not be lost, nor change the clones).
    fn edit(shared: &mut Arc<Self>, change: impl FnOnce(&mut Self)) {
        if let Some(only) = Arc::get_mut(shared) {
            change(only);
            return;
        }
        let mut copy = Self {
            cfg: shared.cfg.clone(),
            store: shared.store.clone(),
            trusted_proxies: shared.trusted_proxies.clone(),
            forwarded: shared.forwarded,
            accepted: KnownGood::default(),
        };
        change(&mut copy);
        *shared = Arc::new(copy);
    }
}

/// Credentials this process accepted lately (their SHA-256, never the
/// credential), for [`KNOWN_GOOD_FOR`] after each acceptance that went
/// through the full count. A request presenting one skips the provisional
/// count: it cannot be a guess, as only a caller who already holds the
/// credential can present it. Should it be refused now (revoked, expired),
/// it is counted as a failure after the fact and forgotten.
///
/// At most [`KNOWN_GOOD_IN_FLIGHT`] requests from one address are being
/// authenticated this way at a time; more take the full count. A refusal is
/// counted only once it is known, so without that bound a holder of a good
/// credential whose requests carry a guess somewhere the hash does not
/// cover (a header a custom authenticator reads besides) could have any
/// number of guesses checked at once before the first refusal ends the
/// shortcut. The bound is per address, not per credential (the same token
/// written with another scheme case or spacing hashes differently), and a
/// request holds its place only while it is authenticated (the auth layer
/// lets go of it on acceptance, see [`KnownGoodSlot`]), so honest clients'
/// long calls do not fill it.
struct KnownGood {
    /// Until when each credential is known good.
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>,
    /// Requests being authenticated as known good, per address: counters
    /// picked by a hash of the address (no lock, no allocation per request;
    /// addresses sharing one share its bound, which only makes it stricter:
    /// a request past it takes the full count, it is not refused).
    in_flight: Box<[std::sync::atomic::AtomicU32]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for KnownGood {
    fn default() -> Self {
        Self {
            entries: Default::default(),
            in_flight: (0..IN_FLIGHT_COUNTERS)
                .map(|_| Default::default())
                .collect(),
            hasher: Default::default(),
        }
    }
}

/// See [`KnownGood`].
const KNOWN_GOOD_IN_FLIGHT: u32 = 32;

/// Counters of requests in flight, addresses spread over them.
const IN_FLIGHT_COUNTERS: usize = 4096;

/// A request's place among those being authenticated as known good, on
/// the request for the auth layer, which lets go of it when it accepts the
/// credentials (see [`KnownGood`]); let go of at the latest when the last
/// copy goes.
#[derive(Clone)]
pub(crate) struct KnownGoodSlot(Arc<InFlight>);

struct InFlight {
    shared: Arc<Shared>,
    counter: usize,
    released: std::sync::atomic::AtomicBool,
}

impl KnownGoodSlot {
    pub(crate) fn release(&self) {
        self.0.release();
    }
}

impl InFlight {
    fn release(&self) {
        use std::sync::atomic::Ordering;
        if !self.released.swap(true, Ordering::AcqRel)
            && let Some(n) = self.shared.accepted.in_flight.get(self.counter)
        {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// How long an accepted credential skips the provisional count.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30);

/// Most credentials remembered; past it, expired ones are dropped, and if
/// that frees nothing a new one is not remembered.
const KNOWN_GOOD_CAPACITY: usize = 100_000;

impl KnownGood {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut std::collections::HashMap<[u8; 32], std::time::Instant>) -> T,
    ) -> T {
        let mut m = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut m)
    }

    /// `h` is known good and fewer than [`KNOWN_GOOD_IN_FLIGHT`] requests
    /// from `address` are being authenticated as known good: one more is,
    /// until the slot is released.
    fn enter(shared: &Arc<Shared>, h: &[u8; 32], address: &str) -> Option<KnownGoodSlot> {
        use std::sync::atomic::Ordering;
        let now = std::time::Instant::now();
        let known = &shared.accepted;
        if known.with(|m| m.get(h).is_none_or(|until| *until <= now)) {
            return None;
        }
        let hash = std::hash::BuildHasher::hash_one(&known.hasher, address);
        let counter = (hash % IN_FLIGHT_COUNTERS as u64) as usize;
        let n = known.in_flight.get(counter)?;
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < KNOWN_GOOD_IN_FLIGHT).then_some(n + 1)
        })
        .ok()?;
        Some(KnownGoodSlot(Arc::new(InFlight {
            shared: shared.clone(),
            counter,
            released: false.into(),
        })))
    }

    fn insert(&self, h: [u8; 32]) {
        let now = std::time::Instant::now();
        self.with(|m| {
            if m.len() >= KNOWN_GOOD_CAPACITY && !m.contains_key(&h) {
                m.retain(|_, until| *until > now);
                if m.len() >= KNOWN_GOOD_CAPACITY {
                    return;
                }
            }
            m.insert(h, now + KNOWN_GOOD_FOR);
        });
    }

    fn remove(&self, h: &[u8; 32]) {
        self.with(|m| m.remove(h));
    }
}

/// The SHA-256 of the credentials a request presents in `Authorization`
/// and `X-API-Key`, from the client address `client`; `None` without
/// either (a request whose credentials are elsewhere always takes the full
/// count). The address is part of it: what one address proved does not
/// let another skip its count (credentials read from other headers, by a
/// custom authenticator, could otherwise ride along).
fn credential_hash(headers: &http::HeaderMap, client: &str) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client.as_bytes());
    h.update([2]);
    let mut any = false;
    for name in [http::header::AUTHORIZATION, crate::names::X_API_KEY] {
        h.update(name.as_str().as_bytes());
        for v in headers.get_all(name) {
            any |= !v.is_empty();
            h.update([0]);
            h.update(v.as_bytes());
        }
        h.update([1]);
    }
    any.then(|| h.finalize().into())
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
    /// When the window the attempt was counted in ends: past it the count
    /// went with its window, and taking one back would take it from the
    /// next window's failures.
    window_end: std::time::Instant,
    settled: std::sync::atomic::AtomicBool,
    /// The auth layer accepted the credentials (not only let an anonymous
    /// request through).
    authenticated: std::sync::atomic::AtomicBool,
}

impl PendingAttempt {
    /// The auth layer accepted the request's credentials: take the count
    /// back, and remember them as known good.
    pub(crate) async fn authenticated(&self) {
        self.0
            .authenticated
            .store(true, std::sync::atomic::Ordering::Release);
        self.accepted().await;
    }

    /// Takes the provisional count back (once; later calls do nothing),
    /// unless its window has ended (or is about to: the store's clock and
    /// this one may differ by a little).
    pub(crate) async fn accepted(&self) {
        const MARGIN: Duration = Duration::from_millis(100);
        let a = &self.0;
        if !a.settled.swap(true, std::sync::atomic::Ordering::AcqRel)
            && std::time::Instant::now() + MARGIN < a.window_end
            && let Err(e) = a.shared.store.unhit(&a.key).await
        {
            tracing::warn!(store = %e.store, "could not settle a login-attempt count");
        }
    }
}

/// The answer when the server was not told who its peers are (served
/// without `ConnectInfo`, e.g. by `axum::serve(listener, router)`): 500,
/// fail closed. Counting every client under one key instead would let
/// anyone lock everyone out with a few wrong keys; counting none would let
/// guessing go unlimited. Logged once per process, with the fix.
fn unknown_peer() -> Response {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::error!(
            "requests carry no peer address, so the rate limits cannot tell clients apart; \
             refusing them: serve the router with mcp_auth_transport::serve, or with \
             axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())"
        );
    }
    crate::refusal::refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the server cannot tell its clients apart (misconfigured)",
    )
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
                forwarded: crate::ForwardedHeader::Auto,
                accepted: KnownGood::default(),
            }),
        }
    }

    /// Believes `X-Forwarded-For` from these proxies
    /// (`HTTP_TRUSTED_PROXIES`; see [`client_ip`](crate::client_ip)).
    pub fn trusting(mut self, proxies: Vec<IpNet>) -> Self {
        Shared::edit(&mut self.shared, |s| s.trusted_proxies = proxies);
        self
    }

    /// Reads the client's address from `header` only
    /// (`HTTP_FORWARDED_HEADER`; see [`client_ip_by`](crate::client_ip_by)).
    pub fn forwarded_header(mut self, header: crate::ForwardedHeader) -> Self {
        Shared::edit(&mut self.shared, |s| s.forwarded = header);
        self
    }
}

/// Limits requests per user: the principal's issuer and subject, over all
/// its client ids (one user registering more clients gets no more
/// requests), or per address when anonymous. Goes behind the auth layer.
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
                forwarded: crate::ForwardedHeader::Auto,
                accepted: KnownGood::default(),
            }),
        }
    }

    /// Believes `X-Forwarded-For` from these proxies
    /// (`HTTP_TRUSTED_PROXIES`; see [`client_ip`](crate::client_ip)).
    pub fn trusting(mut self, proxies: Vec<IpNet>) -> Self {
        Shared::edit(&mut self.shared, |s| s.trusted_proxies = proxies);
        self
    }

    /// Reads the client's address from `header` only
    /// (`HTTP_FORWARDED_HEADER`; see [`client_ip_by`](crate::client_ip_by)).
    pub fn forwarded_header(mut self, header: crate::ForwardedHeader) -> Self {
        Shared::edit(&mut self.shared, |s| s.forwarded = header);
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
        let Some(peer) = peer_of(&req) else {
            return Box::pin(async { Ok(unknown_peer()) });
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let failures = self.failures;
        Box::pin(async move {
            let cfg = &shared.cfg;
            let ip = address_key(crate::client_ip_by(
                &shared.trusted_proxies,
                Some(peer),
                req.headers(),
                shared.forwarded,
            ));
            if failures {
                let key = format!("fail:{ip}");
                let credential = credential_hash(req.headers(), &ip);
                if let Some(h) = credential
                    && let Some(slot) = KnownGood::enter(&shared, &h, &ip)
                {
                    // Known good: no guess. Refused after all? Count it now
                    // (to the end even if the client goes away meanwhile),
                    // and only then let go of the place.
                    req.extensions_mut().insert(slot.clone());
                    let resp = inner.call(req).await?;
                    if resp.extensions().get::<crate::AuthRejected>().is_some() {
                        shared.accepted.remove(&h);
                        let (shared, window, held) = (shared.clone(), cfg.window, slot.clone());
                        let counted = tokio::spawn(async move {
                            if let Err(e) = shared.store.hit(&key, window).await {
                                tracing::warn!(store = %e.store, "could not count a failed login");
                            }
                            held.release();
                        });
                        let _ = counted.await;
                    }
                    slot.release();
                    return Ok(resp);
                }
                // Count first, atomically: parallel guesses cannot all slip in
                // before any is counted. A request that turns out not to be an
                // authentication failure is taken back.
                let counted = shared.store.hit(&key, cfg.window).await;
                let window_end = std::time::Instant::now()
                    + counted.as_ref().map_or(Duration::ZERO, |(_, left)| *left);
                match counted {
                    Ok((n, left)) if n > cfg.max_auth_failures => {
                        let _ = shared.store.unhit(&key).await;
                        // A locked-out client may loop: one line a second.
                        static LOG: crate::serve::LogThrottle = crate::serve::LogThrottle::new();
                        if let Some(more) = LOG.admit() {
                            tracing::warn!(
                                client = %ip,
                                more_since_last_line = more,
                                "too many failed authentications"
                            );
                        }
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
                    window_end,
                    settled: false.into(),
                    authenticated: false.into(),
                }));
                req.extensions_mut().insert(attempt.clone());
                let resp = inner.call(req).await?;
                if resp.extensions().get::<crate::AuthRejected>().is_none() {
                    attempt.accepted().await;
                }
                if let Some(h) = credential
                    && attempt
                        .0
                        .authenticated
                        .load(std::sync::atomic::Ordering::Acquire)
                {
                    shared.accepted.insert(h);
                }
                return Ok(resp);
            }
            let key = match session_owner(req.extensions().get::<Principal>()) {
                Some(owner) => format!("req:u:{}", subject_of(&owner)),
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

    /// The start-up warning fires when window and limit together let an
    /// address try credentials faster than 30 per 15 minutes (a review:
    /// a short window with a lower limit warned too).
    #[test]
    fn faster_guessing_is_told_by_window_and_limit_together() {
        let cfg = |window_ms: u64, failures: u64| RateLimitConfig {
            window: Duration::from_millis(window_ms),
            max_auth_failures: failures,
            ..RateLimitConfig::default()
        };
        for (window, failures, faster) in [
            (1000, 30, true),
            (900_000, 31, true),
            (900_000, 30, false),
            (60_000, 2, false),
            (1_800_000, 60, false),
            // No overflow at the ends.
            (u64::MAX, 1, false),
            (u64::MAX, u64::MAX, true),
            (1, u64::MAX, true),
        ] {
            assert_eq!(
                cfg(window, failures).lets_faster_guessing(),
                faster,
                "{window} ms, {failures}"
            );
        }
    }

    /// A builder call on a layer that was cloned first takes effect on it
    /// (it was silently dropped: the settings were changed only when the
    /// layer held them alone), and leaves the clones as they were.
    #[test]
    fn settings_given_to_a_cloned_layer_are_not_lost() {
        let store: SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let proxies = vec![IpNet::parse("10.0.0.0/8").unwrap()];
        let first = AuthFailureLimitLayer::new(RateLimitConfig::default(), store.clone());
        let kept = first.clone();
        let changed = first
            .trusting(proxies.clone())
            .forwarded_header(crate::ForwardedHeader::XForwardedFor);
        assert_eq!(changed.shared.trusted_proxies, proxies);
        assert_eq!(
            changed.shared.forwarded,
            crate::ForwardedHeader::XForwardedFor
        );
        assert!(kept.shared.trusted_proxies.is_empty());
        let first = RequestRateLimitLayer::new(RateLimitConfig::default(), store);
        let _kept = first.clone();
        let changed = first.trusting(proxies.clone());
        assert_eq!(changed.shared.trusted_proxies, proxies);
    }

    /// `auth` behind the failed-login limiter (its counts in `store`), in
    /// front of a service answering 200 after `call` (a tool call's time);
    /// sends a request with `X-API-Key` and, if given, `X-Second-Factor`,
    /// and answers its status.
    fn limited(
        auth: crate::AuthLayer,
        cfg: RateLimitConfig,
        store: SharedStore,
        call: Duration,
    ) -> impl Fn(&'static str, Option<String>) -> futures::future::BoxFuture<'static, u16> + Clone
    {
        use tower::ServiceExt;
        let svc = tower::ServiceBuilder::new()
            .layer(AuthFailureLimitLayer::new(cfg, store))
            .layer(auth)
            .service(tower::service_fn(
                move |_req: Request<axum::body::Body>| async move {
                    tokio::time::sleep(call).await;
                    Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::empty()))
                },
            ));
        move |key, factor| {
            let svc = svc.clone();
            Box::pin(async move {
                let mut req = Request::get("/")
                    .header("x-api-key", key)
                    .extension(ConnectInfo(SocketAddr::from(([203, 0, 113, 1], 40_000))));
                if let Some(f) = factor {
                    req = req.header("x-second-factor", f);
                }
                let req = req.body(axum::body::Body::empty()).unwrap();
                svc.oneshot(req).await.unwrap().status().as_u16()
            })
        }
    }

    /// Served without `ConnectInfo` (a plain `axum::serve`), the limits
    /// cannot tell clients apart: every request is refused (500), none is
    /// counted under a key all clients would share.
    #[tokio::test]
    async fn requests_without_a_peer_address_are_refused() {
        use tower::ServiceExt;
        let svc = tower::ServiceBuilder::new()
            .layer(AuthFailureLimitLayer::new(
                RateLimitConfig::default(),
                Arc::new(mcp_auth_session::MemoryStore::new()),
            ))
            .service(tower::service_fn(|_req: Request<axum::body::Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::empty()))
            }));
        let req = Request::get("/").body(axum::body::Body::empty()).unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let req = Request::get("/")
            .extension(ConnectInfo(SocketAddr::from(([203, 0, 113, 1], 40_000))))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
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

    /// A known-good credential is no guess: it passes an address that is
    /// locked out; a credential not seen yet is still counted first, and a
    /// known one that is refused now is counted and forgotten.
    #[tokio::test]
    async fn known_good_credentials_skip_the_count_and_refused_ones_are_counted() {
        use mcp_auth_core::{AuthError, AuthRequest};
        use std::sync::atomic::{AtomicBool, Ordering};

        let revoked = Arc::new(AtomicBool::new(false));
        let r = revoked.clone();
        let auth = crate::AuthLayer::new(move |req: AuthRequest| {
            let revoked = r.load(Ordering::Relaxed);
            async move {
                match req
                    .headers
                    .get(crate::names::X_API_KEY)
                    .map(|v| v.as_bytes())
                {
                    Some(b"alice-key") if !revoked => Ok(Principal::new("alice", "test")),
                    Some(b"bob-key") => Ok(Principal::new("bob", "test")),
                    Some(_) => Err(AuthError::invalid_token("unknown key")),
                    None => Err(AuthError::MissingCredentials),
                }
            }
        });
        let cfg = RateLimitConfig {
            max_auth_failures: 2,
            ..RateLimitConfig::default()
        };
        let store: SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let send = limited(auth, cfg, store, Duration::ZERO);
        let send = |key: &'static str| send(key, None);
        assert_eq!(send("alice-key").await, 200);
        assert_eq!(send("guess-1").await, 401);
        assert_eq!(send("guess-2").await, 401);
        assert_eq!(send("guess-3").await, 429, "the address is locked out");
        assert_eq!(send("alice-key").await, 200, "known good: not a guess");
        assert_eq!(send("bob-key").await, 429, "not seen yet: counted first");
        // Alice's key is revoked: refused, counted, and no longer known.
        revoked.store(true, Ordering::Relaxed);
        assert_eq!(send("alice-key").await, 401);
        assert_eq!(send("alice-key").await, 429);
    }

    /// A holder of a good key whose requests carry a guess in a header the
    /// hash does not cover (read by a custom authenticator): 200 such
    /// requests at once get at most the in-flight bound plus the failure
    /// budget checked, the rest 429.
    #[tokio::test]
    async fn a_known_good_credential_cannot_carry_a_burst_of_guesses() {
        use mcp_auth_core::{AuthError, AuthRequest};
        use std::sync::atomic::{AtomicUsize, Ordering};

        let checked = Arc::new(AtomicUsize::new(0));
        let c = checked.clone();
        let auth = crate::AuthLayer::new(move |req: AuthRequest| {
            let guess = req.headers.get("x-second-factor").cloned();
            let key_ok = req
                .headers
                .get(crate::names::X_API_KEY)
                .map(|v| v.as_bytes())
                == Some(b"alice-key");
            let checked = c.clone();
            async move {
                if guess.is_some() {
                    checked.fetch_add(1, Ordering::Relaxed);
                }
                // Long enough for all of them to be in flight at once.
                tokio::time::sleep(Duration::from_millis(200)).await;
                match (key_ok, guess.as_ref().map(|v| v.as_bytes())) {
                    (true, None | Some(b"right")) => Ok(Principal::new("alice", "test")),
                    _ => Err(AuthError::invalid_token("wrong second factor")),
                }
            }
        });
        let cfg = RateLimitConfig {
            max_auth_failures: 5,
            ..RateLimitConfig::default()
        };
        let store: SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let send = limited(auth, cfg, store, Duration::ZERO);
        let send = |guess: Option<String>| send("alice-key", guess);
        assert_eq!(send(None).await, 200, "alice's key is now known good");
        let burst: Vec<_> = (0..200)
            .map(|i| tokio::spawn(send(Some(format!("guess-{i}")))))
            .collect();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for b in burst {
            *statuses.entry(b.await.unwrap()).or_default() += 1;
        }
        let checked = checked.load(Ordering::Relaxed);
        // The bound (32) and the failure budget (5), not the 200.
        assert!(
            (32..=37).contains(&checked),
            "{checked} guesses checked: {statuses:?}"
        );
        assert_eq!(statuses.get(&401).copied().unwrap_or(0), checked);
        assert_eq!(statuses.get(&429).copied().unwrap_or(0), 200 - checked);
    }

    /// The bound holds requests only while they are authenticated: an
    /// address that is locked out (a neighbour behind the same NAT guessed)
    /// still gets 40 long calls at once through with its known-good key.
    #[tokio::test]
    async fn long_calls_with_a_known_good_key_do_not_fill_the_bound() {
        use mcp_auth_core::{AuthError, AuthRequest};

        let auth = crate::AuthLayer::new(|req: AuthRequest| async move {
            match req
                .headers
                .get(crate::names::X_API_KEY)
                .map(|v| v.as_bytes())
            {
                Some(b"alice-key") => Ok(Principal::new("alice", "test")),
                _ => Err(AuthError::invalid_token("unknown key")),
            }
        });
        let cfg = RateLimitConfig {
            max_auth_failures: 2,
            ..RateLimitConfig::default()
        };
        let store: SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        // Long tool calls.
        let send = limited(auth, cfg, store, Duration::from_millis(300));
        let send = |key: &'static str| send(key, None);
        assert_eq!(send("alice-key").await, 200);
        for guess in ["guess-1", "guess-2"] {
            assert_eq!(send(guess).await, 401);
        }
        assert_eq!(send("guess-3").await, 429, "the address is locked out");
        let calls: Vec<_> = (0..40).map(|_| tokio::spawn(send("alice-key"))).collect();
        for c in calls {
            assert_eq!(c.await.unwrap(), 200);
        }
    }

    /// A request accepted after its window ended does not take its count
    /// back from the next window (it would erase a failure counted there).
    #[tokio::test]
    async fn a_count_is_not_taken_back_from_a_later_window() {
        use mcp_auth_core::{AuthError, AuthRequest};

        let auth = crate::AuthLayer::new(|req: AuthRequest| async move {
            match req
                .headers
                .get(crate::names::X_API_KEY)
                .map(|v| v.as_bytes())
            {
                Some(b"slow-good") => {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok(Principal::new("alice", "test"))
                }
                _ => Err(AuthError::invalid_token("unknown key")),
            }
        });
        let cfg = RateLimitConfig {
            window: Duration::from_millis(300),
            ..RateLimitConfig::default()
        };
        let store: SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let send = limited(auth, cfg, store.clone(), Duration::ZERO);
        let send = |key: &'static str| send(key, None);
        // Counted in the first window, accepted in the second.
        let slow = tokio::spawn(send("slow-good"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(send("a-guess").await, 401, "counted in the second window");
        assert_eq!(slow.await.unwrap(), 200);
        let key = format!("fail:{}", address_key(Some([203, 0, 113, 1].into())));
        assert_eq!(
            store.count(&key).await.unwrap().0,
            1,
            "the guess still counts"
        );
    }

    #[test]
    fn credential_hashes_cover_both_headers_and_need_one() {
        let mut h = http::HeaderMap::new();
        assert_eq!(credential_hash(&h, "1.2.3.4"), None);
        h.insert("x-api-key", http::HeaderValue::from_static("k"));
        let key_only = credential_hash(&h, "1.2.3.4").unwrap();
        assert_ne!(
            credential_hash(&h, "5.6.7.8").unwrap(),
            key_only,
            "per address"
        );
        h.insert("authorization", http::HeaderValue::from_static("Bearer t"));
        let both = credential_hash(&h, "1.2.3.4").unwrap();
        assert_ne!(key_only, both);
        let mut moved = http::HeaderMap::new();
        moved.insert("authorization", http::HeaderValue::from_static("k"));
        assert_ne!(credential_hash(&moved, "1.2.3.4").unwrap(), key_only);
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
