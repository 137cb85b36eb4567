//! The server's tools: `get_time`, `whoami`, and `admin_status` (which needs
//! the `mcp:admin` scope, to show per-tool scopes and step-up).

use std::{sync::Arc, time::Instant};

use mcp_auth_core::Principal;
use mcp_auth_transport::{ToolScopes, principal_from_parts};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{
        CacheScope, CallToolResult, ContentBlock, Implementation, ListToolsResult,
        PaginatedRequestParams, ProtocolVersion, ResultType, ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};

/// The MCP handler of `mcp-auth-server`.
#[derive(Clone)]
pub struct Tools {
    tool_router: ToolRouter<Self>,
    name: String,
    version: String,
    scopes: Arc<ToolScopes>,
    started: Instant,
}

impl Tools {
    /// Tools announcing themselves as `name` `version`; `scopes` decides
    /// which tools a caller sees and may call.
    pub fn new(name: String, version: String, scopes: ToolScopes) -> Self {
        Self {
            tool_router: Self::tool_router(),
            name,
            version,
            scopes: Arc::new(scopes),
            started: Instant::now(),
        }
    }

    /// The names of the server's tools, before any is built.
    pub fn all_names() -> Vec<String> {
        Self::tool_router()
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    /// The names of the tools (the metrics count calls under these).
    pub fn names(&self) -> Vec<String> {
        self.tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }
}

fn http_principal(ctx: &RequestContext<RoleServer>) -> Option<&Principal> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(principal_from_parts)
}

/// The caller of a request: the verified principal on HTTP, the local user
/// on stdio (whoever started the process). An HTTP request let in without
/// credentials (the session policy allows it) has none: the HTTP layer
/// answers it 401 before it gets here (`whoami` needs a caller), and this
/// refuses it behind any other stack.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    match ctx.extensions.get::<http::request::Parts>() {
        None => Ok(Principal::new("local-process", "stdio")),
        Some(parts) => principal_from_parts(parts).cloned().ok_or_else(|| {
            ErrorData::invalid_request("whoami needs an authenticated caller", None)
        }),
    }
}

#[tool_router]
impl Tools {
    #[tool(description = "Current date and time (ISO 8601, UTC)")]
    fn get_time(&self) -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    #[tool(
        description = "The authenticated caller: subject, issuer, client id, scopes, groups, strategy, expiry"
    )]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let who = serde_json::to_value(caller(&ctx)?)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut result = CallToolResult::structured(who.clone());
        result.content = vec![ContentBlock::text(who.to_string())];
        Ok(result)
    }

    #[tool(description = "Server status for administrators (needs the mcp:admin scope)")]
    fn admin_status(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        // The HTTP layer refuses callers without the scope before this runs;
        // check again so the tool is safe behind any transport (an HTTP
        // request let in without credentials has no scope at all).
        if ctx.extensions.get::<http::request::Parts>().is_some() {
            let allowed =
                http_principal(&ctx).is_some_and(|p| self.scopes.may_call(p, "admin_status"));
            if !allowed {
                return Err(ErrorData::invalid_request("insufficient scope", None));
            }
        }
        let status = serde_json::json!({
            "server": self.name,
            "version": self.version,
            "uptime_seconds": self.started.elapsed().as_secs(),
        });
        let mut result = CallToolResult::structured(status.clone());
        result.content = vec![ContentBlock::text(status.to_string())];
        Ok(result)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    /// Only the tools the caller may call.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let versioned = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let all = self.tool_router.list_all();
        let tools = match context.extensions.get::<http::request::Parts>() {
            // stdio: the local user, who started the process.
            None => all,
            Some(_) => match http_principal(&context) {
                Some(p) => self.scopes.visible(Some(p), all),
                // Let in without credentials (the session policy allows
                // it): not the tools that need a caller.
                None => self.scopes.visible_to_anonymous(all),
            },
        };
        let mut result = ListToolsResult::with_all_items(tools);
        result.result_type = Some(ResultType::COMPLETE);
        if versioned {
            // The list depends on who asks: never share it between users.
            result.ttl_ms = Some(0);
            result.cache_scope = Some(CacheScope::Private);
        }
        Ok(result)
    }

    fn get_info(&self) -> ServerConfig {
        // Prompts, resources and completions are advertised, and empty:
        // clients that list everything get empty lists instead of
        // "method not found" (rmcp refuses unadvertised methods).
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .build(),
        )
        .with_server_info(Implementation::new(self.name.clone(), self.version.clone()))
        .with_instructions(
            "get_time returns the current time; whoami shows who you are authenticated as.",
        )
    }
}
