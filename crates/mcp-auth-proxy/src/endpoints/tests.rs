//! The token and revocation endpoints over loopback HTTP, with grants made
//! here instead of by a login (no provider is contacted): client
//! authentication by the registered method, metadata-document clients
//! while their document cannot be fetched, DPoP proofs at the token
//! endpoint, and revocation of another client's tokens.

use std::sync::{
    Arc,
    atomic::{AtomicU8, AtomicUsize, Ordering},
};

use mcp_auth_session::SessionStore;
use reqwest::StatusCode as Status;

use super::*;
use crate::upstream::UpstreamUser;

/// The redirect URI of the clients here.
const CLIENT_CB: &str = "http://127.0.0.1:9/callback";

/// A facade on a loopback port whose provider is never contacted, its
/// state in a memory store the tests can look into.
struct Facade {
    base: String,
    proxy: OAuthProxy,
    store: Arc<mcp_auth_session::MemoryStore>,
    http: reqwest::Client,
}

/// Starts a [`Facade`] with `extra` settings; `tune` adjusts its endpoint
/// options.
async fn facade(extra: &[(&str, &str)], tune: impl FnOnce(&mut EndpointOptions)) -> Facade {
    facade_with(extra, tune, None).await
}

/// [`facade`], asking token requests' proofs for `nonces`.
async fn facade_with(
    extra: &[(&str, &str)],
    tune: impl FnOnce(&mut EndpointOptions),
    nonces: Option<mcp_auth_strategies::DpopNonces>,
) -> Facade {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server_url: Url = format!("{base}/mcp").parse().unwrap();
    let mut vars: HashMap<String, String> = [
        ("MCP_OAUTH_CLIENT_ID", "mcp-proxy"),
        (
            "MCP_OAUTH_CLIENT_SECRET",
            "mcp-proxy-secret-0123456789abcdef",
        ),
        ("MCP_OAUTH_CALLBACK_URL", &format!("{base}/oauth/callback")),
        ("MCP_OAUTH_AUTH_URL", "http://127.0.0.1:9/authorize"),
        ("MCP_OAUTH_TOKEN_URL", "http://127.0.0.1:9/token"),
        ("MCP_OAUTH_USERINFO_URL", "http://127.0.0.1:9/user"),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools mcp:admin"),
        ("MCP_PROXY_METADATA_ALLOW_LOOPBACK", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let mut settings = crate::settings::ProxySettings::from_settings(&vars, &server_url).unwrap();
    settings.dpop_nonces = nonces;
    let mut opts = settings.endpoints.clone();
    tune(&mut opts);
    let store = Arc::new(mcp_auth_session::MemoryStore::new());
    let proxy = settings.build(server_url, store.clone()).await.unwrap();
    let app = proxy.router(opts);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Facade {
        base,
        proxy,
        store,
        http: reqwest::Client::new(),
    }
}

/// A request to one of the facade's endpoints, before it is sent.
fn post(f: &Facade, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    f.http.post(format!("{}{path}", f.base)).form(form)
}

/// Sends `request`: its status, its body as JSON (`null` when empty) and
/// its headers.
async fn send(
    request: reqwest::RequestBuilder,
) -> (Status, serde_json::Value, reqwest::header::HeaderMap) {
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body, headers)
}

/// The status and `error` of an answer.
fn outcome(answer: &(Status, serde_json::Value, reqwest::header::HeaderMap)) -> (Status, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or_default())
}

/// Registers a client with `method`: its id and, for a confidential one,
/// its secret.
async fn register_client(f: &Facade, method: &str) -> (String, String) {
    let r = f
        .http
        .post(format!("{}{}", f.base, paths::REGISTER))
        .json(&serde_json::json!({
            "client_name": "Test client",
            "redirect_uris": [CLIENT_CB],
            "token_endpoint_auth_method": method,
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), Status::CREATED);
    let body: serde_json::Value = r.json().await.unwrap();
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A login of user `u1` through `client_id`, as the callback would make it.
fn grant(f: &Facade, client_id: &str, scopes: &[&str]) -> Grant {
    Grant {
        family: Grants::new_family().unwrap(),
        client_id: client_id.to_owned(),
        user: UpstreamUser {
            subject: "u1".into(),
            email: None,
            name: None,
            groups: vec![],
        },
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        resource: format!("{}/mcp", f.base),
        logged_in_at: now_secs(),
        dpop_jkt: None,
    }
}

/// A refresh token for `grant`.
async fn refresh_token(f: &Facade, grant: &Grant) -> String {
    f.proxy.inner.grants.issue_refresh(grant).await.unwrap()
}

/// The form of a refresh by a public client.
fn refresh<'a>(client_id: &'a str, token: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", token),
    ]
}

// ---------------------------------------------------------------------------
// Client authentication
// ---------------------------------------------------------------------------

/// The form of a refresh with a token that is no good: a client that
/// authenticates gets as far as `invalid_grant`.
const NO_GOOD_REFRESH: [(&str, &str); 2] = [
    ("grant_type", "refresh_token"),
    ("refresh_token", "not-a-refresh-token"),
];

/// A token request as `client_id` with `form` added to
/// [`NO_GOOD_REFRESH`] and `authorization` as the header when given.
async fn authenticate(
    f: &Facade,
    path: &str,
    form: &[(&str, &str)],
    authorization: Option<&str>,
) -> (Status, serde_json::Value, reqwest::header::HeaderMap) {
    let mut all = NO_GOOD_REFRESH.to_vec();
    if path == paths::REVOKE {
        all = vec![("token", "not-a-refresh-token")];
    }
    all.extend_from_slice(form);
    let mut request = post(f, path, &all);
    if let Some(a) = authorization {
        request = request.header(header::AUTHORIZATION, a);
    }
    send(request).await
}

/// `Basic` credentials for `id` and `secret`, the scheme's name as given.
fn basic(scheme: &str, id: &str, secret: &str) -> String {
    let pair = format!("{id}:{secret}");
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair);
    format!("{scheme} {encoded}")
}

/// A client authenticates by the method it registered and no other
/// (RFC 6749 §2.3): `client_secret_basic` with the header only (its scheme
/// in any case, RFC 7235 §2.1), `client_secret_post` with the form only,
/// `none` with its `client_id` alone. Two methods at once, or a form
/// `client_id` other than the header's, is `invalid_request`; a header
/// that is not Basic credentials is `invalid_client` with a Basic
/// challenge, not ignored.
#[tokio::test]
async fn clients_authenticate_by_their_registered_method_only() {
    let f = facade(&[], |_| {}).await;
    let token = paths::TOKEN;
    let authenticated = (Status::BAD_REQUEST, "invalid_grant");
    let refused = (Status::UNAUTHORIZED, "invalid_client");
    let malformed = (Status::BAD_REQUEST, "invalid_request");

    let (by_basic, secret) = register_client(&f, "client_secret_basic").await;
    let header = basic("Basic", &by_basic, &secret);
    let answer = authenticate(&f, token, &[], Some(&header)).await;
    assert_eq!(outcome(&answer), authenticated, "{:?}", answer.1);
    for scheme in ["basic", "BASIC", "bAsIc"] {
        let answer = authenticate(&f, token, &[], Some(&basic(scheme, &by_basic, &secret))).await;
        assert_eq!(outcome(&answer), authenticated, "{scheme}: {:?}", answer.1);
    }
    let same_id = [("client_id", by_basic.as_str())];
    let answer = authenticate(&f, token, &same_id, Some(&header)).await;
    assert_eq!(outcome(&answer), authenticated, "{:?}", answer.1);
    // Its secret in the form: not its method.
    let in_form = [
        ("client_id", by_basic.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let answer = authenticate(&f, token, &in_form, None).await;
    assert_eq!(outcome(&answer), refused, "{:?}", answer.1);
    // Both at once; another client_id in the form.
    let both = [("client_secret", secret.as_str())];
    assert_eq!(
        outcome(&authenticate(&f, token, &both, Some(&header)).await),
        malformed
    );
    let other_id = [("client_id", "someone-else")];
    assert_eq!(
        outcome(&authenticate(&f, token, &other_id, Some(&header)).await),
        malformed
    );
    // A header that is not Basic credentials: refused with a challenge.
    let no_colon = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "no-colon")
    );
    for bad in [
        "Basic !!not-base64!!",
        "Basic",
        "Bearer some-token",
        &no_colon,
    ] {
        let answer = authenticate(&f, token, &same_id, Some(bad)).await;
        assert_eq!(outcome(&answer), refused, "{bad}: {:?}", answer.1);
        let challenge = answer.2[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Basic "), "{bad}: {challenge}");
    }

    let (by_post, post_secret) = register_client(&f, "client_secret_post").await;
    let in_form = [
        ("client_id", by_post.as_str()),
        ("client_secret", post_secret.as_str()),
    ];
    let answer = authenticate(&f, token, &in_form, None).await;
    assert_eq!(outcome(&answer), authenticated, "{:?}", answer.1);
    let header = basic("Basic", &by_post, &post_secret);
    let answer = authenticate(&f, token, &[], Some(&header)).await;
    assert_eq!(outcome(&answer), refused, "{:?}", answer.1);

    let (public, _) = register_client(&f, "none").await;
    let alone = [("client_id", public.as_str())];
    let answer = authenticate(&f, token, &alone, None).await;
    assert_eq!(outcome(&answer), authenticated, "{:?}", answer.1);
    let with_secret = [("client_id", public.as_str()), ("client_secret", "made-up")];
    assert_eq!(
        outcome(&authenticate(&f, token, &with_secret, None).await),
        refused
    );
    // Its id with an empty password is its id alone.
    let header = basic("Basic", &public, "");
    assert_eq!(
        outcome(&authenticate(&f, token, &[], Some(&header)).await),
        authenticated
    );

    // A confidential client that named no method has client_secret_basic
    // (RFC 7591 2), and its secret in the form is taken too: clients that
    // ignore the registration response's method post it.
    let r = f
        .http
        .post(format!("{}{}", f.base, paths::REGISTER))
        .json(&serde_json::json!({
            "client_name": "Unnamed method",
            "redirect_uris": [CLIENT_CB],
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), Status::CREATED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    let (unnamed, unnamed_secret) = (
        body["client_id"].as_str().unwrap(),
        body["client_secret"].as_str().unwrap(),
    );
    let header = basic("Basic", unnamed, unnamed_secret);
    let answer = authenticate(&f, token, &[], Some(&header)).await;
    assert_eq!(outcome(&answer), authenticated, "{:?}", answer.1);
    let in_form_unnamed = [("client_id", unnamed), ("client_secret", unnamed_secret)];
    let answer = authenticate(&f, token, &in_form_unnamed, None).await;
    assert_eq!(outcome(&answer), authenticated, "{:?}", answer.1);
    let alone = [("client_id", unnamed)];
    assert_eq!(
        outcome(&authenticate(&f, token, &alone, None).await),
        refused
    );

    // The revocation endpoint authenticates the same way.
    let revoke = paths::REVOKE;
    let header = basic("Basic", &by_post, &post_secret);
    let answer = authenticate(&f, revoke, &[], Some(&header)).await;
    assert_eq!(outcome(&answer), refused, "{:?}", answer.1);
    let answer = authenticate(&f, revoke, &in_form, None).await;
    assert_eq!(answer.0, Status::OK, "{:?}", answer.1);
    let header = basic("bAsIc", &by_basic, &secret);
    let answer = authenticate(&f, revoke, &[], Some(&header)).await;
    assert_eq!(answer.0, Status::OK, "{:?}", answer.1);
}

/// Wrong secrets are counted per network and client: 30 in 15 minutes,
/// then that client gets 429 with `Retry-After` (even with its right
/// secret), while another client on the same network still authenticates.
#[tokio::test]
async fn wrong_secrets_lock_out_only_the_client_they_were_for() {
    let f = facade(&[], |_| {}).await;
    let (guessed, secret) = register_client(&f, "client_secret_basic").await;
    let (other, other_secret) = register_client(&f, "client_secret_basic").await;
    let wrong = basic("Basic", &guessed, "a-wrong-guess");
    for n in 0..30 {
        let answer = authenticate(&f, paths::TOKEN, &[], Some(&wrong)).await;
        assert_eq!(answer.0, Status::UNAUTHORIZED, "guess {n}");
    }
    let right = basic("Basic", &guessed, &secret);
    let answer = authenticate(&f, paths::TOKEN, &[], Some(&right)).await;
    assert_eq!(
        outcome(&answer),
        (Status::TOO_MANY_REQUESTS, "temporarily_unavailable")
    );
    let retry: u64 = answer.2[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let answer = authenticate(
        &f,
        paths::TOKEN,
        &[],
        Some(&basic("Basic", &other, &other_secret)),
    )
    .await;
    assert_eq!(
        outcome(&answer),
        (Status::BAD_REQUEST, "invalid_grant"),
        "another client, same network: {:?}",
        answer.1
    );
}

// ---------------------------------------------------------------------------
// Token responses
// ---------------------------------------------------------------------------

/// A token request without `grant_type` is malformed (`invalid_request`);
/// one naming a grant type the facade does not know is
/// `unsupported_grant_type`.
#[tokio::test]
async fn a_token_request_without_grant_type_is_invalid() {
    let f = facade(&[], |_| {}).await;
    let (client, _) = register_client(&f, "none").await;
    let answer = send(post(&f, paths::TOKEN, &[("client_id", client.as_str())])).await;
    assert_eq!(
        outcome(&answer),
        (Status::BAD_REQUEST, "invalid_request"),
        "{:?}",
        answer.1
    );
    let answer = send(post(
        &f,
        paths::TOKEN,
        &[("client_id", client.as_str()), ("grant_type", "password")],
    ))
    .await;
    assert_eq!(
        outcome(&answer),
        (Status::BAD_REQUEST, "unsupported_grant_type")
    );
}

/// Token responses are not cached, by HTTP/1.1 or HTTP/1.0 caches
/// (RFC 6749 §5.1), and a grant of no scope has no `scope` in its response
/// (rather than an empty one).
#[tokio::test]
async fn token_responses_are_not_cached_and_name_no_empty_scope() {
    let f = facade(&[], |_| {}).await;
    let (client, _) = register_client(&f, "none").await;
    let rt = refresh_token(&f, &grant(&f, &client, &[])).await;
    let (status, body, headers) = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::PRAGMA], "no-cache");
    assert!(body.get("scope").is_none(), "{body}");
    // With scopes: named.
    let scoped = refresh_token(&f, &grant(&f, &client, &["mcp:tools"])).await;
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&client, &scoped))).await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(body["scope"], "mcp:tools");
    // Errors too.
    let (status, _, headers) = send(post(&f, paths::TOKEN, &refresh(&client, "nope"))).await;
    assert_eq!(status, Status::BAD_REQUEST);
    assert_eq!(headers[header::PRAGMA], "no-cache");
}

// ---------------------------------------------------------------------------
// DPoP at the token endpoint
// ---------------------------------------------------------------------------

#[path = "../../tests/support/dpop_key.rs"]
mod dpop_key;
use dpop_key::DpopKey;

impl DpopKey {
    /// A fresh proof for a token request at `f`.
    fn proof(&self, f: &Facade) -> String {
        self.proof_with(f, None)
    }

    /// [`proof`](Self::proof), carrying `nonce`.
    fn proof_with(&self, f: &Facade, nonce: Option<&str>) -> String {
        self.sign("POST", &format!("{}{}", f.base, paths::TOKEN), None, nonce)
    }
}

/// A token request with `proof` in the DPoP header, when given.
async fn token_with_proof(
    f: &Facade,
    proof: Option<&str>,
    form: &[(&str, &str)],
) -> (Status, serde_json::Value, reqwest::header::HeaderMap) {
    let mut request = post(f, paths::TOKEN, form);
    if let Some(p) = proof {
        request = request.header("dpop", p);
    }
    send(request).await
}

/// RFC 9449 §5: a public client whose code was exchanged without a proof
/// and that refreshes with one has its grant bound to the proof's key from
/// then on: later refreshes need a proof by that key.
#[tokio::test]
async fn a_refresh_with_a_proof_binds_a_grant_not_yet_bound() {
    let f = facade(&[("MCP_DPOP", "accept")], |_| {}).await;
    let (client, _) = register_client(&f, "none").await;
    let rt = refresh_token(&f, &grant(&f, &client, &["mcp:tools"])).await;
    let key = DpopKey::new();
    let (status, body, _) =
        token_with_proof(&f, Some(&key.proof(&f)), &refresh(&client, &rt)).await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let answer = token_with_proof(&f, None, &refresh(&client, &rt)).await;
    assert_eq!(
        outcome(&answer),
        (Status::BAD_REQUEST, "invalid_dpop_proof"),
        "a bearer refresh of a bound grant: {:?}",
        answer.1
    );
    let thief = DpopKey::new();
    let answer = token_with_proof(&f, Some(&thief.proof(&f)), &refresh(&client, &rt)).await;
    assert_eq!(
        outcome(&answer),
        (Status::BAD_REQUEST, "invalid_dpop_proof"),
        "another key: {:?}",
        answer.1
    );
    // Refused, the token stayed good for the key's holder.
    let (status, body, _) =
        token_with_proof(&f, Some(&key.proof(&f)), &refresh(&client, &rt)).await;
    assert_eq!(status, Status::OK, "{body}");
    let stored = f
        .proxy
        .inner
        .grants
        .use_refresh(body["refresh_token"].as_str().unwrap(), &client)
        .await
        .unwrap();
    assert_eq!(stored.dpop_jkt, Some(key.jkt()));
}

/// A proof is spent once the grant it comes with is found: the proof of a
/// request refused after that (here for widening the grant) cannot be sent
/// again with a good grant (RFC 9449 §11.1), and the grant is not spent by
/// that replay. A proof sent with an unknown token is not recorded (proofs
/// alone take no room in the store).
#[tokio::test]
async fn a_proof_sent_with_a_refused_request_cannot_be_replayed() {
    let f = facade(&[("MCP_DPOP", "accept")], |_| {}).await;
    let (client, _) = register_client(&f, "none").await;
    let rt = refresh_token(&f, &grant(&f, &client, &["mcp:tools"])).await;
    let key = DpopKey::new();
    let proof = key.proof(&f);
    let [grant_type, client_id, token] = refresh(&client, &rt);
    let widening = [
        grant_type,
        client_id,
        token,
        ("scope", "mcp:tools mcp:admin"),
    ];
    let answer = token_with_proof(&f, Some(&proof), &widening).await;
    assert_eq!(outcome(&answer), (Status::BAD_REQUEST, "invalid_scope"));
    let answer = token_with_proof(&f, Some(&proof), &refresh(&client, &rt)).await;
    assert_eq!(
        outcome(&answer),
        (Status::BAD_REQUEST, "invalid_dpop_proof"),
        "the refused request's proof again: {:?}",
        answer.1
    );
    let (status, body, _) =
        token_with_proof(&f, Some(&key.proof(&f)), &refresh(&client, &rt)).await;
    assert_eq!(status, Status::OK, "the token was not spent: {body}");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let proof = key.proof(&f);
    let answer = token_with_proof(&f, Some(&proof), &refresh(&client, "not-a-token")).await;
    assert_eq!(outcome(&answer), (Status::BAD_REQUEST, "invalid_grant"));
    let (status, body, _) = token_with_proof(&f, Some(&proof), &refresh(&client, &rt)).await;
    assert_eq!(
        status,
        Status::OK,
        "not recorded for an unknown token: {body}"
    );
}

/// RFC 9449 §8 at the token endpoint, with the resource server's nonces
/// (`MCP_DPOP_NONCE=true`): a proof without a current nonce is 400
/// `use_dpop_nonce` with the nonce in `DPoP-Nonce`, nothing spent; the
/// retry with it is served, and the answer carries the nonce for the next.
#[tokio::test]
async fn token_requests_need_the_servers_dpop_nonce_when_it_asks_for_one() {
    let nonces = mcp_auth_strategies::DpopNonces::new([9; 32], std::time::Duration::from_secs(300));
    let f = facade_with(&[("MCP_DPOP", "accept")], |_| {}, Some(nonces.clone())).await;
    let (client, _) = register_client(&f, "none").await;
    let rt = refresh_token(&f, &grant(&f, &client, &["mcp:tools"])).await;
    let key = DpopKey::new();
    for stale in [None, Some("not-a-nonce")] {
        let answer =
            token_with_proof(&f, Some(&key.proof_with(&f, stale)), &refresh(&client, &rt)).await;
        assert_eq!(
            outcome(&answer),
            (Status::BAD_REQUEST, "use_dpop_nonce"),
            "{stale:?}"
        );
        let nonce = answer.2["dpop-nonce"].to_str().unwrap().to_owned();
        assert!(nonces.is_valid(&nonce, now_secs()), "{nonce}");
    }
    let nonce = nonces.current(now_secs());
    let (status, body, headers) = token_with_proof(
        &f,
        Some(&key.proof_with(&f, Some(&nonce))),
        &refresh(&client, &rt),
    )
    .await;
    assert_eq!(
        status,
        Status::OK,
        "the token was not spent by the refusals: {body}"
    );
    assert_eq!(body["token_type"], "DPoP");
    assert!(headers.contains_key("dpop-nonce"));
}

// ---------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------

/// RFC 7009 §2.1: a client revokes its own tokens only. Another client's
/// refresh token, live or already rotated, is answered 200 like an unknown
/// one and stays good; the owner's revocation of its rotated token
/// revokes the login.
#[tokio::test]
async fn revocation_leaves_another_clients_tokens_alone() {
    let f = facade(&[], |_| {}).await;
    let (owner, _) = register_client(&f, "none").await;
    let (stranger, _) = register_client(&f, "none").await;
    let rt1 = refresh_token(&f, &grant(&f, &owner, &["mcp:tools"])).await;
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&owner, &rt1))).await;
    assert_eq!(status, Status::OK, "{body}");
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    let revoke = |client: &str, token: &str| {
        post(
            &f,
            paths::REVOKE,
            &[("client_id", client), ("token", token)],
        )
    };
    for token in [&rt1, &rt2] {
        let (status, body, _) = send(revoke(&stranger, token)).await;
        assert_eq!(status, Status::OK, "{body}");
    }
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&owner, &rt2))).await;
    assert_eq!(
        status,
        Status::OK,
        "still good after the stranger's revocations: {body}"
    );
    let rt3 = body["refresh_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let verify = || {
        let req = mcp_auth_core::AuthRequest::builder()
            .header("authorization", &format!("Bearer {access}"))
            .build();
        let tokens = f.proxy.authenticator().unwrap();
        async move { mcp_auth_core::Authenticator::authenticate(&tokens, &req).await }
    };
    assert!(verify().await.is_ok());
    // The owner revokes its rotated token: the login goes, and with it its
    // access tokens (RFC 7009 §2: a conformance pass found them accepted
    // until they expired).
    let (status, _, _) = send(revoke(&owner, &rt1)).await;
    assert_eq!(status, Status::OK);
    let answer = send(post(&f, paths::TOKEN, &refresh(&owner, &rt3))).await;
    assert_eq!(outcome(&answer), (Status::BAD_REQUEST, "invalid_grant"));
    let refused = verify().await;
    assert!(
        matches!(&refused, Err(mcp_auth_core::AuthError::InvalidToken { .. })),
        "{refused:?}"
    );
}

// ---------------------------------------------------------------------------
// Client ID metadata documents that cannot be fetched again
// ---------------------------------------------------------------------------

/// What the document server answers: the document, 503, or 404.
const SERVE: u8 = 0;
const FAIL: u8 = 1;
const GONE: u8 = 2;

/// A document server at `/client.json` and `/other.json`, answering as
/// `mode` says; `hits` counts the requests.
async fn document_server(mode: Arc<AtomicU8>, hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc_base = base.clone();
    let router = Router::new().route(
        "/{name}",
        get(
            move |axum::extract::Path(name): axum::extract::Path<String>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                match mode.load(Ordering::SeqCst) {
                    SERVE => Json(serde_json::json!({
                        "client_id": format!("{doc_base}/{name}"),
                        "client_name": "Document client",
                        "redirect_uris": [CLIENT_CB],
                        "grant_types": ["authorization_code", "refresh_token"],
                        "token_endpoint_auth_method": "none",
                    }))
                    .into_response(),
                    FAIL => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// A facade whose documents expire as soon as they are fetched (so each
/// lookup fetches again), with `total` documents an hour from all
/// networks; a document server; its mode and hit counter.
async fn documents(total: u64) -> (Facade, String, Arc<AtomicU8>, Arc<AtomicUsize>) {
    let f = facade(&[], |o| {
        o.metadata_guard.min_cache_age = Duration::ZERO;
        o.metadata_guard.max_cache_age = Duration::ZERO;
        o.registrations_per_hour_total = total;
    })
    .await;
    let (mode, hits) = (
        Arc::new(AtomicU8::new(SERVE)),
        Arc::new(AtomicUsize::new(0)),
    );
    let docs = document_server(mode.clone(), hits.clone()).await;
    (f, docs, mode, hits)
}

/// A metadata-document client that was issued tokens keeps working while
/// its document's host fails (503 here; also unreachable, timing out): its
/// last accepted copy serves, at the token and the revocation endpoints,
/// and the host is asked again a minute later only. The host's answer that
/// the document is gone (404) takes effect at once, the copy removed.
#[tokio::test]
async fn a_document_client_keeps_working_while_its_host_fails() {
    let (f, docs, mode, hits) = documents(1000).await;
    let client = format!("{docs}/client.json");
    // A document fetched for a request that issued nothing has no copy
    // kept past its own max-age.
    let answer = send(post(&f, paths::TOKEN, &refresh(&client, "not-a-token"))).await;
    assert_eq!(outcome(&answer), (Status::BAD_REQUEST, "invalid_grant"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(f.store.kv_get(&kept_key(&client)).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rt = refresh_token(&f, &grant(&f, &client, &["mcp:tools"])).await;
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(f.store.kv_get(&kept_key(&client)).await.unwrap().is_some());
    let mut rt = body["refresh_token"].as_str().unwrap().to_owned();

    mode.store(FAIL, Ordering::SeqCst);
    for n in 0..2 {
        let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
        assert_eq!(
            status,
            Status::OK,
            "refresh {n} while the host fails: {body}"
        );
        rt = body["refresh_token"].as_str().unwrap().to_owned();
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "asked once, then not again within the minute"
    );
    let (status, body, _) = send(post(
        &f,
        paths::REVOKE,
        &[("client_id", client.as_str()), ("token", "not-a-token")],
    ))
    .await;
    assert_eq!(status, Status::OK, "{body}");

    // A minute later the host says the document is gone: refused, and no
    // copy serves any more.
    let marker = refused_key(&client);
    f.store.kv_delete(&marker).await.unwrap();
    mode.store(GONE, Ordering::SeqCst);
    let answer = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(
        outcome(&answer),
        (Status::UNAUTHORIZED, "invalid_client"),
        "{:?}",
        answer.1
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert!(f.store.kv_get(&kept_key(&client)).await.unwrap().is_none());
    f.store.kv_delete(&marker).await.unwrap();
    mode.store(FAIL, Ordering::SeqCst);
    let answer = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(
        outcome(&answer),
        (Status::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        "no copy left, the host failing: {:?}",
        answer.1
    );
}

/// The fetch budgets cannot lock out a metadata-document client in use:
/// with everyone's hourly budget spent (by anyone) its document is still
/// fetched again (a new copy of a kept document takes no room), and so it
/// is with its network's budget spent (which the caller could spend
/// itself to keep the host from being asked: a document the host says is
/// gone stops at once). A document never fetched cannot be had then: 503
/// `temporarily_unavailable` with `Retry-After`, not `invalid_client`.
#[tokio::test]
async fn the_fetch_budgets_do_not_lock_out_a_document_client_in_use() {
    let (f, docs, mode, hits) = documents(2).await;
    let client = format!("{docs}/client.json");
    let rt = refresh_token(&f, &grant(&f, &client, &["mcp:tools"])).await;
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(status, Status::OK, "{body}");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();

    // Everyone's budget spent by others.
    let hour = Duration::from_secs(3600);
    f.store.hit("proxy-cimd:all", hour).await.unwrap();
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "fetched again");
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let stranger = format!("{docs}/other.json");
    let answer = send(post(&f, paths::TOKEN, &refresh(&stranger, "not-a-token"))).await;
    assert_eq!(
        outcome(&answer),
        (Status::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        "{:?}",
        answer.1
    );
    assert!(answer.2.contains_key(header::RETRY_AFTER));
    assert_eq!(answer.2[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a new document is not fetched"
    );

    // The network's budget spent too: asked all the same.
    for _ in 0..30 {
        f.store
            .hit("proxy-cimd:127.0.0.1", Duration::from_secs(60))
            .await
            .unwrap();
    }
    let (status, body, _) = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    mode.store(GONE, Ordering::SeqCst);
    let answer = send(post(&f, paths::TOKEN, &refresh(&client, &rt))).await;
    assert_eq!(
        outcome(&answer),
        (Status::UNAUTHORIZED, "invalid_client"),
        "the host's 404 takes effect, the caller's budget spent or not: {:?}",
        answer.1
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}
