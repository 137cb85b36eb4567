//! The [`SessionStore`] trait.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use mcp_auth_core::settings::{ConfigError, Lookup};

use crate::{MemoryStore, SessionLimits};

/// A reserved session slot, committed under the session's id once it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket(pub String);

impl Ticket {
    /// A fresh random ticket.
    pub fn random() -> Self {
        Self(format!("pending:{}", unique_hex()))
    }
}

/// 128 random bits in hex, for what only needs to be unique (a ticket, a
/// script call's nonce); the clock is a fine fallback.
pub(crate) fn unique_hex() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

/// Which cap is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Full {
    /// `max_sessions`.
    Global,
    /// `max_per_principal`.
    Principal,
    /// `max_per_subject`: the user's sessions over all their clients.
    Subject,
    /// `max_anonymous`.
    Anonymous,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// A slot, held for `reservation_ttl` until committed or released.
    Granted(Ticket),
    /// No slot.
    Full(Full),
}

/// The outcome of binding an anonymous session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// The session's owner now (the caller, or whoever bound it first).
    Owner(String),
    /// The caller already has `max_per_principal` sessions (or its user
    /// `max_per_subject`); it stays anonymous.
    Full,
    /// The session is gone.
    Gone,
}

/// The outcome of ending a session as its owner
/// ([`SessionStore::end_live_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It was live, owned by the caller; it has ended now.
    Ended,
    /// It had already ended or expired.
    Gone,
    /// Someone other than the caller owns it (an anonymous session bound
    /// since the caller looked): nothing changed.
    NotYours,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The owner ([`owner_of`](crate::owner_of)), `None` while anonymous.
    pub owner: Option<String>,
}

/// A session that ended because it expired (unused for the idle timeout),
/// as [`SessionStore::sweep_expired`] reports it: never a session ended by
/// [`SessionStore::end`] while still live, never a reservation that was not
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiredSession {
    /// The session's id (the `Mcp-Session-Id` it was committed under).
    pub id: String,
    /// Its owner ([`owner_of`](crate::owner_of)) when it expired, `None`
    /// when it was anonymous or the store no longer knows.
    pub owner: Option<String>,
}

impl ExpiredSession {
    /// The expired session `id`, owned by `owner`.
    pub fn new(id: impl Into<String>, owner: Option<String>) -> Self {
        Self {
            id: id.into(),
            owner,
        }
    }
}

/// The store could not answer (e.g. Redis is unreachable), or refused the
/// operation (a key-value TTL out of range, the memory store's key-value
/// space full). Callers fail closed: no session is created or served on a
/// guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session store {store} unavailable: {reason}")]
pub struct StoreError {
    /// Which store (`memory`, or the Redis URL without credentials).
    pub store: String,
    /// What went wrong.
    pub reason: String,
}

/// Where sessions live. Implementations make [`reserve`](Self::reserve),
/// [`commit`](Self::commit) and [`bind`](Self::bind) atomic, so caps and
/// binding hold when several replicas share the store.
///
/// # Key-value space
///
/// The `kv_*` methods keep small expiring values beside the sessions, so
/// state that must survive a hop between replicas (registered clients,
/// pending logins, single-use authorization codes, refresh-token families,
/// signing keys) lives where the sessions do:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use mcp_auth_session::{MemoryStore, SessionStore};
///
/// let store = MemoryStore::new();
/// let ttl = Duration::from_secs(60);
/// // A single-use code: issued once, redeemed at most once.
/// store.kv_put("code:abc", b"grant", ttl).await.unwrap();
/// assert_eq!(store.kv_take("code:abc").await.unwrap().as_deref(), Some(&b"grant"[..]));
/// assert_eq!(store.kv_take("code:abc").await.unwrap(), None);
/// // Generate once, replicas agree: only the first put_new stores.
/// assert!(store.kv_put_new("signing-key", b"mine", ttl).await.unwrap());
/// assert!(!store.kv_put_new("signing-key", b"theirs", ttl).await.unwrap());
/// assert_eq!(store.kv_get("signing-key").await.unwrap().as_deref(), Some(&b"mine"[..]));
/// # }
/// ```
///
/// - Keys are a namespace of their own: a key never names a session, its
///   saved state or a rate counter, whatever its text (the Redis store
///   prefixes them with `mcp-auth:kv:`).
/// - Values are opaque bytes, stored as given: encrypt secrets first.
/// - Every value expires: the TTL is required. A zero TTL or one above
///   [`KV_MAX_TTL`] is refused with [`StoreError`] (a zero TTL is almost
///   always a computed expiry that has already passed); a TTL under a
///   millisecond is rounded up to one (Redis counts milliseconds).
/// - A store may refuse to store when full (the [`MemoryStore`] bounds its
///   key-value space); it never evicts a live value to make room.
///
/// The methods have no default implementations: a default that pretended
/// to store (or stored per replica) would break single use and agreement
/// silently, so every store says how it keeps them.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Reserves a slot for a new session of `owner` (`None`: anonymous),
    /// unless a cap is reached. Expired sessions and reservations do not count.
    async fn reserve(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Reserve, StoreError>;

    /// Turns a reservation into the session `sid`. Returns false when the
    /// reservation had lapsed and the caps are full now: no session was
    /// recorded.
    async fn commit(
        &self,
        ticket: &Ticket,
        sid: &str,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<bool, StoreError>;

    /// Gives a reservation back (the session was not created).
    async fn release(&self, ticket: &Ticket, owner: Option<&str>) -> Result<(), StoreError>;

    /// The live session `sid`, touched (its idle expiry restarts); `None`
    /// when unknown, ended or expired.
    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// [`lookup`](Self::lookup) asked of the shared store itself, never
    /// answered from what a replica remembers ([`crate::cached`]): for a
    /// decision that must see an end made through another replica at once,
    /// such as keeping an idle session's worker. By default
    /// [`lookup`](Self::lookup).
    async fn lookup_fresh(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.lookup(sid, limits).await
    }

    /// [`lookup`](Self::lookup) for a request by `caller` (its owner key as
    /// [`owner_of`](crate::owner_of) makes it; `None` without credentials):
    /// the session is touched only when `caller` may use it, i.e. it has no
    /// owner or `caller` is its owner, so someone who merely knows another's
    /// session id cannot keep it alive. The record is returned either way
    /// (the layer deciding the answer compares the owner). The stores of
    /// this crate do so in the one round trip of a lookup; by default this
    /// is [`lookup`](Self::lookup), which touches in any case.
    async fn lookup_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let _ = caller;
        self.lookup(sid, limits).await
    }

    /// Binds an anonymous session to `owner`, unless `owner` is at its cap.
    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError>;

    /// Ends `sid` (and drops its saved state).
    async fn end(&self, sid: &str) -> Result<(), StoreError>;

    /// Ends `sid` like [`end`](Self::end) and says whether it was live
    /// until now: `false` when it had already ended or expired (so an end
    /// is counted once, however many replicas or paths see it go). The
    /// default, for stores that cannot tell, says `true`.
    async fn end_live(&self, sid: &str) -> Result<bool, StoreError> {
        self.end(sid).await.map(|()| true)
    }

    /// Ends `sid` like [`end_live`](Self::end_live), but only while
    /// `caller` owns it (`None`: while it has no owner): a session bound to
    /// someone else since the caller looked is left as it is. The default,
    /// for stores that cannot check and end in one step, looks first and
    /// then ends (a binding in between is missed); the stores of this
    /// crate do both at once.
    async fn end_live_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Ending, StoreError> {
        match self.lookup_as(sid, caller, limits).await? {
            None => Ok(Ending::Gone),
            Some(r) if r.owner.as_deref() != caller => Ok(Ending::NotYours),
            Some(_) if self.end_live(sid).await? => Ok(Ending::Ended),
            Some(_) => Ok(Ending::Gone),
        }
    }

    /// Counts one event for `key` in the current fixed window of `window`;
    /// returns the count so far and the time until the window ends.
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError>;

    /// The count for `key` in the current window, without counting.
    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError>;

    /// Takes back one [`hit`](Self::hit) (an event counted in advance that
    /// turned out not to count).
    async fn unhit(&self, key: &str) -> Result<(), StoreError>;

    /// Saves opaque per-session state (rmcp's `initialize` parameters, so
    /// another replica can restore the session). Expires with the session.
    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        limits: &SessionLimits,
    ) -> Result<(), StoreError>;

    /// The saved state of `sid`.
    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError>;

    /// Stores `value` under `key` in the key-value space, replacing any
    /// value there, for `ttl` (see [Key-value space](#key-value-space) for
    /// the TTL rules).
    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Stores `value` under `key` for `ttl` only if no live value is there;
    /// true when this call stored it. Of several concurrent calls for one
    /// key, on any number of replicas, exactly one gets true: use it to
    /// agree on a value generated once (a signing key: put yours, then
    /// [`kv_get`](Self::kv_get) the winner's) or as a replay marker.
    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError>;

    /// The live value under `key`; `None` when absent or expired.
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes and returns the live value under `key`, atomically: of
    /// several concurrent takes of one key, on any number of replicas, at
    /// most one gets the value (single-use authorization codes). A take
    /// that fails with [`StoreError`] may still have removed the value
    /// (the Redis store on Sentinel, when no replica saw the take in time):
    /// it is never handed out twice.
    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key` (nothing happens when it is absent).
    async fn kv_delete(&self, key: &str) -> Result<(), StoreError>;

    /// Drops expired entries (stores with native expiry may do nothing).
    /// Expired sessions are dropped without being reported: a sweeper that
    /// wants to know which ended calls [`sweep_expired`](Self::sweep_expired)
    /// instead (not both: what one drops the other never sees).
    async fn sweep(&self) -> Result<(), StoreError>;

    /// Drops expired entries, like [`sweep`](Self::sweep), and returns the
    /// sessions that expired since the last sweep. Each expired session is
    /// returned once, by one call, also when several replicas sweep one
    /// shared store at the same time; a session ended by
    /// [`end`](Self::end) while live is never returned (one that had
    /// already expired when `end` came is). A store may bound how many it
    /// keeps between sweeps.
    ///
    /// The default sweeps and reports nothing, for stores that cannot tell.
    async fn sweep_expired(&self) -> Result<Vec<ExpiredSession>, StoreError> {
        self.sweep().await?;
        Ok(Vec::new())
    }

    /// A name for logs: `memory`, or the store's URL without credentials.
    fn describe(&self) -> String;
}

/// The longest TTL a key-value entry may have (365 days); longer-lived
/// state is written again before it expires.
pub const KV_MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Checks a key-value TTL (not zero, at most [`KV_MAX_TTL`]) and rounds it
/// up to whole milliseconds; `store` names the store in the error.
pub(crate) fn kv_ttl(ttl: Duration, store: &str) -> Result<Duration, StoreError> {
    let refuse = |reason: String| StoreError {
        store: store.to_owned(),
        reason,
    };
    if ttl.is_zero() {
        return Err(refuse(
            "key-value TTL is zero (every entry must expire)".to_owned(),
        ));
    }
    if ttl > KV_MAX_TTL {
        return Err(refuse(format!(
            "key-value TTL {}s exceeds the maximum of {}s",
            ttl.as_secs(),
            KV_MAX_TTL.as_secs()
        )));
    }
    let whole = Duration::from_millis(ttl.as_millis().try_into().unwrap_or(u64::MAX));
    Ok(if whole < ttl {
        whole + Duration::from_millis(1)
    } else {
        whole
    })
}

/// A store shared between tasks.
pub type SharedStore = Arc<dyn SessionStore>;

/// Reads `MCP_SESSION_STORE`: `memory` (default), `redis://host:port/db`,
/// `redis+cluster://host:port,host:port,...` (Redis Cluster, seed nodes)
/// or `redis+sentinel://host:port,.../master-name[/db]` (the primary
/// found through Sentinel, followed across failovers),
/// [`metered`](crate::metered) (its operations counted, timed and traced).
/// `rediss://` (TLS) is refused by name: the Redis client is built without
/// TLS (reach Redis over a private network, or through a TLS tunnel). The
/// Redis store connects lazily: an unreachable Redis fails requests with 503
/// until it returns.
///
/// In front of Redis, session lookups are remembered for
/// `MCP_SESSION_CACHE_MS` (default 1000; `0`: never) by
/// [`cached`](crate::cached), which says what that changes: a session
/// ended on another replica stops here within that time.
pub fn store_from_settings(l: &dyn Lookup) -> Result<SharedStore, ConfigError> {
    let shared = l
        .get("MCP_SESSION_STORE")
        .is_some_and(|v| !v.eq_ignore_ascii_case("memory"));
    let ttl = match l.get("MCP_SESSION_CACHE_MS") {
        Some(v) if v.trim() == "0" => Duration::ZERO,
        _ => mcp_auth_core::settings::parse_millis(
            l,
            "MCP_SESSION_CACHE_MS",
            crate::DEFAULT_CACHE_TTL,
        )?,
    };
    if ttl > Duration::from_secs(60) {
        return Err(ConfigError::new(
            "MCP_SESSION_CACHE_MS",
            "at most 60000: an ended session is served by other replicas for this long",
        ));
    }
    // A remembered lookup does not renew the session's idle expiry: the
    // real one must come well within it.
    let idle = crate::SessionLimits::from_settings(l)?.idle_timeout;
    if shared && ttl * 2 > idle {
        return Err(ConfigError::new(
            "MCP_SESSION_CACHE_MS",
            "must be at most half of HTTP_SESSION_TIMEOUT (a remembered lookup does not renew the session)",
        ));
    }
    let store = plain_store_from_settings(l).map(crate::metered)?;
    Ok(if shared && !ttl.is_zero() {
        crate::cached(store, ttl)
    } else {
        store
    })
}

/// The store `MCP_SESSION_STORE` names, before metering and caching:
/// `memory` (the default), or Redis in one of three forms (see
/// `RedisStore::new` for the details):
///
/// - `redis://[user:password@]host:port/db`: one Redis;
/// - `redis+cluster://[user:password@]host:port,host:port,...`: a Redis
///   Cluster, by some of its nodes;
/// - `redis+sentinel://[user:password@]host:port,host:port,.../<master name>[/db]`:
///   the primary that these sentinels name (failover followed).
///
/// TLS (`rediss://`, `rediss+cluster://`, `rediss+sentinel://`) is refused
/// by name. Errors name `MCP_SESSION_STORE` and never repeat the value (it
/// may hold a password).
fn plain_store_from_settings(l: &dyn Lookup) -> Result<SharedStore, ConfigError> {
    match l.get("MCP_SESSION_STORE") {
        None => Ok(Arc::new(MemoryStore::new())),
        Some(v) if v.eq_ignore_ascii_case("memory") => Ok(Arc::new(MemoryStore::new())),
        Some(v) if v.starts_with("rediss://") || v.starts_with("rediss+") => Err(ConfigError::new(
            "MCP_SESSION_STORE",
            "rediss:// (TLS) is not supported: use redis:// (or redis+cluster://, \
                 redis+sentinel://) over a private network or a TLS tunnel",
        )),
        #[cfg(feature = "redis")]
        Some(v)
            if v.starts_with("redis://")
                || v.starts_with("redis+cluster://")
                || v.starts_with("redis+sentinel://") =>
        {
            crate::RedisStore::new(&v)
                .map(|s| Arc::new(s) as SharedStore)
                .map_err(|e| ConfigError::new("MCP_SESSION_STORE", e))
        }
        Some(_) => Err(ConfigError::new(
            "MCP_SESSION_STORE",
            "expected memory, redis://host:port/db, redis+cluster://host:port,host:port,... \
             or redis+sentinel://host:port,host:port,.../<master name>[/db]",
        )),
    }
}
