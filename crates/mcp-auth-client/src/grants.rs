//! Non-interactive OAuth token grants for machine-to-machine MCP clients:
//! no browser, one form-encoded POST to a token endpoint.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), mcp_auth_client::GrantError> {
//! use mcp_auth_client::{ClientAuth, TokenEndpoint, client_credentials};
//!
//! // From the authorization server's metadata (RFC 8414).
//! let endpoint = TokenEndpoint::new("https://auth.example.com/oauth2/token")
//!     .with_issuer("https://auth.example.com");
//! // client_secret_basic unless the metadata lists only client_secret_post.
//! let auth = ClientAuth::choose("reporting-bot", Some("s3cret".into()), None);
//! let grant = client_credentials(
//!     &endpoint,
//!     &auth,
//!     &["mcp:tools".to_owned()],
//!     Some("https://mcp.example.com/mcp"),
//! )
//! .await?;
//! // Send `Authorization: Bearer <grant.access_token>` to the MCP server.
//! println!("token for {:?} seconds", grant.expires_in);
//! # Ok(()) }
//! ```
//!
//! - [`client_credentials`]: the client acts for itself (RFC 6749 §4.4);
//! - [`jwt_bearer`]: a JWT as the grant (RFC 7523 §2.1), e.g. a workload
//!   identity token a platform mounts into the container;
//! - [`exchange_id_token_for_id_jag`] and [`enterprise_managed`]: the MCP
//!   enterprise-managed authorization extension (SEP-990): the enterprise
//!   IdP exchanges the user's ID token for an identity assertion
//!   authorization grant (ID-JAG, RFC 8693), which the MCP authorization
//!   server takes as a `jwt-bearer` grant.
//!
//! The client authenticates at the token endpoint as [`ClientAuth`] says:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt`, or only
//! its `client_id`.
//!
//! DPoP (RFC 9449): with [`TokenEndpoint::with_dpop`], each request carries
//! a `DPoP` proof signed with the key, and the server may bind the token to
//! it (`token_type` `DPoP`: present it with [`crate::DpopHttpClient`]). A
//! `use_dpop_nonce` answer (400, or 401) with a new `DPoP-Nonce` is retried
//! once with the nonce (§8); it is the only retry.
//!
//! Safety rules: a token endpoint must be `https://` (plain `http://` only
//! on a loopback host), redirects are not followed, a request times out
//! after 30 s, a response body is read up to 64 KiB. A failed request is
//! neither retried nor replaced by another grant type: the error goes back
//! to the caller ([`GrantError`]), one line, without the request's secrets.

use std::{
    fmt,
    path::Path,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value};
use url::{Host, Url};

use crate::{
    DpopKey,
    dpop::{DPOP_HEADER, DPOP_NONCE_HEADER, USE_DPOP_NONCE, is_dpop_token_type},
    oauth_http::SharedPolicy,
    one_line,
};

/// Whole-request timeout (connect, send, read).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token endpoint response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Lifetime of a `private_key_jwt` client assertion.
const ASSERTION_LIFETIME_SECS: u64 = 60;
/// Longest `error_description` kept in an error.
const MAX_DESCRIPTION: usize = 200;

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The RFC 8693 token type of an identity assertion authorization grant
/// (ID-JAG), requested from the enterprise IdP by
/// [`exchange_id_token_for_id_jag`].
pub const TOKEN_TYPE_ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// Form fields whose values never appear in an error.
const SENSITIVE_FIELDS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "assertion",
    "subject_token",
];

/// What a grant needs from the authorization server's metadata (RFC 8414).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenEndpoint {
    /// The metadata's `token_endpoint`.
    pub token_endpoint: String,
    /// The metadata's `issuer`: the audience of a `private_key_jwt` client
    /// assertion (the token endpoint URL when it is unknown) and of an
    /// ID-JAG ([`enterprise_managed`] needs it).
    pub issuer: Option<String>,
    /// The DPoP key requests to this endpoint carry a proof of.
    dpop: Option<DpopKey>,
    /// The addresses requests may go to, for an endpoint an MCP server's
    /// discovery named ([`connect_machine`](crate::connect_machine)).
    policy: Option<SharedPolicy>,
}

impl TokenEndpoint {
    /// The token endpoint at `token_endpoint`, issuer unknown.
    pub fn new(token_endpoint: impl Into<String>) -> Self {
        Self {
            token_endpoint: token_endpoint.into(),
            issuer: None,
            dpop: None,
            policy: None,
        }
    }

    /// The same endpoint, asked only at addresses `policy` allows (what
    /// discovery for that MCP server may reach: no link-local or reserved
    /// address, private or loopback ones only for a server on one).
    pub(crate) fn with_policy(mut self, policy: SharedPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The same endpoint, each request with a DPoP proof signed with `key`
    /// (when the server's metadata lists `ES256` in
    /// `dpop_signing_alg_values_supported`): the token may come back bound
    /// to the key (`token_type` `DPoP`).
    #[must_use]
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// The DPoP key, when requests carry proofs.
    pub fn dpop(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }

    /// The same endpoint, of the authorization server `issuer`.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The `aud` of a client assertion for this server (RFC 7523 §3): its
    /// issuer, else the token endpoint URL.
    fn assertion_audience(&self) -> &str {
        self.issuer.as_deref().unwrap_or(&self.token_endpoint)
    }
}

/// A JWS algorithm for `private_key_jwt` client assertions, and the key it
/// needs (a PEM-encoded PKCS#8 private key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256 (an EC P-256 key).
    Es256,
    /// ECDSA P-384 with SHA-384 (an EC P-384 key).
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (an RSA key, 2048 bits or more).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (an RSA key).
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (an RSA key).
    Rs512,
    /// RSASSA-PSS with SHA-256 (an RSA key).
    Ps256,
    /// RSASSA-PSS with SHA-384 (an RSA key).
    Ps384,
    /// RSASSA-PSS with SHA-512 (an RSA key).
    Ps512,
    /// EdDSA (an Ed25519 key).
    EdDsa,
}

impl SigningAlgorithm {
    const ALL: [SigningAlgorithm; 9] = [
        Self::Es256,
        Self::Es384,
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::EdDsa,
    ];

    /// The JWA name (`ES256`, `RS256`, `EdDSA`, ...), as in the metadata's
    /// `token_endpoint_auth_signing_alg_values_supported`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::EdDsa => "EdDSA",
        }
    }

    fn jwa(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::Es256 => A::ES256,
            Self::Es384 => A::ES384,
            Self::Rs256 => A::RS256,
            Self::Rs384 => A::RS384,
            Self::Rs512 => A::RS512,
            Self::Ps256 => A::PS256,
            Self::Ps384 => A::PS384,
            Self::Ps512 => A::PS512,
            Self::EdDsa => A::EdDSA,
        }
    }

    /// The key this algorithm signs with, for error messages.
    fn key_kind(self) -> &'static str {
        match self {
            Self::Es256 => "EC P-256",
            Self::Es384 => "EC P-384",
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => {
                "RSA"
            }
            Self::EdDsa => "Ed25519",
        }
    }

    fn encoding_key(self, pem: &[u8]) -> jsonwebtoken::errors::Result<EncodingKey> {
        match self {
            Self::Es256 | Self::Es384 => EncodingKey::from_ec_pem(pem),
            Self::EdDsa => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = GrantError;

    /// Parses a JWA name (`ES256`, `es256`, `EdDSA`, ...); `HS256` and
    /// other shared-secret algorithms are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| GrantError::UnsupportedAlgorithm {
                name: one_line(s, 32),
            })
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3,
/// RFC 7523 §2.2). `Debug` never shows a secret or a key.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client: `client_id` in the body, no secret (`none`).
    None {
        /// The client's ID.
        client_id: String,
    },
    /// `client_secret_basic`: `Authorization: Basic
    /// base64(urlencode(client_id) ":" urlencode(secret))` (RFC 6749
    /// §2.3.1, each part form-urlencoded first).
    SecretBasic {
        /// The client's ID.
        client_id: String,
        /// The client's secret.
        secret: String,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    SecretPost {
        /// The client's ID.
        client_id: String,
        /// The client's secret.
        secret: String,
    },
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a JWT
    /// signed with the client's private key, `iss` = `sub` = `client_id`,
    /// `aud` = the authorization server's issuer (else its token
    /// endpoint), valid for 60 s, with a random `jti`. The key is checked
    /// at each use; [`ClientAuth::private_key_jwt`] checks it up front.
    PrivateKeyJwt {
        /// The client's ID.
        client_id: String,
        /// The PEM-encoded PKCS#8 private key (`-----BEGIN PRIVATE
        /// KEY-----`; PKCS#1 `RSA PRIVATE KEY` also works for RSA).
        key_pem: String,
        /// The algorithm the key signs with.
        algorithm: SigningAlgorithm,
        /// The `kid` header, when the server knows several keys of the
        /// client (its JWKS).
        key_id: Option<String>,
    },
}

impl ClientAuth {
    /// The authentication for a client with `secret` (or none), given the
    /// authorization server metadata's `token_endpoint_auth_methods_supported`:
    /// `client_secret_basic` when listed or when the list is absent (the
    /// RFC 8414 default), else `client_secret_post` when listed, else
    /// `client_secret_basic` (which RFC 6749 §2.3.1 requires servers to
    /// support). No secret: [`ClientAuth::None`].
    ///
    /// ```
    /// use mcp_auth_client::ClientAuth;
    ///
    /// let listed = ["client_secret_post".to_owned()];
    /// let auth = ClientAuth::choose("bot", Some("s3cret".into()), Some(&listed));
    /// assert_eq!(auth.method(), "client_secret_post");
    /// assert_eq!(ClientAuth::choose("bot", None, None).method(), "none");
    /// ```
    pub fn choose(
        client_id: impl Into<String>,
        secret: Option<String>,
        methods_supported: Option<&[String]>,
    ) -> ClientAuth {
        let client_id = client_id.into();
        let Some(secret) = secret else {
            return ClientAuth::None { client_id };
        };
        let listed = |m: &str| methods_supported.is_none_or(|l| l.iter().any(|x| x == m));
        if !listed("client_secret_basic") && listed("client_secret_post") {
            ClientAuth::SecretPost { client_id, secret }
        } else {
            ClientAuth::SecretBasic { client_id, secret }
        }
    }

    /// `private_key_jwt` with `key_pem`, checked now: a key that is not a
    /// PEM-encoded private key for `algorithm` is a [`GrantError::Key`]
    /// (which names the client, never the key's bytes).
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        key_pem: impl Into<String>,
        algorithm: SigningAlgorithm,
    ) -> Result<ClientAuth, GrantError> {
        let client_id = client_id.into();
        let key_pem = key_pem.into();
        check_key(&key_pem, algorithm).map_err(|reason| GrantError::Key {
            key: key_label(&client_id, None),
            reason,
        })?;
        Ok(ClientAuth::PrivateKeyJwt {
            client_id,
            key_pem,
            algorithm,
            key_id: None,
        })
    }

    /// `private_key_jwt` with the key in the PEM file at `path`, read and
    /// checked now; errors name the file.
    pub fn private_key_jwt_from_file(
        client_id: impl Into<String>,
        path: &Path,
        algorithm: SigningAlgorithm,
    ) -> Result<ClientAuth, GrantError> {
        let key = || format!("in `{}`", path.display());
        let key_pem = std::fs::read_to_string(path).map_err(|e| GrantError::Key {
            key: key(),
            reason: format!("cannot read the file: {}", one_line(&e.to_string(), 120)),
        })?;
        check_key(&key_pem, algorithm).map_err(|reason| GrantError::Key { key: key(), reason })?;
        Ok(ClientAuth::PrivateKeyJwt {
            client_id: client_id.into(),
            key_pem,
            algorithm,
            key_id: None,
        })
    }

    /// The client's ID.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::None { client_id }
            | ClientAuth::SecretBasic { client_id, .. }
            | ClientAuth::SecretPost { client_id, .. }
            | ClientAuth::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// The method's name in `token_endpoint_auth_methods_supported`
    /// (`none`, `client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`).
    pub fn method(&self) -> &'static str {
        match self {
            ClientAuth::None { .. } => "none",
            ClientAuth::SecretBasic { .. } => "client_secret_basic",
            ClientAuth::SecretPost { .. } => "client_secret_post",
            ClientAuth::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// Adds the client's fields to `form`; returns the Basic credentials
    /// (already form-urlencoded) for `client_secret_basic`.
    fn authenticate(
        &self,
        endpoint: &TokenEndpoint,
        form: &mut Vec<(&'static str, String)>,
    ) -> Result<Option<(String, String)>, GrantError> {
        match self {
            ClientAuth::None { client_id } => {
                form.push(("client_id", client_id.clone()));
                Ok(None)
            }
            ClientAuth::SecretBasic { client_id, secret } => {
                Ok(Some((form_encode(client_id), form_encode(secret))))
            }
            ClientAuth::SecretPost { client_id, secret } => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", secret.clone()));
                Ok(None)
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key_pem,
                algorithm,
                key_id,
            } => {
                let assertion = client_assertion(
                    client_id,
                    key_pem,
                    *algorithm,
                    key_id.as_deref(),
                    endpoint.assertion_audience(),
                )
                .map_err(|reason| GrantError::Key {
                    key: key_label(client_id, key_id.as_deref()),
                    reason,
                })?;
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", assertion));
                Ok(None)
            }
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            ClientAuth::SecretBasic { secret, .. } | ClientAuth::SecretPost { secret, .. } => {
                Some(secret)
            }
            _ => None,
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::None { client_id } => f
                .debug_struct("None")
                .field("client_id", client_id)
                .finish(),
            ClientAuth::SecretBasic { client_id, .. } => f
                .debug_struct("SecretBasic")
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
            ClientAuth::SecretPost { client_id, .. } => f
                .debug_struct("SecretPost")
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
            ClientAuth::PrivateKeyJwt {
                client_id,
                algorithm,
                key_id,
                ..
            } => f
                .debug_struct("PrivateKeyJwt")
                .field("client_id", client_id)
                .field("key_pem", &"<redacted>")
                .field("algorithm", algorithm)
                .field("key_id", key_id)
                .finish(),
        }
    }
}

/// How a key is named in errors.
fn key_label(client_id: &str, key_id: Option<&str>) -> String {
    let client = one_line(client_id, 80);
    match key_id {
        Some(kid) => format!("of client `{client}` (kid `{}`)", one_line(kid, 80)),
        None => format!("of client `{client}`"),
    }
}

/// Why `key_pem` cannot sign with `algorithm`, if it cannot.
fn check_key(key_pem: &str, algorithm: SigningAlgorithm) -> Result<(), String> {
    client_assertion("key-check", key_pem, algorithm, None, "key-check").map(drop)
}

/// The claims of a `private_key_jwt` client assertion.
#[derive(serde::Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed client assertion; the error is a reason that never quotes the
/// key.
fn client_assertion(
    client_id: &str,
    key_pem: &str,
    algorithm: SigningAlgorithm,
    key_id: Option<&str>,
    audience: &str,
) -> Result<String, String> {
    let unusable = || {
        format!(
            "it is not a PEM-encoded PKCS#8 {} private key (as {algorithm} needs)",
            algorithm.key_kind()
        )
    };
    let key = algorithm
        .encoding_key(key_pem.as_bytes())
        .map_err(|_| unusable())?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|_| "the operating system gave no randomness for the jti".to_owned())?;
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat,
        exp: iat + ASSERTION_LIFETIME_SECS,
        jti: hex::encode(id),
    };
    let mut header = Header::new(algorithm.jwa());
    header.kid = key_id.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key).map_err(|_| unusable())
}

/// A grant type, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantType {
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1).
    JwtBearer,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693), at
    /// the enterprise identity provider.
    TokenExchange,
}

impl GrantType {
    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// Who answers this grant, for error messages.
    fn server(self) -> &'static str {
        match self {
            GrantType::TokenExchange => "identity provider",
            _ => "authorization server",
        }
    }
}

impl fmt::Display for GrantType {
    /// `client_credentials grant`, `jwt-bearer grant`, `token exchange`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantType::ClientCredentials => "client_credentials grant",
            GrantType::JwtBearer => "jwt-bearer grant",
            GrantType::TokenExchange => "token exchange",
        })
    }
}

/// An access token from a token endpoint. `Debug` never shows a token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenGrant {
    /// The access token, for `Authorization: Bearer <access_token>`, or
    /// `Authorization: DPoP <access_token>` with a proof when it is bound
    /// ([`TokenGrant::is_dpop`]).
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a token bound to the request's DPoP key
    /// (the server's `token_type`, checked case-insensitively; other
    /// types, and `DPoP` without a proof in the request, are refused).
    pub token_type: String,
    /// Seconds until the access token expires, when the server says.
    pub expires_in: Option<u64>,
    /// The granted scopes (space-separated), when the server says.
    pub scope: Option<String>,
    /// A refresh token, when the server issued one.
    pub refresh_token: Option<String>,
}

impl TokenGrant {
    /// Whether the token is DPoP-bound (`token_type` `DPoP`): it must be
    /// presented with proofs of the key ([`crate::DpopHttpClient`]).
    pub fn is_dpop(&self) -> bool {
        is_dpop_token_type(&self.token_type)
    }
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a grant failed. `Display` is one line; it never contains the
/// request's secret, client assertion, assertion or subject token, nor a
/// URL's query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The token endpoint is not an absolute `https://` (or loopback
    /// `http://`) URL without user information or fragment.
    #[error("the token endpoint `{endpoint}` cannot be used: {reason}")]
    InvalidEndpoint {
        /// The endpoint, without its query.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A plain `http://` token endpoint on a host that is not loopback:
    /// the secret or assertion would cross the network in clear.
    #[error(
        "refusing to send client credentials to `{host}` over plain http: the token endpoint \
         must use https (plain http is allowed only on a loopback host)"
    )]
    InsecureEndpoint {
        /// The endpoint's host (and port).
        host: String,
    },
    /// The `private_key_jwt` key cannot be read or cannot sign.
    #[error("cannot sign a client assertion with the private key {key}: {reason}")]
    Key {
        /// Which key: ``of client `ID` `` or ``in `FILE` ``.
        key: String,
        /// Why (never the key's bytes).
        reason: String,
    },
    /// A `private_key_jwt` algorithm that is not supported.
    #[error(
        "`{name}` is not a supported private_key_jwt algorithm (ES256, ES384, RS256, RS384, \
         RS512, PS256, PS384, PS512, EdDSA)"
    )]
    UnsupportedAlgorithm {
        /// The name given.
        name: String,
    },
    /// The request did not get an answer (connection, TLS, timeout).
    #[error("the {grant} request to `{host}` failed: {reason}")]
    Network {
        /// The grant requested.
        grant: GrantType,
        /// The token endpoint's host (and port).
        host: String,
        /// The root cause.
        reason: String,
    },
    /// The server answered with an OAuth error (RFC 6749 §5.2) or an HTTP
    /// error status.
    #[error(
        "the {} refused the {grant}: {}",
        .grant.server(),
        refusal(*.status, .error.as_deref(), .description.as_deref())
    )]
    Refused {
        /// The grant requested.
        grant: GrantType,
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code (`invalid_client`, `invalid_grant`, ...).
        error: Option<String>,
        /// The `error_description`: one line, at most 200 characters.
        description: Option<String>,
    },
    /// The answer is not the token response expected (not JSON, too
    /// large, a redirect, no access token, ...).
    #[error("the {} gave an unusable answer to the {grant}: {reason}", .grant.server())]
    InvalidResponse {
        /// The grant requested.
        grant: GrantType,
        /// The HTTP status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
    /// The access token is neither a Bearer nor a DPoP token.
    #[error(
        "the authorization server issued a `{token_type}` token; only Bearer and DPoP tokens \
         are supported"
    )]
    UnsupportedTokenType {
        /// The `token_type` received.
        token_type: String,
    },
    /// A DPoP-bound token for a request that carried no DPoP proof: there
    /// is no key to present it with.
    #[error("the authorization server issued a DPoP-bound token to a request without a DPoP proof")]
    UnexpectedDpopToken,
    /// The identity provider's token exchange did not issue an ID-JAG.
    #[error(
        "the identity provider issued {issued} instead of an ID-JAG \
         (issued_token_type urn:ietf:params:oauth:token-type:id-jag)"
    )]
    NotIdJag {
        /// The `issued_token_type` received, in backquotes, or `no
        /// issued_token_type`.
        issued: String,
    },
    /// A DPoP proof could not be made.
    #[error("cannot make a DPoP proof for the token request: {reason}")]
    Dpop {
        /// Why (never key material).
        reason: String,
    },
    /// [`enterprise_managed`] needs the MCP authorization server's issuer
    /// (the ID-JAG's audience).
    #[error(
        "the MCP authorization server's issuer is unknown: the ID-JAG needs it as its audience"
    )]
    MissingIssuer,
}

fn refusal(status: u16, error: Option<&str>, description: Option<&str>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!("{e} ({d})"),
        (Some(e), None) => e.to_owned(),
        (None, _) => {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            format!("HTTP {status} {reason}").trim_end().to_owned()
        }
    }
}

/// `client_credentials` (RFC 6749 §4.4): a token for the client itself.
/// `scope` is space-joined (omitted when `scopes` is empty), `resource`
/// (RFC 8707) is sent when given.
pub async fn client_credentials(
    endpoint: &TokenEndpoint,
    auth: &ClientAuth,
    scopes: &[String],
    resource: Option<&str>,
) -> Result<TokenGrant, GrantError> {
    let grant = GrantType::ClientCredentials;
    let mut form = Vec::new();
    push_scope_resource(&mut form, scopes, resource);
    let (status, body) = token_request(endpoint, grant, auth, form).await?;
    token_grant(grant, status, &body, endpoint.dpop.is_some())
}

/// The JWT-bearer grant (RFC 7523 §2.1): `assertion` (a JWT whose
/// audience is the authorization server) for a token. For workload
/// identity (the assertion is the workload's token, e.g. from a file the
/// platform mounts) and for the second leg of [`enterprise_managed`].
pub async fn jwt_bearer(
    endpoint: &TokenEndpoint,
    assertion: &str,
    auth: &ClientAuth,
    scopes: &[String],
    resource: Option<&str>,
) -> Result<TokenGrant, GrantError> {
    let grant = GrantType::JwtBearer;
    let mut form = vec![("assertion", assertion.to_owned())];
    push_scope_resource(&mut form, scopes, resource);
    let (status, body) = token_request(endpoint, grant, auth, form).await?;
    token_grant(grant, status, &body, endpoint.dpop.is_some())
}

/// Token exchange (RFC 8693) at the enterprise identity provider: the
/// user's `id_token` for an ID-JAG (identity assertion authorization
/// grant) for the MCP authorization server `audience` (its issuer) and the
/// MCP server `resource`. Returns the ID-JAG; an answer whose
/// `issued_token_type` is not [`TOKEN_TYPE_ID_JAG`] is refused
/// ([`GrantError::NotIdJag`]).
pub async fn exchange_id_token_for_id_jag(
    idp: &TokenEndpoint,
    idp_auth: &ClientAuth,
    id_token: &str,
    audience: &str,
    resource: &str,
    scopes: &[String],
) -> Result<String, GrantError> {
    let grant = GrantType::TokenExchange;
    let mut form = vec![
        ("requested_token_type", TOKEN_TYPE_ID_JAG.to_owned()),
        ("subject_token", id_token.to_owned()),
        ("subject_token_type", TOKEN_TYPE_ID_TOKEN.to_owned()),
        ("audience", audience.to_owned()),
    ];
    push_scope_resource(&mut form, scopes, Some(resource));
    let (status, body) = token_request(idp, grant, idp_auth, form).await?;
    let issued = str_field(&body, "issued_token_type");
    if issued != Some(TOKEN_TYPE_ID_JAG) {
        return Err(GrantError::NotIdJag {
            issued: issued.map_or_else(
                || "no issued_token_type".to_owned(),
                |t| format!("`{}`", one_line(t, 80)),
            ),
        });
    }
    // The token exchange's `token_type` is `N_A` here (RFC 8693 §2.2.1):
    // the ID-JAG is a grant, not an access token.
    match str_field(&body, "access_token") {
        Some(jag) if !jag.is_empty() => Ok(jag.to_owned()),
        _ => Err(invalid(grant, status, "no access_token (the ID-JAG)")),
    }
}

/// Enterprise-managed authorization (MCP extension, SEP-990): exchanges
/// the user's `id_token` for an ID-JAG at the enterprise identity provider
/// `idp` ([`exchange_id_token_for_id_jag`], the client authenticated there
/// as `idp_auth`), then the ID-JAG for an access token at the MCP
/// authorization server `mcp_as` ([`jwt_bearer`], authenticated as
/// `mcp_auth`). `scopes` and `resource` (the MCP server) go to both. The
/// ID-JAG's audience is `mcp_as.issuer`, which must be known
/// ([`GrantError::MissingIssuer`]). When the exchange fails, the second
/// request is not made.
pub async fn enterprise_managed(
    idp: &TokenEndpoint,
    idp_auth: &ClientAuth,
    id_token: &str,
    mcp_as: &TokenEndpoint,
    mcp_auth: &ClientAuth,
    resource: &str,
    scopes: &[String],
) -> Result<TokenGrant, GrantError> {
    let audience = mcp_as.issuer.as_deref().ok_or(GrantError::MissingIssuer)?;
    let id_jag =
        exchange_id_token_for_id_jag(idp, idp_auth, id_token, audience, resource, scopes).await?;
    jwt_bearer(mcp_as, &id_jag, mcp_auth, scopes, Some(resource)).await
}

fn push_scope_resource(
    form: &mut Vec<(&'static str, String)>,
    scopes: &[String],
    resource: Option<&str>,
) {
    if !scopes.is_empty() {
        form.push(("scope", scopes.join(" ")));
    }
    if let Some(resource) = resource {
        form.push(("resource", resource.to_owned()));
    }
}

/// One POST of `grant_type` and `params` (and the client's
/// authentication) to the token endpoint: the status and the JSON object
/// of a successful answer. Retried only once, with a DPoP endpoint, when
/// the server answers `use_dpop_nonce` with a new nonce (a new client
/// assertion and a new proof then).
async fn token_request(
    endpoint: &TokenEndpoint,
    grant: GrantType,
    auth: &ClientAuth,
    params: Vec<(&'static str, String)>,
) -> Result<(u16, Map<String, Value>), GrantError> {
    let (url, host) = checked_endpoint(&endpoint.token_endpoint)?;
    let network = |e: reqwest::Error| GrantError::Network {
        grant,
        host: host.clone(),
        reason: network_reason(e),
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT);
    if let Some(policy) = &endpoint.policy {
        if !policy.allows_url(&url) {
            return Err(GrantError::Network {
                grant,
                host,
                reason: "address not allowed for this MCP server's authorization server".into(),
            });
        }
        builder = builder.dns_resolver(policy.resolver());
    }
    let client = builder.build().map_err(network)?;
    let mut retried = false;
    let (form, status, bytes) = loop {
        let mut form = vec![("grant_type", grant.as_str().to_owned())];
        form.extend(params.iter().cloned());
        let basic = auth.authenticate(endpoint, &mut form)?;
        let mut request = client
            .post(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .form(&form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let sent_nonce = endpoint
            .dpop
            .as_ref()
            .and_then(|k| k.nonce_for(url.as_str()));
        if let Some(key) = &endpoint.dpop {
            let proof = key
                .proof("POST", url.as_str(), None, sent_nonce.as_deref())
                .map_err(|e| GrantError::Dpop {
                    reason: e.to_string(),
                })?;
            request = request.header(DPOP_HEADER, proof);
        }
        tracing::debug!(
            grant = grant.as_str(),
            %host,
            method = auth.method(),
            dpop = endpoint.dpop.as_ref().map(DpopKey::fingerprint),
            "token request"
        );
        let mut response = request.send().await.map_err(network)?;
        let status = response.status();
        let nonce = match &endpoint.dpop {
            Some(key) => response
                .headers()
                .get(DPOP_NONCE_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|n| key.remember_nonce(url.as_str(), n))
                .map(str::to_owned),
            None => None,
        };
        let Some(bytes) = read_capped(&mut response).await.map_err(network)? else {
            return Err(invalid(
                grant,
                status.as_u16(),
                "the response is larger than 64 KiB",
            ));
        };
        // RFC 9449 §8 says 400; some servers answer 401.
        let wants_nonce = matches!(
            status,
            http::StatusCode::BAD_REQUEST | http::StatusCode::UNAUTHORIZED
        ) && serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|b| b.get("error")?.as_str().map(|e| e == USE_DPOP_NONCE))
            .unwrap_or(false);
        if wants_nonce && !retried && nonce.is_some() && nonce != sent_nonce {
            tracing::debug!("the server wants a DPoP nonce: retrying the token request once");
            retried = true;
            continue;
        }
        break (form, status, bytes);
    };
    let mut sensitive: Vec<&str> = form
        .iter()
        .filter(|(name, _)| SENSITIVE_FIELDS.contains(name))
        .map(|(_, value)| value.as_str())
        .collect();
    sensitive.extend(auth.secret());
    let code = status.as_u16();
    let body = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    if let Some(error) = body.as_ref().and_then(|b| str_field(b, "error")) {
        let description = body
            .as_ref()
            .and_then(|b| str_field(b, "error_description"))
            .map(|d| one_line(&redact(d, &sensitive), MAX_DESCRIPTION))
            .filter(|d| !d.is_empty());
        return Err(GrantError::Refused {
            grant,
            status: code,
            error: Some(one_line(&redact(error, &sensitive), 64)),
            description,
        });
    }
    if status.is_redirection() {
        return Err(invalid(
            grant,
            code,
            &format!("a redirect (HTTP {code}); token requests are not redirected"),
        ));
    }
    if !status.is_success() {
        return Err(GrantError::Refused {
            grant,
            status: code,
            error: None,
            description: None,
        });
    }
    match body {
        Some(body) => Ok((code, body)),
        None => Err(invalid(grant, code, "the body is not a JSON object")),
    }
}

/// The endpoint as a URL, and its host (and port) for messages; refuses
/// plain http off loopback.
fn checked_endpoint(endpoint: &str) -> Result<(Url, String), GrantError> {
    let unusable = |reason| GrantError::InvalidEndpoint {
        endpoint: one_line(&crate::failure::shown_url(endpoint), 120),
        reason,
    };
    let url = Url::parse(endpoint).map_err(|_| unusable("it is not an absolute URL"))?;
    let Some(host) = url.host() else {
        return Err(unusable("it has no host"));
    };
    let name = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => return Err(GrantError::InsecureEndpoint { host: name }),
        _ => return Err(unusable("it is not an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(unusable("it carries user information"));
    }
    if url.fragment().is_some() {
        return Err(unusable("it has a fragment (RFC 6749 §3.2)"));
    }
    Ok((url, name))
}

/// Whether `host` is loopback (`localhost`, `127.0.0.0/8`, `::1`): the
/// only hosts an authorization server endpoint may be plain `http://` on
/// (token endpoints here, every endpoint of a login's authorization
/// server in [`crate::connect_oauth`]).
pub(crate) fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// The body, or `None` past [`MAX_RESPONSE`] bytes.
async fn read_capped(response: &mut reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The root cause of a transport error, without the URL.
fn network_reason(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return format!("no answer within {} s", TIMEOUT.as_secs());
    }
    let mut root: &dyn std::error::Error = &e;
    while let Some(source) = root.source() {
        root = source;
    }
    let cause = one_line(&root.to_string(), 160);
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}

fn invalid(grant: GrantType, status: u16, reason: &str) -> GrantError {
    GrantError::InvalidResponse {
        grant,
        status,
        reason: reason.to_owned(),
    }
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// A token response (RFC 6749 §5.1) as a [`TokenGrant`]: Bearer, or DPoP
/// when the request carried a proof (`dpop`).
fn token_grant(
    grant: GrantType,
    status: u16,
    body: &Map<String, Value>,
    dpop: bool,
) -> Result<TokenGrant, GrantError> {
    let access_token = match str_field(body, "access_token") {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => return Err(invalid(grant, status, "no access_token")),
    };
    let Some(token_type) = str_field(body, "token_type") else {
        return Err(invalid(grant, status, "no token_type"));
    };
    let token_type = if token_type.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else if is_dpop_token_type(token_type) {
        if !dpop {
            return Err(GrantError::UnexpectedDpopToken);
        }
        "DPoP"
    } else {
        return Err(GrantError::UnsupportedTokenType {
            token_type: one_line(token_type, 40),
        });
    };
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(TokenGrant {
        access_token,
        token_type: token_type.to_owned(),
        expires_in,
        scope: str_field(body, "scope").map(str::to_owned),
        refresh_token: str_field(body, "refresh_token").map(str::to_owned),
    })
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `text` with every `sensitive` value (as is, and form-encoded) replaced.
fn redact(text: &str, sensitive: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in sensitive.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "<redacted>");
        let encoded = form_encode(s);
        if encoded != *s {
            out = out.replace(&encoded, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        EcdsaSigningAlgorithm, KeyPair,
    };
    use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
    use base64::{Engine, engine::general_purpose::STANDARD};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    use super::*;

    /// One request the fake token endpoint received.
    #[derive(Debug, Clone)]
    struct Seen {
        authorization: Option<String>,
        form: Vec<(String, String)>,
    }

    /// A token endpoint on 127.0.0.1 that records each request and answers
    /// `status` with `body`.
    struct Fake {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Fake {
        async fn start(status: u16, body: impl Into<String>) -> Fake {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (log, body) = (seen.clone(), body.into());
            let app = Router::new().route(
                "/token",
                post(move |headers: HeaderMap, form: Bytes| {
                    let (log, body) = (log.clone(), body.clone());
                    async move {
                        log.lock().unwrap().push(Seen {
                            authorization: headers
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned()),
                            form: url::form_urlencoded::parse(&form).into_owned().collect(),
                        });
                        (
                            http::StatusCode::from_u16(status).unwrap(),
                            [(http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Fake {
                base: format!("http://{addr}"),
                seen,
            }
        }

        /// Answers with a Bearer token.
        async fn bearer() -> Fake {
            Fake::start(
                200,
                r#"{"access_token":"at-123","token_type":"Bearer","expires_in":3600,
                    "scope":"mcp:read mcp:write","refresh_token":"rt-456"}"#,
            )
            .await
        }

        fn url(&self) -> String {
            format!("{}/token", self.base)
        }

        fn endpoint(&self) -> TokenEndpoint {
            TokenEndpoint::new(self.url()).with_issuer("https://as.example")
        }

        fn requests(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        /// The one request received.
        fn only(&self) -> Seen {
            let all = self.requests();
            assert_eq!(all.len(), 1, "{all:?}");
            all[0].clone()
        }
    }

    /// `form` sorted, to compare with an expected list (extra, missing and
    /// repeated fields all show).
    fn sorted(form: &[(String, String)]) -> Vec<(String, String)> {
        let mut form = form.to_vec();
        form.sort();
        form
    }

    fn expected(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    }

    fn field(seen: &Seen, name: &str) -> String {
        let values: Vec<_> = seen.form.iter().filter(|(k, _)| k == name).collect();
        assert_eq!(values.len(), 1, "{name} in {:?}", seen.form);
        values[0].1.clone()
    }

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A fresh EC key: its PKCS#8 PEM and its public point.
    pub(crate) fn ec_key(alg: &'static EcdsaSigningAlgorithm) -> (String, Vec<u8>) {
        let pair = EcdsaKeyPair::generate(alg).unwrap();
        let der = STANDARD.encode(pair.to_pkcs8v1().unwrap().as_ref());
        let mut pem = "-----BEGIN PRIVATE KEY-----\n".to_owned();
        for line in der.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        (pem, pair.public_key().as_ref().to_vec())
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn secret_basic_form_encodes_id_and_secret() {
        let fake = Fake::bearer().await;
        let auth = ClientAuth::SecretBasic {
            client_id: "my client:1".into(),
            secret: "p:a%ss w+rd/é".into(),
        };
        client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap();
        let seen = fake.only();
        let header = seen.authorization.clone().unwrap();
        let encoded = header.strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my+client%3A1:p%3Aa%25ss+w%2Brd%2F%C3%A9");
        // The server splits at the one raw ':' and form-decodes each part.
        let (id, secret) = decoded.split_once(':').unwrap();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        };
        assert_eq!(decode(id), "my client:1");
        assert_eq!(decode(secret), "p:a%ss w+rd/é");
        // Nothing about the client in the body.
        assert_eq!(
            sorted(&seen.form),
            expected(&[("grant_type", "client_credentials")])
        );
    }

    #[tokio::test]
    async fn secret_post_and_none_put_the_client_in_the_body() {
        let fake = Fake::bearer().await;
        let post = ClientAuth::SecretPost {
            client_id: "bot".into(),
            secret: "s3cret".into(),
        };
        client_credentials(&fake.endpoint(), &post, &[], None)
            .await
            .unwrap();
        let none = ClientAuth::None {
            client_id: "bot".into(),
        };
        client_credentials(&fake.endpoint(), &none, &[], None)
            .await
            .unwrap();
        let seen = fake.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].authorization, None);
        assert_eq!(
            sorted(&seen[0].form),
            expected(&[
                ("grant_type", "client_credentials"),
                ("client_id", "bot"),
                ("client_secret", "s3cret"),
            ])
        );
        assert_eq!(seen[1].authorization, None);
        assert_eq!(
            sorted(&seen[1].form),
            expected(&[("grant_type", "client_credentials"), ("client_id", "bot")])
        );
    }

    #[tokio::test]
    async fn client_credentials_sends_every_field_and_returns_the_token() {
        let fake = Fake::bearer().await;
        let auth = ClientAuth::SecretPost {
            client_id: "bot".into(),
            secret: "s3cret".into(),
        };
        let grant = client_credentials(
            &fake.endpoint(),
            &auth,
            &scopes(&["mcp:read", "mcp:write"]),
            Some("https://mcp.example/mcp"),
        )
        .await
        .unwrap();
        assert_eq!(
            sorted(&fake.only().form),
            expected(&[
                ("grant_type", "client_credentials"),
                ("scope", "mcp:read mcp:write"),
                ("resource", "https://mcp.example/mcp"),
                ("client_id", "bot"),
                ("client_secret", "s3cret"),
            ])
        );
        assert_eq!(
            grant,
            TokenGrant {
                access_token: "at-123".into(),
                token_type: "Bearer".into(),
                expires_in: Some(3600),
                scope: Some("mcp:read mcp:write".into()),
                refresh_token: Some("rt-456".into()),
            }
        );
    }

    #[tokio::test]
    async fn private_key_jwt_assertion_verifies_with_the_public_key() {
        let fake = Fake::bearer().await;
        let (pem, public) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let auth = ClientAuth::private_key_jwt("svc-7", pem, SigningAlgorithm::Es256).unwrap();
        let endpoint = fake.endpoint();
        client_credentials(&endpoint, &auth, &[], None)
            .await
            .unwrap();
        client_credentials(&endpoint, &auth, &[], None)
            .await
            .unwrap();
        // Issuer unknown: the audience is the token endpoint.
        client_credentials(&TokenEndpoint::new(fake.url()), &auth, &[], None)
            .await
            .unwrap();

        let seen = fake.requests();
        assert_eq!(seen.len(), 3);
        let key = DecodingKey::from_ec_der(&public);
        let verify = |seen: &Seen, aud: &str| {
            assert_eq!(seen.authorization, None);
            assert_eq!(field(seen, "client_assertion_type"), CLIENT_ASSERTION_TYPE);
            assert_eq!(field(seen, "grant_type"), "client_credentials");
            assert_eq!(seen.form.len(), 3, "{:?}", seen.form);
            let mut validation = Validation::new(Algorithm::ES256);
            validation.set_audience(&[aud]);
            validation.set_issuer(&["svc-7"]);
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
            let data =
                jsonwebtoken::decode::<Value>(field(seen, "client_assertion"), &key, &validation)
                    .unwrap();
            assert_eq!(data.header.alg, Algorithm::ES256);
            assert_eq!(data.header.kid, None);
            let c = data.claims;
            assert_eq!(c["iss"], "svc-7");
            assert_eq!(c["sub"], "svc-7");
            assert_eq!(c["aud"], aud);
            let iat = c["iat"].as_u64().unwrap();
            assert!(iat.abs_diff(now()) <= 5, "iat {iat}");
            assert_eq!(c["exp"].as_u64().unwrap(), iat + 60);
            let jti = c["jti"].as_str().unwrap().to_owned();
            assert_eq!(jti.len(), 32);
            assert!(jti.chars().all(|c| c.is_ascii_hexdigit()));
            jti
        };
        let first = verify(&seen[0], "https://as.example");
        let second = verify(&seen[1], "https://as.example");
        assert_ne!(first, second, "jti must be fresh per assertion");
        verify(&seen[2], &fake.url());
    }

    #[tokio::test]
    async fn private_key_jwt_sets_kid_and_signs_with_es384() {
        let fake = Fake::bearer().await;
        let (pem, public) = ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING);
        let auth = ClientAuth::PrivateKeyJwt {
            client_id: "svc".into(),
            key_pem: pem,
            algorithm: "es384".parse().unwrap(),
            key_id: Some("key-2".into()),
        };
        client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap();
        let mut validation = Validation::new(Algorithm::ES384);
        validation.set_audience(&["https://as.example"]);
        let data = jsonwebtoken::decode::<Value>(
            field(&fake.only(), "client_assertion"),
            &DecodingKey::from_ec_der(&public),
            &validation,
        )
        .unwrap();
        assert_eq!(data.header.alg, Algorithm::ES384);
        assert_eq!(data.header.kid.as_deref(), Some("key-2"));
    }

    #[tokio::test]
    async fn an_unusable_key_is_named_not_echoed_and_nothing_is_sent() {
        // A P-384 key cannot sign ES256; garbage is no key at all.
        let (p384, _) = ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING);
        for pem in [p384.as_str(), "not a key SECRETBYTES"] {
            let e = ClientAuth::private_key_jwt("svc-9", pem, SigningAlgorithm::Es256)
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                "cannot sign a client assertion with the private key of client `svc-9`: it is \
                 not a PEM-encoded PKCS#8 EC P-256 private key (as ES256 needs)"
            );
            assert!(!e.contains("SECRETBYTES"));
        }
        let (p256, _) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let e = ClientAuth::private_key_jwt("svc", p256, SigningAlgorithm::Rs256).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a PEM-encoded PKCS#8 RSA private key"),
            "{e}"
        );

        // Checked at use too: no request with a key that cannot sign.
        let fake = Fake::bearer().await;
        let auth = ClientAuth::PrivateKeyJwt {
            client_id: "svc-9".into(),
            key_pem: p384,
            algorithm: SigningAlgorithm::Es256,
            key_id: Some("k1".into()),
        };
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("private key of client `svc-9` (kid `k1`)"),
            "{e}"
        );
        assert!(fake.requests().is_empty());

        // From a file: the file is named.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = ClientAuth::private_key_jwt_from_file("svc", &missing, SigningAlgorithm::Es256)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "cannot sign a client assertion with the private key in `{}`: cannot read the file",
                missing.display()
            )),
            "{e}"
        );
        let (pem, _) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let good = dir.path().join("key.pem");
        std::fs::write(&good, pem).unwrap();
        let auth =
            ClientAuth::private_key_jwt_from_file("svc", &good, SigningAlgorithm::Es256).unwrap();
        assert_eq!(auth.method(), "private_key_jwt");
    }

    #[tokio::test]
    async fn jwt_bearer_sends_the_assertion() {
        let fake = Fake::bearer().await;
        let auth = ClientAuth::None {
            client_id: "workload".into(),
        };
        let grant = jwt_bearer(
            &fake.endpoint(),
            "eyJ.workload.jwt",
            &auth,
            &scopes(&["mcp:read"]),
            Some("https://mcp.example/mcp"),
        )
        .await
        .unwrap();
        assert_eq!(grant.access_token, "at-123");
        assert_eq!(
            sorted(&fake.only().form),
            expected(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "eyJ.workload.jwt"),
                ("scope", "mcp:read"),
                ("resource", "https://mcp.example/mcp"),
                ("client_id", "workload"),
            ])
        );
    }

    #[tokio::test]
    async fn a_failed_grant_is_neither_retried_nor_switched() {
        let fake = Fake::start(
            400,
            r#"{"error":"invalid_grant","error_description":"assertion eyJ.workload.jwt expired"}"#,
        )
        .await;
        let auth = ClientAuth::None {
            client_id: "workload".into(),
        };
        let e = jwt_bearer(&fake.endpoint(), "eyJ.workload.jwt", &auth, &[], None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authorization server refused the jwt-bearer grant: invalid_grant (assertion \
             <redacted> expired)"
        );
        assert!(matches!(
            e,
            GrantError::Refused {
                status: 400,
                grant: GrantType::JwtBearer,
                ..
            }
        ));
        let seen = fake.only();
        assert_eq!(
            field(&seen, "grant_type"),
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
    }

    #[tokio::test]
    async fn token_exchange_sends_every_field_and_checks_the_issued_type() {
        let idp = Fake::start(
            200,
            format!(
                r#"{{"access_token":"id.jag.sig","issued_token_type":"{TOKEN_TYPE_ID_JAG}",
                    "token_type":"N_A"}}"#
            ),
        )
        .await;
        let auth = ClientAuth::None {
            client_id: "idp-client".into(),
        };
        let jag = exchange_id_token_for_id_jag(
            &TokenEndpoint::new(idp.url()),
            &auth,
            "user.id.token",
            "https://as.example",
            "https://mcp.example/mcp",
            &scopes(&["mcp:read"]),
        )
        .await
        .unwrap();
        assert_eq!(jag, "id.jag.sig");
        assert_eq!(
            sorted(&idp.only().form),
            expected(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:id-jag"
                ),
                ("subject_token", "user.id.token"),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token"
                ),
                ("audience", "https://as.example"),
                ("resource", "https://mcp.example/mcp"),
                ("scope", "mcp:read"),
                ("client_id", "idp-client"),
            ])
        );

        for (body, issued) in [
            (
                r#"{"access_token":"at","issued_token_type":
                    "urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer"}"#,
                "`urn:ietf:params:oauth:token-type:access_token`",
            ),
            (
                r#"{"access_token":"at","token_type":"Bearer"}"#,
                "no issued_token_type",
            ),
        ] {
            let idp = Fake::start(200, body).await;
            let e = exchange_id_token_for_id_jag(
                &TokenEndpoint::new(idp.url()),
                &auth,
                "user.id.token",
                "https://as.example",
                "https://mcp.example/mcp",
                &[],
            )
            .await
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "the identity provider issued {issued} instead of an ID-JAG \
                     (issued_token_type urn:ietf:params:oauth:token-type:id-jag)"
                )
            );
        }
    }

    #[tokio::test]
    async fn enterprise_managed_runs_both_legs() {
        let idp = Fake::start(
            200,
            format!(
                r#"{{"access_token":"id.jag.sig","issued_token_type":"{TOKEN_TYPE_ID_JAG}",
                    "token_type":"N_A"}}"#
            ),
        )
        .await;
        let mcp_as = Fake::bearer().await;
        let idp_auth = ClientAuth::None {
            client_id: "idp-client".into(),
        };
        let mcp_auth = ClientAuth::SecretBasic {
            client_id: "mcp-client".into(),
            secret: "mcp-secret".into(),
        };
        let grant = enterprise_managed(
            &TokenEndpoint::new(idp.url()),
            &idp_auth,
            "user.id.token",
            &mcp_as.endpoint(),
            &mcp_auth,
            "https://mcp.example/mcp",
            &scopes(&["mcp:read"]),
        )
        .await
        .unwrap();
        assert_eq!(grant.access_token, "at-123");
        let exchange = idp.only();
        assert_eq!(field(&exchange, "audience"), "https://as.example");
        assert_eq!(field(&exchange, "subject_token"), "user.id.token");
        let bearer = mcp_as.only();
        assert_eq!(
            bearer.authorization.as_deref(),
            Some(format!("Basic {}", STANDARD.encode("mcp-client:mcp-secret")).as_str())
        );
        assert_eq!(
            sorted(&bearer.form),
            expected(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "id.jag.sig"),
                ("scope", "mcp:read"),
                ("resource", "https://mcp.example/mcp"),
            ])
        );

        // The issuer is the ID-JAG's audience: without it, nothing is sent.
        let e = enterprise_managed(
            &TokenEndpoint::new(idp.url()),
            &idp_auth,
            "user.id.token",
            &TokenEndpoint::new(mcp_as.url()),
            &mcp_auth,
            "https://mcp.example/mcp",
            &[],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, GrantError::MissingIssuer), "{e}");
        assert_eq!(idp.requests().len(), 1);
    }

    #[tokio::test]
    async fn enterprise_managed_stops_when_the_exchange_fails() {
        let idp = Fake::start(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid ID token"}"#,
        )
        .await;
        let mcp_as = Fake::bearer().await;
        let auth = ClientAuth::None {
            client_id: "c".into(),
        };
        let e = enterprise_managed(
            &TokenEndpoint::new(idp.url()),
            &auth,
            "user.id.token",
            &mcp_as.endpoint(),
            &auth,
            "https://mcp.example/mcp",
            &[],
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the identity provider refused the token exchange: invalid_grant (Invalid ID token)"
        );
        assert_eq!(idp.requests().len(), 1);
        assert!(mcp_as.requests().is_empty());
    }

    #[tokio::test]
    async fn an_oauth_error_names_the_code_and_description_without_the_secret() {
        let fake = Fake::start(
            401,
            r#"{"error":"invalid_client","error_description":
                "Client authentication failed: got s3cr3t/value\n\tand s3cr3t%2Fvalue"}"#,
        )
        .await;
        let auth = ClientAuth::SecretBasic {
            client_id: "bot".into(),
            secret: "s3cr3t/value".into(),
        };
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authorization server refused the client_credentials grant: invalid_client \
             (Client authentication failed: got <redacted> and <redacted>)"
        );
        match e {
            GrantError::Refused {
                status,
                error,
                description,
                ..
            } => {
                assert_eq!(status, 401);
                assert_eq!(error.as_deref(), Some("invalid_client"));
                assert!(
                    description
                        .unwrap()
                        .starts_with("Client authentication failed")
                );
            }
            other => panic!("{other:?}"),
        }

        // A long description is cut to one short line.
        let long = format!(
            r#"{{"error":"invalid_scope","error_description":"{}"}}"#,
            "x".repeat(5000)
        );
        let fake = Fake::start(400, long).await;
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        let GrantError::Refused { description, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(description.as_deref().unwrap().chars().count(), 201);
        assert!(e.to_string().len() < 300);

        // No OAuth error in the body: the status.
        let fake = Fake::start(503, "<html>down</html>").await;
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authorization server refused the client_credentials grant: HTTP 503 Service \
             Unavailable"
        );
    }

    #[tokio::test]
    async fn plain_http_is_refused_off_loopback() {
        let auth = ClientAuth::SecretPost {
            client_id: "bot".into(),
            secret: "s3cret".into(),
        };
        let e = client_credentials(
            &TokenEndpoint::new("http://auth.example.com:8080/token?x=s3cret"),
            &auth,
            &[],
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, GrantError::InsecureEndpoint { host } if host == "auth.example.com:8080"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("`auth.example.com:8080` over plain http")
        );
        assert!(!e.to_string().contains("s3cret"));

        for url in [
            "http://localhost:9/token",
            "http://127.0.0.1/token",
            "http://127.3.2.1/token",
            "http://[::1]:9/token",
            "https://auth.example.com/token",
        ] {
            assert!(checked_endpoint(url).is_ok(), "{url}");
        }
        for url in [
            "http://10.0.0.1/token",
            "http://[::2]/token",
            "http://localhost.example.com/token",
        ] {
            assert!(
                matches!(
                    checked_endpoint(url),
                    Err(GrantError::InsecureEndpoint { .. })
                ),
                "{url}"
            );
        }
        for url in [
            "ftp://auth.example.com/token",
            "/token",
            "https://user:pw@auth.example.com/token",
            "https://auth.example.com/token#f",
        ] {
            assert!(
                matches!(
                    checked_endpoint(url),
                    Err(GrantError::InvalidEndpoint { .. })
                ),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn only_bearer_and_dpop_tokens_are_accepted() {
        let auth = ClientAuth::None {
            client_id: "c".into(),
        };
        // DPoP-bound without a proof in the request: no key to present it.
        let fake = Fake::start(200, r#"{"access_token":"at","token_type":"DPoP"}"#).await;
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        assert!(matches!(&e, GrantError::UnexpectedDpopToken), "{e}");
        // With a proof: a DPoP token.
        let key = DpopKey::generate().unwrap();
        let grant = client_credentials(&fake.endpoint().with_dpop(key), &auth, &[], None)
            .await
            .unwrap();
        assert_eq!(grant.token_type, "DPoP");
        assert!(grant.is_dpop());
        // Other types are refused.
        let fake = Fake::start(200, r#"{"access_token":"at","token_type":"mac"}"#).await;
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, GrantError::UnsupportedTokenType { token_type } if token_type == "mac"),
            "{e}"
        );

        let fake = Fake::start(
            200,
            r#"{"access_token":"at","token_type":"bearer","expires_in":"60"}"#,
        )
        .await;
        let grant = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap();
        assert_eq!(grant.token_type, "Bearer");
        assert!(!grant.is_dpop());
        assert_eq!(grant.expires_in, Some(60));
        assert_eq!(grant.refresh_token, None);

        let fake = Fake::start(200, r#"{"access_token":"at"}"#).await;
        let e = client_credentials(&fake.endpoint(), &auth, &[], None)
            .await
            .unwrap_err();
        assert!(e.to_string().ends_with("no token_type"), "{e}");
    }

    /// A token endpoint that checks DPoP proofs with the server-side
    /// verifier and wants `nonce` in them (`always`: challenges every
    /// time); records each proof's verdict (its nonce) and form.
    async fn dpop_token_endpoint(
        nonce: &'static str,
        always: bool,
    ) -> (
        TokenEndpoint,
        Arc<Mutex<Vec<(Result<Option<String>, String>, Vec<(String, String)>)>>>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let at = Arc::new(Mutex::new(String::new()));
        let (log, url) = (seen.clone(), at.clone());
        let app = Router::new().route(
            "/token",
            post(move |headers: HeaderMap, form: Bytes| {
                let (log, url) = (log.clone(), url.clone());
                async move {
                    use axum::response::IntoResponse;
                    let url = url.lock().unwrap().clone();
                    let verdict = headers
                        .get("dpop")
                        .ok_or_else(|| "no proof".to_owned())
                        .and_then(|p| {
                            mcp_auth_jwt::DpopVerifier::default()
                                .verify(p.to_str().unwrap(), "POST", &url, None, None, now())
                                .map_err(|e| e.to_string())
                        })
                        .map(|p| p.nonce);
                    let form = url::form_urlencoded::parse(&form).into_owned().collect();
                    log.lock().unwrap().push((verdict.clone(), form));
                    // Always: a new nonce with every challenge.
                    let count = log.lock().unwrap().len();
                    let next = if always {
                        format!("{nonce}-{count}")
                    } else {
                        nonce.to_owned()
                    };
                    match verdict {
                        Ok(n) if !always && n.as_deref() == Some(nonce) => (
                            http::StatusCode::OK,
                            [("dpop-nonce", "next")],
                            r#"{"access_token":"at","token_type":"DPoP","expires_in":60}"#,
                        )
                            .into_response(),
                        _ => (
                            http::StatusCode::BAD_REQUEST,
                            [("dpop-nonce", next)],
                            r#"{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}"#,
                        )
                            .into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *at.lock().unwrap() = format!("http://{addr}/token");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (TokenEndpoint::new(format!("http://{addr}/token")), seen)
    }

    /// With DPoP: a proof the server's verifier accepts; a
    /// `use_dpop_nonce` answer is retried once with the nonce (a new
    /// client assertion too), and the nonce of the answer is kept.
    #[tokio::test]
    async fn dpop_proofs_and_one_nonce_retry() {
        let (endpoint, seen) = dpop_token_endpoint("as-nonce", false).await;
        let key = DpopKey::generate().unwrap();
        let (pem, _) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let auth = ClientAuth::private_key_jwt("svc", pem, SigningAlgorithm::Es256).unwrap();
        let grant = client_credentials(&endpoint.clone().with_dpop(key.clone()), &auth, &[], None)
            .await
            .unwrap();
        assert!(grant.is_dpop());
        let seen = seen.lock().unwrap().clone();
        let verdicts: Vec<_> = seen.iter().map(|(v, _)| v.clone()).collect();
        assert_eq!(verdicts, [Ok(None), Ok(Some("as-nonce".to_owned()))]);
        let assertion = |i: usize| {
            seen[i]
                .1
                .iter()
                .find(|(k, _)| k == "client_assertion")
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_ne!(assertion(0), assertion(1), "a new client assertion");
        assert_eq!(
            key.nonce_for(&endpoint.token_endpoint).as_deref(),
            Some("next")
        );
    }

    /// A server that keeps answering `use_dpop_nonce`, with a new nonce
    /// each time, gets one retry; its refusal is the error.
    #[tokio::test]
    async fn the_dpop_nonce_retry_happens_once() {
        let (endpoint, seen) = dpop_token_endpoint("as-nonce", true).await;
        let auth = ClientAuth::None {
            client_id: "c".into(),
        };
        let e = tokio::time::timeout(
            Duration::from_secs(10),
            client_credentials(
                &endpoint.with_dpop(DpopKey::generate().unwrap()),
                &auth,
                &[],
                None,
            ),
        )
        .await
        .expect("the client stopped retrying")
        .unwrap_err();
        assert!(
            matches!(&e, GrantError::Refused { error: Some(code), .. } if code == "use_dpop_nonce"),
            "{e}"
        );
        let verdicts: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(v, _)| v.clone())
            .collect();
        assert_eq!(verdicts, [Ok(None), Ok(Some("as-nonce-1".to_owned()))]);
    }

    #[tokio::test]
    async fn unexpected_answers_are_invalid_responses() {
        let auth = ClientAuth::None {
            client_id: "c".into(),
        };
        for (status, body, reason) in [
            (
                200,
                "<html>hi</html>".to_owned(),
                "the body is not a JSON object",
            ),
            (200, "[1]".to_owned(), "the body is not a JSON object"),
            (
                200,
                r#"{"token_type":"Bearer"}"#.to_owned(),
                "no access_token",
            ),
            (
                200,
                format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_RESPONSE)),
                "the response is larger than 64 KiB",
            ),
            (
                302,
                String::new(),
                "a redirect (HTTP 302); token requests are not redirected",
            ),
        ] {
            let fake = Fake::start(status, body).await;
            let e = client_credentials(&fake.endpoint(), &auth, &[], None)
                .await
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "the authorization server gave an unusable answer to the client_credentials \
                     grant: {reason}"
                )
            );
        }
    }

    #[tokio::test]
    async fn a_network_failure_names_the_host_not_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let auth = ClientAuth::None {
            client_id: "c".into(),
        };
        let endpoint = TokenEndpoint::new(format!("http://{addr}/token?secret=q"));
        let e = client_credentials(&endpoint, &auth, &[], None)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "the client_credentials grant request to `{addr}` failed: cannot connect"
            )),
            "{text}"
        );
        assert!(!text.contains("secret=q"), "{text}");
    }

    #[test]
    fn debug_shows_no_secret_key_or_token() {
        let (pem, _) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let key_line = pem.lines().nth(1).unwrap().to_owned();
        let all = [
            ClientAuth::None {
                client_id: "id-1".into(),
            },
            ClientAuth::SecretBasic {
                client_id: "id-1".into(),
                secret: "s3cret-basic".into(),
            },
            ClientAuth::SecretPost {
                client_id: "id-1".into(),
                secret: "s3cret-post".into(),
            },
            ClientAuth::private_key_jwt("id-1", pem, SigningAlgorithm::Es256).unwrap(),
        ];
        for auth in &all {
            let shown = format!("{auth:?}");
            assert!(shown.contains("id-1"), "{shown}");
            for hidden in [
                "s3cret-basic",
                "s3cret-post",
                "PRIVATE KEY",
                key_line.as_str(),
            ] {
                assert!(!shown.contains(hidden), "{shown}");
            }
        }
        let grant = TokenGrant {
            access_token: "at-secret".into(),
            token_type: "Bearer".into(),
            expires_in: Some(5),
            scope: Some("mcp:read".into()),
            refresh_token: Some("rt-secret".into()),
        };
        let shown = format!("{grant:?}");
        assert!(
            !shown.contains("at-secret") && !shown.contains("rt-secret"),
            "{shown}"
        );
        assert!(shown.contains("mcp:read"), "{shown}");
    }

    /// An endpoint refused for carrying user information is named without
    /// it (an attack pass: the password was printed).
    #[test]
    fn a_refused_endpoint_is_named_without_its_password() {
        let e = checked_endpoint("https://svc:TOPSECRET@idp.example/token?key=Q").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("https://idp.example/token"), "{shown}");
        assert!(shown.contains("user information"), "{shown}");
        assert!(
            !shown.contains("TOPSECRET") && !shown.contains("svc"),
            "{shown}"
        );
        assert!(!shown.contains("key=Q"), "{shown}");
    }

    #[test]
    fn choose_follows_the_metadata() {
        let list = |m: &[&str]| scopes(m);
        let secret = || Some("s".to_owned());
        let method = |auth: ClientAuth| auth.method();
        assert_eq!(
            method(ClientAuth::choose("c", secret(), None)),
            "client_secret_basic"
        );
        assert_eq!(
            method(ClientAuth::choose(
                "c",
                secret(),
                Some(&list(&["client_secret_post", "client_secret_basic"]))
            )),
            "client_secret_basic"
        );
        assert_eq!(
            method(ClientAuth::choose(
                "c",
                secret(),
                Some(&list(&["client_secret_post"]))
            )),
            "client_secret_post"
        );
        assert_eq!(
            method(ClientAuth::choose(
                "c",
                secret(),
                Some(&list(&["private_key_jwt"]))
            )),
            "client_secret_basic"
        );
        let none = ClientAuth::choose("c", None, Some(&list(&["client_secret_basic"])));
        assert_eq!(none.method(), "none");
        assert_eq!(none.client_id(), "c");
    }

    #[test]
    fn algorithms_parse_by_jwa_name() {
        for alg in SigningAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<SigningAlgorithm>().unwrap(), alg);
        }
        assert_eq!(
            "eddsa".parse::<SigningAlgorithm>().unwrap(),
            SigningAlgorithm::EdDsa
        );
        let e = "HS256".parse::<SigningAlgorithm>().unwrap_err();
        assert!(
            e.to_string().starts_with("`HS256` is not a supported"),
            "{e}"
        );
    }
}
