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
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_bytes: 512 * 1024,
        }
    }
}

/// Why a document could not be fetched. Never contains credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Not an http(s) URL.
    #[error("{0} is not an http(s) URL")]
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

/// Builds the HTTP client used for issuer documents.
pub fn http_client(limits: FetchLimits) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcp-auth-jwt/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// GETs `url` and parses the body as JSON, within `limits`.
pub async fn get_json(
    client: &reqwest::Client,
    url: &Url,
    limits: FetchLimits,
) -> Result<serde_json::Value, FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme(url.to_string()));
    }
    let shown = url.as_str().to_owned();
    let net = |e: reqwest::Error| FetchError::Network {
        url: shown.clone(),
        reason: if e.is_timeout() {
            "timed out".to_owned()
        } else {
            e.without_url().to_string()
        },
    };
    let resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(net)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: shown,
            status: status.as_u16(),
        });
    }
    if resp
        .content_length()
        .is_some_and(|n| n > limits.max_bytes as u64)
    {
        return Err(FetchError::TooLarge(shown));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(net)?;
        if body.len() + chunk.len() > limits.max_bytes {
            return Err(FetchError::TooLarge(shown));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| FetchError::NotJson(shown))
}
