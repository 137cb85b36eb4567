//! [`connect_machine`]: an MCP client for a program with no person and no
//! browser (an agent, a CI job, a service), authorized by an OAuth grant of
//! its own ([`Grant`]).
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), mcp_auth_client::ClientError> {
//! use mcp_auth_client::{Grant, MachineClient, MachineOptions, connect_machine};
//!
//! // client_credentials with the client's secret; discovery, scopes and
//! // `resource` as for a login, the token endpoint's auth method from the
//! // authorization server's metadata.
//! let grant = Grant::ClientCredentials(MachineClient::secret("reporting-bot", "s3cret"));
//! let mut opts = MachineOptions::new(grant);
//! // The authorization server the client is registered at: the secret
//! // goes there only (required with a secret, a key or an assertion).
//! opts.issuer = Some("https://auth.example.com".into());
//! let (client, scopes) = connect_machine("https://mcp.example.com/mcp", &opts).await?;
//! println!("granted {scopes:?}; {} tools", client.list_all_tools().await.map(|t| t.len()).unwrap_or(0));
//! # Ok(()) }
//! ```
//!
//! The way there is the one a login takes, without the browser: the
//! server's 401 challenge, RFC 9728 protected-resource metadata, RFC 8414 /
//! OIDC authorization-server metadata, the scopes in the MCP spec's order,
//! then one token request (RFC 8707 `resource` = the server URL) and the
//! MCP session with that token. Tokens are not stored: each connection
//! asks for a new one, and a failed grant is neither retried nor replaced
//! by another grant type.
//!
//! DPoP (RFC 9449): when the authorization server's metadata offers it
//! with ES256 (and [`MachineOptions::dpop`] is on, the default), the token
//! request carries a proof of a key made for this connection (kept in
//! memory only, as the token is), and a token issued as `DPoP` is
//! presented with a proof on every MCP request ([`crate::DpopHttpClient`]).

use std::{collections::HashMap, fmt, path::Path};

use rmcp::transport::auth::AuthorizationManager;

use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use crate::{
    ClientAuth, ClientError, DpopHttpClient, DpopKey, GrantError, Presented, SigningAlgorithm,
    TokenEndpoint, TokenGrant, Wire,
    connect::{Client, Probed, challenge_or_open, plain, start},
    dpop::supports_es256,
    failure::{challenge_scopes, union},
    grants,
    issuer::same_issuer,
    oauth_http::SharedPolicy,
};

/// A client registered at an authorization server, as it authenticates
/// at the token endpoint: a secret (sent as that server's metadata asks,
/// `client_secret_basic` unless only `client_secret_post` is offered), a
/// private key (`private_key_jwt`), or neither (a public client, its
/// `client_id` only).
#[derive(Clone)]
pub struct MachineClient {
    client_id: String,
    secret: Option<String>,
    key: Option<ClientAuth>,
}

impl fmt::Debug for MachineClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineClient")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("key", &self.key)
            .finish()
    }
}

impl MachineClient {
    /// A public client: its `client_id` only.
    pub fn public(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: None,
            key: None,
        }
    }

    /// A confidential client with a secret.
    pub fn secret(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            secret: Some(secret.into()),
            ..Self::public(client_id)
        }
    }

    /// A client that signs an RFC 7523 assertion with its private key (PEM,
    /// PKCS#8; `algorithm` must suit the key). The key is read now: one
    /// that cannot sign is an error here, not at the first request.
    pub fn private_key(
        client_id: impl Into<String>,
        key_pem: impl Into<String>,
        algorithm: SigningAlgorithm,
    ) -> Result<Self, GrantError> {
        let client_id = client_id.into();
        let key = ClientAuth::private_key_jwt(client_id.clone(), key_pem, algorithm)?;
        Ok(Self {
            key: Some(key),
            ..Self::public(client_id)
        })
    }

    /// [`MachineClient::private_key`] with the key read from `path`
    /// (errors name the file, never its contents).
    pub fn private_key_file(
        client_id: impl Into<String>,
        path: &Path,
        algorithm: SigningAlgorithm,
    ) -> Result<Self, GrantError> {
        let client_id = client_id.into();
        let key = ClientAuth::private_key_jwt_from_file(client_id.clone(), path, algorithm)?;
        Ok(Self {
            key: Some(key),
            ..Self::public(client_id)
        })
    }

    /// The client's id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How it authenticates at a token endpoint whose server lists
    /// `methods_supported` (`token_endpoint_auth_methods_supported`).
    pub fn auth(&self, methods_supported: Option<&[String]>) -> ClientAuth {
        match &self.key {
            Some(key) => key.clone(),
            None => ClientAuth::choose(
                self.client_id.clone(),
                self.secret.clone(),
                methods_supported,
            ),
        }
    }
}

/// How a program obtains its token.
#[derive(Clone)]
#[non_exhaustive]
pub enum Grant {
    /// OAuth client credentials (RFC 6749 §4.4): the client acts for
    /// itself.
    ClientCredentials(MachineClient),
    /// Workload identity federation: a JWT the platform issued to this
    /// workload (a Kubernetes service-account token, a cloud workload
    /// identity token) presented as an RFC 7523 `jwt-bearer` grant by
    /// `client`.
    Workload {
        /// The workload's JWT (its audience must be the MCP server's
        /// authorization server).
        assertion: String,
        /// The client presenting it.
        client: MachineClient,
    },
    /// Enterprise-managed authorization (the MCP extension, SEP-990): the
    /// user's ID token from the enterprise IdP is exchanged there for an
    /// identity assertion authorization grant (ID-JAG, RFC 8693), which
    /// `client` presents to the MCP server's authorization server as a
    /// `jwt-bearer` grant.
    Enterprise {
        /// The IdP's token endpoint (and issuer, the audience of a
        /// `private_key_jwt` assertion there).
        idp: TokenEndpoint,
        /// This application's client at the IdP.
        idp_client: MachineClient,
        /// The user's ID token, issued by the IdP to `idp_client`.
        id_token: String,
        /// This application's client at the MCP server's authorization
        /// server.
        client: MachineClient,
    },
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::ClientCredentials(c) => f.debug_tuple("ClientCredentials").field(c).finish(),
            Grant::Workload { client, .. } => f
                .debug_struct("Workload")
                .field("assertion", &"<redacted>")
                .field("client", client)
                .finish(),
            Grant::Enterprise {
                idp,
                idp_client,
                client,
                ..
            } => f
                .debug_struct("Enterprise")
                .field("idp", idp)
                .field("idp_client", idp_client)
                .field("id_token", &"<redacted>")
                .field("client", client)
                .finish(),
        }
    }
}

impl Grant {
    /// What of the grant's must not go to an authorization server the
    /// client did not choose (a secret, a key's assertion, a workload
    /// token, an ID-JAG), for messages; `None` for a public client's
    /// client credentials (its `client_id` only).
    fn credential(&self) -> Option<&'static str> {
        match self {
            Grant::ClientCredentials(c) if c.key.is_some() => {
                Some("a private key's client assertion")
            }
            Grant::ClientCredentials(c) if c.secret.is_some() => Some("a client secret"),
            Grant::ClientCredentials(_) => None,
            Grant::Workload { .. } => Some("a workload token"),
            Grant::Enterprise { .. } => Some("an ID-JAG (identity assertion)"),
        }
    }

    /// The grant's name, for messages.
    fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials(_) => "client_credentials",
            Grant::Workload { .. } => "workload identity (jwt-bearer)",
            Grant::Enterprise { .. } => "enterprise-managed authorization (ID-JAG)",
        }
    }
}

/// Settings for [`connect_machine`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MachineOptions {
    /// How to obtain the token.
    pub grant: Grant,
    /// Scopes to ask for. Default (empty), the MCP spec's order: the
    /// challenge's `scope`, else the protected-resource metadata's
    /// `scopes_supported`, else none. With a [`MachineOptions::challenge`]:
    /// these, the scopes held and the challenge's, together.
    pub scopes: Vec<String>,
    /// The MCP wire (default [`Wire::Auto`]).
    pub wire: Wire,
    /// A challenge the server already sent (a 401, or a 403
    /// `insufficient_scope` mid-session): ask for a token for it.
    pub challenge: Option<String>,
    /// Ask for a DPoP-bound token when the authorization server offers
    /// DPoP with ES256 (default true): the token request carries a proof
    /// of a key made for this connection, and a token issued as `DPoP` is
    /// presented with a proof on every MCP request.
    pub dpop: bool,
    /// The authorization server (its issuer) the grant's client is
    /// registered at. The grant goes only to an authorization server whose
    /// metadata names exactly this issuer (confirmed at the issuer's own
    /// address); any other is refused before anything is sent. Required
    /// for every grant but a public client's client credentials: without
    /// it a hostile MCP server could have the client's secret, key
    /// assertion, workload token or ID-JAG sent to an authorization server
    /// of its choice, so [`connect_machine`] refuses. `None` (the default)
    /// suits only a public client, sent to whichever authorization server
    /// the MCP server names.
    pub issuer: Option<String>,
    /// Send the token to an MCP server on plain http off loopback (default
    /// false: refused before anything is sent; see
    /// [`OAuthOptions::allow_http`](crate::OAuthOptions::allow_http)).
    pub allow_http: bool,
}

impl MachineOptions {
    /// `grant`, with the defaults.
    pub fn new(grant: Grant) -> Self {
        Self {
            grant,
            scopes: Vec::new(),
            wire: Wire::Auto,
            challenge: None,
            dpop: true,
            issuer: None,
            allow_http: false,
        }
    }
}

/// Connects to `server_url` with a token from `opts.grant`; also returns
/// the scopes the token holds (the authorization server's `scope`, else
/// those the token request asked for, RFC 6749 §5.1; empty when the server
/// let the client in without a token).
///
/// A grant that carries a secret, a private key's assertion, a workload
/// token or an ID-JAG needs [`MachineOptions::issuer`]: without it this
/// returns [`ClientError::Config`] before any request.
///
/// The way there is a login's, without the browser: the server's 401
/// challenge, RFC 9728 protected-resource metadata, RFC 8414 / OIDC
/// authorization-server metadata, the scopes in the MCP spec's order, then
/// one token request (RFC 8707 `resource` = `server_url`) and MCP with that
/// token. Tokens are not stored: each connection asks for a new one, and a
/// failed grant is neither retried nor replaced by another grant type.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), mcp_auth_client::ClientError> {
/// use mcp_auth_client::{Grant, MachineClient, MachineOptions, connect_machine};
///
/// let grant = Grant::ClientCredentials(MachineClient::secret("reporting-bot", "s3cret"));
/// let mut opts = MachineOptions::new(grant);
/// opts.issuer = Some("https://auth.example.com".into());
/// let (client, scopes) = connect_machine("https://mcp.example.com/mcp", &opts).await?;
/// println!("granted {scopes:?}");
/// # drop(client);
/// # Ok(()) }
/// ```
pub async fn connect_machine(
    server_url: &str,
    opts: &MachineOptions,
) -> Result<(Client, Vec<String>), ClientError> {
    crate::connect::require_tls(server_url, "the access token", opts.allow_http)?;
    if opts.issuer.is_none()
        && let Some(credential) = opts.grant.credential()
    {
        return Err(ClientError::Config(format!(
            "{credential} is sent only to the authorization server the client is registered \
             at: set MachineOptions::issuer (--issuer) to its issuer"
        )));
    }
    let challenge =
        match challenge_or_open(server_url, opts.challenge.as_deref(), opts.wire).await? {
            Probed::Challenge(c) => c,
            Probed::Open(client) => return Ok((client, Vec::new())),
        };
    let (grant, dpop, asked) = token(server_url, opts, &challenge).await?;
    let granted = grant.scope.as_deref().map(|s| {
        s.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    });
    let client = match dpop.filter(|_| grant.is_dpop()) {
        Some(key) => {
            tracing::debug!(
                key = key.fingerprint(),
                "the token is DPoP-bound: presenting it with proofs"
            );
            let http = DpopHttpClient::new(key).with_token(grant.access_token.clone());
            let config = StreamableHttpClientTransportConfig::with_uri(server_url);
            start(http, config, Presented::OAuth, opts.wire).await?
        }
        None => {
            let header = http::HeaderValue::from_str(&format!("Bearer {}", grant.access_token))
                .map_err(|_| {
                    ClientError::Token("the access token is not a valid header value".into())
                })?;
            plain(
                server_url,
                HashMap::from([(http::header::AUTHORIZATION, header)]),
                Presented::OAuth,
                opts.wire,
            )
            .await?
        }
    };
    // RFC 6749 §5.1: no `scope` in the answer means the scopes asked for,
    // as sent (after discovery), so that a step-up keeps them.
    Ok((client, granted.unwrap_or(asked)))
}

/// The scopes a grant asks for before discovery: `scopes`, with a
/// challenge's added.
fn requested_scopes(opts: &MachineOptions) -> Vec<String> {
    match &opts.challenge {
        Some(c) => union(&opts.scopes, &challenge_scopes(c)),
        None => opts.scopes.clone(),
    }
}

/// Discovery from `challenge`, then the grant at the authorization
/// server's token endpoint; also the DPoP key the request carried proofs
/// of, if any, and the scopes the request asked for.
async fn token(
    server_url: &str,
    opts: &MachineOptions,
    challenge: &str,
) -> Result<(TokenGrant, Option<DpopKey>, Vec<String>), ClientError> {
    let m = AuthorizationManager::new(server_url)
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?;
    let metadata = m
        .resolve_metadata_from_challenge(Some(challenge))
        .await
        .map_err(|e| ClientError::Discovery(e.to_string()))?
        .metadata;
    let metadata = crate::issuer::confirm(server_url, metadata).await?;
    if let Some(bound) = &opts.issuer
        && !metadata
            .issuer
            .as_deref()
            .is_some_and(|i| same_issuer(i, bound))
    {
        return Err(ClientError::Discovery(format!(
            "the MCP server's authorization server is {}, not {bound}, the issuer the client is \
             registered at: its credentials are not sent there",
            metadata
                .issuer
                .as_deref()
                .unwrap_or("unnamed (no metadata)")
        )));
    }
    let mut scopes = requested_scopes(opts);
    if scopes.is_empty() {
        scopes = m.select_initial_scopes(&[]).await;
    }
    let methods: Option<Vec<String>> = metadata
        .additional_fields
        .get("token_endpoint_auth_methods_supported")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    // The token endpoint is the MCP server's choice: asked only where its
    // discovery could go.
    let policy = SharedPolicy::for_server(server_url).map_err(ClientError::Discovery)?;
    let mut endpoint = TokenEndpoint::new(metadata.token_endpoint.clone()).with_policy(policy);
    if let Some(issuer) = &metadata.issuer {
        endpoint = endpoint.with_issuer(issuer.clone());
    }
    if opts.dpop
        && supports_es256(&metadata.additional_fields)
        && crate::dpop::resource_accepts_dpop(server_url, challenge).await
    {
        let key = DpopKey::generate().map_err(|e| ClientError::Token(e.to_string()))?;
        endpoint = endpoint.with_dpop(key);
    }
    // RFC 8707: the token is for this MCP server and no other.
    let resource = server_url;
    tracing::debug!(
        grant = opts.grant.name(),
        scopes = %scopes.join(" "),
        "asking the authorization server for a token"
    );
    let methods = methods.as_deref();
    let result = match &opts.grant {
        Grant::ClientCredentials(client) => {
            grants::client_credentials(&endpoint, &client.auth(methods), &scopes, Some(resource))
                .await
        }
        Grant::Workload { assertion, client } => {
            grants::jwt_bearer(
                &endpoint,
                assertion,
                &client.auth(methods),
                &scopes,
                Some(resource),
            )
            .await
        }
        Grant::Enterprise {
            idp,
            idp_client,
            id_token,
            client,
        } => {
            grants::enterprise_managed(
                idp,
                &idp_client.auth(None),
                id_token,
                &endpoint,
                &client.auth(methods),
                resource,
                &scopes,
            )
            .await
        }
    };
    let grant = result.map_err(|e| ClientError::Token(e.to_string()))?;
    Ok((grant, endpoint.dpop().cloned(), scopes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let grant = Grant::Enterprise {
            idp: TokenEndpoint::new("https://idp.example/token"),
            idp_client: MachineClient::secret("idp-app", "idp-secret-value"),
            id_token: "eyJ.id-token-value.sig".into(),
            client: MachineClient::secret("mcp-app", "mcp-secret-value"),
        };
        let shown = format!("{grant:?}");
        for secret in ["idp-secret-value", "id-token-value", "mcp-secret-value"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("idp-app") && shown.contains("mcp-app"),
            "{shown}"
        );
        let shown = format!(
            "{:?}",
            Grant::Workload {
                assertion: "eyJ.workload-claims.sig".into(),
                client: MachineClient::public("w"),
            }
        );
        assert!(!shown.contains("workload-claims"), "{shown}");
    }

    /// A grant that carries a secret, a key's assertion, a workload token
    /// or an ID-JAG is refused without `MachineOptions::issuer`, before any
    /// request, naming the option and the flag; a public client's client
    /// credentials need none.
    #[tokio::test]
    async fn credentials_without_an_issuer_are_refused_before_any_request() {
        use std::sync::atomic::Ordering;
        let (url, connections) = crate::connect::tests::connection_counter().await;
        let (pem, _) =
            crate::grants::tests::ec_key(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let keyed = MachineClient::private_key("bot", pem, SigningAlgorithm::Es256).unwrap();
        for (grant, what) in [
            (
                Grant::ClientCredentials(MachineClient::secret("bot", "s")),
                "a client secret",
            ),
            (Grant::ClientCredentials(keyed), "a private key"),
            (
                Grant::Workload {
                    assertion: "eyJ.w.s".into(),
                    client: MachineClient::public("bot"),
                },
                "a workload token",
            ),
            (
                Grant::Enterprise {
                    idp: TokenEndpoint::new("https://idp.example/token"),
                    idp_client: MachineClient::public("idp-app"),
                    id_token: "eyJ.i.s".into(),
                    client: MachineClient::public("bot"),
                },
                "an ID-JAG",
            ),
        ] {
            let Err(e) = connect_machine(&url, &MachineOptions::new(grant)).await else {
                panic!("connected");
            };
            assert!(matches!(e, ClientError::Config(_)), "{e}");
            let shown = e.to_string();
            assert!(
                shown.contains(what)
                    && shown.contains("MachineOptions::issuer")
                    && shown.contains("--issuer"),
                "{shown}"
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0, "a request was made");
        // A public client goes on (to the server, which hangs up).
        let public = MachineOptions::new(Grant::ClientCredentials(MachineClient::public("bot")));
        let Err(e) = connect_machine(&url, &public).await else {
            panic!("connected");
        };
        assert!(matches!(e, ClientError::Server(_)), "{e}");
        assert!(connections.load(Ordering::SeqCst) > 0);
    }

    #[test]
    fn a_secret_follows_the_metadata_and_a_key_wins() {
        let client = MachineClient::secret("app", "s");
        assert_eq!(client.auth(None).method(), "client_secret_basic");
        let post = ["client_secret_post".to_owned()];
        assert_eq!(client.auth(Some(&post)).method(), "client_secret_post");
        assert_eq!(MachineClient::public("app").auth(None).method(), "none");
    }

    #[test]
    fn a_challenge_adds_its_scopes() {
        let mut opts = MachineOptions::new(Grant::ClientCredentials(MachineClient::public("a")));
        opts.scopes = vec!["mcp:tools".into()];
        assert_eq!(requested_scopes(&opts), ["mcp:tools"]);
        opts.challenge = Some(r#"Bearer error="insufficient_scope", scope="mcp:admin""#.into());
        assert_eq!(requested_scopes(&opts), ["mcp:tools", "mcp:admin"]);
    }
}
