//! The authorization server's `issuer`, confirmed at the issuer's own
//! address before anything is tied to it.
//!
//! ```text
//! resolved metadata:  issuer https://as.example/tenant, token_endpoint T
//! confirm() fetches:  https://as.example/.well-known/oauth-authorization-server/tenant
//!                     (then the OpenID Connect forms), and requires the
//!                     document there to name the same issuer and endpoints
//! ```
//!
//! rmcp checks a discovered document's `issuer` against the URL it fetched
//! the document from when that URL has one of the standard well-known
//! forms. A protected-resource document may also name a metadata document
//! at any other `/.well-known/` path, and then nothing ties the `issuer` it
//! claims to the server that serves it. The client keys what it keeps by
//! issuer (a pre-registered client bound to one, stored registrations,
//! stored tokens), so a hostile MCP server could name a real issuer with
//! its own token endpoint and be sent that issuer's client secret or
//! refresh token. [`confirm`] closes that: the issuer's own metadata, from
//! the locations RFC 8414 §3.1 and OpenID Connect Discovery derive from
//! it (in the MCP spec's order), must name the same issuer, authorization,
//! token and registration endpoints. What the client then reads from the
//! metadata (PKCE methods, DPoP algorithms, whether `iss` comes back,
//! client authentication methods, ...) is the issuer's own document, not
//! the one the MCP server pointed to: a hostile MCP server naming a real
//! issuer cannot talk the client out of S256, DPoP or the `iss` check.

use rmcp::transport::auth::AuthorizationMetadata;
use std::time::Duration;
use url::Url;

use crate::{ClientError, oauth_http::OAuthHttp};

/// Time allowed for each metadata request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Requires `metadata` (resolved for the MCP server at `server_url`) to be
/// what its issuer publishes at its own well-known locations, and returns
/// the issuer's own document that confirmed it (the same issuer and
/// endpoints; its other fields are the issuer's word). Metadata without an
/// issuer (the 2025-03-26 fallback endpoints) has nothing to confirm and
/// comes back as it is: nothing is kept or reused under an issuer for it.
pub(crate) async fn confirm(
    server_url: &str,
    metadata: AuthorizationMetadata,
) -> Result<AuthorizationMetadata, ClientError> {
    let Some(issuer) = metadata.issuer.as_deref() else {
        return Ok(metadata);
    };
    let refused = |why: String| {
        ClientError::Discovery(format!(
            "the authorization server metadata names the issuer {issuer}, but {why}: \
             not using it"
        ))
    };
    let candidates = well_known(issuer)
        .ok_or_else(|| refused("that is not an http(s) URL without query or fragment".into()))?;
    let http = OAuthHttp::new(server_url).map_err(ClientError::Discovery)?;
    // Every location is the issuer's own; a provider may publish its RFC
    // 8414 and its OpenID Connect documents with different fields, so any
    // one naming these endpoints confirms them.
    let mut differing = None;
    // The first of the issuer's documents naming these endpoints, unless
    // one is the discovered document itself (an issuer may publish
    // different fields in its RFC 8414 and OpenID Connect documents: the
    // one discovery found stays what the client reads).
    let mut confirmed = None;
    let discovered = serde_json::to_value(&metadata).ok();
    for url in &candidates {
        // Redirects only within the issuer's origin: a document another
        // origin serves (through an open redirect at the issuer, say) is
        // not the issuer's word.
        let Some(published) = http
            .get_json_from_origin::<AuthorizationMetadata>(url.as_str(), TIMEOUT)
            .await
        else {
            continue;
        };
        if !published
            .issuer
            .as_deref()
            .is_some_and(|i| same_issuer(i, issuer))
        {
            continue;
        }
        if same_endpoints(&published, &metadata) {
            if discovered.is_some() && serde_json::to_value(&published).ok() == discovered {
                return Ok(published);
            }
            confirmed.get_or_insert(published);
            continue;
        }
        differing.get_or_insert(url);
    }
    if let Some(published) = confirmed {
        return Ok(published);
    }
    Err(refused(match differing {
        Some(url) => {
            tracing::warn!(
                issuer,
                "the issuer's own metadata names other endpoints than the metadata discovered \
                 for this MCP server"
            );
            format!("the issuer's own metadata ({url}) names other endpoints")
        }
        None => "the issuer publishes no metadata naming itself at its well-known locations".into(),
    }))
}

/// The metadata locations of `issuer`, in the MCP spec's order: RFC 8414
/// path insertion, OpenID Connect path insertion, then OpenID Connect path
/// appending (for an issuer with a path); RFC 8414, then OpenID Connect
/// (without). `None` when the issuer is not an http(s) URL without query
/// and fragment (RFC 8414 §2), or names a user (`x@host`: a host hidden
/// behind what looks like another).
fn well_known(issuer: &str) -> Option<Vec<Url>> {
    let base = Url::parse(issuer).ok()?;
    if !matches!(base.scheme(), "https" | "http")
        || base.query().is_some()
        || base.fragment().is_some()
        || base.host().is_none()
        || !base.username().is_empty()
        || base.password().is_some()
    {
        return None;
    }
    let path = base.path().trim_matches('/');
    let paths = if path.is_empty() {
        vec![
            "/.well-known/oauth-authorization-server".to_owned(),
            "/.well-known/openid-configuration".to_owned(),
        ]
    } else {
        vec![
            format!("/.well-known/oauth-authorization-server/{path}"),
            format!("/.well-known/openid-configuration/{path}"),
            format!("/{path}/.well-known/openid-configuration"),
        ]
    };
    Some(
        paths
            .into_iter()
            .map(|p| {
                let mut u = base.clone();
                u.set_path(&p);
                u
            })
            .collect(),
    )
}

/// Issuers compare exactly, but for a trailing `/`.
pub(crate) fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Whether the endpoints credentials and codes go to are the same.
fn same_endpoints(a: &AuthorizationMetadata, b: &AuthorizationMetadata) -> bool {
    a.authorization_endpoint == b.authorization_endpoint
        && a.token_endpoint == b.token_endpoint
        && a.registration_endpoint == b.registration_endpoint
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(issuer: &str) -> Vec<String> {
        well_known(issuer)
            .unwrap()
            .iter()
            .map(Url::to_string)
            .collect()
    }

    fn document(issuer: &str, token_endpoint: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": token_endpoint,
        })
    }

    /// An issuer publishing its RFC 8414 and OpenID Connect documents with
    /// different fields is confirmed by the one naming the discovered
    /// endpoints; none naming them is a refusal that says so.
    #[tokio::test]
    async fn any_of_the_issuers_own_documents_confirms() {
        use axum::{Json, Router, routing::get};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (rfc8414, oidc) = (
            document(&base, &format!("{base}/oauth/token")),
            document(&base, &format!("{base}/token")),
        );
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { Json(rfc8414) }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(oidc) }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = format!("{base}/mcp");
        let discovered = |token_endpoint: String| {
            serde_json::from_value::<AuthorizationMetadata>(document(&base, &token_endpoint))
                .unwrap()
        };
        // Either document confirms what it names, and what the client
        // reads comes from it: fields the discovered document adds (a
        // hostile MCP server's, claiming S256 and dropping DPoP, say) do
        // not count.
        for token in ["/token", "/oauth/token"] {
            let mut claimed = discovered(format!("{base}{token}"));
            claimed.code_challenge_methods_supported = Some(vec!["S256".into()]);
            let confirmed = confirm(&server, claimed).await.unwrap();
            assert_eq!(confirmed.token_endpoint, format!("{base}{token}"));
            assert_eq!(
                confirmed.code_challenge_methods_supported, None,
                "{confirmed:?}"
            );
        }
        // Endpoints neither names.
        let e = confirm(&server, discovered("https://evil.example/token".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("names other endpoints"), "{e}");
        // Another issuer's documents confirm nothing for this one.
        let mut elsewhere = discovered(format!("{base}/token"));
        elsewhere.issuer = Some(format!("{base}/tenant"));
        let e = confirm(&server, elsewhere).await.unwrap_err().to_string();
        assert!(e.contains("publishes no metadata naming itself"), "{e}");
    }

    /// An issuer whose two documents name the same endpoints with other
    /// fields: the one discovery found is what the client reads when it is
    /// one of them; a discovered document that is neither (fields added on
    /// the way) is replaced by the issuer's first.
    #[tokio::test]
    async fn the_discovered_document_stays_when_it_is_the_issuers_own() {
        use axum::{Json, Router, routing::get};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let rfc8414 = document(&base, &format!("{base}/token"));
        let mut oidc = rfc8414.clone();
        oidc["code_challenge_methods_supported"] = serde_json::json!(["S256"]);
        let served = (rfc8414.clone(), oidc.clone());
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || async move { Json(served.0) }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(served.1) }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = format!("{base}/mcp");
        let has_s256 = |m: &AuthorizationMetadata| m.code_challenge_methods_supported.is_some();
        let found: AuthorizationMetadata = serde_json::from_value(oidc.clone()).unwrap();
        assert!(has_s256(&confirm(&server, found).await.unwrap()));
        let mut added = oidc;
        added["dpop_signing_alg_values_supported"] = serde_json::json!(["ES256"]);
        let added: AuthorizationMetadata = serde_json::from_value(added).unwrap();
        let confirmed = confirm(&server, added).await.unwrap();
        assert!(!has_s256(&confirmed), "the issuer's first document");
        assert!(
            !confirmed
                .additional_fields
                .contains_key("dpop_signing_alg_values_supported")
        );
    }

    /// The issuer's documents are read at its own origin: a location that
    /// redirects to another origin (an open redirect at the issuer, say)
    /// confirms nothing, one that redirects within it does (an attack
    /// pass: redirects anywhere were followed).
    #[tokio::test]
    async fn only_the_issuers_own_origin_confirms() {
        use axum::{Json, Router, response::Redirect, routing::get};
        let (elsewhere, issuer) = (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
        let other = format!(
            "http://127.0.0.1:{}",
            elsewhere.local_addr().unwrap().port()
        );
        let base = format!("http://127.0.0.1:{}", issuer.local_addr().unwrap().port());
        let doc = document(&base, &format!("{base}/token"));
        let served = doc.clone();
        tokio::spawn(async move {
            let app = Router::new().route("/doc", get(move || async move { Json(served) }));
            axum::serve(elsewhere, app).await.unwrap()
        });
        let away = format!("{other}/doc");
        let served = doc.clone();
        tokio::spawn(async move {
            let app = Router::new()
                .route(
                    "/.well-known/oauth-authorization-server",
                    get(move || async move { Redirect::temporary(&away) }),
                )
                .route(
                    "/.well-known/openid-configuration",
                    get(|| async { Redirect::temporary("/doc") }),
                )
                .route("/doc", get(move || async move { Json(served) }));
            axum::serve(issuer, app).await.unwrap()
        });
        let discovered: AuthorizationMetadata = serde_json::from_value(doc).unwrap();
        let server = format!("{base}/mcp");
        // The OpenID Connect location redirects within the origin: confirmed.
        confirm(&server, discovered.clone()).await.unwrap();
        // Each location alone: the redirect to another origin gives nothing.
        let only_away: Vec<_> = well_known(&base).unwrap();
        assert_eq!(only_away.len(), 2);
        let http = OAuthHttp::new(&server).unwrap();
        let followed: Option<AuthorizationMetadata> = http
            .get_json_from_origin(only_away[0].as_str(), TIMEOUT)
            .await;
        assert!(followed.is_none(), "a document from another origin");
        let followed: Option<AuthorizationMetadata> = http
            .get_json_from_origin(only_away[1].as_str(), TIMEOUT)
            .await;
        assert!(followed.is_some(), "a redirect within the origin");
    }

    #[test]
    fn locations_follow_the_mcp_order() {
        assert_eq!(
            paths("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            paths("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/"),
            [
                "https://cognito-idp.eu-west-1.amazonaws.com/.well-known/oauth-authorization-server/eu-west-1_AbC",
                "https://cognito-idp.eu-west-1.amazonaws.com/.well-known/openid-configuration/eu-west-1_AbC",
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/openid-configuration",
            ]
        );
        for bad in [
            "ftp://as.example",
            "https://as.example/?tenant=a",
            "https://as.example/#x",
            "not a url",
            // What reads as one host and is another.
            "https://cognito-idp.x@evil.example/p",
            "https://user:pw@as.example",
        ] {
            assert!(well_known(bad).is_none(), "{bad}");
        }
    }
}
