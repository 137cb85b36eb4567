//! The consent page through the public API: hostile text in every field
//! stays text, and the fixture that `tests/browser/consent_page.py` opens in
//! a real browser (written when `CONSENT_BROWSER_DIR` is set).

use mcp_auth_proxy::consent::{
    self, ClientKind, ConsentView, RedirectTarget, ScopeLine, binding_set_cookie,
    new_browser_binding, page_headers, render_consent, render_error,
};
use serde_json::{Map, Value, json};

/// Inputs that would open a tag, close an attribute, or be mistaken for a
/// placeholder, if they reached the page unescaped.
const PAYLOADS: &[&str] = &[
    "\"><script>alert(1)</script>",
    "' onmouseover='alert(1)",
    "\" onmouseover=\"alert(1)",
    "</title></textarea><img src=x onerror=alert(1)>",
    "<!-- <b>bold</b> -->",
    "{scopes} {client_name} %s",
];

/// The page's markup characters, counted: escaping leaves these counts as
/// they are with harmless text, whatever the input.
fn markup_counts(page: &str) -> [usize; 4] {
    ['<', '>', '"', '\''].map(|c| page.matches(c).count())
}

/// The consent page with `field` set to `text`, the others harmless.
fn page_with_everything_set_to(text: &str, field: &str) -> String {
    let pick = |name: &str, default: &'static str| -> String {
        if name == field {
            text.to_owned()
        } else {
            default.to_owned()
        }
    };
    let client_name = pick("client_name", "Cursor");
    let client_id = match field {
        "metadata_url" => format!("https://cursor.example/{text}"),
        "metadata_id" => text.to_owned(),
        _ => pick("client_id", "c-1"),
    };
    let client_kind = match field {
        "metadata_url" | "metadata_id" => ClientKind::MetadataDocument,
        _ => ClientKind::Dynamic,
    };
    let scope = pick("scope", "docs:read");
    let description = pick("description", "Read your documents");
    let server_name = pick("server_name", "Acme Docs");
    let resource = pick("resource", "https://mcp.acme.example/mcp");
    let provider_name = pick("provider_name", "Google");
    let csrf_token = pick("csrf_token", "tok");
    let request_id = pick("request_id", "req");
    let form_action = pick("form_action", "/consent");
    let scopes = [ScopeLine {
        scope: &scope,
        description: Some(&description),
    }];
    render_consent(&ConsentView {
        client_name: &client_name,
        client_id: &client_id,
        client_kind,
        redirect: RedirectTarget::Web {
            host: pick("redirect_host", "claude.ai"),
            secure: true,
        },
        scopes: &scopes,
        server_name: &server_name,
        resource: &resource,
        provider_name: &provider_name,
        csrf_token: &csrf_token,
        request_id: &request_id,
        form_action: &form_action,
    })
}

const FIELDS: &[&str] = &[
    "client_name",
    "client_id",
    "metadata_url",
    "metadata_id",
    "scope",
    "description",
    "server_name",
    "resource",
    "provider_name",
    "csrf_token",
    "request_id",
    "form_action",
    "redirect_host",
];

#[test]
fn injected_markup_in_any_consent_field_stays_text() {
    for field in FIELDS {
        let harmless = markup_counts(&page_with_everything_set_to("x", field));
        for payload in PAYLOADS {
            let page = page_with_everything_set_to(payload, field);
            assert_eq!(
                markup_counts(&page),
                harmless,
                "{field} = {payload:?} changed the page's markup"
            );
            assert!(!page.contains("<script"), "{field} = {payload:?}");
            assert!(!page.contains("<img"), "{field} = {payload:?}");
            assert!(!page.contains("onmouseover='"), "{field} = {payload:?}");
            assert!(!page.contains("onmouseover=\""), "{field} = {payload:?}");
            assert!(!page.contains("<!--"), "{field} = {payload:?}");
            assert!(
                page.contains(&consent::escape_html(payload)),
                "{field} = {payload:?} is not shown escaped"
            );
        }
    }
}

#[test]
fn a_hostile_client_name_is_shown_escaped_in_title_heading_and_details() {
    let page = page_with_everything_set_to("<b>Claude</b>", "client_name");
    assert_eq!(page.matches("&lt;b&gt;Claude&lt;/b&gt;").count(), 4);
    assert!(page.contains("<title>Allow “&lt;b&gt;Claude&lt;/b&gt;” to use Acme Docs?</title>"));
    assert!(!page.contains("<b>"));
}

#[test]
fn a_right_to_left_override_cannot_reverse_the_sentence() {
    // "Claude" followed by U+202E would render everything after it backwards.
    let page = page_with_everything_set_to("Claude\u{202e}gnp.exe", "client_name");
    assert!(!page.contains('\u{202e}'));
    assert!(page.contains("Claude\u{fffd}gnp.exe"));
    assert!(page.contains("<bdi class=\"untrusted\">Claude"));
}

#[test]
fn a_very_long_client_name_is_cut() {
    let name = "A".repeat(5_000);
    let page = page_with_everything_set_to(&name, "client_name");
    assert!(!page.contains(&"A".repeat(consent::MAX_NAME_CHARS + 1)));
    assert!(page.contains(&format!("{}…", "A".repeat(consent::MAX_NAME_CHARS))));
}

#[test]
fn injected_markup_in_the_error_page_stays_text() {
    let harmless = markup_counts(&render_error("x", "x"));
    for payload in PAYLOADS {
        for page in [render_error(payload, "x"), render_error("x", payload)] {
            assert_eq!(markup_counts(&page), harmless, "{payload:?}");
            assert!(page.contains(&consent::escape_html(payload)));
            assert!(!page.contains("<form"), "an error page has no form");
        }
    }
}

#[test]
fn the_error_page_is_a_complete_document() {
    let page = render_error("Unknown client", "This server does not know the app.");
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(page.contains("<title>Unknown client</title>"));
    assert!(page.contains("<h1 id=\"title\">Unknown client</h1>"));
    assert!(page.trim_end().ends_with("</html>"));
}

/// The headers as a JSON object, name to value.
fn headers_json(targets: &[&str]) -> Value {
    let mut object = Map::new();
    for (name, value) in &page_headers(targets) {
        let value = value.to_str().unwrap_or_default().to_owned();
        object.insert(name.as_str().to_owned(), Value::String(value));
    }
    Value::Object(object)
}

/// Writes the pages and headers that `tests/browser/consent_page.py` serves
/// to a real browser: `CONSENT_BROWSER_DIR` is where, and
/// `CONSENT_BROWSER_UPSTREAM` / `CONSENT_BROWSER_CLIENT` are the provider's
/// authorization endpoint and the client's redirect URI in that harness.
/// Without `CONSENT_BROWSER_DIR` it only checks that the pages render.
#[test]
fn browser_fixture() {
    let upstream = std::env::var("CONSENT_BROWSER_UPSTREAM")
        .unwrap_or_else(|_| "http://127.0.0.1:9/authorize".to_owned());
    let client = std::env::var("CONSENT_BROWSER_CLIENT")
        .unwrap_or_else(|_| "http://127.0.0.1:10/callback".to_owned());
    let secret = b"browser fixture secret, 32 bytes";
    let binding = new_browser_binding().expect("system randomness");
    let request_id = "req-7f3a";
    let token = consent::csrf_token(secret, &binding, request_id);
    assert!(consent::csrf_valid(secret, &binding, request_id, &token));

    let scopes = [
        ScopeLine {
            scope: "docs:read",
            description: Some("Read your documents and folders"),
        },
        ScopeLine {
            scope: "docs:write",
            description: Some("Create and edit documents"),
        },
    ];
    let real = render_consent(&ConsentView {
        client_name: "Claude",
        client_id: "6f9c2d0e-51b4-4b43-9a57-0c1de3f1a8e2",
        client_kind: ClientKind::Dynamic,
        redirect: RedirectTarget::from_redirect_uri("https://claude.ai/api/mcp/auth_callback")
            .expect("a valid redirect URI"),
        scopes: &scopes,
        server_name: "Acme Docs",
        resource: "https://mcp.acme.example/mcp",
        provider_name: "Google",
        csrf_token: &token,
        request_id,
        form_action: "decide",
    });
    // The hostile page: script, markup and an attribute break-out in the
    // fields a client controls, shown to the browser without any CSP.
    let hostile = render_consent(&ConsentView {
        client_name: "<b>Claude</b><script>window.pwned=1</script>",
        client_id: "https://evil.example/\" autofocus onfocus=\"window.pwned=2\"><img src=x onerror=\"window.pwned=3\">",
        client_kind: ClientKind::MetadataDocument,
        redirect: RedirectTarget::from_redirect_uri(&client).expect("a valid redirect URI"),
        scopes: &[ScopeLine {
            scope: "'><svg onload=window.pwned=4>",
            description: None,
        }],
        server_name: "Acme Docs",
        resource: "https://mcp.acme.example/mcp",
        provider_name: "Google",
        csrf_token: &token,
        request_id,
        form_action: "decide",
    });
    let error = render_error(
        "This app's redirect address is not allowed",
        "The app asked to be sent back to an address it did not register, so this server stopped here.",
    );
    for page in [&real, &hostile, &error] {
        assert!(page.contains("</html>"));
        assert!(!page.contains("<script"));
    }

    let Ok(dir) = std::env::var("CONSENT_BROWSER_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the fixture directory");
    std::fs::write(dir.join("consent.html"), &real).expect("write consent.html");
    std::fs::write(dir.join("hostile.html"), &hostile).expect("write hostile.html");
    std::fs::write(dir.join("error.html"), &error).expect("write error.html");
    let cookie = binding_set_cookie(&binding, false, 3600).expect("a binding");
    let fixture = json!({
        "csrf": token,
        "request": request_id,
        "binding": binding,
        "set_cookie": cookie.to_str().unwrap_or_default(),
        "headers": {
            "full": headers_json(&[upstream.as_str(), client.as_str()]),
            "upstream-only": headers_json(&[upstream.as_str()]),
            "self-only": headers_json(&[]),
        },
    });
    let fixture = serde_json::to_string_pretty(&fixture).expect("serialize the fixture");
    std::fs::write(dir.join("fixture.json"), fixture).expect("write fixture.json");
    println!("consent page fixture written to {}", dir.display());
}
