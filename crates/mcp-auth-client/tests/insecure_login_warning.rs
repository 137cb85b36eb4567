//! Issue #13, then the MCP authorization spec (every authorization server
//! endpoint is https): the client refuses, naming the endpoint and its
//! host, an authorization server whose login page, token endpoint or
//! registration endpoint is plain http on a host that is not loopback,
//! before sending anything there or a person to it.
//!
//! A stand-in MCP server and authorization server on 127.0.0.1 (401
//! challenge, RFC 9728 and RFC 8414 metadata, dynamic registration) whose
//! metadata puts the endpoints where a test says; the real client binary
//! runs with `--no-browser` and a one-second login timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::json;

/// Where the stand-in's metadata puts an endpoint: at this URL, else on
/// the stand-in itself.
#[derive(Clone, Copy, Default)]
struct Endpoints {
    authorize: Option<&'static str>,
    token: Option<&'static str>,
    register: Option<&'static str>,
}

/// Serves the stand-in servers with the login page at `authorize`;
/// returns the MCP endpoint.
async fn stand_in(authorize: &'static str) -> String {
    stand_in_with(Endpoints {
        authorize: Some(authorize),
        ..Endpoints::default()
    })
    .await
    .0
}

/// Serves the stand-in servers; returns the MCP endpoint and a count of
/// the registrations it was sent.
async fn stand_in_with(endpoints: Endpoints) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (b1, b2, b3) = (base.clone(), base.clone(), base.clone());
    let registrations = Arc::new(AtomicUsize::new(0));
    let counted = registrations.clone();
    let own = |url: Option<&'static str>, path: &str| {
        url.map_or_else(|| format!("{base}/{path}"), str::to_owned)
    };
    let (authorize, token, register) = (
        own(endpoints.authorize, "authorize"),
        own(endpoints.token, "token"),
        own(endpoints.register, "register"),
    );
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
                    "token_endpoint": token,
                    "registration_endpoint": register,
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }))
            }),
        )
        .route(
            "/register",
            post(move |Json(body): Json<serde_json::Value>| async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut client = body;
                client["client_id"] = json!("stand-in-client");
                (StatusCode::CREATED, Json(client)).into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("{base}/mcp"), registrations)
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
async fn refuses_a_plain_http_login_page_off_loopback() {
    let err = client_stderr(stand_in("http://login.example.invalid/authorize").await).await;
    assert!(!err.contains("Log in at"), "{err}");
    assert!(
        err.contains("authorization_endpoint is plain http:// on login.example.invalid"),
        "{err}"
    );
}

/// Nor a plain-http token or registration endpoint off loopback: no
/// registration, no login.
#[tokio::test]
async fn refuses_plain_http_token_and_registration_endpoints_off_loopback() {
    for (endpoints, named) in [
        (
            Endpoints {
                token: Some("http://as.example.invalid:8080/token"),
                ..Endpoints::default()
            },
            "token_endpoint is plain http:// on as.example.invalid:8080",
        ),
        (
            Endpoints {
                register: Some("http://register.example.invalid/register"),
                ..Endpoints::default()
            },
            "registration_endpoint is plain http:// on register.example.invalid",
        ),
    ] {
        let (url, registrations) = stand_in_with(endpoints).await;
        let err = client_stderr(url).await;
        assert!(err.contains(named), "{err}");
        assert!(!err.contains("Log in at"), "{err}");
        assert_eq!(registrations.load(Ordering::SeqCst), 0, "{named}");
    }
}

#[tokio::test]
async fn https_or_loopback_login_pages_are_used() {
    for authorize in [
        "https://login.example.invalid/authorize",
        "http://localhost:9/authorize",
    ] {
        let err = client_stderr(stand_in(authorize).await).await;
        assert!(err.contains("Log in at"), "{authorize}: {err}");
    }
}
