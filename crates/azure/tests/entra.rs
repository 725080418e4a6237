//! Service-principal tokens from the emulator's Entra ID (the seed world's app): v1 and v2,
//! secret and certificate (modern and legacy PKCS#12), and each failure class (wrong or
//! expired secret, unknown tenant or client, throttling and outages, no answer).

mod support;

use std::time::{Duration, SystemTime};

use podid_azure::credential::{AuthError, ClientAuth, EntraEndpoint, Surface, Token};
use podid_emulator::testing::*;
use reqwest::Method;
use serde_json::json;
use support::*;

const RESOURCE: &str = "https://management.azure.com/";

async fn token(
    emu: &Emulator,
    auth: ClientAuth,
    endpoint: EntraEndpoint,
) -> Result<Token, AuthError> {
    service_principal(emu, TENANT, SEED_SP, auth, endpoint)
        .token(RESOURCE)
        .await
}

#[tokio::test]
async fn v1_with_a_secret_keeps_every_field_a_string() {
    let emu = Emulator::start_seed().await;
    let token = token(&emu, secret(SEED_SP_SECRET), EntraEndpoint::V1)
        .await
        .expect("a token");
    let claims = jwt_claims(token.access_token());
    assert_eq!(claims["appid"], SEED_SP);
    assert_eq!(claims["oid"], SEED_SP_OBJECT);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["appidacr"], "1");

    let f = token.fields();
    assert_eq!(f.token_type.as_deref(), Some("Bearer"));
    assert_eq!(f.resource.as_deref(), Some(RESOURCE));
    let exp = claims["exp"].as_u64().expect("exp").to_string();
    assert_eq!(f.expires_on.as_deref(), Some(exp.as_str()));
    assert!(
        f.expires_in
            .as_deref()
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    assert!(f.not_before.is_some() && f.ext_expires_in.is_some());
    assert!(token.expires_on() > SystemTime::now());

    // adal's request: the v1 endpoint with api-version=1.0.
    let journal = emu
        .journal(Some(podid_emulator::testing::Surface::Entra))
        .await;
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["path"], format!("/{TENANT}/oauth2/token"));
    assert_eq!(journal[0]["query"], "api-version=1.0");
    emu.shutdown().await;
}

#[tokio::test]
async fn v2_with_a_secret_asks_for_the_default_scope_and_reads_numbers() {
    let emu = Emulator::start_seed().await;
    let before = SystemTime::now();
    let token = token(&emu, secret(SEED_SP_SECRET), EntraEndpoint::V2)
        .await
        .expect("a token");
    let claims = jwt_claims(token.access_token());
    assert_eq!(claims["appid"], SEED_SP);
    // `<resource>/.default` keeps the resource's trailing slash in the audience.
    assert_eq!(claims["aud"], RESOURCE);

    let f = token.fields();
    let expires_in: u64 = f
        .expires_in
        .as_deref()
        .expect("expires_in")
        .parse()
        .expect("a number");
    assert_eq!(
        (f.resource.as_deref(), f.expires_on.as_deref()),
        (None, None)
    );
    assert!(token.expires_on() >= before + Duration::from_secs(expires_in));
    let (total, ok) = emu.counter("entra.token.v2", 200).await;
    assert_eq!((total, ok), (1, 1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_certificate_signs_an_assertion_entra_accepts_on_v1_and_v2() {
    let emu = Emulator::start_seed().await;
    for (p12, endpoint) in [
        (P12, EntraEndpoint::V1),
        (P12, EntraEndpoint::V2),
        (P12_LEGACY, EntraEndpoint::V1),
    ] {
        let token = token(&emu, certificate(p12), endpoint)
            .await
            .unwrap_or_else(|e| panic!("{endpoint:?}: {e}"));
        let claims = jwt_claims(token.access_token());
        assert_eq!(claims["appid"], SEED_SP, "{endpoint:?}");
        assert_eq!(
            claims["appidacr"], "2",
            "a certificate, not a secret: {endpoint:?}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_a_permanent_invalid_client() {
    let emu = Emulator::start_seed().await;
    for endpoint in [EntraEndpoint::V1, EntraEndpoint::V2] {
        let result = token(&emu, secret("not-the-secret"), endpoint).await;
        let e = service_error(result);
        assert_eq!((e.surface, e.status), (Surface::Entra, 401));
        assert_eq!(e.code.as_deref(), Some("invalid_client"));
        assert_eq!(e.aadsts(), Some(7_000_215));
        assert!(
            e.description
                .as_deref()
                .unwrap_or_default()
                .starts_with("AADSTS7000215: ")
        );
        assert!(!e.is_temporary());
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn an_expired_secret_is_refused_with_its_own_code() {
    let emu = Emulator::start_seed().await;
    let r = emu
        .admin(
            Method::POST,
            &format!("/admin/entra/servicePrincipals/{SEED_SP}/expireSecrets"),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let e = service_error(token(&emu, secret(SEED_SP_SECRET), EntraEndpoint::V1).await);
    assert_eq!((e.status, e.aadsts()), (401, Some(7_000_222)));
    assert!(!e.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_tenants_and_clients_are_permanent() {
    let emu = Emulator::start_seed().await;
    let unknown_tenant = service_principal(
        &emu,
        "00000000-0000-4000-8000-0000000000ff",
        SEED_SP,
        secret(SEED_SP_SECRET),
        EntraEndpoint::V1,
    );
    let e = service_error(unknown_tenant.token(RESOURCE).await);
    assert_eq!(
        (e.status, e.code.as_deref(), e.aadsts()),
        (400, Some("invalid_request"), Some(90_002))
    );
    assert!(!e.is_temporary());

    let unknown_client = service_principal(
        &emu,
        TENANT,
        "00000000-0000-4000-8000-0000000000ee",
        secret(SEED_SP_SECRET),
        EntraEndpoint::V2,
    );
    let e = service_error(unknown_client.token(RESOURCE).await);
    assert_eq!(
        (e.status, e.code.as_deref(), e.aadsts()),
        (400, Some("unauthorized_client"), Some(700_016))
    );
    assert!(!e.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn throttling_and_outages_are_temporary_with_retry_after() {
    let emu = Emulator::start_seed().await;
    for status in [429u16, 503, 500] {
        emu.add_fault(json!({"surface": "entra", "path": "oauth2", "times": 1,
            "action": {"kind": "error", "status": status, "retryAfter": 3}}))
            .await;
        let err = token(&emu, secret(SEED_SP_SECRET), EntraEndpoint::V1)
            .await
            .unwrap_err();
        let e = err.service().unwrap_or_else(|| panic!("{status}: {err}"));
        assert_eq!(e.status, status);
        assert!(err.is_temporary(), "{status}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{status}");
    }
    token(&emu, secret(SEED_SP_SECRET), EntraEndpoint::V1)
        .await
        .expect("the faults are used up");
    emu.shutdown().await;
}

#[tokio::test]
async fn no_answer_is_a_temporary_transport_error() {
    let emu = Emulator::start_seed().await;
    let sp = podid_azure::credential::ServicePrincipalCredential::new(
        https(&emu),
        unanswered_url("https"),
        TENANT,
        SEED_SP,
        secret(SEED_SP_SECRET),
        EntraEndpoint::V1,
    );
    let err = sp.token(RESOURCE).await.unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Transport {
                surface: Surface::Entra,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_server_not_signed_by_a_trusted_ca_is_not_trusted() {
    let emu = Emulator::start_seed().await;
    let untrusting = podid_azure::http::HttpOptions {
        use_environment_proxy: false,
        ..Default::default()
    }
    .https_client()
    .expect("a client");
    let sp = podid_azure::credential::ServicePrincipalCredential::new(
        untrusting,
        url(emu.entra_base()),
        TENANT,
        SEED_SP,
        secret(SEED_SP_SECRET),
        EntraEndpoint::V1,
    );
    let err = sp.token(RESOURCE).await.unwrap_err();
    assert!(matches!(err, AuthError::Transport { .. }), "{err:?}");
    let (total, _) = emu.counter("entra.token.v1", 200).await;
    assert_eq!(total, 0, "the request never reached the token endpoint");
    emu.shutdown().await;
}
