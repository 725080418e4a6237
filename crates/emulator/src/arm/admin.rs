//! ARM parts of the admin API: out-of-band identity removal, provisioning state, role
//! assignments added and removed without RBAC, and a world snapshot for tests.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::compute::render_identity;
use super::identity;
use super::path::ComputeKind;
use super::{lro, roles};
use crate::admin::{AdminError, parse_body};
use crate::armid::{ArmId, normalize};
use crate::dns::DnsZone;
use crate::rbac::{self, RoleAssignment};
use crate::state::Shared;
use crate::world::{Compute, IdentitySet, World, stable_guid};

pub fn admin_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/arm/remove-identity", post(remove_identity))
        .route("/admin/arm/provisioning-state", post(provisioning_state))
        .route("/admin/arm/role-assignments", post(add_role_assignment))
        .route(
            "/admin/arm/role-assignments/{name}",
            delete(remove_role_assignment),
        )
        .route("/admin/world", get(world_snapshot))
}

fn find_compute<'w>(
    world: &'w mut World,
    resource: &str,
) -> Option<(ComputeKind, &'w mut Compute)> {
    let key = normalize(resource);
    if world.virtual_machines.contains_key(&key) {
        return lro::compute_mut(world, ComputeKind::VirtualMachine, &key)
            .map(|c| (ComputeKind::VirtualMachine, c));
    }
    lro::compute_mut(world, ComputeKind::ScaleSet, &key).map(|c| (ComputeKind::ScaleSet, c))
}

fn no_resource(resource: &str) -> AdminError {
    AdminError(
        StatusCode::NOT_FOUND,
        format!("no VM or scale set has the ID {resource:?}; GET /admin/world lists them"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveIdentity {
    resource: String,
    identity: String,
}

/// Removes a user-assigned identity from a VM or scale set at once, bypassing RBAC and the
/// operation machinery; IMDS keeps serving it for the revocation delay.
async fn remove_identity(
    State(s): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: RemoveIdentity = parse_body(&body)?;
    lro::settle(&s);
    let until = s.clock.now() + Duration::from_millis(s.knobs_with(|k| k.imds.revocation_delay_ms));
    let mut world = s.world_mut();
    let (_, compute) =
        find_compute(&mut world, &req.resource).ok_or_else(|| no_resource(&req.resource))?;
    if !identity::revoke_one(&mut compute.identity, &normalize(&req.identity), until) {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no user-assigned identity {:?}",
                req.resource, req.identity
            ),
        ));
    }
    let set = compute.identity.clone();
    Ok(Json(identity_snapshot(&set, &world)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisioningState {
    resource: String,
    state: String,
}

async fn provisioning_state(
    State(s): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: ProvisioningState = parse_body(&body)?;
    let mut world = s.world_mut();
    let (_, compute) =
        find_compute(&mut world, &req.resource).ok_or_else(|| no_resource(&req.resource))?;
    compute.provisioning_state = req.state.clone();
    Ok(Json(
        json!({ "resource": compute.id.as_str(), "provisioningState": compute.provisioning_state }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRoleAssignment {
    principal: String,
    role: String,
    scope: String,
}

async fn add_role_assignment(
    State(s): State<Arc<Shared>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let req: AddRoleAssignment = parse_body(&body)?;
    let role = rbac::find_role(&req.role).ok_or_else(|| {
        let names: Vec<&str> = rbac::BUILTIN_ROLES.iter().map(|r| r.name).collect();
        AdminError(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown role {:?}; built-in roles are {}",
                req.role,
                names.join(", ")
            ),
        )
    })?;
    let mut world = s.world_mut();
    let principal_id = world.resolve_principal(&req.principal);
    let scope = ArmId::new(&req.scope);
    let assignment = RoleAssignment {
        name: stable_guid(&format!("{}|{}|{}", principal_id, role.id, scope.key())),
        principal_id,
        role,
        scope,
    };
    let rendered = roles::render(&assignment);
    if !world
        .role_assignments
        .iter()
        .any(|a| a.name == assignment.name)
    {
        world.role_assignments.push(assignment);
    }
    Ok((StatusCode::CREATED, Json(rendered)))
}

/// Removes the role assignment named `name` (the `name` the POST answered), bypassing RBAC: 204,
/// or 404 when the world has no assignment of that name.
async fn remove_role_assignment(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    let mut world = s.world_mut();
    let before = world.role_assignments.len();
    world
        .role_assignments
        .retain(|a| !a.name.eq_ignore_ascii_case(&name));
    if world.role_assignments.len() == before {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no role assignment is named {name:?}; GET /admin/world lists them"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn identity_snapshot(set: &IdentitySet, world: &World) -> Value {
    let user: Vec<Value> = set
        .user_assigned
        .iter()
        .map(|(key, a)| {
            let live = world.identities.get(key).is_some_and(|i| i.generation == a.generation);
            json!({"id": a.id.as_str(), "generation": a.generation, "live": live, "visibleFromMs": unix_ms(a.visible_from)})
        })
        .collect();
    let revoked: Vec<Value> = set
        .revoked
        .values()
        .map(|r| json!({"id": r.id.as_str(), "generation": r.generation, "visibleUntilMs": unix_ms(r.visible_until)}))
        .collect();
    json!({
        "arm": render_identity(set, world),
        "systemAssigned": set.system_assigned.as_ref().map(|sa| json!({"principalId": sa.principal_id, "tenantId": sa.tenant_id})),
        "userAssigned": user,
        "revoked": revoked,
    })
}

fn compute_snapshot(c: &Compute, world: &World) -> Value {
    json!({
        "id": c.id.as_str(),
        "name": c.name,
        "location": c.location,
        "provisioningState": c.provisioning_state,
        "operationInFlight": c.operation_in_flight,
        "identity": identity_snapshot(&c.identity, world),
    })
}

/// Everything tests check against: machines with their identity sets (and IMDS visibility),
/// identities, role assignments, DNS zones with their record sets, and the clock the
/// visibility times refer to.
async fn world_snapshot(State(s): State<Arc<Shared>>) -> Json<Value> {
    lro::settle(&s);
    let world = s.world();
    let vms: Vec<Value> = world
        .virtual_machines
        .values()
        .map(|vm| {
            let mut v = compute_snapshot(&vm.compute, &world);
            v["computerName"] = json!(vm.machine.computer_name);
            v
        })
        .collect();
    let scale_sets: Vec<Value> = world
        .scale_sets
        .values()
        .map(|ss| {
            let mut v = compute_snapshot(&ss.compute, &world);
            v["instances"] = json!(ss
                .instances
                .iter()
                .map(|i| json!({"instanceId": i.instance_id, "name": i.machine.name, "computerName": i.machine.computer_name}))
                .collect::<Vec<_>>());
            v
        })
        .collect();
    let identities: Vec<Value> = world
        .identities
        .values()
        .map(|i| {
            json!({"id": i.id.as_str(), "name": i.name, "clientId": i.client_id, "principalId": i.principal_id, "generation": i.generation})
        })
        .collect();
    let assignments: Vec<Value> = world.role_assignments.iter().map(roles::render).collect();
    let zones: Vec<Value> = world.dns_zones.values().map(DnsZone::snapshot).collect();
    Json(json!({
        "nowMs": unix_ms(s.clock.now()),
        "tenantId": world.tenant_id,
        "virtualMachines": vms,
        "virtualMachineScaleSets": scale_sets,
        "userAssignedIdentities": identities,
        "roleAssignments": assignments,
        "dnsZones": zones,
    }))
}
