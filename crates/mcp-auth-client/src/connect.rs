//! [`connect`]: an rmcp client session with the right credentials.

use std::{collections::HashMap, sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue};
use rmcp::{
    RoleClient, ServiceExt,
    model::ProtocolVersion,
    service::{ClientLifecycleMode, ClientServiceExt, RunningService},
    transport::{
        StreamableHttpClientTransport,
        auth::{
            AuthClient, AuthorizationManager, AuthorizationMetadata, AuthorizationMetadataSource,
            AuthorizationRequest, AuthorizationSession, CredentialStore, OAuthClientConfig,
            OAuthState,
        },
        streamable_http_client::{StreamableHttpClient, StreamableHttpClientTransportConfig},
    },
};

use crate::{
    CallbackError, CallbackServer, DpopHttpClient, DpopKey, FileCredentialStore, IssuerCheck,
    Presented, Refusal, Registration, RegistrationStore,
    dpop::{is_dpop_token_type, resource_accepts_dpop, supports_es256},
    failure::{challenge_scopes, from_initialize_error, is_unreachable, union},
    issuer::same_issuer,
    oauth_http::{OAuthHttp, SharedPolicy},
    open_browser,
};

/// How to authenticate. `Debug` shows no key, token or secret.
#[derive(Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// `X-API-Key`.
    ApiKey(String),
    /// `Authorization: Bearer` with a token obtained elsewhere.
    Bearer(String),
    /// OAuth 2.1 with whatever the server's authorization server supports.
    OAuth(OAuthOptions),
    /// A token from an OAuth grant of the program's own, without a browser
    /// (client credentials, workload identity, enterprise-managed
    /// authorization): [`crate::connect_machine`].
    Machine(Box<crate::MachineOptions>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::ApiKey(_) => f.debug_tuple("ApiKey").field(&"<redacted>").finish(),
            Auth::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
            Auth::OAuth(opts) => f.debug_tuple("OAuth").field(opts).finish(),
            Auth::Machine(opts) => f.debug_tuple("Machine").field(opts).finish(),
        }
    }
}

impl Auth {
    /// What this presents to the server (for messages; no secret).
    pub fn presented(&self) -> Presented {
        match self {
            Auth::None => Presented::Nothing,
            Auth::ApiKey(_) => Presented::ApiKey,
            Auth::Bearer(_) => Presented::Bearer,
            Auth::OAuth(_) | Auth::Machine(_) => Presented::OAuth,
        }
    }
}

/// Which MCP wire to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wire {
    /// The 2026-07-28 stateless wire when the server speaks it
    /// (`server/discover`), else a 2025-11-25 session (`initialize`).
    #[default]
    Auto,
    /// 2026-07-28 only: `server/discover`, then self-contained requests; a
    /// server that does not speak it is an error.
    Stateless,
    /// 2025-11-25 only: `initialize` and an `Mcp-Session-Id` session.
    Session,
}

impl std::str::FromStr for Wire {
    type Err = String;

    /// `auto`, `2026-07-28` (or `stateless`), `2025-11-25` (or `session`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Wire::Auto),
            "2026-07-28" | "stateless" => Ok(Wire::Stateless),
            "2025-11-25" | "session" => Ok(Wire::Session),
            other => Err(format!(
                "unknown protocol {other:?}: expected auto, 2026-07-28 or 2025-11-25"
            )),
        }
    }
}

/// OAuth settings. `Debug` shows no client secret.
#[derive(Clone)]
pub struct OAuthOptions {
    /// A pre-registered client (Cognito: the only option); tried first,
    /// with the authorization servers [`OAuthOptions::client_issuer`]
    /// allows.
    pub client_id: Option<String>,
    /// Its secret, for confidential clients. Requires
    /// [`OAuthOptions::client_issuer`]: a secret is sent only to the
    /// authorization server it was issued by, never to whichever one an MCP
    /// server names ([`connect_oauth`] refuses a secret without it).
    pub client_secret: Option<String>,
    /// The issuer that issued `client_id`. When set, `client_id` and
    /// `client_secret` are presented only to the authorization server whose
    /// metadata names exactly this issuer (e.g. a Cognito user pool's
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>`); any other
    /// gets a client ID metadata document or dynamic registration. `None`:
    /// a public `client_id` (no secret) is presented to any authorization
    /// server; with a `client_secret` it is an error.
    pub client_issuer: Option<String>,
    /// A client ID metadata document URL (CIMD), tried when the server
    /// advertises support; else dynamic registration.
    pub client_metadata_url: Option<String>,
    /// Scopes to ask for at the first login. Default (empty), the MCP
    /// spec's order: the `scope` of the server's challenge, else the
    /// protected-resource metadata's `scopes_supported`, else none. A login
    /// for a [`OAuthOptions::challenge`] asks for these, the scopes already
    /// held and the challenge's, together. rmcp adds `offline_access` when
    /// the authorization server supports it (for a refresh token).
    pub scopes: Vec<String>,
    /// Loopback callback port (default 3030; 0 = any, preferring the port a
    /// stored dynamic registration was made with).
    pub callback_port: u16,
    /// Open a browser (else only print the URL).
    pub open_browser: bool,
    /// Follow the authorization redirects in-process instead of a browser
    /// (for authorization servers that approve without a person, e.g. the
    /// conformance suite).
    pub headless: bool,
    /// Keep tokens in the per-server file store, and dynamic registrations
    /// per authorization server in the [`RegistrationStore`] (default
    /// true).
    pub persist: bool,
    /// How long to wait for the login.
    pub timeout: Duration,
    /// A challenge the server already sent (a 401 or a 403
    /// `insufficient_scope` mid-session): log in for it now, without
    /// reusing stored tokens.
    pub challenge: Option<String>,
    /// The MCP wire to speak once authorized (default [`Wire::Auto`]).
    pub wire: Wire,
    /// Ask for DPoP-bound tokens (RFC 9449) when the authorization server's
    /// metadata offers DPoP with ES256 (`dpop_signing_alg_values_supported`)
    /// (default true): token requests carry a proof of the server's key
    /// ([`FileCredentialStore::dpop_key`], in memory without `persist`),
    /// and a token issued as `DPoP` is presented with a proof on every MCP
    /// request. False: no proofs, Bearer tokens only; stored tokens that
    /// are already bound are still presented with proofs (RFC 9449 §7.1
    /// forbids sending them as Bearer).
    pub dpop: bool,
    /// Send tokens to an MCP server on plain http off loopback (default
    /// false: refused before anything is sent, since anyone on the way
    /// could read them; OAuth 2.1 §1.5). For a network the user trusts,
    /// such as a container network. Authorization servers need https
    /// whatever this says.
    pub allow_http: bool,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_issuer: None,
            client_metadata_url: None,
            scopes: Vec::new(),
            callback_port: 3030,
            open_browser: true,
            headless: false,
            persist: true,
            timeout: Duration::from_secs(300),
            challenge: None,
            wire: Wire::Auto,
            dpop: true,
            allow_http: false,
        }
    }
}

impl std::fmt::Debug for OAuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthOptions")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_issuer", &self.client_issuer)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("scopes", &self.scopes)
            .field("callback_port", &self.callback_port)
            .field("open_browser", &self.open_browser)
            .field("headless", &self.headless)
            .field("persist", &self.persist)
            .field("timeout", &self.timeout)
            .field("challenge", &self.challenge)
            .field("wire", &self.wire)
            .field("dpop", &self.dpop)
            .finish()
    }
}

impl OAuthOptions {
    /// The pre-registered client (`client_id`, `client_secret`) to present
    /// to the authorization server whose metadata names `issuer`: none when
    /// [`OAuthOptions::client_issuer`] names another issuer, nor when a
    /// `client_secret` is not bound to an issuer at all (it goes nowhere
    /// unpinned).
    pub fn preregistered_client(&self, issuer: Option<&str>) -> Option<(&str, Option<&str>)> {
        let id = self.client_id.as_deref()?;
        if self.client_secret.is_some() && self.client_issuer.is_none() {
            tracing::debug!("the client secret is not bound to an issuer: not using it");
            return None;
        }
        if let Some(bound) = &self.client_issuer {
            let same = issuer.is_some_and(|i| same_issuer(i, bound));
            if !same {
                tracing::debug!(
                    client_issuer = %bound,
                    issuer = issuer.unwrap_or("(none)"),
                    "the pre-registered client belongs to another authorization server: not using it"
                );
                return None;
            }
        }
        Some((id, self.client_secret.as_deref()))
    }

    /// The scopes to ask for before discovery: for a login on a mid-session
    /// challenge, `held` (the scopes of the tokens it replaces), `scopes`
    /// and the challenge's, together; else `scopes`. Empty: the spec's
    /// order after discovery (see [`OAuthOptions::scopes`]).
    pub fn scopes_to_request(&self, held: &[String]) -> Vec<String> {
        match &self.challenge {
            Some(c) => union(&union(held, &self.scopes), &challenge_scopes(c)),
            None => self.scopes.clone(),
        }
    }
}

/// A step of connecting failed. `Display` says which step and why, on one
/// line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached or answered unexpectedly.
    #[error("contacting the server: {0}")]
    Server(String),
    /// The server wants credentials the options do not provide.
    #[error("the server requires authentication: {0}")]
    AuthRequired(String),
    /// The server refused the credentials (401) or their scope (403).
    #[error("{0}")]
    Refused(Refusal),
    /// OAuth discovery (protected-resource or authorization-server metadata).
    #[error("OAuth discovery: {0}")]
    Discovery(String),
    /// Registration or the authorization request.
    #[error("OAuth authorization: {0}")]
    Authorization(String),
    /// The browser step (callback, state, user refusal, timeout).
    #[error("login: {0}")]
    Login(String),
    /// Exchanging the code for tokens.
    #[error("token exchange: {0}")]
    Token(String),
    /// The MCP session itself.
    #[error("MCP: {0}")]
    Mcp(String),
    /// The settings cannot be used as given (a client secret without the
    /// issuer it belongs to, no config directory for tokens).
    #[error("configuration: {0}")]
    Config(String),
}

pub(crate) type Client = RunningService<RoleClient, ()>;

/// Connects to `server_url` and starts MCP on the wire the server speaks
/// ([`Wire::Auto`]).
pub async fn connect(server_url: &str, auth: Auth) -> Result<Client, ClientError> {
    connect_with(server_url, auth, Wire::Auto).await
}

/// [`connect`] on the given [`Wire`] (for OAuth it replaces
/// [`OAuthOptions::wire`]). Credentials are not sent to a plain-http
/// server off loopback ([`ClientError::Config`] before anything is sent;
/// see [`connect_with_plain_http`]).
pub async fn connect_with(server_url: &str, auth: Auth, wire: Wire) -> Result<Client, ClientError> {
    connect_over(server_url, auth, wire, false).await
}

/// [`connect_with`] that also sends credentials to a plain-http server off
/// loopback (and sets [`OAuthOptions::allow_http`] /
/// [`MachineOptions::allow_http`](crate::MachineOptions::allow_http)): for
/// a network the user trusts, such as a container network.
pub async fn connect_with_plain_http(
    server_url: &str,
    auth: Auth,
    wire: Wire,
) -> Result<Client, ClientError> {
    connect_over(server_url, auth, wire, true).await
}

/// Refuses to send `what` to `server_url` when it is plain http off
/// loopback, unless `allowed`: anyone on the way could read it (RFC 6750
/// §5.3, OAuth 2.1 §1.5).
pub(crate) fn require_tls(server_url: &str, what: &str, allowed: bool) -> Result<(), ClientError> {
    let Ok(url) = url::Url::parse(server_url) else {
        // Reported by the connection itself.
        return Ok(());
    };
    match (url.scheme(), url.host()) {
        ("http", Some(host)) if !allowed && !crate::grants::is_loopback(&host) => {
            Err(ClientError::Config(format!(
                "the MCP server {} is plain http off this machine: {what} would cross the \
                 network readable by anyone on the way; use https (or --allow-http / \
                 allow_http on a network you trust)",
                url.origin().ascii_serialization()
            )))
        }
        _ => Ok(()),
    }
}

async fn connect_over(
    server_url: &str,
    auth: Auth,
    wire: Wire,
    allow_http: bool,
) -> Result<Client, ClientError> {
    let presented = auth.presented();
    match auth {
        Auth::None => plain(server_url, HashMap::new(), presented, wire).await,
        Auth::ApiKey(k) => {
            require_tls(server_url, "the API key", allow_http)?;
            let v = HeaderValue::from_str(&k).map_err(|_| {
                ClientError::AuthRequired("the API key is not a valid header value".into())
            })?;
            plain(
                server_url,
                HashMap::from([(HeaderName::from_static("x-api-key"), v)]),
                presented,
                wire,
            )
            .await
        }
        Auth::Bearer(t) => {
            require_tls(server_url, "the bearer token", allow_http)?;
            let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                ClientError::AuthRequired("the token is not a valid header value".into())
            })?;
            plain(
                server_url,
                HashMap::from([(http::header::AUTHORIZATION, v)]),
                presented,
                wire,
            )
            .await
        }
        Auth::OAuth(opts) => {
            let allow_http = opts.allow_http || allow_http;
            let opts = OAuthOptions {
                wire,
                allow_http,
                ..opts
            };
            connect_oauth(server_url, &opts).await.map(|(c, _)| c)
        }
        Auth::Machine(mut opts) => {
            opts.wire = wire;
            opts.allow_http |= allow_http;
            crate::connect_machine(server_url, &opts)
                .await
                .map(|(c, _)| c)
        }
    }
}

/// How long an MCP request may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a probe ([`probe`]) may take, whole: connecting, sending, the
/// answer and the body it reads.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long starting MCP may take on each wire (`server/discover`, or the
/// `initialize` handshake): a server that takes the request and never
/// answers is given up on, not waited for forever.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client MCP requests go out on. Redirects are followed only
/// within the origin of the URL asked for (scheme, host and port), or from
/// a plain-http URL to https on the same host's port 443, at most 10, so
/// a redirect cannot carry an API key header, a proof or a request body to
/// another host, another port (another service), or from https to plain
/// http. (reqwest's default follows any redirect and drops only
/// `Authorization` across hosts.)
///
/// Connecting may take [`CONNECT_TIMEOUT`]; there is no overall timeout,
/// since the MCP session's requests and SSE streams stay open as long as
/// the server keeps them (a tool call may take minutes, on a server that
/// sends nothing meanwhile); starting MCP has [`START_TIMEOUT`], the
/// binary's commands `--timeout`, and a library caller sets its own (the
/// probes set theirs, [`PROBE_TIMEOUT`]).
pub(crate) fn mcp_http() -> reqwest::Client {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        let allowed = attempt.previous().first().is_some_and(|first| {
            first.origin() == next.origin()
                || (first.scheme() == "http"
                    && next.scheme() == "https"
                    && first.host_str() == next.host_str()
                    && next.port_or_known_default() == Some(443))
        });
        if !allowed {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .unwrap_or_else(|e| {
            // Only when the TLS backend cannot start: no client would work.
            tracing::error!(error = %e, "cannot build the MCP HTTP client");
            reqwest::Client::new()
        })
}

pub(crate) async fn plain(
    server_url: &str,
    headers: HashMap<HeaderName, HeaderValue>,
    presented: Presented,
    wire: Wire,
) -> Result<Client, ClientError> {
    let config = StreamableHttpClientTransportConfig::with_uri(server_url).custom_headers(headers);
    start(mcp_http(), config, presented, wire).await
}

/// Starts the MCP lifecycle over `http` on `wire`. [`Wire::Auto`]:
/// `server/discover` first (the 2026-07-28 stateless wire); when the server
/// does not answer it as a modern server does (a 2025-11-25 server refuses
/// a request without a session, or answers it with a JSON-RPC error), the
/// `initialize` handshake of 2025-11-25 on a new transport. A refusal of
/// the credentials (401/403) or an unreachable server ends it at once:
/// the other wire would fare the same. Each wire's start may take
/// [`START_TIMEOUT`].
pub(crate) async fn start<C>(
    http: C,
    config: StreamableHttpClientTransportConfig,
    presented: Presented,
    wire: Wire,
) -> Result<Client, ClientError>
where
    C: StreamableHttpClient + Clone + Send + Sync + 'static,
{
    start_within(http, config, presented, wire, START_TIMEOUT).await
}

/// [`start`], each wire's start given `limit`.
async fn start_within<C>(
    http: C,
    config: StreamableHttpClientTransportConfig,
    presented: Presented,
    wire: Wire,
    limit: Duration,
) -> Result<Client, ClientError>
where
    C: StreamableHttpClient + Clone + Send + Sync + 'static,
{
    let silent = || {
        ClientError::Mcp(format!(
            "the server took the connection but did not answer within {} s",
            limit.as_secs_f32()
        ))
    };
    if wire != Wire::Session {
        // On the stateless wire every request is self-contained: `_meta`
        // with the version and the client's capabilities,
        // `MCP-Protocol-Version`, `Mcp-Method` / `Mcp-Name` and the
        // `Mcp-Param-*` headers a tool asks for.
        let modern = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config.clone());
        let started = tokio::time::timeout(limit, ().serve_with_lifecycle(transport, modern))
            .await
            .map_err(|_| silent())?;
        match started {
            Ok(client) => return Ok(client),
            Err(e) => {
                let error = from_initialize_error(&e, presented);
                if wire == Wire::Stateless
                    || matches!(
                        error,
                        ClientError::Refused(_) | ClientError::AuthRequired(_)
                    )
                    || is_unreachable(&e)
                {
                    return Err(error);
                }
                tracing::debug!(error = %error, "server/discover was not answered as on the 2026-07-28 wire: starting a 2025-11-25 session");
            }
        }
    }
    tokio::time::timeout(
        limit,
        ().serve(StreamableHttpClientTransport::with_client(http, config)),
    )
    .await
    .map_err(|_| silent())?
    .map_err(|e| from_initialize_error(&e, presented))
}

/// Asks the server, without credentials, whether it wants any: `None` if
/// it lets the client in, else its `WWW-Authenticate` challenge. The
/// question is a `server/discover` on the 2026-07-28 wire; a server that
/// does not answer it the modern way (a 2025-11-25 server refuses a
/// request outside a session) is asked with an `initialize` instead.
/// What a login starts from: the server's challenge, or a session already
/// open because the server wants no credentials.
pub(crate) enum Probed {
    /// The challenge to log in for.
    Challenge(String),
    /// Let in without credentials.
    Open(Client),
}

/// `given` (a challenge the server already sent), else the server's answer
/// to a request without credentials ([`probe`]): its challenge, or, when
/// it let the request in, a session opened without credentials.
pub(crate) async fn challenge_or_open(
    server_url: &str,
    given: Option<&str>,
    wire: Wire,
) -> Result<Probed, ClientError> {
    if let Some(c) = given {
        return Ok(Probed::Challenge(c.to_owned()));
    }
    match probe(server_url, wire).await? {
        Some(c) => Ok(Probed::Challenge(c)),
        None => plain(server_url, HashMap::new(), Presented::Nothing, wire)
            .await
            .map(Probed::Open),
    }
}

pub(crate) async fn probe(server_url: &str, wire: Wire) -> Result<Option<String>, ClientError> {
    probe_within(server_url, wire, PROBE_TIMEOUT).await
}

/// [`probe`], each of its requests given `timeout` in all (a server that
/// accepts the connection and never answers ends it with an error).
async fn probe_within(
    server_url: &str,
    wire: Wire,
    timeout: Duration,
) -> Result<Option<String>, ClientError> {
    if wire != Wire::Session {
        return probe_modern(server_url, wire, timeout).await;
    }
    probe_legacy(server_url, timeout).await
}

async fn probe_modern(
    server_url: &str,
    wire: Wire,
    timeout: Duration,
) -> Result<Option<String>, ClientError> {
    let discover = r#"{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"mcp-auth-client","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let r = probe_with(
        server_url,
        discover,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        timeout,
    )
    .await?;
    match probe_outcome(&r) {
        Ok(outcome) => return outcome,
        // A JSON-RPC error for this very request (a version it would rather
        // negotiate, say) comes from a modern server that did not ask for
        // credentials; rmcp's discovery negotiates from there.
        Err(_) if answers_request_zero(r).await => return Ok(None),
        Err(status) if wire == Wire::Stateless => {
            return Err(ClientError::Server(format!(
                "server/discover answered HTTP {status}"
            )));
        }
        Err(status) => tracing::debug!(
            status,
            "server/discover answered without a challenge: asking with initialize (2025-11-25)"
        ),
    }
    probe_legacy(server_url, timeout).await
}

async fn probe_legacy(server_url: &str, timeout: Duration) -> Result<Option<String>, ClientError> {
    let initialize = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-auth-client","version":"0"}}}"#;
    let r = probe_with(server_url, initialize, &[], timeout).await?;
    // A server that let the probe in opened a session for it: end it now
    // (the real session is opened next), or it idles until expiry.
    if r.status().is_success()
        && let Some(session) = r.headers().get("mcp-session-id").cloned()
    {
        let ended = mcp_http()
            .delete(server_url)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .timeout(timeout)
            .send()
            .await;
        if let Err(e) = ended {
            tracing::debug!(error = %crate::failure::error_chain(&e), "ending the probe's session failed");
        }
    }
    match probe_outcome(&r) {
        Ok(outcome) => outcome,
        Err(status) => Err(ClientError::Server(format!(
            "initialize answered HTTP {status}"
        ))),
    }
}

async fn probe_with(
    server_url: &str,
    body: &'static str,
    headers: &[(&'static str, &'static str)],
    timeout: Duration,
) -> Result<reqwest::Response, ClientError> {
    let mut request = mcp_http()
        .post(server_url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body).send().await.map_err(|e| {
        tracing::debug!(error = %crate::failure::error_chain(&e), "probe failed");
        ClientError::Server(crate::failure::describe_reqwest(&e))
    })
}

/// Whether a refused probe's body is a JSON-RPC error for the probe's own
/// request (`id` 0), read up to 64 KiB.
async fn answers_request_zero(mut r: reqwest::Response) -> bool {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = r.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > 64 * 1024 {
            return false;
        }
    }
    serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| {
        v.get("jsonrpc").and_then(serde_json::Value::as_str) == Some("2.0")
            && v.get("id").and_then(serde_json::Value::as_i64) == Some(0)
            && v.get("error").is_some()
    })
}

/// A probe's answer: in (`Ok(None)`), a challenge, a 401 without one (an
/// error), or `Err(status)` when it says neither.
#[allow(clippy::result_large_err)]
fn probe_outcome(r: &reqwest::Response) -> Result<Result<Option<String>, ClientError>, u16> {
    if r.status().is_success() {
        return Ok(Ok(None));
    }
    let challenge = r
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| is_oauth_challenge(c))
        .map(str::to_owned);
    match (r.status().as_u16(), challenge) {
        (401 | 403, Some(c)) => Ok(Ok(Some(c))),
        (401, None) => Ok(Err(ClientError::AuthRequired(
            "no Bearer or DPoP challenge (try --api-key or --bearer)".into(),
        ))),
        (status, _) => Err(status),
    }
}

/// Whether a `WWW-Authenticate` value is an OAuth challenge: scheme
/// `Bearer` or `DPoP` (RFC 9449 §7.1).
fn is_oauth_challenge(challenge: &str) -> bool {
    let scheme = challenge
        .trim_start()
        .split([' ', ','])
        .next()
        .unwrap_or("");
    scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")
}

/// The authorization manager for `server_url`; with `dpop`, its OAuth
/// requests go through [`OAuthHttp`] (returned too), which can add DPoP
/// proofs to token requests once the metadata is known.
async fn manager(
    server_url: &str,
    opts: &OAuthOptions,
    dpop: bool,
) -> Result<(AuthorizationManager, Option<Arc<OAuthHttp>>), ClientError> {
    let discovery = |e: rmcp::transport::auth::AuthError| ClientError::Discovery(e.to_string());
    let (mut m, http) = if dpop {
        let http = Arc::new(OAuthHttp::new(server_url).map_err(ClientError::Discovery)?);
        let m = AuthorizationManager::new_with_oauth_http_client(server_url, http.clone())
            .await
            .map_err(discovery)?;
        (m, Some(http))
    } else {
        (
            AuthorizationManager::new(server_url)
                .await
                .map_err(discovery)?,
            None,
        )
    };
    if opts.persist {
        m.set_credential_store(credential_store(server_url)?);
    }
    Ok((m, http))
}

/// The token store for `server_url`, under the user's config directory.
fn credential_store(server_url: &str) -> Result<FileCredentialStore, ClientError> {
    FileCredentialStore::for_server(server_url).map_err(|e| ClientError::Config(e.to_string()))
}

/// The DPoP key for `server_url`: the stored one (created and stored at
/// first use) with `persist`, else a new one in memory.
fn dpop_key(server_url: &str, persist: bool) -> Result<DpopKey, ClientError> {
    let key = if persist {
        credential_store(server_url)?
            .dpop_key()
            .map_err(|e| ClientError::Token(e.to_string()))?
    } else {
        DpopKey::generate().map_err(|e| ClientError::Token(e.to_string()))?
    };
    Ok(key)
}

/// Proofs on the token requests to `token_endpoint`, signed with `key`.
fn enable_dpop(http: &OAuthHttp, token_endpoint: &str, key: &DpopKey) -> Result<(), ClientError> {
    http.enable_dpop(token_endpoint, key.clone())
        .map_err(ClientError::Discovery)
}

/// Whether rmcp's token response is DPoP-bound.
pub(crate) fn is_bound(token: &rmcp::transport::auth::OAuthTokenResponse) -> bool {
    use oauth2::TokenResponse;
    is_dpop_token_type(token.token_type().as_ref())
}

/// The MCP session with the manager's tokens: presented as `DPoP` with a
/// proof of `dpop`'s key on every request when they are bound, else as
/// `Bearer`.
async fn with_manager(
    server_url: &str,
    m: AuthorizationManager,
    wire: Wire,
    dpop: Option<DpopKey>,
) -> Result<Client, ClientError> {
    let bound = m
        .get_credentials()
        .await
        .ok()
        .and_then(|(_, token)| token)
        .is_some_and(|t| is_bound(&t));
    let config = StreamableHttpClientTransportConfig::with_uri(server_url);
    match (bound, dpop) {
        (true, Some(key)) => {
            tracing::debug!(
                key = key.fingerprint(),
                "the token is DPoP-bound: presenting it with proofs"
            );
            let client = AuthClient::new(DpopHttpClient::new(key), m);
            start(client, config, Presented::OAuth, wire).await
        }
        (true, None) => Err(ClientError::Token(
            "the authorization server issued a DPoP-bound token without a DPoP proof".into(),
        )),
        (false, _) => {
            let client = AuthClient::new(mcp_http(), m);
            start(client, config, Presented::OAuth, wire).await
        }
    }
}

/// Stored tokens for `server_url`, when they work: the session and the
/// scopes they were granted. A confidential client's secret (the
/// pre-registered one, or a stored registration's) is configured again so
/// rmcp can refresh them.
async fn from_store(
    server_url: &str,
    opts: &OAuthOptions,
) -> Result<Option<(Client, Vec<String>)>, ClientError> {
    let store = credential_store(server_url)?;
    let stored = match store.load().await {
        Ok(Some(s)) if s.token_response.is_some() => s,
        _ => return Ok(None),
    };
    // A DPoP-bound token is useless without its key, and its refresh
    // (a public client's) needs proofs of it too.
    let bound = stored.token_response.as_ref().is_some_and(is_bound);
    let key = if bound {
        match store.load_dpop_key() {
            Ok(Some(key)) => Some(key),
            Ok(None) => {
                tracing::info!(
                    "the stored tokens are DPoP-bound but their key is gone; logging in again"
                );
                return Ok(None);
            }
            Err(e) => {
                tracing::info!(error = %e, "the stored tokens' DPoP key cannot be read; logging in again");
                return Ok(None);
            }
        }
    } else {
        None
    };
    let (mut m, http) = manager(server_url, opts, bound).await?;
    let metadata = match m.resolve_metadata().await {
        Ok(r) => r.metadata,
        Err(e) => {
            tracing::info!(error = %e, "discovery for the stored tokens failed; logging in again");
            return Ok(None);
        }
    };
    // Nothing (a refresh token, a client secret) goes to plain http off
    // loopback.
    require_https(&metadata)?;
    // The tokens go back only to the issuer that issued them, confirmed
    // at its own address: not to endpoints a document elsewhere claims for
    // it, nor to the fallback endpoints of a server that stopped
    // publishing metadata (no issuer), nor from there to a new issuer.
    let same = match (stored.issuer.as_deref(), metadata.issuer.as_deref()) {
        (Some(a), Some(b)) => same_issuer(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same {
        tracing::info!(
            stored = stored.issuer.as_deref().unwrap_or("(none)"),
            now = metadata.issuer.as_deref().unwrap_or("(none)"),
            "the stored tokens are another authorization server's; logging in again"
        );
        return Ok(None);
    }
    let metadata = match crate::issuer::confirm(server_url, metadata).await {
        Ok(confirmed) => confirmed,
        Err(e) => {
            tracing::info!(error = %e, "the stored tokens' issuer is not confirmed; logging in again");
            return Ok(None);
        }
    };
    if let (Some(http), Some(key)) = (&http, &key) {
        enable_dpop(http, &metadata.token_endpoint, key)?;
    }
    let issuer = metadata.issuer.clone();
    m.set_metadata(metadata);
    if !m.initialize_from_store().await.unwrap_or(false) {
        return Ok(None);
    }
    let secret = opts
        .preregistered_client(issuer.as_deref())
        .filter(|(id, _)| *id == stored.client_id)
        .and_then(|(_, s)| s.map(str::to_owned))
        .or_else(|| {
            let reg = RegistrationStore::for_user()
                .ok()?
                .load(issuer.as_deref()?)?;
            (reg.client_id == stored.client_id)
                .then_some(reg.client_secret)
                .flatten()
        });
    if let Some(secret) = secret {
        let config = OAuthClientConfig::new(stored.client_id.clone(), "http://127.0.0.1/callback")
            .with_client_secret(secret);
        if let Err(e) = m.configure_client(config) {
            tracing::debug!(error = %e, "cannot configure the client secret for refreshes");
        }
    }
    match with_manager(server_url, m, opts.wire, key).await {
        Ok(c) => Ok(Some((c, stored.granted_scopes))),
        Err(e) => {
            tracing::info!(error = %e, "stored tokens did not work; logging in again");
            Ok(None)
        }
    }
}

/// The issuer of the authorization server the MCP server at `server_url`
/// names, found as a login finds it (the server's 401 challenge, RFC 9728
/// and RFC 8414 / OIDC metadata, the issuer confirmed at its own address);
/// `None` when the server wants no credentials or its authorization
/// server's metadata names no issuer.
///
/// This takes the MCP server's word for it: credentials pinned to what it
/// returns ([`OAuthOptions::client_issuer`],
/// [`crate::MachineOptions::issuer`]) are not protected from that server.
/// It suits a caller that got the server's address and the credentials
/// from the same party, such as a test harness (the binary's
/// `conformance` command); a client with credentials of its own should be
/// told its issuer instead.
pub async fn discover_issuer(server_url: &str, wire: Wire) -> Result<Option<String>, ClientError> {
    let Some(challenge) = probe(server_url, wire).await? else {
        return Ok(None);
    };
    let metadata = AuthorizationManager::new(server_url)
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?
        .resolve_metadata_from_challenge(Some(&challenge))
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?
        .metadata;
    Ok(crate::issuer::confirm(server_url, metadata).await?.issuer)
}

/// Whether the metadata lists PKCE's `S256` method (RFC 8414
/// `code_challenge_methods_supported`). The MCP spec has a client refuse an
/// authorization server that does not: without it, the server may ignore
/// the challenge. Two exceptions are taken: the authorization server of a
/// pre-registered client bound to its issuer (a Cognito user pool, which
/// supports S256 but does not list it), chosen by whoever configured it;
/// and the 2025-03-26 default endpoints of a server with no metadata at
/// all, which have nowhere to list it.
fn advertises_s256(metadata: &AuthorizationMetadata) -> bool {
    metadata
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|m| m.iter().any(|x| x == "S256"))
}

/// Binds the loopback callback: `port`, or with 0 the `preferred` port (a
/// stored registration's) when it is free, else any.
async fn bind_callback(port: u16, preferred: Option<u16>) -> Result<CallbackServer, ClientError> {
    if port == 0
        && let Some(p) = preferred
        && let Ok(server) = CallbackServer::bind(p).await
    {
        return Ok(server);
    }
    CallbackServer::bind(port).await.map_err(|e| {
        ClientError::Login(format!(
            "cannot listen for the redirect on 127.0.0.1:{port}: {e}"
        ))
    })
}

/// Connects with OAuth ([`connect`] with [`Auth::OAuth`]): stored tokens
/// when they work, else a login. Also returns the scopes the session's
/// tokens were asked for and granted (empty when the server let the client
/// in without a token).
///
/// Dynamic registrations are kept per authorization server (with
/// `persist`) and reused by later logins with the same redirect URI; a
/// registration the authorization server no longer accepts is forgotten.
pub async fn connect_oauth(
    server_url: &str,
    opts: &OAuthOptions,
) -> Result<(Client, Vec<String>), ClientError> {
    require_tls(server_url, "the access token", opts.allow_http)?;
    // A secret goes only to the authorization server it belongs to, never
    // to whichever one the MCP server names.
    if opts.client_secret.is_some() && opts.client_issuer.is_none() {
        return Err(ClientError::Config(
            "a client secret is sent only to the authorization server it was issued by: set \
             OAuthOptions::client_issuer (--issuer) to that issuer, or leave the secret out \
             for a public client"
                .into(),
        ));
    }
    // Tokens from an earlier run (refreshed by rmcp when expired).
    if opts.persist
        && opts.challenge.is_none()
        && let Some(found) = from_store(server_url, opts).await?
    {
        return Ok(found);
    }
    let challenge =
        match challenge_or_open(server_url, opts.challenge.as_deref(), opts.wire).await? {
            Probed::Challenge(c) => c,
            Probed::Open(client) => return Ok((client, Vec::new())),
        };
    // The scopes of the tokens this login replaces.
    let held = if opts.persist && opts.challenge.is_some() {
        credential_store(server_url)?
            .load()
            .await
            .ok()
            .flatten()
            .map(|c| c.granted_scopes)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    // What `OAuthState::start_authorization` does (discovery from the
    // challenge, then the session: registration and the authorization URL),
    // keeping the metadata's issuer so the callback page can check `iss`.
    let (mut m, http) = manager(server_url, opts, opts.dpop).await?;
    let resolution = m
        .resolve_metadata_from_challenge(Some(&challenge))
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?;
    // No metadata at all: the 2025-03-26 default endpoints on the MCP
    // server's origin, which has nothing to advertise S256 in.
    let fallback = resolution.source == AuthorizationMetadataSource::LegacyEndpointFallback;
    let metadata = resolution.metadata;
    // https only (plain http on loopback), before anything goes there; the
    // login page, which goes to a browser (or `$BROWSER`), is then a web
    // page, never `file:`, `smb:` or a custom scheme a local application
    // handles.
    require_https(&metadata)?;
    let metadata = crate::issuer::confirm(server_url, metadata).await?;
    let preregistered_here = opts
        .client_issuer
        .as_deref()
        .zip(metadata.issuer.as_deref())
        .is_some_and(|(bound, issuer)| same_issuer(bound, issuer));
    if !advertises_s256(&metadata) && !preregistered_here && !fallback {
        return Err(ClientError::Discovery(
            "the authorization server does not list S256 in code_challenge_methods_supported: \
             without it PKCE cannot be relied on, and the MCP spec forbids going on (a \
             pre-registered client bound to it with --issuer may go on)"
                .into(),
        ));
    }
    // DPoP when asked for and offered: the token request carries a proof
    // of the server's key, and the token comes back bound to it.
    // The resource must take bound tokens too, or the token would be
    // refused there.
    let resource_dpop = http.is_some()
        && supports_es256(&metadata.additional_fields)
        && resource_accepts_dpop(server_url, &challenge).await;
    let dpop = match &http {
        Some(http) if resource_dpop => {
            let key = dpop_key(server_url, opts.persist)?;
            enable_dpop(http, &metadata.token_endpoint, &key)?;
            Some(key)
        }
        Some(_) => {
            tracing::debug!(
                "the authorization server does not offer DPoP with ES256, or the MCP server \
                 does not take DPoP-bound tokens: Bearer tokens"
            );
            None
        }
        None => None,
    };
    let issuer = metadata.issuer.clone();
    let issuer_check = IssuerCheck::from_metadata(&metadata);
    let cimd = opts.client_metadata_url.is_some()
        && metadata
            .additional_fields
            .get("client_id_metadata_document_supported")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
    let can_register = metadata.registration_endpoint.is_some();
    m.set_metadata(metadata);

    // Scopes: see `OAuthOptions::scopes`.
    let mut scopes = opts.scopes_to_request(&held);
    if scopes.is_empty() {
        scopes = m.select_initial_scopes(&[]).await;
    }

    // The client, in the spec's order: pre-registered (for this issuer),
    // CIMD, then dynamic registration, reusing a stored one.
    let preregistered = opts.preregistered_client(issuer.as_deref());
    let registrations = (opts.persist && preregistered.is_none() && !cimd && can_register)
        .then(RegistrationStore::for_user)
        .transpose()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .zip(issuer.clone());
    let stored = registrations.as_ref().and_then(|(r, i)| r.load(i));
    let callback = bind_callback(
        opts.callback_port,
        stored.as_ref().and_then(Registration::callback_port),
    )
    .await?;
    let redirect_uri = callback.redirect_uri();
    let mut request = AuthorizationRequest::new(redirect_uri.clone())
        .with_challenge(challenge.clone())
        .with_client_name("mcp-auth-client")
        .with_initial_scope_selection();
    if !scopes.is_empty() {
        request = request.with_scopes(scopes.iter().cloned());
    }
    // The registration this login reuses, to forget if it is refused.
    let mut reused: Option<(RegistrationStore, String)> = None;
    if let Some((id, secret)) = preregistered {
        request = request.with_preregistered_client(id);
        if let Some(secret) = secret {
            request = request.with_client_secret(secret);
        }
    } else if let Some((store, issuer)) = registrations {
        let registration = match stored.filter(|r| r.redirect_uri == redirect_uri) {
            Some(r) => {
                tracing::debug!(issuer = %issuer, client_id = %r.client_id, "reusing the stored client registration");
                reused = Some((store, issuer));
                r
            }
            None => {
                // Registered without `scope`, so that an authorization
                // server that binds a client to its registered scopes
                // still lets a later login step up.
                let config = m
                    .register_client("mcp-auth-client", &redirect_uri, &[])
                    .await
                    .map_err(|e| {
                        ClientError::Authorization(format!("dynamic registration: {e}"))
                    })?;
                let r = Registration::new(
                    issuer,
                    config.client_id,
                    config.client_secret,
                    redirect_uri.clone(),
                );
                if let Err(e) = store.save(&r) {
                    tracing::warn!(error = %e, "cannot store the client registration");
                }
                tracing::debug!(client_id = %r.client_id, "registered a client");
                r
            }
        };
        request = request.with_preregistered_client(registration.client_id);
        if let Some(secret) = registration.client_secret {
            request = request.with_client_secret(secret);
        }
    } else if let Some(url) = &opts.client_metadata_url {
        request = request.with_client_metadata_url(url.clone());
    }
    let forget = |reused: &Option<(RegistrationStore, String)>| {
        if let Some((store, issuer)) = reused {
            tracing::info!(issuer = %issuer, "the authorization server refused the stored client registration; forgetting it");
            if let Err(e) = store.remove(issuer) {
                tracing::warn!(error = %e, "cannot remove the stored client registration");
            }
        }
    };

    let callback = callback.with_issuer_check(issuer_check);
    let session = AuthorizationSession::new(m, request)
        .await
        .map_err(|(_, e)| ClientError::Authorization(e.to_string()))?;
    let url = session.get_authorization_url().to_owned();
    let mut state = OAuthState::Session(session);
    let parsed = url::Url::parse(&url).map_err(|e| {
        ClientError::Authorization(format!("the authorization URL is not a URL: {e}"))
    })?;
    let expected = parsed
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ClientError::Authorization("the authorization URL has no state".into()))?;
    let requested: Vec<String> = parsed
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    tracing::debug!(scopes = %requested.join(" "), "asking for scopes");
    if opts.headless {
        let redirect = callback.redirect_uri();
        let server = server_url.to_owned();
        tokio::spawn(async move {
            if let Err(e) = follow(&url, &redirect, &server).await {
                tracing::warn!(error = %e, "headless authorization did not reach the callback");
            }
        });
    } else {
        eprintln!("Log in at:\n  {url}");
        if opts.open_browser && !open_browser(&url) {
            eprintln!("(no browser could be started: open the URL yourself)");
        }
    }
    // Checks the error, `state`, `iss` and the code; a refused redirect's
    // page says why. The browser then waits for the token exchange's outcome.
    let redirect = match callback.receive(&expected, opts.timeout).await {
        Ok(r) => r,
        Err(e) => {
            if let CallbackError::Refused(reason) = &e
                && (reason.starts_with("invalid_client")
                    || reason.starts_with("unauthorized_client"))
            {
                forget(&reused);
            }
            return Err(ClientError::Login(e.to_string()));
        }
    };
    // rmcp checks state and `iss` again, exchanges the code (with PKCE and
    // `resource`), and moves to the authorized state.
    if let Err(e) = state.handle_callback_url(redirect.url()).await {
        redirect.failed("the authorization code could not be exchanged for tokens");
        let text = e.to_string();
        if text.contains("invalid_client") || text.contains("unauthorized_client") {
            forget(&reused);
        }
        return Err(ClientError::Token(text));
    }
    redirect.succeeded();
    let m = state
        .into_authorization_manager()
        .ok_or_else(|| ClientError::Token("no authorization state after login".into()))?;
    let granted = m.get_current_scopes().await;
    let client = with_manager(server_url, m, opts.wire, dpop).await?;
    Ok((client, union(&requested, &granted)))
}

/// Refuses authorization server metadata whose issuer or endpoint
/// (authorization, token, registration) is not `https://`: the MCP
/// authorization spec requires https for every authorization server
/// endpoint. Plain `http://` is allowed on a loopback host only, the rule
/// token requests follow ([`crate::client_credentials`]). The error names
/// the endpoint and its host.
fn require_https(metadata: &AuthorizationMetadata) -> Result<(), ClientError> {
    let endpoints = [
        ("issuer", metadata.issuer.as_deref()),
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint.as_str()),
        ),
        ("token_endpoint", Some(metadata.token_endpoint.as_str())),
        (
            "registration_endpoint",
            metadata.registration_endpoint.as_deref(),
        ),
    ];
    for (name, value) in endpoints {
        let Some(value) = value else {
            continue;
        };
        let refused = |why: String| {
            ClientError::Discovery(format!(
                "the authorization server's {name} {why}: refused (the MCP authorization spec \
                 requires https for every authorization server endpoint)"
            ))
        };
        let url = url::Url::parse(value).map_err(|_| refused("is not an absolute URL".into()))?;
        match (url.scheme(), url.host()) {
            ("https", Some(_)) => {}
            ("http", Some(host)) if crate::grants::is_loopback(&host) => {}
            ("http", Some(host)) => {
                let at = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                };
                return Err(refused(format!(
                    "is plain http:// on {}, not a loopback host",
                    crate::one_line(&at, 120)
                )));
            }
            _ => return Err(refused("is not an https URL".into())),
        }
    }
    Ok(())
}

/// Whether sending a person to `url` to log in exposes the login to the
/// network: plain `http://` to a host that is not loopback (`localhost`,
/// `127.0.0.0/8`, `::1`). Their password, session cookies and the
/// authorization code would travel unencrypted. ([`connect_oauth`] does
/// not warn about such a login page but refuses it, as it refuses any
/// plain-http authorization server endpoint off loopback; this is for
/// callers that drive a login of their own.)
pub fn is_insecure_authorization_url(url: &url::Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            !d.eq_ignore_ascii_case("localhost")
        }
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        None => true,
    }
}

/// The warning to print before sending a person to `url`, when
/// [`is_insecure_authorization_url`]; it names the host.
pub fn insecure_authorization_warning(url: &url::Url) -> Option<String> {
    if !is_insecure_authorization_url(url) {
        return None;
    }
    let host = url.host_str().unwrap_or("(no host)");
    Some(format!(
        "WARNING: the login page at {host} is plain http://, not https://: your password and \
         the authorization code would cross the network unencrypted. Continue only if you \
         trust every network between you and {host}."
    ))
}

/// Follows redirects from the authorization URL until the callback,
/// without a browser: each host gets its own cookies back, each request
/// has 30 s, and no hop but the callback may go where the OAuth requests
/// of `server_url` could not (a link-local or reserved address).
async fn follow(start: &str, redirect_uri: &str, server_url: &str) -> Result<(), String> {
    // Only where discovery for this MCP server may go (but the loopback
    // callback), within a time limit, each host with its own cookies.
    let policy = SharedPolicy::for_server(server_url)?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .dns_resolver(policy.resolver())
        .build()
        .map_err(|e| e.to_string())?;
    let mut cookies: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut url = url::Url::parse(start).map_err(|e| e.to_string())?;
    for _ in 0..20 {
        let callback = url.as_str().starts_with(redirect_uri);
        if !callback && !policy.allows_url(&url) {
            return Err(format!(
                "the login redirected to {}, an address not allowed for this MCP server",
                url.host_str().unwrap_or("(no host)")
            ));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let jar = cookies.entry(host).or_default();
        let cookie = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = client.get(url.clone());
        if !cookie.is_empty() {
            req = req.header(http::header::COOKIE, cookie);
        }
        let r = req.send().await.map_err(|e| e.without_url().to_string())?;
        for v in r.headers().get_all(http::header::SET_COOKIE) {
            if let Some((k, v)) = v
                .to_str()
                .ok()
                .and_then(|s| s.split(';').next()?.split_once('='))
            {
                jar.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        if callback {
            return Ok(());
        }
        let Some(loc) = r
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(format!("stopped at HTTP {} without a redirect", r.status()));
        };
        url = url.join(loc).map_err(|e| e.to_string())?;
    }
    Err("too many redirects".into())
}

/// The `WWW-Authenticate` challenge behind an MCP operation's error, when
/// the server answered 401 or 403 mid-session.
pub fn auth_challenge(error: &rmcp::service::ServiceError) -> Option<String> {
    use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
    let rmcp::service::ServiceError::TransportSend(transport) = error else {
        return None;
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(transport);
    while let Some(e) = current {
        if let Some(a) = e.downcast_ref::<AuthRequiredError>() {
            return Some(a.www_authenticate_header.clone());
        }
        if let Some(i) = e.downcast_ref::<InsufficientScopeError>() {
            return Some(i.www_authenticate_header.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A server that takes the connection and never answers is given up on
    /// at the start's limit, on either wire (an attack pass: the client
    /// waited forever).
    #[tokio::test]
    async fn a_silent_server_is_given_up_on() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", silent.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        for wire in [Wire::Auto, Wire::Session] {
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            let started = tokio::time::timeout(
                Duration::from_secs(10),
                start_within(
                    mcp_http(),
                    config,
                    Presented::Nothing,
                    wire,
                    Duration::from_millis(300),
                ),
            )
            .await
            .expect("given up on within the limit");
            let Err(e) = started else {
                panic!("{wire:?}: a client from a silent server")
            };
            let e = e.to_string();
            assert!(e.contains("did not answer within"), "{wire:?}: {e}");
        }
    }

    /// The headless login stops before a hop the MCP server's OAuth
    /// requests could not make (0.0.0.0 here, which Linux connects to this
    /// host): nothing connects there.
    #[tokio::test]
    async fn headless_follow_stops_at_addresses_discovery_may_not_reach() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((_socket, _)) = target.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        let login = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let start = format!("http://{}/authorize", login.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/authorize",
            axum::routing::get(move || async move {
                axum::response::Redirect::to(&format!("http://0.0.0.0:{port}/next"))
            }),
        );
        tokio::spawn(async move { axum::serve(login, app).await.unwrap() });
        let e = follow(
            &start,
            "http://127.0.0.1:1/callback",
            "http://127.0.0.1:9/mcp",
        )
        .await
        .unwrap_err();
        assert!(e.contains("not allowed"), "{e}");
        assert_eq!(connections.load(Ordering::SeqCst), 0);
    }

    fn insecure(u: &str) -> bool {
        is_insecure_authorization_url(&url::Url::parse(u).unwrap())
    }

    #[test]
    fn plain_http_is_insecure_unless_loopback() {
        for u in [
            "http://as.example/authorize",
            "http://as.example:8080/authorize?state=x",
            "http://10.0.0.5/authorize",
            "http://192.168.1.10/authorize",
            "http://[2001:db8::1]/authorize",
            "http://localhost.evil.example/authorize",
            "http://128.0.0.1/authorize",
        ] {
            assert!(insecure(u), "{u}");
        }
        for u in [
            "https://as.example/authorize",
            "https://10.0.0.5/authorize",
            "http://localhost/authorize",
            "http://LOCALHOST:9000/authorize",
            "http://localhost./authorize",
            "http://127.0.0.1:8080/authorize",
            "http://127.1.2.3/authorize",
            "http://[::1]:8080/authorize",
            "http://[::ffff:127.0.0.1]/authorize",
        ] {
            assert!(!insecure(u), "{u}");
        }
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    /// `Debug` of the options and of every `Auth` shows no secret, key or
    /// token (they end up in logs: `perform`'s `?f.error`, `-v`).
    #[test]
    fn debug_shows_no_secret() {
        let opts = OAuthOptions {
            client_id: Some("app-id".into()),
            client_secret: Some("oauth-secret-value".into()),
            client_issuer: Some("https://as.example".into()),
            ..OAuthOptions::default()
        };
        let shown = format!("{opts:?}");
        assert!(!shown.contains("oauth-secret-value"), "{shown}");
        assert!(
            shown.contains("app-id") && shown.contains("<redacted>"),
            "{shown}"
        );
        for auth in [
            Auth::ApiKey("api-key-value".into()),
            Auth::Bearer("bearer-token-value".into()),
            Auth::OAuth(opts.clone()),
            Auth::Machine(Box::new(crate::MachineOptions::new(
                crate::Grant::ClientCredentials(crate::MachineClient::secret(
                    "bot",
                    "machine-secret-value",
                )),
            ))),
        ] {
            let shown = format!("{auth:?} {auth:#?}");
            for secret in [
                "api-key-value",
                "bearer-token-value",
                "oauth-secret-value",
                "machine-secret-value",
            ] {
                assert!(!shown.contains(secret), "{shown}");
            }
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert_eq!(format!("{:?}", Auth::None), "None");
    }

    /// A loopback port that counts the connections made to it (and
    /// answers none).
    pub(crate) async fn connection_counter() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((_socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        (url, connections)
    }

    /// A client secret without the issuer it belongs to is refused before
    /// anything is sent (a hostile MCP server could otherwise name its own
    /// authorization server and be sent it), naming the option and the
    /// flag; a public client needs no issuer.
    #[tokio::test]
    async fn a_secret_without_its_issuer_is_refused_before_any_request() {
        use std::sync::atomic::Ordering;
        let (url, connections) = connection_counter().await;
        let opts = OAuthOptions {
            client_id: Some("app".into()),
            client_secret: Some("secret".into()),
            persist: false,
            ..OAuthOptions::default()
        };
        let Err(e) = connect_oauth(&url, &opts).await else {
            panic!("connected");
        };
        assert!(matches!(e, ClientError::Config(_)), "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains("client_issuer") && shown.contains("--issuer"),
            "{shown}"
        );
        assert_eq!(connections.load(Ordering::SeqCst), 0, "a request was made");
        assert_eq!(opts.preregistered_client(Some("http://127.0.0.1:9")), None);
        // A public client goes on (to the server, which hangs up).
        let public = OAuthOptions {
            client_secret: None,
            ..opts
        };
        assert_eq!(
            public.preregistered_client(Some("http://127.0.0.1:9")),
            Some(("app", None))
        );
        let Err(e) = connect_oauth(&url, &public).await else {
            panic!("connected");
        };
        assert!(matches!(e, ClientError::Server(_)), "{e}");
        assert!(connections.load(Ordering::SeqCst) > 0);
    }

    /// A probe that the server accepts and never answers (or answers with
    /// a body that never ends) fails within its time limit instead of
    /// hanging, on either wire.
    #[tokio::test]
    async fn a_probe_that_gets_no_answer_times_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Accepts, never answers, keeps the connections open.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = format!("http://{}/mcp", silent.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        // Answers 400 with a body that never ends.
        let stalling = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stalling_url = format!("http://{}/mcp", stalling.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = stalling.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                          content-length: 1000\r\n\r\n{\"jsonrpc\":",
                    )
                    .await;
                held.push(socket);
            }
        });
        let limit = Duration::from_millis(300);
        for (url, wire) in [
            (&silent_url, Wire::Auto),
            (&silent_url, Wire::Session),
            (&stalling_url, Wire::Stateless),
        ] {
            let started = std::time::Instant::now();
            let outcome =
                tokio::time::timeout(Duration::from_secs(10), probe_within(url, wire, limit)).await;
            let Ok(result) = outcome else {
                panic!("the probe of {url} ({wire:?}) hung");
            };
            let e = result.unwrap_err();
            assert!(matches!(e, ClientError::Server(_)), "{e}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        }
    }

    /// The MCP authorization spec: every authorization server endpoint is
    /// https; plain http only on a loopback host. The error names the
    /// endpoint and its host.
    #[test]
    fn authorization_server_endpoints_must_be_https_off_loopback() {
        let metadata = |patch: serde_json::Value| {
            let mut m = serde_json::json!({
                "issuer": "https://as.example",
                "authorization_endpoint": "https://as.example/authorize",
                "token_endpoint": "https://as.example/token",
                "registration_endpoint": "https://as.example/register",
            });
            if let (Some(m), Some(p)) = (m.as_object_mut(), patch.as_object()) {
                for (k, v) in p {
                    m.insert(k.clone(), v.clone());
                }
            }
            serde_json::from_value::<AuthorizationMetadata>(m).unwrap()
        };
        assert!(require_https(&metadata(serde_json::json!({}))).is_ok());
        for loopback in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:8080/x",
        ] {
            for name in [
                "issuer",
                "authorization_endpoint",
                "token_endpoint",
                "registration_endpoint",
            ] {
                let m = metadata(serde_json::json!({ name: loopback }));
                assert!(require_https(&m).is_ok(), "{name} {loopback}");
            }
        }
        for name in [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
        ] {
            let m = metadata(serde_json::json!({ name: "http://as.example:8080/x?q=1" }));
            let e = require_https(&m).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{name} is plain http:// on as.example:8080")),
                "{e}"
            );
            assert!(!e.contains("q=1"), "{e}");
            for other in ["file:///etc/passwd", "custom-app://login", "/relative"] {
                let m = metadata(serde_json::json!({ name: other }));
                let e = require_https(&m).unwrap_err().to_string();
                assert!(e.contains(name), "{e}");
            }
        }
    }

    /// Issue #20: a client id bound to an issuer goes to that issuer only;
    /// an unbound one (`--client-id`) to any, when it has no secret.
    #[test]
    fn a_bound_client_goes_to_its_issuer_only() {
        let cognito = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool";
        let opts = OAuthOptions {
            client_id: Some("app".into()),
            client_secret: Some("secret".into()),
            client_issuer: Some(cognito.into()),
            ..OAuthOptions::default()
        };
        assert_eq!(
            opts.preregistered_client(Some(cognito)),
            Some(("app", Some("secret")))
        );
        assert_eq!(
            opts.preregistered_client(Some(&format!("{cognito}/"))),
            Some(("app", Some("secret")))
        );
        assert_eq!(opts.preregistered_client(Some("http://127.0.0.1:9")), None);
        assert_eq!(
            opts.preregistered_client(Some(
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"
            )),
            None
        );
        assert_eq!(opts.preregistered_client(None), None);
        // Unbound: a public client goes to any issuer, a secret nowhere.
        let any = OAuthOptions {
            client_issuer: None,
            client_secret: None,
            ..opts.clone()
        };
        assert_eq!(
            any.preregistered_client(Some("http://127.0.0.1:9")),
            Some(("app", None))
        );
        let unbound_secret = OAuthOptions {
            client_issuer: None,
            ..opts
        };
        assert_eq!(
            unbound_secret.preregistered_client(Some("http://127.0.0.1:9")),
            None
        );
        assert_eq!(
            OAuthOptions::default().preregistered_client(Some("x")),
            None
        );
    }

    /// Issue #20: a login for a mid-session challenge keeps what is held
    /// and given, and adds the challenge's scopes; a first login asks for
    /// the given scopes only (none: the spec's order after discovery).
    #[test]
    fn step_up_scopes_are_a_union() {
        let step_up = OAuthOptions {
            scopes: strings(&["mcp:tools"]),
            challenge: Some(r#"Bearer error="insufficient_scope", scope="mcp:admin""#.into()),
            ..OAuthOptions::default()
        };
        assert_eq!(
            step_up.scopes_to_request(&strings(&["offline_access", "mcp:tools"])),
            strings(&["offline_access", "mcp:tools", "mcp:admin"])
        );
        assert_eq!(
            step_up.scopes_to_request(&[]),
            strings(&["mcp:tools", "mcp:admin"])
        );
        let first = OAuthOptions {
            scopes: strings(&["mcp:tools"]),
            ..OAuthOptions::default()
        };
        assert_eq!(
            first.scopes_to_request(&strings(&["x"])),
            strings(&["mcp:tools"])
        );
        assert!(OAuthOptions::default().scopes_to_request(&[]).is_empty());
    }

    #[test]
    fn the_warning_names_the_host() {
        let u = url::Url::parse("http://as.example:8080/authorize?state=s").unwrap();
        let w = insecure_authorization_warning(&u).unwrap();
        assert!(w.contains("as.example"), "{w}");
        assert!(w.contains("http://") && w.contains("unencrypted"), "{w}");
        assert!(!w.contains("state=s"), "the URL's query stays out: {w}");
        let u = url::Url::parse("https://as.example/authorize").unwrap();
        assert_eq!(insecure_authorization_warning(&u), None);
        let u = url::Url::parse("http://127.0.0.1:9/authorize").unwrap();
        assert_eq!(insecure_authorization_warning(&u), None);
    }
}
