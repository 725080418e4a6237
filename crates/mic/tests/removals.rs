//! Assignments that end because something other than the pod went: the AzureIdentity (E5),
//! the binding (E6), or the identity on the machine itself (E20). Every pod here is `Pending`
//! (no status), as a pod whose init containers still run (E13).

mod support;

use kube::api::{Api, DeleteParams};
use podid_api::{AzureIdentity, AzureIdentityBinding};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_identity_or_the_binding_ends_the_assignment() {
    let mut h = Harness::new("mic-removals").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.identity("b", NODE_RG, "id-b").await;
    h.binding("b", "b", "b").await;
    h.start_mic(test_settings()).await;
    h.pod("first", "a", &node).await;
    h.pod("second", "b", &node).await;
    let first = h.aai_name("first", "a");
    let second = h.aai_name("second", "b");
    h.wait_status(&first, "Assigned").await;
    h.wait_status(&second, "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b"]).await;

    // E5: the AzureIdentity goes; its assignment and its identity on the scale set follow.
    Api::<AzureIdentity>::namespaced(h.admin.clone(), h.ns.name())
        .delete("a", &DeleteParams::default())
        .await
        .expect("the identity is deleted");
    h.wait_gone(&first).await;
    h.wait_identities(POOL, &["kubelet", "id-b"]).await;

    // E6: the binding goes; the same.
    Api::<AzureIdentityBinding>::namespaced(h.admin.clone(), h.ns.name())
        .delete("b", &DeleteParams::default())
        .await
        .expect("the binding is deleted");
    h.wait_gone(&second).await;
    h.wait_identities(POOL, &["kubelet"]).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_ends_even_when_its_identity_was_already_removed_from_the_machine() {
    let mut h = Harness::new("mic-unassigned").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.start_mic(test_settings()).await;
    h.pod("app", "a", &node).await;
    let name = h.aai_name("app", "a");
    h.wait_status(&name, "Assigned").await;

    // E20: someone takes the identity off the scale set, then the pod goes. MIC's view of the
    // scale set is stale (no refresh in this test), yet the AzureAssignedIdentity is deleted
    // and the identity is not put back.
    h.remove_out_of_band(POOL, "id-a").await;
    h.delete_pod("app").await;
    h.wait_gone(&name).await;
    h.wait_identities(POOL, &["kubelet"]).await;
    h.finish().await;
}
