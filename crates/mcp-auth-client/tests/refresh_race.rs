//! Two requests that find the stored access token expired at the same
//! moment must not both spend the refresh token: an authorization server
//! that rotates refresh tokens (oidc-provider does for public clients)
//! takes the second use for a replay, answers `invalid_grant` and revokes
//! the grant. This was the cause of the intermittent second login in
//! `an_expired_access_token_is_refreshed_without_a_login`: rmcp refreshes
//! when fewer than 30 s remain, so with a 2 s token every request of a
//! session refreshes, and the `initialized` notification and the SSE
//! stream go out together.
//!
//! A stand-in token endpoint that rotates refresh tokens, answers slowly
//! (so the two requests overlap) and revokes everything on reuse; rmcp's
//! `AuthorizationManager` with a [`FileCredentialStore`] holding an expired
//! access token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Form, Json, Router, extract::State, http::StatusCode, response::IntoResponse};
use mcp_auth_client::FileCredentialStore;
use rmcp::transport::auth::{
    AuthorizationManager, AuthorizationMetadata, CredentialStore, OAuthTokenResponse,
    StoredCredentials,
};
use serde_json::json;

#[derive(Default)]
struct Rotating {
    /// The one refresh token that is valid now.
    current: Option<String>,
    issued: usize,
    replays: usize,
}

async fn token(
    State(st): State<Arc<Mutex<Rotating>>>,
    Form(f): Form<HashMap<String, String>>,
) -> axum::response::Response {
    let presented = f.get("refresh_token").cloned().unwrap_or_default();
    let issued = {
        let mut s = st.lock().unwrap();
        if s.current.as_deref() != Some(presented.as_str()) {
            // Reuse of a rotated token: revoke the grant.
            s.replays += 1;
            s.current = None;
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant", "error_description": "grant request is invalid"})),
            )
                .into_response();
        }
        // Rotated at once; the answer takes a while.
        s.issued += 1;
        s.current = Some(format!("rt-{}", s.issued));
        s.issued
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    Json(json!({
        "access_token": format!("at-{issued}"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": format!("rt-{issued}"),
    }))
    .into_response()
}

#[tokio::test]
async fn concurrent_refreshes_spend_each_refresh_token_once() {
    let st = Arc::new(Mutex::new(Rotating {
        current: Some("rt-0".into()),
        ..Rotating::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = Router::new()
        .route("/token", axum::routing::post(token))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let home = tempfile::tempdir().unwrap();
    let server = format!("{base}/mcp");
    let store = FileCredentialStore::in_dir(home.path(), &server);
    let expired: OAuthTokenResponse = serde_json::from_value(json!({
        "access_token": "at-0",
        "token_type": "Bearer",
        "expires_in": 60,
        "refresh_token": "rt-0",
    }))
    .unwrap();
    let long_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    store
        .save(StoredCredentials::new(
            "client".into(),
            Some(expired),
            vec![],
            Some(long_ago),
        ))
        .await
        .unwrap();

    let mut m = AuthorizationManager::new(server.as_str()).await.unwrap();
    let metadata: AuthorizationMetadata = serde_json::from_value(json!({
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
    }))
    .unwrap();
    m.set_metadata(metadata);
    m.set_credential_store(store.clone());
    m.configure_client_id("client").unwrap();

    let (a, b) = tokio::join!(m.get_access_token(), m.get_access_token());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a, "at-0");
    assert_ne!(b, "at-0");
    let (replays, current) = {
        let s = st.lock().unwrap();
        (s.replays, s.current.clone())
    };
    assert_eq!(replays, 0, "a refresh token was used twice");
    // What is stored is still good for the next run.
    let stored = store.load().await.unwrap().unwrap();
    let stored = serde_json::to_value(stored.token_response).unwrap();
    assert_eq!(stored["refresh_token"].as_str(), current.as_deref());
}
