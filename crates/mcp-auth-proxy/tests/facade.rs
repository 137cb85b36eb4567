//! The facade end to end over real loopback HTTP, with a real upstream
//! provider (oidc-provider: one static confidential client, no dynamic
//! registration, as Cognito, GitHub and Google are) in its two shapes: OIDC
//! (ID tokens, endpoints by discovery) and GitHub-style (opaque tokens and a
//! userinfo endpoint, the seed's three URLs). The "browser" is a reqwest
//! client that keeps cookies and follows redirects by hand, so every hop is
//! checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, sync::Arc};

use axum::{Router, routing::get};
use mcp_auth_core::Principal;
use mcp_auth_proxy::{OAuthProxy, settings::ProxySettings};
use mcp_auth_transport::AuthLayer;
use reqwest::{StatusCode, header};
use url::Url;

#[path = "support/dpop_key.rs"]
mod dpop_key;
mod support;
use dpop_key::DpopKey;

use support::{
    Browser, CLIENT_CB, Server, VERIFIER, authorize_url, exchange, field, login, query, register,
    token, whoami,
};

/// The MCP server's side: the facade's endpoints and a protected route
/// that answers with the caller.
struct App {
    base: String,
    _upstream: mcp_auth_integration_tests::UpstreamProvider,
    proxy: OAuthProxy,
}

impl Server for App {
    fn base(&self) -> &str {
        &self.base
    }
}

async fn start(mode: &str) -> App {
    start_offering(mode, Some("mcp:tools mcp:admin")).await
}

/// `start` with `MCP_OAUTH_SCOPES_SUPPORTED` set to `offered` (or unset).
async fn start_offering(mode: &str, offered: Option<&str>) -> App {
    start_with(mode, offered, &[]).await
}

/// `start_offering` with more settings; with `MCP_DPOP` on, the protected
/// route checks DPoP proofs as the server does.
async fn start_with(mode: &str, offered: Option<&str>, extra: &[(&str, &str)]) -> App {
    start_tuned(mode, offered, extra, |_| {}).await
}

/// `start_with`, the endpoints' options changed by `tune`.
async fn start_tuned(
    mode: &str,
    offered: Option<&str>,
    extra: &[(&str, &str)],
    tune: impl FnOnce(&mut mcp_auth_proxy::EndpointOptions),
) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let callback = format!("{base}/oauth/callback");
    let up_port = mcp_auth_integration_tests::free_port();
    let upstream = mcp_auth_integration_tests::UpstreamProvider::start(up_port, &callback, mode);
    let issuer = format!("http://127.0.0.1:{up_port}");
    let mut vars: HashMap<String, String> = [
        ("MCP_OAUTH_CLIENT_ID", "mcp-proxy"),
        (
            "MCP_OAUTH_CLIENT_SECRET",
            "mcp-proxy-secret-0123456789abcdef",
        ),
        ("MCP_OAUTH_CALLBACK_URL", callback.as_str()),
        ("MCP_OAUTH_PROVIDER_NAME", "Test IdP"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(offered) = offered {
        vars.insert("MCP_OAUTH_SCOPES_SUPPORTED".into(), offered.into());
    }
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    if mode == "oidc" {
        vars.insert("MCP_OAUTH_ISSUER".into(), issuer.clone());
        vars.insert("MCP_OAUTH_SCOPE".into(), "openid email profile".into());
    } else {
        vars.insert("MCP_OAUTH_AUTH_URL".into(), format!("{issuer}/auth"));
        vars.insert("MCP_OAUTH_TOKEN_URL".into(), format!("{issuer}/token"));
        vars.insert("MCP_OAUTH_USERINFO_URL".into(), format!("{issuer}/user"));
        vars.insert("MCP_OAUTH_SCOPE".into(), "openid".into());
    }
    let server_url: Url = format!("{base}/mcp").parse().unwrap();
    let settings = ProxySettings::from_settings(&vars, &server_url).unwrap();
    let store = Arc::new(mcp_auth_session::MemoryStore::new());
    let mut opts = settings.endpoints.clone();
    opts.metadata_guard.allow_loopback = true;
    tune(&mut opts);
    // A pre-registered confidential client, as MCP_PROXY_CLIENTS would give.
    opts.preregistered.push(
        mcp_auth_proxy::clients::ClientInfo::preregistered(
            "backend",
            "Backend",
            vec![CLIENT_CB.to_owned()],
        )
        .with_client_secret(BACKEND_SECRET),
    );
    let proxy = settings.build(server_url.clone(), store).await.unwrap();
    let tokens: mcp_auth_core::SharedAuthenticator = Arc::new(proxy.authenticator().unwrap());
    let authenticator = mcp_auth_strategies::settings::dpop_from_settings(
        &vars,
        server_url.as_str(),
        tokens,
        Arc::new(mcp_auth_core::MemoryReplayCache::default()),
        None,
    )
    .unwrap();
    // A tool's view: the caller, and the provider's token for it.
    let for_tools = proxy.clone();
    let protected = Router::new()
        .route(
            "/mcp",
            get(|p: Principal| async move {
                format!("{} {} {}", p.subject, p.scopes.join(","), p.strategy)
            }),
        )
        .route(
            "/mcp/upstream",
            get(move |p: Principal| async move {
                match for_tools.upstream_access_token(&p).await {
                    Ok(Some(token)) => (StatusCode::OK, token),
                    Ok(None) => (StatusCode::NOT_FOUND, "not from this facade".to_owned()),
                    Err(e) => (StatusCode::CONFLICT, e.to_string()),
                }
            }),
        )
        .route_layer(AuthLayer::shared(authenticator));
    let app = protected.merge(proxy.router(opts));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    App {
        base,
        _upstream: upstream,
        proxy,
    }
}

/// The payload of a JWT (the facade's own: verified by the server).
fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// What a tool gets for the caller behind `access`: the provider's token.
async fn upstream_token(app: &App, access: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .get(format!("{}/mcp/upstream", app.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn full_login_refresh_and_replays(mode: &str, subject: &str) {
    let app = start(mode).await;
    // Discovery: the metadata names every endpoint and what MCP needs.
    let md: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        app.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(md["issuer"], app.base);
    // The `iss` the client checks on its redirect (RFC 9207) is the base.
    assert_eq!(app.proxy.config().issuer_id(), app.base);
    assert_eq!(
        md["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(md["client_id_metadata_document_supported"], true);
    assert_eq!(md["authorization_response_iss_parameter_supported"], true);

    let client_id = register(&app).await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, &client_id).await;
    let (status, tokens) = exchange(&app, &client_id, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let (status, who) = whoami(&app, access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(who, format!("{subject} mcp:tools oauth2"));
    // The access token names its login; a tool holding the caller's
    // principal gets the provider's access token (oidc-provider's opaque
    // one), which the MCP client never sees.
    let family = claims(access)["fam"].as_str().unwrap().to_owned();
    assert!(family.len() >= 16, "{family}");
    let (status, upstream) = upstream_token(&app, access).await;
    assert_eq!(status, StatusCode::OK, "{upstream}");
    assert!(!upstream.is_empty());
    assert_ne!(upstream, access);
    assert!(
        !tokens.to_string().contains(&upstream),
        "not in the token response"
    );

    // The code is single use; its replay revokes what it issued.
    let (status, err) = exchange(&app, &client_id, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Its login is revoked: the access token is refused from then on
    // (within a second: the revocation is read at most once a second per
    // login), not only once it expires (RFC 7009 §2; a conformance pass
    // found it still accepted), and with it any provider token.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(whoami(&app, access).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        upstream_token(&app, access).await.0,
        StatusCode::UNAUTHORIZED
    );
    let rt = tokens["refresh_token"].as_str().unwrap();
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", rt),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the replay revoked the family"
    );

    // A second login in the same browser skips the consent page.
    let code = login(&app, &mut browser, &client_id).await;
    let (_, tokens) = exchange(&app, &client_id, &code).await;
    let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    // Scopes separated by an em space: not scope tokens (RFC 6749 §3.3),
    // refused, and the refresh token is not spent by the refusal.
    let (status, err) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &rt1),
            ("scope", "mcp:tools\u{2003}mcp:tools"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"], "invalid_scope", "{err}");
    let (status, next) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &rt1),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_ne!(next["refresh_token"], rt1.as_str(), "rotated");
    assert_eq!(
        whoami(&app, next["access_token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
    // A refreshed access token is of the same login: the same provider
    // token (not expired yet), another one than the first login's.
    let first = tokens["access_token"].as_str().unwrap();
    let next_access = next["access_token"].as_str().unwrap();
    assert_eq!(claims(next_access)["fam"], claims(first)["fam"]);
    let (status, second_upstream) = upstream_token(&app, next_access).await;
    assert_eq!(status, StatusCode::OK, "{second_upstream}");
    assert_eq!(second_upstream, upstream_token(&app, first).await.1);
    assert_ne!(second_upstream, upstream);
    // Reusing the rotated token revokes the family: the new one dies too,
    // and so do its access tokens.
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &rt1),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let rt2 = next["refresh_token"].as_str().unwrap();
    let (status, err) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", rt2),
        ],
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(whoami(&app, next_access).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn oidc_upstream_login_refresh_and_replays() {
    full_login_refresh_and_replays("oidc", "octocat").await;
}

#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn github_style_upstream_with_userinfo() {
    full_login_refresh_and_replays("github", "583231").await;
}

#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn refusals_issue_nothing_and_never_redirect_untrusted_errors() {
    let app = start("oidc").await;
    let client_id = register(&app).await;
    let mut browser = Browser::new();

    // An unregistered redirect URI or an unknown client: a page, no redirect.
    for url in [
        authorize_url(&app, &client_id, &[])
            .replace("127.0.0.1%3A9%2Fcallback", "evil.example%2Fcallback"),
        authorize_url(&app, "no-such-client", &[]),
    ] {
        let r = browser.get(&url).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(r.headers().get(header::LOCATION).is_none());
    }
    // Errors about the request itself, for a client anyone could have
    // registered (here dynamically) with a redirect URI off this machine:
    // a page, not a redirect, until this browser has approved the client's
    // redirect URI (RFC 9700 §4.11.2: the server would otherwise send any
    // link's visitor anywhere). Then back to the client. A loopback
    // redirect URI leads back to the user's machine only: trusted (a
    // review: native apps waited on their listener for an answer that
    // never came).
    const REMOTE_CB: &str = "https://app.example/callback";
    let remote = support::register_for(&app, REMOTE_CB).await;
    // A challenge that could never match a verifier (RFC 7636 §4.2: S256 is
    // 43 base64url characters), request objects and other response modes,
    // which a client expects honoured, and scopes separated by anything
    // but spaces (RFC 6749 §3.3; an attack pass: a tab or a no-break space
    // split them and both were granted): refused, not ignored.
    let bang = "!".repeat(43);
    let refusals = [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", bang.as_str())], "invalid_request"),
        (
            vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
        (
            vec![("request_uri", "urn:example:req")],
            "request_uri_not_supported",
        ),
        (vec![("response_mode", "fragment")], "invalid_request"),
        (vec![("scope", "mcp:tools\tmcp:admin")], "invalid_scope"),
        (vec![("scope", "mcp:tools\u{a0}mcp:admin")], "invalid_scope"),
        (
            vec![("resource", "https://other.example/mcp")],
            "invalid_target",
        ),
        (vec![("scope", "everything else")], "invalid_scope"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("code_challenge", "")], "invalid_request"),
    ];
    let with = |client: &str, callback: &str, extra: &[(&str, &str)]| {
        let mut url = Url::parse(&authorize_url(&app, client, &[])).unwrap();
        let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        pairs.retain(|(k, _)| k != "redirect_uri");
        pairs.push(("redirect_uri".into(), callback.into()));
        for (k, v) in extra {
            pairs.retain(|(pk, _)| pk != k);
            if !v.is_empty() {
                pairs.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    };
    let redirected = |r: &reqwest::Response, to: &str, code: &str| {
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{code}");
        let back = Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
        assert!(back.as_str().starts_with(to), "{back}");
        assert_eq!(query(&back).get("error").map(String::as_str), Some(code));
        // RFC 9207: error responses name the issuer too (the metadata says
        // authorization_response_iss_parameter_supported, so a client
        // refuses any answer without it).
        assert_eq!(query(&back).get("iss"), Some(&app.base), "{code}");
    };
    for (extra, code) in &refusals {
        let r = browser.get(&with(&remote, REMOTE_CB, extra)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(r.headers().get(header::LOCATION).is_none(), "{extra:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains(code), "the page names the error: {page}");
        let r = browser.get(&with(&client_id, CLIENT_CB, extra)).await;
        redirected(&r, CLIENT_CB, code);
    }
    // Approved once in a browser: the remote client's errors go back to it.
    let mut approved = Browser::new();
    let page = approved.get(&with(&remote, REMOTE_CB, &[])).await;
    let html = page.text().await.unwrap();
    let r = decide(&app, &mut approved, &html, "allow").await;
    approved.follow_until(r, REMOTE_CB).await;
    for (extra, code) in &refusals {
        let r = approved.get(&with(&remote, REMOTE_CB, extra)).await;
        redirected(&r, REMOTE_CB, code);
    }
    // The first browser has approved nothing: a page still.
    let r = browser.get(&with(&remote, REMOTE_CB, &refusals[0].0)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::LOCATION).is_none());
    // A `state` over the limit is refused and not sent back (an attack
    // pass: 60 000 characters came back in the redirect).
    let long = "s".repeat(600);
    let r = browser
        .get(&with(&client_id, CLIENT_CB, &[("state", long.as_str())]))
        .await;
    redirected(&r, CLIENT_CB, "invalid_request");
    let back = Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert!(!query(&back).contains_key("state"), "{back}");

    // The consent POST needs this browser's CSRF token.
    let html = consent_html(&app, &mut browser, &client_id).await;
    let request = field(&html, "request");
    for csrf in ["", "forged-token"] {
        let r = browser
            .post_form(
                &format!("{}/oauth/consent", app.base),
                &[("csrf", csrf), ("request", &request), ("decision", "allow")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = decide(&app, &mut Browser::new(), &html, "allow").await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a token lifted from another browser"
    );
    // Deny: back to the client with access_denied.
    let r = decide(&app, &mut browser, &html, "deny").await;
    let back = Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(query(&back)["error"], "access_denied");
    assert_eq!(query(&back)["state"], "client-state-1");

    // A callback with a state this server never sent.
    let r = browser
        .get(&format!("{}/oauth/callback?code=x&state=forged", app.base))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::LOCATION).is_none());

    // A code for another client, or with the wrong verifier, is refused.
    // A request for more than is offered gets the part that is.
    let page = browser
        .get(
            &authorize_url(&app, &client_id, &[])
                .replace("scope=mcp%3Atools", "scope=mcp%3Atools+root"),
        )
        .await;
    assert!(page.text().await.unwrap().contains("mcp:tools"));
    let code = login(&app, &mut browser, &client_id).await;
    // Tokens for another server's `resource`: refused (RFC 8707 §2.2).
    let (status, err) = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", CLIENT_CB),
            ("code_verifier", VERIFIER),
            ("resource", "https://other.example/mcp"),
        ],
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target")),
        "{err}"
    );
    let other = register(&app).await;
    let (status, err) = exchange(&app, &other, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Tokens of another issuer or garbage: 401.
    assert_eq!(
        whoami(&app, "not-a-token").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Registration with a bad redirect URI.
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/register", app.base))
        .json(&serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_redirect_uri");
}

const BACKEND_SECRET: &str = "backend-secret-0123456789abcdef0123456789";

/// A pre-registered confidential client authenticates at the token
/// endpoint with its secret (Basic), and fails without it.
#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn a_pre_registered_confidential_client_must_authenticate() {
    let app = start("oidc").await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, "backend").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CLIENT_CB),
        ("code_verifier", VERIFIER),
    ];
    let http = reqwest::Client::new();
    let url = format!("{}/oauth/token", app.base);
    // Without the secret (client_id alone in the form): invalid_client.
    let mut public = form.to_vec();
    public.push(("client_id", "backend"));
    let r = http.post(&url).form(&public).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Every 401 names a scheme (RFC 9110 §15.5.2): the one this endpoint takes.
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"token\""
    );
    // A wrong secret over Basic: 401 with a Basic challenge.
    let r = http
        .post(&url)
        .basic_auth("backend", Some("wrong-secret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    // The failures spent nothing: a fresh login with the right secret works.
    let code = login(&app, &mut browser, "backend").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CLIENT_CB),
        ("code_verifier", VERIFIER),
    ];
    let r = http
        .post(&url)
        .basic_auth("backend", Some(BACKEND_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string());
    // Guessing the secret online: after 30 failures (two above), 429, even
    // for the right secret, until the window ends.
    for _ in 0..28 {
        let r = http
            .post(&url)
            .basic_auth("backend", Some("another-wrong-secret"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = http
        .post(&url)
        .basic_auth("backend", Some(BACKEND_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn registration_floods_are_cut_off_per_address() {
    let app = start("oidc").await;
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "token_endpoint_auth_method": "none",
    });
    for n in 1..=20 {
        let r = http
            .post(format!("{}/oauth/register", app.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "registration {n} of 20");
    }
    let r = http
        .post(format!("{}/oauth/register", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["error"], "temporarily_unavailable");
    // The refusal is for registrations only: the server still answers.
    assert!(
        reqwest::get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.base
        ))
        .await
        .unwrap()
        .status()
        .is_success()
    );
}

/// One address past its own registration budget (or sending what is no
/// registration) does not use up everyone's: another address still
/// registers.
#[tokio::test]
async fn one_address_cannot_shut_registration_for_everyone() {
    let app = start_tuned("oidc", None, &[], |o| {
        o.registrations_per_hour = 2;
        o.registrations_per_hour_total = 3;
    })
    .await;
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap()
    };
    let body = serde_json::json!({
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "token_endpoint_auth_method": "none",
    });
    let register = |http: reqwest::Client, body: Option<serde_json::Value>| {
        let url = format!("{}/oauth/register", app.base);
        async move {
            let req = http.post(url);
            let req = match body {
                Some(b) => req.json(&b),
                None => req.body("not a registration"),
            };
            req.send().await.unwrap().status()
        }
    };
    let a = from(1);
    for _ in 0..2 {
        assert_eq!(
            register(a.clone(), Some(body.clone())).await,
            StatusCode::CREATED
        );
    }
    for _ in 0..5 {
        assert_eq!(
            register(a.clone(), Some(body.clone())).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            register(a.clone(), None).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let b = from(2);
    assert_eq!(register(b.clone(), None).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        register(b.clone(), Some(body.clone())).await,
        StatusCode::CREATED
    );
    // Everyone's budget (3) is now used by registrations that went through.
    let r = from(3)
        .post(format!("{}/oauth/register", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
}

/// The consent page `browser` gets for `client_id`'s authorization request.
async fn consent_html(app: &App, browser: &mut Browser, client_id: &str) -> String {
    let page = browser.get(&authorize_url(app, client_id, &[])).await;
    page.text().await.unwrap()
}

/// The consent page `html`'s form, posted from `browser` with `decision`.
async fn decide(app: &App, browser: &mut Browser, html: &str, decision: &str) -> reqwest::Response {
    if decision == "allow" {
        tokio::time::sleep(support::READ_THE_PAGE).await;
    }
    browser
        .post_form(
            &format!("{}/oauth/consent", app.base),
            &[
                ("csrf", &field(html, "csrf")),
                ("request", &field(html, "request")),
                ("decision", decision),
            ],
        )
        .await
}

/// A provider URL handed to someone else: their browser comes back to the
/// callback without the binding cookie of the browser that approved the
/// client, and the login is refused before any code is issued.
#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn a_login_cannot_be_finished_in_another_browser() {
    let app = start("oidc").await;
    let client_id = register(&app).await;
    let mut attacker = Browser::new();
    // The attacker approves, and hands the provider URL to a victim, whose
    // browser follows it to the callback: refused there. Its URL (the
    // provider's code for the victim's account) is returned.
    let refused_in_the_victims_browser = async |attacker: &mut Browser| {
        let html = consent_html(&app, attacker, &client_id).await;
        let approved = decide(&app, attacker, &html, "allow").await;
        let to_provider = approved.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        let mut victim = Browser::new();
        let mut resp = victim.get(&to_provider).await;
        for _ in 0..20 {
            if !resp.status().is_redirection() {
                break;
            }
            let next = resp
                .url()
                .join(resp.headers()[header::LOCATION].to_str().unwrap())
                .unwrap();
            assert!(
                !next.as_str().starts_with(CLIENT_CB),
                "a code reached the client"
            );
            resp = victim.get(next.as_str()).await;
        }
        assert_eq!(resp.url().path(), "/oauth/callback");
        assert!(query(resp.url()).contains_key("code"), "{}", resp.url());
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        (to_provider, resp.url().to_string())
    };
    // The provider's answer refused in another browser ends the login: the
    // victim's callback URL opened in the attacker's browser (an attack
    // pass: it finished the login with the victim's code, a token as the
    // victim) finds nothing.
    let (to_provider, victims_callback) = refused_in_the_victims_browser(&mut attacker).await;
    let r = attacker.get(&victims_callback).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the login is over");
    assert!(r.headers().get(header::LOCATION).is_none());
    let first = attacker.get(&to_provider).await;
    let (callback, _) = attacker
        .follow_until(first, &format!("{}/oauth/callback", app.base))
        .await;
    let r = attacker.get(callback.as_str()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the login is over");
    assert!(r.headers().get(header::LOCATION).is_none());
    // A callback in another browser without the provider's answer ends
    // nothing: the browser that approved the login still finishes it.
    let html = consent_html(&app, &mut attacker, &client_id).await;
    let approved = decide(&app, &mut attacker, &html, "allow").await;
    let to_provider = approved.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let state = query(&Url::parse(&to_provider).unwrap())["state"].clone();
    let r = Browser::new()
        .get(&format!("{}/oauth/callback?state={state}", app.base))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let first = attacker.get(&to_provider).await;
    let (back, _) = attacker.follow_until(first, CLIENT_CB).await;
    assert!(query(&back).contains_key("code"), "{back}");
    // A replayed approval finds nothing: the request was single use.
    let again = decide(&app, &mut attacker, &html, "allow").await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}

/// An approval is remembered only once the provider's login succeeded: a
/// script approving over and over (which needs no account anywhere) does
/// not leave a 30-day record per approval in the store.
#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn an_approval_is_remembered_only_after_the_login_succeeds() {
    let app = start("oidc").await;
    let client_id = register(&app).await;
    let mut browser = Browser::new();
    let html = consent_html(&app, &mut browser, &client_id).await;
    let approved = decide(&app, &mut browser, &html, "allow").await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    // Approved, but never went to the provider: asked again.
    let page = browser.get(&authorize_url(&app, &client_id, &[])).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("name=\"csrf\""));
    // A login that finishes is remembered: straight on to the provider.
    login(&app, &mut browser, &client_id).await;
    let again = browser.get(&authorize_url(&app, &client_id, &[])).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
}

/// A registration no login went through is forgotten after a while
/// (`unused_registration_ttl`): registrations alone cannot fill the store.
/// One a login went through is kept for its lifetime (30 days by default)
/// from its last token request, refreshes included.
#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn a_registration_is_kept_only_once_a_login_went_through_it() {
    let app = start_tuned("oidc", Some("mcp:tools"), &[], |o| {
        o.unused_registration_ttl = std::time::Duration::from_secs(2);
        o.registration.client_lifetime = Some(std::time::Duration::from_secs(6));
    })
    .await;
    let used = register(&app).await;
    let unused = register(&app).await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, &used).await;
    let (status, tokens) = exchange(&app, &used, &code).await;
    assert_eq!(status, StatusCode::OK);
    // A refresh ~3 s on keeps it for its lifetime (6 s) from then: past
    // the 6 s from its registration, it is still known.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &used),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    // The used one is still known (approved before: straight on).
    let r = browser.get(&authorize_url(&app, &used, &[])).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The other is not: a page, no redirect.
    let r = Browser::new().get(&authorize_url(&app, &unused, &[])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::LOCATION).is_none());
}

/// Without MCP_OAUTH_SCOPES_SUPPORTED the facade grants no scope at all,
/// whatever the client asks for.
#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn without_offered_scopes_nothing_is_granted() {
    let app = start_offering("oidc", None).await;
    let client_id = register(&app).await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, &client_id).await;
    let (status, tokens) = exchange(&app, &client_id, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens.get("scope").is_none(),
        "no scope, none named: {tokens}"
    );
    let (_, who) = whoami(&app, tokens["access_token"].as_str().unwrap()).await;
    assert!(!who.contains("mcp:"), "{who}");
}

/// An approval is for one redirect URI: the same client sending the
/// browser to another of its redirect URIs gets the consent page again.
#[tokio::test]
#[ignore = "needs Node and oidc-provider (tests/run-all.sh installs them)"]
async fn consent_is_per_redirect_uri() {
    let app = start("oidc").await;
    let other_cb = "http://127.0.0.1:9/other-callback";
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/register", app.base))
        .json(&serde_json::json!({
            "client_name": "Test <b>client</b>",
            "redirect_uris": [CLIENT_CB, other_cb],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    let client_id = r.json::<serde_json::Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut browser = Browser::new();
    login(&app, &mut browser, &client_id).await;
    // Approved for CLIENT_CB: straight on to the provider.
    let again = browser.get(&authorize_url(&app, &client_id, &[])).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    // Not for the other redirect URI: the page again.
    let elsewhere = authorize_url(&app, &client_id, &[])
        .replace("127.0.0.1%3A9%2Fcallback", "127.0.0.1%3A9%2Fother-callback");
    let page = browser.get(&elsewhere).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("name=\"csrf\""));
}

/// A token request with `proof` in the DPoP header.
async fn token_with_proof(
    app: &App,
    proof: Option<&str>,
    form: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.base))
        .form(form);
    if let Some(p) = proof {
        r = r.header("dpop", p);
    }
    let r = r.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Issue #18: with `MCP_DPOP` on, the facade binds what a client asks for
/// with a proof: the access token (`cnf.jkt`, `token_type` DPoP, usable
/// only with proofs by that key) and a public client's refresh tokens (a
/// refresh without a proof, or with another key's, is refused and leaves
/// the token good for its holder); its metadata names the algorithms; a
/// token-endpoint proof is single use.
#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn dpop_binds_access_and_refresh_tokens_to_the_clients_key() {
    let app = start_with("oidc", Some("mcp:tools"), &[("MCP_DPOP", "accept")]).await;
    let md: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        app.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        md["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA", "RS256", "PS256"])
    );
    let key = DpopKey::new();
    let token_url = format!("{}/oauth/token", app.base);
    let client_id = register(&app).await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, &client_id).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", CLIENT_CB),
        ("code_verifier", VERIFIER),
    ];
    // A proof is spent once its grant is found: the same proof, first
    // with a code that is no good (not recorded, so proofs alone take no
    // room in the store), then with the real one.
    let first = key.sign("POST", &token_url, None, None);
    let junk = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", "not-a-code"),
        ("redirect_uri", CLIENT_CB),
        ("code_verifier", VERIFIER),
    ];
    let (status, err) = token_with_proof(&app, Some(&first), &junk).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, tokens) = token_with_proof(&app, Some(&first), &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["cnf"]["jkt"], key.jkt());
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // At the resource: with a proof by the key, yes; as a bearer token, no.
    let mcp = format!("{}/mcp", app.base);
    let r = reqwest::Client::new()
        .get(&mcp)
        .header("authorization", format!("DPoP {access}"))
        .header("dpop", key.sign("GET", &mcp, Some(access), None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().starts_with("octocat "));
    let (status, _) = whoami(&app, access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a bound token as bearer");

    // The refresh token is bound too.
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("client_id", client_id.as_str()),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, err) = token_with_proof(&app, None, &refresh_form).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "no proof: {err}"
    );
    let thief = DpopKey::new();
    let (status, err) = token_with_proof(
        &app,
        Some(&thief.sign("POST", &token_url, None, None)),
        &refresh_form,
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "another key: {err}"
    );
    let proof = key.sign("POST", &token_url, None, None);
    let (status, fresh) = token_with_proof(&app, Some(&proof), &refresh_form).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the holder's refresh still works: {fresh}"
    );
    assert_eq!(fresh["token_type"], "DPoP");
    assert_eq!(
        claims(fresh["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    // A token-endpoint proof is single use.
    let next = [
        ("grant_type", "refresh_token"),
        ("client_id", client_id.as_str()),
        ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
    ];
    let (status, err) = token_with_proof(&app, Some(&proof), &next).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "a replayed proof: {err}"
    );
}

/// Issue #18: with `MCP_DPOP=require` the facade issues DPoP-bound tokens
/// only: a token request without a proof is refused before anything is
/// spent, and the same code then works with a proof.
#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn a_dpop_only_facade_refuses_token_requests_without_a_proof() {
    let app = start_with("oidc", Some("mcp:tools"), &[("MCP_DPOP", "require")]).await;
    let client_id = register(&app).await;
    let mut browser = Browser::new();
    let code = login(&app, &mut browser, &client_id).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", CLIENT_CB),
        ("code_verifier", VERIFIER),
    ];
    let (status, err) = token_with_proof(&app, None, &form).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "{err}"
    );
    let key = DpopKey::new();
    let proof = key.sign("POST", &format!("{}/oauth/token", app.base), None, None);
    let (status, tokens) = token_with_proof(&app, Some(&proof), &form).await;
    assert_eq!(status, StatusCode::OK, "the code was not spent: {tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
}
