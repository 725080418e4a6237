//! The ARM side of one machine: read it if needed, send the PATCHes of its change, and isolate
//! identities ARM refuses so the rest of the change goes ahead at once.

use std::time::Instant as StdInstant;

use podid_azure::arm::{
    ArmClient, ArmError, IdentityPatch, MachineIdentity, MachineKind, RateLimits, plan_update,
};

use super::machines::{Failure, Job, Outcome};
use crate::metrics::{ArmOperation, Metrics};

/// ARM's code when the subscription's request budget is spent.
const SUBSCRIPTION_THROTTLED: &str = "SubscriptionRequestsThrottled";

/// Runs `job`. `max_identity_retries` bounds how many times refused identities are dropped
/// and the rest sent again (`--update-user-msi-max-retry`).
pub async fn run(arm: ArmClient, job: Job, max_identity_retries: u32, metrics: Metrics) -> Outcome {
    let kind = job.machine.kind();
    let mut outcome = Outcome {
        machine: job.machine.clone(),
        identity: None,
        failure: None,
        refused: Vec::new(),
        rate_limits: RateLimits::default(),
        updating: false,
    };
    let mut current = match job.known {
        Some(known) => known,
        None => {
            let started = StdInstant::now();
            match arm.get_machine(&job.machine).await {
                Ok(response) => {
                    metrics.arm_ok(ArmOperation::get(kind), started.elapsed());
                    outcome.rate_limits.merge(response.rate_limits);
                    if response.value.is_deleting() {
                        outcome.failure = Some(Failure {
                            message: format!("{} is being deleted", job.machine),
                            retry_after: None,
                            subscription_throttled: false,
                        });
                        return outcome;
                    }
                    if job.wait_for_update && response.value.is_updating() {
                        tracing::info!(
                            machine = %job.machine,
                            state = response.value.provisioning_state.as_deref().unwrap_or_default(),
                            "ARM is still updating the machine; reading it again before its identities count or a PATCH goes out"
                        );
                        outcome.updating = true;
                        return outcome;
                    }
                    response.value.identity
                }
                Err(error) => {
                    metrics.arm_error(ArmOperation::get(kind));
                    return failed(outcome, &error);
                }
            }
        }
    };

    let mut change = job.change;
    let mut retries = 0;
    'plan: loop {
        for patch in plan_update(&current, &change) {
            let started = StdInstant::now();
            match arm.patch_identity(&job.machine, &patch).await {
                Ok(response) => {
                    metrics.arm_ok(ArmOperation::update(kind), started.elapsed());
                    outcome.rate_limits.merge(response.rate_limits);
                    apply(&mut current, &patch);
                }
                Err(error) => {
                    metrics.arm_error(ArmOperation::update(kind));
                    let refused: Vec<_> = error
                        .failing_identities()
                        .into_iter()
                        .filter(|id| change.add.contains(id))
                        .collect();
                    if refused.is_empty() || retries >= max_identity_retries {
                        return failed(outcome, &error);
                    }
                    retries += 1;
                    tracing::warn!(
                        machine = %job.machine, %error, refused = refused.len(),
                        "ARM refused identities; assigning the others without them"
                    );
                    for id in refused {
                        change.add.remove(&id);
                        outcome.refused.push((id, error.to_string()));
                    }
                    // The PATCH failed as a whole: nothing of it was applied.
                    continue 'plan;
                }
            }
        }
        break;
    }
    outcome.identity = Some(current);
    outcome
}

fn failed(mut outcome: Outcome, error: &ArmError) -> Outcome {
    tracing::warn!(machine = %outcome.machine, %error, "ARM call failed");
    if let Some(limits) = error.rate_limits() {
        outcome.rate_limits.merge(limits.clone());
    }
    outcome.failure = Some(Failure {
        message: error.to_string(),
        retry_after: error.retry_after(),
        subscription_throttled: error.code() == Some(SUBSCRIPTION_THROTTLED),
    });
    outcome
}

/// The machine's identity after `patch` succeeded (ARM's merge rules: `{}` adds, `null`
/// removes, a type without user-assigned drops the map).
fn apply(current: &mut MachineIdentity, patch: &IdentityPatch) {
    current.identity_type = patch.identity_type;
    if !patch.identity_type.user_assigned {
        current.user_assigned.clear();
        return;
    }
    for id in &patch.remove {
        current.user_assigned.remove(id);
    }
    for id in &patch.add {
        current.user_assigned.entry(id.clone()).or_default();
    }
}

impl ArmOperation {
    fn get(kind: MachineKind) -> Self {
        match kind {
            MachineKind::VirtualMachine => Self::VmGet,
            MachineKind::VirtualMachineScaleSet => Self::VmssGet,
        }
    }

    fn update(kind: MachineKind) -> Self {
        match kind {
            MachineKind::VirtualMachine => Self::VmUpdate,
            MachineKind::VirtualMachineScaleSet => Self::VmssUpdate,
        }
    }
}

#[cfg(test)]
mod tests {
    use podid_azure::arm::{IdentityChange, IdentityType, UserAssignedIdentity};
    use podid_azure::resource_id::ResourceId;

    use super::*;

    fn uami(name: &str) -> ResourceId {
        ResourceId::user_assigned_identity("sub", "rg", name)
    }

    #[test]
    fn applying_the_planned_patches_gives_the_planned_identities() {
        let mut current = MachineIdentity {
            identity_type: IdentityType::SYSTEM_AND_USER_ASSIGNED,
            user_assigned: [(uami("a"), UserAssignedIdentity::default())].into(),
            ..MachineIdentity::default()
        };
        let change = IdentityChange {
            add: [uami("b")].into(),
            remove: [uami("a")].into(),
        };
        for patch in plan_update(&current.clone(), &change) {
            apply(&mut current, &patch);
        }
        assert_eq!(
            current.user_assigned.keys().cloned().collect::<Vec<_>>(),
            vec![uami("b")]
        );
        let remove_all = IdentityChange {
            add: Default::default(),
            remove: [uami("b")].into(),
        };
        for patch in plan_update(&current.clone(), &remove_all) {
            apply(&mut current, &patch);
        }
        assert!(current.user_assigned.is_empty());
        assert_eq!(current.identity_type, IdentityType::SYSTEM_ASSIGNED);
    }
}
