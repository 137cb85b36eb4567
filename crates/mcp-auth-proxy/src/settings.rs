//! The facade from settings, by the second seed's names.
//!
//! The facade is on when the `oauth2` strategy names an upstream login:
//! `MCP_OAUTH_AUTH_URL` (the seed's manual form: authorization, token and
//! userinfo URLs, as for GitHub or Google), `MCP_OAUTH_CALLBACK_URL` with
//! `MCP_OAUTH_ISSUER` (an OIDC provider by discovery), or `COGNITO_DOMAIN`
//! (the Cognito preset, below). Otherwise `oauth2` is a plain resource
//! server for `MCP_OAUTH_ISSUER`'s tokens. (`MCP_AUTH_STRATEGY=cognito`,
//! the resource server for a pool's tokens, reads none of this.)
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
//! # The Cognito preset
//!
//! With `MCP_AUTH_STRATEGY=oauth2`, setting `COGNITO_DOMAIN` selects an AWS
//! Cognito user pool as the provider: its hosted UI
//! (`<domain>/oauth2/authorize`, `<domain>/oauth2/token`), the user from
//! its ID token verified with the pool's keys (issuer
//! `https://cognito-idp.<region>.amazonaws.com/<pool>`, keys at
//! `<issuer>/.well-known/jwks.json`, audience the app client), its
//! `cognito:groups` as the user's groups. `COGNITO_REGION` and
//! `COGNITO_USER_POOL_ID` are required; the app client is
//! `MCP_OAUTH_CLIENT_ID`/`MCP_OAUTH_CLIENT_SECRET`, or, when
//! `MCP_OAUTH_CLIENT_ID` is unset, `COGNITO_APP_CLIENT_ID`/
//! `COGNITO_APP_CLIENT_SECRET`: the lines `mcp-auth-cognito setup` prints
//! are enough. The preset names the provider, so `MCP_OAUTH_AUTH_URL`,
//! `MCP_OAUTH_TOKEN_URL`, `MCP_OAUTH_USERINFO_URL` and `MCP_OAUTH_ISSUER`
//! must be unset.
//!
//! ```
//! use std::collections::HashMap;
//! use mcp_auth_proxy::settings::{ProviderSource, ProxySettings, facade_requested};
//!
//! let vars: HashMap<String, String> = [
//!     ("COGNITO_REGION", "eu-west-1"),
//!     ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
//!     ("COGNITO_APP_CLIENT_ID", "1example23456789"),
//!     ("COGNITO_APP_CLIENT_SECRET", "an-app-client-secret"),
//!     ("COGNITO_DOMAIN", "https://my-pool.auth.eu-west-1.amazoncognito.com"),
//! ]
//! .into_iter()
//! .map(|(k, v)| (k.to_owned(), v.to_owned()))
//! .collect();
//! assert!(facade_requested(&vars));
//! let s = ProxySettings::from_settings(&vars, &"https://mcp.example.com/mcp".parse().unwrap()).unwrap();
//! let ProviderSource::Cognito { domain, jwks, .. } = &s.provider else { unreachable!() };
//! let (authorize, token) = ProviderSource::cognito_endpoints(domain);
//! assert_eq!(authorize.as_str(), "https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/authorize");
//! assert_eq!(token.as_str(), "https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/token");
//! assert_eq!(jwks.as_str(), "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json");
//! assert_eq!(s.client_id, "1example23456789");
//! assert_eq!(s.upstream_scopes, ["openid", "email", "profile"]);
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `MCP_OAUTH_CLIENT_ID` / `MCP_OAUTH_CLIENT_SECRET` | the facade's client at the provider (required, but for the Cognito preset) |
//! | `MCP_OAUTH_AUTH_URL` / `MCP_OAUTH_TOKEN_URL` | the provider's endpoints (manual form) |
//! | `MCP_OAUTH_USERINFO_URL` | who logged in, for providers without ID tokens (GitHub) |
//! | `MCP_OAUTH_ISSUER` | an OIDC provider: endpoints by discovery, the user from its verified ID token |
//! | `MCP_OAUTH_CALLBACK_URL` | where the provider sends the browser back (default `<server origin>/oauth/callback`; register it at the provider) |
//! | `MCP_OAUTH_SCOPE` | scopes to ask the provider for (space- or comma-separated; the Cognito preset's default: `openid email profile`) |
//! | `MCP_OAUTH_PROVIDER_NAME` | the provider's name on the consent page (default: its host; `Amazon Cognito` for a pool's own hosted-UI domain) |
//! | `MCP_OAUTH_SCOPES_SUPPORTED` | scopes MCP clients may ask this server for |
//! | `MCP_PROXY_SIGNING_KEY` | EC P-256 private key (PKCS#8 PEM, inline or a file) for the access tokens; default: generated once, kept in the store |
//! | `MCP_PROXY_ENCRYPTION_KEY` | 32 bytes, base64, sealing upstream tokens and keys at rest; default: generated, kept in the store (with a warning) |
//! | `MCP_PROXY_ACCESS_TOKEN_TTL` | lifetime of the access tokens (default `10m`) |
//! | `MCP_PROXY_CLIENTS` | a JSON file of pre-registered clients: `[{"client_id", "client_name", "redirect_uris", "client_secret", "token_endpoint_auth_method"}]` (the method, `client_secret_basic` or `client_secret_post` with a secret, `none` without, is then the only way the client may authenticate; a confidential client without one may use either) |
//! | `MCP_PROXY_METADATA_ALLOWED_NETWORKS` | CIDRs client ID metadata documents may be fetched from although private (e.g. an internal client registry) |
//! | `MCP_PROXY_AUTHORIZATIONS_PER_MINUTE` / `MCP_PROXY_REGISTRATIONS_PER_HOUR` | per client network (default 60 / 20): raise them for many users behind one address |
//! | `MCP_PROXY_LOGINS_PER_LIFETIME` | logins started or approved from all networks together per login lifetime (10 minutes; default 10 000); past it 503 with `Retry-After`: raise it with the store's size for many users logging in at once |
//! | `MCP_PROXY_METADATA_ALLOW_LOOPBACK` | metadata documents on loopback, plain http allowed (development only; default false) |
//! | `COGNITO_DOMAIN` | the Cognito preset: the pool's hosted-UI domain, as `mcp-auth-cognito setup` prints it (`https://<prefix>.auth.<region>.amazoncognito.com`; a custom domain's URL, a bare host name or just the prefix also do) |
//! | `COGNITO_REGION` / `COGNITO_USER_POOL_ID` | the Cognito preset: the user pool (its issuer and keys) |
//! | `COGNITO_APP_CLIENT_ID` / `COGNITO_APP_CLIENT_SECRET` | the Cognito preset: the app client, when `MCP_OAUTH_CLIENT_ID` is unset |
//! | `COGNITO_JWKS_URL` | the Cognito preset: the pool's keys elsewhere (an emulator; default `<issuer>/.well-known/jwks.json`) |
//! | `MCP_OAUTH_JWKS_MAX_STALE` | trust the provider's ID-token keys at most this long after their last successful fetch (e.g. `24h`, at least `15m`; default: no bound): past it logins fail until the keys can be fetched again |

use std::time::Duration;

use base64::Engine;
use mcp_auth_core::settings::{ConfigError, Lookup, parse_lifetime, parse_list};
use url::Url;

/// Every variable this module reads (and `MCP_SERVER_URL`, which the
/// embedder reads and hands over: the facade checks its origin).
pub const VARIABLES: &[&str] = &[
    "MCP_SERVER_URL",
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
    "MCP_OAUTH_JWKS_MAX_STALE",
    "MCP_PROXY_SIGNING_KEY",
    "MCP_PROXY_ENCRYPTION_KEY",
    "MCP_PROXY_ACCESS_TOKEN_TTL",
    "MCP_PROXY_CLIENTS",
    "MCP_PROXY_METADATA_ALLOWED_NETWORKS",
    "MCP_PROXY_METADATA_ALLOW_LOOPBACK",
    "MCP_PROXY_REDIRECT_SCHEMES",
    "MCP_PROXY_AUTHORIZATIONS_PER_MINUTE",
    "MCP_PROXY_REGISTRATIONS_PER_HOUR",
    "MCP_PROXY_LOGINS_PER_LIFETIME",
    // DPoP-bound tokens, as the resource server checks them.
    "MCP_DPOP",
    "MCP_DPOP_ALGORITHMS",
    // The Cognito preset.
    "COGNITO_DOMAIN",
    "COGNITO_REGION",
    "COGNITO_USER_POOL_ID",
    "COGNITO_APP_CLIENT_ID",
    "COGNITO_APP_CLIENT_SECRET",
    "COGNITO_JWKS_URL",
];

/// Whether the settings ask for the facade (with the `oauth2` strategy):
/// an upstream login is named by `MCP_OAUTH_AUTH_URL`,
/// `MCP_OAUTH_CALLBACK_URL`, or `COGNITO_DOMAIN` (the Cognito preset).
pub fn facade_requested(l: &dyn Lookup) -> bool {
    [
        "MCP_OAUTH_AUTH_URL",
        "MCP_OAUTH_CALLBACK_URL",
        "COGNITO_DOMAIN",
    ]
    .into_iter()
    .any(|v| l.get(v).is_some())
}

/// The Cognito preset's app client: `MCP_OAUTH_CLIENT_ID` and
/// `MCP_OAUTH_CLIENT_SECRET` when `MCP_OAUTH_CLIENT_ID` is set, else
/// `COGNITO_APP_CLIENT_ID` and `COGNITO_APP_CLIENT_SECRET` (as
/// `mcp-auth-cognito setup` prints them). Pairs are not mixed.
fn cognito_client(l: &dyn Lookup) -> Result<(String, String), ConfigError> {
    match (
        l.get("MCP_OAUTH_CLIENT_ID"),
        l.get("MCP_OAUTH_CLIENT_SECRET"),
    ) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        (Some(_), None) => Err(ConfigError::new(
            "MCP_OAUTH_CLIENT_SECRET",
            "required with MCP_OAUTH_CLIENT_ID: the app client's secret",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "MCP_OAUTH_CLIENT_ID",
            "required with MCP_OAUTH_CLIENT_SECRET (or set neither, and COGNITO_APP_CLIENT_ID and COGNITO_APP_CLIENT_SECRET)",
        )),
        (None, None) => {
            let id = l.get("COGNITO_APP_CLIENT_ID").ok_or_else(|| {
                ConfigError::new(
                    "COGNITO_APP_CLIENT_ID",
                    "the Cognito preset needs the pool's app client: COGNITO_APP_CLIENT_ID and COGNITO_APP_CLIENT_SECRET (as `mcp-auth-cognito setup` prints them), or MCP_OAUTH_CLIENT_ID and MCP_OAUTH_CLIENT_SECRET",
                )
            })?;
            let id = id.trim();
            if id == "*" || id.contains(',') {
                return Err(ConfigError::new(
                    "COGNITO_APP_CLIENT_ID",
                    "the login facade logs users in with one app client: set MCP_OAUTH_CLIENT_ID (and MCP_OAUTH_CLIENT_SECRET) to it",
                ));
            }
            let secret = l.get("COGNITO_APP_CLIENT_SECRET").ok_or_else(|| {
                ConfigError::new(
                    "COGNITO_APP_CLIENT_SECRET",
                    "required with COGNITO_APP_CLIENT_ID for the Cognito preset: the app client's secret (the login facade is a confidential client)",
                )
            })?;
            Ok((id.to_owned(), secret))
        }
    }
}

/// An AWS region name: lowercase letters, digits and dashes.
fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The Cognito preset's provider: the hosted UI at `domain`, the pool's
/// issuer and keys.
fn cognito_provider(
    l: &dyn Lookup,
    domain: &str,
    allow_http: bool,
) -> Result<(ProviderSource, IdentitySource), ConfigError> {
    let region = l
        .get("COGNITO_REGION")
        .map(|r| r.trim().to_owned())
        .ok_or_else(|| {
            ConfigError::new(
                "COGNITO_REGION",
                "required for the Cognito preset (COGNITO_DOMAIN): the user pool's region, like eu-west-1",
            )
        })?;
    if !is_region(&region) {
        return Err(ConfigError::new(
            "COGNITO_REGION",
            "not an AWS region like eu-west-1",
        ));
    }
    let pool = l
        .get("COGNITO_USER_POOL_ID")
        .map(|p| p.trim().to_owned())
        .ok_or_else(|| {
            ConfigError::new(
                "COGNITO_USER_POOL_ID",
                "required for the Cognito preset (COGNITO_DOMAIN): the user pool's id, like eu-west-1_AbC123",
            )
        })?;
    match pool.split_once('_') {
        Some((r, id))
            if r == region && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) => {}
        Some((r, _)) if is_region(r) && r != region => {
            return Err(ConfigError::new(
                "COGNITO_USER_POOL_ID",
                format!("the pool belongs to region {r}, not COGNITO_REGION {region}"),
            ));
        }
        _ => {
            return Err(ConfigError::new(
                "COGNITO_USER_POOL_ID",
                format!("not a user pool id like {region}_AbC123"),
            ));
        }
    }
    let domain = cognito_domain(domain, &region, allow_http)?;
    let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool}");
    let jwks = match url_setting(l, "COGNITO_JWKS_URL", allow_http)? {
        Some(u) => u,
        None => Url::parse(&format!("{issuer}/.well-known/jwks.json"))
            .map_err(|e| ConfigError::new("COGNITO_USER_POOL_ID", e.to_string()))?,
    };
    Ok((
        ProviderSource::Cognito {
            region,
            user_pool_id: pool,
            domain,
            jwks,
        },
        IdentitySource::IdToken { issuer },
    ))
}

/// `COGNITO_DOMAIN`: the hosted UI's URL
/// (`https://<prefix>.auth.<region>.amazoncognito.com` as `mcp-auth-cognito
/// setup` prints it, or a custom domain's `https://auth.example.com`), its
/// host name alone, or just the prefix.
fn cognito_domain(value: &str, region: &str, allow_http: bool) -> Result<Url, ConfigError> {
    let v = value.trim().trim_end_matches('/');
    let text = if v.contains("://") {
        v.to_owned()
    } else if v.contains('.') {
        format!("https://{v}")
    } else if !v.is_empty()
        && !v.starts_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        format!("https://{v}.auth.{region}.amazoncognito.com")
    } else {
        return Err(ConfigError::new(
            "COGNITO_DOMAIN",
            "expected the hosted UI's URL (https://<prefix>.auth.<region>.amazoncognito.com, or a custom domain) or its prefix",
        ));
    };
    let url = mcp_auth_jwt::settings::secure_url_setting(&text, "COGNITO_DOMAIN", allow_http)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            "COGNITO_DOMAIN",
            "the hosted UI's origin only, without a path: the endpoints are <domain>/oauth2/authorize and <domain>/oauth2/token",
        ));
    }
    if let Some(host) = url.host_str()
        && let Some(rest) = host.strip_suffix(".amazoncognito.com")
    {
        // <prefix>.auth.<region> (or auth-fips)
        let labels: Vec<&str> = rest.split('.').collect();
        match labels.as_slice() {
            [_, "auth" | "auth-fips", r] if *r == region => {}
            [_, "auth" | "auth-fips", r] => {
                return Err(ConfigError::new(
                    "COGNITO_DOMAIN",
                    format!("the hosted UI is in region {r}, not COGNITO_REGION {region}"),
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    "COGNITO_DOMAIN",
                    "not a hosted-UI domain like https://<prefix>.auth.<region>.amazoncognito.com",
                ));
            }
        }
    }
    Ok(url)
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
    /// The Cognito preset: a user pool's hosted UI
    /// (`<domain>/oauth2/authorize`, `<domain>/oauth2/token`), the user
    /// from its ID token, verified with the pool's keys.
    Cognito {
        /// `COGNITO_REGION`.
        region: String,
        /// `COGNITO_USER_POOL_ID`.
        user_pool_id: String,
        /// The hosted-UI domain (`COGNITO_DOMAIN`), an origin.
        domain: Url,
        /// The pool's keys: `<issuer>/.well-known/jwks.json`, or
        /// `COGNITO_JWKS_URL`.
        jwks: Url,
    },
}

impl ProviderSource {
    /// The authorization and token endpoints of the Cognito preset's hosted
    /// UI at `domain`.
    pub fn cognito_endpoints(domain: &Url) -> (Url, Url) {
        let at = |path: &str| {
            let mut u = domain.clone();
            u.set_path(path);
            u.set_query(None);
            u.set_fragment(None);
            u
        };
        (at("/oauth2/authorize"), at("/oauth2/token"))
    }
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
#[derive(Clone)]
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
    /// How long the provider's ID-token keys stay trusted after their last
    /// successful fetch (`MCP_OAUTH_JWKS_MAX_STALE`; `None`: as long as the
    /// provider cannot be reached).
    pub jwks_max_stale: Option<Duration>,
    /// Endpoint policy: pre-registered clients (`MCP_PROXY_CLIENTS`) and
    /// the metadata-document guard (`MCP_PROXY_METADATA_*`).
    pub endpoints: crate::EndpointOptions,
    /// DPoP at the token endpoint (`MCP_DPOP` on, `MCP_DPOP_ALGORITHMS`):
    /// tokens asked for with a proof are bound to its key.
    pub dpop: Option<mcp_auth_jwt::DpopVerifier>,
    /// `MCP_DPOP=require`: token requests without a proof are refused.
    pub dpop_required: bool,
    /// `MCP_DPOP_NONCE=true`: the nonces token requests' proofs must carry,
    /// the resource server's (not read from the settings: the embedder
    /// shares its [`DpopNonces`](mcp_auth_strategies::DpopNonces) here, so
    /// one nonce is good at both; see [`ProxyConfig::dpop_nonces`](crate::ProxyConfig::dpop_nonces)).
    pub dpop_nonces: Option<mcp_auth_strategies::DpopNonces>,
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
            .field("dpop", &self.dpop.is_some())
            .field("dpop_nonces", &self.dpop_nonces.is_some())
            .finish_non_exhaustive()
    }
}

fn url_setting(l: &dyn Lookup, var: &str, allow_http: bool) -> Result<Option<Url>, ConfigError> {
    l.get(var)
        .map(|v| mcp_auth_jwt::settings::secure_url_setting(&v, var, allow_http))
        .transpose()
}

/// The provider and the user's source from the manual or the OIDC form.
fn provider_and_identity(
    authorize: Option<Url>,
    token: Option<Url>,
    userinfo: Option<Url>,
    issuer: Option<String>,
) -> Result<(ProviderSource, IdentitySource), ConfigError> {
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
    Ok((provider, identity))
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
        let cognito = l.get("COGNITO_DOMAIN");
        let (client_id, client_secret) = if cognito.is_some() {
            cognito_client(l)?
        } else {
            (
                need(
                    "MCP_OAUTH_CLIENT_ID",
                    "the facade's client id at the provider",
                )?,
                need(
                    "MCP_OAUTH_CLIENT_SECRET",
                    "the facade's client secret at the provider",
                )?,
            )
        };
        let authorize = url_setting(l, "MCP_OAUTH_AUTH_URL", allow_http)?;
        let token = url_setting(l, "MCP_OAUTH_TOKEN_URL", allow_http)?;
        let userinfo = url_setting(l, "MCP_OAUTH_USERINFO_URL", allow_http)?;
        let issuer = l.get("MCP_OAUTH_ISSUER");
        if let Some(i) = &issuer {
            mcp_auth_jwt::discovery_urls(i)
                .map_err(|e| ConfigError::new("MCP_OAUTH_ISSUER", e.to_string()))?;
            mcp_auth_jwt::settings::secure_url_setting(i, "MCP_OAUTH_ISSUER", allow_http)?;
        }
        let (provider, identity) = match cognito {
            Some(domain) => {
                // The preset names the provider: another way of naming it
                // too is a mistake to point at, not to settle silently.
                if let Some(other) = [
                    "MCP_OAUTH_AUTH_URL",
                    "MCP_OAUTH_TOKEN_URL",
                    "MCP_OAUTH_USERINFO_URL",
                    "MCP_OAUTH_ISSUER",
                ]
                .into_iter()
                .find(|v| l.get(v).is_some())
                {
                    return Err(ConfigError::new(
                        "COGNITO_DOMAIN",
                        format!(
                            "selects the Cognito preset of the login facade, which names the provider itself: unset {other} (or unset COGNITO_DOMAIN to use {other})"
                        ),
                    ));
                }
                cognito_provider(l, &domain, allow_http)?
            }
            None => provider_and_identity(authorize, token, userinfo, issuer)?,
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
        // The facade's endpoints (authorization, token, registration) are
        // on the server's origin: https off loopback, as every
        // authorization server's endpoint must be.
        if mcp_auth_jwt::settings::secure_url_setting(
            server_url.as_str(),
            "MCP_SERVER_URL",
            allow_http,
        )
        .is_err()
        {
            return Err(ConfigError::new(
                "MCP_SERVER_URL",
                "the login facade serves its authorization endpoints on this URL's origin: it must be https (plain http only on loopback, or with MCP_OAUTH_ALLOW_HTTP=true)",
            ));
        }
        if callback.origin() != server_url.origin() {
            return Err(ConfigError::new(
                "MCP_OAUTH_CALLBACK_URL",
                "must be on this server's origin (the facade serves it)",
            ));
        }
        callback_path_is_free(callback.path(), server_url.path())?;
        let upstream_scopes = l
            .get("MCP_OAUTH_SCOPE")
            .map(|s| {
                s.split([' ', ','])
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_else(|| match provider {
                // What `mcp-auth-cognito setup` allows its app client.
                ProviderSource::Cognito { .. } => {
                    ["openid", "email", "profile"].map(str::to_owned).to_vec()
                }
                _ => Vec::new(),
            });
        let provider_name = l.get("MCP_OAUTH_PROVIDER_NAME").unwrap_or_else(|| {
            let from = match &provider {
                ProviderSource::Manual { authorize, .. } => authorize.host_str().map(str::to_owned),
                ProviderSource::Cognito { domain, .. } => match domain.host_str() {
                    Some(h) if h.ends_with(".amazoncognito.com") => {
                        Some("Amazon Cognito".to_owned())
                    }
                    other => other.map(str::to_owned),
                },
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
        let dpop = mcp_auth_strategies::settings::dpop_settings(l)?;
        let access_token_ttl = match l.get("MCP_PROXY_ACCESS_TOKEN_TTL") {
            None => Duration::from_secs(600),
            Some(v) => {
                let d = parse_lifetime(&v, "MCP_PROXY_ACCESS_TOKEN_TTL")?;
                if d > Duration::from_secs(86_400) {
                    return Err(ConfigError::new(
                        "MCP_PROXY_ACCESS_TOKEN_TTL",
                        "at most 1d: a client holding one needs no login until it expires",
                    ));
                }
                d
            }
        };
        // Scopes hold no spaces: commas or spaces separate them. Each must
        // be a scope token (a review: another was granted by default and
        // refused when asked for by name).
        let scopes_supported: Vec<String> = parse_list(l, "MCP_OAUTH_SCOPES_SUPPORTED")
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.split_whitespace().map(str::to_owned))
            .collect();
        mcp_auth_core::settings::check_scope_tokens(
            "MCP_OAUTH_SCOPES_SUPPORTED",
            scopes_supported.iter().map(String::as_str),
        )?;
        Ok(Self {
            client_id,
            client_secret,
            provider,
            identity,
            callback,
            upstream_scopes,
            provider_name,
            scopes_supported,
            signing_key,
            encryption_key,
            access_token_ttl,
            allow_http,
            jwks_max_stale: mcp_auth_jwt::settings::jwks_max_stale(l)?,
            endpoints: endpoint_options(l)?,
            dpop: dpop.as_ref().map(|(v, _)| v.clone()),
            dpop_required: dpop.is_some_and(|(_, required)| required),
            dpop_nonces: None,
        })
    }
}

/// The endpoints' policy from settings: `MCP_PROXY_CLIENTS` (a JSON file of
/// pre-registered clients), `MCP_PROXY_METADATA_ALLOWED_NETWORKS` (CIDRs whose
/// addresses client ID metadata documents may be fetched from although
/// private), `MCP_PROXY_METADATA_ALLOW_LOOPBACK` (documents on loopback,
/// plain http allowed: development only) and `MCP_PROXY_REDIRECT_SCHEMES`
/// (private-use redirect schemes accepted besides reverse-domain ones).
fn endpoint_options(l: &dyn Lookup) -> Result<crate::EndpointOptions, ConfigError> {
    let mut opts = crate::EndpointOptions::default();
    for item in parse_list(l, "MCP_PROXY_REDIRECT_SCHEMES").unwrap_or_default() {
        // Schemes are case-insensitive; redirect URIs must write them in
        // lowercase.
        let scheme = item.strip_suffix(':').unwrap_or(&item).to_ascii_lowercase();
        opts.registration
            .allow_private_use_scheme(&scheme)
            .map_err(|why| {
                ConfigError::new("MCP_PROXY_REDIRECT_SCHEMES", format!("{item:?} {why}"))
            })?;
    }
    opts.metadata_guard.allow_loopback =
        mcp_auth_core::settings::parse_bool(l, "MCP_PROXY_METADATA_ALLOW_LOOPBACK", false)?;
    for item in parse_list(l, "MCP_PROXY_METADATA_ALLOWED_NETWORKS").unwrap_or_default() {
        let net = item.parse::<crate::clients::IpNetwork>().map_err(|_| {
            ConfigError::new(
                "MCP_PROXY_METADATA_ALLOWED_NETWORKS",
                format!("{item:?} is not a network like 10.0.0.0/8"),
            )
        })?;
        opts.metadata_guard.allowed_networks.push(net);
    }
    if let Some(path) = l.get("MCP_PROXY_CLIENTS") {
        opts.preregistered = preregistered_clients(&path, &opts.registration)?;
    }
    let count = |name: &str, default: u64| -> Result<u64, ConfigError> {
        match l.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError::new(name, format!("expected a whole number above 0, got {v:?}"))
            }),
        }
    };
    opts.authorizations_per_minute = count(
        "MCP_PROXY_AUTHORIZATIONS_PER_MINUTE",
        opts.authorizations_per_minute,
    )?;
    opts.registrations_per_hour = count(
        "MCP_PROXY_REGISTRATIONS_PER_HOUR",
        opts.registrations_per_hour,
    )?;
    opts.logins_per_lifetime_total = count(
        "MCP_PROXY_LOGINS_PER_LIFETIME",
        opts.logins_per_lifetime_total,
    )?;
    Ok(opts)
}

/// One entry of the `MCP_PROXY_CLIENTS` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Reads pre-registered clients: a JSON array of
/// `{"client_id", "client_name"?, "redirect_uris", "client_secret"?,
/// "token_endpoint_auth_method"?}`. The method, when given, is how the
/// client authenticates at the token and revocation endpoints, and the
/// only way it may: with a secret `client_secret_basic` or
/// `client_secret_post`, without one `none`; a confidential client
/// without one has `client_secret_basic` and may also post its secret.
/// Errors name the entry's position, never a secret.
fn preregistered_clients(
    path: &str,
    policy: &crate::clients::RegistrationPolicy,
) -> Result<Vec<crate::clients::ClientInfo>, ConfigError> {
    let var = "MCP_PROXY_CLIENTS";
    let text = String::from_utf8(mcp_auth_core::settings::read_file_setting(
        path,
        var,
        16 << 20,
    )?)
    .map_err(|_| {
        ConfigError::new(
            var,
            format!(
                "cannot read the file it names ({})",
                std::io::ErrorKind::InvalidData
            ),
        )
    })?;
    let entries: Vec<ClientEntry> = serde_json::from_str(&text).map_err(|e| {
        ConfigError::new(
            var,
            format!(
                "line {}: expected a JSON array of {{client_id, client_name, redirect_uris, client_secret, token_endpoint_auth_method}}",
                e.line()
            ),
        )
    })?;
    let mut out: Vec<crate::clients::ClientInfo> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = i + 1;
        if e.client_id.trim().is_empty() || out.iter().any(|c| c.client_id == e.client_id) {
            return Err(ConfigError::new(
                var,
                format!("client #{at}: client_id is empty or repeated"),
            ));
        }
        if e.redirect_uris.is_empty() {
            return Err(ConfigError::new(
                var,
                format!("client #{at}: no redirect_uris"),
            ));
        }
        for uri in &e.redirect_uris {
            policy.validate_redirect_uri(uri).map_err(|err| {
                ConfigError::new(var, format!("client #{at}: {}", err.description()))
            })?;
        }
        let name = e.client_name.unwrap_or_else(|| e.client_id.clone());
        let mut client =
            crate::clients::ClientInfo::preregistered(e.client_id, name, e.redirect_uris);
        if let Some(secret) = e.client_secret.filter(|s| !s.is_empty()) {
            if secret.len() < 32 {
                return Err(ConfigError::new(
                    var,
                    format!(
                        "client #{at}: client_secret is shorter than 32 characters (use `openssl rand -hex 32`)"
                    ),
                ));
            }
            client = client.with_client_secret(&secret);
        }
        if let Some(name) = e.token_endpoint_auth_method {
            let method = crate::clients::TokenEndpointAuthMethod::from_name(&name)
                .filter(|m| m.uses_secret() == client.client_secret_sha256.is_some())
                .ok_or_else(|| {
                    ConfigError::new(
                        var,
                        format!(
                            "client #{at}: token_endpoint_auth_method must be client_secret_basic or client_secret_post with a client_secret, none without one"
                        ),
                    )
                })?;
            client.token_endpoint_auth_method = method;
            client.auth_method_named = true;
        }
        out.push(client);
    }
    Ok(out)
}

/// The callback's path is a route of its own: a plain path (letters,
/// digits, `-._~%/`; a `*` would make it a pattern) on none of the
/// facade's endpoints, the MCP endpoint (`server_path`) or the server's
/// other routes (mounting over one was a panic at start).
fn callback_path_is_free(path: &str, server_path: &str) -> Result<(), ConfigError> {
    use crate::endpoints::paths;
    let plain = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%/".contains(&b))
        && !path.contains("//");
    if !plain {
        return Err(ConfigError::new(
            "MCP_OAUTH_CALLBACK_URL",
            format!(
                "path {path:?} must be a plain path like /oauth/callback (letters, digits, - . _ ~ %)"
            ),
        ));
    }
    let taken = [
        paths::METADATA,
        paths::AUTHORIZE,
        paths::CONSENT,
        paths::TOKEN,
        paths::REGISTER,
        paths::REVOKE,
        paths::JWKS,
        "/health",
        "/ready",
        "/sse",
        "/messages",
        "/metrics",
        server_path,
    ];
    if taken.contains(&path) || path.starts_with("/.well-known/") {
        return Err(ConfigError::new(
            "MCP_OAUTH_CALLBACK_URL",
            format!(
                "path {path:?} is one of the server's own routes (the MCP endpoint, /health, /ready, \
                 /sse, /messages, /metrics, /.well-known/, the facade's /oauth/ endpoints): use \
                 /oauth/callback"
            ),
        ));
    }
    Ok(())
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
    fn pre_registered_clients_and_the_metadata_guard_come_from_settings() {
        let url: Url = "https://mcp.example.com/mcp".parse().unwrap();
        let dir = std::env::temp_dir().join(format!("proxy-clients-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clients.json");
        let path = file.display().to_string();
        let load = |json: &str, extra: &[(&str, &str)]| {
            std::fs::write(&file, json).unwrap();
            let mut v = vars(BASE);
            v.insert("MCP_OAUTH_ISSUER".into(), "https://idp.example".into());
            v.insert("MCP_PROXY_CLIENTS".into(), path.clone());
            v.extend(vars(extra));
            ProxySettings::from_settings(&v, &url)
        };
        let s = load(
            r#"[{"client_id": "vscode", "client_name": "VS Code", "redirect_uris": ["http://127.0.0.1/callback"]},
                {"client_id": "backend", "redirect_uris": ["https://app.example/cb"], "client_secret": "a-secret-of-thirty-two-characters-plus"},
                {"client_id": "poster", "redirect_uris": ["https://app.example/cb"], "client_secret": "a-secret-of-thirty-two-characters-plus", "token_endpoint_auth_method": "client_secret_post"}]"#,
            &[
                ("MCP_PROXY_METADATA_ALLOWED_NETWORKS", "10.1.0.0/16"),
                ("MCP_PROXY_METADATA_ALLOW_LOOPBACK", "true"),
            ],
        )
        .unwrap();
        let clients = &s.endpoints.preregistered;
        assert_eq!(clients.len(), 3);
        assert!(!clients[0].is_confidential());
        // How each authenticates: the method given, else by the secret.
        use crate::clients::TokenEndpointAuthMethod as M;
        let methods: Vec<M> = clients
            .iter()
            .map(|c| c.token_endpoint_auth_method)
            .collect();
        assert_eq!(
            methods,
            [M::None, M::ClientSecretBasic, M::ClientSecretPost]
        );
        assert_eq!(clients[0].client_name, "VS Code");
        assert!(clients[1].verify_secret("a-secret-of-thirty-two-characters-plus"));
        assert!(!clients[1].verify_secret("wrong"));
        assert!(s.endpoints.metadata_guard.allow_loopback);
        assert_eq!(s.endpoints.authorizations_per_minute, 60, "the default");
        let raised = load(
            "[]",
            &[
                ("MCP_PROXY_AUTHORIZATIONS_PER_MINUTE", "600"),
                ("MCP_PROXY_REGISTRATIONS_PER_HOUR", "100"),
                ("MCP_PROXY_LOGINS_PER_LIFETIME", "50000"),
            ],
        )
        .unwrap();
        assert_eq!(raised.endpoints.authorizations_per_minute, 600);
        // A single-word app scheme, once allowed, in pre-registered clients too.
        let apps = load(
            r#"[{"client_id": "cursor", "redirect_uris": ["cursor://anysphere.cursor-retrieval/oauth/callback"]}]"#,
            &[("MCP_PROXY_REDIRECT_SCHEMES", "cursor")],
        )
        .unwrap();
        assert_eq!(apps.endpoints.registration.private_use_schemes, ["cursor"]);
        assert_eq!(apps.endpoints.preregistered.len(), 1);
        assert_eq!(raised.endpoints.registrations_per_hour, 100);
        assert_eq!(raised.endpoints.logins_per_lifetime_total, 50_000);
        assert_eq!(s.endpoints.logins_per_lifetime_total, 10_000, "the default");
        assert_eq!(s.endpoints.metadata_guard.allowed_networks.len(), 1);
        for (json, extra, variable, says) in [
            ("not json", vec![], "MCP_PROXY_CLIENTS", "line 1"),
            (
                r#"[{"client_id": "a", "redirect_uris": []}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["http://evil.example/cb"]}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["https://a.example/cb"]}, {"client_id": "a", "redirect_uris": ["https://a.example/cb"]}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #2",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret": "short-secret"}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post"}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1: token_endpoint_auth_method",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret": "a-secret-of-thirty-two-characters-plus", "token_endpoint_auth_method": "none"}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1: token_endpoint_auth_method",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret": "a-secret-of-thirty-two-characters-plus", "token_endpoint_auth_method": "private_key_jwt"}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1: token_endpoint_auth_method",
            ),
            (
                "[]",
                vec![("MCP_PROXY_METADATA_ALLOWED_NETWORKS", "10.0.0.1/99")],
                "MCP_PROXY_METADATA_ALLOWED_NETWORKS",
                "10.0.0.1/99",
            ),
            (
                r#"[{"client_id": "a", "redirect_uris": ["cursor://app/cb"]}]"#,
                vec![],
                "MCP_PROXY_CLIENTS",
                "client #1",
            ),
            (
                "[]",
                vec![("MCP_PROXY_REDIRECT_SCHEMES", "cursor,javascript")],
                "MCP_PROXY_REDIRECT_SCHEMES",
                "\"javascript\" is not a private-use scheme",
            ),
        ] {
            let e = load(json, &extra).unwrap_err();
            assert_eq!(e.variable, variable, "{json}: {e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(!e.to_string().contains("short-secret"), "{e}");
            assert!(!e.to_string().contains("thirty-two"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A callback path on a route the server already has, or one that would
    /// be a route pattern, is refused naming the setting (it was a panic
    /// when the routes were put together, or a wildcard route).
    #[test]
    fn callback_paths_on_the_servers_own_routes_are_refused() {
        let url: Url = "https://mcp.example.com/mcp".parse().unwrap();
        let with = |callback: &str| {
            let mut v = vars(BASE);
            v.extend(vars(&[
                ("MCP_OAUTH_ISSUER", "https://idp.example.com"),
                ("MCP_OAUTH_CALLBACK_URL", callback),
            ]));
            ProxySettings::from_settings(&v, &url)
        };
        for path in [
            "/mcp",
            "/health",
            "/ready",
            "/sse",
            "/messages",
            "/metrics",
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-protected-resource",
            "/oauth/token",
            "/oauth/authorize",
            "/oauth/consent",
            "/oauth/register",
            "/oauth/revoke",
            "/oauth/jwks",
            "/oauth/*rest",
            "/oauth/:x",
            "/oauth//callback",
        ] {
            let err = with(&format!("https://mcp.example.com{path}"))
                .err()
                .unwrap_or_else(|| panic!("{path} accepted"));
            assert_eq!(err.variable, "MCP_OAUTH_CALLBACK_URL", "{path}: {err}");
        }
        for path in [
            "/oauth/callback",
            "/auth/callback",
            "/oauth/callback/github",
        ] {
            assert!(
                with(&format!("https://mcp.example.com{path}")).is_ok(),
                "{path}"
            );
        }
    }

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
            (
                vec![
                    ("MCP_OAUTH_ISSUER", "https://idp"),
                    ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools,a\"b"),
                ],
                "MCP_OAUTH_SCOPES_SUPPORTED",
            ),
            (
                vec![("MCP_OAUTH_ISSUER", "https://user:pw@idp")],
                "MCP_OAUTH_ISSUER",
            ),
        ] {
            let e = with(&extra).unwrap_err();
            assert_eq!(e.variable, variable, "{extra:?}: {e}");
        }
        let e = ProxySettings::from_settings(&vars(&[("MCP_OAUTH_AUTH_URL", "https://a")]), &url)
            .unwrap_err();
        assert_eq!(e.variable, "MCP_OAUTH_CLIENT_ID");
        // The facade's endpoints are on the server's origin: https off
        // loopback (MCP: every authorization server endpoint).
        let mut v = vars(BASE);
        v.insert("MCP_OAUTH_ISSUER".into(), "https://idp".into());
        let plain: Url = "http://mcp.example.com/mcp".parse().unwrap();
        let e = ProxySettings::from_settings(&v, &plain).unwrap_err();
        assert_eq!(e.variable, "MCP_SERVER_URL", "{e}");
        let local: Url = "http://127.0.0.1:8001/mcp".parse().unwrap();
        assert!(ProxySettings::from_settings(&v, &local).is_ok());
        v.insert("MCP_OAUTH_ALLOW_HTTP".into(), "true".into());
        assert!(ProxySettings::from_settings(&v, &plain).is_ok());
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

    /// What `mcp-auth-cognito setup` prints.
    const COGNITO: &[(&str, &str)] = &[
        ("COGNITO_REGION", "eu-west-1"),
        ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
        ("COGNITO_APP_CLIENT_ID", "app-client"),
        ("COGNITO_APP_CLIENT_SECRET", "app-secret"),
        (
            "COGNITO_DOMAIN",
            "https://my-pool.auth.eu-west-1.amazoncognito.com",
        ),
    ];

    fn cognito(changes: &[(&str, Option<&str>)]) -> Result<ProxySettings, ConfigError> {
        let mut v = vars(COGNITO);
        for (k, val) in changes {
            match val {
                Some(x) => v.insert((*k).to_owned(), (*x).to_owned()),
                None => v.remove(*k),
            };
        }
        ProxySettings::from_settings(&v, &"https://mcp.example.com/mcp".parse().unwrap())
    }

    #[test]
    fn the_cognito_preset_from_the_lines_setup_prints() {
        assert!(facade_requested(&vars(COGNITO)));
        // The `cognito` strategy's settings alone do not ask for the facade.
        let mut strategy_only = vars(COGNITO);
        strategy_only.remove("COGNITO_DOMAIN");
        assert!(!facade_requested(&strategy_only));

        let s = cognito(&[]).unwrap();
        let issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123";
        assert_eq!(
            s.identity,
            IdentitySource::IdToken {
                issuer: issuer.into()
            }
        );
        let ProviderSource::Cognito {
            region,
            user_pool_id,
            domain,
            jwks,
        } = &s.provider
        else {
            panic!("{:?}", s.provider)
        };
        assert_eq!(
            (region.as_str(), user_pool_id.as_str()),
            ("eu-west-1", "eu-west-1_AbC123")
        );
        assert_eq!(jwks.as_str(), format!("{issuer}/.well-known/jwks.json"));
        let (authorize, token) = ProviderSource::cognito_endpoints(domain);
        assert_eq!(
            (authorize.as_str(), token.as_str()),
            (
                "https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/authorize",
                "https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/token"
            )
        );
        assert_eq!(
            (s.client_id.as_str(), s.client_secret.as_str()),
            ("app-client", "app-secret")
        );
        assert_eq!(
            s.callback.as_str(),
            "https://mcp.example.com/oauth/callback"
        );
        assert_eq!(s.upstream_scopes, ["openid", "email", "profile"]);
        assert_eq!(s.provider_name, "Amazon Cognito");
        assert!(!format!("{s:?}").contains("app-secret"));

        // The MCP_OAUTH_ pair wins over the COGNITO_ one; scopes and the
        // name can be set.
        let s = cognito(&[
            ("MCP_OAUTH_CLIENT_ID", Some("facade-client")),
            ("MCP_OAUTH_CLIENT_SECRET", Some("facade-secret")),
            ("MCP_OAUTH_SCOPE", Some("openid email")),
            ("MCP_OAUTH_PROVIDER_NAME", Some("Example Corp")),
            ("COGNITO_APP_CLIENT_ID", Some("a,b")),
        ])
        .unwrap();
        assert_eq!(
            (s.client_id.as_str(), s.client_secret.as_str()),
            ("facade-client", "facade-secret")
        );
        assert_eq!(s.upstream_scopes, ["openid", "email"]);
        assert_eq!(s.provider_name, "Example Corp");
    }

    #[test]
    fn cognito_domains_as_url_host_or_prefix() {
        let full = "https://my-pool.auth.eu-west-1.amazoncognito.com/";
        for given in [
            "https://my-pool.auth.eu-west-1.amazoncognito.com",
            "https://my-pool.auth.eu-west-1.amazoncognito.com/",
            "my-pool.auth.eu-west-1.amazoncognito.com",
            "my-pool",
        ] {
            let s = cognito(&[("COGNITO_DOMAIN", Some(given))]).unwrap();
            let ProviderSource::Cognito { domain, .. } = &s.provider else {
                panic!()
            };
            assert_eq!(domain.as_str(), full, "{given}");
        }
        // A custom domain, and the keys elsewhere (an emulator on loopback).
        let s = cognito(&[
            ("COGNITO_DOMAIN", Some("https://auth.example.com")),
            (
                "COGNITO_JWKS_URL",
                Some("http://127.0.0.1:5000/eu-west-1_AbC123/.well-known/jwks.json"),
            ),
        ])
        .unwrap();
        let ProviderSource::Cognito { domain, jwks, .. } = &s.provider else {
            panic!()
        };
        assert_eq!(domain.as_str(), "https://auth.example.com/");
        assert_eq!(jwks.port(), Some(5000));
        assert_eq!(s.provider_name, "auth.example.com");
        // A loopback hosted UI (tests) is plain http.
        assert!(cognito(&[("COGNITO_DOMAIN", Some("http://127.0.0.1:9000"))]).is_ok());
    }

    #[test]
    fn every_cognito_mistake_names_its_variable() {
        for (changes, variable) in [
            (vec![("COGNITO_REGION", None)], "COGNITO_REGION"),
            (vec![("COGNITO_REGION", Some("EU west"))], "COGNITO_REGION"),
            (vec![("COGNITO_USER_POOL_ID", None)], "COGNITO_USER_POOL_ID"),
            (
                vec![("COGNITO_USER_POOL_ID", Some("us-east-1_AbC123"))],
                "COGNITO_USER_POOL_ID",
            ),
            (
                vec![("COGNITO_USER_POOL_ID", Some("AbC123"))],
                "COGNITO_USER_POOL_ID",
            ),
            (
                vec![("COGNITO_APP_CLIENT_ID", None)],
                "COGNITO_APP_CLIENT_ID",
            ),
            (
                vec![("COGNITO_APP_CLIENT_ID", Some("a,b"))],
                "COGNITO_APP_CLIENT_ID",
            ),
            (
                vec![("COGNITO_APP_CLIENT_ID", Some("*"))],
                "COGNITO_APP_CLIENT_ID",
            ),
            (
                vec![("COGNITO_APP_CLIENT_SECRET", None)],
                "COGNITO_APP_CLIENT_SECRET",
            ),
            (
                vec![("MCP_OAUTH_CLIENT_ID", Some("x"))],
                "MCP_OAUTH_CLIENT_SECRET",
            ),
            (
                vec![("MCP_OAUTH_CLIENT_SECRET", Some("x"))],
                "MCP_OAUTH_CLIENT_ID",
            ),
            (
                vec![("MCP_OAUTH_ISSUER", Some("https://idp.example"))],
                "COGNITO_DOMAIN",
            ),
            (
                vec![("MCP_OAUTH_AUTH_URL", Some("https://idp.example/a"))],
                "COGNITO_DOMAIN",
            ),
            (
                vec![("MCP_OAUTH_USERINFO_URL", Some("https://idp.example/u"))],
                "COGNITO_DOMAIN",
            ),
            (vec![("COGNITO_DOMAIN", Some("My Pool!"))], "COGNITO_DOMAIN"),
            (
                vec![(
                    "COGNITO_DOMAIN",
                    Some("https://my-pool.auth.eu-west-1.amazoncognito.com/login"),
                )],
                "COGNITO_DOMAIN",
            ),
            (
                vec![("COGNITO_DOMAIN", Some("http://auth.example.com"))],
                "COGNITO_DOMAIN",
            ),
            (
                vec![(
                    "COGNITO_DOMAIN",
                    Some("https://my-pool.auth.us-east-1.amazoncognito.com"),
                )],
                "COGNITO_DOMAIN",
            ),
            (
                vec![("COGNITO_JWKS_URL", Some("http://keys.example/jwks.json"))],
                "COGNITO_JWKS_URL",
            ),
            (
                vec![(
                    "MCP_OAUTH_CALLBACK_URL",
                    Some("https://elsewhere.example/cb"),
                )],
                "MCP_OAUTH_CALLBACK_URL",
            ),
        ] {
            let e = cognito(&changes).unwrap_err();
            assert_eq!(e.variable, variable, "{changes:?}: {e}");
            assert!(!e.to_string().contains("app-secret"), "{e}");
        }
    }

    #[test]
    fn every_quoted_variable_name_is_exported() {
        for name in include_str!("settings.rs").split('"').skip(1).step_by(2) {
            let looks_like_one = name.contains('_')
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            assert!(!looks_like_one || VARIABLES.contains(&name), "{name}");
        }
    }

    #[tokio::test]
    async fn the_cognito_preset_builds_a_facade_at_the_hosted_ui() {
        let s = cognito(&[("COGNITO_JWKS_URL", Some("http://127.0.0.1:9/jwks.json"))]).unwrap();
        let store = std::sync::Arc::new(mcp_auth_session::MemoryStore::new());
        let proxy = s
            .build("https://mcp.example.com/mcp".parse().unwrap(), store)
            .await
            .unwrap();
        let up = &proxy.inner.upstream;
        assert_eq!(
            up.authorize_url(),
            "https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
        );
        let start = up.start_login().unwrap();
        let q: HashMap<_, _> = start.url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "app-client");
        assert_eq!(q["scope"], "openid email profile");
        assert_eq!(
            q["nonce"], start.nonce,
            "OIDC: the ID token names the login"
        );
        assert_eq!(q["redirect_uri"], "https://mcp.example.com/oauth/callback");
    }

    /// `MCP_OAUTH_JWKS_MAX_STALE` bounds the provider's ID-token keys as it
    /// bounds the resource server's (unset: no bound; below 15m: refused,
    /// naming it).
    #[tokio::test]
    async fn the_keys_maximum_staleness_reaches_the_id_token_keys() {
        let jwks = ("COGNITO_JWKS_URL", Some("http://127.0.0.1:9/jwks.json"));
        let bound = |s: ProxySettings| async move {
            let store = std::sync::Arc::new(mcp_auth_session::MemoryStore::new());
            let proxy = s
                .build("https://mcp.example.com/mcp".parse().unwrap(), store)
                .await
                .unwrap();
            match proxy.inner.upstream.identity() {
                crate::upstream::Identity::IdToken(v) => v.jwks().and_then(|c| c.max_stale()),
                crate::upstream::Identity::Userinfo(_) => panic!("the preset verifies ID tokens"),
            }
        };
        let day = cognito(&[jwks, ("MCP_OAUTH_JWKS_MAX_STALE", Some("1d"))]).unwrap();
        assert_eq!(bound(day).await, Some(Duration::from_secs(86_400)));
        assert_eq!(bound(cognito(&[jwks]).unwrap()).await, None);
        let short = cognito(&[jwks, ("MCP_OAUTH_JWKS_MAX_STALE", Some("5m"))]).unwrap_err();
        assert_eq!(short.variable, "MCP_OAUTH_JWKS_MAX_STALE");
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
            ProviderSource::Cognito { domain, .. } => ProviderSource::cognito_endpoints(domain),
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
                let jwks = match &self.provider {
                    // The pool's keys where Cognito publishes them.
                    ProviderSource::Cognito { jwks, .. } => {
                        mcp_auth_jwt::JwksCache::builder(jwks.clone())
                    }
                    _ => mcp_auth_jwt::JwksCache::discover(issuer.clone()),
                }
                .allow_insecure_http(self.allow_http)
                .max_stale(self.jwks_max_stale)
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
        cfg.dpop = self.dpop.clone();
        cfg.dpop_required = self.dpop_required;
        cfg.dpop_nonces = self.dpop_nonces.clone();
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
