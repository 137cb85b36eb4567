//! [`SessionPolicy`] and [`SessionLimits`].

use std::time::Duration;

use mcp_auth_core::{
    Principal,
    settings::{ConfigError, Lookup, parse_bool, parse_millis},
};

/// Who may open and use sessions.
///
/// Our defaults are stricter than the seed's: opening a session needs
/// credentials too (`MCP_SESSION_AUTH_REQUIRE_FOR_SESSION=true`), because an
/// unauthenticated `initialize` costs a slot and server memory; with it off,
/// anonymous sessions have their own small cap and are bound to the first
/// principal that authenticates in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// `initialize` needs credentials.
    pub require_for_session: bool,
    /// Every other request needs credentials.
    pub require_for_operations: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            require_for_session: true,
            require_for_operations: true,
        }
    }
}

impl SessionPolicy {
    /// Reads `MCP_SESSION_AUTH_ENABLED` (false: both requirements on, the
    /// strictest reading), `MCP_SESSION_AUTH_REQUIRE_FOR_SESSION` and
    /// `MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS` (default true).
    pub fn from_settings(l: &dyn Lookup) -> Result<Self, ConfigError> {
        // Read (so a bad value is named) even when the switch turns them off.
        let policy = Self {
            require_for_session: parse_bool(l, "MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", true)?,
            require_for_operations: parse_bool(l, "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", true)?,
        };
        if !parse_bool(l, "MCP_SESSION_AUTH_ENABLED", true)? {
            return Ok(Self::default());
        }
        Ok(policy)
    }

    /// Whether any request may pass without credentials.
    pub fn allows_anonymous(&self) -> bool {
        !self.require_for_session || !self.require_for_operations
    }
}

/// Caps and expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Live sessions at most, all principals (`HTTP_MAX_CONCURRENT_SESSIONS`).
    pub max_sessions: usize,
    /// Live sessions at most per principal: one (issuer, subject, client id)
    /// (`MCP_MAX_SESSIONS_PER_PRINCIPAL`, default 10).
    pub max_per_principal: usize,
    /// Live sessions at most per user: one (issuer, subject), over all the
    /// client ids they use (`MCP_MAX_SESSIONS_PER_SUBJECT`). Dynamic client
    /// registration hands out client ids freely, so without this one user
    /// could fill the global cap through many clients. The default, 20 with
    /// the other defaults, is `max(max_per_principal, min(2 ×
    /// max_per_principal, max_sessions / 5))`: most of the global cap stays
    /// with others.
    pub max_per_subject: usize,
    /// Live anonymous sessions at most (`MCP_MAX_ANONYMOUS_SESSIONS`, default
    /// [`default_anonymous`](Self::default_anonymous)); they can never take
    /// the slots of authenticated users beyond this. Behind an authenticator
    /// that identifies no one (`NoAuth` alone) every session is anonymous:
    /// `mcp-auth-transport`'s app then raises the default to `max_sessions`.
    pub max_anonymous: usize,
    /// A session unused this long ends (`HTTP_SESSION_TIMEOUT`, ms).
    pub idle_timeout: Duration,
    /// How often expired sessions are swept (`HTTP_SESSION_CLEANUP_INTERVAL`, ms).
    pub cleanup_interval: Duration,
    /// How long a slot stays reserved while a session is being created.
    pub reservation_ttl: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: 100,
            max_per_principal: 10,
            max_per_subject: 20,
            max_anonymous: Self::default_anonymous(100),
            idle_timeout: Duration::from_secs(1800),
            cleanup_interval: Duration::from_secs(300),
            reservation_ttl: Duration::from_secs(30),
        }
    }
}

fn parse_count(l: &dyn Lookup, name: &str, default: usize) -> Result<usize, ConfigError> {
    match l.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ConfigError::new(name, format!("expected a whole number above 0, got {v:?}"))
        }),
    }
}

impl SessionLimits {
    /// The default anonymous cap for a global cap of `max_sessions`: 10, and
    /// never more than half of the slots.
    ///
    /// ```
    /// use mcp_auth_session::SessionLimits;
    /// assert_eq!(SessionLimits::default_anonymous(100), 10);
    /// assert_eq!(SessionLimits::default_anonymous(6), 3);
    /// assert_eq!(SessionLimits::default_anonymous(1), 1);
    /// ```
    pub fn default_anonymous(max_sessions: usize) -> usize {
        10usize.min((max_sessions / 2).max(1))
    }

    /// Reads the variables named on the fields.
    pub fn from_settings(l: &dyn Lookup) -> Result<Self, ConfigError> {
        let d = Self::default();
        let limits = Self {
            max_sessions: parse_count(l, "HTTP_MAX_CONCURRENT_SESSIONS", d.max_sessions)?,
            max_per_principal: parse_count(
                l,
                "MCP_MAX_SESSIONS_PER_PRINCIPAL",
                d.max_per_principal,
            )?,
            max_per_subject: 0,
            max_anonymous: 0,
            idle_timeout: parse_millis(l, "HTTP_SESSION_TIMEOUT", d.idle_timeout)?,
            cleanup_interval: parse_millis(l, "HTTP_SESSION_CLEANUP_INTERVAL", d.cleanup_interval)?,
            reservation_ttl: d.reservation_ttl,
        };
        let mut limits = limits;
        let default_subject = limits.max_per_principal.max(
            limits
                .max_per_principal
                .saturating_mul(2)
                .min(limits.max_sessions / 5),
        );
        limits.max_per_subject = parse_count(l, "MCP_MAX_SESSIONS_PER_SUBJECT", default_subject)?;
        let default_anon = Self::default_anonymous(limits.max_sessions);
        limits.max_anonymous = parse_count(l, "MCP_MAX_ANONYMOUS_SESSIONS", default_anon)?;
        if limits.max_anonymous >= limits.max_sessions && limits.max_sessions > 1 {
            return Err(ConfigError::new(
                "MCP_MAX_ANONYMOUS_SESSIONS",
                "must be below HTTP_MAX_CONCURRENT_SESSIONS, or anonymous clients could take every slot",
            ));
        }
        Ok(limits)
    }
}

/// The identity a session is bound to: issuer, subject and client id, joined
/// with U+001F. Within a part, U+001E is written as U+001E `e` and U+001F as
/// U+001E `s`, so no two identities share an owner whatever their
/// identifiers hold (`("a\u{1f}b", "c")` and `("a", "b\u{1f}c")` were one
/// owner), and the separators are the only U+001F in it. Identifiers
/// without either character are written as they are.
///
/// ```
/// use mcp_auth_core::Principal;
/// let a = Principal::new("alice", "oauth2").with_issuer("https://as").with_client_id("app");
/// assert_eq!(mcp_auth_session::owner_of(&a), "https://as\u{1f}alice\u{1f}app");
/// let b = Principal::new("a\u{1f}b", "oauth2").with_client_id("c");
/// let c = Principal::new("a", "oauth2").with_client_id("b\u{1f}c");
/// assert_ne!(mcp_auth_session::owner_of(&b), mcp_auth_session::owner_of(&c));
/// ```
pub fn owner_of(p: &Principal) -> String {
    let (iss, sub, cid) = p.identity_key();
    let mut owner =
        String::with_capacity(iss.map_or(0, str::len) + sub.len() + cid.map_or(0, str::len) + 2);
    escape_into(&mut owner, iss.unwrap_or_default());
    owner.push('\u{1f}');
    escape_into(&mut owner, sub);
    owner.push('\u{1f}');
    escape_into(&mut owner, cid.unwrap_or_default());
    owner
}

/// `part` of an owner, escaped (see [`owner_of`]).
fn escape_into(out: &mut String, part: &str) {
    if !part.contains(['\u{1e}', '\u{1f}']) {
        out.push_str(part);
        return;
    }
    for c in part.chars() {
        match c {
            '\u{1e}' => out.push_str("\u{1e}e"),
            '\u{1f}' => out.push_str("\u{1e}s"),
            c => out.push(c),
        }
    }
}

/// An owner's issuer, subject and client id (empty when it had none), as
/// [`owner_of`] wrote them; `None` for anything else.
///
/// ```
/// use mcp_auth_core::Principal;
/// let p = Principal::new("a\u{1f}b", "oauth2").with_issuer("https://as");
/// let owner = mcp_auth_session::owner_of(&p);
/// assert_eq!(
///     mcp_auth_session::owner_parts(&owner),
///     Some(("https://as".into(), "a\u{1f}b".into(), String::new()))
/// );
/// ```
pub fn owner_parts(owner: &str) -> Option<(String, String, String)> {
    let unescape = |part: &str| -> Option<String> {
        let mut out = String::with_capacity(part.len());
        let mut chars = part.chars();
        while let Some(c) = chars.next() {
            match c {
                '\u{1e}' => match chars.next()? {
                    'e' => out.push('\u{1e}'),
                    's' => out.push('\u{1f}'),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        Some(out)
    };
    let mut parts = owner.split('\u{1f}');
    let (iss, sub, cid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((unescape(iss)?, unescape(sub)?, unescape(cid)?))
}

/// The user part of an owner: issuer and subject, without the client id.
/// Sessions of one subject count against
/// [`SessionLimits::max_per_subject`] whatever client opened them.
///
/// ```
/// use mcp_auth_core::Principal;
/// let a = Principal::new("alice", "oauth2").with_issuer("https://as").with_client_id("app");
/// let b = Principal::new("alice", "oauth2").with_issuer("https://as").with_client_id("other");
/// let (oa, ob) = (mcp_auth_session::owner_of(&a), mcp_auth_session::owner_of(&b));
/// assert_ne!(oa, ob);
/// assert_eq!(mcp_auth_session::subject_of(&oa), mcp_auth_session::subject_of(&ob));
/// ```
pub fn subject_of(owner: &str) -> &str {
    owner
        .rsplit_once('\u{1f}')
        .map_or(owner, |(user, _client)| user)
}

/// The owner a principal's sessions are bound to, or `None` for a principal
/// that identifies nobody ([`Principal::anonymous`], e.g. the `none`
/// strategy lets everyone in as the same principal), which must count as
/// anonymous, not as one user.
pub fn session_owner(p: Option<&Principal>) -> Option<String> {
    p.filter(|p| !p.anonymous).map(owner_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Identifiers holding the separator (or the escape) neither share an
    /// owner nor escape their subject's count, and come back unchanged.
    #[test]
    fn owners_keep_identities_apart_whatever_they_hold() {
        let p = |iss: &str, sub: &str, cid: &str| {
            Principal::new(sub, "oauth2")
                .with_issuer(iss)
                .with_client_id(cid)
        };
        let odd = [
            "",
            "a",
            "\u{1f}",
            "\u{1e}",
            "\u{1e}s",
            "a\u{1f}b",
            "\u{1e}e\u{1f}",
            "s",
            "e",
        ];
        let mut owners = HashMap::new();
        for iss in odd {
            for sub in odd.iter().filter(|s| !s.is_empty()) {
                for cid in odd.iter().filter(|c| !c.is_empty()) {
                    let owner = owner_of(&p(iss, sub, cid));
                    assert_eq!(owner.matches('\u{1f}').count(), 2, "{owner:?}");
                    let before = owners.insert(owner.clone(), (iss, *sub, *cid));
                    assert_eq!(before, None, "{owner:?} twice");
                    assert_eq!(
                        owner_parts(&owner),
                        Some((iss.to_owned(), (*sub).to_owned(), (*cid).to_owned()))
                    );
                    // The subject's count is the subject's, whatever the
                    // client id holds.
                    assert_eq!(
                        subject_of(&owner),
                        subject_of(&owner_of(&p(iss, sub, "app")))
                    );
                }
            }
        }
        for bad in [
            "a\u{1f}b",
            "a\u{1f}b\u{1f}c\u{1f}d",
            "a\u{1e}x\u{1f}b\u{1f}c",
            "a\u{1e}\u{1f}b\u{1f}c",
        ] {
            assert_eq!(owner_parts(bad), None, "{bad:?}");
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn policy_defaults_are_strict_and_disabling_means_strictest() {
        assert_eq!(
            SessionPolicy::from_settings(&vars(&[])).unwrap(),
            SessionPolicy::default()
        );
        let p = SessionPolicy::from_settings(&vars(&[(
            "MCP_SESSION_AUTH_REQUIRE_FOR_SESSION",
            "false",
        )]))
        .unwrap();
        assert!(p.allows_anonymous());
        let p = SessionPolicy::from_settings(&vars(&[
            ("MCP_SESSION_AUTH_ENABLED", "false"),
            ("MCP_SESSION_AUTH_REQUIRE_FOR_SESSION", "false"),
        ]))
        .unwrap();
        assert!(!p.allows_anonymous());
        assert_eq!(
            SessionPolicy::from_settings(&vars(&[(
                "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS",
                "nah"
            )]))
            .unwrap_err()
            .variable,
            "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS"
        );
        // Named even when the switch turns it off (an attack pass: "banana"
        // was taken without a word).
        assert_eq!(
            SessionPolicy::from_settings(&vars(&[
                ("MCP_SESSION_AUTH_ENABLED", "false"),
                ("MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS", "banana"),
            ]))
            .unwrap_err()
            .variable,
            "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS"
        );
    }

    #[test]
    fn anonymity_is_a_property_of_the_principal_not_a_strategy_name() {
        assert_eq!(session_owner(Some(&Principal::anonymous("none"))), None);
        assert_eq!(session_owner(Some(&Principal::anonymous("gateway"))), None);
        assert!(session_owner(Some(&Principal::new("anonymous", "api_key"))).is_some());
        assert!(session_owner(Some(&Principal::new("svc", "none"))).is_some());
        assert_eq!(session_owner(None), None);
    }

    #[test]
    fn limits() {
        let l = SessionLimits::from_settings(&vars(&[
            ("HTTP_MAX_CONCURRENT_SESSIONS", "5"),
            ("HTTP_SESSION_TIMEOUT", "60000"),
        ]))
        .unwrap();
        assert_eq!(
            (l.max_sessions, l.idle_timeout),
            (5, Duration::from_secs(60))
        );
        // The per-subject default leaves most of the global cap to others,
        // and is never below the per-principal cap.
        let d = SessionLimits::from_settings(&vars(&[])).unwrap();
        assert_eq!((d.max_per_principal, d.max_per_subject), (10, 20));
        let big = SessionLimits::from_settings(&vars(&[("HTTP_MAX_CONCURRENT_SESSIONS", "10000")]))
            .unwrap();
        assert_eq!(big.max_per_subject, 20);
        assert_eq!(l.max_per_subject, 10);
        let set =
            SessionLimits::from_settings(&vars(&[("MCP_MAX_SESSIONS_PER_SUBJECT", "3")])).unwrap();
        assert_eq!(set.max_per_subject, 3);
        // The largest count does not overflow the per-subject default (an
        // attack pass: a debug build panicked at start).
        let huge = SessionLimits::from_settings(&vars(&[(
            "MCP_MAX_SESSIONS_PER_PRINCIPAL",
            "18446744073709551615",
        )]))
        .unwrap();
        assert_eq!(huge.max_per_subject, huge.max_per_principal);
        for (k, v) in [
            ("MCP_MAX_SESSIONS_PER_SUBJECT", "0"),
            ("HTTP_MAX_CONCURRENT_SESSIONS", "0"),
            ("MCP_MAX_ANONYMOUS_SESSIONS", "x"),
            ("HTTP_SESSION_CLEANUP_INTERVAL", "-1"),
        ] {
            assert_eq!(
                SessionLimits::from_settings(&vars(&[(k, v)]))
                    .unwrap_err()
                    .variable,
                k
            );
        }
    }
}
