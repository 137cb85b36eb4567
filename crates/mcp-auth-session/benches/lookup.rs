#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! The per-request session-binding lookup (which also restarts the idle
//! expiry), in a store holding 10 000 sessions: in memory, and in Redis when
//! `REDIS_URL` names a running server (e.g. `redis://127.0.0.1:6379`).
//!
//! ```text
//! cargo bench -p mcp-auth-session --bench lookup
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench -p mcp-auth-session --bench lookup
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_session::{MemoryStore, RedisStore, Reserve, SessionLimits, SessionStore};

const SESSIONS: usize = 10_000;

fn limits() -> SessionLimits {
    SessionLimits {
        max_sessions: SESSIONS + 1,
        max_per_principal: SESSIONS + 1,
        max_anonymous: 1,
        idle_timeout: Duration::from_secs(600),
        ..SessionLimits::default()
    }
}

async fn fill(store: &dyn SessionStore, prefix: &str) {
    let l = limits();
    for i in 0..SESSIONS {
        let owner = format!("https://issuer.example|user-{}|app", i % 100);
        match store.reserve(Some(&owner), &l).await.expect("reserve") {
            Reserve::Granted(t) => {
                let sid = format!("{prefix}-{i}");
                assert!(
                    store
                        .commit(&t, &sid, Some(&owner), &l)
                        .await
                        .expect("commit")
                );
            }
            Reserve::Full(f) => panic!("store full while filling: {f:?}"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let l = limits();
    let mut group = c.benchmark_group("session lookup");

    let memory = MemoryStore::new();
    rt.block_on(fill(&memory, "m"));
    let sid = format!("m-{}", SESSIONS / 2);
    assert!(
        rt.block_on(memory.lookup(&sid, &l))
            .expect("lookup")
            .is_some()
    );
    group.bench_function("memory", |b| {
        b.to_async(&rt).iter(|| memory.lookup(&sid, &l))
    });

    match std::env::var("REDIS_URL") {
        Ok(url) => {
            let redis = RedisStore::new(&url).expect("REDIS_URL");
            let prefix = format!("bench-{}", std::process::id());
            rt.block_on(fill(&redis, &prefix));
            let sid = format!("{prefix}-{}", SESSIONS / 2);
            assert!(
                rt.block_on(redis.lookup(&sid, &l))
                    .expect("lookup")
                    .is_some()
            );
            group.bench_function("redis", |b| b.to_async(&rt).iter(|| redis.lookup(&sid, &l)));
        }
        Err(_) => eprintln!("REDIS_URL not set: skipping the Redis store"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
