//! [`DpopHttpClient`]: rmcp's Streamable HTTP client transport with a
//! DPoP-bound access token (RFC 9449 §7).

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, ErrorData, JsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        auth::AuthError,
        streamable_http_client::{
            AuthRequiredError, HttpStatusError, InsufficientScopeError, SseError,
            StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
            StreamableHttpResponseLimits,
        },
    },
};
use sse_stream::{Sse, SseStream};

use crate::{
    DpopKey,
    dpop::{DPOP_HEADER, DPOP_NONCE_HEADER, is_nonce_challenge},
    failure::challenge_param,
};

type Error = StreamableHttpError<reqwest::Error>;

const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";
/// Headers the transport sets itself (as rmcp's client refuses them as
/// custom headers); `MCP-Protocol-Version` is allowed.
const RESERVED: &[&str] = &["accept", SESSION_ID, LAST_EVENT_ID];
/// Largest `Retry-After` value kept (as rmcp).
const MAX_RETRY_AFTER: usize = 128;
/// rmcp's default largest SSE event.
const DEFAULT_MAX_SSE_EVENT: usize = 16 * 1024 * 1024;

/// A [`StreamableHttpClient`] that presents a DPoP-bound token with a
/// proof on every request (RFC 9449 §7): `Authorization: DPoP <token>` and
/// a fresh proof, the server's nonces honoured. `Debug` shows no token.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mcp_auth_client::{DpopHttpClient, DpopKey};
/// use rmcp::{ServiceExt, transport::StreamableHttpClientTransport};
/// use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
///
/// // The key the token was bound to at the token request, and the token.
/// let key = DpopKey::generate()?;
/// let http = DpopHttpClient::new(key).with_token("eyJ...");
/// let config = StreamableHttpClientTransportConfig::with_uri("https://mcp.example.com/mcp");
/// let client = ().serve(StreamableHttpClientTransport::with_client(http, config)).await?;
/// # Ok(()) }
/// ```
///
/// The token is the one the transport passes (rmcp's `AuthClient` over
/// this client, which refreshes it), else the one given with
/// [`DpopHttpClient::with_token`]. It is always presented as `DPoP`, even
/// to a server whose challenge names only `Bearer`: a bound token must not
/// be downgraded (RFC 9449 §7.1).
///
/// Nonces (§9): the latest `DPoP-Nonce` of any response goes into the next
/// proofs; a `401` with a `DPoP error="use_dpop_nonce"` challenge and a new
/// nonce is retried once, with a new proof carrying it, and never more.
///
/// Responses are read as rmcp's own reqwest client reads them (JSON or SSE,
/// the same size limits, the same errors, so `reqwest::Error` is the error
/// type), which needs this client to see every response's headers.
#[derive(Clone)]
pub struct DpopHttpClient {
    http: reqwest::Client,
    key: DpopKey,
    token: Option<Arc<str>>,
}

impl fmt::Debug for DpopHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopHttpClient")
            .field("key", &self.key)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl DpopHttpClient {
    /// Proofs signed with `key`; the token is the transport's.
    pub fn new(key: DpopKey) -> Self {
        Self {
            http: crate::connect::mcp_http(),
            key,
            token: None,
        }
    }

    /// `token` when the transport passes none (a token from
    /// [`crate::client_credentials`] and the like, not refreshed).
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// Sends with `http` (its proxy, TLS and timeout settings).
    #[must_use]
    pub fn with_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The key the proofs are signed with.
    pub fn key(&self) -> &DpopKey {
        &self.key
    }

    /// Sends what `build` makes, with the token and a proof; retries once
    /// on a `use_dpop_nonce` challenge that brings a new nonce. Every
    /// response's `DPoP-Nonce` is kept for the next proofs.
    async fn send(
        &self,
        method: Method,
        uri: &str,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let token: Option<Arc<str>> = auth_token.map(Arc::from).or_else(|| self.token.clone());
        let mut builder_headers = HeaderMap::new();
        for (name, value) in custom_headers {
            if RESERVED
                .iter()
                .any(|r| name.as_str().eq_ignore_ascii_case(r))
            {
                return Err(StreamableHttpError::ReservedHeaderConflict(
                    name.to_string(),
                ));
            }
            // The token and the proof are this client's.
            if token.is_some() && (name == header::AUTHORIZATION || name.as_str() == DPOP_HEADER) {
                continue;
            }
            builder_headers.append(name, value);
        }
        let Some(token) = token else {
            // No token yet: unauthenticated, the server's 401 drives the login.
            let request = build(self.http.request(method, uri)).headers(builder_headers);
            return Ok(request.send().await?);
        };
        let authorization = HeaderValue::from_str(&format!("DPoP {token}")).map_err(|_| {
            StreamableHttpError::Auth(AuthError::InternalError(
                "the access token is not a valid header value".into(),
            ))
        })?;
        let mut retried = false;
        loop {
            let sent_nonce = self.key.nonce_for(uri);
            let proof = self
                .key
                .proof(method.as_str(), uri, Some(&token), sent_nonce.as_deref())
                .map_err(|e| StreamableHttpError::Auth(AuthError::InternalError(e.to_string())))?;
            let request = build(self.http.request(method.clone(), uri))
                .headers(builder_headers.clone())
                .header(header::AUTHORIZATION, authorization.clone())
                .header(DPOP_HEADER, proof);
            let response = request.send().await?;
            let nonce = response
                .headers()
                .get(DPOP_NONCE_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|n| self.key.remember_nonce(uri, n))
                .map(str::to_owned);
            let wants_nonce = response.status() == StatusCode::UNAUTHORIZED
                && response
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(is_nonce_challenge);
            if wants_nonce && !retried && nonce.is_some() && nonce != sent_nonce {
                tracing::debug!(%method, "the server wants a DPoP nonce: retrying once with it");
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }
}

/// The challenge of a 401 (as [`StreamableHttpError::AuthRequired`]) or a
/// 403 ([`StreamableHttpError::InsufficientScope`]), when there is one.
fn auth_error(response: &reqwest::Response) -> Option<Error> {
    let status = response.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return None;
    }
    let value = response.headers().get(header::WWW_AUTHENTICATE)?;
    let Ok(challenge) = value.to_str() else {
        return Some(StreamableHttpError::UnexpectedServerResponse(Cow::from(
            "invalid www-authenticate header value",
        )));
    };
    let challenge = challenge.to_owned();
    Some(if status == StatusCode::UNAUTHORIZED {
        StreamableHttpError::AuthRequired(AuthRequiredError::new(challenge))
    } else {
        let scope = challenge_param(&challenge, "scope");
        StreamableHttpError::InsufficientScope(InsufficientScopeError::new(challenge, scope))
    })
}

/// A 429 or 5xx as status metadata (as rmcp).
fn status_error(status: StatusCode, headers: &HeaderMap) -> Option<HttpStatusError> {
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .filter(|v| v.as_bytes().len() <= MAX_RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some(HttpStatusError::new(status.as_u16(), retry_after))
}

/// Whether a `Content-Type` value's media type is `expected`.
fn media_type_is(value: &[u8], expected: &str) -> bool {
    value
        .split(|b| *b == b';')
        .next()
        .and_then(|essence| std::str::from_utf8(essence).ok())
        .is_some_and(|essence| {
            essence
                .trim_matches([' ', '\t'])
                .eq_ignore_ascii_case(expected)
        })
}

/// The body, refused past `max` bytes.
async fn read_bounded(response: reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
    }
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        if chunk.len() > max - body.len() {
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most `max` bytes of the body, for a diagnostic.
async fn read_prefix(response: reqwest::Response, max: usize) -> String {
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while body.len() < max {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let n = chunk.len().min(max - body.len());
                body.extend_from_slice(&chunk[..n]);
            }
            Some(Err(_)) => return "<failed to read response body>".into(),
            None => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A sessionless `server/discover` refused with a 4xx (not 401/403) as the
/// JSON-RPC error the lifecycle can classify (rmcp's own client does the
/// same), so that [`crate::Wire::Auto`] falls back to 2025-11-25.
fn discover_refusal(
    message: &ClientJsonRpcMessage,
    session_attached: bool,
    status: StatusCode,
    body: &str,
) -> Option<StreamableHttpPostResponse> {
    if session_attached
        || !status.is_client_error()
        || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        return None;
    }
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    if !matches!(request.request, ClientRequest::DiscoverRequest(_)) {
        return None;
    }
    let error = match serde_json::from_str::<ServerJsonRpcMessage>(body) {
        Ok(ServerJsonRpcMessage::Error(error)) => error.error,
        _ => ErrorData::invalid_request(
            format!("server/discover rejected with HTTP {status}: {body}"),
            None,
        ),
    };
    Some(StreamableHttpPostResponse::Json(
        ServerJsonRpcMessage::error(error, Some(request.id.clone())),
        None,
    ))
}

/// An SSE event stream from `bytes`, each event at most `max` bytes.
fn sse<S>(bytes: S, max: usize) -> BoxStream<'static, Result<Sse, SseError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let mut limit = EventLimit::new(max);
    let bounded = bytes
        .map(move |chunk| match chunk {
            Ok(chunk) => limit.observe(&chunk).map(|()| chunk),
            Err(e) => Err(SseBodyError::Body(e)),
        })
        .scan(false, |failed, item| {
            // End the stream after the first error.
            let out = (!*failed).then_some(item);
            if matches!(out, Some(Err(_))) {
                *failed = true;
            }
            futures::future::ready(out)
        });
    SseStream::from_bytes_stream(bounded).boxed()
}

/// Why an SSE body ended.
#[derive(Debug, thiserror::Error)]
enum SseBodyError {
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Body(reqwest::Error),
}

/// Counts the bytes of the current SSE event (a blank line ends one).
struct EventLimit {
    max: usize,
    event: usize,
    line: usize,
    after_cr: bool,
}

impl EventLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            event: 0,
            line: 0,
            after_cr: false,
        }
    }

    fn observe(&mut self, chunk: &[u8]) -> Result<(), SseBodyError> {
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.line == 0 {
                        self.event = 0;
                    }
                    self.line = 0;
                }
                _ => {
                    self.after_cr = false;
                    self.line += 1;
                    self.event += 1;
                    if self.event > self.max {
                        return Err(SseBodyError::TooLarge(self.max));
                    }
                }
            }
        }
        Ok(())
    }
}

impl StreamableHttpClient for DpopHttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_token,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_token,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let session_attached = session_id.is_some();
        let response = self
            .send(Method::POST, &uri, auth_token, custom_headers, |request| {
                let mut request = request
                    .header(header::ACCEPT, format!("{EVENT_STREAM}, {JSON}"))
                    .json(&message);
                if let Some(session) = &session_id {
                    request = request.header(SESSION_ID, session.as_ref());
                }
                request
            })
            .await?;
        if let Some(e) = auth_error(&response) {
            return Err(e);
        }
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_attached {
            return Err(StreamableHttpError::SessionExpired);
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|ct| String::from_utf8_lossy(ct.as_bytes()).into_owned());
        let is_json = content_type
            .as_deref()
            .is_some_and(|ct| media_type_is(ct.as_bytes(), JSON));
        let status_failure = status_error(status, response.headers());
        if let Some(e) = &status_failure
            && (!is_json || status == StatusCode::TOO_MANY_REQUESTS)
        {
            return Err(HttpStatusError::new(e.status, e.retry_after.clone()).into());
        }
        let session = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let awaits_no_response = matches!(
            message,
            ClientJsonRpcMessage::Notification(_)
                | ClientJsonRpcMessage::Response(_)
                | ClientJsonRpcMessage::Error(_)
        );
        if status.is_success() && response.content_length() == Some(0) && awaits_no_response {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if !status.is_success() {
            let auth_failure = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
            let body = if is_json && !auth_failure {
                match read_bounded(response, limits.max_json_response_size).await {
                    Ok(raw) => {
                        let text = String::from_utf8_lossy(&raw).into_owned();
                        if let Ok(error @ JsonRpcMessage::Error(_)) =
                            serde_json::from_str::<ServerJsonRpcMessage>(&text)
                        {
                            if let Some(r) =
                                discover_refusal(&message, session_attached, status, &text)
                            {
                                return Ok(r);
                            }
                            return Ok(StreamableHttpPostResponse::Json(error, session));
                        }
                        text.chars().take(limits.max_error_response_size).collect()
                    }
                    Err(e @ StreamableHttpError::ResponseBodyTooLarge { .. }) => {
                        return Err(status_failure.map(StreamableHttpError::from).unwrap_or(e));
                    }
                    Err(StreamableHttpError::Client(_)) => "<failed to read response body>".into(),
                    Err(e) => return Err(e),
                }
            } else {
                read_prefix(response, limits.max_error_response_size).await
            };
            if let Some(r) = discover_refusal(&message, session_attached, status, &body) {
                return Ok(r);
            }
            if let Some(e) = status_failure {
                return Err(e.into());
            }
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("HTTP {status}: {body}"),
            )));
        }
        match content_type.as_deref() {
            Some(ct) if media_type_is(ct.as_bytes(), EVENT_STREAM) => {
                Ok(StreamableHttpPostResponse::Sse(
                    sse(response.bytes_stream(), limits.max_sse_event_size),
                    session,
                ))
            }
            Some(ct) if media_type_is(ct.as_bytes(), JSON) => {
                let body = read_bounded(response, limits.max_json_response_size).await?;
                match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                    Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, session)),
                    Err(_) if awaits_no_response => Ok(StreamableHttpPostResponse::Accepted),
                    Err(e) => Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                        format!(
                            "could not parse JSON response as ServerJsonRpcMessage: {e}: {}",
                            crate::one_line(&String::from_utf8_lossy(&body), 256)
                        ),
                    ))),
                }
            }
            _ if awaits_no_response => Ok(StreamableHttpPostResponse::Accepted),
            _ => Err(StreamableHttpError::UnexpectedContentType(content_type)),
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let response = self
            .send(
                Method::DELETE,
                &uri,
                auth_token,
                custom_headers,
                |request| request.header(SESSION_ID, session_id.as_ref()),
            )
            .await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            tracing::debug!("the server does not end sessions on DELETE (405)");
            return Ok(());
        }
        response.error_for_status()?;
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_token,
            custom_headers,
            DEFAULT_MAX_SSE_EVENT,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let response = self
            .send(Method::GET, &uri, auth_token, custom_headers, |request| {
                let mut request = request.header(header::ACCEPT, format!("{EVENT_STREAM}, {JSON}"));
                if let Some(session) = &session_id {
                    request = request.header(SESSION_ID, session.as_ref());
                }
                if let Some(id) = &last_event_id {
                    request = request.header(LAST_EVENT_ID, id.as_str());
                }
                request
            })
            .await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(e) = auth_error(&response) {
            return Err(e);
        }
        if let Some(e) = status_error(response.status(), response.headers()) {
            return Err(e.into());
        }
        let response = response.error_for_status()?;
        match response.headers().get(header::CONTENT_TYPE) {
            Some(ct)
                if media_type_is(ct.as_bytes(), EVENT_STREAM)
                    || media_type_is(ct.as_bytes(), JSON) => {}
            Some(ct) => {
                return Err(StreamableHttpError::UnexpectedContentType(Some(
                    String::from_utf8_lossy(ct.as_bytes()).into_owned(),
                )));
            }
            None => return Err(StreamableHttpError::UnexpectedContentType(None)),
        }
        Ok(sse(response.bytes_stream(), max_sse_event_size))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Mutex,
        time::{SystemTime, UNIX_EPOCH},
    };

    use axum::{
        Router,
        body::Bytes as Body,
        http::HeaderMap as Headers,
        response::{IntoResponse, Response},
        routing::post,
    };
    use mcp_auth_jwt::DpopVerifier;
    use rmcp::model::{ClientNotification, InitializedNotification};

    use super::*;

    /// What the fake MCP server saw of one request.
    #[derive(Debug, Clone)]
    struct Seen {
        authorization: Option<String>,
        /// The proof's verdict by the server-side verifier: `Ok(nonce)`.
        proof: Result<Option<String>, String>,
        jti: Option<String>,
    }

    /// An MCP endpoint that checks proofs with `mcp_auth_jwt::DpopVerifier`
    /// for `token`; with `nonces`, it wants `nonces[i]` after the i-th
    /// challenge (and challenges whenever the proof lacks the current
    /// one).
    struct Fake {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Fake {
        async fn start(token: &'static str, nonce: Option<&'static str>, always: bool) -> Fake {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let url = Arc::new(Mutex::new(String::new()));
            let (log, at) = (seen.clone(), url.clone());
            let app = Router::new().route(
                "/mcp",
                post(move |headers: Headers, _body: Body| {
                    let (log, at) = (log.clone(), at.clone());
                    async move {
                        let url = at.lock().unwrap().clone();
                        let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs();
                        let verdict =
                            get("dpop")
                                .ok_or_else(|| "no proof".to_owned())
                                .and_then(|p| {
                                    DpopVerifier::default()
                                        .verify(&p, "POST", &url, Some(token), None, now)
                                        .map_err(|e| e.to_string())
                                });
                        log.lock().unwrap().push(Seen {
                            authorization: get("authorization"),
                            proof: verdict.clone().map(|p| p.nonce),
                            jti: verdict.as_ref().ok().map(|p| p.jti.clone()),
                        });
                        let challenge = |nonce: &str| -> Response {
                            (
                                StatusCode::UNAUTHORIZED,
                                [
                                    (
                                        header::WWW_AUTHENTICATE.as_str(),
                                        r#"DPoP error="use_dpop_nonce", algs="ES256""#,
                                    ),
                                    ("dpop-nonce", nonce),
                                ],
                            )
                                .into_response()
                        };
                        match (verdict, nonce) {
                            (Err(e), _) => (
                                StatusCode::UNAUTHORIZED,
                                [(
                                    header::WWW_AUTHENTICATE,
                                    "DPoP error=\"invalid_dpop_proof\"",
                                )],
                                e,
                            )
                                .into_response(),
                            // Always: a new nonce with every challenge.
                            (Ok(_), Some(n)) if always => {
                                let count = log.lock().unwrap().len();
                                challenge(&format!("{n}-{count}"))
                            }
                            (Ok(p), Some(n)) if p.nonce.as_deref() != Some(n) => challenge(n),
                            (Ok(_), _) => (StatusCode::ACCEPTED, [("dpop-nonce", "next-nonce")])
                                .into_response(),
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            *url.lock().unwrap() = format!("http://{addr}/mcp");
            tokio::spawn(async move { axum::serve(listener, app).await });
            Fake {
                url: format!("http://{addr}/mcp"),
                seen,
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn notification() -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::notification(ClientNotification::InitializedNotification(
            InitializedNotification::default(),
        ))
    }

    async fn send_notification(
        client: &DpopHttpClient,
        fake: &Fake,
        token: Option<&str>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        client
            .post_message(
                Arc::from(fake.url.as_str()),
                notification(),
                None,
                token.map(str::to_owned),
                HashMap::new(),
            )
            .await
    }

    /// `Authorization: DPoP <token>` and a proof the server's verifier
    /// accepts (with `ath`), a new `jti` each time; a Bearer challenge
    /// does not downgrade it.
    #[tokio::test]
    async fn presents_the_token_as_dpop_with_a_fresh_proof() {
        let fake = Fake::start("tok-1", None, false).await;
        let client = DpopHttpClient::new(DpopKey::generate().unwrap());
        for _ in 0..2 {
            let r = send_notification(&client, &fake, Some("tok-1"))
                .await
                .unwrap();
            assert!(matches!(r, StreamableHttpPostResponse::Accepted), "{r:?}");
        }
        let seen = fake.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for s in &seen {
            assert_eq!(s.authorization.as_deref(), Some("DPoP tok-1"));
        }
        // The first answer's DPoP-Nonce went into the second proof.
        assert_eq!(seen[0].proof, Ok(None));
        assert_eq!(seen[1].proof, Ok(Some("next-nonce".into())));
        assert_ne!(seen[0].jti, seen[1].jti);
        // A fixed token, when the transport passes none; a custom
        // Authorization header does not replace it.
        let client = DpopHttpClient::new(DpopKey::generate().unwrap()).with_token("tok-1");
        let r = client
            .post_message(
                Arc::from(fake.url.as_str()),
                notification(),
                None,
                None,
                HashMap::from([(
                    header::AUTHORIZATION,
                    HeaderValue::from_static("Bearer tok-1"),
                )]),
            )
            .await
            .unwrap();
        assert!(matches!(r, StreamableHttpPostResponse::Accepted), "{r:?}");
        assert_eq!(fake.seen()[2].authorization.as_deref(), Some("DPoP tok-1"));
    }

    /// A `use_dpop_nonce` challenge is retried once with the server's
    /// nonce; the nonce is kept for the next request (no challenge then),
    /// and the latest one any response sent is used.
    #[tokio::test]
    async fn retries_once_with_the_servers_nonce() {
        let fake = Fake::start("tok", Some("n-1"), false).await;
        let key = DpopKey::generate().unwrap();
        let client = DpopHttpClient::new(key.clone());
        send_notification(&client, &fake, Some("tok"))
            .await
            .unwrap();
        let seen = fake.seen();
        assert_eq!(seen.len(), 2, "one challenge, one retry: {seen:?}");
        assert_eq!(seen[0].proof, Ok(None));
        assert_eq!(seen[1].proof, Ok(Some("n-1".into())));
        // The success answer carried a new nonce: the next proof has it.
        assert_eq!(key.nonce_for(&fake.url).as_deref(), Some("next-nonce"));
    }

    /// A server that challenges every time, with a new nonce each time,
    /// gets one retry, never more, and its 401 reaches the caller as
    /// AuthRequired.
    #[tokio::test]
    async fn never_retries_twice() {
        let fake = Fake::start("tok", Some("n"), true).await;
        let client = DpopHttpClient::new(DpopKey::generate().unwrap());
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            send_notification(&client, &fake, Some("tok")),
        )
        .await
        .expect("the client stopped retrying");
        let Err(StreamableHttpError::AuthRequired(a)) = sent else {
            panic!("not AuthRequired")
        };
        assert!(a.www_authenticate_header.contains("use_dpop_nonce"));
        let seen = fake.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1].proof, Ok(Some("n-1".into())));
    }

    /// A challenge naming the nonce the proof already carried is not
    /// retried: the same nonce would be refused again.
    #[tokio::test]
    async fn the_same_nonce_is_not_retried() {
        let fake = Fake::start("tok", Some("n"), true).await;
        let key = DpopKey::generate().unwrap();
        let client = DpopHttpClient::new(key.clone());
        // The server's first challenge carries "n-1"; the client holds it.
        key.remember_nonce(&fake.url, "n-1");
        send_notification(&client, &fake, Some("tok"))
            .await
            .unwrap_err();
        let seen = fake.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
    }

    /// Without a token the request goes out unauthenticated (no proof):
    /// the server's challenge drives the login.
    #[tokio::test]
    async fn no_token_no_proof() {
        let fake = Fake::start("tok", None, false).await;
        let client = DpopHttpClient::new(DpopKey::generate().unwrap());
        let e = send_notification(&client, &fake, None).await.unwrap_err();
        assert!(matches!(e, StreamableHttpError::AuthRequired(_)), "{e:?}");
        let seen = fake.seen();
        assert_eq!(seen[0].authorization, None);
        assert_eq!(seen[0].proof, Err("no proof".into()));
    }

    #[test]
    fn debug_shows_no_token() {
        let client = DpopHttpClient::new(DpopKey::generate().unwrap()).with_token("secret-tok");
        let shown = format!("{client:?}");
        assert!(!shown.contains("secret-tok"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn sse_events_are_bounded() {
        let mut limit = EventLimit::new(8);
        assert!(limit.observe(b"data: 12\n\n").is_ok());
        assert!(limit.observe(b"data: 12\r\n\r\ndata: 1").is_ok());
        assert!(limit.observe(b"2\r\n\r\n").is_ok());
        assert!(limit.observe(b"data: 123").is_err());
        let mut limit = EventLimit::new(8);
        assert!(
            limit.observe(b"data: 1\ndata: 2\n\n").is_err(),
            "lines of one event add up"
        );
    }
}
