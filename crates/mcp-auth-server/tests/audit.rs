//! The audit log (`MCP_AUDIT_LOG`) end to end: a known sequence of
//! requests against the real binary yields exactly the expected records,
//! hash-chained; `mcp-auth-server audit verify` passes on it and names the
//! record an edit or a deletion broke; no key appears in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::{INIT, Server, command, post, tempdir};
use serde_json::Value;

/// Named `ops-bot`, with the scope `admin`.
const OPS: &str = "ops-key-0123456789abcdef";
/// Named `ci-bot`, without it.
const CI: &str = "ci-key-0123456789abcdef";
const ADMIN_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_status","arguments":{}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn verify(files: &[&std::path::Path]) -> (bool, String) {
    let dir = tempdir();
    let out = command(dir.path(), &[])
        .arg("audit")
        .arg("verify")
        .args(files)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the log has `n` records (the writer is a thread of its own).
async fn wait_for(path: &std::path::Path, n: usize) -> Vec<Value> {
    for _ in 0..50 {
        if path.exists() && records(path).len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    records(path)
}

/// Issue #17: every decision of a known sequence, exactly: refused without
/// credentials, refused with a wrong key, a session started, a tool
/// refused for scope, a tool called, the session ended; the chain verifies
/// and an edit or a deletion is named.
#[tokio::test]
async fn a_known_sequence_yields_exactly_its_records_and_tampering_is_named() {
    let logs = tempdir();
    let log = logs.path().join("audit.jsonl");
    let keys = format!("ops-bot:{OPS}:admin, ci-bot:{CI}");
    let s = Server::start(&[
        ("MCP_API_KEYS", &keys),
        ("MCP_TOOL_SCOPES", "admin_status=admin"),
        ("MCP_AUDIT_LOG", log.to_str().unwrap()),
    ]);
    let http = reqwest::Client::new();
    let url = s.url();
    let r = post(&http, &url, INIT).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post(&http, &url, INIT)
        .header("x-api-key", "not-a-key-0123456789abcdef")
        .header("x-request-id", "req-wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "req-wrong-key");
    let r = post(&http, &url, INIT)
        .header("x-api-key", CI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(r.text().await);
    let r = post(&http, &url, INITIALIZED)
        .header("x-api-key", CI)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = post(&http, &url, ADMIN_CALL)
        .header("x-api-key", CI)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(&http, &url, ADMIN_CALL)
        .header("x-api-key", OPS)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "another principal's session");
    let r = http
        .delete(&url)
        .header("x-api-key", CI)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let got = wait_for(&log, 7).await;
    let summary: Vec<String> = got
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {}",
                r["event"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
                r["status"],
                r["reason"].as_str().unwrap_or("-"),
                r["subject"].as_str().unwrap_or("-"),
                r["tool"].as_str().unwrap_or("-"),
                r["scopes_required"].as_array().map_or("-".into(), |s| {
                    s.iter()
                        .map(|x| x.as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                }),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "request deny 401 unauthorized - - -",
            "request deny 401 invalid_token - - -",
            "session_start allow 200 - api-key:ci-bot - -",
            "request allow 202 - api-key:ci-bot - -",
            "request deny 403 insufficient_scope api-key:ci-bot admin_status admin",
            "request deny 404 not_found api-key:ops-bot admin_status admin",
            "session_end allow 204 - api-key:ci-bot - -",
        ],
        "{got:#?}"
    );
    // The fields of one record, and the chain.
    assert_eq!(got[1]["request_id"], "req-wrong-key");
    assert_eq!(got[2]["session_id"], sid.as_str());
    assert_eq!(got[2]["method"], "initialize");
    assert_eq!(got[2]["strategy"], "api_key");
    assert_eq!(got[2]["peer"], "127.0.0.1");
    assert_eq!(got[4]["scopes_held"], Value::Null, "ci-bot holds no scope");
    assert_eq!(got[0]["seq"], 0);
    assert_eq!(got[6]["seq"], 6);
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [OPS, CI, "not-a-key-0123456789abcdef"] {
        assert!(!text.contains(secret), "a key in the audit log");
    }
    let (ok, out) = verify(&[&log]);
    assert!(ok && out.contains("ok: 7 records"), "{out}");

    // An edited record is named; so is a deleted one.
    drop(s);
    let lines: Vec<&str> = text.lines().collect();
    let mut edited = lines.clone();
    let forged = edited[4].replace("\"deny\"", "\"allow\"");
    edited[4] = &forged;
    std::fs::write(&log, edited.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains("line 5") && out.contains("edited"),
        "{out}"
    );
    let mut deleted = lines.clone();
    deleted.remove(3);
    std::fs::write(&log, deleted.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&[&log]);
    assert!(
        !ok && out.contains("line 4") && out.contains("removed"),
        "{out}"
    );
}
