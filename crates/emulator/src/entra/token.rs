//! The v1 (`/{tenant}/oauth2/token`) and v2 (`/{tenant}/oauth2/v2.0/token`) token endpoints:
//! the client-credentials grant with a secret or a certificate assertion (azure-wire.md
//! §2.2–2.4). Parsing and decisions are pure functions; the handler does the I/O.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::aadsts::{AadError, Aadsts};
use super::assertion::{self, AssertionCheck};
use super::{EntraKnobs, aad_json, accepted_authorities, resolve_tenant};
use crate::journal::Operation;
use crate::state::Shared;
use crate::tokens::{IssuedToken, Subject, TokenRequest};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which token endpoint was called; it decides the request (`resource` vs `scope`) and the
/// response shape, not the token format (that follows the resource, see [`token_version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Secret(String),
    Assertion(String),
}

/// A well-formed client-credentials request (not yet authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    /// The audience: `resource` (v1) or the scope without `/.default` (v2).
    pub resource: String,
    pub credential: Credential,
}

/// Checks the form of a token request; the first value of a repeated field wins.
pub fn parse_form(endpoint: Endpoint, body: &[u8]) -> Result<ClientCredentials, AadError> {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |name: &str| AadError::new(Aadsts::MissingParameter, &[("parameter", name)]);

    let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(AadError::new(
            Aadsts::UnsupportedGrantType,
            &[("grant_type", grant_type)],
        ));
    }
    let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
    let resource = match endpoint {
        Endpoint::V1 => field("resource")
            .ok_or_else(|| missing("resource"))?
            .to_string(),
        Endpoint::V2 => resource_from_scope(field("scope").unwrap_or_default())?,
    };
    let credential = match (field("client_assertion"), field("client_assertion_type")) {
        (Some(jwt), Some(JWT_BEARER)) => Credential::Assertion(jwt.to_string()),
        (Some(_), Some(other)) => {
            return Err(AadError::new(
                Aadsts::UnsupportedAssertionType,
                &[("assertion_type", other)],
            ));
        }
        (Some(_), None) => {
            return Err(AadError::new(
                Aadsts::MissingField,
                &[("field", "client_assertion_type")],
            ));
        }
        (None, _) => match field("client_secret") {
            Some(secret) => Credential::Secret(secret.to_string()),
            None => return Err(AadError::new(Aadsts::NoCredential, &[])),
        },
    };
    Ok(ClientCredentials {
        client_id: client_id.to_string(),
        resource,
        credential,
    })
}

/// OpenID Connect scopes Entra ID ignores in a client-credentials request. MSAL for Go adds
/// them to every request (`<resource>/.default openid offline_access profile`); Entra grants
/// the resource's token and, as for any client-credentials grant, echoes no `scope`.
const RESERVED_SCOPES: [&str; 3] = ["openid", "offline_access", "profile"];

/// The resource a v2 client-credentials scope names: exactly one `<resource>/.default`, beside
/// any of the reserved OIDC scopes. Errors name the scope as sent.
pub fn resource_from_scope(scope: &str) -> Result<String, AadError> {
    let scopes: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !RESERVED_SCOPES.iter().any(|r| r.eq_ignore_ascii_case(s)))
        .collect();
    let invalid = |kind| AadError::new(kind, &[("scope", scope.trim())]);
    match scopes.as_slice() {
        [] if scope.trim().is_empty() => {
            Err(AadError::new(Aadsts::MissingField, &[("field", "scope")]))
        }
        // Only reserved scopes: no resource to issue a token for.
        [] => Err(invalid(Aadsts::ScopeWithoutDefault)),
        [single] => match single.strip_suffix("/.default") {
            Some(resource) if !resource.is_empty() => Ok(resource.to_string()),
            Some(_) => Err(invalid(Aadsts::InvalidScope)),
            None => Err(invalid(Aadsts::ScopeWithoutDefault)),
        },
        _ => Err(invalid(Aadsts::InvalidScope)),
    }
}

/// Audiences that always get v1 tokens, whatever the knobs say (§2.6): ARM.
const ARM_AUDIENCES: [&str; 2] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
];

/// The token format (1 or 2) a resource accepts: v2 only if listed in `v2_resources` and not
/// ARM (public ARM or this emulator's ARM endpoint). Comparison ignores case and a trailing `/`.
pub fn token_version(resource: &str, v2_resources: &[String], arm_endpoint: &str) -> u8 {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    let resource = norm(resource);
    let is_arm = ARM_AUDIENCES.iter().any(|a| norm(a) == resource)
        || (!arm_endpoint.is_empty() && norm(arm_endpoint) == resource);
    if !is_arm && v2_resources.iter().any(|v| norm(v) == resource) {
        2
    } else {
        1
    }
}

/// The success body: v1 all strings, v2 integers without `resource`/`expires_on`.
pub fn success_body(endpoint: Endpoint, token: &IssuedToken, resource: &str, now: i64) -> Value {
    let expires_in = token.expires_on - now;
    match endpoint {
        Endpoint::V1 => json!({
            "token_type": "Bearer",
            "expires_in": expires_in.to_string(),
            "ext_expires_in": expires_in.to_string(),
            "expires_on": token.expires_on.to_string(),
            "not_before": token.not_before.to_string(),
            "resource": resource,
            "access_token": token.access_token,
        }),
        Endpoint::V2 => json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token.access_token,
        }),
    }
}

pub async fn token_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&shared, Endpoint::V1, &tenant, &uri, &headers, &body)
}

pub async fn token_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(&shared, Endpoint::V2, &tenant, &uri, &headers, &body)
}

fn token(
    shared: &Shared,
    endpoint: Endpoint,
    tenant: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match grant(shared, endpoint, tenant, uri, headers, body) {
        Ok(body) => {
            let operation = match endpoint {
                Endpoint::V1 => "entra.token.v1",
                Endpoint::V2 => "entra.token.v2",
            };
            (Operation(operation), aad_json(StatusCode::OK, &body)).into_response()
        }
        Err(err) => {
            tracing::info!(code = err.code, tenant, "token request rejected");
            (Operation("entra.rejected"), err).into_response()
        }
    }
}

/// Authenticates the request and mints the token; returns the success body.
fn grant(
    shared: &Shared,
    endpoint: Endpoint,
    tenant: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, AadError> {
    let knobs: EntraKnobs = shared.knobs_with(|k| k.entra.clone());
    let now = shared.clock.unix();
    let (tenant_id, request, principal) = {
        let world = shared.world();
        let tenant_id = resolve_tenant(&world, tenant)
            .ok_or_else(|| AadError::new(Aadsts::TenantNotFound, &[("tenant", tenant)]))?;
        let request = parse_form(endpoint, body)?;
        let principal = world
            .service_principals
            .get(&request.client_id.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| {
                AadError::new(
                    Aadsts::ApplicationNotFound,
                    &[("client_id", &request.client_id), ("tenant", &tenant_id)],
                )
            })?;
        (tenant_id, request, principal)
    };

    let certificate = match &request.credential {
        Credential::Secret(secret) => {
            let matches = principal.secrets.iter().any(|s| {
                aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), secret.as_bytes())
                    .is_ok()
            });
            let client_id = [("client_id", principal.client_id.as_str())];
            if !matches {
                return Err(AadError::new(Aadsts::InvalidClientSecret, &client_id));
            }
            if shared.entra.secrets_expired(&principal.client_id) {
                return Err(AadError::new(Aadsts::ExpiredClientSecret, &client_id));
            }
            false
        }
        Credential::Assertion(jwt) => {
            let authorities = accepted_authorities(shared, uri, headers);
            assertion::validate(
                jwt,
                &AssertionCheck {
                    client_id: &principal.client_id,
                    tenant_id: &tenant_id,
                    authorities: &authorities,
                    certificates: &principal.certificates,
                    now,
                    skew_secs: i64::try_from(knobs.clock_skew_secs).unwrap_or(i64::MAX),
                },
            )?;
            true
        }
    };

    // After authentication, so only a signed-in client learns which resources exist.
    if !shared.resource_known(&shared.world(), &request.resource) {
        return Err(AadError::new(
            Aadsts::ResourceNotFound,
            &[("resource", &request.resource), ("tenant", &tenant_id)],
        ));
    }
    let version = token_version(
        &request.resource,
        &knobs.v2_resources,
        &shared.endpoints().arm,
    );
    let issued = shared
        .tokens
        .issue(
            &TokenRequest {
                tenant_id: tenant_id.clone(),
                resource: request.resource.clone(),
                client_id: principal.client_id.clone(),
                object_id: principal.object_id.clone(),
                subject: Subject::ServicePrincipal { certificate },
                version,
                lifetime_secs: i64::try_from(knobs.token_lifetime_secs).unwrap_or(i64::MAX),
            },
            now,
        )
        .map_err(|error| {
            tracing::error!(%error, tenant = %tenant_id, "minting a token failed");
            AadError::new(Aadsts::TokenIssuanceError, &[])
        })?;
    Ok(success_body(endpoint, &issued, &request.resource, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    }

    fn code(endpoint: Endpoint, pairs: &[(&str, &str)]) -> u32 {
        parse_form(endpoint, &form(pairs))
            .expect_err("rejected")
            .code
    }

    #[test]
    fn a_secret_request_parses_on_both_endpoints() {
        let base = [("grant_type", "client_credentials"), ("client_id", "app")];
        let v1 = [
            &base[..],
            &[
                ("resource", "https://vault.azure.net"),
                ("client_secret", "s"),
            ],
        ]
        .concat();
        let parsed = parse_form(Endpoint::V1, &form(&v1)).expect("valid");
        assert_eq!(parsed.resource, "https://vault.azure.net");
        assert_eq!(parsed.credential, Credential::Secret("s".into()));
        let v2 = [
            &base[..],
            &[
                ("scope", "https://management.azure.com//.default"),
                ("client_secret", "s"),
            ],
        ]
        .concat();
        let parsed = parse_form(Endpoint::V2, &form(&v2)).expect("valid");
        assert_eq!(parsed.resource, "https://management.azure.com/");
    }

    #[test]
    fn missing_and_wrong_fields_map_to_their_codes() {
        let v1 = |extra: &[(&'static str, &'static str)]| {
            let mut p = vec![
                ("client_id", "app"),
                ("resource", "r"),
                ("client_secret", "s"),
            ];
            p.extend_from_slice(extra);
            p
        };
        assert_eq!(code(Endpoint::V1, &v1(&[])), 900144);
        assert_eq!(
            code(Endpoint::V1, &v1(&[("grant_type", "password")])),
            70003
        );
        let no_secret = [
            ("grant_type", "client_credentials"),
            ("client_id", "a"),
            ("resource", "r"),
        ];
        assert_eq!(code(Endpoint::V1, &no_secret), 7000218);
        let assertion = [&no_secret[..], &[("client_assertion", "x.y.z")]].concat();
        assert_eq!(code(Endpoint::V1, &assertion), 90014);
        let wrong_type = [&assertion[..], &[("client_assertion_type", "saml")]].concat();
        assert_eq!(code(Endpoint::V1, &wrong_type), 50012);
        let no_resource = [("grant_type", "client_credentials"), ("client_id", "a")];
        assert_eq!(code(Endpoint::V1, &no_resource), 900144);
    }

    #[test]
    fn scopes_must_be_one_resource_with_default() {
        assert_eq!(
            resource_from_scope("api://x/.default").expect("ok"),
            "api://x"
        );
        let code = |s: &str| resource_from_scope(s).expect_err("rejected").code;
        assert_eq!(code("https://graph.microsoft.com/User.Read"), 1002012);
        assert_eq!(code("/.default"), 70011);
        assert_eq!(code("a/.default b/.default"), 70011);
        assert_eq!(code(""), 90014);
        assert_eq!(code("   "), 90014);
    }

    #[test]
    fn reserved_oidc_scopes_beside_one_default_are_ignored() {
        let msal_go = "https://management.azure.com//.default openid offline_access profile";
        assert_eq!(
            resource_from_scope(msal_go).expect("accepted"),
            "https://management.azure.com/"
        );
        assert_eq!(
            resource_from_scope("OpenID https://vault.azure.net/.default").expect("accepted"),
            "https://vault.azure.net"
        );
    }

    #[test]
    fn reserved_scopes_do_not_rescue_an_invalid_request() {
        let err = |s: &str| resource_from_scope(s).expect_err("rejected");
        let two = err("https://vault.azure.net/.default https://storage.azure.com/.default openid");
        assert_eq!(two.code, 70011);
        // The error names the scope exactly as sent, reserved scopes included.
        assert!(
            two.description.contains(
                "The scope https://vault.azure.net/.default https://storage.azure.com/.default openid is not valid"
            ),
            "{}",
            two.description
        );
        assert_eq!(err("openid offline_access profile").code, 1002012);
        assert_eq!(err("openid User.Read").code, 1002012);
        // `email` is an OIDC scope MSAL never adds here: not ignored.
        assert_eq!(err("https://vault.azure.net/.default email").code, 70011);
    }

    #[test]
    fn arm_always_gets_v1_and_listed_resources_get_v2() {
        let v2 = vec![
            "https://vault.azure.net/".to_string(),
            "https://management.azure.com".into(),
        ];
        assert_eq!(token_version("https://VAULT.azure.net", &v2, ""), 2);
        assert_eq!(token_version("https://management.azure.com/", &v2, ""), 1);
        let arm = "https://127.0.0.1:8443";
        let mut with_arm = v2.clone();
        with_arm.push(format!("{arm}/"));
        assert_eq!(token_version("https://127.0.0.1:8443/", &with_arm, arm), 1);
        assert_eq!(token_version("https://storage.azure.com", &v2, arm), 1);
    }

    #[test]
    fn v1_bodies_are_all_strings_and_v2_uses_integers() {
        let token = IssuedToken {
            access_token: "jwt".into(),
            not_before: 700,
            expires_on: 4599,
        };
        let v1 = success_body(Endpoint::V1, &token, "r", 1000);
        for (k, v) in v1.as_object().expect("object") {
            assert!(v.is_string(), "{k} must be a string");
        }
        assert_eq!(v1["expires_in"], "3599");
        assert_eq!(v1["expires_on"], "4599");
        let v2 = success_body(Endpoint::V2, &token, "r", 1000);
        assert_eq!(v2["expires_in"], 3599);
        assert_eq!(v2["ext_expires_in"], 3599);
        assert!(v2.get("resource").is_none() && v2.get("expires_on").is_none());
    }
}
