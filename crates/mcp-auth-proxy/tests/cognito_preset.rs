//! The Cognito preset end to end over loopback HTTP: the settings
//! `mcp-auth-cognito setup` prints (plus `COGNITO_JWKS_URL`, as for an
//! emulator) against a stand-in for a user pool's hosted UI that behaves as
//! Cognito does where the facade can tell: `/oauth2/authorize` and
//! `/oauth2/token` on the domain, one confidential app client (HTTP Basic),
//! PKCE S256, RS256 ID tokens of the pool's issuer with `cognito:groups`
//! and the login's `nonce`, refresh answers without a new refresh token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair},
};
use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use mcp_auth_core::Principal;
use mcp_auth_proxy::{EndpointOptions, settings::ProxySettings};
use mcp_auth_transport::AuthLayer;
use support::{Browser, Server, exchange, login, register};
use url::Url;

const REGION: &str = "eu-west-1";
const POOL: &str = "eu-west-1_Test123";
const APP_CLIENT: &str = "app-client-1234";
const APP_SECRET: &str = "app-client-secret-0123456789";

/// The user pool: its signing key and what it remembers between requests.
#[derive(Clone)]
struct Pool {
    key: Arc<RsaKeyPair>,
    callback: String,
    codes: Arc<Mutex<HashMap<String, (String, String)>>>,
    refreshes: Arc<Mutex<Vec<String>>>,
}

impl Pool {
    fn issuer() -> String {
        format!("https://cognito-idp.{REGION}.amazonaws.com/{POOL}")
    }

    fn jwks(&self) -> serde_json::Value {
        let public = self.key.public_key();
        serde_json::json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "pool-key",
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        }]})
    }

    /// An ID token as Cognito's: RS256, the pool's issuer, the app client
    /// as audience, `cognito:groups`.
    fn id_token(&self, nonce: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"kid": "pool-key", "alg": "RS256"});
        let claims = serde_json::json!({
            "sub": "6f1c2a9e-user", "aud": APP_CLIENT, "iss": Self::issuer(),
            "token_use": "id", "auth_time": now, "iat": now, "exp": now + 3600,
            "nonce": nonce, "email": "alice@example.com", "email_verified": true,
            "cognito:username": "alice", "cognito:groups": ["admins", "staff"],
        });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", B64.encode(sig))
    }
}

async fn authorize(State(pool): State<Pool>, Query(q): Query<HashMap<String, String>>) -> Response {
    // What the facade must send: its app client, its registered callback,
    // PKCE S256, the OIDC scopes and a nonce.
    let ok = q.get("client_id").map(String::as_str) == Some(APP_CLIENT)
        && q.get("redirect_uri") == Some(&pool.callback)
        && q.get("response_type").map(String::as_str) == Some("code")
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("scope").map(String::as_str) == Some("openid email profile")
        && q.contains_key("nonce")
        && q.contains_key("state");
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            format!("bad authorize request: {q:?}"),
        )
            .into_response();
    }
    let code = format!("code-{}", pool.codes.lock().unwrap().len());
    pool.codes.lock().unwrap().insert(
        code.clone(),
        (q["nonce"].clone(), q["code_challenge"].clone()),
    );
    let mut back = Url::parse(&pool.callback).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    Redirect::to(back.as_str()).into_response()
}

async fn token(
    State(pool): State<Pool>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{APP_CLIENT}:{APP_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let refused = || {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((nonce, challenge)) = form
                .get("code")
                .and_then(|c| pool.codes.lock().unwrap().remove(c))
            else {
                return refused();
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if mcp_auth_proxy::keys::digest_b64(verifier.as_bytes()) != challenge
                || form.get("redirect_uri") != Some(&pool.callback)
            {
                return refused();
            }
            Json(serde_json::json!({
                "access_token": "cognito-access-1",
                "id_token": pool.id_token(&nonce),
                "refresh_token": "cognito-refresh",
                "token_type": "Bearer",
                // Short, so the test sees it expire.
                "expires_in": 2,
            }))
            .into_response()
        }
        Some("refresh_token") => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if rt != "cognito-refresh" {
                return refused();
            }
            let mut seen = pool.refreshes.lock().unwrap();
            seen.push(rt);
            // Cognito does not rotate refresh tokens: none in the answer.
            Json(serde_json::json!({
                "access_token": format!("cognito-access-{}", seen.len() + 1),
                "id_token": pool.id_token("refresh"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
            .into_response()
        }
        _ => refused(),
    }
}

struct App {
    base: String,
    pool: Pool,
}

impl Server for App {
    fn base(&self) -> &str {
        &self.base
    }
}

async fn start() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hosted_ui = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let domain = format!("http://{}", hosted_ui.local_addr().unwrap());
    let pool = Pool {
        key: Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()),
        callback: format!("{base}/oauth/callback"),
        codes: Arc::default(),
        refreshes: Arc::default(),
    };
    let jwks = pool.jwks();
    let idp = Router::new()
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth2/token", post(token))
        .route(
            &format!("/{POOL}/.well-known/jwks.json"),
            get(move || async move { Json(jwks) }),
        )
        .with_state(pool.clone());
    tokio::spawn(async move { axum::serve(hosted_ui, idp).await });

    // The lines `mcp-auth-cognito setup` prints, with the keys on loopback.
    let jwks_url = format!("{domain}/{POOL}/.well-known/jwks.json");
    let vars: HashMap<String, String> = [
        ("COGNITO_REGION", REGION),
        ("COGNITO_USER_POOL_ID", POOL),
        ("COGNITO_APP_CLIENT_ID", APP_CLIENT),
        ("COGNITO_APP_CLIENT_SECRET", APP_SECRET),
        ("COGNITO_DOMAIN", domain.as_str()),
        ("COGNITO_JWKS_URL", jwks_url.as_str()),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert!(mcp_auth_proxy::settings::facade_requested(&vars));
    let server_url: Url = format!("{base}/mcp").parse().unwrap();
    let settings = ProxySettings::from_settings(&vars, &server_url).unwrap();
    let store = Arc::new(mcp_auth_session::MemoryStore::new());
    let proxy = settings.build(server_url, store).await.unwrap();
    let for_tools = proxy.clone();
    let protected = Router::new()
        .route(
            "/mcp",
            get(move |p: Principal| async move {
                let upstream = match for_tools.upstream_access_token(&p).await {
                    Ok(t) => serde_json::json!(t),
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                Json(serde_json::json!({
                    "sub": p.subject, "groups": p.groups, "email": p.claims.get("email"),
                    "upstream": upstream,
                }))
            }),
        )
        .route_layer(AuthLayer::new(proxy.authenticator().unwrap()));
    let app = protected.merge(proxy.router(EndpointOptions::default()));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    App { base, pool }
}

async fn call(app: &App, access: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(format!("{}/mcp", app.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn users_log_in_at_the_hosted_ui_and_tools_get_their_cognito_token() {
    let app = start().await;
    let client_id = register(&app).await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, &client_id).await;
    let (status, tokens) = exchange(&app, &client_id, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();

    // The user from the verified ID token, its groups from cognito:groups.
    let me = call(&app, access).await;
    assert_eq!(me["sub"], "6f1c2a9e-user");
    assert_eq!(me["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(me["email"], "alice@example.com");
    // The tool gets Cognito's access token; the client never saw it.
    assert_eq!(me["upstream"], "cognito-access-1");
    assert!(!tokens.to_string().contains("cognito-"));

    // It expires (2 s): the next tool call refreshes it at the hosted UI's
    // token endpoint, and the refresh token, which Cognito does not rotate,
    // is kept for the next time.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let me = call(&app, access).await;
    assert_eq!(me["upstream"], "cognito-access-2", "{me}");
    assert_eq!(*app.pool.refreshes.lock().unwrap(), ["cognito-refresh"]);
    let me = call(&app, access).await;
    assert_eq!(
        me["upstream"], "cognito-access-2",
        "fresh: no second refresh"
    );
    assert_eq!(app.pool.refreshes.lock().unwrap().len(), 1);
}
