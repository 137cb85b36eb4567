//! AWS SDK helpers: errors shortened to one line, and lookups of the user
//! pool and app client by name.

use aws_sdk_cognitoidentityprovider::{Client, types::UserPoolClientType};

use crate::Error;

pub(crate) fn aws<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| {
        let text = format!("{e:?}");
        // SDK errors are verbose; keep the code and message, one line.
        let short = text
            .split("message: Some(\"")
            .nth(1)
            .and_then(|m| m.split('"').next())
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Error::Aws(format!("{what}: {}", short.replace('\n', " ")))
    }
}

/// The user pool to work on.
#[derive(Debug, Clone)]
pub(crate) struct WantedPool {
    /// Its name (`--pool-name`, `COGNITO_POOL_NAME`).
    pub(crate) name: String,
    /// Its id (`COGNITO_USER_POOL_ID`): wins over the name if such a pool
    /// exists.
    pub(crate) id: Option<String>,
}

/// The id of the `wanted` pool, if it exists.
pub(crate) async fn find_pool(
    client: &Client,
    wanted: &WantedPool,
) -> Result<Option<String>, Error> {
    let name = wanted.name.as_str();
    if let Some(id) = &wanted.id {
        // An explicit id wins, if it exists.
        if client
            .describe_user_pool()
            .user_pool_id(id)
            .send()
            .await
            .is_ok()
        {
            return Ok(Some(id.clone()));
        }
    }
    let mut next = None;
    loop {
        let page = client
            .list_user_pools()
            .max_results(60)
            .set_next_token(next)
            .send()
            .await
            .map_err(aws("list user pools"))?;
        for p in page.user_pools() {
            if p.name() == Some(name) {
                return Ok(p.id().map(str::to_owned));
            }
        }
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            return Ok(None);
        }
    }
}

pub(crate) async fn find_client(
    client: &Client,
    pool: &str,
    name: &str,
) -> Result<Option<UserPoolClientType>, Error> {
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
        for c in page.user_pool_clients() {
            if c.client_name() == Some(name) {
                let id = c.client_id().unwrap_or_default();
                let full = client
                    .describe_user_pool_client()
                    .user_pool_id(pool)
                    .client_id(id)
                    .send()
                    .await
                    .map_err(aws("describe app client"))?;
                return Ok(full.user_pool_client().cloned());
            }
        }
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            return Ok(None);
        }
    }
}
