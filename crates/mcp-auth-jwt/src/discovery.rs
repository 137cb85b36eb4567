//! Authorization-server metadata discovery (RFC 8414, OpenID Connect Discovery).

use serde::Deserialize;
use url::Url;

use crate::fetch::{FetchError, FetchLimits, get_json};

/// The parts of an authorization server's metadata a resource server uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AuthServerMetadata {
    /// The issuer identifier; equal to the configured issuer, checked.
    pub issuer: String,
    /// Where the signing keys are published.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// RFC 7662 token introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// Scopes the server knows.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// Where users authorize clients (the authorization-server facade sends
    /// them there).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where codes and refresh tokens are exchanged.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The OIDC userinfo endpoint.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// Discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer is not a usable URL. Shown without the value: it may
    /// carry credentials (kept here for the caller).
    #[error("the issuer is not an http(s) URL without user name, password, query or fragment")]
    BadIssuer(String),
    /// No well-known URL gave a document.
    #[error("no metadata found for issuer {issuer}: {last}")]
    NotFound {
        /// The issuer.
        issuer: String,
        /// The last failure.
        last: String,
    },
    /// A document names another issuer (RFC 8414 §3.3: must not be used).
    #[error("metadata at {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// Where the document came from.
        url: String,
        /// What it said.
        found: String,
        /// What was configured.
        expected: String,
    },
}

/// The well-known URLs tried for `issuer`, in order: RFC 8414
/// (`/.well-known/oauth-authorization-server` inserted before the path),
/// OpenID Connect with the same insertion, then OpenID Connect appended to
/// the issuer (the classic form; Cognito and most OIDC providers).
///
/// ```
/// let urls = mcp_auth_jwt::discovery_urls("https://auth.example.com/tenant1").unwrap();
/// let urls: Vec<&str> = urls.iter().map(|u| u.as_str()).collect();
/// assert_eq!(urls, [
///     "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
///     "https://auth.example.com/.well-known/openid-configuration/tenant1",
///     "https://auth.example.com/tenant1/.well-known/openid-configuration",
/// ]);
/// ```
pub fn discovery_urls(issuer: &str) -> Result<Vec<Url>, DiscoveryError> {
    let bad = || DiscoveryError::BadIssuer(issuer.to_owned());
    let url = Url::parse(issuer).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
        // An issuer with credentials could never equal a token's `iss`,
        // and would be logged and published in the metadata (an attack
        // pass).
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let mut out: Vec<Url> = Vec::new();
    for candidate in [
        format!("/.well-known/oauth-authorization-server{path}"),
        format!("/.well-known/openid-configuration{path}"),
        format!("{path}/.well-known/openid-configuration"),
    ] {
        let mut u = url.clone();
        u.set_path(&candidate);
        if !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(out)
}

/// Fetches the metadata of `issuer`, trying [`discovery_urls`] in order, and
/// checks that the document's `issuer` is exactly `issuer`.
pub async fn discover(
    client: &reqwest::Client,
    issuer: &str,
    limits: FetchLimits,
) -> Result<AuthServerMetadata, DiscoveryError> {
    let mut last = String::from("no URL tried");
    let mut mismatch = None;
    for url in discovery_urls(issuer)? {
        match get_json(client, &url, limits).await {
            Ok(doc) => match serde_json::from_value::<AuthServerMetadata>(doc) {
                Ok(md) if md.issuer == issuer => return Ok(md),
                Ok(md) => {
                    mismatch.get_or_insert(DiscoveryError::IssuerMismatch {
                        url: url.to_string(),
                        found: md.issuer,
                        expected: issuer.to_owned(),
                    });
                }
                Err(_) => last = format!("{url} is not authorization-server metadata"),
            },
            Err(e @ FetchError::Status { status: 404, .. }) => last = e.to_string(),
            Err(e) => last = e.to_string(),
        }
    }
    Err(mismatch.unwrap_or(DiscoveryError::NotFound {
        issuer: issuer.to_owned(),
        last,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_issuers_have_two_distinct_urls() {
        let urls = discovery_urls("https://as.example.com/").unwrap();
        let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "https://as.example.com/.well-known/oauth-authorization-server",
                "https://as.example.com/.well-known/openid-configuration",
            ]
        );
        assert!(discovery_urls("ftp://x").is_err());
        assert!(discovery_urls("https://x/?a=b").is_err());
    }

    /// An issuer with credentials is refused, and the refusal does not
    /// repeat them (an attack pass: they were logged and published in
    /// the protected-resource metadata).
    #[test]
    fn issuers_with_credentials_are_refused_without_repeating_them() {
        for issuer in [
            "https://admin:IssuerPa55@as.example.com/realm",
            "https://admin@as.example.com/realm",
            "https://as.example.com/realm?token=QuerySecret",
        ] {
            let e = discovery_urls(issuer).unwrap_err().to_string();
            assert!(
                !e.contains("IssuerPa55") && !e.contains("admin") && !e.contains("QuerySecret"),
                "{e}"
            );
        }
    }
}
