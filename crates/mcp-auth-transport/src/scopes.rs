//! Per-tool scopes and step-up.
//!
//! ```
//! use mcp_auth_core::Principal;
//! use mcp_auth_transport::ToolScopes;
//!
//! let scopes = ToolScopes::new().require("delete_everything", ["mcp:admin"]);
//! let alice = Principal::new("alice", "oauth2").with_scopes(["mcp:tools"]);
//! assert!(scopes.may_call(&alice, "get_time"));
//! assert!(!scopes.may_call(&alice, "delete_everything"));
//! ```
//!
//! A tool that declares scopes can only be called by a principal holding
//! them; otherwise the HTTP request is answered 403 with
//! `WWW-Authenticate: Bearer error="insufficient_scope", scope="<all needed>"`
//! (the server-wide scopes plus the tool's; on the challenge of the scheme
//! the caller used, e.g. `ApiKey` for a named API key), so a standard client
//! re-authorizes with the union and retries. The tool is found in the JSON-RPC body
//! (2025-11-25 wire) and in the `Mcp-Method` / `Mcp-Name` headers
//! (2026-07-28); either naming a scoped tool is enough to require its scopes.
//!
//! Every tool with requirements needs an authenticated caller: when the
//! session policy lets requests in without credentials, a call of such a
//! tool is answered 401 with the challenge, so the client logs in. A tool
//! that needs to know its caller but no scope of its own says so with
//! [`ToolScopes::require_caller`].

use std::{
    collections::BTreeMap,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use futures::future::BoxFuture;
use http::{Method, Request, StatusCode};
use mcp_auth_core::{
    AuthError, Principal,
    settings::{ConfigError, Lookup},
};
use tower_layer::Layer;
use tower_service::Service;

use crate::AuthLayer;

/// The scopes each tool needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolScopes {
    tools: BTreeMap<String, Vec<String>>,
}

impl ToolScopes {
    /// No tool needs a scope.
    pub fn new() -> Self {
        Self::default()
    }

    /// `tool` needs every one of `scopes`.
    pub fn require<I, S>(mut self, tool: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let entry = self.tools.entry(tool.into()).or_default();
        for s in scopes {
            let s = s.into();
            if !entry.contains(&s) {
                entry.push(s);
            }
        }
        self
    }

    /// `tool` needs an authenticated caller, and no scope besides the
    /// server-wide ones (a tool that reads its
    /// [`Caller`](crate::Caller)). Matters when the session policy lets
    /// requests in without credentials: a call of `tool` without them is
    /// answered 401 with the challenge (a login), not passed to the tool
    /// with nobody to name. A principal the authenticator let in as
    /// anonymous (the `none` strategy) is a caller here. Scopes required of
    /// `tool` are kept.
    ///
    /// ```
    /// use mcp_auth_transport::ToolScopes;
    ///
    /// let scopes = ToolScopes::new().require_caller("whoami");
    /// assert!(scopes.needs_caller("whoami"));
    /// assert!(scopes.for_tool("whoami").is_empty());
    /// assert!(!scopes.needs_caller("get_time"));
    /// ```
    pub fn require_caller(mut self, tool: impl Into<String>) -> Self {
        self.tools.entry(tool.into()).or_default();
        self
    }

    /// Whether `tool` needs an authenticated caller: it needs a scope, or
    /// was named by [`require_caller`](Self::require_caller).
    pub fn needs_caller(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// Reads `MCP_TOOL_SCOPES`: `tool=scope [scope...]`, comma-separated,
    /// e.g. `admin_stats=mcp:admin,deploy=mcp:admin mcp:deploy`. A tool the
    /// setting names gets exactly the scopes it lists, replacing what `self`
    /// required of that tool (a default set in code: under Cognito, whose
    /// custom scopes are named `<resource server>/<scope>`, a default like
    /// `mcp:admin` could otherwise never be met); a tool named twice needs
    /// the scopes of both entries. Tools it does not name keep theirs.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use mcp_auth_transport::ToolScopes;
    ///
    /// let defaults = ToolScopes::new()
    ///     .require("admin_status", ["mcp:admin"])
    ///     .require("deploy", ["mcp:deploy"]);
    /// let vars = HashMap::from([(
    ///     "MCP_TOOL_SCOPES".to_owned(),
    ///     "admin_status=https://mcp.example.com/admin".to_owned(),
    /// )]);
    /// let scopes = defaults.with_settings(&vars).unwrap();
    /// assert_eq!(scopes.for_tool("admin_status"), ["https://mcp.example.com/admin"]);
    /// assert_eq!(scopes.for_tool("deploy"), ["mcp:deploy"]);
    /// ```
    pub fn with_settings(mut self, l: &dyn Lookup) -> Result<Self, ConfigError> {
        let Some(v) = l.get("MCP_TOOL_SCOPES") else {
            return Ok(self);
        };
        let mut named: Vec<String> = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (tool, scopes) = item.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    "MCP_TOOL_SCOPES",
                    format!("{item:?} is not tool=scope [scope...]"),
                )
            })?;
            let scopes: Vec<&str> = scopes.split_whitespace().collect();
            if tool.trim().is_empty() || scopes.is_empty() {
                return Err(ConfigError::new(
                    "MCP_TOOL_SCOPES",
                    format!("{item:?} is not tool=scope [scope...]"),
                ));
            }
            let tool = tool.trim();
            if !named.iter().any(|t| t == tool) {
                self.tools.remove(tool);
                named.push(tool.to_owned());
            }
            self = self.require(tool, scopes);
        }
        Ok(self)
    }

    /// Every scope some tool needs, once each.
    pub fn all(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.tools.values().flatten() {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// The tools with requirements: a scope, or an authenticated caller.
    pub fn tool_names(&self) -> impl Iterator<Item = String> + '_ {
        self.tools.keys().cloned()
    }

    /// Whether no tool has requirements.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The scopes `tool` needs (empty for tools without requirements).
    pub fn for_tool(&self, tool: &str) -> &[String] {
        self.tools.get(tool).map_or(&[], Vec::as_slice)
    }

    /// What a call of `tools` needs: the `server`-wide scopes, then each
    /// tool's (none twice).
    pub(crate) fn needed(&self, server: &[String], tools: &[String]) -> Vec<String> {
        let mut needed: Vec<String> = Vec::new();
        for s in server
            .iter()
            .chain(tools.iter().flat_map(|t| self.for_tool(t)))
        {
            if !needed.contains(s) {
                needed.push(s.clone());
            }
        }
        needed
    }

    /// Whether `p` may call `tool`.
    pub fn may_call(&self, p: &Principal, tool: &str) -> bool {
        p.missing_scopes(self.for_tool(tool)).is_empty()
    }

    /// The tools of `tools` a caller without credentials may call (an
    /// HTTP request the session policy lets in anonymously): those that
    /// need no caller ([`needs_caller`](Self::needs_caller)), so a tool's
    /// existence and description are shown only to whoever could call it.
    ///
    /// ```
    /// use mcp_auth_transport::ToolScopes;
    /// use rmcp::model::Tool;
    ///
    /// let scopes = ToolScopes::new()
    ///     .require("admin_status", ["mcp:admin"])
    ///     .require_caller("whoami");
    /// let tool = |name: &'static str| Tool::new(name, "", serde_json::Map::new());
    /// let shown = scopes.visible_to_anonymous(vec![
    ///     tool("get_time"),
    ///     tool("whoami"),
    ///     tool("admin_status"),
    /// ]);
    /// let names: Vec<_> = shown.iter().map(|t| t.name.to_string()).collect();
    /// assert_eq!(names, ["get_time"]);
    /// ```
    pub fn visible_to_anonymous(&self, tools: Vec<rmcp::model::Tool>) -> Vec<rmcp::model::Tool> {
        tools
            .into_iter()
            .filter(|t| !self.needs_caller(&t.name))
            .collect()
    }

    /// The tools of `tools` that `p` may call (all of them when `p` is
    /// `None`, e.g. on stdio, where no HTTP principal exists; an HTTP
    /// request without one is [`visible_to_anonymous`](Self::visible_to_anonymous)'s).
    pub fn visible(
        &self,
        p: Option<&Principal>,
        tools: Vec<rmcp::model::Tool>,
    ) -> Vec<rmcp::model::Tool> {
        match p {
            None => tools,
            Some(p) => tools
                .into_iter()
                .filter(|t| self.may_call(p, &t.name))
                .collect(),
        }
    }
}

/// Tool names a request body calls (one message or a batch).
///
/// `Err` when the body calls a tool but is ambiguous: JSON parsers disagree
/// on duplicate keys (some take the first, some the last, some refuse), so a
/// `tools/call` whose method or name cannot be read strictly is refused
/// rather than guessed (see [`crate::message`]).
pub(crate) fn called_tools(body: &[u8]) -> Result<Vec<String>, ()> {
    crate::message::read(body).called
}

/// Enforces [`ToolScopes`] on `tools/call` (installed by
/// [`McpHttpApp`](crate::McpHttpApp) when any tool declares scopes; must sit
/// behind the auth layer).
#[derive(Clone)]
pub struct ToolScopeLayer {
    scopes: Arc<ToolScopes>,
    server_scopes: Arc<[String]>,
    auth: AuthLayer,
    max_body: usize,
}

impl ToolScopeLayer {
    /// `auth` renders the 403 (its schemes and metadata URL); `server_scopes`
    /// are added to every tool's scopes in the challenge; bodies are read up
    /// to `max_body` bytes.
    pub fn new(
        scopes: ToolScopes,
        server_scopes: Vec<String>,
        auth: AuthLayer,
        max_body: usize,
    ) -> Self {
        Self {
            scopes: Arc::new(scopes),
            server_scopes: server_scopes.into(),
            auth,
            max_body,
        }
    }
}

impl<S> Layer<S> for ToolScopeLayer {
    type Service = ToolScopeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ToolScopeService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`ToolScopeLayer`].
#[derive(Clone)]
pub struct ToolScopeService<S> {
    inner: S,
    layer: ToolScopeLayer,
}

impl<S> Service<Request<Body>> for ToolScopeService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, BoxFuture<'static, Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures::future::Either;
        if req.method() != Method::POST || self.layer.scopes.is_empty() {
            // Nothing to check: the service polled ready, as it is.
            return Either::Left(self.inner.call(req));
        }
        let (mut parts, body) = req.into_parts();
        // Read already by the observing layer in front, when there is one
        // (with this very body): decided here, without a clone of the
        // stack below.
        if let Some(crate::message::CalledTools(called)) =
            parts.extensions.remove::<crate::message::CalledTools>()
        {
            return match self.layer.check(&parts, called) {
                None => Either::Left(self.inner.call(Request::from_parts(parts, body))),
                Some(refused) => Either::Right(Box::pin(async move { Ok(refused) })),
            };
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Either::Right(Box::pin(async move {
            let (called, body) = match axum::body::to_bytes(body, layer.max_body).await {
                Ok(bytes) => (called_tools(&bytes), Body::from(bytes)),
                Err(e) => return Ok(crate::refusal::unreadable_body(&e)),
            };
            match layer.check(&parts, called) {
                None => inner.call(Request::from_parts(parts, body)).await,
                Some(refused) => Ok(refused),
            }
        }))
    }
}

/// The tools a request calls: `called` (those its body calls) and the one
/// its `Mcp-Method` / `Mcp-Name` headers name (the 2026-07-28 wire).
pub(crate) fn with_header_call(mut called: Vec<String>, headers: &http::HeaderMap) -> Vec<String> {
    let header = |n: http::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    if header(crate::names::MCP_METHOD) == Some("tools/call")
        && let Some(name) = header(crate::names::MCP_NAME)
    {
        called.push(name.to_owned());
    }
    called
}

impl ToolScopeLayer {
    /// The refusal of the request (its `parts`, and `called`: the tools its
    /// body calls), if it may not go on: 400 for an ambiguous body, 401 for
    /// an anonymous caller of a tool with requirements, 403 with the scopes
    /// needed.
    /// Notes what a scoped call needed for an audit record.
    fn check(
        &self,
        parts: &http::request::Parts,
        called: Result<Vec<String>, ()>,
    ) -> Option<Response> {
        let Ok(called) = called else {
            return Some(crate::refusal::refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "ambiguous tools/call message",
            ));
        };
        let tools = with_header_call(called, &parts.headers);
        let needed = self.scopes.needed(&self.server_scopes, &tools);
        let scoped = tools.iter().any(|t| self.scopes.needs_caller(t));
        // What the call needed, for the audit record (when an audit layer
        // is in front).
        let decisions = parts
            .extensions
            .get::<crate::auth::Decisions>()
            .filter(|d| d.note(|d| d.audited));
        match parts.extensions.get::<Principal>() {
            // Anonymous (the session policy allowed it): authenticate first.
            // The challenge names what the call needs (the server's scopes
            // and the tool's), so the client asks for all of it at once.
            None if scoped => {
                let err = AuthError::MissingCredentials;
                crate::observe::refused_here(err.outcome());
                return Some(
                    self.auth
                        .error_response_needing(&err, &parts.headers, &needed),
                );
            }
            Some(p) if scoped && !p.missing_scopes(&needed).is_empty() => {
                tracing::debug!(?tools, "tool call refused: insufficient scope");
                crate::observe::refused_here("insufficient_scope");
                if let Some(d) = decisions {
                    d.note(|d| d.required = Some(needed.clone()));
                }
                let err = AuthError::insufficient_scope(needed);
                return Some(self.auth.error_response(&err, &parts.headers));
            }
            _ => {}
        }
        if let (true, Some(d)) = (scoped, decisions) {
            d.note(|d| d.required = Some(needed));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_in_single_and_batched_messages() {
        let one = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[1,2]}}}"#;
        assert_eq!(called_tools(one), Ok(vec!["a".to_owned()]));
        let batch = br#"[{"method":"tools/call","params":{"name":"a"}},{"method":"tools/list"},{"method":"tools/call","params":{"name":"b"}}]"#;
        assert_eq!(
            called_tools(batch),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(called_tools(br#"{"method":"tools/list"}"#), Ok(vec![]));
        assert_eq!(called_tools(b"not json"), Ok(vec![]));
        let mentions = br#"{"method":"tools/list","params":{"cursor":"tools/call"}}"#;
        assert_eq!(called_tools(mentions), Ok(vec![]));
        let escaped = br#"{"method":"tools/call","params":{"name":"ad\u006din"}}"#;
        assert_eq!(called_tools(escaped), Ok(vec!["admin".to_owned()]));
    }

    #[test]
    fn ambiguous_calls_are_refused() {
        for body in [
            &br#"{"method":"tools/call","params":{"name":"get_time","name":"admin"}}"#[..],
            br#"{"method":"tools/list","method":"tools/call","params":{"name":"admin"}}"#,
            br#"{"method":"tools/call","params":{"arguments":{}}}"#,
            br#"{"method":"tools/call","params":{"name":7}}"#,
            br#"[{"method":"tools/call","params":{"name":"a","name":"b"}}]"#,
            br#"{"method":"tools/call","method":"tools/list","params":{"name":"admin"}}"#,
        ] {
            assert_eq!(
                called_tools(body),
                Err(()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn settings() {
        let vars = std::collections::HashMap::from([(
            "MCP_TOOL_SCOPES".to_owned(),
            "a=s1 s2, b=s3, a=s4".to_owned(),
        )]);
        let t = ToolScopes::new()
            .require("a", ["s0"])
            .require("d", ["s5"])
            .with_settings(&vars)
            .unwrap();
        // The setting replaces a's default; both of its entries count.
        assert_eq!(t.for_tool("a"), ["s1", "s2", "s4"]);
        assert_eq!(t.for_tool("b"), ["s3"]);
        assert_eq!(
            t.for_tool("d"),
            ["s5"],
            "tools it does not name keep theirs"
        );
        assert!(t.for_tool("c").is_empty());
        for bad in ["a", "=s", "a= ", "a=s,b"] {
            let vars =
                std::collections::HashMap::from([("MCP_TOOL_SCOPES".to_owned(), bad.to_owned())]);
            assert_eq!(
                ToolScopes::new().with_settings(&vars).unwrap_err().variable,
                "MCP_TOOL_SCOPES",
                "{bad}"
            );
        }
    }
}
