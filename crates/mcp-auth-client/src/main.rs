//! `mcp-auth-client`: an MCP client that authenticates the way the server
//! asks (OAuth with a browser login, an API key, or a bearer token), then
//! lists and calls tools, one-shot or at a prompt.
//!
//! A failed one-shot command prints one line, `error: <step>: <reason>`,
//! and exits 1; `-v` adds the logs, with the full error chain. Without
//! `-v` only this client's own warnings are logged, and log lines are
//! coloured only with `-v` on a terminal.
//!
//! Settings are merged once at startup ([`Sources`]): flags, then the
//! environment, then `./.env` (read, never exported), an empty value
//! counting as unset everywhere. A `.env` that cannot be parsed is an
//! error for every command (`error: .env: ...`, one line that never
//! repeats the file's text).

use std::{
    collections::HashMap,
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use conformance::Scenario;
use mcp_auth_client::{
    Auth, ClientError, FileCredentialStore, Grant, MachineClient, MachineOptions, OAuthOptions,
    SigningAlgorithm, TokenEndpoint, VARIABLES, Wire, challenge_scopes, connect_machine,
    connect_oauth, connect_with, connect_with_plain_http, one_line, terminal_safe,
};
use mcp_auth_core::settings::{ConfigError, Lookup, ProcessEnv, Sources};
use rmcp::model::CallToolRequestParams;

mod conformance;

/// The client's environment, shown by `--help`.
const ENVIRONMENT: &str = "\
Environment (flags win over it; an empty value counts as unset). Read from the environment,
else from ./.env (never exported; a .env that cannot be parsed is an error):
  MCP_SERVER_URL             the MCP endpoint when --server is not given (the server's own
                             variable, so a shared .env points the client at that server; a
                             server only ./.env names gets only the API key ./.env holds, not
                             one from a flag or the environment)
  MCP_API_KEY                an API key to send (X-API-Key) instead of OAuth, like --api-key
  COGNITO_APP_CLIENT_ID      a Cognito app client and its secret (as `mcp-auth-cognito setup`
  COGNITO_APP_CLIENT_SECRET    prints them), used as the pre-registered OAuth client only with
  COGNITO_REGION               the authorization server whose issuer is
  COGNITO_USER_POOL_ID         https://cognito-idp.<COGNITO_REGION>.amazonaws.com/<COGNITO_USER_POOL_ID>;
                               without the region and pool id it is not used at all; all four
                               from the environment when it names an app client, else all from
                               ./.env (a server only ./.env names gets no app client of yours)
Read from the environment only:
  MCP_BEARER_TOKEN           a bearer token to send instead of a login, like --bearer (out of
                             the process list, which other local users can read); --api-key,
                             --bearer and a machine grant's flags win over it
  MCP_CLIENT_SECRET,         --client-secret and --idp-client-secret, read only with --client-id
  MCP_IDP_CLIENT_SECRET        (--idp-client-id), to keep them out of the process list
  MCP_AUTH_CLIENT_HOME       where tokens (credentials/, per server) and dynamic client
                             registrations (registrations/, per authorization server) are kept;
                             default $XDG_CONFIG_HOME/mcp-auth-client, else ~/.config/mcp-auth-client
                             (with none of these set, an error)
  BROWSER                    the command that opens the login page (else xdg-open, then open)
  LOG_LEVEL                  with -v, the log filter (default: info,mcp_auth_client=debug)
  HTTP_PROXY, HTTPS_PROXY,   proxies for the client's requests (also lowercase); OAuth requests
  ALL_PROXY                    may reach a proxy on a private or loopback address
  MCP_CONFORMANCE_SCENARIO   the conformance suite's scenario and its settings (JSON), set by
  MCP_CONFORMANCE_CONTEXT      the suite for the conformance command only";

/// An MCP client for servers protected by OAuth 2.1, API keys or bearer tokens.
#[derive(Debug, Parser)]
#[command(version, about, after_help = ENVIRONMENT)]
struct Cli {
    /// The MCP endpoint [env: MCP_SERVER_URL; default http://localhost:8001/mcp].
    #[arg(long)]
    server: Option<String>,
    /// A pre-registered OAuth client id, presented to the --issuer, or
    /// without it (a public client only) to whichever authorization server
    /// the MCP server names (see COGNITO_APP_CLIENT_ID below for the
    /// Cognito app client from .env).
    #[arg(long)]
    client_id: Option<String>,
    /// The --client-id's secret, for a confidential client (requires
    /// --issuer) [env: MCP_CLIENT_SECRET, read with --client-id only; out of
    /// the process list, where other local users can read a flag].
    #[arg(long, requires = "client_id")]
    client_secret: Option<String>,
    /// The authorization server (its issuer URL) --client-id is registered
    /// at: its credentials, secret and tokens go to that server only, and
    /// an MCP server naming another is refused (logins there register
    /// instead). Required with --client-secret, --private-key,
    /// --workload-token and --enterprise-id-token; without it only a public
    /// --client-id (no secret) is used, wherever the MCP server points.
    #[arg(long, value_name = "URL", requires = "client_id")]
    issuer: Option<String>,
    /// A client ID metadata document URL, used when the server supports them.
    #[arg(long)]
    client_metadata_url: Option<String>,
    /// Scopes to request at the first login (space-separated); default: the
    /// challenge's, else the server's resource metadata's. A step-up asks
    /// for these plus the ones the server names.
    #[arg(long)]
    scope: Option<String>,
    /// Send this API key (X-API-Key) instead of OAuth [env: MCP_API_KEY].
    #[arg(long)]
    api_key: Option<String>,
    /// Send this bearer token instead of OAuth [env: MCP_BEARER_TOKEN,
    /// which keeps it out of the process list].
    #[arg(long)]
    bearer: Option<String>,
    /// Machine-to-machine, no browser: an OAuth client_credentials grant as
    /// --client-id, authenticated by --client-secret or --private-key.
    #[arg(long, requires = "client_id")]
    client_credentials: bool,
    /// The client's private key (PEM, PKCS#8) for private_key_jwt (RFC 7523)
    /// instead of a secret, with --client-credentials.
    #[arg(long, value_name = "FILE", requires = "client_credentials")]
    private_key: Option<PathBuf>,
    /// The --private-key's algorithm (ES256, ES384, RS256, PS256, EdDSA, ...).
    #[arg(long, default_value = "ES256", requires = "private_key")]
    key_algorithm: SigningAlgorithm,
    /// Workload identity, no browser: present the JWT in FILE (a platform's
    /// workload token, read at each run) as an RFC 7523 jwt-bearer grant, as
    /// --client-id.
    #[arg(long, value_name = "FILE", requires = "client_id", conflicts_with_all = ["client_credentials", "enterprise_id_token"])]
    workload_token: Option<PathBuf>,
    /// Enterprise-managed authorization, no browser: the user's ID token
    /// from the enterprise IdP in FILE, exchanged at --idp-token-endpoint for
    /// an ID-JAG, which --client-id presents to the MCP server's
    /// authorization server.
    #[arg(long, value_name = "FILE", requires_all = ["client_id", "idp_token_endpoint", "idp_client_id"], conflicts_with = "client_credentials")]
    enterprise_id_token: Option<PathBuf>,
    /// The enterprise IdP's token endpoint (with --enterprise-id-token).
    #[arg(long, value_name = "URL", requires = "enterprise_id_token")]
    idp_token_endpoint: Option<String>,
    /// This application's client id at the enterprise IdP.
    #[arg(long, requires = "enterprise_id_token")]
    idp_client_id: Option<String>,
    /// Its secret at the IdP, for a confidential client there [env:
    /// MCP_IDP_CLIENT_SECRET, read with --idp-client-id only].
    #[arg(long, requires = "idp_client_id")]
    idp_client_secret: Option<String>,
    /// Do not ask for DPoP-bound tokens (RFC 9449) even when the
    /// authorization server offers them: no proofs, Bearer tokens only.
    /// Stored tokens already bound to this client's key are still sent with
    /// proofs (a bound token must not be sent as Bearer).
    #[arg(long)]
    no_dpop: bool,
    /// Send the API key, bearer token or access token to a server on plain
    /// http off this machine (refused without it: anyone on the way could
    /// read them). For a network you trust, such as a container network.
    #[arg(long)]
    allow_http: bool,
    /// Print the login URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Loopback port for the OAuth redirect (0: any).
    #[arg(long, default_value_t = 3030)]
    callback_port: u16,
    /// Seconds to wait for the browser login.
    #[arg(long, default_value_t = 300)]
    login_timeout: u64,
    /// Seconds `list`, `call` and `whoami` (also at the interactive
    /// prompt) wait for the server's answer (a server that takes the
    /// request and never answers is given up on).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// The MCP wire: `2026-07-28` (stateless: `server/discover`, then
    /// self-contained requests), `2025-11-25` (an `initialize` session), or
    /// `auto`: 2026-07-28 when the server speaks it, else 2025-11-25.
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|2026-07-28|2025-11-25"
    )]
    protocol: Wire,
    /// Show the logs and the full error behind a failure.
    #[arg(short, long)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the tools.
    List,
    /// Call a tool with JSON arguments (default {}).
    Call {
        /// The tool.
        tool: String,
        /// Its arguments as a JSON object.
        args: Option<String>,
    },
    /// Who the server thinks you are (the whoami tool).
    Whoami,
    /// Forget the stored tokens (and the DPoP key) for the server.
    Logout,
    /// Entry point for the official conformance suite's client scenarios:
    /// no browser, credentials from MCP_CONFORMANCE_CONTEXT.
    Conformance {
        /// The server URL (appended by the suite).
        url: String,
    },
}

/// The merged settings, a [`Lookup`].
type Settings = HashMap<String, String>;

/// Merges the settings: `--server`, then the environment, then `.env` in
/// the working directory (read, never exported). Names outside
/// [`VARIABLES`] are ignored; an empty value counts as unset in every
/// layer, so `MCP_API_KEY=` in the environment does not hide `.env`'s.
///
/// Only the settings a project's `.env` may choose are read from here
/// (`MCP_SERVER_URL`, `MCP_API_KEY`, the `COGNITO_*` app client). The
/// others stay process-environment only, as `--help` says: where tokens
/// are kept (`MCP_AUTH_CLIENT_HOME`, `XDG_CONFIG_HOME`, see the store),
/// `MCP_CONFORMANCE_CONTEXT` (set by the conformance runner for each
/// scenario; one left in a `.env` would be another scenario's),
/// and `LOG_LEVEL` (in a shared `.env` it is the server's log filter).
fn settings(cli: &Cli) -> Result<Settings, ConfigError> {
    Sources::new(VARIABLES)
        .dotenv_file(Path::new(".env"))
        .env(&ProcessEnv)
        .flag("MCP_SERVER_URL", cli.server.clone())
        .merge()
}

/// Logs go to stderr. Without `-v`: only this client's warnings, never
/// coloured. With `-v`: `LOG_LEVEL` from the process environment
/// (default `info`, and `debug` for this client), coloured when stderr
/// is a terminal.
/// The log directive that keeps rmcp's OAuth module above debug.
const SECRET_LOGGING_MODULE: &str = "rmcp::transport::auth=info";

/// What is logged: with `-v`, `LOG_LEVEL` (directives) or info with this
/// crate at debug; without, this crate's warnings. rmcp's OAuth module logs
/// the authorization code and the token response (an ID token in full) at
/// debug: held at info whatever level `LOG_LEVEL` sets (a directive naming
/// a narrower target inside it still applies), so no log carries them.
fn log_filter(verbose: bool, level: Option<String>) -> tracing_subscriber::EnvFilter {
    let filter = if verbose {
        level
            .and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok())
            .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info,mcp_auth_client=debug"))
    } else {
        tracing_subscriber::EnvFilter::new("mcp_auth_client=warn")
    };
    match SECRET_LOGGING_MODULE.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

fn init_logging(verbose: bool) {
    let filter = log_filter(verbose, ProcessEnv.get("LOG_LEVEL"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(verbose && std::io::stderr().is_terminal())
        .try_init();
}

/// A failed command: the step (`list`, `call <tool>`, ...) and why.
struct Failure {
    step: String,
    error: ClientError,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.step,
            one_line(&self.error.to_string(), 300)
        )
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Secrets from the process environment when not on the command line,
    // where any local user reads them in the process list. Never from
    // `./.env`: a project's file does not hold the user's secrets.
    if cli.client_secret.is_none() && cli.client_id.is_some() {
        cli.client_secret = ProcessEnv.get("MCP_CLIENT_SECRET");
    }
    if cli.idp_client_secret.is_none() && cli.idp_client_id.is_some() {
        cli.idp_client_secret = ProcessEnv.get("MCP_IDP_CLIENT_SECRET");
    }
    init_logging(cli.verbose);
    let settings = match settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string(), 300));
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli, &settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            tracing::debug!(error = ?f.error, step = %f.step, "failed");
            eprintln!("error: {f}");
            ExitCode::FAILURE
        }
    }
}

/// The step a command's failure is reported under.
fn step(command: Option<&Command>) -> String {
    match command {
        Some(Command::List) => "list".into(),
        Some(Command::Call { tool, .. }) => format!("call {}", one_line(tool, 60)),
        Some(Command::Whoami) => "whoami".into(),
        Some(Command::Logout) => "logout".into(),
        Some(Command::Conformance { .. }) => "conformance".into(),
        None => "connect".into(),
    }
}

/// The Cognito user pool's issuer, from `COGNITO_REGION` and
/// `COGNITO_USER_POOL_ID` (checked by [`cognito_pool`]).
fn cognito_issuer(region: &str, pool: &str) -> String {
    format!("https://cognito-idp.{region}.amazonaws.com/{pool}")
}

/// Whether `region` is an AWS region name (`us-east-1`, `us-gov-west-1`):
/// lowercase words joined by `-`, the last a number.
fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.split_last().is_some_and(|(n, words)| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && words
                    .iter()
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        })
}

/// `COGNITO_REGION` and `COGNITO_USER_POOL_ID` as they go into the
/// issuer's URL, or which is not what AWS names (so neither can move the
/// app client's secret to another host: `evil.example/`, `x@host`).
fn cognito_pool(region: &str, pool: &str, from: &str) -> Result<(), ClientError> {
    if !is_aws_region(region) {
        return Err(ClientError::Config(format!(
            "COGNITO_REGION (from {from}): not an AWS region name such as us-east-1"
        )));
    }
    let id = pool
        .strip_prefix(region)
        .and_then(|rest| rest.strip_prefix('_'));
    if !id.is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(ClientError::Config(format!(
            "COGNITO_USER_POOL_ID (from {from}): not a user pool id of {region} \
             ({region}_ and letters or digits)"
        )));
    }
    Ok(())
}

/// A pre-registered client: its id and secret, the issuer it is bound to,
/// and whether it is the user's own (a flag or the process environment,
/// not `./.env`).
struct Preregistered {
    id: Option<String>,
    secret: Option<String>,
    issuer: Option<String>,
    own: bool,
}

/// The pre-registered client: `--client-id`/`--client-secret` for the
/// `--issuer` (any authorization server without it), else the Cognito app
/// client, for its user pool's issuer only (not at all without
/// `COGNITO_REGION` and `COGNITO_USER_POOL_ID`). The app client, its secret
/// and its pool come from one place: the environment when it names an app
/// client, else `./.env`. One never completes the other: a cloned
/// project's `.env` naming a region or pool would otherwise decide where
/// the user's own secret goes.
fn preregistered(cli: &Cli) -> Result<Preregistered, ClientError> {
    if let Some(id) = &cli.client_id {
        return Ok(Preregistered {
            id: Some(id.clone()),
            secret: cli.client_secret.clone(),
            issuer: cli.issuer.clone(),
            own: true,
        });
    }
    let none = Preregistered {
        id: None,
        secret: None,
        issuer: None,
        own: false,
    };
    let own = ProcessEnv.get("COGNITO_APP_CLIENT_ID").is_some();
    // `./.env` alone (read, and refused when it cannot be parsed, with the
    // settings before).
    let dotenv = Sources::new(VARIABLES)
        .dotenv_file(Path::new(".env"))
        .merge()
        .unwrap_or_default();
    let (layer, from): (&dyn Lookup, &str) = match own {
        true => (&ProcessEnv, "the environment"),
        false => (&dotenv, "./.env"),
    };
    let Some(id) = layer.get("COGNITO_APP_CLIENT_ID") else {
        return Ok(none);
    };
    match (
        layer.get("COGNITO_REGION"),
        layer.get("COGNITO_USER_POOL_ID"),
    ) {
        (Some(region), Some(pool)) => {
            cognito_pool(&region, &pool, from)?;
            let issuer = cognito_issuer(&region, &pool);
            tracing::debug!(issuer = %issuer, "COGNITO_APP_CLIENT_ID is used only with this issuer");
            Ok(Preregistered {
                id: Some(id),
                secret: layer.get("COGNITO_APP_CLIENT_SECRET"),
                issuer: Some(issuer),
                own,
            })
        }
        _ => {
            // Exported app client, region or pool in `./.env`: said plainly
            // (the login goes on without the app client, and Cognito takes
            // no other).
            let elsewhere = own
                && (dotenv.contains_key("COGNITO_REGION")
                    || dotenv.contains_key("COGNITO_USER_POOL_ID"));
            if elsewhere {
                tracing::warn!(
                    "COGNITO_APP_CLIENT_ID is exported but COGNITO_REGION / COGNITO_USER_POOL_ID \
                     come from ./.env: export them too (an app client and its pool are read \
                     from one place), else the app client is not used"
                );
            } else {
                tracing::debug!(
                    "COGNITO_APP_CLIENT_ID is set ({from}) but COGNITO_REGION or COGNITO_USER_POOL_ID \
                     is not (there): its user pool is unknown, so the app client is not used"
                );
            }
            Ok(none)
        }
    }
}

/// `--scope`, split.
fn scopes(cli: &Cli) -> Vec<String> {
    cli.scope
        .as_deref()
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A token or key from `path` (`flag` names it in errors; the contents are
/// never shown), trimmed.
fn read_secret(flag: &str, path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            ClientError::AuthRequired(format!("cannot read {flag} {}: {e}", path.display()))
        })
}

/// Refuses credentials that would go to whichever authorization server
/// the MCP server names: a secret, a private key, a workload token or an
/// enterprise ID token (its ID-JAG) need `--issuer`. Checked before
/// anything is sent; a public `--client-id` alone needs none.
fn require_issuer(cli: &Cli) -> Result<(), ClientError> {
    if cli.issuer.is_some() || cli.client_id.is_none() {
        return Ok(());
    }
    let flag = if cli.client_secret.is_some() {
        "--client-secret"
    } else if cli.private_key.is_some() {
        "--private-key"
    } else if cli.workload_token.is_some() {
        "--workload-token"
    } else if cli.enterprise_id_token.is_some() {
        "--enterprise-id-token"
    } else {
        return Ok(());
    };
    Err(ClientError::Config(format!(
        "{flag} needs --issuer: credentials go only to the authorization server the client is \
         registered at (--issuer <its issuer URL>), never to whichever one the MCP server names"
    )))
}

/// The machine-to-machine grant the flags ask for, if any. Its credential
/// goes to its pinned issuer only: [`require_issuer`] is checked as soon as
/// a grant is chosen, before any key or token file is read.
fn machine_grant(cli: &Cli) -> Result<Option<Grant>, ClientError> {
    let Some(client_id) = cli.client_id.clone() else {
        return Ok(None);
    };
    let client = |id: String, secret: Option<String>| match secret {
        Some(secret) => MachineClient::secret(id, secret),
        None => MachineClient::public(id),
    };
    if cli.client_credentials {
        require_issuer(cli)?;
        let client = match &cli.private_key {
            Some(path) => MachineClient::private_key_file(client_id, path, cli.key_algorithm)
                .map_err(|e| ClientError::AuthRequired(format!("--private-key: {e}")))?,
            None => client(client_id, cli.client_secret.clone()),
        };
        return Ok(Some(Grant::ClientCredentials(client)));
    }
    if let Some(path) = &cli.workload_token {
        require_issuer(cli)?;
        return Ok(Some(Grant::Workload {
            assertion: read_secret("--workload-token", path)?,
            client: client(client_id, cli.client_secret.clone()),
        }));
    }
    if let (Some(path), Some(endpoint), Some(idp_client_id)) = (
        &cli.enterprise_id_token,
        &cli.idp_token_endpoint,
        &cli.idp_client_id,
    ) {
        require_issuer(cli)?;
        return Ok(Some(Grant::Enterprise {
            idp: TokenEndpoint::new(endpoint.clone()),
            idp_client: client(idp_client_id.clone(), cli.idp_client_secret.clone()),
            id_token: read_secret("--enterprise-id-token", path)?,
            client: client(client_id, cli.client_secret.clone()),
        }));
    }
    Ok(None)
}

async fn run(cli: Cli, settings: &Settings) -> Result<(), Failure> {
    let step = step(cli.command.as_ref());
    let fail = |error: ClientError| Failure {
        step: step.clone(),
        error,
    };
    if let Some(Command::Conformance { url }) = &cli.command {
        return conformance(url).await.map_err(fail);
    }
    // `--server` is the top layer of the settings.
    let server = Lookup::get(settings, "MCP_SERVER_URL")
        .unwrap_or_else(|| "http://localhost:8001/mcp".to_owned());
    if let Some(Command::Logout) = &cli.command {
        let store = FileCredentialStore::for_server(&server)
            .map_err(|e| fail(ClientError::Config(e.to_string())))?;
        let removed = store.remove().map_err(|e| {
            fail(ClientError::Server(format!(
                "cannot remove {}: {e}",
                store.path().display()
            )))
        })?;
        println!(
            "{}",
            if removed {
                "logged out"
            } else {
                "no stored tokens"
            }
        );
        return Ok(());
    }
    // Flags first: `--bearer` wins over an MCP_API_KEY from the environment
    // or `.env` (so `--api-key` is not a layer of the settings: they could
    // not tell the flag from the variable).
    // Whether a login would present a pre-registered client of the user's
    // own (a flag, the environment).
    let mut own_client = false;
    let auth = if let Some(k) = cli.api_key.clone() {
        Auth::ApiKey(k)
    } else if let Some(t) = cli.bearer.clone() {
        Auth::Bearer(t)
    } else if let Some(grant) = machine_grant(&cli).map_err(&fail)? {
        let mut opts = MachineOptions::new(grant);
        opts.scopes = scopes(&cli);
        opts.wire = cli.protocol;
        opts.dpop = !cli.no_dpop;
        opts.allow_http = cli.allow_http;
        opts.issuer = cli.issuer.clone();
        Auth::Machine(Box::new(opts))
    } else if let Some(t) = ProcessEnv.get("MCP_BEARER_TOKEN") {
        // The process environment only: a `.env` (a cloned project's) does
        // not choose the token the user sends.
        Auth::Bearer(t)
    } else if let Some(k) = Lookup::get(settings, "MCP_API_KEY") {
        Auth::ApiKey(k)
    } else {
        // A browser login's secret too (an MCP_API_KEY above wins over it,
        // so it is asked for only here).
        require_issuer(&cli).map_err(&fail)?;
        let client = preregistered(&cli).map_err(&fail)?;
        own_client = client.own;
        Auth::OAuth(OAuthOptions {
            client_id: client.id,
            client_secret: client.secret,
            client_issuer: client.issuer,
            client_metadata_url: cli.client_metadata_url.clone(),
            scopes: scopes(&cli),
            callback_port: cli.callback_port,
            open_browser: !cli.no_browser,
            timeout: Duration::from_secs(cli.login_timeout),
            wire: cli.protocol,
            dpop: !cli.no_dpop,
            allow_http: cli.allow_http,
            ..OAuthOptions::default()
        })
    };
    // A `.env` in the working directory (a cloned project's, say) may name
    // the server, and a key in the same `.env` is its author's to send
    // there; a key of the user's own (a flag, the environment) is not sent
    // to a server only that file names.
    // (A machine grant's token too: minted with the user's own secret or
    // key, for the server it is asked for. And a login with the user's own
    // client: the server would be handed the token, and the client's
    // secret could be sent wherever that server's metadata points.)
    let own_key = match &auth {
        Auth::ApiKey(_) => cli.api_key.is_some() || ProcessEnv.get("MCP_API_KEY").is_some(),
        Auth::Bearer(_) | Auth::Machine(_) => true,
        Auth::OAuth(_) => own_client,
        _ => false,
    };
    // An empty --server (a variable left unset) counts as not given.
    if own_key
        && cli.server.as_deref().is_none_or(|s| s.trim().is_empty())
        && ProcessEnv.get("MCP_SERVER_URL").is_none()
        && let Some(named) = Lookup::get(settings, "MCP_SERVER_URL")
    {
        // Shown without any user or password it may carry.
        let shown = reqwest::Url::parse(&named)
            .map(|mut u| {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                format!(" ({u})")
            })
            .unwrap_or_default();
        return Err(fail(ClientError::Config(format!(
            "MCP_SERVER_URL{shown} comes from ./.env but your credential does not; \
             name the server with --server or MCP_SERVER_URL to send it there"
        ))));
    }
    let op = match cli.command {
        Some(Command::List) => Op::List,
        Some(Command::Call { tool, args }) => Op::Call(tool, args),
        Some(Command::Whoami) => Op::Call("whoami".into(), None),
        _ => Op::Repl,
    };
    let answer_within = Duration::from_secs(cli.timeout);
    perform(
        &server,
        auth,
        &op,
        cli.protocol,
        cli.allow_http,
        answer_within,
    )
    .await
    .map_err(fail)
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// Failures of an operation: the MCP error (which may carry a challenge to
/// step up for), or anything else.
enum OpErr {
    Service(rmcp::service::ServiceError),
    Other(ClientError),
}

impl OpErr {
    fn into_client_error(self, auth: &Auth) -> ClientError {
        match self {
            OpErr::Service(e) => ClientError::from_service_error(&e, auth.presented()),
            OpErr::Other(e) => e,
        }
    }
}

/// What to do once connected.
#[derive(Debug, Clone)]
enum Op {
    List,
    Call(String, Option<String>),
    Repl,
    /// List the tools, then make a conformance scenario's calls.
    Exercise(Box<Scenario>),
}

/// `op`, given up on after `limit` (`--timeout`).
async fn within(
    limit: Duration,
    op: impl std::future::Future<Output = Result<(), OpErr>>,
) -> Result<(), OpErr> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(OpErr::Other(ClientError::Mcp(format!(
            "the server did not answer within {} s (--timeout)",
            limit.as_secs()
        ))))
    })
}

/// Step-ups (re-authorizations after a 401/403 mid-session) at most.
const MAX_STEP_UPS: usize = 2;

/// `a` then what `b` adds, without repeats.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for s in b {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Connects and runs `op`. With OAuth, a 401, or a 403
/// `insufficient_scope`, in the middle of it starts a new authorization
/// for the server's challenge, asking for the scopes held so far (and
/// `--scope`) plus the challenge's, then `op` runs again, at most
/// [`MAX_STEP_UPS`] times. A 403 for scopes the last login already asked
/// for ends it: the authorization server did not grant them, and asking
/// again would not change that.
async fn perform(
    server: &str,
    mut auth: Auth,
    op: &Op,
    wire: Wire,
    allow_http: bool,
    answer_within: Duration,
) -> Result<(), ClientError> {
    // The scopes asked for and granted so far.
    let mut held: Vec<String> = Vec::new();
    for attempt in 0..=MAX_STEP_UPS {
        let client = match &auth {
            Auth::OAuth(opts) => {
                let (client, scopes) = connect_oauth(server, opts).await?;
                held = union(&held, &scopes);
                client
            }
            Auth::Machine(opts) => {
                let (client, scopes) = connect_machine(server, opts).await?;
                held = union(&held, &scopes);
                client
            }
            other if allow_http => connect_with_plain_http(server, other.clone(), wire).await?,
            other => connect_with(server, other.clone(), wire).await?,
        };
        let result = match op {
            Op::List => within(answer_within, list(&client)).await,
            Op::Call(tool, args) => {
                within(answer_within, call(&client, tool, args.as_deref())).await
            }
            Op::Repl => repl(&client, &auth, answer_within)
                .await
                .map_err(OpErr::Other),
            Op::Exercise(scenario) => exercise(&client, scenario).await,
        };
        let _ = client.cancel().await;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(e) => e.into_client_error(&auth),
        };
        let ClientError::Refused(refusal) = &error else {
            return Err(error);
        };
        // Without a challenge (a server with no authentication scheme)
        // there is nothing to log in to.
        if !matches!(auth, Auth::OAuth(_) | Auth::Machine(_)) || refusal.challenge.is_empty() {
            return Err(error);
        }
        let wanted = challenge_scopes(&refusal.challenge);
        if refusal.is_insufficient_scope()
            && !wanted.is_empty()
            && wanted.iter().all(|s| held.contains(s))
        {
            return Err(ClientError::Authorization(format!(
                "{refusal}: the authorization server did not grant it"
            )));
        }
        if attempt == MAX_STEP_UPS {
            return Err(ClientError::Authorization(format!(
                "still refused after {MAX_STEP_UPS} re-authorizations: {refusal}"
            )));
        }
        auth = match auth {
            Auth::OAuth(opts) => {
                eprintln!("the server asks for (more) authorization; logging in again");
                Auth::OAuth(OAuthOptions {
                    challenge: Some(refusal.challenge.clone()),
                    scopes: union(&opts.scopes, &held),
                    ..opts
                })
            }
            Auth::Machine(mut opts) => {
                eprintln!("the server asks for (more) authorization; asking for a new token");
                opts.challenge = Some(refusal.challenge.clone());
                opts.scopes = union(&opts.scopes, &held);
                Auth::Machine(opts)
            }
            other => other,
        };
    }
    Err(ClientError::Authorization("gave up".into()))
}

async fn list(client: &Client) -> Result<(), OpErr> {
    let tools = client.list_all_tools().await.map_err(OpErr::Service)?;
    for t in tools {
        println!(
            "{:<16} {}",
            terminal_safe(&t.name),
            terminal_safe(t.description.as_deref().unwrap_or_default())
        );
    }
    Ok(())
}

async fn call(client: &Client, tool: &str, args: Option<&str>) -> Result<(), OpErr> {
    let args = match args {
        None => serde_json::Map::new(),
        Some(a) => match serde_json::from_str::<serde_json::Value>(a) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(OpErr::Other(ClientError::Mcp(format!(
                    "arguments must be a JSON object, got {a}"
                ))));
            }
        },
    };
    let r = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .map_err(OpErr::Service)?;
    for c in &r.content {
        if let Some(t) = c.as_text() {
            println!("{}", terminal_safe(&t.text));
        }
    }
    if r.is_error == Some(true) {
        return Err(OpErr::Other(ClientError::Mcp(format!(
            "{tool} reported an error"
        ))));
    }
    Ok(())
}

async fn repl(client: &Client, auth: &Auth, limit: Duration) -> Result<(), ClientError> {
    println!("Connected. Commands: list, call <tool> [json-args], whoami, help, quit");
    let stdin = std::io::stdin();
    loop {
        print!("mcp> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            return Ok(());
        }
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let outcome = match cmd {
            "" => Ok(()),
            "quit" | "exit" => return Ok(()),
            "help" => {
                println!("list | call <tool> [json-args] | whoami | quit");
                Ok(())
            }
            "list" => within(limit, list(client))
                .await
                .map_err(|e| e.into_client_error(auth)),
            "whoami" => within(limit, call(client, "whoami", None))
                .await
                .map_err(|e| e.into_client_error(auth)),
            "call" => {
                let (tool, args) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
                if tool.is_empty() {
                    println!("usage: call <tool> [json-args]");
                    Ok(())
                } else {
                    let args = Some(args).filter(|a| !a.trim().is_empty());
                    within(limit, call(client, tool, args))
                        .await
                        .map_err(|e| e.into_client_error(auth))
                }
            }
            other => {
                println!("unknown command {other:?}; try help");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            println!("error: {}", one_line(&e.to_string(), 300));
        }
    }
}

/// The conformance suite's client entry point (see [`conformance`]).
async fn conformance(url: &str) -> Result<(), ClientError> {
    let scenario = Scenario::from_env();
    let mut auth = scenario.auth()?;
    conformance::pin_issuer(url, &mut auth).await?;
    perform(
        url,
        auth,
        &Op::Exercise(Box::new(scenario)),
        Wire::Auto,
        false,
        Duration::from_secs(300),
    )
    .await
}

/// Lists the tools, then makes the scenario's calls
/// ([`Scenario::calls`]); a tool's error result does not fail the run (the
/// suite judges what arrived).
async fn exercise(client: &Client, scenario: &Scenario) -> Result<(), OpErr> {
    let tools = client.list_all_tools().await.map_err(OpErr::Service)?;
    for call in scenario.calls(&tools) {
        client.call_tool(call).await.map_err(OpErr::Service)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `-v` with `LOG_LEVEL=debug` (or trace, or naming rmcp's module)
    /// logs everything at debug but rmcp's OAuth module, which logs the
    /// authorization code and token responses there.
    #[test]
    fn rmcps_oauth_debug_logs_stay_out_whatever_the_level() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for level in [
            "debug",
            "trace",
            "rmcp=trace,debug",
            "rmcp::transport::auth=trace",
        ] {
            let buf = Buf::default();
            let writer = buf.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(super::log_filter(true, Some(level.to_owned())))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "rmcp::transport::auth", "code SECRET-CODE");
                tracing::info!(target: "rmcp::transport::auth", "auth info kept");
                tracing::debug!(target: "rmcp::transport::streamable_http_client", "transport debug kept");
            });
            let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            assert!(!out.contains("SECRET-CODE"), "{level}: {out}");
            assert!(out.contains("auth info kept"), "{level}: {out}");
            if level != "rmcp::transport::auth=trace" {
                assert!(out.contains("transport debug kept"), "{level}: {out}");
            }
        }
    }

    use super::{cognito_pool, is_aws_region};

    #[test]
    fn cognito_regions_and_pools_are_what_aws_names() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "cn-north-1",
            "il-central-1",
        ] {
            assert!(is_aws_region(ok), "{ok}");
            assert!(cognito_pool(ok, &format!("{ok}_AbC123"), "test").is_ok());
        }
        for bad in [
            "",
            "east-1",
            "us-east-1a",
            "US-EAST-1",
            "us--1",
            "us-east-",
            "evil.example/",
            "us-east-1.evil.example",
        ] {
            assert!(!is_aws_region(bad), "{bad}");
        }
        for pool in [
            "us-east-1_",
            "us-east-1Pool",
            "us-east-1_P/x",
            "eu-west-1_P",
        ] {
            assert!(cognito_pool("us-east-1", pool, "test").is_err(), "{pool}");
        }
    }
}
