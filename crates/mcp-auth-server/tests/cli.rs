//! The binary outside HTTP: stdio transport, configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    time::Duration,
};

use common::{INIT, command, tempdir};

#[test]
fn stdio_answers_initialize_and_tools_on_stdout_with_logs_on_stderr() {
    let dir = tempdir();
    let mut child = command(dir.path(), &[("LOG_LEVEL", "debug")])
        .args(["--transport", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a reply on stdout")
    };

    writeln!(stdin, "{INIT}").unwrap();
    let reply: serde_json::Value =
        serde_json::from_str(&next()).expect("stdout carries only JSON-RPC");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["result"]["serverInfo"]["name"], "mcp-auth-server");

    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"whoami","arguments":{{}}}}}}"#
    )
    .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["result"]["structuredContent"]["strategy"], "stdio");

    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("serving MCP over stdio"), "{logs}");
}

/// Runs the binary with `env` and returns (exit success, stderr).
fn run(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let dir = tempdir();
    let out = command(dir.path(), env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line_naming_the_variable() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("PORT", "eighty")], &[], "PORT: "),
        (&[("HOST", "my-laptop")], &[], "HOST: "),
        (&[("MCP_TRANSPORT", "pigeon")], &[], "MCP_TRANSPORT: "),
        (&[], &["--transport", "pigeon"], "MCP_TRANSPORT: "),
        (&[("MCP_AUTH_STRATEGY", "api_key")], &[], "MCP_API_KEYS: "),
        (
            &[("MCP_API_KEYS", "short")],
            &[],
            "MCP_API_KEYS: key #1 is shorter",
        ),
        (
            &[("MCP_AUTH_STRATEGY", "none"), ("HOST", "0.0.0.0")],
            &[],
            "MCP_AUTH_STRATEGY: none on the non-loopback",
        ),
        (
            &[("HTTP_MAX_REQUEST_SIZE", "huge")],
            &[],
            "HTTP_MAX_REQUEST_SIZE: ",
        ),
        (
            &[("HTTP_REQUEST_TIMEOUT", "0")],
            &[],
            "HTTP_REQUEST_TIMEOUT: ",
        ),
        (
            &[("HTTP_ALLOWED_ORIGINS", "example.com")],
            &[],
            "HTTP_ALLOWED_ORIGINS: ",
        ),
        (&[("MCP_SERVER_URL", "not a url")], &[], "MCP_SERVER_URL: "),
        (&[("LOG_LEVEL", "[")], &[], "LOG_LEVEL: "),
        (&[], &["--config", "missing.toml"], "--config: cannot read"),
    ];
    for (env, args, want) in cases {
        let (ok, stderr) = run(env, args);
        assert!(!ok, "{env:?} {args:?} should fail");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?} {args:?}: {stderr}");
        assert!(
            lines[0].starts_with(&format!("error: {want}")),
            "{env:?}: {stderr}"
        );
    }
}

#[test]
fn a_key_never_appears_in_a_configuration_error() {
    let (ok, stderr) = run(&[("MCP_API_KEYS", "long-enough-secret-key,tiny")], &[]);
    assert!(!ok);
    assert!(stderr.contains("key #2"), "{stderr}");
    assert!(
        !stderr.contains("tiny") && !stderr.contains("long-enough-secret-key"),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_is_reported_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (ok, stderr) = run(&[("MCP_API_KEYS", common::KEY)], &["--port", &port]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_broken_dotenv_or_toml_line_is_reported_without_its_text() {
    for (file, text, args) in [
        (".env", "MCP_API_KEYS=\"super-secret-value-123\n", &[][..]),
        (
            "c.toml",
            "mcp_api_keys = \"super-secret-value-123\n",
            &["--config", "c.toml"][..],
        ),
    ] {
        let dir = tempdir();
        std::fs::write(dir.path().join(file), text).unwrap();
        let out = command(dir.path(), &[]).args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("super-secret"), "{stderr}");
    }
}
