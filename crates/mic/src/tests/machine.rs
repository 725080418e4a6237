use std::collections::BTreeSet;
use std::time::Duration;

use podid_api::AssignedIdentityState;
use podid_azure::arm::{IdentityType, MachineIdentity, plan_update};
use pretty_assertions::assert_eq;

use super::fixtures::*;
use crate::{
    AssignedView, DesiredState, MachinePlan, MachinePolicy, MatchOptions, desired, plan_machines,
};

const NODES: [&str; 4] = ["node-0", "node-1", "vmss-pool-0", "vmss-pool-1"];

/// The desired state of pods `(name, identity, node)`, each with its own binding.
fn wanted(pods: &[(&str, &str, &str)]) -> DesiredState {
    let identities: BTreeSet<&str> = pods.iter().map(|(_, id, _)| *id).collect();
    desired(
        &pods
            .iter()
            .map(|(name, id, node)| pod("apps", name, id, node))
            .collect::<Vec<_>>(),
        &identities
            .iter()
            .map(|id| binding("apps", id, id, id))
            .collect::<Vec<_>>(),
        &identities
            .iter()
            .map(|id| identity("apps", id))
            .collect::<Vec<_>>(),
        &nodes(&NODES),
        MatchOptions::default(),
    )
}

/// Views of objects recording `pods` with `status`.
fn existing(pods: &[(&str, &str, &str)], status: AssignedIdentityState) -> Vec<AssignedView> {
    views(&wanted(pods), status)
}

fn plans(
    desired: &DesiredState,
    current: &[AssignedView],
    policy: &MachinePolicy,
    elapsed: Duration,
) -> Vec<MachinePlan> {
    plan_machines(desired, current, &nodes(&NODES), policy, |_, _| {
        Some(elapsed)
    })
}

fn ids(names: &[&str]) -> BTreeSet<podid_azure::resource_id::ResourceId> {
    names.iter().map(|name| uami(name)).collect()
}

const LONG_AGO: Duration = Duration::from_secs(3600);

#[test]
fn a_needed_identity_is_added_to_the_pods_machine() {
    let plans = plans(
        &wanted(&[("web", "a", "node-0")]),
        &[],
        &MachinePolicy::default(),
        LONG_AGO,
    );
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].machine.name(), "vm-node-0");
    assert_eq!(plans[0].change.add, ids(&["a"]));
    assert!(plans[0].change.remove.is_empty());
}

#[test]
fn nodes_of_one_scale_set_share_one_plan() {
    let plans = plans(
        &wanted(&[("web", "a", "vmss-pool-0"), ("api", "b", "vmss-pool-1")]),
        &[],
        &MachinePolicy::default(),
        LONG_AGO,
    );
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].machine.name(), "pool");
    assert_eq!(plans[0].change.add, ids(&["a", "b"]));
}

#[test]
fn an_identity_used_by_a_pod_on_another_node_of_the_scale_set_is_kept() {
    // Upstream's node test: a pod on another node of the scale set keeps the identity.
    let current = existing(
        &[("one", "a", "vmss-pool-0"), ("two", "a", "vmss-pool-1")],
        AssignedIdentityState::Assigned,
    );
    let plans = plans(
        &wanted(&[("one", "a", "vmss-pool-0")]),
        &current,
        &MachinePolicy::default(),
        LONG_AGO,
    );
    assert!(plans[0].change.remove.is_empty());
    assert!(plans[0].deferred.is_empty());
}

#[test]
fn an_owned_identity_no_longer_needed_is_removed_after_the_grace_period() {
    let current = existing(&[("web", "a", "node-0")], AssignedIdentityState::Unassigned);
    let policy = MachinePolicy::default();
    let early = plans(
        &DesiredState::default(),
        &current,
        &policy,
        Duration::from_secs(12),
    );
    assert!(early[0].change.remove.is_empty());
    assert_eq!(
        early[0].deferred.clone().into_iter().collect::<Vec<_>>(),
        [(uami("a"), Duration::from_secs(18))]
    );
    let late = plans(
        &DesiredState::default(),
        &current,
        &policy,
        Duration::from_secs(30),
    );
    assert_eq!(late[0].change.remove, ids(&["a"]));
    assert!(late[0].deferred.is_empty());
}

#[test]
fn an_identity_never_seen_needed_waits_a_whole_grace_period() {
    let current = existing(&[("web", "a", "node-0")], AssignedIdentityState::Assigned);
    let plans = plan_machines(
        &DesiredState::default(),
        &current,
        &nodes(&NODES),
        &MachinePolicy::default(),
        |_, _| None,
    );
    assert_eq!(plans[0].deferred[&uami("a")], Duration::from_secs(30));
    assert!(plans[0].change.remove.is_empty());
}

#[test]
fn identities_mic_did_not_confirm_are_never_removed() {
    // Created: MIC never saw it on the machine through this object (it may be the user's).
    let current = existing(&[("web", "a", "node-0")], AssignedIdentityState::Created);
    let plans = plans(
        &DesiredState::default(),
        &current,
        &MachinePolicy::default(),
        LONG_AGO,
    );
    assert!(plans.is_empty());
}

#[test]
fn immutable_identities_are_never_removed_whatever_the_case_of_their_client_id() {
    // --immutable-user-msis and the cluster identity.
    let current = existing(
        &[("web", "a", "node-0"), ("api", "b", "node-0")],
        AssignedIdentityState::Unassigned,
    );
    let policy = MachinePolicy::default().with_immutable_client_ids(["CLIENT-A", " ", "client-b"]);
    let plans = plans(&DesiredState::default(), &current, &policy, LONG_AGO);
    assert!(plans[0].change.remove.is_empty());
    assert!(plans[0].deferred.is_empty());
}

#[test]
fn quarantined_identities_are_held_back_and_the_rest_go_ahead() {
    let mut policy = MachinePolicy::default();
    policy.quarantined = ids(&["bad"]);
    let plans = plans(
        &wanted(&[("web", "a", "node-0"), ("api", "bad", "node-0")]),
        &[],
        &policy,
        LONG_AGO,
    );
    assert_eq!(plans[0].change.add, ids(&["a"]));
    assert_eq!(plans[0].held_back, ids(&["bad"]));
}

#[test]
fn identities_compare_ignoring_case() {
    let mut current = existing(&[("web", "a", "node-0")], AssignedIdentityState::Unassigned);
    let shouted =
        podid_azure::resource_id::ResourceId::parse(&uami("a").to_string().to_uppercase()).unwrap();
    current[0].target = Some(crate::IdentityTarget::Machine(shouted.into()));
    let plans = plans(
        &wanted(&[("api", "a", "node-0")]),
        &current,
        &MachinePolicy::default(),
        LONG_AGO,
    );
    assert!(plans[0].change.remove.is_empty());
}

#[test]
fn the_change_goes_through_plan_update_into_one_patch() {
    let current = existing(
        &[("old", "gone", "node-0")],
        AssignedIdentityState::Unassigned,
    );
    let plans = plans(
        &wanted(&[("web", "a", "node-0"), ("api", "b", "node-0")]),
        &current,
        &MachinePolicy::default(),
        LONG_AGO,
    );
    let machine = MachineIdentity {
        identity_type: IdentityType::USER_ASSIGNED,
        user_assigned: [uami("gone"), uami("user-added"), uami("a")]
            .into_iter()
            .map(|id| (id, Default::default()))
            .collect(),
        ..MachineIdentity::default()
    };
    let patches = plan_update(&machine, &plans[0].change);
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].add, [uami("b")]);
    assert_eq!(patches[0].remove, [uami("gone")]);
}
