use kube::ResourceExt;
use podid_api::names::{ASSIGNED_IDENTITY_FINALIZER, ASSIGNED_IDENTITY_NODE_LABEL};
use podid_api::{AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentityStatus};
use pretty_assertions::assert_eq;

use super::fixtures::*;
use crate::reconcile::StatusChange;
use crate::releasing::{RELEASING_ANNOTATION, parse_releasing};
use crate::{AssignedRecord, DesiredState, MatchOptions, ObjectRef, desired, reconcile};

fn one(pod_name: &str, node: &str, identity_ns: &str) -> DesiredState {
    desired(
        &[pod("apps", pod_name, "sel", node)],
        &[binding(identity_ns, "b", "id", "sel")],
        &[identity(identity_ns, "id")],
        &nodes(&["node-0", "node-1"]),
        MatchOptions::default(),
    )
}

fn with_status(
    mut object: AzureAssignedIdentity,
    status: AssignedIdentityState,
) -> AzureAssignedIdentity {
    object.status = Some(AzureAssignedIdentityStatus {
        status: Some(status),
        available_replicas: Some(1),
    });
    object
}

fn recorded_objects(
    state: &DesiredState,
    status: AssignedIdentityState,
) -> Vec<AzureAssignedIdentity> {
    state
        .assignments
        .values()
        .map(|a| with_status(a.to_resource(), status.clone()))
        .collect()
}

fn recorded(state: &DesiredState, status: AssignedIdentityState) -> Vec<AssignedRecord> {
    recorded_objects(state, status)
        .into_iter()
        .map(AssignedRecord::from)
        .collect()
}

#[test]
fn a_missing_assignment_is_created_in_upstreams_shape() {
    let state = one("web", "node-0", "apps");
    let plan = reconcile(&[] as &[AssignedRecord], &state);
    assert_eq!(plan.create.len(), 1);
    let created = serde_json::to_value(plan.create[0].to_resource()).unwrap();
    assert_eq!(created["metadata"]["name"], "web-apps-id");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(
        created["metadata"]["labels"][ASSIGNED_IDENTITY_NODE_LABEL],
        "node-0"
    );
    assert_eq!(
        created["metadata"]["finalizers"][0],
        ASSIGNED_IDENTITY_FINALIZER
    );
    assert_eq!(
        created["status"],
        serde_json::json!({"status": "Created", "availableReplicas": 1})
    );
    assert_eq!(created["spec"]["pod"], "web");
    assert_eq!(created["spec"]["podNamespace"], "apps");
    assert_eq!(created["spec"]["nodename"], "node-0");
    let identity = &created["spec"]["azureIdentityRef"];
    assert_eq!(identity["apiVersion"], "aadpodidentity.k8s.io/v1");
    assert_eq!(identity["kind"], "AzureIdentity");
    assert_eq!(identity["metadata"]["resourceVersion"], "1");
    assert_eq!(
        created["spec"]["azureBindingRef"]["kind"],
        "AzureIdentityBinding"
    );
    assert!(plan.replace.is_empty() && plan.status.is_empty() && plan.delete.is_empty());
}

#[test]
fn an_assigned_record_of_the_desired_state_needs_nothing() {
    let state = one("web", "node-0", "apps");
    assert!(reconcile(&recorded(&state, AssignedIdentityState::Assigned), &state).is_empty());
}

#[test]
fn a_created_record_waits_for_confirmation_without_writes() {
    // Upstream re-drove these through ARM; here the machine plan and settle do.
    let state = one("web", "node-0", "apps");
    assert!(reconcile(&recorded(&state, AssignedIdentityState::Created), &state).is_empty());
}

#[test]
fn objects_written_by_upstream_are_adopted() {
    let web = pod("apps", "web", "sel", "node-0");
    let state = one("web", "node-0", "apps");
    let upstream = upstream_assigned(
        &web,
        &identity("apps", "id"),
        &binding("apps", "b", "id", "sel"),
        "default",
        "Assigned",
    );
    assert!(reconcile(&[AssignedRecord::from(upstream)], &state).is_empty());
}

#[test]
fn an_identity_edited_in_place_replaces_the_record_and_releases_the_old_identity() {
    // Same names, new clientID and resourceID.
    let old = one("web", "node-0", "apps");
    let current = recorded_objects(&old, AssignedIdentityState::Assigned);
    let mut edited = identity("apps", "id");
    edited.spec.resource_id = Some(uami("id-0").to_string());
    edited.spec.client_id = Some("client-id-0".into());
    edited.metadata.resource_version = Some("2".into());
    let new = desired(
        &[pod("apps", "web", "sel", "node-0")],
        &[binding("apps", "b", "id", "sel")],
        &[edited],
        &nodes(&["node-0"]),
        MatchOptions::default(),
    );
    let mut existing = current[0].clone();
    existing.metadata.resource_version = Some("77".into());
    let plan = reconcile(&[AssignedRecord::from(existing)], &new);
    assert_eq!(plan.replace.len(), 1);
    let replaced = &plan.replace[0];
    assert_eq!(replaced.resource_version().as_deref(), Some("77"));
    assert_eq!(
        replaced.status.as_ref().unwrap().status,
        Some(AssignedIdentityState::Created)
    );
    assert_eq!(
        replaced
            .spec
            .azure_identity_ref
            .as_ref()
            .unwrap()
            .spec
            .client_id
            .as_deref(),
        Some("client-id-0")
    );
    let releasing = parse_releasing(&replaced.annotations()[RELEASING_ANNOTATION]);
    assert_eq!(releasing.len(), 1);
    assert_eq!(
        (releasing[0].node.as_str(), &releasing[0].resource_id),
        ("node-0", &uami("id"))
    );
    assert!(plan.create.is_empty() && plan.delete.is_empty());
}

#[test]
fn a_metadata_only_edit_of_the_identity_keeps_the_record() {
    let state = one("web", "node-0", "apps");
    let current = recorded(&state, AssignedIdentityState::Assigned);
    let mut touched = identity("apps", "id");
    touched.metadata.resource_version = Some("9".into());
    touched.labels_mut().insert("team".into(), "x".into());
    let later = desired(
        &[pod("apps", "web", "sel", "node-0")],
        &[binding("apps", "b", "id", "sel")],
        &[touched],
        &nodes(&["node-0", "node-1"]),
        MatchOptions::default(),
    );
    assert!(reconcile(&current, &later).is_empty());
}

#[test]
fn making_an_identity_namespaced_rewrites_the_record() {
    // The node agent reads the annotation from the snapshot, so it must follow.
    let state = one("web", "node-0", "apps");
    let current = recorded(&state, AssignedIdentityState::Assigned);
    let later = desired(
        &[pod("apps", "web", "sel", "node-0")],
        &[binding("apps", "b", "id", "sel")],
        &[namespaced(identity("apps", "id"))],
        &nodes(&["node-0"]),
        MatchOptions::default(),
    );
    // It moves from default to apps: a delete path (release) and a create.
    let plan = reconcile(&current, &later);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].object.namespace, "apps");
    assert_eq!(
        plan.status,
        [StatusChange {
            object: ObjectRef::new("default", "web-apps-id"),
            to: AssignedIdentityState::Unassigned
        }]
    );
}

#[test]
fn a_pod_on_another_node_under_the_same_name_replaces_the_record() {
    let before = one("web", "node-0", "apps");
    let after = one("web", "node-1", "apps");
    let plan = reconcile(&recorded(&before, AssignedIdentityState::Assigned), &after);
    assert_eq!(plan.replace.len(), 1);
    assert_eq!(
        plan.replace[0].labels()[ASSIGNED_IDENTITY_NODE_LABEL],
        "node-1"
    );
    assert!(
        plan.replace[0]
            .annotations()
            .contains_key(RELEASING_ANNOTATION)
    );
}

#[test]
fn an_assignment_no_longer_wanted_is_unassigned_first() {
    // The pod, the identity or the binding was deleted.
    for status in [
        AssignedIdentityState::Assigned,
        AssignedIdentityState::Other(String::new()),
    ] {
        let state = one("web", "node-0", "apps");
        let plan = reconcile(&recorded(&state, status), &DesiredState::default());
        assert_eq!(
            plan.status,
            [StatusChange {
                object: ObjectRef::new("default", "web-apps-id"),
                to: AssignedIdentityState::Unassigned
            }]
        );
        assert!(plan.delete.is_empty());
    }
}

#[test]
fn an_unconfirmed_assignment_no_longer_wanted_is_deleted_at_once() {
    for status in [
        AssignedIdentityState::Created,
        AssignedIdentityState::Other("odd".into()),
    ] {
        let state = one("web", "node-0", "apps");
        let plan = reconcile(&recorded(&state, status), &DesiredState::default());
        assert_eq!(plan.delete, [ObjectRef::new("default", "web-apps-id")]);
        assert!(plan.status.is_empty());
    }
}

#[test]
fn an_unassigned_record_is_left_to_settle_or_revived() {
    let state = one("web", "node-0", "apps");
    let current = recorded(&state, AssignedIdentityState::Unassigned);
    assert!(reconcile(&current, &DesiredState::default()).is_empty());
    let plan = reconcile(&current, &state);
    assert_eq!(
        plan.status,
        [StatusChange {
            object: ObjectRef::new("default", "web-apps-id"),
            to: AssignedIdentityState::Created
        }]
    );
}

#[test]
fn fields_no_reader_uses_do_not_count_as_changes() {
    let web = pod("apps", "web", "sel", "node-0");
    let mut live_identity = identity("apps", "id");
    live_identity.spec.identity_type = None;
    live_identity.spec.ad_resource_id = Some("https://vault.azure.net".into());
    let mut live_binding = binding("apps", "b", "id", "sel");
    live_binding.spec.weight = Some(5);
    let state = desired(
        std::slice::from_ref(&web),
        &[live_binding],
        &[live_identity],
        &nodes(&["node-0"]),
        MatchOptions::default(),
    );
    // Recorded with an explicit type 0, an empty clientPassword and no weight.
    let mut recorded_identity = identity("apps", "id");
    recorded_identity.spec.client_password = Some(Default::default());
    let upstream = upstream_assigned(
        &web,
        &recorded_identity,
        &binding("apps", "b", "id", "sel"),
        "default",
        "Assigned",
    );
    let upstream = AssignedRecord::from(upstream);
    assert!(reconcile(std::slice::from_ref(&upstream), &state).is_empty());
    // A field the node agent reads does count.
    let mut moved = identity("apps", "id");
    moved.spec.tenant_id = Some("other-tenant".into());
    let changed = desired(
        &[web],
        &[binding("apps", "b", "id", "sel")],
        &[moved],
        &nodes(&["node-0"]),
        MatchOptions::default(),
    );
    assert_eq!(reconcile(&[upstream], &changed).replace.len(), 1);
}
