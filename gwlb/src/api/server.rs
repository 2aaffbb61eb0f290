//! HTTP/1.1 listeners (TCP or Unix socket) on hyper, with bounded connections, header and
//! body limits, timeouts, bearer-token authentication and a fixed pool of request threads;
//! the routes come from [`routes`](super::routes) and [`metrics`](super::metrics).
//!
//! Each listener is one thread running a single-threaded tokio runtime that accepts
//! connections and speaks HTTP (hyper), plus [`Limits::request_threads`] threads, started
//! once, that run the (blocking) route handlers. Nothing here creates a thread after start,
//! so no connection pattern can make the process run out of threads, and the workers never see
//! the API: only the control loop does. What a hostile client can do and what it gets:
//!
//! | abuse | answer |
//! |---|---|
//! | more than [`Limits::max_connections`] open connections | the extra ones get `503` and are closed at once |
//! | more than [`Limits::max_connections_per_peer`] from one TCP peer address | the same, so one client cannot lock the others (a scraper, the operator) out |
//! | a request head larger than [`Limits::max_header_bytes`] | `431`, connection closed (nothing beyond the limit is buffered) |
//! | a head not complete within [`Limits::header_timeout`] (slow loris, idle keep-alive) | connection closed |
//! | a body larger than [`MAX_BODY_BYTES`] | `413` |
//! | a body not complete within [`Limits::body_timeout`] | `408` |
//! | a connection older than [`Limits::max_connection_age`] | closed after its current request |
//! | every request thread busy and [`Limits::queued_requests`] waiting | `503` |
//! | `accept()` failing (EMFILE, ENFILE, ENOBUFS) | logged (at most once a second), retried after 50 ms |
//! | bytes that are not HTTP/1.x (non-ASCII header bytes, an HTTP/2 preface) | `400`, or the connection is closed |

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, Semaphore};

use super::http_error::HttpError;
use super::routes::Routes;
use crate::config::Listen;
use crate::control::{ControlHandle, REQUEST_TIMEOUT};

/// Largest request body accepted (bytes); longer ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// File mode of a Unix socket: owner and group may connect.
const SOCKET_MODE: u32 = 0o660;

/// How long to wait before accepting again after `accept()` failed (EMFILE and the like:
/// retrying at once would spin).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What one listener allows a client; the defaults are what `gwlb run` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// Connections open at once from one peer IP address (TCP listeners; a Unix socket's
    /// file mode decides who may connect); more are answered `503` and closed.
    pub max_connections_per_peer: usize,
    /// Threads running route handlers (started once).
    pub request_threads: usize,
    /// Requests that may wait for a free request thread; more get `503`.
    pub queued_requests: usize,
    /// Largest request head (request line and headers), bytes; hyper's read buffer limit
    /// (at least 8192).
    pub max_header_bytes: usize,
    /// Time allowed from the connection's start (or the previous response) to a complete
    /// request head.
    pub header_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_timeout: Duration,
    /// Oldest a connection may get; it is closed after its current request.
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_peer: 64,
            request_threads: 4,
            queued_requests: 64,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(120),
        }
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Binding the address or socket failed.
    #[error("{listen}: cannot listen: {source}")]
    Bind {
        /// The address, as configured.
        listen: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A process already answers on the Unix socket (another gwlb?).
    #[error("{listen}: another process is listening on this socket")]
    SocketInUse {
        /// The address, as configured.
        listen: String,
    },
    /// The socket path exists and is not a socket: it is not removed.
    #[error("{}: exists and is not a socket; not replacing it", .path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The HTTP server could not start on the bound listener.
    #[error("{listen}: cannot start the HTTP server: {message}")]
    Start {
        /// The address, as configured.
        listen: String,
        /// Details.
        message: String,
    },
}

/// A request, as the route handlers see it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// Upper-case method (`GET`, `POST`, ...).
    pub method: String,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
    /// Who sent it (`IP:PORT`, or `unix` for a Unix socket), for the logs.
    pub peer: String,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// `Allow` header (405 responses).
    pub allow: Option<String>,
}

impl Reply {
    /// A JSON body with `status`.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Reply {
                    status,
                    content_type: "application/json",
                    body,
                    allow: None,
                }
            }
            Err(e) => Reply::error(&HttpError::internal(format!("cannot encode reply: {e}"))),
        }
    }

    /// A JSON error body.
    pub fn error(e: &HttpError) -> Reply {
        Reply {
            status: e.status,
            content_type: "application/json",
            body: e.to_json(),
            allow: None,
        }
    }

    /// A plain-text body.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into_bytes(),
            allow: None,
        }
    }
}

/// Answers one request.
pub type Handler = Arc<dyn Fn(&ApiRequest) -> Reply + Send + Sync>;

/// A running listener. Dropping it stops its threads and removes its Unix socket file.
pub struct ApiServer {
    shutdown: Option<oneshot::Sender<()>>,
    io_thread: Option<JoinHandle<()>>,
    request_threads: Vec<JoinHandle<()>>,
    stats: Arc<ListenerStats>,
    local: Listen,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("local", &self.local)
            .finish()
    }
}

/// What a listener has seen, for the logs and tests.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections refused because [`Limits::max_connections`] were open.
    pub refused_busy: AtomicU64,
    /// Connections refused because [`Limits::max_connections_per_peer`] were open from
    /// their peer's address.
    pub refused_peer: AtomicU64,
    /// `accept()` calls that failed.
    pub accept_errors: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

impl ApiServer {
    /// Where it listens: for TCP the bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> &Listen {
        &self.local
    }

    /// Connection counters of this listener.
    pub fn stats(&self) -> &ListenerStats {
        &self.stats
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The I/O thread drops the runtime (and with it every connection and the job sender),
        // which ends the request threads once they finish what they run.
        if let Some(t) = self.io_thread.take() {
            let _ = t.join();
        }
        for t in self.request_threads.drain(..) {
            let _ = t.join();
        }
        if let Listen::Unix(path) = &self.local {
            let _ = fs::remove_file(path);
        }
    }
}

/// Serves the control API (`/v1/...`, see `docs/api.md`) on `listen`. With a `token`, every
/// request needs `Authorization: Bearer <token>`.
pub fn serve(
    listen: &Listen,
    token: Option<String>,
    handle: ControlHandle,
) -> Result<ApiServer, ApiError> {
    let routes = Routes::new(handle);
    start(
        listen,
        "api",
        token,
        Arc::new(move |req| routes.handle(req)),
        Limits::default(),
    )
}

/// One request for a request thread, and where its reply goes.
type Job = (ApiRequest, oneshot::Sender<Reply>);

/// What every connection task of a listener shares.
struct Shared {
    name: &'static str,
    token: Option<Arc<str>>,
    jobs: crossbeam_channel::Sender<Job>,
    limits: Limits,
}

/// Binds `listen` and answers its requests with `handler` within `limits`.
pub fn start(
    listen: &Listen,
    name: &'static str,
    token: Option<String>,
    handler: Handler,
    limits: Limits,
) -> Result<ApiServer, ApiError> {
    let start_err = |message: String| ApiError::Start {
        listen: listen.to_string(),
        message,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| start_err(format!("cannot build the I/O runtime: {e}")))?;
    let (acceptor, local) = {
        let _entered = runtime.enter();
        bind(listen)?
    };
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(limits.queued_requests.max(1));
    let mut server = ApiServer {
        shutdown: None,
        io_thread: None,
        request_threads: Vec::with_capacity(limits.request_threads),
        stats: Arc::new(ListenerStats::default()),
        local: local.clone(),
    };
    for i in 0..limits.request_threads.max(1) {
        let jobs = jobs_rx.clone();
        let handler = Arc::clone(&handler);
        let spawned = std::thread::Builder::new()
            .name(format!("gwlb-{name}-{i}"))
            .spawn(move || {
                for (request, reply_to) in jobs {
                    // The connection may be gone (timed out): its reply is dropped.
                    let _ = reply_to.send(handler(&request));
                }
            });
        match spawned {
            Ok(t) => server.request_threads.push(t),
            // Drop stops what already runs.
            Err(e) => return Err(start_err(format!("cannot spawn a request thread: {e}"))),
        }
    }
    let shared = Arc::new(Shared {
        name,
        token: token.map(Arc::<str>::from),
        jobs: jobs_tx,
        limits,
    });
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let stats = Arc::clone(&server.stats);
    let io_thread = std::thread::Builder::new()
        .name(format!("gwlb-{name}-io"))
        .spawn(move || {
            runtime.block_on(accept_loop(acceptor, shared, stats, shutdown_rx));
            // Dropping the runtime cancels every connection task.
        })
        .map_err(|e| start_err(format!("cannot spawn the I/O thread: {e}")))?;
    server.shutdown = Some(shutdown_tx);
    server.io_thread = Some(io_thread);
    tracing::info!(listener = name, address = %local, "listening");
    Ok(server)
}

/// A bound listener of either kind.
enum Acceptor {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// A connection of either kind.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Writes what fits without waiting (the short refusal of a connection over the limit).
    fn try_write_now(&self, bytes: &[u8]);
}

impl Stream for tokio::net::TcpStream {
    fn try_write_now(&self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl Stream for tokio::net::UnixStream {
    fn try_write_now(&self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl Acceptor {
    /// A connection, its peer as logged, and the peer's address (TCP only).
    async fn accept(&self) -> io::Result<(Box<dyn Stream>, String, Option<IpAddr>)> {
        match self {
            Acceptor::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer.to_string(), Some(peer.ip())))
            }
            Acceptor::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), "unix".to_owned(), None))
            }
        }
    }
}

/// Open connections per peer address. An entry lives while its peer has a connection open,
/// so the map never holds more than [`Limits::max_connections`] entries.
#[derive(Default)]
struct PeerCounts(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One open connection counted against its peer; dropping it (the connection ended) uncounts.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl PeerCounts {
    /// Counts one more connection from `peer`, unless it already has `max` open.
    fn acquire(self: &Arc<Self>, peer: IpAddr, max: usize) -> Option<PeerSlot> {
        // Taken by the listener's accept loop and connection tasks only, all on the
        // listener's one thread: never contended, and nothing panics while it is held.
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(peer).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

/// The reply written to a connection over [`Limits::max_connections`] before closing it
/// (without hyper: the connection gets no task). The body is the API's usual error JSON.
fn busy_reply(why: &str) -> Vec<u8> {
    let body = HttpError::busy(why).to_json();
    let mut reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    reply
}

async fn accept_loop(
    acceptor: Acceptor,
    shared: Arc<Shared>,
    stats: Arc<ListenerStats>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    let busy = busy_reply("too many open connections");
    let peer_busy = busy_reply("too many open connections from this address");
    let peers = Arc::new(PeerCounts::default());
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = acceptor.accept() => a,
        };
        let (stream, peer, peer_ip) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS/ECONNABORTED: the listener stays; try again shortly.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(
                        listener = shared.name,
                        "accepting a connection: {e} (retrying)"
                    );
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            stream.try_write_now(&busy);
            continue;
        };
        let peer_slot = match peer_ip {
            Some(ip) => match peers.acquire(ip, shared.limits.max_connections_per_peer.max(1)) {
                Some(slot) => Some(slot),
                None => {
                    stats.refused_peer.fetch_add(1, Ordering::Relaxed);
                    stream.try_write_now(&peer_busy);
                    continue;
                }
            },
            None => None,
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            serve_connection(stream, peer, &shared).await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(peer_slot);
            drop(permit);
        });
    }
}

async fn serve_connection(stream: Box<dyn Stream>, peer: String, shared: &Arc<Shared>) {
    let limits = &shared.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .keep_alive(true);
    let peer: Arc<str> = peer.into();
    let service_shared = Arc::clone(shared);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&service_shared);
        let peer = Arc::clone(&peer);
        async move { Ok::<_, Infallible>(respond(req, &peer, &shared).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(age);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(listener = shared.name, "connection ended: {e}");
            }
            return;
        }
        _ = &mut age => conn.as_mut().graceful_shutdown(),
    }
    // Too old: finish the request in progress (bounded by the body and handler timeouts).
    let grace = limits.body_timeout + REQUEST_TIMEOUT + Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, conn).await;
}

/// Answers one request: token, body (limited in size and time), then a request thread.
async fn respond(
    req: hyper::Request<Incoming>,
    peer: &str,
    shared: &Shared,
) -> hyper::Response<Full<Bytes>> {
    let reply = match read_request(req, peer, shared).await {
        Ok(request) => {
            let method = request.method.clone();
            let path = request.path.clone();
            let reply = run_handler(request, shared).await;
            tracing::debug!(
                listener = shared.name, method = %method, path = %path,
                status = reply.status, peer = %peer, "request"
            );
            reply
        }
        Err(e) => Reply::error(&e),
    };
    to_response(reply)
}

async fn read_request(
    req: hyper::Request<Incoming>,
    peer: &str,
    shared: &Shared,
) -> Result<ApiRequest, HttpError> {
    if let Some(token) = &shared.token {
        check_token(req.headers().get(AUTHORIZATION), token)?;
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(HttpError::payload_too_large(MAX_BODY_BYTES));
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        shared.limits.body_timeout,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    .map_err(|_| {
        HttpError::request_timeout(format!(
            "the body did not arrive within {:?}",
            shared.limits.body_timeout
        ))
    })?;
    let body = match collected {
        Ok(c) => c.to_bytes().to_vec(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(HttpError::payload_too_large(MAX_BODY_BYTES))
        }
        Err(e) => {
            return Err(HttpError::invalid(
                "body",
                format!("cannot read the body: {e}"),
            ))
        }
    };
    Ok(ApiRequest {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        body,
        peer: peer.to_owned(),
    })
}

/// Hands `request` to a request thread and waits for its reply.
async fn run_handler(request: ApiRequest, shared: &Shared) -> Reply {
    let (tx, rx) = oneshot::channel();
    if shared.jobs.try_send((request, tx)).is_err() {
        return Reply::error(&HttpError::busy("every request thread is busy; try again"));
    }
    // A handler waits at most REQUEST_TIMEOUT for the control loop; the margin covers a
    // queue of requests ahead of this one.
    match tokio::time::timeout(REQUEST_TIMEOUT * 2, rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Reply::error(&HttpError::internal("the request thread stopped")),
        Err(_) => Reply::error(&HttpError::gateway_timeout(format!(
            "no reply within {:?}",
            REQUEST_TIMEOUT * 2
        ))),
    }
}

fn to_response(reply: Reply) -> hyper::Response<Full<Bytes>> {
    let status = reply.status;
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Some(allow) = reply
        .allow
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        headers.insert(ALLOW, allow);
    }
    if status == 401 {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn bind(listen: &Listen) -> Result<(Acceptor, Listen), ApiError> {
    let bind_err = |source| ApiError::Bind {
        listen: listen.to_string(),
        source,
    };
    match listen {
        Listen::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
            let local = listener.local_addr().map_err(bind_err)?;
            listener.set_nonblocking(true).map_err(bind_err)?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_err)?;
            Ok((Acceptor::Tcp(listener), Listen::Tcp(local)))
        }
        Listen::Unix(path) => {
            remove_stale_socket(listen, path)?;
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_err)?;
            fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(bind_err)?;
            listener.set_nonblocking(true).map_err(bind_err)?;
            let listener = tokio::net::UnixListener::from_std(listener).map_err(bind_err)?;
            Ok((Acceptor::Unix(listener), Listen::Unix(path.clone())))
        }
    }
}

/// Removes a socket file left by a gwlb that did not stop cleanly; refuses to touch a
/// socket someone answers on, or a file that is not a socket.
fn remove_stale_socket(listen: &Listen, path: &Path) -> Result<(), ApiError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ApiError::SocketInUse {
                    listen: listen.to_string(),
                });
            }
            fs::remove_file(path).map_err(|source| ApiError::Bind {
                listen: listen.to_string(),
                source,
            })
        }
        Ok(_) => Err(ApiError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ApiError::Bind {
            listen: listen.to_string(),
            source,
        }),
    }
}

fn check_token(header: Option<&HeaderValue>, token: &str) -> Result<(), HttpError> {
    let given = header
        .ok_or_else(|| HttpError::unauthorized("missing Authorization: Bearer <token> header"))?
        .to_str()
        .map_err(|_| HttpError::unauthorized("Authorization header is not `Bearer <token>`"))?;
    let given = given
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| HttpError::unauthorized("Authorization header is not `Bearer <token>`"))?;
    // Constant time in the token's content (its length may show).
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(HttpError::unauthorized("wrong token"))
    }
}
