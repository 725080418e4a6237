//! NMI's whole request decision from raw parts: `podid_nmi::route` on every listener, and
//! `parse_token_query`.
//!
//! Input: one flag byte, then an HTTP/1.1 request head as text:
//! `METHOD TARGET [VERSION]\r\n` then `Name: value\r\n` lines up to an empty line.
//! The flag byte: bits 0-1 the listener (Metadata, Host, Probe, Metrics), bit 2 set turns
//! `--metadata-header-required` off, bit 3 turns `--block-instance-metadata` on.

use podid_nmi::request::{
    self, Header, has_metadata_true, host_token_pod, is_forwarded, parse_token_query,
};
use podid_nmi::{Listener, RawRequest, Refusal, Route, RouteOptions, route};

const LISTENERS: [Listener; 4] = [
    Listener::Metadata,
    Listener::Host,
    Listener::Probe,
    Listener::Metrics,
];

pub fn run(data: &[u8]) {
    let Some((&flags, head)) = data.split_first() else {
        return;
    };
    let listener = LISTENERS[usize::from(flags & 3)];
    let options = RouteOptions {
        metadata_header_required: flags & 4 == 0,
        block_instance_metadata: flags & 8 != 0,
    };
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let names: Vec<(String, &[u8])> = lines
        .take_while(|line| !line.is_empty())
        .take(64)
        .map(|line| {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(at) => (&line[..at], &line[at + 1..]),
                None => (line, &[][..]),
            };
            (String::from_utf8_lossy(name).into_owned(), trim_ows(value))
        })
        .collect();
    let headers: Vec<Header> = names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let request = RawRequest {
        method,
        path,
        query,
        headers: &headers,
    };
    check(listener, options, &request);
    check_query(query);
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |at| at + 1);
    &value[start..end.max(start)]
}

/// Routes `request` and checks the answer against what the raw parts allow.
pub fn check(listener: Listener, options: RouteOptions, request: &RawRequest) {
    let result = route(listener, options, request);
    let decoded = request::decode(request.path).ok();
    let admitted = !is_forwarded(request.headers)
        && (!options.metadata_header_required || has_metadata_true(request.headers));
    match &result {
        Ok(Route::Redirect { location }) => {
            assert!(
                location.bytes().all(|b| b.is_ascii_graphic()),
                "a Location must be a visible-ASCII header value: {location:?}"
            );
            assert!(
                location.starts_with('/')
                    && !location.starts_with("//")
                    && !location.starts_with("/\\"),
                "a Location must stay on this host: {location:?}"
            );
            // Following the redirect reaches a clean path: no second redirect, and on the
            // pods' listener never the host endpoint.
            let (path, query) = location.split_once('?').unwrap_or((location, ""));
            let followed = RawRequest {
                path,
                query,
                ..*request
            };
            let again = route(listener, options, &followed);
            assert!(
                !matches!(again, Ok(Route::Redirect { .. })),
                "a redirect leads to another redirect: {location:?} -> {again:?}"
            );
            assert!(
                !(listener == Listener::Metadata && matches!(again, Ok(Route::HostToken { .. })))
            );
        }
        Ok(Route::Token(query)) => {
            assert_eq!(listener, Listener::Metadata);
            assert!(
                admitted,
                "a token decision for a request IMDS would refuse: {request:?}"
            );
            let decoded = decoded.expect("a token path decodes");
            assert!(request::clean(&decoded) == decoded);
            assert!(
                is_token_spelling(&decoded),
                "{decoded:?} is not the token path"
            );
            assert_eq!(parse_token_query(request.query).as_ref(), Ok(query));
            // The same request without its Metadata header is refused before any token.
            if options.metadata_header_required {
                let without: Vec<Header> = request
                    .headers
                    .iter()
                    .filter(|(name, _)| !name.eq_ignore_ascii_case("metadata"))
                    .copied()
                    .collect();
                let bare = RawRequest {
                    headers: &without,
                    ..*request
                };
                assert_eq!(
                    route(listener, options, &bare),
                    Err(Refusal::MissingMetadataHeader)
                );
            }
        }
        Ok(Route::HostToken { pod, query }) => {
            assert_eq!(
                listener,
                Listener::Host,
                "the host endpoint answered on {listener:?}"
            );
            let decoded = decoded.expect("a host path decodes");
            assert!(matches!(decoded.as_str(), "/host/token" | "/host/token/"));
            assert_eq!(host_token_pod(request.headers).as_ref(), Some(pod));
            assert_eq!(parse_token_query(request.query).as_ref(), Ok(query));
        }
        Ok(Route::Proxy {
            method,
            path_and_query,
        }) => {
            assert_eq!(listener, Listener::Metadata);
            assert!(admitted, "a proxied request IMDS would refuse: {request:?}");
            assert_eq!(method, request.method);
            let expected = if request.query.is_empty() {
                request.path.to_owned()
            } else {
                format!("{}?{}", request.path, request.query)
            };
            assert_eq!(path_and_query, &expected);
            let decoded = decoded.expect("a proxied path decodes");
            assert!(
                !is_token_spelling(&normalise(&decoded)),
                "token path proxied: {decoded:?}"
            );
            assert!(
                !decoded.starts_with("/host/token"),
                "host path proxied: {decoded:?}"
            );
            if options.block_instance_metadata {
                let instance = decoded
                    .get(..9)
                    .is_some_and(|h| h.eq_ignore_ascii_case("/metadata"))
                    && decoded[9..].starts_with("/instance");
                assert!(!instance, "blocked path proxied: {decoded:?}");
            }
        }
        Ok(Route::Health) => assert_eq!(listener, Listener::Probe),
        Ok(Route::Metrics) => assert_eq!(listener, Listener::Metrics),
        Err(refusal) => {
            let reply = refusal.reply();
            assert!(matches!(reply.status, 400 | 403 | 404), "{reply:?}");
            if *refusal == Refusal::MissingMetadataHeader {
                assert!(options.metadata_header_required && !has_metadata_true(request.headers));
            }
        }
    }
}

/// The path as a lenient server might read it: lower case, backslashes as slashes, cleaned.
fn normalise(decoded: &str) -> String {
    request::clean(&decoded.to_lowercase().replace('\\', "/"))
}

/// The token path exactly (`metadata` in any case), with or without a trailing slash.
fn is_token_spelling(path: &str) -> bool {
    path.get(..9)
        .is_some_and(|head| head.eq_ignore_ascii_case("/metadata"))
        && matches!(
            &path[9..],
            "/identity/oauth2/token" | "/identity/oauth2/token/"
        )
}

/// `parse_token_query` alone: an accepted query has a resource and at most one selector, and
/// unknown parameters never change the answer.
pub fn check_query(query: &str) {
    let parsed = parse_token_query(query);
    if let Ok(token_query) = &parsed {
        assert!(
            !token_query.resource.is_empty(),
            "accepted without a resource: {query:?}"
        );
    }
    let extended = format!("{query}&api-version=2018-02-01&x-unknown");
    assert_eq!(
        parse_token_query(&extended),
        parsed,
        "an unknown parameter changed {query:?}"
    );
}
