//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3).

use std::{fmt::Write as _, time::Duration};

use http::HeaderValue;

/// An authentication scheme that a server can challenge with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChallengeScheme {
    /// `Bearer` (RFC 6750): OAuth access tokens and other bearer JWTs.
    Bearer,
    /// `ApiKey`: a static key sent in the named request header. Not an IANA
    /// scheme; it tells clients which header to use.
    ApiKey {
        /// The header that carries the key, e.g. `X-API-Key`.
        header: String,
    },
    /// `DPoP` (RFC 9449 §7.1): tokens bound to the client's key, each
    /// request with a proof signed by it. `algs` are the proof algorithms
    /// accepted (the challenge's `algs` parameter).
    DPoP {
        /// JWA names, e.g. `ES256`.
        algs: Vec<String>,
    },
    /// Any other scheme, rendered verbatim (must be an RFC 9110 token).
    Other(String),
}

impl ChallengeScheme {
    /// The scheme's name as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Bearer => "Bearer",
            Self::ApiKey { .. } => "ApiKey",
            Self::DPoP { .. } => "DPoP",
            Self::Other(s) => s,
        }
    }

    /// Whether the request carries credentials of this scheme: an
    /// `Authorization` header with the scheme's name, or, for API keys, the
    /// key header.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use mcp_auth_core::ChallengeScheme;
    /// let mut h = HeaderMap::new();
    /// h.insert("authorization", "bearer x".parse().unwrap());
    /// assert!(ChallengeScheme::Bearer.presented_in(&h));
    /// assert!(!ChallengeScheme::ApiKey { header: "X-API-Key".into() }.presented_in(&h));
    /// // Malformed after the scheme, still that scheme's (the chain refuses
    /// // it beside another credential).
    /// h.insert("authorization", "Bearer\tjunk".parse().unwrap());
    /// assert!(ChallengeScheme::Bearer.presented_in(&h));
    /// ```
    pub fn presented_in(&self, headers: &http::HeaderMap) -> bool {
        let auth_scheme_is = |name: &str| {
            headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .any(|v| auth_scheme(v.as_bytes()).eq_ignore_ascii_case(name.as_bytes()))
        };
        match self {
            Self::ApiKey { header } => headers.contains_key(header.as_str()),
            other => auth_scheme_is(other.as_str()),
        }
    }
}

/// A `Retry-After` delay (RFC 9110 §10.2.3) in whole seconds: rounded up,
/// so a client that waits exactly that long is not refused once more, and
/// at least one.
///
/// ```
/// use std::time::Duration;
/// use mcp_auth_core::retry_after_secs;
///
/// assert_eq!(retry_after_secs(Duration::from_millis(899_970)), 900);
/// assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
/// assert_eq!(retry_after_secs(Duration::ZERO), 1);
/// ```
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// The auth-scheme of an `Authorization` value: what comes before the
/// first space, tab or comma (one reading for the chain's "two credentials"
/// rule and [`AuthRequest::access_token`](crate::AuthRequest::access_token)).
pub(crate) fn auth_scheme(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b','))
        .unwrap_or(value.len());
    &value[..end]
}

/// One challenge: a scheme and its auth-params, in order.
///
/// Parameter values are always sent as quoted strings: `"` and `\` are
/// escaped as quoted-pairs, and characters a header cannot carry (controls,
/// non-ASCII) are replaced with `?`, so no input can split or forge a header.
///
/// ```
/// use mcp_auth_core::{Challenge, ChallengeScheme};
/// let c = Challenge::new(ChallengeScheme::Bearer)
///     .param("resource_metadata", "https://h/.well-known/oauth-protected-resource/mcp")
///     .param("error_description", r#"say "hi" \ bye"#);
/// assert_eq!(
///     c.render(),
///     r#"Bearer resource_metadata="https://h/.well-known/oauth-protected-resource/mcp", error_description="say \"hi\" \\ bye""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: ChallengeScheme,
    params: Vec<(&'static str, String)>,
}

impl Challenge {
    /// A challenge with no parameters yet.
    pub fn new(scheme: ChallengeScheme) -> Self {
        Self {
            scheme,
            params: Vec::new(),
        }
    }

    /// Appends a parameter. Names are fixed strings chosen by the code, never
    /// input; values may be anything.
    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.params.push((name, value.into()));
        self
    }

    /// Whether any parameter is set.
    pub(crate) fn has_params(&self) -> bool {
        !self.params.is_empty()
    }

    /// The scheme.
    pub fn scheme(&self) -> &ChallengeScheme {
        &self.scheme
    }

    /// The value of a parameter, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Renders the challenge as header text.
    pub fn render(&self) -> String {
        let mut out = String::from(self.scheme.as_str());
        for (i, (name, value)) in self.params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            let _ = write!(out, "{name}=");
            push_quoted(&mut out, value);
        }
        out
    }

    /// Renders the challenge as a header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // `render` only emits visible ASCII, spaces and tabs, which are always
        // valid header bytes; the fallback is unreachable but keeps this total.
        HeaderValue::from_str(&self.render()).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// Appends `value` as an RFC 9110 quoted-string.
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' | ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_scheme_has_no_trailing_space() {
        assert_eq!(Challenge::new(ChallengeScheme::Bearer).render(), "Bearer");
    }

    #[test]
    fn header_injection_is_neutralised() {
        let c = Challenge::new(ChallengeScheme::Bearer)
            .param("error_description", "a\r\nSet-Cookie: x=1\u{7f}é");
        let rendered = c.render();
        assert_eq!(
            rendered,
            r#"Bearer error_description="a??Set-Cookie: x=1??""#
        );
        assert!(HeaderValue::from_str(&rendered).is_ok());
        assert_eq!(c.to_header_value(), rendered.as_str());
    }

    #[test]
    fn api_key_and_custom_schemes_render_their_names() {
        let c = Challenge::new(ChallengeScheme::ApiKey {
            header: "X-API-Key".into(),
        })
        .param("header", "X-API-Key");
        assert_eq!(c.render(), r#"ApiKey header="X-API-Key""#);
        assert_eq!(c.get("header"), Some("X-API-Key"));
        assert_eq!(c.get("nope"), None);
        assert_eq!(ChallengeScheme::Other("Basic".into()).as_str(), "Basic");
    }
}
