//! The answers every layer gives when it refuses a request for a reason
//! other than authentication: one JSON body shape, `Retry-After` on every
//! 429 and 503, the same wording on both HTTP transports.
//!
//! ```text
//! HTTP/1.1 503 Service Unavailable
//! content-type: application/json
//! retry-after: 5
//!
//! {"error":"temporarily_unavailable","error_description":"session store unavailable; try again shortly"}
//! ```

use std::time::Duration;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use mcp_auth_core::ErrorBody;
#[cfg(feature = "mcp")]
use mcp_auth_session::{Full, StoreError};

/// How long a client is asked to wait after a 503 for a full server or an
/// unreachable store.
const RETRY_SECS: u64 = 5;

/// `{"error": code, "error_description": description}` with `status`;
/// 429 and 503 carry `Retry-After` (`retry`, at least one second). Like
/// every refusal, not to be stored by caches (it depends on who asked, and
/// credentials in `X-API-Key` do not keep shared caches away as
/// `Authorization` does).
pub(crate) fn refuse_after(
    status: StatusCode,
    code: &str,
    description: &str,
    retry: Duration,
) -> Response {
    let mut r = no_store((status, Json(ErrorBody::new(code, description))).into_response());
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(mcp_auth_core::retry_after_secs(retry)),
        );
    }
    r
}

/// [`refuse_after`] with the default retry delay.
pub(crate) fn refuse(status: StatusCode, code: &str, description: &str) -> Response {
    refuse_after(status, code, description, Duration::from_secs(RETRY_SECS))
}

#[cfg(feature = "mcp")]
/// rmcp's body for an unknown session.
pub(crate) const RMCP_SESSION_NOT_FOUND: &str = "Not Found: Session not found";

#[cfg(feature = "mcp")]
/// How rmcp's body (a 500) begins when the session store failed as it read
/// a session's state to restore it: rmcp's words, then a
/// [`StoreError`]'s. Other restore failures (a handler that cannot start)
/// read otherwise.
pub(crate) const RMCP_RESTORE_FAILED: &str =
    "Encounter an error when restore session: session store ";

#[cfg(feature = "mcp")]
/// rmcp's answer for an unknown session, which clients recognise: a
/// session that is gone, expired or someone else's.
pub(crate) fn session_not_found() -> Response {
    no_store((StatusCode::NOT_FOUND, RMCP_SESSION_NOT_FOUND).into_response())
}

/// `Cache-Control: no-store` on `r`.
pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(feature = "mcp")]
/// The session store cannot answer: 503, fail closed.
pub(crate) fn store_unavailable(e: &StoreError) -> Response {
    tracing::error!(store = %e.store, reason = %e.reason, "session store unavailable; refusing");
    store_down()
}

#[cfg(feature = "mcp")]
/// The answer of [`store_unavailable`], for a failure known only by its
/// effect (rmcp's own report of it, state that was not saved).
pub(crate) fn store_down() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "session store unavailable; try again shortly",
    )
}

#[cfg(feature = "mcp")]
/// A session cap is reached: 429 when it is the caller's own, 503 when
/// the server's.
pub(crate) fn cap_reached(which: Full) -> Response {
    let cap = match which {
        Full::Principal => "principal",
        Full::Subject => "subject",
        Full::Anonymous => "anonymous",
        _ => "global",
    };
    metrics::counter!("mcp_auth_sessions_refused_total", "cap" => cap).increment(1);
    if matches!(which, Full::Principal | Full::Subject) {
        crate::observe::rate_limited("sessions");
    }
    let (status, description) = match which {
        Full::Principal => (
            StatusCode::TOO_MANY_REQUESTS,
            "you have too many open sessions; end one (DELETE it, or close its SSE stream) or wait for one to expire",
        ),
        Full::Subject => (
            StatusCode::TOO_MANY_REQUESTS,
            "you have too many open sessions across your clients; end one (DELETE it, or close its SSE stream) or wait for one to expire",
        ),
        Full::Anonymous => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many anonymous sessions; authenticate to open one",
        ),
        // The global cap, and any cap a future store adds.
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has reached its session limit; try again later",
        ),
    };
    refuse(status, "too_many_sessions", description)
}

#[cfg(feature = "mcp")]
/// The body is over the configured limit.
pub(crate) fn payload_too_large() -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body too large",
    )
}

/// The request body did not arrive completely within the body read
/// timeout (see [`ServeOptions::body_read_timeout`](crate::ServeOptions)).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body not received in time")]
pub(crate) struct BodyTimedOut;

#[cfg(feature = "mcp")]
/// The body holds more JSON values than its size allows (see
/// [`crate::message::max_values`]).
pub(crate) fn too_many_values() -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body holds too many JSON values (one per 64 bytes of the body limit)",
    )
}

#[cfg(feature = "mcp")]
/// The answer to a request body that could not be read: 413 over the
/// limit, 408 too slow, 400 otherwise (the client reset the stream, a
/// malformed chunk).
pub(crate) fn unreadable_body(e: &axum::Error) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return payload_too_large();
        }
        if c.is::<BodyTimedOut>() {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received in time",
            );
        }
        cause = c.source();
    }
    refuse(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "request body could not be read",
    )
}

#[cfg(feature = "mcp")]
/// A JSON-RPC error response for a body that is not a JSON-RPC message:
/// 400 with `-32700` (not JSON) or `-32600` (JSON, but no message), `id`
/// null, as JSON-RPC 2.0 and the MCP transport prescribe.
pub(crate) fn jsonrpc_unreadable(body: &[u8]) -> Response {
    let (code, message) = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(_) => (-32700, "Parse error"),
        Ok(_) => (-32600, "Invalid Request"),
    };
    no_store(
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": { "code": code, "message": message },
            })),
        )
            .into_response(),
    )
}

#[cfg(feature = "mcp")]
/// In front of rmcp's service: rmcp answers a JSON body it cannot read as
/// JSON-RPC with 415 (as if the media type were wrong); that answer
/// becomes [`jsonrpc_unreadable`]. A wrong `Content-Type` keeps its 415.
/// Bodies over `max` bytes get 413, and so do bodies of more JSON values
/// than that size allows ([`too_many_values`]). (A service of its own rather than
/// axum's `from_fn`, which boxes twice more per request.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct JsonRpcErrorsLayer(pub(crate) usize);

#[cfg(feature = "mcp")]
impl<S> tower::Layer<S> for JsonRpcErrorsLayer {
    type Service = JsonRpcErrors<S>;

    fn layer(&self, inner: S) -> JsonRpcErrors<S> {
        JsonRpcErrors { inner, max: self.0 }
    }
}

#[cfg(feature = "mcp")]
#[derive(Clone, Debug)]
pub(crate) struct JsonRpcErrors<S> {
    inner: S,
    max: usize,
}

#[cfg(feature = "mcp")]
impl<S> tower::Service<axum::extract::Request> for JsonRpcErrors<S>
where
    S: tower::Service<axum::extract::Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Map<
        futures::future::Either<
            S::Future,
            futures::future::BoxFuture<'static, Result<Response, S::Error>>,
        >,
        fn(Result<Response, S::Error>) -> Result<Response, S::Error>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        // rmcp's own refusals (405, 406, 415, a header that disagrees with
        // the body) are kept by no cache either.
        let answer = if req.method() != http::Method::POST {
            futures::future::Either::Left(self.inner.call(req))
        } else {
            futures::future::Either::Right(self.read_then_call(req))
        };
        futures::FutureExt::map(answer, refusals_not_stored)
    }
}

/// `no-store` on an error answer that says nothing about caching.
#[cfg(feature = "mcp")]
fn refusals_not_stored<E>(r: Result<Response, E>) -> Result<Response, E> {
    r.map(|resp| {
        match resp.status().as_u16() >= 400 && !resp.headers().contains_key(header::CACHE_CONTROL) {
            true => no_store(resp),
            false => resp,
        }
    })
}

#[cfg(feature = "mcp")]
impl<S> JsonRpcErrors<S>
where
    S: tower::Service<axum::extract::Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// A POST: the body read first, then the call.
    fn read_then_call(
        &mut self,
        req: axum::extract::Request,
    ) -> futures::future::BoxFuture<'static, Result<Response, S::Error>> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        // The body is read before the call: the service polled ready goes
        // with the request, a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max = self.max;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, max).await {
                Ok(b) => b,
                Err(e) => return Ok(unreadable_body(&e)),
            };
            // (rmcp reads only JSON bodies; others get its 415.)
            if json && crate::message::over_values(&bytes, crate::message::max_values(max)) {
                return Ok(too_many_values());
            }
            let resp = inner
                .call(axum::extract::Request::from_parts(
                    parts,
                    axum::body::Body::from(bytes.clone()),
                ))
                .await?;
            if json && resp.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                return Ok(jsonrpc_unreadable(&bytes));
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
#[cfg(feature = "mcp")]
mod tests {
    use super::*;

    #[test]
    fn every_429_and_503_says_when_to_retry() {
        for which in [
            Full::Principal,
            Full::Subject,
            Full::Anonymous,
            Full::Global,
        ] {
            let r = cap_reached(which);
            assert!(matches!(r.status().as_u16(), 429 | 503), "{which:?}");
            assert_eq!(r.headers()[header::RETRY_AFTER], "5", "{which:?}");
        }
        let e = StoreError {
            store: "memory".into(),
            reason: "down".into(),
        };
        assert_eq!(store_unavailable(&e).headers()[header::RETRY_AFTER], "5");
        let r = refuse_after(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "x",
            Duration::from_millis(10),
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "1", "never 0");
        let r = refuse_after(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "x",
            Duration::from_millis(899_970),
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "900", "rounded up");
        assert!(
            payload_too_large()
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
    }

    #[test]
    fn no_refusal_is_kept_by_caches() {
        let e = StoreError {
            store: "memory".into(),
            reason: "down".into(),
        };
        let refusals = [
            refuse(StatusCode::FORBIDDEN, "forbidden", "Host not allowed"),
            refuse(StatusCode::REQUEST_TIMEOUT, "request_timeout", "x"),
            cap_reached(Full::Principal),
            cap_reached(Full::Global),
            store_unavailable(&e),
            payload_too_large(),
            session_not_found(),
            jsonrpc_unreadable(b"{"),
            jsonrpc_unreadable(b"[]"),
        ];
        for r in refusals {
            assert_eq!(
                r.headers().get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
                Some(&b"no-store"[..]),
                "{}",
                r.status()
            );
        }
    }

    async fn body_of(r: Response) -> serde_json::Value {
        let b = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn unreadable_bodies_get_the_json_rpc_error_codes() {
        let r = jsonrpc_unreadable(b"{not json");
        assert_eq!(r.status(), 400);
        let b = body_of(r).await;
        assert_eq!(b["error"]["code"], -32700);
        assert_eq!(b["id"], serde_json::Value::Null);
        assert_eq!(b["jsonrpc"], "2.0");
        let b = body_of(jsonrpc_unreadable(br#"{"jsonrpc":"2.0"}"#)).await;
        assert_eq!(b["error"]["code"], -32600);
    }
}
