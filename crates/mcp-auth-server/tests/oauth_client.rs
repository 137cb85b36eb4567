//! The full OAuth flow end to end: `mcp-auth-client` against
//! `mcp-auth-server` (oauth2 strategy) behind a real authorization server
//! (npm `oidc-provider`), with a headless "browser" script as `$BROWSER`.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs Node 22 and
//! oidc-provider (`INTEROP_NODE`) and runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use common::{Server, client_bin};
use mcp_auth_integration_tests::free_port;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `oauth2` server (plus `server_env`) behind oidc-provider (plus
/// `provider_env`: `ACCESS_TOKEN_TTL`, `REDIRECT_URIS`, ...), both up; the
/// issuer's URL.
async fn behind_oidc_provider(
    server_env: &[(&str, &str)],
    provider_env: &[(&str, &str)],
) -> (Server, Provider, String) {
    let as_port = free_port();
    let issuer = format!("http://127.0.0.1:{as_port}");
    let mut env = vec![
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_ISSUER", issuer.as_str()),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
    ];
    env.extend_from_slice(server_env);
    let server = Server::start(&env);
    let provider = provider(as_port, &server.url(), provider_env);
    // The server tried the issuer's keys at start-up, before the issuer was
    // up; it retries within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    (server, provider, issuer)
}

/// Starts oidc-provider on `port` issuing tokens for `resource`, with more
/// of its settings in `env`.
fn provider(port: u16, resource: &str, env: &[(&str, &str)]) -> Provider {
    let node = std::env::var("INTEROP_NODE").unwrap_or_else(|_| "node".into());
    let child = Command::new(&node)
        .arg(repo().join("tests/interop/oidc/provider.mjs"))
        .env("PORT", port.to_string())
        .env("RESOURCE", resource)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {node} ({e}): run tests/run-all.sh, which installs Node 22 and oidc-provider"));
    Provider(wait_ready(child))
}

/// Waits for the provider's "ready" line, then keeps draining its output
/// (a closed pipe would kill it at its next log line).
fn wait_ready(mut child: Child) -> Child {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "oidc-provider: {line}");
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    child
}

fn run_client(home: &Path, browser_log: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(client_bin())
        .args(args)
        .env("MCP_AUTH_CLIENT_HOME", home)
        .env("BROWSER", repo().join("tests/interop/headless-browser.sh"))
        .env("BROWSER_LOG", browser_log)
        .env_remove("MCP_SERVER_URL")
        .env_remove("MCP_API_KEY")
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run_client` on a blocking thread, so the test's runtime stays free
/// while the client waits for its browser login.
async fn run_client_blocking(home: &Path, log: &Path, args: &[&str]) -> (bool, String, String) {
    let (home, log) = (home.to_owned(), log.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client(&home, &log, &args)
    })
    .await
    .unwrap()
}

/// A client command against `url` that may need a browser login (any free
/// callback port, 30 s to complete it).
async fn with_login(
    home: &Path,
    log: &Path,
    url: &str,
    command: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "--server",
        url,
        "--callback-port",
        "0",
        "--login-timeout",
        "30",
    ];
    args.extend_from_slice(command);
    run_client_blocking(home, log, &args).await
}

fn logins(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn login_in_a_browser_then_reuse_the_stored_token() {
    let (server, _as, issuer) = behind_oidc_provider(&[], &[]).await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("browser.log");
    let url = server.url();

    // First run: 401 → discovery → dynamic registration → browser login →
    // code → token (audience = this server) → the call.
    let (ok, out, err) = with_login(home.path(), &log, &url, &["call", "get_time"]).await;
    assert!(ok, "first run failed: {err}");
    assert!(chrono_like(out.trim()), "{out}");
    assert_eq!(logins(&log), 1, "one browser login");

    // Second run: the stored token, no login.
    let (ok, out, err) = with_login(home.path(), &log, &url, &["whoami"]).await;
    assert!(ok, "second run failed: {err}");
    let who: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(who["subject"], "test-user");
    assert_eq!(who["strategy"], "oauth2");
    assert_eq!(who["issuer"], issuer);
    assert_eq!(logins(&log), 1, "no second login");
    // The stored tokens are private to the user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = home.path().join("credentials");
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // logout forgets them; the next run logs in again.
    let (ok, out, _) = run_client(home.path(), &log, &["--server", &url, "logout"]);
    assert!(ok && out.contains("logged out"), "{out}");
    let (ok, _, err) = with_login(home.path(), &log, &url, &["list"]).await;
    assert!(ok, "{err}");
    assert_eq!(logins(&log), 2);
}

#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn a_pre_registered_confidential_client_logs_in() {
    let callback = free_port();
    let redirect = format!("http://127.0.0.1:{callback}/callback");
    let (server, _as, issuer) = behind_oidc_provider(&[], &[("REDIRECT_URIS", &redirect)]).await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("browser.log");
    let port = callback.to_string();
    let url = server.url();
    let (ok, out, err) = run_client_blocking(
        home.path(),
        &log,
        &[
            "--server",
            &url,
            "--issuer",
            &issuer,
            "--client-id",
            "mcp-confidential",
            "--client-secret",
            "mcp-confidential-secret-0123456789",
            "--callback-port",
            &port,
            "--login-timeout",
            "30",
            "whoami",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let who: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(who["client_id"], "mcp-confidential");
}

/// An expired access token is renewed with the stored refresh token: no
/// second browser login, and the server sees a new token.
#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn an_expired_access_token_is_refreshed_without_a_login() {
    let (server, _as, _) = behind_oidc_provider(
        // No clock-skew allowance: a token past its exp is refused at once.
        &[("MCP_JWT_LEEWAY", "0")],
        // Refresh tokens are not rotated here. The credential store's lock
        // stops two refreshes racing on one token, but rmcp (3.9 to 3.11) can still
        // drop a refresh in flight when the client shuts down after the
        // provider rotated the token; the provider then revokes the grant
        // on reuse and the next run logs in again (about one run in ten).
        // That rmcp limitation (docs/INTEROP.md) is not what this test is
        // about.
        &[("ACCESS_TOKEN_TTL", "2"), ("ROTATE_REFRESH_TOKEN", "false")],
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("browser.log");
    let url = server.url();

    let (ok, out, err) = with_login(home.path(), &log, &url, &["whoami"]).await;
    assert!(ok, "first run failed: {err}");
    let first: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(logins(&log), 1);

    // Past the access token's exp (2 s): the stored token is no longer
    // accepted, the refresh token still is.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (ok, out, err) = with_login(home.path(), &log, &url, &["whoami"]).await;
    assert!(ok, "second run failed: {err}");
    let second: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(logins(&log), 1, "refreshed, not logged in again: {err}");
    assert_eq!(second["subject"], "test-user");
    assert_ne!(
        first["claims"]["jti"], second["claims"]["jti"],
        "the server saw a new access token"
    );
    assert!(
        second["expires_at"].as_u64() > first["expires_at"].as_u64(),
        "{first} / {second}"
    );
}

/// The scopes (sorted) of each authorization URL the browser was sent to,
/// and its client_id.
fn login_requests(log: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let u = url::Url::parse(l).unwrap();
            let get = |k: &str| {
                u.query_pairs()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let mut scopes: Vec<String> =
                get("scope").split_whitespace().map(str::to_owned).collect();
            scopes.sort();
            (scopes.join(" "), get("client_id"))
        })
        .collect()
}

/// Issue #20: the first login asks for the challenge's scope (not the
/// resource metadata's whole list); a 403 `insufficient_scope` later asks
/// for the scopes held plus the challenge's, with the client registered at
/// the first login.
#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn step_up_adds_the_challenges_scope_with_the_same_registration() {
    let (server, _as, _) =
        behind_oidc_provider(&[("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools")], &[]).await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("browser.log");
    let url = server.url();

    let (ok, _, err) = with_login(home.path(), &log, &url, &["call", "get_time"]).await;
    assert!(ok, "first run failed: {err}");
    let (ok, out, err) = with_login(home.path(), &log, &url, &["call", "admin_status"]).await;
    assert!(ok, "step-up failed: {err}");
    assert!(out.contains("uptime_seconds"), "{out}");
    let logins = login_requests(&log);
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0].0, "mcp:tools offline_access", "{logins:?}");
    assert_eq!(
        logins[1].0, "mcp:admin mcp:tools offline_access",
        "{logins:?}"
    );
    assert_eq!(logins[0].1, logins[1].1, "one registration: {logins:?}");

    // `--scope` is kept and extended the same way.
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("browser.log");
    let (ok, _, err) = with_login(
        home.path(),
        &log,
        &url,
        &["--scope", "mcp:tools", "call", "admin_status"],
    )
    .await;
    assert!(ok, "{err}");
    let logins = login_requests(&log);
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0].0, "mcp:tools offline_access");
    assert_eq!(logins[1].0, "mcp:admin mcp:tools offline_access");
}

fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T')
}

/// An EC P-256 key pair made with openssl in `dir`: (private key PEM
/// (PKCS#8), public key PEM).
fn p256_key_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, public) = (dir.join("key.pem"), dir.join("public.pem"));
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ],
        vec!["pkey", "-pubout", "-in"],
    ] {
        let mut cmd = Command::new("openssl");
        cmd.args(&args);
        if args[0] == "genpkey" {
            cmd.arg(&key);
        } else {
            cmd.arg(&key).arg("-out").arg(&public);
        }
        let out = cmd.output().expect("openssl");
        assert!(out.status.success(), "openssl {}: {out:?}", args[0]);
    }
    (key, public)
}

/// Issue #16: machine-to-machine. `--client-credentials` gets a token
/// without a browser, by secret (client_secret_basic, from the
/// authorization server's metadata) and by private key (private_key_jwt):
/// discovery from the 401, `resource` = this server (oidc-provider issues
/// the JWT for it, which the server verifies), scopes in the spec's order;
/// a 403 for more scope asks for a new token with both; a wrong secret is
/// one line naming the authorization server's error, never the secret.
#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn machine_to_machine_without_a_browser() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = p256_key_pair(keys.path());
    let public = public.to_string_lossy().into_owned();
    let (server, _as, issuer) = behind_oidc_provider(
        &[
            ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools,mcp:admin"),
            ("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        ],
        &[("MACHINE_PUBLIC_KEY", &public)],
    )
    .await;
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("browser.log");
    let secret = "mcp-machine-secret-0123456789abcdef";
    let machine = |extra: &[&str]| {
        let mut args = vec![
            "--server",
            url.as_str(),
            "--issuer",
            issuer.as_str(),
            "--client-credentials",
            "--client-id",
            "mcp-machine",
            "--client-secret",
            secret,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client(home.path(), &log, &args)
    };

    let (ok, out, err) = run(machine(&["whoami"]));
    assert!(ok, "{err}");
    let who: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(who["client_id"], "mcp-machine", "{who}");
    assert_eq!(who["issuer"], issuer.as_str(), "{who}");
    assert_eq!(who["scopes"], serde_json::json!(["mcp:tools"]), "{who}");

    // admin_status needs mcp:admin: a 403, then a new token for both.
    let (ok, out, err) = run(machine(&["call", "admin_status"]));
    assert!(ok, "{err}");
    assert!(out.contains("uptime_seconds"), "{out}");
    assert!(err.contains("asking for a new token"), "{err}");

    // private_key_jwt with the key oidc-provider holds the public half of.
    let key = key.to_string_lossy().into_owned();
    let (ok, out, err) = run([
        "--server",
        url.as_str(),
        "--issuer",
        issuer.as_str(),
        "--client-credentials",
        "--client-id",
        "mcp-machine-key",
        "--private-key",
        key.as_str(),
        "whoami",
    ]
    .map(str::to_owned)
    .to_vec());
    assert!(ok, "{err}");
    let who: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(who["client_id"], "mcp-machine-key", "{who}");

    // A wrong secret: one line, the authorization server's error, no secret.
    let wrong = "not-the-machine-secret-0123456789";
    let (ok, out, err) = run([
        "--server",
        url.as_str(),
        "--issuer",
        issuer.as_str(),
        "--client-credentials",
        "--client-id",
        "mcp-machine",
        "--client-secret",
        wrong,
        "whoami",
    ]
    .map(str::to_owned)
    .to_vec());
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: whoami: ") && err.contains("invalid_client"),
        "{err}"
    );
    assert!(!err.contains(wrong), "{err}");

    assert_eq!(logins(&log), 0, "no browser was opened");
    assert!(
        !home.path().join("credentials").exists(),
        "machine tokens are not stored"
    );
}
