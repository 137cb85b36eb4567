//! RFC 9728 OAuth 2.0 Protected Resource Metadata.

use serde::{Deserialize, Serialize};
use url::Url;

/// The protected-resource metadata document (RFC 9728 §2).
///
/// ```
/// use mcp_auth_core::{ProtectedResourceMetadata, metadata_url_for};
/// let resource = url::Url::parse("https://mcp.example.com/mcp").unwrap();
/// let md = ProtectedResourceMetadata::new(resource.as_str())
///     .with_authorization_servers(["https://issuer.example.com"])
///     .with_scopes(["mcp:tools"]);
/// let json = serde_json::to_value(&md).unwrap();
/// assert_eq!(json["resource"], "https://mcp.example.com/mcp");
/// assert_eq!(json["bearer_methods_supported"][0], "header");
/// assert_eq!(
///     metadata_url_for(&resource).as_str(),
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
        }
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
/// A resource at the root maps to the root well-known URL.
pub fn metadata_url_for(resource: &Url) -> Url {
    let mut url = resource.clone();
    let path = resource.path().trim_end_matches('/');
    url.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
    url.set_query(None);
    url.set_fragment(None);
    url
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
        ];
        for (resource, want) in cases {
            let got = metadata_url_for(&Url::parse(resource).unwrap());
            assert_eq!(got.as_str(), want, "{resource}");
        }
    }

    #[test]
    fn empty_lists_are_omitted() {
        let json = serde_json::to_value(ProtectedResourceMetadata::new("https://h/mcp")).unwrap();
        assert!(json.get("authorization_servers").is_none());
        assert!(json.get("scopes_supported").is_none());
    }
}
