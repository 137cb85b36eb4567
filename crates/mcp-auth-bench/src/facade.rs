//! The login facade's side of the benchmark: an MCP client that registers
//! with the server, logs in through it (authorize, consent, the bench's
//! provider, the callback) like a browser would, and uses its token
//! endpoint; the access tokens it obtains for the `facade` load modes; and
//! the token endpoint's own measurement (`facade-token`,
//! `facade-token-redis`).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{StatusCode, Url, header};

use crate::{measure::Creds, process::Server};

/// The MCP client's redirect URI: loopback, any port is accepted; nothing
/// listens there, the client reads the code from the redirect.
const CLIENT_CB: &str = "http://127.0.0.1:9/callback";
/// A PKCE verifier and its S256 challenge (`printf %s VERIFIER | openssl
/// dgst -sha256 -binary | basenc --base64url`, without the padding).
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123";
const CHALLENGE: &str = "FskYLwzA9xkjyCyjrjW6pHypGF_B48N5VOL6DYM75to";
/// Logins started from one source address. The facade allows 60
/// authorization requests per address per minute; the benchmark's logins
/// come from as many loopback addresses (127.0.0.2, 127.0.0.3, ...) as
/// that takes, as the logins of many users would.
const LOGINS_PER_ADDRESS: usize = 50;

/// A client registered with the facade, with a browser that approved it
/// once (its consent cookie), so further logins go straight to the
/// provider as a returning user's do.
pub(crate) struct FacadeClient {
    /// For the registration, the consent and the token endpoint.
    http: reqwest::Client,
    /// For logins: one per loopback source address.
    browsers: Vec<reqwest::Client>,
    /// Logins started so far (the next one's address).
    started: AtomicUsize,
    /// The server's origin (`http://127.0.0.1:PORT`).
    base: String,
    resource: String,
    client_id: String,
    cookie: String,
}

/// What the token endpoint answered.
pub(crate) struct Tokens {
    pub(crate) access: String,
    pub(crate) refresh: String,
}

impl FacadeClient {
    /// Registers a public client (RFC 7591) with the facade of `server`,
    /// and approves it on the consent page once; ready for `logins` more
    /// logins from `clients` concurrent tasks.
    pub(crate) async fn register(
        server: &Server,
        clients: usize,
        logins: usize,
    ) -> Result<Self, String> {
        let resource = server.url.clone();
        let base = resource.trim_end_matches("/mcp").to_owned();
        let client = |from: Option<std::net::IpAddr>| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(clients)
                .local_address(from)
                .build()
                .map_err(|e| e.to_string())
        };
        let http = client(None)?;
        let browsers = (0..logins.div_ceil(LOGINS_PER_ADDRESS).max(1))
            .map(|n| {
                // 127.0.0.2 onwards: all of 127.0.0.0/8 is loopback.
                let n = u32::try_from(n).unwrap_or(u32::MAX).saturating_add(2);
                client(Some(
                    std::net::Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff)).into(),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let r = http
            .post(format!("{base}/oauth/register"))
            .json(&serde_json::json!({
                "client_name": "mcp-auth-bench",
                "redirect_uris": [CLIENT_CB],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            }))
            .send()
            .await
            .map_err(|e| format!("registration: {e}"))?;
        if r.status() != StatusCode::CREATED {
            return Err(format!("registration answered {}", r.status()));
        }
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        let client_id = body["client_id"]
            .as_str()
            .ok_or("registration without a client_id")?
            .to_owned();
        let mut client = Self {
            http,
            browsers,
            started: AtomicUsize::new(0),
            base,
            resource,
            client_id,
            cookie: String::new(),
        };
        // The consent page: its cookie binds the approval to this browser.
        let page = client.get(&client.http, &client.authorize_url()).await?;
        if page.status() != StatusCode::OK {
            return Err(format!("the consent page answered {}", page.status()));
        }
        client.cookie = page
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        let html = page.text().await.map_err(|e| e.to_string())?;
        let (csrf, request) = (field(&html, "csrf")?, field(&html, "request")?);
        // The facade takes an approval only once its page has been up for
        // a moment (against double-clickjacking): once per browser, before
        // the measured logins.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let r = client
            .http
            .post(format!("{}/oauth/consent", client.base))
            .header(header::COOKIE, &client.cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("request", request.as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .map_err(|e| format!("consent: {e}"))?;
        // Finish that first login so it leaves nothing pending.
        client.follow(&client.http, r).await?;
        Ok(client)
    }

    fn authorize_url(&self) -> String {
        let mut u = Url::parse(&format!("{}/oauth/authorize", self.base)).unwrap_or_else(|_| {
            Url::parse("http://127.0.0.1/oauth/authorize").expect("static URL")
        });
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", CLIENT_CB)
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "bench")
            .append_pair("scope", "mcp:tools")
            .append_pair("resource", &self.resource);
        u.to_string()
    }

    async fn get(&self, http: &reqwest::Client, url: &str) -> Result<reqwest::Response, String> {
        let mut rb = http.get(url);
        if url.starts_with(&self.base) && !self.cookie.is_empty() {
            rb = rb.header(header::COOKIE, &self.cookie);
        }
        rb.send().await.map_err(|e| format!("GET: {e}"))
    }

    /// Follows redirects from `r` to the client's redirect URI; the code.
    async fn follow(
        &self,
        http: &reqwest::Client,
        mut r: reqwest::Response,
    ) -> Result<String, String> {
        for _ in 0..8 {
            if !r.status().is_redirection() {
                return Err(format!("login: {} instead of a redirect", r.status()));
            }
            let loc = r
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or("login: a redirect without Location")?;
            let next = r.url().join(loc).map_err(|e| e.to_string())?;
            if next.as_str().starts_with(CLIENT_CB) {
                return next
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .ok_or_else(|| format!("login: no code in {next}"));
            }
            r = self.get(http, next.as_str()).await?;
        }
        Err("login: too many redirects".into())
    }

    /// One login of the approved browser: `/oauth/authorize` (consent known:
    /// straight on), the provider, the callback (which calls the provider's
    /// token and user endpoints); the code.
    pub(crate) async fn login(&self) -> Result<String, String> {
        let n = self.started.fetch_add(1, Ordering::Relaxed) / LOGINS_PER_ADDRESS;
        let http = self
            .browsers
            .get(n % self.browsers.len().max(1))
            .unwrap_or(&self.http);
        let r = self.get(http, &self.authorize_url()).await?;
        self.follow(http, r).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Tokens, String> {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(form)
            .send()
            .await
            .map_err(|e| format!("token endpoint: {e}"))?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        match (
            status,
            body["access_token"].as_str(),
            body["refresh_token"].as_str(),
        ) {
            (StatusCode::OK, Some(a), Some(rt)) => Ok(Tokens {
                access: a.to_owned(),
                refresh: rt.to_owned(),
            }),
            _ => Err(format!("token endpoint answered {status}: {body}")),
        }
    }

    /// The `authorization_code` grant.
    pub(crate) async fn exchange(&self, code: &str) -> Result<Tokens, String> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &self.client_id),
            ("code", code),
            ("redirect_uri", CLIENT_CB),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    /// The `refresh_token` grant (the token rotates: use the new one next).
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<Tokens, String> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.client_id),
            ("refresh_token", refresh_token),
        ])
        .await
    }
}

fn field(html: &str, name: &str) -> Result<String, String> {
    let at = html
        .find(&format!("name=\"{name}\""))
        .ok_or_else(|| format!("no field {name} in the consent page"))?;
    let rest = &html[at..];
    let v = rest.find("value=\"").ok_or("a field without a value")? + 7;
    let end = rest[v..].find('"').ok_or("an unterminated value")?;
    Ok(rest[v..v + end].to_owned())
}

/// The credentials of the `facade` load modes: one access token from one
/// login (`facade`), or `distinct` access tokens (`facade-distinct`) from
/// `chains` logins whose refresh tokens are each refreshed in a chain (every
/// refresh answers a new access token).
pub(crate) async fn creds(
    server: &Server,
    mode: &str,
    distinct: usize,
    chains: usize,
) -> Result<Creds, String> {
    let client = Arc::new(FacadeClient::register(server, chains, chains + 1).await?);
    let first = client.exchange(&client.login().await?).await?;
    if mode == "facade" {
        return Ok(Creds::Header(
            "authorization",
            format!("Bearer {}", first.access),
        ));
    }
    eprintln!("obtaining {distinct} distinct access tokens from the token endpoint...");
    let pool = Arc::new(Mutex::new(Vec::with_capacity(distinct)));
    let mut tasks = Vec::new();
    for _ in 0..chains.clamp(1, distinct.max(1)) {
        let (client, pool) = (client.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = client.exchange(&client.login().await?).await?;
            loop {
                {
                    let mut p = pool.lock().map_err(|_| "poisoned")?;
                    if p.len() >= distinct {
                        return Ok::<(), String>(());
                    }
                    p.push(t.access);
                }
                t = client.refresh(&t.refresh).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let pool = std::mem::take(&mut *pool.lock().map_err(|_| "poisoned")?);
    Ok(Creds::Rotating(
        Arc::new(pool),
        Arc::new(AtomicUsize::new(0)),
    ))
}

/// One step of the token-endpoint measurement.
pub(crate) struct StepOutcome {
    pub(crate) store: String,
    pub(crate) step: &'static str,
    pub(crate) requests: usize,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) server_cpu: Duration,
}

impl StepOutcome {
    pub(crate) fn rate(&self) -> f64 {
        crate::measure::rate(self.requests, self.elapsed)
    }

    pub(crate) fn cpu_per_request(&self) -> Duration {
        crate::measure::cpu_per_request(self.server_cpu, self.requests)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Runs `job` from `workers` concurrent tasks until `more` says stop;
/// latencies of the successes, the number of failures, the wall time and
/// the server's CPU time over the window.
async fn drive<F, Fut, T>(
    server: &Server,
    ticks: u64,
    workers: usize,
    job: F,
) -> Result<(Vec<Duration>, usize, Duration, Duration, Vec<T>), String>
where
    F: Fn(usize) -> Option<Fut> + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let cpu_before = server.cpu_time(ticks)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut out) = (Vec::new(), 0usize, Vec::new());
            while let Some(f) = job(w) {
                let t = Instant::now();
                match f.await {
                    Ok(v) => {
                        lat.push(t.elapsed());
                        out.push(v);
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("token endpoint: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors, out)
        }));
    }
    let (mut all, mut errors, mut outs) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        let (lat, e, out) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
        outs.extend(out);
    }
    let elapsed = start.elapsed();
    let cpu = server.cpu_time(ticks)?.saturating_sub(cpu_before);
    all.sort_unstable();
    Ok((all, errors, elapsed, cpu, outs))
}

/// The token endpoint measured in three steps against the facade of
/// `server` (its store named `store` in the report), each from `clients`
/// concurrent workers:
///
/// 1. `logins` logins of an approved browser (authorize, the provider, the
///    callback; three requests to the server, which itself calls the
///    provider's token and user endpoints), each ending with a code;
/// 2. the `authorization_code` grant for each of those codes;
/// 3. `refresh_token` for `seconds` or `refreshes` requests, whichever
///    ends first: each worker refreshes its own family in a chain (every
///    refresh rotates the token, so the next request uses the token the
///    previous one returned).
pub(crate) async fn token_endpoint(
    server: &Server,
    store: &str,
    (logins, refreshes): (usize, usize),
    clients: usize,
    seconds: u64,
    ticks: u64,
) -> Result<Vec<StepOutcome>, String> {
    let warm_up = clients.min(8);
    let client = Arc::new(FacadeClient::register(server, clients, logins + warm_up).await?);
    // Warm-up: connections, the first login, exchange and refresh.
    for _ in 0..warm_up {
        let t = client.exchange(&client.login().await?).await?;
        client.refresh(&t.refresh).await?;
    }
    let row = |step, (lat, errors, elapsed, cpu): (Vec<Duration>, usize, Duration, Duration)| {
        StepOutcome {
            store: store.to_owned(),
            step,
            requests: lat.len(),
            errors,
            elapsed,
            p50: percentile(&lat, 0.50),
            p99: percentile(&lat, 0.99),
            server_cpu: cpu,
        }
    };
    let mut out = Vec::new();

    eprintln!("facade token endpoint ({store}): {logins} logins");
    let next = Arc::new(AtomicUsize::new(0));
    let (lat, errors, elapsed, cpu, codes) = {
        let (client, next) = (client.clone(), next.clone());
        drive(server, ticks, clients, move |_| {
            (next.fetch_add(1, Ordering::Relaxed) < logins).then(|| {
                let client = client.clone();
                async move { client.login().await }
            })
        })
        .await?
    };
    if elapsed > Duration::from_secs(45) {
        return Err(format!(
            "{logins} logins took {elapsed:?}: codes live 60 s, use fewer --logins"
        ));
    }
    out.push(row("login", (lat, errors, elapsed, cpu)));

    eprintln!(
        "facade token endpoint ({store}): {} code exchanges",
        codes.len()
    );
    let codes = Arc::new(Mutex::new(VecDeque::from(codes)));
    let (lat, errors, elapsed, cpu, tokens) = {
        let client = client.clone();
        drive(server, ticks, clients, move |_| {
            let code = codes.lock().ok()?.pop_front()?;
            let client = client.clone();
            Some(async move { client.exchange(&code).await })
        })
        .await?
    };
    out.push(row("authorization_code", (lat, errors, elapsed, cpu)));

    eprintln!(
        "facade token endpoint ({store}): refresh chains for {seconds} s or {refreshes} refreshes"
    );
    if tokens.len() < clients {
        return Err(format!(
            "only {} of {clients} refresh tokens to start the chains from",
            tokens.len()
        ));
    }
    let heads: Vec<Mutex<Option<String>>> = tokens
        .into_iter()
        .take(clients)
        .map(|t| Mutex::new(Some(t.refresh)))
        .collect();
    let heads = Arc::new(heads);
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Arc::new(AtomicUsize::new(0));
    let (lat, errors, elapsed, cpu, _) = {
        let client = client.clone();
        drive(server, ticks, clients, move |w| {
            if Instant::now() >= end || started.fetch_add(1, Ordering::Relaxed) >= refreshes {
                return None;
            }
            // A chain whose refresh failed has no token left: it stops.
            let rt = heads.get(w)?.lock().ok()?.take()?;
            let (client, heads) = (client.clone(), heads.clone());
            Some(async move {
                let t = client.refresh(&rt).await?;
                if let Some(slot) = heads.get(w)
                    && let Ok(mut slot) = slot.lock()
                {
                    *slot = Some(t.refresh);
                }
                Ok(())
            })
        })
        .await?
    };
    out.push(row("refresh_token", (lat, errors, elapsed, cpu)));
    Ok(out)
}
