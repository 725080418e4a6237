//! Existing AzureAssignedIdentities against the desired ones: the Kubernetes writes.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use podid_api::{AssignedIdentityState, AzureAssignedIdentity};

use crate::{AssignedRecord, Assignment, DesiredState, ObjectRef, Progress};

/// The Kubernetes writes that make the AzureAssignedIdentities match the desired state. The
/// Azure side follows from the machine plans; [`crate::settle`] then confirms or removes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssignmentPlan {
    /// New objects (status `Created`), to create: [`Assignment::to_resource`] builds each when
    /// it is written, so a burst of thousands is never all in memory at once.
    pub create: Vec<Assignment>,
    /// Objects whose content changed (status `Created` again), to write over the existing
    /// ones: upstream's "update" pair.
    pub replace: Vec<AzureAssignedIdentity>,
    /// Status changes of objects that are otherwise kept.
    pub status: Vec<StatusChange>,
    /// Objects to delete outright, finalizer included.
    pub delete: Vec<ObjectRef>,
}

impl AssignmentPlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.replace.is_empty()
            && self.status.is_empty()
            && self.delete.is_empty()
    }
}

/// One `status.status` to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub object: ObjectRef,
    pub to: AssignedIdentityState,
}

/// The writes from `current` (as read from the API server) to `desired`:
///
/// - a desired object that does not exist is created;
/// - one that exists with other content ([`crate::Assignment::is_recorded_by`]) is replaced;
/// - one that exists as recorded is kept; if it was `Unassigned` (released, its identity
///   perhaps still on the machine) it goes back to `Created`, to be confirmed again;
/// - an object no longer desired that had its identity confirmed (`Assigned`, or a legacy
///   empty status) becomes `Unassigned`: the node agent stops serving it now, and the object
///   stays as the record that MIC owns the identity until [`crate::settle`] lets it go;
/// - one no longer desired that never had its identity confirmed (`Created`, or a status no
///   MIC writes) is deleted at once: there is nothing of MIC's to remove from the machine
///   (unless its releasing annotation still lists identities: then it becomes `Unassigned`).
///
/// Objects are matched by namespace and name, so switching namespaced matching on or off
/// replaces them through a delete and a create.
pub fn reconcile(
    current: &[impl Borrow<AssignedRecord>],
    desired: &DesiredState,
) -> AssignmentPlan {
    let current: BTreeMap<&ObjectRef, &AssignedRecord> = current
        .iter()
        .map(|record| {
            let record = record.borrow();
            (record.object(), record)
        })
        .collect();
    let mut plan = AssignmentPlan::default();
    for assignment in desired.assignments.values() {
        match current.get(&assignment.object) {
            None => plan.create.push(assignment.clone()),
            Some(existing) if !assignment.is_recorded_by(existing) => {
                plan.replace.push(assignment.replacing(existing));
            }
            Some(existing) => {
                if existing.view().progress == Progress::Unassigned {
                    plan.status.push(StatusChange {
                        object: assignment.object.clone(),
                        to: AssignedIdentityState::Created,
                    });
                }
            }
        }
    }
    let wanted: BTreeSet<&ObjectRef> = desired
        .assignments
        .values()
        .map(|assignment| &assignment.object)
        .collect();
    for (object, existing) in current {
        if wanted.contains(object) {
            continue;
        }
        let view = existing.view();
        if view.progress == Progress::Unassigned {
            continue;
        }
        if view.progress.owns_identity() || !view.releasing.is_empty() {
            plan.status.push(StatusChange {
                object: object.clone(),
                to: AssignedIdentityState::Unassigned,
            });
        } else {
            plan.delete.push(object.clone());
        }
    }
    plan
}
