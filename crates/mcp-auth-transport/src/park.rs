//! Idle sessions give up their local rmcp worker.
//!
//! A session with no request in flight and no open stream for
//! `MCP_SESSION_PARK_AFTER` is closed in rmcp's session manager; its record
//! (owner, caps, expiry) and rmcp's saved `initialize` parameters stay in
//! the session store, so its next request restores it there, the way a
//! replica restores a session it has never seen. The session id, binding
//! and expiry do not change. What a client could notice: events kept for
//! resuming a stream (`Last-Event-ID`) and notifications the server queued
//! while no stream was open are not kept across a park, and a handler
//! starts afresh from the session's `initialize` (so parking is the
//! embedding server's choice).
//!
//! Requests for a session being parked wait until it is closed, then
//! restore it: none reaches a worker that is going away. While the first
//! request of a session not running here restores it, the others (and a
//! DELETE) wait for its answer: none reaches a worker still starting.
//!
//! With parking off the same bookkeeping still checks, for each session
//! idle for a while, that the store has it: a worker here whose session
//! ended through another replica (or expired there) is closed, instead of
//! running until rmcp's idle timeout outside the caps.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, future::BoxFuture};
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::streamable_http_server::session::{
        EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
        local::LocalSessionManager,
    },
};
use tokio_util::sync::CancellationToken;

/// Gives a map's memory back once it holds a quarter of what it could (its
/// capacity otherwise stays at its high-water mark).
pub(crate) fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if m.capacity() > 64 && m.len() < m.capacity() / 4 {
        m.shrink_to(m.len() * 2);
    }
}

/// Whether the session of `e` has had nothing in flight for `after` at
/// `now`, and is not being parked or opened.
fn idle_for(e: &Entry, now: Instant, after: Duration) -> bool {
    e.busy == 0 && !e.parking && !e.opening && now.saturating_duration_since(e.idle_since) >= after
}

/// How many sessions one round parks at once.
const PARK_CONCURRENCY: usize = 64;

/// Closes a session's local worker (rmcp's `close_session`); whether it
/// had one to close.
pub(crate) type Close = Arc<dyn Fn(String) -> BoxFuture<'static, bool> + Send + Sync>;

struct Entry {
    /// Requests in flight and open streams.
    busy: u32,
    /// When the last of them ended.
    idle_since: Instant,
    /// The worker is being closed.
    parking: bool,
    /// A request here got its answer from the session's worker: it runs.
    /// Until then (a session parked, or never served here) the first
    /// request may be restoring it, and the others wait.
    warm: bool,
    /// A request that may be restoring the worker is under way.
    opening: bool,
    /// Wakes the requests waiting for this session (made by the first
    /// one to wait): each session's waiters are woken by its own events
    /// only, not by every park and restore in the process.
    waiting: Option<Arc<tokio::sync::Notify>>,
}

impl Entry {
    fn new() -> Self {
        Self {
            busy: 0,
            idle_since: Instant::now(),
            parking: false,
            warm: false,
            opening: false,
            waiting: None,
        }
    }
}

/// The activity of this process's sessions, and the task that parks the
/// idle ones.
pub(crate) struct Parking {
    after: Duration,
    /// Whether idle sessions are parked; otherwise only the ones the store
    /// no longer has are closed.
    parks: bool,
    entries: Mutex<HashMap<String, Entry>>,
    close: Close,
    store: mcp_auth_session::SharedStore,
    limits: mcp_auth_session::SessionLimits,
}

/// What [`Parking::park`] found a session to be.
enum Found {
    /// Live, and the store restores it: its worker goes.
    Restorable,
    /// Ended or expired in the store (through another replica, say): its
    /// worker goes, and the session is no longer watched.
    Gone,
    /// Live (parking off): its worker stays, and is checked again once idle
    /// for as long once more.
    Live,
    /// Live, with nothing saved to restore it from: its worker stays (rmcp
    /// closes it after the idle timeout), and it is no longer watched.
    Unsaved,
    /// The store did not answer: tried again later.
    Unknown,
}

impl Parking {
    /// Parks sessions idle for `after` (`parks`), closing them with
    /// `close`, if `store` holds what restores them (`limits`: the
    /// sessions' own); closes those `store` no longer has, parking or not.
    pub(crate) fn new(
        after: Duration,
        parks: bool,
        close: Close,
        store: mcp_auth_session::SharedStore,
        limits: mcp_auth_session::SessionLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            after,
            parks,
            entries: Mutex::new(HashMap::new()),
            close,
            store,
            limits,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut m = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut m)
    }

    /// A request (or stream) of `sid` begins; it counts until the returned
    /// guard is dropped. Waits while the session is being parked, and,
    /// for a session whose worker is not known to run here (parked, or
    /// never served here), while another request is the first: rmcp
    /// restores a worker while that one waits, and lists the session as
    /// present before the restore is done, so a second request let through
    /// then reached a worker still starting (both were answered 500). The
    /// first one's answer ([`Busy::hold`]) lets the others go.
    pub(crate) async fn begin(self: &Arc<Self>, sid: &str) -> Busy {
        loop {
            let started = self.with(|m| {
                let e = m.entry(sid.to_owned()).or_insert_with(Entry::new);
                if e.parking || e.opening {
                    // Registered while the map is held: the park or first
                    // request that ends next (under the map too) wakes it.
                    let wake = e
                        .waiting
                        .get_or_insert_with(|| Arc::new(tokio::sync::Notify::new()))
                        .clone();
                    let mut notified = Box::pin(wake.notified_owned());
                    notified.as_mut().enable();
                    return Err(notified);
                }
                let first = !e.warm;
                e.opening = first;
                e.busy += 1;
                Ok(first)
            });
            match started {
                Ok(first) => {
                    return Busy {
                        parking: self.clone(),
                        sid: sid.to_owned(),
                        first,
                    };
                }
                Err(notified) => notified.await,
            }
        }
    }

    /// Wakes the requests waiting for `e`'s session.
    fn wake(e: &mut Entry) {
        if let Some(wake) = e.waiting.take() {
            wake.notify_waiters();
        }
    }

    /// The first request of a session not known to run here is answered
    /// (`ran`: with success, so its worker runs) or gone: the others go on.
    fn opened(&self, sid: &str, ran: bool) {
        self.with(|m| {
            if let Some(e) = m.get_mut(sid) {
                e.opening = false;
                e.warm = ran;
                Self::wake(e);
            }
        });
    }

    /// An answer says the session's worker may be gone here (rmcp did not
    /// find it, or it failed): its next request goes alone again, as after
    /// a park, in case it restores the worker.
    fn cooled(&self, sid: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(sid) {
                e.warm = false;
            }
        });
    }

    /// The session ended (DELETE, or gone): nothing to park. (One being
    /// parked is left to the parker, which removes it when done.)
    pub(crate) fn forget(&self, sid: &str) {
        self.with(|m| {
            if m.get(sid).is_some_and(|e| !e.parking)
                && let Some(mut e) = m.remove(sid)
            {
                Self::wake(&mut e);
                shrink(m);
            }
        });
    }

    /// Parks every session idle for `after` now; returns how many.
    pub(crate) async fn park_idle(&self) -> usize {
        let now = Instant::now();
        let after = self.after;
        let due: Vec<String> = self.with(|m| {
            m.iter()
                .filter(|(_, e)| idle_for(e, now, after))
                .map(|(sid, _)| sid.clone())
                .collect()
        });
        // Many at once: each waits for the store and for its worker to
        // close, and sessions must be parked faster than they are opened.
        // Each is marked as its own park begins, not all at the round's
        // start: a request for a session far down a large round (or a
        // round slowed by the store) is not held back by all before it.
        futures::stream::iter(due)
            .filter(|sid| {
                let now = Instant::now();
                let begins = self.with(|m| match m.get_mut(sid) {
                    Some(e) if idle_for(e, now, after) => {
                        // Only a park holds the session's requests back: a
                        // check (parking off) closes nothing that is live,
                        // and a request for one found gone is answered 404
                        // before it gets here.
                        e.parking = self.parks;
                        true
                    }
                    // Used (or ended) since the round began.
                    _ => false,
                });
                futures::future::ready(begins)
            })
            .map(|sid| self.park(sid))
            .buffer_unordered(PARK_CONCURRENCY)
            .filter(|&parked| futures::future::ready(parked))
            .count()
            .await
    }

    /// Parks `sid` (marked `parking`) if the store can restore it; whether
    /// it did. A session the store no longer has (ended through another
    /// replica, or expired) has its worker closed too, and one it cannot
    /// restore keeps its worker; neither is watched any longer.
    async fn park(&self, sid: String) -> bool {
        // Only what can come back: rmcp's saved `initialize` is in the
        // store (a failed save leaves the worker where it is).
        // (Without parking, the same read says the session is live: its
        // saved state goes when it ends, and expires with it.)
        let found = match self.store.load_state(&sid).await {
            Ok(Some(_)) if self.parks => Found::Restorable,
            Ok(Some(_)) => Found::Live,
            // Nothing saved: gone, or live without it (its save failed).
            // The lookup touches a live one, once: it is not watched after.
            // Asked of the store itself: a replica's remembered lookup
            // still had a session ended through another one for a moment,
            // and its worker here was kept (until rmcp's idle timeout).
            Ok(None) => match self.store.lookup_fresh(&sid, &self.limits).await {
                Ok(None) => Found::Gone,
                Ok(Some(_)) => Found::Unsaved,
                Err(_) => Found::Unknown,
            },
            Err(_) => Found::Unknown,
        };
        let closed =
            matches!(found, Found::Restorable | Found::Gone) && (self.close)(sid.clone()).await;
        // Each waiter goes on as soon as its own session is done.
        self.with(|m| match found {
            Found::Unknown | Found::Live => {
                if let Some(e) = m.get_mut(&sid) {
                    e.parking = false;
                    e.idle_since = Instant::now();
                    Self::wake(e);
                }
            }
            _ => {
                if let Some(mut e) = m.remove(&sid) {
                    Self::wake(&mut e);
                }
                shrink(m);
            }
        });
        let short = &sid[..sid.len().min(8)];
        match found {
            // Counted only when a worker went (rmcp's own idle timeout
            // may have closed it already).
            Found::Restorable if closed => {
                metrics::counter!("mcp_auth_sessions_parked_total").increment(1);
                tracing::debug!(session = %short, "idle session parked");
            }
            Found::Restorable => {
                tracing::debug!(session = %short, "idle session had no worker here: let go");
            }
            Found::Gone => {
                tracing::debug!(session = %short, "session gone from the store: its worker closed");
            }
            Found::Unsaved => {
                tracing::debug!(session = %short, "idle session not parked: nothing saved to restore it from");
            }
            Found::Unknown => {
                tracing::debug!(session = %short, "idle session not parked: the store did not answer; tried again later");
            }
            Found::Live => {}
        }
        matches!(found, Found::Restorable)
    }

    /// Checks every half `after` until `cancel`.
    pub(crate) fn spawn(self: &Arc<Self>, cancel: CancellationToken) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let parking = self.clone();
        let every = (self.after / 2).max(Duration::from_millis(50));
        rt.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => { parking.park_idle().await; }
                }
            }
        });
    }

    /// Sessions this process tracks (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.with(|m| m.len())
    }

    /// The bookkeeping map's capacity (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.with(|m| m.capacity())
    }
}

/// One request or stream in flight (see [`Parking::begin`]).
pub(crate) struct Busy {
    parking: Arc<Parking>,
    sid: String,
    /// The first request of a session not known to run here: the others
    /// wait for its answer.
    first: bool,
}

impl Busy {
    /// `resp` whose body holds this guard until it is sent or dropped (an
    /// event stream: until it closes). The answer of a session's first
    /// request lets the others go; a success says its worker runs here.
    pub(crate) fn hold(mut self, resp: Response) -> Response {
        if std::mem::take(&mut self.first) {
            self.parking.opened(&self.sid, resp.status().is_success());
        }
        resp.map(|body| {
            Body::new(Held {
                body,
                _busy: Some(self),
            })
        })
    }

    /// The answer says the session's worker may be gone here (rmcp did not
    /// find it, or failed): the next request goes alone, in case it
    /// restores it (rmcp's own worker also quits after its idle timeout,
    /// unseen here).
    pub(crate) fn cool(&self) {
        if !self.first {
            self.parking.cooled(&self.sid);
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.parking.with(|m| {
            if let Some(e) = m.get_mut(&self.sid) {
                e.busy = e.busy.saturating_sub(1);
                e.idle_since = Instant::now();
            }
        });
        if self.first {
            // Given up or refused before an answer: the next one goes first.
            self.parking.opened(&self.sid, false);
        }
    }
}

struct Held {
    body: Body,
    _busy: Option<Busy>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Sent to the end: the request is over.
            self._busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// rmcp's local session manager, with [`park`](Self::park): rmcp closes a
/// session's worker by queueing a close, and when the worker's service has
/// stopped it closes the session by id once more; after a park that second
/// close would hit the worker restored in the meantime, so it is swallowed.
pub(crate) struct ParkingSessions {
    inner: LocalSessionManager,
    stray: Mutex<Strays>,
}

/// Parked workers whose last close has not come yet, and how many were
/// left after the last time the old ones were dropped.
#[derive(Default)]
struct Strays {
    /// By session: how many parked workers' last closes are to come, and
    /// when the latest was parked.
    map: HashMap<SessionId, (u32, Instant)>,
    kept: usize,
}

/// How long a parked worker's own last close is waited for.
const STRAY_CLOSE_WITHIN: Duration = Duration::from_secs(30);

impl Strays {
    /// The worker of `id` is being closed for parking (at `now`): its own
    /// last close is to come. Entries normally go with that close; the
    /// ones whose close never came are dropped once the map has doubled
    /// since the last time (not on every park).
    fn parked(&mut self, id: SessionId, now: Instant) {
        if self.map.len() >= 64 && self.map.len() >= self.kept * 2 {
            self.map
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < STRAY_CLOSE_WITHIN);
            shrink(&mut self.map);
            self.kept = self.map.len();
        }
        // Counted: a session parked again before its earlier worker's last
        // close came (a handler still running holds a closing worker up
        // to 5 s) has two to come, and the second must be swallowed too.
        let e = self.map.entry(id).or_insert((0, now));
        e.0 += 1;
        e.1 = now;
    }

    /// Whether a close of `id` (at `now`) is the last close of a worker
    /// parked within [`STRAY_CLOSE_WITHIN`]: then it is swallowed, as it
    /// would otherwise close the worker restored since.
    fn closing(&mut self, id: &SessionId, now: Instant) -> bool {
        let Some((count, at)) = self.map.get_mut(id) else {
            return false;
        };
        let recent = now.saturating_duration_since(*at) < STRAY_CLOSE_WITHIN;
        *count -= 1;
        if *count == 0 || !recent {
            self.map.remove(id);
            shrink(&mut self.map);
        }
        self.kept = self.kept.min(self.map.len());
        recent
    }
}

impl ParkingSessions {
    pub(crate) fn new(inner: LocalSessionManager) -> Self {
        Self {
            inner,
            stray: Mutex::new(Strays::default()),
        }
    }

    fn stray<T>(&self, f: impl FnOnce(&mut Strays) -> T) -> T {
        let mut m = self
            .stray
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut m)
    }

    /// Closes the worker of `id` (if it has one) for parking.
    /// Whether it had one to close.
    pub(crate) async fn park(&self, id: &SessionId) -> bool {
        if !matches!(self.inner.has_session(id).await, Ok(true)) {
            return false;
        }
        self.stray(|s| s.parked(id.clone(), Instant::now()));
        if let Err(e) = self.inner.close_session(id).await {
            tracing::warn!(error = %e, "could not park an idle session");
            return false;
        }
        true
    }
}

impl SessionManager for ParkingSessions {
    type Error = <LocalSessionManager as SessionManager>::Error;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let parked = self.stray(|s| s.closing(id, Instant::now()));
        if parked {
            // The parked worker's own last close: not the restored one's.
            return Ok(());
        }
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Parking over a store that can restore `restorable`.
    async fn parking(after: Duration, restorable: &[&str]) -> (Arc<Parking>, Arc<AtomicUsize>) {
        let (p, closed, _) = parking_counted(after, store_with(restorable).await).await;
        (p, closed)
    }

    /// A fresh store holding the sessions `sids`, each with its
    /// `initialize` saved (the limits raised to hold them all).
    async fn store_with(sids: &[impl AsRef<str>]) -> mcp_auth_session::SharedStore {
        let store: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let defaults = mcp_auth_session::SessionLimits::default();
        let limits = mcp_auth_session::SessionLimits {
            max_sessions: defaults.max_sessions.max(sids.len()),
            max_anonymous: defaults.max_anonymous.max(sids.len()),
            ..defaults
        };
        for sid in sids.iter().map(AsRef::as_ref) {
            open(&store, sid, &limits).await;
            store.save_state(sid, "{}", &limits).await.unwrap();
        }
        store
    }

    /// Opens the anonymous session `sid` in `store` (nothing saved).
    async fn open(
        store: &mcp_auth_session::SharedStore,
        sid: &str,
        limits: &mcp_auth_session::SessionLimits,
    ) {
        let mcp_auth_session::Reserve::Granted(t) = store.reserve(None, limits).await.unwrap()
        else {
            panic!("no slot")
        };
        store.commit(&t, sid, None, limits).await.unwrap();
    }

    /// Parking over `store`, whose closes take 20 ms each: how many were
    /// closed, and the most that were closing at once.
    async fn parking_counted(
        after: Duration,
        store: mcp_auth_session::SharedStore,
    ) -> (Arc<Parking>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let closed = Arc::new(AtomicUsize::new(0));
        let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, f, m) = (closed.clone(), in_flight, most.clone());
        let close: Close = Arc::new(move |_sid| {
            let (c, f, m) = (c.clone(), f.clone(), m.clone());
            Box::pin(async move {
                m.fetch_max(f.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
                true
            })
        });
        let limits = mcp_auth_session::SessionLimits::default();
        (
            Parking::new(after, true, close, store, limits),
            closed,
            most,
        )
    }

    /// Parking closes many workers at once (sessions must be parked faster
    /// than they are opened), [`PARK_CONCURRENCY`] at most, and gives the
    /// bookkeeping's memory back once they are gone.
    #[tokio::test]
    async fn idle_sessions_are_parked_many_at_once_and_the_map_shrinks() {
        let ids: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
        let (p, closed, most) =
            parking_counted(Duration::from_millis(10), store_with(&ids).await).await;
        for sid in &ids {
            drop(p.begin(sid).await);
        }
        assert!(p.capacity() >= 300);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(p.park_idle().await, 300);
        assert_eq!(closed.load(Ordering::SeqCst), 300);
        assert_eq!(
            most.load(Ordering::SeqCst),
            PARK_CONCURRENCY,
            "closes at once"
        );
        assert_eq!(p.tracked(), 0);
        assert!(p.capacity() <= 64, "capacity {} kept", p.capacity());
    }

    /// Ended sessions leave the bookkeeping, and its memory goes too.
    #[tokio::test]
    async fn forgotten_sessions_give_the_map_back() {
        let (p, _) = parking(Duration::from_secs(60), &[]).await;
        for i in 0..1000 {
            drop(p.begin(&format!("s{i}")).await);
        }
        for i in 0..1000 {
            p.forget(&format!("s{i}"));
        }
        assert_eq!(p.tracked(), 0);
        assert!(p.capacity() <= 64, "capacity {} kept", p.capacity());
    }

    /// A parked worker's own last close is swallowed for
    /// [`STRAY_CLOSE_WITHIN`], then goes through; entries whose close never
    /// came are dropped when the map has doubled, never fresh ones.
    #[test]
    fn a_parked_workers_last_close_is_swallowed_and_stale_entries_are_dropped() {
        let now = Instant::now();
        let id = |i: usize| -> SessionId { format!("s{i}").into() };
        let mut strays = Strays::default();
        strays.parked(id(0), now);
        assert!(strays.closing(&id(0), now + Duration::from_secs(1)));
        assert!(!strays.closing(&id(0), now), "only once");
        assert!(!strays.closing(&id(1), now), "never parked");
        // Parked twice before the first worker's last close came: both of
        // theirs are swallowed, the next close goes through.
        strays.parked(id(3), now);
        strays.parked(id(3), now);
        assert!(strays.closing(&id(3), now));
        assert!(strays.closing(&id(3), now));
        assert!(!strays.closing(&id(3), now), "the restored worker's own");
        strays.parked(id(2), now);
        assert!(
            !strays.closing(&id(2), now + STRAY_CLOSE_WITHIN),
            "too late: the restored worker's close goes through"
        );

        // 100 parks whose closes never come, then 200 fresh ones, all an
        // hour later: the stale ones go, every fresh one stays.
        let mut strays = Strays::default();
        for i in 0..100 {
            strays.parked(id(i), now);
        }
        let later = now + Duration::from_secs(3600);
        for i in 100..300 {
            strays.parked(id(i), later);
        }
        assert!((100..300).all(|i| strays.map.contains_key(&id(i))));
        assert!((0..100).all(|i| !strays.map.contains_key(&id(i))));
        // Dropped only when the map has doubled since the last drop (the
        // last one here at 128 entries), not on every park past 64.
        assert_eq!(strays.kept, 128);
        for i in 100..300 {
            assert!(strays.closing(&id(i), later));
        }
        assert!(strays.map.is_empty());
        assert_eq!(strays.kept, 0);
        assert!(strays.map.capacity() <= 64);
    }

    #[tokio::test]
    async fn only_sessions_idle_for_the_time_are_parked() {
        let (p, closed) = parking(Duration::from_millis(50), &["idle", "busy"]).await;
        drop(p.begin("idle").await);
        let busy = p.begin("busy").await;
        assert_eq!(p.park_idle().await, 0, "nobody idle long enough yet");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(p.park_idle().await, 1, "the idle one only");
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert_eq!(p.tracked(), 1);
        // A held response (an open stream) keeps its session.
        let resp = busy.hold(Response::new(Body::from("event")));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(p.park_idle().await, 0);
        // Sent to the end: idle from then on.
        let _ = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(p.park_idle().await, 1);
        assert_eq!(p.tracked(), 0);
    }

    #[tokio::test]
    async fn a_session_the_store_cannot_restore_keeps_its_worker_and_is_let_go() {
        let store = store_with(&["saved"]).await;
        // Live, but its `initialize` was never saved.
        let limits = mcp_auth_session::SessionLimits::default();
        open(&store, "unsaved", &limits).await;
        let (p, closed, _) = parking_counted(Duration::from_millis(10), store).await;
        drop(p.begin("unsaved").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(p.park_idle().await, 0);
        assert_eq!(closed.load(Ordering::SeqCst), 0, "its worker stays");
        assert_eq!(p.tracked(), 0, "not tried again and again");
    }

    /// A session ended through another replica (the store no longer has
    /// it) has its worker here closed and is watched no longer, instead of
    /// being asked about every round for as long as the process runs.
    #[tokio::test]
    async fn a_session_ended_elsewhere_has_its_worker_closed_and_is_let_go() {
        let store = store_with(&["a", "b"]).await;
        let (p, closed, _) = parking_counted(Duration::from_millis(10), store.clone()).await;
        drop(p.begin("a").await);
        drop(p.begin("b").await);
        store.end("a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            p.park_idle().await,
            1,
            "b parked; a was not parked but closed"
        );
        assert_eq!(closed.load(Ordering::SeqCst), 2);
        assert_eq!(p.tracked(), 0);
        assert_eq!(p.park_idle().await, 0);
    }

    /// A session ended through another replica has its worker closed here
    /// even while this replica remembers a lookup of it (an attack pass:
    /// the remembered record read as live, the worker was kept, in no cap,
    /// until rmcp's idle timeout).
    #[tokio::test]
    async fn a_session_ended_elsewhere_is_closed_whatever_this_replica_remembers() {
        let shared: mcp_auth_session::SharedStore = Arc::new(mcp_auth_session::MemoryStore::new());
        let here = mcp_auth_session::cached(shared.clone(), Duration::from_secs(60));
        let limits = mcp_auth_session::SessionLimits::default();
        let mcp_auth_session::Reserve::Granted(t) =
            here.reserve(Some("alice"), &limits).await.unwrap()
        else {
            panic!("no slot")
        };
        here.commit(&t, "s", Some("alice"), &limits).await.unwrap();
        here.save_state("s", "{}", &limits).await.unwrap();
        assert!(here.lookup("s", &limits).await.unwrap().is_some());
        // Ended through another replica: this one still remembers it live.
        shared.end("s").await.unwrap();
        assert!(here.lookup("s", &limits).await.unwrap().is_some());
        let (p, closed, _) = parking_counted(Duration::from_millis(10), here.clone()).await;
        drop(p.begin("s").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(p.park_idle().await, 0, "not parked: gone");
        assert_eq!(closed.load(Ordering::SeqCst), 1, "its worker closed");
        assert_eq!(p.tracked(), 0);
        // And what it remembered is forgotten.
        assert!(here.lookup("s", &limits).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_request_during_parking_waits_until_the_worker_is_closed() {
        let (p, closed) = parking(Duration::from_millis(10), &["s"]).await;
        drop(p.begin("s").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let parker = {
            let p = p.clone();
            tokio::spawn(async move { p.park_idle().await })
        };
        // The close takes 20 ms: a request arriving meanwhile must not
        // start before it is done.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = p.begin("s").await;
        assert_eq!(
            closed.load(Ordering::SeqCst),
            1,
            "began before the close ended"
        );
        assert_eq!(parker.await.unwrap(), 1);
        drop(busy);
        p.forget("s");
        assert_eq!(p.tracked(), 0);
    }

    /// Until a session's worker is known to run here (parked, or never
    /// served here), its first request goes alone: rmcp restores the
    /// worker while it waits, and a second one let through reached the
    /// worker still starting. A success lets the others go and they no
    /// longer wait for each other; a failure, or a first request given up,
    /// makes the next one the first.
    #[tokio::test]
    async fn the_first_request_of_a_session_not_running_here_goes_alone() {
        let (p, _) = parking(Duration::from_secs(60), &["s"]).await;
        let answer = |status: u16| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            r
        };
        let waiting = |p: &Arc<Parking>| {
            let p = p.clone();
            tokio::spawn(async move { p.begin("s").await })
        };
        let settle = || tokio::time::sleep(Duration::from_millis(30));

        // Given up before its answer: the next one goes first.
        let first = p.begin("s").await;
        let second = waiting(&p);
        settle().await;
        assert!(!second.is_finished(), "went along with the first");
        drop(first);
        let second = second.await.unwrap();
        // Refused (the restore failed): still not running, the next waits.
        let third = waiting(&p);
        settle().await;
        assert!(!third.is_finished());
        drop(second.hold(answer(503)));
        let third = third.await.unwrap();
        let fourth = waiting(&p);
        settle().await;
        assert!(!fourth.is_finished());
        // Answered: it runs; everyone goes, at once from now on.
        let held = third.hold(answer(200));
        let fourth = fourth.await.unwrap();
        let fifth = tokio::time::timeout(Duration::from_millis(100), p.begin("s"))
            .await
            .expect("a running session's requests do not wait for each other");
        // An answer that says the worker may be gone (rmcp's 404 or 500,
        // its own idle timeout unseen here): the next one goes first.
        fifth.cool();
        drop((held, fourth, fifth));
        let first = p.begin("s").await;
        let second = waiting(&p);
        settle().await;
        assert!(!second.is_finished(), "went along after a cooled answer");
        drop(first.hold(answer(200)));
        drop(second.await.unwrap());
        // Forgotten (ended) or parked: the first one goes alone again.
        p.forget("s");
        let first = p.begin("s").await;
        let second = waiting(&p);
        settle().await;
        assert!(!second.is_finished());
        drop(first.hold(answer(202)));
        drop(second.await.unwrap());
    }

    /// A request waits only for its own session's park, not for the whole
    /// round: sessions are marked as their park begins (an attack pass:
    /// every session due was marked at the round's start, so a request
    /// for one far down a large round waited for all before it).
    #[tokio::test(start_paused = true)]
    async fn a_request_waits_only_for_its_own_sessions_park() {
        let ids: Vec<String> = (0..640).map(|i| format!("s{i}")).collect();
        let (p, closed, _) = parking_counted(Duration::ZERO, store_with(&ids).await).await;
        for sid in &ids {
            drop(p.begin(sid).await);
        }
        let parker = {
            let p = p.clone();
            tokio::spawn(async move { p.park_idle().await })
        };
        // The round has begun: 64 closes at a time, 20 ms each (about
        // 200 ms for all 640).
        tokio::time::sleep(Duration::from_millis(1)).await;
        let started = tokio::time::Instant::now();
        let waits: Vec<_> = ids
            .iter()
            .map(|sid| {
                let p = p.clone();
                let sid = sid.clone();
                tokio::spawn(async move {
                    let busy = p.begin(&sid).await;
                    (started.elapsed(), busy)
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        let mut held = Vec::new();
        for w in waits {
            let (waited, busy) = w.await.unwrap();
            longest = longest.max(waited);
            held.push(busy);
        }
        assert!(longest <= Duration::from_millis(40), "waited {longest:?}");
        // Those in use are not parked.
        let parked = parker.await.unwrap();
        drop(held);
        assert!(parked <= PARK_CONCURRENCY, "{parked} parked");
        assert_eq!(closed.load(Ordering::SeqCst), parked);
    }
}
