//! `mcp-auth-server`: an authenticated MCP server built from the `mcp-auth`
//! crates. It only wires them together; see the README for the settings.

mod logline;
mod misspelt;
mod settings;
mod stdio;
mod token;
mod tools;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use mcp_auth_core::{SharedAuthenticator, settings::ConfigError};
use mcp_auth_proxy::settings::ProxySettings;
use mcp_auth_strategies::{
    ApiKeyAuthenticator,
    settings::{Strategy, chain, dpop_from_settings, strategy_from_settings},
};
use mcp_auth_transport::{HttpConfig, McpHttpApp, ToolScopes, Transports, audit::AuditLog};
use rmcp::ServiceExt;
use settings::{ServerSettings, Transport};
use tools::Tools;

/// An authenticated MCP server (streamable HTTP or stdio).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Port to listen on [env: PORT] (default 8001; 0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Address to bind [env: HOST] (default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// streamable-http, sse (legacy HTTP+SSE), both, or stdio [env: MCP_TRANSPORT].
    #[arg(long)]
    transport: Option<String>,
    /// A TOML file with settings (lowest precedence above defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print a JWT for the bearer strategy, signed with MCP_JWT_SECRET (or
    /// MCP_JWT_PRIVATE_KEY), with iss MCP_JWT_ISSUER and aud the server URL.
    Token(token::TokenArgs),
    /// The audit log (MCP_AUDIT_LOG).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain: its files oldest first (rotated
    /// files, then the current one). Names the first edited or removed
    /// record; exits 0 when the chain is intact from its first record, 3
    /// when it is intact but the files start mid-chain (older files not
    /// given, or a wiped log), 1 when it is broken or the files hold no
    /// record, 2 when a file cannot be read (no verdict on the chain).
    Verify {
        /// The log's files, oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("stdio transport: {0}")]
    Stdio(String),
    #[error("{0}")]
    Facade(#[from] mcp_auth_proxy::settings::BuildError),
    #[error("audit log broken at {0}")]
    AuditBroken(mcp_auth_transport::audit::ChainError),
    #[error("MCP_AUDIT_LOG: {source}")]
    AuditOpen { source: std::io::Error },
}

/// jemalloc with background threads: memory freed by ended and parked
/// sessions goes back to the system within seconds (glibc keeps it).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut audit_log = None;
    let result = runtime.block_on(run(cli, &mut audit_log));
    // Requests still in flight (on connections past the shutdown's grace)
    // go with the runtime's tasks, each recorded as abandoned as it goes.
    // Not waited for past a second: a read of stdin from a terminal cannot
    // be cancelled, and would hold a stopped server until a key was
    // pressed (an attack pass: SIGTERM and Ctrl-C did nothing over stdio).
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(log) = audit_log {
        // Every record taken is written before the process ends (its
        // writer thread would die with it).
        if !log.flush() {
            tracing::error!(
                "audit records lost: the log could not be written before the server stopped"
            );
        }
        tracing::info!("stopped");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The server, its audit log (if any) left in `audit_log` for [`main`] to
/// write out once the runtime is gone.
async fn run(cli: Cli, audit_log: &mut Option<AuditLog>) -> Result<(), Error> {
    // Needs no settings: it only reads the files it is given.
    if let Some(Command::Audit(AuditCommand::Verify { files })) = &cli.command {
        std::process::exit(audit_verify(files));
    }
    let merged = settings::merge(
        cli.config.as_deref(),
        Some(std::path::Path::new(".env")),
        &mcp_auth_core::settings::ProcessEnv,
        &[
            ("PORT", cli.port.map(|p| p.to_string())),
            ("HOST", cli.host.clone()),
            ("MCP_TRANSPORT", cli.transport.clone()),
        ],
    )?;
    if let Some(Command::Token(args)) = &cli.command {
        // Only what the token needs is read: the server's other settings
        // need not be valid to mint one.
        let url = match ServerSettings::token_audience(&merged)? {
            Some(url) => url,
            None if args.aud.is_some()
                || mcp_auth_core::settings::parse_list(&merged, "MCP_JWT_AUDIENCE").is_some() =>
            {
                // Named by the flag or the setting: the URL is not used.
                url::Url::parse("http://127.0.0.1/mcp").expect("static URL parses")
            }
            None => {
                return Err(ConfigError::new(
                    "MCP_SERVER_URL",
                    "with PORT=0 the server URL is unknown: set MCP_SERVER_URL, MCP_JWT_AUDIENCE or --aud",
                )
                .into());
            }
        };
        println!("{}", token::mint(args, &merged, &url)?);
        return Ok(());
    }
    let s = ServerSettings::from_merged(&merged)?;
    let _traces = init_logging(&s.log_level, &merged)?;
    for (name, why) in ServerSettings::ignored(&merged) {
        tracing::warn!(variable = name, "setting has no effect: {why}");
    }
    let env_names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    let dotenv = mcp_auth_core::settings::dotenv_names(std::path::Path::new(".env"));
    for (name, like) in misspelt::unknown(env_names, dotenv) {
        match like {
            Some(k) => {
                tracing::warn!(variable = %name, "not a setting the server reads: did you mean {k}?")
            }
            None => tracing::warn!(variable = %name, "not a setting the server reads"),
        }
    }
    if let Some(u) = &s.server_url
        && u.scheme() == "http"
        && !settings::url_is_loopback(u)
    {
        tracing::warn!(
            url = %mcp_auth_jwt::fetch::redact(u),
            "MCP_SERVER_URL is plain http off this machine: clients would send their tokens in clear; put TLS in front and publish the https URL"
        );
    }
    match s.transport {
        Transport::Stdio => {
            serve_stdio(Tools::new(
                s.name.clone(),
                s.version.clone(),
                tool_scopes(&merged)?,
            ))
            .await
        }
        Transport::StreamableHttp => {
            serve_http(&s, &merged, Transports::StreamableHttp, audit_log).await
        }
        Transport::Sse => serve_http(&s, &merged, Transports::Sse, audit_log).await,
        Transport::Both => serve_http(&s, &merged, Transports::Both, audit_log).await,
    }
}

/// `audit verify`: prints the verdict, and the exit code: 0 the chain is
/// intact from its first record, 3 it is intact but starts mid-chain (the
/// earlier records are not in the files given: older files left out, or a
/// log wiped and written to since), 1 it is broken or holds no record (a
/// wiped log), 2 a file could not be read (no verdict on the chain; as for
/// a usage error).
fn audit_verify(files: &[PathBuf]) -> i32 {
    use mcp_auth_transport::audit::{ChainErrorKind, verify_chain};
    match verify_chain(files) {
        Ok(report) if report.first_seq > 0 => {
            println!(
                "ok from seq {}: {} records, chain intact from there; the {} records before it are not in the files given (give the older files first to check them)",
                report.first_seq, report.records, report.first_seq
            );
            3
        }
        Ok(report) => {
            println!("ok: {} records, chain intact", report.records);
            0
        }
        Err(e) if e.kind == ChainErrorKind::Unreadable => {
            eprintln!("error: cannot check the audit log: {e} (not a verdict on the chain)");
            2
        }
        Err(e) if e.kind == ChainErrorKind::Empty => {
            eprintln!("error: audit log not verified: {e}");
            1
        }
        Err(e) => {
            eprintln!("error: {}", Error::AuditBroken(e));
            1
        }
    }
}

/// The tools' scopes: `admin_status` needs `mcp:admin` unless `MCP_TOOL_SCOPES`
/// names it (an entry replaces a tool's default), plus the other entries;
/// `whoami` needs a caller (under anonymous sessions, a login).
///
/// A tool the server does not have is refused, naming the near one: a
/// misspelt name (`get-time`) left the tool meant open to every caller
/// (an attack pass).
fn tool_scopes(merged: &settings::Merged) -> Result<ToolScopes, ConfigError> {
    let scopes = ToolScopes::new()
        .require("admin_status", ["mcp:admin"])
        .require_caller("whoami")
        .with_settings(merged)?;
    let ours = Tools::all_names();
    let plain = |n: &str| n.replace('-', "_").to_ascii_lowercase();
    for named in scopes.tool_names() {
        if ours.contains(&named) {
            continue;
        }
        let hint = match ours.iter().find(|t| plain(t) == plain(&named)) {
            Some(near) => format!("did you mean {near}?"),
            None => format!("the server's tools are {}", ours.join(", ")),
        };
        return Err(ConfigError::new(
            "MCP_TOOL_SCOPES",
            format!("no tool named {named:?}: {hint}"),
        ));
    }
    Ok(scopes)
}

/// Logs to stderr at `level`, and spans to an OpenTelemetry collector when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the guard exports the rest when
/// dropped).
fn init_logging(
    level: &str,
    merged: &settings::Merged,
) -> Result<Option<mcp_auth_transport::otel::OtelGuard>, ConfigError> {
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout belongs to the stdio transport.
    let logs = tracing_subscriber::fmt::layer()
        .fmt_fields(logline::ClippedFields)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let (traces, guard) =
        mcp_auth_transport::otel::layer_from_settings(merged, "mcp-auth-server")?.unzip();
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    if guard.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(guard)
}

async fn serve_stdio(tools: Tools) -> Result<(), Error> {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tracing::info!("serving MCP over stdio");
    // A signal stops it during the handshake too (with the handlers
    // installed, nothing else would: a review).
    // Pipes (as MCP clients start servers) are read without blocking a
    // thread; each line bounded (`stdio.rs`). rmcp's errors can quote
    // what the client sent: shown as a log field would be.
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(
        stdio::BoundedLines::new(stdin, stdio::MAX_LINE),
        stdout,
    );
    let failed = |e: &dyn std::fmt::Display| Error::Stdio(logline::clipped(&e.to_string()));
    let service = tokio::select! {
        s = tools.serve(transport) => s.map_err(|e| failed(&e))?,
        () = &mut shutdown => return Ok(()),
    };
    tokio::select! {
        r = service.waiting() => { r.map_err(|e| failed(&e))?; }
        () = shutdown => {}
    }
    Ok(())
}

async fn serve_http(
    s: &ServerSettings,
    merged: &settings::Merged,
    transports: Transports,
    audit_log: &mut Option<AuditLog>,
) -> Result<(), Error> {
    let addr = std::net::SocketAddr::new(s.host, s.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr()?;
    let server_url = s.server_url_for(bound.port());
    let mut http = HttpConfig::from_settings(merged, server_url.clone())?;
    http.tool_scopes = tool_scopes(merged)?;
    // The server's tools keep no per-session state: idle sessions give up
    // their worker after a minute unless MCP_SESSION_PARK_AFTER says so.
    if mcp_auth_core::settings::Lookup::get(merged, "MCP_SESSION_PARK_AFTER").is_none() {
        http.park_after = Some(mcp_auth_transport::DEFAULT_PARK_AFTER);
    }
    // First: the recorder must be in place before anything counts (the
    // issuer's keys are fetched while the strategies are built).
    let metrics = match http.metrics.clone() {
        Some(endpoint) => Some((
            endpoint,
            mcp_auth_transport::observe::PrometheusMetrics::install()
                .map_err(|e| ConfigError::new("MCP_METRICS_ADDR", e.to_string()))?,
        )),
        None => None,
    };
    // The facade's settings are checked before anything starts.
    let facade_settings = match &s.strategies {
        Some(k)
            if k.contains(&Strategy::OAuth2)
                && mcp_auth_proxy::settings::facade_requested(merged) =>
        {
            Some(ProxySettings::from_settings(merged, &server_url)?)
        }
        _ => None,
    };
    // Scopes the server asks for that its own facade never grants: step-up
    // through it can never succeed.
    if let Some(fs) = &facade_settings {
        let mut never: Vec<String> = Vec::new();
        for s in http.required_scopes.iter().chain(&http.tool_scopes.all()) {
            if !fs.scopes_supported.contains(s) && !never.contains(s) {
                never.push(s.clone());
            }
        }
        if !never.is_empty() {
            tracing::warn!(
                scopes = %never.join(" "),
                "MCP_OAUTH_REQUIRED_SCOPES or MCP_TOOL_SCOPES ask for scopes the login facade does not offer (MCP_OAUTH_SCOPES_SUPPORTED): its users can never hold them"
            );
        }
    }
    // Every strategy's settings are checked before anything starts; the
    // facade's member is built once the store exists (its state lives there).
    mcp_auth_strategies::settings::check_restrictions(
        s.strategies.as_deref().unwrap_or_default(),
        merged,
    )?;
    let mut members: Vec<Option<SharedAuthenticator>> = Vec::new();
    let mut generated = None;
    match &s.strategies {
        Some(strategies) => {
            for kind in strategies {
                members.push(match (kind, &facade_settings) {
                    (Strategy::OAuth2, Some(_)) => None,
                    _ => Some(strategy_from_settings(*kind, merged, server_url.as_str())?),
                });
            }
        }
        None => {
            // Nothing configured: a key for this run, printed once.
            let key = generate_key()?;
            let keys = ApiKeyAuthenticator::new([key.as_str()])
                .map_err(|e| ConfigError::new("MCP_API_KEYS", e.to_string()))?;
            members.push(Some(Arc::new(keys)));
            generated = Some(key);
        }
    }
    let store = mcp_auth_session::store_from_settings(merged)?;
    tracing::info!(store = %store.describe(), "session store");
    let trusted_proxies = http.connections.trusted_proxies.clone();
    let mut facade = None;
    let mut endpoints = None;
    let nonces = dpop_nonces(merged, &store).await?;
    let mut built: Vec<SharedAuthenticator> = Vec::with_capacity(members.len());
    for member in members {
        match (member, facade_settings.clone()) {
            (Some(m), _) => built.push(m),
            (None, Some(mut settings)) => {
                // One nonce is good at the token endpoint and at the MCP one.
                settings.dpop_nonces = nonces.clone();
                // The login facade: this server is the authorization server
                // MCP clients see; users log in at the provider.
                let mut opts = settings.endpoints.clone();
                opts.trusted_proxies = trusted_proxies.clone();
                opts.forwarded_header = http.connections.forwarded_header;
                endpoints = Some(opts);
                let proxy = settings.build(server_url.clone(), store.clone()).await?;
                tracing::info!(issuer = %proxy.config().issuer_id(), "authorization-server facade");
                built.push(Arc::new(proxy.authenticator().map_err(|e| {
                    ConfigError::new("MCP_PROXY_SIGNING_KEY", e.to_string())
                })?));
                facade = Some(proxy);
            }
            (None, None) => {}
        }
    }
    let authenticator =
        with_dpop(merged, server_url.as_str(), chain(built)?, &store, nonces).await?;
    let tools = Tools::new(s.name.clone(), s.version.clone(), http.tool_scopes.clone());
    let audit_target = http.audit_log.clone();
    let mut app = McpHttpApp::shared(http, authenticator)?
        .with_store(store)
        .with_known_tools(tools.names());
    if let Some(target) = audit_target {
        let log = AuditLog::open(&target).map_err(|source| Error::AuditOpen { source })?;
        tracing::info!(target = %target, "audit log");
        *audit_log = Some(log.clone());
        app = app.with_audit(Arc::new(log));
    }
    if let (Some(proxy), Some(opts)) = (&facade, endpoints) {
        app = app
            .with_public_routes(proxy.router(opts))
            .open_to_any_origin(mcp_auth_proxy::paths::CROSS_ORIGIN.map(str::to_owned));
    }
    let router = app.rmcp_router_with(move || Ok(tools.clone()), transports);
    if let Some(key) = generated {
        print_generated_key(&key, &server_url);
    }
    let what = match transports {
        Transports::StreamableHttp => "streamable HTTP",
        Transports::Sse => "HTTP+SSE (/sse, /messages)",
        Transports::Both => "streamable HTTP and HTTP+SSE (/sse, /messages)",
    };
    let shutdown = shutdown_signal();
    tracing::info!(%bound, url = %server_url, transports = what, "serving MCP");
    let cancel = app.cancellation_token();
    if let Some((endpoint, metrics)) = metrics {
        let listener = tokio::net::TcpListener::bind(endpoint.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: endpoint.addr.to_string(),
                source,
            })?;
        let mut scrape = app.metrics_router(&metrics, endpoint.token.clone());
        if endpoint.token.is_none() {
            // Loopback without a token: only a scraper on this machine, not
            // a page in a local browser (DNS rebinding, any Origin).
            let ip = endpoint.addr.ip().to_string();
            scrape = scrape.layer(mcp_auth_transport::GuardLayer::new(
                mcp_auth_transport::HostRule::list(["localhost", ip.as_str()]),
                mcp_auth_transport::OriginRule::List(Vec::new()),
            ));
        }
        let bound = listener.local_addr()?;
        tracing::info!(%bound, "serving /metrics");
        tokio::spawn(mcp_auth_transport::serve(
            listener,
            scrape,
            cancel.clone(),
            std::future::pending(),
        ));
    }
    let serving = mcp_auth_transport::serve_with(
        listener,
        router,
        cancel.clone(),
        shutdown,
        app.config().connections.clone(),
    );
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => r?,
        () = async { cancel.cancelled().await; tokio::time::sleep(Duration::from_secs(10)).await } => {
            tracing::warn!("connections still open 10 s after shutdown began; exiting");
        }
    }
    // With an audit log, `main` says so once its records are written.
    if audit_log.is_none() {
        tracing::info!("stopped");
    }
    Ok(())
}

/// The authenticator with DPoP proofs checked as `MCP_DPOP` asks: proofs'
/// `jti`s and the nonce key in the session store, so replicas sharing it
/// refuse each other's replays and take each other's nonces.
async fn with_dpop(
    merged: &settings::Merged,
    server_url: &str,
    authenticator: SharedAuthenticator,
    store: &mcp_auth_session::SharedStore,
    nonce_keys: Option<mcp_auth_strategies::DpopNonces>,
) -> Result<SharedAuthenticator, Error> {
    // With a shared store (Redis), every replica refuses every replica's
    // replays. In memory, the records get a cache of their own, so proofs
    // cannot crowd out what else lives in the store's bounded key-value
    // space (the login facade's codes and refresh tokens).
    let shared = mcp_auth_core::settings::Lookup::get(merged, "MCP_SESSION_STORE")
        .is_some_and(|v| !v.eq_ignore_ascii_case("memory"));
    let replay: Arc<dyn mcp_auth_core::ReplayCache> = if shared {
        Arc::new(mcp_auth_session::StoreReplayCache::new(store.clone()))
    } else {
        Arc::new(mcp_auth_core::MemoryReplayCache::default())
    };
    let nonces = nonce_keys.is_some();
    let authenticator = dpop_from_settings(merged, server_url, authenticator, replay, nonce_keys)?;
    if let Some(d) = authenticator.dpop() {
        tracing::info!(
            required = d.required,
            algorithms = %d.algorithms.join(","),
            nonces,
            "DPoP proofs checked"
        );
        if !shared {
            tracing::info!(
                "DPoP replay records are kept in this process (MCP_SESSION_STORE=memory): \
                 replicas need a shared store to refuse each other's replays"
            );
        }
    }
    Ok(authenticator)
}

/// The server's DPoP nonces when `MCP_DPOP_NONCE=true`: under a key kept
/// in the session store, so every replica, and the login facade's token
/// endpoint as well as the resource server, takes the same nonces.
async fn dpop_nonces(
    merged: &settings::Merged,
    store: &mcp_auth_session::SharedStore,
) -> Result<Option<mcp_auth_strategies::DpopNonces>, Error> {
    let nonces = mcp_auth_core::settings::parse_bool(merged, "MCP_DPOP_NONCE", false)?;
    Ok(if nonces {
        // Made by the first replica, read by the others, and read again
        // every minute: should the store lose it (a flush, a restart
        // without persistence), every replica moves to the one made next,
        // and nonces under the old one stay good meanwhile.
        let read = {
            let store = store.clone();
            move || {
                let store = store.clone();
                async move {
                    mcp_auth_session::shared_secret(
                        &*store,
                        "dpop:nonce-key",
                        mcp_auth_session::KV_MAX_TTL,
                    )
                    .await
                }
            }
        };
        let key = read()
            .await
            .map_err(|e| ConfigError::new("MCP_SESSION_STORE", e.to_string()))?;
        let keys =
            mcp_auth_strategies::DpopNonces::new(key, mcp_auth_strategies::settings::NONCE_PERIOD);
        let shared_keys = keys.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                match read().await {
                    Ok(key) => {
                        if shared_keys.set_key(key) {
                            tracing::info!(
                                "DPoP nonce key changed in the store: using the new one"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the DPoP nonce key"),
                }
            }
        });
        Some(keys)
    } else {
        None
    })
}

fn generate_key() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(format!("mcp_{}", hex::encode(bytes)))
}

fn print_generated_key(key: &str, url: &url::Url) {
    eprintln!(
        "\nNo authentication configured (MCP_AUTH_STRATEGY / MCP_API_KEYS unset): \
         this run requires a generated API key, shown only now.\n\n  \
         X-API-Key: {key}\n\n  \
         Try it (the MCP Inspector needs Node 22 or later):\n  npx @modelcontextprotocol/inspector --cli {url} --transport http \
         --header \"X-API-Key: {key}\" --method tools/list\n\n  \
         Set MCP_API_KEYS to keep a key across restarts.\n"
    );
}

/// Ready when SIGINT (Ctrl-C) or SIGTERM arrives. On Unix the handlers are
/// installed by this call, not when the future is first polled: the server
/// says it is serving after it, and a signal from then on stops it
/// gracefully (a SIGTERM just after that line killed it outright, its
/// audit log unflushed). Elsewhere Ctrl-C is watched from the first poll.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut int, mut term) = signals;
            let wait = async |s: &mut Option<tokio::signal::unix::Signal>| match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            };
            tokio::select! {
                () = wait(&mut int) => {}
                () = wait(&mut term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}
