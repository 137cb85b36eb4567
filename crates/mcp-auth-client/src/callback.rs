//! The loopback OAuth redirect target, and the page the browser sees.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use mcp_auth_client::{CallbackServer, IssuerCheck};
//!
//! // The authorization server's metadata names its issuer and announces
//! // RFC 9207 `iss` in authorization responses.
//! let server = CallbackServer::bind(0)
//!     .await?
//!     .with_issuer_check(IssuerCheck::new(Some("https://as.example".into()), true));
//! println!("redirect_uri = {}", server.redirect_uri());
//! // ... send the browser to the authorization URL, with state "expected-state" ...
//! let redirect = server.receive("expected-state", Duration::from_secs(300)).await?;
//! // `state`, `iss` and the error/code checks passed; the browser waits for
//! // the outcome of the token exchange before it is told anything.
//! let exchanged: Result<(), String> = Ok(()); // exchange redirect.url() for tokens here
//! match exchanged {
//!     Ok(()) => redirect.succeeded(),
//!     Err(_) => redirect.failed("the code could not be exchanged for tokens"),
//! }
//! # Ok(()) }
//! ```
//!
//! The page says "Signed in" only when the client accepted the redirect:
//! a forged or stale `state`, an `iss` other than the expected issuer, an
//! error from the authorization server or a failed token exchange all give
//! a "Sign-in failed" page with a short, escaped reason.
//!
//! Only a redirect with this login's `state` counts. Any web page the
//! person has open can send their browser to the (predictable) callback
//! URL; such a request gets a failure page and is otherwise ignored: it
//! neither ends the login (an `error=` without the right `state` is not
//! believed) nor uses up its one redirect.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    response::Html,
    routing::get,
};
use rmcp::transport::auth::AuthorizationMetadata;
use tokio::sync::{mpsc, oneshot};

/// What the authorization server sent back. `Debug` hides the code.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct CallbackParams {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The `state` echoed back.
    #[serde(default)]
    pub state: Option<String>,
    /// RFC 9207 issuer identification.
    #[serde(default)]
    pub iss: Option<String>,
    /// An OAuth error code.
    #[serde(default)]
    pub error: Option<String>,
    /// Its description.
    #[serde(default)]
    pub error_description: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "[REDACTED]"))
            .field("state", &self.state)
            .field("iss", &self.iss)
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

/// The RFC 9207 `iss` a redirect must carry, from the authorization
/// server's metadata. Mirrors rmcp's own check, so the page and the token
/// exchange agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerCheck {
    /// The metadata's `issuer`. When it names none, a redirect that carries
    /// an `iss` is refused: there is nothing to check it against.
    pub issuer: Option<String>,
    /// The metadata's `authorization_response_iss_parameter_supported`: a
    /// redirect without `iss` is refused.
    pub required: bool,
}

impl IssuerCheck {
    /// Expects `issuer` (if any); `required`: `iss` must be present.
    pub fn new(issuer: Option<String>, required: bool) -> Self {
        Self { issuer, required }
    }

    /// From authorization server metadata: its `issuer` and
    /// `authorization_response_iss_parameter_supported`.
    pub fn from_metadata(metadata: &AuthorizationMetadata) -> Self {
        let required = metadata
            .additional_fields
            .get("authorization_response_iss_parameter_supported")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Self::new(metadata.issuer.clone(), required)
    }

    /// Checks a redirect's `iss` (byte-for-byte, as RFC 9207 §2.4 asks).
    pub fn verify(&self, received: Option<&str>) -> Result<(), CallbackError> {
        match (&self.issuer, received) {
            (Some(expected), Some(got)) if got == expected => Ok(()),
            (Some(expected), Some(got)) => Err(CallbackError::IssuerMismatch {
                expected: clip(expected),
                received: clip(got),
            }),
            (Some(expected), None) if self.required => Err(CallbackError::IssuerMissing {
                expected: clip(expected),
            }),
            (Some(_), None) => Ok(()),
            (None, Some(_)) => Err(CallbackError::IssuerUnverifiable),
            (None, None) if self.required => Err(CallbackError::IssuerUnverifiable),
            (None, None) => Ok(()),
        }
    }
}

/// At most this many characters of a value from the query go into a
/// message; control characters are escaped (no terminal escapes).
const CLIP: usize = 120;

fn clip(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(CLIP));
    for (i, c) in s.chars().enumerate() {
        if i == CLIP {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// How long the browser's request waits for the client's verdict (the
/// `state`/`iss` checks, then the token exchange) before it is told the
/// outcome is unknown.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);

/// The client's verdict on a redirect, for the page.
#[derive(Debug)]
enum Verdict {
    SignedIn,
    Failed(String),
}

/// A redirect, handed from the HTTP handler to [`CallbackServer::receive`];
/// the handler answers the browser once `reply` carries the verdict.
struct Arrival {
    params: CallbackParams,
    path: String,
    reply: oneshot::Sender<Verdict>,
}

/// What the HTTP handler shares with [`CallbackServer::receive`]: where
/// redirects go, and whether the login's redirect has been taken.
#[derive(Clone)]
struct Slot {
    arrivals: mpsc::Sender<Arrival>,
    handled: Arc<AtomicBool>,
}

/// Listens on `http://127.0.0.1:<port>/callback` for one redirect.
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// use std::time::Duration;
/// let server = mcp_auth_client::CallbackServer::bind(3030).await.unwrap();
/// println!("redirect_uri = {}", server.redirect_uri());
/// let (params, _url) = server.wait("expected-state", Duration::from_secs(300)).await.unwrap();
/// println!("code: {:?}", params.code);
/// # }
/// ```
///
/// The first request to `/callback` with the login's `state` is the
/// redirect; its page says what the client made of it (see
/// [`CallbackServer::receive`]). Requests with another `state` get a
/// failure page and change nothing; later requests are told the login was
/// already handled. Dropping the server stops the listener.
pub struct CallbackServer {
    addr: SocketAddr,
    rx: mpsc::Receiver<Arrival>,
    handled: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    issuer: Option<IssuerCheck>,
}

impl std::fmt::Debug for CallbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackServer")
            .field("addr", &self.addr)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Escapes text for HTML: a value from the query never becomes markup.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{t}</h1><p>{b}</p></body></html>",
        t = escape(title),
        b = escape(body)
    ))
}

fn failed_page(reason: &str) -> Html<String> {
    page(
        "Sign-in failed",
        &format!("{reason}. You can close this window and return to the terminal."),
    )
}

fn verdict_page(verdict: Verdict) -> Html<String> {
    match verdict {
        Verdict::SignedIn => page(
            "Signed in",
            "You can close this window and return to the terminal.",
        ),
        Verdict::Failed(reason) => failed_page(&reason),
    }
}

async fn callback(
    State(slot): State<Slot>,
    uri: http::Uri,
    Query(params): Query<CallbackParams>,
) -> Html<String> {
    if slot.handled.load(Ordering::SeqCst) {
        return page(
            "Already handled",
            "This login already received its redirect. You can close this window and return \
             to the terminal.",
        );
    }
    let (reply, verdict) = oneshot::channel();
    let arrival = Arrival {
        params,
        path: uri.to_string(),
        reply,
    };
    if slot.arrivals.send(arrival).await.is_err() {
        return failed_page("the client is no longer waiting for this login");
    }
    match tokio::time::timeout(VERDICT_TIMEOUT, verdict).await {
        Ok(Ok(v)) => verdict_page(v),
        Ok(Err(_)) => failed_page("the client stopped before finishing the login"),
        Err(_) => page(
            "Sign-in not confirmed",
            "The client did not finish the login in time. Check the terminal.",
        ),
    }
}

/// Why a redirect was refused (or none arrived). `Display` is short and
/// safe to show: values from the query are clipped and escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Nothing arrived in time.
    #[error("no redirect from the authorization server within {0:?}")]
    Timeout(Duration),
    /// The authorization server reported an error.
    #[error("the authorization server refused: {0}")]
    Refused(String),
    /// `state` did not match (a forged or stale redirect). Such a request
    /// is shown this on its page; [`CallbackServer::receive`] goes on
    /// waiting for the login's own redirect.
    #[error("the redirect's state does not match this login (possible CSRF); refused")]
    State,
    /// No code in the redirect.
    #[error("the redirect carried no authorization code")]
    NoCode,
    /// RFC 9207: the redirect names another issuer (a mix-up attack, or a
    /// misconfigured authorization server).
    #[error(
        "the redirect comes from issuer {received}, not the expected {expected} (RFC 9207); refused"
    )]
    IssuerMismatch {
        /// The issuer of the authorization server's metadata.
        expected: String,
        /// The redirect's `iss` (clipped, escaped).
        received: String,
    },
    /// RFC 9207: the authorization server announces `iss` in its responses,
    /// and this redirect has none.
    #[error(
        "the redirect carries no issuer (iss) although {expected} announces one (RFC 9207); refused"
    )]
    IssuerMissing {
        /// The issuer of the authorization server's metadata.
        expected: String,
    },
    /// RFC 9207: the redirect's issuer cannot be checked, the authorization
    /// server's metadata names none.
    #[error(
        "the redirect's issuer (iss) cannot be checked: the authorization server's metadata names no issuer; refused"
    )]
    IssuerUnverifiable,
}

/// A redirect that passed [`CallbackServer::receive`]'s checks. The
/// browser's request is still open: it gets "Signed in" from
/// [`Redirect::succeeded`], "Sign-in failed" from [`Redirect::failed`] or
/// when the `Redirect` is dropped.
pub struct Redirect {
    params: CallbackParams,
    url: String,
    reply: Option<oneshot::Sender<Verdict>>,
}

impl std::fmt::Debug for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the code: not shown.
        f.debug_struct("Redirect")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Redirect {
    /// What the authorization server sent.
    pub fn params(&self) -> &CallbackParams {
        &self.params
    }

    /// The full callback URL (`http://127.0.0.1:<port>/callback?code=…`),
    /// e.g. for rmcp's `handle_callback_url`. It carries the code: do not
    /// log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The login succeeded: the page says "Signed in".
    pub fn succeeded(mut self) {
        self.answer(Verdict::SignedIn);
    }

    /// The login failed after all (e.g. the token exchange): the page says
    /// "Sign-in failed" and `reason` (escaped; keep it short and free of
    /// secrets).
    pub fn failed(mut self, reason: &str) {
        self.answer(Verdict::Failed(reason.to_owned()));
    }

    fn answer(&mut self, verdict: Verdict) {
        if let Some(reply) = self.reply.take() {
            // The browser may have gone away; nothing to tell then.
            let _ = reply.send(verdict);
        }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        self.answer(Verdict::Failed(
            "the client stopped before finishing the login".into(),
        ));
    }
}

impl CallbackServer {
    /// Binds `127.0.0.1:port` (0: any free port).
    pub async fn bind(port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (arrivals, rx) = mpsc::channel(8);
        let handled = Arc::new(AtomicBool::new(false));
        let slot = Slot {
            arrivals,
            handled: handled.clone(),
        };
        let app = Router::new()
            .route("/callback", get(callback))
            .with_state(slot);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            rx,
            handled,
            task,
            issuer: None,
        })
    }

    /// Also checks the redirect's RFC 9207 `iss` (by default it is not
    /// checked here).
    #[must_use]
    pub fn with_issuer_check(mut self, check: IssuerCheck) -> Self {
        self.issuer = Some(check);
        self
    }

    /// `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.addr.port())
    }

    /// Waits for the redirect with `expected_state` and checks it: an error
    /// from the authorization server, `iss` (with
    /// [`CallbackServer::with_issuer_check`]), the code. A refused redirect
    /// gets a "Sign-in failed" page and the error; an accepted one is
    /// returned with the browser still waiting for the client's final word
    /// (see [`Redirect`]). Requests with another `state` (or none) get a
    /// failure page ([`CallbackError::State`]) and the wait goes on.
    pub async fn receive(
        mut self,
        expected_state: &str,
        timeout: Duration,
    ) -> Result<Redirect, CallbackError> {
        // A timeout too long to add to now (`Duration::MAX`) is a day's wait
        // for the purpose: a login is over long before.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400));
        let arrival = loop {
            let arrival = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(a)) => a,
                _ => return Err(CallbackError::Timeout(timeout)),
            };
            if arrival.params.state.as_deref() == Some(expected_state) {
                self.handled.store(true, Ordering::SeqCst);
                break arrival;
            }
            tracing::info!("ignored a request to the callback without this login's state");
            let _ = arrival
                .reply
                .send(Verdict::Failed(CallbackError::State.to_string()));
        };
        let Arrival {
            params,
            path,
            reply,
        } = arrival;
        if let Err(e) = self.judge(&params) {
            tracing::info!(error = %e, "refused the authorization redirect");
            let _ = reply.send(Verdict::Failed(e.to_string()));
            return Err(e);
        }
        Ok(Redirect {
            params,
            url: format!("http://127.0.0.1:{}{path}", self.addr.port()),
            reply: Some(reply),
        })
    }

    /// [`CallbackServer::receive`], then "Signed in" at once. Returns the
    /// parameters and the full callback URL.
    pub async fn wait(
        self,
        expected_state: &str,
        timeout: Duration,
    ) -> Result<(CallbackParams, String), CallbackError> {
        let mut redirect = self.receive(expected_state, timeout).await?;
        let params = std::mem::take(&mut redirect.params);
        let url = std::mem::take(&mut redirect.url);
        redirect.succeeded();
        Ok((params, url))
    }

    /// The checks after `state` (which [`CallbackServer::receive`] makes
    /// first, so nothing here is believed from a request that lacks it).
    fn judge(&self, params: &CallbackParams) -> Result<(), CallbackError> {
        if let Some(e) = &params.error {
            return Err(CallbackError::Refused(format!(
                "{}{}",
                clip(e),
                params
                    .error_description
                    .as_deref()
                    .map(|d| format!(" ({})", clip(d)))
                    .unwrap_or_default()
            )));
        }
        if let Some(check) = &self.issuer {
            check.verify(params.iss.as_deref())?;
        }
        if params.code.is_none() {
            return Err(CallbackError::NoCode);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GET with a deadline, so a handler that never answers fails the
    /// test instead of hanging it.
    async fn get(url: &str) -> String {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    #[test]
    fn query_text_never_becomes_markup() {
        let Html(p) = page("t", "<script>alert(1)</script>&\"'");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
    }

    #[tokio::test]
    async fn checks_state_and_reports_errors() {
        let s = CallbackServer::bind(0).await.unwrap();
        let url = format!("{}?code=abc&state=s1", s.redirect_uri());
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        let body = get(&url).await;
        assert!(body.contains("Signed in"));
        let (p, full) = waiter.await.unwrap().unwrap();
        assert_eq!(p.code.as_deref(), Some("abc"));
        assert!(full.ends_with("/callback?code=abc&state=s1"), "{full}");

        let s = CallbackServer::bind(0).await.unwrap();
        let url = format!(
            "{}?error=access_denied&error_description=%3Cb%3Enope%3C%2Fb%3E&state=s1",
            s.redirect_uri()
        );
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        let body = get(&url).await;
        assert!(
            body.contains("&lt;b&gt;nope") && !body.contains("<b>nope"),
            "{body}"
        );
        assert!(!body.contains("Signed in"), "{body}");
        assert!(matches!(
            waiter.await.unwrap(),
            Err(CallbackError::Refused(_))
        ));

        let s = CallbackServer::bind(0).await.unwrap();
        assert_eq!(
            s.wait("s1", Duration::from_millis(50)).await.unwrap_err(),
            CallbackError::Timeout(Duration::from_millis(50))
        );
        // A wait too long to add to the clock waits (an attack pass: it
        // panicked, `--login-timeout 18446744073709551615`).
        let s = CallbackServer::bind(0).await.unwrap();
        let long = tokio::time::timeout(Duration::from_millis(100), s.wait("s1", Duration::MAX));
        assert!(long.await.is_err(), "still waiting");
    }

    /// Issue #13: a redirect the client refuses must not be greeted with
    /// "Signed in". A request without the login's `state` (any web page
    /// can send the browser to the callback) neither ends the login, even
    /// with an `error`, nor uses up its redirect.
    #[tokio::test]
    async fn a_request_without_the_logins_state_changes_nothing() {
        let s = CallbackServer::bind(0).await.unwrap();
        let base = s.redirect_uri();
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        for query in [
            "code=abc&state=forged",
            "error=unauthorized_client",
            "error=access_denied&state=forged",
            "code=abc",
        ] {
            let body = get(&format!("{base}?{query}")).await;
            assert!(!body.contains("Signed in"), "{query}: {body}");
            assert!(body.contains("Sign-in failed"), "{query}: {body}");
            assert!(body.contains("state does not match"), "{query}: {body}");
        }
        assert!(!waiter.is_finished(), "still waiting for the login");
        let body = get(&format!("{base}?code=right&state=s1")).await;
        assert!(body.contains("Signed in"), "{body}");
        let (p, _) = waiter.await.unwrap().unwrap();
        assert_eq!(p.code.as_deref(), Some("right"));
    }

    fn as_check() -> IssuerCheck {
        IssuerCheck::new(Some("https://as.example".into()), true)
    }

    /// Issue #13: RFC 9207 `iss` is checked before the browser is answered.
    #[tokio::test]
    async fn a_wrong_or_missing_iss_gets_a_failure_page() {
        // Another issuer (escaped on the page).
        let s = CallbackServer::bind(0)
            .await
            .unwrap()
            .with_issuer_check(as_check());
        let url = format!(
            "{}?code=abc&state=s1&iss=https%3A%2F%2Fevil.example%2F%3Cb%3E",
            s.redirect_uri()
        );
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        let body = get(&url).await;
        assert!(!body.contains("Signed in"), "{body}");
        assert!(body.contains("Sign-in failed"), "{body}");
        assert!(
            body.contains("https://evil.example/&lt;b&gt;") && !body.contains("<b>"),
            "{body}"
        );
        assert_eq!(
            waiter.await.unwrap().unwrap_err(),
            CallbackError::IssuerMismatch {
                expected: "https://as.example".into(),
                received: "https://evil.example/<b>".into(),
            }
        );

        // No `iss` although the metadata announces it.
        let s = CallbackServer::bind(0)
            .await
            .unwrap()
            .with_issuer_check(as_check());
        let url = format!("{}?code=abc&state=s1", s.redirect_uri());
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        let body = get(&url).await;
        assert!(!body.contains("Signed in"), "{body}");
        assert!(body.contains("Sign-in failed"), "{body}");
        assert!(matches!(
            waiter.await.unwrap(),
            Err(CallbackError::IssuerMissing { .. })
        ));

        // The right one still signs in.
        let s = CallbackServer::bind(0)
            .await
            .unwrap()
            .with_issuer_check(as_check());
        let url = format!(
            "{}?code=abc&state=s1&iss=https%3A%2F%2Fas.example",
            s.redirect_uri()
        );
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        let body = get(&url).await;
        assert!(body.contains("Signed in"), "{body}");
        let (p, _) = waiter.await.unwrap().unwrap();
        assert_eq!(p.iss.as_deref(), Some("https://as.example"));
    }

    /// The page waits for the client's final word (the token exchange).
    #[tokio::test]
    async fn the_page_reflects_the_clients_verdict() {
        for (outcome, expected) in [
            (Some(true), "Signed in"),
            (Some(false), "Sign-in failed"),
            (None, "Sign-in failed"),
        ] {
            let s = CallbackServer::bind(0).await.unwrap();
            let url = format!("{}?code=abc&state=s1", s.redirect_uri());
            let browser = tokio::spawn(async move { get(&url).await });
            let redirect = s.receive("s1", Duration::from_secs(5)).await.unwrap();
            assert_eq!(redirect.params().code.as_deref(), Some("abc"));
            assert!(redirect.url().ends_with("/callback?code=abc&state=s1"));
            // The browser is not answered before the verdict.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!browser.is_finished());
            match outcome {
                Some(true) => redirect.succeeded(),
                Some(false) => redirect.failed("the token exchange <failed>"),
                None => drop(redirect),
            }
            let body = browser.await.unwrap();
            assert!(body.contains(expected), "{body}");
            if expected != "Signed in" {
                assert!(!body.contains("Signed in"), "{body}");
            }
            if outcome == Some(false) {
                assert!(body.contains("the token exchange &lt;failed&gt;"), "{body}");
            }
        }
    }

    #[tokio::test]
    async fn a_second_request_is_not_told_signed_in() {
        let s = CallbackServer::bind(0).await.unwrap();
        let url = format!("{}?code=abc&state=s1", s.redirect_uri());
        let first = tokio::spawn({
            let url = url.clone();
            async move { get(&url).await }
        });
        let redirect = s.receive("s1", Duration::from_secs(5)).await.unwrap();
        // The listener stopped with `receive`; a late request is refused or
        // told the login was handled, never "Signed in".
        if let Ok(r) = reqwest::get(&url).await {
            let body = r.text().await.unwrap();
            assert!(!body.contains("Signed in"), "{body}");
        }
        redirect.succeeded();
        assert!(first.await.unwrap().contains("Signed in"));
    }

    #[test]
    fn issuer_check_mirrors_rfc_9207() {
        let required = as_check();
        assert_eq!(required.verify(Some("https://as.example")), Ok(()));
        assert!(matches!(
            required.verify(Some("https://as.example/")),
            Err(CallbackError::IssuerMismatch { .. })
        ));
        assert!(matches!(
            required.verify(None),
            Err(CallbackError::IssuerMissing { .. })
        ));
        let optional = IssuerCheck::new(Some("https://as.example".into()), false);
        assert_eq!(optional.verify(None), Ok(()));
        assert!(optional.verify(Some("https://evil.example")).is_err());
        let unknown = IssuerCheck::default();
        assert_eq!(unknown.verify(None), Ok(()));
        assert_eq!(
            unknown.verify(Some("https://as.example")),
            Err(CallbackError::IssuerUnverifiable)
        );
        assert_eq!(
            IssuerCheck::new(None, true).verify(None),
            Err(CallbackError::IssuerUnverifiable)
        );
    }

    #[test]
    fn issuer_check_from_metadata() {
        let metadata: AuthorizationMetadata = serde_json::from_value(serde_json::json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/authorize",
            "token_endpoint": "https://as.example/token",
            "authorization_response_iss_parameter_supported": true,
        }))
        .unwrap();
        assert_eq!(IssuerCheck::from_metadata(&metadata), as_check());
    }

    #[test]
    fn messages_clip_and_escape_query_values() {
        assert_eq!(clip("a\u{1b}[31mb\u{202e}"), "a\\u{1b}[31mb\\u{202e}");
        let long = "x".repeat(500);
        let c = clip(&long);
        assert_eq!(c.chars().count(), CLIP + 1);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn debug_hides_the_code() {
        let p = CallbackParams {
            code: Some("secret-code".into()),
            ..CallbackParams::default()
        };
        assert!(!format!("{p:?}").contains("secret-code"));
    }
}
