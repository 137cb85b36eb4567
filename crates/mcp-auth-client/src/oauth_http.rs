//! [`OAuthHttp`]: the HTTP client rmcp's `AuthorizationManager` sends its
//! OAuth requests with (discovery, registration, token requests), so that
//! token requests carry a DPoP proof (RFC 9449 §5) once the authorization
//! server's metadata offers DPoP.
//!
//! It keeps what rmcp's own client guarantees: each request's redirect
//! policy (at most 10 redirects when following), a 30 s timeout, bodies up
//! to 1 MiB, and the same address policy: a host named by discovered
//! metadata may resolve to a loopback or private address only when the
//! MCP server's URL names one of that class; link-local and other reserved
//! addresses (cloud metadata services) never; proxies from `HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY` are not filtered.
//!
//! Token requests (POSTs to the token endpoint given to
//! [`OAuthHttp::enable_dpop`]) get a `DPoP` header: a proof for that URL,
//! with the authorization server's latest nonce. A `400` (or `401`) with
//! `error=use_dpop_nonce` and a new `DPoP-Nonce` is retried once with a
//! new proof carrying it (§8), never more.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use http::{Method, StatusCode};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rmcp::transport::auth::{
    OAuthHttpClient, OAuthHttpClientError, OAuthHttpClientFuture, OAuthHttpRedirectPolicy,
    OAuthHttpRequest,
};
use url::{Host, Url};

use crate::{
    DpopKey,
    dpop::{DPOP_HEADER, DPOP_NONCE_HEADER, USE_DPOP_NONCE},
};

/// Whole-request timeout unless the request names one.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body.
const MAX_BODY: usize = 1024 * 1024;
/// Most redirects followed.
const MAX_REDIRECTS: usize = 10;
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];
const CLOUD_METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.azure.internal",
];

/// Why an OAuth request was not sent or its answer not read.
#[derive(Debug, thiserror::Error)]
enum OAuthHttpError {
    #[error("OAuth request to `{0}` refused: address not allowed for this MCP server")]
    DisallowedAddress(String),
    #[error("OAuth HTTP response body exceeds {MAX_BODY} bytes")]
    TooLarge,
    #[error("cannot make a DPoP proof for the token request: {0}")]
    Proof(crate::DpopKeyError),
}

/// The address policy for the OAuth requests of the MCP server at a URL
/// (see the [module docs](self)), for HTTP clients other than
/// [`OAuthHttp`]: a reqwest DNS resolver, and [`SharedPolicy::allows_url`]
/// for URLs that name an address.
#[derive(Clone)]
pub(crate) struct SharedPolicy(Arc<AddressPolicy>);

impl SharedPolicy {
    /// The policy for the MCP server at `server_url`, with the proxies of
    /// the environment unfiltered.
    pub(crate) fn for_server(server_url: &str) -> Result<Self, String> {
        let server = Url::parse(server_url).map_err(|e| format!("the server URL: {e}"))?;
        Ok(Self(Arc::new(
            AddressPolicy::new(&server)
                .with_proxy_hosts(PROXY_VARIABLES.iter().filter_map(|v| std::env::var(v).ok())),
        )))
    }

    /// Whether `url` may be asked (its address, or a name never resolved).
    pub(crate) fn allows_url(&self, url: &Url) -> bool {
        self.0.allows_url(url)
    }

    /// The resolver that drops addresses the policy does not allow.
    pub(crate) fn resolver(&self) -> Arc<AddressPolicy> {
        self.0.clone()
    }
}

impl PartialEq for SharedPolicy {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedPolicy {}

impl std::fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressPolicy")
    }
}

/// The OAuth HTTP client. See the [module docs](self).
pub(crate) struct OAuthHttp {
    follow: reqwest::Client,
    stop: reqwest::Client,
    /// Follows redirects only within the first URL's origin.
    same_origin: reqwest::Client,
    policy: Arc<AddressPolicy>,
    dpop: Mutex<Option<TokenDpop>>,
}

/// DPoP for one token endpoint.
#[derive(Clone)]
struct TokenDpop {
    token_endpoint: Url,
    key: DpopKey,
}

impl OAuthHttp {
    /// A client for the OAuth requests of the MCP server at `server_url`.
    pub(crate) fn new(server_url: &str) -> Result<Self, String> {
        let policy = SharedPolicy::for_server(server_url)?.0;
        let redirects = policy.clone();
        let follow = reqwest::redirect::Policy::custom(move |attempt| {
            if !redirects.allows_url(attempt.url()) {
                let e = OAuthHttpError::DisallowedAddress(attempt.url().to_string());
                attempt.error(e)
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let redirects = policy.clone();
        let same_origin = reqwest::redirect::Policy::custom(move |attempt| {
            let origin = attempt.previous().first().map(Url::origin);
            if !redirects.allows_url(attempt.url()) {
                let e = OAuthHttpError::DisallowedAddress(attempt.url().to_string());
                attempt.error(e)
            } else if origin.is_none_or(|o| o != attempt.url().origin()) {
                attempt.error("a redirect to another origin")
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let build = |redirect| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(redirect)
                .dns_resolver(policy.clone())
                .build()
                .map_err(|e| e.to_string())
        };
        Ok(Self {
            follow: build(follow)?,
            stop: build(reqwest::redirect::Policy::none())?,
            same_origin: build(same_origin)?,
            policy,
            dpop: Mutex::new(None),
        })
    }

    /// From now on, POSTs to `token_endpoint` carry a proof signed with
    /// `key`.
    pub(crate) fn enable_dpop(&self, token_endpoint: &str, key: DpopKey) -> Result<(), String> {
        let token_endpoint =
            Url::parse(token_endpoint).map_err(|e| format!("the token endpoint: {e}"))?;
        tracing::debug!(key = key.fingerprint(), "DPoP proofs on token requests");
        if let Ok(mut dpop) = self.dpop.lock() {
            *dpop = Some(TokenDpop {
                token_endpoint,
                key,
            });
        }
        Ok(())
    }

    /// The DPoP settings when `request` is a token request.
    fn dpop_for(&self, request: &http::Request<Vec<u8>>) -> Option<TokenDpop> {
        if request.method() != Method::POST {
            return None;
        }
        let dpop = self.dpop.lock().ok()?.clone()?;
        let url = Url::parse(&request.uri().to_string()).ok()?;
        let same = |a: &Url, b: &Url| {
            a.scheme() == b.scheme()
                && a.host() == b.host()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path() == b.path()
        };
        same(&url, &dpop.token_endpoint).then_some(dpop)
    }

    /// GETs the JSON document at `url` (redirects as `redirect` says,
    /// within `timeout`); `None` when it cannot be fetched, does not answer
    /// 2xx or is not a `T` (said at debug level).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        redirect: OAuthHttpRedirectPolicy,
        timeout: Duration,
    ) -> Option<T> {
        let client = match redirect {
            OAuthHttpRedirectPolicy::Stop => &self.stop,
            _ => &self.follow,
        };
        self.get_json_with(client, url, timeout).await
    }

    /// [`get_json`](Self::get_json) following redirects only within
    /// `url`'s origin: a document that must be what that origin publishes.
    pub(crate) async fn get_json_from_origin<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Option<T> {
        self.get_json_with(&self.same_origin, url, timeout).await
    }

    async fn get_json_with<T: serde::de::DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Option<T> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .ok()?;
        let response = match self.send_with(client, request, Some(timeout)).await {
            Ok(r) => r,
            Err(e) => {
                let url = crate::failure::shown_url(url);
                tracing::debug!(%url, error = %e, "document not fetched");
                return None;
            }
        };
        if !response.status().is_success() {
            let url = crate::failure::shown_url(url);
            tracing::debug!(%url, status = response.status().as_u16(), "document not served");
            return None;
        }
        serde_json::from_slice(response.body()).ok()
    }

    /// Sends `request` as its policy says; a token request with a proof,
    /// retried once on `use_dpop_nonce`.
    pub(crate) async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        redirect: OAuthHttpRedirectPolicy,
        timeout: Option<Duration>,
    ) -> Result<http::Response<Vec<u8>>, OAuthHttpClientError> {
        let Some(dpop) = self.dpop_for(&request) else {
            return self.send_once(request, redirect, timeout).await;
        };
        let (parts, body) = request.into_parts();
        let url = dpop.token_endpoint.as_str();
        let mut retried = false;
        loop {
            let sent_nonce = dpop.key.nonce_for(url);
            let proof = dpop
                .key
                .proof("POST", url, None, sent_nonce.as_deref())
                .map_err(|e| Box::new(OAuthHttpError::Proof(e)) as OAuthHttpClientError)?;
            let mut request = http::Request::from_parts(parts.clone(), body.clone());
            request.headers_mut().insert(
                DPOP_HEADER,
                http::HeaderValue::from_str(&proof)
                    .map_err(|e| Box::new(e) as OAuthHttpClientError)?,
            );
            let response = self.send_once(request, redirect, timeout).await?;
            let nonce = response
                .headers()
                .get(DPOP_NONCE_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|n| dpop.key.remember_nonce(url, n))
                .map(str::to_owned);
            let wants_nonce = matches!(
                response.status(),
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
            ) && serde_json::from_slice::<serde_json::Value>(response.body())
                .ok()
                .and_then(|b| b.get("error")?.as_str().map(|e| e == USE_DPOP_NONCE))
                .unwrap_or(false);
            if wants_nonce && !retried && nonce.is_some() && nonce != sent_nonce {
                tracing::debug!(
                    "the authorization server wants a DPoP nonce: retrying the token request once with it"
                );
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    async fn send_once(
        &self,
        request: http::Request<Vec<u8>>,
        redirect: OAuthHttpRedirectPolicy,
        timeout: Option<Duration>,
    ) -> Result<http::Response<Vec<u8>>, OAuthHttpClientError> {
        // A request with a body (dynamic registration) follows redirects
        // only within its origin: a 307 would send the body on, and the
        // answer (a client secret) could come back from anywhere, over
        // plain http too.
        let client = match redirect {
            OAuthHttpRedirectPolicy::Stop => &self.stop,
            _ if request.method() != Method::GET => &self.same_origin,
            _ => &self.follow,
        };
        self.send_with(client, request, timeout).await
    }

    /// Sends `request` (no DPoP) with `client`.
    async fn send_with(
        &self,
        client: &reqwest::Client,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<Vec<u8>>, OAuthHttpClientError> {
        let mut request =
            reqwest::Request::try_from(request).map_err(|e| Box::new(e) as OAuthHttpClientError)?;
        if !self.policy.allows_url(request.url()) {
            let e = OAuthHttpError::DisallowedAddress(request.url().to_string());
            tracing::warn!("{e}");
            return Err(Box::new(e));
        }
        if let Some(t) = timeout {
            *request.timeout_mut() = Some(t);
        }
        let response = client
            .execute(request)
            .await
            .map_err(|e| Box::new(e) as OAuthHttpClientError)?;
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(Box::new(OAuthHttpError::TooLarge));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Box::new(e) as OAuthHttpClientError)?;
            if chunk.len() > MAX_BODY - body.len() {
                return Err(Box::new(OAuthHttpError::TooLarge));
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| Box::new(e) as OAuthHttpClientError)
    }
}

impl OAuthHttpClient for OAuthHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        let OAuthHttpRequest {
            request,
            redirect_policy,
            timeout,
            ..
        } = request;
        Box::pin(self.send(request, redirect_policy, timeout))
    }
}

/// Where an address may lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressClass {
    Public,
    Loopback,
    Private,
    /// Link-local, multicast, unspecified, reserved: never.
    Blocked,
}

impl AddressClass {
    fn of(addr: IpAddr) -> Self {
        let addr = match addr {
            IpAddr::V6(v6) => embedded_ipv4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match addr {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                if v4.is_loopback() {
                    Self::Loopback
                } else if v4.is_private() || (o[0] == 100 && (64..=127).contains(&o[1])) {
                    Self::Private
                } else if v4.is_link_local()
                    || v4.is_broadcast()
                    || v4.is_unspecified()
                    || v4.is_multicast()
                    || o[0] == 0
                    || (o[0] == 198 && matches!(o[1], 18 | 19))
                {
                    Self::Blocked
                } else {
                    Self::Public
                }
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                if v6.is_loopback() {
                    Self::Loopback
                } else if (s[0] & 0xfe00) == 0xfc00 {
                    Self::Private
                } else if v6.is_unspecified()
                    || v6.is_multicast()
                    || (s[0] & 0xffc0) == 0xfe80
                    || s[..2] == [0x2001, 0]
                    || s[..3] == [0x64, 0xff9b, 1]
                {
                    Self::Blocked
                } else {
                    Self::Public
                }
            }
        }
    }
}

/// The IPv4 address in an IPv4-mapped, IPv4-compatible, NAT64 or 6to4
/// address.
fn embedded_ipv4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d, e, f, g, h] = addr.segments();
    let low = Ipv4Addr::from((u32::from(g) << 16) | u32::from(h));
    match [a, b, c, d, e, f] {
        [0, 0, 0, 0, 0, 0xffff] | [0x64, 0xff9b, 0, 0, 0, 0] => Some(low),
        [0, 0, 0, 0, 0, 0] if !addr.is_loopback() && !addr.is_unspecified() => Some(low),
        [0x2002, ..] => Some(Ipv4Addr::from((u32::from(b) << 16) | u32::from(c))),
        _ => None,
    }
}

/// The address classes OAuth requests may reach, from the MCP server's
/// URL; a DNS resolver that drops every other address.
pub(crate) struct AddressPolicy {
    server_ip: Option<IpAddr>,
    allowed: Vec<AddressClass>,
    unfiltered_hosts: Vec<String>,
}

impl AddressPolicy {
    fn new(server: &Url) -> Self {
        let (server_ip, allowed) = match server.host() {
            Some(Host::Ipv4(v4)) => (Some(IpAddr::V4(v4)), vec![AddressClass::of(v4.into())]),
            Some(Host::Ipv6(v6)) => (Some(IpAddr::V6(v6)), vec![AddressClass::of(v6.into())]),
            Some(Host::Domain(d)) if is_localhost(d) => (None, vec![AddressClass::Loopback]),
            _ => (None, Vec::new()),
        };
        Self {
            server_ip,
            allowed,
            unfiltered_hosts: Vec::new(),
        }
    }

    fn with_proxy_hosts(mut self, proxies: impl IntoIterator<Item = String>) -> Self {
        self.unfiltered_hosts
            .extend(proxies.into_iter().filter_map(|p| {
                let p = if p.contains("://") {
                    p
                } else {
                    format!("http://{p}")
                };
                Url::parse(&p).ok()?.host_str().map(normalize_host)
            }));
        self
    }

    fn allows(&self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Loopback | AddressClass::Private => self.allowed.contains(&class),
            AddressClass::Blocked => false,
        }
    }

    /// A URL's host, when it is an address or a name that is never
    /// resolved for OAuth (cloud metadata services).
    fn allows_url(&self, url: &Url) -> bool {
        match url.host() {
            Some(Host::Ipv4(v4)) => {
                self.server_ip == Some(v4.into()) || self.allows(AddressClass::of(v4.into()))
            }
            Some(Host::Ipv6(v6)) => {
                self.server_ip == Some(v6.into()) || self.allows(AddressClass::of(v6.into()))
            }
            Some(Host::Domain(d)) => !CLOUD_METADATA_HOSTS.contains(&normalize_host(d).as_str()),
            None => false,
        }
    }
}

impl Resolve for AddressPolicy {
    fn resolve(&self, name: Name) -> Resolving {
        let host = normalize_host(name.as_str());
        let unfiltered = self.unfiltered_hosts.contains(&host);
        let allowed: Vec<AddressClass> = self.allowed.clone();
        Box::pin(async move {
            let lookup = host.clone();
            let resolved: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await??
                    .collect();
            if unfiltered {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
            let policy = AddressPolicy {
                server_ip: None,
                allowed,
                unfiltered_hosts: Vec::new(),
            };
            let kept: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| policy.allows(AddressClass::of(a.ip())))
                .collect();
            if kept.is_empty() {
                tracing::warn!(host = %host, "no address of this host is allowed for OAuth requests");
                return Err(format!(
                    "no address of `{host}` is allowed for OAuth requests from this MCP server"
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

fn is_localhost(domain: &str) -> bool {
    let d = normalize_host(domain);
    d == "localhost" || d.ends_with(".localhost")
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::{Router, http::HeaderMap, response::IntoResponse, routing::post};
    use mcp_auth_jwt::DpopVerifier;

    use super::*;

    /// One token request the fake received: the proof's nonce as the
    /// server's verifier read it (`Err` when refused).
    type Seen = Result<Option<String>, String>;

    /// A token endpoint that verifies proofs with the server-side verifier
    /// and wants `nonce` (always, with `always`).
    async fn token_endpoint(nonce: &'static str, always: bool) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let at = Arc::new(Mutex::new(String::new()));
        let (log, url) = (seen.clone(), at.clone());
        let app = Router::new().route(
            "/token",
            post(move |headers: HeaderMap| {
                let (log, url) = (log.clone(), url.clone());
                async move {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let url = url.lock().unwrap().clone();
                    let verdict = headers
                        .get("dpop")
                        .ok_or_else(|| "no proof".to_owned())
                        .and_then(|p| {
                            DpopVerifier::default()
                                .verify(p.to_str().unwrap(), "POST", &url, None, None, now)
                                .map_err(|e| e.to_string())
                        })
                        .map(|p| p.nonce);
                    log.lock().unwrap().push(verdict.clone());
                    // Always: a new nonce with every challenge.
                    let count = log.lock().unwrap().len();
                    let next = if always {
                        format!("{nonce}-{count}")
                    } else {
                        nonce.to_owned()
                    };
                    match verdict {
                        Ok(n) if !always && n.as_deref() == Some(nonce) => (
                            StatusCode::OK,
                            [("dpop-nonce", "later")],
                            r#"{"access_token":"at","token_type":"DPoP"}"#,
                        )
                            .into_response(),
                        _ => (
                            StatusCode::BAD_REQUEST,
                            [("dpop-nonce", next)],
                            r#"{"error":"use_dpop_nonce","error_description":"nonce"}"#,
                        )
                            .into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *at.lock().unwrap() = format!("http://{addr}/token");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/token"), seen)
    }

    fn token_request(url: &str) -> http::Request<Vec<u8>> {
        http::Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"grant_type=authorization_code&code=c".to_vec())
            .unwrap()
    }

    /// The token request carries a proof the server's verifier accepts;
    /// a `use_dpop_nonce` answer is retried once with the nonce, and the
    /// nonce of the success answer is kept.
    #[tokio::test]
    async fn token_requests_get_a_proof_and_one_nonce_retry() {
        let (url, seen) = token_endpoint("as-nonce", false).await;
        let http = OAuthHttp::new("http://127.0.0.1:1/mcp").unwrap();
        let key = DpopKey::generate().unwrap();
        http.enable_dpop(&url, key.clone()).unwrap();
        let r = http
            .send(token_request(&url), OAuthHttpRedirectPolicy::Stop, None)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            *seen.lock().unwrap(),
            [Ok(None), Ok(Some("as-nonce".to_owned()))]
        );
        assert_eq!(key.nonce_for(&url).as_deref(), Some("later"));
    }

    /// An authorization server that keeps asking, with a new nonce each
    /// time, gets one retry, and its answer goes back to rmcp as it is.
    #[tokio::test]
    async fn the_nonce_retry_happens_once() {
        let (url, seen) = token_endpoint("as-nonce", true).await;
        let http = OAuthHttp::new("http://127.0.0.1:1/mcp").unwrap();
        http.enable_dpop(&url, DpopKey::generate().unwrap())
            .unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            http.send(token_request(&url), OAuthHttpRedirectPolicy::Stop, None),
        )
        .await
        .expect("the client stopped retrying")
        .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            *seen.lock().unwrap(),
            [Ok(None), Ok(Some("as-nonce-1".to_owned()))]
        );
    }

    /// Without DPoP enabled, or to another URL, or not a POST: no proof.
    #[tokio::test]
    async fn only_token_requests_get_a_proof() {
        let (url, seen) = token_endpoint("n", false).await;
        let http = OAuthHttp::new("http://127.0.0.1:1/mcp").unwrap();
        http.send(token_request(&url), OAuthHttpRedirectPolicy::Stop, None)
            .await
            .unwrap();
        http.enable_dpop(&format!("{url}-other"), DpopKey::generate().unwrap())
            .unwrap();
        http.send(token_request(&url), OAuthHttpRedirectPolicy::Stop, None)
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [Err("no proof".to_owned()), Err("no proof".to_owned())]
        );
    }

    #[test]
    fn addresses_follow_the_server_urls_class() {
        let public = AddressPolicy::new(&Url::parse("https://mcp.example.com/mcp").unwrap());
        let loopback = AddressPolicy::new(&Url::parse("http://127.0.0.1:8001/mcp").unwrap());
        let localhost = AddressPolicy::new(&Url::parse("http://localhost:8001/mcp").unwrap());
        let private = AddressPolicy::new(&Url::parse("http://10.1.2.3/mcp").unwrap());
        let url = |u: &str| Url::parse(u).unwrap();
        for (policy, allowed, refused) in [
            (
                &public,
                vec!["https://as.example/t", "https://8.8.8.8/t"],
                vec![
                    "http://127.0.0.1/t",
                    "http://10.0.0.1/t",
                    "http://169.254.169.254/latest",
                    "http://[::ffff:127.0.0.1]/t",
                    "http://metadata.google.internal/x",
                    "http://[fe80::1]/t",
                ],
            ),
            (
                &loopback,
                vec!["http://127.0.0.1:9/t", "http://[::1]/t"],
                vec!["http://10.0.0.1/t", "http://169.254.169.254/t"],
            ),
            (
                &localhost,
                vec!["http://127.0.0.1:9/t"],
                vec!["http://192.168.0.1/t"],
            ),
            (
                &private,
                vec!["http://10.1.2.3/t", "http://192.168.0.1/t"],
                vec!["http://127.0.0.1/t"],
            ),
        ] {
            for u in allowed {
                assert!(policy.allows_url(&url(u)), "{u}");
            }
            for u in refused {
                assert!(!policy.allows_url(&url(u)), "{u}");
            }
        }
    }

    /// A POST (dynamic registration) follows a redirect within its origin,
    /// not to another one (an attack pass: a 307 elsewhere, over plain
    /// http too, was followed with the body, and the client secret
    /// answered from there).
    #[tokio::test]
    async fn a_post_follows_redirects_within_its_origin_only() {
        use axum::{Router, response::Redirect, routing::post};
        let (there, here) = (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
        let elsewhere = format!("http://{}/register", there.local_addr().unwrap());
        let base = format!("http://{}", here.local_addr().unwrap());
        tokio::spawn(async move {
            let app = Router::new().route("/register", post(|| async { "{\"client_id\":\"x\"}" }));
            axum::serve(there, app).await.unwrap()
        });
        tokio::spawn(async move {
            let app = Router::new()
                .route(
                    "/away",
                    post(move || async move { Redirect::temporary(&elsewhere) }),
                )
                .route(
                    "/moved",
                    post(|| async { Redirect::temporary("/register") }),
                )
                .route("/register", post(|| async { "{\"client_id\":\"y\"}" }));
            axum::serve(here, app).await.unwrap()
        });
        let http = OAuthHttp::new(&format!("{base}/mcp")).unwrap();
        let register = |path: &str| {
            http::Request::builder()
                .method("POST")
                .uri(format!("{base}{path}"))
                .body(b"{}".to_vec())
                .unwrap()
        };
        let e = http
            .send(register("/away"), OAuthHttpRedirectPolicy::Follow, None)
            .await
            .unwrap_err();
        let chain = crate::error_chain(e.as_ref());
        assert!(chain.contains("another origin"), "{chain}");
        let r = http
            .send(register("/moved"), OAuthHttpRedirectPolicy::Follow, None)
            .await
            .unwrap();
        assert_eq!(r.body(), br#"{"client_id":"y"}"#);
    }

    /// A name that resolves only to a refused address is refused at
    /// resolution (DNS rebinding to a private or metadata address).
    #[tokio::test]
    async fn resolved_addresses_are_filtered() {
        let http = OAuthHttp::new("https://mcp.example.com/mcp").unwrap();
        let request = http::Request::builder()
            .method("GET")
            .uri("http://localhost:1/.well-known/oauth-authorization-server")
            .body(Vec::new())
            .unwrap();
        let e = http
            .send(request, OAuthHttpRedirectPolicy::Stop, None)
            .await
            .unwrap_err();
        let chain = crate::error_chain(e.as_ref());
        assert!(chain.contains("is allowed for OAuth requests"), "{chain}");
    }
}
