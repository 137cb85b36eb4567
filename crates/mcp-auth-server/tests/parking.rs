//! Idle sessions give up their local rmcp worker and come back on their
//! next request, unchanged for the client (the real binary, loopback HTTP).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{BOB, KEY, Server, open, post};

const WHOAMI: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;

fn server() -> Server {
    let keys = format!("{KEY},{BOB}");
    Server::start(&[
        ("MCP_API_KEYS", keys.as_str()),
        ("MCP_SESSION_PARK_AFTER", "300"),
        ("RUST_LOG", "info,mcp_auth_transport=debug"),
    ])
}

/// `whoami` in session `sid` as `key`: the status and the body.
async fn whoami(c: &reqwest::Client, s: &Server, sid: &str, key: &str) -> (u16, String) {
    let r = post(c, &s.url(), WHOAMI)
        .header("x-api-key", key)
        .header("mcp-session-id", sid)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn parked(s: &Server) -> usize {
    s.stderr().matches("idle session parked").count()
}

#[tokio::test]
async fn an_idle_session_is_parked_and_restored_unchanged() {
    let s = server();
    let c = reqwest::Client::new();
    let sid = open(&c, &s, Some(KEY)).await.unwrap();
    let (status, before) = whoami(&c, &s, &sid, KEY).await;
    assert_eq!(status, 200, "{before}");

    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(parked(&s), 1, "{}", s.stderr());

    // The next request restores it: same session, same caller.
    let (status, after) = whoami(&c, &s, &sid, KEY).await;
    assert_eq!(status, 200, "{after}");
    assert!(after.contains("\"subject\""), "{after}");
    // (From the result's structured content.)
    let subject = |t: &str| {
        t.split("\"subject\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned)
    };
    assert!(subject(&before).is_some(), "{before}");
    assert_eq!(subject(&before), subject(&after));
    // Still its owner's only.
    assert_eq!(whoami(&c, &s, &sid, BOB).await.0, 404);

    // Parked again, then ended: DELETE works on a parked session, and the
    // session is gone afterwards.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(parked(&s), 2, "{}", s.stderr());
    let r = c
        .delete(s.url())
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(whoami(&c, &s, &sid, KEY).await.0, 404);
}

#[tokio::test]
async fn a_session_with_an_open_stream_is_not_parked() {
    let s = server();
    let c = reqwest::Client::new();
    let sid = open(&c, &s, Some(KEY)).await.unwrap();
    // The standalone event stream (GET), held open.
    let stream = common::event_stream(&c, &s, &sid, Some(KEY)).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(parked(&s), 0, "parked with an open stream: {}", s.stderr());
    assert_eq!(whoami(&c, &s, &sid, KEY).await.0, 200);
    // Closed: parked once idle.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(parked(&s), 1, "{}", s.stderr());
    assert_eq!(whoami(&c, &s, &sid, KEY).await.0, 200);
}

/// A parked worker's service closes its session once more when it stops:
/// that close must not take the worker restored in the meantime. Calls that
/// arrive around the moment their session is parked (idle a little over
/// the 300 ms, checked every 150 ms) are all answered.
#[tokio::test]
async fn calls_arriving_while_their_session_is_parked_are_all_answered() {
    let s = server();
    let c = reqwest::Client::new();
    let sid = open(&c, &s, Some(KEY)).await.unwrap();
    for i in 0..24u64 {
        tokio::time::sleep(Duration::from_millis(300 + (i * 37) % 160)).await;
        let (status, body) = whoami(&c, &s, &sid, KEY).await;
        assert_eq!(status, 200, "call {i}: {body}");
        assert!(body.contains("\"result\""), "call {i}: {body}");
    }
    assert!(
        parked(&s) >= 8,
        "too few parks to mean anything: {}",
        parked(&s)
    );
}
