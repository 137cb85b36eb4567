//! [`MemoryStore`]: sessions in this process.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{
    Bind, Ending, Full, Reserve, SessionLimits, SessionRecord, SessionStore, StoreError, Ticket,
    store::{ExpiredSession, kv_ttl},
    subject_of,
};

/// How many key-value entries a [`MemoryStore`] holds by default.
pub const DEFAULT_KV_MAX_ENTRIES: usize = 100_000;

/// How many bytes of keys and values a [`MemoryStore`] holds by default
/// (64 MiB).
pub const DEFAULT_KV_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Counters ([`SessionStore::hit`]) held before the ended ones are dropped
/// on a hit (the sweep drops them too).
const COUNTERS_BEFORE_PURGE: usize = 100_000;

/// How many expired sessions a [`MemoryStore`] keeps for the next
/// [`sweep_expired`](SessionStore::sweep_expired); beyond it, expired
/// sessions are dropped unreported (and the sweep says how many).
const MAX_UNREPORTED: usize = 100_000;

#[derive(Default)]
struct State {
    /// Live sessions and pending reservations: owner, expiry.
    slots: HashMap<String, (Option<String>, Instant)>,
    /// `(expiry, id)` of every slot, as of when it was last queued: a slot
    /// extended since goes back in at its new expiry when its turn comes,
    /// a slot removed since is skipped. So purging visits only what is
    /// due, not every live session.
    due: BinaryHeap<Reverse<(Instant, String)>>,
    /// How many slots each owner (`None`: anonymous) and each user
    /// ([`subject_of`]) holds, so caps are checked without a scan.
    per_owner: HashMap<Option<String>, usize>,
    per_subject: HashMap<String, usize>,
    saved: HashMap<String, String>,
    counters: HashMap<String, (u64, Instant)>,
    /// How many counters were left the last time the ended ones were
    /// dropped on a hit: they are looked through again only once the map
    /// has grown twice as large, not on every hit past
    /// [`COUNTERS_BEFORE_PURGE`].
    counters_kept: usize,
    /// Sessions purged because they expired, until `sweep_expired` takes them.
    expired: Vec<ExpiredSession>,
    /// Expired sessions not kept in `expired` (it was full).
    unreported: u64,
}

impl State {
    /// The cap `owner` is at, if any (not counting the global one).
    fn owner_full(&self, owner: Option<&str>, limits: &SessionLimits) -> Option<Full> {
        let mine = self
            .per_owner
            .get(&owner.map(str::to_owned))
            .copied()
            .unwrap_or(0);
        let Some(owner) = owner else {
            return (mine >= limits.max_anonymous).then_some(Full::Anonymous);
        };
        if mine >= limits.max_per_principal {
            return Some(Full::Principal);
        }
        let theirs = self
            .per_subject
            .get(subject_of(owner))
            .copied()
            .unwrap_or(0);
        (theirs >= limits.max_per_subject).then_some(Full::Subject)
    }

    /// Counts a slot of `owner` in (`up`) or out.
    fn count(&mut self, owner: Option<&str>, up: bool) {
        fn step<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K, up: bool) {
            if up {
                *m.entry(k).or_insert(0) += 1;
            } else if let Some(n) = m.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        step(&mut self.per_owner, owner.map(str::to_owned), up);
        if let Some(o) = owner {
            step(&mut self.per_subject, subject_of(o).to_owned(), up);
        }
    }

    /// Adds (or replaces) slot `id`.
    fn insert(&mut self, id: &str, owner: Option<String>, until: Instant) {
        self.remove(id);
        self.count(owner.as_deref(), true);
        self.slots.insert(id.to_owned(), (owner, until));
        self.due.push(Reverse((until, id.to_owned())));
    }

    /// Removes slot `id` (and its saved state); what it held.
    fn remove(&mut self, id: &str) -> Option<(Option<String>, Instant)> {
        let slot = self.slots.remove(id)?;
        self.count(slot.0.as_deref(), false);
        self.saved.remove(id);
        shrink(&mut self.slots);
        shrink(&mut self.saved);
        // Ended sessions leave their place in `due` behind; once those are
        // most of it, it is rebuilt from the live slots.
        if self.due.len() > 64 && self.due.len() > self.slots.len() * 2 {
            self.due = self
                .slots
                .iter()
                .map(|(id, (_, until))| Reverse((*until, id.clone())))
                .collect();
        }
        Some(slot)
    }

    /// Moves the expiry of slot `id` to `until`. Later, its place in `due`
    /// stays (it is queued again when that comes); earlier (a caller with
    /// a shorter idle timeout), it is queued at `until` too, so purging
    /// stays exact.
    fn extend(&mut self, id: &str, until: Instant) {
        if let Some((_, at)) = self.slots.get_mut(id) {
            let earlier = until < *at;
            *at = until;
            if earlier {
                self.due.push(Reverse((until, id.to_owned())));
            }
        }
    }

    /// Gives `id`, anonymous, to `owner`.
    fn rebind(&mut self, id: &str, owner: &str) {
        self.count(None, false);
        self.count(Some(owner), true);
        if let Some((o, _)) = self.slots.get_mut(id) {
            *o = Some(owner.to_owned());
        }
    }

    /// Drops expired sessions and reservations; the sessions are kept in
    /// `expired` for the next `sweep_expired`. Costs O(log n) per slot due
    /// (expired, or extended since it was queued).
    fn purge(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.due.peek()
            && *at <= now
        {
            let Some(Reverse((_, id))) = self.due.pop() else {
                break;
            };
            match self.slots.get(&id) {
                None => {}
                Some((_, until)) if *until > now => {
                    let until = *until;
                    self.due.push(Reverse((until, id)));
                }
                Some(_) => {
                    if let Some((owner, _)) = self.remove(&id)
                        && !id.starts_with("pending:")
                    {
                        note_expired(&mut self.expired, &mut self.unreported, &id, owner);
                    }
                }
            }
        }
        if self.due.capacity() > 64 && self.due.len() < self.due.capacity() / 4 {
            self.due.shrink_to(self.due.len() * 2);
        }
    }
}

/// Gives a map's memory back once it holds a quarter of what it could (its
/// capacity otherwise stays at its high-water mark).
pub(crate) fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if m.capacity() > 64 && m.len() < m.capacity() / 4 {
        m.shrink_to(m.len() * 2);
    }
}

/// Keeps `sid` for the next `sweep_expired`, or counts it when there is no
/// room.
fn note_expired(
    expired: &mut Vec<ExpiredSession>,
    unreported: &mut u64,
    sid: &str,
    owner: Option<String>,
) {
    if expired.len() < MAX_UNREPORTED {
        expired.push(ExpiredSession::new(sid, owner));
    } else {
        *unreported += 1;
    }
}

/// The key-value space: live entries, and the same keys ordered by expiry
/// so expired ones are dropped without scanning the live ones.
struct Kv {
    /// Value and expiry by key.
    entries: HashMap<String, (Vec<u8>, Instant)>,
    /// `(expiry, key)` for every entry.
    expiries: BTreeSet<(Instant, String)>,
    /// The lengths of every key and value held.
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Kv {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            expiries: BTreeSet::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Drops every entry expired at `now`: each costs O(log n), live
    /// entries are not visited.
    fn purge(&mut self, now: Instant) {
        while self.expiries.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, key)) = self.expiries.pop_first()
                && let Some((value, _)) = self.entries.remove(&key)
            {
                self.bytes = self.bytes.saturating_sub(key.len() + value.len());
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Vec<u8>> {
        let (key, (value, at)) = self.entries.remove_entry(key)?;
        self.bytes = self.bytes.saturating_sub(key.len() + value.len());
        self.expiries.remove(&(at, key));
        Some(value)
    }

    /// Stores `value` until `until` (only when `key` is free if `only_new`);
    /// true when stored. Refuses, leaving what is there, when the entry
    /// would take the space over either bound.
    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        until: Instant,
        only_new: bool,
    ) -> Result<bool, String> {
        let old = self.entries.get(key).map(|(v, _)| key.len() + v.len());
        if only_new && old.is_some() {
            return Ok(false);
        }
        if old.is_none() && self.entries.len() >= self.max_entries {
            return Err(format!(
                "key-value space full ({} entries)",
                self.max_entries
            ));
        }
        let bytes =
            (self.bytes.saturating_sub(old.unwrap_or(0))).saturating_add(key.len() + value.len());
        if bytes > self.max_bytes {
            return Err(format!("key-value space full ({} bytes)", self.max_bytes));
        }
        self.remove(key);
        self.bytes += key.len() + value.len();
        self.entries.insert(key.to_owned(), (value.to_vec(), until));
        self.expiries.insert((until, key.to_owned()));
        Ok(true)
    }
}

impl Default for Kv {
    fn default() -> Self {
        Self::new(DEFAULT_KV_MAX_ENTRIES, DEFAULT_KV_MAX_BYTES)
    }
}

/// Sessions, bindings, counters and the key-value space in this process's
/// memory.
///
/// The key-value space is bounded: at most [`DEFAULT_KV_MAX_ENTRIES`]
/// entries and [`DEFAULT_KV_MAX_BYTES`] bytes of keys and values (change
/// both with [`with_kv_capacity`](Self::with_kv_capacity)). Expired entries
/// never count: they are dropped on every key-value operation and by
/// [`sweep`](SessionStore::sweep). At the bound, a put that needs room (a
/// new key, or a larger value) fails with [`StoreError`] and leaves the
/// store as it was; nothing live is evicted. Evicting would let a flood of,
/// say, abandoned logins silently destroy the authorization codes and
/// refresh-token families of real users (who then fail in ways that look
/// like replays); refusing makes the flood fail instead, loudly, while
/// everything already issued stays valid until it expires. Gets, takes and
/// deletes always succeed, and so do overwrites that stay within the bytes
/// bound.
pub struct MemoryStore {
    state: Mutex<State>,
    kv: Mutex<Kv>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store, its key-value space bounded by the defaults.
    pub fn new() -> Self {
        Self::with_kv_capacity(DEFAULT_KV_MAX_ENTRIES, DEFAULT_KV_MAX_BYTES)
    }

    /// An empty store whose key-value space holds at most `max_entries`
    /// live entries and `max_bytes` bytes of keys and values.
    pub fn with_kv_capacity(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            kv: Mutex::new(Kv::new(max_entries, max_bytes)),
        }
    }

    /// The live session `sid`, touched when `touch` says so of its owner.
    fn find(
        &self,
        sid: &str,
        limits: &SessionLimits,
        touch: impl FnOnce(Option<&str>) -> bool,
    ) -> Option<SessionRecord> {
        let now = Instant::now();
        self.with(|s| match s.slots.get(sid) {
            Some((owner, until)) if *until > now && !sid.starts_with("pending:") => {
                let record = SessionRecord {
                    owner: owner.clone(),
                };
                if touch(owner.as_deref()) {
                    s.extend(sid, now + limits.idle_timeout);
                }
                Some(record)
            }
            _ => None,
        })
    }

    /// Ends `sid` if `mine` says so of its owner; when not, changes
    /// nothing ([`Ending::NotYours`]).
    fn end_if(&self, sid: &str, mine: impl FnOnce(Option<&str>) -> bool) -> Ending {
        let now = Instant::now();
        self.with(|s| {
            if let Some((owner, until)) = s.slots.get(sid)
                && *until > now
                && !sid.starts_with("pending:")
                && !mine(owner.as_deref())
            {
                return Ending::NotYours;
            }
            s.saved.remove(sid);
            let Some((owner, until)) = s.remove(sid) else {
                return Ending::Gone;
            };
            if sid.starts_with("pending:") {
                return Ending::Gone;
            }
            // One that expired before it was ended (not yet purged) is
            // reported as expired, as it would have been a moment earlier.
            if until <= now {
                note_expired(&mut s.expired, &mut s.unreported, sid, owner);
                return Ending::Gone;
            }
            Ending::Ended
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// Runs `f` on the key-value space with expired entries dropped.
    fn kv<T>(&self, f: impl FnOnce(&mut Kv) -> T) -> T {
        let mut kv = lock(&self.kv);
        kv.purge(Instant::now());
        f(&mut kv)
    }

    fn kv_store(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        let ttl = kv_ttl(ttl, "memory")?;
        let refused = |reason: String| StoreError {
            store: "memory".to_owned(),
            reason,
        };
        self.kv(|kv| {
            let until = Instant::now()
                .checked_add(ttl)
                .ok_or_else(|| refused("key-value TTL out of range".to_owned()))?;
            kv.put(key, value, until, only_new).map_err(refused)
        })
    }
}

/// The guarded value, also after a panic elsewhere (every update here
/// leaves the state consistent before anything can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn reserve(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Reserve, StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| {
            s.purge(now);
            if s.slots.len() >= limits.max_sessions {
                return Reserve::Full(Full::Global);
            }
            if let Some(full) = s.owner_full(owner, limits) {
                return Reserve::Full(full);
            }
            let t = Ticket::random();
            s.insert(&t.0, owner.map(str::to_owned), now + limits.reservation_ttl);
            Reserve::Granted(t)
        }))
    }

    async fn commit(
        &self,
        ticket: &Ticket,
        sid: &str,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| {
            if s.remove(&ticket.0).is_none() {
                // The reservation lapsed: only commit if there is still room.
                s.purge(now);
                if s.slots.len() >= limits.max_sessions || s.owner_full(owner, limits).is_some() {
                    return false;
                }
            }
            s.insert(sid, owner.map(str::to_owned), now + limits.idle_timeout);
            true
        }))
    }

    async fn release(&self, ticket: &Ticket, _owner: Option<&str>) -> Result<(), StoreError> {
        self.with(|s| s.remove(&ticket.0));
        Ok(())
    }

    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.find(sid, limits, |_| true))
    }

    async fn lookup_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.find(sid, limits, |owner| owner.is_none_or(|o| Some(o) == caller)))
    }

    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| {
            s.purge(now);
            let full = s.owner_full(Some(owner), limits).is_some();
            match s.slots.get(sid) {
                Some((Some(o), _)) => {
                    // Touched only for its owner (the one who lost a race to
                    // bind it must not keep it alive), as Redis does.
                    let o = o.clone();
                    if o == owner {
                        s.extend(sid, now + limits.idle_timeout);
                    }
                    Bind::Owner(o)
                }
                Some((None, _)) => {
                    if full {
                        return Bind::Full;
                    }
                    s.extend(sid, now + limits.idle_timeout);
                    s.rebind(sid, owner);
                    Bind::Owner(owner.to_owned())
                }
                None => Bind::Gone,
            }
        }))
    }

    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        self.end_live(sid).await.map(drop)
    }

    async fn end_live(&self, sid: &str) -> Result<bool, StoreError> {
        Ok(self.end_if(sid, |_| true) == Ending::Ended)
    }

    async fn end_live_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        _limits: &SessionLimits,
    ) -> Result<Ending, StoreError> {
        Ok(self.end_if(sid, |owner| owner == caller))
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| {
            if s.counters.len() > COUNTERS_BEFORE_PURGE.max(s.counters_kept * 2) {
                s.counters.retain(|_, (_, end)| *end > now);
                s.counters_kept = s.counters.len();
            }
            let entry = s
                .counters
                .entry(key.to_owned())
                .or_insert((0, now + window));
            if entry.1 <= now {
                *entry = (0, now + window);
            }
            entry.0 += 1;
            (entry.0, entry.1 - now)
        }))
    }

    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| match s.counters.get(key) {
            Some((n, end)) if *end > now => (*n, *end - now),
            _ => (0, Duration::ZERO),
        }))
    }

    async fn unhit(&self, key: &str) -> Result<(), StoreError> {
        self.with(|s| {
            if let Some((n, _)) = s.counters.get_mut(key) {
                *n = n.saturating_sub(1);
                // Back to nothing (a request counted in advance that was
                // no failure): nothing kept, so requests from ever new
                // networks leave no entry behind.
                if *n == 0 {
                    s.counters.remove(key);
                }
            }
        });
        Ok(())
    }

    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        _limits: &SessionLimits,
    ) -> Result<(), StoreError> {
        // rmcp saves a session's state before the session layer commits
        // it: a refused commit ends the session, which drops the state.
        self.with(|s| s.saved.insert(sid.to_owned(), state.to_owned()));
        Ok(())
    }

    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|s| s.saved.get(sid).cloned()))
    }

    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.kv_store(key, value, ttl, false).map(|_| ())
    }

    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.kv_store(key, value, ttl, true)
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.kv(|kv| kv.entries.get(key).map(|(v, _)| v.clone())))
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.kv(|kv| kv.remove(key)))
    }

    async fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        self.kv(|kv| kv.remove(key));
        Ok(())
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        self.sweep_expired().await.map(drop)
    }

    /// Sessions expire here when found expired by any operation (a
    /// reservation, a commit, a bind, a sweep) or ended after expiring;
    /// they are kept until this call takes them, up to 100,000 (more are
    /// dropped unreported, with a warning).
    async fn sweep_expired(&self) -> Result<Vec<ExpiredSession>, StoreError> {
        let now = Instant::now();
        let (expired, unreported) = self.with(|s| {
            s.purge(now);
            s.counters.retain(|_, (_, end)| *end > now);
            s.counters_kept = s.counters.len();
            (
                std::mem::take(&mut s.expired),
                std::mem::take(&mut s.unreported),
            )
        });
        self.kv(|_| ());
        if unreported > 0 {
            tracing::warn!(
                unreported,
                "expired sessions dropped without being reported (too many between sweeps)"
            );
        }
        Ok(expired)
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_sessions: 3,
            max_per_principal: 2,
            max_anonymous: 1,
            ..SessionLimits::default()
        }
    }

    async fn open(s: &MemoryStore, owner: Option<&str>, sid: &str) -> Reserve {
        let l = limits();
        let r = s.reserve(owner, &l).await.unwrap();
        if let Reserve::Granted(t) = &r {
            s.commit(t, sid, owner, &l).await.unwrap();
        }
        r
    }

    #[tokio::test]
    async fn caps_follow_extended_expired_bound_and_ended_sessions() {
        let s = MemoryStore::new();
        let l = SessionLimits {
            max_sessions: 100,
            max_per_principal: 1,
            max_per_subject: 1,
            max_anonymous: 1,
            idle_timeout: Duration::from_millis(200),
            ..SessionLimits::default()
        };
        let reserve = |owner: Option<&'static str>| {
            let (s, l) = (&s, &l);
            async move { s.reserve(owner, l).await.unwrap() }
        };
        let Reserve::Granted(t) = reserve(Some("alice")).await else {
            panic!("a slot")
        };
        assert!(s.commit(&t, "s1", Some("alice"), &l).await.unwrap());
        s.save_state("s1", "{}", &l).await.unwrap();
        // Used past its first expiry: still alive, still counted.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(120)).await;
            assert!(s.lookup("s1", &l).await.unwrap().is_some());
        }
        assert_eq!(reserve(Some("alice")).await, Reserve::Full(Full::Principal));
        // Unused for its idle timeout: gone, reported once, its state too,
        // and its owner's count back to zero.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(reserve(Some("alice")).await, Reserve::Granted(_)));
        let expired = s.sweep_expired().await.unwrap();
        assert_eq!(
            expired,
            vec![ExpiredSession::new("s1", Some("alice".into()))]
        );
        assert_eq!(s.load_state("s1").await.unwrap(), None);
        // Ended after it expired (not yet purged): not live, reported as
        // expired instead.
        let Reserve::Granted(t) = s.reserve(Some("zed"), &l).await.unwrap() else {
            panic!("a slot")
        };
        assert!(s.commit(&t, "z1", Some("zed"), &l).await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!s.end_live("z1").await.unwrap());
        assert_eq!(
            s.sweep_expired().await.unwrap(),
            vec![ExpiredSession::new("z1", Some("zed".into()))]
        );
        // A lookup with a shorter idle timeout than the commit's moves the
        // expiry earlier: purged then, not at the commit's.
        let sixty = SessionLimits {
            idle_timeout: Duration::from_secs(60),
            ..l
        };
        let Reserve::Granted(t) = s.reserve(Some("yan"), &sixty).await.unwrap() else {
            panic!("a slot")
        };
        assert!(s.commit(&t, "y1", Some("yan"), &sixty).await.unwrap());
        assert!(s.lookup("y1", &l).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(
            s.reserve(Some("yan"), &sixty).await.unwrap(),
            Reserve::Granted(_)
        ));
        assert!(
            s.sweep_expired()
                .await
                .unwrap()
                .iter()
                .any(|e| e.id == "y1")
        );
        // State saved before a commit that is then refused goes with the
        // end of that session.
        s.save_state("refused", "{}", &l).await.unwrap();
        s.end("refused").await.unwrap();
        assert_eq!(s.load_state("refused").await.unwrap(), None);

        // Bound, an anonymous session counts for its owner, no longer for
        // the anonymous cap; ended, for no one.
        let long = SessionLimits {
            idle_timeout: Duration::from_secs(60),
            ..l
        };
        let Reserve::Granted(t) = s.reserve(None, &long).await.unwrap() else {
            panic!("an anonymous slot")
        };
        assert!(s.commit(&t, "a1", None, &long).await.unwrap());
        assert_eq!(
            s.reserve(None, &long).await.unwrap(),
            Reserve::Full(Full::Anonymous)
        );
        assert_eq!(
            s.bind("a1", "https://as\u{1f}bob\u{1f}app", &long)
                .await
                .unwrap(),
            Bind::Owner("https://as\u{1f}bob\u{1f}app".into())
        );
        assert!(matches!(
            s.reserve(None, &long).await.unwrap(),
            Reserve::Granted(_)
        ));
        assert_eq!(
            s.reserve(Some("https://as\u{1f}bob\u{1f}other-app"), &long)
                .await
                .unwrap(),
            Reserve::Full(Full::Subject),
            "bob's user is at its cap through another client"
        );
        assert!(s.end_live("a1").await.unwrap(), "ended while live");
        assert!(!s.end_live("a1").await.unwrap(), "already ended: not again");
        assert!(!s.end_live("never-was").await.unwrap());
        assert!(matches!(
            s.reserve(Some("https://as\u{1f}bob\u{1f}other-app"), &long)
                .await
                .unwrap(),
            Reserve::Granted(_)
        ));
    }

    #[tokio::test]
    async fn caps_per_principal_anonymous_and_global() {
        let s = MemoryStore::new();
        assert!(matches!(
            open(&s, Some("a"), "1").await,
            Reserve::Granted(_)
        ));
        assert!(matches!(
            open(&s, Some("a"), "2").await,
            Reserve::Granted(_)
        ));
        assert_eq!(
            open(&s, Some("a"), "x").await,
            Reserve::Full(Full::Principal)
        );
        assert!(matches!(open(&s, None, "3").await, Reserve::Granted(_)));
        assert_eq!(open(&s, None, "x").await, Reserve::Full(Full::Global));
        s.end("1").await.unwrap();
        assert_eq!(open(&s, None, "x").await, Reserve::Full(Full::Anonymous));
        assert!(matches!(
            open(&s, Some("b"), "4").await,
            Reserve::Granted(_)
        ));
    }

    #[tokio::test]
    async fn anonymous_sessions_bind_to_their_first_principal() {
        let s = MemoryStore::new();
        let l = limits();
        open(&s, None, "anon").await;
        assert_eq!(
            s.bind("anon", "alice", &l).await.unwrap(),
            Bind::Owner("alice".into())
        );
        assert_eq!(
            s.bind("anon", "mallory", &l).await.unwrap(),
            Bind::Owner("alice".into())
        );
        assert_eq!(
            s.lookup("anon", &l)
                .await
                .unwrap()
                .unwrap()
                .owner
                .as_deref(),
            Some("alice")
        );
        assert_eq!(s.bind("gone", "alice", &l).await.unwrap(), Bind::Gone);
    }

    /// A principal that lost the race to bind a session does not keep it
    /// alive (only its owner touches it, as with `lookup_as`).
    #[tokio::test]
    async fn a_lost_bind_does_not_touch_the_session() {
        let s = MemoryStore::new();
        let l = SessionLimits {
            idle_timeout: Duration::from_millis(400),
            ..limits()
        };
        open(&s, None, "anon").await;
        s.bind("anon", "alice", &l).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                s.bind("anon", "mallory", &l).await.unwrap(),
                Bind::Owner("alice".into())
            );
        }
        // At least 450 ms after alice's bind: expired (mallory's binds, the
        // last at least 150 ms after it, would have kept it to 550 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            s.lookup_as("anon", Some("mallory"), &l)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_reservations_are_not_sessions() {
        let s = MemoryStore::new();
        let l = SessionLimits {
            idle_timeout: Duration::from_millis(30),
            ..limits()
        };
        let Reserve::Granted(t) = s.reserve(Some("a"), &l).await.unwrap() else {
            panic!()
        };
        assert!(s.lookup(&t.0, &l).await.unwrap().is_none());
        s.commit(&t, "sid", Some("a"), &l).await.unwrap();
        s.save_state("sid", "{}", &l).await.unwrap();
        assert!(s.lookup("sid", &l).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(s.lookup("sid", &l).await.unwrap().is_none());
        s.sweep().await.unwrap();
        assert!(s.load_state("sid").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn expired_sessions_are_reported_once_ended_and_live_ones_never() {
        let s = MemoryStore::new();
        let short = SessionLimits {
            max_sessions: 20,
            max_per_principal: 10,
            max_per_subject: 10,
            max_anonymous: 5,
            idle_timeout: Duration::from_millis(150),
            reservation_ttl: Duration::from_millis(150),
            ..SessionLimits::default()
        };
        let past = Duration::from_millis(250);
        let long = SessionLimits {
            idle_timeout: MIN,
            reservation_ttl: MIN,
            ..short
        };
        let open = async |owner: Option<&str>, sid: &str, l: &SessionLimits| {
            let Reserve::Granted(t) = s.reserve(owner, l).await.unwrap() else {
                panic!("a slot for {sid}")
            };
            assert!(s.commit(&t, sid, owner, l).await.unwrap());
        };
        open(Some("a"), "idle", &short).await;
        open(None, "anon", &short).await;
        open(None, "bound", &short).await;
        open(Some("a"), "deleted", &short).await;
        open(Some("b"), "live", &long).await;
        assert_eq!(
            s.bind("bound", "z", &short).await.unwrap(),
            Bind::Owner("z".into())
        );
        // A reservation never committed is not a session.
        assert!(matches!(
            s.reserve(Some("c"), &short).await.unwrap(),
            Reserve::Granted(_)
        ));
        s.end("deleted").await.unwrap();
        assert!(s.sweep_expired().await.unwrap().is_empty(), "none yet");
        tokio::time::sleep(past).await;
        // Another operation purges them first: the sweep still reports them.
        assert!(matches!(
            s.reserve(Some("c"), &long).await.unwrap(),
            Reserve::Granted(_)
        ));
        let mut got = s.sweep_expired().await.unwrap();
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            got,
            vec![
                ExpiredSession::new("anon", None),
                ExpiredSession::new("bound", Some("z".into())),
                ExpiredSession::new("idle", Some("a".into())),
            ]
        );
        assert!(s.sweep_expired().await.unwrap().is_empty(), "reported once");
        assert!(s.lookup("live", &long).await.unwrap().is_some());

        // Ended after it had expired (before any purge): it expired.
        open(Some("a"), "late", &short).await;
        tokio::time::sleep(past).await;
        s.end("late").await.unwrap();
        assert_eq!(
            s.sweep_expired().await.unwrap(),
            vec![ExpiredSession::new("late", Some("a".into()))]
        );
        // A plain sweep drops expired sessions without reporting them.
        open(Some("a"), "quiet", &short).await;
        tokio::time::sleep(past).await;
        s.sweep().await.unwrap();
        assert!(s.sweep_expired().await.unwrap().is_empty());
        assert!(s.lookup("live", &long).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn fixed_window_counters() {
        let s = MemoryStore::new();
        let w = Duration::from_millis(40);
        assert_eq!(s.hit("k", w).await.unwrap().0, 1);
        assert_eq!(s.hit("k", w).await.unwrap().0, 2);
        assert_eq!(s.count("k").await.unwrap().0, 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(s.count("k").await.unwrap().0, 0);
        assert_eq!(s.hit("k", w).await.unwrap().0, 1);
    }

    /// A count taken back to nothing leaves no entry (requests from ever
    /// new networks, each counted in advance and taken back, do not grow
    /// the map); past the purge size, the ended counters are dropped only
    /// once the map has doubled since the last time, not on every hit.
    #[tokio::test]
    async fn counters_taken_back_leave_nothing_and_purges_are_not_per_hit() {
        let s = MemoryStore::new();
        let w = Duration::from_secs(60);
        for n in 0..1000 {
            let key = format!("fail:198.51.100.{n}");
            s.hit(&key, w).await.unwrap();
            s.unhit(&key).await.unwrap();
        }
        assert_eq!(s.with(|s| s.counters.len()), 0);
        // A count still above zero is kept.
        s.hit("k", w).await.unwrap();
        s.hit("k", w).await.unwrap();
        s.unhit("k").await.unwrap();
        assert_eq!(s.count("k").await.unwrap().0, 1);
        // Live counters past the purge size: kept, and looked through
        // again only at twice as many.
        s.with(|st| {
            let end = Instant::now() + w;
            for n in 0..COUNTERS_BEFORE_PURGE {
                st.counters.insert(format!("live-{n}"), (1, end));
            }
        });
        s.hit("one-more", w).await.unwrap();
        let kept = s.with(|st| st.counters_kept);
        assert_eq!(kept, COUNTERS_BEFORE_PURGE + 1, "purged once, all live");
        s.hit("and-another", w).await.unwrap();
        assert_eq!(
            s.with(|st| st.counters_kept),
            kept,
            "not looked through again"
        );
    }

    const MIN: Duration = Duration::from_secs(60);

    /// Live entries and bytes as the store counts them.
    fn kv_size(s: &MemoryStore) -> (usize, usize, usize) {
        let kv = lock(&s.kv);
        (kv.entries.len(), kv.expiries.len(), kv.bytes)
    }

    #[tokio::test]
    async fn kv_entries_expire_on_access_and_in_sweep() {
        let s = MemoryStore::new();
        s.kv_put("short", b"v", Duration::from_millis(30))
            .await
            .unwrap();
        s.kv_put("long", b"w", MIN).await.unwrap();
        assert_eq!(s.kv_get("short").await.unwrap().as_deref(), Some(&b"v"[..]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(s.kv_get("short").await.unwrap(), None);
        assert_eq!(s.kv_take("short").await.unwrap(), None);
        // The access dropped it: only "long" is counted.
        assert_eq!(kv_size(&s), (1, 1, "long".len() + 1));

        s.kv_put("a", b"12345", Duration::from_millis(20))
            .await
            .unwrap();
        s.kv_put("b", b"12345", Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(kv_size(&s).0, 3);
        tokio::time::sleep(Duration::from_millis(40)).await;
        s.sweep().await.unwrap();
        assert_eq!(kv_size(&s), (1, 1, "long".len() + 1));
        assert_eq!(s.kv_get("long").await.unwrap().as_deref(), Some(&b"w"[..]));
    }

    #[tokio::test]
    async fn kv_put_new_stores_only_when_no_live_value() {
        let s = MemoryStore::new();
        assert!(s.kv_put_new("k", b"first", MIN).await.unwrap());
        assert!(!s.kv_put_new("k", b"second", MIN).await.unwrap());
        assert_eq!(s.kv_get("k").await.unwrap().as_deref(), Some(&b"first"[..]));
        // kv_put overwrites, with the new expiry.
        s.kv_put("k", b"third", Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(s.kv_get("k").await.unwrap().as_deref(), Some(&b"third"[..]));
        assert_eq!(kv_size(&s), (1, 1, 1 + 5), "the old expiry is gone");
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Expired counts as absent.
        assert!(s.kv_put_new("k", b"fourth", MIN).await.unwrap());
        assert_eq!(
            s.kv_take("k").await.unwrap().as_deref(),
            Some(&b"fourth"[..])
        );
        assert!(s.kv_put_new("k", b"", MIN).await.unwrap());
        assert_eq!(
            s.kv_get("k").await.unwrap(),
            Some(Vec::new()),
            "empty values are values"
        );
        s.kv_delete("k").await.unwrap();
        s.kv_delete("k").await.unwrap();
        assert_eq!(s.kv_get("k").await.unwrap(), None);
        assert_eq!(kv_size(&s), (0, 0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn kv_take_is_single_use_and_put_new_has_one_winner_under_concurrency() {
        let s = std::sync::Arc::new(MemoryStore::new());
        for round in 0..200 {
            let key = format!("code:{round}");
            s.kv_put(&key, b"grant", MIN).await.unwrap();
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let won = s
                            .kv_put_new(&format!("{key}:key"), &[i], MIN)
                            .await
                            .unwrap();
                        (s.kv_take(&key).await.unwrap(), won.then_some(i))
                    })
                })
                .collect();
            let (mut taken, mut winners) = (Vec::new(), Vec::new());
            for t in tasks {
                let (got, won) = t.await.unwrap();
                taken.extend(got);
                winners.extend(won);
            }
            assert_eq!(taken, vec![b"grant".to_vec()], "round {round}");
            assert_eq!(winners.len(), 1, "round {round}");
            assert_eq!(
                s.kv_get(&format!("{key}:key")).await.unwrap(),
                Some(winners)
            );
        }
    }

    #[tokio::test]
    async fn kv_keys_never_touch_sessions_state_or_counters() {
        let s = MemoryStore::new();
        let l = limits();
        open(&s, Some("a"), "x").await;
        s.save_state("x", "state", &l).await.unwrap();
        s.hit("x", MIN).await.unwrap();

        s.kv_put("x", b"kv", MIN).await.unwrap();
        assert!(!s.kv_put_new("x", b"again", MIN).await.unwrap());
        assert_eq!(s.kv_take("x").await.unwrap().as_deref(), Some(&b"kv"[..]));
        s.kv_delete("x").await.unwrap();
        let session = s.lookup("x", &l).await.unwrap();
        assert_eq!(session.and_then(|r| r.owner).as_deref(), Some("a"));
        assert_eq!(s.load_state("x").await.unwrap().as_deref(), Some("state"));
        assert_eq!(s.count("x").await.unwrap().0, 1);

        // Nor do sessions, state or counters show up as key-value entries.
        assert_eq!(s.kv_get("x").await.unwrap(), None);
        s.kv_put("x", b"kv", MIN).await.unwrap();
        s.end("x").await.unwrap();
        s.sweep().await.unwrap();
        assert_eq!(s.kv_get("x").await.unwrap().as_deref(), Some(&b"kv"[..]));
    }

    #[tokio::test]
    async fn kv_space_at_its_bound_refuses_and_evicts_nothing() {
        let s = MemoryStore::with_kv_capacity(2, 1024);
        s.kv_put("a", b"1", MIN).await.unwrap();
        s.kv_put("b", b"2", Duration::from_millis(30))
            .await
            .unwrap();
        let e = s.kv_put("c", b"3", MIN).await.unwrap_err();
        assert_eq!(e.store, "memory");
        assert!(e.reason.contains("full (2 entries)"), "{e}");
        assert!(
            s.kv_put_new("c", b"3", MIN).await.is_err(),
            "refused, not 'taken'"
        );
        // Nothing was evicted, and existing keys can still be rewritten.
        s.kv_put("a", b"one", MIN).await.unwrap();
        assert_eq!(s.kv_get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(s.kv_get("b").await.unwrap().as_deref(), Some(&b"2"[..]));
        // A taken or expired entry makes room.
        assert!(s.kv_take("a").await.unwrap().is_some());
        s.kv_put("c", b"3", MIN).await.unwrap();
        assert!(s.kv_put("d", b"4", MIN).await.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.kv_put("d", b"4", MIN).await.unwrap();

        // The bytes bound: keys and values together.
        let s = MemoryStore::with_kv_capacity(100, 10);
        s.kv_put("k", &[7; 9], MIN).await.unwrap();
        let e = s.kv_put("k", &[8; 10], MIN).await.unwrap_err();
        assert!(e.reason.contains("full (10 bytes)"), "{e}");
        assert_eq!(
            s.kv_get("k").await.unwrap(),
            Some(vec![7; 9]),
            "old value kept"
        );
        assert!(s.kv_put("j", b"", MIN).await.is_err());
        s.kv_put("k", &[9; 2], MIN).await.unwrap();
        s.kv_put("j", b"", MIN).await.unwrap();
        assert_eq!(kv_size(&s), (2, 2, 1 + 2 + 1));
    }

    #[tokio::test]
    async fn kv_ttl_must_be_positive_and_bounded() {
        let s = MemoryStore::new();
        for bad in [
            Duration::ZERO,
            crate::KV_MAX_TTL + Duration::from_secs(1),
            Duration::MAX,
        ] {
            let e = s.kv_put("k", b"v", bad).await.unwrap_err();
            assert!(e.reason.contains("TTL"), "{e}");
            assert!(s.kv_put_new("k", b"v", bad).await.is_err());
        }
        assert_eq!(s.kv_get("k").await.unwrap(), None);
        s.kv_put("k", b"v", crate::KV_MAX_TTL).await.unwrap();
        // Under a millisecond rounds up to one.
        assert_eq!(
            kv_ttl(Duration::from_nanos(1), "memory"),
            Ok(Duration::from_millis(1))
        );
        assert_eq!(
            kv_ttl(Duration::from_micros(1500), "memory"),
            Ok(Duration::from_millis(2))
        );
        assert_eq!(
            kv_ttl(Duration::from_millis(2), "memory"),
            Ok(Duration::from_millis(2))
        );
        s.kv_put("n", b"v", Duration::from_nanos(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.kv_get("n").await.unwrap(), None);
    }
}
