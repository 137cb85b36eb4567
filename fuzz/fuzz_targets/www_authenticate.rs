//! `WWW-Authenticate` challenges, both ends.
//!
//! Client side: mcp-auth-client keeps a server's Bearer challenge as text
//! and hands it to rmcp (`AuthorizationRequest::with_challenge`,
//! `resolve_metadata_from_challenge`), whose parser is
//! `WWWAuthenticateParams::parse`; mcp-auth-core only renders challenges.
//! So the client-side parser fuzzed here is that one, on (a) the input as
//! text and (b) the input as a header value (what `probe` reads through
//! `HeaderValue::to_str`). Asserts: no panic.
//!
//! Server to client: the input picks an error (first byte) and gives its
//! description and scopes (NUL-separated); mcp-auth-core renders the
//! challenges (`AuthError::challenge_headers`, Bearer and ApiKey). Asserts:
//! every rendered value is a visible-ASCII header value (nothing can split
//! or forge a header); the Bearer one starts with `Bearer`; and, when the
//! free-text inputs contain no `=`, rmcp reads back exactly the `error`,
//! `scope`, `resource_metadata` and `error_description` that were rendered.
//! (rmcp finds parameters by substring search, so text containing
//! `scope=` inside another parameter's value can be mistaken for the
//! parameter; see docs/FUZZING.md.)

#![no_main]

mod common;

use std::sync::LazyLock;

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use mcp_auth_core::{AuthError, ChallengeScheme};
use rmcp::transport::auth::WWWAuthenticateParams;
use url::Url;

const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

static BASE: LazyLock<Url> =
    LazyLock::new(|| Url::parse("https://mcp.example.com/mcp").expect("base URL"));
static METADATA_URL: LazyLock<Url> = LazyLock::new(|| Url::parse(METADATA).expect("metadata URL"));

fn client_parse(header: &str) -> WWWAuthenticateParams {
    let p = WWWAuthenticateParams::parse(header, &BASE);
    let _ = (p.is_insufficient_scope(), p.is_invalid_token());
    p
}

fuzz_target!(|data: &[u8]| {
    // Client side, raw.
    client_parse(&common::text(data));
    if let Ok(v) = http::HeaderValue::from_bytes(data)
        && let Ok(s) = v.to_str()
    {
        client_parse(s);
    }

    // Server renders, client parses.
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let f = common::fields(rest);
    let description = common::text(f.first().copied().unwrap_or_default());
    let scopes: Vec<String> = common::text(f.get(1).copied().unwrap_or_default())
        .split(' ')
        .map(str::to_owned)
        .collect();
    let default_scopes: Vec<String> = common::text(f.get(2).copied().unwrap_or_default())
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let err = match kind % 5 {
        0 => AuthError::MissingCredentials,
        1 => AuthError::invalid_token(description.clone()),
        2 => AuthError::invalid_request(description.clone()),
        3 => AuthError::insufficient_scope(scopes.clone()),
        _ => AuthError::forbidden(description.clone()),
    };
    let schemes = [
        ChallengeScheme::Bearer,
        ChallengeScheme::ApiKey {
            header: "X-API-Key".to_owned(),
        },
    ];
    let values =
        err.challenge_headers(&schemes, Some(METADATA), &default_scopes, &HeaderMap::new());
    if matches!(err, AuthError::Forbidden { .. }) {
        // No scope or login lifts it: no challenge at all.
        assert!(values.is_empty());
        return;
    }
    assert_eq!(values.len(), 2);
    for v in &values {
        let s = v.to_str().expect("a rendered challenge is visible ASCII");
        assert!(s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)));
    }
    let bearer = values[0].to_str().unwrap_or_default();
    assert!(bearer.starts_with("Bearer"), "{bearer:?}");
    assert!(values[1].to_str().unwrap_or_default().starts_with("ApiKey"));

    let rendered = err.challenge(ChallengeScheme::Bearer, Some(METADATA), &default_scopes);
    assert_eq!(
        rendered.to_header_value(),
        bearer,
        "challenge_headers and challenge disagree"
    );
    let parsed = client_parse(bearer);
    let plain = |s: &str| !s.contains('=');
    if plain(&description)
        && scopes.iter().all(|s| plain(s))
        && default_scopes.iter().all(|s| plain(s))
    {
        assert_eq!(parsed.error.as_deref(), rendered.get("error"), "{bearer:?}");
        assert_eq!(parsed.scope.as_deref(), rendered.get("scope"), "{bearer:?}");
        assert_eq!(
            parsed.error_description.as_deref(),
            rendered.get("error_description"),
            "{bearer:?}"
        );
        assert_eq!(
            parsed.resource_metadata_url.as_ref(),
            Some(&*METADATA_URL),
            "{bearer:?}"
        );
    }
});
