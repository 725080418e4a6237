//! Long-running operations (azure-wire.md §3.5). A PATCH or PUT of a VM or scale set starts one;
//! it completes once the clock passes its deadline (or after a number of status polls), lazily
//! on the next ARM request or [`settle`] call, so no background task is needed and the outcome
//! depends only on the emulator's clock. Finished operations stay pollable for
//! `operationRetentionSecs`, then their status URL answers 404.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

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
    /// The subscription whose operations URL names it; other subscriptions do not find it.
    pub subscription: String,
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
    /// Where the operation sits in [`Operations`]' due queue, once it has a place there.
    pub queued: Option<SystemTime>,
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

/// Every long-running operation ARM remembers. Running ones are also indexed by when they
/// become due, so completing due operations touches only those; finished ones by when they
/// ended, so forgetting them after `operationRetentionSecs` touches only those. A PATCH
/// benchmark making tens of thousands of operations therefore neither slows down nor grows
/// without bound.
#[derive(Debug, Default)]
pub struct Operations {
    /// Keyed by lower-case operation ID.
    all: HashMap<String, AsyncOperation>,
    /// Running operations by the instant they became or become due.
    due: BTreeSet<(SystemTime, String)>,
    /// Finished operations by the instant they ended.
    ended: BTreeSet<(SystemTime, String)>,
}

impl Operations {
    /// Registers a new running operation.
    pub fn start(&mut self, mut op: AsyncOperation) {
        let key = op.id.to_ascii_lowercase();
        op.queued = match op.completion {
            Completion::At(at) => Some(at),
            Completion::AfterPolls(0) => Some(op.started),
            Completion::AfterPolls(_) => None,
        };
        if let Some(at) = op.queued {
            self.due.insert((at, key.clone()));
        }
        self.all.insert(key, op);
    }

    /// How many operations are remembered, running or finished.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether any running operation is due at `now`.
    pub fn any_due(&self, now: SystemTime) -> bool {
        self.due.first().is_some_and(|(at, _)| *at <= now)
    }

    /// Completes every operation that is due at `now`, each dated at its deadline; returns how
    /// many it completed. Callers hold the world and ARM locks.
    pub fn complete_due(&mut self, shared: &Shared, world: &mut World, now: SystemTime) -> usize {
        let mut completed = 0;
        while let Some((at, key)) = self.due.first().cloned() {
            if at > now {
                break;
            }
            self.due.pop_first();
            if let Some(when) = self.all.get(&key).and_then(|op| op.due_at(now)) {
                self.finish(shared, world, &key, when);
                completed += 1;
            }
        }
        completed
    }

    /// Ends one running operation at `when`, whatever its deadline (a no-op for unknown or
    /// finished ones).
    pub fn finish(&mut self, shared: &Shared, world: &mut World, id: &str, when: SystemTime) {
        let key = id.to_ascii_lowercase();
        let Some(op) = self.all.get_mut(&key) else {
            return;
        };
        if op.status != Status::InProgress {
            return;
        }
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
        // Only the status is polled from now on; the change can be large (150 identities).
        op.change = IdentityChange::default();
        if let Some(at) = op.queued.take() {
            self.due.remove(&(at, key.clone()));
        }
        self.ended.insert((when, key));
    }

    /// A status poll of operation `id` in `subscription`: counts it, completes the operation if
    /// it is due, and returns its body. `None` when the subscription has no such operation.
    pub fn poll(
        &mut self,
        shared: &Shared,
        world: &mut World,
        subscription: &str,
        id: &str,
        now: SystemTime,
    ) -> Option<Value> {
        let key = id.to_ascii_lowercase();
        let op = self.all.get_mut(&key)?;
        if !op.subscription.eq_ignore_ascii_case(subscription) {
            return None;
        }
        if let Some(when) = op.due_at(now) {
            self.finish(shared, world, &key, when);
        } else if op.status == Status::InProgress {
            op.polls += 1;
            if let (Completion::AfterPolls(n), None) = (op.completion, op.queued)
                && op.polls >= n
            {
                op.queued = Some(now);
                self.due.insert((now, key.clone()));
            }
        }
        self.all.get(&key).map(AsyncOperation::body)
    }

    /// Forgets operations that ended at least `retention` before `now`; returns how many.
    pub fn prune(&mut self, now: SystemTime, retention: Duration) -> usize {
        let mut pruned = 0;
        while let Some((ended, key)) = self.ended.first().cloned() {
            if ended + retention > now {
                break;
            }
            self.ended.pop_first();
            self.all.remove(&key);
            pruned += 1;
        }
        pruned
    }
}

/// Completes the operations that are due and forgets old finished ones. Every ARM request
/// and IMDS token request calls this first, so a finished assignment becomes visible even if
/// nobody polls ARM.
pub fn settle(shared: &Shared) {
    let now = shared.clock.now();
    let retention = Duration::from_secs(shared.knobs_with(|k| k.arm.operation_retention_secs));
    let any_due = shared.arm.lock().operations.any_due(now);
    if any_due {
        let mut world = shared.world_mut();
        shared
            .arm
            .lock()
            .operations
            .complete_due(shared, &mut world, now);
    }
    shared.arm.lock().operations.prune(now, retention);
}

/// A status poll (see [`Operations::poll`]).
pub fn poll(shared: &Shared, subscription: &str, id: &str) -> Option<Value> {
    let now = shared.clock.now();
    let mut world = shared.world_mut();
    shared
        .arm
        .lock()
        .operations
        .poll(shared, &mut world, subscription, id, now)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const SUB: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
    const OTHER_SUB: &str = "0b7b4a1e-0000-4c5e-9a7b-3d2e1f0a9b8c";

    fn shared() -> Arc<Shared> {
        crate::state::for_tests(&format!(
            "tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n\
             subscriptions:\n  - id: {SUB}\n    resourceGroups: [{{name: rg}}]\n  - id: {OTHER_SUB}\n\
             virtualMachines:\n  - {{resourceGroup: rg, name: vm}}\n"
        ))
    }

    fn vm_key(shared: &Shared) -> String {
        shared
            .world()
            .virtual_machines
            .keys()
            .next()
            .cloned()
            .expect("a VM")
    }

    fn operation(
        shared: &Shared,
        id: &str,
        started: SystemTime,
        completion: Completion,
    ) -> AsyncOperation {
        AsyncOperation {
            id: id.to_string(),
            subscription: SUB.to_string(),
            kind: ComputeKind::VirtualMachine,
            target: vm_key(shared),
            change: IdentityChange::default(),
            failure: None,
            started,
            completion,
            polls: 0,
            status: Status::InProgress,
            ended: None,
            queued: None,
        }
    }

    fn status(ops: &mut Operations, shared: &Shared, id: &str, now: SystemTime) -> Value {
        ops.poll(shared, &mut shared.world_mut(), SUB, id, now)
            .map_or(Value::Null, |body| body["status"].clone())
    }

    #[test]
    fn settling_completes_only_the_due_operations() {
        let shared = shared();
        let t0 = shared.clock.now();
        let mut ops = Operations::default();
        for i in 0..10_000u64 {
            let deadline = t0 + Duration::from_secs(i + 1);
            ops.start(operation(
                &shared,
                &format!("op{i}"),
                t0,
                Completion::At(deadline),
            ));
        }
        let now = t0 + Duration::from_millis(3_500);
        assert!(ops.any_due(now));
        let completed = ops.complete_due(&shared, &mut shared.world_mut(), now);
        assert_eq!(
            completed, 3,
            "ops 0, 1 and 2 are due; nothing else is looked at"
        );
        assert!(!ops.any_due(now));
        assert_eq!(ops.complete_due(&shared, &mut shared.world_mut(), now), 0);
        assert_eq!(ops.len(), 10_000);
        assert_eq!(status(&mut ops, &shared, "OP2", now), "Succeeded");
        assert_eq!(status(&mut ops, &shared, "op3", now), "InProgress");
    }

    #[test]
    fn a_completion_is_dated_at_its_deadline() {
        let shared = shared();
        let t0 = shared.clock.now();
        let mut ops = Operations::default();
        let deadline = t0 + Duration::from_secs(5);
        ops.start(operation(&shared, "op", t0, Completion::At(deadline)));
        let later = t0 + Duration::from_secs(60);
        ops.complete_due(&shared, &mut shared.world_mut(), later);
        let body = ops
            .poll(&shared, &mut shared.world_mut(), SUB, "op", later)
            .expect("known");
        assert_eq!(body["endTime"], crate::clock::arm_timestamp(deadline));
    }

    #[test]
    fn poll_counted_operations_become_due_after_their_polls() {
        let shared = shared();
        let t0 = shared.clock.now();
        let mut ops = Operations::default();
        ops.start(operation(&shared, "op", t0, Completion::AfterPolls(2)));
        assert!(!ops.any_due(t0));
        assert_eq!(status(&mut ops, &shared, "op", t0), "InProgress");
        assert!(!ops.any_due(t0));
        assert_eq!(status(&mut ops, &shared, "op", t0), "InProgress");
        // Due now: settling completes it even if nobody polls again.
        assert!(ops.any_due(t0));
        assert_eq!(ops.complete_due(&shared, &mut shared.world_mut(), t0), 1);
        assert_eq!(status(&mut ops, &shared, "op", t0), "Succeeded");
        ops.start(operation(&shared, "zero", t0, Completion::AfterPolls(0)));
        assert!(ops.any_due(t0));
    }

    #[test]
    fn an_operation_is_found_only_in_its_own_subscription() {
        let shared = shared();
        let t0 = shared.clock.now();
        let mut ops = Operations::default();
        ops.start(operation(&shared, "op", t0, Completion::AfterPolls(5)));
        let mut world = shared.world_mut();
        assert!(ops.poll(&shared, &mut world, OTHER_SUB, "op", t0).is_none());
        assert!(
            ops.poll(&shared, &mut world, &SUB.to_uppercase(), "op", t0)
                .is_some()
        );
    }

    #[test]
    fn finished_operations_are_forgotten_after_the_retention() {
        let shared = shared();
        let t0 = shared.clock.now();
        let mut ops = Operations::default();
        let retention = Duration::from_secs(3600);
        ops.start(operation(&shared, "early", t0, Completion::At(t0)));
        let late_deadline = t0 + Duration::from_secs(10);
        ops.start(operation(
            &shared,
            "late",
            t0,
            Completion::At(late_deadline),
        ));
        ops.start(operation(&shared, "running", t0, Completion::AfterPolls(9)));
        ops.complete_due(&shared, &mut shared.world_mut(), late_deadline);

        assert_eq!(
            ops.prune(t0 + retention - Duration::from_millis(1), retention),
            0
        );
        assert_eq!(ops.prune(t0 + retention, retention), 1);
        let now = t0 + retention;
        assert_eq!(status(&mut ops, &shared, "early", now), Value::Null);
        assert_eq!(status(&mut ops, &shared, "late", now), "Succeeded");
        assert_eq!(ops.prune(late_deadline + retention, retention), 1);
        // A running operation is never pruned, however old.
        assert_eq!(ops.prune(t0 + 100 * retention, retention), 0);
        assert_eq!(ops.len(), 1);
        assert_eq!(status(&mut ops, &shared, "running", now), "InProgress");
    }

    #[test]
    fn finishing_early_takes_an_operation_out_of_the_due_queue() {
        let shared = shared();
        let t0 = shared.clock.now();
        let mut ops = Operations::default();
        let deadline = t0 + Duration::from_secs(30);
        ops.start(operation(&shared, "op", t0, Completion::At(deadline)));
        ops.finish(&shared, &mut shared.world_mut(), "OP", t0);
        assert!(!ops.any_due(deadline));
        assert_eq!(
            ops.complete_due(&shared, &mut shared.world_mut(), deadline),
            0
        );
        assert_eq!(status(&mut ops, &shared, "op", deadline), "Succeeded");
    }
}
