//! JWT verification for MCP servers.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use mcp_auth_jwt::{Audience, JwksCache, JwtVerifier};
//!
//! // An OAuth 2.1 / OIDC issuer: keys discovered from its metadata, kept
//! // fresh, and tokens accepted only when minted for this MCP server.
//! let issuer = "https://auth.example.com";
//! let verifier = JwtVerifier::builder()
//!     .jwks(JwksCache::discover(issuer).build())
//!     .issuer(issuer)
//!     .audience(Audience::OneOf(vec!["https://mcp.example.com/mcp".into()]))
//!     .build()
//!     .unwrap();
//! match verifier.verify("eyJ...").await {
//!     Ok(token) => println!("hello {:?}", token.str_claim("sub")),
//!     Err(e) => println!("refused: {e}"),
//! }
//! # }
//! ```
//!
//! - [`VerifyKey`] / [`KeySet`]: trusted keys, each tied to the algorithms of
//!   its type (HMAC secrets of 32+ bytes; RSA, EC P-256/P-384, Ed25519 public
//!   keys from PEM or JWK);
//! - [`JwksCache`]: a hardened, self-refreshing JWKS cache (why not
//!   `jwks_client_rs`: see its docs);
//! - [`discover`]: RFC 8414 / OIDC metadata with exact issuer match;
//! - [`JwtVerifier`]: RFC 8725 checks — allow-listed algorithms per key, keys
//!   by `kid` from the trusted set only (`jku`, `x5u` and embedded `jwk` refuse
//!   the token), unknown `crit` refused, `exp` required, `nbf` honoured,
//!   leeway, `typ` `JWT` or `at+jwt`, audience as string or array, custom
//!   checks.
//!
//! `verify` is `async` because a JWKS may need fetching; with static keys it
//! never awaits anything, so any executor (or `futures::executor::block_on`)
//! runs it to completion at once.
//!
//! The plumbing other crates of this workspace share (bounded fetching in
//! [`fetch`], settings helpers in [`settings`]) lives in those modules.
//!
//! Built on jsonwebtoken with its `aws_lc_rs` backend only.

mod discovery;
pub mod fetch;
mod jwks;
mod keys;
pub mod settings;
mod verifier;

pub use discovery::{AuthServerMetadata, DiscoveryError, discover, discovery_urls};
pub use fetch::{FetchError, FetchLimits};
pub use jsonwebtoken::Algorithm;
pub use jwks::{JwksCache, JwksCacheBuilder, JwksError};
pub use keys::{KeyError, KeySet, MIN_HMAC_SECRET_LEN, VerifyKey};
pub use settings::TimeRules;
pub use verifier::{
    Audience, BuildError, ClaimCheck, DEFAULT_MAX_TOKEN_BYTES, JwtError, JwtVerifier,
    JwtVerifierBuilder, MAX_NUMERIC_DATE, VerifiedToken, numeric_date,
};
