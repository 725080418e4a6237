//! `GET /subscriptions`: the subscriptions the caller can see, as the Azure CLI lists them after
//! `az login` (Subscriptions - List, api-version 2022-12-01). A tenant-level request: no
//! subscription check, no front-door bucket.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Call, Outcome};
use crate::armid::ArmId;
use crate::world::{Subscription, World};

/// Whether the caller holds any role assignment on the subscription, on a scope below it (a
/// resource group, a resource) or above it: what makes ARM list a subscription for a principal.
fn visible(world: &World, object_id: &str, subscription: &ArmId) -> bool {
    world.role_assignments.iter().any(|a| {
        a.principal_id.eq_ignore_ascii_case(object_id)
            && (a.scope.is_within(subscription) || subscription.is_within(&a.scope))
    })
}

fn render(subscription: &Subscription, tenant_id: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{}", subscription.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": subscription.id,
        "tenantId": tenant_id,
        "displayName": subscription.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    })
}

/// Every subscription of the world the caller can see, sorted by ID; an empty list (not an
/// error) when it sees none, as ARM answers a principal without role assignments.
pub fn list(call: &mut Call<'_>) -> Outcome {
    let world = call.shared.world();
    let value: Vec<Value> = world
        .subscriptions
        .values()
        .filter(|s| {
            visible(
                &world,
                &call.caller.object_id,
                &ArmId::new(&format!("/subscriptions/{}", s.id)),
            )
        })
        .map(|s| render(s, &world.tenant_id))
        .collect();
    let count = value.len();
    Ok((
        StatusCode::OK,
        Some(json!({ "value": value, "count": {"type": "Total", "value": count} })),
    ))
}
