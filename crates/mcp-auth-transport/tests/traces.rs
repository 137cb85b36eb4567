//! The request span names the JSON-RPC method and the tool also when
//! neither the metrics nor the audit log are on (only traces are), in a
//! process of its own (no `metrics` recorder is installed here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use axum::{body::Body, response::Response};
use http::{Request, StatusCode};
use mcp_auth_strategies::ApiKeyAuthenticator;
use mcp_auth_transport::{HttpConfig, McpHttpApp};
use tower::ServiceExt;
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, layer::SubscriberExt, registry::LookupSpan};

const KEY: &str = "traces-test-key-0123456789";

/// The fields recorded on `mcp.request` spans, as (name, value).
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(String, String)>>>);

struct Fields<'a>(&'a Recorded);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .0
            .lock()
            .unwrap()
            .push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .0
            .lock()
            .unwrap()
            .push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "mcp.request" {
            attrs.record(&mut Fields(self));
        }
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if ctx.span(id).is_some_and(|s| s.name() == "mcp.request") {
            values.record(&mut Fields(self));
        }
    }
}

async fn ok(_: Request<Body>) -> Result<Response, Infallible> {
    Ok(Response::new(Body::from("{}")))
}

#[tokio::test]
async fn a_traced_request_names_its_method_and_tool_without_metrics_or_audit() {
    let recorded = Recorded::default();
    let _traced =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));
    let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
    let app = McpHttpApp::new(config, ApiKeyAuthenticator::from_list(KEY).unwrap()).unwrap();
    let req = Request::post("/mcp")
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))))
        .header("host", "127.0.0.1:8001")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", KEY)
        .body(Body::from(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
        ))
        .unwrap();
    let resp = app
        .router(tower::service_fn(ok))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let fields = recorded.0.lock().unwrap().clone();
    for want in [
        ("mcp.method", "tools/call"),
        ("mcp.tool", "echo"),
        ("auth.decision", "allow"),
    ] {
        assert!(
            fields.iter().any(|(k, v)| (k.as_str(), v.as_str()) == want),
            "{want:?} not in {fields:?}"
        );
    }
}
