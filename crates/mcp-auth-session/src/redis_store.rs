//! [`RedisStore`]: sessions shared by replicas.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{
    AsyncCommands, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    Bind, Full, Reserve, SessionLimits, SessionRecord, SessionStore, StoreError, Ticket,
    store::{ExpiredSession, kv_ttl},
    subject_of,
};

const PREFIX: &str = "mcp-auth:";

/// Every script reads the clock from Redis (`TIME`), so replicas with
/// skewed clocks agree on expiry.
const NOW: &str =
    "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n";

/// Drops expired members, checks the caps, reserves a slot.
/// KEYS: all, group (own:<owner> or anon), user (subj:<issuer, subject>, or
/// anon again). ARGV: ttl_ms, max_all, max_group, ticket, max_user (0: no
/// user cap, anonymous).
const RESERVE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
local user = tonumber(ARGV[5]) > 0
if user then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return 3 end
end
local exp = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], exp, ARGV[4])
redis.call('ZADD', KEYS[2], exp, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[1] * 4 + 86400000)
if user then
  redis.call('ZADD', KEYS[3], exp, ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[1] * 4 + 86400000)
end
return 0
";

/// Commits a reservation; if it lapsed, only when there is still room.
/// KEYS: all, group, sess, user, expiry, owners. ARGV: idle_ms, ticket, sid,
/// owner, max_all, max_group, max_user (0: anonymous).
const COMMIT: &str = r"
local user = tonumber(ARGV[7]) > 0
local held = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
if user then redis.call('ZREM', KEYS[4], ARGV[2]) end
if held == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 1 end
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return 1 end
  if user then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[7]) then return 1 end
  end
end
local exp = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], exp, ARGV[3])
redis.call('ZADD', KEYS[2], exp, ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[1] * 4 + 86400000)
if user then
  redis.call('ZADD', KEYS[4], exp, ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[1] * 4 + 86400000)
end
redis.call('HSET', KEYS[3], 'owner', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], exp, ARGV[3])
redis.call('HSET', KEYS[6], ARGV[3], ARGV[4])
return 0
";

/// Reads and touches a session. KEYS: sess, state, all, expiry, owners.
/// ARGV: idle_ms, sid, prefix. Returns false when gone, else the owner ('' =
/// anonymous). A live session missing from the expiry index (committed by
/// an older version) joins it.
const LOOKUP: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return false end
local exp = now + tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'XX', exp, ARGV[2])
if redis.call('ZADD', KEYS[4], exp, ARGV[2]) == 1 then
  redis.call('HSET', KEYS[5], ARGV[2], owner)
end
local group = ARGV[3] .. 'anon'
if owner ~= '' then group = ARGV[3] .. 'own:' .. owner end
redis.call('ZADD', group, 'XX', exp, ARGV[2])
redis.call('PEXPIRE', group, ARGV[1] * 4 + 86400000)
if owner ~= '' then
  local user = ARGV[3] .. 'subj:' .. (string.match(owner, '^(.*)\31') or owner)
  redis.call('ZADD', user, 'XX', exp, ARGV[2])
  redis.call('PEXPIRE', user, ARGV[1] * 4 + 86400000)
end
return owner
";

/// Binds an anonymous session unless the owner (or its user) is at its cap.
/// KEYS: sess, anon, own, user, expiry, owners. ARGV: idle_ms, sid, owner,
/// max_group, max_user.
/// Returns the owner, '' when the owner is at its cap, false when gone.
const BIND: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return false end
if owner ~= '' then return owner end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return '' end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[5]) then return '' end
local exp = now + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], exp, ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[1] * 4 + 86400000)
redis.call('ZADD', KEYS[4], exp, ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[1] * 4 + 86400000)
redis.call('ZADD', KEYS[5], exp, ARGV[2])
redis.call('HSET', KEYS[6], ARGV[2], ARGV[3])
return ARGV[3]
";

/// Ends a session. KEYS: sess, state, all, expiry, owners. ARGV: sid,
/// prefix. A session already gone stays in the expiry index: it expired
/// before it was ended, and the sweep reports it.
const END: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if owner then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
  local group = ARGV[2] .. 'anon'
  if owner ~= '' then group = ARGV[2] .. 'own:' .. owner end
  redis.call('ZREM', group, ARGV[1])
  if owner ~= '' then
    redis.call('ZREM', ARGV[2] .. 'subj:' .. (string.match(owner, '^(.*)\31') or owner), ARGV[1])
  end
end
return 0
";

/// Takes expired sessions out of the expiry index: at most ARGV[2] due
/// members, each popped by exactly one caller (the script runs atomically,
/// so two replicas sweeping at once never both see one). A member whose
/// session key still lives goes back at its key's expiry instead: a script
/// sees keys expire at the time it started, which may be a little before
/// `TIME`, so a session can be due by `TIME` a moment before its key is
/// gone. (A key without expiry, never written so, is looked at again in a
/// minute.) KEYS: expiry, owners. ARGV: prefix, batch.
/// Returns the number of due members examined, then (sid, owner) pairs
/// (owner '' = anonymous or unknown).
const SWEEP: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {tostring(#due)}
for _, sid in ipairs(due) do
  local ttl = redis.call('PTTL', ARGV[1] .. 'sess:' .. sid)
  if ttl == -2 then
    redis.call('ZREM', KEYS[1], sid)
    local owner = redis.call('HGET', KEYS[2], sid)
    redis.call('HDEL', KEYS[2], sid)
    table.insert(out, sid)
    table.insert(out, owner or '')
  elseif ttl == -1 then
    redis.call('ZADD', KEYS[1], now + 60000, sid)
  else
    redis.call('ZADD', KEYS[1], now + ttl, sid)
  end
end
return out
";

/// How many due members one sweep script examines.
const SWEEP_BATCH: usize = 500;

/// Fixed-window counter. KEYS: counter. ARGV: window_ms. Returns {count, pttl}.
const HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

/// Takes back one count. KEYS: counter.
const UNHIT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
";

struct Conn {
    manager: Option<ConnectionManager>,
    last_failure: Option<Instant>,
}

/// Sessions, bindings, saved rmcp state and rate counters in Redis, shared
/// by every replica that points at it. Every admission step is one Lua
/// script, so caps and first-binding hold under concurrency across replicas.
///
/// It connects on first use and reconnects by itself: while Redis is
/// unreachable every operation fails fast with [`StoreError`] (the HTTP
/// layer answers 503), and service resumes when Redis returns.
///
/// The key-value space is plain Redis strings under `mcp-auth:kv:<key>`,
/// each with its expiry: `SET key value PX ms` ([`kv_put`]), `SET ... NX PX
/// ms` ([`kv_put_new`]), `GET`, `GETDEL` ([`kv_take`]; Redis 6.2 or later,
/// on an older server the take fails with [`StoreError`], never silently
/// twice) and `DEL`. Its size is bounded by Redis's `maxmemory`: under the
/// `noeviction` policy a full Redis refuses writes ([`StoreError`]), as the
/// memory store does at its bound; other policies may evict live entries,
/// single-use codes included.
///
/// [`kv_put`]: SessionStore::kv_put
/// [`kv_put_new`]: SessionStore::kv_put_new
/// [`kv_take`]: SessionStore::kv_take
pub struct RedisStore {
    client: redis::Client,
    shown: String,
    conn: tokio::sync::Mutex<Conn>,
    scripts: Scripts,
}

struct Scripts {
    reserve: Script,
    commit: Script,
    lookup: Script,
    bind: Script,
    end: Script,
    sweep: Script,
    hit: Script,
    unhit: Script,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

impl RedisStore {
    /// A store for `url` (`redis://[user:password@]host:port/db`; the
    /// client is built without TLS, so `rediss://` fails). Does not connect
    /// yet.
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}", info.addr());
        Ok(Self {
            client,
            shown,
            conn: tokio::sync::Mutex::new(Conn {
                manager: None,
                last_failure: None,
            }),
            scripts: Scripts {
                reserve: Script::new(&format!("{NOW}{RESERVE}")),
                commit: Script::new(&format!("{NOW}{COMMIT}")),
                lookup: Script::new(&format!("{NOW}{LOOKUP}")),
                bind: Script::new(&format!("{NOW}{BIND}")),
                end: Script::new(END),
                sweep: Script::new(&format!("{NOW}{SWEEP}")),
                hit: Script::new(HIT),
                unhit: Script::new(UNHIT),
            },
        })
    }

    fn err(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError {
            store: self.shown.clone(),
            reason: reason.to_string(),
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let mut c = self.conn.lock().await;
        if let Some(m) = &c.manager {
            return Ok(m.clone());
        }
        if c.last_failure
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return Err(self.err("unreachable (retrying shortly)"));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        match ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(m) => {
                tracing::info!(store = %self.shown, "session store connected");
                c.manager = Some(m.clone());
                c.last_failure = None;
                Ok(m)
            }
            Err(e) => {
                c.last_failure = Some(Instant::now());
                tracing::error!(store = %self.shown, error = %e, "session store unreachable");
                Err(self.err(e))
            }
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = String::from(PREFIX);
        k.push_str(&parts.concat());
        k
    }

    fn group(&self, owner: Option<&str>) -> String {
        match owner {
            Some(o) => self.key(&["own:", o]),
            None => self.key(&["anon"]),
        }
    }

    /// The user's group (issuer and subject over all client ids); for an
    /// anonymous session the anonymous group (given no user cap).
    fn user_group(&self, owner: Option<&str>) -> String {
        match owner {
            Some(o) => self.key(&["subj:", subject_of(o)]),
            None => self.key(&["anon"]),
        }
    }

    /// The user group's cap for the scripts; 0 (no user cap) when anonymous.
    fn user(&self, owner: Option<&str>, limits: &SessionLimits) -> (String, usize) {
        let cap = if owner.is_some() {
            limits.max_per_subject
        } else {
            0
        };
        (self.user_group(owner), cap)
    }

    /// The Redis key of key-value entry `key`: under `mcp-auth:kv:`, which
    /// no session, state or counter key starts with.
    fn kv_key(&self, key: &str) -> String {
        self.key(&["kv:", key])
    }

    /// A key-value TTL checked by [`kv_ttl`], in milliseconds.
    fn kv_ms(&self, ttl: Duration) -> Result<u64, StoreError> {
        let ttl = kv_ttl(ttl, &self.shown)?;
        u64::try_from(ttl.as_millis()).map_err(|_| self.err("key-value TTL out of range"))
    }

    /// `SET key value [NX] PX ms`: true when stored.
    async fn kv_set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        let ms = self.kv_ms(ttl)?;
        let mut c = self.conn().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.kv_key(key)).arg(value);
        if only_new {
            cmd.arg("NX");
        }
        cmd.arg("PX").arg(ms);
        // "OK" when set; nil when NX found the key taken.
        let set: Option<String> = cmd.query_async(&mut c).await.map_err(|e| self.failed(e))?;
        Ok(set.is_some())
    }

    fn failed(&self, e: redis::RedisError) -> StoreError {
        tracing::error!(store = %self.shown, error = %e, "session store operation failed");
        self.err(e)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn reserve(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Reserve, StoreError> {
        let mut c = self.conn().await?;
        let ticket = Ticket::random();
        let group_max = if owner.is_some() {
            limits.max_per_principal
        } else {
            limits.max_anonymous
        };
        let (user, user_max) = self.user(owner, limits);
        let r: i64 = self
            .scripts
            .reserve
            .key(self.key(&["all"]))
            .key(self.group(owner))
            .key(user)
            .arg(ms(limits.reservation_ttl))
            .arg(limits.max_sessions)
            .arg(group_max)
            .arg(&ticket.0)
            .arg(user_max)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(match (r, owner) {
            (0, _) => Reserve::Granted(ticket),
            (1, _) => Reserve::Full(Full::Global),
            (3, _) => Reserve::Full(Full::Subject),
            (_, Some(_)) => Reserve::Full(Full::Principal),
            (_, None) => Reserve::Full(Full::Anonymous),
        })
    }

    async fn commit(
        &self,
        ticket: &Ticket,
        sid: &str,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let group_max = if owner.is_some() {
            limits.max_per_principal
        } else {
            limits.max_anonymous
        };
        let (user, user_max) = self.user(owner, limits);
        let r: i64 = self
            .scripts
            .commit
            .key(self.key(&["all"]))
            .key(self.group(owner))
            .key(self.key(&["sess:", sid]))
            .key(user)
            .key(self.key(&["expiry"]))
            .key(self.key(&["owners"]))
            .arg(ms(limits.idle_timeout))
            .arg(&ticket.0)
            .arg(sid)
            .arg(owner.unwrap_or_default())
            .arg(limits.max_sessions)
            .arg(group_max)
            .arg(user_max)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(r == 0)
    }

    async fn release(&self, ticket: &Ticket, owner: Option<&str>) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: () = redis::pipe()
            .zrem(self.key(&["all"]), &ticket.0)
            .ignore()
            .zrem(self.group(owner), &ticket.0)
            .ignore()
            .zrem(self.user_group(owner), &ticket.0)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.conn().await?;
        let owner: Option<String> = self
            .scripts
            .lookup
            .key(self.key(&["sess:", sid]))
            .key(self.key(&["state:", sid]))
            .key(self.key(&["all"]))
            .key(self.key(&["expiry"]))
            .key(self.key(&["owners"]))
            .arg(ms(limits.idle_timeout))
            .arg(sid)
            .arg(PREFIX)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(owner.map(|o| SessionRecord {
            owner: (!o.is_empty()).then_some(o),
        }))
    }

    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError> {
        let mut c = self.conn().await?;
        let r: Option<String> = self
            .scripts
            .bind
            .key(self.key(&["sess:", sid]))
            .key(self.key(&["anon"]))
            .key(self.key(&["own:", owner]))
            .key(self.user_group(Some(owner)))
            .key(self.key(&["expiry"]))
            .key(self.key(&["owners"]))
            .arg(ms(limits.idle_timeout))
            .arg(sid)
            .arg(owner)
            .arg(limits.max_per_principal)
            .arg(limits.max_per_subject)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(match r {
            None => Bind::Gone,
            Some(o) if o.is_empty() => Bind::Full,
            Some(o) => Bind::Owner(o),
        })
    }

    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: i64 = self
            .scripts
            .end
            .key(self.key(&["sess:", sid]))
            .key(self.key(&["state:", sid]))
            .key(self.key(&["all"]))
            .key(self.key(&["expiry"]))
            .key(self.key(&["owners"]))
            .arg(sid)
            .arg(PREFIX)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        let mut c = self.conn().await?;
        let (n, ttl): (u64, i64) = self
            .scripts
            .hit
            .key(self.key(&["rl:", key]))
            .arg(ms(window))
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok((n, Duration::from_millis(ttl.max(0) as u64)))
    }

    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError> {
        let mut c = self.conn().await?;
        let k = self.key(&["rl:", key]);
        let (n, ttl): (Option<u64>, i64) = redis::pipe()
            .get(&k)
            .pttl(&k)
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok((n.unwrap_or(0), Duration::from_millis(ttl.max(0) as u64)))
    }

    async fn unhit(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: i64 = self
            .scripts
            .unhit
            .key(self.key(&["rl:", key]))
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        limits: &SessionLimits,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: () = c
            .pset_ex(self.key(&["state:", sid]), state, ms(limits.idle_timeout))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        c.get(self.key(&["state:", sid]))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.kv_set(key, value, ttl, false).await.map(|_| ())
    }

    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.kv_set(key, value, ttl, true).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn().await?;
        c.get(self.kv_key(key)).await.map_err(|e| self.failed(e))
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn().await?;
        // One command, so atomic: of concurrent takes only one sees the value.
        redis::cmd("GETDEL")
            .arg(self.kv_key(key))
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: i64 = c.del(self.kv_key(key)).await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        // Keys expire natively; sorted-set members are dropped on reserve;
        // the expiry index is emptied of expired sessions (unreported).
        self.sweep_expired().await.map(drop)
    }

    /// Pops expired sessions from the expiry index (`mcp-auth:expiry`, a
    /// sorted set of session ids by expiry, beside `mcp-auth:owners`, each
    /// session's owner) with one Lua script per batch, so of several
    /// replicas sweeping at once exactly one reports each session. Sessions
    /// committed by a version without the index are reported only once
    /// looked up by this one. The index is bounded by sweeping: sessions
    /// expired and not yet swept stay in it.
    async fn sweep_expired(&self) -> Result<Vec<ExpiredSession>, StoreError> {
        let mut c = self.conn().await?;
        let mut expired = Vec::new();
        loop {
            let popped: Vec<String> = self
                .scripts
                .sweep
                .key(self.key(&["expiry"]))
                .key(self.key(&["owners"]))
                .arg(PREFIX)
                .arg(SWEEP_BATCH)
                .invoke_async(&mut c)
                .await
                .map_err(|e| self.failed(e))?;
            let mut popped = popped.into_iter();
            let examined: usize = popped.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            while let (Some(id), Some(owner)) = (popped.next(), popped.next()) {
                expired.push(ExpiredSession::new(
                    id,
                    (!owner.is_empty()).then_some(owner),
                ));
            }
            if examined < SWEEP_BATCH {
                return Ok(expired);
            }
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use mcp_auth_integration_tests::{Peer, free_port};

    use super::*;

    fn limits(idle: Duration) -> SessionLimits {
        SessionLimits {
            max_sessions: 5000,
            max_per_principal: 10,
            max_per_subject: 10,
            max_anonymous: 10,
            idle_timeout: idle,
            reservation_ttl: idle,
            ..SessionLimits::default()
        }
    }

    async fn open(s: &RedisStore, owner: Option<&str>, sid: &str, l: &SessionLimits) {
        let Reserve::Granted(t) = s.reserve(owner, l).await.unwrap() else {
            panic!("a slot for {sid}")
        };
        assert!(s.commit(&t, sid, owner, l).await.unwrap());
    }

    /// Every session reported by sweeps on both replicas, with how often.
    async fn sweep_both(
        a: &RedisStore,
        b: &RedisStore,
    ) -> BTreeMap<String, (usize, Option<String>)> {
        let mut seen = BTreeMap::new();
        let (x, y) = tokio::join!(a.sweep_expired(), b.sweep_expired());
        for e in x.unwrap().into_iter().chain(y.unwrap()) {
            let entry = seen.entry(e.id).or_insert((0, e.owner.clone()));
            entry.0 += 1;
        }
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_reports_each_expired_session_once_across_replicas() {
        let redis = Peer::redis(free_port());
        let url = redis.redis_url();
        let (a, b) = (
            Arc::new(RedisStore::new(&url).unwrap()),
            Arc::new(RedisStore::new(&url).unwrap()),
        );
        let idle = Duration::from_millis(1000);
        let short = limits(idle);
        let long = limits(Duration::from_secs(60));
        let alice = "https://as\u{1f}alice\u{1f}app";
        open(&a, Some(alice), "idle", &short).await;
        open(&a, None, "anon", &short).await;
        open(&b, None, "bound", &short).await;
        open(&a, Some(alice), "deleted", &short).await;
        open(&b, Some("bob"), "live", &long).await;
        open(&a, Some(alice), "late", &short).await;
        open(&a, Some(alice), "legacy", &short).await;
        assert_eq!(
            a.bind("bound", "z", &short).await.unwrap(),
            Bind::Owner("z".into())
        );
        // A reservation never committed is not a session.
        assert!(matches!(
            a.reserve(Some("carol"), &short).await.unwrap(),
            Reserve::Granted(_)
        ));
        b.end("deleted").await.unwrap();
        // A session committed before the index existed joins it when used.
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::pipe()
            .zrem("mcp-auth:expiry", "legacy")
            .hdel("mcp-auth:owners", "legacy")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(b.lookup("legacy", &short).await.unwrap().is_some());
        assert!(sweep_both(&a, &b).await.is_empty(), "none expired yet");
        // Ended after it expired, before any sweep: it expired.
        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        a.end("late").await.unwrap();

        // Many sessions (more than one sweep batch) expire while sweepers
        // on both replicas race.
        for i in 0..(SWEEP_BATCH * 2 + 100) {
            let owner = format!("https://as\u{1f}user-{i}\u{1f}app");
            let s = if i % 2 == 0 { &a } else { &b };
            open(s, Some(&owner), &format!("many-{i}"), &short).await;
        }
        let deadline = Instant::now() + idle + Duration::from_millis(900);
        let sweepers: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while Instant::now() < deadline {
                        got.extend(s.sweep_expired().await.unwrap());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    got
                })
            })
            .collect();
        let mut seen: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
        for t in sweepers {
            for e in t.await.unwrap() {
                seen.entry(e.id).or_insert((0, e.owner)).0 += 1;
            }
        }
        for (id, (n, _)) in sweep_both(&a, &b).await {
            seen.entry(id).or_insert((0, None)).0 += n;
        }
        assert!(seen.values().all(|(n, _)| *n == 1), "reported once each");
        let mut expected: BTreeMap<String, (usize, Option<String>)> = [
            ("idle", Some(alice)),
            ("anon", None),
            ("bound", Some("z")),
            ("late", Some(alice)),
            ("legacy", Some(alice)),
        ]
        .into_iter()
        .map(|(id, o)| (id.to_owned(), (1, o.map(str::to_owned))))
        .collect();
        for i in 0..(SWEEP_BATCH * 2 + 100) {
            expected.insert(
                format!("many-{i}"),
                (1, Some(format!("https://as\u{1f}user-{i}\u{1f}app"))),
            );
        }
        let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(*k)).collect();
        let extra: Vec<_> = seen.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}, extra {extra:?}"
        );
        assert!(seen == expected, "owners differ");
        assert!(sweep_both(&a, &b).await.is_empty(), "nothing twice");

        // Only the live session is left in the index, and it still works.
        assert!(a.lookup("live", &long).await.unwrap().is_some());
        let index: Vec<String> = c.zrange("mcp-auth:expiry", 0, -1).await.unwrap();
        let owners: Vec<String> = c.hkeys("mcp-auth:owners").await.unwrap();
        assert_eq!(
            (index, owners),
            (vec!["live".to_owned()], vec!["live".to_owned()])
        );
        // A plain sweep empties the index without reporting.
        open(&a, Some(alice), "quiet", &short).await;
        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        b.sweep().await.unwrap();
        assert!(sweep_both(&a, &b).await.is_empty());
    }
}
