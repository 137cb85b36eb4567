//! DPoP proofs (RFC 9449): the signed JWT a client sends in the `DPoP`
//! header to show it holds the key its access token is bound to.
//!
//! ```
//! use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
//! use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
//! use mcp_auth_jwt::{DpopError, DpopVerifier, jwk_thumbprint};
//! use serde_json::json;
//!
//! // The client: a key pair, and a proof for one request.
//! let key = Ed25519KeyPair::generate().unwrap();
//! let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.public_key())});
//! let now = 1_700_000_000;
//! let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
//! let claims = json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST",
//!                     "htu": "https://mcp.example.com/mcp", "iat": now});
//! let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
//! let proof = format!("{input}.{}", B64.encode(key.sign(input.as_bytes())));
//!
//! // The server: every RFC 9449 §4.3 check but the replay check, which
//! // needs shared storage (see `DpopProof::replay_key`).
//! let verifier = DpopVerifier::default();
//! let ok = verifier
//!     .verify(&proof, "POST", "https://MCP.example.com:443/mcp?x=1", None, None, now)
//!     .unwrap();
//! assert_eq!(ok.jkt, jwk_thumbprint(&jwk).unwrap());
//! assert_eq!(ok.jti, "e1j3V_bKic8-LAEB");
//!
//! // Another method, or a required nonce the proof lacks, is refused.
//! let wrong = verifier.verify(&proof, "GET", "https://mcp.example.com/mcp", None, None, now);
//! assert_eq!(wrong.unwrap_err().error_code(), "invalid_dpop_proof");
//! let nonce = verifier.verify(&proof, "POST", "https://mcp.example.com/mcp", None, Some("n-1"), now);
//! assert_eq!(nonce.unwrap_err(), DpopError::NonceRequired);
//! ```
//!
//! [`DpopVerifier::verify`] performs the checks of RFC 9449 §4.3 that need
//! no state: one compact JWS of bounded size; `typ` exactly `dpop+jwt`; an
//! allow-listed asymmetric `alg`; a public `jwk` whose type and curve fit
//! that `alg`; a valid signature under that key; claims `jti`, `htm`, `htu`
//! and `iat` present and well-typed; `htm` equal to the request method;
//! `htu` equal to the request URL (normalised: see [`DpopVerifier::verify`]);
//! `iat` within the window; `ath` equal to the hash of the access token when
//! one is presented; `nonce` equal to the server's when one is required.
//!
//! Two checks remain for the caller:
//!
//! - **replay**: a `jti` may be accepted only once within
//!   [`DpopVerifier::replay_ttl`]; store [`DpopProof::replay_key`] with
//!   an insert-if-absent (e.g. the session store's `kv_put_new`) and refuse
//!   the request when it already existed;
//! - **binding**: an access token's `cnf.jkt` must equal [`DpopProof::jkt`].
//!
//! The HTTP layer must also refuse a request with more than one `DPoP`
//! header field (RFC 9449 §4.3 step 1); joined values contain a comma and
//! are refused here as malformed.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::numeric_date;

/// Largest accepted proof, in bytes (8 KiB: a proof with the largest key
/// accepted, 4096-bit RSA, is about 2 KiB).
pub const DEFAULT_MAX_DPOP_PROOF_BYTES: usize = 8 * 1024;

/// Longest accepted `jti`, in bytes. RFC 9449 asks for 96 bits of
/// randomness; clients send 16 to 64 characters.
pub const MAX_DPOP_JTI_BYTES: usize = 256;

/// Every algorithm a DPoP proof may use: the asymmetric ones. `none` and
/// HMAC are never accepted (a proof must be verifiable with its own public
/// key).
pub const DPOP_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// The algorithms a [`DpopVerifier`] accepts unless told otherwise.
pub const DEFAULT_DPOP_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// Default: a proof may be this old (seconds).
const DEFAULT_MAX_AGE: u64 = 60;
/// Default: a proof's `iat` may lie this far in the future (seconds).
const DEFAULT_MAX_FUTURE: u64 = 5;
/// Smallest and largest accepted RSA modulus, in bits.
const RSA_MIN_BITS: usize = 2048;
// 4096 at most: a caller can make the server verify a proof before its token
// is checked, and an 8192-bit key costs about four times a 4096-bit one.
const RSA_MAX_BITS: usize = 4096;
/// JWK members that carry private (or symmetric) key material.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a DPoP proof was refused. `Display` is short, names no key material
/// and is safe to send to the client as `error_description`;
/// [`error_code`](Self::error_code) gives the `error` to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a single compact JWS (bad base64url, not JSON objects, extra or
    /// missing segments, several proofs joined).
    #[error("malformed DPoP proof")]
    Malformed,
    /// Larger than the configured limit.
    #[error("DPoP proof too large")]
    TooLarge,
    /// The header's `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ must be dpop+jwt")]
    Type,
    /// The header's `alg` is missing, `none`, symmetric, or not allowed.
    #[error("DPoP proof algorithm not allowed")]
    Algorithm,
    /// The header lists `crit` extensions, none of which are understood.
    #[error("unsupported critical header in DPoP proof")]
    Critical,
    /// The header has no `jwk` object.
    #[error("DPoP proof has no jwk header")]
    MissingKey,
    /// The header's `jwk` contains private or symmetric key material.
    #[error("DPoP proof jwk must be a public key")]
    PrivateKey,
    /// The `jwk` type or curve does not fit the `alg` (or its own `alg`
    /// member names another algorithm).
    #[error("DPoP proof jwk does not fit its algorithm")]
    KeyMismatch,
    /// The `jwk` members are malformed, or an RSA modulus is outside
    /// 2048..=4096 bits or its exponent outside 3..=65537 (odd).
    #[error("unusable DPoP proof key")]
    BadKey,
    /// The signature does not verify with the header's `jwk`.
    #[error("invalid DPoP proof signature")]
    Signature,
    /// A required claim is missing or malformed (names the claim).
    #[error("missing or malformed DPoP proof claim: {0}")]
    Claim(&'static str),
    /// `htm` is not the request method.
    #[error("DPoP proof htm does not match the request method")]
    Method,
    /// `htu` is not the request URL.
    #[error("DPoP proof htu does not match the request URL")]
    Url,
    /// `iat` is older than the window allows.
    #[error("DPoP proof is too old")]
    Stale,
    /// `iat` lies further in the future than the window allows.
    #[error("DPoP proof issued in the future")]
    Future,
    /// `ath` is not the hash of the presented access token.
    #[error("DPoP proof ath does not match the access token")]
    AccessTokenHash,
    /// The server requires a nonce and the proof has none.
    #[error("DPoP nonce required")]
    NonceRequired,
    /// The proof's nonce is not the one the server expects (stale or wrong).
    #[error("DPoP nonce is stale or invalid")]
    NonceMismatch,
}

impl DpopError {
    /// The OAuth `error` code for this refusal (RFC 9449 §7.1, §8, §9):
    /// `use_dpop_nonce` when the client should retry with the nonce the
    /// server sends (in a `DPoP-Nonce` header), `invalid_dpop_proof`
    /// otherwise.
    ///
    /// ```
    /// use mcp_auth_jwt::DpopError;
    /// assert_eq!(DpopError::NonceMismatch.error_code(), "use_dpop_nonce");
    /// assert_eq!(DpopError::Signature.error_code(), "invalid_dpop_proof");
    /// ```
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::NonceRequired | Self::NonceMismatch => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// A [`DpopVerifier`] that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopBuildError {
    /// The allowed algorithms list is empty.
    #[error("no DPoP algorithms allowed")]
    NoAlgorithms,
    /// An algorithm that is not asymmetric (HMAC) was allowed.
    #[error("algorithm {0:?} cannot sign DPoP proofs (asymmetric algorithms only)")]
    Symmetric(Algorithm),
}

/// A verified DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopProof {
    /// RFC 7638 SHA-256 thumbprint (base64url) of the proof's public key:
    /// what an access token's `cnf.jkt` must equal.
    pub jkt: String,
    /// The proof's unique id. The caller must refuse a `jti` seen before
    /// within [`DpopVerifier::replay_ttl`] (see [`replay_key`](Self::replay_key)).
    pub jti: String,
    /// The proof's `iat`, seconds since the epoch.
    pub iat: u64,
    /// The proof's `nonce`, if any (checked only when one was expected).
    pub nonce: Option<String>,
    /// The algorithm the proof was verified with.
    pub alg: Algorithm,
}

impl DpopProof {
    /// A fixed-length (43 characters, base64url) key for the replay store:
    /// SHA-256 over the key thumbprint and the `jti`, so one client's ids
    /// never collide with another's and no client-chosen text reaches the
    /// store. Insert it if absent, for [`DpopVerifier::replay_ttl`]; refuse
    /// the proof when it was already there.
    ///
    /// ```
    /// # use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    /// # use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    /// # use serde_json::json;
    /// # let key = Ed25519KeyPair::generate().unwrap();
    /// # let h = json!({"typ": "dpop+jwt", "alg": "EdDSA",
    /// #     "jwk": {"kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.public_key())}});
    /// # let c = json!({"jti": "abc", "htm": "GET", "htu": "https://a.example/", "iat": 100});
    /// # let input = format!("{}.{}", B64.encode(h.to_string()), B64.encode(c.to_string()));
    /// # let proof = format!("{input}.{}", B64.encode(key.sign(input.as_bytes())));
    /// let v = mcp_auth_jwt::DpopVerifier::default();
    /// let p = v.verify(&proof, "GET", "https://a.example/", None, None, 100).unwrap();
    /// assert_eq!(p.replay_key().len(), 43);
    /// assert_eq!(p.replay_key(), p.clone().replay_key());
    /// ```
    pub fn replay_key(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(self.jkt.as_bytes());
        ctx.update(b"\0");
        ctx.update(self.jti.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.finish())
    }
}

/// Verifies DPoP proofs (RFC 9449 §4.3). Cheap to clone; holds settings
/// only, no state.
///
/// [`verify`](Self::verify) performs every check that needs no state. Three
/// remain for the caller:
///
/// - **replay**: a `jti` may be accepted only once within
///   [`replay_ttl`](Self::replay_ttl); store [`DpopProof::replay_key`] with
///   an insert-if-absent (e.g. the session store's `kv_put_new`) and refuse
///   the request (`invalid_dpop_proof`) when it already existed;
/// - **binding**: a DPoP-bound access token's `cnf.jkt` must equal
///   [`DpopProof::jkt`];
/// - **one header**: a request with more than one `DPoP` header field must
///   be refused (RFC 9449 §4.3 step 1); values joined with a comma are
///   refused here as [`DpopError::Malformed`].
///
/// ```
/// use std::time::Duration;
/// use mcp_auth_jwt::{Algorithm, DpopVerifier};
///
/// let v = DpopVerifier::builder()
///     .algorithms(&[Algorithm::ES256, Algorithm::EdDSA])
///     .iat_window(Duration::from_secs(30), Duration::from_secs(2))
///     .build()
///     .unwrap();
/// assert_eq!(v.replay_ttl(), Duration::from_secs(34));
/// assert!(DpopVerifier::builder().algorithms(&[Algorithm::HS256]).build().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct DpopVerifier {
    algorithms: Vec<Algorithm>,
    max_age: u64,
    max_future: u64,
    max_proof_bytes: usize,
}

/// Builder for [`DpopVerifier`].
#[derive(Debug, Clone)]
pub struct DpopVerifierBuilder {
    algorithms: Vec<Algorithm>,
    max_age: Duration,
    max_future: Duration,
    max_proof_bytes: usize,
}

impl Default for DpopVerifier {
    /// ES256, EdDSA, RS256 and PS256; `iat` up to 60 s old and 5 s ahead;
    /// proofs up to 8 KiB.
    fn default() -> Self {
        Self {
            algorithms: DEFAULT_DPOP_ALGORITHMS.to_vec(),
            max_age: DEFAULT_MAX_AGE,
            max_future: DEFAULT_MAX_FUTURE,
            max_proof_bytes: DEFAULT_MAX_DPOP_PROOF_BYTES,
        }
    }
}

impl DpopVerifierBuilder {
    /// Only these algorithms (each from [`DPOP_ALGORITHMS`]); default
    /// [`DEFAULT_DPOP_ALGORITHMS`].
    pub fn algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.algorithms = algs.to_vec();
        self
    }

    /// How old (`past`) and how far ahead (`future`) a proof's `iat` may
    /// be, in whole seconds; default 60 s and 5 s. The bounds are
    /// inclusive.
    pub fn iat_window(mut self, past: Duration, future: Duration) -> Self {
        self.max_age = past;
        self.max_future = future;
        self
    }

    /// Largest accepted proof in bytes (default
    /// [`DEFAULT_MAX_DPOP_PROOF_BYTES`]).
    pub fn max_proof_bytes(mut self, n: usize) -> Self {
        self.max_proof_bytes = n;
        self
    }

    /// Builds the verifier; refuses an empty or non-asymmetric algorithm
    /// list.
    pub fn build(self) -> Result<DpopVerifier, DpopBuildError> {
        if self.algorithms.is_empty() {
            return Err(DpopBuildError::NoAlgorithms);
        }
        if let Some(bad) = self
            .algorithms
            .iter()
            .find(|a| !DPOP_ALGORITHMS.contains(a))
        {
            return Err(DpopBuildError::Symmetric(*bad));
        }
        Ok(DpopVerifier {
            algorithms: self.algorithms,
            max_age: self.max_age.as_secs(),
            max_future: self.max_future.as_secs(),
            max_proof_bytes: self.max_proof_bytes,
        })
    }
}

impl DpopVerifier {
    /// A builder with the [`Default`] settings.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder {
            algorithms: DEFAULT_DPOP_ALGORITHMS.to_vec(),
            max_age: Duration::from_secs(DEFAULT_MAX_AGE),
            max_future: Duration::from_secs(DEFAULT_MAX_FUTURE),
            max_proof_bytes: DEFAULT_MAX_DPOP_PROOF_BYTES,
        }
    }

    /// The algorithms accepted.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// How long a `jti` must be remembered, from the moment its proof was
    /// accepted, to refuse every replay: the whole `iat` window (a proof
    /// dated at the window's future edge stays acceptable that long), plus
    /// 2 s for whole-second clocks and replicas' clocks a little apart.
    pub fn replay_ttl(&self) -> Duration {
        Duration::from_secs(
            self.max_age
                .saturating_add(self.max_future)
                .saturating_add(2),
        )
    }

    /// Verifies `proof` (the `DPoP` header value) for a request.
    ///
    /// - `method`: the request method, compared exactly (methods are
    ///   case-sensitive);
    /// - `url`: the request URL as the client addressed it (scheme, host as
    ///   seen behind any proxy, path). `htu` and `url` are compared after
    ///   normalisation: scheme and host lowercased, the default port (80
    ///   for `http`, 443 for `https`) and an empty port removed, query and
    ///   fragment dropped, an empty path read as `/`; the path is compared
    ///   byte for byte otherwise (no percent-decoding, no dot-segment
    ///   removal). Only `http` and `https` URLs without userinfo are
    ///   accepted;
    /// - `access_token`: the access token presented with the proof, if any;
    ///   then `ath` is required and must be base64url(SHA-256(token));
    ///   without one, `ath` is ignored;
    /// - `expected_nonce`: the nonce the server requires, if any; then the
    ///   proof's `nonce` must equal it ([`DpopError::NonceRequired`] /
    ///   [`DpopError::NonceMismatch`], both `use_dpop_nonce`). Without one,
    ///   a `nonce` in the proof is returned unchecked. The nonce is checked
    ///   last, so a nonce error means the proof is otherwise valid;
    /// - `now`: seconds since the epoch.
    ///
    /// Replay (`jti`) and the token binding (`cnf.jkt`) are the caller's:
    /// see [`DpopVerifier`].
    pub fn verify(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        expected_nonce: Option<&str>,
        now: u64,
    ) -> Result<DpopProof, DpopError> {
        if proof.len() > self.max_proof_bytes {
            return Err(DpopError::TooLarge);
        }
        let (header_b64, payload_b64, signature_b64) = split_compact(proof)?;
        let header = decode_object(header_b64)?;

        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
            return Err(DpopError::Type);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(asymmetric_algorithm)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(DpopError::Algorithm)?;
        if header.contains_key("crit") {
            return Err(DpopError::Critical);
        }
        let jwk = header
            .get("jwk")
            .and_then(Value::as_object)
            .ok_or(DpopError::MissingKey)?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(DpopError::PrivateKey);
        }
        let key = decoding_key(jwk, alg)?;

        if signature_b64.is_empty() {
            return Err(DpopError::Signature);
        }
        // `proof` is ASCII (checked by `split_compact`), so this slice is the
        // exact signing input `header.payload`.
        let signing_input = &proof[..header_b64.len() + 1 + payload_b64.len()];
        match jsonwebtoken::crypto::verify(signature_b64, signing_input.as_bytes(), &key, alg) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(DpopError::Signature),
        }

        let claims = decode_object(payload_b64)?;
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= MAX_DPOP_JTI_BYTES)
            .ok_or(DpopError::Claim("jti"))?;
        let htm = claims
            .get("htm")
            .and_then(Value::as_str)
            .ok_or(DpopError::Claim("htm"))?;
        let htu = claims
            .get("htu")
            .and_then(Value::as_str)
            .ok_or(DpopError::Claim("htu"))?;
        let iat = claims
            .get("iat")
            .and_then(numeric_date)
            .ok_or(DpopError::Claim("iat"))?;
        let nonce = match claims.get("nonce") {
            None => None,
            Some(Value::String(n)) => Some(n.as_str()),
            Some(_) => return Err(DpopError::Claim("nonce")),
        };

        if htm != method {
            return Err(DpopError::Method);
        }
        match (normalize_htu(htu), normalize_htu(url)) {
            (Some(claimed), Some(actual)) if claimed == actual => {}
            _ => return Err(DpopError::Url),
        }
        if iat.saturating_add(self.max_age) < now {
            return Err(DpopError::Stale);
        }
        if iat > now.saturating_add(self.max_future) {
            return Err(DpopError::Future);
        }
        if let Some(token) = access_token {
            let ath = claims
                .get("ath")
                .and_then(Value::as_str)
                .ok_or(DpopError::Claim("ath"))?;
            let expected = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                token.as_bytes(),
            ));
            if ath != expected {
                return Err(DpopError::AccessTokenHash);
            }
        }
        if let Some(expected) = expected_nonce {
            match nonce {
                None => return Err(DpopError::NonceRequired),
                Some(n) if n != expected => return Err(DpopError::NonceMismatch),
                Some(_) => {}
            }
        }

        Ok(DpopProof {
            jkt: jwk_thumbprint_of(jwk)?,
            jti: jti.to_owned(),
            iat,
            nonce: nonce.map(str::to_owned),
            alg,
        })
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public key, base64url without
/// padding: the JSON object of the key type's required members only
/// (RSA: `e`, `kty`, `n`; EC: `crv`, `kty`, `x`, `y`; OKP (RFC 8037):
/// `crv`, `kty`, `x`), in lexicographic order, without whitespace. Other
/// members, private ones included, are ignored. Refuses other key types
/// and missing or non-string members ([`DpopError::BadKey`]).
///
/// ```
/// use mcp_auth_jwt::jwk_thumbprint;
/// let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
///     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
/// // RFC 8037 §A.3
/// assert_eq!(jwk_thumbprint(&jwk).unwrap(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
/// ```
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, DpopError> {
    jwk_thumbprint_of(jwk.as_object().ok_or(DpopError::BadKey)?)
}

fn jwk_thumbprint_of(jwk: &Map<String, Value>) -> Result<String, DpopError> {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => return Err(DpopError::BadKey),
    };
    // Built by hand rather than by serialising a map: the member order must
    // not depend on serde_json's `preserve_order` feature.
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk
            .get(*name)
            .and_then(Value::as_str)
            .ok_or(DpopError::BadKey)?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        canonical.push_str(&Value::String(value.to_owned()).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    )))
}

/// The three segments of a compact JWS: exactly two dots, non-empty header
/// and payload, only base64url characters (so no whitespace, commas or
/// second proof). The signature may be empty here (`alg: none`), to be
/// refused by the algorithm check.
fn split_compact(proof: &str) -> Result<(&str, &str, &str), DpopError> {
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = proof.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None)
            if !h.is_empty() && !p.is_empty() && is_b64url(h) && is_b64url(p) && is_b64url(s) =>
        {
            Ok((h, p, s))
        }
        _ => Err(DpopError::Malformed),
    }
}

/// A base64url segment holding a JSON object.
fn decode_object(segment: &str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| DpopError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| DpopError::Malformed)
}

/// The asymmetric algorithm named `name` (never `none`, never HMAC).
fn asymmetric_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The verification key from a public `jwk`, after checking that its type,
/// curve and size fit `alg`.
fn decoding_key(jwk: &Map<String, Value>, alg: Algorithm) -> Result<DecodingKey, DpopError> {
    let member = |name: &str| -> Result<Vec<u8>, DpopError> {
        let text = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or(DpopError::BadKey)?;
        URL_SAFE_NO_PAD.decode(text).map_err(|_| DpopError::BadKey)
    };
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    if let Some(own) = jwk.get("alg")
        && own.as_str().and_then(asymmetric_algorithm) != Some(alg)
    {
        return Err(DpopError::KeyMismatch);
    }
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (want, len) = if alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            if kty != Some("EC") || crv != Some(want) {
                return Err(DpopError::KeyMismatch);
            }
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != len || y.len() != len {
                return Err(DpopError::BadKey);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(DecodingKey::from_ec_der(&point))
        }
        Algorithm::EdDSA => {
            if kty != Some("OKP") || crv != Some("Ed25519") {
                return Err(DpopError::KeyMismatch);
            }
            let x = member("x")?;
            if x.len() != 32 {
                return Err(DpopError::BadKey);
            }
            Ok(DecodingKey::from_ed_der(&x))
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            if kty != Some("RSA") {
                return Err(DpopError::KeyMismatch);
            }
            let (n, e) = (member("n")?, member("e")?);
            let bits = modulus_bits(&n);
            // An odd public exponent from 3 to 65537 (what keys use): a
            // larger one would make verifying cost more again, a 33-bit
            // exponent about as much as a key twice the size.
            let e_value = e
                .iter()
                .try_fold(0u64, |v, b| v.checked_mul(256)?.checked_add(u64::from(*b)));
            let e_ok = e_value.is_some_and(|v| (3..=65_537).contains(&v) && v % 2 == 1);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || !e_ok {
                return Err(DpopError::BadKey);
            }
            Ok(DecodingKey::from_rsa_raw_components(&n, &e))
        }
        _ => Err(DpopError::Algorithm),
    }
}

/// The bit length of a big-endian unsigned integer.
fn modulus_bits(n: &[u8]) -> usize {
    let mut digits = n.iter().skip_while(|b| **b == 0);
    match digits.next() {
        None => 0,
        Some(first) => {
            let rest = digits.count();
            rest * 8 + (8 - first.leading_zeros() as usize)
        }
    }
}

/// An `http`/`https` URL normalised for `htu` comparison (RFC 9449 §4.3,
/// RFC 3986 §6.2.2.1 and §6.2.3): scheme and host lowercased, default or
/// empty port removed, query and fragment dropped, empty path as `/`; the
/// path otherwise as is. `None` for anything else (other schemes, no host,
/// userinfo, a bad port).
fn normalize_htu(url: &str) -> Option<String> {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return None;
    }
    // The port follows the last ':' after any IPv6 literal's closing ']'.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match authority[host_end..].rfind(':') {
        Some(i) => authority.split_at(host_end + i),
        None => (authority, ""),
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    let bracketed = host.starts_with('[');
    if host.is_empty()
        || !host.is_ascii()
        || host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
        // A ':' belongs in an IPv6 literal only, which must be closed.
        || (bracketed && !host.ends_with(']'))
        || (!bracketed && host.bytes().any(|b| b == b':' || b == b'[' || b == b']'))
    {
        return None;
    }
    let port = match port {
        "" => None,
        p if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?).filter(|p| *p != default_port)
        }
        _ => return None,
    };
    let path = if path.is_empty() { "/" } else { path };
    let host = host.to_ascii_lowercase();
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_normalisation() {
        let n = |u: &str| normalize_htu(u);
        assert_eq!(
            n("HTTPS://Mcp.Example.COM:443/a/B?q=1#f").as_deref(),
            Some("https://mcp.example.com/a/B")
        );
        assert_eq!(
            n("http://h.example:80").as_deref(),
            Some("http://h.example/")
        );
        assert_eq!(
            n("http://h.example:/x").as_deref(),
            Some("http://h.example/x")
        );
        assert_eq!(
            n("https://h.example:8443/x").as_deref(),
            Some("https://h.example:8443/x")
        );
        assert_eq!(
            n("https://h.example:80/x").as_deref(),
            Some("https://h.example:80/x")
        );
        assert_eq!(n("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
        assert_eq!(n("https://[::1]/x").as_deref(), Some("https://[::1]/x"));
        // The path is compared as is.
        assert_ne!(n("https://h.example/a/b"), n("https://h.example/a/./b"));
        assert_ne!(n("https://h.example/%7E"), n("https://h.example/~"));
        assert_ne!(n("https://h.example/x"), n("https://h.example/x/"));
        for bad in [
            "ftp://h.example/",
            "https:///x",
            "https://u:p@h.example/",
            "https://h.example:99999/",
            "https://h.example:x/",
            "https://a:b:443/",
            "https://[::1/",
            "/relative",
            "",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[0, 1]), 1);
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        let mut n = vec![0u8; 257];
        n[1] = 0xC0;
        assert_eq!(modulus_bits(&n), 2048);
    }

    #[test]
    fn split_compact_needs_exactly_three_base64url_segments() {
        assert!(split_compact("a.b.c").is_ok());
        assert!(split_compact("a.b.").is_ok());
        for bad in [
            "a.b",
            "a.b.c.d",
            ".b.c",
            "a..c",
            "a.b.c,a.b.c",
            "a.b.c a",
            "a+b.c.d",
        ] {
            assert_eq!(split_compact(bad), Err(DpopError::Malformed), "{bad}");
        }
    }
}
