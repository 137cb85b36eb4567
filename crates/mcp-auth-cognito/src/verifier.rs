//! [`CognitoVerifier`].

use std::{sync::Arc, time::Duration};

use mcp_auth_core::{AuthError, Principal};
use mcp_auth_jwt::{Algorithm, Audience, JwksCache, JwtError, JwtVerifier, VerifiedToken};
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

/// One user pool's settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    region: String,
    pool_id: String,
    jwks_url: Option<Url>,
}

impl PoolConfig {
    /// A pool by region and id (`<region>_<id>`); refuses malformed values.
    pub fn new(region: &str, pool_id: &str) -> Result<Self, String> {
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(format!("{region:?} is not an AWS region like eu-west-1"));
        }
        let id_ok = pool_id.split_once('_').is_some_and(|(r, id)| {
            r == region && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !id_ok {
            return Err(format!(
                "{pool_id:?} is not a user pool id of region {region} (like {region}_AbC123)"
            ));
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

    fn jwks(&self) -> Result<Url, String> {
        match &self.jwks_url {
            Some(u) => Ok(u.clone()),
            None => Url::parse(&format!("{}/.well-known/jwks.json", self.issuer()))
                .map_err(|e| e.to_string()),
        }
    }
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
    leeway: Duration,
    max_lifetime: Option<Duration>,
    allow_insecure_http: bool,
}

impl CognitoVerifier {
    /// A builder for one pool (add more with [`CognitoVerifierBuilder::pool`]).
    pub fn builder(region: &str, pool_id: &str) -> Result<CognitoVerifierBuilder, String> {
        Ok(CognitoVerifierBuilder {
            pools: vec![PoolConfig::new(region, pool_id)?],
            token_use: None,
            client_ids: None,
            groups: Vec::new(),
            scopes: Vec::new(),
            resource: None,
            leeway: Duration::from_secs(60),
            max_lifetime: None,
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
        if let (Some(resource), true) = (&self.resource, is_access) {
            let ok = match t.claims.get("aud") {
                Some(Value::String(a)) => a == resource,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(resource)),
                _ => false,
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
            let have = t.scopes();
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
    let mut p = t.into_principal("cognito");
    p.client_id = client;
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

    /// Longest accepted token lifetime, `exp` minus `iat` (default none;
    /// Cognito's own tokens live 5 minutes to 1 day, and carry `iat`).
    pub fn max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> Result<CognitoVerifier, String> {
        let token_use = self
            .token_use
            .ok_or("choose token_use: Access, Id or Both")?;
        let client_ids = self.client_ids.ok_or(
            "choose client_ids: Some(app client ids), or None to accept any client of the pool",
        )?;
        if client_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err("client_ids is an empty list: no token could pass".into());
        }
        let mut pools = Vec::new();
        for p in &self.pools {
            let issuer = p.issuer();
            let cache = JwksCache::builder(p.jwks()?)
                .allow_insecure_http(self.allow_insecure_http)
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
                .build()
                .map_err(|e| e.to_string())?;
            pools.push(Pool { issuer, verifier });
        }
        Ok(CognitoVerifier {
            pools: pools.into(),
            token_use,
            client_ids: client_ids.map(Into::into),
            groups: self.groups.into(),
            scopes: self.scopes.into(),
            resource: self.resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids_and_regions_are_validated() {
        assert!(PoolConfig::new("eu-west-1", "eu-west-1_AbC123").is_ok());
        for (r, p) in [
            ("eu-west-1", "us-east-1_AbC123"),
            ("eu-west-1", "eu-west-1_"),
            ("eu-west-1", "eu-west-1_Ab/../x"),
            ("EU", "EU_x"),
            ("", "_x"),
        ] {
            assert!(PoolConfig::new(r, p).is_err(), "{r} {p}");
        }
    }

    #[test]
    fn choices_must_be_explicit() {
        let b = || CognitoVerifier::builder("eu-west-1", "eu-west-1_AbC123").unwrap();
        assert!(b().client_ids(None).build().is_err(), "token_use missing");
        assert!(
            b().token_use(TokenUse::Access).build().is_err(),
            "client_ids missing"
        );
        assert!(
            b().token_use(TokenUse::Access)
                .client_ids(Some(vec![]))
                .build()
                .is_err()
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
    fn base64url() {
        assert_eq!(
            base64url_decode("eyJpc3MiOiJ4In0").unwrap(),
            br#"{"iss":"x"}"#
        );
        assert!(base64url_decode("e!").is_none());
    }
}
