//! The legacy HTTP+SSE transport (MCP 2024-11-05), for clients that speak
//! only it, with the same authentication, policy and limits.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # #[derive(Clone)] struct MyServer;
//! # impl rmcp::ServerHandler for MyServer {}
//! use mcp_auth_transport::{HttpConfig, McpHttpApp, Transports};
//! # fn f(auth: mcp_auth_core::SharedAuthenticator) {
//! let app = McpHttpApp::new(HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap()), auth).unwrap();
//! // Streamable HTTP at /mcp, and legacy SSE at /sse + /messages, from one process.
//! let router = app.rmcp_router_with(|| Ok(MyServer), Transports::Both);
//! # let _ = router; }
//! ```
//!
//! `GET /sse` (authenticated like every route) opens a session in the
//! session store (caps apply) bound to the caller, and an event stream whose
//! first event, `endpoint`, names `/messages?session_id=<id>` (an unguessable
//! id). `POST` there delivers client messages (202); responses and server
//! notifications flow on the stream, with keep-alive comments while idle. A
//! POST must come from the stream's owner (anyone else: 404, as for an
//! unknown session). Closing the stream ends the session and frees its slot.

use std::{
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Query, Request, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{SinkExt, Stream, StreamExt, channel::mpsc};
use http::StatusCode;
use mcp_auth_core::{AuthError, Principal};
use mcp_auth_session::{Bind, Full, SessionLimits, SessionPolicy, SharedStore, session_owner};
use rmcp::{
    ServerHandler, ServiceExt,
    model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage},
};
use tokio_util::sync::CancellationToken;

use crate::{AuthLayer, HttpConfig, sessions::Admission};

/// Which transports the app serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    /// Streamable HTTP at the MCP path (the current transport).
    StreamableHttp,
    /// Only the legacy HTTP+SSE transport (`/sse`, `/messages`).
    Sse,
    /// Both, from one process.
    Both,
}

/// Path of the SSE stream.
pub const SSE_PATH: &str = "/sse";
/// Path of the SSE transport's message endpoint.
pub const MESSAGES_PATH: &str = "/messages";

struct Session {
    owner: Option<String>,
    tx: mpsc::Sender<ClientJsonRpcMessage>,
    cancel: CancellationToken,
    /// The last message its owner posted (or the stream's opening): the
    /// session's record in the store expires `idle_timeout` after it, and
    /// so does the stream (see [`close_when_idle`]).
    active: Instant,
}

pub(crate) struct SseState {
    sessions: Mutex<HashMap<String, Session>>,
    spawn: Box<dyn Fn(String, SessionIo) -> Result<(), std::io::Error> + Send + Sync>,
    store: SharedStore,
    policy: SessionPolicy,
    limits: SessionLimits,
    auth: AuthLayer,
    keep_alive: Duration,
    cancel: CancellationToken,
    max_body: usize,
    audit: Option<Arc<dyn crate::audit::AuditSink>>,
    /// The credential headers taken out before the handler sees a message.
    strip: Arc<[http::HeaderName]>,
}

/// On the response that opened a legacy SSE session: its id, for the
/// audit record (`session_start`) and the span.
#[derive(Clone, Debug)]
pub(crate) struct SseSessionOpened(pub(crate) String);

/// The two ends rmcp's service runs on.
pub(crate) struct SessionIo {
    incoming: mpsc::Receiver<ClientJsonRpcMessage>,
    outgoing: mpsc::Sender<ServerJsonRpcMessage>,
    cancel: CancellationToken,
}

impl SseState {
    pub(crate) fn new<H, F>(
        factory: F,
        store: SharedStore,
        cfg: &HttpConfig,
        auth: AuthLayer,
        cancel: CancellationToken,
        audit: Option<Arc<dyn crate::audit::AuditSink>>,
    ) -> Self
    where
        H: ServerHandler + Send + 'static,
        F: Fn() -> Result<H, std::io::Error> + Send + Sync + 'static,
    {
        let strip = crate::auth::kept_from_handlers(cfg, &*auth.authenticator());
        let spawn = move |sid: String, io: SessionIo| -> Result<(), std::io::Error> {
            let handler = factory()?;
            tokio::spawn(async move {
                let SessionIo {
                    incoming,
                    outgoing,
                    cancel,
                } = io;
                match handler
                    .serve_with_ct((outgoing, incoming), cancel.clone())
                    .await
                {
                    Ok(running) => {
                        let _ = running.waiting().await;
                    }
                    Err(e) => {
                        tracing::debug!(session = %short(&sid), error = %e, "SSE session ended during initialization")
                    }
                }
            });
            Ok(())
        };
        Self {
            sessions: Mutex::new(HashMap::new()),
            spawn: Box::new(spawn),
            store,
            policy: cfg.session_policy,
            limits: cfg.session_limits,
            auth,
            keep_alive: cfg.sse_keep_alive,
            cancel,
            max_body: cfg.max_request_bytes,
            audit,
            strip,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        match self.sessions.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

fn short(sid: &str) -> &str {
    sid.get(..8).unwrap_or(sid)
}

/// 128 random bits from the OS, hex: an unguessable session id. Empty if
/// the OS generator fails (the caller then refuses to open a session).
fn random_sid() -> String {
    let mut b = [0u8; 16];
    match getrandom::fill(&mut b) {
        Ok(()) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Err(_) => String::new(),
    }
}

use crate::refusal::{
    cap_reached, jsonrpc_unreadable, refuse as error, session_not_found, store_unavailable,
    unreadable_body,
};

/// Ends the session when the event stream is dropped (client gone, server
/// shutting down).
struct EndOnDrop {
    state: Arc<SseState>,
    sid: String,
    cancel: CancellationToken,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.cancel.cancel();
        // Its owner now: the opener's, or whoever bound it since.
        let owner = self
            .state
            .with(|s| s.remove(&self.sid))
            .and_then(|s| s.owner);
        let (store, sid) = (self.state.store.clone(), self.sid.clone());
        let audit = self.state.audit.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match store.end_live(&sid).await {
                    Ok(true) => {
                        crate::observe::session_ended("closed");
                        // The stream closed and this ended the session (its
                        // client went away): no request says so, this
                        // record does. (One idled out has expired in the
                        // store first: the sweeper records it.)
                        if let Some(sink) = audit {
                            sink.record(crate::audit::session_end_record(
                                &sid,
                                owner.as_deref(),
                                "end",
                                "closed",
                            ));
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(store = %e.store, "could not end SSE session in the store");
                    }
                }
            });
        }
        tracing::debug!(session = %short(&self.sid), "SSE stream closed; session ended");
    }
}

struct GuardedStream<S> {
    inner: S,
    _guard: EndOnDrop,
}

impl<S: Stream + Unpin> Stream for GuardedStream<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Closes the stream of session `sid` once no message has been posted into
/// it for the idle timeout: its record in the store has expired by then
/// (and its slot under the caps is free), so an open stream must not keep
/// its handler alive beyond it. Ends with the stream (`cancel`).
async fn close_when_idle(state: Arc<SseState>, sid: String, cancel: CancellationToken) {
    let idle = state.limits.idle_timeout;
    loop {
        let Some(active) = state.with(|s| s.get(&sid).map(|x| x.active)) else {
            return;
        };
        let Some(due) = active.checked_add(idle) else {
            return;
        };
        if Instant::now() >= due {
            tracing::debug!(session = %short(&sid), "SSE session idle past its timeout; stream closed");
            cancel.cancel();
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(due.into()) => {}
        }
    }
}

/// `GET /sse`.
pub(crate) async fn open_stream(State(state): State<Arc<SseState>>, req: Request) -> Response {
    let principal = req.extensions().get::<Principal>();
    let authenticated = principal.is_some();
    let owner = session_owner(principal);
    if !authenticated && state.policy.require_for_session {
        return state
            .auth
            .error_response(&AuthError::MissingCredentials, req.headers());
    }
    // Run to the end even if the client goes away meanwhile (as a
    // streamable session's opening does): dropped between the store's
    // commit and the stream's guard, the session would hold its place
    // under the caps until it expired. Once the stream exists, dropping it
    // ends the session.
    match tokio::spawn(open_session(state, owner)).await {
        Ok(resp) => resp,
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot start the session",
        ),
    }
}

/// [`open_stream`] past the credentials check: the session, its handler
/// and its event stream.
async fn open_session(state: Arc<SseState>, owner: Option<String>) -> Response {
    let admission = match Admission::reserve(&state.store, &state.limits, owner.as_deref()).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let sid = random_sid();
    if sid.is_empty() {
        admission.release().await;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "could not open a session",
        );
    }
    if let Err(refused) = admission.commit(&sid).await {
        return refused;
    }
    let (client_tx, client_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let (server_tx, server_rx) = mpsc::channel::<ServerJsonRpcMessage>(64);
    let cancel = state.cancel.child_token();
    let io = SessionIo {
        incoming: client_rx,
        outgoing: server_tx,
        cancel: cancel.clone(),
    };
    if let Err(e) = (state.spawn)(sid.clone(), io) {
        if let Ok(true) = state.store.end_live(&sid).await {
            crate::observe::session_ended("closed");
        }
        tracing::error!(error = %e, "cannot create the MCP handler");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot start the session",
        );
    }
    state.with(|s| {
        s.insert(
            sid.clone(),
            Session {
                owner,
                tx: client_tx,
                cancel: cancel.clone(),
                active: Instant::now(),
            },
        )
    });
    tokio::spawn(close_when_idle(state.clone(), sid.clone(), cancel.clone()));
    tracing::debug!(session = %short(&sid), "SSE session opened");
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGES_PATH}?session_id={sid}"));
    let messages = server_rx.map(|msg| {
        Ok::<Event, Infallible>(
            Event::default()
                .event("message")
                .json_data(&msg)
                .unwrap_or_else(|_| Event::default().comment("unserialisable message")),
        )
    });
    let ended = cancel.clone();
    let stream = futures::stream::once(async move { Ok::<Event, Infallible>(endpoint) })
        .chain(messages)
        .take_until(async move { ended.cancelled().await });
    let guarded = GuardedStream {
        inner: Box::pin(stream),
        _guard: EndOnDrop {
            state: state.clone(),
            sid: sid.clone(),
            cancel,
        },
    };
    let mut resp = Sse::new(guarded)
        .keep_alive(KeepAlive::new().interval(state.keep_alive))
        .into_response();
    resp.extensions_mut().insert(SseSessionOpened(sid));
    resp
}

#[derive(serde::Deserialize)]
pub(crate) struct MessageQuery {
    session_id: Option<String>,
}

/// The two parsing steps of [`post_message`] on attacker bytes, through the
/// same extractor and deserializer: the query's `session_id`, and the body
/// as a JSON-RPC message. Only for the fuzz targets in `fuzz/`.
#[cfg(fuzzing)]
pub(crate) fn parse_post_message(
    uri: &http::Uri,
    body: &[u8],
) -> (
    Result<Option<String>, String>,
    Result<ClientJsonRpcMessage, String>,
) {
    let query = Query::<MessageQuery>::try_from_uri(uri)
        .map(|Query(q)| q.session_id)
        .map_err(|e| e.to_string());
    let message = serde_json::from_slice::<ClientJsonRpcMessage>(body).map_err(|e| e.to_string());
    (query, message)
}

/// `POST /messages?session_id=…`.
pub(crate) async fn post_message(
    State(state): State<Arc<SseState>>,
    Query(q): Query<MessageQuery>,
    req: Request,
) -> Response {
    let Some(sid) = q.session_id else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "session_id is required",
        );
    };
    let principal = req.extensions().get::<Principal>();
    let authenticated = principal.is_some();
    let owner = session_owner(principal);
    if !authenticated && state.policy.require_for_operations {
        return state
            .auth
            .error_response(&AuthError::MissingCredentials, req.headers());
    }
    let local = state.with(|s| s.get(&sid).map(|x| (x.owner.clone(), x.tx.clone())));
    let Some((stream_owner, mut tx)) = local else {
        return session_not_found();
    };
    match (&owner, &stream_owner) {
        (Some(me), Some(o)) if me == o => {}
        (None, None) => {}
        (Some(me), None) => match state.store.bind(&sid, me, &state.limits).await {
            Ok(Bind::Owner(o)) if o == *me => {
                state.with(|s| {
                    if let Some(x) = s.get_mut(&sid) {
                        x.owner = Some(o);
                    }
                });
            }
            Ok(Bind::Full) => return cap_reached(Full::Principal),
            Ok(_) => return session_not_found(),
            Err(e) => return store_unavailable(&e),
        },
        (None, Some(_)) if !authenticated => {
            return state
                .auth
                .error_response(&AuthError::MissingCredentials, req.headers());
        }
        (None, Some(_)) => {
            return session_not_found();
        }
        (Some(_), Some(_)) => {
            tracing::debug!(session = %short(&sid), "SSE message from another principal refused");
            return session_not_found();
        }
    }
    // Keep the session alive in the store (idle expiry; only for its owner),
    // and notice if it ended, or was bound to someone else meanwhile (a
    // binding whose request went away before this process noted it).
    match state
        .store
        .lookup_as(&sid, owner.as_deref(), &state.limits)
        .await
    {
        Ok(Some(record)) if record.owner.is_some() && record.owner != owner => {
            state.with(|s| {
                if let Some(x) = s.get_mut(&sid) {
                    x.owner.clone_from(&record.owner);
                }
            });
            if !authenticated {
                return state
                    .auth
                    .error_response(&AuthError::MissingCredentials, req.headers());
            }
            return session_not_found();
        }
        Ok(Some(_)) => state.with(|s| {
            if let Some(x) = s.get_mut(&sid) {
                x.active = Instant::now();
            }
        }),
        Ok(None) => {
            // Expired (idle) or ended elsewhere: close the stream too.
            if let Some(gone) = state.with(|s| s.remove(&sid)) {
                gone.cancel.cancel();
            }
            return session_not_found();
        }
        Err(e) => return store_unavailable(&e),
    }
    let (mut parts, body) = req.into_parts();
    // The handler gets the verified principal, not the credential.
    crate::auth::strip_credentials(&mut parts.headers, &state.strip);
    let bytes: Bytes = match axum::body::to_bytes(body, state.max_body).await {
        Ok(b) => b,
        Err(e) => return unreadable_body(&e),
    };
    if crate::message::over_values(&bytes, crate::message::max_values(state.max_body)) {
        return crate::refusal::too_many_values();
    }
    let Ok(mut message) = serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) else {
        return jsonrpc_unreadable(&bytes);
    };
    // Tools read the caller from the HTTP parts, as on streamable HTTP.
    match &mut message {
        ClientJsonRpcMessage::Request(r) => {
            r.request.extensions_mut().insert(parts);
        }
        ClientJsonRpcMessage::Notification(n) => {
            n.notification.extensions_mut().insert(parts);
        }
        _ => {}
    }
    match tx.send(message).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(_) => session_not_found(),
    }
}
