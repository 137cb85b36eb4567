//! Settings shared by every strategy that verifies tokens.

use std::time::Duration;

use mcp_auth_core::settings::{ConfigError, Lookup};
#[cfg(feature = "fetch")]
use url::Url;

#[cfg(feature = "fetch")]
use crate::fetch::{is_secure_url, redact};

/// An algorithm setting (`MCP_JWT_ALGORITHM`): one of
/// [`ALL_ALGORITHMS`](crate::ALL_ALGORITHMS) by its JWS name; unset is
/// `None`. The error lists the accepted names.
///
/// ```
/// use std::collections::HashMap;
/// use mcp_auth_jwt::{Algorithm, settings::algorithm_setting};
/// let vars = HashMap::from([("A".to_owned(), "ES256".to_owned()), ("B".to_owned(), "none".to_owned())]);
/// assert_eq!(algorithm_setting(&vars, "A").unwrap(), Some(Algorithm::ES256));
/// assert!(algorithm_setting(&vars, "B").unwrap_err().to_string().contains("HS256"));
/// ```
pub fn algorithm_setting(
    l: &dyn Lookup,
    var: &str,
) -> Result<Option<jsonwebtoken::Algorithm>, ConfigError> {
    let Some(v) = l.get(var) else {
        return Ok(None);
    };
    crate::ALL_ALGORITHMS
        .iter()
        .find(|a| format!("{a:?}") == v)
        .copied()
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<String> = crate::ALL_ALGORITHMS
                .iter()
                .map(|a| format!("{a:?}"))
                .collect();
            ConfigError::new(var, format!("{v:?} is not one of {}", names.join(" ")))
        })
}

/// A PEM setting (`MCP_JWT_PUBLIC_KEY`, `MCP_JWT_PRIVATE_KEY`): the PEM text
/// itself (`\n` escapes allowed, for one-line environment variables) or
/// the path of a file holding it. Errors never repeat the value (it may be
/// the key).
///
/// ```
/// use mcp_auth_jwt::settings::pem_setting;
/// let inline = "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----";
/// assert!(pem_setting(inline, "X").unwrap().contains(&b'\n'));
/// let e = pem_setting("/no/such/file.pem", "X").unwrap_err();
/// assert_eq!(e.to_string(), "X: cannot read the file it names (entity not found)");
/// ```
pub fn pem_setting(value: &str, var: &str) -> Result<Vec<u8>, ConfigError> {
    if value.contains("-----BEGIN") {
        return Ok(value.replace("\\n", "\n").into_bytes());
    }
    // A key is a few KiB.
    mcp_auth_core::settings::read_file_setting(value, var, 1 << 20)
}

/// An HMAC secret setting (`MCP_JWT_SECRET`): at least
/// [`MIN_HMAC_SECRET_LEN`](crate::MIN_HMAC_SECRET_LEN) bytes.
pub fn hmac_secret_setting(l: &dyn Lookup, var: &str) -> Result<Option<String>, ConfigError> {
    match l.get(var) {
        Some(secret) if secret.len() < crate::MIN_HMAC_SECRET_LEN => Err(ConfigError::new(
            var,
            format!(
                "must be at least {} bytes (e.g. `openssl rand -base64 48`)",
                crate::MIN_HMAC_SECRET_LEN
            ),
        )),
        other => Ok(other),
    }
}

/// `MCP_OAUTH_JWKS_MAX_STALE`: how long cached keys stay trusted after
/// their last successful fetch ([`JwksCacheBuilder::max_stale`](crate::JwksCacheBuilder::max_stale));
/// `None` when unset. At least 15 minutes, since the keys are refreshed
/// every 10. Read by the `oauth2` and `cognito` strategies.
///
/// ```
/// use std::{collections::HashMap, time::Duration};
/// let vars = HashMap::from([("MCP_OAUTH_JWKS_MAX_STALE".to_owned(), "1d".to_owned())]);
/// assert_eq!(
///     mcp_auth_jwt::settings::jwks_max_stale(&vars).unwrap(),
///     Some(Duration::from_secs(86_400))
/// );
/// let short = HashMap::from([("MCP_OAUTH_JWKS_MAX_STALE".to_owned(), "5m".to_owned())]);
/// assert!(mcp_auth_jwt::settings::jwks_max_stale(&short).is_err());
/// ```
pub fn jwks_max_stale(l: &dyn Lookup) -> Result<Option<Duration>, ConfigError> {
    const VAR: &str = "MCP_OAUTH_JWKS_MAX_STALE";
    let Some(v) = l.get(VAR) else {
        return Ok(None);
    };
    let max = mcp_auth_core::settings::parse_lifetime(&v, VAR)?;
    if max < Duration::from_secs(15 * 60) {
        return Err(ConfigError::new(
            VAR,
            format!("{v:?} is shorter than 15m; the keys are refreshed every 10 minutes"),
        ));
    }
    Ok(Some(max))
}

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
#[cfg(feature = "fetch")]
pub fn secure_url_setting(value: &str, var: &str, allow_http: bool) -> Result<Url, ConfigError> {
    // The value is not repeated: a malformed URL cannot be redacted, and
    // it may carry credentials.
    let url = match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            return Err(ConfigError::new(
                var,
                format!("scheme {:?} is not http(s)", url.scheme()),
            ));
        }
        Err(e) => {
            return Err(ConfigError::new(
                var,
                format!("not an absolute http(s) URL ({e})"),
            ));
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file named by mistake is read up to a bound (an attack pass:
    /// `/dev/zero` was read until memory ran out).
    #[cfg(unix)]
    #[test]
    fn a_pem_file_is_read_up_to_a_bound() {
        let e = pem_setting("/dev/zero", "KEY").unwrap_err();
        assert_eq!(e.variable, "KEY");
        assert!(e.message.contains("over 1 MiB"), "{e}");
        let e = pem_setting("/no/such/key.pem", "KEY").unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
    }
}
