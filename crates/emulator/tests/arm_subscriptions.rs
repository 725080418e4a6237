//! What the Azure CLI calls after `az login --identity` gets its token: the subscription list
//! (`GET /subscriptions`, a tenant-level request), then `az vmss list -g` (the scale sets of a
//! resource group); and the admin route that takes a role assignment back.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const SUBSCRIPTIONS_API: &str = "2022-12-01";
const SECOND: &str = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f";
/// Reader on a resource group of the first subscription only.
const GROUP_READER: &str = "55555555-5555-4555-8555-555555555555";
/// Owner of the second subscription only.
const SECOND_OWNER: &str = "66666666-6666-4666-8666-666666666666";
/// Reader on one scale set, nothing else.
const RESOURCE_READER: &str = "77777777-7777-4777-8777-777777777777";

fn two_subscriptions() -> String {
    format!(
        r#"
tenantId: {TENANT}
subscriptions:
  - id: {SUBSCRIPTION}
    resourceGroups:
      - {{ name: {NODE_RG}, location: japaneast }}
      - {{ name: {SHARED_RG}, location: japaneast }}
  - id: {SECOND}
    displayName: Study4Dev Production
    resourceGroups:
      - {{ name: other, location: eastus }}
virtualMachineScaleSets:
  - {{ resourceGroup: {NODE_RG}, name: {SCALE_SET}, instances: [{{ instanceId: "0" }}, {{ instanceId: "1" }}] }}
  - {{ resourceGroup: {NODE_RG}, name: second-pool, instances: [{{ instanceId: "0" }}] }}
  - {{ subscription: {SECOND}, resourceGroup: other, name: elsewhere, instances: [{{ instanceId: "0" }}] }}
servicePrincipals:
  - {{ clientId: {GROUP_READER}, displayName: group-reader, secrets: [s] }}
  - {{ clientId: {SECOND_OWNER}, displayName: second-owner, secrets: [s] }}
  - {{ clientId: {RESOURCE_READER}, displayName: resource-reader, secrets: [s] }}
  - {{ clientId: {NOBODY}, displayName: nobody, secrets: [s] }}
roleAssignments:
  - {{ principal: group-reader, role: Reader, scope: /subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG} }}
  - {{ principal: second-owner, role: Owner, scope: /subscriptions/{SECOND} }}
  - {{ principal: resource-reader, role: Reader, scope: "/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{SCALE_SET}" }}
"#
    )
}

/// `GET /subscriptions` as the CLI sends it.
async fn list_subscriptions(emu: &Emulator, token: &str) -> Reply {
    emu.arm(
        Method::GET,
        &versioned("/subscriptions", SUBSCRIPTIONS_API),
        Some(token),
        None,
    )
    .await
}

async fn subscription_ids(emu: &Emulator, principal: &str) -> Vec<String> {
    let r = list_subscriptions(emu, &emu.arm_token(principal)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let value = r.body["value"].as_array().expect("value");
    assert_eq!(
        r.body["count"],
        json!({"type": "Total", "value": value.len()})
    );
    value
        .iter()
        .map(|s| {
            s["subscriptionId"]
                .as_str()
                .expect("subscriptionId")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_subscription_list_shows_what_a_role_assignment_reaches_in_azures_shape() {
    let emu = Emulator::start(&two_subscriptions()).await;
    let token = emu.arm_token(GROUP_READER);
    let r = list_subscriptions(&emu, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "value": [{
                "id": format!("/subscriptions/{SUBSCRIPTION}"),
                "authorizationSource": "RoleBased",
                "managedByTenants": [],
                "subscriptionId": SUBSCRIPTION,
                "tenantId": TENANT,
                "displayName": "Azure subscription 1",
                "state": "Enabled",
                "subscriptionPolicies": {
                    "locationPlacementId": "Public_2014-09-01",
                    "quotaId": "PayAsYouGo_2014-09-01",
                    "spendingLimit": "Off",
                },
            }],
            "count": {"type": "Total", "value": 1},
        })
    );
    assert!(r.header("x-ms-request-id").is_some());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    // A role on the subscription itself, or on one resource below it, is enough to see it.
    assert_eq!(subscription_ids(&emu, SECOND_OWNER).await, vec![SECOND]);
    assert_eq!(
        subscription_ids(&emu, RESOURCE_READER).await,
        vec![SUBSCRIPTION]
    );
    // No role anywhere: an empty list, not an error (what `az login` reports as "no subscriptions").
    assert!(subscription_ids(&emu, NOBODY).await.is_empty());

    // The world file's display name; a role on the second subscription shows both.
    emu.admin(
        Method::POST,
        "/admin/arm/role-assignments",
        Some(&json!({"principal": "group-reader", "role": "Reader", "scope": format!("/subscriptions/{SECOND}")})),
    )
    .await;
    let r = emu
        .arm(
            Method::GET,
            &versioned("/Subscriptions/", SUBSCRIPTIONS_API),
            Some(&token),
            None,
        )
        .await;
    let names: Vec<(&str, &str)> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|s| {
            (
                s["subscriptionId"].as_str().unwrap_or_default(),
                s["displayName"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (SECOND, "Study4Dev Production"),
            (SUBSCRIPTION, "Azure subscription 1")
        ]
    );
    assert_eq!(emu.counter("arm.subscription.list", 200).await, (5, 5));
    emu.shutdown().await;
}

#[tokio::test]
async fn the_subscription_list_needs_a_token_and_an_api_version() {
    let emu = Emulator::start(&two_subscriptions()).await;
    let r = emu
        .arm(
            Method::GET,
            &versioned("/subscriptions", SUBSCRIPTIONS_API),
            None,
            None,
        )
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "AuthenticationFailed");
    let token = emu.arm_token(GROUP_READER);
    let r = emu
        .arm(Method::GET, "/subscriptions", Some(&token), None)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "MissingApiVersionParameter");
    let r = emu
        .arm(
            Method::GET,
            &versioned("/subscriptions", "2015-01-01"),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter");
    let r = emu
        .arm(
            Method::POST,
            &versioned("/subscriptions", SUBSCRIPTIONS_API),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
    // Tenant-level: no subscription's front-door bucket is charged.
    let r = list_subscriptions(&emu, &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_none()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_scale_sets_of_a_group_are_listed_with_read_on_the_group() {
    let emu = Emulator::start(&two_subscriptions()).await;
    let list = |group: &str| {
        versioned(
            &format!(
                "/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachineScaleSets"
            ),
            "2024-11-01",
        )
    };
    let token = emu.arm_token(GROUP_READER);
    let r = emu
        .arm(Method::GET, &list(NODE_RG), Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sets = r.body["value"].as_array().expect("value");
    let names: Vec<&str> = sets.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, vec![SCALE_SET, "second-pool"]);
    // Each item is the scale set as its own GET shows it.
    let one = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(sets[0], one.body);
    assert_eq!(sets[0]["sku"]["capacity"], 2);
    assert!(
        r.header("x-ms-ratelimit-remaining-resource")
            .is_some_and(|h| h.contains("Microsoft.Compute/HighCostGetVMScaleSet3Min;"))
    );

    // The group's letter case does not matter; an empty group lists nothing.
    let r = emu
        .arm(
            Method::GET,
            &list(&NODE_RG.to_ascii_lowercase()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(2));
    let owner = emu.arm_token(SECOND_OWNER);
    let r = emu
        .arm(
            Method::GET,
            &versioned(
                &format!(
                    "/subscriptions/{SECOND}/resourceGroups/other/providers/Microsoft.Compute/virtualMachineScaleSets"
                ),
                "2024-11-01",
            ),
            Some(&owner),
            None,
        )
        .await;
    let names: Vec<&str> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["elsewhere"]);

    // RBAC before existence, as for every ARM read.
    let r = emu
        .arm(Method::GET, &list(SHARED_RG), Some(&token), None)
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    assert!(r.message().contains(&format!(
        "perform action 'Microsoft.Compute/virtualMachineScaleSets/read' over scope \
         '/subscriptions/{SUBSCRIPTION}/resourceGroups/{SHARED_RG}'"
    )));
    let reader_of_one = emu.arm_token(RESOURCE_READER);
    let r = emu
        .arm(Method::GET, &list(NODE_RG), Some(&reader_of_one), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = emu
        .arm(Method::GET, &list("missing"), Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = emu
        .arm(
            Method::GET,
            &versioned(
                &format!(
                    "/subscriptions/{SECOND}/resourceGroups/missing/providers/Microsoft.Compute/virtualMachineScaleSets"
                ),
                "2024-11-01",
            ),
            Some(&owner),
            None,
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceGroupNotFound");
    assert_eq!(emu.counter("arm.vmss.list", 200).await.1, 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_admin_role_assignment_is_taken_back_by_name() {
    let emu = Emulator::start(&two_subscriptions()).await;
    let added = emu
        .admin(
            Method::POST,
            "/admin/arm/role-assignments",
            Some(&json!({"principal": "nobody", "role": "Reader", "scope": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}")})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let name = added.body["name"].as_str().expect("name").to_string();
    assert_eq!(subscription_ids(&emu, NOBODY).await, vec![SUBSCRIPTION]);
    let token = emu.arm_token(NOBODY);
    assert_eq!(
        emu.arm(Method::GET, &vmss_path(), Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );

    let path = format!("/admin/arm/role-assignments/{}", name.to_ascii_uppercase());
    let removed = emu.admin(Method::DELETE, &path, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert!(subscription_ids(&emu, NOBODY).await.is_empty());
    assert_eq!(
        emu.arm(Method::GET, &vmss_path(), Some(&token), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let again = emu.admin(Method::DELETE, &path, None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(
        again.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no role assignment is named"))
    );
    // The world's own assignments are untouched.
    assert_eq!(
        emu.world().await["roleAssignments"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    emu.shutdown().await;
}
