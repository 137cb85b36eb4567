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
//!
//! The `oauth2-dpop` mode is `oauth2` with sender-constrained tokens (RFC
//! 9449): the server runs with `MCP_DPOP=require`, each client has its own
//! EC P-256 key and an RS256 token bound to it (`cnf.jkt`), and signs a
//! fresh ES256 proof (`jti`, `htm`, `htu`, `iat`, `ath`) for every request,
//! which the server verifies (signature, thumbprint, replay record) on top
//! of the token. Run it beside `oauth2` and `none` to read what a proof
//! costs, e.g. `--modes none,oauth2,oauth2-dpop --idle-sessions 0`.
//!
//! The `facade` modes run the server as its own authorization server (the
//! login facade of `mcp-auth-proxy`) in front of a minimal login provider
//! this process serves: `facade` and `facade-distinct` drive the same load
//! with the facade's own ES256 access tokens (one token, or a pool of
//! distinct ones obtained from its token endpoint), to compare with the
//! RS256-over-JWKS `oauth2` modes; `facade-token` and `facade-token-redis`
//! measure the facade's logins and token endpoint (`authorization_code`
//! and `refresh_token` grants) with the memory store and with a
//! `redis-server` this process starts.
//!
//! `--bodies N` measures what large request bodies cost the server in
//! memory: N bodies of 4 MiB at once (over the JSON value bound, just under
//! it, one string), and one body of a million values under a 64 MiB limit
//! (`bodies`).
//!
//! Modules: `process` starts and stops the servers under test (and the token
//! issuer they trust), `measure` drives the load and samples the server,
//! `report` prints the results.

mod bodies;
mod dpop;
mod facade;
mod measure;
mod process;
mod report;
mod soak;

use std::{sync::Arc, time::Duration};

use clap::Parser;

use crate::{
    measure::{Outcome, clock_ticks, creds_for, idle_sessions, load},
    process::{Issuer, PEER_MODES, start_peer, start_redis, start_server},
};

const API_KEY: &str = "bench-api-key-0123456789abcdef";

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
    /// oauth2-dpop (oauth2 with `MCP_DPOP=require`: a key and bound token per
    /// client, a fresh ES256 proof per request), oauth2-observed (oauth2 with
    /// the Prometheus metrics and the audit log on; oauth2-metrics,
    /// oauth2-audit: one of them), oauth2-redis (oauth2 with the sessions
    /// and counters in Redis, see `--redis-server`), oauth2-stateless (oauth2
    /// on the 2026-07-28 wire: no sessions, each call self-contained), the peers python-sdk, typescript-sdk (see `--python`, `--node`),
    /// none-bearer (no auth, but clients send the oauth2 mode's token: the
    /// cost of carrying the header, apart from checking it), facade and
    /// facade-distinct (the load with the login facade's own tokens), and
    /// facade-token, facade-token-redis (the facade's token endpoint, memory
    /// and Redis store; see `--logins`, `--redis-server`).
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
    /// Logins (then code exchanges) in the facade-token modes; at least
    /// `--clients`, each worker's refresh chain starts from one of them.
    #[arg(long, default_value_t = 5000)]
    logins: usize,
    /// At most this many refresh_token requests per facade-token mode (they
    /// also end after `--seconds`). Each rotation leaves a marker in the
    /// store for the refresh lifetime (30 days) to catch reuse, and the
    /// memory store holds 100 000 entries: past that it refuses.
    #[arg(long, default_value_t = 50_000)]
    refreshes: usize,
    /// `redis-server` for oauth2-redis and facade-token-redis (started on a free loopback
    /// port, without persistence, stopped at the end).
    #[arg(long, default_value = "redis-server")]
    redis_server: std::path::PathBuf,
    /// Idle authenticated sessions to open for the memory measurement (0 = skip).
    #[arg(long, default_value_t = 10_000)]
    idle_sessions: usize,
    /// Large bodies sent at once for the body-memory measurement (0 =
    /// skip): each row's server's peak RSS against its RSS before.
    #[arg(long, default_value_t = 0)]
    bodies: usize,
    /// Instead of the modes: a soak of this many seconds (a mixed load:
    /// sessions, logins, refusals, event streams, parked sessions) with the
    /// server's RSS, open file descriptors and threads sampled every second.
    #[arg(long, default_value_t = 0)]
    soak_seconds: u64,
    /// The soak's first seconds, not judged.
    #[arg(long, default_value_t = 60)]
    soak_warmup: u64,
    /// Where the soak's samples go (CSV; `soak_plot.py` draws them).
    #[arg(long, default_value = "target/soak/samples.csv")]
    soak_csv: std::path::PathBuf,
    /// The idle-session measurement with the sessions in Redis (see
    /// `--redis-server`) instead of the server's memory.
    #[arg(long)]
    idle_redis: bool,
    /// `MCP_SESSION_PARK_AFTER` for the idle-session measurement, in ms: the
    /// sessions are measured open, then once parked (0 = never parked).
    #[arg(long, default_value_t = 1000)]
    park_after_ms: u64,
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
    /// Run mcp-auth-server on these CPUs only (`taskset -c LIST`, e.g. `0`),
    /// and this program elsewhere (`taskset -c 1 mcp-auth-bench ...`): the
    /// load and the server then stop taking turns on the same cores, and a
    /// mode's server CPU per call varies within a few percent from run to
    /// run instead of a third (docs/PERFORMANCE.md, "Metrics and the audit
    /// log"). The peers' servers and redis-server are not pinned.
    #[arg(long = "server-cpus", value_name = "LIST")]
    server_cpus: Option<String>,
    /// Run the modes this many times, in turn (`a, b, a, b, ...`), and
    /// report each mode's median with its range, and its ratio to the first
    /// mode paired round by round: a slow spell of the machine then moves
    /// both sides of a pair. For differences of a few percent, which one
    /// run cannot tell from noise (docs/PERFORMANCE.md, "Metrics and the
    /// audit log"). Not with the facade-token modes.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
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

/// `--server-cpus` as taskset takes it: digits, `,` and `-` (taskset says
/// which CPUs do not exist).
fn cpu_list(cpus: &str) -> Result<String, String> {
    if cpus.is_empty()
        || !cpus
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
    {
        return Err(format!(
            "--server-cpus: expected a CPU list such as 0 or 0-1,3, got {cpus:?}"
        ));
    }
    Ok(cpus.to_owned())
}

/// A `redis-server` when `wanted` (see `--redis-server`), and the server's
/// environment (`extra` and, with Redis, `MCP_SESSION_STORE` naming it).
/// Keep the first for as long as the server runs.
async fn store_env(
    args: &Args,
    wanted: bool,
    extra: &[(String, String)],
) -> Result<(Option<process::Server>, Vec<(String, String)>), String> {
    let redis = match wanted {
        true => Some(start_redis(&args.redis_server).await?),
        false => None,
    };
    let mut env = extra.to_vec();
    if let Some(r) = &redis {
        env.push(("MCP_SESSION_STORE".into(), r.url.clone()));
    }
    Ok((redis, env))
}

async fn run(args: Args) -> Result<(), String> {
    let bin = match args.server.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("mcp-auth-server"),
    };
    if args.clients == 0 || args.seconds == 0 || args.rounds == 0 {
        return Err("--clients, --seconds and --rounds must be at least 1".into());
    }
    if args.rounds > 1 && args.modes.iter().any(|m| m.starts_with("facade-token")) {
        return Err("--rounds: the facade-token modes run once; leave them out".into());
    }
    const MODES: [&str; 17] = [
        "none",
        "none-bearer",
        "api_key",
        "oauth2",
        "oauth2-observed",
        "oauth2-redis",
        "oauth2-stateless",
        "oauth2-metrics",
        "oauth2-audit",
        "oauth2-distinct",
        "oauth2-dpop",
        "python-sdk",
        "typescript-sdk",
        "facade",
        "facade-distinct",
        "facade-token",
        "facade-token-redis",
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
    if args.modes.iter().any(|m| m.starts_with("facade-token")) && args.logins < args.clients {
        return Err(format!(
            "--logins ({}) must be at least --clients ({}): each client's refresh chain starts from one login",
            args.logins, args.clients
        ));
    }
    let ticks = clock_ticks()?;
    let extra_env = server_env(&args)?;
    if let Some(cpus) = &args.server_cpus {
        process::pin_servers(cpu_list(cpus)?)?;
    }
    let issuer = Arc::new(Issuer::start().await?);
    if args.soak_seconds > 0 {
        return soak::soak(
            &bin,
            issuer,
            args.soak_seconds,
            args.soak_warmup,
            &args.soak_csv,
            &extra_env,
        )
        .await;
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut rounds: Vec<Vec<Outcome>> = Vec::new();
    let mut steps = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            eprintln!("round {round} of {}", args.rounds);
        }
        for mode in &args.modes {
            if mode.starts_with("facade-token") {
                // Declared first, dropped last: the server goes before its store.
                let (redis, env) =
                    store_env(&args, mode == "facade-token-redis", &extra_env).await?;
                let server = start_server(&bin, mode, &issuer, args.clients, &env).await?;
                let store = if redis.is_some() { "redis" } else { "memory" };
                let s = facade::token_endpoint(
                    &server,
                    store,
                    (args.logins, args.refreshes),
                    args.clients,
                    args.seconds,
                    ticks,
                )
                .await?;
                steps.extend(s);
                continue;
            }
            // Declared first, dropped last: the server goes before its store.
            let (_redis, env) = store_env(&args, mode == "oauth2-redis", &extra_env).await?;
            let server = if PEER_MODES.contains(&mode.as_str()) {
                start_peer(&args, mode, &issuer).await?
            } else {
                start_server(&bin, mode, &issuer, args.clients, &env).await?
            };
            let creds = if mode.starts_with("facade") {
                facade::creds(&server, mode, args.distinct_tokens, args.clients).await?
            } else {
                creds_for(
                    mode,
                    &issuer,
                    &server.url,
                    args.distinct_tokens,
                    args.clients,
                )
                .await?
            };
            eprintln!("{mode}: {} clients for {} s", args.clients, args.seconds);
            let o = load(&server, mode, creds, args.clients, args.seconds, ticks).await?;
            outcomes.push(o);
        }
        rounds.push(std::mem::take(&mut outcomes));
    }
    match rounds.as_slice() {
        [] => {}
        [one] if !one.is_empty() => report::outcomes(one),
        [_] => {}
        _ => report::rounds(&rounds),
    }
    if !steps.is_empty() {
        report::token_endpoint(&steps, args.clients);
    }
    if args.bodies > 0 {
        let rows = bodies::bodies(&bin, &issuer, args.bodies, &extra_env).await?;
        report::bodies(&rows);
    }
    if args.idle_sessions > 0 {
        let park = (args.park_after_ms > 0).then(|| Duration::from_millis(args.park_after_ms));
        // Declared first, dropped last: the server goes before its store.
        let (_redis, env) = store_env(&args, args.idle_redis, &extra_env).await?;
        let m = idle_sessions(&bin, &issuer, args.idle_sessions, park, &env).await?;
        report::idle_memory(args.idle_sessions, &m);
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

#[cfg(test)]
mod tests {
    use super::cpu_list;

    #[test]
    fn server_cpus_take_a_cpu_list_and_nothing_a_shell_would_read() {
        for ok in ["0", "1", "0-1,3"] {
            assert_eq!(cpu_list(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "0;rm", "0 1", "all"] {
            let err = cpu_list(bad).unwrap_err();
            assert!(err.starts_with("--server-cpus:"), "{err}");
        }
    }
}
