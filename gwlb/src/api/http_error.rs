//! The error body of the control API: `{"error": {"kind": ..., "field": ..., "message": ...}}`
//! with a 4xx or 5xx status. The server writes it; the client reads it back.

use serde::{Deserialize, Serialize};

use crate::control::ControlError;

/// What went wrong, as sent in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable kind: `invalid`, `not_found`, `conflict`, `unavailable`,
    /// `unauthorized`, `method_not_allowed`, `payload_too_large`.
    pub kind: String,
    /// The offending input (body field, query parameter or path segment), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error response: status and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {}", .detail.message)]
pub struct HttpError {
    /// HTTP status code.
    pub status: u16,
    /// The body's `error`.
    pub detail: ErrorDetail,
}

impl HttpError {
    fn new(status: u16, kind: &str, field: Option<String>, message: impl Into<String>) -> Self {
        HttpError {
            status,
            detail: ErrorDetail {
                kind: kind.to_owned(),
                field,
                message: message.into(),
            },
        }
    }

    /// 400: `field` of the request is invalid.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        HttpError::new(400, "invalid", Some(field.into()), message)
    }

    /// 404: no such route or resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        HttpError::new(404, "not_found", None, message)
    }

    /// 405: the route exists, the method does not; `allowed` lists the methods it takes.
    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> Self {
        HttpError::new(
            405,
            "method_not_allowed",
            None,
            format!(
                "{method} is not allowed here; allowed: {}",
                allowed.join(", ")
            ),
        )
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        HttpError::new(401, "unauthorized", None, message)
    }

    /// 413: the body is longer than `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        HttpError::new(
            413,
            "payload_too_large",
            Some("body".to_owned()),
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 503: every request thread is busy; try again.
    pub fn busy(message: impl Into<String>) -> Self {
        HttpError::new(503, "busy", None, message)
    }

    /// 408: the client did not send its request body in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        HttpError::new(408, "request_timeout", Some("body".to_owned()), message)
    }

    /// 504: no reply was computed in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        HttpError::new(504, "timeout", None, message)
    }

    /// 500: the server failed (e.g. could not encode a reply).
    pub fn internal(message: impl Into<String>) -> Self {
        HttpError::new(500, "internal", None, message)
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: self.detail.clone(),
        };
        let mut out = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }
}

impl From<ControlError> for HttpError {
    fn from(e: ControlError) -> Self {
        let status = e.http_status();
        match e {
            ControlError::Invalid { field, message } => {
                HttpError::new(status, "invalid", Some(field), message)
            }
            ControlError::NotFound { .. } => {
                HttpError::new(status, "not_found", None, e.to_string())
            }
            ControlError::Conflict { message } => HttpError::new(status, "conflict", None, message),
            ControlError::Unavailable { .. } => {
                HttpError::new(status, "unavailable", None, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_control_error_keeps_field_and_status() {
        let e = HttpError::from(ControlError::invalid(
            "weight",
            "1001 is out of range 0..=1000",
        ));
        assert_eq!(e.status, 400);
        let body: ErrorBody = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(body.error.kind, "invalid");
        assert_eq!(body.error.field.as_deref(), Some("weight"));
        assert_eq!(body.error.message, "1001 is out of range 0..=1000");
    }

    #[test]
    fn test_not_found_and_conflict() {
        let e = HttpError::from(ControlError::NotFound {
            what: "target group \"x\"".into(),
        });
        assert_eq!((e.status, e.detail.kind.as_str()), (404, "not_found"));
        assert_eq!(e.detail.message, "target group \"x\" not found");
        let e = HttpError::from(ControlError::Conflict {
            message: "already registered".into(),
        });
        assert_eq!((e.status, e.detail.kind.as_str()), (409, "conflict"));
    }

    #[test]
    fn test_field_omitted_when_none() {
        let json = String::from_utf8(HttpError::not_found("no route").to_json()).unwrap();
        assert_eq!(
            json,
            "{\"error\":{\"kind\":\"not_found\",\"message\":\"no route\"}}\n"
        );
    }
}
