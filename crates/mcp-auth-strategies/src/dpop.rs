//! [`DpopAuthenticator`]: DPoP (RFC 9449) proofs checked in front of any
//! authenticator, so a token bound to a client's key works only with that
//! key.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use mcp_auth_core::{AuthError, AuthRequest, Authenticator, MemoryReplayCache};
//! use mcp_auth_strategies::{DpopAuthenticator, DpopNonces};
//!
//! // Any authenticator of access tokens (here a stand-in that knows none).
//! let tokens = |_req: AuthRequest| async { Err(AuthError::invalid_token("unknown token")) };
//! let auth = DpopAuthenticator::new(
//!     tokens,
//!     "https://mcp.example.com/mcp",
//!     Arc::new(MemoryReplayCache::default()),
//! )
//! .unwrap()
//! .required(true)
//! .with_nonces(DpopNonces::new([7; 32], Duration::from_secs(300)));
//! // Only DPoP-bound tokens, and the challenges and metadata say so.
//! assert!(auth.dpop().unwrap().required);
//! assert_eq!(auth.challenge_schemes()[0].as_str(), "DPoP");
//! ```
//!
//! For each request that presents `Authorization: DPoP <token>`, in this
//! order: exactly one `DPoP` header; the proof's every stateless check
//! ([`DpopVerifier::verify`]: `typ`, an allowed asymmetric `alg`, a public
//! `jwk`, the signature, `htm` = the method, `htu` = this server's public
//! origin + the request path, `iat` in the window, `ath` = the token's
//! hash); the server's nonce, when nonces are on (401 `use_dpop_nonce`
//! with a fresh `DPoP-Nonce`); the token itself (the inner authenticator);
//! the token's `cnf.jkt` = the proof key's thumbprint; and last the proof's
//! `jti` recorded in the [`ReplayCache`] (a second use is refused). The
//! replay check comes after the token's, so a caller without a valid token
//! cannot fill the cache. A verified-token cache inside the inner
//! authenticator changes nothing here: the proof is checked on every
//! request.
//!
//! `Bearer` tokens go to the inner authenticator (which refuses a bound
//! token presented as bearer, [`mcp_auth_core::dpop::check_binding`]); with
//! [`DpopAuthenticator::required`] they are refused, and the challenges name
//! only `DPoP`.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mcp_auth_core::{
    AuthError, AuthRequest, Authenticator, ChallengeScheme, DpopInfo, Principal, ReplayCache,
    SharedAuthenticator, TokenScheme,
};
use mcp_auth_jwt::{DpopError, DpopVerifier};

/// Server nonces for DPoP proofs (RFC 9449 §8): a nonce names a time
/// window and carries an HMAC of it under a key every replica shares, so
/// any replica accepts any replica's nonce without storing one. A nonce is
/// good in its window and the next (one to two `period`s).
///
/// Clones share the key: [`DpopNonces::set_key`] on one (a task that
/// re-reads the shared key from the store) changes it for all, and nonces
/// under the key it replaces stay good too, so replicas that learn of a new
/// key a little apart still take each other's nonces.
#[derive(Clone)]
pub struct DpopNonces {
    keys: Arc<std::sync::RwLock<NonceKeys>>,
    period: Duration,
}

struct NonceKeys {
    newest: [u8; 32],
    hmac: aws_lc_rs::hmac::Key,
    older: Option<aws_lc_rs::hmac::Key>,
}

fn hmac_key(key: &[u8; 32]) -> aws_lc_rs::hmac::Key {
    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key)
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("key", &"<redacted>")
            .field("period", &self.period)
            .finish()
    }
}

impl DpopNonces {
    /// Nonces under `key` (32 random bytes, the same on every replica),
    /// rotating every `period` (at least a second).
    pub fn new(key: [u8; 32], period: Duration) -> Self {
        Self {
            keys: Arc::new(std::sync::RwLock::new(NonceKeys {
                newest: key,
                hmac: hmac_key(&key),
                older: None,
            })),
            period: period.max(Duration::from_secs(1)),
        }
    }

    /// Makes `key` the one new nonces are made with (for every clone); the
    /// key it replaces is still accepted until the next change. Returns
    /// whether it changed anything.
    pub fn set_key(&self, key: [u8; 32]) -> bool {
        let Ok(mut keys) = self.keys.write() else {
            return false;
        };
        if keys.newest == key {
            return false;
        }
        let previous = std::mem::replace(&mut keys.hmac, hmac_key(&key));
        keys.older = Some(previous);
        keys.newest = key;
        true
    }

    fn window(&self, now: u64) -> u64 {
        now / self.period.as_secs().max(1)
    }

    fn for_window(key: &aws_lc_rs::hmac::Key, window: u64) -> String {
        let tag = aws_lc_rs::hmac::sign(key, &window.to_be_bytes());
        let mut raw = window.to_be_bytes().to_vec();
        raw.extend_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The nonce to hand out at `now` (seconds since the epoch).
    pub fn current(&self, now: u64) -> String {
        match self.keys.read() {
            Ok(keys) => Self::for_window(&keys.hmac, self.window(now)),
            // Poisoned: a nonce no proof can match (fails closed).
            Err(_) => String::new(),
        }
    }

    /// Whether `nonce` is one of this window's or the previous one's.
    pub fn is_valid(&self, nonce: &str, now: u64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Some(window) = raw
            .get(..8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_be_bytes)
        else {
            return false;
        };
        let current = self.window(now);
        if window != current && window.saturating_add(1) != current {
            return false;
        }
        let Ok(keys) = self.keys.read() else {
            return false;
        };
        // Constant-time comparison of the whole nonce, under each key.
        std::iter::once(&keys.hmac)
            .chain(keys.older.as_ref())
            .any(|key| {
                let expected = Self::for_window(key, window);
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    expected.as_bytes(),
                    nonce.as_bytes(),
                )
                .is_ok()
            })
    }
}

/// Checks DPoP proofs in front of an authenticator of access tokens.
///
/// For each request that presents `Authorization: DPoP <token>`, in this
/// order: exactly one `DPoP` header; the proof's every stateless check
/// ([`DpopVerifier::verify`]: `typ`, an allowed asymmetric `alg`, a public
/// `jwk`, the signature, `htm` = the method, `htu` = this server's public
/// origin + the request path, `iat` in the window, `ath` = the token's
/// hash); the server's nonce, when nonces are on (401 `use_dpop_nonce`
/// with a fresh `DPoP-Nonce`); the token itself (the inner authenticator);
/// the token's `cnf.jkt` = the proof key's thumbprint; and last the proof's
/// `jti` recorded in the [`ReplayCache`] (a second use is refused). The
/// replay check comes after the token's, so a caller without a valid token
/// cannot fill the cache. A verified-token cache inside the inner
/// authenticator changes nothing here: the proof is checked on every
/// request.
///
/// `Bearer` tokens go to the inner authenticator (which refuses a bound
/// token presented as bearer, [`mcp_auth_core::dpop::check_binding`]); with
/// [`DpopAuthenticator::required`] they are refused, and the challenges name
/// only `DPoP`.
pub struct DpopAuthenticator {
    inner: SharedAuthenticator,
    verifier: DpopVerifier,
    origin: String,
    replay: Arc<dyn ReplayCache>,
    nonces: Option<DpopNonces>,
    required: bool,
}

impl std::fmt::Debug for DpopAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopAuthenticator")
            .field("inner", &self.inner.name())
            .field("origin", &self.origin)
            .field("nonces", &self.nonces.is_some())
            .field("required", &self.required)
            .finish()
    }
}

/// Why a [`DpopAuthenticator`] cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpopConfigError {
    /// The server URL is not an absolute `http(s)` URL.
    #[error("the server URL {0:?} is not an absolute http(s) URL")]
    ServerUrl(String),
}

impl DpopAuthenticator {
    /// Proofs checked against `server_url` (the public URL clients use: its
    /// scheme, host and port are the `htu` origin; the request's path is
    /// appended), `jti`s recorded in `replay` (shared by every replica).
    /// DPoP accepted beside bearer tokens, the default algorithms and `iat`
    /// window ([`DpopVerifier::default`]), no nonces.
    pub fn new(
        inner: impl Authenticator,
        server_url: &str,
        replay: Arc<dyn ReplayCache>,
    ) -> Result<Self, DpopConfigError> {
        Self::shared(Arc::new(inner), server_url, replay)
    }

    /// [`DpopAuthenticator::new`] for an authenticator already shared.
    pub fn shared(
        inner: SharedAuthenticator,
        server_url: &str,
        replay: Arc<dyn ReplayCache>,
    ) -> Result<Self, DpopConfigError> {
        let url = url::Url::parse(server_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| DpopConfigError::ServerUrl(server_url.to_owned()))?;
        Ok(Self {
            inner,
            verifier: DpopVerifier::default(),
            origin: url.origin().ascii_serialization(),
            replay,
            nonces: None,
            required: false,
        })
    }

    /// Proofs checked with `verifier` (its algorithms, window, size limit).
    pub fn with_verifier(mut self, verifier: DpopVerifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// Requires server nonces in proofs.
    pub fn with_nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Accepts DPoP-bound tokens only (bearer tokens are refused).
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    fn algorithms(&self) -> Vec<String> {
        self.verifier
            .algorithms()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect()
    }

    /// The proof checks for a `DPoP`-scheme token (all but the token's own).
    fn check_proof(
        &self,
        req: &AuthRequest,
        token: &str,
    ) -> Result<mcp_auth_jwt::DpopProof, AuthError> {
        let mut proofs = req.headers.get_all("dpop").iter();
        let proof = match (proofs.next(), proofs.next()) {
            (None, _) => return Err(invalid("the DPoP header with the proof is missing")),
            (Some(_), Some(_)) => return Err(invalid("more than one DPoP header")),
            (Some(p), None) => p
                .to_str()
                .map_err(|_| invalid("the DPoP header is not ASCII"))?,
        };
        let htu = format!("{}{}", self.origin, req.uri.path());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verified = self
            .verifier
            .verify(proof, req.method.as_str(), &htu, Some(token), None, now)
            .map_err(|e| proof_error(&e))?;
        if let Some(nonces) = &self.nonces {
            let fresh = verified
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.is_valid(n, now));
            if !fresh {
                return Err(AuthError::UseDpopNonce {
                    nonce: nonces.current(now),
                });
            }
        }
        Ok(verified)
    }
}

fn invalid(description: &str) -> AuthError {
    AuthError::InvalidDpopProof {
        description: description.to_owned(),
    }
}

fn proof_error(e: &DpopError) -> AuthError {
    AuthError::InvalidDpopProof {
        description: e.to_string(),
    }
}

#[async_trait]
impl Authenticator for DpopAuthenticator {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        let (scheme, token) = match req.access_token()? {
            Some(found) => found,
            // No token (an API key, or nothing): the inner authenticator's.
            None => return self.inner.authenticate(req).await,
        };
        if scheme == TokenScheme::Bearer {
            if self.required {
                return Err(AuthError::invalid_token(
                    "this server accepts DPoP-bound tokens only (RFC 9449)",
                ));
            }
            let principal = self.inner.authenticate(req).await?;
            mcp_auth_core::dpop::check_binding(scheme, &principal, None)?;
            return Ok(principal);
        }
        let proof = self.check_proof(req, token)?;
        // The inner strategy sees the proven key, and accepts the token
        // only if it is bound to it.
        let proven = AuthRequest {
            dpop_jkt: Some(proof.jkt.clone()),
            ..req.clone()
        };
        let principal = self.inner.authenticate(&proven).await?;
        mcp_auth_core::dpop::check_binding(scheme, &principal, Some(&proof.jkt))?;
        match self
            .replay
            .first_use(
                &format!("dpop:{}", proof.replay_key()),
                self.verifier.replay_ttl(),
            )
            .await
        {
            Ok(true) => Ok(principal),
            Ok(false) => Err(invalid("the proof was used before (jti replayed)")),
            Err(e) => {
                tracing::warn!(error = %e, "the DPoP replay cache cannot be reached: refusing");
                Err(AuthError::unavailable(
                    "DPoP proofs cannot be checked for replay right now",
                ))
            }
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        let mut schemes = vec![ChallengeScheme::DPoP {
            algs: self.algorithms(),
        }];
        schemes.extend(
            self.inner
                .challenge_schemes()
                .into_iter()
                .filter(|s| !(self.required && *s == ChallengeScheme::Bearer)),
        );
        schemes
    }

    fn authorization_servers(&self) -> Vec<String> {
        self.inner.authorization_servers()
    }

    fn scopes_supported(&self) -> Vec<String> {
        self.inner.scopes_supported()
    }

    fn anonymous_only(&self) -> bool {
        self.inner.anonymous_only()
    }

    fn admits_anonymous(&self) -> bool {
        self.inner.admits_anonymous()
    }

    fn declares_credentials(&self) -> bool {
        self.inner.declares_credentials()
    }

    async fn still_valid(&self, principal: &Principal) -> Result<bool, AuthError> {
        self.inner.still_valid(principal).await
    }

    fn readiness(&self) -> Vec<mcp_auth_core::Readiness> {
        self.inner.readiness()
    }

    fn dpop(&self) -> Option<DpopInfo> {
        Some(DpopInfo {
            algorithms: self.algorithms(),
            required: self.required,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_good_for_two_windows_and_only_under_their_key() {
        let n = DpopNonces::new([1; 32], Duration::from_secs(60));
        let now = 1_000_020;
        let nonce = n.current(now);
        assert!(n.is_valid(&nonce, now));
        assert!(
            n.is_valid(&nonce, now + 60),
            "the next window still takes it"
        );
        assert!(
            !n.is_valid(&nonce, now + 120),
            "two windows later it is stale"
        );
        assert!(!n.is_valid(&nonce, now - 60), "not before its window");
        let other = DpopNonces::new([2; 32], Duration::from_secs(60));
        assert!(!other.is_valid(&nonce, now), "another key's nonce");
        let mut forged = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        forged[10] ^= 1;
        assert!(!n.is_valid(&URL_SAFE_NO_PAD.encode(forged), now));
        assert!(!n.is_valid("", now) && !n.is_valid("!!", now) && !n.is_valid("AAAA", now));
        assert_ne!(n.current(now), n.current(now + 60), "rotates");
    }

    /// A new shared key reaches every clone; nonces under the one it
    /// replaces stay good, the one before that's do not.
    #[test]
    fn a_new_key_reaches_every_clone_and_the_old_one_stays_good() {
        let n = DpopNonces::new([1; 32], Duration::from_secs(60));
        let clone = n.clone();
        let now = 1_000_020;
        let under_first = n.current(now);
        assert!(!clone.set_key([1; 32]), "the same key changes nothing");
        assert!(clone.set_key([2; 32]));
        let under_second = n.current(now);
        assert_ne!(under_first, under_second);
        assert_eq!(
            under_second,
            DpopNonces::new([2; 32], Duration::from_secs(60)).current(now)
        );
        assert!(n.is_valid(&under_first, now) && n.is_valid(&under_second, now));
        n.set_key([3; 32]);
        assert!(!clone.is_valid(&under_first, now), "two keys back");
        assert!(clone.is_valid(&under_second, now));
    }
}
