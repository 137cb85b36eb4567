//! A JWKS cache built for hostile traffic and flaky issuers.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use std::time::Duration;
//! use mcp_auth_jwt::JwksCache;
//!
//! let jwks = JwksCache::builder("https://issuer.example.com/.well-known/jwks.json".parse().unwrap())
//!     .cooldown(Duration::from_secs(10))
//!     .refresh_every(Duration::from_secs(600))
//!     .build();
//! let keys = jwks.keys().await.expect("the issuer is reachable");
//! println!("{} keys", keys.len());
//! # }
//! ```
//!
//! Why our own cache and not `jwks_client_rs`: that crate's default features
//! enable jsonwebtoken's `rust_crypto` backend (with our `aws_lc_rs` also on,
//! the first verification panics), it refetches on every unknown `kid` (a
//! flood of random kids becomes a flood of requests to the issuer), and it
//! never checks `iss`. This cache:
//! - fetches with connect and total timeouts, a size limit, http(s) only, no
//!   redirects ([`FetchLimits`]);
//! - is single-flight: concurrent misses wait for one fetch;
//! - refreshes for an unknown `kid` at most once per cooldown (default 10 s);
//!   a failed fetch also starts the cooldown, so an outage is not hammered
//!   (while no keys were ever fetched, at most once a second);
//! - refreshes in the background (default every 10 minutes);
//! - keeps the last good key set when the issuer is down, slow or answers
//!   garbage (an error, a timeout, an unparsable document); a key set the
//!   issuer publishes with no key this cache can use (`{"keys":[]}`, or
//!   only unsupported key types) is its word once every fetch for at least
//!   30 s ([`JwksCacheBuilder::withdrawal_after`]) has answered so: the cached keys are
//!   dropped, and tokens refused until it publishes usable ones (a key
//!   withdrawn in an emergency stops verifying within about a minute: the
//!   background refresh asks again after 30 s; a shorter hiccup changes
//!   nothing, and any other answer in between starts the count again);
//! - replaces the whole set on every successful fetch, so a rotated-out key
//!   stops verifying at once.

use std::{
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use url::Url;

use crate::{
    KeySet,
    discovery::discover,
    fetch::{FetchLimits, get_json, http_client},
};

/// Where the key set comes from.
#[derive(Clone, PartialEq, Eq)]
enum Location {
    Url(Url),
    /// Discovered from the issuer's metadata on first use.
    Issuer(String),
}

/// Shown without what a URL may carry besides the place (credentials, a
/// query or fragment with a key in it), as every fetch error shows it.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(u) => f
                .debug_tuple("Url")
                .field(&crate::fetch::redact(u))
                .finish(),
            Self::Issuer(i) => f.debug_tuple("Issuer").field(i).finish(),
        }
    }
}

/// Retry period while no key set has ever been fetched.
const NO_KEYS_RETRY: Duration = Duration::from_secs(1);

/// The key set could not be obtained and none is cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing keys unavailable: {0}")]
pub struct JwksError(pub String);

struct State {
    keys: Option<Arc<KeySet>>,
    jwks_url: Option<Url>,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    last_error: Option<String>,
    /// Since when the issuer publishes no usable key (see `fetch_once`).
    empty_since: Option<Instant>,
}

/// What a [`JwksCache`] holds, for readiness probes and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStatus {
    /// Keys in the cached set (0: none fetched yet, or the issuer publishes
    /// none this cache can use).
    pub keys: usize,
    /// Time since the last successful fetch.
    pub age: Option<Duration>,
    /// Whether the last fetch failed (the last good keys are kept, unless
    /// the issuer publishes no usable key).
    pub last_fetch_failed: bool,
    /// The keys are past their [`max_stale`](JwksCacheBuilder::max_stale)
    /// and not trusted.
    pub stale: bool,
}

impl JwksStatus {
    /// The key set as a readiness check named `name`: ready with at least
    /// one key from a successful fetch that is not past its
    /// [`max_stale`](JwksCacheBuilder::max_stale), i.e. whenever tokens can
    /// be verified (the detail says when the latest fetch failed). Not an
    /// hour's limit of its own: every replica would go unready at once an
    /// hour into an issuer's outage while still verifying tokens. The
    /// detail names no URL.
    pub fn readiness(&self, name: &str) -> mcp_auth_core::Readiness {
        let fresh = self.age.is_some() && !self.stale;
        let detail = match (self.keys, self.age) {
            (0, None) => "no keys fetched from the issuer yet".to_owned(),
            (0, Some(_)) => "the issuer publishes no usable signing key".to_owned(),
            (n, Some(age)) => format!(
                "{n} key(s), fetched {} s ago{}{}",
                age.as_secs(),
                if self.last_fetch_failed {
                    "; the latest fetch failed"
                } else {
                    ""
                },
                if self.stale {
                    "; past their maximum staleness, not trusted"
                } else {
                    ""
                }
            ),
            (n, None) => format!("{n} key(s)"),
        };
        let mut check = mcp_auth_core::Readiness::new(name, self.keys > 0 && fresh, detail);
        check.age = self.age;
        check
    }
}

struct Inner {
    location: Location,
    client: reqwest::Client,
    limits: FetchLimits,
    cooldown: Duration,
    max_stale: Option<Duration>,
    withdrawal_after: Duration,
    /// Wakes the background refresh early (the issuer just published no
    /// usable key: it asks again after `withdrawal_after`).
    wake: Arc<tokio::sync::Notify>,
    state: RwLock<State>,
    fetch_lock: Arc<tokio::sync::Mutex<()>>,
    fetches: AtomicU64,
}

/// A shared, self-refreshing JWKS cache. Cheap to clone.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("location", &self.inner.location)
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

/// Whether a fetch was attempted at or after `asked`, or within the
/// cooldown. With nothing cached every request fails anyway, so the
/// cooldown is then at most a second ([`NO_KEYS_RETRY`]): a startup race
/// with the issuer heals fast. The same when the cached keys are past
/// their maximum staleness (`usable` false).
fn attempted_since(s: &State, asked: Instant, cooldown: Duration, usable: bool) -> bool {
    let cooldown = if !usable {
        cooldown.min(NO_KEYS_RETRY)
    } else {
        cooldown
    };
    s.last_attempt
        .is_some_and(|t| t >= asked || t.elapsed() < cooldown)
}

/// Builder for [`JwksCache`].
#[derive(Debug)]
pub struct JwksCacheBuilder {
    location: Location,
    limits: FetchLimits,
    cooldown: Duration,
    refresh_every: Option<Duration>,
    max_stale: Option<Duration>,
    withdrawal_after: Duration,
}

impl JwksCacheBuilder {
    /// How long the issuer must keep publishing a key set with no usable
    /// key (`{"keys":[]}`, or only unsupported types), every fetch
    /// answering so, before the cached keys are dropped (default 30 s):
    /// long enough that a hiccup of its CDN takes no replica down, short
    /// enough that an emergency withdrawal takes effect within a minute
    /// (the background refresh asks again after this long).
    pub fn withdrawal_after(mut self, d: Duration) -> Self {
        self.withdrawal_after = d;
        self
    }

    /// Stop trusting the cached keys once the last successful fetch is
    /// older than `max` (default: never). The cache keeps the last good
    /// keys through an outage of the issuer; without a bound, a key the
    /// issuer withdrew (rotated out after a compromise) stays trusted for
    /// as long as it cannot be reached. Past the bound every token is
    /// refused (503) until a fetch succeeds again: it trades availability
    /// during a long outage for a bounded life of withdrawn keys. Keep it
    /// well above the refresh period.
    pub fn max_stale(mut self, max: impl Into<Option<Duration>>) -> Self {
        self.max_stale = max.into();
        self
    }

    /// Minimum time between refreshes triggered by unknown `kid`s or by a
    /// missing key set (default 10 s).
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }

    /// Background refresh period (default 10 minutes); `None` turns it off.
    pub fn refresh_every(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.refresh_every = d.into();
        self
    }

    /// Fetch limits (timeouts, size).
    pub fn limits(mut self, limits: FetchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Allow plain `http` to non-loopback hosts (default: https only, http to
    /// loopback). Anyone on the network path could then forge tokens.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.limits.allow_insecure_http = allow;
        self
    }

    /// Builds the cache. The background refresh starts when a Tokio runtime
    /// is running; the first fetch happens on first use (or
    /// [`JwksCache::refresh`]).
    pub fn build(self) -> JwksCache {
        let cache = JwksCache {
            inner: Arc::new(Inner {
                location: self.location,
                client: http_client(self.limits),
                limits: self.limits,
                cooldown: self.cooldown,
                max_stale: self.max_stale,
                withdrawal_after: self.withdrawal_after,
                wake: Arc::new(tokio::sync::Notify::new()),
                state: RwLock::new(State {
                    keys: None,
                    jwks_url: None,
                    last_attempt: None,
                    last_success: None,
                    last_error: None,
                    empty_since: None,
                }),
                fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
                fetches: AtomicU64::new(0),
            }),
        };
        if let (Some(every), Ok(rt)) = (self.refresh_every, tokio::runtime::Handle::try_current()) {
            let weak = Arc::downgrade(&cache.inner);
            rt.spawn(background_refresh(weak, cache.inner.wake.clone(), every));
        }
        cache
    }
}

/// How long an issuer must keep publishing no usable key (every fetch
/// answering so) before the cached keys are dropped, by default.
const WITHDRAWAL_AFTER: Duration = Duration::from_secs(30);

/// Longest wait between background attempts while no usable keys are
/// held.
const NO_KEYS_BACKOFF_MAX: Duration = Duration::from_secs(60);

async fn background_refresh(weak: Weak<Inner>, wake: Arc<tokio::sync::Notify>, every: Duration) {
    // While no usable keys are held (the issuer was down at start, or the
    // keys went past their maximum staleness), tried again after 1 s, 2 s,
    // 4 s ... at most a minute: a replica started during an issuer's blip
    // is taken out of rotation by its readiness probe, so no token would
    // come to fetch them, and it waited for the next refresh (10 minutes).
    let mut backoff = NO_KEYS_RETRY;
    loop {
        // Usable keys, and whether the issuer has published none since
        // (then asked again when that would confirm it, not at the next
        // refresh).
        let (usable, confirm) = match weak.upgrade() {
            Some(inner) => {
                let after = inner.withdrawal_after;
                let cache = JwksCache { inner };
                let empty = cache.read_state(|s| s.empty_since.is_some());
                (cache.cached().is_some(), empty.then_some(after))
            }
            None => return,
        };
        let wait = if let Some(after) = confirm.filter(|_| usable) {
            after.min(every)
        } else if usable {
            backoff = NO_KEYS_RETRY;
            every
        } else {
            let wait = backoff.min(every);
            backoff = (backoff * 2).min(NO_KEYS_BACKOFF_MAX);
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Woken: the wait is chosen again.
            () = wake.notified() => continue,
        }
        let Some(inner) = weak.upgrade() else { return };
        let cache = JwksCache { inner };
        if usable {
            if let Err(e) = cache.refresh().await {
                tracing::warn!(error = %e, "background JWKS refresh failed; the last good keys, if any, stay in use");
            }
        } else {
            // Gated: a token's own fetch in the meantime counts.
            cache.refresh_gated().await;
        }
    }
}

impl JwksCache {
    /// A cache for the key set at `url`.
    pub fn builder(url: Url) -> JwksCacheBuilder {
        Self::builder_for(Location::Url(url))
    }

    /// A cache whose key set URL is discovered from `issuer`'s metadata
    /// (RFC 8414 / OIDC) on first use.
    pub fn discover(issuer: impl Into<String>) -> JwksCacheBuilder {
        Self::builder_for(Location::Issuer(issuer.into()))
    }

    fn builder_for(location: Location) -> JwksCacheBuilder {
        JwksCacheBuilder {
            location,
            limits: FetchLimits::default(),
            cooldown: Duration::from_secs(10),
            refresh_every: Some(Duration::from_secs(600)),
            max_stale: None,
            withdrawal_after: WITHDRAWAL_AFTER,
        }
    }

    /// How many fetches of the key set (and discovery documents) were made.
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// What the cache holds now, without fetching.
    pub fn status(&self) -> JwksStatus {
        self.read_state(|s| JwksStatus {
            keys: s.keys.as_ref().map_or(0, |k| k.len()),
            age: s.last_success.map(|t| t.elapsed()),
            last_fetch_failed: s.last_error.is_some(),
            stale: s.keys.is_some() && self.stale(s),
        })
    }

    /// How long cached keys stay trusted after their last successful fetch
    /// ([`JwksCacheBuilder::max_stale`]; `None`: for as long as the issuer
    /// cannot be reached).
    pub fn max_stale(&self) -> Option<Duration> {
        self.inner.max_stale
    }

    /// The cached keys, if any and not older than
    /// [`max_stale`](JwksCacheBuilder::max_stale), without fetching.
    pub fn cached(&self) -> Option<Arc<KeySet>> {
        self.read_state(|s| self.usable(s))
    }

    /// The last successful fetch of `s` is past the maximum staleness.
    fn stale(&self, s: &State) -> bool {
        match (self.inner.max_stale, s.last_success) {
            (Some(max), Some(at)) => at.elapsed() > max,
            _ => false,
        }
    }

    /// The keys of `s`, unless they are past the maximum staleness.
    fn usable(&self, s: &State) -> Option<Arc<KeySet>> {
        s.keys.clone().filter(|_| !self.stale(s))
    }

    /// Why there are no usable keys.
    fn unusable(&self) -> JwksError {
        self.read_state(|s| match (&s.keys, &s.last_error) {
            (Some(_), e) => JwksError(format!(
                "the cached keys are older than their maximum staleness{}",
                e.as_ref()
                    .map(|e| format!("; latest fetch: {e}"))
                    .unwrap_or_default()
            )),
            (None, Some(e)) => JwksError(e.clone()),
            (None, None) => JwksError("not fetched yet".to_owned()),
        })
    }

    fn read_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.inner.state.read() {
            Ok(g) => f(&g),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write_state(&self, f: impl FnOnce(&mut State)) {
        match self.inner.state.write() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The keys: cached ones, or fetched now when none are cached (a failed
    /// fetch is retried only after the cooldown).
    pub async fn keys(&self) -> Result<Arc<KeySet>, JwksError> {
        if let Some(keys) = self.cached() {
            return Ok(keys);
        }
        self.refresh_gated().await;
        self.cached().ok_or_else(|| self.unusable())
    }

    /// Refetches because a token named an unknown `kid`, unless a fetch
    /// happened within the cooldown. Returns the keys of a fetch made since
    /// this call (its own or another's), or an error when the latest fetch
    /// failed, or when none was made because one was moments ago: then an
    /// unknown `kid` may be a rotation the issuer made since, not a bad
    /// token (answered 503 with `Retry-After`, not 401, which the client
    /// would take as its token refused, and which counts as a failed
    /// login; anyone sending a token with a made-up kid now and then kept
    /// every rotation's first seconds refused so).
    pub async fn keys_after_unknown_kid(&self) -> Result<Arc<KeySet>, JwksError> {
        let asked = Instant::now();
        self.refresh_gated().await;
        let (keys, error, fetched) = self.read_state(|s| {
            (
                self.usable(s),
                s.last_error.clone(),
                s.last_attempt.is_some_and(|t| t >= asked),
            )
        });
        match (keys, error) {
            (Some(keys), None) if fetched => Ok(keys),
            (Some(_), None) => Err(JwksError(
                "the key set was fetched moments ago; a key it lacks is looked for again shortly"
                    .to_owned(),
            )),
            (_, Some(e)) => Err(JwksError(e)),
            (None, None) => Err(self.unusable()),
        }
    }

    /// Fetch unless one was attempted within the cooldown; concurrent callers
    /// share one fetch.
    ///
    /// The fetch itself runs as a task of its own, holding the lock: a
    /// caller that goes away (its client disconnected) cannot cut it short
    /// before it is recorded, so dropped requests cannot start fetch after
    /// fetch past the cooldown. Callers waiting for the lock are only
    /// waiting: nothing is spawned for them.
    async fn refresh_gated(&self) {
        use tracing::Instrument;
        let asked = Instant::now();
        let cooldown = self.inner.cooldown;
        if self
            .read_state(|s| attempted_since(s, asked, cooldown, s.keys.is_some() && !self.stale(s)))
        {
            return;
        }
        let guard = self.inner.fetch_lock.clone().lock_owned().await;
        // Whoever held the lock may have just fetched for us.
        if self
            .read_state(|s| attempted_since(s, asked, cooldown, s.keys.is_some() && !self.stale(s)))
        {
            return;
        }
        let this = self.clone();
        let fetch = async move {
            let _guard = guard;
            let _ = this.fetch_locked().await;
        }
        .in_current_span();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let _ = rt.spawn(fetch).await;
            }
            Err(_) => fetch.await,
        }
    }

    /// Fetches now (single-flight with other refreshes), ignoring the
    /// cooldown. On failure the last good keys stay (but when the issuer
    /// has published no usable key for
    /// [`withdrawal_after`](JwksCacheBuilder::withdrawal_after): see the
    /// module docs).
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        let _guard = self.inner.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<Arc<KeySet>, JwksError> {
        use tracing::Instrument;
        let span = tracing::debug_span!("jwks.fetch", otel.status_code = tracing::field::Empty);
        let result = self.fetch_once().instrument(span.clone()).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        span.record(
            "otel.status_code",
            if result.is_ok() { "OK" } else { "ERROR" },
        );
        metrics::counter!("mcp_auth_jwks_fetches_total", "outcome" => outcome).increment(1);
        self.write_state(|s| {
            s.last_attempt = Some(Instant::now());
            match &result {
                Ok(keys) => {
                    s.keys = Some(keys.clone());
                    s.last_success = Some(Instant::now());
                    s.last_error = None;
                    s.empty_since = None;
                }
                Err(e) => s.last_error = Some(e.0.clone()),
            }
        });
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS fetched");
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e.0, "JWKS fetch failed; the last good keys, if any, stay in use");
                Err(e)
            }
        }
    }

    async fn fetch_once(&self) -> Result<Arc<KeySet>, JwksError> {
        let inner = &self.inner;
        // Since when every fetch has found no usable key: cleared now, and
        // kept only if this one finds none too.
        let mut empty_since = None;
        self.write_state(|s| empty_since = s.empty_since.take());
        let url = match self.read_state(|s| s.jwks_url.clone()) {
            Some(u) => u,
            None => {
                let url = match &inner.location {
                    Location::Url(u) => u.clone(),
                    Location::Issuer(issuer) => {
                        inner.fetches.fetch_add(1, Ordering::Relaxed);
                        let md = discover(&inner.client, issuer, inner.limits)
                            .await
                            .map_err(|e| JwksError(e.to_string()))?;
                        let uri = md.jwks_uri.ok_or_else(|| {
                            JwksError(format!("metadata of {issuer} has no jwks_uri"))
                        })?;
                        Url::parse(&uri)
                            .map_err(|_| JwksError(format!("jwks_uri {uri:?} is not a URL")))?
                    }
                };
                self.write_state(|s| s.jwks_url = Some(url.clone()));
                url
            }
        };
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        let shown = crate::fetch::redact(&url);
        let fetched = get_json(&inner.client, &url, inner.limits)
            .await
            .map_err(|e| JwksError(e.to_string()))
            .and_then(|doc| {
                KeySet::from_jwks_json(&doc).map_err(|e| JwksError(format!("{shown}: {e}")))
            });
        let (set, skipped) = match fetched {
            Ok(v) => v,
            Err(e) => {
                if matches!(inner.location, Location::Issuer(_)) {
                    // The issuer may have moved its keys: rediscover next time.
                    self.write_state(|s| s.jwks_url = None);
                }
                return Err(e);
            }
        };
        if set.is_empty() {
            // The issuer's answer, not an outage: what it no longer
            // publishes is no longer trusted, once it has said so for
            // `withdrawal_after` (one such answer may be a hiccup of its
            // CDN).
            if empty_since.is_none() {
                inner.wake.notify_one();
            }
            let since = empty_since.unwrap_or_else(Instant::now);
            let mut dropped = 0;
            self.write_state(|s| {
                s.empty_since = Some(since);
                if since.elapsed() >= inner.withdrawal_after {
                    dropped = s.keys.take().map_or(0, |k| k.len());
                }
            });
            if dropped > 0 {
                tracing::error!(
                    jwks = %shown,
                    skipped,
                    dropped,
                    "the issuer publishes no usable signing key: its former keys are dropped, and tokens refused until it publishes some"
                );
            }
            return Err(JwksError(format!(
                "{shown} has no usable signing keys ({skipped} skipped)"
            )));
        }
        let mut set = set;
        if let Some(previous) = self.read_state(|s| s.keys.clone()) {
            set.keep_unchanged(&previous);
        }
        Ok(Arc::new(set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ready whenever tokens can be verified: keys from a successful fetch
    /// not past their maximum staleness, however old (an attack pass: an
    /// hour's limit of its own took every replica out of rotation an hour
    /// into an issuer's outage while they still verified tokens).
    #[test]
    fn readiness_follows_what_verifies() {
        let status = |keys, age: Option<u64>, failed, stale| JwksStatus {
            keys,
            age: age.map(Duration::from_secs),
            last_fetch_failed: failed,
            stale,
        };
        assert!(status(2, Some(60), false, false).readiness("k").ok);
        let old = status(2, Some(7200), true, false).readiness("k");
        assert!(old.ok, "{}", old.detail);
        assert!(
            old.detail.contains("the latest fetch failed"),
            "{}",
            old.detail
        );
        assert!(!status(2, Some(7200), true, true).readiness("k").ok);
        assert!(!status(0, None, true, false).readiness("k").ok);
    }

    /// Without usable keys (the issuer down at start) the background task
    /// tries again within seconds, not at the next 10-minute refresh, so a
    /// replica no token reaches becomes ready by itself.
    #[tokio::test]
    async fn keys_missing_at_start_are_fetched_again_within_seconds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url: Url = format!("http://{addr}/jwks.json").parse().unwrap();
        let cache = JwksCache::builder(url).build();
        assert!(cache.keys().await.is_err(), "the issuer is down");
        // The issuer comes up; no token arrives.
        let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let deadline = Instant::now() + Duration::from_secs(20);
        while cache.status().keys == 0 {
            assert!(Instant::now() < deadline, "still no keys");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(cache.status().readiness("k").ok);
    }

    #[test]
    fn debug_output_shows_no_credentials_of_the_url() {
        let url = "https://user:s3cret@keys.example/jwks.json?key=s3cret#s3cret";
        let shown = format!("{:?}", JwksCache::builder(url.parse().unwrap()).build());
        assert!(shown.contains("https://keys.example/jwks.json"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
