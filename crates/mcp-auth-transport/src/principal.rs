//! The verified principal inside rmcp tools.

use mcp_auth_core::Principal;
use rmcp::{
    ErrorData,
    handler::server::common::{AsRequestContext, FromContextPart},
};

/// The principal of the HTTP request, from the `http::request::Parts` rmcp
/// copies into each MCP request's extensions.
///
/// ```
/// let (mut parts, _) = http::Request::new(()).into_parts();
/// assert!(mcp_auth_transport::principal_from_parts(&parts).is_none());
/// parts.extensions.insert(mcp_auth_core::Principal::new("alice", "api_key"));
/// assert_eq!(mcp_auth_transport::principal_from_parts(&parts).unwrap().subject, "alice");
/// ```
pub fn principal_from_parts(parts: &http::request::Parts) -> Option<&Principal> {
    parts.extensions.get::<Principal>()
}

/// A tool parameter that yields the verified caller.
///
/// Fails the call when there is no principal (a transport without the auth
/// layer, such as stdio) or the principal is anonymous (a request without
/// credentials let in by `NoAuth`, alone or in a chain): a tool that asks
/// for a caller must never run anonymously by accident. Take
/// `Option<Caller>`-like behaviour by reading [`principal_from_parts`]
/// yourself.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<C: AsRequestContext> FromContextPart<C> for Caller {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        let parts = context
            .as_request_context()
            .extensions
            .get::<http::request::Parts>();
        let let_in_anonymously = parts.is_some_and(|p| {
            p.extensions
                .get::<crate::auth::LetInAnonymously>()
                .is_some()
        });
        match parts.and_then(principal_from_parts) {
            Some(p) if !p.anonymous => Ok(Caller(p.clone())),
            // Let in without credentials (NoAuth, or a session policy that
            // allows anonymous access): the client's to fix.
            found if found.is_some() || let_in_anonymously => Err(ErrorData::invalid_request(
                "this tool needs an authenticated caller; the request carries no credentials",
                None,
            )),
            // No auth layer in front (stdio): the server's to fix.
            _ => Err(ErrorData::internal_error(
                "no authenticated caller for this request: the transport has no authentication",
                None,
            )),
        }
    }
}
