//! The subcommands: `setup`, `add-resource-server`, `status`, `teardown`,
//! with the helpers only they use (test-user password, warnings).

use std::io::{BufRead, IsTerminal, Write};

use aws_sdk_cognitoidentityprovider::{
    Client,
    types::{
        AdminCreateUserConfigType, AttributeType, ExplicitAuthFlowsType, MessageActionType,
        OAuthFlowType, PasswordPolicyType, PreventUserExistenceErrorTypes, ResourceServerScopeType,
        UserPoolClientType, UserPoolPolicyType, UserPoolType, UserStatusType,
        UsernameAttributeType, VerifiedAttributeType,
    },
};

use crate::{
    Error,
    aws::{Pool, WantedPool, aws, find_client, find_pool},
};

const CALLBACKS: [&str; 2] = [
    "http://localhost:3030/callback",
    "http://127.0.0.1:3030/callback",
];

/// The server's URL when `MCP_SERVER_URL` is unset, as the server derives
/// it from `HOST` and `PORT` (read as the server reads them):
/// `http://<host>:<port>/mcp`, this machine's loopback address for
/// `localhost` or an unspecified host. Port 0 (a port the system picks)
/// cannot be known here: refused, pointing at `MCP_SERVER_URL`.
pub(crate) fn default_server_url(host: Option<&str>, port: Option<&str>) -> Result<String, Error> {
    let host = host.map(str::trim).unwrap_or("127.0.0.1");
    let host = mcp_auth_core::settings::bind_host(host).ok_or_else(|| {
        Error::Usage(format!(
            "HOST {host:?} is not an IP address (the server binds one): set MCP_SERVER_URL, or HOST as the server has it"
        ))
    })?;
    let port = match port.map(str::trim) {
        None => 8001,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            Error::Usage(format!(
                "PORT {p:?} does not name the server's port: set MCP_SERVER_URL to the server's URL"
            ))
        })?,
    };
    Ok(mcp_auth_core::settings::local_server_url(host, port))
}

/// Where Cognito sends users back to the login facade of the MCP server
/// (`MCP_AUTH_STRATEGY=oauth2` with `COGNITO_DOMAIN`): registered on the
/// app client next to the example client's loopback callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FacadeCallback {
    /// The callback URL.
    pub(crate) url: String,
    /// `MCP_SERVER_URL`, when given: printed, so the server derives the
    /// same callback.
    pub(crate) server_url: Option<String>,
    /// Whether `MCP_OAUTH_CALLBACK_URL` named it: printed, so the server
    /// serves it.
    pub(crate) explicit: bool,
}

impl FacadeCallback {
    /// Whether the URL came from a setting, not the server's default: only
    /// then is it added to an app client that exists (a run without
    /// `--server-url` must not add the default's loopback callback to a
    /// client set up for the real server).
    pub(crate) fn given(&self) -> bool {
        self.server_url.is_some() || self.explicit
    }
}

impl FacadeCallback {
    /// `MCP_OAUTH_CALLBACK_URL` when set, else `<origin of MCP_SERVER_URL
    /// (or the server's default)>/oauth/callback`, as the facade itself
    /// derives it. Both must be http(s); the callback must be on the
    /// server's origin (the facade serves it there).
    pub(crate) fn from_settings(
        server_url: Option<String>,
        callback: Option<String>,
        default_server_url: impl FnOnce() -> Result<String, Error>,
    ) -> Result<Self, Error> {
        // The default is made only when needed (a review: a HOST the
        // default cannot use refused a setup that named its server URL).
        let server = match &server_url {
            Some(u) => http_url(u, "MCP_SERVER_URL")?,
            None => http_url(&default_server_url()?, "MCP_SERVER_URL")?,
        };
        let url = match &callback {
            Some(c) => {
                let u = http_url(c, "MCP_OAUTH_CALLBACK_URL")?;
                // The server's default URL too when none is named: the
                // facade refuses a callback off its origin either way (an
                // attack pass: any origin was registered at Cognito).
                if u.origin() != server.origin() {
                    return Err(Error::Usage(format!(
                        "MCP_OAUTH_CALLBACK_URL must be on the server's origin {} (MCP_SERVER_URL{}; the server's login facade serves it there)",
                        server.origin().ascii_serialization(),
                        if server_url.is_some() {
                            ""
                        } else {
                            "'s default"
                        }
                    )));
                }
                u
            }
            None => {
                let mut u = server.clone();
                u.set_path("/oauth/callback");
                u.set_query(None);
                u.set_fragment(None);
                u
            }
        };
        Ok(Self {
            url: url.to_string(),
            server_url,
            explicit: callback.is_some(),
        })
    }
}

/// An `UpdateUserPoolClient` request that keeps every setting of `app`:
/// the API resets every field it is not given, so each one it accepts is
/// copied from `app` (as `DescribeUserPoolClient` returned it). Callers
/// override what they change.
fn keep_client(
    client: &Client,
    pool: &str,
    app: &UserPoolClientType,
) -> aws_sdk_cognitoidentityprovider::operation::update_user_pool_client::builders::UpdateUserPoolClientFluentBuilder
{
    let some = |v: &[String]| Some(v.to_vec()).filter(|v| !v.is_empty());
    client
        .update_user_pool_client()
        .user_pool_id(pool)
        .client_id(app.client_id().unwrap_or_default())
        .set_client_name(app.client_name().map(str::to_owned))
        .set_refresh_token_validity(Some(app.refresh_token_validity()))
        .set_access_token_validity(app.access_token_validity())
        .set_id_token_validity(app.id_token_validity())
        .set_token_validity_units(app.token_validity_units().cloned())
        .set_read_attributes(some(app.read_attributes()))
        .set_write_attributes(some(app.write_attributes()))
        .set_explicit_auth_flows(Some(app.explicit_auth_flows().to_vec()).filter(|v| !v.is_empty()))
        .set_supported_identity_providers(some(app.supported_identity_providers()))
        .set_callback_urls(some(app.callback_urls()))
        .set_logout_urls(some(app.logout_urls()))
        .set_default_redirect_uri(app.default_redirect_uri().map(str::to_owned))
        .set_allowed_o_auth_flows(
            Some(app.allowed_o_auth_flows().to_vec()).filter(|v| !v.is_empty()),
        )
        .set_allowed_o_auth_scopes(some(app.allowed_o_auth_scopes()))
        .set_allowed_o_auth_flows_user_pool_client(app.allowed_o_auth_flows_user_pool_client())
        .set_prevent_user_existence_errors(app.prevent_user_existence_errors().cloned())
        .set_enable_token_revocation(app.enable_token_revocation())
        .set_enable_propagate_additional_user_context_data(
            app.enable_propagate_additional_user_context_data(),
        )
        .set_auth_session_validity(app.auth_session_validity())
        .set_refresh_token_rotation(app.refresh_token_rotation().cloned())
        .set_analytics_configuration(app.analytics_configuration().cloned())
}

fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Usage(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A password Cognito's default policy accepts: upper, lower, digit, symbol.
fn generate_password() -> Result<String, Error> {
    Ok(format!("Mcp-{}-a1!", random_hex(12)?))
}

pub(crate) async fn setup(
    client: &Client,
    region: &str,
    wanted: &WantedPool,
    client_name: &str,
    facade: &FacadeCallback,
    domain_prefix: Option<String>,
    user: Option<(String, Option<String>)>,
) -> Result<(), Error> {
    let pool_name = wanted.name();
    let pool = match find_pool(client, wanted).await? {
        Some(found) => {
            eprintln!("user pool {:?} exists: {}", found.name, found.id);
            found.id
        }
        None => {
            let policy = PasswordPolicyType::builder()
                .minimum_length(12)
                .require_uppercase(true)
                .require_lowercase(true)
                .require_numbers(true)
                .require_symbols(true)
                .temporary_password_validity_days(7)
                .build();
            let created = client
                .create_user_pool()
                .pool_name(pool_name)
                .username_attributes(UsernameAttributeType::Email)
                .auto_verified_attributes(VerifiedAttributeType::Email)
                // Users are created by an administrator only: with sign-up
                // open (Cognito's default) anyone who knows the app client's
                // id, which is public, makes an account, and the server's
                // login facade lets every user of the pool in.
                .admin_create_user_config(
                    AdminCreateUserConfigType::builder()
                        .allow_admin_create_user_only(true)
                        .build(),
                )
                .policies(
                    UserPoolPolicyType::builder()
                        .password_policy(policy)
                        .build(),
                )
                .send()
                .await
                .map_err(aws("create user pool"))?;
            let id = created
                .user_pool()
                .and_then(|p| p.id())
                .ok_or_else(|| Error::Aws("create user pool returned no id".into()))?
                .to_owned();
            eprintln!("created user pool {pool_name:?}: {id}");
            id
        }
    };

    let app = match find_client(client, &pool, client_name).await? {
        Some(c) if c.callback_urls().contains(&facade.url) => {
            eprintln!(
                "app client {client_name:?} exists: {}",
                c.client_id().unwrap_or_default()
            );
            c
        }
        Some(c) if !facade.given() => {
            warn(&format!(
                "app client {client_name:?} has no callback {} (the server's default URL); left as it is: pass --server-url to register the login facade's callback for the server's URL",
                facade.url
            ));
            c
        }
        Some(c) => {
            // An app client from an earlier run (or another server URL):
            // add the facade's callback, keep everything else.
            let mut callbacks = c.callback_urls().to_vec();
            callbacks.push(facade.url.clone());
            let updated = keep_client(client, &pool, &c)
                .set_callback_urls(Some(callbacks))
                .send()
                .await
                .map_err(aws("register the login facade's callback"))?;
            eprintln!(
                "app client {client_name:?} exists: {}; registered the login facade's callback {}",
                c.client_id().unwrap_or_default(),
                facade.url
            );
            updated.user_pool_client().cloned().unwrap_or(c)
        }
        None => {
            let created = client
                .create_user_pool_client()
                .user_pool_id(&pool)
                .client_name(client_name)
                .generate_secret(true)
                .allowed_o_auth_flows(OAuthFlowType::Code)
                .allowed_o_auth_flows_user_pool_client(true)
                .allowed_o_auth_scopes("openid")
                .allowed_o_auth_scopes("email")
                .allowed_o_auth_scopes("profile")
                .callback_urls(CALLBACKS[0])
                .callback_urls(CALLBACKS[1])
                // The MCP server's login facade (MCP_AUTH_STRATEGY=oauth2).
                .callback_urls(&facade.url)
                .supported_identity_providers("COGNITO")
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserSrpAuth)
                .refresh_token_validity(30)
                // Sign-in and password-reset errors do not tell whether a
                // user exists.
                .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
                .send()
                .await
                .map_err(aws("create app client"))?;
            let c = created
                .user_pool_client()
                .cloned()
                .ok_or_else(|| Error::Aws("create app client returned nothing".into()))?;
            eprintln!(
                "created app client {client_name:?}: {} (callbacks: {}, {} for the example client; {} for the server's login facade)",
                c.client_id().unwrap_or_default(),
                CALLBACKS[0],
                CALLBACKS[1],
                facade.url
            );
            c
        }
    };
    let client_id = app.client_id().unwrap_or_default().to_owned();

    let described = client
        .describe_user_pool()
        .user_pool_id(&pool)
        .send()
        .await
        .map_err(aws("describe user pool"))?;
    if !admin_only(described.user_pool()) {
        warn(&format!(
            "user pool {pool} lets anyone sign up (AllowAdminCreateUserOnly is off): whoever knows the app client's id can make an account, and the server's login facade lets every user of the pool in; turn self-registration off in the pool's sign-up settings unless that is meant"
        ));
    }
    let mut domain = described
        .user_pool()
        .and_then(|p| p.domain())
        .map(str::to_owned);
    if domain.is_none() {
        let prefix = match domain_prefix {
            Some(p) => p,
            None => format!("mcp-auth-{}", random_hex(4)?),
        };
        match client
            .create_user_pool_domain()
            .user_pool_id(&pool)
            .domain(&prefix)
            .managed_login_version(2)
            .send()
            .await
        {
            Ok(_) => {
                eprintln!("created hosted-UI domain {prefix}");
                domain = Some(prefix);
            }
            Err(e) => warn(&format!(
                "could not create the hosted-UI domain {prefix:?} (continuing): {}",
                aws::<_>("create domain")(e)
            )),
        }
    }
    if domain.is_some() {
        // Managed Login v2 needs a branding style for the client; an existing
        // one (second run) or an emulator without the API is fine.
        if let Err(e) = client
            .create_managed_login_branding()
            .user_pool_id(&pool)
            .client_id(&client_id)
            .use_cognito_provided_values(true)
            .send()
            .await
        {
            let text = format!("{e:?}");
            if !text.contains("ManagedLoginBrandingExists") {
                warn("could not create the Managed Login branding (continuing)");
            }
        }
    }

    if let Some((email, password)) = user {
        ensure_user(client, &pool, &email, password).await?;
    }

    println!("COGNITO_REGION={region}");
    println!("COGNITO_USER_POOL_ID={pool}");
    println!("COGNITO_APP_CLIENT_ID={client_id}");
    if let Some(secret) = app.client_secret() {
        println!("COGNITO_APP_CLIENT_SECRET={secret}");
    }
    match domain {
        Some(d) => {
            println!("COGNITO_DOMAIN=https://{d}.auth.{region}.amazoncognito.com");
            // The login facade: with these, any MCP client logs in through
            // the hosted UI (docs/COGNITO.md).
            println!("MCP_AUTH_STRATEGY=oauth2");
            if let Some(u) = &facade.server_url {
                println!("MCP_SERVER_URL={u}");
            }
            if facade.explicit {
                println!("MCP_OAUTH_CALLBACK_URL={}", facade.url);
            }
        }
        None => warn(
            "no hosted-UI domain: the server's login facade (MCP_AUTH_STRATEGY=oauth2 with COGNITO_DOMAIN) needs one; run setup again with another --domain-prefix",
        ),
    }
    Ok(())
}

/// Whether only administrators create the pool's users (no self sign-up).
fn admin_only(pool: Option<&UserPoolType>) -> bool {
    pool.and_then(|p| p.admin_create_user_config())
        .is_some_and(|c| c.allow_admin_create_user_only())
}

/// Creates the test user `email` with a permanent `password` (generated
/// and printed once when `None`). An existing user is kept as it is, but
/// one still waiting for its first password (`FORCE_CHANGE_PASSWORD`: no
/// one can log in as it) gets `password`, if given. A user this run
/// created but could not give its password is deleted again.
async fn ensure_user(
    client: &Client,
    pool: &str,
    email: &str,
    password: Option<String>,
) -> Result<(), Error> {
    match client
        .admin_get_user()
        .user_pool_id(pool)
        .username(email)
        .send()
        .await
    {
        Ok(user) => {
            let waiting = user.user_status() == Some(&UserStatusType::ForceChangePassword);
            match password {
                Some(password) if waiting => {
                    set_password(client, pool, email, &password)
                        .await
                        .map_err(aws("set the test user's password"))?;
                    eprintln!("test user {email} exists; set its permanent password");
                }
                None if waiting => warn(&format!(
                    "test user {email} exists but has no permanent password (FORCE_CHANGE_PASSWORD): run setup again with --user-password to set one"
                )),
                _ => eprintln!("test user {email} exists (its password is unchanged)"),
            }
            return Ok(());
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_user_not_found_exception()) => {}
        Err(e) => return Err(aws("look up the test user")(e)),
    }
    let (password, generated) = match password {
        Some(p) => (p, false),
        None => (generate_password()?, true),
    };
    client
        .admin_create_user()
        .user_pool_id(pool)
        .username(email)
        .message_action(MessageActionType::Suppress)
        .user_attributes(
            AttributeType::builder()
                .name("email")
                .value(email)
                .build()
                .map_err(aws("user attribute"))?,
        )
        .user_attributes(
            AttributeType::builder()
                .name("email_verified")
                .value("true")
                .build()
                .map_err(aws("user attribute"))?,
        )
        .send()
        .await
        .map_err(aws("create test user"))?;
    if let Err(e) = set_password(client, pool, email, &password).await {
        let (Error::Aws(why) | Error::Usage(why)) = aws("set the test user's password")(e);
        // Without its password no one could log in as it, and a rerun
        // would find it and leave it so.
        return Err(
            match client
                .admin_delete_user()
                .user_pool_id(pool)
                .username(email)
                .send()
                .await
            {
                Ok(_) => Error::Aws(format!("{why} (the test user {email} was not kept)")),
                Err(d) => Error::Aws(format!(
                    "{why}; the test user {email} was created without it and could not be deleted ({}): delete it, or run setup again with a valid --user-password",
                    aws::<_>("delete test user")(d)
                )),
            },
        );
    }
    eprintln!("created test user {email}");
    if generated {
        eprintln!("  password (shown only now): {password}");
    }
    Ok(())
}

/// Sets `email`'s permanent password.
async fn set_password(
    client: &Client,
    pool: &str,
    email: &str,
    password: &str,
) -> Result<
    (),
    aws_sdk_cognitoidentityprovider::error::SdkError<
        aws_sdk_cognitoidentityprovider::operation::admin_set_user_password::AdminSetUserPasswordError,
    >,
>{
    client
        .admin_set_user_password()
        .user_pool_id(pool)
        .username(email)
        .password(password)
        .permanent(true)
        .send()
        .await
        .map(|_| ())
}

/// `value` as the http(s) URL the setting `var` holds. Refused without
/// repeating the value: whitespace or control characters (the URL parser
/// drops tabs and newlines, while the text as given is printed into `.env`
/// lines: an attack pass added a line `MCP_AUTH_STRATEGY=none`), a user
/// name or password (printed, and registered at Cognito); and a fragment.
fn http_url(value: &str, var: &str) -> Result<url::Url, Error> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Usage(format!(
            "{var} holds whitespace or control characters"
        )));
    }
    let u = url::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{var} is not an http(s) URL like https://mcp.example.com/mcp"
            ))
        })?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Error::Usage(format!(
            "{var} must not hold a user name or password"
        )));
    }
    if u.fragment().is_some() {
        return Err(Error::Usage(format!("{var} must not have a fragment")));
    }
    Ok(u)
}

pub(crate) async fn add_resource_server(
    client: &Client,
    pool: &str,
    client_name: &str,
    identifier: &str,
    scopes: &[String],
) -> Result<(), Error> {
    let url = http_url(identifier, "MCP_SERVER_URL")?;
    // The identifier prefixes the scope names printed into comma-separated
    // settings (an attack pass: `…/a,b` made two required scopes no token
    // has).
    if url.query().is_some() || identifier.contains([',', '?']) {
        return Err(Error::Usage(
            "MCP_SERVER_URL must have no query and no comma: it becomes the resource server's identifier and the prefix of its scopes".into(),
        ));
    }
    if scopes.is_empty() {
        return Err(Error::Usage("no scopes given".into()));
    }
    // The app client before anything is changed at Cognito (an attack pass:
    // the resource server was registered, then the client found missing).
    let app = find_client(client, pool, client_name)
        .await?
        .ok_or_else(|| {
            Error::Usage(format!(
                "no app client named {client_name:?}: run setup first"
            ))
        })?;

    let existing = match client
        .describe_resource_server()
        .user_pool_id(pool)
        .identifier(identifier)
        .send()
        .await
    {
        Ok(r) => r.resource_server().cloned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        // Throttled, not allowed, unreachable: not a sign that it is
        // missing (creating it would fail with a misleading message).
        Err(e) => return Err(aws("describe resource server")(e)),
    };
    let mut all: Vec<String> = existing
        .as_ref()
        .map(|r| {
            r.scopes()
                .iter()
                .map(|s| s.scope_name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    for s in scopes {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    let scope_types = all
        .iter()
        .map(|s| {
            ResourceServerScopeType::builder()
                .scope_name(s)
                .scope_description(format!("MCP scope {s}"))
                .build()
                .map_err(aws("scope"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let known = existing.as_ref().map_or(0, |r| r.scopes().len());
    if existing.is_some() && known == all.len() {
        eprintln!(
            "resource server {identifier} exists with scopes {}",
            all.join(" ")
        );
    } else if existing.is_some() {
        match client
            .update_resource_server()
            .user_pool_id(pool)
            .identifier(identifier)
            .name("mcp-server")
            .set_scopes(Some(scope_types))
            .send()
            .await
        {
            Ok(_) => eprintln!(
                "resource server {identifier} exists; scopes now: {}",
                all.join(" ")
            ),
            Err(e) => {
                // Only what Cognito has registered may be granted and printed.
                all.truncate(known);
                warn(&format!(
                    "could not add scopes to the existing resource server; continuing with its registered scopes {}: {}",
                    all.join(" "),
                    aws::<_>("update resource server")(e)
                ));
            }
        }
    } else {
        client
            .create_resource_server()
            .user_pool_id(pool)
            .identifier(identifier)
            .name("mcp-server")
            .set_scopes(Some(scope_types))
            .send()
            .await
            .map_err(aws("create resource server"))?;
        eprintln!(
            "registered resource server {identifier} with scopes {}",
            all.join(" ")
        );
    }
    // The app client gets the scopes asked for (those Cognito registered),
    // not every scope of the resource server: a client given `tools` must
    // not also get an `admin` that an earlier run registered for another.
    let given: Vec<String> = scopes
        .iter()
        .filter(|s| all.contains(s))
        .map(|s| format!("{identifier}/{s}"))
        .collect();
    if given.is_empty() {
        return Err(Error::Aws(format!(
            "none of the scopes {} could be registered on {identifier}; nothing granted",
            scopes.join(" ")
        )));
    }
    let mut granted: Vec<String> = app.allowed_o_auth_scopes().to_vec();
    let before = granted.len();
    for s in &given {
        if !granted.contains(s) {
            granted.push(s.clone());
        }
    }
    let others: Vec<&str> = all
        .iter()
        .filter(|s| !scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !others.is_empty() {
        eprintln!(
            "the resource server also has {}: not granted to app client {client_name:?} (name them in --scopes to grant them)",
            others.join(" ")
        );
    }
    if granted.len() != before {
        // UpdateUserPoolClient resets every field it is not given: pass them all.
        keep_client(client, pool, &app)
            .set_allowed_o_auth_scopes(Some(granted))
            .send()
            .await
            .map_err(aws("grant scopes to the app client"))?;
        eprintln!("granted {} to app client {client_name:?}", given.join(" "));
    }
    // Cognito grants scopes to app clients, not to users: said when this
    // run grants the admin scope.
    if let Some(admin) = given
        .iter()
        .find(|s| s.ends_with("/admin") && !app.allowed_o_auth_scopes().contains(s))
    {
        warn(&format!(
            "every user who logs in through app client {client_name:?} can now get {admin}: Cognito grants scopes per app client, not per user. To keep it for some users, grant it only to an app client they alone use (docs/COGNITO.md)"
        ));
    }
    // The server's settings are the resource server's, whichever client
    // this run granted scopes to: every scope it has (a run that adds one
    // scope, or grants a client fewer, prints the whole set).
    let registered: Vec<String> = all.iter().map(|s| format!("{identifier}/{s}")).collect();
    // Required of every token: the base scope (`tools`, the default's
    // first) when there is one, else the first one this run granted (a
    // review: the first one Cognito lists may be `admin`, which the main
    // client's users do not all get).
    let required = registered
        .iter()
        .find(|s| s.ends_with("/tools"))
        .or_else(|| given.first())
        .cloned()
        .unwrap_or_default();
    println!("MCP_SERVER_URL={identifier}");
    println!("COGNITO_REQUIRED_SCOPES={required}");
    println!("MCP_OAUTH_SCOPES_SUPPORTED={}", registered.join(","));
    // The server's admin_status tool needs mcp:admin by default, a scope
    // Cognito cannot issue: name the pool's own admin scope instead, so the
    // tool can be called and the metadata advertises only what Cognito issues.
    if let Some(admin) = registered.iter().find(|s| s.ends_with("/admin")) {
        println!("MCP_TOOL_SCOPES=admin_status={admin}");
        warn(&format!(
            "MCP_OAUTH_SCOPES_SUPPORTED above offers {admin}: these lines are for the cognito strategy; with the server's login facade (MCP_AUTH_STRATEGY=oauth2) every user of the pool gets what it offers, so leave {admin} out of it there unless they all may have it"
        ));
    }
    Ok(())
}

/// Refuses, before any request, a scope name Cognito does not take for a
/// resource server's scope (1-256 of the printable ASCII characters but
/// space, `"`, `/` and `\`): a name with a space was registered, and
/// printed as a required scope no token can carry.
pub(crate) fn check_scope_names(scopes: &[String]) -> Result<(), Error> {
    let ok = |name: &str| {
        (1..=256).contains(&name.len())
            && name
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x2e | 0x30..=0x5b | 0x5d..=0x7e))
    };
    match scopes.iter().find(|s| !ok(s)) {
        Some(bad) => Err(Error::Usage(format!(
            "--scopes: {bad:?} is not a Cognito scope name (1-256 printable ASCII characters without spaces, quotes, / or \\)"
        ))),
        None => Ok(()),
    }
}

pub(crate) async fn status(
    client: &Client,
    region: &str,
    wanted: &WantedPool,
) -> Result<(), Error> {
    let Some(Pool {
        id: pool,
        name: pool_name,
    }) = find_pool(client, wanted).await?
    else {
        println!("no user pool named {:?} in {region}", wanted.name());
        return Ok(());
    };
    let described = client
        .describe_user_pool()
        .user_pool_id(&pool)
        .send()
        .await
        .map_err(aws("describe user pool"))?;
    let p = described.user_pool();
    println!("user pool   {pool} ({pool_name:?})");
    println!(
        "issuer      {}",
        mcp_auth_cognito::issuer_for(region, &pool)
    );
    println!(
        "sign-up     {}",
        if admin_only(p) {
            "administrators only"
        } else {
            "open to anyone (AllowAdminCreateUserOnly off)"
        }
    );
    println!(
        "domain      {}",
        p.and_then(|p| p.domain())
            .map(|d| format!("https://{d}.auth.{region}.amazoncognito.com"))
            .unwrap_or_else(|| "(none)".into())
    );
    let clients = client
        .list_user_pool_clients()
        .user_pool_id(&pool)
        .max_results(60)
        .send()
        .await
        .map_err(aws("list app clients"))?;
    for c in clients.user_pool_clients() {
        println!(
            "app client  {} ({})",
            c.client_id().unwrap_or_default(),
            c.client_name().unwrap_or_default()
        );
    }
    let servers = client
        .list_resource_servers()
        .user_pool_id(&pool)
        .max_results(50)
        .send()
        .await
        .map_err(aws("list resource servers"))?;
    for r in servers.resource_servers() {
        let scopes: Vec<&str> = r.scopes().iter().map(|s| s.scope_name()).collect();
        println!(
            "resource    {} scopes: {}",
            r.identifier().unwrap_or_default(),
            scopes.join(" ")
        );
    }
    Ok(())
}

pub(crate) async fn teardown(client: &Client, wanted: &WantedPool, yes: bool) -> Result<(), Error> {
    let Some(Pool {
        id: pool,
        name: pool_name,
    }) = find_pool(client, wanted).await?
    else {
        eprintln!("no user pool named {:?}; nothing to delete", wanted.name());
        return Ok(());
    };
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(
                "refusing to delete without --yes when not interactive".into(),
            ));
        }
        eprint!(
            "delete user pool {pool} ({pool_name:?}) with all its users? type its id to confirm: "
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::Usage(e.to_string()))?;
        if line.trim() != pool {
            return Err(Error::Usage("not confirmed; nothing deleted".into()));
        }
    }
    let described = client
        .describe_user_pool()
        .user_pool_id(&pool)
        .send()
        .await
        .map_err(aws("describe user pool"))?;
    if let Some(d) = described.user_pool().and_then(|p| p.domain())
        && let Err(e) = client
            .delete_user_pool_domain()
            .user_pool_id(&pool)
            .domain(d)
            .send()
            .await
    {
        warn(&format!(
            "could not delete domain {d}: {}",
            aws::<_>("delete domain")(e)
        ));
    }
    client
        .delete_user_pool()
        .user_pool_id(&pool)
        .send()
        .await
        .map_err(aws("delete user pool"))?;
    eprintln!("deleted user pool {pool} ({pool_name:?})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_sdk_cognitoidentityprovider::{
        config::{BehaviorVersion, Region},
        types::{
            AnalyticsConfigurationType, FeatureType, PreventUserExistenceErrorTypes,
            RefreshTokenRotationType, TimeUnitsType, TokenValidityUnitsType,
        },
    };

    use super::*;

    /// An app client with every setting set (to something other than
    /// Cognito's default).
    fn every_setting() -> UserPoolClientType {
        UserPoolClientType::builder()
            .user_pool_id("eu-west-1_Pool")
            .client_id("client")
            .client_name("mcp-auth-client")
            .client_secret("secret")
            .refresh_token_validity(7)
            .access_token_validity(2)
            .id_token_validity(3)
            .token_validity_units(
                TokenValidityUnitsType::builder()
                    .access_token(TimeUnitsType::Hours)
                    .id_token(TimeUnitsType::Hours)
                    .refresh_token(TimeUnitsType::Days)
                    .build(),
            )
            .read_attributes("email")
            .write_attributes("name")
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserSrpAuth)
            .supported_identity_providers("COGNITO")
            .callback_urls("https://mcp.example.com/oauth/callback")
            .logout_urls("https://mcp.example.com/")
            .default_redirect_uri("https://mcp.example.com/oauth/callback")
            .allowed_o_auth_flows(OAuthFlowType::Code)
            .allowed_o_auth_scopes("openid")
            .allowed_o_auth_flows_user_pool_client(true)
            .analytics_configuration(
                AnalyticsConfigurationType::builder()
                    .application_id("app")
                    .application_arn("arn:aws:mobiletargeting:eu-west-1:1:apps/app")
                    .role_arn("arn:aws:iam::1:role/analytics")
                    .external_id("external")
                    .user_data_shared(true)
                    .build(),
            )
            .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
            .enable_token_revocation(false)
            .enable_propagate_additional_user_context_data(true)
            .auth_session_validity(15)
            .refresh_token_rotation(
                RefreshTokenRotationType::builder()
                    .feature(FeatureType::Enabled)
                    .retry_grace_period_seconds(10)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[test]
    fn keep_client_passes_every_setting_the_update_accepts() {
        let client = Client::from_conf(
            aws_sdk_cognitoidentityprovider::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .build(),
        );
        let app = every_setting();
        let update = keep_client(&client, "eu-west-1_Pool", &app);
        // UpdateUserPoolClient resets what it is not given: no field of
        // the request may be left unset (this also catches fields a newer
        // SDK adds).
        let shown = format!("{:?}", update.as_input());
        assert!(!shown.contains("None"), "{shown}");
        assert_eq!(update.get_client_id().as_deref(), Some("client"));
        assert_eq!(
            update.get_auth_session_validity(),
            &app.auth_session_validity()
        );
        assert_eq!(
            update.get_refresh_token_rotation().as_ref(),
            app.refresh_token_rotation()
        );
        assert_eq!(
            update.get_enable_propagate_additional_user_context_data(),
            &app.enable_propagate_additional_user_context_data()
        );
        assert_eq!(
            update.get_analytics_configuration().as_ref(),
            app.analytics_configuration()
        );
        assert_eq!(
            update.get_token_validity_units().as_ref(),
            app.token_validity_units()
        );
        assert_eq!(
            update.get_prevent_user_existence_errors().as_ref(),
            app.prevent_user_existence_errors()
        );
        assert_eq!(update.get_enable_token_revocation(), &Some(false));
        assert_eq!(update.get_refresh_token_validity(), &Some(7));
        assert_eq!(
            update.get_default_redirect_uri().as_deref(),
            app.default_redirect_uri()
        );
    }

    fn callback(server: Option<&str>, cb: Option<&str>) -> Result<FacadeCallback, Error> {
        FacadeCallback::from_settings(server.map(str::to_owned), cb.map(str::to_owned), || {
            default_server_url(None, None)
        })
    }

    #[test]
    fn the_facade_callback_is_on_the_server_origin_as_the_facade_derives_it() {
        let c = callback(Some("https://mcp.example.com/mcp"), None).unwrap();
        assert_eq!(c.url, "https://mcp.example.com/oauth/callback");
        assert_eq!(c.server_url.as_deref(), Some("https://mcp.example.com/mcp"));
        assert!(!c.explicit);
        // The server's default URL when none is given.
        let c = callback(None, None).unwrap();
        assert_eq!(c.url, "http://127.0.0.1:8001/oauth/callback");
        assert_eq!(c.server_url, None);
        // Named explicitly: taken as is, and printed.
        let c = callback(
            Some("https://mcp.example.com/mcp"),
            Some("https://mcp.example.com/auth/cognito"),
        )
        .unwrap();
        assert_eq!(c.url, "https://mcp.example.com/auth/cognito");
        assert!(c.explicit);
        // The server's own address when MCP_SERVER_URL is unset (a review:
        // a server on PORT=9000 with its callback there was refused).
        let c = FacadeCallback::from_settings(
            None,
            Some("http://127.0.0.1:9000/oauth/callback".into()),
            || default_server_url(None, Some("9000")),
        )
        .unwrap();
        assert_eq!(c.url, "http://127.0.0.1:9000/oauth/callback");
        // Not made when the server URL is named: a HOST or PORT it could
        // not use does not matter then.
        let c =
            FacadeCallback::from_settings(Some("https://mcp.example.com/mcp".into()), None, || {
                default_server_url(Some("mylaptop"), Some("0"))
            })
            .unwrap();
        assert_eq!(c.url, "https://mcp.example.com/oauth/callback");
        for (host, port, url) in [
            (None, None, "http://127.0.0.1:8001/mcp"),
            (Some("0.0.0.0"), Some("8080"), "http://127.0.0.1:8080/mcp"),
            (Some("0:0::0"), None, "http://127.0.0.1:8001/mcp"),
            (Some("localhost"), None, "http://127.0.0.1:8001/mcp"),
            (Some("::1"), None, "http://[::1]:8001/mcp"),
            (Some("[::1]"), Some(" 9000 "), "http://[::1]:9000/mcp"),
        ] {
            assert_eq!(default_server_url(host, port).unwrap(), url, "{host:?}");
        }
        for (host, port, says) in [
            (Some("myhost"), None, "HOST \"myhost\""),
            (None, Some("abc"), "PORT \"abc\""),
            (None, Some("0"), "PORT \"0\""),
        ] {
            let e = default_server_url(host, port).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_callback_the_facade_would_refuse_is_refused_first() {
        for (server, cb, says) in [
            (Some("mcp.example.com"), None, "MCP_SERVER_URL"),
            (Some("ftp://mcp.example.com/mcp"), None, "MCP_SERVER_URL"),
            (None, Some("/oauth/callback"), "MCP_OAUTH_CALLBACK_URL"),
            (
                Some("https://mcp.example.com/mcp"),
                Some("https://elsewhere.example/cb"),
                "origin https://mcp.example.com",
            ),
            (
                Some("https://mcp.example.com/mcp"),
                Some("https://mcp.example.com/cb#x"),
                "fragment",
            ),
            // The default server URL's origin when none is named.
            (
                None,
                Some("https://evil.example/cb"),
                "origin http://127.0.0.1:8001 (MCP_SERVER_URL's default",
            ),
            // Lines of its own in the printed settings, credentials.
            (
                Some("http://127.0.0.1:18777/mcp\nMCP_AUTH_STRATEGY=none"),
                None,
                "MCP_SERVER_URL holds whitespace or control characters",
            ),
            (
                Some("https://mcp.example.com/mcp"),
                Some("https://mcp.example.com/cb\tx"),
                "MCP_OAUTH_CALLBACK_URL holds whitespace",
            ),
            (
                Some("https://user:pa55w0rd@mcp.example.com/mcp"),
                None,
                "MCP_SERVER_URL must not hold a user name or password",
            ),
        ] {
            let e = callback(server, cb).unwrap_err().to_string();
            assert!(e.contains(says), "{server:?} {cb:?}: {e}");
            assert!(!e.contains("pa55w0rd") && !e.contains('\n'), "{e}");
        }
    }
}
