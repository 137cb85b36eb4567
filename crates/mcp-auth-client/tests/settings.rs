//! Issue #15: the client's settings come from one merge (flags, then the
//! environment, then `./.env`), where an empty value counts as unset in
//! every layer and a `.env` that cannot be parsed is an error.
//!
//! The real client binary runs in a temporary directory holding the
//! `.env`; a stand-in MCP server on 127.0.0.1 records the `X-API-Key` it
//! is sent and refuses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::refusing_stand_in as stand_in;
use std::{
    path::Path,
    process::{Command, Output},
};

/// Runs the client in `dir` (its working and config directory) with
/// `args` and the client's variables set as in `env` (others removed).
async fn client(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = dir.to_owned();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-auth-client"));
        for name in mcp_auth_client::VARIABLES {
            if !matches!(*name, "HOME" | "XDG_CONFIG_HOME") {
                cmd.env_remove(name);
            }
        }
        cmd.args([
            "--no-browser",
            "--login-timeout",
            "1",
            "--callback-port",
            "0",
        ])
        .args(&args)
        .envs(env)
        .env("MCP_AUTH_CLIENT_HOME", &dir)
        .current_dir(&dir)
        .output()
        .unwrap()
    })
    .await
    .unwrap()
}

/// `MCP_SERVER_URL=` and `MCP_API_KEY=` in the environment used to hide
/// `.env`'s values (the client then went to localhost:8001 with OAuth);
/// now an empty value counts as unset, and a set one still wins.
#[tokio::test]
async fn an_empty_variable_does_not_hide_dotenv() {
    let (url, keys) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("MCP_SERVER_URL={url}\nMCP_API_KEY=key-from-dotenv\n"),
    )
    .unwrap();

    let out = client(
        dir.path(),
        &[("MCP_SERVER_URL", ""), ("MCP_API_KEY", "  ")],
        &["list"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("API key"), "{stderr}");
    assert_eq!(keys.lock().unwrap().first().unwrap(), "key-from-dotenv");

    keys.lock().unwrap().clear();
    let out = client(
        dir.path(),
        &[("MCP_API_KEY", "key-from-env"), ("MCP_SERVER_URL", &url)],
        &["list"],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(keys.lock().unwrap().first().unwrap(), "key-from-env");
}

/// A `.env` (a cloned project's) that names the server does not get the
/// user's own key, from a flag or the environment: only one the same
/// `.env` holds, or a server the user named.
#[tokio::test]
async fn a_server_only_dotenv_names_does_not_get_the_users_own_key() {
    let (url, keys) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let with_creds = url.replacen("http://", "http://user:hunter2@", 1);
    std::fs::write(
        dir.path().join(".env"),
        format!("MCP_SERVER_URL={with_creds}\n"),
    )
    .unwrap();
    for (env, args) in [
        (&[("MCP_API_KEY", "key-from-env")][..], &["list"][..]),
        (&[], &["--api-key", "key-from-flag", "list"]),
        (&[], &["--bearer", "token-from-flag", "list"]),
        // An empty --server (`--server "$UNSET"`) names nothing.
        (&[], &["--server", "", "--api-key", "key-from-flag", "list"]),
        // A login with the user's own app client (and secret), or own
        // client id: the token would go to that server.
        (
            &[
                ("COGNITO_APP_CLIENT_ID", "users-app"),
                ("COGNITO_APP_CLIENT_SECRET", "users-secret"),
                ("COGNITO_REGION", "us-east-1"),
                ("COGNITO_USER_POOL_ID", "us-east-1_Pool"),
            ],
            &["list"],
        ),
        (&[], &["--client-id", "app", "list"]),
        // A token minted with the user's own client secret.
        (
            &[],
            &[
                "--client-credentials",
                "--client-id",
                "app",
                "--client-secret",
                "app-secret",
                "--issuer",
                "https://issuer.example",
                "list",
            ],
        ),
    ] {
        let out = client(dir.path(), env, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("comes from ./.env but your credential does not"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(
            keys.lock().unwrap().is_empty(),
            "{args:?}: nothing was sent"
        );
    }
    // Named by the user: sent.
    let out = client(
        dir.path(),
        &[],
        &["--server", &url, "--api-key", "key-from-flag", "list"],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(keys.lock().unwrap().first().unwrap(), "key-from-flag");
    // A key in the same .env: its author's to send there.
    keys.lock().unwrap().clear();
    std::fs::write(
        dir.path().join(".env"),
        format!("MCP_SERVER_URL={url}\nMCP_API_KEY=key-from-dotenv\n"),
    )
    .unwrap();
    let out = client(dir.path(), &[], &["list"]).await;
    assert!(!out.status.success());
    assert_eq!(keys.lock().unwrap().first().unwrap(), "key-from-dotenv");
}

/// No API key, bearer token or access token goes to a plain-http server
/// off this machine (anyone on the way could read it) unless the user
/// says `--allow-http`: refused before anything is sent, naming the flag.
#[tokio::test]
async fn a_plain_http_server_off_this_machine_gets_no_credentials_unless_allowed() {
    let (url, keys) = stand_in().await;
    // Not a loopback address, yet on Linux a connection to 0.0.0.0 reaches
    // this machine: the stand-in.
    let off = url.replacen("127.0.0.1", "0.0.0.0", 1);
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--api-key", "key-from-flag", "list"][..],
        &["--bearer", "token-from-flag", "list"],
        // A login, and a machine grant: the access token would go there.
        &["list"],
        &[
            "--client-credentials",
            "--client-id",
            "app",
            "--client-secret",
            "app-secret",
            "--issuer",
            "https://issuer.example",
            "list",
        ],
    ] {
        let out = client(dir.path(), &[("MCP_SERVER_URL", off.as_str())], args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("is plain http off this machine") && stderr.contains("--allow-http"),
            "{args:?}: {stderr}"
        );
        assert!(keys.lock().unwrap().is_empty(), "{args:?}: nothing sent");
    }
    // A bearer token from the environment (out of the process list) is
    // the user's too; one in ./.env is not read at all.
    let out = client(
        dir.path(),
        &[
            ("MCP_SERVER_URL", off.as_str()),
            ("MCP_BEARER_TOKEN", "token-from-env"),
        ],
        &["list"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the bearer token would cross"), "{stderr}");
    std::fs::write(
        dir.path().join(".env"),
        "MCP_BEARER_TOKEN=token-from-dotenv\n",
    )
    .unwrap();
    let out = client(dir.path(), &[("MCP_SERVER_URL", off.as_str())], &["list"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("the bearer token"), "{stderr}");
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    let out = client(
        dir.path(),
        &[("MCP_SERVER_URL", off.as_str())],
        &["--allow-http", "--api-key", "key-from-flag", "list"],
    )
    .await;
    assert!(!out.status.success(), "the stand-in refuses every key");
    assert_eq!(keys.lock().unwrap().first().unwrap(), "key-from-flag");
}

/// `--client-secret` may come from `MCP_CLIENT_SECRET` in the process
/// environment (out of the process list), read only with `--client-id`;
/// never from `./.env`. Seen here by the check a secret needs: its issuer.
#[tokio::test]
async fn a_client_secret_may_come_from_the_environment_not_dotenv() {
    let (url, keys) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--server",
        url.as_str(),
        "--client-credentials",
        "--client-id",
        "app",
        "list",
    ];
    let out = client(dir.path(), &[("MCP_CLIENT_SECRET", "env-secret")], &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--client-secret needs --issuer"),
        "{stderr}"
    );
    assert!(!stderr.contains("env-secret"), "{stderr}");
    // The same in ./.env: not read (a public client, sent on).
    std::fs::write(dir.path().join(".env"), "MCP_CLIENT_SECRET=dotenv-secret\n").unwrap();
    let out = client(dir.path(), &[], &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("needs --issuer"), "{stderr}");
    // And without --client-id it is not read at all (an API key goes on).
    let out = client(
        dir.path(),
        &[("MCP_CLIENT_SECRET", "env-secret")],
        &["--server", &url, "--api-key", "key-from-flag", "list"],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(keys.lock().unwrap().last().unwrap(), "key-from-flag");
}

/// The Cognito app client, its secret and its pool come from one place: a
/// `.env` (a cloned project's) naming a region or pool does not complete
/// an app client from the environment (a region of `evil.example/` sent
/// the user's secret to `cognito-idp.evil.example`), and a region or pool
/// that is not what AWS names is refused, naming the setting.
#[tokio::test]
async fn the_cognito_app_client_and_its_pool_come_from_one_place() {
    let (url, _) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("MCP_SERVER_URL={url}\nCOGNITO_REGION=evil.example/\nCOGNITO_USER_POOL_ID=p\n"),
    )
    .unwrap();
    let env = [
        ("COGNITO_APP_CLIENT_ID", "users-app"),
        ("COGNITO_APP_CLIENT_SECRET", "users-secret"),
    ];
    let out = client(dir.path(), &env, &["list"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("evil.example"), "{stderr}");
    // Said without -v: the user's own app client is not used.
    assert!(
        stderr.contains(
            "COGNITO_APP_CLIENT_ID is exported but COGNITO_REGION / COGNITO_USER_POOL_ID come from ./.env"
        ),
        "{stderr}"
    );
    for (region, pool, refused) in [
        (
            "evil.example/",
            "us-east-1_Pool",
            "COGNITO_REGION (from ./.env): not an AWS region",
        ),
        ("x@127.0.0.1:1/", "p", "COGNITO_REGION (from ./.env)"),
        (
            "us-east-1",
            "us-east-1_P@evil.example",
            "COGNITO_USER_POOL_ID (from ./.env)",
        ),
        (
            "us-east-1",
            "eu-west-1_Pool",
            "COGNITO_USER_POOL_ID (from ./.env)",
        ),
    ] {
        std::fs::write(
            dir.path().join(".env"),
            format!(
                "MCP_SERVER_URL={url}\nCOGNITO_APP_CLIENT_ID=app\nCOGNITO_REGION={region}\n\
                 COGNITO_USER_POOL_ID={pool}\n"
            ),
        )
        .unwrap();
        let out = client(dir.path(), &[], &["list"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(refused), "{region} {pool}: {stderr}");
    }
}

/// `--client-id` and `--client-secret` for a browser login, without
/// `--client-credentials`, leave an `MCP_API_KEY` from the environment in
/// charge as before: the issuer a secret needs is asked for only when the
/// secret is used.
#[tokio::test]
async fn a_browser_clients_secret_does_not_stop_an_api_key() {
    let (url, keys) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let out = client(
        dir.path(),
        &[
            ("MCP_SERVER_URL", url.as_str()),
            ("MCP_API_KEY", "key-from-env"),
        ],
        &[
            "--client-id",
            "app",
            "--client-secret",
            "app-secret",
            "list",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("--issuer"), "{stderr}");
    assert_eq!(keys.lock().unwrap().first().unwrap(), "key-from-env");
}

/// A `.env` that cannot be parsed stops every command with one line that
/// names `.env`, and never repeats the line (it may hold a key).
#[tokio::test]
async fn a_broken_dotenv_is_reported_without_its_line() {
    let (url, keys) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    for broken in ["MCP_API_KEY=\"secret-value\n", "MCP_API_KEY secret-value\n"] {
        std::fs::write(
            dir.path().join(".env"),
            format!("MCP_SERVER_URL={url}\n{broken}"),
        )
        .unwrap();
        for args in [
            &["list"][..],
            &["--server", &url, "--api-key", "k", "list"],
            &["logout"],
            &["conformance", &url],
        ] {
            let out = client(dir.path(), &[], args).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stderr.starts_with("error: .env: "), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(!stderr.contains("secret-value"), "{args:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{args:?}");
        }
    }
    assert!(keys.lock().unwrap().is_empty(), "nothing was sent");
}

/// The client exports every variable it reads (`VARIABLES`, which is also
/// what it merges from the environment and `.env`).
#[test]
fn every_variable_the_client_reads_is_exported() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let missing: Vec<String> = mcp_auth_integration_tests::variable_literals(&src, &[])
        .into_iter()
        .filter(|(name, _)| !mcp_auth_client::VARIABLES.contains(&name.as_str()))
        .map(|(name, file)| format!("{name} ({})", file.display()))
        .collect();
    assert!(missing.is_empty(), "read but not in VARIABLES: {missing:?}");
}

/// With none of `MCP_AUTH_CLIENT_HOME`, `XDG_CONFIG_HOME` and `HOME` set,
/// tokens used to go to `./.config/mcp-auth-client` under whatever
/// directory the client ran in: now every command that would keep or
/// read tokens stops with one line naming the variables to set, and
/// nothing is written there.
#[tokio::test]
async fn no_config_directory_without_home() {
    let (url, keys) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--server", &url, "list"][..],
        &["--server", &url, "logout"],
    ] {
        let cwd = dir.path().to_owned();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-auth-client"));
            for name in mcp_auth_client::VARIABLES {
                cmd.env_remove(name);
            }
            cmd.args(["--no-browser", "--login-timeout", "1"])
                .args(&args)
                .current_dir(&cwd)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for name in ["MCP_AUTH_CLIENT_HOME", "XDG_CONFIG_HOME", "HOME"] {
            assert!(stderr.contains(name), "{stderr}");
        }
        assert!(!dir.path().join(".config").exists(), "{stderr}");
    }
    assert!(keys.lock().unwrap().is_empty(), "nothing was sent");
}
