//! The `api_key` strategy.

use async_trait::async_trait;
use mcp_auth_core::{
    AuthError, AuthRequest, Authenticator, ChallengeScheme, Principal,
    settings::{ConfigError, Lookup},
};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The only header API keys are read from.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// Plain keys shorter than this are refused at configuration time: a short
/// key can be guessed. Keys given as `sha256:<hex>` are not checked (their
/// length is unknown).
pub const MIN_PLAIN_KEY_LEN: usize = 16;

/// The longest key name.
const MAX_NAME_LEN: usize = 64;

/// What introduces a key given by its SHA-256 digest.
const DIGEST_PREFIX: &str = "sha256:";

/// Query parameters that look like credentials. They are never read; their
/// presence is logged so operators see misconfigured clients.
const QUERY_CREDENTIAL_NAMES: &[&str] = &["api_key", "apikey", "key", "access_token", "token"];

/// A bad `MCP_API_KEYS` list (or a bad key given to
/// [`ApiKeyAuthenticator::named`] / [`ApiKeyAuthenticator::with_named`]).
///
/// Messages name the 1-based position of the entry at fault (counting only
/// non-empty entries), never its key, and never its name either: when an
/// entry is refused, what looks like its name may be part of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// No keys at all.
    #[error("no API keys given (expected a comma-separated list)")]
    Empty,
    /// A plain key is too short.
    #[error(
        "key #{position} is shorter than {MIN_PLAIN_KEY_LEN} characters (in a named entry, the key after `<name>:`); use a long random key (e.g. `openssl rand -hex 32`)"
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
    /// A key contains a space or a tab: most often two keys separated by
    /// a space instead of a comma (neither would then work).
    #[error(
        "key #{position} contains a space: keys are separated by commas (a space would be part of the key)"
    )]
    Spaced {
        /// 1-based position in the list.
        position: usize,
    },
    /// An entry contains `:`, so it is read as `<name>:<key>[:<scopes>]`,
    /// but the part before the first `:` is not a valid name. Most often a
    /// plain key that contains `:`; give such a key as `sha256:<digest>`.
    #[error(
        "key #{position} contains ':', so it is read as <name>:<key>[:<scopes>], but its name (the part before the first ':') is not 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -; a plain key that contains ':' must be given as sha256:<its SHA-256 in hex>"
    )]
    BadName {
        /// 1-based position in the list.
        position: usize,
    },
    /// The name is `sha256` in another case (a digest is introduced by
    /// lowercase `sha256:`), or 12 lowercase hex digits, which would make
    /// its subject look like an unnamed key's (`api-key:<fingerprint>`).
    #[error(
        "key #{position} has a reserved name: names cannot be `sha256` in any case (a digest is written lowercase `sha256:<hex>`) nor 12 lowercase hex digits (the fingerprints that unnamed keys are known by)"
    )]
    ReservedName {
        /// 1-based position in the list.
        position: usize,
    },
    /// The scopes of a named key are not one or more space-separated
    /// RFC 6749 scope tokens.
    #[error(
        "key #{position} has bad scopes: after the key's ':' come one or more space-separated scope tokens (printable ASCII except space, '\"' and '\\')"
    )]
    BadScope {
        /// 1-based position in the list.
        position: usize,
    },
    /// An unnamed `sha256:<digest>` entry is followed by scopes; only named
    /// keys carry scopes.
    #[error(
        "key #{position} is a sha256: digest followed by scopes, but only named keys carry scopes: write <name>:sha256:<digest>:<scopes>"
    )]
    ScopesNeedName {
        /// 1-based position in the list.
        position: usize,
    },
    /// Two entries have the same name.
    #[error("key #{position} has the same name as key #{first}: names must be unique")]
    DuplicateName {
        /// 1-based position of the later entry.
        position: usize,
        /// 1-based position of the earlier entry.
        first: usize,
    },
    /// The same key (same digest) is configured twice and at least one of
    /// the two entries is named: the key would have two identities.
    #[error("key #{position} is the same key as key #{first}: a named key must be configured once")]
    DuplicateKey {
        /// 1-based position of the later entry.
        position: usize,
        /// 1-based position of the earlier entry.
        first: usize,
    },
}

/// Static API keys presented in the `X-API-Key` header, each unnamed or
/// named with scopes.
///
/// Keys are kept only as SHA-256 digests and compared in constant time
/// against every configured digest; a key may be configured as
/// `sha256:<hex digest>` so the plain key never sits in configuration. Keys
/// in the query string are never accepted. A failed attempt is logged with
/// the peer address and a fingerprint of the presented key (the first 12 hex
/// digits of its SHA-256), never the key.
///
/// # `MCP_API_KEYS` entries
///
/// The list is comma-separated; each entry (surrounding whitespace trimmed)
/// is one of:
///
/// | entry | who the caller is |
/// |---|---|
/// | `<key>` (no `:`) | `api-key:<fingerprint>`, no scopes |
/// | `sha256:<64 hex>` | `api-key:<fingerprint>`, no scopes |
/// | `<name>:<key>[:<scopes>]` | `api-key:<name>`, these scopes |
/// | `<name>:sha256:<64 hex>[:<scopes>]` | `api-key:<name>`, these scopes |
///
/// - A plain key has 16+ characters that an HTTP header can carry, without
///   surrounding whitespace. The fingerprint is the first 12 hex digits of
///   the key's SHA-256 (the same for a key and its `sha256:` form).
/// - A name is 1-64 characters of `A-Z a-z 0-9 . _ -`, unique in the list.
///   Reserved: `sha256` in any case, and 12 lowercase hex digits (they would
///   look like an unnamed key's fingerprint).
/// - Scopes are one or more RFC 6749 scope tokens (printable ASCII except
///   space, `"` and `\`; a token may contain `:`, as in `mcp:admin`)
///   separated by spaces. They are everything after the `:` that ends the
///   key, so `ci-bot:<key>:mcp:tools mcp:admin` has the scopes `mcp:tools`
///   and `mcp:admin`. A `,` cannot appear in a scope here (it separates
///   entries).
/// - How an entry is read: one starting with `sha256:` is an unnamed digest;
///   any other entry without `:` is an unnamed plain key; any other entry
///   with `:` is named, the name being what precedes the first `:`. So in
///   `MCP_API_KEYS` the plain key of a named entry cannot contain `:`, and a
///   plain *unnamed* key that contains `:` is now read as named: give such a
///   key as `sha256:<digest>` instead. When the part before its first `:` is
///   not a valid name the entry is refused ([`ApiKeyError::BadName`]), but
///   when it is (`user:long-password-…`), the entry silently becomes the key
///   `long-password-…` named `user`.
/// - The same key may not appear twice when one of its entries is named
///   (it would have two identities); unnamed duplicates are accepted.
///
/// A named key's principal has the subject `api-key:<name>`, its scopes (so
/// per-tool and server-wide scope checks apply to it as to a token), and the
/// claims `key_name` and `key_fingerprint`; an unnamed key's has the subject
/// `api-key:<fingerprint>`, no scopes and the claim `key_fingerprint`. The
/// strategy is `api_key` for both.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_auth_core::{AuthError, AuthRequest, Authenticator};
/// use mcp_auth_strategies::ApiKeyAuthenticator;
///
/// let auth = ApiKeyAuthenticator::from_list(
///     "correct-horse-battery-staple, ci-bot:ci-key-0123456789abcdef:mcp:tools mcp:admin",
/// )
/// .unwrap();
/// let ok = AuthRequest::builder().header("X-API-Key", "correct-horse-battery-staple").build();
/// let who = auth.authenticate(&ok).await.unwrap();
/// assert!(who.subject.starts_with("api-key:") && who.scopes.is_empty());
///
/// let ci = AuthRequest::builder().header("X-API-Key", "ci-key-0123456789abcdef").build();
/// let who = auth.authenticate(&ci).await.unwrap();
/// assert_eq!(who.subject, "api-key:ci-bot");
/// assert_eq!(who.scopes, ["mcp:tools", "mcp:admin"]);
///
/// let in_query = AuthRequest::builder().uri("/mcp?api_key=correct-horse-battery-staple").build();
/// assert_eq!(auth.authenticate(&in_query).await.unwrap_err(), AuthError::MissingCredentials);
/// # }
/// ```
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    /// Kept apart from the identities so the constant-time scan touches
    /// only digests.
    digests: Vec<[u8; 32]>,
    identities: Vec<Identity>,
}

/// Who a configured key identifies.
#[derive(Clone)]
struct Identity {
    name: Option<String>,
    principal: Principal,
}

/// One entry, parsed.
struct Parsed {
    digest: [u8; 32],
    name: Option<String>,
    scopes: Vec<String>,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("keys", &self.digests.len())
            .field(
                "named",
                &self.identities.iter().filter(|i| i.name.is_some()).count(),
            )
            .finish()
    }
}

impl ApiKeyAuthenticator {
    /// Parses a comma-separated list of keys (`MCP_API_KEYS` syntax, see
    /// [above](ApiKeyAuthenticator#mcp_api_keys-entries)). Empty entries are
    /// skipped and do not count as positions.
    pub fn from_list(list: &str) -> Result<Self, ApiKeyError> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Self::new(entries)
    }

    /// Builds from individual entries, each in `MCP_API_KEYS` syntax
    /// (`<key>`, `sha256:<hex>`, `<name>:<key>[:<scopes>]` or
    /// `<name>:sha256:<hex>[:<scopes>]`; see
    /// [above](ApiKeyAuthenticator#mcp_api_keys-entries)), not trimmed.
    pub fn new<I, S>(entries: I) -> Result<Self, ApiKeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut auth = Self::empty();
        for entry in entries {
            let parsed = parse_entry(entry.as_ref(), auth.len() + 1)?;
            auth.push(parsed)?;
        }
        if auth.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        Ok(auth)
    }

    /// One named key: callers presenting `key` are `api-key:<name>` with
    /// `scopes`. Add more keys with [`with_named`](Self::with_named).
    ///
    /// `key` is a plain key (16+ header-safe characters; here it may
    /// contain `:`) or `sha256:<64 hex>`. `name` follows the rules of
    /// [`MCP_API_KEYS`](ApiKeyAuthenticator#mcp_api_keys-entries); each
    /// scope must be one RFC 6749 scope token. Errors name the key's
    /// position (1 here, then 2, 3, … for each `with_named`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), mcp_auth_strategies::ApiKeyError> {
    /// use mcp_auth_core::{AuthRequest, Authenticator};
    /// use mcp_auth_strategies::{ApiKeyAuthenticator, ApiKeyError};
    ///
    /// let auth = ApiKeyAuthenticator::named("ci-bot", "ci-key-0123456789abcdef", &["mcp:tools"])?
    ///     .with_named(
    ///         "ops",
    ///         // the SHA-256 of "password"
    ///         "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
    ///         &["mcp:tools", "mcp:admin"],
    ///     )?;
    /// assert_eq!(auth.names().collect::<Vec<_>>(), ["ci-bot", "ops"]);
    ///
    /// let req = AuthRequest::builder().header("X-API-Key", "password").build();
    /// let who = auth.authenticate(&req).await.unwrap();
    /// assert_eq!(who.subject, "api-key:ops");
    /// assert!(who.has_scope("mcp:admin"));
    ///
    /// // The same name twice is refused, naming positions only.
    /// let again = auth.with_named("ops", "another-key-0123456789", &[]).unwrap_err();
    /// assert_eq!(again, ApiKeyError::DuplicateName { position: 3, first: 2 });
    /// # Ok(()) }
    /// ```
    pub fn named(name: &str, key: &str, scopes: &[&str]) -> Result<Self, ApiKeyError> {
        Self::empty().with_named(name, key, scopes)
    }

    /// Adds a named key (see [`named`](Self::named)); it must differ from
    /// every key already configured, and its name from every name.
    pub fn with_named(
        mut self,
        name: &str,
        key: &str,
        scopes: &[&str],
    ) -> Result<Self, ApiKeyError> {
        let position = self.len() + 1;
        check_name(name, position)?;
        let digest = match key.strip_prefix(DIGEST_PREFIX) {
            Some(hex_digest) => parse_digest(hex_digest, position)?,
            None => plain_digest(key, position)?,
        };
        let mut parsed_scopes: Vec<String> = Vec::new();
        for s in scopes {
            if !mcp_auth_core::is_scope_token(s) {
                return Err(ApiKeyError::BadScope { position });
            }
            if !parsed_scopes.iter().any(|p| p == s) {
                parsed_scopes.push((*s).to_owned());
            }
        }
        self.push(Parsed {
            digest,
            name: Some(name.to_owned()),
            scopes: parsed_scopes,
        })?;
        Ok(self)
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

    /// The names of the named keys, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.identities.iter().filter_map(|i| i.name.as_deref())
    }

    /// No keys yet (never handed out: every constructor adds at least one).
    fn empty() -> Self {
        Self {
            digests: Vec::new(),
            identities: Vec::new(),
        }
    }

    /// Adds an entry at the next position, refusing a name or a named key
    /// seen before.
    fn push(&mut self, p: Parsed) -> Result<(), ApiKeyError> {
        let position = self.len() + 1;
        if let Some(name) = &p.name
            && let Some(i) = self
                .identities
                .iter()
                .position(|id| id.name.as_ref() == Some(name))
        {
            return Err(ApiKeyError::DuplicateName {
                position,
                first: i + 1,
            });
        }
        if let Some(i) = self
            .digests
            .iter()
            .zip(&self.identities)
            .position(|(d, id)| *d == p.digest && (p.name.is_some() || id.name.is_some()))
        {
            return Err(ApiKeyError::DuplicateKey {
                position,
                first: i + 1,
            });
        }
        let fp = digest_fingerprint(&p.digest);
        let mut claims = serde_json::Map::new();
        claims.insert("key_fingerprint".into(), fp.clone().into());
        let principal = match &p.name {
            None => Principal::new(format!("api-key:{fp}"), "api_key").with_claims(claims),
            Some(name) => {
                claims.insert("key_name".into(), name.clone().into());
                Principal::new(format!("api-key:{name}"), "api_key")
                    .with_scopes(p.scopes)
                    .with_claims(claims)
            }
        };
        self.digests.push(p.digest);
        self.identities.push(Identity {
            name: p.name,
            principal,
        });
        Ok(())
    }

    fn find(&self, presented: &[u8]) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Compare against every key, whatever matched, and select the index
        // without branching, so timing says nothing about which key (or how
        // much of one) matched.
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, d) in self.digests.iter().enumerate() {
            let hit = d.ct_eq(&digest);
            index.conditional_assign(&(i as u64), hit);
            found |= hit;
        }
        bool::from(found).then_some(index as usize)
    }
}

/// Parses one `MCP_API_KEYS` entry (see [`ApiKeyAuthenticator`]).
fn parse_entry(entry: &str, position: usize) -> Result<Parsed, ApiKeyError> {
    let unnamed = |digest| Parsed {
        digest,
        name: None,
        scopes: Vec::new(),
    };
    if let Some(rest) = entry.strip_prefix(DIGEST_PREFIX) {
        // `sha256:<hex>` stays an unnamed digest, as it always was.
        if let Some((hex_digest, _)) = split_digest(rest)
            && hex::decode(hex_digest).is_ok()
        {
            return Err(ApiKeyError::ScopesNeedName { position });
        }
        return parse_digest(rest, position).map(unnamed);
    }
    let Some((name, rest)) = entry.split_once(':') else {
        return plain_digest(entry, position).map(unnamed);
    };
    check_name(name, position)?;
    let (digest, scopes) = match rest.strip_prefix(DIGEST_PREFIX) {
        Some(after) => match split_digest(after) {
            Some((hex_digest, scopes)) => (parse_digest(hex_digest, position)?, Some(scopes)),
            None => (parse_digest(after, position)?, None),
        },
        None => match rest.split_once(':') {
            Some((key, scopes)) => (plain_digest(key, position)?, Some(scopes)),
            None => (plain_digest(rest, position)?, None),
        },
    };
    let mut parsed_scopes: Vec<String> = Vec::new();
    if let Some(scopes) = scopes {
        for s in scopes.split(' ').filter(|s| !s.is_empty()) {
            if !mcp_auth_core::is_scope_token(s) {
                return Err(ApiKeyError::BadScope { position });
            }
            if !parsed_scopes.iter().any(|p| p == s) {
                parsed_scopes.push(s.to_owned());
            }
        }
        if parsed_scopes.is_empty() {
            return Err(ApiKeyError::BadScope { position });
        }
    }
    Ok(Parsed {
        digest,
        name: Some(name.to_owned()),
        scopes: parsed_scopes,
    })
}

/// `<64 chars>:<rest>` split into the 64 characters and the rest, if `s`
/// has that shape.
fn split_digest(s: &str) -> Option<(&str, &str)> {
    let tail = s.get(64..)?.strip_prefix(':')?;
    Some((&s[..64], tail))
}

fn parse_digest(hex_digest: &str, position: usize) -> Result<[u8; 32], ApiKeyError> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest)
        .map_err(|_| ApiKeyError::BadDigest { position })?;
    Ok(digest)
}

fn plain_digest(key: &str, position: usize) -> Result<[u8; 32], ApiKeyError> {
    if key.chars().count() < MIN_PLAIN_KEY_LEN {
        return Err(ApiKeyError::TooShort { position });
    }
    if http::HeaderValue::from_str(key).is_err() || key.trim() != key {
        return Err(ApiKeyError::NotHeaderSafe { position });
    }
    if key.contains([' ', '\t']) {
        return Err(ApiKeyError::Spaced { position });
    }
    Ok(Sha256::digest(key.as_bytes()).into())
}

fn check_name(name: &str, position: usize) -> Result<(), ApiKeyError> {
    let valid = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(ApiKeyError::BadName { position });
    }
    let fingerprint_like =
        name.len() == 12 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if name.eq_ignore_ascii_case("sha256") || fingerprint_like {
        return Err(ApiKeyError::ReservedName { position });
    }
    Ok(())
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
                // A client can send one on every request: a line a second.
                static LOG: mcp_auth_core::LogThrottle = mcp_auth_core::LogThrottle::new();
                if let Some(left_out) = LOG.admit() {
                    tracing::warn!(
                        peer = %req.peer_display(),
                        left_out,
                        "credential-like query parameter ignored: API keys are accepted in the X-API-Key header only"
                    );
                }
            }
            return Err(AuthError::MissingCredentials);
        };
        if values.next().is_some() {
            return Err(AuthError::invalid_request("more than one X-API-Key header"));
        }
        let presented = value.as_bytes();
        match self.find(presented) {
            Some(i) => Ok(self.identities[i].principal.clone()),
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

    /// It reads exactly the credentials of its schemes.
    fn declares_credentials(&self) -> bool {
        true
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
        // Two keys separated by a space instead of a comma (an attack pass:
        // taken as one key, so neither worked, without a word).
        let e = ApiKeyAuthenticator::from_list(&format!("{KEY} {KEY}x")).unwrap_err();
        assert_eq!(e, ApiKeyError::Spaced { position: 1 });
        assert!(!e.to_string().contains(KEY));
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

    // Named keys.

    const CI: &str = "ci-key-0123456789abcdef";
    const OPS: &str = "ops-key-0123456789abcdef";

    fn sha(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    async fn who(auth: &ApiKeyAuthenticator, key: &str) -> Result<Principal, AuthError> {
        let req = AuthRequest::builder().header("x-api-key", key).build();
        auth.authenticate(&req).await
    }

    #[tokio::test]
    async fn named_keys_are_known_by_name_with_their_scopes() {
        let list = format!(
            "{KEY}, ci-bot:{CI}:tools.read admin, ops:sha256:{}:mcp:tools  mcp:admin mcp:tools, plain-name:sha256:{}",
            sha(OPS),
            sha("another-key-0123456789"),
        );
        let auth = ApiKeyAuthenticator::from_list(&list).unwrap();
        assert_eq!(auth.len(), 4);
        assert_eq!(
            auth.names().collect::<Vec<_>>(),
            ["ci-bot", "ops", "plain-name"]
        );

        // Unnamed: exactly as before.
        let p = who(&auth, KEY).await.unwrap();
        assert_eq!(p.subject, format!("api-key:{}", &sha(KEY)[..12]));
        assert!(p.scopes.is_empty());
        assert_eq!(p.strategy, "api_key");
        assert!(p.claims.get("key_name").is_none());

        let p = who(&auth, CI).await.unwrap();
        assert_eq!(p.subject, "api-key:ci-bot");
        assert_eq!(p.scopes, ["tools.read", "admin"]);
        assert_eq!(p.strategy, "api_key");
        assert_eq!(p.claims["key_name"], "ci-bot");
        assert_eq!(p.claims["key_fingerprint"], sha(CI)[..12]);

        // Hashed and named; scopes may contain ':' and repeat.
        let p = who(&auth, OPS).await.unwrap();
        assert_eq!(p.subject, "api-key:ops");
        assert_eq!(p.scopes, ["mcp:tools", "mcp:admin"]);
        assert!(p.has_scope("mcp:admin"));

        // Named without scopes.
        let p = who(&auth, "another-key-0123456789").await.unwrap();
        assert_eq!(p.subject, "api-key:plain-name");
        assert!(p.scopes.is_empty());

        // A whole entry is not a key.
        assert_eq!(
            who(&auth, &format!("ci-bot:{CI}")).await.unwrap_err(),
            AuthError::invalid_token("unknown API key")
        );
    }

    #[tokio::test]
    async fn a_named_key_is_the_same_principal_plain_or_hashed() {
        let plain = ApiKeyAuthenticator::from_list(&format!("ci:{CI}:a b")).unwrap();
        let hashed = ApiKeyAuthenticator::from_list(&format!("ci:sha256:{}:a b", sha(CI))).unwrap();
        let by_code = ApiKeyAuthenticator::named("ci", CI, &["a", "b"]).unwrap();
        let a = who(&plain, CI).await.unwrap();
        assert_eq!(a, who(&hashed, CI).await.unwrap());
        assert_eq!(a, who(&by_code, CI).await.unwrap());
        assert_eq!(a.subject, "api-key:ci");
        assert_eq!(a.scopes, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_plain_key_with_a_colon_is_read_as_named_when_the_name_is_valid() {
        // The documented rule: what precedes the first ':' is a name.
        let auth = ApiKeyAuthenticator::from_list("user:password-0123456789").unwrap();
        assert!(who(&auth, "user:password-0123456789").await.is_err());
        assert_eq!(
            who(&auth, "password-0123456789").await.unwrap().subject,
            "api-key:user"
        );
        // Given by its digest it stays an unnamed key, whatever it contains.
        let digest = sha("user name:password-0123456789");
        let auth = ApiKeyAuthenticator::from_list(&format!("sha256:{digest}")).unwrap();
        let p = who(&auth, "user name:password-0123456789").await.unwrap();
        assert_eq!(p.subject, format!("api-key:{}", &digest[..12]));
        // Programmatically there is no ambiguity: a named key may contain ':'.
        let auth = ApiKeyAuthenticator::named("u", "user:password-0123456789", &[]).unwrap();
        assert_eq!(
            who(&auth, "user:password-0123456789")
                .await
                .unwrap()
                .subject,
            "api-key:u"
        );
    }

    #[tokio::test]
    async fn every_key_finds_its_own_identity_among_many() {
        let keys: Vec<String> = (0..20)
            .map(|i| format!("svc-{i}:key-{i:02}-0123456789abcdef:s{i}"))
            .collect();
        let auth = ApiKeyAuthenticator::new(&keys).unwrap();
        for i in 0..20 {
            let p = who(&auth, &format!("key-{i:02}-0123456789abcdef"))
                .await
                .unwrap();
            assert_eq!(p.subject, format!("api-key:svc-{i}"));
            assert_eq!(p.scopes, [format!("s{i}")]);
        }
        // Unnamed duplicates are accepted, as before (one identity).
        let auth = ApiKeyAuthenticator::from_list(&format!("{KEY},sha256:{}", sha(KEY))).unwrap();
        assert_eq!(auth.len(), 2);
        assert!(who(&auth, KEY).await.is_ok());
    }

    /// Every parse error: the variant, its position, and no secret (nor the
    /// would-be name, which may be part of a key) in the message.
    #[test]
    fn every_bad_entry_names_its_position_and_nothing_else() {
        let d = sha(OPS);
        let cases: Vec<(String, ApiKeyError, Vec<&str>)> = vec![
            (" , ,".into(), ApiKeyError::Empty, vec![]),
            (
                format!("{KEY},ci:short-secret"),
                ApiKeyError::TooShort { position: 2 },
                vec!["short-secret"],
            ),
            (
                format!("{KEY},ci:"),
                ApiKeyError::TooShort { position: 2 },
                vec![],
            ),
            (
                format!("ci:sha256:{}", &d[..63]),
                ApiKeyError::BadDigest { position: 1 },
                vec![&d[..63]],
            ),
            (
                format!("ci:sha256:{d}0"),
                ApiKeyError::BadDigest { position: 1 },
                vec![&d],
            ),
            (
                format!("ci:sha256:{}g:s", &d[..63]),
                ApiKeyError::BadDigest { position: 1 },
                vec![&d[..63]],
            ),
            (
                format!("sha256:{d}x"),
                ApiKeyError::BadDigest { position: 1 },
                vec![&d],
            ),
            (
                format!("ci:{OPS}\u{7f}x"),
                ApiKeyError::NotHeaderSafe { position: 1 },
                vec![OPS],
            ),
            (
                format!("{KEY},bad name:{OPS}"),
                ApiKeyError::BadName { position: 2 },
                vec![OPS, "bad name"],
            ),
            (
                format!("a@example.com:{OPS}"),
                ApiKeyError::BadName { position: 1 },
                vec![OPS, "a@example"],
            ),
            (
                format!(":{OPS}"),
                ApiKeyError::BadName { position: 1 },
                vec![OPS],
            ),
            (
                format!("{}:{OPS}", "n".repeat(65)),
                ApiKeyError::BadName { position: 1 },
                vec![OPS, "nnnnn"],
            ),
            (
                format!("n\u{e9}:{OPS}"),
                ApiKeyError::BadName { position: 1 },
                vec![OPS],
            ),
            (
                format!("SHA256:{d}"),
                ApiKeyError::ReservedName { position: 1 },
                vec![&d],
            ),
            (
                format!("Sha256:{OPS}"),
                ApiKeyError::ReservedName { position: 1 },
                vec![OPS],
            ),
            (
                format!("{}:{OPS}", &d[..12]),
                ApiKeyError::ReservedName { position: 1 },
                vec![OPS, &d[..12]],
            ),
            (
                format!("ci:{OPS}:"),
                ApiKeyError::BadScope { position: 1 },
                vec![OPS],
            ),
            (
                format!("ci:{OPS}:   "),
                ApiKeyError::BadScope { position: 1 },
                vec![OPS],
            ),
            (
                format!("ci:{OPS}:a \"b\""),
                ApiKeyError::BadScope { position: 1 },
                vec![OPS],
            ),
            (
                format!("ci:{OPS}:a\\b"),
                ApiKeyError::BadScope { position: 1 },
                vec![OPS],
            ),
            (
                format!("ci:{OPS}:a\tb"),
                ApiKeyError::BadScope { position: 1 },
                vec![OPS],
            ),
            (
                format!("ci:sha256:{d}:sc\u{f6}pe"),
                ApiKeyError::BadScope { position: 1 },
                vec![&d],
            ),
            (
                format!("{KEY},sha256:{d}:admin"),
                ApiKeyError::ScopesNeedName { position: 2 },
                vec![&d, KEY],
            ),
            (
                format!("ci:{CI},x:{KEY},ci:{OPS}"),
                ApiKeyError::DuplicateName {
                    position: 3,
                    first: 1,
                },
                vec![CI, OPS],
            ),
            (
                format!("a:{OPS}:s,b:{OPS}:t"),
                ApiKeyError::DuplicateKey {
                    position: 2,
                    first: 1,
                },
                vec![OPS],
            ),
            (
                format!("a:{OPS},b:sha256:{d}"),
                ApiKeyError::DuplicateKey {
                    position: 2,
                    first: 1,
                },
                vec![OPS, &d],
            ),
            (
                format!("{OPS},{KEY},a:{OPS}"),
                ApiKeyError::DuplicateKey {
                    position: 3,
                    first: 1,
                },
                vec![OPS],
            ),
            (
                format!("a:{OPS},{OPS}"),
                ApiKeyError::DuplicateKey {
                    position: 2,
                    first: 1,
                },
                vec![OPS],
            ),
        ];
        for (list, want, secrets) in cases {
            let got = ApiKeyAuthenticator::from_list(&list).unwrap_err();
            assert_eq!(got, want, "{list:?}");
            let msg = got.to_string();
            if let Some(position) = want_position(&want) {
                assert!(msg.starts_with(&format!("key #{position} ")), "{msg}");
            }
            for s in secrets {
                assert!(!msg.contains(s), "{msg:?} reveals {s:?}");
            }
        }
    }

    fn want_position(e: &ApiKeyError) -> Option<usize> {
        match e {
            ApiKeyError::Empty => None,
            ApiKeyError::TooShort { position }
            | ApiKeyError::BadDigest { position }
            | ApiKeyError::NotHeaderSafe { position }
            | ApiKeyError::Spaced { position }
            | ApiKeyError::BadName { position }
            | ApiKeyError::ReservedName { position }
            | ApiKeyError::BadScope { position }
            | ApiKeyError::ScopesNeedName { position }
            | ApiKeyError::DuplicateName { position, .. }
            | ApiKeyError::DuplicateKey { position, .. } => Some(*position),
        }
    }

    #[test]
    fn the_error_messages_explain_the_rules() {
        let msg = |e: ApiKeyError| e.to_string();
        assert!(msg(ApiKeyError::BadName { position: 2 }).contains("must be given as sha256:"));
        assert!(
            msg(ApiKeyError::ScopesNeedName { position: 1 })
                .contains("<name>:sha256:<digest>:<scopes>")
        );
        assert_eq!(
            msg(ApiKeyError::DuplicateName {
                position: 3,
                first: 1
            }),
            "key #3 has the same name as key #1: names must be unique"
        );
        assert_eq!(
            msg(ApiKeyError::DuplicateKey {
                position: 2,
                first: 1
            }),
            "key #2 is the same key as key #1: a named key must be configured once"
        );
    }

    #[test]
    fn names_and_scopes_at_their_limits() {
        let name = "A-z_0.9".repeat(10)[..64].to_owned();
        let auth = ApiKeyAuthenticator::from_list(&format!("{name}:{OPS}:!#[]~")).unwrap();
        assert_eq!(auth.names().collect::<Vec<_>>(), [name.as_str()]);
        // 12 characters that are not all lowercase hex are fine names.
        for ok in ["deadbeefcafg", "DEADBEEFCAFE", "deadbeefcaf", "sha256x"] {
            assert!(
                ApiKeyAuthenticator::from_list(&format!("{ok}:{OPS}")).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn the_programmatic_constructors_check_like_the_list() {
        let e = |r: Result<ApiKeyAuthenticator, ApiKeyError>| r.unwrap_err();
        assert_eq!(
            e(ApiKeyAuthenticator::named("bad name", OPS, &[])),
            ApiKeyError::BadName { position: 1 }
        );
        assert_eq!(
            e(ApiKeyAuthenticator::named("sha256", OPS, &[])),
            ApiKeyError::ReservedName { position: 1 }
        );
        assert_eq!(
            e(ApiKeyAuthenticator::named("ci", "short", &[])),
            ApiKeyError::TooShort { position: 1 }
        );
        assert_eq!(
            e(ApiKeyAuthenticator::named("ci", "sha256:00", &[])),
            ApiKeyError::BadDigest { position: 1 }
        );
        assert_eq!(
            e(ApiKeyAuthenticator::named("ci", &format!(" {OPS}"), &[])),
            ApiKeyError::NotHeaderSafe { position: 1 }
        );
        for bad in ["", "a b", "\"q\"", "\u{e9}"] {
            assert_eq!(
                e(ApiKeyAuthenticator::named("ci", OPS, &["ok", bad])),
                ApiKeyError::BadScope { position: 1 },
                "{bad:?}"
            );
        }
        let two = ApiKeyAuthenticator::new([KEY])
            .unwrap()
            .with_named("ci", CI, &["a", "a"])
            .unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(
            e(two.clone().with_named("ci", OPS, &[])),
            ApiKeyError::DuplicateName {
                position: 3,
                first: 2
            }
        );
        assert_eq!(
            e(two
                .clone()
                .with_named("other", &format!("sha256:{}", sha(KEY)), &[])),
            ApiKeyError::DuplicateKey {
                position: 3,
                first: 1
            }
        );
        assert_eq!(two.names().collect::<Vec<_>>(), ["ci"]);
    }

    #[tokio::test]
    async fn programmatic_scopes_are_deduplicated() {
        let auth = ApiKeyAuthenticator::named("ci", CI, &["a", "b", "a"]).unwrap();
        assert_eq!(who(&auth, CI).await.unwrap().scopes, ["a", "b"]);
    }

    #[test]
    fn debug_shows_counts_only() {
        let auth =
            ApiKeyAuthenticator::from_list(&format!("{KEY},secret-service:{CI}:admin")).unwrap();
        let dbg = format!("{auth:?}");
        assert_eq!(dbg, "ApiKeyAuthenticator { keys: 2, named: 1 }");
        for s in [KEY, CI, "secret-service", "admin", &sha(CI)[..12]] {
            assert!(!dbg.contains(s), "{dbg}");
        }
    }

    #[test]
    fn named_settings_errors_name_the_variable_and_the_position() {
        let m = std::collections::HashMap::from([(
            "MCP_API_KEYS".to_owned(),
            format!("ci:{CI},ci:{OPS}"),
        )]);
        let e = ApiKeyAuthenticator::from_settings(&m).unwrap_err();
        assert_eq!(e.variable, "MCP_API_KEYS");
        assert!(
            e.to_string()
                .starts_with("MCP_API_KEYS: key #2 has the same name as key #1"),
            "{e}"
        );
        assert!(!e.to_string().contains(OPS) && !e.to_string().contains(CI));
    }
}
