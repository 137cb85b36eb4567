//! Against moto's Cognito emulator (a real HTTP peer on loopback): the admin
//! CLI's setup and resource-server registration, and token verification
//! with moto-issued access and ID tokens.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs moto and runs
//! them. `MOTO_SERVER` / `MOTO_PYTHON` name the emulator and its Python.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use mcp_auth_integration_tests::Peer;

use aws_sdk_cognitoidentityprovider::{Client, types::AuthFlowType};
use mcp_auth_cognito::{CognitoError, CognitoVerifier, TokenUse};
use mcp_auth_jwt::JwtError;

const REGION: &str = "eu-west-1";
const PASSWORD: &str = "Test-Passw0rd-123!";
const EMAIL: &str = "alice@example.com";

fn cli(moto: &Peer, args: &[&str]) -> (bool, String, String) {
    // An empty directory: the CLI reads `.env` from its working directory.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-auth-cognito-moto");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth-cognito"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("AWS_ENDPOINT_URL", moto.http_url())
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
    let c = sdk
        .describe_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&client)
        .send()
        .await
        .unwrap();
    let c = c.user_pool_client().unwrap();
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
    let again = sdk
        .describe_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&client)
        .send()
        .await
        .unwrap();
    let again = again.user_pool_client().unwrap();
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
    assert!(!ok && err.contains("MCP_SERVER_URL's origin"), "{err}");

    // add-resource-server registers MCP_SERVER_URL, twice without harm.
    let url = "http://127.0.0.1:8001/mcp";
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
    let c = sdk
        .describe_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&client)
        .send()
        .await
        .unwrap();
    let c = c.user_pool_client().unwrap();
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
    let c = sdk
        .describe_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&client)
        .send()
        .await
        .unwrap();
    assert!(
        !c.user_pool_client()
            .unwrap()
            .allowed_o_auth_scopes()
            .contains(&format!("{url}/deploy")),
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
    let strict = CognitoVerifier::builder(REGION, &pool)
        .unwrap()
        .jwks_url(
            format!("{}/{pool}/.well-known/jwks.json", moto.http_url())
                .parse()
                .unwrap(),
        )
        .token_use(TokenUse::Access)
        .client_ids(Some(vec![client.clone()]))
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
    let scoped = CognitoVerifier::builder(REGION, &pool)
        .unwrap()
        .jwks_url(
            format!("{}/{pool}/.well-known/jwks.json", moto.http_url())
                .parse()
                .unwrap(),
        )
        .token_use(TokenUse::Access)
        .client_ids(Some(vec![client.clone()]))
        .required_scopes(["http://127.0.0.1:8001/mcp/tools"])
        .build()
        .unwrap();
    assert!(matches!(
        scoped.verify(&access).await.unwrap_err(),
        CognitoError::Scope(_)
    ));

    // The audience: Cognito's access tokens carry none unless the pool
    // issues them with resource indicators. Without indicators, a token
    // without `aud` passes and one for another resource of the pool does
    // not (the app client may be shared); with them, `aud` is required.
    const SERVER: &str = "http://127.0.0.1:8001/mcp";
    let audience = |indicators: bool| {
        let b = CognitoVerifier::builder(REGION, &pool)
            .unwrap()
            .jwks_url(
                format!("{}/{pool}/.well-known/jwks.json", moto.http_url())
                    .parse()
                    .unwrap(),
            )
            .token_use(TokenUse::Access)
            .client_ids(Some(vec![client.clone()]))
            .server_resource(SERVER);
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
