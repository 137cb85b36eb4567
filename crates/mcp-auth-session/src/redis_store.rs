//! [`RedisStore`]: sessions shared by replicas, on one Redis, a Redis
//! Cluster or a primary with replicas watched by Sentinel.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{
    Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisFuture, Script, ScriptInvocation, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};

use crate::{
    Bind, Ending, Full, Reserve, SessionLimits, SessionRecord, SessionStore, StoreError, Ticket,
    memory::lock,
    store::{ExpiredSession, kv_ttl},
    subject_of,
};

/// The prefix of every key: rate counters (`rl:`) and key-value entries
/// (`kv:`) everywhere, the session structure on one Redis and on Sentinel.
const PREFIX: &str = "mcp-auth:";

/// The prefix of the session structure on a Redis Cluster: the hash tag
/// `{mcp-auth}` puts every key a session script touches in one slot.
const CLUSTER_PREFIX: &str = "{mcp-auth}:";

/// Every script reads the clock from Redis (`TIME`), so replicas with
/// skewed clocks agree on expiry.
const NOW: &str =
    "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n";

/// Whether a cap group (a principal's, a user's, the anonymous one) is at
/// its cap: it holds at least `cap` members that are still in `all` (live
/// sessions and held reservations; the calling script drops the expired
/// ones from `all` first). A group never holds fewer members than live
/// ones, so below the cap in size it is below the cap in live members,
/// which is one `ZCARD`. Otherwise its members are walked oldest first,
/// each one gone from `all` dropped, until `cap` live ones are found: the
/// cost of a walk is the cap plus what it drops, and each member is
/// dropped once. Ending a session takes it out of its groups, so walks
/// are rare. A lookup only touches `all`, an end learns the session's
/// groups from its owner, and no script builds a key name itself (a
/// cluster needs every key passed in KEYS). `keep` extends a group's life,
/// never shortens it (a reservation's short life must not cut that of the
/// long-lived sessions beside it).
const LIVE: &str = r"
local function full(set, all, cap)
  if cap <= 0 then return true end
  if redis.call('ZCARD', set) < cap then return false end
  local n, from = 0, 0
  while true do
    local ids = redis.call('ZRANGE', set, from, from + 127)
    if #ids == 0 then return false end
    local kept = 0
    for _, id in ipairs(ids) do
      if redis.call('ZSCORE', all, id) then
        n = n + 1
        kept = kept + 1
        if n >= cap then return true end
      else
        redis.call('ZREM', set, id)
      end
    end
    from = from + kept
  end
end
local function keep(set, ms)
  if redis.call('PTTL', set) < ms then redis.call('PEXPIRE', set, ms) end
end
";

/// Drops expired members, checks the caps, reserves a slot.
/// KEYS: all, group (own:<owner> or anon), user (subj:<issuer, subject>, or
/// anon again). ARGV: ttl_ms, max_all, max_group, ticket, max_user (0: no
/// user cap, anonymous).
const RESERVE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if full(KEYS[2], KEYS[1], tonumber(ARGV[3])) then return 2 end
local user = tonumber(ARGV[5]) > 0
if user and full(KEYS[3], KEYS[1], tonumber(ARGV[5])) then return 3 end
local exp = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], exp, ARGV[4])
redis.call('ZADD', KEYS[2], exp, ARGV[4])
keep(KEYS[2], ARGV[1] * 4 + 86400000)
if user then
  redis.call('ZADD', KEYS[3], exp, ARGV[4])
  keep(KEYS[3], ARGV[1] * 4 + 86400000)
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
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 1 end
  if full(KEYS[2], KEYS[1], tonumber(ARGV[6])) then return 1 end
  if user and full(KEYS[4], KEYS[1], tonumber(ARGV[7])) then return 1 end
end
local exp = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], exp, ARGV[3])
redis.call('ZADD', KEYS[2], exp, ARGV[3])
keep(KEYS[2], ARGV[1] * 4 + 86400000)
if user then
  redis.call('ZADD', KEYS[4], exp, ARGV[3])
  keep(KEYS[4], ARGV[1] * 4 + 86400000)
end
redis.call('HSET', KEYS[3], 'owner', ARGV[4], 'kept', now)
redis.call('PEXPIRE', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], exp, ARGV[3])
redis.call('HSET', KEYS[6], ARGV[3], ARGV[4])
return 0
";

/// Reads and touches a session. KEYS: sess, state, all, expiry, owners.
/// ARGV: idle_ms, sid, keep_ms, '1' to touch only for the caller, the
/// caller's owner key. Returns false when gone, else {owner ('' =
/// anonymous), 1 when its cap groups' keys are due for a longer life (last
/// extended more than keep_ms ago), else 0}; a session owned by someone
/// other than the caller is read, not touched. A live session missing from
/// the expiry index (committed by an older version) joins it.
const LOOKUP: &str = r"
local f = redis.call('HMGET', KEYS[1], 'owner', 'kept')
local owner = f[1]
if not owner then return false end
if ARGV[4] == '1' and owner ~= '' and owner ~= ARGV[5] then return {owner, 0} end
local exp = now + tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], exp, ARGV[2])
if redis.call('ZADD', KEYS[4], exp, ARGV[2]) == 1 then
  redis.call('HSET', KEYS[5], ARGV[2], owner)
end
local keep = 0
if now - tonumber(f[2] or '0') > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'kept', now)
  keep = 1
end
return {owner, keep}
";

/// Binds an anonymous session unless the owner (or its user) is at its cap.
/// KEYS: sess, anon, own, user, expiry, owners, all, state. ARGV: idle_ms,
/// sid, owner, max_group, max_user.
/// Returns the owner, '' when the owner is at its cap, false when gone.
/// The session's saved state lives as long as its record from now on (a
/// state expiring first would end the session at its next restore). A
/// session already bound to the caller is written again (its owner, as it
/// is): on Sentinel the caller then waits until a replica has this write,
/// so the first binding too (a caller that wrote nothing would not wait at
/// all, and could be served before the binding is safe).
const BIND: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return false end
if owner == ARGV[3] then
  redis.call('HSET', KEYS[1], 'owner', owner)
  return owner
end
if owner ~= '' then return owner end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
if full(KEYS[3], KEYS[7], tonumber(ARGV[4])) then return '' end
if full(KEYS[4], KEYS[7], tonumber(ARGV[5])) then return '' end
local exp = now + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'kept', now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], exp, ARGV[2])
keep(KEYS[3], ARGV[1] * 4 + 86400000)
redis.call('ZADD', KEYS[4], exp, ARGV[2])
keep(KEYS[4], ARGV[1] * 4 + 86400000)
redis.call('ZADD', KEYS[7], exp, ARGV[2])
redis.call('ZADD', KEYS[5], exp, ARGV[2])
redis.call('HSET', KEYS[6], ARGV[2], ARGV[3])
return ARGV[3]
";

/// Ends a session. KEYS: sess, state, all, expiry, owners, group, user
/// group (the groups of the owner the caller read), the end's marker.
/// ARGV: sid, that owner ('' = anonymous), the caller's nonce. Returns 0
/// when it ended a live session, 2 when the session was already gone, and
/// 1, changing nothing, when the session is now owned by someone else (it
/// was bound in between): the caller reads the owner again. A session
/// already gone stays in the expiry index: it expired before it was ended,
/// and the sweep reports it (and takes it out of its groups).
/// Ending a live session leaves the nonce in the marker for a minute, so
/// the same call sent again (its answer lost, the request resent after a
/// failover or by the cluster client) still answers 0: the end is counted
/// once, by the caller that made it.
const END: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[2] then return 1 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
if owner then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('SET', KEYS[8], ARGV[3], 'PX', 60000)
  return 0
end
if redis.call('GET', KEYS[8]) == ARGV[3] then return 0 end
return 2
";

/// The sessions due in the expiry index (read only). KEYS: expiry. ARGV:
/// batch.
const DUE: &str = r"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
";

/// Takes the given due sessions out of the expiry index, each popped by
/// exactly one caller: the script runs atomically and looks again whether
/// each is still due, so two replicas sweeping at once never both see one.
/// A member whose session key still lives goes back at its key's expiry
/// instead: a script sees keys expire at the time it started, which may be
/// a little before `TIME`, so a session can be due by `TIME` a moment
/// before its key is gone. (A key without expiry, never written so, is
/// looked at again in a minute.) KEYS: expiry, owners, this call's
/// marker, then each session's key. ARGV: the session ids, in the same
/// order. Returns (sid, owner) pairs (owner '' = anonymous or unknown).
/// What it popped stays in the marker (named by the caller's nonce) until
/// the caller has the answer and drops it (a day at most), so the same
/// call sent again gets the same answer rather than nothing: at once (its
/// answer lost, the request resent after a failover or by the cluster
/// client), or by the store's next sweep when that resend failed too.
const SWEEP: &str = r"
local kept = redis.call('LRANGE', KEYS[3], 0, -1)
if #kept > 0 then return kept end
local out = {}
for i, sid in ipairs(ARGV) do
  local due = redis.call('ZSCORE', KEYS[1], sid)
  if due and tonumber(due) <= now then
    local ttl = redis.call('PTTL', KEYS[i + 3])
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
end
if #out > 0 then
  redis.call('RPUSH', KEYS[3], unpack(out))
  redis.call('PEXPIRE', KEYS[3], 86400000)
end
return out
";

/// How many due members one sweep round examines.
const SWEEP_BATCH: usize = 500;

/// How often (at most) a lookup extends the life of its session's cap
/// groups' keys, which live `4 × idle timeout + 1 day` past that: a
/// session used for longer than that keeps counting against its caps.
const KEEP_GROUPS_MS: u64 = 3_600_000;

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

/// Removes a key-value entry if it still holds the given value (an insert
/// no replica took, undone). KEYS: the entry. ARGV: the value.
const UNDO_INSERT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reply may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long finding the primary through the sentinels (and checking it
/// with `ROLE`) may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// On Sentinel, how long a write that must survive a failover (a binding,
/// an end, a single-use take or insert) waits for a replica to have it.
const REPLICATION_WAIT: Duration = Duration::from_secs(1);

/// On Sentinel, how many connections for those writes are kept between
/// uses (more are made while more such writes run at once).
const IDLE_WAITERS: usize = 8;

/// On Sentinel, how often a write no replica took, on a node that still
/// says it is the primary, has the sentinels asked again.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// On Sentinel, how long such a connection is kept unused (an idle TCP
/// connection may have been dropped on the way, or by Redis's `timeout`).
const WAITER_IDLE: Duration = Duration::from_secs(30);

/// After a failed connection attempt, operations fail at once for this long
/// instead of each trying again.
const BACKOFF: Duration = Duration::from_millis(500);

/// Asks the sentinels in turn for the primary, then asks it (`ROLE`)
/// whether it is one; connects to it.
async fn sentinel_connect(client: &mut SentinelClient) -> Result<MultiplexedConnection, String> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    match tokio::time::timeout(
        RESOLVE_TIMEOUT,
        client.get_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("no primary from the sentinels: {e}")),
        Err(_) => Err("no primary from the sentinels in time".to_owned()),
    }
}

/// What the store connects to.
enum Target {
    /// One Redis (`redis://`); the connection manager reconnects by itself.
    Single(redis::Client),
    /// A Redis Cluster (`redis+cluster://`): the client follows the slots.
    Cluster(Box<ClusterClient>),
    /// The primary named by the sentinels (`redis+sentinel://`), found again
    /// when it goes away.
    Sentinel(Box<SentinelClient>),
}

/// A live connection of one of the three kinds.
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
            Link::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
            Link::Sentinel(c) => c.get_db(),
        }
    }
}

struct Conn {
    target: Target,
    /// The connection, and which one it is (counted up per connection made).
    link: Option<(Link, u64)>,
    made: u64,
    last_failure: Option<Instant>,
}

/// May an operation be sent again after it failed because the primary went
/// away (on Sentinel only)?
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read, a write whose second run changes nothing the first did
    /// not (a `SET`, a `DEL`, a touch), or a script that knows its own
    /// resend by the caller's nonce and answers it as before ([`END`],
    /// [`SWEEP`]): sent once more to the primary found again.
    Safe,
    /// A count, a reservation, a single-use take: never sent twice (the
    /// first may have run before the connection broke).
    Never,
}

/// One request: a script, a command or a pipeline.
enum Request<'a> {
    Script(ScriptInvocation<'a>),
    Cmd(Cmd),
    Pipe(Pipeline),
}

/// Sessions, bindings, saved rmcp state and rate counters in Redis, shared
/// by every replica that points at it. Every admission step is one Lua
/// script, so caps and first-binding hold under concurrency across replicas.
///
/// Three deployments, by URL ([`RedisStore::new`]):
/// - one Redis, `redis://[user:password@]host:port/db`;
/// - a Redis Cluster, `redis+cluster://[user:password@]host:port,host:port,...`
///   (seed nodes; the cluster's own map of slots is followed). Every key a
///   session script touches carries the hash tag `{mcp-auth}`
///   (`{mcp-auth}:sess:<id>`, `{mcp-auth}:all`, ...), so each script runs
///   in one slot: the session structure lives on one shard (and its
///   replicas), while rate counters and key-value entries (`mcp-auth:rl:`,
///   `mcp-auth:kv:`) spread over the cluster;
/// - a primary with replicas under Sentinel,
///   `redis+sentinel://[user:password@]host:port,host:port,.../<master name>[/db]`
///   (the sentinels' addresses; the credentials and database are the
///   primary's). The store asks the sentinels for the primary (and checks
///   with `ROLE` that it is one), and finds it again when it goes away.
///
/// It connects on first use and reconnects by itself: while Redis is
/// unreachable every operation fails fast with [`StoreError`] (the HTTP
/// layer answers 503), and service resumes when Redis returns.
///
/// On Sentinel, an operation that fails because the primary went away
/// (connection refused, reset or timed out, or `READONLY`: the node became
/// a replica) drops the connection, so the next one asks the sentinels
/// again. Reads and idempotent writes (lookup, end, release, bind, saved
/// state, `kv_get`, `kv_put`, `kv_delete`, the failed-login count, the
/// sweep) are then sent once more at once (an end or a sweep sent again
/// answers as the first did, so when the resend reaches a primary an end
/// is counted once and an expired session reported once; a sweep whose
/// resend failed too is asked again by the next sweep); the others (reserve, commit, counting hits,
/// `kv_put_new`, `kv_take`) are never sent twice and fail with
/// [`StoreError`]. Replication is asynchronous: what the old primary
/// had not passed on when it died (a session just opened, a count, a
/// touch) is lost; a lost session answers 404 to its owner, never to
/// anyone else. The writes a failover must not undo are the exception:
/// binding an anonymous session, ending a session, and the key-value
/// space's single-use writes (a `kv_take` that got the value, a
/// `kv_put_new` that stored it) are answered only once a replica has them
/// (`WAIT 1`, at most 1 s, on a connection of the write's own; else
/// [`StoreError`]: an insert is removed again, while it holds the value
/// written; a take, a binding or an end stays on the primary, so a code or
/// refresh token taken so is spent). So a failover cannot
/// bring a session back unbound for someone else to take, nor an ended
/// session, a redeemed code or a used DPoP proof back to life; the price is
/// a replica's round trip on each of these writes, and with no replica
/// reachable they fail. On a cluster, the client's own retries apply (it
/// follows `MOVED`/`ASK` and reconnects after a failover; it may send a
/// command again after a broken connection), and nothing is waited for:
/// a shard's failover can undo any of these writes.
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
    shown: String,
    /// The prefix of the session structure ([`PREFIX`] or
    /// [`CLUSTER_PREFIX`]).
    sessions: &'static str,
    conn: tokio::sync::Mutex<Conn>,
    /// On Sentinel, a second client, and the idle connections it made, for
    /// the writes that wait for a replica (see `waiting_connection`).
    binder: Option<Waiters>,
    scripts: Scripts,
    /// What failed sweeps left for the next one.
    leftovers: std::sync::Mutex<SweepLeftovers>,
    /// When the sentinels were last asked again after a write no replica
    /// took (see `RECHECK_EVERY`).
    rechecked: std::sync::Mutex<Option<Instant>>,
}

/// Whether the node `c` leads to still says it is a primary (`ROLE`).
async fn still_primary(c: &mut MultiplexedConnection) -> bool {
    let role: Result<Vec<Value>, _> = redis::cmd("ROLE").query_async(c).await;
    role.ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|first| String::from_redis_value(first).ok())
        .is_some_and(|role| role == "master")
}

/// What a write that waits for a replica came to.
enum Waited<T> {
    /// Answered (and replicated, when it had to be).
    Done(T),
    /// Answered by the primary, but no replica took it in time.
    Unreplicated(T),
}

/// On Sentinel, where the writes that wait for a replica get their
/// connections: one each while it waits (`WAIT` blocks the connection it
/// is sent on), kept for the next such write afterwards.
struct Waiters {
    /// Asks the sentinels for the primary: held only while connecting.
    client: tokio::sync::Mutex<SentinelClient>,
    /// Idle connections, each with the number of the shared connection
    /// current when it was made (once that one is replaced, the primary
    /// went away: they are dropped unused) and when it was last used.
    idle: std::sync::Mutex<Vec<(MultiplexedConnection, u64, Instant)>>,
}

impl Waiters {
    /// The freshest idle connection still good for shared connection `n`;
    /// the stale ones go.
    fn take_idle(&self, n: u64) -> Option<MultiplexedConnection> {
        let mut idle = lock(&self.idle);
        idle.retain(|(_, m, used)| *m == n && used.elapsed() < WAITER_IDLE);
        idle.pop().map(|(c, _, _)| c)
    }
}

/// What a failed sweep leaves for the next one (see `sweep_expired`). It
/// lives in this process only: a store dropped with leftovers (the server
/// stopping before its next sweep) says in the log how many expired
/// sessions go unreported.
#[derive(Default)]
struct SweepLeftovers {
    /// Pops sent without an answer (nonce, ids): asked again under the
    /// same nonce, which answers what the pop took if it ran (see
    /// [`SWEEP`]). At most [`MAX_UNANSWERED`].
    unanswered: Vec<(String, Vec<String>)>,
    /// Sessions popped (out of the index, out of their groups) by a sweep
    /// that failed later on: reported by the next.
    unreported: Vec<ExpiredSession>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let left = self.leftovers.get_mut().unwrap_or_else(|p| p.into_inner());
        let unanswered: usize = left.unanswered.iter().map(|(_, ids)| ids.len()).sum();
        if !left.unreported.is_empty() || unanswered > 0 {
            tracing::error!(
                store = %self.shown,
                popped = left.unreported.len(),
                maybe_popped = unanswered,
                "expired sessions left unreported by a failed sweep (no audit record, not counted)"
            );
        }
    }
}

/// At most this many unanswered pops wait for the next sweep (each of at
/// most [`SWEEP_BATCH`] ids); past it the oldest is given up, with an error
/// in the log.
const MAX_UNANSWERED: usize = 64;

struct Scripts {
    reserve: Script,
    commit: Script,
    lookup: Script,
    bind: Script,
    end: Script,
    due: Script,
    sweep: Script,
    hit: Script,
    unhit: Script,
    undo_insert: Script,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

/// The parts of a `redis+cluster://` or `redis+sentinel://` URL.
struct Nodes {
    username: Option<String>,
    password: Option<String>,
    hosts: Vec<(String, u16)>,
    /// The path's segments (empty ones dropped).
    path: Vec<String>,
}

impl Nodes {
    /// `[user[:password]@]host[:port],host[:port],...[/path]`, given after
    /// the scheme; a missing port is `default_port`. Errors never repeat
    /// the credentials.
    fn parse(rest: &str, default_port: u16) -> Result<Self, String> {
        if rest.contains(['?', '#']) {
            return Err("query parameters are not supported".into());
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if path.contains('@') {
            // Most likely a password with a '/' in it: say so without
            // showing any of it.
            return Err(
                "an '@' after the first '/': write a '/' in the user name or password as %2F"
                    .into(),
            );
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = percent_decode(user).map_err(|e| format!("the user name {e}"))?;
                let pass = pass
                    .map(percent_decode)
                    .transpose()
                    .map_err(|e| format!("the password {e}"))?;
                ((!user.is_empty()).then_some(user), pass)
            }
        };
        let count = hosts.split(',').count();
        let hosts = hosts
            .split(',')
            .enumerate()
            .map(|(i, h)| {
                host_port(h, default_port).map_err(|e| format!("node {} of {count}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let path = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s).map_err(|e| format!("the path {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            username,
            password,
            hosts,
            path,
        })
    }

    /// The hosts as `host:port,host:port` (IPv6 in brackets).
    fn shown(&self) -> String {
        self.hosts
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The credentials (and `db`) for the data nodes.
    fn redis_settings(&self, db: i64) -> RedisConnectionInfo {
        let mut r = RedisConnectionInfo::default().set_db(db);
        if let Some(u) = &self.username {
            r = r.set_username(u);
        }
        if let Some(p) = &self.password {
            r = r.set_password(p);
        }
        r
    }
}

/// `host`, `host:port` or `[v6]:port`. Errors do not repeat the text (a
/// malformed URL may put part of a password here).
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || "not host:port".to_owned();
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(if s.is_empty() {
            "empty (two commas, or a trailing one?)".into()
        } else {
            bad()
        });
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| "the port is not a number from 1 to 65535".to_owned())?,
    };
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes (UTF-8). The error does not repeat the text.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a % not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded".to_owned())
}

impl RedisStore {
    /// A store for `url`. Does not connect yet.
    ///
    /// - `redis://[user:password@]host:port/db`: one Redis.
    /// - `redis+cluster://[user:password@]host:port,host:port,...`: a Redis
    ///   Cluster, by some of its nodes (any reachable one is enough to find
    ///   the others); no database (a cluster has only 0: `/0` is accepted).
    /// - `redis+sentinel://[user:password@]host:port,.../<master name>[/db]`:
    ///   the primary that the sentinels at these addresses know as
    ///   `<master name>` (Sentinel's port, 26379, when none is given); the
    ///   credentials and `db` (default 0) are the primary's (the sentinels
    ///   are asked without credentials).
    ///
    /// Characters of the user name, password or master name outside
    /// `A-Z a-z 0-9 - . _ ~` are written `%XX`. The client is built without
    /// TLS, so `rediss://` fails. Errors do not repeat the URL (it may hold
    /// a password).
    pub fn new(url: &str) -> Result<Self, String> {
        let mut binder = None;
        let (target, shown, sessions) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes = Nodes::parse(rest, 6379)?;
            match nodes.path.as_slice() {
                [] => {}
                [db] if db == "0" => {}
                _ => {
                    return Err(
                        "a cluster has only database 0: give its nodes, without a path".into(),
                    );
                }
            }
            let seeds = nodes
                .hosts
                .iter()
                .map(|(h, p)| {
                    ConnectionAddr::Tcp(h.clone(), *p)
                        .into_connection_info()
                        .map(|i| i.set_redis_settings(nodes.redis_settings(0)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("not a cluster URL: {e}"))?;
            let client = ClusterClient::builder(seeds)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .build()
                .map_err(|e| format!("not a cluster URL: {e}"))?;
            (
                Target::Cluster(Box::new(client)),
                format!("redis+cluster://{}", nodes.shown()),
                CLUSTER_PREFIX,
            )
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let nodes = Nodes::parse(rest, 26379)?;
            let (master, db) = match nodes.path.as_slice() {
                [master] => (master.clone(), 0),
                [master, db] => (
                    master.clone(),
                    db.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
                        "the database after the master name is not a number (0, 1, ...)".to_owned()
                    })?,
                ),
                [] => {
                    return Err(
                        "the master name is missing: redis+sentinel://host:port,.../<master name>[/db]"
                            .into(),
                    );
                }
                _ => return Err("expected /<master name>[/db] after the sentinels".into()),
            };
            let client = || {
                let mut builder = SentinelClientBuilder::new(
                    nodes
                        .hosts
                        .iter()
                        .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p)),
                    &master,
                    SentinelServerType::Master,
                )
                .map_err(|e| format!("not a Sentinel URL: {e}"))?
                .set_client_to_redis_db(db);
                if let Some(u) = &nodes.username {
                    builder = builder.set_client_to_redis_username(u);
                }
                if let Some(p) = &nodes.password {
                    builder = builder.set_client_to_redis_password(p);
                }
                builder
                    .build()
                    .map_err(|e| format!("not a Sentinel URL: {e}"))
            };
            binder = Some(Waiters {
                client: tokio::sync::Mutex::new(client()?),
                idle: std::sync::Mutex::new(Vec::new()),
            });
            (
                Target::Sentinel(Box::new(client()?)),
                format!("redis+sentinel://{}/{master}/{db}", nodes.shown()),
                PREFIX,
            )
        } else {
            let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
            let shown = format!("redis://{}", client.get_connection_info().addr());
            (Target::Single(client), shown, PREFIX)
        };
        Ok(Self {
            shown,
            sessions,
            binder,
            leftovers: std::sync::Mutex::default(),
            rechecked: std::sync::Mutex::default(),
            conn: tokio::sync::Mutex::new(Conn {
                target,
                link: None,
                made: 0,
                last_failure: None,
            }),
            scripts: Scripts {
                reserve: Script::new(&format!("{NOW}{LIVE}{RESERVE}")),
                commit: Script::new(&format!("{NOW}{LIVE}{COMMIT}")),
                lookup: Script::new(&format!("{NOW}{LOOKUP}")),
                bind: Script::new(&format!("{NOW}{LIVE}{BIND}")),
                end: Script::new(END),
                due: Script::new(&format!("{NOW}{DUE}")),
                sweep: Script::new(&format!("{NOW}{SWEEP}")),
                hit: Script::new(HIT),
                unhit: Script::new(UNHIT),
                undo_insert: Script::new(UNDO_INSERT),
            },
        })
    }

    fn err(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError {
            store: self.shown.clone(),
            reason: reason.to_string(),
        }
    }

    /// The connection (made now if there is none), and which one it is.
    async fn link(&self) -> Result<(Link, u64), StoreError> {
        let mut c = self.conn.lock().await;
        if let Some((l, n)) = &c.link {
            return Ok((l.clone(), *n));
        }
        if c.last_failure.is_some_and(|t| t.elapsed() < BACKOFF) {
            return Err(self.err("unreachable (retrying shortly)"));
        }
        let made = match &mut c.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Link::Single)
                    .map_err(|e| e.to_string())
            }
            Target::Cluster(client) => client
                .get_async_connection()
                .await
                .map(Link::Cluster)
                .map_err(|e| e.to_string()),
            Target::Sentinel(client) => sentinel_connect(client).await.map(Link::Sentinel),
        };
        match made {
            Ok(l) => {
                tracing::info!(store = %self.shown, "session store connected");
                c.made += 1;
                c.link = Some((l.clone(), c.made));
                c.last_failure = None;
                Ok((l, c.made))
            }
            Err(e) => {
                c.last_failure = Some(Instant::now());
                tracing::error!(store = %self.shown, error = %e, "session store unreachable");
                Err(self.err(e))
            }
        }
    }

    /// Drops connection `n` if it is still the current one, so the next
    /// operation connects again (on Sentinel: asks the sentinels again).
    async fn forget(&self, n: u64) {
        let mut c = self.conn.lock().await;
        if c.link.as_ref().is_some_and(|(_, m)| *m == n) {
            c.link = None;
        }
    }

    /// On Sentinel, a connection of its own for one write that waits for a
    /// replica: `WAIT` blocks the connection it is sent on, so never the
    /// one every other request shares, nor one another such write waits
    /// on. An idle one made while shared connection `n` was current and
    /// used in the last [`WAITER_IDLE`], else a new one (only these wait
    /// for the sentinels' answer, one at a time; a write finding an idle
    /// connection never waits for them).
    async fn waiting_connection(
        &self,
        n: u64,
    ) -> Result<Option<MultiplexedConnection>, StoreError> {
        let Some(w) = &self.binder else {
            return Ok(None);
        };
        if let Some(c) = w.take_idle(n) {
            return Ok(Some(c));
        }
        let mut client = w.client.lock().await;
        // One returned while this one waited for the lock.
        if let Some(c) = w.take_idle(n) {
            return Ok(Some(c));
        }
        sentinel_connect(&mut client)
            .await
            .map(Some)
            .map_err(|e| self.err(e))
    }

    /// Whether the sentinels are due to be asked again (see
    /// `RECHECK_EVERY`); if so, the clock starts again.
    fn recheck_due(&self) -> bool {
        let mut last = lock(&self.rechecked);
        if last.is_some_and(|t| t.elapsed() < RECHECK_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Keeps a waiting connection for the next write (`Some`, after its
    /// write was replicated), or drops every idle one (`None`, after a
    /// failure or a write no replica took: the primary they lead to may be
    /// gone or cut off).
    fn after_waiting(&self, used: Option<(MultiplexedConnection, u64)>) {
        let Some(w) = &self.binder else {
            return;
        };
        let mut idle = lock(&w.idle);
        match used {
            Some((c, n)) if idle.len() < IDLE_WAITERS => idle.push((c, n, Instant::now())),
            Some(_) => {}
            None => idle.clear(),
        }
    }

    /// On Sentinel: did `e` come from a primary that went away or is no
    /// longer primary?
    fn primary_gone(&self, e: &redis::RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || matches!(
                e.code(),
                Some("READONLY" | "MASTERDOWN" | "LOADING" | "NOREPLICAS")
            )
            || e.to_string().contains("READONLY")
    }

    /// Sends `req`; on Sentinel, after the primary went away, finds it again
    /// and sends a [`Retry::Safe`] request once more.
    async fn query<T: FromRedisValue>(
        &self,
        req: &Request<'_>,
        retry: Retry,
    ) -> Result<T, StoreError> {
        self.query_replicated(req, retry, None).await
    }

    /// Like [`query`](Self::query); on Sentinel, given `replicate`, sends
    /// `req` on a connection of its own (see `waiting_connection`) and,
    /// when `replicate` says so of the answer, waits (`WAIT 1`, on that
    /// connection, so for this write) until a replica has it, for at most
    /// [`REPLICATION_WAIT`]; fails if none has.
    async fn query_replicated<T: FromRedisValue>(
        &self,
        req: &Request<'_>,
        retry: Retry,
        replicate: Option<&(dyn Fn(&T) -> bool + Sync)>,
    ) -> Result<T, StoreError> {
        match self.query_waited(req, retry, replicate).await? {
            Waited::Done(v) => Ok(v),
            Waited::Unreplicated(_) => Err(self.unreplicated()),
        }
    }

    /// The error of a write no replica took in time.
    fn unreplicated(&self) -> StoreError {
        self.err(format!(
            "no replica acknowledged the write within {} ms",
            REPLICATION_WAIT.as_millis()
        ))
    }

    /// [`query_replicated`](Self::query_replicated), a write no replica
    /// took in time given back with its answer (it stays on the primary:
    /// the caller may undo it).
    async fn query_waited<T: FromRedisValue>(
        &self,
        req: &Request<'_>,
        retry: Retry,
        replicate: Option<&(dyn Fn(&T) -> bool + Sync)>,
    ) -> Result<Waited<T>, StoreError> {
        let mut again = retry == Retry::Safe;
        loop {
            let (mut link, n) = self.link().await?;
            let sentinel = matches!(link, Link::Sentinel(_));
            let mut own = None;
            if sentinel
                && replicate.is_some()
                && let Some(c) = self.waiting_connection(n).await?
            {
                link = Link::Sentinel(c.clone());
                own = Some(c);
            }
            let r = match req {
                Request::Script(s) => s.invoke_async(&mut link).await,
                Request::Cmd(c) => c.query_async(&mut link).await,
                Request::Pipe(p) => p.query_async(&mut link).await,
            };
            let r = match r {
                Ok(v) if sentinel && replicate.is_some_and(|r| r(&v)) => redis::cmd("WAIT")
                    .arg(1)
                    .arg(ms(REPLICATION_WAIT))
                    .query_async::<i64>(&mut link)
                    .await
                    .map(|acked| (v, acked > 0)),
                Ok(v) => Ok((v, true)),
                Err(e) => Err(e),
            };
            // A write no replica took: the node may no longer be the
            // primary. Demoted (it says so), its connections go; cut off
            // from the sentinels and replicas it still says it is one, so
            // the sentinels are asked again too, at most every
            // RECHECK_EVERY (a replica merely slow or gone would otherwise
            // have every such write connect anew).
            let demoted = match (&r, &mut own) {
                (Ok((_, false)), Some(c)) => !still_primary(c).await || self.recheck_due(),
                _ => false,
            };
            if let Some(c) = own {
                self.after_waiting((r.is_ok() && !demoted).then_some((c, n)));
            }
            match r {
                Ok((v, true)) => return Ok(Waited::Done(v)),
                Ok((v, false)) => {
                    tracing::error!(store = %self.shown, "no replica took the write in time");
                    if demoted {
                        self.forget(n).await;
                    }
                    return Ok(Waited::Unreplicated(v));
                }
                Err(e) if sentinel && self.primary_gone(&e) => {
                    self.forget(n).await;
                    if again {
                        again = false;
                        tracing::warn!(store = %self.shown, error = %e, "primary gone; asking the sentinels again");
                        continue;
                    }
                    return Err(self.failed(e));
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = String::from(PREFIX);
        k.push_str(&parts.concat());
        k
    }

    /// A key of the session structure (hash-tagged on a cluster).
    fn skey(&self, parts: &[&str]) -> String {
        let mut k = String::from(self.sessions);
        k.push_str(&parts.concat());
        k
    }

    fn group(&self, owner: Option<&str>) -> String {
        match owner {
            Some(o) => self.skey(&["own:", o]),
            None => self.skey(&["anon"]),
        }
    }

    /// The user's group (issuer and subject over all client ids); for an
    /// anonymous session the anonymous group (given no user cap).
    fn user_group(&self, owner: Option<&str>) -> String {
        match owner {
            Some(o) => self.skey(&["subj:", subject_of(o)]),
            None => self.skey(&["anon"]),
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.kv_key(key)).arg(value);
        if only_new {
            cmd.arg("NX");
        }
        cmd.arg("PX").arg(ms);
        // "OK" when set; nil when NX found the key taken.
        let set: Option<String> = if only_new {
            // Never sent twice (the second would find the first's value
            // and answer "not stored"). On Sentinel, answered "stored"
            // once a replica has it: a failover cannot forget a used
            // single-use marker (a DPoP proof's `jti`, say). One no
            // replica took is removed again (the caller is told it failed,
            // so nothing was used under it).
            let waited = self
                .query_waited(
                    &Request::Cmd(cmd),
                    Retry::Never,
                    Some(&|set: &Option<String>| set.is_some()),
                )
                .await?;
            match waited {
                Waited::Done(set) => set,
                Waited::Unreplicated(_) => {
                    // Removed only while it holds this value (not one
                    // written over it since).
                    let mut undo = self.scripts.undo_insert.prepare_invoke();
                    undo.key(self.kv_key(key)).arg(value);
                    if let Err(e) = self
                        .query::<i64>(&Request::Script(undo), Retry::Never)
                        .await
                    {
                        tracing::warn!(error = %e, "an unreplicated insert could not be removed");
                    }
                    return Err(self.unreplicated());
                }
            }
        } else {
            // A plain SET may be sent twice.
            self.query(&Request::Cmd(cmd), Retry::Safe).await?
        };
        Ok(set.is_some())
    }

    /// [`SessionStore::end_live`] with `nonce`, which names this end to the
    /// script: the same nonce sent again after the session is gone (a
    /// resend of this call) still says it was live.
    async fn end_with(&self, sid: &str, nonce: &str) -> Result<bool, StoreError> {
        // The owner names the groups to leave; it changes at most once
        // (bound), so a second read is the last one needed.
        for _ in 0..3 {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(self.skey(&["sess:", sid])).arg("owner");
            let owner: Option<String> = self.query(&Request::Cmd(cmd), Retry::Safe).await?;
            match self
                .end_once(sid, &owner.unwrap_or_default(), nonce)
                .await?
            {
                Ending::NotYours => {}
                ended => return Ok(ended == Ending::Ended),
            }
        }
        Err(self.err("session owner kept changing while it was ended"))
    }

    /// Ends `sid` if `owner` ('' = anonymous) owns it (the END script).
    async fn end_once(&self, sid: &str, owner: &str, nonce: &str) -> Result<Ending, StoreError> {
        let named = (!owner.is_empty()).then_some(owner);
        let mut inv = self.scripts.end.prepare_invoke();
        self.session_keys(&mut inv, sid)
            .key(self.group(named))
            .key(self.user_group(named))
            .key(self.skey(&["ended:", sid]))
            .arg(sid)
            .arg(owner)
            .arg(nonce);
        // Sent twice (the first's answer lost), the second finds the
        // session gone and this call's nonce on it: still ended here.
        // On Sentinel, an end is answered once a replica has it: a
        // failover cannot bring back a session its client saw ended.
        let ended: i64 = self
            .query_replicated(&Request::Script(inv), Retry::Safe, Some(&|e: &i64| *e == 0))
            .await?;
        Ok(match ended {
            0 => Ending::Ended,
            1 => Ending::NotYours,
            _ => Ending::Gone,
        })
    }

    /// Pops those of `ids` that are due (see [`SWEEP`]); `nonce` names
    /// this call, so sent again it answers the same.
    async fn pop_due(
        &self,
        ids: &[String],
        nonce: &str,
    ) -> Result<Vec<ExpiredSession>, StoreError> {
        let mut pop = self.scripts.sweep.prepare_invoke();
        pop.key(self.skey(&["expiry"]))
            .key(self.skey(&["owners"]))
            .key(self.skey(&["swept:", nonce]));
        for id in ids {
            pop.key(self.skey(&["sess:", id]));
        }
        for id in ids {
            pop.arg(id);
        }
        let popped: Vec<String> = self.query(&Request::Script(pop), Retry::Safe).await?;
        let mut popped = popped.into_iter();
        let mut out = Vec::new();
        while let (Some(id), Some(owner)) = (popped.next(), popped.next()) {
            out.push(ExpiredSession::new(
                id,
                (!owner.is_empty()).then_some(owner),
            ));
        }
        Ok(out)
    }

    /// Drops the answer a pop kept under `nonce` once it arrived (no resend
    /// can follow). Best effort: it expires anyway.
    async fn forget_pop(&self, nonce: &str) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.skey(&["swept:", nonce]));
        if let Err(e) = self.query::<()>(&Request::Cmd(cmd), Retry::Safe).await {
            tracing::warn!(error = %e, "could not drop a sweep's kept answer (it expires in a day)");
        }
    }

    /// What failed sweeps left (taken).
    fn take_leftovers(&self) -> SweepLeftovers {
        std::mem::take(&mut *lock(&self.leftovers))
    }

    /// Leaves `unanswered` pops and `unreported` sessions for the next
    /// sweep.
    fn leave_for_next(
        &self,
        unanswered: impl IntoIterator<Item = (String, Vec<String>)>,
        unreported: Vec<ExpiredSession>,
    ) {
        let mut left = lock(&self.leftovers);
        left.unanswered.extend(unanswered);
        if left.unanswered.len() > MAX_UNANSWERED {
            let over = left.unanswered.len() - MAX_UNANSWERED;
            let lost: usize = left
                .unanswered
                .drain(..over)
                .map(|(_, ids)| ids.len())
                .sum();
            tracing::error!(
                store = %self.shown,
                sessions = lost,
                "sweeps kept failing: expired sessions a pop may have taken go unreported"
            );
        }
        left.unreported.extend(unreported);
    }

    /// The first KEYS of LOOKUP and END: the session, its saved state, the
    /// set of all sessions, the expiry index and the owners.
    fn session_keys<'i, 'a>(
        &self,
        inv: &'i mut ScriptInvocation<'a>,
        sid: &str,
    ) -> &'i mut ScriptInvocation<'a> {
        inv.key(self.skey(&["sess:", sid]))
            .key(self.skey(&["state:", sid]))
            .key(self.skey(&["all"]))
            .key(self.skey(&["expiry"]))
            .key(self.skey(&["owners"]))
    }

    /// A lookup: with `caller`, the session is touched only when it has no
    /// owner or `caller` owns it ([`SessionStore::lookup_as`]); without, in
    /// any case.
    async fn find(
        &self,
        sid: &str,
        caller: Option<Option<&str>>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut inv = self.scripts.lookup.prepare_invoke();
        self.session_keys(&mut inv, sid)
            .arg(ms(limits.idle_timeout))
            .arg(sid)
            .arg(KEEP_GROUPS_MS)
            .arg(if caller.is_some() { "1" } else { "0" })
            // No owner key is empty: a caller without credentials owns
            // nothing.
            .arg(caller.flatten().unwrap_or(""));
        // A touch: sent twice, it only moves the expiry a little later.
        let found: Option<(String, i64)> = self.query(&Request::Script(inv), Retry::Safe).await?;
        let Some((owner, keep)) = found else {
            return Ok(None);
        };
        let owner = (!owner.is_empty()).then_some(owner);
        if keep == 1 {
            self.keep_groups(owner.as_deref(), limits).await;
        }
        Ok(Some(SessionRecord { owner }))
    }

    /// Extends the life of `owner`'s cap groups' keys (a lookup found them
    /// due). Best effort: they live a day longer than this is needed.
    async fn keep_groups(&self, owner: Option<&str>, limits: &SessionLimits) {
        let life = ms(limits.idle_timeout)
            .saturating_mul(4)
            .saturating_add(86_400_000);
        let mut pipe = redis::pipe();
        pipe.pexpire(self.group(owner), life as i64).ignore();
        if owner.is_some() {
            pipe.pexpire(self.user_group(owner), life as i64).ignore();
        }
        if let Err(e) = self.query::<()>(&Request::Pipe(pipe), Retry::Safe).await {
            tracing::warn!(error = %e, "could not extend a session's cap groups");
        }
    }

    /// Takes swept sessions out of their cap groups. Best effort: a group
    /// drops what is left when it is next walked.
    async fn leave_groups(&self, swept: &[ExpiredSession]) {
        if swept.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for s in swept {
            let owner = s.owner.as_deref();
            pipe.zrem(self.group(owner), &s.id).ignore();
            if owner.is_some() {
                pipe.zrem(self.user_group(owner), &s.id).ignore();
            }
        }
        if let Err(e) = self.query::<()>(&Request::Pipe(pipe), Retry::Safe).await {
            tracing::warn!(error = %e, "could not take expired sessions out of their cap groups");
        }
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
        let ticket = Ticket::random();
        let group_max = if owner.is_some() {
            limits.max_per_principal
        } else {
            limits.max_anonymous
        };
        let (user, user_max) = self.user(owner, limits);
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.key(self.skey(&["all"]))
            .key(self.group(owner))
            .key(user)
            .arg(ms(limits.reservation_ttl))
            .arg(limits.max_sessions)
            .arg(group_max)
            .arg(&ticket.0)
            .arg(user_max);
        let r: i64 = self.query(&Request::Script(inv), Retry::Never).await?;
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
        let group_max = if owner.is_some() {
            limits.max_per_principal
        } else {
            limits.max_anonymous
        };
        let (user, user_max) = self.user(owner, limits);
        let mut inv = self.scripts.commit.prepare_invoke();
        inv.key(self.skey(&["all"]))
            .key(self.group(owner))
            .key(self.skey(&["sess:", sid]))
            .key(user)
            .key(self.skey(&["expiry"]))
            .key(self.skey(&["owners"]))
            .arg(ms(limits.idle_timeout))
            .arg(&ticket.0)
            .arg(sid)
            .arg(owner.unwrap_or_default())
            .arg(limits.max_sessions)
            .arg(group_max)
            .arg(user_max);
        let r: i64 = self.query(&Request::Script(inv), Retry::Never).await?;
        Ok(r == 0)
    }

    async fn release(&self, ticket: &Ticket, owner: Option<&str>) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.zrem(self.skey(&["all"]), &ticket.0)
            .ignore()
            .zrem(self.group(owner), &ticket.0)
            .ignore()
            .zrem(self.user_group(owner), &ticket.0)
            .ignore();
        self.query(&Request::Pipe(pipe), Retry::Safe).await
    }

    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.find(sid, None, limits).await
    }

    async fn lookup_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.find(sid, Some(caller), limits).await
    }

    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError> {
        let mut inv = self.scripts.bind.prepare_invoke();
        inv.key(self.skey(&["sess:", sid]))
            .key(self.skey(&["anon"]))
            .key(self.skey(&["own:", owner]))
            .key(self.user_group(Some(owner)))
            .key(self.skey(&["expiry"]))
            .key(self.skey(&["owners"]))
            .key(self.skey(&["all"]))
            .key(self.skey(&["state:", sid]))
            .arg(ms(limits.idle_timeout))
            .arg(sid)
            .arg(owner)
            .arg(limits.max_per_principal)
            .arg(limits.max_per_subject);
        // Sent twice, the second finds the session bound (to this owner,
        // or to whoever bound it first) and answers that owner. On
        // Sentinel, a binding is answered only once a replica has it (one
        // found already made by this owner, too: see BIND): a failover
        // right after cannot bring the session back unbound, for someone
        // else to take.
        let r: Option<String> = self
            .query_replicated(
                &Request::Script(inv),
                Retry::Safe,
                Some(&|r: &Option<String>| r.as_deref() == Some(owner)),
            )
            .await?;
        Ok(match r {
            None => Bind::Gone,
            Some(o) if o.is_empty() => Bind::Full,
            Some(o) => Bind::Owner(o),
        })
    }

    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        self.end_live(sid).await.map(drop)
    }

    async fn end_live(&self, sid: &str) -> Result<bool, StoreError> {
        self.end_with(sid, &crate::store::unique_hex()).await
    }

    async fn end_live_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        _limits: &SessionLimits,
    ) -> Result<Ending, StoreError> {
        self.end_once(sid, caller.unwrap_or(""), &crate::store::unique_hex())
            .await
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        let mut inv = self.scripts.hit.prepare_invoke();
        inv.key(self.key(&["rl:", key])).arg(ms(window));
        let (n, ttl): (u64, i64) = self.query(&Request::Script(inv), Retry::Never).await?;
        Ok((n, Duration::from_millis(ttl.max(0) as u64)))
    }

    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError> {
        let k = self.key(&["rl:", key]);
        let mut pipe = redis::pipe();
        pipe.get(&k).pttl(&k);
        let (n, ttl): (Option<u64>, i64) = self.query(&Request::Pipe(pipe), Retry::Safe).await?;
        Ok((n.unwrap_or(0), Duration::from_millis(ttl.max(0) as u64)))
    }

    async fn unhit(&self, key: &str) -> Result<(), StoreError> {
        let mut inv = self.scripts.unhit.prepare_invoke();
        inv.key(self.key(&["rl:", key]));
        let _: i64 = self.query(&Request::Script(inv), Retry::Never).await?;
        Ok(())
    }

    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        limits: &SessionLimits,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.skey(&["state:", sid]))
            .arg(state)
            .arg("PX")
            .arg(ms(limits.idle_timeout));
        let _: () = self.query(&Request::Cmd(cmd), Retry::Safe).await?;
        Ok(())
    }

    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.skey(&["state:", sid]));
        self.query(&Request::Cmd(cmd), Retry::Safe).await
    }

    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.kv_set(key, value, ttl, false).await.map(|_| ())
    }

    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.kv_set(key, value, ttl, true).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.kv_key(key));
        self.query(&Request::Cmd(cmd), Retry::Safe).await
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // One command, so atomic: of concurrent takes only one sees the value.
        // On Sentinel, the value is handed out once a replica has seen it
        // taken: a failover cannot bring back a redeemed code. One no
        // replica saw taken in time stays taken and the caller is told it
        // failed (a code or refresh token is spent: putting it back could
        // undo a delete or revocation made meanwhile).
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.kv_key(key));
        self.query_replicated(
            &Request::Cmd(cmd),
            Retry::Never,
            Some(&|taken: &Option<Vec<u8>>| taken.is_some()),
        )
        .await
    }

    async fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.kv_key(key));
        let _: i64 = self.query(&Request::Cmd(cmd), Retry::Safe).await?;
        Ok(())
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        // Keys expire natively; sorted-set members are dropped on reserve;
        // the expiry index is emptied of expired sessions (unreported).
        self.sweep_expired().await.map(drop)
    }

    /// Pops expired sessions from the expiry index (`mcp-auth:expiry`, a
    /// sorted set of session ids by expiry, beside `mcp-auth:owners`, each
    /// session's owner; `{mcp-auth}:` on a cluster), a batch at a time: one
    /// read of the due ids, then one Lua script that is given their session
    /// keys and pops those still due, so of several replicas sweeping at
    /// once exactly one reports each session. Sessions committed by a
    /// version without the index are reported only once looked up by this
    /// one. The index is bounded by sweeping: sessions expired and not yet
    /// swept stay in it.
    async fn sweep_expired(&self) -> Result<Vec<ExpiredSession>, StoreError> {
        // Not cancel-safe: what it took from the leftovers and popped is
        // lost if this future is dropped before it returns (the sweeper
        // awaits it to the end). What failed sweeps left: sessions popped but not reported (out of
        // their groups already), and pops whose answers never came.
        let SweepLeftovers {
            unanswered: mut replays,
            unreported: mut expired,
        } = self.take_leftovers();
        let mut reported = expired.len();
        loop {
            let replay = replays.pop();
            let replaying = replay.is_some();
            let (nonce, ids) = match replay {
                Some(pop) => pop,
                None => {
                    let mut due = self.scripts.due.prepare_invoke();
                    due.key(self.skey(&["expiry"])).arg(SWEEP_BATCH);
                    let ids: Vec<String> =
                        match self.query(&Request::Script(due), Retry::Safe).await {
                            Ok(ids) => ids,
                            Err(e) => {
                                self.leave_for_next(replays, expired);
                                return Err(e);
                            }
                        };
                    if ids.is_empty() {
                        return Ok(expired);
                    }
                    (crate::store::unique_hex(), ids)
                }
            };
            // After a replay, the regular rounds follow.
            let more = replaying || ids.len() >= SWEEP_BATCH;
            match self.pop_due(&ids, &nonce).await {
                Ok(popped) => {
                    if !popped.is_empty() {
                        self.forget_pop(&nonce).await;
                    }
                    expired.extend(popped);
                }
                Err(e) => {
                    // It may have run: asked again, under its nonce, next time.
                    replays.push((nonce, ids));
                    self.leave_for_next(replays, expired);
                    return Err(e);
                }
            }
            self.leave_groups(&expired[reported..]).await;
            reported = expired.len();
            if !more {
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

    use mcp_auth_integration_tests::{Peer, RedisCluster, RedisSentinel, free_port};
    use redis::AsyncCommands;

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

    /// Opens anonymous sessions `sids` under `short` limits and waits
    /// until they have expired.
    async fn open_expired(s: &RedisStore, sids: &[&str], short: &SessionLimits) {
        for sid in sids {
            open(s, None, sid, short).await;
        }
        tokio::time::sleep(short.idle_timeout + Duration::from_millis(300)).await;
    }

    /// The number `field` in section `section` of `INFO` on the Redis at
    /// `port`.
    fn info_number(port: u16, section: &str, field: &str) -> u64 {
        let info = mcp_auth_integration_tests::redis_cli(port, &["info", section]);
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
    }

    /// One Redis, a store on it and a connection of the test's own.
    async fn redis_with_connection() -> (Peer, RedisStore, redis::aio::MultiplexedConnection) {
        let redis = Peer::redis(free_port());
        let s = RedisStore::new(&redis.redis_url()).unwrap();
        let c = redis::Client::open(redis.redis_url().as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        (redis, s, c)
    }

    /// `CONFIG SET name value`.
    async fn config_set(c: &mut redis::aio::MultiplexedConnection, name: &str, value: &str) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(c)
            .await
            .unwrap();
    }

    /// How often Redis has run `command` (scripts' calls included) since
    /// the last `CONFIG RESETSTAT`.
    async fn calls(c: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(c)
            .await
            .unwrap();
        let line = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    /// A binding gives the saved state the record's life (else the state
    /// could expire first, and the next restore end the session); the
    /// state goes with the session's end. (Ending as the owner only: the
    /// stores' shared `ending_as_the_owner` in tests/stores.rs.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_binding_keeps_the_state_for_the_records_life() {
        let (_redis, s, mut c) = redis_with_connection().await;
        let (short, l) = (
            limits(Duration::from_secs(2)),
            limits(Duration::from_secs(60)),
        );
        let alice = "https://as\u{1f}alice\u{1f}app";
        open(&s, None, "a1", &l).await;
        s.save_state("a1", "{}", &short).await.unwrap();
        assert_eq!(
            s.bind("a1", alice, &l).await.unwrap(),
            Bind::Owner(alice.into())
        );
        let ttl: i64 = c.pttl("mcp-auth:state:a1").await.unwrap();
        assert!(ttl > 50_000, "the state lives as long as the record: {ttl}");
        assert_eq!(
            s.end_live_as("a1", Some(alice), &l).await.unwrap(),
            Ending::Ended
        );
        let left: i64 = c.exists("mcp-auth:state:a1").await.unwrap();
        assert_eq!(left, 0, "the state went with it");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_end_sent_again_after_a_lost_answer_is_still_counted_once() {
        let (_redis, s, mut c) = redis_with_connection().await;
        let l = limits(Duration::from_secs(60));
        open(&s, Some("https://as\u{1f}alice\u{1f}app"), "s1", &l).await;
        open(&s, None, "s2", &l).await;
        for sid in ["s1", "s2"] {
            assert!(
                s.end_with(sid, "call-1").await.unwrap(),
                "{sid}: ended live"
            );
            // The marker goes by itself.
            let ttl: i64 = c.pttl(format!("mcp-auth:ended:{sid}")).await.unwrap();
            assert!((1..=60_000).contains(&ttl), "{sid}: marker's ttl {ttl}");
            // The same call once more, as a resend after its answer was
            // lost: the end it made is still its own.
            assert!(
                s.end_with(sid, "call-1").await.unwrap(),
                "{sid}: the resend"
            );
            // Any other call (another path, another replica) finds it gone.
            assert!(
                !s.end_with(sid, "call-2").await.unwrap(),
                "{sid}: another end"
            );
            assert!(!s.end_live(sid).await.unwrap(), "{sid}: ended once");
            assert!(s.lookup(sid, &l).await.unwrap().is_none(), "{sid}: gone");
        }
        // A session never opened was never live, whatever the nonce.
        assert!(!s.end_with("s3", "call-1").await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_sweep_sent_again_after_a_lost_answer_reports_the_same_sessions() {
        let redis = Peer::redis(free_port());
        let s = RedisStore::new(&redis.redis_url()).unwrap();
        let short = limits(Duration::from_millis(200));
        open(&s, Some("https://as\u{1f}alice\u{1f}app"), "x", &short).await;
        open(&s, None, "y", &short).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ids = vec!["x".to_owned(), "y".to_owned(), "never".to_owned()];
        let names = |v: Vec<ExpiredSession>| {
            let mut v: Vec<_> = v.into_iter().map(|e| (e.id, e.owner)).collect();
            v.sort();
            v
        };
        let first = names(s.pop_due(&ids, "call-1").await.unwrap());
        // The kept answer goes by itself.
        let mut c = redis::Client::open(redis.redis_url().as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let ttl: i64 = c.pttl("mcp-auth:swept:call-1").await.unwrap();
        assert!((1..=86_400_000).contains(&ttl), "kept answer's ttl {ttl}");
        assert_eq!(
            first,
            [
                ("x".into(), Some("https://as\u{1f}alice\u{1f}app".into())),
                ("y".into(), None)
            ]
        );
        // The same call once more, as a resend after its answer was lost:
        // the same sessions, not none (they would never be reported).
        assert_eq!(names(s.pop_due(&ids, "call-1").await.unwrap()), first);
        // Any other sweep finds them taken.
        assert!(s.pop_due(&ids, "call-2").await.unwrap().is_empty());
        assert!(s.sweep_expired().await.unwrap().is_empty());

        // A pop whose resend failed as well: the next sweep asks again
        // under its nonce and reports what it took, with the sessions due
        // since.
        open_expired(&s, &["z1", "z2"], &short).await;
        let lost = names(s.pop_due(&["z1".to_owned()], "call-3").await.unwrap());
        assert_eq!(lost, [("z1".into(), None)]);
        s.leave_for_next([("call-3".into(), vec!["z1".into()])], Vec::new());
        assert_eq!(
            names(s.sweep_expired().await.unwrap()),
            [("z1".into(), None), ("z2".into(), None)]
        );
        assert!(s.leftovers.lock().unwrap().unanswered.is_empty());
        assert!(s.sweep_expired().await.unwrap().is_empty());
        // An answer a sweep received is not kept (call-3's, replayed by the
        // sweep); call-1's, popped by hand above, waits for its expiry.
        let kept: Vec<String> = c.keys("mcp-auth:swept:*").await.unwrap();
        assert_eq!(kept, ["mcp-auth:swept:call-1"]);

        // A pop that fails (Redis refuses writes: it wants a replica it
        // does not have): the sweep fails, and the next one, writes
        // allowed again, reports the sessions.
        open_expired(&s, &["w1", "w2"], &short).await;
        config_set(&mut c, "min-replicas-to-write", "1").await;
        assert!(
            s.sweep_expired().await.is_err(),
            "a refused pop fails the sweep"
        );
        assert_eq!(s.leftovers.lock().unwrap().unanswered.len(), 1);
        config_set(&mut c, "min-replicas-to-write", "0").await;
        assert_eq!(
            names(s.sweep_expired().await.unwrap()),
            [("w1".into(), None), ("w2".into(), None)]
        );
        assert!(s.sweep_expired().await.unwrap().is_empty());

        // A sweep whose replay is answered (from the kept list: no write)
        // and whose next pop is refused: it fails, keeping the replayed
        // session for the next sweep, and the refused pop to ask again.
        open_expired(&s, &["u1", "u2"], &short).await;
        let by_hand = names(s.pop_due(&["u1".to_owned()], "call-4").await.unwrap());
        assert_eq!(by_hand, [("u1".into(), None)]);
        s.leave_for_next([("call-4".into(), vec!["u1".into()])], Vec::new());
        config_set(&mut c, "min-replicas-to-write", "1").await;
        assert!(s.sweep_expired().await.is_err(), "u2's pop is refused");
        {
            let left = s.leftovers.lock().unwrap();
            let kept: Vec<_> = left.unreported.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(kept, ["u1"], "popped before the failure, kept");
            assert_eq!(left.unanswered.len(), 1, "the refused pop, kept");
            assert_eq!(left.unanswered[0].1, ["u2"]);
        }
        config_set(&mut c, "min-replicas-to-write", "0").await;
        assert_eq!(
            names(s.sweep_expired().await.unwrap()),
            [("u1".into(), None), ("u2".into(), None)]
        );
        assert!(s.sweep_expired().await.unwrap().is_empty());

        // Sessions popped by a sweep that failed afterwards are reported
        // by the next.
        s.leave_for_next([], vec![ExpiredSession::new("v1", None)]);
        assert_eq!(
            names(s.sweep_expired().await.unwrap()),
            [("v1".into(), None)]
        );
        assert!(s.sweep_expired().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_caps_cost_the_same_with_many_sessions_and_ended_ones_leave_their_groups() {
        let redis = Peer::redis(free_port());
        let url = redis.redis_url();
        let s = RedisStore::new(&url).unwrap();
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let big = SessionLimits {
            max_per_principal: 1000,
            max_per_subject: 1000,
            max_anonymous: 1000,
            ..limits(Duration::from_secs(60))
        };
        let alice = "https://as\u{1f}alice\u{1f}app";
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut c)
            .await
            .unwrap();
        for i in 0..300 {
            open(&s, Some(alice), &format!("a{i}"), &big).await;
            open(&s, None, &format!("n{i}"), &big).await;
        }
        // Below their caps, groups are not walked: no member is looked up
        // in `all` (before, every reserve and commit looked up each one).
        assert_eq!(calls(&mut c, "zscore").await, 0);
        let own: u64 = c.zcard(s.group(Some(alice))).await.unwrap();
        let user: u64 = c.zcard(s.user_group(Some(alice))).await.unwrap();
        let anon: u64 = c.zcard(s.group(None)).await.unwrap();
        assert_eq!((own, user, anon), (300, 300, 300));

        // Ended sessions leave their groups at once, bound ones included.
        assert_eq!(
            s.bind("n0", "bob", &big).await.unwrap(),
            Bind::Owner("bob".into())
        );
        for i in 0..300 {
            assert!(s.end_live(&format!("a{i}")).await.unwrap());
            s.end(&format!("n{i}")).await.unwrap();
        }
        assert!(!s.end_live("a0").await.unwrap(), "already ended: not again");
        for g in [
            s.group(Some(alice)),
            s.user_group(Some(alice)),
            s.group(None),
            s.group(Some("bob")),
            s.user_group(Some("bob")),
        ] {
            let n: u64 = c.zcard(&g).await.unwrap();
            assert_eq!(n, 0, "{g} emptied by the ends");
        }

        // Expired sessions leave them when swept.
        let short = SessionLimits {
            idle_timeout: Duration::from_millis(300),
            ..big
        };
        open(&s, Some(alice), "x", &short).await;
        open(&s, None, "y", &short).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let swept = s.sweep_expired().await.unwrap();
        assert_eq!(swept.len(), 2);
        for g in [
            s.group(Some(alice)),
            s.user_group(Some(alice)),
            s.group(None),
        ] {
            let n: u64 = c.zcard(&g).await.unwrap();
            assert_eq!(n, 0, "{g} emptied by the sweep");
        }

        // A group swollen with members no longer live (say, left by a
        // replica that died between its reads) is walked once at its cap,
        // drops them, and still counts the live ones exactly.
        let small = SessionLimits {
            max_per_principal: 3,
            ..big
        };
        for i in 0..500 {
            let _: () = c
                .zadd(s.group(Some("carol")), format!("dead{i}"), 1)
                .await
                .unwrap();
        }
        for i in 0..3 {
            open(&s, Some("carol"), &format!("c{i}"), &small).await;
        }
        let n: u64 = c.zcard(s.group(Some("carol"))).await.unwrap();
        assert_eq!(n, 3, "the dead members were dropped");
        assert_eq!(
            s.reserve(Some("carol"), &small).await.unwrap(),
            Reserve::Full(Full::Principal)
        );
        s.end("c1").await.unwrap();
        assert!(matches!(
            s.reserve(Some("carol"), &small).await.unwrap(),
            Reserve::Granted(_)
        ));

        // A cap of 0 admits no one (as the memory store).
        let none = SessionLimits {
            max_anonymous: 0,
            ..big
        };
        assert_eq!(
            s.reserve(None, &none).await.unwrap(),
            Reserve::Full(Full::Anonymous)
        );

        // A reservation's short life never cuts the life of the groups of
        // sessions with a long idle timeout.
        let days = SessionLimits {
            idle_timeout: Duration::from_secs(10 * 86_400),
            reservation_ttl: Duration::from_secs(1),
            ..big
        };
        open(&s, Some("dave"), "d0", &days).await;
        assert!(matches!(
            s.reserve(Some("dave"), &days).await.unwrap(),
            Reserve::Granted(_)
        ));
        for g in [s.group(Some("dave")), s.user_group(Some("dave"))] {
            let ttl: i64 = c.pttl(&g).await.unwrap();
            assert!(ttl > 40 * 86_400_000 - 60_000, "{g} lives {ttl} ms");
        }
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

    #[test]
    fn urls_of_the_three_deployments() {
        let one = RedisStore::new("redis://:secret@127.0.0.1:6379/2").unwrap();
        assert_eq!(one.describe(), "redis://127.0.0.1:6379");
        assert_eq!(one.sessions, PREFIX);

        let cluster =
            RedisStore::new("redis+cluster://us%40er:p%2Fss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
                .unwrap();
        assert_eq!(
            cluster.describe(),
            "redis+cluster://10.0.0.1:7000,10.0.0.2:6379,[::1]:7002"
        );
        assert_eq!(cluster.sessions, CLUSTER_PREFIX);
        assert_eq!(
            cluster.skey(&["sess:", "abc"]),
            "{mcp-auth}:sess:abc",
            "one hash tag for the session structure"
        );
        assert_eq!(
            cluster.key(&["rl:", "x"]),
            "mcp-auth:rl:x",
            "counters hash freely"
        );
        assert!(RedisStore::new("redis+cluster://h:1/0").is_ok());

        let sentinel =
            RedisStore::new("redis+sentinel://:pw@s1:26379,s2,s3:26380/my%20master/3").unwrap();
        assert_eq!(
            sentinel.describe(),
            "redis+sentinel://s1:26379,s2:26379,s3:26380/my master/3"
        );
        assert_eq!(sentinel.sessions, PREFIX);
        assert_eq!(
            RedisStore::new("redis+sentinel://s1/mymaster")
                .unwrap()
                .describe(),
            "redis+sentinel://s1:26379/mymaster/0"
        );

        let parsed = Nodes::parse("u%3A:p%40ss%3Aw@h:1", 9).unwrap();
        assert_eq!(parsed.username.as_deref(), Some("u:"));
        assert_eq!(parsed.password.as_deref(), Some("p@ss:w"));
        assert_eq!(parsed.hosts, [("h".to_owned(), 1)]);
        let parsed = Nodes::parse(":only@h", 9).unwrap();
        assert_eq!(
            (parsed.username, parsed.password.as_deref()),
            (None, Some("only"))
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, says) in [
            ("redis+cluster://:hunter2@h:1/3", "database 0"),
            ("redis+cluster://:hunter2@h:1,,h:2", "node 2 of 3: empty"),
            ("redis+cluster://:hunter2@h:70000", "port"),
            ("redis+cluster://:hunter2@h:0", "port"),
            ("redis+cluster://:hunter2@h:x", "port"),
            ("redis+cluster://:hunter2@", "node 1 of 1: empty"),
            ("redis+cluster://:hunter2@[::1", "host:port"),
            (
                "redis+cluster://:hunter2@h:1,[::1]x",
                "node 2 of 2: not host:port",
            ),
            ("redis+cluster://:hun/ter2@h:1", "%2F"),
            ("redis+sentinel://:hun/ter2@h:1/m", "%2F"),
            ("redis+sentinel://u:1/hunter2/x", "database"),
            ("redis+cluster://:hunter2@h:1?tls=1", "query"),
            ("redis+cluster://:hunter2%zz@h:1", "password"),
            ("redis+sentinel://:hunter2@h:1", "master name is missing"),
            ("redis+sentinel://:hunter2@h:1/m/x", "database"),
            ("redis+sentinel://:hunter2@h:1/m/-1", "database"),
            ("redis+sentinel://:hunter2@h:1/m/0/extra", "master name"),
        ] {
            let Err(e) = RedisStore::new(url) else {
                panic!("{url} accepted")
            };
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
        // Through the settings: the variable is named, the value is not
        // repeated.
        let with = |v: &str| {
            std::collections::HashMap::from([("MCP_SESSION_STORE".to_owned(), v.to_owned())])
        };
        for url in [
            "redis+cluster://:hunter2@h:1/3",
            "redis+sentinel://:hunter2@h:1",
            "rediss+cluster://:hunter2@h:1",
            "rediss+sentinel://:hunter2@h:1/m",
            "redis+unknown://:hunter2@h:1",
        ] {
            let Err(e) = crate::store_from_settings(&with(url)) else {
                panic!("{url} accepted")
            };
            assert_eq!(e.variable, "MCP_SESSION_STORE");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        assert!(crate::store_from_settings(&with("redis+cluster://h:1,h:2")).is_ok());
        assert!(crate::store_from_settings(&with("redis+sentinel://h:1/mymaster/1")).is_ok());
    }

    /// Every script on a real three-primary cluster: each touches one slot
    /// (a cross-slot script fails there), caps hold across two stores, the
    /// sweep reports each expired session once, and the session structure
    /// sits on one node while counters and key-value entries spread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_cluster_store_runs_every_script_in_one_slot() {
        let cluster = RedisCluster::start(3);
        let (a, b) = (
            RedisStore::new(&cluster.url()).unwrap(),
            RedisStore::new(&cluster.url()).unwrap(),
        );
        let l = SessionLimits {
            max_per_principal: 2,
            max_per_subject: 3,
            ..limits(Duration::from_secs(60))
        };
        let alice = "https://as\u{1f}alice\u{1f}app";
        let alice2 = "https://as\u{1f}alice\u{1f}other-app";
        open(&a, Some(alice), "s1", &l).await;
        open(&b, Some(alice), "s2", &l).await;
        assert_eq!(
            a.reserve(Some(alice), &l).await.unwrap(),
            Reserve::Full(Full::Principal)
        );
        open(&b, Some(alice2), "s3", &l).await;
        assert_eq!(
            a.reserve(Some(alice2), &l).await.unwrap(),
            Reserve::Full(Full::Subject),
            "the user's cap over both clients"
        );
        // Ending a session frees its place in both groups.
        b.end("s1").await.unwrap();
        assert!(a.lookup("s1", &l).await.unwrap().is_none());
        open(&a, Some(alice2), "s4", &l).await;
        assert_eq!(
            b.lookup("s4", &l).await.unwrap().unwrap().owner.as_deref(),
            Some(alice2)
        );
        // A reservation given back frees its place too.
        let Reserve::Granted(t) = a.reserve(Some("bob"), &l).await.unwrap() else {
            panic!("bob's slot")
        };
        a.release(&t, Some("bob")).await.unwrap();
        // Binding an anonymous session, once.
        open(&a, None, "anon", &l).await;
        assert_eq!(
            b.bind("anon", "bob", &l).await.unwrap(),
            Bind::Owner("bob".into())
        );
        assert_eq!(
            a.bind("anon", "carol", &l).await.unwrap(),
            Bind::Owner("bob".into())
        );
        // Saved state, counters, key-value entries.
        a.save_state("s2", "state", &l).await.unwrap();
        assert_eq!(b.load_state("s2").await.unwrap().as_deref(), Some("state"));
        for i in 0..20 {
            let key = format!("fail:{i}");
            assert_eq!(a.hit(&key, Duration::from_secs(60)).await.unwrap().0, 1);
            assert_eq!(b.count(&key).await.unwrap().0, 1);
            b.unhit(&key).await.unwrap();
            assert_eq!(a.hit(&key, Duration::from_secs(60)).await.unwrap().0, 1);
            a.kv_put(&format!("k{i}"), b"v", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert!(
            b.kv_put_new("once", b"x", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !a.kv_put_new("once", b"y", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert_eq!(a.kv_take("once").await.unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(b.kv_take("once").await.unwrap(), None);
        b.kv_delete("k0").await.unwrap();
        assert_eq!(a.kv_get("k0").await.unwrap(), None);
        assert_eq!(a.kv_get("k1").await.unwrap().as_deref(), Some(&b"v"[..]));

        // Expiry, reported once across both stores.
        let short = limits(Duration::from_millis(500));
        for i in 0..30 {
            let owner = format!("https://as\u{1f}user-{i}\u{1f}app");
            open(
                if i % 2 == 0 { &a } else { &b },
                Some(&owner),
                &format!("e{i}"),
                &short,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let seen = sweep_both(&a, &b).await;
        assert_eq!(seen.len(), 30, "{seen:?}");
        assert!(seen.values().all(|(n, o)| *n == 1 && o.is_some()));
        assert!(sweep_both(&a, &b).await.is_empty());
        assert!(a.lookup("s2", &l).await.unwrap().is_some(), "still live");

        let by_node = cluster.keys_by_node();
        let tagged: Vec<usize> = (0..by_node.len())
            .filter(|i| by_node[*i].iter().any(|k| k.starts_with("{mcp-auth}:")))
            .collect();
        assert_eq!(tagged.len(), 1, "{by_node:?}");
        assert!(
            by_node
                .iter()
                .filter(|keys| keys.iter().any(|k| k.starts_with("mcp-auth:")))
                .count()
                > 1,
            "counters and key-value entries spread: {by_node:?}"
        );
    }

    /// After a failover the store finds the new primary by itself: a safe
    /// operation is sent again at once, an unsafe one fails once (the
    /// caller answers 503) and the next one goes to the new primary.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs redis-server (tests/run-all.sh installs it)"]
    async fn redis_sentinel_store_follows_a_failover_and_retries_only_what_is_safe() {
        let mut setup = RedisSentinel::start();
        let url = setup.url();
        let (safe, unsafe_) = (
            RedisStore::new(&url).unwrap(),
            RedisStore::new(&url).unwrap(),
        );
        let l = limits(Duration::from_secs(60));
        let alice = "https://as\u{1f}alice\u{1f}app";
        open(&safe, Some(alice), "kept", &l).await;
        // A binding is answered once the replica has it.
        open(&safe, None, "bound", &l).await;
        assert_eq!(
            safe.bind("bound", "bob", &l).await.unwrap(),
            Bind::Owner("bob".into())
        );
        assert_eq!(
            unsafe_
                .hit("fail:x", Duration::from_secs(60))
                .await
                .unwrap()
                .0,
            1
        );
        // A second binding by the owner writes too (else its WAIT, on a
        // connection that wrote nothing, would pass at once, before the
        // first binding reached a replica).
        let primary = setup.primary_port().unwrap();
        let offset = || info_number(primary, "replication", "master_repl_offset");
        let before = offset();
        assert_eq!(
            safe.bind("bound", "bob", &l).await.unwrap(),
            Bind::Owner("bob".into())
        );
        assert!(offset() > before, "the second binding wrote");
        // The writes that wait for a replica reuse their connections.
        let connections = || info_number(primary, "stats", "total_connections_received");
        let before = connections();
        for i in 0..10 {
            let k = format!("once:{i}");
            assert!(
                safe.kv_put_new(&k, b"1", Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            assert!(
                !safe
                    .kv_put_new(&k, b"2", Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            assert_eq!(safe.kv_take(&k).await.unwrap().as_deref(), Some(&b"1"[..]));
        }
        let made = connections() - before;
        assert!(made <= 2, "{made} connections for 20 waited writes");
        safe.kv_put("taken-later", b"1", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(setup.wait_replicated(Duration::from_secs(5)), "replicated");
        let old = setup.primary_port();

        setup.kill_primary();
        let deadline = Instant::now() + Duration::from_secs(30);
        while setup
            .sentinel_ports()
            .iter()
            .any(|s| setup.primary_by_sentinel(*s) != Some(setup.replica_port()))
        {
            assert!(Instant::now() < deadline, "no failover from {old:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The replica may still be finishing its promotion: wait until it
        // takes writes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mcp_auth_integration_tests::redis_cli(setup.replica_port(), &["role"])
            .starts_with("master")
        {
            assert!(Instant::now() < deadline, "the replica was not promoted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Both stores still hold a connection to the dead primary.
        let found = safe.lookup("kept", &l).await.unwrap();
        assert_eq!(found.unwrap().owner.as_deref(), Some(alice), "sent again");
        let refused = unsafe_.hit("fail:x", Duration::from_secs(60)).await;
        assert!(refused.is_err(), "a count is never sent twice: {refused:?}");
        let e = refused.unwrap_err();
        assert!(e.store.starts_with("redis+sentinel://"), "{e}");
        assert_eq!(
            unsafe_
                .hit("fail:x", Duration::from_secs(60))
                .await
                .unwrap()
                .0,
            2,
            "the next one reaches the new primary"
        );
        assert!(safe.describe().ends_with("/mymaster/0"));
        assert_eq!(
            unsafe_.bind("bound", "carol", &l).await.unwrap(),
            Bind::Owner("bob".into()),
            "still bound to its owner"
        );
        // The new primary has no replica (the old primary is dead): a new
        // binding is refused (503) rather than answered and then lost in
        // the next failover.
        open(&safe, None, "unreplicated", &l).await;
        let started = Instant::now();
        let e = safe.bind("unreplicated", "bob", &l).await.unwrap_err();
        assert!(e.reason.contains("replica"), "{e}");
        assert!(
            started.elapsed() >= REPLICATION_WAIT,
            "waited for a replica"
        );
        // The wait holds its own connection: requests beside it are
        // answered while it waits, not after.
        open(&safe, None, "unreplicated2", &l).await;
        let (bound, looked) = tokio::join!(
            async {
                let r = safe.bind("unreplicated2", "bob", &l).await;
                (r, Instant::now())
            },
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let r = safe.lookup("kept", &l).await;
                (r, Instant::now())
            }
        );
        assert!(bound.0.is_err(), "still no replica");
        assert!(looked.0.unwrap().is_some());
        assert!(
            looked.1 + REPLICATION_WAIT / 2 < bound.1,
            "the lookup waited for the bind's WAIT"
        );
        // Nor is a single-use write, or an end, answered before a replica
        // has it: a code taken, a proof's marker stored, a session ended.
        // A take that failed so stays taken (spent, not put back: that
        // could undo a delete made meanwhile); an insert is removed again
        // (nothing was used under it).
        let e = safe.kv_take("taken-later").await.unwrap_err();
        assert!(e.reason.contains("replica"), "{e}");
        assert_eq!(safe.kv_get("taken-later").await.unwrap(), None, "spent");
        let e = safe
            .kv_put_new("marker", b"1", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(e.reason.contains("replica"), "{e}");
        assert_eq!(safe.kv_get("marker").await.unwrap(), None, "removed");
        // A primary that still says it is one keeps its connections: no
        // replica is no reason to ask the sentinels and connect again for
        // every write (only every few seconds, in case it was cut off).
        // The first such write asks them again (and the next connects
        // anew); the writes after it, within RECHECK_EVERY, connect no
        // more.
        let primary = setup.replica_port();
        let connections = || info_number(primary, "stats", "total_connections_received");
        let unreplicated = async |i: usize| {
            let e = safe
                .kv_put_new(&format!("marker{i}"), b"1", Duration::from_secs(60))
                .await
                .unwrap_err();
            assert!(e.reason.contains("replica"), "{e}");
        };
        // (The writes above asked last; the first here asks again.)
        tokio::time::sleep(RECHECK_EVERY).await;
        let started = Instant::now();
        unreplicated(0).await;
        unreplicated(1).await;
        let before = connections();
        unreplicated(2).await;
        let made = connections() - before;
        // The recheck came after write 0's wait: the next is due that much
        // later (a machine too slow for the window proves nothing here).
        if started.elapsed() < RECHECK_EVERY + REPLICATION_WAIT {
            assert!(made <= 1, "{made} connections for an unreplicated write");
        } else {
            eprintln!("too slow to measure the recheck window: {made} connections");
        }
        let e = safe.end_live("kept").await.unwrap_err();
        assert!(e.reason.contains("replica"), "{e}");
        // What is not single-use is not waited for.
        safe.kv_put("plain", b"1", Duration::from_secs(60))
            .await
            .unwrap();
    }
}
