//! Structured JWTs: the input is a flags byte, then the header JSON and the
//! claims JSON separated by a NUL byte. Both are base64url-encoded and
//! joined, and the token is either signed for real (HS256 with the
//! verifier's secret, ES256 or RS256 with the private halves of its public
//! keys) or given a garbage signature. Real signatures get the fuzzer past
//! the signature check into header hygiene and claims validation.
//!
//! Flags: bits 0-1 signing (0 garbage, 1 HS256, 2 ES256, 3 RS256); bit 2
//! sets `exp` to now + 600 s, bit 3 sets `nbf` to now + 3600 s and bit 4
//! sets `iat` to now (when the claims are a JSON object), so time checks
//! are reachable.
//!
//! Asserts, for every accepted token: it was signed for real, with the
//! algorithm its header names; the header names no key of its own (`jku`,
//! `jwk`, `x5u`), no `crit`, an accepted `typ`, and a `kid` only of a
//! configured key; the claims *as the application sees them* (the decoded
//! map, where a duplicate key keeps its last value) have the configured
//! `iss`, an `aud` naming this resource, a subject, a valid unexpired `exp`
//! and a `nbf`/`iat` that are valid dates (`nbf` not in the future). And: a
//! verifier with the verified-token cache (tiny, to churn it) reaches the
//! same verdict as one without, and the bearer strategy agrees with the
//! verifier. A verifier with a maximum lifetime (`MCP_JWT_MAX_LIFETIME`)
//! accepts only what the plain one accepts, and only with a valid `iat`
//! that is not in the future and at most that lifetime before `exp`.

#![no_main]

mod common;

use std::sync::LazyLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderValue, header::AUTHORIZATION};
use jsonwebtoken::EncodingKey;
use libfuzzer_sys::fuzz_target;
use mcp_auth_core::{AuthRequest, Authenticator};
use mcp_auth_jwt::{Algorithm, Audience, JwtVerifier, VerifyKey, numeric_date};
use mcp_auth_strategies::JwtAuthenticator;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-only-hmac-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
const LEEWAY: u64 = 60;
const EC_KID: &str = "ec-1";
const MAX_LIFETIME: u64 = 3600;

const EC_PUB: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/ec256.pub.pem");
const EC_PRIV: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/ec256.pem");
const RSA_PUB: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/rsa.pub.pem");
const RSA_PRIV: &[u8] = include_bytes!("../../crates/mcp-auth-jwt/tests/keys/rsa.pem");

struct Targets {
    plain: JwtVerifier,
    limited: JwtVerifier,
    cached: JwtVerifier,
    bearer: JwtAuthenticator,
    hs: EncodingKey,
    ec: EncodingKey,
    rsa: EncodingKey,
}

static T: LazyLock<Targets> = LazyLock::new(|| {
    let keys = || {
        vec![
            VerifyKey::hmac(SECRET, Algorithm::HS256).expect("hmac key"),
            VerifyKey::from_pem(EC_PUB)
                .expect("EC key")
                .with_kid(EC_KID),
            VerifyKey::from_pem(RSA_PUB).expect("RSA key"),
        ]
    };
    let verifier = |cache: usize, max_lifetime: Option<u64>| {
        JwtVerifier::builder()
            .max_lifetime(max_lifetime.map(std::time::Duration::from_secs))
            .static_keys(keys())
            .issuer(ISSUER)
            .audience(Audience::OneOf(vec![AUDIENCE.to_owned()]))
            .leeway(std::time::Duration::from_secs(LEEWAY))
            .cache_capacity(cache)
            .build()
            .expect("fuzz verifier")
    };
    Targets {
        plain: verifier(0, None),
        limited: verifier(0, Some(MAX_LIFETIME)),
        cached: verifier(4, None),
        bearer: JwtAuthenticator::new(verifier(0, None)),
        hs: EncodingKey::from_secret(SECRET),
        ec: EncodingKey::from_ec_pem(EC_PRIV).expect("EC private key"),
        rsa: EncodingKey::from_rsa_pem(RSA_PRIV).expect("RSA private key"),
    }
});

/// A claims object with `name` set to `value`, or the bytes unchanged when
/// they are not a JSON object.
fn with_claim(claims: Vec<u8>, name: &str, value: u64) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, Value>>(&claims) {
        Ok(mut m) => {
            m.insert(name.to_owned(), value.into());
            serde_json::to_vec(&m).unwrap_or(claims)
        }
        Err(_) => claims,
    }
}

fn check_accepted(
    header: &[u8],
    claims: &[u8],
    signed_with: Option<Algorithm>,
    t: &mcp_auth_jwt::VerifiedToken,
) {
    let Some(alg) = signed_with else {
        panic!("a token with a garbage signature was accepted: {t:?}");
    };
    assert_eq!(
        t.alg, alg,
        "accepted with another algorithm than it was signed with"
    );

    let h: Value = serde_json::from_slice(header).expect("an accepted header is JSON");
    let h = h.as_object().expect("an accepted header is an object");
    for name in ["jku", "jwk", "x5u", "crit"] {
        assert!(
            h.get(name).is_none_or(Value::is_null),
            "accepted a header with {name}: {h:?}"
        );
    }
    if let Some(typ) = h.get("typ").and_then(Value::as_str) {
        let typ = typ.to_ascii_lowercase();
        assert!(
            matches!(
                typ.as_str(),
                "jwt" | "at+jwt" | "application/jwt" | "application/at+jwt"
            ),
            "accepted typ {typ:?}"
        );
    }
    // A kid selects exactly the key carrying it (a token without one may be
    // verified by any key of its algorithm, by design).
    if let Some(kid) = h.get("kid").and_then(Value::as_str) {
        assert_eq!(kid, EC_KID, "accepted an unknown kid");
        assert_eq!(alg, Algorithm::ES256, "the kid selected another key");
    }
    assert_eq!(t.kid.as_deref(), h.get("kid").and_then(Value::as_str));

    // The application's view: the verified claims map, and the raw JSON
    // read the way serde_json reads it (last duplicate wins). Both must
    // satisfy every rule the verifier enforces.
    let raw: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    for c in [
        raw.as_object().expect("accepted claims are an object"),
        &*t.claims,
    ] {
        assert_eq!(
            c.get("iss").and_then(Value::as_str),
            Some(ISSUER),
            "wrong iss accepted: {c:?}"
        );
        let aud_ok = match c.get("aud") {
            Some(Value::String(s)) => s == AUDIENCE,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(AUDIENCE)),
            _ => false,
        };
        assert!(aud_ok, "wrong aud accepted: {c:?}");
        let named = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        assert!(named("sub") || named("client_id"), "no subject: {c:?}");
        let now = common::now();
        let exp = c
            .get("exp")
            .and_then(numeric_date)
            .expect("accepted without a valid exp");
        assert!(
            exp + LEEWAY + 1 >= now,
            "expired token accepted: exp {exp}, now {now}"
        );
        if let Some(nbf) = c.get("nbf") {
            let nbf = numeric_date(nbf).expect("accepted with a malformed nbf");
            assert!(
                nbf <= now + LEEWAY + 1,
                "token accepted before nbf {nbf}, now {now}"
            );
        }
        if let Some(iat) = c.get("iat") {
            assert!(numeric_date(iat).is_some(), "accepted with a malformed iat");
        }
    }
    let p = t.clone().into_principal("bearer");
    assert!(!p.subject.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (header, claims) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
        None => (rest, b"{}".to_vec()),
    };
    let now = common::now();
    let mut claims = claims;
    if flags & 4 != 0 {
        claims = with_claim(claims, "exp", now + 600);
    }
    if flags & 8 != 0 {
        claims = with_claim(claims, "nbf", now + 3600);
    }
    if flags & 16 != 0 {
        claims = with_claim(claims, "iat", now);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let signed_with = match flags & 3 {
        1 => Some((Algorithm::HS256, &T.hs)),
        2 => Some((Algorithm::ES256, &T.ec)),
        3 => Some((Algorithm::RS256, &T.rsa)),
        _ => None,
    };
    let signature = match signed_with {
        Some((alg, key)) => {
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).expect("signing")
        }
        None => URL_SAFE_NO_PAD.encode(b"not a signature"),
    };
    let token = format!("{signing_input}.{signature}");
    let signed_with = signed_with.map(|(alg, _)| alg);

    common::block_on(async {
        let plain = T.plain.verify(&token).await;
        if let Ok(t) = &plain {
            check_accepted(header, &claims, signed_with, t);
        }

        // The cache must not change the verdict. Skip tokens whose expiry
        // is within a few seconds of the leeway boundary (the clock may
        // tick between the two calls). Errors are compared by verdict only:
        // for a token missing several required claims, jsonwebtoken reports
        // whichever it meets first in a randomly seeded HashSet, so two
        // verifier instances may name different claims (see
        // docs/FUZZING.md, regression seed regress-missing-claims-order).
        let exp = serde_json::from_slice::<Value>(&claims)
            .ok()
            .and_then(|c| c.get("exp").and_then(numeric_date));
        let near_boundary = exp.is_some_and(|e| (e + LEEWAY).abs_diff(common::now()) <= 3);
        if !near_boundary {
            let cached = T.cached.verify(&token).await;
            match (&plain, &cached) {
                (Ok(a), Ok(b)) => assert_eq!(a.claims, b.claims, "the cache changed the claims"),
                (Err(_), Err(_)) => {}
                _ => panic!("the cache changed the verdict: {plain:?} vs {cached:?}"),
            }
        }

        // The lifetime limit only ever narrows what is accepted.
        if let Ok(t) = T.limited.verify(&token).await {
            assert!(
                plain.is_ok() || near_boundary,
                "only the limited verifier accepted"
            );
            let iat = t
                .claims
                .get("iat")
                .and_then(numeric_date)
                .expect("accepted without iat");
            let exp = t
                .claims
                .get("exp")
                .and_then(numeric_date)
                .expect("accepted without exp");
            assert!(
                iat <= common::now() + LEEWAY + 1,
                "iat {iat} in the future accepted"
            );
            assert!(
                exp.saturating_sub(iat) <= MAX_LIFETIME,
                "lifetime {} accepted",
                exp - iat
            );
        }

        // The bearer strategy: the Authorization header, then the same
        // verifier.
        let mut req = AuthRequest::default();
        req.headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("base64url is a valid header"),
        );
        let strategy = T.bearer.authenticate(&req).await;
        if !near_boundary {
            assert_eq!(
                strategy.is_ok(),
                plain.is_ok(),
                "strategy {strategy:?} vs verifier {plain:?}"
            );
        }
    });
});
