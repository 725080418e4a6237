//! VM and scale-set identity updates (azure-wire.md §3.4): the merge and type rules, every
//! refusal with its exact text, linked authorization as MIC parses it, deleted identities,
//! PUT, out-of-band removal, and the list endpoints. Updates run in `sync` mode here; the
//! asynchronous path is in arm_lro.rs.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn sync_emulator(world: &str) -> Emulator {
    let emu = Emulator::start(world).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync"}})).await;
    emu
}

async fn patch(emu: &Emulator, resource: &str, principal: &str, identity: Value) -> Reply {
    let token = emu.arm_token(principal);
    emu.arm(
        Method::PATCH,
        &versioned(resource, COMPUTE_API),
        Some(&token),
        Some(&json!({ "identity": identity })),
    )
    .await
}

async fn identity_of(emu: &Emulator, resource: &str) -> Value {
    let token = emu.arm_token(READER);
    let r = emu
        .arm(
            Method::GET,
            &versioned(resource, COMPUTE_API),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body.get("identity").cloned().unwrap_or(Value::Null)
}

fn keys(identity: &Value) -> Vec<String> {
    identity["userAssignedIdentities"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Upstream MIC's extraction (docs/azure-wire.md §3.7): the first single-quoted, comma-separated run
/// of identity IDs, split on commas.
fn mic_extract(message: &str) -> Vec<String> {
    let re = regex::Regex::new(
        r"'(,?(?i)/subscriptions/[a-zA-Z0-9-_]+/resourcegroups/[a-zA-Z0-9-_]+/providers/Microsoft.ManagedIdentity/userAssignedIdentities/[a-zA-Z0-9-_]+)+'",
    )
    .expect("MIC's pattern compiles");
    re.find(message)
        .map(|m| {
            m.as_str()
                .trim_matches('\'')
                .split(',')
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_type_transition_table_holds_on_scale_sets_and_vms() {
    let emu = sync_emulator(&small_world()).await;
    let (a, b) = (uami_id(NODE_RG, "id-a"), uami_id(NODE_RG, "id-b"));
    for resource in [vmss_id(NODE_RG, SCALE_SET), vm_id(NODE_RG, VM)] {
        // MIC's add: lower-cased key, type UserAssigned.
        let r = patch(
            &emu,
            &resource,
            MIC,
            json!({"type": "UserAssigned", "userAssignedIdentities": {a.to_lowercase(): {}}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
        let id = identity_of(&emu, &resource).await;
        assert_eq!(id["type"], "UserAssigned");
        assert_eq!(keys(&id).len(), 1);
        assert!(keys(&id)[0].eq_ignore_ascii_case(&a));
        assert!(id.get("principalId").is_none());

        // Turn system-assigned on (no-space spelling), keeping the map.
        let r = patch(
            &emu,
            &resource,
            MIC,
            json!({"type": "systemassigned,userassigned"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let id = identity_of(&emu, &resource).await;
        assert_eq!(id["type"], "SystemAssigned, UserAssigned");
        let principal = id["principalId"]
            .as_str()
            .expect("a system-assigned principal")
            .to_string();
        assert_eq!(id["tenantId"], TENANT);

        // Add b: SA stays the same principal.
        patch(&emu, &resource, MIC, json!({"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {b.clone(): {}}})).await;
        let id = identity_of(&emu, &resource).await;
        assert_eq!(keys(&id).len(), 2);
        assert_eq!(id["principalId"], principal.as_str());
        assert_eq!(
            id["userAssignedIdentities"][&b]["clientId"],
            "0000000b-0000-4000-8000-00000000000b"
        );

        // Remove a with null (upper-cased: keys match ignoring case).
        patch(&emu, &resource, MIC, json!({"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {a.to_uppercase(): null}})).await;
        assert_eq!(keys(&identity_of(&emu, &resource).await), vec![b.clone()]);

        // Drop SA, keep user-assigned.
        patch(&emu, &resource, MIC, json!({"type": "UserAssigned"})).await;
        let id = identity_of(&emu, &resource).await;
        assert_eq!(id["type"], "UserAssigned");
        assert!(id.get("principalId").is_none());
        assert_eq!(keys(&id), vec![b.clone()]);

        // SystemAssigned alone clears the map and mints a new principal.
        patch(&emu, &resource, MIC, json!({"type": "SystemAssigned"})).await;
        let id = identity_of(&emu, &resource).await;
        assert_eq!(id["type"], "SystemAssigned");
        assert!(id.get("userAssignedIdentities").is_none());
        assert_ne!(id["principalId"], principal.as_str());

        // None removes the identity block entirely.
        let r = patch(&emu, &resource, MIC, json!({"type": "None"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(identity_of(&emu, &resource).await, Value::Null);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn inconsistent_type_and_map_and_duplicates_are_invalid_parameter() {
    let emu = sync_emulator(&small_world()).await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let a = uami_id(NODE_RG, "id-a");
    let b = uami_id(NODE_RG, "id-b");

    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": {a.to_lowercase(): null}}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidParameter"),
        "{}",
        r.body
    );

    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "SystemAssigned", "userAssignedIdentities": {b.clone(): {}}}),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert_eq!(
        r.message(),
        "ResourceIdentity identityIds should not be provided if the type is \"SystemAssigned\"."
    );
    assert_eq!(r.body["error"]["target"], "resourceIdentity.identityIds");

    let r = patch(&emu, &vmss, MIC, json!({"type": "UserAssigned", "userAssignedIdentities": {b.clone(): {}, b.to_uppercase(): {}}})).await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidParameter");
    assert!(
        r.message()
            .ends_with("cannot be duplicated in the provided identityIds list."),
        "{}",
        r.message()
    );

    let r = patch(&emu, &vmss, MIC, json!({"type": "Everything"})).await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidParameter");

    // Nothing was half-applied.
    assert_eq!(keys(&identity_of(&emu, &vmss).await), vec![a]);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_missing_identity_fails_the_whole_request_with_the_crp_wrapper_text() {
    let emu = sync_emulator(&small_world()).await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let ghost = uami_id(NODE_RG, "Ghost-Identity");
    let r = patch(&emu, &vmss, MIC, json!({"type": "UserAssigned", "userAssignedIdentities": {uami_id(NODE_RG, "id-b"): {}, ghost.clone(): {}}})).await;
    r.assert_error(StatusCode::BAD_REQUEST, "FailedIdentityOperation");
    let expected = format!(
        "Identity operation for resource '{vmss}' failed with error 'Failed to perform resource identity operation. \
         Status: 'BadRequest'. Response: '{{\"error\":{{\"code\":\"BadRequest\",\"message\":\"Resource '{}' was not found.\"}}}}'.'.",
        ghost.to_lowercase()
    );
    assert_eq!(r.message(), expected);
    assert_eq!(mic_extract(r.message()), vec![ghost.to_lowercase()]);
    assert_eq!(
        keys(&identity_of(&emu, &vmss).await).len(),
        1,
        "id-b must not be half-added"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn linked_authorization_failure_lists_every_unassignable_identity_for_mics_regex() {
    let emu = sync_emulator(&small_world()).await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let (ext1, ext3) = (
        uami_id(SHARED_RG, "ext-1"),
        uami_id(SHARED_RG, "ext-3").to_lowercase(),
    );
    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": {uami_id(NODE_RG, "id-b"): {}, ext1.clone(): {}, ext3.clone(): {}, uami_id(SHARED_RG, "ext-2"): null}}),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "LinkedAuthorizationFailed");
    let object_id = emu.shared().world().service_principals[MIC]
        .object_id
        .clone();
    let mut failing = mic_extract(r.message());
    failing.sort();
    let mut expected = vec![ext1.clone(), ext3.clone()];
    expected.sort();
    assert_eq!(failing, expected, "{}", r.message());
    assert_eq!(
        r.message(),
        format!(
            "The client '{MIC}' with object id '{object_id}' has permission to perform action \
             'Microsoft.Compute/virtualMachineScaleSets/write' on scope '{vmss}'; however, it does not have \
             permission to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on \
             the linked scope(s) '{}' or the linked scope(s) are invalid.",
            // serde_json sorts the body's keys, so ARM saw them in this order.
            format_args!("{ext1},{ext3}")
        )
    );

    // Without write on the scale set the request fails earlier, as AuthorizationFailed.
    let r = patch(
        &emu,
        &vmss,
        READER,
        json!({"type": "UserAssigned", "userAssignedIdentities": {ext1: {}}}),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    assert!(
        r.message()
            .contains("'Microsoft.Compute/virtualMachineScaleSets/write'")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn names_outside_mics_pattern_are_still_quoted_but_mic_cannot_extract_them() {
    let world = small_world().replace(
        "userAssignedIdentities:\n",
        &format!("userAssignedIdentities:\n  - {{ resourceGroup: {SHARED_RG}, name: dotted.name, clientId: 000000d0-0000-4000-8000-0000000000d0 }}\n"),
    );
    let emu = sync_emulator(&world).await;
    let dotted = uami_id(SHARED_RG, "dotted.name");
    let r = patch(
        &emu,
        &vmss_id(NODE_RG, SCALE_SET),
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": {dotted.clone(): {}}}),
    )
    .await;
    assert_eq!(r.code(), "LinkedAuthorizationFailed");
    assert!(r.message().contains(&format!("'{dotted}'")));
    assert!(mic_extract(r.message()).is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn one_hundred_fifty_identities_per_request_pass_and_one_more_fails() {
    let extra: String = (0..151)
        .map(|i| {
            format!("  - {{ resourceGroup: {NODE_RG}, name: bulk-{i}, clientId: {i:08}-0000-4000-8000-000000000000 }}\n")
        })
        .collect();
    let world = small_world().replace(
        "userAssignedIdentities:\n",
        &format!("userAssignedIdentities:\n{extra}"),
    );
    let emu = sync_emulator(&world).await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let map = |n: usize| -> Value {
        Value::Object(
            (0..n)
                .map(|i| {
                    (
                        uami_id(NODE_RG, &format!("bulk-{i}")).to_lowercase(),
                        json!({}),
                    )
                })
                .collect(),
        )
    };
    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": map(151)}),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "FailedIdentityOperation");
    assert!(
        r.message().contains(
            "User Assigned Identities Number '151' Assign exceed limit '150' in one request."
        ),
        "{}",
        r.message()
    );

    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": map(150)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(keys(&identity_of(&emu, &vmss).await).len(), 151);

    emu.set_knobs(json!({"arm": {"identitiesPerRequest": 2}}))
        .await;
    // Removals count too (identities already held and sent again do not).
    let remove_three: serde_json::Map<String, Value> = (0..3)
        .map(|i| (uami_id(NODE_RG, &format!("bulk-{i}")), Value::Null))
        .collect();
    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": remove_three}),
    )
    .await;
    assert!(
        r.message().contains("Number '3' Assign exceed limit '2'"),
        "{}",
        r.message()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn deleting_resources_and_concurrent_updates_are_409() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 600000}}))
        .await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let add_b =
        json!({"type": "UserAssigned", "userAssignedIdentities": {uami_id(NODE_RG, "id-b"): {}}});
    let add_c =
        json!({"type": "UserAssigned", "userAssignedIdentities": {uami_id(NODE_RG, "id-c"): {}}});
    assert_eq!(
        patch(&emu, &vmss, MIC, add_b.clone()).await.status,
        StatusCode::OK
    );
    let r = patch(&emu, &vmss, MIC, add_c.clone()).await;
    r.assert_error(StatusCode::CONFLICT, "Conflict");

    emu.set_knobs(json!({"arm": {"allowConcurrentUpdates": true}}))
        .await;
    let r = patch(&emu, &vmss, MIC, add_c).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        keys(&r.body["identity"]).len(),
        2,
        "the earlier update completed first"
    );

    let vm = vm_id(NODE_RG, VM);
    let r = emu
        .admin(
            Method::POST,
            "/admin/arm/provisioning-state",
            Some(&json!({"resource": vm, "state": "Deleting"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = patch(&emu, &vm, MIC, add_b).await;
    r.assert_error(StatusCode::CONFLICT, "OperationNotAllowed");
    assert!(r.message().contains("marked for deletion"));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_deleted_identity_stays_listed_with_null_ids_even_after_recreation() {
    let emu = sync_emulator(&small_world()).await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let a = uami_id(NODE_RG, "id-a");
    let owner = emu.arm_token(OWNER);
    let r = emu
        .arm(Method::DELETE, &versioned(&a, MSI_API), Some(&owner), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let id = identity_of(&emu, &vmss).await;
    assert_eq!(
        id["userAssignedIdentities"][&a],
        json!({"principalId": null, "clientId": null})
    );

    let r = emu
        .arm(
            Method::PUT,
            &versioned(&a, MSI_API),
            Some(&owner),
            Some(&json!({"location": "eastus"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let new_client = r.body["properties"]["clientId"]
        .as_str()
        .expect("client id")
        .to_string();
    assert_ne!(new_client, "0000000a-0000-4000-8000-00000000000a");
    let id = identity_of(&emu, &vmss).await;
    assert_eq!(
        id["userAssignedIdentities"][&a]["clientId"],
        Value::Null,
        "an older generation stays dead"
    );

    // Assigning it again picks up the new generation.
    let r = patch(
        &emu,
        &vmss,
        MIC,
        json!({"type": "UserAssigned", "userAssignedIdentities": {a.to_lowercase(): {}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = identity_of(&emu, &vmss).await;
    assert_eq!(
        keys(&id),
        vec![a.clone()],
        "no second key differing only by case"
    );
    assert_eq!(
        id["userAssignedIdentities"][&a]["clientId"],
        new_client.as_str()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn put_replaces_the_whole_identity_map() {
    let emu = sync_emulator(&small_world()).await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let token = emu.arm_token(MIC);
    let body = json!({"location": "eastus", "identity": {"type": "UserAssigned", "userAssignedIdentities": {uami_id(NODE_RG, "id-b"): {}, uami_id(NODE_RG, "id-c"): {}}}});
    let r = emu
        .arm(
            Method::PUT,
            &versioned(&vmss, COMPUTE_API),
            Some(&token),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut got = keys(&identity_of(&emu, &vmss).await);
    got.sort();
    assert_eq!(
        got,
        vec![uami_id(NODE_RG, "id-b"), uami_id(NODE_RG, "id-c")]
    );
    let world = emu.world().await;
    let revoked = &world["virtualMachineScaleSets"][0]["identity"]["revoked"];
    assert_eq!(revoked[0]["id"], uami_id(NODE_RG, "id-a"));
    emu.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_removes_an_identity_out_of_band_with_the_revocation_delay() {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"imds": {"revocationDelayMs": 30000}}))
        .await;
    let vmss = vmss_id(NODE_RG, SCALE_SET);
    let r = emu
        .admin(
            Method::POST,
            "/admin/arm/remove-identity",
            Some(&json!({"resource": vmss.to_uppercase(), "identity": uami_id(NODE_RG, "ID-A")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(identity_of(&emu, &vmss).await, Value::Null);
    let world = emu.world().await;
    let revoked = &world["virtualMachineScaleSets"][0]["identity"]["revoked"][0];
    let left =
        revoked["visibleUntilMs"].as_i64().expect("ms") - world["nowMs"].as_i64().expect("ms");
    assert_eq!(
        left, 30_000,
        "the clock stands still, so the whole delay is left"
    );
    let r = emu
        .admin(
            Method::POST,
            "/admin/arm/remove-identity",
            Some(&json!({"resource": vmss, "identity": uami_id(NODE_RG, "id-a")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn vms_of_a_group_and_scale_set_instances_are_listed() {
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(READER);
    let path = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachines"
    );
    let r = emu
        .arm(
            Method::GET,
            &versioned(&path, COMPUTE_API),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<&str> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, vec![VM]);

    let r = emu
        .arm(
            Method::GET,
            &versioned(
                &format!("{}/virtualMachines", vmss_id(NODE_RG, SCALE_SET)),
                COMPUTE_API,
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let computers: Vec<&str> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|v| v["properties"]["osProfile"]["computerName"].as_str())
        .collect();
    assert_eq!(
        computers,
        vec![format!("{SCALE_SET}000000"), format!("{SCALE_SET}000001")]
    );
    assert_eq!(r.body["value"][1]["instanceId"], "1");

    let r = emu
        .arm(
            Method::GET,
            &versioned(&path, COMPUTE_API),
            Some(&emu.arm_token(NOBODY)),
            None,
        )
        .await;
    assert_eq!(r.code(), "AuthorizationFailed");
    emu.shutdown().await;
}
