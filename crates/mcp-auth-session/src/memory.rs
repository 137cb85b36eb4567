//! [`MemoryStore`]: sessions in this process.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{
    Bind, Full, Reserve, SessionLimits, SessionRecord, SessionStore, StoreError, Ticket, subject_of,
};

#[derive(Default)]
struct State {
    /// Live sessions and pending reservations: owner, expiry.
    slots: HashMap<String, (Option<String>, Instant)>,
    saved: HashMap<String, String>,
    counters: HashMap<String, (u64, Instant)>,
}

impl State {
    /// The cap `owner` is at, if any (not counting the global one).
    fn owner_full(&self, owner: Option<&str>, limits: &SessionLimits) -> Option<Full> {
        let mine = self
            .slots
            .values()
            .filter(|(o, _)| o.as_deref() == owner)
            .count();
        let Some(owner) = owner else {
            return (mine >= limits.max_anonymous).then_some(Full::Anonymous);
        };
        if mine >= limits.max_per_principal {
            return Some(Full::Principal);
        }
        let user = subject_of(owner);
        let theirs = self
            .slots
            .values()
            .filter(|(o, _)| o.as_deref().is_some_and(|o| subject_of(o) == user))
            .count();
        (theirs >= limits.max_per_subject).then_some(Full::Subject)
    }

    fn purge(&mut self, now: Instant) {
        let before = self.slots.len();
        self.slots.retain(|_, (_, until)| *until > now);
        if self.slots.len() != before {
            let live = &self.slots;
            self.saved.retain(|sid, _| live.contains_key(sid));
        }
    }
}

/// Sessions, bindings and counters in this process's memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
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
            s.slots.insert(
                t.0.clone(),
                (owner.map(str::to_owned), now + limits.reservation_ttl),
            );
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
            if s.slots.remove(&ticket.0).is_none() {
                // The reservation lapsed: only commit if there is still room.
                s.purge(now);
                if s.slots.len() >= limits.max_sessions || s.owner_full(owner, limits).is_some() {
                    return false;
                }
            }
            s.slots.insert(
                sid.to_owned(),
                (owner.map(str::to_owned), now + limits.idle_timeout),
            );
            true
        }))
    }

    async fn release(&self, ticket: &Ticket, _owner: Option<&str>) -> Result<(), StoreError> {
        self.with(|s| s.slots.remove(&ticket.0));
        Ok(())
    }

    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| match s.slots.get_mut(sid) {
            Some((owner, until)) if *until > now && !sid.starts_with("pending:") => {
                *until = now + limits.idle_timeout;
                Some(SessionRecord {
                    owner: owner.clone(),
                })
            }
            _ => None,
        }))
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
            match s.slots.get_mut(sid) {
                Some((Some(o), until)) => {
                    *until = now + limits.idle_timeout;
                    Bind::Owner(o.clone())
                }
                Some((o @ None, until)) => {
                    if full {
                        return Bind::Full;
                    }
                    *o = Some(owner.to_owned());
                    *until = now + limits.idle_timeout;
                    Bind::Owner(owner.to_owned())
                }
                None => Bind::Gone,
            }
        }))
    }

    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        self.with(|s| {
            s.slots.remove(sid);
            s.saved.remove(sid);
        });
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        let now = Instant::now();
        Ok(self.with(|s| {
            if s.counters.len() > 100_000 {
                s.counters.retain(|_, (_, end)| *end > now);
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
        self.with(|s| s.saved.insert(sid.to_owned(), state.to_owned()));
        Ok(())
    }

    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|s| s.saved.get(sid).cloned()))
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        let now = Instant::now();
        self.with(|s| {
            s.purge(now);
            s.counters.retain(|_, (_, end)| *end > now);
        });
        Ok(())
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
}
