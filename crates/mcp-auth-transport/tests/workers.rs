//! Sessions' workers and event streams, in process: a worker one replica
//! restored for a session that then ended through the other (two replicas
//! over one store) does not outlive the session (it would run until rmcp's
//! idle timeout, outside the caps), and an event stream does not outlive
//! the credential that opened it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use http::Request;
use mcp_auth_core::{AuthError, AuthRequest, ChallengeScheme, FnAuthenticator, Principal};
use mcp_auth_session::{MemoryStore, SharedStore};
use mcp_auth_strategies::ApiKeyAuthenticator;
use mcp_auth_transport::{HttpConfig, McpHttpApp};
use rmcp::{
    ServerHandler, handler::server::router::tool::ToolRouter, tool, tool_handler, tool_router,
};
use tower::ServiceExt;

const KEY: &str = "replica-test-key-0123456789";
const URL: &str = "http://127.0.0.1:8001/mcp";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

/// Counts the handlers alive (one per worker).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Noop {
    tool_router: ToolRouter<Self>,
    _live: Arc<Live>,
}

#[tool_router]
impl Noop {
    #[tool(description = "Does nothing.")]
    fn noop(&self) -> String {
        "ok".into()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Noop {}

/// A replica over `store` (parking off, the library's default; sessions
/// expire after `idle` unused) and its live handlers. Keep the app: its
/// background tasks stop with it.
fn replica(store: &SharedStore, idle: Duration) -> (McpHttpApp, Router, Arc<AtomicUsize>) {
    replica_with(store, idle, ApiKeyAuthenticator::from_list(KEY).unwrap())
}

/// [`replica`] with `auth`.
fn replica_with(
    store: &SharedStore,
    idle: Duration,
    auth: impl mcp_auth_core::Authenticator + 'static,
) -> (McpHttpApp, Router, Arc<AtomicUsize>) {
    let mut config = HttpConfig::new(URL.parse().unwrap());
    config.session_limits.max_per_principal = 2;
    config.session_limits.idle_timeout = idle;
    let app = McpHttpApp::new(config, auth)
        .unwrap()
        .with_store(store.clone());
    let live = Arc::new(AtomicUsize::new(0));
    let counted = live.clone();
    let router = app.rmcp_router(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(Noop {
            tool_router: Noop::tool_router(),
            _live: Arc::new(Live(counted.clone())),
        })
    });
    (app, router, live)
}

fn req(method: &str, sid: Option<&str>, body: &'static str) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri("/mcp")
        .header("host", "127.0.0.1:8001")
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    if let Some(s) = sid {
        b = b.header("mcp-session-id", s);
    }
    b.body(Body::from(body)).unwrap()
}

/// A `GET` opening session `sid`'s event stream.
fn stream_req(sid: &str) -> Request<Body> {
    let mut get = req("GET", Some(sid), "");
    get.headers_mut().insert(
        "accept",
        http::HeaderValue::from_static("text/event-stream"),
    );
    get
}

/// The status, and the session the answer names.
async fn send(r: &Router, q: Request<Body>) -> (u16, Option<String>) {
    let resp = r.clone().oneshot(q).await.unwrap();
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
    (status, sid)
}

/// Opened on A, used on B (restored there), ended on A: `n` times.
async fn open_use_end(a: &Router, b: &Router, n: usize, back_to_b: bool) {
    for _ in 0..n {
        let (status, sid) = send(a, req("POST", None, INIT)).await;
        assert_eq!(status, 200);
        let sid = sid.unwrap();
        assert_eq!(send(b, req("POST", Some(&sid), LIST)).await.0, 200);
        assert_eq!(send(a, req("DELETE", Some(&sid), "")).await.0, 204);
        if back_to_b {
            assert_eq!(send(b, req("POST", Some(&sid), LIST)).await.0, 404);
        }
    }
}

/// Waits up to `limit` for `live` to fall to `want`; what it read last.
async fn settles(live: &AtomicUsize, want: usize, limit: Duration) -> usize {
    let start = std::time::Instant::now();
    while live.load(Ordering::SeqCst) != want && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    live.load(Ordering::SeqCst)
}

/// The owner's next request on B finds the session gone: B's worker goes
/// with the 404, not at the idle timeout (30 minutes by default; with a
/// principal capped at 2 sessions, 20 rounds left 20 workers on B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_goes_when_its_session_is_found_ended_elsewhere() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (_app_a, a, live_a) = replica(&store, Duration::from_secs(1800));
    let (_app_b, b, live_b) = replica(&store, Duration::from_secs(1800));
    open_use_end(&a, &b, 20, true).await;
    assert_eq!(settles(&live_a, 0, Duration::from_secs(2)).await, 0);
    assert_eq!(settles(&live_b, 0, Duration::from_secs(2)).await, 0);
}

/// With no request coming back to B, B still finds out: sessions idle for
/// an eighth of the idle timeout are checked against the store, and the
/// ended ones' workers closed, while a live idle session keeps its worker
/// and answers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_of_sessions_ended_elsewhere_are_closed() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    // Checked once idle for 1 s (8 s / 8); rmcp's own timeout is 8 s.
    let idle = Duration::from_secs(8);
    let (_app_a, a, _) = replica(&store, idle);
    let (_app_b, b, live_b) = replica(&store, idle);
    let (status, kept) = send(&a, req("POST", None, INIT)).await;
    assert_eq!(status, 200);
    let kept = kept.unwrap();
    assert_eq!(send(&b, req("POST", Some(&kept), LIST)).await.0, 200);
    open_use_end(&a, &b, 5, false).await;
    assert_eq!(live_b.load(Ordering::SeqCst), 6, "restored on B");
    assert_eq!(settles(&live_b, 1, Duration::from_secs(4)).await, 1);
    // Checked more than once by now, and still served by its worker.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(live_b.load(Ordering::SeqCst), 1);
    assert_eq!(send(&b, req("POST", Some(&kept), LIST)).await.0, 200);
    assert_eq!(live_b.load(Ordering::SeqCst), 1, "the same worker");
}

/// A session's event stream open on B ends when the session ends through
/// A, and B's worker goes with it (the stream's check, every 5 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_streams_worker_goes_when_its_session_ends_elsewhere() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    // rmcp's own timeout (20 s) far past the stream's check.
    let idle = Duration::from_secs(20);
    let (_app_a, a, _) = replica(&store, idle);
    let (_app_b, b, live_b) = replica(&store, idle);
    let (status, sid) = send(&a, req("POST", None, INIT)).await;
    assert_eq!(status, 200);
    let sid = sid.unwrap();
    let get = stream_req(&sid);
    let stream = b.clone().oneshot(get).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(live_b.load(Ordering::SeqCst), 1, "restored on B");
    assert_eq!(send(&a, req("DELETE", Some(&sid), "")).await.0, 204);
    let body = axum::body::to_bytes(stream.into_body(), 1 << 20);
    tokio::time::timeout(Duration::from_secs(8), body)
        .await
        .expect("the stream ended")
        .unwrap();
    assert_eq!(settles(&live_b, 0, Duration::from_secs(2)).await, 0);
}

/// Lets alice in with any `X-API-Key`; her credential stands until
/// `revoked` is set.
struct Revocable {
    revoked: Arc<std::sync::atomic::AtomicBool>,
}

#[mcp_auth_core::async_trait]
impl mcp_auth_core::Authenticator for Revocable {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        match req.headers.get("x-api-key") {
            Some(_) => Ok(Principal::new("alice", "test")),
            None => Err(AuthError::MissingCredentials),
        }
    }
    fn name(&self) -> &str {
        "test"
    }
    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        vec![ChallengeScheme::ApiKey {
            header: "X-API-Key".into(),
        }]
    }
    async fn still_valid(&self, _p: &Principal) -> Result<bool, AuthError> {
        Ok(!self.revoked.load(Ordering::SeqCst))
    }
}

/// An event stream ends at the check after the credential that opened it
/// is revoked (an attack pass: a revoked login facade token's stream kept
/// receiving until the token's expiry, up to a day), not before; the
/// session itself is left to the next request's authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_when_its_credential_is_revoked() {
    let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store: SharedStore = Arc::new(MemoryStore::new());
    // Checked every half idle timeout, at most every 5 s; rmcp's own idle
    // timeout (20 s) is far off.
    let (_app, a, _) = replica_with(
        &store,
        Duration::from_secs(20),
        Revocable {
            revoked: revoked.clone(),
        },
    );
    let (status, sid) = send(&a, req("POST", None, INIT)).await;
    assert_eq!(status, 200);
    let sid = sid.unwrap();
    let stream = a.clone().oneshot(stream_req(&sid)).await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = std::pin::pin!(axum::body::to_bytes(stream.into_body(), 1 << 20));
    let early = tokio::time::timeout(Duration::from_millis(2500), &mut body).await;
    assert!(early.is_err(), "the stream ended before any revocation");
    revoked.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(7), body)
        .await
        .expect("the stream ended after the revocation")
        .unwrap();
}

/// An event stream ends when the credential that opened it expires (it
/// went on receiving what the server sends for as long as it stayed
/// open); the session goes on with a fresh credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_when_its_credential_expires() {
    // Any X-API-Key lets alice in, for 2 s from each request; `past` lets
    // her in 10 s past its expiry (as a strategy's leeway would).
    let expiring = FnAuthenticator::new(|req: AuthRequest| async move {
        let now = std::time::SystemTime::now();
        match req.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            Some("past") => {
                Ok(Principal::new("alice", "test").with_expiry(now - Duration::from_secs(10)))
            }
            Some(_) => {
                Ok(Principal::new("alice", "test").with_expiry(now + Duration::from_secs(2)))
            }
            None => Err(AuthError::MissingCredentials),
        }
    })
    .with_scheme(ChallengeScheme::ApiKey {
        header: "X-API-Key".into(),
    });
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (_app, a, _) = replica_with(&store, Duration::from_secs(1800), expiring);
    let (status, sid) = send(&a, req("POST", None, INIT)).await;
    assert_eq!(status, 200);
    let sid = sid.unwrap();
    let get = stream_req(&sid);
    let opened = std::time::Instant::now();
    let stream = a.clone().oneshot(get).await.unwrap();
    assert_eq!(stream.status(), 200);
    let body = axum::body::to_bytes(stream.into_body(), 1 << 20);
    tokio::time::timeout(Duration::from_secs(6), body)
        .await
        .expect("the stream ended")
        .unwrap();
    let open_for = opened.elapsed();
    assert!(open_for >= Duration::from_millis(1500), "{open_for:?}");
    assert_eq!(send(&a, req("POST", Some(&sid), LIST)).await.0, 200);
    // Accepted past its expiry: the stream is not ended at once (it stays
    // a minute), or its client would reopen it again and again.
    let mut get = stream_req(&sid);
    get.headers_mut()
        .insert("x-api-key", http::HeaderValue::from_static("past"));
    let stream = a.clone().oneshot(get).await.unwrap();
    assert_eq!(stream.status(), 200);
    let body = axum::body::to_bytes(stream.into_body(), 1 << 20);
    let cut = tokio::time::timeout(Duration::from_millis(1500), body).await;
    assert!(cut.is_err(), "the stream ended at once");
}
