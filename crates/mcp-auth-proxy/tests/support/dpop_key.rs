//! A DPoP key of a client's (Ed25519) and the proofs it signs (RFC 9449 §4),
//! for the facade's tests: the integration tests (`tests/`) and the
//! token endpoint's unit tests (`src/endpoints/tests.rs`) include this
//! file, so it names nothing of the crate itself.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};

/// A client's DPoP key.
pub struct DpopKey {
    pair: aws_lc_rs::signature::Ed25519KeyPair,
    jwk: serde_json::Value,
}

impl DpopKey {
    /// A new key.
    pub fn new() -> Self {
        use aws_lc_rs::signature::KeyPair;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        let x = B64.encode(pair.public_key());
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        Self { pair, jwk }
    }

    /// Its RFC 7638 thumbprint (`cnf.jkt`).
    pub fn jkt(&self) -> String {
        mcp_auth_jwt::jwk_thumbprint(&self.jwk).unwrap()
    }

    /// A fresh proof for `htm` `htu`, with `ath` when a token goes with it
    /// and the server's `nonce` when given.
    pub fn sign(&self, htm: &str, htu: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).unwrap();
        let mut claims =
            serde_json::json!({"jti": B64.encode(jti), "htm": htm, "htu": htu, "iat": now});
        if let Some(t) = token {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes());
            claims["ath"] = B64.encode(digest.as_ref()).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": self.jwk});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = B64.encode(self.pair.sign(input.as_bytes()));
        format!("{input}.{sig}")
    }
}
