//! The stdio transport's input, bounded: rmcp reads a line of up to 16 MiB
//! and holds it as trees of values (an attack pass: one line of `[0,0,…]`
//! took 1.8 GB). Here a line is at most [`MAX_LINE`] bytes and holds at
//! most as many JSON values as an HTTP body within the same limit; a line
//! over either, or not UTF-8 (JSON is, RFC 8259 §8.1), is replaced by
//! `{}`, which rmcp answers with an "invalid request" error (rmcp drops an
//! over-long line or one with invalid UTF-8 in a string without a word,
//! and the caller would wait for an answer forever).
//!
//! ```text
//! {"jsonrpc":"2.0","id":1,"method":"ping"}\n   -> passed on as it is
//! [0,0,0,… 100 000 values …]\n                   -> {}\n
//! ```

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, ReadBuf};

/// The longest line taken: the HTTP body limit's default (4 MiB).
pub const MAX_LINE: usize = mcp_auth_transport::DEFAULT_MAX_REQUEST_BYTES;

/// What a refused line becomes.
const REFUSED: &[u8] = b"{}\n";

/// Lines of `inner`, each passed on whole once complete, or refused.
pub struct BoundedLines<R> {
    inner: R,
    max_line: usize,
    /// Bytes read; those before `start` are passed on already.
    pending: Vec<u8>,
    start: usize,
    /// Where the search for the next newline goes on (`pending` holds none
    /// between `start` and here).
    scanned: usize,
    /// Bytes ready for the reader, from `ready_at` on.
    ready: Vec<u8>,
    ready_at: usize,
    /// Inside a line already over `max_line`: its bytes are dropped up to
    /// its end.
    dropping: bool,
    eof: bool,
}

impl<R> BoundedLines<R> {
    /// Lines of `inner` of at most `max_line` bytes (not counting the line
    /// end, `\n` or `\r\n`).
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            max_line,
            pending: Vec::new(),
            start: 0,
            scanned: 0,
            ready: Vec::new(),
            ready_at: 0,
            dropping: false,
            eof: false,
        }
    }

    /// Moves the next whole line of `pending`, if any, to `ready` (or what
    /// replaces it); drops what an over-long line has so far. Each byte is
    /// looked at once, and lines are not moved within `pending` (a stream
    /// of empty lines cost time quadratic in a chunk: a review).
    fn take_line(&mut self) -> bool {
        let from = self.scanned.max(self.start);
        let newline = self
            .pending
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == b'\n');
        let Some(at) = newline else {
            self.scanned = self.pending.len();
            // (A `\r` may still come before the newline.)
            if self.pending.len() - self.start > self.max_line + 1 {
                self.pending.clear();
                (self.start, self.scanned) = (0, 0);
                self.dropping = true;
            }
            return false;
        };
        let end = from + at + 1;
        let line = self.pending.get(self.start..end).unwrap_or_default();
        (self.start, self.scanned) = (end, end);
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let refused = std::mem::take(&mut self.dropping)
            || text.len() > self.max_line
            || std::str::from_utf8(text).is_err()
            || mcp_auth_transport::too_many_json_values(text, self.max_line);
        self.ready.clear();
        if refused {
            tracing::warn!(
                bytes = line.len(),
                "stdio: a message over the size or value limit, or not UTF-8, was refused"
            );
            self.ready.extend_from_slice(REFUSED);
        } else {
            self.ready.extend_from_slice(line);
        }
        self.ready_at = 0;
        true
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for BoundedLines<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                return Poll::Ready(Ok(()));
            }
            if this.take_line() {
                continue;
            }
            if this.eof {
                // A last line without its end is ended here, and then
                // passed on or refused as any line (rmcp's line reader
                // takes only ended lines; the server's stdio answered such
                // a line before this reader, and still does).
                if this.dropping {
                    this.dropping = false;
                    this.pending.clear();
                    (this.start, this.scanned) = (0, 0);
                    tracing::warn!("stdio: a message over the size limit was refused");
                    this.ready.clear();
                    this.ready.extend_from_slice(REFUSED);
                    this.ready_at = 0;
                    continue;
                }
                if this.pending.len() > this.start {
                    this.pending.push(b'\n');
                    continue;
                }
                this.pending.clear();
                (this.start, this.scanned) = (0, 0);
                return Poll::Ready(Ok(()));
            }
            // What was passed on goes before more is read.
            if this.start > 0 {
                this.pending.drain(..this.start);
                this.scanned -= this.start;
                this.start = 0;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            } else {
                this.pending.extend_from_slice(read.filled());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn through(input: &[u8], max_line: usize) -> Vec<u8> {
        let mut out = Vec::new();
        BoundedLines::new(input, max_line)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn lines_within_the_limits_pass_unchanged() {
        let input = b"{\"id\":1}\n{\"id\":2}\r\n\n{\"id\":3}\n";
        assert_eq!(through(input, 64).await, input);
        // The limit is the message's, without its line end.
        let exact = format!("{{\"x\":\"{}\"}}", "a".repeat(92));
        assert_eq!(exact.len(), 100);
        for end in ["\n", "\r\n"] {
            let line = format!("{exact}{end}");
            assert_eq!(through(line.as_bytes(), 100).await, line.as_bytes());
            let over = format!("{exact} {end}");
            assert_eq!(through(over.as_bytes(), 100).await, b"{}\n");
        }
        // Many lines in one chunk, each passed on.
        let empties = vec![b'\n'; 100_000];
        assert_eq!(through(&empties, 64).await, empties);
        // A last line without its end is passed on, ended, or refused as
        // any line.
        assert_eq!(
            through(b"{\"id\":1}\n{\"id\":2}", 64).await,
            b"{\"id\":1}\n{\"id\":2}\n"
        );
        let many = format!("[{}0]", "0,".repeat(1100));
        assert_eq!(through(many.as_bytes(), 8192).await, b"{}\n");
    }

    #[tokio::test]
    async fn a_line_too_long_with_too_many_values_or_not_utf8_becomes_an_empty_object() {
        let long = format!("{{\"id\":1,\"x\":\"{}\"}}\n", "a".repeat(200));
        let input = format!("{{\"id\":0}}\n{long}{{\"id\":2}}\n");
        assert_eq!(
            through(input.as_bytes(), 100).await,
            b"{\"id\":0}\n{}\n{\"id\":2}\n"
        );
        // Values: at least 1 024 are always allowed, here the limit.
        let many = format!("[{}0]\n", "0,".repeat(1100));
        let input = format!("{many}{{\"id\":2}}\n");
        assert_eq!(through(input.as_bytes(), 8192).await, b"{}\n{\"id\":2}\n");
        let fine = format!("[{}0]\n", "0,".repeat(1000));
        assert_eq!(through(fine.as_bytes(), 8192).await, fine.as_bytes());
        // Not UTF-8.
        assert_eq!(
            through(b"{\"id\":1,\"x\":\"\xff\"}\n{\"id\":2}\n", 64).await,
            b"{}\n{\"id\":2}\n"
        );
    }

    #[tokio::test]
    async fn an_over_long_line_costs_at_most_the_limit_and_a_chunk() {
        // Read in chunks: what is kept never passes the limit and a chunk.
        let line = vec![b'x'; 1 << 20];
        let mut input = line.clone();
        input.extend_from_slice(b"\n{\"id\":2}\n");
        let mut r = BoundedLines::new(&input[..], 4096);
        let mut out = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            assert!(
                r.pending.capacity() <= 4096 + 2 * 8192,
                "{}",
                r.pending.capacity()
            );
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(out, b"{}\n{\"id\":2}\n");
        // Over-long and unfinished at the end: refused as any line, however
        // long.
        assert_eq!(through(&line, 4096).await, b"{}\n");
        assert_eq!(through(&line[..4097], 4096).await, b"{}\n");
    }
}
