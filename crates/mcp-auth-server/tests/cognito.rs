//! The `cognito` strategy end to end against moto's Cognito emulator: the
//! real binary, moto-issued tokens, rmcp's client.
//!
//! Ignored by plain `cargo test`; `tests/run-all.sh` installs moto and runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use mcp_auth_integration_tests::Peer;

use aws_sdk_cognitoidentityprovider::{Client, types::AuthFlowType};
use common::{INIT, Server, post};
use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

const REGION: &str = "us-east-1";

#[tokio::test]
#[ignore = "needs moto (tests/run-all.sh installs it)"]
async fn moto_access_tokens_of_the_allowed_client_reach_whoami() {
    let moto = Peer::moto();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.http_url())
        .credentials_provider(aws_sdk_cognitoidentityprovider::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let sdk = Client::new(&conf);
    let pool = sdk
        .create_user_pool()
        .pool_name("mcp")
        .send()
        .await
        .unwrap();
    let pool = pool.user_pool().unwrap().id().unwrap().to_owned();
    let mut clients = Vec::new();
    for name in ["mcp-client", "other-client"] {
        let c = sdk
            .create_user_pool_client()
            .user_pool_id(&pool)
            .client_name(name)
            .send()
            .await
            .unwrap();
        clients.push(
            c.user_pool_client()
                .unwrap()
                .client_id()
                .unwrap()
                .to_owned(),
        );
    }
    sdk.admin_create_user()
        .user_pool_id(&pool)
        .username("carol")
        .message_action(aws_sdk_cognitoidentityprovider::types::MessageActionType::Suppress)
        .send()
        .await
        .unwrap();
    sdk.admin_set_user_password()
        .user_pool_id(&pool)
        .username("carol")
        .password("Test-Passw0rd-123!")
        .permanent(true)
        .send()
        .await
        .unwrap();
    let tokens = |client: String| {
        let (sdk, pool) = (sdk.clone(), pool.clone());
        async move {
            let r = sdk
                .admin_initiate_auth()
                .user_pool_id(pool)
                .client_id(client)
                .auth_flow(AuthFlowType::AdminUserPasswordAuth)
                .auth_parameters("USERNAME", "carol")
                .auth_parameters("PASSWORD", "Test-Passw0rd-123!")
                .send()
                .await
                .unwrap();
            let a = r.authentication_result().unwrap();
            (
                a.access_token().unwrap().to_owned(),
                a.id_token().unwrap().to_owned(),
            )
        }
    };
    let (access, id) = tokens(clients[0].clone()).await;
    let (other_access, _) = tokens(clients[1].clone()).await;

    let jwks = format!("{}/{pool}/.well-known/jwks.json", moto.http_url());
    let s = Server::start(&[
        ("MCP_AUTH_STRATEGY", "cognito"),
        ("COGNITO_REGION", REGION),
        ("COGNITO_USER_POOL_ID", &pool),
        ("COGNITO_APP_CLIENT_ID", &clients[0]),
        ("COGNITO_JWKS_URL", &jwks),
    ]);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(s.url()).auth_header(access),
    );
    let client = ().serve(transport).await.expect("initialize with a moto access token");
    let who = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(who["strategy"], "cognito");
    assert_eq!(who["client_id"], clients[0]);
    assert_eq!(who["claims"]["username"], "carol", "{who}");
    assert_eq!(
        who["issuer"],
        format!("https://cognito-idp.{REGION}.amazonaws.com/{pool}")
    );
    client.cancel().await.unwrap();

    let http = reqwest::Client::new();
    for (token, why) in [(id, "token_use"), (other_access, "app client")] {
        let r = post(&http, &s.url(), INIT)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{why}");
        let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(c.starts_with(r#"Bearer error="invalid_token""#), "{c}");
    }
    let md: serde_json::Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            s.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        md["authorization_servers"][0],
        format!("https://cognito-idp.{REGION}.amazonaws.com/{pool}")
    );
    // Ready: the pool's keys are fetched (a token was verified with them).
    let ready: serde_json::Value = http
        .get(format!("{}/ready", s.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"][0]["name"], "cognito keys", "{ready}");
    assert_eq!(ready["checks"][0]["ok"], true, "{ready}");
}
