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
//! - [`CognitoConfigError`]: why a verifier cannot be built, with the
//!   setting at fault ([`CognitoConfigError::variable`]).
//! - [`CognitoAuthenticator`]: the verifier as an
//!   [`Authenticator`](mcp_auth_core::Authenticator), configured from the
//!   seed's `COGNITO_*` variables.
//! - With feature `cli`: the `mcp-auth-cognito` admin binary (`setup`,
//!   `add-resource-server`, `status`, `teardown`).

mod authenticator;
mod verifier;

pub use authenticator::CognitoAuthenticator;
pub use verifier::{
    CognitoConfigError, CognitoError, CognitoVerifier, CognitoVerifierBuilder, PoolConfig,
    TokenUse, issuer_for,
};

/// Every variable this crate's library reads: the settings of
/// [`CognitoAuthenticator::from_settings`], including the JWT timing rules
/// it takes from [`mcp_auth_jwt::TimeRules`] and the keys' maximum staleness
/// ([`mcp_auth_jwt::settings::jwks_max_stale`]). (The admin CLI's own
/// variables are not listed.)
pub const VARIABLES: &[&str] = &[
    "COGNITO_REGION",
    "COGNITO_USER_POOL_ID",
    "COGNITO_APP_CLIENT_ID",
    "COGNITO_TOKEN_USE",
    "COGNITO_REQUIRED_GROUPS",
    "COGNITO_REQUIRED_SCOPES",
    "COGNITO_RESOURCE_INDICATORS",
    "COGNITO_JWKS_URL",
    "MCP_OAUTH_ALLOW_HTTP",
    "MCP_OAUTH_SCOPES_SUPPORTED",
    "MCP_JWT_LEEWAY",
    "MCP_JWT_MAX_LIFETIME",
    "MCP_OAUTH_JWKS_MAX_STALE",
];

#[cfg(test)]
mod tests {
    use super::VARIABLES;

    /// The quoted all-caps names with an underscore in `text`: what a
    /// variable name looks like.
    fn quoted_names(text: &str) -> impl Iterator<Item = &str> {
        text.split('"').filter(|s| {
            s.contains('_')
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
    }

    #[test]
    fn every_quoted_variable_name_is_listed() {
        for (file, text) in [
            ("lib.rs", include_str!("lib.rs")),
            ("authenticator.rs", include_str!("authenticator.rs")),
            ("verifier.rs", include_str!("verifier.rs")),
        ] {
            for name in quoted_names(text) {
                assert!(
                    VARIABLES.contains(&name),
                    "{file}: {name} is not in VARIABLES"
                );
            }
        }
        let mut sorted = VARIABLES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), VARIABLES.len(), "duplicates in VARIABLES");
    }
}
