//! The same behaviour from both stores: memory, and a real `redis-server`
//! on loopback (ignored by plain `cargo test`; `tests/run-all.sh` installs
//! Redis and runs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mcp_auth_integration_tests::{Peer, free_port};

use mcp_auth_session::{
    Bind, Ending, Full, MemoryStore, RedisStore, Reserve, SessionLimits, SessionStore,
};

fn limits() -> SessionLimits {
    SessionLimits {
        max_sessions: 4,
        max_per_principal: 2,
        max_anonymous: 1,
        idle_timeout: Duration::from_secs(60),
        ..SessionLimits::default()
    }
}

async fn open(s: &dyn SessionStore, owner: Option<&str>, sid: &str) -> Reserve {
    let l = limits();
    let r = s.reserve(owner, &l).await.unwrap();
    if let Reserve::Granted(t) = &r {
        s.commit(t, sid, owner, &l).await.unwrap();
    }
    r
}

async fn conformance(s: &dyn SessionStore) {
    let l = limits();
    assert!(matches!(
        open(s, Some("a"), "s1").await,
        Reserve::Granted(_)
    ));
    assert!(matches!(
        open(s, Some("a"), "s2").await,
        Reserve::Granted(_)
    ));
    assert_eq!(
        open(s, Some("a"), "s3").await,
        Reserve::Full(Full::Principal)
    );
    assert!(matches!(open(s, None, "anon").await, Reserve::Granted(_)));
    assert_eq!(open(s, None, "anon2").await, Reserve::Full(Full::Anonymous));
    // A released reservation frees its slot.
    let Reserve::Granted(t) = s.reserve(Some("b"), &l).await.unwrap() else {
        panic!("b gets a slot")
    };
    assert_eq!(
        s.reserve(Some("c"), &l).await.unwrap(),
        Reserve::Full(Full::Global)
    );
    s.release(&t, Some("b")).await.unwrap();
    assert!(matches!(
        open(s, Some("c"), "s4").await,
        Reserve::Granted(_)
    ));
    // Lookups, binding, end.
    assert_eq!(
        s.lookup("s1", &l).await.unwrap().unwrap().owner.as_deref(),
        Some("a")
    );
    assert_eq!(s.lookup("anon", &l).await.unwrap().unwrap().owner, None);
    assert_eq!(
        s.bind("anon", "z", &l).await.unwrap(),
        Bind::Owner("z".into())
    );
    assert_eq!(
        s.bind("anon", "y", &l).await.unwrap(),
        Bind::Owner("z".into())
    );

    // Once bound, the anonymous slot is free again.
    s.end("s4").await.unwrap();
    assert_eq!(s.bind("gone", "a", &l).await.unwrap(), Bind::Gone);
    assert!(matches!(open(s, None, "anon3").await, Reserve::Granted(_)));
    // Binding respects the per-principal cap: "a" already has two sessions.
    assert_eq!(s.bind("anon3", "a", &l).await.unwrap(), Bind::Full);
    assert_eq!(
        s.lookup("anon3", &l).await.unwrap().unwrap().owner,
        None,
        "stays anonymous"
    );
    s.save_state("s1", r#"{"x":1}"#, &l).await.unwrap();
    assert_eq!(
        s.load_state("s1").await.unwrap().as_deref(),
        Some(r#"{"x":1}"#)
    );
    s.end("s1").await.unwrap();
    assert!(s.lookup("s1", &l).await.unwrap().is_none());
    assert!(s.load_state("s1").await.unwrap().is_none());
    assert!(s.lookup("never", &l).await.unwrap().is_none());
    // Counters.
    let w = Duration::from_secs(60);
    assert_eq!(s.hit("k", w).await.unwrap().0, 1);
    let (n, left) = s.hit("k", w).await.unwrap();
    assert_eq!(n, 2);
    assert!(left <= w && left > Duration::from_secs(50));
    assert_eq!(s.count("k").await.unwrap().0, 2);
    assert_eq!(s.count("other").await.unwrap().0, 0);
    s.unhit("k").await.unwrap();
    assert_eq!(s.count("k").await.unwrap().0, 1);
    s.unhit("nothing").await.unwrap();
    // A lapsed reservation commits only if there is still room.
    let lapsed = mcp_auth_session::Ticket::random();
    assert!(s.commit(&lapsed, "late", Some("q"), &l).await.unwrap());
    s.end("late").await.unwrap();
}

/// A session is ended as its owner only (`end_live_as`): an anonymous
/// caller who looked before a binding, or another principal, changes
/// nothing; the owner ends it once; an anonymous caller ends an anonymous
/// session.
async fn ending_as_the_owner(s: &dyn SessionStore) {
    let l = limits();
    let (alice, bob) = (
        "https://as\u{1f}alice\u{1f}app",
        "https://as\u{1f}bob\u{1f}app",
    );
    assert!(matches!(open(s, None, "e1").await, Reserve::Granted(_)));
    assert_eq!(
        s.bind("e1", alice, &l).await.unwrap(),
        Bind::Owner(alice.into())
    );
    for caller in [None, Some(bob)] {
        assert_eq!(
            s.end_live_as("e1", caller, &l).await.unwrap(),
            Ending::NotYours,
            "{caller:?}"
        );
    }
    assert!(s.lookup("e1", &l).await.unwrap().is_some(), "still live");
    assert_eq!(
        s.end_live_as("e1", Some(alice), &l).await.unwrap(),
        Ending::Ended
    );
    for caller in [Some(alice), Some(bob), None] {
        assert_eq!(
            s.end_live_as("e1", caller, &l).await.unwrap(),
            Ending::Gone,
            "{caller:?}"
        );
    }
    assert!(matches!(open(s, None, "e2").await, Reserve::Granted(_)));
    assert_eq!(
        s.end_live_as("e2", None, &l).await.unwrap(),
        Ending::Ended,
        "an anonymous session, by an anonymous caller"
    );
}

/// One user through many client ids: the per-subject cap holds across
/// reserve, a lapsed commit, bind, and ending a session frees the slot.
async fn subject_caps(s: &dyn SessionStore) {
    let l = SessionLimits {
        max_sessions: 100,
        max_per_principal: 2,
        max_per_subject: 3,
        max_anonymous: 5,
        idle_timeout: Duration::from_secs(60),
        ..SessionLimits::default()
    };
    let alice = |client: &str| format!("https://as\u{1f}alice\u{1f}{client}");
    let open = |owner: String, sid: &'static str| async move {
        let r = s.reserve(Some(&owner), &l).await.unwrap();
        if let Reserve::Granted(t) = &r {
            assert!(s.commit(t, sid, Some(&owner), &l).await.unwrap());
        }
        r
    };
    assert!(matches!(open(alice("c1"), "u1").await, Reserve::Granted(_)));
    assert!(matches!(open(alice("c1"), "u2").await, Reserve::Granted(_)));
    assert!(matches!(open(alice("c2"), "u3").await, Reserve::Granted(_)));
    // A fourth session through yet another client id: the user is full.
    assert_eq!(open(alice("c3"), "u4").await, Reserve::Full(Full::Subject));
    // Another user, or the same subject at another issuer, is not.
    assert!(matches!(
        open("https://as\u{1f}bob\u{1f}c3".into(), "b1").await,
        Reserve::Granted(_)
    ));
    assert!(matches!(
        open("https://other\u{1f}alice\u{1f}c3".into(), "o1").await,
        Reserve::Granted(_)
    ));
    // A lapsed reservation does not slip past the user cap either.
    let lapsed = mcp_auth_session::Ticket::random();
    assert!(
        !s.commit(&lapsed, "late", Some(&alice("c4")), &l)
            .await
            .unwrap()
    );
    // Nor does binding an anonymous session.
    let Reserve::Granted(t) = s.reserve(None, &l).await.unwrap() else {
        panic!("anonymous slot")
    };
    assert!(s.commit(&t, "anon", None, &l).await.unwrap());
    assert_eq!(s.bind("anon", &alice("c5"), &l).await.unwrap(), Bind::Full);
    // Ending one of alice's sessions makes room for her again.
    s.end("u1").await.unwrap();
    assert_eq!(
        s.bind("anon", &alice("c5"), &l).await.unwrap(),
        Bind::Owner(alice("c5"))
    );
    assert_eq!(open(alice("c6"), "u5").await, Reserve::Full(Full::Subject));
    s.end("anon").await.unwrap();
    assert!(matches!(open(alice("c6"), "u5").await, Reserve::Granted(_)));
}

/// The key-value space's contract, the same from every store.
async fn kv_conformance(s: &dyn SessionStore) {
    let min = Duration::from_secs(60);
    // Opaque bytes, not text.
    let binary = [0u8, 255, 10, 13, 0x80, b'"'];
    s.kv_put("bin", &binary, min).await.unwrap();
    assert_eq!(s.kv_get("bin").await.unwrap().as_deref(), Some(&binary[..]));
    s.kv_put("bin", b"", min).await.unwrap();
    assert_eq!(s.kv_get("bin").await.unwrap(), Some(Vec::new()));
    assert_eq!(s.kv_get("missing").await.unwrap(), None);
    // put_new stores once.
    assert!(s.kv_put_new("new", b"first", min).await.unwrap());
    assert!(!s.kv_put_new("new", b"second", min).await.unwrap());
    assert_eq!(
        s.kv_get("new").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    // take is single use; delete is idempotent.
    assert_eq!(
        s.kv_take("new").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(s.kv_take("new").await.unwrap(), None);
    assert!(s.kv_put_new("new", b"again", min).await.unwrap());
    s.kv_delete("new").await.unwrap();
    s.kv_delete("new").await.unwrap();
    assert_eq!(s.kv_get("new").await.unwrap(), None);
    // No immortal entries.
    for bad in [Duration::ZERO, mcp_auth_session::KV_MAX_TTL * 2] {
        assert!(s.kv_put("ttl", b"v", bad).await.is_err());
        assert!(s.kv_put_new("ttl", b"v", bad).await.is_err());
    }
    assert_eq!(s.kv_get("ttl").await.unwrap(), None);

    // Its own namespace: the same text as a session id, its saved state
    // and a counter, and neither side sees or changes the other.
    let l = limits();
    assert!(matches!(
        open(s, Some("k"), "shared").await,
        Reserve::Granted(_)
    ));
    s.save_state("shared", "state", &l).await.unwrap();
    s.hit("shared", min).await.unwrap();
    assert_eq!(s.kv_get("shared").await.unwrap(), None);
    assert_eq!(s.kv_take("shared").await.unwrap(), None);
    s.kv_put("shared", b"kv", min).await.unwrap();
    s.kv_delete("shared").await.unwrap();
    assert_eq!(
        s.lookup("shared", &l)
            .await
            .unwrap()
            .unwrap()
            .owner
            .as_deref(),
        Some("k")
    );
    assert_eq!(
        s.load_state("shared").await.unwrap().as_deref(),
        Some("state")
    );
    assert_eq!(s.count("shared").await.unwrap().0, 1);
    s.kv_put("shared", b"kv", min).await.unwrap();
    s.end("shared").await.unwrap();
    s.unhit("shared").await.unwrap();
    assert_eq!(
        s.kv_get("shared").await.unwrap().as_deref(),
        Some(&b"kv"[..])
    );
    s.kv_delete("shared").await.unwrap();
}

/// Many tasks, spread over `a` and `b` (two replicas, or one store twice),
/// race to take one code and to be first to store a key: each round exactly
/// one task takes the code, exactly one stores, and everyone then reads the
/// winner's value.
async fn kv_races(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) {
    const TASKS: u8 = 32;
    let min = Duration::from_secs(60);
    for round in 0..50 {
        let code = format!("race:code:{round}");
        let key = format!("race:key:{round}");
        a.kv_put(&code, b"grant", min).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(usize::from(TASKS)));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (code, key, barrier) = (code.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let taken = s.kv_take(&code).await.unwrap();
                    let stored = s.kv_put_new(&key, &[i], min).await.unwrap();
                    (taken, stored.then_some(i))
                })
            })
            .collect();
        let (mut taken, mut winners) = (Vec::new(), Vec::new());
        for t in tasks {
            let (got, won) = t.await.unwrap();
            taken.extend(got);
            winners.extend(won);
        }
        assert_eq!(taken, vec![b"grant".to_vec()], "round {round}: one taker");
        assert_eq!(winners.len(), 1, "round {round}: one winner");
        for s in [&a, &b] {
            assert_eq!(s.kv_get(&key).await.unwrap(), Some(winners.clone()));
            assert_eq!(s.kv_get(&code).await.unwrap(), None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_key_value() {
    kv_conformance(&MemoryStore::new()).await;
    let s: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    kv_races(s.clone(), s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn redis_store_key_value_across_replicas() {
    let redis = Peer::redis(free_port());
    let url = redis.redis_url();
    kv_conformance(&RedisStore::new(&url).unwrap()).await;

    let a: Arc<dyn SessionStore> = Arc::new(RedisStore::new(&url).unwrap());
    let b: Arc<dyn SessionStore> = Arc::new(RedisStore::new(&url).unwrap());
    let min = Duration::from_secs(60);
    // A login started on one replica finishes on the other.
    a.kv_put("login:1", b"pending", min).await.unwrap();
    assert_eq!(
        b.kv_get("login:1").await.unwrap().as_deref(),
        Some(&b"pending"[..])
    );
    b.kv_put("login:1", b"done", min).await.unwrap();
    assert_eq!(
        a.kv_take("login:1").await.unwrap().as_deref(),
        Some(&b"done"[..])
    );
    assert_eq!(b.kv_take("login:1").await.unwrap(), None);
    // Generate once, replicas agree.
    assert!(a.kv_put_new("signing-key", b"a's key", min).await.unwrap());
    assert!(!b.kv_put_new("signing-key", b"b's key", min).await.unwrap());
    assert_eq!(
        b.kv_get("signing-key").await.unwrap().as_deref(),
        Some(&b"a's key"[..])
    );
    b.kv_delete("signing-key").await.unwrap();
    assert_eq!(a.kv_get("signing-key").await.unwrap(), None);

    kv_races(a, b).await;

    // In Redis: exactly the entries stored, under the key-value prefix
    // (the sessions, state and counters of the same names are elsewhere),
    // each with its expiry.
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("mcp-auth:kv:*")
        .query_async(&mut c)
        .await
        .unwrap();
    keys.sort();
    let mut expected: Vec<String> = (0..50)
        .map(|r| format!("mcp-auth:kv:race:key:{r}"))
        .chain(["mcp-auth:kv:bin".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        assert!(ttl > 50_000 && ttl <= 60_000, "{k}: PTTL {ttl}");
    }
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn redis_key_value_entries_expire() {
    let redis = Peer::redis(free_port());
    let a = RedisStore::new(&redis.redis_url()).unwrap();
    let b = RedisStore::new(&redis.redis_url()).unwrap();
    let short = Duration::from_millis(100);
    a.kv_put("code", b"grant", short).await.unwrap();
    assert!(a.kv_put_new("marker", b"seen", short).await.unwrap());
    assert!(!b.kv_put_new("marker", b"seen", short).await.unwrap());
    assert_eq!(
        b.kv_get("code").await.unwrap().as_deref(),
        Some(&b"grant"[..])
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(b.kv_get("code").await.unwrap(), None);
    assert_eq!(b.kv_take("code").await.unwrap(), None);
    // An expired replay marker no longer blocks.
    assert!(b.kv_put_new("marker", b"seen", short).await.unwrap());
    // A sub-millisecond TTL is rounded up, not immortal.
    a.kv_put("tiny", b"v", Duration::from_nanos(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(a.kv_get("tiny").await.unwrap(), None);
}

/// A session's id in someone else's hands does not keep it alive: their
/// lookups find it (the layer answering them compares owners) but do not
/// touch it; its owner's do, and anyone's keep an anonymous one (its first
/// caller binds it).
async fn only_those_who_may_use_a_session_keep_it_alive(s: &dyn SessionStore) {
    let l = SessionLimits {
        idle_timeout: Duration::from_millis(600),
        ..limits()
    };
    for (sid, owner) in [("kept", Some("a")), ("left", Some("a")), ("open", None)] {
        let Reserve::Granted(t) = s.reserve(owner, &l).await.unwrap() else {
            panic!("{sid} gets a slot")
        };
        s.commit(&t, sid, owner, &l).await.unwrap();
    }
    let found = s.lookup_as("left", Some("b"), &l).await.unwrap();
    assert_eq!(found.unwrap().owner.as_deref(), Some("a"));
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for caller in [Some("b"), None] {
            s.lookup_as("left", caller, &l).await.unwrap();
            s.lookup_as("kept", caller, &l).await.unwrap();
        }
        s.lookup_as("kept", Some("a"), &l).await.unwrap();
        s.lookup_as("open", Some("b"), &l).await.unwrap();
    }
    let owner_of = |r: Option<mcp_auth_session::SessionRecord>| r.map(|r| r.owner);
    assert_eq!(
        owner_of(s.lookup_as("left", Some("a"), &l).await.unwrap()),
        None
    );
    assert_eq!(
        owner_of(s.lookup_as("kept", Some("a"), &l).await.unwrap()),
        Some(Some("a".to_owned()))
    );
    assert_eq!(
        owner_of(s.lookup_as("open", None, &l).await.unwrap()),
        Some(None)
    );
}

#[tokio::test]
async fn memory_store_conformance() {
    conformance(&MemoryStore::new()).await;
    subject_caps(&MemoryStore::new()).await;
    ending_as_the_owner(&MemoryStore::new()).await;
    // Through the wrappers the server stacks on a store.
    let metered = mcp_auth_session::metered(Arc::new(MemoryStore::new()));
    ending_as_the_owner(&*mcp_auth_session::cached(metered, Duration::from_secs(1))).await;
}

#[tokio::test]
async fn memory_and_cached_stores_are_kept_alive_only_by_their_users() {
    only_those_who_may_use_a_session_keep_it_alive(&MemoryStore::new()).await;
    // Behind the lookup cache (whose hits touch nothing), with entries
    // younger than the lookups' spacing.
    let cached = mcp_auth_session::cached(Arc::new(MemoryStore::new()), Duration::from_millis(300));
    only_those_who_may_use_a_session_keep_it_alive(&*cached).await;
    // And with the metering wrapper between, as the server stacks them.
    let metered = mcp_auth_session::metered(Arc::new(MemoryStore::new()));
    let stacked = mcp_auth_session::cached(metered, Duration::from_millis(300));
    only_those_who_may_use_a_session_keep_it_alive(&*stacked).await;
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn redis_store_conformance_and_concurrent_caps() {
    let redis = Peer::redis(free_port());
    let url = redis.redis_url();
    conformance(&RedisStore::new(&url).unwrap()).await;
    subject_caps(&RedisStore::new(&url).unwrap()).await;
    let ending = Peer::redis(free_port());
    ending_as_the_owner(&RedisStore::new(&ending.redis_url()).unwrap()).await;
    let fresh = Peer::redis(free_port());
    only_those_who_may_use_a_session_keep_it_alive(&RedisStore::new(&fresh.redis_url()).unwrap())
        .await;

    // Two "replicas" racing for the last slots never exceed the cap.
    let a: Arc<dyn SessionStore> = Arc::new(RedisStore::new(&url).unwrap());
    let b: Arc<dyn SessionStore> = Arc::new(RedisStore::new(&url).unwrap());
    let l = SessionLimits {
        max_sessions: 1000,
        max_per_principal: 5,
        ..limits()
    };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            matches!(
                s.reserve(Some("racer"), &l).await.unwrap(),
                Reserve::Granted(_)
            )
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 5);
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn redis_outages_fail_closed_and_recover() {
    let port = free_port();
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/0")).unwrap();
    let l = limits();
    // Unreachable at start.
    let e = store.reserve(Some("a"), &l).await.unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    let redis = Peer::redis(port);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(
        open(&store, Some("a"), "s1").await,
        Reserve::Granted(_)
    ));
    // Killed mid-run.
    drop(redis);
    assert!(store.lookup("s1", &l).await.is_err());
    // Back: the store reconnects by itself.
    let _redis = Peer::redis(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if store.reserve(Some("a"), &l).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn store_settings_name_what_is_wrong() {
    use std::collections::HashMap;
    let with = |v: &str| HashMap::from([("MCP_SESSION_STORE".to_owned(), v.to_owned())]);
    assert!(mcp_auth_session::store_from_settings(&with("memory")).is_ok());
    assert!(mcp_auth_session::store_from_settings(&with("redis://127.0.0.1:6379/0")).is_ok());
    let tls = mcp_auth_session::store_from_settings(&with("rediss://127.0.0.1:6380/0"))
        .err()
        .unwrap();
    assert_eq!(tls.variable, "MCP_SESSION_STORE");
    assert!(tls.message.contains("not supported"), "{tls}");
    let other = mcp_auth_session::store_from_settings(&with("postgres://x"))
        .err()
        .unwrap();
    assert_eq!(other.variable, "MCP_SESSION_STORE");
}
