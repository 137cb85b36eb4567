//! [`RegistrationStore`]: dynamic client registrations on disk, one file
//! per authorization server, so a login reuses the client it registered
//! before instead of registering a new one each time.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::{ConfigDirError, config_dir, write_private};

/// A client registered with an authorization server (RFC 7591).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Registration {
    /// The authorization server's issuer (from its metadata).
    pub issuer: String,
    /// The `client_id` it issued.
    pub client_id: String,
    /// The `client_secret` it issued, if any (public clients have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The redirect URI the client was registered with; the registration
    /// is only reused with that same URI.
    pub redirect_uri: String,
}

impl Registration {
    /// A registration of `client_id` (and `client_secret`) with `issuer`
    /// for `redirect_uri`.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Option<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
        }
    }

    /// The port of a `http://127.0.0.1:<port>/callback` redirect URI (the
    /// loopback callback's), else `None`.
    pub fn callback_port(&self) -> Option<u16> {
        let rest = self.redirect_uri.strip_prefix("http://127.0.0.1:")?;
        let port = rest.strip_suffix("/callback")?;
        port.parse().ok().filter(|p| *p != 0)
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// Keeps one [`Registration`] per authorization server issuer in
/// `<config dir>/registrations/<sha256 of the issuer>.json`: files 0600,
/// directories 0700 (like [`crate::FileCredentialStore`], whose config
/// directory it shares).
#[derive(Debug, Clone)]
pub struct RegistrationStore {
    dir: PathBuf,
}

impl RegistrationStore {
    /// The store under the user's config directory (the one
    /// [`crate::FileCredentialStore::for_server`] uses); an error when
    /// there is none ([`ConfigDirError`]).
    pub fn for_user() -> Result<Self, ConfigDirError> {
        Ok(Self::in_dir(&config_dir()?))
    }

    /// The store under `config_dir` (instead of the user's config
    /// directory).
    pub fn in_dir(config_dir: &Path) -> Self {
        Self {
            dir: config_dir.join("registrations"),
        }
    }

    /// The file for `issuer`.
    pub fn path(&self, issuer: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(issuer.as_bytes()));
        self.dir.join(format!("{}.json", &digest[..32]))
    }

    /// The registration kept for `issuer`, if any. A file that cannot be
    /// read or parsed, or that names another issuer, counts as none.
    pub fn load(&self, issuer: &str) -> Option<Registration> {
        let path = self.path(issuer);
        let bytes = match crate::store::read_private(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the stored client registration");
                return None;
            }
        };
        match serde_json::from_slice::<Registration>(&bytes) {
            Ok(r) if r.issuer == issuer => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable stored client registration");
                None
            }
        }
    }

    /// Keeps `registration` for its issuer, replacing any earlier one.
    pub fn save(&self, registration: &Registration) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(registration).map_err(std::io::Error::other)?;
        write_private(&self.path(&registration.issuer), &bytes)
    }

    /// Forgets the registration for `issuer`. Returns whether one existed.
    pub fn remove(&self, issuer: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(issuer)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_per_issuer_private_and_reloaded() {
        let home = tempfile::tempdir().unwrap();
        let store = RegistrationStore::in_dir(home.path());
        assert_eq!(store.load("https://as.example"), None);
        let r = Registration::new(
            "https://as.example",
            "client-1",
            Some("s3cret".into()),
            "http://127.0.0.1:3030/callback",
        );
        store.save(&r).unwrap();
        assert_eq!(store.load("https://as.example"), Some(r.clone()));
        assert_eq!(store.load("https://other.example"), None);
        assert_ne!(store.path("https://as.example"), store.path("https://b"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.path("https://as.example")), 0o600);
            assert_eq!(mode(&home.path().join("registrations")), 0o700);
        }
        assert!(!format!("{r:?}").contains("s3cret"));
        assert!(store.remove("https://as.example").unwrap());
        assert!(!store.remove("https://as.example").unwrap());
        assert_eq!(store.load("https://as.example"), None);
    }

    #[test]
    fn a_file_naming_another_issuer_is_not_used() {
        let home = tempfile::tempdir().unwrap();
        let store = RegistrationStore::in_dir(home.path());
        let r = Registration::new("https://b", "c", None, "http://127.0.0.1:1/callback");
        let bytes = serde_json::to_vec(&r).unwrap();
        std::fs::create_dir_all(&store.dir).unwrap();
        std::fs::write(store.path("https://a"), bytes).unwrap();
        assert_eq!(store.load("https://a"), None);
        std::fs::write(store.path("https://a"), b"not json").unwrap();
        assert_eq!(store.load("https://a"), None);
    }

    #[test]
    fn the_callback_port_of_a_loopback_redirect() {
        let r = |u: &str| Registration::new("i", "c", None, u).callback_port();
        assert_eq!(r("http://127.0.0.1:3030/callback"), Some(3030));
        assert_eq!(r("http://127.0.0.1:0/callback"), None);
        assert_eq!(r("http://localhost:3030/callback"), None);
        assert_eq!(r("http://127.0.0.1:3030/other"), None);
    }
}
