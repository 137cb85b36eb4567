//! [`cached`]: session lookups answered from this process's memory for a
//! short time, in front of a shared store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{
    Bind, Ending, ExpiredSession, Reserve, SessionLimits, SessionRecord, SessionStore, SharedStore,
    StoreError, Ticket,
};

/// Most sessions one process remembers; past it, entries older than the
/// time to live are dropped, and if that frees nothing the lookup is not
/// remembered.
pub const CACHE_CAPACITY: usize = 100_000;

/// The default time a lookup is remembered (`MCP_SESSION_CACHE_MS`).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Remembers each live session's record for `ttl` after a lookup in
/// `store`, so that the requests of an active session cost one round trip
/// to a shared store (Redis) per `ttl` and replica instead of one each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{sync::Arc, time::Duration};
/// use mcp_auth_session::{MemoryStore, Reserve, SessionLimits, SessionStore, cached};
///
/// let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
/// let replica = cached(shared.clone(), Duration::from_secs(1));
/// let limits = SessionLimits::default();
/// let Reserve::Granted(t) = replica.reserve(Some("alice"), &limits).await.unwrap() else { panic!() };
/// replica.commit(&t, "sid-1", Some("alice"), &limits).await.unwrap();
/// assert!(replica.lookup("sid-1", &limits).await.unwrap().is_some());
/// // Ended elsewhere (another replica): this one still answers for up to
/// // the time to live...
/// shared.end("sid-1").await.unwrap();
/// assert!(replica.lookup("sid-1", &limits).await.unwrap().is_some());
/// // ...unless asked afresh...
/// assert!(replica.lookup_fresh("sid-1", &limits).await.unwrap().is_none());
/// // ...while an end through this replica is seen at once.
/// replica.end("sid-1").await.unwrap();
/// assert!(replica.lookup("sid-1", &limits).await.unwrap().is_none());
/// # }
/// ```
///
/// What this changes, and why it is safe:
/// - A session ended or expired on another replica is still served here
///   for at most `ttl` (to its owner only: the owner comes from the
///   remembered record, and a session is never remembered under another
///   owner). Ended through this replica, it stops at once.
/// - Anonymous sessions are never remembered (anyone's next request may
///   bind them, on any replica); binding always goes to the store.
/// - Idle expiry: a remembered lookup does not touch the session in the
///   store, but a real lookup (which does) happens at least every `ttl`
///   while the session is used, and `ttl` is far below any idle timeout.
/// - Caps, reservations, binding, ends, rate counters and the key-value
///   space always go to the store.
pub fn cached(store: SharedStore, ttl: Duration) -> SharedStore {
    Arc::new(Cached {
        inner: store,
        ttl,
        entries: Mutex::new(Entries::default()),
    })
}

struct Cached {
    inner: SharedStore,
    ttl: Duration,
    entries: Mutex<Entries>,
}

/// Remembered lookups, and when the stale ones were last dropped.
#[derive(Default)]
struct Entries {
    map: HashMap<String, (SessionRecord, Instant)>,
    purged: Option<Instant>,
    /// Sessions ended or bound through this replica lately, and when: a
    /// lookup that started before is not remembered (it may have found
    /// the session still live).
    ended: HashMap<String, Instant>,
}

/// How long an end through this replica keeps lookups already under way
/// from being remembered: longer than any lookup takes (a store's
/// response timeout is 2 s).
const ENDED_KEPT: Duration = Duration::from_secs(10);

impl Cached {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (SessionRecord, Instant)>) -> T) -> T {
        self.with_entries(|e| f(&mut e.map))
    }

    fn with_entries<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        let mut m = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut m)
    }

    /// Ended or bound through this replica: forgotten, and lookups already
    /// under way are not remembered.
    fn ended_here(&self, sid: &str) {
        let now = Instant::now();
        self.with_entries(|e| {
            e.map.remove(sid);
            crate::memory::shrink(&mut e.map);
            if e.ended.len() >= CACHE_CAPACITY {
                e.ended.retain(|_, at| now.duration_since(*at) < ENDED_KEPT);
                crate::memory::shrink(&mut e.ended);
                if e.ended.len() >= CACHE_CAPACITY {
                    e.ended.clear();
                }
            }
            e.ended.insert(sid.to_owned(), now);
        });
    }

    fn forget(&self, sid: &str) {
        self.with(|m| {
            m.remove(sid);
            crate::memory::shrink(m);
        });
    }

    /// Remembers `record`, found by a lookup that started at `now`, unless
    /// the session was ended or bound through this replica since.
    fn remember(&self, sid: &str, record: SessionRecord, now: Instant) {
        let ttl = self.ttl;
        self.with_entries(|e| {
            if e.ended.get(sid).is_some_and(|at| *at >= now) {
                return;
            }
            // Stale entries go at least every `ttl` (and when full), so
            // sessions no longer used (parked, ended elsewhere) cost nothing
            // here after a moment.
            let due = e.purged.is_none_or(|at| now.duration_since(at) >= ttl);
            if due || (e.map.len() >= CACHE_CAPACITY && !e.map.contains_key(sid)) {
                e.map.retain(|_, (_, at)| now.duration_since(*at) < ttl);
                crate::memory::shrink(&mut e.map);
                e.ended.retain(|_, at| now.duration_since(*at) < ENDED_KEPT);
                crate::memory::shrink(&mut e.ended);
                e.purged = Some(now);
                if e.map.len() >= CACHE_CAPACITY {
                    return;
                }
            }
            e.map.insert(sid.to_owned(), (record, now));
        });
    }

    /// A lookup (see [`SessionStore::lookup_as`] for `caller`): a hit
    /// touches nothing; a miss asks the store behind.
    async fn find(
        &self,
        sid: &str,
        caller: Option<Option<&str>>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let now = Instant::now();
        let ttl = self.ttl;
        let hit = self.with(|m| match m.get(sid) {
            Some((record, at)) if now.duration_since(*at) < ttl => Some(record.clone()),
            _ => None,
        });
        if hit.is_some() {
            return Ok(hit);
        }
        let found = match caller {
            Some(caller) => self.inner.lookup_as(sid, caller, limits).await?,
            None => self.inner.lookup(sid, limits).await?,
        };
        match &found {
            // An anonymous session can be bound by anyone's next request on
            // another replica: always asked afresh. Kept only when the
            // store touched it: one found by someone else would, kept,
            // answer its owner's next requests without touching it.
            Some(record)
                if record.owner.is_some()
                    && caller.is_none_or(|c| c == record.owner.as_deref()) =>
            {
                self.remember(sid, record.clone(), now)
            }
            Some(record) if record.owner.is_some() => {}
            _ => self.forget(sid),
        }
        Ok(found)
    }
}

#[async_trait]
impl SessionStore for Cached {
    async fn reserve(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Reserve, StoreError> {
        self.inner.reserve(owner, limits).await
    }

    async fn commit(
        &self,
        ticket: &Ticket,
        sid: &str,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<bool, StoreError> {
        self.inner.commit(ticket, sid, owner, limits).await
    }

    async fn release(&self, ticket: &Ticket, owner: Option<&str>) -> Result<(), StoreError> {
        self.inner.release(ticket, owner).await
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

    async fn lookup_fresh(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // What was remembered may be what this answer contradicts.
        self.forget(sid);
        self.inner.lookup_fresh(sid, limits).await
    }

    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError> {
        // Marked before and after: a lookup that starts while the store
        // ends it may still find it live.
        self.ended_here(sid);
        let bound = self.inner.bind(sid, owner, limits).await;
        self.ended_here(sid);
        bound
    }

    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        self.ended_here(sid);
        let ended = self.inner.end(sid).await;
        self.ended_here(sid);
        ended
    }

    async fn end_live(&self, sid: &str) -> Result<bool, StoreError> {
        self.ended_here(sid);
        let ended = self.inner.end_live(sid).await;
        self.ended_here(sid);
        ended
    }

    async fn end_live_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Ending, StoreError> {
        self.ended_here(sid);
        let ended = self.inner.end_live_as(sid, caller, limits).await;
        self.ended_here(sid);
        ended
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        self.inner.hit(key, window).await
    }

    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError> {
        self.inner.count(key).await
    }

    async fn unhit(&self, key: &str) -> Result<(), StoreError> {
        self.inner.unhit(key).await
    }

    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        limits: &SessionLimits,
    ) -> Result<(), StoreError> {
        self.inner.save_state(sid, state, limits).await
    }

    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        self.inner.load_state(sid).await
    }

    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.inner.kv_put(key, value, ttl).await
    }

    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.inner.kv_put_new(key, value, ttl).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.kv_get(key).await
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.kv_take(key).await
    }

    async fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.kv_delete(key).await
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        self.inner.sweep().await
    }

    async fn sweep_expired(&self) -> Result<Vec<ExpiredSession>, StoreError> {
        let expired = self.inner.sweep_expired().await?;
        self.with(|m| {
            for e in &expired {
                m.remove(&e.id);
            }
        });
        Ok(expired)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    async fn open(store: &SharedStore, sid: &str, owner: Option<&str>) {
        let limits = SessionLimits::default();
        let Reserve::Granted(t) = store.reserve(owner, &limits).await.unwrap() else {
            panic!("no slot")
        };
        assert!(store.commit(&t, sid, owner, &limits).await.unwrap());
    }

    #[test]
    fn stale_entries_go_within_a_ttl_and_give_their_memory_back() {
        let c = Cached {
            inner: Arc::new(MemoryStore::new()),
            ttl: Duration::from_secs(1),
            entries: Mutex::new(Entries::default()),
        };
        let record = || SessionRecord {
            owner: Some("alice".into()),
        };
        let t0 = Instant::now();
        for i in 0..10_000 {
            c.remember(&format!("s{i}"), record(), t0);
        }
        let big = c.with(|m| (m.len(), m.capacity()));
        assert_eq!(big.0, 10_000);
        // Within the TTL nothing is dropped; past it, the next one drops
        // every stale entry, and the map shrinks.
        c.remember("fresh", record(), t0 + Duration::from_millis(500));
        assert_eq!(c.with(|m| m.len()), 10_001);
        c.remember("later", record(), t0 + Duration::from_millis(1200));
        let (len, capacity) = c.with(|m| (m.len(), m.capacity()));
        assert_eq!(len, 2, "only the entries younger than the TTL are left");
        assert!(capacity < big.1 / 4, "{capacity} of {}", big.1);
    }

    #[tokio::test]
    async fn remembers_for_the_ttl_only_and_forgets_on_end_and_bind() {
        let limits = SessionLimits::default();
        let shared: SharedStore = Arc::new(MemoryStore::new());
        let replica = cached(shared.clone(), Duration::from_millis(200));
        open(&replica, "s1", Some("alice")).await;
        open(&replica, "s2", None).await;
        let owner = |r: Option<SessionRecord>| r.map(|r| r.owner);

        assert_eq!(
            owner(replica.lookup("s1", &limits).await.unwrap()),
            Some(Some("alice".into()))
        );
        // Ended elsewhere: remembered until the TTL has passed, then gone.
        shared.end("s1").await.unwrap();
        assert!(replica.lookup("s1", &limits).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(replica.lookup("s1", &limits).await.unwrap().is_none());

        // Binding goes to the store and forgets what was remembered.
        assert_eq!(
            owner(replica.lookup("s2", &limits).await.unwrap()),
            Some(None)
        );
        assert_eq!(
            shared.bind("s2", "bob", &limits).await.unwrap(),
            Bind::Owner("bob".into())
        );
        assert_eq!(
            replica.bind("s2", "carol", &limits).await.unwrap(),
            Bind::Owner("bob".into()),
            "the store decides, not the remembered anonymous record"
        );
        assert_eq!(
            owner(replica.lookup("s2", &limits).await.unwrap()),
            Some(Some("bob".into()))
        );
        // An end through this replica is seen at once.
        replica.end("s2").await.unwrap();
        assert!(replica.lookup("s2", &limits).await.unwrap().is_none());
    }

    /// A lookup under way while the session is ended through this replica
    /// (it found the session live just before) is not remembered: the end
    /// is seen at once, as promised (an attack pass: the late answer was
    /// remembered after the end forgot the session, and served its owner
    /// for the time to live).
    #[test]
    fn a_lookup_older_than_an_end_here_is_not_remembered() {
        let c = Cached {
            inner: Arc::new(MemoryStore::new()),
            ttl: Duration::from_secs(60),
            entries: Mutex::new(Entries::default()),
        };
        let record = || SessionRecord {
            owner: Some("alice".into()),
        };
        let started = Instant::now();
        c.ended_here("s1");
        c.remember("s1", record(), started);
        assert!(
            c.with(|m| m.get("s1").is_none()),
            "remembered after its end"
        );
        // A lookup that started after the end is remembered as usual.
        c.remember("s1", record(), Instant::now());
        assert!(c.with(|m| m.get("s1").is_some()));
    }

    #[tokio::test]
    async fn a_remembered_lookup_does_not_reach_the_store() {
        let limits = SessionLimits::default();
        let shared: SharedStore = Arc::new(MemoryStore::new());
        let replica = cached(shared.clone(), Duration::from_secs(60));
        open(&replica, "s1", Some("alice")).await;
        assert!(replica.lookup("s1", &limits).await.unwrap().is_some());
        // The store forgets the session without an end (as when Redis
        // expires it): the remembered record answers, so no round trip.
        shared.end("s1").await.unwrap();
        for _ in 0..3 {
            assert!(replica.lookup("s1", &limits).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn unknown_sessions_are_not_remembered() {
        let limits = SessionLimits::default();
        let shared: SharedStore = Arc::new(MemoryStore::new());
        let replica = cached(shared.clone(), Duration::from_secs(60));
        assert!(replica.lookup("s1", &limits).await.unwrap().is_none());
        // Created through another replica right after: found at once.
        open(&shared, "s1", Some("alice")).await;
        assert!(replica.lookup("s1", &limits).await.unwrap().is_some());
    }
}
