//! `mcp-auth-server token`: mints a JWT the `bearer` strategy accepts.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_auth_core::settings::{ConfigError, Lookup, parse_list};
use mcp_auth_jwt::{
    HMAC_ALGORITHMS, same_family,
    settings::{algorithm_setting, hmac_secret_setting, pem_setting},
};
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
    let alg = algorithm_setting(l, "MCP_JWT_ALGORITHM")?;
    let secret = hmac_secret_setting(l, "MCP_JWT_SECRET")?;
    let (key, alg) = match (secret, l.get("MCP_JWT_PRIVATE_KEY")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "MCP_JWT_PRIVATE_KEY",
                "set either MCP_JWT_SECRET or MCP_JWT_PRIVATE_KEY, not both",
            ));
        }
        (Some(secret), None) => {
            let alg = alg.unwrap_or(Algorithm::HS256);
            if !HMAC_ALGORITHMS.contains(&alg) {
                return Err(ConfigError::new(
                    "MCP_JWT_ALGORITHM",
                    "a secret signs HS256, HS384 or HS512",
                ));
            }
            (EncodingKey::from_secret(secret.as_bytes()), alg)
        }
        (None, Some(value)) => private_key(&pem_setting(&value, "MCP_JWT_PRIVATE_KEY")?, alg)?,
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

/// Reads a private key of one type from PEM.
type KeyParser = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;

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
    // Each key type with the algorithm it signs by default; a requested
    // algorithm must be of the key's family (mcp_auth_jwt's lists).
    let candidates: [(KeyParser, Algorithm); 3] = [
        (EncodingKey::from_rsa_pem, Algorithm::RS256),
        (EncodingKey::from_ed_pem, Algorithm::EdDSA),
        (EncodingKey::from_ec_pem, Algorithm::ES256),
    ];
    for (parse, default) in candidates {
        if let Ok(k) = parse(pem) {
            let a = alg.unwrap_or(default);
            return if same_family(a, default) {
                Ok((k, a))
            } else {
                Err(wrong(a))
            };
        }
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
