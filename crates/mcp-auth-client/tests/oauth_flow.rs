//! Issue #20: the OAuth client's scopes, pre-registered client and
//! registrations, by running the real client binary against a stand-in MCP
//! server and authorization server on 127.0.0.1.
//!
//! The stand-in MCP server answers JSON-RPC over streamable HTTP (no
//! sessions), challenges without a token (401, `scope="read"` unless told
//! otherwise) and refuses the `admin` tool without the `admin` scope (403
//! `insufficient_scope`). The authorization server publishes RFC 8414
//! metadata, registers clients, approves every authorization request at
//! once (redirecting to the callback) and issues tokens for the scopes
//! asked for. The "browser" is `tests/interop/headless-browser.sh` (curl),
//! which logs each authorization URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client;
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

#[derive(Default)]
struct StandIn {
    base: String,
    /// The 401 challenge's `scope`, if any.
    challenge_scope: Option<&'static str>,
    /// Grant only this scope, whatever is asked for.
    grant_only: Option<&'static str>,
    /// The `Authorization` header token requests must carry (a
    /// confidential client), if any.
    basic_auth: Option<&'static str>,
    /// Access token lifetime (0: an hour), and refresh tokens when set.
    expires_in: u64,
    /// Leave `scope` out of token responses (RFC 6749 §5.1: the scopes
    /// asked for).
    omit_scope: bool,
    /// The metadata's `token_endpoint` instead of the stand-in's own.
    token_endpoint: Option<&'static str>,
    /// The `scope` of each client_credentials token request.
    machine_requests: Vec<String>,
    refresh: HashMap<String, String>,
    registrations: usize,
    codes: HashMap<String, String>,
    tokens: HashMap<String, String>,
}

type Shared = Arc<Mutex<StandIn>>;

fn token_scopes(s: &StandIn, headers: &HeaderMap) -> Option<Vec<String>> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?;
    let scopes = s.tokens.get(token)?;
    Some(scopes.split_whitespace().map(str::to_owned).collect())
}

async fn mcp(State(st): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let s = st.lock().unwrap();
    let Some(scopes) = token_scopes(&s, &headers) else {
        let mut c = format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            s.base
        );
        if let Some(scope) = s.challenge_scope {
            c.push_str(&format!(", scope=\"{scope}\""));
        }
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, c)]).into_response();
    };
    let id = body.get("id").cloned();
    let method = body["method"].as_str().unwrap_or_default();
    let Some(id) = id else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stand-in", "version": "0"},
        }),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "admin", "inputSchema": {"type": "object"}},
        ]}),
        "tools/call" => {
            if body["params"]["name"] == "admin" && !scopes.iter().any(|s| s == "admin") {
                return (
                    StatusCode::FORBIDDEN,
                    [(
                        header::WWW_AUTHENTICATE,
                        "Bearer error=\"insufficient_scope\", scope=\"admin\"",
                    )],
                )
                    .into_response();
            }
            json!({"content": [{"type": "text", "text": format!("scopes: {}", scopes.join(" "))}]})
        }
        _ => {
            return Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
            )
            .into_response();
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn authorize(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut s = st.lock().unwrap();
    let code = format!("code-{}", s.codes.len());
    s.codes
        .insert(code.clone(), q.get("scope").cloned().unwrap_or_default());
    let state = q.get("state").cloned().unwrap_or_default();
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

async fn token(
    State(st): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(expected) = s.basic_auth
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(expected)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let scopes = match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => f
            .get("refresh_token")
            .and_then(|r| s.refresh.get(r).cloned()),
        Some("client_credentials") => {
            let scope = f.get("scope").cloned().unwrap_or_default();
            s.machine_requests.push(scope.clone());
            Some(scope)
        }
        _ => f.get("code").and_then(|c| s.codes.remove(c)),
    };
    let Some(mut scopes) = scopes else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    if let Some(only) = s.grant_only {
        scopes = only.to_owned();
    }
    let t = format!("tok-{}", s.tokens.len());
    s.tokens.insert(t.clone(), scopes.clone());
    let mut body = json!({"access_token": t, "token_type": "Bearer", "scope": scopes});
    if s.omit_scope {
        body.as_object_mut().unwrap().remove("scope");
    }
    if s.expires_in == 0 {
        body["expires_in"] = json!(3600);
    } else {
        let r = format!("refresh-{t}");
        s.refresh.insert(r.clone(), scopes);
        body["expires_in"] = json!(s.expires_in);
        body["refresh_token"] = json!(r);
    }
    Json(body).into_response()
}

/// Serves the stand-ins; the MCP endpoint and the shared state.
async fn stand_in(challenge_scope: Option<&'static str>) -> (String, Shared) {
    stand_in_with(|s| s.challenge_scope = challenge_scope).await
}

/// [`stand_in`] whose authorization server grants only `grant_only`.
async fn stand_in_granting(
    challenge_scope: Option<&'static str>,
    grant_only: Option<&'static str>,
) -> (String, Shared) {
    stand_in_with(|s| {
        s.challenge_scope = challenge_scope;
        s.grant_only = grant_only;
    })
    .await
}

/// The stand-ins, set up by `configure`.
async fn stand_in_with(configure: impl FnOnce(&mut StandIn)) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut stand_in = StandIn {
        base: base.clone(),
        ..StandIn::default()
    };
    configure(&mut stand_in);
    let st: Shared = Arc::new(Mutex::new(stand_in));
    let (b1, b2) = (base.clone(), base.clone());
    let app = Router::new()
        .route(
            "/mcp",
            post(mcp).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || async move {
                Json(json!({
                    "resource": format!("{b1}/mcp"),
                    "authorization_servers": [b1],
                    "scopes_supported": ["read", "write", "admin"],
                }))
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move |State(st): State<Shared>| async move {
                let token_endpoint = st
                    .lock()
                    .unwrap()
                    .token_endpoint
                    .map_or_else(|| format!("{b2}/token"), str::to_owned);
                Json(json!({
                    "issuer": b2,
                    "authorization_endpoint": format!("{b2}/authorize"),
                    "token_endpoint": token_endpoint,
                    "registration_endpoint": format!("{b2}/register"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "scopes_supported": ["read", "write", "admin"],
                }))
            }),
        )
        .route(
            "/register",
            post(
                |State(st): State<Shared>, Json(body): Json<Value>| async move {
                    let mut s = st.lock().unwrap();
                    s.registrations += 1;
                    let mut client = body;
                    client["client_id"] = json!(format!("dyn-{}", s.registrations));
                    (StatusCode::CREATED, Json(client)).into_response()
                },
            ),
        )
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("{base}/mcp"), st)
}

/// The query of each authorization URL the browser was sent to.
fn logins(home: &Path) -> Vec<HashMap<String, String>> {
    std::fs::read_to_string(home.join("browser.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            url::Url::parse(l)
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .collect()
}

fn scope(login: &HashMap<String, String>) -> &str {
    login.get("scope").map(String::as_str).unwrap_or_default()
}

/// The spec's order: the challenge's `scope` first, not the metadata's
/// whole list.
#[tokio::test]
async fn the_first_login_asks_for_the_challenges_scope() {
    let (url, _) = stand_in(Some("read")).await;
    let home = tempfile::tempdir().unwrap();
    let r = client(home.path(), &["--server", &url, "call", "echo"]).await;
    assert!(r.ok, "{}", r.stderr);
    let logins = logins(home.path());
    assert_eq!(logins.len(), 1);
    assert_eq!(scope(&logins[0]), "read", "{logins:?}");
    assert_eq!(r.stdout.trim(), "scopes: read");
}

/// Without a scope in the challenge: the resource metadata's
/// `scopes_supported`.
#[tokio::test]
async fn without_a_challenge_scope_the_first_login_asks_for_the_metadatas() {
    let (url, _) = stand_in(None).await;
    let home = tempfile::tempdir().unwrap();
    let r = client(home.path(), &["--server", &url, "list"]).await;
    assert!(r.ok, "{}", r.stderr);
    let logins = logins(home.path());
    assert_eq!(logins.len(), 1);
    assert_eq!(scope(&logins[0]), "read write admin", "{logins:?}");
}

/// `--scope` no longer defeats step-up: the 403's scope is added to what
/// was asked for, one login each, and the dynamic registration is made
/// once and reused, in the same run and the next.
#[tokio::test]
async fn a_step_up_adds_the_challenges_scope_and_reuses_the_registration() {
    let (url, st) = stand_in(Some("read")).await;
    let home = tempfile::tempdir().unwrap();
    let r = client(
        home.path(),
        &["--server", &url, "--scope", "write", "call", "admin"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "scopes: write admin");
    let l = logins(home.path());
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(scope(&l[0]), "write");
    assert_eq!(scope(&l[1]), "write admin");
    assert_eq!(st.lock().unwrap().registrations, 1, "one registration");
    assert_eq!(l[0]["client_id"], l[1]["client_id"]);

    // The registration is kept per authorization server, private.
    let dir = home.path().join("registrations");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files[0].as_ref().unwrap().path()), 0o600);
    }

    // A later login (after logout) reuses it, on its port.
    let r = client(home.path(), &["--server", &url, "logout"]).await;
    assert!(r.ok, "{}", r.stderr);
    let r = client(home.path(), &["--server", &url, "list"]).await;
    assert!(r.ok, "{}", r.stderr);
    let l = logins(home.path());
    assert_eq!(l.len(), 3);
    assert_eq!(l[2]["client_id"], l[0]["client_id"]);
    assert_eq!(l[2]["redirect_uri"], l[0]["redirect_uri"]);
    assert_eq!(st.lock().unwrap().registrations, 1, "no new registration");
}

/// A scope that the authorization server does not grant ends the
/// step-up at once, with one short line, instead of logging in again for
/// the same scopes.
#[tokio::test]
async fn a_scope_that_is_not_granted_ends_the_step_up() {
    // The authorization server grants nothing but `read`.
    let (url, _) = stand_in_granting(Some("read"), Some("read")).await;
    let home = tempfile::tempdir().unwrap();
    let r = client(home.path(), &["--server", &url, "call", "admin"]).await;
    assert!(!r.ok);
    let l = logins(home.path());
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(scope(&l[1]), "read admin");
    let last = r.stderr.lines().last().unwrap();
    assert_eq!(
        last,
        "error: call admin: OAuth authorization: missing scope admin (403 insufficient_scope): \
         the authorization server did not grant it"
    );
}

/// The Cognito app client from `.env` goes only to its user pool's issuer:
/// another authorization server gets a dynamic registration instead.
#[tokio::test]
async fn the_cognito_app_client_is_not_presented_to_another_issuer() {
    let (url, st) = stand_in(Some("read")).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".env"),
        "COGNITO_REGION=us-east-1\nCOGNITO_USER_POOL_ID=us-east-1_Pool\n\
         COGNITO_APP_CLIENT_ID=cognito-app\nCOGNITO_APP_CLIENT_SECRET=cognito-secret\n",
    )
    .unwrap();
    let r = client(home.path(), &["--server", &url, "list"]).await;
    assert!(r.ok, "{}", r.stderr);
    let l = logins(home.path());
    assert_eq!(l.len(), 1);
    assert_ne!(l[0]["client_id"], "cognito-app", "{l:?}");
    assert_eq!(st.lock().unwrap().registrations, 1);
}

/// Without `COGNITO_REGION`/`COGNITO_USER_POOL_ID` the app client is not
/// used at all (said at debug level); `--client-id` still goes to any
/// server.
#[tokio::test]
async fn the_cognito_app_client_without_its_pool_is_ignored_but_flags_apply() {
    let (url, st) = stand_in(Some("read")).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".env"),
        "COGNITO_APP_CLIENT_ID=cognito-app\n",
    )
    .unwrap();
    let r = client(home.path(), &["-v", "--server", &url, "list"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("COGNITO_REGION or COGNITO_USER_POOL_ID is not"),
        "{}",
        r.stderr
    );
    let l = logins(home.path());
    assert_ne!(l[0]["client_id"], "cognito-app");
    assert_eq!(st.lock().unwrap().registrations, 1);

    let other = tempfile::tempdir().unwrap();
    std::fs::copy(home.path().join(".env"), other.path().join(".env")).unwrap();
    let r = client(
        other.path(),
        &["--server", &url, "--client-id", "flag-client", "list"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(logins(other.path())[0]["client_id"], "flag-client");
    assert_eq!(st.lock().unwrap().registrations, 1, "no registration");
}

/// Stored tokens of a confidential pre-registered client are refreshed
/// with its secret: no second login once the access token has expired.
#[tokio::test]
async fn a_confidential_clients_stored_tokens_are_refreshed_with_its_secret() {
    let (url, st) = stand_in_with(|s| {
        s.challenge_scope = Some("read");
        // base64("app:secret")
        s.basic_auth = Some("Basic YXBwOnNlY3JldA==");
        s.expires_in = 1;
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let issuer = url.trim_end_matches("/mcp");
    let args = [
        "--server",
        &url,
        "--client-id",
        "app",
        "--client-secret",
        "secret",
        "--issuer",
        issuer,
        "list",
    ];
    let r = client(home.path(), &args).await;
    assert!(r.ok, "{}", r.stderr);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = client(home.path(), &args).await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(logins(home.path()).len(), 1, "refreshed, no second login");
    assert!(st.lock().unwrap().tokens.len() >= 2, "a refreshed token");
}

/// Client credentials whose token response has no `scope` (RFC 6749 §5.1:
/// the scopes asked for): a 403 for more scope asks for the scopes it
/// first asked for (the challenge's, chosen after discovery) plus the new
/// one, not the new one alone.
#[tokio::test]
async fn a_machine_step_up_keeps_the_scopes_first_asked_for() {
    let (url, st) = stand_in_with(|s| {
        s.challenge_scope = Some("read");
        s.omit_scope = true;
        // base64("app:secret")
        s.basic_auth = Some("Basic YXBwOnNlY3JldA==");
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let issuer = url.trim_end_matches("/mcp");
    let r = client(
        home.path(),
        &[
            "--server",
            &url,
            "--client-credentials",
            "--client-id",
            "app",
            "--client-secret",
            "secret",
            "--issuer",
            issuer,
            "call",
            "admin",
        ],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("asking for a new token"), "{}", r.stderr);
    assert_eq!(
        st.lock().unwrap().machine_requests,
        ["read", "read admin"],
        "the second token request"
    );
    assert_eq!(r.stdout.trim(), "scopes: read admin");
}

/// Stored tokens are not used, nor refreshed, once the authorization
/// server's metadata names a plain-http token endpoint off loopback (the
/// MCP authorization spec requires https): an error naming the endpoint,
/// and no new login either.
#[tokio::test]
async fn stored_tokens_go_to_no_plain_http_endpoint() {
    let (url, st) = stand_in(Some("read")).await;
    let home = tempfile::tempdir().unwrap();
    let r = client(home.path(), &["--server", &url, "list"]).await;
    assert!(r.ok, "{}", r.stderr);
    let tokens = st.lock().unwrap().tokens.len();
    st.lock().unwrap().token_endpoint = Some("http://as.example.invalid/token");
    let r = client(home.path(), &["--server", &url, "list"]).await;
    assert!(!r.ok, "the stored tokens were used: {}", r.stdout);
    assert!(
        r.stderr
            .contains("token_endpoint is plain http:// on as.example.invalid"),
        "{}",
        r.stderr
    );
    assert_eq!(logins(home.path()).len(), 1, "no second login");
    assert_eq!(st.lock().unwrap().tokens.len(), tokens, "no new token");
}
