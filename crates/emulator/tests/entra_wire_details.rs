//! Entra ID and IMDS wire details: MSAL for Go's client-credentials scope, the resources a
//! tenant knows (AADSTS500011 for the others, on Entra ID and IMDS alike), the 413 for an
//! over-large form, and IMDS's `Retry-After` on an injected 429.

use podid_emulator::testing::*;
use serde_json::{Value, json};

const MSAL_GO_ARM_SCOPE: &str =
    "https://management.azure.com/.default openid offline_access profile";

fn secret_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", MIC),
        ("client_secret", "mic-secret"),
    ];
    form.extend_from_slice(extra);
    form
}

async fn json_reply(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn assert_aad_error(body: &Value, code: u32, error: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
}

/// The answer of vm-single's IMDS to a token request for `resource`.
async fn vm_single_token(emu: &Emulator, resource: &str) -> Reply {
    emu.imds_get(
        "vm-single",
        &format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}"),
    )
    .await
}

#[tokio::test]
async fn msal_for_go_scopes_with_the_oidc_reserved_scopes_get_the_resource_token() {
    let emu = Emulator::start(&small_world()).await;
    let response = emu
        .post(
            &emu.v2_url(TENANT),
            &secret_form(&[("scope", MSAL_GO_ARM_SCOPE), ("client_info", "1")]),
        )
        .await;
    let (status, body) = json_reply(response).await;
    assert_eq!(status, 200, "{body}");
    // Like every client-credentials answer: no `scope`, no refresh or ID token.
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "ext_expires_in", "token_type"]
    );
    let claims = jwt_claims(body["access_token"].as_str().expect("a token"));
    assert_eq!(claims["aud"], "https://management.azure.com");
    assert_eq!(claims["appid"], MIC);
    emu.shutdown().await;
}

#[tokio::test]
async fn two_resources_stay_refused_whatever_reserved_scopes_come_along() {
    let emu = Emulator::start(&small_world()).await;
    let scope = "https://vault.azure.net/.default https://storage.azure.com/.default openid offline_access profile";
    let response = emu
        .post(&emu.v2_url(TENANT), &secret_form(&[("scope", scope)]))
        .await;
    let (status, body) = json_reply(response).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, 70011, "invalid_scope");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with(&format!(
            "AADSTS70011: The provided request must include a 'scope' input parameter. The \
             provided value for the input parameter 'scope' is not valid. The scope {scope} is \
             not valid."
        )),
        "{description}"
    );
    let response = emu
        .post(
            &emu.v2_url(TENANT),
            &secret_form(&[("scope", "openid offline_access profile")]),
        )
        .await;
    let (status, body) = json_reply(response).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, 1002012, "invalid_scope");
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_resources_are_aadsts500011_after_the_client_is_authenticated() {
    let emu = Emulator::start(&small_world()).await;
    let v1 = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[("resource", "https://unknown.example")]),
        )
        .await;
    let v2 = emu
        .post(
            &emu.v2_url(TENANT),
            &secret_form(&[(
                "scope",
                "api://unknown/.default openid profile offline_access",
            )]),
        )
        .await;
    for (response, resource) in [(v1, "https://unknown.example"), (v2, "api://unknown")] {
        let (status, body) = json_reply(response).await;
        assert_eq!(status, 400, "{body}");
        assert_aad_error(&body, 500011, "invalid_resource");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.starts_with(&format!(
                "AADSTS500011: The resource principal named {resource} was not found in the \
                 tenant named {TENANT}."
            )),
            "{description}"
        );
    }
    let wrong_secret = [
        ("grant_type", "client_credentials"),
        ("client_id", MIC),
        ("client_secret", "wrong"),
        ("resource", "https://unknown.example"),
    ];
    let (status, body) = json_reply(emu.post(&emu.v1_url(TENANT), &wrong_secret).await).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, 7000215, "invalid_client");
    emu.shutdown().await;
}

#[tokio::test]
async fn resources_the_world_lists_get_tokens_from_entra_and_imds() {
    let world = imds_world() + "resources: [api://podid-test-api]\n";
    let emu = Emulator::start(&world).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", OWNER),
        ("client_secret", "owner-secret"),
        ("scope", "API://podid-test-api/.default"),
    ];
    let (status, body) = json_reply(emu.post(&emu.v2_url(TENANT), &form).await).await;
    assert_eq!(status, 200, "{body}");
    let reply = vm_single_token(&emu, "api://podid-test-api/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["resource"], "api://podid-test-api/");
    // A service principal's application ID is a resource of the tenant too.
    assert_eq!(vm_single_token(&emu, OWNER).await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_over_large_form_is_413_not_an_empty_form() {
    let emu = Emulator::start(&small_world()).await;
    let padding = "x".repeat(1 << 20);
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[
                ("resource", "https://management.azure.com/"),
                ("padding", &padding),
            ]),
        )
        .await;
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    let text = response.text().await.expect("a body");
    assert!(text.contains("exceeds"), "{text}");
    assert_eq!(emu.counter("entra.rejected", 413).await, (1, 1));
    emu.shutdown().await;
}

#[tokio::test]
async fn an_imds_429_fault_says_when_to_retry() {
    let emu = Emulator::start(&imds_world()).await;
    emu.add_fault(
        json!({"surface": "imds", "times": 1, "action": {"kind": "error", "status": 429}}),
    )
    .await;
    let reply = emu.imds_token("vm-single", "").await;
    assert_eq!(reply.status.as_u16(), 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.json()["error"], "too_many_requests");
    emu.shutdown().await;
}
