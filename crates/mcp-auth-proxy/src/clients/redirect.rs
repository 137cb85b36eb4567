//! Redirect URI rules: what may be registered, and what an authorization
//! request may present.

use url::Url;

/// Hosts whose `http` redirect URIs are accepted and match on any port
/// (RFC 8252 §7.3 and §8.3). Compared byte for byte: `LOCALHOST`,
/// `127.1` or `[0::1]` are not loopback hosts here.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

/// Whether an authorization request may name `presented` as its redirect
/// URI, given the client's `registered` ones.
///
/// Exact, case-sensitive string comparison (OAuth 2.1 §2.3.1), with one
/// exception: a registered `http` URI on a loopback host (`127.0.0.1`,
/// `[::1]`, `localhost`) matches the same URI on any port (RFC 8252 §7.3),
/// where scheme, host, path and query must still match byte for byte and
/// the port must be 1–65535 in plain digits. A presented URI with
/// characters outside RFC 3986 (spaces, controls, backslashes, non-ASCII)
/// never matches.
///
/// ```
/// use mcp_auth_proxy::clients::redirect_uri_allowed;
/// let reg = vec!["http://127.0.0.1/cb".to_owned(), "https://app.example/cb".to_owned()];
/// assert!(redirect_uri_allowed(&reg, "http://127.0.0.1:8123/cb"));
/// assert!(redirect_uri_allowed(&reg, "https://app.example/cb"));
/// assert!(!redirect_uri_allowed(&reg, "https://app.example:8443/cb"));
/// assert!(!redirect_uri_allowed(&reg, "http://127.0.0.1.evil.example:8123/cb"));
/// ```
pub fn redirect_uri_allowed(registered: &[String], presented: &str) -> bool {
    if presented.is_empty() || !presented.bytes().all(is_uri_byte) {
        return false;
    }
    let loopback = split_loopback(presented);
    registered.iter().any(|r| {
        r == presented
            || match (split_loopback(r), loopback) {
                (Some(reg), Some(pre)) => reg.host == pre.host && reg.rest == pre.rest,
                _ => false,
            }
    })
}

/// Whether `uri` is an `http` URI on a loopback host (any port): one that
/// can only send the browser back to an application on the user's own
/// machine.
pub(crate) fn is_loopback_redirect(uri: &str) -> bool {
    split_loopback(uri).is_some()
}

/// An `http` URI on a loopback host, split around its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loopback<'a> {
    /// One of [`LOOPBACK_HOSTS`].
    pub(super) host: &'a str,
    /// Path, query (and fragment, if any) as written.
    pub(super) rest: &'a str,
}

/// Splits `uri` if it is `http://` + a loopback host + an optional valid
/// port, followed by nothing, or a path or a query.
pub(super) fn split_loopback(uri: &str) -> Option<Loopback<'_>> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find(['/', '?', '#', '\\']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    let host = LOOPBACK_HOSTS
        .into_iter()
        .find(|h| authority.starts_with(h))?;
    match &authority[host.len()..] {
        "" => {}
        port => {
            let digits = port.strip_prefix(':')?;
            if !valid_port(digits) {
                return None;
            }
        }
    }
    Some(Loopback { host, rest })
}

/// 1–65535 in plain digits, without a leading zero.
fn valid_port(digits: &str) -> bool {
    !digits.is_empty()
        && digits.len() <= 5
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u16>().is_ok()
}

/// A byte RFC 3986 allows in a URI (unreserved, reserved, `%`).
pub(super) fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// Schemes a redirect URI may never use, whatever the operator allows:
/// the web's own (with their own rules here, or none a client's app can
/// own), and those a browser runs, reads locally or treats as its own.
const NOT_PRIVATE_USE: [&str; 23] = [
    "http",
    "https",
    "ws",
    "wss",
    "ftp",
    "javascript",
    "vbscript",
    "data",
    "blob",
    "file",
    "filesystem",
    "about",
    "view-source",
    "chrome",
    "chrome-extension",
    "moz-extension",
    "safari-web-extension",
    "ms-browser-extension",
    "edge",
    "opera",
    "intent",
    "resource",
    "jar",
];

/// Why `scheme` cannot be allowed as a private-use redirect scheme (static
/// text; never the scheme): it must be a lowercase URI scheme (RFC 3986
/// §3.1) and none of the web's or a browser's own schemes (`https`,
/// `javascript`, `data`, `file`, ...).
pub(super) fn check_private_use_scheme(scheme: &str) -> Result<(), &'static str> {
    let mut bytes = scheme.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    if !first_ok
        || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return Err("is not a lowercase URI scheme (a letter, then letters, digits, +, - or .)");
    }
    if NOT_PRIVATE_USE.contains(&scheme) {
        return Err("is not a private-use scheme (a web or browser scheme)");
    }
    Ok(())
}

/// Why a redirect URI cannot be registered (static text; never the URI).
/// `schemes` are private-use schemes accepted besides reverse-domain ones
/// (see [`super::RegistrationPolicy::private_use_schemes`]).
pub(super) fn check_redirect_uri(
    uri: &str,
    max_len: usize,
    schemes: &[String],
) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("is empty");
    }
    if uri.len() > max_len {
        return Err("is too long");
    }
    if !uri.bytes().all(is_uri_byte) {
        return Err("contains characters not allowed in a URI (RFC 3986)");
    }
    if uri.contains('#') {
        return Err("must not contain a fragment");
    }
    let url = Url::parse(uri).map_err(|_| "is not an absolute URI")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a username or password");
    }
    // The scheme as written must be the parsed one (lowercase).
    if !uri.starts_with(url.scheme()) || uri.as_bytes().get(url.scheme().len()) != Some(&b':') {
        return Err("must have a lowercase scheme");
    }
    match url.scheme() {
        "https" => {
            let authority = uri
                .strip_prefix("https://")
                .ok_or("must be of the form https://host/...")?;
            let end = authority.find(['/', '?']).unwrap_or(authority.len());
            if end == 0 {
                return Err("must name a host");
            }
            // `host:` and port 0 parse, but lead nowhere.
            if authority[..end].ends_with(':') || url.port() == Some(0) {
                return Err("must name a port from 1 to 65535, or none");
            }
            Ok(())
        }
        "http" => {
            if split_loopback(uri).is_some() {
                Ok(())
            } else {
                Err("may use http only with a loopback host (127.0.0.1, [::1] or localhost)")
            }
        }
        // RFC 8252 §7.1: private-use schemes are reverse domain names,
        // or ones the operator allowed (apps that chose a single word).
        scheme
            if (scheme.contains('.') || schemes.iter().any(|s| s == scheme))
                && check_private_use_scheme(scheme).is_ok() =>
        {
            Ok(())
        }
        _ if schemes.is_empty() => Err(
            "must use https, http to a loopback host, or a reverse-domain private-use scheme (RFC 8252)",
        ),
        _ => Err(
            "must use https, http to a loopback host, a reverse-domain private-use scheme (RFC 8252) or one of the allowed private-use schemes",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_loopback_accepts_only_exact_hosts_and_digit_ports() {
        let ok = [
            ("http://127.0.0.1/cb", "127.0.0.1", "/cb"),
            ("http://127.0.0.1:1/cb", "127.0.0.1", "/cb"),
            ("http://[::1]:65535/cb?x=1", "[::1]", "/cb?x=1"),
            ("http://localhost", "localhost", ""),
            ("http://localhost:8080?x", "localhost", "?x"),
        ];
        for (uri, host, rest) in ok {
            assert_eq!(split_loopback(uri), Some(Loopback { host, rest }), "{uri}");
        }
        let bad = [
            "https://127.0.0.1/cb",
            "HTTP://127.0.0.1/cb",
            "http://127.0.0.1:/cb",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:08080/cb",
            "http://127.0.0.1:65536/cb",
            "http://127.0.0.1:123456/cb",
            "http://127.0.0.1:+80/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://127.0.0.1:80@evil.example/cb",
            "http://127.0.0.1@evil.example/cb",
            "http://user@127.0.0.1/cb",
            "http://127.0.0.1\\@evil.example/cb",
            "http://127.0.0.2/cb",
            "http://127.1/cb",
            "http://LOCALHOST/cb",
            "http://localhost.evil.example/cb",
            "http://[::1]x/cb",
            "http://[0:0:0:0:0:0:0:1]/cb",
            "http://127.0.0.1#frag",
        ];
        for uri in bad {
            assert_eq!(split_loopback(uri), None, "{uri}");
        }
    }

    #[test]
    fn registrable_redirect_uris() {
        let ok = [
            "https://app.example/cb",
            "https://app.example",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:3000/cb",
            "http://[::1]/cb",
            "http://localhost:8080/oauth/callback",
            "com.example.app:/oauth2redirect",
            "com.example.app://callback",
        ];
        for uri in ok {
            assert_eq!(check_redirect_uri(uri, 2048, &[]), Ok(()), "{uri}");
        }
        let bad = [
            "",
            "/cb",
            "app.example/cb",
            "https://app.example/cb#",
            "https://app.example/cb#x",
            "https://user:pw@app.example/cb",
            "https://user@app.example/cb",
            "HTTPS://app.example/cb",
            "https:app.example/cb",
            "https:///cb",
            "https://app.example:/cb",
            "https://app.example:0/cb",
            "https://app.example:65536/cb",
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://LOCALHOST/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "myapp:/cb",
            "https://app.example/c b",
            "https://app.example/cb\n",
            "https://app.example/\\cb",
            "https://app.exämple/cb",
        ];
        for uri in bad {
            assert!(check_redirect_uri(uri, 2048, &[]).is_err(), "{uri:?}");
        }
        assert!(
            check_redirect_uri(&format!("https://a.example/{}", "x".repeat(40)), 30, &[]).is_err()
        );
    }

    #[test]
    fn allowed_private_use_schemes_are_registrable_and_no_others() {
        let allowed = ["cursor".to_owned(), "my-app+x".to_owned()];
        for uri in [
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "cursor:/cb",
            "my-app+x://cb",
            "com.example.app:/cb",
        ] {
            assert_eq!(check_redirect_uri(uri, 2048, &allowed), Ok(()), "{uri}");
        }
        for uri in [
            // Not allowed: another single word, a prefix of an allowed one,
            // a different case, the usual refusals.
            "vscode://cb",
            "curso://cb",
            "cursorx://cb",
            "CURSOR://cb",
            "cursor://user@host/cb",
            "cursor://cb#x",
            "http://app.example/cb",
        ] {
            assert!(check_redirect_uri(uri, 2048, &allowed).is_err(), "{uri}");
        }
        // A web or browser scheme stays refused even if a policy names it
        // (the settings refuse to name it; a policy built in code could).
        let unsafe_ones: Vec<String> = NOT_PRIVATE_USE.iter().map(|s| (*s).to_owned()).collect();
        for uri in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "http://a.example/",
        ] {
            assert!(
                check_redirect_uri(uri, 2048, &unsafe_ones).is_err(),
                "{uri}"
            );
        }
        for scheme in ["cursor", "my-app+x", "com.example.app", "a1"] {
            assert_eq!(check_private_use_scheme(scheme), Ok(()), "{scheme}");
        }
        for scheme in [
            "",
            "Cursor",
            "1app",
            "my app",
            "cursor:",
            "café",
            "https",
            "javascript",
            "view-source",
            "chrome-extension",
            "intent",
        ] {
            assert!(check_private_use_scheme(scheme).is_err(), "{scheme:?}");
        }
    }
}
