//! Log lines a client cannot stretch or split: each field's value is cut
//! at [`MAX_FIELD_CHARS`] characters, and control characters (newlines,
//! terminal escapes), line and paragraph separators and bidirectional
//! controls are written escaped. Otherwise as tracing-subscriber's default
//! format writes fields (`message` first and bare, `name=value`, an
//! error's sources, the `log` crate's metadata left out).
//!
//! ```text
//! received notification notification=CustomNotification { method: "x", params: Some(Object {"p": String("aaaa…(cut)
//! ```
//!
//! What rmcp logs carries what clients send (a notification at `info`, the
//! error of a request with its method name at `warn`): one request with a
//! body-sized value would write a body-sized line, each time it is sent.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, format::Writer},
};

/// The most characters of one field's value a log line shows.
pub(crate) const MAX_FIELD_CHARS: usize = 1024;

/// The fields of a log line, each value clipped and escaped (see the
/// [module docs](self)).
pub(crate) struct ClippedFields;

impl<'w> FormatFields<'w> for ClippedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Fields {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Fields<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // As the default format shows a string field: quoted, but for the
        // message.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            None => self.record_debug(field, &format_args!("{value}")),
            Some(first) => {
                let name = field.name();
                let sources = Sources(first);
                self.record_debug(field, &format_args!("{value} {name}.sources=[{sources}]"));
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // The `log` crate's metadata, shown by the line itself.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            self.writer.write_str(separator)
        } else {
            write!(self.writer, "{separator}{name}=")
        };
        if self.result.is_err() {
            return;
        }
        let mut clip = Clip {
            out: &mut self.writer,
            shown: 0,
            cut: false,
            failed: false,
        };
        // A value longer than the limit stops its formatting with an error,
        // so a huge value is not rendered whole first.
        let _ = write!(clip, "{value:?}");
        let (cut, failed) = (clip.cut, clip.failed);
        if failed {
            self.result = Err(fmt::Error);
        } else if cut {
            self.result = self.writer.write_str("…(cut)");
        }
    }
}

/// An error's sources, `a, b, …`, written as they are formatted (so cut
/// like any value, never rendered whole first).
struct Sources<'e>(&'e (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut next = Some(self.0);
        let mut first = true;
        while let Some(e) = next {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// Writes a value's text to the line as it is formatted, escaped, and
/// stops it (with an error) past [`MAX_FIELD_CHARS`] characters.
struct Clip<'a, 'w> {
    out: &'a mut Writer<'w>,
    shown: usize,
    /// Whether the value went on past the limit.
    cut: bool,
    /// Whether writing to the line itself failed.
    failed: bool,
}

impl fmt::Write for Clip<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.shown >= MAX_FIELD_CHARS {
                self.cut = true;
                return Err(fmt::Error);
            }
            let written = if escaped(c) {
                write!(self.out, "{}", c.escape_default())
            } else {
                self.out.write_char(c)
            };
            if written.is_err() {
                self.failed = true;
                return written;
            }
            self.shown += 1;
        }
        Ok(())
    }
}

/// `s` as a log line shows a field: escaped, and cut past
/// [`MAX_FIELD_CHARS`] characters (for text that did not come through
/// `tracing`, such as the one-line error the server ends with).
pub(crate) fn clipped(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_FIELD_CHARS {
            out.push_str("…(cut)");
            break;
        }
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters written as `\u{…}`: controls (a newline would start a
/// line of the client's making, an escape sequence drive a terminal),
/// line and paragraph separators, and the bidirectional controls (which
/// make a line read otherwise than it is).
fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logs, through the server's format.
    fn logged(f: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(ClippedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// An error "outer" caused by `E`.
    #[derive(Debug)]
    struct Outer<E>(E);

    impl<E> fmt::Display for Outer<E> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }

    impl<E: std::error::Error + 'static> std::error::Error for Outer<E> {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn long_values_are_cut_and_control_characters_escaped() {
        let huge = "a".repeat(50_000);
        let params = vec![huge.clone(); 3];
        let error = Outer(std::io::Error::other("the cause"));
        let out = logged(|| {
            tracing::warn!(method = %huge, ?params, "response error");
            tracing::info!(name = "x\ny\u{1b}[31m", "two\nlines");
            tracing::info!(id = %"a\u{2028}b\u{202e}c", error = &error as &(dyn std::error::Error + 'static), message = "bare");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[2]
                .contains(r#"id=a\u{2028}b\u{202e}c error=outer error.sources=[the cause] bare"#),
            "{}",
            lines[2]
        );
        assert!(lines[0].len() < 3 * MAX_FIELD_CHARS, "{}", lines[0].len());
        assert!(
            lines[0].contains("response error method=aaa"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("…(cut)"), "{}", lines[0]);
        assert!(
            lines[1].contains(r#"two\nlines name="x\ny\u{1b}[31m""#),
            "{}",
            lines[1]
        );
        assert!(!out.contains('\u{1b}'));
    }

    /// An error whose source writes a megabyte is cut like any value, and
    /// the source is not rendered whole first: formatting stops at the
    /// limit (counted here by the bytes the source was asked to write).
    #[test]
    fn an_errors_sources_are_cut_as_they_are_written() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static WRITTEN: AtomicUsize = AtomicUsize::new(0);
        #[derive(Debug)]
        struct Huge;
        impl fmt::Display for Huge {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..1_000 {
                    WRITTEN.fetch_add(1024, Ordering::SeqCst);
                    f.write_str(&"s".repeat(1024))?;
                }
                Ok(())
            }
        }
        impl std::error::Error for Huge {}
        let out = logged(|| {
            tracing::warn!(
                error = &Outer(Huge) as &(dyn std::error::Error + 'static),
                "failed"
            );
        });
        assert!(out.len() < 2 * MAX_FIELD_CHARS, "{}", out.len());
        assert!(out.contains("error=outer error.sources=[sss"), "{out}");
        assert!(WRITTEN.load(Ordering::SeqCst) <= 2 * 1024, "rendered whole");
    }
}
