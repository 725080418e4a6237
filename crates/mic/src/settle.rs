//! After a machine's identities are known (the PATCHes done, or a GET), which objects are
//! confirmed, which can go, and which wait.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};

use podid_azure::arm::MachineId;
use podid_azure::resource_id::ResourceId;

use crate::releasing::{Releasing, format_releasing};
use crate::{AssignedView, IdentityTarget, MachinePlan, NodeIndex, ObjectRef, Progress};

/// What to do with one existing AzureAssignedIdentity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Write status `Assigned`: the identity is on the machine, or needs none.
    Assign(ObjectRef),
    /// Delete it (finalizer included): nothing of MIC's is left to remove from a machine.
    Delete(ObjectRef),
    /// Rewrite the releasing annotation with what is left (`None`: remove it).
    Released {
        object: ObjectRef,
        remaining: Option<String>,
    },
    /// Nothing to write yet.
    Wait { object: ObjectRef, reason: Waiting },
}

/// Why an object waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Its identity is not on the machine (not added yet, quarantined, or refused by ARM): the
    /// controller reports it on the binding, as upstream's "binding apply error".
    NotOnMachine,
    /// Its node has no machine, or its embedded identity is unusable.
    NoMachine,
    /// The machine's identities are not known (its GET or PATCH failed).
    MachineUnknown,
    /// MIC is still to take the identity off the machine (grace period, or a failed PATCH).
    Removing,
}

/// Settles `current` (the objects after the plan's Kubernetes writes) against `observed`, the
/// user-assigned identities each machine has now, `leaving`, those of them a running PATCH is
/// taking off, and the machine `plans`:
///
/// - `Created` (and legacy or unrecognised statuses, when desired): `Assigned` when the identity
///   is on the machine and staying there, or needs none (service principals), else it waits, as
///   upstream left it `Created`. An identity needed again while its removal runs (a pod back
///   after the grace period) waits for that removal and the PATCH that adds it again: `Assigned`
///   earlier, its pod would ask IMDS for an identity on its way off;
/// - `Unassigned`: deleted once none of the identities it holds is still being released, i.e.
///   each is off the machine or not MIC's to remove (needed by another assignment, immutable).
///   An object whose node is gone has no machine to release from and is deleted, as upstream
///   did for nodes not found;
/// - releasing annotations shrink as their identities are released.
pub fn settle(
    current: &[impl Borrow<AssignedView>],
    nodes: &NodeIndex,
    plans: &[MachinePlan],
    observed: &HashMap<MachineId, BTreeSet<ResourceId>>,
    leaving: &HashMap<MachineId, BTreeSet<ResourceId>>,
) -> Vec<Settlement> {
    let plans: HashMap<&MachineId, &MachinePlan> =
        plans.iter().map(|plan| (&plan.machine, plan)).collect();
    // `None` when the machine's state is unknown, so nothing can be concluded.
    let still_releasing = |held: &Releasing| -> Option<bool> {
        let Some(machine) = nodes.machine(&held.node) else {
            return Some(false);
        };
        let present = observed.get(machine)?.contains(&held.resource_id);
        Some(
            present
                && plans
                    .get(machine)
                    .is_some_and(|plan| plan.is_releasing(&held.resource_id)),
        )
    };

    let mut settlements = Vec::new();
    for view in current {
        let view = view.borrow();
        // Cloned only for a settlement: most objects (`Assigned`) get none.
        let object = || view.object.clone();
        let wait = |reason| Settlement::Wait {
            object: object(),
            reason,
        };
        if view.progress == Progress::Unassigned {
            let held: Vec<Releasing> = view
                .owned()
                .into_iter()
                .chain(view.releasing.iter().cloned())
                .collect();
            let states: Vec<Option<bool>> = held.iter().map(still_releasing).collect();
            settlements.push(if states.contains(&Some(true)) {
                wait(Waiting::Removing)
            } else if states.contains(&None) {
                wait(Waiting::MachineUnknown)
            } else {
                Settlement::Delete(object())
            });
            continue;
        }

        let remaining: Vec<Releasing> = view
            .releasing
            .iter()
            .filter(|held| still_releasing(held) != Some(false))
            .cloned()
            .collect();
        if remaining.len() != view.releasing.len() {
            settlements.push(Settlement::Released {
                object: object(),
                remaining: format_releasing(&remaining),
            });
        }
        if view.progress == Progress::Assigned {
            continue;
        }
        let node_machine = view.node.as_deref().and_then(|node| nodes.machine(node));
        settlements.push(match (&view.target, node_machine) {
            (Some(IdentityTarget::NoMachine), _) => Settlement::Assign(object()),
            (Some(IdentityTarget::Machine(id)), Some(machine)) => match observed.get(machine) {
                Some(present)
                    if present.contains(id.as_ref())
                        && !leaving
                            .get(machine)
                            .is_some_and(|leaving| leaving.contains(id.as_ref())) =>
                {
                    Settlement::Assign(object())
                }
                Some(_) => wait(Waiting::NotOnMachine),
                None => wait(Waiting::MachineUnknown),
            },
            (None, _) | (Some(IdentityTarget::Machine(_)), None) => wait(Waiting::NoMachine),
        });
    }
    settlements
}
