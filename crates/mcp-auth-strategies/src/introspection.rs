//! RFC 7662 token introspection for opaque access tokens.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mcp_auth_core::{AuthError, Principal};
use mcp_auth_jwt::numeric_date;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

/// Longest an introspection result is reused.
const MAX_TTL: Duration = Duration::from_secs(60);
/// How long a negative answer ("not active") is reused.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Most cached answers of each kind.
const CAPACITY: usize = 10_000;
/// Most introspection requests in flight at once.
const MAX_IN_FLIGHT: usize = 16;
/// Longest a request waits for one of the [`MAX_IN_FLIGHT`] slots: past
/// it, the answer is 503 rather than a wait behind a flood of other tokens.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// The call's own limit (the HTTP client's total timeout), for requests
/// waiting behind another with the same token.
const CALL_TIMEOUT: Duration = mcp_auth_jwt::FetchLimits::DEFAULT_TOTAL_TIMEOUT;
/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Clock-skew leeway for `nbf` and `iat`.
const LEEWAY: u64 = 60;

type Key = [u8; 32];

#[derive(Default)]
struct Caches {
    /// Active tokens, each until min(exp, 60 s).
    positive: HashMap<Key, (Principal, Instant)>,
    /// Refused tokens, 10 s each; kept apart so a flood of garbage tokens
    /// never evicts a good answer.
    negative: HashMap<Key, (AuthError, Instant)>,
    /// Per-token locks: concurrent requests with one token share one call.
    in_flight: HashMap<Key, Arc<tokio::sync::Mutex<()>>>,
}

/// Asks the authorization server whether an opaque token is active
/// (RFC 7662), authenticating as a client with HTTP Basic.
///
/// The token must be active, an access token (when `token_type` is given),
/// unexpired and already valid (`exp`, `nbf`; malformed values refuse it),
/// issued by the configured issuer (when the answer names one) and, when
/// audiences are configured, carry one of them in `aud`.
///
/// Answers are cached, keyed by the token's SHA-256: "active" until the
/// token's `exp` but at most 60 s, "inactive" for 10 s, in two bounded caches.
/// Requests with the same token share one call, and at most 16 calls run at
/// once, so a flood of random tokens cannot multiply into a flood against the
/// authorization server.
pub struct Introspector {
    url: Url,
    client_id: String,
    client_secret: String,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    client: reqwest::Client,
    caches: Mutex<Caches>,
    slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("url", &mcp_auth_jwt::fetch::redact(&self.url))
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Introspector {
    /// An introspector for the endpoint `url`. The caller checks that `url`
    /// is https (or loopback): the client secret and tokens travel on it.
    pub fn new(
        url: Url,
        client_id: String,
        client_secret: String,
        issuer: Option<String>,
        audiences: Option<Vec<String>>,
    ) -> Self {
        Self {
            url,
            client_id,
            client_secret,
            issuer,
            audiences,
            client: mcp_auth_jwt::fetch::http_client(mcp_auth_jwt::FetchLimits::default()),
            caches: Mutex::new(Caches::default()),
            slots: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    fn with_caches<T>(&self, f: impl FnOnce(&mut Caches) -> T) -> T {
        match self.caches.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn cached(&self, key: &Key) -> Option<Result<Principal, AuthError>> {
        let now = Instant::now();
        self.with_caches(|c| {
            if let Some((p, until)) = c.positive.get(key)
                && now < *until
            {
                return Some(Ok(p.clone()));
            }
            if let Some((e, until)) = c.negative.get(key)
                && now < *until
            {
                return Some(Err(e.clone()));
            }
            None
        })
    }

    fn store(&self, key: Key, result: &Result<Principal, AuthError>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = now + ttl;
        self.with_caches(|c| match result {
            Ok(p) => {
                if c.positive.len() >= CAPACITY && !c.positive.contains_key(&key) {
                    c.positive.retain(|_, (_, u)| *u > now);
                    // Still mostly live answers: trimmed to seven eighths
                    // (whichever come first; they are asked for again when
                    // next presented), so a full cache neither stops
                    // caching nor scans itself for every new token: the
                    // next scan is an eighth of the capacity away.
                    let keep = CAPACITY - CAPACITY / 8;
                    if c.positive.len() > keep {
                        let excess = c.positive.len() - keep;
                        let gone: Vec<Key> = c.positive.keys().take(excess).copied().collect();
                        for k in gone {
                            c.positive.remove(&k);
                        }
                    }
                }
                c.positive.insert(key, (p.clone(), until));
            }
            Err(e) => {
                if c.negative.len() >= CAPACITY {
                    c.negative.retain(|_, (_, u)| *u > now);
                    if c.negative.len() >= CAPACITY {
                        c.negative.clear();
                    }
                }
                c.negative.insert(key, (e.clone(), until));
            }
        });
    }

    /// Introspects `token`; the principal's strategy is `strategy`.
    pub async fn introspect(&self, token: &str, strategy: &str) -> Result<Principal, AuthError> {
        // No larger than a JWT the verifier would look at: a flood of huge
        // made-up tokens costs the authorization server nothing.
        if token.len() > mcp_auth_jwt::DEFAULT_MAX_TOKEN_BYTES {
            return Err(AuthError::invalid_token("token too large"));
        }
        let key: Key = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cached(&key) {
            INTROSPECTION_CACHE.count(true);
            return hit;
        }
        INTROSPECTION_CACHE.count(false);
        // Behind another request with this token, wait for its call (a
        // slot, then the call's own time limit) and take its answer; one
        // deadline for the whole wait, so requests queued on one token do
        // not wait in turn.
        let deadline = tokio::time::Instant::now() + SLOT_WAIT + CALL_TIMEOUT;
        let in_flight = InFlight::join(self, key);
        let Ok(_same_token) = tokio::time::timeout_at(deadline, in_flight.lock.lock()).await else {
            return Err(busy());
        };
        match self.cached(&key) {
            // Another request with this token just asked.
            Some(hit) => hit,
            None => {
                use tracing::Instrument;
                let span = tracing::debug_span!("introspection");
                let started = std::time::Instant::now();
                let result = self.ask(key, token, strategy).instrument(span).await;
                metrics::histogram!("mcp_auth_introspection_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                result
            }
        }
    }

    async fn ask(&self, key: Key, token: &str, strategy: &str) -> Result<Principal, AuthError> {
        let _slot = match tokio::time::timeout(SLOT_WAIT, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(AuthError::unavailable("token introspection unavailable")),
            Err(_) => return Err(busy()),
        };
        let resp = self
            .client
            .post(self.url.clone())
            .basic_auth(
                form_encoded(&self.client_id),
                Some(form_encoded(&self.client_secret)),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| {
                introspected("error");
                tracing::warn!(error = %e.without_url(), "token introspection failed");
                AuthError::unavailable("token introspection unavailable")
            })?;
        if !resp.status().is_success() {
            introspected("error");
            tracing::warn!(
                status = resp.status().as_u16(),
                "token introspection refused"
            );
            return Err(AuthError::unavailable("token introspection unavailable"));
        }
        let body = mcp_auth_jwt::fetch::json_body(resp, &self.url, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| {
                introspected("error");
                tracing::warn!(error = %e, "token introspection answer unreadable");
                AuthError::unavailable("token introspection answered garbage")
            })?;
        let (result, ttl) = self.judge(&body, strategy, now_secs());
        introspected(if result.is_ok() { "active" } else { "inactive" });
        self.store(key, &result, ttl);
        result
    }

    fn judge(
        &self,
        body: &Value,
        strategy: &str,
        now: u64,
    ) -> (Result<Principal, AuthError>, Duration) {
        let refuse = |why: &str| (Err(AuthError::invalid_token(why)), NEGATIVE_TTL);
        if body.get("active") != Some(&Value::Bool(true)) {
            return refuse("token is not active");
        }
        if let Some(tt) = body.get("token_type") {
            let ok = tt.as_str().is_some_and(|t| {
                [
                    "access_token",
                    "bearer",
                    // RFC 9449 §6.2: a bound token (its cnf.jkt checked by
                    // the binding rules).
                    "dpop",
                    "access",
                    "urn:ietf:params:oauth:token-type:access_token",
                ]
                .iter()
                .any(|a| t.eq_ignore_ascii_case(a))
            });
            if !ok {
                return refuse("not an access token");
            }
        }
        let date = |name: &str| -> Result<Option<u64>, ()> {
            match body.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => numeric_date(v).map(Some).ok_or(()),
            }
        };
        let (Ok(exp), Ok(nbf), Ok(iat)) = (date("exp"), date("nbf"), date("iat")) else {
            return refuse("malformed exp, nbf or iat");
        };
        if exp.is_some_and(|e| e <= now) {
            return refuse("token expired");
        }
        // Issued in the future beyond the leeway: not yet valid, as the JWT
        // path says of such an `iat`.
        if nbf.is_some_and(|n| n > now + LEEWAY) || iat.is_some_and(|i| i > now + LEEWAY) {
            return refuse("token not yet valid");
        }
        if let (Some(want), Some(got)) = (&self.issuer, body.get("iss"))
            && got.as_str() != Some(want.as_str())
        {
            return refuse("wrong issuer");
        }
        if let Some(auds) = &self.audiences {
            let ok = match body.get("aud") {
                Some(Value::String(a)) => auds.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| auds.iter().any(|w| w == a)),
                _ => false,
            };
            if !ok {
                return refuse("token not issued for this resource (audience)");
            }
        }
        let str_of = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        // A `sub` that is there must name someone: an empty or non-string
        // one would fall back to the client, and every user of that client
        // would be one subject (as for JWTs).
        if body.get("sub").is_some() && str_of("sub").is_none() {
            return refuse("sub names nobody");
        }
        // No `sub`: a token of the client itself (client credentials), whose
        // subject is the client. One naming a user only by `username` is
        // refused: a username can be renamed or given to someone else, and
        // the new holder would take over the old one's sessions (OIDC Core
        // 5.7: only `iss` + `sub` are stable). Keycloak leaves `sub` out
        // without its `basic` client scope.
        if str_of("sub").is_none() && str_of("username").is_some() {
            return refuse("no sub (a username is not a stable subject)");
        }
        let Some(subject) = str_of("sub").or_else(|| str_of("client_id")) else {
            return refuse("no subject");
        };
        let mut p = Principal::new(subject, strategy).with_scopes(
            mcp_auth_core::scope_tokens(str_of("scope").unwrap_or_default()).map(str::to_owned),
        );
        if let Some(iss) = str_of("iss").or(self.issuer.as_deref()) {
            p = p.with_issuer(iss);
        }
        if let Some(c) = str_of("client_id") {
            p = p.with_client_id(c);
        }
        if let Some(at) = exp.and_then(|e| UNIX_EPOCH.checked_add(Duration::from_secs(e))) {
            p = p.with_expiry(at);
        }
        if let Some(map) = body.as_object() {
            p = p.with_claims(map.clone());
        }
        let ttl = exp.map_or(MAX_TTL, |e| Duration::from_secs(e - now).min(MAX_TTL));
        (Ok(p), ttl)
    }
}

/// The introspection cache's hits and misses
/// (`mcp_auth_token_cache_total{cache="introspection"}`).
static INTROSPECTION_CACHE: mcp_auth_jwt::TokenCacheCounter =
    mcp_auth_jwt::TokenCacheCounter::new("introspection");

/// The answer when the wait for a call ran out: no slot within
/// [`SLOT_WAIT`], or no answer for the same token within [`SLOT_WAIT`] and
/// [`CALL_TIMEOUT`].
fn busy() -> AuthError {
    introspected("busy");
    tracing::warn!("token introspection busy: no call could be made in time");
    AuthError::unavailable("token introspection busy")
}

/// A request's share of the per-token lock. Dropped when the request ends
/// or goes away (its client disconnected), and the last one out removes
/// the lock, so requests that never finish leave nothing behind.
struct InFlight<'a> {
    owner: &'a Introspector,
    key: Key,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> InFlight<'a> {
    fn join(owner: &'a Introspector, key: Key) -> Self {
        let lock = owner.with_caches(|c| c.in_flight.entry(key).or_default().clone());
        Self { owner, key, lock }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Shares are taken and counted under the caches' lock: two (the
        // map's and this one) means nobody else is waiting.
        self.owner.with_caches(|c| {
            if Arc::strong_count(&self.lock) <= 2 {
                c.in_flight.remove(&self.key);
            }
        });
    }
}

/// Counts one answer of the introspection endpoint (`active`, `inactive`),
/// a failure to get one (`error`), or a request answered without one
/// because the wait ran out (`busy`, see [`busy`]).
fn introspected(outcome: &'static str) {
    metrics::counter!("mcp_auth_introspection_requests_total", "outcome" => outcome).increment(1);
}

/// `s` form-urlencoded, as RFC 6749 §2.3.1 has a client id and secret
/// encoded before they are joined for HTTP Basic (RFC 7662 §2.1 refers to
/// it): a `:` in the id or `%`, `+` or UTF-8 in the secret reach the
/// endpoint as they are.
fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn intro() -> Introspector {
        Introspector::new(
            "https://as.example/introspect".parse().unwrap(),
            "c".into(),
            "s".into(),
            Some("https://as.example".into()),
            Some(vec!["https://mcp.example/mcp".into()]),
        )
    }

    /// Requests that go away while waiting (their clients disconnected)
    /// leave no per-token lock behind, however many distinct tokens.
    #[tokio::test]
    async fn abandoned_requests_leave_no_lock_behind() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        // An endpoint that accepts and never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let i = Introspector::new(url.parse().unwrap(), "c".into(), "s".into(), None, None);
        for n in 0..40 {
            let token = format!("opaque-{n}");
            let call = i.introspect(&token, "oauth2");
            let gone = tokio::time::timeout(Duration::from_millis(20), call).await;
            assert!(gone.is_err(), "the endpoint never answers");
        }
        assert_eq!(i.with_caches(|c| c.in_flight.len()), 0);
    }

    fn good(now: u64) -> Value {
        json!({"active": true, "sub": "u", "iss": "https://as.example",
               "aud": "https://mcp.example/mcp", "exp": now + 300})
    }

    #[test]
    fn refusals() {
        let i = intro();
        let now = 1_800_000_000;
        let with = |k: &str, v: Value| {
            let mut b = good(now);
            b[k] = v;
            b
        };
        let without = |k: &str| {
            let mut b = good(now);
            b.as_object_mut().unwrap().remove(k);
            b
        };
        for (body, why) in [
            (with("active", json!(false)), "inactive"),
            (with("active", json!("true")), "active as string"),
            (
                with("exp", json!((now - 3600) as f64)),
                "float exp in the past",
            ),
            (with("exp", json!(format!("{}", now + 3600))), "string exp"),
            (with("exp", json!(u64::MAX)), "absurd exp"),
            (with("nbf", json!(now + 3000)), "future nbf"),
            (with("iat", json!(now + 3000)), "future iat"),
            (with("iat", json!("yesterday")), "string iat"),
            (with("token_type", json!("refresh_token")), "refresh token"),
            (with("iss", json!("https://evil")), "issuer"),
            (with("aud", json!("https://other")), "audience"),
            (without("aud"), "no audience"),
            (without("sub"), "no subject"),
        ] {
            assert!(i.judge(&body, "oauth2", now).0.is_err(), "{why}");
        }
        // A `sub` that names nobody is refused even with a client to fall
        // back to; without any `sub`, the client is the subject.
        for sub in [json!(""), json!(42), json!(null)] {
            let mut b = with("sub", sub.clone());
            b["client_id"] = json!("app");
            assert!(i.judge(&b, "oauth2", now).0.is_err(), "sub {sub}");
        }
        let mut b = without("sub");
        b["client_id"] = json!("app");
        assert_eq!(i.judge(&b, "oauth2", now).0.unwrap().subject, "app");
        // A user named only by `username` (renamable, reusable): refused,
        // with or without a client.
        b["username"] = json!("alice");
        assert!(i.judge(&b, "oauth2", now).0.is_err(), "username and client");
        b.as_object_mut().unwrap().remove("client_id");
        assert!(i.judge(&b, "oauth2", now).0.is_err(), "username alone");
        assert!(
            i.judge(&with("iat", json!(now + 30)), "oauth2", now)
                .0
                .is_ok(),
            "within the leeway"
        );
        // Scope tokens are separated by single spaces (RFC 6749 §3.3): one
        // holding a tab grants nothing (an attack pass: split on any
        // whitespace, it granted `mcp:admin`).
        let (ok, _) = i.judge(
            &with("scope", json!("mcp:tools x\tmcp:admin")),
            "oauth2",
            now,
        );
        assert_eq!(ok.unwrap().scopes, ["mcp:tools"]);
        let (ok, ttl) = i.judge(&with("token_type", json!("Bearer")), "oauth2", now);
        assert_eq!(ok.unwrap().subject, "u");
        assert_eq!(ttl, MAX_TTL);
        let (_, ttl) = i.judge(&with("exp", json!(now + 5)), "oauth2", now);
        assert_eq!(ttl, Duration::from_secs(5), "never cached past exp");
    }

    /// A cache full of live answers keeps caching new ones (it stopped,
    /// and every new token then rescanned it under the lock), and stays
    /// within its capacity.
    #[test]
    fn a_full_cache_still_caches_new_answers() {
        let i = intro();
        let key = |n: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(n as u64).to_le_bytes());
            k
        };
        for n in 0..(CAPACITY + 10) {
            let p = Principal::new(format!("u{n}"), "oauth2");
            i.store(key(n), &Ok(p), Duration::from_secs(60));
            assert!(matches!(i.cached(&key(n)), Some(Ok(_))), "{n}");
        }
        assert!(i.with_caches(|c| c.positive.len()) <= CAPACITY);
        // With one expired answer among the live ones, a scan still leaves
        // room for the next eighth (it freed one, and every new token
        // scanned again).
        i.with_caches(|c| {
            let first = *c.positive.keys().next().unwrap();
            if let Some((_, until)) = c.positive.get_mut(&first) {
                *until = Instant::now();
            }
        });
        let mut n = CAPACITY + 100;
        while i.with_caches(|c| c.positive.len()) < CAPACITY {
            n += 1;
            i.store(
                key(n),
                &Ok(Principal::new("x", "oauth2")),
                Duration::from_secs(60),
            );
        }
        i.store(
            key(CAPACITY + 11),
            &Ok(Principal::new("y", "oauth2")),
            Duration::from_secs(60),
        );
        assert!(i.with_caches(|c| c.positive.len()) <= CAPACITY - CAPACITY / 8 + 1);
    }

    #[test]
    fn a_garbage_flood_never_evicts_good_answers() {
        let i = intro();
        let p = Principal::new("u", "oauth2");
        i.store([1; 32], &Ok(p), Duration::from_secs(60));
        for n in 0..(CAPACITY + 10) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(n as u64).to_le_bytes());
            k[31] = 2;
            i.store(k, &Err(AuthError::invalid_token("no")), NEGATIVE_TTL);
        }
        assert!(matches!(i.cached(&[1; 32]), Some(Ok(_))));
    }
}
