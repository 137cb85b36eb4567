//! Test support shared by the workspace's test targets: real peer
//! processes (Redis, moto's Cognito emulator) on loopback ports. The
//! cross-crate tests themselves live in this package's test targets.
//!
//! ```no_run
//! let redis = mcp_auth_integration_tests::Peer::redis(mcp_auth_integration_tests::free_port());
//! assert!(redis.redis_url().starts_with("redis://127.0.0.1:"));
//! ```

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A peer process listening on a loopback port; killed when dropped.
pub struct Peer {
    child: Child,
    port: u16,
}

impl Peer {
    /// `redis-server` (or `$REDIS_SERVER`) on `port`, without persistence.
    /// Panics, naming the install step, when it cannot be started.
    pub fn redis(port: u16) -> Peer {
        let port_arg = port.to_string();
        Self::spawn(
            "REDIS_SERVER",
            "redis-server",
            &[
                "--port",
                &port_arg,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            "redis-server",
            port,
            Duration::from_secs(10),
        )
    }

    /// moto's server (`$MOTO_SERVER`, else `moto_server`) on a free port.
    pub fn moto() -> Peer {
        let port = free_port();
        let port_arg = port.to_string();
        Self::spawn(
            "MOTO_SERVER",
            "moto_server",
            &["-H", "127.0.0.1", "-p", &port_arg],
            "moto[cognitoidp,server]",
            port,
            Duration::from_secs(30),
        )
    }

    fn spawn(
        var: &str,
        default: &str,
        args: &[&str],
        package: &str,
        port: u16,
        wait: Duration,
    ) -> Peer {
        let bin = std::env::var(var).unwrap_or_else(|_| default.into());
        let child = Command::new(&bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): run tests/run-all.sh, which installs {package}")
            });
        let peer = Peer { child, port };
        let deadline = Instant::now() + wait;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{bin} did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        peer
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream OAuth provider for the login facade's tests
/// (`tests/interop/oidc/upstream.mjs`: oidc-provider with one static
/// confidential client, `mcp-proxy`, whose only redirect URI is
/// `callback`, and no registration), in `mode` `oidc` or `github`; killed
/// when dropped. Node is `$INTEROP_NODE`, else `node`.
pub struct UpstreamProvider {
    child: Child,
}

impl UpstreamProvider {
    /// The facade's client id at the provider.
    pub const CLIENT_ID: &str = "mcp-proxy";
    /// Its secret.
    pub const CLIENT_SECRET: &str = "mcp-proxy-secret-0123456789abcdef";

    /// Starts the provider on `port`; returns once it is listening.
    pub fn start(port: u16, callback: &str, mode: &str) -> UpstreamProvider {
        use std::io::BufRead;
        let node = std::env::var("INTEROP_NODE").unwrap_or_else(|_| "node".into());
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/oidc/upstream.mjs");
        let mut child = Command::new(&node)
            .arg(script)
            .env("PORT", port.to_string())
            .env("PROXY_CALLBACK", callback)
            .env("UPSTREAM_MODE", mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {node} ({e}): run tests/run-all.sh, which installs Node 22 and oidc-provider")
            });
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the provider's first line");
        assert!(line.starts_with("ready"), "upstream provider: {line}");
        // Keep draining: a closed pipe would kill it at its next log line.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        UpstreamProvider { child }
    }
}

impl Drop for UpstreamProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Quoted literals that look like variable names (`"HTTP_MAX_CONNECTIONS"`:
/// upper case, digits, at least one underscore) in the `.rs` files under
/// `dir`, each with the file it is in. Not a parser: a literal split over
/// lines or built with `format!` is missed, which is why the rule is
/// "name variables by literals".
pub fn variable_literals(
    dir: &std::path::Path,
    skip: &[&str],
) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("source dir readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if !skip.iter().any(|s| path.ends_with(s)) {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source file readable");
            for (i, piece) in text.split('"').enumerate() {
                let looks_like_a_variable = i % 2 == 1
                    && piece.contains('_')
                    && piece.starts_with(|c: char| c.is_ascii_uppercase())
                    && piece
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if looks_like_a_variable {
                    out.push((piece.to_owned(), path.clone()));
                }
            }
        }
    }
    out
}

/// A browser for OAuth flows in tests: cookies kept, redirects followed by
/// hand so each hop can be checked.
pub mod browser {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use reqwest::header;
    use url::Url;

    /// A browser: redirects followed by hand, cookies per host name as
    /// browsers keep them (not per port).
    pub struct Browser {
        http: reqwest::Client,
        jar: HashMap<String, HashMap<String, String>>,
    }

    impl Default for Browser {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Browser {
        /// A browser with no cookies.
        pub fn new() -> Self {
            Self {
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
                jar: HashMap::new(),
            }
        }

        fn remember(&mut self, url: &Url, resp: &reqwest::Response) {
            let host = url.host_str().unwrap_or_default().to_owned();
            for v in resp.headers().get_all(header::SET_COOKIE) {
                let pair = v.to_str().unwrap().split(';').next().unwrap();
                if let Some((k, val)) = pair.split_once('=') {
                    self.jar
                        .entry(host.clone())
                        .or_default()
                        .insert(k.trim().to_owned(), val.trim().to_owned());
                }
            }
        }

        fn cookies(&self, url: &Url) -> String {
            self.jar
                .get(url.host_str().unwrap_or_default())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default()
        }

        /// `GET url`, with this browser's cookies; keeps the ones it sets.
        pub async fn get(&mut self, url: &str) -> reqwest::Response {
            let url = Url::parse(url).unwrap();
            let resp = self
                .http
                .get(url.clone())
                .header(header::COOKIE, self.cookies(&url))
                .send()
                .await
                .unwrap();
            self.remember(&url, &resp);
            resp
        }

        /// `POST url` with a form, with this browser's cookies.
        pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
            let url = Url::parse(url).unwrap();
            let resp = self
                .http
                .post(url.clone())
                .header(header::COOKIE, self.cookies(&url))
                .form(form)
                .send()
                .await
                .unwrap();
            self.remember(&url, &resp);
            resp
        }

        /// Follows redirects from `resp` until one leaves for `stop`; returns
        /// that URL and every URL visited on the way.
        pub async fn follow_until(
            &mut self,
            mut resp: reqwest::Response,
            stop: &str,
        ) -> (Url, Vec<Url>) {
            let mut visited = Vec::new();
            for _ in 0..20 {
                assert!(
                    resp.status().is_redirection(),
                    "expected a redirect, got {} at {}: {}",
                    resp.status(),
                    resp.url().clone(),
                    resp.text().await.unwrap_or_default()
                );
                let base = resp.url().clone();
                let loc = resp.headers()[header::LOCATION]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let next = base.join(&loc).unwrap();
                if next.as_str().starts_with(stop) {
                    return (next, visited);
                }
                visited.push(next.clone());
                resp = self.get(next.as_str()).await;
            }
            panic!("too many redirects");
        }
    }

    /// The `value` of the form field `name` in `html` (the consent page).
    pub fn field(html: &str, name: &str) -> String {
        let at = html
            .find(&format!("name=\"{name}\""))
            .unwrap_or_else(|| panic!("no field {name} in the consent page"));
        let rest = &html[at..];
        let v = rest.find("value=\"").unwrap() + 7;
        let end = rest[v..].find('"').unwrap();
        rest[v..v + end].to_owned()
    }

    /// A URL's query parameters.
    pub fn query(url: &Url) -> HashMap<String, String> {
        url.query_pairs().into_owned().collect()
    }
}
