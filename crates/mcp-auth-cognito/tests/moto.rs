//! Against moto's Cognito emulator (a real HTTP peer on loopback): the admin
//! CLI's setup and resource-server registration, and token verification
//! with moto-issued access and ID tokens.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs moto and runs
//! them. `MOTO_SERVER` / `MOTO_PYTHON` name the emulator and its Python.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use mcp_auth_integration_tests::Peer;

use aws_sdk_cognitoidentityprovider::{
    Client,
    types::{
        AnalyticsConfigurationType, AuthFlowType, FeatureType, MessageActionType,
        PreventUserExistenceErrorTypes, RefreshTokenRotationType, UserStatusType,
    },
};
use mcp_auth_cognito::{CognitoError, CognitoVerifier, CognitoVerifierBuilder, TokenUse};
use mcp_auth_jwt::JwtError;

const REGION: &str = "eu-west-1";
const PASSWORD: &str = "Test-Passw0rd-123!";
const EMAIL: &str = "alice@example.com";

fn cli(moto: &Peer, args: &[&str]) -> (bool, String, String) {
    // An empty directory: the CLI reads `.env` from its working directory.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-auth-cognito-moto");
    std::fs::create_dir_all(&dir).unwrap();
    cli_at(&moto.http_url(), &dir, args)
}

/// Runs the CLI in `dir` (with its `.env`, if any) against `endpoint`.
fn cli_at(endpoint: &str, dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth-cognito"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGION)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn env_value(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing in {stdout}"))
        .to_owned()
}

async fn sdk(moto: &Peer) -> Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.http_url())
        .credentials_provider(aws_sdk_cognitoidentityprovider::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    Client::new(&conf)
}

/// (pool id, client id) after `setup` with a known test user.
fn setup(moto: &Peer, pool: &str) -> (String, String) {
    let (ok, out, err) = cli(
        moto,
        &[
            "--pool-name",
            pool,
            "setup",
            "--user-email",
            EMAIL,
            "--user-password",
            PASSWORD,
        ],
    );
    assert!(ok, "{err}");
    (
        env_value(&out, "COGNITO_USER_POOL_ID"),
        env_value(&out, "COGNITO_APP_CLIENT_ID"),
    )
}

/// (access token, id token) for the test user from `client`.
async fn tokens(sdk: &Client, pool: &str, client: &str) -> (String, String) {
    let r = sdk
        .admin_initiate_auth()
        .user_pool_id(pool)
        .client_id(client)
        .auth_flow(AuthFlowType::AdminUserPasswordAuth)
        .auth_parameters("USERNAME", EMAIL)
        .auth_parameters("PASSWORD", PASSWORD)
        .send()
        .await
        .unwrap();
    let a = r.authentication_result().unwrap();
    (
        a.access_token().unwrap().to_owned(),
        a.id_token().unwrap().to_owned(),
    )
}

fn verifier(
    moto: &Peer,
    pool: &str,
    use_: TokenUse,
    clients: Option<Vec<String>>,
) -> CognitoVerifier {
    CognitoVerifier::builder(REGION, pool)
        .unwrap()
        .jwks_url(
            format!("{}/{pool}/.well-known/jwks.json", moto.http_url())
                .parse()
                .unwrap(),
        )
        .token_use(use_)
        .client_ids(clients)
        .build()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn setup_is_idempotent_and_registers_the_resource_server() {
    let moto = Peer::moto();
    let (ok, first, err) = cli(&moto, &["setup", "--user-password", PASSWORD]);
    assert!(ok, "{err}");
    assert!(err.contains("created user pool"), "{err}");
    let (ok, second, err) = cli(&moto, &["setup"]);
    assert!(ok, "{err}");
    assert!(err.contains("exists"), "{err}");
    for name in [
        "COGNITO_USER_POOL_ID",
        "COGNITO_APP_CLIENT_ID",
        "COGNITO_APP_CLIENT_SECRET",
    ] {
        assert_eq!(env_value(&first, name), env_value(&second, name), "{name}");
    }
    assert!(!err.contains(PASSWORD), "a given password is never printed");
    let sdk = sdk(&moto).await;
    let pools = sdk.list_user_pools().max_results(60).send().await.unwrap();
    let named: Vec<_> = pools
        .user_pools()
        .iter()
        .filter(|p| p.name() == Some("mcp-auth"))
        .collect();
    assert_eq!(named.len(), 1, "one pool after two runs");
    let pool = env_value(&first, "COGNITO_USER_POOL_ID");
    let client = env_value(&first, "COGNITO_APP_CLIENT_ID");
    let c = app_client(&sdk, &pool, &client).await;
    // The example client's loopback callbacks and the server's login
    // facade at the server's default URL.
    assert_eq!(
        c.callback_urls(),
        [
            "http://localhost:3030/callback",
            "http://127.0.0.1:3030/callback",
            "http://127.0.0.1:8001/oauth/callback",
        ]
    );
    assert!(c.client_secret().is_some());
    // The facade's lines: the preset (oauth2 with COGNITO_DOMAIN) and the
    // app client lines it falls back to.
    assert_eq!(env_value(&first, "MCP_AUTH_STRATEGY"), "oauth2");
    let domain = env_value(&first, "COGNITO_DOMAIN");
    assert!(
        domain.starts_with("https://mcp-auth-")
            && domain.ends_with(".auth.eu-west-1.amazoncognito.com"),
        "{domain}"
    );
    assert!(
        !first.contains("MCP_SERVER_URL="),
        "the default is not pinned: {first}"
    );

    // Run again for the server's real URL: its callback is added to the
    // existing client, everything else kept; the URL is printed for the
    // server to derive the same callback.
    let server = "https://mcp.example.com/mcp";
    let (ok, third, err) = cli(&moto, &["setup", "--no-user", "--server-url", server]);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "registered the login facade's callback https://mcp.example.com/oauth/callback"
        ),
        "{err}"
    );
    assert_eq!(env_value(&third, "MCP_SERVER_URL"), server);
    assert_eq!(
        env_value(&third, "COGNITO_APP_CLIENT_SECRET"),
        env_value(&first, "COGNITO_APP_CLIENT_SECRET")
    );
    let again = app_client(&sdk, &pool, &client).await;
    assert_eq!(
        again.callback_urls(),
        [
            "http://localhost:3030/callback",
            "http://127.0.0.1:3030/callback",
            "http://127.0.0.1:8001/oauth/callback",
            "https://mcp.example.com/oauth/callback",
        ]
    );
    assert_eq!(again.allowed_o_auth_scopes(), c.allowed_o_auth_scopes());
    assert_eq!(again.allowed_o_auth_flows(), c.allowed_o_auth_flows());
    assert_eq!(again.explicit_auth_flows(), c.explicit_auth_flows());
    // Once registered, a third run changes nothing.
    let (ok, _, err) = cli(&moto, &["setup", "--no-user", "--server-url", server]);
    assert!(ok && !err.contains("registered"), "{err}");
    // A callback the facade could not serve is refused before any request.
    let (ok, _, err) = cli(
        &moto,
        &[
            "setup",
            "--server-url",
            server,
            "--callback-url",
            "https://elsewhere.example/cb",
        ],
    );
    assert!(
        !ok && err.contains("the server's origin https://mcp.example.com (MCP_SERVER_URL;"),
        "{err}"
    );

    // add-resource-server registers MCP_SERVER_URL, twice without harm.
    let url = "http://127.0.0.1:8001/mcp";
    let mut first = true;
    for _ in 0..2 {
        let (ok, out, err) = cli(
            &moto,
            &[
                "add-resource-server",
                "--server-url",
                url,
                "--scopes",
                "tools,admin",
            ],
        );
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!("COGNITO_REQUIRED_SCOPES={url}/tools")),
            "{out}"
        );
        assert!(
            err.contains("leave") && err.contains("login facade"),
            "{err}"
        );
        // Granting admin is said once, when it is granted.
        assert_eq!(
            err.contains(&format!("can now get {url}/admin")) && err.contains("not per user"),
            first,
            "{err}"
        );
        first = false;
    }
    let rs = sdk
        .describe_resource_server()
        .user_pool_id(&pool)
        .identifier(url)
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = rs
        .resource_server()
        .unwrap()
        .scopes()
        .iter()
        .map(|s| s.scope_name())
        .collect();
    assert_eq!(names, ["tools", "admin"]);
    let c = app_client(&sdk, &pool, &client).await;
    assert!(c.allowed_o_auth_scopes().contains(&format!("{url}/tools")));
    assert_eq!(
        c.callback_urls().len(),
        4,
        "granting scopes kept the client's settings"
    );

    // Adding a scope when Cognito refuses to update the resource server
    // (moto has no UpdateResourceServer): nothing unregistered is granted
    // or printed, and the admin tool is pointed at the pool's admin scope.
    let (ok, out, err) = cli(
        &moto,
        &[
            "add-resource-server",
            "--server-url",
            url,
            "--scopes",
            "tools,admin,deploy",
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("could not add scopes"), "{err}");
    assert!(
        !out.contains("deploy"),
        "an unregistered scope was printed: {out}"
    );
    assert!(
        out.contains(&format!("MCP_TOOL_SCOPES=admin_status={url}/admin")),
        "{out}"
    );
    let c = app_client(&sdk, &pool, &client).await;
    assert!(
        !c.allowed_o_auth_scopes().contains(&format!("{url}/deploy")),
        "an unregistered scope was granted"
    );

    let (ok, out, _) = cli(&moto, &["status"]);
    assert!(ok);
    assert!(out.contains(&pool) && out.contains(url), "{out}");
    let (ok, _, err) = cli(&moto, &["teardown"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, _, err) = cli(&moto, &["teardown", "--yes"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&moto, &["status"]);
    assert!(out.contains("no user pool"), "{out}");
}

/// An app client gets the scopes `add-resource-server` was given, not
/// every scope the resource server has (an attack pass: a client given
/// `tools` also got the `admin` an earlier run registered for another, and
/// its users could ask for it), and an app client name several clients
/// share is refused with their ids (the first one found was used silently).
#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn a_client_gets_only_the_scopes_given_and_shared_names_are_refused() {
    let moto = Peer::moto();
    let url = "http://127.0.0.1:8001/mcp";
    let run = |args: &[&str]| {
        let mut all = vec!["--pool-name", "scopes-pool"];
        all.extend_from_slice(args);
        cli(&moto, &all)
    };
    let (ok, out, err) = run(&["setup", "--no-user"]);
    assert!(ok, "{err}");
    let pool = env_value(&out, "COGNITO_USER_POOL_ID");
    let (ok, out, err) = run(&["setup", "--no-user", "--client-name", "readonly"]);
    assert!(ok, "{err}");
    let readonly = env_value(&out, "COGNITO_APP_CLIENT_ID");
    let (ok, _, err) = run(&[
        "add-resource-server",
        "--server-url",
        url,
        "--scopes",
        "tools,admin",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "add-resource-server",
        "--server-url",
        url,
        "--client-name",
        "readonly",
        "--scopes",
        "tools",
    ]);
    assert!(ok, "{err}");
    // The server's settings are the resource server's, whichever client
    // was granted what (a review: printed from one run's scopes, a run
    // adding one scope named it as the one required).
    assert_eq!(
        env_value(&out, "COGNITO_REQUIRED_SCOPES"),
        format!("{url}/tools")
    );
    assert_eq!(
        env_value(&out, "MCP_OAUTH_SCOPES_SUPPORTED"),
        format!("{url}/tools,{url}/admin")
    );
    assert_eq!(
        env_value(&out, "MCP_TOOL_SCOPES"),
        format!("admin_status={url}/admin")
    );
    assert!(err.contains("also has admin"), "{err}");
    let sdk = sdk(&moto).await;
    let granted = app_client(&sdk, &pool, &readonly)
        .await
        .allowed_o_auth_scopes()
        .to_vec();
    assert!(granted.contains(&format!("{url}/tools")), "{granted:?}");
    assert!(!granted.contains(&format!("{url}/admin")), "{granted:?}");

    // A second client of the same name: neither command picks one.
    let twin = sdk
        .create_user_pool_client()
        .user_pool_id(&pool)
        .client_name("readonly")
        .send()
        .await
        .unwrap()
        .user_pool_client()
        .unwrap()
        .client_id()
        .unwrap()
        .to_owned();
    for args in [
        &["setup", "--no-user", "--client-name", "readonly"][..],
        &[
            "add-resource-server",
            "--server-url",
            url,
            "--client-name",
            "readonly",
            "--scopes",
            "admin",
        ],
    ] {
        let (ok, out, err) = run(args);
        assert!(!ok, "{args:?}: {out}");
        assert!(
            err.contains("2 app clients") && err.contains(&readonly) && err.contains(&twin),
            "{args:?}: {err}"
        );
        assert!(!out.contains("COGNITO_APP_CLIENT_SECRET"), "{out}");
    }
    let granted = app_client(&sdk, &pool, &readonly).await;
    assert!(
        !granted
            .allowed_o_auth_scopes()
            .contains(&format!("{url}/admin")),
        "nothing granted"
    );
}

/// The pool `setup` creates takes no self sign-up and its app client does
/// not say whether a user exists; an open pool found is warned about; a
/// run without a server URL leaves an existing client's callbacks alone;
/// `add-resource-server` registers `tools` only unless asked (an attack
/// pass: the pool let anyone sign up, the facade let every user of it in,
/// and `admin` went by default to the client every user logs in with).
#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn setup_closes_sign_up_and_grants_no_admin_by_default() {
    let moto = Peer::moto();
    let sdk = sdk(&moto).await;
    let run = |args: &[&str]| {
        let mut all = vec!["--pool-name", "closed-pool"];
        all.extend_from_slice(args);
        cli(&moto, &all)
    };
    let server = "https://mcp.example.com/mcp";
    let (ok, out, err) = run(&["setup", "--no-user", "--server-url", server]);
    assert!(ok, "{err}");
    assert!(!err.contains("sign up"), "{err}");
    let pool = env_value(&out, "COGNITO_USER_POOL_ID");
    let client = env_value(&out, "COGNITO_APP_CLIENT_ID");
    let described = sdk
        .describe_user_pool()
        .user_pool_id(&pool)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described
            .user_pool()
            .and_then(|p| p.admin_create_user_config())
            .map(|c| c.allow_admin_create_user_only()),
        Some(true)
    );
    let c = app_client(&sdk, &pool, &client).await;
    assert_eq!(
        c.prevent_user_existence_errors(),
        Some(&PreventUserExistenceErrorTypes::Enabled)
    );
    let callbacks = c.callback_urls().to_vec();
    assert!(
        callbacks.contains(&"https://mcp.example.com/oauth/callback".to_owned()),
        "{callbacks:?}"
    );
    let (ok, out, _) = run(&["status"]);
    assert!(
        ok && out.contains("sign-up     administrators only"),
        "{out}"
    );

    // Without a server URL the default's loopback callback is not added
    // to the client set up for the real server.
    let (ok, _, err) = run(&["setup", "--no-user"]);
    assert!(ok, "{err}");
    assert!(err.contains("left as it is"), "{err}");
    assert_eq!(
        app_client(&sdk, &pool, &client).await.callback_urls(),
        callbacks
    );

    // Only `tools` unless asked: no admin scope, no admin tool line.
    let (ok, out, err) = run(&["add-resource-server", "--server-url", server]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("admin") && !err.contains("admin"),
        "{out}{err}"
    );
    assert_eq!(
        env_value(&out, "MCP_OAUTH_SCOPES_SUPPORTED"),
        format!("{server}/tools")
    );
    assert_eq!(
        app_client(&sdk, &pool, &client)
            .await
            .allowed_o_auth_scopes()
            .iter()
            .filter(|s| s.starts_with(server))
            .collect::<Vec<_>>(),
        [&format!("{server}/tools")]
    );

    // Nothing changes at Cognito for an app client that does not exist,
    // nor for a server URL whose scopes would not survive the printed
    // comma-separated settings (an attack pass: the resource server was
    // registered before the client was found missing).
    let other = "https://other.example/mcp";
    let (ok, _, err) = run(&[
        "add-resource-server",
        "--server-url",
        other,
        "--client-name",
        "nosuch",
    ]);
    assert!(
        !ok && err.contains("no app client named \"nosuch\""),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "add-resource-server",
        "--server-url",
        "https://other.example/a,b",
    ]);
    assert!(!ok && err.contains("no query and no comma"), "{err}");
    let listed = sdk
        .list_resource_servers()
        .user_pool_id(&pool)
        .max_results(50)
        .send()
        .await
        .unwrap();
    let identifiers: Vec<&str> = listed
        .resource_servers()
        .iter()
        .filter_map(|r| r.identifier())
        .collect();
    assert_eq!(identifiers, [server], "{identifiers:?}");

    // A pool someone made with sign-up open (Cognito's default) is used,
    // with a warning, and `status` says so.
    sdk.create_user_pool()
        .pool_name("open-pool")
        .send()
        .await
        .unwrap();
    let (ok, _, err) = cli(&moto, &["--pool-name", "open-pool", "setup", "--no-user"]);
    assert!(ok, "{err}");
    assert!(err.contains("lets anyone sign up"), "{err}");
    let (ok, out, _) = cli(&moto, &["--pool-name", "open-pool", "status"]);
    assert!(ok && out.contains("sign-up     open to anyone"), "{out}");
}

#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn moto_tokens_are_checked_for_use_client_and_expiry() {
    let moto = Peer::moto();
    let (pool, client) = setup(&moto, "verify-pool");
    let sdk = sdk(&moto).await;
    let (access, id) = tokens(&sdk, &pool, &client).await;

    // Access tokens of the allowed client pass and name the user.
    let v = verifier(&moto, &pool, TokenUse::Access, Some(vec![client.clone()]));
    let p = v.verify(&access).await.unwrap();
    assert_eq!(p.strategy, "cognito");
    assert_eq!(p.client_id.as_deref(), Some(client.as_str()));
    assert!(p.claims.contains_key("username"));
    assert_eq!(
        p.issuer.as_deref(),
        Some(mcp_auth_cognito::issuer_for(REGION, &pool).as_str())
    );

    // ID tokens are refused where access tokens are required, and the reverse.
    assert_eq!(
        v.verify(&id).await.unwrap_err(),
        CognitoError::TokenUse("id".into())
    );
    let v_id = verifier(&moto, &pool, TokenUse::Id, Some(vec![client.clone()]));
    let p = v_id.verify(&id).await.unwrap();
    assert_eq!(p.claims["email"], EMAIL);
    assert_eq!(
        v_id.verify(&access).await.unwrap_err(),
        CognitoError::TokenUse("access".into())
    );
    let both = verifier(&moto, &pool, TokenUse::Both, Some(vec![client.clone()]));
    assert!(both.verify(&access).await.is_ok() && both.verify(&id).await.is_ok());

    // Another app client of the same pool is refused.
    let other = sdk
        .create_user_pool_client()
        .user_pool_id(&pool)
        .client_name("other")
        .send()
        .await
        .unwrap();
    let other_id = other
        .user_pool_client()
        .unwrap()
        .client_id()
        .unwrap()
        .to_owned();
    let (other_access, other_id_token) = tokens(&sdk, &pool, &other_id).await;
    assert_eq!(
        v.verify(&other_access).await.unwrap_err(),
        CognitoError::Client
    );
    assert_eq!(
        v_id.verify(&other_id_token).await.unwrap_err(),
        CognitoError::Client
    );
    // ... unless every client is accepted on purpose.
    assert!(
        verifier(&moto, &pool, TokenUse::Access, None)
            .verify(&other_access)
            .await
            .is_ok()
    );

    // Groups and scopes: moto's access tokens carry aws.cognito.signin.user.admin.
    let strict = access_verifier(&moto, &pool, &client)
        .required_groups(["admins"])
        .build()
        .unwrap();
    assert_eq!(
        strict.verify(&access).await.unwrap_err(),
        CognitoError::Group
    );
    // Only Cognito's own group claim counts, as documented: `groups` or
    // `roles` (which Cognito never issues) do not.
    for claim in ["groups", "roles"] {
        let other = resign(&access, &serde_json::json!({ claim: ["admins"] }));
        assert_eq!(
            strict.verify(&other).await.unwrap_err(),
            CognitoError::Group,
            "{claim}"
        );
    }
    let member = resign(&access, &serde_json::json!({"cognito:groups": ["admins"]}));
    assert_eq!(strict.verify(&member).await.unwrap().groups, ["admins"]);
    let scoped = access_verifier(&moto, &pool, &client)
        .required_scopes(["http://127.0.0.1:8001/mcp/tools"])
        .build()
        .unwrap();
    assert!(matches!(
        scoped.verify(&access).await.unwrap_err(),
        CognitoError::Scope(_)
    ));
    // Scopes are an access token's `scope` only: an ID token holds none,
    // whatever a pre-token-generation trigger adds to it (an attack pass:
    // its `scp` passed MCP_OAUTH_REQUIRED_SCOPES and MCP_TOOL_SCOPES), and
    // `scp`, which Cognito never issues, counts for nothing.
    let id_scoped = resign(
        &id,
        &serde_json::json!({"scp": ["mcp:admin"], "scope": "mcp:admin"}),
    );
    let p = both.verify(&id_scoped).await.unwrap();
    assert!(p.scopes.is_empty(), "{:?}", p.scopes);
    let access_scp = resign(&access, &serde_json::json!({"scp": ["mcp:admin"]}));
    assert_eq!(
        both.verify(&access_scp).await.unwrap().scopes,
        ["aws.cognito.signin.user.admin"]
    );
    // Nor for COGNITO_REQUIRED_SCOPES (a review: the check read `scp`).
    let scp_only = resign(
        &access,
        &serde_json::json!({"scp": ["http://127.0.0.1:8001/mcp/tools"]}),
    );
    assert!(matches!(
        scoped.verify(&scp_only).await.unwrap_err(),
        CognitoError::Scope(_)
    ));

    // The audience: Cognito's access tokens carry none unless the pool
    // issues them with resource indicators. Without indicators, a token
    // without `aud` passes and one for another resource of the pool does
    // not (the app client may be shared); with them, `aud` is required.
    const SERVER: &str = "http://127.0.0.1:8001/mcp";
    let audience = |indicators: bool| {
        let b = access_verifier(&moto, &pool, &client).server_resource(SERVER);
        if indicators {
            b.resource_indicator(SERVER)
        } else {
            b
        }
        .build()
        .unwrap()
    };
    let for_us = resign(&access, &serde_json::json!({"aud": SERVER}));
    let for_us_too = resign(
        &access,
        &serde_json::json!({"aud": ["https://b.example/mcp", SERVER]}),
    );
    let for_b = resign(
        &access,
        &serde_json::json!({"aud": "https://b.example/mcp"}),
    );
    let odd = resign(&access, &serde_json::json!({"aud": 7}));
    for indicators in [false, true] {
        let v = audience(indicators);
        assert_eq!(
            v.verify(&access).await.is_ok(),
            !indicators,
            "no aud, indicators {indicators}"
        );
        assert!(v.verify(&for_us).await.is_ok());
        assert!(v.verify(&for_us_too).await.is_ok());
        for other in [&for_b, &odd] {
            assert_eq!(
                v.verify(other).await.unwrap_err(),
                CognitoError::Audience,
                "indicators {indicators}"
            );
        }
    }

    // Expired: the same claims, re-signed by moto's own key with exp in the past.
    let expired = resign_expired(&access);
    assert_eq!(
        v.verify(&expired).await.unwrap_err(),
        CognitoError::Jwt(JwtError::Expired)
    );
    // A tampered token is refused.
    // (One payload character always changes: the 6th, to a different one.)
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let mut payload: Vec<char> = parts[1].chars().collect();
    payload[5] = if payload[5] == 'A' { 'B' } else { 'A' };
    parts[1] = payload.into_iter().collect();
    let forged = parts.join(".");
    assert_ne!(forged, access);
    assert!(v.verify(&forged).await.is_err());
}

/// The ids of the user pools named `name`.
async fn pools_named(sdk: &Client, name: &str) -> Vec<String> {
    let pools = sdk.list_user_pools().max_results(60).send().await.unwrap();
    pools
        .user_pools()
        .iter()
        .filter(|p| p.name() == Some(name))
        .map(|p| p.id().unwrap().to_owned())
        .collect()
}

/// A fresh directory for the CLI to run in (and read `.env` from).
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn the_pool_acted_on_is_the_one_named() {
    let moto = Peer::moto();
    let endpoint = moto.http_url();
    let sdk = sdk(&moto).await;

    // The documented `setup >> .env`: the first pool's id is in `.env` now.
    let first = workdir();
    let (ok, out, err) = cli_at(&endpoint, first.path(), &["setup", "--no-user"]);
    assert!(ok, "{err}");
    std::fs::write(first.path().join(".env"), &out).unwrap();
    let first_id = env_value(&out, "COGNITO_USER_POOL_ID");

    // Another pool named on the command line is not the one in `.env`:
    // refused, naming both, and the first pool is left alone.
    for args in [
        &["--pool-name", "staging", "teardown", "--yes"][..],
        &["--pool-name", "staging", "setup", "--no-user"],
        &["--pool-name", "staging", "status"],
    ] {
        let (ok, _, err) = cli_at(&endpoint, first.path(), args);
        assert!(!ok, "{args:?}: {err}");
        assert!(
            err.contains(&first_id)
                && err.contains("\"mcp-auth\"")
                && err.contains("\"staging\" (from --pool-name)")
                && err.contains("(from .env)"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        pools_named(&sdk, "mcp-auth").await,
        std::slice::from_ref(&first_id)
    );
    assert!(pools_named(&sdk, "staging").await.is_empty());
    // The same name as the pool of that id is no conflict.
    let (ok, out, err) = cli_at(
        &endpoint,
        first.path(),
        &["--pool-name", "mcp-auth", "status"],
    );
    assert!(ok && out.contains(&first_id), "{err}");

    // Elsewhere (no `.env`) the staging pool is created; with only its id
    // given, the CLI shows the pool's own name, not the default one.
    let staging = workdir();
    let (ok, out, err) = cli_at(
        &endpoint,
        staging.path(),
        &["--pool-name", "staging", "setup", "--no-user"],
    );
    assert!(ok && err.contains("created user pool \"staging\""), "{err}");
    let staging_id = env_value(&out, "COGNITO_USER_POOL_ID");
    std::fs::write(
        staging.path().join(".env"),
        format!("COGNITO_USER_POOL_ID={staging_id}\n"),
    )
    .unwrap();
    let (ok, out, err) = cli_at(&endpoint, staging.path(), &["status"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("user pool   {staging_id} (\"staging\")")),
        "{out}"
    );
    let (ok, _, err) = cli_at(&endpoint, staging.path(), &["setup", "--no-user"]);
    assert!(
        ok && err.contains(&format!("user pool \"staging\" exists: {staging_id}")),
        "{err}"
    );

    // An id that names no pool is refused, not replaced by the pool of
    // the (default) name.
    let stale = workdir();
    std::fs::write(
        stale.path().join(".env"),
        "COGNITO_USER_POOL_ID=eu-west-1_Gone\n",
    )
    .unwrap();
    for args in [
        &["status"][..],
        &["teardown", "--yes"],
        &["setup", "--no-user"],
    ] {
        let (ok, out, err) = cli_at(&endpoint, stale.path(), args);
        assert!(!ok, "{args:?}: {out} {err}");
        assert!(
            err.contains("eu-west-1_Gone (from .env) names no user pool in eu-west-1"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        pools_named(&sdk, "mcp-auth").await,
        std::slice::from_ref(&first_id)
    );

    // Any other error looking the id up is reported, not passed over.
    let proxy = Proxy::start(&moto, &["DescribeUserPool"]);
    let (ok, _, err) = cli_at(&proxy.url, first.path(), &["add-resource-server"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "describe user pool {first_id}: refused by the test proxy"
        )),
        "{err}"
    );
    assert!(proxy.exchanges("CreateResourceServer").is_empty());

    // Two pools of the same name: refused, naming both.
    let other = sdk
        .create_user_pool()
        .pool_name("staging")
        .send()
        .await
        .unwrap();
    let other_id = other.user_pool().unwrap().id().unwrap().to_owned();
    let unnamed = workdir();
    for args in [
        &["--pool-name", "staging", "teardown", "--yes"][..],
        &["--pool-name", "staging", "status"],
    ] {
        let (ok, _, err) = cli_at(&endpoint, unnamed.path(), args);
        assert!(!ok, "{args:?}: {err}");
        assert!(
            err.contains("2 user pools are named \"staging\"")
                && err.contains(&staging_id)
                && err.contains(&other_id),
            "{args:?}: {err}"
        );
    }
    assert_eq!(pools_named(&sdk, "staging").await.len(), 2);
    // With the id, the one meant is found (and deleted, by its own name).
    let (ok, _, err) = cli_at(&endpoint, staging.path(), &["teardown", "--yes"]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("deleted user pool {staging_id} (\"staging\")")),
        "{err}"
    );
    assert_eq!(pools_named(&sdk, "staging").await, [other_id]);
    assert_eq!(pools_named(&sdk, "mcp-auth").await, [first_id]);
}

#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn updating_the_app_client_keeps_its_other_settings() {
    let moto = Peer::moto();
    let (pool, client) = setup(&moto, "keep-pool");
    let sdk = sdk(&moto).await;
    // Settings `setup` does not make, as an administrator might have.
    sdk.update_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&client)
        .auth_session_validity(12)
        .enable_propagate_additional_user_context_data(true)
        .refresh_token_rotation(
            RefreshTokenRotationType::builder()
                .feature(FeatureType::Enabled)
                .retry_grace_period_seconds(20)
                .build()
                .unwrap(),
        )
        .analytics_configuration(
            AnalyticsConfigurationType::builder()
                .application_id("pinpoint-app")
                .role_arn("arn:aws:iam::123456789012:role/analytics")
                .external_id("external")
                .user_data_shared(true)
                .build(),
        )
        .send()
        .await
        .unwrap();

    // Moto keeps what an update does not name (Cognito resets it): so
    // look at what the CLI asks for, through a recording proxy.
    let proxy = Proxy::start(&moto, &[]);
    let dir = workdir();
    let runs: [&[&str]; 2] = [
        &["--pool-name", "keep-pool", "add-resource-server"],
        &[
            "--pool-name",
            "keep-pool",
            "setup",
            "--no-user",
            "--server-url",
            "https://other.example/mcp",
        ],
    ];
    for args in runs {
        let (ok, _, err) = cli_at(&proxy.url, dir.path(), args);
        assert!(ok, "{args:?}: {err}");
        let described = proxy
            .exchanges("DescribeUserPoolClient")
            .pop()
            .unwrap()
            .response["UserPoolClient"]
            .clone();
        let updates = proxy.exchanges("UpdateUserPoolClient");
        assert_eq!(updates.len(), 1, "{args:?}");
        let update = &updates[0].request;
        for (k, v) in described.as_object().unwrap() {
            // Not settings (or not the update's), or what the run changes.
            if [
                "ClientSecret",
                "CreationDate",
                "LastModifiedDate",
                "AllowedOAuthScopes",
                "CallbackURLs",
            ]
            .contains(&k.as_str())
            {
                continue;
            }
            assert_eq!(update.get(k), Some(v), "{args:?}: {k} in {update}");
        }
        for k in [
            "AuthSessionValidity",
            "RefreshTokenRotation",
            "EnablePropagateAdditionalUserContextData",
            "AnalyticsConfiguration",
        ] {
            assert!(described.get(k).is_some(), "moto returns {k}: {described}");
        }
        proxy.clear();
    }
    let c = app_client(&sdk, &pool, &client).await;
    assert_eq!(c.auth_session_validity(), Some(12));
    assert_eq!(
        c.refresh_token_rotation().map(|r| r.feature()),
        Some(&FeatureType::Enabled)
    );
    assert!(
        c.callback_urls()
            .contains(&"https://other.example/oauth/callback".to_owned())
    );
}

#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn a_test_user_is_left_only_with_a_password() {
    let moto = Peer::moto();
    let sdk = sdk(&moto).await;
    let dir = workdir();
    let endpoint = moto.http_url();
    let setup_user = |email: &str, password: Option<&str>| {
        let mut args = vec!["--pool-name", "users", "setup", "--user-email", email];
        if let Some(p) = password {
            args.extend(["--user-password", p]);
        }
        cli_at(&endpoint, dir.path(), &args)
    };
    let status = |pool: String, email: &'static str| {
        let sdk = sdk.clone();
        async move {
            match sdk
                .admin_get_user()
                .user_pool_id(pool)
                .username(email)
                .send()
                .await
            {
                Ok(u) => Some(u.user_status().unwrap().clone()),
                Err(e) => {
                    assert!(e.into_service_error().is_user_not_found_exception());
                    None
                }
            }
        }
    };

    // A password the pool's policy refuses: reported, and the user it was
    // for is not kept.
    let (ok, _, err) = setup_user(EMAIL, Some("short"));
    assert!(!ok, "{err}");
    assert!(
        err.contains("set the test user's password")
            && err.contains("password policy")
            && err.contains("not kept"),
        "{err}"
    );
    assert!(!err.contains("short"), "{err}");
    let pool = pools_named(&sdk, "users").await.pop().unwrap();
    assert_eq!(status(pool.clone(), EMAIL).await, None);
    // So the next run creates it, with its password.
    let (ok, out, err) = setup_user(EMAIL, Some(PASSWORD));
    assert!(ok && err.contains("created test user"), "{err}");
    assert_eq!(
        status(pool.clone(), EMAIL).await,
        Some(UserStatusType::Confirmed)
    );
    tokens(&sdk, &pool, &env_value(&out, "COGNITO_APP_CLIENT_ID")).await;

    // A user waiting for its first password (created elsewhere, or left
    // by an earlier version): without a password it is named, not passed
    // over as fine; with one, it gets it.
    const WAITING: &str = "waiting@example.com";
    sdk.admin_create_user()
        .user_pool_id(&pool)
        .username(WAITING)
        .message_action(MessageActionType::Suppress)
        .send()
        .await
        .unwrap();
    let (ok, _, err) = setup_user(WAITING, None);
    assert!(ok, "{err}");
    assert!(
        err.contains("no permanent password") && !err.contains("password (shown only now)"),
        "{err}"
    );
    assert_eq!(
        status(pool.clone(), WAITING).await,
        Some(UserStatusType::ForceChangePassword)
    );
    let (ok, _, err) = setup_user(WAITING, Some("short"));
    assert!(!ok && err.contains("password policy"), "{err}");
    let (ok, _, err) = setup_user(WAITING, Some(PASSWORD));
    assert!(ok && err.contains("set its permanent password"), "{err}");
    assert_eq!(
        status(pool.clone(), WAITING).await,
        Some(UserStatusType::Confirmed)
    );
    // A user with its password keeps it.
    let (ok, _, err) = setup_user(WAITING, Some("Other-Passw0rd-456!"));
    assert!(ok && err.contains("its password is unchanged"), "{err}");
}

/// A request to moto through [`Proxy`]: its operation, and the JSON of the
/// request and the response.
#[derive(Debug, Clone)]
struct Exchange {
    operation: String,
    request: serde_json::Value,
    response: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Exchange>>>;

/// A loopback proxy in front of moto that records each request, and
/// refuses the operations it is told to (as Cognito does a caller not
/// allowed to call them).
struct Proxy {
    url: String,
    log: Log,
}

impl Proxy {
    fn start(moto: &Peer, refuse: &'static [&'static str]) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Log::default();
        let state = (moto.http_url(), log.clone(), refuse);
        // Its own thread and runtime: the tests block theirs on the CLI.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(forward).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Proxy { url, log }
    }

    /// The exchanges of `operation` so far.
    fn exchanges(&self, operation: &str) -> Vec<Exchange> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.operation == operation)
            .cloned()
            .collect()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn forward(
    axum::extract::State((upstream, log, refuse)): axum::extract::State<(
        String,
        Log,
        &'static [&'static str],
    )>,
    uri: http::Uri,
    mut headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    let request = serde_json::from_slice(&body).unwrap_or_default();
    let json = |status: http::StatusCode, body: axum::body::Bytes| {
        (
            status,
            [(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            body,
        )
            .into_response()
    };
    if refuse.contains(&operation.as_str()) {
        let response = serde_json::json!({
            "__type": "NotAuthorizedException",
            "message": "refused by the test proxy",
        });
        let bytes = axum::body::Bytes::from(response.to_string());
        log.lock().unwrap().push(Exchange {
            operation,
            request,
            response,
        });
        return json(http::StatusCode::BAD_REQUEST, bytes);
    }
    headers.remove(http::header::HOST);
    headers.remove(http::header::CONTENT_LENGTH);
    let answer = reqwest::Client::new()
        .post(format!("{upstream}{}", uri.path()))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let bytes = answer.bytes().await.unwrap();
    log.lock().unwrap().push(Exchange {
        operation,
        request,
        response: serde_json::from_slice(&bytes).unwrap_or_default(),
    });
    json(status, bytes)
}

/// The app client `client` of `pool`, as Cognito describes it.
async fn app_client(
    sdk: &Client,
    pool: &str,
    client: &str,
) -> aws_sdk_cognitoidentityprovider::types::UserPoolClientType {
    sdk.describe_user_pool_client()
        .user_pool_id(pool)
        .client_id(client)
        .send()
        .await
        .unwrap()
        .user_pool_client()
        .unwrap()
        .clone()
}

/// A builder for access tokens of `client` from `pool`, with moto's keys.
fn access_verifier(moto: &Peer, pool: &str, client: &str) -> CognitoVerifierBuilder {
    CognitoVerifier::builder(REGION, pool)
        .unwrap()
        .jwks_url(
            format!("{}/{pool}/.well-known/jwks.json", moto.http_url())
                .parse()
                .unwrap(),
        )
        .token_use(TokenUse::Access)
        .client_ids(Some(vec![client.to_owned()]))
}

/// Re-signs `token`'s claims with moto's signing key, expired an hour ago.
fn resign_expired(token: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    resign(
        token,
        &serde_json::json!({"iat": now - 7200, "exp": now - 3600}),
    )
}

/// `token`'s claims with `changes` merged in, re-signed by moto's own
/// (fixed, published) key: tokens moto cannot mint itself.
fn resign(token: &str, changes: &serde_json::Value) -> String {
    let python = std::env::var("MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import base64, gzip, json, os, sys
import moto
from joserfc import jwk, jwt
path = os.path.join(os.path.dirname(moto.__file__), "cognitoidp/resources/jwks-private.json.gz")
key = jwk.RSAKey.import_key(json.load(gzip.open(path)))
payload = sys.argv[1].split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
claims.update(json.loads(sys.argv[2]))
print(jwt.encode({"alg": "RS256", "kid": "dummy", "typ": "JWT"}, claims, key))
"#;
    let out = Command::new(python)
        .args(["-c", script, token, &changes.to_string()])
        .output()
        .expect("python with moto");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
