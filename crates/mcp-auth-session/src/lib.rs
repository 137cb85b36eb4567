//! Session policy for authenticated MCP servers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use mcp_auth_session::{MemoryStore, SessionLimits, SessionStore, Reserve};
//!
//! let store = MemoryStore::new();
//! let limits = SessionLimits { max_sessions: 2, ..SessionLimits::default() };
//! // A slot is reserved before the session exists, then committed under its id.
//! let Reserve::Granted(ticket) = store.reserve(Some("alice"), &limits).await.unwrap() else { panic!() };
//! store.commit(&ticket, "sid-1", Some("alice"), &limits).await.unwrap();
//! assert_eq!(store.lookup("sid-1", &limits).await.unwrap().unwrap().owner.as_deref(), Some("alice"));
//! store.end("sid-1").await.unwrap();
//! assert!(store.lookup("sid-1", &limits).await.unwrap().is_none());
//! # }
//! ```
//!
//! - [`SessionPolicy`]: may a client open a session without credentials, and
//!   operate in one? (`MCP_SESSION_AUTH_*`; both "no" by default.)
//! - [`SessionLimits`]: global, per-principal and anonymous caps, idle expiry.
//! - [`SessionStore`]: where sessions, their owners, rmcp's session state and
//!   rate counters live: [`MemoryStore`] for one process, `RedisStore`
//!   (feature `redis`) for replicas sharing one deployment. Every operation
//!   that admits a session is atomic, so caps hold across replicas. It
//!   also keeps a small key-value space with expiry (`kv_put`, `kv_put_new`,
//!   `kv_take`, ...: see [`SessionStore`]'s "Key-value space"), for state
//!   that must reach every replica, such as single-use authorization codes.
//!
//! The HTTP side (binding sessions to principals, answering 401/404/429/503)
//! is `mcp-auth-transport`'s `SessionLayer`.

mod cached;
mod memory;
mod metered;
mod policy;
#[cfg(feature = "redis")]
mod redis_store;
mod shared;
mod store;

pub use cached::{CACHE_CAPACITY, DEFAULT_CACHE_TTL, cached};
pub use memory::{DEFAULT_KV_MAX_BYTES, DEFAULT_KV_MAX_ENTRIES, MemoryStore};
pub use metered::metered;

/// Every variable this crate reads (`SessionPolicy`, `SessionLimits` and
/// `store_from_settings`).
pub const VARIABLES: &[&str] = &[
    "MCP_SESSION_STORE",
    "MCP_SESSION_CACHE_MS",
    "MCP_SESSION_AUTH_ENABLED",
    "MCP_SESSION_AUTH_REQUIRE_FOR_SESSION",
    "MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS",
    "HTTP_MAX_CONCURRENT_SESSIONS",
    "MCP_MAX_SESSIONS_PER_PRINCIPAL",
    "MCP_MAX_SESSIONS_PER_SUBJECT",
    "MCP_MAX_ANONYMOUS_SESSIONS",
    "HTTP_SESSION_TIMEOUT",
    "HTTP_SESSION_CLEANUP_INTERVAL",
];
pub use policy::{SessionLimits, SessionPolicy, owner_of, owner_parts, session_owner, subject_of};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use shared::{StoreReplayCache, shared_secret};
pub use store::{
    Bind, Ending, ExpiredSession, Full, KV_MAX_TTL, Reserve, SessionRecord, SessionStore,
    SharedStore, StoreError, Ticket, store_from_settings,
};
