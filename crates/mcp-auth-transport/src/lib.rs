//! The HTTP side of MCP authentication, over rmcp's streamable HTTP service.
//!
//! ```no_run
//! # #[cfg(feature = "mcp")] mod example {
//! use mcp_auth_strategies::ApiKeyAuthenticator;
//! use mcp_auth_transport::{Caller, HttpConfig, McpHttpApp};
//! use rmcp::{ServerHandler, handler::server::router::tool::ToolRouter, tool, tool_handler, tool_router};
//!
//! #[derive(Clone)]
//! struct Hello { tool_router: ToolRouter<Self> }
//!
//! #[tool_router]
//! impl Hello {
//!     /// The verified caller reaches tools as `Caller`.
//!     #[tool(description = "Greets the caller")]
//!     fn hello(&self, Caller(who): Caller) -> String {
//!         format!("hello {}", who.subject)
//!     }
//! }
//!
//! #[tool_handler(router = self.tool_router)]
//! impl ServerHandler for Hello {}
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! // Safe defaults for this URL (`HttpConfig::from_settings` reads the
//! // seeds' HTTP_* variables instead, when the application means to).
//! let config = HttpConfig::new("http://127.0.0.1:8001/mcp".parse().unwrap());
//! let keys = ApiKeyAuthenticator::from_list("a-long-random-api-key").unwrap();
//! let app = McpHttpApp::new(config, keys).expect("valid config");
//! let router = app.rmcp_router(|| Ok(Hello { tool_router: Hello::tool_router() }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
//! // With the config's connection limits and timeouts.
//! app.serve(listener, router, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }).await
//! # }
//! # }
//! # fn main() {}
//! ```
//!
//! Without the default `mcp` feature the crate is the pieces any axum app
//! can use, with no rmcp and no session store: [`AuthLayer`], [`GuardLayer`]
//! and the hardened accept loop ([`serve`], [`serve_with`]).
//!
//! Pieces, each usable alone around any tower service or axum app:
//! - [`AuthLayer`]: authenticates every request, hands the [`Principal`] on in
//!   the request extensions, answers failures with exact RFC 6750 responses;
//! - [`GuardLayer`]: `Host` allow-list and `Origin` check (403 otherwise);
//! - [`SessionLayer`]: a session belongs to the principal that opened it
//!   (anyone else presenting its id gets 404), with caps and idle expiry, in
//!   a store replicas can share (`mcp-auth-session`);
//! - [`AuthFailureLimitLayer`] / [`RequestRateLimitLayer`]: 429 for key
//!   guessing and for callers over their request budget;
//! - [`HttpConfig`]: the settings, readable from the seeds' `HTTP_*` variables;
//! - [`McpHttpApp`]: all of the above plus CORS, body limit (413), request
//!   timeout (503 + `Retry-After`), `GET /health` and RFC 9728 metadata, in
//!   front of rmcp;
//! - [`ToolScopes`]: per-tool scopes with 403 `insufficient_scope` step-up
//!   challenges, and `tools/list` filtering for a handler's `list_tools`
//!   ([`ToolScopes::visible`]; rmcp's `#[tool_handler]` lists every tool);
//! - [`Caller`] and [`principal_from_parts`]: the principal inside rmcp tools.
//!
//! [`Principal`]: mcp_auth_core::Principal

#[cfg(feature = "mcp")]
mod app;
#[cfg(feature = "mcp")]
pub mod audit;
mod auth;
#[cfg(feature = "mcp")]
mod config;
#[cfg(feature = "mcp")]
mod cors;
mod guard;
#[cfg(feature = "mcp")]
mod message;
mod names;
mod net;
#[cfg(feature = "mcp")]
pub mod observe;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "mcp")]
mod park;
#[cfg(feature = "mcp")]
mod principal;
#[cfg(feature = "mcp")]
mod ratelimit;
mod refusal;
#[cfg(feature = "mcp")]
mod scopes;
mod serve;
#[cfg(feature = "mcp")]
mod sessions;
#[cfg(feature = "mcp")]
mod sse;

#[cfg(feature = "mcp")]
pub use app::McpHttpApp;

/// Whether a JSON-RPC message holds more JSON values than a body within the
/// limit `max_bytes` may on HTTP (one per 64 bytes of the limit, at least
/// 1 024; rmcp holds a message as trees of values, ~230 bytes each): for a
/// transport that frames messages itself, such as stdio's lines.
///
/// ```
/// use mcp_auth_transport::too_many_json_values;
///
/// let zeros = format!("[{}0]", "0,".repeat(70_000));
/// assert!(too_many_json_values(zeros.as_bytes(), 4 << 20));
/// assert!(!too_many_json_values(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, 4 << 20));
/// ```
#[cfg(feature = "mcp")]
pub fn too_many_json_values(message: &[u8], max_bytes: usize) -> bool {
    message::over_values(message, message::max_values(max_bytes))
}
pub use auth::{AuthLayer, AuthRejected, AuthService, ScopeHierarchy};
#[cfg(feature = "mcp")]
pub use config::{
    CorsConfig, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PARK_AFTER, DEFAULT_REQUEST_TIMEOUT, HttpConfig,
    MetricsEndpoint, check_server_url,
};
pub use guard::{BadOrigin, GuardLayer, GuardService, HostRule, OriginEntry, OriginRule};
pub use net::{ForwardedHeader, IpNet, client_ip, client_ip_by, client_network};
#[cfg(feature = "mcp")]
pub use principal::{Caller, principal_from_parts};
#[cfg(feature = "mcp")]
pub use ratelimit::{
    AuthFailureLimitLayer, RateLimitConfig, RateLimitService, RequestRateLimitLayer,
};
#[cfg(feature = "mcp")]
pub use scopes::{ToolScopeLayer, ToolScopeService, ToolScopes};
pub use serve::{ServeOptions, serve, serve_with};
#[cfg(feature = "mcp")]
pub use sessions::{RmcpSessionState, SessionLayer, SessionService};
#[cfg(feature = "mcp")]
pub use sse::{MESSAGES_PATH, SSE_PATH, Transports};
pub use tokio_util::sync::CancellationToken;

/// Every variable this crate reads (`HttpConfig::from_settings`,
/// `ServeOptions::from_settings` and the pieces they are made of).
pub const VARIABLES: &[&str] = &[
    "MCP_AUDIT_LOG",
    "MCP_SESSION_PARK_AFTER",
    "MCP_METRICS_ADDR",
    "MCP_METRICS_TOKEN",
    // OpenTelemetry's own (`otel::layer_from_settings`).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_RESOURCE_ATTRIBUTES",
    "HTTP_ALLOWED_HOSTS",
    "HTTP_DNS_REBINDING_PROTECTION",
    "HTTP_ALLOWED_ORIGINS",
    "HTTP_ENABLE_CORS",
    "HTTP_CORS_ORIGINS",
    "HTTP_CORS_METHODS",
    "HTTP_CORS_HEADERS",
    "HTTP_CORS_CREDENTIALS",
    "HTTP_MAX_REQUEST_SIZE",
    "HTTP_REQUEST_TIMEOUT",
    "MCP_OAUTH_REQUIRED_SCOPES",
    "MCP_TOOL_SCOPES",
    "MCP_SCOPE_IMPLIES",
    "HTTP_RATE_LIMIT_ENABLED",
    "HTTP_RATE_LIMIT_WINDOW",
    "HTTP_RATE_LIMIT_MAX_REQUESTS",
    "HTTP_AUTH_FAILURE_LIMIT",
    "HTTP_TRUSTED_PROXIES",
    "HTTP_FORWARDED_HEADER",
    "HTTP_SSE_KEEP_ALIVE",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_MAX_CONNECTIONS_PER_IP",
    "HTTP_IDLE_TIMEOUT",
    "HTTP_HEADER_READ_TIMEOUT",
    "HTTP_BODY_READ_TIMEOUT",
    // Named in errors about the server URL the caller passes.
    "MCP_SERVER_URL",
];

/// The README's code blocks, compiled as doctests so the README stays true.
#[cfg(all(doctest, feature = "mcp"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Private parsers that see attacker bytes, reachable only from the fuzz
/// targets in `fuzz/` (cargo-fuzz builds with `--cfg fuzzing`). Not API.
#[cfg(all(fuzzing, feature = "mcp"))]
#[doc(hidden)]
pub mod fuzzing {
    /// The tool names a request body calls, or `Err` when ambiguous
    /// (what [`ToolScopeLayer`](crate::ToolScopeLayer) enforces scopes on).
    #[allow(clippy::result_unit_err)]
    pub fn called_tools(body: &[u8]) -> Result<Vec<String>, ()> {
        crate::scopes::called_tools(body)
    }

    /// Whether a request body opens a session (what
    /// [`SessionLayer`](crate::SessionLayer) records an owner for).
    pub fn is_initialize(body: &[u8]) -> bool {
        crate::sessions::is_initialize(body)
    }

    /// The legacy SSE `POST /messages` parsing steps: the query's
    /// `session_id` and the body as a JSON-RPC message.
    #[allow(clippy::type_complexity)]
    pub fn parse_post_message(
        uri: &http::Uri,
        body: &[u8],
    ) -> (
        Result<Option<String>, String>,
        Result<rmcp::model::ClientJsonRpcMessage, String>,
    ) {
        crate::sse::parse_post_message(uri, body)
    }
}
