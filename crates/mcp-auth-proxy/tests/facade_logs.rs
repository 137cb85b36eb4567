//! What the facade logs: the start-up warning when it offers no scopes,
//! and the provider's `error` at the callback only when it is one of
//! RFC 6749's codes. In their own test binary, one test at a time: tracing
//! caches callsite interest per process, so a subscriber set by one test
//! races with tests on other threads. No provider is contacted (no Node
//! needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
};

use reqwest::{StatusCode, header};
use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use url::Url;

mod support;

use support::{Browser, CLIENT_CB, LOCAL_PROVIDER_AUTH, authorize_url, field, query, start_local};

/// One test at a time (see the module's documentation).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An event as logged: its level, message and other fields.
#[derive(Debug, Clone)]
struct Logged {
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
}

impl Logged {
    /// Everything the event would put in a log line.
    fn text(&self) -> String {
        format!("{} {:?}", self.message, self.fields)
    }
}

/// A subscriber keeping the events of this workspace's crates.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Logged>>>);

impl Capture {
    fn events(&self) -> Vec<Logged> {
        self.0.lock().unwrap().clone()
    }

    fn with_message(&self, part: &str) -> Vec<Logged> {
        self.events()
            .into_iter()
            .filter(|e| e.message.contains(part))
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

struct Fields<'a>(&'a mut Logged);

impl Visit for Fields<'_> {
    fn record_str(&mut self, f: &Field, value: &str) {
        if f.name() == "message" {
            self.0.message = value.to_owned();
        } else {
            self.0.fields.insert(f.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, f: &Field, value: &dyn fmt::Debug) {
        self.record_str(f, &format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("mcp_auth")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut logged = Logged {
            level: *event.metadata().level(),
            message: String::new(),
            fields: BTreeMap::new(),
        };
        event.record(&mut Fields(&mut logged));
        self.0.lock().unwrap().push(logged);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn store() -> mcp_auth_session::SharedStore {
    Arc::new(mcp_auth_session::MemoryStore::new())
}

const NO_SCOPES: &str = "MCP_OAUTH_SCOPES_SUPPORTED is not set";

/// Without `MCP_OAUTH_SCOPES_SUPPORTED` (unset or empty) the facade warns
/// once, as it is built, that it grants no scopes; with scopes offered it
/// says nothing of the kind.
#[tokio::test]
async fn no_offered_scopes_is_warned_about_at_start() {
    let _one = ONE_AT_A_TIME.lock().await;
    let logs = Capture::default();
    let _guard = tracing::subscriber::set_default(logs.clone());

    start_local(store(), &[("MCP_OAUTH_SCOPES_SUPPORTED", "")], |_| {}).await;
    let warned = logs.with_message(NO_SCOPES);
    assert_eq!(warned.len(), 1, "{:?}", logs.events());
    assert_eq!(warned[0].level, Level::WARN);
    assert!(warned[0].message.contains("grants no scopes"), "{warned:?}");

    logs.clear();
    start_local(store(), &[("MCP_OAUTH_SCOPES_SUPPORTED", " , ")], |_| {}).await;
    assert_eq!(logs.with_message(NO_SCOPES).len(), 1, "{:?}", logs.events());

    logs.clear();
    start_local(
        store(),
        &[("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools")],
        |_| {},
    )
    .await;
    assert!(
        logs.with_message(NO_SCOPES).is_empty(),
        "{:?}",
        logs.events()
    );
    assert!(
        logs.with_message("MCP_OAUTH_SCOPES_SUPPORTED").is_empty(),
        "{:?}",
        logs.events()
    );
}

/// Sends a browser through consent to the provider's door and comes back to
/// the callback with `error` (and a description) instead of a code: where
/// the browser is sent.
async fn refused_at_the_provider(
    app: &support::Local,
    browser: &mut Browser,
    client_id: &str,
    error: &str,
    description: &str,
) -> Url {
    let page = browser.get(&authorize_url(app, client_id, &[])).await;
    let to_provider = if page.status() == StatusCode::OK {
        let html = page.text().await.unwrap();
        tokio::time::sleep(support::READ_THE_PAGE).await;
        browser
            .post_form(
                &format!("{}/oauth/consent", app.base),
                &[
                    ("csrf", &field(&html, "csrf")),
                    ("request", &field(&html, "request")),
                    ("decision", "allow"),
                ],
            )
            .await
    } else {
        page
    };
    assert_eq!(to_provider.status(), StatusCode::SEE_OTHER);
    let at_provider =
        Url::parse(to_provider.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert!(at_provider.as_str().starts_with(LOCAL_PROVIDER_AUTH));
    let state = query(&at_provider)["state"].clone();
    let mut callback = Url::parse(&format!("{}/oauth/callback", app.base)).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", error)
        .append_pair("error_description", description);
    let back = browser.get(callback.as_str()).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER, "{error:?}");
    let to = Url::parse(back.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(CLIENT_CB), "{to}");
    to
}

/// The provider's `error` at the callback is logged when it is one of RFC
/// 6749's codes (§4.1.2.1), and as `other` when it is anything else: the
/// parameter is whatever the provider (or whoever sent the browser) wrote,
/// so neither it nor its description reaches the log. The client learns
/// `access_denied` or `server_error`, never the provider's text.
#[tokio::test]
async fn the_providers_error_is_logged_only_when_it_is_an_rfc_6749_code() {
    let _one = ONE_AT_A_TIME.lock().await;
    let logs = Capture::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let app = start_local(store(), &[], |_| {}).await;
    let client_id = support::register(&app).await;
    let mut browser = Browser::new();
    let description = "DESCRIPTION-FROM-THE-PROVIDER";

    let rfc6749 = [
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
    ];
    let hostile = "forged\r\nINFO login finished <script>";
    let others = [
        // OIDC's, not RFC 6749's.
        "login_required",
        "interaction_required",
        // Near misses of the known codes.
        "ACCESS_DENIED",
        "access_denied ",
        "access_denied\n",
        "",
        hostile,
    ];
    let cases = rfc6749
        .iter()
        .map(|c| (*c, *c))
        .chain(others.iter().map(|c| (*c, "other")));
    for (sent, expected) in cases {
        logs.clear();
        let back = refused_at_the_provider(&app, &mut browser, &client_id, sent, description).await;
        let refused = logs.with_message("the provider refused the login");
        assert_eq!(refused.len(), 1, "{sent:?}: {:?}", logs.events());
        assert_eq!(
            refused[0].fields.get("error").map(String::as_str),
            Some(expected),
            "{sent:?}"
        );
        for event in logs.events() {
            let text = event.text();
            assert!(!text.contains(description), "{sent:?}: {text}");
            if expected == "other" && !sent.is_empty() {
                assert!(!text.contains(sent), "{sent:?}: {text}");
            }
        }
        // What the client is told.
        let q = query(&back);
        let told = if sent == "access_denied" {
            "access_denied"
        } else {
            "server_error"
        };
        assert_eq!(q.get("error").map(String::as_str), Some(told), "{sent:?}");
        assert_eq!(
            q.get("error_description").map(String::as_str),
            Some("the provider refused the login")
        );
        assert_eq!(q.get("state").map(String::as_str), Some("client-state-1"));
        assert!(!back.as_str().contains("DESCRIPTION"), "{back}");
    }
}
