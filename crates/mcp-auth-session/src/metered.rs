//! [`metered`]: a store that reports each operation as metrics and a
//! tracing span.

use std::{future::Future, sync::Arc, time::Duration, time::Instant};

use async_trait::async_trait;
use tracing::Instrument;

use crate::{
    Bind, Ending, ExpiredSession, Reserve, SessionLimits, SessionRecord, SessionStore, SharedStore,
    StoreError, Ticket,
};

/// Wraps `store` so that its operations are counted, timed and traced.
/// [`store_from_settings`](crate::store_from_settings) returns stores
/// already wrapped; wrap a store you build yourself once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{sync::Arc, time::Duration};
/// use mcp_auth_session::{MemoryStore, SessionStore, metered};
///
/// let store = metered(Arc::new(MemoryStore::new()));
/// store.kv_put("k", b"v", Duration::from_secs(60)).await.unwrap();
/// assert_eq!(store.kv_get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
/// assert_eq!(store.describe(), "memory");
/// # }
/// ```
///
/// Each operation records its latency in
/// `mcp_auth_store_operation_duration_seconds{op}` (whose `_count` is the
/// number of operations), a failed one also counts in
/// `mcp_auth_store_errors_total{op}`, and each runs inside a `store` span
/// (debug level) with the attribute `store.operation`, the child span a
/// trace of the request shows. The labels are the operation's name only,
/// never a key or a session id. Without a metrics recorder installed (the
/// `metrics` crate's facade) the counts cost next to nothing.
pub fn metered(store: SharedStore) -> SharedStore {
    Arc::new(Metered { inner: store })
}

struct Metered {
    inner: SharedStore,
}

/// A store operation: its label and, once a global recorder is installed
/// ([`mcp_auth_core::recorder`]), the handle of its histogram, looked up
/// once rather than in the registry on every operation (a lookup runs on
/// nearly every request).
struct Op {
    name: &'static str,
    duration: std::sync::OnceLock<metrics::Histogram>,
}

impl Op {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            duration: std::sync::OnceLock::new(),
        }
    }

    fn record(&self, seconds: f64) {
        mcp_auth_core::recorder::with_kept(
            &self.duration,
            || metrics::histogram!("mcp_auth_store_operation_duration_seconds", "op" => self.name),
            |h| h.record(seconds),
        );
    }
}

static RESERVE: Op = Op::new("reserve");
static COMMIT: Op = Op::new("commit");
static RELEASE: Op = Op::new("release");
static LOOKUP: Op = Op::new("lookup");
static BIND: Op = Op::new("bind");
static END: Op = Op::new("end");
static HIT: Op = Op::new("hit");
static COUNT: Op = Op::new("count");
static UNHIT: Op = Op::new("unhit");
static SAVE_STATE: Op = Op::new("save_state");
static LOAD_STATE: Op = Op::new("load_state");
static KV_PUT: Op = Op::new("kv_put");
static KV_PUT_NEW: Op = Op::new("kv_put_new");
static KV_GET: Op = Op::new("kv_get");
static KV_TAKE: Op = Op::new("kv_take");
static KV_DELETE: Op = Op::new("kv_delete");
static SWEEP: Op = Op::new("sweep");

async fn timed<T>(
    op: &'static Op,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let span = tracing::debug_span!("store", store.operation = op.name);
    let started = Instant::now();
    let result = fut.instrument(span).await;
    op.record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("mcp_auth_store_errors_total", "op" => op.name).increment(1);
    }
    result
}

#[async_trait]
impl SessionStore for Metered {
    async fn reserve(
        &self,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Reserve, StoreError> {
        timed(&RESERVE, self.inner.reserve(owner, limits)).await
    }

    async fn commit(
        &self,
        ticket: &Ticket,
        sid: &str,
        owner: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<bool, StoreError> {
        timed(&COMMIT, self.inner.commit(ticket, sid, owner, limits)).await
    }

    async fn release(&self, ticket: &Ticket, owner: Option<&str>) -> Result<(), StoreError> {
        timed(&RELEASE, self.inner.release(ticket, owner)).await
    }

    async fn lookup(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        timed(&LOOKUP, self.inner.lookup(sid, limits)).await
    }

    async fn lookup_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        timed(&LOOKUP, self.inner.lookup_as(sid, caller, limits)).await
    }

    async fn lookup_fresh(
        &self,
        sid: &str,
        limits: &SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        timed(&LOOKUP, self.inner.lookup_fresh(sid, limits)).await
    }

    async fn bind(
        &self,
        sid: &str,
        owner: &str,
        limits: &SessionLimits,
    ) -> Result<Bind, StoreError> {
        timed(&BIND, self.inner.bind(sid, owner, limits)).await
    }

    async fn end(&self, sid: &str) -> Result<(), StoreError> {
        timed(&END, self.inner.end(sid)).await
    }

    async fn end_live(&self, sid: &str) -> Result<bool, StoreError> {
        timed(&END, self.inner.end_live(sid)).await
    }

    async fn end_live_as(
        &self,
        sid: &str,
        caller: Option<&str>,
        limits: &SessionLimits,
    ) -> Result<Ending, StoreError> {
        timed(&END, self.inner.end_live_as(sid, caller, limits)).await
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        timed(&HIT, self.inner.hit(key, window)).await
    }

    async fn count(&self, key: &str) -> Result<(u64, Duration), StoreError> {
        timed(&COUNT, self.inner.count(key)).await
    }

    async fn unhit(&self, key: &str) -> Result<(), StoreError> {
        timed(&UNHIT, self.inner.unhit(key)).await
    }

    async fn save_state(
        &self,
        sid: &str,
        state: &str,
        limits: &SessionLimits,
    ) -> Result<(), StoreError> {
        timed(&SAVE_STATE, self.inner.save_state(sid, state, limits)).await
    }

    async fn load_state(&self, sid: &str) -> Result<Option<String>, StoreError> {
        timed(&LOAD_STATE, self.inner.load_state(sid)).await
    }

    async fn kv_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        timed(&KV_PUT, self.inner.kv_put(key, value, ttl)).await
    }

    async fn kv_put_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        timed(&KV_PUT_NEW, self.inner.kv_put_new(key, value, ttl)).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        timed(&KV_GET, self.inner.kv_get(key)).await
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        timed(&KV_TAKE, self.inner.kv_take(key)).await
    }

    async fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        timed(&KV_DELETE, self.inner.kv_delete(key)).await
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        timed(&SWEEP, self.inner.sweep()).await
    }

    async fn sweep_expired(&self) -> Result<Vec<ExpiredSession>, StoreError> {
        timed(&SWEEP, self.inner.sweep_expired()).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
