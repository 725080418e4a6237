//! MIC end to end: pods on scale-set and VM nodes get their identities, in upstream's object
//! shape, with as few ARM calls as the changes need (upstream-e2e-catalog E3–E11, E13, E18–E23,
//! E25, as far as they are MIC's).

mod support;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use podid_api::AzureIdentity;
use podid_api::names::{ASSIGNED_IDENTITY_FINALIZER, ASSIGNED_IDENTITY_NODE_LABEL};
use podid_mic::releasing::RELEASING_ANNOTATION;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmss_pod_gets_its_identity_in_upstreams_shape_and_loses_it_with_the_pod() {
    let mut h = Harness::new("mic-vmss").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("demo", NODE_RG, "id-a").await;
    h.binding("demo-binding", "demo", "demo").await;
    h.start_mic(test_settings()).await;
    h.pod("demo", "demo", &node).await;

    let name = h.aai_name("demo", "demo");
    let aai = h.wait_status(&name, "Assigned").await;
    // Upstream's shape: namespace, label, finalizer, embedded refs, fields.
    assert_eq!(aai.namespace().as_deref(), Some("default"));
    assert_eq!(aai.labels().get(ASSIGNED_IDENTITY_NODE_LABEL), Some(&node));
    assert_eq!(aai.finalizers(), [ASSIGNED_IDENTITY_FINALIZER.to_owned()]);
    assert_eq!(aai.spec.pod.as_deref(), Some("demo"));
    assert_eq!(aai.spec.pod_namespace.as_deref(), Some(h.ns.name()));
    assert_eq!(aai.spec.node_name.as_deref(), Some(node.as_str()));
    let identity = aai.spec.azure_identity_ref.as_ref().expect("identity ref");
    assert_eq!(identity.name_any(), "demo");
    assert_eq!(
        aai.spec
            .azure_binding_ref
            .as_ref()
            .expect("binding ref")
            .name_any(),
        "demo-binding"
    );
    assert_eq!(
        aai.status.as_ref().and_then(|s| s.available_replicas),
        Some(1)
    );
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    // One GET (nothing cached yet), one PATCH.
    assert_eq!(h.gets(POOL).await, vec![200]);
    assert_eq!(h.patches(POOL).await, vec![200]);
    h.wait_event(h.ns.name(), "demo-binding", "binding applied", &node)
        .await;

    h.delete_pod("demo").await;
    h.wait_gone(&name).await;
    h.wait_event(h.ns.name(), "demo-binding", "binding removed", &node)
        .await;
    // The cluster identity (azure.json's userAssignedIdentityID) stays (E25).
    h.wait_identities(POOL, &["kubelet"]).await;
    // The removal was planned from the cache: still one GET.
    assert_eq!(h.gets(POOL).await, vec![200]);
    assert_eq!(h.patches(POOL).await, vec![200, 200]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_keeps_its_system_assigned_identity_and_user_identities_mic_did_not_add() {
    let mut h = Harness::new("mic-vm").await;
    let node = h.vm_node(VM).await;
    // A user adds id-d to the VM out of band (E22): MIC must never remove it.
    let token = h.emu.arm_token(OWNER_CLIENT);
    let vm_path = format!(
        "/subscriptions/{}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachines/{VM}?api-version=2019-12-01",
        h.sub
    );
    let reply = h
        .emu
        .arm(
            reqwest::Method::PATCH,
            &vm_path,
            Some(&token),
            Some(&json!({"identity": {"type": "SystemAssigned, UserAssigned",
                "userAssignedIdentities": {h.uami_id(NODE_RG, "id-d"): {}}}})),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    h.identity("vm-id", NODE_RG, "id-b").await;
    h.binding("vm-binding", "vm-id", "vm").await;
    h.start_mic(test_settings()).await;
    h.pod("app", "vm", &node).await;
    let name = h.aai_name("app", "vm-id");
    h.wait_status(&name, "Assigned").await;
    h.wait_identities(VM, &["id-b", "id-d"]).await;

    h.delete_pod("app").await;
    h.wait_gone(&name).await;
    h.wait_identities(VM, &["id-d"]).await;
    // The system-assigned identity is untouched (E21).
    let world = h.emu.world().await;
    let vm = world["virtualMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|machine| machine["name"] == VM)
        .expect("the VM");
    assert!(vm["identity"]["systemAssigned"].is_object(), "{vm}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_changes_of_a_scale_set_go_in_one_patch_and_machines_progress_in_parallel() {
    let mut h = Harness::new("mic-batch").await;
    let n0 = h.vmss_node(POOL, 0).await;
    let n1 = h.vmss_node(POOL, 1).await;
    let vm = h.vm_node(VM).await;
    for (identity, uami) in [("a", "id-a"), ("b", "id-b"), ("c", "id-c")] {
        h.identity(identity, NODE_RG, uami).await;
        h.binding(&format!("{identity}-binding"), identity, identity)
            .await;
    }
    // Pods on both instances of the scale set exist before MIC starts (E10, E9).
    h.pod("p-a", "a", &n0).await;
    h.pod("p-b", "b", &n1).await;
    h.pod("p-c", "c", &n1).await;
    // The scale set's PATCH is held: the VM must progress meanwhile.
    h.emu
        .hold(json!({"surface": "arm", "method": "PATCH", "path": format!("virtualMachineScaleSets/{POOL}"), "times": 1}))
        .await;
    h.start_mic(test_settings()).await;
    h.emu.wait_held(1).await;
    h.pod("p-vm", "a", &vm).await;
    h.wait_status(&h.aai_name("p-vm", "a"), "Assigned").await;
    h.wait_identities(VM, &["id-a"]).await;
    for (pod, identity) in [("p-a", "a"), ("p-b", "b"), ("p-c", "c")] {
        let aai = h
            .aai(&h.aai_name(pod, identity))
            .await
            .expect("created at once");
        assert_eq!(Harness::status_of(&aai), "Created");
    }
    let held = h.emu.held().await;
    assert_eq!(held.len(), 1);
    h.emu.release(held[0].id).await;
    for (pod, identity) in [("p-a", "a"), ("p-b", "b"), ("p-c", "c")] {
        h.wait_status(&h.aai_name(pod, identity), "Assigned").await;
    }
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b", "id-c"])
        .await;
    // All three identities in one PATCH, for two nodes of one scale set.
    assert_eq!(h.patches(POOL).await, vec![200]);
    h.check_invariant(machine_of(&h)).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_stays_while_another_pod_uses_it_and_label_changes_move_the_assignment() {
    let mut h = Harness::new("mic-shared").await;
    let n0 = h.vmss_node(POOL, 0).await;
    let n1 = h.vmss_node(POOL, 1).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a-binding", "a", "a").await;
    h.identity("b", NODE_RG, "id-b").await;
    h.binding("b-binding", "b", "b").await;
    h.start_mic(test_settings()).await;
    h.pod("one", "a", &n0).await;
    h.pod("two", "a", &n1).await;
    h.wait_status(&h.aai_name("one", "a"), "Assigned").await;
    h.wait_status(&h.aai_name("two", "a"), "Assigned").await;
    // E19: deleting one pod keeps the identity the other uses, on the same scale set.
    h.delete_pod("one").await;
    h.wait_gone(&h.aai_name("one", "a")).await;
    assert!(h.identities_on(POOL).await.contains("id-a"));
    h.check_invariant(machine_of(&h)).await;

    // E11: a label change gives a new AzureAssignedIdentity and releases the old identity.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(h.admin.clone(), h.ns.name());
    pods.patch(
        "two",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"aadpodidbinding": h.selector("b")}}})),
    )
    .await
    .expect("relabelled");
    h.wait_status(&h.aai_name("two", "b"), "Assigned").await;
    h.wait_gone(&h.aai_name("two", "a")).await;
    h.wait_identities(POOL, &["kubelet", "id-b"]).await;

    // E7: an edit of the identity's resourceID rewrites the object, reset to Created then
    // Assigned, and the old identity is released.
    let identities: Api<AzureIdentity> = Api::namespaced(h.admin.clone(), h.ns.name());
    identities
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resourceID": h.uami_id(NODE_RG, "id-c"), "clientID": client_id("id-c")}})),
        )
        .await
        .expect("edited");
    h.wait_identities(POOL, &["kubelet", "id-c"]).await;
    h.wait_status(&h.aai_name("two", "b"), "Assigned").await;
    // The object settles once the identity it held before the edit is released (its
    // releasing annotation goes), a write of its own after `Assigned`.
    let aai = podid_testkit::wait_for("the old identity released", PATIENCE, || async {
        let aai = h.aai(&h.aai_name("two", "b")).await.expect("kept");
        if aai.annotations().contains_key(RELEASING_ANNOTATION) {
            Err(aai.annotations().clone())
        } else {
            Ok(aai)
        }
    })
    .await;
    assert_eq!(
        aai.spec
            .azure_identity_ref
            .as_ref()
            .and_then(|i| i.spec.client_id.clone()),
        Some(client_id("id-c"))
    );
    // A label on the identity changes nothing (deviation: content, not resourceVersion).
    let patches = h.patches(POOL).await.len();
    let version = aai.resource_version();
    identities
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "x"}}})),
        )
        .await
        .expect("labelled");
    // The next change shows the label edit caused nothing in between.
    h.identity("d", NODE_RG, "id-d").await;
    h.binding("d-binding", "d", "d").await;
    h.pod("three", "d", &n0).await;
    h.wait_status(&h.aai_name("three", "d"), "Assigned").await;
    assert_eq!(
        h.aai(&h.aai_name("two", "b"))
            .await
            .expect("kept")
            .resource_version(),
        version
    );
    assert_eq!(h.patches(POOL).await.len(), patches + 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_identities_and_same_names_across_namespaces() {
    let mut h = Harness::new("mic-ns").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("same", NODE_RG, "id-a").await;
    h.binding("same", "same", "same").await;
    let mut settings = test_settings();
    settings.match_options.force_namespaced = true;
    h.start_mic(settings).await;
    h.pod("app", "same", &node).await;
    // Namespaced: the AzureAssignedIdentity lives in the identity's namespace (E18).
    let name = h.aai_name("app", "same");
    let api: Api<podid_api::AzureAssignedIdentity> = Api::namespaced(h.admin.clone(), h.ns.name());
    podid_testkit::wait_for("the namespaced AAI", PATIENCE, || async {
        api.get_opt(&name)
            .await
            .ok()
            .flatten()
            .filter(|a| Harness::status_of(a) == "Assigned")
    })
    .await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    h.delete_pod("app").await;
    podid_testkit::wait_for("the namespaced AAI to go", PATIENCE, || async {
        api.get_opt(&name).await.ok().filter(Option::is_none)
    })
    .await;
    h.wait_identities(POOL, &["kubelet"]).await;
    h.finish().await;
}
