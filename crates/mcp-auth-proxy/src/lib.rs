//! An OAuth 2.1 authorization-server facade for MCP servers, so any MCP
//! client can log in through a provider that supports neither dynamic
//! registration nor client ID metadata documents (AWS Cognito, GitHub,
//! Google, Entra): towards MCP clients the server is its own authorization
//! server (RFC 8414 metadata, client ID metadata documents, dynamic
//! registration, PKCE S256, RFC 9207 `iss`, refresh rotation, RFC 7009
//! revocation); the user approves the client on the server's consent page
//! and logs in at the provider with the server's one pre-registered
//! client; the client gets the server's own short-lived JWTs, and the
//! provider's tokens stay on the server, sealed, for tools acting for the
//! user ([`OAuthProxy::upstream_access_token`], refreshed when expired).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mcp_auth_proxy::{EndpointOptions, settings::ProxySettings};
//!
//! let server_url: url::Url = "https://mcp.example.com/mcp".parse()?;
//! let store = Arc::new(mcp_auth_session::MemoryStore::new());
//! let settings = ProxySettings::from_settings(&mcp_auth_core::settings::ProcessEnv, &server_url)?;
//! let proxy = settings.build(server_url, store).await?;
//! // The facade's endpoints, served next to the MCP endpoint (with the
//! // peers' addresses: `mcp_auth_transport::serve` gives them), and the
//! // authenticator for the tokens it issues.
//! let routes = proxy.router(EndpointOptions::default());
//! let authenticator = proxy.authenticator()?;
//! # let _ = (routes, authenticator); Ok(()) }
//! ```

pub mod clients;
pub mod consent;
mod endpoints;
pub mod facade;
pub mod grants;
pub mod keys;
pub mod settings;
pub mod upstream;
pub mod vault;

pub use endpoints::{EndpointOptions, paths};
pub use facade::{ConfiguredKeys, FacadeAuthenticator, OAuthProxy, ProxyConfig, ProxyError};
pub use settings::VARIABLES;
pub use vault::{FAMILY_CLAIM, UpstreamTokenError};
