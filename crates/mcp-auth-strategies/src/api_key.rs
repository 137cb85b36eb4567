//! The `api_key` strategy.

use async_trait::async_trait;
use mcp_auth_core::{
    AuthError, AuthRequest, Authenticator, ChallengeScheme, Principal,
    settings::{ConfigError, Lookup},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only header API keys are read from.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// Plain keys shorter than this are refused at configuration time: a short
/// key can be guessed. Keys given as `sha256:<hex>` are not checked (their
/// length is unknown).
pub const MIN_PLAIN_KEY_LEN: usize = 16;

/// Query parameters that look like credentials. They are never read; their
/// presence is logged so operators see misconfigured clients.
const QUERY_CREDENTIAL_NAMES: &[&str] = &["api_key", "apikey", "key", "access_token", "token"];

/// A bad `MCP_API_KEYS` list. Messages name the position of the entry at
/// fault, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// No keys at all.
    #[error("no API keys given (expected a comma-separated list)")]
    Empty,
    /// A plain key is too short.
    #[error(
        "key #{position} is shorter than {MIN_PLAIN_KEY_LEN} characters; use a long random key (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// 1-based position in the list.
        position: usize,
    },
    /// A `sha256:` entry is not 64 hex digits.
    #[error("key #{position} starts with sha256: but is not followed by 64 hex digits")]
    BadDigest {
        /// 1-based position in the list.
        position: usize,
    },
    /// A key contains characters an HTTP header cannot carry.
    #[error("key #{position} contains characters that cannot be sent in an HTTP header")]
    NotHeaderSafe {
        /// 1-based position in the list.
        position: usize,
    },
}

/// Static API keys presented in the `X-API-Key` header.
///
/// Keys are kept only as SHA-256 digests and compared in constant time; a
/// key may be configured as `sha256:<hex digest>` so the plain key never sits
/// in configuration. Keys in the query string are never accepted. A failed
/// attempt is logged with the peer address and a fingerprint of the presented
/// key (the first 12 hex digits of its SHA-256), never the key.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_auth_core::{AuthError, AuthRequest, Authenticator};
/// use mcp_auth_strategies::ApiKeyAuthenticator;
///
/// let auth = ApiKeyAuthenticator::from_list("correct-horse-battery-staple").unwrap();
/// let ok = AuthRequest::builder().header("X-API-Key", "correct-horse-battery-staple").build();
/// assert!(auth.authenticate(&ok).await.is_ok());
///
/// let in_query = AuthRequest::builder().uri("/mcp?api_key=correct-horse-battery-staple").build();
/// assert_eq!(auth.authenticate(&in_query).await.unwrap_err(), AuthError::MissingCredentials);
/// # }
/// ```
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("keys", &self.digests.len())
            .finish()
    }
}

impl ApiKeyAuthenticator {
    /// Parses a comma-separated list of keys (`MCP_API_KEYS` syntax).
    pub fn from_list(list: &str) -> Result<Self, ApiKeyError> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Self::new(entries)
    }

    /// Builds from individual key entries (plain keys or `sha256:<hex>`).
    pub fn new<I, S>(entries: I) -> Result<Self, ApiKeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut digests = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let entry = entry.as_ref();
            let position = i + 1;
            if let Some(hex_digest) = entry.strip_prefix("sha256:") {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut digest)
                    .map_err(|_| ApiKeyError::BadDigest { position })?;
                digests.push(digest);
            } else {
                if entry.chars().count() < MIN_PLAIN_KEY_LEN {
                    return Err(ApiKeyError::TooShort { position });
                }
                if http::HeaderValue::from_str(entry).is_err() || entry.trim() != entry {
                    return Err(ApiKeyError::NotHeaderSafe { position });
                }
                digests.push(Sha256::digest(entry.as_bytes()).into());
            }
        }
        if digests.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        Ok(Self { digests })
    }

    /// Reads `MCP_API_KEYS`; `Ok(None)` when it is unset.
    pub fn from_settings(settings: &dyn Lookup) -> Result<Option<Self>, ConfigError> {
        match settings.get("MCP_API_KEYS") {
            None => Ok(None),
            Some(list) => Self::from_list(&list)
                .map(Some)
                .map_err(|e| ConfigError::new("MCP_API_KEYS", e.to_string())),
        }
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Always false: an authenticator cannot be built without keys.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    fn find(&self, presented: &[u8]) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Compare against every key, whatever matched, so timing says nothing
        // about which key (or how much of one) matched.
        let mut found = None;
        for (i, d) in self.digests.iter().enumerate() {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(i);
            }
        }
        found
    }
}

/// A short, non-reversible fingerprint of a key for logs: the first 12 hex
/// digits of its SHA-256.
///
/// ```
/// assert_eq!(mcp_auth_strategies::fingerprint(b"password"), "5e884898da28");
/// ```
pub fn fingerprint(key: &[u8]) -> String {
    digest_fingerprint(&Sha256::digest(key).into())
}

fn digest_fingerprint(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..6])
}

#[async_trait]
impl Authenticator for ApiKeyAuthenticator {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        let mut values = req.headers.get_all(API_KEY_HEADER).iter();
        let Some(value) = values.next() else {
            if let Some(q) = req.uri.query()
                && q.split('&').any(|kv| {
                    let name = kv.split('=').next().unwrap_or_default();
                    QUERY_CREDENTIAL_NAMES
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n))
                })
            {
                tracing::warn!(
                    peer = %req.peer_display(),
                    "credential-like query parameter ignored: API keys are accepted in the X-API-Key header only"
                );
            }
            return Err(AuthError::MissingCredentials);
        };
        if values.next().is_some() {
            return Err(AuthError::invalid_request("more than one X-API-Key header"));
        }
        let presented = value.as_bytes();
        match self.find(presented) {
            Some(i) => {
                let fp = digest_fingerprint(&self.digests[i]);
                let mut claims = serde_json::Map::new();
                claims.insert("key_fingerprint".into(), fp.clone().into());
                Ok(Principal::new(format!("api-key:{fp}"), "api_key").with_claims(claims))
            }
            None => {
                tracing::warn!(
                    peer = %req.peer_display(),
                    key_fingerprint = %fingerprint(presented),
                    "API key rejected"
                );
                Err(AuthError::invalid_token("unknown API key"))
            }
        }
    }

    fn name(&self) -> &str {
        "api_key"
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        vec![ChallengeScheme::ApiKey {
            header: API_KEY_HEADER.to_owned(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k-0123456789abcdef";

    #[tokio::test]
    async fn accepts_plain_and_digest_keys_with_the_same_identity() {
        let digest = hex::encode(Sha256::digest(KEY.as_bytes()));
        let plain = ApiKeyAuthenticator::from_list(KEY).unwrap();
        let hashed = ApiKeyAuthenticator::from_list(&format!("sha256:{digest}")).unwrap();
        let req = AuthRequest::builder().header("x-api-key", KEY).build();
        let a = plain.authenticate(&req).await.unwrap();
        let b = hashed.authenticate(&req).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.subject, format!("api-key:{}", &digest[..12]));
        assert_eq!(a.claims["key_fingerprint"], digest[..12]);
    }

    #[tokio::test]
    async fn rejections() {
        let auth = ApiKeyAuthenticator::from_list(&format!("other-key-000000000, {KEY}")).unwrap();
        assert_eq!(auth.len(), 2);
        let cases = [
            (
                AuthRequest::builder().build(),
                AuthError::MissingCredentials,
            ),
            (
                AuthRequest::builder()
                    .uri(&format!("/mcp?api_key={KEY}"))
                    .build(),
                AuthError::MissingCredentials,
            ),
            (
                AuthRequest::builder()
                    .header("authorization", &format!("Bearer {KEY}"))
                    .build(),
                AuthError::MissingCredentials,
            ),
            (
                AuthRequest::builder().header("x-api-key", "nope").build(),
                AuthError::invalid_token("unknown API key"),
            ),
            (
                AuthRequest::builder()
                    .header("x-api-key", &format!("{KEY} "))
                    .build(),
                AuthError::invalid_token("unknown API key"),
            ),
            (
                AuthRequest::builder()
                    .header("x-api-key", KEY)
                    .header("x-api-key", KEY)
                    .build(),
                AuthError::invalid_request("more than one X-API-Key header"),
            ),
        ];
        for (req, want) in cases {
            assert_eq!(auth.authenticate(&req).await.unwrap_err(), want, "{req:?}");
        }
    }

    #[test]
    fn bad_lists_name_the_position_not_the_key() {
        assert_eq!(
            ApiKeyAuthenticator::from_list(" , ").unwrap_err(),
            ApiKeyError::Empty
        );
        let e = ApiKeyAuthenticator::from_list(&format!("{KEY},short-secret")).unwrap_err();
        assert_eq!(e, ApiKeyError::TooShort { position: 2 });
        assert!(!e.to_string().contains("short-secret"));
        assert_eq!(
            ApiKeyError::BadDigest { position: 1 },
            ApiKeyAuthenticator::from_list("sha256:abcd").unwrap_err()
        );
        assert_eq!(
            ApiKeyError::NotHeaderSafe { position: 1 },
            ApiKeyAuthenticator::new(["0123456789abcdef\n0"]).unwrap_err()
        );
    }

    #[test]
    fn settings_errors_name_the_variable() {
        let m = std::collections::HashMap::from([("MCP_API_KEYS".to_owned(), "abc".to_owned())]);
        let e = ApiKeyAuthenticator::from_settings(&m).unwrap_err();
        assert!(
            e.to_string().starts_with("MCP_API_KEYS: key #1 is shorter"),
            "{e}"
        );
        assert!(
            ApiKeyAuthenticator::from_settings(&std::collections::HashMap::new())
                .unwrap()
                .is_none()
        );
    }
}
