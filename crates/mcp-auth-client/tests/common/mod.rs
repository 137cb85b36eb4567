//! What the client's end-to-end tests share: running the real binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
    routing::any,
};

pub fn browser() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/headless-browser.sh")
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the client in `home` (its config directory and working directory)
/// with `args`, logging in with the headless browser on any free port.
pub async fn client(home: &Path, args: &[&str]) -> Run {
    let home = home.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth-client"))
            .args(["--callback-port", "0", "--login-timeout", "20"])
            .args(&args)
            .env("MCP_AUTH_CLIENT_HOME", &home)
            .env("BROWSER", browser())
            .env("BROWSER_LOG", home.join("browser.log"))
            .env_remove("MCP_API_KEY")
            .env_remove("MCP_SERVER_URL")
            .env_remove("COGNITO_APP_CLIENT_ID")
            .env_remove("COGNITO_APP_CLIENT_SECRET")
            .env_remove("COGNITO_REGION")
            .env_remove("COGNITO_USER_POOL_ID")
            .env_remove("LOG_LEVEL")
            .current_dir(&home)
            .output()
            .unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// Serves a stand-in MCP endpoint that refuses every request; returns its
/// URL and the `X-API-Key` values it was sent.
pub async fn refusing_stand_in() -> (String, Arc<Mutex<Vec<String>>>) {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let (listener, url) = mcp_listener().await;
    let app = Router::new().route(
        "/mcp",
        any(move |headers: HeaderMap| async move {
            if let Some(k) = headers.get("x-api-key") {
                seen.lock()
                    .unwrap()
                    .push(k.to_str().unwrap_or_default().to_owned());
            }
            (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "ApiKey header=\"X-API-Key\", error=\"invalid_token\"",
                )],
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, keys)
}

/// A listener on a free loopback port, and its `/mcp` URL.
pub async fn mcp_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/mcp",
        listener.local_addr().unwrap().port()
    );
    (listener, url)
}

/// A loopback port that counts the connections made to it (and answers
/// none); returns the port and the count.
pub async fn connection_counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, connections)
}
