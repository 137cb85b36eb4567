//! Core types shared by every `mcp-auth` crate.
//!
//! ```
//! use mcp_auth_core::{AuthError, AuthRequest, Authenticator, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A custom authenticator is one closure: it sees the request's method, URI,
//! // headers and peer address, and answers with a principal or an error.
//! let auth = |req: AuthRequest| async move {
//!     match req.headers.get("x-team") {
//!         Some(v) if v == "blue" => Ok(Principal::new("team-blue", "custom")),
//!         Some(_) => Err(AuthError::invalid_token("unknown team")),
//!         None => Err(AuthError::MissingCredentials),
//!     }
//! };
//!
//! let req = AuthRequest::builder().header("x-team", "blue").build();
//! let who = auth.authenticate(&req).await.unwrap();
//! assert_eq!(who.subject, "team-blue");
//!
//! // Every failure maps to the exact RFC 6750 status and challenge.
//! let err = auth.authenticate(&AuthRequest::builder().build()).await.unwrap_err();
//! assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! What lives here:
//! - [`Authenticator`], the trait every strategy implements, with a blanket
//!   implementation for async closures;
//! - [`Principal`], the verified caller handed to tools;
//! - [`AuthError`], mapped to RFC 6750 statuses, and [`Challenge`], which
//!   renders `WWW-Authenticate` with correct quoted-string escaping;
//! - [`ProtectedResourceMetadata`], the RFC 9728 document;
//! - [`dpop`]: the DPoP (RFC 9449) pieces every strategy shares: how a
//!   token was presented ([`TokenScheme`]), the binding rules, the
//!   [`ReplayCache`] proofs' `jti`s go to;
//! - [`settings`], a tiny lookup abstraction so every crate can read its own
//!   environment variables and name the one at fault in errors;
//! - [`recorder`]: whether a global `metrics` recorder is installed, so
//!   the crates may keep the handles of series they record per request.

mod authenticator;
mod challenge;
pub mod dpop;
mod error;
mod metadata;
mod principal;
pub mod recorder;
pub mod settings;
mod throttle;

/// The attribute that implementing [`Authenticator`] needs, re-exported so
/// an implementation needs no extra dependency: `#[mcp_auth_core::async_trait]`.
pub use async_trait::async_trait;
pub use authenticator::{
    AuthRequest, AuthRequestBuilder, Authenticator, FnAuthenticator, Readiness,
    SharedAuthenticator, secrets_equal,
};
pub use challenge::{Challenge, ChallengeScheme, retry_after_secs};
pub use dpop::{DpopInfo, MemoryReplayCache, ReplayCache, TokenScheme};
pub use error::{AuthError, ErrorBody};
pub use metadata::{ProtectedResourceMetadata, metadata_url_for};
pub use principal::{Principal, distinct_scope_tokens, is_scope_token, scope_tokens};
pub use throttle::LogThrottle;
