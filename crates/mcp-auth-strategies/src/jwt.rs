//! The `bearer` and `oauth2` strategies: JWT access tokens in
//! `Authorization: Bearer`, and RFC 7662 introspection for opaque tokens.

use std::sync::Arc;

use async_trait::async_trait;
use mcp_auth_core::{
    AuthError, AuthRequest, Authenticator, ChallengeScheme, Principal,
    settings::{ConfigError, Lookup, parse_bool, parse_list},
};
use mcp_auth_jwt::{
    Algorithm, Audience, JwksCache, JwtVerifier, VerifyKey,
    settings::{algorithm_setting, hmac_secret_setting, pem_setting},
};
use url::Url;

use crate::introspection::Introspector;

/// Default `iss` of tokens for the `bearer` strategy (and of tokens minted by
/// `mcp-auth-server token`).
pub const DEFAULT_JWT_ISSUER: &str = "mcp-auth-server";

/// Authenticates `Authorization: Bearer` JWTs with a [`JwtVerifier`], and
/// opaque tokens through RFC 7662 introspection when configured.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use jsonwebtoken::{EncodingKey, Header, encode};
/// use mcp_auth_core::{AuthRequest, Authenticator};
/// use mcp_auth_jwt::{Algorithm, Audience, JwtVerifier, VerifyKey};
/// use mcp_auth_strategies::JwtAuthenticator;
///
/// let secret = b"a-shared-secret-of-32-bytes-or-more!";
/// let verifier = JwtVerifier::builder()
///     .static_keys(vec![VerifyKey::hmac(secret, Algorithm::HS256).unwrap()])
///     .issuer("mcp-auth-server")
///     .audience(Audience::OneOf(vec!["http://127.0.0.1:8001/mcp".into()]))
///     .build()
///     .unwrap();
/// let auth = JwtAuthenticator::new(verifier);
///
/// let claims = serde_json::json!({"sub": "alice", "iss": "mcp-auth-server",
///     "aud": "http://127.0.0.1:8001/mcp", "exp": jsonwebtoken::get_current_timestamp() + 60});
/// let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)).unwrap();
/// let req = AuthRequest::builder().header("authorization", &format!("Bearer {token}")).build();
/// assert_eq!(auth.authenticate(&req).await.unwrap().subject, "alice");
/// # }
/// ```
#[derive(Clone)]
pub struct JwtAuthenticator {
    verifier: JwtVerifier,
    name: &'static str,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    introspection: Option<Arc<Introspector>>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("strategy", &self.name)
            .field("verifier", &self.verifier)
            .field("authorization_servers", &self.authorization_servers)
            .field("introspection", &self.introspection.is_some())
            .finish()
    }
}

impl JwtAuthenticator {
    /// Tokens `verifier` accepts, with no authorization server advertised:
    /// clients must already hold a token (the `bearer` strategy, tokens this
    /// server or a party sharing its key minted). Principals say `bearer`.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self {
            verifier,
            name: "bearer",
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            introspection: None,
        }
    }

    /// Names `issuer` as the authorization server in protected-resource
    /// metadata (RFC 9728), so clients discover where to obtain tokens (the
    /// `oauth2` strategy). Principals then say `oauth2`.
    pub fn with_authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.name = "oauth2";
        self.authorization_servers = vec![issuer.into()];
        self
    }

    /// Scopes to advertise in protected-resource metadata.
    pub fn with_scopes_supported(mut self, scopes: Vec<String>) -> Self {
        self.scopes_supported = scopes;
        self
    }

    /// Introspect tokens that are not JWTs (RFC 7662).
    pub fn with_introspection(mut self, introspector: Introspector) -> Self {
        self.introspection = Some(Arc::new(introspector));
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
    }

    /// The `bearer` strategy from `MCP_JWT_*`:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `MCP_JWT_SECRET` | HMAC secret (32+ bytes), or |
    /// | `MCP_JWT_PUBLIC_KEY` | a PEM file (or inline PEM) with an RSA, EC or Ed25519 public key |
    /// | `MCP_JWT_ALGORITHM` | HS256 (default with a secret), HS384, HS512; with a public key: any of its type, default all |
    /// | `MCP_JWT_ISSUER` | required `iss` (default `mcp-auth-server`) |
    /// | `MCP_JWT_AUDIENCE` | accepted `aud` values, comma-separated (default: the server URL; `*` = unchecked) |
    /// | `MCP_JWT_LEEWAY` | clock-skew leeway in seconds (default 60) |
    /// | `MCP_JWT_MAX_LIFETIME` | longest accepted `exp` − `iat` (e.g. `1h`; default none; tokens without `iat` are then refused) |
    pub fn bearer_from_settings(l: &dyn Lookup, server_url: &Url) -> Result<Self, ConfigError> {
        let alg = algorithm_setting(l, "MCP_JWT_ALGORITHM")?;
        let secret = hmac_secret_setting(l, "MCP_JWT_SECRET")?;
        let key = match (secret, l.get("MCP_JWT_PUBLIC_KEY")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "MCP_JWT_PUBLIC_KEY",
                    "set either MCP_JWT_SECRET or MCP_JWT_PUBLIC_KEY, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "MCP_JWT_SECRET",
                    "the bearer strategy needs MCP_JWT_SECRET (HMAC) or MCP_JWT_PUBLIC_KEY (PEM)",
                ));
            }
            (Some(secret), None) => {
                VerifyKey::hmac(secret.as_bytes(), alg.unwrap_or(Algorithm::HS256))
                    .map_err(|e| ConfigError::new("MCP_JWT_ALGORITHM", e.to_string()))?
            }
            (None, Some(pem)) => {
                let key = VerifyKey::from_pem(&pem_setting(&pem, "MCP_JWT_PUBLIC_KEY")?)
                    .map_err(|e| ConfigError::new("MCP_JWT_PUBLIC_KEY", e.to_string()))?;
                match alg {
                    Some(a) => key
                        .restrict(&[a])
                        .map_err(|e| ConfigError::new("MCP_JWT_ALGORITHM", e.to_string()))?,
                    None => key,
                }
            }
        };
        let issuer = l
            .get("MCP_JWT_ISSUER")
            .unwrap_or_else(|| DEFAULT_JWT_ISSUER.to_owned());
        let verifier = JwtVerifier::builder()
            .static_keys(vec![key])
            .issuer(issuer)
            .audience(audience(l, "MCP_JWT_AUDIENCE", server_url)?)
            .time_rules(mcp_auth_jwt::TimeRules::from_settings(l)?)
            .build()
            .map_err(|e| ConfigError::new("MCP_JWT_SECRET", e.to_string()))?;
        Ok(Self::new(verifier))
    }

    /// The `oauth2` strategy from `MCP_OAUTH_*`:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `MCP_OAUTH_ISSUER` | the authorization server's issuer identifier (required; exact match) |
    /// | `MCP_OAUTH_JWKS_URL` | its key set (default: discovered from the issuer's metadata) |
    /// | `MCP_OAUTH_AUDIENCE` | accepted `aud` values (default: the server URL) |
    /// | `MCP_OAUTH_SCOPES_SUPPORTED` | scopes advertised in protected-resource metadata |
    /// | `MCP_OAUTH_INTROSPECTION_URL` | RFC 7662 endpoint for opaque tokens, with `MCP_OAUTH_CLIENT_ID` / `MCP_OAUTH_CLIENT_SECRET` |
    /// | `MCP_OAUTH_ALLOW_HTTP` | allow plain http to a non-loopback issuer, JWKS or introspection endpoint (default false) |
    /// | `MCP_OAUTH_JWKS_MAX_STALE` | trust the issuer's cached keys at most this long after their last successful fetch (e.g. `24h`; default: for as long as the issuer cannot be reached; at least `15m`) |
    /// | `MCP_OAUTH_REQUIRE_AT_JWT` | accept only JWTs typed `at+jwt` (RFC 9068), refusing ID tokens and other JWTs of the issuer (default false) |
    /// | `MCP_JWT_LEEWAY` | clock-skew leeway in seconds (default 60) |
    /// | `MCP_JWT_MAX_LIFETIME` | longest accepted `exp` − `iat` (e.g. `1h`; default none; tokens without `iat` are then refused) |
    ///
    /// `MCP_OAUTH_REQUIRED_SCOPES` is applied by the HTTP layer.
    pub fn oauth2_from_settings(l: &dyn Lookup, server_url: &Url) -> Result<Self, ConfigError> {
        let issuer = l.get("MCP_OAUTH_ISSUER").ok_or_else(|| {
            ConfigError::new("MCP_OAUTH_ISSUER", "required for the oauth2 strategy (the issuer identifier of your authorization server)")
        })?;
        mcp_auth_jwt::discovery_urls(&issuer)
            .map_err(|e| ConfigError::new("MCP_OAUTH_ISSUER", e.to_string()))?;
        let allow_http = parse_bool(l, "MCP_OAUTH_ALLOW_HTTP", false)?;
        mcp_auth_jwt::settings::secure_url_setting(&issuer, "MCP_OAUTH_ISSUER", allow_http)?;
        let cache = match l.get("MCP_OAUTH_JWKS_URL") {
            Some(u) => JwksCache::builder(mcp_auth_jwt::settings::secure_url_setting(
                &u,
                "MCP_OAUTH_JWKS_URL",
                allow_http,
            )?),
            None => JwksCache::discover(issuer.clone()),
        }
        .allow_insecure_http(allow_http)
        .max_stale(mcp_auth_jwt::settings::jwks_max_stale(l)?)
        .build();
        let audience = audience(l, "MCP_OAUTH_AUDIENCE", server_url)?;
        let mut verifier = JwtVerifier::builder();
        if parse_bool(l, "MCP_OAUTH_REQUIRE_AT_JWT", false)? {
            verifier = verifier.require_access_token_type();
        }
        let verifier = verifier
            .jwks(cache)
            .issuer(issuer.clone())
            .audience(audience.clone())
            .time_rules(mcp_auth_jwt::TimeRules::from_settings(l)?)
            // Shared secrets have no place with a third-party issuer.
            .algorithms(&[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
            ])
            .build()
            .map_err(|e| ConfigError::new("MCP_OAUTH_ISSUER", e.to_string()))?;
        let mut auth = Self::new(verifier)
            .with_authorization_server(issuer.clone())
            .with_scopes_supported(parse_list(l, "MCP_OAUTH_SCOPES_SUPPORTED").unwrap_or_default());
        if let Some(u) = l.get("MCP_OAUTH_INTROSPECTION_URL") {
            let url = mcp_auth_jwt::settings::secure_url_setting(
                &u,
                "MCP_OAUTH_INTROSPECTION_URL",
                allow_http,
            )?;
            let id = l.get("MCP_OAUTH_CLIENT_ID").ok_or_else(|| {
                ConfigError::new(
                    "MCP_OAUTH_CLIENT_ID",
                    "required with MCP_OAUTH_INTROSPECTION_URL",
                )
            })?;
            let secret = l.get("MCP_OAUTH_CLIENT_SECRET").ok_or_else(|| {
                ConfigError::new(
                    "MCP_OAUTH_CLIENT_SECRET",
                    "required with MCP_OAUTH_INTROSPECTION_URL",
                )
            })?;
            let audiences = match audience {
                Audience::OneOf(a) => Some(a),
                _ => None,
            };
            auth = auth.with_introspection(Introspector::new(
                url,
                id,
                secret,
                Some(issuer),
                audiences,
            ));
        }
        Ok(auth)
    }
}

fn audience(l: &dyn Lookup, var: &str, server_url: &Url) -> Result<Audience, ConfigError> {
    match parse_list(l, var) {
        None => Ok(Audience::OneOf(vec![server_url.to_string()])),
        Some(list) if list.iter().any(|a| a == "*") => {
            if list.len() > 1 {
                return Err(ConfigError::new(
                    var,
                    "`*` (unchecked) cannot be combined with audiences",
                ));
            }
            tracing::warn!(
                variable = var,
                "audience is not checked: tokens minted for other resources are accepted"
            );
            Ok(Audience::Unchecked)
        }
        Some(list) if list.is_empty() => Err(ConfigError::new(var, "the list is empty")),
        Some(list) => Ok(Audience::OneOf(list)),
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        // `Bearer`, or `DPoP` for a token bound to the client's key (its
        // proof is checked by `DpopAuthenticator` around this one).
        let Some((scheme, token)) = req.access_token()? else {
            return Err(AuthError::MissingCredentials);
        };
        if scheme == mcp_auth_core::TokenScheme::DPoP && req.dpop_jkt.is_none() {
            return Err(mcp_auth_core::dpop::unchecked());
        }
        let looks_like_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        let result = match (&self.introspection, looks_like_jwt) {
            (Some(intro), false) => intro.introspect(token, self.name).await,
            _ => self
                .verifier
                .verify(token)
                .await
                .map(|t| t.into_principal(self.name))
                .map_err(AuthError::from),
        }
        .and_then(|p| {
            mcp_auth_core::dpop::check_binding(scheme, &p, req.dpop_jkt.as_deref()).map(|()| p)
        });
        if let Err(e) = &result {
            tracing::debug!(peer = %req.peer_display(), reason = %e, strategy = self.name, "token rejected");
        }
        result
    }

    /// It reads exactly the credentials of its schemes.
    fn declares_credentials(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        self.name
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        vec![ChallengeScheme::Bearer]
    }

    fn authorization_servers(&self) -> Vec<String> {
        self.authorization_servers.clone()
    }

    fn scopes_supported(&self) -> Vec<String> {
        self.scopes_supported.clone()
    }

    /// With a JWKS (the `oauth2` strategy): the issuer's metadata and keys
    /// fetched, and not stale (a successful fetch within the hour; the
    /// cache refreshes every 10 minutes). Static keys: nothing to check.
    fn readiness(&self) -> Vec<mcp_auth_core::Readiness> {
        let Some(jwks) = self.verifier.jwks() else {
            return Vec::new();
        };
        vec![jwks.status().readiness(&format!("{} keys", self.name))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.1:8001/mcp").unwrap()
    }

    #[test]
    fn bearer_settings_errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "MCP_JWT_SECRET"),
            (&[("MCP_JWT_SECRET", "short")], "MCP_JWT_SECRET"),
            (
                &[
                    ("MCP_JWT_SECRET", &"s".repeat(32)),
                    ("MCP_JWT_ALGORITHM", "RS256"),
                ],
                "MCP_JWT_ALGORITHM",
            ),
            (
                &[
                    ("MCP_JWT_SECRET", &"s".repeat(32)),
                    ("MCP_JWT_ALGORITHM", "none"),
                ],
                "MCP_JWT_ALGORITHM",
            ),
            (
                &[
                    ("MCP_JWT_SECRET", &"s".repeat(32)),
                    ("MCP_JWT_PUBLIC_KEY", "x"),
                ],
                "MCP_JWT_PUBLIC_KEY",
            ),
            (
                &[("MCP_JWT_PUBLIC_KEY", "/nonexistent.pem")],
                "MCP_JWT_PUBLIC_KEY",
            ),
            (
                &[
                    ("MCP_JWT_SECRET", &"s".repeat(32)),
                    ("MCP_JWT_LEEWAY", "-1"),
                ],
                "MCP_JWT_LEEWAY",
            ),
            (
                &[
                    ("MCP_JWT_SECRET", &"s".repeat(32)),
                    ("MCP_JWT_AUDIENCE", "*,x"),
                ],
                "MCP_JWT_AUDIENCE",
            ),
        ];
        for (pairs, var) in cases {
            let e = JwtAuthenticator::bearer_from_settings(&vars(pairs), &url()).unwrap_err();
            assert_eq!(e.variable, *var, "{pairs:?}: {e}");
            assert!(
                !e.to_string().contains(&"s".repeat(32)),
                "secret in error: {e}"
            );
        }
        assert!(
            JwtAuthenticator::bearer_from_settings(
                &vars(&[("MCP_JWT_SECRET", &"s".repeat(32))]),
                &url()
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn oauth2_settings_errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "MCP_OAUTH_ISSUER"),
            (&[("MCP_OAUTH_ISSUER", "not a url")], "MCP_OAUTH_ISSUER"),
            (
                &[
                    ("MCP_OAUTH_ISSUER", "https://as"),
                    ("MCP_OAUTH_JWKS_URL", "file:///etc/passwd"),
                ],
                "MCP_OAUTH_JWKS_URL",
            ),
            (
                &[
                    ("MCP_OAUTH_ISSUER", "https://as"),
                    ("MCP_OAUTH_INTROSPECTION_URL", "https://as/i"),
                ],
                "MCP_OAUTH_CLIENT_ID",
            ),
            (
                &[
                    ("MCP_OAUTH_ISSUER", "https://as"),
                    ("MCP_OAUTH_REQUIRE_AT_JWT", "sometimes"),
                ],
                "MCP_OAUTH_REQUIRE_AT_JWT",
            ),
            (
                &[
                    ("MCP_OAUTH_ISSUER", "https://as"),
                    ("MCP_OAUTH_JWKS_MAX_STALE", "5m"),
                ],
                "MCP_OAUTH_JWKS_MAX_STALE",
            ),
            (
                &[
                    ("MCP_OAUTH_ISSUER", "https://as"),
                    ("MCP_OAUTH_JWKS_MAX_STALE", "a day"),
                ],
                "MCP_OAUTH_JWKS_MAX_STALE",
            ),
        ];
        for (pairs, var) in cases {
            let e = JwtAuthenticator::oauth2_from_settings(&vars(pairs), &url()).unwrap_err();
            assert_eq!(e.variable, *var, "{pairs:?}: {e}");
        }
        let ok = JwtAuthenticator::oauth2_from_settings(
            &vars(&[
                ("MCP_OAUTH_ISSUER", "https://as.example"),
                ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools,mcp:admin"),
            ]),
            &url(),
        )
        .unwrap();
        assert_eq!(ok.authorization_servers(), vec!["https://as.example"]);
        assert_eq!(ok.scopes_supported(), vec!["mcp:tools", "mcp:admin"]);
    }
}
