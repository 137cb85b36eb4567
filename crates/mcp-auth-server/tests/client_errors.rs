//! Issue #20: `mcp-auth-client`'s one-shot commands fail with one short
//! line, `error: <step>: <reason>`, without log lines or ANSI colours;
//! `-v` adds the details. The real client binary against the real server
//! binary (API key and bearer strategies).
//!
//! The client binary is found next to the server's: `cargo test` builds
//! both; `cargo build -p mcp-auth-client` if only this package was built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::{KEY, Server, client_bin, command, tempdir};

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes";

/// Runs the client with a clean environment in an empty directory; exit
/// status and stderr.
fn client(args: &[&str]) -> (bool, String) {
    let home = tempdir();
    let out = Command::new(client_bin())
        .args(args)
        .env_clear()
        .env("MCP_AUTH_CLIENT_HOME", home.path())
        .current_dir(home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bearer_server() -> Server {
    Server::start(&[("MCP_AUTH_STRATEGY", "bearer"), ("MCP_JWT_SECRET", SECRET)])
}

/// A token from the server's `token` command with `scope`.
fn token(server: &Server, scope: &str) -> String {
    let dir = tempdir();
    let url = server.url();
    let out = command(
        dir.path(),
        &[("MCP_JWT_SECRET", SECRET), ("MCP_SERVER_URL", &url)],
    )
    .args(["token", "--sub", "alice", "--scope", scope])
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn no_ansi(s: &str) {
    assert!(!s.contains('\u{1b}'), "ANSI escape in {s:?}");
}

#[test]
fn a_wrong_api_key_is_one_short_line() {
    let s = Server::start(&[("MCP_API_KEYS", KEY)]);
    let url = s.url();
    let (ok, err) = client(&[
        "--server",
        &url,
        "--api-key",
        "wrong-key-0123456789abcdef",
        "list",
    ]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: list: the server refused the API key (401 invalid_token)\n"
    );
}

/// Behind a chain the refused credential's reason is given too: the
/// server puts the challenge of the credential sent first, the one a
/// client reading a single `WWW-Authenticate` sees (a docs walkthrough:
/// `the server refused the bearer token (401)`, no reason, because the
/// API-key challenge came first).
#[test]
fn a_refused_token_behind_a_chain_is_named_with_its_reason() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "api_key,bearer"),
        ("MCP_API_KEYS", KEY),
        ("MCP_JWT_SECRET", SECRET),
    ]);
    let url = s.url();
    let (ok, err) = client(&["--server", &url, "--bearer", "not-a-token", "list"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: list: the server refused the bearer token (401 invalid_token)\n"
    );
}

/// A server that has no authentication scheme (`none`) refuses a tool's
/// scope with a 403 that carries no challenge: the client reads the
/// refusal from its body, one line as any other (a docs walkthrough: it
/// printed the raw answer).
#[test]
fn a_refusal_without_a_challenge_is_one_short_line() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "none"),
        ("MCP_TOOL_SCOPES", "admin_status=mcp:admin"),
    ]);
    let url = s.url();
    let (ok, err) = client(&["--server", &url, "call", "admin_status"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: call admin_status: missing scope mcp:admin (403 insufficient_scope)\n"
    );
}

#[test]
fn a_missing_scope_is_one_short_line() {
    let s = bearer_server();
    let t = token(&s, "mcp:tools");
    let url = s.url();
    let (ok, err) = client(&["--server", &url, "--bearer", &t, "call", "admin_status"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: call admin_status: missing scope mcp:admin (403 insufficient_scope)\n"
    );

    let (ok, err) = client(&["--server", &url, "--bearer", "not-a-token", "whoami"]);
    assert!(!ok);
    assert_eq!(
        err,
        "error: whoami: the server refused the bearer token (401 invalid_token)\n"
    );
}

#[test]
fn an_unreachable_server_is_one_short_line() {
    let port = mcp_auth_integration_tests::free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let (ok, err) = client(&["--server", &url, "--api-key", KEY, "list"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: list: contacting the server: cannot connect to 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    no_ansi(&err);
}

/// `-v`: the logs and the full error too, still without colours when
/// stderr is not a terminal; the last line is the same short one.
#[test]
fn verbose_adds_the_details_without_colours() {
    let s = bearer_server();
    let t = token(&s, "mcp:tools");
    let url = s.url();
    let (ok, err) = client(&[
        "-v",
        "--server",
        &url,
        "--bearer",
        &t,
        "call",
        "admin_status",
    ]);
    assert!(!ok);
    no_ansi(&err);
    assert!(err.lines().count() > 1, "{err}");
    assert!(
        err.contains(r#"Bearer error=\"insufficient_scope\", scope=\"mcp:admin\""#)
            || err.contains(r#"Bearer error="insufficient_scope", scope="mcp:admin""#),
        "the challenge in the details: {err}"
    );
    assert_eq!(
        err.lines().last(),
        Some("error: call admin_status: missing scope mcp:admin (403 insufficient_scope)")
    );
    assert!(!err.contains(&t), "the token is not logged");
}
