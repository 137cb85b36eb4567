//! Two server processes sharing a real `redis-server`: sessions continue
//! across replicas and restarts, binding and caps hold everywhere, rate
//! limits are shared, and a Redis outage fails closed then recovers.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs Redis and runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use mcp_auth_integration_tests::{Peer, free_port};

use common::{
    BOB, INIT, KEY, fresh_connections, list, open, post, rate_limits_hold_across_replicas, replica,
};

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn a_session_continues_on_another_replica_and_stays_bound() {
    let redis = Peer::redis(free_port());
    let a = replica(&redis.redis_url(), &[]);
    let b = replica(&redis.redis_url(), &[]);
    let c = fresh_connections();
    let sid = open(&c, &a, Some(KEY)).await.unwrap();
    assert_eq!(list(&c, &a, &sid, Some(KEY)).await, 200);
    // The owner continues on B: the session is restored from Redis.
    assert_eq!(list(&c, &b, &sid, Some(KEY)).await, 200);
    // Another principal with the same id: refused on both replicas.
    assert_eq!(list(&c, &a, &sid, Some(BOB)).await, 404);
    assert_eq!(list(&c, &b, &sid, Some(BOB)).await, 404);
    // A session id without credentials: 401.
    assert_eq!(list(&c, &b, &sid, None).await, 401);

    // A replica restart loses nothing: a new process continues the session.
    let port_a = a.port;
    drop(a);
    let a2 = replica(&redis.redis_url(), &[("PORT", &port_a.to_string())]);
    assert_eq!(list(&c, &a2, &sid, Some(KEY)).await, 200);

    // DELETE on one replica ends it everywhere.
    let r = c
        .delete(b.url())
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        list(&c, &b, &sid, Some(KEY)).await,
        404,
        "at once where it ended"
    );
    // Elsewhere within MCP_SESSION_CACHE_MS (default 1 s): the other
    // replica remembered its lookup for that long.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(list(&c, &a2, &sid, Some(KEY)).await, 404);
}

/// The bound on an ended session elsewhere is the lookup cache's time to
/// live; with the cache off, another replica refuses it at once.
#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn an_ended_session_stops_on_other_replicas_within_the_cache_ttl() {
    let redis = Peer::redis(free_port());
    let c = fresh_connections();
    for (ttl_ms, served_after_end) in [("600", true), ("0", false)] {
        let env = [("MCP_SESSION_CACHE_MS", ttl_ms)];
        let a = replica(&redis.redis_url(), &env);
        let b = replica(&redis.redis_url(), &env);
        let sid = open(&c, &a, Some(KEY)).await.unwrap();
        assert_eq!(list(&c, &b, &sid, Some(KEY)).await, 200);
        let r = c
            .delete(a.url())
            .header("x-api-key", KEY)
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let now = list(&c, &b, &sid, Some(KEY)).await;
        assert_eq!(now == 200, served_after_end, "ttl {ttl_ms} ms: {now}");
        // Never to anyone but its owner, cached or not.
        assert_eq!(list(&c, &b, &sid, Some(BOB)).await, 404);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(list(&c, &b, &sid, Some(KEY)).await, 404, "ttl {ttl_ms} ms");
    }
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn caps_hold_across_replicas_and_anonymous_floods_cannot_take_them() {
    let redis = Peer::redis(free_port());
    let policy = [
        ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
        ("MCP_MAX_SESSIONS_PER_PRINCIPAL", "2"),
        ("MCP_MAX_ANONYMOUS_SESSIONS", "2"),
        ("HTTP_MAX_CONCURRENT_SESSIONS", "5"),
        ("HTTP_AUTH_FAILURE_LIMIT", "1000"),
    ];
    let a = replica(&redis.redis_url(), &policy);
    let b = replica(&redis.redis_url(), &policy);
    let c = fresh_connections();

    // An anonymous flood gets at most the anonymous cap, across replicas.
    let mut anon = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        match open(&c, if i % 2 == 0 { &a } else { &b }, None).await {
            Ok(sid) => anon.push(sid),
            Err(status) => {
                assert_eq!(status, 503);
                refused += 1;
            }
        }
    }
    assert_eq!((anon.len(), refused), (2, 8));

    // Authenticated users still get their sessions; the per-principal cap
    // is shared by both replicas.
    assert!(open(&c, &a, Some(KEY)).await.is_ok());
    assert!(open(&c, &b, Some(KEY)).await.is_ok());
    assert_eq!(open(&c, &a, Some(KEY)).await.unwrap_err(), 429);
    assert_eq!(open(&c, &b, Some(KEY)).await.unwrap_err(), 429);

    // An anonymous session is bound to the first principal that authenticates in it.
    let sid = &anon[0];
    assert_eq!(
        list(&c, &a, sid, None).await,
        401,
        "operations need credentials"
    );
    assert_eq!(list(&c, &b, sid, Some(BOB)).await, 200);
    assert_eq!(list(&c, &a, sid, Some(KEY)).await, 404, "now Bob's");
    assert_eq!(list(&c, &a, sid, Some(BOB)).await, 200);

    // Bob opens one more session; the global cap (5) is now reached for everyone.
    assert!(open(&c, &b, Some(BOB)).await.is_ok());
    assert_eq!(open(&c, &a, Some(BOB)).await.unwrap_err(), 503);
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn rate_limits_are_shared_across_replicas() {
    let redis = Peer::redis(free_port());
    let _replicas = rate_limits_hold_across_replicas(&redis.redis_url()).await;
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn a_redis_outage_fails_closed_and_recovers() {
    let port = free_port();
    let redis = Peer::redis(port);
    let a = replica(&redis.redis_url(), &[]);
    let c = fresh_connections();
    let sid = open(&c, &a, Some(KEY)).await.unwrap();
    drop(redis);

    let r = post(&c, &a.url(), INIT)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // An open session's lookup is remembered for MCP_SESSION_CACHE_MS
    // (1 s): past that, its requests fail closed too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(list(&c, &a, &sid, Some(KEY)).await, 503);
    assert!(
        a.logs_soon(&format!("127.0.0.1:{port}")).await,
        "the log names the store"
    );
    assert!(
        c.get(format!("{}/health", a.base()))
            .send()
            .await
            .unwrap()
            .status()
            == 200,
        "the server itself is alive"
    );
    // ... but not ready: the store does not answer (and the probe does not
    // say where it is).
    let r = c.get(format!("{}/ready", a.base())).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let ready: serde_json::Value = r.json().await.unwrap();
    let store = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "session store")
        .unwrap();
    assert_eq!(store["ok"], false, "{ready}");
    assert!(!ready.to_string().contains(&port.to_string()), "{ready}");

    let _redis = Peer::redis(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if open(&c, &a, Some(KEY)).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", a.stderr());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A parked session whose restore fails (Redis stalls past the store's
/// timeout) is not lost: the request restoring it gets 503 with
/// `Retry-After`, one that waited on that restore 503 too or, restoring it
/// in turn once Redis is back, its answer; the session goes on once Redis
/// answers again (an attack pass: rmcp answered the waiter
/// 404, taken as "the session is gone" and ended in Redis, and the
/// restoring request 500 with the store's address).
#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn a_failed_restore_loses_no_session() {
    let redis = Peer::redis(free_port());
    let a = replica(
        &redis.redis_url(),
        &[
            ("MCP_SESSION_PARK_AFTER", "300"),
            ("RUST_LOG", "info,mcp_auth_transport=debug"),
        ],
    );
    let c = fresh_connections();
    let sid = open(&c, &a, Some(KEY)).await.unwrap();
    // Looked up now: remembered for MCP_SESSION_CACHE_MS (1 s), so the
    // requests below reach the restore without asking Redis first.
    assert_eq!(list(&c, &a, &sid, Some(KEY)).await, 200);
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(a.stderr().contains("idle session parked"), "{}", a.stderr());
    redis.pause_redis(2500);
    let ask = || async {
        let r = post(&c, &a.url(), common::LIST)
            .header("x-api-key", KEY)
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
        let retry = r.headers().get("retry-after").cloned();
        (r.status().as_u16(), retry, r.text().await.unwrap())
    };
    let (first, second) = tokio::join!(ask(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ask().await
    });
    // The first fails with the store; the second waits for its answer,
    // then restores the session itself: 503 while Redis still stalls, or
    // the answer once it is back. Never 404 (the session lost) or 500.
    assert_eq!(first.0, 503, "{}", first.2);
    assert!(matches!(second.0, 503 | 200), "{}: {}", second.0, second.2);
    for (status, retry, body) in [first, second] {
        assert!(status == 200 || retry.is_some(), "{body}");
        assert!(!body.contains("127.0.0.1"), "{body}");
    }
    // Redis answers again: the same session, restored.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(list(&c, &a, &sid, Some(KEY)).await, 200);
}

/// A session's event stream (`GET`) ends when its session ends on another
/// replica (within the check period, 5 s at most, plus the lookup cache),
/// instead of staying open, with its worker, until the worker idles out;
/// a session that still exists keeps its stream.
#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn an_event_stream_ends_when_its_session_ends_on_another_replica() {
    use futures::StreamExt;
    let redis = Peer::redis(free_port());
    let env = [("HTTP_SESSION_TIMEOUT", "600000")];
    let a = replica(&redis.redis_url(), &env);
    let b = replica(&redis.redis_url(), &env);
    let c = fresh_connections();
    let sid = open(&c, &a, Some(KEY)).await.unwrap();
    let mut stream = common::event_stream(&c, &a, &sid, Some(KEY))
        .await
        .bytes_stream();
    let ended = tokio::spawn(async move {
        let started = Instant::now();
        while let Some(Ok(_)) = stream.next().await {}
        started.elapsed()
    });
    // Past a check the stream is still open: its session is there.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !ended.is_finished(),
        "the stream ended while its session lived"
    );
    let r = c
        .delete(b.url())
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let open_for = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the stream ended after its session did")
        .unwrap();
    assert!(open_for < Duration::from_secs(6 + 7), "{open_for:?}");
    assert_eq!(list(&c, &a, &sid, Some(KEY)).await, 404);
}
