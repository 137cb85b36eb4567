//! Client-side helpers for authenticated MCP servers, on top of rmcp's
//! OAuth client.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), mcp_auth_client::ClientError> {
//! use mcp_auth_client::{Auth, ClientError, OAuthOptions, Presented, connect};
//!
//! // Whatever the server asks for: on a 401 Bearer challenge, discovery,
//! // PKCE, `resource`, a browser login caught on http://127.0.0.1:3030/callback,
//! // tokens stored for the next run.
//! let client = connect("http://127.0.0.1:8001/mcp", Auth::OAuth(OAuthOptions::default())).await?;
//! let tools = client
//!     .list_all_tools()
//!     .await
//!     .map_err(|e| ClientError::from_service_error(&e, Presented::OAuth))?;
//! println!("{} tools", tools.len());
//! # Ok(()) }
//! ```
//!
//! - [`CallbackServer`]: a loopback redirect target that checks `state` and
//!   the RFC 9207 `iss` ([`IssuerCheck`]), holds the browser's request until
//!   the client's verdict ([`Redirect`]), answers with a small escaped page
//!   ("Signed in" only when the login succeeded) and times out cleanly;
//! - [`open_browser`]: `$BROWSER`, then the desktop's opener, else print;
//! - [`FileCredentialStore`]: tokens per server, under the user's config
//!   directory, directories 0700, files 0600 (read only when this user's
//!   and not writable by others), refreshes serialized by a lock file;
//! - [`RegistrationStore`]: dynamic client registrations per authorization
//!   server (same directory and modes), reused by later logins;
//! - [`connect`] / [`connect_oauth`]: API key, bearer token, or the full
//!   OAuth flow; it refuses an authorization server whose issuer or
//!   endpoints are plain http off loopback (the MCP authorization spec
//!   requires https), and a client secret without the issuer it belongs
//!   to ([`OAuthOptions::client_issuer`]); on the
//!   2026-07-28 stateless wire when the server speaks it, else a 2025-11-25
//!   session ([`Wire`], [`connect_with`]);
//! - [`connect_machine`]: no person, no browser: a token from an OAuth
//!   grant of the program's own ([`Grant`]: client credentials by secret or
//!   private key, workload identity, enterprise-managed authorization); the
//!   grants alone are [`client_credentials`], [`jwt_bearer`],
//!   [`exchange_id_token_for_id_jag`] and [`enterprise_managed`];
//! - DPoP (RFC 9449), sender-constrained tokens: when the authorization
//!   server offers DPoP with ES256, token requests carry a proof of a key
//!   per MCP server ([`DpopKey`], kept next to the tokens), the tokens come
//!   back bound to it, and every MCP request presents them as
//!   `Authorization: DPoP` with a fresh proof ([`DpopHttpClient`]); the
//!   servers' nonces are honoured (one retry on `use_dpop_nonce`).
//!   [`OAuthOptions::dpop`] / [`MachineOptions::dpop`] turn it off;
//! - [`ClientError`]: one short line per failure; a refusal
//!   ([`Refusal`]) says what was refused and why, from the server's
//!   challenge (`the server refused the API key (401 invalid_token)`,
//!   `missing scope mcp:admin (403 insufficient_scope)`); the full error
//!   chain is logged at `debug`.
//!
//! # OAuth, step by step
//!
//! - **Scopes** ([`OAuthOptions::scopes`]): the first login asks for the
//!   `scope` of the server's `WWW-Authenticate` challenge, else the
//!   protected-resource metadata's `scopes_supported`, else none (the MCP
//!   spec's order), unless scopes are given. A login for a mid-session
//!   challenge (a 403 `insufficient_scope` step-up) asks for the scopes
//!   already held or given plus the challenge's.
//! - **Client**: a pre-registered client when there is one for this
//!   authorization server ([`OAuthOptions::client_issuer`] binds it to one
//!   issuer), else a client ID metadata document when the server supports
//!   them, else dynamic registration, kept per issuer and reused.
//!
//! # Files and environment
//!
//! The config directory is `$MCP_AUTH_CLIENT_HOME`, else
//! `$XDG_CONFIG_HOME/mcp-auth-client`, else `~/.config/mcp-auth-client`
//! (none of them set: [`ConfigDirError`], never the working directory):
//! `credentials/` holds tokens per server (and each server's DPoP key,
//! `<hash>.dpop.pem`), `registrations/` dynamic registrations per
//! authorization server. [`open_browser`] reads `$BROWSER`; OAuth requests
//! read the proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, as
//! reqwest does). The library reads nothing else; the `mcp-auth-client`
//! binary's variables are listed in its `--help`, and all of them, the
//! library's included, in [`VARIABLES`].

/// docs/CLIENT.md's code, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/CLIENT.md")]
struct ClientGuide;

mod browser;
mod callback;
mod connect;
mod dpop;
mod dpop_http;
mod failure;
mod grants;
mod issuer;
mod machine;
mod oauth_http;
mod registration;
mod store;

pub use browser::open_browser;
pub use callback::{CallbackError, CallbackParams, CallbackServer, IssuerCheck, Redirect};
pub use connect::{
    Auth, ClientError, OAuthOptions, Wire, auth_challenge, connect, connect_oauth, connect_with,
    connect_with_plain_http, discover_issuer, insecure_authorization_warning,
    is_insecure_authorization_url,
};
pub use dpop::{DPOP_ALGORITHM, DpopKey, DpopKeyError};
pub use dpop_http::DpopHttpClient;
pub use failure::{Presented, Refusal, challenge_scopes, error_chain, one_line, terminal_safe};
pub use grants::{
    ClientAuth, GrantError, GrantType, SigningAlgorithm, TOKEN_TYPE_ID_JAG, TokenEndpoint,
    TokenGrant, client_credentials, enterprise_managed, exchange_id_token_for_id_jag, jwt_bearer,
};
pub use machine::{Grant, MachineClient, MachineOptions, connect_machine};
pub use registration::{Registration, RegistrationStore};
pub use store::{ConfigDirError, DpopKeyFileError, FileCredentialStore};

/// Every environment variable the client (this library and the
/// `mcp-auth-client` binary) reads, and the binary's list of known
/// settings for `mcp_auth_core::settings::Sources`.
///
/// The binary reads the first six from the environment, else from
/// `./.env` (never exported), an empty value counting as unset; its flags
/// win over both. The rest come from the process environment only:
/// they belong to the user's session or to the program running the client
/// (the conformance suite), not to a project's `.env`.
pub const VARIABLES: &[&str] = &[
    // From the environment, else `./.env`.
    "MCP_SERVER_URL",
    "MCP_API_KEY",
    "COGNITO_REGION",
    "COGNITO_USER_POOL_ID",
    "COGNITO_APP_CLIENT_ID",
    "COGNITO_APP_CLIENT_SECRET",
    // From the process environment only.
    "MCP_BEARER_TOKEN",
    "MCP_CLIENT_SECRET",
    "MCP_IDP_CLIENT_SECRET",
    "LOG_LEVEL",
    "MCP_AUTH_CLIENT_HOME",
    "XDG_CONFIG_HOME",
    "HOME",
    "BROWSER",
    "MCP_CONFORMANCE_CONTEXT",
    "MCP_CONFORMANCE_SCENARIO",
    // Proxies (also lowercase), whose hosts the OAuth requests' address
    // policy leaves alone.
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];
