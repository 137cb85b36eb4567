//! Test keys, token minting, and a real JWKS / metadata server on loopback
//! whose behaviour the tests steer (rotate, fail, answer garbage, stall).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A private key for minting tokens, and its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub enc: EncodingKey,
    pub alg: Algorithm,
    pub kid: String,
    pub file: &'static str,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        Self::load("rsa", Algorithm::RS256, kid)
    }
    pub fn load(file: &'static str, alg: Algorithm, kid: &str) -> Self {
        let p = pem(file);
        let enc = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&p).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&p).unwrap(),
            _ => EncodingKey::from_rsa_pem(&p).unwrap(),
        };
        Self {
            enc,
            alg,
            kid: kid.to_owned(),
            file,
        }
    }
    /// The public JWK, without `alg` (so an RSA key may verify every RSA
    /// algorithm) unless `with_alg`.
    pub fn jwk(&self, with_alg: bool) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.enc, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        if !with_alg {
            jwk.common.key_algorithm = None;
        }
        serde_json::to_value(jwk).unwrap()
    }
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h
    }
    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&self.header(), claims, &self.enc).unwrap()
    }
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.enc).unwrap()
    }
}

pub const ISSUER_PATH: &str = "";
pub const AUDIENCE: &str = "https://mcp.example/mcp";

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

pub fn claims(issuer: &str) -> Value {
    json!({
        "sub": "alice",
        "iss": issuer,
        "aud": AUDIENCE,
        "exp": now() + 300,
        "iat": now(),
        "scope": "mcp:tools mcp:read",
        "client_id": "client-1",
    })
}

pub fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Error500,
    Garbage,
    Empty,
    Stall,
    Huge,
}

pub struct Behaviour {
    pub keys: Vec<Value>,
    pub mode: Mode,
    pub issuer_override: Option<String>,
}

/// The issuer: serves `/jwks.json`, OIDC metadata, and counts every request.
#[derive(Clone)]
pub struct Issuer {
    pub base: String,
    pub state: Arc<Mutex<Behaviour>>,
    pub jwks_hits: Arc<AtomicU64>,
    pub attacker_hits: Arc<AtomicU64>,
}

impl Issuer {
    pub async fn start(keys: Vec<Value>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issuer = Issuer {
            base: base.clone(),
            state: Arc::new(Mutex::new(Behaviour {
                keys,
                mode: Mode::Normal,
                issuer_override: None,
            })),
            jwks_hits: Arc::new(AtomicU64::new(0)),
            attacker_hits: Arc::new(AtomicU64::new(0)),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/attacker/jwks.json", get(attacker))
            .with_state(issuer.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        issuer
    }
    pub fn jwks_url(&self) -> url::Url {
        format!("{}/jwks.json", self.base).parse().unwrap()
    }
    pub fn set_keys(&self, keys: Vec<Value>) {
        self.state.lock().unwrap().keys = keys;
    }
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }
    pub fn hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn jwks(State(s): State<Issuer>) -> axum::response::Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let (mode, keys) = {
        let b = s.state.lock().unwrap();
        (b.mode, b.keys.clone())
    };
    match mode {
        Mode::Normal => Json(json!({ "keys": keys })).into_response(),
        Mode::Error500 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Garbage => "<html>oops</html>".into_response(),
        Mode::Empty => Json(json!({ "keys": [] })).into_response(),
        Mode::Huge => Json(json!({ "keys": keys, "pad": "x".repeat(2 << 20) })).into_response(),
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(json!({ "keys": keys })).into_response()
        }
    }
}

async fn metadata(State(s): State<Issuer>) -> axum::response::Response {
    let issuer = s
        .state
        .lock()
        .unwrap()
        .issuer_override
        .clone()
        .unwrap_or_else(|| s.base.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks.json", s.base),
        "authorization_endpoint": format!("{}/authorize", s.base),
    }))
    .into_response()
}

async fn attacker(State(s): State<Issuer>) -> axum::response::Response {
    s.attacker_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "keys": [] })).into_response()
}
