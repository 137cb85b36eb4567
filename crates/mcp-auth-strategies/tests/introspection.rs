//! RFC 7662 introspection of opaque tokens against a real endpoint on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{Form, Json, Router, extract::State, http::HeaderMap, routing::post};
use mcp_auth_core::{AuthError, AuthRequest, Authenticator};
use mcp_auth_jwt::{Audience, JwksCache, JwtVerifier};
use mcp_auth_strategies::{Introspector, JwtAuthenticator};
use serde_json::{Value, json};

const AUD: &str = "http://127.0.0.1:8001/mcp";
const ISS: &str = "https://as.example";

/// The client the endpoint knows.
const CLIENT: (&str, &str) = ("client-id", "client-secret");

/// The client credentials of an HTTP Basic header as RFC 6749 §2.3.1 has
/// them sent: each form-urlencoded, then joined by `:`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

async fn introspect(
    State((calls, client)): State<(Arc<AtomicU64>, (String, String))>,
    headers: HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, axum::http::StatusCode> {
    calls.fetch_add(1, Ordering::SeqCst);
    if basic_credentials(&headers) != Some(client) {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let exp = jsonwebtoken::get_current_timestamp() + 300;
    Ok(Json(match form.get("token").map(String::as_str) {
        Some("good") => json!({"active": true, "sub": "carol", "iss": ISS, "aud": [AUD],
            "scope": "mcp:tools", "client_id": "c1", "exp": exp}),
        Some("other-aud") => {
            json!({"active": true, "sub": "carol", "iss": ISS, "aud": "https://else", "exp": exp})
        }
        Some("no-aud") => json!({"active": true, "sub": "carol", "iss": ISS, "exp": exp}),
        Some("wrong-iss") => {
            json!({"active": true, "sub": "carol", "iss": "https://evil", "aud": AUD, "exp": exp})
        }
        Some("expired") => {
            json!({"active": true, "sub": "carol", "iss": ISS, "aud": AUD, "exp": 1})
        }
        // Bound to a TLS client certificate (RFC 8705), which this server
        // cannot check.
        Some("cert-bound") => json!({"active": true, "sub": "carol", "iss": ISS, "aud": AUD,
            "exp": exp, "cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
        // An answer over the 64 KiB read: refused whatever it says.
        Some("huge") => json!({"active": true, "sub": "carol", "iss": ISS, "aud": AUD,
            "exp": exp, "pad": "x".repeat(100 * 1024)}),
        _ => json!({"active": false}),
    }))
}

async fn start(secret: &str) -> (JwtAuthenticator, Arc<AtomicU64>) {
    start_as((CLIENT.0, secret), CLIENT).await
}

/// An introspecting authenticator that authenticates as `ours` to an
/// endpoint that knows the client `known`.
async fn start_as(ours: (&str, &str), known: (&str, &str)) -> (JwtAuthenticator, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/introspect", post(introspect))
        .with_state((calls.clone(), (known.0.to_owned(), known.1.to_owned())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let verifier = JwtVerifier::builder()
        .jwks(JwksCache::builder("http://127.0.0.1:9/jwks".parse().unwrap()).build())
        .issuer(ISS)
        .audience(Audience::OneOf(vec![AUD.into()]))
        .build()
        .unwrap();
    let intro = Introspector::new(
        url.parse().unwrap(),
        ours.0.into(),
        ours.1.into(),
        Some(ISS.into()),
        Some(vec![AUD.into()]),
    );
    (
        JwtAuthenticator::new(verifier)
            .with_authorization_server(ISS)
            .with_introspection(intro),
        calls,
    )
}

fn bearer(t: &str) -> AuthRequest {
    AuthRequest::builder()
        .header("authorization", &format!("Bearer {t}"))
        .build()
}

#[tokio::test]
async fn active_tokens_for_this_resource_pass_and_answers_are_cached() {
    let (auth, calls) = start("client-secret").await;
    let p = auth.authenticate(&bearer("good")).await.unwrap();
    assert_eq!(p.subject, "carol");
    assert_eq!(p.scopes, vec!["mcp:tools"]);
    assert_eq!(p.client_id.as_deref(), Some("c1"));
    assert_eq!(p.issuer.as_deref(), Some(ISS));
    assert!(auth.authenticate(&bearer("good")).await.is_ok());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );
}

/// The introspection cache's hits and misses are counted under their own
/// label (`mcp_auth_token_cache_total{cache="introspection"}`), here in a
/// recorder local to this test's thread (no global one is installed in
/// this process, so nothing else is counted in it).
#[test]
fn cache_hits_and_misses_are_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (auth, calls) = start("client-secret").await;
            for _ in 0..3 {
                auth.authenticate(&bearer("good")).await.unwrap();
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        })
    });
    let text = handle.render();
    for line in [
        r#"mcp_auth_token_cache_total{cache="introspection",result="miss"} 1"#,
        r#"mcp_auth_token_cache_total{cache="introspection",result="hit"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

#[tokio::test]
async fn inactive_foreign_and_expired_tokens_are_invalid() {
    let (auth, calls) = start("client-secret").await;
    for t in ["inactive", "other-aud", "no-aud", "wrong-iss", "expired"] {
        let e = auth.authenticate(&bearer(t)).await.unwrap_err();
        assert!(matches!(e, AuthError::InvalidToken { .. }), "{t}: {e:?}");
    }
    assert!(auth.authenticate(&bearer("inactive")).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "negative answers are cached briefly"
    );
}

/// RFC 6749 §2.3.1 (which RFC 7662 §2.1 relies on): the client id and
/// secret are form-urlencoded before they are joined for HTTP Basic, so a
/// `:` in the id, or `%`, `+`, a space or UTF-8 in the secret, reach the
/// endpoint as they are.
#[tokio::test]
async fn client_credentials_are_form_urlencoded_for_basic() {
    let client = ("app:1", "s3cr%t+ é/=");
    let (auth, calls) = start_as(client, client).await;
    let p = auth.authenticate(&bearer("good")).await.unwrap();
    assert_eq!(p.subject, "carol");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A token bound by a confirmation this server cannot check (a TLS client
/// certificate's thumbprint, RFC 8705) is refused, not taken as a bearer
/// token.
#[tokio::test]
async fn a_token_bound_to_a_certificate_is_refused() {
    let (auth, _) = start("client-secret").await;
    let e = auth.authenticate(&bearer("cert-bound")).await.unwrap_err();
    assert!(matches!(e, AuthError::InvalidToken { .. }), "{e:?}");
    assert!(e.to_string().contains("cnf"), "{e}");
}

/// An opaque token larger than any JWT the server would verify is refused
/// before the authorization server is asked (a flood of them costs it
/// nothing).
#[tokio::test]
async fn an_oversized_opaque_token_is_refused_without_asking() {
    let (auth, calls) = start("client-secret").await;
    let huge = "x".repeat(mcp_auth_jwt::DEFAULT_MAX_TOKEN_BYTES + 1);
    let e = auth.authenticate(&bearer(&huge)).await.unwrap_err();
    assert!(matches!(e, AuthError::InvalidToken { .. }), "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let fits = "x".repeat(mcp_auth_jwt::DEFAULT_MAX_TOKEN_BYTES);
    let e = auth.authenticate(&bearer(&fits)).await.unwrap_err();
    assert!(matches!(e, AuthError::InvalidToken { .. }), "{e:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a token that fits is asked about"
    );
}

#[tokio::test]
async fn a_refused_or_unreachable_endpoint_is_unavailable_not_invalid() {
    let (auth, _) = start("wrong-secret").await;
    let e = auth.authenticate(&bearer("good")).await.unwrap_err();
    assert_eq!(e.status(), 503);
}

#[tokio::test]
async fn an_oversized_answer_is_unavailable_whatever_it_says() {
    let (auth, calls) = start("client-secret").await;
    let e = auth.authenticate(&bearer("huge")).await.unwrap_err();
    assert_eq!(e.status(), 503, "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn jwt_shaped_tokens_are_verified_locally_not_introspected() {
    let (auth, calls) = start("client-secret").await;
    let e = auth.authenticate(&bearer("a.b.c")).await.unwrap_err();
    // The JWKS is unreachable, so local verification cannot succeed, and the
    // introspection endpoint was not asked.
    assert!(e.status() == 401 || e.status() == 503, "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
