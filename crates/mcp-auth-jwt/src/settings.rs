//! Settings shared by every strategy that verifies tokens.

use std::time::Duration;

use mcp_auth_core::settings::{ConfigError, Lookup};
use url::Url;

use crate::{is_secure_url, redact};

/// `MCP_JWT_LEEWAY`: clock-skew leeway in whole seconds, 0 to 600 (default 60).
///
/// ```
/// use std::{collections::HashMap, time::Duration};
/// let vars = HashMap::from([("MCP_JWT_LEEWAY".to_owned(), "5".to_owned())]);
/// assert_eq!(mcp_auth_jwt::leeway_from_settings(&vars).unwrap(), Duration::from_secs(5));
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

/// A URL setting (`var`) that tokens' keys or secrets travel over: https,
/// or http to loopback, or any http when `allow_http`
/// (`MCP_OAUTH_ALLOW_HTTP`).
///
/// ```
/// assert!(mcp_auth_jwt::secure_url_setting("https://as.example/jwks", "X", false).is_ok());
/// assert!(mcp_auth_jwt::secure_url_setting("http://as.example/jwks", "X", false).is_err());
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
