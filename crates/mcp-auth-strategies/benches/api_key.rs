#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! The API-key check: a SHA-256 of the presented key compared in constant
//! time with every configured digest, for 1 and 100 configured keys, with
//! the right key and a wrong one.
//!
//! ```text
//! cargo bench -p mcp-auth-strategies --bench api_key
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_core::{AuthRequest, Authenticator};
use mcp_auth_strategies::ApiKeyAuthenticator;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("api_key");
    for n in [1usize, 100] {
        let keys: Vec<String> = (0..n)
            .map(|i| format!("bench-key-{i:04}-0123456789abcdef"))
            .collect();
        let auth = ApiKeyAuthenticator::new(&keys).expect("keys");
        let last = keys.last().cloned().unwrap_or_default();
        let good = AuthRequest::builder().header("x-api-key", &last).build();
        let bad = AuthRequest::builder()
            .header("x-api-key", "not-a-configured-key-0123456789")
            .build();
        assert!(rt.block_on(auth.authenticate(&good)).is_ok());
        assert!(rt.block_on(auth.authenticate(&bad)).is_err());
        group.bench_function(format!("{n} keys, valid"), |b| {
            b.to_async(&rt).iter(|| auth.authenticate(&good))
        });
        group.bench_function(format!("{n} keys, wrong"), |b| {
            b.to_async(&rt).iter(|| auth.authenticate(&bad))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
