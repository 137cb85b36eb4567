//! What large request bodies cost the server in memory (`--bodies N`).
//!
//! ```text
//! target/release/mcp-auth-bench --modes none --seconds 1 --idle-sessions 0 --bodies 8
//! ```
//!
//! Each row starts its own server (no auth, the default 4 MiB body limit
//! unless the row says otherwise), opens one session, sends `N` bodies at
//! once in it and reads the server's peak RSS (`VmHWM`) against its RSS just
//! before. rmcp parses a body into a tree of JSON values, each a few hundred
//! bytes, so what a body costs follows the values it holds, not its bytes:
//! the server refuses bodies holding more than one value per 64 bytes of the
//! limit (413) before rmcp reads them. The rows show a body over that bound
//! (refused), one just under it (answered), one 4 MiB string (answered),
//! and, with a 64 MiB limit, one body of a million values, whose peak per
//! value is what an unbounded body of `[0,0,...]` would cost per value.

use std::time::Duration;

use crate::{
    measure::{Creds, open_session},
    process::{Issuer, start_server},
};

/// One row: what was sent, what the server answered, and its memory.
pub(crate) struct BodyRow {
    pub(crate) what: String,
    /// Bodies sent at once, and the JSON values each holds.
    pub(crate) bodies: usize,
    pub(crate) values: usize,
    pub(crate) body_bytes: usize,
    /// Every status the server answered with (one per distinct status).
    pub(crate) statuses: Vec<u16>,
    pub(crate) before_kib: u64,
    pub(crate) peak_kib: u64,
}

impl BodyRow {
    /// Peak RSS over the RSS before, per value sent (all bodies together).
    pub(crate) fn bytes_per_value(&self) -> f64 {
        self.peak_kib.saturating_sub(self.before_kib) as f64 * 1024.0
            / (self.bodies * self.values).max(1) as f64
    }
}

/// A `tools/call get_time` whose arguments carry `pad`: `zeros` numbers in
/// an array, then spaces up to `size` bytes (the array alone when it is
/// longer), or (`string`) one string of `size` bytes.
fn call(zeros: usize, size: usize, string: bool) -> String {
    let head = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_time","arguments":{"pad":"#;
    let tail = "}}}";
    let mut body = String::with_capacity(size.max(head.len() + tail.len() + 2 * zeros + 2));
    body.push_str(head);
    if string {
        body.push('"');
        let fill = size.saturating_sub(head.len() + tail.len() + 2);
        body.extend(std::iter::repeat_n('a', fill));
        body.push('"');
    } else {
        body.push('[');
        for i in 0..zeros {
            body.push_str(if i == 0 { "0" } else { ",0" });
        }
        body.push(']');
        let fill = size.saturating_sub(body.len() + tail.len());
        body.extend(std::iter::repeat_n(' ', fill));
    }
    body.push_str(tail);
    body
}

/// The JSON values of a [`call`] with `zeros` numbers in its array (or
/// one string, `zeros` 0), as the server's bound counts them: one per `{`,
/// `[`, `:` and `,` outside strings. The envelope holds 14.
fn values(zeros: usize) -> usize {
    14 + zeros
}

/// Sends `n` copies of `body` at once in one session of a fresh server
/// started with `env`, and reads its memory.
async fn row(
    bin: &std::path::Path,
    issuer: &Issuer,
    what: &str,
    (n, values): (usize, usize),
    body: String,
    env: &[(String, String)],
) -> Result<BodyRow, String> {
    let server = start_server(bin, "none", issuer, 1, env).await?;
    let http = reqwest::Client::new();
    let session = open_session(&http, &server.url, &Creds::None).await?;
    // Let the start-up's allocations settle before the reading.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_kib = server.status_kib("VmRSS:");
    let body_bytes = body.len();
    let mut tasks = Vec::new();
    for i in 0..n {
        // Each its own JSON-RPC id: rmcp answers a session's requests by id.
        let body = body.replacen(r#""id":2,"#, &format!(r#""id":{},"#, i + 2), 1);
        let request = http
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session)
            .body(body);
        tasks.push(tokio::spawn(async move {
            let r = request.send().await.map_err(|e| format!("{e}"))?;
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            Ok::<u16, String>(status)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let status = t.await.map_err(|e| e.to_string())??;
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    statuses.sort_unstable();
    Ok(BodyRow {
        what: what.to_owned(),
        bodies: n,
        values,
        body_bytes,
        statuses,
        before_kib,
        peak_kib: server.status_kib("VmHWM:"),
    })
}

/// The rows of `--bodies n` (see the module docs).
pub(crate) async fn bodies(
    bin: &std::path::Path,
    issuer: &Issuer,
    n: usize,
    extra_env: &[(String, String)],
) -> Result<Vec<BodyRow>, String> {
    const LIMIT: usize = 4 << 20;
    // A little under the limit: the body, not its size, is what is measured.
    const SIZE: usize = LIMIT - 1024;
    // The server's bound: one value per 64 bytes of the limit.
    let bound = LIMIT / 64;
    let dense = (SIZE - 200) / 2;
    let under = bound - 100;
    let mut rows = Vec::new();
    for (what, zeros, string) in [
        ("4 MiB of [0,0,...] (over the value bound)", dense, false),
        (
            "4 MiB, values just under the bound, then spaces",
            under,
            false,
        ),
        ("4 MiB, one string", 0, true),
    ] {
        let values = values(zeros);
        let body = call(zeros, SIZE, string);
        eprintln!("bodies: {n} x {what}");
        rows.push(row(bin, issuer, what, (n, values), body, extra_env).await?);
    }
    // What the bound keeps out, per value: one body of a million values
    // under a limit whose bound (1 048 576) lets it through.
    let mut env = extra_env.to_vec();
    env.push(("HTTP_MAX_REQUEST_SIZE".into(), "64mb".into()));
    let zeros = 1_000_000;
    let what = "1 000 000 values, limit 64mb";
    eprintln!("bodies: 1 x {what}");
    let body = call(zeros, 0, false);
    rows.push(row(bin, issuer, what, (1, values(zeros)), body, &env).await?);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies are the JSON they claim to be, of the size asked for,
    /// holding the values [`values`] says, counted as the server counts.
    #[test]
    fn bodies_hold_the_values_and_sizes_they_claim() {
        for (zeros, size, string) in [(3, 400, false), (1000, 100, false), (0, 300, true)] {
            let body = call(zeros, size, string);
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let pad = &v["params"]["arguments"]["pad"];
            match string {
                true => assert!(pad.is_string(), "{pad}"),
                false => assert_eq!(pad.as_array().map(Vec::len), Some(zeros)),
            }
            // Padded to `size`, or the array alone when longer.
            let unpadded = body.trim_end_matches('}').trim_end().len() + 3;
            assert_eq!(body.len(), size.max(unpadded), "{zeros} {size}");
            let mut counted = 0;
            let mut in_string = false;
            for b in body.bytes() {
                match b {
                    b'"' => in_string = !in_string,
                    b'{' | b'[' | b':' | b',' if !in_string => counted += 1,
                    _ => {}
                }
            }
            let claimed = if string { values(0) } else { values(zeros) };
            assert_eq!(counted, claimed, "{zeros} {size} {string}");
        }
    }
}
