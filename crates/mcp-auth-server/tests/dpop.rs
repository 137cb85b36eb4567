//! DPoP (RFC 9449) end to end: the real binary as an `oauth2` resource
//! server (a real issuer and JWKS on loopback) with `MCP_DPOP`, tokens bound
//! to real EC keys (`cnf.jkt`), proofs signed by them, each refusal with the
//! status, the `WWW-Authenticate` challenge and the `DPoP-Nonce` header the
//! RFC prescribes; replays across two replicas on a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use common::{Server, challenges, issuer, post, sign};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// `whoami` on the stateless 2026-07-28 wire (self-contained: `_meta`).
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// A client's DPoP key: the signing key, its public JWK and thumbprint.
struct Key {
    enc: EncodingKey,
    alg: Algorithm,
    jwk: Value,
    jkt: String,
}

fn key(file: &str, alg: Algorithm) -> Key {
    let pem = std::fs::read(format!(
        "{}/../mcp-auth-jwt/tests/keys/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let enc = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let mut jwk =
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).unwrap())
            .unwrap();
    // Only the key's own members (the thumbprint's input).
    let public: serde_json::Map<String, Value> = jwk
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| ["kty", "crv", "x", "y"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    jwk = Value::Object(public);
    let jkt = mcp_auth_jwt::jwk_thumbprint(&jwk).unwrap();
    Key { enc, alg, jwk, jkt }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ath(token: &str) -> String {
    use sha2::Digest;
    B64.encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A compact JWS of `header` and `claims` signed by `key`.
fn jws(key: &Key, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key.enc, key.alg).unwrap();
    format!("{input}.{sig}")
}

fn header(key: &Key) -> Value {
    json!({"typ": "dpop+jwt", "alg": format!("{:?}", key.alg), "jwk": key.jwk})
}

fn claims(htm: &str, htu: &str, token: &str) -> Value {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).unwrap();
    json!({"jti": hex::encode(id), "htm": htm, "htu": htu, "iat": now(), "ath": ath(token)})
}

/// A good proof for a POST to `url` with `token`.
fn proof(key: &Key, url: &str, token: &str) -> String {
    jws(key, &header(key), &claims("POST", url, token))
}

/// An access token of the issuer for `aud`, bound to `jkt` when given.
fn access_token(enc: &EncodingKey, iss: &str, aud: &str, jkt: Option<&str>) -> String {
    let mut c = json!({"sub": "dana", "iss": iss, "aud": aud, "exp": now() + 300, "scope": "mcp:tools", "client_id": "app"});
    if let Some(jkt) = jkt {
        c["cnf"] = json!({"jkt": jkt});
    }
    sign(enc, c)
}

/// `whoami` on the stateless wire with `authorization` and `proofs`.
async fn call(url: &str, authorization: &str, proofs: &[&str]) -> reqwest::Response {
    let mut r = post(&reqwest::Client::new(), url, CALL)
        .header("authorization", authorization)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami");
    for p in proofs {
        r = r.header("dpop", *p);
    }
    r.send().await.unwrap()
}

/// A 401 whose DPoP challenge names `error`.
async fn refused(r: reqwest::Response, error: &str, why: &str) {
    let status = r.status();
    let c = challenges(&r);
    let body = r.text().await.unwrap();
    assert_eq!(status, 401, "{why}: {body}");
    assert!(
        c.iter()
            .any(|c| c.starts_with("DPoP ") && c.contains(&format!("error=\"{error}\""))),
        "{why}: {c:?} {body}"
    );
}

fn server(iss: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", iss),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// Issue #18: with `MCP_DPOP=require`, a bound token with a good proof is
/// served, and every way a proof can be wrong is refused with the RFC's
/// error; the metadata and challenges say DPoP is required.
#[tokio::test]
async fn a_dpop_server_serves_good_proofs_and_refuses_every_bad_one() {
    let (iss, enc) = issuer().await;
    let s = server(&iss, &[("MCP_DPOP", "require")]);
    let url = s.url();
    let ec = key("ec256.pem", Algorithm::ES256);
    let token = access_token(&enc, &iss, &url, Some(&ec.jkt));
    let dpop = format!("DPoP {token}");

    let r = call(&url, &dpop, &[&proof(&ec, &url, &token)]).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("dana"), "{body}");

    // The metadata and the challenges.
    let md: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        s.base()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(md["dpop_bound_access_tokens_required"], true, "{md}");
    assert_eq!(
        md["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256", "PS256"]),
        "{md}"
    );
    let r = post(&reqwest::Client::new(), &url, CALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let c = challenges(&r);
    assert_eq!(c.len(), 1, "required: no Bearer challenge: {c:?}");
    assert!(
        c[0].starts_with(r#"DPoP algs="ES256 EdDSA RS256 PS256""#)
            && c[0].contains("resource_metadata="),
        "{c:?}"
    );

    // Bearer: the bound token, and an unbound one, are both refused.
    let bearer = format!("Bearer {token}");
    refused(
        call(&url, &bearer, &[]).await,
        "invalid_token",
        "bound token as bearer",
    )
    .await;
    let unbound = access_token(&enc, &iss, &url, None);
    refused(
        call(&url, &format!("Bearer {unbound}"), &[]).await,
        "invalid_token",
        "bearer token on a DPoP-only server",
    )
    .await;
    refused(
        call(
            &url,
            &format!("DPoP {unbound}"),
            &[&proof(&ec, &url, &unbound)],
        )
        .await,
        "invalid_token",
        "DPoP scheme with an unbound token",
    )
    .await;

    // The proof: missing, two of them, each claim wrong.
    refused(
        call(&url, &dpop, &[]).await,
        "invalid_dpop_proof",
        "no proof",
    )
    .await;
    refused(
        call(
            &url,
            &dpop,
            &[&proof(&ec, &url, &token), &proof(&ec, &url, &token)],
        )
        .await,
        "invalid_dpop_proof",
        "two DPoP headers",
    )
    .await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims("POST", &url, &token);
        edit(&mut c);
        jws(&ec, &header(&ec), &c)
    };
    let cases: Vec<(&str, String)> = vec![
        ("wrong htm", with(&|c| c["htm"] = json!("GET"))),
        (
            "wrong htu",
            with(&|c| c["htu"] = json!(url.replace("/mcp", "/other"))),
        ),
        ("stale iat", with(&|c| c["iat"] = json!(now() - 600))),
        ("future iat", with(&|c| c["iat"] = json!(now() + 600))),
        (
            "ath of another token",
            with(&|c| c["ath"] = json!(ath("another.token.value"))),
        ),
        (
            "no ath",
            with(&|c| drop(c.as_object_mut().unwrap().remove("ath"))),
        ),
    ];
    for (why, p) in &cases {
        refused(call(&url, &dpop, &[p]).await, "invalid_dpop_proof", why).await;
    }
    // Headers a proof must not have: a symmetric or no algorithm, a
    // private key, another typ.
    let mut hs = header(&ec);
    hs["alg"] = json!("HS256");
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": ec.jwk}).to_string()),
        B64.encode(claims("POST", &url, &token).to_string())
    );
    let mut private = header(&ec);
    private["jwk"]["d"] = json!("c2VjcmV0LXNjYWxhci1ub3QtcmVhbGx5LWEta2V5LWF0LWFsbA");
    let mut typ = header(&ec);
    typ["typ"] = json!("JWT");
    for (why, p) in [
        ("HS256", jws(&ec, &hs, &claims("POST", &url, &token))),
        ("alg none", none),
        (
            "private key in the header",
            jws(&ec, &private, &claims("POST", &url, &token)),
        ),
        ("typ JWT", jws(&ec, &typ, &claims("POST", &url, &token))),
    ] {
        refused(call(&url, &dpop, &[&p]).await, "invalid_dpop_proof", why).await;
    }
    // A good proof by another key than the token's.
    let other = key("ed25519.pem", Algorithm::EdDSA);
    refused(
        call(&url, &dpop, &[&proof(&other, &url, &token)]).await,
        "invalid_token",
        "proof key is not cnf.jkt",
    )
    .await;
    // A proof used twice.
    let once = proof(&ec, &url, &token);
    assert_eq!(call(&url, &dpop, &[&once]).await.status(), 200);
    refused(
        call(&url, &dpop, &[&once]).await,
        "invalid_dpop_proof",
        "replayed jti",
    )
    .await;

    // Nothing of a token or a proof in the log.
    let log = s.stderr();
    assert!(!log.contains(&token) && !log.contains(&once), "{log}");
}

/// A refused proof tests no secret (it is signed with the client's own
/// key, and checked before the token): it is not a failed login, so a
/// client whose clock runs ahead does not lock out its address. A wrong
/// token still is one.
#[tokio::test]
async fn refused_proofs_are_not_failed_logins_but_wrong_tokens_are() {
    let (iss, enc) = issuer().await;
    let s = server(
        &iss,
        &[("MCP_DPOP", "require"), ("HTTP_AUTH_FAILURE_LIMIT", "3")],
    );
    let url = s.url();
    let ec = key("ec256.pem", Algorithm::ES256);
    let token = access_token(&enc, &iss, &url, Some(&ec.jkt));
    let dpop = format!("DPoP {token}");
    for i in 0..5 {
        let mut ahead = claims("POST", &url, &token);
        ahead["iat"] = json!(now() + 60);
        let early = jws(&ec, &header(&ec), &ahead);
        let wrong_url = proof(&ec, &format!("{url}/elsewhere"), &token);
        let p = if i % 2 == 0 { early } else { wrong_url };
        refused(
            call(&url, &dpop, &[&p]).await,
            "invalid_dpop_proof",
            "bad proof",
        )
        .await;
    }
    let r = call(&url, &dpop, &[&proof(&ec, &url, &token)]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Another server's token: wrong for this one.
    let forged = access_token(&enc, &iss, "https://elsewhere.example/mcp", Some(&ec.jkt));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = call(
            &url,
            &format!("DPoP {forged}"),
            &[&proof(&ec, &url, &forged)],
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "wrong tokens count");
}

/// Issue #18: server nonces. A proof without the nonce gets 401
/// `use_dpop_nonce` and a `DPoP-Nonce` header; with it, the request is
/// served; a made-up or stale nonce is refused the same way. With
/// `MCP_DPOP=accept`, bearer tokens still work beside DPoP-bound ones.
#[tokio::test]
async fn nonces_are_required_and_bearer_tokens_still_work_when_only_accepted() {
    let (iss, enc) = issuer().await;
    let s = server(&iss, &[("MCP_DPOP", "accept"), ("MCP_DPOP_NONCE", "true")]);
    let url = s.url();
    let ec = key("ec256.pem", Algorithm::ES256);
    let token = access_token(&enc, &iss, &url, Some(&ec.jkt));
    let dpop = format!("DPoP {token}");

    let r = call(&url, &dpop, &[&proof(&ec, &url, &token)]).await;
    let nonce = r
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("a DPoP-Nonce header");
    refused(r, "use_dpop_nonce", "no nonce").await;
    let with_nonce = |n: &str| {
        let mut c = claims("POST", &url, &token);
        c["nonce"] = json!(n);
        jws(&ec, &header(&ec), &c)
    };
    let r = call(&url, &dpop, &[&with_nonce(&nonce)]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for stale in ["AAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "made-up"] {
        let r = call(&url, &dpop, &[&with_nonce(stale)]).await;
        assert!(r.headers().contains_key("dpop-nonce"));
        refused(r, "use_dpop_nonce", stale).await;
    }

    // Accepted, not required: bearer tokens too, and both challenges.
    let unbound = access_token(&enc, &iss, &url, None);
    let r = call(&url, &format!("Bearer {unbound}"), &[]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = post(&reqwest::Client::new(), &url, CALL)
        .send()
        .await
        .unwrap();
    let c = challenges(&r);
    assert!(
        c.iter().any(|c| c.starts_with("DPoP algs=")) && c.iter().any(|c| c.starts_with("Bearer ")),
        "{c:?}"
    );
    let md: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        s.base()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        md.get("dpop_bound_access_tokens_required").is_none(),
        "{md}"
    );
    assert!(md["dpop_signing_alg_values_supported"].is_array(), "{md}");

    // Without MCP_DPOP: a bound token is refused whatever the scheme, with
    // or without a proof (nothing checks proofs, so nothing proves the key).
    let plain = server(&iss, &[]);
    let purl = plain.url();
    let bound = access_token(&enc, &iss, &purl, Some(&ec.jkt));
    for (authorization, proofs) in [
        (format!("Bearer {bound}"), vec![]),
        (format!("DPoP {bound}"), vec![]),
        (format!("DPoP {bound}"), vec![proof(&ec, &purl, &bound)]),
    ] {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = call(&purl, &authorization, &proofs).await;
        assert_eq!(
            r.status(),
            401,
            "{authorization:.12}, {} proof(s)",
            proofs.len()
        );
        assert!(
            challenges(&r)[0].contains("invalid_token"),
            "{:?}",
            challenges(&r)
        );
    }
}

/// Issue #18: two replicas on one real Redis share the replay records and
/// the nonce key: a proof used at one is refused at the other, and a nonce
/// one hands out is taken by the other.
#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn replicas_on_redis_share_replays_and_nonces() {
    let redis = mcp_auth_integration_tests::Peer::redis(mcp_auth_integration_tests::free_port());
    let store = redis.redis_url();
    let (iss, enc) = issuer().await;
    // Both replicas serve one public URL: a fixed port for the first, its
    // URL named for the second (as behind one load balancer).
    let settings = |url: &str| {
        vec![
            ("MCP_DPOP".to_owned(), "require".to_owned()),
            ("MCP_DPOP_NONCE".to_owned(), "true".to_owned()),
            ("MCP_SESSION_STORE".to_owned(), store.clone()),
            ("MCP_SERVER_URL".to_owned(), url.to_owned()),
        ]
    };
    let public = format!(
        "http://127.0.0.1:{}/mcp",
        mcp_auth_integration_tests::free_port()
    );
    let start = |extra: Vec<(String, String)>| {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        server(&iss, &extra)
    };
    let a = start(settings(&public));
    let b = start(settings(&public));
    let ec = key("ec256.pem", Algorithm::ES256);
    let token = access_token(&enc, &iss, &public, Some(&ec.jkt));
    let dpop = format!("DPoP {token}");
    let with_nonce = |n: &str| {
        let mut c = claims("POST", &public, &token);
        c["nonce"] = json!(n);
        jws(&ec, &header(&ec), &c)
    };
    // A's nonce, used at B.
    let r = call(&a.url(), &dpop, &[&proof(&ec, &public, &token)]).await;
    let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    refused(r, "use_dpop_nonce", "no nonce at A").await;
    let once = with_nonce(&nonce);
    let r = call(&b.url(), &dpop, &[&once]).await;
    assert_eq!(
        r.status(),
        200,
        "A's nonce at B: {}",
        r.text().await.unwrap()
    );
    // The same proof again, at A: a replay.
    refused(
        call(&a.url(), &dpop, &[&once]).await,
        "invalid_dpop_proof",
        "replayed at the other replica",
    )
    .await;
}
