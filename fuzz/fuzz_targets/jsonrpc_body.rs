//! JSON-RPC body inspection in the transport: `called_tools` (what the
//! per-tool scope layer enforces scopes on) and `is_initialize` (what the
//! session layer records an owner for), differentially against the parser
//! that acts on the body afterwards: rmcp's `ClientJsonRpcMessage`
//! deserialization, exactly as its streamable HTTP service and the legacy
//! SSE endpoint run it.
//!
//! Asserts: whenever rmcp would run a `tools/call` for tool N, `called_tools`
//! either refuses the body or names N (else a scoped tool runs without its
//! scope check); whenever rmcp would run an `initialize`, `is_initialize` is
//! true (else a session opens without an owner); every name `called_tools`
//! returns is a `tools/call` name in the body; `is_initialize` on a body
//! that is JSON implies one object whose `method` is `initialize`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_transport::fuzzing::{called_tools, is_initialize};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use serde_json::Value;

fn tool_call_names(v: &Value) -> Vec<String> {
    let messages: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    messages
        .into_iter()
        .filter(|m| m.get("method").and_then(Value::as_str) == Some("tools/call"))
        .filter_map(|m| m.pointer("/params/name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let tools = called_tools(data);
    let init = is_initialize(data);
    let value = serde_json::from_slice::<Value>(data).ok();

    // (A body whose skipped parts serde_json's `Value` refuses, a lone
    // surrogate escape say, is still read by `called_tools`, which skips
    // them unchecked and so checks the calls anyway (rmcp refuses such a
    // body): there is no tree to check its names against.)
    if let (Ok(names), Some(v)) = (&tools, &value) {
        let seen = tool_call_names(v);
        for n in names {
            assert!(seen.contains(n), "called_tools invented {n:?}");
        }
    }
    // serde_json skips the fields a struct does not name without checking
    // their strings are UTF-8, so `is_initialize` can say yes to a body that
    // is not JSON at all; rmcp refuses such a body and no session opens. A
    // body that is JSON must really be an initialize.
    if init && let Some(v) = &value {
        let method = v.get("method").and_then(Value::as_str);
        assert_eq!(
            method,
            Some("initialize"),
            "is_initialize on a non-initialize body"
        );
    }

    if let Ok(ClientJsonRpcMessage::Request(r)) =
        serde_json::from_slice::<ClientJsonRpcMessage>(data)
    {
        match &r.request {
            ClientRequest::CallToolRequest(call) => {
                if let Ok(names) = &tools {
                    assert!(
                        names.iter().any(|n| *n == call.params.name),
                        "rmcp calls {:?} but called_tools saw {names:?}",
                        call.params.name
                    );
                }
            }
            ClientRequest::InitializeRequest(_) => {
                assert!(init, "rmcp initializes but is_initialize said no");
            }
            // Anything else (a CustomRequest with method tools/call and
            // malformed params included) runs no tool and opens no session.
            _ => {}
        }
    }
});
