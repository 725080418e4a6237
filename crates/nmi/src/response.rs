//! The answers to a served token request, in IMDS's shape.
//!
//! Every value is a JSON string, as IMDS sends them (the Rust SDK reads `expires_on` only
//! from a string). Deviation: upstream dropped `client_id` and `ext_expires_in`; both are kept
//! here, since IMDS sends them and clients may read `client_id`. `refresh_token` stays, empty,
//! as upstream always sent it.

use std::time::{SystemTime, UNIX_EPOCH};

use podid_azure::credential::{AuthError, Token};
use serde_json::{Map, Value};

use crate::reply::{ErrorCode, ErrorReply};

/// What the answer needs besides the token.
#[derive(Debug, Clone, Copy)]
pub struct TokenContext<'a> {
    /// The `resource` the pod asked for, echoed when the token response has none (Entra v2).
    pub resource: &'a str,
    /// The identity's client ID, used when the token response has none (Entra ID).
    pub client_id: Option<&'a str>,
    /// When the answer is written: `expires_in` counts from here, so a cached token says how
    /// long it really has left.
    pub now: SystemTime,
}

/// The body of a 200 from the token endpoint: one token object, or, for a service principal
/// with auxiliary tenants, an array of the primary's then each auxiliary tenant's, as upstream
/// answered.
pub fn token_body(primary: &Token, auxiliary: &[Token], context: &TokenContext) -> String {
    if auxiliary.is_empty() {
        return Value::Object(token_object(primary, context)).to_string();
    }
    let all = std::iter::once(primary)
        .chain(auxiliary)
        .map(|token| Value::Object(token_object(token, context)))
        .collect();
    Value::Array(all).to_string()
}

/// The body of a 200 from `/host/token`: `{"clientid": …, "token": {…}}`, the primary token
/// only, as upstream.
pub fn host_token_body(token: &Token, context: &TokenContext) -> String {
    let mut body = Map::new();
    body.insert(
        "clientid".into(),
        context.client_id.unwrap_or_default().into(),
    );
    body.insert("token".into(), Value::Object(token_object(token, context)));
    Value::Object(body).to_string()
}

/// One token object, keys in IMDS's (alphabetical) order whether or not serde_json keeps
/// insertion order.
fn token_object(token: &Token, context: &TokenContext) -> Map<String, Value> {
    let fields = token.fields();
    let text = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let unix = |at: SystemTime| {
        at.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    };
    let expires_in = token
        .expires_on()
        .duration_since(context.now)
        .map(|left| left.as_secs())
        .unwrap_or_default();
    let client_id = text(&fields.client_id).or_else(|| context.client_id.map(str::to_owned));

    let mut object = Map::new();
    object.insert("access_token".into(), token.access_token().into());
    if let Some(client_id) = client_id {
        object.insert("client_id".into(), client_id.into());
    }
    object.insert("expires_in".into(), expires_in.to_string().into());
    object.insert(
        "expires_on".into(),
        unix(token.expires_on()).to_string().into(),
    );
    if let Some(ext) = text(&fields.ext_expires_in) {
        object.insert("ext_expires_in".into(), ext.into());
    }
    // adal reads not_before as a number, so a missing one becomes "now" rather than "".
    let not_before = text(&fields.not_before).unwrap_or_else(|| unix(context.now).to_string());
    object.insert("not_before".into(), not_before.into());
    object.insert("refresh_token".into(), "".into());
    let resource = text(&fields.resource).unwrap_or_else(|| context.resource.to_owned());
    object.insert("resource".into(), resource.into());
    let token_type = text(&fields.token_type).unwrap_or_else(|| "Bearer".to_owned());
    object.insert("token_type".into(), token_type.into());
    object
}

/// The answer when IMDS or Entra ID gave no token.
///
/// Temporary failures (no answer, 429, 5xx, IMDS updating) are 503 with the service's
/// `Retry-After`, so clients retry; permanent ones (a wrong identity, secret or certificate,
/// an unusable answer) are 403, so clients stop at once. The description names the service
/// and its error; it never holds a token or secret.
pub fn token_failure(error: &AuthError) -> ErrorReply {
    let description = format!("failed to get a token: {error}");
    if error.is_temporary() {
        ErrorReply {
            retry_after_seconds: error.retry_after().map(|wait| wait.as_secs().max(1)),
            ..ErrorReply::new(503, ErrorCode::ServiceUnavailable, description)
        }
    } else {
        ErrorReply::new(403, ErrorCode::Forbidden, description)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use podid_azure::credential::{ServiceError, Surface, TokenFields};
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn token(json: Value, received: SystemTime) -> Token {
        let fields: TokenFields = serde_json::from_value(json).unwrap();
        Token::from_fields(fields, received).unwrap()
    }

    fn imds_token() -> Token {
        token(
            json!({"access_token": "eyJ.imds.sig", "client_id": "c-imds", "expires_in": "86399",
                   "expires_on": "1767312000", "ext_expires_in": "86399",
                   "not_before": "1767225300", "resource": "https://vault.azure.net",
                   "token_type": "Bearer"}),
            at(1_767_225_601),
        )
    }

    fn context(now: SystemTime) -> TokenContext<'static> {
        TokenContext {
            resource: "https://vault.azure.net",
            client_id: Some("c-identity"),
            now,
        }
    }

    #[test]
    fn an_imds_token_keeps_every_field_as_a_string() {
        let body = token_body(&imds_token(), &[], &context(at(1_767_225_601)));
        assert_eq!(
            body,
            r#"{"access_token":"eyJ.imds.sig","client_id":"c-imds","expires_in":"86399","expires_on":"1767312000","ext_expires_in":"86399","not_before":"1767225300","refresh_token":"","resource":"https://vault.azure.net","token_type":"Bearer"}"#
        );
    }

    #[test]
    fn expires_in_counts_from_the_answer_not_the_issue() {
        let later = at(1_767_312_000 - 600);
        let body: Value =
            serde_json::from_str(&token_body(&imds_token(), &[], &context(later))).unwrap();
        assert_eq!(body["expires_in"], "600");
        let expired: Value =
            serde_json::from_str(&token_body(&imds_token(), &[], &context(at(1_800_000_000))))
                .unwrap();
        assert_eq!(expired["expires_in"], "0");
    }

    #[test]
    fn a_v2_entra_token_is_completed_from_the_request() {
        let received = at(1_000_000);
        let v2 = token(
            json!({"access_token": "eyJ.sp.sig", "token_type": "Bearer", "expires_in": 3599,
                   "ext_expires_in": 3599}),
            received,
        );
        let body: Value = serde_json::from_str(&token_body(&v2, &[], &context(received))).unwrap();
        assert_eq!(
            body,
            json!({"access_token": "eyJ.sp.sig", "client_id": "c-identity", "expires_in": "3599",
                   "expires_on": "1003599", "ext_expires_in": "3599", "not_before": "1000000",
                   "refresh_token": "", "resource": "https://vault.azure.net",
                   "token_type": "Bearer"})
        );
    }

    #[test]
    fn auxiliary_tenants_give_an_array_primary_first() {
        let received = at(1_000);
        let make = |name: &str| {
            token(
                json!({"access_token": name, "expires_in": "60", "resource": "r"}),
                received,
            )
        };
        let body: Value = serde_json::from_str(&token_body(
            &make("primary"),
            &[make("aux1"), make("aux2")],
            &context(received),
        ))
        .unwrap();
        let tokens: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["access_token"].as_str().unwrap())
            .collect();
        assert_eq!(tokens, ["primary", "aux1", "aux2"]);
    }

    #[test]
    fn the_host_answer_wraps_the_token_with_the_client_id() {
        let body: Value =
            serde_json::from_str(&host_token_body(&imds_token(), &context(at(1_767_225_601))))
                .unwrap();
        assert_eq!(body["clientid"], "c-identity");
        assert_eq!(body["token"]["access_token"], "eyJ.imds.sig");
        assert_eq!(body["token"]["expires_on"], "1767312000");
    }

    fn service_error(surface: Surface, status: u16, retry_after: Option<u64>) -> AuthError {
        AuthError::Service(Box::new(ServiceError {
            surface,
            status,
            code: Some("invalid_request".into()),
            description: Some("Identity not found".into()),
            error_codes: Vec::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }))
    }

    #[test]
    fn permanent_failures_are_403_temporary_ones_503() {
        let not_found = token_failure(&service_error(Surface::Imds, 400, None));
        assert_eq!(
            (not_found.status, not_found.code),
            (403, ErrorCode::Forbidden)
        );
        assert_eq!(
            not_found.description,
            "failed to get a token: IMDS answered 400 invalid_request: Identity not found"
        );
        let throttled = token_failure(&service_error(Surface::Entra, 429, Some(7)));
        assert_eq!(
            (throttled.status, throttled.retry_after_seconds),
            (503, Some(7))
        );
        let updating = token_failure(&service_error(Surface::Imds, 410, None));
        assert_eq!((updating.status, updating.retry_after_seconds), (503, None));
        let unusable = token_failure(&AuthError::InvalidResponse {
            surface: Surface::Entra,
            reason: "access_token is empty".into(),
        });
        assert_eq!(unusable.status, 403);
    }

    proptest! {
        #[test]
        fn every_value_is_a_string_and_expiry_is_consistent(
            expires_on in 1u64..4_000_000_000,
            now in 0u64..4_000_000_000,
            access in "[!-~]{1,64}",
        ) {
            let t = token(json!({"access_token": access, "expires_on": expires_on.to_string()}), at(0));
            let body: Value = serde_json::from_str(&token_body(&t, &[], &context(at(now)))).unwrap();
            let object = body.as_object().unwrap();
            prop_assert!(object.values().all(Value::is_string));
            prop_assert_eq!(object["access_token"].as_str().unwrap(), access.as_str());
            let on: u64 = object["expires_on"].as_str().unwrap().parse().unwrap();
            let within: u64 = object["expires_in"].as_str().unwrap().parse().unwrap();
            prop_assert_eq!(on, expires_on);
            prop_assert_eq!(within, expires_on.saturating_sub(now));
        }
    }
}
