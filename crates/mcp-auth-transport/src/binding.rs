//! Sessions bound to the principal that opened them.
//!
//! ```
//! use axum::{Router, routing::post};
//! use mcp_auth_transport::SessionBindingLayer;
//!
//! // Behind the auth layer, in front of the MCP service.
//! let app: Router = Router::new()
//!     .route("/mcp", post(|| async { "..." }))
//!     .layer(SessionBindingLayer::new(100_000));
//! # let _ = app;
//! ```
//!
//! A session id is not a credential: every request is authenticated, and a
//! request that presents a session opened by someone else gets the same 404
//! as an unknown session (so it does not even learn that the session exists).
//! The binding is to the identity (issuer, subject, client id), not to the
//! token, so it survives token refresh.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, StatusCode};
use mcp_auth_core::Principal;
use tower_layer::Layer;
use tower_service::Service;

const SESSION_HEADER: &str = "mcp-session-id";

/// Who a session belongs to.
type Identity = (Option<String>, String, Option<String>);

fn identity(p: &Principal) -> Identity {
    let (iss, sub, cid) = p.identity_key();
    (
        iss.map(str::to_owned),
        sub.to_owned(),
        cid.map(str::to_owned),
    )
}

#[derive(Default)]
struct Table {
    sessions: HashMap<String, (Identity, Instant)>,
}

/// Binds sessions to principals: a session answers only the principal
/// (issuer, subject, client id) whose request opened it; anyone else gets 404.
#[derive(Clone)]
pub struct SessionBindingLayer {
    table: Arc<Mutex<Table>>,
    capacity: usize,
}

impl SessionBindingLayer {
    /// A binding table for at most `capacity` live sessions. When full, the
    /// longest-idle binding is dropped (that session then answers 404 and
    /// its client opens a new one).
    pub fn new(capacity: usize) -> Self {
        Self {
            table: Arc::new(Mutex::new(Table::default())),
            capacity: capacity.max(1),
        }
    }

    /// How many sessions are bound.
    pub fn len(&self) -> usize {
        self.with(|t| t.sessions.len())
    }

    /// Whether no session is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        match self.table.lock() {
            Ok(mut t) => f(&mut t),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn bind(&self, sid: String, who: Identity) {
        let capacity = self.capacity;
        self.with(|t| {
            if t.sessions.len() >= capacity
                && let Some(oldest) = t
                    .sessions
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| k.clone())
            {
                tracing::warn!("session binding table full; dropping the longest-idle session");
                t.sessions.remove(&oldest);
            }
            t.sessions.insert(sid, (who, Instant::now()));
        });
    }

    /// Whether `who` may use `sid`; refreshes its idle time when so.
    fn admits(&self, sid: &str, who: &Identity) -> bool {
        self.with(|t| match t.sessions.get_mut(sid) {
            Some((owner, seen)) if owner == who => {
                *seen = Instant::now();
                true
            }
            _ => false,
        })
    }

    fn unbind(&self, sid: &str) {
        self.with(|t| t.sessions.remove(sid));
    }

    /// Drops bindings idle for longer than `idle`.
    pub fn sweep(&self, idle: Duration) {
        self.with(|t| t.sessions.retain(|_, (_, seen)| seen.elapsed() <= idle));
    }
}

impl<S> Layer<S> for SessionBindingLayer {
    type Service = SessionBinding<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`SessionBindingLayer`].
#[derive(Clone)]
pub struct SessionBinding<S> {
    inner: S,
    layer: SessionBindingLayer,
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

impl<S, B> Service<Request<B>> for SessionBinding<S>
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let Some(who) = req.extensions().get::<Principal>().map(identity) else {
                // No principal: the auth layer is not in front. Refuse to
                // serve sessions blind.
                tracing::error!("session binding without an authenticated principal");
                return Ok((StatusCode::INTERNAL_SERVER_ERROR, "no principal").into_response());
            };
            let sid = req
                .headers()
                .get(SESSION_HEADER)
                .map(|v| v.to_str().map(str::to_owned));
            match sid {
                Some(Err(_)) => Ok(not_found()),
                Some(Ok(sid)) => {
                    if !layer.admits(&sid, &who) {
                        tracing::debug!("session id refused: unknown, ended, or someone else's");
                        return Ok(not_found());
                    }
                    let is_delete = req.method() == Method::DELETE;
                    let resp = inner.call(req).await?;
                    if is_delete && resp.status().is_success()
                        || resp.status() == StatusCode::NOT_FOUND
                    {
                        layer.unbind(&sid);
                    }
                    Ok(resp)
                }
                None => {
                    let resp = inner.call(req).await?;
                    if let Some(new_sid) = resp
                        .headers()
                        .get(SESSION_HEADER)
                        .and_then(|v: &HeaderValue| v.to_str().ok())
                    {
                        layer.bind(new_sid.to_owned(), who);
                    }
                    Ok(resp)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(s: &str) -> Identity {
        (None, s.to_owned(), None)
    }

    #[test]
    fn full_tables_drop_the_longest_idle_binding() {
        let l = SessionBindingLayer::new(2);
        l.bind("a".into(), who("x"));
        std::thread::sleep(Duration::from_millis(2));
        l.bind("b".into(), who("x"));
        assert!(l.admits("a", &who("x")));
        l.bind("c".into(), who("y"));
        assert_eq!(l.len(), 2);
        assert!(!l.admits("b", &who("x")), "b was the longest idle");
        assert!(l.admits("a", &who("x")));
        assert!(!l.admits("c", &who("x")), "c belongs to y");
        l.sweep(Duration::ZERO);
        assert!(l.is_empty());
    }
}
