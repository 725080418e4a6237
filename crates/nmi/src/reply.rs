//! An error answer in IMDS's shape: a status and `{"error": …, "error_description": …}`.
//!
//! Upstream answered most errors with Go's `http.Error` (plain text); IMDS and the SDKs that
//! read its errors expect this JSON shape, so every refusal here uses it (docs/nmi.md).

use serde_json::json;

/// `Content-Type` of every answer NMI writes itself, success or error.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Seconds in upstream's `Retry-After` header under `--set-retry-after-header`.
pub const RETRY_AFTER_SECONDS: u64 = 20;

/// The `error` codes NMI answers with, from IMDS's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    Forbidden,
    NotFound,
    ServerError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::ServerError => "server_error",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }
}

/// A complete error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub status: u16,
    pub code: ErrorCode,
    pub description: String,
    /// `Retry-After` in seconds, when the client should come back.
    pub retry_after_seconds: Option<u64>,
}

impl ErrorReply {
    pub fn new(status: u16, code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            retry_after_seconds: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::InvalidRequest, description)
    }

    /// Upstream's `--set-retry-after-header` answer: 503 with `Retry-After: 20`.
    pub fn retry_later(description: impl Into<String>) -> Self {
        Self {
            retry_after_seconds: Some(RETRY_AFTER_SECONDS),
            ..Self::new(503, ErrorCode::ServiceUnavailable, description)
        }
    }

    /// The JSON body (no trailing newline).
    pub fn body(&self) -> String {
        json!({"error": self.code.as_str(), "error_description": self.description}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_imds_error_shape() {
        let reply = ErrorReply::invalid_request("Required metadata header not specified");
        assert_eq!(
            reply.body(),
            r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#
        );
        assert_eq!(reply.status, 400);
        assert_eq!(reply.retry_after_seconds, None);
    }

    #[test]
    fn descriptions_are_escaped_as_json() {
        let reply = ErrorReply::new(500, ErrorCode::ServerError, "a \"quoted\"\nline\\");
        let parsed: serde_json::Value = serde_json::from_str(&reply.body()).unwrap();
        assert_eq!(parsed["error"], "server_error");
        assert_eq!(parsed["error_description"], "a \"quoted\"\nline\\");
    }

    #[test]
    fn retry_later_is_upstreams_503_with_retry_after_20() {
        let reply = ErrorReply::retry_later("later");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.code, ErrorCode::ServiceUnavailable);
        assert_eq!(reply.retry_after_seconds, Some(20));
    }
}
