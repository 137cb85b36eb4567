//! Ready-made [`Authenticator`](mcp_auth_core::Authenticator)s.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_auth_core::{
//!     AuthError, AuthRequest, Authenticator, ChallengeScheme, FnAuthenticator, Principal,
//!     secrets_equal,
//! };
//! use mcp_auth_strategies::{AnyOf, ApiKeyAuthenticator};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Keys as they would come from MCP_API_KEYS: a plain key and a SHA-256 digest.
//! let keys = ApiKeyAuthenticator::from_list(
//!     "service-key-0123456789,sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
//! ).unwrap();
//!
//! // A custom check for a health prober's own token, in its own header: it
//! // says which header it reads (the chain then refuses a request carrying
//! // both credentials) and compares in constant time.
//! let expected: Arc<str> = "prober-token-from-the-configuration".into();
//! let prober = FnAuthenticator::new(move |req: AuthRequest| {
//!     let expected = expected.clone();
//!     async move {
//!         match req.headers.get("x-probe-token") {
//!             Some(t) if secrets_equal(t.as_bytes(), expected.as_bytes()) => {
//!                 Ok(Principal::new("probe", "custom"))
//!             }
//!             Some(_) => Err(AuthError::invalid_token("unknown prober token")),
//!             None => Err(AuthError::MissingCredentials),
//!         }
//!     }
//! })
//! .named("prober")
//! .with_scheme(ChallengeScheme::ApiKey { header: "X-Probe-Token".into() });
//!
//! // Chains try each member in order.
//! let auth = AnyOf::new().with(prober).with(keys);
//!
//! let req = AuthRequest::builder().header("x-api-key", "password").build();
//! let who = auth.authenticate(&req).await.unwrap();
//! assert_eq!(who.strategy, "api_key");
//! let req = AuthRequest::builder()
//!     .header("x-probe-token", "prober-token-from-the-configuration")
//!     .build();
//! assert_eq!(auth.authenticate(&req).await.unwrap().subject, "probe");
//! # }
//! ```
//!
//! - [`NoAuth`]: lets everyone in as an anonymous principal (choose it on purpose);
//! - [`ApiKeyAuthenticator`]: static keys in the `X-API-Key` header, stored as
//!   SHA-256 digests and compared in constant time;
//! - `JwtAuthenticator` (feature `jwt`, on by default): the `bearer` strategy
//!   (tokens signed with this server's secret or key) and the `oauth2`
//!   strategy (a resource server for any OAuth 2.1 / OIDC issuer, with RFC
//!   7662 introspection for opaque tokens);
//! - [`AnyOf`]: a chain that accepts the first member that accepts;
//! - [`settings`]: the whole authenticator from `MCP_AUTH_STRATEGY` and each
//!   strategy's variables, as `mcp-auth-server` builds it.
//!
//! ## Features
//!
//! - `jwt` (default): `JwtAuthenticator` (pulls in `mcp-auth-jwt` with JWKS
//!   fetching, reqwest and tokio). For API keys and closures only:
//!   `mcp-auth-strategies = { version = "0.1", default-features = false }`.
//! - `cognito`: the `cognito` strategy in [`settings`] (`mcp-auth-cognito`).

mod any_of;
mod api_key;
#[cfg(feature = "jwt")]
mod dpop;
#[cfg(feature = "jwt")]
mod introspection;
#[cfg(feature = "jwt")]
mod jwt;
mod none;
pub mod settings;

pub use any_of::AnyOf;
pub use api_key::{
    API_KEY_HEADER, ApiKeyAuthenticator, ApiKeyError, MIN_PLAIN_KEY_LEN, fingerprint,
};
#[cfg(feature = "jwt")]
pub use dpop::{DpopAuthenticator, DpopConfigError, DpopNonces};
#[cfg(feature = "jwt")]
pub use introspection::Introspector;
#[cfg(feature = "jwt")]
pub use jwt::{DEFAULT_JWT_ISSUER, JwtAuthenticator};
/// What [`JwtAuthenticator`]'s constructors take, so building one needs no
/// direct dependency on `mcp-auth-jwt`.
#[cfg(feature = "jwt")]
pub use mcp_auth_jwt::{
    Algorithm, Audience, JwksCache, JwtError, JwtVerifier, JwtVerifierBuilder, VerifiedToken,
    VerifyKey,
};
pub use none::NoAuth;
pub use settings::VARIABLES;
