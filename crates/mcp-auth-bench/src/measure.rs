//! Measurement: the clients' credentials, MCP sessions and the load they
//! drive (requests, latency percentiles), the idle-session memory run, and
//! the server's RSS and CPU time sampled from `/proc`.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    API_KEY,
    dpop::DpopClient,
    process::{Issuer, Server, start_server},
};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-auth-bench","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_time","arguments":{}}}"#;
/// The same call on the 2026-07-28 wire: no session, the client's context
/// in `_meta` and the method and tool in headers.
const STATELESS_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_time","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// One mode's measurements.
pub(crate) struct Outcome {
    pub(crate) mode: String,
    pub(crate) requests: usize,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) peak_rss_kib: u64,
    /// CPU time the server process spent during the load window.
    pub(crate) server_cpu: Duration,
}

impl Outcome {
    pub(crate) fn rate(&self) -> f64 {
        rate(self.requests, self.elapsed)
    }

    /// Server CPU per answered call: what the server itself pays, apart from
    /// the load generator that shares the machine.
    pub(crate) fn cpu_per_request(&self) -> Duration {
        cpu_per_request(self.server_cpu, self.requests)
    }
}

/// Requests per second.
pub(crate) fn rate(requests: usize, elapsed: Duration) -> f64 {
    requests as f64 / elapsed.as_secs_f64()
}

/// `server_cpu` shared out over `requests` calls.
pub(crate) fn cpu_per_request(server_cpu: Duration, requests: usize) -> Duration {
    server_cpu
        .checked_div(u32::try_from(requests.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default()
}

/// A `kB` field of process `pid`'s `/proc/PID/status` (0 when unreadable).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Readings of the server process from `/proc`.
impl Server {
    pub(crate) fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.pid(), field)
    }

    /// CPU time of the process so far, user and system, threads that have
    /// exited included (`utime` + `stime` of `/proc/PID/stat`).
    pub(crate) fn cpu_time(&self, ticks_per_second: u64) -> Result<Duration, String> {
        let path = format!("/proc/{}/stat", self.pid());
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
pub(crate) fn clock_ticks() -> Result<u64, String> {
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

/// Where a client's credentials come from.
#[derive(Clone)]
pub(crate) enum Creds {
    None,
    Header(&'static str, String),
    /// A pool of bearer tokens handed out round-robin, one per request.
    Rotating(Arc<Vec<String>>, Arc<AtomicUsize>),
    /// DPoP clients (`oauth2-dpop`) and the index of the one in use: each
    /// session sends its own client's bound token and a fresh proof on
    /// every request (see [`Creds::for_client`]).
    Dpop(Arc<Vec<DpopClient>>, usize),
}

impl Creds {
    /// What client `i` sends: its own DPoP client, or the shared credentials.
    pub(crate) fn for_client(&self, i: usize) -> Creds {
        match self {
            Creds::Dpop(pool, _) => Creds::Dpop(pool.clone(), i % pool.len().max(1)),
            other => other.clone(),
        }
    }

    /// Adds the credentials to a request with `method` (a DPoP proof names
    /// it).
    pub(crate) fn apply(
        &self,
        rb: reqwest::RequestBuilder,
        method: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match self {
            Creds::None => rb,
            Creds::Header(name, value) => rb.header(*name, value),
            Creds::Rotating(pool, next) => {
                let i = next.fetch_add(1, Ordering::Relaxed) % pool.len().max(1);
                match pool.get(i) {
                    Some(t) => rb.header("authorization", format!("Bearer {t}")),
                    None => rb,
                }
            }
            Creds::Dpop(pool, i) => {
                let client = pool.get(*i).ok_or("no DPoP client")?;
                rb.header("authorization", &client.authorization)
                    .header("dpop", client.proof(method)?)
            }
        })
    }
}

/// The credentials the clients of `mode` send: none, the API key, the same
/// token on every request, (`oauth2-dpop`) a DPoP key and bound token per
/// client, or (`oauth2-distinct`) a pool of distinct tokens minted for the
/// server at `url`.
pub(crate) async fn creds_for(
    mode: &str,
    issuer: &Arc<Issuer>,
    url: &str,
    distinct_tokens: usize,
    clients: usize,
) -> Result<Creds, String> {
    Ok(match mode {
        "none" => Creds::None,
        "api_key" => Creds::Header("x-api-key", API_KEY.into()),
        "oauth2" | "oauth2-observed" | "oauth2-metrics" | "oauth2-audit" | "oauth2-redis"
        | "oauth2-stateless" | "none-bearer" | "python-sdk" | "typescript-sdk" => {
            // One token per client would need per-client creds; the
            // same token for all shows the cached path just the same.
            Creds::Header("authorization", format!("Bearer {}", issuer.mint(url, 0)?))
        }
        "oauth2-dpop" => {
            let pool = (0..clients)
                .map(|i| DpopClient::new(issuer, url, i))
                .collect::<Result<Vec<_>, _>>()?;
            Creds::Dpop(Arc::new(pool), 0)
        }
        _ => {
            eprintln!("minting {distinct_tokens} distinct tokens...");
            let mut handles = Vec::new();
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            for w in 0..workers {
                let (issuer, url, total) = (issuer.clone(), url.to_owned(), distinct_tokens);
                handles.push(tokio::task::spawn_blocking(move || {
                    (w..total)
                        .step_by(workers)
                        .map(|i| issuer.mint(&url, i + 1))
                        .collect::<Result<Vec<_>, _>>()
                }));
            }
            let mut pool = Vec::with_capacity(distinct_tokens);
            for h in handles {
                pool.extend(h.await.map_err(|e| e.to_string())??);
            }
            Creds::Rotating(Arc::new(pool), Arc::new(AtomicUsize::new(0)))
        }
    })
}

fn post(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    session: Option<&str>,
    body: &'static str,
) -> Result<reqwest::RequestBuilder, String> {
    let mut rb = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    if let Some(s) = session {
        rb = rb.header("mcp-session-id", s);
    }
    creds.apply(rb, "POST")
}

/// A self-contained `tools/call` on the 2026-07-28 (stateless) wire.
fn post_stateless(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
) -> Result<reqwest::RequestBuilder, String> {
    let rb = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get_time")
        .body(STATELESS_CALL);
    creds.apply(rb, "POST")
}

/// The call of `mode`: in session `s`, or stateless (`s` empty).
pub(crate) fn call(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    s: &str,
) -> Result<reqwest::RequestBuilder, String> {
    if s.is_empty() {
        post_stateless(http, url, creds)
    } else {
        post(http, url, creds, Some(s), CALL)
    }
}

/// Opens one MCP session and returns its id.
pub(crate) async fn open_session(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
) -> Result<String, String> {
    let r = post(http, url, creds, None, INIT)?
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
    let r = post(http, url, creds, Some(&id), INITIALIZED)?
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

pub(crate) async fn load(
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
    // The stateless mode opens no session (its id stays empty).
    let stateless = mode.ends_with("-stateless");
    let mut sessions = Vec::with_capacity(clients);
    for i in 0..clients {
        let creds = creds.for_client(i);
        let id = match stateless {
            true => String::new(),
            false => open_session(&http, &server.url, &creds).await?,
        };
        sessions.push((id, creds));
    }
    // Warm-up: one call per session (connections, JWKS, first verification),
    // each of which must succeed: a mode whose calls fail stops here, with
    // the server's answer.
    for (s, creds) in &sessions {
        let r = call(&http, &server.url, creds, s)?
            .send()
            .await
            .map_err(|e| format!("{mode}: warm-up call: {e}"))?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| format!("{mode}: warm-up call: {e}"))?;
        if !(status.is_success() && is_result(&body)) {
            return Err(format!(
                "{mode}: warm-up call answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    let cpu_before = server.cpu_time(ticks)?;
    let rss_before = server.status_kib("VmRSS:");
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (s, creds) in sessions {
        let (http, url) = (http.clone(), server.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(16_384);
            let mut errors = 0usize;
            let mut first_error = None;
            while Instant::now() < end {
                // The request is built (for DPoP: its proof signed) inside
                // the timed span, as a client pays for it.
                let t = Instant::now();
                let failure = match call(&http, &url, &creds, &s) {
                    Ok(rb) => match rb.send().await {
                        Ok(r) => {
                            let status = r.status();
                            match r.bytes().await {
                                Ok(b) if status.is_success() && is_result(&b) => None,
                                Ok(b) => Some(format!(
                                    "answered {status}: {}",
                                    String::from_utf8_lossy(&b[..b.len().min(300)])
                                )),
                                Err(e) => Some(format!("reading the answer: {e}")),
                            }
                        }
                        Err(e) => Some(format!("sending: {e}")),
                    },
                    Err(e) => Some(e),
                };
                match failure {
                    None => lat.push(t.elapsed()),
                    Some(why) => {
                        errors += 1;
                        first_error.get_or_insert(why);
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (lat, e, why) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
        first_error = first_error.or(why);
    }
    if let Some(why) = first_error {
        eprintln!("{mode}: {errors} calls failed; the first {why}");
    }
    let elapsed = start.elapsed();
    let server_cpu = server.cpu_time(ticks)?.saturating_sub(cpu_before);
    if stateless {
        // Nothing per request outlives its response: the server's memory
        // after the load is what it was after the warm-up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        eprintln!(
            "{mode}: server RSS {} after the warm-up, {} after {} requests",
            mib(rss_before),
            mib(server.status_kib("VmRSS:")),
            all.len()
        );
    }
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

/// Whether a response body holds a JSON-RPC result (a call that counts).
fn is_result(body: &[u8]) -> bool {
    body.windows(8).any(|w| w == b"\"result\"")
}

/// RSS of the server: with one session, with `n` more idle ones, and after
/// all of them were ended with `DELETE` (what parking idle sessions could
/// give back at best with the server's allocator).
pub(crate) struct IdleMemory {
    pub(crate) one_kib: u64,
    pub(crate) idle_kib: u64,
    /// The highest RSS sampled (every 100 ms) while they were opened, and
    /// how long opening them took.
    pub(crate) peak_kib: u64,
    pub(crate) open_time: Duration,
    /// After the sessions were parked (`park`), and how many of a sample of
    /// them answered a call afterwards.
    pub(crate) parked: Option<(u64, usize, usize)>,
    pub(crate) ended_kib: u64,
}

pub(crate) async fn idle_sessions(
    bin: &std::path::Path,
    issuer: &Issuer,
    n: usize,
    park: Option<Duration>,
    extra_env: &[(String, String)],
) -> Result<IdleMemory, String> {
    let mut env = extra_env.to_vec();
    env.push((
        "MCP_SESSION_PARK_AFTER".into(),
        park.map_or("0".into(), |d| d.as_millis().to_string()),
    ));
    let server = start_server(bin, "oauth2", issuer, n, &env).await?;
    let token = issuer.mint(&server.url, 0)?;
    let creds = Creds::Header("authorization", format!("Bearer {token}"));
    let http = reqwest::Client::new();
    open_session(&http, &server.url, &creds).await?;
    let one_kib = server.status_kib("VmRSS:");
    let next = Arc::new(AtomicUsize::new(0));
    let opening = Instant::now();
    let done = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let (pid, done) = (server.pid(), done.clone());
        tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(status_kib(pid, "VmRSS:"));
                tokio::select! {
                    () = done.notified() => return peak.max(status_kib(pid, "VmRSS:")),
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        })
    };
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
    let open_time = opening.elapsed();
    done.notify_one();
    let peak_kib = sampler.await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = server.status_kib("VmRSS:");
    let parked = match park {
        None => None,
        Some(after) => {
            // Parked once idle for `after` (checked every half of it), and
            // the allocator's own delay to give memory back (as below).
            tokio::time::sleep(after * 2 + Duration::from_secs(12)).await;
            let kib = server.status_kib("VmRSS:");
            // A parked session answers as before: a sample of them.
            let mut ok = 0;
            let sample: Vec<&String> = batches.iter().flatten().step_by((n / 100).max(1)).collect();
            for id in &sample {
                let r = post(&http, &server.url, &creds, Some(id), CALL)?
                    .send()
                    .await
                    .map_err(|e| format!("call after parking: {e}"))?;
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                if status.is_success() && is_result(&body) {
                    ok += 1;
                }
            }
            Some((kib, ok, sample.len()))
        }
    };
    let mut tasks = Vec::new();
    for ids in batches {
        let (http, url, creds) = (http.clone(), server.url.clone(), creds.clone());
        tasks.push(tokio::spawn(async move {
            for id in ids {
                let r = creds
                    .apply(http.delete(&url).header("mcp-session-id", &id), "DELETE")?
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
        peak_kib,
        open_time,
        parked,
        ended_kib: server.status_kib("VmRSS:"),
    })
}
