//! Attacks from a hostile network against the real binary: connection
//! floods, credential conflicts, session-cap grabs, the failed-login
//! limiter, and the smaller defects an outside attack pass found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use common::{INIT, KEY, Server, post};
use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A TCP connection to `port` from the loopback address `from`.
async fn connect_from(from: &str, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// `GET /health` on a fresh connection from `from`: the status line, or an
/// error when nothing came back in `within`.
async fn health_from(from: &str, port: u16, within: Duration) -> Result<String, String> {
    let go = async {
        let mut s = connect_from(from, port).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(within, go)
        .await
        .map_err(|_| format!("no answer within {within:?}"))?
}

/// Whether the server has closed `s` (EOF or reset) within `within`;
/// whatever it sends before (the rest of a response, an HTTP/2 `GOAWAY`) is
/// read and dropped.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1024];
    let until_closed = async {
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(within, until_closed).await.is_ok()
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_lock_out_a_new_client() {
    // The attack: more idle connections than the server has slots, from
    // many addresses (so no per-address cap helps), some silent, some
    // with only the HTTP/2 preface, then a newcomer asks for /health.
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("HTTP_MAX_CONNECTIONS", "1500"),
        ("HTTP_MAX_CONNECTIONS_PER_IP", "100"),
        ("HTTP_HEADER_READ_TIMEOUT", "3000"),
        ("HTTP_IDLE_TIMEOUT", "3000"),
    ]);
    let mut idle = Vec::new();
    for i in 0..2000 {
        // 127.0.1.0 .. 127.0.1.19, a hundred each: under the per-address cap.
        let from = format!("127.0.1.{}", i % 20);
        let mut c = connect_from(&from, s.port).await.unwrap();
        if i % 4 == 0 {
            c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
        }
        idle.push(c);
    }
    let started = Instant::now();
    let answer = health_from("127.0.0.1", s.port, Duration::from_secs(2))
        .await
        .expect("a new client is served while the slots are full of idle connections");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Within the timeouts (3 s, plus a second's grace) every idle
    // connection has been closed by the server, silent or not.
    let deadline = Instant::now() + Duration::from_secs(6);
    for (i, c) in idle.iter_mut().enumerate().step_by(97) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            closed_within(c, left).await,
            "idle connection {i} still open"
        );
    }
    let answer = health_from("127.0.0.1", s.port, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// What the server first sends back on `tcp` (within 5 s), lowercased.
async fn first_answer(tcp: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
}

/// A connection from `from` busy with a request whose body never finishes.
async fn busy_from(from: &str, port: u16) -> TcpStream {
    let mut c = connect_from(from, port).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c
}

/// An HTTP/2 connection from `from` whose client allows the server to send
/// nothing (`SETTINGS_INITIAL_WINDOW_SIZE` 0) and asks for `path` once:
/// the response's head goes out, its body never can.
async fn zero_window_from(from: &str, port: u16, path: &str) -> TcpStream {
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    // HPACK: GET and http from the static table, :path and :authority as
    // literals with their names from it.
    let mut headers = vec![0x82, 0x86, 0x44, u8::try_from(path.len()).unwrap()];
    headers.extend_from_slice(path.as_bytes());
    headers.extend_from_slice(&[0x41, 9]);
    headers.extend_from_slice(b"127.0.0.1");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    out.extend(frame(4, 1, 0, &[]));
    // END_STREAM | END_HEADERS on stream 1.
    out.extend(frame(1, 0x5, 1, &headers));
    let mut c = connect_from(from, port).await.unwrap();
    c.write_all(&out).await.unwrap();
    c
}

/// An outside attack pass: HTTP/2 clients that never open their window
/// held a request in flight, so their connections were never idle, never
/// evicted, never closed; four of them locked their address out (sixteen
/// addresses all 4096 slots) for as long as they liked, without a
/// credential. Now a connection whose responses have waited for the
/// client for the idle timeout is closed, while a stream waiting for the
/// application (an event stream between events) is not.
#[tokio::test]
async fn connections_whose_responses_cannot_go_out_do_not_hold_their_slots() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "both"),
        ("MCP_API_KEYS", KEY),
        ("HTTP_MAX_CONNECTIONS_PER_IP", "4"),
        ("HTTP_IDLE_TIMEOUT", "1500"),
        ("HTTP_HEADER_READ_TIMEOUT", "1500"),
    ]);
    // An event stream of a legitimate client, longer than the idle timeout.
    let c = reqwest::Client::new();
    let stream = c
        .get(format!("{}/sse", s.base()))
        .header("accept", "text/event-stream")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    let first = events.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("endpoint"));

    let mut stalled = Vec::new();
    for path in [
        "/mcp",
        "/health",
        "/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        stalled.push(zero_window_from("127.0.4.1", s.port, path).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = health_from("127.0.4.1", s.port, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        refused.starts_with("HTTP/1.1 503"),
        "the four hold the address's slots: {refused}"
    );
    // The idle timeout (1.5 s), a look at most that often, a second's grace.
    let deadline = Instant::now() + Duration::from_secs(7);
    for (i, c) in stalled.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            closed_within(c, left).await,
            "stalled connection {i} still open"
        );
    }
    let again = health_from("127.0.4.1", s.port, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        again.starts_with("HTTP/1.1 200"),
        "slots come back: {again}"
    );
    // The event stream, idle all along for the application, is still open.
    let next = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
    assert!(next.is_err(), "the event stream ended: {next:?}");
}

#[tokio::test]
async fn one_address_gets_503_past_its_connection_cap_and_others_are_served() {
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("HTTP_MAX_CONNECTIONS_PER_IP", "20"),
        ("HTTP_BODY_READ_TIMEOUT", "2000"),
    ]);
    // Twenty requests in flight (bodies trickling) from one address.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(busy_from("127.0.2.1", s.port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = health_from("127.0.2.1", s.port, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(refused.contains("too many connections from this address"));
    let other = health_from("127.0.2.2", s.port, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // A trickled body does not hold its slot for the request timeout: 408
    // once the body read timeout has passed, and the slots come back.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), held[0].read_to_end(&mut answer))
        .await
        .expect("the server answered the trickled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = health_from("127.0.2.1", s.port, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        again.starts_with("HTTP/1.1 200"),
        "slots come back: {again}"
    );
}

#[tokio::test]
async fn idle_connections_of_one_address_make_room_for_its_new_ones() {
    // Browsers behind one NAT keep idle keep-alive connections: at the
    // address's cap its longest-idle connection is closed, not the newcomer.
    let s = Server::start(&[("MCP_API_KEYS", KEY), ("HTTP_MAX_CONNECTIONS_PER_IP", "5")]);
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect_from("127.0.3.1", s.port).await.unwrap());
        // Accepted at distinct times, so the first is the longest idle.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = health_from("127.0.3.1", s.port, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(3)).await,
        "the oldest idle connection made room"
    );
}

#[tokio::test]
async fn an_http2_connection_without_streams_is_closed_however_often_it_pings() {
    let s = Server::start(&[("MCP_API_KEYS", KEY), ("HTTP_IDLE_TIMEOUT", "1000")]);
    let mut c = connect_from("127.0.0.1", s.port).await.unwrap();
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = Instant::now();
    let ping = b"\0\0\x08\x06\0\0\0\0\0PINGPING";
    let mut closed = false;
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(6) {
        if c.write_all(ping).await.is_err() {
            closed = true;
            break;
        }
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(250), c.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?} of pings", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_close_but_open_streams_and_slow_calls_do_not() {
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("HTTP_IDLE_TIMEOUT", "700"),
        ("HTTP_SSE_KEEP_ALIVE", "200"),
    ]);
    // A keep-alive connection with nothing in flight is closed after the
    // idle timeout.
    let mut c = connect_from("127.0.0.1", s.port).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut b = [0u8; 512];
    let n = c.read(&mut b).await.unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );

    // An open event stream is a request in flight: it outlives the idle
    // timeout by far, and keeps receiving events.
    let http = reqwest::Client::new();
    let r = post(&http, &s.url(), INIT)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let r = post(
        &http,
        &s.url(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .header("x-api-key", KEY)
    .header("mcp-session-id", &sid)
    .send()
    .await
    .unwrap();
    assert!(r.status().is_success());
    let mut stream = common::event_stream(&http, &s, &sid, Some(KEY))
        .await
        .bytes_stream();
    let t = Instant::now();
    let mut chunks = 0;
    while t.elapsed() < Duration::from_millis(2500) {
        let next = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("the stream went silent");
        assert!(matches!(next, Some(Ok(_))), "stream ended: {next:?}");
        chunks += 1;
    }
    assert!(chunks >= 5, "{chunks} keep-alive events in 2.5 s");
}

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

/// A token from the binary's own `token` command for `server`.
fn token(server: &Server, args: &[&str]) -> String {
    let dir = common::tempdir();
    let url = server.url();
    let out = common::command(
        dir.path(),
        &[("MCP_JWT_SECRET", SECRET), ("MCP_SERVER_URL", &url)],
    )
    .arg("token")
    .args(args)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn keys_and_tokens(extra: &[(&'static str, &'static str)]) -> Server {
    let mut env = vec![
        ("MCP_AUTH_STRATEGY", "api_key,bearer"),
        ("MCP_API_KEYS", KEY),
        ("MCP_JWT_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// An `initialize` POST to `s` with a bearer token and/or an API key.
async fn init(
    c: &reqwest::Client,
    s: &Server,
    bearer: Option<&str>,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = post(c, &s.url(), INIT);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap()
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    r.json().await.unwrap()
}

#[tokio::test]
async fn one_user_with_many_client_ids_cannot_fill_the_session_cap() {
    // The attack: dynamic registration hands out client ids freely; eleven
    // of them, ten sessions each, used to take 100 of 100 slots.
    let s = keys_and_tokens(&[]);
    let c = reqwest::Client::new();
    let mut granted = 0;
    let mut last_refusal = None;
    for i in 0..11 {
        let t = token(
            &s,
            &["--sub", "mallory", "--client-id", &format!("dcr-{i}")],
        );
        for _ in 0..10 {
            let r = init(&c, &s, Some(&t), None).await;
            match r.status().as_u16() {
                200 => granted += 1,
                429 => {
                    assert_eq!(r.headers()["retry-after"], "5");
                    last_refusal = Some(json(r).await);
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(
        granted, 20,
        "the per-user default (20 with the default caps)"
    );
    let body = last_refusal.unwrap();
    assert_eq!(body["error"], "too_many_sessions");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("across your clients")
    );
    // Everyone else still gets in.
    let alice = token(&s, &["--sub", "alice", "--client-id", "dcr-0"]);
    let r = init(&c, &s, Some(&alice), None).await;
    assert_eq!(r.status(), 200);
    let r = init(&c, &s, None, Some(KEY)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn credentials_of_two_schemes_in_one_request_are_refused_and_counted() {
    let s = keys_and_tokens(&[("HTTP_AUTH_FAILURE_LIMIT", "5")]);
    let c = reqwest::Client::new();
    let t = token(&s, &["--sub", "bob"]);
    // Each alone works.
    let r = init(&c, &s, Some(&t), None).await;
    assert_eq!(r.status(), 200);
    let r = init(&c, &s, None, Some(KEY)).await;
    assert_eq!(r.status(), 200);
    // A valid token with a wrong key, and with the right key: both refused
    // alike, so the answer tells nothing about the key.
    for key in ["guessed-key-0123456789", KEY] {
        let r = init(&c, &s, Some(&t), Some(key)).await;
        assert_eq!(r.status(), 400);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains(r#"error="invalid_request""#),
            "{challenge}"
        );
        let body = json(r).await;
        assert_eq!(body["error"], "invalid_request");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("conflicting credentials"),
            "{body}"
        );
    }
    // Guessing keys behind a valid token counts as failed logins: two
    // counted above, three more, then 429.
    for _ in 0..3 {
        let r = init(&c, &s, Some(&t), Some("guessed-key-0123456789")).await;
        assert_eq!(r.status(), 400);
    }
    let r = init(&c, &s, Some(&t), Some("guessed-key-0123456789")).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn requests_without_credentials_are_not_failed_logins() {
    let s = Server::start(&[("MCP_API_KEYS", KEY), ("HTTP_AUTH_FAILURE_LIMIT", "3")]);
    let c = reqwest::Client::new();
    // Forty OAuth-style discovery probes from one address: each a plain 401.
    for _ in 0..40 {
        let r = init(&c, &s, None, None).await;
        assert_eq!(r.status(), 401);
    }
    let r = init(&c, &s, None, Some(KEY)).await;
    assert_eq!(r.status(), 200, "valid credentials still work");
    // Wrong credentials are still counted: three, then 429 (the right key
    // included, for the rest of the window).
    for _ in 0..3 {
        let r = init(&c, &s, None, Some("guessed-key-0123456789")).await;
        assert_eq!(r.status(), 401);
    }
    let r = init(&c, &s, None, Some("guessed-key-0123456789")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn garbage_tokens_are_malformed_and_long_lived_ones_can_be_refused() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "bearer"),
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_JWT_MAX_LIFETIME", "1h"),
    ]);
    let c = reqwest::Client::new();
    let r = init(&c, &s, Some("abc.def.ghi"), None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["error_description"], "malformed token");
    let short = token(&s, &["--sub", "a", "--expires-in", "30m"]);
    let r = init(&c, &s, Some(&short), None).await;
    assert_eq!(r.status(), 200);
    let long = token(&s, &["--sub", "a", "--expires-in", "30d"]);
    let r = init(&c, &s, Some(&long), None).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert_eq!(
        json(r).await["error_description"],
        "token lifetime exceeds the allowed maximum"
    );
}

#[tokio::test]
async fn unreadable_json_rpc_gets_400_with_the_json_rpc_error() {
    let s = Server::start(&[("MCP_API_KEYS", KEY)]);
    let c = reqwest::Client::new();
    let r = init(&c, &s, None, Some(KEY)).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    for (body, code) in [
        ("{not json", -32700),
        (r#"{"jsonrpc":"2.0"}"#, -32600),
        ("[]", -32600),
    ] {
        for session in [None, Some(sid.as_str())] {
            let mut req = post(&c, &s.url(), body).header("x-api-key", KEY);
            if let Some(sid) = session {
                req = req.header("mcp-session-id", sid);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 400, "{body} {session:?}");
            let b = json(r).await;
            assert_eq!(b["error"]["code"], code, "{body}: {b}");
            assert_eq!(b["id"], serde_json::Value::Null);
        }
    }
    // A wrong media type is still 415.
    let r = c
        .post(s.url())
        .header("x-api-key", KEY)
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn a_refused_legacy_sse_stream_says_when_to_retry_like_streamable_http() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "both"),
        ("MCP_API_KEYS", KEY),
        ("MCP_MAX_SESSIONS_PER_PRINCIPAL", "1"),
    ]);
    let c = reqwest::Client::new();
    let open_stream = || {
        c.get(format!("{}/sse", s.base()))
            .header("accept", "text/event-stream")
            .header("x-api-key", KEY)
            .send()
    };
    let first = open_stream().await.unwrap();
    assert_eq!(first.status(), 200);
    let sse = open_stream().await.unwrap();
    let http = init(&c, &s, None, Some(KEY)).await;
    for r in [sse, http] {
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "5");
        let b = json(r).await;
        assert_eq!(b["error"], "too_many_sessions");
        assert_eq!(
            b["error_description"],
            "you have too many open sessions; end one (DELETE it, or close its SSE stream) or wait for one to expire"
        );
    }
    drop(first);
}

#[tokio::test]
async fn start_up_reports_settings_without_effect_and_honours_rust_log() {
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        (
            "COGNITO_DOMAIN",
            "https://example.auth.us-east-1.amazoncognito.com",
        ),
        ("COGNITO_APP_CLIENT_SECRET", "not-printed-0123456789"),
        ("LOG_LEVEL", "error"),
        ("RUST_LOG", "info,mcp_auth_transport=debug"),
    ]);
    let c = reqwest::Client::new();
    let r = init(&c, &s, None, None).await;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.stderr();
    for name in ["COGNITO_DOMAIN", "COGNITO_APP_CLIENT_SECRET"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(name) && l.contains("no effect")),
            "{name}: {log}"
        );
    }
    assert!(!log.contains("not-printed"), "a secret value was logged");
    // RUST_LOG won: info lines (the harness waits for one) and transport
    // debug lines appear although LOG_LEVEL=error.
    // (At debug level a request's lines carry its `mcp.request` span.)
    assert!(
        log.lines()
            .any(|l| l.contains(" DEBUG ") && l.contains("mcp_auth_transport")),
        "{log}"
    );
}

#[tokio::test]
async fn required_scopes_work_with_cognito() {
    // Used to be refused at start-up with a message saying cognito works.
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "cognito"),
        ("COGNITO_REGION", "us-east-1"),
        ("COGNITO_USER_POOL_ID", "us-east-1_example"),
        ("COGNITO_APP_CLIENT_ID", "client123"),
        ("COGNITO_JWKS_URL", "http://127.0.0.1:9/jwks.json"),
        ("MCP_OAUTH_REQUIRED_SCOPES", "mcp/tools"),
    ]);
    let c = reqwest::Client::new();
    let r = init(&c, &s, None, None).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains(r#"scope="mcp/tools""#), "{challenge}");
}

/// `/metrics` on loopback without a token is for a scraper on this
/// machine only: a page in a local browser cannot read it through DNS
/// rebinding (a foreign `Host`) or cross-origin.
#[tokio::test]
async fn the_tokenless_metrics_listener_refuses_foreign_hosts_and_origins() {
    let port = mcp_auth_integration_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start(&[("MCP_API_KEYS", KEY), ("MCP_METRICS_ADDR", addr.as_str())]);
    let c = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    // The listener comes up right after the MCP one.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(r) = c.get(&url).send().await {
            ok = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ok, Some(reqwest::StatusCode::OK), "{}", s.stderr());
    let r = c
        .get(&url)
        .header("host", format!("rebound.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().contains("mcp_auth_"));
    let r = c
        .get(&url)
        .header("origin", "http://rebound.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A request answered before its body is read (refused early: here, no
/// credentials) whose body has not all arrived: the
/// server cannot keep the connection, and its answer says so
/// (`Connection: close`), so a client does not send its next request down
/// a connection being shut (it saw "connection reset" on that next request
/// instead). A request whose body was read, and a refused one without a
/// body, keep their connection.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_says_the_connection_closes() {
    let s = Server::start(&[("MCP_API_KEYS", KEY)]);
    // The headers, then the body a moment later (as clients that write
    // them separately do); the answer, to the end of the connection.
    let answer = |extra: &'static str| {
        let port = s.port;
        async move {
            let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let body = INIT.as_bytes();
            let head = format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Accept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\n\r\n",
                body.len()
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tcp.write_all(body).await;
            first_answer(&mut tcp).await
        }
    };
    let close = "\r\nconnection: close\r\n";
    let refused = answer("").await;
    assert!(refused.starts_with("http/1.1 401"), "{refused}");
    assert!(refused.contains(close), "{refused}");
    // Read, then answered: the connection stays.
    let served = answer("X-API-Key: test-key-0123456789abcdef\r\n").await;
    assert!(served.starts_with("http/1.1 200"), "{served}");
    assert!(!served.contains(close), "{served}");

    // No body: 401, and the connection stays for the next request.
    let mut tcp = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    let get = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n",
        s.port
    );
    tcp.write_all(get.as_bytes()).await.unwrap();
    let answer = first_answer(&mut tcp).await;
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
}

/// A body in a coding the server does not decode is refused before it is
/// read: a content coding with 415 and `Accept-Encoding: identity`, a
/// transfer coding besides `chunked` with 501 (an attack pass: both were
/// read as they came, a session opened); `identity` and plain `chunked`
/// pass. And a server URL ending in `/` has its metadata at the literal
/// RFC 9728 path too.
#[tokio::test]
async fn bodies_in_codings_not_decoded_are_refused() {
    let s = Server::start(&[("MCP_API_KEYS", KEY), ("MCP_AUTH_STRATEGY", "api_key")]);
    let c = reqwest::Client::new();
    for coding in ["gzip", "br", "x-foo", "identity, gzip"] {
        let r = post(&c, &s.url(), INIT)
            .header("x-api-key", KEY)
            .header("content-encoding", coding)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{coding}");
        assert_eq!(r.headers()["accept-encoding"], "identity", "{coding}");
    }
    let r = post(&c, &s.url(), INIT)
        .header("x-api-key", KEY)
        .header("content-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let raw = |te: &'static str| {
        let port = s.port;
        async move {
            let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let body = INIT.as_bytes();
            let head = format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Accept: application/json, text/event-stream\r\nX-API-Key: {KEY}\r\n\
                 Transfer-Encoding: {te}\r\n\r\n{:x}\r\n",
                body.len()
            );
            // One write: the server may refuse the coding from the head
            // alone and close, and a later write would then fail (a broken
            // pipe seen in CI) before the answer is read.
            let mut request = head.into_bytes();
            request.extend_from_slice(body);
            request.extend_from_slice(b"\r\n0\r\n\r\n");
            let _ = tcp.write_all(&request).await;
            first_answer(&mut tcp).await
        }
    };
    for te in ["foo, chunked", "gzip, chunked", "chunked, chunked"] {
        let answer = raw(te).await;
        assert!(answer.starts_with("http/1.1 501"), "{te}: {answer}");
    }
    let answer = raw("chunked").await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");

    let port = mcp_auth_integration_tests::free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/mcp/");
    let s = Server::start(&[
        ("PORT", &port),
        ("MCP_SERVER_URL", &url),
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", "http://127.0.0.1:9"),
        ("MCP_OAUTH_JWKS_URL", "http://127.0.0.1:9/jwks"),
    ]);
    for path in ["/mcp", "/mcp/"] {
        let r = c
            .get(format!(
                "{}/.well-known/oauth-protected-resource{path}",
                s.base()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let md: serde_json::Value = r.json().await.unwrap();
        assert_eq!(md["resource"], url.as_str());
    }
}

/// Behind a proxy that writes only `Forwarded` (`HTTP_FORWARDED_HEADER=
/// forwarded`), a client's own `X-Forwarded-For` names nothing: a new
/// address in it for each guess does not escape the failed-login limit,
/// which counts the address the proxy wrote; another client of the proxy
/// is not locked out with it.
#[tokio::test]
async fn a_clients_own_forwarded_for_does_not_escape_the_failed_login_limit() {
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("HTTP_AUTH_FAILURE_LIMIT", "3"),
        ("HTTP_TRUSTED_PROXIES", "127.0.0.1"),
        ("HTTP_FORWARDED_HEADER", "forwarded"),
    ]);
    let c = reqwest::Client::new();
    let guess = |n: usize, from: &'static str| {
        post(&c, &s.url(), INIT)
            .header("x-api-key", "guessed-key-0123456789")
            .header("forwarded", format!("for={from}"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .send()
    };
    for n in 0..3 {
        assert_eq!(guess(n, "203.0.113.5").await.unwrap().status(), 401);
    }
    assert_eq!(guess(3, "203.0.113.5").await.unwrap().status(), 429);
    assert_eq!(
        guess(4, "203.0.113.6").await.unwrap().status(),
        401,
        "another client"
    );
}

/// A body that arrives too slowly gets 408 and one cut off 400, also when
/// the audit log (or metrics) reads bodies first: not 413, which tells a
/// client on a slow link that its request is too large to retry.
#[tokio::test]
async fn slow_and_cut_off_bodies_are_not_called_too_large_when_observed() {
    let dir = common::tempdir();
    let log = dir.path().join("audit.log");
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("HTTP_BODY_READ_TIMEOUT", "500"),
        ("MCP_AUDIT_LOG", log.to_str().unwrap()),
    ]);
    let read_answer = |mut c: TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let slow = read_answer(busy_from("127.0.0.1", s.port).await).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    let mut cut = busy_from("127.0.0.1", s.port).await;
    cut.shutdown().await.unwrap();
    let cut = read_answer(cut).await;
    assert!(cut.starts_with("HTTP/1.1 400"), "{cut}");
}

/// What a client sends cannot stretch or split the server's log lines:
/// rmcp logs a notification whole (at `info`) and a failed request with
/// its method (at `warn`); each field is cut at 1024 characters, and
/// control characters are escaped (an attack pass: one request wrote a
/// body-sized line, each time it was sent).
#[tokio::test]
async fn what_clients_send_cannot_stretch_or_split_log_lines() {
    let s = Server::start(&[("MCP_API_KEYS", KEY)]);
    let c = reqwest::Client::new();
    let sid = common::open(&c, &s, Some(KEY)).await.unwrap();
    let huge = "n".repeat(200_000);
    let send = |body: String| {
        post(&c, &s.url(), &body)
            .header("x-api-key", KEY)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    let notification = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/custom","params":{{"p":"{huge}","q":"line\nbreak\u001b[31m"}}}}"#
    );
    let r = send(notification).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let request = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"x/{huge}","params":{{}}}}"#);
    let r = send(request).await.unwrap();
    let _ = r.text().await;
    assert!(
        s.logs_soon("received notification").await,
        "{}",
        s.stderr().len()
    );
    let log = s.stderr();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a line of {longest} bytes");
    assert!(!log.contains('\u{1b}'), "a terminal escape reached the log");
    assert!(log.contains("…(cut)"), "{log}");
}
