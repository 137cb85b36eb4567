//! RFC 7591 dynamic client registration, and the client-metadata rules it
//! shares with client ID metadata documents.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::redirect::{check_redirect_uri, is_uri_byte};
use super::{ClientInfo, ClientKind, GrantType, SecretHash, TokenEndpointAuthMethod};

/// Random bytes in a dynamic client id (144 bits; 24 url-safe characters).
const CLIENT_ID_BYTES: usize = 18;
/// Random bytes in a client secret (256 bits; 43 url-safe characters).
const CLIENT_SECRET_BYTES: usize = 32;
/// Most entries accepted in `grant_types` or `response_types` (duplicates
/// included).
const MAX_TYPE_ENTRIES: usize = 8;

/// Limits and lifetime for registered clients (also the limits applied to
/// client ID metadata documents, through [`super::FetchGuard::metadata`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPolicy {
    /// How long a dynamic registration lasts (and its secret, reported as
    /// `client_secret_expires_at`); `None` for ever. Default 30 days. The
    /// facade's endpoints count it from the registration's last token
    /// request, so a client in use outlives the date it was told (and one
    /// that honours that date registers again).
    pub client_lifetime: Option<Duration>,
    /// Most redirect URIs per client. Default 10.
    pub max_redirect_uris: usize,
    /// Longest accepted string, in bytes, for every string field (redirect
    /// URIs, `client_uri`, `logo_uri`, `scope`, the raw `client_name`).
    /// Default 2048.
    pub max_string_len: usize,
    /// Longest `client_name` after sanitizing, in characters. Default 100.
    pub max_client_name_chars: usize,
    /// Private-use URI schemes accepted in redirect URIs besides the
    /// reverse-domain ones RFC 8252 §7.1 asks apps to use (`com.example.app:`),
    /// for apps that registered a single word with their operating system
    /// (`cursor:`). Lowercase, without the colon; add them with
    /// [`allow_private_use_scheme`](Self::allow_private_use_scheme), which
    /// refuses web and browser schemes (`https`, `javascript`, `data`,
    /// `file`, ...; those are refused here whatever this list says). Any app
    /// on a device can claim such a scheme (RFC 8252 §8.6): PKCE is what
    /// keeps a code it catches useless. Default none.
    pub private_use_schemes: Vec<String>,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        Self {
            client_lifetime: Some(Duration::from_secs(30 * 24 * 3600)),
            max_redirect_uris: 10,
            max_string_len: 2048,
            max_client_name_chars: 100,
            private_use_schemes: Vec::new(),
        }
    }
}

impl RegistrationPolicy {
    /// Whether `uri` may be registered as a redirect URI (for checking
    /// pre-registered clients' configuration): at most
    /// [`max_string_len`](Self::max_string_len) bytes of RFC 3986
    /// characters, absolute, lowercase scheme, no fragment, no userinfo, and
    /// `https://host…`, or `http://` to `127.0.0.1`, `[::1]` or `localhost`
    /// (any valid port), or a private-use scheme containing a `.` (RFC 8252
    /// §7.1, e.g. `com.example.app:/cb`) or in
    /// [`private_use_schemes`](Self::private_use_schemes).
    ///
    /// ```
    /// use mcp_auth_proxy::clients::RegistrationPolicy;
    /// let mut p = RegistrationPolicy::default();
    /// assert!(p.validate_redirect_uri("com.example.app:/oauth2redirect").is_ok());
    /// assert!(p.validate_redirect_uri("http://app.example/cb").is_err());
    /// assert!(p.validate_redirect_uri("cursor://anysphere.cursor-retrieval/cb").is_err());
    /// p.allow_private_use_scheme("cursor").unwrap();
    /// assert!(p.validate_redirect_uri("cursor://anysphere.cursor-retrieval/cb").is_ok());
    /// ```
    pub fn validate_redirect_uri(&self, uri: &str) -> Result<(), RegistrationError> {
        check_redirect_uri(uri, self.max_string_len, &self.private_use_schemes)
            .map_err(|why| RegistrationError::InvalidRedirectUri(format!("the redirect URI {why}")))
    }

    /// Accepts redirect URIs with the private-use scheme `scheme` (lowercase,
    /// without the colon, e.g. `cursor`) from now on. Refused, with why:
    /// anything but a lowercase URI scheme, and the web's and browsers' own
    /// schemes (`http`, `https`, `ws`, `javascript`, `data`, `file`,
    /// `about`, ...).
    ///
    /// ```
    /// use mcp_auth_proxy::clients::RegistrationPolicy;
    /// let mut p = RegistrationPolicy::default();
    /// assert!(p.allow_private_use_scheme("cursor").is_ok());
    /// assert!(p.allow_private_use_scheme("javascript").is_err());
    /// assert!(p.allow_private_use_scheme("Cursor").is_err());
    /// ```
    pub fn allow_private_use_scheme(&mut self, scheme: &str) -> Result<(), &'static str> {
        super::redirect::check_private_use_scheme(scheme)?;
        if !self.private_use_schemes.iter().any(|s| s == scheme) {
            self.private_use_schemes.push(scheme.to_owned());
        }
        Ok(())
    }
}

/// Why a registration was refused: an RFC 7591 §3.2.2 error. The
/// description names fields and positions only, never their values (so
/// never a secret, nor attacker-chosen text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// `invalid_redirect_uri`: `redirect_uris` is missing, empty, too long,
    /// or one of them is not acceptable.
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(String),
    /// `invalid_client_metadata`: any other field is not acceptable.
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(String),
    /// The server could not complete the registration (the random number
    /// generator failed); HTTP 500 `server_error`.
    #[error("server_error: {0}")]
    ServerError(&'static str),
}

impl RegistrationError {
    /// The RFC 7591 `error` code.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::ServerError(_) => "server_error",
        }
    }

    /// The human-readable `error_description`.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRedirectUri(d) | Self::InvalidClientMetadata(d) => d,
            Self::ServerError(d) => d,
        }
    }

    /// The HTTP status of the error response: 400, or 500 for
    /// [`ServerError`](Self::ServerError).
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::ServerError(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The error response body: `{"error": …, "error_description": …}`.
    pub fn to_response_body(&self) -> Value {
        serde_json::json!({
            "error": self.error_code(),
            "error_description": self.description(),
        })
    }
}

impl axum::response::IntoResponse for RegistrationError {
    fn into_response(self) -> axum::response::Response {
        (
            self.status(),
            [(http::header::CACHE_CONTROL, "no-store")],
            axum::Json(self.to_response_body()),
        )
            .into_response()
    }
}

fn redirect_err(d: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidRedirectUri(d.into())
}

fn meta_err(d: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(d.into())
}

/// Registers a client from an RFC 7591 registration request.
///
/// Returns the client to store, its secret in plain text (only for
/// `client_secret_basic` / `client_secret_post` clients — hand it to the
/// client once, it is stored as a digest only), and the body of the HTTP
/// 201 response (the registered metadata plus `client_id`,
/// `client_id_issued_at`, and for confidential clients `client_secret` and
/// `client_secret_expires_at`, 0 when it never expires).
///
/// Rules (anything else in the request is ignored, including any
/// `client_secret` the client proposes):
/// - the request is a JSON object; `null` fields count as absent;
/// - `redirect_uris`: required, 1 to [`max_redirect_uris`] strings, each
///   accepted by [`RegistrationPolicy::validate_redirect_uri`]; duplicates
///   are dropped (errors: `invalid_redirect_uri`);
/// - `token_endpoint_auth_method`: `none`, `client_secret_basic` or
///   `client_secret_post`; absent means `client_secret_basic` (RFC 7591);
/// - `grant_types`: non-empty subset of `authorization_code`,
///   `refresh_token` that includes `authorization_code`; default
///   `["authorization_code"]`;
/// - `response_types`: non-empty, only `code`; default `["code"]`;
/// - `client_name`: a string of at most `max_string_len` bytes; control
///   and invisible formatting characters (bidi overrides, zero-width) are
///   removed, whitespace runs become one space, then it must be at most
///   [`max_client_name_chars`]; absent or empty after cleaning: the client
///   id is shown instead;
/// - `client_uri`, `logo_uri`: `https://` URLs with a host, no userinfo,
///   RFC 3986 characters, at most `max_string_len` bytes;
/// - `scope`: space-separated RFC 6749 §3.3 scope tokens, at most
///   `max_string_len` bytes; normalized (single spaces, duplicates
///   dropped).
///
/// The client id is 144 random bits, the secret 256, both base64url.
///
/// [`max_redirect_uris`]: RegistrationPolicy::max_redirect_uris
/// [`max_client_name_chars`]: RegistrationPolicy::max_client_name_chars
///
/// ```
/// use mcp_auth_proxy::clients::{register, RegistrationPolicy};
/// use serde_json::json;
/// let req = json!({"redirect_uris": ["https://app.example/cb"]}); // client_secret_basic
/// let (client, secret, body) = register(&req, &RegistrationPolicy::default(), 1_000)?;
/// let secret = secret.expect("confidential clients get a secret");
/// assert!(client.verify_secret(&secret));
/// assert_eq!(body["client_secret"], secret.as_str());
/// assert_eq!(body["client_secret_expires_at"], 1_000 + 30 * 24 * 3600);
///
/// let err = register(&json!({"redirect_uris": ["http://app.example/cb"]}),
///                    &RegistrationPolicy::default(), 1_000).unwrap_err();
/// assert_eq!(err.error_code(), "invalid_redirect_uri");
/// # Ok::<(), mcp_auth_proxy::clients::RegistrationError>(())
/// ```
pub fn register(
    request: &Value,
    policy: &RegistrationPolicy,
    now: u64,
) -> Result<(ClientInfo, Option<String>, Value), RegistrationError> {
    let obj = request
        .as_object()
        .ok_or_else(|| meta_err("the registration request must be a JSON object"))?;
    let md = parse_metadata(obj, policy)?;
    let method = match field(obj, "token_endpoint_auth_method") {
        None => TokenEndpointAuthMethod::ClientSecretBasic,
        Some(v) => v
            .as_str()
            .and_then(TokenEndpointAuthMethod::from_name)
            .ok_or_else(|| {
                meta_err(
                    "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
                )
            })?,
    };
    let client_id = random_token(CLIENT_ID_BYTES)?;
    let secret = if method.uses_secret() {
        Some(random_token(CLIENT_SECRET_BYTES)?)
    } else {
        None
    };
    let expires_at = policy
        .client_lifetime
        .map(|d| now.saturating_add(d.as_secs()));
    let info = ClientInfo {
        client_name: md.client_name.unwrap_or_else(|| client_id.clone()),
        client_id,
        client_secret_sha256: secret.as_deref().map(SecretHash::of),
        redirect_uris: md.redirect_uris,
        client_uri: md.client_uri,
        logo_uri: md.logo_uri,
        token_endpoint_auth_method: method,
        auth_method_named: field(obj, "token_endpoint_auth_method").is_some(),
        grant_types: md.grant_types,
        scope: md.scope,
        kind: ClientKind::Dynamic,
        registered_at: now,
        expires_at,
    };
    let mut body = info.public_metadata();
    if let Value::Object(m) = &mut body {
        m.insert("client_id_issued_at".into(), now.into());
        if let Some(s) = &secret {
            m.insert("client_secret".into(), s.clone().into());
            m.insert(
                "client_secret_expires_at".into(),
                expires_at.unwrap_or(0).into(),
            );
        }
    }
    tracing::debug!(
        client_id = %info.client_id,
        method = %method,
        redirect_uris = info.redirect_uris.len(),
        "registered a client"
    );
    Ok((info, secret, body))
}

/// Client metadata validated by the rules shared by registration requests
/// and client ID metadata documents (everything but the client id and the
/// authentication method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Metadata {
    pub(super) redirect_uris: Vec<String>,
    pub(super) client_name: Option<String>,
    pub(super) client_uri: Option<String>,
    pub(super) logo_uri: Option<String>,
    pub(super) grant_types: Vec<GrantType>,
    pub(super) scope: Option<String>,
}

/// The field's value, `None` when absent or `null`.
pub(super) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(super) fn parse_metadata(
    obj: &Map<String, Value>,
    policy: &RegistrationPolicy,
) -> Result<Metadata, RegistrationError> {
    // redirect_uris
    let list = field(obj, "redirect_uris")
        .ok_or_else(|| redirect_err("redirect_uris is required"))?
        .as_array()
        .ok_or_else(|| redirect_err("redirect_uris must be an array of strings"))?;
    if list.is_empty() {
        return Err(redirect_err("redirect_uris must not be empty"));
    }
    if list.len() > policy.max_redirect_uris {
        return Err(redirect_err(format!(
            "at most {} redirect_uris are allowed",
            policy.max_redirect_uris
        )));
    }
    let mut redirect_uris: Vec<String> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let s = v
            .as_str()
            .ok_or_else(|| redirect_err(format!("redirect_uris[{i}] must be a string")))?;
        check_redirect_uri(s, policy.max_string_len, &policy.private_use_schemes)
            .map_err(|why| redirect_err(format!("redirect_uris[{i}] {why}")))?;
        if !redirect_uris.iter().any(|r| r == s) {
            redirect_uris.push(s.to_owned());
        }
    }

    // grant_types / response_types
    let grant_types = match field(obj, "grant_types") {
        None => vec![GrantType::AuthorizationCode],
        Some(v) => {
            let names = string_list(v, "grant_types")?;
            let mut out = Vec::new();
            for (i, n) in names.into_iter().enumerate() {
                let g = GrantType::from_name(n).ok_or_else(|| {
                    meta_err(format!(
                        "grant_types[{i}] is not supported (authorization_code, refresh_token)"
                    ))
                })?;
                if !out.contains(&g) {
                    out.push(g);
                }
            }
            out
        }
    };
    if !grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(meta_err("grant_types must include authorization_code"));
    }
    if let Some(v) = field(obj, "response_types") {
        for (i, n) in string_list(v, "response_types")?.into_iter().enumerate() {
            if n != "code" {
                return Err(meta_err(format!(
                    "response_types[{i}] is not supported (only code)"
                )));
            }
        }
    }

    // client_name
    let client_name = match field(obj, "client_name") {
        None => None,
        Some(v) => {
            let raw = v
                .as_str()
                .ok_or_else(|| meta_err("client_name must be a string"))?;
            if raw.len() > policy.max_string_len {
                return Err(meta_err("client_name is too long"));
            }
            let name = sanitize_display_name(raw);
            if name.chars().count() > policy.max_client_name_chars {
                return Err(meta_err(format!(
                    "client_name must be at most {} characters",
                    policy.max_client_name_chars
                )));
            }
            (!name.is_empty()).then_some(name)
        }
    };

    let client_uri = https_field(obj, "client_uri", policy)?;
    let logo_uri = https_field(obj, "logo_uri", policy)?;

    // scope
    let scope = match field(obj, "scope") {
        None => None,
        Some(v) => {
            let raw = v
                .as_str()
                .ok_or_else(|| meta_err("scope must be a string"))?;
            if raw.len() > policy.max_string_len {
                return Err(meta_err("scope is too long"));
            }
            normalize_scope(raw)?
        }
    };

    Ok(Metadata {
        redirect_uris,
        client_name,
        client_uri,
        logo_uri,
        grant_types,
        scope,
    })
}

/// A non-empty, short JSON array of strings.
fn string_list<'a>(v: &'a Value, name: &str) -> Result<Vec<&'a str>, RegistrationError> {
    let arr = v
        .as_array()
        .ok_or_else(|| meta_err(format!("{name} must be an array of strings")))?;
    if arr.is_empty() {
        return Err(meta_err(format!("{name} must not be empty")));
    }
    if arr.len() > MAX_TYPE_ENTRIES {
        return Err(meta_err(format!("{name} has too many entries")));
    }
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_str()
                .ok_or_else(|| meta_err(format!("{name}[{i}] must be a string")))
        })
        .collect()
}

/// An optional `https://` URL field (`client_uri`, `logo_uri`).
fn https_field(
    obj: &Map<String, Value>,
    name: &str,
    policy: &RegistrationPolicy,
) -> Result<Option<String>, RegistrationError> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    let s = v
        .as_str()
        .ok_or_else(|| meta_err(format!("{name} must be a string")))?;
    let bad = || meta_err(format!("{name} must be an https URL"));
    if s.len() > policy.max_string_len {
        return Err(meta_err(format!("{name} is too long")));
    }
    if !s.bytes().all(is_uri_byte) || !s.starts_with("https://") {
        return Err(bad());
    }
    let url = url::Url::parse(s).map_err(|_| bad())?;
    let authority = &s["https://".len()..];
    let authority_len = authority.find(['/', '?', '#']).unwrap_or(authority.len());
    if url.scheme() != "https"
        || authority_len == 0
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated
/// by spaces. Normalized to single spaces without duplicates; `None` if
/// empty.
fn normalize_scope(raw: &str) -> Result<Option<String>, RegistrationError> {
    let tokens = mcp_auth_core::distinct_scope_tokens(raw).ok_or_else(|| {
        meta_err("scope must be space-separated scope tokens (RFC 6749 section 3.3)")
    })?;
    Ok((!tokens.is_empty()).then(|| tokens.join(" ")))
}

/// A name safe to show on a consent page: control characters and invisible
/// formatting characters (bidirectional overrides and isolates, zero-width
/// characters, soft hyphen, tags) removed, whitespace runs collapsed to one
/// space, trimmed.
pub(super) fn sanitize_display_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(1024));
    let mut space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            space = true;
        } else if c.is_control() || is_invisible_format(c) {
            // dropped
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Unicode format characters (category Cf) that can disguise text.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// `n` random bytes, base64url without padding.
fn random_token(n: usize) -> Result<String, RegistrationError> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| RegistrationError::ServerError("the random number generator failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_lose_controls_and_bidi_tricks() {
        assert_eq!(sanitize_display_name("  Good\tApp \n\r v2 "), "Good App v2");
        assert_eq!(sanitize_display_name("a\u{0}b\u{7f}c\u{9b}d"), "abcd");
        // With U+202E, "EvilppA" would render as "EvilApp".
        assert_eq!(sanitize_display_name("Evil\u{202E}ppA\u{202C}"), "EvilppA");
        assert_eq!(sanitize_display_name("Go\u{200B}ogle\u{FEFF}"), "Google");
        assert_eq!(sanitize_display_name("x\u{2028}y\u{00A0}z"), "x y z");
        assert_eq!(sanitize_display_name("Café ☕ 日本"), "Café ☕ 日本");
        assert_eq!(sanitize_display_name("\u{200B} \u{202E}"), "");
    }

    #[test]
    fn scopes_are_tokens() {
        assert_eq!(
            normalize_scope(" mcp:read  mcp:write mcp:read ")
                .unwrap()
                .as_deref(),
            Some("mcp:read mcp:write")
        );
        assert_eq!(normalize_scope("   ").unwrap(), None);
        for bad in ["a\"b", "a\\b", "a\tb", "é", "a\nb"] {
            assert!(normalize_scope(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_tokens_are_url_safe_and_distinct() {
        let a = random_token(CLIENT_ID_BYTES).unwrap();
        let b = random_token(CLIENT_ID_BYTES).unwrap();
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
