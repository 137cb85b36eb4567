//! Verification keys and the algorithms each may verify.

use std::sync::Arc;

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse},
};

/// Shortest accepted HMAC secret, in bytes (RFC 7518 §3.2 asks for at least
/// the hash size; 32 bytes covers HS256 and is the floor for all three).
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// A key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An HMAC secret is too short.
    #[error(
        "the secret must be at least {MIN_HMAC_SECRET_LEN} bytes long (e.g. `openssl rand -base64 48`)"
    )]
    ShortSecret,
    /// The PEM text is not an RSA, EC (P-256/P-384) or Ed25519 key.
    #[error("not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM format")]
    BadPem,
    /// A private key where a public key belongs.
    #[error(
        "this is a private key; a verifying server needs only the public key (`openssl pkey -in key.pem -pubout`)"
    )]
    PrivateKey,
    /// A JWK cannot be used for signature verification.
    #[error("unusable JWK: {0}")]
    BadJwk(String),
    /// The requested algorithms do not fit the key.
    #[error("algorithm {requested:?} does not fit a {family} key")]
    AlgorithmMismatch {
        /// What was asked for.
        requested: Vec<Algorithm>,
        /// The key's family.
        family: &'static str,
    },
}

/// One trusted key: the key, its `kid` (if any) and the algorithms it may
/// verify. The algorithm list is tied to the key's type: an RSA key never
/// verifies an HMAC token (the classic "HS256 signed with the public key"
/// attack), an HMAC secret never verifies an RSA token, and `none` does not
/// exist.
#[derive(Clone)]
pub struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: Arc<DecodingKey>,
    pub(crate) algorithms: Vec<Algorithm>,
    /// SHA-256 of the JWK the key was read from (`None` for PEM and HMAC
    /// keys): a JWKS fetched again keeps the keys it had where nothing
    /// changed ([`KeySet::keep_unchanged`]).
    pub(crate) source: Option<[u8; 32]>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn family_name(alg: Algorithm) -> &'static str {
    if HMAC_ALGORITHMS.contains(&alg) {
        "HMAC"
    } else if EC_ALGORITHMS.contains(&alg) {
        "EC"
    } else if alg == Algorithm::EdDSA {
        "Ed25519"
    } else {
        "RSA"
    }
}

/// The algorithms an RSA key verifies.
pub const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// The algorithms an HMAC secret verifies.
pub const HMAC_ALGORITHMS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// The algorithms of EC keys (ES256 for P-256, ES384 for P-384).
pub const EC_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
/// Every algorithm this crate verifies; `none` is not one of them.
pub const ALL_ALGORITHMS: &[Algorithm] = &[
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Whether `alg` fits a key of the same family as `key_alg` (an RSA key
/// signs every RS*/PS*, an EC key one curve's algorithm, …).
///
/// ```
/// use mcp_auth_jwt::{Algorithm, same_family};
/// assert!(same_family(Algorithm::PS256, Algorithm::RS256));
/// assert!(!same_family(Algorithm::HS256, Algorithm::RS256));
/// ```
pub fn same_family(alg: Algorithm, key_alg: Algorithm) -> bool {
    family_name(alg) == family_name(key_alg)
}

impl VerifyKey {
    /// An HMAC secret for `alg` (HS256, HS384 or HS512). Secrets shorter than
    /// [`MIN_HMAC_SECRET_LEN`] bytes are refused.
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<Self, KeyError> {
        if !HMAC_ALGORITHMS.contains(&alg) {
            return Err(KeyError::AlgorithmMismatch {
                requested: vec![alg],
                family: "HMAC",
            });
        }
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(KeyError::ShortSecret);
        }
        Ok(Self {
            kid: None,
            key: Arc::new(DecodingKey::from_secret(secret)),
            algorithms: vec![alg],
            source: None,
        })
    }

    /// A public key from PEM: RSA (RS*/PS*), EC P-256 or P-384 (ES256/ES384)
    /// or Ed25519 (EdDSA).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        use crate::pem::{PemProblem, PublicKey};
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::BadPem)?;
        // A private key would work here, but it has no business on a
        // verifying server; make the mistake loud.
        let (key, algorithms) = match crate::pem::public_key(text) {
            Ok(PublicKey::Rsa(der)) => (DecodingKey::from_rsa_der(&der), RSA_ALGORITHMS.to_vec()),
            Ok(PublicKey::P256(point)) => {
                (DecodingKey::from_ec_der(&point), vec![Algorithm::ES256])
            }
            Ok(PublicKey::P384(point)) => {
                (DecodingKey::from_ec_der(&point), vec![Algorithm::ES384])
            }
            Ok(PublicKey::Ed25519(raw)) => (DecodingKey::from_ed_der(&raw), vec![Algorithm::EdDSA]),
            Err(PemProblem::Private) => return Err(KeyError::PrivateKey),
            Err(PemProblem::Unsupported) => return Err(KeyError::BadPem),
        };
        Ok(Self {
            kid: None,
            key: Arc::new(key),
            algorithms,
            source: None,
        })
    }

    /// A public key from a JWK (RSA, EC P-256/P-384, OKP Ed25519). Keys
    /// marked for encryption (`use: enc`), without `verify` in `key_ops`, or
    /// symmetric (`kty: oct`: a shared secret has no place in a published key
    /// set) are refused. A JWK `alg` narrows the allowed algorithms to it.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(KeyError::BadJwk("marked for encryption (use=enc)".into()));
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.iter().any(|o| matches!(o, KeyOperations::Verify))
        {
            return Err(KeyError::BadJwk("key_ops does not include verify".into()));
        }
        let mut algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err(KeyError::BadJwk("unsupported EC curve".into())),
            },
            AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
                EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                _ => return Err(KeyError::BadJwk("unsupported OKP curve".into())),
            },
            AlgorithmParameters::OctetKey(_) => {
                return Err(KeyError::BadJwk(
                    "symmetric keys are not accepted from a key set".into(),
                ));
            }
            _ => return Err(KeyError::BadJwk("unsupported key type".into())),
        };
        if let Some(alg) = jwk.common.key_algorithm {
            let alg = signing_algorithm(alg).ok_or_else(|| {
                KeyError::BadJwk(format!("alg {alg:?} is not a signature algorithm"))
            })?;
            if !algorithms.contains(&alg) {
                return Err(KeyError::BadJwk(format!(
                    "alg {alg:?} does not fit the key type"
                )));
            }
            algorithms = vec![alg];
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::BadJwk(e.to_string()))?;
        let source = serde_json::to_vec(jwk).ok().map(|bytes| {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            out
        });
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            key: Arc::new(key),
            algorithms,
            source,
        })
    }

    /// Sets the key id tokens must name to select this key.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Narrows the algorithms this key verifies; refuses algorithms of another
    /// family.
    pub fn restrict(mut self, algs: &[Algorithm]) -> Result<Self, KeyError> {
        let kept: Vec<Algorithm> = self
            .algorithms
            .iter()
            .copied()
            .filter(|a| algs.contains(a))
            .collect();
        if kept.is_empty() {
            return Err(KeyError::AlgorithmMismatch {
                requested: algs.to_vec(),
                family: self
                    .algorithms
                    .first()
                    .map_or("unknown", |a| family_name(*a)),
            });
        }
        self.algorithms = kept;
        Ok(self)
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A set of trusted keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    /// A set of these keys.
    pub fn new(keys: Vec<VerifyKey>) -> Self {
        Self { keys }
    }

    /// Parses a JWKS document, keeping the keys usable for verification and
    /// skipping the rest (encryption keys, symmetric keys, unknown types).
    /// Returns the set and how many entries were skipped.
    pub fn from_jwks_json(doc: &serde_json::Value) -> Result<(Self, usize), KeyError> {
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| KeyError::BadJwk("document has no \"keys\" array".into()))?;
        let mut keys = Vec::new();
        let mut skipped = 0;
        for entry in entries {
            match serde_json::from_value::<Jwk>(entry.clone())
                .map_err(|e| KeyError::BadJwk(e.to_string()))
                .and_then(|jwk| VerifyKey::from_jwk(&jwk))
            {
                Ok(k) => keys.push(k),
                Err(e) => {
                    skipped += 1;
                    #[cfg(feature = "fetch")]
                    tracing::debug!(reason = %e, "skipping JWKS entry");
                    #[cfg(not(feature = "fetch"))]
                    let _ = e;
                }
            }
        }
        Ok((Self { keys }, skipped))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[VerifyKey] {
        &self.keys
    }

    /// Candidate keys for a token header: the key with that `kid` when the
    /// token names one some key carries (never a key with another kid);
    /// for a `kid` no key carries, the keys that carry none and may verify
    /// `alg` (a configured key, or a JWKS without kids: signers put a kid in
    /// every token whether or not the verifier's copy of the key has one);
    /// without a `kid`, every key that may verify `alg`.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        let named = kid.is_some_and(|kid| self.has_kid(kid));
        self.keys.iter().filter(move |k| match kid {
            Some(kid) if named => k.kid.as_deref() == Some(kid),
            Some(_) => k.kid.is_none() && k.algorithms.contains(&alg),
            None => k.algorithms.contains(&alg),
        })
    }

    /// Whether some key carries this `kid`.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether a token naming `kid` has a candidate here: a key with that
    /// kid, or one without any ([`candidates`](Self::candidates)).
    #[cfg_attr(not(feature = "fetch"), allow(dead_code))]
    pub(crate) fn knows_kid(&self, kid: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.kid.is_none() || k.kid.as_deref() == Some(kid))
    }

    /// Takes `previous`'s key in the place of each key read from the very
    /// same JWK (same `kid`, same members): tokens the verified-token cache
    /// holds for it stay answered from there after a fetch that changed
    /// nothing, while a key published again under its `kid` with other
    /// material is a new key, and the tokens the old one verified are
    /// verified again.
    #[cfg_attr(not(feature = "fetch"), allow(dead_code))]
    pub(crate) fn keep_unchanged(&mut self, previous: &KeySet) {
        for k in &mut self.keys {
            let Some(source) = k.source else { continue };
            if let Some(old) = previous
                .keys
                .iter()
                .find(|o| o.source == Some(source) && o.kid == k.kid)
            {
                k.key = old.key.clone();
            }
        }
    }

    /// Whether `key` itself (not a key with other material under the same
    /// name) is in the set as `kid`.
    #[cfg_attr(not(feature = "fetch"), allow(dead_code))]
    pub(crate) fn has_key(&self, kid: &str, key: &Arc<DecodingKey>) -> bool {
        self.keys
            .iter()
            .any(|k| k.kid.as_deref() == Some(kid) && Arc::ptr_eq(&k.key, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token naming a kid goes to the key with that kid; to the keys
    /// carrying none when no key has it (an attack pass: a configured
    /// public key has no kid, and every external signer's token, which
    /// names one, was refused as of an unknown key); never to a key with
    /// another kid.
    #[test]
    fn a_kid_no_key_carries_goes_to_the_keys_without_one() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let set = |keys: serde_json::Value| KeySet::from_jwks_json(&keys).unwrap().0;
        let kids = |set: &KeySet, kid: Option<&str>| -> Vec<Option<String>> {
            set.candidates(kid, Algorithm::EdDSA)
                .map(|k| k.kid.clone())
                .collect()
        };
        let mixed = set(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "x": x},
        ]}));
        assert_eq!(kids(&mixed, Some("a")), [Some("a".to_owned())]);
        assert_eq!(kids(&mixed, Some("elsewhere")), [None]);
        assert_eq!(kids(&mixed, None).len(), 2);
        assert!(mixed.knows_kid("elsewhere"));
        let named = set(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": x},
        ]}));
        assert!(
            kids(&named, Some("b")).is_empty(),
            "never a key with another kid"
        );
        assert!(!named.knows_kid("b"));
        // Not for another algorithm.
        assert_eq!(
            mixed
                .candidates(Some("elsewhere"), Algorithm::RS256)
                .count(),
            0
        );
    }

    /// A JWKS fetched again keeps the keys of the JWKs that did not change
    /// (so the verified-token cache keeps answering their tokens), and takes
    /// a key published under a known `kid` with other members as new.
    #[test]
    fn a_fetch_keeps_unchanged_keys_and_renews_changed_ones() {
        let doc = |n: &str| {
            serde_json::json!({"keys": [
                {"kty": "oct", "k": "c2tpcA"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "a",
                 "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "b", "x": n},
            ]})
        };
        let first = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        // The same key type, other material (32 other bytes, base64url).
        let other = "3X_p2jp8uLLPnW6ekh_pMKSpP5dHWTtT-KgeaOzlgNE";
        let (before, _) = KeySet::from_jwks_json(&doc(first)).unwrap();
        let (mut same, _) = KeySet::from_jwks_json(&doc(first)).unwrap();
        let (mut changed, _) = KeySet::from_jwks_json(&doc(other)).unwrap();
        assert_eq!(before.len(), 2, "the oct entry is skipped");
        same.keep_unchanged(&before);
        changed.keep_unchanged(&before);
        let key = |set: &KeySet, kid: &str| {
            set.keys()
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone())
                .unwrap()
        };
        assert!(Arc::ptr_eq(&key(&same, "a"), &key(&before, "a")));
        assert!(Arc::ptr_eq(&key(&same, "b"), &key(&before, "b")));
        assert!(Arc::ptr_eq(&key(&changed, "a"), &key(&before, "a")));
        assert!(!Arc::ptr_eq(&key(&changed, "b"), &key(&before, "b")));
        assert!(changed.has_key("b", &key(&changed, "b")));
        assert!(!changed.has_key("b", &key(&before, "b")));
    }

    #[test]
    fn hmac_secrets_need_32_bytes_and_an_hmac_algorithm() {
        assert_eq!(
            VerifyKey::hmac(&[1; 31], Algorithm::HS256).unwrap_err(),
            KeyError::ShortSecret
        );
        assert!(VerifyKey::hmac(&[1; 32], Algorithm::RS256).is_err());
        let k = VerifyKey::hmac(&[1; 32], Algorithm::HS384).unwrap();
        assert_eq!(k.algorithms(), &[Algorithm::HS384]);
    }

    #[test]
    fn restrict_refuses_other_families() {
        let k = VerifyKey::hmac(&[1; 32], Algorithm::HS256).unwrap();
        assert!(k.clone().restrict(&[Algorithm::RS256]).is_err());
        assert!(k.restrict(&[Algorithm::HS256, Algorithm::RS256]).is_ok());
    }

    #[test]
    fn jwks_parsing_skips_unusable_entries() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "sym"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc",
             "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
            {"kty": "EC", "crv": "P-256", "kid": "sig",
             "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
            {"kty": "weird"},
            "not even an object"
        ]});
        let (set, skipped) = KeySet::from_jwks_json(&doc).unwrap();
        assert_eq!((set.len(), skipped), (1, 4));
        assert_eq!(set.keys()[0].kid(), Some("sig"));
        assert_eq!(set.keys()[0].algorithms(), &[Algorithm::ES256]);
        assert!(KeySet::from_jwks_json(&serde_json::json!({"nokeys": []})).is_err());
    }

    #[test]
    fn pem_private_keys_and_garbage_are_refused() {
        assert_eq!(
            VerifyKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err(),
            KeyError::PrivateKey
        );
        assert_eq!(VerifyKey::from_pem(b"hello").unwrap_err(), KeyError::BadPem);
    }
}
