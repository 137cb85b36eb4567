//! What the facade's end-to-end tests share: a browser that keeps cookies
//! and follows redirects by hand, and an MCP client's side of the
//! authorization-code flow (registration, consent, PKCE, token requests).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use reqwest::{StatusCode, header};
use url::Url;

/// The MCP client's redirect URI.
pub const CLIENT_CB: &str = "http://127.0.0.1:9/callback";

/// A server with the facade: its base URL (the issuer, its origin).
pub trait Server {
    /// `http://127.0.0.1:<port>`.
    fn base(&self) -> &str;
}

pub use mcp_auth_integration_tests::browser::{Browser, READ_THE_PAGE, field, query};

/// The PKCE verifier of every flow here.
pub const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123";

/// Its S256 challenge.
pub fn challenge() -> String {
    mcp_auth_proxy::keys::digest_b64(VERIFIER.as_bytes())
}

pub async fn register(app: &impl Server) -> String {
    register_for(app, CLIENT_CB).await
}

/// A public client registered dynamically with `redirect_uri`; its id.
pub async fn register_for(app: &impl Server, redirect_uri: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/register", app.base()))
        .json(&serde_json::json!({
            "client_name": "Test <b>client</b>",
            "redirect_uris": [redirect_uri],
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

pub fn authorize_url(app: &impl Server, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = Url::parse(&format!("{}/oauth/authorize", app.base())).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", CLIENT_CB)
            .append_pair("code_challenge", &challenge())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "client-state-1")
            .append_pair("scope", "mcp:tools")
            .append_pair("resource", &format!("{}/mcp", app.base()));
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Consent (allow), the upstream login, the callback: the client's code.
pub async fn login(app: &impl Server, browser: &mut Browser, client_id: &str) -> String {
    let page = browser.get(&authorize_url(app, client_id, &[])).await;
    let next = if page.status() == StatusCode::OK {
        let html = page.text().await.unwrap();
        // Registered clients are named "Test <b>client</b>": shown as text.
        assert!(
            !html.contains("<b>client</b>"),
            "the client's name, escaped"
        );
        if client_id != "backend" {
            assert!(
                html.contains("Test &lt;b&gt;client&lt;/b&gt;"),
                "the client's name, escaped"
            );
        }
        let (csrf, request) = (field(&html, "csrf"), field(&html, "request"));
        tokio::time::sleep(READ_THE_PAGE).await;
        browser
            .post_form(
                &format!("{}/oauth/consent", app.base()),
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
    let (back, _) = browser.follow_until(next, CLIENT_CB).await;
    let q = query(&back);
    assert_eq!(q.get("state").map(String::as_str), Some("client-state-1"));
    assert_eq!(q.get("iss"), Some(&app.base().to_owned()), "RFC 9207");
    q.get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {q:?}"))
}

pub async fn token(app: &impl Server, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.base()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    (status, r.json().await.unwrap())
}

pub async fn exchange(
    app: &impl Server,
    client_id: &str,
    code: &str,
) -> (StatusCode, serde_json::Value) {
    token(
        app,
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

pub async fn whoami(app: &impl Server, access: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .get(format!("{}/mcp", app.base()))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A facade whose provider is never contacted (GitHub-style endpoints on a
/// closed port): no Node needed, and enough for everything up to the
/// redirect to the provider, and for callbacks that carry the provider's
/// `error`.
pub struct Local {
    pub base: String,
    pub proxy: mcp_auth_proxy::OAuthProxy,
}

impl Server for Local {
    fn base(&self) -> &str {
        &self.base
    }
}

/// The provider's authorization endpoint of [`Local`] facades.
pub const LOCAL_PROVIDER_AUTH: &str = "http://127.0.0.1:9/authorize";

/// The settings of a [`Local`] facade at `base`, `extra` added (or, with an
/// empty value, removed).
pub fn local_settings(
    base: &str,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let mut vars: std::collections::HashMap<String, String> = [
        ("MCP_OAUTH_CLIENT_ID", "mcp-proxy"),
        (
            "MCP_OAUTH_CLIENT_SECRET",
            "mcp-proxy-secret-0123456789abcdef",
        ),
        ("MCP_OAUTH_CALLBACK_URL", &format!("{base}/oauth/callback")),
        ("MCP_OAUTH_PROVIDER_NAME", "Test IdP"),
        ("MCP_OAUTH_AUTH_URL", LOCAL_PROVIDER_AUTH),
        ("MCP_OAUTH_TOKEN_URL", "http://127.0.0.1:9/token"),
        ("MCP_OAUTH_USERINFO_URL", "http://127.0.0.1:9/user"),
        ("MCP_OAUTH_SCOPE", "read:user"),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools mcp:admin"),
        ("MCP_PROXY_METADATA_ALLOW_LOOPBACK", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        if v.is_empty() {
            vars.remove(*k);
        } else {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    vars
}

/// Starts a [`Local`] facade on a loopback port, its state in `store`;
/// `tune` adjusts its endpoint options.
pub async fn start_local(
    store: mcp_auth_session::SharedStore,
    extra: &[(&str, &str)],
    tune: impl FnOnce(&mut mcp_auth_proxy::EndpointOptions),
) -> Local {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server_url: Url = format!("{base}/mcp").parse().unwrap();
    let settings = mcp_auth_proxy::settings::ProxySettings::from_settings(
        &local_settings(&base, extra),
        &server_url,
    )
    .unwrap();
    let mut opts = settings.endpoints.clone();
    tune(&mut opts);
    let proxy = settings.build(server_url, store).await.unwrap();
    let app = proxy.router(opts);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Local { base, proxy }
}
