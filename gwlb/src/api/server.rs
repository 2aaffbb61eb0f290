//! HTTP/1.1 listeners (TCP or Unix socket) with a few request threads, bearer-token
//! authentication and a body-size limit; the routes come from [`routes`](super::routes) and
//! [`metrics`](super::metrics).
//!
//! Requests are answered by a small fixed pool of threads, so a slow client or a long flow
//! dump delays other API requests at worst, never the data path: the workers never see the
//! API, only the control loop does.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;
use subtle::ConstantTimeEq;

use super::http_error::HttpError;
use super::routes::Routes;
use crate::config::Listen;
use crate::control::ControlHandle;

/// Largest request body accepted (bytes); longer ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Threads answering requests, per listener.
const REQUEST_THREADS: usize = 4;

/// File mode of a Unix socket: owner and group may connect.
const SOCKET_MODE: u32 = 0o660;

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
    server: Option<Arc<tiny_http::Server>>,
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    local: Listen,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("local", &self.local)
            .finish()
    }
}

impl ApiServer {
    /// Where it listens: for TCP the bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> &Listen {
        &self.local
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(server) = &self.server {
            // One unblock wakes one thread blocked in `recv`.
            for _ in 0..self.threads.len() {
                server.unblock();
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The last reference: tiny_http's Drop wakes its accept thread by connecting to the
        // socket, so the file goes only after it.
        drop(self.server.take());
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
    )
}

/// Binds `listen` and answers its requests with `handler` on [`REQUEST_THREADS`] threads.
pub(crate) fn start(
    listen: &Listen,
    name: &'static str,
    token: Option<String>,
    handler: Handler,
) -> Result<ApiServer, ApiError> {
    let (server, local) = bind(listen)?;
    let server = Arc::new(server);
    let stopping = Arc::new(AtomicBool::new(false));
    let token = token.map(Arc::<str>::from);
    let mut threads = Vec::with_capacity(REQUEST_THREADS);
    for i in 0..REQUEST_THREADS {
        let thread_server = Arc::clone(&server);
        let thread_stopping = Arc::clone(&stopping);
        let handler = Arc::clone(&handler);
        let token = token.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("gwlb-{name}-{i}"))
            .spawn(move || loop {
                match thread_server.recv() {
                    Ok(request) => answer(request, token.as_deref(), &handler),
                    Err(_) if thread_stopping.load(Ordering::SeqCst) => break,
                    Err(e) => tracing::warn!(listener = name, "accepting a request: {e}"),
                }
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Stop what already runs (Drop unblocks and joins it).
                drop(ApiServer {
                    server: Some(server),
                    threads,
                    stopping,
                    local: local.clone(),
                });
                return Err(ApiError::Start {
                    listen: listen.to_string(),
                    message: format!("cannot spawn a thread: {e}"),
                });
            }
        }
    }
    tracing::info!(listener = name, address = %local, "listening");
    Ok(ApiServer {
        server: Some(server),
        threads,
        stopping,
        local,
    })
}

fn bind(listen: &Listen) -> Result<(tiny_http::Server, Listen), ApiError> {
    let bind_err = |source| ApiError::Bind {
        listen: listen.to_string(),
        source,
    };
    let start_err = |e: Box<dyn std::error::Error + Send + Sync>| ApiError::Start {
        listen: listen.to_string(),
        message: e.to_string(),
    };
    match listen {
        Listen::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
            let local = listener.local_addr().map_err(bind_err)?;
            let server = tiny_http::Server::from_listener(listener, None).map_err(start_err)?;
            Ok((server, Listen::Tcp(local)))
        }
        Listen::Unix(path) => {
            remove_stale_socket(listen, path)?;
            let listener = UnixListener::bind(path).map_err(bind_err)?;
            fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(bind_err)?;
            let server = tiny_http::Server::from_listener(listener, None).map_err(start_err)?;
            Ok((server, Listen::Unix(path.clone())))
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

fn answer(mut request: tiny_http::Request, token: Option<&str>, handler: &Handler) {
    let peer = request
        .remote_addr()
        .map_or_else(|| "unix".to_owned(), |a| a.to_string());
    let reply = match read_request(&mut request, token, peer) {
        Ok(req) => {
            let reply = handler(&req);
            tracing::debug!(
                method = %req.method, path = %req.path, status = reply.status, peer = %req.peer,
                "request"
            );
            reply
        }
        Err(e) => Reply::error(&e),
    };
    let mut response = tiny_http::Response::from_data(reply.body)
        .with_status_code(reply.status)
        // Always Content-Length, never chunked: simpler clients (and ours) can rely on it.
        .with_chunked_threshold(usize::MAX);
    add_header(&mut response, "Content-Type", reply.content_type);
    if let Some(allow) = &reply.allow {
        add_header(&mut response, "Allow", allow);
    }
    if reply.status == 401 {
        add_header(&mut response, "WWW-Authenticate", "Bearer");
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("writing a response: {e}");
    }
}

fn add_header<R: Read>(response: &mut tiny_http::Response<R>, name: &str, value: &str) {
    // Names and values here are ASCII built by this module; one that tiny_http refused would
    // only be left out.
    if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        response.add_header(h);
    }
}

fn read_request(
    request: &mut tiny_http::Request,
    token: Option<&str>,
    peer: String,
) -> Result<ApiRequest, HttpError> {
    if let Some(token) = token {
        check_token(request, token)?;
    }
    if request.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(HttpError::payload_too_large(MAX_BODY_BYTES));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| HttpError::invalid("body", format!("cannot read the body: {e}")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(HttpError::payload_too_large(MAX_BODY_BYTES));
    }
    let (path, query) = match request.url().split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (request.url().to_owned(), None),
    };
    Ok(ApiRequest {
        method: request.method().as_str().to_ascii_uppercase(),
        path,
        query,
        body,
        peer,
    })
}

fn check_token(request: &tiny_http::Request, token: &str) -> Result<(), HttpError> {
    let given = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str())
        .ok_or_else(|| HttpError::unauthorized("missing Authorization: Bearer <token> header"))?;
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
