//! IMDS responses: the headers real IMDS sends and its two error shapes — the identity shape
//! `{"error": code, "error_description": text}` and the instance shape `{"error": "Bad request. …"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::journal::Operation;

/// The `Server` header of real IMDS.
pub const SERVER: &str = "IMDS/150.870.65.1854";
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

pub fn json(status: StatusCode, op: Operation, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => build(status, op, JSON, bytes),
        // Only maps with non-string keys fail to serialise; none of our bodies have them.
        Err(error) => build(
            StatusCode::INTERNAL_SERVER_ERROR,
            op,
            TEXT,
            format!("the emulator could not encode its answer: {error}").into_bytes(),
        ),
    }
}

pub fn text(op: Operation, body: String) -> Response {
    build(StatusCode::OK, op, TEXT, body.into_bytes())
}

fn build(status: StatusCode, op: Operation, content_type: &'static str, body: Vec<u8>) -> Response {
    (
        status,
        op,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::SERVER, HeaderValue::from_static(SERVER)),
        ],
        body,
    )
        .into_response()
}

fn with_retry_after(mut response: Response, retry_after: Option<u64>) -> Response {
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An error of the identity endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError {
    pub status: StatusCode,
    pub code: String,
    pub description: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct IdentityErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl IdentityError {
    pub fn new(status: StatusCode, code: &str, description: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn respond(&self, op: Operation) -> Response {
        let body = IdentityErrorBody {
            error: &self.code,
            error_description: &self.description,
        };
        with_retry_after(json(self.status, op, &body), self.retry_after)
    }
}

/// An error of `/metadata/instance` and `/metadata/versions`: the whole body is given.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceError {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl InstanceError {
    /// `{"error": "Bad request. <detail>"}`
    pub fn bad_request(detail: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({ "error": format!("Bad request. {detail}") }),
        }
    }

    pub fn respond(&self, op: Operation) -> Response {
        json(self.status, op, &self.body)
    }
}

/// The usual IMDS code and wording for an error status, used when a fault rule names none.
pub fn default_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request", "Bad request"),
        401 => ("unauthorized_client", "Unauthorized"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not_found", "IMDS is being updated; retry later"),
        405 => ("method_not_allowed", "Method not allowed"),
        410 => (
            "service_unavailable",
            "IMDS is starting or being updated; it is available again within 70 seconds",
        ),
        429 => (
            "too_many_requests",
            "Too many requests; retry after the Retry-After interval",
        ),
        500 => (
            "unknown",
            "Failed to retrieve token from the Active directory.",
        ),
        503 => ("service_unavailable", "IMDS is temporarily unavailable"),
        s if (500..=599).contains(&s) => ("server_error", "Internal server error"),
        _ => ("bad_request", "Bad request"),
    }
}

/// `Retry-After` of a 429 whose fault rule names none: what IMDS's own rate limit sends.
const DEFAULT_THROTTLE_RETRY_AFTER_SECS: u64 = 1;

/// A fault rule's answer: `body` verbatim, else the identity shape with defaults per status; a
/// 429 always carries `Retry-After` (1 s unless the rule says otherwise).
pub fn fault(
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    retry_after: Option<u64>,
    body: Option<&serde_json::Value>,
) -> Response {
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (default_code, default_message) = default_error(status);
    let op = Operation("fault");
    let response = match body {
        Some(body) => json(status_code, op, body),
        None => IdentityError::new(
            status_code,
            code.unwrap_or(default_code),
            message.unwrap_or(default_message),
        )
        .respond(op),
    };
    let retry_after = retry_after
        .or((status_code == StatusCode::TOO_MANY_REQUESTS)
            .then_some(DEFAULT_THROTTLE_RETRY_AFTER_SECS));
    with_retry_after(response, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_status_has_a_code_from_the_swagger_list_or_unknown() {
        let allowed = [
            "invalid_request",
            "unauthorized_client",
            "forbidden",
            "not_found",
            "method_not_allowed",
            "service_unavailable",
            "too_many_requests",
            "unknown",
            "server_error",
            "bad_request",
        ];
        for status in 400..600 {
            assert!(allowed.contains(&default_error(status).0), "{status}");
        }
    }

    #[test]
    fn a_fault_answer_carries_the_imds_headers_and_an_integer_retry_after() {
        let response = fault(410, None, None, Some(7), None);
        assert_eq!(response.status(), StatusCode::GONE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(response.headers()[header::SERVER], SERVER);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
    }

    #[test]
    fn a_throttling_fault_says_when_to_retry_even_if_the_rule_does_not() {
        let response = fault(429, None, None, None, None);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = fault(429, None, None, Some(4), Some(&serde_json::json!({})));
        assert_eq!(response.headers()[header::RETRY_AFTER], "4");
        assert!(
            fault(500, None, None, None, None)
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
    }
}
