//! Long-running identity updates (azure-wire.md §3.5): 200 + Updating + Azure-AsyncOperation,
//! polling InProgress → Succeeded on the emulator's clock, poll-count completion, injected
//! failures, sync mode, and the IMDS visibility times a completed update schedules.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn add(name: &str) -> Value {
    json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {uami_id(NODE_RG, name).to_lowercase(): {}}}})
}

async fn patch_vmss(emu: &Emulator, body: &Value) -> Reply {
    let token = emu.arm_token(MIC);
    emu.arm(Method::PATCH, &vmss_path(), Some(&token), Some(body))
        .await
}

async fn get_vmss(emu: &Emulator) -> Value {
    let token = emu.arm_token(MIC);
    emu.arm(Method::GET, &vmss_path(), Some(&token), None)
        .await
        .body
}

/// Polls the operation URL exactly as a client would (absolute URL from the header).
async fn poll(emu: &Emulator, url: &str) -> Reply {
    let token = emu.arm_token(MIC);
    let path = url
        .strip_prefix(emu.arm_base())
        .expect("the operation URL points at the emulator's ARM");
    emu.arm(Method::GET, path, Some(&token), None).await
}

fn unix_ms(arm_timestamp: &str) -> i64 {
    let t = time::OffsetDateTime::parse(
        arm_timestamp,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 time");
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("fits")
}

#[tokio::test]
async fn an_update_is_updating_until_the_clock_passes_its_duration_then_succeeds() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 60000}, "imds": {"propagationDelayMs": 20000}}))
        .await;
    let r = patch_vmss(&emu, &add("id-b")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    assert_eq!(r.header("retry-after"), Some("1"));
    let url = r
        .header("azure-asyncoperation")
        .expect("an operation URL")
        .to_string();
    let prefix = format!(
        "{}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/eastus/operations/",
        emu.arm_base()
    );
    assert!(url.starts_with(&prefix), "{url}");
    assert!(
        url.ends_with(&format!("?api-version={COMPUTE_API}")),
        "{url}"
    );

    let during = get_vmss(&emu).await;
    assert_eq!(during["properties"]["provisioningState"], "Updating");
    assert_eq!(
        during["identity"]["userAssignedIdentities"]
            .as_object()
            .map(|m| m.len()),
        Some(1),
        "old map until done"
    );

    let p = poll(&emu, &url).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body["status"], "InProgress");
    assert!(p.body.get("endTime").is_none());
    assert_eq!(p.header("retry-after"), Some("1"));

    emu.advance_clock(61).await;
    let p = poll(&emu, &url).await;
    assert_eq!(p.body["status"], "Succeeded", "{}", p.body);
    let started = unix_ms(p.body["startTime"].as_str().expect("startTime"));
    let ended = unix_ms(p.body["endTime"].as_str().expect("endTime"));
    assert_eq!(
        ended - started,
        60000,
        "completion is dated at the deadline, not the poll"
    );

    let after = get_vmss(&emu).await;
    assert_eq!(after["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        after["identity"]["userAssignedIdentities"]
            .as_object()
            .map(|m| m.len()),
        Some(2)
    );

    let world = emu.world().await;
    let assigned = world["virtualMachineScaleSets"][0]["identity"]["userAssigned"]
        .as_array()
        .expect("assigned")
        .iter()
        .find(|a| a["id"].as_str().is_some_and(|id| id.ends_with("id-b")))
        .cloned()
        .expect("id-b assigned");
    assert_eq!(assigned["visibleFromMs"].as_i64(), Some(ended + 20000));
    emu.shutdown().await;
}

#[tokio::test]
async fn completion_is_applied_on_the_next_read_even_without_polling() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 5000}})).await;
    assert_eq!(patch_vmss(&emu, &add("id-c")).await.status, StatusCode::OK);
    emu.advance_clock(6).await;
    let world = emu.world().await;
    assert_eq!(
        world["virtualMachineScaleSets"][0]["provisioningState"],
        "Succeeded"
    );
    assert_eq!(
        world["virtualMachineScaleSets"][0]["identity"]["userAssigned"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn with_lro_polls_an_update_answers_in_progress_that_many_times() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroPolls": 2}})).await;
    let r = patch_vmss(&emu, &add("id-b")).await;
    let url = r
        .header("azure-asyncoperation")
        .expect("an operation URL")
        .to_string();
    assert_eq!(poll(&emu, &url).await.body["status"], "InProgress");
    assert_eq!(poll(&emu, &url).await.body["status"], "InProgress");
    let done = poll(&emu, &url).await;
    assert_eq!(done.body["status"], "Succeeded");
    assert!(done.header("retry-after").is_none());
    assert_eq!(
        poll(&emu, &url).await.body["status"],
        "Succeeded",
        "a finished operation stays finished"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn an_lro_failure_fault_ends_the_operation_failed_and_changes_nothing() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroPolls": 0}})).await;
    emu.add_fault(json!({
        "surface": "arm", "method": "PATCH", "path": "virtualMachineScaleSets", "times": 1,
        "action": {"kind": "lroFailure", "code": "InternalExecutionError", "message": "An internal execution error occurred."}
    }))
    .await;
    let r = patch_vmss(&emu, &add("id-b")).await;
    assert_eq!(r.status, StatusCode::OK);
    let url = r
        .header("azure-asyncoperation")
        .expect("an operation URL")
        .to_string();
    let p = poll(&emu, &url).await;
    assert_eq!(p.body["status"], "Failed");
    assert_eq!(
        p.body["error"],
        json!({"code": "InternalExecutionError", "message": "An internal execution error occurred."})
    );
    let vmss = get_vmss(&emu).await;
    assert_eq!(vmss["properties"]["provisioningState"], "Failed");
    assert_eq!(
        vmss["identity"]["userAssignedIdentities"]
            .as_object()
            .map(|m| m.len()),
        Some(1)
    );

    // The fault was used up: the next update succeeds.
    let r = patch_vmss(&emu, &add("id-b")).await;
    let url = r
        .header("azure-asyncoperation")
        .expect("an operation URL")
        .to_string();
    assert_eq!(poll(&emu, &url).await.body["status"], "Succeeded");
    emu.shutdown().await;
}

#[tokio::test]
async fn sync_mode_answers_succeeded_without_polling_headers() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync"}})).await;
    let r = patch_vmss(&emu, &add("id-b")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        r.body["identity"]["userAssignedIdentities"]
            .as_object()
            .map(|m| m.len()),
        Some(2)
    );
    assert!(r.header("azure-asyncoperation").is_none());
    assert!(r.header("retry-after").is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn an_unknown_operation_is_not_found() {
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(MIC);
    let path = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/eastus/operations/nope?api-version={COMPUTE_API}"
    );
    let r = emu.arm(Method::GET, &path, Some(&token), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn imds_sees_a_finished_assignment_even_if_nobody_reads_arm_again() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 30000}}))
        .await;
    let imds = emu.imds_base(&format!("{SCALE_SET}_1")).to_string();
    let token_for_id_b = || async {
        emu.http()
            .get(format!("{imds}/metadata/identity/oauth2/token"))
            .query(&[
                ("api-version", "2018-02-01"),
                ("resource", "https://management.azure.com/"),
                ("client_id", "0000000b-0000-4000-8000-00000000000b"),
            ])
            .header("Metadata", "true")
            .send()
            .await
            .expect("IMDS answers")
            .status()
    };
    assert_eq!(patch_vmss(&emu, &add("id-b")).await.status, StatusCode::OK);
    assert_eq!(
        token_for_id_b().await,
        StatusCode::BAD_REQUEST,
        "not yet assigned"
    );
    emu.advance_clock(31).await;
    // No ARM request since the PATCH: IMDS itself must complete the due operation.
    assert_eq!(token_for_id_b().await, StatusCode::OK);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_operation_url_is_on_the_host_the_client_called() {
    // As ARM answers on management.azure.com: a client reaching the emulator by that name (the
    // node lab's DNS) must get polling URLs on it, or a client that keeps its token to its own
    // ARM host (MIC) cannot poll.
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(MIC);
    for (host, base) in [
        ("management.azure.com", "https://management.azure.com"),
        ("bad host/", emu.arm_base()),
    ] {
        let request = emu
            .https()
            .request(Method::PATCH, emu.arm_url(&vmss_path()))
            .header(reqwest::header::HOST, host)
            .bearer_auth(&token)
            .json(&add("id-b"));
        let r = emu.send(request).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let url = r.header("azure-asyncoperation").expect("an operation URL");
        assert!(
            url.starts_with(&format!("{base}/subscriptions/")),
            "Host {host:?}: {url}"
        );
        emu.advance_clock(60).await;
    }
    emu.shutdown().await;
}
