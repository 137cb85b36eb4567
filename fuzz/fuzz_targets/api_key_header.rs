//! The API-key header path: `ApiKeyAuthenticator::authenticate` on requests
//! whose `X-API-Key` headers are the input's NUL-separated fields (0, 1 or
//! more headers; each field that `HeaderValue::from_bytes` accepts), with a
//! plain and a `sha256:` configuration of the same keys; the
//! `Authorization` parser (`AuthRequest::bearer_token`) on the same bytes;
//! and `ApiKeyAuthenticator::from_list` on the input as a key list.
//!
//! Asserts: an accepted request carried exactly one key header, equal to a
//! configured key, and its principal names that key's fingerprint; no
//! header means `MissingCredentials` (whatever the query string says), two
//! or more mean `invalid_request`; plain and hashed configurations give
//! the same answer; a bearer token, when found, is a `token68` suffix of the
//! header; every plain key that `from_list` accepts authenticates (a
//! named one as `api-key:<name>`).

#![no_main]

mod common;

use std::sync::LazyLock;

use http::{HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use mcp_auth_core::{AuthError, AuthRequest, Authenticator};
use mcp_auth_strategies::{API_KEY_HEADER, ApiKeyAuthenticator, fingerprint};
use sha2::{Digest, Sha256};

const KEYS: [&str; 2] = ["k-0123456789abcdef-primary", "second-key-with-some-length"];

static PLAIN: LazyLock<ApiKeyAuthenticator> =
    LazyLock::new(|| ApiKeyAuthenticator::from_list(&KEYS.join(",")).expect("plain keys"));
static HASHED: LazyLock<ApiKeyAuthenticator> = LazyLock::new(|| {
    let list: Vec<String> = KEYS
        .iter()
        .map(|k| format!("sha256:{}", hex::encode(Sha256::digest(k.as_bytes()))))
        .collect();
    ApiKeyAuthenticator::new(list).expect("hashed keys")
});

fn request(values: &[HeaderValue], uri: Option<&str>) -> AuthRequest {
    let mut req = AuthRequest::default();
    for v in values {
        req.headers.append(API_KEY_HEADER, v.clone());
    }
    if let Some(u) = uri.and_then(|u| u.parse().ok()) {
        req.uri = u;
    }
    req
}

fn check_bearer(value: &HeaderValue) {
    let mut req = AuthRequest::default();
    req.headers.insert(AUTHORIZATION, value.clone());
    if let Ok(Some(token)) = req.bearer_token() {
        let header = value
            .to_str()
            .expect("a token was read from a non-ASCII header");
        assert!(header.ends_with(token), "{token:?} is not from {header:?}");
        let body = token.trim_end_matches('=');
        assert!(!body.is_empty());
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
            "{token:?} is not token68"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let fields = common::fields(data);
    let values: Vec<HeaderValue> = fields
        .iter()
        .filter_map(|f| HeaderValue::from_bytes(f).ok())
        .collect();
    for v in &values {
        check_bearer(v);
    }
    // Without a key header, the input is also tried as a URI carrying a key
    // in its query string: never accepted.
    let uri = format!("/mcp?{}", common::text(data));
    let req = request(&values, Some(&uri));

    common::block_on(async {
        let plain = PLAIN.authenticate(&req).await;
        let hashed = HASHED.authenticate(&req).await;
        assert_eq!(plain, hashed, "plain and hashed configurations disagree");
        match values.len() {
            0 => assert_eq!(plain, Err(AuthError::MissingCredentials)),
            1 => {
                if let Ok(p) = &plain {
                    let key = values[0].as_bytes();
                    assert!(KEYS.iter().any(|k| k.as_bytes() == key), "accepted {key:?}");
                    assert_eq!(p.subject, format!("api-key:{}", fingerprint(key)));
                }
            }
            _ => assert!(
                matches!(plain, Err(AuthError::InvalidRequest { .. })),
                "several key headers: {plain:?}"
            ),
        }

        // The input as an MCP_API_KEYS list: every plain key it accepts
        // authenticates, alone in its header.
        let list = common::text(data);
        if let Ok(auth) = ApiKeyAuthenticator::from_list(&list) {
            assert!(!auth.is_empty());
            for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                // `sha256:<hex>` is a digest; `name:key[:scopes]` a named key.
                let key = match entry.split_once(':') {
                    _ if entry.starts_with("sha256:") => continue,
                    None => entry,
                    Some((_, rest)) if rest.starts_with("sha256:") => continue,
                    Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
                };
                let v =
                    HeaderValue::from_str(key).expect("from_list checked the key is header-safe");
                let ok = auth.authenticate(&request(&[v], None)).await;
                assert!(ok.is_ok(), "configured key of {entry:?} refused: {ok:?}");
                if let (Ok(p), Some((name, _))) = (&ok, entry.split_once(':')) {
                    assert_eq!(p.subject, format!("api-key:{name}"), "named key's subject");
                }
            }
        }
    });
});
