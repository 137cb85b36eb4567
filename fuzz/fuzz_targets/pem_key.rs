//! Public keys from PEM: `VerifyKey::from_pem` (this crate's own PEM and
//! DER reader: SubjectPublicKeyInfo, PKCS#1 RSA, certificates) on the raw
//! input, and on the input wrapped as the body of each label it accepts.
//!
//! Asserts: no panic; an accepted key verifies at least one algorithm, all
//! of one family; a text naming a private key is never accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_jwt::{KeyError, VerifyKey, same_family};

fn check(text: &[u8]) {
    match VerifyKey::from_pem(text) {
        Ok(key) => {
            let algs = key.algorithms();
            assert!(!algs.is_empty(), "a key with no algorithm");
            assert!(algs.iter().all(|a| same_family(*a, algs[0])), "{algs:?}");
            assert!(
                !String::from_utf8_lossy(text).contains("PRIVATE KEY-----"),
                "accepted a private key"
            );
        }
        Err(KeyError::BadPem | KeyError::PrivateKey) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data);
    for label in ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"] {
        check(format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").as_bytes());
    }
});
