//! Metrics and traces of the MCP routes.
//!
//! ```no_run
//! # #[cfg(feature = "prometheus")] mod example {
//! use mcp_auth_strategies::ApiKeyAuthenticator;
//! use mcp_auth_transport::{HttpConfig, McpHttpApp, observe::PrometheusMetrics};
//! # #[derive(Clone)] struct MyServer;
//! # impl rmcp::ServerHandler for MyServer {}
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let metrics = PrometheusMetrics::install().expect("no other metrics recorder");
//! let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
//! let keys = ApiKeyAuthenticator::from_list("a-long-random-api-key").unwrap();
//! let app = McpHttpApp::new(config, keys)
//!     .expect("valid config")
//!     .with_known_tools(["echo", "whoami"]);
//! // `/metrics` on a listener of its own, loopback only (or give it a token).
//! let scrape = app.metrics_router(&metrics, None);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
//! tokio::spawn(mcp_auth_transport::serve(listener, scrape, app.cancellation_token(), std::future::pending()));
//! # Ok(()) }
//! # }
//! # fn main() {}
//! ```
//!
//! Every crate of the workspace records through the [`metrics`] facade, so
//! nothing is counted until a recorder is installed
//! ([`PrometheusMetrics::install`] with the `prometheus` feature, or any
//! other `metrics` recorder through [`install_recorder`]): the series
//! counted on every request keep handles looked up once
//! ([`mcp_auth_core::recorder`]).
//! Labels come from fixed sets (outcomes, operation names, the tools the
//! server declared): never a token, a key, a subject or an address.
//!
//! Requests to the MCP routes run inside an `mcp.request` span (debug
//! level) whose fields the layers fill in: the auth decision and outcome,
//! the strategy, the principal's subject (`enduser.id`), client id and
//! issuer, the JSON-RPC method, the tool, the session id and the status.
//! The session store's operations, JWKS fetches and token introspection are
//! its child spans. With the `otel` feature the span continues the caller's
//! W3C `traceparent` ([`otel`](crate::otel)).

use std::{
    collections::HashSet,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{body::Body, response::Response};
use futures::future::BoxFuture;
use http::{Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, field::Empty};

/// Tells the app that a `metrics` recorder is installed globally, so it
/// reads the body of each POST to the MCP endpoint for the per-tool counts
/// (`mcp_auth_tool_calls_total`) and the crates keep the handles of the
/// series they record per request ([`mcp_auth_core::recorder`]).
/// [`PrometheusMetrics::install`] and [`install_recorder`] call it; call it
/// yourself only after `metrics::set_global_recorder` succeeded. Called
/// before that (or with only a thread-local recorder), the kept handles
/// would be the no-op recorder's and those series would count nothing for
/// the rest of the process; once it is called, a thread-local recorder
/// (`metrics::with_local_recorder`) no longer sees them.
pub fn enable() {
    mcp_auth_core::recorder::mark_installed();
}

fn enabled() -> bool {
    mcp_auth_core::recorder::installed()
}

/// Installs `recorder` as the process's global `metrics` recorder, then
/// [`enable`]s what relies on one (the per-tool counts, the kept handles):
/// the way to count with a recorder other than [`PrometheusMetrics`].
/// Fails, changing nothing, when a global recorder is installed already.
///
/// ```
/// use mcp_auth_transport::observe;
///
/// observe::install_recorder(metrics::NoopRecorder).expect("the first recorder");
/// assert!(mcp_auth_core::recorder::installed());
/// assert!(observe::install_recorder(metrics::NoopRecorder).is_err(), "only once");
/// ```
pub fn install_recorder<R>(recorder: R) -> Result<(), metrics::SetRecorderError<R>>
where
    R: metrics::Recorder + Sync + 'static,
{
    metrics::set_global_recorder(recorder)?;
    enable();
    Ok(())
}

/// The label a tool gets when the server did not declare it.
pub const OTHER_TOOL: &str = "other";

/// At most this many bytes of a name the client chose (its JSON-RPC
/// method, its tool) are kept for the span and the audit record; a longer
/// one is cut (at a character boundary) and ends in `…`. Unauthenticated
/// requests are recorded too: what they send must not grow the log
/// without bound. (Tool names are 1-128 characters by MCP's guidance.)
pub(crate) const MAX_NAME: usize = 256;

/// The longest `Mcp-Session-Id` the span and the audit record keep.
pub(crate) const MAX_SESSION_ID: usize = 512;

/// `name` as kept for the span and the audit record (see [`MAX_NAME`]).
pub(crate) fn bounded(mut name: String) -> String {
    if name.len() > MAX_NAME {
        name.truncate(name.floor_char_boundary(MAX_NAME));
        name.push('…');
    }
    name
}

/// The `Mcp-Session-Id` of `headers` as the span and the audit record
/// keep it: only what MCP allows a session id to be (visible ASCII,
/// 0x21-0x7E), at most [`MAX_SESSION_ID`] bytes; anything else is left out
/// (no server handed it out: such a session is unknown, and answered 404).
pub(crate) fn session_id_of(headers: &http::HeaderMap) -> Option<String> {
    session_id_in(headers.get(crate::names::MCP_SESSION_ID))
}

/// The session a legacy SSE message names (`/messages?session_id=`), by
/// the same rule as [`session_id_of`].
fn sse_session_of(uri: &http::Uri) -> Option<String> {
    // Decoded as the handler reads it.
    let (_, v) =
        url::form_urlencoded::parse(uri.query()?.as_bytes()).find(|(k, _)| k == "session_id")?;
    is_session_id(&v).then(|| v.into_owned())
}

/// [`session_id_of`], given the header's value (looked up once by a caller
/// that also wants to know whether it was sent at all).
pub(crate) fn session_id_in(value: Option<&http::HeaderValue>) -> Option<String> {
    let v = value?.to_str().ok()?;
    is_session_id(v).then(|| v.to_owned())
}

/// Whether `v` is what MCP allows a session id to be (visible ASCII), at
/// most [`MAX_SESSION_ID`] bytes.
fn is_session_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_SESSION_ID && v.bytes().all(|b| b.is_ascii_graphic())
}

/// The HTTP method as the span records it: a standard one by name, any
/// other as `_OTHER` (OpenTelemetry's convention; a method is whatever
/// token the client sends, of any length).
fn method_label(method: &http::Method) -> &str {
    use http::Method as M;
    const KNOWN: [M; 9] = [
        M::GET,
        M::POST,
        M::DELETE,
        M::OPTIONS,
        M::HEAD,
        M::PUT,
        M::PATCH,
        M::CONNECT,
        M::TRACE,
    ];
    if KNOWN.contains(method) {
        method.as_str()
    } else {
        "_OTHER"
    }
}

/// The JSON-RPC method and tool of a request, read once from its body
/// (never from the `Mcp-Method` / `Mcp-Name` headers, which may claim
/// anything rmcp does not check) for the metrics, the span and the audit
/// record.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestFacts {
    pub(crate) method: Option<String>,
    pub(crate) tool: Option<String>,
}

impl RequestFacts {
    /// For a POST, from its body (read up to `max_body` bytes): the facts
    /// and the body to pass on, or the answer to a body that could not be
    /// read (413, 408 or 400).
    pub(crate) async fn read(
        parts: &http::request::Parts,
        body: Body,
        max_body: usize,
    ) -> Result<(Self, Body), Response> {
        if parts.method != http::Method::POST {
            return Ok((Self::default(), body));
        }
        Self::read_body(body, max_body)
            .await
            .map(|(facts, body, _)| (facts, body))
    }

    /// From the body, as [`read`](Self::read) reads it, with the tools the
    /// body calls.
    pub(crate) async fn read_body(
        body: Body,
        max_body: usize,
    ) -> Result<(Self, Body, crate::message::CalledTools), Response> {
        match axum::body::to_bytes(body, max_body).await {
            Ok(bytes) => {
                let read = crate::message::read(&bytes);
                let facts = Self {
                    method: read.method,
                    tool: read.tool,
                };
                let called = crate::message::CalledTools(read.called);
                Ok((facts, Body::from(bytes), called))
            }
            // 413 over the limit, 408 too slow, 400 cut off.
            Err(e) => Err(crate::refusal::unreadable_body(&e)),
        }
    }

    /// Writes the method and tool on `span`.
    fn record(&self, span: &tracing::Span) {
        if let Some(m) = &self.method {
            span.record("mcp.method", m.as_str());
        }
        if let Some(t) = &self.tool {
            span.record("mcp.tool", t.as_str());
        }
    }
}

/// Counts and traces each request to the MCP routes (see the [module
/// docs](self)); [`McpHttpApp`](crate::McpHttpApp) puts it in front of
/// them.
#[derive(Clone, Debug)]
pub(crate) struct ObserveLayer {
    tools: Arc<HashSet<String>>,
    /// The per-tool counters, looked up once (when [`enabled`]).
    tool_counters: Arc<std::sync::OnceLock<ToolCounters>>,
    /// The app's audit log: its records are made here too (one layer for
    /// both), from the facts this layer reads.
    audit: Option<crate::audit::AuditLayer>,
}

/// `mcp_auth_tool_calls_total` of each declared tool and of `other`, by
/// outcome (`ok`, `refused`, `error`), each looked up on its first use (a
/// series appears once counted).
#[derive(Debug)]
struct ToolCounters {
    declared: std::collections::HashMap<String, [std::sync::OnceLock<metrics::Counter>; 3]>,
    other: [std::sync::OnceLock<metrics::Counter>; 3],
}

/// The outcome labels of `mcp_auth_tool_calls_total`, in [`ToolCounters`]' order.
const TOOL_OUTCOMES: [&str; 3] = ["ok", "refused", "error"];

fn tool_counter(tool: &str, outcome: usize) -> metrics::Counter {
    let label = if tool == OTHER_TOOL {
        metrics::SharedString::const_str(OTHER_TOOL)
    } else {
        metrics::SharedString::from(tool.to_owned())
    };
    metrics::counter!("mcp_auth_tool_calls_total", "tool" => label, "outcome" => TOOL_OUTCOMES[outcome])
}

impl ObserveLayer {
    /// Counts a call of `tool` with outcome `outcome` (an index into
    /// [`TOOL_OUTCOMES`]); a tool the server did not declare counts as
    /// [`OTHER_TOOL`].
    fn count_tool(&self, tool: &str, outcome: usize) {
        if !enabled() {
            // Another recorder, or none: the macros find it.
            let label = if self.tools.contains(tool) {
                tool
            } else {
                OTHER_TOOL
            };
            tool_counter(label, outcome).increment(1);
            return;
        }
        let counters = self.tool_counters.get_or_init(|| ToolCounters {
            declared: self
                .tools
                .iter()
                .map(|t| (t.clone(), Default::default()))
                .collect(),
            other: Default::default(),
        });
        // `declared` holds exactly the declared tools: one lookup decides.
        let (label, slots) = match counters.declared.get(tool) {
            Some(slots) => (tool, slots),
            None => (OTHER_TOOL, &counters.other),
        };
        slots[outcome]
            .get_or_init(|| tool_counter(label, outcome))
            .increment(1);
    }

    /// `tools`: the names counted under their own label; `audit`: the
    /// audit log's layer, whose records this layer makes as well (the
    /// method and tool of an authenticated POST then come from
    /// [`FactsLayer`], also when no recorder is installed).
    pub(crate) fn new(tools: HashSet<String>, audit: Option<crate::audit::AuditLayer>) -> Self {
        Self {
            tools: Arc::new(tools),
            tool_counters: Arc::default(),
            audit,
        }
    }
}

/// Counts one authentication decision of `strategy`. With the recorder
/// installed ([`enabled`]) each (strategy, outcome) is looked up once; the
/// strategies are the server's own, a handful (past 64 pairs the lookups
/// are no longer kept).
pub(crate) fn count_authentication(strategy: &str, outcome: &'static str) {
    type Seen = Vec<(String, &'static str, metrics::Counter)>;
    static SEEN: std::sync::RwLock<Seen> = std::sync::RwLock::new(Vec::new());
    let lookup = || {
        metrics::counter!(
            "mcp_auth_authentications_total",
            "strategy" => strategy.to_owned(),
            "outcome" => outcome
        )
    };
    if !enabled() {
        lookup().increment(1);
        return;
    }
    let find = |seen: &Seen| {
        seen.iter()
            .find(|(s, o, _)| s == strategy && *o == outcome)
            .map(|(_, _, c)| c.clone())
    };
    let known = find(&SEEN.read().unwrap_or_else(|p| p.into_inner()));
    if let Some(c) = known {
        c.increment(1);
        return;
    }
    let mut seen = SEEN.write().unwrap_or_else(|p| p.into_inner());
    let c = match find(&seen) {
        // Another request put it there in between.
        Some(c) => c,
        None => {
            let c = lookup();
            if seen.len() < 64 {
                seen.push((strategy.to_owned(), outcome, c.clone()));
            }
            c
        }
    };
    c.increment(1);
}

impl<S> Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone)]
pub(crate) struct ObserveService<S> {
    inner: S,
    layer: ObserveLayer,
}

impl<S> Service<Request<Body>> for ObserveService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let layer = self.layer.clone();
        let span = tracing::debug_span!(
            "mcp.request",
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method_label(req.method()),
            url.path = %req.uri().path(),
            http.response.status_code = Empty,
            mcp.method = Empty,
            mcp.tool = Empty,
            mcp.session.id = Empty,
            auth.decision = Empty,
            auth.outcome = Empty,
            auth.strategy = Empty,
            enduser.id = Empty,
            auth.client_id = Empty,
            auth.issuer = Empty,
        );
        #[cfg(feature = "otel")]
        crate::otel::continue_trace(&span, req.headers());
        // What comes before the layers behind is done here, and they are
        // called from here: the service polled ready is used as it is, not
        // a clone of the whole stack below made for every request.
        let entered = span.enter();
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let sent_session = parts.headers.get(crate::names::MCP_SESSION_ID);
        // On the legacy SSE routes a session is named in the query (a
        // message's), or opened by the request (the stream's): a
        // `Mcp-Session-Id` header there names nothing the handler uses.
        let (sent_session, session) = match parts.uri.path() {
            crate::sse::MESSAGES_PATH => (false, sse_session_of(&parts.uri)),
            crate::sse::SSE_PATH => (false, None),
            _ => (sent_session.is_some(), session_id_in(sent_session)),
        };
        // The method and tool come from the body, read behind the auth
        // layer ([`FactsLayer`]) for the metrics and the audit record alike,
        // so no one's body is read before they are known; never from the
        // `Mcp-Method` / `Mcp-Name` headers, which rmcp holds to the body
        // only for some requests (from protocol version 2026-07-28,
        // requests and notifications, `Mcp-Name` possibly base64-encoded):
        // the record must say what a request did, not what it claimed.
        // The layers behind note what they decide here, when anything
        // wants it: the metrics' per-tool counts, the audit record.
        // An audit layer of one's own around the app has put its slot on
        // the request already: this layer notes into it too and reads
        // what it needs, leaving the rest for that layer's record.
        let audited = layer.audit.is_some();
        let decisions = match parts.extensions.get::<crate::auth::Decisions>() {
            Some(outer) => {
                outer.note(|d| {
                    d.audited |= audited;
                    d.body_facts_wanted = true;
                });
                Some((outer.clone(), false))
            }
            // Traced (the span goes somewhere: an OpenTelemetry exporter,
            // or debug logs) counts as wanting them too: the span names the
            // method and tool like the record does.
            None => (enabled() || audited || !span.is_disabled()).then(|| {
                let d = crate::auth::Decisions::new(audited, true);
                parts.extensions.insert(d.clone());
                (d, true)
            }),
        };
        let noted = layer
            .audit
            .as_ref()
            .map(|a| a.begin(&parts, sent_session, session.clone()));
        let is_delete = parts.method == http::Method::DELETE;
        let response = self.inner.call(Request::from_parts(parts, body));
        drop(entered);
        let fut = async move {
            let span = tracing::Span::current();
            // Recorded even if no one awaits the answer any more.
            let mut unanswered = Unanswered {
                audit: layer.audit.as_ref(),
                noted,
                decisions: decisions.as_ref(),
                taken: None,
            };
            let resp = response.await?;
            let mut decided = decided_in(decisions.as_ref());
            // Read behind the auth layer (nothing for a refused caller).
            let facts = decided.facts.take().unwrap_or_default();
            // A refusal's record waits on its body: what the layers
            // decided is kept for the guard meanwhile (a copy, for
            // refusals only).
            if unanswered.audit.is_some() && !resp.status().is_success() {
                unanswered.taken = Some(crate::auth::Decided {
                    facts: Some(facts.clone()),
                    ..decided.clone()
                });
            }
            // The guard keeps what the record needs until it is written.
            let resp = match &layer.audit {
                Some(audit) => {
                    audit
                        .finish_from(&mut unanswered.noted, &facts, decided, resp)
                        .await
                }
                None => resp,
            };
            let tool = facts.tool;
            let status = resp.status();
            let session = session
                .or_else(|| session_id_of(resp.headers()))
                .or_else(|| {
                    resp.extensions()
                        .get::<crate::sse::SseSessionOpened>()
                        .map(|s| s.0.clone())
                });
            if let Some(s) = &session {
                span.record("mcp.session.id", s.as_str());
            }
            // An integer attribute, as OpenTelemetry's conventions have it.
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
            count_request(status, started.elapsed().as_secs_f64());
            if let Some(tool) = tool {
                let outcome = match status {
                    s if s.is_success() => 0,
                    StatusCode::FORBIDDEN => 1,
                    _ => 2,
                };
                layer.count_tool(&tool, outcome);
            }
            Ok(resp)
        };
        let fut = fut.instrument(span);
        if !is_delete {
            return Box::pin(fut);
        }
        // A session's end runs to its record even if the client goes away
        // before the answer (its end in the store is not undone by that).
        Box::pin(async move {
            match tokio::spawn(fut).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Ok(crate::refusal::refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the server is shutting down",
                )),
            }
        })
    }
}

/// What the layers behind decided: taken from the request's own slot, or
/// read from the slot of an audit layer in front (which writes its own
/// record from it).
fn decided_in(decisions: Option<&(crate::auth::Decisions, bool)>) -> crate::auth::Decided {
    match decisions {
        Some((own, true)) => own.take(),
        Some((outer, false)) => outer.note(|d| d.clone()),
        None => Default::default(),
    }
}

/// The audit record of a request whose answer no one awaits any more (its
/// client went away before it was answered): written when the request's
/// future is dropped before the record was made, with what the layers
/// behind decided by then.
struct Unanswered<'a> {
    audit: Option<&'a crate::audit::AuditLayer>,
    noted: Option<crate::audit::Noted>,
    decisions: Option<&'a (crate::auth::Decisions, bool)>,
    /// What was decided, once taken from `decisions` for the record.
    taken: Option<crate::auth::Decided>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let (Some(audit), Some(noted)) = (self.audit, self.noted.take()) {
            let decided = match self.taken.take() {
                Some(taken) => taken,
                None => decided_in(self.decisions),
            };
            audit.unanswered(noted, decided);
        }
    }
}

/// Behind the auth layer, with a metrics recorder installed or an audit
/// record to make: reads the JSON-RPC method and tool of an authenticated
/// POST from its body (for the per-tool counts, the span and the record),
/// and notes them in the request's
/// [`Decisions`](crate::auth::Decisions) for the layer in front.
/// A request refused by the auth layer never gets its body read for either
/// (one the session policy lets through without credentials does, as the
/// MCP service behind reads it too).
#[derive(Clone, Debug)]
pub(crate) struct FactsLayer {
    max_body: usize,
}

impl FactsLayer {
    /// Bodies are read up to `max_body` bytes (else 413).
    pub(crate) fn new(max_body: usize) -> Self {
        Self { max_body }
    }
}

impl<S> Layer<S> for FactsLayer {
    type Service = FactsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FactsService {
            inner,
            max_body: self.max_body,
        }
    }
}

/// The service of [`FactsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct FactsService<S> {
    inner: S,
    max_body: usize,
}

impl<S> Service<Request<Body>> for FactsService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, BoxFuture<'static, Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let decisions = req
            .extensions()
            .get::<crate::auth::Decisions>()
            .filter(|d| d.note(|d| d.body_facts_wanted))
            .cloned();
        let Some(decisions) = decisions.filter(|_| req.method() == http::Method::POST) else {
            // Nothing to read: the service polled ready, as it is.
            return futures::future::Either::Left(self.inner.call(req));
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max_body = self.max_body;
        futures::future::Either::Right(Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let (facts, body, called) = match RequestFacts::read_body(body, max_body).await {
                Ok(read) => read,
                Err(too_large) => return Ok(too_large),
            };
            // For the tool-scope layer behind, which then need not read the
            // body again: in this app's stack nothing between changes the
            // body (a layer of one's own that reads a body for its calls,
            // in front of something that rewrites it, would have to read it
            // itself).
            parts.extensions.insert(called);
            facts.record(&tracing::Span::current());
            decisions.note(|d| d.facts = Some(facts));
            inner.call(Request::from_parts(parts, body)).await
        }))
    }
}

/// The `outcome` labels of responses, in [`outcome_index`] order.
const OUTCOMES: [&str; 7] = [
    "ok",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "rejected",
    "unavailable",
    "error",
];

fn outcome_index(status: StatusCode) -> usize {
    match status.as_u16() {
        401 => 1,
        403 => 2,
        429 => 3,
        503 => 5,
        s if s < 400 => 0,
        s if s < 500 => 4,
        _ => 6,
    }
}

/// Counts one response. The handles of the seven outcomes are looked up
/// once, after a recorder was installed (see [`enable`]): the per-request
/// cost is two atomic updates.
fn count_request(status: StatusCode, seconds: f64) {
    type Handles = [(metrics::Counter, metrics::Histogram); 7];
    static HANDLES: std::sync::OnceLock<Handles> = std::sync::OnceLock::new();
    let i = outcome_index(status);
    if !enabled() {
        // Another recorder, or none: the macros find it.
        metrics::counter!("mcp_auth_http_requests_total", "outcome" => OUTCOMES[i]).increment(1);
        metrics::histogram!("mcp_auth_http_request_duration_seconds", "outcome" => OUTCOMES[i])
            .record(seconds);
        return;
    }
    let handles = HANDLES.get_or_init(|| {
        OUTCOMES.map(|o| {
            (
                metrics::counter!("mcp_auth_http_requests_total", "outcome" => o),
                metrics::histogram!("mcp_auth_http_request_duration_seconds", "outcome" => o),
            )
        })
    });
    handles[i].0.increment(1);
    handles[i].1.record(seconds);
}

/// The request's span says it was refused after authentication (a tool's
/// scopes): `auth.decision` becomes `deny` with `outcome`.
pub(crate) fn refused_here(outcome: &'static str) {
    let span = tracing::Span::current();
    span.record("auth.decision", "deny");
    span.record("auth.outcome", outcome);
}

/// One session opened by this process.
pub(crate) fn session_opened() {
    metrics::counter!("mcp_auth_sessions_opened_total").increment(1);
    metrics::gauge!("mcp_auth_sessions_open").increment(1.0);
}

/// One session ended by this process: `deleted` (the client's DELETE),
/// `expired` (the sweeper), `closed` (its SSE stream closed), `gone`
/// (rmcp no longer knew it) or `abandoned` (its `initialize` answer was
/// awaited no more: the client went away or the request timed out).
pub(crate) fn session_ended(reason: &'static str) {
    metrics::counter!("mcp_auth_sessions_ended_total", "reason" => reason).increment(1);
    metrics::gauge!("mcp_auth_sessions_open").decrement(1.0);
}

/// One 429 of `limiter` (`failed_logins`, `requests`, `sessions`).
pub(crate) fn rate_limited(limiter: &'static str) {
    metrics::counter!("mcp_auth_rate_limited_total", "limiter" => limiter).increment(1);
}

#[cfg(feature = "prometheus")]
pub(crate) use prometheus::router as prometheus_router;
#[cfg(feature = "prometheus")]
pub use prometheus::{MetricsError, PrometheusMetrics};

#[cfg(feature = "prometheus")]
mod prometheus {
    use std::sync::OnceLock;

    use axum::{Router, extract::State, response::IntoResponse, routing::get};
    use http::{HeaderMap, HeaderValue, StatusCode, header};
    use mcp_auth_core::SharedAuthenticator;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    /// Latency buckets (seconds) of every `_seconds` histogram.
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];

    static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();

    /// Another `metrics` recorder was installed first.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot install the Prometheus metrics recorder: {0}")]
    pub struct MetricsError(String);

    /// The process's Prometheus recorder: every count of the workspace's
    /// crates, rendered in the text exposition format.
    #[derive(Clone, Debug)]
    pub struct PrometheusMetrics {
        handle: PrometheusHandle,
    }

    impl PrometheusMetrics {
        /// Installs the recorder (once per process: later calls return the
        /// same one) and describes every metric. Fails when another
        /// `metrics` recorder is installed.
        pub fn install() -> Result<Self, MetricsError> {
            if let Some(handle) = INSTALLED.get() {
                return Ok(Self {
                    handle: handle.clone(),
                });
            }
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .map_err(|e| MetricsError(e.to_string()))?
                .install_recorder()
                .map_err(|e| MetricsError(e.to_string()))?;
            let handle = INSTALLED.get_or_init(|| handle).clone();
            // Histograms gather samples until upkeep folds them in: every
            // 5 s, so memory stays bounded when nothing scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|e| MetricsError(e.to_string()))?;
            describe();
            super::enable();
            Ok(Self { handle })
        }

        /// The current values, in the Prometheus text format.
        pub fn render(&self) -> String {
            self.handle.render()
        }
    }

    fn describe() {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "mcp_auth_http_requests_total",
            "Requests to the MCP routes by outcome"
        );
        describe_histogram!(
            "mcp_auth_http_request_duration_seconds",
            Unit::Seconds,
            "Time to the response headers of requests to the MCP routes, by outcome"
        );
        describe_counter!(
            "mcp_auth_authentications_total",
            "Authentication decisions by strategy and outcome"
        );
        describe_counter!(
            "mcp_auth_tool_calls_total",
            "tools/call requests by tool (declared tools; others as `other`) and outcome"
        );
        describe_counter!("mcp_auth_rate_limited_total", "429 answers by limiter");
        describe_counter!(
            "mcp_auth_audit_records_dropped_total",
            "Audit records dropped: the log could not be written and the queue was full"
        );
        describe_counter!(
            "mcp_auth_sessions_opened_total",
            "Sessions opened by this process"
        );
        describe_counter!(
            "mcp_auth_sessions_ended_total",
            "Sessions ended by this process, by reason"
        );
        describe_counter!(
            "mcp_auth_sessions_parked_total",
            "Idle sessions that gave up their worker in this process"
        );
        describe_counter!(
            "mcp_auth_sessions_refused_total",
            "Sessions refused because a cap was reached, by cap"
        );
        describe_gauge!(
            "mcp_auth_sessions_open",
            "Sessions opened minus sessions ended by this process (sum over replicas)"
        );
        describe_counter!(
            "mcp_auth_token_cache_total",
            "Verified-token cache lookups by cache and result"
        );
        describe_counter!("mcp_auth_jwks_fetches_total", "JWKS fetches by outcome");
        describe_gauge!(
            "mcp_auth_jwks_age_seconds",
            Unit::Seconds,
            "Time since each key set was fetched, at scrape time"
        );
        describe_gauge!(
            "mcp_auth_ready",
            "1 when the readiness check holds, else 0, at scrape time"
        );
        describe_counter!(
            "mcp_auth_introspection_requests_total",
            "Token introspection requests by outcome"
        );
        describe_histogram!(
            "mcp_auth_introspection_duration_seconds",
            Unit::Seconds,
            "Token introspection round trips"
        );
        describe_counter!(
            "mcp_auth_store_errors_total",
            "Session-store operations that failed, by operation"
        );
        describe_histogram!(
            "mcp_auth_store_operation_duration_seconds",
            Unit::Seconds,
            "Session-store operation latency by operation"
        );
    }

    struct Scrape {
        metrics: PrometheusMetrics,
        token: Option<String>,
        authenticator: SharedAuthenticator,
    }

    /// `GET /metrics`, with the bearer `token` when given, setting the
    /// scrape-time gauges from `authenticator`'s readiness checks first.
    pub(crate) fn router(
        metrics: &PrometheusMetrics,
        token: Option<String>,
        authenticator: SharedAuthenticator,
    ) -> Router {
        let state = std::sync::Arc::new(Scrape {
            metrics: metrics.clone(),
            token,
            authenticator,
        });
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(state)
    }

    async fn scrape(
        State(s): State<std::sync::Arc<Scrape>>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        if let Some(token) = &s.token {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim_start())
                .unwrap_or_default();
            // An empty token (a caller's mistake) opens nothing.
            let same: bool = !token.is_empty()
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    presented.as_bytes(),
                    token.as_bytes(),
                ));
            if !same {
                let mut resp = crate::refusal::no_store(StatusCode::UNAUTHORIZED.into_response());
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"metrics\""),
                );
                return resp;
            }
        }
        for check in s.authenticator.readiness() {
            metrics::gauge!("mcp_auth_ready", "check" => check.name.clone())
                .set(f64::from(u8::from(check.ok)));
            if let Some(age) = check.age {
                metrics::gauge!("mcp_auth_jwks_age_seconds", "check" => check.name)
                    .set(age.as_secs_f64());
            }
        }
        let mut resp = s.metrics.render().into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        crate::refusal::no_store(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_of_statuses() {
        for (code, want) in [
            (200, "ok"),
            (202, "ok"),
            (204, "ok"),
            (400, "rejected"),
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "rejected"),
            (413, "rejected"),
            (429, "rate_limited"),
            (500, "error"),
            (503, "unavailable"),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(OUTCOMES[outcome_index(status)], want, "{code}");
        }
    }

    #[test]
    fn names_the_client_chose_are_kept_bounded() {
        assert_eq!(bounded("tools/call".into()), "tools/call");
        // One byte, then two-byte characters: the cut falls inside one and
        // backs off to the boundary before it.
        let long = format!("a{}", "é".repeat(MAX_NAME));
        let cut = bounded(long);
        assert_eq!(cut, format!("a{}…", "é".repeat(MAX_NAME / 2 - 1)));
        let mut h = http::HeaderMap::new();
        assert_eq!(session_id_of(&h), None);
        h.insert("mcp-session-id", "0a1b-2c3d_4e.5".parse().unwrap());
        assert_eq!(session_id_of(&h).as_deref(), Some("0a1b-2c3d_4e.5"));
        // MCP allows any visible ASCII (a JWT, base64).
        let jwt_like = format!("eyJ{}.x+y/z=", "a".repeat(400));
        h.insert("mcp-session-id", jwt_like.parse().unwrap());
        assert_eq!(session_id_of(&h), Some(jwt_like));
        for bad in ["has space", "tab\tin", ""] {
            h.insert("mcp-session-id", bad.parse().unwrap());
            assert_eq!(session_id_of(&h), None, "{bad:?}");
        }
        let long = "a".repeat(MAX_SESSION_ID + 1);
        h.insert("mcp-session-id", long.parse().unwrap());
        assert_eq!(session_id_of(&h), None);
        // An HTTP method is a token of any length: only standard ones by
        // name.
        assert_eq!(method_label(&http::Method::POST), "POST");
        let custom = http::Method::from_bytes("X".repeat(10_000).as_bytes()).unwrap();
        assert_eq!(method_label(&custom), "_OTHER");
    }

    #[test]
    fn method_and_tool_come_from_the_body() {
        let read = |b: &[u8]| {
            let r = crate::message::read(b);
            (r.method, r.tool)
        };
        let b = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
        assert_eq!(read(b), (Some("tools/call".into()), Some("whoami".into())));
        let b = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#;
        assert_eq!(read(b), (Some("tools/list".into()), None));
        assert_eq!(read(b"[1,2]"), (None, None));
    }
}
