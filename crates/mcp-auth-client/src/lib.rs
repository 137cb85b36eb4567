//! Client-side helpers for authenticated MCP servers, on top of rmcp's
//! OAuth client.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), mcp_auth_client::ClientError> {
//! use mcp_auth_client::{Auth, OAuthOptions, connect};
//!
//! // Whatever the server asks for: on a 401 Bearer challenge, discovery,
//! // PKCE, `resource`, a browser login caught on http://127.0.0.1:3030/callback,
//! // tokens stored for the next run.
//! let client = connect("http://127.0.0.1:8001/mcp", Auth::OAuth(OAuthOptions::default())).await?;
//! let tools = client.list_all_tools().await.map_err(|e| mcp_auth_client::ClientError::Mcp(e.to_string()))?;
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
//!   directory, directories 0700, files 0600;
//! - [`connect`]: API key, bearer token, or the full OAuth flow; it warns
//!   before sending a person to a plain-http, non-loopback login page
//!   ([`is_insecure_authorization_url`]).

mod browser;
mod callback;
mod connect;
mod store;

pub use browser::open_browser;
pub use callback::{CallbackError, CallbackParams, CallbackServer, IssuerCheck, Redirect};
pub use connect::{
    Auth, ClientError, OAuthOptions, auth_challenge, connect, insecure_authorization_warning,
    is_insecure_authorization_url,
};
pub use store::FileCredentialStore;
