//! Bounded JSON fetching: http(s) only, timeouts, size limit, no redirects.

use std::time::Duration;

use futures::StreamExt;
use url::Url;

/// Limits for fetching issuer documents (discovery, JWKS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the whole request, body included.
    pub total_timeout: Duration,
    /// Largest accepted body.
    pub max_bytes: usize,
    /// Allow plain `http` to hosts other than loopback. Off by default:
    /// anyone on the path could then serve their own keys.
    pub allow_insecure_http: bool,
}

impl FetchLimits {
    /// The default [`total_timeout`](Self::total_timeout): 10 s.
    pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Self::DEFAULT_TOTAL_TIMEOUT,
            max_bytes: 512 * 1024,
            allow_insecure_http: false,
        }
    }
}

/// Why a document could not be fetched. Never contains credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Not an https URL (plain http is allowed to loopback only, unless
    /// [`FetchLimits::allow_insecure_http`]).
    #[error("{0} is not an https URL (plain http only to loopback)")]
    Scheme(String),
    /// A non-success status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body exceeded the limit.
    #[error("{0} sent more than the allowed size")]
    TooLarge(String),
    /// A network error or timeout.
    #[error("{url}: {reason}")]
    Network {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The body is not JSON.
    #[error("{0} did not send valid JSON")]
    NotJson(String),
}

/// Whether `url` may be fetched: https, or http to a loopback host (or
/// anywhere when `allow_insecure_http`).
///
/// ```
/// use mcp_auth_jwt::fetch::is_secure_url;
/// let u = |s: &str| url::Url::parse(s).unwrap();
/// assert!(is_secure_url(&u("https://as.example/jwks"), false));
/// assert!(is_secure_url(&u("http://127.0.0.1:8080/jwks"), false));
/// assert!(!is_secure_url(&u("http://as.example/jwks"), false));
/// assert!(is_secure_url(&u("http://as.example/jwks"), true));
/// ```
pub fn is_secure_url(url: &Url, allow_insecure_http: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => {
            allow_insecure_http
                || match url.host() {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                }
        }
        _ => false,
    }
}

/// `url` without credentials, query or fragment, for logs and errors.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Builds the HTTP client used for issuer documents.
pub fn http_client(limits: FetchLimits) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-auth-jwt/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            // Only fails when the TLS backend cannot start; there is no
            // safer client to fall back to, so say so loudly.
            tracing::error!(error = %e, "cannot build the bounded HTTP client");
            reqwest::Client::new()
        })
}

/// GETs `url` and parses the body as JSON, within `limits`.
pub async fn get_json(
    client: &reqwest::Client,
    url: &Url,
    limits: FetchLimits,
) -> Result<serde_json::Value, FetchError> {
    let shown = redact(url);
    if !is_secure_url(url, limits.allow_insecure_http) {
        return Err(FetchError::Scheme(shown));
    }
    let resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| network(&shown, e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: shown,
            status: status.as_u16(),
        });
    }
    json_body(resp, url, limits.max_bytes).await
}

/// Reads the body of `resp` (an answer from `url`, named in errors without
/// credentials) as JSON, refusing one over `max_bytes` as it streams in.
pub async fn json_body(
    resp: reqwest::Response,
    url: &Url,
    max_bytes: usize,
) -> Result<serde_json::Value, FetchError> {
    let shown = redact(url);
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooLarge(shown));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| network(&shown, e))?;
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(shown));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| FetchError::NotJson(shown))
}

fn network(shown: &str, e: reqwest::Error) -> FetchError {
    FetchError::Network {
        url: shown.to_owned(),
        reason: if e.is_timeout() {
            "timed out".to_owned()
        } else {
            e.without_url().to_string()
        },
    }
}
