//! DPoP proofs (RFC 9449) signed with real keys: fresh EC P-256 and Ed25519
//! keys from aws-lc-rs, the RSA and P-384 test keys from `tests/keys/`.
//! Every refusal is checked for its exact variant and `error` code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{
    Algorithm, EncodingKey,
    jwk::{Jwk, ThumbprintHash},
};
use mcp_auth_jwt::{
    DEFAULT_MAX_DPOP_PROOF_BYTES, DpopBuildError, DpopError, DpopProof, DpopVerifier,
    MAX_DPOP_JTI_BYTES, jwk_thumbprint,
};
use serde_json::{Value, json};

const URL: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_750_000_000;
const TOKEN: &str = "an-access-token.with.dots";

/// A private key to sign proofs with, its algorithm and its public JWK.
struct Key {
    enc: EncodingKey,
    alg: Algorithm,
    jwk: Value,
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A fresh P-256 key from aws-lc-rs.
fn ec256() -> Key {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    assert_eq!((point.len(), point[0]), (65, 0x04));
    Key {
        enc: EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()),
        alg: Algorithm::ES256,
        jwk: json!({"kty": "EC", "crv": "P-256",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])}),
    }
}

/// A fresh Ed25519 key from aws-lc-rs.
fn ed25519() -> Key {
    let pair = Ed25519KeyPair::generate().unwrap();
    Key {
        enc: EncodingKey::from_ed_der(pair.to_pkcs8v1().unwrap().as_ref()),
        alg: Algorithm::EdDSA,
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key())}),
    }
}

/// A key from `tests/keys/`, its public JWK derived by jsonwebtoken
/// (without its `alg` member).
fn from_pem(file: &str, alg: Algorithm) -> Key {
    let p = pem(file);
    let enc = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&p).unwrap(),
        _ => EncodingKey::from_rsa_pem(&p).unwrap(),
    };
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&enc, alg).unwrap()).unwrap();
    jwk.as_object_mut().unwrap().remove("alg");
    Key { enc, alg, jwk }
}

fn rsa() -> Key {
    from_pem("rsa", Algorithm::RS256)
}

fn alg_name(alg: Algorithm) -> Value {
    serde_json::to_value(alg).unwrap()
}

fn header(k: &Key) -> Value {
    json!({"typ": "dpop+jwt", "alg": alg_name(k.alg), "jwk": k.jwk})
}

fn claims() -> Value {
    json!({"jti": "Tf1l6kIbd8mkWTVVz9eP2Q", "htm": "POST", "htu": URL, "iat": NOW})
}

/// A compact JWS over exactly these header and claims, signed by `k` with
/// `k.alg` (whatever the header says).
fn sign(k: &Key, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k.enc, k.alg).unwrap();
    format!("{input}.{sig}")
}

/// A proof by `k` with the standard header and claims, edited.
fn proof_with(k: &Key, h: impl FnOnce(&mut Value), c: impl FnOnce(&mut Value)) -> String {
    let (mut hv, mut cv) = (header(k), claims());
    h(&mut hv);
    c(&mut cv);
    sign(k, &hv, &cv)
}

fn proof(k: &Key) -> String {
    proof_with(k, |_| {}, |_| {})
}

/// Verifies for `POST URL` at `NOW`, no token, no nonce.
fn verify(proof: &str) -> Result<DpopProof, DpopError> {
    DpopVerifier::default().verify(proof, "POST", URL, None, None, NOW)
}

fn refused(proof: &str) -> DpopError {
    let e = verify(proof).unwrap_err();
    assert_eq!(e.error_code(), "invalid_dpop_proof", "{e:?}");
    e
}

fn ath(token: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

fn set(v: &mut Value, name: &str, value: Value) {
    v.as_object_mut().unwrap().insert(name.into(), value);
}

fn unset(v: &mut Value, name: &str) {
    v.as_object_mut().unwrap().remove(name);
}

// ---------------------------------------------------------------- accepted

#[test]
fn es256_proof_is_accepted_with_its_thumbprint_jti_iat_and_alg() {
    let k = ec256();
    let p = verify(&proof(&k)).unwrap();
    assert_eq!(p.alg, Algorithm::ES256);
    assert_eq!(p.jti, "Tf1l6kIbd8mkWTVVz9eP2Q");
    assert_eq!(p.iat, NOW);
    assert_eq!(p.nonce, None);
    assert_eq!(p.jkt, jwk_thumbprint(&k.jwk).unwrap());
    // Same thumbprint as jsonwebtoken's own RFC 7638 implementation.
    let jwk: Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
    assert_eq!(p.jkt, jwk.thumbprint(ThumbprintHash::SHA256).unwrap());
    assert_eq!(p.jkt.len(), 43);
}

#[test]
fn eddsa_proof_is_accepted() {
    let k = ed25519();
    let p = verify(&proof(&k)).unwrap();
    assert_eq!(p.alg, Algorithm::EdDSA);
    assert_eq!(p.jkt, jwk_thumbprint(&k.jwk).unwrap());
}

#[test]
fn rs256_proof_with_the_rsa_test_key_is_accepted() {
    let k = rsa();
    let p = verify(&proof(&k)).unwrap();
    assert_eq!(p.alg, Algorithm::RS256);
    let jwk: Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
    assert_eq!(p.jkt, jwk.thumbprint(ThumbprintHash::SHA256).unwrap());
}

#[test]
fn every_allowed_algorithm_verifies_when_enabled() {
    let all = DpopVerifier::builder()
        .algorithms(mcp_auth_jwt::DPOP_ALGORITHMS)
        .build()
        .unwrap();
    let mut keys = vec![ec256(), ed25519(), from_pem("ec384", Algorithm::ES384)];
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        keys.push(from_pem("rsa", alg));
    }
    for k in &keys {
        let p = all.verify(&proof(k), "POST", URL, None, None, NOW);
        assert_eq!(p.map(|p| p.alg), Ok(k.alg));
    }
    // The default list leaves ES384 and RS512 out.
    assert_eq!(
        verify(&proof(&from_pem("ec384", Algorithm::ES384))),
        Err(DpopError::Algorithm)
    );
    assert_eq!(
        verify(&proof(&from_pem("rsa", Algorithm::RS512))),
        Err(DpopError::Algorithm)
    );
}

#[test]
fn matching_ath_and_nonce_are_accepted_and_the_nonce_returned() {
    let k = ec256();
    let p = proof_with(
        &k,
        |_| {},
        |c| {
            set(c, "ath", json!(ath(TOKEN)));
            set(c, "nonce", json!("server-nonce-1"));
        },
    );
    let v = DpopVerifier::default();
    let ok = v
        .verify(&p, "POST", URL, Some(TOKEN), Some("server-nonce-1"), NOW)
        .unwrap();
    assert_eq!(ok.nonce.as_deref(), Some("server-nonce-1"));
    // Without an expected nonce the proof's is returned unchecked, and
    // without a token `ath` is not looked at.
    let ok = v.verify(&p, "POST", URL, None, None, NOW).unwrap();
    assert_eq!(ok.nonce.as_deref(), Some("server-nonce-1"));
}

#[test]
fn htu_ignores_query_fragment_case_and_default_ports() {
    let k = ec256();
    let v = DpopVerifier::default();
    let p = proof(&k);
    for url in [
        "https://mcp.example.com/mcp?session=1",
        "https://mcp.example.com/mcp#frag",
        "https://mcp.example.com:443/mcp",
        "HTTPS://MCP.Example.Com/mcp",
        "https://mcp.example.com:443/mcp?a=b#c",
    ] {
        assert!(v.verify(&p, "POST", url, None, None, NOW).is_ok(), "{url}");
    }
    // The same rules apply to the claim.
    let p = proof_with(
        &k,
        |_| {},
        |c| set(c, "htu", json!("HTTPS://mcp.EXAMPLE.com:443/mcp?q=1#f")),
    );
    assert!(verify(&p).is_ok());
    // http with its default port, and an empty path read as "/".
    let p = proof_with(&k, |_| {}, |c| set(c, "htu", json!("http://h.example:80")));
    assert!(
        v.verify(&p, "GET", "http://h.example/", None, None, NOW)
            .is_err()
    );
    assert!(
        v.verify(&p, "POST", "http://h.example/", None, None, NOW)
            .is_ok()
    );
}

#[test]
fn iat_window_bounds_are_inclusive_and_configurable() {
    let k = ed25519();
    let at = |iat: u64| proof_with(&k, |_| {}, |c| set(c, "iat", json!(iat)));
    assert!(verify(&at(NOW - 60)).is_ok());
    assert!(verify(&at(NOW + 5)).is_ok());
    // Fractional NumericDate is accepted (RFC 7519 §2).
    let p = proof_with(&k, |_| {}, |c| set(c, "iat", json!(NOW as f64 + 0.5)));
    assert_eq!(verify(&p).map(|p| p.iat), Ok(NOW));

    let narrow = DpopVerifier::builder()
        .iat_window(Duration::from_secs(10), Duration::ZERO)
        .build()
        .unwrap();
    let check = |iat| narrow.verify(&at(iat), "POST", URL, None, None, NOW);
    assert!(check(NOW - 10).is_ok());
    assert!(check(NOW).is_ok());
    assert_eq!(check(NOW - 11), Err(DpopError::Stale));
    assert_eq!(check(NOW + 1), Err(DpopError::Future));
    assert_eq!(narrow.replay_ttl(), Duration::from_secs(12));
    assert_eq!(
        DpopVerifier::default().replay_ttl(),
        Duration::from_secs(67)
    );
}

// ----------------------------------------------------------------- refused

#[test]
fn wrong_typ_is_refused() {
    let k = ec256();
    for typ in [
        json!("JWT"),
        json!("at+jwt"),
        json!("DPOP+JWT"),
        json!("application/dpop+jwt"),
        json!(["dpop+jwt"]),
    ] {
        let p = proof_with(&k, |h| set(h, "typ", typ.clone()), |_| {});
        assert_eq!(refused(&p), DpopError::Type, "{typ}");
    }
    let p = proof_with(&k, |h| unset(h, "typ"), |_| {});
    assert_eq!(refused(&p), DpopError::Type);
}

#[test]
fn alg_none_is_refused() {
    let k = ec256();
    let mut h = header(&k);
    set(&mut h, "alg", json!("none"));
    let unsigned = format!(
        "{}.{}.",
        B64.encode(h.to_string()),
        B64.encode(claims().to_string())
    );
    assert_eq!(refused(&unsigned), DpopError::Algorithm);
    // A missing alg or an unknown one is no better.
    unset(&mut h, "alg");
    assert_eq!(refused(&sign(&k, &h, &claims())), DpopError::Algorithm);
    set(&mut h, "alg", json!("ES256K"));
    assert_eq!(refused(&sign(&k, &h, &claims())), DpopError::Algorithm);
}

#[test]
fn hs256_is_refused_and_cannot_be_allowed() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let k = Key {
        enc: EncodingKey::from_secret(secret),
        alg: Algorithm::HS256,
        jwk: json!({"kty": "oct", "k": B64.encode(secret)}),
    };
    assert_eq!(refused(&proof(&k)), DpopError::Algorithm);
    assert_eq!(
        DpopVerifier::builder()
            .algorithms(&[Algorithm::ES256, Algorithm::HS256])
            .build()
            .unwrap_err(),
        DpopBuildError::Symmetric(Algorithm::HS256)
    );
    assert_eq!(
        DpopVerifier::builder().algorithms(&[]).build().unwrap_err(),
        DpopBuildError::NoAlgorithms
    );
}

#[test]
fn private_key_material_in_the_header_is_refused() {
    let k = ec256();
    let p = proof_with(
        &k,
        |h| set(&mut h["jwk"], "d", json!("bm90LWEtcmVhbC1wcml2YXRlLWtleQ")),
        |_| {},
    );
    assert_eq!(refused(&p), DpopError::PrivateKey);
    let k = rsa();
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let p = proof_with(&k, |h| set(&mut h["jwk"], member, json!("AQAB")), |_| {});
        assert_eq!(refused(&p), DpopError::PrivateKey, "{member}");
    }
}

#[test]
fn missing_or_non_object_jwk_is_refused() {
    let k = ec256();
    let p = proof_with(&k, |h| unset(h, "jwk"), |_| {});
    assert_eq!(refused(&p), DpopError::MissingKey);
    let p = proof_with(&k, |h| set(h, "jwk", json!("a-kid")), |_| {});
    assert_eq!(refused(&p), DpopError::MissingKey);
}

#[test]
fn key_type_or_curve_not_fitting_alg_is_refused() {
    let all = DpopVerifier::builder()
        .algorithms(mcp_auth_jwt::DPOP_ALGORITHMS)
        .build()
        .unwrap();
    let (ec, ed, rsa, p384) = (
        ec256(),
        ed25519(),
        rsa(),
        from_pem("ec384", Algorithm::ES384),
    );
    // (signing key, key put in the header)
    for (signer, shown) in [
        (&ec, &ed),   // ES256 with an OKP key
        (&ec, &rsa),  // ES256 with an RSA key
        (&ec, &p384), // ES256 with a P-384 key
        (&p384, &ec), // ES384 with a P-256 key
        (&ed, &ec),   // EdDSA with an EC key
        (&rsa, &ec),  // RS256 with an EC key
        (&rsa, &ed),  // RS256 with an OKP key
    ] {
        let p = proof_with(signer, |h| set(h, "jwk", shown.jwk.clone()), |_| {});
        assert_eq!(
            all.verify(&p, "POST", URL, None, None, NOW),
            Err(DpopError::KeyMismatch),
            "{:?} with {}",
            signer.alg,
            shown.jwk["kty"]
        );
    }
    // An OKP key on another curve, and a jwk whose own alg disagrees.
    let p = proof_with(&ed, |h| set(&mut h["jwk"], "crv", json!("X25519")), |_| {});
    assert_eq!(refused(&p), DpopError::KeyMismatch);
    let p = proof_with(&rsa, |h| set(&mut h["jwk"], "alg", json!("PS256")), |_| {});
    assert_eq!(refused(&p), DpopError::KeyMismatch);
    let p = proof_with(&rsa, |h| set(&mut h["jwk"], "alg", json!("RS256")), |_| {});
    assert!(verify(&p).is_ok());
}

#[test]
fn malformed_or_weak_keys_are_refused() {
    let (ec, rsa) = (ec256(), rsa());
    // A 1024-bit modulus is refused before any signature check.
    let mut n = vec![0xC5u8; 128];
    n[127] |= 1;
    let p = proof_with(
        &rsa,
        |h| set(&mut h["jwk"], "n", json!(B64.encode(&n))),
        |_| {},
    );
    assert_eq!(refused(&p), DpopError::BadKey);
    // So is one over 4096 bits (8192 would cost the server about four
    // times as much to verify, for anyone who asks).
    for bytes in [513, 1024] {
        let mut n = vec![0xC5u8; bytes];
        n[bytes - 1] |= 1;
        let p = proof_with(
            &rsa,
            |h| set(&mut h["jwk"], "n", json!(B64.encode(&n))),
            |_| {},
        );
        assert_eq!(refused(&p), DpopError::BadKey, "{} bits", bytes * 8);
    }
    // And an exponent past 65537 (2^33 - 1 would cost as much as a key
    // twice the size), or an even one.
    for e in [
        &[0x01u8, 0xFF, 0xFF, 0xFF, 0xFF][..],
        &[0x01, 0x00, 0x02],
        &[0x02],
    ] {
        let p = proof_with(
            &rsa,
            |h| set(&mut h["jwk"], "e", json!(B64.encode(e))),
            |_| {},
        );
        assert_eq!(refused(&p), DpopError::BadKey, "e = {e:?}");
    }
    // A short coordinate, a padded one, one that is not a string.
    for (name, value) in [
        ("x", json!(B64.encode([1u8; 31]))),
        ("y", json!(format!("{}=", B64.encode([1u8; 32])))),
        ("x", json!(7)),
    ] {
        let p = proof_with(&ec, |h| set(&mut h["jwk"], name, value.clone()), |_| {});
        assert_eq!(refused(&p), DpopError::BadKey, "{name}: {value}");
    }
    // A coordinate pair that is not a point on the curve fails the signature.
    let p = proof_with(
        &ec,
        |h| set(&mut h["jwk"], "y", json!(B64.encode([1u8; 32]))),
        |_| {},
    );
    assert_eq!(refused(&p), DpopError::Signature);
}

#[test]
fn bad_signature_is_refused() {
    // Signed by one key, naming another of the same type.
    for (signer, other) in [
        (ec256(), ec256()),
        (ed25519(), ed25519()),
        (rsa(), from_pem("rsa2", Algorithm::RS256)),
    ] {
        let p = proof_with(&signer, |h| set(h, "jwk", other.jwk.clone()), |_| {});
        assert_eq!(refused(&p), DpopError::Signature, "{:?}", signer.alg);
    }
    // A valid proof with its claims swapped for others.
    let k = ec256();
    let good = proof(&k);
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    set(&mut c, "htm", json!("DELETE"));
    let forged = B64.encode(c.to_string());
    parts[1] = &forged;
    assert_eq!(refused(&parts.join(".")), DpopError::Signature);
    // An empty signature.
    assert_eq!(
        refused(&format!("{}.{}.", parts[0], parts[1])),
        DpopError::Signature
    );
}

#[test]
fn wrong_htm_is_refused() {
    let p = proof(&ec256());
    let v = DpopVerifier::default();
    for method in ["GET", "post", "PUT", ""] {
        assert_eq!(
            v.verify(&p, method, URL, None, None, NOW),
            Err(DpopError::Method),
            "{method}"
        );
    }
}

#[test]
fn wrong_htu_is_refused() {
    let p = proof(&ec256());
    let v = DpopVerifier::default();
    for url in [
        "https://other.example.com/mcp",
        "https://mcp.example.com/other",
        "https://mcp.example.com/mcp/",
        "https://mcp.example.com/MCP",
        "http://mcp.example.com/mcp",
        "https://mcp.example.com:8443/mcp",
        "https://mcp.example.com.evil.example/mcp",
        "mcp.example.com/mcp",
    ] {
        assert_eq!(
            v.verify(&p, "POST", url, None, None, NOW),
            Err(DpopError::Url),
            "{url}"
        );
    }
    // A claim that is no http(s) URL matches nothing.
    let k = ec256();
    for htu in [
        "/mcp",
        "wss://mcp.example.com/mcp",
        "https://u@mcp.example.com/mcp",
    ] {
        let p = proof_with(&k, |_| {}, |c| set(c, "htu", json!(htu)));
        assert_eq!(refused(&p), DpopError::Url, "{htu}");
    }
}

#[test]
fn stale_iat_is_refused() {
    let k = ec256();
    let p = proof_with(&k, |_| {}, |c| set(c, "iat", json!(NOW - 61)));
    assert_eq!(refused(&p), DpopError::Stale);
}

#[test]
fn future_iat_is_refused() {
    let k = ec256();
    let p = proof_with(&k, |_| {}, |c| set(c, "iat", json!(NOW + 6)));
    assert_eq!(refused(&p), DpopError::Future);
}

#[test]
fn missing_or_malformed_claims_are_refused_by_name() {
    let k = ec256();
    let long_jti = "j".repeat(MAX_DPOP_JTI_BYTES + 1);
    let cases: [(&str, Option<Value>, &str); 10] = [
        ("jti", None, "jti"),
        ("jti", Some(json!("")), "jti"),
        ("jti", Some(json!(12345)), "jti"),
        ("jti", Some(json!(long_jti)), "jti"),
        ("htm", None, "htm"),
        ("htu", Some(json!(["https://mcp.example.com/mcp"])), "htu"),
        ("htu", None, "htu"),
        ("iat", None, "iat"),
        ("iat", Some(json!("1750000000")), "iat"),
        ("iat", Some(json!(-1)), "iat"),
    ];
    for (name, value, claim) in cases {
        let p = proof_with(
            &k,
            |_| {},
            |c| match &value {
                Some(v) => set(c, name, v.clone()),
                None => unset(c, name),
            },
        );
        assert_eq!(refused(&p), DpopError::Claim(claim), "{name}: {value:?}");
    }
    let p = proof_with(
        &k,
        |_| {},
        |c| set(c, "jti", json!("j".repeat(MAX_DPOP_JTI_BYTES))),
    );
    assert!(verify(&p).is_ok());
}

#[test]
fn ath_of_another_token_is_refused() {
    let p = proof_with(
        &ec256(),
        |_| {},
        |c| set(c, "ath", json!(ath("another-token"))),
    );
    let e = DpopVerifier::default()
        .verify(&p, "POST", URL, Some(TOKEN), None, NOW)
        .unwrap_err();
    assert_eq!(e, DpopError::AccessTokenHash);
    assert_eq!(e.error_code(), "invalid_dpop_proof");
    assert!(!e.to_string().contains(TOKEN));
}

#[test]
fn missing_ath_when_a_token_is_given_is_refused() {
    let p = proof(&ec256());
    let e = DpopVerifier::default()
        .verify(&p, "POST", URL, Some(TOKEN), None, NOW)
        .unwrap_err();
    assert_eq!(e, DpopError::Claim("ath"));
    assert_eq!(e.error_code(), "invalid_dpop_proof");
}

#[test]
fn missing_or_wrong_nonce_asks_for_the_nonce() {
    let k = ec256();
    let v = DpopVerifier::default();
    let without = proof(&k);
    let e = v
        .verify(&without, "POST", URL, None, Some("n-2"), NOW)
        .unwrap_err();
    assert_eq!(
        (e.clone(), e.error_code()),
        (DpopError::NonceRequired, "use_dpop_nonce")
    );
    let stale = proof_with(&k, |_| {}, |c| set(c, "nonce", json!("n-1")));
    let e = v
        .verify(&stale, "POST", URL, None, Some("n-2"), NOW)
        .unwrap_err();
    assert_eq!(
        (e.clone(), e.error_code()),
        (DpopError::NonceMismatch, "use_dpop_nonce")
    );
    // A nonce that is not a string is a malformed proof, not a stale nonce.
    let odd = proof_with(&k, |_| {}, |c| set(c, "nonce", json!(2)));
    let e = v
        .verify(&odd, "POST", URL, None, Some("n-2"), NOW)
        .unwrap_err();
    assert_eq!(
        (e.clone(), e.error_code()),
        (DpopError::Claim("nonce"), "invalid_dpop_proof")
    );
    // The nonce is checked last: an otherwise invalid proof is refused as
    // invalid, not answered with a nonce challenge.
    let e = v
        .verify(&without, "GET", URL, None, Some("n-2"), NOW)
        .unwrap_err();
    assert_eq!(e, DpopError::Method);
}

#[test]
fn oversized_proof_is_refused() {
    let k = ec256();
    let p = proof_with(
        &k,
        |_| {},
        |c| set(c, "pad", json!("x".repeat(DEFAULT_MAX_DPOP_PROOF_BYTES))),
    );
    assert!(p.len() > DEFAULT_MAX_DPOP_PROOF_BYTES);
    assert_eq!(refused(&p), DpopError::TooLarge);
    // Anything too large, even garbage, is refused before parsing.
    assert_eq!(
        refused(&"a".repeat(DEFAULT_MAX_DPOP_PROOF_BYTES + 1)),
        DpopError::TooLarge
    );
    // The limit is configurable.
    let small = proof(&k);
    let tight = DpopVerifier::builder()
        .max_proof_bytes(small.len() - 1)
        .build()
        .unwrap();
    assert_eq!(
        tight.verify(&small, "POST", URL, None, None, NOW),
        Err(DpopError::TooLarge)
    );
}

#[test]
fn two_jwts_and_garbage_are_malformed() {
    let k = ec256();
    let (a, b) = (proof(&k), proof(&k));
    let header_not_json = format!(
        "{}.{}",
        B64.encode("not json"),
        a.split_once('.').unwrap().1
    );
    let payload_array = {
        let input = format!(
            "{}.{}",
            B64.encode(header(&k).to_string()),
            B64.encode("[1,2]")
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k.enc, k.alg).unwrap();
        format!("{input}.{sig}")
    };
    for bad in [
        format!("{a},{b}"),
        format!("{a}, {b}"),
        format!("{a} {b}"),
        format!("{a}.{b}"),
        format!("{a}{b}"),
        format!(" {a}"),
        format!("Bearer {a}"),
        String::new(),
        "garbage".into(),
        "a.b.c".into(),
        "..".into(),
        "e30.e30.e30.e30.e30".into(),
        header_not_json,
        payload_array,
    ] {
        assert_eq!(refused(&bad), DpopError::Malformed, "{bad}");
    }
}

#[test]
fn unknown_critical_headers_are_refused() {
    let p = proof_with(&ec256(), |h| set(h, "crit", json!(["exp"])), |_| {});
    assert_eq!(refused(&p), DpopError::Critical);
}

#[test]
fn errors_are_short_and_name_no_secret() {
    let k = ed25519();
    let x = k.jwk["x"].as_str().unwrap().to_owned();
    let with_d = proof_with(&k, |h| set(&mut h["jwk"], "d", json!("c2VjcmV0")), |_| {});
    let bad_ath = proof_with(&k, |_| {}, |c| set(c, "ath", json!(ath("other"))));
    let v = DpopVerifier::default();
    for (p, token) in [(&with_d, None), (&bad_ath, Some(TOKEN))] {
        let e = v.verify(p, "POST", URL, token, None, NOW).unwrap_err();
        let text = e.to_string();
        assert!(text.len() < 64, "{text}");
        for secret in [TOKEN, "c2VjcmV0", &x, p.as_str()] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

// --------------------------------------------------------------- thumbprint

#[test]
fn rfc7638_example_thumbprint() {
    // RFC 7638 §3.1, with its extra members (ignored).
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(&jwk).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // Private members do not change it (RFC 7638 §3.2.1).
    let mut private = jwk.clone();
    set(&mut private, "d", json!("AQAB"));
    assert_eq!(jwk_thumbprint(&private), jwk_thumbprint(&jwk));
}

#[test]
fn rfc8037_okp_thumbprint() {
    let jwk = json!({"kty": "OKP", "crv": "Ed25519",
                     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    assert_eq!(
        jwk_thumbprint(&jwk).unwrap(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn thumbprint_refuses_unknown_types_and_missing_members() {
    for jwk in [
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AQAB"}),
        json!({"kty": "RSA", "n": "AQAB", "e": 65537}),
        json!({"crv": "Ed25519", "x": "AQAB"}),
        json!("RSA"),
    ] {
        assert_eq!(jwk_thumbprint(&jwk), Err(DpopError::BadKey), "{jwk}");
    }
}

// ------------------------------------------------------------------ replay

#[test]
fn replay_key_is_per_key_and_jti() {
    let (k1, k2) = (ec256(), ec256());
    let other_jti = |k: &Key| proof_with(k, |_| {}, |c| set(c, "jti", json!("another-jti")));
    let a = verify(&proof(&k1)).unwrap().replay_key();
    let again = verify(&proof(&k1)).unwrap().replay_key();
    let b = verify(&other_jti(&k1)).unwrap().replay_key();
    let c = verify(&proof(&k2)).unwrap().replay_key();
    assert_eq!(a, again);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert!(a.len() == 43 && !a.contains("Tf1l6kIbd8mkWTVVz9eP2Q"));
}

#[test]
fn every_refusal_but_the_nonce_ones_is_invalid_dpop_proof() {
    let all = [
        DpopError::Malformed,
        DpopError::TooLarge,
        DpopError::Type,
        DpopError::Algorithm,
        DpopError::Critical,
        DpopError::MissingKey,
        DpopError::PrivateKey,
        DpopError::KeyMismatch,
        DpopError::BadKey,
        DpopError::Signature,
        DpopError::Claim("jti"),
        DpopError::Method,
        DpopError::Url,
        DpopError::Stale,
        DpopError::Future,
        DpopError::AccessTokenHash,
    ];
    for e in all {
        assert_eq!(e.error_code(), "invalid_dpop_proof", "{e:?}");
    }
    for e in [DpopError::NonceRequired, DpopError::NonceMismatch] {
        assert_eq!(e.error_code(), "use_dpop_nonce", "{e:?}");
    }
}

#[test]
fn generated_keys_sign_with_aws_lc_directly_too() {
    // The proofs above are signed by jsonwebtoken; one signed by aws-lc-rs
    // itself verifies the same way (no library round-trip hides a bug).
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256",
                     "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
    let h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let input = format!(
        "{}.{}",
        B64.encode(h.to_string()),
        B64.encode(claims().to_string())
    );
    let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let p = format!("{input}.{}", B64.encode(sig.as_ref()));
    assert_eq!(verify(&p).map(|p| p.jkt), jwk_thumbprint(&jwk));
}
