//! [`CognitoVerifier`].

use std::{sync::Arc, time::Duration};

use mcp_auth_core::{AuthError, Principal};
use mcp_auth_jwt::{
    Algorithm, Audience, BuildError, JwksCache, JwtError, JwtVerifier, VerifiedToken,
    fetch::{is_secure_url, redact},
};
use serde_json::Value;
use url::Url;

/// Which Cognito tokens are accepted. There is no default: choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Access tokens (`token_use=access`): what an MCP server should take.
    Access,
    /// ID tokens (`token_use=id`).
    Id,
    /// Either.
    Both,
}

impl TokenUse {
    fn allows(self, claim: &str) -> bool {
        matches!(
            (self, claim),
            (Self::Access | Self::Both, "access") | (Self::Id | Self::Both, "id")
        )
    }
}

/// Why a Cognito token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CognitoError {
    /// The JWT itself is not valid (signature, expiry, issuer, ...).
    #[error("{0}")]
    Jwt(#[from] JwtError),
    /// The token's issuer is none of the configured pools.
    #[error("token not issued by a configured user pool")]
    UnknownPool,
    /// `token_use` is not the accepted kind.
    #[error("token_use {0:?} not accepted here")]
    TokenUse(String),
    /// The app client is not allowed.
    #[error("app client not allowed")]
    Client,
    /// With resource indicators, `aud` must name this server.
    #[error("token not issued for this resource (audience)")]
    Audience,
    /// The user is in none of the required groups.
    #[error("not in a required group")]
    Group,
    /// The token lacks required scopes.
    #[error("missing scope: {}", .0.join(" "))]
    Scope(Vec<String>),
}

impl From<CognitoError> for AuthError {
    fn from(e: CognitoError) -> Self {
        match e {
            CognitoError::Jwt(j) => j.into(),
            CognitoError::Group => AuthError::forbidden("not in a required group"),
            CognitoError::Scope(all) => AuthError::insufficient_scope(all),
            other => AuthError::invalid_token(other.to_string()),
        }
    }
}

/// The issuer URL of a user pool.
///
/// ```
/// assert_eq!(
///     mcp_auth_cognito::issuer_for("eu-west-1", "eu-west-1_AbC123"),
///     "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
/// );
/// ```
pub fn issuer_for(region: &str, pool_id: &str) -> String {
    format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}")
}

/// A Cognito verifier that cannot be built: a malformed pool, an unusable
/// JWKS URL, or a choice left unmade. Messages never repeat a secret (a JWKS
/// URL is shown without credentials, query or fragment);
/// [`variable`](Self::variable) names the setting concerned.
///
/// ```
/// use mcp_auth_cognito::{CognitoConfigError, PoolConfig};
///
/// let e = PoolConfig::new("eu-west-1", "us-east-1_AbC123").unwrap_err();
/// assert_eq!(e.variable(), "COGNITO_USER_POOL_ID");
/// assert_eq!(
///     e.to_string(),
///     "user pool \"us-east-1_AbC123\" belongs to region us-east-1, not eu-west-1"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CognitoConfigError {
    /// The region is not like `eu-west-1`.
    #[error("{0:?} is not an AWS region like eu-west-1")]
    Region(String),
    /// The pool id is not `<region>_<alphanumeric id>`.
    #[error("{pool_id:?} is not a user pool id like {region}_AbC123")]
    PoolId {
        /// The pool id given.
        pool_id: String,
        /// The pool's region.
        region: String,
    },
    /// The pool id is well formed but names another region.
    #[error("user pool {pool_id:?} belongs to region {pool_region}, not {region}")]
    PoolRegion {
        /// The pool id given.
        pool_id: String,
        /// The region its prefix names.
        pool_region: String,
        /// The pool's configured region.
        region: String,
    },
    /// The JWKS URL is not an http(s) URL.
    #[error("the JWKS URL is not an http(s) URL: {0}")]
    InvalidJwksUrl(String),
    /// The JWKS URL is plain http to a host other than loopback, and
    /// insecure http was not allowed.
    #[error(
        "the JWKS URL {0} must be https (plain http only to loopback, unless insecure http is allowed): anyone on the path could forge keys"
    )]
    InsecureJwksUrl(String),
    /// `token_use` was not chosen.
    #[error("choose token_use: Access, Id or Both")]
    TokenUseUnset,
    /// `client_ids` was not chosen.
    #[error("choose client_ids: Some(app client ids), or None to accept any client of the pool")]
    ClientIdsUnset,
    /// `client_ids` is an empty list.
    #[error("client_ids is an empty list: no token could pass")]
    NoClientIds,
    /// ID tokens are accepted (`token_use` `Id` or `Both`) together with a
    /// check they cannot pass honestly: ID tokens carry no scopes and their
    /// `aud` is the app client, so required scopes or a resource indicator
    /// would hold for access tokens only, and an ID token would get in
    /// without them.
    #[error(
        "{setting} is checked on access tokens only, but COGNITO_TOKEN_USE also accepts ID tokens, which would get in without it: use COGNITO_TOKEN_USE=access"
    )]
    IdTokensSkipCheck {
        /// The check: `COGNITO_REQUIRED_SCOPES` or
        /// `COGNITO_RESOURCE_INDICATORS`.
        setting: &'static str,
    },
    /// The underlying JWT verifier refused its settings. Not expected: the
    /// Cognito builder makes every choice it needs; reported against
    /// `COGNITO_USER_POOL_ID`, the pool being set up.
    #[error("cannot build the JWT verifier: {0}")]
    Verifier(#[from] BuildError),
}

impl CognitoConfigError {
    /// The setting this error concerns, by the variable name
    /// [`CognitoAuthenticator::from_settings`](crate::CognitoAuthenticator::from_settings)
    /// reads it from (`COGNITO_REGION`, `COGNITO_USER_POOL_ID`,
    /// `COGNITO_JWKS_URL`, `COGNITO_TOKEN_USE`, `COGNITO_APP_CLIENT_ID`).
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Region(_) => "COGNITO_REGION",
            Self::PoolId { .. } | Self::PoolRegion { .. } | Self::Verifier(_) => {
                "COGNITO_USER_POOL_ID"
            }
            Self::InvalidJwksUrl(_) | Self::InsecureJwksUrl(_) => "COGNITO_JWKS_URL",
            Self::TokenUseUnset | Self::IdTokensSkipCheck { .. } => "COGNITO_TOKEN_USE",
            Self::ClientIdsUnset | Self::NoClientIds => "COGNITO_APP_CLIENT_ID",
        }
    }
}

/// One user pool's settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    region: String,
    pool_id: String,
    jwks_url: Option<Url>,
}

impl PoolConfig {
    /// A pool by region and id (`<region>_<id>`); refuses malformed values
    /// and a pool id of another region.
    pub fn new(region: &str, pool_id: &str) -> Result<Self, CognitoConfigError> {
        if !is_region(region) {
            return Err(CognitoConfigError::Region(region.to_owned()));
        }
        let Some((pool_region, _)) = pool_id.split_once('_').filter(|(r, id)| {
            is_region(r) && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
        }) else {
            return Err(CognitoConfigError::PoolId {
                pool_id: pool_id.to_owned(),
                region: region.to_owned(),
            });
        };
        if pool_region != region {
            return Err(CognitoConfigError::PoolRegion {
                pool_id: pool_id.to_owned(),
                pool_region: pool_region.to_owned(),
                region: region.to_owned(),
            });
        }
        Ok(Self {
            region: region.to_owned(),
            pool_id: pool_id.to_owned(),
            jwks_url: None,
        })
    }

    /// Fetch the keys from `url` instead of `<issuer>/.well-known/jwks.json`
    /// (emulators, VPC endpoints). The issuer checked stays the real one.
    pub fn with_jwks_url(mut self, url: Url) -> Self {
        self.jwks_url = Some(url);
        self
    }

    /// The pool's issuer.
    pub fn issuer(&self) -> String {
        issuer_for(&self.region, &self.pool_id)
    }

    /// The JWKS URL, checked: http(s), and plain http only to loopback
    /// unless `allow_insecure_http`.
    fn jwks(&self, allow_insecure_http: bool) -> Result<Url, CognitoConfigError> {
        let url = match &self.jwks_url {
            Some(u) => u.clone(),
            None => Url::parse(&format!("{}/.well-known/jwks.json", self.issuer()))
                .map_err(|e| CognitoConfigError::InvalidJwksUrl(e.to_string()))?,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CognitoConfigError::InvalidJwksUrl(format!(
                "scheme {:?}",
                url.scheme()
            )));
        }
        if !is_secure_url(&url, allow_insecure_http) {
            return Err(CognitoConfigError::InsecureJwksUrl(redact(&url)));
        }
        Ok(url)
    }
}

/// An AWS region name: lowercase letters, digits and dashes.
fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

struct Pool {
    issuer: String,
    verifier: JwtVerifier,
}

/// Verifies Cognito access and/or ID tokens.
#[derive(Clone)]
pub struct CognitoVerifier {
    pools: Arc<[Pool]>,
    token_use: TokenUse,
    client_ids: Option<Arc<[String]>>,
    groups: Arc<[String]>,
    scopes: Arc<[String]>,
    resource: Option<String>,
    /// This server's resource identifier: an access token that carries
    /// `aud` must name it, resource indicators or not.
    server: Option<String>,
}

impl std::fmt::Debug for CognitoVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoVerifier")
            .field("issuers", &self.issuers())
            .field("token_use", &self.token_use)
            .field("client_ids", &self.client_ids)
            .field("groups", &self.groups)
            .field("scopes", &self.scopes)
            .field("resource", &self.resource)
            .field("server", &self.server)
            .finish()
    }
}

/// Builder for [`CognitoVerifier`]; `token_use` and `client_ids` must be
/// chosen explicitly.
#[derive(Debug)]
pub struct CognitoVerifierBuilder {
    pools: Vec<PoolConfig>,
    token_use: Option<TokenUse>,
    client_ids: Option<Option<Vec<String>>>,
    groups: Vec<String>,
    scopes: Vec<String>,
    resource: Option<String>,
    server: Option<String>,
    leeway: Duration,
    max_lifetime: Option<Duration>,
    max_stale: Option<Duration>,
    allow_insecure_http: bool,
}

impl CognitoVerifier {
    /// A builder for one pool (add more with [`CognitoVerifierBuilder::pool`]).
    pub fn builder(
        region: &str,
        pool_id: &str,
    ) -> Result<CognitoVerifierBuilder, CognitoConfigError> {
        Ok(CognitoVerifierBuilder {
            pools: vec![PoolConfig::new(region, pool_id)?],
            token_use: None,
            client_ids: None,
            groups: Vec::new(),
            scopes: Vec::new(),
            resource: None,
            server: None,
            leeway: Duration::from_secs(60),
            max_lifetime: None,
            max_stale: None,
            allow_insecure_http: false,
        })
    }

    /// The pools' issuers.
    pub fn issuers(&self) -> Vec<String> {
        self.pools.iter().map(|p| p.issuer.clone()).collect()
    }

    /// The JWKS caches, e.g. to warm them.
    pub fn jwks(&self) -> Vec<JwksCache> {
        self.pools
            .iter()
            .filter_map(|p| p.verifier.jwks().cloned())
            .collect()
    }

    /// The scopes every token needs.
    pub fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Verifies `token` and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Principal, CognitoError> {
        let pool = self.pool_for(token)?;
        let t = pool.verifier.verify(token).await?;
        self.check(&t)?;
        Ok(principal(t))
    }

    /// The pool whose issuer the (unverified) token names. Only used to pick
    /// the keys: the chosen pool's verifier then checks `iss` for real.
    fn pool_for(&self, token: &str) -> Result<&Pool, CognitoError> {
        if self.pools.len() == 1 {
            return Ok(&self.pools[0]);
        }
        // Not decoded past the size the verifier would look at.
        if token.len() > mcp_auth_jwt::DEFAULT_MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge.into());
        }
        let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
        let iss = unverified_iss(payload).ok_or(JwtError::Malformed)?;
        self.pools
            .iter()
            .find(|p| p.issuer == iss)
            .ok_or(CognitoError::UnknownPool)
    }

    fn check(&self, t: &VerifiedToken) -> Result<(), CognitoError> {
        let token_use = t.str_claim("token_use").unwrap_or_default();
        if !self.token_use.allows(token_use) {
            return Err(CognitoError::TokenUse(token_use.to_owned()));
        }
        let is_access = token_use == "access";
        if let Some(allowed) = &self.client_ids {
            let client = if is_access {
                t.str_claim("client_id")
            } else {
                t.str_claim("aud")
            };
            if !client.is_some_and(|c| allowed.iter().any(|a| a == c)) {
                return Err(CognitoError::Client);
            }
        }
        // With resource indicators an access token must name this server in
        // `aud`; without them Cognito's access tokens carry no `aud`, and one
        // that does was minted for some resource: this one, or it is refused
        // (a token for another server of the pool, sharing the app client,
        // is not accepted here).
        let wanted = self.resource.as_ref().or(self.server.as_ref());
        if let (Some(resource), true) = (wanted, is_access) {
            let ok = match t.claims.get("aud") {
                None => self.resource.is_none(),
                Some(Value::String(a)) => a == resource,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(resource)),
                Some(_) => false,
            };
            if !ok {
                return Err(CognitoError::Audience);
            }
        }
        if !self.groups.is_empty() {
            let groups = cognito_groups(t);
            if !self.groups.iter().any(|g| groups.contains(g)) {
                return Err(CognitoError::Group);
            }
        }
        if is_access && !self.scopes.is_empty() {
            let have = cognito_scopes(t, false);
            if self.scopes.iter().any(|s| !have.contains(s)) {
                return Err(CognitoError::Scope(self.scopes.to_vec()));
            }
        }
        Ok(())
    }
}

fn unverified_iss(payload_b64: &str) -> Option<String> {
    // Decoded only to choose a pool; nothing from it is trusted.
    let bytes = base64url_decode(payload_b64)?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn principal(t: VerifiedToken) -> Principal {
    let is_id = t.str_claim("token_use") == Some("id");
    let client = if is_id {
        t.str_claim("aud")
    } else {
        t.str_claim("client_id")
    }
    .map(str::to_owned);
    let username = t
        .str_claim("username")
        .or_else(|| t.str_claim("cognito:username"))
        .map(str::to_owned);
    let email = t.str_claim("email").map(str::to_owned);
    let groups = cognito_groups(&t);
    // Scopes are an access token's `scope`, and nothing else: an ID token
    // grants none, whatever claims a pre-token-generation trigger added to
    // it (an attack pass: an ID token with `scp` passed
    // MCP_OAUTH_REQUIRED_SCOPES and MCP_TOOL_SCOPES), and Cognito issues
    // no `scp`.
    let scopes = cognito_scopes(&t, is_id);
    let mut p = t.into_principal("cognito");
    p.client_id = client;
    p.scopes = scopes;
    // Cognito's own claim only: a `groups` or `roles` claim (which Cognito
    // never issues, but a pre-token-generation trigger could add) is no
    // Cognito group.
    p.groups = groups;
    if let Some(u) = username {
        Arc::make_mut(&mut p.claims).insert("username".into(), u.into());
    }
    if let Some(e) = email {
        Arc::make_mut(&mut p.claims).insert("email".into(), e.into());
    }
    p
}

/// The scopes a token holds: an access token's `scope`, and nothing else
/// (not `scp`, which Cognito never issues); an ID token none.
fn cognito_scopes(t: &VerifiedToken, is_id: bool) -> Vec<String> {
    if is_id {
        return Vec::new();
    }
    t.str_claim("scope")
        .map(|s| mcp_auth_core::scope_tokens(s).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The user-pool groups: `cognito:groups`, and nothing else.
fn cognito_groups(t: &VerifiedToken) -> Vec<String> {
    t.claims
        .get("cognito:groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

impl CognitoVerifierBuilder {
    /// Another pool: tokens of any configured pool are accepted, each checked
    /// against its own issuer and keys.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pools.push(pool);
        self
    }

    /// Fetch the first pool's keys from `url` (emulators, private endpoints).
    pub fn jwks_url(mut self, url: Url) -> Self {
        if let Some(first) = self.pools.first_mut() {
            first.jwks_url = Some(url);
        }
        self
    }

    /// Which tokens are accepted (required).
    pub fn token_use(mut self, token_use: TokenUse) -> Self {
        self.token_use = Some(token_use);
        self
    }

    /// Which app clients' tokens are accepted (required): `Some(ids)`, or
    /// `None` to accept every client of the pool on purpose.
    pub fn client_ids(mut self, ids: Option<Vec<String>>) -> Self {
        self.client_ids = Some(ids);
        self
    }

    /// The user must be in at least one of these groups (`cognito:groups`).
    pub fn required_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Access tokens must carry all of these scopes (custom scopes are
    /// `<resource server identifier>/<scope>`). ID tokens carry no scopes and
    /// are not checked for them.
    pub fn required_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The pool issues tokens with resource indicators: access tokens must
    /// carry `aud` = `resource` (the MCP server URL).
    pub fn resource_indicator(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// This server's resource identifier (its URL), for pools without
    /// resource indicators: an access token without `aud` passes (Cognito
    /// puts none in them), one with `aud` must name this server. So a
    /// token another server of the pool asked for with a resource indicator
    /// is not accepted here, even through a shared app client.
    /// ([`resource_indicator`](Self::resource_indicator) requires `aud`.)
    pub fn server_resource(mut self, resource: impl Into<String>) -> Self {
        self.server = Some(resource.into());
        self
    }

    /// Allow a plain-http JWKS URL to a non-loopback host (default: no).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Clock-skew leeway (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Stop trusting a pool's cached keys once its last successful fetch
    /// is older than `max` (default: never; see
    /// [`JwksCacheBuilder::max_stale`](mcp_auth_jwt::JwksCacheBuilder::max_stale)):
    /// past it, that pool's tokens are refused (503) until a fetch
    /// succeeds, so a key Cognito withdrew cannot stay trusted through a
    /// long outage.
    pub fn max_stale(mut self, max: impl Into<Option<Duration>>) -> Self {
        self.max_stale = max.into();
        self
    }

    /// Longest accepted token lifetime, `exp` minus `iat` (default none;
    /// Cognito's own tokens live 5 minutes to 1 day, and carry `iat`).
    pub fn max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> Result<CognitoVerifier, CognitoConfigError> {
        let token_use = self.token_use.ok_or(CognitoConfigError::TokenUseUnset)?;
        let client_ids = self.client_ids.ok_or(CognitoConfigError::ClientIdsUnset)?;
        if client_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(CognitoConfigError::NoClientIds);
        }
        if token_use != TokenUse::Access {
            let setting = if !self.scopes.is_empty() {
                Some("COGNITO_REQUIRED_SCOPES")
            } else if self.resource.is_some() {
                Some("COGNITO_RESOURCE_INDICATORS")
            } else {
                None
            };
            if let Some(setting) = setting {
                return Err(CognitoConfigError::IdTokensSkipCheck { setting });
            }
        }
        if client_ids.is_none() && self.resource.is_none() {
            tracing::warn!(
                "COGNITO_APP_CLIENT_ID=* without COGNITO_RESOURCE_INDICATORS: tokens any app client \
                 of the pool was issued, for any service, are accepted here"
            );
        }
        let mut pools = Vec::new();
        for p in &self.pools {
            let issuer = p.issuer();
            let cache = JwksCache::builder(p.jwks(self.allow_insecure_http)?)
                .allow_insecure_http(self.allow_insecure_http)
                .max_stale(self.max_stale)
                .build();
            // `aud` is checked by `check` (it means different things for
            // access and ID tokens), so the JWT layer leaves it alone.
            let verifier = JwtVerifier::builder()
                .jwks(cache)
                .issuer(issuer.clone())
                .audience(Audience::Unchecked)
                .algorithms(&[Algorithm::RS256])
                .leeway(self.leeway)
                .max_lifetime(self.max_lifetime)
                .build()?;
            pools.push(Pool { issuer, verifier });
        }
        Ok(CognitoVerifier {
            pools: pools.into(),
            token_use,
            client_ids: client_ids.map(Into::into),
            groups: self.groups.into(),
            scopes: self.scopes.into(),
            resource: self.resource,
            server: self.server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type E = CognitoConfigError;

    /// The error's variable and message.
    fn shown(e: &E) -> (&'static str, String) {
        (e.variable(), e.to_string())
    }

    #[test]
    fn pool_ids_and_regions_are_validated() {
        assert!(PoolConfig::new("eu-west-1", "eu-west-1_AbC123").is_ok());
        for (r, p, variant, var, msg) in [
            (
                "EU",
                "EU_x",
                E::Region("EU".into()),
                "COGNITO_REGION",
                r#""EU" is not an AWS region like eu-west-1"#,
            ),
            (
                "",
                "_x",
                E::Region(String::new()),
                "COGNITO_REGION",
                r#""" is not an AWS region like eu-west-1"#,
            ),
            (
                "eu-west-1",
                "eu-west-1_",
                E::PoolId {
                    pool_id: "eu-west-1_".into(),
                    region: "eu-west-1".into(),
                },
                "COGNITO_USER_POOL_ID",
                r#""eu-west-1_" is not a user pool id like eu-west-1_AbC123"#,
            ),
            (
                "eu-west-1",
                "eu-west-1_Ab/../x",
                E::PoolId {
                    pool_id: "eu-west-1_Ab/../x".into(),
                    region: "eu-west-1".into(),
                },
                "COGNITO_USER_POOL_ID",
                r#""eu-west-1_Ab/../x" is not a user pool id like eu-west-1_AbC123"#,
            ),
            (
                "eu-west-1",
                "AbC123",
                E::PoolId {
                    pool_id: "AbC123".into(),
                    region: "eu-west-1".into(),
                },
                "COGNITO_USER_POOL_ID",
                r#""AbC123" is not a user pool id like eu-west-1_AbC123"#,
            ),
            (
                "eu-west-1",
                "us-east-1_AbC123",
                E::PoolRegion {
                    pool_id: "us-east-1_AbC123".into(),
                    pool_region: "us-east-1".into(),
                    region: "eu-west-1".into(),
                },
                "COGNITO_USER_POOL_ID",
                r#"user pool "us-east-1_AbC123" belongs to region us-east-1, not eu-west-1"#,
            ),
        ] {
            let e = PoolConfig::new(r, p).unwrap_err();
            assert_eq!(e, variant, "{r} {p}");
            assert_eq!(shown(&e), (var, msg.to_owned()), "{r} {p}");
            // The builder refuses the same way.
            assert_eq!(
                CognitoVerifier::builder(r, p).unwrap_err(),
                variant,
                "{r} {p}"
            );
        }
    }

    #[test]
    fn choices_must_be_explicit() {
        let b = || CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123").unwrap();
        let e = b().client_ids(None).build().unwrap_err();
        assert_eq!(e, E::TokenUseUnset);
        assert_eq!(
            shown(&e),
            (
                "COGNITO_TOKEN_USE",
                "choose token_use: Access, Id or Both".into()
            )
        );
        let e = b().token_use(TokenUse::Access).build().unwrap_err();
        assert_eq!(e, E::ClientIdsUnset);
        assert_eq!(
            shown(&e),
            (
                "COGNITO_APP_CLIENT_ID",
                "choose client_ids: Some(app client ids), or None to accept any client of the pool"
                    .into()
            )
        );
        let e = b()
            .token_use(TokenUse::Access)
            .client_ids(Some(vec![]))
            .build()
            .unwrap_err();
        assert_eq!(e, E::NoClientIds);
        assert_eq!(
            shown(&e),
            (
                "COGNITO_APP_CLIENT_ID",
                "client_ids is an empty list: no token could pass".into()
            )
        );
        let v = b()
            .token_use(TokenUse::Access)
            .client_ids(None)
            .build()
            .unwrap();
        assert_eq!(
            v.issuers(),
            ["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"]
        );
    }

    #[test]
    fn jwks_urls_must_be_http_and_secure() {
        let build = |url: &str, allow_http: bool| {
            CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123")
                .unwrap()
                .token_use(TokenUse::Access)
                .client_ids(None)
                .jwks_url(Url::parse(url).unwrap())
                .allow_insecure_http(allow_http)
                .build()
        };
        let e = build("file:///etc/jwks.json", false).unwrap_err();
        assert_eq!(e, E::InvalidJwksUrl(r#"scheme "file""#.into()));
        assert_eq!(
            shown(&e),
            (
                "COGNITO_JWKS_URL",
                r#"the JWKS URL is not an http(s) URL: scheme "file""#.into()
            )
        );
        // Credentials, query and fragment are never shown.
        let e = build(
            "http://user:s3cret@jwks.example/keys?token=s3cret#s3cret",
            false,
        )
        .unwrap_err();
        assert_eq!(e, E::InsecureJwksUrl("http://jwks.example/keys".into()));
        let (var, msg) = shown(&e);
        assert_eq!(var, "COGNITO_JWKS_URL");
        assert_eq!(
            msg,
            "the JWKS URL http://jwks.example/keys must be https (plain http only to loopback, \
             unless insecure http is allowed): anyone on the path could forge keys"
        );
        assert!(!msg.contains("s3cret"), "{msg}");
        // Allowed: on purpose, to loopback, or https.
        assert!(build("http://jwks.example/keys", true).is_ok());
        assert!(build("http://127.0.0.1:5000/keys", false).is_ok());
        assert!(build("https://jwks.example/keys", false).is_ok());
        // Extra pools are checked too.
        let e = CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123")
            .unwrap()
            .pool(
                PoolConfig::new("us-east-1", "us-east-1_X")
                    .unwrap()
                    .with_jwks_url(Url::parse("http://jwks.example/").unwrap()),
            )
            .token_use(TokenUse::Both)
            .client_ids(None)
            .build()
            .unwrap_err();
        assert_eq!(e.variable(), "COGNITO_JWKS_URL");
    }

    fn encode_base64url(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    /// With several pools the token's issuer picks the pool's keys; a
    /// token too large for the verifier is refused before its payload is
    /// decoded for that.
    #[test]
    fn with_several_pools_oversized_tokens_are_not_decoded() {
        let v = CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123")
            .unwrap()
            .pool(PoolConfig::new("us-east-1", "us-east-1_X").unwrap())
            .token_use(TokenUse::Access)
            .client_ids(None)
            .build()
            .unwrap();
        let token = |iss: &str, pad: usize| {
            let payload = format!(r#"{{"iss":"{iss}","pad":"{}"}}"#, "x".repeat(pad));
            let b64 = encode_base64url(payload.as_bytes());
            format!("eyJhbGciOiJSUzI1NiJ9.{b64}.c2ln")
        };
        let iss = crate::issuer_for("us-east-1", "us-east-1_X");
        let fits = token(&iss, 100);
        assert!(std::ptr::eq(v.pool_for(&fits).unwrap(), &v.pools[1]));
        let huge = token(&iss, mcp_auth_jwt::DEFAULT_MAX_TOKEN_BYTES);
        assert!(matches!(
            v.pool_for(&huge),
            Err(CognitoError::Jwt(JwtError::TooLarge))
        ));
    }

    /// Required scopes and resource indicators are access-token checks: a
    /// configuration that also lets ID tokens in (which would skip them)
    /// is refused, naming the check.
    #[tokio::test]
    async fn id_tokens_cannot_be_let_past_access_token_checks() {
        let with = |token_use: TokenUse, scopes: &[&str], resource: Option<&str>| {
            let mut b = CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123")
                .unwrap()
                .token_use(token_use)
                .client_ids(Some(vec!["app".into()]))
                .required_scopes(scopes.iter().copied());
            if let Some(r) = resource {
                b = b.resource_indicator(r);
            }
            b.build()
        };
        for token_use in [TokenUse::Id, TokenUse::Both] {
            let e = with(token_use, &["mcp/tools"], None).unwrap_err();
            assert_eq!(
                e,
                E::IdTokensSkipCheck {
                    setting: "COGNITO_REQUIRED_SCOPES"
                }
            );
            assert_eq!(e.variable(), "COGNITO_TOKEN_USE");
            assert!(
                e.to_string()
                    .starts_with("COGNITO_REQUIRED_SCOPES is checked on access tokens only"),
                "{e}"
            );
            let e = with(token_use, &[], Some("https://mcp.example/mcp")).unwrap_err();
            assert_eq!(
                e,
                E::IdTokensSkipCheck {
                    setting: "COGNITO_RESOURCE_INDICATORS"
                }
            );
            assert!(with(token_use, &[], None).is_ok());
        }
        assert!(
            with(
                TokenUse::Access,
                &["mcp/tools"],
                Some("https://mcp.example/mcp")
            )
            .is_ok()
        );
    }

    #[test]
    fn verifier_build_errors_are_wrapped() {
        let e = CognitoConfigError::from(BuildError::NoKeys);
        assert_eq!(
            shown(&e),
            (
                "COGNITO_USER_POOL_ID",
                "cannot build the JWT verifier: no keys: give static keys or a JWKS".into()
            )
        );
    }

    #[test]
    fn base64url() {
        assert_eq!(
            base64url_decode("eyJpc3MiOiJ4In0").unwrap(),
            br#"{"iss":"x"}"#
        );
        assert!(base64url_decode("e!").is_none());
        for text in ["", "a", "ab", "abc", r#"{"iss":"x"}"#] {
            assert_eq!(
                base64url_decode(&encode_base64url(text.as_bytes())).unwrap(),
                text.as_bytes()
            );
        }
    }
}
