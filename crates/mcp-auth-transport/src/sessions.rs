//! Sessions owned by principals, with caps and expiry, in a shared store.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_auth_session::{MemoryStore, SessionLimits, SessionPolicy};
//! use mcp_auth_transport::{AuthLayer, SessionLayer};
//!
//! let auth = AuthLayer::new(mcp_auth_strategies::NoAuth);
//! let layer = SessionLayer::new(
//!     Arc::new(MemoryStore::new()),
//!     SessionPolicy::default(),
//!     SessionLimits::default(),
//!     auth,
//!     4 << 20,
//! );
//! # let _ = layer;
//! ```
//!
//! Behind the auth layer, in front of the MCP service:
//! - `initialize` reserves a slot before the session exists (global,
//!   per-principal and anonymous caps, atomically in the store), commits it
//!   under the new `Mcp-Session-Id` bound to the caller's identity (issuer,
//!   subject, client id), or releases it;
//! - a request with a session id must come from the owner (another principal
//!   gets the same 404 as an unknown session); an anonymous session is bound
//!   to the first principal that authenticates in it; every request is still
//!   authenticated, since a session is never a credential;
//! - `DELETE` ends the session (404 afterwards); idle sessions expire;
//! - when the store cannot answer, nothing is created or served: 503.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use http::{Method, Request, StatusCode};
use mcp_auth_core::{AuthError, Principal};
use mcp_auth_session::{
    Bind, Ending, Full, Reserve, SessionLimits, SessionPolicy, SharedStore, session_owner,
};
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore as RmcpStore, SessionStoreError,
};
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;

use crate::AuthLayer;

const SESSION_HEADER: http::HeaderName = crate::names::MCP_SESSION_ID;

/// How much of an rmcp 404 or 500 body is read to tell its cause (they are
/// a line of text).
const RMCP_BODY_READ: usize = 64 * 1024;

/// See the [module docs](crate::SessionLayer).
#[derive(Clone)]
pub struct SessionLayer {
    inner: Arc<Settings>,
}

struct Settings {
    store: SharedStore,
    policy: SessionPolicy,
    limits: SessionLimits,
    auth: AuthLayer,
    max_body: usize,
    parking: Option<Arc<crate::park::Parking>>,
    anonymous: AnonymousStreams,
    listening: ListenStreams,
    /// The service below saves each new session's state in `store`
    /// ([`RmcpSessionState`]): a session whose state is missing after
    /// `initialize` is refused (503), not recorded.
    state_saved: bool,
}

/// The event streams opened anonymously in this process, by session: they
/// end at once when the session is bound to a principal here (another
/// replica's binding they find at their next check).
#[derive(Clone, Default)]
struct AnonymousStreams(Arc<std::sync::Mutex<Streams>>);

/// By session: the token its anonymous streams end by, how many are open,
/// and which generation of the entry this is (a stream counted into an
/// entry that a binding removed must not count down a newer one).
#[derive(Default)]
struct Streams {
    by_session: HashMap<String, (CancellationToken, usize, u64)>,
    generation: u64,
}

impl AnonymousStreams {
    fn with<T>(&self, f: impl FnOnce(&mut Streams) -> T) -> T {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    /// A stream of `sid` opens (registered before its session is looked
    /// up, so a binding in between is not missed): cancelled when the
    /// session is bound; the guard counts it until it ends.
    fn open(&self, sid: &str) -> (CancellationToken, AnonymousStream) {
        let (token, generation) = self.with(|m| {
            m.generation += 1;
            let next = m.generation;
            let e = m
                .by_session
                .entry(sid.to_owned())
                .or_insert_with(|| (CancellationToken::new(), 0, next));
            e.1 += 1;
            (e.0.clone(), e.2)
        });
        let guard = AnonymousStream {
            streams: self.clone(),
            sid: sid.to_owned(),
            generation,
        };
        (token, guard)
    }

    /// `sid` was bound to a principal: its anonymous streams end.
    fn bound(&self, sid: &str) {
        if let Some((token, ..)) = self.with(|m| {
            let e = m.by_session.remove(sid);
            crate::park::shrink(&mut m.by_session);
            e
        }) {
            token.cancel();
        }
    }
}

/// The subscription streams (`subscriptions/listen`, the 2026-07-28
/// wire's stream for what the server sends on its own, opened without a
/// session) open in this process, by owner (`None`: anonymous), by user
/// and in all: capped as sessions are (`max_per_principal`,
/// `max_per_subject`, `max_anonymous`, `max_sessions`), since each holds a
/// handler and a connection for as long as its client keeps it.
#[derive(Clone, Default)]
struct ListenStreams(Arc<std::sync::Mutex<ListenCounts>>);

#[derive(Default)]
struct ListenCounts {
    by_owner: HashMap<Option<String>, usize>,
    /// By user (issuer and subject) over all their client ids.
    by_subject: HashMap<String, usize>,
    total: usize,
}

impl ListenStreams {
    /// A stream of `owner` opens, unless a cap is reached (the refusal's
    /// status and description).
    fn open(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<ListenStream, (StatusCode, &'static str)> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mine = m
            .by_owner
            .get(&owner.map(str::to_owned))
            .copied()
            .unwrap_or(0);
        let (cap, refusal) = match owner {
            Some(_) => (
                limits.max_per_principal,
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "you have too many open subscription streams; close one",
                ),
            ),
            None => (
                limits.max_anonymous,
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many anonymous subscription streams; authenticate to open one",
                ),
            ),
        };
        let theirs = owner
            .map(|o| {
                m.by_subject
                    .get(mcp_auth_session::subject_of(o))
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let refusal = if mine >= cap {
            Some(refusal)
        } else if owner.is_some() && theirs >= limits.max_per_subject {
            Some((
                StatusCode::TOO_MANY_REQUESTS,
                "you have too many open subscription streams across your clients; close one",
            ))
        } else if m.total >= limits.max_sessions {
            Some((
                StatusCode::SERVICE_UNAVAILABLE,
                "the server has reached its limit of subscription streams; try again later",
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            tracing::warn!("subscription stream cap reached");
            return Err(refusal);
        }
        *m.by_owner.entry(owner.map(str::to_owned)).or_insert(0) += 1;
        if let Some(o) = owner {
            *m.by_subject
                .entry(mcp_auth_session::subject_of(o).to_owned())
                .or_insert(0) += 1;
        }
        m.total += 1;
        Ok(ListenStream {
            streams: self.clone(),
            owner: owner.map(str::to_owned),
        })
    }
}

/// One subscription stream open (see [`ListenStreams::open`]).
struct ListenStream {
    streams: ListenStreams,
    owner: Option<String>,
}

impl Drop for ListenStream {
    fn drop(&mut self) {
        let mut m = self.streams.0.lock().unwrap_or_else(|p| p.into_inner());
        m.total = m.total.saturating_sub(1);
        count_down(&mut m.by_owner, &self.owner);
        if let Some(subject) = self.owner.as_deref().map(mcp_auth_session::subject_of) {
            count_down(&mut m.by_subject, subject);
        }
    }
}

/// One less under `key` in `counts`; a count that reaches zero goes.
fn count_down<K, Q>(counts: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
            crate::park::shrink(counts);
        }
    }
}

/// One anonymous stream open (see [`AnonymousStreams::open`]).
struct AnonymousStream {
    streams: AnonymousStreams,
    sid: String,
    generation: u64,
}

impl Drop for AnonymousStream {
    fn drop(&mut self) {
        self.streams.with(|m| {
            if let Some(e) = m.by_session.get_mut(&self.sid)
                && e.2 == self.generation
            {
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
                    m.by_session.remove(&self.sid);
                    crate::park::shrink(&mut m.by_session);
                }
            }
        });
    }
}

impl SessionLayer {
    /// Sessions in `store` under `policy` and `limits`; `auth` renders 401s;
    /// `initialize` bodies are read up to `max_body` bytes.
    pub fn new(
        store: SharedStore,
        policy: SessionPolicy,
        limits: SessionLimits,
        auth: AuthLayer,
        max_body: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Settings {
                store,
                policy,
                limits,
                auth,
                max_body,
                parking: None,
                anonymous: AnonymousStreams::default(),
                listening: ListenStreams::default(),
                state_saved: false,
            }),
        }
    }

    /// Tracks each session's requests and streams for `parking` (idle ones
    /// give up their local rmcp worker).
    pub(crate) fn parking(mut self, parking: Arc<crate::park::Parking>) -> Self {
        if let Some(s) = Arc::get_mut(&mut self.inner) {
            s.parking = Some(parking);
        }
        self
    }

    /// The service below saves each session's state in the store
    /// ([`RmcpSessionState`]): `initialize` checks it did.
    pub(crate) fn state_saved_by_service(mut self) -> Self {
        if let Some(s) = Arc::get_mut(&mut self.inner) {
            s.state_saved = true;
        }
        self
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            settings: self.inner.clone(),
        }
    }
}

/// The service produced by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    settings: Arc<Settings>,
}

use crate::refusal::{
    RMCP_RESTORE_FAILED, RMCP_SESSION_NOT_FOUND, cap_reached, refuse as plain,
    session_not_found as not_found, store_down, store_unavailable as unavailable, unreadable_body,
};

/// Session admission, shared by both HTTP transports: a slot reserved
/// under the caps before the session exists, then committed under its id
/// (or released). Every refusal is the answer to send.
pub(crate) struct Admission<'a> {
    store: &'a SharedStore,
    limits: &'a SessionLimits,
    owner: Option<&'a str>,
    ticket: mcp_auth_session::Ticket,
}

impl<'a> Admission<'a> {
    /// Reserves a slot for `owner` (`None`: anonymous): 429 / 503 when a
    /// cap is reached, 503 when the store cannot answer.
    pub(crate) async fn reserve(
        store: &'a SharedStore,
        limits: &'a SessionLimits,
        owner: Option<&'a str>,
    ) -> Result<Self, Response> {
        match store.reserve(owner, limits).await {
            Ok(Reserve::Granted(ticket)) => Ok(Self {
                store,
                limits,
                owner,
                ticket,
            }),
            Ok(Reserve::Full(which)) => {
                tracing::warn!(?which, "session cap reached");
                Err(cap_reached(which))
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Records the session `sid` in the reserved slot. On refusal the slot
    /// is released and the caller closes the session it opened.
    pub(crate) async fn commit(self, sid: &str) -> Result<(), Response> {
        match self
            .store
            .commit(&self.ticket, sid, self.owner, self.limits)
            .await
        {
            Ok(true) => {
                crate::observe::session_opened();
                Ok(())
            }
            // rmcp saved the session's state already: ending the session
            // that never was drops it.
            Ok(false) => {
                let _ = self.store.end(sid).await;
                Err(cap_reached(Full::Global))
            }
            Err(e) => {
                let _ = self.store.release(&self.ticket, self.owner).await;
                let _ = self.store.end(sid).await;
                Err(unavailable(&e))
            }
        }
    }

    /// Gives the slot back: no session was opened.
    pub(crate) async fn release(self) {
        let _ = self.store.release(&self.ticket, self.owner).await;
    }
}

#[cfg(any(test, fuzzing))]
pub(crate) fn is_initialize(body: &[u8]) -> bool {
    method_of(body).as_deref() == Some("initialize")
}

/// The `method` of a body that is one JSON object, escapes decoded
/// (`"subscriptions\/listen"` is `subscriptions/listen`); `None` for
/// anything else, a duplicate `method` key included.
fn method_of(body: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    // A message is a JSON object; serde would also read a struct from an
    // array (`["initialize"]`), which is no initialize request (found by
    // the jsonrpc_body fuzz target).
    let object = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{');
    if !object {
        return None;
    }
    serde_json::from_slice::<Probe<'_>>(body).ok()?.method
}

impl<S> Service<Request<Body>> for SessionService<S>
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
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let s = self.settings.clone();
        Box::pin(s.handle(inner, req))
    }
}

impl Settings {
    fn needs_credentials(&self, req: &Request<Body>) -> Response {
        self.auth
            .error_response(&AuthError::MissingCredentials, req.headers())
    }

    async fn handle<S>(self: Arc<Self>, inner: S, req: Request<Body>) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send + 'static,
    {
        let principal = req.extensions().get::<Principal>();
        // `authenticated`: credentials were checked (the `none` strategy
        // included); `owner`: an identity to bind to (`none` has none).
        let authenticated = principal.is_some();
        let owner = session_owner(principal);
        let sid = req
            .headers()
            .get(SESSION_HEADER)
            .map(|v| v.to_str().map(str::to_owned));
        match sid {
            Some(Err(_)) => Ok(not_found()),
            Some(Ok(sid)) if req.method() == Method::DELETE => {
                // Run to its end even if the client goes away mid-way: a
                // session ended in the store is also closed here and
                // counted, not left to rmcp's idle timeout unrecorded.
                let this = self.clone();
                let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
                    this.in_session(inner, req, authenticated, owner, sid).await
                }));
                match task.await {
                    Ok(r) => r,
                    Err(_) => Ok(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "ending the session failed",
                    )),
                }
            }
            // A message of a revision without sessions (2026-07-28) goes
            // the stateless way whatever session it names (a subscription
            // stream sent so skipped its cap and its watch), and without
            // the session header: rmcp serves such messages statelessly,
            // but an `initialize` naming a session it takes to that
            // session, whoever owns it (a review: another user's
            // `initialize` reached someone else's worker and rewrote its
            // client's information).
            Some(Ok(_)) if req.method() == Method::POST && sessionless(req.headers()) => {
                let mut req = req;
                req.headers_mut().remove(SESSION_HEADER);
                self.without_session(inner, req, authenticated, owner, true)
                    .await
            }
            Some(Ok(sid)) => self.in_session(inner, req, authenticated, owner, sid).await,
            None if req.method() == Method::POST => {
                self.without_session(inner, req, authenticated, owner, false)
                    .await
            }
            None => {
                if !authenticated && self.policy.require_for_operations {
                    return Ok(self.needs_credentials(&req));
                }
                let mut inner = inner;
                inner.call(req).await
            }
        }
    }

    /// A request naming a session: only its owner may use it.
    async fn in_session<S>(
        &self,
        mut inner: S,
        req: Request<Body>,
        authenticated: bool,
        owner: Option<String>,
        sid: String,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
        S::Future: Send,
    {
        if !authenticated && self.policy.require_for_operations {
            return Ok(self.needs_credentials(&req));
        }
        // An anonymous caller's event stream is registered before the
        // lookup: a binding between the two still ends it.
        let anonymous =
            (req.method() == Method::GET && owner.is_none()).then(|| self.anonymous.open(&sid));
        // Touched only for its owner (or anyone, while it has none): a
        // session id in the wrong hands cannot keep the session alive.
        let record = match self
            .store
            .lookup_as(&sid, owner.as_deref(), &self.limits)
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => {
                // Ended or expired (through another replica, say): a worker
                // this process still runs for it goes now, not at rmcp's
                // idle timeout, outside the caps.
                if let Some(p) = &self.parking {
                    p.forget(&sid);
                }
                close_in(&mut inner, &sid).await;
                return Ok(not_found());
            }
            Err(e) => return Ok(unavailable(&e)),
        };
        match (&owner, record.owner) {
            (None, Some(_)) if !authenticated => return Ok(self.needs_credentials(&req)),
            (None, Some(_)) => return Ok(not_found()),
            (None, None) => {}
            (Some(me), Some(o)) if *me == o => {}
            (Some(_), Some(_)) => {
                tracing::debug!("session id presented by another principal");
                return Ok(not_found());
            }
            (Some(me), None) => match self.store.bind(&sid, me, &self.limits).await {
                Ok(Bind::Owner(o)) if o == *me => {
                    tracing::debug!("anonymous session bound to its first principal");
                    self.anonymous.bound(&sid);
                }
                Ok(Bind::Full) => return Ok(cap_reached(Full::Principal)),
                Ok(_) => return Ok(not_found()),
                Err(e) => return Ok(unavailable(&e)),
            },
        }
        if req.method() == Method::DELETE {
            // A DELETE rmcp refuses for its protocol version (400 for one it
            // does not know, 405 on the 2026-07-28 wire, which has no
            // sessions) ends nothing: it is refused before the store is
            // asked, so the session the client still holds still works.
            if !rmcp_ends_sessions_for(req.headers()) {
                return inner.call(req).await;
            }
            // Not while the session is being parked or restored here (a
            // DELETE in the middle of a restore answered that request 500,
            // and could leave the restored worker running, in no cap):
            // after, or as the first request of a session not running here.
            let _turn = match &self.parking {
                Some(p) => Some(p.begin(&sid).await),
                None => None,
            };
            // End it in the store first: a DELETE the client saw succeed must
            // never be undone by a failed bookkeeping step. Only the request
            // that ended it is answered 2xx (and recorded as its end): one
            // that finds it ended meanwhile (another DELETE, another replica,
            // the sweeper) gets 404 after closing what is left of it here.
            // Ended only while it is the caller's: an anonymous session
            // bound to someone since the lookup above is theirs now.
            let ended = match self
                .store
                .end_live_as(&sid, owner.as_deref(), &self.limits)
                .await
            {
                Ok(Ending::Ended) => true,
                Ok(Ending::Gone) => false,
                // As the lookup answers once it sees the binding.
                Ok(Ending::NotYours) if !authenticated => {
                    return Ok(self.needs_credentials(&req));
                }
                Ok(Ending::NotYours) => {
                    tracing::debug!("session bound to someone else before its DELETE");
                    return Ok(not_found());
                }
                Err(e) => return Ok(unavailable(&e)),
            };
            if ended {
                crate::observe::session_ended("deleted");
            }
            if let Some(p) = &self.parking {
                p.forget(&sid);
            }
            // rmcp closes the session's worker here, if it has one.
            let resp = inner.call(req).await?;
            if !ended {
                return Ok(not_found());
            }
            if !resp.status().is_success() {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    "the MCP service refused to close a session ended in the store; its worker ends when idle"
                );
            }
            // rmcp answers 202 Accepted, but the session has ended by now:
            // say so with 204 (the Python SDK warns on anything but 200/204).
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let busy = match &self.parking {
            Some(p) => Some(p.begin(&sid).await),
            None => None,
        };
        // A `GET` opens the session's stream for what the server sends on
        // its own: watched, below, for as long as it is open, and no
        // longer than the credential that opened it is valid.
        let stream = (req.method() == Method::GET).then(|| inner.clone());
        let opener = stream
            .as_ref()
            .and_then(|_| req.extensions().get::<Principal>().cloned());
        let resp = inner.call(req).await?;
        if matches!(
            resp.status(),
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::NOT_FOUND
        ) && let Some(b) = &busy
        {
            b.cool();
        }
        if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
            // rmcp could not read the session's state to restore it here
            // (the store failed): the session is as it was, the store is
            // the trouble. 503 with Retry-After, as for every store error
            // (and not the store's address in a 500).
            let (parts, body) = resp.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, RMCP_BODY_READ).await else {
                return Ok(plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the MCP service failed",
                ));
            };
            if bytes.starts_with(RMCP_RESTORE_FAILED.as_bytes()) {
                tracing::error!("session store unavailable while restoring a session; refusing");
                return Ok(store_down());
            }
            // A request that raced its session's end (a DELETE closed the
            // worker under it: rmcp's "Session service terminated"): the
            // session is gone, and so answered as any ended session.
            if let Ok(None) = self
                .store
                .lookup_as(&sid, owner.as_deref(), &self.limits)
                .await
            {
                if let Some(p) = &self.parking {
                    p.forget(&sid);
                }
                close_in(&mut inner, &sid).await;
                return Ok(not_found());
            }
            return Ok(Response::from_parts(parts, Body::from(bytes)));
        }
        if resp.status() != StatusCode::NOT_FOUND {
            let resp = match stream {
                Some(closer) if is_event_stream(&resp) => {
                    self.watched(resp, sid, owner, closer, opener, anonymous)
                }
                _ => resp,
            };
            return Ok(match busy {
                Some(b) => b.hold(resp),
                None => resp,
            });
        }
        drop(busy);
        // rmcp no longer knows the session (e.g. it ended on this replica and
        // could not be restored): end it in the store too. Other 404s (an
        // unknown method on the stateless wire) leave the session alone.
        let (parts, body) = resp.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, RMCP_BODY_READ).await else {
            return Ok(plain(StatusCode::NOT_FOUND, "not_found", "not found"));
        };
        if bytes.as_ref() == RMCP_SESSION_NOT_FOUND.as_bytes() {
            // rmcp also answers so a request that waited on another's
            // restore of the session, when that one failed or was given
            // up (its client went away): the session is whole, its state
            // in the store. Only a session without state is gone.
            match self.store.load_state(&sid).await {
                Ok(Some(_)) => {
                    return Ok(plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "the session is being restored on this server; try again shortly",
                    ));
                }
                Ok(None) => {}
                Err(e) => return Ok(unavailable(&e)),
            }
            if let Some(p) = &self.parking {
                p.forget(&sid);
            }
            match self.store.end_live(&sid).await {
                Ok(true) => crate::observe::session_ended("gone"),
                Ok(false) => {}
                Err(e) => tracing::warn!(store = %e.store, "could not end session in the store"),
            }
            return Ok(not_found());
        }
        Ok(Response::from_parts(parts, Body::from(bytes)))
    }

    /// `resp`, the event stream a `GET` opened in session `sid` of `owner`,
    /// kept in step with the session in the store: every
    /// [`stream_check_every`] while it is open the session is looked up for
    /// its owner (which keeps it alive: a client listening for what the
    /// server sends, a resource subscription say, is using its session),
    /// and once the store no longer has it (ended by a `DELETE` on another
    /// replica, or lost) the stream ends and the session's worker here is
    /// closed (a `DELETE` to the service below, `closer`). A stream opened
    /// anonymously ends once the session is bound to a principal. Without this,
    /// a stream and its worker outlived the session in the store, its
    /// place under the caps freed. A store that cannot be reached keeps the
    /// stream (it is checked again). The stream also ends when the
    /// credential that opened it (`opener`'s) expires, or at the check after
    /// the authenticator says it no longer stands
    /// ([`still_valid`](mcp_auth_core::Authenticator::still_valid): revoked)
    /// (the session goes on: the client opens a new stream with a fresh
    /// one); it went on receiving for as long as it stayed open.
    fn watched<S>(
        &self,
        resp: Response,
        sid: String,
        owner: Option<String>,
        closer: S,
        opener: Option<Principal>,
        anonymous: Option<(CancellationToken, AnonymousStream)>,
    ) -> Response
    where
        S: Service<Request<Body>, Response = Response> + Send + 'static,
        S::Future: Send,
    {
        use tower::ServiceExt;
        let (store, limits) = (self.store.clone(), self.limits);
        let parking = self.parking.clone();
        let every = stream_check_every(&limits);
        let until = opener.as_ref().and_then(|p| p.expires_at);
        let authenticator = self.auth.authenticator();
        // Opened anonymously: ended at once by a binding here (one that came
        // while it was opening has cancelled it already).
        let (bound, anonymous) = match anonymous {
            Some((token, guard)) => (token, Some(guard)),
            None => (CancellationToken::new(), None),
        };
        let ended = tokio_util::sync::CancellationToken::new();
        let open = tokio_util::sync::CancellationToken::new();
        let (end, still_open) = (ended.clone(), open.clone());
        tokio::spawn(async move {
            let _anonymous = anonymous;
            let expired = until_expired(until);
            tokio::pin!(expired);
            let gone = loop {
                tokio::select! {
                    () = still_open.cancelled() => return,
                    () = &mut expired => {
                        end.cancel();
                        tracing::debug!("the credential that opened this event stream expired: the stream ends");
                        return;
                    }
                    () = bound.cancelled() => break false,
                    () = tokio::time::sleep(every) => {}
                }
                match store.lookup_as(&sid, owner.as_deref(), &limits).await {
                    Ok(Some(r)) if r.owner == owner => {}
                    // Bound to a principal since this stream was opened
                    // anonymously: what the server sends is theirs now.
                    Ok(Some(_)) => break false,
                    Ok(None) => break true,
                    Err(_) => {}
                }
                // The credential that opened it revoked since (a login
                // facade's token, say): the stream ends, as at its expiry.
                if let Some(p) = &opener
                    && let Ok(false) = authenticator.still_valid(p).await
                {
                    end.cancel();
                    tracing::debug!(
                        "the credential that opened this event stream was revoked: the stream ends"
                    );
                    return;
                }
            };
            end.cancel();
            if !gone {
                tracing::debug!("session bound to a principal: its anonymous event stream ends");
                return;
            }
            tracing::debug!("session gone from the store: its event stream ends");
            if let Some(p) = &parking {
                p.forget(&sid);
            }
            if let Some(close) = close_request(&sid) {
                let _ = closer.oneshot(close).await;
            }
        });
        resp.map(|body| {
            Body::new(Watched {
                body,
                ended: Box::pin(ended.cancelled_owned()),
                _open: open.drop_guard(),
                _slot: None,
            })
        })
    }

    /// `resp`, a subscription stream opened without a session, ending when
    /// the credential that opened it (`opener`'s) expires (after
    /// [`EXPIRED_STREAM_GRACE`] for one accepted past it, within the
    /// strategy's leeway) or at the check after the authenticator says it
    /// no longer stands (revoked); `slot` counts it until it ends.
    fn credential_watched(
        &self,
        resp: Response,
        opener: Option<Principal>,
        slot: ListenStream,
    ) -> Response {
        let every = stream_check_every(&self.limits);
        let authenticator = self.auth.authenticator();
        let ended = CancellationToken::new();
        let open = CancellationToken::new();
        let (end, still_open) = (ended.clone(), open.clone());
        if let Some(opener) = opener {
            let until = opener.expires_at;
            tokio::spawn(async move {
                let expired = until_expired(until);
                tokio::pin!(expired);
                loop {
                    tokio::select! {
                        () = still_open.cancelled() => return,
                        () = &mut expired => {
                            tracing::debug!("the credential that opened this subscription stream expired: the stream ends");
                            break;
                        }
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Ok(false) = authenticator.still_valid(&opener).await {
                        tracing::debug!(
                            "the credential that opened this subscription stream was revoked: the stream ends"
                        );
                        break;
                    }
                }
                end.cancel();
            });
        }
        resp.map(|body| {
            Body::new(Watched {
                body,
                ended: Box::pin(ended.cancelled_owned()),
                _open: open.drop_guard(),
                _slot: Some(slot),
            })
        })
    }

    /// A POST without a session: `initialize` opens one, anything else is a
    /// stateless request.
    async fn without_session<S>(
        self: Arc<Self>,
        mut inner: S,
        req: Request<Body>,
        authenticated: bool,
        owner: Option<String>,
        named_session: bool,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = Response> + Send + 'static,
        S::Future: Send,
        S::Error: Send + 'static,
    {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, self.max_body).await {
            Ok(b) => b,
            Err(e) => return Ok(unreadable_body(&e)),
        };
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        // Read once for both questions below.
        let method = method_of(&bytes);
        let initialize = method.as_deref() == Some("initialize");
        // An `initialize` naming a session (on the 2026-07-28 wire, which
        // has none): refused, not opened as a session of its own, which
        // the audit log, reading the header in front, would record under
        // the session named.
        if initialize && named_session {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "an initialize request must not name a session (Mcp-Session-Id)",
            ));
        }
        if !initialize {
            // Stateless (2026-07-28) requests: the policy applies per request.
            if !authenticated && self.policy.require_for_operations {
                return Ok(self.needs_credentials(&req));
            }
            if method.as_deref() != Some("subscriptions/listen") {
                return inner.call(req).await;
            }
            // A subscription stream: capped, and watched as a session's
            // event stream is (it went on past its credential's expiry
            // and revocation, and any number could be opened).
            let slot = match self.listening.open(owner.as_deref(), &self.limits) {
                Ok(slot) => slot,
                Err((status, description)) => {
                    return Ok(crate::refusal::refuse(
                        status,
                        "too_many_streams",
                        description,
                    ));
                }
            };
            let opener = req.extensions().get::<Principal>().cloned();
            let resp = inner.call(req).await?;
            if !is_event_stream(&resp) {
                return Ok(resp);
            }
            return Ok(self.credential_watched(resp, opener, slot));
        }
        if !authenticated && self.policy.require_for_session {
            return Ok(self.needs_credentials(&req));
        }
        // Run the creation to its end even if the client goes away mid-way,
        // so a session rmcp created is always recorded (or closed) and a
        // reservation is always committed or released. A session whose
        // answer no one awaits any more (the client went away, the request
        // timed out) is ended at once: its id never reached the client, so
        // it would only hold a slot of its owner's caps until it expired.
        let settings = self.clone();
        let awaited = tokio_util::sync::CancellationToken::new();
        let _awaiting = awaited.clone().drop_guard();
        let task = tokio::spawn(async move {
            let admission =
                match Admission::reserve(&settings.store, &settings.limits, owner.as_deref()).await
                {
                    Ok(a) => a,
                    Err(refused) => return Ok(refused),
                };
            let resp = inner.call(req).await?;
            let new_sid = resp
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let Some(sid) = new_sid else {
                admission.release().await;
                return Ok(resp);
            };
            // rmcp saves the session's state (what another replica, or this
            // one after parking, restores it from) and only logs a failure:
            // a session without it would be ended as gone at its first
            // restore. Refused now instead; the client opens another.
            if settings.state_saved {
                let refused = match settings.store.load_state(&sid).await {
                    Ok(Some(_)) => None,
                    Ok(None) => {
                        tracing::error!("the session's state could not be saved; refusing");
                        Some(store_down())
                    }
                    Err(e) => Some(unavailable(&e)),
                };
                if let Some(refused) = refused {
                    admission.release().await;
                    close_in(&mut inner, &sid).await;
                    return Ok(refused);
                }
            }
            match admission.commit(&sid).await {
                Ok(()) if awaited.is_cancelled() => {
                    if let Ok(true) = settings.store.end_live(&sid).await {
                        crate::observe::session_ended("abandoned");
                    }
                    close_in(&mut inner, &sid).await;
                    Ok(resp)
                }
                Ok(()) => Ok(match &settings.parking {
                    Some(p) => p.begin(&sid).await.hold(resp),
                    None => resp,
                }),
                Err(refused) => {
                    // Not recorded: close the session rmcp just opened.
                    close_in(&mut inner, &sid).await;
                    Ok(refused)
                }
            }
        });
        match task.await {
            Ok(r) => r,
            Err(_) => Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "session creation failed",
            )),
        }
    }
}

/// A `DELETE` of session `sid` for the MCP service below. rmcp refuses a
/// request without a `Host` (400) even with its own host check off (the
/// guard in front checks hosts), so one is named.
fn close_request(sid: &str) -> Option<Request<Body>> {
    Request::builder()
        .method(Method::DELETE)
        .uri("/")
        .header(http::header::HOST, "localhost")
        .header(SESSION_HEADER, sid)
        .body(Body::empty())
        .ok()
}

/// Closes session `sid` in the MCP service below (a `DELETE` of it).
async fn close_in<S>(inner: &mut S, sid: &str)
where
    S: Service<Request<Body>, Response = Response>,
{
    if let Some(close) = close_request(sid) {
        let _ = inner.call(close).await;
    }
}

/// rmcp's session store (the client's `initialize` parameters, so another
/// replica can restore a session) on top of a [`SharedStore`].
pub struct RmcpSessionState {
    store: SharedStore,
    limits: SessionLimits,
}

impl RmcpSessionState {
    /// rmcp state kept in `store`, expiring with the session.
    pub fn new(store: SharedStore, limits: SessionLimits) -> Self {
        Self { store, limits }
    }
}

#[async_trait::async_trait]
impl RmcpStore for RmcpSessionState {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.store.load_state(session_id).await? {
            None => Ok(None),
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let json = serde_json::to_string(state)?;
        Ok(self
            .store
            .save_state(session_id, &json, &self.limits)
            .await?)
    }

    async fn delete(&self, _session_id: &str) -> Result<(), SessionStoreError> {
        // The session layer ends sessions (record and state together); a
        // replica dropping its in-memory copy must not erase the shared state.
        Ok(())
    }
}

/// How long an event stream opened with a credential already past its
/// expiry (accepted within the strategy's leeway) stays open.
const EXPIRED_STREAM_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Ends when a stream opened with a credential expiring `until` must end:
/// at that time, or after [`EXPIRED_STREAM_GRACE`] for a credential
/// accepted past it, within the strategy's clock-skew leeway (ended at
/// once, its client would reopen it with the same credential, again and
/// again); never without an expiry.
async fn until_expired(until: Option<std::time::SystemTime>) {
    match until {
        Some(at) => {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or(EXPIRED_STREAM_GRACE);
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// How often an open event stream's session is looked up
/// ([`Settings::watched`]): half the idle timeout (so the lookups keep it
/// alive), at most 5 s (a session ended on another replica ends its
/// streams here within that), at least 100 ms.
fn stream_check_every(limits: &SessionLimits) -> std::time::Duration {
    (limits.idle_timeout / 2).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    )
}

/// Whether the request's `MCP-Protocol-Version` is a revision rmcp knows
/// that has no sessions (2026-07-28): it serves such a message statelessly.
fn sessionless(headers: &http::HeaderMap) -> bool {
    named_revision(headers).is_some_and(|known| known.is_some_and(|k| !k.has_initialize()))
}

/// The revision the request's `MCP-Protocol-Version` names: `None`
/// without the header, `Some(None)` for one rmcp does not know.
fn named_revision(
    headers: &http::HeaderMap,
) -> Option<Option<&'static rmcp::model::ProtocolVersion>> {
    let named = headers.get("mcp-protocol-version")?;
    Some(named.to_str().ok().and_then(|v| {
        rmcp::model::ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .find(|known| known.as_str() == v)
    }))
}

fn is_event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A session's event stream that ends when `ended` does (the session is
/// gone from the store); dropping it (the client went away) stops the
/// watch (`_open`).
struct Watched {
    body: Body,
    ended: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    _open: tokio_util::sync::DropGuard,
    /// A subscription stream's slot among the open ones, held until it
    /// ends.
    _slot: Option<ListenStream>,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.ended.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// Whether rmcp's streamable HTTP service closes a session for a DELETE
/// with these headers: without `MCP-Protocol-Version`, or with a version
/// it knows that has sessions (the revisions before 2026-07-28). It
/// refuses the others (400, 405), and such a DELETE must end nothing.
fn rmcp_ends_sessions_for(headers: &http::HeaderMap) -> bool {
    named_revision(headers).is_none_or(|known| known.is_some_and(|k| k.has_initialize()))
}

#[cfg(test)]
mod tests {
    use super::{Admission, AnonymousStreams, is_initialize};
    use mcp_auth_session::{MemoryStore, Reserve, SessionLimits, SharedStore};
    use std::{sync::Arc, time::Duration};

    /// A binding ends the session's anonymous streams; a stream counted
    /// into the entry the binding removed does not count down (or remove)
    /// a newer entry for the session when it ends; entries go once their
    /// streams have.
    #[test]
    fn anonymous_streams_end_at_a_binding_and_leave_nothing_behind() {
        let streams = AnonymousStreams::default();
        let (old, old_guard) = streams.open("s");
        streams.bound("s");
        assert!(old.is_cancelled());
        let (new, new_guard) = streams.open("s");
        assert!(!new.is_cancelled());
        drop(old_guard);
        assert_eq!(
            streams.with(|m| m.by_session.get("s").map(|e| e.1)),
            Some(1)
        );
        streams.bound("s");
        assert!(new.is_cancelled(), "the newer stream is still reached");
        drop(new_guard);
        let (_, a) = streams.open("t");
        let (_, b) = streams.open("t");
        drop((a, b));
        assert!(streams.with(|m| m.by_session.is_empty()));
    }

    /// A reservation that lapsed while rmcp created the session, its slot
    /// taken meanwhile: the commit is refused with the cap's answer, and
    /// the session rmcp already saved state for is ended in the store (not
    /// left behind without a record, counted nowhere, until it expires).
    #[tokio::test]
    async fn a_commit_refused_after_the_reservation_lapsed_ends_the_session() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let limits = SessionLimits {
            max_sessions: 1,
            max_anonymous: 1,
            reservation_ttl: Duration::from_millis(20),
            ..SessionLimits::default()
        };
        let slow = Admission::reserve(&store, &limits, None)
            .await
            .expect("the one slot");
        // rmcp creates the session and saves its `initialize` meanwhile...
        store.save_state("slow", "{}", &limits).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        // ... while the lapsed slot goes to another session.
        let Reserve::Granted(t) = store.reserve(None, &limits).await.unwrap() else {
            panic!("the lapsed reservation's slot is free again")
        };
        assert!(store.commit(&t, "fast", None, &limits).await.unwrap());
        let refused = slow.commit("slow").await.expect_err("no room left");
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers().contains_key(http::header::RETRY_AFTER));
        assert_eq!(
            store.load_state("slow").await.unwrap(),
            None,
            "state dropped"
        );
        assert!(store.lookup("slow", &limits).await.unwrap().is_none());
        // The session that got the slot is untouched.
        assert!(store.lookup("fast", &limits).await.unwrap().is_some());
    }

    /// A commit within the reservation records the session.
    #[tokio::test]
    async fn a_commit_within_the_reservation_records_the_session() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let limits = SessionLimits::default();
        let admission = Admission::reserve(&store, &limits, None).await.unwrap();
        store.save_state("s", "{}", &limits).await.unwrap();
        admission.commit("s").await.unwrap();
        assert!(store.lookup("s", &limits).await.unwrap().is_some());
        assert_eq!(store.load_state("s").await.unwrap().as_deref(), Some("{}"));
    }

    #[test]
    fn only_an_object_with_method_initialize_is_an_initialize() {
        assert!(is_initialize(
            br#" {"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#
        ));
        for body in [
            &br#"["initialize"]"#[..],
            br#"["initialize"  ]  "#,
            br#"{"method":"tools/list"}"#,
            br#"[{"method":"initialize"}]"#,
            b"initialize",
            b"",
        ] {
            assert!(!is_initialize(body), "{}", String::from_utf8_lossy(body));
        }
    }
}
