//! Per VM or scale set: which user-assigned identities MIC wants on it, and which it takes
//! off. The result is an [`IdentityChange`] for `podid_azure::arm::plan_update`, which turns
//! every pending add and remove of the machine into the fewest PATCHes.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use podid_azure::arm::{IdentityChange, MachineId};
use podid_azure::resource_id::ResourceId;

use crate::{AssignedView, DesiredState, NodeIndex};

/// How long an identity stays on a machine after it was last needed there, unless set.
pub const DEFAULT_REMOVAL_GRACE: Duration = Duration::from_secs(30);

/// The rules for adding and removing identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePolicy {
    /// An identity no longer needed on a machine is removed only this long after it was last
    /// needed, so a pod that is replaced or restarted does not cause a remove and an add.
    pub removal_grace: Duration,
    /// Client IDs, lowercased, whose identities are never removed: `--immutable-user-msis` and
    /// the cluster (kubelet) identity.
    immutable_client_ids: BTreeSet<String>,
    /// Identities not to add for now (ARM refused them): the others go ahead without them.
    pub quarantined: BTreeSet<ResourceId>,
}

impl Default for MachinePolicy {
    fn default() -> Self {
        Self {
            removal_grace: DEFAULT_REMOVAL_GRACE,
            immutable_client_ids: BTreeSet::new(),
            quarantined: BTreeSet::new(),
        }
    }
}

impl MachinePolicy {
    /// Never removes the identities with these client IDs (`--immutable-user-msis` entries
    /// and azure.json's `userAssignedIdentityID`). **deviation:** compared ignoring case;
    /// upstream lowercased the flag but not the cluster identity nor `spec.clientID`, so an
    /// upper-case client ID was removed after all.
    pub fn with_immutable_client_ids<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.immutable_client_ids.extend(
            ids.into_iter()
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_ascii_lowercase),
        );
        self
    }

    pub fn is_immutable(&self, client_id: &str) -> bool {
        self.immutable_client_ids
            .contains(&client_id.to_ascii_lowercase())
    }
}

/// What MIC wants done to one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePlan {
    pub machine: MachineId,
    /// Identities a desired assignment on one of the machine's nodes needs.
    pub needed: BTreeSet<ResourceId>,
    /// `add`: every needed identity not quarantined (plan_update drops those already there);
    /// `remove`: identities MIC owns there, needed by none, not immutable, past the grace.
    pub change: IdentityChange,
    /// Removable identities still within the grace period, with the time left.
    pub deferred: BTreeMap<ResourceId, Duration>,
    /// Needed identities left out because they are quarantined.
    pub held_back: BTreeSet<ResourceId>,
}

impl MachinePlan {
    /// Whether MIC still means to take `id` off the machine (now or after the grace).
    pub fn is_releasing(&self, id: &ResourceId) -> bool {
        self.change.remove.contains(id) || self.deferred.contains_key(id)
    }
}

#[derive(Default)]
struct Tally {
    needed: BTreeSet<ResourceId>,
    owned: BTreeSet<ResourceId>,
}

/// The plan of every machine that has an identity needed or owned by MIC, ordered by machine.
///
/// - needed: type-0 identities of desired assignments, per machine of their node (all nodes
///   of a scale set count for it);
/// - owned: identities confirmed by existing objects (`Assigned`, `Unassigned`, legacy empty
///   status) and those in releasing annotations. Identities MIC never confirmed, e.g. added by
///   a user, are not owned and never removed;
/// - removed: owned, not needed, no client ID seen for it immutable, and not needed for at
///   least the grace period. `unneeded_for(machine, id)` is how long `id` has not been needed
///   on that machine, or `None` when it was needed at the last cycle or never seen (after a
///   restart): the grace then starts now.
///
/// Resource IDs compare ignoring case, as ARM does. Assignments on nodes without a machine
/// have no plan.
pub fn plan_machines(
    desired: &DesiredState,
    current: &[impl Borrow<AssignedView>],
    nodes: &NodeIndex,
    policy: &MachinePolicy,
    unneeded_for: impl Fn(&MachineId, &ResourceId) -> Option<Duration>,
) -> Vec<MachinePlan> {
    let mut machines: BTreeMap<ResourceId, (MachineId, Tally)> = BTreeMap::new();
    let mut client_ids: BTreeMap<&ResourceId, Vec<&str>> = BTreeMap::new();

    for assignment in desired.assignments.values() {
        if let Some(id) = assignment.target.resource_id() {
            if let Some(tally) = tally_of(&mut machines, nodes, &assignment.node) {
                tally.needed.insert(id.clone());
            }
            client_ids
                .entry(id)
                .or_default()
                .extend(assignment.client_id());
        }
    }
    for view in current {
        let view = view.borrow();
        for held in view
            .owned()
            .into_iter()
            .chain(view.releasing.iter().cloned())
        {
            if let Some(tally) = tally_of(&mut machines, nodes, &held.node) {
                tally.owned.insert(held.resource_id);
            }
        }
        if let Some(id) = view.target.as_ref().and_then(|t| t.resource_id()) {
            client_ids
                .entry(id)
                .or_default()
                .extend(view.client_id.as_deref());
        }
    }
    let immutable = |id: &ResourceId| {
        client_ids
            .get(id)
            .is_some_and(|ids| ids.iter().any(|client_id| policy.is_immutable(client_id)))
    };

    machines
        .into_values()
        .map(|(machine, Tally { needed, owned })| {
            let (held_back, add) = needed
                .iter()
                .cloned()
                .partition(|id| policy.quarantined.contains(id));
            let mut remove = BTreeSet::new();
            let mut deferred = BTreeMap::new();
            for id in owned.difference(&needed).filter(|id| !immutable(id)) {
                let elapsed = unneeded_for(&machine, id).unwrap_or_default();
                match policy.removal_grace.checked_sub(elapsed) {
                    Some(left) if !left.is_zero() => {
                        deferred.insert(id.clone(), left);
                    }
                    _ => {
                        remove.insert(id.clone());
                    }
                }
            }
            MachinePlan {
                machine,
                needed,
                change: IdentityChange { add, remove },
                deferred,
                held_back,
            }
        })
        .collect()
}

/// The tally of the machine of `node`, if it has one.
fn tally_of<'a>(
    machines: &'a mut BTreeMap<ResourceId, (MachineId, Tally)>,
    nodes: &NodeIndex,
    node: &str,
) -> Option<&'a mut Tally> {
    let machine = nodes.machine(node)?;
    Some(
        &mut machines
            .entry(machine.resource_id().clone())
            .or_insert_with(|| (machine.clone(), Tally::default()))
            .1,
    )
}
