//! VM and scale-set handlers: GET, PATCH/PUT of the identity (azure-wire.md §3.3–3.5), the VM
//! and scale-set lists of a resource group, scale-set instances, and operation status.

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{self, ArmError};
use super::identity::{self, IdentityRequest, IdentityType, Mode, Refusal};
use super::lro::{self, AsyncOperation, Completion, Status};
use super::path::ComputeKind;
use super::throttle::{self, PolicyKnob, Window};
use super::{ArmInner, Call, LroMode, Outcome};
use crate::armid::{self, ArmId};
use crate::faults::FaultRequest;
use crate::world::{Compute, IdentitySet, ScaleSet, VirtualMachine, World};

fn compute_ref<'w>(world: &'w World, kind: ComputeKind, key: &str) -> Option<&'w Compute> {
    match kind {
        ComputeKind::VirtualMachine => world.virtual_machines.get(key).map(|vm| &vm.compute),
        ComputeKind::ScaleSet => world.scale_sets.get(key).map(|ss| &ss.compute),
    }
}

/// Charges one request to each policy, sets `x-ms-ratelimit-remaining-resource`, and answers
/// the first full policy's 429.
fn charge(
    call: &mut Call<'_>,
    inner: &mut ArmInner,
    subscription: &str,
    location: &str,
    policies: &[PolicyKnob],
) -> Result<(), ArmError> {
    let mut entries = Vec::new();
    let mut exceeded = None;
    for policy in policies {
        let key = (
            subscription.to_ascii_lowercase(),
            location.to_ascii_lowercase(),
            policy.name.clone(),
        );
        let window = inner.throttle.windows.entry(key).or_insert(Window {
            start: call.now,
            count: 0,
        });
        let outcome = throttle::charge(window, policy, call.now);
        entries.push(format!(
            "Microsoft.Compute/{};{}",
            policy.name, outcome.remaining
        ));
        exceeded = exceeded.or(outcome.exceeded);
    }
    if !entries.is_empty() {
        call.headers
            .push(("x-ms-ratelimit-remaining-resource", entries.join(",")));
        call.headers.push(("x-ms-request-charge", "1".into()));
    }
    exceeded.map_or(Ok(()), Err)
}

/// The `identity` object as ARM shows it; `None` when nothing is assigned.
pub fn render_identity(set: &IdentitySet, world: &World) -> Option<Value> {
    let kind = IdentityType::of(set.system_assigned.is_some(), !set.user_assigned.is_empty());
    if kind == IdentityType::None {
        return None;
    }
    let mut out = json!({ "type": kind.canonical() });
    if let Some(sa) = &set.system_assigned {
        out["principalId"] = json!(sa.principal_id);
        out["tenantId"] = json!(sa.tenant_id);
    }
    if !set.user_assigned.is_empty() {
        let map: serde_json::Map<String, Value> = set
            .user_assigned
            .iter()
            .map(|(key, assigned)| {
                let live = world
                    .identities
                    .get(key)
                    .filter(|uami| uami.generation == assigned.generation);
                let value = match live {
                    Some(uami) => {
                        json!({"principalId": uami.principal_id, "clientId": uami.client_id})
                    }
                    None => json!({"principalId": null, "clientId": null}),
                };
                (assigned.id.to_string(), value)
            })
            .collect();
        out["userAssignedIdentities"] = Value::Object(map);
    }
    Some(out)
}

fn with_identity(mut body: Value, compute: &Compute, world: &World) -> Value {
    if let Some(identity) = render_identity(&compute.identity, world) {
        body["identity"] = identity;
    }
    body
}

pub fn render_vm(vm: &VirtualMachine, world: &World) -> Value {
    let c = &vm.compute;
    let body = json!({
        "name": c.name,
        "id": c.id.as_str(),
        "type": armid::VIRTUAL_MACHINE_TYPE,
        "location": c.location,
        "properties": {
            "vmId": c.unique_id,
            "hardwareProfile": {"vmSize": c.vm_size},
            "osProfile": {"computerName": vm.machine.computer_name},
            "provisioningState": c.provisioning_state,
        },
    });
    with_identity(body, c, world)
}

pub fn render_scale_set(ss: &ScaleSet, world: &World) -> Value {
    let c = &ss.compute;
    let body = json!({
        "name": c.name,
        "id": c.id.as_str(),
        "type": armid::SCALE_SET_TYPE,
        "location": c.location,
        "sku": {"name": c.vm_size, "tier": "Standard", "capacity": ss.instances.len()},
        "properties": {
            "provisioningState": c.provisioning_state,
            "uniqueId": c.unique_id,
            "orchestrationMode": "Uniform",
            "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": {},
        },
    });
    with_identity(body, c, world)
}

fn render(world: &World, kind: ComputeKind, key: &str) -> Option<Value> {
    match kind {
        ComputeKind::VirtualMachine => world
            .virtual_machines
            .get(key)
            .map(|vm| render_vm(vm, world)),
        ComputeKind::ScaleSet => world
            .scale_sets
            .get(key)
            .map(|ss| render_scale_set(ss, world)),
    }
}

fn get_policies(call: &Call<'_>, kind: ComputeKind) -> Vec<PolicyKnob> {
    let p = call.shared.knobs_with(|k| k.arm.compute_policies.clone());
    match kind {
        ComputeKind::VirtualMachine => p.vm_get,
        ComputeKind::ScaleSet => p.scale_set_get,
    }
}

pub fn get(
    call: &mut Call<'_>,
    subscription: &str,
    group: &str,
    kind: ComputeKind,
    name: &str,
) -> Outcome {
    let id = armid::provider_resource_id(subscription, group, kind.resource_type(), name);
    let policies = get_policies(call, kind);
    let shared = call.shared;
    let world = shared.world();
    call.require(&world, &format!("{}/read", kind.resource_type()), &id)?;
    error::require_group(&world, subscription, group)?;
    let compute = compute_ref(&world, kind, id.key())
        .ok_or_else(|| error::resource_not_found(kind.resource_type(), name, group))?;
    let location = compute.location.clone();
    charge(
        call,
        &mut shared.arm.lock(),
        subscription,
        &location,
        &policies,
    )?;
    Ok((StatusCode::OK, render(&world, kind, id.key())))
}

pub fn list_vms(call: &mut Call<'_>, subscription: &str, group: &str) -> Outcome {
    let policies = call
        .shared
        .knobs_with(|k| k.arm.compute_policies.vm_list.clone());
    list_in_group(
        call,
        (subscription, group),
        "Microsoft.Compute/virtualMachines/read",
        &policies,
        |world, scope| {
            world
                .virtual_machines
                .values()
                .filter(|vm| vm.compute.id.is_within(scope))
                .map(|vm| render_vm(vm, world))
                .collect()
        },
    )
}

/// The scale sets of a resource group. Charged to the scale-set instance-list policies [E].
pub fn list_scale_sets(call: &mut Call<'_>, subscription: &str, group: &str) -> Outcome {
    let policies = call
        .shared
        .knobs_with(|k| k.arm.compute_policies.scale_set_instances.clone());
    list_in_group(
        call,
        (subscription, group),
        "Microsoft.Compute/virtualMachineScaleSets/read",
        &policies,
        |world, scope| {
            world
                .scale_sets
                .values()
                .filter(|ss| ss.compute.id.is_within(scope))
                .map(|ss| render_scale_set(ss, world))
                .collect()
        },
    )
}

/// A list of one resource group's resources: RBAC on the group first, then its existence, then
/// the throttle charged in the group's location.
fn list_in_group(
    call: &mut Call<'_>,
    (subscription, group): (&str, &str),
    action: &str,
    policies: &[PolicyKnob],
    list: impl FnOnce(&World, &ArmId) -> Vec<Value>,
) -> Outcome {
    let scope = armid::resource_group_id(subscription, group);
    let shared = call.shared;
    let world = shared.world();
    call.require(&world, action, &scope)?;
    let location = world
        .resource_groups
        .get(scope.key())
        .map(|rg| rg.location.clone())
        .ok_or_else(|| error::resource_group_not_found(group))?;
    charge(
        call,
        &mut shared.arm.lock(),
        subscription,
        &location,
        policies,
    )?;
    let value = list(&world, &scope);
    Ok((StatusCode::OK, Some(json!({ "value": value }))))
}

pub fn list_instances(call: &mut Call<'_>, subscription: &str, group: &str, name: &str) -> Outcome {
    let id = armid::provider_resource_id(subscription, group, armid::SCALE_SET_TYPE, name);
    let policies = call
        .shared
        .knobs_with(|k| k.arm.compute_policies.scale_set_instances.clone());
    let shared = call.shared;
    let world = shared.world();
    call.require(
        &world,
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
        &id,
    )?;
    error::require_group(&world, subscription, group)?;
    let ss = world
        .scale_sets
        .get(id.key())
        .ok_or_else(|| error::resource_not_found(armid::SCALE_SET_TYPE, name, group))?;
    charge(
        call,
        &mut shared.arm.lock(),
        subscription,
        &ss.compute.location,
        &policies,
    )?;
    let value: Vec<Value> = ss
        .instances
        .iter()
        .map(|inst| {
            json!({
                "name": inst.machine.name,
                "instanceId": inst.instance_id,
                "id": format!("{}/virtualMachines/{}", ss.compute.id, inst.instance_id),
                "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
                "location": ss.compute.location,
                "properties": {
                    "provisioningState": ss.compute.provisioning_state,
                    "vmId": inst.machine.vm_id,
                    "osProfile": {"computerName": inst.machine.computer_name},
                },
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        Some(json!({ "value": value, "nextLink": null })),
    ))
}

/// The operation-status poll. Any authenticated caller may poll (ARM checks the operation, not
/// a role on the subscription-level operation path).
pub fn operation(call: &mut Call<'_>, subscription: &str, location: &str, id: &str) -> Outcome {
    let policies = call
        .shared
        .knobs_with(|k| k.arm.compute_policies.operation_get.clone());
    let shared = call.shared;
    charge(
        call,
        &mut shared.arm.lock(),
        subscription,
        location,
        &policies,
    )?;
    let body = lro::poll(call.shared, subscription, id).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The operation '{id}' was not found."),
        )
    })?;
    if body["status"] == "InProgress" {
        let secs = call.shared.knobs_with(|k| k.arm.retry_after_secs);
        call.headers.push(("retry-after", secs.to_string()));
    }
    Ok((StatusCode::OK, Some(body)))
}

#[derive(Deserialize, Default)]
struct UpdateBody {
    #[serde(default)]
    identity: Option<IdentityRequest>,
}

fn refusal_error(refusal: Refusal, resource: &ArmId, limit: usize) -> ArmError {
    match refusal {
        Refusal::BadType(t) => error::invalid_parameter(
            "identity.type",
            format!(
                "The value '{t}' of parameter 'identity.type' is not valid. Allowed values are \
                 'SystemAssigned', 'UserAssigned', 'SystemAssigned, UserAssigned' and 'None'."
            ),
        ),
        Refusal::Duplicate(id) => error::invalid_parameter(
            "resourceIdentity.identityIds",
            format!(
                "ResourceIdentity identityId '{id}' cannot be duplicated in the provided identityIds list."
            ),
        ),
        Refusal::IdsWithoutUserType(t) => error::invalid_parameter(
            "resourceIdentity.identityIds",
            format!(
                "ResourceIdentity identityIds should not be provided if the type is \"{}\".",
                t.canonical()
            ),
        ),
        Refusal::LastIdentityRemoved => error::invalid_parameter(
            "identity.userAssignedIdentities",
            "The identity type 'UserAssigned' requires at least one user assigned identity. To \
             remove the last one, set the identity type to 'None' or 'SystemAssigned'.",
        ),
        Refusal::TooMany(n) => error::too_many_identities(resource, n, limit),
        Refusal::Missing(id) => error::identity_not_found(resource, &id),
    }
}

fn current_identities(world: &World, kind: ComputeKind, key: &str) -> IdentitySet {
    compute_ref(world, kind, key)
        .map(|c| c.identity.clone())
        .unwrap_or_default()
}

/// The current generation of each user-assigned identity (by key); `None` if it does not exist.
fn live_generation(world: &World) -> impl Fn(&str) -> Option<u64> + '_ {
    |key| world.identities.get(key).map(|i| i.generation)
}

/// PATCH (merge) or PUT (replace) of a VM's or scale set's identity.
pub fn update(
    call: &mut Call<'_>,
    subscription: &str,
    group: &str,
    kind: ComputeKind,
    name: &str,
    mode: Mode,
) -> Outcome {
    let knobs = call.shared.knobs_with(|k| k.arm.clone());
    let body: UpdateBody = call.json()?;
    let id = armid::provider_resource_id(subscription, group, kind.resource_type(), name);
    let write_action = format!("{}/write", kind.resource_type());
    let shared = call.shared;
    let mut world = shared.world_mut();
    call.require(&world, &write_action, &id)?;
    if let Some(request) = &body.identity {
        let current = current_identities(&world, kind, id.key());
        let unlinked: Vec<String> =
            identity::newly_assigned(&current, request, &live_generation(&world))
                .into_iter()
                .filter(|uami| {
                    !call.permitted(
                        &world,
                        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
                        &ArmId::new(uami),
                    )
                })
                .map(str::to_string)
                .collect();
        if !unlinked.is_empty() {
            return Err(error::linked_authorization_failed(
                &call.caller.client_id,
                &call.caller.object_id,
                &write_action,
                id.as_str(),
                &unlinked,
            ));
        }
    }
    error::require_group(&world, subscription, group)?;
    let (location, state, in_flight) = compute_ref(&world, kind, id.key())
        .map(|c| {
            (
                c.location.clone(),
                c.provisioning_state.clone(),
                c.operation_in_flight.clone(),
            )
        })
        .ok_or_else(|| error::resource_not_found(kind.resource_type(), name, group))?;
    let resource_id =
        compute_ref(&world, kind, id.key()).map_or_else(|| id.clone(), |c| c.id.clone());
    if state.eq_ignore_ascii_case("Deleting") {
        return Err(match kind {
            ComputeKind::VirtualMachine => {
                error::marked_for_deletion("Update Virtual Machine", "VM", name)
            }
            ComputeKind::ScaleSet => error::marked_for_deletion(
                "Update Virtual Machine Scale Set",
                "Virtual Machine Scale Set",
                name,
            ),
        });
    }
    let mut inner = shared.arm.lock();
    if let Some(running) = in_flight {
        if !knobs.allow_concurrent_updates {
            return Err(error::conflict());
        }
        inner
            .operations
            .finish(call.shared, &mut world, &running, call.now);
    }
    let policies = match kind {
        ComputeKind::VirtualMachine => &knobs.compute_policies.vm_update,
        ComputeKind::ScaleSet => &knobs.compute_policies.scale_set_update,
    };
    charge(call, &mut inner, subscription, &location, policies)?;
    let current = current_identities(&world, kind, id.key());
    // A PATCH without `identity` leaves identities alone; a PUT without it removes them all.
    let change = match (body.identity, mode) {
        (None, Mode::Merge) => identity::IdentityChange::default(),
        (request, _) => identity::plan(
            &current,
            &request.unwrap_or_default(),
            mode,
            knobs.identities_per_request,
            live_generation(&world),
        )
        .map_err(|r| refusal_error(r, &resource_id, knobs.identities_per_request))?,
    };
    let failure = call.shared.faults.take_lro_failure(&FaultRequest {
        method: call.method.as_str(),
        path: call.path,
        ..Default::default()
    });
    if knobs.lro_mode == LroMode::Sync {
        lro::conclude(
            call.shared,
            &mut world,
            kind,
            id.key(),
            &change,
            failure.as_ref(),
            call.now,
        );
        return Ok((StatusCode::OK, render(&world, kind, id.key())));
    }
    let op_id = uuid::Uuid::new_v4().to_string();
    let completion = match knobs.lro_polls {
        Some(n) => Completion::AfterPolls(n),
        None => Completion::At(call.now + Duration::from_millis(knobs.lro_duration_ms)),
    };
    inner.operations.start(AsyncOperation {
        id: op_id.clone(),
        subscription: subscription.to_string(),
        kind,
        target: id.key().to_string(),
        change,
        failure,
        started: call.now,
        completion,
        polls: 0,
        status: Status::InProgress,
        ended: None,
        queued: None,
    });
    if let Some(c) = lro::compute_mut(&mut world, kind, id.key()) {
        c.provisioning_state = "Updating".into();
        c.operation_in_flight = Some(op_id.clone());
    }
    let sub_display = resource_id
        .as_str()
        .split('/')
        .nth(2)
        .unwrap_or(subscription)
        .to_string();
    call.headers.push((
        "azure-asyncoperation",
        format!(
            "{}/subscriptions/{sub_display}/providers/Microsoft.Compute/locations/{location}/operations/{op_id}?api-version={}",
            call.base_url(),
            call.api_version
        ),
    ));
    call.headers
        .push(("retry-after", knobs.retry_after_secs.to_string()));
    Ok((StatusCode::OK, render(&world, kind, id.key())))
}
