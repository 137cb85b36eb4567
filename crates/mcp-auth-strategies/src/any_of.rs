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
/// the client hears about the credential it actually sent; when no member
/// saw credentials at all, the result is `MissingCredentials`, and the 401
/// challenges every member's scheme.
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
/// # }
/// ```
#[derive(Clone, Default)]
pub struct AnyOf {
    members: Vec<SharedAuthenticator>,
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
    pub fn with(mut self, member: impl Authenticator) -> Self {
        self.members.push(Arc::new(member));
        self
    }

    /// Appends a shared member.
    pub fn with_shared(mut self, member: SharedAuthenticator) -> Self {
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
        let mut first_error = None;
        for member in &self.members {
            match member.authenticate(req).await {
                Ok(p) => return Ok(p),
                Err(AuthError::MissingCredentials) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(AuthError::MissingCredentials))
    }

    fn name(&self) -> &str {
        "any_of"
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        union(self.members.iter().map(|m| m.challenge_schemes()))
    }

    fn authorization_servers(&self) -> Vec<String> {
        union(self.members.iter().map(|m| m.authorization_servers()))
    }

    fn scopes_supported(&self) -> Vec<String> {
        union(self.members.iter().map(|m| m.scopes_supported()))
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

    #[async_trait]
    impl Authenticator for Fixed {
        async fn authenticate(&self, _: &AuthRequest) -> Result<Principal, AuthError> {
            self.0.clone()
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

        let chain = AnyOf::new()
            .with(fixed(Err(AuthError::invalid_token("bad"))))
            .with(fixed(Ok(Principal::new("b", "t"))))
            .with(fixed(Ok(Principal::new("c", "t"))));
        assert_eq!(chain.authenticate(&req).await.unwrap().subject, "b");
        assert_eq!(chain.len(), 3);
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
