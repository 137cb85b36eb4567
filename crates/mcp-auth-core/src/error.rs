//! [`AuthError`]: every way authentication can fail, mapped to RFC 6750.

use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::{Challenge, ChallengeScheme};

/// Why a request was not authenticated or not authorized.
///
/// | variant | status | challenge parameters |
/// |---|---|---|
/// | [`MissingCredentials`](Self::MissingCredentials) | 401 | none besides `resource_metadata` / `scope` |
/// | [`InvalidToken`](Self::InvalidToken) | 401 | `error="invalid_token"`, `error_description` |
/// | [`InvalidRequest`](Self::InvalidRequest) | 400 | `error="invalid_request"`, `error_description` |
/// | [`InsufficientScope`](Self::InsufficientScope) | 403 | `error="insufficient_scope"`, `scope` = all needed |
/// | [`Forbidden`](Self::Forbidden) | 403 | none (no `WWW-Authenticate`: no scope or new login helps); the body's `error` is `forbidden` |
/// | [`Unavailable`](Self::Unavailable) | 503 | none (no `WWW-Authenticate`; mcp-auth-transport adds `Retry-After`) |
/// | [`InvalidDpopProof`](Self::InvalidDpopProof) | 401 | `error="invalid_dpop_proof"`, `error_description` |
/// | [`UseDpopNonce`](Self::UseDpopNonce) | 401 | `error="use_dpop_nonce"`, and a `DPoP-Nonce` header ([`AuthError::dpop_nonce`]) |
///
/// Descriptions are sent to the client: never put a credential, a key or a
/// stack trace in them.
///
/// ```
/// use mcp_auth_core::{AuthError, ChallengeScheme};
/// let err = AuthError::insufficient_scope(["mcp:tools", "mcp:admin"]);
/// assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
/// let challenge = err.challenge(ChallengeScheme::Bearer, Some("https://h/.well-known/oauth-protected-resource/mcp"), &[]);
/// assert_eq!(
///     challenge.render(),
///     r#"Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no credentials this authenticator understands.
    #[error("no credentials")]
    MissingCredentials,
    /// Credentials were presented but are not valid (unknown key, bad
    /// signature, expired, wrong audience, ...).
    #[error("invalid credentials: {description}")]
    InvalidToken {
        /// A short, safe explanation for the client.
        description: String,
    },
    /// The credentials were not presented in a form the server accepts
    /// (malformed `Authorization` header, duplicated headers, ...).
    #[error("invalid request: {description}")]
    InvalidRequest {
        /// A short, safe explanation for the client.
        description: String,
    },
    /// The caller is authenticated but lacks scopes.
    #[error("insufficient scope: needs {}", required.join(" "))]
    InsufficientScope {
        /// Every scope the operation needs (not only the missing ones), so
        /// clients can re-authorize with the union.
        required: Vec<String>,
    },
    /// The caller is authenticated but not permitted for a reason other than
    /// a missing scope (e.g. not in a required group). 403 without a
    /// challenge: clients step up (log in again for more scopes) on
    /// `insufficient_scope`, and no scope would help here, so they would
    /// ask their user to log in for nothing; the body says
    /// `"error": "forbidden"` and why.
    #[error("forbidden: {description}")]
    Forbidden {
        /// A short, safe explanation for the client.
        description: String,
    },
    /// The authenticator could not decide (e.g. an issuer's keys cannot be
    /// fetched and none are cached). The request is refused with 503.
    #[error("authentication unavailable: {description}")]
    Unavailable {
        /// A short, safe explanation for the client.
        description: String,
    },
    /// A DPoP proof (RFC 9449) is missing, malformed, or does not fit the
    /// request or the token: 401 `invalid_dpop_proof`.
    #[error("invalid DPoP proof: {description}")]
    InvalidDpopProof {
        /// Why, safe to show the client.
        description: String,
    },
    /// The proof lacks the server's current nonce (RFC 9449 §9): 401
    /// `use_dpop_nonce`, with the nonce to use in the `DPoP-Nonce` header.
    #[error("DPoP proof without the current nonce")]
    UseDpopNonce {
        /// The nonce the client must put in its next proof.
        nonce: String,
    },
}

/// The `realm` of a Bearer or DPoP challenge that would otherwise carry no
/// parameter (RFC 6750 §3 wants at least one).
const REALM: &str = "mcp";

impl AuthError {
    /// An [`InvalidToken`](Self::InvalidToken) error.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self::InvalidToken {
            description: description.into(),
        }
    }

    /// An [`InvalidRequest`](Self::InvalidRequest) error.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::InvalidRequest {
            description: description.into(),
        }
    }

    /// An [`InsufficientScope`](Self::InsufficientScope) error.
    pub fn insufficient_scope<I, S>(required: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::InsufficientScope {
            required: required.into_iter().map(Into::into).collect(),
        }
    }

    /// A [`Forbidden`](Self::Forbidden) error.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::Forbidden {
            description: description.into(),
        }
    }

    /// An [`Unavailable`](Self::Unavailable) error.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::Unavailable {
            description: description.into(),
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials
            | Self::InvalidToken { .. }
            | Self::InvalidDpopProof { .. }
            | Self::UseDpopNonce { .. } => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } | Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 error code, if this error has one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials => None,
            Self::InvalidToken { .. } => Some("invalid_token"),
            Self::InvalidRequest { .. } => Some("invalid_request"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            Self::Forbidden { .. } => None,
            Self::Unavailable { .. } => Some("temporarily_unavailable"),
            Self::InvalidDpopProof { .. } => Some("invalid_dpop_proof"),
            Self::UseDpopNonce { .. } => Some("use_dpop_nonce"),
        }
    }

    /// A short, fixed label for metrics and traces: `missing`,
    /// `invalid_token`, `expired` (an invalid token whose reason is its
    /// expiry), `invalid_request`, `insufficient_scope`, `forbidden`,
    /// `unavailable`, `invalid_dpop_proof` or `use_dpop_nonce`. Never any
    /// part of the credential.
    ///
    /// ```
    /// use mcp_auth_core::AuthError;
    /// assert_eq!(AuthError::invalid_token("token expired").outcome(), "expired");
    /// assert_eq!(AuthError::invalid_token("invalid signature").outcome(), "invalid_token");
    /// assert_eq!(AuthError::MissingCredentials.outcome(), "missing");
    /// ```
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing",
            Self::InvalidToken { description } if description.starts_with("token expired") => {
                "expired"
            }
            Self::InvalidToken { .. } => "invalid_token",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "unavailable",
            Self::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Self::UseDpopNonce { .. } => "use_dpop_nonce",
        }
    }

    /// Whether the response carries a `WWW-Authenticate` challenge (every
    /// refusal but 503 and [`Forbidden`](Self::Forbidden)).
    pub fn has_challenge(&self) -> bool {
        !matches!(self, Self::Unavailable { .. } | Self::Forbidden { .. })
    }

    fn description(&self) -> Option<String> {
        match self {
            Self::MissingCredentials => None,
            Self::InvalidToken { description }
            | Self::InvalidRequest { description }
            | Self::Forbidden { description }
            | Self::Unavailable { description } => Some(sanitize_description(description)),
            Self::InsufficientScope { required } => Some(sanitize_description(&format!(
                "requires scope: {}",
                required.join(" ")
            ))),
            Self::InvalidDpopProof { description } => Some(sanitize_description(description)),
            Self::UseDpopNonce { .. } => {
                Some("put the nonce of the DPoP-Nonce header in the proof".to_owned())
            }
        }
    }

    /// Builds the challenge for one scheme.
    ///
    /// `resource_metadata` is the RFC 9728 metadata URL (Bearer only);
    /// `default_scopes` is what a 401 advertises in `scope` (RFC 6750 §3) so a
    /// client knows what to ask for. A 403 names the error's own scopes.
    pub fn challenge(
        &self,
        scheme: ChallengeScheme,
        resource_metadata: Option<&str>,
        default_scopes: &[String],
    ) -> Challenge {
        // OAuth access tokens: Bearer, or DPoP-bound (RFC 9449 §7.1).
        let is_bearer = matches!(
            scheme,
            ChallengeScheme::Bearer | ChallengeScheme::DPoP { .. }
        );
        let api_key_header = match &scheme {
            ChallengeScheme::ApiKey { header } => Some(header.clone()),
            _ => None,
        };
        let algs = match &scheme {
            ChallengeScheme::DPoP { algs } if !algs.is_empty() => Some(algs.join(" ")),
            _ => None,
        };
        let mut c = Challenge::new(scheme);
        if let Some(header) = api_key_header {
            c = c.param("header", header);
        }
        if let Some(algs) = algs {
            c = c.param("algs", algs);
        }
        if let Some(code) = self.code() {
            c = c.param("error", code);
        }
        let scopes: Vec<&str> = match self {
            Self::InsufficientScope { required } => required.iter().map(String::as_str).collect(),
            Self::Forbidden { .. } => Vec::new(),
            _ if is_bearer => default_scopes.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        if !scopes.is_empty() {
            c = c.param("scope", sanitize_scopes(&scopes));
        }
        if let (true, Some(url)) = (is_bearer, resource_metadata) {
            c = c.param("resource_metadata", url);
        }
        if let Some(d) = self.description().filter(|_| {
            matches!(
                self,
                Self::InvalidToken { .. }
                    | Self::InvalidRequest { .. }
                    | Self::Forbidden { .. }
                    | Self::InvalidDpopProof { .. }
                    | Self::UseDpopNonce { .. }
            )
        }) {
            c = c.param("error_description", d);
        }
        // RFC 6750 §3 (and RFC 9449 §7.1 after it): the scheme "MUST be
        // followed by one or more auth-param values"; with nothing else to
        // say (no credentials, no metadata, no scope), the protection space
        // (an attack pass: a bare `Bearer` under the `bearer` strategy).
        if is_bearer && !c.has_params() {
            c = c.param("realm", REALM);
        }
        c
    }

    /// The nonce to send in a `DPoP-Nonce` response header (RFC 9449 §9),
    /// for [`AuthError::UseDpopNonce`].
    pub fn dpop_nonce(&self) -> Option<&str> {
        match self {
            Self::UseDpopNonce { nonce } => Some(nonce),
            _ => None,
        }
    }

    /// The JSON body sent with the error response.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: match self {
                Self::Forbidden { .. } => "forbidden",
                _ => self.code().unwrap_or("unauthorized"),
            }
            .to_owned(),
            error_description: self
                .description()
                .unwrap_or_else(|| "authentication required".to_owned()),
            scope: match self {
                Self::InsufficientScope { required } => Some(required.join(" ")),
                _ => None,
            },
        }
    }

    /// Renders all challenges for `schemes` as header values: those of the
    /// schemes whose credentials the request carried first, then the
    /// others, each group in the order of `schemes`.
    ///
    /// The error code goes only on the schemes whose credentials the request
    /// carried (`headers`); the others get their challenge without it (RFC
    /// 6750 §3.1: no error code for a scheme the client did not use). When the request
    /// carried none of them, every challenge gets the error.
    pub fn challenge_headers(
        &self,
        schemes: &[ChallengeScheme],
        resource_metadata: Option<&str>,
        default_scopes: &[String],
        headers: &http::HeaderMap,
    ) -> Vec<HeaderValue> {
        if !self.has_challenge() {
            return Vec::new();
        }
        let presented: Vec<bool> = schemes.iter().map(|s| s.presented_in(headers)).collect();
        let any = presented.contains(&true);
        // The challenge of the credential the client sent comes first: a
        // client that reads only the first `WWW-Authenticate` (as rmcp's
        // does) learns why its credential was refused.
        let (used, others): (Vec<_>, Vec<_>) =
            schemes.iter().zip(presented).partition(|(_, used)| *used);
        used.into_iter()
            .chain(others)
            .map(|(s, used)| {
                let err = if used || !any {
                    self
                } else {
                    &AuthError::MissingCredentials
                };
                err.challenge(s.clone(), resource_metadata, default_scopes)
                    .to_header_value()
            })
            .collect()
    }
}

/// The JSON body of every error response: `{"error": ..., "error_description": ...}`.
///
/// ```
/// use mcp_auth_core::ErrorBody;
/// let body = ErrorBody::new("rate_limited", "too many requests");
/// assert_eq!(
///     serde_json::to_string(&body).unwrap(),
///     r#"{"error":"rate_limited","error_description":"too many requests"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// The RFC 6750 error code, `forbidden` for [`AuthError::Forbidden`], or
    /// `unauthorized` when none applies.
    pub error: String,
    /// A short explanation.
    pub error_description: String,
    /// The scopes needed, for `insufficient_scope`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
}

impl ErrorBody {
    /// A body with an error code and a description, no scope.
    pub fn new(error: impl Into<String>, error_description: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            error_description: error_description.into(),
            scope: None,
        }
    }
}

/// RFC 6750 §3: `error_description` uses %x20-21 / %x23-5B / %x5D-7E only.
fn sanitize_description(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// RFC 6750 §3: scope tokens use %x21 / %x23-5B / %x5D-7E, space-separated.
fn sanitize_scopes(scopes: &[&str]) -> String {
    scopes
        .iter()
        .map(|s| {
            s.chars()
                .filter(|c| matches!(c, '!' | '#'..='[' | ']'..='~'))
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RM: &str = "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn missing_credentials_is_a_401_challenge_with_what_there_is_to_say() {
        let e = AuthError::MissingCredentials;
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            e.challenge(ChallengeScheme::Bearer, Some(RM), &[]).render(),
            format!(r#"Bearer resource_metadata="{RM}""#)
        );
        // Never a bare scheme (RFC 6750 §3: one auth-param at least).
        assert_eq!(
            e.challenge(ChallengeScheme::Bearer, None, &[]).render(),
            r#"Bearer realm="mcp""#
        );
        assert_eq!(
            e.challenge(ChallengeScheme::DPoP { algs: Vec::new() }, None, &[])
                .render(),
            r#"DPoP realm="mcp""#
        );
        assert_eq!(e.body().error, "unauthorized");
    }

    #[test]
    fn missing_credentials_advertises_default_scopes() {
        let e = AuthError::MissingCredentials;
        let scopes = vec!["mcp:tools".to_owned(), "bad\"scope".to_owned()];
        assert_eq!(
            e.challenge(ChallengeScheme::Bearer, Some(RM), &scopes)
                .render(),
            format!(r#"Bearer scope="mcp:tools badscope", resource_metadata="{RM}""#)
        );
    }

    #[test]
    fn invalid_token_carries_error_and_sanitized_description() {
        let e = AuthError::invalid_token("bad \"sig\" \\ é");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            e.challenge(ChallengeScheme::Bearer, Some(RM), &[]).render(),
            format!(
                r#"Bearer error="invalid_token", resource_metadata="{RM}", error_description="bad 'sig' / ?""#
            )
        );
        assert_eq!(e.body().error, "invalid_token");
    }

    #[test]
    fn invalid_request_is_400() {
        let e = AuthError::invalid_request("two Authorization headers");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.code(), Some("invalid_request"));
    }

    #[test]
    fn api_key_challenges_name_the_header_and_skip_bearer_params() {
        let e = AuthError::invalid_token("unknown API key");
        let scheme = ChallengeScheme::ApiKey {
            header: "X-API-Key".into(),
        };
        assert_eq!(
            e.challenge(scheme, Some(RM), &["s".into()]).render(),
            r#"ApiKey header="X-API-Key", error="invalid_token", error_description="unknown API key""#
        );
    }

    #[test]
    fn unavailable_has_no_challenge_and_is_503() {
        let e = AuthError::unavailable("issuer keys unavailable");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            e.challenge_headers(
                &[ChallengeScheme::Bearer],
                None,
                &[],
                &http::HeaderMap::new()
            )
            .is_empty()
        );
    }

    #[test]
    fn body_serializes_scope_only_for_insufficient_scope() {
        let json = serde_json::to_value(AuthError::insufficient_scope(["a", "b"]).body()).unwrap();
        assert_eq!(json["scope"], "a b");
        assert_eq!(json["error"], "insufficient_scope");
        let json = serde_json::to_value(AuthError::MissingCredentials.body()).unwrap();
        assert!(json.get("scope").is_none());
    }

    #[test]
    fn the_error_code_goes_only_on_the_scheme_the_client_used() {
        let schemes = [
            ChallengeScheme::ApiKey {
                header: "X-API-Key".into(),
            },
            ChallengeScheme::Bearer,
        ];
        let e = AuthError::invalid_token("nope");
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "k".parse().unwrap());
        let got = e.challenge_headers(&schemes, Some(RM), &[], &h);
        assert_eq!(
            got[0],
            r#"ApiKey header="X-API-Key", error="invalid_token", error_description="nope""#
        );
        assert_eq!(
            got[1],
            format!(r#"Bearer resource_metadata="{RM}""#).as_str()
        );

        // The used scheme's challenge first: a client reading only the
        // first header (rmcp's) learns why (a docs walkthrough: behind
        // `api_key,oauth2` the client printed a refused token's 401 with
        // no reason).
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer t".parse().unwrap());
        let got = e.challenge_headers(&schemes, Some(RM), &[], &h);
        assert!(
            got[0]
                .to_str()
                .unwrap()
                .starts_with(r#"Bearer error="invalid_token""#)
        );
        assert_eq!(got[1], r#"ApiKey header="X-API-Key""#);

        // Credentials of no listed scheme: every challenge carries the error.
        let got = e.challenge_headers(&schemes, None, &[], &http::HeaderMap::new());
        assert!(
            got.iter()
                .all(|v| v.to_str().unwrap().contains("invalid_token"))
        );
    }

    /// A refusal no scope would lift (an attack pass: as 403
    /// `insufficient_scope` it sent step-up clients, the MCP SDKs among
    /// them, to a login for nothing) has no challenge; its body says why.
    #[test]
    fn forbidden_is_403_without_a_challenge() {
        let e = AuthError::forbidden("not in a required group");
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let schemes = [ChallengeScheme::Bearer];
        let headers = http::HeaderMap::new();
        assert!(
            e.challenge_headers(&schemes, Some(RM), &["s".into()], &headers)
                .is_empty()
        );
        let body = e.body();
        assert_eq!(body.error, "forbidden");
        assert_eq!(body.error_description, "not in a required group");
        assert_eq!(e.outcome(), "forbidden");
    }

    #[test]
    fn description_is_bounded() {
        let e = AuthError::invalid_token("x".repeat(10_000));
        let c = e.challenge(ChallengeScheme::Bearer, None, &[]);
        assert_eq!(c.get("error_description").map(str::len), Some(200));
    }
}
