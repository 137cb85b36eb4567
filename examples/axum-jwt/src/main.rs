//! A plain axum app (no MCP) that protects its `/api` routes with JWT
//! bearer tokens and leaves `/health` open. Handlers take the verified
//! `Principal` as an extractor (`Option<Principal>` where a caller may be
//! anonymous).
//!
//! ```text
//! JWT_SECRET=$(openssl rand -base64 48) cargo run -p example-axum-jwt
//! curl -s http://127.0.0.1:8003/api/me     # 401 with a Bearer challenge
//! ```

use axum::{Router, routing::get};
use mcp_auth_core::Principal;
use mcp_auth_strategies::{Algorithm, Audience, JwtAuthenticator, JwtVerifier, VerifyKey};
use mcp_auth_transport::AuthLayer;

async fn me(who: Principal) -> String {
    format!("{} with scopes [{}]\n", who.subject, who.scopes.join(" "))
}

async fn hello(who: Option<Principal>) -> String {
    match who {
        Some(p) => format!("hello {}\n", p.subject),
        None => "hello stranger\n".to_owned(),
    }
}

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
    let secret = std::env::var("JWT_SECRET").map_err(|_| "set JWT_SECRET (32 bytes or more)")?;
    let verifier = JwtVerifier::builder()
        .static_keys(vec![
            VerifyKey::hmac(secret.as_bytes(), Algorithm::HS256)
                .map_err(|e| format!("JWT_SECRET: {e}"))?,
        ])
        .issuer("https://issuer.example")
        .audience(Audience::OneOf(vec!["https://api.example".into()]))
        .build()?;

    let api = Router::new()
        .route("/api/me", get(me))
        .route_layer(AuthLayer::new(JwtAuthenticator::new(verifier)));
    // Not behind the layer: `Option<Principal>` is `None` here.
    let app = api
        .route("/hello", get(hello))
        .route("/health", get(|| async { "ok" }));

    let port = std::env::var("PORT").unwrap_or_else(|_| "8003".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    eprintln!("listening on http://127.0.0.1:{port}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let cancel = mcp_auth_transport::CancellationToken::new();
    mcp_auth_transport::serve(listener, app, cancel, shutdown).await?;
    Ok(())
}
