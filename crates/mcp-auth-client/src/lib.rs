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
//! - [`CallbackServer`]: a loopback redirect target that checks `state`,
//!   answers the browser with a small escaped page and times out cleanly;
//! - [`open_browser`]: `$BROWSER`, then the desktop's opener, else print;
//! - [`FileCredentialStore`]: tokens per server, under the user's config
//!   directory, file mode 0600;
//! - [`connect`]: API key, bearer token, or the full OAuth flow.

mod browser;
mod callback;
mod connect;
mod store;

pub use browser::open_browser;
pub use callback::{CallbackError, CallbackParams, CallbackServer};
pub use connect::{Auth, ClientError, OAuthOptions, auth_challenge, connect};
pub use store::FileCredentialStore;
