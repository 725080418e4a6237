use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;

const META: &[Header] = &[("Metadata", b"true")];

fn request<'a>(path: &'a str, query: &'a str, headers: &'a [Header<'a>]) -> RawRequest<'a> {
    RawRequest {
        method: "GET",
        path,
        query,
        headers,
    }
}

fn pod_route(path: &str, query: &str, headers: &[Header]) -> Result<Route, Refusal> {
    route(
        Listener::Metadata,
        RouteOptions::default(),
        &request(path, query, headers),
    )
}

fn token(resource: &str, identity: RequestedIdentity) -> Route {
    Route::Token(TokenQuery {
        resource: resource.into(),
        identity,
    })
}

#[test]
fn the_token_endpoint_with_and_without_trailing_slash() {
    for path in [
        "/metadata/identity/oauth2/token",
        "/metadata/identity/oauth2/token/",
        "/METADATA/identity/oauth2/token",
        "/metadata%2Fidentity%2Foauth2%2Ftoken",
    ] {
        assert_eq!(
            pod_route(path, "resource=r&client_id=c", META),
            Ok(token("r", RequestedIdentity::ClientId("c".into()))),
            "{path}"
        );
    }
}

#[test]
fn any_method_reaches_the_token_endpoint_as_upstream() {
    for method in ["GET", "POST", "HEAD", "PATCH"] {
        let raw = RawRequest {
            method,
            ..request("/metadata/identity/oauth2/token", "resource=r", META)
        };
        assert!(matches!(
            route(Listener::Metadata, RouteOptions::default(), &raw),
            Ok(Route::Token(_))
        ));
    }
    for method in ["", "G ET", "GET\r\n", "GÉT"] {
        let raw = RawRequest {
            method,
            ..request("/metadata/identity/oauth2/token", "resource=r", META)
        };
        assert_eq!(
            route(Listener::Metadata, RouteOptions::default(), &raw),
            Err(Refusal::InvalidMethod)
        );
    }
}

#[test]
fn unclean_paths_redirect_before_anything_else() {
    for (path, query, location) in [
        (
            "/metadata/identity/oauth2//token",
            "resource=r",
            "/metadata/identity/oauth2/token?resource=r",
        ),
        (
            "/a/../metadata/identity/oauth2/token/",
            "",
            "/metadata/identity/oauth2/token/",
        ),
        (
            "/metadata/instance/./compute",
            "api-version=2021-02-01",
            "/metadata/instance/compute?api-version=2021-02-01",
        ),
        ("metadata", "", "/metadata"),
        ("", "", "/"),
        // Decoded first: %2E%2E is `..`.
        ("/host/token/%2E%2E/x", "", "/host/x"),
    ] {
        // No headers at all: the redirect comes before the header checks.
        assert_eq!(
            pod_route(path, query, &[]),
            Ok(Route::Redirect {
                location: location.into()
            }),
            "{path}"
        );
    }
}

#[test]
fn malformed_path_escapes_are_refused() {
    assert_eq!(
        pod_route("/metadata/%zz", "", META),
        Err(Refusal::InvalidPathEncoding)
    );
    assert_eq!(
        Refusal::InvalidPathEncoding.reply().status,
        400,
        "Go's server answers 400"
    );
}

#[test]
fn lookalike_token_paths_are_refused_without_a_header_check() {
    for path in [
        "/metadata/identity\\oauth2\\token",
        "/metadata/identity/x/oauth2/token",
        "/metadata/identity/oauth2/tokens",
        "/metadata/identity/oauth2/token/x",
        "/metadata/Identity/oauth2/token",
        "/metadata/identity%0a/oauth2/token",
        // Found by fuzzing: backslashes where the slashes before `metadata` go.
        "/\\metadata/identity/oauth2/token",
        "/%5Cmetadata%5Cidentity%5Coauth2%5Ctoken",
        "/x\\METADATA\\identity\\oauth2\\token",
    ] {
        assert_eq!(
            pod_route(path, "resource=r", &[]),
            Err(Refusal::TokenPathLookalike),
            "{path}"
        );
    }
    let reply = Refusal::TokenPathLookalike.reply();
    assert_eq!(
        (reply.status, reply.description.as_str()),
        (400, "Invalid request")
    );
}

#[test]
fn the_host_endpoint_is_never_reachable_from_the_pods_listener() {
    for path in [
        "/host/token",
        "/host/token/",
        "/host/tokenx",
        "/host/token/x",
    ] {
        let headers: &[Header] = &[("Metadata", b"true"), ("podns", b"ns"), ("podname", b"p")];
        assert_eq!(
            pod_route(path, "resource=r", headers),
            Err(Refusal::NotFound),
            "{path}"
        );
    }
    assert_eq!(Refusal::NotFound.reply().status, 404);
}

#[test]
fn the_host_listener_serves_only_the_host_endpoint() {
    let headers: &[Header] = &[("podns", b"team"), ("podname", b"app-0")];
    let host = |path, query, headers| {
        route(
            Listener::Host,
            RouteOptions::default(),
            &request(path, query, headers),
        )
    };
    // No metadata header needed.
    assert_eq!(
        host("/host/token/", "resource=r&mi_res_id=m", headers),
        Ok(Route::HostToken {
            pod: PodName {
                namespace: "team".into(),
                name: "app-0".into()
            },
            query: TokenQuery {
                resource: "r".into(),
                identity: RequestedIdentity::ResourceId("m".into())
            }
        })
    );
    assert_eq!(
        host("/host/token", "resource=r", &[("podns", b"team")]),
        Err(Refusal::MissingPodHeaders)
    );
    assert_eq!(
        host("/host/token", "", headers),
        Err(Refusal::Query(QueryError::MissingResource))
    );
    for path in [
        "/metadata/identity/oauth2/token",
        "/host/tokenx",
        "/healthz",
        "/",
    ] {
        assert_eq!(
            host(path, "resource=r", headers),
            Err(Refusal::NotFound),
            "{path}"
        );
    }
}

#[test]
fn probe_and_metrics_listeners_serve_one_path_each() {
    let on = |listener, path| route(listener, RouteOptions::default(), &request(path, "", &[]));
    assert_eq!(on(Listener::Probe, "/healthz"), Ok(Route::Health));
    assert_eq!(on(Listener::Probe, "/healthz/"), Err(Refusal::NotFound));
    assert_eq!(on(Listener::Probe, "/metrics"), Err(Refusal::NotFound));
    assert_eq!(on(Listener::Metrics, "/metrics"), Ok(Route::Metrics));
    assert_eq!(on(Listener::Metrics, "/healthz"), Err(Refusal::NotFound));
}

#[test]
fn instance_metadata_is_blocked_only_when_asked_without_a_header_check() {
    let blocking = RouteOptions {
        block_instance_metadata: true,
        ..RouteOptions::default()
    };
    for path in ["/metadata/instance", "/Metadata/instance/compute/vmId"] {
        let raw = request(path, "api-version=2021-02-01", &[]);
        assert_eq!(
            route(Listener::Metadata, blocking, &raw),
            Err(Refusal::Blocked)
        );
        assert_eq!(
            route(Listener::Metadata, RouteOptions::default(), &raw),
            Err(Refusal::MissingMetadataHeader)
        );
    }
    let reply = Refusal::Blocked.reply();
    assert_eq!(
        (reply.status, reply.description.as_str()),
        (403, "Request blocked by AAD Pod Identity NMI")
    );
}

#[test]
fn everything_else_is_proxied_with_the_raw_path_and_query() {
    assert_eq!(
        pod_route(
            "/metadata/instance/compute",
            "api-version=2021-02-01&format=json",
            META
        ),
        Ok(Route::Proxy {
            method: "GET".into(),
            path_and_query: "/metadata/instance/compute?api-version=2021-02-01&format=json".into()
        })
    );
    assert_eq!(
        pod_route("/doesnotexist", "", META),
        Ok(Route::Proxy {
            method: "GET".into(),
            path_and_query: "/doesnotexist".into()
        })
    );
    // Encoded as sent: IMDS decodes it itself.
    assert_eq!(
        pod_route("/metadata/identity%2Finfo", "", META),
        Ok(Route::Proxy {
            method: "GET".into(),
            path_and_query: "/metadata/identity%2Finfo".into()
        })
    );
}

#[test]
fn pods_must_send_the_metadata_header_and_no_forwarded_for() {
    for path in ["/metadata/identity/oauth2/token", "/doesnotexist"] {
        assert_eq!(
            pod_route(path, "resource=r", &[]),
            Err(Refusal::MissingMetadataHeader)
        );
        assert_eq!(
            pod_route(path, "resource=r", &[("Metadata", b"True")]),
            Err(Refusal::MissingMetadataHeader)
        );
        // Forwarded is checked first, as IMDS does.
        assert_eq!(
            pod_route(path, "resource=r", &[("X-Forwarded-For", b"1.2.3.4")]),
            Err(Refusal::Forwarded)
        );
        let relaxed = RouteOptions {
            metadata_header_required: false,
            ..RouteOptions::default()
        };
        assert!(
            route(
                Listener::Metadata,
                relaxed,
                &request(path, "resource=r", &[])
            )
            .is_ok()
        );
    }
    let reply = Refusal::MissingMetadataHeader.reply();
    assert_eq!(
        reply.body(),
        r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#
    );
}

#[test]
fn query_errors_come_after_the_header_checks() {
    assert_eq!(
        pod_route("/metadata/identity/oauth2/token", "", &[]),
        Err(Refusal::MissingMetadataHeader)
    );
    assert_eq!(
        pod_route(
            "/metadata/identity/oauth2/token",
            "resource=a&resource=b",
            META
        ),
        Err(Refusal::Query(QueryError::Repeated(Parameter::Resource)))
    );
    let reply = Refusal::Query(QueryError::MissingResource).reply();
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.description,
        "Required query variable 'resource' is missing"
    );
}

fn listener() -> impl Strategy<Value = Listener> {
    prop_oneof![
        Just(Listener::Metadata),
        Just(Listener::Host),
        Just(Listener::Probe),
        Just(Listener::Metrics)
    ]
}

proptest! {
    #[test]
    fn routing_never_panics(
        listener in listener(),
        method in any::<String>(),
        path in any::<String>(),
        query in any::<String>(),
        name in any::<String>(),
        value in any::<Vec<u8>>(),
        block in any::<bool>(),
        required in any::<bool>(),
    ) {
        let headers: &[Header] = &[(&name, &value), ("Metadata", b"true")];
        let options = RouteOptions { metadata_header_required: required, block_instance_metadata: block };
        let raw = RawRequest { method: &method, path: &path, query: &query, headers };
        match route(listener, options, &raw) {
            Ok(Route::Redirect { location }) => prop_assert!(location.bytes().all(|b| b.is_ascii_graphic())),
            Ok(_) => {}
            Err(refusal) => prop_assert!(!refusal.reply().body().is_empty()),
        }
    }

    #[test]
    fn no_path_on_the_pods_listener_reaches_the_host_endpoint(
        path in "(/|%2F|%2f|\\.|%2E|host|token|HOST|[a-z]){0,12}",
        query in "[a-z=&]{0,10}",
    ) {
        let headers: &[Header] = &[("Metadata", b"true"), ("podns", b"ns"), ("podname", b"p")];
        let routed = route(Listener::Metadata, RouteOptions::default(), &request(&path, &query, headers));
        let reached_host = matches!(routed, Ok(Route::HostToken { .. }));
        prop_assert!(!reached_host);
        if let Ok(Route::Proxy { path_and_query, .. }) = &routed {
            // Nothing proxied decodes to the host endpoint.
            let decoded = decode(path_and_query.split('?').next().unwrap_or_default()).unwrap();
            prop_assert!(!decoded.starts_with("/host/token"));
        }
    }

    #[test]
    fn no_token_path_spelling_is_ever_proxied(
        prefix in "(/[a-zA-Z.]{0,3}){0,2}",
        lead in "[/\\\\]",
        metadata in "(?i:metadata)",
        identity in "(?i:identity)",
        middle in "[/\\\\a-z%]{0,4}",
        token in "(?i:token)",
        suffix in "[/a-z]{0,3}",
    ) {
        let path = format!("/{prefix}{lead}{metadata}/{identity}{middle}oauth2/{token}{suffix}");
        let routed = route(Listener::Metadata, RouteOptions::default(), &request(&path, "resource=r", META));
        let proxied = matches!(routed, Ok(Route::Proxy { .. }));
        prop_assert!(!proxied, "{} was proxied: {:?}", path, routed);
    }
}
