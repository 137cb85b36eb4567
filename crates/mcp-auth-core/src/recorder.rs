//! Whether a global `metrics` recorder is installed, one flag for every
//! crate of the workspace.
//!
//! ```
//! use std::sync::OnceLock;
//! use mcp_auth_core::recorder;
//!
//! // How a crate records a series on every request: the handle (here a
//! // string stands in for a `metrics` counter) is kept once the global
//! // recorder is installed, and looked up each time before.
//! fn handle() -> String {
//!     static KEPT: OnceLock<String> = OnceLock::new();
//!     let lookup = || "looked up".to_owned();
//!     match recorder::installed() {
//!         true => KEPT.get_or_init(lookup).clone(),
//!         false => lookup(),
//!     }
//! }
//! // Nobody said a global recorder is installed: nothing is kept.
//! assert!(!recorder::installed());
//! assert_eq!(handle(), "looked up");
//! // Whoever installs it calls `recorder::mark_installed()` right after
//! // `metrics::set_global_recorder(..)` succeeded, never before.
//! ```
//!
//! The `metrics` facade finds the handle of a series (a counter with its
//! labels) by hashing its key and looking it up in the recorder's
//! registry, on every call of its macros. A series recorded on every
//! request can look its handle up once and keep it, but only once the
//! global recorder is installed: a handle taken before that belongs to the
//! no-op recorder (or to a test's local one) and would count nothing
//! forever. The global recorder cannot be replaced once set, so a handle
//! taken after [`mark_installed`] stays valid.
//! `mcp_auth_transport::observe::PrometheusMetrics::install` marks it;
//! whoever installs another recorder calls [`mark_installed`] after it
//! (`mcp_auth_transport::observe::enable` does).

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Says that a global `metrics` recorder is installed (call it after
/// `metrics::set_global_recorder` succeeded, never before).
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Release);
}

/// Whether [`mark_installed`] was called: handles of the `metrics` facade
/// may then be kept.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// Runs `f` with the handle of a series: the one kept in `slot` (made by
/// `lookup` the first time) once a global recorder is [`installed`], a
/// fresh `lookup()` before (which a thread-local recorder sees). The one
/// rule every crate's per-request series follow.
///
/// ```
/// use std::sync::OnceLock;
/// use mcp_auth_core::recorder;
///
/// static KEPT: OnceLock<String> = OnceLock::new();
/// let mut seen = String::new();
/// recorder::with_kept(&KEPT, || "looked up".to_owned(), |h| seen = h.clone());
/// assert_eq!(seen, "looked up");
/// assert!(KEPT.get().is_none(), "nothing kept before the recorder is installed");
/// ```
pub fn with_kept<T>(slot: &OnceLock<T>, lookup: impl FnOnce() -> T, f: impl FnOnce(&T)) {
    if installed() {
        f(slot.get_or_init(lookup));
    } else {
        f(&lookup());
    }
}
