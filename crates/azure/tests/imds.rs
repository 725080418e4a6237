//! Managed-identity tokens from the emulator's IMDS: every selector, the raw fields NMI passes
//! on, and each failure class (identity not found, several identities, 429 with Retry-After,
//! 5xx and 410 from fault rules, no answer).

mod support;

use std::time::{Duration, UNIX_EPOCH};

use podid_azure::credential::{AuthError, IdentitySelector, ImdsClient, Surface, Token};
use podid_emulator::testing::{self as emulator, *};
use serde_json::json;
use support::{http_options, imds, service_error, unanswered_url, url};

/// `https://management.azure.com/`, with the slash: passed through, not normalised.
const RESOURCE: &str = "https://management.azure.com/";

async fn token_ok(client: &ImdsClient, selector: IdentitySelector) -> Token {
    client
        .token(&selector, RESOURCE)
        .await
        .unwrap_or_else(|e| panic!("{selector:?}: {e}"))
}

#[tokio::test]
async fn each_selector_gets_its_identitys_token_with_every_field_as_sent() {
    let emu = Emulator::start(&imds_world()).await;
    let single = imds(&emu, "vm-single");
    let alpha_id = uami_id(NODE_RG, "alpha");
    for selector in [
        IdentitySelector::Default,
        IdentitySelector::ClientId(ALPHA_CLIENT.into()),
        IdentitySelector::ObjectId(ALPHA_OBJECT.into()),
        IdentitySelector::ResourceId(alpha_id.to_lowercase()),
    ] {
        let token = token_ok(&single, selector.clone()).await;
        let claims = jwt_claims(token.access_token());
        assert_eq!(claims["appid"], ALPHA_CLIENT, "{selector:?}");
        assert_eq!(claims["oid"], ALPHA_OBJECT, "{selector:?}");
        assert_eq!(claims["aud"], RESOURCE, "{selector:?}");
        assert_eq!(
            claims["xms_mirid"].as_str().map(str::to_lowercase),
            Some(alpha_id.to_lowercase())
        );

        let f = token.fields();
        assert_eq!(f.client_id.as_deref(), Some(ALPHA_CLIENT));
        assert_eq!(f.resource.as_deref(), Some(RESOURCE));
        assert_eq!(f.token_type.as_deref(), Some("Bearer"));
        let exp = claims["exp"].as_u64().expect("exp");
        assert_eq!(f.expires_on.as_deref(), Some(exp.to_string().as_str()));
        assert_eq!(
            f.not_before.as_deref(),
            Some(claims["nbf"].as_u64().expect("nbf").to_string().as_str())
        );
        assert!(
            f.expires_in
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some()
        );
        assert!(
            f.ext_expires_in
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some()
        );
        assert_eq!(token.expires_on(), UNIX_EPOCH + Duration::from_secs(exp));
    }

    // Upstream's query shape: api-version 2018-02-01, the selector, the resource; `mi_res_id`
    // for a resource ID.
    let queries: Vec<String> = emu
        .journal(Some(emulator::Surface::Imds))
        .await
        .iter()
        .map(|e| e["query"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert!(
        queries
            .iter()
            .all(|q| q.starts_with("api-version=2018-02-01&")),
        "{queries:?}"
    );
    assert!(
        queries[1].contains(&format!("client_id={ALPHA_CLIENT}")),
        "{queries:?}"
    );
    assert!(
        queries[2].contains(&format!("object_id={ALPHA_OBJECT}")),
        "{queries:?}"
    );
    assert!(queries[3].contains("mi_res_id="), "{queries:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn no_selector_gets_the_system_assigned_identity() {
    let emu = Emulator::start(&imds_world()).await;
    let token = token_ok(&imds(&emu, "vm-system"), IdentitySelector::Default).await;
    let claims = jwt_claims(token.access_token());
    assert_eq!(
        claims["xms_mirid"].as_str().map(str::to_lowercase),
        Some(vm_id(NODE_RG, "vm-system").to_lowercase())
    );
    assert_eq!(
        token.fields().client_id.as_deref(),
        claims["appid"].as_str()
    );
    // A scale-set instance answers for its scale set's identities.
    let gamma = token_ok(
        &imds(&emu, "aks-pool-vmss_3"),
        IdentitySelector::ClientId(GAMMA_CLIENT.into()),
    )
    .await;
    assert_eq!(jwt_claims(gamma.access_token())["appid"], GAMMA_CLIENT);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_identity_not_on_the_machine_is_a_permanent_identity_not_found() {
    let emu = Emulator::start(&imds_world()).await;
    let e = service_error(
        imds(&emu, "vm-single")
            .token(&IdentitySelector::ClientId(BETA_CLIENT.into()), RESOURCE)
            .await,
    );
    assert_eq!((e.surface, e.status), (Surface::Imds, 400));
    assert_eq!(e.code.as_deref(), Some("invalid_request"));
    assert_eq!(e.description.as_deref(), Some("Identity not found"));
    assert!(e.is_identity_not_found());
    assert!(!e.is_temporary());

    let none = service_error(
        imds(&emu, "vm-none")
            .token(&IdentitySelector::Default, RESOURCE)
            .await,
    );
    assert!(none.is_identity_not_found());
    emu.shutdown().await;
}

#[tokio::test]
async fn several_identities_without_a_selector_is_a_permanent_error() {
    let emu = Emulator::start(&imds_world()).await;
    let result = imds(&emu, "vm-multi")
        .token(&IdentitySelector::Default, RESOURCE)
        .await;
    let e = service_error(result);
    assert_eq!(e.status, 400);
    assert!(
        e.description
            .as_deref()
            .unwrap_or_default()
            .starts_with("Multiple user assigned identities exist")
    );
    assert!(!e.is_temporary() && !e.is_identity_not_found());
    emu.shutdown().await;
}

#[tokio::test]
async fn throttling_is_temporary_and_carries_retry_after() {
    let emu = Emulator::start(&imds_world()).await;
    emu.set_knobs(json!({"imds": {"requestsPerSecond": 1}}))
        .await;
    let client = imds(&emu, "vm-single");
    token_ok(&client, IdentitySelector::Default).await;
    let err = client
        .token(&IdentitySelector::Default, RESOURCE)
        .await
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    let e = err.service().expect("an IMDS answer");
    assert_eq!(
        (e.status, e.code.as_deref()),
        (429, Some("too_many_requests"))
    );

    emu.add_fault(
        json!({"surface": "imds", "path": "oauth2/token", "times": 1,
        "action": {"kind": "error", "status": 429, "retryAfter": 5}}),
    )
    .await;
    emu.advance_clock(1).await;
    let err = client
        .token(&IdentitySelector::Default, RESOURCE)
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    emu.shutdown().await;
}

#[tokio::test]
async fn server_errors_and_imds_updating_are_temporary() {
    let emu = Emulator::start(&imds_world()).await;
    let client = imds(&emu, "vm-single");
    for (status, code) in [
        (500, "unknown"),
        (503, "service_unavailable"),
        (410, "service_unavailable"),
        (404, "not_found"),
    ] {
        emu.add_fault(
            json!({"surface": "imds", "machine": "vm-single", "path": "oauth2/token", "times": 1,
            "action": {"kind": "error", "status": status, "code": code, "message": "injected"}}),
        )
        .await;
        let err = client
            .token(&IdentitySelector::Default, RESOURCE)
            .await
            .unwrap_err();
        let e = err.service().unwrap_or_else(|| panic!("{status}: {err}"));
        assert_eq!((e.status, e.code.as_deref()), (status, Some(code)));
        assert!(err.is_temporary(), "{status} must be temporary");
    }
    token_ok(&client, IdentitySelector::Default).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn no_answer_is_a_temporary_transport_error() {
    let emu = Emulator::start(&imds_world()).await;
    let client = ImdsClient::new(&http_options(&emu), unanswered_url("http")).expect("a client");
    let err = client
        .token(&IdentitySelector::Default, RESOURCE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Transport {
                surface: Surface::Imds,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_temporary());
    assert!(
        !err.to_string().contains("resource="),
        "the query stays out of messages: {err}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_request_held_past_the_timeout_is_a_temporary_transport_error() {
    let emu = Emulator::start(&imds_world()).await;
    emu.hold(json!({"surface": "imds", "path": "oauth2/token", "times": 1}))
        .await;
    let options = podid_azure::http::HttpOptions {
        timeout: Duration::from_millis(300),
        ..http_options(&emu)
    };
    let client = ImdsClient::new(&options, url(emu.imds_base("vm-single"))).expect("a client");
    let err = client
        .token(&IdentitySelector::Default, RESOURCE)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::Transport { source, .. } if source.is_timeout()),
        "{err:?}"
    );
    assert!(err.is_temporary());
    emu.release_all().await;
    emu.shutdown().await;
}
