//! RFC 9728 OAuth 2.0 Protected Resource Metadata.

use serde::{Deserialize, Serialize};

/// The protected-resource metadata document (RFC 9728 §2).
///
/// ```
/// use mcp_auth_core::{ProtectedResourceMetadata, metadata_url_for};
/// let resource = "https://mcp.example.com/mcp";
/// let md = ProtectedResourceMetadata::new(resource)
///     .with_authorization_servers(["https://issuer.example.com"])
///     .with_scopes(["mcp:tools"]);
/// let json = serde_json::to_value(&md).unwrap();
/// assert_eq!(json["resource"], "https://mcp.example.com/mcp");
/// assert_eq!(json["bearer_methods_supported"][0], "header");
/// assert_eq!(
///     metadata_url_for(resource),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// The resource identifier: exactly the canonical server URL.
    pub resource: String,
    /// Issuers of tokens this resource accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Scopes clients may request for this resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How tokens may be presented: only `header` (never the query string).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Documentation for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// The DPoP proof algorithms accepted (RFC 9728 §2, RFC 9449): present
    /// when the resource accepts DPoP-bound tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Whether the resource accepts DPoP-bound tokens only (RFC 9728 §2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens_required: bool,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource`, presenting tokens in the header only.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: None,
            resource_documentation: None,
            dpop_signing_alg_values_supported: Vec::new(),
            dpop_bound_access_tokens_required: false,
        }
    }

    /// Says what the resource does with DPoP (`None`: bearer tokens only).
    ///
    /// ```
    /// use mcp_auth_core::{DpopInfo, ProtectedResourceMetadata};
    /// let m = ProtectedResourceMetadata::new("https://mcp.example.com/mcp")
    ///     .with_dpop(Some(&DpopInfo { algorithms: vec!["ES256".into()], required: true }));
    /// let json = serde_json::to_value(&m).unwrap();
    /// assert_eq!(json["dpop_signing_alg_values_supported"], serde_json::json!(["ES256"]));
    /// assert_eq!(json["dpop_bound_access_tokens_required"], true);
    /// ```
    pub fn with_dpop(mut self, dpop: Option<&crate::DpopInfo>) -> Self {
        if let Some(d) = dpop {
            self.dpop_signing_alg_values_supported = d.algorithms.clone();
            self.dpop_bound_access_tokens_required = d.required;
        }
        self
    }

    /// Sets the authorization servers.
    pub fn with_authorization_servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.authorization_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the supported scopes.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the resource name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets the documentation URL.
    pub fn with_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }
}

/// The metadata URL for a resource: `/.well-known/oauth-protected-resource`
/// inserted between the host and the resource's path (RFC 9728 §3.1).
/// A resource at the root maps to the root well-known URL; a query or
/// fragment is dropped. `resource` is an absolute URL (`scheme://host/path`);
/// anything else is returned with the well-known path appended to its origin
/// part as best it can, so pass a parsed URL's text.
///
/// ```
/// use mcp_auth_core::metadata_url_for;
/// assert_eq!(
///     metadata_url_for("https://mcp.example.com/mcp"),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// ```
pub fn metadata_url_for(resource: &str) -> String {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    let rest = &resource[after_scheme..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = &resource[..after_scheme + authority_end];
    let tail = &rest[authority_end..];
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    format!(
        "{origin}/.well-known/oauth-protected-resource{}",
        path.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_inserted_urls() {
        let cases = [
            (
                "http://127.0.0.1:8001/mcp",
                "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "https://h/",
                "https://h/.well-known/oauth-protected-resource",
            ),
            (
                "https://h/a/b/?q=1",
                "https://h/.well-known/oauth-protected-resource/a/b",
            ),
            (
                "https://h",
                "https://h/.well-known/oauth-protected-resource",
            ),
            (
                "https://h:8443?x#y",
                "https://h:8443/.well-known/oauth-protected-resource",
            ),
            (
                "https://h/p#frag",
                "https://h/.well-known/oauth-protected-resource/p",
            ),
        ];
        for (resource, want) in cases {
            let got = metadata_url_for(resource);
            assert_eq!(got, want, "{resource}");
        }
    }

    #[test]
    fn empty_lists_are_omitted() {
        let json = serde_json::to_value(ProtectedResourceMetadata::new("https://h/mcp")).unwrap();
        assert!(json.get("authorization_servers").is_none());
        assert!(json.get("scopes_supported").is_none());
    }
}
