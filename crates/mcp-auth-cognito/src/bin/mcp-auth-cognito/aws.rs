//! AWS SDK helpers: errors shortened to one line, and lookups of the user
//! pool and app client by name.

use aws_sdk_cognitoidentityprovider::{Client, types::UserPoolClientType};

use crate::Error;

pub(crate) fn aws<E: std::error::Error>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| {
        let text = format!("{e:?}");
        // SDK errors are verbose: a service's answer is kept to its
        // message; anything else (no connection, a bad region) is the
        // chain of causes, down to the one that says what is wrong.
        let short = text
            .split("message: Some(\"")
            .nth(1)
            .and_then(|m| m.split('"').next())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let chain =
                    aws_sdk_cognitoidentityprovider::error::DisplayErrorContext(&e).to_string();
                // It ends with the whole error's Debug form: said already.
                chain
                    .strip_suffix(&format!(" ({text})"))
                    .map_or(chain.clone(), str::to_owned)
            });
        Error::Aws(format!("{what}: {}", short.replace('\n', " ")))
    }
}

/// The pool name used when none is given.
pub(crate) const DEFAULT_POOL_NAME: &str = "mcp-auth";

/// A setting's value and where it came from (`--pool-name`, `the
/// environment`, `.env`).
#[derive(Debug, Clone)]
pub(crate) struct Given {
    pub(crate) value: String,
    pub(crate) from: String,
}

/// The user pool to work on.
#[derive(Debug, Clone)]
pub(crate) struct WantedPool {
    /// Its name (`--pool-name`, `COGNITO_POOL_NAME`), if given;
    /// [`DEFAULT_POOL_NAME`] otherwise.
    pub(crate) name: Option<Given>,
    /// Its id (`COGNITO_USER_POOL_ID`), if given: it must name an existing
    /// pool, and one with the given name, if a name is given.
    pub(crate) id: Option<Given>,
}

impl WantedPool {
    /// The name to find (or create) the pool by.
    pub(crate) fn name(&self) -> &str {
        self.name
            .as_ref()
            .map_or(DEFAULT_POOL_NAME, |n| n.value.as_str())
    }
}

/// A user pool that exists: its id and its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    pub(crate) id: String,
    pub(crate) name: String,
}

/// The `wanted` pool, if it exists: the one with its id when an id is
/// given (an error if there is none, or it has another name than the one
/// given), else the only one with its name (`None` if there is none, an
/// error if there are several).
pub(crate) async fn find_pool(client: &Client, wanted: &WantedPool) -> Result<Option<Pool>, Error> {
    if let Some(id) = &wanted.id {
        let described = match client
            .describe_user_pool()
            .user_pool_id(&id.value)
            .send()
            .await
        {
            Ok(d) => d,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                let region = client
                    .config()
                    .region()
                    .map_or_else(|| "this region".to_owned(), ToString::to_string);
                return Err(Error::Usage(format!(
                    "COGNITO_USER_POOL_ID {} (from {}) names no user pool in {region}; nothing done (unset it to find or create the pool named {:?})",
                    id.value,
                    id.from,
                    wanted.name()
                )));
            }
            Err(e) => {
                return Err(aws(&format!("describe user pool {}", id.value))(e));
            }
        };
        let real = described
            .user_pool()
            .and_then(|p| p.name())
            .unwrap_or_default()
            .to_owned();
        if let Some(name) = &wanted.name
            && name.value != real
        {
            return Err(Error::Usage(format!(
                "COGNITO_USER_POOL_ID {} (from {}) is the user pool {real:?}, not {:?} (from {}); nothing done: unset one of them",
                id.value, id.from, name.value, name.from
            )));
        }
        return Ok(Some(Pool {
            id: id.value.clone(),
            name: real,
        }));
    }
    let name = wanted.name();
    let mut ids = Vec::new();
    let mut next = None;
    loop {
        let page = client
            .list_user_pools()
            .max_results(60)
            .set_next_token(next)
            .send()
            .await
            .map_err(aws("list user pools"))?;
        ids.extend(
            page.user_pools()
                .iter()
                .filter(|p| p.name() == Some(name))
                .filter_map(|p| p.id().map(str::to_owned)),
        );
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(Pool {
            id: id.clone(),
            name: name.to_owned(),
        })),
        _ => Err(Error::Usage(format!(
            "{} user pools are named {name:?} ({}); nothing done: set COGNITO_USER_POOL_ID to the one meant",
            ids.len(),
            ids.join(", ")
        ))),
    }
}

pub(crate) async fn find_client(
    client: &Client,
    pool: &str,
    name: &str,
) -> Result<Option<UserPoolClientType>, Error> {
    let mut ids = Vec::new();
    let mut next = None;
    loop {
        let page = client
            .list_user_pool_clients()
            .user_pool_id(pool)
            .max_results(60)
            .set_next_token(next)
            .send()
            .await
            .map_err(aws("list app clients"))?;
        ids.extend(
            page.user_pool_clients()
                .iter()
                .filter(|c| c.client_name() == Some(name))
                .filter_map(|c| c.client_id().map(str::to_owned)),
        );
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    // Cognito lets several app clients share a name: the first one found
    // would get the scopes and have its secret printed, silently.
    let id = match ids.as_slice() {
        [] => return Ok(None),
        [id] => id,
        _ => {
            return Err(Error::Usage(format!(
                "{} app clients of the pool are named {name:?} ({}); nothing done: rename or delete all but one, or name another with --client-name",
                ids.len(),
                ids.join(", ")
            )));
        }
    };
    let full = client
        .describe_user_pool_client()
        .user_pool_id(pool)
        .client_id(id)
        .send()
        .await
        .map_err(aws("describe app client"))?;
    Ok(full.user_pool_client().cloned())
}
