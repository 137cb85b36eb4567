//! [`FileCredentialStore`]: OAuth tokens on disk, one file per server.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use rmcp::transport::auth::{AuthError, CredentialStore, StoredCredentials};
use sha2::{Digest, Sha256};

/// Stores credentials for one MCP server in
/// `<config dir>/mcp-auth-client/credentials/<sha256 of the server URL>.json`
/// with mode 0600. The config dir is `$MCP_AUTH_CLIENT_HOME`, else
/// `$XDG_CONFIG_HOME`, else `~/.config`. The stored issuer travels with the
/// tokens, so tokens of another issuer are never reused.
#[derive(Debug, Clone)]
pub struct FileCredentialStore {
    path: PathBuf,
}

fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MCP_AUTH_CLIENT_HOME") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(d).join("mcp-auth-client");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".config").join("mcp-auth-client")
}

impl FileCredentialStore {
    /// The store for `server_url`.
    pub fn for_server(server_url: &str) -> Self {
        let digest = hex::encode(Sha256::digest(server_url.as_bytes()));
        Self {
            path: config_dir()
                .join("credentials")
                .join(format!("{}.json", &digest[..32])),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the stored credentials (`logout`). Returns whether any existed.
    pub fn remove(&self) -> std::io::Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn store_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

#[async_trait]
impl CredentialStore for FileCredentialStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec(&credentials).map_err(store_error)?;
        self.write(&bytes).map_err(store_error)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.remove().map(|_| ()).map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_with_mode_0600_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCredentialStore {
            path: dir.path().join("c").join("x.json"),
        };
        assert!(store.load().await.unwrap().is_none());
        store
            .save(StoredCredentials::new(
                "client".into(),
                None,
                vec!["a".into()],
                Some(1),
            ))
            .await
            .unwrap();
        let back = store.load().await.unwrap().unwrap();
        assert_eq!(back.client_id, "client");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.clear().await.unwrap();
        assert!(store.load().await.unwrap().is_none());
        assert!(!store.remove().unwrap());
    }

    #[test]
    fn one_file_per_server() {
        let a = FileCredentialStore::for_server("http://a/mcp");
        let b = FileCredentialStore::for_server("http://b/mcp");
        assert_ne!(a.path(), b.path());
    }
}
