//! Settings parsing. Each input is read three ways:
//!
//! 1. as a `.env` file and 2. as a TOML file, through the layered loader
//!    every program of the workspace uses (`mcp_auth_core::settings::Sources`,
//!    written to a temporary file per process);
//! 3. as raw `NAME=value` lines, so values the file parsers would refuse or
//!    rewrite still reach the settings code.
//!
//! The maps go through every settings reader the library crates export:
//! `parse_size`, `parse_millis`, `parse_bool`, `parse_list` (via the
//! `HashMap` lookup), `RateLimitConfig::from_settings`,
//! `HttpConfig::from_settings`, `ToolScopes::with_settings`,
//! `ApiKeyAuthenticator::from_settings`, `parse_lifetime`, `TimeRules`,
//! `leeway_from_settings`,
//! `secure_url_setting` and `JwtAuthenticator::bearer_from_settings` (a
//! file path in `MCP_JWT_PUBLIC_KEY` is dropped: only inline PEM is fuzzed,
//! nothing is read from disk).
//!
//! Asserts: the loader merges only known names with non-blank values, and
//! its errors are one line naming the file; the lookup
//! treats blank values as unset and trims; an accepted size or duration is
//! positive and is what the text says; a list has only trimmed, non-empty,
//! comma-free items; an accepted bool was one of the documented words;
//! every error names a variable the reader owns; an accepted `HttpConfig`
//! passes `validate()`, has positive limits, and allows every host listed
//! in `HTTP_ALLOWED_HOSTS`.

#![no_main]

mod common;

use std::{collections::HashMap, time::Duration};

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::settings::{
    Lookup, Sources, parse_bool, parse_lifetime, parse_list, parse_millis, parse_size,
};
use mcp_auth_strategies::{ApiKeyAuthenticator, JwtAuthenticator};
use mcp_auth_transport::{HostRule, HttpConfig, RateLimitConfig, ToolScopes};
use url::Url;

const SERVER_URL: &str = "http://127.0.0.1:8001/mcp";

fn check_scalars(m: &HashMap<String, String>) {
    for (name, raw) in m {
        let got = Lookup::get(m, name);
        let trimmed = raw.trim();
        assert_eq!(got.as_deref(), (!trimmed.is_empty()).then_some(trimmed));

        if let Ok(n) = parse_size(m, name, 7) {
            match &got {
                None => assert_eq!(n, 7),
                Some(v) => {
                    assert!(n > 0);
                    if let Ok(plain) = v.parse::<usize>() {
                        assert_eq!(n, plain);
                    } else {
                        assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{v:?} -> {n}");
                    }
                }
            }
        }
        if let Ok(d) = parse_millis(m, name, Duration::from_secs(3)) {
            match &got {
                None => assert_eq!(d, Duration::from_secs(3)),
                Some(v) => {
                    assert!(d > Duration::ZERO);
                    assert_eq!(Some(d), v.parse::<u64>().ok().map(Duration::from_millis));
                }
            }
        }
        match parse_bool(m, name, false) {
            Ok(b) => {
                if let Some(v) = &got {
                    let v = v.to_ascii_lowercase();
                    let words: &[&str] = if b {
                        &["true", "1", "yes", "on"]
                    } else {
                        &["false", "0", "no", "off"]
                    };
                    assert!(words.contains(&v.as_str()), "{v:?} -> {b}");
                }
            }
            Err(e) => assert_eq!(&e.variable, name),
        }
        match parse_lifetime(raw, name) {
            Ok(d) => {
                assert!(d > Duration::ZERO);
                if let Ok(secs) = trimmed.parse::<u64>() {
                    assert_eq!(d, Duration::from_secs(secs));
                }
            }
            Err(e) => assert_eq!(&e.variable, name),
        }
        if let Some(items) = parse_list(m, name) {
            for i in items {
                assert!(!i.is_empty() && i.trim() == i && !i.contains(','), "{i:?}");
            }
        }
    }
}

fn check_readers(m: &HashMap<String, String>) {
    check_scalars(m);
    let url = Url::parse(SERVER_URL).expect("server URL");

    if let Ok(r) = RateLimitConfig::from_settings(m) {
        assert!(r.max_requests > 0 && r.max_auth_failures > 0 && r.window > Duration::ZERO);
    }
    match HttpConfig::from_settings(m, url.clone()) {
        Ok(cfg) => {
            assert!(
                cfg.validate().is_ok(),
                "from_settings returned an invalid config"
            );
            assert!(cfg.max_request_bytes > 0 && cfg.request_timeout > Duration::ZERO);
            let protection = parse_bool(m, "HTTP_DNS_REBINDING_PROTECTION", true).unwrap_or(true);
            if let (true, Some(hosts)) = (protection, parse_list(m, "HTTP_ALLOWED_HOSTS")) {
                for h in hosts.iter().filter(|h| *h != "*") {
                    assert!(
                        cfg.hosts.allows(h),
                        "listed host {h:?} refused by {:?}",
                        cfg.hosts
                    );
                }
                if !hosts.iter().any(|h| h == "*") {
                    assert_ne!(cfg.hosts, HostRule::Any);
                }
            }
        }
        Err(e) => assert!(
            e.variable.starts_with("HTTP_") || e.variable.starts_with("MCP_"),
            "error names {:?}",
            e.variable
        ),
    }
    if let Err(e) = ToolScopes::new().with_settings(m) {
        assert_eq!(e.variable, "MCP_TOOL_SCOPES");
    }
    if let Err(e) = ApiKeyAuthenticator::from_settings(m) {
        assert_eq!(e.variable, "MCP_API_KEYS");
    }
    if let Ok(l) = mcp_auth_jwt::settings::leeway_from_settings(m) {
        assert!(l <= Duration::from_secs(600));
    }
    match mcp_auth_jwt::TimeRules::from_settings(m) {
        Ok(r) => {
            assert!(r.leeway <= Duration::from_secs(600));
            assert!(r.max_lifetime.is_none_or(|d| d > Duration::ZERO));
        }
        Err(e) => assert!(
            e.variable.starts_with("MCP_JWT_"),
            "error names {:?}",
            e.variable
        ),
    }
    for (name, v) in m {
        if let Ok(u) = mcp_auth_jwt::settings::secure_url_setting(v, name, false) {
            assert!(matches!(u.scheme(), "http" | "https"));
        }
    }
    // No file reads: keep MCP_JWT_PUBLIC_KEY only when it is inline PEM.
    let mut jwt = m.clone();
    if jwt
        .get("MCP_JWT_PUBLIC_KEY")
        .is_some_and(|v| !v.contains("-----BEGIN"))
    {
        jwt.remove("MCP_JWT_PUBLIC_KEY");
    }
    if let Err(e) = JwtAuthenticator::bearer_from_settings(&jwt, &url) {
        assert!(
            e.variable.starts_with("MCP_JWT_"),
            "error names {:?}",
            e.variable
        );
    }
}

/// The names the layered loader keeps: every library's variables.
fn known() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for list in [
        mcp_auth_strategies::VARIABLES,
        mcp_auth_transport::VARIABLES,
        mcp_auth_jwt::VARIABLES,
    ] {
        all.extend(list.iter().filter(|n| !all.contains(n)).collect::<Vec<_>>());
    }
    all
}

fuzz_target!(|data: &[u8]| {
    // 1. The real layered loader (`Sources`), the input as a `.env` file and
    //    as a TOML file: what merges is only known names, non-blank values;
    //    an error is one line that repeats no value of the input.
    let dir = std::env::temp_dir().join(format!("mcp-auth-fuzz-settings-{}", std::process::id()));
    let file = dir.join("input");
    let known = known();
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&file, data).is_ok() {
        for as_toml in [false, true] {
            let sources = Sources::new(&known);
            let sources = if as_toml {
                sources.toml_file(Some(&file), "--config")
            } else {
                sources.dotenv_file(&file)
            };
            match sources.merge() {
                Ok(m) => {
                    for (k, v) in &m {
                        assert!(known.contains(&k.as_str()), "merged unknown {k:?}");
                        assert!(!v.trim().is_empty(), "merged a blank {k}");
                    }
                    check_readers(&m);
                }
                Err(e) => {
                    // One line, naming the file (or `--config`); that no
                    // value is echoed is a unit test with known secrets
                    // (mcp_auth_core::settings), not an oracle here.
                    let shown = e.to_string();
                    assert!(!shown.contains('\n'), "{shown:?}");
                    let path = file.display().to_string();
                    assert!(e.variable == "--config" || e.variable == path, "{shown:?}");
                }
            }
        }
    }

    // 2. Raw NAME=value lines, so values the file parsers would refuse or
    //    rewrite still reach the settings code.
    let text = common::text(data);
    let raw: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect();
    check_readers(&raw);
});
