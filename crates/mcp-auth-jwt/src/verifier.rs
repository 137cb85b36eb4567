//! [`JwtVerifier`]: one token in, verified claims or a precise error out.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use mcp_auth_core::{AuthError, Principal};
use serde_json::{Map, Value};

#[cfg(feature = "fetch")]
use crate::JwksCache;
use crate::{KeySet, VerifyKey};

/// Longest accepted token, in bytes. Real access tokens are a few KiB; a
/// larger one is refused before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. `Display` is safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a compact JWS, or larger than allowed.
    #[error("malformed token")]
    Malformed,
    /// Larger than the limit.
    #[error("token too large")]
    TooLarge,
    /// The header's `alg` is not allowed for the key (or at all).
    #[error("algorithm not allowed")]
    Algorithm,
    /// The header names its own key (`jku`, `jwk`, `x5u`): keys come only from
    /// the trusted set.
    #[error("token header names its own key; only configured keys are trusted")]
    EmbeddedKey,
    /// The header lists `crit` extensions, none of which are understood.
    #[error("unsupported critical header")]
    Critical,
    /// `typ` is neither `JWT` nor `at+jwt` (with
    /// [`require_access_token_type`](JwtVerifierBuilder::require_access_token_type):
    /// not `at+jwt`, or missing).
    #[error("unexpected token type")]
    Type,
    /// No trusted key carries the token's `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp` lies further after `iat` than the configured maximum lifetime.
    #[error("token lifetime exceeds the allowed maximum")]
    Lifetime,
    /// A required claim is missing or malformed.
    #[error("missing or malformed claim: {0}")]
    Claim(String),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` does not name this resource.
    #[error("token not issued for this resource (audience)")]
    Audience,
    /// A custom check refused the token.
    #[error("{0}")]
    Custom(String),
    /// The keys cannot be obtained (issuer unreachable, nothing cached).
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl From<JwtError> for AuthError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::KeysUnavailable => {
                AuthError::unavailable("signing keys unavailable; try again later")
            }
            other => AuthError::invalid_token(other.to_string()),
        }
    }
}

/// A verified token: its header `kid`, `alg`, and all claims.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The algorithm the token was verified with.
    pub alg: Algorithm,
    /// The header's key id, if any.
    pub kid: Option<String>,
    /// Every claim (shared with the verified-token cache and the principals
    /// built from it).
    pub claims: Arc<Map<String, Value>>,
}

impl VerifiedToken {
    /// The claims as your own `serde` type: name the claims you use, with
    /// their types, instead of digging in a map.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    /// use mcp_auth_jwt::{Audience, JwtVerifier, VerifyKey};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Claims { sub: String, tenant: String, exp: u64 }
    ///
    /// let secret = b"0123456789abcdef0123456789abcdef";
    /// let verifier = JwtVerifier::builder()
    ///     .static_keys(vec![VerifyKey::hmac(secret, Algorithm::HS256).unwrap()])
    ///     .any_issuer()
    ///     .audience(Audience::Unchecked)
    ///     .build()
    ///     .unwrap();
    /// let exp = jsonwebtoken::get_current_timestamp() + 60;
    /// let claims = serde_json::json!({"sub": "alice", "tenant": "acme", "exp": exp});
    /// let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap();
    /// let mine: Claims = verifier.verify(&token).await.unwrap().claims_as().unwrap();
    /// assert_eq!((mine.sub.as_str(), mine.tenant.as_str(), mine.exp), ("alice", "acme", exp));
    /// # }
    /// ```
    pub fn claims_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(Map::clone(&self.claims)))
    }

    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Scopes from `scope` (space-separated string, RFC 8693 / RFC 9068) or
    /// `scp` (array or string). Only RFC 6749 scope tokens count
    /// ([`mcp_auth_core::scope_tokens`]: separated by single spaces, no
    /// other whitespace or control characters in them).
    pub fn scopes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in ["scope", "scp"] {
            match self.claims.get(name) {
                Some(Value::String(s)) => {
                    out.extend(mcp_auth_core::scope_tokens(s).map(str::to_owned))
                }
                Some(Value::Array(a)) => out.extend(
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter(|t| mcp_auth_core::is_scope_token(t))
                        .map(str::to_owned),
                ),
                _ => {}
            }
        }
        out.dedup();
        out
    }

    /// Groups from `groups`, `cognito:groups` or `roles` (arrays of strings).
    pub fn groups(&self) -> Vec<String> {
        ["groups", "cognito:groups", "roles"]
            .iter()
            .filter_map(|n| self.claims.get(*n).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    fn exp_secs(&self) -> Option<u64> {
        self.claims.get("exp").and_then(numeric_date)
    }

    /// Whether `exp` plus `leeway` has not passed at `now` (seconds since
    /// the epoch); false without `exp`.
    fn unexpired(&self, leeway: u64, now: u64) -> bool {
        self.exp_secs()
            .is_some_and(|e| e.saturating_add(leeway) >= now)
    }

    /// The expiry (`exp` as integer or fractional seconds).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.exp_secs()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
    }

    /// A [`Principal`]: `sub` (else `client_id`), `iss`, `client_id` (else
    /// `azp`), scopes, groups, expiry and all claims.
    pub fn into_principal(self, strategy: &str) -> Principal {
        let subject = self
            .str_claim("sub")
            .or_else(|| self.str_claim("client_id"))
            .unwrap_or_default()
            .to_owned();
        let mut p = Principal::new(subject, strategy)
            .with_scopes(self.scopes())
            .with_groups(self.groups());
        if let Some(iss) = self.str_claim("iss") {
            p = p.with_issuer(iss);
        }
        if let Some(cid) = self
            .str_claim("client_id")
            .or_else(|| self.str_claim("azp"))
        {
            p = p.with_client_id(cid);
        }
        if let Some(exp) = self.expires_at() {
            p = p.with_expiry(exp);
        }
        p.with_shared_claims(self.claims)
    }
}

/// The latest `exp`/`nbf` accepted: the end of year 9999. Larger values are
/// malformed (and would overflow time arithmetic).
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A JSON NumericDate (RFC 7519 §2): non-negative integer or finite
/// fractional seconds, at most [`MAX_NUMERIC_DATE`]; `None` otherwise.
pub fn numeric_date(v: &Value) -> Option<u64> {
    let secs = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        })?,
        _ => return None,
    };
    (secs <= MAX_NUMERIC_DATE).then_some(secs)
}

/// The hits and misses of one token cache,
/// `mcp_auth_token_cache_total{cache, result}`: the verified-token cache
/// here (`cache="jwt"`), the introspection cache of `mcp-auth-strategies`
/// (`cache="introspection"`). Once a global recorder is installed
/// ([`mcp_auth_core::recorder`]) the two handles are looked up once, not in
/// the registry on every request.
///
/// ```
/// use mcp_auth_jwt::TokenCacheCounter;
///
/// static CACHE: TokenCacheCounter = TokenCacheCounter::new("my_cache");
/// CACHE.count(true); // mcp_auth_token_cache_total{cache="my_cache",result="hit"}
/// CACHE.count(false); // ... result="miss"
/// ```
#[derive(Debug)]
pub struct TokenCacheCounter {
    cache: &'static str,
    hit: std::sync::OnceLock<metrics::Counter>,
    miss: std::sync::OnceLock<metrics::Counter>,
}

impl TokenCacheCounter {
    /// The counter of the cache labelled `cache`.
    pub const fn new(cache: &'static str) -> Self {
        Self {
            cache,
            hit: std::sync::OnceLock::new(),
            miss: std::sync::OnceLock::new(),
        }
    }

    /// Counts one lookup, a hit or a miss.
    pub fn count(&self, hit: bool) {
        let (slot, result) = match hit {
            true => (&self.hit, "hit"),
            false => (&self.miss, "miss"),
        };
        mcp_auth_core::recorder::with_kept(
            slot,
            || metrics::counter!("mcp_auth_token_cache_total", "cache" => self.cache, "result" => result),
            |c| c.increment(1),
        );
    }
}

/// The verified-token cache's hits and misses.
static VERIFIED_CACHE: TokenCacheCounter = TokenCacheCounter::new("jwt");

/// SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A custom claim check: return `Err(reason)` to refuse the token (the reason
/// is sent to the client as `error_description`).
pub type ClaimCheck = Arc<dyn Fn(&VerifiedToken) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
enum Keys {
    Static(Arc<KeySet>),
    #[cfg(feature = "fetch")]
    Jwks(JwksCache),
}

/// The audience rule. There is no default: a verifier states whether and
/// what it checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// `aud` must contain one of these (string or array form).
    OneOf(Vec<String>),
    /// `aud` is not checked. Only for tokens minted for this server alone
    /// (e.g. by its own `token` command).
    Unchecked,
}

/// Verifies JWTs against trusted keys with RFC 8725 hygiene.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
/// use mcp_auth_jwt::{Audience, JwtVerifier, VerifyKey};
///
/// let secret = b"0123456789abcdef0123456789abcdef";
/// let verifier = JwtVerifier::builder()
///     .static_keys(vec![VerifyKey::hmac(secret, Algorithm::HS256).unwrap()])
///     .issuer("https://me.example")
///     .audience(Audience::OneOf(vec!["https://mcp.example/mcp".into()]))
///     .build()
///     .unwrap();
///
/// let claims = serde_json::json!({
///     "sub": "alice", "iss": "https://me.example", "aud": "https://mcp.example/mcp",
///     "exp": jsonwebtoken::get_current_timestamp() + 60, "scope": "mcp:tools",
/// });
/// let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap();
/// let ok = verifier.verify(&token).await.unwrap();
/// assert_eq!(ok.scopes(), vec!["mcp:tools"]);
///
/// let tampered = format!("{}x", token);
/// assert!(verifier.verify(&tampered).await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    /// One validation per key family (jsonwebtoken requires a family per
    /// validation); built once.
    validations: Arc<[(Algorithm, Validation)]>,
    allowed: Arc<[Algorithm]>,
    max_token_bytes: usize,
    check: Option<ClaimCheck>,
    leeway: u64,
    max_lifetime: Option<u64>,
    cache: Option<Arc<TokenCache>>,
    /// Only `typ: at+jwt` (RFC 9068).
    access_token_type: bool,
}

/// Tokens already verified, by SHA-256 of the token, each with the key that
/// verified it. An entry is used only while the token is unexpired and that
/// very key (not only its `kid`) is still trusted.
struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], Cached>>,
    capacity: usize,
}

/// A verified token and the key that verified it.
#[derive(Clone)]
struct Cached {
    token: VerifiedToken,
    #[cfg_attr(not(feature = "fetch"), allow(dead_code))]
    key: Arc<jsonwebtoken::DecodingKey>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl TokenCache {
    fn get(&self, key: &[u8; 32]) -> Option<Cached> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    fn forget(&self, key: &[u8; 32]) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }

    fn put(&self, key: [u8; 32], entry: Cached, leeway: u64) {
        let Ok(mut m) = self.entries.lock() else {
            return;
        };
        if m.len() >= self.capacity {
            let now = now_secs();
            m.retain(|_, c| c.token.unexpired(leeway, now));
            if m.len() >= self.capacity {
                m.clear();
            }
        }
        m.insert(key, entry);
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// A verifier that cannot be built. Names the missing or conflicting choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Neither static keys nor a JWKS were given.
    #[error("no keys: give static keys or a JWKS")]
    NoKeys,
    /// No audience rule was chosen.
    #[error("no audience rule: choose the accepted audiences, or Audience::Unchecked on purpose")]
    NoAudience,
    /// No issuer rule was chosen.
    #[error("no issuer rule: give the issuer, or call any_issuer() on purpose")]
    NoIssuer,
    /// The allowed algorithms list is empty.
    #[error("no algorithms allowed")]
    NoAlgorithms,
}

/// Builder for [`JwtVerifier`]. Issuer and audience must be chosen
/// explicitly: there is no silent "don't check".
pub struct JwtVerifierBuilder {
    keys: Option<Keys>,
    issuer: Option<Option<String>>,
    audience: Option<Audience>,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
    max_token_bytes: usize,
    check: Option<ClaimCheck>,
    cache_capacity: usize,
    max_lifetime: Option<Duration>,
    access_token_type: bool,
}

impl JwtVerifier {
    /// A builder with RFC 8725 defaults: `exp` required, `nbf` honoured, 60 s
    /// leeway, every asymmetric algorithm plus HS256/384/512 (each still tied
    /// to its key's type), 16 KiB token limit.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            keys: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(60),
            algorithms: vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
                Algorithm::HS256,
                Algorithm::HS384,
                Algorithm::HS512,
            ],
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            check: None,
            cache_capacity: 10_000,
            max_lifetime: None,
            access_token_type: false,
        }
    }

    /// The configured issuer, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The JWKS cache, when keys come from one.
    #[cfg(feature = "fetch")]
    pub fn jwks(&self) -> Option<&JwksCache> {
        match &self.keys {
            Keys::Jwks(c) => Some(c),
            Keys::Static(_) => None,
        }
    }

    /// Verifies `token` without awaiting anything: for static keys, from
    /// code that has no async runtime. With a JWKS it answers from the keys
    /// already cached and returns [`JwtError::KeysUnavailable`] when a fetch
    /// would be needed (use [`verify`](Self::verify) there).
    ///
    /// ```
    /// use mcp_auth_jwt::{Algorithm, Audience, JwtVerifier, VerifyKey};
    /// let secret = b"0123456789abcdef0123456789abcdef";
    /// let verifier = JwtVerifier::builder()
    ///     .static_keys(vec![VerifyKey::hmac(secret, Algorithm::HS256).unwrap()])
    ///     .issuer("https://issuer.example")
    ///     .audience(Audience::Unchecked)
    ///     .build()
    ///     .unwrap();
    /// assert!(verifier.verify_sync("not.a.token").is_err());
    /// ```
    pub fn verify_sync(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        use std::task::{Context, Poll, Waker};
        // Without fetching, nothing in the verification waits: the first
        // poll answers. (Polling a fetch once would start it and drop it,
        // outside a runtime even panic in the HTTP client's timer.)
        let mut fut = std::pin::pin!(self.verify_with(token, Fetch::Never));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(JwtError::KeysUnavailable),
        }
    }

    /// Verifies `token`.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        self.verify_with(token, Fetch::WhenNeeded).await
    }

    async fn verify_with(&self, token: &str, fetch: Fetch) -> Result<VerifiedToken, JwtError> {
        if token.len() > self.max_token_bytes {
            return Err(JwtError::TooLarge);
        }
        let Some(cache) = &self.cache else {
            return self.verify_uncached(token, fetch).await.map(|c| c.token);
        };
        let key = sha256(token.as_bytes());
        if let Some(hit) = cache.get(&key) {
            if self.cache_may_serve(&hit) {
                VERIFIED_CACHE.count(true);
                return Ok(hit.token);
            }
            cache.forget(&key);
        }
        VERIFIED_CACHE.count(false);
        let verified = self.verify_uncached(token, fetch).await?;
        if self.cache_may_serve(&verified) {
            cache.put(key, verified.clone(), self.leeway);
        }
        Ok(verified.token)
    }

    /// Whether a verified token may be answered from the cache: it has not
    /// expired and the key that verified it is still trusted: the very key
    /// (a key published again under the same `kid` with other material,
    /// after a compromise say, does not keep the tokens the old one
    /// verified; nor does a fetch of the same keys, whose tokens are then
    /// verified once more).
    fn cache_may_serve(&self, c: &Cached) -> bool {
        c.token.unexpired(self.leeway, now_secs())
            && match (&self.keys, &c.token.kid) {
                (Keys::Static(_), _) => true,
                #[cfg(feature = "fetch")]
                (Keys::Jwks(cache), Some(kid)) => {
                    cache.cached().is_some_and(|k| k.has_key(kid, &c.key))
                }
                // Without a kid we cannot tell whether its key is still
                // published, so such tokens are always verified afresh.
                #[cfg(feature = "fetch")]
                (Keys::Jwks(_), None) => false,
            }
    }

    /// Whether `token` claims (unverified) to be issued after `cache`'s
    /// last successful fetch, within the leeway.
    #[cfg(feature = "fetch")]
    fn issued_since_fetch(&self, token: &str, cache: &JwksCache) -> bool {
        let now = now_secs();
        let fetched = cache
            .status()
            .age
            .map(|age| now.saturating_sub(age.as_secs()));
        let iat = unverified_claims(token).and_then(|c| c.get("iat").and_then(numeric_date));
        // Not one claiming to be issued in the future (refused as such
        // once its key is known).
        match (fetched, iat) {
            (Some(fetched), Some(iat)) => {
                iat.saturating_add(self.leeway) >= fetched && iat <= now.saturating_add(self.leeway)
            }
            _ => false,
        }
    }

    async fn verify_uncached(&self, token: &str, fetch: Fetch) -> Result<Cached, JwtError> {
        if token.split('.').count() != 3 {
            return Err(JwtError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // A header object naming an algorithm that does not parse:
            // `alg: none` or an unknown algorithm. Anything else that is not
            // a header (`abc.def.ghi`) is malformed.
            ErrorKind::Json(_)
                if token
                    .split_once('.')
                    .is_some_and(|(h, _)| header_names_an_algorithm(h)) =>
            {
                JwtError::Algorithm
            }
            _ => JwtError::Malformed,
        })?;
        if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() {
            return Err(JwtError::EmbeddedKey);
        }
        if header.crit.is_some() {
            return Err(JwtError::Critical);
        }
        match &header.typ {
            Some(typ) => {
                let t = typ.to_ascii_lowercase();
                let access_token = matches!(t.as_str(), "at+jwt" | "application/at+jwt");
                let plain = matches!(t.as_str(), "jwt" | "application/jwt");
                if !(access_token || plain && !self.access_token_type) {
                    return Err(JwtError::Type);
                }
            }
            None if self.access_token_type => return Err(JwtError::Type),
            None => {}
        }
        if !self.allowed.contains(&header.alg) {
            return Err(JwtError::Algorithm);
        }
        // A token naming another issuer (read unverified, only ever to
        // refuse) is refused before any key is looked up: in a chain,
        // another issuer's tokens then never make this one fetch keys, nor
        // get its 503 while its issuer is unreachable. (One naming none
        // goes on, to be refused for what it lacks.)
        if let Some(iss) = &self.issuer
            && let Some(claims) = unverified_claims(token)
            && let Some(named) = claims.get("iss").and_then(Value::as_str)
            && named != iss
        {
            return Err(JwtError::Issuer);
        }
        let kid = header.kid.as_deref();
        #[cfg(not(feature = "fetch"))]
        let _ = (fetch, kid);
        let keys = match &self.keys {
            Keys::Static(k) => k.clone(),
            #[cfg(feature = "fetch")]
            Keys::Jwks(cache) if fetch == Fetch::Never => match cache.cached() {
                Some(keys) if kid.is_none_or(|kid| keys.knows_kid(kid)) => keys,
                _ => return Err(JwtError::KeysUnavailable),
            },
            #[cfg(feature = "fetch")]
            Keys::Jwks(cache) => {
                let keys = cache.keys().await.map_err(|_| JwtError::KeysUnavailable)?;
                match kid {
                    // A kid no key carries, and no key without a kid to
                    // answer for it, is looked for (one the keys without a
                    // kid refuse is looked for below).
                    Some(kid) if !keys.knows_kid(kid) => match cache.keys_after_unknown_kid().await
                    {
                        Ok(fresh) if fresh.knows_kid(kid) => fresh,
                        Ok(_) => return Err(JwtError::UnknownKey),
                        Err(_) if cache.status().last_fetch_failed => {
                            return Err(JwtError::KeysUnavailable);
                        }
                        // Not looked for: a fetch was moments ago. A token
                        // issued since may name a key published since (told
                        // to come back, 503); an older one names a key the
                        // fetch would have had (refused). Unverified `iat`:
                        // a made-up one changes only its own token's answer.
                        Err(_) => {
                            return Err(if self.issued_since_fetch(token, cache) {
                                JwtError::KeysUnavailable
                            } else {
                                JwtError::UnknownKey
                            });
                        }
                    },
                    _ => keys,
                }
            }
        };
        let verified = self.verify_with_keys(token, &header, &keys);
        // Refused by the keys without a kid, answering for a kid no key
        // carries: in a JWKS mixing both, it may be a key published since
        // (they answered for every kid, so a new one was never looked
        // for). Looked for once, then tried with it.
        #[cfg(feature = "fetch")]
        if let (Err(_), Some(kid), Keys::Jwks(cache)) = (&verified, kid, &self.keys)
            && fetch != Fetch::Never
            && !keys.has_kid(kid)
            && let Ok(fresh) = cache.keys_after_unknown_kid().await
            && fresh.has_kid(kid)
        {
            return self.verify_with_keys(token, &header, &fresh);
        }
        verified
    }

    /// Verifies `token` (its `header` read) with the candidates of `keys`.
    fn verify_with_keys(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        keys: &KeySet,
    ) -> Result<Cached, JwtError> {
        let kid = header.kid.as_deref();
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .map(|(_, v)| v)
            .ok_or(JwtError::Algorithm)?;
        // Without a kid, no candidate means no trusted key takes this alg.
        let mut last = if kid.is_some() {
            JwtError::UnknownKey
        } else {
            JwtError::Algorithm
        };
        let mut tried = 0;
        for key in keys.candidates(kid, header.alg) {
            if !key.algorithms.contains(&header.alg) {
                last = JwtError::Algorithm;
                continue;
            }
            tried += 1;
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    let verified = VerifiedToken {
                        alg: header.alg,
                        kid: header.kid.clone(),
                        claims: Arc::new(data.claims),
                    };
                    self.check_claims(&verified)?;
                    return Ok(Cached {
                        token: verified,
                        key: key.key.clone(),
                    });
                }
                Err(e) => {
                    last = match e.kind() {
                        // jsonwebtoken names whichever missing claim its
                        // (randomly ordered) set yields first: name the first
                        // in a fixed order, so every replica and every run
                        // gives the same reason. The signature was checked
                        // before the claims, so the payload is genuine.
                        ErrorKind::MissingRequiredClaim(_) => {
                            first_missing_claim(token, validation).map_or_else(
                                || map_error(e.kind()),
                                |c| map_error(&ErrorKind::MissingRequiredClaim(c)),
                            )
                        }
                        kind => map_error(kind),
                    };
                    // Only a bad signature is worth trying the next key for.
                    if last != JwtError::Signature {
                        return Err(last);
                    }
                }
            }
            if tried >= 8 {
                break;
            }
        }
        Err(last)
    }

    fn check_claims(&self, t: &VerifiedToken) -> Result<(), JwtError> {
        for name in ["exp", "nbf", "iat"] {
            if let Some(v) = t.claims.get(name)
                && numeric_date(v).is_none()
            {
                return Err(JwtError::Claim(name.to_owned()));
            }
        }
        // A token issued in the future (beyond the leeway) was not issued
        // by an issuer with a sane clock; one made that way outlives its
        // apparent lifetime.
        let iat = t.claims.get("iat").and_then(numeric_date);
        if iat.is_some_and(|iat| iat > now_secs().saturating_add(self.leeway)) {
            return Err(JwtError::NotYetValid);
        }
        if let Some(max) = self.max_lifetime {
            let iat = iat.ok_or_else(|| JwtError::Claim("iat".to_owned()))?;
            // `exp` is required and was checked as a NumericDate above.
            let exp = t
                .exp_secs()
                .ok_or_else(|| JwtError::Claim("exp".to_owned()))?;
            if exp.saturating_sub(iat) > max {
                return Err(JwtError::Lifetime);
            }
        }
        let named = |k: &str| t.str_claim(k).is_some_and(|s| !s.is_empty());
        // Without a subject there is no identity to bind sessions to. A
        // `sub` that is there must name someone (a non-empty string, RFC
        // 7519 §4.1.2): an empty or numeric one would otherwise fall back
        // to `client_id`, and every user of that client would be one.
        if t.claims.contains_key("sub") && !named("sub") || !named("sub") && !named("client_id") {
            return Err(JwtError::Claim("sub".to_owned()));
        }
        if let Some(iss) = &self.issuer
            && t.claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err(JwtError::Issuer);
        }
        if let Some(check) = &self.check {
            check(t).map_err(JwtError::Custom)?;
        }
        Ok(())
    }
}

/// Whether a JOSE header segment is base64url of a JSON object with a
/// string `alg`: what a token must be before its algorithm can be judged.
/// Anything else (`abc.def.ghi`) is malformed, not a disallowed algorithm.
fn header_names_an_algorithm(segment: &str) -> bool {
    use base64::Engine;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment) else {
        return false;
    };
    serde_json::from_slice::<Map<String, Value>>(&bytes)
        .is_ok_and(|h| h.get("alg").is_some_and(Value::is_string))
}

/// The first of `exp`, `iss`, `aud` that `validation` requires and the
/// token's payload lacks.
fn first_missing_claim(token: &str, validation: &Validation) -> Option<String> {
    let claims = unverified_claims(token)?;
    ["exp", "iss", "aud"]
        .into_iter()
        .find(|c| validation.required_spec_claims.contains(*c) && !claims.contains_key(*c))
        .map(str::to_owned)
}

fn map_error(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::Signature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::Issuer,
        ErrorKind::InvalidAudience => JwtError::Audience,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => JwtError::Audience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => JwtError::Issuer,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            JwtError::Claim(c.clone())
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => JwtError::Algorithm,
        _ => JwtError::Malformed,
    }
}

impl JwtVerifierBuilder {
    /// Accept only JWT access tokens as RFC 9068 types them (`typ` `at+jwt`
    /// or `application/at+jwt`): an ID token, or any other JWT its issuer
    /// signs with the same keys, is then refused even when its `aud` names
    /// this server (OIDC ID tokens carry the client id there, which some
    /// deployments also accept as an audience). Off by default: many issuers
    /// (Cognito, Entra ID v1, older Keycloak) type their access tokens `JWT`
    /// or not at all.
    ///
    /// ```
    /// use mcp_auth_jwt::{Audience, JwtVerifier};
    /// let verifier = JwtVerifier::builder()
    ///     .static_keys(vec![])
    ///     .issuer("https://issuer.example")
    ///     .audience(Audience::OneOf(vec!["https://mcp.example/mcp".into()]))
    ///     .require_access_token_type()
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn require_access_token_type(mut self) -> Self {
        self.access_token_type = true;
        self
    }

    /// Trust these keys.
    pub fn static_keys(mut self, keys: Vec<VerifyKey>) -> Self {
        self.keys = Some(Keys::Static(Arc::new(KeySet::new(keys))));
        self
    }

    /// Trust the keys of this JWKS cache.
    #[cfg(feature = "fetch")]
    pub fn jwks(mut self, cache: JwksCache) -> Self {
        self.keys = Some(Keys::Jwks(cache));
        self
    }

    /// Require `iss` to be exactly `issuer` (no normalisation: a trailing
    /// slash is a different issuer).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(Some(issuer.into()));
        self
    }

    /// Accept any issuer. Only when the keys themselves identify a single
    /// issuer (e.g. a shared secret of this server).
    pub fn any_issuer(mut self) -> Self {
        self.issuer = Some(None);
        self
    }

    /// The audience rule.
    pub fn audience(mut self, audience: Audience) -> Self {
        self.audience = Some(audience);
        self
    }

    /// Clock-skew leeway for `exp`, `nbf` and `iat` (default 60 s): a token
    /// issued in the future beyond it is refused.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Refuse tokens whose `exp` lies more than `max` after their `iat`
    /// (default: no maximum). With a maximum, `iat` is required (never in
    /// the future beyond the leeway, as without), so no accepted token is valid
    /// for longer than `max` from now: a token minted with `exp` in the year
    /// 9999 is refused.
    pub fn max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = max;
        self
    }

    /// The time rules read from settings ([`TimeRules::from_settings`](crate::TimeRules::from_settings)):
    /// leeway and maximum lifetime.
    pub fn time_rules(self, rules: crate::TimeRules) -> Self {
        self.leeway(rules.leeway).max_lifetime(rules.max_lifetime)
    }

    /// Only these algorithms (further narrowed per key by its type).
    pub fn algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.algorithms = algs.to_vec();
        self
    }

    /// Largest accepted token in bytes (default 16 KiB).
    pub fn max_token_bytes(mut self, n: usize) -> Self {
        self.max_token_bytes = n;
        self
    }

    /// A custom check run after every standard check passed.
    ///
    /// It runs when a token is fully verified; a repeated token served from
    /// the verified-token cache is not checked again. If the check consults
    /// state that changes (a revocation list, say), turn the cache off with
    /// [`cache_capacity(0)`](Self::cache_capacity).
    pub fn check(
        mut self,
        f: impl Fn(&VerifiedToken) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Arc::new(f));
        self
    }

    /// How many verified tokens to remember (default 10 000; 0 turns the
    /// cache off). A repeated token then costs a hash and a lookup instead of
    /// a signature check; an entry is never used past the token's `exp`
    /// (plus leeway), nor once its `kid` has left the JWKS. Tokens without
    /// `exp`, and JWKS-verified tokens without `kid`, are never cached. When
    /// full, expired entries are dropped, and if none were, all of them.
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> Result<JwtVerifier, BuildError> {
        let keys = self.keys.ok_or(BuildError::NoKeys)?;
        let audience = self.audience.ok_or(BuildError::NoAudience)?;
        let issuer = self.issuer.ok_or(BuildError::NoIssuer)?;
        if self.algorithms.is_empty() {
            return Err(BuildError::NoAlgorithms);
        }
        let validations: Vec<(Algorithm, Validation)> = self
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = self.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
                if let Some(iss) = &issuer {
                    v.set_issuer(&[iss]);
                    required.insert("iss".to_owned());
                }
                match &audience {
                    Audience::OneOf(list) => {
                        v.set_audience(list);
                        v.validate_aud = true;
                        required.insert("aud".to_owned());
                    }
                    Audience::Unchecked => v.validate_aud = false,
                }
                v.required_spec_claims = required;
                (*alg, v)
            })
            .collect();
        Ok(JwtVerifier {
            keys,
            issuer,
            validations: validations.into(),
            allowed: self.algorithms.into(),
            max_token_bytes: self.max_token_bytes,
            check: self.check,
            leeway: self.leeway.as_secs(),
            max_lifetime: self.max_lifetime.map(|d| d.as_secs()),
            access_token_type: self.access_token_type,
            cache: (self.cache_capacity > 0).then(|| {
                Arc::new(TokenCache {
                    entries: std::sync::Mutex::new(std::collections::HashMap::new()),
                    capacity: self.cache_capacity,
                })
            }),
        })
    }
}

/// Whether a verification may fetch keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// When the cache has none, or none with the token's `kid`.
    WhenNeeded,
    /// Never: [`JwtVerifier::verify_sync`].
    Never,
}

/// A token's payload as a JSON object, unverified: for answers that need
/// no trust in it.
fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
