//! [`connect`]: an rmcp client session with the right credentials.

use std::{collections::HashMap, time::Duration};

use http::{HeaderName, HeaderValue};
use rmcp::{
    RoleClient, ServiceExt,
    service::RunningService,
    transport::{
        StreamableHttpClientTransport,
        auth::{
            AuthClient, AuthorizationManager, AuthorizationRequest, AuthorizationSession,
            OAuthState,
        },
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

use crate::{CallbackServer, FileCredentialStore, IssuerCheck, open_browser};

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// `X-API-Key`.
    ApiKey(String),
    /// `Authorization: Bearer` with a token obtained elsewhere.
    Bearer(String),
    /// OAuth 2.1 with whatever the server's authorization server supports.
    OAuth(OAuthOptions),
}

/// OAuth settings.
#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// A pre-registered client (Cognito: the only option); tried first.
    pub client_id: Option<String>,
    /// Its secret, for confidential clients.
    pub client_secret: Option<String>,
    /// A client ID metadata document URL (CIMD), tried when the server
    /// advertises support; else dynamic registration.
    pub client_metadata_url: Option<String>,
    /// Scopes to ask for; default: the challenge's, else the metadata's.
    pub scopes: Vec<String>,
    /// Loopback callback port (default 3030; 0 = any).
    pub callback_port: u16,
    /// Open a browser (else only print the URL).
    pub open_browser: bool,
    /// Follow the authorization redirects in-process instead of a browser
    /// (for authorization servers that approve without a person, e.g. the
    /// conformance suite).
    pub headless: bool,
    /// Keep tokens in the per-server file store (default true).
    pub persist: bool,
    /// How long to wait for the login.
    pub timeout: Duration,
    /// A challenge the server already sent (a 401 or a 403
    /// `insufficient_scope` mid-session): log in for it now, without
    /// reusing stored tokens.
    pub challenge: Option<String>,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            scopes: Vec::new(),
            callback_port: 3030,
            open_browser: true,
            headless: false,
            persist: true,
            timeout: Duration::from_secs(300),
            challenge: None,
        }
    }
}

/// A step of connecting failed. `Display` says which step and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached or answered unexpectedly.
    #[error("contacting the server: {0}")]
    Server(String),
    /// The server wants credentials the options do not provide.
    #[error("the server requires authentication: {0}")]
    AuthRequired(String),
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
}

type Client = RunningService<RoleClient, ()>;

/// Connects to `server_url` and initializes an MCP session.
pub async fn connect(server_url: &str, auth: Auth) -> Result<Client, ClientError> {
    match auth {
        Auth::None => plain(server_url, HashMap::new()).await,
        Auth::ApiKey(k) => {
            let v = HeaderValue::from_str(&k).map_err(|_| {
                ClientError::AuthRequired("the API key is not a valid header value".into())
            })?;
            plain(
                server_url,
                HashMap::from([(HeaderName::from_static("x-api-key"), v)]),
            )
            .await
        }
        Auth::Bearer(t) => {
            let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                ClientError::AuthRequired("the token is not a valid header value".into())
            })?;
            plain(
                server_url,
                HashMap::from([(http::header::AUTHORIZATION, v)]),
            )
            .await
        }
        Auth::OAuth(opts) => oauth(server_url, &opts).await,
    }
}

async fn plain(
    server_url: &str,
    headers: HashMap<HeaderName, HeaderValue>,
) -> Result<Client, ClientError> {
    let config = StreamableHttpClientTransportConfig::with_uri(server_url).custom_headers(headers);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| ClientError::Mcp(e.to_string()))
}

/// POSTs an `initialize` without credentials: `None` if the server lets
/// us in, else its `WWW-Authenticate` challenge.
async fn probe(server_url: &str) -> Result<Option<String>, ClientError> {
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-auth-client","version":"0"}}}"#;
    let r = reqwest::Client::new()
        .post(server_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| ClientError::Server(e.without_url().to_string()))?;
    if r.status().is_success() {
        return Ok(None);
    }
    let challenge = r
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.len() >= 6 && c[..6].eq_ignore_ascii_case("bearer"))
        .map(str::to_owned);
    match (r.status().as_u16(), challenge) {
        (401 | 403, Some(c)) => Ok(Some(c)),
        (401, None) => Err(ClientError::AuthRequired(
            "no Bearer challenge (try --api-key or --bearer)".into(),
        )),
        (status, _) => Err(ClientError::Server(format!(
            "initialize answered HTTP {status}"
        ))),
    }
}

async fn manager(
    server_url: &str,
    opts: &OAuthOptions,
) -> Result<AuthorizationManager, ClientError> {
    let mut m = AuthorizationManager::new(server_url)
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?;
    if opts.persist {
        m.set_credential_store(FileCredentialStore::for_server(server_url));
    }
    Ok(m)
}

async fn with_manager(server_url: &str, m: AuthorizationManager) -> Result<Client, ClientError> {
    let client = AuthClient::new(reqwest::Client::new(), m);
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(server_url),
    );
    ().serve(transport)
        .await
        .map_err(|e| ClientError::Mcp(e.to_string()))
}

async fn oauth(server_url: &str, opts: &OAuthOptions) -> Result<Client, ClientError> {
    // Tokens from an earlier run (refreshed by rmcp when expired).
    if opts.persist && opts.challenge.is_none() {
        let mut m = manager(server_url, opts).await?;
        if m.initialize_from_store().await.unwrap_or(false) {
            match with_manager(server_url, m).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::info!(error = %e, "stored tokens did not work; logging in again")
                }
            }
        }
    }
    let challenge = match &opts.challenge {
        Some(c) => c.clone(),
        None => match probe(server_url).await? {
            Some(c) => c,
            None => return plain(server_url, HashMap::new()).await,
        },
    };
    let callback = CallbackServer::bind(opts.callback_port)
        .await
        .map_err(|e| {
            ClientError::Login(format!(
                "cannot listen for the redirect on 127.0.0.1:{}: {e}",
                opts.callback_port
            ))
        })?;
    let mut request = AuthorizationRequest::new(callback.redirect_uri())
        .with_challenge(challenge.clone())
        .with_client_name("mcp-auth-client");
    if let Some(id) = &opts.client_id {
        request = request.with_preregistered_client(id.clone());
        if let Some(secret) = &opts.client_secret {
            request = request.with_client_secret(secret.clone());
        }
    }
    if let Some(url) = &opts.client_metadata_url {
        request = request.with_client_metadata_url(url.clone());
    }
    if !opts.scopes.is_empty() {
        request = request.with_scopes(opts.scopes.iter().cloned());
    }
    // What `OAuthState::start_authorization` does (discovery from the
    // challenge, then the session: registration and the authorization URL),
    // keeping the metadata's issuer so the callback page can check `iss`.
    let mut m = manager(server_url, opts).await?;
    let metadata = m
        .resolve_metadata_from_challenge(Some(&challenge))
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?
        .metadata;
    let callback = callback.with_issuer_check(IssuerCheck::from_metadata(&metadata));
    m.set_metadata(metadata);
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
    if let Some(warning) = insecure_authorization_warning(&parsed) {
        tracing::warn!(
            host = parsed.host_str().unwrap_or_default(),
            "the authorization endpoint is plain http on a non-loopback host"
        );
        eprintln!("{warning}");
    }
    if opts.headless {
        let redirect = callback.redirect_uri();
        tokio::spawn(async move {
            if let Err(e) = follow(&url, &redirect).await {
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
    let redirect = callback
        .receive(&expected, opts.timeout)
        .await
        .map_err(|e| ClientError::Login(e.to_string()))?;
    // rmcp checks state and `iss` again, exchanges the code (with PKCE and
    // `resource`), and moves to the authorized state.
    if let Err(e) = state.handle_callback_url(redirect.url()).await {
        redirect.failed("the authorization code could not be exchanged for tokens");
        return Err(ClientError::Token(e.to_string()));
    }
    redirect.succeeded();
    let m = state
        .into_authorization_manager()
        .ok_or_else(|| ClientError::Token("no authorization state after login".into()))?;
    with_manager(server_url, m).await
}

/// Whether sending a person to `url` to log in exposes the login to the
/// network: plain `http://` to a host that is not loopback (`localhost`,
/// `127.0.0.0/8`, `::1`). Their password, session cookies and the
/// authorization code would travel unencrypted.
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
/// keeping cookies, without a browser.
async fn follow(start: &str, redirect_uri: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut url = url::Url::parse(start).map_err(|e| e.to_string())?;
    for _ in 0..20 {
        let cookie = cookies
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
                cookies.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        if url.as_str().starts_with(redirect_uri) {
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
mod tests {
    use super::*;

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
