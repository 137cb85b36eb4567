//! [`CognitoAuthenticator`]: the `cognito` strategy.

use async_trait::async_trait;
use mcp_auth_core::{
    AuthError, AuthRequest, Authenticator, ChallengeScheme, Principal,
    settings::{ConfigError, Lookup, parse_bool, parse_list, parse_nonempty_list},
};
use url::Url;

use crate::{CognitoConfigError, CognitoVerifier, TokenUse};

/// Authenticates `Authorization: Bearer` Cognito tokens.
#[derive(Debug, Clone)]
pub struct CognitoAuthenticator {
    verifier: CognitoVerifier,
    scopes_supported: Vec<String>,
}

impl CognitoAuthenticator {
    /// The strategy around a verifier.
    pub fn new(verifier: CognitoVerifier) -> Self {
        let scopes_supported = verifier.required_scopes().to_vec();
        Self {
            verifier,
            scopes_supported,
        }
    }

    /// Adds scopes to advertise in protected-resource metadata.
    pub fn with_scopes_supported(mut self, scopes: Vec<String>) -> Self {
        for s in scopes {
            if !self.scopes_supported.contains(&s) {
                self.scopes_supported.push(s);
            }
        }
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &CognitoVerifier {
        &self.verifier
    }

    /// From the seed's variables:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `COGNITO_REGION`, `COGNITO_USER_POOL_ID` | the pool (required) |
    /// | `COGNITO_APP_CLIENT_ID` | allowed app client ids, comma-separated (required; `*` = any client of the pool) |
    /// | `COGNITO_TOKEN_USE` | `access` (default), `id` or `both` |
    /// | `COGNITO_REQUIRED_GROUPS` | the user must be in one of these |
    /// | `COGNITO_REQUIRED_SCOPES` | access tokens must carry all of these |
    /// | `COGNITO_RESOURCE_INDICATORS` | `true`: access tokens must have `aud` = the server URL (otherwise an `aud`, when there is one, must name it) |
    /// | `COGNITO_JWKS_URL` | fetch keys here (emulators); the issuer checked stays the real one |
    /// | `MCP_OAUTH_SCOPES_SUPPORTED` | extra scopes for the metadata |
    /// | `MCP_JWT_LEEWAY` | clock-skew seconds (default 60) |
    /// | `MCP_JWT_MAX_LIFETIME` | longest accepted `exp` − `iat` (e.g. `1h`; default none) |
    /// | `MCP_OAUTH_JWKS_MAX_STALE` | trust each pool's cached keys at most this long after their last successful fetch (e.g. `24h`, at least `15m`; default: no bound) |
    pub fn from_settings(l: &dyn Lookup, server_url: &Url) -> Result<Self, ConfigError> {
        let region = l.get("COGNITO_REGION").ok_or_else(|| {
            ConfigError::new("COGNITO_REGION", "required for the cognito strategy")
        })?;
        let pool = l.get("COGNITO_USER_POOL_ID").ok_or_else(|| {
            ConfigError::new("COGNITO_USER_POOL_ID", "required for the cognito strategy")
        })?;
        let mut b = CognitoVerifier::builder(&region, &pool).map_err(config_error)?;
        let clients = parse_nonempty_list(l, "COGNITO_APP_CLIENT_ID")?.ok_or_else(|| {
            ConfigError::new(
                "COGNITO_APP_CLIENT_ID",
                "required: the app client ids whose tokens are accepted (`*` for any client of the pool)",
            )
        })?;
        b = b.client_ids(match clients.iter().any(|c| c == "*") {
            // `client1,*` would accept every app client of the pool while
            // it reads as a list.
            true if clients.len() > 1 => {
                return Err(ConfigError::new(
                    "COGNITO_APP_CLIENT_ID",
                    "`*` (any app client of the pool) cannot be listed with client ids",
                ));
            }
            true => None,
            false => Some(clients),
        });
        let token_use = match l
            .get("COGNITO_TOKEN_USE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("access") => TokenUse::Access,
            Some("id") => TokenUse::Id,
            Some("both" | "any") => TokenUse::Both,
            Some(other) => {
                return Err(ConfigError::new(
                    "COGNITO_TOKEN_USE",
                    format!("expected access, id or both, got {other:?}"),
                ));
            }
        };
        b = b.token_use(token_use);
        if let Some(g) = parse_nonempty_list(l, "COGNITO_REQUIRED_GROUPS")? {
            b = b.required_groups(g);
        }
        if let Some(s) = parse_nonempty_list(l, "COGNITO_REQUIRED_SCOPES")? {
            b = b.required_scopes(s);
        }
        b = b.server_resource(server_url.as_str());
        if parse_bool(l, "COGNITO_RESOURCE_INDICATORS", false)? {
            b = b.resource_indicator(server_url.as_str());
        }
        if let Some(u) = l.get("COGNITO_JWKS_URL") {
            let allow_http = parse_bool(l, "MCP_OAUTH_ALLOW_HTTP", false)?;
            let url =
                mcp_auth_jwt::settings::secure_url_setting(&u, "COGNITO_JWKS_URL", allow_http)?;
            b = b.jwks_url(url).allow_insecure_http(allow_http);
        }
        let time = mcp_auth_jwt::TimeRules::from_settings(l)?;
        b = b
            .leeway(time.leeway)
            .max_lifetime(time.max_lifetime)
            .max_stale(mcp_auth_jwt::settings::jwks_max_stale(l)?);
        let verifier = b.build().map_err(config_error)?;
        Ok(Self::new(verifier)
            .with_scopes_supported(parse_list(l, "MCP_OAUTH_SCOPES_SUPPORTED").unwrap_or_default()))
    }
}

/// The settings error for `e`, naming the variable it concerns.
fn config_error(e: CognitoConfigError) -> ConfigError {
    ConfigError::new(e.variable(), e.to_string())
}

#[async_trait]
impl Authenticator for CognitoAuthenticator {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        let Some((scheme, token)) = req.access_token()? else {
            return Err(AuthError::MissingCredentials);
        };
        if scheme == mcp_auth_core::TokenScheme::DPoP && req.dpop_jkt.is_none() {
            return Err(mcp_auth_core::dpop::unchecked());
        }
        let principal = self.verifier.verify(token).await.map_err(|e| {
            tracing::debug!(peer = %req.peer_display(), reason = %e, "Cognito token rejected");
            AuthError::from(e)
        })?;
        // Cognito issues no DPoP-bound tokens: the DPoP scheme is refused.
        mcp_auth_core::dpop::check_binding(scheme, &principal, req.dpop_jkt.as_deref())?;
        Ok(principal)
    }

    /// It reads exactly the credentials of its schemes.
    fn declares_credentials(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        "cognito"
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        vec![ChallengeScheme::Bearer]
    }

    fn authorization_servers(&self) -> Vec<String> {
        self.verifier.issuers()
    }

    fn scopes_supported(&self) -> Vec<String> {
        self.scopes_supported.clone()
    }

    /// Each user pool's keys fetched and fresh: `cognito keys`, or with
    /// several pools `cognito keys (pool 1)`, `(pool 2)`, ... in the order
    /// they are configured (one metrics series each).
    fn readiness(&self) -> Vec<mcp_auth_core::Readiness> {
        let caches = self.verifier.jwks();
        let many = caches.len() > 1;
        caches
            .iter()
            .enumerate()
            .map(|(i, cache)| {
                let name = if many {
                    format!("cognito keys (pool {})", i + 1)
                } else {
                    "cognito keys".to_owned()
                };
                cache.status().readiness(&name)
            })
            .collect()
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

    /// One readiness check (one metrics series) per pool, each named apart.
    #[tokio::test]
    async fn each_pool_has_a_readiness_check_of_its_own() {
        let names = |pools: &[&str]| {
            let mut b = CognitoVerifier::builder("eu-west-1", pools[0]).unwrap();
            for p in &pools[1..] {
                b = b.pool(crate::PoolConfig::new("eu-west-1", p).unwrap());
            }
            let a = CognitoAuthenticator::new(
                b.token_use(crate::TokenUse::Access)
                    .client_ids(Some(vec!["client1".into()]))
                    .build()
                    .unwrap(),
            );
            a.readiness()
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["eu-west-1_AbC123"]), ["cognito keys"]);
        assert_eq!(
            names(&["eu-west-1_AbC123", "eu-west-1_DeF456"]),
            ["cognito keys (pool 1)", "cognito keys (pool 2)"]
        );
    }

    /// `MCP_OAUTH_JWKS_MAX_STALE` bounds how long each pool's cached keys
    /// stay trusted, as for `oauth2`; unset, they have no bound; too short,
    /// the error names it.
    #[tokio::test]
    async fn the_keys_maximum_staleness_reaches_the_pools() {
        let url = Url::parse("http://127.0.0.1:8001/mcp").unwrap();
        let base = [
            ("COGNITO_REGION", "eu-west-1"),
            ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
            ("COGNITO_APP_CLIENT_ID", "client1"),
        ];
        let with = |v: Option<&str>| {
            let mut m = vars(&base);
            if let Some(v) = v {
                m.insert("MCP_OAUTH_JWKS_MAX_STALE".into(), v.into());
            }
            CognitoAuthenticator::from_settings(&m, &url)
        };
        let bounds = |a: CognitoAuthenticator| {
            a.verifier
                .jwks()
                .iter()
                .map(mcp_auth_jwt::JwksCache::max_stale)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            bounds(with(Some("1d")).unwrap()),
            [Some(std::time::Duration::from_secs(86_400))]
        );
        assert_eq!(bounds(with(None).unwrap()), [None]);
        let Err(e) = with(Some("5m")) else {
            panic!("5m is below the minimum")
        };
        assert_eq!(e.variable, "MCP_OAUTH_JWKS_MAX_STALE");
    }

    #[test]
    fn settings_errors_name_the_variable() {
        let url = Url::parse("http://127.0.0.1:8001/mcp").unwrap();
        let base = [
            ("COGNITO_REGION", "eu-west-1"),
            ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
            ("COGNITO_APP_CLIENT_ID", "client1"),
        ];
        let with = |k: &str, v: &str| {
            let mut m = vars(&base);
            m.insert(k.into(), v.into());
            m
        };
        let without = |k: &str| {
            let mut m = vars(&base);
            m.remove(k);
            m
        };
        for (m, var, msg) in [
            (
                without("COGNITO_REGION"),
                "COGNITO_REGION",
                "required for the cognito strategy",
            ),
            (
                without("COGNITO_USER_POOL_ID"),
                "COGNITO_USER_POOL_ID",
                "required for the cognito strategy",
            ),
            (
                without("COGNITO_APP_CLIENT_ID"),
                "COGNITO_APP_CLIENT_ID",
                "required: the app client ids whose tokens are accepted (`*` for any client of the pool)",
            ),
            (
                with("COGNITO_APP_CLIENT_ID", " , "),
                "COGNITO_APP_CLIENT_ID",
                "the list names nothing (only commas): name at least one, or leave it unset",
            ),
            // Read as a list, it accepted every app client of the pool.
            (
                with("COGNITO_APP_CLIENT_ID", "client1,*"),
                "COGNITO_APP_CLIENT_ID",
                "`*` (any app client of the pool) cannot be listed with client ids",
            ),
            // Read as "nothing required", the checks were skipped.
            (
                with("COGNITO_REQUIRED_GROUPS", ","),
                "COGNITO_REQUIRED_GROUPS",
                "the list names nothing (only commas): name at least one, or leave it unset",
            ),
            (
                with("COGNITO_REQUIRED_SCOPES", " ,, "),
                "COGNITO_REQUIRED_SCOPES",
                "the list names nothing (only commas): name at least one, or leave it unset",
            ),
            (
                with("COGNITO_REGION", "EU West"),
                "COGNITO_REGION",
                r#""EU West" is not an AWS region like eu-west-1"#,
            ),
            (
                with("COGNITO_USER_POOL_ID", "eu-west-1_Ab/x"),
                "COGNITO_USER_POOL_ID",
                r#""eu-west-1_Ab/x" is not a user pool id like eu-west-1_AbC123"#,
            ),
            (
                with("COGNITO_USER_POOL_ID", "us-east-1_X"),
                "COGNITO_USER_POOL_ID",
                r#"user pool "us-east-1_X" belongs to region us-east-1, not eu-west-1"#,
            ),
            (
                with("COGNITO_TOKEN_USE", "refresh"),
                "COGNITO_TOKEN_USE",
                r#"expected access, id or both, got "refresh""#,
            ),
            (
                with("COGNITO_RESOURCE_INDICATORS", "maybe"),
                "COGNITO_RESOURCE_INDICATORS",
                r#"expected true or false, got "maybe""#,
            ),
            (
                with("COGNITO_JWKS_URL", "file:///x"),
                "COGNITO_JWKS_URL",
                r#"scheme "file" is not http(s)"#,
            ),
        ] {
            let e = CognitoAuthenticator::from_settings(&m, &url).unwrap_err();
            assert_eq!((e.variable.as_str(), e.message.as_str()), (var, msg), "{e}");
        }
        // A plain-http JWKS URL to another host needs MCP_OAUTH_ALLOW_HTTP,
        // and its credentials are never shown.
        let jwks = with("COGNITO_JWKS_URL", "http://u:s3cret@jwks.example/k?s3cret");
        let e = CognitoAuthenticator::from_settings(&jwks, &url).unwrap_err();
        assert_eq!(e.variable, "COGNITO_JWKS_URL");
        assert!(e.message.contains("must be https"), "{e}");
        assert!(!e.message.contains("s3cret"), "{e}");
        let mut allowed = jwks.clone();
        allowed.insert("MCP_OAUTH_ALLOW_HTTP".into(), "true".into());
        assert!(CognitoAuthenticator::from_settings(&allowed, &url).is_ok());
        let ok = CognitoAuthenticator::from_settings(&with("COGNITO_REQUIRED_SCOPES", "a/b"), &url)
            .unwrap();
        assert_eq!(
            ok.authorization_servers(),
            ["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"]
        );
        assert_eq!(ok.scopes_supported(), ["a/b"]);
    }

    /// A lookup that records the names asked for.
    struct Recording(HashMap<String, String>, std::cell::RefCell<Vec<String>>);

    impl Lookup for Recording {
        fn get(&self, name: &str) -> Option<String> {
            self.1.borrow_mut().push(name.to_owned());
            Lookup::get(&self.0, name)
        }
    }

    #[test]
    fn from_settings_reads_exactly_the_listed_variables() {
        let url = Url::parse("http://127.0.0.1:8001/mcp").unwrap();
        // Every setting given, so that none is skipped.
        let l = Recording(
            vars(&[
                ("COGNITO_REGION", "eu-west-1"),
                ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
                ("COGNITO_APP_CLIENT_ID", "client1"),
                ("COGNITO_JWKS_URL", "http://127.0.0.1:9/jwks.json"),
            ]),
            Default::default(),
        );
        CognitoAuthenticator::from_settings(&l, &url).unwrap();
        let mut read = l.1.take();
        read.sort();
        read.dedup();
        let mut listed = crate::VARIABLES.to_vec();
        listed.sort_unstable();
        assert_eq!(read, listed);
    }
}
