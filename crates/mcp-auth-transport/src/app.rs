//! [`McpHttpApp`]: the whole HTTP stack from one config struct.

use std::{convert::Infallible, io, sync::Arc};

use axum::{
    Json, Router,
    extract::Request,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use mcp_auth_core::{ProtectedResourceMetadata, SharedAuthenticator, settings::ConfigError};
use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
};

use mcp_auth_session::{MemoryStore, SessionLimits, SharedStore};

use crate::{
    AuthFailureLimitLayer, AuthLayer, GuardLayer, HttpConfig, OriginRule, RequestRateLimitLayer,
    RmcpSessionState, SessionLayer, ToolScopeLayer, Transports,
    sse::{self, MESSAGES_PATH, SSE_PATH, SseState},
};

/// Assembles the authenticated HTTP app: Host/Origin guard, CORS, timeout,
/// body limit, `GET /health`, RFC 9728 metadata (when the authenticator names
/// authorization servers) and the MCP endpoint behind [`AuthLayer`].
///
/// ```no_run
/// use mcp_auth_strategies::ApiKeyAuthenticator;
/// use mcp_auth_transport::{HttpConfig, McpHttpApp};
/// # #[derive(Clone)] struct MyServer;
/// # impl rmcp::ServerHandler for MyServer {}
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
/// let keys = ApiKeyAuthenticator::from_list("a-long-random-api-key").unwrap();
/// let app = McpHttpApp::new(config, keys).expect("valid config");
/// let router = app.rmcp_router(|| Ok(MyServer));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
/// app.serve(listener, router, async {
///     let _ = tokio::signal::ctrl_c().await;
/// }).await
/// # }
/// ```
#[derive(Clone)]
pub struct McpHttpApp {
    config: Arc<HttpConfig>,
    authenticator: SharedAuthenticator,
    cancel: CancellationToken,
    store: SharedStore,
    public: Option<Router>,
    /// Public routes any origin may call ([`open_to_any_origin`](Self::open_to_any_origin)).
    open: Vec<String>,
    audit: Option<Arc<dyn crate::audit::AuditSink>>,
    known_tools: std::collections::HashSet<String>,
}

impl McpHttpApp {
    /// An app for `config`, authenticating with `authenticator` (any
    /// [`Authenticator`](mcp_auth_core::Authenticator), a closure, or one
    /// already shared), sessions in memory. Refuses a config that cannot be
    /// served safely (see [`HttpConfig::validate`]).
    pub fn new(
        config: HttpConfig,
        authenticator: impl mcp_auth_core::Authenticator,
    ) -> Result<Self, ConfigError> {
        Self::shared(config, Arc::new(authenticator))
    }

    /// [`McpHttpApp::new`] for an authenticator that is already shared,
    /// without wrapping it again.
    ///
    /// Behind an authenticator that identifies no one
    /// ([`anonymous_only`](mcp_auth_core::Authenticator::anonymous_only),
    /// `NoAuth`) every session is anonymous, so the anonymous cap follows
    /// the global one unless it was changed from its default.
    pub fn shared(
        mut config: HttpConfig,
        authenticator: SharedAuthenticator,
    ) -> Result<Self, ConfigError> {
        let limits = &mut config.session_limits;
        if authenticator.anonymous_only()
            && limits.max_anonymous == SessionLimits::default_anonymous(limits.max_sessions)
        {
            limits.max_anonymous = limits.max_sessions;
        }
        config.validate()?;
        if authenticator.admits_anonymous() && !authenticator.anonymous_only() {
            tracing::warn!(
                authenticator = authenticator.name(),
                "the authenticator lets requests without credentials in as anonymous (NoAuth in a chain): \
                 no client is ever asked to log in, and tools taking Caller refuse those requests"
            );
        }
        Ok(Self {
            config: Arc::new(config),
            authenticator,
            cancel: CancellationToken::new(),
            store: mcp_auth_session::metered(Arc::new(MemoryStore::new())),
            public: None,
            open: Vec::new(),
            audit: None,
            known_tools: Default::default(),
        })
    }

    /// Keep sessions and rate counters in `store` (e.g. Redis, shared by
    /// replicas) instead of this process's memory. Wrap a store you built
    /// yourself in [`mcp_auth_session::metered`] for its metrics and spans
    /// (`store_from_settings` already does).
    pub fn with_store(mut self, store: SharedStore) -> Self {
        self.store = store;
        self
    }

    /// Serve `routes` next to the MCP endpoint without authentication
    /// (e.g. the authorization-server facade of `mcp-auth-proxy`), behind
    /// the same Host/Origin guard, CORS, body limit and timeout.
    ///
    /// The app's own routes are taken: the MCP path
    /// ([`HttpConfig::mcp_path`]), `GET /health`, `GET /ready`,
    /// `GET /.well-known/oauth-protected-resource` (and the same with the
    /// MCP path appended), and with the legacy transport `GET /sse` and
    /// `POST /messages`. A route of `routes` on one of them (same path and
    /// method) makes the router builders panic, as axum does for any two
    /// routes that overlap: serve your own health check under another path.
    pub fn with_public_routes(mut self, routes: Router) -> Self {
        self.public = Some(match self.public.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        });
        self
    }

    /// Lets any `Origin` call these paths: for public documents and
    /// endpoints a browser application on another origin must reach and
    /// that act on no ambient credential, such as an authorization server's
    /// metadata, keys, token, registration and revocation endpoints (the
    /// protected-resource metadata is always open so). Never the MCP
    /// endpoint or the legacy transport's, whose paths are left out here;
    /// open none that acts on a cookie or another ambient credential (a
    /// consent form). The Host check still applies. With CORS on (and
    /// `HTTP_CORS_CREDENTIALS` off) the answers say any origin may read
    /// them; with CORS off, or credentials on, a foreign origin's requests
    /// still go through, unreadable to it.
    pub fn open_to_any_origin(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        let mcp = self.config.mcp_path.clone();
        self.open.extend(
            paths
                .into_iter()
                .filter(|p| *p != mcp && p != SSE_PATH && p != MESSAGES_PATH),
        );
        self
    }

    /// Writes one audit record per request to the MCP routes (every
    /// authentication and authorization decision, session starts and ends)
    /// to `sink`: an [`AuditLog`](crate::audit::AuditLog) for the
    /// hash-chained file `MCP_AUDIT_LOG` names ([`HttpConfig::audit_log`]).
    pub fn with_audit(mut self, sink: Arc<dyn crate::audit::AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Names the tools this server serves: `tools/call` requests are
    /// counted per tool under these names (`mcp_auth_tool_calls_total`),
    /// any other name as `other`, so a client cannot make up label values.
    /// The tools [`HttpConfig::tool_scopes`] names are known already.
    pub fn with_known_tools<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.known_tools.extend(tools.into_iter().map(Into::into));
        self
    }

    /// `GET /metrics` in the Prometheus text format, for a listener of its
    /// own (never the MCP one: end users' credentials do not open it).
    /// With `token`, a scrape must present it as a bearer token (401
    /// otherwise); without one, bind the listener to loopback. Each scrape
    /// also sets `mcp_auth_ready` and `mcp_auth_jwks_age_seconds` from the
    /// authenticator's readiness checks.
    #[cfg(feature = "prometheus")]
    pub fn metrics_router(
        &self,
        metrics: &crate::observe::PrometheusMetrics,
        token: Option<String>,
    ) -> Router {
        crate::observe::prometheus_router(metrics, token, self.authenticator.clone())
    }

    /// The session and rate-limit store.
    pub fn session_store(&self) -> &SharedStore {
        &self.store
    }

    fn start_sweeper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, token) = (self.store.clone(), self.cancel.clone());
        let audit = self.audit.clone();
        let every = self.config.session_limits.cleanup_interval;
        rt.spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(every) => {
                        match store.sweep_expired().await {
                            Ok(expired) => {
                                for s in &expired {
                                    let owner = s.owner.as_deref();
                                    Self::report_expired(&s.id, owner, audit.as_deref());
                                }
                            }
                            Err(e) => tracing::warn!(store = %e.store, "session sweep failed"),
                        }
                    }
                }
            }
        });
    }

    /// Counts an expired session and writes its `session_end` audit record
    /// (decision `expire`); the store reports each once, over all replicas.
    fn report_expired(id: &str, owner: Option<&str>, audit: Option<&dyn crate::audit::AuditSink>) {
        crate::observe::session_ended("expired");
        if let Some(sink) = audit {
            sink.record(crate::audit::expired_session_record(id, owner));
        }
    }

    /// The config.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Cancelled on shutdown; ends open MCP sessions and streams.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Serves `router` (made by this app) on `listener` until `shutdown`
    /// completes, with this app's connection limits and timeouts
    /// ([`HttpConfig::connections`]: `HTTP_MAX_CONNECTIONS*`, the idle,
    /// header and body timeouts, the trusted proxies) and its cancellation
    /// token: [`serve_with`](crate::serve_with) with both. (The free
    /// [`serve`](crate::serve) takes the defaults, whatever the config says.)
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        router: Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        crate::serve_with(
            listener,
            router,
            self.cancellation_token(),
            shutdown,
            self.config.connections.clone(),
        )
        .await
    }

    /// The protected-resource metadata, if the authenticator names
    /// authorization servers (otherwise there is nothing to discover and the
    /// well-known URLs answer 404).
    pub fn metadata(&self) -> Option<ProtectedResourceMetadata> {
        let servers = self.authenticator.authorization_servers();
        if servers.is_empty() {
            return None;
        }
        let mut scopes = self.authenticator.scopes_supported();
        let tool_scopes = self.config.tool_scopes.all();
        for s in self.config.required_scopes.iter().chain(&tool_scopes) {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        // What this resource needs, not how a client keeps a login
        // (MCP: `offline_access` is not a scope of the resource's).
        scopes.retain(|s| s != "offline_access");
        let mut md = ProtectedResourceMetadata::new(self.config.server_url.as_str())
            .with_authorization_servers(servers)
            .with_scopes(scopes)
            .with_dpop(self.authenticator.dpop().as_ref());
        if let Some(name) = &self.config.resource_name {
            md = md.with_name(name.clone());
        }
        Some(md)
    }

    /// The auth layer as this app configures it.
    pub fn auth_layer(&self) -> AuthLayer {
        let mut layer = AuthLayer::shared(self.authenticator.clone())
            .with_required_scopes(self.config.required_scopes.clone())
            .with_tool_scopes(self.config.tool_scopes.clone())
            .with_scope_hierarchy(self.config.scope_hierarchy.clone())
            .optional(self.config.session_policy.allows_anonymous());
        if self.metadata().is_some() {
            layer = layer.with_resource_metadata(self.config.resource_metadata_url().as_str());
        }
        layer
    }

    /// The router around any MCP service (an rmcp `StreamableHttpService`, or
    /// anything else that speaks HTTP).
    ///
    /// Bodies over the limit are refused with 413: at once when
    /// `Content-Length` says so, otherwise when the service reads past it.
    ///
    /// Serve it with [`serve`](crate::serve), or with
    /// `into_make_service_with_connect_info::<SocketAddr>()`: the rate limits
    /// need each request's peer address and refuse requests without one
    /// (500; a plain `axum::serve(listener, router)` gives none). The same
    /// holds for [`rmcp_router`](Self::rmcp_router) and
    /// [`rmcp_router_with`](Self::rmcp_router_with).
    pub fn router<S>(&self, mcp: S) -> Router
    where
        S: tower_service::Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        self.build(Some(mcp), None, true, None, false)
    }

    fn build<S>(
        &self,
        mcp: Option<S>,
        sse: Option<Arc<SseState>>,
        limit_streaming_bodies: bool,
        parking: Option<Arc<crate::park::Parking>>,
        saves_state: bool,
    ) -> Router
    where
        S: tower_service::Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        let cfg = &self.config;
        let auth = self.auth_layer();
        let tool_scopes = (!cfg.tool_scopes.is_empty()).then(|| {
            ToolScopeLayer::new(
                cfg.tool_scopes.clone(),
                cfg.required_scopes.clone(),
                auth.clone(),
                cfg.max_request_bytes,
            )
        });
        let request_limit = cfg.rate_limit.enabled.then(|| {
            RequestRateLimitLayer::new(cfg.rate_limit.clone(), self.store.clone())
                .trusting(cfg.connections.trusted_proxies.clone())
                .forwarded_header(cfg.connections.forwarded_header)
        });
        let audit = self.audit.clone().map(|sink| {
            crate::audit::AuditLayer::new(
                sink,
                cfg.connections.trusted_proxies.clone(),
                cfg.max_request_bytes,
            )
            .forwarded_header(cfg.connections.forwarded_header)
            .stopping_with(self.cancel.clone())
        });
        // The Host/Origin guard's refusals are recorded too, whatever the
        // path: they never reach the routes' observing layer.
        let guard_refusals = audit.clone().map(|audit| {
            let hook: crate::guard::RefusalHook = Arc::new(move |parts, resp| {
                let audit = audit.clone();
                Box::pin(async move {
                    let sent = parts.headers.get(crate::names::MCP_SESSION_ID);
                    let session = crate::observe::session_id_in(sent);
                    let noted = audit.begin(&parts, sent.is_some(), session);
                    audit
                        .finish(noted, &Default::default(), Default::default(), resp)
                        .await
                })
            });
            hook
        });
        let mut tools = self.known_tools.clone();
        tools.extend(cfg.tool_scopes.tool_names());
        // One layer counts, traces and audits each request.
        let observe = crate::observe::ObserveLayer::new(tools, audit);
        // Every MCP route: observing, failed-auth limit, authentication, the
        // body's facts, rate limit, per-tool scopes; then each route's own
        // session handling.
        let stack = |observe| {
            ServiceBuilder::new()
                // (Tower's services hand the service polled ready to the
                // request's future and keep a clone: behind this, each such
                // clone of the stack is one reference count.)
                .layer(SharedLayer)
                .layer(observe)
                // Inside the observing layer, so a request answered 503 for
                // its deadline is counted, traced and audited like any.
                .layer(DeadlineLayer(cfg.request_timeout, true))
                .layer(
                    AuthFailureLimitLayer::new(cfg.rate_limit.clone(), self.store.clone())
                        .trusting(cfg.connections.trusted_proxies.clone())
                        .forwarded_header(cfg.connections.forwarded_header),
                )
                .layer(auth.clone())
                .layer(crate::observe::FactsLayer::new(cfg.max_request_bytes))
                .option_layer(request_limit.clone())
                .option_layer(tool_scopes.clone())
        };
        let mut protected = Router::new();
        if let Some(mcp) = mcp {
            let mut sessions = SessionLayer::new(
                self.store.clone(),
                cfg.session_policy,
                cfg.session_limits,
                auth.clone(),
                cfg.max_request_bytes,
            );
            if let Some(p) = parking {
                p.spawn(self.cancel.clone());
                sessions = sessions.parking(p);
            }
            if saves_state {
                sessions = sessions.state_saved_by_service();
            }
            // The handler gets the verified principal, not the credential.
            let strip = crate::auth::kept_from_handlers(cfg, &*self.authenticator);
            let mcp = ServiceBuilder::new()
                .layer(sessions)
                .layer(crate::refusal::JsonRpcErrorsLayer(cfg.max_request_bytes))
                .map_response(IntoResponse::into_response)
                .map_request(move |mut req: axum::extract::Request| {
                    crate::auth::strip_credentials(req.headers_mut(), &strip);
                    req
                })
                .service(mcp);
            // The stack straight around the service, not as a route layer
            // around axum's boxed route (whose every copy allocates).
            protected = protected.route_service(
                &cfg.mcp_path,
                stack(observe.clone()).service(Shared(Arc::new(mcp))),
            );
        }
        if let Some(state) = sse {
            protected = protected.merge(
                Router::new()
                    .route(SSE_PATH, get(sse::open_stream))
                    .route(MESSAGES_PATH, axum::routing::post(sse::post_message))
                    .with_state(state)
                    .route_layer(stack(observe)),
            );
        }
        self.start_sweeper();
        let authenticator = self.authenticator.clone();
        let probe = Arc::new(StoreProbe::new(self.store.clone()));
        // The routes besides the MCP ones (whose stack has its deadline).
        let mut router = Router::new().route("/health", get(health)).route(
            "/ready",
            get(move || ready(authenticator.clone(), probe.clone())),
        );
        if let Some(public) = self.public.clone() {
            router = router.merge(public);
        }
        // Paths any origin may call: the public routes named so, and the
        // protected-resource metadata (a public document).
        let mut open = self.open.clone();
        if let Some(md) = self.metadata() {
            let md = Arc::new(md);
            let handler = move || {
                let md = md.clone();
                async move { metadata_response(&md) }
            };
            let inserted = cfg.resource_metadata_url().path().to_owned();
            open.push("/.well-known/oauth-protected-resource".to_owned());
            open.push(inserted.clone());
            router = router.route(
                "/.well-known/oauth-protected-resource",
                get(handler.clone()),
            );
            if inserted != "/.well-known/oauth-protected-resource" {
                // A server URL whose path ends in `/` also at the literal
                // RFC 9728 §3.1 path, which keeps that slash (challenges
                // name the one without it, as the MCP SDKs derive it).
                if cfg.server_url.path().ends_with('/') {
                    let literal = format!("{inserted}/");
                    open.push(literal.clone());
                    router = router.route(&literal, get(handler.clone()));
                }
                router = router.route(&inserted, get(handler));
            }
        }
        let router = protected.merge(router.layer(DeadlineLayer(cfg.request_timeout, false)));
        // rmcp enforces the limit on streamed bodies itself, answering 413;
        // wrapping its body here would turn that into a read error (500).
        let limit = if limit_streaming_bodies {
            tower::util::Either::Left(
                ServiceBuilder::new()
                    // No length to check in front (the body's limit is
                    // below), but the codings all the same (a review).
                    .layer(ContentLengthLimitLayer(usize::MAX))
                    .map_response(IntoResponse::into_response)
                    .layer(RequestBodyLimitLayer::new(cfg.max_request_bytes)),
            )
        } else {
            tower::util::Either::Right(ContentLengthLimitLayer(cfg.max_request_bytes))
        };
        // One layer over the routes, not one per concern: axum boxes each
        // layer around each route, and every box is copied per request.
        router.layer(
            ServiceBuilder::new()
                .layer(
                    GuardLayer::new(cfg.hosts.clone(), cfg.origins.clone())
                        .open_to_any_origin(open.clone())
                        .open_to_any_host(["/health", "/ready"].map(str::to_owned))
                        .refusals_to(guard_refusals),
                )
                .option_layer(cfg.cors.enabled.then(|| {
                    ServiceBuilder::new()
                        .layer(crate::cors::ParamHeadersLayer)
                        .layer(cors_layer(cfg, open))
                        .into_inner()
                }))
                .layer(limit),
        )
    }

    /// The router around rmcp's streamable HTTP service for handlers made by
    /// `factory` (one per session, or per request on the stateless wire).
    pub fn rmcp_router<H, F>(&self, factory: F) -> Router
    where
        H: ServerHandler + Send + 'static,
        F: Fn() -> Result<H, io::Error> + Send + Sync + 'static,
    {
        self.rmcp_router_with(factory, Transports::StreamableHttp)
    }

    /// The router for `transports`: streamable HTTP at the MCP path, the
    /// legacy HTTP+SSE transport at `/sse` + `/messages`, or both.
    pub fn rmcp_router_with<H, F>(&self, factory: F, transports: Transports) -> Router
    where
        H: ServerHandler + Send + 'static,
        F: Fn() -> Result<H, io::Error> + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        let sse = matches!(transports, Transports::Sse | Transports::Both).then(|| {
            let f = factory.clone();
            Arc::new(SseState::new(
                move || f(),
                self.store.clone(),
                &self.config,
                self.auth_layer(),
                self.cancel.clone(),
                self.audit.clone(),
            ))
        });
        let (streamable, parking) =
            match matches!(transports, Transports::StreamableHttp | Transports::Both) {
                true => {
                    let mut sessions = LocalSessionManager::default();
                    sessions.session_config.keep_alive =
                        Some(self.config.session_limits.idle_timeout);
                    let manager = Arc::new(crate::park::ParkingSessions::new(sessions));
                    // Idle sessions give up their worker; the store keeps
                    // what restores them. Without parking, idle sessions
                    // are still checked against the store (every eighth of
                    // the idle timeout, at most a minute): a worker whose
                    // session ended through another replica is closed.
                    let m = manager.clone();
                    let close: crate::park::Close = Arc::new(move |sid: String| {
                        let m = m.clone();
                        Box::pin(async move { m.park(&sid.into()).await })
                    });
                    let check = (self.config.session_limits.idle_timeout / 8).clamp(
                        std::time::Duration::from_millis(100),
                        std::time::Duration::from_secs(60),
                    );
                    let parking = Some(crate::park::Parking::new(
                        self.config.park_after.unwrap_or(check),
                        self.config.park_after.is_some(),
                        close,
                        self.store.clone(),
                        self.config.session_limits,
                    ));
                    (Some(self.rmcp_service(move || factory(), manager)), parking)
                }
                false => (None, None),
            };
        self.build(streamable, sse, false, parking, true)
    }

    /// rmcp's service configured to match this app: body limit, shutdown.
    /// Host and Origin checks are done by the app's guard, in front of it,
    /// which is why this is not public: mounted alone it would have none.
    fn rmcp_service<H, F>(
        &self,
        factory: F,
        sessions: Arc<crate::park::ParkingSessions>,
    ) -> StreamableHttpService<H, crate::park::ParkingSessions>
    where
        H: ServerHandler + Send + 'static,
        F: Fn() -> Result<H, io::Error> + Send + Sync + 'static,
    {
        let mut config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_max_request_body_bytes(self.config.max_request_bytes)
            .with_sse_keep_alive(Some(self.config.sse_keep_alive))
            .with_cancellation_token(self.cancel.child_token());
        // rmcp keeps the client's initialize parameters in the shared store,
        // so a session opened on one replica continues on another.
        config.session_store = Some(Arc::new(RmcpSessionState::new(
            self.store.clone(),
            self.config.session_limits,
        )));
        StreamableHttpService::new(factory, sessions, config)
    }
}

/// 503 with `Retry-After` and the usual refusal body when no response has
/// started within `HTTP_REQUEST_TIMEOUT` (the handler's future is
/// dropped): the server was too slow, not the client (408 says the request
/// did not arrive in time; a body still arriving gets it from the
/// connection's body read timeout). A service of
/// its own rather than axum's `from_fn`, which copies the stack below it
/// and boxes twice for every request. The second field: whether a
/// `DELETE` is let run to its end (the MCP routes').
#[derive(Clone, Copy, Debug)]
struct DeadlineLayer(std::time::Duration, bool);

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.0,
            deletes_run: self.1,
        }
    }
}

#[derive(Clone, Debug)]
struct Deadline<S> {
    inner: S,
    limit: std::time::Duration,
    deletes_run: bool,
}

type Timed<E> = fn(Result<Result<Response, E>, tokio::time::error::Elapsed>) -> Result<Response, E>;

impl<S> tower_service::Service<Request> for Deadline<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Map<tokio::time::Timeout<S::Future>, Timed<S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // A session's `DELETE` runs to its end (the session layer ends the
        // session in a task of its own): answered 503 "try again" past
        // the deadline, its retry would find the session gone and no
        // record would say it ended. Other routes' are cut as any.
        let limit = match req.method() {
            &http::Method::DELETE if self.deletes_run => std::time::Duration::MAX,
            _ => self.limit,
        };
        futures::FutureExt::map(tokio::time::timeout(limit, self.inner.call(req)), timed_out)
    }
}

fn timed_out<E>(
    r: Result<Result<Response, E>, tokio::time::error::Elapsed>,
) -> Result<Response, E> {
    match r {
        Ok(r) => r,
        Err(_) => Ok(crate::refusal::refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "no response within the request timeout; try again later",
        )),
    }
}

/// 413 when `Content-Length` exceeds the limit, 415 / 501 for a body in a
/// coding not decoded here ([`unsupported_coding`]); the body is never
/// read. (A service of its own, as [`Deadline`].)
#[derive(Clone, Copy, Debug)]
struct ContentLengthLimitLayer(usize);

impl<S> tower::Layer<S> for ContentLengthLimitLayer {
    type Service = ContentLengthLimit<S>;

    fn layer(&self, inner: S) -> ContentLengthLimit<S> {
        ContentLengthLimit { inner, max: self.0 }
    }
}

#[derive(Clone, Debug)]
struct ContentLengthLimit<S> {
    inner: S,
    max: usize,
}

impl<S> tower_service::Service<Request> for ContentLengthLimit<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<futures::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(refused) = unsupported_coding(req.headers()) {
            return futures::future::Either::Left(futures::future::ready(Ok(refused)));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(n) if n > self.max as u64 => {
                futures::future::Either::Left(futures::future::ready(Ok(crate::refusal::refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    &format!("request body exceeds {} bytes", self.max),
                ))))
            }
            _ => futures::future::Either::Right(self.inner.call(req)),
        }
    }
}

/// A body in a coding nothing here decodes, refused before it is read
/// (an attack pass: a body declared gzip was read as it came, so a proxy
/// decoding it saw other content than the server did): a content coding
/// other than `identity`, 415 with `Accept-Encoding: identity` (RFC 9110
/// §15.5.16); a transfer coding other than one `chunked`, 501 (RFC 9112
/// §6.1; hyper frames by the final `chunked` and passes what precedes it
/// on).
fn unsupported_coding(headers: &http::HeaderMap) -> Option<Response> {
    let codings = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
    };
    if codings(header::CONTENT_ENCODING).any(|c| !c.eq_ignore_ascii_case("identity")) {
        let mut r = crate::refusal::refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "request bodies are not decoded: send them without a Content-Encoding",
        );
        r.headers_mut().insert(
            header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
        return Some(r);
    }
    // `chunked` once, alone (RFC 9112 §6.1: never applied twice).
    let (mut n, mut other) = (0, false);
    for c in codings(header::TRANSFER_ENCODING) {
        n += 1;
        other |= !c.eq_ignore_ascii_case("chunked");
    }
    if other || n > 1 {
        let mut r = crate::refusal::refuse(
            StatusCode::NOT_IMPLEMENTED,
            "invalid_request",
            "no transfer coding but chunked is supported",
        );
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return Some(r);
    }
    None
}

/// The session store's readiness, asked at most once a second whatever
/// the number of callers (`/ready` is unauthenticated: each call was a
/// round trip to Redis). The question runs as a task of its own, shared
/// by whoever waits for it: a caller that goes away does not cancel it
/// (a client resetting its requests would otherwise start one each time).
struct StoreProbe {
    store: SharedStore,
    state: Arc<std::sync::Mutex<ProbeState>>,
}

type ProbeAnswer = (bool, &'static str);

#[derive(Default)]
struct ProbeState {
    last: Option<(std::time::Instant, ProbeAnswer)>,
    running: Option<futures::future::Shared<futures::future::BoxFuture<'static, ProbeAnswer>>>,
    /// Which question is running: only its own task records its answer.
    asked: u64,
}

fn probe_state(state: &std::sync::Mutex<ProbeState>) -> std::sync::MutexGuard<'_, ProbeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl StoreProbe {
    fn new(store: SharedStore) -> Self {
        Self {
            store,
            state: Arc::default(),
        }
    }

    /// Whether the store answers, and in words. The task that asks records
    /// the answer when it has it, whoever is still waiting: an answer is
    /// never taken as fresh later than it came.
    async fn check(&self) -> ProbeAnswer {
        use futures::FutureExt;
        let running = {
            let mut st = probe_state(&self.state);
            if let Some((at, answer)) = st.last
                && at.elapsed() < std::time::Duration::from_secs(1)
            {
                return answer;
            }
            match &st.running {
                Some(running) => running.clone(),
                None => {
                    st.asked += 1;
                    let (asked, state, store) = (st.asked, self.state.clone(), self.store.clone());
                    let after = self.state.clone();
                    let task = tokio::spawn(async move {
                        let answer = tokio::time::timeout(
                            std::time::Duration::from_secs(2),
                            store.kv_get("ready:probe"),
                        )
                        .await;
                        let answer = match answer {
                            Ok(Ok(_)) => (true, "answers"),
                            Ok(Err(_)) => (false, "unreachable"),
                            Err(_) => (false, "no answer within 2 s"),
                        };
                        let mut st = probe_state(&state);
                        if st.asked == asked {
                            st.last = Some((std::time::Instant::now(), answer));
                            st.running = None;
                        }
                        answer
                    });
                    let running = async move {
                        task.await.unwrap_or_else(|_| {
                            // The task did not finish: the next caller asks.
                            let mut st = probe_state(&after);
                            if st.asked == asked {
                                st.running = None;
                            }
                            (false, "not asked")
                        })
                    }
                    .boxed()
                    .shared();
                    st.running = Some(running.clone());
                    running
                }
            }
        };
        running.await
    }
}

/// `/ready`: 200 when the server can authenticate and serve (its
/// authenticator's checks, e.g. the issuer's keys fetched and fresh, and
/// the session store answering), else 503; the checks as JSON, without
/// URLs or secrets.
async fn ready(authenticator: SharedAuthenticator, probe: Arc<StoreProbe>) -> Response {
    let mut checks = authenticator.readiness();
    let (ok, said) = probe.check().await;
    checks.push(mcp_auth_core::Readiness::new("session store", ok, said));
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let resp = (
        status,
        Json(serde_json::json!({
            "status": if ok { "ready" } else { "not ready" },
            "checks": checks,
        })),
    )
        .into_response();
    crate::refusal::no_store(resp)
}

async fn health() -> Response {
    crate::refusal::no_store(Json(serde_json::json!({ "status": "ok" })).into_response())
}

fn metadata_response(md: &ProtectedResourceMetadata) -> Response {
    let mut resp = Json(md).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

fn cors_layer(cfg: &HttpConfig, open: Vec<String>) -> CorsLayer {
    let origins = cfg.origins.clone();
    // Paths open to any origin are readable by any (never with
    // credentials: then only the listed origins).
    let open = if cfg.cors.credentials {
        Vec::new()
    } else {
        open
    };
    let allow_origin = match origins {
        OriginRule::Any if !cfg.cors.credentials => AllowOrigin::any(),
        rule => {
            AllowOrigin::predicate(move |origin: &HeaderValue, parts: &http::request::Parts| {
                open.iter().any(|p| p == parts.uri.path())
                    || origin.to_str().is_ok_and(|o| rule.allows(o))
            })
        }
    };
    let methods: Vec<Method> = cfg
        .cors
        .methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect();
    let headers: Vec<HeaderName> = cfg
        .cors
        .headers
        .iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    CorsLayer::new()
        // Only `Origin` changes what an answer says to anything but a
        // preflight (the allowed origin: the methods and headers allowed
        // are fixed lists; a preflight's answer also names the
        // `Mcp-Param-*` headers it asked for, `crate::cors`); the
        // preflight's request headers, which tower-http's default adds to
        // every answer, matter to no cache: answers to OPTIONS are not
        // stored (RFC 9110, 9.3.7).
        .vary([header::ORIGIN])
        .allow_origin(allow_origin)
        .allow_methods(methods)
        .allow_headers(headers)
        .allow_credentials(cfg.cors.credentials)
        .expose_headers([
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("dpop-nonce"),
            header::WWW_AUTHENTICATE,
            // When a 429 or 503 may be retried (not safelisted for CORS).
            header::RETRY_AFTER,
        ])
}

/// A service whose clones share one copy of it. The layers in front of a
/// route clone what they wrap for every request (tower's way of handing
/// the service polled ready to a future), so without this the MCP service
/// and its session layer were copied once per layer above; with it each
/// of those clones is one reference count, and the copy below is cloned
/// once per request, polled ready and called (`ServiceExt::oneshot`).
#[derive(Debug)]
struct Shared<S>(Arc<S>);

/// Puts what it wraps behind [`Shared`].
#[derive(Clone, Copy, Debug)]
struct SharedLayer;

impl<S> tower::Layer<S> for SharedLayer {
    type Service = Shared<S>;

    fn layer(&self, inner: S) -> Shared<S> {
        Shared(Arc::new(inner))
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S, R> tower_service::Service<R> for Shared<S>
where
    S: tower_service::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tower::util::Oneshot<S, R>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The copy made for the request is polled ready by its future.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        tower::ServiceExt::oneshot(S::clone(&self.0), req)
    }
}
