//! The accept loop that serves the router over HTTP/1.1 with the limits a server on an open
//! port needs: a deadline for the request head, for the body and for an idle keep-alive
//! connection, a cap on open connections, and a body limit per route checked against
//! `Content-Length` before a byte of the body is read.
//!
//! It must never let a client hold the daemon: every connection has a deadline in every phase,
//! and when the cap is reached the connection doing least (idle, or still sending its head) is
//! closed to make room, so `/healthz` stays answerable under a flood of idle or slow
//! connections. It never interprets a body: the handlers do.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};

/// A request head is a few hundred bytes: even a bad mobile link sends it in well under a
/// second. 10 s tolerates such a link and bounds how long a slowloris client holds a slot.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest body accepted is the 64 KiB webhook; at 20 kbit/s it arrives in 26 s. A client
/// slower than that is trickling on purpose: it is answered 408 and closed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pocket and a Prometheus scraper may reuse a connection; a minute covers a scrape interval
/// of up to a minute. Idle connections are also the first closed when the cap is reached, so a
/// longer idle timeout costs nothing under load.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A backstop for one request from its head to the last byte of its answer: no handler waits
/// on the network (the webhook's only write is a group commit behind SQLite's busy timeout), so
/// only a client that never reads its answer gets here.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Open connections at most. Each holds a socket and a few KiB of buffers; the daemon serves
/// Pocket, a health checker and a scraper, so 256 is far more than honest use and far below
/// the 1,024 descriptors a process gets by default.
pub const MAX_CONNECTIONS: usize = 256;

/// Bodies of routes other than the webhook: none of them reads one. A small body is tolerated
/// (a client sending `{}`), anything larger is refused before it is read.
pub const SMALL_BODY_LIMIT: u64 = 1024;

/// The most bytes hyper buffers for one connection: a request head must fit (hyper answers 431
/// otherwise). Pocket's heads are well under 2 KiB.
const MAX_BUF: usize = 64 * 1024;

/// After an answer sent with `Connection: close` while the client may still be sending (a 413
/// before the body), the socket is half-closed and what arrives is read and dropped for this
/// long, so the client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// A connection refused for want of room lingers less, and only so many at once: they are
/// not counted against the cap.
const REFUSED_LINGER: Duration = Duration::from_millis(500);
const MAX_REFUSING: usize = 64;

/// After an accept error (out of descriptors, say), wait this long instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning about closed or refused connections per this interval, with a count:
/// a flood must not flood the log too.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Debug builds only: `header=MS,idle=MS,body=MS,request=MS` (any subset) shortens the
/// timeouts so the tests of the limits run in seconds. Release builds never read it.
pub const TEST_TIMEOUTS_VAR: &str = "SATFLOW_TEST_HTTP_TIMEOUTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// The limits of this process: the constants, or in a debug build what
    /// `SATFLOW_TEST_HTTP_TIMEOUTS` says.
    pub fn of_process() -> Limits {
        #[cfg(debug_assertions)]
        if let Ok(text) = std::env::var(TEST_TIMEOUTS_VAR) {
            match Limits::default().overridden(&text) {
                Ok(limits) => return limits,
                Err(message) => tracing::warn!(
                    "{TEST_TIMEOUTS_VAR} ignored: {message} (expected e.g. header=500,idle=1000,body=1000,request=5000, in ms)"
                ),
            }
        }
        Limits::default()
    }

    /// `self` with the timeouts named in `text` (`key=milliseconds`, comma-separated).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    fn overridden(mut self, text: &str) -> Result<Limits, String> {
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=milliseconds"))?;
            let ms: u64 = value
                .trim()
                .parse()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| format!("`{value}` for `{key}` is not a positive number of ms"))?;
            let slot = match key.trim() {
                "header" => &mut self.header_timeout,
                "idle" => &mut self.idle_timeout,
                "body" => &mut self.body_timeout,
                "request" => &mut self.request_timeout,
                other => {
                    return Err(format!(
                        "unknown key `{other}` (header, idle, body or request)"
                    ));
                }
            };
            *slot = Duration::from_millis(ms);
        }
        Ok(self)
    }
}

/// The body limit of the route at `path`, in bytes.
fn body_limit(path: &str) -> u64 {
    if path == "/webhooks/pocket" {
        super::webhook::MAX_BODY as u64
    } else {
        SMALL_BODY_LIMIT
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, closes idle
/// connections, lets requests in flight finish and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    raise_fd_limit();
    serve_with(listener, router, Limits::of_process(), shutdown).await
}

pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, stopping) = watch::channel(false);
    let registry = Registry::default();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut warn = Throttled::default();
    let refusing = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                use std::io::ErrorKind::*;
                // A client that gave up before it was accepted is no problem of the server's.
                if !matches!(
                    err.kind(),
                    ConnectionAborted | ConnectionReset | ConnectionRefused
                ) {
                    if warn.due() {
                        tracing::warn!(%err, suppressed = warn.take(), "cannot accept a connection; retrying shortly");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some((id, conn, evicted)) = registry.admit(limits.max_connections) else {
            super::metrics::count(
                "satflow_http_connections_closed_total",
                &[("reason", "refused")],
            );
            if warn.due() {
                tracing::warn!(
                    suppressed = warn.take(),
                    "{} connections are all busy with a request; a new one was answered 503",
                    limits.max_connections
                );
            }
            refuse(stream, &refusing);
            continue;
        };
        if evicted {
            super::metrics::count(
                "satflow_http_connections_closed_total",
                &[("reason", "evicted")],
            );
            if warn.due() {
                tracing::warn!(
                    suppressed = warn.take(),
                    "{} connections are open; the one idle or sending its head the longest was closed to make room",
                    limits.max_connections
                );
            }
        }
        let registration = Registration {
            registry: registry.clone(),
            id,
        };
        connections.spawn(serve_connection(
            stream,
            conn,
            registration,
            router.clone(),
            limits,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Raises this process's soft limit of open files to its hard limit (capped at 65,536), so a
/// burst of connections or a busy database never meets the default of 1,024. Best effort.
#[cfg(unix)]
pub fn raise_fd_limit() {
    const CAP: libc::rlim_t = 65_536;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` that we own and that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = limit.rlim_max.min(CAP);
    if limit.rlim_cur >= wanted {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` that we own and that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::debug!(
            from = limit.rlim_cur,
            to = wanted,
            "raised the open-file limit"
        );
    }
}

#[cfg(not(unix))]
pub fn raise_fd_limit() {}

/// Where a connection is; each phase has its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Nothing received since the connection opened (`fresh`) or since its last answer.
    Waiting { since: Instant, fresh: bool },
    /// Part of a request head has arrived.
    Head { since: Instant },
    /// A request is with the router, or its answer is being written.
    Busy { since: Instant, requests: u32 },
    /// Answered and half-closed; what the client still sends is dropped.
    Closing { since: Instant },
}

/// One connection as the accept loop and its own task see it.
struct Tracked {
    phase: Mutex<Phase>,
    /// The phase changed: the deadline may be nearer.
    changed: Notify,
    /// Closed to make room for a new connection.
    kill: Notify,
}

impl Tracked {
    fn new(now: Instant) -> Tracked {
        Tracked {
            phase: Mutex::new(Phase::Waiting {
                since: now,
                fresh: true,
            }),
            changed: Notify::new(),
            kill: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The lock guards a plain value: a panic elsewhere cannot leave it half-written.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived from the client.
    fn received(&self) {
        let mut phase = self.phase();
        if let Phase::Waiting { since, fresh } = *phase {
            // A fresh connection's head is due from the moment it was accepted.
            let since = if fresh { since } else { Instant::now() };
            *phase = Phase::Head { since };
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { since, requests } => Phase::Busy {
                since,
                requests: requests.saturating_add(1),
            },
            _ => Phase::Busy {
                since: Instant::now(),
                requests: 1,
            },
        };
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        if let Phase::Busy { since, requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy {
                    since,
                    requests: requests - 1,
                }
            } else {
                Phase::Waiting {
                    since: Instant::now(),
                    fresh: false,
                }
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn deadline(&self, limits: &Limits) -> (Instant, &'static str) {
        match *self.phase() {
            Phase::Waiting { since, fresh: true } => (since + limits.header_timeout, "header"),
            Phase::Waiting { since, .. } => (since + limits.idle_timeout, "idle"),
            Phase::Head { since } => (since + limits.header_timeout, "header"),
            Phase::Busy { since, .. } => (since + limits.request_timeout, "request"),
            Phase::Closing { since } => (since + LINGER, "linger"),
        }
    }

    /// When it may be closed to make room, since when it has been so; `None` while busy.
    fn evictable_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting { since, .. } | Phase::Head { since } | Phase::Closing { since } => {
                Some(since)
            }
            Phase::Busy { .. } => None,
        }
    }
}

/// The open connections.
#[derive(Clone, Default)]
struct Registry {
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    open: HashMap<u64, Arc<Tracked>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection. At the cap, the connection idle or sending its head the
    /// longest is closed to make room (`true` in the answer); with every connection busy with a
    /// request, `None`.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Tracked>, bool)> {
        let mut inner = self.lock();
        let mut evicted = false;
        if inner.open.len() >= max {
            let victim = inner
                .open
                .iter()
                .filter_map(|(id, c)| c.evictable_since().map(|since| (since, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(conn) = inner.open.remove(&victim) {
                conn.kill.notify_one();
            }
            evicted = true;
        }
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        let conn = Arc::new(Tracked::new(Instant::now()));
        inner.open.insert(id, Arc::clone(&conn));
        super::metrics::set("satflow_http_connections", &[], inner.open.len() as f64);
        Some((id, conn, evicted))
    }
}

/// Removes its connection from the registry when the connection's task ends, however it ends.
struct Registration {
    registry: Registry,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.open.remove(&self.id);
        super::metrics::set("satflow_http_connections", &[], inner.open.len() as f64);
    }
}

/// Answers a connection the server has no room for with a 503, without reading its request.
/// Up to `MAX_REFUSING` such sockets at once linger briefly so the client reads the answer
/// instead of a reset; beyond that they are just closed.
fn refuse(stream: TcpStream, refusing: &Arc<AtomicUsize>) {
    const BODY: &str = r#"{"status":"too many connections"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // A fresh socket's send buffer is empty: the write does not block, and if it fails the
    // client sees the connection closed, which is the answer too.
    if stream.try_write(answer.as_bytes()).is_err() {
        return;
    }
    if refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let refusing = Arc::clone(refusing);
    tokio::spawn(async move {
        linger(stream, REFUSED_LINGER).await;
        refusing.fetch_sub(1, Ordering::SeqCst);
    });
}

async fn serve_connection(
    stream: TcpStream,
    conn: Arc<Tracked>,
    _registration: Registration,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let service = ConnService {
        router: TowerToHyperService::new(router),
        conn: Arc::clone(&conn),
        limits,
    };
    let io = TokioIo::new(Watched {
        stream,
        conn: Arc::clone(&conn),
    });
    let mut http = hyper::server::conn::http1::Builder::new()
        // The deadlines are kept here, per phase: hyper's own header timeout also runs while a
        // keep-alive connection waits for its next request, which is the idle timeout's job.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .serve_connection(io, service);
    let mut graceful = false;
    loop {
        let (deadline, which) = conn.deadline(&limits);
        tokio::select! {
            done = poll_fn(|cx| http.poll_without_shutdown(cx)) => {
                if let Err(err) = done {
                    tracing::debug!(%err, "HTTP connection ended with an error");
                    return;
                }
                break;
            }
            _ = conn.kill.notified() => return,
            _ = conn.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {
                if conn.deadline(&limits).0 <= Instant::now() {
                    super::metrics::count(
                        "satflow_http_connections_closed_total",
                        &[("reason", which)],
                    );
                    tracing::debug!(timeout = which, "HTTP connection closed at its deadline");
                    return;
                }
            }
            _ = stopping.wait_for(|stop| *stop), if !graceful => {
                graceful = true;
                if conn.evictable_since().is_some() {
                    return;
                }
                // The request in flight is answered, then the connection closes.
                Pin::new(&mut http).graceful_shutdown();
            }
        }
    }
    conn.set(Phase::Closing {
        since: Instant::now(),
    });
    let stream = http.into_parts().io.into_inner().stream;
    tokio::select! {
        _ = linger(stream, LINGER) => {}
        _ = conn.kill.notified() => {}
    }
}

/// Half-closes `stream` and drops what the client still sends, until it closes too, for at
/// most `limit` or `LINGER_BYTES`: closing a socket with unread data would send a reset, and
/// the client could lose the answer it has not read yet.
async fn linger(mut stream: TcpStream, limit: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 8192];
    let mut dropped = 0usize;
    let _ = tokio::time::timeout(limit, async {
        while dropped < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// The socket, telling its connection when bytes arrive (a request head has begun).
struct Watched {
    stream: TcpStream,
    conn: Arc<Tracked>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.received();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Marks its connection busy from a request's head until its answer's last byte.
struct Busy(Arc<Tracked>);

impl Busy {
    fn start(conn: &Arc<Tracked>) -> Busy {
        conn.request_started();
        Busy(Arc::clone(conn))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The router behind the checks made before it sees a request.
#[derive(Clone)]
struct ConnService {
    router: TowerToHyperService<Router>,
    conn: Arc<Tracked>,
    limits: Limits,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Answer>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::start(&self.conn);
        let limit = body_limit(request.uri().path());
        // A missing signature is refused before anything else (DESIGN.md), and that handler
        // reads no body: it answers at once whatever the length.
        let unsigned_webhook =
            limit != SMALL_BODY_LIMIT && !request.headers().contains_key("x-signature-256");
        if !unsigned_webhook && declared_length(request.headers()).is_some_and(|n| n > limit) {
            let answer = closing(too_large(limit));
            return Box::pin(std::future::ready(Ok(answer.map(|b| Answer::new(b, busy)))));
        }
        let progress = Arc::new(Progress {
            finished: AtomicBool::new(hyper::body::Body::is_end_stream(request.body())),
            timed_out: AtomicBool::new(false),
        });
        let deadline = Instant::now() + self.limits.body_timeout;
        let timeout = self.limits.body_timeout;
        let request = request.map(|inner| RequestBody {
            inner,
            limit,
            read: 0,
            deadline,
            sleep: None,
            progress: Arc::clone(&progress),
        });
        let router = self.router.clone();
        Box::pin(async move {
            let Ok(mut response) = router.call(request).await;
            if progress.timed_out.load(Ordering::Relaxed) {
                response = answer(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the body did not arrive within {} s", timeout.as_secs_f64()),
                );
            }
            if !progress.finished.load(Ordering::Relaxed) {
                // Whatever is left of the body is not read: the connection cannot carry
                // another request.
                response = closing(response);
            }
            Ok(response.map(|b| Answer::new(b, busy)))
        })
    }
}

/// The `Content-Length` the client declared; an invalid one never gets here (hyper answers
/// 400).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn answer(status: StatusCode, message: &str) -> Response<Body> {
    (status, axum::Json(json!({ "status": message }))).into_response()
}

fn too_large(limit: u64) -> Response<Body> {
    let message = if limit.is_multiple_of(1024) {
        format!("body over {} KiB", limit / 1024)
    } else {
        format!("body over {limit} bytes")
    };
    answer(StatusCode::PAYLOAD_TOO_LARGE, &message)
}

fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What became of a request's body.
struct Progress {
    /// Read to its end (or empty): the connection can carry the next request.
    finished: AtomicBool,
    /// Its deadline passed before its end.
    timed_out: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the body did not arrive in time")]
    Timeout,
    #[error("the body is over {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that ends in an error at its deadline, or once over its route's limit
/// (chunked bodies declare no length).
struct RequestBody {
    inner: Incoming,
    limit: u64,
    read: u64,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    progress: Arc<Progress>,
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.progress.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyError::Timeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                if this.inner.is_end_stream() {
                    this.progress.finished.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => {
                this.progress.finished.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.progress.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body; the connection stays busy until it is written or dropped.
pub struct Answer {
    inner: Body,
    _busy: Busy,
}

impl Answer {
    fn new(inner: Body, busy: Busy) -> Answer {
        Answer { inner, _busy: busy }
    }
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// A warning that is due at most once per `WARN_EVERY`, counting what it held back.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            self.suppressed += 1;
            return false;
        }
        self.last = Some(now);
        true
    }

    fn take(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_timeouts_override_only_what_they_name_and_refuse_nonsense() {
        let limits = Limits::default()
            .overridden("header=500, idle=1500")
            .unwrap();
        assert_eq!(limits.header_timeout, Duration::from_millis(500));
        assert_eq!(limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(limits.body_timeout, BODY_TIMEOUT);
        assert_eq!(limits.request_timeout, REQUEST_TIMEOUT);
        for bad in ["header", "header=0", "header=-1", "header=1s", "speed=3"] {
            assert!(Limits::default().overridden(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_webhook_takes_a_body_of_64_kib() {
        assert_eq!(body_limit("/webhooks/pocket"), 64 * 1024);
        assert_eq!(body_limit("/healthz"), SMALL_BODY_LIMIT);
        assert_eq!(body_limit("/webhooks/pocket/"), SMALL_BODY_LIMIT);
    }

    #[test]
    fn at_the_cap_the_longest_idle_goes_first_and_busy_ones_never() {
        let registry = Registry::default();
        let (old, old_conn, _) = registry.admit(2).unwrap();
        let (_, young_conn, _) = registry.admit(2).unwrap();
        let (_, _, evicted) = registry.admit(2).unwrap();
        assert!(evicted);
        assert!(!registry.lock().open.contains_key(&old), "the oldest went");
        drop(old_conn);
        // Both left are busy: nothing can make room.
        for conn in registry.lock().open.values() {
            conn.request_started();
        }
        assert!(registry.admit(2).is_none());
        young_conn.request_finished();
        assert!(registry.admit(2).is_some());
    }

    #[test]
    fn a_keep_alive_connection_that_starts_a_head_gets_the_header_deadline() {
        let limits = Limits {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(1),
            ..Limits::default()
        };
        let conn = Tracked::new(Instant::now());
        assert_eq!(conn.deadline(&limits).1, "header");
        conn.request_started();
        assert_eq!(conn.deadline(&limits).1, "request");
        conn.request_finished();
        assert_eq!(conn.deadline(&limits).1, "idle");
        conn.received();
        let (deadline, which) = conn.deadline(&limits);
        assert_eq!(which, "header");
        assert!(deadline <= Instant::now() + Duration::from_secs(1));
    }
}
