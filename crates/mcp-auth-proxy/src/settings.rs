//! The facade from settings, by the second seed's names.
//!
//! The facade is on when the `oauth2` strategy names an upstream login:
//! `MCP_OAUTH_AUTH_URL` (the seed's manual form: authorization, token and
//! userinfo URLs, as for GitHub or Google) or `MCP_OAUTH_CALLBACK_URL` with
//! `MCP_OAUTH_ISSUER` (an OIDC provider by discovery). Otherwise `oauth2`
//! is a plain resource server for `MCP_OAUTH_ISSUER`'s tokens.
//!
//! ```
//! use std::collections::HashMap;
//! use mcp_auth_proxy::settings::{ProxySettings, facade_requested};
//!
//! let vars: HashMap<String, String> = [
//!     ("MCP_OAUTH_CLIENT_ID", "Iv1.0123456789abcdef"),
//!     ("MCP_OAUTH_CLIENT_SECRET", "a-client-secret"),
//!     ("MCP_OAUTH_AUTH_URL", "https://github.com/login/oauth/authorize"),
//!     ("MCP_OAUTH_TOKEN_URL", "https://github.com/login/oauth/access_token"),
//!     ("MCP_OAUTH_USERINFO_URL", "https://api.github.com/user"),
//!     ("MCP_OAUTH_SCOPE", "read:user user:email"),
//! ]
//! .into_iter()
//! .map(|(k, v)| (k.to_owned(), v.to_owned()))
//! .collect();
//! assert!(facade_requested(&vars));
//! let s = ProxySettings::from_settings(&vars, &"https://mcp.example.com/mcp".parse().unwrap()).unwrap();
//! assert_eq!(s.callback.as_str(), "https://mcp.example.com/oauth/callback");
//!
//! // Half a configuration is one clear error naming what is missing.
//! let mut half = vars.clone();
//! half.remove("MCP_OAUTH_TOKEN_URL");
//! let e = ProxySettings::from_settings(&half, &"https://mcp.example.com/mcp".parse().unwrap()).unwrap_err();
//! assert_eq!(e.variable, "MCP_OAUTH_TOKEN_URL");
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `MCP_OAUTH_CLIENT_ID` / `MCP_OAUTH_CLIENT_SECRET` | the facade's client at the provider (required) |
//! | `MCP_OAUTH_AUTH_URL` / `MCP_OAUTH_TOKEN_URL` | the provider's endpoints (manual form) |
//! | `MCP_OAUTH_USERINFO_URL` | who logged in, for providers without ID tokens (GitHub) |
//! | `MCP_OAUTH_ISSUER` | an OIDC provider: endpoints by discovery, the user from its verified ID token |
//! | `MCP_OAUTH_CALLBACK_URL` | where the provider sends the browser back (default `<server origin>/oauth/callback`; register it at the provider) |
//! | `MCP_OAUTH_SCOPE` | scopes to ask the provider for (space- or comma-separated) |
//! | `MCP_OAUTH_PROVIDER_NAME` | the provider's name on the consent page (default: its host) |
//! | `MCP_OAUTH_SCOPES_SUPPORTED` | scopes MCP clients may ask this server for |
//! | `MCP_PROXY_SIGNING_KEY` | EC P-256 private key (PKCS#8 PEM, inline or a file) for the access tokens; default: generated once, kept in the store |
//! | `MCP_PROXY_ENCRYPTION_KEY` | 32 bytes, base64, sealing upstream tokens and keys at rest; default: generated, kept in the store (with a warning) |
//! | `MCP_PROXY_ACCESS_TOKEN_TTL` | lifetime of the access tokens (default `10m`) |

use std::time::Duration;

use base64::Engine;
use mcp_auth_core::settings::{ConfigError, Lookup, parse_lifetime, parse_list};
use url::Url;

/// Every variable this module reads.
pub const VARIABLES: &[&str] = &[
    "MCP_OAUTH_CLIENT_ID",
    "MCP_OAUTH_CLIENT_SECRET",
    "MCP_OAUTH_AUTH_URL",
    "MCP_OAUTH_TOKEN_URL",
    "MCP_OAUTH_USERINFO_URL",
    "MCP_OAUTH_ISSUER",
    "MCP_OAUTH_CALLBACK_URL",
    "MCP_OAUTH_SCOPE",
    "MCP_OAUTH_PROVIDER_NAME",
    "MCP_OAUTH_SCOPES_SUPPORTED",
    "MCP_OAUTH_ALLOW_HTTP",
    "MCP_PROXY_SIGNING_KEY",
    "MCP_PROXY_ENCRYPTION_KEY",
    "MCP_PROXY_ACCESS_TOKEN_TTL",
];

/// Whether the settings ask for the facade (an upstream login is named).
pub fn facade_requested(l: &dyn Lookup) -> bool {
    l.get("MCP_OAUTH_AUTH_URL").is_some() || l.get("MCP_OAUTH_CALLBACK_URL").is_some()
}

/// Where the provider's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSource {
    /// The seed's manual form.
    Manual {
        /// `MCP_OAUTH_AUTH_URL`.
        authorize: Url,
        /// `MCP_OAUTH_TOKEN_URL`.
        token: Url,
    },
    /// Discovery from an OIDC issuer.
    Discovery,
}

/// How the user is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A verified ID token of this issuer.
    IdToken {
        /// `MCP_OAUTH_ISSUER`.
        issuer: String,
    },
    /// `MCP_OAUTH_USERINFO_URL`.
    Userinfo(Url),
}

/// The facade's settings, read and checked; [`crate::OAuthProxy`] is built
/// from them (with discovery when the provider is named by its issuer).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// The facade's client at the provider.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The provider's endpoints.
    pub provider: ProviderSource,
    /// Who logged in.
    pub identity: IdentitySource,
    /// The callback URL.
    pub callback: Url,
    /// Scopes asked of the provider.
    pub upstream_scopes: Vec<String>,
    /// The provider's display name.
    pub provider_name: String,
    /// Scopes offered to MCP clients.
    pub scopes_supported: Vec<String>,
    /// PKCS#8 DER of the configured signing key.
    pub signing_key: Option<Vec<u8>>,
    /// The configured encryption key.
    pub encryption_key: Option<[u8; 32]>,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Plain http allowed to a non-loopback provider.
    pub allow_http: bool,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("client_id", &self.client_id)
            .field("provider", &self.provider)
            .field("identity", &self.identity)
            .field("callback", &self.callback.as_str())
            .field("signing_key", &self.signing_key.is_some())
            .field("encryption_key", &self.encryption_key.is_some())
            .finish_non_exhaustive()
    }
}

fn url_setting(l: &dyn Lookup, var: &str, allow_http: bool) -> Result<Option<Url>, ConfigError> {
    l.get(var)
        .map(|v| mcp_auth_jwt::settings::secure_url_setting(&v, var, allow_http))
        .transpose()
}

impl ProxySettings {
    /// Reads and checks the facade's settings for the server at
    /// `server_url`. Every error names the variable at fault.
    pub fn from_settings(l: &dyn Lookup, server_url: &Url) -> Result<Self, ConfigError> {
        let allow_http = mcp_auth_core::settings::parse_bool(l, "MCP_OAUTH_ALLOW_HTTP", false)?;
        let need = |var: &str, why: &str| {
            l.get(var).ok_or_else(|| {
                ConfigError::new(var, format!("required for the login facade: {why}"))
            })
        };
        let client_id = need(
            "MCP_OAUTH_CLIENT_ID",
            "the facade's client id at the provider",
        )?;
        let client_secret = need(
            "MCP_OAUTH_CLIENT_SECRET",
            "the facade's client secret at the provider",
        )?;
        let authorize = url_setting(l, "MCP_OAUTH_AUTH_URL", allow_http)?;
        let token = url_setting(l, "MCP_OAUTH_TOKEN_URL", allow_http)?;
        let userinfo = url_setting(l, "MCP_OAUTH_USERINFO_URL", allow_http)?;
        let issuer = l.get("MCP_OAUTH_ISSUER");
        if let Some(i) = &issuer {
            mcp_auth_jwt::settings::secure_url_setting(i, "MCP_OAUTH_ISSUER", allow_http)?;
        }
        let provider = match (authorize, token) {
            (Some(authorize), Some(token)) => ProviderSource::Manual { authorize, token },
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "MCP_OAUTH_TOKEN_URL",
                    "required with MCP_OAUTH_AUTH_URL: the provider's token endpoint",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "MCP_OAUTH_AUTH_URL",
                    "required with MCP_OAUTH_TOKEN_URL: the provider's authorization endpoint",
                ));
            }
            (None, None) if issuer.is_some() => ProviderSource::Discovery,
            (None, None) => {
                return Err(ConfigError::new(
                    "MCP_OAUTH_AUTH_URL",
                    "the login facade needs the provider: MCP_OAUTH_AUTH_URL and MCP_OAUTH_TOKEN_URL, or MCP_OAUTH_ISSUER (OIDC discovery)",
                ));
            }
        };
        let identity = match (userinfo, issuer) {
            (Some(u), _) => IdentitySource::Userinfo(u),
            (None, Some(issuer)) => IdentitySource::IdToken { issuer },
            (None, None) => {
                return Err(ConfigError::new(
                    "MCP_OAUTH_USERINFO_URL",
                    "the login facade needs to know who logged in: MCP_OAUTH_USERINFO_URL (e.g. GitHub's https://api.github.com/user) or MCP_OAUTH_ISSUER (verified ID tokens)",
                ));
            }
        };
        let callback = match l.get("MCP_OAUTH_CALLBACK_URL") {
            Some(c) => mcp_auth_jwt::settings::secure_url_setting(
                &c,
                "MCP_OAUTH_CALLBACK_URL",
                allow_http,
            )?,
            None => {
                let mut u = server_url.clone();
                u.set_path("/oauth/callback");
                u.set_query(None);
                u.set_fragment(None);
                u
            }
        };
        if callback.origin() != server_url.origin() {
            return Err(ConfigError::new(
                "MCP_OAUTH_CALLBACK_URL",
                "must be on this server's origin (the facade serves it)",
            ));
        }
        let upstream_scopes = l
            .get("MCP_OAUTH_SCOPE")
            .map(|s| {
                s.split([' ', ','])
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let provider_name = l.get("MCP_OAUTH_PROVIDER_NAME").unwrap_or_else(|| {
            let from = match &provider {
                ProviderSource::Manual { authorize, .. } => authorize.host_str().map(str::to_owned),
                ProviderSource::Discovery => match &identity {
                    IdentitySource::IdToken { issuer } => Url::parse(issuer)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned)),
                    IdentitySource::Userinfo(u) => u.host_str().map(str::to_owned),
                },
            };
            from.unwrap_or_else(|| "your account provider".to_owned())
        });
        let signing_key = match l.get("MCP_PROXY_SIGNING_KEY") {
            None => None,
            Some(v) => {
                let pem = mcp_auth_jwt::settings::pem_setting(&v, "MCP_PROXY_SIGNING_KEY")?;
                let text = String::from_utf8(pem)
                    .map_err(|_| ConfigError::new("MCP_PROXY_SIGNING_KEY", "not PEM text"))?;
                let key = crate::keys::SigningKey::from_pem(&text)
                    .map_err(|e| ConfigError::new("MCP_PROXY_SIGNING_KEY", e.to_string()))?;
                Some(key.to_pkcs8().to_vec())
            }
        };
        let encryption_key = match l.get("MCP_PROXY_ENCRYPTION_KEY") {
            None => None,
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        ConfigError::new(
                            "MCP_PROXY_ENCRYPTION_KEY",
                            "expected 32 bytes in base64 (`openssl rand -base64 32`)",
                        )
                    })?;
                Some(bytes)
            }
        };
        let access_token_ttl = match l.get("MCP_PROXY_ACCESS_TOKEN_TTL") {
            None => Duration::from_secs(600),
            Some(v) => {
                let d = parse_lifetime(&v, "MCP_PROXY_ACCESS_TOKEN_TTL")?;
                if d > Duration::from_secs(86_400) {
                    return Err(ConfigError::new(
                        "MCP_PROXY_ACCESS_TOKEN_TTL",
                        "at most 1d: access tokens are checked without a store lookup, so this is how long a revoked grant still works",
                    ));
                }
                d
            }
        };
        Ok(Self {
            client_id,
            client_secret,
            provider,
            identity,
            callback,
            upstream_scopes,
            provider_name,
            // Scopes hold no spaces: commas or spaces separate them.
            scopes_supported: parse_list(l, "MCP_OAUTH_SCOPES_SUPPORTED")
                .unwrap_or_default()
                .iter()
                .flat_map(|s| s.split_whitespace().map(str::to_owned))
                .collect(),
            signing_key,
            encryption_key,
            access_token_ttl,
            allow_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("MCP_OAUTH_CLIENT_ID", "id"),
        ("MCP_OAUTH_CLIENT_SECRET", "secret"),
    ];

    #[test]
    fn every_half_configuration_names_what_is_missing() {
        let url: Url = "https://mcp.example.com/mcp".parse().unwrap();
        let with = |extra: &[(&str, &str)]| {
            let mut v = vars(BASE);
            v.extend(vars(extra));
            ProxySettings::from_settings(&v, &url)
        };
        for (extra, variable) in [
            (
                vec![("MCP_OAUTH_AUTH_URL", "https://idp/a")],
                "MCP_OAUTH_TOKEN_URL",
            ),
            (
                vec![("MCP_OAUTH_TOKEN_URL", "https://idp/t")],
                "MCP_OAUTH_AUTH_URL",
            ),
            (
                vec![("MCP_OAUTH_CALLBACK_URL", "https://mcp.example.com/cb")],
                "MCP_OAUTH_AUTH_URL",
            ),
            (
                vec![
                    ("MCP_OAUTH_AUTH_URL", "https://idp/a"),
                    ("MCP_OAUTH_TOKEN_URL", "https://idp/t"),
                ],
                "MCP_OAUTH_USERINFO_URL",
            ),
            (
                vec![
                    ("MCP_OAUTH_ISSUER", "https://idp"),
                    ("MCP_OAUTH_CALLBACK_URL", "https://elsewhere.example/cb"),
                ],
                "MCP_OAUTH_CALLBACK_URL",
            ),
            (
                vec![
                    ("MCP_OAUTH_ISSUER", "https://idp"),
                    ("MCP_PROXY_ENCRYPTION_KEY", "c2hvcnQ="),
                ],
                "MCP_PROXY_ENCRYPTION_KEY",
            ),
            (
                vec![
                    ("MCP_OAUTH_ISSUER", "https://idp"),
                    ("MCP_PROXY_ACCESS_TOKEN_TTL", "7d"),
                ],
                "MCP_PROXY_ACCESS_TOKEN_TTL",
            ),
            (
                vec![
                    ("MCP_OAUTH_AUTH_URL", "http://idp.example/a"),
                    ("MCP_OAUTH_TOKEN_URL", "https://idp/t"),
                ],
                "MCP_OAUTH_AUTH_URL",
            ),
        ] {
            let e = with(&extra).unwrap_err();
            assert_eq!(e.variable, variable, "{extra:?}: {e}");
        }
        let e = ProxySettings::from_settings(&vars(&[("MCP_OAUTH_AUTH_URL", "https://a")]), &url)
            .unwrap_err();
        assert_eq!(e.variable, "MCP_OAUTH_CLIENT_ID");
        let secret_free = format!(
            "{:?}",
            with(&[("MCP_OAUTH_ISSUER", "https://idp")]).unwrap()
        );
        assert!(!secret_free.contains("secret"), "{secret_free}");
    }

    #[test]
    fn the_seed_and_the_oidc_forms() {
        let url: Url = "https://mcp.example.com/mcp".parse().unwrap();
        let mut v = vars(BASE);
        v.extend(vars(&[
            (
                "MCP_OAUTH_AUTH_URL",
                "https://accounts.google.com/o/oauth2/v2/auth",
            ),
            ("MCP_OAUTH_TOKEN_URL", "https://oauth2.googleapis.com/token"),
            (
                "MCP_OAUTH_USERINFO_URL",
                "https://openidconnect.googleapis.com/v1/userinfo",
            ),
            (
                "MCP_OAUTH_CALLBACK_URL",
                "https://mcp.example.com/auth/google/callback",
            ),
            ("MCP_OAUTH_SCOPE", "openid,email profile"),
        ]));
        let s = ProxySettings::from_settings(&v, &url).unwrap();
        assert_eq!(s.upstream_scopes, ["openid", "email", "profile"]);
        assert_eq!(s.provider_name, "accounts.google.com");
        assert!(matches!(s.identity, IdentitySource::Userinfo(_)));
        assert_eq!(s.callback.path(), "/auth/google/callback");
        let mut v = vars(BASE);
        v.insert("MCP_OAUTH_ISSUER".into(), "https://idp.example".into());
        v.insert(
            "MCP_OAUTH_CALLBACK_URL".into(),
            "https://mcp.example.com/cb".into(),
        );
        let s = ProxySettings::from_settings(&v, &url).unwrap();
        assert_eq!(s.provider, ProviderSource::Discovery);
        assert!(matches!(s.identity, IdentitySource::IdToken { .. }));
    }
}

impl ProxySettings {
    /// Builds the facade for the MCP server at `resource`: the provider's
    /// endpoints (discovered when named by issuer), its ID-token verifier,
    /// and the keys, kept in `store`.
    pub async fn build(
        self,
        resource: Url,
        store: mcp_auth_session::SharedStore,
    ) -> Result<crate::OAuthProxy, BuildError> {
        use crate::upstream::{Identity, Upstream, id_token_verifier};
        let limits = mcp_auth_jwt::FetchLimits::default();
        let (authorize, token) = match &self.provider {
            ProviderSource::Manual { authorize, token } => (authorize.clone(), token.clone()),
            ProviderSource::Discovery => {
                let IdentitySource::IdToken { issuer } = &self.identity else {
                    return Err(BuildError::Setting(ConfigError::new(
                        "MCP_OAUTH_ISSUER",
                        "discovery needs the issuer",
                    )));
                };
                let client = mcp_auth_jwt::fetch::http_client(limits);
                let md = mcp_auth_jwt::discover(&client, issuer, limits)
                    .await
                    .map_err(|e| BuildError::Discovery(e.to_string()))?;
                let endpoint = |v: Option<String>, what: &str| {
                    v.ok_or_else(|| {
                        BuildError::Discovery(format!("the issuer's metadata has no {what}"))
                    })
                    .and_then(|u| {
                        mcp_auth_jwt::settings::secure_url_setting(
                            &u,
                            "MCP_OAUTH_ISSUER",
                            self.allow_http,
                        )
                        .map_err(BuildError::Setting)
                    })
                };
                (
                    endpoint(md.authorization_endpoint, "authorization_endpoint")?,
                    endpoint(md.token_endpoint, "token_endpoint")?,
                )
            }
        };
        let identity = match &self.identity {
            IdentitySource::Userinfo(u) => Identity::Userinfo(u.clone()),
            IdentitySource::IdToken { issuer } => {
                let jwks = mcp_auth_jwt::JwksCache::discover(issuer.clone())
                    .allow_insecure_http(self.allow_http)
                    .build();
                let v = id_token_verifier(issuer, &self.client_id, jwks)
                    .map_err(|e| BuildError::Discovery(e.to_string()))?;
                Identity::IdToken(std::sync::Arc::new(v))
            }
        };
        let upstream = Upstream::new(
            self.provider_name.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
            authorize,
            token,
            self.callback.clone(),
            identity,
        )
        .with_scopes(self.upstream_scopes.clone());
        let mut cfg = crate::ProxyConfig::new(resource);
        cfg.scopes_supported = self.scopes_supported.clone();
        cfg.access_token_ttl = self.access_token_ttl;
        let keys = crate::ConfiguredKeys {
            signing: self
                .signing_key
                .as_deref()
                .map(crate::keys::SigningKey::from_pkcs8)
                .transpose()
                .map_err(|e| {
                    BuildError::Setting(ConfigError::new("MCP_PROXY_SIGNING_KEY", e.to_string()))
                })?,
            encryption: self.encryption_key,
        };
        crate::OAuthProxy::new(cfg, upstream, store, keys)
            .await
            .map_err(BuildError::Proxy)
    }
}

/// The facade cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is wrong.
    #[error(transparent)]
    Setting(ConfigError),
    /// The provider's metadata cannot be fetched or is incomplete.
    #[error("MCP_OAUTH_ISSUER: {0}")]
    Discovery(String),
    /// Keys or the store.
    #[error(transparent)]
    Proxy(crate::facade::ProxyError),
}
