//! Issue #18: DPoP (RFC 9449) in the client binary, end to end, against a
//! stand-in MCP server and authorization server on 127.0.0.1 that check
//! every proof with the server-side verifier (`mcp_auth_jwt::DpopVerifier`).
//!
//! The authorization server offers DPoP (ES256), wants a nonce in token
//! request proofs, binds each token to the proof's key (`token_type`
//! `DPoP`) and requires a proof of that same key to refresh it. The MCP
//! server challenges with `Bearer` only (the client must still present a
//! bound token as `DPoP`), checks proof, `ath`, the binding, and wants a
//! nonce of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use mcp_auth_jwt::DpopVerifier;
use serde_json::{Value, json};

const AS_NONCE: &str = "as-nonce-1";
const RS_NONCE: &str = "rs-nonce-1";

#[derive(Default)]
struct StandIn {
    base: String,
    codes: HashMap<String, String>,
    /// Access token → the key it is bound to (`cnf.jkt`), if any.
    tokens: HashMap<String, Option<String>>,
    /// Refresh token → the key it is bound to, if any.
    refresh: HashMap<String, Option<String>>,
    logins: usize,
    /// Token requests: (grant type, the proof's key if it verified).
    token_requests: Vec<(String, Option<String>)>,
    /// Authorization schemes the MCP server saw with a token.
    schemes: Vec<String>,
    /// MCP requests refused, and why.
    refusals: Vec<String>,
}

type Shared = Arc<Mutex<StandIn>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn mcp(State(st): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut s = st.lock().unwrap();
    let challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        s.base
    );
    let unauthorized =
        |c: String| (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, c)]).into_response();
    let Some((scheme, token)) =
        header_str(&headers, "authorization").and_then(|a| a.split_once(' '))
    else {
        return unauthorized(challenge);
    };
    let (scheme, token) = (scheme.to_owned(), token.to_owned());
    s.schemes.push(scheme.clone());
    let Some(bound) = s.tokens.get(&token).cloned() else {
        s.refusals.push("unknown token".into());
        return unauthorized(format!("{challenge}, error=\"invalid_token\""));
    };
    if let Some(jkt) = bound {
        if !scheme.eq_ignore_ascii_case("dpop") {
            s.refusals.push(format!("bound token sent as {scheme}"));
            return unauthorized(format!("{challenge}, error=\"invalid_token\""));
        }
        let url = format!("{}/mcp", s.base);
        let verdict = header_str(&headers, "dpop")
            .ok_or_else(|| "no proof".to_owned())
            .and_then(|p| {
                DpopVerifier::default()
                    .verify(p, "POST", &url, Some(&token), Some(RS_NONCE), now())
                    .map_err(|e| e.error_code().to_owned())
            });
        match verdict {
            Ok(p) if p.jkt == jkt => {}
            Ok(_) => {
                s.refusals.push("another key".into());
                return unauthorized("DPoP error=\"invalid_token\"".into());
            }
            Err(code) if code == "use_dpop_nonce" => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [
                        (
                            header::WWW_AUTHENTICATE,
                            "DPoP error=\"use_dpop_nonce\"".to_owned(),
                        ),
                        (
                            header::HeaderName::from_static("dpop-nonce"),
                            RS_NONCE.to_owned(),
                        ),
                    ],
                )
                    .into_response();
            }
            Err(code) => {
                s.refusals.push(code.clone());
                return unauthorized(format!("DPoP error=\"{code}\""));
            }
        }
    }
    let Some(id) = body.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match body["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stand-in", "version": "0"},
        }),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
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
    s.logins += 1;
    let code = format!("code-{}", s.codes.len());
    s.codes.insert(code.clone(), String::new());
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
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    let url = format!("{}/token", s.base);
    let proof = match header_str(&headers, "dpop") {
        None => None,
        Some(p) => {
            match DpopVerifier::default().verify(p, "POST", &url, None, Some(AS_NONCE), now()) {
                Ok(p) => Some(p.jkt),
                Err(e) if e.error_code() == "use_dpop_nonce" => {
                    return (
                        StatusCode::BAD_REQUEST,
                        [("dpop-nonce", AS_NONCE)],
                        Json(json!({"error": "use_dpop_nonce"})),
                    )
                        .into_response();
                }
                Err(e) => {
                    return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_dpop_proof", "error_description": e.to_string()})),
                )
                    .into_response();
                }
            }
        }
    };
    s.token_requests.push((grant.clone(), proof.clone()));
    let ok = match grant.as_str() {
        "refresh_token" => match f.get("refresh_token").and_then(|r| s.refresh.get(r)) {
            // A bound refresh token needs a proof of its key.
            Some(bound) => bound.is_none() || *bound == proof,
            None => false,
        },
        _ => f.get("code").and_then(|c| s.codes.remove(c)).is_some(),
    };
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let t = format!("tok-{}", s.tokens.len());
    let r = format!("refresh-{t}");
    s.tokens.insert(t.clone(), proof.clone());
    s.refresh.insert(r.clone(), proof.clone());
    let token_type = if proof.is_some() { "DPoP" } else { "Bearer" };
    Json(json!({"access_token": t, "token_type": token_type, "expires_in": 1, "refresh_token": r}))
        .into_response()
}

/// Serves the stand-ins; the MCP endpoint and the shared state.
async fn stand_in() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let st: Shared = Arc::new(Mutex::new(StandIn {
        base: base.clone(),
        ..StandIn::default()
    }));
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
                    "dpop_signing_alg_values_supported": ["ES256"],
                }))
            }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move {
                Json(json!({
                    "issuer": b2,
                    "authorization_endpoint": format!("{b2}/authorize"),
                    "token_endpoint": format!("{b2}/token"),
                    "registration_endpoint": format!("{b2}/register"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "dpop_signing_alg_values_supported": ["ES256"],
                }))
            }),
        )
        .route(
            "/register",
            post(|Json(body): Json<Value>| async move {
                let mut client = body;
                client["client_id"] = json!("dyn-1");
                (StatusCode::CREATED, Json(client)).into_response()
            }),
        )
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("{base}/mcp"), st)
}

/// The DPoP key files under `home`.
fn key_files(home: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(home.join("credentials"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".dpop.pem"))
                .collect()
        })
        .unwrap_or_default()
}

/// A login binds the token to the server's key (both nonces honoured, a
/// Bearer-only challenge not downgrading it); the next run, after the
/// token expired, refreshes it with a proof of the same stored key instead
/// of logging in again; logout removes the key.
#[tokio::test]
async fn bound_tokens_survive_runs_and_refresh_with_the_stored_key() {
    let (url, st) = stand_in().await;
    let home = tempfile::tempdir().unwrap();
    let run = client(home.path(), &["--server", &url, "list"]).await;
    let (ok, stderr) = (run.ok, run.stderr);
    assert!(ok, "{stderr}");
    let keys = key_files(home.path());
    assert_eq!(keys.len(), 1, "{keys:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first_key = {
        let s = st.lock().unwrap();
        assert!(s.refusals.is_empty(), "{:?}", s.refusals);
        assert!(s.schemes.iter().all(|x| x == "DPoP"), "{:?}", s.schemes);
        // The login's code exchange, and a refresh when the run was slow
        // (the stand-in's tokens last a second): each with a proof by the
        // one key.
        assert_eq!(s.token_requests[0].0, "authorization_code");
        let first = s.token_requests[0]
            .1
            .clone()
            .expect("a proof at the token request");
        assert!(
            s.token_requests[1..]
                .iter()
                .all(|(grant, proof)| grant == "refresh_token"
                    && proof.as_deref() == Some(first.as_str())),
            "{:?}",
            s.token_requests
        );
        first
    };

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let run = client(home.path(), &["--server", &url, "list"]).await;
    let (ok, stderr) = (run.ok, run.stderr);
    assert!(ok, "{stderr}");
    {
        let s = st.lock().unwrap();
        assert_eq!(s.logins, 1, "no second login");
        let refresh = s.token_requests.last().unwrap();
        assert_eq!(refresh.0, "refresh_token");
        assert_eq!(
            refresh.1.as_deref(),
            Some(first_key.as_str()),
            "the same key"
        );
        assert!(s.refusals.is_empty(), "{:?}", s.refusals);
        assert!(s.schemes.iter().all(|x| x == "DPoP"), "{:?}", s.schemes);
    }

    let run = client(home.path(), &["--server", &url, "logout"]).await;
    let (ok, stderr) = (run.ok, run.stderr);
    assert!(ok, "{stderr}");
    assert!(key_files(home.path()).is_empty());
}

/// `--no-dpop`: no proofs, so a Bearer token, sent as Bearer; no key file.
#[tokio::test]
async fn no_dpop_means_bearer() {
    let (url, st) = stand_in().await;
    let home = tempfile::tempdir().unwrap();
    let run = client(home.path(), &["--no-dpop", "--server", &url, "list"]).await;
    let (ok, stderr) = (run.ok, run.stderr);
    assert!(ok, "{stderr}");
    let s = st.lock().unwrap();
    // The login's code exchange, and a refresh when the run was slow (the
    // stand-in's tokens last a second): no proof at any of them.
    assert!(!s.token_requests.is_empty());
    assert!(
        s.token_requests.iter().all(|(_, proof)| proof.is_none()),
        "no proof: {:?}",
        s.token_requests
    );
    assert!(
        !s.schemes.is_empty() && s.schemes.iter().all(|x| x == "Bearer"),
        "{:?}",
        s.schemes
    );
    assert!(key_files(home.path()).is_empty());
}
