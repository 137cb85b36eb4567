//! Failed API-key attempts are logged with the peer and a fingerprint, never
//! the key; warnings a client can repeat at will come a line a second. In
//! a test binary of their own, away from tests that log without capturing:
//! tracing caches callsite interest per process. (The throttle is
//! process-wide: only one test here may trigger it.)
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use mcp_auth_core::{AuthRequest, Authenticator};
use mcp_auth_strategies::{ApiKeyAuthenticator, fingerprint};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What this thread logs from now on, until the guard is dropped.
fn captured() -> (Buf, tracing::subscriber::DefaultGuard) {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn failed_attempts_log_peer_and_fingerprint_never_the_key() {
    let (buf, _guard) = captured();
    let good = "k-0123456789abcdef";
    let auth = ApiKeyAuthenticator::from_list(good).unwrap();
    let wrong = "wrong-key-that-must-not-be-logged";
    let req = AuthRequest::builder()
        .header("x-api-key", wrong)
        .peer("192.0.2.7:5555".parse().unwrap())
        .build();
    assert!(auth.authenticate(&req).await.is_err());
    let ok = AuthRequest::builder().header("x-api-key", good).build();
    assert!(auth.authenticate(&ok).await.is_ok());
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("API key rejected"), "{logs}");
    assert!(logs.contains("192.0.2.7"), "{logs}");
    assert!(logs.contains(&fingerprint(wrong.as_bytes())), "{logs}");
    assert!(!logs.contains(wrong), "{logs}");
    assert!(!logs.contains(good), "{logs}");
}

/// A credential-like query parameter (`?api_key=`) is ignored with a
/// warning, at most a line a second: a client sending one on every request
/// (no failed login to count) wrote a line per request.
#[tokio::test]
async fn query_credentials_are_warned_about_once_a_second() {
    let (buf, _guard) = captured();
    let auth = ApiKeyAuthenticator::from_list("k-0123456789abcdef").unwrap();
    for _ in 0..50 {
        let req = AuthRequest::builder().uri("/mcp?api_key=x").build();
        assert!(auth.authenticate(&req).await.is_err());
    }
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("credential-like query parameter ignored")
            .count(),
        1,
        "{logs}"
    );
}
