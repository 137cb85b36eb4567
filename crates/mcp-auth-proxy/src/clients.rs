//! The clients of the facade's authorization server: who may ask for
//! tokens, where authorization codes may be sent, and how a client comes to
//! be known — pre-registered in the configuration, registered dynamically
//! (RFC 7591), or named by the URL of its client ID metadata document (the
//! MCP authorization spec's CIMD).
//!
//! ```
//! use mcp_auth_proxy::clients::{
//!     ClientKind, RegistrationPolicy, TokenEndpointAuthMethod, register,
//! };
//! use serde_json::json;
//!
//! // What an MCP client POSTs to the registration endpoint.
//! let request = json!({
//!     "client_name": "Example MCP client",
//!     "redirect_uris": ["http://127.0.0.1:33418/callback"],
//!     "token_endpoint_auth_method": "none",
//! });
//! let now = 1_700_000_000;
//! let (client, secret, body) = register(&request, &RegistrationPolicy::default(), now)?;
//! assert_eq!(client.kind, ClientKind::Dynamic);
//! assert_eq!(client.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
//! assert!(secret.is_none()); // public client: no secret issued
//! assert_eq!(body["client_id"], client.client_id.as_str()); // the 201 body
//!
//! // Loopback redirect URIs match on any port (RFC 8252 §7.3); everything
//! // else must match exactly.
//! assert!(client.allows_redirect_uri("http://127.0.0.1:50123/callback"));
//! assert!(!client.allows_redirect_uri("http://127.0.0.1:50123/callback/"));
//!
//! // Stored as JSON by the caller; no plain secret ever inside.
//! let stored = serde_json::to_string(&client).unwrap();
//! let back: mcp_auth_proxy::clients::ClientInfo = serde_json::from_str(&stored).unwrap();
//! assert_eq!(back, client);
//! # Ok::<(), mcp_auth_proxy::clients::RegistrationError>(())
//! ```
//!
//! - [`ClientInfo`]: what the facade knows about a client (serde, so the
//!   caller can persist it); a client secret is kept only as a SHA-256
//!   digest ([`SecretHash`]) and checked in constant time.
//! - [`register`]: RFC 7591 dynamic registration with the validation rules
//!   of [`RegistrationPolicy`]; errors are RFC 7591 §3.2.2 error responses
//!   ([`RegistrationError`]).
//! - [`redirect_uri_allowed`]: exact string matching, except that loopback
//!   `http` redirect URIs match on any port.
//! - [`fetch_metadata_document`]: fetches a client ID metadata document
//!   behind an SSRF guard ([`FetchGuard`]); [`MetadataDocumentCache`] keeps
//!   fetched documents for their (bounded) max age.
//!
//! Persistence is the caller's: nothing here stores anything except the
//! optional in-memory [`MetadataDocumentCache`].

mod cimd;
mod net;
mod redirect;
mod registration;

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use cimd::{
    CimdError, FetchGuard, MetadataDocumentCache, fetch_metadata_document,
    is_metadata_document_client_id,
};
pub use net::{AddressClass, InvalidNetwork, IpNetwork, classify_address};
pub(crate) use redirect::is_loopback_redirect;
pub use redirect::redirect_uri_allowed;
pub use registration::{RegistrationError, RegistrationPolicy, register};

/// How a client authenticates at the token endpoint (RFC 7591 §2,
/// `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client (native app, CLI, most MCP clients): no secret.
    None,
    /// A client secret in HTTP Basic authentication (the RFC 7591 default).
    ClientSecretBasic,
    /// A client secret in the form body.
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    /// The registered name (`none`, `client_secret_basic`,
    /// `client_secret_post`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }

    /// The method of that registered name, if it is one of the three.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            _ => None,
        }
    }

    /// Whether the method authenticates with a client secret.
    pub fn uses_secret(self) -> bool {
        !matches!(self, Self::None)
    }
}

impl fmt::Display for TokenEndpointAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grant type a client may use (RFC 7591 §2, `grant_types`); the facade
/// supports these two only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// The authorization code grant (with PKCE, OAuth 2.1).
    AuthorizationCode,
    /// The refresh token grant.
    RefreshToken,
}

impl GrantType {
    /// The registered name (`authorization_code`, `refresh_token`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }

    /// The grant type of that registered name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the facade came to know a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Listed in the facade's configuration.
    Preregistered,
    /// Registered through the RFC 7591 registration endpoint.
    Dynamic,
    /// The client id is the https URL of a client ID metadata document.
    MetadataDocument,
}

/// The SHA-256 digest of a client secret. Serialized as lowercase hex; its
/// `Debug` output hides the digest. Comparison is constant-time.
///
/// ```
/// use mcp_auth_proxy::clients::SecretHash;
/// let h = SecretHash::of("s3cr3t-of-enough-entropy");
/// assert!(h.matches("s3cr3t-of-enough-entropy"));
/// assert!(!h.matches("s3cr3t-of-enough-entropy "));
/// assert_eq!(format!("{h:?}"), "SecretHash(..)");
/// ```
///
/// A plain (unsalted) hash suffices because the facade's secrets are 256
/// random bits; pre-registered secrets must be equally random.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Whether `presented` is the secret, in constant time (the presented
    /// secret is hashed first, so its length does not leak either).
    pub fn matches(&self, presented: &str) -> bool {
        Self::of(presented).0.ct_eq(&self.0).into()
    }

    /// The digest as lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, InvalidSecretHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| InvalidSecretHash)?;
        Ok(Self(out))
    }
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretHash {}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl TryFrom<String> for SecretHash {
    type Error = InvalidSecretHash;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_hex(&s)
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> Self {
        h.to_hex()
    }
}

/// A stored secret digest is not 64 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a client secret digest must be 64 hex characters (SHA-256)")]
pub struct InvalidSecretHash;

/// What the facade knows about a client. Serializable, so the caller can
/// store it as JSON; it never holds a plain client secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client identifier: random for dynamic clients, the document URL
    /// for metadata-document clients, configured for pre-registered ones.
    pub client_id: String,
    /// SHA-256 of the client secret, for clients that authenticate with
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_sha256: Option<SecretHash>,
    /// The registered redirect URIs (matched by
    /// [`redirect_uri_allowed`]).
    pub redirect_uris: Vec<String>,
    /// The name shown on the consent page: sanitized (no control or
    /// bidirectional-override characters, whitespace collapsed, bounded);
    /// the client id when the client gave none.
    pub client_name: String,
    /// The client's home page (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// The client's logo (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Whether the client named [`token_endpoint_auth_method`](Self::token_endpoint_auth_method)
    /// itself (at registration, or in its `MCP_PROXY_CLIENTS` entry): then
    /// it authenticates by that method only. A confidential client that
    /// named none has `client_secret_basic` (RFC 7591 §2) and may also
    /// send its secret in the form, as clients that ignore the registration
    /// response's method do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_method_named: bool,
    /// The grants the client may use (always includes
    /// `authorization_code` for registered clients).
    pub grant_types: Vec<GrantType>,
    /// The scopes the client asked for at registration (space-separated,
    /// normalized), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How the client came to be known.
    pub kind: ClientKind,
    /// When the client was registered (metadata documents: fetched), in
    /// unix seconds.
    pub registered_at: u64,
    /// When the registration ends (metadata documents: when the document
    /// must be fetched again), in unix seconds; `None` for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl ClientInfo {
    /// A pre-registered public client (`none`) allowed both grants, never
    /// expiring. Check its redirect URIs with
    /// [`RegistrationPolicy::validate_redirect_uri`] when loading them from
    /// configuration.
    ///
    /// ```
    /// use mcp_auth_proxy::clients::{ClientInfo, ClientKind};
    /// let c = ClientInfo::preregistered(
    ///     "claude-desktop",
    ///     "Claude Desktop",
    ///     vec!["http://localhost/callback".into()],
    /// )
    /// .with_client_secret("a-long-random-secret-from-the-vault");
    /// assert_eq!(c.kind, ClientKind::Preregistered);
    /// assert!(c.verify_secret("a-long-random-secret-from-the-vault"));
    /// assert!(c.allows_redirect_uri("http://localhost:4711/callback"));
    /// ```
    pub fn preregistered(
        client_id: impl Into<String>,
        client_name: impl Into<String>,
        redirect_uris: Vec<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret_sha256: None,
            redirect_uris,
            client_name: client_name.into(),
            client_uri: None,
            logo_uri: None,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            auth_method_named: false,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scope: None,
            kind: ClientKind::Preregistered,
            registered_at: 0,
            expires_at: None,
        }
    }

    /// Makes the client confidential: stores the digest of `secret` and, if
    /// the client was public, switches it to `client_secret_basic`.
    pub fn with_client_secret(mut self, secret: &str) -> Self {
        self.client_secret_sha256 = Some(SecretHash::of(secret));
        if self.token_endpoint_auth_method == TokenEndpointAuthMethod::None {
            self.token_endpoint_auth_method = TokenEndpointAuthMethod::ClientSecretBasic;
        }
        self
    }

    /// Whether `presented` is this client's secret (constant-time). Always
    /// `false` for clients without a secret.
    pub fn verify_secret(&self, presented: &str) -> bool {
        self.client_secret_sha256
            .as_ref()
            .is_some_and(|h| h.matches(presented))
    }

    /// Whether the client must authenticate at the token endpoint.
    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method.uses_secret()
    }

    /// Whether the registration has ended at `now` (unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Whether an authorization request may name `presented` as its
    /// redirect URI (see [`redirect_uri_allowed`]).
    pub fn allows_redirect_uri(&self, presented: &str) -> bool {
        redirect_uri_allowed(&self.redirect_uris, presented)
    }

    /// Whether the client may use `grant`.
    pub fn allows_grant_type(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The client's registered metadata as RFC 7591 JSON, without any
    /// secret (what the registration response echoes).
    pub fn public_metadata(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("client_id".into(), self.client_id.clone().into());
        m.insert("redirect_uris".into(), self.redirect_uris.clone().into());
        m.insert("client_name".into(), self.client_name.clone().into());
        if let Some(u) = &self.client_uri {
            m.insert("client_uri".into(), u.clone().into());
        }
        if let Some(u) = &self.logo_uri {
            m.insert("logo_uri".into(), u.clone().into());
        }
        m.insert(
            "token_endpoint_auth_method".into(),
            self.token_endpoint_auth_method.as_str().into(),
        );
        m.insert(
            "grant_types".into(),
            self.grant_types
                .iter()
                .map(|g| serde_json::Value::from(g.as_str()))
                .collect(),
        );
        m.insert("response_types".into(), serde_json::json!(["code"]));
        if let Some(s) = &self.scope {
            m.insert("scope".into(), s.clone().into());
        }
        serde_json::Value::Object(m)
    }
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_round_trips_as_hex_and_hides_itself() {
        let h = SecretHash::of("x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json.len(), 66); // 64 hex + quotes
        let back: SecretHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<SecretHash>("\"abcd\"").is_err());
        assert!(!format!("{h:?}").contains(&h.to_hex()));
    }

    #[test]
    fn client_without_secret_never_verifies() {
        let c = ClientInfo::preregistered("c", "C", vec![]);
        assert!(!c.verify_secret(""));
        assert!(!c.is_confidential());
        let c = c.with_client_secret("");
        assert!(c.verify_secret(""));
        assert!(!c.verify_secret("x"));
        assert!(c.is_confidential());
    }

    #[test]
    fn expiry_is_inclusive_of_the_end() {
        let mut c = ClientInfo::preregistered("c", "C", vec![]);
        assert!(!c.is_expired(u64::MAX));
        c.expires_at = Some(100);
        assert!(!c.is_expired(99));
        assert!(c.is_expired(100));
    }

    #[test]
    fn stored_json_uses_registered_names() {
        let c = ClientInfo::preregistered("c", "C", vec!["https://a.example/cb".into()])
            .with_client_secret("s");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
        assert_eq!(v["grant_types"][1], "refresh_token");
        assert_eq!(v["kind"], "preregistered");
        assert_eq!(v["client_secret_sha256"], SecretHash::of("s").to_hex());
        assert!(v.get("expires_at").is_none());
        assert_eq!(
            serde_json::to_value(ClientKind::MetadataDocument).unwrap(),
            "metadata_document"
        );
    }
}
