#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! What the metrics and the audit log cost per request: the whole HTTP
//! stack of `McpHttpApp` (Host/Origin guard, the observing layer, which
//! also writes the audit records, API-key authentication, limits) in front
//! of a service that
//! answers `{}`, driven in process, with both off, each on, and both on.
//! Measured in CPU time of the whole process, so the audit log's writer
//! thread (which serializes, hashes and appends each record) and the
//! metrics' upkeep thread count too; each batch ends with the audit log
//! flushed.
//!
//! ```text
//! cargo bench -p mcp-auth-transport --features prometheus --bench observed
//! BENCH_WORKERS=2 cargo bench -p mcp-auth-transport --features prometheus --bench observed -- stack/
//! ```
//!
//! With `BENCH_WORKERS=N` the stack group runs on N worker threads with N
//! request loops at once, so the counters and the audit log's queue are
//! shared between threads as in the server (the time is still per request).
//!
//! The recorder is global: the modes run in order, those without metrics
//! before it is installed. The allocator is the one `mcp-auth-server`
//! links (jemalloc): records are made on the request's thread and freed on
//! the writer's, which allocators handle very differently.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{Router, body::Body, response::Response};
use cpu_time::ProcessTime;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use mcp_auth_strategies::ApiKeyAuthenticator;
use mcp_auth_transport::{
    HttpConfig, McpHttpApp,
    audit::{AuditLog, AuditSink},
    observe::PrometheusMetrics,
};
use rmcp::{
    ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};
use tower::ServiceExt;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const KEY: &str = "bench-key-0123456789abcdef";

async fn ok(_: Request<Body>) -> Result<Response, Infallible> {
    Ok(Response::new(Body::from("{}")))
}

/// The peer, as `mcp_auth_transport::serve` puts it on each request (the
/// rate limits refuse requests without one).
fn peer() -> axum::extract::ConnectInfo<std::net::SocketAddr> {
    axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)))
}

fn call() -> Request<Body> {
    Request::post("/mcp")
        .extension(peer())
        .header("host", "127.0.0.1:8001")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", KEY)
        .body(Body::from(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#,
        ))
        .expect("request")
}

/// A one-tool MCP server, for the stack with rmcp's service behind it.
#[derive(Clone)]
struct Hello {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Hello {
    #[tool(description = "Says hello")]
    fn hello(&self) -> String {
        "hello".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Hello {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn post(body: &str, session: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/mcp")
        .extension(peer())
        .header("host", "127.0.0.1:8001")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", KEY)
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.body(Body::from(body.to_owned())).expect("request")
}

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hello","arguments":{}}}"#;

/// The app with rmcp behind it and a session opened: the router and the
/// session id.
async fn rmcp_app(audit: Option<Arc<AuditLog>>) -> (Router, String) {
    let router = app("hello", audit).rmcp_router(|| {
        Ok(Hello {
            tool_router: Hello::tool_router(),
        })
    });
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    let resp = router
        .clone()
        .oneshot(post(init, None))
        .await
        .expect("initialize");
    assert!(resp.status().is_success(), "initialize: {}", resp.status());
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .expect("session id")
        .to_owned();
    axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let resp = router
        .clone()
        .oneshot(post(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            Some(&sid),
        ))
        .await
        .expect("initialized");
    assert!(resp.status().is_success(), "initialized: {}", resp.status());
    (router, sid)
}

/// The app (API-key authentication, `tool` declared), with the audit log
/// when given one.
fn app(tool: &str, audit: Option<Arc<AuditLog>>) -> McpHttpApp {
    let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().expect("url"));
    let app = McpHttpApp::new(config, ApiKeyAuthenticator::from_list(KEY).expect("key"))
        .expect("app")
        .with_known_tools([tool]);
    match audit {
        Some(log) => app.with_audit(log as Arc<dyn AuditSink>),
        None => app,
    }
}

fn router(audit: Option<Arc<AuditLog>>) -> Router {
    app("echo", audit).router(tower::service_fn(ok))
}

fn bench(c: &mut Criterion) {
    // `BENCH_WORKERS=N`: the stack group on N worker threads, N request
    // loops at once (the counters and the audit queue shared between them).
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rt = if workers > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut metrics = None;
    let mut g = c.benchmark_group("stack");
    g.measurement_time(Duration::from_secs(8));
    for mode in ["off", "audit", "metrics", "both"] {
        if mode == "metrics" {
            metrics = Some(PrometheusMetrics::install().expect("recorder"));
        }
        let log = matches!(mode, "audit" | "both").then(|| {
            let path = dir.path().join(format!("{mode}.jsonl"));
            Arc::new(AuditLog::open(path.to_str().expect("path")).expect("audit log"))
        });
        let app = router(log.clone());
        g.bench_function(mode, |b| {
            b.iter_custom(|iters| {
                let start = ProcessTime::now();
                rt.block_on(async {
                    let loops = workers as u64;
                    let mut tasks = Vec::new();
                    for i in 0..loops {
                        let app = app.clone();
                        // `iters` in all, split between the loops.
                        let n = iters / loops + u64::from(i < iters % loops);
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..n {
                                let resp = app.clone().oneshot(call()).await.expect("response");
                                assert!(resp.status().is_success(), "{}", resp.status());
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.expect("loop");
                    }
                });
                if let Some(l) = &log {
                    l.flush();
                }
                start.elapsed()
            })
        });
    }
    g.finish();

    // The same with rmcp's service, a session and a tool behind the stack
    // (the recorder stays installed: "off" and "audit" here count metrics
    // too, so only the audit log's share is told apart).
    let mut g = c.benchmark_group("rmcp");
    g.measurement_time(Duration::from_secs(8));
    for mode in ["metrics", "both"] {
        let log = (mode == "both").then(|| {
            let path = dir.path().join(format!("rmcp-{mode}.jsonl"));
            Arc::new(AuditLog::open(path.to_str().expect("path")).expect("audit log"))
        });
        let (app, sid) = rt.block_on(rmcp_app(log.clone()));
        g.bench_function(mode, |b| {
            b.iter_custom(|iters| {
                let start = ProcessTime::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let resp = app
                            .clone()
                            .oneshot(post(CALL, Some(&sid)))
                            .await
                            .expect("response");
                        assert!(resp.status().is_success(), "{}", resp.status());
                        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                            .await
                            .expect("body");
                        assert!(body.windows(5).any(|w| w == b"hello"));
                    }
                });
                if let Some(l) = &log {
                    l.flush();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    drop(metrics);
}

criterion_group!(benches, bench);
criterion_main!(benches);
