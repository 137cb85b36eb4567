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
    // What the server would refuse is not minted (an attack pass: an empty
    // `--sub` gave a token every request with it was refused for).
    for (flag, value) in [
        ("--sub", Some(&args.sub)),
        ("--aud", args.aud.as_ref()),
        ("--client-id", args.client_id.as_ref()),
    ] {
        if value.is_some_and(|v| v.trim().is_empty() || v.trim() != v) {
            return Err(ConfigError::new(
                flag,
                "must not be empty or begin or end with spaces",
            ));
        }
    }
    let alg = algorithm_setting(l, "MCP_JWT_ALGORITHM")?;
    let secret = hmac_secret_setting(l, "MCP_JWT_SECRET")?;
    // The server refuses this pair: a token for it could never be used.
    if secret.is_some() && l.get("MCP_JWT_PUBLIC_KEY").is_some() {
        return Err(ConfigError::new(
            "MCP_JWT_PUBLIC_KEY",
            "set either MCP_JWT_SECRET or MCP_JWT_PUBLIC_KEY, not both (the server refuses the pair)",
        ));
    }
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
    // Longer than the server takes: a token it would refuse.
    if let Some(max) = mcp_auth_jwt::TimeRules::from_settings(l)?.max_lifetime
        && lifetime > max
    {
        return Err(ConfigError::new(
            if args.expires_in.is_some() {
                "--expires-in"
            } else {
                "MCP_JWT_EXPIRES_IN"
            },
            format!(
                "longer than MCP_JWT_MAX_LIFETIME ({} s): the server would refuse the token",
                max.as_secs()
            ),
        ));
    }
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
    // Scope tokens only (RFC 6749 §3.3): the server reads nothing else as
    // a scope, so a token with `a"b` would not hold it.
    mcp_auth_core::settings::check_scope_tokens("--scope", args.scope.split_whitespace())?;
    let scope = args.scope.split_whitespace().collect::<Vec<_>>().join(" ");
    if !scope.is_empty() {
        claims["scope"] = scope.into();
    }
    if let Some(c) = &args.client_id {
        claims["client_id"] = c.clone().into();
    }
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| ConfigError::new("MCP_JWT_PRIVATE_KEY", format!("cannot sign: {e}")))?;
    // With the server's public key at hand, the signature is checked
    // with it: a private key of another pair signs tokens the server
    // refuses (an attack pass).
    if let Some(value) = l.get("MCP_JWT_PUBLIC_KEY") {
        let pem = pem_setting(&value, "MCP_JWT_PUBLIC_KEY")?;
        let mut rules = jsonwebtoken::Validation::new(alg);
        rules.validate_exp = false;
        rules.validate_nbf = false;
        rules.validate_aud = false;
        rules.required_spec_claims.clear();
        let pairs = [
            jsonwebtoken::DecodingKey::from_rsa_pem,
            jsonwebtoken::DecodingKey::from_ec_pem,
            jsonwebtoken::DecodingKey::from_ed_pem,
        ]
        .iter()
        .filter_map(|read| read(&pem).ok())
        .any(|k| jsonwebtoken::decode::<serde_json::Value>(&token, &k, &rules).is_ok());
        if !pairs {
            return Err(ConfigError::new(
                "MCP_JWT_PRIVATE_KEY",
                "does not pair with MCP_JWT_PUBLIC_KEY: the server would refuse the token",
            ));
        }
    }
    Ok(token)
}

/// Reads a private key of one type from PEM.
type KeyParser = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;

fn private_key(
    pem: &[u8],
    alg: Option<Algorithm>,
) -> Result<(EncodingKey, Algorithm), ConfigError> {
    let bad = || {
        let text = String::from_utf8_lossy(pem);
        let why = if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            "an EC key in SEC1 form (as `openssl ecparam -genkey` writes it): give it as PKCS#8 \
             (`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key8.pem`)"
        } else {
            "not an RSA, EC or Ed25519 private key in PEM format (EC and Ed25519 keys in PKCS#8 form)"
        };
        ConfigError::new("MCP_JWT_PRIVATE_KEY", why)
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
            // An EC key signs with its curve's algorithm: ES256 for P-256,
            // ES384 for P-384 (which cannot sign ES256).
            let default = if default == Algorithm::ES256
                && jsonwebtoken::encode(&Header::new(Algorithm::ES256), &serde_json::json!({}), &k)
                    .is_err()
            {
                Algorithm::ES384
            } else {
                default
            };
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

    fn minted(vars: &[(&str, &str)]) -> Result<String, ConfigError> {
        let args = TokenArgs {
            sub: "alice".into(),
            scope: String::new(),
            expires_in: None,
            aud: None,
            client_id: None,
        };
        let l: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        mint(&args, &l, &"http://127.0.0.1:8000/mcp".parse().unwrap())
    }

    /// Tokens the server would refuse are not minted (an attack pass):
    /// a blank subject, audience or client id, a lifetime past
    /// `MCP_JWT_MAX_LIFETIME`.
    #[test]
    fn tokens_the_server_would_refuse_are_not_minted() {
        const SECRET: &str = "0123456789abcdef0123456789abcdef";
        let l: std::collections::HashMap<String, String> =
            [("MCP_JWT_SECRET", SECRET), ("MCP_JWT_MAX_LIFETIME", "30m")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let url: Url = "http://127.0.0.1:8000/mcp".parse().unwrap();
        let args = |sub: &str, aud: Option<&str>, expires: Option<&str>| TokenArgs {
            sub: sub.into(),
            scope: String::new(),
            expires_in: expires.map(str::to_owned),
            aud: aud.map(str::to_owned),
            client_id: None,
        };
        assert_eq!(
            mint(&args("", None, Some("10m")), &l, &url)
                .unwrap_err()
                .variable,
            "--sub"
        );
        assert_eq!(
            mint(&args("   ", None, Some("10m")), &l, &url)
                .unwrap_err()
                .variable,
            "--sub"
        );
        assert_eq!(
            mint(&args("alice", Some(""), Some("10m")), &l, &url)
                .unwrap_err()
                .variable,
            "--aud"
        );
        // The default hour is past the 30 minutes the server takes.
        assert_eq!(
            mint(&args("alice", None, None), &l, &url)
                .unwrap_err()
                .variable,
            "MCP_JWT_EXPIRES_IN"
        );
        assert!(mint(&args("alice", None, Some("10m")), &l, &url).is_ok());
    }

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../mcp-auth-jwt/tests/keys/");

    /// What a docs walkthrough found: a P-384 key signed ES256 by default
    /// (and failed), a SEC1 EC key was called "not an EC key", and a secret
    /// beside a public key minted HS256 tokens the server (which refuses
    /// the pair) could never take.
    #[test]
    fn keys_sign_with_their_own_algorithm_and_unusable_setups_are_named() {
        let p384 = format!("{KEYS}ec384.pem");
        let token = minted(&[("MCP_JWT_PRIVATE_KEY", &p384)]).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            Algorithm::ES384
        );
        let p256 = format!("{KEYS}ec256.pem");
        let token = minted(&[("MCP_JWT_PRIVATE_KEY", &p256)]).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            Algorithm::ES256
        );

        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let err = minted(&[("MCP_JWT_PRIVATE_KEY", sec1)]).unwrap_err();
        assert_eq!(err.variable, "MCP_JWT_PRIVATE_KEY");
        assert!(err.message.contains("PKCS#8"), "{err}");

        let pubkey = format!("{KEYS}ec256.pub.pem");
        let err = minted(&[
            ("MCP_JWT_SECRET", "an-example-secret-of-at-least-32-bytes"),
            ("MCP_JWT_PUBLIC_KEY", &pubkey),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "MCP_JWT_PUBLIC_KEY", "{err}");

        // A private key of another pair than the server's public key (an
        // attack pass); each key with its own public key mints.
        let err = minted(&[
            ("MCP_JWT_PRIVATE_KEY", &format!("{KEYS}rsa.pem")),
            ("MCP_JWT_PUBLIC_KEY", &format!("{KEYS}rsa2.pub.pem")),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "MCP_JWT_PRIVATE_KEY", "{err}");
        assert!(err.message.contains("does not pair"), "{err}");
        for (private, public) in [
            ("rsa.pem", "rsa.pub.pem"),
            ("ec256.pem", "ec256.pub.pem"),
            ("ec384.pem", "ec384.pub.pem"),
            ("ed25519.pem", "ed25519.pub.pem"),
        ] {
            assert!(
                minted(&[
                    ("MCP_JWT_PRIVATE_KEY", &format!("{KEYS}{private}")),
                    ("MCP_JWT_PUBLIC_KEY", &format!("{KEYS}{public}")),
                ])
                .is_ok(),
                "{private}"
            );
        }
    }

    /// Scopes are RFC 6749 scope tokens: anything else the server would
    /// not read as one (an attack pass).
    #[test]
    fn scopes_that_are_not_scope_tokens_are_refused() {
        let l: std::collections::HashMap<String, String> =
            [("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let url: Url = "http://127.0.0.1:8000/mcp".parse().unwrap();
        let with = |scope: &str| TokenArgs {
            sub: "alice".into(),
            scope: scope.into(),
            expires_in: None,
            aud: None,
            client_id: None,
        };
        for bad in ["a\"b", "mcp:tools a\\b", "x\u{1}"] {
            assert_eq!(
                mint(&with(bad), &l, &url).unwrap_err().variable,
                "--scope",
                "{bad:?}"
            );
        }
        assert!(mint(&with("mcp:tools  mcp:admin"), &l, &url).is_ok());
    }
}
