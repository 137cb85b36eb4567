//! AWS Cognito user-pool tokens for MCP servers.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use mcp_auth_cognito::{CognitoVerifier, TokenUse};
//!
//! // Every security choice is made on purpose: which token type, which app
//! // clients (`None` = "I really mean: any client of this pool").
//! let verifier = CognitoVerifier::builder("eu-west-1", "eu-west-1_AbCdEf123")
//!     .unwrap()
//!     .token_use(TokenUse::Access)
//!     .client_ids(Some(vec!["4v1b2c3d4e5f6g7h8i9j0k1l2m".into()]))
//!     .required_groups(["admins"])
//!     .required_scopes(["https://mcp.example.com/mcp/tools"])
//!     .build()
//!     .unwrap();
//! match verifier.verify("eyJ...").await {
//!     Ok(p) => println!("hello {}", p.subject),
//!     Err(e) => println!("refused: {e}"),
//! }
//! # }
//! ```
//!
//! - [`CognitoVerifier`]: one or several pools; issuer
//!   `https://cognito-idp.<region>.amazonaws.com/<poolId>` and its JWKS (an
//!   override URL serves emulators and private endpoints), checked with
//!   [`mcp_auth_jwt`]'s RFC 8725 verifier, then `token_use`, the app client
//!   (`client_id` for access tokens, `aud` for ID tokens), groups (any of),
//!   scopes (all of, access tokens), and with resource indicators, `aud`.
//! - [`CognitoAuthenticator`]: the verifier as an
//!   [`Authenticator`](mcp_auth_core::Authenticator), configured from the
//!   seed's `COGNITO_*` variables.
//! - With feature `cli`: the `mcp-auth-cognito` admin binary (`setup`,
//!   `add-resource-server`, `status`, `teardown`).

mod authenticator;
mod verifier;

pub use authenticator::CognitoAuthenticator;
pub use verifier::{
    CognitoError, CognitoVerifier, CognitoVerifierBuilder, PoolConfig, TokenUse, issuer_for,
};
