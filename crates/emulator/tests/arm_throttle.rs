//! Throttling (azure-wire.md §3.8): the front door's per-principal buckets and the compute
//! RP's named windows, both on the emulator's clock, and 429 fault rules in ARM's shape.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn integer_seconds(r: &Reply) -> u64 {
    r.header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After is whole seconds")
}

#[tokio::test]
async fn the_front_door_throttles_reads_per_principal_with_an_integer_retry_after() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"subscriptionReads": {"capacity": 3, "refillPerSecond": 0.01}}}))
        .await;
    let token = emu.arm_token(READER);
    for remaining in ["2", "1", "0"] {
        let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.header("x-ms-ratelimit-remaining-subscription-reads"),
            Some(remaining)
        );
    }
    let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(
        (r.status, r.code()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled"
        )
    );
    let wait = integer_seconds(&r);
    assert_eq!(wait, 100);
    let object_id = emu.shared().world().service_principals[READER]
        .object_id
        .clone();
    assert!(
        r.message().contains(&format!(
            "subscription '{SUBSCRIPTION}' actor '{object_id}'"
        )),
        "{}",
        r.message()
    );
    assert!(r.message().contains(&format!("after '{wait}' seconds")));
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("0")
    );

    // Another principal has its own bucket; writes have theirs.
    let other = emu.arm_token(OWNER);
    assert_eq!(
        emu.arm(Method::GET, &vmss_path(), Some(&other), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = emu
        .arm(
            Method::PATCH,
            &vmss_path(),
            Some(&emu.arm_token(MIC)),
            Some(&json!({"identity": {"type": "UserAssigned"}})),
        )
        .await;
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some(),
        "{:?}",
        r.headers
    );

    emu.advance_clock(wait).await;
    assert_eq!(
        emu.arm(Method::GET, &vmss_path(), Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    let counters = emu.admin(Method::GET, "/admin/counters", None).await.body;
    assert_eq!(counters["arm.vmss.get"]["byStatus"]["429"], 1, "{counters}");
    emu.shutdown().await;
}

#[tokio::test]
async fn the_compute_rp_throttles_by_named_policy_with_the_serialised_detail() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"computePolicies": {"scaleSetGet": [
        {"name": "GetVMScaleSet3Min", "windowSeconds": 180, "limit": 2},
        {"name": "GetVMScaleSet30Min", "windowSeconds": 1800, "limit": 100}
    ]}}}))
    .await;
    let header = regex::Regex::new(r"^Microsoft\.Compute/\w+;\d+(,Microsoft\.Compute/\w+;\d+)*$")
        .expect("regex");
    let token = emu.arm_token(READER);
    let mut last = None;
    for _ in 0..3 {
        let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
        let value = r
            .header("x-ms-ratelimit-remaining-resource")
            .expect("the CRP header")
            .to_string();
        assert!(header.is_match(&value), "{value}");
        last = Some((r, value));
    }
    let (r, value) = last.expect("three answers");
    assert_eq!(
        value,
        "Microsoft.Compute/GetVMScaleSet3Min;0,Microsoft.Compute/GetVMScaleSet30Min;97"
    );
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "OperationNotAllowed");
    let wait = integer_seconds(&r);
    assert!((1..=180).contains(&wait), "{wait}");
    let detail = &r.body["error"]["details"][0];
    assert_eq!(detail["code"], "TooManyRequests");
    assert_eq!(detail["target"], "GetVMScaleSet3Min");
    let inner: Value =
        serde_json::from_str(detail["message"].as_str().expect("a string")).expect("JSON inside");
    assert_eq!(inner["operationGroup"], "GetVMScaleSet3Min");
    assert_eq!(inner["allowedRequestCount"], 2);
    assert_eq!(inner["measuredRequestCount"], 3);
    assert_eq!(
        r.body["error"]["innererror"]["internalErrorCode"],
        "TooManyRequestsReceived"
    );

    emu.advance_clock(180).await;
    let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_429_fault_rule_answers_in_arms_envelope_with_retry_after() {
    let emu = Emulator::start(&small_world()).await;
    emu.add_fault(json!({
        "surface": "arm", "method": "GET", "path": "virtualMachineScaleSets", "times": 1,
        "action": {"kind": "error", "status": 429, "code": "SubscriptionRequestsThrottled", "retryAfter": 7}
    }))
    .await;
    let token = emu.arm_token(READER);
    let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(
        (r.status, r.code()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled"
        )
    );
    assert_eq!(integer_seconds(&r), 7);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        emu.arm(Method::GET, &vmss_path(), Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    emu.shutdown().await;
}
