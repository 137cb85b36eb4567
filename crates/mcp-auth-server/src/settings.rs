//! Where settings come from, highest first: command-line flags, the process
//! environment, `.env` in the working directory, a TOML file, defaults.
//!
//! Every source uses the same flat names (`PORT`, `MCP_API_KEYS`,
//! `HTTP_MAX_REQUEST_SIZE`, ...); in the TOML file they may be lowercase.

use std::{collections::HashMap, net::IpAddr, path::Path};

use mcp_auth_core::settings::{ConfigError, Lookup, Sources, parse_bool};
use mcp_auth_strategies::settings::{Strategy, strategies_from_settings};
use url::Url;

/// The variables the server itself reads (the libraries read theirs:
/// [`known`] is the union).
pub const OWN: &[&str] = &[
    "PORT",
    "HOST",
    "MCP_TRANSPORT",
    "MCP_SERVER_URL",
    "MCP_SERVER_NAME",
    "MCP_SERVER_VERSION",
    "MCP_ALLOW_INSECURE_NONE",
    "LOG_LEVEL",
    "RUST_LOG",
    // The `token` command.
    "MCP_JWT_PRIVATE_KEY",
    "MCP_JWT_EXPIRES_IN",
];

/// Every variable the server reads: its own and each library's.
pub fn known() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for list in [
        OWN,
        mcp_auth_strategies::VARIABLES,
        mcp_auth_proxy::VARIABLES,
        mcp_auth_cognito::VARIABLES,
        mcp_auth_jwt::VARIABLES,
        mcp_auth_transport::VARIABLES,
        mcp_auth_session::VARIABLES,
    ] {
        for name in list {
            if !all.contains(name) {
                all.push(name);
            }
        }
    }
    all
}

/// Variables other programs of this project read that the server does not
/// (none today: the Cognito preset of the login facade reads what
/// `mcp-auth-cognito setup` writes into `.env`). Setting one is reported, so
/// nobody believes it has an effect on the server.
pub const FOR_OTHERS: &[&str] = &[];

/// Seed variables that do not apply to this server. Setting one is
/// reported, so nobody believes they have an effect. (The seed's
/// server-side OAuth client settings now drive the login facade.)
pub const NOT_YET: &[&str] = &[];

/// The merged settings.
pub type Merged = HashMap<String, String>;

/// Merges the sources (see the module docs). `flags` are the command-line
/// values, already named by variable (`PORT`, `HOST`, `MCP_TRANSPORT`).
pub fn merge(
    config_file: Option<&Path>,
    dotenv: Option<&Path>,
    env: &dyn Lookup,
    flags: &[(&'static str, Option<String>)],
) -> Result<Merged, ConfigError> {
    let mut names = known();
    names.extend(NOT_YET.iter().chain(FOR_OTHERS));
    // A value that is not UTF-8 reads as unset: refused instead, without
    // repeating it (an attack pass: a required scope so set was dropped,
    // and every token let in; a binary secret was "missing").
    // (A blank flag is no value: the environment's is read.)
    let flagged = |n: &str| {
        flags
            .iter()
            .any(|(f, v)| *f == n && v.as_deref().is_some_and(|v| !v.trim().is_empty()))
    };
    if let Some(name) = names
        .iter()
        .find(|n| !flagged(n) && matches!(std::env::var(n), Err(std::env::VarError::NotUnicode(_))))
    {
        return Err(ConfigError::new(
            *name,
            "is set in the environment to a value that is not UTF-8 text",
        ));
    }
    let mut sources = Sources::new(&names)
        .toml_file(config_file, "--config")
        .env(env);
    if let Some(path) = dotenv {
        sources = sources.dotenv_file(path);
    }
    for (name, value) in flags {
        sources = sources.flag(name, value.clone());
    }
    sources.merge()
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

/// The server's own settings (the HTTP stack reads its `HTTP_*` itself).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub transport: Transport,
    pub host: IpAddr,
    pub port: u16,
    pub server_url: Option<Url>,
    /// The strategies `MCP_AUTH_STRATEGY` chose; `None` when nothing is
    /// configured (the server then generates a key for this run).
    pub strategies: Option<Vec<Strategy>>,
    pub name: String,
    pub version: String,
    pub log_level: String,
}

impl ServerSettings {
    /// Where the server listens and is reached: `HOST`, `PORT`,
    /// `MCP_SERVER_URL` (checked), and nothing else.
    fn address(m: &Merged) -> Result<(IpAddr, u16, Option<Url>), ConfigError> {
        let host_text = Lookup::get(m, "HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let host: IpAddr = mcp_auth_core::settings::bind_host(&host_text).ok_or_else(|| {
            ConfigError::new(
                "HOST",
                format!(
                    "expected an IP address to bind (e.g. 127.0.0.1 or 0.0.0.0), got {host_text:?}"
                ),
            )
        })?;
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
        Ok((host, port, server_url))
    }

    /// The URL a `token` names as its audience by default: `MCP_SERVER_URL`,
    /// else the one the server would derive; `None` with `PORT=0` (the port
    /// is not known before the server binds). Reads only the address
    /// settings: the command needs no other to be valid (an attack pass:
    /// an unrelated setting the server would refuse stopped it).
    pub fn token_audience(m: &Merged) -> Result<Option<Url>, ConfigError> {
        let (host, port, server_url) = Self::address(m)?;
        if let Some(u) = server_url {
            return Ok(Some(u));
        }
        Ok((port != 0).then(|| derived_url(host, port)))
    }

    /// Validates the merged settings.
    pub fn from_merged(m: &Merged) -> Result<Self, ConfigError> {
        // Trimmed, as every setting (an attack pass: "stdio " in .env was
        // refused).
        let transport = match Lookup::get(m, "MCP_TRANSPORT")
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
        let (host, port, server_url) = Self::address(m)?;
        let strategies = strategies_from_settings(m)?;
        // Reachable from elsewhere: bound to another address, or published
        // under a public URL (a reverse proxy on this machine in front).
        // (Over stdio nothing is served on the network.)
        let public_url = server_url
            .as_ref()
            .filter(|u| transport != Transport::Stdio && !url_is_loopback(u))
            .map(mcp_auth_jwt::fetch::redact);
        // Or reached through a proxy on this machine that names no public
        // URL (`none` has no metadata to publish one in): the settings
        // only such a deployment needs.
        let proxied = match transport {
            Transport::Stdio => None,
            _ => proxy_signs(m)?,
        };
        let bound_elsewhere = transport != Transport::Stdio && !host.is_loopback();
        // Or opened to every web page: a page in the user's browser calls
        // the tools of a server on loopback (an attack pass: `*` or `null`
        // in the origins let any site open a session).
        let any_page = match transport {
            Transport::Stdio => None,
            _ => open_to_any_page(m),
        };
        let is_none = strategies.as_deref() == Some(&[Strategy::None]);
        if is_none
            && !bound_elsewhere
            && public_url.is_none()
            && proxied.is_none()
            && let Some(page) = any_page
            && !parse_bool(m, "MCP_ALLOW_INSECURE_NONE", false)?
        {
            return Err(ConfigError::new(
                "MCP_AUTH_STRATEGY",
                format!(
                    "none with {page} would let any web page the user opens call the tools; name the origins that may, choose a strategy, or set MCP_ALLOW_INSECURE_NONE=true"
                ),
            ));
        }
        if is_none
            && (bound_elsewhere || public_url.is_some() || proxied.is_some())
            && !parse_bool(m, "MCP_ALLOW_INSECURE_NONE", false)?
        {
            let place = match (&public_url, proxied) {
                (Some(u), _) if host.is_loopback() => format!("published as {u}"),
                (None, Some(sign)) if host.is_loopback() => {
                    format!("reached through a proxy ({sign})")
                }
                _ => format!("on the non-loopback address {host}"),
            };
            return Err(ConfigError::new(
                "MCP_AUTH_STRATEGY",
                format!(
                    "none {place} would let anyone in; serve on 127.0.0.1 only, choose a strategy, or set MCP_ALLOW_INSECURE_NONE=true"
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
        // Over stdio there is no HTTP: nothing is authenticated, audited,
        // counted or limited, and only the server's own settings are read.
        // The tools' scopes are checked but bind no one: the caller is the
        // local user who started the process (an attack pass: a scoped
        // admin_status ran over stdio without a word).
        if Lookup::get(m, "MCP_TRANSPORT").is_some_and(|t| t.eq_ignore_ascii_case("stdio")) {
            return known()
                .into_iter()
                .filter(|n| {
                    Lookup::get(m, n).is_some()
                        && !OWN.contains(n)
                        // OpenTelemetry's own (`OTEL_…`) set up the traces.
                        && n.split('_').next() != Some("OTEL")
                })
                .map(|n| {
                    (
                        n,
                        if n == "MCP_TOOL_SCOPES" {
                            "checked, but binds no one over stdio (the caller is the local user who started the server, and may call every tool)"
                        } else {
                            "read only over HTTP (stdio has no authentication, audit log, metrics, sessions or limits)"
                        },
                    )
                })
                .collect();
        }
        // `mcp-auth-cognito setup` writes the last two into `.env` for the
        // Cognito preset (and the example client).
        const FACADE: &[&str] = &[
            "MCP_OAUTH_AUTH_URL",
            "MCP_OAUTH_TOKEN_URL",
            "MCP_OAUTH_CALLBACK_URL",
            "MCP_OAUTH_SCOPE",
            "MCP_OAUTH_USERINFO_URL",
            "COGNITO_DOMAIN",
            "COGNITO_APP_CLIENT_SECRET",
        ];
        // Read only by the `oauth2` strategy's verifier.
        const OAUTH2_ONLY: &[&str] = &["MCP_OAUTH_REQUIRE_AT_JWT"];
        // The login facade's client at the provider, or introspection's
        // credentials: both `oauth2`'s.
        const OAUTH2_CLIENT: &[&str] = &["MCP_OAUTH_CLIENT_ID", "MCP_OAUTH_CLIENT_SECRET"];
        // Read by the verifiers that fetch an issuer's keys.
        const KEYS_FETCHED: &[&str] = &["MCP_OAUTH_JWKS_MAX_STALE"];
        // Read by the `cognito` strategy's verifier only (the facade's
        // Cognito preset reads the pool's region, id and app client).
        const COGNITO_ONLY: &[&str] = &[
            "COGNITO_TOKEN_USE",
            "COGNITO_RESOURCE_INDICATORS",
            "COGNITO_REQUIRED_SCOPES",
        ];
        let named = |names: &'static [&'static str], why: &'static str| {
            names
                .iter()
                .filter(|n| Lookup::get(m, n).is_some())
                .map(move |n| (*n, why))
        };
        // As the server reads them (any case, aliases, a chain); settings
        // that do not parse are reported when the server is built.
        let strategies = strategies_from_settings(m)
            .ok()
            .flatten()
            .unwrap_or_default();
        let strategy = |s: Strategy| strategies.contains(&s);
        let oauth2 = strategy(Strategy::OAuth2);
        // With the facade, oauth2 tokens are the facade's own: the
        // resource-server verifier those settings shape is not built.
        let facade_runs = oauth2 && mcp_auth_proxy::settings::facade_requested(m);
        let (facade, oauth2_only) = match (oauth2, facade_runs) {
            (true, false) => (&[][..], &[][..]),
            (true, true) => (&[][..], OAUTH2_ONLY),
            (false, _) => (FACADE, OAUTH2_ONLY),
        };
        let oauth2_only_why = match facade_runs {
            true => {
                "the login facade issues the oauth2 tokens itself: this shapes only the verifier of an issuer's tokens, which it replaces"
            }
            false => "read only with MCP_AUTH_STRATEGY=oauth2",
        };
        let keys_fetched = match oauth2 || strategy(Strategy::Cognito) {
            true => &[][..],
            false => KEYS_FETCHED,
        };
        // Settings whose effect another setting turns off or on: each with
        // what it waits for.
        let switched_on =
            |name: &str, default: bool| parse_bool(m, name, default).unwrap_or(default);
        // A value that is the default changes nothing whatever else is
        // set: not reported (`.env.example` lists them so).
        let mut conditional: Vec<(&'static str, &'static str)> = Vec::new();
        let mut unless = |cond: bool, names: &[&'static str], why: &'static str| {
            if !cond {
                conditional.extend(
                    names
                        .iter()
                        .filter(|n| {
                            Lookup::get(m, n).is_some_and(|v| {
                                !DEFAULTS
                                    .iter()
                                    .any(|(d, dv)| d == *n && v.eq_ignore_ascii_case(dv))
                            })
                        })
                        .map(|n| (*n, why)),
                );
            }
        };
        unless(
            strategy(Strategy::ApiKey) || strategies.is_empty(),
            &["MCP_API_KEYS"],
            "read only with the api_key strategy (MCP_AUTH_STRATEGY names another: these keys protect nothing)",
        );
        unless(
            strategy(Strategy::Bearer),
            &[
                "MCP_JWT_SECRET",
                "MCP_JWT_PUBLIC_KEY",
                "MCP_JWT_ALGORITHM",
                "MCP_JWT_ISSUER",
                "MCP_JWT_AUDIENCE",
            ],
            "read only with MCP_AUTH_STRATEGY=bearer (and by the token command)",
        );
        // The verifiers' shared rules and the issuers' (an attack pass:
        // under api_key, none of these was reported).
        unless(
            strategy(Strategy::Bearer) || oauth2 || strategy(Strategy::Cognito),
            &["MCP_JWT_LEEWAY", "MCP_JWT_MAX_LIFETIME"],
            "read only with MCP_AUTH_STRATEGY=bearer, oauth2 or cognito",
        );
        unless(
            oauth2,
            &[
                "MCP_OAUTH_ISSUER",
                "MCP_OAUTH_JWKS_URL",
                "MCP_OAUTH_AUDIENCE",
                "MCP_OAUTH_INTROSPECTION_URL",
            ],
            "read only with MCP_AUTH_STRATEGY=oauth2",
        );
        unless(
            oauth2 || strategy(Strategy::Cognito),
            &["MCP_OAUTH_ALLOW_HTTP"],
            "read only with MCP_AUTH_STRATEGY=oauth2 or cognito",
        );
        unless(
            strategy(Strategy::Cognito) || facade_runs,
            &[
                "COGNITO_REGION",
                "COGNITO_USER_POOL_ID",
                "COGNITO_APP_CLIENT_ID",
                "COGNITO_JWKS_URL",
            ],
            "read only with MCP_AUTH_STRATEGY=cognito, or by the login facade's Cognito preset",
        );
        unless(
            switched_on("HTTP_DNS_REBINDING_PROTECTION", true),
            &["HTTP_ALLOWED_HOSTS"],
            "read only with Host checking on (HTTP_DNS_REBINDING_PROTECTION is false)",
        );
        unless(
            Lookup::get(m, "HTTP_TRUSTED_PROXIES").is_some(),
            &["HTTP_FORWARDED_HEADER"],
            "read only with HTTP_TRUSTED_PROXIES (no proxy's header is believed without it)",
        );
        unless(
            switched_on("MCP_SESSION_AUTH_ENABLED", true),
            &[
                "MCP_SESSION_AUTH_REQUIRE_FOR_SESSION",
                "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS",
            ],
            "read only with MCP_SESSION_AUTH_ENABLED=true",
        );
        unless(
            strategy(Strategy::None),
            &["MCP_ALLOW_INSECURE_NONE"],
            "read only with MCP_AUTH_STRATEGY=none",
        );
        let dpop_on = Lookup::get(m, "MCP_DPOP").is_some_and(|v| !v.eq_ignore_ascii_case("off"));
        unless(
            dpop_on,
            &["MCP_DPOP_ALGORITHMS"],
            "read only with MCP_DPOP=accept or require",
        );
        // The login facade's token endpoint hands out nonces too.
        unless(
            dpop_on || facade_runs,
            &["MCP_DPOP_NONCE"],
            "read only with MCP_DPOP=accept or require, or by the login facade",
        );
        unless(
            strategy(Strategy::Cognito),
            COGNITO_ONLY,
            "read only with MCP_AUTH_STRATEGY=cognito",
        );
        // (The window is also the failed-login limiter's, always on.)
        unless(
            switched_on("HTTP_RATE_LIMIT_ENABLED", false),
            &["HTTP_RATE_LIMIT_MAX_REQUESTS"],
            "read only with HTTP_RATE_LIMIT_ENABLED=true",
        );
        unless(
            switched_on("HTTP_ENABLE_CORS", true),
            &[
                "HTTP_CORS_CREDENTIALS",
                "HTTP_CORS_METHODS",
                "HTTP_CORS_HEADERS",
            ],
            "read only with CORS on (HTTP_ENABLE_CORS is false)",
        );
        unless(
            Lookup::get(m, "HTTP_ALLOWED_ORIGINS").is_none(),
            &["HTTP_CORS_ORIGINS"],
            "HTTP_ALLOWED_ORIGINS is set, and replaces it",
        );
        unless(
            Lookup::get(m, "MCP_SESSION_STORE").is_some_and(|v| !v.eq_ignore_ascii_case("memory")),
            &["MCP_SESSION_CACHE_MS"],
            "read only with a Redis session store (MCP_SESSION_STORE)",
        );
        // The facade's own (its upstream login and its `MCP_PROXY_*`), of
        // the variables it reads.
        let facade_own: Vec<&'static str> = mcp_auth_proxy::settings::VARIABLES
            .iter()
            .copied()
            .filter(|n| {
                n.split('_').nth(1) == Some("PROXY")
                    || matches!(
                        *n,
                        "MCP_OAUTH_TOKEN_URL"
                            | "MCP_OAUTH_USERINFO_URL"
                            | "MCP_OAUTH_SCOPE"
                            | "MCP_OAUTH_PROVIDER_NAME"
                    )
            })
            .collect();
        unless(
            facade_runs,
            &facade_own,
            "read only by the login facade, which runs with MCP_AUTH_STRATEGY=oauth2 when MCP_OAUTH_AUTH_URL, MCP_OAUTH_CALLBACK_URL or COGNITO_DOMAIN is set",
        );
        named(NOT_YET, "not supported by this server")
            .chain(named(
                facade,
                "the login facade runs only with MCP_AUTH_STRATEGY=oauth2",
            ))
            .chain(named(oauth2_only, oauth2_only_why))
            .chain(named(
                if oauth2 { &[][..] } else { OAUTH2_CLIENT },
                "read only with MCP_AUTH_STRATEGY=oauth2 (the login facade's client at the provider, or introspection's credentials)",
            ))
            .chain(named(
                keys_fetched,
                "read only with MCP_AUTH_STRATEGY=oauth2 or cognito",
            ))
            .chain(named(
                FOR_OTHERS,
                "read by other programs, not by the server",
            ))
            .chain(conditional)
            // Each once, with the first reason found.
            .fold(Vec::new(), |mut out, (n, why)| {
                if !out.iter().any(|(seen, _)| *seen == n) {
                    out.push((n, why));
                }
                out
            })
    }

    /// `MCP_SERVER_URL`, or one derived from the bound address.
    pub fn server_url_for(&self, bound_port: u16) -> Url {
        match &self.server_url {
            Some(u) => u.clone(),
            None => derived_url(self.host, bound_port),
        }
    }
}

/// The server's URL when `MCP_SERVER_URL` is unset: `http://<host>:<port>/mcp`
/// (this machine's loopback address for an unspecified host).
fn derived_url(host: IpAddr, port: u16) -> Url {
    // Built from an IP and a port: always a valid URL.
    Url::parse(&mcp_auth_core::settings::local_server_url(host, port))
        .unwrap_or_else(|_| Url::parse("http://127.0.0.1/mcp").expect("static URL parses"))
}

/// Settings whose effect another setting turns off, with their defaults as
/// `.env.example` lists them: a default value is not reported as without
/// effect (checked against `.env.example` by a test).
const DEFAULTS: &[(&str, &str)] = &[
    ("MCP_JWT_ISSUER", "mcp-auth-server"),
    ("MCP_ALLOW_INSECURE_NONE", "false"),
    ("MCP_DPOP_NONCE", "false"),
    ("MCP_DPOP_ALGORITHMS", "ES256,EdDSA,RS256,PS256"),
    ("HTTP_RATE_LIMIT_MAX_REQUESTS", "1000"),
    ("HTTP_CORS_CREDENTIALS", "false"),
    ("HTTP_CORS_METHODS", "GET,POST,DELETE,OPTIONS"),
    (
        "HTTP_CORS_HEADERS",
        "Content-Type,Authorization,X-API-Key,Mcp-Session-Id,MCP-Protocol-Version,Mcp-Method,Mcp-Name,Last-Event-ID,DPoP",
    ),
    ("MCP_SESSION_CACHE_MS", "1000"),
    ("COGNITO_TOKEN_USE", "access"),
    ("COGNITO_RESOURCE_INDICATORS", "false"),
    ("MCP_PROXY_ACCESS_TOKEN_TTL", "10m"),
    ("MCP_PROXY_METADATA_ALLOW_LOOPBACK", "false"),
    ("MCP_PROXY_AUTHORIZATIONS_PER_MINUTE", "60"),
    ("MCP_PROXY_REGISTRATIONS_PER_HOUR", "20"),
    ("MCP_PROXY_LOGINS_PER_LIFETIME", "10000"),
    ("MCP_JWT_LEEWAY", "60"),
    ("MCP_OAUTH_ALLOW_HTTP", "false"),
    ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "true"),
    ("MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", "true"),
    ("HTTP_FORWARDED_HEADER", "auto"),
];

/// The setting that says a server on loopback is reached through a proxy
/// from elsewhere, if one does: allowed hosts other than this machine's
/// names, trusted proxies, or Host checks turned off.
fn proxy_signs(m: &dyn Lookup) -> Result<Option<&'static str>, ConfigError> {
    // Read as the guard reads it (a list it refuses is named when the
    // HTTP settings are read).
    let hosts = mcp_auth_core::settings::parse_list(m, "HTTP_ALLOWED_HOSTS").unwrap_or_default();
    let foreign_host = hosts.iter().any(|h| h == "*")
        || mcp_auth_transport::HostRule::parse_list(&hosts).is_ok_and(|rule| {
            rule.hosts()
                .any(|h| !Url::parse(&format!("http://{h}")).is_ok_and(|u| url_is_loopback(&u)))
        });
    Ok(if foreign_host {
        Some("HTTP_ALLOWED_HOSTS names hosts other than this machine's")
    } else if Lookup::get(m, "HTTP_TRUSTED_PROXIES").is_some() {
        Some("HTTP_TRUSTED_PROXIES is set")
    } else if !parse_bool(m, "HTTP_DNS_REBINDING_PROTECTION", true)? {
        Some("HTTP_DNS_REBINDING_PROTECTION=false")
    } else {
        None
    })
}

/// The origins setting that lets every web page in (`*`, or `null`: sent
/// by sandboxed frames and `file:` pages, which any site can make), if any.
fn open_to_any_page(m: &dyn Lookup) -> Option<String> {
    // The list the server reads: the first of the two that is set (a
    // review: `*` in a HTTP_CORS_ORIGINS that HTTP_ALLOWED_ORIGINS replaces
    // was refused).
    let (var, list) = ["HTTP_ALLOWED_ORIGINS", "HTTP_CORS_ORIGINS"]
        .into_iter()
        .find_map(|var| mcp_auth_core::settings::parse_list(m, var).map(|l| (var, l)))?;
    list.iter()
        .find(|o| *o == "*" || o.eq_ignore_ascii_case("null"))
        .map(|o| format!("{o} in {var}"))
}

/// Whether `url`'s host is this machine (`localhost`, a loopback address).
pub fn url_is_loopback(url: &Url) -> bool {
    match url.host() {
        // `localhost`, `localhost.` and names under it (RFC 6761 6.3).
        Some(url::Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

fn parse_server_url(u: &str) -> Result<Url, ConfigError> {
    // The value is never repeated whole: a URL with credentials in it
    // would put them in the server's log (shown without them, or not at
    // all when it does not parse).
    let url = Url::parse(u)
        .map_err(|e| ConfigError::new("MCP_SERVER_URL", format!("the value is not a URL: {e}")))?;
    mcp_auth_transport::check_server_url(&url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(pairs: &[(&str, &str)]) -> Merged {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    /// A server URL that is refused is never shown with what it carries
    /// besides the place (a password, a query with a key).
    #[test]
    fn a_refused_server_url_is_not_repeated_with_its_credentials() {
        for bad in [
            "https://admin:s3cret@mcp.example/mcp",
            "https://mcp.example/mcp?key=s3cret",
            "https://mcp.example/mcp#s3cret",
            "ftp://admin:s3cret@mcp.example/mcp",
            "https://admin:s3cret@[::1/mcp",
        ] {
            let e = parse_server_url(bad).unwrap_err();
            assert_eq!(e.variable, "MCP_SERVER_URL");
            assert!(!e.to_string().contains("s3cret"), "{bad}: {e}");
        }
    }

    /// The transport is read trimmed, like every setting (an attack pass:
    /// `MCP_TRANSPORT="stdio "` in `.env` was refused).
    #[test]
    fn the_transport_is_read_trimmed() {
        let s = ServerSettings::from_merged(&merged(&[("MCP_TRANSPORT", " stdio ")])).unwrap();
        assert!(matches!(s.transport, Transport::Stdio));
    }

    /// Over stdio, the HTTP stack's settings (authentication, audit log,
    /// metrics, sessions) and the tools' scopes (the local user may call
    /// every tool) are reported as without effect; the server's own are not.
    #[test]
    fn http_settings_have_no_effect_over_stdio() {
        let names = ignored_names(&[
            ("MCP_TRANSPORT", " STDIO "),
            ("MCP_AUTH_STRATEGY", "api_key"),
            ("MCP_API_KEYS", "k"),
            ("MCP_AUDIT_LOG", "stdout"),
            ("MCP_METRICS_ADDR", "127.0.0.1:9100"),
            ("MCP_TOOL_SCOPES", "admin_status=admin"),
            ("MCP_SERVER_NAME", "x"),
            ("LOG_LEVEL", "debug"),
        ]);
        let mut names = names;
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "MCP_API_KEYS",
                "MCP_AUDIT_LOG",
                "MCP_AUTH_STRATEGY",
                "MCP_METRICS_ADDR",
                "MCP_TOOL_SCOPES"
            ]
        );
        assert!(ignored_names(&[("MCP_AUDIT_LOG", "stdout")]).is_empty());
    }

    /// Settings another one turns off are reported as without effect, with
    /// what they wait for (an attack pass: each was taken without a word).
    #[test]
    fn settings_turned_off_by_another_are_named() {
        let with = |pairs: &[(&str, &str)]| ignored_names(pairs);
        assert_eq!(
            with(&[
                ("MCP_AUTH_STRATEGY", "none"),
                ("MCP_API_KEYS", "k-0123456789abcdef0123")
            ]),
            ["MCP_API_KEYS"]
        );
        assert_eq!(
            with(&[
                ("MCP_AUTH_STRATEGY", "oauth2"),
                ("MCP_JWT_SECRET", "s"),
                ("MCP_DPOP_NONCE", "true"),
                ("HTTP_RATE_LIMIT_MAX_REQUESTS", "5"),
                ("HTTP_ENABLE_CORS", "false"),
                ("HTTP_CORS_CREDENTIALS", "true"),
                ("HTTP_ALLOWED_ORIGINS", "https://a.example"),
                ("HTTP_CORS_ORIGINS", "https://b.example"),
                ("MCP_SESSION_CACHE_MS", "100"),
                ("MCP_ALLOW_INSECURE_NONE", "true"),
            ]),
            [
                "MCP_JWT_SECRET",
                "MCP_ALLOW_INSECURE_NONE",
                "MCP_DPOP_NONCE",
                "HTTP_RATE_LIMIT_MAX_REQUESTS",
                "HTTP_CORS_CREDENTIALS",
                "HTTP_CORS_ORIGINS",
                "MCP_SESSION_CACHE_MS",
            ]
        );
        // Their defaults change nothing: not reported.
        assert!(
            with(&[
                ("MCP_AUTH_STRATEGY", "oauth2"),
                ("MCP_DPOP_NONCE", "false"),
                ("HTTP_RATE_LIMIT_WINDOW", "60000"),
                ("HTTP_RATE_LIMIT_MAX_REQUESTS", "1000"),
                ("MCP_SESSION_CACHE_MS", "1000"),
            ])
            .is_empty()
        );
        // Each with what turns it on: nothing said.
        assert!(
            with(&[
                ("MCP_AUTH_STRATEGY", "bearer"),
                ("MCP_JWT_SECRET", "s"),
                ("MCP_DPOP", "require"),
                ("MCP_DPOP_NONCE", "true"),
                ("HTTP_RATE_LIMIT_ENABLED", "true"),
                ("HTTP_RATE_LIMIT_MAX_REQUESTS", "5"),
                ("HTTP_CORS_CREDENTIALS", "true"),
                ("HTTP_CORS_ORIGINS", "https://b.example"),
                ("MCP_SESSION_STORE", "redis://127.0.0.1:6379/0"),
                ("MCP_SESSION_CACHE_MS", "100"),
            ])
            .is_empty()
        );
    }

    /// Each strategy's settings, and settings another one turns off, are
    /// reported under a setup that does not read them (an attack pass:
    /// under api_key not one was).
    #[test]
    fn settings_of_strategies_not_chosen_are_named() {
        let set = [
            ("MCP_PROXY_SIGNING_KEY", "x"),
            ("MCP_OAUTH_ISSUER", "https://as.example.com"),
            ("MCP_OAUTH_JWKS_URL", "https://as.example.com/jwks"),
            ("MCP_OAUTH_ALLOW_HTTP", "true"),
            ("COGNITO_REGION", "eu-west-1"),
            ("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"),
            ("MCP_JWT_AUDIENCE", "https://mcp.example.com/mcp"),
            ("MCP_JWT_LEEWAY", "5"),
            ("MCP_JWT_MAX_LIFETIME", "1h"),
            ("HTTP_DNS_REBINDING_PROTECTION", "false"),
            ("HTTP_ALLOWED_HOSTS", "mcp.example.com"),
            ("HTTP_FORWARDED_HEADER", "forwarded"),
            ("MCP_SESSION_AUTH_ENABLED", "false"),
            ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
            ("MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", "false"),
        ];
        let mut pairs = vec![("MCP_API_KEYS", "k-0123456789abcdef0123")];
        pairs.extend(set);
        let mut named = ignored_names(&pairs);
        named.sort_unstable();
        let mut want: Vec<&str> = set
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| {
                !matches!(
                    *n,
                    "HTTP_DNS_REBINDING_PROTECTION" | "MCP_SESSION_AUTH_ENABLED"
                )
            })
            .collect();
        want.sort_unstable();
        assert_eq!(named, want);
        // Under the strategies that read them: none of the verifiers'.
        let named = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "oauth2"),
            ("MCP_OAUTH_ISSUER", "https://as.example.com"),
            ("MCP_OAUTH_ALLOW_HTTP", "true"),
            ("MCP_JWT_LEEWAY", "5"),
        ]);
        assert!(named.is_empty(), "{named:?}");
    }

    /// Cognito's verifier settings under another strategy are reported as
    /// without effect (its groups are refused when the authenticator is
    /// built: `mcp_auth_strategies::settings::check_restrictions`).
    #[test]
    fn cognito_verifier_settings_need_the_cognito_strategy() {
        assert_eq!(
            ignored_names(&[
                ("MCP_AUTH_STRATEGY", "oauth2"),
                ("COGNITO_TOKEN_USE", "id"),
                ("COGNITO_RESOURCE_INDICATORS", "true"),
                ("COGNITO_REQUIRED_SCOPES", "x/tools"),
            ]),
            [
                "COGNITO_TOKEN_USE",
                "COGNITO_RESOURCE_INDICATORS",
                "COGNITO_REQUIRED_SCOPES"
            ]
        );
    }

    /// `.env.example` as it is, with the strategies the README walks
    /// through, gives no warning (a review: it gave nine at every start,
    /// for the defaults it lists), and the defaults known here are its.
    #[test]
    fn the_example_env_file_warns_of_nothing() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.env.example"));
        let example = Sources::new(&known()).dotenv_file(path).merge().unwrap();
        for (name, value) in DEFAULTS {
            assert_eq!(
                example.get(*name).map(String::as_str),
                Some(*value),
                "{name}"
            );
        }
        for extra in [
            &[][..],
            &[
                ("MCP_AUTH_STRATEGY", "oauth2"),
                ("MCP_OAUTH_ISSUER", "https://idp.example.com"),
            ],
            &[
                ("MCP_AUTH_STRATEGY", "bearer"),
                ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ],
        ] {
            let mut m = example.clone();
            m.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            let ignored = ServerSettings::ignored(&m);
            assert!(ignored.is_empty(), "{extra:?}: {ignored:?}");
        }
    }

    /// The names of the settings reported as without effect.
    fn ignored_names(pairs: &[(&str, &str)]) -> Vec<&'static str> {
        ServerSettings::ignored(&merged(pairs))
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn the_server_layers_its_sources_with_every_known_name() {
        // The layering itself is tested in mcp_auth_core::settings; here:
        // the server's names, the seeds' names it reports, and the flags.
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("c.toml");
        std::fs::write(
            &toml,
            "port = 1000\nhttp_allowed_hosts = [\"a\", \"b\"]\nmcp_oauth_scope = \"x\"\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "COGNITO_REGION=eu-west-1\nCOGNITO_DOMAIN=d\nUNRELATED=1\n",
        )
        .unwrap();
        let env = merged(&[("PORT", "3000"), ("HTTP_SESSION_TIMEOUT", "5000")]);
        let m = merge(
            Some(&toml),
            Some(&dotenv),
            &env,
            &[("PORT", Some("4000".into())), ("HOST", None)],
        )
        .unwrap();
        assert_eq!(m["PORT"], "4000");
        assert_eq!(m["HTTP_ALLOWED_HOSTS"], "a,b");
        assert_eq!(m["MCP_OAUTH_SCOPE"], "x");
        assert_eq!(m["COGNITO_REGION"], "eu-west-1");
        assert_eq!(m["COGNITO_DOMAIN"], "d");
        assert_eq!(m["HTTP_SESSION_TIMEOUT"], "5000");
        assert!(!m.contains_key("UNRELATED") && !m.contains_key("HOST"));
        std::fs::write(&toml, "prot = 1\n").unwrap();
        let e = merge(Some(&toml), None, &Merged::new(), &[]).unwrap_err();
        assert_eq!(e.variable, "--config");
    }

    /// `none` is refused where anyone could reach it: bound to a public
    /// address, or published under a public URL (a proxy in front), unless
    /// allowed on purpose.
    #[test]
    fn none_is_refused_where_others_reach_it() {
        let none = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("MCP_AUTH_STRATEGY", "none")];
            pairs.extend_from_slice(extra);
            ServerSettings::from_merged(&merged(&pairs))
        };
        assert!(none(&[]).is_ok());
        for local in [
            "http://localhost:8001/mcp",
            "http://localhost.:8001/mcp",
            "http://mcp.localhost:8001/mcp",
            "http://127.0.0.1:8001/mcp",
            "http://[::1]:8001/mcp",
            "http://[::ffff:127.0.0.1]:8001/mcp",
        ] {
            assert!(none(&[("MCP_SERVER_URL", local)]).is_ok(), "{local}");
        }
        // Over stdio nothing is served on the network.
        assert!(
            none(&[
                ("MCP_SERVER_URL", "https://mcp.example.com/mcp"),
                ("MCP_TRANSPORT", "stdio"),
            ])
            .is_ok()
        );
        let e = none(&[("MCP_SERVER_URL", "https://mcp.example.com/mcp")]).unwrap_err();
        assert_eq!(e.variable, "MCP_AUTH_STRATEGY");
        assert!(
            e.message
                .contains("published as https://mcp.example.com/mcp"),
            "{e}"
        );
        assert!(none(&[("HOST", "0.0.0.0")]).is_err());
        // Every web page let in by the origins (an attack pass).
        for (var, value) in [
            ("HTTP_ALLOWED_ORIGINS", "*"),
            ("HTTP_ALLOWED_ORIGINS", "http://localhost:3000, null"),
            ("HTTP_CORS_ORIGINS", "*"),
            ("HTTP_CORS_ORIGINS", "NULL"),
        ] {
            let e = none(&[(var, value)]).unwrap_err();
            assert_eq!(e.variable, "MCP_AUTH_STRATEGY");
            assert!(e.message.contains(&format!("in {var}")), "{e}");
            assert!(none(&[(var, value), ("MCP_ALLOW_INSECURE_NONE", "true")]).is_ok());
            assert!(none(&[(var, value), ("MCP_TRANSPORT", "stdio")]).is_ok());
        }
        assert!(none(&[("HTTP_ALLOWED_ORIGINS", "http://localhost:3000")]).is_ok());
        // Replaced by HTTP_ALLOWED_ORIGINS, HTTP_CORS_ORIGINS opens nothing.
        assert!(
            none(&[
                ("HTTP_ALLOWED_ORIGINS", "http://localhost:3000"),
                ("HTTP_CORS_ORIGINS", "*")
            ])
            .is_ok()
        );
        assert!(none(&[("HOST", "0.0.0.0"), ("MCP_TRANSPORT", "stdio")]).is_ok());
        assert!(
            none(&[
                ("MCP_SERVER_URL", "https://mcp.example.com/mcp"),
                ("MCP_ALLOW_INSECURE_NONE", "true"),
            ])
            .is_ok()
        );
        // On loopback behind a proxy on this machine, no URL named: the
        // settings such a deployment needs say so.
        for proxied in [
            ("HTTP_ALLOWED_HOSTS", "mcp.example.com"),
            ("HTTP_ALLOWED_HOSTS", "localhost,*"),
            ("HTTP_ALLOWED_HOSTS", "10.0.0.5:8001"),
            ("HTTP_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("HTTP_DNS_REBINDING_PROTECTION", "false"),
        ] {
            let e = none(&[proxied]).unwrap_err();
            assert!(
                e.message.contains("reached through a proxy"),
                "{proxied:?}: {e}"
            );
            assert!(none(&[proxied, ("MCP_ALLOW_INSECURE_NONE", "true")]).is_ok());
            assert!(none(&[proxied, ("MCP_TRANSPORT", "stdio")]).is_ok());
        }
        for local in [
            "localhost",
            "127.0.0.1:8001",
            "[::1]:8001",
            "localhost:8001,[::1]",
        ] {
            assert!(none(&[("HTTP_ALLOWED_HOSTS", local)]).is_ok(), "{local}");
        }
    }

    #[test]
    fn strategy_selection() {
        let s = ServerSettings::from_merged(&merged(&[])).unwrap();
        assert_eq!(s.strategies, None);
        assert_eq!(s.port, 8001);
        let s =
            ServerSettings::from_merged(&merged(&[("MCP_API_KEYS", "0123456789abcdef0")])).unwrap();
        assert_eq!(s.strategies, Some(vec![Strategy::ApiKey]));
        let s = ServerSettings::from_merged(&merged(&[("MCP_AUTH_STRATEGY", "none")])).unwrap();
        assert_eq!(s.strategies, Some(vec![Strategy::None]));
        let s = ServerSettings::from_merged(&merged(&[
            ("MCP_AUTH_STRATEGY", "api_key, oauth2,API_KEY"),
            ("MCP_API_KEYS", "0123456789abcdef0"),
        ]))
        .unwrap();
        assert_eq!(s.strategies, Some(vec![Strategy::ApiKey, Strategy::OAuth2]));
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
        let ignored = ignored_names(&[
            ("MCP_OAUTH_SCOPE", "x"),
            ("COGNITO_DOMAIN", "d"),
            ("MCP_OAUTH_JWKS_MAX_STALE", "1d"),
        ]);
        assert_eq!(
            ignored,
            vec![
                "MCP_OAUTH_SCOPE",
                "COGNITO_DOMAIN",
                "MCP_OAUTH_JWKS_MAX_STALE"
            ]
        );
        // With oauth2 the seed's login variables drive the facade, once it
        // is asked for: without its login URL they do nothing (an attack
        // pass: a half-configured facade ran as a resource server without
        // a word).
        let ignored = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "oauth2"),
            ("MCP_OAUTH_SCOPE", "x"),
            ("MCP_PROXY_ACCESS_TOKEN_TTL", "1h"),
            ("MCP_OAUTH_REQUIRE_AT_JWT", "true"),
            ("MCP_OAUTH_JWKS_MAX_STALE", "1d"),
        ]);
        assert_eq!(ignored, ["MCP_OAUTH_SCOPE", "MCP_PROXY_ACCESS_TOKEN_TTL"]);
        let ignored = ServerSettings::ignored(&merged(&[
            ("MCP_AUTH_STRATEGY", "oauth2"),
            ("MCP_OAUTH_AUTH_URL", "https://idp.example.com/authorize"),
            ("MCP_OAUTH_SCOPE", "x"),
            ("MCP_PROXY_ACCESS_TOKEN_TTL", "1h"),
        ]));
        assert!(ignored.is_empty(), "{ignored:?}");
        // With the facade running, its own tokens replace the issuer's: the
        // typing of the issuer's access tokens does nothing (the keys'
        // bound still applies, to the provider's ID-token keys).
        let ignored = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "oauth2"),
            ("MCP_OAUTH_AUTH_URL", "https://idp.example.com/authorize"),
            ("MCP_OAUTH_REQUIRE_AT_JWT", "true"),
            ("MCP_OAUTH_JWKS_MAX_STALE", "1d"),
        ]);
        assert_eq!(ignored, ["MCP_OAUTH_REQUIRE_AT_JWT"]);
        // Cognito fetches keys too: the bound on their age applies; typing
        // access tokens is the oauth2 verifier's.
        let ignored = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "cognito"),
            ("MCP_OAUTH_REQUIRE_AT_JWT", "true"),
            ("MCP_OAUTH_JWKS_MAX_STALE", "1d"),
        ]);
        assert_eq!(ignored, ["MCP_OAUTH_REQUIRE_AT_JWT"]);
        // Named as the server reads them: in any case, in a chain.
        for strategy in ["Cognito", "api_key, COGNITO", "OAUTH2"] {
            let mut pairs = vec![
                ("MCP_AUTH_STRATEGY", strategy),
                ("MCP_OAUTH_JWKS_MAX_STALE", "1d"),
            ];
            if strategy.contains("api_key") {
                pairs.push(("MCP_API_KEYS", "k-0123456789abcdef0123"));
            }
            let ignored = ServerSettings::ignored(&merged(&pairs));
            assert!(ignored.is_empty(), "{strategy}: {ignored:?}");
        }
        // A strategy that fetches no keys: the bound is said to do nothing.
        let ignored = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "bearer"),
            ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("MCP_OAUTH_JWKS_MAX_STALE", "1d"),
        ]);
        assert_eq!(ignored, ["MCP_OAUTH_JWKS_MAX_STALE"]);
        // The OAuth client's credentials are oauth2's (a docs walkthrough:
        // set with api_key, nothing was said).
        let ignored = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "api_key"),
            ("MCP_OAUTH_CLIENT_ID", "x"),
            ("MCP_OAUTH_CLIENT_SECRET", "y"),
        ]);
        assert_eq!(ignored, ["MCP_OAUTH_CLIENT_ID", "MCP_OAUTH_CLIENT_SECRET"]);
        let ignored = ignored_names(&[
            ("MCP_AUTH_STRATEGY", "api_key,oauth2"),
            ("MCP_API_KEYS", "k-0123456789abcdef0123"),
            ("MCP_OAUTH_ISSUER", "https://idp.example.com"),
            ("MCP_OAUTH_CLIENT_ID", "x"),
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
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
    use mcp_auth_integration_tests::variable_literals;
    use std::path::Path;

    /// Each library crate exports the variables it reads; a crate that
    /// reads (or names in an error) one it does not export fails here, and
    /// the server's list is exactly its own plus the libraries'.
    #[test]
    fn every_crate_exports_the_variables_it_reads() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // Literals that are not settings.
        let not_variables = ["CARGO_PKG_VERSION", "CARGO_MANIFEST_DIR"];
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("mcp-auth-jwt", mcp_auth_jwt::VARIABLES, &[]),
            ("mcp-auth-strategies", mcp_auth_strategies::VARIABLES, &[]),
            ("mcp-auth-proxy", mcp_auth_proxy::VARIABLES, &[]),
            ("mcp-auth-cognito", mcp_auth_cognito::VARIABLES, &["bin"]),
            ("mcp-auth-session", mcp_auth_session::VARIABLES, &[]),
            ("mcp-auth-transport", mcp_auth_transport::VARIABLES, &[]),
            // `misspelt/` names what is not a setting on purpose.
            ("mcp-auth-server", &[], &["misspelt"]),
        ];
        let mut server_known = super::known();
        server_known.extend(super::NOT_YET.iter().chain(super::FOR_OTHERS));
        let mut missing = Vec::new();
        for (krate, exported, skip) in cases {
            let exported: &[&str] = if *krate == "mcp-auth-server" {
                &server_known
            } else {
                exported
            };
            for (name, file) in variable_literals(&crates.join(krate).join("src"), skip) {
                if !exported.contains(&name.as_str()) && !not_variables.contains(&name.as_str()) {
                    missing.push(format!("{krate}: {name} ({})", file.display()));
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "read but not exported (add to the crate's VARIABLES):\n{}",
            missing.join("\n")
        );
        // The server's own list holds only what no library reads.
        let libraries: Vec<&str> = cases
            .iter()
            .flat_map(|(_, v, _)| v.iter().copied())
            .collect();
        for name in super::OWN {
            assert!(
                !libraries.contains(name) || *name == "MCP_SERVER_URL",
                "{name} is in the server's own list and a library's"
            );
        }
    }

    #[test]
    fn every_variable_is_documented_in_env_example() {
        let example = include_str!("../../../.env.example");
        for name in super::known()
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
