//! The legacy SSE `POST /messages?session_id=...` path: its two parsing
//! steps on attacker bytes (the query's `session_id` through axum's `Query`
//! extractor, and the body through rmcp's `ClientJsonRpcMessage`), exposed
//! under `cfg(fuzzing)` as `parse_post_message`. The input is the query
//! string, a NUL, then the body.
//!
//! Asserts: no panic; a session id written the way the server writes it
//! into the `endpoint` event (and any string, form-encoded) reads back
//! exactly, so ids are never truncated or normalised into another
//! session's; a `session_id` given twice is refused rather than one of them
//! picked; and, since the per-tool scope layer also guards this route,
//! whenever the body is a `tools/call` that rmcp would run, `called_tools`
//! refuses the body or names that tool.

#![no_main]

mod common;

use http::Uri;
use libfuzzer_sys::fuzz_target;
use mcp_auth_transport::fuzzing::{called_tools, parse_post_message};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};

fuzz_target!(|data: &[u8]| {
    let (query, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let query = common::text(query);

    // The request as sent.
    if let Ok(uri) = format!("/messages?{query}").parse::<Uri>() {
        let (sid, message) = parse_post_message(&uri, body);
        if let Ok(ClientJsonRpcMessage::Request(r)) = &message
            && let ClientRequest::CallToolRequest(call) = &r.request
            && let Ok(names) = called_tools(body)
        {
            assert!(
                names.iter().any(|n| *n == call.params.name),
                "SSE body calls {:?}, called_tools saw {names:?}",
                call.params.name
            );
        }
        let occurrences = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "session_id")
            .count();
        if occurrences > 1 {
            assert!(sid.is_err(), "two session ids, one was picked: {sid:?}");
        }
    }

    // Round trips: the server's own format (32 hex digits), and the query
    // text as an arbitrary id, form-encoded.
    let hex: String = query.bytes().take(16).map(|b| format!("{b:02x}")).collect();
    for id in [hex, query.clone()] {
        let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let uri: Uri = format!("/messages?session_id={enc}")
            .parse()
            .expect("a form-encoded query is a valid URI");
        let (sid, _) = parse_post_message(&uri, b"");
        assert_eq!(
            sid.as_ref().ok().and_then(Option::as_deref),
            Some(id.as_str()),
            "{uri}"
        );
    }
});
