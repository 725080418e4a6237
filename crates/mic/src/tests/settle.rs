use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use podid_api::{AssignedIdentityState, AzureAssignedIdentityStatus};
use podid_azure::arm::MachineId;
use podid_azure::resource_id::ResourceId;
use pretty_assertions::assert_eq;

use super::fixtures::*;
use crate::releasing::{RELEASING_ANNOTATION, Releasing, format_releasing};
use crate::{
    AssignedView, DesiredState, MachinePolicy, MatchOptions, NodeIndex, ObjectRef, Settlement,
    Waiting, desired, plan_machines, settle,
};

const NODES: [&str; 3] = ["node-0", "vmss-pool-0", "vmss-pool-1"];

fn index() -> NodeIndex {
    nodes(&NODES)
}

fn state(pods: &[(&str, &str)], sp: bool) -> DesiredState {
    desired(
        &pods
            .iter()
            .map(|(name, node)| pod("apps", name, "sel", node))
            .collect::<Vec<_>>(),
        &[binding("apps", "b", "id", "sel")],
        &[if sp {
            service_principal("apps", "id")
        } else {
            identity("apps", "id")
        }],
        &index(),
        MatchOptions::default(),
    )
}

fn machine(node: &str) -> MachineId {
    index().machine(node).unwrap().clone()
}

fn observed(node: &str, ids: &[ResourceId]) -> HashMap<MachineId, BTreeSet<ResourceId>> {
    HashMap::from([(machine(node), ids.iter().cloned().collect())])
}

fn run(
    current: &[AssignedView],
    wanted: &DesiredState,
    elapsed: Duration,
    seen: &HashMap<MachineId, BTreeSet<ResourceId>>,
) -> Vec<Settlement> {
    let plans = plan_machines(
        wanted,
        current,
        &index(),
        &MachinePolicy::default(),
        |_, _| Some(elapsed),
    );
    settle(current, &index(), &plans, seen, &HashMap::new())
}

const NAME: &str = "web-apps-id";

fn object() -> ObjectRef {
    ObjectRef::new("default", NAME)
}

fn waiting(reason: Waiting) -> Settlement {
    Settlement::Wait {
        object: object(),
        reason,
    }
}

/// Settles pod `web` on `node-0`, still wanted and recorded with `status`, right away.
fn settle_wanted_web(
    status: AssignedIdentityState,
    sp: bool,
    seen: &HashMap<MachineId, BTreeSet<ResourceId>>,
) -> Vec<Settlement> {
    let wanted = state(&[("web", "node-0")], sp);
    run(&views(&wanted, status), &wanted, Duration::ZERO, seen)
}

/// The record of pod `web` on `node-0` once it is no longer wanted.
fn unassigned_web() -> Vec<AssignedView> {
    views(
        &state(&[("web", "node-0")], false),
        AssignedIdentityState::Unassigned,
    )
}

#[test]
fn a_created_assignment_whose_identity_is_on_the_machine_becomes_assigned() {
    assert_eq!(
        settle_wanted_web(
            AssignedIdentityState::Created,
            false,
            &observed("node-0", &[uami("id")])
        ),
        [Settlement::Assign(object())]
    );
}

#[test]
fn a_created_assignment_whose_identity_is_missing_stays_created() {
    // Identities ARM refused stay Created, as upstream left them.
    assert_eq!(
        settle_wanted_web(
            AssignedIdentityState::Created,
            false,
            &observed("node-0", &[uami("other")])
        ),
        [waiting(Waiting::NotOnMachine)]
    );
    assert_eq!(
        settle_wanted_web(AssignedIdentityState::Created, false, &HashMap::new()),
        [waiting(Waiting::MachineUnknown)]
    );
}

#[test]
fn a_created_assignment_waits_while_a_running_patch_takes_its_identity_off() {
    // The pod came back after the grace period, while the PATCH removing its identity runs:
    // the identity is still on the machine, but on its way off.
    let wanted = state(&[("web", "node-0")], false);
    let current = views(&wanted, AssignedIdentityState::Created);
    let plans = plan_machines(
        &wanted,
        &current,
        &index(),
        &MachinePolicy::default(),
        |_, _| None,
    );
    let seen = observed("node-0", &[uami("id")]);
    assert_eq!(
        settle(&current, &index(), &plans, &seen, &seen),
        [waiting(Waiting::NotOnMachine)]
    );
    // Another identity leaving changes nothing.
    assert_eq!(
        settle(
            &current,
            &index(),
            &plans,
            &seen,
            &observed("node-0", &[uami("other")])
        ),
        [Settlement::Assign(object())]
    );
}

#[test]
fn a_service_principal_is_assigned_without_looking_at_a_machine() {
    assert_eq!(
        settle_wanted_web(AssignedIdentityState::Created, true, &HashMap::new()),
        [Settlement::Assign(object())]
    );
}

#[test]
fn a_legacy_empty_status_is_confirmed_as_assigned() {
    assert_eq!(
        settle_wanted_web(
            AssignedIdentityState::Other(String::new()),
            false,
            &observed("node-0", &[uami("id")])
        ),
        [Settlement::Assign(object())]
    );
}

#[test]
fn an_unassigned_record_goes_once_its_identity_is_off_the_machine() {
    // Also when someone else removed it: the record must never get stuck.
    let current = unassigned_web();
    assert_eq!(
        run(
            &current,
            &DesiredState::default(),
            Duration::from_secs(60),
            &observed("node-0", &[])
        ),
        [Settlement::Delete(object())]
    );
}

#[test]
fn an_unassigned_record_stays_while_its_identity_is_being_removed() {
    let current = unassigned_web();
    let present = observed("node-0", &[uami("id")]);
    for elapsed in [Duration::from_secs(5), Duration::from_secs(60)] {
        assert_eq!(
            run(&current, &DesiredState::default(), elapsed, &present),
            [waiting(Waiting::Removing)]
        );
    }
    assert_eq!(
        run(
            &current,
            &DesiredState::default(),
            Duration::ZERO,
            &HashMap::new()
        ),
        [waiting(Waiting::MachineUnknown)]
    );
}

#[test]
fn an_unassigned_record_goes_when_another_pod_still_needs_the_identity() {
    // The identity stays on the scale set, the record goes.
    let both = state(&[("web", "vmss-pool-0"), ("api", "vmss-pool-1")], false);
    let mut current = views(&both, AssignedIdentityState::Assigned);
    current
        .iter_mut()
        .find(|v| v.object.name == NAME)
        .unwrap()
        .progress = crate::Progress::Unassigned;
    let remaining = state(&[("api", "vmss-pool-1")], false);
    let settlements = run(
        &current,
        &remaining,
        Duration::from_secs(60),
        &observed("vmss-pool-0", &[uami("id")]),
    );
    assert_eq!(settlements, [Settlement::Delete(object())]);
}

#[test]
fn an_unassigned_record_of_an_immutable_identity_goes_and_the_identity_stays() {
    let current = unassigned_web();
    let policy = MachinePolicy::default().with_immutable_client_ids(["client-id"]);
    let plans = plan_machines(
        &DesiredState::default(),
        &current,
        &index(),
        &policy,
        |_, _| Some(Duration::from_secs(60)),
    );
    assert!(plans[0].change.remove.is_empty());
    assert_eq!(
        settle(
            &current,
            &index(),
            &plans,
            &observed("node-0", &[uami("id")]),
            &HashMap::new()
        ),
        [Settlement::Delete(object())]
    );
}

#[test]
fn an_unassigned_record_on_a_vanished_node_is_deleted() {
    let current = unassigned_web();
    let empty = NodeIndex::default();
    assert_eq!(
        settle(&current, &empty, &[], &HashMap::new(), &HashMap::new()),
        [Settlement::Delete(object())]
    );
}

#[test]
fn a_releasing_annotation_shrinks_as_identities_go() {
    let wanted = state(&[("web", "node-0")], false);
    let mut object_with = wanted.assignments[NAME].to_resource();
    object_with.status = Some(AzureAssignedIdentityStatus {
        status: Some(AssignedIdentityState::Assigned),
        available_replicas: Some(1),
    });
    let entries = [
        Releasing {
            node: "node-0".into(),
            resource_id: uami("old-1"),
        },
        Releasing {
            node: "node-0".into(),
            resource_id: uami("old-2"),
        },
    ];
    object_with
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(
            RELEASING_ANNOTATION.into(),
            format_releasing(&entries).unwrap(),
        );
    let current = [AssignedView::of(&object_with)];
    // old-1 is gone from the machine, old-2 is still there and past the grace.
    let seen = observed("node-0", &[uami("id"), uami("old-2")]);
    let plans = plan_machines(
        &wanted,
        &current,
        &index(),
        &MachinePolicy::default(),
        |_, _| Some(Duration::from_secs(60)),
    );
    // Both are MIC's to remove; plan_update drops old-1, which is already gone.
    assert_eq!(
        plans[0].change.remove,
        [uami("old-1"), uami("old-2")].into_iter().collect()
    );
    assert_eq!(
        settle(&current, &index(), &plans, &seen, &HashMap::new()),
        [Settlement::Released {
            object: object(),
            remaining: format_releasing(&entries[1..])
        }]
    );
}
