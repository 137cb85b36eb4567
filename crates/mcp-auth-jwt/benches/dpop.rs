#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! DPoP proof verification (RFC 9449) per algorithm: one
//! [`DpopVerifier::verify`] of a valid proof with `ath` (the access token's
//! hash), signed with the test keys in `tests/keys/`: every stateless check,
//! the signature and the key's thumbprint. The replay check (a store
//! round trip) and the token's own verification are not included. Then the
//! RFC 7638 thumbprint alone per key type, and what signing an ES256 proof
//! costs a client (the load benchmark's `oauth2-dpop` clients do it on every
//! request).
//!
//! ```text
//! cargo bench -p mcp-auth-jwt --bench dpop
//! ```

use std::{hint::black_box, time::Duration};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, jwk::Jwk};
use mcp_auth_jwt::{DpopVerifier, jwk_thumbprint};
use serde_json::{Value, json};

const URL: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_750_000_000;
fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("test key")
}

/// A signing key from `tests/keys/` and its public JWK: the members the
/// thumbprint covers, nothing else (as a client sends it).
fn key(file: &str, alg: Algorithm) -> (EncodingKey, Value) {
    let p = pem(file);
    let enc = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&p),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&p),
        _ => EncodingKey::from_rsa_pem(&p),
    }
    .expect("private key");
    let jwk = serde_json::to_value(Jwk::from_encoding_key(&enc, alg).expect("jwk")).expect("json");
    let public = jwk
        .as_object()
        .expect("object")
        .iter()
        .filter(|(k, _)| ["kty", "crv", "x", "y", "n", "e"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (enc, Value::Object(public))
}

/// An access token like the `oauth2` load benchmark's (RS256, the same
/// claims): `ath` is the hash of the whole token, so its length counts.
fn access_token() -> String {
    let (enc, _) = key("rsa", Algorithm::RS256);
    let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
    h.kid = Some("bench".into());
    h.typ = Some("at+jwt".into());
    let claims = json!({
        "iss": "http://127.0.0.1:40000", "aud": "http://127.0.0.1:40001/mcp",
        "sub": "bench-user", "client_id": "bench", "scope": "mcp:tools", "jti": "bench-0",
        "exp": NOW + 3600, "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
    });
    jsonwebtoken::encode(&h, &claims, &enc).expect("token")
}

fn ath(token: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A valid proof for `POST URL` at `NOW` with `ath` of `token`.
fn proof(enc: &EncodingKey, alg: Algorithm, jwk: &Value, token: &str) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
    let claims = json!({"jti": "Tf1l6kIbd8mkWTVVz9eP2Q", "htm": "POST", "htu": URL,
                        "iat": NOW, "ath": ath(token)});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), enc, alg).expect("sign");
    format!("{input}.{sig}")
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("ec256", Algorithm::ES256, "P-256"),
        ("ec384", Algorithm::ES384, "P-384"),
        ("ed25519", Algorithm::EdDSA, "Ed25519"),
        ("rsa", Algorithm::RS256, "RSA-2048"),
        ("rsa", Algorithm::PS256, "RSA-2048"),
    ];
    let verifier = DpopVerifier::builder()
        .algorithms(&cases.map(|(_, alg, _)| alg))
        .build()
        .expect("verifier");

    let token = access_token();
    let mut group = c.benchmark_group("dpop verify");
    group.measurement_time(Duration::from_secs(3));
    let mut jwks = Vec::new();
    for (file, alg, curve) in cases {
        let (enc, jwk) = key(file, alg);
        let p = proof(&enc, alg, &jwk, &token);
        let ok = verifier
            .verify(&p, "POST", URL, Some(&token), None, NOW)
            .expect("a valid proof");
        assert_eq!(ok.jkt, jwk_thumbprint(&jwk).expect("thumbprint"));
        group.bench_function(format!("{alg:?} ({curve})"), |b| {
            b.iter(|| {
                verifier.verify(
                    black_box(&p),
                    "POST",
                    URL,
                    Some(black_box(&token)),
                    None,
                    NOW,
                )
            })
        });
        if !jwks.iter().any(|(c, _)| *c == curve) {
            jwks.push((curve, jwk));
        }
    }
    group.finish();

    let mut group = c.benchmark_group("dpop thumbprint");
    group.measurement_time(Duration::from_secs(3));
    for (curve, jwk) in &jwks {
        group.bench_function(*curve, |b| b.iter(|| jwk_thumbprint(black_box(jwk))));
    }
    group.finish();

    // The client's side: an ES256 signature over a proof's signing input
    // with a key parsed once (what the load benchmark's clients do).
    let rng = SystemRandom::new();
    let pair =
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("generated P-256 key");
    let (_, jwk) = key("ec256", Algorithm::ES256);
    let input = proof(
        &EncodingKey::from_ec_pem(&pem("ec256")).expect("key"),
        Algorithm::ES256,
        &jwk,
        &token,
    );
    let input = input.rsplit_once('.').expect("three segments").0.to_owned();
    let mut group = c.benchmark_group("dpop sign");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("ES256 (P-256), client", |b| {
        b.iter(|| pair.sign(&rng, black_box(input.as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
