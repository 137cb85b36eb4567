//! JWT verification for MCP servers.
//!
//! A token signed with a key you hold (no runtime, no network):
//!
//! ```
//! use mcp_auth_jwt::{Audience, JwtVerifier, VerifyKey};
//!
//! let pem = b"-----BEGIN PUBLIC KEY-----
//! MCowBQYDK2VwAyEAmFUuvhvUaHMCOkg3z541CYz8m4t6Yi629L1tb38mqwY=
//! -----END PUBLIC KEY-----";
//! let verifier = JwtVerifier::builder()
//!     .static_keys(vec![VerifyKey::from_pem(pem).unwrap()])
//!     .issuer("https://issuer.example")
//!     .audience(Audience::OneOf(vec!["https://mcp.example.com/mcp".into()]))
//!     .build()
//!     .unwrap();
//! match verifier.verify_sync("eyJ...") {
//!     Ok(token) => println!("hello {:?}", token.str_claim("sub")),
//!     Err(e) => println!("refused: {e}"), // "malformed token"
//! }
//! ```
//!
//! Tokens of an OAuth 2.1 / OIDC issuer (feature `fetch`, on by default):
//! keys discovered from its metadata and kept fresh, tokens accepted only
//! when minted for this MCP server.
//!
//! ```no_run
//! # #[cfg(feature = "fetch")]
//! # #[tokio::main] async fn main() {
//! use mcp_auth_jwt::{Audience, JwksCache, JwtVerifier};
//!
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
//! # #[cfg(not(feature = "fetch"))] fn main() {}
//! ```
//!
//! - [`VerifyKey`] / [`KeySet`]: trusted keys, each tied to the algorithms of
//!   its type (HMAC secrets of 32+ bytes; RSA, EC P-256/P-384, Ed25519 public
//!   keys from PEM or JWK);
//! - `JwksCache` (feature `fetch`): a hardened, self-refreshing JWKS cache
//!   (why not `jwks_client_rs`: see its docs);
//! - `discover` (feature `fetch`): RFC 8414 / OIDC metadata with exact
//!   issuer match;
//! - [`JwtVerifier`]: RFC 8725 checks — allow-listed algorithms per key, keys
//!   by `kid` from the trusted set only (`jku`, `x5u` and embedded `jwk` refuse
//!   the token), unknown `crit` refused, `exp` required, `nbf` honoured,
//!   leeway, `typ` `JWT` or `at+jwt`, audience as string or array, custom
//!   checks.
//!
//! `verify` is `async` because a JWKS may need fetching; with static keys it
//! never awaits anything, and [`JwtVerifier::verify_sync`] runs it without a
//! runtime.
//!
//! ## Features
//!
//! - `fetch` (default): `JwksCache`, `discover` and the bounded HTTP
//!   fetching in `fetch` (reqwest, rustls, tokio). Without it the crate
//!   verifies tokens against static keys only ([`JwtVerifier::builder`] with
//!   `static_keys`) and pulls in about a third of the dependencies:
//!   `mcp-auth-jwt = { version = "0.1", default-features = false }`.
//!
//! The plumbing other crates of this workspace share (bounded fetching in
//! `fetch`, settings helpers in [`settings`]) lives in those modules.
//!
//! Built on jsonwebtoken with its `aws_lc_rs` backend only.

#[cfg(feature = "fetch")]
mod discovery;
mod dpop;
#[cfg(feature = "fetch")]
pub mod fetch;
#[cfg(feature = "fetch")]
mod jwks;
mod keys;
mod pem;
pub mod settings;
mod verifier;

#[cfg(feature = "fetch")]
pub use discovery::{AuthServerMetadata, DiscoveryError, discover, discovery_urls};
pub use dpop::{
    DEFAULT_DPOP_ALGORITHMS, DEFAULT_MAX_DPOP_PROOF_BYTES, DPOP_ALGORITHMS, DpopBuildError,
    DpopError, DpopProof, DpopVerifier, DpopVerifierBuilder, MAX_DPOP_JTI_BYTES, jwk_thumbprint,
};
#[cfg(feature = "fetch")]
pub use fetch::{FetchError, FetchLimits};
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "fetch")]
pub use jwks::{JwksCache, JwksCacheBuilder, JwksError, JwksStatus};
pub use keys::{
    ALL_ALGORITHMS, EC_ALGORITHMS, HMAC_ALGORITHMS, KeyError, KeySet, MIN_HMAC_SECRET_LEN,
    RSA_ALGORITHMS, VerifyKey, same_family,
};
pub use settings::TimeRules;

/// Every variable this crate reads (`TimeRules::from_settings`,
/// `settings::jwks_max_stale`).
pub const VARIABLES: &[&str] = &[
    "MCP_JWT_LEEWAY",
    "MCP_JWT_MAX_LIFETIME",
    "MCP_OAUTH_JWKS_MAX_STALE",
];
pub use verifier::{
    Audience, BuildError, ClaimCheck, DEFAULT_MAX_TOKEN_BYTES, JwtError, JwtVerifier,
    JwtVerifierBuilder, MAX_NUMERIC_DATE, TokenCacheCounter, VerifiedToken, numeric_date,
};
