//! The real binary over real loopback HTTP: authentication, challenges,
//! Host/Origin protection, limits, sessions, configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashMap, time::Duration};

use common::{INIT, KEY, Server, challenges, open, post};
use http::{HeaderName, HeaderValue};
use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

fn api_key_server() -> Server {
    Server::start(&[("MCP_AUTH_STRATEGY", "api_key"), ("MCP_API_KEYS", KEY)])
}

async fn rmcp_client(
    url: String,
    key: &str,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ()>, rmcp::service::ClientInitializeError>
{
    let headers = HashMap::from([(
        HeaderName::from_static("x-api-key"),
        HeaderValue::from_str(key).unwrap(),
    )]);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    ().serve(transport).await
}

#[tokio::test]
async fn missing_wrong_and_query_keys_get_401_with_the_api_key_challenge() {
    let s = api_key_server();
    let c = reqwest::Client::new();

    let r = post(&c, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenges(&r), vec![r#"ApiKey header="X-API-Key""#]);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    let r = post(&c, &s.url(), INIT)
        .header("x-api-key", "not-the-key-0123456789")
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

    for query in ["api_key", "key", "access_token"] {
        let r = post(&c, &format!("{}?{query}={KEY}", s.url()), INIT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{query}");
        assert_eq!(challenges(&r), vec![r#"ApiKey header="X-API-Key""#]);
    }

    let r = post(&c, &s.url(), INIT)
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "keys are accepted in X-API-Key only");

    // The failed attempt was logged with a fingerprint, never the key.
    let logs = s.stderr();
    assert!(logs.contains("API key rejected"), "{logs}");
    assert!(!logs.contains("not-the-key-0123456789"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
}

#[tokio::test]
async fn rmcp_client_with_the_right_key_lists_and_calls_tools() {
    let s = api_key_server();
    let client = rmcp_client(s.url(), KEY).await.expect("initialize");
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["get_time", "whoami"]);

    let r = client
        .call_tool(CallToolRequestParams::new("get_time"))
        .await
        .unwrap();
    let text = r.content[0].as_text().unwrap().text.clone();
    let t = chrono::DateTime::parse_from_rfc3339(&text).expect("ISO 8601");
    let skew = (chrono::Utc::now() - t.to_utc()).num_seconds().abs();
    assert!(skew < 60, "{text}");

    let r = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let who = r.structured_content.expect("structured whoami");
    assert_eq!(who["strategy"], "api_key");
    assert!(who["subject"].as_str().unwrap().starts_with("api-key:"));
    assert!(!who.to_string().contains(KEY));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn rmcp_client_with_a_wrong_key_fails_to_connect() {
    let s = api_key_server();
    assert!(
        rmcp_client(s.url(), "wrong-key-0123456789abc")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_session_is_no_credential() {
    let s = api_key_server();
    let c = reqwest::Client::new();
    let sid = open(&c, &s, Some(KEY)).await.unwrap();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    for key in [None, Some("wrong-key-0123456789abc")] {
        let mut req = post(&c, &s.url(), list).header("mcp-session-id", &sid);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
    }

    let r = post(&c, &s.url(), list)
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("get_time"));

    // DELETE ends the session; it is then unknown (404).
    let r = c
        .delete(s.url())
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "a finished DELETE says 204 No Content");
    let r = post(&c, &s.url(), list)
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn foreign_host_and_origin_get_403_before_authentication() {
    let s = api_key_server();
    let c = reqwest::Client::new();
    // Without credentials: the guard answers before authentication would
    // (401); a Host that is no authority at all is a bad request (400,
    // RFC 9112 3.2).
    for (name, value, status) in [
        ("host", "attacker.example", 403),
        ("host", "localhost:80@attacker.example", 400),
        ("origin", "https://attacker.example", 403),
        ("origin", "null", 403),
    ] {
        let r = post(&c, &s.url(), INIT)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{name}: {value}");
        assert!(r.headers().get("www-authenticate").is_none());
    }
    // With valid credentials too.
    let r = post(&c, &s.url(), INIT)
        .header("host", "attacker.example")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The health probes answer whatever the Host, as an orchestrator
    // sends them to the address it knows (Kubernetes: the pod's IP and
    // port; an attack pass: every probe was refused, and audited); not
    // to another origin's page.
    for path in ["/health", "/ready"] {
        let r = c
            .get(format!("{}{path}", s.base()))
            .header("host", "10.1.2.3:8001")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let r = c
            .get(format!("{}{path}", s.base()))
            .header("host", "10.1.2.3:8001")
            .header("origin", "https://attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = c
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            s.base()
        ))
        .header("host", "10.1.2.3:8001")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "other paths keep the Host check");
    let r = post(&c, &s.url(), INIT)
        .header("origin", "https://attacker.example")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "Origin not allowed");

    // A loopback browser origin is allowed by default and gets CORS headers.
    let r = post(&c, &s.url(), INIT)
        .header("origin", "http://localhost:6274")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for name in [
        "mcp-session-id",
        "www-authenticate",
        "dpop-nonce",
        "retry-after",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    // Caches keep answers apart by Origin, and by nothing else CORS adds.
    let vary: Vec<_> = r.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["origin"]);

    // CORS preflight needs no credentials.
    let r = c
        .request(reqwest::Method::OPTIONS, s.url())
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-api-key,content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    // A tool's parameters sent as headers (SEP-2243), named by the tool:
    // allowed besides the configured list, and only to allowed origins.
    let preflight = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, s.url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,mcp-method,mcp-name,mcp-param-region",
            )
            .send()
    };
    let r = preflight("http://localhost:6274").await.unwrap();
    let allowed: Vec<String> = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for name in ["content-type", "mcp-method", "mcp-name", "mcp-param-region"] {
        assert!(allowed.iter().any(|a| a == name), "{name} in {allowed:?}");
    }
    let r = preflight("https://elsewhere.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let allowed = r
        .headers()
        .get("access-control-allow-headers")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(!allowed.contains("mcp-param"), "{allowed}");
}

#[tokio::test]
async fn another_principal_cannot_use_or_end_someone_elses_session() {
    const OTHER: &str = "second-key-0123456789abcdef";
    let s = Server::start(&[("MCP_API_KEYS", &format!("{KEY},{OTHER}"))]);
    let c = reqwest::Client::new();
    let sid = open(&c, &s, Some(KEY)).await.unwrap();
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    let r = post(&c, &s.url(), call)
        .header("x-api-key", OTHER)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["cache-control"],
        "no-store",
        "not kept by caches"
    );
    let r = c
        .delete(s.url())
        .header("x-api-key", OTHER)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = post(&c, &s.url(), call)
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner's session survives");
}

#[tokio::test]
async fn configured_hosts_replace_the_defaults() {
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("HTTP_ALLOWED_HOSTS", "mcp.example.com"),
    ]);
    let c = reqwest::Client::new();
    let r = post(&c, &s.url(), INIT)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "127.0.0.1 is no longer listed");
    let r = post(&c, &s.url(), INIT)
        .header("x-api-key", KEY)
        .header("host", "mcp.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The health probes answer whatever the Host.
    let r = c.get(format!("{}/health", s.base())).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_malformed_json_a_4xx() {
    let s = Server::start(&[("MCP_API_KEYS", KEY), ("HTTP_MAX_REQUEST_SIZE", "1kb")]);
    // The server closes a connection whose body it refused to read; do not
    // let the client reuse it for the next request.
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = post(&c, &s.url(), &big)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Without Content-Length (chunked), the limit holds while streaming.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..2000].to_owned()), Ok(big[2000..].to_owned())];
    let r = c
        .post(s.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", KEY)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    for bad in [
        "{",
        "not json",
        "[]",
        r#"{"jsonrpc":"2.0","id":1}"#,
        "\u{0}\u{1}",
    ] {
        let r = post(&c, &s.url(), bad)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{bad:?}: {}", r.status());
    }
    let r = c.get(format!("{}/health", s.base())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

/// A body may hold one JSON value per 64 bytes of the body limit (rmcp
/// keeps ~230 bytes per value while it reads one: a 4 MiB body of zeros
/// took ~470 MiB): more gets 413, on both transports, and the session goes
/// on.
#[tokio::test]
async fn bodies_of_too_many_json_values_get_413() {
    let s = Server::start(&[
        ("MCP_TRANSPORT", "both"),
        ("MCP_API_KEYS", KEY),
        ("HTTP_MAX_REQUEST_SIZE", "64kb"),
    ]);
    let c = reqwest::Client::new();
    let sid = common::open(&c, &s, Some(KEY)).await.unwrap();
    // 64 KiB / 64 = 1 024 values: `{`, `:`, `,`, `[` counted.
    let call = |zeros: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"get_time","arguments":{{"pad":[{}]}}}}}}"#,
            vec!["0"; zeros].join(",")
        )
    };
    let send = |body: String| {
        post(&c, &s.url(), &body)
            .header("x-api-key", KEY)
            .header("mcp-session-id", &sid)
            .send()
    };
    let r = send(call(2000)).await.unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large", "{body}");
    // Strings are not values: the same commas inside one are fine, and so
    // is a call below the bound.
    let quoted = call(2000).replace("[0,", "[\"0,").replace(",0]", ",0\"]");
    assert_eq!(send(quoted).await.unwrap().status(), 200);
    assert_eq!(send(call(1000)).await.unwrap().status(), 200);
    // Only what rmcp reads as JSON is counted: another media type keeps
    // rmcp's 415.
    let r = c
        .post(s.url())
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(call(2000))
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // The legacy transport's message endpoint too.
    let (_stream, endpoint) = common::sse_stream(&c, &s, KEY).await;
    let message = |body: String| {
        c.post(format!("{}{endpoint}", s.base()))
            .header("content-type", "application/json")
            .header("x-api-key", KEY)
            .body(body)
            .send()
    };
    assert_eq!(message(call(2000)).await.unwrap().status(), 413);
    assert_eq!(
        message(common::INIT.to_owned()).await.unwrap().status(),
        202
    );
}

#[tokio::test]
async fn without_configuration_a_key_is_generated_printed_once_and_required() {
    let s = Server::start(&[]);
    let logs = s.stderr();
    let key = logs
        .split("X-API-Key: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the generated key is printed")
        .trim_end_matches('"')
        .to_owned();
    assert!(key.len() >= 32, "{key}");
    assert!(
        logs.contains("--header \"X-API-Key: "),
        "a ready-to-paste command: {logs}"
    );

    let c = reqwest::Client::new();
    let r = post(&c, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let client = rmcp_client(s.url(), &key)
        .await
        .expect("generated key works");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn none_must_be_chosen_and_lets_everyone_in_on_loopback() {
    let s = Server::start(&[("MCP_AUTH_STRATEGY", "none")]);
    let c = reqwest::Client::new();
    let r = post(&c, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let client = rmcp_client(s.url(), "ignored").await.unwrap();
    let r = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["subject"], "anonymous");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn settings_come_from_dotenv_and_a_toml_file() {
    let s = Server::start_in(&[], &["--config", "server.toml"], |dir| {
        std::fs::write(dir.join(".env"), format!("MCP_API_KEYS={KEY}\n")).unwrap();
        std::fs::write(
            dir.join("server.toml"),
            "mcp_server_name = \"from-toml\"\nmcp_api_keys = \"toml-key-is-overridden-by-dotenv\"\n",
        )
        .unwrap();
    });
    let client = rmcp_client(s.url(), KEY)
        .await
        .expect(".env key wins over TOML");
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "from-toml");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut s = api_key_server();
    let c = reqwest::Client::new();
    let _sid = open(&c, &s, Some(KEY)).await.unwrap();
    let pid = s.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(code) = s.child.try_wait().unwrap() {
            assert!(code.success(), "{code:?}: {}", s.stderr());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_stateless_2026_07_28_wire_is_authenticated_on_every_request() {
    use rmcp::{ClientLifecycleMode, ClientServiceExt, model::ProtocolVersion};
    let s = api_key_server();
    let connect = |key: &str| {
        let headers = HashMap::from([(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(key).unwrap(),
        )]);
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(s.url()).custom_headers(headers),
        );
        ().serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
    };
    let client = connect(KEY).await.expect("discover with the right key");
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    let r = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["strategy"], "api_key");
    client.cancel().await.unwrap();
    assert!(connect("wrong-key-0123456789abc").await.is_err());
}

#[tokio::test]
async fn the_documented_env_example_works_as_a_dotenv_file() {
    let example = include_str!("../../../.env.example");
    let s = Server::start_in(&[], &[], |dir| {
        std::fs::write(dir.join(".env"), example).unwrap();
    });
    // With the example's defaults: no keys, so a key is generated and required.
    assert!(s.stderr().contains("X-API-Key: mcp_"), "{}", s.stderr());
    let r = post(&reqwest::Client::new(), &s.url(), INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn under_none_every_client_counts_as_anonymous_not_as_one_user() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "none"),
        ("MCP_MAX_SESSIONS_PER_PRINCIPAL", "1"),
    ]);
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let r = post(&c, &s.url(), INIT).send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "the per-principal cap does not apply to `none`"
        );
    }
}

/// Under `none` every caller is anonymous, so the anonymous cap (meant to keep
/// unauthenticated clients from crowding out authenticated ones) defaults to
/// the global cap: clients that never end their sessions (the conformance
/// suite) must not lock everyone out after ten. An explicit cap still holds.
#[tokio::test]
async fn under_none_the_anonymous_cap_is_the_global_cap_unless_set() {
    let c = reqwest::Client::new();
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "none"),
        ("HTTP_MAX_CONCURRENT_SESSIONS", "15"),
    ]);
    for n in 1..=15 {
        let r = post(&c, &s.url(), INIT).send().await.unwrap();
        assert_eq!(r.status(), 200, "session {n} of 15");
    }
    let r = post(&c, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 503, "the global cap still holds");

    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "none"),
        ("MCP_MAX_ANONYMOUS_SESSIONS", "2"),
    ]);
    for _ in 0..2 {
        assert_eq!(post(&c, &s.url(), INIT).send().await.unwrap().status(), 200);
    }
    let r = post(&c, &s.url(), INIT).send().await.unwrap();
    assert_eq!(
        r.status(),
        503,
        "an explicit MCP_MAX_ANONYMOUS_SESSIONS holds"
    );
}

/// rmcp's own refusals, passed through, are kept by no cache either: a
/// method it does not serve (405), an event stream asked for without
/// `Accept: text/event-stream` (406).
#[tokio::test]
async fn rmcp_refusals_are_not_stored() {
    let s = Server::start(&[("MCP_API_KEYS", KEY)]);
    let c = reqwest::Client::new();
    let r = c
        .put(s.url())
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(r.headers()["cache-control"], "no-store", "{}", r.status());
    let sid = open(&c, &s, Some(KEY)).await.unwrap();
    let r = c
        .get(s.url())
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(r.headers()["cache-control"], "no-store", "{}", r.status());
}

/// A session's event stream opened anonymously ends as the session is
/// bound to a principal (what the server sends on it is theirs from then
/// on), while the session itself goes on; a stream its owner opens stays.
#[tokio::test]
async fn an_anonymous_event_stream_ends_once_its_session_is_bound() {
    use futures::StreamExt;
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
        ("MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", "false"),
        ("HTTP_SESSION_TIMEOUT", "600000"),
    ]);
    let c = reqwest::Client::new();
    let sid = open(&c, &s, None).await.unwrap();
    /// The stream, read on in a task of its own (it ends when the stream does).
    async fn stream(
        c: &reqwest::Client,
        s: &Server,
        sid: &str,
        key: Option<&str>,
    ) -> tokio::task::JoinHandle<()> {
        let mut body = common::event_stream(c, s, sid, key).await.bytes_stream();
        tokio::spawn(async move { while let Some(Ok(_)) = body.next().await {} })
    }
    let anonymous = stream(&c, &s, &sid, None).await;
    // Bound to KEY's principal by its first request in the session: on
    // this replica the anonymous stream ends at once, not at its next
    // check (5 s), when it would still have received the owner's messages.
    assert_eq!(common::list(&c, &s, &sid, Some(KEY)).await, 200);
    tokio::time::timeout(Duration::from_secs(2), anonymous)
        .await
        .expect("the anonymous stream ended as the session was bound")
        .unwrap();
    // The owner's stream, opened then, stays past a check (5 s).
    let owners = stream(&c, &s, &sid, Some(KEY)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!owners.is_finished(), "the owner's stream stays open");
    assert_eq!(common::list(&c, &s, &sid, Some(KEY)).await, 200);
    assert_eq!(common::list(&c, &s, &sid, None).await, 401);
}

/// An anonymous call of a scoped tool (operations allowed without
/// credentials) is answered 401 with a challenge naming what the call needs,
/// the server's scopes and the tool's, so a client asks for all of them in
/// one login instead of stepping up right after.
#[tokio::test]
async fn an_anonymous_scoped_call_is_challenged_for_the_tools_scopes() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "bearer"),
        ("MCP_JWT_SECRET", "a-test-secret-that-is-at-least-32-bytes"),
        ("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
        ("MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", "false"),
    ]);
    let c = reqwest::Client::new();
    let r = post(&c, &s.url(), INIT).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(r.text().await);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_status","arguments":{}}}"#;
    let r = post(&c, &s.url(), call)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(r#"scope="mcp:tools mcp:admin""#),
        "{challenge}"
    );
}

/// `whoami` needs a caller: under anonymous sessions, calling it without
/// credentials is answered 401 with the challenge (a client logs in), not
/// with someone else's name (it answered as the stdio transport's local
/// process before); with credentials it names the caller.
#[tokio::test]
async fn an_anonymous_whoami_is_challenged() {
    let s = Server::start(&[
        ("MCP_API_KEYS", KEY),
        ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
        ("MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", "false"),
    ]);
    let c = reqwest::Client::new();
    let sid = open(&c, &s, None).await.unwrap();
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    let r = post(&c, &s.url(), call)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        common::challenges(&r)
            .iter()
            .any(|c| c.starts_with("ApiKey")),
        "{:?}",
        common::challenges(&r)
    );
    let body = r.text().await.unwrap();
    assert!(!body.contains("local-process"), "{body}");
    // Tools that need no caller still answer without credentials, and are
    // the only ones listed to it (an attack pass: admin_status and its
    // description were shown to anonymous callers).
    assert_eq!(common::list(&c, &s, &sid, None).await, 200);
    let listed = |key: Option<&'static str>| {
        let mut r = post(
            &c,
            &s.url(),
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
        )
        .header("mcp-session-id", &sid);
        if let Some(key) = key {
            r = r.header("x-api-key", key);
        }
        async move { r.send().await.unwrap().text().await.unwrap() }
    };
    let anonymous = listed(None).await;
    assert!(anonymous.contains("get_time"), "{anonymous}");
    for hidden in ["whoami", "admin_status"] {
        assert!(!anonymous.contains(hidden), "{hidden}: {anonymous}");
    }
    assert!(listed(Some(KEY)).await.contains("whoami"));
    let call_admin = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"admin_status","arguments":{}}}"#;
    let r = post(&c, &s.url(), call_admin)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the tool needs a caller with its scope");
    let r = post(&c, &s.url(), call)
        .header("mcp-session-id", &sid)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("api_key"), "{body}");
    assert!(!body.contains("local-process"), "{body}");
}

/// On the stateless 2026-07-28 wire the tool list depends on the caller
/// (tools beyond its scopes are hidden), so it is marked `cacheScope:
/// "private"` with no time to live: a shared cache never hands one
/// caller's list to another.
#[tokio::test]
async fn the_callers_tool_list_is_private_to_caches() {
    let s = api_key_server();
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let r = post(&reqwest::Client::new(), &s.url(), list)
        .header("x-api-key", KEY)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&body);
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["result"]["cacheScope"], "private", "{v}");
    assert_eq!(v["result"]["ttlMs"], 0, "{v}");
    assert!(
        v["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );
}
