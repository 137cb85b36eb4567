//! The example run as a user would: a PEM public key, the issuer and the
//! audience as arguments, the token on stdin.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    process::{Command, Stdio},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../crates/mcp-auth-jwt/tests/keys"
);

fn token(aud: &str) -> String {
    let pem = std::fs::read(format!("{KEYS}/ec256.pem")).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "sub": "alice", "iss": "https://issuer.example", "aud": aud,
        "exp": now + 60, "scope": "notes.read notes.write",
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn verify(token: &str, audience: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-verify-token"))
        .args([
            &format!("{KEYS}/ec256.pub.pem"),
            "https://issuer.example",
            audience,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_token_prints_its_subject_and_scopes() {
    let (ok, stdout, _) = verify(&token("notes-service"), "notes-service");
    assert!(ok);
    assert_eq!(stdout, "subject alice scopes [notes.read notes.write]\n");
}

#[test]
fn a_token_for_another_audience_is_refused_with_the_reason() {
    let (ok, stdout, stderr) = verify(&token("billing-service"), "notes-service");
    assert!(!ok && stdout.is_empty());
    assert!(stderr.starts_with("error: refused: "), "{stderr}");
    assert!(stderr.contains("audience"), "{stderr}");
    let (ok, _, stderr) = verify("not-a-token", "notes-service");
    assert!(!ok);
    assert_eq!(stderr, "error: refused: malformed token\n");
}
