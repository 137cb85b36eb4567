//! `mcp-auth-client`: an MCP client that authenticates the way the server
//! asks (OAuth with a browser login, an API key, or a bearer token), then
//! lists and calls tools, one-shot or at a prompt.

use std::{
    collections::HashMap,
    io::{BufRead, Write},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use mcp_auth_client::{Auth, ClientError, FileCredentialStore, OAuthOptions, connect};
use rmcp::model::CallToolRequestParams;

/// An MCP client for servers protected by OAuth 2.1, API keys or bearer tokens.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The MCP endpoint [env: MCP_SERVER_URL; default http://localhost:8001/mcp].
    #[arg(long)]
    server: Option<String>,
    /// Pre-registered OAuth client id [env: COGNITO_APP_CLIENT_ID].
    #[arg(long)]
    client_id: Option<String>,
    /// Its secret [env: COGNITO_APP_CLIENT_SECRET].
    #[arg(long)]
    client_secret: Option<String>,
    /// A client ID metadata document URL, used when the server supports them.
    #[arg(long)]
    client_metadata_url: Option<String>,
    /// Scopes to request (space-separated); default: what the server says.
    #[arg(long)]
    scope: Option<String>,
    /// Send this API key (X-API-Key) instead of OAuth [env: MCP_API_KEY].
    #[arg(long)]
    api_key: Option<String>,
    /// Send this bearer token instead of OAuth.
    #[arg(long)]
    bearer: Option<String>,
    /// Print the login URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Loopback port for the OAuth redirect.
    #[arg(long, default_value_t = 3030)]
    callback_port: u16,
    /// Seconds to wait for the browser login.
    #[arg(long, default_value_t = 300)]
    login_timeout: u64,
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
    /// Forget the stored tokens for the server.
    Logout,
    /// Entry point for the official conformance suite's client scenarios:
    /// no browser, credentials from MCP_CONFORMANCE_CONTEXT.
    Conformance {
        /// The server URL (appended by the suite).
        url: String,
    },
}

/// `.env` in the working directory, read but never exported.
fn dotenv() -> HashMap<String, String> {
    dotenvy::from_path_iter(".env")
        .map(|it| it.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

fn setting(name: &str, dotenv: &HashMap<String, String>) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| dotenv.get(name).cloned())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
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
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let env = dotenv();
    if let Some(Command::Conformance { url }) = &cli.command {
        return conformance(url).await;
    }
    let server = cli
        .server
        .clone()
        .or_else(|| setting("MCP_SERVER_URL", &env))
        .unwrap_or_else(|| "http://localhost:8001/mcp".to_owned());
    if let Some(Command::Logout) = &cli.command {
        let store = FileCredentialStore::for_server(&server);
        let removed = store.remove().map_err(|e| {
            ClientError::Server(format!("cannot remove {}: {e}", store.path().display()))
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
    let auth = if let Some(k) = cli.api_key.clone().or_else(|| setting("MCP_API_KEY", &env)) {
        Auth::ApiKey(k)
    } else if let Some(t) = cli.bearer.clone() {
        Auth::Bearer(t)
    } else {
        Auth::OAuth(OAuthOptions {
            client_id: cli
                .client_id
                .clone()
                .or_else(|| setting("COGNITO_APP_CLIENT_ID", &env)),
            client_secret: cli
                .client_secret
                .clone()
                .or_else(|| setting("COGNITO_APP_CLIENT_SECRET", &env)),
            client_metadata_url: cli.client_metadata_url.clone(),
            scopes: cli
                .scope
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            callback_port: cli.callback_port,
            open_browser: !cli.no_browser,
            timeout: Duration::from_secs(cli.login_timeout),
            ..OAuthOptions::default()
        })
    };
    let op = match cli.command {
        Some(Command::List) => Op::List,
        Some(Command::Call { tool, args }) => Op::Call(tool, args),
        Some(Command::Whoami) => Op::Call("whoami".into(), None),
        _ => Op::Repl,
    };
    perform(&server, auth, &op).await
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// Failures of an operation: the MCP error (which may carry a challenge to
/// step up for), or anything else.
enum OpErr {
    Service(rmcp::service::ServiceError),
    Other(ClientError),
}

impl From<OpErr> for ClientError {
    fn from(e: OpErr) -> Self {
        match e {
            OpErr::Service(e) => ClientError::Mcp(e.to_string()),
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
    /// List the tools, then call the first (the conformance run).
    Exercise,
}

/// Step-ups (re-authorizations after a 401/403 mid-session) at most.
const MAX_STEP_UPS: usize = 2;

/// Connects and runs `op`. A 401, or a 403 `insufficient_scope`, in the
/// middle of it starts a new authorization for the server's challenge
/// (which names every scope needed), then `op` runs again, at most
/// [`MAX_STEP_UPS`] times.
async fn perform(server: &str, mut auth: Auth, op: &Op) -> Result<(), ClientError> {
    for attempt in 0..=MAX_STEP_UPS {
        let client = connect(server, auth.clone()).await?;
        let result = match op {
            Op::List => list(&client).await,
            Op::Call(tool, args) => call(&client, tool, args.as_deref()).await,
            Op::Repl => repl(&client).await.map_err(OpErr::Other),
            Op::Exercise => exercise(&client).await,
        };
        let _ = client.cancel().await;
        let e = match result {
            Ok(()) => return Ok(()),
            Err(OpErr::Service(e)) => e,
            Err(other) => return Err(other.into()),
        };
        let challenge = mcp_auth_client::auth_challenge(&e);
        match (challenge, &auth) {
            (Some(c), Auth::OAuth(opts)) if attempt < MAX_STEP_UPS => {
                eprintln!("the server asks for (more) authorization; logging in again");
                auth = Auth::OAuth(OAuthOptions {
                    challenge: Some(c),
                    ..opts.clone()
                });
            }
            (Some(_), Auth::OAuth(_)) => {
                return Err(ClientError::Authorization(format!(
                    "still refused after {MAX_STEP_UPS} re-authorizations: {e}"
                )));
            }
            _ => return Err(ClientError::Mcp(e.to_string())),
        }
    }
    Err(ClientError::Authorization("gave up".into()))
}

async fn list(client: &Client) -> Result<(), OpErr> {
    let tools = client.list_all_tools().await.map_err(OpErr::Service)?;
    for t in tools {
        println!(
            "{:<16} {}",
            t.name,
            t.description.as_deref().unwrap_or_default()
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
            println!("{}", t.text);
        }
    }
    if r.is_error == Some(true) {
        return Err(OpErr::Other(ClientError::Mcp(format!(
            "{tool} reported an error"
        ))));
    }
    Ok(())
}

async fn repl(client: &Client) -> Result<(), ClientError> {
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
            "list" => list(client).await.map_err(ClientError::from),
            "whoami" => call(client, "whoami", None)
                .await
                .map_err(ClientError::from),
            "call" => {
                let (tool, args) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
                if tool.is_empty() {
                    println!("usage: call <tool> [json-args]");
                    Ok(())
                } else {
                    call(client, tool, Some(args).filter(|a| !a.trim().is_empty()))
                        .await
                        .map_err(ClientError::from)
                }
            }
            other => {
                println!("unknown command {other:?}; try help");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            println!("error: {e}");
        }
    }
}

/// The conformance suite's client entry point.
async fn conformance(url: &str) -> Result<(), ClientError> {
    let context: serde_json::Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    let field = |k: &str| context.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let opts = OAuthOptions {
        client_id: field("client_id"),
        client_secret: field("client_secret"),
        client_metadata_url: field("client_metadata_url"),
        callback_port: 0,
        open_browser: false,
        headless: true,
        persist: false,
        timeout: Duration::from_secs(60),
        ..OAuthOptions::default()
    };
    perform(url, Auth::OAuth(opts), &Op::Exercise).await
}

async fn exercise(client: &Client) -> Result<(), OpErr> {
    let tools = client.list_all_tools().await.map_err(OpErr::Service)?;
    if let Some(t) = tools.first() {
        client
            .call_tool(CallToolRequestParams::new(t.name.clone()))
            .await
            .map_err(OpErr::Service)?;
    }
    Ok(())
}
