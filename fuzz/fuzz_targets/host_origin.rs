//! `Host` / `Origin` rules: the input is a comma-separated allow-list (the
//! `HTTP_ALLOWED_HOSTS` / `HTTP_ALLOWED_ORIGINS` syntax), a NUL, then the
//! value a request carries. Builds `HostRule::parse_list` / `HostRule::list`
//! and `OriginRule::list` from the list and asks `allows()`.
//!
//! Asserts: `parse_list`, when it succeeds, equals the lenient `list`;
//! every entry allows itself; nothing is allowed that has userinfo, a path,
//! a query, a fragment or inner whitespace (`@ / ? # \` and spaces), not even
//! by `HostRule::Any`; an allowed host stays allowed in upper case; an
//! allowed origin never ends in `/` and is `null` or `http(s)://`; a list
//! rule allows nothing `Any` refuses.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mcp_auth_transport::{HostRule, OriginRule};

fn suspicious(value: &str) -> bool {
    let t = value.trim();
    t.contains(['@', '/', '?', '#', '\\']) || t.contains(char::is_whitespace)
}

fn check_host(rule: &HostRule, value: &str) {
    if rule.allows(value) {
        assert!(
            HostRule::Any.allows(value),
            "{rule:?} allows {value:?}, Any does not"
        );
        assert!(!suspicious(value), "{rule:?} allows {value:?}");
        assert!(
            rule.allows(&value.to_ascii_uppercase()),
            "case matters for {value:?}"
        );
    }
}

fn check_origin(rule: &OriginRule, value: &str) {
    if rule.allows(value) && *rule != OriginRule::Any {
        let t = value.trim();
        assert!(!t.ends_with('/'), "{rule:?} allows {value:?}");
        let lower = t.to_ascii_lowercase();
        assert!(
            lower == "null" || lower.starts_with("http://") || lower.starts_with("https://"),
            "{rule:?} allows {value:?}"
        );
        let authority = &t[t.find("://").map_or(0, |i| i + 3)..];
        assert!(!suspicious(authority), "{rule:?} allows {value:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let (list, value) = match data.iter().position(|b| *b == 0) {
        Some(i) => (common::text(&data[..i]), common::text(&data[i + 1..])),
        None => (common::text(data), String::new()),
    };
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();

    let lenient = HostRule::list(&entries);
    if let Ok(strict) = HostRule::parse_list(&entries) {
        assert_eq!(
            strict, lenient,
            "parse_list and list disagree on {entries:?}"
        );
        for e in &entries {
            assert!(strict.allows(e), "{e:?} does not allow itself");
        }
    }
    for e in &entries {
        if let Ok(single) = HostRule::parse_list([e]) {
            assert!(single.allows(e), "{e:?} does not allow itself");
        }
    }
    check_host(&lenient, &value);
    check_host(&HostRule::Any, &value);

    if let Ok(origins) = OriginRule::list(&entries) {
        check_origin(&origins, &value);
        if origins != OriginRule::Any {
            for e in &entries {
                let t = e.trim();
                if !t.ends_with('/') && !t.ends_with(":*") {
                    assert!(origins.allows(e), "origin {e:?} does not allow itself");
                }
            }
        }
    }
    for e in &entries {
        if let Ok(single) = OriginRule::list([e]) {
            check_origin(&single, &value);
            check_origin(&single, e);
        }
    }
});
