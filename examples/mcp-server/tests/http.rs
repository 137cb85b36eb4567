//! The example served on a loopback port: a named key with the tool's
//! scope calls it as itself, an unnamed key is refused the tool, and the
//! sidecar's token from `INTERNAL_TOKEN` calls it too.
#![allow(clippy::unwrap_used)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const OPS: &str = "ops-key-0123456789abcdef";
const PLAIN: &str = "plain-key-0123456789abcdef";
const SIDECAR: &str = "sidecar-token-0123456789abcdef-0123";

struct App(Child, u16);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> App {
    let port = mcp_auth_integration_tests::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_example-mcp-server"))
        .env("MCP_API_KEYS", format!("ops:{OPS}:notes.read,{PLAIN}"))
        .env("PORT", port.to_string())
        .env("INTERNAL_TOKEN", SIDECAR)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the example did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    App(child, port)
}

async fn call_hello(url: &str, key: &str) -> reqwest::Response {
    call_hello_with(url, "x-api-key", key).await
}

async fn call_hello_with(url: &str, header: &str, key: &str) -> reqwest::Response {
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut r = http
            .post(url)
            .header(header, key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    };
    let init = post(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        None,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = post(
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&sid),
    )
    .send()
    .await
    .unwrap();
    post(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "hello", "arguments": {}}}),
        Some(&sid),
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_named_key_with_the_scope_calls_the_tool_and_a_plain_key_is_refused() {
    let app = start();
    let url = format!("http://127.0.0.1:{}/mcp", app.1);

    let r = call_hello(&url, OPS).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("hello api-key:ops (via api_key)"), "{body}");

    let r = call_hello_with(&url, "x-internal-token", SIDECAR).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("hello sidecar (via internal)"), "{body}");
    let wrong = format!("{}X", &SIDECAR[..SIDECAR.len() - 1]);
    let r = reqwest::Client::new()
        .post(&url)
        .header("x-internal-token", wrong)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = call_hello(&url, PLAIN).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"notes.read\""), "{challenge}");

    // Without credentials: both schemes are offered.
    let r = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let offered: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(offered.len(), 2, "{offered:?}");
}
