//! The benchmark runs end to end against the real server binary (briefly),
//! and refuses bad options with an error naming the option.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command};

const BENCH: &str = env!("CARGO_BIN_EXE_mcp-auth-bench");

fn server() -> std::path::PathBuf {
    let p = Path::new(BENCH).with_file_name("mcp-auth-server");
    assert!(
        p.exists(),
        "{} is not built: run `cargo build -p mcp-auth-server`",
        p.display()
    );
    p
}

/// Runs the benchmark, which must succeed; its report.
fn report(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The cells of `mode`'s row, after checking it answered calls and none
/// failed.
fn served_without_errors<'a>(report: &'a str, mode: &str) -> Vec<&'a str> {
    let row = report
        .lines()
        .find(|l| l.starts_with(&format!("| {mode} |")))
        .unwrap_or_else(|| panic!("no row for {mode} in\n{report}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let rate: f64 = cells[2].parse().unwrap();
    assert!(rate > 0.0, "{row}");
    assert_eq!(cells[5], "0", "errors in {row}");
    cells
}

#[test]
fn every_mode_serves_calls_without_errors_and_idle_sessions_are_measured() {
    let stdout = report(
        Command::new(BENCH)
            .args([
                "--clients",
                "2",
                "--seconds",
                "1",
                "--distinct-tokens",
                "50",
            ])
            .args(["--idle-sessions", "20", "--server"])
            .arg(server()),
    );
    for mode in ["none", "api_key", "oauth2", "oauth2-distinct"] {
        let cells = served_without_errors(&stdout, mode);
        let cpu: f64 = cells[7].trim_end_matches(" µs").parse().unwrap();
        assert!(cpu > 0.0, "the server's CPU time is read: {cells:?}");
    }
    assert!(
        stdout.contains("idle sessions: 20 authenticated")
            && stdout.contains("after ending them all (DELETE)"),
        "{stdout}"
    );
}

#[test]
fn a_server_env_without_a_value_is_refused_by_name() {
    let out = Command::new(BENCH)
        .args([
            "--server-env",
            "LD_PRELOAD",
            "--idle-sessions",
            "0",
            "--server",
        ])
        .arg(server())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--server-env") && err.contains("LD_PRELOAD"),
        "{err}"
    );
}

#[test]
fn an_unknown_mode_is_refused_by_name() {
    let out = Command::new(BENCH)
        .args(["--modes", "kerberos", "--idle-sessions", "0", "--server"])
        .arg(server())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--modes") && err.contains("kerberos"), "{err}");
}

/// The peers (official Python and TypeScript SDK servers) serve the same load
/// with the same tokens, and the report compares ours with each. Needs the
/// Python SDK (`INTEROP_PYTHON`, set by tests/run-all.sh) and the peers' Node
/// packages (`npm ci` in crates/mcp-auth-bench/peers, also run-all.sh).
#[test]
#[ignore = "needs the Python MCP SDK (INTEROP_PYTHON) and the peers' npm packages"]
fn the_peers_serve_the_same_load_and_are_compared() {
    let python =
        std::env::var("INTEROP_PYTHON").expect("INTEROP_PYTHON: a Python with the mcp SDK");
    let stdout = report(
        Command::new(BENCH)
            .args(["--modes", "oauth2,python-sdk,typescript-sdk"])
            .args(["--clients", "2", "--seconds", "1", "--idle-sessions", "0"])
            .args(["--python", &python, "--server"])
            .arg(server()),
    );
    for mode in ["python-sdk", "typescript-sdk"] {
        served_without_errors(&stdout, mode);
        assert!(
            stdout.contains(&format!("oauth2 throughput vs {mode}: ")),
            "{stdout}"
        );
    }
}

/// DPoP (issue #18): the server requires DPoP-bound tokens, each client
/// has its own key and bound token and proves possession on every request;
/// every call is served and the report compares the mode with `oauth2`.
#[test]
fn dpop_clients_are_served_with_a_fresh_proof_per_call() {
    let stdout = report(
        Command::new(BENCH)
            .args(["--modes", "oauth2,oauth2-dpop", "--clients", "3"])
            .args(["--seconds", "1", "--idle-sessions", "0", "--server"])
            .arg(server()),
    );
    served_without_errors(&stdout, "oauth2-dpop");
    assert!(
        stdout.contains("oauth2-dpop vs oauth2: throughput "),
        "{stdout}"
    );
}

/// The rows of the facade's token-endpoint table for `store`, after
/// checking each step answered without errors.
fn token_steps_without_errors(report: &str, store: &str) {
    for step in ["login", "authorization_code", "refresh_token"] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {store} | {step} |")))
            .unwrap_or_else(|| panic!("no {store} {step} row in\n{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let count: usize = cells[3].parse().unwrap();
        assert!(count > 0, "{row}");
        assert_eq!(cells[7], "0", "errors in {row}");
    }
}

/// The login facade: calls with its own tokens (one, and a pool of distinct
/// ones from its token endpoint), compared with oauth2's; its logins and
/// token endpoint measured with the memory store.
#[test]
fn the_facade_serves_calls_with_its_tokens_and_its_token_endpoint_is_measured() {
    let stdout = report(
        Command::new(BENCH)
            .args(["--modes", "oauth2,facade,facade-distinct,facade-token"])
            .args([
                "--clients",
                "2",
                "--seconds",
                "1",
                "--distinct-tokens",
                "20",
            ])
            .args(["--logins", "10", "--idle-sessions", "0", "--server"])
            .arg(server()),
    );
    for mode in ["facade", "facade-distinct"] {
        served_without_errors(&stdout, mode);
    }
    assert!(stdout.contains("facade vs oauth2: throughput "), "{stdout}");
    token_steps_without_errors(&stdout, "memory");
}

/// The same token endpoint with the store in Redis.
#[test]
#[ignore = "needs redis-server (tests/run-all.sh installs it)"]
fn the_token_endpoint_is_measured_with_a_redis_store() {
    let stdout = report(
        Command::new(BENCH)
            .args(["--modes", "facade-token-redis", "--clients", "2"])
            .args(["--seconds", "1", "--logins", "10", "--idle-sessions", "0"])
            .arg("--server")
            .arg(server()),
    );
    token_steps_without_errors(&stdout, "redis");
}

#[test]
fn fewer_logins_than_clients_are_refused_by_name() {
    let out = Command::new(BENCH)
        .args(["--modes", "facade-token", "--clients", "8", "--logins", "4"])
        .args(["--idle-sessions", "0", "--server"])
        .arg(server())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--logins"), "{err}");
}
