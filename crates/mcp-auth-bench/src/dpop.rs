//! The `oauth2-dpop` mode's clients (RFC 9449): each has its own EC P-256
//! key, an access token of the bench's issuer bound to it (`cnf.jkt`), and
//! signs a fresh ES256 proof for every request, as a DPoP client must.

use aws_lc_rs::{
    rand::{SecureRandom, SystemRandom},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde_json::json;

use crate::process::Issuer;

/// One DPoP client: its key, its bound token and the parts of a proof that
/// do not change between requests.
pub(crate) struct DpopClient {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// `DPoP <token>`, the `Authorization` header value.
    pub(crate) authorization: String,
    /// The proof header (`typ`, `alg`, `jwk`), base64url.
    header_b64: String,
    /// The request URL (`htu`) and the token's hash (`ath`).
    htu: String,
    ath: String,
}

impl DpopClient {
    /// Client `n` of the server at `url`: a fresh P-256 key and an access
    /// token of `issuer` bound to it.
    pub(crate) fn new(issuer: &Issuer, url: &str, n: usize) -> Result<Self, String> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| format!("DPoP key: {e}"))?;
        let point = key.public_key().as_ref();
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err("DPoP key: not an uncompressed P-256 point".into()),
        };
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)});
        let jkt = thumbprint(&B64.encode(x), &B64.encode(y));
        let token = issuer.mint_bound(url, n, Some(&jkt))?;
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            authorization: format!("DPoP {token}"),
            header_b64: B64.encode(header.to_string()),
            htu: url.to_owned(),
            ath: B64.encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                token.as_bytes(),
            )),
        })
    }

    /// A fresh proof for `method` to this client's URL: a random `jti`, `iat`
    /// now, `ath`, signed with ES256.
    pub(crate) fn proof(&self, method: &str) -> Result<String, String> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|e| format!("DPoP jti: {e}"))?;
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = json!({
            "jti": B64.encode(jti), "htm": method, "htu": self.htu, "iat": iat, "ath": self.ath,
        });
        let input = format!("{}.{}", self.header_b64, B64.encode(claims.to_string()));
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| format!("DPoP signature: {e}"))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}

/// The RFC 7638 thumbprint of a P-256 public key (its `x` and `y`,
/// base64url): SHA-256 of the required members in lexicographic order.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::thumbprint;

    #[test]
    fn thumbprint_of_rfc_9449_example_key() {
        // The proof key of RFC 9449 §4.2 and its `jkt` in §6.1.
        assert_eq!(
            thumbprint(
                "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"
            ),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }
}
