//! The admin CLI's start-up, without AWS: `.env` errors stop it before any
//! request, and never repeat the file's text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

/// Runs the CLI in `dir` with an empty environment.
fn cli(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-auth-cognito"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        // Nowhere to go: a request would fail, not reach AWS.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_broken_dotenv_is_an_error_that_does_not_echo_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "COGNITO_REGION=eu-west-1\nCOGNITO_TEST_USER_PASSWORD=\"s3cret-Passw0rd\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["--region", "eu-west-1", "status"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: .env: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(out.stdout.is_empty());

    // Help needs no settings.
    let out = cli(dir.path(), &["--help"]);
    assert!(out.status.success());
}

#[test]
fn without_a_region_it_says_where_to_set_one() {
    let dir = tempfile::tempdir().unwrap();
    // Names the CLI does not read, and blank values, are ignored.
    std::fs::write(
        dir.path().join(".env"),
        "MCP_API_KEYS=k1\nCOGNITO_REGION=\nAWS_REGION=\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["status"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err, "error: set --region, COGNITO_REGION or AWS_REGION\n");
}

/// A scope name Cognito does not take is refused before any request,
/// naming the flag (an attack pass: `--scopes 'a b'` was registered and
/// printed as a required scope no token can carry).
#[test]
fn a_scope_name_cognito_does_not_take_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["tools,a b", "tools/read", "say\"hi\"", "back\\slash"] {
        let out = cli(
            dir.path(),
            &[
                "--region",
                "eu-west-1",
                "add-resource-server",
                "--scopes",
                bad,
            ],
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.starts_with("error: --scopes: ") && err.contains("is not a Cognito scope name"),
            "{bad}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // A good name goes on to ask AWS (unreachable here).
    let out = cli(
        dir.path(),
        &[
            "--region",
            "eu-west-1",
            "add-resource-server",
            "--scopes",
            "tools,read:all",
        ],
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("--scopes"), "{err}");
    assert!(err.contains("AWS"), "{err}");
}
