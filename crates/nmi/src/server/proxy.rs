//! Every other IMDS path goes to the configured IMDS unchanged: method, raw path and query,
//! headers (but hop-by-hop ones and `Host`) and body; the answer comes back as IMDS gave it.

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName};
use url::Url;

use super::answer::{self, Answer};
use crate::reply::{ErrorCode, ErrorReply};

/// Request bodies IMDS takes are tiny; anything larger is refused rather than buffered.
pub const MAX_BODY_BYTES: usize = 1 << 20;

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::HOST,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
];

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let mut headers = from.clone();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers
}

/// Forwards one request with the shared client (a keep-alive pool, no proxy, no redirects).
pub async fn forward(
    client: &reqwest::Client,
    imds: &Url,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Answer {
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return answer::error(&ErrorReply::invalid_request("invalid method"));
    };
    let url = format!("{}{path_and_query}", imds.as_str().trim_end_matches('/'));
    let sent = client
        .request(method, url)
        .headers(copy_headers(headers))
        .body(body)
        .send()
        .await;
    let failed = |error: reqwest::Error| {
        tracing::warn!(error = %error.without_url(), "IMDS did not answer the proxied request");
        answer::error(&ErrorReply::new(
            500,
            ErrorCode::ServerError,
            "failed to reach the Instance Metadata Service",
        ))
    };
    let upstream = match sent {
        Ok(upstream) => upstream,
        Err(error) => return failed(error),
    };
    let status = upstream.status();
    let upstream_headers = copy_headers(upstream.headers());
    let body = match upstream.bytes().await {
        Ok(body) => body,
        Err(error) => return failed(error),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = upstream_headers;
    response
}
