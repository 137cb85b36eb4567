//! Settings shared by every strategy that verifies tokens.

use std::time::Duration;

use mcp_auth_core::settings::{ConfigError, Lookup};
use url::Url;

use crate::fetch::{is_secure_url, redact};

/// `MCP_JWT_LEEWAY`: clock-skew leeway in whole seconds, 0 to 600 (default 60).
///
/// ```
/// use std::{collections::HashMap, time::Duration};
/// let vars = HashMap::from([("MCP_JWT_LEEWAY".to_owned(), "5".to_owned())]);
/// assert_eq!(mcp_auth_jwt::settings::leeway_from_settings(&vars).unwrap(), Duration::from_secs(5));
/// ```
pub fn leeway_from_settings(l: &dyn Lookup) -> Result<Duration, ConfigError> {
    match l.get("MCP_JWT_LEEWAY") {
        None => Ok(Duration::from_secs(60)),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 600)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ConfigError::new(
                    "MCP_JWT_LEEWAY",
                    format!("expected whole seconds from 0 to 600, got {v:?}"),
                )
            }),
    }
}

/// The time rules every token verifier shares, from settings.
///
/// ```
/// use std::{collections::HashMap, time::Duration};
/// use mcp_auth_jwt::TimeRules;
/// let vars = HashMap::from([("MCP_JWT_MAX_LIFETIME".to_owned(), "1h".to_owned())]);
/// let r = TimeRules::from_settings(&vars).unwrap();
/// assert_eq!(r.max_lifetime, Some(Duration::from_secs(3600)));
/// assert_eq!(r.leeway, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeRules {
    /// Clock-skew leeway (`MCP_JWT_LEEWAY`, seconds, default 60).
    pub leeway: Duration,
    /// Longest accepted token lifetime, `exp` minus `iat`
    /// (`MCP_JWT_MAX_LIFETIME`: `90s`, `30m`, `1h`, `7d` or seconds; default
    /// none). When set, tokens without `iat` are refused.
    pub max_lifetime: Option<Duration>,
}

impl TimeRules {
    /// Reads `MCP_JWT_LEEWAY` and `MCP_JWT_MAX_LIFETIME`.
    pub fn from_settings(l: &dyn Lookup) -> Result<Self, ConfigError> {
        let max_lifetime = match l.get("MCP_JWT_MAX_LIFETIME") {
            None => None,
            Some(v) => Some(mcp_auth_core::settings::parse_lifetime(
                &v,
                "MCP_JWT_MAX_LIFETIME",
            )?),
        };
        Ok(Self {
            leeway: leeway_from_settings(l)?,
            max_lifetime,
        })
    }
}

/// A URL setting (`var`) that tokens' keys or secrets travel over: https,
/// or http to loopback, or any http when `allow_http`
/// (`MCP_OAUTH_ALLOW_HTTP`).
///
/// ```
/// assert!(mcp_auth_jwt::settings::secure_url_setting("https://as.example/jwks", "X", false).is_ok());
/// assert!(mcp_auth_jwt::settings::secure_url_setting("http://as.example/jwks", "X", false).is_err());
/// ```
pub fn secure_url_setting(value: &str, var: &str, allow_http: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| ConfigError::new(var, format!("{value:?} is not an http(s) URL")))?;
    if !is_secure_url(&url, allow_http) {
        return Err(ConfigError::new(
            var,
            format!(
                "{} must be https (plain http only to loopback, or with MCP_OAUTH_ALLOW_HTTP=true): anyone on the path could forge keys or read secrets",
                redact(&url)
            ),
        ));
    }
    Ok(url)
}
