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

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon), never the
/// same twice in one process. It is taken below the kernel's ephemeral
/// range (32768 and up on Linux), from a place of the range that depends
/// on the process: a port the kernel hands out (`bind` to port 0, or the
/// local end of an outgoing connection) may be handed out again, to
/// another test's peer or connection, between now and the bind, and a
/// peer started on it then fails to start.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 32_768 - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Relaxed, Relaxed);
    for _ in 0..SPAN {
        let port = u16::try_from(LOW + NEXT.fetch_add(1, Relaxed) % SPAN).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and 32767")
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
        let mut peer = Peer { child, port };
        let deadline = Instant::now() + wait;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!("{bin} exited ({status}) instead of listening on port {port}");
            }
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

    /// A Redis peer stops answering every client for `ms` milliseconds
    /// (`CLIENT PAUSE ms ALL`), as in a failover or a stall.
    pub fn pause_redis(&self, ms: u32) {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .expect("the Redis peer is listening");
        let ms = ms.to_string();
        let cmd = format!(
            "*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n${}\r\n{ms}\r\n$3\r\nALL\r\n",
            ms.len()
        );
        conn.write_all(cmd.as_bytes()).expect("CLIENT PAUSE sent");
        let mut ok = [0u8; 5];
        conn.read_exact(&mut ok).expect("CLIENT PAUSE answered");
        assert_eq!(&ok, b"+OK\r\n", "CLIENT PAUSE refused");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-cli` (or `$REDIS_CLI`) with `args` against `127.0.0.1:port`;
/// its standard output. Panics, naming the install step, when it cannot be
/// run.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    redis_cli_input(port, args, None)
}

fn redis_cli_input(port: u16, args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let bin = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
    let mut child = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin} ({e}): run tests/run-all.sh, which installs redis-server")
        });
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .expect("redis-cli's standard input");
    }
    let out = child.wait_with_output().expect("redis-cli ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory under the system's temporary one, removed when
/// dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "mcp-auth-{what}-{}-{nanos}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `ready` every 100 ms until it holds; panics with `what` after
/// `wait`.
fn wait_until(wait: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {wait:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Redis Cluster of `primaries` primaries without replicas, on free
/// loopback ports (`redis-server --cluster-enabled yes`, joined by
/// `redis-cli --cluster create`), without persistence; ready (every node
/// says `cluster_state:ok`) when returned. Its nodes are killed, and their
/// files removed, when dropped.
pub struct RedisCluster {
    nodes: Vec<Peer>,
    _dir: Scratch,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until it serves
    /// every slot (at most 30 s; panics otherwise).
    pub fn start(primaries: usize) -> RedisCluster {
        let dir = Scratch::new("redis-cluster");
        let mut nodes = Vec::new();
        for i in 0..primaries {
            let node_dir = dir.0.join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            let (port, bus) = (free_port(), free_port());
            let (port_arg, bus_arg) = (port.to_string(), bus.to_string());
            let node_dir = node_dir.to_string_lossy().into_owned();
            nodes.push(Peer::spawn(
                "REDIS_SERVER",
                "redis-server",
                &[
                    "--port",
                    &port_arg,
                    "--cluster-port",
                    &bus_arg,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    &node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                "redis-server",
                port,
                Duration::from_secs(10),
            ));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let first = nodes[0].port;
        let created = redis_cli(first, &args);
        let cluster = RedisCluster { nodes, _dir: dir };
        assert!(
            created.contains("[OK]"),
            "redis-cli --cluster create: {created}"
        );
        wait_until(Duration::from_secs(30), "the cluster is ok", || {
            cluster.nodes.iter().all(|n| {
                let info = redis_cli(n.port, &["cluster", "info"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            })
        });
        cluster
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis+cluster://127.0.0.1:<port>,...`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis-cli -c` (following the cluster's redirections) with `args`.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        redis_cli(self.nodes[0].port, &all)
    }

    /// The keys each node holds (`KEYS *` on each), by node.
    pub fn keys_by_node(&self) -> Vec<Vec<String>> {
        self.nodes
            .iter()
            .map(|n| {
                redis_cli(n.port, &["--raw", "keys", "*"])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }
}

/// The master name [`RedisSentinel`] monitors.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A primary, one replica (`--replicaof`) and three sentinels watching the
/// primary as [`SENTINEL_MASTER`] (quorum 2, down after 1 s, failover
/// timeout 5 s), on free loopback ports, without persistence; ready (the
/// replica in sync, every sentinel knowing the replica and the other two)
/// when returned. Killed, and their files removed, when dropped.
pub struct RedisSentinel {
    primary: Option<Peer>,
    replica: Peer,
    sentinels: Vec<Peer>,
    _dir: Scratch,
}

impl RedisSentinel {
    /// Starts it all and waits until it is ready (at most 30 s; panics
    /// otherwise).
    pub fn start() -> RedisSentinel {
        let dir = Scratch::new("redis-sentinel");
        // Each in a directory of its own: a replica writes the data it
        // receives there.
        let node = |name: &str, port: u16, replica_of: Option<u16>| {
            let node_dir = dir.0.join(name);
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            let node_dir = node_dir.to_string_lossy().into_owned();
            let port_arg = port.to_string();
            let primary_arg = replica_of.map(|p| p.to_string());
            let mut args = vec![
                "--port",
                &port_arg,
                "--bind",
                "127.0.0.1",
                "--dir",
                &node_dir,
                "--save",
                "",
                "--appendonly",
                "no",
            ];
            if let Some(p) = &primary_arg {
                args.extend(["--replicaof", "127.0.0.1", p]);
            }
            Peer::spawn(
                "REDIS_SERVER",
                "redis-server",
                &args,
                "redis-server",
                port,
                Duration::from_secs(10),
            )
        };
        let primary = node("primary", free_port(), None);
        let replica = node("replica", free_port(), Some(primary.port));
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            // Sentinel rewrites its configuration file: one each, writable.
            let conf = dir.0.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir.0.display(),
                    primary.port
                ),
            )
            .expect("a sentinel configuration");
            let conf = conf.to_string_lossy().into_owned();
            sentinels.push(Peer::spawn(
                "REDIS_SERVER",
                "redis-server",
                &[&conf, "--sentinel"],
                "redis-server",
                port,
                Duration::from_secs(10),
            ));
        }
        let setup = RedisSentinel {
            primary: Some(primary),
            replica,
            sentinels,
            _dir: dir,
        };
        wait_until(Duration::from_secs(30), "the replica in sync", || {
            redis_cli(setup.replica.port, &["info", "replication"])
                .contains("master_link_status:up")
        });
        wait_until(
            Duration::from_secs(30),
            "every sentinel knows the replica and the other sentinels",
            || {
                setup.sentinels.iter().all(|s| {
                    let master = redis_cli(s.port, &["sentinel", "master", SENTINEL_MASTER]);
                    let field = |name: &str| {
                        let mut lines = master.lines();
                        while let Some(l) = lines.next() {
                            if l.trim() == name {
                                return lines.next().map(|v| v.trim().to_owned());
                            }
                        }
                        None
                    };
                    field("num-slaves").as_deref() == Some("1")
                        && field("num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
        setup
    }

    /// `redis+sentinel://127.0.0.1:<port>,.../mymaster/0`: the three
    /// sentinels.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis+sentinel://{}/{SENTINEL_MASTER}/0",
            sentinels.join(",")
        )
    }

    /// The first primary's port (gone once killed).
    pub fn primary_port(&self) -> Option<u16> {
        self.primary.as_ref().map(|p| p.port)
    }

    /// The replica's port (the primary after a failover).
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// Waits (at most `wait`) until the replica has acknowledged every
    /// write the primary took so far (`WAIT 1`); false if it had not.
    pub fn wait_replicated(&self, wait: Duration) -> bool {
        let Some(port) = self.primary_port() else {
            return false;
        };
        let ms = wait.as_millis().to_string();
        let out = redis_cli_input(
            port,
            &["--raw"],
            Some(&format!("SET mcp-auth-test:fence 1\nWAIT 1 {ms}\n")),
        );
        out.lines().last().is_some_and(|l| l.trim() == "1")
    }

    /// Kills the primary (SIGKILL: whatever it had not passed on is lost).
    pub fn kill_primary(&mut self) {
        self.primary = None;
    }

    /// The primary's port as the sentinel at `sentinel` names it now.
    pub fn primary_by_sentinel(&self, sentinel: u16) -> Option<u16> {
        let out = redis_cli(
            sentinel,
            &[
                "--raw",
                "sentinel",
                "get-master-addr-by-name",
                SENTINEL_MASTER,
            ],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
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

    /// How long a person takes to read the consent page before approving:
    /// the facade takes no approval sooner (against double-clickjacking),
    /// so a test waits this between showing the page and allowing.
    pub const READ_THE_PAGE: std::time::Duration = std::time::Duration::from_millis(1000);

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
