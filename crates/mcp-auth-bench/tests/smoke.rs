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

#[test]
fn every_mode_serves_calls_without_errors_and_idle_sessions_are_measured() {
    let out = Command::new(BENCH)
        .args([
            "--clients",
            "2",
            "--seconds",
            "1",
            "--distinct-tokens",
            "50",
        ])
        .args(["--idle-sessions", "20", "--server"])
        .arg(server())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for mode in ["none", "api_key", "oauth2", "oauth2-distinct"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {mode} |")))
            .unwrap_or_else(|| panic!("no row for {mode} in\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let rate: f64 = cells[2].parse().unwrap();
        assert!(rate > 0.0, "{row}");
        assert_eq!(cells[5], "0", "errors in {row}");
    }
    assert!(
        stdout.contains("idle sessions: 20 authenticated"),
        "{stdout}"
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
