//! Process control: the servers under test (the `mcp-auth-server` binary in
//! each auth mode, the peer SDK servers), started on a free loopback port and
//! killed on drop, and the token issuer they all trust, which this process
//! serves on loopback.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::json;

use crate::{API_KEY, Args};

const RSA_PEM: &[u8] = include_bytes!("../../mcp-auth-jwt/tests/keys/rsa.pem");

/// Where the peer servers' sources are (this crate's `peers/`).
const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers");
pub(crate) const PEER_MODES: [&str; 2] = ["python-sdk", "typescript-sdk"];

/// A running server, killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits until the process accepts connections on `port`; an error
    /// naming `what` if it exits first or takes longer than `timeout`.
    async fn listening(mut self, port: u16, timeout: Duration, what: &str) -> Result<Self, String> {
        let deadline = Instant::now() + timeout;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{what} exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("{what} did not start"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(self)
    }

    /// The process id, for reading `/proc/PID/*`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The token issuer: an RS256 key whose JWKS and metadata this process serves.
pub(crate) struct Issuer {
    pub(crate) base: String,
    key: EncodingKey,
}

impl Issuer {
    pub(crate) async fn start() -> Result<Issuer, String> {
        let key = EncodingKey::from_rsa_pem(RSA_PEM).map_err(|e| format!("bench key: {e}"))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).map_err(|e| e.to_string())?;
        jwk.common.key_id = Some("bench".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("issuer bind: {e}"))?;
        let base = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let md = json!({
            "issuer": base, "jwks_uri": format!("{base}/jwks.json"),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "response_types_supported": ["code"],
        });
        let jwks = json!({ "keys": [jwk] });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(md) }),
            )
            .route(
                "/jwks.json",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Issuer { base, key })
    }

    pub(crate) fn mint(&self, audience: &str, n: usize) -> Result<String, String> {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("bench".into());
        h.typ = Some("at+jwt".into());
        let claims = json!({
            "iss": self.base, "aud": audience, "sub": "bench-user", "client_id": "bench",
            "scope": "mcp:tools", "jti": format!("bench-{n}"),
            "exp": jsonwebtoken::get_current_timestamp() + 3600,
        });
        jsonwebtoken::encode(&h, &claims, &self.key).map_err(|e| format!("minting: {e}"))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

pub(crate) async fn start_server(
    bin: &std::path::Path,
    mode: &str,
    issuer: &Issuer,
    sessions: usize,
    extra_env: &[(String, String)],
) -> Result<Server, String> {
    let port = free_port()?;
    let limit = (sessions + 64).to_string();
    let total = (sessions + 65).to_string();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .env("LOG_LEVEL", "warn")
        .env("HTTP_MAX_CONCURRENT_SESSIONS", &total)
        .env("MCP_MAX_SESSIONS_PER_PRINCIPAL", &limit)
        .env("MCP_MAX_ANONYMOUS_SESSIONS", &limit)
        .args([
            "--port",
            &port.to_string(),
            "--transport",
            "streamable-http",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match mode {
        "none" | "none-bearer" => cmd.env("MCP_AUTH_STRATEGY", "none"),
        "api_key" => cmd
            .env("MCP_AUTH_STRATEGY", "api_key")
            .env("MCP_API_KEYS", API_KEY),
        "oauth2" | "oauth2-distinct" => cmd
            .env("MCP_AUTH_STRATEGY", "oauth2")
            .env("MCP_OAUTH_ISSUER", &issuer.base)
            .env("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        other => return Err(format!("--modes: unknown mode {other:?}")),
    };
    let child = cmd
        .spawn()
        .map_err(|e| format!("--server {}: {e}", bin.display()))?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    };
    server
        .listening(
            port,
            Duration::from_secs(30),
            &format!("server in mode {mode}"),
        )
        .await
}
/// Starts a peer server (`python-sdk` or `typescript-sdk`) verifying the
/// issuer's RS256 tokens for its own URL.
pub(crate) async fn start_peer(args: &Args, mode: &str, issuer: &Issuer) -> Result<Server, String> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let jwks = format!("{}/jwks.json", issuer.base);
    let (program, script) = match mode {
        "python-sdk" => (args.python.clone(), "python_server.py"),
        _ => (
            args.node
                .clone()
                .unwrap_or_else(|| format!("{PEERS}/node_modules/node/bin/node").into()),
            "ts_server.mjs",
        ),
    };
    // The peer runs in peers/: a relative path given on the command line
    // means one relative to here (a bare name is looked up in PATH).
    let program = if program.components().count() > 1 {
        std::path::absolute(&program).map_err(|e| format!("{}: {e}", program.display()))?
    } else {
        program
    };
    let child = Command::new(&program)
        .current_dir(PEERS)
        .args([script, &port.to_string(), &issuer.base, &jwks, &url])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "{mode}: cannot start {} (run crates/mcp-auth-bench/peers/run.sh, which installs the peers): {e}",
                program.display()
            )
        })?;
    Server { child, url }
        .listening(port, Duration::from_secs(60), &format!("{mode} peer"))
        .await
}
