//! Sender-constrained tokens (DPoP, RFC 9449): what every strategy and
//! layer shares. The proof itself is checked by `mcp-auth-strategies`'
//! `DpopAuthenticator` (feature `jwt`), which wraps any authenticator.
//!
//! ```
//! use mcp_auth_core::{AuthRequest, Principal, TokenScheme, dpop};
//!
//! let req = AuthRequest::builder().header("authorization", "DPoP eyJhbGciOi.x.y").build();
//! let (scheme, token) = req.access_token().unwrap().unwrap();
//! assert_eq!((scheme, token), (TokenScheme::DPoP, "eyJhbGciOi.x.y"));
//!
//! // A token bound to a key (`cnf.jkt`) must come with the DPoP scheme and
//! // a verified proof by that key; one that is not bound must not.
//! let mut bound = Principal::new("alice", "oauth2");
//! std::sync::Arc::make_mut(&mut bound.claims)
//!     .insert("cnf".into(), serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}));
//! let key = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
//! assert!(dpop::check_binding(TokenScheme::DPoP, &bound, Some(key)).is_ok());
//! // Not as a bearer token, not without a verified proof, not by another key.
//! assert!(dpop::check_binding(TokenScheme::Bearer, &bound, None).is_err());
//! assert!(dpop::check_binding(TokenScheme::DPoP, &bound, None).is_err());
//! assert!(dpop::check_binding(TokenScheme::DPoP, &bound, Some("another")).is_err());
//! assert!(dpop::check_binding(TokenScheme::DPoP, &Principal::new("bob", "oauth2"), Some(key)).is_err());
//! ```

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{AuthError, Principal};

/// How an access token was presented in `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    /// `Bearer` (RFC 6750): whoever holds the token may use it.
    Bearer,
    /// `DPoP` (RFC 9449): the token is bound to a key, and a `DPoP` proof
    /// signed by that key comes with it.
    DPoP,
}

impl TokenScheme {
    /// The scheme's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
        }
    }
}

/// The key thumbprint (`cnf.jkt`, RFC 9449 §6.1) the principal's token is
/// bound to, if any.
pub fn bound_key(principal: &Principal) -> Option<&str> {
    principal.claims.get("cnf")?.get("jkt")?.as_str()
}

/// The binding rules every token strategy applies (RFC 9449 §7.1), given
/// the key of the request's verified proof (`proven`:
/// [`AuthRequest::dpop_jkt`](crate::AuthRequest::dpop_jkt), set only by a
/// proof checker): a token bound to a key (`cnf.jkt`) is accepted only with
/// the `DPoP` scheme and a verified proof by that very key, never as a
/// bearer token; a token presented with the `DPoP` scheme must be bound.
/// Without a proof checker in front (DPoP off), the `DPoP` scheme is
/// refused. A token confirmed any other way (RFC 7800 `cnf` members other
/// than `jkt`, e.g. a certificate thumbprint `x5t#S256` of RFC 8705 mutual
/// TLS, or a `jkt` that is not a string) is refused whatever the scheme:
/// this server cannot check that binding, and accepting the token would
/// make it a bearer token for whoever stole it.
pub fn check_binding(
    scheme: TokenScheme,
    principal: &Principal,
    proven: Option<&str>,
) -> Result<(), AuthError> {
    if let Some(cnf) = principal.claims.get("cnf") {
        let only_jkt = cnf.as_object().is_some_and(|members| {
            !members.is_empty()
                && members
                    .iter()
                    .all(|(name, value)| name == "jkt" && value.is_string())
        });
        if !only_jkt {
            return Err(AuthError::invalid_token(
                "the token is bound (cnf) in a way this server cannot check: only DPoP key thumbprints (cnf.jkt) are supported",
            ));
        }
    }
    match (scheme, bound_key(principal)) {
        (TokenScheme::Bearer, Some(_)) => Err(AuthError::invalid_token(
            "the token is bound to a DPoP key: present it with the DPoP scheme and a proof",
        )),
        (TokenScheme::DPoP, None) => Err(AuthError::invalid_token(
            "the token is not bound to a DPoP key (no cnf.jkt): present it as a Bearer token",
        )),
        (TokenScheme::DPoP, Some(jkt)) => match proven {
            Some(p) if p == jkt => Ok(()),
            Some(_) => Err(AuthError::invalid_token(
                "the token is bound to another key than the DPoP proof's",
            )),
            None => Err(unchecked()),
        },
        (TokenScheme::Bearer, None) => Ok(()),
    }
}

/// The refusal of a `DPoP`-scheme token where no proof was checked.
pub fn unchecked() -> AuthError {
    AuthError::invalid_token("this server does not accept DPoP-bound tokens (no DPoP proof check)")
}

/// What a resource does with DPoP, for its metadata (RFC 9728
/// `dpop_signing_alg_values_supported`, `dpop_bound_access_tokens_required`)
/// and its challenges (`DPoP algs="..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopInfo {
    /// The proof algorithms accepted (JWA names).
    pub algorithms: Vec<String>,
    /// Whether only DPoP-bound tokens are accepted.
    pub required: bool,
}

/// A store that remembers keys for a while, to refuse a DPoP proof's `jti`
/// seen before. Shared by every replica of a deployment (the session store
/// implements it), or replays could go to another replica.
#[async_trait]
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` for `ttl`; `Ok(true)` when it was not there (first
    /// use), `Ok(false)` when it was (a replay). An error means the answer
    /// is unknown: the caller refuses (fails closed).
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, String>;
}

/// A [`ReplayCache`] in this process's memory: for one process only
/// (replicas need a shared one). Keys live in two generations, each as long
/// as the longest `ttl` asked for: a key is found in either, the older is
/// dropped whole when the newer fills its time, so memory follows the
/// request rate (about twice a `ttl`'s worth of keys) with no sweep. Holds
/// at most `capacity` keys (about 100 bytes each); when full it refuses new
/// ones (fails closed) until a generation is dropped.
#[derive(Debug)]
pub struct MemoryReplayCache {
    state: Mutex<Generations>,
    capacity: usize,
}

#[derive(Debug)]
struct Generations {
    current: HashMap<String, Instant>,
    previous: HashMap<String, Instant>,
    started: Instant,
    period: Duration,
}

impl Default for MemoryReplayCache {
    /// Up to four million keys: two generations of 67 s proofs at about
    /// 30 000 requests/s (memory at that rate: some 400 MB).
    fn default() -> Self {
        Self::with_capacity(4_000_000)
    }
}

impl MemoryReplayCache {
    /// A cache holding at most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
                started: Instant::now(),
                period: Duration::ZERO,
            }),
            capacity,
        }
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let now = Instant::now();
        let dropped = {
            let mut g = self
                .state
                .lock()
                .map_err(|_| "the replay cache is poisoned".to_owned())?;
            g.period = g.period.max(ttl);
            // The newer generation has filled its time: it becomes the older
            // one, and the older (all expired by now) goes.
            let dropped = if now.duration_since(g.started) >= g.period {
                let current = std::mem::take(&mut g.current);
                g.started = now;
                Some(std::mem::replace(&mut g.previous, current))
            } else {
                None
            };
            let live = |until: Option<&Instant>| until.is_some_and(|u| *u > now);
            if live(g.current.get(key)) || live(g.previous.get(key)) {
                return Ok(false);
            }
            if g.current.len() + g.previous.len() >= self.capacity {
                // Full: the older generation's expired keys go now (only
                // here is a sweep needed).
                g.previous.retain(|_, until| *until > now);
                if g.current.len() + g.previous.len() >= self.capacity {
                    return Err("the replay cache is full".into());
                }
            }
            g.current.insert(key.to_owned(), now + ttl);
            dropped
        };
        // Freed outside the lock.
        drop(dropped);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cnf(cnf: serde_json::Value) -> Principal {
        let mut p = Principal::new("u", "oauth2");
        let mut claims = serde_json::Map::new();
        claims.insert("cnf".into(), cnf);
        p.claims = std::sync::Arc::new(claims);
        p
    }

    /// Only `cnf.jkt` is a binding this server checks; a token confirmed
    /// any other way is refused whatever the scheme, never taken as a
    /// bearer token.
    #[test]
    fn bindings_other_than_a_dpop_key_are_refused() {
        use TokenScheme::{Bearer, DPoP};
        let jkt = with_cnf(serde_json::json!({"jkt": "k1"}));
        assert!(check_binding(DPoP, &jkt, Some("k1")).is_ok());
        assert!(check_binding(Bearer, &jkt, None).is_err());
        assert!(check_binding(Bearer, &Principal::new("u", "oauth2"), None).is_ok());
        for cnf in [
            serde_json::json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            serde_json::json!({"jkt": "k1", "x5t#S256": "bwcK"}),
            serde_json::json!({"jkt": 7}),
            serde_json::json!({"jwk": {"kty": "OKP"}}),
            serde_json::json!({}),
            serde_json::json!("k1"),
            serde_json::Value::Null,
        ] {
            let p = with_cnf(cnf.clone());
            for (scheme, proven) in [(Bearer, None), (DPoP, Some("k1"))] {
                let e = check_binding(scheme, &p, proven).unwrap_err();
                assert!(e.to_string().contains("cnf"), "{cnf} {scheme:?}: {e}");
            }
        }
    }

    #[tokio::test]
    async fn a_key_is_new_once_until_it_expires() {
        let c = MemoryReplayCache::default();
        assert_eq!(c.first_use("a", Duration::from_millis(50)).await, Ok(true));
        assert_eq!(c.first_use("a", Duration::from_millis(50)).await, Ok(false));
        assert_eq!(c.first_use("b", Duration::from_millis(50)).await, Ok(true));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.first_use("a", Duration::from_millis(50)).await, Ok(true));
    }

    /// Memory follows the rate: keys older than two periods are gone
    /// without a sweep, and a key stays refused for its whole ttl.
    #[tokio::test]
    async fn old_generations_are_dropped_whole() {
        let c = MemoryReplayCache::default();
        let ttl = Duration::from_millis(40);
        for i in 0..100 {
            assert_eq!(c.first_use(&format!("k{i}"), ttl).await, Ok(true));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.first_use("new", ttl).await, Ok(true));
        assert_eq!(
            c.first_use("new", ttl).await,
            Ok(false),
            "refused within its ttl"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.first_use("newer", ttl).await, Ok(true));
        let g = c.state.lock().unwrap();
        assert_eq!(
            g.current.len() + g.previous.len(),
            2,
            "the first 100 dropped"
        );
    }

    #[tokio::test]
    async fn a_full_cache_fails_closed_until_keys_expire() {
        let c = MemoryReplayCache::with_capacity(2);
        let ttl = Duration::from_millis(50);
        assert_eq!(c.first_use("a", ttl).await, Ok(true));
        assert_eq!(c.first_use("b", ttl).await, Ok(true));
        assert!(c.first_use("c", ttl).await.is_err());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.first_use("c", ttl).await, Ok(true));
    }
}
