//! Helpers shared by the fuzz targets (each target includes this module).

#![allow(dead_code)]

use std::{future::Future, sync::LazyLock};

/// Runs a future on one current-thread runtime, created once per process.
pub fn block_on<F: Future>(f: F) -> F::Output {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime")
    });
    RT.block_on(f)
}

/// Splits the input at NUL bytes. NUL never occurs in header values, JSON
/// text, host names or settings, so it is a safe field separator for seeds
/// written by hand.
pub fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0).collect()
}

/// The input as text, replacing invalid UTF-8 (what a `&str` API would see
/// after a lossy conversion).
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
