//! Load benchmark for `mcp-auth-server`.
//!
//! ```text
//! cargo build --release -p mcp-auth-server -p mcp-auth-bench
//! target/release/mcp-auth-bench --clients 32 --seconds 10
//! ```
//!
//! Starts the real server binary once per auth mode (no auth, `api_key`,
//! `oauth2` with one RS256 token per client, `oauth2` with a fresh token on
//! every request) against a JWKS served on loopback by this process, drives
//! `tools/call get_time` over streamable HTTP from N concurrent sessions for
//! T seconds, and prints requests/s, p50/p99 latency, peak RSS and the ratio
//! of each mode to no-auth measured in the same run. It then opens
//! `--idle-sessions` authenticated sessions and reports the server's RSS.
//!
//! The modes `python-sdk` and `typescript-sdk` run the same load against the
//! servers users would pick instead, with the same RS256 tokens and JWKS:
//! `peers/python_server.py` (official Python SDK, JWT verifier over JWKS) and
//! `peers/ts_server.mjs` (official TypeScript SDK, `requireBearerAuth` with a
//! JWKS verifier). `peers/run.sh` installs them and runs every mode.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::json;

const RSA_PEM: &[u8] = include_bytes!("../../mcp-auth-jwt/tests/keys/rsa.pem");
const API_KEY: &str = "bench-api-key-0123456789abcdef";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-auth-bench","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_time","arguments":{}}}"#;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(version, about = "Load benchmark for mcp-auth-server")]
struct Args {
    /// Concurrent clients (one MCP session each).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of load per mode.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Modes to run, comma-separated: none, api_key, oauth2, oauth2-distinct,
    /// the peers python-sdk, typescript-sdk (see `--python`, `--node`), and
    /// none-bearer (no auth, but clients send the oauth2 mode's token: the
    /// cost of carrying the header, apart from checking it).
    #[arg(
        long,
        default_value = "none,api_key,oauth2,oauth2-distinct",
        value_delimiter = ','
    )]
    modes: Vec<String>,
    /// Distinct tokens minted for oauth2-distinct (more than the server's
    /// verified-token cache holds, so every request is a full verification).
    #[arg(long, default_value_t = 12_000)]
    distinct_tokens: usize,
    /// Idle authenticated sessions to open for the memory measurement (0 = skip).
    #[arg(long, default_value_t = 10_000)]
    idle_sessions: usize,
    /// Path of the server binary (default: next to this one).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Python with the `mcp` SDK and PyJWT, for the python-sdk mode.
    #[arg(long, default_value = "python3")]
    python: std::path::PathBuf,
    /// Node 22 for the typescript-sdk mode (default: the one `peers/run.sh`
    /// installs under peers/node_modules).
    #[arg(long)]
    node: Option<std::path::PathBuf>,
    /// Extra environment for mcp-auth-server, KEY=VALUE, repeatable (e.g.
    /// `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2` to compare
    /// allocators).
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
}

/// `--server-env` as pairs; an entry without `=` is refused by name.
fn server_env(args: &Args) -> Result<Vec<(String, String)>, String> {
    args.server_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--server-env: expected KEY=VALUE, got {kv:?}"))
        })
        .collect()
}

/// Where the peer servers' sources are (this crate's `peers/`).
const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers");
const PEER_MODES: [&str; 2] = ["python-sdk", "typescript-sdk"];

/// One mode's measurements.
struct Outcome {
    mode: String,
    requests: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    peak_rss_kib: u64,
    /// CPU time the server process spent during the load window.
    server_cpu: Duration,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU per answered call: what the server itself pays, apart from
    /// the load generator that shares the machine.
    fn cpu_per_request(&self) -> Duration {
        self.server_cpu
            .checked_div(u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX))
            .unwrap_or_default()
    }
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits until the process accepts connections on `port`; an error
    /// naming `what` if it exits first or takes longer than `timeout`.
    async fn listening(mut self, port: u16, timeout: Duration, what: &str) -> Result<Self, String> {
        let deadline = Instant::now() + timeout;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{what} exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("{what} did not start"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(self)
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time of the process so far, user and system, threads that have
    /// exited included (`utime` + `stime` of `/proc/PID/stat`).
    fn cpu_time(&self, ticks_per_second: u64) -> Result<Duration, String> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        // The command name (field 2) may contain spaces: count from its `)`.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        // utime and stime are fields 14 and 15: 12 and 13 after the `)`.
        match (field(11), field(12)) {
            (Some(user), Some(system)) => Ok(Duration::from_secs_f64(
                (user + system) as f64 / ticks_per_second as f64,
            )),
            _ => Err(format!("{path}: no utime/stime in {stat:?}")),
        }
    }
}

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`).
fn clock_ticks() -> Result<u64, String> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| "getconf CLK_TCK: not a positive number".to_owned())
}

/// The token issuer: an RS256 key whose JWKS and metadata this process serves.
struct Issuer {
    base: String,
    key: EncodingKey,
}

impl Issuer {
    async fn start() -> Result<Issuer, String> {
        let key = EncodingKey::from_rsa_pem(RSA_PEM).map_err(|e| format!("bench key: {e}"))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).map_err(|e| e.to_string())?;
        jwk.common.key_id = Some("bench".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("issuer bind: {e}"))?;
        let base = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let md = json!({
            "issuer": base, "jwks_uri": format!("{base}/jwks.json"),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "response_types_supported": ["code"],
        });
        let jwks = json!({ "keys": [jwk] });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(md) }),
            )
            .route(
                "/jwks.json",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Issuer { base, key })
    }

    fn mint(&self, audience: &str, n: usize) -> Result<String, String> {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("bench".into());
        h.typ = Some("at+jwt".into());
        let claims = json!({
            "iss": self.base, "aud": audience, "sub": "bench-user", "client_id": "bench",
            "scope": "mcp:tools", "jti": format!("bench-{n}"),
            "exp": jsonwebtoken::get_current_timestamp() + 3600,
        });
        jsonwebtoken::encode(&h, &claims, &self.key).map_err(|e| format!("minting: {e}"))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

async fn start_server(
    bin: &std::path::Path,
    mode: &str,
    issuer: &Issuer,
    sessions: usize,
    extra_env: &[(String, String)],
) -> Result<Server, String> {
    let port = free_port()?;
    let limit = (sessions + 64).to_string();
    let total = (sessions + 65).to_string();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .env("LOG_LEVEL", "warn")
        .env("HTTP_MAX_CONCURRENT_SESSIONS", &total)
        .env("MCP_MAX_SESSIONS_PER_PRINCIPAL", &limit)
        .env("MCP_MAX_ANONYMOUS_SESSIONS", &limit)
        .args([
            "--port",
            &port.to_string(),
            "--transport",
            "streamable-http",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match mode {
        "none" | "none-bearer" => cmd.env("MCP_AUTH_STRATEGY", "none"),
        "api_key" => cmd
            .env("MCP_AUTH_STRATEGY", "api_key")
            .env("MCP_API_KEYS", API_KEY),
        "oauth2" | "oauth2-distinct" => cmd
            .env("MCP_AUTH_STRATEGY", "oauth2")
            .env("MCP_OAUTH_ISSUER", &issuer.base)
            .env("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        other => return Err(format!("--modes: unknown mode {other:?}")),
    };
    let child = cmd
        .spawn()
        .map_err(|e| format!("--server {}: {e}", bin.display()))?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    };
    server
        .listening(
            port,
            Duration::from_secs(30),
            &format!("server in mode {mode}"),
        )
        .await
}

/// Starts a peer server (`python-sdk` or `typescript-sdk`) verifying the
/// issuer's RS256 tokens for its own URL.
async fn start_peer(args: &Args, mode: &str, issuer: &Issuer) -> Result<Server, String> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let jwks = format!("{}/jwks.json", issuer.base);
    let (program, script) = match mode {
        "python-sdk" => (args.python.clone(), "python_server.py"),
        _ => (
            args.node
                .clone()
                .unwrap_or_else(|| format!("{PEERS}/node_modules/node/bin/node").into()),
            "ts_server.mjs",
        ),
    };
    // The peer runs in peers/: a relative path given on the command line
    // means one relative to here (a bare name is looked up in PATH).
    let program = if program.components().count() > 1 {
        std::path::absolute(&program).map_err(|e| format!("{}: {e}", program.display()))?
    } else {
        program
    };
    let child = Command::new(&program)
        .current_dir(PEERS)
        .args([script, &port.to_string(), &issuer.base, &jwks, &url])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "{mode}: cannot start {} (run crates/mcp-auth-bench/peers/run.sh, which installs the peers): {e}",
                program.display()
            )
        })?;
    Server { child, url }
        .listening(port, Duration::from_secs(60), &format!("{mode} peer"))
        .await
}

/// Where a client's credentials come from.
#[derive(Clone)]
enum Creds {
    None,
    Header(&'static str, String),
    /// A pool of bearer tokens handed out round-robin, one per request.
    Rotating(Arc<Vec<String>>, Arc<AtomicUsize>),
}

impl Creds {
    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Creds::None => rb,
            Creds::Header(name, value) => rb.header(*name, value),
            Creds::Rotating(pool, next) => {
                let i = next.fetch_add(1, Ordering::Relaxed) % pool.len().max(1);
                match pool.get(i) {
                    Some(t) => rb.header("authorization", format!("Bearer {t}")),
                    None => rb,
                }
            }
        }
    }
}

fn post(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    session: Option<&str>,
    body: &'static str,
) -> reqwest::RequestBuilder {
    let mut rb = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    if let Some(s) = session {
        rb = rb.header("mcp-session-id", s);
    }
    creds.apply(rb)
}

/// Opens one MCP session and returns its id.
async fn open_session(http: &reqwest::Client, url: &str, creds: &Creds) -> Result<String, String> {
    let r = post(http, url, creds, None, INIT)
        .send()
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    let status = r.status();
    let id = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = r.bytes().await;
    let id = id.ok_or_else(|| format!("initialize answered {status} without a session"))?;
    let r = post(http, url, creds, Some(&id), INITIALIZED)
        .send()
        .await
        .map_err(|e| format!("initialized: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        return Err(format!("initialized answered {status}: {body}"));
    }
    Ok(id)
}

async fn load(
    server: &Server,
    mode: &str,
    creds: Creds,
    clients: usize,
    seconds: u64,
    ticks: u64,
) -> Result<Outcome, String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(|e| e.to_string())?;
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(open_session(&http, &server.url, &creds).await?);
    }
    // Warm-up: one call per session (connections, JWKS, first verification).
    for s in &sessions {
        let _ = post(&http, &server.url, &creds, Some(s), CALL)
            .send()
            .await
            .map_err(|e| format!("warm-up call: {e}"))?
            .bytes()
            .await;
    }
    let cpu_before = server.cpu_time(ticks)?;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for s in sessions {
        let (http, url, creds) = (http.clone(), server.url.clone(), creds.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(16_384);
            let mut errors = 0usize;
            while Instant::now() < end {
                let t = Instant::now();
                let ok = match post(&http, &url, &creds, Some(&s), CALL).send().await {
                    Ok(r) => {
                        let good = r.status().is_success();
                        match r.bytes().await {
                            Ok(b) => good && b.windows(8).any(|w| w == b"\"result\""),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed();
    let server_cpu = server.cpu_time(ticks)?.saturating_sub(cpu_before);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Outcome {
        mode: mode.to_owned(),
        requests: all.len(),
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        peak_rss_kib: server.status_kib("VmHWM:"),
        server_cpu,
    })
}

/// RSS of the server: with one session, with `n` more idle ones, and after
/// all of them were ended with `DELETE` (what parking idle sessions could
/// give back at best with the server's allocator).
struct IdleMemory {
    one_kib: u64,
    idle_kib: u64,
    ended_kib: u64,
}

async fn idle_sessions(
    bin: &std::path::Path,
    issuer: &Issuer,
    n: usize,
    extra_env: &[(String, String)],
) -> Result<IdleMemory, String> {
    let server = start_server(bin, "oauth2", issuer, n, extra_env).await?;
    let token = issuer.mint(&server.url, 0)?;
    let creds = Creds::Header("authorization", format!("Bearer {token}"));
    let http = reqwest::Client::new();
    open_session(&http, &server.url, &creds).await?;
    let one_kib = server.status_kib("VmRSS:");
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, url, creds, next) = (
            http.clone(),
            server.url.clone(),
            creds.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                ids.push(open_session(&http, &url, &creds).await?);
            }
            Ok::<Vec<String>, String>(ids)
        }));
    }
    let mut batches = Vec::new();
    for t in tasks {
        batches.push(t.await.map_err(|e| e.to_string())??);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = server.status_kib("VmRSS:");
    let mut tasks = Vec::new();
    for ids in batches {
        let (http, url, creds) = (http.clone(), server.url.clone(), creds.clone());
        tasks.push(tokio::spawn(async move {
            for id in ids {
                let r = creds
                    .apply(http.delete(&url).header("mcp-session-id", &id))
                    .send()
                    .await
                    .map_err(|e| format!("DELETE: {e}"))?;
                if !r.status().is_success() {
                    return Err(format!("DELETE answered {}", r.status()));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    // Allocators give freed memory back on their own schedule (jemalloc's
    // default decay is 10 s): wait that long before reading.
    tokio::time::sleep(Duration::from_secs(12)).await;
    Ok(IdleMemory {
        one_kib,
        idle_kib,
        ended_kib: server.status_kib("VmRSS:"),
    })
}

async fn run(args: Args) -> Result<(), String> {
    let bin = match args.server.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("mcp-auth-server"),
    };
    if args.clients == 0 || args.seconds == 0 {
        return Err("--clients and --seconds must be at least 1".into());
    }
    const MODES: [&str; 7] = [
        "none",
        "none-bearer",
        "api_key",
        "oauth2",
        "oauth2-distinct",
        "python-sdk",
        "typescript-sdk",
    ];
    if let Some(bad) = args.modes.iter().find(|m| !MODES.contains(&m.as_str())) {
        return Err(format!(
            "--modes: unknown mode {bad:?} (expected {})",
            MODES.join(", ")
        ));
    }
    if !bin.exists() {
        return Err(format!(
            "--server: {} does not exist (build it with `cargo build --release -p mcp-auth-server`)",
            bin.display()
        ));
    }
    let ticks = clock_ticks()?;
    let extra_env = server_env(&args)?;
    let issuer = Arc::new(Issuer::start().await?);
    let mut outcomes: Vec<Outcome> = Vec::new();
    for mode in &args.modes {
        let server = if PEER_MODES.contains(&mode.as_str()) {
            start_peer(&args, mode, &issuer).await?
        } else {
            start_server(&bin, mode, &issuer, args.clients, &extra_env).await?
        };
        let creds = match mode.as_str() {
            "none" => Creds::None,
            "api_key" => Creds::Header("x-api-key", API_KEY.into()),
            "oauth2" | "none-bearer" | "python-sdk" | "typescript-sdk" => {
                // One token per client would need per-client creds; the
                // same token for all shows the cached path just the same.
                Creds::Header(
                    "authorization",
                    format!("Bearer {}", issuer.mint(&server.url, 0)?),
                )
            }
            _ => {
                eprintln!("minting {} distinct tokens...", args.distinct_tokens);
                let mut handles = Vec::new();
                let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
                for w in 0..workers {
                    let (issuer, url, total) =
                        (issuer.clone(), server.url.clone(), args.distinct_tokens);
                    handles.push(tokio::task::spawn_blocking(move || {
                        (w..total)
                            .step_by(workers)
                            .map(|i| issuer.mint(&url, i + 1))
                            .collect::<Result<Vec<_>, _>>()
                    }));
                }
                let mut pool = Vec::with_capacity(args.distinct_tokens);
                for h in handles {
                    pool.extend(h.await.map_err(|e| e.to_string())??);
                }
                Creds::Rotating(Arc::new(pool), Arc::new(AtomicUsize::new(0)))
            }
        };
        eprintln!("{mode}: {} clients for {} s", args.clients, args.seconds);
        let o = load(&server, mode, creds, args.clients, args.seconds, ticks).await?;
        outcomes.push(o);
    }

    let baseline = outcomes
        .iter()
        .find(|o| o.mode == "none")
        .map(|o| (o.rate(), o.p99, o.cpu_per_request()));
    println!(
        "| mode | requests/s | p50 | p99 | errors | peak RSS | server CPU per call | throughput vs none | p99 vs none | server CPU vs none |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let (ratio, dp99, dcpu) = match baseline {
            Some((rate, p99, cpu)) => (
                format!("{:.2}×", o.rate() / rate),
                format!("{:+.3} ms", (o.p99.as_secs_f64() - p99.as_secs_f64()) * 1e3),
                format!(
                    "{:.2}×",
                    o.cpu_per_request().as_secs_f64() / cpu.as_secs_f64().max(1e-9)
                ),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {:.0} | {:.3} ms | {:.3} ms | {} | {:.1} MiB | {:.1} µs | {ratio} | {dp99} | {dcpu} |",
            o.mode,
            o.rate(),
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3,
            o.errors,
            o.peak_rss_kib as f64 / 1024.0,
            o.cpu_per_request().as_secs_f64() * 1e6,
        );
    }
    // Ours against the peers, each with the same RS256 tokens over JWKS: with
    // a repeated token (our verified-token cache answers; the peers verify
    // every time) and with every token distinct (a full verification each).
    let rate_of = |mode: &str| outcomes.iter().find(|o| o.mode == mode).map(Outcome::rate);
    for ours in ["oauth2", "oauth2-distinct"] {
        let Some(rate) = rate_of(ours) else { continue };
        for peer in PEER_MODES {
            if let Some(theirs) = rate_of(peer).filter(|r| *r > 0.0) {
                println!("\n{ours} throughput vs {peer}: {:.1}×", rate / theirs);
            }
        }
    }
    if args.idle_sessions > 0 {
        let m = idle_sessions(&bin, &issuer, args.idle_sessions, &extra_env).await?;
        println!(
            "\nidle sessions: {} authenticated (oauth2) sessions: RSS {:.1} MiB (was {:.1} MiB with one session; {:.2} KiB per session); {:.1} MiB after ending them all (DELETE)",
            args.idle_sessions,
            m.idle_kib as f64 / 1024.0,
            m.one_kib as f64 / 1024.0,
            m.idle_kib.saturating_sub(m.one_kib) as f64 / args.idle_sessions as f64,
            m.ended_kib as f64 / 1024.0,
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("mcp-auth-bench: {e}");
        std::process::exit(1);
    }
}
