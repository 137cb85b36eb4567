//! The stdio transport's input, bounded: rmcp reads a line of up to 16 MiB
//! and holds it as trees of values (an attack pass: one line of `[0,0,…]`
//! took 1.8 GB). Here a line is at most [`MAX_LINE`] bytes and holds at
//! most as many JSON values as an HTTP body within the same limit; a line
//! over either is replaced by `{}`, which rmcp answers with an "invalid
//! request" error (rmcp drops an over-long line without a word, and the
//! caller would wait for an answer forever).
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
    /// Bytes read, not yet a whole line.
    pending: Vec<u8>,
    /// How much of `pending` holds no newline.
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
    /// Lines of `inner` of at most `max_line` bytes.
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            max_line,
            pending: Vec::new(),
            scanned: 0,
            ready: Vec::new(),
            ready_at: 0,
            dropping: false,
            eof: false,
        }
    }

    /// Moves the first whole line of `pending`, if any, to `ready` (or what
    /// replaces it); drops what an over-long line has so far.
    fn take_line(&mut self) -> bool {
        let newline = self
            .pending
            .get(self.scanned..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == b'\n');
        match newline {
            Some(at) => {
                let end = self.scanned + at;
                self.scanned = 0;
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let refused = std::mem::take(&mut self.dropping)
                    || line.len() > self.max_line
                    || mcp_auth_transport::too_many_json_values(&line, self.max_line);
                if refused {
                    tracing::warn!(
                        bytes = line.len(),
                        "stdio: a message over the size or value limit was refused"
                    );
                    self.ready = REFUSED.to_vec();
                } else {
                    self.ready = line;
                }
                self.ready_at = 0;
                true
            }
            None => {
                self.scanned = self.pending.len();
                if self.pending.len() > self.max_line {
                    self.pending.clear();
                    self.scanned = 0;
                    self.dropping = true;
                }
                false
            }
        }
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
                // A last line without its newline: passed on as read (rmcp
                // takes only whole lines), unless it was too long.
                let last = std::mem::take(&mut this.pending);
                this.scanned = 0;
                if !this.dropping
                    && !last.is_empty()
                    && !mcp_auth_transport::too_many_json_values(&last, this.max_line)
                {
                    this.ready = last;
                    this.ready_at = 0;
                    continue;
                }
                return Poll::Ready(Ok(()));
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
        let input = b"{\"id\":1}\n{\"id\":2}\r\n\n{\"id\":3}";
        assert_eq!(through(input, 64).await, input);
    }

    #[tokio::test]
    async fn a_line_too_long_or_with_too_many_values_becomes_an_empty_object() {
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
        // Over-long and unfinished at the end: nothing.
        assert_eq!(through(&line, 4096).await, b"");
    }
}
