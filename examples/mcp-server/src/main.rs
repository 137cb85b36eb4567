//! An rmcp MCP server with its own tool, getting its auth from the
//! `mcp-auth` crates: API keys from `MCP_API_KEYS` (named keys carry
//! scopes) and, through a closure, an `X-Internal-Token` shared with a
//! sidecar (`INTERNAL_TOKEN`, 32 characters or more; without it there is no
//! sidecar access). Tools see the verified caller as `Caller`.
//!
//! ```text
//! MCP_API_KEYS=ops:my-long-random-api-key-123:notes.read cargo run -p example-mcp-server
//! curl -s http://127.0.0.1:8002/health
//! ```

use std::sync::Arc;

use mcp_auth_core::{
    AuthError, AuthRequest, ChallengeScheme, FnAuthenticator, Principal, secrets_equal,
    settings::ProcessEnv,
};
use mcp_auth_strategies::{AnyOf, ApiKeyAuthenticator};
use mcp_auth_transport::{Caller, HttpConfig, McpHttpApp, ToolScopes};
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

/// Errors as one readable line (`main` returning them would print their
/// `Debug` form).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let keys = ApiKeyAuthenticator::from_settings(&ProcessEnv)?
        .ok_or("set MCP_API_KEYS to a comma-separated list of keys (16+ characters each)")?;
    let mut auth = AnyOf::new().with(keys);
    // The sidecar's token comes from the configuration, never the code, and
    // is compared in constant time.
    if let Ok(token) = std::env::var("INTERNAL_TOKEN") {
        if token.len() < 32 {
            return Err("INTERNAL_TOKEN must be 32 characters or more".into());
        }
        let expected: Arc<str> = token.into();
        let sidecar = FnAuthenticator::new(move |req: AuthRequest| {
            let expected = expected.clone();
            async move {
                match req.headers.get("x-internal-token") {
                    None => Err(AuthError::MissingCredentials),
                    Some(t) if secrets_equal(t.as_bytes(), expected.as_bytes()) => {
                        Ok(Principal::new("sidecar", "internal").with_scopes(["notes.read"]))
                    }
                    Some(_) => Err(AuthError::invalid_token("unknown internal token")),
                }
            }
        })
        .named("internal")
        .with_scheme(ChallengeScheme::ApiKey {
            header: "X-Internal-Token".into(),
        });
        auth = auth.with(sidecar);
    }

    // Safe defaults for this URL; `HttpConfig::from_settings` would read
    // the HTTP_* variables instead.
    // `hello` needs the `notes.read` scope: a named key that carries it,
    // or the sidecar.
    let port = std::env::var("PORT").unwrap_or_else(|_| "8002".into());
    let mut config = HttpConfig::new(format!("http://127.0.0.1:{port}/mcp").parse()?);
    config.tool_scopes = ToolScopes::new().require("hello", ["notes.read"]);
    let app = McpHttpApp::new(config, auth)?;
    let router = app.rmcp_router(|| {
        Ok(Notes {
            tool_router: Notes::tool_router(),
        })
    });

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    eprintln!("listening on http://127.0.0.1:{port}/mcp");
    app.serve(listener, router, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
