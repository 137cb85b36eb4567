//! Header names the layers look up on every request, made once: a lookup
//! by `&str` parses and checks the name each time (a measurable part of a
//! request that the audit log reads several of, see docs/PERFORMANCE.md).

use http::HeaderName;

#[cfg(feature = "mcp")]
pub(crate) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
#[cfg(feature = "mcp")]
pub(crate) const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
#[cfg(feature = "mcp")]
pub(crate) const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
#[cfg(feature = "mcp")]
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
