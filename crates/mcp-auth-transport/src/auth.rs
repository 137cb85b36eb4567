//! The authentication layer.
//!
//! ```
//! use axum::{Router, routing::get};
//! use mcp_auth_core::Principal;
//! use mcp_auth_strategies::ApiKeyAuthenticator;
//! use mcp_auth_transport::AuthLayer;
//!
//! let keys = ApiKeyAuthenticator::from_list("an-api-key-of-some-length").unwrap();
//! // Any axum app (or any tower service) gets the same checks and challenges.
//! let app: Router = Router::new()
//!     .route("/whoami", get(|p: Principal| async move { p.subject }))
//!     .layer(AuthLayer::new(keys));
//! # let _ = app;
//! ```

use std::{
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use http::{HeaderValue, Request, header};
use mcp_auth_core::{AuthError, AuthRequest, ChallengeScheme, Principal, SharedAuthenticator};
use tower_layer::Layer;
use tower_service::Service;

/// Authenticates every request with an [`Authenticator`](mcp_auth_core::Authenticator).
///
/// On success the [`Principal`] is inserted into the request extensions and
/// the request goes on; on failure the layer answers itself with the status,
/// `WWW-Authenticate` challenges and JSON body of [`AuthError`], plus
/// `Cache-Control: no-store`. Server-wide required scopes are checked after
/// authentication (403 `insufficient_scope` naming all of them).
#[derive(Clone)]
pub struct AuthLayer {
    inner: Arc<AuthSettings>,
}

struct AuthSettings {
    authenticator: SharedAuthenticator,
    schemes: Vec<ChallengeScheme>,
    resource_metadata: Option<String>,
    required_scopes: Vec<String>,
    optional: bool,
    /// Scopes that imply others, applied to every principal let in.
    hierarchy: ScopeHierarchy,
    /// The tools' own scopes, named too when a caller lacking the
    /// server-wide ones calls a tool that has some (one challenge with
    /// everything the call needs).
    #[cfg(feature = "mcp")]
    tool_scopes: Option<crate::ToolScopes>,
}

impl AuthLayer {
    /// The authenticator this layer asks.
    #[cfg(feature = "mcp")]
    pub(crate) fn authenticator(&self) -> SharedAuthenticator {
        self.inner.authenticator.clone()
    }

    /// A layer that authenticates with `authenticator`: any
    /// [`Authenticator`](mcp_auth_core::Authenticator), a closure, or one
    /// already shared (`Arc<dyn Authenticator>`).
    pub fn new(authenticator: impl mcp_auth_core::Authenticator) -> Self {
        Self::shared(std::sync::Arc::new(authenticator))
    }

    /// [`AuthLayer::new`] for an authenticator that is already shared,
    /// without wrapping it again.
    pub fn shared(authenticator: SharedAuthenticator) -> Self {
        let schemes = authenticator.challenge_schemes();
        Self {
            inner: Arc::new(AuthSettings {
                authenticator,
                schemes,
                resource_metadata: None,
                required_scopes: Vec::new(),
                optional: false,
                hierarchy: ScopeHierarchy::default(),
                #[cfg(feature = "mcp")]
                tool_scopes: None,
            }),
        }
    }

    fn settings_mut(&mut self) -> &mut AuthSettings {
        // The layer is configured before it is cloned into services, so this
        // is the only reference; if not, copy the settings once.
        if Arc::get_mut(&mut self.inner).is_none() {
            let s = &self.inner;
            self.inner = Arc::new(AuthSettings {
                authenticator: s.authenticator.clone(),
                schemes: s.schemes.clone(),
                resource_metadata: s.resource_metadata.clone(),
                required_scopes: s.required_scopes.clone(),
                optional: s.optional,
                hierarchy: s.hierarchy.clone(),
                #[cfg(feature = "mcp")]
                tool_scopes: s.tool_scopes.clone(),
            });
        }
        Arc::get_mut(&mut self.inner).expect("unique after copy")
    }

    /// Scopes that imply others ([`ScopeHierarchy`]): each principal let in
    /// holds, besides the scopes it was granted, every scope they imply, for
    /// the server-wide and the per-tool checks alike (and for what tools
    /// see of it).
    pub fn with_scope_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Self {
        self.settings_mut().hierarchy = hierarchy;
        self
    }

    /// The tools' scopes ([`crate::ToolScopes`]): a caller refused for the
    /// server-wide scopes while calling a tool that has scopes of its own
    /// is told both at once (its body is read for it, as the tool-scope
    /// layer would), so one authorization serves the call.
    #[cfg(feature = "mcp")]
    pub(crate) fn with_tool_scopes(mut self, scopes: crate::ToolScopes) -> Self {
        self.settings_mut().tool_scopes = (!scopes.is_empty()).then_some(scopes);
        self
    }

    /// Puts `resource_metadata="<url>"` into every Bearer challenge (RFC 9728 §5.1).
    pub fn with_resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.settings_mut().resource_metadata = Some(url.into());
        self
    }

    /// Scopes every request needs; a principal without them gets 403
    /// `insufficient_scope`, and 401 challenges advertise them in `scope`.
    pub fn with_required_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings_mut().required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Lets requests without any credentials through without a principal,
    /// for a layer behind it to decide (the session policy's anonymous
    /// sessions). Wrong or malformed credentials are still refused here.
    pub fn optional(mut self, optional: bool) -> Self {
        self.settings_mut().optional = optional;
        self
    }

    /// Renders the response for an authentication failure, as this layer
    /// would send it. Useful for other layers (e.g. per-tool scope checks)
    /// that must answer with the same challenges.
    /// `request` are the request's headers: the error code goes on the
    /// challenge of the scheme the client used.
    pub fn error_response(&self, err: &AuthError, request: &http::HeaderMap) -> Response {
        error_response(&self.inner, err, request, &self.inner.required_scopes)
    }

    /// [`error_response`](Self::error_response) whose challenges name
    /// `scopes` (what the refused operation needs: the server's and its
    /// tool's), so a client asks for all of them at once.
    #[cfg(feature = "mcp")]
    pub(crate) fn error_response_needing(
        &self,
        err: &AuthError,
        request: &http::HeaderMap,
        scopes: &[String],
    ) -> Response {
        error_response(&self.inner, err, request, scopes)
    }
}

fn error_response(
    s: &AuthSettings,
    err: &AuthError,
    request: &http::HeaderMap,
    scopes: &[String],
) -> Response {
    let mut resp = (err.status(), axum::Json(err.body())).into_response();
    let headers = resp.headers_mut();
    for value in err.challenge_headers(&s.schemes, s.resource_metadata.as_deref(), scopes, request)
    {
        headers.append(header::WWW_AUTHENTICATE, value);
    }
    // RFC 9449 §9: the nonce the client's next proof must carry.
    if let Some(nonce) = err.dpop_nonce().and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert("dpop-nonce", nonce);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The authenticator could not decide (its keys, introspection or replay
    // cache unreachable): when to try again, as on every other 503.
    if err.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    // Only presented-and-wrong credentials count as a failed login. A
    // request without any is how every OAuth client starts discovery, and
    // many clients behind one address would otherwise lock each other out.
    // Nor does a refused DPoP proof: it is signed with the client's own key
    // and tests no secret (one made before the token is checked guesses
    // nothing about the token), and an honest client whose clock runs ahead
    // would lock out everyone behind its address.
    if matches!(
        err,
        AuthError::InvalidToken { .. } | AuthError::InvalidRequest { .. }
    ) {
        resp.extensions_mut().insert(AuthRejected);
    }
    resp
}

/// Scopes that imply others: a token granted a broader scope holds the
/// narrower ones it implies, so a deployment whose authorization server
/// issues, say, `mcp:admin` to administrators need not also issue every
/// scope below it (MCP asks servers to account for scope hierarchies).
/// Implication is transitive; nothing is implied unless declared.
///
/// ```
/// use mcp_auth_transport::ScopeHierarchy;
///
/// let h = ScopeHierarchy::parse("mcp:admin=mcp:tools mcp:read, mcp:tools=mcp:list").unwrap();
/// let mut held = vec!["mcp:admin".to_owned()];
/// h.expand(&mut held);
/// assert_eq!(held, ["mcp:admin", "mcp:tools", "mcp:read", "mcp:list"]);
/// assert!(ScopeHierarchy::parse("mcp:admin").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeHierarchy {
    implies: Vec<(String, Vec<String>)>,
}

impl ScopeHierarchy {
    /// Nothing implies anything.
    pub fn new() -> Self {
        Self::default()
    }

    /// `broad` implies every one of `narrower`.
    pub fn imply<I, S>(mut self, broad: impl Into<String>, narrower: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.implies
            .push((broad.into(), narrower.into_iter().map(Into::into).collect()));
        self
    }

    /// Reads `broad=narrower [narrower...]` entries, comma-separated (the
    /// form of `MCP_SCOPE_IMPLIES`); an entry without `=` or a side without
    /// a scope is an error naming it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut h = Self::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((broad, narrower)) = entry.split_once('=') else {
                return Err(format!("{entry:?} is not broad=narrower [narrower...]"));
            };
            let narrower: Vec<&str> = narrower.split_whitespace().collect();
            if broad.trim().is_empty()
                || broad.trim().contains(char::is_whitespace)
                || narrower.is_empty()
            {
                return Err(format!("{entry:?} is not broad=narrower [narrower...]"));
            }
            h = h.imply(broad.trim(), narrower);
        }
        Ok(h)
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.implies.is_empty()
    }

    /// Adds to `held` every scope what it holds implies, transitively (in
    /// the order found; none twice).
    pub fn expand(&self, held: &mut Vec<String>) {
        if self.implies.is_empty() {
            return;
        }
        let mut i = 0;
        while i < held.len() {
            for (broad, narrower) in &self.implies {
                if *broad == held[i] {
                    for n in narrower {
                        if !held.contains(n) {
                            held.push(n.clone());
                        }
                    }
                }
            }
            i += 1;
        }
    }
}

/// Marks a response as a failed login answered by the auth layer: wrong or
/// malformed credentials were presented (401 `invalid_token`, 400
/// `invalid_request`). A request with no credentials at all is not one.
/// The failed-login limiter counts these.
#[derive(Debug, Clone, Copy)]
pub struct AuthRejected;

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            settings: self.inner.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    settings: Arc<AuthSettings>,
}

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Take the service that was polled ready; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let view = AuthRequest {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: std::mem::take(&mut parts.headers),
                peer,
                dpop_jkt: None,
            };
            let result = settings.authenticator.authenticate(&view).await;
            parts.headers = view.headers;
            if settings.optional && matches!(result, Err(AuthError::MissingCredentials)) {
                decided(settings.authenticator.name(), "anonymous", None);
                // Let in without a principal, on purpose: a tool asking for
                // its caller tells the client, not the server, what is
                // missing.
                parts.extensions.insert(LetInAnonymously);
                settle_attempt(&parts.extensions, false).await;
                return inner
                    .call(Request::from_parts(parts, body))
                    .await
                    .map(|r| r.map(Body::new));
            }
            let result = result.map(|mut p| {
                settings.hierarchy.expand(&mut p.scopes);
                p
            });
            let checked = match result {
                Ok(p) if p.missing_scopes(&settings.required_scopes).is_empty() => Ok(p),
                Ok(p) => Err((
                    AuthError::insufficient_scope(settings.required_scopes.iter().cloned()),
                    Some(p),
                )),
                Err(err) => Err((err, None)),
            };
            let principal = match checked {
                Ok(p) => {
                    let outcome = if p.anonymous { "anonymous" } else { "ok" };
                    decided(&p.strategy, outcome, Some(&p));
                    p
                }
                Err((err, known)) => {
                    decided(settings.authenticator.name(), err.outcome(), known.as_ref());
                    tracing::debug!(
                        peer = %peer.map(|p| p.ip().to_string()).unwrap_or_default(),
                        status = err.status().as_u16(),
                        reason = %err,
                        "request not authenticated"
                    );
                    #[cfg_attr(not(feature = "mcp"), allow(unused_mut))]
                    let mut err = err;
                    // Refused for the server-wide scopes, the caller is
                    // known: with an audit layer in front, the record names
                    // them and what they asked for, and a tool it calls
                    // that has scopes of its own adds them to the challenge
                    // (its body is read for it now, as it would be behind
                    // this layer).
                    if let Some(p) = known {
                        // Not a failed login: settled before the body is
                        // waited for.
                        settle_attempt(&parts.extensions, false).await;
                        let audited = parts
                            .extensions
                            .get::<Decisions>()
                            .filter(|d| d.note(|d| d.audited))
                            .cloned();
                        if let Some(decisions) = &audited {
                            decisions.note(|d| d.who = Some(Authenticated::of(&p)));
                        }
                        #[cfg(feature = "mcp")]
                        {
                            let facts_wanted = audited
                                .as_ref()
                                .is_some_and(|d| d.note(|d| d.body_facts_wanted));
                            if (facts_wanted || settings.tool_scopes.is_some())
                                && let Some((facts, called)) = refused_facts(&parts, body).await
                            {
                                // As the tool-scope layer reads a call.
                                if let (Some(tools), Ok(called)) = (&settings.tool_scopes, called) {
                                    let called =
                                        crate::scopes::with_header_call(called, &parts.headers);
                                    err = AuthError::insufficient_scope(
                                        tools.needed(&settings.required_scopes, &called),
                                    );
                                }
                                if let (true, Some(decisions)) = (facts_wanted, &audited) {
                                    decisions.note(|d| d.facts = Some(facts));
                                }
                            }
                        }
                    }
                    let resp =
                        error_response(&settings, &err, &parts.headers, &settings.required_scopes);
                    return Ok(resp);
                }
            };
            // For the record of an audit layer in front (no copy otherwise).
            if let Some(decisions) = parts.extensions.get::<Decisions>() {
                decisions.note(|d| {
                    if d.audited {
                        d.who = Some(Authenticated::of(&principal));
                    }
                });
            }
            let identified = !principal.anonymous;
            parts.extensions.insert(principal);
            settle_attempt(&parts.extensions, identified).await;
            let resp = inner.call(Request::from_parts(parts, body)).await?;
            Ok(resp.map(Body::new))
        })
    }
}

/// Counts one authentication decision and writes it on the request's span
/// (the principal's non-secret identifiers too, when one was accepted).
fn decided(strategy: &str, outcome: &'static str, principal: Option<&Principal>) {
    #[cfg(feature = "mcp")]
    crate::observe::count_authentication(strategy, outcome);
    #[cfg(not(feature = "mcp"))]
    metrics::counter!(
        "mcp_auth_authentications_total",
        "strategy" => strategy.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let allowed = matches!(outcome, "ok" | "anonymous");
    span.record("auth.decision", if allowed { "allow" } else { "deny" });
    span.record("auth.outcome", outcome);
    span.record("auth.strategy", strategy);
    if let Some(p) = principal.filter(|p| !p.anonymous) {
        span.record("enduser.id", p.subject.as_str());
        if let Some(c) = &p.client_id {
            span.record("auth.client_id", c.as_str());
        }
        if let Some(i) = &p.issuer {
            span.record("auth.issuer", i.as_str());
        }
    }
}

/// Put on a request by the observing or audit layer in front: the layers
/// behind it write what they decide into it (who was let in: this layer;
/// the method and tool read from the body: `observe::FactsLayer`; the
/// scopes a call needed: the tool-scope layer), and the layer in front
/// takes it once the response is known, for the metrics, the span and the
/// audit record. One slot shared by the request's layers, rather than each
/// putting its part on the response (a map of extensions made for every
/// response, then searched and emptied).
#[derive(Debug, Clone, Default)]
pub(crate) struct Decisions(Arc<std::sync::Mutex<Decided>>);

/// What [`Decisions`] holds.
#[derive(Debug, Default, Clone)]
#[cfg_attr(
    not(feature = "mcp"),
    expect(
        dead_code,
        reason = "read by the audit layer, which needs the mcp feature"
    )
)]
pub(crate) struct Decided {
    /// The layer in front wants the body's method and tool (read behind
    /// this layer).
    pub(crate) body_facts_wanted: bool,
    /// Whether the layer in front writes an audit record (which wants who
    /// was let in, and what a refused caller asked).
    pub(crate) audited: bool,
    /// Who was let in (or refused for the server-wide scopes).
    pub(crate) who: Option<Authenticated>,
    /// The method and tool read from the body.
    #[cfg(feature = "mcp")]
    pub(crate) facts: Option<crate::observe::RequestFacts>,
    /// The scopes a tool call needed.
    pub(crate) required: Option<Vec<String>>,
}

impl Decisions {
    /// A slot for a request; `audited` and `body_facts_wanted` as in
    /// [`Decided`].
    #[cfg_attr(
        not(feature = "mcp"),
        expect(dead_code, reason = "made by the layers of the mcp feature")
    )]
    pub(crate) fn new(audited: bool, body_facts_wanted: bool) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Decided {
            audited,
            body_facts_wanted,
            ..Decided::default()
        })))
    }

    /// Writes into the slot.
    pub(crate) fn note<T>(&self, f: impl FnOnce(&mut Decided) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes what was written (once the response is known).
    #[cfg_attr(
        not(feature = "mcp"),
        expect(dead_code, reason = "read by the layers of the mcp feature")
    )]
    pub(crate) fn take(&self) -> Decided {
        self.note(std::mem::take)
    }
}

/// Who the auth layer let in, as the record names them: the principal's
/// non-secret identifiers, noted in [`Decisions`] for the audit layer in
/// front (rather than a copy of the whole principal and its claims).
#[derive(Debug, Clone)]
#[cfg_attr(
    not(feature = "mcp"),
    expect(
        dead_code,
        reason = "read by the audit layer, which needs the mcp feature"
    )
)]
pub(crate) struct Authenticated {
    pub(crate) subject: Option<String>,
    pub(crate) strategy: String,
    pub(crate) client_id: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) key_fingerprint: Option<String>,
}

impl Authenticated {
    pub(crate) fn of(p: &Principal) -> Self {
        Self {
            subject: (!p.anonymous).then(|| p.subject.clone()),
            strategy: p.strategy.clone(),
            client_id: p.client_id.clone(),
            issuer: p.issuer.clone(),
            scopes: p.scopes.clone(),
            key_fingerprint: p
                .claims
                .get("key_fingerprint")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        }
    }
}

/// Tells the failed-login limiter in front (if any) that this request was
/// let through: with `identified`, its credentials named someone.
async fn settle_attempt(extensions: &http::Extensions, identified: bool) {
    #[cfg(feature = "mcp")]
    if let Some(slot) = extensions.get::<crate::ratelimit::KnownGoodSlot>() {
        slot.release();
    }
    #[cfg(feature = "mcp")]
    if let Some(attempt) = extensions
        .get::<crate::ratelimit::PendingAttempt>()
        .cloned()
    {
        if identified {
            attempt.authenticated().await;
        } else {
            attempt.accepted().await;
        }
    }
    #[cfg(not(feature = "mcp"))]
    let _ = (extensions, identified);
}

/// The method and tool of a request refused for the server-wide scopes,
/// for its audit record: read from its body when the stack's bodies are
/// axum's (as in [`McpHttpApp`](crate::McpHttpApp)), it announces at most
/// 64 KiB and arrives within a second; else only what the headers say.
#[cfg(feature = "mcp")]
async fn refused_facts<B: Send + 'static>(
    parts: &http::request::Parts,
    body: B,
) -> Option<(crate::observe::RequestFacts, Result<Vec<String>, ()>)> {
    /// A call naming a tool is small; a larger body is not waited for.
    const LIMIT: u64 = 64 * 1024;
    if parts.method != http::Method::POST {
        return None;
    }
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_none_or(|n| n > LIMIT) {
        return None;
    }
    let body: Box<dyn std::any::Any + Send> = Box::new(body);
    let body = body.downcast::<Body>().ok()?;
    // The layer in front wants the body's method and tool (the caller
    // checked `body_facts_wanted`).
    let read = crate::observe::RequestFacts::read_body(*body, LIMIT as usize);
    tokio::time::timeout(std::time::Duration::from_secs(1), read)
        .await
        .ok()?
        .ok()
        .map(|(facts, _, called)| (facts, called.0))
}

/// On a request the auth layer let in without credentials (the session
/// policy allows anonymous access): it was authenticated, and carries none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LetInAnonymously;

/// The headers taken out of a request before the MCP handler sees it
/// (none with `HttpConfig::pass_credentials_to_handlers`): those that
/// carry a credential to `authenticator`, `Authorization`,
/// `Proxy-Authorization`, `Cookie`, `DPoP`, `X-API-Key`, and the header of
/// each API-key scheme it advertises.
#[cfg(feature = "mcp")]
pub(crate) fn kept_from_handlers(
    cfg: &crate::HttpConfig,
    authenticator: &dyn mcp_auth_core::Authenticator,
) -> Arc<[http::HeaderName]> {
    if cfg.pass_credentials_to_handlers {
        return Arc::from([]);
    }
    let mut names = vec![
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
        http::HeaderName::from_static("dpop"),
        crate::names::X_API_KEY,
    ];
    for scheme in authenticator.challenge_schemes() {
        if let ChallengeScheme::ApiKey { header } = scheme
            && let Ok(name) = http::HeaderName::try_from(header.as_str())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names.into()
}

/// Takes `names` (see [`kept_from_handlers`]) out of `headers`: what the
/// MCP handler is handed once the request is authenticated.
#[cfg(feature = "mcp")]
pub(crate) fn strip_credentials(headers: &mut http::HeaderMap, names: &[http::HeaderName]) {
    for name in names {
        headers.remove(name);
    }
}
