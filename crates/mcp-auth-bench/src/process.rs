//! Process control: the servers under test (the `mcp-auth-server` binary in
//! each auth mode, the peer SDK servers), started on a free loopback port and
//! killed on drop, the token issuer they all trust, which this process
//! serves on loopback (with a minimal GitHub-style login provider for the
//! `facade` modes), and the `redis-server` the `-redis` modes use.

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
        if let Some(port) = self.url.split(':').nth(2).and_then(|p| p.split('/').next()) {
            let _ = std::fs::remove_file(audit_log(port.parse().unwrap_or(0)));
        }
    }
}

/// The audit log of the `oauth2-observed` server on `port`.
fn audit_log(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "mcp-auth-bench-audit-{}-{port}.jsonl",
        std::process::id()
    ))
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

/// The facade's client at the bench's login provider.
pub(crate) const PROVIDER_CLIENT_ID: &str = "bench-proxy";
const PROVIDER_CLIENT_SECRET: &str = "bench-proxy-secret-0123456789abcdef";
/// `MCP_PROXY_ENCRYPTION_KEY` for the facade modes (32 bytes of 0x2a, base64):
/// configured so the server does not warn about a generated one.
const PROXY_ENCRYPTION_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The token issuer: an RS256 key whose JWKS and metadata this process
/// serves; and, for the `facade` modes, a login provider in GitHub's shape
/// (`/login/oauth/authorize` sends the browser straight back with a code,
/// `/login/oauth/access_token` answers an opaque token for any code, `/user`
/// names one user), so a whole facade login runs without a person and with
/// next to no provider cost.
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
        let app = provider_routes()
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
        self.mint_bound(audience, n, None)
    }

    /// An access token for `audience`, bound to the DPoP key whose RFC 7638
    /// thumbprint is `jkt` (`cnf.jkt`) when one is given.
    pub(crate) fn mint_bound(
        &self,
        audience: &str,
        n: usize,
        jkt: Option<&str>,
    ) -> Result<String, String> {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("bench".into());
        h.typ = Some("at+jwt".into());
        let mut claims = json!({
            "iss": self.base, "aud": audience, "sub": "bench-user", "client_id": "bench",
            "scope": "mcp:tools", "jti": format!("bench-{n}"),
            "exp": jsonwebtoken::get_current_timestamp() + 3600,
        });
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        jsonwebtoken::encode(&h, &claims, &self.key).map_err(|e| format!("minting: {e}"))
    }
}

/// The login provider's three endpoints (see [`Issuer`]).
fn provider_routes() -> axum::Router {
    use std::collections::HashMap;

    use axum::{
        extract::Query,
        http::{StatusCode, header},
        response::IntoResponse,
    };
    let authorize = |Query(q): Query<HashMap<String, String>>| async move {
        let (Some(back), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let Ok(mut back) = reqwest::Url::parse(back) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        back.query_pairs_mut()
            .append_pair("code", "bench-provider-code")
            .append_pair("state", state);
        (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
    };
    axum::Router::new()
        .route("/login/oauth/authorize", axum::routing::get(authorize))
        .route(
            "/login/oauth/access_token",
            axum::routing::post(|| async {
                axum::Json(json!({
                    "access_token": "bench-provider-token",
                    "token_type": "bearer",
                    "scope": "read:user",
                }))
            }),
        )
        .route(
            "/user",
            axum::routing::get(|| async {
                axum::Json(json!({
                    "id": 4242, "login": "bench-user", "email": "bench-user@example.com",
                }))
            }),
        )
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// `taskset` (found on this program's `PATH`) and the CPUs servers are
/// started on (`--server-cpus`), when set.
static SERVER_CPUS: std::sync::OnceLock<(std::path::PathBuf, String)> = std::sync::OnceLock::new();

/// Starts every mcp-auth-server from now on under `taskset -c cpus`. The
/// servers get a cleared environment, so `taskset` is looked up here, on
/// this program's `PATH`.
pub(crate) fn pin_servers(cpus: String) -> Result<(), String> {
    let taskset = std::env::var_os("PATH")
        .and_then(|path| find_in(&path, "taskset"))
        .ok_or("--server-cpus: taskset (util-linux) is not on PATH")?;
    let _ = SERVER_CPUS.set((taskset, cpus));
    Ok(())
}

/// The file `name` in the first directory of `path` (a `PATH`) that has one.
fn find_in(path: &std::ffi::OsStr, name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
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
    // taskset execs the server: the child's pid (for its CPU time and
    // memory) is the server's.
    let mut cmd = match SERVER_CPUS.get() {
        Some((taskset, cpus)) => {
            let mut c = Command::new(taskset);
            c.arg("-c").arg(cpus).arg(bin);
            c
        }
        None => Command::new(bin),
    };
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
        "oauth2" | "oauth2-distinct" | "oauth2-redis" | "oauth2-stateless" => cmd
            .env("MCP_AUTH_STRATEGY", "oauth2")
            .env("MCP_OAUTH_ISSUER", &issuer.base)
            .env("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        // As oauth2, with the Prometheus metrics and the audit log on (a
        // file in the temporary directory, removed when the server stops).
        // (oauth2-metrics and oauth2-audit: one of the two.)
        "oauth2-observed" | "oauth2-metrics" | "oauth2-audit" => {
            cmd.env("MCP_AUTH_STRATEGY", "oauth2")
                .env("MCP_OAUTH_ISSUER", &issuer.base)
                .env("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools");
            if mode != "oauth2-audit" {
                cmd.env("MCP_METRICS_ADDR", format!("127.0.0.1:{}", free_port()?));
            }
            if mode != "oauth2-metrics" {
                cmd.env("MCP_AUDIT_LOG", audit_log(port));
            }
            &mut cmd
        }
        // As oauth2, with DPoP-bound tokens only (the proofs' `htu` is the
        // URL the server derives from its bound address, as `url` below;
        // with the default memory store the replay records stay in the
        // server's memory).
        "oauth2-dpop" => cmd
            .env("MCP_AUTH_STRATEGY", "oauth2")
            .env("MCP_OAUTH_ISSUER", &issuer.base)
            .env("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools")
            .env("MCP_DPOP", "require"),
        m if m.starts_with("facade") => cmd
            // The login facade in front of the bench's provider: the server
            // signs its own ES256 access tokens and verifies them with the
            // same verifier (a static key instead of a JWKS).
            .env("MCP_AUTH_STRATEGY", "oauth2")
            .env("MCP_SERVER_URL", format!("http://127.0.0.1:{port}/mcp"))
            .env("MCP_OAUTH_CLIENT_ID", PROVIDER_CLIENT_ID)
            .env("MCP_OAUTH_CLIENT_SECRET", PROVIDER_CLIENT_SECRET)
            .env(
                "MCP_OAUTH_AUTH_URL",
                format!("{}/login/oauth/authorize", issuer.base),
            )
            .env(
                "MCP_OAUTH_TOKEN_URL",
                format!("{}/login/oauth/access_token", issuer.base),
            )
            .env("MCP_OAUTH_USERINFO_URL", format!("{}/user", issuer.base))
            .env("MCP_OAUTH_SCOPE", "read:user")
            .env("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools")
            .env("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools")
            .env("MCP_PROXY_ENCRYPTION_KEY", PROXY_ENCRYPTION_KEY),
        other => return Err(format!("--modes: unknown mode {other:?}")),
    };
    let child = cmd.spawn().map_err(|e| match SERVER_CPUS.get() {
        Some((taskset, _)) => format!(
            "--server-cpus: {} {}: {e}",
            taskset.display(),
            bin.display()
        ),
        None => format!("--server {}: {e}", bin.display()),
    })?;
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
/// `redis-server` (`--redis-server`) on a free loopback port, without
/// persistence; its `redis://` URL.
pub(crate) async fn start_redis(program: &std::path::Path) -> Result<Server, String> {
    let port = free_port()?;
    let child = Command::new(program)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("--redis-server {}: {e}", program.display()))?;
    Server {
        child,
        url: format!("redis://127.0.0.1:{port}/0"),
    }
    .listening(port, Duration::from_secs(10), "redis-server")
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

#[cfg(test)]
mod tests {
    use super::find_in;

    #[test]
    fn a_program_is_found_in_the_first_path_directory_that_has_it() {
        let root = std::env::temp_dir().join(format!("bench-find-in-{}", std::process::id()));
        let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
        for dir in [&a, &b, &c] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(b.join("taskset"), "").unwrap();
        std::fs::write(c.join("taskset"), "").unwrap();
        // A directory of that name is not the program.
        std::fs::create_dir_all(a.join("taskset")).unwrap();
        let path = std::env::join_paths([&a, &b, &c]).unwrap();
        assert_eq!(find_in(&path, "taskset"), Some(b.join("taskset")));
        assert_eq!(find_in(&path, "missing"), None);
        let only_a = std::env::join_paths([&a]).unwrap();
        assert_eq!(find_in(&only_a, "taskset"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
