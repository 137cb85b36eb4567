//! The Prometheus exporter of the HTTP stack, in a process of its own (the
//! recorder is global): what the MCP routes count, the bounded tool label,
//! and the token on `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use axum::{body::Body, response::Response};
use http::{Request, StatusCode};
use mcp_auth_strategies::ApiKeyAuthenticator;
use mcp_auth_transport::{HttpConfig, McpHttpApp, observe::PrometheusMetrics};
use tower::ServiceExt;

const KEY: &str = "metrics-test-key-0123456789";
const TOKEN: &str = "scrape-token-0123456789abcdef";

/// Stands in for the MCP service: answers every request with 200.
async fn ok(_: Request<Body>) -> Result<Response, Infallible> {
    Ok(Response::new(Body::from("{}")))
}

fn call(tool: &str, key: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/mcp")
        // The peer, as `mcp_auth_transport::serve` puts it on each request.
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))))
        .header("host", "127.0.0.1:8001")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    );
    req.body(Body::from(body)).unwrap()
}

/// A response's body as text.
async fn body_text(resp: Response) -> String {
    String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

/// The value of the series `line_start` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn counts_decisions_and_tools_under_bounded_labels_behind_a_token() {
    let per_request = PerRequest::new();
    per_request.before_the_recorder().await;
    let metrics = PrometheusMetrics::install().unwrap();
    let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
    let app = McpHttpApp::new(config, ApiKeyAuthenticator::from_list(KEY).unwrap())
        .unwrap()
        .with_known_tools(["echo"]);
    let router = app.router(tower::service_fn(ok));
    for req in [
        call("echo", Some(KEY)),
        call("echo", Some(KEY)),
        // A name the server never declared: counted as `other`, so a
        // client cannot mint label values.
        call("made-up-name-4711", Some(KEY)),
        call("echo", None),
        call("echo", Some("wrong-key-0123456789abcdef")),
    ] {
        router.clone().oneshot(req).await.unwrap();
    }

    let scrape = app.metrics_router(&metrics, Some(TOKEN.to_owned()));
    let get = |auth: Option<&str>| {
        let mut r = Request::get("/metrics");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(Body::empty()).unwrap()
    };
    for bad in [None, Some("Bearer wrong"), Some(&*format!("Basic {TOKEN}"))] {
        let resp = scrape.clone().oneshot(get(bad)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    // An empty token (a caller's mistake) opens nothing.
    let empty = app.metrics_router(&metrics, Some(String::new()));
    for bad in [None, Some("Bearer "), Some("Bearer")] {
        let resp = empty.clone().oneshot(get(bad)).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "empty token, {bad:?}"
        );
    }
    // The scheme is case-insensitive (RFC 9110).
    let lower = scrape
        .clone()
        .oneshot(get(Some(&format!("bearer {TOKEN}"))))
        .await
        .unwrap();
    assert_eq!(lower.status(), StatusCode::OK);
    let resp = scrape
        .clone()
        .oneshot(get(Some(&format!("Bearer {TOKEN}"))))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = body_text(resp).await;

    let has = |series: &str, want: f64| {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    };
    has(
        r#"mcp_auth_tool_calls_total{tool="echo",outcome="ok"}"#,
        2.0,
    );
    has(
        r#"mcp_auth_tool_calls_total{tool="other",outcome="ok"}"#,
        1.0,
    );
    // The two refused at authentication: their bodies are never read for
    // the metrics, and they name no tool in a header.
    assert_eq!(
        value(
            &text,
            r#"mcp_auth_tool_calls_total{tool="echo",outcome="error"}"#
        ),
        None
    );
    has(
        r#"mcp_auth_authentications_total{strategy="api_key",outcome="ok"}"#,
        3.0,
    );
    has(
        r#"mcp_auth_authentications_total{strategy="api_key",outcome="invalid_token"}"#,
        1.0,
    );
    has(
        r#"mcp_auth_authentications_total{strategy="api_key",outcome="missing"}"#,
        1.0,
    );
    has(r#"mcp_auth_http_requests_total{outcome="ok"}"#, 3.0);
    has(
        r#"mcp_auth_http_requests_total{outcome="unauthorized"}"#,
        2.0,
    );
    has(
        r#"mcp_auth_http_request_duration_seconds_count{outcome="ok"}"#,
        3.0,
    );
    // The app's default store is metered.
    assert!(text.contains(r#"mcp_auth_store_operation_duration_seconds_count{op="hit"}"#));
    assert!(text.contains("# HELP mcp_auth_authentications_total"));
    for secret in [KEY, "wrong-key", "made-up-name", TOKEN] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    a_scrape_reports_each_readiness_check_and_key_set_age(&metrics).await;
    // (Last: its requests would move the counts above.)
    an_audit_layer_around_the_app_still_names_the_caller().await;
    per_request.after_the_recorder(&metrics).await;
    // (After: it asks the store, which the line above counts exactly.)
    ready_asks_the_store_at_most_once_a_second(&metrics).await;
}

/// Series recorded on nearly every request outside the HTTP layers: the
/// verified-token cache and the store's operations, made before the
/// recorder is installed and used on both sides of it.
struct PerRequest {
    verifier: mcp_auth_strategies::JwtVerifier,
    alice: String,
    bob: String,
    store: mcp_auth_session::SharedStore,
}

impl PerRequest {
    fn new() -> Self {
        use mcp_auth_strategies::{Algorithm, Audience, JwtVerifier, VerifyKey};
        let secret = b"metrics-test-secret-0123456789ab";
        let verifier = JwtVerifier::builder()
            .static_keys(vec![VerifyKey::hmac(secret, Algorithm::HS256).unwrap()])
            .any_issuer()
            .audience(Audience::Unchecked)
            .build()
            .unwrap();
        let token = |sub: &str| {
            let exp = jsonwebtoken::get_current_timestamp() + 600;
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &serde_json::json!({"sub": sub, "exp": exp}),
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let store =
            mcp_auth_session::metered(std::sync::Arc::new(mcp_auth_session::MemoryStore::new()));
        Self {
            verifier,
            alice: token("alice"),
            bob: token("bob"),
            store,
        }
    }

    /// Before the recorder: alice once missed, once hit; one store read.
    /// Nothing of it may be counted, nor any handle kept from it.
    async fn before_the_recorder(&self) {
        self.verifier.verify(&self.alice).await.unwrap();
        self.verifier.verify(&self.alice).await.unwrap();
        self.store.kv_get("nothing-here").await.unwrap();
    }

    /// After it: alice three hits; bob one miss, one hit; five reads and a
    /// delete. Every one of them counts, under its own labels (a handle kept
    /// from before the install, or the wrong one of a pair, would show).
    async fn after_the_recorder(&self, metrics: &PrometheusMetrics) {
        for t in [&self.alice, &self.alice, &self.alice, &self.bob, &self.bob] {
            self.verifier.verify(t).await.unwrap();
        }
        for _ in 0..5 {
            self.store.kv_get("nothing-here").await.unwrap();
        }
        self.store.kv_delete("nothing-here").await.unwrap();

        let text = metrics.render();
        for (series, want) in [
            (
                r#"mcp_auth_token_cache_total{cache="jwt",result="hit"}"#,
                4.0,
            ),
            (
                r#"mcp_auth_token_cache_total{cache="jwt",result="miss"}"#,
                1.0,
            ),
            (
                r#"mcp_auth_store_operation_duration_seconds_count{op="kv_get"}"#,
                5.0,
            ),
            (
                r#"mcp_auth_store_operation_duration_seconds_count{op="kv_delete"}"#,
                1.0,
            ),
        ] {
            assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
        }
    }
}

/// Readiness at scrape time: `mcp_auth_ready` per check, and the age of
/// each cached key set.
struct Checks;

#[async_trait::async_trait]
impl mcp_auth_core::Authenticator for Checks {
    async fn authenticate(
        &self,
        _req: &mcp_auth_core::AuthRequest,
    ) -> Result<mcp_auth_core::Principal, mcp_auth_core::AuthError> {
        Err(mcp_auth_core::AuthError::MissingCredentials)
    }
    fn readiness(&self) -> Vec<mcp_auth_core::Readiness> {
        let mut keys = mcp_auth_core::Readiness::new("oauth2 keys", true, "2 key(s)");
        keys.age = Some(std::time::Duration::from_secs(40));
        vec![
            keys,
            mcp_auth_core::Readiness::new("cognito keys", false, "none"),
        ]
    }
}

/// (Run by the test above: the recorder is one per process.)
async fn a_scrape_reports_each_readiness_check_and_key_set_age(metrics: &PrometheusMetrics) {
    let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
    let app = McpHttpApp::new(config, Checks).unwrap();
    let resp = app
        .metrics_router(metrics, None)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = body_text(resp).await;
    for (series, want) in [
        (r#"mcp_auth_ready{check="oauth2 keys"}"#, 1.0),
        (r#"mcp_auth_ready{check="cognito keys"}"#, 0.0),
        (r#"mcp_auth_jwks_age_seconds{check="oauth2 keys"}"#, 40.0),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    }
    assert_eq!(
        value(&text, r#"mcp_auth_jwks_age_seconds{check="cognito keys"}"#),
        None,
        "no age without keys"
    );
}

/// `/ready` is unauthenticated: twenty calls at once or in a row ask the
/// session store (counted by its metered wrapper) once, not twenty times.
async fn ready_asks_the_store_at_most_once_a_second(metrics: &PrometheusMetrics) {
    let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
    let app = McpHttpApp::new(config, ApiKeyAuthenticator::from_list(KEY).unwrap()).unwrap();
    let router = app.router(tower::service_fn(ok));
    let scrape = app.metrics_router(metrics, None);
    let asked = || async {
        let resp = scrape
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let text = body_text(resp).await;
        value(
            &text,
            r#"mcp_auth_store_operation_duration_seconds_count{op="kv_get"}"#,
        )
        .unwrap_or(0.0)
    };
    let before = asked().await;
    let ready = || {
        Request::get("/ready")
            .header("host", "127.0.0.1:8001")
            .body(Body::empty())
            .unwrap()
    };
    let at_once: Vec<_> = (0..10).map(|_| router.clone().oneshot(ready())).collect();
    for resp in futures::future::join_all(at_once).await {
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    }
    for _ in 0..10 {
        assert_eq!(
            router.clone().oneshot(ready()).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let times = asked().await - before;
    assert!(
        (1.0..=2.0).contains(&times),
        "asked the store {times} times"
    );
}

/// An `AuditLayer` of one's own around an app that observes (a recorder is
/// installed here): the app's layers note who was let in and what a tool
/// needed in the slot the outer layer put on the request, and its record
/// names them.
async fn an_audit_layer_around_the_app_still_names_the_caller() {
    use mcp_auth_transport::audit::{AuditLayer, MemoryAudit};
    let mut config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
    config.tool_scopes = mcp_auth_transport::ToolScopes::new().require("admin", ["admin"]);
    let app = McpHttpApp::new(config, ApiKeyAuthenticator::from_list(KEY).unwrap()).unwrap();
    let sink = MemoryAudit::default();
    let router = app.router(tower::service_fn(ok)).layer(AuditLayer::new(
        std::sync::Arc::new(sink.clone()),
        Vec::new(),
        1 << 20,
    ));
    let allowed = router
        .clone()
        .oneshot(call("echo", Some(KEY)))
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let refused = router.oneshot(call("admin", Some(KEY))).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let records = sink.records();
    let seen: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.status,
                r.strategy.as_deref(),
                r.subject.is_some(),
                r.tool.as_deref(),
                r.scopes_required.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (200, Some("api_key"), true, Some("echo"), vec![]),
            (
                403,
                Some("api_key"),
                true,
                Some("admin"),
                vec!["admin".to_owned()]
            ),
        ],
        "{records:?}"
    );
}
