//! ARM wire details: an injected 429 is indistinguishable from a real throttle, the compute
//! RP's `Retry-After` rounds up, operations live under their subscription and are forgotten a
//! while after they end, and identities a request repeats count neither against the
//! per-request limit nor in the linked `assign/action` check.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OTHER_SUBSCRIPTION: &str = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a";

fn assign(names: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = names
        .iter()
        .map(|(group, name)| (uami_id(group, name), json!({})))
        .collect();
    json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": map}})
}

async fn patch_vmss(emu: &Emulator, principal: &str, body: &Value) -> Reply {
    let token = emu.arm_token(principal);
    emu.arm(Method::PATCH, &vmss_path(), Some(&token), Some(body))
        .await
}

/// Polls an operation URL as MIC, after putting `subscription` in place of the world's.
async fn poll_in(emu: &Emulator, url: &str, subscription: &str) -> Reply {
    let path = url
        .strip_prefix(emu.arm_base())
        .expect("the operation URL points at the emulator's ARM")
        .replace(SUBSCRIPTION, subscription);
    let token = emu.arm_token(MIC);
    emu.arm(Method::GET, &path, Some(&token), None).await
}

/// Starts an asynchronous update of the scale set; returns its operation URL.
async fn start_update(emu: &Emulator) -> String {
    let r = patch_vmss(emu, MIC, &assign(&[(NODE_RG, "id-b")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.header("azure-asyncoperation")
        .expect("an operation URL")
        .to_string()
}

#[tokio::test]
async fn an_injected_429_is_the_same_answer_as_a_real_throttle() {
    let emu = Emulator::start(&small_world()).await;
    // One read, then none for 100 s: the second GET is genuinely throttled.
    emu.set_knobs(json!({"arm": {"subscriptionReads": {"capacity": 1, "refillPerSecond": 0.01}}}))
        .await;
    emu.add_fault(json!({"surface": "arm", "method": "GET", "times": 1,
        "action": {"kind": "error", "status": 429, "retryAfter": 100}}))
        .await;
    let token = emu.arm_token(READER);
    let injected = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    let first = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let genuine = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;

    assert_eq!(genuine.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(injected.status, genuine.status);
    assert_eq!(genuine.code(), "SubscriptionRequestsThrottled");
    assert_eq!(injected.body, genuine.body);
    for header in [
        "retry-after",
        "x-ms-ratelimit-remaining-subscription-reads",
        "content-type",
    ] {
        assert_eq!(injected.header(header), genuine.header(header), "{header}");
    }
    for header in [
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "x-ms-routing-request-id",
    ] {
        assert!(injected.header(header).is_some(), "{header} missing");
    }
    // A write is throttled in the write bucket.
    emu.add_fault(json!({"surface": "arm", "method": "PATCH", "times": 1,
        "action": {"kind": "error", "status": 429}}))
        .await;
    let r = patch_vmss(&emu, MIC, &assign(&[(NODE_RG, "id-b")])).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    assert!(
        r.message().starts_with("Number of 'write' requests"),
        "{}",
        r.message()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_compute_rp_retry_after_rounds_up_to_whole_seconds() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"computePolicies": {"scaleSetGet": [
        {"name": "GetVMScaleSet3Min", "windowSeconds": 180, "limit": 1}
    ]}}}))
    .await;
    let token = emu.arm_token(READER);
    let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    emu.advance_clock_ms(59_500).await;
    let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("121"), "120.5 s are left");
    emu.shutdown().await;
}

#[tokio::test]
async fn an_operation_is_found_only_under_its_own_subscription() {
    let world = small_world().replacen(
        "userAssignedIdentities:",
        &format!("  - id: {OTHER_SUBSCRIPTION}\nuserAssignedIdentities:"),
        1,
    );
    let emu = Emulator::start(&world).await;
    let url = start_update(&emu).await;
    let r = poll_in(&emu, &url, OTHER_SUBSCRIPTION).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.code(), "NotFound");
    let r = poll_in(&emu, &url, &SUBSCRIPTION.to_uppercase()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "InProgress");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_finished_operation_answers_for_the_retention_time_then_404() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 1000, "operationRetentionSecs": 60}}))
        .await;
    let url = start_update(&emu).await;
    emu.advance_clock(1).await;
    let r = poll_in(&emu, &url, SUBSCRIPTION).await;
    assert_eq!(r.body["status"], "Succeeded", "{}", r.body);
    emu.advance_clock(59).await;
    let r = poll_in(&emu, &url, SUBSCRIPTION).await;
    assert_eq!(r.body["status"], "Succeeded", "59 s after it ended");
    emu.advance_clock(1).await;
    let r = poll_in(&emu, &url, SUBSCRIPTION).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    emu.shutdown().await;
}

#[tokio::test]
async fn identities_already_on_the_machine_need_no_assign_permission() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync"}})).await;
    // The owner may assign anything; MIC may assign only the node group's identities.
    let r = patch_vmss(&emu, OWNER, &assign(&[(SHARED_RG, "ext-1")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = patch_vmss(
        &emu,
        MIC,
        &assign(&[(SHARED_RG, "ext-1"), (NODE_RG, "id-a"), (NODE_RG, "id-b")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = patch_vmss(
        &emu,
        MIC,
        &assign(&[(SHARED_RG, "ext-1"), (SHARED_RG, "ext-2")]),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "LinkedAuthorizationFailed");
    assert!(
        r.message().contains(&format!(
            "linked scope(s) '{}'",
            uami_id(SHARED_RG, "ext-2")
        )),
        "only the identity being added is named: {}",
        r.message()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_per_request_limit_counts_only_what_a_request_changes() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync", "identitiesPerRequest": 1}}))
        .await;
    // id-a is already assigned: repeating it adds nothing.
    let r = patch_vmss(&emu, MIC, &assign(&[(NODE_RG, "id-a"), (NODE_RG, "id-b")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = patch_vmss(
        &emu,
        MIC,
        &assign(&[(NODE_RG, "id-b"), (NODE_RG, "id-c"), (NODE_RG, "id-a")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Two removals are two changes.
    let remove = json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {
        uami_id(NODE_RG, "id-a"): null, uami_id(NODE_RG, "id-b"): null}}});
    let r = patch_vmss(&emu, MIC, &remove).await;
    r.assert_error(StatusCode::BAD_REQUEST, "FailedIdentityOperation");
    assert!(
        r.message().contains("Number '2' Assign exceed limit '1'"),
        "{}",
        r.message()
    );
    emu.shutdown().await;
}
