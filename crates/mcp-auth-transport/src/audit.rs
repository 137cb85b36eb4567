//! The audit log: one JSON line per authentication and authorization
//! decision (and per session start and end), each carrying the SHA-256 of
//! the line before it, so an edited or deleted record breaks the chain
//! ([`verify_chain`] names the first broken one).
//!
//! ```
//! use std::sync::Arc;
//! use mcp_auth_transport::audit::{AuditLog, AuditRecord, AuditSink, verify_chain};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("audit.jsonl");
//! let log = AuditLog::open(path.to_str().unwrap()).unwrap();
//! for subject in ["alice", "bob"] {
//!     let mut record = AuditRecord::new("request", "allow", 200);
//!     record.subject = Some(subject.into());
//!     log.record(record);
//! }
//! log.flush();
//! let report = verify_chain(&[path.clone()]).unwrap();
//! assert_eq!(report.records, 2);
//!
//! // Edit a record: the chain breaks at the record after it, which names it.
//! let text = std::fs::read_to_string(&path).unwrap().replacen("alice", "mallory", 1);
//! std::fs::write(&path, text).unwrap();
//! let err = verify_chain(&[path]).unwrap_err();
//! assert_eq!(err.line, 1);
//! ```
//!
//! [`McpHttpApp::with_audit`](crate::McpHttpApp::with_audit) has the layer
//! in front of the protected routes that counts and traces each request
//! write its record too (one layer for both); [`AuditLayer`] writes the same
//! records as a layer of its own, for a stack assembled by hand. A record
//! holds the request id (the client's `X-Request-Id` when it is a plain
//! token, else a new one, echoed on the response), the decision and why
//! (the refusal's `error` and `error_description`), the principal's
//! non-secret identifiers (strategy, subject, client id, issuer, an API
//! key's fingerprint), the JSON-RPC method and tool, the scopes the tool
//! required and those held, the session id, and the peer address after the
//! trusted-proxy rules. Never a token, a key or a secret.
//!
//! [`AuditLog`] appends to a file (or stdout) from its own thread: a record
//! is encoded as it is handed over, and the thread links it into the chain,
//! hashes it and writes what gathered in one write. It continues the chain of the file it opens (the hash of
//! its last line), and across rotation: when the file is renamed away
//! (logrotate's default), the next record goes to a new file at the same
//! path whose first record names the old file's last one. The chain's head
//! (the next `seq` and the hash of the last line) is also kept beside the
//! log, in `.<name>.chain` (see [`AuditLog::open`]), so a log that is missing
//! or empty when the writer starts (rotated while the server was stopped, or
//! before it wrote again) continues the chain too.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, mpsc},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo, response::Response};
use futures::future::BoxFuture;
use http::{HeaderValue, Request};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::{IpNet, observe::RequestFacts};

/// The `prev` of a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision. Fields without a value are left out of the line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// Position in the chain, from 0.
    #[serde(default)]
    pub seq: u64,
    /// Hex SHA-256 of the previous line ([`GENESIS`] for the first).
    #[serde(default)]
    pub prev: String,
    /// The request's id (also the response's `X-Request-Id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// `request`, `session_start` or `session_end`.
    /// A `session_end` is written for a `DELETE` (with its response) and,
    /// without a request, for a session that expired (decision `expire`).
    pub event: String,
    /// `allow` or `deny`.
    /// `expire` on the `session_end` of a session that expired (unused for
    /// `HTTP_SESSION_TIMEOUT`), reported by the session sweeper.
    pub decision: String,
    /// The response status.
    /// 0 when there was no request (an expired session).
    pub status: u16,
    /// Why it was refused: the OAuth / refusal `error` code.
    /// `expired` for an expired session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The refusal's `error_description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The JSON-RPC method (`tools/call`, `initialize`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The tool called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The scopes the operation required (server-wide and the tool's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_required: Vec<String>,
    /// The scopes the caller held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_held: Vec<String>,
    /// The strategy that authenticated the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The caller's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The OAuth client acting for the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The token's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// An API key's fingerprint (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// The MCP session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The client's address (after the trusted-proxy rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

impl AuditRecord {
    /// A record of `event` with `decision` and `status`, stamped now.
    pub fn new(event: &str, decision: &str, status: u16) -> Self {
        Self {
            time: now_rfc3339_millis(),
            event: event.to_owned(),
            decision: decision.to_owned(),
            status,
            ..Self::default()
        }
    }
}

/// A record's fields, borrowed: what the audit layer hands an
/// [`AuditSink`] (see [`AuditSink::record_fields`]) without making an
/// [`AuditRecord`] first. The chain link (`seq`, `prev`) is the writer's.
///
/// ```
/// use mcp_auth_transport::audit::AuditRecord;
///
/// let mut record = AuditRecord::new("request", "allow", 200);
/// record.subject = Some("alice".into());
/// let fields = record.fields();
/// assert_eq!(fields.subject, Some("alice"));
/// assert_eq!(fields.to_record(), record);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditFields<'a> {
    /// As [`AuditRecord::time`].
    pub time: &'a str,
    /// As [`AuditRecord::request_id`] (empty: none).
    pub request_id: &'a str,
    /// As [`AuditRecord::event`].
    pub event: &'a str,
    /// As [`AuditRecord::decision`].
    pub decision: &'a str,
    /// As [`AuditRecord::status`].
    pub status: u16,
    /// As [`AuditRecord::reason`].
    pub reason: Option<&'a str>,
    /// As [`AuditRecord::detail`].
    pub detail: Option<&'a str>,
    /// As [`AuditRecord::method`].
    pub method: Option<&'a str>,
    /// As [`AuditRecord::tool`].
    pub tool: Option<&'a str>,
    /// As [`AuditRecord::scopes_required`].
    pub scopes_required: &'a [String],
    /// As [`AuditRecord::scopes_held`].
    pub scopes_held: &'a [String],
    /// As [`AuditRecord::strategy`].
    pub strategy: Option<&'a str>,
    /// As [`AuditRecord::subject`].
    pub subject: Option<&'a str>,
    /// As [`AuditRecord::client_id`].
    pub client_id: Option<&'a str>,
    /// As [`AuditRecord::issuer`].
    pub issuer: Option<&'a str>,
    /// As [`AuditRecord::key_fingerprint`].
    pub key_fingerprint: Option<&'a str>,
    /// As [`AuditRecord::session_id`].
    pub session_id: Option<&'a str>,
    /// As [`AuditRecord::peer`].
    pub peer: Option<&'a str>,
}

impl AuditRecord {
    /// Its fields, borrowed (without `seq` and `prev`).
    pub fn fields(&self) -> AuditFields<'_> {
        AuditFields {
            time: &self.time,
            request_id: &self.request_id,
            event: &self.event,
            decision: &self.decision,
            status: self.status,
            reason: self.reason.as_deref(),
            detail: self.detail.as_deref(),
            method: self.method.as_deref(),
            tool: self.tool.as_deref(),
            scopes_required: &self.scopes_required,
            scopes_held: &self.scopes_held,
            strategy: self.strategy.as_deref(),
            subject: self.subject.as_deref(),
            client_id: self.client_id.as_deref(),
            issuer: self.issuer.as_deref(),
            key_fingerprint: self.key_fingerprint.as_deref(),
            session_id: self.session_id.as_deref(),
            peer: self.peer.as_deref(),
        }
    }
}

impl AuditFields<'_> {
    /// An owned record of these fields (`seq` 0, `prev` empty: the
    /// writer's).
    pub fn to_record(&self) -> AuditRecord {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        AuditRecord {
            time: self.time.to_owned(),
            seq: 0,
            prev: String::new(),
            request_id: self.request_id.to_owned(),
            event: self.event.to_owned(),
            decision: self.decision.to_owned(),
            status: self.status,
            reason: owned(self.reason),
            detail: owned(self.detail),
            method: owned(self.method),
            tool: owned(self.tool),
            scopes_required: self.scopes_required.to_vec(),
            scopes_held: self.scopes_held.to_vec(),
            strategy: owned(self.strategy),
            subject: owned(self.subject),
            client_id: owned(self.client_id),
            issuer: owned(self.issuer),
            key_fingerprint: owned(self.key_fingerprint),
            session_id: owned(self.session_id),
            peer: owned(self.peer),
        }
    }
}

/// The time now as RFC 3339 in UTC with milliseconds
/// (`2026-11-26T03:18:40.123Z`): the part up to the second is formatted
/// once a second per thread, not per record.
fn now_rfc3339_millis() -> String {
    let mut buf = [0u8; TIME_LEN];
    now_rfc3339_millis_in(&mut buf).into_owned()
}

/// The length of [`now_rfc3339_millis`]' text (in years 0000-9999).
const TIME_LEN: usize = "2026-11-26T03:18:40.123Z".len();

/// [`now_rfc3339_millis`], written in `buf` (a clock outside the years
/// 0000-9999, whose text is longer, gets it allocated).
fn now_rfc3339_millis_in(buf: &mut [u8; TIME_LEN]) -> std::borrow::Cow<'_, str> {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [b'0'; 19])) };
    }
    let now = chrono::Utc::now();
    let (secs, millis) = (now.timestamp(), now.timestamp_subsec_millis().min(999));
    let (cached_secs, mut second) = SECOND.get();
    if cached_secs != secs {
        let text = now.format("%Y-%m-%dT%H:%M:%S").to_string();
        match <[u8; 19]>::try_from(text.as_bytes()) {
            Ok(s) => {
                second = s;
                SECOND.set((secs, s));
            }
            Err(_) => return format!("{text}.{millis:03}Z").into(),
        }
    }
    buf[..19].copy_from_slice(&second);
    buf[19] = b'.';
    buf[20] = b'0' + (millis / 100) as u8;
    buf[21] = b'0' + (millis / 10 % 10) as u8;
    buf[22] = b'0' + (millis % 10) as u8;
    buf[23] = b'Z';
    // (ASCII by construction: cannot fail.)
    std::str::from_utf8(&buf[..]).unwrap_or_default().into()
}

/// Lowercase hex of `bytes`: the chain's links (SHA-256 digests), as the
/// writer makes them and as resuming and verifying a chain compare them
/// (one encoding for all three), and the request ids' prefix; without a
/// per-character iterator.
fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` in lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    // A digest's worth at a time, appended at once (not a character at a
    // time).
    for chunk in bytes.chunks(32) {
        let hex = hex32(chunk);
        out.push_str(std::str::from_utf8(&hex[..2 * chunk.len()]).unwrap_or_default());
    }
}

/// The `session_end` record of session `id`, which expired (see
/// [`SessionStore::sweep_expired`](mcp_auth_session::SessionStore::sweep_expired)):
/// decision `expire`, status 0 (no request), reason `expired`, and, when it
/// was bound to someone, the owner's issuer, subject and client id.
pub(crate) fn expired_session_record(id: &str, owner: Option<&str>) -> AuditRecord {
    session_end_record(id, owner, "expire", "expired")
}

/// The `session_end` record of session `id` that ended without a request
/// saying so (expired, or a legacy SSE stream that closed): `decision` and
/// `reason`, status 0, and the owner's issuer, subject and client id.
pub(crate) fn session_end_record(
    id: &str,
    owner: Option<&str>,
    decision: &str,
    reason: &str,
) -> AuditRecord {
    let mut record = AuditRecord::new("session_end", decision, 0);
    record.reason = Some(reason.to_owned());
    record.session_id = Some(id.to_owned());
    // An owner as `mcp_auth_session::owner_of` writes it; anything else is
    // left out rather than guessed at.
    if let Some((issuer, subject, client_id)) = owner.and_then(mcp_auth_session::owner_parts)
        && !subject.is_empty()
    {
        let some = |v: String| (!v.is_empty()).then_some(v);
        record.issuer = some(issuer);
        record.subject = some(subject);
        record.client_id = some(client_id);
    }
    record
}

/// Where audit records go.
pub trait AuditSink: Send + Sync + 'static {
    /// Takes one record (without blocking on I/O).
    fn record(&self, record: AuditRecord);

    /// Takes one record given by its fields, borrowed (what the audit layer
    /// calls for each request). By default it makes an [`AuditRecord`] of
    /// them for [`record`](Self::record); [`AuditLog`] encodes them as
    /// they are, without that copy.
    fn record_fields(&self, fields: &AuditFields<'_>) {
        self.record(fields.to_record());
    }
}

/// How long the writer lets records gather after writing a batch: under
/// load it wakes at most this often (each wake costs a context switch
/// or two, which at a millisecond was a measurable part of a request's
/// cost); an idle writer is woken by the first record at once.
const LINGER: Duration = Duration::from_millis(10);

/// At most this many records wait for the writer; past it (the log cannot
/// be written: a full or stalled disk) records are counted and dropped, so
/// the server's memory stays bounded, and the chain records the loss.
/// (Smaller in tests, which fill it.)
const MAX_QUEUED: usize = if cfg!(test) { 2_000 } else { 100_000 };

/// At most this many bytes of encoded records wait for the writer (records
/// are small, but escaping can make one several times its text): past it,
/// records are dropped as past [`MAX_QUEUED`].
const MAX_QUEUED_BYTES: usize = if cfg!(test) {
    256 * 1024
} else {
    64 * 1024 * 1024
};

/// A buffer that grew past this while a backlog drained is given back down
/// to it once empty.
const KEEP_CAPACITY: usize = if cfg!(test) { 16 * 1024 } else { 1024 * 1024 };

/// The writer takes at most this many records a round, so what waits for
/// a failed write stays within [`MAX_UNWRITTEN`] plus one round's worth.
const MAX_TAKE: usize = if cfg!(test) { 500 } else { 10_000 };

/// At most this many bytes of serialized records wait for a write that
/// failed (they are retried, in order, before anything newer).
const MAX_UNWRITTEN: usize = if cfg!(test) {
    256 * 1024
} else {
    16 * 1024 * 1024
};

/// Records waiting for the writer thread. Taking a record is a push under
/// an uncontended lock; the writer is woken only when it sleeps on an empty
/// queue, and after each batch it lingers [`LINGER`] so that under load
/// records are written in batches rather than each waking it.
#[derive(Default)]
struct Queue {
    state: Mutex<Pending>,
    wake: Condvar,
}

/// What waits for the writer, in order: a record (its bytes in
/// [`Pending::text`], encoded by [`encode`] without its chain link), or how
/// many records were refused at this place in the order because
/// [`MAX_QUEUED`] were waiting (the log could not be written); the writer
/// turns that into a `records_dropped` record, so the chain says what it
/// lost and where.
#[derive(Clone, Copy)]
enum Entry {
    /// `len` bytes of `text`; the chain link goes after the first `split`.
    Record {
        len: usize,
        split: usize,
    },
    Dropped(u64),
}

impl Entry {
    /// Bytes of `text` it takes.
    fn len(self) -> usize {
        match self {
            Entry::Record { len, .. } => len,
            Entry::Dropped(_) => 0,
        }
    }

    /// Records it stands for.
    fn records(self) -> u64 {
        match self {
            Entry::Record { .. } => 1,
            Entry::Dropped(n) => n,
        }
    }
}

#[derive(Default)]
struct Pending {
    /// The records of `entries`, encoded, one after another: a record is
    /// encoded on the thread that hands it over (the writer only links,
    /// hashes and writes), into a buffer the writer and the queue swap, so
    /// taking a record allocates nothing once the buffers have grown. The
    /// bytes before `taken` went to the writer already.
    text: Vec<u8>,
    taken: usize,
    /// Records, and where records were dropped (see [`Entry`]).
    entries: std::collections::VecDeque<Entry>,
    flushes: Vec<mpsc::Sender<()>>,
    /// The writer waits on `wake`.
    idle: bool,
    /// Every `AuditLog` handle is gone: write what is left, then stop.
    closed: bool,
    /// The last callers' fields, encoded.
    callers: CallerCache,
}

impl Queue {
    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut state);
        if std::mem::take(&mut state.idle) {
            self.wake.notify_one();
        }
        out
    }
}

/// Closes the queue when the last [`AuditLog`] handle goes.
struct Writer {
    queue: Arc<Queue>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.with(|p| p.closed = true);
    }
}

/// The hash-chained JSON-lines log: a file, or stdout.
#[derive(Clone)]
pub struct AuditLog {
    writer: Arc<Writer>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// Where the writer thread appends.
enum Target {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        checked: Instant,
        /// The path no longer names `file` and no new file could be opened
        /// yet: nothing is written, and opening is tried once a second.
        stale: bool,
        /// Held while this writer runs: see [`lock_log`].
        _lock: Option<File>,
        /// The chain's head beside the log (none when it could not be
        /// opened).
        head: Option<HeadFile>,
    },
    /// A writer that fails on demand (tests).
    #[cfg(test)]
    Test(Arc<Mutex<tests::Flaky>>),
}

impl AuditLog {
    /// Appends to `target`: a file path (created 0600 when missing), or
    /// `stdout` (in any case) / `-`. A file's chain continues from its last line.
    ///
    /// Beside a file, in the same directory, the chain's head (the next
    /// `seq` and the hash of the last line written) is kept in
    /// `.<file name>.chain` (created 0600; hidden, so the globs that
    /// rotate the log, `*.jsonl` or `*`, leave it alone), rewritten in place
    /// after each batch the log takes. When the file is missing or holds no
    /// record (rotated away before the server wrote to the new one), the
    /// chain goes on from that head; when the file has records, its last
    /// line is the head, whatever the side file says. A side file that
    /// cannot be read is reported (a warning) and the chain starts anew, as
    /// without one.
    ///
    /// Fails when the file's last line is not a record this log can follow
    /// (a torn line, NUL bytes left by a crash, a line over 1 MiB): `audit
    /// verify` names it.
    pub fn open(target: &str) -> std::io::Result<Self> {
        let (target, prev, seq) = if target.eq_ignore_ascii_case("stdout") || target == "-" {
            (Target::Stdout, GENESIS.to_owned(), 0)
        } else {
            let path = PathBuf::from(target);
            // What is in the log's place is looked at before the side file
            // is made beside it (an attack pass: `/dev/null` was refused,
            // and left `/dev/.null.chain` behind).
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && !meta.file_type().is_file()
            {
                return Err(own_file_error(
                    &path,
                    std::io::Error::other("not a regular file"),
                ));
            }
            let side = head_path(&path);
            // Whether a head was kept (the lock below makes the file).
            let had_head = side
                .as_deref()
                .and_then(|s| std::fs::metadata(s).ok())
                .is_some_and(|m| m.len() > 0);
            // One writer per log, before its tail is read.
            let lock = match side.as_deref() {
                Some(side) => lock_log(side)?,
                None => None,
            };
            let (prev, seq) = match (chain_tail(&path)?, side.as_deref()) {
                (Some((prev, seq)), Some(side)) if had_head => compare_head(side, prev, seq),
                // (A side file that cannot be made is reported as it is
                // opened below.)
                (Some((prev, seq)), Some(side)) if lock.is_some() => {
                    tracing::warn!(
                        head = %side.display(),
                        log_next_seq = seq,
                        "the audit log has records but no chain head beside it (deleted or emptied, or the log was moved here): records removed from its end while the server was stopped cannot be told; the chain goes on from its last line"
                    );
                    (prev, seq)
                }
                (Some((prev, seq)), _) => (prev, seq),
                (None, Some(side)) => resume_from_head(side).unwrap_or((GENESIS.to_owned(), 0)),
                (None, None) => (GENESIS.to_owned(), 0),
            };
            let file = open_append(&path)?;
            let head = side.and_then(|side| HeadFile::open(side, seq, prev.as_bytes()));
            (
                Target::File {
                    path,
                    file,
                    checked: Instant::now(),
                    stale: false,
                    head,
                    _lock: lock,
                },
                prev,
                seq,
            )
        };
        Self::start(target, prev, seq)
    }

    /// The writer thread on `target`, the chain going on from `prev`, `seq`.
    fn start(target: Target, prev: String, seq: u64) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::default());
        let pending = queue.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(&pending, target, prev, seq))?;
        Ok(Self {
            writer: Arc::new(Writer { queue }),
        })
    }

    /// Waits until every record taken so far is written, at most 5 s;
    /// whether they were (not while writes fail: the writer goes on
    /// trying, and says so in the server's log).
    pub fn flush(&self) -> bool {
        let (done, wait) = mpsc::channel();
        self.writer.queue.with(|p| p.flushes.push(done));
        wait.recv_timeout(Duration::from_secs(5)).is_ok()
    }
}

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) {
        self.record_fields(&record.fields());
        // The record's strings are freed here, on the thread that made
        // them, after the lock.
        drop(record);
    }

    fn record_fields(&self, fields: &AuditFields<'_>) {
        let taken = self.writer.queue.with(|p| {
            if p.entries.len() < MAX_QUEUED && p.text.len() - p.taken < MAX_QUEUED_BYTES {
                let start = p.text.len();
                let split = encode_with(fields, &mut p.text, Some(&mut p.callers));
                let len = p.text.len() - start;
                p.entries.push_back(Entry::Record { len, split });
                return true;
            }
            match p.entries.back_mut() {
                Some(Entry::Dropped(n)) => *n += 1,
                _ => p.entries.push_back(Entry::Dropped(1)),
            }
            false
        });
        if !taken {
            metrics::counter!("mcp_auth_audit_records_dropped_total").increment(1);
        }
    }
}

/// The record written in the place of a run of dropped records: event
/// `records_dropped`, decision `lost`, reason `queue_full`, and how many in
/// `detail`. The chain stays whole and says what it is missing.
fn dropped_record(n: u64) -> AuditRecord {
    let mut record = AuditRecord::new("records_dropped", "lost", 0);
    record.reason = Some("queue_full".to_owned());
    record.detail = Some(format!(
        "{n} records dropped: the audit log could not be written"
    ));
    record
}

/// Appends `record` to `out` as its JSON line without the chain link
/// (`seq`, `prev`) or the newline, and says where the link goes (after the
/// returned number of the appended bytes): the same bytes, once linked, as
/// serde's encoding of the record with the link (the field order of
/// [`AuditRecord`], empty fields left out), but without serde's machinery
/// and a call per field, which cost more than the rest of the record.
fn encode(fields: &AuditFields<'_>, out: &mut Vec<u8>) -> usize {
    encode_with(fields, out, None)
}

/// [`encode`], the caller's identifiers taken from `cache` when it has them
/// encoded already (the same caller's requests follow one another).
fn encode_with(
    fields: &AuditFields<'_>,
    out: &mut Vec<u8>,
    cache: Option<&mut CallerCache>,
) -> usize {
    // Every field named: one added to the record fails to compile here
    // until it is encoded (or said not to be).
    let AuditFields {
        time,
        request_id,
        event,
        decision,
        status,
        reason,
        detail,
        method,
        tool,
        scopes_required,
        scopes_held,
        strategy,
        subject,
        client_id,
        issuer,
        key_fingerprint,
        session_id,
        peer,
    } = fields.clone();
    let start = out.len();
    out.extend_from_slice(b"{\"time\":");
    push_json_str(out, time);
    let split = out.len() - start;
    if !request_id.is_empty() {
        push_str_field(out, "request_id", request_id);
    }
    push_str_field(out, "event", event);
    push_str_field(out, "decision", decision);
    out.extend_from_slice(b",\"status\":");
    push_u64(out, u64::from(status));
    push_present(
        out,
        [
            ("reason", reason),
            ("detail", detail),
            ("method", method),
            ("tool", tool),
        ],
    );
    push_list(out, "scopes_required", scopes_required);
    let caller = Caller {
        scopes_held,
        strategy,
        subject,
        client_id,
        issuer,
        key_fingerprint,
    };
    match cache {
        Some(cache) if strategy.is_some() => cache.push(out, &caller),
        _ => caller.encode(out),
    }
    push_present(out, [("session_id", session_id), ("peer", peer)]);
    out.push(b'}');
    split
}

/// The fields that have a value, in order.
#[inline(always)]
fn push_present<const N: usize>(out: &mut Vec<u8>, fields: [(&str, Option<&str>); N]) {
    for (name, value) in fields {
        if let Some(v) = value {
            push_str_field(out, name, v);
        }
    }
}

/// `,"name":[…]`, unless `list` is empty.
fn push_list(out: &mut Vec<u8>, name: &str, list: &[String]) {
    if list.is_empty() {
        return;
    }
    push_name(out, name);
    out.push(b'[');
    for (i, v) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, v);
    }
    out.push(b']');
}

/// The fields of a record that name the caller, consecutive in a line.
#[derive(PartialEq, Eq)]
struct Caller<'a> {
    scopes_held: &'a [String],
    strategy: Option<&'a str>,
    subject: Option<&'a str>,
    client_id: Option<&'a str>,
    issuer: Option<&'a str>,
    key_fingerprint: Option<&'a str>,
}

impl Caller<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        push_list(out, "scopes_held", self.scopes_held);
        push_present(
            out,
            [
                ("strategy", self.strategy),
                ("subject", self.subject),
                ("client_id", self.client_id),
                ("issuer", self.issuer),
                ("key_fingerprint", self.key_fingerprint),
            ],
        );
    }
}

/// The encoded [`Caller`] fields of the last few callers: a record of one
/// of them copies its bytes instead of escaping and copying each field
/// again. Found only by comparing every field (an equal caller is encoded
/// alike); a handful, replaced in turn.
#[derive(Default)]
struct CallerCache {
    entries: Vec<(OwnedCaller, Vec<u8>)>,
    next: usize,
}

/// A [`Caller`], owned.
#[derive(Default)]
struct OwnedCaller {
    scopes_held: Vec<String>,
    strategy: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    issuer: Option<String>,
    key_fingerprint: Option<String>,
}

impl OwnedCaller {
    fn of(c: &Caller<'_>) -> Self {
        let mut owned = Self::default();
        owned.set(c);
        owned
    }

    /// Becomes `c`, in the buffers it has (an entry replaced under the
    /// queue's lock allocates and frees as little as it can).
    fn set(&mut self, c: &Caller<'_>) {
        fn text(to: &mut Option<String>, from: Option<&str>) {
            match (to.as_mut(), from) {
                (Some(t), Some(f)) => {
                    t.clear();
                    t.push_str(f);
                }
                (_, f) => *to = f.map(str::to_owned),
            }
        }
        self.scopes_held.truncate(c.scopes_held.len());
        let kept = self.scopes_held.len();
        for (to, from) in self.scopes_held.iter_mut().zip(c.scopes_held) {
            to.clone_from(from);
        }
        self.scopes_held.extend_from_slice(&c.scopes_held[kept..]);
        text(&mut self.strategy, c.strategy);
        text(&mut self.subject, c.subject);
        text(&mut self.client_id, c.client_id);
        text(&mut self.issuer, c.issuer);
        text(&mut self.key_fingerprint, c.key_fingerprint);
    }

    fn as_caller(&self) -> Caller<'_> {
        Caller {
            scopes_held: &self.scopes_held,
            strategy: self.strategy.as_deref(),
            subject: self.subject.as_deref(),
            client_id: self.client_id.as_deref(),
            issuer: self.issuer.as_deref(),
            key_fingerprint: self.key_fingerprint.as_deref(),
        }
    }
}

impl CallerCache {
    /// How many callers are kept.
    const SIZE: usize = 8;

    /// Callers whose fields encode to more are not kept (what a token can
    /// make the log hold stays small).
    const MAX_BYTES: usize = 1024;

    /// Appends `caller`'s fields as [`Caller::encode`] writes them.
    fn push(&mut self, out: &mut Vec<u8>, caller: &Caller<'_>) {
        if let Some((_, encoded)) = self.entries.iter().find(|(c, _)| c.as_caller() == *caller) {
            out.extend_from_slice(encoded);
            return;
        }
        let start = out.len();
        caller.encode(out);
        let encoded = &out[start..];
        if encoded.len() > Self::MAX_BYTES {
            return;
        }
        if self.entries.len() < Self::SIZE {
            self.entries
                .push((OwnedCaller::of(caller), encoded.to_vec()));
        } else if let Some((kept, bytes)) = self.entries.get_mut(self.next) {
            kept.set(caller);
            bytes.clear();
            bytes.extend_from_slice(encoded);
            self.next = (self.next + 1) % Self::SIZE;
        }
    }
}

/// The chain link that goes where [`encode`] says: `,"seq":…,"prev":"…"`.
fn push_link(out: &mut Vec<u8>, seq: u64, prev: &[u8]) {
    out.extend_from_slice(b",\"seq\":");
    push_u64(out, seq);
    // A digest in hex (or the genesis): nothing to escape.
    debug_assert!(prev.iter().all(u8::is_ascii_hexdigit));
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev);
    out.push(b'"');
}

/// Up to 32 `bytes` (a digest) in lowercase hex, as [`to_hex`] writes
/// them, followed by `0`s: the writer's links without making a string of
/// each, and [`push_hex`]'s pieces.
fn hex32(bytes: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// `,"name":` (names are plain ASCII; inlined, so a constant name is
/// copied without a call).
#[inline(always)]
fn push_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

#[inline(always)]
fn push_str_field(out: &mut Vec<u8>, name: &str, value: &str) {
    push_name(out, name);
    push_json_str(out, value);
}

/// `n` in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `s` as a JSON string, escaped as serde_json escapes (`"`, `\\`, and
/// control characters: `\b \f \n \r \t` by name, the others as
/// `\u00xx`); everything else, UTF-8 included, as it is. Eight bytes are
/// checked at a time: values come from clients and are nearly always plain.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let mut plain = 0;
        escape_from(out, bytes, 0, bytes, &mut plain);
        out.extend_from_slice(&bytes[plain..]);
    }
    out.push(b'"');
}

/// No byte of `bytes` needs escaping: eight at a time, the last eight
/// (overlapping) for what is left; a short string byte by byte.
fn is_plain(bytes: &[u8]) -> bool {
    let word = |at: usize| {
        let eight = bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok());
        // (Always eight bytes; a quote, should they not be, says "escape".)
        u64::from_le_bytes(eight.unwrap_or([b'"'; 8]))
    };
    let n = bytes.len();
    if n < 8 {
        return bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
    }
    let mut at = 0;
    while at + 8 <= n {
        if needs_escape(word(at)) {
            return false;
        }
        at += 8;
    }
    at == n || !needs_escape(word(n - 8))
}

/// Escapes what needs it in `chunk` (the bytes of `bytes` from `at`):
/// the plain run before each such byte is copied, `plain` moves past it.
fn escape_from(out: &mut Vec<u8>, bytes: &[u8], at: usize, chunk: &[u8], plain: &mut usize) {
    for (k, &b) in chunk.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => b'u',
            _ => continue,
        };
        let i = at + k;
        out.extend_from_slice(&bytes[*plain..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"00");
            out.push(DIGITS[usize::from(b >> 4)]);
            out.push(DIGITS[usize::from(b & 0x0f)]);
        }
        *plain = i + 1;
    }
}

/// Some byte of `w` is below 0x20, `"` or `\\` (a word at a time: a byte
/// is zero after the XOR or below 0x20 when subtracting borrows into its
/// top bit, which the byte itself did not have set).
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    below(w, 0x20)
        | below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
        != 0
}

/// The log, opened for appending as the side file is opened: never through
/// a symbolic link, never waiting on a FIFO, a regular file of its own
/// (no other names), created 0600 (one that exists keeps its owner's and
/// group's bits: a rotation's `create 0640 mcp adm` for a log shipper, say;
/// others' are taken away). Someone with
/// write access to the log's directory could otherwise put a link or a
/// FIFO where the log was rotated away, and have the records appended to
/// a file of their choice (a shell's start-up file: a session id is the
/// client's text) or read them off a pipe.
fn open_append(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    opts.open(path)
        .and_then(|f| checked_own(f, false))
        .map_err(|e| own_file_error(path, e))
}

/// `e` from opening the log at `path`, saying what was found there when it
/// is not a file of its own.
fn own_file_error(path: &Path, e: std::io::Error) -> std::io::Error {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match link {
        true => std::io::Error::other(format!(
            "{} is a symbolic link: the audit log is written to a file of its own only",
            path.display()
        )),
        false => std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    }
}

/// The longest line a log's reader takes for a record: far above the
/// largest record the log writes (its fields come from a token of at most
/// 16 KiB, an introspection answer of at most 64 KiB and a refusal body of
/// at most 16 KiB; method, tool and session id are cut shorter), so a
/// longer line is not one of its records, and reading one stops there
/// rather than holding all of it (`audit verify /dev/zero`).
const MAX_LINE: usize = 1024 * 1024;

/// The hash of a file's last line and the next `seq`; `None` when the file
/// is missing or holds no record. The last line is read from the last
/// [`MAX_LINE`] bytes (and a bit): one longer, NUL bytes (what a crash can
/// leave at a file's end), a torn line, or a `seq` that cannot be followed
/// is an error, never a guess at where the chain goes on.
fn chain_tail(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    // Read as it is written: not through a link, not waiting on a FIFO.
    let mut file = match side_options(false)
        .open(path)
        .and_then(|f| checked_own(f, false))
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(own_file_error(path, e)),
    };
    // A line of MAX_LINE bytes, its newline and the newline before it.
    let window = MAX_LINE as u64 + 2;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    let not_a_record = |why: String| {
        std::io::Error::other(format!(
            "the last line of {} is not an audit record ({why}): `mcp-auth-server audit verify` \
             names it; keep a copy, then cut the file after its last record or move it aside",
            path.display()
        ))
    };
    let end = tail.iter().rposition(|b| *b != b'\n').map_or(0, |i| i + 1);
    let body = &tail[..end];
    let last = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => &body[i + 1..],
        // The whole file.
        None if start == 0 => body,
        // No line starts in the window: the last one is longer.
        None => body,
    };
    if last.is_empty() && start == 0 {
        return Ok(None);
    }
    if last.is_empty() || last.len() > MAX_LINE {
        return Err(not_a_record(format!(
            "longer than {MAX_LINE} bytes{}",
            nul_note(last)
        )));
    }
    if last.contains(&0) {
        return Err(not_a_record(format!("a torn line{}", nul_note(last))));
    }
    let record =
        serde_json::from_slice::<AuditRecord>(last).map_err(|e| not_a_record(e.to_string()))?;
    let seq = record
        .seq
        .checked_add(1)
        .ok_or_else(|| not_a_record(format!("seq {}: no record can follow it", record.seq)))?;
    Ok(Some((to_hex(&Sha256::digest(last)), seq)))
}

/// An exclusive lock on the log's side file `side` (created if need be),
/// held while the writer runs: two processes appending to one log would
/// each go on from the same last line, forking the chain (which `audit
/// verify` then reports as records out of order), so a second one is
/// refused. A writer of this process that is still finishing (a log
/// reopened at once) is waited for, two seconds at most. A side file that
/// cannot be had (not a file of its own: see [`HeadFile`]) leaves the log
/// unlocked, with the warning the head gives.
fn lock_log(side: &Path) -> std::io::Result<Option<File>> {
    let Ok(file) = side_options(true).open(side).and_then(checked_side) else {
        return Ok(None);
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    format!(
                        "another process writes this audit log (it holds {}): give each process a log of its own",
                        side.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Where the chain's head of the log at `log` is kept: `.<name>.chain`
/// beside it (`None` for a path without a file name).
fn head_path(log: &Path) -> Option<PathBuf> {
    let name = log.file_name()?;
    let mut side = std::ffi::OsString::from(".");
    side.push(name);
    side.push(".chain");
    Some(log.with_file_name(side))
}

/// A chain head's text: `audit-chain next=<20 digits> prev=<64 hex>` and a
/// newline, always this long, so it is rewritten in place with one write.
const HEAD_LEN: usize = "audit-chain next=".len() + 20 + " prev=".len() + 64 + 1;

/// The head `seq`, `prev` (the hex hash of the last line) as the side file
/// holds it.
fn encode_head(seq: u64, prev: &[u8]) -> [u8; HEAD_LEN] {
    let mut out = [b'0'; HEAD_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        let end = (at + bytes.len()).min(HEAD_LEN);
        out[at..end].copy_from_slice(&bytes[..end - at]);
        at = end;
    };
    put(b"audit-chain next=");
    let mut digits = Vec::with_capacity(20);
    push_u64(&mut digits, seq);
    put(&[b'0'; 20][..20usize.saturating_sub(digits.len())]);
    put(&digits);
    put(b" prev=");
    put(prev);
    put(b"\n");
    out
}

/// The side file's head, `(prev, next seq)`, if `bytes` is one exactly.
fn parse_head(bytes: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let rest = text.strip_prefix("audit-chain next=")?.strip_suffix('\n')?;
    let (seq, prev) = rest.split_once(" prev=")?;
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // No record can follow u64::MAX: not a head this log wrote.
    let seq = seq.parse::<u64>().ok().filter(|s| *s < u64::MAX)?;
    if prev.len() != 64 || !prev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((prev.to_owned(), seq))
}

/// How the side file is opened: never through a symbolic link, never
/// waiting on a FIFO, created 0600 when written.
fn side_options(write: bool) -> OpenOptions {
    let mut opts = OpenOptions::new();
    if write {
        opts.write(true).create(true).truncate(false);
    } else {
        opts.read(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    opts
}

/// `file`, opened as the side file, if it is one this log may use: a
/// regular file with no other name (not a device, a FIFO, or a hard link
/// to a file elsewhere that someone with write access to the directory
/// placed there), readable by its owner only.
fn checked_side(file: File) -> std::io::Result<File> {
    checked_own(file, true)
}

/// `file` if it is a regular file with no other name; with `narrow`, made
/// readable by its owner only, else (the log) by no one outside its group
/// (a rotation's `create 0640 mcp adm` keeps its group; a log others could
/// read would hand them session ids), as far as its owner may change it.
fn checked_own(file: File, narrow: bool) -> std::io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if meta.nlink() != 1 {
            return Err(std::io::Error::other(
                "the file has other names (hard links)",
            ));
        }
        if narrow && meta.mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        } else if !narrow && meta.mode() & 0o007 != 0 {
            let kept = meta.mode() & 0o770;
            if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(kept)) {
                tracing::warn!(error = %e, "the audit log is readable by others and its mode cannot be changed here");
            }
        }
    }
    Ok(file)
}

/// The head kept in `side`: `Ok(None)` when there is none.
fn read_head(side: &Path) -> std::io::Result<Option<(String, u64)>> {
    let file = match side_options(false).open(side) {
        Ok(f) => checked_side(f)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::with_capacity(HEAD_LEN + 1);
    file.take(HEAD_LEN as u64 + 1).read_to_end(&mut bytes)?;
    // Empty: made by the lock of a writer that wrote nothing yet (the
    // first start of a log), as good as none.
    if bytes.is_empty() {
        return Ok(None);
    }
    parse_head(&bytes).map(Some).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an audit chain head (`audit-chain next=<seq> prev=<hash>`)",
        )
    })
}

/// The head to go on from for a log that is missing or empty: the side
/// file's, or none (a new chain), with a warning when it cannot be read.
fn resume_from_head(side: &Path) -> Option<(String, u64)> {
    match read_head(side) {
        Ok(Some((prev, seq))) => {
            if seq > 0 {
                tracing::info!(
                    head = %side.display(),
                    seq,
                    "the audit log is empty or missing (rotated?): its chain goes on from the head kept beside it"
                );
            }
            Some((prev, seq))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(
                head = %side.display(),
                error = %e,
                "cannot read the audit chain's head: the empty audit log starts a new chain (seq 0), which `audit verify` of the older files with it will report"
            );
            None
        }
    }
}

/// Where a log with records goes on from: its last line (`prev`, `seq`),
/// unless the head kept beside it says more was written (records removed
/// from the log's end while the server was stopped, or lost in a crash) or
/// the same number of records ending in another line (the last line was
/// edited): then from the head, so the next record names the line as it
/// was written and `audit verify` names the removal or the edit (going on
/// from the log, the next record made them part of an intact chain).
fn compare_head(side: &Path, prev: String, seq: u64) -> (String, u64) {
    match read_head(side) {
        Ok(Some((kept_prev, kept_seq))) if kept_seq > seq => {
            tracing::warn!(
                head = %side.display(),
                log_next_seq = seq,
                head_next_seq = kept_seq,
                "the audit log ends before the last record written to it (removed, or lost in a crash): the chain goes on from the head kept beside it, so `audit verify` reports the records missing"
            );
            (kept_prev, kept_seq)
        }
        Ok(Some((_, kept_seq))) if kept_seq < seq => {
            tracing::warn!(
                head = %side.display(),
                log_next_seq = seq,
                head_next_seq = kept_seq,
                "the audit log has records past the head kept beside it (written just before a crash, or appended by someone else while the server was stopped): check the records from seq {kept_seq} on; the chain goes on from its last line"
            );
            (prev, seq)
        }
        Ok(Some((kept_prev, kept_seq))) if kept_seq == seq && kept_prev != prev => {
            tracing::warn!(
                head = %side.display(),
                seq = seq.saturating_sub(1),
                "the audit log's last line is not the one written to it (edited?): the chain goes on from the line as written, so `audit verify` names it"
            );
            (kept_prev, kept_seq)
        }
        Ok(_) => (prev, seq),
        Err(e) => {
            tracing::debug!(head = %side.display(), error = %e, "audit chain head unreadable; rewritten from the log");
            (prev, seq)
        }
    }
}

/// The side file holding the chain's head (see [`AuditLog::open`]).
struct HeadFile {
    path: PathBuf,
    file: File,
    /// When it was last checked to be still the file at `path`.
    checked: Instant,
    /// A write failed (reported once until one succeeds).
    failing: bool,
}

impl HeadFile {
    /// Opens (creating 0600) `side` and writes the head `seq`, `prev` into
    /// it; `None`, with a warning, when it cannot be.
    fn open(side: PathBuf, seq: u64, prev: &[u8]) -> Option<Self> {
        let opened = Self::open_file(&side).and_then(|file| {
            let mut head = Self {
                path: side.clone(),
                file,
                checked: Instant::now(),
                failing: false,
            };
            head.write(seq, prev)?;
            Ok(head)
        });
        match opened {
            Ok(head) => Some(head),
            Err(e) => {
                tracing::warn!(
                    head = %side.display(),
                    error = %e,
                    "cannot keep the audit chain's head beside the log: if the log is rotated while the server is stopped, the new file starts a new chain"
                );
                None
            }
        }
    }

    fn open_file(side: &Path) -> std::io::Result<File> {
        let file = checked_side(side_options(true).open(side)?)?;
        file.set_len(HEAD_LEN as u64)?;
        Ok(file)
    }

    /// Rewrites the head in place (one write; not synced, as the log is
    /// not). The file at the side path is checked at most once a second to
    /// still be this one: removed or replaced while the server runs, the
    /// head goes to a new file there, not to one no name leads to.
    fn write(&mut self, seq: u64, prev: &[u8]) -> std::io::Result<()> {
        if self.checked.elapsed() >= Duration::from_secs(1) {
            self.checked = Instant::now();
            if side_replaced(&self.path, &self.file) {
                self.file = Self::open_file(&self.path)?;
                // The writer's lock was on the file replaced: taken again
                // on this one, so a second writer started now is refused.
                if let Err(e) = self.file.try_lock() {
                    tracing::warn!(
                        head = %self.path.display(),
                        error = %e,
                        "the audit chain's head was replaced and another process holds its lock: two writers of one log fork its chain"
                    );
                }
            }
        }
        let text = encode_head(seq, prev);
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(&text, 0)
        }
        #[cfg(not(unix))]
        {
            self.file.seek(SeekFrom::Start(0))?;
            self.file.write_all(&text)
        }
    }

    /// [`write`](Self::write), a failure reported once until one succeeds.
    fn save(&mut self, seq: u64, prev: &[u8]) {
        match self.write(seq, prev) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(error = %e, "cannot update the audit chain's head beside the log");
            }
            Err(_) => {}
        }
    }
}

impl Target {
    /// Everything linked up to `seq` (exclusive), the last line hashing to
    /// `prev`, is written: a file's side file says so.
    fn save_head(&mut self, seq: u64, prev: &[u8]) {
        if let Target::File {
            head: Some(head), ..
        } = self
        {
            head.save(seq, prev);
        }
    }
}

fn write_loop(queue: &Queue, mut target: Target, prev: String, mut seq: u64) {
    // The link to the last line written (hex: as the chain was resumed).
    let mut prev: Vec<u8> = prev.into_bytes();
    // Linked records not yet written (a write failed): retried first, in
    // order, so the file never misses a link or repeats one.
    let mut lines: Vec<u8> = Vec::new();
    // What this round took from the queue (swapped with the queue's
    // buffers, so both keep their capacity).
    let mut text: Vec<u8> = Vec::new();
    let mut entries = std::collections::VecDeque::new();
    // A `records_dropped` record, encoded.
    let mut scratch: Vec<u8> = Vec::new();
    let mut last_error: Option<Instant> = None;
    // Flushes wait until everything taken before them is written.
    let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
    // What was written so far ends with a whole line: only then may a new
    // file (after a rotation) be opened.
    let mut at_line_start = true;
    loop {
        let (emptied, closed, left) = {
            let mut state = queue.state.lock().unwrap_or_else(|p| p.into_inner());
            while lines.is_empty()
                && acks.is_empty()
                && state.entries.is_empty()
                && state.flushes.is_empty()
                && !state.closed
            {
                state.idle = true;
                state = queue.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.idle = false;
            acks.append(&mut state.flushes);
            // While too much waits for a failed write, records wait in the
            // queue (which drops past its bound).
            if lines.len() < MAX_UNWRITTEN {
                if state.entries.len() <= MAX_TAKE && state.taken == 0 {
                    std::mem::swap(&mut entries, &mut state.entries);
                    std::mem::swap(&mut text, &mut state.text);
                } else {
                    // A backlog: a round's worth, copied from where the last
                    // one stopped (not moving the rest under the lock); the
                    // buffer is emptied once all of it is taken.
                    let k = state.entries.len().min(MAX_TAKE);
                    let n: usize = state.entries.iter().take(k).map(|e| e.len()).sum();
                    entries.extend(state.entries.drain(..k));
                    let from = state.taken;
                    text.extend_from_slice(&state.text[from..from + n]);
                    state.taken += n;
                    if state.entries.is_empty() {
                        state.text.clear();
                        state.text.shrink_to(KEEP_CAPACITY);
                        state.taken = 0;
                    } else if state.taken > KEEP_CAPACITY && state.taken * 2 > state.text.len() {
                        // A backlog that never empties (records come faster
                        // than one round takes): what was taken goes once it
                        // is most of the buffer, so it holds at most twice
                        // what waits, and each byte moves at most once more.
                        let taken = std::mem::take(&mut state.taken);
                        state.text.drain(..taken);
                    }
                }
            }
            // What stopping now would lose (counted only then).
            let left = match state.closed {
                true => state.entries.iter().map(|e| e.records()).sum::<u64>(),
                false => 0,
            };
            (state.entries.is_empty(), state.closed, left)
        };
        let mut at = 0;
        for entry in entries.drain(..) {
            let (encoded, split) = match entry {
                Entry::Record { len, split } => {
                    at += len;
                    (&text[at - len..at], split)
                }
                Entry::Dropped(n) => {
                    scratch.clear();
                    let split = encode(&dropped_record(n).fields(), &mut scratch);
                    (&scratch[..], split)
                }
            };
            let start = lines.len();
            lines.extend_from_slice(&encoded[..split]);
            push_link(&mut lines, seq, &prev);
            lines.extend_from_slice(&encoded[split..]);
            prev.clear();
            prev.extend_from_slice(&hex32(&Sha256::digest(&lines[start..])));
            lines.push(b'\n');
            // (No record follows u64::MAX; a log resumed at a crafted one
            // is refused, so this only keeps a debug build from panicking.)
            seq = seq.saturating_add(1);
        }
        text.clear();
        // Given back after a backlog, not every round of a busy log.
        if text.capacity() > 8 * KEEP_CAPACITY {
            text.shrink_to(KEEP_CAPACITY);
        }
        let mut failed = false;
        if !lines.is_empty() {
            let written = match write_lines(&mut target, &lines, at_line_start) {
                Ok(()) => lines.len(),
                Err((n, e)) => {
                    failed = true;
                    // Once every few seconds, not every round.
                    if last_error.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                        last_error = Some(Instant::now());
                        tracing::error!(error = %e, waiting_bytes = lines.len() - n, "cannot write the audit log; retrying");
                    }
                    n
                }
            };
            if written > 0 {
                at_line_start = lines[written - 1] == b'\n';
            }
            lines.drain(..written);
            if lines.is_empty() {
                // All of it is in the log: its head is `seq`, `prev`.
                target.save_head(seq, &prev);
                if lines.capacity() > 8 * KEEP_CAPACITY {
                    lines.shrink_to(KEEP_CAPACITY);
                }
            }
        }
        let done = emptied && lines.is_empty();
        let failed_at_close = closed && failed;
        if done || failed_at_close {
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
        if closed && (done || failed_at_close) {
            if !done {
                tracing::error!(
                    bytes = lines.len(),
                    records = left,
                    "audit records lost: the log could not be written before the server stopped"
                );
            }
            return;
        }
        // Let records gather: one write for many under load (and a failed
        // write is tried again after this).
        std::thread::sleep(LINGER);
    }
}

/// Appends `lines` (whole records, each ending in a newline); on failure,
/// how many bytes went out before it (a retry goes on from there).
/// A file rotated away is replaced only when `at_line_start` (a record cut
/// by a failed write is finished in the file it began in).
fn write_lines(
    target: &mut Target,
    lines: &[u8],
    at_line_start: bool,
) -> Result<(), (usize, std::io::Error)> {
    match target {
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            let n = write_from(&mut out, lines)?;
            out.flush().map_err(|e| (n, e))
        }
        Target::File {
            path,
            file,
            checked,
            stale,
            ..
        } => {
            // Rotated away (renamed or removed)? Then a new file, whose
            // first record continues the chain. Looked at before every
            // write (two `stat`s a round, at most ~100 a second): records
            // written to the old name after it was renamed are lost when it
            // is compressed at once (logrotate's `compress` without
            // `delaycompress`; it read ~1 s of them). Until a new file
            // opens, nothing is written: the old one is gone or on its way,
            // so the records wait in the queue (past its bound they are
            // counted as dropped); opening it again is tried once a second,
            // not on every round.
            if at_line_start {
                let retry = *stale && checked.elapsed() >= Duration::from_secs(1);
                if retry || (!*stale && rotated(path, file)) {
                    *checked = Instant::now();
                    *stale = true;
                    *file = open_append(path).map_err(|e| (0, e))?;
                    *stale = false;
                }
            }
            if *stale {
                return Err((
                    0,
                    std::io::Error::other("the log was rotated away and no new file opens yet"),
                ));
            }
            write_from(file, lines).map(drop)
        }
        #[cfg(test)]
        Target::Test(w) => {
            write_from(&mut *w.lock().unwrap_or_else(|p| p.into_inner()), lines).map(drop)
        }
    }
}

/// Writes all of `bytes`, counting what went out before an error.
fn write_from(w: &mut impl Write, bytes: &[u8]) -> Result<usize, (usize, std::io::Error)> {
    let mut n = 0;
    while n < bytes.len() {
        match w.write(&bytes[n..]) {
            Ok(0) => return Err((n, std::io::ErrorKind::WriteZero.into())),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((n, e)),
        }
    }
    Ok(n)
}

#[cfg(unix)]
fn rotated(path: &Path, file: &File) -> bool {
    elsewhere(std::fs::symlink_metadata(path), file)
}

/// Whether the name `path` no longer leads to `file` (not following a
/// symbolic link put there).
#[cfg(unix)]
fn side_replaced(path: &Path, file: &File) -> bool {
    elsewhere(std::fs::symlink_metadata(path), file)
}

/// Whether what a name leads to (`on_disk`) is not `file`, or nothing.
#[cfg(unix)]
fn elsewhere(on_disk: std::io::Result<std::fs::Metadata>, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (on_disk, file.metadata()) {
        (Ok(on_disk), Ok(open)) => on_disk.ino() != open.ino() || on_disk.dev() != open.dev(),
        _ => true,
    }
}

#[cfg(not(unix))]
fn rotated(path: &Path, _file: &File) -> bool {
    !path.exists()
}

#[cfg(not(unix))]
fn side_replaced(path: &Path, file: &File) -> bool {
    rotated(path, file)
}

/// What [`verify_chain`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records checked.
    pub records: u64,
    /// The first record's `seq`: above 0 when the log starts after a
    /// rotation whose earlier files were not given.
    pub first_seq: u64,
}

/// Where and how a chain is broken, or why it was not checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", at_line(*.line))]
#[non_exhaustive]
pub struct ChainError {
    /// The file.
    pub file: String,
    /// The first broken record's line (1-based) in it; 0 when no line is
    /// meant (a file that cannot be opened, a log without records).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
    /// Whether this is a verdict on the chain.
    pub kind: ChainErrorKind,
}

/// `, line N`, unless `line` is 0.
fn at_line(line: u64) -> String {
    match line {
        0 => String::new(),
        n => format!(", line {n}"),
    }
}

/// What a [`ChainError`] says about the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainErrorKind {
    /// A record was edited, removed or moved, or a line is not a record: the
    /// chain is broken there.
    Broken,
    /// The files hold no record, so nothing shows that the log was not
    /// wiped: it does not verify.
    Empty,
    /// A file could not be opened or read (missing, a directory, no
    /// permission): no verdict on the chain.
    Unreadable,
}

/// Checks the files of one log, oldest first (rotated files, then the
/// current one): every line a record, `seq` consecutive, and each `prev`
/// the hash of the line before (across files too). An edited record is
/// named by its line (the next record's `prev` no longer matches it); a
/// removed one by the line where `seq` jumps. The newest record is covered
/// once another follows it.
///
/// A line is read up to 1 MiB (far above the largest record the log
/// writes): a longer one is named as broken and checking stops there, so
/// memory stays bounded whatever the file holds. A log without any record
/// does not verify ([`ChainErrorKind::Empty`]); a file that cannot be read
/// is [`ChainErrorKind::Unreadable`], not a verdict.
pub fn verify_chain(files: &[PathBuf]) -> Result<ChainReport, ChainError> {
    let mut prev: Option<(String, u64)> = None;
    let mut report = ChainReport {
        records: 0,
        first_seq: 0,
    };
    let mut last_line = (String::new(), 0u64);
    let mut line = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let unreadable = |line: u64, what: &str, e: std::io::Error| ChainError {
            file: name.clone(),
            line,
            reason: format!("cannot {what}: {e}"),
            kind: ChainErrorKind::Unreadable,
        };
        let file = File::open(path).map_err(|e| unreadable(0, "open", e))?;
        let mut reader = BufReader::new(file);
        let mut n = 0u64;
        loop {
            line.clear();
            let read = reader
                .by_ref()
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| unreadable(n + 1, "read", e))?;
            if read == 0 {
                break;
            }
            n += 1;
            let broken = |reason: String| ChainError {
                file: name.clone(),
                line: n,
                reason,
                kind: ChainErrorKind::Broken,
            };
            if line.last() == Some(&b'\n') {
                line.pop();
            } else if line.len() > MAX_LINE {
                return Err(broken(format!(
                    "longer than {MAX_LINE} bytes: not an audit record{}",
                    nul_note(&line)
                )));
            }
            if line.is_empty() {
                continue;
            }
            let record: AuditRecord = serde_json::from_slice(&line).map_err(|_| {
                broken(match nul_note(&line) {
                    note if note.is_empty() => "not an audit record (edited?)".to_owned(),
                    note => format!("not an audit record{note}"),
                })
            })?;
            if record.seq == u64::MAX {
                return Err(broken(format!(
                    "seq {}: no record can follow it, no log gets there (forged?)",
                    record.seq
                )));
            }
            match &prev {
                None => {
                    report.first_seq = record.seq;
                    if record.seq == 0 && record.prev != GENESIS {
                        return Err(broken("the first record does not start a chain".into()));
                    }
                }
                Some((hash, seq)) => {
                    // (`seq` is below u64::MAX: checked above.)
                    let next = seq.checked_add(1).unwrap_or(u64::MAX);
                    if record.seq != next {
                        let why = match record.seq.checked_sub(next) {
                            Some(gap) => format!("{gap} record(s) removed before this one"),
                            None => "out of order (moved or repeated)".to_owned(),
                        };
                        return Err(broken(format!("seq {} follows {seq}: {why}", record.seq)));
                    }
                    if record.prev != *hash {
                        let (file, line) = &last_line;
                        return Err(ChainError {
                            file: file.clone(),
                            line: *line,
                            reason: "edited: the next record's prev is not its hash".into(),
                            kind: ChainErrorKind::Broken,
                        });
                    }
                }
            }
            prev = Some((to_hex(&Sha256::digest(&line)), record.seq));
            last_line = (name.clone(), n);
            report.records += 1;
        }
    }
    if report.records == 0 {
        return Err(ChainError {
            file: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            line: 0,
            reason: "no audit record: an empty log does not verify (a wiped one looks the same)"
                .into(),
            kind: ChainErrorKind::Empty,
        });
    }
    Ok(report)
}

/// `; N NUL bytes, as a crash can leave at a file's end` when `line` has
/// any.
fn nul_note(line: &[u8]) -> String {
    match line.iter().filter(|b| **b == 0).count() {
        0 => String::new(),
        n => format!("; {n} NUL bytes, as a crash can leave at a file's end"),
    }
}

/// A request id from the client's `X-Request-Id` when it is a plain token
/// (letters, digits, `-`, `_`, `.`, at most 64) not shaped like the
/// server's own (24 lowercase hex digits), else a new one.
fn request_id(headers: &http::HeaderMap) -> String {
    // A client's id shaped like the server's could name a request of
    // someone else's to come, here or at another replica (an attack pass:
    // read off any answer, the counter's next value was sent ahead, and
    // two records shared an id).
    if let Some(v) = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !shaped_like_ours(v)
    {
        return v.to_owned();
    }
    // A random prefix per process and a counter: unique without a system
    // call per request (ids name requests; they are not secrets).
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        to_hex(&bytes)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The counter as 16 hex digits, without the formatting machinery (a
    // measurable part of the audit layer's cost per request).
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    push_hex(&mut id, &n.to_be_bytes());
    id
}

/// Whether `id` has the shape of a server-made request id: the 4-byte
/// prefix and the 8-byte counter of [`request_id`], in lowercase hex.
fn shaped_like_ours(id: &str) -> bool {
    id.len() == 2 * (4 + 8) && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The response header that carries the request id back.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Writes one [`AuditRecord`] per request through it (see the [module
/// docs](self)).
#[derive(Clone)]
pub struct AuditLayer {
    sink: Arc<dyn AuditSink>,
    trusted_proxies: Arc<Vec<IpNet>>,
    forwarded: crate::ForwardedHeader,
    max_body: usize,
    /// Cancelled when the server stops: a request dropped after that was
    /// given up by the server, not its client.
    stopping: Option<tokio_util::sync::CancellationToken>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer").finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// Records to `sink`; the peer is the client behind `trusted_proxies`;
    /// bodies up to `max_body` bytes are read for the method and tool.
    ///
    /// This layer reads a POST's body before the layers behind it, so in a
    /// stack of one's own put it behind whatever limits unauthenticated
    /// clients; [`McpHttpApp::with_audit`](crate::McpHttpApp::with_audit)
    /// reads bodies only behind its auth layer.
    pub fn new(sink: Arc<dyn AuditSink>, trusted_proxies: Vec<IpNet>, max_body: usize) -> Self {
        Self {
            sink,
            trusted_proxies: Arc::new(trusted_proxies),
            forwarded: crate::ForwardedHeader::Auto,
            max_body,
            stopping: None,
        }
    }

    /// A request left unanswered once `token` is cancelled (the server
    /// stopping) is recorded with `reason` `server_stopped`, not
    /// `client_gone`.
    pub fn stopping_with(mut self, token: tokio_util::sync::CancellationToken) -> Self {
        self.stopping = Some(token);
        self
    }

    /// Reads the client's address from `header` only
    /// (`HTTP_FORWARDED_HEADER`; see [`client_ip_by`](crate::client_ip_by)).
    pub fn forwarded_header(mut self, header: crate::ForwardedHeader) -> Self {
        self.forwarded = header;
        self
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuditLayer`].
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

impl<S> Service<Request<Body>> for AuditService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let (facts, body) = match RequestFacts::read(&parts, body, layer.max_body).await {
                Ok(read) => read,
                Err(too_large) => return Ok(too_large),
            };
            let decisions = crate::auth::Decisions::new(true, false);
            parts.extensions.insert(decisions.clone());
            let sent_session = parts.headers.get(crate::names::MCP_SESSION_ID);
            let (sent_session, session) = (
                sent_session.is_some(),
                crate::observe::session_id_in(sent_session),
            );
            let noted = layer.begin(&parts, sent_session, session);
            let resp = inner.call(Request::from_parts(parts, body)).await?;
            Ok(layer.finish(noted, &facts, decisions.take(), resp).await)
        })
    }
}

/// What [`AuditLayer::begin`] noted of a request, for its record once the
/// response is known.
pub(crate) struct Noted {
    id: String,
    peer: Option<IpAddr>,
    session: Option<String>,
    /// The request named a session (kept in `session` or not).
    sent_session: bool,
    is_delete: bool,
}

impl AuditLayer {
    /// Notes what the record needs of the request (whether it sent an
    /// `Mcp-Session-Id`, and the id as
    /// [`session_id_of`](crate::observe::session_id_of) keeps it, already
    /// read). The layer that calls it puts a
    /// [`Decisions`](crate::auth::Decisions) made for an audit on the
    /// request, for the layers behind to note what they decide, and calls
    /// [`finish`](Self::finish) with it once the response is known. The
    /// observing layer calls both itself when the app has both, so a
    /// request passes one layer for the two rather than two.
    pub(crate) fn begin(
        &self,
        parts: &http::request::Parts,
        sent_session: bool,
        session: Option<String>,
    ) -> Noted {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Noted {
            id: request_id(&parts.headers),
            peer: crate::client_ip_by(&self.trusted_proxies, peer, &parts.headers, self.forwarded),
            session,
            sent_session,
            is_delete: parts.method == http::Method::DELETE,
        }
    }

    /// Records the decision on `resp` (the response of the request
    /// [`begin`](Self::begin) noted; `facts` its method and tool, `decided`
    /// what the layers behind noted) and gives it back with its
    /// `X-Request-Id`.
    pub(crate) async fn finish(
        &self,
        noted: Noted,
        facts: &RequestFacts,
        decided: crate::auth::Decided,
        resp: Response,
    ) -> Response {
        self.finish_from(&mut Some(noted), facts, decided, resp)
            .await
    }

    /// [`finish`](Self::finish), taking `noted` out only once the record is
    /// written: a request dropped before (reading a refusal's body) still
    /// has it for its `abandoned` record.
    pub(crate) async fn finish_from(
        &self,
        noted: &mut Option<Noted>,
        facts: &RequestFacts,
        decided: crate::auth::Decided,
        mut resp: Response,
    ) -> Response {
        let Some(Noted {
            id,
            peer,
            session,
            sent_session,
            is_delete,
        }) = noted.as_ref()
        else {
            return resp;
        };
        let (peer, sent_session, is_delete) = (*peer, *sent_session, *is_delete);
        let status = resp.status();
        // The event follows whether the request named a session, and
        // whether the answer hands one out; the ids recorded are those
        // `session_id_of` keeps.
        let handed_out = !sent_session && resp.headers().contains_key(crate::names::MCP_SESSION_ID);
        // A legacy SSE stream opened: its session is named in the stream,
        // and by the handler here.
        let sse_opened = resp
            .extensions()
            .get::<crate::sse::SseSessionOpened>()
            .map(|s| s.0.clone());
        let event = match (sent_session, handed_out || sse_opened.is_some(), is_delete) {
            (false, true, _) if status.is_success() => "session_start",
            (true, _, true) if status.is_success() => "session_end",
            _ => "request",
        };
        let started = match event {
            "session_start" => sse_opened.or_else(|| crate::observe::session_id_of(resp.headers())),
            _ => None,
        };
        let session_id = match event {
            "session_start" => started.as_deref(),
            _ => session.as_deref(),
        };
        let decision = if status.is_success() { "allow" } else { "deny" };
        let mut time = [0u8; TIME_LEN];
        let time = now_rfc3339_millis_in(&mut time);
        let mut fields = AuditFields {
            time: &time,
            event,
            decision,
            status: status.as_u16(),
            method: facts.method.as_deref(),
            tool: facts.tool.as_deref(),
            ..AuditFields::default()
        };
        fields.session_id = session_id;
        let mut peer_text = crate::net::IpText::default();
        fields.peer = peer.map(|ip| peer_text.write(ip));
        // The auth layer noted it for this record only.
        fields.name_caller(&decided);
        let refusal;
        if !status.is_success() {
            let (reason, detail, scope, rebuilt) = refusal_of(resp).await;
            resp = rebuilt;
            refusal = (reason, detail, scope);
            fields.reason = refusal.0.as_deref();
            fields.detail = refusal.1.as_deref();
            if fields.scopes_required.is_empty() {
                fields.scopes_required = &refusal.2;
            }
        }
        fields.request_id = id;
        self.sink.record_fields(&fields);
        // Written: nothing left for an `abandoned` record. The id's own
        // buffer, not a copy.
        if let Some(noted) = noted.take()
            && let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(noted.id))
        {
            resp.headers_mut().insert(X_REQUEST_ID, v);
        }
        resp
    }
}

impl AuditLayer {
    /// The record of a request dropped before it was answered (see
    /// `observe::Unanswered`): `decision` `abandoned`, `status` 0, `reason`
    /// `client_gone`, and who was let in and what was asked, as far as the
    /// layers got.
    pub(crate) fn unanswered(&self, noted: Noted, mut decided: crate::auth::Decided) {
        let Noted {
            id, peer, session, ..
        } = noted;
        let facts = decided.facts.take().unwrap_or_default();
        let mut time = [0u8; TIME_LEN];
        let time = now_rfc3339_millis_in(&mut time);
        let mut fields = AuditFields {
            time: &time,
            event: "request",
            decision: "abandoned",
            status: 0,
            reason: Some(match &self.stopping {
                Some(t) if t.is_cancelled() => "server_stopped",
                _ => "client_gone",
            }),
            method: facts.method.as_deref(),
            tool: facts.tool.as_deref(),
            session_id: session.as_deref(),
            request_id: &id,
            ..AuditFields::default()
        };
        let mut peer_text = crate::net::IpText::default();
        fields.peer = peer.map(|ip| peer_text.write(ip));
        fields.name_caller(&decided);
        self.sink.record_fields(&fields);
    }
}

impl<'a> AuditFields<'a> {
    /// Who the layers let in and what the operation needed, as they noted
    /// it in `decided`.
    fn name_caller(&mut self, decided: &'a crate::auth::Decided) {
        if let Some(p) = &decided.who {
            self.key_fingerprint = p.key_fingerprint.as_deref();
            self.subject = p.subject.as_deref();
            self.strategy = Some(&p.strategy);
            self.client_id = p.client_id.as_deref();
            self.issuer = p.issuer.as_deref();
            self.scopes_held = &p.scopes;
        }
        if let Some(s) = &decided.required {
            self.scopes_required = s;
        }
    }
}

/// A refusal's `error`, `error_description` and `scope` (from its small
/// JSON body; the response is rebuilt unchanged).
async fn refusal_of(resp: Response) -> (Option<String>, Option<String>, Vec<String>, Response) {
    let small_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
        && http_body::Body::size_hint(resp.body())
            .upper()
            .is_some_and(|n| n <= 16 * 1024);
    if !small_json {
        let reason = resp
            .status()
            .canonical_reason()
            .map(|r| r.to_ascii_lowercase().replace(' ', "_"));
        return (reason, None, Vec::new(), resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    // OAuth-style bodies name `error`; JSON-RPC ones nest it.
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let (reason, detail) = match (text("error"), v.get("error")) {
        (Some(e), _) => (Some(e), text("error_description")),
        (None, Some(e)) => (
            e.get("code").map(|c| format!("jsonrpc_{c}")),
            e.get("message").and_then(|m| m.as_str()).map(str::to_owned),
        ),
        _ => (None, None),
    };
    let scope = text("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    (
        reason,
        detail,
        scope,
        Response::from_parts(parts, Body::from(bytes)),
    )
}

/// An [`AuditSink`] that keeps records in memory (tests, embedding).
#[derive(Debug, Default, Clone)]
pub struct MemoryAudit {
    records: Arc<Mutex<Vec<AuditRecord>>>,
}

impl MemoryAudit {
    /// The records so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: AuditRecord) {
        if let Ok(mut r) = self.records.lock() {
            r.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails while `failing` and otherwise keeps what it is
    /// given, at most `short` bytes per write when set (partial writes).
    #[derive(Default)]
    pub(super) struct Flaky {
        failing: bool,
        short: Option<usize>,
        out: Vec<u8>,
    }

    impl Write for Flaky {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.failing {
                return Err(std::io::Error::other("no space left on device"));
            }
            let n = self.short.map_or(b.len(), |s| s.min(b.len()));
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A log over a [`Flaky`] writer, failing from the start.
    fn flaky_log() -> (Arc<Mutex<Flaky>>, AuditLog) {
        let flaky = Arc::new(Mutex::new(Flaky {
            failing: true,
            ..Flaky::default()
        }));
        let log = AuditLog::start(Target::Test(flaky.clone()), GENESIS.to_owned(), 0).unwrap();
        (flaky, log)
    }

    /// What the writer wrote, checked as a chain; the records.
    fn written(flaky: &Mutex<Flaky>, dir: &Path) -> (ChainReport, Vec<AuditRecord>) {
        let path = dir.join("written.jsonl");
        std::fs::write(&path, &flaky.lock().unwrap().out).unwrap();
        let report = verify_chain(std::slice::from_ref(&path)).unwrap();
        let records = lines(&path)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (report, records)
    }

    #[test]
    fn failed_writes_are_retried_in_order_without_a_lost_or_repeated_record() {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, log) = flaky_log();
        for i in 0..50 {
            log.record(AuditRecord {
                subject: Some(format!("user-{i}")),
                ..AuditRecord::new("request", "allow", 200)
            });
        }
        // Several rounds fail.
        std::thread::sleep(Duration::from_millis(60));
        assert!(flaky.lock().unwrap().out.is_empty());
        {
            let mut f = flaky.lock().unwrap();
            f.failing = false;
            f.short = Some(7);
        }
        write(&log, 50);
        let (report, records) = written(&flaky, dir.path());
        assert_eq!(report.records, 100);
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..100).collect::<Vec<_>>());
        assert_eq!(records[0].subject.as_deref(), Some("user-0"));
        assert_eq!(records[49].subject.as_deref(), Some("user-49"));
    }

    #[test]
    fn a_log_that_cannot_be_written_drops_past_its_bound_and_the_chain_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, log) = flaky_log();
        let pushed = MAX_QUEUED * 2 + MAX_TAKE * 100;
        for i in 0..pushed {
            log.record(AuditRecord {
                subject: Some(i.to_string()),
                ..AuditRecord::new("request", "allow", 200)
            });
        }
        flaky.lock().unwrap().failing = false;
        // Answered once everything is written, not at its timeout.
        let started = Instant::now();
        log.flush();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "flush waited out its timeout"
        );
        let (report, records) = written(&flaky, dir.path());
        let gaps: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| r.event == "records_dropped")
            .collect();
        assert!(!gaps.is_empty(), "the chain says records were lost");
        let kept = records.len() - gaps.len();
        let mut said = 0;
        for gap in &gaps {
            assert_eq!(
                (gap.decision.as_str(), gap.reason.as_deref()),
                ("lost", Some("queue_full"))
            );
            let detail = gap.detail.as_deref().unwrap();
            let n = detail
                .strip_suffix(" records dropped: the audit log could not be written")
                .unwrap();
            said += n.parse::<usize>().unwrap();
        }
        assert_eq!(said, pushed - kept, "every dropped record is accounted for");
        assert!(said > 0, "the bound was reached");
        // Order kept, nothing repeated; the first record of a loss follows
        // the last record taken before the first one lost.
        let index = |r: &AuditRecord| r.subject.as_deref().map(|s| s.parse::<usize>().unwrap());
        let kept: Vec<usize> = records.iter().filter_map(index).collect();
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order, once each");
        let first_lost = (0..pushed)
            .find(|i| kept.binary_search(i).is_err())
            .unwrap();
        let first_gap = records
            .iter()
            .position(|r| r.event == "records_dropped")
            .unwrap();
        assert_eq!(index(&records[first_gap - 1]), Some(first_lost - 1));
        assert_eq!(report.records, records.len() as u64, "the chain is whole");
    }

    /// Records that escape to several times their text (control
    /// characters) reach the byte bound long before the count bound: the
    /// memory a stalled log holds is bounded either way.
    #[test]
    fn large_records_are_bounded_by_their_bytes_too() {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, log) = flaky_log();
        let pushed = MAX_QUEUED / 10;
        for i in 0..pushed {
            log.record(AuditRecord {
                subject: Some(i.to_string()),
                // 4 KiB of text, 24 KiB encoded.
                detail: Some("\u{1}".repeat(4096)),
                ..AuditRecord::new("request", "deny", 401)
            });
        }
        flaky.lock().unwrap().failing = false;
        log.flush();
        let (report, records) = written(&flaky, dir.path());
        let said: usize = records
            .iter()
            .filter(|r| r.event == "records_dropped")
            .map(|r| {
                let d = r.detail.as_deref().unwrap();
                d.split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum();
        let kept = records.iter().filter(|r| r.event == "request").count();
        assert!(said > 0, "the byte bound was reached");
        assert_eq!(kept + said, pushed, "every record written or accounted for");
        assert!(kept * 24 * 1024 < MAX_QUEUED_BYTES + MAX_UNWRITTEN + 64 * 1024);
        assert_eq!(report.records, records.len() as u64, "the chain is whole");
    }

    fn log_in(dir: &Path) -> (PathBuf, AuditLog) {
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(path.to_str().unwrap()).unwrap();
        (path, log)
    }

    fn write(log: &AuditLog, n: usize) {
        for i in 0..n {
            log.record(AuditRecord {
                subject: Some(format!("user-{i}")),
                ..AuditRecord::new("request", "allow", 200)
            });
        }
        log.flush();
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_deleted_record_is_named_by_the_seq_gap() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 5);
        assert_eq!(
            verify_chain(std::slice::from_ref(&path)).unwrap().records,
            5
        );
        let mut l = lines(&path);
        l.remove(2);
        std::fs::write(&path, l.join("\n") + "\n").unwrap();
        let e = verify_chain(&[path]).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("1 record(s) removed"), "{e}");
    }

    #[test]
    fn an_edited_record_is_named_and_a_reordered_one_too() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 4);
        let original = lines(&path);
        let mut l = original.clone();
        l[1] = l[1].replace("\"allow\"", "\"deny\"");
        std::fs::write(&path, l.join("\n") + "\n").unwrap();
        let e = verify_chain(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("edited"), "{e}");
        let mut l = original;
        l.swap(1, 2);
        std::fs::write(&path, l.join("\n") + "\n").unwrap();
        assert!(verify_chain(&[path]).is_err());
    }

    #[test]
    fn the_chain_continues_across_restarts_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 2);
        drop(log);
        // A restart continues the file's chain.
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        // Rotation: the file is renamed away; the next record starts a new
        // file in the same chain, at once (an attack pass: for a second
        // records went on into the renamed file, lost when logrotate
        // compressed it right away).
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        write(&log, 2);
        assert_eq!(lines(&rotated).len(), 3);
        assert_eq!(lines(&path).len(), 2);
        let r = verify_chain(&[rotated.clone(), path.clone()]).unwrap();
        assert_eq!((r.records, r.first_seq), (5, 0));
        // The current file alone starts mid-chain, and says so.
        assert_eq!(
            verify_chain(std::slice::from_ref(&path)).unwrap().first_seq,
            3
        );
        // The files in the wrong order do not verify.
        assert!(verify_chain(&[path, rotated]).is_err());
    }

    /// A log's first start finds the side file its lock made, empty: no
    /// head, not an unreadable one (a review: every new log began with a
    /// warning that its chain head could not be read).
    #[test]
    fn an_empty_side_file_is_no_head() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        let head = head_of(&path);
        drop(log);
        std::fs::write(&head, b"").unwrap();
        assert!(matches!(read_head(&head), Ok(None)));
        std::fs::write(&head, b"garbage").unwrap();
        assert!(read_head(&head).is_err());
    }

    /// Two writers of one log would fork its chain (an attack pass: two
    /// servers on one `MCP_AUDIT_LOG` wrote seq 0, 1, 2, 3, 2, 3 without a
    /// word): the second is refused, naming what it found held; once the
    /// first is gone, the log opens again and its chain goes on.
    #[test]
    fn a_log_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (path, first) = log_in(dir.path());
        write(&first, 2);
        let refused = AuditLog::open(path.to_str().unwrap()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ResourceBusy);
        assert!(
            refused
                .to_string()
                .contains("another process writes this audit log")
                && refused.to_string().contains(".audit.jsonl.chain"),
            "{refused}"
        );
        // The side file removed while the writer runs: the new one it
        // makes is locked too (a review: the lock stayed on the removed
        // file, and a second writer started then was let in).
        std::fs::remove_file(head_of(&path)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        write(&first, 1);
        assert!(head_of(&path).exists());
        let refused = AuditLog::open(path.to_str().unwrap()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ResourceBusy);
        drop(first);
        let (_, again) = log_in(dir.path());
        write(&again, 1);
        assert_eq!(verify_chain(&[path]).unwrap().records, 4);
    }

    /// The side file beside `path`.
    fn head_of(path: &Path) -> PathBuf {
        path.with_file_name(format!(
            ".{}.chain",
            path.file_name().unwrap().to_str().unwrap()
        ))
    }

    /// Rotated (renamed, a new file made or not) while the writer was
    /// stopped: the new file's first record names the old file's last one,
    /// from the head kept beside the log.
    #[test]
    fn a_log_rotated_while_stopped_goes_on_from_the_head_kept_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 3);
        drop(log);
        let head = head_of(&path);
        let text = std::fs::read(&head).unwrap();
        assert_eq!(text.len(), HEAD_LEN);
        assert!(text.starts_with(b"audit-chain next=00000000000000000003 prev="));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&head).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Renamed away, no new file (the default): missing at start.
        let first = dir.path().join("audit.jsonl.2");
        std::fs::rename(&path, &first).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 2);
        drop(log);
        // Renamed away and a new empty file made (logrotate's `create`).
        let second = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &second).unwrap();
        File::create(&path).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        let r = verify_chain(&[first, second, path.clone()]).unwrap();
        assert_eq!((r.records, r.first_seq), (6, 0));
        assert_eq!(verify_chain(&[path]).unwrap().first_seq, 5);
    }

    /// The side file is never written through a symbolic link or into a
    /// file with another name (what someone with write access to the log's
    /// directory could put there), never waited on as a FIFO; and one
    /// removed while the server runs is made again at the next write.
    #[cfg(unix)]
    #[test]
    fn the_head_file_is_only_ever_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let head = head_of(&path);
        let victim = dir.path().join("config.toml");
        std::fs::write(&victim, "keep me\n").unwrap();
        // A symbolic link, then a hard link, in the head's place.
        std::os::unix::fs::symlink(&victim, &head).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 2);
        drop(log);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        std::fs::remove_file(&head).unwrap();
        std::fs::hard_link(&victim, &head).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert_eq!(
            verify_chain(std::slice::from_ref(&path)).unwrap().records,
            3
        );
        // A FIFO: refused at once, not waited on.
        std::fs::remove_file(&head).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&head)
            .status()
            .unwrap();
        assert!(made.success());
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        // Removed while the server runs: made again.
        std::fs::remove_file(&head).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        std::fs::remove_file(&head).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        write(&log, 1);
        let text = std::fs::read(&head).unwrap();
        assert!(
            text.starts_with(b"audit-chain next=00000000000000000006 prev="),
            "{text:?}"
        );
    }

    /// The log itself is only ever a file of its own too: a symbolic link
    /// or a FIFO where the log was (rotated away by someone with write
    /// access to the directory) is not written through, at start or after
    /// a rotation; an existing log keeps its owner's and group's bits but
    /// not others'.
    #[cfg(unix)]
    #[test]
    fn the_log_is_only_ever_a_file_of_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        // At start: a link in the log's place is refused, naming it.
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let Err(e) = AuditLog::open(path.to_str().unwrap()) else {
            panic!("opened through a symbolic link")
        };
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        std::fs::remove_file(&path).unwrap();
        // A directory in its place: refused, and no side file is left
        // beside what was refused (an attack pass: `/dev/null` left
        // `/dev/.null.chain`).
        let sub = dir.path().join("adir");
        std::fs::create_dir(&sub).unwrap();
        let Err(e) = AuditLog::open(sub.to_str().unwrap()) else {
            panic!("opened a directory")
        };
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(!dir.path().join(".adir.chain").exists());
        assert!(!dir.path().join(".audit.jsonl.chain").exists());
        // A new log is made 0600; one that exists keeps its owner's and
        // group's bits (a rotation's `create 0640 mcp adm`), not others'.
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // Rotated away, a link put in its place: not written through.
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        let before = std::fs::read(&rotated).unwrap().len();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        write(&log, 2);
        std::thread::sleep(Duration::from_millis(1500));
        write(&log, 1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        // Nor into the file rotated away (deleted or compressed next):
        // they wait for a file of its own.
        assert_eq!(std::fs::read(&rotated).unwrap().len(), before);
        // A FIFO in its place: not waited on, nothing handed to it (the
        // writer goes on once a file of its own is there again).
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        std::thread::sleep(Duration::from_millis(1100));
        write(&log, 1);
        std::thread::sleep(Duration::from_millis(300));
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        write(&log, 1);
        drop(log);
        assert!(std::fs::metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        // Every record kept, the chain whole across the rotation.
        let report = verify_chain(&[rotated, path]).unwrap();
        assert_eq!(report.records, 7);
    }

    /// A log that ends before what the side file says was written goes on
    /// from the side file, so the records missing are reported (an attack
    /// pass: going on from the log's last line made records cut from its
    /// end, or an edited last line, part of an intact chain with the next
    /// record); a side file behind the log is overwritten; one that cannot
    /// be read starts a new chain (as without one) for an empty log, and is
    /// rewritten.
    #[test]
    fn a_head_ahead_of_the_log_is_followed_and_a_bad_head_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 2);
        drop(log);
        let head = head_of(&path);
        std::fs::write(&head, encode_head(41, &hex32(&[7; 32]))).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        let e = verify_chain(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.reason.contains("39 record(s) removed"), "{e:?}");
        assert!(
            std::fs::read(&head)
                .unwrap()
                .starts_with(b"audit-chain next=00000000000000000042")
        );
        // Behind the log (a crash between the log's write and the head's):
        // the log is followed.
        std::fs::remove_file(&path).unwrap();
        let (_, log) = log_in(dir.path());
        drop(log);
        std::fs::remove_file(&head).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 3);
        drop(log);
        std::fs::write(&head, encode_head(1, &hex32(&[7; 32]))).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        let r = verify_chain(std::slice::from_ref(&path)).unwrap();
        assert_eq!((r.records, r.first_seq), (4, 0));
        for bad in [
            &b"garbage"[..],
            b"",
            &encode_head(u64::MAX, &hex32(&[7; 32]))[..],
            &encode_head(
                5,
                b"not hex, not hex, not hex, not hex, not hex, not hex, not hex, n",
            )[..],
        ] {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&head, bad).unwrap();
            let (_, log) = log_in(dir.path());
            write(&log, 1);
            drop(log);
            let first: AuditRecord = serde_json::from_str(&lines(&path)[0]).unwrap();
            assert_eq!((first.seq, first.prev.as_str()), (0, GENESIS));
            assert_eq!(std::fs::read(&head).unwrap().len(), HEAD_LEN);
        }
    }

    /// A last line edited while the server was stopped is named by `audit
    /// verify` once the server has written again (an attack pass: the next
    /// record chained onto the edited line, and the log verified intact).
    #[test]
    fn an_edited_last_line_is_named_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 2);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("\"user-1\"", "\"user-9\"", 1);
        assert_ne!(text, edited);
        std::fs::write(&path, edited).unwrap();
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        let e = verify_chain(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
        assert!(e.reason.contains("edited"), "{e:?}");
    }

    /// The side file is hidden beside the log (out of `*` and `*.jsonl`),
    /// and its text reads back as written.
    #[test]
    fn the_head_file_is_named_to_stay_out_of_rotation_globs() {
        assert_eq!(
            head_path(Path::new("/var/log/mcp/audit.jsonl")),
            Some(PathBuf::from("/var/log/mcp/.audit.jsonl.chain"))
        );
        assert_eq!(head_path(Path::new("/")), None);
        let (prev, seq) = (hex32(&[0xab; 32]), 123_456_789);
        assert_eq!(
            parse_head(&encode_head(seq, &prev)),
            Some((String::from_utf8(prev.to_vec()).unwrap(), seq))
        );
    }

    /// One long line (a NUL-filled file's end, `/dev/zero`) is read up to
    /// [`MAX_LINE`], named, and checking stops.
    #[test]
    fn an_over_long_line_is_named_and_not_held_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 2);
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&vec![0u8; 3 * MAX_LINE]).unwrap();
        drop(f);
        let e = verify_chain(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!((e.line, e.kind), (3, ChainErrorKind::Broken), "{e}");
        assert!(
            e.reason.contains("longer than") && e.reason.contains("NUL"),
            "{e}"
        );
        #[cfg(unix)]
        {
            let e = verify_chain(&[PathBuf::from("/dev/zero")]).unwrap_err();
            assert_eq!((e.line, e.kind), (1, ChainErrorKind::Broken), "{e}");
        }
        // A short NUL run is named too.
        let mut l = lines(&path)[..2].join("\n") + "\n";
        l.push_str(&"\0".repeat(4096));
        std::fs::write(&path, &l).unwrap();
        let e = verify_chain(std::slice::from_ref(&path)).unwrap_err();
        assert!(e.line == 3 && e.reason.contains("4096 NUL bytes"), "{e}");
    }

    /// A NUL-filled end (what a crash can leave) stops the log from opening
    /// with an error that says so; a legitimate record over the old 64 KiB
    /// window does not.
    #[test]
    fn a_nul_filled_end_is_refused_clearly_and_a_large_last_record_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = log_in(dir.path());
        write(&log, 1);
        log.record(AuditRecord {
            detail: Some("\u{1}".repeat(20_000)),
            ..AuditRecord::new("request", "deny", 401)
        });
        log.flush();
        drop(log);
        assert!(std::fs::metadata(&path).unwrap().len() > 100 * 1024);
        let (_, log) = log_in(dir.path());
        write(&log, 1);
        drop(log);
        assert_eq!(
            verify_chain(std::slice::from_ref(&path)).unwrap().records,
            3
        );
        for nuls in [100, 200 * 1024, 2 * MAX_LINE] {
            let mut l = lines(&path).join("\n") + "\n";
            l.push_str(&"\0".repeat(nuls));
            let nul = dir.path().join("nul.jsonl");
            std::fs::write(&nul, &l).unwrap();
            let e = AuditLog::open(nul.to_str().unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("is not an audit record") && (e.contains("NUL") || e.contains("longer")),
                "{nuls}: {e}"
            );
        }
    }

    /// A crafted `seq` of u64::MAX is a broken record, not an overflow, in
    /// verifying and in resuming.
    #[test]
    fn a_seq_of_u64_max_is_broken_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = serde_json::to_string(&AuditRecord {
            seq: u64::MAX,
            prev: GENESIS.into(),
            ..AuditRecord::new("request", "allow", 200)
        })
        .unwrap();
        let second = serde_json::to_string(&AuditRecord {
            seq: 0,
            prev: to_hex(&Sha256::digest(first.as_bytes())),
            ..AuditRecord::new("request", "allow", 200)
        })
        .unwrap();
        std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
        let e = verify_chain(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!((e.line, e.kind), (1, ChainErrorKind::Broken), "{e}");
        std::fs::write(&path, format!("{first}\n")).unwrap();
        let e = AuditLog::open(path.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("no record can follow"), "{e}");
    }

    /// No record in any file does not verify; a file that cannot be read
    /// is not a verdict.
    #[test]
    fn an_empty_log_does_not_verify_and_an_unreadable_one_is_no_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "\n\n").unwrap();
        let e = verify_chain(std::slice::from_ref(&empty)).unwrap_err();
        assert_eq!(e.kind, ChainErrorKind::Empty, "{e}");
        assert!(e.to_string().contains("no audit record"), "{e}");
        for path in [dir.path().join("missing.jsonl"), dir.path().to_owned()] {
            let e = verify_chain(&[path]).unwrap_err();
            assert_eq!(e.kind, ChainErrorKind::Unreadable, "{e}");
        }
    }

    #[test]
    fn record_times_are_rfc3339_utc_millis_of_now() {
        for _ in 0..3 {
            let before = chrono::Utc::now();
            let t = now_rfc3339_millis();
            let after = chrono::Utc::now();
            assert_eq!(t.len(), "2026-11-26T03:18:40.123Z".len(), "{t}");
            assert!(t.ends_with('Z'), "{t}");
            let parsed = chrono::DateTime::parse_from_rfc3339(&t).unwrap();
            let floor = |d: chrono::DateTime<chrono::Utc>| d.timestamp_millis();
            assert!(
                floor(before) <= parsed.timestamp_millis()
                    && parsed.timestamp_millis() <= floor(after),
                "{t} not between {before} and {after}"
            );
            std::thread::sleep(Duration::from_millis(7));
        }
    }

    #[test]
    fn records_are_encoded_byte_for_byte_as_serde_encodes_them() {
        // Every ASCII character at every offset around the eight-byte
        // chunks, text beyond ASCII, and each field present or not.
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "\u{e9}\u{4e2d}\u{1f600}".into(),
            "\u{7f}\u{80}\u{2028}\u{feff}".into(),
            "\"\\\"\\".repeat(5),
        ];
        for b in 0u8..0x80 {
            for pad in 0..10 {
                let (left, right) = ("a".repeat(pad), "\u{e9}".repeat(pad % 3));
                samples.push(format!("{left}{}{right}", char::from(b)));
            }
            // At every position of strings shorter than, as long as, and
            // longer than the words checked (and their overlapping tail).
            for len in 1..=25 {
                for at in 0..len {
                    let (left, right) = ("a".repeat(at), "z".repeat(len - 1 - at));
                    samples.push(format!("{left}{}{right}", char::from(b)));
                }
            }
        }
        for (i, s) in samples.iter().enumerate() {
            let mut r = AuditRecord::new("request", "deny", [0, 200, 403, u16::MAX][i % 4]);
            r.seq = [0, 9, 10, u64::MAX][i % 4];
            r.prev = to_hex(&Sha256::digest(s.as_bytes()));
            if i % 2 == 0 {
                let some = || Some(s.clone());
                r.request_id = s.clone();
                (r.reason, r.detail, r.method, r.tool) = (some(), some(), some(), some());
                r.scopes_required = vec![s.clone()];
                r.scopes_held = vec!["a".into(), s.clone(), String::new()];
                (r.strategy, r.subject, r.client_id, r.issuer) = (some(), some(), some(), some());
                (r.key_fingerprint, r.session_id, r.peer) = (some(), some(), some());
            } else {
                r.event = s.clone();
                r.subject = Some(s.clone());
            }
            let mut encoded = b"earlier records".to_vec();
            let split = encode(&r.fields(), &mut encoded) + "earlier records".len();
            let mut line = encoded[..split].to_vec();
            push_link(&mut line, r.seq, r.prev.as_bytes());
            line.extend_from_slice(&encoded[split..]);
            assert_eq!(
                String::from_utf8(line).unwrap()["earlier records".len()..],
                serde_json::to_string(&r).unwrap(),
                "sample {i}: {s:?}"
            );
        }
    }

    /// Records encoded with the callers' cache are the bytes encoded
    /// without it: for callers that differ from one another in a single
    /// field (each of them, `Some("")` against `None` and an empty scope
    /// included), in runs and in turns through more callers than are kept,
    /// with the fields around theirs changing from record to record.
    #[test]
    fn callers_from_the_cache_are_encoded_as_without_it() {
        let some = |v: &str| Some(v.to_owned());
        let base = || {
            let mut r = AuditRecord::new("request", "allow", 200);
            (r.strategy, r.subject) = (some("oauth2"), some("alice"));
            (r.client_id, r.issuer) = (some("app"), some("https://as.example"));
            r.scopes_held = vec!["mcp:tools".into()];
            r
        };
        // Each differs from `base` in one field.
        let variants: Vec<AuditRecord> = vec![
            base(),
            AuditRecord {
                scopes_held: vec![],
                ..base()
            },
            AuditRecord {
                scopes_held: vec![String::new()],
                ..base()
            },
            AuditRecord {
                scopes_held: vec!["mcp:tools".into(), "admin".into()],
                ..base()
            },
            AuditRecord {
                strategy: None,
                ..base()
            },
            AuditRecord {
                strategy: some("api_key"),
                ..base()
            },
            AuditRecord {
                subject: None,
                ..base()
            },
            AuditRecord {
                subject: some(""),
                ..base()
            },
            AuditRecord {
                subject: some("q\"uote"),
                ..base()
            },
            AuditRecord {
                client_id: None,
                ..base()
            },
            AuditRecord {
                client_id: some(""),
                ..base()
            },
            AuditRecord {
                issuer: None,
                ..base()
            },
            AuditRecord {
                issuer: some("https://other.example"),
                ..base()
            },
            AuditRecord {
                key_fingerprint: some("0a1b2c3d4e5f"),
                ..base()
            },
            AuditRecord {
                key_fingerprint: some(""),
                ..base()
            },
            // Too large to be kept: encoded each time.
            AuditRecord {
                subject: Some("x".repeat(2000)),
                ..base()
            },
        ];
        let mut cache = CallerCache::default();
        let (mut hits, mut misses) = (0, 0);
        for i in 0..900_usize {
            // Runs of three, then turns through all of them.
            let k = if i < 450 {
                (i / 3) % variants.len()
            } else {
                i % variants.len()
            };
            let mut r = variants[k].clone();
            // The fields on either side of the caller's change too.
            r.scopes_required = if i % 2 == 0 {
                vec![]
            } else {
                vec!["admin".into()]
            };
            r.tool = (i % 3 != 0).then(|| "get_time".to_owned());
            r.session_id = (i % 5 != 0).then(|| format!("s-{}", i % 7));
            r.peer = (i % 4 != 0).then(|| "127.0.0.1".to_owned());
            let f = r.fields();
            let caller = Caller {
                scopes_held: f.scopes_held,
                strategy: f.strategy,
                subject: f.subject,
                client_id: f.client_id,
                issuer: f.issuer,
                key_fingerprint: f.key_fingerprint,
            };
            let hit = cache.entries.iter().any(|(c, _)| c.as_caller() == caller);
            (hits, misses) = (hits + usize::from(hit), misses + usize::from(!hit));
            let (mut plain, mut cached) = (Vec::new(), Vec::new());
            let split = encode(&f, &mut plain);
            let cached_split = encode_with(&f, &mut cached, Some(&mut cache));
            assert_eq!(
                (String::from_utf8_lossy(&cached), cached_split),
                (String::from_utf8_lossy(&plain), split),
                "record {i}, caller {k}"
            );
        }
        assert!(hits > 200 && misses > 200, "{hits} hits, {misses} misses");
    }

    #[test]
    fn chain_links_are_lowercase_hex_of_the_digest() {
        let digest = Sha256::digest(b"a line");
        assert_eq!(to_hex(&digest), hex::encode(digest));
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // The writer's links, as verifying and resuming compare them.
        assert_eq!(hex32(&digest), to_hex(&digest).as_bytes());
    }

    #[test]
    fn request_ids_are_plain_tokens_or_new() {
        let mut h = http::HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        h.insert("x-request-id", HeaderValue::from_static("bad id\"}"));
        let id = request_id(&h);
        assert_eq!(id.len(), 24);
        let next = request_id(&h);
        assert_ne!(id, next);
        // A per-process prefix, then a counter in 16 lowercase hex digits.
        assert_eq!(id[..8], next[..8]);
        let count = |s: &str| u64::from_str_radix(&s[8..], 16).unwrap();
        assert!(count(&next) > count(&id));
        assert!(
            next.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // No id shaped like the server's is taken from a client: not the
        // one the server makes next, which the next request (someone
        // else's) would share.
        let ahead = format!("{}{:016x}", &next[..8], count(&next) + 1);
        h.insert("x-request-id", HeaderValue::from_str(&ahead).unwrap());
        let sent_ahead = request_id(&h);
        let someone_elses = request_id(&http::HeaderMap::new());
        assert_ne!(sent_ahead, someone_elses);
        // Nor one shaped like them (another replica's), while one that is
        // not is taken.
        let other_replica = "0123456789abcdef01234567";
        h.insert("x-request-id", HeaderValue::from_static(other_replica));
        assert_ne!(request_id(&h), other_replica);
        let mine = format!("{}-mine", &next[..8]);
        h.insert("x-request-id", HeaderValue::from_str(&mine).unwrap());
        assert_eq!(request_id(&h), mine);
    }

    #[test]
    fn an_expired_session_record_names_its_owner_or_no_one() {
        let r = expired_session_record("sid-1", Some("https://as\u{1f}alice\u{1f}app"));
        assert_eq!(
            (r.event.as_str(), r.decision.as_str(), r.status),
            ("session_end", "expire", 0)
        );
        assert_eq!(r.reason.as_deref(), Some("expired"));
        assert_eq!(r.session_id.as_deref(), Some("sid-1"));
        assert_eq!(
            (
                r.issuer.as_deref(),
                r.subject.as_deref(),
                r.client_id.as_deref()
            ),
            (Some("https://as"), Some("alice"), Some("app"))
        );
        // An API key's owner: no issuer, no client id.
        let r = expired_session_record("sid-2", Some("\u{1f}api-key:ci-bot\u{1f}"));
        assert_eq!(
            (r.issuer, r.subject.as_deref(), r.client_id),
            (None, Some("api-key:ci-bot"), None)
        );
        // Anonymous, or not an owner string: nobody rather than a guess.
        for owner in [
            None,
            Some("opaque"),
            Some("a\u{1f}b"),
            Some("a\u{1f}\u{1f}c"),
        ] {
            let r = expired_session_record("sid-3", owner);
            assert_eq!(
                (r.issuer, r.subject, r.client_id),
                (None, None, None),
                "{owner:?}"
            );
        }
    }

    /// `AuditLayer` on its own, in a stack assembled by hand (`McpHttpApp`
    /// has its observing layer write the records instead): the records
    /// name who the auth layer behind let in, and the refused requests.
    #[tokio::test]
    async fn the_layer_on_its_own_records_who_was_let_in_and_who_was_not() {
        use tower::ServiceExt;
        const KEY: &str = "ops-key-0123456789abcdef";
        let keys = mcp_auth_strategies::ApiKeyAuthenticator::named("ops-bot", KEY, &["admin"])
            .expect("key");
        let sink = MemoryAudit::default();
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(|| async { "{}" }))
            .layer(crate::AuthLayer::new(keys))
            .layer(AuditLayer::new(Arc::new(sink.clone()), Vec::new(), 4096));
        let call = |key: Option<&str>| {
            let mut req = Request::post("/mcp")
                .header("x-request-id", "req-1")
                .header("mcp-session-id", "s-1");
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            req.body(Body::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"status"}}"#,
            ))
            .expect("request")
        };
        let ok = app
            .clone()
            .oneshot(call(Some(KEY)))
            .await
            .expect("response");
        assert_eq!(ok.status(), http::StatusCode::OK);
        assert_eq!(ok.headers()[X_REQUEST_ID], "req-1");
        let refused = app.oneshot(call(None)).await.expect("response");
        assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
        let records = sink.records();
        let [allowed, denied] = &records[..] else {
            panic!("two records: {records:#?}");
        };
        assert_eq!(
            (
                allowed.event.as_str(),
                allowed.decision.as_str(),
                allowed.status
            ),
            ("request", "allow", 200)
        );
        assert_eq!(allowed.subject.as_deref(), Some("api-key:ops-bot"));
        assert_eq!(allowed.strategy.as_deref(), Some("api_key"));
        assert_eq!(allowed.scopes_held, ["admin"]);
        assert_eq!(
            allowed.key_fingerprint,
            Some(mcp_auth_strategies::fingerprint(KEY.as_bytes()))
        );
        assert_eq!(
            (allowed.method.as_deref(), allowed.tool.as_deref()),
            (Some("tools/call"), Some("status"))
        );
        assert_eq!(allowed.session_id.as_deref(), Some("s-1"));
        assert_eq!(allowed.request_id, "req-1");
        assert_eq!(
            (
                denied.decision.as_str(),
                denied.status,
                denied.reason.as_deref()
            ),
            ("deny", 401, Some("unauthorized"))
        );
        assert_eq!(
            (denied.subject.as_ref(), denied.key_fingerprint.as_ref()),
            (None, None)
        );
        assert_eq!(
            denied.tool.as_deref(),
            Some("status"),
            "refused calls name their tool"
        );
    }

    /// A session id past what records keep still makes its session's start
    /// and end events (without the id); one within is recorded as is.
    #[tokio::test]
    async fn session_events_follow_the_header_whatever_the_id() {
        use tower::ServiceExt;
        let long = format!("eyJ{}", "a".repeat(600));
        let sink = MemoryAudit::default();
        let handed = long.clone();
        let app = axum::Router::new()
            .route(
                "/mcp",
                axum::routing::post(move || {
                    let id = handed.clone();
                    async move { ([("mcp-session-id", id)], "{}") }
                })
                .delete(|| async { "" }),
            )
            .layer(AuditLayer::new(Arc::new(sink.clone()), Vec::new(), 4096));
        let open = Request::post("/mcp")
            .body(Body::from("{}"))
            .expect("request");
        app.clone().oneshot(open).await.expect("response");
        let end = Request::delete("/mcp")
            .header("mcp-session-id", &long)
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(end).await.expect("response");
        let end = Request::delete("/mcp")
            .header("mcp-session-id", "s-2")
            .body(Body::empty())
            .expect("request");
        app.oneshot(end).await.expect("response");
        let events: Vec<_> = sink
            .records()
            .into_iter()
            .map(|r| (r.event, r.session_id))
            .collect();
        assert_eq!(
            events,
            [
                ("session_start".to_owned(), None),
                ("session_end".to_owned(), None),
                ("session_end".to_owned(), Some("s-2".to_owned())),
            ]
        );
    }

    /// What a client without credentials sends cannot grow a record past a
    /// bound: a huge or odd session id is left out, a huge method or tool
    /// is cut.
    #[tokio::test]
    async fn a_refused_request_cannot_make_its_record_large() {
        use tower::ServiceExt;
        let keys = mcp_auth_strategies::ApiKeyAuthenticator::from_list("a-long-random-api-key")
            .expect("key");
        let sink = MemoryAudit::default();
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(|| async { "{}" }))
            .layer(crate::AuthLayer::new(keys))
            .layer(AuditLayer::new(Arc::new(sink.clone()), Vec::new(), 1 << 20));
        let huge = "x".repeat(100_000);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{huge}"}}}}"#
        );
        for sid in [huge.as_str(), "not a token"] {
            let req = Request::post("/mcp")
                .header("mcp-session-id", sid)
                .body(Body::from(body.clone()))
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("response");
            assert_eq!(resp.status(), http::StatusCode::UNAUTHORIZED);
        }
        let req = Request::post("/mcp")
            .body(Body::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{huge}é"}}"#
            )))
            .expect("request");
        app.clone().oneshot(req).await.expect("response");
        let records = sink.records();
        assert_eq!(records.len(), 3);
        for r in &records {
            assert_eq!(r.session_id, None, "left out");
            let line = serde_json::to_string(r).expect("json");
            assert!(line.len() < 1024, "{} bytes", line.len());
        }
        let cut = format!("{}…", &huge[..crate::observe::MAX_NAME]);
        assert_eq!(records[0].tool.as_deref(), Some(cut.as_str()));
        assert_eq!(records[2].method.as_deref(), Some(cut.as_str()));
    }
}
