//! User-assigned identities (azure-wire.md §3.9) and role assignments: create, read, list,
//! delete, and role assignments changing what a principal may do.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn identities_are_read_with_a_lower_case_resourcegroups_id_and_listed_by_group() {
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(READER);
    let r = emu
        .arm(
            Method::GET,
            &versioned(&uami_id(NODE_RG, "ID-A"), MSI_API),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["id"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourcegroups/{NODE_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-a"
        )
    );
    assert_eq!(r.body["name"], "id-a");
    assert_eq!(
        r.body["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    assert_eq!(
        r.body["properties"]["clientId"],
        "0000000a-0000-4000-8000-00000000000a"
    );
    assert_eq!(r.body["properties"]["tenantId"], TENANT);
    assert!(
        r.body["properties"]["principalId"]
            .as_str()
            .is_some_and(|p| uuid::Uuid::parse_str(p).is_ok())
    );

    let list = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    let r = emu
        .arm(Method::GET, &versioned(&list, MSI_API), Some(&token), None)
        .await;
    let mut names: Vec<&str> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["id-a", "id-b", "id-c"]);

    let r = emu
        .arm(
            Method::GET,
            &versioned(&uami_id(NODE_RG, "nope"), MSI_API),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceNotFound");
    emu.shutdown().await;
}

#[tokio::test]
async fn identities_are_created_and_deleted_with_write_permission_only() {
    let emu = Emulator::start(&small_world()).await;
    let path = versioned(&uami_id(NODE_RG, "fresh"), "2023-01-31");
    let r = emu
        .arm(
            Method::PUT,
            &path,
            Some(&emu.arm_token(READER)),
            Some(&json!({"location": "eastus"})),
        )
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");

    let owner = emu.arm_token(OWNER);
    let r = emu
        .arm(
            Method::PUT,
            &path,
            Some(&owner),
            Some(&json!({"location": "westus2", "tags": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["location"], "westus2");
    let client = r.body["properties"]["clientId"].clone();
    let again = emu
        .arm(
            Method::PUT,
            &path,
            Some(&owner),
            Some(&json!({"location": "westus2"})),
        )
        .await;
    assert_eq!(
        (again.status, &again.body["properties"]["clientId"]),
        (StatusCode::OK, &client)
    );

    assert_eq!(
        emu.arm(Method::DELETE, &path, Some(&owner), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        emu.arm(Method::DELETE, &path, Some(&owner), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = emu
        .arm(Method::PUT, &path, Some(&owner), Some(&json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_ne!(
        r.body["properties"]["clientId"], client,
        "a recreated identity is a new identity"
    );

    let r = emu
        .arm(
            Method::PUT,
            &versioned(&uami_id("missing-rg", "x"), MSI_API),
            Some(&owner),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.code(), "ResourceGroupNotFound");
    emu.shutdown().await;
}

#[tokio::test]
async fn role_assignments_change_what_a_principal_may_do() {
    let emu = Emulator::start(&small_world()).await;
    let vmss = vmss_path();
    let nobody = emu.arm_token(NOBODY);
    assert_eq!(
        emu.arm(Method::GET, &vmss, Some(&nobody), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let nobody_oid = emu.shared().world().service_principals[NOBODY]
        .object_id
        .clone();
    let scope = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}");
    let name = "5b1f7c4e-9d1a-4c7e-8f00-0123456789ab";
    let assignment = versioned(
        &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        AUTHORIZATION_API,
    );
    let body = json!({"properties": {
        "roleDefinitionId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
        "principalId": nobody_oid,
    }});
    // MIC (Virtual Machine Contributor, Managed Identity Operator) may not grant roles.
    let r = emu
        .arm(
            Method::PUT,
            &assignment,
            Some(&emu.arm_token(MIC)),
            Some(&body),
        )
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    assert!(
        r.message()
            .contains("Microsoft.Authorization/roleAssignments/write")
    );

    let owner = emu.arm_token(OWNER);
    let r = emu
        .arm(Method::PUT, &assignment, Some(&owner), Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["name"], name);
    assert_eq!(r.body["properties"]["scope"], scope);
    assert_eq!(
        emu.arm(Method::GET, &vmss, Some(&nobody), None)
            .await
            .status,
        StatusCode::OK
    );

    let r = emu.arm(Method::GET, &assignment, Some(&owner), None).await;
    assert_eq!(r.body["properties"]["principalId"], nobody_oid.as_str());
    let list = versioned(
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments",
            vmss_id(NODE_RG, SCALE_SET)
        ),
        AUTHORIZATION_API,
    );
    let r = emu.arm(Method::GET, &list, Some(&owner), None).await;
    assert!(
        r.body["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|a| a["name"] == name),
        "{}",
        r.body
    );

    let r = emu
        .arm(Method::DELETE, &assignment, Some(&owner), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        emu.arm(Method::GET, &vmss, Some(&nobody), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = emu.arm(Method::GET, &assignment, Some(&owner), None).await;
    r.assert_error(StatusCode::NOT_FOUND, "RoleAssignmentNotFound");
    emu.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_grants_roles_by_principal_name_without_rbac() {
    let emu = Emulator::start(&small_world()).await;
    let nobody = emu.arm_token(NOBODY);
    let vmss = vmss_path();
    let r = emu
        .admin(
            Method::POST,
            "/admin/arm/role-assignments",
            Some(&json!({"principal": "nobody", "role": "Reader", "scope": format!("/subscriptions/{SUBSCRIPTION}")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        emu.arm(Method::GET, &vmss, Some(&nobody), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = emu
        .admin(
            Method::POST,
            "/admin/arm/role-assignments",
            Some(&json!({"principal": "nobody", "role": "Wizard", "scope": "/"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("Wizard"))
    );
    let world = emu.world().await;
    assert!(
        world["roleAssignments"]
            .as_array()
            .expect("assignments")
            .len()
            >= 5
    );
    emu.shutdown().await;
}
