//! Starts the real `mcp-auth-server` binary on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-auth-server");
pub const KEY: &str = "test-key-0123456789abcdef";

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
    /// Whether the server's log says `text` within 5 s: the line is written
    /// before the response that follows it, but read from the pipe by a
    /// thread of this process, which a loaded machine can hold back.
    pub async fn logs_soon(&self, text: &str) -> bool {
        for _ in 0..100 {
            if self.stderr().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
    /// Starts the server with exactly these variables (the test's own
    /// environment is not inherited) in an empty working directory.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Self::start_in(env, &[], |_| {})
    }
    /// Like `start`, with extra arguments and a hook to write files (e.g.
    /// `.env`) into the working directory first.
    pub fn start_in(env: &[(&str, &str)], args: &[&str], prepare: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        // A test that needs the port in advance passes PORT; any free one
        // otherwise.
        let port = env
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map_or("0", |(_, v)| *v);
        let mut child = command(dir.path(), env)
            .args(["--port", port])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split("bound=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {}", stderr.lock().unwrap());
            }
        };
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            port,
            stderr,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with a clean environment and `dir` as working directory.
pub fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().current_dir(dir).env("LOG_LEVEL", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The example client binary, built beside the server (the test command
/// builds every binary first).
pub fn client_bin() -> std::path::PathBuf {
    let p = Path::new(BIN).with_file_name("mcp-auth-client");
    assert!(
        p.exists(),
        "{} is not built: run `cargo build -p mcp-auth-client`",
        p.display()
    );
    p
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// The response's `WWW-Authenticate` challenges, in order.
pub fn challenges(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A POST to the MCP endpoint with the MCP headers set.
pub fn post(client: &reqwest::Client, url: &str, body: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned())
}

/// A minimal issuer on loopback: OIDC metadata and a JWKS with one RSA key
/// (`k1`); its URL and the signing key ([`sign`]).
pub async fn issuer() -> (String, jsonwebtoken::EncodingKey) {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mcp-auth-jwt/tests/keys/rsa.pem"
    ))
    .unwrap();
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let md = serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/jwks.json")});
    let jwks = serde_json::json!({"keys": [jwk]});
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(md) }),
        )
        .route(
            "/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, enc)
}

pub fn sign(enc: &jsonwebtoken::EncodingKey, claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("k1".into());
    h.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&h, &claims, enc).unwrap()
}

/// A second API key (Bob's), for the tests of several principals.
pub const BOB: &str = "bobs-key-0123456789abcdef";
/// `tools/list`.
pub const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
/// The client's `notifications/initialized`.
/// Opens session `sid`'s event stream (`GET`) on `s` as `key` (`None`:
/// without credentials); the stream must be answered 200.
pub async fn event_stream(
    c: &reqwest::Client,
    s: &Server,
    sid: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = c
        .get(s.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "event stream as {key:?}");
    r
}

pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// One replica on the shared `store`, taking [`KEY`] and [`BOB`].
pub fn replica(store: &str, extra: &[(&str, &str)]) -> Server {
    let keys = format!("{KEY},{BOB}");
    let mut env = vec![
        ("MCP_API_KEYS", keys.as_str()),
        ("MCP_SESSION_STORE", store),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// A client that opens a new connection for every request (each may go to
/// another replica).
pub fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Opens a session on `s` as `key` (or anonymously): `initialize`, then
/// `notifications/initialized`; returns its id, or `initialize`'s status
/// when it was not 200.
pub async fn open(
    c: &reqwest::Client,
    s: &Server,
    key: Option<&str>,
) -> Result<String, reqwest::StatusCode> {
    let mut req = post(c, &s.url(), INIT);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    if r.status() != 200 {
        return Err(r.status());
    }
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(r.text().await);
    let mut req = post(c, &s.url(), INITIALIZED).header("mcp-session-id", &sid);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    // Accepted (202); anonymously, the policy may ask for credentials.
    assert!(
        r.status() == 202 || (key.is_none() && r.status() == 401),
        "{}",
        r.status()
    );
    Ok(sid)
}

/// `tools/list` in session `sid` as `key`: its status (a 200 must list the
/// server's tools).
pub async fn list(
    c: &reqwest::Client,
    s: &Server,
    sid: &str,
    key: Option<&str>,
) -> reqwest::StatusCode {
    let mut req = post(c, &s.url(), LIST).header("mcp-session-id", sid);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    if status == 200 {
        assert!(r.text().await.unwrap().contains("get_time"));
    }
    status
}

/// Two replicas on `store` with a request limit of 5 and a failed-login
/// limit of 3: both limits hold across them. Returns them for more checks.
pub async fn rate_limits_hold_across_replicas(store: &str) -> (Server, Server, reqwest::Client) {
    let limits = [
        ("HTTP_RATE_LIMIT_ENABLED", "true"),
        ("HTTP_RATE_LIMIT_MAX_REQUESTS", "5"),
        ("HTTP_RATE_LIMIT_WINDOW", "60000"),
        ("HTTP_AUTH_FAILURE_LIMIT", "3"),
    ];
    let a = replica(store, &limits);
    let b = replica(store, &limits);
    let c = fresh_connections();
    let mut statuses = Vec::new();
    for i in 0..7 {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = post(&c, &s.url(), INIT)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);

    // Failed authentications from one address are counted on both replicas.
    for s in [&a, &b, &a] {
        let r = post(&c, &s.url(), INIT)
            .header("x-api-key", "guess-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = post(&c, &b.url(), INIT)
        .header("x-api-key", BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "this address is locked out on both replicas, even with a valid key"
    );
    assert!(r.headers().contains_key("retry-after"));
    (a, b, c)
}

/// Opens `GET /sse` as `key`; returns a task holding the stream open
/// (abort it to close the stream) and the message endpoint from the first
/// event.
pub async fn sse_stream(
    c: &reqwest::Client,
    s: &Server,
    key: &str,
) -> (tokio::task::JoinHandle<()>, String) {
    sse_stream_as(c, s, Some(key)).await
}

/// [`sse_stream`] as `key`, or without credentials.
pub async fn sse_stream_as(
    c: &reqwest::Client,
    s: &Server,
    key: Option<&str>,
) -> (tokio::task::JoinHandle<()>, String) {
    let mut get = c
        .get(format!("{}/sse", s.base()))
        .header("accept", "text/event-stream");
    if let Some(k) = key {
        get = get.header("x-api-key", k);
    }
    let r = get.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let endpoint = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = futures::StreamExt::next(&mut stream)
                .await
                .unwrap()
                .unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            if buf.contains("event: endpoint")
                && let Some(line) = buf.lines().find_map(|l| l.strip_prefix("data: "))
            {
                return line.trim().to_owned();
            }
        }
    })
    .await
    .expect("endpoint event");
    let holder =
        tokio::spawn(async move { while futures::StreamExt::next(&mut stream).await.is_some() {} });
    (holder, endpoint)
}
