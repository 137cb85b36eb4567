//! The [`Authenticator`] trait and the request view it works on.

use std::{future::Future, net::SocketAddr, sync::Arc};

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::{AuthError, ChallengeScheme, Principal};

/// What an authenticator may look at: the request's method, URI, headers and
/// the peer's address. The body is never read for authentication.
///
/// Cloning copies the header map; the HTTP layer hands out a reference, so the
/// copy happens only for closure authenticators, which take the request by
/// value.
///
/// `Debug` shows the values only of headers known to carry no credential
/// (`Host`, `Content-Type`, `Accept`, `User-Agent`, `Origin`, the MCP
/// protocol headers, …) and of no others, whatever they are called (a
/// custom API-key header included), and leaves out the query string, so
/// logging a request view (e.g. through `#[tracing::instrument]`) cannot
/// leak a credential.
#[derive(Clone, Default)]
pub struct AuthRequest {
    /// The HTTP method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// All request headers.
    pub headers: HeaderMap,
    /// The TCP peer, when the server knows it.
    pub peer: Option<SocketAddr>,
    /// The thumbprint (RFC 7638) of the key a verified DPoP proof of this
    /// request was signed with. Set only by the proof checker
    /// (`mcp-auth-strategies`' `DpopAuthenticator`) after every proof check
    /// passed; a token presented with the `DPoP` scheme is accepted only
    /// when its `cnf.jkt` equals it ([`crate::dpop::check_binding`]), so
    /// without a proof checker the `DPoP` scheme is refused.
    pub dpop_jkt: Option<String>,
}

/// Headers whose values `Debug` shows: none of them carries a credential.
/// Any other header's value is redacted, since a custom check may read its
/// credential from a header of any name.
const SHOWN: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "content-length",
    "content-type",
    "forwarded",
    "host",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "origin",
    "te",
    "traceparent",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'a>(&'a HeaderMap);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| {
                        let shown = if SHOWN.contains(&k.as_str()) {
                            v.to_str().unwrap_or("<binary>")
                        } else {
                            "<redacted>"
                        };
                        (k.as_str(), shown)
                    }))
                    .finish()
            }
        }
        // The path only: a client may put a key in the query, and an
        // absolute-form target may carry user information.
        let uri = match self.uri.query() {
            Some(_) => format!("{}?<redacted>", self.uri.path()),
            None => self.uri.path().to_owned(),
        };
        f.debug_struct("AuthRequest")
            .field("method", &self.method)
            .field("uri", &uri)
            .field("headers", &Headers(&self.headers))
            .field("peer", &self.peer)
            .field("dpop_jkt", &self.dpop_jkt)
            .finish()
    }
}

impl AuthRequest {
    /// Builds a request view from HTTP request parts (the peer is read from
    /// a `SocketAddr` extension when one is present).
    pub fn from_parts(parts: &http::request::Parts, peer: Option<SocketAddr>) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            peer,
            dpop_jkt: None,
        }
    }

    /// A builder, mostly for tests and examples.
    ///
    /// ```
    /// let req = mcp_auth_core::AuthRequest::builder()
    ///     .method(http::Method::POST)
    ///     .uri("/mcp")
    ///     .header("x-api-key", "k")
    ///     .build();
    /// assert_eq!(req.headers["x-api-key"], "k");
    /// ```
    pub fn builder() -> AuthRequestBuilder {
        AuthRequestBuilder::default()
    }

    /// The bearer token of the `Authorization` header (RFC 6750 §2.1).
    ///
    /// `Ok(None)` when there is no `Authorization` header or it uses another
    /// scheme; [`AuthError::InvalidRequest`] when it is malformed (duplicated,
    /// not ASCII, no token, characters outside `token68`). The scheme is
    /// matched case-insensitively. Tokens in the query string or body are
    /// never looked at.
    ///
    /// ```
    /// use mcp_auth_core::AuthRequest;
    /// let req = AuthRequest::builder().header("authorization", "bearer abc.def-ghi_~+/==").build();
    /// assert_eq!(req.bearer_token().unwrap(), Some("abc.def-ghi_~+/=="));
    /// let req = AuthRequest::builder().header("authorization", "Bearer a b").build();
    /// assert!(req.bearer_token().is_err());
    /// // Malformed, not absent: an empty value, anything but spaces after the scheme.
    /// for bad in ["", " ", "Bearer\tabc", "Bearer,abc", "Bearer"] {
    ///     let req = AuthRequest::builder().header("authorization", bad).build();
    ///     assert!(req.bearer_token().is_err(), "{bad:?}");
    /// }
    /// // Another scheme is none of this method's business.
    /// let req = AuthRequest::builder().header("authorization", "Basic dTpw").build();
    /// assert_eq!(req.bearer_token().unwrap(), None);
    /// ```
    pub fn bearer_token(&self) -> Result<Option<&str>, AuthError> {
        match self.access_token()? {
            Some((crate::TokenScheme::Bearer, token)) => Ok(Some(token)),
            _ => Ok(None),
        }
    }

    /// The access token in `Authorization` and how it was presented:
    /// `Bearer <token>` (RFC 6750) or `DPoP <token>` (RFC 9449 §7.1, where a
    /// `DPoP` proof header comes with it). `Ok(None)` without the header or
    /// with another scheme; `Err` (`invalid_request`) for a malformed value
    /// (empty, or the scheme followed by anything but spaces and a token68)
    /// or more than one `Authorization` header.
    ///
    /// ```
    /// use mcp_auth_core::{AuthRequest, TokenScheme};
    /// let req = AuthRequest::builder().header("authorization", "dpop abc.def.ghi").build();
    /// assert_eq!(req.access_token().unwrap(), Some((TokenScheme::DPoP, "abc.def.ghi")));
    /// assert_eq!(req.bearer_token().unwrap(), None);
    /// ```
    pub fn access_token(&self) -> Result<Option<(crate::TokenScheme, &str)>, AuthError> {
        let mut values = self.headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(AuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| AuthError::invalid_request("Authorization header is not ASCII"))?;
        // An empty value, or the scheme followed by anything but spaces
        // (`Bearer<TAB>t`, `Bearer,`), is malformed (RFC 6750 §3.1), not
        // "no credentials" (an attack pass: such a client was sent to log
        // in, again and again).
        if value.trim_matches([' ', '\t']).is_empty() {
            return Err(AuthError::invalid_request("empty Authorization header"));
        }
        let end = crate::challenge::auth_scheme(value.as_bytes()).len();
        let (scheme, rest) = value.split_at(end);
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            crate::TokenScheme::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            crate::TokenScheme::DPoP
        } else {
            return Ok(None);
        };
        let token = match rest.strip_prefix(' ') {
            Some(after) => after.trim_start_matches(' '),
            None if rest.is_empty() => rest,
            None => {
                return Err(AuthError::invalid_request(format!(
                    "malformed Authorization header: expected `{} <token>`",
                    scheme.as_str()
                )));
            }
        };
        let body = token.trim_end_matches('=');
        let token68 = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if !token68 {
            return Err(AuthError::invalid_request(format!(
                "malformed Authorization header: expected `{} <token>`",
                scheme.as_str()
            )));
        }
        Ok(Some((scheme, token)))
    }

    /// The peer address as text, or `"unknown"`; handy for log lines.
    pub fn peer_display(&self) -> String {
        self.peer
            .map(|p| p.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// Builder for [`AuthRequest`]. Invalid header names or values are skipped.
#[derive(Debug, Default)]
pub struct AuthRequestBuilder {
    req: AuthRequest,
}

impl AuthRequestBuilder {
    /// Sets the method.
    pub fn method(mut self, method: Method) -> Self {
        self.req.method = method;
        self
    }
    /// Sets the URI; an unparsable one leaves the default `/`.
    pub fn uri(mut self, uri: &str) -> Self {
        if let Ok(uri) = uri.parse() {
            self.req.uri = uri;
        }
        self
    }
    /// Appends a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.req.headers.append(n, v);
        }
        self
    }
    /// Sets the peer address.
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.req.peer = Some(peer);
        self
    }
    /// Finishes the request.
    pub fn build(self) -> AuthRequest {
        self.req
    }
}

/// Decides who is calling.
///
/// Implementations answer every request with a [`Principal`] or an
/// [`AuthError`]; the HTTP layer turns the error into the exact status,
/// `WWW-Authenticate` challenge and JSON body RFC 6750 prescribes.
///
/// Any `Fn(AuthRequest) -> impl Future<Output = Result<Principal, AuthError>>`
/// closure is an authenticator, and the trait is object safe, so strategies
/// are usually held as [`SharedAuthenticator`] (`Arc<dyn Authenticator>`).
///
/// ```
/// use std::sync::Arc;
/// use mcp_auth_core::{AuthError, AuthRequest, Authenticator, Principal, SharedAuthenticator};
///
/// struct Office;
///
/// #[mcp_auth_core::async_trait]
/// impl Authenticator for Office {
///     async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
///         match req.peer {
///             Some(p) if p.ip().is_loopback() => Ok(Principal::new("local", "office")),
///             _ => Err(AuthError::MissingCredentials),
///         }
///     }
/// }
///
/// let shared: SharedAuthenticator = Arc::new(Office);
/// assert_eq!(shared.name(), "custom");
/// ```
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticates one request.
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError>;

    /// A short name for logs and the `strategy` field of principals.
    fn name(&self) -> &str {
        "custom"
    }

    /// The `WWW-Authenticate` schemes this authenticator answers with.
    /// Bearer by default; a chain answers with all of its members' schemes.
    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        vec![ChallengeScheme::Bearer]
    }

    /// Whether [`challenge_schemes`](Self::challenge_schemes) names every
    /// credential this authenticator reads (true for the ready-made ones,
    /// and for a [`FnAuthenticator`] given its scheme with
    /// [`with_scheme`](FnAuthenticator::with_scheme)). False by default: a
    /// closure or custom type may read anything (its own header, the
    /// peer's address) while answering with the default Bearer challenge.
    /// A chain asks such members after the others; when one of those
    /// refused the credential the request carries, it lets such a member
    /// in only if it needs that credential (asked again without it, it
    /// does not accept): a wrong token beside what a custom check reads
    /// must count as a failed login, not pass as the custom check's caller.
    fn declares_credentials(&self) -> bool {
        false
    }

    /// OAuth authorization servers that issue credentials for this
    /// authenticator (RFC 9728 `authorization_servers`). When any authenticator
    /// names one, the HTTP layer serves protected-resource metadata.
    fn authorization_servers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Scopes to advertise in protected-resource metadata.
    fn scopes_supported(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether every principal this authenticator accepts is anonymous (it
    /// identifies no one, like `NoAuth`). The HTTP layer then lets
    /// anonymous sessions use the whole session cap: the anonymous cap is
    /// there to keep unauthenticated clients from crowding out
    /// authenticated ones, and there are none.
    fn anonymous_only(&self) -> bool {
        false
    }

    /// Whether this authenticator lets a request without credentials in,
    /// as an anonymous principal (`NoAuth`, or a chain with it as a
    /// member). Such a server never challenges a client to log in; the
    /// HTTP layer warns when one that also identifies callers does.
    fn admits_anonymous(&self) -> bool {
        self.anonymous_only()
    }

    /// What this authenticator does with DPoP (RFC 9449), when it checks
    /// proofs: the algorithms it accepts and whether it requires them. The
    /// protected-resource metadata and the challenges say so. Default:
    /// `None` (bearer tokens only).
    fn dpop(&self) -> Option<crate::DpopInfo> {
        None
    }

    /// What this authenticator needs to accept anyone, checked now without
    /// waiting on the network (an issuer's keys fetched and fresh, ...), for
    /// a readiness probe. Default: nothing to check.
    fn readiness(&self) -> Vec<Readiness> {
        Vec::new()
    }

    /// Whether `principal`, which this authenticator let in, still stands:
    /// asked again, every few seconds, for as long as what it opened stays
    /// open (an MCP event stream, which ends when this says no; the
    /// session goes on). For credentials that can be revoked before they
    /// expire (a login facade's tokens). An error keeps it for now (asked
    /// again). A chain asks the members named as the principal's
    /// `strategy`; one that may be asked about principals of others should
    /// let them stand. Default: `Ok(true)`, a credential stands until it
    /// expires.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use mcp_auth_core::{AuthRequest, Authenticator, Principal};
    /// let check = mcp_auth_core::FnAuthenticator::new(|_req: AuthRequest| async {
    ///     Ok(Principal::new("alice", "custom"))
    /// });
    /// let alice = Principal::new("alice", "custom");
    /// assert_eq!(check.still_valid(&alice).await, Ok(true));
    /// # }
    /// ```
    async fn still_valid(&self, principal: &Principal) -> Result<bool, AuthError> {
        let _ = principal;
        Ok(true)
    }
}

/// One readiness check: what, whether it holds, and a short detail (no
/// URL, key or secret: probes are unauthenticated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// What was checked (`jwks`, `session store`, ...).
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// Why, in a few words (`3 keys, fetched 40 s ago`).
    pub detail: String,
    /// For a cached key set: the time since it was fetched (metrics report
    /// it as `mcp_auth_jwks_age_seconds`). Not part of `/ready`'s answer.
    #[serde(skip)]
    pub age: Option<std::time::Duration>,
}

impl Readiness {
    /// A check named `name` that holds (`ok`) or not, with `detail`.
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok,
            detail: detail.into(),
            age: None,
        }
    }
}

/// An authenticator shared between tasks.
pub type SharedAuthenticator = Arc<dyn Authenticator>;

#[async_trait]
impl<F, Fut> Authenticator for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send + 'static,
{
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        (self)(req.clone()).await
    }
}

/// A closure with a name and the challenge schemes it answers with: a
/// custom check that reads its own header says so, instead of advertising
/// the default Bearer challenge (which also tells an
/// [`AnyOf`](https://docs.rs/mcp-auth-strategies) chain which credential it
/// reads). Compare a presented secret with [`secrets_equal`], and keep the
/// expected one out of the code (your configuration or secret store).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use mcp_auth_core::{AuthError, AuthRequest, Authenticator, ChallengeScheme, FnAuthenticator, Principal, secrets_equal};
///
/// // From the configuration, e.g. std::env::var("INTERNAL_TOKEN").
/// let expected: Arc<str> = "a-token-from-the-configuration-0123".into();
/// let sidecar = FnAuthenticator::new(move |req: AuthRequest| {
///     let expected = expected.clone();
///     async move {
///         match req.headers.get("x-internal-token") {
///             Some(t) if secrets_equal(t.as_bytes(), expected.as_bytes()) => {
///                 Ok(Principal::new("sidecar", "internal"))
///             }
///             Some(_) => Err(AuthError::invalid_token("unknown internal token")),
///             None => Err(AuthError::MissingCredentials),
///         }
///     }
/// })
/// .named("internal")
/// .with_scheme(ChallengeScheme::ApiKey { header: "X-Internal-Token".into() });
/// assert_eq!(sidecar.name(), "internal");
/// let req = AuthRequest::builder()
///     .header("x-internal-token", "a-token-from-the-configuration-0123")
///     .build();
/// assert_eq!(sidecar.authenticate(&req).await.unwrap().subject, "sidecar");
/// # }
/// ```
pub struct FnAuthenticator<F> {
    f: F,
    name: String,
    schemes: Vec<ChallengeScheme>,
    /// Given its scheme ([`with_scheme`](Self::with_scheme)).
    declared: bool,
}

impl<F> FnAuthenticator<F> {
    /// `f`, named `custom`, answering with a Bearer challenge until told
    /// otherwise.
    pub fn new(f: F) -> Self {
        Self {
            f,
            name: "custom".to_owned(),
            schemes: vec![ChallengeScheme::Bearer],
            declared: false,
        }
    }

    /// The name for logs.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Answers with `scheme` (replacing the default Bearer; call again to
    /// add more).
    pub fn with_scheme(mut self, scheme: ChallengeScheme) -> Self {
        if !self.declared {
            self.schemes.clear();
            self.declared = true;
        }
        if !self.schemes.contains(&scheme) {
            self.schemes.push(scheme);
        }
        self
    }
}

#[async_trait]
impl<F, Fut> Authenticator for FnAuthenticator<F>
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send + 'static,
{
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        (self.f)(req.clone()).await
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        self.schemes.clone()
    }
    fn declares_credentials(&self) -> bool {
        self.declared
    }
}

#[async_trait]
impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        (**self).authenticate(req).await
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        (**self).challenge_schemes()
    }
    fn authorization_servers(&self) -> Vec<String> {
        (**self).authorization_servers()
    }
    fn scopes_supported(&self) -> Vec<String> {
        (**self).scopes_supported()
    }
    fn anonymous_only(&self) -> bool {
        (**self).anonymous_only()
    }
    fn admits_anonymous(&self) -> bool {
        (**self).admits_anonymous()
    }
    fn declares_credentials(&self) -> bool {
        (**self).declares_credentials()
    }
    fn dpop(&self) -> Option<crate::DpopInfo> {
        (**self).dpop()
    }
    fn readiness(&self) -> Vec<Readiness> {
        (**self).readiness()
    }
    async fn still_valid(&self, principal: &Principal) -> Result<bool, AuthError> {
        (**self).still_valid(principal).await
    }
}

/// Whether a presented secret equals the expected one, in time that does
/// not depend on where they differ (only on their length): for custom
/// checks ([`FnAuthenticator`]) that compare a token with a configured one,
/// where `==` would let a caller find it byte by byte from the answer
/// times.
///
/// An empty expected secret matches nothing, not even an empty one: a
/// secret left unset in the configuration (`INTERNAL_TOKEN=`) must not let
/// in whoever sends the header empty.
///
/// ```
/// use mcp_auth_core::secrets_equal;
/// assert!(secrets_equal(b"s3cret-value", b"s3cret-value"));
/// assert!(!secrets_equal(b"s3cret-valuX", b"s3cret-value"));
/// assert!(!secrets_equal(b"s3cret", b"s3cret-value"));
/// assert!(!secrets_equal(b"", b""));
/// ```
pub fn secrets_equal(presented: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() || presented.len() != expected.len() {
        return false;
    }
    let difference = presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| std::hint::black_box(acc | (a ^ b)));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closures_are_authenticators_and_can_be_shared() {
        let auth: SharedAuthenticator = Arc::new(|req: AuthRequest| async move {
            if req.method == Method::DELETE {
                Err(AuthError::insufficient_scope(["mcp:admin"]))
            } else {
                Ok(Principal::new("x", "closure"))
            }
        });
        let ok = auth
            .authenticate(&AuthRequest::builder().build())
            .await
            .unwrap();
        assert_eq!(ok.subject, "x");
        let err = auth
            .authenticate(&AuthRequest::builder().method(Method::DELETE).build())
            .await
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(auth.challenge_schemes(), vec![ChallengeScheme::Bearer]);
    }

    #[test]
    fn bearer_token_parsing() {
        let tok = |h: &[&str]| {
            let mut b = AuthRequest::builder();
            for v in h {
                b = b.header("authorization", v);
            }
            b.build().bearer_token().map(|t| t.map(str::to_owned))
        };
        assert_eq!(tok(&[]), Ok(None));
        assert_eq!(tok(&["Basic dXNlcjpwYXNz"]), Ok(None));
        assert_eq!(tok(&["BEARER  x.y.z"]), Ok(Some("x.y.z".into())));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer ===",
            "Bearer é",
            "Bearer a\\",
        ] {
            assert!(
                matches!(tok(&[bad]), Err(AuthError::InvalidRequest { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            tok(&["Bearer a", "Bearer b"]),
            Err(AuthError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn debug_redacts_credentials() {
        let dbg = format!(
            "{:?}",
            AuthRequest::builder()
                .uri("http://user:secret-pass@host.example/mcp")
                .build()
        );
        assert!(!dbg.contains("secret") && dbg.contains("/mcp"), "{dbg}");
        let req = AuthRequest::builder()
            .uri("/mcp?api_key=secret-in-query")
            .header("authorization", "Bearer secret-token")
            .header("x-api-key", "secret-key")
            .header("cookie", "sid=secret-cookie")
            // A custom check's own header (an embedding review: shown in full).
            .header("x-internal-token", "secret-internal")
            .header("user-agent", "visible-agent")
            .build();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(
            dbg.contains("visible-agent") && dbg.contains("<redacted>") && dbg.contains("/mcp"),
            "{dbg}"
        );
        let dbg = format!(
            "{:?}",
            AuthRequest::builder().header("x-api-key", "secret-key")
        );
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn builder_skips_invalid_headers() {
        let req = AuthRequest::builder()
            .header("bad name", "v")
            .header("ok", "line\nbreak")
            .header("good", "v")
            .build();
        assert_eq!(req.headers.len(), 1);
        assert_eq!(req.peer_display(), "unknown");
    }
}
