//! The loopback OAuth redirect target.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Query, State},
    response::Html,
    routing::get,
};
use tokio::sync::{Mutex, oneshot};

/// What the authorization server sent back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
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

type Slot = Arc<Mutex<Option<oneshot::Sender<(CallbackParams, String)>>>>;

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
pub struct CallbackServer {
    addr: SocketAddr,
    rx: oneshot::Receiver<(CallbackParams, String)>,
    task: tokio::task::JoinHandle<()>,
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

async fn callback(
    State(slot): State<Slot>,
    uri: http::Uri,
    Query(params): Query<CallbackParams>,
) -> Html<String> {
    let response = match (&params.error, &params.code) {
        (Some(e), _) => page(
            "Authorization failed",
            &format!(
                "{e}: {}. You can close this window.",
                params
                    .error_description
                    .as_deref()
                    .unwrap_or("no description")
            ),
        ),
        (None, Some(_)) => page(
            "Signed in",
            "You can close this window and return to the terminal.",
        ),
        (None, None) => page(
            "Unexpected request",
            "No authorization code in this request.",
        ),
    };
    if let Some(tx) = slot.lock().await.take() {
        let _ = tx.send((params, uri.to_string()));
    }
    response
}

/// Why no code arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Nothing arrived in time.
    #[error("no redirect from the authorization server within {0:?}")]
    Timeout(Duration),
    /// The authorization server reported an error.
    #[error("the authorization server refused: {0}")]
    Refused(String),
    /// `state` did not match (a forged or stale redirect).
    #[error("the redirect's state does not match this login (possible CSRF); refused")]
    State,
    /// No code in the redirect.
    #[error("the redirect carried no authorization code")]
    NoCode,
}

impl CallbackServer {
    /// Binds `127.0.0.1:port` (0: any free port).
    pub async fn bind(port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let slot: Slot = Arc::new(Mutex::new(Some(tx)));
        let app = Router::new()
            .route("/callback", get(callback))
            .with_state(slot);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, rx, task })
    }

    /// `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.addr.port())
    }

    /// Waits for the redirect; checks `state` and errors. Returns the
    /// parameters and the full callback URL.
    pub async fn wait(
        self,
        expected_state: &str,
        timeout: Duration,
    ) -> Result<(CallbackParams, String), CallbackError> {
        let got = tokio::time::timeout(timeout, self.rx).await;
        self.task.abort();
        let (params, path) = match got {
            Ok(Ok(v)) => v,
            _ => return Err(CallbackError::Timeout(timeout)),
        };
        if let Some(e) = &params.error {
            return Err(CallbackError::Refused(format!(
                "{e}{}",
                params
                    .error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )));
        }
        if params.state.as_deref() != Some(expected_state) {
            return Err(CallbackError::State);
        }
        if params.code.is_none() {
            return Err(CallbackError::NoCode);
        }
        let full = format!("http://127.0.0.1:{}{path}", self.addr.port());
        Ok((params, full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(body.contains("Signed in"));
        let (p, full) = waiter.await.unwrap().unwrap();
        assert_eq!(p.code.as_deref(), Some("abc"));
        assert!(full.ends_with("/callback?code=abc&state=s1"), "{full}");

        let s = CallbackServer::bind(0).await.unwrap();
        let url = format!("{}?code=abc&state=forged", s.redirect_uri());
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        reqwest::get(&url).await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap_err(), CallbackError::State);

        let s = CallbackServer::bind(0).await.unwrap();
        let url = format!(
            "{}?error=access_denied&error_description=%3Cb%3Enope%3C%2Fb%3E&state=s1",
            s.redirect_uri()
        );
        let waiter = tokio::spawn(async move { s.wait("s1", Duration::from_secs(5)).await });
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(
            body.contains("&lt;b&gt;nope") && !body.contains("<b>nope"),
            "{body}"
        );
        assert!(matches!(
            waiter.await.unwrap(),
            Err(CallbackError::Refused(_))
        ));

        let s = CallbackServer::bind(0).await.unwrap();
        assert_eq!(
            s.wait("s1", Duration::from_millis(50)).await.unwrap_err(),
            CallbackError::Timeout(Duration::from_millis(50))
        );
    }
}
