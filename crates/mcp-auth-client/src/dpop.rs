//! [`DpopKey`]: the client's side of DPoP (RFC 9449), sender-constrained
//! tokens: keys, proofs, nonces.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The one algorithm this client signs proofs with.
pub const DPOP_ALGORITHM: &str = "ES256";

/// The `DPoP` request header (the proof).
pub(crate) const DPOP_HEADER: &str = "dpop";
/// The `DPoP-Nonce` response header.
pub(crate) const DPOP_NONCE_HEADER: &str = "dpop-nonce";
/// The error code of a server that wants a (fresh) nonce.
pub(crate) const USE_DPOP_NONCE: &str = "use_dpop_nonce";
/// Longest nonce kept, in bytes.
const MAX_NONCE: usize = 1024;
/// The PEM label of a PKCS#8 private key.
const PEM_LABEL: &str = "PRIVATE KEY";

/// Why a DPoP key could not be made, read or used. Never contains key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopKeyError {
    /// The operating system's random source failed.
    #[error("no randomness for the DPoP key or proof")]
    Random,
    /// The PEM is not a PKCS#8 EC P-256 private key.
    #[error("not a PEM-encoded PKCS#8 EC P-256 private key")]
    InvalidKey,
    /// Signing the proof failed.
    #[error("signing the DPoP proof failed")]
    Signing,
    /// The URL a proof is for is not an absolute http(s) URL.
    #[error("a DPoP proof needs an absolute http(s) URL")]
    InvalidUrl,
}

/// An EC P-256 key for DPoP proofs (ES256), and the latest nonce each
/// server gave for it. Cheap to clone: clones share the key and the nonces.
/// A token bound to this key is useless to whoever steals it without the
/// key.
///
/// ```
/// use mcp_auth_client::DpopKey;
///
/// // One key per MCP server (the binary keeps it next to the tokens).
/// let key = DpopKey::generate()?;
/// // A proof for the token request: no access token yet.
/// let proof = key.proof("POST", "https://as.example.com/token", None, None)?;
/// assert_eq!(proof.split('.').count(), 3);
/// // A proof for an MCP request with a DPoP-bound token: `ath` binds the
/// // proof to the token, and the nonce the server gave goes in.
/// key.remember_nonce("https://mcp.example.com/mcp", "n-1");
/// let nonce = key.nonce_for("https://mcp.example.com/mcp");
/// let proof = key.proof("POST", "https://mcp.example.com/mcp?x=1", Some("the token"), nonce.as_deref())?;
/// // The key's RFC 7638 thumbprint is the token's `cnf.jkt`.
/// assert_eq!(key.thumbprint().len(), 43);
/// # Ok::<(), mcp_auth_client::DpopKeyError>(())
/// ```
///
/// - [`DpopKey::proof`] signs a proof (§4.2): header `typ: dpop+jwt`,
///   `alg: ES256`, `jwk` = the public key (`kty`, `crv`, `x`, `y` only);
///   claims `jti` (128 random bits), `htm`, `htu` (the URL without query
///   and fragment), `iat`, `ath` = base64url(SHA-256(access token)) with a
///   token, `nonce` when given.
/// - Nonces (§8, §9): [`DpopKey::remember_nonce`] keeps the latest
///   `DPoP-Nonce` each server (scheme, host and port) sent;
///   [`DpopKey::nonce_for`] gives it back for the next proof.
/// - [`DpopKey::to_pkcs8_pem`] / [`DpopKey::from_pkcs8_pem`]: the key on
///   disk (the [`crate::FileCredentialStore`] keeps it in a 0600 file next
///   to the tokens).
///
/// `Debug` shows the thumbprint's first characters, never the key.
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    pair: EcdsaKeyPair,
    /// The public JWK (`crv`, `kty`, `x`, `y`).
    jwk: Value,
    /// RFC 7638 SHA-256 thumbprint, base64url.
    thumbprint: String,
    /// The latest `DPoP-Nonce` per origin (`scheme://host:port`).
    nonces: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &DPOP_ALGORITHM)
            .field("thumbprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Keys are equal when their public keys are (their thumbprints).
impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.thumbprint == other.inner.thumbprint
    }
}

impl Eq for DpopKey {}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| DpopKeyError::Random)?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// The key from a PEM-encoded PKCS#8 private key (`-----BEGIN PRIVATE
    /// KEY-----`), as [`DpopKey::to_pkcs8_pem`] writes it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, DpopKeyError> {
        let begin = format!("-----BEGIN {PEM_LABEL}-----");
        let end = format!("-----END {PEM_LABEL}-----");
        let body = pem
            .trim()
            .strip_prefix(&begin)
            .and_then(|rest| rest.strip_suffix(&end))
            .ok_or(DpopKeyError::InvalidKey)?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = STANDARD.decode(b64).map_err(|_| DpopKeyError::InvalidKey)?;
        Self::from_pkcs8_der(&der)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, DpopKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| DpopKeyError::InvalidKey)?;
        // The uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err(DpopKeyError::InvalidKey),
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638 §3.2: the required members, lexicographic order, no
        // whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Self {
            inner: Arc::new(Inner {
                pair,
                jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                thumbprint,
                nonces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The private key, PEM-encoded PKCS#8, for a file only its owner can
    /// read.
    pub fn to_pkcs8_pem(&self) -> Result<String, DpopKeyError> {
        let der = self
            .inner
            .pair
            .to_pkcs8v1()
            .map_err(|_| DpopKeyError::InvalidKey)?;
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        Ok(pem)
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`): what every proof
    /// carries in its header.
    pub fn public_jwk(&self) -> &Value {
        &self.inner.jwk
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url: the
    /// `cnf.jkt` of the tokens bound to this key.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The thumbprint's first 8 characters, for logs.
    pub fn fingerprint(&self) -> &str {
        self.inner.thumbprint.get(..8).unwrap_or_default()
    }

    /// A fresh proof for one `method` request to `url` (RFC 9449 §4.2):
    /// `htu` is `url` without its query and fragment, `ath` the hash of
    /// `access_token` when given, `nonce` when given. Each proof has its
    /// own random `jti`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, DpopKeyError> {
        let htu = htu(url).ok_or(DpopKeyError::InvalidUrl)?;
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| DpopKeyError::Random)?;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = json!({
            "typ": "dpop+jwt",
            "alg": DPOP_ALGORITHM,
            "jwk": self.inner.jwk,
        });
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = Value::from(URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .inner
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| DpopKeyError::Signing)?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Keeps `nonce` as the latest `DPoP-Nonce` of the server at `url`
    /// (its scheme, host and port). A value that is not a valid nonce
    /// (RFC 9449 §8.1: printable ASCII without `"` and `\`, here at most
    /// 1 KiB) is ignored; returns whether it was kept.
    pub fn remember_nonce(&self, url: &str, nonce: &str) -> bool {
        let valid = !nonce.is_empty()
            && nonce.len() <= MAX_NONCE
            && nonce
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e));
        let Some(origin) = origin(url) else {
            return false;
        };
        if !valid {
            tracing::debug!(server = %origin, "ignoring a DPoP-Nonce that is not a valid nonce");
            return false;
        }
        if let Ok(mut nonces) = self.inner.nonces.lock() {
            nonces.insert(origin, nonce.to_owned());
        }
        true
    }

    /// The latest nonce the server at `url` gave, if any.
    pub fn nonce_for(&self, url: &str) -> Option<String> {
        let origin = origin(url)?;
        self.inner.nonces.lock().ok()?.get(&origin).cloned()
    }
}

/// `url` without user information, query and fragment (a proof's `htu`:
/// the request's target URI, RFC 9449 §4.2, which user information is no
/// part of, RFC 9110 §4.2.4), when it is an absolute http(s) URL.
pub(crate) fn htu(url: &str) -> Option<String> {
    let mut u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return None;
    }
    u.set_username("").ok()?;
    u.set_password(None).ok()?;
    u.set_query(None);
    u.set_fragment(None);
    Some(u.into())
}

/// `scheme://host:port` of `url`.
fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?
    ))
}

/// Whether authorization-server metadata (its extra fields) advertises
/// DPoP with ES256 (`dpop_signing_alg_values_supported`).
pub(crate) fn supports_es256(additional_fields: &HashMap<String, Value>) -> bool {
    additional_fields
        .get("dpop_signing_alg_values_supported")
        .and_then(Value::as_array)
        .is_some_and(|algs| algs.iter().any(|a| a.as_str() == Some(DPOP_ALGORITHM)))
}

/// Whether the MCP server (the resource) takes DPoP-bound tokens: its
/// challenge names the `DPoP` scheme, or its protected-resource metadata
/// (RFC 9728, at the challenge's `resource_metadata` or the well-known URL)
/// lists ES256 in `dpop_signing_alg_values_supported`. A token bound for a
/// server that checks no proofs would be refused there, so without this
/// the client asks for bearer tokens even when the authorization server
/// offers DPoP. Any failure to find out counts as no. The metadata is
/// fetched as discovery fetches it ([`OAuthHttp`](crate::oauth_http::OAuthHttp):
/// its address policy and body limit), without following redirects.
pub(crate) async fn resource_accepts_dpop(server_url: &str, challenge: &str) -> bool {
    let scheme = challenge.split_whitespace().next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case("dpop") {
        return true;
    }
    // A relative `resource_metadata` (RFC 9728 asks for a URL; rmcp reads
    // one relative to the server's) is taken as rmcp takes it.
    let url = match crate::failure::challenge_param(challenge, "resource_metadata") {
        Some(given) => match url::Url::parse(server_url).and_then(|base| base.join(&given)) {
            Ok(url) => url.to_string(),
            Err(_) => return false,
        },
        None => mcp_auth_core::metadata_url_for(server_url),
    };
    let Ok(http) = crate::oauth_http::OAuthHttp::new(server_url) else {
        return false;
    };
    let redirect = rmcp::transport::auth::OAuthHttpRedirectPolicy::Stop;
    let timeout = std::time::Duration::from_secs(10);
    http.get_json::<HashMap<String, Value>>(&url, redirect, timeout)
        .await
        .is_some_and(|metadata| supports_es256(&metadata))
}

/// Whether an OAuth `token_type` is `DPoP` (case-insensitive, RFC 9449
/// §5).
pub(crate) fn is_dpop_token_type(token_type: &str) -> bool {
    token_type.eq_ignore_ascii_case("dpop")
}

/// Whether a `WWW-Authenticate` value is a `DPoP` challenge with
/// `error="use_dpop_nonce"` (RFC 9449 §9).
pub(crate) fn is_nonce_challenge(challenge: &str) -> bool {
    let scheme = challenge
        .trim_start()
        .split([' ', ','])
        .next()
        .unwrap_or("");
    scheme.eq_ignore_ascii_case("dpop")
        && crate::failure::challenge_param(challenge, "error").as_deref() == Some(USE_DPOP_NONCE)
}

#[cfg(test)]
mod tests {
    use mcp_auth_jwt::{DpopVerifier, jwk_thumbprint};

    use super::*;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A resource whose metadata lists `algs` (none: 404) on loopback; its
    /// MCP URL.
    async fn resource(algs: Option<Vec<&'static str>>) -> String {
        use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let resource = format!("{base}/mcp");
        let doc = json!({"resource": resource, "dpop_signing_alg_values_supported": algs});
        let app = Router::new().route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || {
                let doc = doc.clone();
                async move {
                    if doc["dpop_signing_alg_values_supported"].is_null() {
                        StatusCode::NOT_FOUND.into_response()
                    } else {
                        Json(doc).into_response()
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        resource
    }

    /// A token is bound only for a resource that takes bound tokens: its
    /// challenge names DPoP, or its metadata lists ES256.
    #[tokio::test]
    async fn dpop_only_where_the_resource_takes_bound_tokens() {
        let es256 = resource(Some(vec!["ES256", "EdDSA"])).await;
        let eddsa = resource(Some(vec!["EdDSA"])).await;
        let none = resource(None).await;
        let bearer = |url: &str| {
            format!(
                r#"Bearer resource_metadata="{}""#,
                mcp_auth_core::metadata_url_for(url)
            )
        };
        assert!(resource_accepts_dpop(&es256, &bearer(&es256)).await);
        assert!(
            resource_accepts_dpop(&es256, "Bearer").await,
            "the well-known URL"
        );
        // A relative resource_metadata, as rmcp reads it: against the
        // server's URL (it read as no DPoP).
        assert!(
            resource_accepts_dpop(
                &es256,
                r#"Bearer resource_metadata="/.well-known/oauth-protected-resource/mcp""#
            )
            .await,
            "a relative metadata URL"
        );
        assert!(
            !resource_accepts_dpop(&eddsa, &bearer(&eddsa)).await,
            "no ES256"
        );
        assert!(
            !resource_accepts_dpop(&none, &bearer(&none)).await,
            "no metadata"
        );
        assert!(
            resource_accepts_dpop(&none, r#"DPoP algs="ES256""#).await,
            "a DPoP challenge"
        );
        assert!(
            !resource_accepts_dpop("http://127.0.0.1:9/mcp", "Bearer").await,
            "unreachable"
        );
    }

    fn parts(proof: &str) -> (Value, Value) {
        let mut it = proof.split('.');
        let mut next = || {
            let part = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
            serde_json::from_slice::<Value>(&part).unwrap()
        };
        (next(), next())
    }

    /// The proofs verify with the server's verifier (mcp-auth-jwt), with
    /// `ath` and the nonce checked; the thumbprints agree.
    #[test]
    fn the_server_verifier_accepts_the_proofs() {
        let key = DpopKey::generate().unwrap();
        let verifier = DpopVerifier::default();
        let url = "https://MCP.example.com:443/mcp?session=1#frag";
        let proof = key.proof("POST", url, Some("tok-1"), Some("n-1")).unwrap();
        let ok = verifier
            .verify(
                &proof,
                "POST",
                "https://mcp.example.com/mcp",
                Some("tok-1"),
                Some("n-1"),
                now(),
            )
            .unwrap();
        assert_eq!(ok.jkt, key.thumbprint());
        assert_eq!(ok.jkt, jwk_thumbprint(key.public_jwk()).unwrap());
        assert_eq!(ok.nonce.as_deref(), Some("n-1"));

        // Another token's `ath`, another nonce, another method: refused.
        let e = verifier
            .verify(&proof, "POST", url, Some("tok-2"), Some("n-1"), now())
            .unwrap_err();
        assert_eq!(e.error_code(), "invalid_dpop_proof", "{e}");
        let e = verifier
            .verify(&proof, "POST", url, Some("tok-1"), Some("n-2"), now())
            .unwrap_err();
        assert_eq!(e.error_code(), "use_dpop_nonce", "{e}");
        assert!(
            verifier
                .verify(&proof, "GET", url, Some("tok-1"), None, now())
                .is_err()
        );

        // A token request's proof: no `ath`, no nonce.
        let proof = key
            .proof("POST", "https://as.example.com/token", None, None)
            .unwrap();
        verifier
            .verify(
                &proof,
                "POST",
                "https://as.example.com/token",
                None,
                None,
                now(),
            )
            .unwrap();
        let (_, claims) = parts(&proof);
        assert!(claims.get("ath").is_none() && claims.get("nonce").is_none());
    }

    /// Header and claims are exactly those of RFC 9449 §4.2; the `jwk` has
    /// only public members; `htu` drops user information, query and
    /// fragment; each `jti` is new.
    #[test]
    fn proof_shape() {
        let key = DpopKey::generate().unwrap();
        let a = key
            .proof("GET", "http://127.0.0.1:9/mcp?q=1#f", Some("t"), None)
            .unwrap();
        let b = key
            .proof("GET", "http://127.0.0.1:9/mcp", Some("t"), None)
            .unwrap();
        let (header, claims) = parts(&a);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        let mut members: Vec<_> = header["jwk"].as_object().unwrap().keys().cloned().collect();
        members.sort();
        assert_eq!(members, ["crv", "kty", "x", "y"]);
        let mut names: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["ath", "htm", "htu", "iat", "jti"]);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "http://127.0.0.1:9/mcp");
        assert_eq!(
            claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"t")).as_str()
        );
        assert!(claims["jti"].as_str().unwrap().len() >= 16);
        assert_ne!(claims["jti"], parts(&b).1["jti"]);
        assert!(now().abs_diff(claims["iat"].as_u64().unwrap()) <= 5);

        // User information is no part of the target URI (a server URL
        // with a password in it failed every request with DPoP).
        let with_user = key
            .proof("GET", "http://alice:pw@127.0.0.1:9/mcp?q", None, None)
            .unwrap();
        assert_eq!(parts(&with_user).1["htu"], "http://127.0.0.1:9/mcp");
        for bad in ["/mcp", "ftp://h/x", "not a url"] {
            assert_eq!(
                key.proof("GET", bad, None, None).unwrap_err(),
                DpopKeyError::InvalidUrl,
                "{bad}"
            );
        }
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let key = DpopKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let back = DpopKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert_ne!(DpopKey::generate().unwrap().thumbprint(), key.thumbprint());
        for bad in [
            "",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "x",
        ] {
            assert_eq!(
                DpopKey::from_pkcs8_pem(bad).unwrap_err(),
                DpopKeyError::InvalidKey
            );
        }
    }

    #[test]
    fn debug_shows_a_fingerprint_not_the_key() {
        let key = DpopKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.fingerprint()), "{shown}");
        assert!(!shown.contains(key.thumbprint()), "{shown}");
        let pem = key.to_pkcs8_pem().unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!shown.contains(body), "{shown}");
    }

    #[test]
    fn nonces_are_kept_per_server_and_checked() {
        let key = DpopKey::generate().unwrap();
        assert_eq!(key.nonce_for("https://a.example/mcp"), None);
        assert!(key.remember_nonce("https://A.example:443/mcp", "n-1"));
        assert_eq!(
            key.nonce_for("https://a.example/other").as_deref(),
            Some("n-1")
        );
        assert_eq!(key.nonce_for("http://a.example/mcp"), None);
        assert!(key.remember_nonce("https://a.example/token", "n-2"));
        assert_eq!(
            key.nonce_for("https://a.example/mcp").as_deref(),
            Some("n-2")
        );
        for bad in [
            "",
            "with space",
            "quo\"te",
            "back\\slash",
            &"x".repeat(2000),
        ] {
            assert!(!key.remember_nonce("https://a.example/", bad), "{bad:?}");
        }
        assert_eq!(
            key.nonce_for("https://a.example/mcp").as_deref(),
            Some("n-2")
        );
        // Clones share the nonces.
        let clone = key.clone();
        clone.remember_nonce("https://b.example/", "n-3");
        assert_eq!(key.nonce_for("https://b.example/x").as_deref(), Some("n-3"));
    }

    #[test]
    fn reads_metadata_and_challenges() {
        let fields = |v: Value| -> HashMap<String, Value> { serde_json::from_value(v).unwrap() };
        assert!(supports_es256(&fields(
            json!({"dpop_signing_alg_values_supported": ["RS256", "ES256"]})
        )));
        assert!(!supports_es256(&fields(
            json!({"dpop_signing_alg_values_supported": ["EdDSA"]})
        )));
        assert!(!supports_es256(&fields(
            json!({"dpop_signing_alg_values_supported": "ES256"})
        )));
        assert!(!supports_es256(&HashMap::new()));
        assert!(is_nonce_challenge(
            r#"DPoP error="use_dpop_nonce", error_description="x""#
        ));
        assert!(is_nonce_challenge(
            r#"dpop algs="ES256", error=use_dpop_nonce"#
        ));
        assert!(!is_nonce_challenge(r#"Bearer error="use_dpop_nonce""#));
        assert!(!is_nonce_challenge(r#"DPoP error="invalid_token""#));
        assert!(is_dpop_token_type("DPoP") && is_dpop_token_type("dpop"));
        assert!(!is_dpop_token_type("Bearer"));
    }
}
