//! Verifies a JWT without HTTP or an async runtime: a program that gets
//! tokens some other way (a queue, a file, a CLI argument) and needs to know
//! who sent them. Keys are static (a PEM public key), so `verify_sync`
//! answers at once.
//!
//! ```text
//! cargo run -p example-verify-token -- public.pem https://issuer.example my-audience < token.txt
//! ```
//!
//! Prints the subject and scopes, or the reason the token was refused
//! (exit code 1).

use std::{io::Read, process::ExitCode};

use mcp_auth_jwt::{Audience, JwtVerifier, VerifyKey};

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pem_file, issuer, audience] = args.as_slice() else {
        return Err("usage: verify-token PUBLIC_KEY.pem ISSUER AUDIENCE < token".into());
    };
    let pem = std::fs::read(pem_file).map_err(|e| format!("{pem_file}: {e}"))?;
    let key = VerifyKey::from_pem(&pem).map_err(|e| format!("{pem_file}: {e}"))?;
    let verifier = JwtVerifier::builder()
        .static_keys(vec![key])
        .issuer(issuer)
        .audience(Audience::OneOf(vec![audience.clone()]))
        .build()
        .map_err(|e| e.to_string())?;

    // No more than a token the verifier would look at (and one byte to
    // tell a longer input), whatever is piped in.
    let mut token = String::new();
    std::io::stdin()
        .take(mcp_auth_jwt::DEFAULT_MAX_TOKEN_BYTES as u64 + 1)
        .read_to_string(&mut token)
        .map_err(|e| format!("stdin: {e}"))?;
    let verified = verifier
        .verify_sync(token.trim())
        .map_err(|e| format!("refused: {e}"))?;
    Ok(format!(
        "subject {} scopes [{}]",
        verified.str_claim("sub").unwrap_or("-"),
        verified.scopes().join(" ")
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
