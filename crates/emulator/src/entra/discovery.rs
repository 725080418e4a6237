//! Metadata MSAL and token validators read (azure-wire.md §2.1): the OpenID configuration
//! (v1 and v2), the signing keys (JWKS) and MSAL's instance discovery.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::aadsts::{AadError, Aadsts};
use super::assertion::normalize_authority;
use super::token::Endpoint;
use super::{accepted_authorities, base_url, doc_json, resolve_tenant};
use crate::journal::Operation;
use crate::state::Shared;

/// The OpenID configuration of a tenant. Endpoints are on `base` (this listener as the client
/// addressed it); `issuer` is the `iss` of the tokens this emulator mints for that version.
pub fn openid_configuration(base: &str, tenant_id: &str, version: Endpoint) -> Value {
    let (issuer, oauth2, keys) = match version {
        Endpoint::V1 => (
            format!("https://sts.windows.net/{tenant_id}/"),
            format!("{base}/{tenant_id}/oauth2"),
            format!("{base}/{tenant_id}/discovery/keys"),
        ),
        Endpoint::V2 => (
            format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
            format!("{base}/{tenant_id}/oauth2/v2.0"),
            format!("{base}/{tenant_id}/discovery/v2.0/keys"),
        ),
    };
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{oauth2}/authorize"),
        "token_endpoint": format!("{oauth2}/token"),
        "device_authorization_endpoint": format!("{oauth2}/devicecode"),
        "jwks_uri": keys,
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
    })
}

pub async fn openid_configuration_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    openid(&shared, &tenant, &uri, &headers, Endpoint::V1)
}

pub async fn openid_configuration_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    openid(&shared, &tenant, &uri, &headers, Endpoint::V2)
}

fn openid(shared: &Shared, tenant: &str, uri: &Uri, headers: &HeaderMap, v: Endpoint) -> Response {
    let operation = Operation("entra.openid_configuration");
    let Some(tenant_id) = resolve_tenant(&shared.world(), tenant) else {
        return (operation, tenant_not_found(tenant)).into_response();
    };
    let doc = openid_configuration(&base_url(shared, uri, headers), &tenant_id, v);
    (operation, doc_json(&doc)).into_response()
}

/// `/{tenant}/discovery[/v2.0]/keys`; `common` and `organizations` publish every tenant's key.
pub async fn jwks(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    let operation = Operation("entra.jwks");
    let tenants: Vec<String> = {
        let world = shared.world();
        if ["common", "organizations"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&tenant))
        {
            std::iter::once(world.tenant_id.clone())
                .chain(world.extra_tenant_ids.iter().cloned())
                .collect()
        } else {
            match resolve_tenant(&world, &tenant) {
                Some(id) => vec![id],
                None => return (operation, tenant_not_found(&tenant)).into_response(),
            }
        }
    };
    let mut keys = Vec::new();
    for tenant_id in &tenants {
        match shared.tokens.jwks(tenant_id) {
            Ok(Value::Object(mut doc)) => {
                if let Some(Value::Array(list)) = doc.remove("keys") {
                    keys.extend(list);
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, tenant = %tenant_id, "a world tenant has no signing key");
                return (operation, AadError::new(Aadsts::TokenIssuanceError, &[])).into_response();
            }
        }
    }
    (operation, doc_json(&json!({ "keys": keys }))).into_response()
}

/// The answer to MSAL's instance discovery for `authorization_endpoint`, if it is on one of
/// `authorities` (normalized `host:port`).
pub fn instance_discovery(
    authorization_endpoint: &str,
    authorities: &[String],
) -> Result<Value, AadError> {
    let invalid = || {
        AadError::new(
            Aadsts::InvalidInstance,
            &[("instance", authorization_endpoint)],
        )
    };
    let url = url::Url::parse(authorization_endpoint).map_err(|_| invalid())?;
    let host = url.host_str().ok_or_else(invalid)?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let known = normalize_authority(&authority).is_some_and(|a| authorities.contains(&a));
    if url.scheme() != "https" || !known {
        return Err(invalid());
    }
    let tenant = url
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty())
        .unwrap_or("common");
    Ok(json!({
        "tenant_discovery_endpoint":
            format!("https://{authority}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": authority,
            "preferred_cache": authority,
            "aliases": [authority],
        }],
    }))
}

pub async fn instance(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let operation = Operation("entra.instance_discovery");
    let endpoint = uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "authorization_endpoint")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    match instance_discovery(&endpoint, &accepted_authorities(&shared, &uri, &headers)) {
        Ok(doc) => (operation, doc_json(&doc)).into_response(),
        Err(err) => (operation, err).into_response(),
    }
}

fn tenant_not_found(tenant: &str) -> AadError {
    AadError::new(Aadsts::TenantNotFound, &[("tenant", tenant)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn v2_documents_point_msal_at_this_host_over_https() {
        let doc = openid_configuration("https://127.0.0.1:8444", TENANT, Endpoint::V2);
        assert_eq!(
            doc["token_endpoint"],
            format!("https://127.0.0.1:8444/{TENANT}/oauth2/v2.0/token")
        );
        assert_eq!(
            doc["jwks_uri"],
            format!("https://127.0.0.1:8444/{TENANT}/discovery/v2.0/keys")
        );
        assert_eq!(
            doc["issuer"],
            format!("https://login.microsoftonline.com/{TENANT}/v2.0")
        );
        let v1 = openid_configuration("https://127.0.0.1:8444", TENANT, Endpoint::V1);
        assert_eq!(
            v1["token_endpoint"],
            format!("https://127.0.0.1:8444/{TENANT}/oauth2/token")
        );
        assert_eq!(v1["issuer"], format!("https://sts.windows.net/{TENANT}/"));
    }

    #[test]
    fn instance_discovery_answers_only_for_this_host() {
        let here = vec![normalize_authority("127.0.0.1:8444").expect("authority")];
        let doc = instance_discovery(
            &format!("https://127.0.0.1:8444/{TENANT}/oauth2/v2.0/authorize"),
            &here,
        )
        .expect("known");
        assert_eq!(
            doc["tenant_discovery_endpoint"],
            format!("https://127.0.0.1:8444/{TENANT}/v2.0/.well-known/openid-configuration")
        );
        let err = instance_discovery(
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            &here,
        )
        .expect_err("foreign");
        assert_eq!((err.code, err.error.as_str()), (50049, "invalid_instance"));
        assert!(instance_discovery("", &here).is_err());
        assert!(instance_discovery("http://127.0.0.1:8444/t/oauth2/authorize", &here).is_err());
    }
}
