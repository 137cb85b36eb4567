//! Client ID metadata documents (MCP authorization spec, "Client ID Metadata
//! Documents"): the client id is an https URL, and the document found there
//! is the client's metadata. Fetched behind an SSRF guard.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use url::{Host, Url};

use super::net::{AddressClass, IpNetwork, classify_address};
use super::redirect::is_uri_byte;
use super::registration::{RegistrationPolicy, field, parse_metadata};
use super::{ClientInfo, ClientKind, TokenEndpointAuthMethod, unix_now};

/// Where, how long and how much the metadata-document fetcher may fetch.
///
/// The defaults refuse every non-public address; tests serving documents
/// on loopback set [`allow_loopback`](Self::allow_loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchGuard {
    /// Allow loopback addresses, and plain `http` to a loopback host
    /// (`127.0.0.1`, `[::1]`, `localhost`). Off by default; for tests and
    /// local development.
    pub allow_loopback: bool,
    /// Networks let through although their addresses would be refused (an
    /// internal client registry, say). Empty by default.
    pub allowed_networks: Vec<IpNetwork>,
    /// Time allowed to connect. Default 3 s.
    pub connect_timeout: Duration,
    /// Time allowed for everything: name resolution, connection, response,
    /// body. Default 5 s.
    pub total_timeout: Duration,
    /// Largest accepted document, in bytes. Default 5 KiB.
    pub max_bytes: usize,
    /// Shortest time a fetched document is considered fresh, whatever its
    /// `Cache-Control` says (`no-store`, `max-age=0`). Default 60 s.
    pub min_cache_age: Duration,
    /// Longest time a fetched document is considered fresh, whatever its
    /// `Cache-Control` says; also the age when it says nothing. Default
    /// 1 h.
    pub max_cache_age: Duration,
    /// Limits on the document's fields (its
    /// [`client_lifetime`](RegistrationPolicy::client_lifetime) is not
    /// used).
    pub metadata: RegistrationPolicy,
}

impl Default for FetchGuard {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            allowed_networks: Vec::new(),
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            min_cache_age: Duration::from_secs(60),
            max_cache_age: Duration::from_secs(3600),
            metadata: RegistrationPolicy::default(),
        }
    }
}

impl FetchGuard {
    /// Whether the fetcher may connect to `ip`: yes if it is in
    /// [`allowed_networks`](Self::allowed_networks), or a loopback address
    /// and [`allow_loopback`](Self::allow_loopback) is set, or a public
    /// unicast address ([`classify_address`]); otherwise the reason.
    ///
    /// ```
    /// use mcp_auth_proxy::clients::{AddressClass, FetchGuard};
    /// let mut guard = FetchGuard::default();
    /// let metadata_service = "169.254.169.254".parse().unwrap();
    /// assert_eq!(guard.check_address(metadata_service), Err(AddressClass::LinkLocal));
    /// assert!(guard.check_address("8.8.8.8".parse().unwrap()).is_ok());
    /// guard.allowed_networks.push("10.20.0.0/16".parse().unwrap());
    /// assert!(guard.check_address("10.20.1.1".parse().unwrap()).is_ok());
    /// assert!(guard.check_address("10.21.1.1".parse().unwrap()).is_err());
    /// ```
    pub fn check_address(&self, ip: IpAddr) -> Result<(), AddressClass> {
        let ip = ip.to_canonical();
        if self.allowed_networks.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match classify_address(ip) {
            None => Ok(()),
            Some(AddressClass::Loopback) if self.allow_loopback => Ok(()),
            Some(class) => Err(class),
        }
    }
}

/// Why a client ID metadata document was not accepted. Says what was
/// refused; never contains the response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CimdError {
    /// The client id is not an acceptable document URL (the text says which
    /// rule it breaks).
    #[error("the client_id is not an acceptable metadata document URL: it {0}")]
    InvalidUrl(&'static str),
    /// The host name did not resolve.
    #[error("the metadata document host name did not resolve")]
    Resolve,
    /// The host is, or resolves to, an address the guard refuses.
    #[error("refused to fetch the metadata document: {0} address")]
    ForbiddenAddress(AddressClass),
    /// The total time limit passed.
    #[error("fetching the metadata document timed out")]
    Timeout,
    /// Connection, TLS or transfer failure.
    #[error("could not fetch the metadata document: {0}")]
    Network(String),
    /// The server answered with a redirect, which is never followed.
    #[error(
        "the metadata document URL answered with a redirect (HTTP {0}); redirects are not followed"
    )]
    Redirect(u16),
    /// The server answered with a status other than 200.
    #[error("the metadata document URL answered HTTP {0}")]
    Status(u16),
    /// The response is not `application/json`.
    #[error("the metadata document is not served as application/json")]
    ContentType,
    /// The document exceeds [`FetchGuard::max_bytes`] (the limit).
    #[error("the metadata document is too large (limit {0} bytes)")]
    TooLarge(usize),
    /// The body is not valid JSON.
    #[error("the metadata document is not valid JSON")]
    NotJson,
    /// The document's `client_id` is not exactly its URL.
    #[error("the metadata document's client_id is not exactly its URL")]
    ClientIdMismatch,
    /// The document breaks a metadata rule (the text says which; it names
    /// fields, never their values).
    #[error("the metadata document is invalid: {0}")]
    InvalidDocument(String),
    /// The document asks for a feature the facade does not support.
    #[error("the metadata document asks for {0}, which is not supported")]
    Unsupported(&'static str),
}

impl CimdError {
    /// Whether the failure may pass with the document unchanged: the host
    /// name did not resolve, the host could not be reached or the fetch
    /// timed out, or it answered HTTP 408, 429 or 5xx. Every other failure
    /// is an answer about the document itself (404 or 410, a redirect, a
    /// document that is not acceptable, an address the guard refuses).
    ///
    /// ```
    /// use mcp_auth_proxy::clients::CimdError;
    /// assert!(CimdError::Timeout.is_transient());
    /// assert!(CimdError::Status(503).is_transient());
    /// assert!(!CimdError::Status(404).is_transient());
    /// assert!(!CimdError::ClientIdMismatch.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Resolve | Self::Timeout | Self::Network(_) => true,
            Self::Status(status) => matches!(status, 408 | 429 | 500..),
            _ => false,
        }
    }
}

/// Whether `client_id` names a metadata document (an `https://` or
/// `http://` URL) rather than a registered client. Dynamic client ids never
/// contain `:`, so the two cannot be confused.
pub fn is_metadata_document_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Fetches and validates the client ID metadata document at `client_id`.
///
/// The URL must: be at most `guard.metadata.max_string_len` bytes of RFC
/// 3986 characters; be `https` (plain `http` only to `127.0.0.1`, `[::1]`
/// or `localhost` with [`FetchGuard::allow_loopback`]); have no fragment,
/// no username or password, no `.`/`..` path segments (also
/// percent-encoded); be in canonical form (what `url::Url` serializes it
/// to: lowercase host, no default port); have a path other than `/`.
///
/// The SSRF guard: the host is resolved here (an IP-literal host is used
/// as is); every resolved address must pass [`FetchGuard::check_address`];
/// the request then connects only to those vetted addresses (the name is
/// pinned to them, so a DNS answer changing between check and connect is
/// never used), through no proxy, following no redirect, within
/// [`FetchGuard::total_timeout`] for everything, and reads at most
/// [`FetchGuard::max_bytes`] (streamed; a larger `Content-Length` is
/// refused before reading). Only HTTP 200 with an `application/json`
/// content type is accepted.
///
/// The document must be a JSON object whose `client_id` is exactly
/// `client_id`; must not contain `client_secret` or
/// `client_secret_expires_at`; `token_endpoint_auth_method` must be absent
/// or `none` (`private_key_jwt` is refused as unsupported, shared-secret
/// methods as invalid); the other fields follow the rules of
/// [`register`](super::register) under `guard.metadata`.
///
/// The client is public (`none`), of kind
/// [`MetadataDocument`](ClientKind::MetadataDocument), `registered_at` the
/// fetch time and `expires_at` when the document must be fetched again:
/// its `Cache-Control` `max-age` (`no-store`/`no-cache`: 0) clamped to
/// [`min_cache_age`](FetchGuard::min_cache_age)..=[`max_cache_age`](FetchGuard::max_cache_age).
/// Nothing is cached here; see [`MetadataDocumentCache`].
///
/// ```no_run
/// # async fn f() -> Result<(), mcp_auth_proxy::clients::CimdError> {
/// use mcp_auth_proxy::clients::{FetchGuard, fetch_metadata_document};
/// let client = fetch_metadata_document(
///     "https://app.example.com/oauth/client-metadata.json",
///     &FetchGuard::default(),
/// )
/// .await?;
/// assert_eq!(client.client_id, "https://app.example.com/oauth/client-metadata.json");
/// # Ok(()) }
/// ```
pub async fn fetch_metadata_document(
    client_id: &str,
    guard: &FetchGuard,
) -> Result<ClientInfo, CimdError> {
    let url = check_client_id_url(client_id, guard)?;
    let result = tokio::time::timeout(guard.total_timeout, async {
        let addrs = resolve_vetted(&url, guard).await?;
        let fetched = fetch_pinned(&url, &addrs, guard).await?;
        document_to_client(
            client_id,
            &fetched.body,
            fetched.fresh_for,
            guard,
            unix_now(),
        )
    })
    .await
    .unwrap_or(Err(CimdError::Timeout));
    if let Err(e) = &result {
        tracing::debug!(client_id = %url, error = %e, "client metadata document refused");
    }
    result
}

/// The URL rules of [`fetch_metadata_document`].
fn check_client_id_url(client_id: &str, guard: &FetchGuard) -> Result<Url, CimdError> {
    use CimdError::InvalidUrl as bad;
    if client_id.len() > guard.metadata.max_string_len {
        return Err(bad("is too long"));
    }
    if client_id.is_empty() || !client_id.bytes().all(is_uri_byte) {
        return Err(bad("contains characters not allowed in a URL"));
    }
    if client_id.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    let url = Url::parse(client_id).map_err(|_| bad("is not an absolute URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain a username or password"));
    }
    match url.scheme() {
        "https" => {}
        "http" if guard.allow_loopback && is_loopback_host(&url) => {}
        _ => return Err(bad("must use https")),
    }
    if has_dot_segment(client_id) {
        return Err(bad("must not contain . or .. path segments"));
    }
    if url.as_str() != client_id {
        return Err(bad(
            "must be in canonical form (lowercase scheme and host, no default port, normalized path)",
        ));
    }
    if url.path() == "/" {
        return Err(bad("must contain a path"));
    }
    Ok(url)
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether the raw path of `uri` has a `.` or `..` segment, plain or
/// percent-encoded.
fn has_dot_segment(uri: &str) -> bool {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let Some(start) = after_scheme.find('/') else {
        return false;
    };
    let path = &after_scheme[start..];
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    path.split('/').any(|seg| {
        matches!(
            seg.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    })
}

/// Resolves the URL's host and vets every address.
async fn resolve_vetted(url: &Url, guard: &FetchGuard) -> Result<Vec<SocketAddr>, CimdError> {
    let port = url
        .port_or_known_default()
        .ok_or(CimdError::InvalidUrl("has no port"))?;
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| CimdError::Resolve)?
            .collect(),
        None => return Err(CimdError::InvalidUrl("has no host")),
    };
    if addrs.is_empty() {
        return Err(CimdError::Resolve);
    }
    for a in &addrs {
        guard
            .check_address(a.ip())
            .map_err(CimdError::ForbiddenAddress)?;
    }
    Ok(addrs)
}

/// A fetched document and how long it stays fresh.
#[derive(Debug)]
struct Fetched {
    body: Value,
    fresh_for: Duration,
}

/// GETs `url`, connecting only to `addrs` (already vetted).
async fn fetch_pinned(
    url: &Url,
    addrs: &[SocketAddr],
    guard: &FetchGuard,
) -> Result<Fetched, CimdError> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .connect_timeout(guard.connect_timeout)
        .timeout(guard.total_timeout)
        .user_agent(concat!("mcp-auth-proxy/", env!("CARGO_PKG_VERSION")));
    if let Some(Host::Domain(name)) = url.host() {
        // Pin the name to the vetted addresses: no second resolution.
        builder = builder.resolve_to_addrs(name, addrs);
    }
    let client = builder
        .build()
        .map_err(|_| CimdError::Network("the HTTP client could not be built".to_owned()))?;
    let resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(network_error)?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(CimdError::Redirect(status.as_u16()));
    }
    if status != reqwest::StatusCode::OK {
        return Err(CimdError::Status(status.as_u16()));
    }
    let json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(CimdError::ContentType);
    }
    if resp
        .content_length()
        .is_some_and(|n| n > guard.max_bytes as u64)
    {
        return Err(CimdError::TooLarge(guard.max_bytes));
    }
    let fresh_for = freshness(resp.headers(), guard);
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(network_error)?;
        if body.len() + chunk.len() > guard.max_bytes {
            return Err(CimdError::TooLarge(guard.max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice(&body).map_err(|_| CimdError::NotJson)?;
    Ok(Fetched { body, fresh_for })
}

/// A reqwest error as a [`CimdError`], without URL or body: the error and
/// its causes (connection refused, TLS failure, …), bounded.
fn network_error(e: reqwest::Error) -> CimdError {
    if e.is_timeout() {
        return CimdError::Timeout;
    }
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason.truncate(reason.floor_char_boundary(300));
    CimdError::Network(reason)
}

/// How long the response stays fresh: `Cache-Control` `max-age` (the
/// smallest if repeated; `no-store`/`no-cache`: 0; none: the maximum),
/// clamped to the guard's bounds.
fn freshness(headers: &reqwest::header::HeaderMap, guard: &FetchGuard) -> Duration {
    let mut max_age: Option<u64> = None;
    let mut no_store = false;
    for v in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(v) = v.to_str() else { continue };
        for d in v.split(',') {
            let d = d.trim().to_ascii_lowercase();
            if d == "no-store" || d == "no-cache" {
                no_store = true;
            } else if let Some(n) = d.strip_prefix("max-age=")
                && let Ok(n) = n.trim_matches('"').parse::<u64>()
            {
                max_age = Some(max_age.map_or(n, |m| m.min(n)));
            }
        }
    }
    let secs = if no_store {
        0
    } else {
        max_age.unwrap_or(u64::MAX)
    };
    Duration::from_secs(secs)
        .max(guard.min_cache_age)
        .min(guard.max_cache_age)
}

/// The document rules of [`fetch_metadata_document`].
fn document_to_client(
    client_id: &str,
    doc: &Value,
    fresh_for: Duration,
    guard: &FetchGuard,
    now: u64,
) -> Result<ClientInfo, CimdError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| CimdError::InvalidDocument("it is not a JSON object".to_owned()))?;
    if field(obj, "client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(CimdError::ClientIdMismatch);
    }
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(CimdError::InvalidDocument(
            "it must not contain a client secret".to_owned(),
        ));
    }
    match field(obj, "token_endpoint_auth_method").map(Value::as_str) {
        None | Some(Some("none")) => {}
        Some(Some("private_key_jwt")) => {
            return Err(CimdError::Unsupported(
                "private_key_jwt client authentication",
            ));
        }
        Some(Some(m)) if m.starts_with("client_secret") => {
            return Err(CimdError::InvalidDocument(
                "token_endpoint_auth_method must not use a shared secret".to_owned(),
            ));
        }
        Some(_) => {
            return Err(CimdError::InvalidDocument(
                "token_endpoint_auth_method must be none".to_owned(),
            ));
        }
    }
    let md = parse_metadata(obj, &guard.metadata)
        .map_err(|e| CimdError::InvalidDocument(e.description().to_owned()))?;
    Ok(ClientInfo {
        client_id: client_id.to_owned(),
        client_secret_sha256: None,
        redirect_uris: md.redirect_uris,
        client_name: md.client_name.unwrap_or_else(|| client_id.to_owned()),
        client_uri: md.client_uri,
        logo_uri: md.logo_uri,
        token_endpoint_auth_method: TokenEndpointAuthMethod::None,
        auth_method_named: true,
        grant_types: md.grant_types,
        scope: md.scope,
        kind: ClientKind::MetadataDocument,
        registered_at: now,
        expires_at: Some(now.saturating_add(fresh_for.as_secs())),
    })
}

/// A bounded in-memory cache of fetched metadata documents, each kept until
/// its [`ClientInfo::expires_at`] (the document's bounded max age).
///
/// Failures are not cached, and concurrent misses for one URL each fetch;
/// rate-limit the endpoints that trigger fetches.
///
/// ```
/// use mcp_auth_proxy::clients::{ClientInfo, ClientKind, MetadataDocumentCache};
/// let cache = MetadataDocumentCache::new(100);
/// let mut doc = ClientInfo::preregistered("https://app.example/client.json", "App", vec![]);
/// doc.kind = ClientKind::MetadataDocument;
/// doc.expires_at = Some(1_060);
/// cache.insert(doc, 1_000);
/// assert!(cache.get("https://app.example/client.json", 1_059).is_some());
/// assert!(cache.get("https://app.example/client.json", 1_060).is_none());
/// ```
#[derive(Debug)]
pub struct MetadataDocumentCache {
    capacity: usize,
    entries: Mutex<HashMap<String, ClientInfo>>,
}

impl MetadataDocumentCache {
    /// A cache of at most `capacity` documents.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClientInfo>> {
        // A panic while holding the lock leaves a consistent map.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached client, unless absent or expired at `now`.
    pub fn get(&self, client_id: &str, now: u64) -> Option<ClientInfo> {
        let mut map = self.lock();
        match map.get(client_id) {
            Some(c) if !c.is_expired(now) => Some(c.clone()),
            Some(_) => {
                map.remove(client_id);
                None
            }
            None => None,
        }
    }

    /// Caches `info` (ignored when already expired at `now` or the capacity
    /// is 0). When full: expired entries go first, then the one expiring
    /// soonest.
    pub fn insert(&self, info: ClientInfo, now: u64) {
        if self.capacity == 0 || info.is_expired(now) {
            return;
        }
        let mut map = self.lock();
        if !map.contains_key(&info.client_id) && map.len() >= self.capacity {
            map.retain(|_, c| !c.is_expired(now));
            if map.len() >= self.capacity {
                let soonest = map
                    .iter()
                    .min_by_key(|(_, c)| c.expires_at.unwrap_or(u64::MAX))
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    map.remove(&k);
                }
            }
        }
        map.insert(info.client_id.clone(), info);
    }

    /// Forgets `client_id`.
    pub fn remove(&self, client_id: &str) {
        self.lock().remove(client_id);
    }

    /// How many documents are cached (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The cached client for `client_id`, or else
    /// [`fetch_metadata_document`] and cache the result.
    pub async fn get_or_fetch(
        &self,
        client_id: &str,
        guard: &FetchGuard,
    ) -> Result<ClientInfo, CimdError> {
        if let Some(c) = self.get(client_id, unix_now()) {
            return Ok(c);
        }
        let info = fetch_metadata_document(client_id, guard).await?;
        self.insert(info.clone(), unix_now());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};

    fn loopback() -> FetchGuard {
        FetchGuard {
            allow_loopback: true,
            ..FetchGuard::default()
        }
    }

    #[test]
    fn client_id_url_rules() {
        let ok = [
            ("https://app.example/client.json", false),
            ("https://app.example:8443/oauth/client.json?v=2", false),
            ("https://[2606:4700::1]/c", false),
            ("http://127.0.0.1:8080/client.json", true),
            ("http://localhost:8080/client.json", true),
            ("http://[::1]:8080/client.json", true),
        ];
        for (id, needs_loopback) in ok {
            let g = if needs_loopback {
                loopback()
            } else {
                FetchGuard::default()
            };
            assert!(check_client_id_url(id, &g).is_ok(), "{id}");
        }
        let bad = [
            ("http://127.0.0.1:8080/client.json", "must use https"),
            ("http://app.example/client.json", "must use https"),
            (
                "https://app.example/client.json#x",
                "must not contain a fragment",
            ),
            (
                "https://u:p@app.example/client.json",
                "must not contain a username or password",
            ),
            (
                "https://app.example/a/../client.json",
                "must not contain . or .. path segments",
            ),
            (
                "https://app.example/%2E/client.json",
                "must not contain . or .. path segments",
            ),
            ("https://app.example/", "must contain a path"),
            (
                "https://app.example",
                "must be in canonical form (lowercase scheme and host, no default port, normalized path)",
            ),
            (
                "https://App.example/c",
                "must be in canonical form (lowercase scheme and host, no default port, normalized path)",
            ),
            (
                "https://app.example/c d",
                "contains characters not allowed in a URL",
            ),
            ("wss://app.example/c", "must use https"),
        ];
        for (id, why) in bad {
            assert_eq!(
                check_client_id_url(id, &FetchGuard::default()),
                Err(CimdError::InvalidUrl(why)),
                "{id}"
            );
        }
        // Dots that are not whole segments are fine.
        assert!(!has_dot_segment(
            "https://app.example/.well-known/client.json"
        ));
        assert!(!has_dot_segment("https://app.example/a..b/c?x=/../"));
        assert!(has_dot_segment("https://app.example/a/.."));
    }

    #[test]
    fn freshness_follows_cache_control_within_bounds() {
        let g = FetchGuard::default();
        let secs = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            }
            freshness(&h, &g).as_secs()
        };
        assert_eq!(secs(&[]), 3600);
        assert_eq!(secs(&["max-age=300"]), 300);
        assert_eq!(secs(&["public, Max-Age=\"600\""]), 600);
        assert_eq!(secs(&["max-age=10"]), 60);
        assert_eq!(secs(&["max-age=99999999"]), 3600);
        assert_eq!(secs(&["max-age=300", "max-age=200"]), 200);
        assert_eq!(secs(&["max-age=300, no-store"]), 60);
        assert_eq!(secs(&["no-cache"]), 60);
        assert_eq!(secs(&["max-age=abc"]), 3600);
    }

    #[tokio::test]
    async fn connections_go_to_the_vetted_address_only() {
        // `.invalid` never resolves (RFC 6761): the fetch can only reach
        // the server through the pinned, vetted address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let id = format!("http://cimd-pinned.invalid:{}/client.json", addr.port());
        let body = serde_json::json!({"client_id": id, "redirect_uris": ["https://a.example/cb"]});
        let router = axum::Router::new().route(
            "/client.json",
            axum::routing::get(move || async move { axum::Json(body) }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let url = Url::parse(&id).unwrap();
        let fetched = fetch_pinned(&url, &[addr], &FetchGuard::default())
            .await
            .unwrap();
        assert_eq!(fetched.body["client_id"], id.as_str());
        let client = document_to_client(
            &id,
            &fetched.body,
            fetched.fresh_for,
            &FetchGuard::default(),
            10,
        )
        .unwrap();
        assert_eq!(client.expires_at, Some(10 + 3600));
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let g = FetchGuard::default();
        let f = fetch_metadata_document("https://a.example/c", &g);
        send(&f);
        let cache = MetadataDocumentCache::new(1);
        let f = cache.get_or_fetch("https://a.example/c", &g);
        send(&f);
    }
}
