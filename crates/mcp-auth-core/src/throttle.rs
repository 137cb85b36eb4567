//! One log line a second at most for an event a client can repeat at will.
//!
//! ```
//! use mcp_auth_core::LogThrottle;
//! static LOG: LogThrottle = LogThrottle::new();
//! let mut lines = 0;
//! for _ in 0..1000 {
//!     if let Some(left_out) = LOG.admit() {
//!         // log here, saying `left_out` lines were left out since the last
//!         lines += 1;
//!         assert_eq!(left_out, 0);
//!     }
//! }
//! assert_eq!(lines, 1);
//! ```

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Admits one log line a second; the lines left out are counted and
/// reported with the next one admitted. For warnings a client can cause
/// on every request (a failed login, a credential in the query string):
/// without it, each request is a line in the operator's log.
pub struct LogThrottle {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// A throttle that admits its first line.
    pub const fn new() -> Self {
        Self {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log now (`n` lines were left out since the last);
    /// `None`: leave this one out.
    pub fn admit(&self) -> Option<u64> {
        if let Ok(mut last) = self.last.try_lock()
            && last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            *last = Some(Instant::now());
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new()
    }
}
