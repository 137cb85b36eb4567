//! [`FileCredentialStore`]: OAuth tokens on disk, one file per server.

use std::{
    ffi::OsString,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use async_trait::async_trait;
use rmcp::transport::auth::{
    AuthError, CredentialRefreshGuard, CredentialStore, StoredCredentials,
};
use sha2::{Digest, Sha256};

use crate::{DpopKey, DpopKeyError};

/// Stores credentials for one MCP server in
/// `<config dir>/credentials/<sha256 of the server URL>.json` with mode
/// 0600. The config dir is `$MCP_AUTH_CLIENT_HOME`, else
/// `$XDG_CONFIG_HOME/mcp-auth-client`, else `~/.config/mcp-auth-client`.
/// The stored issuer travels with the tokens, so tokens of another issuer
/// are never reused.
///
/// The server's DPoP key ([`crate::DpopKey`], RFC 9449), when its
/// authorization server binds tokens to one, is kept next to the tokens in
/// `<sha256>.dpop.pem` (PKCS#8 PEM, mode 0600), created at first use and
/// reused by later runs, so that a stored DPoP-bound token keeps working;
/// [`FileCredentialStore::remove`] (`logout`) removes it too.
///
/// Refreshes are serialized (rmcp's refresh guard): an exclusive lock on
/// `<sha256>.json.lock` is held from loading the refresh token to saving
/// the new one, across tasks and processes. Without it, two requests that
/// find the access token expired at the same moment would both spend the
/// same refresh token; an authorization server that rotates refresh tokens
/// (oidc-provider does for public clients) takes the second use for a
/// replay and revokes the grant (`invalid_grant`), forcing a new login.
#[derive(Debug, Clone)]
pub struct FileCredentialStore {
    path: PathBuf,
}

/// How long a refresh waits for another one holding the lock.
const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(60);

/// The client's configuration directory: `$MCP_AUTH_CLIENT_HOME`, else
/// `$XDG_CONFIG_HOME/mcp-auth-client`, else `~/.config/mcp-auth-client`.
/// An empty variable counts as unset (as the XDG spec says of
/// `XDG_CONFIG_HOME`), so `MCP_AUTH_CLIENT_HOME=` never means the working
/// directory; with none of the three set there is no config directory
/// ([`ConfigDirError`]): tokens are never written under whatever directory
/// the client happens to run in.
///
/// These come from the process environment only, never from a `.env`
/// (the binary reads `./.env` for its other settings): this directory
/// holds tokens and client secrets, and a `.env` in whatever directory the
/// client happens to run in (a cloned project, say) choosing where they
/// are written, or which stored tokens are sent, would be a surprise.
pub(crate) fn config_dir() -> Result<PathBuf, ConfigDirError> {
    config_dir_from(|name| std::env::var_os(name))
}

/// [`config_dir`] with the variables from `var`.
fn config_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, ConfigDirError> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(d) = var("MCP_AUTH_CLIENT_HOME") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("mcp-auth-client"));
    }
    let home = var("HOME").ok_or(ConfigDirError::Unset)?;
    Ok(PathBuf::from(home).join(".config").join("mcp-auth-client"))
}

/// There is no config directory to keep tokens and registrations in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigDirError {
    /// None of the variables that locate it is set.
    #[error(
        "no config directory for tokens: set MCP_AUTH_CLIENT_HOME, XDG_CONFIG_HOME or HOME \
         (tokens are not written to the working directory)"
    )]
    Unset,
}

impl FileCredentialStore {
    /// The store for `server_url`, under the user's config directory;
    /// an error when there is none ([`ConfigDirError`]: none of
    /// `MCP_AUTH_CLIENT_HOME`, `XDG_CONFIG_HOME`, `HOME` is set).
    pub fn for_server(server_url: &str) -> Result<Self, ConfigDirError> {
        Ok(Self::in_dir(&config_dir()?, server_url))
    }

    /// The store for `server_url` under `config_dir` (instead of the
    /// user's): `<config_dir>/credentials/<sha256 of the URL>.json`.
    pub fn in_dir(config_dir: &Path, server_url: &str) -> Self {
        let digest = hex::encode(Sha256::digest(server_url.as_bytes()));
        Self {
            path: config_dir
                .join("credentials")
                .join(format!("{}.json", &digest[..32])),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the stored credentials and the DPoP key (`logout`). Returns
    /// whether either existed.
    pub fn remove(&self) -> std::io::Result<bool> {
        let remove = |path: &Path| match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        };
        let tokens = remove(&self.path)?;
        let key = remove(&self.dpop_key_path())?;
        Ok(tokens || key)
    }

    /// The DPoP key's file: `<sha256>.dpop.pem` next to the tokens.
    pub fn dpop_key_path(&self) -> PathBuf {
        self.path.with_extension("dpop.pem")
    }

    /// The stored DPoP key, if there is one that can be read.
    pub fn load_dpop_key(&self) -> Result<Option<DpopKey>, DpopKeyFileError> {
        let path = self.dpop_key_path();
        let pem = match read_private(&path).and_then(|b| {
            String::from_utf8(b).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))
        }) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DpopKeyFileError::Io { path, source: e }),
        };
        DpopKey::from_pkcs8_pem(&pem)
            .map(Some)
            .map_err(|source| DpopKeyFileError::Key { path, source })
    }

    /// The stored DPoP key, or a new one, saved (mode 0600) before it is
    /// returned. Two processes creating one at once end up with the same
    /// key (the first saved). A file that does not hold a key is replaced
    /// (with a warning): tokens bound to it could not be used anyway.
    pub fn dpop_key(&self) -> Result<DpopKey, DpopKeyFileError> {
        match self.load_dpop_key() {
            Ok(Some(key)) => return Ok(key),
            Ok(None) => {}
            Err(DpopKeyFileError::Key { path, .. }) => {
                tracing::warn!(file = %path.display(), "the DPoP key file holds no usable key; replacing it");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
        let path = self.dpop_key_path();
        let key = DpopKey::generate().map_err(|source| DpopKeyFileError::Key {
            path: path.clone(),
            source,
        })?;
        let pem = key.to_pkcs8_pem().map_err(|source| DpopKeyFileError::Key {
            path: path.clone(),
            source,
        })?;
        match write_private_new(&path, pem.as_bytes()) {
            Ok(true) => {
                tracing::debug!(key = key.fingerprint(), "created a DPoP key");
                Ok(key)
            }
            // Another process saved one first: use it.
            Ok(false) => self.load_dpop_key()?.ok_or(DpopKeyFileError::Io {
                path,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
            Err(source) => Err(DpopKeyFileError::Io { path, source }),
        }
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    /// Takes the exclusive refresh lock, waiting at most `wait` for another
    /// holder (another task, or another process).
    async fn lock(&self, wait: Duration) -> std::io::Result<std::fs::File> {
        let path = self.lock_path();
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        // One open file description per holder: locks taken through
        // different descriptions exclude each other within a process too.
        let file = opts.open(&path)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "another refresh still holds {} after {wait:?}",
                                path.display()
                            ),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// A DPoP key file could not be read or written. Names the file, never its
/// contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpopKeyFileError {
    /// Reading or writing the file failed.
    #[error("the DPoP key file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a usable key, or no key could be made.
    #[error("the DPoP key in {}: {source}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DpopKeyError,
    },
}

/// Writes `bytes` to `path` (mode 0600, its directory 0700) unless `path`
/// exists: `Ok(false)` then, the file left as it was. The file appears
/// whole or not at all (a temporary file, then a hard link).
fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = write_temporary(path, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` atomically (a temporary file, then a rename),
/// mode 0600, creating its directory 0700 (see [`private_dir`]).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A leftover of the fixed temporary name older versions used.
    let _ = std::fs::remove_file(path.with_extension("tmp"));
    let tmp = write_temporary(path, bytes)?;
    let renamed = std::fs::rename(&tmp, path);
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// `bytes` in a new file beside `path` (its directory created 0700), on
/// disk: the temporary file `path` is then linked or renamed from. Its name
/// is this write's own, so two processes writing at once never touch each
/// other's half-written file; `create_new` makes it a fresh 0600 file,
/// never an existing one or a link. Removed again when the write fails.
fn write_temporary(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let tmp = path.with_extension(format!("{}.{}.tmp", std::process::id(), hex::encode(nonce)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    match f.write_all(bytes).and_then(|()| f.sync_all()) {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700 (on unix), then
/// checks it as [`secure_dir`] does (an existing one open to others, e.g.
/// from an older version that created it 0755, is narrowed to 0700;
/// another user's is refused, and so is one in a config directory others
/// could rename it in).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        private_dir_with(dir, set_mode)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Sets `path`'s permission bits to `mode`.
#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// [`private_dir`], changing modes with `set_mode`.
#[cfg(unix)]
fn private_dir_with(
    dir: &Path,
    set_mode: impl Fn(&Path, u32) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    secure_dir(dir, set_mode)
}

/// Checks the existing `credentials` or `registrations` directory `dir`
/// before anything in it is read or written: the config directory holding
/// it first ([`trusted_parent`]: once others cannot rename what it holds,
/// `dir` is the one it names), then `dir` itself, this user's or root's.
/// One open to others is narrowed to 0700; if others (or a group not the
/// user's own) could write to it, what it held may have been swapped (one
/// server's file under another's name), so its tokens, keys and
/// registrations are removed (the next login makes them again; lock and
/// temporary files stay). Not narrowable: refused if others could write
/// to it, used with a warning if they can only read it (its files are
/// 0600).
#[cfg(unix)]
fn secure_dir(
    dir: &Path,
    set_mode: impl Fn(&Path, u32) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        trusted_parent(parent)?;
    }
    let meta = std::fs::metadata(dir)?;
    trusted_owner(dir, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let writable = mode & 0o002 != 0 || (mode & 0o020 != 0 && !private_group(&meta));
    match set_mode(dir, 0o700) {
        Ok(()) => {
            tracing::info!(
                dir = %dir.display(),
                old_mode = %format!("{mode:o}"),
                "credentials directory was open to others; narrowed to 0700"
            );
            if writable {
                let mut removed = 0;
                for entry in std::fs::read_dir(dir)?.flatten() {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    let ours = name.ends_with(".json") || name.ends_with(".pem");
                    if ours
                        && entry.file_type().is_ok_and(|t| !t.is_dir())
                        && std::fs::remove_file(entry.path()).is_ok()
                    {
                        removed += 1;
                    }
                }
                tracing::warn!(
                    dir = %dir.display(),
                    removed,
                    "the credentials directory was writable by others: what it held is not trusted and was removed"
                );
            }
            Ok(())
        }
        Err(e) if writable => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by group or others (mode {mode:o}) and cannot be narrowed to \
                 0700 ({e}): not keeping credentials there",
                dir.display()
            ),
        )),
        Err(e) => {
            // Readable by others only (or writable by the user's own
            // group): the files themselves are 0600.
            tracing::warn!(
                dir = %dir.display(),
                mode = %format!("{mode:o}"),
                error = %e,
                "credentials directory is open to others and cannot be narrowed to 0700"
            );
            Ok(())
        }
    }
}

/// Whether `meta`'s group is the user's own private group (a umask of 002
/// leaves directories writable by it, which is harmless): its id is the
/// user's and the user's primary group. A heuristic: it does not prove the
/// group has no other members.
#[cfg(unix)]
fn private_group(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let uid = rustix::process::geteuid().as_raw();
    meta.gid() == uid && meta.gid() == rustix::process::getegid().as_raw()
}

/// Refuses `path` (its metadata `meta`) unless this process's user owns it,
/// or root (who can read it anyway): whoever owns a directory can replace
/// what is in it, and whoever owns a file can rewrite it: a token of their
/// account (the user then works in it unaware) or a DPoP key they hold.
#[cfg(unix)]
fn trusted_owner(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = meta.uid();
    if owner == 0 || owner == rustix::process::geteuid().as_raw() {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "{} belongs to another user (uid {owner}): not using credentials kept there",
            path.display()
        ),
    ))
}

/// Refuses the directory `parent` holding the `credentials` or
/// `registrations` directory (the config directory) when someone else
/// could rename those: another user's (not root's), or writable by others
/// without the sticky bit (`/tmp` keeps others from renaming what is not
/// theirs), or by a group other than this user's own private group (a
/// umask of 002 leaves directories group-writable, which is harmless when
/// the group is the user's alone: its id is the user's and the user's
/// primary group). Never changed here: it may be `$HOME` or a shared
/// directory the user named in `MCP_AUTH_CLIENT_HOME`.
#[cfg(unix)]
fn trusted_parent(parent: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(parent)?;
    trusted_owner(parent, &meta)?;
    let mode = meta.permissions().mode();
    let sticky = mode & 0o1000 != 0;
    let others = mode & 0o002 != 0 && !sticky;
    let group = mode & 0o020 != 0 && !sticky && !private_group(&meta);
    if others || group {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by {} (mode {:o}): not using credentials kept there \
                 (chmod go-w it, or set MCP_AUTH_CLIENT_HOME to a directory of your own)",
                parent.display(),
                if others { "others" } else { "its group" },
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

/// The contents of a file of tokens, a registration or a DPoP key, read
/// only when neither it nor its directory could have been put there by
/// someone else: the directory checked by [`secure_dir`] first (what it
/// held is removed if others could write to it: `NotFound` then) and the
/// file this user's or root's, not writable by group or others. Otherwise
/// `PermissionDenied`, naming the path (never the contents).
pub(crate) fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // The directory first, whether or not the file is there: a write
    // would check it anyway, after a read that found nothing.
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        secure_dir(dir, set_mode)?;
    }
    let mut file = std::fs::File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The file opened, not the name (which may have changed since).
        let meta = file.metadata()?;
        trusted_owner(path, &meta)?;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is writable by group or others (mode {:o}): not using it (remove it \
                     and log in again)",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn store_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

#[async_trait]
impl CredentialStore for FileCredentialStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        match read_private(&self.path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec(&credentials).map_err(store_error)?;
        write_private(&self.path, &bytes).map_err(store_error)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.remove().map(|_| ()).map_err(store_error)
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        match self.lock(REFRESH_LOCK_WAIT).await {
            // Dropping the file releases the lock.
            Ok(file) => Ok(Some(CredentialRefreshGuard::new(file))),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(store_error(e)),
            Err(e) => {
                // A file system without locks (or a lock file that cannot
                // be created) should not stop the refresh itself.
                tracing::warn!(
                    file = %self.lock_path().display(),
                    error = %e,
                    "cannot lock the stored credentials; refreshing without the lock"
                );
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dir_skips_empty_variables() {
        fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
            let pairs: Vec<(String, OsString)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect();
            move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }
        }
        let home = [("HOME", "/h")];
        assert_eq!(
            config_dir_from(vars(&home)).unwrap(),
            Path::new("/h/.config/mcp-auth-client")
        );
        assert_eq!(
            config_dir_from(vars(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])).unwrap(),
            Path::new("/x/mcp-auth-client")
        );
        assert_eq!(
            config_dir_from(vars(&[
                ("MCP_AUTH_CLIENT_HOME", "/m"),
                ("XDG_CONFIG_HOME", "/x")
            ]))
            .unwrap(),
            Path::new("/m")
        );
        assert_eq!(
            config_dir_from(vars(&[
                ("MCP_AUTH_CLIENT_HOME", ""),
                ("XDG_CONFIG_HOME", ""),
                ("HOME", "/h"),
            ]))
            .unwrap(),
            Path::new("/h/.config/mcp-auth-client")
        );
        // None of them (or only empty ones): no directory, never `./`.
        for unset in [
            &[][..],
            &[
                ("MCP_AUTH_CLIENT_HOME", ""),
                ("XDG_CONFIG_HOME", ""),
                ("HOME", ""),
            ][..],
        ] {
            let e = config_dir_from(vars(unset)).unwrap_err();
            assert_eq!(e, ConfigDirError::Unset);
            let shown = e.to_string();
            for name in ["MCP_AUTH_CLIENT_HOME", "XDG_CONFIG_HOME", "HOME"] {
                assert!(shown.contains(name), "{shown}");
            }
        }
    }

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

    fn sample() -> StoredCredentials {
        StoredCredentials::new("client".into(), None, vec!["a".into()], Some(1))
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Issue #13: every directory created for credentials is 0700.
    #[cfg(unix)]
    #[tokio::test]
    async fn creates_directories_0700() {
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("config").join("mcp-auth-client");
        let credentials = config.join("credentials");
        let store = FileCredentialStore {
            path: credentials.join("x.json"),
        };
        store.save(sample()).await.unwrap();
        assert_eq!(mode(&home.path().join("config")), 0o700);
        assert_eq!(mode(&config), 0o700);
        assert_eq!(mode(&credentials), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }

    /// Issue #13: a `credentials` directory left 0755 by an older version
    /// is narrowed to 0700 at the next save; a leftover temporary file does
    /// not pass its mode on.
    #[cfg(unix)]
    #[test]
    fn concurrent_saves_never_rename_each_others_half_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let body = vec![b'a' + i; 64 * 1024];
                    for _ in 0..20 {
                        write_private(&path, &body).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 64 * 1024);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "a torn file");
    }

    #[tokio::test]
    async fn narrows_an_existing_credentials_directory() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let credentials = home.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = FileCredentialStore {
            path: credentials.join("x.json"),
        };
        let tmp = store.path().with_extension("tmp");
        std::fs::write(&tmp, b"stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.save(sample()).await.unwrap();
        assert_eq!(mode(&credentials), 0o700);
        assert_eq!(mode(store.path()), 0o600);
        assert!(!tmp.exists(), "the old fixed temporary name is cleaned up");
        let left: Vec<_> = std::fs::read_dir(&credentials)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            left.is_empty(),
            "no temporary file is left behind: {left:?}"
        );
        assert_eq!(store.load().await.unwrap().unwrap().client_id, "client");
    }

    /// The refresh lock excludes a second holder (another task here,
    /// another process alike) until the first is dropped.
    #[tokio::test]
    async fn the_refresh_lock_is_exclusive() {
        let home = tempfile::tempdir().unwrap();
        let store = FileCredentialStore::in_dir(home.path(), "http://a/mcp");
        let first = store.acquire_refresh_guard().await.unwrap();
        assert!(first.is_some());
        let again = store.lock(Duration::from_millis(100)).await;
        assert_eq!(
            again.unwrap_err().kind(),
            std::io::ErrorKind::TimedOut,
            "a second lock while the first is held"
        );
        drop(first);
        assert!(store.lock(Duration::from_millis(100)).await.is_ok());
        #[cfg(unix)]
        assert_eq!(mode(&store.lock_path()), 0o600);
    }

    /// The DPoP key: created at first use in a 0600 file next to the
    /// tokens (directory 0700), the same key for another store instance
    /// (the next run), removed by `remove` (logout).
    #[tokio::test]
    async fn the_dpop_key_is_private_reused_and_removed() {
        let home = tempfile::tempdir().unwrap();
        let store = FileCredentialStore::in_dir(home.path(), "http://a/mcp");
        assert_eq!(store.load_dpop_key().unwrap(), None);
        let key = store.dpop_key().unwrap();
        let path = store.dpop_key_path();
        assert_eq!(path.parent(), store.path().parent());
        assert!(path.to_string_lossy().ends_with(".dpop.pem"), "{path:?}");
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let again = FileCredentialStore::in_dir(home.path(), "http://a/mcp");
        assert_eq!(again.dpop_key().unwrap().thumbprint(), key.thumbprint());
        assert_eq!(
            again.load_dpop_key().unwrap().unwrap().thumbprint(),
            key.thumbprint()
        );
        // Another server, another key.
        let other = FileCredentialStore::in_dir(home.path(), "http://b/mcp");
        assert_ne!(other.dpop_key().unwrap().thumbprint(), key.thumbprint());
        // Logout removes the key even without tokens.
        assert!(store.remove().unwrap());
        assert!(!path.exists());
        assert!(!store.remove().unwrap());
        assert_ne!(store.dpop_key().unwrap().thumbprint(), key.thumbprint());
    }

    /// A file that holds no key is reported by `load_dpop_key` (naming the
    /// file, not its contents) and replaced by `dpop_key`.
    #[test]
    fn a_broken_dpop_key_file_is_replaced() {
        let home = tempfile::tempdir().unwrap();
        let store = FileCredentialStore::in_dir(home.path(), "http://a/mcp");
        write_private(&store.dpop_key_path(), b"not-a-key-secret").unwrap();
        let e = store.load_dpop_key().unwrap_err().to_string();
        assert!(
            e.contains(".dpop.pem") && !e.contains("not-a-key-secret"),
            "{e}"
        );
        let key = store.dpop_key().unwrap();
        assert_eq!(
            store.load_dpop_key().unwrap().unwrap().thumbprint(),
            key.thumbprint()
        );
    }

    /// Processes creating the key at once all end up with the one saved
    /// first.
    #[test]
    fn concurrent_first_uses_agree_on_one_key() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().to_owned();
        let thumbprints: Vec<String> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    FileCredentialStore::in_dir(&dir, "http://a/mcp")
                        .dpop_key()
                        .unwrap()
                        .thumbprint()
                        .to_owned()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(
            thumbprints.iter().all(|t| *t == thumbprints[0]),
            "{thumbprints:?}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.join("credentials"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn one_file_per_server() {
        let home = Path::new("/h");
        let a = FileCredentialStore::in_dir(home, "http://a/mcp");
        let b = FileCredentialStore::in_dir(home, "http://b/mcp");
        assert_ne!(a.path(), b.path());
    }

    /// A directory that group or others can write to and that cannot be
    /// narrowed (another owner's; the chmod fails here by stand-in, as
    /// the tests may run as root) is refused, naming it; one they can only
    /// read is used with a warning.
    #[cfg(unix)]
    #[test]
    fn a_writable_directory_that_cannot_be_narrowed_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("credentials");
        std::fs::create_dir(&dir).unwrap();
        let denied =
            |_: &Path, _: u32| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        // (A group not the user's own: the tests run as root, whose group
        // 0 counts as its own.)
        let _ = std::os::unix::fs::chown(&dir, None, Some(4242));
        for open in [0o777, 0o770, 0o702] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
            let e = private_dir_with(&dir, denied).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
            let shown = e.to_string();
            assert!(shown.contains(&dir.display().to_string()), "{shown}");
            assert!(shown.contains(&format!("{open:o}")), "{shown}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            private_dir_with(&dir, denied).is_ok(),
            "read-only for others"
        );
        // Narrowing that works: no error, 0700.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    /// A credentials directory, a config directory or a file of another
    /// user (not root) is refused, naming it, and so is a config directory
    /// others can write to without the sticky bit (an attack pass: a home
    /// another user owned served their account's token to whoever used
    /// it). Needs root to give files away (chown); the tests run as root.
    #[cfg(unix)]
    #[test]
    fn credentials_someone_else_could_have_put_there_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let owner_can_be_changed = {
            let probe = tempfile::tempdir().unwrap();
            std::os::unix::fs::chown(probe.path(), Some(4242), None).is_ok()
        };
        if !owner_can_be_changed {
            eprintln!("skipped: not root, cannot give files to another user");
            return;
        }
        let denied_kind = |r: std::io::Result<Vec<u8>>, names: &Path| {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains(&names.display().to_string()), "{e}");
        };
        let setup = || {
            let home = tempfile::tempdir().unwrap();
            let store = FileCredentialStore::in_dir(home.path(), "https://mcp.example/mcp");
            write_private(store.path(), b"{}").unwrap();
            (home, store)
        };
        // As written: read back.
        let (_home, store) = setup();
        assert_eq!(read_private(store.path()).unwrap(), b"{}");

        // The file another user's.
        let (_home, store) = setup();
        std::os::unix::fs::chown(store.path(), Some(4242), None).unwrap();
        denied_kind(read_private(store.path()), store.path());
        // ... or writable by others.
        let (_home, store) = setup();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        denied_kind(read_private(store.path()), store.path());

        // The credentials directory another user's: reading and writing refused.
        let (_home, store) = setup();
        let dir = store.path().parent().unwrap().to_owned();
        std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
        denied_kind(read_private(store.path()), &dir);
        let e = private_dir(&dir).unwrap_err();
        assert!(e.to_string().contains("belongs to another user"), "{e}");

        // The config directory another user's, or writable by others.
        let (home, store) = setup();
        std::os::unix::fs::chown(home.path(), Some(4242), None).unwrap();
        denied_kind(read_private(store.path()), home.path());
        assert!(private_dir(store.path().parent().unwrap()).is_err());
        // The config directory writable by others, or by a group not the
        // user's own: refused, and left as it is (it may be $HOME).
        let (home, store) = setup();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        denied_kind(read_private(store.path()), home.path());
        assert_eq!(mode(home.path()), 0o777, "not changed");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
        std::os::unix::fs::chown(home.path(), None, Some(4242)).unwrap();
        denied_kind(read_private(store.path()), home.path());
        // Group-writable by the user's private group (a umask of 002):
        // fine (the tests run as root: uid 0, primary group 0).
        std::os::unix::fs::chown(home.path(), None, Some(0)).unwrap();
        assert_eq!(read_private(store.path()).unwrap(), b"{}");
        // With the sticky bit (as /tmp): others cannot rename what is not
        // theirs.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(read_private(store.path()).unwrap(), b"{}");
        // The credentials directory this user's but writable by others (an
        // older version): narrowed, and what it held taken as absent.
        let (_home, store) = setup();
        let dir = store.path().parent().unwrap().to_owned();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = read_private(store.path()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            read_private(store.path()).unwrap_err().kind(),
            std::io::ErrorKind::NotFound,
            "removed, not trusted once narrowed"
        );
        // The same whatever comes first (a review: reading another
        // server's file, absent, or writing, kept what it held): what it
        // held goes, lock files stay.
        for first in ["read another", "write"] {
            let (home, store) = setup();
            let dir = store.path().parent().unwrap().to_owned();
            std::fs::write(dir.join("x.json.lock"), b"").unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let other = FileCredentialStore::in_dir(home.path(), "https://b.example/mcp");
            if first == "write" {
                write_private(other.path(), b"{}").unwrap();
            } else {
                assert!(read_private(other.path()).is_err());
            }
            assert_eq!(mode(&dir), 0o700, "{first}");
            assert!(!store.path().exists(), "{first}: kept what it held");
            assert!(dir.join("x.json.lock").exists(), "{first}: a lock file");
        }
        // Writable by the user's own private group (a umask of 002; the
        // tests run as root, group 0): narrowed, what it held kept.
        let (_home, store) = setup();
        let dir = store.path().parent().unwrap().to_owned();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(read_private(store.path()).unwrap(), b"{}");
        assert_eq!(mode(&dir), 0o700);
        // Another user's config directory: refused whatever its mode.
        let (home, store) = setup();
        std::os::unix::fs::chown(home.path(), Some(4242), None).unwrap();
        denied_kind(read_private(store.path()), home.path());
    }
}
