//! Authorization codes and refresh tokens: single use, bound to their
//! client, redirect URI and PKCE challenge, kept in the session store (so
//! a login started on one replica finishes on another) under the SHA-256
//! of the token, never the token itself.
//!
//! A code used twice revokes everything it issued; a refresh token used
//! after it was rotated revokes its whole family (RFC 9700 §2.2.2,
//! §4.14.2): one of the two users of a stolen token is the thief.
//!
//! ```
//! use mcp_auth_proxy::grants::pkce_matches;
//! // BASE64URL(SHA-256(verifier)), RFC 7636 §4.2.
//! assert!(pkce_matches(
//!     "dBjftJeZ4CVP-mJ92K3fKgMKGLjPwrhUEkTvxdv79uI",
//!     "UVQBJNQHZ8g4GuUFVRtRzSxW2PT4y0U9nW6HCNIEELQ",
//! ));
//! ```

use std::time::Duration;

use mcp_auth_session::{SharedStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::{
    keys::{digest_b64, random_token},
    upstream::UpstreamUser,
};

/// What a code or refresh token stands for: who logged in, for which
/// client, with which scopes, for which resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The refresh family: every token issued from one login.
    pub family: String,
    /// The MCP client the grant belongs to.
    pub client_id: String,
    /// The user the provider vouched for.
    pub user: UpstreamUser,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// The resource (this MCP server's URL) tokens are for.
    pub resource: String,
    /// When the user logged in (unix seconds): refreshes stop
    /// [`GrantTimes::login`] after it, so a user removed at the provider is
    /// out by then at the latest.
    #[serde(default)]
    pub logged_in_at: u64,
    /// The DPoP key (RFC 7638 thumbprint) a public client's refresh tokens
    /// are bound to (RFC 9449 §5): a refresh must come with a proof by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// A code waiting for its exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeEntry {
    grant: Grant,
    redirect_uri: String,
    code_challenge: String,
    /// When it expires (seconds since the epoch; 0 in codes issued before
    /// it was kept): a code given back keeps its end.
    #[serde(default)]
    expires_at: u64,
}

/// A code exchanged ([`Grants::take_code`]), as it was kept: what gives it
/// back.
pub struct TakenCode {
    code: String,
    entry: Vec<u8>,
    expires_at: u64,
}

impl std::fmt::Debug for TakenCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakenCode").finish_non_exhaustive()
    }
}

/// Why a grant was refused: `invalid_grant` (RFC 6749 §5.2) with a reason
/// for the log, or a store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The code or refresh token is unknown, expired, used, revoked, or
    /// bound to another client, redirect URI or PKCE verifier.
    #[error("invalid_grant: {0}")]
    Invalid(&'static str),
    /// The store cannot answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Data in the store does not read back (corrupt or from another version).
    #[error("stored grant unreadable")]
    Corrupt,
    /// No randomness.
    #[error("no randomness")]
    Random,
}

/// Lifetimes of what this module issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantTimes {
    /// An authorization code (default 60 s).
    pub code: Duration,
    /// A refresh token, and how long a rotated one is remembered to catch
    /// its reuse (default 30 days).
    pub refresh: Duration,
    /// How long refreshes may continue after the login (default 90 days):
    /// then the user logs in at the provider again.
    pub login: Duration,
}

impl Default for GrantTimes {
    fn default() -> Self {
        Self {
            code: Duration::from_secs(60),
            refresh: Duration::from_secs(30 * 86_400),
            login: Duration::from_secs(90 * 86_400),
        }
    }
}

/// Whether `verifier` (RFC 7636 §4.1: 43-128 unreserved characters)
/// hashes (S256) to `challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    valid
        && subtle::ConstantTimeEq::ct_eq(
            digest_b64(verifier.as_bytes()).as_bytes(),
            challenge.as_bytes(),
        )
        .into()
}

/// How many spent refresh tokens a family remembers (to catch their reuse).
pub const SPENT_REMEMBERED: usize = 16;

/// Codes and refresh tokens in a store.
#[derive(Clone)]
pub struct Grants {
    store: SharedStore,
    times: GrantTimes,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("store", &self.store.describe())
            .field("times", &self.times)
            .finish()
    }
}

fn key(kind: &str, token: &str) -> String {
    format!("proxy:{kind}:{}", digest_b64(token.as_bytes()))
}

impl Grants {
    /// Grants kept in `store`.
    pub fn new(store: SharedStore, times: GrantTimes) -> Self {
        Self { store, times }
    }

    /// A new family id for a login.
    pub fn new_family() -> Result<String, GrantError> {
        random_token(16).map_err(|_| GrantError::Random)
    }

    /// Issues a single-use code for `grant`, bound to the redirect URI and
    /// PKCE challenge of the authorization request.
    pub async fn issue_code(
        &self,
        grant: Grant,
        redirect_uri: &str,
        code_challenge: &str,
    ) -> Result<String, GrantError> {
        let code = random_token(32).map_err(|_| GrantError::Random)?;
        let entry = CodeEntry {
            grant,
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: code_challenge.to_owned(),
            expires_at: crate::facade::now_secs().saturating_add(self.times.code.as_secs()),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|_| GrantError::Corrupt)?;
        self.store
            .kv_put(&key("code", &code), &bytes, self.times.code)
            .await?;
        Ok(code)
    }

    /// Exchanges a code: it must exist, be unused, belong to `client_id`,
    /// name the same `redirect_uri`, and `verifier` must match its PKCE
    /// challenge. A second exchange of one code revokes the family.
    pub async fn exchange_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Grant, GrantError> {
        self.take_code(code, client_id, redirect_uri, verifier)
            .await
            .map(|(grant, _)| grant)
    }

    /// [`exchange_code`](Self::exchange_code), with what gives the code
    /// back ([`restore_code`](Self::restore_code)) when nothing is issued
    /// for it.
    pub async fn take_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<(Grant, TakenCode), GrantError> {
        let Some(bytes) = self.store.kv_take(&key("code", code)).await? else {
            if let Some(family) = self.store.kv_get(&key("code-used", code)).await? {
                let family = String::from_utf8(family).map_err(|_| GrantError::Corrupt)?;
                tracing::warn!(family = %short(&family), "authorization code replayed; revoking what it issued");
                self.revoke_family(&family).await?;
                return Err(GrantError::Invalid("code already used"));
            }
            return Err(GrantError::Invalid("unknown or expired code"));
        };
        let entry: CodeEntry = serde_json::from_slice(&bytes).map_err(|_| GrantError::Corrupt)?;
        // One marker per login, kept a day: a replay within it revokes.
        self.store
            .kv_put(
                &key("code-used", code),
                entry.grant.family.as_bytes(),
                Duration::from_secs(86_400),
            )
            .await?;
        if entry.grant.client_id != client_id {
            return Err(GrantError::Invalid("code issued to another client"));
        }
        if entry.redirect_uri != redirect_uri {
            return Err(GrantError::Invalid(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !pkce_matches(verifier, &entry.code_challenge) {
            return Err(GrantError::Invalid("PKCE verifier does not match"));
        }
        let taken = TakenCode {
            code: code.to_owned(),
            entry: bytes,
            expires_at: entry.expires_at,
        };
        // Revoked while the code waited (a replay of it while an exchange
        // that gave it back was under way): nothing more for it. A store
        // that cannot say gives the code back (its retry is no replay).
        match self.family_revoked(&entry.grant.family).await {
            Ok(false) => {}
            Ok(true) => return Err(GrantError::Invalid("the login was revoked")),
            Err(e) => {
                let _ = self.restore_code(&taken).await;
                return Err(e);
            }
        }
        Ok((entry.grant, taken))
    }

    /// Gives a code back when nothing was issued for it (the store failed
    /// while issuing, a DPoP proof was refused): its client's retry is then
    /// an exchange, not a replay that revokes the login. The code keeps the
    /// end it was issued with (one past it is not given back).
    pub async fn restore_code(&self, taken: &TakenCode) -> Result<(), GrantError> {
        let left = match taken.expires_at {
            0 => self.times.code,
            end => Duration::from_secs(end.saturating_sub(crate::facade::now_secs())),
        };
        // The replay mark goes either way: a code past its end is unknown
        // to its retry, not replayed.
        self.store.kv_delete(&key("code-used", &taken.code)).await?;
        if left.is_zero() {
            return Ok(());
        }
        self.store
            .kv_put(&key("code", &taken.code), &taken.entry, left)
            .await?;
        Ok(())
    }

    /// Issues a refresh token in the grant's family: `<family>.<random>`, so
    /// a spent token names the family whose record remembers it.
    pub async fn issue_refresh(&self, grant: &Grant) -> Result<String, GrantError> {
        let token = format!(
            "{}.{}",
            grant.family,
            random_token(32).map_err(|_| GrantError::Random)?
        );
        let bytes = serde_json::to_vec(grant).map_err(|_| GrantError::Corrupt)?;
        self.store
            .kv_put(&key("rt", &token), &bytes, self.times.refresh)
            .await?;
        Ok(token)
    }

    /// The family's record of its spent refresh tokens (their digests, the
    /// last [`SPENT_REMEMBERED`]): one record per login, however often it
    /// refreshes.
    async fn spent(&self, family: &str) -> Result<Vec<String>, GrantError> {
        Ok(
            match self.store.kv_get(&format!("proxy:fam:{family}")).await? {
                Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| GrantError::Corrupt)?,
                None => Vec::new(),
            },
        )
    }

    async fn set_spent(&self, family: &str, spent: &[String]) -> Result<(), GrantError> {
        let bytes = serde_json::to_vec(spent).map_err(|_| GrantError::Corrupt)?;
        self.store
            .kv_put(&format!("proxy:fam:{family}"), &bytes, self.times.login)
            .await?;
        Ok(())
    }

    /// Records the client `family` was issued to, for a login's lifetime: a
    /// spent refresh token names its family only, and its revocation must
    /// check that the family is the revoking client's (RFC 7009 §2.1).
    async fn set_family_client(&self, family: &str, client_id: &str) -> Result<(), GrantError> {
        self.store
            .kv_put(
                &format!("proxy:fam-client:{family}"),
                client_id.as_bytes(),
                self.times.login,
            )
            .await?;
        Ok(())
    }

    /// The client `family` was issued to, when recorded.
    async fn family_client(&self, family: &str) -> Result<Option<String>, GrantError> {
        match self
            .store
            .kv_get(&format!("proxy:fam-client:{family}"))
            .await?
        {
            Some(bytes) => Ok(Some(
                String::from_utf8(bytes).map_err(|_| GrantError::Corrupt)?,
            )),
            None => Ok(None),
        }
    }

    /// Whether `token` is one of its family's spent refresh tokens; the
    /// family, when it is.
    async fn spent_family(&self, token: &str) -> Result<Option<String>, GrantError> {
        let Some((family, _)) = token.split_once('.') else {
            return Ok(None);
        };
        let digest = digest_b64(token.as_bytes());
        let spent = self.spent(family).await?;
        Ok(spent
            .iter()
            .any(|d| d == &digest)
            .then(|| family.to_owned()))
    }

    /// Uses a refresh token (rotation: it is spent, the caller issues the
    /// next). A spent token presented again revokes its family.
    pub async fn use_refresh(&self, token: &str, client_id: &str) -> Result<Grant, GrantError> {
        // Presented twice at once, one presentation takes the token; the
        // other, while the first has not yet recorded it as spent, finds it
        // neither live nor spent: refused, without revoking the family (a
        // made-up token of a known family revokes nothing either).
        // Presented again later, it is in the spent list.
        let Some(bytes) = self.store.kv_take(&key("rt", token)).await? else {
            if let Some(family) = self.spent_family(token).await? {
                tracing::warn!(family = %short(&family), "rotated refresh token reused; revoking its family");
                self.revoke_family(&family).await?;
                return Err(GrantError::Invalid("refresh token already used"));
            }
            return Err(GrantError::Invalid(
                "unknown, expired or revoked refresh token",
            ));
        };
        let grant: Grant = serde_json::from_slice(&bytes).map_err(|_| GrantError::Corrupt)?;
        let mut spent = self.spent(&grant.family).await?;
        // Whose the family is goes with its record of spent tokens, renewed
        // as it is (also for a family that rotated before this was kept).
        // Not kept, it only makes a spent token unrevocable by its client
        // until the next rotation: no reason to lose the refresh.
        if let Err(e) = self
            .set_family_client(&grant.family, &grant.client_id)
            .await
        {
            tracing::warn!(error = %e, "could not record a refresh family's client");
        }
        spent.push(digest_b64(token.as_bytes()));
        let excess = spent.len().saturating_sub(SPENT_REMEMBERED);
        spent.drain(..excess);
        self.set_spent(&grant.family, &spent).await?;
        if self.family_revoked(&grant.family).await? {
            return Err(GrantError::Invalid("the grant was revoked"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if grant.logged_in_at > 0
            && now.saturating_sub(grant.logged_in_at) > self.times.login.as_secs()
        {
            return Err(GrantError::Invalid("the login is too old; log in again"));
        }
        if grant.client_id != client_id {
            // Spent anyway: a token presented by the wrong client is stolen.
            self.revoke_family(&grant.family).await?;
            return Err(GrantError::Invalid(
                "refresh token issued to another client",
            ));
        }
        Ok(grant)
    }

    /// Gives a spent refresh token back when nothing was issued for it (a
    /// refused scope, a store failure while issuing the next one).
    pub async fn restore_refresh(&self, token: &str, grant: &Grant) -> Result<(), GrantError> {
        let digest = digest_b64(token.as_bytes());
        let mut spent = self.spent(&grant.family).await?;
        spent.retain(|d| d != &digest);
        self.set_spent(&grant.family, &spent).await?;
        let bytes = serde_json::to_vec(grant).map_err(|_| GrantError::Corrupt)?;
        self.store
            .kv_put(&key("rt", token), &bytes, self.times.refresh)
            .await?;
        Ok(())
    }

    /// Revokes a refresh token (RFC 7009) and its family, when it was issued
    /// to `client_id`; unknown tokens are ignored, as the RFC asks, and so
    /// are another client's (live or spent): nothing is revoked, and the
    /// caller learns nothing about them. A spent token of a family whose
    /// client was not recorded (spent before this check existed) is not
    /// revoked either.
    pub async fn revoke_refresh(&self, token: &str, client_id: &str) -> Result<(), GrantError> {
        if let Some(bytes) = self.store.kv_get(&key("rt", token)).await? {
            let grant: Grant = serde_json::from_slice(&bytes).map_err(|_| GrantError::Corrupt)?;
            if grant.client_id == client_id {
                self.store.kv_delete(&key("rt", token)).await?;
                self.revoke_family(&grant.family).await?;
            }
        } else if let Some(family) = self.spent_family(token).await?
            && self.family_client(&family).await?.as_deref() == Some(client_id)
        {
            // An already rotated token of the caller's: its family is what
            // the caller means.
            self.revoke_family(&family).await?;
        }
        Ok(())
    }

    /// Marks a family revoked: none of its refresh tokens works again.
    pub async fn revoke_family(&self, family: &str) -> Result<(), GrantError> {
        self.store
            .kv_put(&format!("proxy:revoked:{family}"), b"1", self.times.refresh)
            .await?;
        Ok(())
    }

    /// Whether a family was revoked.
    pub async fn family_revoked(&self, family: &str) -> Result<bool, GrantError> {
        Ok(self
            .store
            .kv_get(&format!("proxy:revoked:{family}"))
            .await?
            .is_some())
    }
}

fn short(s: &str) -> &str {
    s.get(..8).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K3fKgMKGLjPwrhUEkTvxdv79uI";
    const CHALLENGE: &str = "UVQBJNQHZ8g4GuUFVRtRzSxW2PT4y0U9nW6HCNIEELQ";

    fn grants() -> Grants {
        Grants::new(
            Arc::new(mcp_auth_session::MemoryStore::new()),
            GrantTimes::default(),
        )
    }

    fn grant(client: &str) -> Grant {
        Grant {
            family: Grants::new_family().unwrap(),
            client_id: client.into(),
            user: UpstreamUser {
                subject: "u1".into(),
                email: None,
                name: None,
                groups: vec![],
            },
            scopes: vec!["mcp:tools".into()],
            resource: "https://mcp.example/mcp".into(),
            logged_in_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            dpop_jkt: None,
        }
    }

    #[tokio::test]
    async fn a_code_is_bound_to_client_redirect_and_pkce_and_used_once() {
        let g = grants();
        let cb = "http://127.0.0.1:9/cb";
        for (client, redirect, verifier, why) in [
            ("other", cb, VERIFIER, "another client"),
            ("c", "http://127.0.0.1:9/other", VERIFIER, "redirect"),
            ("c", cb, "x".repeat(43).as_str(), "PKCE"),
        ] {
            let code = g.issue_code(grant("c"), cb, CHALLENGE).await.unwrap();
            let e = g
                .exchange_code(&code, client, redirect, verifier)
                .await
                .unwrap_err();
            assert!(matches!(e, GrantError::Invalid(_)), "{why}: {e}");
            // Spent by the failed attempt.
            assert!(
                g.exchange_code(&code, "c", cb, VERIFIER).await.is_err(),
                "{why}"
            );
        }
        let code = g.issue_code(grant("c"), cb, CHALLENGE).await.unwrap();
        let got = g.exchange_code(&code, "c", cb, VERIFIER).await.unwrap();
        assert_eq!(got.user.subject, "u1");
        assert!(
            g.exchange_code("never-issued", "c", cb, VERIFIER)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_replayed_code_revokes_the_refresh_tokens_it_issued() {
        let g = grants();
        let cb = "http://127.0.0.1:9/cb";
        let code = g.issue_code(grant("c"), cb, CHALLENGE).await.unwrap();
        let got = g.exchange_code(&code, "c", cb, VERIFIER).await.unwrap();
        let rt = g.issue_refresh(&got).await.unwrap();
        assert!(g.exchange_code(&code, "c", cb, VERIFIER).await.is_err());
        assert!(g.family_revoked(&got.family).await.unwrap());
        let e = g.use_refresh(&rt, "c").await.unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
        let g = grants();
        let first = grant("c");
        let rt1 = g.issue_refresh(&first).await.unwrap();
        let same = g.use_refresh(&rt1, "c").await.unwrap();
        assert_eq!(same, first);
        let rt2 = g.issue_refresh(&same).await.unwrap();
        // The thief (or the client) presents the rotated token again.
        assert!(g.use_refresh(&rt1, "c").await.is_err());
        assert!(g.use_refresh(&rt2, "c").await.is_err(), "family revoked");
        // A token presented by another client is spent and its family revoked.
        let other = grant("c");
        let rt = g.issue_refresh(&other).await.unwrap();
        assert!(g.use_refresh(&rt, "d").await.is_err());
        assert!(g.family_revoked(&other.family).await.unwrap());
    }

    #[tokio::test]
    async fn a_token_taken_but_not_yet_spent_is_refused_and_the_family_kept() {
        let g = grants();
        let gr = grant("c");
        let rt = g.issue_refresh(&gr).await.unwrap();
        // The other presentation took the token and has not yet put it in
        // the spent list.
        g.store.kv_take(&key("rt", &rt)).await.unwrap();
        assert!(g.use_refresh(&rt, "c").await.is_err());
        assert!(!g.family_revoked(&gr.family).await.unwrap());
    }

    #[tokio::test]
    async fn refreshes_stop_when_the_login_is_too_old_and_spent_tokens_can_be_given_back() {
        let g = grants();
        let mut old = grant("c");
        old.logged_in_at = 1_000;
        let rt = g.issue_refresh(&old).await.unwrap();
        let e = g.use_refresh(&rt, "c").await.unwrap_err();
        assert!(e.to_string().contains("too old"), "{e}");
        let fresh = grant("c");
        let rt = g.issue_refresh(&fresh).await.unwrap();
        let got = g.use_refresh(&rt, "c").await.unwrap();
        g.restore_refresh(&rt, &got).await.unwrap();
        assert_eq!(
            g.use_refresh(&rt, "c").await.unwrap(),
            fresh,
            "given back, usable once more"
        );
        // Revoking a rotated token revokes its family.
        let next = g.issue_refresh(&fresh).await.unwrap();
        g.revoke_refresh(&rt, "c").await.unwrap();
        assert!(g.use_refresh(&next, "c").await.is_err());
    }

    #[tokio::test]
    async fn a_family_keeps_one_bounded_record_however_often_it_refreshes() {
        let g = grants();
        let gr = grant("c");
        let mut tokens = vec![g.issue_refresh(&gr).await.unwrap()];
        for _ in 0..40 {
            let last = tokens.last().cloned().unwrap();
            let got = g.use_refresh(&last, "c").await.unwrap();
            tokens.push(g.issue_refresh(&got).await.unwrap());
        }
        assert_eq!(g.spent(&gr.family).await.unwrap().len(), SPENT_REMEMBERED);
        // A forged token naming the family does not revoke it.
        let forged = format!("{}.not-a-token", gr.family);
        assert!(g.use_refresh(&forged, "c").await.is_err());
        assert!(!g.family_revoked(&gr.family).await.unwrap());
        // A recently spent one does.
        let recent = tokens[tokens.len() - 3].clone();
        assert!(g.use_refresh(&recent, "c").await.is_err());
        assert!(g.family_revoked(&gr.family).await.unwrap());
    }

    #[tokio::test]
    async fn revocation_ignores_unknown_and_foreign_tokens() {
        let g = grants();
        let gr = grant("c");
        let rt = g.issue_refresh(&gr).await.unwrap();
        g.revoke_refresh("nope", "c").await.unwrap();
        g.revoke_refresh(&rt, "d").await.unwrap();
        assert!(!g.family_revoked(&gr.family).await.unwrap());
        g.revoke_refresh(&rt, "c").await.unwrap();
        assert!(g.use_refresh(&rt, "c").await.is_err());
    }

    #[tokio::test]
    async fn a_rotated_token_is_revoked_only_by_its_own_client() {
        let g = grants();
        let gr = grant("c");
        let rt1 = g.issue_refresh(&gr).await.unwrap();
        let got = g.use_refresh(&rt1, "c").await.unwrap();
        let rt2 = g.issue_refresh(&got).await.unwrap();
        // Client d presents c's spent token: nothing is revoked.
        g.revoke_refresh(&rt1, "d").await.unwrap();
        assert!(!g.family_revoked(&gr.family).await.unwrap());
        assert_eq!(g.use_refresh(&rt2, "c").await.unwrap(), gr, "still good");
        // A family whose client was not recorded (rotated before the
        // record existed) has it again at its next rotation.
        g.store
            .kv_delete(&format!("proxy:fam-client:{}", gr.family))
            .await
            .unwrap();
        let rt3 = g.issue_refresh(&gr).await.unwrap();
        g.use_refresh(&rt3, "c").await.unwrap();
        // c revokes its own spent token: the family goes.
        g.revoke_refresh(&rt1, "c").await.unwrap();
        assert!(g.family_revoked(&gr.family).await.unwrap());
    }

    #[test]
    fn pkce_verifiers_must_be_well_formed() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(
            VERIFIER,
            "UVQBJNQHZ8g4GuUFVRtRzSxW2PT4y0U9nW6HCNIEELR"
        ));
        assert!(!pkce_matches("short", &digest_b64(b"short")));
        let spaced = format!("{} ", &VERIFIER[..42]);
        assert!(!pkce_matches(&spaced, &digest_b64(spaced.as_bytes())));
    }
}
