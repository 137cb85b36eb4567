//! State in the store that every replica shares: DPoP replay records
//! ([`StoreReplayCache`]) and secrets made once for all
//! ([`shared_secret`]).
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use mcp_auth_core::ReplayCache;
//! use mcp_auth_session::{MemoryStore, SharedStore, StoreReplayCache, shared_secret};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store: SharedStore = Arc::new(MemoryStore::new());
//! let replay = StoreReplayCache::new(store.clone());
//! assert!(replay.first_use("proof-1", Duration::from_secs(60)).await.unwrap());
//! assert!(!replay.first_use("proof-1", Duration::from_secs(60)).await.unwrap());
//!
//! // The first caller makes the secret; every later one (any replica) gets it.
//! let a = shared_secret(&*store, "dpop:nonce-key", Duration::from_secs(3600)).await.unwrap();
//! let b = shared_secret(&*store, "dpop:nonce-key", Duration::from_secs(3600)).await.unwrap();
//! assert_eq!(a, b);
//! # }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use mcp_auth_core::ReplayCache;

use crate::{SessionStore, SharedStore, StoreError};

/// A [`ReplayCache`] in the session store's key-value space: with Redis,
/// every replica refuses a proof any replica has seen.
#[derive(Clone)]
pub struct StoreReplayCache {
    store: SharedStore,
}

impl std::fmt::Debug for StoreReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReplayCache")
            .field("store", &self.store.describe())
            .finish()
    }
}

impl StoreReplayCache {
    /// Replay records in `store`.
    pub fn new(store: SharedStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ReplayCache for StoreReplayCache {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        self.store
            .kv_put_new(&format!("replay:{key}"), b"1", ttl)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A 32-byte random secret under the key-value key `name` that every
/// replica sharing `store` agrees on: the first to ask makes it
/// (insert-if-absent), later callers read it. It lives `ttl`; a caller
/// after that makes a new one.
pub async fn shared_secret(
    store: &dyn SessionStore,
    name: &str,
    ttl: Duration,
) -> Result<[u8; 32], StoreError> {
    let key = name;
    let mut fresh = [0u8; 32];
    let failed = |reason: String| StoreError {
        store: store.describe(),
        reason,
    };
    getrandom::fill(&mut fresh).map_err(|e| failed(format!("no random bytes: {e}")))?;
    store.kv_put_new(key, &fresh, ttl).await?;
    let stored = store
        .kv_get(key)
        .await?
        .ok_or_else(|| failed(format!("the shared secret {name} vanished")))?;
    <[u8; 32]>::try_from(stored.as_slice())
        .map_err(|_| failed(format!("the shared secret {name} is not 32 bytes")))
}
