//! Settings: a `--flag` wins over the process environment, which wins over
//! `.env` in the working directory; an empty value counts as unset.
//!
//! The sources are merged once at startup ([`Settings::load`]); `.env` is
//! read, never exported (the AWS SDK sees only the real environment), and
//! its errors stop the program without repeating a line of it.

use std::{collections::HashMap, path::Path};

use mcp_auth_core::settings::{ConfigError, Lookup, Sources};

use crate::args::{Cli, Command};

/// Every variable the CLI reads (other names in the environment or `.env`
/// are ignored).
pub(crate) const KNOWN: &[&str] = &[
    "COGNITO_REGION",
    "AWS_REGION",
    "COGNITO_POOL_NAME",
    "COGNITO_USER_POOL_ID",
    "COGNITO_DOMAIN_PREFIX",
    "COGNITO_TEST_USER_EMAIL",
    "COGNITO_TEST_USER_PASSWORD",
    "MCP_SERVER_URL",
    "MCP_OAUTH_CALLBACK_URL",
    "COGNITO_RESOURCE_SCOPES",
    // The server's own address: its URL when MCP_SERVER_URL is unset.
    "HOST",
    "PORT",
];

/// The merged settings, by variable name, with where each came from.
#[derive(Debug)]
pub(crate) struct Settings {
    values: HashMap<String, String>,
    origins: HashMap<String, String>,
}

impl Settings {
    /// Merges `cli`'s flags over `env` over the `.env` file at `dotenv` (a
    /// missing file is no error). Each flag stands for the variable its
    /// help names: `--region` for `COGNITO_REGION`, and so on.
    pub(crate) fn load(cli: &Cli, dotenv: &Path, env: &dyn Lookup) -> Result<Self, ConfigError> {
        // (variable, flag, value)
        let mut flags: Vec<(&'static str, &'static str, Option<String>)> = vec![
            ("COGNITO_REGION", "--region", cli.region.clone()),
            ("COGNITO_POOL_NAME", "--pool-name", cli.pool_name.clone()),
        ];
        match &cli.command {
            Command::Setup {
                domain_prefix,
                user_email,
                user_password,
                server_url,
                callback_url,
                ..
            } => flags.extend([
                (
                    "COGNITO_DOMAIN_PREFIX",
                    "--domain-prefix",
                    domain_prefix.clone(),
                ),
                (
                    "COGNITO_TEST_USER_EMAIL",
                    "--user-email",
                    user_email.clone(),
                ),
                (
                    "COGNITO_TEST_USER_PASSWORD",
                    "--user-password",
                    user_password.clone(),
                ),
                ("MCP_SERVER_URL", "--server-url", server_url.clone()),
                (
                    "MCP_OAUTH_CALLBACK_URL",
                    "--callback-url",
                    callback_url.clone(),
                ),
            ]),
            Command::AddResourceServer {
                server_url, scopes, ..
            } => flags.extend([
                ("MCP_SERVER_URL", "--server-url", server_url.clone()),
                ("COGNITO_RESOURCE_SCOPES", "--scopes", scopes.clone()),
            ]),
            Command::Status | Command::Teardown { .. } => {}
        }
        let mut sources = Sources::new(KNOWN).dotenv_file(dotenv).env(env);
        for (name, _, value) in &flags {
            sources = sources.flag(name, value.clone());
        }
        let values = sources.merge()?;
        // The same precedence as the merge: a flag (if not blank), the
        // environment (if not blank), else `.env`.
        let origins = values
            .keys()
            .map(|name| {
                let flag = flags.iter().find(|(n, _, v)| {
                    n == name && v.as_deref().is_some_and(|v| !v.trim().is_empty())
                });
                let from = match flag {
                    Some((_, flag, _)) => (*flag).to_owned(),
                    None if env.get(name).is_some() => "the environment".to_owned(),
                    None => dotenv.display().to_string(),
                };
                (name.clone(), from)
            })
            .collect();
        Ok(Self { values, origins })
    }

    /// The setting `name` (one of [`KNOWN`]), if set and not blank.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        debug_assert!(KNOWN.contains(&name), "{name} is not in KNOWN");
        Lookup::get(&self.values, name)
    }

    /// Where the setting `name` came from, if it is set: its flag
    /// (`--pool-name`), `the environment`, or the `.env` file's path.
    pub(crate) fn origin(&self, name: &str) -> Option<&str> {
        self.get(name)?;
        self.origins.get(name).map(String::as_str)
    }
}

/// `e` for the user, e.g. `.env: syntax error at character 12`: the
/// variable (for `.env` errors, the file) and the message, without naming
/// the file twice when the message already starts with it.
pub(crate) fn describe(e: &ConfigError) -> String {
    if e.message.starts_with(&e.variable) {
        e.message.clone()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mcp-auth-cognito").chain(args.iter().copied()))
            .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "COGNITO_REGION=eu-west-1\nAWS_REGION=eu-west-2\nCOGNITO_POOL_NAME=from-dotenv\n\
             MCP_SERVER_URL=https://dotenv.example/mcp\nCOGNITO_RESOURCE_SCOPES=a,b\n\
             COGNITO_USER_POOL_ID=eu-west-1_Dotenv\nUNRELATED=x\n",
        )
        .unwrap();
        let env = map(&[
            ("COGNITO_POOL_NAME", "from-env"),
            // Blank: does not hide `.env`.
            ("MCP_SERVER_URL", " "),
            ("COGNITO_RESOURCE_SCOPES", "c"),
        ]);
        let s = Settings::load(
            &cli(&[
                "--region",
                "us-east-1",
                "add-resource-server",
                "--scopes",
                "d",
            ]),
            &dotenv,
            &env,
        )
        .unwrap();
        assert_eq!(s.get("COGNITO_REGION").as_deref(), Some("us-east-1"));
        assert_eq!(s.get("AWS_REGION").as_deref(), Some("eu-west-2"));
        assert_eq!(s.get("COGNITO_POOL_NAME").as_deref(), Some("from-env"));
        assert_eq!(
            s.get("MCP_SERVER_URL").as_deref(),
            Some("https://dotenv.example/mcp")
        );
        assert_eq!(s.get("COGNITO_RESOURCE_SCOPES").as_deref(), Some("d"));
        assert_eq!(
            s.get("COGNITO_USER_POOL_ID").as_deref(),
            Some("eu-west-1_Dotenv")
        );
        assert!(!s.values.contains_key("UNRELATED"));
        assert_eq!(s.origin("COGNITO_REGION"), Some("--region"));
        assert_eq!(s.origin("COGNITO_POOL_NAME"), Some("the environment"));
        let shown = dotenv.display().to_string();
        assert_eq!(s.origin("COGNITO_USER_POOL_ID"), Some(shown.as_str()));
        // Blank in the environment: `.env`'s value, and so its origin.
        assert_eq!(s.origin("MCP_SERVER_URL"), Some(shown.as_str()));
        assert_eq!(s.origin("COGNITO_RESOURCE_SCOPES"), Some("--scopes"));
        assert_eq!(s.origin("COGNITO_DOMAIN_PREFIX"), None);

        // Without flags the environment wins; a subcommand's flags only
        // count for it.
        let s = Settings::load(&cli(&["status"]), &dotenv, &env).unwrap();
        assert_eq!(s.get("COGNITO_REGION").as_deref(), Some("eu-west-1"));
        assert_eq!(s.get("COGNITO_RESOURCE_SCOPES").as_deref(), Some("c"));

        let s = Settings::load(
            &cli(&[
                "setup",
                "--domain-prefix",
                "p",
                "--user-email",
                "e@example.com",
                "--user-password",
                "pw",
                "--callback-url",
                "https://mcp.example.com/cb",
            ]),
            &dotenv,
            &env,
        )
        .unwrap();
        assert_eq!(s.get("COGNITO_DOMAIN_PREFIX").as_deref(), Some("p"));
        assert_eq!(
            s.get("MCP_OAUTH_CALLBACK_URL").as_deref(),
            Some("https://mcp.example.com/cb")
        );
        // `setup` reads MCP_SERVER_URL too (for the facade's callback).
        assert_eq!(
            s.get("MCP_SERVER_URL").as_deref(),
            Some("https://dotenv.example/mcp")
        );
        assert_eq!(
            s.get("COGNITO_TEST_USER_EMAIL").as_deref(),
            Some("e@example.com")
        );
        assert_eq!(s.get("COGNITO_TEST_USER_PASSWORD").as_deref(), Some("pw"));
    }

    #[test]
    fn a_missing_dotenv_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(&cli(&["status"]), &dir.path().join(".env"), &map(&[])).unwrap();
        assert_eq!(s.get("COGNITO_REGION"), None);
    }

    #[test]
    fn dotenv_errors_are_reported_without_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "COGNITO_REGION=eu-west-1\nCOGNITO_TEST_USER_PASSWORD=\"s3cret\n",
        )
        .unwrap();
        let e = Settings::load(&cli(&["status"]), &dotenv, &map(&[])).unwrap_err();
        // The file is named (`main` passes `.env`, so users read
        // `error: .env: ...`), its text is not.
        let shown = describe(&e);
        assert!(shown.contains(&dotenv.display().to_string()), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains('\n'),
            "{shown}"
        );
    }

    #[test]
    fn describe_does_not_repeat_the_file_name() {
        let e = ConfigError::new(".env", ".env: syntax error at character 7");
        assert_eq!(describe(&e), ".env: syntax error at character 7");
        let e = ConfigError::new("COGNITO_REGION", "bad");
        assert_eq!(describe(&e), "COGNITO_REGION: bad");
    }
}
