//! Named API keys with scopes (`MCP_API_KEYS=<name>:<key>[:<scopes>]`)
//! against the real binary: who the caller is, per-tool scopes, the 403
//! challenge of the API-key scheme, and unnamed keys as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{INIT, KEY, Server, challenges, command, post, tempdir};
use http::{HeaderName, HeaderValue};
use mcp_auth_strategies::fingerprint;
use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

/// Named `ops-bot`, with the scope `admin`.
const OPS: &str = "ops-key-0123456789abcdef";
/// `printf %s "$OPS" | sha256sum`
const OPS_SHA256: &str = "16ba548450ff7de021bf9a6c1f7d6774756c8909e3607c8132453af202bc64a9";
/// Named `ci-bot`, with the scope `tools.read` only.
const CI: &str = "ci-key-0123456789abcdef";

const ADMIN_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_status","arguments":{}}}"#;
const WHOAMI_CALL: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;

fn keys() -> String {
    format!("ops-bot:{OPS}:admin, ci-bot:{CI}:tools.read, {KEY}")
}

/// `admin_status` guarded by the scope `admin` (`MCP_TOOL_SCOPES`).
fn server() -> Server {
    let keys = keys();
    Server::start(&[
        ("MCP_API_KEYS", &keys),
        ("MCP_TOOL_SCOPES", "admin_status=admin"),
    ])
}

async fn client(url: String, key: &str) -> RunningService<RoleClient, ()> {
    let headers = HashMap::from([(
        HeaderName::from_static("x-api-key"),
        HeaderValue::from_str(key).unwrap(),
    )]);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    ().serve(transport).await.expect("initialize")
}

async fn tool_names(c: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

async fn whoami(c: &RunningService<RoleClient, ()>) -> serde_json::Value {
    c.call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap()
        .structured_content
        .expect("structured whoami")
}

/// Opens a 2025-11-25 session with `key`; returns its id.
async fn open_session(http: &reqwest::Client, s: &Server, key: &str) -> String {
    let r = post(http, &s.url(), INIT)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(r.text().await);
    let r = post(
        http,
        &s.url(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .header("x-api-key", key)
    .header("mcp-session-id", &sid)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    sid
}

#[tokio::test]
async fn a_named_key_with_the_tools_scope_calls_it_as_itself() {
    let s = server();
    let c = client(s.url(), OPS).await;
    assert_eq!(tool_names(&c).await, ["admin_status", "get_time", "whoami"]);
    let r = c
        .call_tool(CallToolRequestParams::new("admin_status"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["server"], "mcp-auth-server");
    let who = whoami(&c).await;
    assert_eq!(who["subject"], "api-key:ops-bot");
    assert_eq!(who["scopes"], serde_json::json!(["admin"]));
    assert_eq!(who["strategy"], "api_key");
    assert_eq!(who["claims"]["key_name"], "ops-bot");
    assert_eq!(
        who["claims"]["key_fingerprint"],
        fingerprint(OPS.as_bytes())
    );
    assert!(!who.to_string().contains(OPS));
    c.cancel().await.unwrap();

    // The keys never reach the logs.
    let logs = s.stderr();
    for k in [OPS, CI, KEY] {
        assert!(!logs.contains(k), "{logs}");
    }
}

#[tokio::test]
async fn a_named_key_without_the_scope_gets_403_on_the_api_key_challenge() {
    let s = server();
    let c = client(s.url(), CI).await;
    assert_eq!(tool_names(&c).await, ["get_time", "whoami"]);
    assert!(
        c.call_tool(CallToolRequestParams::new("admin_status"))
            .await
            .is_err()
    );
    let who = whoami(&c).await;
    assert_eq!(who["subject"], "api-key:ci-bot");
    assert_eq!(who["scopes"], serde_json::json!(["tools.read"]));
    c.cancel().await.unwrap();

    // Raw HTTP: the exact 403, in a session (JSON-RPC body) ...
    let http = reqwest::Client::new();
    let sid = open_session(&http, &s, CI).await;
    let r = post(&http, &s.url(), ADMIN_CALL)
        .header("x-api-key", CI)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The scheme the caller used (no Bearer challenge: this server has no
    // token strategy), with the error code and the scope needed.
    assert_eq!(
        challenges(&r),
        vec![r#"ApiKey header="X-API-Key", error="insufficient_scope", scope="admin""#]
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["scope"], "admin");

    // ... and stateless 2026-07-28, named by the Mcp-Method / Mcp-Name headers.
    let r = post(&http, &s.url(), ADMIN_CALL)
        .header("x-api-key", CI)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin_status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![r#"ApiKey header="X-API-Key", error="insufficient_scope", scope="admin""#]
    );

    // Each named key is its own principal: ops-bot cannot use ci-bot's
    // session (the same 404 as an unknown session).
    let r = post(&http, &s.url(), WHOAMI_CALL)
        .header("x-api-key", OPS)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_unnamed_key_beside_named_ones_behaves_as_before() {
    let s = server();
    let c = client(s.url(), KEY).await;
    assert_eq!(tool_names(&c).await, ["get_time", "whoami"]);
    let who = whoami(&c).await;
    assert_eq!(
        who["subject"],
        format!("api-key:{}", fingerprint(KEY.as_bytes()))
    );
    assert_eq!(who["scopes"], serde_json::json!([]));
    assert_eq!(who["strategy"], "api_key");
    assert_eq!(
        who["claims"],
        serde_json::json!({"key_fingerprint": fingerprint(KEY.as_bytes())})
    );
    c.cancel().await.unwrap();

    let http = reqwest::Client::new();
    let sid = open_session(&http, &s, KEY).await;
    let r = post(&http, &s.url(), ADMIN_CALL)
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![r#"ApiKey header="X-API-Key", error="insufficient_scope", scope="admin""#]
    );

    // A whole named entry is no key; a wrong key is the usual 401.
    for wrong in [
        format!("ops-bot:{OPS}"),
        "wrong-key-0123456789abc".to_owned(),
    ] {
        let r = post(&http, &s.url(), INIT)
            .header("x-api-key", &wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            challenges(&r),
            vec![
                r#"ApiKey header="X-API-Key", error="invalid_token", error_description="unknown API key""#
            ]
        );
    }
}

#[tokio::test]
async fn a_hashed_named_key_meets_the_default_admin_scope() {
    // No MCP_TOOL_SCOPES: admin_status needs its default, `mcp:admin`, a
    // scope with a ':' in it; the key is given by its digest.
    assert_eq!(fingerprint(OPS.as_bytes()), OPS_SHA256[..12]);
    let keys = format!("ops-bot:sha256:{OPS_SHA256}:mcp:tools mcp:admin,ci-bot:{CI}:mcp:tools");
    let s = Server::start(&[("MCP_API_KEYS", &keys)]);
    let c = client(s.url(), OPS).await;
    assert!(tool_names(&c).await.contains(&"admin_status".to_owned()));
    let r = c
        .call_tool(CallToolRequestParams::new("admin_status"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["server"], "mcp-auth-server");
    let who = whoami(&c).await;
    assert_eq!(who["subject"], "api-key:ops-bot");
    assert_eq!(who["scopes"], serde_json::json!(["mcp:tools", "mcp:admin"]));
    c.cancel().await.unwrap();

    let http = reqwest::Client::new();
    let r = post(&http, &s.url(), ADMIN_CALL)
        .header("x-api-key", CI)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin_status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![r#"ApiKey header="X-API-Key", error="insufficient_scope", scope="mcp:admin""#]
    );
}

#[tokio::test]
async fn in_a_chain_the_error_goes_on_the_api_key_challenge_only() {
    // api_key,bearer: a key without the scope gets the error on the ApiKey
    // challenge; the Bearer challenge carries no error (RFC 6750 §3.1: no
    // error code for a scheme the client did not use), only its realm.
    let keys = keys();
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "api_key,bearer"),
        ("MCP_API_KEYS", &keys),
        ("MCP_JWT_SECRET", "an-example-secret-of-at-least-32-bytes"),
        ("MCP_TOOL_SCOPES", "admin_status=admin"),
    ]);
    let http = reqwest::Client::new();
    let r = post(&http, &s.url(), ADMIN_CALL)
        .header("x-api-key", CI)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin_status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![
            r#"ApiKey header="X-API-Key", error="insufficient_scope", scope="admin""#.to_owned(),
            r#"Bearer realm="mcp""#.to_owned(),
        ]
    );
    let c = client(s.url(), OPS).await;
    let r = c
        .call_tool(CallToolRequestParams::new("admin_status"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["server"], "mcp-auth-server");
    c.cancel().await.unwrap();
}

#[test]
fn a_bad_named_list_stops_the_server_naming_the_position_not_the_key() {
    for (list, want) in [
        (
            format!("ci-bot:{CI},ci-bot:{OPS}"),
            "error: MCP_API_KEYS: key #2 has the same name as key #1",
        ),
        (
            format!("ci-bot:{CI},ops-bot:{CI}:admin"),
            "error: MCP_API_KEYS: key #2 is the same key as key #1",
        ),
        (
            format!("{KEY},user name:{OPS}"),
            "error: MCP_API_KEYS: key #2 contains ':', so it is read as <name>:<key>[:<scopes>]",
        ),
        (
            format!("ci-bot:{CI}:admin \"x\""),
            "error: MCP_API_KEYS: key #1 has bad scopes",
        ),
    ] {
        let dir = tempdir();
        let out = command(dir.path(), &[("MCP_API_KEYS", &list)])
            .args(["--port", "0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{list}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(want), "{stderr}");
        for secret in [CI, OPS, KEY, "user name"] {
            assert!(!stderr.contains(secret), "{stderr}");
        }
    }
}
