//! RFC 7662 token introspection for opaque access tokens.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mcp_auth_core::{AuthError, Principal};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

/// Longest an introspection result is reused.
const MAX_TTL: Duration = Duration::from_secs(60);
/// How long a negative answer ("not active") is reused.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Most cached answers.
const CAPACITY: usize = 10_000;

/// A cached answer and when it stops being used.
type Cached = (Result<Principal, AuthError>, Instant);

/// Asks the authorization server whether an opaque token is active
/// (RFC 7662), authenticating as a client with HTTP Basic.
///
/// Answers are cached for a short time (at most 60 s, never past the
/// token's `exp`; "inactive" for 10 s), keyed by the token's SHA-256, in a
/// bounded cache. The token must be active, unexpired, issued by the
/// configured issuer (when the answer names one) and, when audiences are
/// configured, carry one of them in `aud`.
pub struct Introspector {
    url: Url,
    client_id: String,
    client_secret: String,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    client: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// An introspector for the endpoint `url`.
    pub fn new(
        url: Url,
        client_id: String,
        client_secret: String,
        issuer: Option<String>,
        audiences: Option<Vec<String>>,
    ) -> Self {
        Self {
            url,
            client_id,
            client_secret,
            issuer,
            audiences,
            client: mcp_auth_jwt::http_client(mcp_auth_jwt::FetchLimits::default()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Result<Principal, AuthError>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(r, _)| r.clone())
    }

    fn store(&self, key: [u8; 32], result: Result<Principal, AuthError>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CAPACITY {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key, (result, Instant::now() + ttl));
        }
    }

    /// Introspects `token`; the principal's strategy is `strategy`.
    pub async fn introspect(&self, token: &str, strategy: &str) -> Result<Principal, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let resp = self
            .client
            .post(self.url.clone())
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "token introspection failed");
                AuthError::unavailable("token introspection unavailable")
            })?;
        if !resp.status().is_success() {
            tracing::warn!(
                status = resp.status().as_u16(),
                "token introspection refused"
            );
            return Err(AuthError::unavailable("token introspection unavailable"));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|_| AuthError::unavailable("token introspection answered garbage"))?;
        let (result, ttl) = self.judge(&body, strategy);
        self.store(key, result.clone(), ttl);
        result
    }

    fn judge(&self, body: &Value, strategy: &str) -> (Result<Principal, AuthError>, Duration) {
        let inactive = |why: &str| (Err(AuthError::invalid_token(why)), NEGATIVE_TTL);
        if body.get("active") != Some(&Value::Bool(true)) {
            return inactive("token is not active");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let exp = body.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|e| e <= now) {
            return inactive("token expired");
        }
        if let (Some(want), Some(got)) = (&self.issuer, body.get("iss").and_then(Value::as_str))
            && want != got
        {
            return inactive("wrong issuer");
        }
        if let Some(auds) = &self.audiences {
            let ok = match body.get("aud") {
                Some(Value::String(a)) => auds.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| auds.iter().any(|w| w == a)),
                _ => false,
            };
            if !ok {
                return inactive("token not issued for this resource (audience)");
            }
        }
        let str_of = |k: &str| body.get(k).and_then(Value::as_str);
        let subject = str_of("sub")
            .or_else(|| str_of("username"))
            .or_else(|| str_of("client_id"))
            .unwrap_or_default();
        let mut p = Principal::new(subject, strategy).with_scopes(
            str_of("scope")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned),
        );
        if let Some(iss) = str_of("iss").or(self.issuer.as_deref()) {
            p = p.with_issuer(iss);
        }
        if let Some(c) = str_of("client_id") {
            p = p.with_client_id(c);
        }
        if let Some(e) = exp {
            p = p.with_expiry(UNIX_EPOCH + Duration::from_secs(e));
        }
        if let Some(map) = body.as_object() {
            p = p.with_claims(map.clone());
        }
        let ttl = exp.map_or(MAX_TTL, |e| Duration::from_secs(e - now).min(MAX_TTL));
        (Ok(p), ttl)
    }
}
