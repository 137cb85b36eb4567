//! Another project's MCP server that gets its auth from the `mcp-auth` crates.
//!
//! ```text
//! MCP_API_KEYS=my-long-random-api-key-123 \
//!   cargo run -p mcp-auth-transport --example embedded_server
//! curl -s http://127.0.0.1:8002/health
//! ```
//!
//! It accepts API keys from `MCP_API_KEYS` and, through a closure, a
//! `X-Internal-Token` shared with a sidecar; tools see the caller as `Caller`.

use mcp_auth_core::{
    AuthError, AuthRequest, ChallengeScheme, FnAuthenticator, Principal, settings::ProcessEnv,
};
use mcp_auth_strategies::{AnyOf, ApiKeyAuthenticator};
use mcp_auth_transport::{Caller, HttpConfig, McpHttpApp};
use rmcp::{
    ServerHandler, handler::server::router::tool::ToolRouter, tool, tool_handler, tool_router,
};

#[derive(Clone)]
struct Notes {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Notes {
    #[tool(description = "Says who is calling")]
    fn hello(&self, Caller(who): Caller) -> String {
        format!("hello {} (via {})", who.subject, who.strategy)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = ApiKeyAuthenticator::from_settings(&ProcessEnv)?
        .ok_or("set MCP_API_KEYS to a comma-separated list of keys (16+ characters each)")?;
    let sidecar = FnAuthenticator::new(|req: AuthRequest| async move {
        match req.headers.get("x-internal-token") {
            None => Err(AuthError::MissingCredentials),
            Some(t) if t == "sidecar-token-please-change" => {
                Ok(Principal::new("sidecar", "internal"))
            }
            Some(_) => Err(AuthError::invalid_token("unknown internal token")),
        }
    })
    .named("internal")
    .with_scheme(ChallengeScheme::ApiKey {
        header: "X-Internal-Token".into(),
    });
    let auth = AnyOf::new().with(keys).with(sidecar);

    let config = HttpConfig::from_settings(&ProcessEnv, "http://127.0.0.1:8002/mcp".parse()?)?;
    let app = McpHttpApp::new(config, auth)?;
    let router = app.rmcp_router(|| {
        Ok(Notes {
            tool_router: Notes::tool_router(),
        })
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8002").await?;
    eprintln!("listening on http://127.0.0.1:8002/mcp");
    mcp_auth_transport::serve(listener, router, app.cancellation_token(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
