//! MIC over time: the removal grace period, drift repair (E24), immutable identities (E23),
//! adopting upstream's objects, and `/healthz`.

mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use podid_api::AzureAssignedIdentity;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_pod_within_the_grace_period_costs_no_arm_call() {
    let mut h = Harness::new("mic-grace").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    let mut settings = test_settings();
    settings.removal_grace = Duration::from_secs(3600);
    h.start_mic(settings).await;
    h.pod("app", "a", &node).await;
    let name = h.aai_name("app", "a");
    h.wait_status(&name, "Assigned").await;
    assert_eq!(h.patches(POOL).await, vec![200]);

    // The pod goes: the assignment ends at once (the node agent stops serving it), the
    // identity stays for the grace period.
    h.delete_pod("app").await;
    h.wait_status(&name, "Unassigned").await;
    assert!(h.identities_on(POOL).await.contains("id-a"));
    // It comes back: Assigned again without any ARM write.
    h.pod("app", "a", &node).await;
    h.wait_status(&name, "Assigned").await;
    assert_eq!(h.patches(POOL).await, vec![200]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_counts_from_when_the_identity_stopped_being_needed() {
    // The grace is counted from the pod's deletion, not from the last cycle before it: with
    // nothing changing, no cycle runs, and a grace counted from the last one had already run
    // out when the pod went (the identity was taken off at once).
    const GRACE: Duration = Duration::from_secs(5);
    let mut h = Harness::new("mic-grace-quiet").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    let mut settings = test_settings();
    settings.removal_grace = GRACE;
    h.start_mic(settings).await;
    h.pod("app", "a", &node).await;
    let name = h.aai_name("app", "a");
    h.wait_status(&name, "Assigned").await;
    // Quiet for longer than the grace period: no input changes, no periodic refresh.
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;

    h.delete_pod("app").await;
    let gone = tokio::time::Instant::now();
    // Held through the grace period (less a second: MIC may see the deletion a moment before
    // the delete call returns here).
    while gone.elapsed() < GRACE - Duration::from_secs(1) {
        let held = h.identities_on(POOL).await.contains("id-a");
        let after = gone.elapsed();
        assert!(
            held || after >= GRACE - Duration::from_secs(1),
            "id-a was taken off {after:?} after its pod went, within the {GRACE:?} grace period"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Taken off once the grace period has run.
    h.wait_identities(POOL, &["kubelet"]).await;
    let took = gone.elapsed();
    assert!(took >= GRACE - Duration::from_secs(1), "{took:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_removed_out_of_band_is_added_again_and_immutable_ones_stay() {
    let mut h = Harness::new("mic-drift").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.identity("imm", NODE_RG, "id-c").await;
    h.binding("imm", "imm", "imm").await;
    let mut settings = test_settings();
    settings.timing.refresh = Duration::from_millis(300);
    settings.immutable_client_ids = vec![client_id("id-c").to_uppercase()];
    h.start_mic(settings).await;
    h.pod("app", "a", &node).await;
    h.pod("imm", "imm", &node).await;
    h.wait_status(&h.aai_name("app", "a"), "Assigned").await;
    h.wait_status(&h.aai_name("imm", "imm"), "Assigned").await;

    h.remove_out_of_band(POOL, "id-a").await;
    // Within the refresh interval MIC reads the scale set again and repairs it (E24).
    h.wait_identities(POOL, &["kubelet", "id-a", "id-c"]).await;

    // E23: the immutable identity (client ID compared ignoring case) stays after its pod.
    h.delete_pod("imm").await;
    h.wait_gone(&h.aai_name("imm", "imm")).await;
    assert!(h.identities_on(POOL).await.contains("id-c"));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_objects_are_adopted_without_rewrites_or_arm_writes() {
    let mut h = Harness::new("mic-adopt").await;
    let node = h.vmss_node(POOL, 0).await;
    let identity = h.identity("a", NODE_RG, "id-a").await;
    let binding = h.binding("a", "a", "a").await;
    h.pod("app", "a", &node).await;
    // Upstream's MIC had assigned id-a and written its object.
    let token = h.emu.arm_token(OWNER_CLIENT);
    let path = format!(
        "/subscriptions/{}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{POOL}?api-version=2019-12-01",
        h.sub
    );
    let reply = h
        .emu
        .arm(
            reqwest::Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"identity": {"type": "UserAssigned",
                "userAssignedIdentities": {h.uami_id(NODE_RG, "id-a"): {}}}})),
        )
        .await;
    assert_eq!(reply.status, 200);
    let name = h.aai_name("app", "a");
    let object: AzureAssignedIdentity = serde_json::from_value(upstream_aai(
        &name,
        "app",
        h.ns.name(),
        &node,
        &identity,
        &binding,
        "Assigned",
    ))
    .expect("an AAI");
    let api: Api<AzureAssignedIdentity> = Api::namespaced(h.admin.clone(), "default");
    let before = api
        .create(&PostParams::default(), &object)
        .await
        .expect("created as upstream wrote it");

    h.identity("b", NODE_RG, "id-b").await;
    h.binding("b", "b", "b").await;
    h.start_mic(test_settings()).await;
    // Once MIC has handled a later change, it has seen the adopted object many times.
    h.pod("other", "b", &node).await;
    h.wait_status(&h.aai_name("other", "b"), "Assigned").await;
    let after = h.aai(&name).await.expect("kept");
    assert_eq!(after.resource_version(), before.resource_version());
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b"]).await;
    // Only the new identity was written.
    assert_eq!(h.patches(POOL).await, vec![200, 200]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_active_only_while_leading() {
    let mut h = Harness::new("mic-health").await;
    h.start_mic(test_settings()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    let router = podid_mic::http::health_router(h.mic().active.clone())
        .merge(podid_mic::http::metrics_router(h.mic().metrics.clone()));
    let server = tokio::spawn(async move { axum_serve(listener, router).await });
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let body = podid_testkit::wait_for("Active", PATIENCE, || async {
        let reply = client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = reply.status();
        let body = reply.text().await.map_err(|e| e.to_string())?;
        (status == 200 && body == "Active")
            .then_some(body.clone())
            .ok_or(body)
    })
    .await;
    assert_eq!(body, "Active");
    let metrics = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("aadpodidentity_mic_cycle_count"),
        "{metrics}"
    );
    h.stop_mic().await;
    let reply = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.expect("text"), "Not Active");
    server.abort();
    h.finish().await;
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let _ = axum::serve(listener, router).await;
}
