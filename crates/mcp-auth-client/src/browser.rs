//! Opening the authorization URL in a browser.

use std::process::{Command, Stdio};

/// Opens `url` with `$BROWSER` (its first `:`-separated entry), else the
/// desktop's opener (`xdg-open`, `open`). Returns whether a browser was
/// started; the caller prints the URL either way so a person can copy it.
pub fn open_browser(url: &str) -> bool {
    let candidates: Vec<String> = match std::env::var("BROWSER") {
        Ok(b) if !b.trim().is_empty() => b.split(':').map(str::to_owned).collect(),
        _ => vec!["xdg-open".to_owned(), "open".to_owned()],
    };
    for cmd in candidates {
        let spawned = Command::new(cmd.trim())
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if spawned.is_ok() {
            return true;
        }
    }
    false
}
