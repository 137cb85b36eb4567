//! The provider's tokens, for tools acting for the user: kept on the
//! server sealed (AES-256-GCM, bound to their login), found through the
//! caller's principal, refreshed at the provider when they expire.
//!
//! ```no_run
//! # async fn tool(
//! #     proxy: &mcp_auth_proxy::OAuthProxy,
//! #     principal: &mcp_auth_core::Principal,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // In a tool, with the caller's principal (the facade's access token):
//! match proxy.upstream_access_token(principal).await? {
//!     // Call the provider's API with `Authorization: Bearer <token>`.
//!     // Never log it, never hand it to the MCP client.
//!     Some(token) => drop(token),
//!     // The caller did not log in through this facade (another strategy).
//!     None => {}
//! }
//! # Ok(()) }
//! ```
//!
//! The facade's access tokens name their login in the
//! [`fam`](FAMILY_CLAIM) claim: the refresh family, under which the
//! provider's tokens were kept at the callback. When the provider's access
//! token has expired, its refresh token gets a new one (stored in place of
//! the old, with the provider's new refresh token if it rotates); one
//! refresh per login at a time, across the tasks of a replica (a lock per
//! family) and, best effort, across replicas (a short lock in the store:
//! the others wait for its result). A revoked login yields
//! [`UpstreamTokenError::Revoked`], never a token.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use mcp_auth_core::Principal;
use mcp_auth_session::StoreError;
use serde::{Deserialize, Serialize};

use crate::{
    facade::{OAuthProxy, now_secs},
    grants::GrantError,
    keys::KeyError,
    upstream::{UpstreamError, UpstreamTokens},
};

/// The claim of the facade's access tokens naming the login (the refresh
/// family) they came from.
pub const FAMILY_CLAIM: &str = "fam";

/// How long a replica may hold the store lock for a refresh (the provider
/// answers within 10 s or the request fails).
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a caller waits for another replica's refresh.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// How often it looks.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// Why there is no upstream token for a caller of this facade. Messages
/// never carry tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamTokenError {
    /// The login was revoked (a replayed code or refresh token, or RFC 7009
    /// revocation): the user must log in again.
    #[error("the login was revoked; the user must log in again")]
    Revoked,
    /// No provider tokens are kept for this login (they expired from the
    /// store, or the provider refused their refresh token).
    #[error("no provider tokens are kept for this login; the user must log in again")]
    Missing,
    /// The provider's access token expired and it gave no refresh token.
    #[error(
        "the provider's access token expired and there is no refresh token; the user must log in again"
    )]
    Expired,
    /// The tokens kept for the login belong to another user than the
    /// caller.
    #[error("the provider tokens of this login belong to another user")]
    Mismatch,
    /// The refresh at the provider failed.
    #[error("refreshing the provider's token failed: {0}")]
    Refresh(UpstreamError),
    /// Another replica is refreshing these tokens and did not finish in
    /// time: try again.
    #[error("another replica is refreshing these tokens; try again")]
    Busy,
    /// The store cannot answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sealed tokens do not open (another encryption key, tampering).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The tokens read back are not what was stored (another version).
    #[error("the stored provider tokens are unreadable")]
    Corrupt,
}

impl From<GrantError> for UpstreamTokenError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Store(s) => Self::Store(s),
            _ => Self::Corrupt,
        }
    }
}

/// What is sealed under `proxy:upstream-tokens:<family>`.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The user the tokens belong to (the grant's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(flatten)]
    tokens: UpstreamTokens,
}

fn tokens_key(family: &str) -> String {
    format!("proxy:upstream-tokens:{family}")
}

fn lock_key(family: &str) -> String {
    format!("proxy:upstream-refresh:{family}")
}

/// A family id as the facade makes them (base64url, short): anything else
/// in a claim is not one of ours.
fn is_family_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One refresh at a time per family within this process.
#[derive(Default)]
pub(crate) struct RefreshLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl RefreshLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This family's lock, shared with every task working on it.
    fn join<'a>(&'a self, family: &'a str) -> Flight<'a> {
        let mutex = self.map().entry(family.to_owned()).or_default().clone();
        Flight {
            locks: self,
            family,
            mutex,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

/// A task's share of a family's lock; the last one out removes it.
struct Flight<'a> {
    locks: &'a RefreshLocks,
    family: &'a str,
    mutex: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map();
        // The map's reference and this one: nobody else waits.
        if Arc::strong_count(&self.mutex) <= 2 {
            map.remove(self.family);
        }
    }
}

impl OAuthProxy {
    /// The login `principal` came from, if it came from this facade: its
    /// issuer is the facade and its token names a family.
    pub fn family_of<'p>(&self, principal: &'p Principal) -> Option<&'p str> {
        if principal.issuer.as_deref() != Some(self.inner.cfg.issuer_id().as_str()) {
            return None;
        }
        principal
            .claims
            .get(FAMILY_CLAIM)
            .and_then(serde_json::Value::as_str)
            .filter(|f| is_family_id(f))
    }

    /// The provider's access token of the user behind `principal`, for a
    /// tool to call the provider's API as that user: `None` when the
    /// principal did not come from this facade. An expired token is
    /// refreshed first (once, however many calls ask at the same time).
    /// The token is the user's credential at the provider: never log it,
    /// never return it to the MCP client.
    pub async fn upstream_access_token(
        &self,
        principal: &Principal,
    ) -> Result<Option<String>, UpstreamTokenError> {
        let Some(family) = self.family_of(principal) else {
            return Ok(None);
        };
        self.check_not_revoked(family).await?;
        let record = self.load_tokens(family, &principal.subject).await?;
        if record.tokens.is_fresh(now_secs()) {
            return Ok(Some(record.tokens.access_token));
        }
        // One refresh per family in this process: the others wait here and
        // find the refreshed tokens.
        let flight = self.inner.refreshing.join(family);
        let _turn = flight.mutex.lock().await;
        self.refresh_across_replicas(family, &principal.subject)
            .await
            .map(Some)
    }

    /// Keeps the provider's `tokens` for the login `family` of `subject`,
    /// sealed, for as long as the login's refresh tokens last.
    pub(crate) async fn keep_upstream_tokens(
        &self,
        family: &str,
        subject: &str,
        tokens: UpstreamTokens,
    ) -> Result<(), UpstreamTokenError> {
        let record = Record {
            sub: Some(subject.to_owned()),
            tokens,
        };
        let bytes = serde_json::to_vec(&record).map_err(|_| UpstreamTokenError::Corrupt)?;
        let sealed = self.inner.sealer.seal(&bytes, family.as_bytes())?;
        self.inner
            .store
            .kv_put(&tokens_key(family), &sealed, self.inner.cfg.grants.refresh)
            .await?;
        Ok(())
    }

    async fn check_not_revoked(&self, family: &str) -> Result<(), UpstreamTokenError> {
        if self.inner.grants.family_revoked(family).await? {
            // Nothing may use them again.
            let _ = self.inner.store.kv_delete(&tokens_key(family)).await;
            return Err(UpstreamTokenError::Revoked);
        }
        Ok(())
    }

    async fn load_tokens(&self, family: &str, subject: &str) -> Result<Record, UpstreamTokenError> {
        let sealed = self
            .inner
            .store
            .kv_get(&tokens_key(family))
            .await?
            .ok_or(UpstreamTokenError::Missing)?;
        let bytes = self.inner.sealer.open(&sealed, family.as_bytes())?;
        let record: Record =
            serde_json::from_slice(&bytes).map_err(|_| UpstreamTokenError::Corrupt)?;
        if record.sub.as_deref().is_some_and(|s| s != subject) {
            return Err(UpstreamTokenError::Mismatch);
        }
        Ok(record)
    }

    /// Refreshes under the store lock, or waits for the replica holding it
    /// and takes its result.
    async fn refresh_across_replicas(
        &self,
        family: &str,
        subject: &str,
    ) -> Result<String, UpstreamTokenError> {
        let store = &self.inner.store;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let record = self.load_tokens(family, subject).await?;
            if record.tokens.is_fresh(now_secs()) {
                return Ok(record.tokens.access_token);
            }
            if record.tokens.refresh_token.is_none() {
                return Err(UpstreamTokenError::Expired);
            }
            if store.kv_put_new(&lock_key(family), b"1", LOCK_TTL).await? {
                // Run to completion even if the caller goes away: a
                // refresh abandoned after a rotating provider spent the
                // old refresh token would lose the login.
                let proxy = self.clone();
                let (family, subject) = (family.to_owned(), subject.to_owned());
                let task = tokio::spawn(async move {
                    let out = proxy.refresh_locked(&family, &subject).await;
                    let _ = proxy.inner.store.kv_delete(&lock_key(&family)).await;
                    out
                });
                return task.await.map_err(|_| {
                    UpstreamTokenError::Refresh(UpstreamError::Unavailable(
                        "the refresh task failed".into(),
                    ))
                })?;
            }
            if Instant::now() >= deadline {
                return Err(UpstreamTokenError::Busy);
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// The refresh itself, holding the store lock.
    async fn refresh_locked(
        &self,
        family: &str,
        subject: &str,
    ) -> Result<String, UpstreamTokenError> {
        // Read again under the lock: another replica may have just finished.
        let record = self.load_tokens(family, subject).await?;
        if record.tokens.is_fresh(now_secs()) {
            return Ok(record.tokens.access_token);
        }
        let Some(refresh_token) = record.tokens.refresh_token.as_deref() else {
            return Err(UpstreamTokenError::Expired);
        };
        let fresh = match self.inner.upstream.refresh(refresh_token).await {
            Ok(t) => t,
            Err(UpstreamError::Refused(code)) if code == "invalid_grant" => {
                // The refresh token is dead (the user removed or signed out
                // at the provider, say): the user must log in again, so the
                // login's own refresh tokens end here too rather than at
                // the login's age limit.
                tracing::info!("the provider refused a refresh token; its login must start again");
                let _ = self.inner.store.kv_delete(&tokens_key(family)).await;
                let _ = self.inner.grants.revoke_family(family).await;
                return Err(UpstreamTokenError::Refresh(UpstreamError::Refused(code)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshing a provider token failed");
                return Err(UpstreamTokenError::Refresh(e));
            }
        };
        self.check_not_revoked(family).await?;
        let access = fresh.access_token.clone();
        self.keep_upstream_tokens(family, subject, fresh).await?;
        Ok(access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{
        Form, Json, Router,
        extract::State,
        http::{HeaderMap, StatusCode},
        response::{IntoResponse, Response},
        routing::post,
    };

    use url::Url;

    use crate::{
        ConfiguredKeys, ProxyConfig,
        grants::{Grant, Grants},
        upstream::{Identity, Upstream, UpstreamUser},
    };

    /// A provider's token endpoint on loopback: refresh grants only,
    /// counted; rotates refresh tokens (`rt-<n>`) unless told not to.
    #[derive(Clone, Default)]
    struct Provider {
        refreshes: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<String>>>,
        rotate: bool,
        refuse: bool,
        delay: Duration,
    }

    async fn token_endpoint(
        State(p): State<Provider>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        // The facade's client authenticates (HTTP Basic, as at the code
        // exchange).
        let basic = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if basic != "Basic Y2xpZW50OnNlY3JldA==" {
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "invalid_client"})),
            )
                .into_response();
        }
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
        let rt = form.get("refresh_token").cloned().unwrap_or_default();
        p.seen.lock().unwrap().push(rt);
        tokio::time::sleep(p.delay).await;
        if p.refuse {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "invalid_grant"})),
            )
                .into_response();
        }
        let n = p.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut body = serde_json::json!({
            "access_token": format!("at-{n}"),
            "token_type": "Bearer",
            "expires_in": 3600,
        });
        if p.rotate {
            body["refresh_token"] = format!("rt-{n}").into();
        }
        Json(body).into_response()
    }

    async fn provider(p: Provider) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Url = format!("http://{}/token", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let app = Router::new()
            .route("/token", post(token_endpoint))
            .with_state(p);
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    async fn proxy(token_url: Url, store: mcp_auth_session::SharedStore) -> OAuthProxy {
        let upstream = Upstream::new(
            "IdP",
            "client",
            "secret",
            "https://idp.example/authorize".parse().unwrap(),
            token_url,
            "https://mcp.example/oauth/callback".parse().unwrap(),
            Identity::Userinfo("https://idp.example/user".parse().unwrap()),
        );
        let cfg = ProxyConfig::new("https://mcp.example/mcp".parse().unwrap());
        let keys = ConfiguredKeys {
            signing: None,
            encryption: Some([9; 32]),
        };
        OAuthProxy::new(cfg, upstream, store, keys).await.unwrap()
    }

    fn grant(family: &str) -> Grant {
        Grant {
            family: family.to_owned(),
            client_id: "mcp-client".into(),
            user: UpstreamUser {
                subject: "user-1".into(),
                email: None,
                name: None,
                groups: vec![],
            },
            scopes: vec!["mcp:tools".into()],
            resource: "https://mcp.example/mcp".into(),
            logged_in_at: 0,
            dpop_jkt: None,
        }
    }

    /// The principal the facade's authenticator makes of an access token
    /// it issued for `family`.
    async fn principal(proxy: &OAuthProxy, family: &str) -> Principal {
        let (token, _) = proxy.access_token(&grant(family), None).unwrap();
        proxy
            .verifier()
            .unwrap()
            .verify(&token)
            .await
            .unwrap()
            .into_principal("oauth2")
    }

    fn tokens(access: &str, refresh: Option<&str>, age: u64) -> UpstreamTokens {
        UpstreamTokens {
            access_token: access.into(),
            refresh_token: refresh.map(str::to_owned),
            expires_in: Some(3600),
            obtained_at: Some(now_secs() - age),
        }
    }

    async fn stored(proxy: &OAuthProxy, family: &str) -> UpstreamTokens {
        proxy.load_tokens(family, "user-1").await.unwrap().tokens
    }

    /// A token of the facade's own key, issuer and audience that names no
    /// login cannot be checked for revocation: the facade's authenticator
    /// refuses it (the facade signs none such; a defence, should one ever
    /// be signed). The same token naming a login is let in.
    #[tokio::test]
    async fn a_token_naming_no_login_is_refused() {
        use mcp_auth_core::Authenticator as _;
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let proxy = proxy(provider(Provider::default()).await, store).await;
        let now = now_secs();
        let mut claims = serde_json::json!({
            "iss": proxy.config().issuer_id(),
            "sub": "user-1",
            "aud": "https://mcp.example/mcp",
            "client_id": "mcp-client",
            "scope": "mcp:tools",
            "iat": now,
            "exp": now + 300,
        });
        let with = |claims: &serde_json::Value| {
            let token = proxy.inner.signing.sign(claims).unwrap();
            mcp_auth_core::AuthRequest::builder()
                .header("authorization", &format!("Bearer {token}"))
                .build()
        };
        let tokens = proxy.authenticator().unwrap();
        let refused = tokens.authenticate(&with(&claims)).await;
        assert!(
            matches!(&refused, Err(mcp_auth_core::AuthError::InvalidToken { description })
                if description.contains("names no login")),
            "{refused:?}"
        );
        claims[FAMILY_CLAIM] = Grants::new_family().unwrap().into();
        let who = tokens.authenticate(&with(&claims)).await.unwrap();
        assert_eq!(who.subject, "user-1");
    }

    #[tokio::test]
    async fn an_expired_token_is_refreshed_once_and_the_rotated_refresh_token_kept() {
        let p = Provider {
            rotate: true,
            delay: Duration::from_millis(150),
            ..Provider::default()
        };
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let proxy = proxy(provider(p.clone()).await, store).await;
        let family = Grants::new_family().unwrap();
        let who = principal(&proxy, &family).await;
        assert_eq!(who.claims[FAMILY_CLAIM], family.as_str(), "the claim");

        // Fresh: handed out as is, no request to the provider.
        proxy
            .keep_upstream_tokens(&family, "user-1", tokens("at-0", Some("rt-0"), 60))
            .await
            .unwrap();
        assert_eq!(
            proxy.upstream_access_token(&who).await.unwrap().as_deref(),
            Some("at-0")
        );
        assert_eq!(p.refreshes.load(Ordering::SeqCst), 0);

        // Expired (obtained two hours ago for one): eight concurrent tool
        // calls, one refresh.
        proxy
            .keep_upstream_tokens(&family, "user-1", tokens("at-0", Some("rt-0"), 7200))
            .await
            .unwrap();
        let calls = (0..8).map(|_| {
            let (proxy, who) = (proxy.clone(), who.clone());
            tokio::spawn(async move { proxy.upstream_access_token(&who).await })
        });
        for call in futures::future::join_all(calls).await {
            assert_eq!(call.unwrap().unwrap().as_deref(), Some("at-1"));
        }
        assert_eq!(p.refreshes.load(Ordering::SeqCst), 1, "single flight");
        assert_eq!(*p.seen.lock().unwrap(), ["rt-0"]);
        let now = stored(&proxy, &family).await;
        assert_eq!(now.access_token, "at-1");
        assert_eq!(
            now.refresh_token.as_deref(),
            Some("rt-1"),
            "rotation stored"
        );
        assert!(now.is_fresh(now_secs()));
        assert_eq!(proxy.inner.refreshing.len(), 0, "no lock left behind");

        // Expired again: the rotated refresh token is the one used.
        let mut old = now.clone();
        old.obtained_at = Some(now_secs() - 7200);
        proxy
            .keep_upstream_tokens(&family, "user-1", old)
            .await
            .unwrap();
        assert_eq!(
            proxy.upstream_access_token(&who).await.unwrap().as_deref(),
            Some("at-2")
        );
        assert_eq!(*p.seen.lock().unwrap(), ["rt-0", "rt-1"]);
        assert!(
            proxy
                .inner
                .store
                .kv_get(&lock_key(&family))
                .await
                .unwrap()
                .is_none(),
            "the store lock is released"
        );
    }

    #[tokio::test]
    async fn replicas_sharing_a_store_refresh_once() {
        let p = Provider {
            delay: Duration::from_millis(300),
            ..Provider::default()
        };
        let url = provider(p.clone()).await;
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        // Two facades (replicas) with their own in-process locks.
        let a = proxy(url.clone(), store.clone()).await;
        let b = proxy(url, store).await;
        let family = Grants::new_family().unwrap();
        let who = principal(&a, &family).await;
        a.keep_upstream_tokens(&family, "user-1", tokens("at-0", Some("rt-0"), 7200))
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(a.upstream_access_token(&who), b.upstream_access_token(&who));
        assert_eq!(ra.unwrap().as_deref(), Some("at-1"));
        assert_eq!(rb.unwrap().as_deref(), Some("at-1"));
        assert_eq!(p.refreshes.load(Ordering::SeqCst), 1);
        // A provider that does not rotate: the refresh token stays.
        assert_eq!(
            stored(&b, &family).await.refresh_token.as_deref(),
            Some("rt-0")
        );
    }

    #[tokio::test]
    async fn without_a_refresh_token_an_expired_token_is_an_error() {
        let p = Provider::default();
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let proxy = proxy(provider(p.clone()).await, store).await;
        let family = Grants::new_family().unwrap();
        let who = principal(&proxy, &family).await;
        proxy
            .keep_upstream_tokens(&family, "user-1", tokens("at-0", None, 7200))
            .await
            .unwrap();
        let e = proxy.upstream_access_token(&who).await.unwrap_err();
        assert!(matches!(e, UpstreamTokenError::Expired), "{e}");
        assert!(!e.to_string().contains("at-0"));
        assert_eq!(p.refreshes.load(Ordering::SeqCst), 0);
        // A token without a lifetime (GitHub's) does not expire.
        let mut forever = tokens("at-0", None, 7200);
        forever.expires_in = None;
        proxy
            .keep_upstream_tokens(&family, "user-1", forever)
            .await
            .unwrap();
        assert_eq!(
            proxy.upstream_access_token(&who).await.unwrap().as_deref(),
            Some("at-0")
        );
    }

    #[tokio::test]
    async fn a_revoked_login_or_a_refused_refresh_gives_no_token() {
        let p = Provider {
            refuse: true,
            ..Provider::default()
        };
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let proxy = proxy(provider(p.clone()).await, store).await;

        // Revoked: an error even with a fresh token, and the tokens go.
        let family = Grants::new_family().unwrap();
        let who = principal(&proxy, &family).await;
        proxy
            .keep_upstream_tokens(&family, "user-1", tokens("at-0", Some("rt-0"), 0))
            .await
            .unwrap();
        proxy.inner.grants.revoke_family(&family).await.unwrap();
        let e = proxy.upstream_access_token(&who).await.unwrap_err();
        assert!(matches!(e, UpstreamTokenError::Revoked), "{e}");
        assert!(
            proxy
                .inner
                .store
                .kv_get(&tokens_key(&family))
                .await
                .unwrap()
                .is_none()
        );

        // The provider refuses the refresh token: an error, the dead
        // tokens are dropped and the login revoked (the next call says so,
        // and its refresh tokens are refused).
        let family = Grants::new_family().unwrap();
        let who = principal(&proxy, &family).await;
        proxy
            .keep_upstream_tokens(&family, "user-1", tokens("at-0", Some("rt-0"), 7200))
            .await
            .unwrap();
        let e = proxy.upstream_access_token(&who).await.unwrap_err();
        assert!(
            matches!(&e, UpstreamTokenError::Refresh(UpstreamError::Refused(c)) if c == "invalid_grant"),
            "{e}"
        );
        let e = proxy.upstream_access_token(&who).await.unwrap_err();
        assert!(matches!(e, UpstreamTokenError::Revoked), "{e}");
        assert!(proxy.inner.grants.family_revoked(&family).await.unwrap());
    }

    #[tokio::test]
    async fn principals_of_other_issuers_or_users_get_nothing() {
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let proxy = proxy("http://127.0.0.1:9/token".parse().unwrap(), store).await;
        let family = Grants::new_family().unwrap();
        proxy
            .keep_upstream_tokens(&family, "user-1", tokens("at-0", None, 0))
            .await
            .unwrap();
        // Another issuer's token with the same claim (another strategy).
        let mut claims = serde_json::Map::new();
        claims.insert(FAMILY_CLAIM.into(), family.clone().into());
        let other = Principal::new("user-1", "oauth2")
            .with_issuer("https://idp.example")
            .with_shared_claims(Arc::new(claims.clone()));
        assert_eq!(proxy.upstream_access_token(&other).await.unwrap(), None);
        // No claim (an API key, a token from before the claim).
        let bare = Principal::new("user-1", "oauth2").with_issuer(proxy.config().issuer_id());
        assert_eq!(proxy.upstream_access_token(&bare).await.unwrap(), None);
        // The family of another user.
        let thief = Principal::new("user-2", "oauth2")
            .with_issuer(proxy.config().issuer_id())
            .with_shared_claims(Arc::new(claims));
        let e = proxy.upstream_access_token(&thief).await.unwrap_err();
        assert!(matches!(e, UpstreamTokenError::Mismatch), "{e}");
        // A login whose tokens are gone.
        let gone = principal(&proxy, &Grants::new_family().unwrap()).await;
        let e = proxy.upstream_access_token(&gone).await.unwrap_err();
        assert!(matches!(e, UpstreamTokenError::Missing), "{e}");
    }

    #[test]
    fn freshness_keeps_a_margin_and_unknown_ages_count_as_expired() {
        let now = 1_000_000;
        let t = |life: Option<u64>, at: Option<u64>| UpstreamTokens {
            access_token: "a".into(),
            refresh_token: None,
            expires_in: life,
            obtained_at: at,
        };
        assert!(t(Some(3600), Some(now)).is_fresh(now));
        assert!(t(Some(3600), Some(now - 3500)).is_fresh(now));
        assert!(
            !t(Some(3600), Some(now - 3580)).is_fresh(now),
            "30 s margin"
        );
        assert!(!t(Some(3600), None).is_fresh(now), "unknown age");
        assert!(t(None, None).is_fresh(now), "no lifetime");
        assert!(
            t(Some(40), Some(now)).is_fresh(now),
            "a short life, a short margin"
        );
        assert!(!is_family_id("") && !is_family_id("a/b") && is_family_id("aZ0-_"));
    }
}
