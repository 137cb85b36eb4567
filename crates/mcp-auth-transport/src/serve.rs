//! The accept loop: [`serve`] and [`serve_with`], with connection limits that
//! hold against a hostile network.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use mcp_auth_transport::{CancellationToken, ServeOptions, serve_with};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let router = Router::new().route("/", get(|| async { "hi" }));
//! let mut options = ServeOptions::default();
//! options.idle_timeout = Duration::from_secs(15);
//! options.max_connections_per_ip = 64;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
//! serve_with(listener, router, CancellationToken::new(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }, options).await
//! # }
//! ```
//!

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::Request, response::Response};
use bytes::Bytes;
use mcp_auth_core::settings::{ConfigError, Lookup, parse_millis};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::{
    IpNet,
    net::{ForwardedHeader, client_network, forwarded_header, trusted_proxies},
    refusal::BodyTimedOut,
};

/// How long a connection told to close may take before it is dropped (only
/// ever while it has no request in flight, or when every response it
/// carries has waited for the client for the idle timeout).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The largest piece of a response body handed to hyper at once: a larger
/// frame is handed over in pieces, so a client reading a large answer
/// slowly is seen making progress (each piece is asked for once the last
/// could go out), not taken for one that never reads.
const BODY_PIECE: usize = 64 * 1024;
/// Refusals being written at once; past this a refused connection is
/// dropped without an answer.
const MAX_REFUSING: usize = 256;

/// Connection-level limits for [`serve_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Time a client has, from the moment its connection is accepted, to
    /// send its first byte, and for each request to send its headers
    /// (`HTTP_HEADER_READ_TIMEOUT`, ms; default 10 s).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight: HTTP/2
    /// with no open stream, bytes without requests (PINGs) included
    /// (`HTTP_IDLE_TIMEOUT`, ms; default 30 s). Between HTTP/1 keep-alive
    /// requests the shorter of this and the header timeout applies (hyper
    /// times the next request's headers from the end of the last response).
    pub idle_timeout: Duration,
    /// Time a request's body has, from the request's start, to arrive
    /// completely (`HTTP_BODY_READ_TIMEOUT`, ms; default 30 s): a body
    /// trickled a byte at a time gets 408 instead of holding its slot for
    /// the whole request timeout.
    pub body_read_timeout: Duration,
    /// Connections served at once (`HTTP_MAX_CONNECTIONS`, default 4096).
    /// At the cap the longest-idle connection makes room for a new one.
    pub max_connections: usize,
    /// Connections at once from one client address, an IPv6 client counted
    /// by its /64 (`HTTP_MAX_CONNECTIONS_PER_IP`, default 256; 0 = no cap).
    /// Addresses in [`trusted_proxies`](Self::trusted_proxies) are exempt.
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap: proxies that carry many
    /// clients' connections (`HTTP_TRUSTED_PROXIES`, shared with the rate
    /// limits).
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies write the client's address in
    /// (`HTTP_FORWARDED_HEADER`; see [`ForwardedHeader`]), for the rate
    /// limits and the audit log's `peer`.
    pub forwarded_header: ForwardedHeader,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 256,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::Auto,
        }
    }
}

impl ServeOptions {
    /// Reads the variables named on the fields over the defaults. Errors
    /// name the variable at fault.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use mcp_auth_transport::ServeOptions;
    ///
    /// let vars = HashMap::from([
    ///     ("HTTP_MAX_CONNECTIONS_PER_IP".to_owned(), "0".to_owned()),
    ///     ("HTTP_IDLE_TIMEOUT".to_owned(), "5000".to_owned()),
    /// ]);
    /// let o = ServeOptions::from_settings(&vars).unwrap();
    /// assert_eq!(o.max_connections_per_ip, 0, "0 turns the per-address cap off");
    /// assert_eq!(o.idle_timeout.as_secs(), 5);
    /// ```
    pub fn from_settings(l: &dyn Lookup) -> Result<Self, ConfigError> {
        let d = Self::default();
        let count = |name: &str, default: usize, zero_ok: bool| match l.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| zero_ok || *n > 0)
                .ok_or_else(|| {
                    let what = if zero_ok { "0 or more" } else { "above 0" };
                    ConfigError::new(name, format!("expected a whole number {what}, got {v:?}"))
                }),
        };
        Ok(Self {
            header_read_timeout: parse_millis(
                l,
                "HTTP_HEADER_READ_TIMEOUT",
                d.header_read_timeout,
            )?,
            idle_timeout: parse_millis(l, "HTTP_IDLE_TIMEOUT", d.idle_timeout)?,
            body_read_timeout: parse_millis(l, "HTTP_BODY_READ_TIMEOUT", d.body_read_timeout)?,
            max_connections: count("HTTP_MAX_CONNECTIONS", d.max_connections, false)?,
            max_connections_per_ip: count(
                "HTTP_MAX_CONNECTIONS_PER_IP",
                d.max_connections_per_ip,
                true,
            )?,
            trusted_proxies: trusted_proxies(l)?,
            forwarded_header: forwarded_header(l)?,
        })
    }
}

/// [`serve_with`] with default [`ServeOptions`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, router, cancel, shutdown, ServeOptions::default()).await
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2) with the peer
/// address available to authenticators (`ConnectInfo<SocketAddr>`) and the
/// connection limits of `options`, until `shutdown` completes; then cancels
/// `cancel` (ending MCP sessions and streams) and waits for open connections
/// to finish their requests.
///
/// What a connection may do:
/// - send its first byte within [`ServeOptions::header_read_timeout`] of
///   being accepted, and a request's headers within the same time (HTTP/1);
/// - stay open without a request in flight (an HTTP/2 connection with no
///   open stream) for at most [`ServeOptions::idle_timeout`], and between
///   HTTP/1 keep-alive requests for the shorter of that and the header
///   timeout; a request in flight (an open event stream included) keeps its
///   connection as long as it lasts, unless every request in flight is a
///   response the client has not taken for the idle timeout (an HTTP/2
///   flow-control window never opened, a socket never read): then the
///   connection is closed, and dropped after a second's grace (large
///   responses go out in pieces of 64 KiB, so a client reading slowly is
///   seen reading);
/// - exist alongside at most [`ServeOptions::max_connections_per_ip`] others
///   from the same address (an IPv6 client by its /64), unless the address
///   is a trusted proxy.
///
/// When every one of the [`ServeOptions::max_connections`] slots is taken,
/// the loop keeps accepting: a new connection closes the connection that has
/// been idle longest (it had no request in flight, so nothing is lost); when
/// none is idle, the newcomer gets `503` with `Retry-After` and is closed.
/// Closing an idle connection is graceful (HTTP/2 gets `GOAWAY`), and a
/// connection that does not close within a second of that is dropped once
/// it has no request in flight and nothing left to write (or, if it never
/// gets there, an idle timeout later).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> io::Result<()> {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::conn::auto::Builder,
        service::TowerToHyperService,
    };

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let options = Arc::new(options);
    let registry = Arc::new(Registry::default());
    let stopping = CancellationToken::new();
    let refusing = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = match registry.admit(peer.ip(), &options) {
            Ok(conn) => conn,
            Err(why) => {
                refuse(stream, why, &refusing);
                continue;
            }
        };
        // Responses are small and often written in several frames (SSE
        // events); with Nagle's algorithm on, each waits for the peer's
        // delayed ACK, adding ~40 ms per request.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let svc = Tracked {
            inner: router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
            conn: conn.clone(),
            body_read_timeout: options.body_read_timeout,
        };
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: conn.clone(),
        });
        let served = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(svc))
            .into_owned();
        let (options, stopping) = (options.clone(), stopping.clone());
        let entry = Registered {
            registry: registry.clone(),
            conn: conn.clone(),
        };
        tokio::spawn(async move {
            // Leaves the registry however the task ends (a panic included).
            let entry = entry;
            let conn = &entry.conn;
            tokio::pin!(served);
            // Set once the connection was told to close: from then on it is
            // dropped at this instant unless it is still busy.
            let mut drop_at: Option<Instant> = None;
            // A connection told to close that stays busy (a client that
            // never reads its response) is dropped after this anyway.
            let mut give_up: Option<Instant> = None;
            // Closed because its responses could not go out.
            let mut stalled = false;
            loop {
                // The deadline moves as the connection is used (its first
                // byte, a request ending): look again at least this often.
                let wake = drop_at.unwrap_or_else(|| {
                    let every = options.idle_timeout.min(options.header_read_timeout);
                    conn.deadline(&options).min(Instant::now() + every)
                });
                let close = tokio::select! {
                    r = served.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = stopping.cancelled(), if drop_at.is_none() => true,
                    () = conn.evict.notified(), if drop_at.is_none() => true,
                    () = tokio::time::sleep_until(wake) => match drop_at {
                        // Told to close and still open: drop it, but never
                        // under a request in flight or while a response is
                        // still being written; those finish first and hyper
                        // closes the connection after them.
                        Some(_) if conn.quiet() => break,
                        Some(_) if give_up.is_some_and(|t| Instant::now() >= t) => break,
                        Some(_) => {
                            drop_at = Some(Instant::now() + CLOSE_GRACE);
                            false
                        }
                        None if conn.stalled(&options) => {
                            // Its responses cannot go out: closed, and
                            // dropped after the grace whatever is in flight.
                            stalled = true;
                            tracing::debug!("connection closed: its responses have waited for the client for the idle timeout");
                            true
                        }
                        None => conn.idle_expired(&options),
                    },
                };
                if close {
                    entry.registry.mark_closing(conn);
                    served.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                    let patience = if stalled {
                        Duration::ZERO
                    } else {
                        options.idle_timeout
                    };
                    give_up = Some(Instant::now() + CLOSE_GRACE + patience);
                }
            }
        });
    }
    // Stop taking new connections (they would wait in the backlog), then
    // let the open ones finish.
    drop(listener);
    cancel.cancel();
    stopping.cancel();
    registry.drained().await;
    Ok(())
}

/// A connection's place in the registry, given back on drop.
struct Registered {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(&self.conn);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Every slot is busy with a request in flight.
    Busy,
    /// The address is at its own cap.
    PerAddress,
}

/// One served connection's bookkeeping. Times are milliseconds after the
/// registry's epoch, so connections compare by when things happened.
struct Conn {
    id: u64,
    /// The per-address key, `None` when the peer is exempt.
    ip: Option<IpAddr>,
    epoch: Instant,
    /// When it was accepted, or when its last request started or ended.
    /// Bytes alone (an HTTP/2 PING, a trickled preface) do not count: a
    /// connection is busy only while it carries a request.
    last_ms: AtomicU64,
    /// Requests in flight (their responses not yet fully handed to hyper).
    active: AtomicUsize,
    read_any: AtomicBool,
    /// When bytes were last written, and whether a write is waiting for the
    /// client to read: a response's tail may still be flushing after its
    /// request stopped counting.
    wrote_ms: AtomicU64,
    write_blocked: AtomicBool,
    /// Told to close (idle, or evicted): no longer a candidate for eviction.
    closing: AtomicBool,
    evict: Notify,
    /// The body of the HTTP/1 request in flight was read to its end (one
    /// request at a time on an HTTP/1 connection).
    body_ended: AtomicBool,
    /// Response bodies waiting for the client, not for the application:
    /// handed over (or a frame just taken) and not asked for their next
    /// frame, because the connection cannot send (an HTTP/2 flow-control
    /// window the client never opens, a socket it never reads).
    sending: AtomicUsize,
    /// When a response body last moved (handed over, or a frame taken).
    body_ms: AtomicU64,
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Conn {
    fn touch(&self) {
        self.last_ms.store(ms_since(self.epoch), Ordering::Release);
    }

    /// Notes a write's outcome.
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Pending => self.write_blocked.store(true, Ordering::Release),
            Poll::Ready(_) => {
                self.write_blocked.store(false, Ordering::Release);
                self.wrote_ms
                    .store(ms_since(self.epoch).max(1), Ordering::Release);
            }
        }
    }

    /// No request in flight and nothing being written, recently or now.
    fn quiet(&self) -> bool {
        let grace = u64::try_from(CLOSE_GRACE.as_millis()).unwrap_or(u64::MAX);
        // 0: nothing written yet.
        let wrote = self.wrote_ms.load(Ordering::Acquire);
        self.active.load(Ordering::Acquire) == 0
            && !self.write_blocked.load(Ordering::Acquire)
            && (wrote == 0 || ms_since(self.epoch).saturating_sub(wrote) >= grace)
    }

    /// A candidate for eviction: quiet, and not already closing.
    fn evictable(&self) -> bool {
        self.quiet() && !self.closing.load(Ordering::Acquire)
    }

    /// When the connection would next count as idle too long, assuming
    /// nothing happens until then.
    fn deadline(&self, o: &ServeOptions) -> Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        if !self.read_any.load(Ordering::Acquire) {
            self.epoch + last + o.header_read_timeout
        } else if self.active.load(Ordering::Acquire) > 0 {
            Instant::now() + o.idle_timeout
        } else {
            self.epoch + last + o.idle_timeout
        }
    }

    fn idle_expired(&self, o: &ServeOptions) -> bool {
        self.active.load(Ordering::Acquire) == 0 && Instant::now() >= self.deadline(o)
    }

    /// Every request in flight is a response waiting for the client, and
    /// no response on the connection has moved for the idle timeout:
    /// requests in flight keep a connection open only while they are being
    /// handled, wait for the application (an event stream between events)
    /// or go out. (A client that opens HTTP/2 streams with a zero window,
    /// or never reads, would otherwise hold its slot for good, with no
    /// activity at all; one whose other streams are busy, such as a proxy
    /// multiplexing clients, is not cut for one slow reader.)
    fn stalled(&self, o: &ServeOptions) -> bool {
        let idle = u64::try_from(o.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let sending = self.sending.load(Ordering::Acquire);
        sending > 0
            && sending >= self.active.load(Ordering::Acquire)
            && ms_since(self.epoch).saturating_sub(self.body_ms.load(Ordering::Acquire)) >= idle
    }

    fn body_moved(&self) {
        self.body_ms.store(ms_since(self.epoch), Ordering::Release);
    }
}

struct Registry {
    epoch: Instant,
    inner: Mutex<Slots>,
    empty: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            inner: Mutex::default(),
            empty: Notify::new(),
        }
    }
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections told to close that have not ended yet.
    closing: usize,
}

impl Slots {
    /// Notes that `conn` was told to close (once).
    fn mark_closing(&mut self, conn: &Conn) {
        if !conn.closing.swap(true, Ordering::AcqRel) {
            self.closing += 1;
        }
    }

    /// Tells the quiet connection among `which` that has been idle longest
    /// to close; false when there is none.
    fn evict_longest_idle(&mut self, which: impl Fn(&Conn) -> bool) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| which(c) && c.evictable())
            .min_by_key(|c| c.last_ms.load(Ordering::Acquire))
            .cloned();
        let Some(victim) = victim else {
            return false;
        };
        self.mark_closing(&victim);
        victim.evict.notify_one();
        tracing::debug!("connection cap reached: closing the longest-idle connection");
        true
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(&self, peer: IpAddr, o: &ServeOptions) -> Result<Arc<Conn>, Refused> {
        let canonical = peer.to_canonical();
        let exempt = o.max_connections_per_ip == 0
            || o.trusted_proxies.iter().any(|n| n.contains(canonical));
        let ip = (!exempt).then(|| client_network(canonical));
        let mut s = self.lock();
        // Connections still closing hold descriptors too: bound them.
        let cap = o.max_connections.max(1);
        if let Some(ip) = ip
            && s.per_ip.get(&ip).copied().unwrap_or(0) >= o.max_connections_per_ip
        {
            // The address's own longest-idle connection makes room first.
            if s.closing >= cap || !s.evict_longest_idle(|c| c.ip == Some(ip)) {
                return Err(Refused::PerAddress);
            }
        }
        let live = s.conns.len().saturating_sub(s.closing);
        if live >= cap && (s.closing >= cap || !s.evict_longest_idle(|_| true)) {
            return Err(Refused::Busy);
        }
        s.next_id += 1;
        let now = ms_since(self.epoch);
        let conn = Arc::new(Conn {
            id: s.next_id,
            ip,
            epoch: self.epoch,
            last_ms: AtomicU64::new(now),
            active: AtomicUsize::new(0),
            read_any: AtomicBool::new(false),
            wrote_ms: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            evict: Notify::new(),
            body_ended: AtomicBool::new(false),
            sending: AtomicUsize::new(0),
            body_ms: AtomicU64::new(now),
        });
        if let Some(ip) = ip {
            *s.per_ip.entry(ip).or_insert(0) += 1;
        }
        s.conns.insert(conn.id, conn.clone());
        Ok(conn)
    }

    /// Notes that `conn` was told to close.
    fn mark_closing(&self, conn: &Conn) {
        self.lock().mark_closing(conn);
    }

    fn remove(&self, conn: &Conn) {
        let mut s = self.lock();
        if s.conns.remove(&conn.id).is_none() {
            return;
        }
        if conn.closing.load(Ordering::Acquire) {
            s.closing = s.closing.saturating_sub(1);
        }
        if let Some(ip) = conn.ip
            && let Some(n) = s.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&ip);
            }
        }
        if s.conns.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Resolves once every connection has ended.
    async fn drained(&self) {
        loop {
            let waiting = self.empty.notified();
            if self.lock().conns.is_empty() {
                return;
            }
            waiting.await;
        }
    }
}

pub(crate) use mcp_auth_core::LogThrottle;

/// Answers a connection that was not admitted with `503` and
/// `Retry-After`, then closes it; in the background, and bounded.
fn refuse(mut stream: TcpStream, why: Refused, refusing: &Arc<AtomicUsize>) {
    let description = match why {
        Refused::Busy => "the server is at its connection limit",
        Refused::PerAddress => "too many connections from this address",
    };
    // A flood of refusals must not flood the log.
    static LOG: LogThrottle = LogThrottle::new();
    if let Some(more) = LOG.admit() {
        tracing::warn!(
            reason = description,
            more_since_last_line = more,
            "connection refused"
        );
    }
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        // The same body every refusal carries (`refusal::refuse`), written
        // by hand: no HTTP connection exists to send a response through.
        let body = serde_json::to_string(&mcp_auth_core::ErrorBody::new(
            "temporarily_unavailable",
            description,
        ))
        .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            stream.shutdown().await?;
            // Read what the client sent until it closes, so the answer is
            // not cut off by a reset for unread data.
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            while total < 64 * 1024 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => total += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The TCP stream, noting when bytes arrive.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read_any.store(true, Ordering::Release);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.conn.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.conn.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request in flight on a connection: counted from the call until its
/// response body is fully sent or dropped.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: Arc<Conn>) -> Self {
        conn.touch();
        conn.active.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router, counting requests in flight on its connection and giving
/// each request body a deadline.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
    body_read_timeout: Duration,
}

impl<S, B> Service<Request<B>> for Tracked<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = InFlight::new(self.conn.clone());
        let deadline = Instant::now() + self.body_read_timeout;
        // An HTTP/1 request answered before its body was read to the end
        // (refused early: credentials, limits, too large, a bad Host): hyper
        // keeps the connection only if the rest had already arrived, else it
        // shuts it after answering, and a client that sent its next request
        // down it saw "connection reset". The answer then says so.
        let watched = (req.version() <= http::Version::HTTP_11
            && (req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
                || req.headers().contains_key(http::header::TRANSFER_ENCODING)))
        .then(|| {
            self.conn.body_ended.store(false, Ordering::Release);
            self.conn.clone()
        });
        let conn = watched.clone();
        let req = req.map(|body| {
            axum::body::Body::new(DeadlineBody {
                inner: body,
                deadline,
                timer: None,
                ended: watched,
            })
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if conn.is_some_and(|c| !c.body_ended.load(Ordering::Acquire)) {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(resp.map(|body| TrackedBody::new(body, guard)))
        })
    }
}

/// A request body that fails with [`BodyTimedOut`] when it has not ended
/// by its deadline. The timer is armed only when the body makes the reader
/// wait: a body that arrived with its headers costs no timer.
struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Told when the body ends (an HTTP/1 request's, see [`Tracked`]).
    ended: Option<Arc<Conn>>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if let Some(conn) = &self.ended
                && (frame.is_none() || self.inner.is_end_stream())
            {
                conn.body_ended.store(true, Ordering::Release);
            }
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!("request body not received in time");
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request's [`InFlight`] count when done,
/// and tells its connection whether it waits for the client (see
/// [`Conn::stalled`]); frames larger than [`BODY_PIECE`] go out in pieces.
struct TrackedBody {
    inner: axum::body::Body,
    guard: InFlight,
    /// Counted in the connection's `sending`: handed over, or a frame just
    /// taken, and not asked for more since.
    sending: bool,
    /// What is left of a large frame.
    rest: Option<Bytes>,
}

impl TrackedBody {
    /// Handed over: waiting for the client until hyper asks for a frame.
    fn new(inner: axum::body::Body, guard: InFlight) -> Self {
        let mut body = Self {
            inner,
            guard,
            sending: false,
            rest: None,
        };
        body.guard.0.body_moved();
        body.set_sending(true);
        body
    }

    fn set_sending(&mut self, sending: bool) {
        if self.sending != sending {
            self.sending = sending;
            let conn = &self.guard.0;
            if sending {
                conn.sending.fetch_add(1, Ordering::AcqRel);
            } else {
                conn.sending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.set_sending(false);
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Some(mut rest) = self.rest.take() {
            let piece = rest.split_to(rest.len().min(BODY_PIECE));
            self.rest = (!rest.is_empty()).then_some(rest);
            self.guard.0.body_moved();
            return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        let r = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame)))
                if frame.data_ref().is_some_and(|d| d.len() > BODY_PIECE) =>
            {
                let mut data = frame.into_data().unwrap_or_default();
                self.rest = Some(data.split_off(BODY_PIECE));
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
            other => other,
        };
        match &r {
            // A frame for the client: the next one is asked for once this
            // one can go out.
            Poll::Ready(Some(Ok(_))) => {
                self.guard.0.body_moved();
                self.set_sending(true);
            }
            // Waiting for the application (an event stream between events:
            // not for the client, so no clock is needed), or ended.
            Poll::Pending | Poll::Ready(_) => self.set_sending(false),
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let rest = self.rest.as_ref().map_or(0, |r| r.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line goes out, the repeats within the second are left out
    /// and counted, and the next line says how many.
    #[test]
    fn a_throttled_log_says_how_many_lines_it_left_out() {
        let log = LogThrottle::new();
        assert_eq!(log.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(log.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(1050));
        assert_eq!(log.admit(), Some(5));
        assert_eq!(log.admit(), None);
    }

    /// A large frame goes out in pieces of at most [`BODY_PIECE`], each
    /// asked for once the last went out, so a slow reader of a large
    /// answer is seen making progress (a review: a 10 MB tool result read
    /// at 250 KB/s was one frame, and the connection was taken for stalled
    /// after the idle timeout, mid-answer); the body ends with its last
    /// piece, and its size is told right throughout.
    #[tokio::test]
    async fn large_frames_go_out_in_pieces() {
        use http_body::Body as _;
        use http_body_util::BodyExt;
        let r = Registry::default();
        let conn = r
            .admit("192.0.2.1".parse().unwrap(), &options(4, 4))
            .unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = TrackedBody::new(
            axum::body::Body::from(data.clone()),
            InFlight::new(conn.clone()),
        );
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let mut got = Vec::new();
        let mut pieces = 0;
        while let Some(frame) = body.frame().await {
            let piece = frame.unwrap().into_data().unwrap();
            assert!(piece.len() <= BODY_PIECE);
            got.extend_from_slice(&piece);
            pieces += 1;
            assert_eq!(
                body.size_hint().exact(),
                Some(200_000 - got.len() as u64),
                "after {pieces} pieces"
            );
            assert_eq!(body.is_end_stream(), got.len() == data.len());
        }
        assert_eq!(got, data);
        assert_eq!(pieces, 4);
        drop(body);
        assert_eq!(conn.sending.load(Ordering::Acquire), 0);
        assert_eq!(conn.active.load(Ordering::Acquire), 0);
    }

    /// A connection is stalled only when every request in flight is a
    /// response waiting for the client and none has moved for the idle
    /// timeout: one busy request (a handler at work, a proxy's other
    /// client) keeps it.
    #[tokio::test]
    async fn a_connection_is_stalled_only_when_all_it_carries_waits_for_the_client() {
        let r = Registry::default();
        let mut o = options(4, 4);
        o.idle_timeout = Duration::from_millis(50);
        let conn = r.admit("192.0.2.1".parse().unwrap(), &o).unwrap();
        let waiting = TrackedBody::new(axum::body::Body::from("x"), InFlight::new(conn.clone()));
        let handling = InFlight::new(conn.clone());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!conn.stalled(&o), "a request still being handled");
        drop(handling);
        assert!(
            conn.stalled(&o),
            "only a response waiting for the client, for long"
        );
        conn.body_moved();
        assert!(!conn.stalled(&o), "it just moved");
        drop(waiting);
        assert!(!conn.stalled(&o), "nothing in flight: idle, not stalled");
    }

    fn options(max: usize, per_ip: usize) -> ServeOptions {
        ServeOptions {
            max_connections: max,
            max_connections_per_ip: per_ip,
            ..ServeOptions::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let r = Registry::default();
        let o = options(2, 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // a: accepted first, one request long ago, idle since.
        let a = r.admit(ip, &o).unwrap();
        drop(InFlight::new(a.clone()));
        tokio::time::advance(Duration::from_secs(20)).await;
        // b: accepted later, a request just ended: idle for less time.
        let b = r.admit(ip, &o).unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(InFlight::new(b.clone()));
        let c = r.admit(ip, &o).unwrap();
        assert!(a.closing.load(Ordering::Acquire), "a was idle longest");
        assert!(!b.closing.load(Ordering::Acquire));
        // b busy, c still being written to: nothing may be evicted.
        let busy = InFlight::new(b.clone());
        c.wrote(&Poll::Pending);
        assert_eq!(r.admit(ip, &o).err(), Some(Refused::Busy));
        c.wrote(&Poll::Ready(Ok(10)));
        assert_eq!(
            r.admit(ip, &o).err(),
            Some(Refused::Busy),
            "written to within the last second"
        );
        tokio::time::advance(CLOSE_GRACE).await;
        let _d = r.admit(ip, &o).unwrap();
        assert!(c.closing.load(Ordering::Acquire));
        drop(busy);
        r.remove(&a);
        r.remove(&c);
        assert_eq!(r.lock().closing, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn at_its_own_cap_an_address_gives_up_its_longest_idle_connection_first() {
        let r = Registry::default();
        let o = options(100, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = r.admit(ip, &o).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = r.admit(ip, &o).unwrap();
        let other = r.admit("192.0.2.2".parse().unwrap(), &o).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(r.admit(ip, &o).is_ok());
        assert!(a.closing.load(Ordering::Acquire));
        assert!(!b.closing.load(Ordering::Acquire));
        assert!(
            !other.closing.load(Ordering::Acquire),
            "another address is untouched"
        );
    }

    #[tokio::test]
    async fn the_per_address_cap_counts_ipv6_by_its_64_and_spares_trusted_proxies() {
        let r = Registry::default();
        let mut o = options(100, 2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        // Both busy with a request, so neither can make room.
        let x = r.admit(a, &o).unwrap();
        let y = r.admit(b, &o).unwrap();
        let _busy = (InFlight::new(x.clone()), InFlight::new(y.clone()));
        assert_eq!(r.admit(a, &o).err(), Some(Refused::PerAddress));
        assert!(r.admit("2001:db8:1:3::1".parse().unwrap(), &o).is_ok());
        r.remove(&y);
        assert!(
            r.admit(a, &o).is_ok(),
            "a slot freed by a closed connection"
        );
        o.trusted_proxies = vec![IpNet::parse("2001:db8:1:2::/64").unwrap()];
        for _ in 0..5 {
            assert!(r.admit(a, &o).is_ok());
        }
        // IPv4 peers of a dual-stack listener count as their IPv4 address.
        let o = options(100, 1);
        let v4 = r.admit("198.51.100.7".parse().unwrap(), &o).unwrap();
        let _busy = InFlight::new(v4);
        assert_eq!(
            r.admit("::ffff:198.51.100.7".parse().unwrap(), &o).err(),
            Some(Refused::PerAddress)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadlines_start_at_accept_and_pause_while_a_request_is_in_flight() {
        let r = Registry::default();
        let o = ServeOptions {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            ..ServeOptions::default()
        };
        let c = r.admit("192.0.2.1".parse().unwrap(), &o).unwrap();
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert!(
            c.idle_expired(&o),
            "no first byte within the header timeout"
        );
        // Bytes alone (an HTTP/2 preface, PINGs) are no request: the idle
        // clock keeps running from accept.
        c.read_any.store(true, Ordering::Release);
        tokio::time::advance(Duration::from_millis(2950)).await;
        assert!(
            c.idle_expired(&o),
            "bytes without requests do not keep it open"
        );
        let busy = InFlight::new(c.clone());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!c.idle_expired(&o), "a request in flight keeps it open");
        drop(busy);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!c.idle_expired(&o));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.idle_expired(&o), "idle since the request ended");
    }

    #[test]
    fn settings_errors_name_the_variable() {
        for (k, v) in [
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("HTTP_MAX_CONNECTIONS_PER_IP", "-1"),
            ("HTTP_IDLE_TIMEOUT", "0"),
            ("HTTP_HEADER_READ_TIMEOUT", "soon"),
            ("HTTP_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("HTTP_FORWARDED_HEADER", "x-real-ip"),
        ] {
            let vars = HashMap::from([(k.to_owned(), v.to_owned())]);
            assert_eq!(ServeOptions::from_settings(&vars).unwrap_err().variable, k);
        }
    }

    #[test]
    fn the_forwarded_header_is_read_in_any_case_and_defaults_to_auto() {
        let header = |v: Option<&str>| {
            let vars: HashMap<String, String> = v
                .map(|v| HashMap::from([("HTTP_FORWARDED_HEADER".to_owned(), v.to_owned())]))
                .unwrap_or_default();
            ServeOptions::from_settings(&vars).unwrap().forwarded_header
        };
        assert_eq!(header(None), ForwardedHeader::Auto);
        assert_eq!(header(Some("Forwarded")), ForwardedHeader::Forwarded);
        assert_eq!(
            header(Some(" X-Forwarded-For ")),
            ForwardedHeader::XForwardedFor
        );
        assert_eq!(header(Some("auto")), ForwardedHeader::Auto);
    }
}
