//! The facade's state in the store over time, on a store whose clock the
//! test moves: client ID metadata documents refused a moment ago are not
//! fetched again, each client network may have documents fetched 30 times
//! a minute, and the keys every replica shares are renewed so they never
//! lapse. No provider is contacted (no Node needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use axum::{
    Router,
    extract::Path,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use mcp_auth_session::{
    Bind, KV_MAX_TTL, MemoryStore, Reserve, SessionLimits, SessionRecord, SessionStore,
    SharedStore, StoreError, Ticket,
};
use tokio::time::Instant;

mod support;

use support::{Local, authorize_url, start_local};

/// A store whose key-value space and counters follow a clock the test can
/// move ([`ClockStore::advance`]; under a paused runtime, Tokio's clock
/// moves it too), with every `kv_put` recorded. Sessions, which the facade
/// does not use, are the memory store's.
#[derive(Default)]
struct ClockStore {
    sessions: MemoryStore,
    state: Mutex<ClockState>,
    /// Counters answer after 20 ms, as over a network (a race between a
    /// read and a later write shows).
    slow_counters: AtomicBool,
    /// Counters fail, as a store that is down.
    counters_down: AtomicBool,
    /// Reads of keys fail, as a store that is down.
    reads_down: AtomicBool,
    /// Writes of refresh tokens fail (a store blip while tokens are issued).
    refresh_writes_down: AtomicBool,
    /// Reads of logins' revocation marks fail.
    revocation_reads_down: AtomicBool,
}

#[derive(Default)]
struct ClockState {
    skew: Duration,
    kv: HashMap<String, (Vec<u8>, Instant)>,
    counters: HashMap<String, (u64, Instant)>,
    puts: Vec<(String, Duration)>,
}

impl ClockState {
    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    fn live(&mut self, key: &str) -> Option<&(Vec<u8>, Instant)> {
        let now = self.now();
        if self.kv.get(key).is_some_and(|(_, until)| *until <= now) {
            self.kv.remove(key);
        }
        self.kv.get(key)
    }

    fn counter(&mut self, key: &str) -> Option<&mut (u64, Instant)> {
        let now = self.now();
        if self.counters.get(key).is_some_and(|(_, end)| *end <= now) {
            self.counters.remove(key);
        }
        self.counters.get_mut(key)
    }
}

fn ttl_checked(ttl: Duration) -> Result<Duration, StoreError> {
    if ttl.is_zero() || ttl > KV_MAX_TTL {
        return Err(StoreError {
            store: "clock".into(),
            reason: format!("bad TTL {ttl:?}"),
        });
    }
    Ok(ttl)
}

impl ClockStore {
    /// What a counter call waits for, or its failure.
    async fn counter_round_trip(&self) -> Result<(), StoreError> {
        if self.counters_down.load(Ordering::SeqCst) {
            return Err(StoreError {
                store: "clock".into(),
                reason: "down".into(),
            });
        }
        if self.slow_counters.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Moves the store's clock forward.
    fn advance(&self, by: Duration) {
        self.state.lock().unwrap().skew += by;
    }

    /// The TTLs `key` was put with (`kv_put` only), in order.
    fn puts_of(&self, key: &str) -> Vec<Duration> {
        let s = self.state.lock().unwrap();
        s.puts
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, t)| *t)
            .collect()
    }

    /// What is left of `key`'s life.
    fn remaining(&self, key: &str) -> Option<Duration> {
        let mut s = self.state.lock().unwrap();
        let now = s.now();
        s.live(key).map(|(_, until)| *until - now)
    }

    /// Makes `key` expire `after` from now, as if it had been stored long ago.
    fn age(&self, key: &str, after: Duration) {
        let mut s = self.state.lock().unwrap();
        let until = s.now() + after;
        s.kv.get_mut(key).unwrap().1 = until;
    }
}

#[async_trait]
impl SessionStore for ClockStore {
    async fn reserve(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Reserve, StoreError> {
        self.sessions.reserve(owner, limits).await
    }
    async fn commit(
        &self,
        ticket: &Ticket,
        sid: &str,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<bool, StoreError> {
        self.sessions.commit(ticket, sid, owner, limits).await
    }
    async fn release(&self, ticket: &Ticket, owner: Option<&str>) -> Result<(), StoreError> {
        self.sessions.release(ticket, owner).await
    }
    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions.lookup(sid, limits).await
    }
    async fn lookup_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions.lookup_as(sid, caller, limits).await
    }
    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError> {
        self.sessions.bind(sid, owner, limits).await
    }
    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        self.sessions.end(sid).await
    }
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        self.counter_round_trip().await?;
        let mut s = self.state.lock().unwrap();
        let now = s.now();
        if let Some((n, end)) = s.counter(key) {
            *n += 1;
            return Ok((*n, *end - now));
        }
        s.counters.insert(key.to_owned(), (1, now + window));
        Ok((1, window))
    }
    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError> {
        self.counter_round_trip().await?;
        let mut s = self.state.lock().unwrap();
        let now = s.now();
        Ok(s.counter(key)
            .map_or((0, Duration::ZERO), |(n, end)| (*n, *end - now)))
    }
    async fn unhit(&self, key: &str) -> Result<(), StoreError> {
        self.counter_round_trip().await?;
        let mut s = self.state.lock().unwrap();
        if let Some((n, _)) = s.counter(key) {
            *n = n.saturating_sub(1);
        }
        Ok(())
    }
    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        limits: &SessionLimits,
    ) -> Result<(), StoreError> {
        self.sessions.save_state(sid, state, limits).await
    }
    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        self.sessions.load_state(sid).await
    }
    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let ttl = ttl_checked(ttl)?;
        if key.starts_with("proxy:rt:") && self.refresh_writes_down.load(Ordering::SeqCst) {
            return Err(StoreError {
                store: "clock".into(),
                reason: "down".into(),
            });
        }
        let mut s = self.state.lock().unwrap();
        let until = s.now() + ttl;
        s.kv.insert(key.to_owned(), (value.to_vec(), until));
        s.puts.push((key.to_owned(), ttl));
        Ok(())
    }
    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let ttl = ttl_checked(ttl)?;
        let mut s = self.state.lock().unwrap();
        if s.live(key).is_some() {
            return Ok(false);
        }
        let until = s.now() + ttl;
        s.kv.insert(key.to_owned(), (value.to_vec(), until));
        Ok(true)
    }
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if self.reads_down.load(Ordering::SeqCst)
            || (key.starts_with("proxy:revoked:")
                && self.revocation_reads_down.load(Ordering::SeqCst))
        {
            return Err(StoreError {
                store: "clock".into(),
                reason: "down".into(),
            });
        }
        let mut s = self.state.lock().unwrap();
        Ok(s.live(key).map(|(v, _)| v.clone()))
    }
    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut s = self.state.lock().unwrap();
        let live = s.live(key).is_some();
        Ok(if live {
            s.kv.remove(key).map(|(v, _)| v)
        } else {
            None
        })
    }
    async fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        self.state.lock().unwrap().kv.remove(key);
        Ok(())
    }
    async fn sweep(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "clock".into()
    }
}

// ---------------------------------------------------------------------------
// Client ID metadata documents: the negative cache and the fetch budget
// ---------------------------------------------------------------------------

/// A client ID metadata document for `client_id`, with the loopback
/// redirect URI the support flows use.
fn document(client_id: &str) -> String {
    serde_json::json!({
        "client_id": client_id,
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
    .to_string()
}

/// A document server: `/flaky.json` answers 404 until `good` is set, then
/// its document; `/good.json` and `/docs/{n}` always answer theirs. `hits`
/// counts every request.
async fn document_server(hits: Arc<AtomicUsize>, good: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let json = |body: String| ([(header::CONTENT_TYPE, "application/json")], body);
    let (b1, b2, b3) = (base.clone(), base.clone(), base.clone());
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits);
    let router = Router::new()
        .route(
            "/flaky.json",
            get(move || async move {
                h1.fetch_add(1, Ordering::SeqCst);
                if good.load(Ordering::SeqCst) {
                    json(document(&format!("{b1}/flaky.json"))).into_response()
                } else {
                    (StatusCode::NOT_FOUND, "not yet").into_response()
                }
            }),
        )
        .route(
            "/good.json",
            get(move || async move {
                h2.fetch_add(1, Ordering::SeqCst);
                json(document(&format!("{b2}/good.json")))
            }),
        )
        .route(
            "/docs/{n}",
            get(move |Path(n): Path<u32>| async move {
                h3.fetch_add(1, Ordering::SeqCst);
                json(document(&format!("{b3}/docs/{n}")))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// What `/oauth/authorize` answers for `client_id`, asked from
/// `forwarded_for` (through the trusted loopback proxy) when given: the
/// status and the page.
async fn authorize(
    app: &Local,
    client_id: &str,
    forwarded_for: Option<&str>,
) -> (StatusCode, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http.get(authorize_url(app, client_id, &[]));
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The consent page: the client was found and its document accepted.
fn consent_page((status, page): &(StatusCode, String)) -> bool {
    *status == StatusCode::OK && page.contains("name=\"csrf\"")
}

/// The page for a client that could not be looked up (the document refused,
/// or not fetched).
fn unverified((status, page): &(StatusCode, String)) -> bool {
    *status == StatusCode::BAD_REQUEST && page.contains("could not be verified")
}

/// A document that could not be used is not fetched again for a minute,
/// even once it is fixed: retries (the client's, or anyone's naming it)
/// cost its server nothing. Other documents are not affected, and after
/// the minute the fixed document is fetched and accepted.
#[tokio::test]
async fn a_refused_metadata_document_is_not_fetched_again_for_a_minute() {
    let hits = Arc::new(AtomicUsize::new(0));
    let good = Arc::new(AtomicBool::new(false));
    let docs = document_server(hits.clone(), good.clone()).await;
    let store = Arc::new(ClockStore::default());
    let app = start_local(store.clone(), &[], |_| {}).await;
    let flaky = format!("{docs}/flaky.json");

    let first = authorize(&app, &flaky, None).await;
    assert!(unverified(&first), "{first:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let marker = format!(
        "proxy:cimd-refused:{}",
        mcp_auth_proxy::keys::digest_b64(flaky.as_bytes())
    );
    assert_eq!(store.puts_of(&marker), [Duration::from_secs(60)]);

    for _ in 0..3 {
        let again = authorize(&app, &flaky, None).await;
        assert!(unverified(&again), "{again:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "refused: not fetched again");

    // Fixed at its server: still refused without a fetch, until the minute
    // is over.
    good.store(true, Ordering::SeqCst);
    store.advance(Duration::from_secs(59));
    let fixed_early = authorize(&app, &flaky, None).await;
    assert!(unverified(&fixed_early), "{fixed_early:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Another document meanwhile, from the same address: fetched as usual.
    let other = authorize(&app, &format!("{docs}/good.json"), None).await;
    assert!(consent_page(&other), "{other:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    store.advance(Duration::from_secs(2));
    let fixed = authorize(&app, &flaky, None).await;
    assert!(consent_page(&fixed), "{fixed:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "fetched once the minute is over"
    );
    // Accepted now: kept, not fetched per request.
    let cached = authorize(&app, &flaky, None).await;
    assert!(consent_page(&cached), "{cached:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

/// Each client network may have 30 metadata documents fetched a minute:
/// the 31st is refused without a fetch, documents already fetched still
/// work, other networks have budgets of their own, an IPv6 client is
/// counted by its /64 (rotating addresses in it does not help), and the
/// budget comes back with the next minute.
#[tokio::test]
async fn metadata_document_fetches_are_limited_per_client_network() {
    let hits = Arc::new(AtomicUsize::new(0));
    let docs = document_server(hits.clone(), Arc::default()).await;
    let store = Arc::new(ClockStore::default());
    // The test's requests come through a trusted proxy (loopback), so each
    // names its client in X-Forwarded-For.
    let app = start_local(store.clone(), &[], |o| {
        o.trusted_proxies = vec![mcp_auth_transport::IpNet::parse("127.0.0.1").unwrap()];
    })
    .await;
    let doc = |n: u32| format!("{docs}/docs/{n}");
    // One client in 2001:db8:0:1::/64, a new address of it every time.
    let v6 = |n: u32| format!("2001:db8:0:1::{:x}", n + 1);

    for n in 0..30 {
        let r = authorize(&app, &doc(n), Some(&v6(n))).await;
        assert!(consent_page(&r), "document {n}: {r:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 30);
    let over = authorize(&app, &doc(30), Some(&v6(30))).await;
    assert!(unverified(&over), "{over:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 30, "the 31st is not fetched");
    // A document fetched before is in the store: no fetch, no refusal.
    let known = authorize(&app, &doc(0), Some(&v6(31))).await;
    assert!(consent_page(&known), "{known:?}");
    // Another network has its own budget.
    let elsewhere = authorize(&app, &doc(30), Some("203.0.113.9")).await;
    assert!(consent_page(&elsewhere), "{elsewhere:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 31);
    // The /64's budget is per minute.
    store.advance(Duration::from_secs(61));
    let next_minute = authorize(&app, &doc(31), Some(&v6(32))).await;
    assert!(consent_page(&next_minute), "{next_minute:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 32);
}

/// Metadata documents fetched from all networks together have an hourly
/// budget (as registrations do): many networks fetching new documents,
/// each kept up to an hour, cannot fill the store codes and refresh tokens
/// need. Documents fetched before still work.
#[tokio::test]
async fn metadata_documents_from_all_networks_together_have_a_budget() {
    let hits = Arc::new(AtomicUsize::new(0));
    let docs = document_server(hits.clone(), Arc::default()).await;
    let store = Arc::new(ClockStore::default());
    let app = start_local(store.clone(), &[], |o| {
        o.trusted_proxies = vec![mcp_auth_transport::IpNet::parse("127.0.0.1").unwrap()];
        o.registrations_per_hour_total = 3;
    })
    .await;
    let doc = |n: u32| format!("{docs}/docs/{n}");
    // Documents refused (here: none at the URL) use none of it.
    for n in 0..5 {
        let missing = format!("{docs}/missing/{n}");
        let r = authorize(&app, &missing, Some("198.51.100.1")).await;
        assert!(unverified(&r), "{r:?}");
    }
    for n in 0..3 {
        let r = authorize(&app, &doc(n), Some(&format!("203.0.113.{}", n + 1))).await;
        assert!(consent_page(&r), "document {n}: {r:?}");
    }
    let over = authorize(&app, &doc(3), Some("203.0.113.9")).await;
    assert!(unverified(&over), "{over:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "the 4th document is not fetched"
    );
    let known = authorize(&app, &doc(0), Some("203.0.113.10")).await;
    assert!(consent_page(&known), "{known:?}");
    store.advance(Duration::from_secs(3601));
    let next_hour = authorize(&app, &doc(3), Some("203.0.113.9")).await;
    assert!(consent_page(&next_hour), "{next_hour:?}");
}

// ---------------------------------------------------------------------------
// The keys every replica shares
// ---------------------------------------------------------------------------

const SHARED_KEYS: [&str; 3] = [
    "proxy:encryption-key",
    "proxy:signing-key",
    "proxy:csrf-secret",
];

/// The facade's key lifetime in the store (`KEY_TTL`).
const KEY_TTL: Duration = Duration::from_secs(364 * 86_400);
const DAY: Duration = Duration::from_secs(86_400);

/// A replica with no keys configured (`MCP_PROXY_SIGNING_KEY` and
/// `MCP_PROXY_ENCRYPTION_KEY` unset): they are made once, in the store.
async fn replica(store: &Arc<ClockStore>) -> mcp_auth_proxy::OAuthProxy {
    let server_url: url::Url = "http://127.0.0.1:1/mcp".parse().unwrap();
    let vars = support::local_settings("http://127.0.0.1:1", &[]);
    mcp_auth_proxy::settings::ProxySettings::from_settings(&vars, &server_url)
        .unwrap()
        .build(server_url, store.clone() as SharedStore)
        .await
        .unwrap()
}

async fn stored(store: &ClockStore, key: &str) -> Option<Vec<u8>> {
    store.kv_get(key).await.unwrap()
}

/// The shared keys live in the store for 364 days, and a running replica
/// renews them (the same values, a full lifetime again) every day: after
/// 400 days they are still there, unchanged, and a replica starting then
/// signs with the first one's key. An entry of the same lifetime that
/// nobody renews is gone by then (the clock did move).
#[tokio::test(start_paused = true)]
async fn shared_keys_are_renewed_daily_and_outlive_their_lifetime() {
    let store = Arc::new(ClockStore::default());
    let first = replica(&store).await;
    let jwks = first.jwks();
    let mut values = Vec::new();
    for key in SHARED_KEYS {
        values.push(stored(&store, key).await.expect(key));
    }
    store
        .kv_put("test:not-renewed", b"x", KEY_TTL)
        .await
        .unwrap();

    // An hour past the 400th renewal, so no timer ties with it.
    tokio::time::sleep(400 * DAY + Duration::from_secs(3600)).await;

    assert_eq!(stored(&store, "test:not-renewed").await, None);
    for (key, value) in SHARED_KEYS.iter().zip(&values) {
        assert_eq!(stored(&store, key).await.as_ref(), Some(value), "{key}");
        let puts = store.puts_of(key);
        // At start and once a day since: 401 renewals, each a full lifetime.
        assert_eq!(puts.len(), 401, "{key}");
        assert!(puts.iter().all(|ttl| *ttl == KEY_TTL), "{key}: {puts:?}");
        assert!(store.remaining(key).unwrap() > KEY_TTL - DAY, "{key}");
    }
    let later = replica(&store).await;
    assert_eq!(later.jwks(), jwks, "a replica started later shares the key");
}

/// A replica renews the shared keys as it starts, not only a day later:
/// keys made long ago by replicas since gone, an hour from lapsing, get a
/// full lifetime again at once, and outlive that hour.
#[tokio::test(start_paused = true)]
async fn a_starting_replica_renews_shared_keys_at_once() {
    let store = Arc::new(ClockStore::default());
    let made_long_ago = replica(&store).await;
    let jwks = made_long_ago.jwks();
    // Let its first renewal run, then age the keys as if that replica had
    // stopped 363 days ago.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for key in SHARED_KEYS {
        store.age(key, Duration::from_secs(3600));
    }
    let starting = replica(&store).await;
    assert_eq!(starting.jwks(), jwks, "the stored signing key is used");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for key in SHARED_KEYS {
        let left = store.remaining(key).unwrap();
        assert!(left > KEY_TTL - Duration::from_secs(10), "{key}: {left:?}");
    }
    tokio::time::sleep(2 * Duration::from_secs(3600)).await;
    for key in SHARED_KEYS {
        assert!(stored(&store, key).await.is_some(), "{key} lapsed");
    }
}

/// A facade that first ran without `MCP_PROXY_ENCRYPTION_KEY` (keys made in
/// the store), then with one but no `MCP_PROXY_SIGNING_KEY`: the stored
/// signing key cannot be opened, and the error says which settings fix it.
#[tokio::test]
async fn a_new_encryption_key_over_a_generated_signing_key_names_the_fix() {
    let store = Arc::new(ClockStore::default());
    let _first = replica(&store).await;
    let server_url: url::Url = "http://127.0.0.1:1/mcp".parse().unwrap();
    let vars = support::local_settings(
        "http://127.0.0.1:1",
        &[(
            "MCP_PROXY_ENCRYPTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )],
    );
    let built = mcp_auth_proxy::settings::ProxySettings::from_settings(&vars, &server_url)
        .unwrap()
        .build(server_url, store.clone() as SharedStore)
        .await;
    let Err(err) = built else {
        panic!("the stored signing key was opened with another encryption key");
    };
    let err = err.to_string();
    assert!(
        err.starts_with("MCP_PROXY_ENCRYPTION_KEY: ") && err.contains("MCP_PROXY_SIGNING_KEY"),
        "{err}"
    );
}

/// A shared key the store lost (an eviction, a flush) is written back, as
/// the running replica holds it, at the next daily renewal: a replica
/// started afterwards takes the same keys instead of making its own.
#[tokio::test(start_paused = true)]
async fn a_shared_key_the_store_lost_is_written_back() {
    let store = Arc::new(ClockStore::default());
    let first = replica(&store).await;
    let jwks = first.jwks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut values = Vec::new();
    for key in SHARED_KEYS {
        values.push(stored(&store, key).await.expect(key));
        store.kv_delete(key).await.unwrap();
    }
    tokio::time::sleep(DAY).await;
    for (key, value) in SHARED_KEYS.iter().zip(&values) {
        assert_eq!(stored(&store, key).await.as_ref(), Some(value), "{key}");
    }
    let later = replica(&store).await;
    assert_eq!(later.jwks(), jwks, "the same signing key");
}

/// Logins started from all addresses together have a budget per login
/// lifetime: past it, 503 with `Retry-After` for everyone, so requests
/// from many networks cannot fill the store that codes and refresh tokens
/// need. (Each address's own budget, 60 a minute, is not reached here.)
#[tokio::test]
async fn logins_started_from_all_addresses_together_are_capped() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store.clone(), &[], |o| o.logins_per_lifetime_total = 3).await;
    let client = support::register(&app).await;
    // Requests that are no login (no client, no valid approval form) do not
    // use the budget up for everyone.
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let bare = http
            .get(format!("{}/oauth/authorize", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
        let junk = http
            .post(format!("{}/oauth/consent", app.base))
            .form(&[("request", "x"), ("csrf", "y"), ("decision", "allow")])
            .send()
            .await
            .unwrap();
        assert!(junk.status().is_client_error(), "{}", junk.status());
    }
    for (i, ip) in ["203.0.113.1", "203.0.113.2", "198.51.100.7"]
        .iter()
        .enumerate()
    {
        let page = authorize(&app, &client, Some(ip)).await;
        assert!(consent_page(&page), "login {i}: {page:?}");
    }
    let r = http
        .get(support::authorize_url(&app, &client, &[]))
        .header("x-forwarded-for", "192.0.2.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&wait), "{wait}");
    // The next lifetime has a budget again.
    store.advance(Duration::from_secs(601));
    let page = authorize(&app, &client, Some("192.0.2.9")).await;
    assert!(consent_page(&page), "{page:?}");
}

/// Token and revocation requests are forms (RFC 6749 §3.2): another media
/// type, or a parameter given twice (§3.1), is `invalid_request` in JSON,
/// as every error of those endpoints, and nothing is looked up.
#[tokio::test]
async fn token_requests_with_a_repeated_parameter_or_no_form_are_invalid() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store, &[], |_| {}).await;
    let client = support::register(&app).await;
    let http = reqwest::Client::new();
    for path in ["/oauth/token", "/oauth/revoke"] {
        let url = format!("{}{path}", app.base);
        let twice = format!(
            "grant_type=authorization_code&client_id={client}&code=a&code=b&token=t&token=u"
        );
        for (content_type, body) in [
            ("application/x-www-form-urlencoded", twice.as_str()),
            ("application/json", r#"{"grant_type":"refresh_token"}"#),
            ("text/plain", "grant_type=refresh_token"),
        ] {
            let r = http
                .post(&url)
                .header("content-type", content_type)
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {content_type}");
            assert_eq!(r.headers()["cache-control"], "no-store");
            let e: serde_json::Value = r.json().await.unwrap();
            assert_eq!(e["error"], "invalid_request", "{path} {content_type}: {e}");
        }
    }
    // Two resources (RFC 8707 allows several): this server issues tokens
    // for its own only; the same one twice is one.
    let url = format!("{}/oauth/token", app.base);
    let form = |resources: &str| format!("grant_type=nonsense&client_id={client}{resources}");
    for (resources, want) in [
        (
            "&resource=https%3A%2F%2Fa.example&resource=https%3A%2F%2Fb.example",
            "invalid_target",
        ),
        (
            "&resource=https%3A%2F%2Fa.example&resource=https%3A%2F%2Fa.example",
            "invalid_target",
        ),
    ] {
        let r = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(resources))
            .send()
            .await
            .unwrap();
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"], want, "{resources}: {e}");
    }
    let ours = format!("{}/mcp", app.base);
    let ours = url::form_urlencoded::byte_serialize(ours.as_bytes()).collect::<String>();
    let r = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&format!("&resource={ours}&resource={ours}")))
        .send()
        .await
        .unwrap();
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"], "unsupported_grant_type", "{e}");
    // An empty value counts as absent (not as a repeat).
    let r = http
        .post(format!("{}/oauth/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=&grant_type=nonsense&client_id={client}"
        ))
        .send()
        .await
        .unwrap();
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"], "unsupported_grant_type", "{e}");
}

/// A facade router served without the peer address (no `ConnectInfo`, as
/// by a plain `axum::serve`) refuses every request (500) rather than count
/// every client under one key in its per-network limits.
#[tokio::test]
async fn a_facade_served_without_peer_addresses_refuses_requests() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store, &[], |_| {}).await;
    // The same facade, served as `axum::serve(listener, router)`.
    let router = app.proxy.router(mcp_auth_proxy::EndpointOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let path = "/.well-known/oauth-authorization-server";
    let r = reqwest::get(format!("{plain}{path}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"], "server_error");
    // Served with the peers' addresses: answered.
    let r = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A confidential client's secret cannot be guessed faster by sending the
/// guesses at once: each is counted before it is checked (an attack pass
/// had 200 at once all answered 401 on Redis, the limit being 30), and a
/// store that cannot count refuses the attempt rather than letting it
/// through unlimited.
#[tokio::test]
async fn client_secret_guesses_sent_at_once_are_counted_as_they_come() {
    const SECRET: &str = "backend-secret-0123456789abcdef0123456789";
    let store = Arc::new(ClockStore::default());
    store.slow_counters.store(true, Ordering::SeqCst);
    let backend = |opts: &mut mcp_auth_proxy::EndpointOptions| {
        opts.preregistered.push(
            mcp_auth_proxy::clients::ClientInfo::preregistered(
                "backend",
                "Backend",
                vec![support::CLIENT_CB.to_owned()],
            )
            .with_client_secret(SECRET),
        );
    };
    let app = start_local(store.clone(), &[], backend).await;
    let url = format!("{}/oauth/token", app.base);
    let attempt = |secret: &'static str| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("backend", Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "no-such-code"),
                    ("redirect_uri", support::CLIENT_CB),
                    ("code_verifier", "v".repeat(43).as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // A right secret first: given back, it uses nothing of the budget.
    assert_eq!(
        attempt(SECRET).await,
        StatusCode::BAD_REQUEST,
        "no such code"
    );
    let statuses = futures::future::join_all((0..60).map(|_| attempt("wrong-guess"))).await;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((refused, limited), (30, 30), "{statuses:?}");
    assert_eq!(attempt(SECRET).await, StatusCode::TOO_MANY_REQUESTS);

    // The store cannot count: 503, never a guess checked.
    store.counters_down.store(true, Ordering::SeqCst);
    let other = start_local(store.clone(), &[], backend).await;
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", other.base))
        .basic_auth("backend", Some("wrong-guess"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
}

/// Web pages on other origins cannot spend the budgets of their visitors'
/// network (an attack pass: the token and registration endpoints, opened to
/// any origin for browser clients, let any page lock a confidential client
/// out of the visitor's network for 15 minutes with 31 wrong secrets, and
/// use up its registrations for an hour): a confidential client's
/// credentials from a page on another origin are refused uncounted,
/// pages' registrations count against a budget of their own there, and an
/// authorization request a page loads (an image, a frame, a fetch) is
/// refused uncounted.
#[tokio::test]
async fn pages_on_other_origins_cannot_spend_a_networks_budgets() {
    const SECRET: &str = "backend-secret-0123456789abcdef0123456789";
    const PAGE: &str = "https://evil.example";
    let store = Arc::new(ClockStore::default());
    let app = start_local(store.clone(), &[], |opts| {
        opts.preregistered.push(
            mcp_auth_proxy::clients::ClientInfo::preregistered(
                "backend",
                "Backend",
                vec![support::CLIENT_CB.to_owned()],
            )
            .with_client_secret(SECRET),
        );
    })
    .await;
    let http = reqwest::Client::new();
    let token = |secret: &'static str, origin: Option<&'static str>| {
        let mut r = http
            .post(format!("{}/oauth/token", app.base))
            .basic_auth("backend", Some(secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")]);
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        async move { r.send().await.unwrap().status() }
    };
    for _ in 0..40 {
        assert_eq!(token("wrong", Some(PAGE)).await, StatusCode::UNAUTHORIZED);
    }
    // Even the right secret, from a page: a confidential client is no page.
    assert_eq!(token(SECRET, Some(PAGE)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(token(SECRET, Some("null")).await, StatusCode::UNAUTHORIZED);
    // The client itself is not locked out: its refresh token is unknown.
    assert_eq!(token(SECRET, None).await, StatusCode::BAD_REQUEST);

    let register = |origin: Option<&'static str>| {
        let mut r = http
            .post(format!("{}/oauth/register", app.base))
            .json(&serde_json::json!({
                "redirect_uris": ["http://127.0.0.1:9/callback"],
                "token_endpoint_auth_method": "none",
            }));
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        async move { r.send().await.unwrap().status() }
    };
    for _ in 0..20 {
        assert_eq!(register(Some(PAGE)).await, StatusCode::CREATED);
    }
    assert_eq!(register(Some(PAGE)).await, StatusCode::TOO_MANY_REQUESTS);
    // One budget for all pages (a review: one per origin let a script
    // naming a new Origin each time register without limit).
    assert_eq!(
        register(Some("https://another.example")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The network's native clients still register.
    assert_eq!(register(None).await, StatusCode::CREATED);

    // Authorization requests loaded by a page: refused, never counted
    // (the budget is 60 a minute).
    let client = support::register(&app).await;
    let url = support::authorize_url(&app, &client, &[]);
    for (mode, dest) in [
        ("no-cors", "image"),
        ("navigate", "iframe"),
        ("cors", "empty"),
    ] {
        for _ in 0..25 {
            let r = http
                .get(&url)
                .header("sec-fetch-mode", mode)
                .header("sec-fetch-dest", dest)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{mode} {dest}");
        }
    }
    let r = http
        .get(&url)
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a login, opened in the browser");
}

/// A login of a user at `app` for `client` with `scopes`, as the callback
/// would have recorded it after the provider's answer.
fn a_login(app: &Local, client: &str, scopes: &[&str]) -> mcp_auth_proxy::grants::Grant {
    let user: mcp_auth_proxy::upstream::UpstreamUser = serde_json::from_value(
        serde_json::json!({"subject": "583231", "email": null, "name": "octocat", "groups": []}),
    )
    .unwrap();
    mcp_auth_proxy::grants::Grant {
        family: mcp_auth_proxy::grants::Grants::new_family().unwrap(),
        client_id: client.to_owned(),
        user,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        resource: format!("{}/mcp", app.base),
        logged_in_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        dpop_jkt: None,
    }
}

/// A refresh of `client`'s `refresh` token at `app`, asking for `scope`
/// when given.
async fn refresh_at(
    app: &Local,
    client: &str,
    refresh: &str,
    scope: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", client),
    ];
    form.extend(scope.map(|s| ("scope", s)));
    support::token(app, &form).await
}

/// The token request exchanging `code` for public `client`.
fn exchange<'a>(code: &'a str, client: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", support::CLIENT_CB),
        ("code_verifier", support::VERIFIER),
        ("client_id", client),
    ]
}

/// A code exchange the store fails half-way through (the code taken, the
/// refresh token not stored) gives the code back: the client's retry is
/// answered, not taken for a replay that revokes the login (an attack
/// pass: a store blip logged the user out; refreshes were given back
/// already).
#[tokio::test]
async fn a_code_exchange_the_store_fails_can_be_retried() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store.clone(), &[], |_| {}).await;
    let client = support::register(&app).await;
    let grant = a_login(&app, &client, &["mcp:tools"]);
    let grants = mcp_auth_proxy::grants::Grants::new(store.clone(), Default::default());
    let code = grants
        .issue_code(grant.clone(), support::CLIENT_CB, &support::challenge())
        .await
        .unwrap();
    let form = exchange(&code, &client);
    store.refresh_writes_down.store(true, Ordering::SeqCst);
    let (status, body) = support::token(&app, &form).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    store.refresh_writes_down.store(false, Ordering::SeqCst);
    // The store cannot say whether the login was revoked: the code is
    // given back too (a review: taken, then the retry was a replay).
    store.revocation_reads_down.store(true, Ordering::SeqCst);
    let (status, body) = support::token(&app, &form).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    store.revocation_reads_down.store(false, Ordering::SeqCst);
    let (status, body) = support::token(&app, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    // The login stands: its refresh token works.
    let (status, body) = refresh_at(&app, &client, &refresh, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    // Once exchanged, the code is spent: a replay revokes, as before.
    let (status, body) = support::token(&app, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = refresh_at(&app, &client, &next, None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the replay revoked the login: {body}"
    );

    // A code given back keeps the end it was issued with (a review: each
    // give-back gave it a whole new lifetime), and is refused once its
    // login was revoked meanwhile (a replay seen while it was out).
    let short = mcp_auth_proxy::grants::Grants::new(
        store.clone(),
        mcp_auth_proxy::grants::GrantTimes {
            code: Duration::from_secs(3),
            ..Default::default()
        },
    );
    let second = a_login(&app, &client, &["mcp:tools"]);
    let code2 = short
        .issue_code(second.clone(), support::CLIENT_CB, &support::challenge())
        .await
        .unwrap();
    let form2 = exchange(&code2, &client);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    store.refresh_writes_down.store(true, Ordering::SeqCst);
    let (status, _) = support::token(&app, &form2).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    store.refresh_writes_down.store(false, Ordering::SeqCst);
    let code_key = format!(
        "proxy:code:{}",
        mcp_auth_proxy::keys::digest_b64(code2.as_bytes())
    );
    let left = store.remaining(&code_key).expect("given back");
    assert!(left <= Duration::from_secs(2), "{left:?}");
    grants.revoke_family(&second.family).await.unwrap();
    let (status, body) = support::token(&app, &form2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_description"], "the login was revoked");
}

/// The facade's access tokens are checked against their login's
/// revocation: a revoked login's token is refused (once the second its
/// state is kept has passed), and a store that cannot say answers 503
/// (unavailable), never lets the token through unchecked.
#[tokio::test]
async fn access_tokens_are_checked_against_their_logins_revocation() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store.clone(), &[], |_| {}).await;
    let client = support::register(&app).await;
    let grant = a_login(&app, &client, &["mcp:tools"]);
    let family = grant.family.clone();
    let grants = mcp_auth_proxy::grants::Grants::new(store.clone(), Default::default());
    let refresh = grants.issue_refresh(&grant).await.unwrap();
    let (status, body) = refresh_at(&app, &client, &refresh, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let req = mcp_auth_core::AuthRequest::builder()
        .header(
            "authorization",
            &format!("Bearer {}", body["access_token"].as_str().unwrap()),
        )
        .build();
    let tokens = app.proxy.authenticator().unwrap();
    use mcp_auth_core::Authenticator as _;
    let who = tokens.authenticate(&req).await.unwrap();
    assert_eq!(tokens.still_valid(&who).await, Ok(true));
    // Not the facade's to judge: another issuer's principal stands.
    let elsewhere =
        mcp_auth_core::Principal::new("someone", "oauth2").with_issuer("https://elsewhere.example");
    assert_eq!(tokens.still_valid(&elsewhere).await, Ok(true));
    grants.revoke_family(&family).await.unwrap();
    // Within the second its state is kept: still the answer read before.
    assert!(tokens.authenticate(&req).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = tokens.authenticate(&req).await;
    assert!(
        matches!(refused, Err(mcp_auth_core::AuthError::InvalidToken { .. })),
        "{refused:?}"
    );
    // What it opened (an event stream) ends at its next check.
    assert_eq!(tokens.still_valid(&who).await, Ok(false));
    assert_eq!(tokens.still_valid(&elsewhere).await, Ok(true));
    // A store that cannot answer: 503, for a login not read lately.
    let fresh = app.proxy.authenticator().unwrap();
    store.reads_down.store(true, Ordering::SeqCst);
    let down = fresh.authenticate(&req).await;
    assert!(
        matches!(down, Err(mcp_auth_core::AuthError::Unavailable { .. })),
        "{down:?}"
    );
}

/// A scope taken out of `MCP_OAUTH_SCOPES_SUPPORTED` after a login is not
/// granted again by a refresh (an attack pass: a refresh re-issued the
/// scopes of the login for up to 90 days, though the server said at start
/// that its users could never hold them), and stays out of the refresh
/// tokens after it.
#[tokio::test]
async fn a_refresh_grants_only_what_is_offered_now() {
    let store = Arc::new(ClockStore::default());
    let narrowed = start_local(
        store.clone(),
        &[("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools")],
        |_| {},
    )
    .await;
    let client = support::register(&narrowed).await;
    // A refresh token from a login when mcp:admin was offered too.
    let grant = a_login(&narrowed, &client, &["mcp:tools", "mcp:admin"]);
    let grants = mcp_auth_proxy::grants::Grants::new(store.clone(), Default::default());
    let mut refresh = grants.issue_refresh(&grant).await.unwrap();
    let verifier = narrowed.proxy.verifier().unwrap();
    for round in 0..2 {
        let (status, body) = refresh_at(&narrowed, &client, &refresh, None).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {body}");
        assert_eq!(body["scope"], "mcp:tools", "round {round}: {body}");
        let claims = verifier
            .verify(body["access_token"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(
            claims.scopes(),
            vec!["mcp:tools".to_owned()],
            "round {round}"
        );
        refresh = body["refresh_token"].as_str().unwrap().to_owned();
    }
    // A client that sends its granted scopes with each refresh gets what
    // is left of them (a review: it was refused for good, as widening);
    // one asking for withdrawn scopes only is refused, its token kept.
    let refresh_asking = |refresh: String, scope: &'static str| {
        let (narrowed, client) = (&narrowed, client.clone());
        async move { refresh_at(narrowed, &client, &refresh, Some(scope)).await }
    };
    let mut refresh = grants.issue_refresh(&grant).await.unwrap();
    // Twice: the second refresh starts from the grant the first shrank (a
    // review: it was refused as widening).
    for _ in 0..2 {
        let (status, body) = refresh_asking(refresh.clone(), "mcp:tools mcp:admin").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "mcp:tools", "{body}");
        refresh = body["refresh_token"].as_str().unwrap().to_owned();
    }
    let (status, body) = refresh_asking(refresh.clone(), "mcp:admin").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{body}"
    );
    let (status, body) = refresh_asking(refresh, "mcp:tools").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the refused refresh kept its token: {body}"
    );
}

/// Authorization requests past an address's budget get a page with 429
/// and `Retry-After`, never a redirect.
#[tokio::test]
async fn authorization_requests_past_the_budget_are_told_when_to_come_back() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store, &[], |opts| opts.authorizations_per_minute = 2).await;
    let client = support::register(&app).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = authorize_url(&app, &client, &[]);
    for _ in 0..2 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get(header::LOCATION).is_none());
    let wait: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

/// An authorization request may not give a parameter twice (RFC 6749
/// §3.1): the client or the return address given twice gets a page, never
/// a redirect; any other parameter, `invalid_request` back at the client
/// (a pre-registered one: a client anyone may register gets a page for
/// its errors until the browser approved it, see `facade.rs`).
#[tokio::test]
async fn authorization_requests_with_a_repeated_parameter_are_refused() {
    let store = Arc::new(ClockStore::default());
    let app = start_local(store, &[], |opts| {
        opts.preregistered
            .push(mcp_auth_proxy::clients::ClientInfo::preregistered(
                "backend",
                "Backend",
                vec![support::CLIENT_CB.to_owned()],
            ));
    })
    .await;
    let client = "backend".to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = authorize_url(&app, &client, &[]);
    for extra in [
        format!("&client_id={client}"),
        "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback".to_owned(),
        // Also behind another repeated parameter.
        format!("&state=another&client_id={client}"),
    ] {
        let r = http.get(format!("{url}{extra}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{extra}");
        assert!(r.headers().get(header::LOCATION).is_none(), "{extra}");
    }
    let r = http
        .get(format!("{url}&state=another"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = url::Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    let error = back
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned());
    assert_eq!(error.as_deref(), Some("invalid_request"), "{back}");
    // A second resource: `invalid_target`; the same one again counts once.
    let ours = url::form_urlencoded::byte_serialize(format!("{}/mcp", app.base).as_bytes())
        .collect::<String>();
    for (extra, want) in [
        (
            "&resource=https%3A%2F%2Fother.example%2Fmcp".to_owned(),
            Some("invalid_target"),
        ),
        (format!("&resource={ours}"), None),
    ] {
        let r = http.get(format!("{url}{extra}")).send().await.unwrap();
        let error = r
            .headers()
            .get(header::LOCATION)
            .and_then(|l| url::Url::parse(l.to_str().unwrap()).ok())
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "error")
                    .map(|(_, v)| v.into_owned())
            });
        assert_eq!(error.as_deref(), want, "{extra}");
    }
    // The request as it was: the consent page.
    assert!(consent_page(&authorize(&app, &client, None).await));
}

/// A single-word app scheme (Cursor's `cursor://…` callback) is refused at
/// registration unless `MCP_PROXY_REDIRECT_SCHEMES` names it; then the
/// login goes through the consent page, which names the app's scheme and
/// lets its form end there, and a denial comes back to that URI.
#[tokio::test]
async fn an_app_scheme_redirect_is_accepted_only_when_allowed() {
    const APP_CB: &str = "cursor://anysphere.cursor-retrieval/oauth/callback";
    let register = |app: &Local| {
        let r = reqwest::Client::new()
            .post(format!("{}/oauth/register", app.base))
            .json(&serde_json::json!({
                "client_name": "Cursor",
                "redirect_uris": [APP_CB],
                "token_endpoint_auth_method": "none",
            }))
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let app = start_local(Arc::new(ClockStore::default()), &[], |_| {}).await;
    let (status, body) = register(&app).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_redirect_uri", "{body}");
    let why = body["error_description"].as_str().unwrap();
    assert!(why.starts_with("redirect_uris[0] "), "{why}");
    assert!(!why.contains("anysphere"), "never the URI: {why}");

    let app = start_local(
        Arc::new(ClockStore::default()),
        &[("MCP_PROXY_REDIRECT_SCHEMES", "Cursor, windsurf:")],
        |_| {},
    )
    .await;
    let (status, body) = register(&app).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["redirect_uris"][0], APP_CB);
    let client = body["client_id"].as_str().unwrap();
    let url = support::authorize_url(&app, client, &[]).replace(
        &url::form_urlencoded::byte_serialize(support::CLIENT_CB.as_bytes()).collect::<String>(),
        &url::form_urlencoded::byte_serialize(APP_CB.as_bytes()).collect::<String>(),
    );
    let mut browser = support::Browser::new();
    let page = browser.get(&url).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9 cursor:"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("opens <code>cursor:</code> links"), "{html}");
    let denied = browser
        .post_form(
            &format!("{}/oauth/consent", app.base),
            &[
                ("csrf", &support::field(&html, "csrf")),
                ("request", &support::field(&html, "request")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    let to = denied.headers()[header::LOCATION].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{APP_CB}?error=access_denied"))
            && to.contains("state=client-state-1"),
        "{to}"
    );

    // Web and browser schemes cannot be allowed; the error names the setting.
    for bad in ["javascript", "https", "data:", "my app"] {
        let vars =
            support::local_settings("http://127.0.0.1:1", &[("MCP_PROXY_REDIRECT_SCHEMES", bad)]);
        let url: url::Url = "http://127.0.0.1:1/mcp".parse().unwrap();
        let err = mcp_auth_proxy::settings::ProxySettings::from_settings(&vars, &url)
            .err()
            .unwrap_or_else(|| panic!("{bad} allowed"));
        assert!(
            err.to_string().contains("MCP_PROXY_REDIRECT_SCHEMES"),
            "{err}"
        );
    }
}

/// An approval sooner than a person could have read the consent page is
/// refused, and spends the login: against double-clickjacking (an attack
/// pass, in Chromium: a page asks for a double-click and opens the consent
/// page on its first click, so the second lands on Allow and an attacker's
/// client gets the user's tokens). Denying is never held back, and an
/// approval once the page has been up goes on to the provider.
#[tokio::test]
async fn an_approval_sooner_than_the_page_can_be_read_is_refused() {
    let app = start_local(Arc::new(MemoryStore::default()), &[], |_| {}).await;
    let client = support::register(&app).await;
    let mut browser = support::Browser::new();
    let consent = async |browser: &mut support::Browser, html: &str, decision: &str| {
        browser
            .post_form(
                &format!("{}/oauth/consent", app.base),
                &[
                    ("csrf", &support::field(html, "csrf")),
                    ("request", &support::field(html, "request")),
                    ("decision", decision),
                ],
            )
            .await
    };
    let page = async |browser: &mut support::Browser| {
        let page = browser.get(&authorize_url(&app, &client, &[])).await;
        assert_eq!(page.status(), StatusCode::OK);
        page.text().await.unwrap()
    };

    // A prefetch would make the page, and start its time, before anyone
    // sees it: not served.
    for (name, value) in [("sec-purpose", "prefetch"), ("purpose", "prefetch")] {
        let r = reqwest::Client::new()
            .get(authorize_url(&app, &client, &[]))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert!(r.headers().get(header::SET_COOKIE).is_none());
    }

    let html = page(&mut browser).await;
    let quick = consent(&mut browser, &html, "allow").await;
    assert_eq!(quick.status(), StatusCode::BAD_REQUEST);
    assert!(quick.headers().get(header::LOCATION).is_none());
    let text = quick.text().await.unwrap();
    assert!(text.contains("Approval too quick"), "{text}");
    // Spent: the same form, however late, finds nothing.
    tokio::time::sleep(support::READ_THE_PAGE).await;
    let again = consent(&mut browser, &html, "allow").await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("Request expired"));

    let html = page(&mut browser).await;
    let denied = consent(&mut browser, &html, "deny").await;
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    let to = denied.headers()[header::LOCATION].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{}?error=access_denied", support::CLIENT_CB)),
        "{to}"
    );

    let html = page(&mut browser).await;
    tokio::time::sleep(support::READ_THE_PAGE).await;
    let allowed = consent(&mut browser, &html, "allow").await;
    assert_eq!(allowed.status(), StatusCode::SEE_OTHER);
    let to = allowed.headers()[header::LOCATION].to_str().unwrap();
    assert!(to.starts_with(support::LOCAL_PROVIDER_AUTH), "{to}");
}
