//! [`HttpConfig`]: everything the HTTP stack needs, readable from the seeds'
//! environment variables.
//!
//! ```
//! use std::collections::HashMap;
//! use mcp_auth_transport::HttpConfig;
//!
//! let vars = HashMap::from([
//!     ("HTTP_MAX_REQUEST_SIZE".to_owned(), "64kb".to_owned()),
//!     ("HTTP_ALLOWED_HOSTS".to_owned(), "mcp.example.com".to_owned()),
//! ]);
//! let url = url::Url::parse("https://mcp.example.com/mcp").unwrap();
//! let cfg = HttpConfig::from_settings(&vars, url).unwrap();
//! assert_eq!(cfg.max_request_bytes, 64 * 1024);
//! assert!(cfg.hosts.allows("mcp.example.com"));
//! assert!(!cfg.hosts.allows("localhost"), "an explicit list replaces the defaults");
//! ```

use std::time::Duration;

use mcp_auth_core::settings::{
    ConfigError, Lookup, parse_bool, parse_list, parse_millis, parse_nonempty_list, parse_size,
};
use url::Url;

use mcp_auth_session::{SessionLimits, SessionPolicy};

use crate::{HostRule, OriginRule, RateLimitConfig, ServeOptions, ToolScopes, guard::OriginEntry};

/// Default request body limit: 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;
/// Default request timeout: 5 minutes (the seed's value).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// CORS settings (`HTTP_ENABLE_CORS`, `HTTP_CORS_*`). Allowed origins are the
/// same as [`HttpConfig::origins`]: a browser origin that may not call the
/// server is not told it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Whether CORS headers are sent at all.
    pub enabled: bool,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Whether credentials (cookies) are allowed.
    pub credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            methods: ["GET", "POST", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            headers: [
                "Content-Type",
                "Authorization",
                "X-API-Key",
                "Mcp-Session-Id",
                "MCP-Protocol-Version",
                "Mcp-Method",
                "Mcp-Name",
                "Last-Event-ID",
                "DPoP",
            ]
            .map(String::from)
            .to_vec(),
            credentials: false,
        }
    }
}

/// Settings of the HTTP stack built by [`McpHttpApp`](crate::McpHttpApp).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The canonical URL of the MCP endpoint (`MCP_SERVER_URL`): the RFC 9728
    /// `resource`, and the default for where the endpoint is mounted.
    pub server_url: Url,
    /// The path the MCP service is mounted at: exactly the path of
    /// `server_url`, so the advertised `resource` is the URL clients call.
    pub mcp_path: String,
    /// Accepted `Host` values (`HTTP_ALLOWED_HOSTS`).
    pub hosts: HostRule,
    /// Accepted `Origin` values (`HTTP_ALLOWED_ORIGINS`, else `HTTP_CORS_ORIGINS`).
    pub origins: OriginRule,
    /// CORS.
    pub cors: CorsConfig,
    /// Largest accepted request body (`HTTP_MAX_REQUEST_SIZE`).
    pub max_request_bytes: usize,
    /// Time allowed until a response starts (`HTTP_REQUEST_TIMEOUT`, ms).
    pub request_timeout: Duration,
    /// Scopes every request needs (`MCP_OAUTH_REQUIRED_SCOPES`).
    pub required_scopes: Vec<String>,
    /// `resource_name` in protected-resource metadata.
    pub resource_name: Option<String>,
    /// Scopes individual tools need (`MCP_TOOL_SCOPES`).
    pub tool_scopes: ToolScopes,
    /// Scopes that imply others (`MCP_SCOPE_IMPLIES`).
    pub scope_hierarchy: crate::ScopeHierarchy,
    /// Who may open and use sessions (`MCP_SESSION_AUTH_*`).
    pub session_policy: SessionPolicy,
    /// Session caps and expiry (`HTTP_MAX_CONCURRENT_SESSIONS`, ...).
    pub session_limits: SessionLimits,
    /// Rate limits (`HTTP_RATE_LIMIT_*`, `HTTP_AUTH_FAILURE_LIMIT`); the
    /// limiters tell clients apart with `connections.trusted_proxies`.
    pub rate_limit: RateLimitConfig,
    /// Keep-alive comment period on idle event streams (`HTTP_SSE_KEEP_ALIVE`, ms; default 15 s).
    pub sse_keep_alive: Duration,
    /// Connection limits for [`serve_with`](crate::serve_with)
    /// (`HTTP_MAX_CONNECTIONS`, `HTTP_MAX_CONNECTIONS_PER_IP`,
    /// `HTTP_IDLE_TIMEOUT`, `HTTP_HEADER_READ_TIMEOUT`,
    /// `HTTP_BODY_READ_TIMEOUT`), and the one list of trusted proxies
    /// (`HTTP_TRUSTED_PROXIES`) the connection caps and the rate limiters
    /// share.
    pub connections: ServeOptions,
    /// `MCP_AUDIT_LOG`: where the audit log goes (a file path, or `stdout`);
    /// `None`: no audit log. The app does not open it: see
    /// [`McpHttpApp::with_audit`](crate::McpHttpApp::with_audit).
    pub audit_log: Option<String>,
    /// `MCP_METRICS_ADDR` / `MCP_METRICS_TOKEN`: where to serve `/metrics`
    /// (a listener of its own); `None`: no metrics endpoint. The app does
    /// not open it: see `McpHttpApp::metrics_router` (feature `prometheus`).
    pub metrics: Option<MetricsEndpoint>,
    /// `MCP_SESSION_PARK_AFTER` (ms; unset or `0`: never, the default): a
    /// session with no request in flight and no open stream for this long
    /// gives up its local rmcp worker, and its next request restores it
    /// from the store (from rmcp's saved `initialize` parameters: a handler
    /// that keeps per-session state of its own starts afresh, so this is
    /// the embedding server's choice; `mcp-auth-server`'s tools keep none,
    /// and it parks after [`DEFAULT_PARK_AFTER`]). Without it, sessions idle
    /// for an eighth of the idle timeout (at most a minute) are still
    /// checked against the store, and the worker of one that ended through
    /// another replica is closed.
    pub park_after: Option<Duration>,
    /// Whether the MCP handler (and so every tool) sees the request's
    /// credentials: `Authorization`, `Proxy-Authorization`, `Cookie`,
    /// `DPoP`, `X-API-Key` and the header of each API-key scheme the
    /// authenticator advertises (a custom check reading a header of its
    /// own names it with `FnAuthenticator::with_scheme(ChallengeScheme::ApiKey
    /// { header })`, and it is taken out too). Off by default: they are taken out of the
    /// request once it is authenticated (tools get the verified
    /// [`Principal`](mcp_auth_core::Principal)), so no tool can pass the
    /// client's token on to another service (the MCP specification forbids
    /// token passthrough) or leak it. Turn on only for a handler that must
    /// present the token itself, such as an RFC 8693 token exchange.
    pub pass_credentials_to_handlers: bool,
}

/// Whether `url` can be the MCP server's URL (`MCP_SERVER_URL`): http or
/// https, with a host, and no query, fragment or user information (it is
/// the RFC 9728 resource identifier, published in the metadata and every
/// challenge). The error names `MCP_SERVER_URL` and shows the URL without
/// its user information, query or fragment.
///
/// ```
/// use mcp_auth_transport::check_server_url;
/// assert!(check_server_url(&"https://mcp.example.com/mcp".parse().unwrap()).is_ok());
/// let err = check_server_url(&"https://u:p@mcp.example.com/mcp".parse().unwrap()).unwrap_err();
/// assert_eq!(err.variable, "MCP_SERVER_URL");
/// assert!(!err.to_string().contains("u:p"));
/// ```
pub fn check_server_url(u: &Url) -> Result<(), ConfigError> {
    // Shown without user information, query or fragment (a key may sit in
    // any of them).
    let mut shown = u.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(ConfigError::new(
            "MCP_SERVER_URL",
            format!(
                "{:?} must be an http:// or https:// URL with a host",
                shown.as_str()
            ),
        ));
    }
    if u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err(ConfigError::new(
            "MCP_SERVER_URL",
            format!(
                "{:?} must not carry a query, fragment or credentials (it is the RFC 9728 resource identifier)",
                shown.as_str()
            ),
        ));
    }
    Ok(())
}

/// How long `mcp-auth-server` lets a session stay idle before it gives up
/// its local worker, unless `MCP_SESSION_PARK_AFTER` says otherwise.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(60);

/// Where `/metrics` is served, and the bearer token a scrape presents.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsEndpoint {
    /// The address to listen on (`MCP_METRICS_ADDR`, e.g. `127.0.0.1:9464`).
    pub addr: std::net::SocketAddr,
    /// `MCP_METRICS_TOKEN`: required unless `addr` is a loopback address.
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl MetricsEndpoint {
    /// Reads `MCP_METRICS_ADDR` and `MCP_METRICS_TOKEN`: `None` without an
    /// address. Refuses a token under 16 characters, a token without an
    /// address, and an address other than loopback without a token
    /// (metrics tell who is refused how often: not for the whole network).
    pub fn from_settings(l: &dyn Lookup) -> Result<Option<Self>, ConfigError> {
        let token = l.get("MCP_METRICS_TOKEN").filter(|t| !t.is_empty());
        if token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "MCP_METRICS_TOKEN",
                "must be at least 16 characters (e.g. openssl rand -hex 32)",
            ));
        }
        let Some(addr) = l.get("MCP_METRICS_ADDR").filter(|a| !a.is_empty()) else {
            if token.is_some() {
                return Err(ConfigError::new(
                    "MCP_METRICS_TOKEN",
                    "is set but MCP_METRICS_ADDR is not: set the address to serve /metrics on",
                ));
            }
            return Ok(None);
        };
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
            ConfigError::new(
                "MCP_METRICS_ADDR",
                format!("{addr:?} is not an address and port like 127.0.0.1:9464"),
            )
        })?;
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(ConfigError::new(
                "MCP_METRICS_ADDR",
                format!(
                    "{addr} is not a loopback address: set MCP_METRICS_TOKEN too, or listen on 127.0.0.1"
                ),
            ));
        }
        Ok(Some(Self { addr, token }))
    }
}

impl HttpConfig {
    /// Safe defaults for `server_url`: loopback hosts plus the server's own
    /// host; the server's origin (plus loopback origins when the server is on
    /// loopback); CORS on for those origins only; 4 MiB bodies; 5 min timeout.
    pub fn new(server_url: Url) -> Self {
        let mcp_path = match server_url.path() {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        Self {
            hosts: default_hosts(&server_url),
            origins: default_origins(&server_url),
            mcp_path,
            server_url,
            cors: CorsConfig::default(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            required_scopes: Vec::new(),
            resource_name: None,
            tool_scopes: ToolScopes::new(),
            scope_hierarchy: crate::ScopeHierarchy::new(),
            session_policy: SessionPolicy::default(),
            session_limits: SessionLimits::default(),
            rate_limit: RateLimitConfig::default(),
            sse_keep_alive: Duration::from_secs(15),
            connections: ServeOptions::default(),
            audit_log: None,
            metrics: None,
            park_after: None,
            pass_credentials_to_handlers: false,
        }
    }

    /// Checks what [`HttpConfig::from_settings`] cannot see when fields are
    /// set from code: the mount path is plain (letters, digits, `-._~%/`),
    /// does not clash with `/health` or `/.well-known/`, and equals the path
    /// of `server_url`; `server_url` is an http(s) URL with a host and no
    /// query, fragment or user information (it is the RFC 9728 resource
    /// identifier, published in the metadata and in every challenge);
    /// credentials are not allowed for every origin.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_server_url(&self.server_url)?;
        let p = &self.mcp_path;
        let plain = p.starts_with('/')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%/".contains(&b))
            && !p.contains("//");
        if !plain {
            return Err(ConfigError::new(
                "MCP_SERVER_URL",
                format!("path {p:?} must be a plain path like /mcp (letters, digits, - . _ ~ %)"),
            ));
        }
        // The server's own routes (the legacy transport's and the login
        // facade's too, whether on or not): mounting over one was a panic
        // at start, not an error naming the setting.
        let own = ["/health", "/ready", "/sse", "/messages", "/oauth"];
        if own.contains(&p.as_str()) || p.starts_with("/.well-known") || p.starts_with("/oauth/") {
            return Err(ConfigError::new(
                "MCP_SERVER_URL",
                format!(
                    "path {p:?} clashes with the server's own routes (/health, /ready, /sse, \
                     /messages, /.well-known/, /oauth/)"
                ),
            ));
        }
        if self.server_url.path() != p {
            return Err(ConfigError::new(
                "MCP_SERVER_URL",
                format!(
                    "the endpoint is mounted at {p:?} but the URL says {:?}; the advertised resource must be the URL clients call",
                    self.server_url.path()
                ),
            ));
        }
        if self.cors.enabled && self.cors.credentials && self.origins == OriginRule::Any {
            return Err(ConfigError::new(
                "HTTP_CORS_CREDENTIALS",
                "cannot be true while any origin is allowed (*): list the origins in HTTP_ALLOWED_ORIGINS",
            ));
        }
        // Browsers do not take `*` as a wildcard in answers with
        // credentials, and tower-http refuses to build such a layer (it
        // was a panic at start).
        if self.cors.enabled && self.cors.credentials {
            for (variable, list) in [
                ("HTTP_CORS_HEADERS", &self.cors.headers),
                ("HTTP_CORS_METHODS", &self.cors.methods),
            ] {
                if list.iter().any(|v| v.trim() == "*") {
                    return Err(ConfigError::new(
                        variable,
                        "cannot hold * while HTTP_CORS_CREDENTIALS is true: list them",
                    ));
                }
            }
        }
        // Any page can send `Origin: null` (a sandboxed frame, a data: URL):
        // with credentials that is `*` again.
        if self.cors.enabled
            && self.cors.credentials
            && matches!(&self.origins, OriginRule::List(l) if l.iter().any(OriginEntry::is_null))
        {
            return Err(ConfigError::new(
                "HTTP_CORS_CREDENTIALS",
                "cannot be true while the opaque origin (null) is allowed: any page can send it; take null out of HTTP_ALLOWED_ORIGINS",
            ));
        }
        Ok(())
    }

    /// Reads the `HTTP_*` variables over [`HttpConfig::new`]'s defaults.
    /// Errors name the variable at fault.
    pub fn from_settings(l: &dyn Lookup, server_url: Url) -> Result<Self, ConfigError> {
        let mut cfg = Self::new(server_url);
        cfg.audit_log = l.get("MCP_AUDIT_LOG");
        cfg.metrics = MetricsEndpoint::from_settings(l)?;
        cfg.park_after = match l.get("MCP_SESSION_PARK_AFTER") {
            None => None,
            Some(v) if v.trim() == "0" => None,
            Some(_) => Some(parse_millis(
                l,
                "MCP_SESSION_PARK_AFTER",
                DEFAULT_PARK_AFTER,
            )?),
        };
        if !parse_bool(l, "HTTP_DNS_REBINDING_PROTECTION", true)? {
            tracing::warn!("HTTP_DNS_REBINDING_PROTECTION=false: Host header validation is off");
            cfg.hosts = HostRule::Any;
        } else if let Some(hosts) = parse_list(l, "HTTP_ALLOWED_HOSTS") {
            if hosts.iter().any(|h| h == "*") {
                tracing::warn!("HTTP_ALLOWED_HOSTS=*: Host header validation is off");
                cfg.hosts = HostRule::Any;
            } else if hosts.is_empty() {
                return Err(ConfigError::new("HTTP_ALLOWED_HOSTS", "the list is empty"));
            } else {
                cfg.hosts = HostRule::parse_list(&hosts)
                    .map_err(|e| ConfigError::new("HTTP_ALLOWED_HOSTS", e))?;
            }
        }
        let origin_var = ["HTTP_ALLOWED_ORIGINS", "HTTP_CORS_ORIGINS"]
            .into_iter()
            .find_map(|name| parse_list(l, name).map(|list| (name, list)));
        if let Some((name, list)) = origin_var {
            cfg.origins =
                OriginRule::list(&list).map_err(|e| ConfigError::new(name, e.to_string()))?;
        }
        cfg.cors.enabled = parse_bool(l, "HTTP_ENABLE_CORS", true)?;
        if let Some(m) = parse_list(l, "HTTP_CORS_METHODS") {
            for method in &m {
                http::Method::from_bytes(method.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        "HTTP_CORS_METHODS",
                        format!("{method:?} is not an HTTP method"),
                    )
                })?;
            }
            cfg.cors.methods = m;
        }
        if let Some(h) = parse_list(l, "HTTP_CORS_HEADERS") {
            for name in &h {
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        "HTTP_CORS_HEADERS",
                        format!("{name:?} is not a header name"),
                    )
                })?;
            }
            cfg.cors.headers = h;
        }
        cfg.cors.credentials = parse_bool(l, "HTTP_CORS_CREDENTIALS", false)?;
        cfg.max_request_bytes = parse_size(l, "HTTP_MAX_REQUEST_SIZE", cfg.max_request_bytes)?;
        cfg.request_timeout = parse_millis(l, "HTTP_REQUEST_TIMEOUT", cfg.request_timeout)?;
        cfg.required_scopes =
            parse_nonempty_list(l, "MCP_OAUTH_REQUIRED_SCOPES")?.unwrap_or_default();
        cfg.tool_scopes = std::mem::take(&mut cfg.tool_scopes).with_settings(l)?;
        if let Some(v) = l.get("MCP_SCOPE_IMPLIES") {
            cfg.scope_hierarchy = crate::ScopeHierarchy::parse(&v)
                .map_err(|e| ConfigError::new("MCP_SCOPE_IMPLIES", e))?;
        }
        cfg.session_policy = SessionPolicy::from_settings(l)?;
        cfg.session_limits = SessionLimits::from_settings(l)?;
        cfg.rate_limit = RateLimitConfig::from_settings(l)?;
        cfg.sse_keep_alive = parse_millis(l, "HTTP_SSE_KEEP_ALIVE", cfg.sse_keep_alive)?;
        cfg.connections = ServeOptions::from_settings(l)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The RFC 9728 metadata URL for this server.
    pub fn resource_metadata_url(&self) -> Url {
        // The server URL is a parsed absolute URL, so the derived one parses.
        Url::parse(&mcp_auth_core::metadata_url_for(self.server_url.as_str()))
            .unwrap_or_else(|_| self.server_url.clone())
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn default_hosts(server_url: &Url) -> HostRule {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
    ];
    if let Some(h) = server_url.host_str() {
        hosts.push(h.to_owned());
    }
    HostRule::list(hosts)
}

fn default_origins(server_url: &Url) -> OriginRule {
    let mut origins = vec![server_url.origin().ascii_serialization()];
    if is_loopback_host(server_url) {
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            origins.push(format!("http://{h}:*"));
            origins.push(format!("https://{h}:*"));
        }
    }
    // Every entry is built from a parsed URL, so parsing cannot fail; fall back
    // to "no browser origins" rather than panic.
    OriginRule::list(&origins).unwrap_or(OriginRule::List(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn defaults_for_a_loopback_server() {
        let cfg = HttpConfig::new(Url::parse("http://127.0.0.1:8001/mcp").unwrap());
        assert_eq!(cfg.mcp_path, "/mcp");
        assert!(cfg.hosts.allows("localhost:8001"));
        assert!(!cfg.hosts.allows("evil.example"));
        assert!(cfg.origins.allows("http://localhost:6274"));
        assert!(!cfg.origins.allows("https://evil.example"));
        assert_eq!(
            cfg.resource_metadata_url().as_str(),
            "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn scope_hierarchies_are_read_and_a_bad_one_is_named() {
        let url = Url::parse("https://mcp.example.com/mcp").unwrap();
        let cfg = HttpConfig::from_settings(
            &vars(&[("MCP_SCOPE_IMPLIES", "mcp:admin=mcp:tools")]),
            url.clone(),
        )
        .unwrap();
        let mut held = vec!["mcp:admin".to_owned()];
        cfg.scope_hierarchy.expand(&mut held);
        assert_eq!(held, ["mcp:admin", "mcp:tools"]);
        for bad in ["mcp:admin", "=mcp:tools", "mcp:admin=", "a b=c"] {
            let e = HttpConfig::from_settings(&vars(&[("MCP_SCOPE_IMPLIES", bad)]), url.clone())
                .unwrap_err();
            assert_eq!(e.variable, "MCP_SCOPE_IMPLIES", "{bad}");
        }
    }

    /// Scopes that are set but name nothing (`MCP_OAUTH_REQUIRED_SCOPES=,`)
    /// are refused, not read as "no scope required".
    #[test]
    fn required_scopes_that_name_nothing_are_refused() {
        let url = Url::parse("http://127.0.0.1:8001/mcp").unwrap();
        let read = |v: &str| {
            HttpConfig::from_settings(&vars(&[("MCP_OAUTH_REQUIRED_SCOPES", v)]), url.clone())
        };
        assert_eq!(read("a, b").unwrap().required_scopes, ["a", "b"]);
        let e = read(" , ").unwrap_err();
        assert_eq!(e.variable, "MCP_OAUTH_REQUIRED_SCOPES");
    }

    #[test]
    fn defaults_for_a_public_server_exclude_loopback_origins() {
        let cfg = HttpConfig::new(Url::parse("https://mcp.example.com/").unwrap());
        assert_eq!(cfg.mcp_path, "/");
        assert!(cfg.hosts.allows("mcp.example.com"));
        assert!(cfg.origins.allows("https://mcp.example.com"));
        assert!(!cfg.origins.allows("http://localhost:3000"));
    }

    #[test]
    fn the_metrics_endpoint_is_loopback_only_without_a_token() {
        let read = |pairs: &[(&str, &str)]| MetricsEndpoint::from_settings(&vars(pairs));
        assert_eq!(read(&[]).unwrap(), None);
        let local = read(&[("MCP_METRICS_ADDR", "127.0.0.1:9464")])
            .unwrap()
            .unwrap();
        assert_eq!(local.addr.port(), 9464);
        assert_eq!(local.token, None);
        let token = "0123456789abcdef0123";
        let public = read(&[
            ("MCP_METRICS_ADDR", "0.0.0.0:9464"),
            ("MCP_METRICS_TOKEN", token),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(public.token.as_deref(), Some(token));
        assert!(
            !format!("{public:?}").contains(token),
            "Debug shows the token"
        );
        for (pairs, at_fault) in [
            (
                &[("MCP_METRICS_ADDR", "0.0.0.0:9464")][..],
                "MCP_METRICS_ADDR",
            ),
            (&[("MCP_METRICS_ADDR", "[::]:9464")][..], "MCP_METRICS_ADDR"),
            (&[("MCP_METRICS_ADDR", "localhost")][..], "MCP_METRICS_ADDR"),
            (&[("MCP_METRICS_TOKEN", token)][..], "MCP_METRICS_TOKEN"),
            (
                &[
                    ("MCP_METRICS_ADDR", "127.0.0.1:9464"),
                    ("MCP_METRICS_TOKEN", "short"),
                ][..],
                "MCP_METRICS_TOKEN",
            ),
        ] {
            let err = read(pairs).unwrap_err();
            assert_eq!(err.variable, at_fault, "{pairs:?}: {err}");
            assert!(!err.to_string().contains(token), "{err}");
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let url = Url::parse("http://127.0.0.1:8001/mcp").unwrap();
        let cases = [
            ("HTTP_MAX_REQUEST_SIZE", "lots"),
            ("HTTP_REQUEST_TIMEOUT", "5s"),
            ("HTTP_ALLOWED_ORIGINS", "example.com"),
            ("HTTP_CORS_ORIGINS", "example.com"),
            ("HTTP_ENABLE_CORS", "perhaps"),
            ("HTTP_CORS_METHODS", "GE T"),
            ("HTTP_CORS_HEADERS", "bad header"),
            ("HTTP_ALLOWED_HOSTS", "host/with/path"),
        ];
        for (name, value) in cases {
            let err = HttpConfig::from_settings(&vars(&[(name, value)]), url.clone()).unwrap_err();
            assert_eq!(err.variable, name, "{err}");
        }
        let err = HttpConfig::from_settings(
            &vars(&[
                ("HTTP_CORS_ORIGINS", "*"),
                ("HTTP_CORS_CREDENTIALS", "true"),
            ]),
            url,
        )
        .unwrap_err();
        assert_eq!(err.variable, "HTTP_CORS_CREDENTIALS");
        // The opaque origin is any page's (a sandboxed frame): not with
        // credentials either; without them, or without null, it is fine.
        let with = |origins: &str, credentials: &str| {
            HttpConfig::from_settings(
                &vars(&[
                    ("HTTP_ALLOWED_ORIGINS", origins),
                    ("HTTP_CORS_CREDENTIALS", credentials),
                ]),
                "http://127.0.0.1:8001/mcp".parse().unwrap(),
            )
        };
        let err = with("https://app.example.com,null", "true").unwrap_err();
        assert_eq!(err.variable, "HTTP_CORS_CREDENTIALS");
        assert!(err.to_string().contains("null"), "{err}");
        assert!(with("https://app.example.com,null", "false").is_ok());
        assert!(with("https://app.example.com", "true").is_ok());
        // `*` headers or methods with credentials: refused naming the list
        // (tower-http panicked building the layer); without, a wildcard.
        for list in ["HTTP_CORS_HEADERS", "HTTP_CORS_METHODS"] {
            let read = |credentials: &str| {
                HttpConfig::from_settings(
                    &vars(&[
                        ("HTTP_ALLOWED_ORIGINS", "https://app.example.com"),
                        ("HTTP_CORS_CREDENTIALS", credentials),
                        (list, "*"),
                    ]),
                    "http://127.0.0.1:8001/mcp".parse().unwrap(),
                )
            };
            assert_eq!(read("true").unwrap_err().variable, list);
            assert!(read("false").is_ok(), "{list}");
        }
    }

    #[test]
    fn mount_paths_that_would_panic_or_clash_are_refused() {
        for url in [
            "http://h/:mcp",
            "http://h/*x",
            "http://h/health",
            "http://h/.well-known/x",
            "http://h/a//b",
            // The server's own routes: each was a panic at start.
            "http://h/ready",
            "http://h/sse",
            "http://h/messages",
            "http://h/oauth/token",
        ] {
            let e = HttpConfig::from_settings(&vars(&[]), Url::parse(url).unwrap()).unwrap_err();
            assert_eq!(e.variable, "MCP_SERVER_URL", "{url}");
        }
        for url in [
            "http://h/",
            "http://h/mcp/",
            "http://h/api/v1/mcp",
            "http://h/oauthx",
        ] {
            let cfg = HttpConfig::from_settings(&vars(&[]), Url::parse(url).unwrap()).unwrap();
            assert_eq!(cfg.mcp_path, Url::parse(url).unwrap().path());
        }
        let mut cfg = HttpConfig::new(Url::parse("http://h/mcp").unwrap());
        cfg.mcp_path = "/other".into();
        assert!(cfg.validate().is_err());
        let mut cfg = HttpConfig::new(Url::parse("http://h/mcp").unwrap());
        cfg.origins = OriginRule::Any;
        cfg.cors.credentials = true;
        assert_eq!(
            cfg.validate().unwrap_err().variable,
            "HTTP_CORS_CREDENTIALS"
        );
    }

    #[test]
    fn allowed_origins_win_over_cors_origins() {
        let url = Url::parse("http://127.0.0.1:8001/mcp").unwrap();
        let cfg = HttpConfig::from_settings(
            &vars(&[
                ("HTTP_ALLOWED_ORIGINS", "https://a.example"),
                ("HTTP_CORS_ORIGINS", "https://b.example"),
                ("HTTP_DNS_REBINDING_PROTECTION", "false"),
            ]),
            url,
        )
        .unwrap();
        assert!(cfg.origins.allows("https://a.example"));
        assert!(!cfg.origins.allows("https://b.example"));
        assert_eq!(cfg.hosts, HostRule::Any);
    }

    /// Set from code, the server URL is held to what the server binary
    /// holds MCP_SERVER_URL to (an embedding review: user information
    /// would have been published in the metadata and every challenge).
    #[test]
    fn a_server_url_set_from_code_is_checked_too() {
        for bad in [
            "https://user:secret@mcp.example.com/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#f",
            "ftp://mcp.example.com/mcp",
            "unix:/run/mcp",
        ] {
            let url: Url = bad.parse().unwrap();
            let mut cfg = HttpConfig::new(url.clone());
            cfg.mcp_path = url.path().to_owned();
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.variable, "MCP_SERVER_URL", "{bad}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        assert!(
            HttpConfig::new("https://mcp.example.com/mcp".parse().unwrap())
                .validate()
                .is_ok()
        );
    }
}
