//! IMDS admission rules, path handling, rate limits and fault rules, over real HTTP.

use podid_emulator::testing::*;
use reqwest::Method;
use serde_json::json;

const TOKEN: &str = "/metadata/identity/oauth2/token";

fn token_path(query: &str) -> String {
    format!("{TOKEN}?{query}")
}

#[tokio::test]
async fn x_forwarded_for_is_refused_before_anything_else() {
    let emu = Emulator::start(&imds_world()).await;
    let reply = emu
        .imds_get_with(
            "vm-single",
            &token_path(OK_QUERY),
            &[("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"], "invalid_request");
    // Refused even when every other rule is broken too.
    let reply = emu
        .imds_get_with("vm-single", TOKEN, &[("x-forwarded-for", "1.2.3.4")])
        .await;
    assert!(
        reply.description().contains("X-Forwarded-For"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_missing_metadata_header_gets_the_exact_imds_error() {
    let emu = Emulator::start(&imds_world()).await;
    let reply = emu
        .imds_get_with("vm-single", &token_path(OK_QUERY), &[])
        .await;
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
    let reply = emu
        .imds_get_with("vm-single", &token_path(OK_QUERY), &[("Metadata", "false")])
        .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn metadata_case_is_lenient_by_default_and_strict_with_the_knob() {
    let emu = Emulator::start(&imds_world()).await;
    let upper = [("Metadata", "True")];
    assert_eq!(
        emu.imds_get_with("vm-single", &token_path(OK_QUERY), &upper)
            .await
            .status,
        200
    );
    emu.set_knobs(json!({"imds": {"strictMetadataCase": true}}))
        .await;
    let reply = emu
        .imds_get_with("vm-single", &token_path(OK_QUERY), &upper)
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.description(),
        "Required metadata header not specified"
    );
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
}

#[tokio::test]
async fn api_version_must_be_present_and_supported_for_identity() {
    let emu = Emulator::start(&imds_world()).await;
    for query in [
        "resource=https://management.azure.com",
        "api-version=&resource=https://management.azure.com",
        "api-version=2017-12-01&resource=https://management.azure.com",
        "api-version=2030-01-01&resource=https://management.azure.com",
    ] {
        let reply = emu.imds_get("vm-single", &token_path(query)).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(reply.json()["error"], "invalid_request", "{query}");
        assert!(
            reply.description().contains("api-version"),
            "{query}: {}",
            reply.body
        );
    }
    let rust_sdk = "api-version=2019-08-01&resource=https://management.azure.com";
    assert_eq!(
        emu.imds_get("vm-single", &token_path(rust_sdk))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_repeated_query_parameter_is_refused() {
    let emu = Emulator::start(&imds_world()).await;
    for query in [
        format!("{OK_QUERY}&api-version=2018-02-01"),
        format!("{OK_QUERY}&resource=https://vault.azure.net"),
        format!("{OK_QUERY}&client_id=x&client_id=x"),
    ] {
        let reply = emu.imds_get("vm-single", &token_path(&query)).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(
            reply.description().contains("more than once"),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn resource_is_required() {
    let emu = Emulator::start(&imds_world()).await;
    for query in ["api-version=2018-02-01", "api-version=2018-02-01&resource="] {
        let reply = emu.imds_get("vm-single", &token_path(query)).await;
        assert_eq!(reply.status, 400);
        assert_eq!(
            reply.json(),
            json!({"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"})
        );
    }
}

#[tokio::test]
async fn identity_selectors_are_mutually_exclusive() {
    let emu = Emulator::start(&imds_world()).await;
    let id = uami_id(NODE_RG, "alpha");
    for extra in [
        format!("&client_id={}&object_id={}", ALPHA_CLIENT, ALPHA_OBJECT),
        format!("&client_id={}&msi_res_id={id}", ALPHA_CLIENT),
        format!("&msi_res_id={id}&mi_res_id={id}"),
        format!("&object_id={}&resource_id={id}", ALPHA_OBJECT),
    ] {
        let reply = emu.imds_token("vm-system", &extra).await;
        assert_eq!(reply.status, 400, "{extra}");
        assert_eq!(reply.json()["error"], "invalid_request");
        assert!(
            reply.description().contains("Only one of"),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn the_metadata_segment_is_case_insensitive_and_token_takes_a_trailing_slash() {
    let emu = Emulator::start(&imds_world()).await;
    for path in [
        format!("/METADATA/identity/oauth2/token?{OK_QUERY}"),
        format!("/Metadata/identity/oauth2/token/?{OK_QUERY}"),
    ] {
        let reply = emu.imds_get("vm-single", &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let reply = emu
        .imds_get(
            "vm-single",
            &format!("/metadata/Identity/oauth2/token?{OK_QUERY}"),
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.json()["error"], "not_found");
}

#[tokio::test]
async fn other_verbs_are_not_allowed() {
    let emu = Emulator::start(&imds_world()).await;
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let request = emu
            .http()
            .request(
                method.clone(),
                emu.imds_url("vm-single", &token_path(OK_QUERY)),
            )
            .header("Metadata", "true");
        let reply = emu.send(request).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET"));
        assert_eq!(reply.json()["error"], "method_not_allowed");
    }
    let (total, by_405) = emu.counter("imds.rejected", 405).await;
    assert_eq!((total, by_405), (3, 3));
}

#[tokio::test]
async fn admission_failures_are_counted_as_rejected() {
    let emu = Emulator::start(&imds_world()).await;
    emu.imds_get_with("vm-single", &token_path(OK_QUERY), &[])
        .await;
    emu.imds_get("vm-single", &token_path("api-version=2018-02-01"))
        .await;
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
    assert_eq!(emu.counter("imds.rejected", 400).await, (2, 2));
    assert_eq!(emu.counter("imds.token", 200).await, (1, 1));
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_an_integer_retry_after_until_the_clock_refills_it() {
    let emu = Emulator::start(&imds_world()).await;
    emu.set_knobs(json!({"imds": {"requestsPerSecond": 2}}))
        .await;
    // The bucket starts full; the clock stands still, so nothing refills it.
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
    let throttled = emu.imds_token("vm-single", "").await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.json()["error"], "too_many_requests");
    assert_eq!(throttled.header("retry-after"), Some("1"));
    // Limits are per machine.
    assert_eq!(emu.imds_token("vm-system", "").await.status, 200);
    // Half a second refills one request's worth at 2 per second, and no more.
    emu.advance_clock_ms(500).await;
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
    assert_eq!(emu.imds_token("vm-single", "").await.status, 429);
    assert_eq!(emu.counter("imds.rejected", 429).await, (2, 2));
    assert_eq!(emu.counter("imds.token", 200).await, (4, 4));
}

#[tokio::test]
async fn requests_beyond_max_concurrent_are_throttled_while_others_are_in_flight() {
    let emu = Emulator::start(&imds_world()).await;
    emu.set_knobs(json!({"imds": {"maxConcurrent": 2}})).await;
    // The first two token requests stay in flight, holding their slots, until released.
    let rule = emu
        .hold(json!({"surface": "imds", "path": "oauth2/token", "times": 2}))
        .await;
    let in_flight = futures::future::join(
        emu.imds_token("vm-single", ""),
        emu.imds_token("vm-single", ""),
    );
    let while_held = async {
        let held = emu.wait_held(2).await;
        assert!(
            held.iter()
                .all(|h| h.rule == rule && h.machine.as_deref() == Some("vm-single"))
        );
        let third = emu.imds_token("vm-single", "").await;
        // Slots are per machine.
        let elsewhere = emu.imds_token("vm-system", "").await;
        assert_eq!(emu.release_all().await, 2);
        (third, elsewhere)
    };
    let ((first, second), (third, elsewhere)) = futures::future::join(in_flight, while_held).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(third.json()["error"], "too_many_requests");
    assert_eq!(third.header("retry-after"), Some("1"));
    assert_eq!(elsewhere.status, 200);
    // Released slots are free again.
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
    let held_in_journal = emu
        .journal(Some(Surface::Imds))
        .await
        .iter()
        .filter(|e| e["fault"] == "hold")
        .count();
    assert_eq!(held_in_journal, 2);
}

#[tokio::test]
async fn fault_rules_answer_in_the_imds_shape_and_are_journaled() {
    let emu = Emulator::start(&imds_world()).await;
    for rule in [
        json!({"surface": "imds", "path": "oauth2/token", "times": 1, "action": {"kind": "error", "status": 500}}),
        json!({"surface": "imds", "machine": "vm-single", "times": 1,
               "action": {"kind": "error", "status": 410, "retryAfter": 7}}),
    ] {
        let reply = emu.admin(Method::POST, "/admin/faults", Some(&rule)).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let first = emu.imds_token("vm-single", "").await;
    assert_eq!(first.status, 500);
    assert_eq!(first.json()["error"], "unknown");
    assert!(
        first.description().contains("Active directory"),
        "{}",
        first.body
    );
    let second = emu.imds_token("vm-single", "").await;
    assert_eq!(second.status, 410);
    assert_eq!(second.header("retry-after"), Some("7"));
    let body = second.json();
    assert!(
        body["error"].is_string() && body["error_description"].is_string(),
        "{body}"
    );
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);

    assert_eq!(emu.counter("fault", 500).await.1, 1);
    assert_eq!(emu.counter("fault", 410).await.1, 1);
    let journal = emu.journal(Some(Surface::Imds)).await;
    let faults: Vec<&str> = journal.iter().filter_map(|e| e["fault"].as_str()).collect();
    assert_eq!(faults, ["error 500", "error 410"]);
}

#[tokio::test]
async fn a_fault_rule_may_replace_the_code_message_and_body() {
    let emu = Emulator::start(&imds_world()).await;
    let rules = [
        json!({"surface": "imds", "times": 1, "action": {"kind": "error", "status": 503, "code": "busy", "message": "later"}}),
        json!({"surface": "imds", "times": 1, "action": {"kind": "error", "status": 404, "body": {"custom": true}}}),
    ];
    for rule in rules {
        emu.admin(Method::POST, "/admin/faults", Some(&rule)).await;
    }
    let reply = emu.imds_token("vm-single", "").await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()),
        (503, json!({"error": "busy", "error_description": "later"}))
    );
    let reply = emu.imds_token("vm-single", "").await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()),
        (404, json!({"custom": true}))
    );
}
