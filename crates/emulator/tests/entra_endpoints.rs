//! The Entra ID surface over real HTTPS on loopback, the emulator started in-process: secret
//! and certificate client credentials on v1 and v2, the AADSTS error shapes, metadata
//! documents, and fault rules.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use podid_emulator::WorldFile;
use podid_emulator::testing::*;
use regex::Regex;
use serde_json::{Value, json};
use sha1::Digest;
use tower::ServiceExt;

const SECRET_APP: &str = "5e2c1a90-3b4d-4e6f-8a1b-2c3d4e5f6a7b";
const SECRET_APP_OBJECT: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const SECRET: &str = "s3cret~value";
const CERT_APP: &str = "a1b2c3d4-e5f6-4789-8abc-def012345678";

struct Cert {
    pem: String,
    der: Vec<u8>,
    key: EncodingKey,
}

fn certificate() -> Cert {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let params = rcgen::CertificateParams::new(vec!["entra-test-app".to_string()]).expect("params");
    let cert = params.self_signed(&key_pair).expect("certificate");
    Cert {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key: EncodingKey::from_rsa_pem(key_pair.serialize_pem().as_bytes()).expect("key PEM"),
    }
}

/// The emulator with a secret app and a certificate app, and these Entra knobs.
async fn start(cert: &Cert, knobs: Value) -> Emulator {
    let world: WorldFile = serde_json::from_value(json!({
        "tenantId": TENANT,
        "extraTenantIds": [OTHER_TENANT],
        "subscriptions": [{"id": SUBSCRIPTION}],
        "servicePrincipals": [
            {"clientId": SECRET_APP, "objectId": SECRET_APP_OBJECT, "secrets": ["old", SECRET]},
            {"clientId": CERT_APP, "certificates": [cert.pem]},
        ],
        "knobs": {"entra": knobs},
    }))
    .expect("a valid world");
    Emulator::start_world(world).await
}

fn assertion(cert: &Cert, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    match alg {
        Algorithm::PS256 => {
            header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&cert.der)));
        }
        // adal and MSAL send the padded form.
        _ => header.x5t = Some(URL_SAFE.encode(sha1::Sha1::digest(&cert.der))),
    }
    jsonwebtoken::encode(&header, claims, &cert.key).expect("signed")
}

fn assertion_claims(emu: &Emulator, aud: &str) -> Value {
    let now = emu.shared().clock.unix();
    json!({
        "aud": aud, "iss": CERT_APP, "sub": CERT_APP, "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now, "exp": now + 600,
    })
}

fn secret_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", SECRET_APP),
        ("client_secret", SECRET),
    ];
    form.extend_from_slice(extra);
    form
}

fn assertion_form<'a>(assertion: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", CERT_APP),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    form
}

fn assert_token_headers(response: &reqwest::Response) {
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store, no-cache");
    assert_eq!(headers["pragma"], "no-cache");
}

/// Checks the error envelope of azure-wire.md §2.5 and returns the body.
/// Posts a client assertion to the v1 endpoint and expects a 401 `invalid_client` with `code`.
async fn refused_v1_assertion(emu: &Emulator, assertion: &str, code: u32) -> Value {
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &assertion_form(assertion, &[("resource", ARM_AUDIENCE)]),
        )
        .await;
    expect_error(response, 401, code, "invalid_client").await
}

fn description(body: &Value) -> &str {
    body["error_description"].as_str().unwrap_or_default()
}

async fn expect_error(response: reqwest::Response, status: u16, code: u32, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_token_headers(&response);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().expect("a description");
    let shape = Regex::new(&format!(
        r"^AADSTS{code}: .+\r\nTrace ID: [0-9a-f-]{{36}}\r\nCorrelation ID: [0-9a-f-]{{36}}\r\nTimestamp: \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ$"
    ))
    .expect("regex");
    assert!(shape.is_match(description), "{description:?}");
    let timestamp = body["timestamp"].as_str().expect("timestamp");
    assert!(description.ends_with(&format!("Timestamp: {timestamp}")));
    assert!(description.contains(body["trace_id"].as_str().expect("trace_id")));
    assert!(description.contains(body["correlation_id"].as_str().expect("correlation_id")));
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    body
}

#[tokio::test]
async fn a_secret_gets_a_v1_token_with_every_field_a_string() {
    let cert = certificate();
    let emu = start(&cert, json!({})).await;
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[("resource", ARM_AUDIENCE)]),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_token_headers(&response);
    let body: Value = response.json().await.expect("JSON");
    let fields = body.as_object().expect("object");
    for key in [
        "token_type",
        "expires_in",
        "ext_expires_in",
        "expires_on",
        "not_before",
        "resource",
        "access_token",
    ] {
        assert!(fields[key].is_string(), "{key} must be a string: {body}");
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["resource"], ARM_AUDIENCE);
    let now = emu.shared().clock.unix();
    let claims = emu
        .shared()
        .tokens
        .verify(body["access_token"].as_str().expect("token"), now)
        .expect("the token verifies");
    assert_eq!(claims.aud, ARM_AUDIENCE);
    assert_eq!(claims.tid, TENANT);
    assert_eq!(claims.oid, SECRET_APP_OBJECT);
    assert_eq!(claims.appid.as_deref(), Some(SECRET_APP));
    assert_eq!(claims.ver, "1.0");
    assert_eq!(claims.other["appidacr"], "1");
    assert_eq!(body["expires_on"], claims.exp.to_string());
    assert_eq!(body["not_before"], claims.nbf.to_string());
    emu.shutdown().await;
}

#[tokio::test]
async fn v2_answers_integers_and_the_resource_decides_the_token_format() {
    let cert = certificate();
    let emu = start(
        &cert,
        json!({"v2Resources": ["https://vault.azure.net", ARM_AUDIENCE], "tokenLifetimeSecs": 600}),
    )
    .await;
    let vault = secret_form(&[("scope", "https://vault.azure.net/.default")]);
    let response = emu.post(&emu.v2_url(TENANT), &vault).await;
    assert_eq!(response.status(), 200);
    assert_token_headers(&response);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["ext_expires_in"], 600);
    assert!(
        body.get("resource").is_none() && body.get("expires_on").is_none(),
        "{body}"
    );
    let now = emu.shared().clock.unix();
    let verify = |b: &Value| {
        emu.shared()
            .tokens
            .verify(b["access_token"].as_str().expect("token"), now)
            .expect("verifies")
    };
    let claims = verify(&body);
    assert_eq!(
        (claims.aud.as_str(), claims.ver.as_str()),
        ("https://vault.azure.net", "2.0")
    );
    assert_eq!(claims.azp.as_deref(), Some(SECRET_APP));
    assert_eq!(claims.oid, SECRET_APP_OBJECT);

    // ARM always gets v1 tokens, even listed and even from the v2 endpoint; `//.default`
    // keeps the trailing slash in the audience.
    let arm = secret_form(&[("scope", "https://management.azure.com//.default")]);
    let body: Value = emu
        .post(&emu.v2_url(TENANT), &arm)
        .await
        .json()
        .await
        .expect("JSON");
    let claims = verify(&body);
    assert_eq!(
        (claims.aud.as_str(), claims.ver.as_str()),
        (ARM_AUDIENCE, "1.0")
    );
    assert_eq!(claims.appid.as_deref(), Some(SECRET_APP));

    // Auxiliary tenants issue tokens too, with their own tid.
    let body: Value = emu
        .post(&emu.v2_url(OTHER_TENANT), &arm)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(verify(&body).tid, OTHER_TENANT);
    emu.shutdown().await;
}

const UNKNOWN_APP: &str = "00000000-1111-2222-3333-444444444444";

/// A token request the emulator must refuse, and how.
struct Rejection {
    name: &'static str,
    url: String,
    form: Vec<(&'static str, &'static str)>,
    status: u16,
    code: u32,
    error: &'static str,
}

#[tokio::test]
async fn each_validation_failure_answers_its_aadsts_error() {
    let cert = certificate();
    let emu = start(&cert, json!({})).await;
    let v1 = emu.v1_url(TENANT);
    let v2 = emu.v2_url(TENANT);
    let cases = vec![
        Rejection {
            name: "no grant_type",
            url: v1.clone(),
            form: vec![
                ("client_id", SECRET_APP),
                ("client_secret", SECRET),
                ("resource", ARM_AUDIENCE),
            ],
            status: 400,
            code: 900144,
            error: "invalid_request",
        },
        Rejection {
            name: "unknown app",
            url: v1.clone(),
            form: vec![
                ("grant_type", "client_credentials"),
                ("client_id", UNKNOWN_APP),
                ("client_secret", "x"),
                ("resource", ARM_AUDIENCE),
            ],
            status: 400,
            code: 700016,
            error: "unauthorized_client",
        },
        Rejection {
            name: "unknown tenant",
            url: emu.v1_url("11111111-2222-3333-4444-555555555555"),
            form: secret_form(&[("resource", ARM_AUDIENCE)]),
            status: 400,
            code: 90002,
            error: "invalid_request",
        },
        Rejection {
            name: "wrong secret",
            url: v1.clone(),
            form: vec![
                ("grant_type", "client_credentials"),
                ("client_id", SECRET_APP),
                ("client_secret", "nope"),
                ("resource", ARM_AUDIENCE),
            ],
            status: 401,
            code: 7000215,
            error: "invalid_client",
        },
        Rejection {
            name: "no credential",
            url: v1.clone(),
            form: vec![
                ("grant_type", "client_credentials"),
                ("client_id", SECRET_APP),
                ("resource", ARM_AUDIENCE),
            ],
            status: 401,
            code: 7000218,
            error: "invalid_client",
        },
        Rejection {
            name: "no resource",
            url: v1.clone(),
            form: secret_form(&[]),
            status: 400,
            code: 900144,
            error: "invalid_request",
        },
        Rejection {
            name: "scope without /.default",
            url: v2.clone(),
            form: secret_form(&[("scope", "https://graph.microsoft.com/User.Read")]),
            status: 400,
            code: 1002012,
            error: "invalid_scope",
        },
        Rejection {
            name: "two scopes",
            url: v2.clone(),
            form: secret_form(&[("scope", "https://a/.default https://b/.default")]),
            status: 400,
            code: 70011,
            error: "invalid_scope",
        },
    ];
    for Rejection {
        name,
        url,
        form,
        status,
        code,
        error,
    } in cases
    {
        let response = emu.post(&url, &form).await;
        let body = expect_error(response, status, code, error).await;
        let description = body["error_description"].as_str().unwrap_or_default();
        if code == 700016 {
            assert!(
                description.contains(&format!(
                    "Application with identifier '{UNKNOWN_APP}' was not found in the directory '{TENANT}'"
                )),
                "{name}: {description}"
            );
        }
        if code == 7000215 {
            assert!(
                description.contains(&format!("app '{SECRET_APP}'")),
                "{name}: {description}"
            );
        }
    }
    let counters = emu.admin_get("/admin/counters").await;
    assert_eq!(counters["entra.rejected"]["total"], 8, "{counters}");

    // MSAL's client-request-id comes back as the correlation ID.
    let correlation = uuid::Uuid::new_v4().to_string();
    let response = emu
        .https()
        .post(&v1)
        .header("client-request-id", &correlation)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answered");
    let body = expect_error(response, 400, 900144, "invalid_request").await;
    assert_eq!(body["correlation_id"], correlation);
    emu.shutdown().await;
}

#[tokio::test]
async fn certificate_assertions_are_verified_like_entra_does() {
    let cert = certificate();
    let emu = start(&cert, json!({})).await;
    let entra = emu.entra_base().to_string();
    // adal: RS256, padded x5t, the v1 endpoint with its query string as audience.
    let adal_aud = format!("{entra}/{TENANT}/oauth2/token?api-version=1.0");
    let rs256 = assertion(&cert, Algorithm::RS256, &assertion_claims(&emu, &adal_aud));
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &assertion_form(&rs256, &[("resource", ARM_AUDIENCE)]),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let now = emu.shared().clock.unix();
    let claims = emu
        .shared()
        .tokens
        .verify(body["access_token"].as_str().expect("token"), now)
        .expect("verifies");
    assert_eq!(claims.appid.as_deref(), Some(CERT_APP));
    assert_eq!(claims.other["appidacr"], "2");

    // MSAL: PS256 with x5t#S256, the v2 endpoint as audience, float exp, no nbf.
    let v2_aud = format!("{entra}/{TENANT}/oauth2/v2.0/token");
    let mut msal = assertion_claims(&emu, &v2_aud);
    msal["exp"] = json!(now as f64 + 600.25);
    msal.as_object_mut().expect("object").remove("nbf");
    let ps256 = assertion(&cert, Algorithm::PS256, &msal);
    let scope = [("scope", "https://management.azure.com/.default")];
    let response = emu
        .post(&emu.v2_url(TENANT), &assertion_form(&ps256, &scope))
        .await;
    assert_eq!(response.status(), 200);

    // Tampered signature.
    let mut parts: Vec<String> = rs256.split('.').map(str::to_string).collect();
    let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).expect("signature bytes");
    signature[0] ^= 0x01;
    parts[2] = URL_SAFE_NO_PAD.encode(signature);
    let tampered = parts.join(".");
    refused_v1_assertion(&emu, &tampered, 700027).await;

    // A key the app never registered.
    let stranger = certificate();
    let unknown = assertion(
        &stranger,
        Algorithm::RS256,
        &assertion_claims(&emu, &adal_aud),
    );
    let body = refused_v1_assertion(&emu, &unknown, 700027).await;
    assert!(
        description(&body).contains("The key was not found"),
        "{body}"
    );

    // Expired (beyond the 5 minute skew).
    let mut expired = assertion_claims(&emu, &adal_aud);
    expired["exp"] = json!(now - 3600);
    expired["nbf"] = json!(now - 7200);
    let expired = assertion(&cert, Algorithm::RS256, &expired);
    let body = refused_v1_assertion(&emu, &expired, 700024).await;
    assert!(
        description(&body).contains("Client assertion is not within its valid time range"),
        "{body}"
    );

    // Wrong audience: another tenant's endpoint.
    let wrong_aud = assertion(
        &cert,
        Algorithm::RS256,
        &assertion_claims(&emu, &format!("{entra}/{OTHER_TENANT}/oauth2/token")),
    );
    refused_v1_assertion(&emu, &wrong_aud, 700023).await;

    // iss is not the client ID.
    let mut foreign = assertion_claims(&emu, &adal_aud);
    foreign["iss"] = json!(SECRET_APP);
    let foreign = assertion(&cert, Algorithm::RS256, &foreign);
    refused_v1_assertion(&emu, &foreign, 700021).await;

    // The emulator's clock decides: once moved an hour on, the good assertion has expired.
    emu.advance_clock(3600).await;
    refused_v1_assertion(&emu, &rs256, 700024).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn metadata_documents_point_at_this_host_and_publish_the_signing_key() {
    let cert = certificate();
    let emu = start(&cert, json!({})).await;
    let entra = emu.entra_base().to_string();
    assert!(entra.starts_with("https://127.0.0.1:"), "{entra}");
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[("resource", ARM_AUDIENCE)]),
        )
        .await;
    let token: Value = response.json().await.expect("JSON");
    let header = jsonwebtoken::decode_header(token["access_token"].as_str().expect("token"))
        .expect("JWT header");
    let kid = Value::from(header.kid.expect("kid"));

    for (path, oauth2) in [
        ("v2.0/.well-known/openid-configuration", "oauth2/v2.0"),
        (".well-known/openid-configuration", "oauth2"),
    ] {
        let (status, doc) = emu.get_json(&format!("{entra}/{TENANT}/{path}")).await;
        assert_eq!(status, 200, "{path}");
        for key in [
            "authorization_endpoint",
            "token_endpoint",
            "device_authorization_endpoint",
            "jwks_uri",
        ] {
            assert!(
                doc[key]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&format!("{entra}/{TENANT}/")),
                "{path} {key}: {doc}"
            );
        }
        assert_eq!(
            doc["token_endpoint"],
            format!("{entra}/{TENANT}/{oauth2}/token")
        );
        for key in [
            "issuer",
            "token_endpoint_auth_methods_supported",
            "id_token_signing_alg_values_supported",
            "tenant_region_scope",
            "cloud_instance_name",
        ] {
            assert!(doc.get(key).is_some(), "{path} lacks {key}");
        }
        let (status, jwks) = emu
            .get_json(doc["jwks_uri"].as_str().expect("jwks_uri"))
            .await;
        assert_eq!(status, 200);
        assert!(
            jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .any(|k| k["kid"] == kid),
            "{jwks}"
        );
    }
    let (status, common) = emu
        .get_json(&format!("{entra}/common/discovery/keys"))
        .await;
    assert_eq!(status, 200);
    let keys = common["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "one key per tenant");
    assert!(keys.iter().any(|k| k["kid"] == kid));

    let (status, body) = emu
        .get_json(&format!(
            "{entra}/{OTHER_TENANT}x/v2.0/.well-known/openid-configuration"
        ))
        .await;
    assert_eq!((status, &body["error_codes"]), (400, &json!([90002])));

    let authorize = format!("{entra}/{TENANT}/oauth2/v2.0/authorize");
    let url = reqwest::Url::parse_with_params(
        &format!("{entra}/common/discovery/instance"),
        [
            ("api-version", "1.1"),
            ("authorization_endpoint", authorize.as_str()),
        ],
    )
    .expect("url");
    let (status, body) = emu.get_json(url.as_str()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["tenant_discovery_endpoint"],
        format!("{entra}/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    let foreign = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize";
    let url = reqwest::Url::parse_with_params(
        &format!("{entra}/common/discovery/instance"),
        [("api-version", "1.1"), ("authorization_endpoint", foreign)],
    )
    .expect("url");
    let (status, body) = emu.get_json(url.as_str()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_instance"))
    );

    let counters = emu.admin_get("/admin/counters").await;
    assert_eq!(
        counters["entra.openid_configuration"]["total"], 3,
        "{counters}"
    );
    assert_eq!(counters["entra.jwks"]["total"], 3, "{counters}");
    assert_eq!(
        counters["entra.instance_discovery"]["total"], 2,
        "{counters}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn fault_rules_force_aadsts_errors_and_throttling_and_are_counted() {
    let cert = certificate();
    let emu = start(&cert, json!({})).await;
    let arm_scope = [("scope", "https://management.azure.com/.default")];
    emu.add_fault(
        json!({"surface": "entra", "path": "oauth2/v2.0/token", "clientId": SECRET_APP, "times": 1,
                    "action": {"kind": "error", "status": 401, "aadsts": 7000222}}),
    )
    .await;
    let response = emu
        .post(&emu.v2_url(TENANT), &secret_form(&arm_scope))
        .await;
    let body = expect_error(response, 401, 7000222, "invalid_client").await;
    assert!(description(&body).contains("client secret keys"), "{body}");
    let response = emu
        .post(&emu.v2_url(TENANT), &secret_form(&arm_scope))
        .await;
    assert_eq!(response.status(), 200, "the rule fired once");

    emu.add_fault(json!({"surface": "entra", "times": 1, "action": {"kind": "error", "status": 429, "retryAfter": 4}}))
    .await;
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[("resource", ARM_AUDIENCE)]),
        )
        .await;
    assert_eq!(response.headers()["retry-after"], "4");
    expect_error(response, 429, 90006, "temporarily_unavailable").await;

    let counters = emu.admin_get("/admin/counters").await;
    assert_eq!(counters["fault"]["total"], 2, "{counters}");
    assert_eq!(counters["entra.token.v2"]["total"], 1, "{counters}");
    let journal = emu.admin_get("/admin/journal?surface=entra").await;
    let faults: Vec<&Value> = journal
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e.get("fault").is_some())
        .collect();
    assert_eq!(faults.len(), 2, "{journal}");
    emu.shutdown().await;
}

#[tokio::test]
async fn expired_secrets_answer_7000222_until_reset() {
    let cert = certificate();
    let emu = start(&cert, json!({})).await;
    let admin = podid_emulator::entra::admin_routes().with_state(emu.shared().clone());
    let expire = |client: &str| {
        axum::http::Request::post(format!(
            "/admin/entra/servicePrincipals/{client}/expireSecrets"
        ))
        .body(axum::body::Body::empty())
        .expect("request")
    };
    let response = admin
        .clone()
        .oneshot(expire("no-such-app"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    let response = admin
        .oneshot(expire(&SECRET_APP.to_uppercase()))
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);

    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[("resource", ARM_AUDIENCE)]),
        )
        .await;
    expect_error(response, 401, 7000222, "invalid_client").await;
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", SECRET_APP),
        ("client_secret", "nope"),
        ("resource", ARM_AUDIENCE),
    ];
    expect_error(
        emu.post(&emu.v1_url(TENANT), &wrong).await,
        401,
        7000215,
        "invalid_client",
    )
    .await;

    let reset = format!("{}/admin/reset", emu.admin_base());
    assert_eq!(
        emu.http().post(reset).send().await.expect("reset").status(),
        204
    );
    let response = emu
        .post(
            &emu.v1_url(TENANT),
            &secret_form(&[("resource", ARM_AUDIENCE)]),
        )
        .await;
    assert_eq!(response.status(), 200);
    emu.shutdown().await;
}
