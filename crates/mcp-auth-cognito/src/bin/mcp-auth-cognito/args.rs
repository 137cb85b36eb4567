//! The command line: the clap definitions and their help texts.

use clap::{Parser, Subcommand};

/// Sets up AWS Cognito for an MCP server protected by mcp-auth.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// AWS region [env: COGNITO_REGION, then AWS_REGION].
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// Name of the user pool to find or create [env: COGNITO_POOL_NAME; default mcp-auth].
    #[arg(long, global = true)]
    pub(crate) pool_name: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create (or find) the user pool, app client, hosted-UI domain and test
    /// user; register the login facade's callback on the app client; print the
    /// .env lines. Safe to run again.
    Setup {
        /// App client name.
        #[arg(long, default_value = "mcp-auth-client")]
        client_name: String,
        /// Hosted-UI domain prefix [env: COGNITO_DOMAIN_PREFIX; default random].
        #[arg(long)]
        domain_prefix: Option<String>,
        /// Test user's email [env: COGNITO_TEST_USER_EMAIL; default mcp-test-user@example.com].
        #[arg(long)]
        user_email: Option<String>,
        /// Test user's permanent password [env: COGNITO_TEST_USER_PASSWORD; default generated and printed once].
        #[arg(long)]
        user_password: Option<String>,
        /// Do not create a test user.
        #[arg(long)]
        no_user: bool,
        /// The MCP server's URL, whose origin serves the login facade's callback
        /// (<origin>/oauth/callback, registered on the app client) [env: MCP_SERVER_URL;
        /// default the server's own, http://<HOST or 127.0.0.1>:<PORT or 8001>/mcp, 127.0.0.1
        /// for localhost or an unspecified HOST; a host name or PORT=0 needs MCP_SERVER_URL].
        #[arg(long)]
        server_url: Option<String>,
        /// The login facade's callback URL, when not <server origin>/oauth/callback
        /// [env: MCP_OAUTH_CALLBACK_URL].
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// Register MCP_SERVER_URL as a resource server with scopes, and grant
    /// them to the app client. Safe to run again.
    AddResourceServer {
        /// The resource server identifier [env: MCP_SERVER_URL; default the server's own,
        /// http://<HOST or 127.0.0.1>:<PORT or 8001>/mcp; a host name or PORT=0 needs
        /// MCP_SERVER_URL].
        #[arg(long)]
        server_url: Option<String>,
        /// Scope names, comma-separated [env: COGNITO_RESOURCE_SCOPES; default tools]; an app client
        /// granted `admin` gives it to every user who logs in through it.
        #[arg(long)]
        scopes: Option<String>,
        /// App client name.
        #[arg(long, default_value = "mcp-auth-client")]
        client_name: String,
    },
    /// Show what exists.
    Status,
    /// Delete the user pool (with its clients, domain, users) created by setup.
    Teardown {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}
