//! Short, single-line reasons for failures: what the server refused and
//! why (from its `WWW-Authenticate` challenge), or the root cause of a
//! transport error, instead of rmcp's nested error text. The full error
//! chain goes to the `debug` log.

use std::error::Error as StdError;

use rmcp::{
    service::{ClientInitializeError, ServiceError},
    transport::streamable_http_client::{
        AuthRequiredError, InsufficientScopeError, StreamableHttpError,
    },
};

use crate::ClientError;

/// What the client presented to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Presented {
    /// No credentials.
    Nothing,
    /// An API key (`X-API-Key`).
    ApiKey,
    /// A bearer token obtained elsewhere (`--bearer`).
    Bearer,
    /// An OAuth access token from this client's login.
    OAuth,
}

impl Presented {
    fn what(self) -> &'static str {
        match self {
            Presented::Nothing => "the request",
            Presented::ApiKey => "the API key",
            Presented::Bearer => "the bearer token",
            Presented::OAuth => "the OAuth access token",
        }
    }
}

/// The server refused a request with HTTP 401 or 403 and a
/// `WWW-Authenticate` challenge. `Display` is one short line, e.g.
/// `the server refused the API key (401 invalid_token)` or
/// `missing scope mcp:admin (403 insufficient_scope)`; the values from the
/// challenge are clipped and control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// 401 or 403.
    pub status: u16,
    /// What the client had presented.
    pub presented: Presented,
    /// The challenge's `error` (`invalid_token`, `insufficient_scope`, ...).
    pub error: Option<String>,
    /// The challenge's `scope`: the scopes the request needs.
    pub scopes: Vec<String>,
    /// The challenge itself (the `WWW-Authenticate` value), e.g. to log in
    /// again for it ([`crate::OAuthOptions::challenge`]).
    pub challenge: String,
}

impl Refusal {
    /// Reads `error` and `scope` from `challenge`.
    pub fn new(status: u16, challenge: &str, presented: Presented) -> Self {
        Self {
            status,
            presented,
            error: challenge_param(challenge, "error").map(|e| one_line(&e, 60)),
            scopes: challenge_scopes(challenge)
                .iter()
                .map(|s| one_line(s, 60))
                .collect(),
            challenge: challenge.to_owned(),
        }
    }

    /// A 403 `insufficient_scope`: the credentials are fine, their scope
    /// is not.
    pub fn is_insufficient_scope(&self) -> bool {
        self.status == 403 && self.error.as_deref() == Some("insufficient_scope")
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match &self.error {
            Some(e) => format!("{} {e}", self.status),
            None => self.status.to_string(),
        };
        if self.is_insufficient_scope() {
            return match self.scopes.as_slice() {
                [] => write!(f, "insufficient scope ({status})"),
                [one] => write!(f, "missing scope {one} ({status})"),
                many => write!(f, "missing scopes {} ({status})", many.join(" ")),
            };
        }
        match (self.status, self.presented) {
            (401, Presented::Nothing) => {
                write!(f, "the server requires authentication ({status})")
            }
            (401, p) => write!(f, "the server refused {} ({status})", p.what()),
            (_, p) => write!(f, "the server denied {} ({status})", p.what()),
        }
    }
}

/// The value of the auth-param `name` (case-insensitive) in a
/// `WWW-Authenticate` value, unquoted; the first one wins.
pub(crate) fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let cs: Vec<char> = challenge.chars().collect();
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let blank = |c: char| c == ' ' || c == '\t';
    let mut i = 0;
    while i < cs.len() {
        while i < cs.len() && (blank(cs[i]) || cs[i] == ',') {
            i += 1;
        }
        let start = i;
        while i < cs.len() && is_tchar(cs[i]) {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let key: String = cs[start..i].iter().collect();
        let mut j = i;
        while j < cs.len() && blank(cs[j]) {
            j += 1;
        }
        if j >= cs.len() || cs[j] != '=' {
            // An auth-scheme (or a token68): not a parameter.
            continue;
        }
        j += 1;
        while j < cs.len() && blank(cs[j]) {
            j += 1;
        }
        let mut value = String::new();
        if j < cs.len() && cs[j] == '"' {
            j += 1;
            while j < cs.len() && cs[j] != '"' {
                if cs[j] == '\\' && j + 1 < cs.len() {
                    j += 1;
                }
                value.push(cs[j]);
                j += 1;
            }
            j += 1;
        } else {
            while j < cs.len() && (is_tchar(cs[j]) || "/:=".contains(cs[j])) {
                value.push(cs[j]);
                j += 1;
            }
        }
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        i = j;
    }
    None
}

/// The scopes a `WWW-Authenticate` challenge names (its `scope`), in order.
pub fn challenge_scopes(challenge: &str) -> Vec<String> {
    challenge_param(challenge, "scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `a` then the scopes of `b` that `a` lacks, without repeats.
pub(crate) fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(a.len() + b.len());
    for s in a.iter().chain(b) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// `url` as it may be shown or logged: without user information (a
/// password in `https://user:pw@host/` stays out of messages), query or
/// fragment. Text that is not an absolute URL loses what lies between
/// `://` and an `@` before the path, and anything from `?` or `#`.
pub(crate) fn shown_url(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        return u.into();
    }
    // Up to the last `@` goes first (a password may hold `/`, `?` or `#`),
    // then query and fragment.
    let cut = |s: &str| s.split(['?', '#']).next().unwrap_or_default().to_owned();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
            format!("{}://{}", cut(scheme), cut(rest))
        }
        None => cut(url),
    }
}

/// `s` on one line of at most `max` characters: runs of whitespace become
/// one space, other control and bidi characters are escaped (no terminal
/// escapes reach the screen).
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut n = 0;
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            n += 1;
            space = false;
        }
        if n >= max {
            out.push('…');
            return out;
        }
        push_shown(&mut out, c);
        n += 1;
    }
    out
}

/// `s` as the terminal may show it: lines and tabs kept, every other
/// control character escaped (ESC starts the sequences that move the
/// cursor, retitle the window or write the clipboard), and so are the
/// bidi controls that make text read differently from what it is. For
/// text a server sent (tool names, descriptions, results).
///
/// ```
/// use mcp_auth_client::terminal_safe;
/// assert_eq!(terminal_safe("a\n\tb"), "a\n\tb");
/// assert_eq!(terminal_safe("\u{1b}]52;c;x\u{7}"), "\\u{1b}]52;c;x\\u{7}");
/// ```
pub fn terminal_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' || c == '\t' {
            out.push(c);
        } else {
            push_shown(&mut out, c);
        }
    }
    out
}

/// `c`, escaped when it is a control or bidi character.
fn push_shown(out: &mut String, c: char) {
    let bidi =
        matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if c.is_control() || bidi {
        out.extend(c.escape_unicode());
    } else {
        out.push(c);
    }
}

/// `e` and its sources, `: `-separated (for the debug log). rmcp's
/// transport errors, which do not name their cause as a source, are
/// followed too.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    if let Some(ServiceError::TransportSend(t)) = e.downcast_ref::<ServiceError>() {
        current = Some(t);
    }
    if let Some(ClientInitializeError::TransportError { error, .. }) =
        e.downcast_ref::<ClientInitializeError>()
    {
        current = Some(error);
    }
    while let Some(s) = current {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = s.source();
    }
    out
}

/// What a transport error (the error rmcp's transport returned) means,
/// in one line.
fn from_transport_error(e: &(dyn StdError + 'static), presented: Presented) -> ClientError {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    let mut root = e;
    while let Some(err) = current {
        if let Some(a) = err.downcast_ref::<AuthRequiredError>() {
            return ClientError::Refused(Refusal::new(401, &a.www_authenticate_header, presented));
        }
        if let Some(i) = err.downcast_ref::<InsufficientScopeError>() {
            return ClientError::Refused(Refusal::new(403, &i.www_authenticate_header, presented));
        }
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            return ClientError::Server(describe_reqwest(r));
        }
        match err.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            Some(StreamableHttpError::Client(r)) => {
                return ClientError::Server(describe_reqwest(r));
            }
            Some(StreamableHttpError::HttpStatus(h)) => {
                return ClientError::Server(format!("the server answered HTTP {}", h.status));
            }
            Some(StreamableHttpError::UnexpectedServerResponse(text)) => {
                if let Some(r) = refusal_in_body(text, presented) {
                    return ClientError::Refused(r);
                }
            }
            _ => {}
        }
        root = err;
        current = err.source();
    }
    ClientError::Server(one_line(&root.to_string(), 200))
}

/// A 403 without a challenge (a server without an authentication
/// scheme, `none`, refusing a tool's scope) as rmcp reports it, `HTTP 403
/// Forbidden: {"error": ..., "error_description": ..., "scope": ...}`: the
/// refusal its body describes, so it reads as one with a challenge does.
fn refusal_in_body(text: &str, presented: Presented) -> Option<Refusal> {
    let rest = text.strip_prefix("HTTP ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    // Only a 403: a 401 without a challenge is left to discovery (the
    // protected-resource metadata at its well-known URL).
    if status != 403 {
        return None;
    }
    let body = &rest[rest.find(": ")? + 2..];
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = body.get("error")?.as_str()?;
    Some(Refusal {
        status,
        presented,
        error: Some(one_line(error, 60)),
        scopes: body
            .get("scope")
            .and_then(serde_json::Value::as_str)
            .map(|s| s.split_whitespace().map(|s| one_line(s, 60)).collect())
            .unwrap_or_default(),
        challenge: String::new(),
    })
}

/// A failed HTTP request in one line: where to, and the root cause.
pub(crate) fn describe_reqwest(r: &reqwest::Error) -> String {
    let mut root: &(dyn StdError + 'static) = r;
    while let Some(s) = root.source() {
        root = s;
    }
    let cause = one_line(&root.to_string(), 120);
    let at = r
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| "the server".into());
    if r.is_connect() {
        format!("cannot connect to {at}: {cause}")
    } else if r.is_timeout() {
        format!("no answer from {at} in time")
    } else {
        format!("HTTP request to {at} failed: {cause}")
    }
}

/// Whether starting the lifecycle failed because the server could not be
/// reached at all (no connection, no answer in time): trying the other
/// wire would fail the same way.
pub(crate) fn is_unreachable(e: &ClientInitializeError) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        let client = match err.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            Some(StreamableHttpError::Client(r)) => Some(r),
            _ => err.downcast_ref::<reqwest::Error>(),
        };
        if client.is_some_and(|r| r.is_connect() || r.is_timeout()) {
            return true;
        }
        current = err.source();
    }
    false
}

/// An `initialize` that failed.
pub(crate) fn from_initialize_error(
    e: &ClientInitializeError,
    presented: Presented,
) -> ClientError {
    tracing::debug!(error = %error_chain(e), "initialize failed");
    match e {
        ClientInitializeError::TransportError { error, .. } => {
            from_transport_error(error, presented)
        }
        ClientInitializeError::JsonRpcError(data) => ClientError::Mcp(format!(
            "initialize refused: {} (JSON-RPC {})",
            one_line(&data.message, 160),
            data.code.0
        )),
        other => ClientError::Mcp(one_line(&other.to_string(), 200)),
    }
}

impl ClientError {
    /// What an MCP operation's error means, in one line: a
    /// [`ClientError::Refused`] when the server answered 401/403 with a
    /// challenge, the server's JSON-RPC error, or the root cause of a
    /// transport failure. The full error goes to the debug log.
    pub fn from_service_error(e: &ServiceError, presented: Presented) -> Self {
        tracing::debug!(error = %error_chain(e), "MCP request failed");
        match e {
            ServiceError::TransportSend(t) => from_transport_error(t, presented),
            ServiceError::McpError(data) => ClientError::Mcp(format!(
                "{} (JSON-RPC {})",
                one_line(&data.message, 160),
                data.code.0
            )),
            other => ClientError::Mcp(one_line(&other.to_string(), 200)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenge_parameters() {
        let c = r#"Bearer error="insufficient_scope", scope="mcp:admin mcp:tools", resource_metadata="http://x/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            challenge_param(c, "error").as_deref(),
            Some("insufficient_scope")
        );
        assert_eq!(challenge_scopes(c), ["mcp:admin", "mcp:tools"]);
        assert_eq!(
            challenge_param(c, "Resource_Metadata").as_deref(),
            Some("http://x/.well-known/oauth-protected-resource/mcp")
        );
        let c = r#"ApiKey header="X-API-Key", error=invalid_token, error_description="unknown \"API\" key""#;
        assert_eq!(
            challenge_param(c, "error").as_deref(),
            Some("invalid_token")
        );
        assert_eq!(
            challenge_param(c, "error_description").as_deref(),
            Some(r#"unknown "API" key"#)
        );
        assert_eq!(challenge_param("Bearer", "scope"), None);
        assert!(challenge_scopes(r#"Bearer scope="""#).is_empty());
        assert_eq!(
            challenge_param(r#"Bearer realm="a, scope=x""#, "scope"),
            None
        );
    }

    #[test]
    fn refusals_read_as_one_short_line() {
        let r = Refusal::new(
            401,
            r#"ApiKey header="X-API-Key", error="invalid_token", error_description="unknown API key""#,
            Presented::ApiKey,
        );
        assert_eq!(
            r.to_string(),
            "the server refused the API key (401 invalid_token)"
        );
        let r = Refusal::new(
            403,
            r#"Bearer error="insufficient_scope", scope="mcp:admin""#,
            Presented::Bearer,
        );
        assert!(r.is_insufficient_scope());
        assert_eq!(
            r.to_string(),
            "missing scope mcp:admin (403 insufficient_scope)"
        );
        let r = Refusal::new(
            403,
            r#"Bearer error="insufficient_scope", scope="a b""#,
            Presented::OAuth,
        );
        assert_eq!(r.to_string(), "missing scopes a b (403 insufficient_scope)");
        let r = Refusal::new(401, "Bearer", Presented::Nothing);
        assert_eq!(r.to_string(), "the server requires authentication (401)");
        let r = Refusal::new(
            401,
            "Bearer error=\"\u{1b}[31mred\nline\"",
            Presented::Bearer,
        );
        let s = r.to_string();
        assert!(!s.contains('\u{1b}') && !s.contains('\n'), "{s}");
    }

    #[test]
    fn shown_urls_carry_no_user_information() {
        for (url, shown) in [
            (
                "https://svc:TOPSECRET@idp.example/token?key=Q#f",
                "https://idp.example/token",
            ),
            (
                "https://user@idp.example:8443/t",
                "https://idp.example:8443/t",
            ),
            ("http://a:b@[::1]:9/x", "http://[::1]:9/x"),
            // Not a URL the parser takes: still no password.
            (
                "https://svc:TOP SECRET@idp example/token?q",
                "https://idp example/token",
            ),
            ("no url at all?x", "no url at all"),
            // A password holding what ends an authority or a path.
            (
                "https://svc:pa/ss?w#d@idp example/token",
                "https://idp example/token",
            ),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
    }

    #[test]
    fn one_line_collapses_and_escapes() {
        assert_eq!(one_line("  a\n\n b\tc ", 50), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("x\u{1b}[0m", 50), "x\\u{1b}[0m");
    }

    #[test]
    fn union_keeps_order_without_repeats() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            union(&v(&["a", "b"]), &v(&["b", "c", "a"])),
            v(&["a", "b", "c"])
        );
    }
}
