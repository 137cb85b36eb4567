//! Reading settings by their documented variable names.
//!
//! ```
//! use std::collections::HashMap;
//! use mcp_auth_core::settings::{Lookup, parse_bool};
//!
//! let vars = HashMap::from([("HTTP_ENABLE_CORS".to_owned(), "yes".to_owned())]);
//! assert_eq!(parse_bool(&vars, "HTTP_ENABLE_CORS", false).unwrap(), true);
//! let err = parse_bool(&HashMap::from([("X".to_owned(), "maybe".to_owned())]), "X", false).unwrap_err();
//! assert_eq!(err.to_string(), "X: expected true or false, got \"maybe\"");
//! ```
//!
//! Each crate reads its own variables through a [`Lookup`] (the environment,
//! a merged map of `.env`, TOML and flags, or a test map) so an error can name
//! the variable at fault: `MCP_API_KEYS: ...`.

use std::{collections::HashMap, time::Duration};

/// A source of settings keyed by variable name.
pub trait Lookup {
    /// The value of `name`, if set. Empty values count as unset.
    fn get(&self, name: &str) -> Option<String>;
}

impl Lookup for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Lookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

/// A setting with a bad value. Displays as `NAME: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The variable (or flag) at fault.
    pub variable: String,
    /// What is wrong with it. Never contains a secret value.
    pub message: String,
}

impl ConfigError {
    /// A new error for `variable`.
    pub fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            message: message.into(),
        }
    }
}

/// Reads a boolean (`true/false`, `1/0`, `yes/no`, `on/off`).
pub fn parse_bool(l: &dyn Lookup, name: &str, default: bool) -> Result<bool, ConfigError> {
    match l.get(name) {
        None => Ok(default),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(
                name,
                format!("expected true or false, got {v:?}"),
            )),
        },
    }
}

/// Reads a duration given in milliseconds (the seeds' convention). Zero is
/// refused: a zero timeout or interval is always a mistake.
pub fn parse_millis(
    l: &dyn Lookup,
    name: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match l.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => Err(ConfigError::new(
                name,
                "must be greater than 0 (milliseconds)",
            )),
            Ok(ms) => Ok(Duration::from_millis(ms)),
            Err(_) => Err(ConfigError::new(
                name,
                format!("expected a whole number of milliseconds, got {v:?}"),
            )),
        },
    }
}

/// Reads a size: plain bytes, or a number with `b`, `kb`, `mb` or `gb`
/// (binary multiples, case-insensitive), e.g. `10mb`, `64kb`, `4096`.
pub fn parse_size(l: &dyn Lookup, name: &str, default: usize) -> Result<usize, ConfigError> {
    let Some(v) = l.get(name) else {
        return Ok(default);
    };
    let lower = v.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mult: usize = match unit.trim() {
        "" | "b" => 1,
        "kb" | "k" | "kib" => 1 << 10,
        "mb" | "m" | "mib" => 1 << 20,
        "gb" | "g" | "gib" => 1 << 30,
        _ => {
            return Err(ConfigError::new(
                name,
                format!("expected a size like 10mb, 64kb or 4096, got {v:?}"),
            ));
        }
    };
    let n: usize = num.parse().map_err(|_| {
        ConfigError::new(
            name,
            format!("expected a size like 10mb, 64kb or 4096, got {v:?}"),
        )
    })?;
    match n.checked_mul(mult) {
        Some(0) => Err(ConfigError::new(name, "must be greater than 0")),
        Some(bytes) => Ok(bytes),
        None => Err(ConfigError::new(name, format!("{v:?} is too large"))),
    }
}

/// Parses a lifetime: `90s`, `30m`, `1h`, `7d` or plain seconds, above zero.
/// `var` names the setting in the error.
///
/// ```
/// use std::time::Duration;
/// use mcp_auth_core::settings::parse_lifetime;
/// assert_eq!(parse_lifetime("30m", "X").unwrap(), Duration::from_secs(1800));
/// assert_eq!(parse_lifetime("90", "X").unwrap(), Duration::from_secs(90));
/// assert!(parse_lifetime("1w", "X").is_err());
/// ```
pub fn parse_lifetime(v: &str, var: &str) -> Result<Duration, ConfigError> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let bad = || {
        ConfigError::new(
            var,
            format!("expected a lifetime like 90s, 30m, 1h or 7d, got {v:?}"),
        )
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(ConfigError::new(var, "must be greater than 0"));
    }
    Ok(Duration::from_secs(secs))
}

/// Reads a comma-separated list; items are trimmed and empty items dropped.
pub fn parse_list(l: &dyn Lookup, name: &str) -> Option<Vec<String>> {
    l.get(name).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sizes() {
        let m = map(&[
            ("A", "10mb"),
            ("B", "64KB"),
            ("C", "4096"),
            ("D", "12 parsecs"),
            ("E", "0"),
            ("F", "99999999999999999999gb"),
            ("G", "1 gb"),
        ]);
        assert_eq!(parse_size(&m, "A", 1).unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size(&m, "B", 1).unwrap(), 64 * 1024);
        assert_eq!(parse_size(&m, "C", 1).unwrap(), 4096);
        assert_eq!(parse_size(&m, "G", 1).unwrap(), 1 << 30);
        assert_eq!(parse_size(&m, "Z", 7).unwrap(), 7);
        assert!(
            parse_size(&m, "D", 1)
                .unwrap_err()
                .to_string()
                .starts_with("D: ")
        );
        assert!(parse_size(&m, "E", 1).is_err());
        assert!(parse_size(&m, "F", 1).is_err());
    }

    #[test]
    fn millis_and_lists() {
        let m = map(&[("T", "1500"), ("Z", "0"), ("X", "1.5s"), ("L", " a, ,b ,")]);
        assert_eq!(
            parse_millis(&m, "T", Duration::ZERO).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_millis(&m, "Z", Duration::ZERO).is_err());
        assert!(parse_millis(&m, "X", Duration::ZERO).is_err());
        assert_eq!(parse_list(&m, "L").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_list(&m, "NONE"), None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let m = map(&[("E", "  ")]);
        assert_eq!(Lookup::get(&m, "E"), None);
        assert!(parse_bool(&m, "E", true).unwrap());
    }
}
