//! The consent page this server shows before sending the user to the
//! upstream provider, its error page, the headers both are served with, and
//! the CSRF token that ties the page's form to one browser and one request.
//!
//! ```
//! use mcp_auth_proxy::consent::{
//!     self, ClientKind, ConsentView, RedirectTarget, ScopeLine,
//! };
//!
//! let secret = [7u8; 32]; // the server's secret: random, kept between restarts
//! let binding = consent::new_browser_binding().expect("system randomness");
//! let token = consent::csrf_token(&secret, &binding, "req-42");
//!
//! let page = consent::render_consent(&ConsentView {
//!     client_name: "<b>Claude</b>",
//!     client_id: "4d1f0c",
//!     client_kind: ClientKind::Dynamic,
//!     redirect: RedirectTarget::from_redirect_uri("https://claude.ai/api/mcp/auth_callback")
//!         .expect("an absolute URI"),
//!     scopes: &[ScopeLine { scope: "docs:read", description: Some("Read your documents") }],
//!     server_name: "Acme Docs",
//!     resource: "https://mcp.acme.example/mcp",
//!     provider_name: "Google",
//!     csrf_token: &token,
//!     request_id: "req-42",
//!     form_action: "/consent",
//! });
//! assert!(page.contains("&lt;b&gt;Claude&lt;/b&gt;")); // shown as text, never markup
//! assert!(page.contains("claude.ai"));
//!
//! // The POST handler checks the token against the browser's cookie.
//! assert!(consent::csrf_valid(&secret, &binding, "req-42", &token));
//! assert!(!consent::csrf_valid(&secret, &binding, "req-43", &token));
//!
//! // Served with a strict policy; the form's redirect chain may reach the
//! // provider and the client's redirect URI.
//! let headers = consent::page_headers(&[
//!     "https://accounts.google.com/o/oauth2/v2/auth",
//!     "https://claude.ai/api/mcp/auth_callback",
//! ]);
//! assert_eq!(headers["cache-control"], "no-store");
//! ```
//!
//! Everything here is pure: no I/O, no clock, only randomness in
//! [`new_browser_binding`]. The handler that serves the page:
//!
//! 1. validates the authorization request; a bad `redirect_uri` or an unknown
//!    client gets [`render_error`] (never a redirect to an unchecked URI);
//! 2. reads the browser binding cookie ([`binding_from_headers`]), or makes
//!    one ([`new_browser_binding`], [`binding_set_cookie`]);
//! 3. if this browser already approved this client, goes straight on to the
//!    provider; otherwise renders [`render_consent`] with
//!    [`csrf_token`]`(secret, binding, request_id)`;
//! 4. on the POST, rejects the form unless [`csrf_valid`] holds for the same
//!    cookie and the posted `request`; then redirects (303) to the provider on
//!    `decision=allow`, or to the client's redirect URI with
//!    `error=access_denied` on `decision=deny`.
//!
//! Every page goes out with [`page_headers`].
//!
//! # Untrusted text
//!
//! The client's name, its ID, its metadata host and the scope descriptions
//! come from whoever registered the client. They are HTML-escaped
//! ([`escape_html`]) wherever they appear, every attribute is double-quoted,
//! and the page is assembled by appending escaped pieces in order (never by
//! substituting placeholders, so a name like `{scopes}` stays text). Control
//! and bidirectional-override characters in the name become U+FFFD, the name
//! is shortened to [`MAX_NAME_CHARS`], and it sits in `<bdi>` so right-to-left
//! text cannot reorder the sentence around it. The page says the name is the
//! app's own claim, and puts the redirect host (the party that receives the
//! authorization) in a box of its own.

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{self, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq as _;

/// The page's style sheet, inlined in a `<style>` element and allowed by its
/// hash in the Content-Security-Policy.
const STYLE: &str = include_str!("consent/page.css");

/// How many characters of a client's name the page shows; longer names are
/// cut and end with "…".
pub const MAX_NAME_CHARS: usize = 60;

/// How many characters of a client ID, metadata host or scope text the page
/// shows.
const MAX_TEXT_CHARS: usize = 200;

/// How the client came to be known to this server: the page says so, since
/// it tells the user how much the client's name is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// This server's operator registered it in the configuration.
    Preregistered,
    /// It registered itself through dynamic client registration (RFC 7591):
    /// anyone can do that, under any name.
    Dynamic,
    /// Its client ID is the URL of a client ID metadata document: whoever
    /// controls that URL's host wrote the name. The page shows the host.
    MetadataDocument,
}

/// Where the browser is sent back to with the authorization: the part of the
/// request that matters most, shown prominently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTarget {
    /// A web site.
    Web {
        /// The host, ASCII (internationalized names in their `xn--` form, so
        /// look-alike letters show), with the port when it is not the
        /// scheme's default.
        host: String,
        /// `true` for `https`, `false` for plain `http`.
        secure: bool,
    },
    /// A loopback address (`127.0.0.0/8`, `[::1]` or `localhost`, RFC 8252
    /// §7.3): an application on the user's own computer.
    Loopback {
        /// The port, when the URI names one.
        port: Option<u16>,
    },
    /// A private-use URI scheme (RFC 8252 §7.1) such as `cursor:`: the
    /// application the operating system opens for that scheme.
    App {
        /// The scheme, lowercase, without the colon.
        scheme: String,
    },
}

impl RedirectTarget {
    /// What the page shows for a client's `redirect_uri`. `None` when it is
    /// not an absolute URI, has no host (for `http` and `https`), or uses a
    /// scheme no redirect may use (`javascript`, `data`, `file`, ...).
    pub fn from_redirect_uri(uri: &str) -> Option<Self> {
        let url = url::Url::parse(uri).ok()?;
        match url.scheme() {
            "https" | "http" => {
                let host = url.host()?;
                let loopback = match &host {
                    url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
                    url::Host::Ipv4(ip) => ip.is_loopback(),
                    url::Host::Ipv6(ip) => ip.is_loopback(),
                };
                if loopback {
                    return Some(Self::Loopback { port: url.port() });
                }
                let host = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                };
                Some(Self::Web {
                    host,
                    secure: url.scheme() == "https",
                })
            }
            "javascript" | "data" | "vbscript" | "file" | "blob" | "about" | "filesystem" => None,
            scheme => Some(Self::App {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

/// One requested scope, with what it lets the client do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeLine<'a> {
    /// The scope as requested, e.g. `docs:read`.
    pub scope: &'a str,
    /// A sentence for people, e.g. "Read your documents"; the scope alone is
    /// shown when `None`.
    pub description: Option<&'a str>,
}

/// What the consent page shows. Fields marked untrusted come from the
/// client's registration and are escaped; the others come from this server's
/// configuration and are escaped as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentView<'a> {
    /// The client's name (untrusted: it is what the client says it is). An
    /// empty name shows as "an unnamed app".
    pub client_name: &'a str,
    /// The client ID (untrusted for metadata-document clients, whose ID is
    /// the document's URL).
    pub client_id: &'a str,
    /// How the client registered.
    pub client_kind: ClientKind,
    /// Where the browser goes back to: derive it from the validated
    /// `redirect_uri` with [`RedirectTarget::from_redirect_uri`].
    pub redirect: RedirectTarget,
    /// The requested scopes (descriptions from configuration); empty for none.
    pub scopes: &'a [ScopeLine<'a>],
    /// This MCP server's name for people, e.g. "Acme Docs"; when empty, the
    /// host of `resource` stands in.
    pub server_name: &'a str,
    /// The MCP server's URL (the resource the token will be for).
    pub resource: &'a str,
    /// The upstream provider the user signs in with next, e.g. "Google".
    pub provider_name: &'a str,
    /// [`csrf_token`] for this browser and this request.
    pub csrf_token: &'a str,
    /// The pending authorization request's ID, posted back as `request`.
    pub request_id: &'a str,
    /// Where the form posts: a path on this server, e.g. `/consent`.
    pub form_action: &'a str,
}

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by character references:
/// safe in element content and in quoted attribute values.
///
/// ```
/// use mcp_auth_proxy::consent::escape_html;
/// assert_eq!(escape_html(r#"<a href="x">Tom & 'Jerry'</a>"#),
///            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Characters that would hide or reorder text around them: C0 and C1
/// controls, zero-width and directional marks, bidirectional embeddings,
/// overrides and isolates, and the byte-order mark.
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{061c}' | '\u{180e}'
        | '\u{200b}' | '\u{200c}' | '\u{200e}' | '\u{200f}'
        | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Untrusted `text` made displayable: whitespace controls become spaces,
/// other deceptive characters U+FFFD, at most `max` characters (then "…"),
/// then escaped.
fn untrusted(text: &str, max: usize) -> String {
    let mut shown = String::with_capacity(text.len().min(max * 4));
    for (count, c) in text.chars().enumerate() {
        if count == max {
            shown.push('…');
            break;
        }
        shown.push(match c {
            '\t' | '\n' | '\r' => ' ',
            c if is_deceptive(c) => '\u{fffd}',
            c => c,
        });
    }
    escape_html(&shown)
}

/// The page's `<head>`: charset, viewport, title, and the style sheet.
fn head(out: &mut String, title: &str) {
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"same-origin\">\n<title>",
    );
    out.push_str(title);
    out.push_str("</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n");
}

/// The consent page for `view`: a complete HTML document with an inline
/// style sheet, no scripts and no external resources, to be served with
/// [`page_headers`]. Its form posts `csrf`, `request` and
/// `decision=allow|deny` to `view.form_action`.
pub fn render_consent(view: &ConsentView<'_>) -> String {
    let server = if view.server_name.trim().is_empty() {
        let url = url::Url::parse(view.resource).ok();
        escape_html(
            url.as_ref()
                .and_then(url::Url::host_str)
                .unwrap_or(view.resource),
        )
    } else {
        escape_html(view.server_name)
    };
    let provider = escape_html(view.provider_name);
    let named = !view.client_name.trim().is_empty();
    let name = untrusted(view.client_name, MAX_NAME_CHARS);
    // The name in running text: quoted and isolated, or a plain description.
    let app = if named {
        format!("“<bdi class=\"untrusted\">{name}</bdi>”")
    } else {
        "an unnamed app".to_owned()
    };

    let mut out = String::with_capacity(STYLE.len() + 4096);
    let title = if named {
        format!("Allow “{name}” to use {server}?")
    } else {
        format!("Allow an unnamed app to use {server}?")
    };
    head(&mut out, &title);

    out.push_str("<main aria-labelledby=\"title\">\n<h1 id=\"title\">Allow ");
    out.push_str(&app);
    out.push_str(" to use ");
    out.push_str(&server);
    out.push_str("?</h1>\n<p class=\"lede\">");
    match (named, view.client_kind) {
        (true, ClientKind::Preregistered) => {
            out.push_str("This server's operator registered the app under the name ");
            out.push_str(&app);
            out.push_str(". Still, check where access goes before you allow it.");
        }
        (true, _) => {
            out.push_str(&app);
            out.push_str(
                " is the name the app gave itself, and nobody has checked it: \
                 look at where access goes before you allow it.",
            );
        }
        (false, _) => {
            out.push_str("The app gave no name: look at where access goes before you allow it.")
        }
    }
    out.push_str("</p>\n");

    destination(&mut out, &view.redirect);

    out.push_str(
        "<section aria-labelledby=\"scopes-title\">\n<h2 id=\"scopes-title\">What it asks for</h2>\n",
    );
    if view.scopes.is_empty() {
        out.push_str(
            "<p>No particular permissions: it can do what this server lets any signed-in user do.</p>\n",
        );
    } else {
        out.push_str("<ul class=\"scopes\">\n");
        for line in view.scopes {
            out.push_str("<li>");
            if let Some(description) = line.description {
                out.push_str(&untrusted(description, MAX_TEXT_CHARS));
                out.push(' ');
            }
            out.push_str("<code>");
            out.push_str(&untrusted(line.scope, MAX_TEXT_CHARS));
            out.push_str("</code></li>\n");
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");

    out.push_str(
        "<details>\n<summary>About this app</summary>\n<dl class=\"facts\">\n<dt>Name</dt><dd>",
    );
    if named {
        out.push_str(&app);
        out.push_str(match view.client_kind {
            ClientKind::Preregistered => {
                " <span class=\"muted\">(set by this server's operator)</span>"
            }
            _ => " <span class=\"muted\">(as the app describes itself)</span>",
        });
    } else {
        out.push_str("<span class=\"muted\">none given</span>");
    }
    out.push_str("</dd>\n<dt>Registration</dt><dd>");
    match view.client_kind {
        ClientKind::Dynamic => out.push_str("Registered itself with this server"),
        ClientKind::MetadataDocument => {
            // The ID is the document's URL: its host is who vouches for the name.
            let url = url::Url::parse(view.client_id).ok();
            let host = url.as_ref().and_then(url::Url::host_str);
            out.push_str("Described by a metadata document at <strong class=\"untrusted\">");
            out.push_str(&untrusted(host.unwrap_or(view.client_id), MAX_TEXT_CHARS));
            out.push_str("</strong>");
        }
        ClientKind::Preregistered => out.push_str("Pre-registered by this server's operator"),
    }
    out.push_str("</dd>\n<dt>Client ID</dt><dd><code>");
    out.push_str(&untrusted(view.client_id, MAX_TEXT_CHARS));
    out.push_str("</code></dd>\n<dt>Server</dt><dd><code>");
    out.push_str(&escape_html(view.resource));
    out.push_str("</code></dd>\n</dl>\n</details>\n");

    out.push_str("<form method=\"post\" action=\"");
    out.push_str(&escape_html(view.form_action));
    out.push_str("\">\n<input type=\"hidden\" name=\"csrf\" value=\"");
    out.push_str(&escape_html(view.csrf_token));
    out.push_str("\">\n<input type=\"hidden\" name=\"request\" value=\"");
    out.push_str(&escape_html(view.request_id));
    out.push_str("\">\n<p class=\"next\">If you allow, you'll sign in with <strong>");
    out.push_str(&provider);
    out.push_str(
        "</strong> next. If you deny, the app gets nothing.</p>\n<div class=\"actions\">\n",
    );
    out.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"deny\">Deny</button>\n",
    );
    out.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"allow\" class=\"allow\">Allow</button>\n",
    );
    out.push_str("</div>\n</form>\n</main>\n</body>\n</html>\n");
    out
}

/// The box naming where the browser goes back to.
fn destination(out: &mut String, redirect: &RedirectTarget) {
    out.push_str(
        "<section class=\"destination\" aria-labelledby=\"destination-title\">\n\
         <h2 id=\"destination-title\">Access goes to</h2>\n<p class=\"host\">",
    );
    match redirect {
        RedirectTarget::Web { host, secure } => {
            let host = escape_html(host);
            out.push_str(&host);
            out.push_str("</p>\n<p>");
            if !*secure {
                out.push_str("A web site reached without encryption (<code>http</code>). ");
            }
            out.push_str("Your browser is sent there after you sign in. Allow only if you just started connecting an app on <strong>");
            out.push_str(&host);
            out.push_str("</strong>.");
        }
        RedirectTarget::Loopback { port } => {
            out.push_str("An application on this computer</p>\n<p>");
            out.push_str("It answers at this computer's own address");
            if let Some(port) = port {
                out.push_str(" (port ");
                out.push_str(&port.to_string());
                out.push(')');
            }
            out.push_str(". Allow only if you just started connecting an app on this computer.");
        }
        RedirectTarget::App { scheme } => {
            out.push_str("An application on this computer</p>\n<p>The one that opens <code>");
            out.push_str(&escape_html(scheme));
            out.push_str(":</code> links. Allow only if you just started connecting that app.");
        }
    }
    out.push_str(" If this page is a surprise, choose Deny.</p>\n</section>\n");
}

/// A page for an error that must be shown rather than sent to the client
/// (an invalid `redirect_uri`, an unknown client, a failed CSRF check): the
/// consent page's look, no form. Both texts are escaped. Serve it with
/// [`page_headers`]`(&[])`.
pub fn render_error(title: &str, message: &str) -> String {
    let title = escape_html(title);
    let mut out = String::with_capacity(STYLE.len() + 1024);
    head(&mut out, &title);
    out.push_str("<main aria-labelledby=\"title\">\n<h1 id=\"title\">");
    out.push_str(&title);
    out.push_str("</h1>\n<p>");
    out.push_str(&escape_html(message));
    out.push_str("</p>\n<p class=\"muted\">Nothing was shared with the app. You can close this page.</p>\n</main>\n</body>\n</html>\n");
    out
}

/// The CSP source expression for one form target: the URL's origin
/// (`https://host[:port]`), or `scheme:` for a private-use scheme. `None`
/// for anything that does not parse, or that would not be a single source
/// expression.
fn csp_source(target: &str) -> Option<String> {
    let url = url::Url::parse(target).ok()?;
    let source = match url.scheme() {
        "https" | "http" => url.origin().ascii_serialization(),
        "javascript" | "data" | "vbscript" | "file" | "blob" | "about" | "filesystem" => {
            return None;
        }
        scheme => format!("{scheme}:"),
    };
    let plain = source.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b':' | b'/' | b'[' | b']')
    });
    (plain && source != "null").then_some(source)
}

/// `sha256-...` of the inline style sheet, as CSP's `style-src` names it.
fn style_hash() -> String {
    let hash = digest::digest(&digest::SHA256, STYLE.as_bytes());
    format!("'sha256-{}'", STANDARD.encode(hash.as_ref()))
}

/// The headers for [`render_consent`] and [`render_error`] pages.
///
/// - `Content-Type: text/html; charset=utf-8`, `X-Content-Type-Options:
///   nosniff`, `Cache-Control: no-store` (the page holds a CSRF token).
/// - `Content-Security-Policy: default-src 'none'; style-src 'sha256-…';
///   base-uri 'none'; form-action 'self' …; frame-ancestors 'none'`: nothing
///   loads or runs but the page's own style sheet, allowed by its hash (not
///   `'unsafe-inline'`, so even an injected `style` attribute would not
///   apply), and the page cannot be framed.
/// - `X-Frame-Options: DENY` for browsers without `frame-ancestors`: a
///   consent page in a hidden frame is the classic clickjacking target.
/// - `Referrer-Policy: same-origin`: the page's URL (the authorization
///   request) is not leaked to the provider or the client. Not
///   `no-referrer`: under it a browser posts the form with `Origin: null`
///   (the Fetch standard), which a server's Origin check must refuse, so
///   no user could get past the page.
///
/// `form_targets` are the URLs the form submission's redirect chain may
/// reach besides this server: Chromium and WebKit apply `form-action` to
/// every redirect after a form POST, not only to the form's own action. Pass
/// the upstream provider's authorization endpoint and the client's
/// `redirect_uri` (denials, and approvals the provider answers at once, end
/// there). Each becomes its origin (or `scheme:` for an app's private
/// scheme); entries that are not absolute URLs are left out. Error pages
/// pass `&[]`.
///
/// No `Cross-Origin-Opener-Policy`: clients that open the flow in a popup
/// need `window.opener` at their callback page, and a policy here would cut
/// it for the rest of the popup's life.
pub fn page_headers(form_targets: &[&str]) -> HeaderMap {
    let mut form_action = String::from("'self'");
    for source in form_targets.iter().filter_map(|target| csp_source(target)) {
        if !form_action.split(' ').any(|known| known == source) {
            form_action.push(' ');
            form_action.push_str(&source);
        }
    }
    let policy = format!(
        "default-src 'none'; style-src {}; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'",
        style_hash()
    );
    let policy = HeaderValue::try_from(policy).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        )
    });

    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
}

/// Domain separation for the CSRF MAC: a key shared with other uses of the
/// same secret cannot produce a consent token by accident.
const CSRF_CONTEXT: &[u8] = b"mcp-auth-proxy consent csrf v1";

/// Bytes of randomness in a browser binding.
const BINDING_BYTES: usize = 32;

/// The binding cookie's name on `https`: the `__Host-` prefix makes the
/// browser refuse it unless it is `Secure`, has `Path=/` and no `Domain`, so
/// a sibling subdomain cannot plant one.
pub const BINDING_COOKIE_SECURE: &str = "__Host-mcp-consent";

/// The binding cookie's name on plain `http` (a loopback development
/// server), where `__Host-` cookies cannot be set.
pub const BINDING_COOKIE_PLAIN: &str = "mcp-consent";

fn csrf_mac(secret: &[u8], browser_binding: &str, request_id: &str) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(CSRF_CONTEXT);
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    for part in [browser_binding, request_id] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    context.sign()
}

/// The CSRF token for the consent form: `base64url(HMAC-SHA256(secret,
/// browser_binding ‖ request_id))`, 43 characters.
///
/// `secret` is the server's key (at least 32 random bytes). `browser_binding`
/// is the value of a random per-browser cookie ([`new_browser_binding`]),
/// set by [`binding_set_cookie`], which gives it these attributes:
/// `__Host-` name prefix on https ([`BINDING_COOKIE_SECURE`]), `HttpOnly`,
/// `Secure` (on https), `SameSite=Lax` (sent on the top-level GET that
/// arrives from the client's redirect, and on the same-site POST, but not on
/// cross-site POSTs), `Path=/`, no `Domain`. A forged form from another site
/// cannot know the token, and a token lifted from one browser fails in any
/// other, and for any other request.
pub fn csrf_token(secret: &[u8], browser_binding: &str, request_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(secret, browser_binding, request_id).as_ref())
}

/// Whether `presented` (the posted `csrf` field) is [`csrf_token`] for this
/// secret, browser and request. Compares in constant time. Always `false`
/// when the secret, the binding or the request ID is empty (a browser
/// without the cookie never passes).
pub fn csrf_valid(secret: &[u8], browser_binding: &str, request_id: &str, presented: &str) -> bool {
    if secret.is_empty() || browser_binding.is_empty() || request_id.is_empty() {
        return false;
    }
    // A tag is 43 characters: refuse to decode anything much longer.
    if presented.len() > 64 {
        return false;
    }
    let Ok(presented) = URL_SAFE_NO_PAD.decode(presented) else {
        return false;
    };
    let expected = csrf_mac(secret, browser_binding, request_id);
    let expected = expected.as_ref();
    presented.len() == expected.len() && bool::from(presented.as_slice().ct_eq(expected))
}

/// A new browser binding: 32 random bytes, base64url (43 characters). `None`
/// only if the system's random generator fails.
pub fn new_browser_binding() -> Option<String> {
    let mut bytes = [0u8; BINDING_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `value` can be a browser binding: base64url, from 22 characters
/// (128 bits) to 128; [`new_browser_binding`] makes 43.
fn is_binding(value: &str) -> bool {
    (22..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The binding cookie's name: [`BINDING_COOKIE_SECURE`] when the server is
/// reached over https, [`BINDING_COOKIE_PLAIN`] otherwise.
pub fn binding_cookie_name(secure: bool) -> &'static str {
    if secure {
        BINDING_COOKIE_SECURE
    } else {
        BINDING_COOKIE_PLAIN
    }
}

/// The `Set-Cookie` value for a browser binding: `HttpOnly; SameSite=Lax;
/// Path=/; Max-Age=max_age_secs`, plus `Secure` and the `__Host-` name when
/// `secure`. `None` when `value` cannot be a binding (not base64url, shorter
/// than 22 or longer than 128 characters).
///
/// ```
/// use mcp_auth_proxy::consent::{binding_set_cookie, new_browser_binding};
/// let binding = new_browser_binding().expect("randomness");
/// let cookie = binding_set_cookie(&binding, true, 400 * 86_400).expect("a binding");
/// assert!(cookie.to_str().unwrap().starts_with("__Host-mcp-consent="));
/// ```
pub fn binding_set_cookie(value: &str, secure: bool, max_age_secs: u64) -> Option<HeaderValue> {
    if !is_binding(value) {
        return None;
    }
    let name = binding_cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// The browser binding in a request's `Cookie` headers, if there is exactly
/// one well-formed value (as [`binding_set_cookie`] accepts) under [`binding_cookie_name`]`(secure)`. Two
/// different values (a cookie planted beside the real one) count as none.
pub fn binding_from_headers(headers: &HeaderMap, secure: bool) -> Option<&str> {
    let name = binding_cookie_name(secure);
    let mut found: Option<&str> = None;
    for line in headers.get_all(header::COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        for pair in line.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key != name || !is_binding(value) {
                continue;
            }
            match found {
                Some(previous) if previous != value => return None,
                _ => found = Some(value),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const BINDING: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// Every header [`page_headers`] sets.
    const PAGE_HEADER_NAMES: [HeaderName; 6] = [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::CONTENT_SECURITY_POLICY,
        header::X_FRAME_OPTIONS,
        header::REFERRER_POLICY,
        header::X_CONTENT_TYPE_OPTIONS,
    ];

    fn view(redirect: RedirectTarget) -> ConsentView<'static> {
        ConsentView {
            client_name: "Cursor",
            client_id: "c-1",
            client_kind: ClientKind::Dynamic,
            redirect,
            scopes: &[],
            server_name: "Acme Docs",
            resource: "https://mcp.acme.example/mcp",
            provider_name: "Google",
            csrf_token: "tok",
            request_id: "req",
            form_action: "/consent",
        }
    }

    #[test]
    fn escape_html_replaces_the_five_special_characters() {
        assert_eq!(
            escape_html("a&b<c>d\"e'f"),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
        assert_eq!(escape_html("plain ünïcode ✓"), "plain ünïcode ✓");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn untrusted_text_loses_controls_and_bidi_overrides_and_is_shortened() {
        assert_eq!(
            untrusted("a\u{202e}b\u{2066}c\u{0}d\ne", 100),
            "a\u{fffd}b\u{fffd}c\u{fffd}d e"
        );
        let long = "x".repeat(MAX_NAME_CHARS + 10);
        let shown = untrusted(&long, MAX_NAME_CHARS);
        assert_eq!(shown.chars().count(), MAX_NAME_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(untrusted("<é>", 2), "&lt;é…");
    }

    #[test]
    fn redirect_targets_by_kind() {
        let web = RedirectTarget::from_redirect_uri("https://claude.ai/api/mcp/auth_callback");
        assert_eq!(
            web,
            Some(RedirectTarget::Web {
                host: "claude.ai".into(),
                secure: true
            })
        );
        let port = RedirectTarget::from_redirect_uri("http://app.example:8080/cb");
        assert_eq!(
            port,
            Some(RedirectTarget::Web {
                host: "app.example:8080".into(),
                secure: false
            })
        );
        let idn = RedirectTarget::from_redirect_uri("https://аpple.example/cb");
        assert_eq!(
            idn,
            Some(RedirectTarget::Web {
                host: "xn--pple-43d.example".into(),
                secure: true
            })
        );
        for loopback in [
            "http://127.0.0.1:33418/cb",
            "http://[::1]:33418/cb",
            "http://localhost:33418/cb",
        ] {
            assert_eq!(
                RedirectTarget::from_redirect_uri(loopback),
                Some(RedirectTarget::Loopback { port: Some(33418) }),
                "{loopback}"
            );
        }
        assert_eq!(
            RedirectTarget::from_redirect_uri("cursor://anysphere.cursor-retrieval/oauth/cb"),
            Some(RedirectTarget::App {
                scheme: "cursor".into()
            })
        );
        for refused in [
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative",
            "",
            "https:///",
        ] {
            assert_eq!(
                RedirectTarget::from_redirect_uri(refused),
                None,
                "{refused}"
            );
        }
    }

    #[test]
    fn the_consent_page_names_app_server_destination_and_provider() {
        let page = render_consent(&view(RedirectTarget::Web {
            host: "claude.ai".into(),
            secure: true,
        }));
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.contains("<title>Allow “Cursor” to use Acme Docs?</title>"));
        assert!(page.contains("<p class=\"host\">claude.ai</p>"));
        assert!(page.contains("sign in with <strong>Google</strong>"));
        assert!(page.contains("is the name the app gave itself, and nobody has checked it"));
        assert!(page.contains("<form method=\"post\" action=\"/consent\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"csrf\" value=\"tok\">"));
        assert!(page.contains("<input type=\"hidden\" name=\"request\" value=\"req\">"));
        assert!(page.contains("name=\"decision\" value=\"allow\""));
        assert!(page.contains("name=\"decision\" value=\"deny\""));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="), "no external resources");
    }

    #[test]
    fn loopback_and_app_destinations_are_described_not_named() {
        let page = render_consent(&view(RedirectTarget::Loopback { port: Some(33418) }));
        assert!(page.contains("<p class=\"host\">An application on this computer</p>"));
        assert!(page.contains("(port 33418)"));
        let page = render_consent(&view(RedirectTarget::App {
            scheme: "cursor".into(),
        }));
        assert!(page.contains("<p class=\"host\">An application on this computer</p>"));
        assert!(page.contains("<code>cursor:</code>"));
    }

    #[test]
    fn unnamed_and_pre_registered_clients_are_worded_for_what_they_are() {
        let mut unnamed = view(RedirectTarget::Loopback { port: None });
        unnamed.client_name = "  ";
        let page = render_consent(&unnamed);
        assert!(page.contains("<h1 id=\"title\">Allow an unnamed app to use Acme Docs?</h1>"));
        let mut known = view(RedirectTarget::Loopback { port: None });
        known.client_kind = ClientKind::Preregistered;
        let page = render_consent(&known);
        assert!(page.contains("registered the app under the name"));
        assert!(!page.contains("nobody has checked"));
    }

    #[test]
    fn a_metadata_document_client_is_vouched_for_by_its_ids_host() {
        let mut cimd = view(RedirectTarget::Loopback { port: None });
        cimd.client_kind = ClientKind::MetadataDocument;
        cimd.client_id = "https://cursor.example/.well-known/mcp-client.json";
        let page = render_consent(&cimd);
        assert!(
            page.contains(
                "metadata document at <strong class=\"untrusted\">cursor.example</strong>"
            )
        );
        cimd.client_id = "not a url <i>";
        let page = render_consent(&cimd);
        assert!(page.contains(
            "metadata document at <strong class=\"untrusted\">not a url &lt;i&gt;</strong>"
        ));
    }

    #[test]
    fn without_a_server_name_the_resource_host_stands_in() {
        let mut unnamed = view(RedirectTarget::Loopback { port: None });
        unnamed.server_name = "";
        let page = render_consent(&unnamed);
        assert!(page.contains("<h1 id=\"title\">Allow “<bdi class=\"untrusted\">Cursor</bdi>” to use mcp.acme.example?</h1>"));
    }

    #[test]
    fn the_style_hash_in_the_policy_matches_the_inline_style_sheet() {
        let page = render_error("Unknown client", "No such client.");
        let style = page
            .split("<style>")
            .nth(1)
            .and_then(|rest| rest.split("</style>").next());
        let hash = digest::digest(&digest::SHA256, style.unwrap_or_default().as_bytes());
        let expected = format!("style-src 'sha256-{}'", STANDARD.encode(hash.as_ref()));
        let headers = page_headers(&[]);
        let policy = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(policy.contains(&expected), "{policy}");
        assert!(
            !STYLE.contains("</"),
            "the style sheet cannot close its element"
        );
    }

    #[test]
    fn page_headers_are_all_present() {
        let headers = page_headers(&[
            "https://accounts.google.com/o/oauth2/v2/auth?x=1",
            "http://127.0.0.1:33418/cb",
            "cursor://a/b",
        ]);
        for name in &PAGE_HEADER_NAMES {
            assert!(headers.contains_key(name), "{name}");
        }
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let policy = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(
            policy.starts_with("default-src 'none'; style-src 'sha256-"),
            "{policy}"
        );
        assert!(policy.ends_with(
            "; base-uri 'none'; form-action 'self' https://accounts.google.com http://127.0.0.1:33418 cursor:; frame-ancestors 'none'"
        ), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn form_targets_cannot_inject_directives() {
        let headers = page_headers(&[
            "https://a.example; script-src *",
            "https://a.example/ 'unsafe-inline'",
            "javascript:alert(1)",
            "not a url",
            "https://a.example/other",
        ]);
        let policy = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(!policy.contains("script-src"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(!policy.contains("javascript"), "{policy}");
        assert_eq!(policy.matches(';').count(), 4, "{policy}");
        assert!(
            policy.contains("form-action 'self' https://a.example; "),
            "{policy}"
        );
    }

    #[test]
    fn csrf_token_is_valid_only_for_its_browser_request_and_secret() {
        let token = csrf_token(SECRET, BINDING, "req-1");
        assert_eq!(token.len(), 43);
        assert!(csrf_valid(SECRET, BINDING, "req-1", &token));
        assert!(
            !csrf_valid(SECRET, BINDING, "req-2", &token),
            "other request"
        );
        let other_browser = "BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(
            !csrf_valid(SECRET, other_browser, "req-1", &token),
            "other browser"
        );
        assert!(!csrf_valid(
            b"another secret, 32 bytes long....",
            BINDING,
            "req-1",
            &token
        ));
        assert!(!csrf_valid(SECRET, BINDING, "req-1", ""));
        assert!(!csrf_valid(SECRET, BINDING, "req-1", &token[..42]));
        assert!(!csrf_valid(SECRET, BINDING, "req-1", &format!("{token}A")));
        assert!(!csrf_valid(SECRET, BINDING, "req-1", "!!!not base64!!!"));
        assert!(!csrf_valid(SECRET, BINDING, "req-1", &"A".repeat(10_000)));
        assert!(
            !csrf_valid(SECRET, "", "req-1", &csrf_token(SECRET, "", "req-1")),
            "no cookie"
        );
        assert!(
            !csrf_valid(b"", BINDING, "req-1", &csrf_token(b"", BINDING, "req-1")),
            "no secret"
        );
    }

    #[test]
    fn csrf_parts_are_length_prefixed() {
        assert_ne!(csrf_token(SECRET, "ab", "c"), csrf_token(SECRET, "a", "bc"));
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_token_fails() {
        let token = csrf_token(SECRET, BINDING, "req-1");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap_or_default();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(
                !csrf_valid(SECRET, BINDING, "req-1", &URL_SAFE_NO_PAD.encode(&bytes)),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        assert!(csrf_valid(
            SECRET,
            BINDING,
            "req-1",
            &URL_SAFE_NO_PAD.encode(&bytes)
        ));
    }

    #[test]
    fn browser_bindings_are_random_and_round_trip_through_cookies() {
        let first = new_browser_binding().unwrap_or_default();
        let second = new_browser_binding().unwrap_or_default();
        assert!(is_binding(&first) && is_binding(&second));
        assert_ne!(first, second);

        let cookie = binding_set_cookie(&first, true, 3600)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(
            cookie.as_deref(),
            Some(format!("__Host-mcp-consent={first}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure").as_str())
        );
        let plain = binding_set_cookie(&first, false, 60)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(
            plain.as_deref(),
            Some(
                format!("mcp-consent={first}; Path=/; HttpOnly; SameSite=Lax; Max-Age=60").as_str()
            )
        );
        assert_eq!(
            binding_set_cookie("short; Domain=evil.example", true, 60),
            None
        );

        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static(
                "theme=dark; __Host-mcp-consent=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        );
        assert_eq!(binding_from_headers(&headers, true), Some(BINDING));
        assert_eq!(
            binding_from_headers(&headers, false),
            None,
            "the plain name is another cookie"
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static(
                "__Host-mcp-consent=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        );
        assert_eq!(
            binding_from_headers(&headers, true),
            Some(BINDING),
            "the same value twice"
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static(
                "__Host-mcp-consent=BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        );
        assert_eq!(
            binding_from_headers(&headers, true),
            None,
            "two different values"
        );

        // Bindings made elsewhere (24 random bytes: 32 characters) pass too.
        let shorter = "B".repeat(32);
        assert!(binding_set_cookie(&shorter, true, 60).is_some());
        assert_eq!(binding_set_cookie(&"B".repeat(21), true, 60), None);
        assert_eq!(binding_set_cookie(&"B".repeat(129), true, 60), None);

        let mut malformed = HeaderMap::new();
        malformed.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-mcp-consent=too-short"),
        );
        assert_eq!(binding_from_headers(&malformed, true), None);
    }
}
