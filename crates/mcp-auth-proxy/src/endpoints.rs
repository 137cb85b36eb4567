//! The facade's HTTP endpoints: RFC 8414 metadata, JWKS, registration
//! (RFC 7591), `/oauth/authorize` with the consent page, the upstream
//! callback, `/oauth/token` and `/oauth/revoke` (RFC 7009).

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use axum::{
    Form, Json, Router,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use mcp_auth_jwt::DpopProof;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    clients::{
        ClientInfo, FetchGuard, GrantType, RegistrationPolicy, fetch_metadata_document,
        is_metadata_document_client_id, register,
    },
    consent,
    facade::{OAuthProxy, now_secs},
    grants::{Grant, GrantError, Grants},
    keys::{digest_b64, random_token},
};

/// Paths of the facade's endpoints, under the issuer (the server's origin).
pub mod paths {
    /// RFC 8414 metadata.
    pub const METADATA: &str = "/.well-known/oauth-authorization-server";
    /// The authorization endpoint.
    pub const AUTHORIZE: &str = "/oauth/authorize";
    /// Where the consent form posts.
    pub const CONSENT: &str = "/oauth/consent";
    /// The token endpoint.
    pub const TOKEN: &str = "/oauth/token";
    /// The registration endpoint (RFC 7591).
    pub const REGISTER: &str = "/oauth/register";
    /// The revocation endpoint (RFC 7009).
    pub const REVOKE: &str = "/oauth/revoke";
    /// The signing key (`jwks_uri`).
    pub const JWKS: &str = "/oauth/jwks";

    /// The endpoints a browser application on another origin calls with
    /// `fetch` (metadata, keys, registration, token, revocation), which act
    /// on no ambient credential (no cookie; a client authenticates in the
    /// request): open them to any origin
    /// (`McpHttpApp::open_to_any_origin`). Not the authorization and
    /// consent endpoints, which a browser navigates to and whose consent
    /// form the Origin check protects.
    pub const CROSS_ORIGIN: [&str; 5] = [METADATA, JWKS, REGISTER, TOKEN, REVOKE];
}

/// Options of the endpoints that are policy rather than protocol.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// Dynamic registration limits.
    pub registration: RegistrationPolicy,
    /// Registrations allowed per client address per hour (default 20).
    pub registrations_per_hour: u64,
    /// Registrations allowed per hour from all addresses together (default
    /// 1000): the cap on how fast the client table can grow. Only
    /// registrations that went through count (an address past its own
    /// budget uses none of it); client metadata documents fetched have a
    /// budget of the same size of their own.
    pub registrations_per_hour_total: u64,
    /// How long a registration is kept before a login through it succeeds
    /// (default 6 hours); after each token request (a code exchanged, a
    /// refresh) it is kept 30 days. With
    /// `registrations_per_hour_total` this bounds what registrations alone,
    /// which anyone can make, leave in the store (6 000 at most).
    pub unused_registration_ttl: Duration,
    /// Authorization requests allowed per client address per minute
    /// (default 60): each keeps a pending login in the store for its
    /// lifetime.
    pub authorizations_per_minute: u64,
    /// Logins started or approved from all addresses together per login
    /// lifetime (`login_ttl`, 10 minutes by default; default 10 000): so
    /// at most about twice this many pending logins are kept at once, and
    /// requests from many addresses cannot fill the store that codes,
    /// refresh tokens and proofs need (a full store refuses those too).
    pub logins_per_lifetime_total: u64,
    /// The SSRF guard for client ID metadata documents.
    pub metadata_guard: FetchGuard,
    /// How long a fetched metadata document is kept when it says nothing
    /// (its `Cache-Control` max-age, bounded by the guard, wins).
    pub metadata_ttl: Duration,
    /// Clients from the configuration.
    pub preregistered: Vec<ClientInfo>,
    /// Proxies whose `X-Forwarded-For` (or `Forwarded`, see
    /// `forwarded_header`) is believed when counting requests per client
    /// address (`HTTP_TRUSTED_PROXIES`); IPv6 clients are counted by their
    /// /64.
    pub trusted_proxies: Vec<mcp_auth_transport::IpNet>,
    /// The header those proxies write the client's address in
    /// (`HTTP_FORWARDED_HEADER`).
    pub forwarded_header: mcp_auth_transport::ForwardedHeader,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            // Registrations stay in the store for their lifetime: small.
            registration: RegistrationPolicy {
                max_redirect_uris: 5,
                max_string_len: 512,
                ..RegistrationPolicy::default()
            },
            registrations_per_hour: 20,
            unused_registration_ttl: Duration::from_secs(6 * 3600),
            registrations_per_hour_total: 1000,
            authorizations_per_minute: 60,
            logins_per_lifetime_total: 10_000,
            metadata_guard: FetchGuard::default(),
            metadata_ttl: Duration::from_secs(3600),
            preregistered: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: mcp_auth_transport::ForwardedHeader::Auto,
        }
    }
}

#[derive(Clone)]
struct App {
    proxy: OAuthProxy,
    opts: std::sync::Arc<EndpointOptions>,
}

impl OAuthProxy {
    /// The facade's endpoints, to merge into the server's router (next to
    /// the MCP endpoint; not behind its authentication). The callback is
    /// served at the path of the upstream callback URL. Serve it with
    /// `mcp_auth_transport::serve`, or with
    /// `into_make_service_with_connect_info::<SocketAddr>()`: its limits
    /// count per client address, and requests without one are refused
    /// (500).
    pub fn router(&self, opts: EndpointOptions) -> Router {
        let callback_path = self
            .inner
            .upstream
            .callback()
            .and_then(|c| Url::parse(c).ok())
            .map_or_else(|| "/oauth/callback".to_owned(), |u| u.path().to_owned());
        let app = App {
            proxy: self.clone(),
            opts: std::sync::Arc::new(opts),
        };
        Router::new()
            .route(paths::METADATA, get(metadata))
            .route(paths::JWKS, get(jwks))
            .route(paths::REGISTER, post(registration))
            .route(paths::AUTHORIZE, get(authorize))
            .route(paths::CONSENT, post(consent_decision))
            .route(&callback_path, get(callback))
            .route(paths::TOKEN, post(token))
            .route(paths::REVOKE, post(revoke))
            .with_state(app)
            .layer(axum::middleware::from_fn(require_peer))
    }

    /// The RFC 8414 metadata document.
    pub fn metadata(&self) -> serde_json::Value {
        let cfg = &self.inner.cfg;
        let mut md = serde_json::json!({
            "issuer": cfg.issuer_id(),
            "authorization_endpoint": cfg.endpoint(paths::AUTHORIZE),
            "token_endpoint": cfg.endpoint(paths::TOKEN),
            "registration_endpoint": cfg.endpoint(paths::REGISTER),
            "revocation_endpoint": cfg.endpoint(paths::REVOKE),
            "jwks_uri": cfg.endpoint(paths::JWKS),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
        });
        if !cfg.scopes_supported.is_empty() {
            md["scopes_supported"] = cfg.scopes_supported.clone().into();
        }
        if let Some(dpop) = &cfg.dpop {
            let algs: Vec<String> = dpop.algorithms().iter().map(|a| format!("{a:?}")).collect();
            md["dpop_signing_alg_values_supported"] = algs.into();
        }
        md
    }
}

/// `Cache-Control: no-store`, and `Pragma: no-cache` for HTTP/1.0 caches
/// (RFC 6749 §5.1).
fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// `r` with `Retry-After: wait` (whole seconds, rounded up, at least one).
fn retry_after(mut r: Response, wait: Duration) -> Response {
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(mcp_auth_core::retry_after_secs(wait)),
    );
    r
}

/// An OAuth error response (RFC 6749 §5.2 shape). Rate limits answer 429
/// with `temporarily_unavailable` (no code of RFC 6749, 7009 or 7591 says
/// "too many"; this one, the authorization endpoint's, says "try again
/// later") and `Retry-After`.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    no_store(
        (
            status,
            Json(serde_json::json!({"error": code, "error_description": description})),
        )
            .into_response(),
    )
}

/// The form of a token or revocation request (RFC 6749 §3.2): any other
/// media type, a body that is not a form, or a parameter given twice is
/// `invalid_request` as JSON, like every error of those endpoints;
/// parameters without a value count as absent (§3.1).
struct OAuthForm(HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for OAuthForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let form_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the body could not be read",
                )
            })?;
        let (form, repeated) = oauth_params(&body);
        if let Some(name) = repeated.first() {
            let (code, why) = repeated_error(name);
            return Err(oauth_error(StatusCode::BAD_REQUEST, code, &why));
        }
        Ok(Self(form))
    }
}

/// The parameters of an authorization, token or revocation request (RFC
/// 6749 §3.1): one without a value counts as absent; with the names of
/// those given more than once (bounded, see [`bounded_name`]), in order.
/// The same `resource` twice counts once (RFC 8707 allows several).
fn oauth_params(raw: &[u8]) -> (HashMap<String, String>, Vec<String>) {
    let mut params = HashMap::new();
    let mut repeated = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if v.is_empty() {
            continue;
        }
        if let Some(before) = params.insert(k.clone().into_owned(), v.clone().into_owned())
            && !(k == "resource" && before == v)
        {
            repeated.push(bounded_name(&k));
        }
    }
    (params, repeated)
}

/// The error code and description for parameter `name` given twice:
/// `invalid_target` for `resource` (this server issues tokens for its own
/// resource only), else `invalid_request`.
fn repeated_error(name: &str) -> (&'static str, String) {
    match name {
        "resource" => (
            "invalid_target",
            "this server issues tokens for its own resource only".to_owned(),
        ),
        _ => (
            "invalid_request",
            format!("the parameter {name} is given more than once"),
        ),
    }
}

/// A parameter's name as it may appear in an error: at most 40 characters
/// of letters, digits and `_`.
fn bounded_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

async fn metadata(State(app): State<App>) -> Response {
    Json(app.proxy.metadata()).into_response()
}

async fn jwks(State(app): State<App>) -> Response {
    Json(app.proxy.jwks()).into_response()
}

/// Refuses requests that carry no peer address (a router served without
/// `ConnectInfo`, e.g. by a plain `axum::serve`): the per-network limits
/// would count every client under one key, so that a few requests from
/// anyone used up everyone's registrations and logins. 500, fail closed;
/// logged once, with the fix.
async fn require_peer(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.extensions().get::<ConnectInfo<SocketAddr>>().is_some() {
        return next.run(req).await;
    }
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::error!(
            "the login facade's requests carry no peer address, so its limits cannot tell clients \
             apart; refusing them: serve the router with mcp_auth_transport::serve, or with \
             axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())"
        );
    }
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the server cannot tell its clients apart (misconfigured)",
    )
}

impl App {
    /// The client's network for per-address limits: the TCP peer, or the
    /// forwarded address behind a trusted proxy; IPv6 by its /64.
    fn who(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> String {
        mcp_auth_transport::client_ip_by(
            &self.opts.trusted_proxies,
            peer.map(|p| p.ip()),
            headers,
            self.opts.forwarded_header,
        )
        .map(mcp_auth_transport::client_network)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }

    /// The `Origin` of a request a web page on another origin made (a
    /// browser sends one with every cross-origin `POST`, `null` from an
    /// opaque origin); `None` for callers that are no browser, and for the
    /// server's own pages. Such a request spends the budgets of the network
    /// of whoever visits the page, not the page's: what it may count
    /// against is kept apart.
    fn foreign_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        let origin = headers.get(header::ORIGIN)?.as_bytes();
        let own = self.proxy.inner.cfg.issuer.origin().ascii_serialization();
        (origin != own.as_bytes()).then_some(origin)
    }

    /// Counts a login started (authorization request) or approved against
    /// the caller's network's budget, `authorizations_per_minute`; the
    /// network, when within it. Everyone's budget ([`global_budget`]) is
    /// charged only once the request proved to be a login (a valid client,
    /// return address and challenge; a valid approval form), so requests
    /// that are none cannot use it up for all.
    ///
    /// [`global_budget`]: Self::global_budget
    async fn network_budget(
        &self,
        peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
        headers: &HeaderMap,
    ) -> Result<String, Response> {
        // A login is a page the browser opens (a link, the address bar, a
        // redirect, a form): one a page loads as an image, a script, a
        // frame or by fetch (the browser says so, RFC-less but in every
        // current browser: Fetch Metadata) is none, and is not counted,
        // so pages on other sites cannot spend their visitors' network's
        // budget unseen.
        let fetch = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
        if fetch("sec-fetch-mode").is_some_and(|m| m != b"navigate")
            || fetch("sec-fetch-dest").is_some_and(|d| d != b"document")
        {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Not a login",
                "A login opens in a browser window of its own, not inside another page.",
            ));
        }
        let who = self.who(peer.map(|axum::Extension(ConnectInfo(a))| a), headers);
        let (mine, left) = self
            .count(&format!("proxy-authz:{who}"), Duration::from_secs(60))
            .await?;
        if mine > self.opts.authorizations_per_minute {
            return Err(retry_after(
                error_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    "Too many logins were started from your address. Wait a minute and try again.",
                ),
                left,
            ));
        }
        Ok(who)
    }

    /// Counts a login against everyone's budget, `logins_per_lifetime_total`.
    async fn global_budget(&self) -> Result<(), Response> {
        let (all, left) = self
            .count("proxy-authz:all", self.proxy.inner.cfg.login_ttl)
            .await?;
        if all > self.opts.logins_per_lifetime_total {
            tracing::warn!(
                limit = self.opts.logins_per_lifetime_total,
                "logins refused: too many started from all addresses together"
            );
            return Err(retry_after(
                error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again",
                    "Too many logins are being started right now. Try again in a few minutes.",
                ),
                left,
            ));
        }
        Ok(())
    }

    /// Counts a login against `key`'s budget of `window`: the count so far
    /// and the time until the window ends; `Err` is the answer when the
    /// store cannot count.
    async fn count(&self, key: &str, window: Duration) -> Result<(u64, Duration), Response> {
        self.proxy.inner.store.hit(key, window).await.map_err(|_| {
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server cannot start a login right now.",
            )
        })
    }
}

/// Client metadata documents fetched and kept per client network per hour
/// (a tenth of everyone's default budget: one network alone cannot use it
/// up).
const DOCUMENTS_PER_NETWORK_PER_HOUR: u64 = 100;

/// How long past its expiry the last accepted copy of a client's metadata
/// document is used while the document cannot be fetched again for a
/// reason that passes (a fetch budget used up, the store failing, its host
/// unreachable, timing out or answering 408, 429 or 5xx): 24 hours. Only
/// the documents of clients that were issued tokens have such a copy, kept
/// apart ([`kept_key`], written by [`keep_registration`] and by each new
/// copy of the document); a document fetched and never used is kept for
/// its own max-age only. An answer of the host's about the document (404
/// or 410, a changed or invalid document) takes effect at once.
const METADATA_DOCUMENT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What a document's host failing is remembered as (for a minute, as a
/// refusal is, but the client's last accepted copy still serves).
const HOST_FAILED: &[u8] = b"transient";

/// When to try again after a failure with no window of its own (the
/// store's, a document's host's).
const RETRY_SOON: Duration = Duration::from_secs(60);

fn client_key(client_id: &str) -> String {
    format!("proxy:client:{}", digest_b64(client_id.as_bytes()))
}

/// Where a metadata document's refusal (or its host's failure,
/// [`HOST_FAILED`]) is remembered for a minute.
fn refused_key(client_id: &str) -> String {
    format!("proxy:cimd-refused:{}", digest_b64(client_id.as_bytes()))
}

/// Where the last accepted copy of a metadata document in use is kept
/// ([`METADATA_DOCUMENT_GRACE`]).
fn kept_key(client_id: &str) -> String {
    format!("proxy:client-kept:{}", digest_b64(client_id.as_bytes()))
}

/// How long a copy of a document in use is kept: its grace past its
/// expiry; `None` once that has passed.
fn kept_for(client: &ClientInfo, now: u64) -> Option<Duration> {
    let until = client
        .expires_at?
        .saturating_add(METADATA_DOCUMENT_GRACE.as_secs());
    until
        .checked_sub(now)
        .filter(|left| *left > 0)
        .map(Duration::from_secs)
}

/// Why the client a request names cannot be used.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    /// For good (a document refused, a stored client unreadable): the
    /// client is unknown (`invalid_client`).
    #[error("{0}")]
    Refused(String),
    /// For now: no usable document because a fetch budget is used up, its
    /// host failed or the store did (503 `temporarily_unavailable`).
    #[error("{reason}")]
    Unavailable {
        /// What failed, for the log.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
}

impl ClientError {
    fn store(e: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            reason: format!("store: {e}"),
            retry_after: RETRY_SOON,
        }
    }

    fn later(reason: &str, retry_after: Duration) -> Self {
        Self::Unavailable {
            reason: reason.to_owned(),
            retry_after,
        }
    }
}

impl App {
    /// The client named `client_id`: pre-registered, registered here, or
    /// a metadata document (fetched behind the SSRF guard, cached).
    /// `who` (the caller's network) is charged for each document fetched:
    /// 30 a minute, and a refused document is not fetched again for a
    /// minute, so the endpoints cannot be turned into a fetcher of third
    /// parties. A document that cannot be fetched again for a reason that
    /// passes is replaced by its last accepted copy while one is kept
    /// ([`METADATA_DOCUMENT_GRACE`]); a refusal of the document removes
    /// that copy.
    async fn client(&self, client_id: &str, who: &str) -> Result<Option<ClientInfo>, ClientError> {
        if let Some(c) = self
            .opts
            .preregistered
            .iter()
            .find(|c| c.client_id == client_id)
        {
            return Ok(Some(c.clone()));
        }
        let store = &self.proxy.inner.store;
        let key = client_key(client_id);
        let now = now_secs();
        if let Some(bytes) = store.kv_get(&key).await.map_err(ClientError::store)? {
            let c: ClientInfo = serde_json::from_slice(&bytes)
                .map_err(|_| ClientError::Refused("stored client unreadable".to_owned()))?;
            if !c.is_expired(now) {
                return Ok(Some(c));
            }
        }
        if !is_metadata_document_client_id(client_id) {
            return Ok(None);
        }
        // The last accepted copy of a document in use (issued tokens), if
        // one is kept.
        let last_accepted = store
            .kv_get(&kept_key(client_id))
            .await
            .map_err(ClientError::store)?
            .and_then(|bytes| serde_json::from_slice::<ClientInfo>(&bytes).ok())
            .filter(|c| c.client_id == client_id && kept_for(c, now).is_some());
        match self
            .fetch_document(client_id, who, last_accepted.is_some())
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(ClientError::Unavailable { reason, .. }) if last_accepted.is_some() => {
                tracing::warn!(
                    client = %client_id,
                    reason = %reason,
                    "client metadata document not fetched again; its last accepted copy is used"
                );
                Ok(last_accepted)
            }
            Err(refused @ ClientError::Refused(_)) => {
                if last_accepted.is_some() {
                    // The host's answer takes effect: no copy serves again.
                    let _ = store.kv_delete(&kept_key(client_id)).await;
                }
                Err(refused)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches and keeps the metadata document `client_id`, within the
    /// budgets of [`client`](Self::client). `refetch`: a copy of it is
    /// kept (a client in use): the new one replaces it there too, so it
    /// uses none of the budgets (the caller's, everyone's), which could
    /// otherwise be spent to keep the host from being asked; such fetches
    /// are at most one a minute a document (a failure is remembered that
    /// long, a new copy is good at least that long).
    async fn fetch_document(
        &self,
        client_id: &str,
        who: &str,
        refetch: bool,
    ) -> Result<ClientInfo, ClientError> {
        let store = &self.proxy.inner.store;
        let refused = refused_key(client_id);
        match store.kv_get(&refused).await.map_err(ClientError::store)? {
            Some(why) if why == HOST_FAILED => {
                return Err(ClientError::later(
                    "the client metadata document's host failed a moment ago",
                    RETRY_SOON,
                ));
            }
            Some(_) => {
                return Err(ClientError::Refused(
                    "client metadata document refused a moment ago".to_owned(),
                ));
            }
            None => {}
        }
        let total = self.opts.registrations_per_hour_total;
        if !refetch {
            let (n, left) = store
                .hit(&format!("proxy-cimd:{who}"), Duration::from_secs(60))
                .await
                .map_err(ClientError::store)?;
            if n > 30 {
                return Err(ClientError::later(
                    "too many metadata documents from this address",
                    left,
                ));
            }
            // Everyone's budget for documents kept (below) used up: no new
            // document is fetched at all.
            let (n, left) = store
                .count("proxy-cimd:all")
                .await
                .map_err(ClientError::store)?;
            if n >= total {
                return Err(ClientError::later(
                    "too many metadata documents from all addresses",
                    left,
                ));
            }
        }
        // Fetched behind the SSRF guard; kept for the document's own
        // max-age (60 s to 1 h), so replicas share one fetch.
        let c = match fetch_metadata_document(client_id, &self.opts.metadata_guard).await {
            Ok(c) => c,
            Err(e) if e.is_transient() => {
                let _ = store.kv_put(&refused, HOST_FAILED, RETRY_SOON).await;
                return Err(ClientError::later(
                    &format!("client metadata document not fetched: {e}"),
                    RETRY_SOON,
                ));
            }
            Err(e) => {
                let _ = store.kv_put(&refused, b"1", RETRY_SOON).await;
                return Err(ClientError::Refused(format!(
                    "client metadata document refused: {e}"
                )));
            }
        };
        // Documents are kept for up to an hour: those fetched are
        // counted per network (100 an hour) and for everyone together
        // (as registrations, counted apart), so many
        // networks serving new documents cannot fill the store that
        // codes and refresh tokens need; documents refused count for
        // neither (one network cannot use everyone's budget up), and
        // neither do new copies of documents kept.
        let hour = Duration::from_secs(3600);
        if !refetch {
            let (n, left) = store
                .hit(&format!("proxy-cimd-hour:{who}"), hour)
                .await
                .map_err(ClientError::store)?;
            if n > DOCUMENTS_PER_NETWORK_PER_HOUR {
                return Err(ClientError::later(
                    "too many metadata documents from this address this hour",
                    left,
                ));
            }
            let (n, left) = store
                .hit("proxy-cimd:all", hour)
                .await
                .map_err(ClientError::store)?;
            if n > total {
                return Err(ClientError::later(
                    "too many metadata documents from all addresses",
                    left,
                ));
            }
        }
        tracing::info!(client = %client_id, "client metadata document fetched");
        let now = now_secs();
        let fresh = c
            .expires_at
            .map_or(self.opts.metadata_ttl.as_secs(), |t| t.saturating_sub(now));
        let bytes = serde_json::to_vec(&c).map_err(|e| ClientError::Refused(e.to_string()))?;
        store
            .kv_put(
                &client_key(client_id),
                &bytes,
                Duration::from_secs(fresh.max(1)),
            )
            .await
            .map_err(ClientError::store)?;
        // The new copy is the one kept for a client in use.
        if refetch && let Some(ttl) = kept_for(&c, now) {
            let _ = store.kv_put(&kept_key(client_id), &bytes, ttl).await;
        }
        Ok(c)
    }
}

async fn registration(State(app): State<App>, req: axum::extract::Request) -> Response {
    let store = &app.proxy.inner.store;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    let who = app.who(peer, req.headers());
    // Web pages on other origins register from their visitors' network
    // under a budget of their own there (the same size), one for all such
    // pages: a page cannot use up the network's budget of its native
    // clients, and a script naming a new `Origin` with each request gets
    // no new budget.
    let mine = match app.foreign_origin(req.headers()) {
        Some(_) => format!("proxy-reg-pages:{who}"),
        None => format!("proxy-reg:{who}"),
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "the registration request is too large",
        );
    };
    let hour = Duration::from_secs(3600);
    let unavailable = || {
        oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "store unavailable",
        )
    };
    // The address's own budget first: a request past it, or one that is
    // no registration at all, is not counted against everyone's (one
    // address could otherwise shut registration for all).
    match store.hit(&mine, hour).await {
        Ok((mine, left)) if mine > app.opts.registrations_per_hour => {
            return retry_after(
                oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    "too many registrations from this address; try again later",
                ),
                left,
            );
        }
        Ok(_) => {}
        Err(_) => return unavailable(),
    }
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the body is not a JSON object",
        );
    };
    let now = now_secs();
    let (client, _secret, response) = match register(&request, &app.opts.registration, now) {
        Ok(r) => r,
        Err(e) => {
            return no_store((StatusCode::BAD_REQUEST, Json(e.to_response_body())).into_response());
        }
    };
    match store.hit("proxy-reg:all", hour).await {
        Ok((all, left)) if all > app.opts.registrations_per_hour_total => {
            return retry_after(
                oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    "too many registrations right now; try again later",
                ),
                left,
            );
        }
        Ok(_) => {}
        Err(_) => return unavailable(),
    }
    // Kept for a while only, until a login through it succeeds (then
    // `keep_registration`): registrations alone, which anyone can make,
    // cannot fill the store.
    let ttl = registration_ttl(&client, now).min(app.opts.unused_registration_ttl);
    let Ok(bytes) = serde_json::to_vec(&client) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot store",
        );
    };
    if store
        .kv_put(&client_key(&client.client_id), &bytes, ttl)
        .await
        .is_err()
    {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "cannot store the registration",
        );
    }
    tracing::info!(client = %client.client_name, "client registered");
    no_store((StatusCode::CREATED, Json(response)).into_response())
}

/// How long a registration in use is kept: 30 days after its last token
/// request, or until it expires.
fn registration_ttl(client: &ClientInfo, now: u64) -> Duration {
    client
        .expires_at
        .map_or(Duration::from_secs(30 * 86_400), |t| {
            Duration::from_secs(t.saturating_sub(now).max(1))
        })
}

/// A client was just issued tokens (a code exchanged, or a refresh): a
/// dynamically registered one's registration is kept for
/// [`registration_ttl`] from now; a metadata document's copy is kept apart
/// ([`kept_key`]) [`METADATA_DOCUMENT_GRACE`] past its expiry, to serve
/// while the document cannot be fetched again, unless a copy is kept
/// already (never replaced from here: the request's copy may be older than
/// one fetched meanwhile).
async fn keep_registration(app: &App, client: &ClientInfo) {
    let now = now_secs();
    if client.kind == crate::clients::ClientKind::MetadataDocument {
        let (Some(ttl), Ok(bytes)) = (kept_for(client, now), serde_json::to_vec(client)) else {
            return;
        };
        // Not when the document was refused meanwhile (its copy removed):
        // this request's copy must not bring it back.
        if let Ok(Some(why)) = app
            .proxy
            .inner
            .store
            .kv_get(&refused_key(&client.client_id))
            .await
            && why != HOST_FAILED
        {
            return;
        }
        if let Err(e) = app
            .proxy
            .inner
            .store
            .kv_put_new(&kept_key(&client.client_id), &bytes, ttl)
            .await
        {
            tracing::warn!(error = %e, "could not keep a client's metadata document");
        }
        return;
    }
    if client.kind != crate::clients::ClientKind::Dynamic {
        return;
    }
    // A registration's lifetime (`RegistrationPolicy::client_lifetime`)
    // runs from its last use, not from when it was made.
    let mut client = client.clone();
    client.expires_at = app
        .opts
        .registration
        .client_lifetime
        .map(|life| now.saturating_add(life.as_secs()));
    let ttl = registration_ttl(&client, now);
    let Ok(bytes) = serde_json::to_vec(&client) else {
        return;
    };
    if let Err(e) = app
        .proxy
        .inner
        .store
        .kv_put(&client_key(&client.client_id), &bytes, ttl)
        .await
    {
        tracing::warn!(error = %e, "could not keep a client's registration past its first hours");
    }
}

/// An authorization request waiting for consent and the upstream login.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingLogin {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    resource: String,
    /// SHA-256 of the browser binding that started (and approved) the
    /// login: the callback must come back to the same browser.
    browser: String,
}

/// How long after the consent page was made its approval is refused (a
/// little under the second its style sheet keeps Allow unclickable once
/// the pointer is on the page). Against double-clickjacking: a page that
/// asks for a double-click, and opens the consent page on its first click,
/// would have the second land on Allow; no person reads the page and
/// approves within this. Kept as a key that lives this long in the store,
/// so replicas' clocks play no part.
const CONSENT_ARMED_AFTER: Duration = Duration::from_millis(900);

/// The key that lives [`CONSENT_ARMED_AFTER`] from the consent page of
/// the login `request`.
fn consent_unarmed_key(request: &str) -> String {
    format!("proxy:consent-unarmed:{request}")
}

/// The upstream half of a login, keyed by the state sent upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UpstreamLeg {
    login: PendingLogin,
    pkce_verifier: String,
    nonce: String,
    /// The user approved on the consent page: the approval is remembered
    /// once the provider's login succeeds (not before, so that approvals
    /// alone, which need no account, cannot fill the store).
    #[serde(default)]
    remember: bool,
}

/// An error page: for what cannot be trusted to the redirect URI.
fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut r = (status, consent::render_error(title, message)).into_response();
    r.headers_mut().extend(consent::page_headers(&[]));
    r
}

/// Sends the browser back to the client with `params` (and `state`, `iss`).
fn back_to_client(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The application's redirect URI is not a URL.",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    no_store(Redirect::to(url.as_str()).into_response())
}

/// Whether `c` can be an S256 PKCE challenge: the unpadded base64url of a
/// SHA-256 digest, 43 characters (RFC 7636 §4.2). Anything else could
/// never match a verifier, and would cost a provider login first.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The scopes a `scope` parameter asks for, each once
/// ([`mcp_auth_core::distinct_scope_tokens`]); `Err` when it holds anything
/// but scope tokens between spaces (a tab or a no-break space makes the
/// whole value invalid, rather than separating scopes or being dropped).
fn requested_scopes(scope: &str) -> Result<Vec<String>, ()> {
    mcp_auth_core::distinct_scope_tokens(scope)
        .map(|asked| asked.into_iter().map(str::to_owned).collect())
        .ok_or(())
}

fn browser_binding(app: &App, headers: &HeaderMap) -> Option<String> {
    let secure = app.proxy.inner.cfg.issuer.scheme() == "https";
    consent::binding_from_headers(headers, secure).map(str::to_owned)
}

async fn authorize(
    State(app): State<App>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    // A prefetch (speculation rules, `<link rel=prefetch>`) would make the
    // consent page, and start the time it takes to arm, before anyone sees
    // it: not served (the browser asks again when it navigates).
    let prefetch = ["sec-purpose", "purpose"].iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("prefetch"))
    });
    if prefetch {
        return no_store(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    let proxy = &app.proxy;
    let who = match app.network_budget(peer, &headers).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    let cfg = &proxy.inner.cfg;
    let issuer = cfg.issuer_id();
    let (q, repeated) = oauth_params(raw.as_deref().unwrap_or_default().as_bytes());
    // Which client, or where to send the browser back, is then unclear:
    // a page, never a redirect.
    if repeated
        .iter()
        .any(|r| r == "client_id" || r == "redirect_uri")
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The request names its application or its return address more than once.",
        );
    }
    let Some(client_id) = q.get("client_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Missing client",
            "The request names no client (client_id).",
        );
    };
    let client = match app.client(client_id, &who).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "This application is not registered with this server. Ask it to register again.",
            );
        }
        Err(why) => {
            tracing::warn!(reason = %why, "authorization request with an unusable client");
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "This application could not be verified.",
            );
        }
    };
    let Some(redirect_uri) = q
        .get("redirect_uri")
        .filter(|r| client.allows_redirect_uri(r))
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The address this request would send you back to is not one the application registered.",
        );
    };
    // A `state` over the limit is refused below and not sent back (it
    // would make a redirect of any length).
    let sent_state = q.get("state").map(String::as_str);
    let state_too_long = sent_state.is_some_and(|s| s.len() > 512);
    let state = sent_state.filter(|_| !state_too_long);
    // An error goes back to the redirect URI only if it is trusted (RFC
    // 9700 §4.11.2): anyone can register a client with any redirect URI,
    // so for one registered dynamically or named by a metadata document an
    // error before consent would make this server an open redirector. Its
    // redirect URI is trusted when it is on loopback (it leads back to the
    // user's own machine only, and a native app waits there for the
    // answer), or once this browser approved it there (looked up only
    // when there is an error to send).
    let fail = async |code: &str, why: &str| {
        let trusted = client.kind == crate::clients::ClientKind::Preregistered
            || crate::clients::is_loopback_redirect(redirect_uri)
            || match browser_binding(&app, &headers) {
                Some(binding) => {
                    approved_here(&app, &binding, &client.client_id, redirect_uri).await
                }
                None => false,
            };
        if trusted {
            back_to_client(
                redirect_uri,
                &[("error", code), ("error_description", why)],
                state,
                &issuer,
            )
        } else {
            error_page(
                StatusCode::BAD_REQUEST,
                "The application's request was refused",
                &format!(
                    "This login cannot go on ({code}: {why}). Nothing was sent back to the application."
                ),
            )
        }
    };
    if let Some(name) = repeated.first() {
        let (code, why) = repeated_error(name);
        return fail(code, &why).await;
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        )
        .await;
    }
    // Request objects (RFC 9101 §6.3) and other response modes are not
    // supported: refused, not ignored, since a client that sends them
    // expects them to be honoured.
    if q.contains_key("request") {
        return fail("request_not_supported", "request objects are not supported").await;
    }
    if q.contains_key("request_uri") {
        return fail("request_uri_not_supported", "request_uri is not supported").await;
    }
    if q.get("response_mode").is_some_and(|m| m != "query") {
        return fail(
            "invalid_request",
            "response_mode must be query, the only one supported",
        )
        .await;
    }
    if !client.allows_grant_type(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "the client did not register the authorization_code grant",
        )
        .await;
    }
    if q.contains_key("code_challenge")
        && q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return fail("invalid_request", "PKCE code_challenge_method must be S256").await;
    }
    let Some(challenge) = q.get("code_challenge").filter(|c| is_s256_challenge(c)) else {
        return fail(
            "invalid_request",
            "PKCE is required: code_challenge (43 base64url characters) with code_challenge_method=S256",
        )
        .await;
    };
    let resource = cfg.resource.to_string();
    if q.get("resource")
        .is_some_and(|r| !same_resource(r, &resource))
    {
        return fail(
            "invalid_target",
            "this server issues tokens for its own resource only",
        )
        .await;
    }
    // What the facade may grant is `scopes_supported`, nothing else (none
    // when it is empty); a request for more gets the part it may have
    // (RFC 6749 §3.3: the token response says which), and a request for
    // only what it may not have is refused.
    if q.get("scope").is_some_and(|s| s.len() > 512) || state_too_long {
        return fail(
            "invalid_request",
            "scope and state are limited to 512 characters",
        )
        .await;
    }
    let requested: Vec<String> = match q.get("scope").map(|s| requested_scopes(s)) {
        Some(Ok(asked)) if !asked.is_empty() => asked,
        Some(Err(())) => {
            return fail(
                "invalid_scope",
                "scope must be scope tokens separated by spaces (RFC 6749 §3.3)",
            )
            .await;
        }
        _ => cfg.scopes_supported.clone(),
    };
    let scopes: Vec<String> = requested
        .iter()
        .filter(|s| cfg.scopes_supported.contains(s))
        .cloned()
        .collect();
    if scopes.is_empty() && !requested.is_empty() && !cfg.scopes_supported.is_empty() {
        return fail("invalid_scope", "none of the requested scopes is offered").await;
    }
    let (binding, new_cookie) = match browser_binding(&app, &headers) {
        Some(b) => (b, false),
        None => match consent::new_browser_binding() {
            Some(b) => (b, true),
            None => return fail("server_error", "no randomness").await,
        },
    };
    // A login it is: it counts against everyone's budget.
    if let Err(refused) = app.global_budget().await {
        return refused;
    }
    let pending = PendingLogin {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.map(str::to_owned),
        code_challenge: challenge.clone(),
        scopes: scopes.clone(),
        resource,
        browser: digest_b64(binding.as_bytes()),
    };
    // Approved before in this browser, for this client, these scopes and
    // this redirect URI: straight on.
    if !new_cookie && consented(&app, &binding, &pending).await {
        return to_upstream(&app, pending, false).await;
    }
    let Ok(request_id) = random_token(24) else {
        return fail("server_error", "no randomness").await;
    };
    let store = &proxy.inner.store;
    let Ok(bytes) = serde_json::to_vec(&pending) else {
        return fail("server_error", "cannot keep the request").await;
    };
    let kept = match store
        .kv_put(&consent_unarmed_key(&request_id), b"1", CONSENT_ARMED_AFTER)
        .await
    {
        Ok(()) => {
            store
                .kv_put(&format!("proxy:login:{request_id}"), &bytes, cfg.login_ttl)
                .await
        }
        Err(e) => Err(e),
    };
    if kept.is_err() {
        return fail("temporarily_unavailable", "store unavailable").await;
    }
    let csrf = consent::csrf_token(&proxy.inner.csrf_secret, &binding, &request_id);
    let lines: Vec<consent::ScopeLine<'_>> = scopes
        .iter()
        .map(|s| consent::ScopeLine {
            scope: s,
            description: None,
        })
        .collect();
    let Some(redirect) = consent::RedirectTarget::from_redirect_uri(redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The application's redirect address cannot be used.",
        );
    };
    let kind = match client.kind {
        crate::clients::ClientKind::Preregistered => consent::ClientKind::Preregistered,
        crate::clients::ClientKind::Dynamic => consent::ClientKind::Dynamic,
        crate::clients::ClientKind::MetadataDocument => consent::ClientKind::MetadataDocument,
    };
    let page = consent::render_consent(&consent::ConsentView {
        client_name: &client.client_name,
        client_id: &client.client_id,
        client_kind: kind,
        redirect,
        scopes: &lines,
        server_name: "",
        resource: cfg.resource.as_str(),
        provider_name: proxy.inner.upstream.name(),
        csrf_token: &csrf,
        request_id: &request_id,
        form_action: paths::CONSENT,
    });
    let mut r = (StatusCode::OK, page).into_response();
    let upstream = proxy.inner.upstream.authorize_url();
    r.headers_mut().extend(consent::page_headers(&[
        upstream.as_str(),
        redirect_uri.as_str(),
    ]));
    if new_cookie {
        let secure = cfg.issuer.scheme() == "https";
        if let Some(v) = consent::binding_set_cookie(&binding, secure, 365 * 86_400) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn consent_key(binding: &str, login: &PendingLogin) -> String {
    consent_key_for(binding, &login.client_id, &login.redirect_uri)
}

fn consent_key_for(binding: &str, client_id: &str, redirect_uri: &str) -> String {
    // The approval is for this client sending this browser back to this
    // redirect URI: another of the client's redirect URIs needs its own.
    format!(
        "proxy:consent:{}:{}",
        digest_b64(binding.as_bytes()),
        digest_b64(format!("{client_id}\n{redirect_uri}").as_bytes())
    )
}

/// Whether this browser approved `client_id` sending it back to
/// `redirect_uri` (for any scopes).
async fn approved_here(app: &App, binding: &str, client_id: &str, redirect_uri: &str) -> bool {
    matches!(
        app.proxy
            .inner
            .store
            .kv_get(&consent_key_for(binding, client_id, redirect_uri))
            .await,
        Ok(Some(_))
    )
}

async fn consented(app: &App, binding: &str, login: &PendingLogin) -> bool {
    let Ok(Some(bytes)) = app
        .proxy
        .inner
        .store
        .kv_get(&consent_key(binding, login))
        .await
    else {
        return false;
    };
    let granted: Vec<String> = serde_json::from_slice(&bytes).unwrap_or_default();
    login.scopes.iter().all(|s| granted.contains(s))
}

#[derive(Deserialize)]
struct ConsentForm {
    request: String,
    csrf: String,
    decision: String,
}

async fn consent_decision(
    State(app): State<App>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let proxy = &app.proxy;
    // Approvals share the authorization budget: each one starts a login.
    if let Err(refused) = app.network_budget(peer, &headers).await {
        return refused;
    }
    let cfg = &proxy.inner.cfg;
    let binding = browser_binding(&app, &headers).unwrap_or_default();
    if binding.is_empty()
        || !consent::csrf_valid(
            &proxy.inner.csrf_secret,
            &binding,
            &form.request,
            &form.csrf,
        )
    {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request expired",
            "This approval did not come from the page this server showed you. Start the login again from the application.",
        );
    }
    let store = &proxy.inner.store;
    let key = format!("proxy:login:{}", form.request);
    // Single use: a replayed approval finds nothing.
    let Ok(Some(bytes)) = store.kv_take(&key).await else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Request expired",
            "This login took too long. Start it again from the application.",
        );
    };
    let Ok(pending) = serde_json::from_slice::<PendingLogin>(&bytes) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Request expired",
            "Start the login again from the application.",
        );
    };
    if form.decision != "allow" {
        return back_to_client(
            &pending.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
            ],
            pending.state.as_deref(),
            &cfg.issuer_id(),
        );
    }
    // Too soon after the page appeared to be anyone's reading of it: a
    // click meant for another page (the login is spent; the application
    // can start it again). A store that cannot say refuses too.
    let unarmed = match store.kv_get(&consent_unarmed_key(&form.request)).await {
        Ok(found) => found.is_some(),
        Err(_) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "This server cannot take approvals right now. Start the login again from the application in a moment.",
            );
        }
    };
    if unarmed {
        tracing::info!(
            client = %pending.client_id,
            "approval refused: it came before the consent page could be read"
        );
        return error_page(
            StatusCode::BAD_REQUEST,
            "Approval too quick",
            "This approval came before the page could be read, so it was not taken. Start the login again from the application.",
        );
    }
    // An approval of a login waiting for it (the form is single use: a
    // replayed one found nothing above): it counts against everyone's
    // budget.
    if let Err(refused) = app.global_budget().await {
        return refused;
    }
    to_upstream(&app, pending, true).await
}

/// Sends the browser to the provider; `remember`: the user approved on the
/// consent page, and the approval is kept once the login succeeds.
async fn to_upstream(app: &App, login: PendingLogin, remember: bool) -> Response {
    let proxy = &app.proxy;
    let Ok(start) = proxy.inner.upstream.start_login() else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The login could not be started.",
        );
    };
    let leg = UpstreamLeg {
        login,
        pkce_verifier: start.pkce_verifier,
        nonce: start.nonce,
        remember,
    };
    let sealed = serde_json::to_vec(&leg)
        .ok()
        .and_then(|b| proxy.inner.sealer.seal(&b, b"proxy:upstream").ok());
    let Some(sealed) = sealed else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Try again",
            "The login could not be started.",
        );
    };
    if proxy
        .inner
        .store
        .kv_put(
            &format!("proxy:upstream:{}", digest_b64(start.state.as_bytes())),
            &sealed,
            proxy.inner.cfg.login_ttl,
        )
        .await
        .is_err()
    {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The login could not be started.",
        );
    }
    no_store(Redirect::to(start.url.as_str()).into_response())
}

async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let proxy = &app.proxy;
    let cfg = &proxy.inner.cfg;
    let store = &proxy.inner.store;
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "Login expired",
            "This login is unknown or took too long. Start it again from the application.",
        )
    };
    let Some(state) = q.get("state") else {
        return expired();
    };
    let key = format!("proxy:upstream:{}", digest_b64(state.as_bytes()));
    // Read, and taken once the browser is the one that started it, or when
    // the provider's answer came to another one (below; a stranger who
    // learnt the `state`, which is in the provider's URL, can so end a
    // login with a made-up answer, not finish it).
    let leg = match store.kv_get(&key).await {
        Ok(Some(sealed)) => proxy
            .inner
            .sealer
            .open(&sealed, b"proxy:upstream")
            .ok()
            .and_then(|b| serde_json::from_slice::<UpstreamLeg>(&b).ok()),
        _ => None,
    };
    let Some(leg) = leg else {
        return expired();
    };
    // The provider must send back the browser that approved the login: a
    // provider URL handed to someone else (whose provider session answers at
    // once) must not finish it for them.
    let here = browser_binding(&app, &headers)
        .map(|b| digest_b64(b.as_bytes()))
        .unwrap_or_default();
    let same: bool =
        subtle::ConstantTimeEq::ct_eq(here.as_bytes(), leg.login.browser.as_bytes()).into();
    if !same {
        tracing::warn!(
            "a login came back in another browser than the one that started it; refused"
        );
        // The provider's answer came here (a code for whoever signed in in
        // this browser, or an error): the login ends with it. Kept, the
        // same callback URL opened in the browser that started the login
        // would finish it with that code (an attack pass: an attacker's
        // provider URL opened by a victim, refused here, then the victim's
        // callback URL opened by the attacker gave the attacker a token as
        // the victim). A request here without an answer ends nothing.
        if q.contains_key("code") || q.contains_key("error") {
            let _ = store.kv_take(&key).await;
        }
        return error_page(
            StatusCode::FORBIDDEN,
            "Wrong browser",
            "This login was started in another browser. Start it again from the application, in this browser.",
        );
    }
    // Single use: of two answers with the same `state`, one goes on.
    if !matches!(store.kv_take(&key).await, Ok(Some(_))) {
        return expired();
    }
    let pending = leg.login.clone();
    let issuer = cfg.issuer_id();
    let back = |params: &[(&str, &str)]| {
        back_to_client(
            &pending.redirect_uri,
            params,
            pending.state.as_deref(),
            &issuer,
        )
    };
    if let Some(err) = q.get("error") {
        // Only RFC 6749's codes reach the log (the parameter is the provider's
        // text, or an attacker's).
        let known = [
            "access_denied",
            "invalid_request",
            "unauthorized_client",
            "unsupported_response_type",
            "invalid_scope",
            "server_error",
            "temporarily_unavailable",
        ];
        let shown = known
            .iter()
            .find(|k| **k == err)
            .copied()
            .unwrap_or("other");
        tracing::info!(error = shown, "the provider refused the login");
        let code = if err == "access_denied" {
            "access_denied"
        } else {
            "server_error"
        };
        return back(&[
            ("error", code),
            ("error_description", "the provider refused the login"),
        ]);
    }
    let Some(code) = q.get("code") else {
        return back(&[
            ("error", "server_error"),
            ("error_description", "the provider sent no code"),
        ]);
    };
    let (user, tokens) = match proxy
        .inner
        .upstream
        .finish_login(code, &leg.pkce_verifier, &leg.nonce)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream login failed");
            return back(&[
                ("error", "server_error"),
                ("error_description", "the login at the provider failed"),
            ]);
        }
    };
    let Ok(family) = Grants::new_family() else {
        return back(&[("error", "server_error")]);
    };
    // The provider's tokens stay here, sealed, for tools acting for the user.
    if let Err(e) = proxy
        .keep_upstream_tokens(&family, &user.subject, tokens)
        .await
    {
        tracing::warn!(error = %e, "the provider's tokens could not be kept; tools will not get them");
    }
    tracing::info!(client = %pending.client_id, "login finished");
    if leg.remember
        && let (Some(binding), Ok(scopes)) = (
            browser_binding(&app, &headers),
            serde_json::to_vec(&pending.scopes),
        )
    {
        let _ = store
            .kv_put(&consent_key(&binding, &pending), &scopes, cfg.consent_ttl)
            .await;
    }
    let grant = Grant {
        logged_in_at: now_secs(),
        family,
        client_id: pending.client_id.clone(),
        user,
        scopes: pending.scopes.clone(),
        resource: pending.resource.clone(),
        dpop_jkt: None,
    };
    match proxy
        .inner
        .grants
        .issue_code(grant, &pending.redirect_uri, &pending.code_challenge)
        .await
    {
        Ok(code) => back(&[("code", &code)]),
        Err(_) => back(&[("error", "temporarily_unavailable")]),
    }
}

/// The client a token or revocation request authenticates as, by the
/// method it registered (`token_endpoint_auth_method`): `client_secret_basic`
/// with the HTTP Basic `Authorization` header only, `client_secret_post`
/// with `client_id` and `client_secret` in the form only, `none` with the
/// form's `client_id` alone. Another method, or none, is 401
/// `invalid_client` (with a Basic challenge, as every 401 here); two at
/// once (the header and a form `client_secret`) or a form `client_id`
/// other than the header's is 400 `invalid_request`
/// (RFC 6749 §2.3); an `Authorization` header that is not Basic
/// credentials (the scheme's name in any case, RFC 7235 §2.1) is 401
/// `invalid_client` with a Basic challenge. A client whose metadata
/// document cannot be had for now is 503 `temporarily_unavailable`.
async fn authenticate_client(
    app: &App,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<ClientInfo, Response> {
    use crate::clients::TokenEndpointAuthMethod as Method;
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let basic = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one Authorization header",
            ));
        }
        (Some(v), None) => Some(basic_credentials(v).ok_or_else(invalid_client)?),
    };
    let form_secret = form.get("client_secret");
    let (client_id, secret, presented) = match (basic, form.get("client_id")) {
        (Some(_), _) if form_secret.is_some() => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the client authenticates in more than one way (the Authorization header and client_secret)",
            ));
        }
        (Some((id, _)), Some(form_id)) if *form_id != id => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id differs from the one in the Authorization header",
            ));
        }
        // A public client's id with an empty password is the id alone.
        (Some((id, secret)), _) if secret.is_empty() => (id, None, Method::None),
        (Some((id, secret)), _) => (id, Some(secret), Method::ClientSecretBasic),
        (None, Some(id)) => match form_secret {
            Some(s) => (id.clone(), Some(s.clone()), Method::ClientSecretPost),
            None => (id.clone(), None, Method::None),
        },
        (None, None) => return Err(invalid_client()),
    };
    let who = app.who(peer, headers);
    let client = match app.client(&client_id, &who).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(invalid_client()),
        Err(ClientError::Refused(why)) => {
            tracing::info!(reason = %why, "client refused at the token or revocation endpoint");
            return Err(invalid_client());
        }
        Err(ClientError::Unavailable {
            reason,
            retry_after: wait,
        }) => {
            tracing::warn!(reason = %reason, "client cannot be verified for now");
            return Err(retry_after(
                oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the client cannot be verified right now; try again later",
                ),
                wait,
            ));
        }
    };
    if !client.is_confidential() {
        // A public client has no secret: one presented is not its own.
        if presented != Method::None {
            return Err(invalid_client());
        }
        return Ok(client);
    }
    // A confidential client is a server, never a web page: a page on
    // another origin sending its credentials is refused without counting
    // (it would spend the guessing budget of its visitor's network, and
    // lock the client out there).
    if app.foreign_origin(headers).is_some() {
        tracing::info!(
            client = %client.client_id,
            "a confidential client's authentication sent by a web page on another origin: refused"
        );
        return Err(invalid_client());
    }
    // Failed authentications are counted per network and client: 30 in 15
    // minutes, then 429 until the window ends, so a secret cannot be
    // guessed online (and one client's failures lock out no other). Each
    // attempt is counted before it is checked, in one step, and given back
    // when it succeeds: attempts sent all at once are counted as they
    // come, not each against the count before any of them failed. A store
    // that cannot count refuses the attempt (503), never lets it through
    // unlimited.
    let failures = format!(
        "proxy-client-fail:{who}:{}",
        digest_b64(client.client_id.as_bytes())
    );
    let window = Duration::from_secs(900);
    let store = &app.proxy.inner.store;
    let (n, left) = match store.hit(&failures, window).await {
        Ok(counted) => counted,
        Err(_) => {
            return Err(retry_after(
                oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the client cannot be verified right now; try again later",
                ),
                Duration::from_secs(1),
            ));
        }
    };
    if n > CLIENT_FAILURES_ALLOWED {
        return Err(retry_after(
            oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many failed client authentications from this address; try again later",
            ),
            left,
        ));
    }
    // Its own method; either way of sending a secret when it named none.
    let method_ok = presented == client.token_endpoint_auth_method
        || (!client.auth_method_named && presented.uses_secret());
    let ok = method_ok && secret.as_deref().is_some_and(|s| client.verify_secret(s));
    if !ok {
        if !method_ok {
            tracing::info!(
                client = %client.client_id,
                registered = client.token_endpoint_auth_method.as_str(),
                presented = presented.as_str(),
                "client authenticated by another method than the one it registered"
            );
        }
        return Err(invalid_client());
    }
    // No failure: its count given back.
    let _ = store.unhit(&failures).await;
    Ok(client)
}

/// Wrong client secrets (or methods) allowed per network and client per 15
/// minutes.
const CLIENT_FAILURES_ALLOWED: u64 = 30;

/// The client id and secret of an `Authorization: Basic` header (RFC 6749
/// §2.3.1: each form-urlencoded); `None` when the header is not that.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, credentials) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        credentials.trim(),
    )
    .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id), form_urldecode(secret)))
}

fn form_urldecode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// 401 `invalid_client`, with the Basic challenge every 401 carries (RFC
/// 9110 §15.5.2; RFC 6749 §5.2 requires it when the client tried Basic,
/// and it names the scheme this endpoint supports when it did not).
fn invalid_client() -> Response {
    let mut r = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"token\""),
    );
    r
}

/// The request's DPoP proof for the token endpoint, verified without state
/// (RFC 9449 §4.3: `htm` POST, `htu` the token endpoint), when DPoP is on
/// and the client sent one; `None` otherwise. With DPoP required, a request
/// without one is refused. A bad proof is 400 `invalid_dpop_proof` (§5.1).
/// The caller records its `jti` ([`record_proof`]) once the grant is
/// found, before anything else may refuse the request: a proof sent with a
/// refused request cannot be sent again, and proofs sent with unknown codes
/// or tokens take no room in the store.
// The refusal is the response itself, as in the async handlers around it.
#[allow(clippy::result_large_err)]
fn dpop_proof(app: &App, headers: &HeaderMap) -> Result<Option<DpopProof>, Response> {
    let cfg = &app.proxy.inner.cfg;
    let Some(verifier) = &cfg.dpop else {
        return Ok(None);
    };
    let refuse = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", why);
    let mut values = headers.get_all("dpop").iter();
    let proof = match (values.next(), values.next()) {
        (None, _) if cfg.dpop_required => {
            return Err(refuse(
                "this server issues DPoP-bound tokens only: send a DPoP proof",
            ));
        }
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => return Err(refuse("more than one DPoP header")),
        (Some(v), None) => v
            .to_str()
            .map_err(|_| refuse("the DPoP header is not ASCII"))?,
    };
    let now = now_secs();
    let proof = verifier
        .verify(proof, "POST", &cfg.endpoint(paths::TOKEN), None, None, now)
        .map_err(|e| refuse(&e.to_string()))?;
    // RFC 9449 §8: the server's nonce, when it asks for one; the answer
    // names the nonce to retry with.
    if let Some(nonces) = &cfg.dpop_nonces
        && !proof
            .nonce
            .as_deref()
            .is_some_and(|n| nonces.is_valid(n, now))
    {
        let mut r = oauth_error(
            StatusCode::BAD_REQUEST,
            "use_dpop_nonce",
            "put the nonce of the DPoP-Nonce header in the proof",
        );
        with_nonce(&mut r, &cfg.dpop_nonces);
        return Err(r);
    }
    Ok(Some(proof))
}

/// The current DPoP nonce in a `DPoP-Nonce` header, when nonces are on.
fn with_nonce(r: &mut Response, nonces: &Option<mcp_auth_strategies::DpopNonces>) {
    if let Some(nonces) = nonces
        && let Ok(v) = HeaderValue::from_str(&nonces.current(now_secs()))
    {
        r.headers_mut().insert("dpop-nonce", v);
    }
}

/// Records a proof's `jti` (single use, RFC 9449 §11.1); a replay is 400
/// `invalid_dpop_proof`.
async fn record_proof(app: &App, proof: &DpopProof) -> Result<(), Response> {
    let Some(verifier) = &app.proxy.inner.cfg.dpop else {
        return Ok(());
    };
    let key = format!("replay:dpop:{}", proof.replay_key());
    match app
        .proxy
        .inner
        .store
        .kv_put_new(&key, b"1", verifier.replay_ttl())
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            "the proof was used before (jti replayed)",
        )),
        Err(e) => {
            tracing::error!(error = %e, "token endpoint store failure (DPoP replay)");
            Err(oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again shortly",
            ))
        }
    }
}

/// A `resource` parameter names this server (RFC 8707): the configured
/// resource, with or without a trailing slash, its scheme and host in any
/// case (RFC 3986 6.2.2.1; MCP asks servers to take them so), both as the
/// URL standard parses them (dot segments resolved). Tokens always name
/// the configured resource, never the one asked for.
fn same_resource(asked: &str, ours: &str) -> bool {
    let canonical = |s: &str| {
        Url::parse(s)
            .ok()
            .filter(|u| u.fragment().is_none())
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
    };
    match (canonical(asked), canonical(ours)) {
        (Some(a), Some(o)) => a == o,
        _ => false,
    }
}

async fn token(
    State(app): State<App>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Response {
    let peer = peer.map(|axum::Extension(ConnectInfo(a))| a);
    let client = match authenticate_client(&app, peer, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // RFC 8707 §2.2: tokens only for this server, checked before a code or
    // refresh token is spent.
    if form
        .get("resource")
        .is_some_and(|r| !same_resource(r, app.proxy.inner.cfg.resource.as_str()))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "this server issues tokens for its own resource only",
        );
    }
    // RFC 9449 §5: a proof binds the tokens issued to its key.
    let proof = match dpop_proof(&app, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let grants = &app.proxy.inner.grants;
    let mut spent: Option<String> = None;
    let mut taken: Option<crate::grants::TakenCode> = None;
    let mut asked: Option<Vec<String>> = None;
    let grant = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri), Some(verifier)) = (
                form.get("code"),
                form.get("redirect_uri"),
                form.get("code_verifier"),
            ) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code, redirect_uri and code_verifier are required",
                );
            };
            grants
                .take_code(code, &client.client_id, redirect_uri, verifier)
                .await
                .map(|(grant, code)| {
                    taken = Some(code);
                    grant
                })
        }
        Some("refresh_token") => {
            if !client.allows_grant_type(GrantType::RefreshToken) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "the client did not register refresh_token",
                );
            }
            let Some(rt) = form.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            spent = Some(rt.clone());
            asked = match form.get("scope").map(|s| requested_scopes(s)) {
                Some(Ok(asked)) if !asked.is_empty() => Some(asked),
                Some(Err(())) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "scope must be scope tokens separated by spaces (RFC 6749 §3.3)",
                    );
                }
                _ => None,
            };
            grants.use_refresh(rt, &client.client_id).await
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "authorization_code and refresh_token are supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    };
    let mut grant = match grant {
        Ok(g) => g,
        Err(GrantError::Invalid(why)) => {
            tracing::info!(client = %client.client_id, reason = why, "grant refused");
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
        }
        Err(e) => {
            tracing::error!(error = %e, "token endpoint store failure");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again shortly",
            );
        }
    };
    // The grant as the presented refresh token holds it: what it is given
    // back with when nothing is issued.
    let presented = grant.clone();
    // Before a refusal once the refresh token or the code was spent:
    // nothing was issued, so what was presented stays good (a store hiccup
    // or a refused proof must not turn the client's retry into a replay
    // that logs the user out).
    let give_back = async || {
        if let Some(old) = &spent {
            let _ = grants.restore_refresh(old, &presented).await;
        }
        if let Some(code) = &taken
            && let Err(e) = grants.restore_code(code).await
        {
            tracing::warn!(error = %e, "a code that issued nothing could not be given back: the client's retry will revoke its login");
        }
    };
    // The grant was found: the proof is spent now, whatever becomes of the
    // request (RFC 9449 §11.1), so one sent with a request refused below
    // cannot be sent again. (A proof with an unknown code or token is not
    // recorded: proofs alone cannot fill the store.)
    if let Some(p) = &proof
        && let Err(refused) = record_proof(&app, p).await
    {
        give_back().await;
        return refused;
    }
    // What the facade offers now, not what it offered at the login: a scope
    // taken out of `scopes_supported` since is not granted again, in this
    // access token or the refresh tokens after it (the grant shrinks for
    // good).
    let offered = &app.proxy.inner.cfg.scopes_supported;
    grant.scopes.retain(|s| offered.contains(s));
    // A client that asks again for what it was granted (many send their
    // scopes with every refresh) gets what is offered of it (RFC 6749
    // §3.3: the response says which), not a refusal it could never get
    // past, on this refresh and every later one; a request for scopes no
    // longer offered only is refused.
    let asked = match asked {
        Some(mut asked) => {
            asked.retain(|s| offered.contains(s));
            if asked.is_empty() {
                give_back().await;
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "none of the requested scopes is offered",
                );
            }
            Some(asked)
        }
        None => None,
    };
    // Only this access token may be narrower (RFC 6749 §6); the refresh
    // token keeps the whole grant.
    let narrowed = match asked {
        Some(asked) if asked.iter().any(|s| !grant.scopes.contains(s)) => {
            give_back().await;
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "a refresh cannot widen the grant",
            );
        }
        asked => asked,
    };
    let jkt = proof.as_ref().map(|p| p.jkt.clone());
    match (&spent, &grant.dpop_jkt) {
        // A public client's refresh tokens are bound to the key of the
        // proof its code exchange came with (RFC 9449 §5).
        (None, _) if !client.is_confidential() => grant.dpop_jkt = jkt.clone(),
        // Its code exchanged without a proof, a public client refreshing
        // with one: bound from now on, so later refreshes need the key.
        (Some(_), None) if !client.is_confidential() && jkt.is_some() => {
            grant.dpop_jkt = jkt.clone();
        }
        (Some(_), Some(bound)) if jkt.as_ref() != Some(bound) => {
            // Not the holder of the key: the token stays good for it.
            give_back().await;
            tracing::info!(client = %client.client_id, "refresh refused: not a proof by the key the refresh token is bound to");
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "the refresh token is bound to a DPoP key: send a proof signed by it",
            );
        }
        _ => {}
    }
    let mut for_access = grant.clone();
    if let Some(scopes) = narrowed {
        for_access.scopes = scopes;
    }
    let Ok((access, ttl)) = app.proxy.access_token(&for_access, jkt.as_deref()) else {
        give_back().await;
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot sign",
        );
    };
    let mut body = serde_json::json!({
        "access_token": access,
        "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": ttl,
    });
    if !for_access.scopes.is_empty() {
        body["scope"] = for_access.scopes.join(" ").into();
    }
    if client.allows_grant_type(GrantType::RefreshToken) {
        match grants.issue_refresh(&grant).await {
            Ok(rt) => body["refresh_token"] = rt.into(),
            Err(_) => {
                // The presented refresh token was spent; given back, or a
                // store hiccup would log the user out.
                give_back().await;
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again shortly",
                );
            }
        }
    }
    // Tokens were issued: the client is in use (a client that only
    // refreshes, for the 90 days a login lasts, keeps its registration).
    keep_registration(&app, &client).await;
    let mut r = no_store(Json(body).into_response());
    // The nonce for the client's next proof (RFC 9449 §8.2).
    with_nonce(&mut r, &app.proxy.inner.cfg.dpop_nonces);
    r
}

async fn revoke(
    State(app): State<App>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Response {
    let peer = peer.map(|axum::Extension(ConnectInfo(a))| a);
    let client = match authenticate_client(&app, peer, &headers, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    // A refresh token revokes its family; so does one of this facade's
    // access tokens (it names its family): access tokens are refused by
    // their family's revocation, and cannot be revoked alone. Only the tokens of
    // the authenticated client (RFC 7009 §2.1): another client's token,
    // live or spent, is answered as an unknown one, 200, and stays good
    // (§2.2), so the answer tells nothing about it.
    let grants = &app.proxy.inner.grants;
    let family = app
        .proxy
        .verifier()
        .ok()
        .and_then(|v| v.verify_sync(token).ok())
        .filter(|t| t.str_claim("client_id") == Some(client.client_id.as_str()))
        .and_then(|t| t.str_claim(crate::vault::FAMILY_CLAIM).map(str::to_owned));
    let revoked = match family {
        Some(f) => grants.revoke_family(&f).await,
        None => grants.revoke_refresh(token, &client.client_id).await,
    };
    if revoked.is_err() {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again shortly",
        );
    }
    no_store(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod resource_tests {
    use super::same_resource;

    #[test]
    fn resources_compare_with_scheme_and_host_in_any_case() {
        let ours = "https://mcp.example.com/mcp";
        for same in [
            ours,
            "https://mcp.example.com/mcp/",
            "HTTPS://MCP.Example.COM/mcp",
            "https://mcp.example.com:443/mcp",
        ] {
            assert!(same_resource(same, ours), "{same}");
        }
        for other in [
            "https://mcp.example.com/MCP",
            "https://mcp.example.com/mcp/x",
            "https://mcp.example.com/mcp#frag",
            "https://mcp.example.com:8443/mcp",
            "http://mcp.example.com/mcp",
            "mcp.example.com/mcp",
            "",
        ] {
            assert!(!same_resource(other, ours), "{other}");
        }
    }
}

#[cfg(test)]
mod parameter_tests {
    use super::{is_s256_challenge, requested_scopes};

    #[test]
    fn scopes_are_scope_tokens_between_spaces_each_once() {
        assert_eq!(
            requested_scopes("  mcp:tools mcp:admin  mcp:tools"),
            Ok(vec!["mcp:tools".to_owned(), "mcp:admin".to_owned()])
        );
        assert_eq!(requested_scopes(" "), Ok(vec![]));
        for bad in [
            "mcp:tools\tmcp:admin",
            "mcp:tools\u{a0}mcp:admin",
            "mcp:tools\u{3000}mcp:admin",
            "mcp:tools\nmcp:admin",
            "a\"b",
            "a\\b",
        ] {
            assert_eq!(requested_scopes(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn an_s256_challenge_is_43_base64url_characters() {
        assert!(is_s256_challenge(
            &"aZ09-_".repeat(7).chars().chain(['x']).collect::<String>()
        ));
        for bad in [
            "!".repeat(43),
            "a".repeat(42),
            "a".repeat(44),
            format!("{}=", "a".repeat(42)),
            format!("{}+", "a".repeat(42)),
        ] {
            assert!(!is_s256_challenge(&bad), "{bad}");
        }
    }
}
