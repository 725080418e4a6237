//! IMDS token answers: identity selection, propagation and deletion (driven through ARM), the
//! body's types and claims, caching and the token knobs, over real HTTP.

use podid_emulator::testing::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The client ID a 200 answer was minted for.
fn client_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["client_id"]
        .as_str()
        .expect("client_id")
        .to_string()
}

/// PATCHes a VM's user-assigned identities through ARM as the subscription's owner: `changes`
/// maps identity names to `{}` (add) or `null` (remove). Operations complete synchronously, so
/// the propagation and revocation windows start at the PATCH.
async fn patch_vm_identities(emu: &Emulator, vm: &str, changes: &[(&str, Value)]) {
    let map: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(name, change)| (uami_id(NODE_RG, name), change.clone()))
        .collect();
    let body = json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": map}});
    patch_vm(emu, vm, &body).await;
}

async fn patch_vm(emu: &Emulator, vm: &str, body: &Value) {
    let token = emu.arm_token(OWNER);
    let path = versioned(&vm_id(NODE_RG, vm), COMPUTE_API);
    let reply = emu
        .arm(Method::PATCH, &path, Some(&token), Some(body))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["properties"]["provisioningState"], "Succeeded",
        "{}",
        reply.body
    );
}

fn assert_identity_not_found(reply: &Reply) {
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"error": "invalid_request", "error_description": "Identity not found"})
    );
}

#[tokio::test]
async fn without_a_selector_the_system_assigned_identity_then_the_only_user_assigned_one_is_used() {
    let emu = Emulator::start(&imds_world()).await;
    let system = emu.imds_token("vm-system", "").await;
    let claims = jwt_claims(system.json()["access_token"].as_str().expect("token"));
    assert_eq!(claims["xms_mirid"], vm_id(NODE_RG, "vm-system"));
    assert_ne!(client_of(&system), ALPHA_CLIENT);
    assert_eq!(
        client_of(&emu.imds_token("vm-single", "").await),
        ALPHA_CLIENT
    );
    assert_eq!(
        client_of(&emu.imds_token("aks-pool-vmss_3", "").await),
        GAMMA_CLIENT
    );

    let multi = emu.imds_token("vm-multi", "").await;
    assert_eq!(multi.status, 400);
    assert_eq!(
        multi.json(),
        json!({"error": "invalid_request", "error_description":
            "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"})
    );
    assert_identity_not_found(&emu.imds_token("vm-none", "").await);
}

#[tokio::test]
async fn every_selector_kind_picks_its_identity_ignoring_case() {
    let emu = Emulator::start(&imds_world()).await;
    let alpha = uami_id(NODE_RG, "alpha");
    let beta = uami_id(NODE_RG, "beta");
    let cases = [
        (
            format!("&client_id={}", BETA_CLIENT.to_uppercase()),
            BETA_CLIENT,
        ),
        (
            format!("&object_id={}", ALPHA_OBJECT.to_uppercase()),
            ALPHA_CLIENT,
        ),
        (format!("&msi_res_id={}", beta.to_lowercase()), BETA_CLIENT),
        (
            format!("&mi_res_id={}/", alpha.to_uppercase()),
            ALPHA_CLIENT,
        ),
        (format!("&resource_id={beta}"), BETA_CLIENT),
        // azure-core does not percent-encode `/` in query values, but others do.
        (
            format!("&msi_res_id={}", alpha.replace('/', "%2F")),
            ALPHA_CLIENT,
        ),
    ];
    for (extra, expected) in cases {
        for machine in ["vm-system", "vm-multi"] {
            assert_eq!(
                client_of(&emu.imds_token(machine, &extra).await),
                expected,
                "{machine} {extra}"
            );
        }
    }
    for extra in [
        format!("&client_id={GAMMA_CLIENT}"),
        "&object_id=00000000-0000-0000-0000-000000000000".to_string(),
        format!("&msi_res_id={}", uami_id(NODE_RG, "gamma")),
    ] {
        assert_identity_not_found(&emu.imds_token("vm-multi", &extra).await);
    }
}

#[tokio::test]
async fn an_identity_assigned_through_arm_is_served_only_after_the_propagation_delay() {
    let emu = Emulator::start(&imds_world()).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync"}, "imds": {"propagationDelayMs": 30_000}}))
        .await;
    patch_vm_identities(&emu, "vm-single", &[("beta", json!({}))]).await;
    let select_beta = format!("&client_id={BETA_CLIENT}");
    assert_identity_not_found(&emu.imds_token("vm-single", &select_beta).await);
    // alpha is still the only effective user-assigned identity.
    assert_eq!(
        client_of(&emu.imds_token("vm-single", "").await),
        ALPHA_CLIENT
    );
    emu.advance_clock_ms(29_999).await;
    assert_identity_not_found(&emu.imds_token("vm-single", &select_beta).await);
    emu.advance_clock_ms(1).await;
    assert_eq!(
        client_of(&emu.imds_token("vm-single", &select_beta).await),
        BETA_CLIENT
    );
    assert_eq!(
        emu.imds_token("vm-single", "").await.status,
        400,
        "now two are effective"
    );
}

#[tokio::test]
async fn an_identity_removed_through_arm_is_served_until_its_revocation_delay_ends() {
    let emu = Emulator::start(&imds_world()).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync"}, "imds": {"revocationDelayMs": 60_000}}))
        .await;
    let select_alpha = format!("&client_id={ALPHA_CLIENT}");
    patch_vm_identities(&emu, "vm-multi", &[("alpha", Value::Null)]).await;
    emu.advance_clock_ms(59_999).await;
    assert_eq!(
        client_of(&emu.imds_token("vm-multi", &select_alpha).await),
        ALPHA_CLIENT
    );
    assert_eq!(
        emu.imds_token("vm-multi", "").await.status,
        400,
        "both are still effective"
    );
    emu.advance_clock_ms(1).await;
    assert_identity_not_found(&emu.imds_token("vm-multi", &select_alpha).await);
    assert_eq!(
        client_of(&emu.imds_token("vm-multi", "").await),
        BETA_CLIENT
    );
}

#[tokio::test]
async fn a_deleted_and_recreated_identity_is_not_found_on_machines_that_had_the_old_one() {
    let emu = Emulator::start(&imds_world()).await;
    assert_eq!(
        client_of(&emu.imds_token("vm-single", "").await),
        ALPHA_CLIENT
    );
    let owner = emu.arm_token(OWNER);
    let alpha = versioned(&uami_id(NODE_RG, "alpha"), MSI_API);
    let deleted = emu.arm(Method::DELETE, &alpha, Some(&owner), None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let created = emu
        .arm(Method::PUT, &alpha, Some(&owner), Some(&json!({})))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_identity_not_found(&emu.imds_token("vm-single", "").await);
    assert_identity_not_found(
        &emu.imds_token("vm-single", &format!("&client_id={ALPHA_CLIENT}"))
            .await,
    );
    // On vm-multi only beta is left, so it becomes the default.
    assert_eq!(
        client_of(&emu.imds_token("vm-multi", "").await),
        BETA_CLIENT
    );
}

#[tokio::test]
async fn the_body_is_all_strings_and_matches_a_verifiable_jwt() {
    let emu = Emulator::start(&imds_world()).await;
    let reply = emu.imds_token("aks-pool-vmss_0", "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reply.header("server"), Some("IMDS/150.870.65.1854"));
    let body = reply.json();
    let fields = body.as_object().expect("object");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "access_token",
            "client_id",
            "expires_in",
            "expires_on",
            "ext_expires_in",
            "not_before",
            "resource",
            "token_type"
        ]
    );
    assert!(fields.values().all(Value::is_string), "{body}");
    assert_eq!(body["resource"], ARM_RESOURCE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "86399");
    assert_eq!(body["ext_expires_in"], "86399");

    let jwt = body["access_token"].as_str().expect("token");
    let claims = jwt_claims(jwt);
    let as_int = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .expect("numeric string")
    };
    assert_eq!(claims["exp"].as_i64(), Some(as_int(&body["expires_on"])));
    assert_eq!(claims["nbf"].as_i64(), Some(as_int(&body["not_before"])));

    let shared = emu.shared();
    let verified = shared
        .tokens
        .verify(jwt, shared.clock.unix())
        .expect("the JWT verifies");
    assert_eq!(verified.aud, ARM_RESOURCE);
    assert_eq!(verified.tid, TENANT);
    assert_eq!(verified.client_id(), GAMMA_CLIENT);
    assert_eq!(verified.iss, format!("https://sts.windows.net/{TENANT}/"));
    let gamma = shared
        .world()
        .identities
        .values()
        .find(|i| i.name == "gamma")
        .expect("gamma")
        .clone();
    assert_eq!(verified.oid, gamma.principal_id);
    assert_eq!(verified.other["xms_mirid"], uami_id(NODE_RG, "gamma"));
    assert_eq!(
        verified.other["xms_az_rid"],
        vmss_id(NODE_RG, "aks-pool-vmss")
    );
    let header = jwt_header(jwt);
    let jwks = shared.tokens.jwks(TENANT).expect("jwks");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
}

#[tokio::test]
async fn tokens_are_cached_per_identity_and_resource_and_count_down() {
    let emu = Emulator::start(&imds_world()).await;
    let first = emu.imds_token("vm-system", "").await.json();
    emu.advance_clock(100).await;
    let second = emu.imds_token("vm-system", "").await.json();
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(first["expires_on"], second["expires_on"]);
    let remaining: i64 = second["expires_in"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("expires_in");
    assert!(remaining <= 86_399 - 100 && remaining > 0, "{remaining}");

    let other_resource = emu.imds_get("vm-system", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net")
        .await
        .json();
    assert_ne!(other_resource["access_token"], first["access_token"]);
    assert_eq!(other_resource["resource"], "https://vault.azure.net");
    let other_identity = emu
        .imds_token("vm-system", &format!("&client_id={ALPHA_CLIENT}"))
        .await
        .json();
    assert_ne!(other_identity["access_token"], first["access_token"]);
    // Another machine with the same identity gets its own token (different xms_az_rid).
    let elsewhere = emu.imds_token("vm-single", "").await.json();
    assert_ne!(elsewhere["access_token"], other_identity["access_token"]);

    let bypass = emu
        .imds_token("vm-system", "&bypass_cache=true")
        .await
        .json();
    assert_ne!(bypass["access_token"], first["access_token"]);
    assert_eq!(bypass["expires_in"], "86399");
    // The fresh token replaces the cached one.
    assert_eq!(
        emu.imds_token("vm-system", "").await.json()["access_token"],
        bypass["access_token"]
    );

    // Near expiry a new token is minted.
    emu.advance_clock(86_399 - 200).await;
    let renewed = emu.imds_token("vm-system", "").await.json();
    assert_ne!(renewed["access_token"], bypass["access_token"]);
    assert_eq!(renewed["expires_in"], "86399");
}

#[tokio::test]
async fn an_identity_reassigned_through_arm_gets_a_fresh_token() {
    let emu = Emulator::start(&imds_world()).await;
    emu.set_knobs(json!({"arm": {"lroMode": "sync"}})).await;
    let first = emu.imds_token("vm-single", "").await.json();
    patch_vm(&emu, "vm-single", &json!({"identity": {"type": "None"}})).await;
    assert_identity_not_found(&emu.imds_token("vm-single", "").await);
    emu.advance_clock(1).await;
    patch_vm_identities(&emu, "vm-single", &[("alpha", json!({}))]).await;
    let second = emu.imds_token("vm-single", "").await.json();
    assert_eq!(second["client_id"], ALPHA_CLIENT);
    assert_ne!(first["access_token"], second["access_token"]);
}

#[tokio::test]
async fn lifetime_and_version_knobs_shape_new_tokens() {
    let emu = Emulator::start(&imds_world()).await;
    let v1 = emu.imds_token("vm-single", "").await.json();
    emu.set_knobs(json!({"imds": {"tokenLifetimeSecs": 600, "tokenVersion": 2}}))
        .await;
    let v2 = emu.imds_token("vm-single", "").await.json();
    assert_ne!(v1["access_token"], v2["access_token"]);
    assert_eq!(v2["expires_in"], "600");
    let claims = jwt_claims(v2["access_token"].as_str().expect("token"));
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["azp"], ALPHA_CLIENT);
    assert_eq!(
        claims["iss"],
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );

    let reply = emu
        .admin(
            Method::PATCH,
            "/admin/knobs",
            Some(&json!({"imds": {"tokenVersion": 3}})),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}

#[tokio::test]
async fn resources_the_tenant_does_not_know_get_no_tokens() {
    let emu = Emulator::start(&imds_world()).await;
    let vault =
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
    assert_eq!(
        emu.imds_get("vm-single", vault).await.status,
        200,
        "a well-known Azure resource"
    );
    let unknown =
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://unknown.example";
    let reply = emu.imds_get("vm-single", unknown).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "invalid_resource");
    assert!(
        reply
            .description()
            .starts_with("AADSTS500011: The resource principal named https://unknown.example")
    );
    assert_eq!(emu.imds_token("vm-single", "").await.status, 200);
    // Selection comes first: an unknown identity is reported as such.
    assert_identity_not_found(&emu.imds_get("vm-none", unknown).await);
}

#[tokio::test]
async fn identity_info_names_the_tenant() {
    let emu = Emulator::start(&imds_world()).await;
    let reply = emu
        .imds_get(
            "vm-single",
            "/metadata/identity/info?api-version=2018-02-01",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"tenantId": TENANT}));
    let reply = emu.imds_get("vm-single", "/metadata/identity/info").await;
    assert_eq!(reply.status, 400);
    assert_eq!(emu.counter("imds.identity_info", 200).await, (1, 1));
}

#[tokio::test]
async fn a_reset_forgets_cached_tokens() {
    let emu = Emulator::start(&imds_world()).await;
    let first = emu.imds_token("vm-single", "").await.json();
    let reply = emu
        .admin(Method::POST, "/admin/reset", Some(&json!({})))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let second = emu.imds_token("vm-single", "").await.json();
    assert_ne!(first["access_token"], second["access_token"]);
}
