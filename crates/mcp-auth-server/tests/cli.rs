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
    let (mut child, rx, _dir) = stdio_server(Stdio::piped(), &[("LOG_LEVEL", "debug")]);
    let mut stdin = child.stdin.take().unwrap();
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

/// The stdio server with `env`, its stdin from `stdin`, stdout read line
/// by line on a thread: the child, the lines' receiver, its directory.
fn stdio_server(
    stdin: Stdio,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    tempfile::TempDir,
) {
    let dir = tempdir();
    let mut child = command(dir.path(), env)
        .args(["--transport", "stdio"])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    (child, rx, dir)
}

/// Waits up to `secs` for `child` to exit.
fn exits_within(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// SIGTERM and SIGINT stop the stdio server while its client keeps stdin
/// open, whether stdin is a pipe (read without blocking a thread) or
/// anything else (a socket here, a terminal in use: read on a thread that
/// cannot be cancelled). An attack pass: the server logged "shutting
/// down" and went on waiting for stdin; Ctrl-C could not stop it.
#[test]
fn signals_stop_the_stdio_server_while_stdin_stays_open() {
    for (signal, over_socket) in [
        ("TERM", false),
        ("INT", false),
        ("TERM", true),
        ("INT", true),
    ] {
        let (mut child, rx, _dir, _keep) = if over_socket {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let (child, rx, dir) =
                stdio_server(Stdio::from(std::os::fd::OwnedFd::from(theirs)), &[]);
            (child, rx, dir, Some(ours))
        } else {
            let (child, rx, dir) = stdio_server(Stdio::piped(), &[]);
            (child, rx, dir, None)
        };
        let mut stdin: Box<dyn Write> = match &_keep {
            Some(sock) => Box::new(sock.try_clone().unwrap()),
            None => Box::new(child.stdin.take().unwrap()),
        };
        writeln!(stdin, "{INIT}").unwrap();
        let reply = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("initialize answered");
        assert!(reply.contains("\"serverInfo\""), "{reply}");
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = exits_within(&mut child, 10);
        if status.is_none() {
            let _ = child.kill();
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "SIG{signal} (stdin a {}): {status:?}",
            if over_socket { "socket" } else { "pipe" }
        );
        drop(stdin);
    }
}

/// A message over the size or value limit (here a tool call whose
/// arguments hold 100 000 numbers: rmcp would hold it as trees of values,
/// ~230 bytes each) is answered with an "invalid request" error, and the
/// session goes on; a message before `initialize` that ends the session
/// is reported in one line, cut, whatever it held.
#[test]
fn stdio_messages_over_the_limits_are_refused_and_errors_are_cut() {
    let (mut child, rx, _dir) = stdio_server(Stdio::piped(), &[]);
    let mut stdin = child.stdin.take().unwrap();
    let next = || rx.recv_timeout(Duration::from_secs(20)).expect("a reply");
    writeln!(stdin, "{INIT}").unwrap();
    assert!(next().contains("\"serverInfo\""));
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    let zeros = format!("[{}0]", "0,".repeat(100_000));
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"whoami","arguments":{{"x":{zeros}}}}}}}"#
    )
    .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    // (rmcp leaves `id` out of this answer; JSON-RPC says null.)
    assert!(
        reply.get("id").is_none_or(serde_json::Value::is_null),
        "{reply}"
    );
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"whoami","arguments":{{}}}}}}"#
    )
    .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(reply["id"], 6, "{reply}");
    // A last message without its line end is answered too (as before the
    // bounded reader, which at first dropped it: a review).
    write!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"whoami","arguments":{{}}}}}}"#
    )
    .unwrap();
    drop(stdin);
    let reply: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(reply["id"], 7, "{reply}");
    assert!(child.wait().unwrap().success());

    let dir = tempdir();
    let mut child = command(dir.path(), &[])
        .args(["--transport", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = "A".repeat(100_000);
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","data":"{data}\u001b[2J"}}}}"#
    )
    .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    let last = logs.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: stdio transport"), "{last}");
    assert!(last.ends_with("…(cut)"), "{last}");
    assert!(
        last.chars().count() < 1200,
        "{} characters",
        last.chars().count()
    );
    assert!(logs.lines().all(|l| l.chars().count() < 1200));
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
        // Credentials in the issuer were logged and published (an attack
        // pass); the refusal does not repeat them (its whole line is
        // checked against this prefix).
        (
            &[
                ("MCP_AUTH_STRATEGY", "oauth2"),
                ("MCP_OAUTH_ISSUER", "http://admin:Pa55@127.0.0.1:1/realm"),
            ],
            &[],
            "MCP_OAUTH_ISSUER: the issuer is not an http(s) URL without user name, password, query or fragment",
        ),
        // A misspelt tool left the one meant open (an attack pass).
        (
            &[
                ("MCP_API_KEYS", common::KEY),
                ("MCP_TOOL_SCOPES", "get-time=mcp:tools"),
            ],
            &[],
            "MCP_TOOL_SCOPES: no tool named \"get-time\": did you mean get_time?",
        ),
        (
            &[
                ("MCP_API_KEYS", common::KEY),
                ("MCP_TOOL_SCOPES", "deploy=mcp:tools"),
            ],
            &[],
            "MCP_TOOL_SCOPES: no tool named \"deploy\": the server's tools are ",
        ),
        (
            &[("MCP_AUTH_STRATEGY", "none"), ("HTTP_ALLOWED_ORIGINS", "*")],
            &[],
            "MCP_AUTH_STRATEGY: none with * in HTTP_ALLOWED_ORIGINS",
        ),
        (&[], &["--config", "missing.toml"], "--config: cannot read"),
    ];
    for (env, args, want) in cases {
        let (ok, stderr) = run(env, args);
        assert!(!ok, "{env:?} {args:?} should fail");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?} {args:?}: {stderr}");
        assert!(!stderr.contains("Pa55"), "{stderr}");
        assert!(
            lines[0].starts_with(&format!("error: {want}")),
            "{env:?}: {stderr}"
        );
    }
}

/// A setting whose value in the environment is not UTF-8 is refused,
/// naming it, not read as unset (an attack pass: a required scope so set
/// was dropped and every token let in).
#[test]
fn a_setting_that_is_not_utf8_is_refused_naming_it() {
    use std::os::unix::ffi::OsStringExt;
    let dir = tempdir();
    let out = command(dir.path(), &[("MCP_API_KEYS", common::KEY)])
        .env(
            "MCP_OAUTH_REQUIRED_SCOPES",
            std::ffi::OsString::from_vec(b"mcp:admin\xe9".to_vec()),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: MCP_OAUTH_REQUIRED_SCOPES: is set in the environment to a value that is not UTF-8"),
        "{stderr}"
    );
    // A setting its flag gives is not read from the environment: not
    // refused (the stdio server starts; stdin closed, it ends).
    let out = command(dir.path(), &[])
        .env(
            "MCP_TRANSPORT",
            std::ffi::OsString::from_vec(b"http\xff".to_vec()),
        )
        .args(["--transport", "stdio"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serving MCP over stdio"), "{stderr}");
    assert!(!stderr.contains("UTF-8"), "{stderr}");
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
