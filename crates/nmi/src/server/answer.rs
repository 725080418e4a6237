//! HTTP responses from the core's answers. Every body is whole when the answer is made.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::reply::{ErrorReply, JSON_CONTENT_TYPE};

/// What every listener answers with.
pub type Answer = Response<Full<Bytes>>;

/// `body` with `status` and `Content-Type`.
fn with_body(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status_code(status);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON answer with `status`.
pub fn json(status: u16, body: String) -> Answer {
    with_body(status, JSON_CONTENT_TYPE, body)
}

/// An IMDS-shaped error, with `Retry-After` when the client should come back.
pub fn error(reply: &ErrorReply) -> Answer {
    let mut response = json(reply.status, reply.body());
    if let Some(seconds) = reply.retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A 301 to the clean spelling of the path (the core guarantees a valid header value).
pub fn redirect(location: &str) -> Answer {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Plain text, as the probe answers.
pub fn text(status: u16, content_type: &'static str, body: String) -> Answer {
    with_body(status, content_type, body)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
