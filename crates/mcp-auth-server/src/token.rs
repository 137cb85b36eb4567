//! `mcp-auth-server token`: mints a JWT the `bearer` strategy accepts.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_auth_core::settings::{ConfigError, Lookup, parse_list};
use mcp_auth_strategies::DEFAULT_JWT_ISSUER;
use url::Url;

/// Longest lifetime the command mints.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// What to put in the token.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Subject (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Space-separated scopes (`scope`), e.g. "mcp:tools mcp:admin".
    #[arg(long, default_value = "")]
    pub scope: String,
    /// Lifetime: 90s, 30m, 1h, 7d (default MCP_JWT_EXPIRES_IN, else 1h; at most 30d).
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Audience (`aud`); default: MCP_JWT_AUDIENCE's first entry, else
    /// MCP_SERVER_URL, else http://HOST:PORT/mcp.
    #[arg(long)]
    pub aud: Option<String>,
    /// Client id (`client_id`), optional.
    #[arg(long)]
    pub client_id: Option<String>,
}

/// Parses `90s`, `30m`, `1h`, `7d` or plain seconds, at most 30 days.
pub fn parse_lifetime(v: &str, var: &str) -> Result<Duration, ConfigError> {
    let d = mcp_auth_core::settings::parse_lifetime(v, var)?;
    if d > MAX_LIFETIME {
        return Err(ConfigError::new(var, "must be between 1s and 30d"));
    }
    Ok(d)
}

/// Mints the token for `args` with the configured key.
pub fn mint(args: &TokenArgs, l: &dyn Lookup, default_aud: &Url) -> Result<String, ConfigError> {
    let alg = match l.get("MCP_JWT_ALGORITHM") {
        None => None,
        Some(a) => Some(a.parse::<Algorithm>().map_err(|_| {
            ConfigError::new("MCP_JWT_ALGORITHM", format!("{a:?} is not a JWS algorithm"))
        })?),
    };
    let (key, alg) = match (l.get("MCP_JWT_SECRET"), l.get("MCP_JWT_PRIVATE_KEY")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "MCP_JWT_PRIVATE_KEY",
                "set either MCP_JWT_SECRET or MCP_JWT_PRIVATE_KEY, not both",
            ));
        }
        (Some(secret), None) => {
            if secret.len() < mcp_auth_jwt::MIN_HMAC_SECRET_LEN {
                return Err(ConfigError::new(
                    "MCP_JWT_SECRET",
                    "must be at least 32 bytes",
                ));
            }
            let alg = alg.unwrap_or(Algorithm::HS256);
            if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(ConfigError::new(
                    "MCP_JWT_ALGORITHM",
                    "a secret signs HS256, HS384 or HS512",
                ));
            }
            (EncodingKey::from_secret(secret.as_bytes()), alg)
        }
        (None, Some(value)) => {
            // Inline PEM or a file path; the value is never echoed (it may be the key).
            let pem = if value.contains("-----BEGIN") {
                value.replace("\\n", "\n").into_bytes()
            } else {
                std::fs::read(&value).map_err(|e| {
                    ConfigError::new(
                        "MCP_JWT_PRIVATE_KEY",
                        format!("cannot read the file it names ({})", e.kind()),
                    )
                })?
            };
            private_key(&pem, alg)?
        }
        (None, None) => {
            return Err(ConfigError::new(
                "MCP_JWT_SECRET",
                "set MCP_JWT_SECRET (or MCP_JWT_PRIVATE_KEY, a PEM file) to mint tokens",
            ));
        }
    };
    let lifetime = match args
        .expires_in
        .clone()
        .or_else(|| l.get("MCP_JWT_EXPIRES_IN"))
    {
        Some(v) => parse_lifetime(
            &v,
            if args.expires_in.is_some() {
                "--expires-in"
            } else {
                "MCP_JWT_EXPIRES_IN"
            },
        )?,
        None => Duration::from_secs(3600),
    };
    let aud = args
        .aud
        .clone()
        .or_else(|| {
            parse_list(l, "MCP_JWT_AUDIENCE").and_then(|a| a.into_iter().find(|a| a != "*"))
        })
        .unwrap_or_else(|| default_aud.to_string());
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "sub": args.sub,
        "iss": l.get("MCP_JWT_ISSUER").unwrap_or_else(|| DEFAULT_JWT_ISSUER.to_owned()),
        "aud": aud,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime.as_secs(),
    });
    let scope = args.scope.split_whitespace().collect::<Vec<_>>().join(" ");
    if !scope.is_empty() {
        claims["scope"] = scope.into();
    }
    if let Some(c) = &args.client_id {
        claims["client_id"] = c.clone().into();
    }
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".to_owned());
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| ConfigError::new("MCP_JWT_PRIVATE_KEY", format!("cannot sign: {e}")))
}

fn private_key(
    pem: &[u8],
    alg: Option<Algorithm>,
) -> Result<(EncodingKey, Algorithm), ConfigError> {
    let bad = || {
        ConfigError::new(
            "MCP_JWT_PRIVATE_KEY",
            "not an RSA, EC or Ed25519 private key in PEM format",
        )
    };
    let wrong = |a: Algorithm| {
        ConfigError::new(
            "MCP_JWT_ALGORITHM",
            format!("{a:?} does not fit the private key"),
        )
    };
    if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
        let a = alg.unwrap_or(Algorithm::RS256);
        if !matches!(
            a,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) {
            return Err(wrong(a));
        }
        return Ok((k, a));
    }
    if let Ok(k) = EncodingKey::from_ed_pem(pem) {
        let a = alg.unwrap_or(Algorithm::EdDSA);
        return if a == Algorithm::EdDSA {
            Ok((k, a))
        } else {
            Err(wrong(a))
        };
    }
    if let Ok(k) = EncodingKey::from_ec_pem(pem) {
        let a = alg.unwrap_or(Algorithm::ES256);
        return if matches!(a, Algorithm::ES256 | Algorithm::ES384) {
            Ok((k, a))
        } else {
            Err(wrong(a))
        };
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("90s", "x").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_lifetime("30m", "x").unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            parse_lifetime("1h", "x").unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse_lifetime("7d", "x").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            parse_lifetime("120", "x").unwrap(),
            Duration::from_secs(120)
        );
        for bad in ["", "0", "1y", "31d", "h", "-1h", "99999999999999999999d"] {
            assert_eq!(parse_lifetime(bad, "X").unwrap_err().variable, "X", "{bad}");
        }
    }
}
