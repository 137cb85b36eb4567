//! The facade's keys: the ES256 key its access tokens are signed with
//! (published as a JWKS, verified by `mcp-auth-jwt` like any issuer's), and
//! the AES-256-GCM key that encrypts what it keeps about users at rest.
//!
//! ```
//! use mcp_auth_proxy::keys::{Sealer, SigningKey};
//!
//! let key = SigningKey::generate().unwrap();
//! let jwks = key.jwks();
//! assert_eq!(jwks["keys"][0]["alg"], "ES256");
//! assert!(jwks["keys"][0].get("d").is_none(), "only the public half");
//!
//! let sealer = Sealer::new(&[7; 32]).unwrap();
//! let sealed = sealer.seal(b"refresh-token-of-the-provider", b"user-1").unwrap();
//! assert_eq!(sealer.open(&sealed, b"user-1").unwrap(), b"refresh-token-of-the-provider");
//! assert!(sealer.open(&sealed, b"user-2").is_err(), "bound to its context");
//! ```

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey},
    digest,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use mcp_auth_jwt::{KeySet, VerifyKey};

/// A key that cannot be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The signing key is not a P-256 private key in PKCS#8.
    #[error("the signing key is not an EC P-256 private key (PKCS#8)")]
    BadSigningKey,
    /// The encryption key is not 32 bytes.
    #[error("the encryption key must be 32 bytes (base64 of `openssl rand 32`)")]
    BadEncryptionKey,
    /// Sealed data that does not open: tampered, or sealed under another key
    /// or context.
    #[error("sealed data cannot be opened")]
    Unsealable,
    /// The system could not produce randomness or a key.
    #[error("the crypto library refused: {0}")]
    Crypto(&'static str),
}

/// The ES256 key the facade signs access tokens with.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .map_err(|_| KeyError::Crypto("cannot generate a P-256 key"))?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A key from its PKCS#8 DER form (as [`to_pkcs8`](Self::to_pkcs8)
    /// gives, or `openssl pkcs8 -topk8 -nocrypt -outform der`).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| KeyError::BadSigningKey)?;
        // The key id: a short digest of the public key, stable across
        // replicas and restarts.
        let digest = digest::digest(&digest::SHA256, pair.public_key().as_ref());
        let kid = B64.encode(&digest.as_ref()[..12]);
        Ok(Self {
            pkcs8: der.to_vec(),
            pair,
            kid,
        })
    }

    /// A key from PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        if !pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(KeyError::BadSigningKey);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| KeyError::BadSigningKey)?;
        Self::from_pkcs8(&der)
    }

    /// The PKCS#8 DER form, to keep the key in the store (sealed).
    pub fn to_pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key id (`kid`) tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document (`{"keys": [...]}`).
    pub fn jwks(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        // An uncompressed point: 0x04 || x (32) || y (32).
        let (x, y) = point
            .get(1..)
            .map_or((&[][..], &[][..]), |xy| xy.split_at(32));
        serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": B64.encode(x),
                "y": B64.encode(y),
                "kid": self.kid,
                "alg": "ES256",
                "use": "sig",
            }]
        })
    }

    /// The public key as the verifier's key set.
    pub fn verify_keys(&self) -> Result<Vec<VerifyKey>, KeyError> {
        let (set, _) = KeySet::from_jwks_json(&self.jwks())
            .map_err(|_| KeyError::Crypto("cannot read back the public key"))?;
        Ok(set.keys().to_vec())
    }

    /// Signs `claims` as an access token (`typ: at+jwt`, RFC 9068).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, KeyError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8);
        jsonwebtoken::encode(&header, claims, &key)
            .map_err(|_| KeyError::Crypto("cannot sign the access token"))
    }
}

/// Seals and opens data at rest with AES-256-GCM: a random nonce per
/// message, and a context (`aad`) the data is bound to, so a sealed value
/// moved to another key in the store does not open.
pub struct Sealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() != 32 {
            return Err(KeyError::BadEncryptionKey);
        }
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, key).map_err(|_| KeyError::BadEncryptionKey)?;
        Ok(Self { key })
    }

    /// A sealer with a new random key (returned, to be kept).
    pub fn generate() -> Result<(Self, [u8; 32]), KeyError> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| KeyError::Crypto("no randomness"))?;
        Ok((Self::new(&key)?, key))
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut buf = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(context), &mut buf)
            .map_err(|_| KeyError::Crypto("cannot seal"))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made with the same key and context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::Unsealable);
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unsealable)?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| KeyError::Unsealable)?;
        Ok(plain.to_vec())
    }
}

/// `n` random bytes as base64url: tokens, codes, ids.
pub fn random_token(n: usize) -> Result<String, KeyError> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| KeyError::Crypto("no randomness"))?;
    Ok(B64.encode(buf))
}

/// SHA-256 of `data`, base64url: how tokens and codes are keyed in the
/// store (a store dump reveals no usable token).
pub fn digest_b64(data: &[u8]) -> String {
    B64.encode(digest::digest(&digest::SHA256, data).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_auth_jwt::{Audience, JwtVerifier};

    #[test]
    fn tokens_it_signs_verify_with_its_jwks_and_survive_a_round_trip_through_pkcs8() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(key.to_pkcs8()).unwrap();
        assert_eq!(key.kid(), again.kid());
        let now = jsonwebtoken::get_current_timestamp();
        let token = again
            .sign(&serde_json::json!({"sub": "u", "iss": "https://me", "aud": "https://me/mcp", "exp": now + 60}))
            .unwrap();
        let v = JwtVerifier::builder()
            .static_keys(key.verify_keys().unwrap())
            .issuer("https://me")
            .audience(Audience::OneOf(vec!["https://me/mcp".into()]))
            .build()
            .unwrap();
        assert_eq!(v.verify_sync(&token).unwrap().str_claim("sub"), Some("u"));
        let other = SigningKey::generate().unwrap();
        let forged = other
            .sign(&serde_json::json!({"sub": "u", "iss": "https://me", "aud": "https://me/mcp", "exp": now + 60}))
            .unwrap();
        assert!(v.verify_sync(&forged).is_err());
    }

    #[test]
    fn sealed_data_is_bound_to_key_and_context_and_tampering_shows() {
        let (s, raw) = Sealer::generate().unwrap();
        let sealed = s.seal(b"secret", b"ctx").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            Sealer::new(&raw).unwrap().open(&sealed, b"ctx").unwrap(),
            b"secret"
        );
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(s.open(&bad, b"ctx"), Err(KeyError::Unsealable));
        assert_eq!(s.open(&sealed[..10], b"ctx"), Err(KeyError::Unsealable));
        let (other, _) = Sealer::generate().unwrap();
        assert_eq!(other.open(&sealed, b"ctx"), Err(KeyError::Unsealable));
        assert_eq!(
            Sealer::new(&[0; 31]).err(),
            Some(KeyError::BadEncryptionKey)
        );
        // Two seals of one message differ (random nonces).
        assert_ne!(s.seal(b"x", b"c").unwrap(), s.seal(b"x", b"c").unwrap());
    }

    #[test]
    fn pem_keys_are_read_and_public_or_garbage_pem_refused() {
        let key = SigningKey::generate().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8())
        );
        assert_eq!(SigningKey::from_pem(&pem).unwrap().kid(), key.kid());
        assert_eq!(
            SigningKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .err()
                .map(|e| e.to_string()),
            Some(KeyError::BadSigningKey.to_string())
        );
    }
}
