#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! Token verification per algorithm with a cached key: static keys, and a
//! JWKS fetched once from a real server on loopback. These measure the full
//! check (the verified-token cache is off); the "repeated" cases measure a
//! token seen before, served from that cache.
//!
//! ```text
//! cargo bench -p mcp-auth-jwt --bench verify
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use mcp_auth_jwt::{Audience, JwksCache, JwtVerifier, VerifyKey};

const AUD: &str = "https://mcp.example/mcp";
const ISS: &str = "https://issuer.example";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("test key")
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "alice", "iss": ISS, "aud": AUD, "scope": "mcp:tools",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, &claims(), key).expect("sign")
}

fn verifier(keys: Vec<VerifyKey>) -> JwtVerifier {
    JwtVerifier::builder()
        .static_keys(keys)
        .issuer(ISS)
        .audience(Audience::OneOf(vec![AUD.into()]))
        .cache_capacity(0)
        .build()
        .expect("verifier")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("verify");
    group.measurement_time(Duration::from_secs(3));

    let secret = b"a-benchmark-secret-of-32-bytes-or-more";
    let hs = verifier(vec![
        VerifyKey::hmac(secret, Algorithm::HS256).expect("key"),
    ]);
    let t = sign(Algorithm::HS256, &EncodingKey::from_secret(secret), None);
    group.bench_function("HS256 static", |b| b.to_async(&rt).iter(|| hs.verify(&t)));

    let mut jwks = Vec::new();
    for (file, alg) in [
        ("rsa", Algorithm::RS256),
        ("ec256", Algorithm::ES256),
        ("ed25519", Algorithm::EdDSA),
    ] {
        let p = pem(file);
        let enc = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&p),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&p),
            _ => EncodingKey::from_rsa_pem(&p),
        }
        .expect("private key");
        let v = verifier(vec![
            VerifyKey::from_pem(&pem(&format!("{file}.pub"))).expect("public key"),
        ]);
        let t = sign(alg, &enc, None);
        group.bench_function(format!("{alg:?} static"), |b| {
            b.to_async(&rt).iter(|| v.verify(&t))
        });
        let mut jwk = Jwk::from_encoding_key(&enc, alg).expect("jwk");
        jwk.common.key_id = Some(file.to_owned());
        jwks.push((jwk, sign(alg, &enc, Some(file)), alg));
    }

    // The same keys through the JWKS cache (fetched once, then cached).
    let doc = serde_json::json!({ "keys": jwks.iter().map(|(k, _, _)| k).collect::<Vec<_>>() });
    let url = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    let cache = rt.block_on(async { JwksCache::builder(url.parse().expect("url")).build() });
    let build = |capacity: usize| {
        JwtVerifier::builder()
            .jwks(cache.clone())
            .issuer(ISS)
            .audience(Audience::OneOf(vec![AUD.into()]))
            .cache_capacity(capacity)
            .build()
            .expect("verifier")
    };
    let v = build(0);
    for (_, t, alg) in &jwks {
        rt.block_on(v.verify(t)).expect("warm-up verify");
        group.bench_function(format!("{alg:?} jwks"), |b| {
            b.to_async(&rt).iter(|| v.verify(t))
        });
    }
    let cached = build(10_000);
    for (_, t, alg) in &jwks {
        rt.block_on(cached.verify(t)).expect("warm-up verify");
        group.bench_function(format!("{alg:?} jwks repeated"), |b| {
            b.to_async(&rt).iter(|| cached.verify(t))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
