//! The legacy HTTP+SSE transport: a real SSE client (the official Python
//! SDK's `sse_client`) with an API key and with a JWT, session ownership,
//! the combined mode, and sessions ended by dropping the stream.
//!
//! The Python client tests are ignored by plain `cargo test`;
//! `tests/run-all.sh` installs the SDK (`INTEROP_PYTHON`) and runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{process::Stdio, time::Duration};

use common::{KEY, Server, command, tempdir};
use futures::StreamExt;

const BOB: &str = "bobs-key-0123456789abcdef";
const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes";

fn python_client(url: &str, headers: &[(&str, &str)]) -> Result<serde_json::Value, String> {
    let python = std::env::var("INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/sse_client.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(url)
        .args(headers.iter().map(|(k, v)| format!("{k}={v}")))
        .stdin(Stdio::null())
        .output()
        .expect("python with the mcp SDK (tests/run-all.sh installs it)");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `GET /sse` as `key`, the response as it comes.
async fn get_sse(c: &reqwest::Client, s: &Server, key: &str) -> reqwest::Response {
    c.get(sse_url(s))
        .header("accept", "text/event-stream")
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

fn sse_url(s: &Server) -> String {
    format!("{}/sse", s.base())
}

#[tokio::test]
#[ignore = "needs the official Python MCP SDK (tests/run-all.sh installs it)"]
async fn the_python_sse_client_works_with_an_api_key_and_with_a_jwt() {
    let s = Server::start(&[("MCP_TRANSPORT", "sse"), ("MCP_API_KEYS", KEY)]);
    let url = sse_url(&s);
    let r = tokio::task::spawn_blocking(move || python_client(&url, &[("X-API-Key", KEY)]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["tools"], serde_json::json!(["get_time", "whoami"]));
    assert_eq!(r["whoami"]["strategy"], "api_key");
    let url = sse_url(&s);
    let refused = tokio::task::spawn_blocking(move || python_client(&url, &[("X-API-Key", BOB)]))
        .await
        .unwrap();
    assert!(refused.unwrap_err().contains("401"));

    let s = Server::start(&[
        ("MCP_TRANSPORT", "sse"),
        ("MCP_AUTH_STRATEGY", "bearer"),
        ("MCP_JWT_SECRET", SECRET),
    ]);
    let dir = tempdir();
    let out = command(
        dir.path(),
        &[("MCP_JWT_SECRET", SECRET), ("MCP_SERVER_URL", &s.url())],
    )
    .args(["token", "--sub", "sse-user", "--scope", "mcp:tools"])
    .output()
    .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let url = sse_url(&s);
    let bearer = format!("Bearer {token}");
    let r = tokio::task::spawn_blocking(move || python_client(&url, &[("Authorization", &bearer)]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["whoami"]["subject"], "sse-user");
    assert_eq!(r["whoami"]["strategy"], "bearer");
}

#[tokio::test]
#[ignore = "needs the official Python MCP SDK (tests/run-all.sh installs it)"]
async fn the_combined_mode_serves_both_transports() {
    let s = Server::start(&[("MCP_TRANSPORT", "both"), ("MCP_API_KEYS", KEY)]);
    let url = sse_url(&s);
    let r = tokio::task::spawn_blocking(move || python_client(&url, &[("X-API-Key", KEY)]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["whoami"]["strategy"], "api_key");
    // Streamable HTTP on the same process.
    let r = common::post(&reqwest::Client::new(), &s.url(), common::INIT)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("mcp-session-id"));
}

#[tokio::test(flavor = "current_thread")]
async fn posts_into_someone_elses_sse_session_are_refused_and_closing_frees_the_slot() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "sse"),
        ("MCP_API_KEYS", &format!("{KEY},{BOB}")),
        ("MCP_MAX_SESSIONS_PER_PRINCIPAL", "1"),
    ]);
    let c = reqwest::Client::new();
    let (holder, endpoint) = common::sse_stream(&c, &s, KEY).await;
    assert!(endpoint.starts_with("/messages?session_id="), "{endpoint}");
    let sid = endpoint.split('=').nth(1).unwrap();
    assert!(sid.len() >= 32, "unguessable id: {sid}");
    let post = |key: Option<&str>| {
        let mut r = c
            .post(format!("{}{endpoint}", s.base()))
            .header("content-type", "application/json")
            .body(common::INIT);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r
    };
    assert_eq!(post(Some(KEY)).send().await.unwrap().status(), 202);
    assert_eq!(post(Some(BOB)).send().await.unwrap().status(), 404);
    assert_eq!(post(None).send().await.unwrap().status(), 401);
    let unknown = c
        .post(format!(
            "{}/messages?session_id=00112233445566778899aabbccddeeff",
            s.base()
        ))
        .header("x-api-key", KEY)
        .body(common::INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let r = c
        .get(sse_url(&s))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the stream needs credentials too");

    // One session per principal here: a second stream is refused ...
    let r = get_sse(&c, &s, KEY).await;
    assert_eq!(r.status(), 429);
    // ... until the first one is closed, which ends its session.
    holder.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .get(sse_url(&s))
            .header("accept", "text/event-stream")
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post(Some(KEY)).send().await.unwrap().status(),
        404,
        "the old session ended"
    );
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "sse"),
        ("MCP_API_KEYS", KEY),
        ("HTTP_SSE_KEEP_ALIVE", "200"),
    ]);
    let r = reqwest::Client::new()
        .get(sse_url(&s))
        .header("accept", "text/event-stream")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.lines().any(|l| l.starts_with(':')) {
            let chunk = stream.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a keep-alive comment within 5 s");
    assert!(seen.contains("event: endpoint"), "{seen}");
}

#[tokio::test]
async fn an_idle_sse_session_expires_and_its_stream_closes() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "sse"),
        ("MCP_API_KEYS", KEY),
        ("HTTP_SESSION_TIMEOUT", "300"),
    ]);
    let c = reqwest::Client::new();
    let r = get_sse(&c, &s, KEY).await;
    let mut stream = r.bytes_stream();
    let first = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    let endpoint = first
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .trim()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c
        .post(format!("{}{endpoint}", s.base()))
        .header("x-api-key", KEY)
        .body(common::INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "idle past HTTP_SESSION_TIMEOUT");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stream of an expired session is closed");
}

/// A stream alone does not keep its session: with no message posted for
/// `HTTP_SESSION_TIMEOUT` the server closes it (its record has expired and
/// its slot is free), so streams cannot pile up past the caps.
#[tokio::test]
async fn an_sse_stream_without_messages_is_closed_at_the_idle_timeout() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "sse"),
        ("MCP_API_KEYS", KEY),
        ("MCP_MAX_SESSIONS_PER_PRINCIPAL", "1"),
        ("HTTP_SESSION_TIMEOUT", "1000"),
    ]);
    let c = reqwest::Client::new();
    let (first, _) = common::sse_stream(&c, &s, KEY).await;
    let r = get_sse(&c, &s, KEY).await;
    assert_eq!(r.status(), 429, "one session per principal");
    let closed = tokio::time::timeout(Duration::from_secs(5), first).await;
    assert!(closed.is_ok(), "the idle stream is closed by the server");
    let (second, _) = common::sse_stream(&c, &s, KEY).await;
    second.abort();
}

/// The sessions gauge counts SSE sessions as it counts streamable ones:
/// up when one opens, down when its stream closes.
#[tokio::test]
async fn the_open_sessions_gauge_counts_sse_sessions() {
    let port = mcp_auth_integration_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start(&[
        ("MCP_TRANSPORT", "sse"),
        ("MCP_API_KEYS", KEY),
        ("MCP_METRICS_ADDR", addr.as_str()),
    ]);
    let c = reqwest::Client::new();
    let scrape = || async {
        let text = c
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        };
        Some((
            value("mcp_auth_sessions_open").unwrap_or(0.0),
            value("mcp_auth_sessions_opened_total").unwrap_or(0.0),
        ))
    };
    let wait_for = |want: (f64, f64)| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = scrape().await;
            if got == Some(want) || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (first, _) = common::sse_stream(&c, &s, KEY).await;
    let (second, _) = common::sse_stream(&c, &s, KEY).await;
    assert_eq!(
        wait_for((2.0, 2.0)).await,
        Some((2.0, 2.0)),
        "{}",
        s.stderr()
    );
    first.abort();
    assert_eq!(wait_for((1.0, 2.0)).await, Some((1.0, 2.0)));
    second.abort();
    assert_eq!(wait_for((0.0, 2.0)).await, Some((0.0, 2.0)));
}
