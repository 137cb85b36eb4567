//! Two server processes on a real three-primary Redis Cluster
//! (`MCP_SESSION_STORE=redis+cluster://...`): sessions continue across
//! replicas and stay bound to their owner, caps and rate limits hold across
//! both, and every key of the session structure lands in one slot.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs Redis and runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use mcp_auth_integration_tests::RedisCluster;

use common::{BOB, KEY, fresh_connections, list, open, rate_limits_hold_across_replicas, replica};

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn sessions_and_caps_hold_across_replicas_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let policy = [
        ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
        ("MCP_MAX_SESSIONS_PER_PRINCIPAL", "2"),
        ("MCP_MAX_ANONYMOUS_SESSIONS", "2"),
        ("HTTP_MAX_CONCURRENT_SESSIONS", "20"),
    ];
    let a = replica(&cluster.url(), &policy);
    let b = replica(&cluster.url(), &policy);
    assert!(
        a.stderr().contains("redis+cluster://127.0.0.1:"),
        "the log names the cluster: {}",
        a.stderr()
    );
    let c = fresh_connections();

    // A session opened on A continues on B, for its owner only.
    let sid = open(&c, &a, Some(KEY)).await.unwrap();
    assert_eq!(list(&c, &a, &sid, Some(KEY)).await, 200);
    assert_eq!(list(&c, &b, &sid, Some(KEY)).await, 200);
    assert_eq!(list(&c, &a, &sid, Some(BOB)).await, 404);
    assert_eq!(list(&c, &b, &sid, Some(BOB)).await, 404);
    assert_eq!(list(&c, &b, &sid, None).await, 401);

    // The session's keys share one slot ({mcp-auth}): all on one node.
    let sess = format!("{{mcp-auth}}:sess:{sid}");
    assert_eq!(cluster.cli(&["exists", &sess]).trim(), "1");
    let by_node = cluster.keys_by_node();
    let holding: Vec<usize> = by_node
        .iter()
        .enumerate()
        .filter(|(_, keys)| keys.iter().any(|k| k.starts_with("{mcp-auth}:")))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(holding.len(), 1, "{by_node:?}");
    assert!(by_node[holding[0]].contains(&sess), "{by_node:?}");

    // The per-principal cap (2) is shared by both replicas.
    let second = open(&c, &b, Some(KEY)).await.unwrap();
    assert_eq!(open(&c, &a, Some(KEY)).await.unwrap_err(), 429);
    assert_eq!(open(&c, &b, Some(KEY)).await.unwrap_err(), 429);
    // Ending one (on the other replica) frees its place everywhere.
    let r = c
        .delete(b.url())
        .header("x-api-key", KEY)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let third = open(&c, &a, Some(KEY)).await.unwrap();
    assert_eq!(open(&c, &b, Some(KEY)).await.unwrap_err(), 429);
    assert_eq!(list(&c, &a, &second, Some(KEY)).await, 200);
    assert_eq!(list(&c, &b, &third, Some(KEY)).await, 200);

    // Anonymous sessions: at most the anonymous cap across replicas, and
    // one is bound to the first principal that authenticates in it.
    let anon = open(&c, &a, None).await.unwrap();
    assert!(open(&c, &b, None).await.is_ok());
    assert_eq!(open(&c, &a, None).await.unwrap_err(), 503);
    assert_eq!(list(&c, &b, &anon, Some(BOB)).await, 200);
    assert_eq!(list(&c, &a, &anon, Some(KEY)).await, 404, "now Bob's");
    assert_eq!(list(&c, &a, &anon, Some(BOB)).await, 200);
    // Bob's session counts against his cap (2) on both replicas.
    assert!(open(&c, &a, Some(BOB)).await.is_ok());
    assert_eq!(open(&c, &b, Some(BOB)).await.unwrap_err(), 429);
}

#[tokio::test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
async fn rate_limits_hold_across_replicas_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let _replicas = rate_limits_hold_across_replicas(&cluster.url()).await;

    // The counters are in the cluster, outside the sessions' slot.
    let keys: Vec<String> = cluster.keys_by_node().concat();
    assert!(
        keys.iter().any(|k| k.starts_with("mcp-auth:rl:")),
        "{keys:?}"
    );
}
