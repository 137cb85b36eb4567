//! The `none` strategy.

use async_trait::async_trait;
use mcp_auth_core::{AuthError, AuthRequest, Authenticator, ChallengeScheme, Principal};

/// Accepts every request as the principal `anonymous`.
///
/// Only for local development or a server that sits behind another
/// authenticating proxy. The server binary refuses it on a non-loopback
/// address unless an explicit insecure override is set.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_auth_core::{AuthRequest, Authenticator};
/// let who = mcp_auth_strategies::NoAuth.authenticate(&AuthRequest::default()).await.unwrap();
/// assert_eq!((who.subject.as_str(), who.strategy.as_str()), ("anonymous", "none"));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

#[async_trait]
impl Authenticator for NoAuth {
    async fn authenticate(&self, _req: &AuthRequest) -> Result<Principal, AuthError> {
        Ok(Principal::anonymous("none"))
    }

    /// It reads exactly the credentials of its schemes.
    fn declares_credentials(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        "none"
    }

    fn challenge_schemes(&self) -> Vec<ChallengeScheme> {
        Vec::new()
    }

    fn anonymous_only(&self) -> bool {
        true
    }
}
