//! The upstream leg: the user's login at the provider (Google, GitHub, AWS
//! Cognito, any OIDC issuer) with the facade's one pre-registered
//! confidential client, through the `oauth2` crate; its own `state` and
//! PKCE; the user identified from a verified ID token or from a userinfo
//! endpoint.
//!
//! ```
//! use mcp_auth_proxy::upstream::{Identity, Upstream};
//!
//! // The second seed's manual form, as for GitHub: authorization, token and
//! // userinfo URLs; the user comes from the userinfo endpoint.
//! let github = Upstream::new(
//!     "GitHub",
//!     "Iv1.0123456789abcdef",
//!     "a-client-secret",
//!     "https://github.com/login/oauth/authorize".parse().unwrap(),
//!     "https://github.com/login/oauth/access_token".parse().unwrap(),
//!     "https://mcp.example.com/oauth/callback".parse().unwrap(),
//!     Identity::Userinfo("https://api.github.com/user".parse().unwrap()),
//! )
//! .with_scopes(["read:user", "user:email"]);
//! let start = github.start_login().unwrap();
//! assert!(start.url.as_str().starts_with("https://github.com/login/oauth/authorize?"));
//! assert!(start.url.as_str().contains("code_challenge_method=S256"));
//! ```

use std::{sync::Arc, time::Duration};

use mcp_auth_jwt::{Audience, JwtVerifier};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
    basic::{
        BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
        BasicTokenType,
    },
};
use serde::{Deserialize, Serialize};
use url::Url;

/// How the facade learns who logged in.
#[derive(Clone)]
pub enum Identity {
    /// An OIDC provider: the `id_token` of the token response, verified
    /// with this verifier (the provider's keys by discovery, its issuer,
    /// our client id as audience), and its `nonce`.
    IdToken(Arc<JwtVerifier>),
    /// A provider with opaque tokens (GitHub): `GET` this URL with the
    /// upstream access token, a JSON object describing the user.
    Userinfo(Url),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IdToken(v) => f.debug_tuple("IdToken").field(&v.issuer()).finish(),
            Self::Userinfo(u) => f.debug_tuple("Userinfo").field(&u.as_str()).finish(),
        }
    }
}

/// The user the provider vouched for, mapped to what a `Principal` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamUser {
    /// The provider's stable identifier for the user (`sub`, or GitHub's
    /// numeric `id`).
    pub subject: String,
    /// Email, when the provider gives one.
    pub email: Option<String>,
    /// Display name, when given.
    pub name: Option<String>,
    /// Groups (`groups`, or `cognito:groups`), when given.
    pub groups: Vec<String>,
}

/// A login on its way to the provider: where to send the browser, and what
/// to keep (server-side) until the callback.
#[derive(Debug, Clone)]
pub struct LoginStart {
    /// The provider's authorization URL with our `state`, PKCE challenge
    /// (S256) and, for OIDC, `nonce`.
    pub url: Url,
    /// The `state` we sent: the key the callback finds the login by.
    pub state: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// The OIDC `nonce` the ID token must carry.
    pub nonce: String,
}

/// An upstream failure. Messages never carry tokens or secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The provider refused the code exchange (its `error` code).
    #[error("the provider refused the login: {0}")]
    Refused(String),
    /// The provider could not be reached or answered nonsense.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The ID token or userinfo answer does not identify a user.
    #[error("the provider's answer does not identify a user: {0}")]
    NoUser(String),
}

/// Extra fields of a token response: the OIDC `id_token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenField {
    /// The ID token, when the provider is OIDC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type TokenResp = StandardTokenResponse<IdTokenField, BasicTokenType>;
type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResp,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The provider and the facade's client there.
#[derive(Clone)]
pub struct Upstream {
    name: String,
    client: OAuthClient,
    scopes: Vec<String>,
    identity: Identity,
    http: reqwest::Client,
}

impl Upstream {
    /// Who logged in, as this upstream learns it (for tests of how it was
    /// built).
    #[cfg(test)]
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("client_id", &self.client.client_id().as_str())
            .field("scopes", &self.scopes)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// A provider from its endpoints and the facade's client there;
    /// `callback` is this server's callback URL (registered at the
    /// provider).
    pub fn new(
        name: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        authorize_url: Url,
        token_url: Url,
        callback: Url,
        identity: Identity,
    ) -> Self {
        let client = oauth2::Client::new(ClientId::new(client_id.into()))
            .set_client_secret(ClientSecret::new(client_secret.into()))
            .set_auth_uri(AuthUrl::from_url(authorize_url))
            .set_token_uri(TokenUrl::from_url(token_url))
            .set_redirect_uri(RedirectUrl::from_url(callback));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            name: name.into(),
            client,
            scopes: Vec::new(),
            identity,
            http,
        }
    }

    /// The scopes to ask the provider for (`MCP_OAUTH_SCOPE`). An OIDC
    /// provider also gets `openid`.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The name shown on the consent page ("continue with …").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The callback URL (where the provider sends the browser back).
    pub fn callback(&self) -> Option<&str> {
        self.client.redirect_uri().map(|u| u.as_str())
    }

    /// The provider's authorization endpoint (the consent page's
    /// `form-action` must allow it).
    pub fn authorize_url(&self) -> String {
        self.client.auth_uri().url().to_string()
    }

    /// Starts a login: fresh `state`, PKCE S256 and `nonce`.
    pub fn start_login(&self) -> Result<LoginStart, UpstreamError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce =
            crate::keys::random_token(24).map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let mut req = self
            .client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        let oidc = matches!(self.identity, Identity::IdToken(_));
        if oidc && !self.scopes.iter().any(|s| s == "openid") {
            req = req.add_scope(Scope::new("openid".into()));
        }
        for s in &self.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if oidc {
            req = req.add_extra_param("nonce", nonce.clone());
        }
        let (url, state) = req.url();
        Ok(LoginStart {
            url,
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce,
        })
    }

    /// Finishes a login: exchanges `code` (with the PKCE verifier) and
    /// identifies the user. Returns the user and the provider's tokens
    /// (kept server-side, never handed to MCP clients).
    pub async fn finish_login(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<(UpstreamUser, UpstreamTokens), UpstreamError> {
        let http = Http(self.http.clone());
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(token_error)?;
        let tokens = UpstreamTokens::from_response(&token, None);
        let user = match &self.identity {
            Identity::IdToken(verifier) => {
                let id_token = token.extra_fields().id_token.as_deref().ok_or_else(|| {
                    UpstreamError::NoUser("the token response has no id_token".into())
                })?;
                let verified = verifier
                    .verify(id_token)
                    .await
                    .map_err(|e| UpstreamError::NoUser(format!("ID token refused: {e}")))?;
                if verified.str_claim("nonce") != Some(nonce) {
                    return Err(UpstreamError::NoUser(
                        "the ID token's nonce is not this login's".into(),
                    ));
                }
                user_from_claims(&verified.claims)?
            }
            Identity::Userinfo(url) => self.userinfo(url, &tokens.access_token).await?,
        };
        Ok((user, tokens))
    }

    /// Refreshes the provider's tokens with `refresh_token` (RFC 6749 §6,
    /// the facade's client authenticating as at the code exchange). A
    /// provider that rotates refresh tokens answers with a new one; one that
    /// does not (Cognito) answers without, and the old one is kept.
    pub async fn refresh(&self, refresh_token: &str) -> Result<UpstreamTokens, UpstreamError> {
        let http = Http(self.http.clone());
        let current = RefreshToken::new(refresh_token.to_owned());
        let token = self
            .client
            .exchange_refresh_token(&current)
            .request_async(&http)
            .await
            .map_err(token_error)?;
        Ok(UpstreamTokens::from_response(&token, Some(refresh_token)))
    }

    async fn userinfo(&self, url: &Url, access_token: &str) -> Result<UpstreamUser, UpstreamError> {
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(access_token)
            .header(http::header::ACCEPT, "application/json")
            // GitHub refuses requests without a User-Agent.
            .header(http::header::USER_AGENT, "mcp-auth-proxy")
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(redacted(&e)))?;
        if !resp.status().is_success() {
            return Err(UpstreamError::NoUser(format!(
                "userinfo answered {}",
                resp.status().as_u16()
            )));
        }
        let bytes = read_limited(resp, 64 * 1024)
            .await
            .map_err(|e| UpstreamError::Unavailable(e.0))?;
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|_| UpstreamError::NoUser("userinfo is not a JSON object".into()))?;
        let mut user = user_from_claims(&claims)?;
        if user.email.is_none() {
            user.email = github_email(url, &claims);
        }
        Ok(user)
    }
}

/// GitHub's user has no `email_verified`, but its public address is one
/// GitHub verified: taken from GitHub's API only (exactly
/// `https://api.github.com/user`; not GitHub Enterprise, whose addresses
/// its administrators set), and only from an answer that does not say
/// `email_verified` itself.
fn github_email(url: &Url, claims: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    if url.as_str() != "https://api.github.com/user" || claims.contains_key("email_verified") {
        return None;
    }
    claims
        .get("email")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The provider's tokens for a user, kept server-side (sealed at rest).
#[derive(Clone, Serialize, Deserialize)]
pub struct UpstreamTokens {
    /// The upstream access token.
    pub access_token: String,
    /// The upstream refresh token, if any.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds, if the provider said.
    pub expires_in: Option<u64>,
    /// When the access token was obtained (seconds since the Unix epoch):
    /// with `expires_in`, when it expires.
    #[serde(default)]
    pub obtained_at: Option<u64>,
}

impl UpstreamTokens {
    fn from_response(token: &TokenResp, previous_refresh: Option<&str>) -> Self {
        Self {
            access_token: token.access_token().secret().clone(),
            refresh_token: token
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| previous_refresh.map(str::to_owned)),
            expires_in: token.expires_in().map(|d| d.as_secs()),
            obtained_at: Some(crate::facade::now_secs()),
        }
    }

    /// When the access token expires (seconds since the Unix epoch):
    /// `None` when the provider gave no lifetime (it lasts until revoked,
    /// as GitHub's do). A token whose age is unknown counts as expired.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_in
            .map(|life| self.obtained_at.map_or(0, |at| at.saturating_add(life)))
    }

    /// Whether the access token is still usable at `now` for a little while:
    /// it expires later than `now` plus a margin (30 s, or a quarter of its
    /// lifetime if that is shorter), so a tool does not get a token that
    /// dies on the way.
    pub fn is_fresh(&self, now: u64) -> bool {
        match (self.expires_at(), self.expires_in) {
            (Some(at), Some(life)) => now.saturating_add((life / 4).min(30)) < at,
            _ => true,
        }
    }
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_in", &self.expires_in)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

/// The user from ID-token or userinfo claims: `sub` (OIDC) or `id`
/// (GitHub's number), `email`, `name` (or GitHub's `login`), `groups` or
/// `cognito:groups`.
pub fn user_from_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<UpstreamUser, UpstreamError> {
    let subject = match (claims.get("sub"), claims.get("id")) {
        (Some(serde_json::Value::String(s)), _) if !s.is_empty() => s.clone(),
        (None, Some(serde_json::Value::Number(n))) => n.to_string(),
        (None, Some(serde_json::Value::String(s))) if !s.is_empty() => s.clone(),
        _ => return Err(UpstreamError::NoUser("no sub (or id) claim".into())),
    };
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let groups = ["groups", "cognito:groups"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(|v| v.as_array()))
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // An address is passed on only when the provider says it verified it:
    // OIDC's `email_verified` is optional, and a provider that leaves it
    // out may hand out addresses its users (or tenants) typed in, so a
    // tool deciding by email could be fooled ("nOAuth"). (GitHub's API,
    // which has no such claim, is trusted by `Upstream::userinfo`.)
    let verified = match claims.get("email_verified") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    Ok(UpstreamUser {
        subject,
        email: text("email").filter(|_| verified),
        name: text("name").or_else(|| text("login")),
        groups,
    })
}

/// A verifier for an OIDC provider's ID tokens: its keys (by discovery or
/// `jwks_url`), its issuer, our client id as audience.
pub fn id_token_verifier(
    issuer: &str,
    client_id: &str,
    jwks: mcp_auth_jwt::JwksCache,
) -> Result<JwtVerifier, mcp_auth_jwt::BuildError> {
    JwtVerifier::builder()
        .jwks(jwks)
        .issuer(issuer)
        .audience(Audience::OneOf(vec![client_id.to_owned()]))
        .build()
}

/// The `oauth2` crate's HTTP client: reqwest without redirects, answers
/// bounded, errors without URLs.
struct Http(reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, req: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let resp = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(redacted(&e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = read_limited(resp, 64 * 1024).await?;
            let mut out = http::Response::new(bytes);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

/// An HTTP failure talking to the provider, without URLs' secrets.
#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HttpError {}

/// A failed token request, without the provider's answer (which may echo
/// what was sent): its `error` code, or the kind of failure.
fn token_error(e: oauth2::RequestTokenError<HttpError, BasicErrorResponse>) -> UpstreamError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            UpstreamError::Refused(r.error().to_string())
        }
        other => UpstreamError::Unavailable(short(&other)),
    }
}

fn redacted(e: &reqwest::Error) -> String {
    // reqwest's message names the URL; keep the kind only.
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

fn short(e: &dyn std::fmt::Display) -> String {
    e.to_string().chars().take(200).collect()
}

async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError(redacted(&e)))? {
        if out.len() + chunk.len() > max {
            return Err(HttpError("answer too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_the_provider_has_not_verified_is_not_passed_on() {
        let c = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        for (verified, kept) in [
            (serde_json::json!(false), false),
            (serde_json::json!("false"), false),
            (serde_json::json!(true), true),
            (serde_json::json!("true"), true),
            (serde_json::json!(1), false),
            // Left out: not passed on.
            (serde_json::Value::Null, false),
        ] {
            let mut claims = serde_json::json!({"sub": "u", "email": "a@example.com"});
            if !verified.is_null() {
                claims["email_verified"] = verified.clone();
            }
            let user = user_from_claims(&c(claims)).unwrap();
            assert_eq!(user.email.is_some(), kept, "email_verified {verified}");
        }
    }

    #[test]
    fn users_from_oidc_github_and_cognito_claims() {
        let c = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let oidc = user_from_claims(&c(serde_json::json!({
            "sub": "248289761001", "email": "jane@example.com", "email_verified": true,
            "name": "Jane"
        })))
        .unwrap();
        assert_eq!(oidc.subject, "248289761001");
        assert_eq!(oidc.email.as_deref(), Some("jane@example.com"));
        let github = user_from_claims(&c(serde_json::json!({
            "id": 583231, "login": "octocat", "email": null
        })))
        .unwrap();
        assert_eq!(
            (github.subject.as_str(), github.name.as_deref()),
            ("583231", Some("octocat"))
        );
        assert_eq!(github.email, None);
        // Without `email_verified` (another provider with GitHub's shape,
        // say): not passed on.
        let unsaid = user_from_claims(&c(serde_json::json!({
            "id": 583231, "login": "octocat", "email": "octocat@example.com"
        })))
        .unwrap();
        assert_eq!(unsaid.email, None);
        // From GitHub's own API, its public address is passed on; from any
        // other URL of that shape, or with an `email_verified` the answer
        // gave itself, it is not.
        let claims = c(serde_json::json!({
            "id": 583231, "login": "octocat", "email": "octocat@example.com"
        }));
        let url = |u: &str| Url::parse(u).unwrap();
        assert_eq!(
            github_email(&url("https://api.github.com/user"), &claims).as_deref(),
            Some("octocat@example.com")
        );
        for other in [
            "https://api.github.com/user/",
            "https://api.github.com/user?x=1",
            "http://api.github.com/user",
            "https://github.example.com/api/v3/user",
            "https://api.github.com.evil.example/user",
        ] {
            assert_eq!(github_email(&url(other), &claims), None, "{other}");
        }
        let mut said = claims.clone();
        said.insert("email_verified".into(), serde_json::json!(false));
        assert_eq!(
            github_email(&url("https://api.github.com/user"), &said),
            None
        );
        let mut empty = claims;
        empty.insert("email".into(), serde_json::json!(""));
        assert_eq!(
            github_email(&url("https://api.github.com/user"), &empty),
            None
        );
        let cognito = user_from_claims(&c(serde_json::json!({
            "sub": "u-1", "cognito:groups": ["admins", 7]
        })))
        .unwrap();
        assert_eq!(cognito.groups, vec!["admins"]);
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"sub": ""}),
            serde_json::json!({"id": true}),
        ] {
            assert!(user_from_claims(&c(bad)).is_err());
        }
    }

    #[test]
    fn logins_use_fresh_state_pkce_and_nonce_and_ask_oidc_for_openid() {
        let verifier = JwtVerifier::builder()
            .static_keys(vec![])
            .issuer("https://idp.example")
            .audience(Audience::Unchecked);
        // A verifier needs keys; any will do for building the URL.
        let key = mcp_auth_jwt::VerifyKey::hmac(&[1; 32], mcp_auth_jwt::Algorithm::HS256).unwrap();
        let verifier = verifier.static_keys(vec![key]).build().unwrap();
        let up = Upstream::new(
            "IdP",
            "client",
            "secret",
            "https://idp.example/authorize".parse().unwrap(),
            "https://idp.example/token".parse().unwrap(),
            "https://mcp.example/callback".parse().unwrap(),
            Identity::IdToken(Arc::new(verifier)),
        )
        .with_scopes(["email"]);
        let a = up.start_login().unwrap();
        let b = up.start_login().unwrap();
        assert_ne!(a.state, b.state);
        assert_ne!(a.pkce_verifier, b.pkce_verifier);
        assert_ne!(a.nonce, b.nonce);
        let q: std::collections::HashMap<_, _> = a.url.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "openid email");
        assert_eq!(q["nonce"], a.nonce);
        assert_eq!(q["state"], a.state);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["redirect_uri"], "https://mcp.example/callback");
        assert!(!a.url.as_str().contains("secret"));
        assert_eq!(up.authorize_url(), "https://idp.example/authorize");
    }
}
