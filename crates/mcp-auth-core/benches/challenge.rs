#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! Rendering the `WWW-Authenticate` challenges of a rejection: a bare 401
//! for a request without credentials, and an `invalid_token` 401 with a
//! description, for a server advertising Bearer and API-key schemes.
//!
//! ```text
//! cargo bench -p mcp-auth-core --bench challenge
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_core::{AuthError, ChallengeScheme};

fn bench(c: &mut Criterion) {
    let schemes = [
        ChallengeScheme::Bearer,
        ChallengeScheme::ApiKey {
            header: "X-API-Key".into(),
        },
    ];
    let rm = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    let scopes = vec!["mcp:tools".to_owned(), "mcp:read".to_owned()];
    let mut with_bearer = http::HeaderMap::new();
    with_bearer.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer abc.def.ghi"),
    );
    let none = http::HeaderMap::new();
    let missing = AuthError::MissingCredentials;
    let invalid = AuthError::invalid_token("the token has expired");

    let mut group = c.benchmark_group("challenge");
    group.bench_function("missing credentials", |b| {
        b.iter(|| missing.challenge_headers(&schemes, Some(rm), &scopes, black_box(&none)))
    });
    group.bench_function("invalid_token", |b| {
        b.iter(|| invalid.challenge_headers(&schemes, Some(rm), &scopes, black_box(&with_bearer)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
