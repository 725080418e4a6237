//! From a raw request (listener, method, raw path, raw query, headers) to what answers it.
//!
//! The order is upstream's: the path is decoded and must already be clean (else a 301 to the
//! clean path), then the first matching route wins. Which routes exist depends on the
//! listener, so no path spelling on the pods' listener can reach the host endpoint.

mod headers;
mod path;
mod query;

pub use headers::{Header, PodName, has_metadata_true, host_token_pod, is_forwarded};
pub use path::{clean, decode, redirect_location};
pub use query::{Parameter, QueryError, RequestedIdentity, TokenQuery, parse_token_query};

use crate::reply::{ErrorCode, ErrorReply};

/// The socket a request arrived on. Each serves its own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Where iptables sends pods' IMDS traffic (`--nmi-listen-address:--nmi-port`).
    Metadata,
    /// The token endpoint for node-local callers naming a pod (`/host/token`), on its own
    /// loopback port.
    Host,
    /// The liveness probe (`/healthz`, `--http-probe-port`).
    Probe,
    /// Prometheus (`/metrics`, `--prometheus-port`).
    Metrics,
}

/// The flags that change routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOptions {
    /// `--metadata-header-required` (default true).
    pub metadata_header_required: bool,
    /// `--block-instance-metadata` (default false).
    pub block_instance_metadata: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        Self {
            metadata_header_required: true,
            block_instance_metadata: false,
        }
    }
}

/// A request as the server received it, nothing parsed.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded.
    pub path: &'a str,
    /// The query as sent, without `?`; empty when there is none.
    pub query: &'a str,
    pub headers: &'a [Header<'a>],
}

/// What answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// 301 to the clean spelling of the path (`location` is a valid header value).
    Redirect {
        location: String,
    },
    /// A pod's token request, to be served for the pod holding the source IP.
    Token(TokenQuery),
    /// A node-local caller's token request on behalf of `pod`.
    HostToken {
        pod: PodName,
        query: TokenQuery,
    },
    /// Forward to the real IMDS unchanged: same method, raw path and raw query.
    Proxy {
        method: String,
        path_and_query: String,
    },
    Health,
    Metrics,
}

/// A request refused by routing, before any pod or identity is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request method is not an HTTP token")]
    InvalidMethod,
    #[error("the request path is not correctly percent-encoded")]
    InvalidPathEncoding,
    /// Upstream's answer to a token path spelled any other way.
    #[error("Invalid request")]
    TokenPathLookalike,
    #[error("no such endpoint on this port")]
    NotFound,
    /// `--block-instance-metadata` and a `/metadata/instance` path.
    #[error("Request blocked by AAD Pod Identity NMI")]
    Blocked,
    #[error(
        "Requests with an X-Forwarded-For header are refused: IMDS must be called directly, not through a proxy"
    )]
    Forwarded,
    #[error("Required metadata header not specified")]
    MissingMetadataHeader,
    #[error("missing 'podname' and 'podns' from request header")]
    MissingPodHeaders,
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl Refusal {
    /// The answer: 404 and 403 for the two refusals upstream gave them, 400 for the rest.
    pub fn reply(&self) -> ErrorReply {
        let (status, code) = match self {
            Self::NotFound => (404, ErrorCode::NotFound),
            Self::Blocked => (403, ErrorCode::Forbidden),
            _ => (400, ErrorCode::InvalidRequest),
        };
        ErrorReply::new(status, code, self.to_string())
    }
}

/// Routes one request arriving on `listener`.
pub fn route(
    listener: Listener,
    options: RouteOptions,
    request: &RawRequest,
) -> Result<Route, Refusal> {
    if !is_token(request.method) {
        return Err(Refusal::InvalidMethod);
    }
    let decoded = path::decode(request.path).map_err(|_| Refusal::InvalidPathEncoding)?;
    let cleaned = path::clean(&decoded);
    if cleaned != decoded {
        return Ok(Route::Redirect {
            location: path::redirect_location(&cleaned, request.query),
        });
    }
    match listener {
        Listener::Metadata => route_metadata(options, request, &decoded),
        Listener::Host => route_host(request, &decoded),
        Listener::Probe => exact(&decoded, "/healthz", Route::Health),
        Listener::Metrics => exact(&decoded, "/metrics", Route::Metrics),
    }
}

fn exact(path: &str, expected: &str, route: Route) -> Result<Route, Refusal> {
    if path == expected {
        Ok(route)
    } else {
        Err(Refusal::NotFound)
    }
}

/// The pods' listener, upstream's table in order. Deviations: only the exact token path is the
/// token endpoint (upstream matched a prefix), every other spelling of it in any case is
/// refused (upstream proxied `/metadata/Identity/...`), and `/host/token` is not here.
fn route_metadata(
    options: RouteOptions,
    request: &RawRequest,
    path: &str,
) -> Result<Route, Refusal> {
    if path::is_token_path(path) {
        admit_from_pod(options, request)?;
        return Ok(Route::Token(parse_token_query(request.query)?));
    }
    if path::resembles_token_path(path) {
        return Err(Refusal::TokenPathLookalike);
    }
    if path::is_host_token_prefix(path) {
        return Err(Refusal::NotFound);
    }
    if options.block_instance_metadata && path::is_instance_path(path) {
        return Err(Refusal::Blocked);
    }
    admit_from_pod(options, request)?;
    let mut path_and_query = request.path.to_owned();
    if !request.query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(request.query);
    }
    Ok(Route::Proxy {
        method: request.method.to_owned(),
        path_and_query,
    })
}

/// IMDS's admission rules, in IMDS's order.
fn admit_from_pod(options: RouteOptions, request: &RawRequest) -> Result<(), Refusal> {
    if is_forwarded(request.headers) {
        return Err(Refusal::Forwarded);
    }
    if options.metadata_header_required && !has_metadata_true(request.headers) {
        return Err(Refusal::MissingMetadataHeader);
    }
    Ok(())
}

/// The host listener: no metadata header and no exceptions, as upstream.
fn route_host(request: &RawRequest, path: &str) -> Result<Route, Refusal> {
    if !path::is_host_token_path(path) {
        return Err(Refusal::NotFound);
    }
    let pod = host_token_pod(request.headers).ok_or(Refusal::MissingPodHeaders)?;
    let query = parse_token_query(request.query)?;
    Ok(Route::HostToken { pod, query })
}

/// Whether `method` is an HTTP token (RFC 9110 `tchar`s).
fn is_token(method: &str) -> bool {
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
