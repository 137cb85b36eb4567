//! The server's tools: `get_time` and `whoami`.

use mcp_auth_core::Principal;
use mcp_auth_transport::principal_from_parts;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    service::RequestContext,
    tool, tool_handler, tool_router,
};

/// The MCP handler of `mcp-auth-server`.
#[derive(Clone)]
pub struct Tools {
    tool_router: ToolRouter<Self>,
    name: String,
    version: String,
}

impl Tools {
    /// Tools announcing themselves as `name` `version`.
    pub fn new(name: String, version: String) -> Self {
        Self {
            tool_router: Self::tool_router(),
            name,
            version,
        }
    }
}

/// The caller of a request: the verified principal on HTTP, the local user
/// on stdio (whoever started the process).
fn caller(ctx: &RequestContext<RoleServer>) -> Principal {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(principal_from_parts)
        .cloned()
        .unwrap_or_else(|| Principal::new("local-process", "stdio"))
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
        let who = serde_json::to_value(caller(&ctx))
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut result = CallToolResult::structured(who.clone());
        result.content = vec![ContentBlock::text(who.to_string())];
        Ok(result)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.name.clone(), self.version.clone()))
            .with_instructions(
                "get_time returns the current time; whoami shows who you are authenticated as.",
            )
    }
}
