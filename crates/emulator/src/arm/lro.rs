//! Long-running operations (azure-wire.md §3.5). A PATCH or PUT of a VM or scale set starts one;
//! it completes once the clock passes its deadline (or after a number of status polls), lazily
//! on the next ARM request or [`settle`] call, so no background task is needed and the outcome
//! depends only on the emulator's clock.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::ArmInner;
use super::identity::{self, IdentityChange, Visibility};
use super::path::ComputeKind;
use crate::clock::arm_timestamp;
use crate::state::Shared;
use crate::world::{Compute, SystemAssignedIdentity, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Done once the clock reaches this instant.
    At(SystemTime),
    /// Done on the status poll after this many `InProgress` answers.
    AfterPolls(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Succeeded,
    Failed { code: String, message: String },
}

#[derive(Debug, Clone)]
pub struct AsyncOperation {
    pub id: String,
    pub kind: ComputeKind,
    /// The target's [`crate::armid::ArmId::key`].
    pub target: String,
    pub change: IdentityChange,
    /// The error a fault rule chose for this operation.
    pub failure: Option<(String, String)>,
    pub started: SystemTime,
    pub completion: Completion,
    pub polls: u32,
    pub status: Status,
    pub ended: Option<SystemTime>,
}

impl AsyncOperation {
    fn due_at(&self, now: SystemTime) -> Option<SystemTime> {
        match (&self.status, self.completion) {
            (Status::InProgress, Completion::At(at)) if now >= at => Some(at),
            (Status::InProgress, Completion::AfterPolls(n)) if self.polls >= n => Some(now),
            _ => None,
        }
    }

    /// The operation-status body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "startTime": arm_timestamp(self.started),
            "name": self.id,
            "status": match self.status {
                Status::InProgress => "InProgress",
                Status::Succeeded => "Succeeded",
                Status::Failed { .. } => "Failed",
            },
        });
        if let Some(ended) = self.ended {
            body["endTime"] = json!(arm_timestamp(ended));
        }
        if let Status::Failed { code, message } = &self.status {
            body["error"] = json!({ "code": code, "message": message });
        }
        body
    }
}

pub fn compute_mut<'w>(
    world: &'w mut World,
    kind: ComputeKind,
    key: &str,
) -> Option<&'w mut Compute> {
    match kind {
        ComputeKind::VirtualMachine => world
            .virtual_machines
            .get_mut(key)
            .map(|vm| &mut vm.compute),
        ComputeKind::ScaleSet => world.scale_sets.get_mut(key).map(|ss| &mut ss.compute),
    }
}

/// Applies an accepted change (or the chosen failure) to the target at `when`.
pub fn conclude(
    shared: &Shared,
    world: &mut World,
    kind: ComputeKind,
    target: &str,
    change: &IdentityChange,
    failure: Option<&(String, String)>,
    when: SystemTime,
) -> Status {
    let imds = shared.knobs_with(|k| k.imds.clone());
    let generations: std::collections::BTreeMap<String, u64> = world
        .identities
        .iter()
        .map(|(k, i)| (k.clone(), i.generation))
        .collect();
    let tenant_id = world.tenant_id.clone();
    let Some(compute) = compute_mut(world, kind, target) else {
        return Status::Failed {
            code: "ResourceNotFound".into(),
            message: "The resource was removed while the operation ran.".into(),
        };
    };
    compute.operation_in_flight = None;
    if let Some((code, message)) = failure {
        compute.provisioning_state = "Failed".into();
        return Status::Failed {
            code: code.clone(),
            message: message.clone(),
        };
    }
    identity::apply(
        &mut compute.identity,
        change,
        |key| generations.get(key).copied(),
        Visibility {
            now: when,
            propagation: Duration::from_millis(imds.propagation_delay_ms),
            revocation: Duration::from_millis(imds.revocation_delay_ms),
        },
        || SystemAssignedIdentity {
            principal_id: uuid::Uuid::new_v4().to_string(),
            tenant_id,
        },
    );
    compute.provisioning_state = "Succeeded".into();
    Status::Succeeded
}

/// Completes every operation that is due at `now`. Callers hold the world and ARM locks.
pub fn complete_due(shared: &Shared, world: &mut World, inner: &mut ArmInner, now: SystemTime) {
    for op in inner.operations.values_mut() {
        if let Some(when) = op.due_at(now) {
            finish(shared, world, op, when);
        }
    }
}

/// Ends one operation at `when`, whatever its deadline.
pub fn finish(shared: &Shared, world: &mut World, op: &mut AsyncOperation, when: SystemTime) {
    op.status = conclude(
        shared,
        world,
        op.kind,
        &op.target,
        &op.change,
        op.failure.as_ref(),
        when,
    );
    op.ended = Some(when);
}

/// Completes the operations that are due. IMDS calls this before reading a machine's
/// identities, so a finished assignment becomes visible even if nobody polls ARM.
pub fn settle(shared: &Shared) {
    let now = shared.clock.now();
    let any_due = shared
        .arm
        .lock()
        .operations
        .values()
        .any(|op| op.due_at(now).is_some());
    if any_due {
        let mut world = shared.world_mut();
        complete_due(shared, &mut world, &mut shared.arm.lock(), now);
    }
}

/// A status poll: counts it, completes the operation if it is due, and returns its body.
pub fn poll(shared: &Shared, id: &str) -> Option<Value> {
    let now = shared.clock.now();
    let mut world = shared.world_mut();
    let mut inner = shared.arm.lock();
    let op = inner
        .operations
        .values_mut()
        .find(|op| op.id.eq_ignore_ascii_case(id))?;
    if let Some(when) = op.due_at(now) {
        finish(shared, &mut world, op, when);
    } else if op.status == Status::InProgress {
        op.polls += 1;
    }
    Some(op.body())
}
