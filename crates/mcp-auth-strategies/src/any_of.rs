//! The `AnyOf` chain.

use async_trait::async_trait;
use mcp_auth_core::{
    AuthError, AuthRequest, Authenticator, ChallengeScheme, Principal, SharedAuthenticator,
};
use std::sync::Arc;

/// Tries several authenticators in order and accepts the first principal.
///
/// A member that finds no credentials of its kind
/// ([`AuthError::MissingCredentials`]) passes the request on. When no member
/// accepts, the first *other* error is returned (a bad key, a bad token), so
/// the client hears about the credential it actually sent, ranked: a
/// member that knew the caller and refused it (403: scope, group) first,
/// then one that could not decide (503: its issuer unreachable), then any
/// refusal of the credential (401); when no member
/// saw credentials at all, the result is `MissingCredentials`, and the 401
/// challenges every member's scheme.
///
/// **One credential per request.** A member's
/// [`challenge_schemes`](Authenticator::challenge_schemes) say which
/// credential it reads (`bearer` and `oauth2` both read `Authorization:
/// Bearer`; API keys read `X-API-Key`), so a custom member must advertise
/// the scheme it really reads. A request that carries credentials of more
/// than one of the chain's schemes (looked up in the request itself, before
/// any member runs) is refused with 400 `invalid_request`, whether or not any
/// of them is valid: otherwise a wrong API key riding along with a valid
/// token would go unnoticed (never counted as a failed login) and the
/// caller's identity would tell whether a guessed key was right. This
/// follows RFC 6750 §2, which forbids more than one way of sending a token
/// in one request. A member that accepts a request whose only credential is
/// of another scheme read something else besides (a custom member
/// advertising the wrong scheme, such as a bare closure's default Bearer
/// while it reads a header of its own): that is two credentials too, and
/// refused the same way. Members that do not declare that their schemes
/// name all they read ([`declares_credentials`](Authenticator::declares_credentials):
/// a bare closure, a custom type; the ready-made strategies and a
/// `FnAuthenticator` given `with_scheme` do) are asked after the others;
/// when one of those refused the credential the request carries, such a
/// member is let in only if it needs that credential (asked again without
/// it, it does not accept), not for something else it reads beside it.
/// Give a custom check its scheme to have it asked in its place. Members that advertise no scheme
/// ([`NoAuth`](crate::NoAuth)) are asked last, and only when no member that
/// reads a credential accepted or refused one: a wrong credential fails the
/// request even where no credential would have been let in.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_auth_core::{AuthError, AuthRequest, Authenticator};
/// use mcp_auth_strategies::{AnyOf, ApiKeyAuthenticator};
///
/// let chain = AnyOf::new()
///     .with(ApiKeyAuthenticator::from_list("first-key-0123456789").unwrap())
///     .with(ApiKeyAuthenticator::from_list("second-key-0123456789").unwrap());
/// let req = AuthRequest::builder().header("x-api-key", "second-key-0123456789").build();
/// assert!(chain.authenticate(&req).await.is_ok());
/// let req = AuthRequest::builder().header("x-api-key", "third-key-0123456789").build();
/// assert!(matches!(chain.authenticate(&req).await, Err(AuthError::InvalidToken { .. })));
///
/// // A key together with a bearer token: two credentials, refused.
/// let chain = chain.with(|req: AuthRequest| async move {
///     match req.bearer_token() {
///         Ok(Some(_)) => Ok(mcp_auth_core::Principal::new("token-user", "custom")),
///         _ => Err(AuthError::MissingCredentials),
///     }
/// });
/// let req = AuthRequest::builder()
///     .header("x-api-key", "second-key-0123456789")
///     .header("authorization", "Bearer abc")
///     .build();
/// assert!(matches!(chain.authenticate(&req).await, Err(AuthError::InvalidRequest { .. })));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct AnyOf {
    members: Vec<SharedAuthenticator>,
    /// Per member: the schemes it advertises (none: it reads no credential
    /// header, as `NoAuth`).
    member_schemes: Vec<Vec<ChallengeScheme>>,
    /// Per member: whether its schemes name all it reads
    /// ([`Authenticator::declares_credentials`]).
    declared: Vec<bool>,
    /// Every member's schemes, once each.
    schemes: Vec<ChallengeScheme>,
}

impl std::fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|m| m.name().to_owned()))
            .finish()
    }
}

impl AnyOf {
    /// An empty chain (which accepts nobody).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a member.
    pub fn with(self, member: impl Authenticator) -> Self {
        self.with_shared(Arc::new(member))
    }

    /// Appends a shared member.
    pub fn with_shared(mut self, member: SharedAuthenticator) -> Self {
        let schemes = member.challenge_schemes();
        for s in &schemes {
            if !self.schemes.contains(s) {
                self.schemes.push(s.clone());
            }
        }
        self.member_schemes.push(schemes);
        self.declared.push(member.declares_credentials());
        self.members.push(member);
        self
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the chain has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// How a client sends the credential of `scheme`: `X-API-Key`,
/// `Authorization: Bearer`.
fn credential_name(scheme: &ChallengeScheme) -> String {
    match scheme {
        ChallengeScheme::ApiKey { header } => header.clone(),
        other => format!("Authorization: {}", other.as_str()),
    }
}

/// Whether the request carries a credential the members of `scheme` read
/// (`schemes`: all the chain's). A token member reads the access token
/// whether it comes as `Bearer` or as `DPoP` (the
/// [`DpopAuthenticator`](crate::DpopAuthenticator) around a chain checks
/// the proof, then lets the chain verify the token), so unless the chain
/// has a `DPoP` member of its own, a `DPoP` header counts as the `Bearer`
/// members' credential: a bound token and an API key together are two
/// credentials, as a bearer token and an API key are.
fn carries(
    scheme: &ChallengeScheme,
    schemes: &[ChallengeScheme],
    headers: &http::HeaderMap,
) -> bool {
    let dpop_member = schemes
        .iter()
        .any(|s| matches!(s, ChallengeScheme::DPoP { .. }));
    scheme.presented_in(headers)
        || (*scheme == ChallengeScheme::Bearer
            && !dpop_member
            && ChallengeScheme::DPoP { algs: Vec::new() }.presented_in(headers))
}

/// `req` without the headers that carry the credentials of `presented`.
fn without_credentials(req: &AuthRequest, presented: &[&ChallengeScheme]) -> AuthRequest {
    let mut out = req.clone();
    for scheme in presented {
        match scheme {
            ChallengeScheme::ApiKey { header } => {
                out.headers.remove(header.as_str());
            }
            _ => {
                out.headers.remove(http::header::AUTHORIZATION);
                out.headers.remove("dpop");
            }
        }
    }
    out
}

/// Which of the members' errors a chain answers with: a member that knew
/// the caller and refused it (403) over one that could not decide (503)
/// over a refusal of the credential (401, 400), the first of a rank.
fn rank(e: &AuthError) -> u8 {
    match e {
        AuthError::InsufficientScope { .. } | AuthError::Forbidden { .. } => 2,
        AuthError::Unavailable { .. } => 1,
        _ => 0,
    }
}

fn union<T: PartialEq>(lists: impl Iterator<Item = Vec<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for item in lists.flatten() {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[async_trait]
impl Authenticator for AnyOf {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Principal, AuthError> {
        // Which of the chain's schemes the request carries a credential for,
        // read from the request itself: a conflict is refused before any
        // member runs, whatever the members would have said.
        let presented: Vec<&ChallengeScheme> = self
            .schemes
            .iter()
            .filter(|s| carries(s, &self.schemes, &req.headers))
            .collect();
        if presented.len() > 1 {
            return Err(AuthError::invalid_request(format!(
                "conflicting credentials: send one of {}, not several",
                presented
                    .iter()
                    .map(|s| credential_name(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Members that read a credential first; the first to accept wins,
        // and when none does, the first error of the highest rank decides
        // (`rank`): members of one scheme all read the same token, and
        // one's "not mine" (say `bearer`'s unknown key id for an `oauth2`
        // token) must not turn the other's outage into a refusal counted
        // as a failed login, nor an outage hide another member's 403.
        // Those whose schemes name all they read go first; the others (a
        // closure, a custom type) after them: when one of the first refused
        // the credential the request carries, such a member is let in only
        // if it needs that credential (asked again without it, it does not
        // accept), not for something else it reads beside a refused
        // credential (see `Authenticator::declares_credentials`).
        let mut first_error = None;
        for declared_pass in [true, false] {
            for ((member, schemes), declared) in self
                .members
                .iter()
                .zip(&self.member_schemes)
                .zip(&self.declared)
            {
                if schemes.is_empty() || *declared != declared_pass {
                    continue;
                }
                match member.authenticate(req).await {
                    // A member that accepts though the credential the request
                    // carries is not of its schemes read something else (a
                    // custom check advertising the wrong scheme): two
                    // credentials after all, refused like any two. Otherwise a
                    // wrong key would pass as that member's caller, never
                    // counted as a failed login.
                    Ok(_)
                        if !presented.is_empty()
                            && !presented.iter().any(|p| schemes.contains(p)) =>
                    {
                        return Err(AuthError::invalid_request(format!(
                            "conflicting credentials: the {} member accepted something other than {}; send one credential",
                            member.name(),
                            presented
                                .iter()
                                .map(|s| credential_name(s))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    Ok(p) if declared_pass || first_error.is_none() => return Ok(p),
                    Ok(p) => {
                        let without = without_credentials(req, &presented);
                        if member.authenticate(&without).await.is_err() {
                            return Ok(p);
                        }
                    }
                    Err(AuthError::MissingCredentials) => {}
                    Err(e) if first_error.as_ref().is_none_or(|f| rank(&e) > rank(f)) => {
                        first_error = Some(e);
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // Only then members that advertise no scheme (`NoAuth`, or a custom
        // check on something that is not a credential header).
        for (member, schemes) in self.members.iter().zip(&self.member_schemes) {
            if !schemes.is_empty() {
                continue;
            }
            match member.authenticate(req).await {
                Err(AuthError::MissingCredentials) => {}
                other => return other,
            }
        }
        Err(AuthError::MissingCredentials)
    }

    fn name(&self) -> &str {
        "any_of"
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        self.schemes.clone()
    }

    fn authorization_servers(&self) -> Vec<String> {
        union(self.members.iter().map(|m| m.authorization_servers()))
    }

    fn scopes_supported(&self) -> Vec<String> {
        union(self.members.iter().map(|m| m.scopes_supported()))
    }

    fn anonymous_only(&self) -> bool {
        !self.members.is_empty() && self.members.iter().all(|m| m.anonymous_only())
    }

    fn admits_anonymous(&self) -> bool {
        self.members.iter().any(|m| m.admits_anonymous())
    }

    fn declares_credentials(&self) -> bool {
        self.declared.iter().all(|d| *d)
    }

    /// Every member's checks.
    fn readiness(&self) -> Vec<mcp_auth_core::Readiness> {
        self.members.iter().flat_map(|m| m.readiness()).collect()
    }

    /// Asks the members that let the principal in: those named as its
    /// strategy (all members when none is). It stands unless one of them
    /// says it does not; a member that cannot tell (an error) does not
    /// keep the others from saying so.
    async fn still_valid(&self, principal: &Principal) -> Result<bool, AuthError> {
        let named = self.members.iter().any(|m| m.name() == principal.strategy);
        let mut unsure = None;
        for m in &self.members {
            if named && m.name() != principal.strategy {
                continue;
            }
            match m.still_valid(principal).await {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => unsure = Some(e),
            }
        }
        unsure.map_or(Ok(true), Err)
    }

    /// The first member's that checks DPoP proofs.
    fn dpop(&self) -> Option<mcp_auth_core::DpopInfo> {
        self.members.iter().find_map(|m| m.dpop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(
        Result<Principal, AuthError>,
        Vec<ChallengeScheme>,
        Vec<String>,
    );

    /// Stands for a ready-made strategy: it declares what it reads.
    #[async_trait]
    impl Authenticator for Fixed {
        async fn authenticate(&self, _: &AuthRequest) -> Result<Principal, AuthError> {
            self.0.clone()
        }
        fn declares_credentials(&self) -> bool {
            true
        }
        fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
            self.1.clone()
        }
        fn authorization_servers(&self) -> Vec<String> {
            self.2.clone()
        }
    }

    fn fixed(r: Result<Principal, AuthError>) -> Fixed {
        Fixed(r, vec![ChallengeScheme::Bearer], vec!["https://as".into()])
    }

    #[tokio::test]
    async fn order_and_error_precedence() {
        let req = AuthRequest::default();
        let empty = AnyOf::new();
        assert!(empty.is_empty());
        assert_eq!(
            empty.authenticate(&req).await.unwrap_err(),
            AuthError::MissingCredentials
        );

        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::MissingCredentials)))
            .with(fixed(Err(AuthError::invalid_token("first"))))
            .with(fixed(Err(AuthError::invalid_token("second"))));
        assert_eq!(
            chain.authenticate(&req).await.unwrap_err(),
            AuthError::invalid_token("first")
        );

        // A member that could not decide beats one that refused: with
        // `bearer,oauth2`, the oauth2 issuer's outage is a 503, not
        // `bearer`'s 401 for a token that is not its own (an attack pass:
        // every user was refused, counted, then locked out).
        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::invalid_token("not mine"))))
            .with(fixed(Err(AuthError::unavailable("keys unreachable"))))
            .with(fixed(Err(AuthError::unavailable("second outage"))));
        assert_eq!(
            chain.authenticate(&req).await.unwrap_err(),
            AuthError::unavailable("keys unreachable")
        );
        // But a member that knew the caller and refused it is the answer,
        // whatever another's outage (a review: an outage elsewhere turned
        // a Cognito user's 403 into a 503).
        for forbidden_first in [true, false] {
            let (a, b) = (
                fixed(Err(AuthError::forbidden("not in the group"))),
                fixed(Err(AuthError::unavailable("keys unreachable"))),
            );
            let chain = if forbidden_first {
                AnyOf::new().with(a).with(b)
            } else {
                AnyOf::new().with(b).with(a)
            };
            assert_eq!(
                chain.authenticate(&req).await.unwrap_err(),
                AuthError::forbidden("not in the group"),
                "{forbidden_first}"
            );
        }
        // And over another member's 401 for a token that is not its own.
        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::invalid_token("not mine"))))
            .with(fixed(Err(AuthError::forbidden("not in the group"))));
        assert_eq!(
            chain.authenticate(&req).await.unwrap_err(),
            AuthError::forbidden("not in the group")
        );

        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::invalid_token("bad"))))
            .with(fixed(Ok(Principal::new("b", "t"))))
            .with(fixed(Ok(Principal::new("c", "t"))));
        assert_eq!(chain.authenticate(&req).await.unwrap().subject, "b");
        assert_eq!(chain.len(), 3);
    }

    /// Named `name`, with its own verdict on any principal.
    struct Judge(&'static str, Result<bool, AuthError>);

    #[async_trait]
    impl Authenticator for Judge {
        async fn authenticate(&self, _: &AuthRequest) -> Result<Principal, AuthError> {
            Err(AuthError::MissingCredentials)
        }
        fn name(&self) -> &str {
            self.0
        }
        async fn still_valid(&self, _: &Principal) -> Result<bool, AuthError> {
            self.1.clone()
        }
    }

    /// Only the members that let a principal in judge it (a review: every
    /// member was asked, so one answering for any principal ended streams
    /// opened through the others), and a member that cannot tell does not
    /// stop another from saying no.
    #[tokio::test]
    async fn still_valid_asks_the_members_of_the_principals_strategy() {
        let chain = AnyOf::new()
            .with(Judge("custom", Ok(false)))
            .with(Judge("oauth2", Ok(true)));
        let via_oauth2 = Principal::new("alice", "oauth2");
        assert_eq!(chain.still_valid(&via_oauth2).await, Ok(true));
        let via_custom = Principal::new("bob", "custom");
        assert_eq!(chain.still_valid(&via_custom).await, Ok(false));
        // A strategy no member is named as: all are asked.
        let other = Principal::new("carol", "elsewhere");
        assert_eq!(chain.still_valid(&other).await, Ok(false));
        let chain = AnyOf::new()
            .with(Judge("oauth2", Err(AuthError::unavailable("down"))))
            .with(Judge("oauth2", Ok(false)));
        assert_eq!(chain.still_valid(&via_oauth2).await, Ok(false));
        let chain = AnyOf::new().with(Judge("oauth2", Err(AuthError::unavailable("down"))));
        assert!(chain.still_valid(&via_oauth2).await.is_err());
    }

    fn key(r: Result<Principal, AuthError>) -> Fixed {
        Fixed(
            r,
            vec![ChallengeScheme::ApiKey {
                header: "X-API-Key".into(),
            }],
            vec![],
        )
    }

    #[tokio::test]
    async fn credentials_of_two_schemes_are_refused_whatever_their_validity() {
        let both = AuthRequest::builder()
            .header("x-api-key", "k")
            .header("authorization", "Bearer t")
            .build();
        for (k, b) in [
            (
                Err(AuthError::invalid_token("wrong key")),
                Ok(Principal::new("b", "t")),
            ),
            (Ok(Principal::new("k", "t")), Ok(Principal::new("b", "t"))),
            (
                Ok(Principal::new("k", "t")),
                Err(AuthError::invalid_token("bad")),
            ),
        ] {
            let chain = AnyOf::new().with(key(k)).with(fixed(b));
            let err = chain.authenticate(&both).await.unwrap_err();
            assert_eq!(err.status(), 400, "{err}");
            assert!(
                err.to_string().contains("X-API-Key, Authorization: Bearer"),
                "{err}"
            );
        }
        // A DPoP-bound token is the token members' credential too.
        let bound_and_key = AuthRequest::builder()
            .header("x-api-key", "k")
            .header("authorization", "DPoP t")
            .build();
        let chain = AnyOf::new()
            .with(key(Err(AuthError::invalid_token("wrong key"))))
            .with(fixed(Ok(Principal::new("b", "t"))));
        let err = chain.authenticate(&bound_and_key).await.unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
        // A DPoP member in the chain (one that takes bearer tokens too)
        // reads that header itself: alone, it is one credential.
        let dpop_member = Fixed(
            Ok(Principal::new("d", "t")),
            vec![
                ChallengeScheme::DPoP {
                    algs: vec!["ES256".into()],
                },
                ChallengeScheme::Bearer,
            ],
            vec![],
        );
        let chain = AnyOf::new()
            .with(key(Err(AuthError::MissingCredentials)))
            .with(dpop_member);
        let bound = AuthRequest::builder()
            .header("authorization", "DPoP t")
            .build();
        assert_eq!(chain.authenticate(&bound).await.unwrap().subject, "d");
        let err = chain.authenticate(&bound_and_key).await.unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
        // One credential of each kind alone is fine.
        let chain = AnyOf::new()
            .with(key(Ok(Principal::new("k", "t"))))
            .with(fixed(Err(AuthError::MissingCredentials)));
        let one = AuthRequest::builder().header("x-api-key", "k").build();
        assert_eq!(chain.authenticate(&one).await.unwrap().subject, "k");
        // A member advertising both schemes does not make one credential two.
        let both_schemes = Fixed(
            Ok(Principal::new("m", "t")),
            vec![
                ChallengeScheme::Bearer,
                ChallengeScheme::ApiKey {
                    header: "X-API-Key".into(),
                },
            ],
            vec![],
        );
        let chain = AnyOf::new()
            .with(both_schemes)
            .with(fixed(Err(AuthError::MissingCredentials)));
        let bearer = AuthRequest::builder()
            .header("authorization", "Bearer t")
            .build();
        assert_eq!(chain.authenticate(&bearer).await.unwrap().subject, "m");
    }

    /// A custom member that advertises Bearer (a bare closure's default)
    /// but reads a header of its own: with a wrong key beside it, the
    /// request was let in as the custom member's caller (an attack pass),
    /// so the wrong key never counted as a failed login and the caller's
    /// identity told whether a guessed key was right.
    #[tokio::test]
    async fn a_member_accepting_another_schemes_credential_is_a_conflict() {
        let probe = |req: AuthRequest| async move {
            if req.headers.contains_key("x-probe") {
                Ok(Principal::new("probe", "custom"))
            } else {
                Err(AuthError::MissingCredentials)
            }
        };
        let keys = || crate::ApiKeyAuthenticator::from_list("right-key-0123456789").unwrap();
        let req = |key: Option<&str>| {
            let mut b = AuthRequest::builder().header("x-probe", "1");
            if let Some(k) = key {
                b = b.header("x-api-key", k);
            }
            b.build()
        };
        let keys_first = AnyOf::new().with(keys()).with(probe);
        let probe_first = AnyOf::new().with(probe).with(keys());
        for chain in [&keys_first, &probe_first] {
            let r = chain.authenticate(&req(Some("wrong-key-0123456789"))).await;
            assert!(r.is_err(), "{chain:?}: a wrong key let in: {r:?}");
            // Without a credential the chain reads, the custom check decides.
            assert_eq!(
                chain.authenticate(&req(None)).await.unwrap().subject,
                "probe"
            );
        }
        // The right key is the caller, whatever the order: the custom
        // member, which does not declare what it reads, is asked last.
        for chain in [&keys_first, &probe_first] {
            let who = chain.authenticate(&req(Some("right-key-0123456789"))).await;
            assert_eq!(who.unwrap().strategy, "api_key", "{chain:?}");
        }
    }

    /// The same with a member of the custom check's own (default) scheme: a
    /// wrong bearer token beside the header the check reads was let in as
    /// the check's caller (a review). Members that do not declare what
    /// they read are asked after the others, and only when none of them
    /// refused a credential.
    #[tokio::test]
    async fn an_undeclared_member_never_lets_a_refused_credential_through() {
        let probe = |req: AuthRequest| async move {
            if req.headers.contains_key("x-probe") {
                Ok(Principal::new("probe", "custom"))
            } else {
                Err(AuthError::MissingCredentials)
            }
        };
        let tokens = mcp_auth_core::FnAuthenticator::new(|req: AuthRequest| async move {
            match req.bearer_token()? {
                Some("good") => Ok(Principal::new("alice", "tokens")),
                Some(_) => Err(AuthError::invalid_token("unknown token")),
                None => Err(AuthError::MissingCredentials),
            }
        })
        .with_scheme(ChallengeScheme::Bearer);
        let tokens = Arc::new(tokens);
        for chain in [
            AnyOf::new().with_shared(tokens.clone()).with(probe),
            AnyOf::new().with(probe).with_shared(tokens.clone()),
        ] {
            let with = |token: Option<&str>| {
                let mut b = AuthRequest::builder().header("x-probe", "1");
                if let Some(t) = token {
                    b = b.header("authorization", &format!("Bearer {t}"));
                }
                b.build()
            };
            let r = chain.authenticate(&with(Some("forged"))).await;
            assert!(
                matches!(r, Err(AuthError::InvalidToken { .. })),
                "{chain:?}: {r:?}"
            );
            let who = chain.authenticate(&with(Some("good"))).await.unwrap();
            assert_eq!(who.subject, "alice", "{chain:?}");
            let who = chain.authenticate(&with(None)).await.unwrap();
            assert_eq!(who.subject, "probe", "{chain:?}");
        }
        assert!(!AnyOf::new().with(probe).declares_credentials());
        assert!(
            AnyOf::new()
                .with_shared(tokens.clone())
                .declares_credentials()
        );

        // An undeclared member that does read the credential the declared
        // one refused (opaque tokens of its own, beside a JWT member) is
        // still asked, and lets its own tokens in (a review: it was never
        // asked once the declared member refused).
        let legacy = |req: AuthRequest| async move {
            match req.bearer_token()? {
                Some("legacy-token") => Ok(Principal::new("bob", "legacy")),
                Some(_) => Err(AuthError::invalid_token("unknown legacy token")),
                None => Err(AuthError::MissingCredentials),
            }
        };
        for chain in [
            AnyOf::new().with_shared(tokens.clone()).with(legacy),
            AnyOf::new().with(legacy).with_shared(tokens.clone()),
        ] {
            let req = AuthRequest::builder()
                .header("authorization", "Bearer legacy-token")
                .build();
            assert_eq!(
                chain.authenticate(&req).await.unwrap().subject,
                "bob",
                "{chain:?}"
            );
            let req = AuthRequest::builder()
                .header("authorization", "Bearer forged")
                .build();
            assert!(chain.authenticate(&req).await.is_err(), "{chain:?}");
        }
    }

    #[tokio::test]
    async fn members_of_one_scheme_share_one_credential() {
        // bearer + oauth2: one token, read by both; the second accepting
        // after the first refused is no conflict.
        let req = AuthRequest::default();
        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::invalid_token("other issuer"))))
            .with(fixed(Ok(Principal::new("b", "t"))))
            .with(key(Err(AuthError::MissingCredentials)));
        assert_eq!(chain.authenticate(&req).await.unwrap().subject, "b");
    }

    #[tokio::test]
    async fn a_wrong_credential_fails_even_where_none_would_pass() {
        let req = AuthRequest::default();
        let chain = AnyOf::new()
            .with(crate::NoAuth)
            .with(key(Err(AuthError::invalid_token("wrong key"))));
        assert_eq!(
            chain.authenticate(&req).await.unwrap_err(),
            AuthError::invalid_token("wrong key")
        );
        let chain = AnyOf::new()
            .with(crate::NoAuth)
            .with(key(Ok(Principal::new("k", "api_key"))));
        assert_eq!(chain.authenticate(&req).await.unwrap().subject, "k");
        let chain = AnyOf::new()
            .with(crate::NoAuth)
            .with(key(Err(AuthError::MissingCredentials)));
        assert_eq!(chain.authenticate(&req).await.unwrap().strategy, "none");
    }

    #[test]
    fn metadata_is_the_deduplicated_union() {
        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::MissingCredentials)))
            .with(Fixed(
                Err(AuthError::MissingCredentials),
                vec![ChallengeScheme::ApiKey {
                    header: "X-API-Key".into(),
                }],
                vec![],
            ))
            .with(fixed(Err(AuthError::MissingCredentials)));
        assert_eq!(chain.challenge_schemes().len(), 2);
        assert_eq!(chain.authorization_servers(), vec!["https://as".to_owned()]);
        assert_eq!(format!("{chain:?}"), r#"["custom", "custom", "custom"]"#);
    }
}
