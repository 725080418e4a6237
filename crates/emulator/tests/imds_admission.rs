//! IMDS admission rules, path handling, rate limits and fault rules, over real HTTP.

mod imds_support;

use imds_support::{Imds, OK_QUERY};
use serde_json::json;

const TOKEN: &str = "/metadata/identity/oauth2/token";

fn token_path(query: &str) -> String {
    format!("{TOKEN}?{query}")
}

#[tokio::test]
async fn x_forwarded_for_is_refused_before_anything_else() {
    let imds = Imds::start().await;
    let reply = imds
        .get_with(
            "vm-single",
            &token_path(OK_QUERY),
            &[("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_request");
    // Refused even when every other rule is broken too.
    let reply = imds
        .get_with("vm-single", TOKEN, &[("x-forwarded-for", "1.2.3.4")])
        .await;
    assert!(
        reply.description().contains("X-Forwarded-For"),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_missing_metadata_header_gets_the_exact_imds_error() {
    let imds = Imds::start().await;
    let reply = imds.get_with("vm-single", &token_path(OK_QUERY), &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({"error": "invalid_request", "error_description": "Required metadata header not specified"})
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reply.header("server"), Some("IMDS/150.870.65.1854"));
    let reply = imds
        .get_with("vm-single", &token_path(OK_QUERY), &[("Metadata", "false")])
        .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn metadata_case_is_lenient_by_default_and_strict_with_the_knob() {
    let imds = Imds::start().await;
    let upper = [("Metadata", "True")];
    assert_eq!(
        imds.get_with("vm-single", &token_path(OK_QUERY), &upper)
            .await
            .status,
        200
    );
    imds.patch_knobs(json!({"strictMetadataCase": true})).await;
    let reply = imds
        .get_with("vm-single", &token_path(OK_QUERY), &upper)
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.description(),
        "Required metadata header not specified"
    );
    assert_eq!(imds.token("vm-single", "").await.status, 200);
}

#[tokio::test]
async fn api_version_must_be_present_and_supported_for_identity() {
    let imds = Imds::start().await;
    for query in [
        "resource=https://management.azure.com",
        "api-version=&resource=https://management.azure.com",
        "api-version=2017-12-01&resource=https://management.azure.com",
        "api-version=2030-01-01&resource=https://management.azure.com",
    ] {
        let reply = imds.get("vm-single", &token_path(query)).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(reply.json()["error"], "invalid_request", "{query}");
        assert!(
            reply.description().contains("api-version"),
            "{query}: {}",
            reply.text
        );
    }
    let rust_sdk = "api-version=2019-08-01&resource=https://management.azure.com";
    assert_eq!(
        imds.get("vm-single", &token_path(rust_sdk)).await.status,
        200
    );
}

#[tokio::test]
async fn a_repeated_query_parameter_is_refused() {
    let imds = Imds::start().await;
    for query in [
        format!("{OK_QUERY}&api-version=2018-02-01"),
        format!("{OK_QUERY}&resource=https://vault.azure.net"),
        format!("{OK_QUERY}&client_id=x&client_id=x"),
    ] {
        let reply = imds.get("vm-single", &token_path(&query)).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(
            reply.description().contains("more than once"),
            "{}",
            reply.text
        );
    }
}

#[tokio::test]
async fn resource_is_required() {
    let imds = Imds::start().await;
    for query in ["api-version=2018-02-01", "api-version=2018-02-01&resource="] {
        let reply = imds.get("vm-single", &token_path(query)).await;
        assert_eq!(reply.status, 400);
        assert_eq!(
            reply.json(),
            json!({"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"})
        );
    }
}

#[tokio::test]
async fn identity_selectors_are_mutually_exclusive() {
    let imds = Imds::start().await;
    let id = imds_support::identity_id("alpha");
    for extra in [
        format!(
            "&client_id={}&object_id={}",
            imds_support::ALPHA_CLIENT,
            imds_support::ALPHA_OBJECT
        ),
        format!("&client_id={}&msi_res_id={id}", imds_support::ALPHA_CLIENT),
        format!("&msi_res_id={id}&mi_res_id={id}"),
        format!("&object_id={}&resource_id={id}", imds_support::ALPHA_OBJECT),
    ] {
        let reply = imds.token("vm-system", &extra).await;
        assert_eq!(reply.status, 400, "{extra}");
        assert_eq!(reply.json()["error"], "invalid_request");
        assert!(
            reply.description().contains("Only one of"),
            "{}",
            reply.text
        );
    }
}

#[tokio::test]
async fn the_metadata_segment_is_case_insensitive_and_token_takes_a_trailing_slash() {
    let imds = Imds::start().await;
    for path in [
        format!("/METADATA/identity/oauth2/token?{OK_QUERY}"),
        format!("/Metadata/identity/oauth2/token/?{OK_QUERY}"),
    ] {
        let reply = imds.get("vm-single", &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let reply = imds
        .get(
            "vm-single",
            &format!("/metadata/Identity/oauth2/token?{OK_QUERY}"),
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.json()["error"], "not_found");
}

#[tokio::test]
async fn other_verbs_are_not_allowed() {
    let imds = Imds::start().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let request = imds
            .http
            .request(method.clone(), imds.url("vm-single", &token_path(OK_QUERY)))
            .header("Metadata", "true");
        let reply = imds.send(request).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET"));
        assert_eq!(reply.json()["error"], "method_not_allowed");
    }
    let (total, by_405) = imds.counter("imds.rejected", 405).await;
    assert_eq!((total, by_405), (3, 3));
}

#[tokio::test]
async fn admission_failures_are_counted_as_rejected() {
    let imds = Imds::start().await;
    imds.get_with("vm-single", &token_path(OK_QUERY), &[]).await;
    imds.get("vm-single", &token_path("api-version=2018-02-01"))
        .await;
    assert_eq!(imds.token("vm-single", "").await.status, 200);
    assert_eq!(imds.counter("imds.rejected", 400).await, (2, 2));
    assert_eq!(imds.counter("imds.token", 200).await, (1, 1));
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_an_integer_retry_after() {
    let imds = Imds::start().await;
    imds.patch_knobs(json!({"requestsPerSecond": 1})).await;
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..6 {
        let reply = imds.token("vm-single", "").await;
        statuses.push(reply.status);
        if reply.status == 429 {
            throttled = Some(reply);
        }
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    let reply = throttled.unwrap_or_else(|| panic!("no 429 among {statuses:?}"));
    assert_eq!(reply.json()["error"], "too_many_requests");
    let retry_after = reply.header("retry-after").expect("Retry-After");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "{retry_after}"
    );
    // Limits are per machine.
    assert_eq!(imds.token("vm-system", "").await.status, 200);
    // The bucket refills on the emulator clock.
    imds.advance_clock(5).await;
    assert_eq!(imds.token("vm-single", "").await.status, 200);
    let (_, by_429) = imds.counter("imds.rejected", 429).await;
    assert!(by_429 >= 1);
}

#[tokio::test]
async fn requests_beyond_max_concurrent_are_throttled() {
    let imds = Imds::start().await;
    imds.patch_knobs(json!({"maxConcurrent": 1})).await;
    // Each request holds its slot through an injected one-second delay.
    let rule =
        json!({"surface": "imds", "path": "oauth2/token", "action": {"kind": "delay", "ms": 1000}});
    let reply = imds
        .admin_send(reqwest::Method::POST, "/admin/faults", rule)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let replies = futures::future::join_all((0..4).map(|_| imds.token("vm-single", ""))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    let throttled = replies.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(throttled.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn fault_rules_answer_in_the_imds_shape_and_are_journaled() {
    let imds = Imds::start().await;
    for rule in [
        json!({"surface": "imds", "path": "oauth2/token", "times": 1, "action": {"kind": "error", "status": 500}}),
        json!({"surface": "imds", "machine": "vm-single", "times": 1,
               "action": {"kind": "error", "status": 410, "retryAfter": 7}}),
    ] {
        let reply = imds
            .admin_send(reqwest::Method::POST, "/admin/faults", rule)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let first = imds.token("vm-single", "").await;
    assert_eq!(first.status, 500);
    assert_eq!(first.json()["error"], "unknown");
    assert!(
        first.description().contains("Active directory"),
        "{}",
        first.text
    );
    let second = imds.token("vm-single", "").await;
    assert_eq!(second.status, 410);
    assert_eq!(second.header("retry-after"), Some("7"));
    let body = second.json();
    assert!(
        body["error"].is_string() && body["error_description"].is_string(),
        "{body}"
    );
    assert_eq!(imds.token("vm-single", "").await.status, 200);

    assert_eq!(imds.counter("fault", 500).await.1, 1);
    assert_eq!(imds.counter("fault", 410).await.1, 1);
    let journal = imds.admin_get("/admin/journal?surface=imds").await;
    let faults: Vec<&str> = journal
        .as_array()
        .expect("journal list")
        .iter()
        .filter_map(|e| e["fault"].as_str())
        .collect();
    assert_eq!(faults, ["error 500", "error 410"]);
}

#[tokio::test]
async fn a_fault_rule_may_replace_the_code_message_and_body() {
    let imds = Imds::start().await;
    let rules = [
        json!({"surface": "imds", "times": 1, "action": {"kind": "error", "status": 503, "code": "busy", "message": "later"}}),
        json!({"surface": "imds", "times": 1, "action": {"kind": "error", "status": 404, "body": {"custom": true}}}),
    ];
    for rule in rules {
        imds.admin_send(reqwest::Method::POST, "/admin/faults", rule)
            .await;
    }
    let reply = imds.token("vm-single", "").await;
    assert_eq!(
        (reply.status, reply.json()),
        (503, json!({"error": "busy", "error_description": "later"}))
    );
    let reply = imds.token("vm-single", "").await;
    assert_eq!((reply.status, reply.json()), (404, json!({"custom": true})));
}
