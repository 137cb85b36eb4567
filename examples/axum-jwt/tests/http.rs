//! The example served on a loopback port, called over real HTTP.
#![allow(clippy::unwrap_used)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use jsonwebtoken::{EncodingKey, Header};

const SECRET: &str = "an-example-secret-of-at-least-32-bytes!";

struct App(Child, u16);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> App {
    let port = mcp_auth_integration_tests::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_example-axum-jwt"))
        .env("JWT_SECRET", SECRET)
        .env("PORT", port.to_string())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the example did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    App(child, port)
}

fn token(aud: &str) -> String {
    let claims = serde_json::json!({
        "sub": "alice", "iss": "https://issuer.example", "aud": aud,
        "exp": jsonwebtoken::get_current_timestamp() + 60, "scope": "read",
    });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn api_routes_need_a_token_and_the_others_do_not() {
    let app = start();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", app.1);
    let http = reqwest::Client::new();

    let r = http.get(url("/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="mcp""#);

    let r = http
        .get(url("/api/me"))
        .bearer_auth(token("https://api.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "alice with scopes [read]\n");

    let r = http
        .get(url("/api/me"))
        .bearer_auth(token("https://elsewhere.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );

    let r = http.get(url("/hello")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello stranger\n");
    let r = http.get(url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A short secret stops the example with one readable line naming the
/// variable (it printed `Error: ShortSecret`).
#[test]
fn a_short_secret_is_one_line_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_example-axum-jwt"))
        .env("JWT_SECRET", "too-short")
        .env("PORT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: JWT_SECRET: the secret must be at least 32 bytes"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
