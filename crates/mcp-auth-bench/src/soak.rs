//! The soak (`--soak-seconds`): a mixed load for minutes against one
//! `oauth2` server, its RSS, open file descriptors and threads sampled
//! every second into a CSV file (`--soak-csv`), to show that nothing grows
//! after the warm-up. `soak_plot.py` draws the samples.
//!
//! The mix, all at once: sessions opened, used and ended (`DELETE`); logins
//! (every session of those workers with a token never seen before, so each
//! is verified afresh and remembered); refusals (a forged token, no
//! credentials); event streams (`GET`) held open for two seconds; and
//! sessions left idle long enough to be parked, then used again. Every
//! answer is checked against what its request must get.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    measure::{Creds, call, open_session},
    process::{Issuer, Server, start_server},
};

/// Counters shared by the workers.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    streams: AtomicU64,
    unexpected: AtomicU64,
    first_unexpected: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_unexpected
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }
}

/// One sample of the server process.
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    requests: u64,
}

fn sample(server: &Server, start: Instant, tally: &Tally) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    Sample {
        t: start.elapsed().as_secs_f64(),
        rss_kib: server.status_kib("VmRSS:"),
        fds,
        threads: server.status_kib("Threads:"),
        requests: tally.ok.load(Ordering::Relaxed) + tally.refused.load(Ordering::Relaxed),
    }
}

/// Runs the soak for `seconds` (the first `warmup` not judged) and writes
/// the samples to `csv`.
pub(crate) async fn soak(
    bin: &std::path::Path,
    issuer: Arc<Issuer>,
    seconds: u64,
    warmup: u64,
    csv: &std::path::Path,
    extra_env: &[(String, String)],
) -> Result<(), String> {
    let mut env = extra_env.to_vec();
    env.push(("MCP_SESSION_PARK_AFTER".into(), "5000".into()));
    env.push(("HTTP_AUTH_FAILURE_LIMIT".into(), "1000000000".into()));
    let server = start_server(bin, "oauth2", &issuer, 256, &env).await?;
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicUsize::new(1));
    let mut workers = Vec::new();
    let shared_token = issuer.mint(&url, 0)?;
    for w in 0..16 {
        let (http, url, tally, stop, issuer, logins) = (
            http.clone(),
            url.clone(),
            tally.clone(),
            stop.clone(),
            issuer.clone(),
            logins.clone(),
        );
        let shared = Creds::Header("authorization", format!("Bearer {shared_token}"));
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = match w % 8 {
                    // Sessions: open, 20 calls, end.
                    0..=2 => session(&http, &url, &shared, 20, &tally).await,
                    // Logins: a token never seen before for each session.
                    3 => {
                        let n = logins.fetch_add(1, Ordering::Relaxed);
                        match issuer.mint(&url, n) {
                            Ok(t) => {
                                let fresh = Creds::Header("authorization", format!("Bearer {t}"));
                                session(&http, &url, &fresh, 5, &tally).await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    // Refusals: a forged token and no credentials.
                    4 => refusals(&http, &url, &tally).await,
                    // Event streams held open for two seconds.
                    5 => stream(&http, &url, &shared, &tally).await,
                    // Idle sessions: parked after 5 s, then used and ended.
                    _ => idle(&http, &url, &shared, &tally, &stop).await,
                };
                if let Err(e) = r {
                    tally.unexpected(e);
                }
            }
        }));
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(sample(&server, start, &tally));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let mut out = String::from("seconds,rss_mib,open_fds,threads,requests\n");
    for s in &samples {
        let _ = writeln!(
            out,
            "{:.1},{:.2},{},{},{}",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.requests
        );
    }
    if let Some(dir) = csv.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(csv, out).map_err(|e| format!("{}: {e}", csv.display()))?;
    report(&samples, warmup, &tally, csv);
    Ok(())
}

fn report(samples: &[Sample], warmup: u64, tally: &Tally, csv: &std::path::Path) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup as f64).collect();
    let window = (after.len() / 5).max(1);
    let mean = |xs: &[&Sample], f: fn(&Sample) -> f64| {
        xs.iter().map(|s| f(s)).sum::<f64>() / xs.len().max(1) as f64
    };
    let (first, last) = (
        &after[..window.min(after.len())],
        &after[after.len().saturating_sub(window)..],
    );
    let rss = |s: &Sample| s.rss_kib as f64 / 1024.0;
    let fds = |s: &Sample| s.fds as f64;
    let threads = |s: &Sample| s.threads as f64;
    let max = |f: fn(&Sample) -> f64| after.iter().map(|s| f(s)).fold(0.0, f64::max);
    let secs = samples.last().map_or(0.0, |s| s.t);
    let requests = samples.last().map_or(0, |s| s.requests);
    println!(
        "\nsoak: {secs:.0} s, {requests} requests ({:.0}/s), {} event streams; unexpected answers: {}{}",
        requests as f64 / secs.max(1.0),
        tally.streams.load(Ordering::Relaxed),
        tally.unexpected.load(Ordering::Relaxed),
        tally
            .first_unexpected
            .lock()
            .map(|f| f
                .as_ref()
                .map(|w| format!(" (first: {w})"))
                .unwrap_or_default())
            .unwrap_or_default(),
    );
    println!(
        "after the {warmup} s warm-up, first fifth against last fifth (max): RSS {:.1} → {:.1} MiB ({:.1}), open fds {:.0} → {:.0} ({:.0}), threads {:.0} → {:.0} ({:.0}); samples in {}",
        mean(first, rss),
        mean(last, rss),
        max(rss),
        mean(first, fds),
        mean(last, fds),
        max(fds),
        mean(first, threads),
        mean(last, threads),
        max(threads),
        csv.display()
    );
}

async fn check(
    r: Result<reqwest::Response, reqwest::Error>,
    want: u16,
    what: &str,
    tally: &Tally,
) -> Result<(), String> {
    let r = r.map_err(|e| format!("{what}: {e}"))?;
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    if status != want {
        return Err(format!(
            "{what}: answered {status}, expected {want}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    if want < 300 {
        tally.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.refused.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn end(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    sid: &str,
    tally: &Tally,
) -> Result<(), String> {
    let rb = creds.apply(http.delete(url).header("mcp-session-id", sid), "DELETE")?;
    check(rb.send().await, 204, "DELETE", tally).await
}

async fn session(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    calls: usize,
    tally: &Tally,
) -> Result<(), String> {
    let sid = open_session(http, url, creds).await?;
    tally.ok.fetch_add(2, Ordering::Relaxed);
    for _ in 0..calls {
        check(
            call(http, url, creds, &sid)?.send().await,
            200,
            "tools/call",
            tally,
        )
        .await?;
    }
    end(http, url, creds, &sid, tally).await
}

async fn refusals(http: &reqwest::Client, url: &str, tally: &Tally) -> Result<(), String> {
    let forged = Creds::Header(
        "authorization",
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln".into(),
    );
    check(
        call(http, url, &forged, "")?.send().await,
        401,
        "forged token",
        tally,
    )
    .await?;
    check(
        call(http, url, &Creds::None, "")?.send().await,
        401,
        "no credentials",
        tally,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

async fn stream(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    tally: &Tally,
) -> Result<(), String> {
    let sid = open_session(http, url, creds).await?;
    tally.ok.fetch_add(2, Ordering::Relaxed);
    let rb = creds.apply(
        http.get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid),
        "GET",
    )?;
    let r = rb.send().await.map_err(|e| format!("GET stream: {e}"))?;
    if r.status() != 200 {
        return Err(format!("GET stream answered {}", r.status()));
    }
    tally.streams.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(r);
    end(http, url, creds, &sid, tally).await
}

async fn idle(
    http: &reqwest::Client,
    url: &str,
    creds: &Creds,
    tally: &Tally,
    stop: &AtomicBool,
) -> Result<(), String> {
    let sid = open_session(http, url, creds).await?;
    tally.ok.fetch_add(2, Ordering::Relaxed);
    // Parked after 5 s idle (checked every 2.5 s).
    for _ in 0..80 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(
        call(http, url, creds, &sid)?.send().await,
        200,
        "call after parking",
        tally,
    )
    .await?;
    end(http, url, creds, &sid, tally).await
}
