//! Properties that hold for any cluster: random small worlds of pods, bindings, identities
//! and nodes, with names from tiny pools so that matches and collisions are common.

use std::collections::BTreeSet;
use std::time::Duration;

use podid_api::{AssignedIdentityState, AzureAssignedIdentityStatus, AzureIdentity};
use proptest::prelude::*;

use super::fixtures::*;
use crate::{
    AssignedView, MachinePolicy, MatchOptions, PodInfo, PodPhase, desired, plan_machines, reconcile,
};

const NAMESPACES: [&str; 2] = ["ns1", "ns2"];
const SELECTORS: [&str; 3] = ["s1", "s2", "s3"];
const IDENTITIES: [&str; 3] = ["i1", "i2", "i3"];
const NODES: [&str; 4] = ["node-0", "vmss-pool-0", "vmss-pool-1", "missing"];
const KNOWN_NODES: [&str; 3] = ["node-0", "vmss-pool-0", "vmss-pool-1"];

#[derive(Debug, Clone)]
struct World {
    pods: Vec<PodInfo>,
    bindings: Vec<podid_api::AzureIdentityBinding>,
    identities: Vec<AzureIdentity>,
    options: MatchOptions,
}

fn world() -> impl Strategy<Value = World> {
    let pod = (
        0..2usize,
        0..6usize,
        0..3usize,
        0..4usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ns, name, selector, node, terminal, labelled)| {
            let mut pod = pod(
                NAMESPACES[ns],
                &format!("p{name}"),
                SELECTORS[selector],
                NODES[node],
            );
            if terminal {
                pod.phase = PodPhase::Succeeded;
            }
            if !labelled {
                pod.label = None;
            }
            pod
        });
    let binding =
        (0..2usize, 0..3usize, 0..3usize, 0..3usize).prop_map(|(ns, name, identity, selector)| {
            binding(
                NAMESPACES[ns],
                &format!("b{name}"),
                IDENTITIES[identity],
                SELECTORS[selector],
            )
        });
    let identity = (0..2usize, 0..3usize, 0..4usize).prop_map(|(ns, name, kind)| {
        let base = identity(NAMESPACES[ns], IDENTITIES[name]);
        match kind {
            0 => base,
            1 => namespaced(base),
            2 => service_principal(NAMESPACES[ns], IDENTITIES[name]),
            _ => {
                let mut broken = base;
                broken.spec.resource_id = Some("broken".into());
                broken
            }
        }
    });
    (
        proptest::collection::vec(pod, 0..8),
        proptest::collection::vec(binding, 0..6),
        proptest::collection::vec(identity, 0..6),
        any::<bool>(),
    )
        .prop_map(|(pods, bindings, identities, force_namespaced)| World {
            pods: unique_by(pods, |p| p.object_ref()),
            bindings: unique_by(bindings, crate::ObjectRef::of),
            identities: unique_by(identities, crate::ObjectRef::of),
            options: MatchOptions { force_namespaced },
        })
}

/// The API server holds one object per namespace and name.
fn unique_by<T, K: Ord>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = BTreeSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(key(item)))
        .collect()
}

fn state_of(world: &World) -> crate::DesiredState {
    desired(
        &world.pods,
        &world.bindings,
        &world.identities,
        &nodes(&KNOWN_NODES),
        world.options,
    )
}

proptest! {
    #[test]
    fn every_assignment_has_a_matching_binding_and_identity(world in world()) {
        for assignment in state_of(&world).assignments.values() {
            let pod = world.pods.iter().find(|p| p.object_ref() == assignment.pod).expect("its pod exists");
            prop_assert!(!pod.phase.is_terminal());
            prop_assert!(KNOWN_NODES.contains(&assignment.node.as_str()));
            prop_assert_eq!(pod.node(), Some(assignment.node.as_str()));
            prop_assert_eq!(pod.selector(), assignment.binding.spec.selector.as_deref());
            prop_assert!(world.bindings.contains(&assignment.binding));
            prop_assert!(world.identities.contains(&assignment.identity));
            prop_assert_eq!(
                crate::ObjectRef::of(assignment.identity.as_ref()),
                crate::ObjectRef::new(
                    crate::ObjectRef::of(assignment.binding.as_ref()).namespace,
                    assignment.binding.spec.azure_identity.clone().unwrap_or_default()
                )
            );
            if world.options.force_namespaced || podid_api::is_namespaced(&assignment.identity) {
                prop_assert_eq!(&crate::ObjectRef::of(assignment.binding.as_ref()).namespace, &pod.namespace);
            }
        }
    }

    #[test]
    fn reconciling_the_recorded_desired_state_writes_nothing(world in world()) {
        let state = state_of(&world);
        let current: Vec<_> = state
            .assignments
            .values()
            .map(|a| {
                let mut object = a.to_resource();
                object.status = Some(AzureAssignedIdentityStatus {
                    status: Some(AssignedIdentityState::Assigned),
                    available_replicas: Some(1),
                });
                crate::AssignedRecord::from(object)
            })
            .collect();
        prop_assert!(reconcile(&current, &state).is_empty());
        // And from nothing, exactly the desired objects are created.
        let from_scratch = reconcile(&[] as &[crate::AssignedRecord], &state);
        prop_assert_eq!(from_scratch.create.len(), state.assignments.len());
    }

    #[test]
    fn objects_written_by_upstream_are_adopted_without_writes(world in world()) {
        let state = state_of(&world);
        let current: Vec<_> = state
            .assignments
            .values()
            .map(|a| {
                let pod = world.pods.iter().find(|p| p.object_ref() == a.pod).unwrap();
                crate::AssignedRecord::from(upstream_assigned(
                    pod,
                    &a.identity,
                    &a.binding,
                    &a.object.namespace,
                    "Assigned",
                ))
            })
            .collect();
        let plan = reconcile(&current, &state);
        prop_assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn removals_spare_needed_immutable_and_foreign_identities(
        before in world(),
        after in world(),
        statuses in proptest::collection::vec(0..4usize, 16),
        elapsed in 0..60u64,
        immutable in proptest::collection::btree_set(0..3usize, 0..2),
    ) {
        let index = nodes(&KNOWN_NODES);
        let previous = state_of(&before);
        let current: Vec<AssignedView> = previous
            .assignments
            .values()
            .zip(statuses.iter().cycle())
            .map(|(a, status)| {
                let mut object = a.to_resource();
                object.status = Some(AzureAssignedIdentityStatus {
                    status: Some(match status {
                        0 => AssignedIdentityState::Created,
                        1 => AssignedIdentityState::Assigned,
                        2 => AssignedIdentityState::Unassigned,
                        _ => AssignedIdentityState::Other(String::new()),
                    }),
                    available_replicas: Some(1),
                });
                AssignedView::of(&object)
            })
            .collect();
        let policy = MachinePolicy::default()
            .with_immutable_client_ids(immutable.iter().map(|i| IDENTITIES[*i]).map(|name| format!("CLIENT-{name}")).collect::<Vec<_>>().iter().map(String::as_str));
        let wanted = state_of(&after);
        let plans = plan_machines(&wanted, &current, &index, &policy, |_, _| Some(Duration::from_secs(elapsed)));
        for plan in &plans {
            let owned: BTreeSet<_> = current
                .iter()
                .filter_map(AssignedView::owned)
                .filter(|held| index.machine(&held.node) == Some(&plan.machine))
                .map(|held| held.resource_id)
                .collect();
            for id in plan.change.remove.iter().chain(plan.deferred.keys()) {
                prop_assert!(!plan.needed.contains(id), "needed {id} removed");
                prop_assert!(owned.contains(id), "foreign {id} removed");
                prop_assert!(!immutable.iter().any(|i| uami(IDENTITIES[*i]) == *id), "immutable {id} removed");
                prop_assert!(plan.change.remove.contains(id) != plan.deferred.contains_key(id));
            }
            if elapsed < 30 {
                prop_assert!(plan.change.remove.is_empty());
            }
            let needed_here: BTreeSet<_> = wanted
                .assignments
                .values()
                .filter(|a| index.machine(&a.node) == Some(&plan.machine))
                .filter_map(|a| a.target.resource_id().cloned())
                .collect();
            prop_assert_eq!(&plan.needed, &needed_here);
            prop_assert_eq!(&plan.change.add, &needed_here);
        }
    }
}
