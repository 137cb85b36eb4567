//! Arbitrary bytes as a bearer token, against verifiers with static keys
//! (HS256 secret; EC P-256, RSA and Ed25519 public keys, with and without
//! `kid`) and through the bearer strategy (the `Authorization` header parser
//! first).
//!
//! Asserts: nothing made of fuzz bytes is ever accepted. None of the seeds
//! is signed with these keys, and forging HMAC-SHA256 or a signature is not
//! something a fuzzer does, so any `Ok` is a verification bug.

#![no_main]

mod common;

use std::sync::LazyLock;

use http::{HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use mcp_auth_core::{AuthRequest, Authenticator};
use mcp_auth_jwt::{Algorithm, Audience, JwtVerifier, VerifyKey};
use mcp_auth_strategies::JwtAuthenticator;

const SECRET: &[u8] = b"fuzz-only-hmac-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://mcp.example.com/mcp";

const EC_PUB: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/ec256.pub.pem");
const RSA_PUB: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/rsa.pub.pem");
const ED_PUB: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/ed25519.pub.pem");

struct Targets {
    verifiers: Vec<JwtVerifier>,
    bearer: JwtAuthenticator,
}

fn verifier(keys: Vec<VerifyKey>, cache: usize) -> JwtVerifier {
    JwtVerifier::builder()
        .static_keys(keys)
        .issuer(ISSUER)
        .audience(Audience::OneOf(vec![AUDIENCE.to_owned()]))
        .cache_capacity(cache)
        .build()
        .expect("fuzz verifier")
}

static T: LazyLock<Targets> = LazyLock::new(|| {
    let hs = || VerifyKey::hmac(SECRET, Algorithm::HS256).expect("hmac key");
    let ec = || VerifyKey::from_pem(EC_PUB).expect("EC key");
    let rsa = || VerifyKey::from_pem(RSA_PUB).expect("RSA key");
    let ed = || VerifyKey::from_pem(ED_PUB).expect("Ed25519 key");
    let keyset = vec![
        hs().with_kid("hs"),
        ec().with_kid("ec"),
        rsa(),
        ed().with_kid("ed"),
    ];
    Targets {
        verifiers: vec![
            verifier(vec![hs()], 0),
            verifier(vec![hs()], 16),
            verifier(vec![ec()], 0),
            verifier(vec![rsa()], 0),
            verifier(keyset, 0),
        ],
        bearer: JwtAuthenticator::new(verifier(vec![hs(), ec()], 0)),
    }
});

fuzz_target!(|data: &[u8]| {
    let token = common::text(data);
    common::block_on(async {
        for v in &T.verifiers {
            if let Ok(t) = v.verify(&token).await {
                panic!("a token made of fuzz bytes was accepted: {token:?} -> {t:?}");
            }
        }
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(data);
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            let mut req = AuthRequest::default();
            req.headers.insert(AUTHORIZATION, v);
            if let Ok(p) = T.bearer.authenticate(&req).await {
                panic!("the bearer strategy accepted fuzz bytes: {token:?} -> {p:?}");
            }
        }
    });
});
