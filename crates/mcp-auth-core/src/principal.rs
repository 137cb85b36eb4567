//! [`Principal`]: who the verified caller is.

use std::{
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// The verified caller of a request.
///
/// The HTTP layer inserts it into the request extensions; tools behind rmcp
/// read it from the copied `http::request::Parts`, axum handlers can take it
/// as an extractor (feature `axum`).
///
/// `Debug` prints the identity fields and the *names* of the raw claims, never
/// their values, so logging a principal cannot leak a token's contents.
///
/// ```
/// use mcp_auth_core::Principal;
/// let p = Principal::new("alice", "bearer")
///     .with_issuer("https://issuer.example")
///     .with_scopes(["mcp:tools", "mcp:admin"]);
/// assert!(p.has_scope("mcp:admin"));
/// assert!(p.missing_scopes(&["mcp:tools".into(), "x".into()]) == vec!["x".to_owned()]);
/// ```
#[derive(Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Principal {
    /// Stable identifier of the caller (JWT `sub`, an API key's fingerprint, ...).
    pub subject: String,
    /// Who vouches for the subject (JWT `iss`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The OAuth client acting for the subject, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Groups or roles.
    pub groups: Vec<String>,
    /// The strategy that authenticated the caller (`api_key`, `bearer`, ...).
    pub strategy: String,
    /// When the credential stops being valid.
    #[serde(serialize_with = "ser_time", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<SystemTime>,
    /// The raw claims, for custom checks. Never contains the credential itself.
    /// Shared, not copied: a principal built from a cached token costs one
    /// reference count for its claims (`Arc::make_mut` to change them).
    #[serde(serialize_with = "ser_claims", skip_serializing_if = "no_claims")]
    pub claims: Arc<Map<String, Value>>,
    /// The caller identifies nobody: everyone is let in as this same
    /// principal (`NoAuth`). Sessions, their caps and rate limits treat such
    /// a caller as anonymous, not as one user everyone shares.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

fn ser_claims<S: Serializer>(c: &Arc<Map<String, Value>>, s: S) -> Result<S::Ok, S::Error> {
    c.as_ref().serialize(s)
}

fn no_claims(c: &Arc<Map<String, Value>>) -> bool {
    c.is_empty()
}

/// One shared empty claim set, so principals without claims allocate none.
fn no_claims_yet() -> Arc<Map<String, Value>> {
    static EMPTY: std::sync::LazyLock<Arc<Map<String, Value>>> =
        std::sync::LazyLock::new(|| Arc::new(Map::new()));
    EMPTY.clone()
}

fn ser_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

impl Principal {
    /// A principal with a subject and the name of the strategy that vouched
    /// for it; everything else empty.
    pub fn new(subject: impl Into<String>, strategy: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            issuer: None,
            client_id: None,
            scopes: Vec::new(),
            groups: Vec::new(),
            strategy: strategy.into(),
            expires_at: None,
            claims: no_claims_yet(),
            anonymous: false,
        }
    }

    /// The principal of a caller that identifies nobody (subject
    /// `anonymous`), for authenticators that let everyone in.
    ///
    /// ```
    /// use mcp_auth_core::Principal;
    /// let p = Principal::anonymous("none");
    /// assert!(p.anonymous && p.subject == "anonymous");
    /// assert!(!Principal::new("anonymous", "api_key").anonymous, "a name is no property");
    /// ```
    pub fn anonymous(strategy: impl Into<String>) -> Self {
        Self {
            anonymous: true,
            ..Self::new("anonymous", strategy)
        }
    }

    /// Sets the issuer.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets the scopes.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the groups.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the expiry.
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets the raw claims.
    pub fn with_claims(mut self, claims: Map<String, Value>) -> Self {
        self.claims = Arc::new(claims);
        self
    }

    /// Sets the raw claims, shared with whoever else holds them (a token
    /// cache, say) instead of copied.
    pub fn with_shared_claims(mut self, claims: Arc<Map<String, Value>>) -> Self {
        self.claims = claims;
        self
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The scopes of `required` that the principal lacks, in order.
    pub fn missing_scopes(&self, required: &[String]) -> Vec<String> {
        required
            .iter()
            .filter(|r| !self.has_scope(r))
            .cloned()
            .collect()
    }

    /// Whether the principal is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The identity a session is bound to: issuer, subject and client id.
    pub fn identity_key(&self) -> (Option<&str>, &str, Option<&str>) {
        (
            self.issuer.as_deref(),
            &self.subject,
            self.client_id.as_deref(),
        )
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("groups", &self.groups)
            .field("strategy", &self.strategy)
            .field("expires_at", &self.expires_at)
            .field("claims", &ClaimNames(&self.claims))
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

struct ClaimNames<'a>(&'a Map<String, Value>);

impl fmt::Debug for ClaimNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no authenticated principal: is the auth layer installed on this route?",
        ))
    }
}

/// `Option<Principal>` in a handler: the principal when the auth layer let
/// the request in with one, `None` when it passed a request without
/// credentials on ([`AuthLayer::optional`], anonymous access).
///
/// [`AuthLayer::optional`]: https://docs.rs/mcp-auth-transport/latest/mcp_auth_transport/struct.AuthLayer.html#method.optional
///
/// ```
/// use axum::{Router, routing::get};
/// use mcp_auth_core::Principal;
///
/// async fn hello(who: Option<Principal>) -> String {
///     match who {
///         Some(p) => format!("hello {}", p.subject),
///         None => "hello stranger".to_owned(),
///     }
/// }
/// let app: Router = Router::new().route("/", get(hello));
/// # let _ = app;
/// ```
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// The scope tokens of an OAuth `scope` value (RFC 6749 §3.3): separated
/// by single spaces only, each made of the printable ASCII characters the
/// RFC allows (no `"` or `\`). Anything else (a tab, a newline, a
/// no-break space, an empty token) separates nothing: a token holding one
/// is dropped, so `"x\tmcp:admin"` grants neither `x` nor `mcp:admin`.
///
/// ```
/// use mcp_auth_core::scope_tokens;
///
/// let held: Vec<&str> = scope_tokens("mcp:tools  mcp:read x\tmcp:admin").collect();
/// assert_eq!(held, ["mcp:tools", "mcp:read"]);
/// ```
pub fn scope_tokens(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|t| is_scope_token(t))
}

/// The scopes a `scope` parameter asks for, each once, in order: scope
/// tokens separated by spaces (RFC 6749 §3.3; runs of spaces tolerated).
/// `None` when anything else is between them (a tab, a no-break space, a
/// `"`): such a value is invalid whole, rather than split or trimmed.
///
/// ```
/// use mcp_auth_core::distinct_scope_tokens;
///
/// assert_eq!(distinct_scope_tokens(" a b  a "), Some(vec!["a", "b"]));
/// assert_eq!(distinct_scope_tokens("a\tb"), None);
/// ```
pub fn distinct_scope_tokens(scope: &str) -> Option<Vec<&str>> {
    let mut asked: Vec<&str> = Vec::new();
    for t in scope.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(t) {
            return None;
        }
        if !asked.contains(&t) {
            asked.push(t);
        }
    }
    Some(asked)
}

/// Whether `t` is one RFC 6749 scope token (`1*( %x21 / %x23-5B / %x5D-7E )`).
pub fn is_scope_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn an_optional_principal_is_none_without_one_and_some_with_one() {
        use axum::extract::OptionalFromRequestParts;
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let none = <Principal as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert!(none.is_none());
        parts.extensions.insert(Principal::new("ann", "api_key"));
        let some = <Principal as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(some.unwrap().subject, "ann");
    }

    #[test]
    fn debug_hides_claim_values() {
        let mut claims = Map::new();
        claims.insert("secret_thing".into(), Value::String("hunter2".into()));
        let p = Principal::new("bob", "bearer").with_claims(claims);
        let dbg = format!("{p:?}");
        assert!(dbg.contains("secret_thing"));
        assert!(!dbg.contains("hunter2"));
    }

    #[test]
    fn serializes_expiry_as_unix_seconds_and_skips_empties() {
        let p = Principal::new("bob", "bearer")
            .with_client_id("c")
            .with_groups(["g"])
            .with_expiry(UNIX_EPOCH + Duration::from_secs(42));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["expires_at"], 42);
        assert_eq!(v["client_id"], "c");
        assert!(v.get("issuer").is_none());
        assert!(v.get("claims").is_none());
        assert!(p.in_group("g"));
        assert_eq!(p.identity_key(), (None, "bob", Some("c")));
    }
}
