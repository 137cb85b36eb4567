//! The authorization-server facade on two replicas of the real binary that
//! share one `redis-server`: both serve one public origin (A's URL is
//! `MCP_SERVER_URL` on both; B binds its own loopback port, which the
//! default Host guard accepts), and everything the facade keeps (registered
//! clients, pending logins, consent, codes, refresh families, its signing,
//! encryption and CSRF keys) lives in Redis. A login that starts on one
//! replica finishes on the other, a code issued by A is exchanged on B, B's
//! token opens MCP sessions on both, and single use holds across replicas:
//! a code replayed on A after B took it, and a refresh token reused on A
//! after B rotated it, are refused, and the reuse revokes the family on B.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs Node 22,
//! oidc-provider (`INTEROP_NODE`) and Redis, and runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{INIT, Server, post};
use mcp_auth_integration_tests::browser::{Browser, field, query};
use mcp_auth_integration_tests::{Peer, UpstreamProvider, free_port};
use reqwest::{StatusCode, header};
use url::Url;

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const WHOAMI: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
/// The MCP client's own redirect URI (a loopback one: any registered
/// loopback port is accepted; nothing listens there, the test reads the
/// redirect).
const CLIENT_CB: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123";

/// Two replicas of the facade on one Redis, behind A's URL, and the
/// upstream that sends logins back to A's callback.
struct Replicas {
    a: Server,
    b: Server,
    _upstream: UpstreamProvider,
    _redis: Peer,
}

fn replicas() -> Replicas {
    let redis = Peer::redis(free_port());
    let port_a = free_port();
    let up_port = free_port();
    let public = format!("http://127.0.0.1:{port_a}");
    let callback = format!("{public}/oauth/callback");
    // oidc-provider with one static confidential client whose only
    // redirect URI is A's callback.
    let up = UpstreamProvider::start(up_port, &callback, "oidc");
    let issuer = format!("http://127.0.0.1:{up_port}");
    let server_url = format!("{public}/mcp");
    let store = redis.redis_url();
    let env = |port: Option<u16>| -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("MCP_AUTH_STRATEGY", "oauth2".to_owned()),
            (
                "MCP_OAUTH_CLIENT_ID",
                UpstreamProvider::CLIENT_ID.to_owned(),
            ),
            (
                "MCP_OAUTH_CLIENT_SECRET",
                UpstreamProvider::CLIENT_SECRET.to_owned(),
            ),
            ("MCP_OAUTH_ISSUER", issuer.clone()),
            ("MCP_OAUTH_SCOPE", "openid email".to_owned()),
            ("MCP_OAUTH_CALLBACK_URL", callback.clone()),
            ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools".to_owned()),
            ("MCP_SERVER_URL", server_url.clone()),
            ("MCP_SESSION_STORE", store.clone()),
        ];
        if let Some(p) = port {
            env.push(("PORT", p.to_string()));
        }
        env
    };
    let start = |env: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::start(&pairs)
    };
    // A first: it generates the keys and puts them in Redis; B, started
    // afterwards on any free port, must read the same ones.
    let a = start(env(Some(port_a)));
    assert_eq!(a.port, port_a);
    let b = start(env(None));
    Replicas {
        a,
        b,
        _upstream: up,
        _redis: redis,
    }
}

async fn register(on: &Server) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/register", on.base()))
        .json(&serde_json::json!({
            "client_name": "Replica test client",
            "redirect_uris": [CLIENT_CB],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: serde_json::Value = r.json().await.unwrap();
    body["client_id"].as_str().unwrap().to_owned()
}

/// `/oauth/authorize` on `on`, for the one resource both replicas serve.
fn authorize_url(on: &Server, public: &str, client_id: &str) -> String {
    let mut u = Url::parse(&format!("{}/oauth/authorize", on.base())).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", CLIENT_CB)
        .append_pair(
            "code_challenge",
            &mcp_auth_proxy::keys::digest_b64(VERIFIER.as_bytes()),
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "client-state")
        .append_pair("scope", "mcp:tools")
        .append_pair("resource", &format!("{public}/mcp"));
    u.to_string()
}

/// How a login went: the code, whether the consent page was shown, and the
/// URLs the browser was sent through.
struct Login {
    code: String,
    consent_shown: bool,
    visited: Vec<Url>,
}

/// `/oauth/authorize` on `start`, the consent (Allow) posted to `consent`
/// if the page is shown, the upstream login, and the callback wherever the
/// upstream sends it: the client's code.
async fn login(
    browser: &mut Browser,
    start: &Server,
    consent: &Server,
    public: &str,
    client_id: &str,
) -> Login {
    let page = browser.get(&authorize_url(start, public, client_id)).await;
    let consent_shown = page.status() == StatusCode::OK;
    let next = if consent_shown {
        let html = page.text().await.unwrap();
        let (csrf, request) = (field(&html, "csrf"), field(&html, "request"));
        tokio::time::sleep(mcp_auth_integration_tests::browser::READ_THE_PAGE).await;
        browser
            .post_form(
                &format!("{}/oauth/consent", consent.base()),
                &[
                    ("csrf", &csrf),
                    ("request", &request),
                    ("decision", "allow"),
                ],
            )
            .await
    } else {
        page
    };
    let (back, visited) = browser.follow_until(next, CLIENT_CB).await;
    let q = query(&back);
    assert_eq!(q.get("state").map(String::as_str), Some("client-state"));
    assert_eq!(q.get("iss").map(String::as_str), Some(public), "RFC 9207");
    let code = q
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {q:?}"));
    Login {
        code,
        consent_shown,
        visited,
    }
}

async fn token(on: &Server, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", on.base()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    (status, r.json().await.unwrap())
}

async fn exchange(on: &Server, client_id: &str, code: &str) -> (StatusCode, serde_json::Value) {
    token(
        on,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", CLIENT_CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn refresh(on: &Server, client_id: &str, rt: &str) -> (StatusCode, serde_json::Value) {
    token(
        on,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", rt),
        ],
    )
    .await
}

fn refused(answer: &(StatusCode, serde_json::Value)) -> bool {
    answer.0 == StatusCode::BAD_REQUEST && answer.1["error"] == "invalid_grant"
}

/// The JSON-RPC answer with `id` in a response body (JSON, or an SSE
/// stream of `data:` lines).
fn answer(body: &str, id: u64) -> serde_json::Value {
    let from_json = serde_json::from_str::<serde_json::Value>(body).ok();
    from_json
        .into_iter()
        .chain(
            body.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok()),
        )
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer with id {id} in {body:?}"))
}

/// An MCP session on `on` with the bearer `access` (`initialize`,
/// `notifications/initialized`), then `tools/call whoami`: the caller.
async fn whoami(on: &Server, access: &str) -> serde_json::Value {
    let c = reqwest::Client::new();
    let r = post(&c, &on.url(), INIT)
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "initialize on {}", on.base());
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let init = answer(&r.text().await.unwrap(), 1);
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let r = post(&c, &on.url(), INITIALIZED)
        .bearer_auth(access)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = post(&c, &on.url(), WHOAMI)
        .bearer_auth(access)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let call = answer(&r.text().await.unwrap(), 3);
    call["result"]["structuredContent"].clone()
}

async fn jwks(on: &Server) -> serde_json::Value {
    reqwest::get(format!("{}/oauth/jwks", on.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `kid` in a JWT's header.
fn kid(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

#[tokio::test]
#[ignore = "needs Node 22, oidc-provider and redis-server (tests/run-all.sh installs them)"]
async fn a_login_on_one_replica_is_finished_refreshed_and_kept_single_use_on_the_other() {
    let replicas = replicas();
    let (a, b) = (&replicas.a, &replicas.b);
    let public = a.base();

    // One key for both: B read the key A generated from the store.
    let (jwks_a, jwks_b) = (jwks(a).await, jwks(b).await);
    assert_eq!(jwks_a["keys"].as_array().map(Vec::len), Some(1), "{jwks_a}");
    assert_eq!(jwks_a, jwks_b, "the replicas publish the same signing key");
    // Both describe the one public origin.
    for s in [a, b] {
        let md: serde_json::Value = reqwest::get(format!(
            "{}/.well-known/oauth-authorization-server",
            s.base()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(md["issuer"], public.as_str());
        assert_eq!(md["token_endpoint"], format!("{public}/oauth/token"));
    }

    // Registered on A; authorize, consent and callback on A.
    let client_id = register(a).await;
    let mut browser = Browser::new();
    let first = login(&mut browser, a, a, &public, &client_id).await;
    assert!(first.consent_shown);
    assert!(
        first
            .visited
            .iter()
            .any(|u| u.as_str().starts_with(&format!("{public}/oauth/callback"))),
        "the upstream sent the browser back to A: {:?}",
        first.visited
    );

    // The code A issued is exchanged on B.
    let tokens = exchange(b, &client_id, &first.code).await;
    assert_eq!(tokens.0, StatusCode::OK, "{}", tokens.1);
    let access = tokens.1["access_token"].as_str().unwrap().to_owned();
    let rt1 = tokens.1["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        kid(&access),
        jwks_a["keys"][0]["kid"].as_str().unwrap(),
        "signed with the shared key"
    );

    // B's token works on B's MCP endpoint, and on A's.
    for s in [b, a] {
        let who = whoami(s, &access).await;
        assert_eq!(who["subject"], "octocat", "{who}");
        assert_eq!(who["issuer"], public.as_str(), "{who}");
        assert_eq!(who["strategy"], "oauth2", "{who}");
    }

    // The code is single use across replicas: B took it, A refuses it.
    assert!(
        refused(&exchange(a, &client_id, &first.code).await),
        "a code replayed on A after B exchanged it"
    );
    // That replay revoked what the code issued, on B too.
    assert!(
        refused(&refresh(b, &client_id, &rt1).await),
        "the replay on A revoked the family for B"
    );

    // A login started on B (fresh browser: the consent page is B's) is
    // finished by A's callback, which opens what B sealed.
    let mut other = Browser::new();
    let second = login(&mut other, b, b, &public, &client_id).await;
    assert!(second.consent_shown);
    let tokens = exchange(b, &client_id, &second.code).await;
    assert_eq!(tokens.0, StatusCode::OK, "{}", tokens.1);
    let rt1 = tokens.1["refresh_token"].as_str().unwrap().to_owned();

    // Refresh on B: rotated; the new access token works on A.
    let next = refresh(b, &client_id, &rt1).await;
    assert_eq!(next.0, StatusCode::OK, "{}", next.1);
    let rt2 = next.1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt2, rt1, "rotated");
    let who = whoami(a, next.1["access_token"].as_str().unwrap()).await;
    assert_eq!(who["subject"], "octocat", "{who}");

    // The rotated token reused on A is refused, and revokes the family
    // everywhere: the token B issued in its place dies on B.
    assert!(refused(&refresh(a, &client_id, &rt1).await));
    assert!(
        a.logs_soon("rotated refresh token reused").await,
        "A saw the reuse: {}",
        a.stderr()
    );
    assert!(
        refused(&refresh(b, &client_id, &rt2).await),
        "the family revoked on A is revoked on B"
    );

    // The first browser approved the client on A: starting on B, with the
    // same browser, goes straight to the provider (the consent is shared),
    // and the consent page posted to the other replica also works.
    let third = login(&mut browser, b, a, &public, &client_id).await;
    assert!(
        !third.consent_shown,
        "the approval given on A is known to B"
    );
    let tokens = exchange(a, &client_id, &third.code).await;
    assert_eq!(tokens.0, StatusCode::OK, "{}", tokens.1);
    let mut fresh = Browser::new();
    let fourth = login(&mut fresh, b, a, &public, &client_id).await;
    assert!(fourth.consent_shown, "page on B, Allow posted to A");
    assert_eq!(
        exchange(b, &client_id, &fourth.code).await.0,
        StatusCode::OK
    );
    assert!(
        ![a, b]
            .iter()
            .any(|s| s.stderr().contains(UpstreamProvider::CLIENT_SECRET)),
        "no secret in the logs"
    );
}
