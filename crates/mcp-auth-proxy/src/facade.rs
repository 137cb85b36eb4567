//! The facade: configuration, its keys in the store, the access tokens it
//! issues and the authenticator that verifies them.

use std::{sync::Arc, time::Duration};

use mcp_auth_jwt::{Audience, JwtVerifier};
use mcp_auth_session::SharedStore;
use url::Url;

use crate::{
    grants::{Grant, GrantTimes, Grants},
    keys::{KeyError, Sealer, SigningKey, random_token},
    upstream::Upstream,
};

/// How long keys the facade generates itself are kept in the store.
const KEY_TTL: Duration = Duration::from_secs(364 * 86_400);

/// The facade's settings that are not the upstream provider's.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The facade's issuer identifier: this server's origin
    /// (`https://mcp.example.com`), where its RFC 8414 metadata lives.
    pub issuer: Url,
    /// The MCP server's URL: the one resource tokens are issued for.
    pub resource: Url,
    /// Scopes MCP clients may ask for (and are given when they ask none).
    pub scopes_supported: Vec<String>,
    /// Lifetime of the access tokens the facade signs (default 10 min). A
    /// token whose login is revoked is refused before then, within a
    /// second ([`FacadeAuthenticator`]).
    pub access_token_ttl: Duration,
    /// Lifetimes of codes and refresh tokens.
    pub grants: GrantTimes,
    /// How long a login may take, from `/authorize` to the callback
    /// (default 10 min).
    pub login_ttl: Duration,
    /// How long a browser's approval of a client lasts (default 30 days).
    pub consent_ttl: Duration,
    /// DPoP (RFC 9449) at the token endpoint: a token request with a proof
    /// gets an access token bound to the proof's key (`cnf.jkt`,
    /// `token_type` `DPoP`), and a public client's refresh tokens are bound
    /// to it too. `None` (default): proofs are ignored, tokens are bearer
    /// tokens. Turn it on only where the resource server checks DPoP.
    pub dpop: Option<mcp_auth_jwt::DpopVerifier>,
    /// With [`ProxyConfig::dpop`]: issue DPoP-bound tokens only (a token
    /// request without a proof is refused), as the resource server with
    /// `MCP_DPOP=require` accepts nothing else.
    pub dpop_required: bool,
    /// With [`ProxyConfig::dpop`]: the server's DPoP nonces (RFC 9449 §8),
    /// those of the resource server (`MCP_DPOP_NONCE=true`). A token
    /// request's proof must carry a current one, else 400 `use_dpop_nonce`
    /// with a `DPoP-Nonce` header to retry with; token responses carry the
    /// current nonce too. `None` (default): no nonce is asked for.
    pub dpop_nonces: Option<mcp_auth_strategies::DpopNonces>,
}

impl ProxyConfig {
    /// Defaults for a server at `resource` (the issuer is its origin).
    pub fn new(resource: Url) -> Self {
        let mut issuer = resource.clone();
        issuer.set_path("");
        issuer.set_query(None);
        issuer.set_fragment(None);
        Self {
            issuer,
            resource,
            scopes_supported: Vec::new(),
            access_token_ttl: Duration::from_secs(600),
            grants: GrantTimes::default(),
            login_ttl: Duration::from_secs(600),
            consent_ttl: Duration::from_secs(30 * 86_400),
            dpop: None,
            dpop_required: false,
            dpop_nonces: None,
        }
    }

    /// The issuer as its identifier string (no trailing slash).
    pub fn issuer_id(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_owned()
    }

    /// An endpoint of the facade (`/oauth/token`, ...).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer_id())
    }
}

/// Keys the operator may configure; what is missing is generated once and
/// kept in the store, so replicas agree.
#[derive(Default)]
pub struct ConfiguredKeys {
    /// The ES256 signing key (`MCP_PROXY_SIGNING_KEY`).
    pub signing: Option<SigningKey>,
    /// The AES-256-GCM key for data at rest (`MCP_PROXY_ENCRYPTION_KEY`).
    pub encryption: Option<[u8; 32]>,
}

/// A facade that cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store cannot answer (named by its setting, as the server's
    /// other store errors are).
    #[error("MCP_SESSION_STORE: {0}")]
    Store(#[from] mcp_auth_session::StoreError),
    /// The verifier for the facade's own tokens cannot be built.
    #[error("cannot build the token verifier: {0}")]
    Verifier(String),
    /// The signing key kept in the store was sealed under another
    /// encryption key: the one generated while `MCP_PROXY_ENCRYPTION_KEY`
    /// was unset (or a different one).
    #[error(
        "MCP_PROXY_ENCRYPTION_KEY: the signing key kept in the session store was sealed with another \
         encryption key (the one generated while MCP_PROXY_ENCRYPTION_KEY was unset, or a different \
         one): set MCP_PROXY_SIGNING_KEY too, or remove `proxy:signing-key` from the store to make a new one"
    )]
    StoredKeySealedElsewhere,
}

pub(crate) struct Inner {
    pub(crate) cfg: ProxyConfig,
    pub(crate) upstream: Upstream,
    pub(crate) store: SharedStore,
    pub(crate) grants: Grants,
    pub(crate) signing: SigningKey,
    pub(crate) sealer: Sealer,
    pub(crate) csrf_secret: Vec<u8>,
    pub(crate) refreshing: crate::vault::RefreshLocks,
}

/// The authorization-server facade: its endpoints ([`router`](Self::router))
/// and the authenticator for the tokens it issues
/// ([`authenticator`](Self::authenticator)).
#[derive(Clone)]
pub struct OAuthProxy {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for OAuthProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProxy")
            .field("issuer", &self.inner.cfg.issuer_id())
            .field("upstream", &self.inner.upstream)
            .finish_non_exhaustive()
    }
}

impl OAuthProxy {
    /// A facade in front of `upstream`, keeping its state in `store`.
    /// Keys not configured are generated once and kept in the store
    /// (sealed with the encryption key; the encryption key itself, when
    /// generated, is kept in the store too, with a warning: a configured
    /// one keeps a store dump from revealing anything).
    pub async fn new(
        cfg: ProxyConfig,
        upstream: Upstream,
        store: SharedStore,
        keys: ConfiguredKeys,
    ) -> Result<Self, ProxyError> {
        // The shared secrets this replica took from the store, to renew
        // (and to write back should the store lose them).
        let mut held: Vec<(&'static str, Vec<u8>)> = Vec::new();
        let encryption = match keys.encryption {
            Some(k) => k,
            None => {
                tracing::warn!(
                    "MCP_PROXY_ENCRYPTION_KEY is not set: a generated key is kept in the session store, so anyone who can read the store can read the provider's tokens and forge this server's access tokens; set it to `openssl rand -base64 32` (and MCP_PROXY_SIGNING_KEY)"
                );
                let k = shared_secret(&store, "proxy:encryption-key").await?;
                held.push(("proxy:encryption-key", k.to_vec()));
                k
            }
        };
        let sealer = Sealer::new(&encryption)?;
        let signing = match keys.signing {
            Some(k) => k,
            None => {
                let fresh = SigningKey::generate()?;
                let sealed = sealer.seal(fresh.to_pkcs8(), b"proxy:signing-key")?;
                store
                    .kv_put_new("proxy:signing-key", &sealed, KEY_TTL)
                    .await?;
                let stored = store
                    .kv_get("proxy:signing-key")
                    .await?
                    .ok_or(KeyError::Crypto("the signing key vanished from the store"))?;
                held.push(("proxy:signing-key", stored.clone()));
                let pkcs8 = sealer
                    .open(&stored, b"proxy:signing-key")
                    .map_err(|e| match e {
                        KeyError::Unsealable => ProxyError::StoredKeySealedElsewhere,
                        other => ProxyError::Key(other),
                    })?;
                SigningKey::from_pkcs8(&pkcs8)?
            }
        };
        let csrf_secret = shared_secret(&store, "proxy:csrf-secret").await?.to_vec();
        held.push(("proxy:csrf-secret", csrf_secret.clone()));
        keep_shared_keys(&store, held);
        if cfg.scopes_supported.is_empty() {
            tracing::warn!(
                "MCP_OAUTH_SCOPES_SUPPORTED is not set: the login facade grants no scopes, so tools that need one cannot be called through it"
            );
        }
        let grants = Grants::new(store.clone(), cfg.grants);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                upstream,
                store,
                grants,
                signing,
                sealer,
                csrf_secret,
                refreshing: crate::vault::RefreshLocks::default(),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProxyConfig {
        &self.inner.cfg
    }

    /// The verifier for the facade's access tokens: its signing key, its
    /// issuer, this server as the audience. It does not know revocations:
    /// authenticate requests with [`authenticator`](Self::authenticator),
    /// which also refuses the tokens of a revoked login.
    pub fn verifier(&self) -> Result<JwtVerifier, ProxyError> {
        let cfg = &self.inner.cfg;
        JwtVerifier::builder()
            .static_keys(self.inner.signing.verify_keys()?)
            .issuer(cfg.issuer_id())
            .audience(Audience::OneOf(vec![cfg.resource.to_string()]))
            .build()
            .map_err(|e| ProxyError::Verifier(e.to_string()))
    }

    /// The authenticator for the facade's access tokens, naming the facade
    /// as the authorization server in protected-resource metadata. A token
    /// whose login was revoked (RFC 7009 revocation, a replayed code or
    /// refresh token, the provider refusing the login's refresh) is refused
    /// from then on, within a second, not only once it expires.
    pub fn authenticator(&self) -> Result<FacadeAuthenticator, ProxyError> {
        let cfg = &self.inner.cfg;
        Ok(FacadeAuthenticator {
            tokens: mcp_auth_strategies::JwtAuthenticator::new(self.verifier()?)
                .with_authorization_server(cfg.issuer_id())
                .with_scopes_supported(cfg.scopes_supported.clone()),
            proxy: self.clone(),
            checked: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The JWKS document of the signing key.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.signing.jwks()
    }

    /// Signs an access token for `grant`; returns it with its lifetime. It
    /// names the login in the [`fam`](crate::vault::FAMILY_CLAIM) claim, so
    /// a tool holding the caller's principal can get the provider's token
    /// ([`upstream_access_token`](Self::upstream_access_token)).
    /// With `dpop_jkt`, the token is bound to that key (`cnf.jkt`).
    pub(crate) fn access_token(
        &self,
        grant: &Grant,
        dpop_jkt: Option<&str>,
    ) -> Result<(String, u64), KeyError> {
        let cfg = &self.inner.cfg;
        let now = now_secs();
        let ttl = cfg.access_token_ttl.as_secs().max(1);
        let mut claims = serde_json::json!({
            "iss": cfg.issuer_id(),
            "sub": grant.user.subject,
            "aud": grant.resource,
            "client_id": grant.client_id,
            "scope": grant.scopes.join(" "),
            "iat": now,
            "exp": now + ttl,
            "jti": random_token(16)?,
        });
        claims[crate::vault::FAMILY_CLAIM] = grant.family.clone().into();
        if let Some(jkt) = dpop_jkt {
            claims["cnf"] = serde_json::json!({ "jkt": jkt });
        }
        if let Some(e) = &grant.user.email {
            claims["email"] = e.clone().into();
        }
        if let Some(n) = &grant.user.name {
            claims["name"] = n.clone().into();
        }
        if !grant.user.groups.is_empty() {
            claims["groups"] = grant.user.groups.clone().into();
        }
        Ok((self.inner.signing.sign(&claims)?, ttl))
    }
}

/// A 32-byte secret shared by every replica through the store: generated
/// once (the first replica wins), read by all.
async fn shared_secret(store: &SharedStore, key: &str) -> Result<[u8; 32], ProxyError> {
    Ok(mcp_auth_session::shared_secret(&**store, key, KEY_TTL).await?)
}

/// Keys every replica shares live in the store with a TTL (the store has no
/// immortal keys): each replica renews them at start and daily, so they
/// never lapse while a replica still uses them. One the store lost (an
/// eviction, a flush) is written back as this replica holds it (`held`:
/// only what came from the store, never a configured key), so replicas
/// started afterwards take the same one instead of making their own.
fn keep_shared_keys(store: &SharedStore, held: Vec<(&'static str, Vec<u8>)>) {
    async fn renew(store: &SharedStore, held: &[(&'static str, Vec<u8>)]) {
        for (key, mine) in held {
            match store.kv_get(key).await {
                Ok(Some(value)) => {
                    if value != *mine {
                        tracing::warn!(
                            key = *key,
                            "a shared key in the store differs from the one this replica uses \
                             (it was lost and made again): restart this replica"
                        );
                    }
                    let _ = store.kv_put(key, &value, KEY_TTL).await;
                }
                Ok(None) => {
                    if let Ok(true) = store.kv_put_new(key, mine, KEY_TTL).await {
                        tracing::warn!(
                            key = *key,
                            "a shared key was lost from the store: written back"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the shared keys"),
            }
        }
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let store = store.clone();
    rt.spawn(async move {
        loop {
            renew(&store, &held).await;
            tokio::time::sleep(Duration::from_secs(86_400)).await;
        }
    });
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long a login's revocation state is taken as read: a revoked login's
/// access tokens stop working within this, and a busy login costs the
/// store one read per this.
const REVOCATION_CHECKED_FOR: Duration = Duration::from_secs(1);

/// Logins whose revocation state is kept at most; past it the map is
/// emptied (each login then costs one more read).
const REVOCATION_CHECKS_KEPT: usize = 10_000;

/// The facade's access tokens ([`OAuthProxy::authenticator`]): verified as
/// JWTs of its signing key, issuer and audience, then refused once their
/// login was revoked (the `fam` claim; RFC 7009 §2: a revoked token is
/// invalid at the resource server too).
pub struct FacadeAuthenticator {
    tokens: mcp_auth_strategies::JwtAuthenticator,
    proxy: OAuthProxy,
    /// Per login: whether it was revoked, and when that was read.
    checked: std::sync::Mutex<std::collections::HashMap<String, (bool, std::time::Instant)>>,
}

impl std::fmt::Debug for FacadeAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacadeAuthenticator")
            .finish_non_exhaustive()
    }
}

impl FacadeAuthenticator {
    /// Whether the login `family` was revoked (read at most once a
    /// [`REVOCATION_CHECKED_FOR`]).
    async fn revoked(&self, family: &str) -> Result<bool, mcp_auth_core::AuthError> {
        let now = std::time::Instant::now();
        let known = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(family)
            .filter(|(_, at)| now.duration_since(*at) < REVOCATION_CHECKED_FOR)
            .map(|(revoked, _)| *revoked);
        if let Some(revoked) = known {
            return Ok(revoked);
        }
        let revoked = self
            .proxy
            .inner
            .grants
            .family_revoked(family)
            .await
            .map_err(|_| {
                mcp_auth_core::AuthError::unavailable(
                    "the session store cannot tell whether the token was revoked",
                )
            })?;
        let mut checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if checked.len() >= REVOCATION_CHECKS_KEPT {
            checked.clear();
            checked.shrink_to_fit();
        }
        checked.insert(family.to_owned(), (revoked, now));
        Ok(revoked)
    }
}

#[mcp_auth_core::async_trait]
impl mcp_auth_core::Authenticator for FacadeAuthenticator {
    async fn authenticate(
        &self,
        req: &mcp_auth_core::AuthRequest,
    ) -> Result<mcp_auth_core::Principal, mcp_auth_core::AuthError> {
        let principal = self.tokens.authenticate(req).await?;
        // Every token the facade signs names its login; one that does not
        // cannot be checked for revocation, and is refused.
        let Some(family) = self.proxy.family_of(&principal) else {
            return Err(mcp_auth_core::AuthError::invalid_token(
                "the token names no login",
            ));
        };
        if self.revoked(family).await? {
            return Err(mcp_auth_core::AuthError::invalid_token(
                "the token was revoked",
            ));
        }
        Ok(principal)
    }
    fn name(&self) -> &str {
        self.tokens.name()
    }
    fn challenge_schemes(&self) -> Vec<mcp_auth_core::ChallengeScheme> {
        self.tokens.challenge_schemes()
    }
    fn declares_credentials(&self) -> bool {
        self.tokens.declares_credentials()
    }
    fn authorization_servers(&self) -> Vec<String> {
        self.tokens.authorization_servers()
    }
    fn scopes_supported(&self) -> Vec<String> {
        self.tokens.scopes_supported()
    }
    fn readiness(&self) -> Vec<mcp_auth_core::Readiness> {
        self.tokens.readiness()
    }
    fn dpop(&self) -> Option<mcp_auth_core::DpopInfo> {
        self.tokens.dpop()
    }
    /// A principal of one of the facade's tokens stands until its login is
    /// revoked (read as for a request: at most once a second per login);
    /// others are not the facade's to judge.
    async fn still_valid(
        &self,
        principal: &mcp_auth_core::Principal,
    ) -> Result<bool, mcp_auth_core::AuthError> {
        let issuer = self.proxy.inner.cfg.issuer_id();
        if principal.issuer.as_deref() != Some(issuer.as_str()) {
            return Ok(true);
        }
        match self.proxy.family_of(principal) {
            Some(family) => Ok(!self.revoked(family).await?),
            None => Ok(false),
        }
    }
}
