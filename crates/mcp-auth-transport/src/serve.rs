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
//! What a connection may do:
//! - send its first byte within [`ServeOptions::header_read_timeout`] of
//!   being accepted, and a request's headers within the same time (HTTP/1);
//! - stay open without a request in flight (between keep-alive requests, or
//!   an HTTP/2 connection with no open stream) for at most
//!   [`ServeOptions::idle_timeout`]; a request in flight (an open event
//!   stream included) keeps its connection as long as it lasts;
//! - exist alongside at most [`ServeOptions::max_connections_per_ip`] others
//!   from the same address (an IPv6 client by its /64), unless the address
//!   is a trusted proxy.
//!
//! When every one of the [`ServeOptions::max_connections`] slots is taken,
//! the loop keeps accepting: a new connection closes the connection that has
//! been idle longest (it had no request in flight, so nothing is lost); when
//! none is idle, the newcomer gets `503` with `Retry-After` and is closed.
//! Closing an idle connection is graceful (HTTP/2 gets `GOAWAY`), and a
//! connection that does not close within a second of that is dropped, still
//! only while no request is in flight.

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

use crate::IpNet;

/// How long a connection told to close may take before it is dropped (only
/// ever while it has no request in flight).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
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
    /// Time a connection may stay open with no request in flight: between
    /// keep-alive requests, or HTTP/2 with no open stream
    /// (`HTTP_IDLE_TIMEOUT`, ms; default 30 s).
    pub idle_timeout: Duration,
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 256,
            trusted_proxies: Vec::new(),
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
            max_connections: count("HTTP_MAX_CONNECTIONS", d.max_connections, false)?,
            max_connections_per_ip: count(
                "HTTP_MAX_CONNECTIONS_PER_IP",
                d.max_connections_per_ip,
                true,
            )?,
            trusted_proxies: crate::ratelimit::trusted_proxies(l)?,
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
/// connection limits of `options` (see the [module docs](self)), until
/// `shutdown` completes; then cancels `cancel` (ending MCP sessions and
/// streams) and waits for open connections to finish their requests.
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
        };
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: conn.clone(),
        });
        let served = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(svc))
            .into_owned();
        let (registry, options, stopping) = (registry.clone(), options.clone(), stopping.clone());
        tokio::spawn(async move {
            tokio::pin!(served);
            // Set once the connection was told to close: from then on it is
            // dropped at this instant unless a request is still in flight.
            let mut drop_at: Option<Instant> = None;
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
                        // under a request in flight; that one finishes first
                        // and hyper closes the connection after it.
                        Some(_) if conn.active.load(Ordering::Acquire) == 0 => break,
                        Some(_) => {
                            drop_at = Some(Instant::now() + CLOSE_GRACE);
                            false
                        }
                        None => conn.idle_expired(&options),
                    },
                };
                if close {
                    registry.mark_closing(&conn);
                    served.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            registry.remove(&conn);
        });
    }
    cancel.cancel();
    stopping.cancel();
    registry.drained().await;
    Ok(())
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Every slot is busy with a request in flight.
    Busy,
    /// The address is at its own cap.
    PerAddress,
}

/// One served connection's bookkeeping.
struct Conn {
    id: u64,
    /// The per-address key, `None` when the peer is exempt.
    ip: Option<IpAddr>,
    base: Instant,
    accepted_ms: u64,
    /// Milliseconds after `base` of the last byte read or request finished.
    last_ms: AtomicU64,
    /// Requests in flight (their responses not yet fully sent).
    active: AtomicUsize,
    read_any: AtomicBool,
    /// Told to close (idle, or evicted): no longer a candidate for eviction.
    closing: AtomicBool,
    evict: Notify,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Release);
    }

    fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0 && !self.closing.load(Ordering::Acquire)
    }

    /// When the connection would next count as idle too long, assuming
    /// nothing happens until then.
    fn deadline(&self, o: &ServeOptions) -> Instant {
        let (since, limit) = if !self.read_any.load(Ordering::Acquire) {
            (self.accepted_ms, o.header_read_timeout)
        } else if self.active.load(Ordering::Acquire) > 0 {
            (self.now_ms(), o.idle_timeout)
        } else {
            (self.last_ms.load(Ordering::Acquire), o.idle_timeout)
        };
        self.base + Duration::from_millis(since) + limit
    }

    fn idle_expired(&self, o: &ServeOptions) -> bool {
        self.active.load(Ordering::Acquire) == 0 && Instant::now() >= self.deadline(o)
    }
}

#[derive(Default)]
struct Registry {
    inner: Mutex<Slots>,
    empty: Notify,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections told to close that have not ended yet.
    closing: usize,
}

/// The per-address key: the canonical address, an IPv6 one by its /64 (one
/// client usually owns a whole /64 and could rotate through it).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
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
        let ip = (!exempt).then(|| address_key(canonical));
        let mut s = self.lock();
        if let Some(ip) = ip
            && s.per_ip.get(&ip).copied().unwrap_or(0) >= o.max_connections_per_ip
        {
            return Err(Refused::PerAddress);
        }
        let live = s.conns.len().saturating_sub(s.closing);
        if live >= o.max_connections.max(1) {
            // Connections still closing hold descriptors too: bound them.
            if s.closing >= o.max_connections.max(1) {
                return Err(Refused::Busy);
            }
            let oldest = s
                .conns
                .values()
                .filter(|c| c.is_idle())
                .min_by_key(|c| c.last_ms.load(Ordering::Acquire).max(c.accepted_ms))
                .cloned();
            let Some(victim) = oldest else {
                return Err(Refused::Busy);
            };
            if !victim.closing.swap(true, Ordering::AcqRel) {
                s.closing += 1;
            }
            victim.evict.notify_one();
            tracing::debug!("connection cap reached: closing the longest-idle connection");
        }
        s.next_id += 1;
        let base = Instant::now();
        let conn = Arc::new(Conn {
            id: s.next_id,
            ip,
            base,
            accepted_ms: 0,
            last_ms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            read_any: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            evict: Notify::new(),
        });
        if let Some(ip) = ip {
            *s.per_ip.entry(ip).or_insert(0) += 1;
        }
        s.conns.insert(conn.id, conn.clone());
        Ok(conn)
    }

    /// Notes that `conn` was told to close.
    fn mark_closing(&self, conn: &Conn) {
        let mut s = self.lock();
        if !conn.closing.swap(true, Ordering::AcqRel) {
            s.closing += 1;
        }
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

/// Answers a connection that was not admitted with `503` and
/// `Retry-After`, then closes it; in the background, and bounded.
fn refuse(mut stream: TcpStream, why: Refused, refusing: &Arc<AtomicUsize>) {
    let description = match why {
        Refused::Busy => "the server is at its connection limit",
        Refused::PerAddress => "too many connections from this address",
    };
    tracing::warn!(reason = description, "connection refused");
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let body = serde_json::json!({
            "error": "temporarily_unavailable",
            "error_description": description,
        })
        .to_string();
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
            self.conn.touch();
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// The router, counting requests in flight on its connection.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S, B> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = InFlight::new(self.conn.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| TrackedBody {
                inner: body,
                _guard: guard,
            }))
        })
    }
}

/// A response body that ends its request's [`InFlight`] count when done.
struct TrackedBody {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max: usize, per_ip: usize) -> ServeOptions {
        ServeOptions {
            max_connections: max,
            max_connections_per_ip: per_ip,
            ..ServeOptions::default()
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let r = Registry::default();
        let o = options(2, 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = r.admit(ip, &o).unwrap();
        let b = r.admit(ip, &o).unwrap();
        a.active.fetch_add(1, Ordering::AcqRel); // a is busy
        let c = r.admit(ip, &o).unwrap();
        assert!(b.closing.load(Ordering::Acquire), "idle b was evicted");
        assert!(!a.closing.load(Ordering::Acquire), "busy a was not");
        // a busy, b closing, c idle: c goes next.
        let _d = r.admit(ip, &o).unwrap();
        assert!(c.closing.load(Ordering::Acquire));
        // Nothing idle left: the next one is refused.
        let d_busy = r
            .lock()
            .conns
            .values()
            .find(|x| !x.closing.load(Ordering::Acquire) && x.id != a.id)
            .cloned()
            .unwrap();
        d_busy.active.fetch_add(1, Ordering::AcqRel);
        assert_eq!(r.admit(ip, &o).err(), Some(Refused::Busy));
        r.remove(&b);
        r.remove(&c);
        assert_eq!(r.lock().closing, 0);
    }

    #[tokio::test]
    async fn the_per_address_cap_counts_ipv6_by_its_64_and_spares_trusted_proxies() {
        let r = Registry::default();
        let mut o = options(100, 2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let _x = r.admit(a, &o).unwrap();
        let y = r.admit(b, &o).unwrap();
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
        let _v4 = r.admit("198.51.100.7".parse().unwrap(), &o).unwrap();
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
        c.read_any.store(true, Ordering::Release);
        c.touch();
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
        ] {
            let vars = HashMap::from([(k.to_owned(), v.to_owned())]);
            assert_eq!(ServeOptions::from_settings(&vars).unwrap_err().variable, k);
        }
    }
}
