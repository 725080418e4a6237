//! MIC against ARM faults and bad input: refused identities are quarantined while the rest go
//! ahead (E15, E16), throttling, server errors and failing operations end in convergence, a
//! restart mid-batch converges, and bad objects give events, never a crash. After each step
//! no identity still needed was removed.

mod support;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use podid_api::{AzureIdentitySpec, IdentityType};
use podid_mic::controller::Stopped;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_identities_are_quarantined_and_never_hold_back_the_others() {
    let mut h = Harness::new("mic-quarantine").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("good", NODE_RG, "id-a").await;
    h.binding("good", "good", "good").await;
    // Does not exist (FailedIdentityOperation).
    h.identity("ghost", NODE_RG, "id-ghost").await;
    h.binding("ghost", "ghost", "ghost").await;
    // MIC may not assign it (LinkedAuthorizationFailed).
    h.identity("ext", SHARED_RG, "ext-1").await;
    h.binding("ext", "ext", "ext").await;
    // An identity already assigned must survive the failures (E16).
    h.identity("kept", NODE_RG, "id-b").await;
    h.binding("kept", "kept", "kept").await;
    h.start_mic(test_settings()).await;
    h.pod("kept", "kept", &node).await;
    h.wait_status(&h.aai_name("kept", "kept"), "Assigned").await;

    for pod in ["good", "ghost", "ext"] {
        h.pod(pod, pod, &node).await;
    }
    h.wait_status(&h.aai_name("good", "good"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b"]).await;
    h.check_invariant(machine_of(&h)).await;
    for pod in ["ghost", "ext"] {
        let aai = h.aai(&h.aai_name(pod, pod)).await.expect("recorded");
        assert_eq!(Harness::status_of(&aai), "Created", "{pod}");
    }
    let ghost = h
        .wait_event(h.ns.name(), "ghost", "binding apply error", "id-ghost")
        .await;
    assert!(ghost.contains("Managed Identity Operator"), "{ghost}");
    h.wait_event(h.ns.name(), "ext", "binding apply error", "ext-1")
        .await;

    // Fixed by the operator: the role is granted, the identity created. Both are retried
    // with backoff and assigned.
    let admin = h
        .emu
        .admin(
            reqwest::Method::POST,
            "/admin/arm/role-assignments",
            Some(
                &json!({"principal": "mic", "role": "Managed Identity Operator",
                "scope": format!("/subscriptions/{}/resourceGroups/{SHARED_RG}", h.sub)}),
            ),
        )
        .await;
    assert!(admin.status.is_success(), "{:?}", admin.body);
    let token = h.emu.arm_token(OWNER_CLIENT);
    let created = h
        .emu
        .arm(
            reqwest::Method::PUT,
            &format!("{}?api-version=2018-11-30", h.uami_id(NODE_RG, "id-ghost")),
            Some(&token),
            Some(&json!({"location": "eastus"})),
        )
        .await;
    assert!(created.status.is_success(), "{:?}", created.body);
    h.wait_status(&h.aai_name("ghost", "ghost"), "Assigned")
        .await;
    h.wait_status(&h.aai_name("ext", "ext"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b", "id-ghost", "ext-1"])
        .await;
    h.check_invariant(machine_of(&h)).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_and_failed_operations_end_in_convergence() {
    let mut h = Harness::new("mic-faults").await;
    let node = h.vmss_node(POOL, 0).await;
    h.emu
        .set_knobs(json!({"arm": {"lroMode": "async", "lroPolls": 1, "retryAfterSecs": 1}}))
        .await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.identity("b", NODE_RG, "id-b").await;
    h.binding("b", "b", "b").await;
    h.start_mic(test_settings()).await;
    h.pod("a", "a", &node).await;
    h.wait_status(&h.aai_name("a", "a"), "Assigned").await;

    // The next PATCH: 429 with Retry-After, then 500 twice, then an operation that fails.
    let patch = |action: serde_json::Value, times: u64| {
        json!({"surface": "arm", "method": "PATCH", "path": format!("virtualMachineScaleSets/{POOL}"),
               "times": times, "action": action})
    };
    h.emu
        .add_fault(patch(
            json!({"kind": "error", "status": 429, "retryAfter": 1}),
            1,
        ))
        .await;
    h.pod("b", "b", &node).await;
    h.emu
        .add_fault(patch(json!({"kind": "error", "status": 500}), 2))
        .await;
    h.emu
        .add_fault(patch(
            json!({"kind": "lroFailure", "code": "InternalExecutionError", "message": "boom"}),
            1,
        ))
        .await;
    h.wait_status(&h.aai_name("b", "b"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b"]).await;
    h.check_invariant(machine_of(&h)).await;
    let statuses = h.patches(POOL).await;
    assert!(
        statuses.contains(&429) && statuses.contains(&500),
        "{statuses:?}"
    );
    let journal = h
        .emu
        .journal(Some(podid_emulator::testing::Surface::Arm))
        .await;
    assert!(
        journal
            .iter()
            .any(|e| e["operation"] == "arm.operation.get"),
        "the operation was polled"
    );
    // ARM's errors show on the binding while the identity waits.
    h.wait_event(h.ns.name(), "b", "binding apply error", "id-b")
        .await;
    let metrics = h.mic().metrics.encode();
    assert!(
        metrics.contains(
            "aadpodidentity_cloud_provider_operations_errors_count{operation_type=\"vmss_update\"}"
        ),
        "{metrics}"
    );

    // Removal faults: the identity is removed once ARM lets it, the other never.
    h.emu
        .add_fault(patch(json!({"kind": "error", "status": 503}), 1))
        .await;
    h.delete_pod("b").await;
    h.wait_gone(&h.aai_name("b", "b")).await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    h.check_invariant(machine_of(&h)).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_poll_waits_for_the_running_update_instead_of_colliding_with_it() {
    let mut h = Harness::new("mic-updating").await;
    let node = h.vmss_node(POOL, 0).await;
    // The update runs until the test moves the emulator's clock on.
    h.emu
        .set_knobs(json!({"arm": {"lroMode": "async", "lroDurationMs": 2000, "retryAfterSecs": 1}}))
        .await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    // The PATCH's first status poll fails: MIC no longer follows the operation, which runs on.
    h.emu
        .add_fault(
            json!({"surface": "arm", "method": "GET", "path": "/operations/", "times": 1,
                          "action": {"kind": "error", "status": 500}}),
        )
        .await;
    h.start_mic(test_settings()).await;
    h.pod("a", "a", &node).await;
    // MIC reads the scale set again (the first GET, the PATCH's, is before it) and finds the
    // update running, then again after its recheck interval.
    podid_testkit::wait_for("two reads of the updating scale set", PATIENCE, || async {
        let gets = h.gets(POOL).await.len();
        (gets >= 3).then_some(()).ok_or(gets)
    })
    .await;
    let aai = h.aai(&h.aai_name("a", "a")).await.expect("created");
    assert_eq!(Harness::status_of(&aai), "Created");
    // No second PATCH while the first update runs: it would have collided (409 Conflict).
    assert_eq!(h.patches(POOL).await, vec![200]);

    h.emu.advance_clock_ms(2000).await;
    h.wait_status(&h.aai_name("a", "a"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    assert_eq!(h.patches(POOL).await, vec![200]);
    let journal = h
        .emu
        .journal(Some(podid_emulator::testing::Surface::Arm))
        .await;
    assert!(
        journal.iter().any(|e| e["path"]
            .as_str()
            .is_some_and(|p| p.contains("/operations/"))
            && e["status"] == 500),
        "the poll failed"
    );
    h.check_invariant(machine_of(&h)).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_batch_converges() {
    let mut h = Harness::new("mic-restart").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.identity("b", NODE_RG, "id-b").await;
    h.binding("b", "b", "b").await;
    h.pod("a", "a", &node).await;
    h.pod("b", "b", &node).await;
    h.emu
        .hold(json!({"surface": "arm", "method": "PATCH", "times": 1}))
        .await;
    h.start_mic(test_settings()).await;
    h.emu.wait_held(1).await;
    assert!(is_active(h.mic()));
    // The objects are written while the PATCH runs (ARM work starts first).
    for pod in ["a", "b"] {
        h.wait_status(&h.aai_name(pod, pod), "Created").await;
    }
    // Leadership moves away mid-PATCH: MIC stops writing and ends.
    assert_eq!(h.stop_mic().await, Stopped::LostLeadership);
    for pod in ["a", "b"] {
        let aai = h
            .aai(&h.aai_name(pod, pod))
            .await
            .expect("recorded while the PATCH ran");
        assert_eq!(Harness::status_of(&aai), "Created");
    }
    // A new leader re-drives the Created objects. The old PATCH, if still held, goes on too.
    h.start_mic(test_settings()).await;
    h.wait_status(&h.aai_name("a", "a"), "Assigned").await;
    h.wait_status(&h.aai_name("b", "b"), "Assigned").await;
    h.emu.release_all().await;
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b"]).await;
    h.check_invariant(machine_of(&h)).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_events_and_the_rest_works() {
    let mut h = Harness::new("mic-bad").await;
    let node = h.vmss_node(POOL, 0).await;
    let kind_node = h.node_name("kind");
    h.node(&kind_node, "kind://docker/kind/kind-worker").await;
    // Text around a valid ID passes upstream's unanchored check, not podid's.
    h.identity_with(
        "malformed",
        AzureIdentitySpec {
            identity_type: Some(IdentityType::UserAssignedManagedIdentity),
            resource_id: Some(format!("see {}", h.uami_id(NODE_RG, "id-a"))),
            client_id: Some(client_id("id-a")),
            ..AzureIdentitySpec::default()
        },
    )
    .await;
    h.binding("malformed", "malformed", "malformed").await;
    h.binding("dangling", "missing", "dangling").await;
    h.identity("good", NODE_RG, "id-b").await;
    h.binding("good", "good", "good").await;
    h.start_mic(test_settings()).await;
    h.pod("m", "malformed", &node).await;
    h.pod("d", "dangling", &node).await;
    h.pod("k", "good", &kind_node).await;
    h.pod("g", "good", &node).await;

    h.wait_status(&h.aai_name("g", "good"), "Assigned").await;
    h.wait_event(
        h.ns.name(),
        "malformed",
        "invalid identity",
        "not an ARM resource ID",
    )
    .await;
    h.wait_event(
        h.ns.name(),
        "dangling",
        "binding apply error",
        "does not exist",
    )
    .await;
    h.wait_event("default", &kind_node, "invalid provider ID", "kind://")
        .await;
    assert!(h.aai(&h.aai_name("m", "malformed")).await.is_none());
    assert!(h.aai(&h.aai_name("d", "missing")).await.is_none());
    // The pod on the node without a machine is recorded; it waits, nothing crashes.
    let k = h.aai(&h.aai_name("k", "good")).await.expect("recorded");
    assert_eq!(Harness::status_of(&k), "Created");
    h.wait_identities(POOL, &["kubelet", "id-b"]).await;
    assert!(is_active(h.mic()));
    let nodes: Api<Node> = Api::all(h.admin.clone());
    assert!(
        !nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
            .is_empty()
    );
    h.finish().await;
}
