//! The control API's client, used by the `gwlb` CLI: one HTTP/1.1 request per connection over
//! TCP or a Unix socket, JSON in and out.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::http_error::{ErrorBody, ErrorDetail};
use crate::api::routes::WeightChange;
use crate::config::Listen;
use crate::control::{
    DrainAction, DrainReport, EndpointReport, FlowPage, FlowQuery, HealthCheckPatch,
    MirrorSessionReport, ReloadReport, StatsReport, TargetGroupInfo, TargetInfo, TargetSpec,
    REQUEST_TIMEOUT,
};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for a reply: the server's own wait for the control loop, plus margin.
const READ_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 5);

/// Characters escaped in a path segment (RFC 3986 `pchar` keeps `:` and `@`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address: the daemon is not running (or listens elsewhere).
    #[error("cannot reach the gwlb API at {endpoint}: {source} — is `gwlb run` running?")]
    Unreachable {
        /// The address tried.
        endpoint: Listen,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connection failed midway.
    #[error("talking to the gwlb API at {endpoint}: {source}")]
    Io {
        /// The address.
        endpoint: Listen,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The reply is not HTTP or not the JSON expected.
    #[error("unexpected reply from the gwlb API at {endpoint}: {message}")]
    BadReply {
        /// The address.
        endpoint: Listen,
        /// What was wrong.
        message: String,
    },
    /// The API answered with an error.
    #[error("{}", api_message(.status, .detail))]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        detail: ErrorDetail,
    },
}

fn api_message(status: &u16, detail: &ErrorDetail) -> String {
    match &detail.field {
        Some(field) => format!("{field}: {} (HTTP {status})", detail.message),
        None => format!("{} (HTTP {status})", detail.message),
    }
}

/// A reply: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    /// HTTP status code.
    pub status: u16,
    /// The body (Content-Length or chunked framing removed).
    pub body: Vec<u8>,
}

/// A client of one gwlb API endpoint.
#[derive(Debug, Clone)]
pub struct ApiClient {
    endpoint: Listen,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the API at `endpoint`, sending `token` as a bearer token if given.
    pub fn new(endpoint: Listen, token: Option<String>) -> ApiClient {
        ApiClient { endpoint, token }
    }

    /// The address it talks to.
    pub fn endpoint(&self) -> &Listen {
        &self.endpoint
    }

    /// `GET /v1/target-groups`.
    pub fn list_groups(&self) -> Result<Vec<TargetGroupInfo>, ClientError> {
        self.call("GET", "/v1/target-groups", None::<&()>)
    }

    /// `GET /v1/target-groups/{group}`.
    pub fn group(&self, group: &str) -> Result<TargetGroupInfo, ClientError> {
        self.call(
            "GET",
            &format!("/v1/target-groups/{}", segment(group)),
            None::<&()>,
        )
    }

    /// `POST /v1/target-groups/{group}/targets`.
    pub fn register(&self, group: &str, target: &TargetSpec) -> Result<TargetInfo, ClientError> {
        let path = format!("/v1/target-groups/{}/targets", segment(group));
        self.call("POST", &path, Some(target))
    }

    /// `DELETE /v1/target-groups/{group}/targets/{address}`.
    pub fn deregister(&self, group: &str, address: IpAddr) -> Result<TargetInfo, ClientError> {
        self.call("DELETE", &target_path(group, address), None::<&()>)
    }

    /// `PATCH /v1/target-groups/{group}/targets/{address}`.
    pub fn set_weight(
        &self,
        group: &str,
        address: IpAddr,
        weight: u16,
    ) -> Result<TargetInfo, ClientError> {
        self.call(
            "PATCH",
            &target_path(group, address),
            Some(&WeightChange { weight }),
        )
    }

    /// `PATCH /v1/target-groups/{group}/health-check`.
    pub fn set_health_check(
        &self,
        group: &str,
        patch: &HealthCheckPatch,
    ) -> Result<TargetGroupInfo, ClientError> {
        let path = format!("/v1/target-groups/{}/health-check", segment(group));
        self.call("PATCH", &path, Some(patch))
    }

    /// `GET /v1/stats`.
    pub fn stats(&self) -> Result<StatsReport, ClientError> {
        self.call("GET", "/v1/stats", None::<&()>)
    }

    /// `GET /v1/flows?...`.
    pub fn flows(&self, query: &FlowQuery) -> Result<FlowPage, ClientError> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(g) = &query.group {
            q.append_pair("group", g);
        }
        if let Some(a) = query.appliance {
            q.append_pair("appliance", &a.to_string());
        }
        if let Some(a) = query.address {
            q.append_pair("address", &a.to_string());
        }
        if let Some(p) = query.port {
            q.append_pair("port", &p.to_string());
        }
        if let Some(c) = &query.cursor {
            q.append_pair("cursor", c);
        }
        if let Some(l) = query.limit {
            q.append_pair("limit", &l.to_string());
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/v1/flows".to_owned()
        } else {
            format!("/v1/flows?{q}")
        };
        self.call("GET", &path, None::<&()>)
    }

    /// `GET /v1/mirror-sessions`.
    pub fn mirror_sessions(&self) -> Result<Vec<MirrorSessionReport>, ClientError> {
        self.call("GET", "/v1/mirror-sessions", None::<&()>)
    }

    /// `GET /v1/mirror-sessions/{name}`.
    pub fn mirror_session(&self, name: &str) -> Result<MirrorSessionReport, ClientError> {
        self.call("GET", &mirror_path(name), None::<&()>)
    }

    /// `POST /v1/mirror-sessions`: `body` is the session in the file's shape.
    pub fn create_mirror(
        &self,
        body: &serde_json::Value,
    ) -> Result<MirrorSessionReport, ClientError> {
        self.call("POST", "/v1/mirror-sessions", Some(body))
    }

    /// `PATCH /v1/mirror-sessions/{name}` (the fields of `body`), or `PUT` with `replace`
    /// (the whole session).
    pub fn change_mirror(
        &self,
        name: &str,
        body: &serde_json::Value,
        replace: bool,
    ) -> Result<MirrorSessionReport, ClientError> {
        let method = if replace { "PUT" } else { "PATCH" };
        self.call(method, &mirror_path(name), Some(body))
    }

    /// `DELETE /v1/mirror-sessions/{name}`.
    pub fn delete_mirror(&self, name: &str) -> Result<MirrorSessionReport, ClientError> {
        self.call("DELETE", &mirror_path(name), None::<&()>)
    }

    /// `GET /v1/endpoints`.
    pub fn endpoints(&self) -> Result<Vec<EndpointReport>, ClientError> {
        self.call("GET", "/v1/endpoints", None::<&()>)
    }

    /// `GET /v1/endpoints/{name}`.
    pub fn get_endpoint(&self, name: &str) -> Result<EndpointReport, ClientError> {
        self.call("GET", &endpoint_path(name), None::<&()>)
    }

    /// `POST /v1/endpoints`: `body` is the endpoint in the file's shape.
    pub fn create_endpoint(&self, body: &serde_json::Value) -> Result<EndpointReport, ClientError> {
        self.call("POST", "/v1/endpoints", Some(body))
    }

    /// `PATCH /v1/endpoints/{name}` (the fields of `body`), or `PUT` with `replace`.
    pub fn change_endpoint(
        &self,
        name: &str,
        body: &serde_json::Value,
        replace: bool,
    ) -> Result<EndpointReport, ClientError> {
        let method = if replace { "PUT" } else { "PATCH" };
        self.call(method, &endpoint_path(name), Some(body))
    }

    /// `DELETE /v1/endpoints/{name}`.
    pub fn delete_endpoint(&self, name: &str) -> Result<EndpointReport, ClientError> {
        self.call("DELETE", &endpoint_path(name), None::<&()>)
    }

    /// `PUT /v1/endpoints/{name}/rules` (`body`: the ordered list), or `POST` with `append`
    /// (`body`: one rule).
    pub fn change_rules(
        &self,
        name: &str,
        body: &serde_json::Value,
        append: bool,
    ) -> Result<EndpointReport, ClientError> {
        let method = if append { "POST" } else { "PUT" };
        self.call(
            method,
            &format!("{}/rules", endpoint_path(name)),
            Some(body),
        )
    }

    /// `DELETE /v1/endpoints/{name}/rules/{rule}`.
    pub fn delete_rule(&self, name: &str, rule: &str) -> Result<EndpointReport, ClientError> {
        let path = format!("{}/rules/{}", endpoint_path(name), segment(rule));
        self.call("DELETE", &path, None::<&()>)
    }

    /// `POST /v1/reload`.
    pub fn reload(&self) -> Result<ReloadReport, ClientError> {
        self.call("POST", "/v1/reload", None::<&()>)
    }

    /// `POST` (start), `DELETE` (stop) or `GET` (status) `/v1/drain`.
    pub fn drain(&self, action: DrainAction) -> Result<DrainReport, ClientError> {
        let method = match action {
            DrainAction::Start => "POST",
            DrainAction::Stop => "DELETE",
            DrainAction::Status => "GET",
        };
        self.call(method, "/v1/drain", None::<&()>)
    }

    /// Sends a JSON request and decodes a 2xx JSON reply; an error reply becomes
    /// [`ClientError::Api`].
    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| self.bad_reply(format!("cannot encode the request: {e}")))?;
        let reply = self.request(method, path, body.as_deref())?;
        if !(200..300).contains(&reply.status) {
            return Err(match serde_json::from_slice::<ErrorBody>(&reply.body) {
                Ok(b) => ClientError::Api {
                    status: reply.status,
                    detail: b.error,
                },
                Err(_) => self.bad_reply(format!(
                    "HTTP {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body).trim()
                )),
            });
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| self.bad_reply(format!("cannot decode the reply of {method} {path}: {e}")))
    }

    /// Sends one request (`path` includes any query) and returns the reply, whatever its
    /// status.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<RawReply, ClientError> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: gwlb\r\nConnection: close\r\n");
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());

        let raw = match &self.endpoint {
            Listen::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
                    .map_err(|source| self.unreachable(source))?;
                self.exchange(stream, &request)?
            }
            Listen::Unix(path) => {
                let stream =
                    UnixStream::connect(path).map_err(|source| self.unreachable(source))?;
                self.exchange(stream, &request)?
            }
        };
        self.parse_reply(&raw)
    }

    fn exchange<S: Read + Write + SetTimeout>(
        &self,
        mut stream: S,
        request: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        stream
            .set_timeout(READ_TIMEOUT)
            .map_err(|source| self.io(source))?;
        stream
            .write_all(request)
            .map_err(|source| self.io(source))?;
        let mut raw = Vec::new();
        // `Connection: close`: the reply ends when the server closes.
        stream
            .read_to_end(&mut raw)
            .map_err(|source| self.io(source))?;
        Ok(raw)
    }

    fn parse_reply(&self, raw: &[u8]) -> Result<RawReply, ClientError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(raw) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(self.bad_reply("connection closed before a complete reply".into()))
            }
            Err(e) => return Err(self.bad_reply(format!("not an HTTP reply: {e}"))),
        };
        let status = response.code.unwrap_or(0);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        let rest = &raw[head_len..];
        let body = if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            self.dechunk(rest)?
        } else if let Some(len) = header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| self.bad_reply(format!("bad Content-Length {len:?}")))?;
            rest.get(..len)
                .ok_or_else(|| self.bad_reply("reply shorter than its Content-Length".into()))?
                .to_vec()
        } else {
            rest.to_vec()
        };
        Ok(RawReply { status, body })
    }

    fn dechunk(&self, mut rest: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let (used, size) = match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete(c)) => c,
                _ => return Err(self.bad_reply("malformed chunked body".into())),
            };
            if size == 0 {
                return Ok(body);
            }
            let size =
                usize::try_from(size).map_err(|_| self.bad_reply("chunk too large".into()))?;
            let chunk = rest
                .get(used..used + size)
                .ok_or_else(|| self.bad_reply("truncated chunked body".into()))?;
            body.extend_from_slice(chunk);
            rest = rest.get(used + size + 2..).unwrap_or_default();
        }
    }

    fn unreachable(&self, source: io::Error) -> ClientError {
        ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn bad_reply(&self, message: String) -> ClientError {
        ClientError::BadReply {
            endpoint: self.endpoint.clone(),
            message,
        }
    }
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn endpoint_path(name: &str) -> String {
    format!("/v1/endpoints/{}", segment(name))
}

fn mirror_path(name: &str) -> String {
    format!("/v1/mirror-sessions/{}", segment(name))
}

fn target_path(group: &str, address: IpAddr) -> String {
    format!(
        "/v1/target-groups/{}/targets/{}",
        segment(group),
        segment(&address.to_string())
    )
}

/// Read and write timeouts of a stream.
trait SetTimeout {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()>;
}

impl SetTimeout for TcpStream {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl SetTimeout for UnixStream {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ApiClient {
        ApiClient::new(
            "127.0.0.1:9"
                .parse::<std::net::SocketAddr>()
                .map(Listen::Tcp)
                .unwrap(),
            None,
        )
    }

    #[test]
    fn test_parse_reply_content_length_and_chunked() {
        let c = client();
        let r = c
            .parse_reply(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}garbage")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = c
            .parse_reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            )
            .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(c.parse_reply(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert!(c
            .parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
            .is_err());
    }

    #[test]
    fn test_paths_escape_segments() {
        assert_eq!(
            target_path("fw a/b", "fd00::1".parse().unwrap()),
            "/v1/target-groups/fw%20a%2Fb/targets/fd00::1"
        );
    }

    #[test]
    fn test_refused_connection_is_unreachable() {
        // Bind then drop a listener: its port is very likely closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = ApiClient::new(Listen::Tcp(([127, 0, 0, 1], port).into()), None);
        let e = c.stats().unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().contains("is `gwlb run` running?"), "{e}");
    }
}
