//! `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`: PUT, GET, DELETE and
//! list at a scope, over the built-in roles of [`crate::rbac`]. Changing them changes what
//! principals may do on the next request.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ArmError;
use super::{Call, Outcome};
use crate::armid::ArmId;
use crate::rbac::{self, RoleAssignment};

const ACTIONS: &str = "Microsoft.Authorization/roleAssignments";

pub fn render(a: &RoleAssignment) -> Value {
    let subscription = a.scope.as_str().split('/').nth(2).unwrap_or_default();
    json!({
        "id": a.id(),
        "name": a.name,
        "type": ACTIONS,
        "properties": {
            "roleDefinitionId": format!(
                "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{}",
                a.role.id
            ),
            "principalId": a.principal_id,
            "principalType": "ServicePrincipal",
            "scope": a.scope.as_str(),
        },
    })
}

fn not_found(name: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "RoleAssignmentNotFound",
        format!("The role assignment '{name}' is not found."),
    )
}

fn find<'w>(
    assignments: &'w [RoleAssignment],
    scope: &ArmId,
    name: &str,
) -> Option<&'w RoleAssignment> {
    assignments
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name) && &a.scope == scope)
}

pub fn get(call: &mut Call<'_>, scope: &str, name: &str) -> Outcome {
    let scope = ArmId::new(scope);
    let world = call.shared.world();
    call.require(&world, &format!("{ACTIONS}/read"), &scope)?;
    let a = find(&world.role_assignments, &scope, name).ok_or_else(|| not_found(name))?;
    Ok((StatusCode::OK, Some(render(a))))
}

/// Assignments that apply at `scope` (made there or above) or lie below it.
pub fn list(call: &mut Call<'_>, scope: &str) -> Outcome {
    let scope = ArmId::new(scope);
    let world = call.shared.world();
    call.require(&world, &format!("{ACTIONS}/read"), &scope)?;
    let value: Vec<Value> = world
        .role_assignments
        .iter()
        .filter(|a| scope.is_within(&a.scope) || a.scope.is_within(&scope))
        .map(render)
        .collect();
    Ok((
        StatusCode::OK,
        Some(json!({ "value": value, "nextLink": null })),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutBody {
    properties: PutProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutProperties {
    role_definition_id: String,
    principal_id: String,
}

pub fn put(call: &mut Call<'_>, subscription: &str, scope: &str, name: &str) -> Outcome {
    let body: PutBody = call.json()?;
    if uuid::Uuid::parse_str(name).is_err() {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        ));
    }
    let scope = ArmId::new(scope);
    let shared = call.shared;
    let mut world = shared.world_mut();
    call.require(&world, &format!("{ACTIONS}/write"), &scope)?;
    let role = rbac::find_role(&body.properties.role_definition_id).ok_or_else(|| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!(
                "The specified role definition with ID '{}' does not exist in subscription '{subscription}'.",
                body.properties.role_definition_id
            ),
        )
    })?;
    let principal_id = body.properties.principal_id;
    if let Some(existing) = find(&world.role_assignments, &scope, name) {
        if existing.role.id == role.id && existing.principal_id.eq_ignore_ascii_case(&principal_id)
        {
            return Ok((StatusCode::CREATED, Some(render(existing))));
        }
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        ));
    }
    if world.role_assignments.iter().any(|a| {
        a.scope == scope
            && a.role.id == role.id
            && a.principal_id.eq_ignore_ascii_case(&principal_id)
    }) {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    let assignment = RoleAssignment {
        name: name.to_string(),
        principal_id,
        role,
        scope,
    };
    let rendered = render(&assignment);
    world.role_assignments.push(assignment);
    Ok((StatusCode::CREATED, Some(rendered)))
}

pub fn delete(call: &mut Call<'_>, scope: &str, name: &str) -> Outcome {
    let scope = ArmId::new(scope);
    let shared = call.shared;
    let mut world = shared.world_mut();
    call.require(&world, &format!("{ACTIONS}/delete"), &scope)?;
    let Some(index) = world
        .role_assignments
        .iter()
        .position(|a| a.name.eq_ignore_ascii_case(name) && a.scope == scope)
    else {
        return Ok((StatusCode::NO_CONTENT, None));
    };
    let gone = world.role_assignments.remove(index);
    Ok((StatusCode::OK, Some(render(&gone))))
}
