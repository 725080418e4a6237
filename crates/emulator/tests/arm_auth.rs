//! ARM admission: authentication (the 401 family), api-version, RBAC on reads, routing and the
//! common response headers.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn a_missing_authorization_header_is_authentication_failed_with_a_bearer_challenge() {
    let emu = Emulator::start(&small_world()).await;
    let r = emu.arm(Method::GET, &vmss_path(), None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "AuthenticationFailed");
    let challenge = r.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with(&format!(
            "Bearer authorization_uri=\"{}/{TENANT}\", error=\"invalid_token\"",
            emu.entra_base()
        )),
        "{challenge}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_expired_foreign_audience_and_foreign_tenant_tokens_are_told_apart() {
    let emu = Emulator::start(&small_world()).await;
    let path = vmss_path();
    let r = emu.arm(Method::GET, &path, Some("not-a-jwt"), None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");

    let short = emu.token_with(MIC, ARM_AUDIENCE, TENANT, 60);
    emu.advance_clock(3600).await;
    let r = emu.arm(Method::GET, &path, Some(&short), None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "ExpiredAuthenticationToken");
    assert!(
        r.message().contains("is earlier than current UTC time"),
        "{}",
        r.message()
    );

    let vault = emu.token_with(MIC, "https://vault.azure.net", TENANT, 3599);
    let r = emu.arm(Method::GET, &path, Some(&vault), None).await;
    assert_eq!(
        (r.status, r.code()),
        (
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience"
        )
    );
    assert!(
        r.message().contains("'https://vault.azure.net'"),
        "{}",
        r.message()
    );

    let foreign = emu.token_with(MIC, ARM_AUDIENCE, OTHER_TENANT, 3599);
    let r = emu.arm(Method::GET, &path, Some(&foreign), None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationTokenTenant");
    assert!(r.header("www-authenticate").is_some());
    emu.shutdown().await;
}

#[tokio::test]
async fn every_arm_audience_spelling_and_the_emulators_own_url_are_accepted() {
    let emu = Emulator::start(&small_world()).await;
    let own = emu.arm_base().to_string();
    for audience in [
        "https://management.azure.com/".to_string(),
        "https://management.azure.com".to_string(),
        "https://management.core.windows.net/".to_string(),
        "https://management.core.windows.net".to_string(),
        format!("{own}/"),
        own.clone(),
    ] {
        let token = emu.token_with(READER, &audience, TENANT, 3599);
        let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{audience}: {}", r.body);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn the_api_version_is_mandatory_and_must_be_recent_enough() {
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(READER);
    let r = emu
        .arm(
            Method::GET,
            &vmss_id(NODE_RG, SCALE_SET),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "MissingApiVersionParameter");
    assert_eq!(
        r.message(),
        "The api-version query parameter (?api-version=) is required for all requests."
    );
    let r = emu
        .arm(
            Method::GET,
            &versioned(&vmss_id(NODE_RG, SCALE_SET), "2017-12-01"),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter");
    let r = emu
        .arm(
            Method::GET,
            &versioned(&uami_id(NODE_RG, "id-a"), "2015-08-31-preview"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    emu.shutdown().await;
}

#[tokio::test]
async fn reads_need_a_role_and_the_refusal_names_client_object_action_and_scope() {
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(NOBODY);
    let r = emu.arm(Method::GET, &vmss_path(), Some(&token), None).await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    let object_id = emu.shared().world().service_principals[NOBODY]
        .object_id
        .clone();
    assert_eq!(
        r.message(),
        format!(
            "The client '{NOBODY}' with object id '{object_id}' does not have authorization to perform \
             action 'Microsoft.Compute/virtualMachineScaleSets/read' over scope '{}' or the scope is \
             invalid. If access was recently granted, please refresh your credentials.",
            vmss_id(NODE_RG, SCALE_SET)
        )
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn routing_ignores_case_and_answers_keep_the_stored_casing_and_arm_headers() {
    let emu = Emulator::start(&small_world()).await;
    let token = emu.arm_token(READER);
    let shouting = format!(
        "/SUBSCRIPTIONS/{SUBSCRIPTION}/resourcegroups/node-rg/providers/MICROSOFT.COMPUTE/virtualmachinescalesets/{}?api-version={COMPUTE_API}",
        SCALE_SET.to_uppercase()
    );
    let r = emu.arm(Method::GET, &shouting, Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], vmss_id(NODE_RG, SCALE_SET));
    assert_eq!(r.body["name"], SCALE_SET);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    for name in [
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "x-ms-routing-request-id",
    ] {
        assert!(r.header(name).is_some(), "{name} missing");
    }
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some()
    );

    let r = emu
        .arm(Method::GET, &versioned(&format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}/providers/Microsoft.Network/dnszones/z"), COMPUTE_API), Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = emu
        .arm(
            Method::GET,
            &versioned(&vmss_id(NODE_RG, "no-such-vmss"), COMPUTE_API),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceNotFound");
    let r = emu
        .arm(
            Method::GET,
            &versioned(&vmss_id("no-such-rg", SCALE_SET), COMPUTE_API),
            Some(&emu.arm_token(OWNER)),
            None,
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceGroupNotFound");
    let counters = emu.admin(Method::GET, "/admin/counters", None).await.body;
    assert_eq!(counters["arm.vmss.get"]["byStatus"]["200"], 1, "{counters}");
    emu.shutdown().await;
}
