//! The authorization-server facade in the real binary: `MCP_AUTH_STRATEGY=
//! oauth2` with the provider's login named, an upstream provider without
//! dynamic registration (oidc-provider, one static confidential client), and
//! `mcp-auth-client` logging in with no pre-registration: it registers with
//! the server, the user approves it on the consent page (a headless browser
//! script presses Allow), logs in at the provider, and calls tools with the
//! server's own token.
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
use mcp_auth_integration_tests::{UpstreamProvider, free_port};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server with the facade in front of an upstream in `mode`.
fn facade(mode: &str) -> (Server, UpstreamProvider) {
    facade_with(mode, &[])
}

/// `facade` with more server settings.
fn facade_with(mode: &str, extra: &[(&str, &str)]) -> (Server, UpstreamProvider) {
    let port = free_port();
    let up_port = free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let up = UpstreamProvider::start(up_port, &callback, mode);
    let issuer = format!("http://127.0.0.1:{up_port}");
    let port_s = port.to_string();
    let mut env = vec![
        ("PORT", port_s.as_str()),
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_CLIENT_ID", "mcp-proxy"),
        (
            "MCP_OAUTH_CLIENT_SECRET",
            "mcp-proxy-secret-0123456789abcdef",
        ),
        ("MCP_OAUTH_CALLBACK_URL", callback.as_str()),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
    ];
    let (a, t, u) = (
        format!("{issuer}/auth"),
        format!("{issuer}/token"),
        format!("{issuer}/user"),
    );
    if mode == "oidc" {
        env.push(("MCP_OAUTH_ISSUER", issuer.as_str()));
        env.push(("MCP_OAUTH_SCOPE", "openid email"));
    } else {
        env.push(("MCP_OAUTH_AUTH_URL", a.as_str()));
        env.push(("MCP_OAUTH_TOKEN_URL", t.as_str()));
        env.push(("MCP_OAUTH_USERINFO_URL", u.as_str()));
        env.push(("MCP_OAUTH_SCOPE", "openid"));
    }
    env.extend_from_slice(extra);
    (Server::start(&env), up)
}

fn client(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(client_bin())
        .args(["--callback-port", "0", "--login-timeout", "30"])
        .args(args)
        .env("MCP_AUTH_CLIENT_HOME", home)
        .env("BROWSER", repo().join("tests/interop/consent-browser.py"))
        .env("CONSENT_LOG", home.join("consent.log"))
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

async fn client_async(home: &Path, args: &[&str]) -> (bool, String, String) {
    let home = home.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        client(&home, &args)
    })
    .await
    .unwrap()
}

async fn a_client_without_registration_logs_in(mode: &str, subject: &str) {
    let (server, _up) = facade(mode);
    // The metadata names the facade as the authorization server.
    let prm: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        server.base()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(prm["authorization_servers"][0], server.base());
    let home = tempfile::tempdir().unwrap();
    let (ok, out, err) = client_async(home.path(), &["--server", &server.url(), "whoami"]).await;
    assert!(
        ok,
        "login through the facade failed: {err}\nserver: {}",
        server.stderr()
    );
    let who: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(who["subject"], subject);
    assert_eq!(who["issuer"], server.base());
    assert_eq!(who["strategy"], "oauth2");
    let consents = std::fs::read_to_string(home.path().join("consent.log")).unwrap();
    assert_eq!(
        consents.lines().count(),
        1,
        "the consent page was shown once"
    );
    // The stored token is reused; the provider's token never reached the client.
    let (ok, out, err) = client_async(
        home.path(),
        &["--server", &server.url(), "call", "get_time"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(!out.trim().is_empty());
    let stored = std::fs::read_dir(home.path().join("credentials"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(!stored.contains("octocat@example.com") || stored.contains("access_token"));
    assert!(
        !server.stderr().contains("mcp-proxy-secret"),
        "no secret in the log"
    );
}

#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn mcp_auth_client_logs_in_through_an_oidc_provider() {
    a_client_without_registration_logs_in("oidc", "octocat").await;
}

#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn mcp_auth_client_logs_in_through_a_github_style_provider() {
    a_client_without_registration_logs_in("github", "583231").await;
}

#[test]
fn a_half_configured_facade_is_one_clear_error() {
    let out = common::command(
        &std::env::temp_dir(),
        &[
            ("MCP_AUTH_STRATEGY", "oauth2"),
            (
                "MCP_OAUTH_AUTH_URL",
                "https://github.com/login/oauth/authorize",
            ),
            ("MCP_OAUTH_CLIENT_ID", "id"),
            ("MCP_OAUTH_CLIENT_SECRET", "secret-value-never-shown"),
        ],
    )
    .args(["--port", "0"])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: MCP_OAUTH_TOKEN_URL: "), "{err}");
    assert!(!err.contains("secret-value"), "{err}");
}

/// A test CA and a certificate for 127.0.0.1 it signed (openssl), in `dir`:
/// `ca.pem`, `cert.pem`, `key.pem`.
fn test_pki(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mcp-auth test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "req.pem",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

struct DocServer(Child);

impl Drop for DocServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `doc` as `application/json` over https on 127.0.0.1 (Python's
/// standard library), logging each GET to `dir/fetches`.
fn serve_document(dir: &Path, port: u16, doc: &serde_json::Value) -> DocServer {
    std::fs::write(dir.join("client.json"), doc.to_string()).unwrap();
    let script = r#"
import http.server, ssl, sys, os
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open(os.path.join(d, "fetches"), "a").write(self.path + "\n")
        body = open(os.path.join(d, "client.json"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))
s.socket = c.wrap_socket(s.socket, server_side=True)
print("ready", flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &dir.display().to_string(), &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    DocServer(child)
}

/// A client ID metadata document (over https, on loopback: allowed for
/// this test with `MCP_PROXY_METADATA_ALLOW_LOOPBACK`, its CA trusted
/// through `SSL_CERT_FILE`): the client's id is the document's URL,
/// nothing is registered.
#[tokio::test]
#[ignore = "needs Node 22 and oidc-provider (tests/run-all.sh installs them)"]
async fn mcp_auth_client_logs_in_with_a_client_id_metadata_document() {
    let pki = tempfile::tempdir().unwrap();
    test_pki(pki.path());
    let port = free_port();
    let doc_url = format!("https://127.0.0.1:{port}/mcp-auth-client.json");
    let doc = serde_json::json!({
        "client_id": doc_url,
        "client_name": "mcp-auth-client (metadata document)",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let _docs = serve_document(pki.path(), port, &doc);
    let ca = pki.path().join("ca.pem").display().to_string();
    let (server, _up) = facade_with(
        "oidc",
        &[
            ("MCP_PROXY_METADATA_ALLOW_LOOPBACK", "true"),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let (ok, out, err) = client_async(
        home.path(),
        &[
            "--server",
            &server.url(),
            "--client-metadata-url",
            &doc_url,
            "whoami",
        ],
    )
    .await;
    assert!(
        ok,
        "login with a metadata document failed: {err}\nserver: {}",
        server.stderr()
    );
    let who: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(who["subject"], "octocat");
    let fetches = std::fs::read_to_string(pki.path().join("fetches")).unwrap_or_default();
    assert!(
        fetches.lines().count() >= 1,
        "the server fetched the document"
    );
    assert!(
        !server.stderr().contains("client registered"),
        "nothing was registered"
    );
}

/// Scopes the server asks for (server-wide, per tool) that its own login
/// facade never grants are named at start: step-up through the facade
/// could never succeed. (No provider is contacted at start with explicit
/// endpoints.)
#[test]
fn scopes_the_facade_never_grants_are_named_at_start() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_CLIENT_ID", "id"),
        ("MCP_OAUTH_CLIENT_SECRET", "secret-value-never-shown"),
        ("MCP_OAUTH_AUTH_URL", "https://idp.example/authorize"),
        ("MCP_OAUTH_TOKEN_URL", "https://idp.example/token"),
        ("MCP_OAUTH_USERINFO_URL", "https://idp.example/user"),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
        ("MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        ("MCP_TOOL_SCOPES", "admin_status=mcp:admin"),
    ]);
    let logs = s.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains("does not offer"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("scopes=mcp:admin"), "{line}");
    assert!(!logs.contains("secret-value"), "{logs}");
}

/// A browser application on another origin (the MCP Inspector's web UI
/// against a remote server, say) reads the metadata and calls the
/// registration and token endpoints with `fetch`: those are open to any
/// origin, with CORS saying so; the MCP endpoint and the consent form keep
/// the Origin check (a conformance pass: every one of them answered 403 to
/// a foreign origin, preflight included).
#[tokio::test]
async fn the_oauth_endpoints_are_open_to_browser_apps_of_any_origin() {
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "oauth2"),
        ("MCP_OAUTH_CLIENT_ID", "id"),
        (
            "MCP_OAUTH_CLIENT_SECRET",
            "secret-value-never-shown-0123456789",
        ),
        ("MCP_OAUTH_AUTH_URL", "https://idp.example/authorize"),
        ("MCP_OAUTH_TOKEN_URL", "https://idp.example/token"),
        ("MCP_OAUTH_USERINFO_URL", "https://idp.example/user"),
        ("MCP_OAUTH_SCOPES_SUPPORTED", "mcp:tools"),
    ]);
    const APP: &str = "https://inspector.example";
    let c = reqwest::Client::new();
    let base = s.base();
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/oauth/jwks",
    ] {
        let r = c
            .get(format!("{base}{path}"))
            .header("origin", APP)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], APP, "{path}");
    }
    for path in ["/oauth/register", "/oauth/token", "/oauth/revoke"] {
        let r = c
            .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
            .header("origin", APP)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], APP, "{path}");
        let r = c
            .post(format!("{base}{path}"))
            .header("origin", APP)
            .form(&[("grant_type", "nonsense")])
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 403, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], APP, "{path}");
    }
    // The MCP endpoint and the consent form: the Origin check as before.
    for (method, path) in [
        (reqwest::Method::POST, "/mcp"),
        (reqwest::Method::POST, "/oauth/consent"),
    ] {
        let r = c
            .request(method, format!("{base}{path}"))
            .header("origin", APP)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
}
