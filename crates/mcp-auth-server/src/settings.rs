//! Where settings come from, highest first: command-line flags, the process
//! environment, `.env` in the working directory, a TOML file, defaults.
//!
//! Every source uses the same flat names (`PORT`, `MCP_API_KEYS`,
//! `HTTP_MAX_REQUEST_SIZE`, ...); in the TOML file they may be lowercase.

use std::{collections::HashMap, net::IpAddr, path::Path};

use mcp_auth_core::settings::{ConfigError, Lookup, parse_bool};
use url::Url;

/// Every variable the server reads.
pub const KNOWN: &[&str] = &[
    "PORT",
    "HOST",
    "MCP_TRANSPORT",
    "MCP_SERVER_URL",
    "MCP_SERVER_NAME",
    "MCP_SERVER_VERSION",
    "MCP_AUTH_STRATEGY",
    "MCP_AUTH_REQUIRE",
    "MCP_API_KEYS",
    "MCP_ALLOW_INSECURE_NONE",
    "LOG_LEVEL",
    "RUST_LOG",
    "HTTP_ALLOWED_HOSTS",
    "HTTP_DNS_REBINDING_PROTECTION",
    "HTTP_ALLOWED_ORIGINS",
    "HTTP_ENABLE_CORS",
    "HTTP_CORS_ORIGINS",
    "HTTP_CORS_METHODS",
    "HTTP_CORS_HEADERS",
    "HTTP_CORS_CREDENTIALS",
    "HTTP_MAX_REQUEST_SIZE",
    "HTTP_REQUEST_TIMEOUT",
    "MCP_TOOL_SCOPES",
    "MCP_JWT_SECRET",
    "MCP_JWT_ALGORITHM",
    "MCP_JWT_ISSUER",
    "MCP_JWT_AUDIENCE",
    "MCP_JWT_PUBLIC_KEY",
    "MCP_JWT_PRIVATE_KEY",
    "MCP_JWT_LEEWAY",
    "MCP_JWT_MAX_LIFETIME",
    "MCP_JWT_EXPIRES_IN",
    "MCP_OAUTH_ISSUER",
    "MCP_OAUTH_JWKS_URL",
    "MCP_OAUTH_AUDIENCE",
    "MCP_OAUTH_REQUIRED_SCOPES",
    "MCP_OAUTH_SCOPES_SUPPORTED",
    "MCP_OAUTH_INTROSPECTION_URL",
    "MCP_OAUTH_CLIENT_ID",
    "MCP_OAUTH_CLIENT_SECRET",
    "MCP_OAUTH_ALLOW_HTTP",
    "COGNITO_REGION",
    "COGNITO_USER_POOL_ID",
    "COGNITO_APP_CLIENT_ID",
    "COGNITO_TOKEN_USE",
    "COGNITO_REQUIRED_GROUPS",
    "COGNITO_REQUIRED_SCOPES",
    "COGNITO_RESOURCE_INDICATORS",
    "COGNITO_JWKS_URL",
    "MCP_SESSION_STORE",
    "MCP_SESSION_AUTH_ENABLED",
    "MCP_SESSION_AUTH_REQUIRE_FOR_SESSION",
    "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS",
    "HTTP_MAX_CONCURRENT_SESSIONS",
    "MCP_MAX_SESSIONS_PER_PRINCIPAL",
    "MCP_MAX_SESSIONS_PER_SUBJECT",
    "MCP_MAX_ANONYMOUS_SESSIONS",
    "HTTP_SESSION_TIMEOUT",
    "HTTP_SESSION_CLEANUP_INTERVAL",
    "HTTP_RATE_LIMIT_ENABLED",
    "HTTP_RATE_LIMIT_WINDOW",
    "HTTP_RATE_LIMIT_MAX_REQUESTS",
    "HTTP_AUTH_FAILURE_LIMIT",
    "HTTP_TRUSTED_PROXIES",
    "HTTP_SSE_KEEP_ALIVE",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_MAX_CONNECTIONS_PER_IP",
    "HTTP_IDLE_TIMEOUT",
    "HTTP_HEADER_READ_TIMEOUT",
    "HTTP_BODY_READ_TIMEOUT",
];

/// Variables other programs of this project read (the example client, the
/// Cognito admin CLI) that the server does not: `mcp-auth-cognito setup`
/// writes them into `.env`, where the server finds them. Setting one is
/// reported, so nobody believes it has an effect on the server.
pub const FOR_OTHERS: &[&str] = &["COGNITO_APP_CLIENT_SECRET", "COGNITO_DOMAIN"];

/// Seed variables that do not apply to this server. Setting one is
/// reported, so nobody believes they have an effect.
pub const NOT_YET: &[&str] = &[
    // The seed's server-side OAuth client settings: this server is a
    // resource server and never runs an authorization flow itself.
    "MCP_OAUTH_AUTH_URL",
    "MCP_OAUTH_TOKEN_URL",
    "MCP_OAUTH_CALLBACK_URL",
    "MCP_OAUTH_SCOPE",
    "MCP_OAUTH_USERINFO_URL",
];

/// The merged settings.
pub type Merged = HashMap<String, String>;

/// Merges the sources. `flags` are the command-line values, already named
/// by variable (`PORT`, `HOST`, `MCP_TRANSPORT`).
pub fn merge(
    config_file: Option<&Path>,
    dotenv: Option<&Path>,
    env: &dyn Lookup,
    flags: &[(&str, Option<String>)],
) -> Result<Merged, ConfigError> {
    let mut m = Merged::new();
    if let Some(path) = config_file {
        for (k, v) in read_toml(path)? {
            m.insert(k, v);
        }
    }
    if let Some(path) = dotenv.filter(|p| p.exists()) {
        let shown = path.display();
        let iter = dotenvy::from_path_iter(path).map_err(|e| {
            ConfigError::new(
                ".env",
                format!("cannot read {shown}: {}", dotenv_reason(&e)),
            )
        })?;
        for item in iter {
            let (k, v) = item
                .map_err(|e| ConfigError::new(".env", format!("{shown}: {}", dotenv_reason(&e))))?;
            if KNOWN.contains(&k.as_str())
                || NOT_YET.contains(&k.as_str())
                || FOR_OTHERS.contains(&k.as_str())
            {
                m.insert(k, v);
            }
        }
    }
    for name in KNOWN.iter().chain(NOT_YET).chain(FOR_OTHERS) {
        if let Some(v) = env.get(name) {
            m.insert((*name).to_owned(), v);
        }
    }
    for (name, value) in flags {
        if let Some(v) = value {
            m.insert((*name).to_owned(), v.clone());
        }
    }
    Ok(m)
}

/// Reads a flat TOML file. Errors give the line, never the line's text (it
/// may hold a key).
fn read_toml(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let var = "--config";
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(var, format!("cannot read {shown}: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(n) => ConfigError::new(var, format!("{shown}: line {n}: not valid TOML")),
            None => ConfigError::new(var, format!("{shown}: not valid TOML")),
        }
    })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !KNOWN.contains(&name.as_str())
            && !NOT_YET.contains(&name.as_str())
            && !FOR_OTHERS.contains(&name.as_str())
        {
            return Err(ConfigError::new(
                var,
                format!("{shown}: unknown setting {key:?}"),
            ));
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let text = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            v => scalar(v),
        }
        .ok_or_else(|| {
            ConfigError::new(
                var,
                format!("{shown}: {key} must be a string, number, boolean or a list of them"),
            )
        })?;
        out.push((name, text));
    }
    Ok(out)
}

/// A `.env` error without the offending line's text (it may hold a key).
fn dotenv_reason(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("syntax error at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(_) => "invalid variable".to_owned(),
        _ => "cannot be parsed".to_owned(),
    }
}

/// The transport to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse,
    /// Both HTTP transports from one process.
    Both,
    /// Standard input and output.
    Stdio,
}

/// An authentication strategy. Several may be chained
/// (`MCP_AUTH_STRATEGY=api_key,oauth2`): the first that accepts wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `none`, chosen explicitly.
    None,
    /// `api_key` with `MCP_API_KEYS`.
    ApiKey,
    /// `bearer`: JWTs signed with `MCP_JWT_SECRET` or `MCP_JWT_PUBLIC_KEY`.
    Bearer,
    /// `oauth2`: a resource server for `MCP_OAUTH_ISSUER`.
    OAuth2,
    /// `cognito`: AWS Cognito user-pool tokens (`COGNITO_*`).
    Cognito,
    /// Nothing configured: generate a key for this run.
    Generated,
}

/// The server's own settings (the HTTP stack reads its `HTTP_*` itself).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub transport: Transport,
    pub host: IpAddr,
    pub port: u16,
    pub server_url: Option<Url>,
    pub strategies: Vec<Strategy>,
    pub name: String,
    pub version: String,
    pub log_level: String,
}

impl ServerSettings {
    /// Validates the merged settings.
    pub fn from_merged(m: &Merged) -> Result<Self, ConfigError> {
        let transport = match m
            .get("MCP_TRANSPORT")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("streamable-http" | "streamable_http" | "http") => {
                Transport::StreamableHttp
            }
            Some("stdio") => Transport::Stdio,
            Some("sse") => Transport::Sse,
            Some("both" | "streamable-http+sse" | "http+sse") => Transport::Both,
            Some(other) => {
                return Err(ConfigError::new(
                    "MCP_TRANSPORT",
                    format!("expected streamable-http, sse, both or stdio, got {other:?}"),
                ));
            }
        };
        let host_text = Lookup::get(m, "HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let host: IpAddr = match host_text.as_str() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h.trim_matches(['[', ']']).parse().map_err(|_| {
                ConfigError::new(
                    "HOST",
                    format!(
                        "expected an IP address to bind (e.g. 127.0.0.1 or 0.0.0.0), got {h:?}"
                    ),
                )
            })?,
        };
        let port = match Lookup::get(m, "PORT") {
            None => 8001,
            Some(p) => p.parse::<u16>().map_err(|_| {
                ConfigError::new("PORT", format!("expected a port number 0-65535, got {p:?}"))
            })?,
        };
        let server_url = match Lookup::get(m, "MCP_SERVER_URL") {
            None => None,
            Some(u) => Some(parse_server_url(&u)?),
        };
        let keys_set = Lookup::get(m, "MCP_API_KEYS").is_some();
        let strategies: Vec<Strategy> = match Lookup::get(m, "MCP_AUTH_STRATEGY") {
            None if keys_set => vec![Strategy::ApiKey],
            None => vec![Strategy::Generated],
            Some(list) => {
                let mut out = Vec::new();
                for item in list.split(',').map(|s| s.trim().to_ascii_lowercase()) {
                    let s = match item.as_str() {
                        "none" => Strategy::None,
                        "api_key" | "apikey" | "api-key" => Strategy::ApiKey,
                        "bearer" | "jwt" => Strategy::Bearer,
                        "oauth2" | "oauth" => Strategy::OAuth2,
                        "cognito" => Strategy::Cognito,
                        other => {
                            return Err(ConfigError::new(
                                "MCP_AUTH_STRATEGY",
                                format!(
                                    "expected none, api_key, bearer, oauth2 or cognito (comma-separated to chain), got {other:?}"
                                ),
                            ));
                        }
                    };
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                if out.contains(&Strategy::None) && out.len() > 1 {
                    return Err(ConfigError::new(
                        "MCP_AUTH_STRATEGY",
                        "none cannot be chained with other strategies",
                    ));
                }
                if out.contains(&Strategy::ApiKey) && !keys_set {
                    return Err(ConfigError::new(
                        "MCP_API_KEYS",
                        "required when MCP_AUTH_STRATEGY includes api_key",
                    ));
                }
                out
            }
        };
        let strategy = strategies[0];
        if !parse_bool(m, "MCP_AUTH_REQUIRE", true)? && strategy != Strategy::None {
            return Err(ConfigError::new(
                "MCP_AUTH_REQUIRE",
                "false is not supported: every request is authenticated; set MCP_AUTH_STRATEGY=none to turn authentication off",
            ));
        }
        if strategy == Strategy::None
            && !host.is_loopback()
            && !parse_bool(m, "MCP_ALLOW_INSECURE_NONE", false)?
        {
            return Err(ConfigError::new(
                "MCP_AUTH_STRATEGY",
                format!(
                    "none on the non-loopback address {host} would let anyone in; bind to 127.0.0.1, choose a strategy, or set MCP_ALLOW_INSECURE_NONE=true"
                ),
            ));
        }
        // RUST_LOG wins over the seeds' LOG_LEVEL, as Rust users expect.
        let (log_var, log_level) = match Lookup::get(m, "RUST_LOG") {
            Some(v) => ("RUST_LOG", v),
            None => (
                "LOG_LEVEL",
                Lookup::get(m, "LOG_LEVEL").unwrap_or_else(|| "info".to_owned()),
            ),
        };
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|_| {
            ConfigError::new(
                log_var,
                format!("expected error, warn, info, debug, trace or filter directives, got {log_level:?}"),
            )
        })?;
        Ok(Self {
            transport,
            host,
            port,
            server_url,
            strategies,
            name: Lookup::get(m, "MCP_SERVER_NAME").unwrap_or_else(|| "mcp-auth-server".to_owned()),
            version: Lookup::get(m, "MCP_SERVER_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            log_level,
        })
    }

    /// Variables that are set but have no effect on the server, each with
    /// the reason.
    pub fn ignored(m: &Merged) -> Vec<(&'static str, &'static str)> {
        let set = |n: &&&str| Lookup::get(m, n).is_some();
        let not_yet = NOT_YET.iter().filter(set).map(|n| {
            (
                *n,
                "this server is a resource server and runs no authorization flow itself",
            )
        });
        let others = FOR_OTHERS.iter().filter(set).map(|n| {
            (
                *n,
                "read by mcp-auth-client and mcp-auth-cognito, not by the server",
            )
        });
        not_yet.chain(others).collect()
    }

    /// `MCP_SERVER_URL`, or one derived from the bound address.
    pub fn server_url_for(&self, bound_port: u16) -> Url {
        if let Some(u) = &self.server_url {
            return u.clone();
        }
        let host = match self.host {
            h if h.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(h) => format!("[{h}]"),
            IpAddr::V4(h) => h.to_string(),
        };
        // Built from an IP and a port: always a valid URL.
        Url::parse(&format!("http://{host}:{bound_port}/mcp"))
            .unwrap_or_else(|_| Url::parse("http://127.0.0.1/mcp").expect("static URL parses"))
    }
}

fn parse_server_url(u: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(u)
        .map_err(|e| ConfigError::new("MCP_SERVER_URL", format!("{u:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(
            "MCP_SERVER_URL",
            format!("{u:?} must be an http:// or https:// URL with a host"),
        ));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(ConfigError::new(
            "MCP_SERVER_URL",
            format!(
                "{u:?} must not carry a query, fragment or credentials (it is the RFC 9728 resource identifier)"
            ),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn merged(pairs: &[(&str, &str)]) -> Merged {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn precedence_flags_env_dotenv_toml() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("c.toml");
        std::fs::File::create(&toml)
            .unwrap()
            .write_all(b"port = 1000\nhost = \"127.0.0.1\"\nlog_level = \"warn\"\nMCP_SERVER_NAME = \"from-toml\"\nhttp_allowed_hosts = [\"a\", \"b\"]\n")
            .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "PORT=2000\nLOG_LEVEL=debug\nUNRELATED=1\n").unwrap();
        let env = merged(&[("PORT", "3000")]);
        let m = merge(
            Some(&toml),
            Some(&dotenv),
            &env,
            &[("PORT", Some("4000".into())), ("HOST", None)],
        )
        .unwrap();
        assert_eq!(m["PORT"], "4000");
        assert_eq!(m["LOG_LEVEL"], "debug");
        assert_eq!(m["MCP_SERVER_NAME"], "from-toml");
        assert_eq!(m["HTTP_ALLOWED_HOSTS"], "a,b");
        assert!(!m.contains_key("UNRELATED"));
        let m = merge(Some(&toml), Some(&dotenv), &env, &[]).unwrap();
        assert_eq!(m["PORT"], "3000");
    }

    #[test]
    fn toml_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("c.toml");
        std::fs::write(&toml, "prot = 1\n").unwrap();
        let e = merge(Some(&toml), None, &Merged::new(), &[]).unwrap_err();
        assert!(e.to_string().contains("unknown setting \"prot\""), "{e}");
        std::fs::write(&toml, "[http]\nx = 1\n").unwrap();
        assert!(merge(Some(&toml), None, &Merged::new(), &[]).is_err());
        std::fs::write(&toml, "port = 1\nmcp_api_keys = \"secret-value\n").unwrap();
        let e = merge(Some(&toml), None, &Merged::new(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: not valid TOML"), "{e}");
        assert!(!e.contains("secret-value") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn dotenv_errors_never_echo_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "PORT=1\nMCP_API_KEYS=\"secret-value\n").unwrap();
        let e = merge(None, Some(&dotenv), &Merged::new(), &[]).unwrap_err();
        assert_eq!(e.variable, ".env");
        let e = e.to_string();
        assert!(!e.contains("secret-value") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn strategy_selection() {
        let s = ServerSettings::from_merged(&merged(&[])).unwrap();
        assert_eq!(s.strategies, [Strategy::Generated]);
        assert_eq!(s.port, 8001);
        let s =
            ServerSettings::from_merged(&merged(&[("MCP_API_KEYS", "0123456789abcdef0")])).unwrap();
        assert_eq!(s.strategies, [Strategy::ApiKey]);
        let s = ServerSettings::from_merged(&merged(&[("MCP_AUTH_STRATEGY", "none")])).unwrap();
        assert_eq!(s.strategies, [Strategy::None]);
        let s = ServerSettings::from_merged(&merged(&[
            ("MCP_AUTH_STRATEGY", "api_key, oauth2,API_KEY"),
            ("MCP_API_KEYS", "0123456789abcdef0"),
        ]))
        .unwrap();
        assert_eq!(s.strategies, [Strategy::ApiKey, Strategy::OAuth2]);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PORT", "99999")], "PORT"),
            (&[("HOST", "my-laptop")], "HOST"),
            (&[("MCP_TRANSPORT", "carrier-pigeon")], "MCP_TRANSPORT"),
            (&[("MCP_AUTH_STRATEGY", "magic")], "MCP_AUTH_STRATEGY"),
            (&[("MCP_AUTH_STRATEGY", "none,bearer")], "MCP_AUTH_STRATEGY"),
            (&[("MCP_AUTH_STRATEGY", "api_key")], "MCP_API_KEYS"),
            (
                &[("MCP_AUTH_STRATEGY", "none"), ("HOST", "0.0.0.0")],
                "MCP_AUTH_STRATEGY",
            ),
            (&[("MCP_AUTH_REQUIRE", "false")], "MCP_AUTH_REQUIRE"),
            (&[("MCP_SERVER_URL", "ftp://x/mcp")], "MCP_SERVER_URL"),
            (&[("MCP_SERVER_URL", "https://x/mcp?a=1")], "MCP_SERVER_URL"),
            (&[("LOG_LEVEL", "loud[")], "LOG_LEVEL"),
        ];
        for (pairs, var) in cases {
            let e = ServerSettings::from_merged(&merged(pairs)).unwrap_err();
            assert_eq!(e.variable, *var, "{pairs:?}: {e}");
        }
        let ok = ServerSettings::from_merged(&merged(&[
            ("MCP_AUTH_STRATEGY", "none"),
            ("HOST", "0.0.0.0"),
            ("MCP_ALLOW_INSECURE_NONE", "true"),
        ]));
        assert!(ok.is_ok());
    }

    #[test]
    fn derived_server_urls() {
        let mut s = ServerSettings::from_merged(&merged(&[("HOST", "::1")])).unwrap();
        assert_eq!(s.server_url_for(9).as_str(), "http://[::1]:9/mcp");
        s.host = "0.0.0.0".parse().unwrap();
        assert_eq!(s.server_url_for(9).as_str(), "http://127.0.0.1:9/mcp");
        let s = ServerSettings::from_merged(&merged(&[(
            "MCP_SERVER_URL",
            "https://mcp.example.com/mcp",
        )]))
        .unwrap();
        assert_eq!(s.server_url_for(9).as_str(), "https://mcp.example.com/mcp");
        let ignored: Vec<&str> = ServerSettings::ignored(&merged(&[
            ("MCP_OAUTH_SCOPE", "x"),
            ("COGNITO_DOMAIN", "d"),
        ]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
        assert_eq!(ignored, vec!["MCP_OAUTH_SCOPE", "COGNITO_DOMAIN"]);
    }

    #[test]
    fn rust_log_wins_over_log_level_and_errors_name_the_one_used() {
        let s = ServerSettings::from_merged(&merged(&[
            ("RUST_LOG", "mcp_auth_transport=debug"),
            ("LOG_LEVEL", "warn"),
        ]))
        .unwrap();
        assert_eq!(s.log_level, "mcp_auth_transport=debug");
        let s = ServerSettings::from_merged(&merged(&[("LOG_LEVEL", "warn")])).unwrap();
        assert_eq!(s.log_level, "warn");
        let e = ServerSettings::from_merged(&merged(&[("RUST_LOG", "a=b=c")])).unwrap_err();
        assert_eq!(e.variable, "RUST_LOG");
    }
}

#[cfg(test)]
mod documentation {
    #[test]
    fn every_variable_is_documented_in_env_example() {
        let example = include_str!("../../../.env.example");
        for name in super::KNOWN
            .iter()
            .chain(super::NOT_YET)
            .chain(super::FOR_OTHERS)
        {
            assert!(
                example.contains(name),
                "{name} is missing from .env.example"
            );
        }
    }
}
