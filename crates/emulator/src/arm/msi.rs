//! `Microsoft.ManagedIdentity/userAssignedIdentities` (azure-wire.md §3.9): GET, PUT (create),
//! DELETE, list by resource group. A name deleted and created again is a new identity (new
//! client and principal IDs, next generation), so assignments of the old one go dead.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error;
use super::{Call, Outcome};
use crate::armid::{self, USER_ASSIGNED_IDENTITY_TYPE};
use crate::world::{UserAssignedIdentity, stable_guid};

/// The identity as the service shows it, with its lower-case `resourcegroups` in `id`.
pub fn render(uami: &UserAssignedIdentity) -> Value {
    json!({
        "id": format!(
            "/subscriptions/{}/resourcegroups/{}/providers/{USER_ASSIGNED_IDENTITY_TYPE}/{}",
            uami.subscription, uami.resource_group, uami.name
        ),
        "name": uami.name,
        "type": USER_ASSIGNED_IDENTITY_TYPE,
        "location": uami.location,
        "tags": {},
        "properties": {
            "tenantId": uami.tenant_id,
            "principalId": uami.principal_id,
            "clientId": uami.client_id,
        },
    })
}

fn not_found(name: &str, group: &str) -> error::ArmError {
    error::resource_not_found(USER_ASSIGNED_IDENTITY_TYPE, name, group)
}

pub fn get(call: &mut Call<'_>, subscription: &str, group: &str, name: &str) -> Outcome {
    let id = armid::provider_resource_id(subscription, group, USER_ASSIGNED_IDENTITY_TYPE, name);
    let world = call.shared.world();
    call.require(&world, &format!("{USER_ASSIGNED_IDENTITY_TYPE}/read"), &id)?;
    let uami = world
        .identities
        .get(id.key())
        .ok_or_else(|| not_found(name, group))?;
    Ok((StatusCode::OK, Some(render(uami))))
}

pub fn list(call: &mut Call<'_>, subscription: &str, group: &str) -> Outcome {
    let scope = armid::resource_group_id(subscription, group);
    let world = call.shared.world();
    call.require(
        &world,
        &format!("{USER_ASSIGNED_IDENTITY_TYPE}/read"),
        &scope,
    )?;
    if !world.resource_groups.contains_key(scope.key()) {
        return Err(error::resource_group_not_found(group));
    }
    let value: Vec<Value> = world
        .identities
        .values()
        .filter(|i| i.id.is_within(&scope))
        .map(render)
        .collect();
    Ok((
        StatusCode::OK,
        Some(json!({ "value": value, "nextLink": null })),
    ))
}

#[derive(Deserialize, Default)]
struct CreateBody {
    #[serde(default)]
    location: Option<String>,
}

pub fn put(call: &mut Call<'_>, subscription: &str, group: &str, name: &str) -> Outcome {
    let body: CreateBody = call.json()?;
    let id = armid::provider_resource_id(subscription, group, USER_ASSIGNED_IDENTITY_TYPE, name);
    let shared = call.shared;
    let mut world = shared.world_mut();
    call.require(&world, &format!("{USER_ASSIGNED_IDENTITY_TYPE}/write"), &id)?;
    let rg = world
        .resource_groups
        .get(armid::resource_group_id(subscription, group).key())
        .cloned()
        .ok_or_else(|| error::resource_group_not_found(group))?;
    if let Some(existing) = world.identities.get(id.key()) {
        return Ok((StatusCode::OK, Some(render(existing))));
    }
    let generation = shared
        .arm
        .lock()
        .retired_generations
        .get(id.key())
        .map_or(1, |g| g + 1);
    let seed = format!("{}/{generation}", id.key());
    let uami = UserAssignedIdentity {
        id: armid::provider_resource_id(
            &rg.subscription,
            &rg.name,
            USER_ASSIGNED_IDENTITY_TYPE,
            name,
        ),
        subscription: rg.subscription.clone(),
        resource_group: rg.name.clone(),
        name: name.to_string(),
        location: body.location.unwrap_or(rg.location),
        client_id: stable_guid(&format!("client/{seed}")),
        principal_id: stable_guid(&format!("principal/{seed}")),
        tenant_id: world.tenant_id.clone(),
        generation,
    };
    let rendered = render(&uami);
    world.identities.insert(id.key().to_string(), uami);
    Ok((StatusCode::CREATED, Some(rendered)))
}

pub fn delete(call: &mut Call<'_>, subscription: &str, group: &str, name: &str) -> Outcome {
    let id = armid::provider_resource_id(subscription, group, USER_ASSIGNED_IDENTITY_TYPE, name);
    let shared = call.shared;
    let mut world = shared.world_mut();
    call.require(
        &world,
        &format!("{USER_ASSIGNED_IDENTITY_TYPE}/delete"),
        &id,
    )?;
    match world.identities.remove(id.key()) {
        Some(gone) => {
            shared
                .arm
                .lock()
                .retired_generations
                .insert(id.key().to_string(), gone.generation);
            Ok((StatusCode::OK, None))
        }
        None => Ok((StatusCode::NO_CONTENT, None)),
    }
}
