//! Issue #13: the client warns, naming the host, before sending a person to
//! a plain-http login page on a host that is not loopback.
//!
//! A stand-in MCP server and authorization server on 127.0.0.1 (401
//! challenge, RFC 9728 and RFC 8414 metadata, dynamic registration) whose
//! metadata puts the authorization endpoint at `authorize`; the real client
//! binary runs with `--no-browser` and a one-second login timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use axum::{
    Json, Router,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::json;

/// Serves the stand-in servers; returns the MCP endpoint.
async fn stand_in(authorize: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (b1, b2, b3) = (base.clone(), base.clone(), base.clone());
    let app = Router::new()
        .route(
            "/mcp",
            post(move || async move {
                (
                    StatusCode::UNAUTHORIZED,
                    [(
                        header::WWW_AUTHENTICATE,
                        format!(
                            "Bearer resource_metadata=\"{b1}/.well-known/oauth-protected-resource/mcp\""
                        ),
                    )],
                )
            }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || async move {
                Json(json!({
                    "resource": format!("{b2}/mcp"),
                    "authorization_servers": [b2],
                }))
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move {
                Json(json!({
                    "issuer": b3,
                    "authorization_endpoint": authorize,
                    "token_endpoint": format!("{b3}/token"),
                    "registration_endpoint": format!("{b3}/register"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }))
            }),
        )
        .route(
            "/register",
            post(|Json(body): Json<serde_json::Value>| async move {
                let mut client = body;
                client["client_id"] = json!("stand-in-client");
                (StatusCode::CREATED, Json(client)).into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/mcp")
}

/// Runs the client against `server` until its login times out; its stderr.
async fn client_stderr(server: String) -> String {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-auth-client"))
            .args([
                "--server",
                &server,
                "--no-browser",
                "--callback-port",
                "0",
                "--login-timeout",
                "1",
                "list",
            ])
            .env("MCP_AUTH_CLIENT_HOME", &home_path)
            .env_remove("MCP_API_KEY")
            .current_dir(&home_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn warns_before_a_plain_http_login_page_off_loopback() {
    let err = client_stderr(stand_in("http://login.example.invalid/authorize").await).await;
    assert!(err.contains("Log in at"), "{err}");
    let warning = err
        .find("WARNING: the login page at login.example.invalid is plain http://")
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(warning < err.find("Log in at").unwrap(), "{err}");
}

#[tokio::test]
async fn no_warning_for_https_or_loopback() {
    for authorize in [
        "https://login.example.invalid/authorize",
        "http://localhost:9/authorize",
    ] {
        let err = client_stderr(stand_in(authorize).await).await;
        assert!(err.contains("Log in at"), "{err}");
        assert!(!err.contains("WARNING"), "{authorize}: {err}");
    }
}
