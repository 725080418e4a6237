//! Entra ID (azure-wire.md §2): the v1/v2 client-credentials token endpoints, OpenID
//! configuration, JWKS and instance discovery, served over HTTPS at the root of their own port
//! with the tenant as the first path segment (so both adal and MSAL authorities work, §4.3).
//! Tenants are matched by GUID (the world's `tenantId` and `extraTenantIds`); domain names are
//! not modelled.

pub mod aadsts;
pub mod assertion;
pub mod discovery;
pub mod token;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, PRAGMA, RETRY_AFTER};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::aadsts::{AadError, Aadsts, Trace, error_body};
use crate::admin::AdminError;
use crate::faults::{ErrorFault, Surface};
use crate::journal::{Observed, observe};
use crate::state::Shared;
use crate::world::World;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EntraKnobs {
    /// Lifetime, in seconds, of the tokens the token endpoints issue to service principals
    /// (`expires_in`). Real Entra ID issues 60–90 minutes; shorten it to exercise refresh.
    pub token_lifetime_secs: u64,
    /// Resources (audiences, compared ignoring case and a trailing `/`) that receive v2-format
    /// tokens (`iss` `https://login.microsoftonline.com/{tid}/v2.0`, `azp`, `ver` 2.0). Every
    /// other resource gets v1 tokens, whichever endpoint was called; ARM audiences
    /// (`https://management.azure.com`, `https://management.core.windows.net` and the
    /// emulator's own ARM URL) always get v1, even if listed.
    pub v2_resources: Vec<String>,
    /// Clock skew, in seconds, tolerated when checking a client assertion's `exp` and `nbf`.
    pub clock_skew_secs: u64,
}

impl Default for EntraKnobs {
    fn default() -> Self {
        Self {
            token_lifetime_secs: 3599,
            v2_resources: Vec::new(),
            clock_skew_secs: 300,
        }
    }
}

/// Run-time Entra state that is not part of the world file.
#[derive(Debug, Default)]
pub struct EntraState {
    /// Lower-case client IDs whose secrets the admin API marked expired.
    expired_secrets: Mutex<BTreeSet<String>>,
}

impl EntraState {
    pub fn reset(&self) {
        self.expired().clear();
    }

    /// From now on, every secret of this app answers AADSTS7000222 (expired).
    pub fn expire_secrets(&self, client_id: &str) {
        self.expired().insert(client_id.to_ascii_lowercase());
    }

    pub fn secrets_expired(&self, client_id: &str) -> bool {
        self.expired().contains(&client_id.to_ascii_lowercase())
    }

    fn expired(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A poisoned lock only means a request panicked mid-update; the set stays usable.
        self.expired_secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    use self::discovery::{instance, jwks, openid_configuration_v1, openid_configuration_v2};
    use self::token::{token_v1, token_v2};
    Router::new()
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(openid_configuration_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration_v2),
        )
        .route("/{tenant}/discovery/keys", get(jwks))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/common/discovery/instance", get(instance))
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn_with_state(
            Observed {
                shared: shared.clone(),
                surface: Surface::Entra,
                machine: None,
                // Nothing about the request changes how this surface renders a fault.
                render_fault: |error, _| render_fault(error),
            },
            observe,
        ))
        // Outside the observe layer so errors from fault rules get their trace lines too.
        .layer(axum::middleware::from_fn_with_state(shared, finish_errors))
}

/// Retry-After for 429/5xx fault rules that do not set `retryAfter`.
const DEFAULT_FAULT_RETRY_AFTER_SECS: u64 = 1;

/// A fault rule's error in Entra's shape. `aadsts` picks the table entry (error and text);
/// without it, 429 and 5xx become `temporarily_unavailable` (AADSTS90006) with Retry-After and
/// other statuses a generic AADSTS50000. The rule's `status` is always the status sent;
/// `code` replaces `error`, `message` the description, `body` the whole body.
fn render_fault(error: &ErrorFault) -> Response {
    let ErrorFault {
        status,
        code,
        message,
        retry_after,
        aadsts,
        body,
    } = error;
    let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    let retry_after = retry_after.or(transient.then_some(DEFAULT_FAULT_RETRY_AFTER_SECS));
    if let Some(body) = body {
        let mut response = aad_json(status, body);
        set_retry_after(&mut response, retry_after);
        return response;
    }
    let mut err = match aadsts.map(|c| (c, Aadsts::from_code(c))) {
        Some((_, Some(kind))) => AadError::new(kind, &[]),
        Some((unknown, None)) => AadError {
            code: unknown,
            ..AadError::new(Aadsts::TokenIssuanceError, &[])
        },
        None if transient => AadError::new(Aadsts::TemporarilyUnavailable, &[]),
        None => AadError::new(Aadsts::TokenIssuanceError, &[]),
    };
    err.status = status;
    if let Some(code) = code {
        err.error = code.clone();
    }
    if let Some(message) = message {
        err.description = message.clone();
    }
    err.retry_after_secs = retry_after;
    err.into_response()
}

/// An [`AadError`] whose body [`finish_errors`] still has to write (it needs the clock and the
/// request's correlation ID).
#[derive(Debug, Clone)]
struct PendingError(AadError);

impl IntoResponse for AadError {
    fn into_response(self) -> Response {
        let mut response = aad_json(self.status, &Value::Null);
        set_retry_after(&mut response, self.retry_after_secs);
        response.extensions_mut().insert(PendingError(self));
        response
    }
}

/// Writes the body of every Entra error: the AADSTS description with trace lines stamped on
/// the emulator's clock, the correlation ID echoed from `client-request-id` when it is a GUID.
async fn finish_errors(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let correlation_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok());
    let mut response = next.run(req).await;
    let Some(PendingError(err)) = response.extensions_mut().remove::<PendingError>() else {
        return response;
    };
    let trace = Trace {
        trace_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: correlation_id
            .unwrap_or_else(uuid::Uuid::new_v4)
            .to_string(),
        at: shared.clock.now(),
    };
    if let Ok(id) = HeaderValue::from_str(&trace.trace_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-ms-request-id"), id);
    }
    *response.body_mut() = Body::from(error_body(&err, &trace).to_string());
    response
}

/// A token-endpoint style JSON answer: `charset=utf-8`, never cached.
fn aad_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A metadata document (OpenID configuration, keys): cacheable, as Entra serves them.
fn doc_json(body: &Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    response
}

fn set_retry_after(response: &mut Response, secs: Option<u64>) {
    if let Some(secs) = secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// The world's spelling of the tenant named by a path segment (GUIDs compare ignoring case).
fn resolve_tenant(world: &World, segment: &str) -> Option<String> {
    std::iter::once(&world.tenant_id)
        .chain(world.extra_tenant_ids.iter())
        .find(|t| t.eq_ignore_ascii_case(segment))
        .cloned()
}

/// The authority the client addressed: from the URI (HTTP/2) or the `Host` header.
fn request_authority(uri: &Uri, headers: &HeaderMap) -> Option<Authority> {
    let authority = uri.authority().cloned().or_else(|| {
        headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
    })?;
    // A user-info part has no place in a base URL we hand back to clients.
    (!authority.as_str().contains('@')).then_some(authority)
}

/// This listener's base URL (`https://host:port`) as the client addressed it, so documents
/// point back at an address the client can reach; the bound address otherwise.
fn base_url(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> String {
    request_authority(uri, headers)
        .map(|a| format!("https://{a}"))
        .unwrap_or_else(|| shared.endpoints().entra.clone())
}

/// Normalized authorities a client assertion's `aud` may name: the one the client addressed
/// and the bound address.
fn accepted_authorities(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> Vec<String> {
    let bound = shared
        .endpoints()
        .entra
        .trim_start_matches("https://")
        .to_string();
    request_authority(uri, headers)
        .map(|a| a.to_string())
        .into_iter()
        .chain(std::iter::once(bound))
        .filter_map(|a| assertion::normalize_authority(&a))
        .collect()
}

/// Entra admin routes, to be merged into the admin API:
/// `POST /admin/entra/servicePrincipals/{clientId}/expireSecrets` makes every secret of that
/// app answer AADSTS7000222 until `POST /admin/reset`.
pub fn admin_routes() -> Router<Arc<Shared>> {
    Router::new().route(
        "/admin/entra/servicePrincipals/{client_id}/expireSecrets",
        post(expire_secrets),
    )
}

async fn expire_secrets(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let known = shared
        .world()
        .service_principals
        .contains_key(&client_id.to_ascii_lowercase());
    if !known {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no service principal with client ID {client_id} in the world file"),
        ));
    }
    shared.entra.expire_secrets(&client_id);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: serde_json::Value) -> ErrorFault {
        match serde_json::from_value(json) {
            Ok(crate::faults::FaultAction::Error(error)) => error,
            other => panic!("not an error fault: {other:?}"),
        }
    }

    fn pending(response: &Response) -> &AadError {
        &response
            .extensions()
            .get::<PendingError>()
            .expect("an Entra error")
            .0
    }

    #[test]
    fn an_aadsts_fault_uses_the_table_and_the_rule_status() {
        let response = render_fault(&fault(
            serde_json::json!({"kind": "error", "status": 401, "aadsts": 7000222}),
        ));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let err = pending(&response);
        assert_eq!((err.code, err.error.as_str()), (7000222, "invalid_client"));
        assert!(
            err.description.contains("app '<client_id>'"),
            "{}",
            err.description
        );
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn throttling_and_outage_faults_are_temporarily_unavailable_with_retry_after() {
        let response = render_fault(&fault(serde_json::json!({"kind": "error", "status": 429})));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(pending(&response).error, "temporarily_unavailable");
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let response = render_fault(&fault(
            serde_json::json!({"kind": "error", "status": 503, "retryAfter": 7, "message": "down"}),
        ));
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        assert_eq!(pending(&response).description, "down");
    }

    #[test]
    fn expired_secrets_are_case_insensitive_and_reset() {
        let state = EntraState::default();
        state.expire_secrets("ABC");
        assert!(state.secrets_expired("abc"));
        state.reset();
        assert!(!state.secrets_expired("abc"));
    }
}
