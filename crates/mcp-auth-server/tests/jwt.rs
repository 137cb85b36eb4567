//! The `bearer` and `oauth2` strategies end to end: the real binary, its
//! `token` command, a real issuer (metadata + JWKS) on loopback, rmcp's
//! client, raw HTTP on both wires, per-tool step-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::{INIT, Server, challenges, command, issuer, post, sign, tempdir};
use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes";

fn token(env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempdir();
    let out = command(dir.path(), env)
        .arg("token")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout).unwrap();
    assert_eq!(t.lines().count(), 1, "only the token on stdout");
    t.trim().to_owned()
}

async fn client(url: String, token: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(token),
    );
    ().serve(transport).await.expect("initialize")
}

fn bearer_env() -> Vec<(&'static str, &'static str)> {
    vec![("MCP_AUTH_STRATEGY", "bearer"), ("MCP_JWT_SECRET", SECRET)]
}

#[tokio::test]
async fn the_token_command_mints_what_the_bearer_strategy_accepts() {
    let s = Server::start(&bearer_env());
    let mut env = bearer_env();
    let url = s.url();
    env.push(("MCP_SERVER_URL", &url));
    let t = token(
        &env,
        &[
            "--sub",
            "alice",
            "--scope",
            "mcp:tools",
            "--expires-in",
            "10m",
        ],
    );
    let c = client(s.url(), &t).await;
    let who = c
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["strategy"], "bearer");
    assert_eq!(who["issuer"], "mcp-auth-server");
    assert_eq!(who["scopes"], json!(["mcp:tools"]));
    c.cancel().await.unwrap();

    let http = reqwest::Client::new();
    // Without a token: a Bearer challenge with only its realm (no metadata:
    // no authorization server).
    let r = post(&http, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenges(&r), vec![r#"Bearer realm="mcp""#]);
    // Minted for another audience, or by another secret: invalid_token.
    let mut other = bearer_env();
    other.push(("MCP_SERVER_URL", "http://127.0.0.1:1/mcp"));
    let foreign = token(&other, &["--sub", "alice"]);
    let forged = token(
        &[
            ("MCP_JWT_SECRET", "another-secret-that-is-also-32-bytes!!"),
            ("MCP_SERVER_URL", &url),
        ],
        &["--sub", "alice"],
    );
    for t in [foreign, forged, format!("{t}x")] {
        let r = post(&http, &s.url(), INIT)
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(
            challenges(&r)[0].starts_with(r#"Bearer error="invalid_token""#),
            "{:?}",
            challenges(&r)
        );
    }
    // The scheme is case-insensitive; a token in the query string is ignored.
    let r = post(&http, &s.url(), INIT)
        .header("authorization", format!("bEaReR {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(&http, &format!("{}?access_token={t}", s.url()), INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_scoped_tool_answers_403_insufficient_scope_and_is_hidden_until_granted() {
    let s = Server::start(&bearer_env());
    let url = s.url();
    let mut env = bearer_env();
    env.push(("MCP_SERVER_URL", &url));
    let plain = token(&env, &["--sub", "bob", "--scope", "mcp:tools"]);
    let admin = token(&env, &["--sub", "root", "--scope", "mcp:tools mcp:admin"]);

    // rmcp client, 2025-11-25 session wire.
    let c = client(s.url(), &plain).await;
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!names.contains(&"admin_status".to_owned()), "{names:?}");
    assert!(
        c.call_tool(CallToolRequestParams::new("admin_status"))
            .await
            .is_err()
    );
    c.cancel().await.unwrap();
    let c = client(s.url(), &admin).await;
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"admin_status".to_owned()), "{names:?}");
    let r = c
        .call_tool(CallToolRequestParams::new("admin_status"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["server"], "mcp-auth-server");
    c.cancel().await.unwrap();

    // Raw HTTP: the exact 403, in a session (JSON-RPC body) ...
    let http = reqwest::Client::new();
    let r = post(&http, &s.url(), INIT)
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(r.text().await);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_status","arguments":{}}}"#;
    let r = post(&http, &s.url(), call)
        .bearer_auth(&plain)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![r#"Bearer error="insufficient_scope", scope="mcp:admin""#]
    );
    // ... and stateless 2026-07-28, named by the Mcp-Method / Mcp-Name headers.
    let r = post(&http, &s.url(), call)
        .bearer_auth(&plain)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin_status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A body calling a harmless tool while the headers name the scoped one is
    // still refused; so is an ambiguous body.
    let harmless = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_time","arguments":{}}}"#;
    let r = post(&http, &s.url(), harmless)
        .bearer_auth(&plain)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin_status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let dup = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_time","name":"admin_status"}}"#;
    let r = post(&http, &s.url(), dup)
        .bearer_auth(&plain)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The request limit is per user: one user's tokens for several client
/// ids (the login facade lets anyone register clients) share one budget
/// (an attack pass: each client id had its own), while another user has
/// their own.
#[tokio::test]
async fn the_request_limit_is_per_user_over_all_client_ids() {
    let (iss, enc) = issuer().await;
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", &iss),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
        ("HTTP_RATE_LIMIT_ENABLED", "true"),
        ("HTTP_RATE_LIMIT_MAX_REQUESTS", "3"),
        ("HTTP_RATE_LIMIT_WINDOW", "60000"),
    ]);
    let http = reqwest::Client::new();
    let now = jsonwebtoken::get_current_timestamp();
    let token = |sub: &str, client: &str| {
        sign(
            &enc,
            json!({"sub": sub, "iss": iss, "aud": s.url(), "exp": now + 300, "scope": "mcp:tools", "client_id": client}),
        )
    };
    let mut statuses = Vec::new();
    for client in ["c1", "c2", "c3", "c4"] {
        let r = post(&http, &s.url(), INIT)
            .bearer_auth(token("dave", client))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "dave's clients share a budget"
    );
    let r = post(&http, &s.url(), INIT)
        .bearer_auth(token("erin", "c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another user");
}

#[tokio::test]
async fn oauth2_accepts_only_tokens_of_its_issuer_minted_for_this_server() {
    let (iss, enc) = issuer().await;
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", &iss),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools,mcp:admin"),
        ("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
    ]);
    let http = reqwest::Client::new();
    let rm = format!("{}/.well-known/oauth-protected-resource/mcp", s.base());

    // RFC 9728 metadata names the issuer; the 401 points at it.
    let md: serde_json::Value = http.get(&rm).send().await.unwrap().json().await.unwrap();
    assert_eq!(md["resource"], s.url());
    assert_eq!(md["authorization_servers"], json!([iss]));
    assert_eq!(md["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
    let r = post(&http, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenges(&r),
        vec![format!(
            r#"Bearer scope="mcp:tools", resource_metadata="{rm}""#
        )]
    );

    let now = jsonwebtoken::get_current_timestamp();
    let claims = |aud: &str, scope: &str| json!({"sub": "dana", "iss": iss, "aud": aud, "exp": now + 300, "scope": scope, "client_id": "app"});
    let good = sign(&enc, claims(&s.url(), "mcp:tools"));
    let c = client(s.url(), &good).await;
    let who = c
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(
        (who["subject"].as_str(), who["client_id"].as_str()),
        (Some("dana"), Some("app"))
    );
    c.cancel().await.unwrap();

    // Minted for another resource: refused (no token passthrough, RFC 8707).
    let r = post(&http, &s.url(), INIT)
        .bearer_auth(sign(&enc, claims("https://other.example/mcp", "mcp:tools")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenges(&r)[0].contains(r#"error="invalid_token""#));
    // Valid but without the server-wide scope: 403 naming it.
    let r = post(&http, &s.url(), INIT)
        .bearer_auth(sign(&enc, claims(&s.url(), "other")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![format!(
            r#"Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="{rm}""#
        )]
    );
    // Step-up for the admin tool names every scope needed.
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_status","arguments":{}}}"#;
    let r = post(&http, &s.url(), call)
        .bearer_auth(&good)
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenges(&r),
        vec![format!(
            r#"Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", resource_metadata="{rm}""#
        )]
    );
}

#[tokio::test]
async fn bad_jwt_settings_stop_the_server_with_one_line() {
    for (env, want) in [
        (vec![("MCP_AUTH_STRATEGY", "bearer")], "MCP_JWT_SECRET: "),
        (
            vec![("MCP_AUTH_STRATEGY", "bearer"), ("MCP_JWT_SECRET", "short")],
            "MCP_JWT_SECRET: ",
        ),
        (vec![("MCP_AUTH_STRATEGY", "oauth2")], "MCP_OAUTH_ISSUER: "),
        (
            // `none` carries no scopes (named API keys do, so they may).
            vec![
                ("MCP_AUTH_STRATEGY", "none"),
                ("MCP_OAUTH_REQUIRED_SCOPES", "x"),
            ],
            "MCP_OAUTH_REQUIRED_SCOPES: ",
        ),
    ] {
        let dir = tempdir();
        let out = command(dir.path(), &env)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("error: {want}")), "{stderr}");
    }
}

#[tokio::test]
async fn huge_and_garbage_tokens_get_a_4xx_and_the_server_stays_up() {
    let s = Server::start(&bearer_env());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for t in [
        "x".repeat(20_000),
        "a.b.c".to_owned(),
        "eyJhbGciOiJub25lIn0.e30.".to_owned(),
        format!("{}.{}.{}", "e".repeat(9000), "e".repeat(9000), "e"),
    ] {
        let r = post(&http, &s.url(), INIT)
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Past the HTTP server's header limit the request is refused before
    // authentication (431), or the connection is closed; never a crash.
    let r = post(&http, &s.url(), INIT)
        .header("authorization", format!("Bearer {}", "y".repeat(200_000)))
        .send()
        .await;
    if let Ok(r) = r {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let r = http
        .get(format!("{}/health", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn asymmetric_keys_verify_tokens_minted_with_the_private_half() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../mcp-auth-jwt/tests/keys");
    let public = format!("{keys}/ec256.pub.pem");
    let private = std::fs::read_to_string(format!("{keys}/ec256.pem")).unwrap();
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "bearer"),
        ("MCP_JWT_PUBLIC_KEY", &public),
    ]);
    let url = s.url();
    // The private key pasted into the variable (not a path) works ...
    let t = token(
        &[("MCP_JWT_PRIVATE_KEY", &private), ("MCP_SERVER_URL", &url)],
        &["--sub", "erin"],
    );
    let r = post(&reqwest::Client::new(), &s.url(), INIT)
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ... and a broken one is reported without echoing it.
    let dir = tempdir();
    let broken = private.replace('A', "!");
    let out = command(dir.path(), &[("MCP_JWT_PRIVATE_KEY", &broken)])
        .args(["token", "--sub", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: MCP_JWT_PRIVATE_KEY: "),
        "{stderr}"
    );
    assert!(
        !stderr.contains("BEGIN") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let out = command(dir.path(), &[("MCP_JWT_PRIVATE_KEY", "/no/such/key.pem")])
        .args(["token", "--sub", "x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("/no/such"), "{stderr}");
    // Settings the token does not use need not be valid (an attack pass:
    // the server's own refusals, api_key without keys here, stopped it).
    let minted = token(
        &[("MCP_JWT_SECRET", SECRET), ("MCP_AUTH_STRATEGY", "api_key")],
        &["--sub", "x"],
    );
    assert_eq!(minted.split('.').count(), 3, "{minted}");
}

#[tokio::test]
async fn tool_scopes_from_settings_replace_the_default_of_a_tool_they_name() {
    // Under Cognito, custom scopes are `<resource server>/<scope>`: the
    // built-in mcp:admin for admin_status could never be granted, so the
    // setting must be able to replace it.
    let mut env = bearer_env();
    env.push(("MCP_TOOL_SCOPES", "admin_status=https://mcp.example/admin"));
    let s = Server::start(&env);
    let url = s.url();
    env.push(("MCP_SERVER_URL", &url));
    let old = token(&env, &["--sub", "a", "--scope", "mcp:admin"]);
    let new = token(
        &env,
        &["--sub", "b", "--scope", "https://mcp.example/admin"],
    );
    let c = client(s.url(), &old).await;
    assert!(
        c.call_tool(CallToolRequestParams::new("admin_status"))
            .await
            .is_err(),
        "the replaced default no longer opens the tool"
    );
    c.cancel().await.unwrap();
    let c = client(s.url(), &new).await;
    let r = c
        .call_tool(CallToolRequestParams::new("admin_status"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["server"], "mcp-auth-server");
    c.cancel().await.unwrap();
}

/// Issue #17: `/ready` is 200 when the issuer's keys are fetched and the
/// store answers, 503 naming the keys when the issuer cannot be reached;
/// `/health` stays 200 either way (liveness).
#[tokio::test]
async fn ready_reports_the_issuers_keys_and_the_store() {
    let (iss, _) = issuer().await;
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", iss.as_str()),
    ]);
    let http = reqwest::Client::new();
    let mut body = serde_json::Value::Null;
    for _ in 0..40 {
        let r = http
            .get(format!("{}/ready", s.base()))
            .send()
            .await
            .unwrap();
        let status = r.status();
        body = r.json().await.unwrap();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(body["status"], "ready", "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["oauth2 keys", "session store"], "{body}");

    // An issuer that is not there: no keys, not ready; alive all the same.
    let gone = format!(
        "http://127.0.0.1:{}",
        mcp_auth_integration_tests::free_port()
    );
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", gone.as_str()),
    ]);
    let r = http
        .get(format!("{}/ready", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"][0]["ok"], false, "{body}");
    assert!(
        !body.to_string().contains(&gone),
        "no URL in the probe: {body}"
    );
    let r = http
        .get(format!("{}/health", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
