//! The facade's client side: RFC 7591 registration, redirect URI matching,
//! and client ID metadata documents fetched from real loopback HTTP servers
//! behind the SSRF guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mcp_auth_proxy::clients::{
    AddressClass, CimdError, ClientInfo, ClientKind, FetchGuard, GrantType, MetadataDocumentCache,
    RegistrationError, RegistrationPolicy, TokenEndpointAuthMethod, fetch_metadata_document,
    is_metadata_document_client_id, redirect_uri_allowed, register,
};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------
// Registration (RFC 7591)
// ---------------------------------------------------------------------------

fn reg(request: Value) -> Result<(ClientInfo, Option<String>, Value), RegistrationError> {
    register(&request, &RegistrationPolicy::default(), NOW)
}

fn reg_err(request: Value) -> RegistrationError {
    match reg(request.clone()) {
        Ok(_) => panic!("accepted: {request}"),
        Err(e) => e,
    }
}

#[test]
fn registration_public_client_gets_no_secret() {
    let (client, secret, body) = reg(json!({
        "client_name": "Cursor",
        "redirect_uris": ["http://127.0.0.1:6274/oauth/callback", "cursor.anysphere.app:/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp:tools  mcp:tools mcp:resources",
        "client_uri": "https://cursor.example",
        "logo_uri": "https://cursor.example/logo.png",
        "contacts": ["ignored@example.com"],
    }))
    .unwrap();
    assert!(secret.is_none());
    assert_eq!(client.kind, ClientKind::Dynamic);
    assert_eq!(
        client.token_endpoint_auth_method,
        TokenEndpointAuthMethod::None
    );
    assert!(!client.is_confidential());
    assert!(client.client_secret_sha256.is_none());
    assert_eq!(client.client_name, "Cursor");
    assert_eq!(
        client.grant_types,
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert_eq!(client.scope.as_deref(), Some("mcp:tools mcp:resources"));
    assert_eq!(client.registered_at, NOW);
    assert_eq!(client.expires_at, Some(NOW + 30 * 86_400));
    assert_eq!(client.client_uri.as_deref(), Some("https://cursor.example"));

    assert_eq!(body["client_id"], client.client_id.as_str());
    assert_eq!(body["client_id_issued_at"], NOW);
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["redirect_uris"][1], "cursor.anysphere.app:/cb");
    assert!(body.get("client_secret").is_none());
    assert!(body.get("client_secret_expires_at").is_none());
    assert!(body.get("contacts").is_none());
}

#[test]
fn registration_defaults_to_client_secret_basic_and_returns_the_secret_once() {
    let (client, secret, body) = reg(json!({"redirect_uris": ["https://app.example/cb"]})).unwrap();
    let secret = secret.expect("a secret for client_secret_basic");
    assert_eq!(
        client.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );
    assert!(secret.len() >= 43, "256-bit secret");
    assert!(client.verify_secret(&secret));
    assert!(!client.verify_secret(&secret[1..]));
    assert!(!client.verify_secret(""));
    assert_eq!(body["client_secret"], secret.as_str());
    assert_eq!(body["client_secret_expires_at"], NOW + 30 * 86_400);
    // Default grant and name.
    assert_eq!(client.grant_types, vec![GrantType::AuthorizationCode]);
    assert_eq!(client.client_name, client.client_id);
    // The stored form never holds the plain secret.
    let stored = serde_json::to_string(&client).unwrap();
    assert!(!stored.contains(&secret));
    assert!(!format!("{client:?}").contains(&secret));
    let back: ClientInfo = serde_json::from_str(&stored).unwrap();
    assert!(back.verify_secret(&secret));
    assert_eq!(back, client);
}

#[test]
fn registration_client_secret_post_and_no_expiry() {
    let policy = RegistrationPolicy {
        client_lifetime: None,
        ..RegistrationPolicy::default()
    };
    let (client, secret, body) = register(
        &json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_post"}),
        &policy,
        NOW,
    )
    .unwrap();
    assert_eq!(
        client.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretPost
    );
    assert!(secret.is_some());
    assert_eq!(client.expires_at, None);
    assert!(!client.is_expired(u64::MAX));
    assert_eq!(body["client_secret_expires_at"], 0);
}

#[test]
fn registration_ids_are_random_and_url_safe() {
    let mut ids = std::collections::HashSet::new();
    for _ in 0..200 {
        let (c, _, _) = reg(json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"})).unwrap();
        assert!(c.client_id.len() >= 22, "128 bits or more");
        assert!(
            c.client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(!is_metadata_document_client_id(&c.client_id));
        assert!(ids.insert(c.client_id));
    }
}

#[test]
fn registration_refuses_bad_redirect_uris() {
    let bad: Vec<Value> = vec![
        json!({}),
        json!({"redirect_uris": null}),
        json!({"redirect_uris": []}),
        json!({"redirect_uris": "https://app.example/cb"}),
        json!({"redirect_uris": [42]}),
        json!({"redirect_uris": ["/relative/cb"]}),
        json!({"redirect_uris": ["https://app.example/cb#frag"]}),
        json!({"redirect_uris": ["https://app.example/cb#"]}),
        json!({"redirect_uris": ["http://app.example/cb"]}),
        json!({"redirect_uris": ["http://192.168.1.10/cb"]}),
        json!({"redirect_uris": ["http://127.0.0.1.evil.example/cb"]}),
        json!({"redirect_uris": ["http://localhost.evil.example/cb"]}),
        json!({"redirect_uris": ["http://127.0.0.1:99999/cb"]}),
        json!({"redirect_uris": ["https://user:pass@app.example/cb"]}),
        json!({"redirect_uris": ["javascript:alert(document.cookie)"]}),
        json!({"redirect_uris": ["data:text/html,<script>x</script>"]}),
        json!({"redirect_uris": ["file:///etc/passwd"]}),
        json!({"redirect_uris": ["myapp:/cb"]}),
        json!({"redirect_uris": ["https://app.example/c b"]}),
        json!({"redirect_uris": ["https://app.example/cb\r\nSet-Cookie: x"]}),
        json!({"redirect_uris": ["https://app.ex\u{e4}mple/cb"]}),
        json!({"redirect_uris": [format!("https://app.example/{}", "a".repeat(3000))]}),
        json!({"redirect_uris": (0..11).map(|i| format!("https://app.example/cb{i}")).collect::<Vec<_>>()}),
        json!({"redirect_uris": ["https://app.example/cb", "http://evil.example/cb"]}),
    ];
    for request in bad {
        let e = reg_err(request.clone());
        assert_eq!(e.error_code(), "invalid_redirect_uri", "{request}: {e}");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn registration_refuses_bad_client_metadata() {
    let ok_uris = json!(["https://app.example/cb"]);
    let with = |k: &str, v: Value| {
        let mut m = json!({"redirect_uris": ok_uris.clone()});
        m[k] = v;
        m
    };
    let bad: Vec<Value> = vec![
        json!("not an object"),
        json!([1, 2]),
        with("token_endpoint_auth_method", json!("private_key_jwt")),
        with("token_endpoint_auth_method", json!("client_secret_jwt")),
        with("token_endpoint_auth_method", json!("tls_client_auth")),
        with("token_endpoint_auth_method", json!(7)),
        with("grant_types", json!(["client_credentials"])),
        with("grant_types", json!(["implicit"])),
        with("grant_types", json!(["authorization_code", "password"])),
        with("grant_types", json!(["refresh_token"])),
        with("grant_types", json!([])),
        with("grant_types", json!("authorization_code")),
        with("grant_types", Value::from(vec!["authorization_code"; 9])),
        with("response_types", json!(["token"])),
        with("response_types", json!(["code", "id_token"])),
        with("response_types", json!([])),
        with("client_name", json!(["array"])),
        with("client_name", json!("x".repeat(101))),
        with("client_name", json!("x".repeat(5000))),
        with("client_uri", json!("http://app.example")),
        with("client_uri", json!("javascript:alert(1)")),
        with("client_uri", json!("https://user@app.example")),
        with("logo_uri", json!("data:image/png;base64,AAAA")),
        with("logo_uri", json!("https:///logo.png")),
        with("logo_uri", json!(12)),
        with("scope", json!("mcp:tools \"quoted\"")),
        with("scope", json!("a\\b")),
        with("scope", json!(["mcp:tools"])),
        with("scope", json!("s".repeat(3000))),
    ];
    for request in bad {
        let e = reg_err(request.clone());
        assert_eq!(e.error_code(), "invalid_client_metadata", "{request}: {e}");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn registration_sanitizes_client_name() {
    let (c, _, body) = reg(json!({
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "none",
        "client_name": "  Totally\u{202E}lageL\u{202C}\n\tApp\u{0007}\u{200B} ",
    }))
    .unwrap();
    assert_eq!(c.client_name, "TotallylageL App");
    assert_eq!(body["client_name"], "TotallylageL App");
    // Nothing visible left: the client id is shown instead.
    let (c, _, _) = reg(json!({
        "redirect_uris": ["https://app.example/cb"],
        "client_name": "\u{200B}\u{0000} \u{202E}",
    }))
    .unwrap();
    assert_eq!(c.client_name, c.client_id);
}

#[test]
fn registration_accepts_nulls_as_absent_and_drops_duplicates() {
    let (c, _, _) = reg(json!({
        "redirect_uris": ["https://app.example/cb", "https://app.example/cb"],
        "client_name": null,
        "grant_types": null,
        "token_endpoint_auth_method": null,
        "scope": null,
    }))
    .unwrap();
    assert_eq!(c.redirect_uris, vec!["https://app.example/cb".to_owned()]);
    assert_eq!(
        c.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );
    assert_eq!(c.scope, None);
}

#[test]
fn registration_errors_never_echo_values() {
    let e = reg_err(json!({
        "redirect_uris": ["https://evil.example/cb#SECRET-FRAGMENT-123"],
        "client_secret": "hunter2-hunter2",
    }));
    let shown = format!("{e} {}", e.to_response_body());
    assert!(!shown.contains("SECRET-FRAGMENT-123"));
    assert!(!shown.contains("evil.example"));
    assert!(!shown.contains("hunter2"));
    assert_eq!(
        e.to_response_body(),
        json!({"error": "invalid_redirect_uri", "error_description": "redirect_uris[0] must not contain a fragment"})
    );
    let e = reg_err(
        json!({"redirect_uris": ["https://a.example/cb"], "client_uri": "javascript:steal('TOKEN-XYZ')"}),
    );
    assert!(!e.to_string().contains("TOKEN-XYZ"));
    assert_eq!(e.description(), "client_uri must be an https URL");
}

#[test]
fn registration_error_is_an_oauth_response() {
    let e = reg_err(json!({}));
    let resp = e.into_response();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
}

#[test]
fn policy_validates_preregistered_redirect_uris() {
    let p = RegistrationPolicy::default();
    assert!(p.validate_redirect_uri("http://localhost:8080/cb").is_ok());
    assert!(p.validate_redirect_uri("com.example.app:/cb").is_ok());
    let e = p
        .validate_redirect_uri("http://intranet.example/cb")
        .unwrap_err();
    assert_eq!(e.error_code(), "invalid_redirect_uri");
}

// ---------------------------------------------------------------------------
// Redirect URI matching
// ---------------------------------------------------------------------------

#[test]
fn redirect_matching_table() {
    let registered: Vec<String> = [
        "https://app.example/cb",
        "https://app.example/cb?tenant=a",
        "http://127.0.0.1/callback",
        "http://[::1]:8080/callback",
        "http://localhost/oauth",
        "com.example.app:/oauth2redirect",
    ]
    .map(String::from)
    .to_vec();
    let table: &[(&str, bool)] = &[
        // Exact matches.
        ("https://app.example/cb", true),
        ("https://app.example/cb?tenant=a", true),
        ("com.example.app:/oauth2redirect", true),
        ("http://127.0.0.1/callback", true),
        // Loopback: any port, everything else exact (RFC 8252 §7.3).
        ("http://127.0.0.1:1/callback", true),
        ("http://127.0.0.1:49152/callback", true),
        ("http://127.0.0.1:65535/callback", true),
        ("http://[::1]/callback", true),
        ("http://[::1]:51000/callback", true),
        ("http://localhost:3000/oauth", true),
        ("http://127.0.0.1:0/callback", false),
        ("http://127.0.0.1:65536/callback", false),
        ("http://127.0.0.1:/callback", false),
        ("http://127.0.0.1:080/callback", false),
        ("http://127.0.0.1:8080/callback/", false),
        ("http://127.0.0.1:8080/Callback", false),
        ("http://127.0.0.1:8080/callback?x=1", false),
        ("http://127.0.0.1:8080/callback#frag", false),
        ("http://127.0.0.1:8080/callback/../callback", false),
        ("http://127.0.0.1:8080/%63allback", false),
        ("https://127.0.0.1:8080/callback", false),
        ("HTTP://127.0.0.1:8080/callback", false),
        ("http://localhost:8080/callback", false), // another host
        ("http://127.0.0.1:8080/oauth", false),    // localhost's path on another host
        ("http://LOCALHOST:3000/oauth", false),
        ("http://127.1:8080/callback", false),
        ("http://2130706433:8080/callback", false),
        ("http://[0:0:0:0:0:0:0:1]:8080/callback", false),
        // Userinfo and look-alike hosts.
        ("http://127.0.0.1.evil.example/callback", false),
        ("http://127.0.0.1.evil.example:8080/callback", false),
        ("http://127.0.0.1:8080@evil.example/callback", false),
        ("http://127.0.0.1@evil.example/callback", false),
        ("http://evil.example@127.0.0.1:8080/callback", false),
        ("http://evil.example#@127.0.0.1/callback", false),
        ("http://127.0.0.1\\@evil.example/callback", false),
        ("http://127.0.0.1:8080\\@evil.example/callback", false),
        ("http://localhost.evil.example:3000/oauth", false),
        // Exact URIs: no normalization whatsoever.
        ("https://app.example/cb/", false),
        ("https://app.example/cb#", false),
        ("https://app.example/cb#x", false),
        ("https://APP.example/cb", false),
        ("https://app.example:443/cb", false),
        ("https://app.example:8443/cb", false),
        ("https://app.example/c%62", false),
        ("https://app.example/cb?tenant=b", false),
        ("https://app.example/cb?tenant=a&x=1", false),
        ("https://user@app.example/cb", false),
        ("https://app.example.evil.example/cb", false),
        ("https://app.example/cb ", false),
        (" https://app.example/cb", false),
        ("https://app.example/cb\n", false),
        ("com.example.app:/oauth2redirect/", false),
        ("com.example.app://oauth2redirect", false),
        ("", false),
    ];
    for (presented, want) in table {
        assert_eq!(
            redirect_uri_allowed(&registered, presented),
            *want,
            "{presented:?}"
        );
    }
    assert!(!redirect_uri_allowed(&[], "https://app.example/cb"));
}

#[test]
fn redirect_matching_property_port_is_the_only_free_part() {
    let registered = vec!["http://127.0.0.1/cb?x=1".to_owned()];
    for port in [1u32, 80, 443, 1024, 8080, 49152, 65535] {
        assert!(redirect_uri_allowed(
            &registered,
            &format!("http://127.0.0.1:{port}/cb?x=1")
        ));
        // Any single-character change anywhere breaks the match (a port
        // digit turned into a letter is no port).
        let good = format!("http://127.0.0.1:{port}/cb?x=1");
        for i in 0..good.len() {
            let mut bytes = good.clone().into_bytes();
            bytes[i] = if bytes[i] == b'Z' { b'Y' } else { b'Z' };
            let mutated = String::from_utf8(bytes).unwrap();
            assert!(
                !redirect_uri_allowed(&registered, &mutated),
                "{mutated:?} matched"
            );
        }
    }
    for bad_port in ["0", "65536", "99999", "080", "-1", "8o80", ""] {
        assert!(!redirect_uri_allowed(
            &registered,
            &format!("http://127.0.0.1:{bad_port}/cb?x=1")
        ));
    }
}

// ---------------------------------------------------------------------------
// Client ID metadata documents
// ---------------------------------------------------------------------------

/// Serves a router built from the server's base URL on an ephemeral
/// loopback port.
async fn serve(build: impl FnOnce(String) -> Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!(
        "http://{}",
        listener.local_addr().expect("the bound address")
    );
    let router = build(base.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Example MCP Client",
        "client_uri": "https://app.example",
        "logo_uri": "https://app.example/logo.png",
        "redirect_uris": ["http://127.0.0.1/callback", "http://localhost/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp:tools",
    })
}

fn json_response(body: String, cache_control: Option<&'static str>) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(cc) = cache_control {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, header::HeaderValue::from_static(cc));
    }
    resp
}

/// A server with one route per test case; `hits` counts requests to
/// `/client.json`.
async fn document_server(hits: Arc<AtomicUsize>) -> String {
    serve(move |base| {
        let doc = move |path: &str, patch: Value| {
            let mut d = document(&format!("{base}{path}"));
            if let (Some(d), Some(p)) = (d.as_object_mut(), patch.as_object()) {
                for (k, v) in p {
                    if v.is_null() {
                        d.remove(k);
                    } else {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
            d.to_string()
        };
        let good = doc("/client.json", json!({}));
        let no_store = doc("/no-store.json", json!({}));
        let no_header = doc("/no-header.json", json!({}));
        let mismatch = doc("/mismatch.json", json!({"client_id": "https://other.example/client.json"}));
        let mut big = doc("/big.json", json!({}));
        big = big.replacen('{', &format!("{{\"pad\":\"{}\",", "x".repeat(6 * 1024)), 1);
        let chunked_len = 6 * 1024;
        let text = doc("/text.json", json!({}));
        let secret = doc("/secret.json", json!({"client_secret": "shh-do-not-echo"}));
        let basic = doc("/basic.json", json!({"token_endpoint_auth_method": "client_secret_basic"}));
        let pkjwt = doc("/pkjwt.json", json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example/jwks"}));
        let no_redirects = doc("/no-redirects.json", json!({"redirect_uris": null}));
        let bad_redirect = doc("/bad-redirect.json", json!({"redirect_uris": ["http://evil.example/cb"]}));
        let implicit = doc("/implicit.json", json!({"response_types": ["token"]}));
        let no_method = doc("/no-method.json", json!({"token_endpoint_auth_method": null, "client_name": null}));
        Router::new()
            .route(
                "/client.json",
                get(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let good = good.clone();
                    async move { json_response(good, Some("public, max-age=120")) }
                }),
            )
            .route(
                "/no-store.json",
                get(move || async move { json_response(no_store, Some("no-store")) }),
            )
            .route(
                "/no-header.json",
                get(move || async move { json_response(no_header, None) }),
            )
            .route(
                "/mismatch.json",
                get(move || async move { json_response(mismatch, None) }),
            )
            .route(
                "/big.json",
                get(move || async move { json_response(big, None) }),
            )
            .route(
                "/big-chunked.json",
                get(move || async move {
                    let chunks = (0..chunked_len / 512).map(|_| {
                        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 512]))
                    });
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        Body::from_stream(futures::stream::iter(chunks)),
                    )
                }),
            )
            .route(
                "/slow.json",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    json_response("{}".into(), None)
                }),
            )
            .route(
                "/slow-body.json",
                get(|| async {
                    let stream = futures::stream::unfold(0u8, |n| async move {
                        if n > 0 {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b" ")), n + 1))
                    });
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        Body::from_stream(stream),
                    )
                }),
            )
            .route(
                "/redirect.json",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, "/client.json")],
                    )
                }),
            )
            .route(
                "/text.json",
                get(move || async move {
                    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], text)
                }),
            )
            .route(
                "/missing.json",
                get(|| async { (StatusCode::NOT_FOUND, "SECRET-404-BODY") }),
            )
            .route(
                "/not-json.json",
                get(|| async { json_response("SECRET-BODY <html>".into(), None) }),
            )
            .route(
                "/secret.json",
                get(move || async move { json_response(secret, None) }),
            )
            .route(
                "/basic.json",
                get(move || async move { json_response(basic, None) }),
            )
            .route(
                "/pkjwt.json",
                get(move || async move { json_response(pkjwt, None) }),
            )
            .route(
                "/no-redirects.json",
                get(move || async move { json_response(no_redirects, None) }),
            )
            .route(
                "/bad-redirect.json",
                get(move || async move { json_response(bad_redirect, None) }),
            )
            .route(
                "/implicit.json",
                get(move || async move { json_response(implicit, None) }),
            )
            .route(
                "/no-method.json",
                get(move || async move { json_response(no_method, None) }),
            )
            .route(
                "/array.json",
                get(|| async { json_response("[1,2,3]".into(), None) }),
            )
    })
    .await
}

fn loopback_guard() -> FetchGuard {
    FetchGuard {
        allow_loopback: true,
        total_timeout: Duration::from_secs(3),
        ..FetchGuard::default()
    }
}

async fn fetch(base: &str, path: &str) -> Result<ClientInfo, CimdError> {
    fetch_metadata_document(&format!("{base}{path}"), &loopback_guard()).await
}

#[tokio::test]
async fn cimd_good_document_is_a_public_client() {
    let base = document_server(Arc::default()).await;
    let id = format!("{base}/client.json");
    assert!(is_metadata_document_client_id(&id));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let c = fetch_metadata_document(&id, &loopback_guard())
        .await
        .unwrap();
    assert_eq!(c.client_id, id);
    assert_eq!(c.kind, ClientKind::MetadataDocument);
    assert_eq!(c.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    assert!(c.client_secret_sha256.is_none());
    assert_eq!(c.client_name, "Example MCP Client");
    assert_eq!(c.logo_uri.as_deref(), Some("https://app.example/logo.png"));
    assert_eq!(c.scope.as_deref(), Some("mcp:tools"));
    assert_eq!(
        c.grant_types,
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert!(c.allows_redirect_uri("http://127.0.0.1:40000/callback"));
    assert!(!c.allows_redirect_uri("https://evil.example/callback"));
    // Fresh for the document's max-age=120.
    assert!(c.registered_at >= before);
    assert_eq!(c.expires_at, Some(c.registered_at + 120));
}

#[tokio::test]
async fn cimd_freshness_is_bounded() {
    let base = document_server(Arc::default()).await;
    let c = fetch(&base, "/no-store.json").await.unwrap();
    assert_eq!(c.expires_at, Some(c.registered_at + 60), "min_cache_age");
    let c = fetch(&base, "/no-header.json").await.unwrap();
    assert_eq!(c.expires_at, Some(c.registered_at + 3600), "max_cache_age");
    let guard = FetchGuard {
        max_cache_age: Duration::from_secs(90),
        ..loopback_guard()
    };
    let c = fetch_metadata_document(&format!("{base}/client.json"), &guard)
        .await
        .unwrap();
    assert_eq!(c.expires_at, Some(c.registered_at + 90));
}

#[tokio::test]
async fn cimd_missing_method_means_none_and_missing_name_shows_the_url() {
    let base = document_server(Arc::default()).await;
    let c = fetch(&base, "/no-method.json").await.unwrap();
    assert_eq!(c.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    assert_eq!(c.client_name, format!("{base}/no-method.json"));
}

#[tokio::test]
async fn cimd_client_id_must_equal_the_url() {
    let base = document_server(Arc::default()).await;
    assert_eq!(
        fetch(&base, "/mismatch.json").await,
        Err(CimdError::ClientIdMismatch)
    );
}

#[tokio::test]
async fn cimd_oversized_documents_are_refused() {
    let base = document_server(Arc::default()).await;
    assert_eq!(
        fetch(&base, "/big.json").await,
        Err(CimdError::TooLarge(5 * 1024))
    );
    assert_eq!(
        fetch(&base, "/big-chunked.json").await,
        Err(CimdError::TooLarge(5 * 1024))
    );
    let roomy = FetchGuard {
        max_bytes: 64 * 1024,
        ..loopback_guard()
    };
    // The same documents within a larger limit: read, then judged on content.
    let c = fetch_metadata_document(&format!("{base}/big.json"), &roomy).await;
    assert!(c.is_ok(), "{c:?}");
    assert_eq!(
        fetch_metadata_document(&format!("{base}/big-chunked.json"), &roomy).await,
        Err(CimdError::NotJson)
    );
}

#[tokio::test]
async fn cimd_slow_servers_hit_the_time_limit() {
    let base = document_server(Arc::default()).await;
    let guard = FetchGuard {
        total_timeout: Duration::from_millis(400),
        ..loopback_guard()
    };
    for path in ["/slow.json", "/slow-body.json"] {
        let started = Instant::now();
        let r = fetch_metadata_document(&format!("{base}{path}"), &guard).await;
        assert_eq!(r, Err(CimdError::Timeout), "{path}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
    }
}

#[tokio::test]
async fn cimd_redirects_are_not_followed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = document_server(hits.clone()).await;
    assert_eq!(
        fetch(&base, "/redirect.json").await,
        Err(CimdError::Redirect(302))
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the target was never fetched"
    );
}

#[tokio::test]
async fn cimd_response_must_be_200_json() {
    let base = document_server(Arc::default()).await;
    assert_eq!(
        fetch(&base, "/text.json").await,
        Err(CimdError::ContentType)
    );
    let e = fetch(&base, "/missing.json").await.unwrap_err();
    assert_eq!(e, CimdError::Status(404));
    assert!(!e.to_string().contains("SECRET"));
    let e = fetch(&base, "/not-json.json").await.unwrap_err();
    assert_eq!(e, CimdError::NotJson);
    assert!(!e.to_string().contains("SECRET"));
    assert!(matches!(
        fetch(&base, "/array.json").await,
        Err(CimdError::InvalidDocument(_))
    ));
}

#[tokio::test]
async fn cimd_documents_never_carry_secrets() {
    let base = document_server(Arc::default()).await;
    let e = fetch(&base, "/secret.json").await.unwrap_err();
    assert!(matches!(e, CimdError::InvalidDocument(_)), "{e}");
    assert!(!e.to_string().contains("shh-do-not-echo"));
    assert!(matches!(
        fetch(&base, "/basic.json").await,
        Err(CimdError::InvalidDocument(_))
    ));
    assert_eq!(
        fetch(&base, "/pkjwt.json").await,
        Err(CimdError::Unsupported(
            "private_key_jwt client authentication"
        ))
    );
}

#[tokio::test]
async fn cimd_documents_follow_the_metadata_rules() {
    let base = document_server(Arc::default()).await;
    for path in ["/no-redirects.json", "/bad-redirect.json", "/implicit.json"] {
        let e = fetch(&base, path).await.unwrap_err();
        assert!(matches!(e, CimdError::InvalidDocument(_)), "{path}: {e}");
        assert!(!e.to_string().contains("evil.example"), "{e}");
    }
}

#[tokio::test]
async fn cimd_url_rules() {
    let base = document_server(Arc::default()).await;
    let g = loopback_guard();
    let bad = [
        format!("{base}/client.json#frag"),
        format!("{base}/client.json#"),
        base.replace("http://", "http://user:pw@") + "/client.json",
        base.replace("http://", "http://user@") + "/client.json",
        base.clone(),
        format!("{base}/"),
        format!("{base}/a/../client.json"),
        format!("{base}/./client.json"),
        format!("{base}/a/%2e%2E/client.json"),
        format!("{base}/a/.%2e/client.json"),
        base.replace("http://", "HTTP://") + "/client.json",
        format!("{base}/client json"),
        format!("{base}/cli\u{e9}nt.json"),
        format!("{base}/client.json\n"),
        format!("{base}//client.json?{}", "q".repeat(3000)),
        "ftp://127.0.0.1/client.json".to_owned(),
        "file:///etc/passwd".to_owned(),
        "client.json".to_owned(),
        "https://APP.example/client.json".to_owned(),
        "https://app.example:443/client.json".to_owned(),
        "https://app.example".to_owned(),
        "https://2130706433/client.json".to_owned(),
        "https://[::ffff:10.0.0.1]/client.json".to_owned(),
        "http://app.example/client.json".to_owned(),
        String::new(),
    ];
    for id in bad {
        let r = fetch_metadata_document(&id, &g).await;
        assert!(matches!(r, Err(CimdError::InvalidUrl(_))), "{id:?}: {r:?}");
    }
    // A query string is allowed (the spec says SHOULD NOT, not MUST NOT).
    assert!(matches!(
        fetch_metadata_document(&format!("{base}/client.json?v=1"), &g).await,
        Err(CimdError::ClientIdMismatch)
    ));
}

#[tokio::test]
async fn cimd_guard_refuses_non_public_addresses_before_connecting() {
    let guard = FetchGuard::default();
    let table = [
        ("https://10.0.0.1/client.json", AddressClass::Private),
        ("https://172.16.5.4/client.json", AddressClass::Private),
        ("https://192.168.1.1/client.json", AddressClass::Private),
        ("https://[fd00::1]/client.json", AddressClass::Private),
        ("https://[::ffff:a00:1]/client.json", AddressClass::Private),
        (
            "https://[64:ff9b::a00:1]/client.json",
            AddressClass::Private,
        ),
        ("https://100.64.0.1/client.json", AddressClass::SharedCgnat),
        (
            "https://169.254.169.254/latest/meta-data",
            AddressClass::LinkLocal,
        ),
        ("https://[fe80::1]/client.json", AddressClass::LinkLocal),
        ("https://[::ffff:a9fe:a9fe]/latest", AddressClass::LinkLocal),
        ("https://127.0.0.1/client.json", AddressClass::Loopback),
        ("https://127.9.9.9:8443/client.json", AddressClass::Loopback),
        ("https://[::1]/client.json", AddressClass::Loopback),
        (
            "https://[::ffff:7f00:1]/client.json",
            AddressClass::Loopback,
        ),
        ("https://0.0.0.0/client.json", AddressClass::Unspecified),
        ("https://[::]/client.json", AddressClass::Unspecified),
        ("https://224.0.0.251/client.json", AddressClass::Multicast),
        ("https://[ff02::1]/client.json", AddressClass::Multicast),
        (
            "https://255.255.255.255/client.json",
            AddressClass::Broadcast,
        ),
        (
            "https://192.0.2.10/client.json",
            AddressClass::Documentation,
        ),
        (
            "https://[2001:db8::1]/client.json",
            AddressClass::Documentation,
        ),
        ("https://240.0.0.1/client.json", AddressClass::Reserved),
    ];
    for (id, class) in table {
        let started = Instant::now();
        let r = fetch_metadata_document(id, &guard).await;
        assert_eq!(r, Err(CimdError::ForbiddenAddress(class)), "{id}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{id}: no connection attempt"
        );
    }
    let e = CimdError::ForbiddenAddress(AddressClass::Private);
    assert_eq!(
        e.to_string(),
        "refused to fetch the metadata document: private address"
    );
}

#[tokio::test]
async fn cimd_loopback_names_are_refused_unless_allowed() {
    // `localhost` is resolved here (no network needed) and refused.
    let r = fetch_metadata_document("https://localhost/client.json", &FetchGuard::default()).await;
    assert_eq!(r, Err(CimdError::ForbiddenAddress(AddressClass::Loopback)));
    // Plain http to loopback needs allow_loopback.
    let base = document_server(Arc::default()).await;
    let id = format!("{base}/client.json");
    assert!(matches!(
        fetch_metadata_document(&id, &FetchGuard::default()).await,
        Err(CimdError::InvalidUrl(_))
    ));
    assert!(
        fetch_metadata_document(&id, &loopback_guard())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn cimd_allowed_networks_let_addresses_through() {
    // The document server speaks plain HTTP: with 127.0.0.0/8 allowed the
    // guard lets the https request through, and it fails at TLS, not at the
    // guard.
    let base = document_server(Arc::default()).await;
    let id = base.replace("http://", "https://") + "/client.json";
    let refused = fetch_metadata_document(&id, &FetchGuard::default()).await;
    assert_eq!(
        refused,
        Err(CimdError::ForbiddenAddress(AddressClass::Loopback))
    );
    let guard = FetchGuard {
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..FetchGuard::default()
    };
    let r = fetch_metadata_document(&id, &guard).await;
    assert!(matches!(r, Err(CimdError::Network(_))), "{r:?}");
    // Other networks stay refused.
    assert_eq!(
        fetch_metadata_document("https://10.0.0.1/client.json", &guard).await,
        Err(CimdError::ForbiddenAddress(AddressClass::Private))
    );
}

#[tokio::test]
async fn cimd_cache_serves_fresh_documents_without_refetching() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = document_server(hits.clone()).await;
    let id = format!("{base}/client.json");
    let cache = MetadataDocumentCache::new(8);
    let a = cache.get_or_fetch(&id, &loopback_guard()).await.unwrap();
    let b = cache.get_or_fetch(&id, &loopback_guard()).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(cache.len(), 1);
    // Expired: fetched again.
    let expires = a.expires_at.unwrap();
    assert!(cache.get(&id, expires).is_none());
    assert!(cache.is_empty());
    cache.get_or_fetch(&id, &loopback_guard()).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Failures are not cached.
    let bad = format!("{base}/mismatch.json");
    assert!(cache.get_or_fetch(&bad, &loopback_guard()).await.is_err());
    assert!(cache.get(&bad, NOW).is_none());
}

#[test]
fn cimd_cache_is_bounded() {
    let cache = MetadataDocumentCache::new(3);
    let doc = |i: u64, expires: u64| {
        let mut c = ClientInfo::preregistered(format!("https://c{i}.example/m.json"), "C", vec![]);
        c.kind = ClientKind::MetadataDocument;
        c.expires_at = Some(expires);
        c
    };
    cache.insert(doc(1, 2_000), 1_000);
    cache.insert(doc(2, 1_500), 1_000);
    cache.insert(doc(3, 3_000), 1_000);
    cache.insert(doc(4, 4_000), 1_000); // evicts c2, the soonest to expire
    assert_eq!(cache.len(), 3);
    assert!(cache.get("https://c2.example/m.json", 1_000).is_none());
    assert!(cache.get("https://c4.example/m.json", 1_000).is_some());
    cache.insert(doc(5, 900), 1_000); // already expired: ignored
    assert!(cache.get("https://c5.example/m.json", 800).is_none());
    cache.insert(doc(6, 5_000), 2_500); // c1 expired at 2_500: dropped first
    assert!(cache.get("https://c3.example/m.json", 2_500).is_some());
    assert!(cache.get("https://c4.example/m.json", 2_500).is_some());
    assert!(cache.get("https://c6.example/m.json", 2_500).is_some());
    cache.remove("https://c6.example/m.json");
    assert_eq!(cache.len(), 2);
    let none = MetadataDocumentCache::new(0);
    none.insert(doc(7, 9_000), 1_000);
    assert!(none.is_empty());
}
