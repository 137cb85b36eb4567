//! `mcp-auth-cognito`: sets up an AWS Cognito user pool for an MCP server and
//! registers the server as a resource server. Uses the AWS SDK's standard
//! configuration (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`).
//!
//! Modules: `args` (the command line), `aws` (SDK helpers), `commands` (the
//! subcommands), `env` (settings: flags, the environment and `.env`).

mod args;
mod aws;
mod commands;
mod env;

use std::{path::Path, process::ExitCode};

use aws_sdk_cognitoidentityprovider::Client;
use clap::Parser;
use mcp_auth_core::settings::ProcessEnv;

use crate::{
    args::{Cli, Command},
    aws::{Given, WantedPool, find_pool},
    env::Settings,
};

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("AWS: {0}")]
    Aws(String),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let settings = Settings::load(&cli, Path::new(".env"), &ProcessEnv)
        .map_err(|e| Error::Usage(env::describe(&e)))?;
    let setting = |name: &str| settings.get(name);
    let region = setting("COGNITO_REGION")
        .or_else(|| setting("AWS_REGION"))
        .ok_or_else(|| Error::Usage("set --region, COGNITO_REGION or AWS_REGION".into()))?;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.clone()))
        .load()
        .await;
    let client = Client::new(&conf);
    let given = |name: &str| {
        setting(name).map(|value| Given {
            value,
            from: settings.origin(name).unwrap_or("settings").to_owned(),
        })
    };
    let wanted = WantedPool {
        name: given("COGNITO_POOL_NAME"),
        id: given("COGNITO_USER_POOL_ID"),
    };
    match cli.command {
        // The subcommands' flags are in `settings` (they win there).
        Command::Setup {
            client_name,
            no_user,
            ..
        } => {
            let facade = commands::FacadeCallback::from_settings(
                setting("MCP_SERVER_URL"),
                setting("MCP_OAUTH_CALLBACK_URL"),
                || {
                    commands::default_server_url(
                        setting("HOST").as_deref(),
                        setting("PORT").as_deref(),
                    )
                },
            )?;
            commands::setup(
                &client,
                &region,
                &wanted,
                &client_name,
                &facade,
                setting("COGNITO_DOMAIN_PREFIX"),
                (!no_user).then(|| {
                    (
                        setting("COGNITO_TEST_USER_EMAIL")
                            .unwrap_or_else(|| "mcp-test-user@example.com".to_owned()),
                        setting("COGNITO_TEST_USER_PASSWORD"),
                    )
                }),
            )
            .await
        }
        Command::AddResourceServer { client_name, .. } => {
            let url = match setting("MCP_SERVER_URL") {
                Some(u) => u,
                None => commands::default_server_url(
                    setting("HOST").as_deref(),
                    setting("PORT").as_deref(),
                )?,
            };
            let scopes: Vec<String> = setting("COGNITO_RESOURCE_SCOPES")
                .unwrap_or_else(|| "tools".to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            commands::check_scope_names(&scopes)?;
            let pool = find_pool(&client, &wanted).await?.ok_or_else(|| {
                Error::Usage(format!(
                    "no user pool named {:?}: run setup first",
                    wanted.name()
                ))
            })?;
            commands::add_resource_server(&client, &pool.id, &client_name, &url, &scopes).await
        }
        Command::Status => commands::status(&client, &region, &wanted).await,
        Command::Teardown { yes } => commands::teardown(&client, &wanted, yes).await,
    }
}
