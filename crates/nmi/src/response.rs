//! The answers to a served token request, in IMDS's shape.
//!
//! Every value is a JSON string, as IMDS sends them (the Rust SDK reads `expires_on` only
//! from a string). Deviation: upstream dropped `client_id` and `ext_expires_in`; both are kept
//! here, since IMDS sends them and clients may read `client_id`. `refresh_token` stays, empty,
//! as upstream always sent it.

use std::time::{SystemTime, UNIX_EPOCH};

use podid_azure::credential::{AuthError, Token};
use serde_json::Value;

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
    PreparedBody::new(primary, auxiliary, context.resource, context.client_id)
        .token_body(context.now)
}

/// The body of a 200 from `/host/token`: `{"clientid": …, "token": {…}}`, the primary token
/// only, as upstream.
pub fn host_token_body(token: &Token, context: &TokenContext) -> String {
    PreparedBody::new(token, &[], context.resource, context.client_id).host_body(context.now)
}

/// The answers for one set of tokens, serialized once: only the values that count from the
/// moment of the answer (`expires_in`, and `not_before` when a token has none) are written per
/// answer, so a cached token is answered with a copy and two numbers instead of a JSON
/// serialization. It holds the only copy of the tokens a cache entry keeps.
/// No `Debug`: it holds access tokens.
pub struct PreparedBody {
    /// One object per token, the primary's first.
    objects: Vec<Box<[Part]>>,
    /// The host answer's `clientid`, as a JSON string.
    host_client_id: String,
    text_len: usize,
}

enum Part {
    /// Exact-size: a cache of many tokens keeps no slack.
    Text(Box<str>),
    /// Whole seconds from the answer to this instant (0 once it has passed).
    SecondsUntil(SystemTime),
    /// The answer's Unix time.
    Now,
}

impl PreparedBody {
    /// The answers for these tokens, asked for `resource` of an identity with `client_id`
    /// (each echoed when a token response lacks it).
    pub fn new(
        primary: &Token,
        auxiliary: &[Token],
        resource: &str,
        client_id: Option<&str>,
    ) -> Self {
        let objects: Vec<Box<[Part]>> = std::iter::once(primary)
            .chain(auxiliary)
            .map(|token| token_object(token, resource, client_id))
            .collect();
        let text_len = objects
            .iter()
            .flatten()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::SecondsUntil(_) | Part::Now => 0,
            })
            .sum();
        Self {
            objects,
            host_client_id: Value::from(client_id.unwrap_or_default()).to_string(),
            text_len,
        }
    }

    /// [`token_body`] at `now`.
    pub fn token_body(&self, now: SystemTime) -> String {
        let mut body = String::with_capacity(self.text_len + 32 * self.objects.len());
        let array = self.objects.len() > 1;
        if array {
            body.push('[');
        }
        for (i, object) in self.objects.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            render(&mut body, object, now);
        }
        if array {
            body.push(']');
        }
        body
    }

    /// [`host_token_body`] at `now`.
    pub fn host_body(&self, now: SystemTime) -> String {
        let mut body = String::with_capacity(self.text_len + 64);
        body.push_str("{\"clientid\":");
        body.push_str(&self.host_client_id);
        body.push_str(",\"token\":");
        if let Some(primary) = self.objects.first() {
            render(&mut body, primary, now);
        }
        body.push('}');
        body
    }
}

fn render(body: &mut String, object: &[Part], now: SystemTime) {
    use std::fmt::Write;
    for part in object {
        // Writing to a String cannot fail.
        let _ = match part {
            Part::Text(text) => body.write_str(text),
            Part::SecondsUntil(at) => write!(body, "{}", seconds_until(*at, now)),
            Part::Now => write!(body, "{}", unix(now)),
        };
    }
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn seconds_until(at: SystemTime, now: SystemTime) -> u64 {
    at.duration_since(now)
        .map(|left| left.as_secs())
        .unwrap_or_default()
}

/// Builds one token object's parts: text, JSON strings and the values filled in per answer.
#[derive(Default)]
struct Writer {
    parts: Vec<Part>,
    text: String,
}

impl Writer {
    fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// `"key":"value"`, the value escaped.
    fn field(&mut self, key: &str, value: &str) {
        self.text(&format!("\"{key}\":"));
        self.text(&Value::from(value).to_string());
    }

    /// `"key":"<part>"`; the part is a number, so it needs no escaping.
    fn field_part(&mut self, key: &str, part: Part) {
        self.text(&format!("\"{key}\":\""));
        let text = std::mem::take(&mut self.text);
        self.parts.push(Part::Text(text.into_boxed_str()));
        self.parts.push(part);
        self.text("\"");
    }

    fn finish(mut self) -> Box<[Part]> {
        self.parts.push(Part::Text(self.text.into_boxed_str()));
        self.parts.into_boxed_slice()
    }
}

/// One token object, keys in IMDS's (alphabetical) order.
fn token_object(token: &Token, resource: &str, client_id: Option<&str>) -> Box<[Part]> {
    let fields = token.fields();
    let text = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let mut object = Writer::default();
    object.text("{");
    object.field("access_token", token.access_token());
    if let Some(client_id) = text(&fields.client_id).or_else(|| client_id.map(str::to_owned)) {
        object.text(",");
        object.field("client_id", &client_id);
    }
    object.text(",");
    object.field_part("expires_in", Part::SecondsUntil(token.expires_on()));
    object.text(",");
    object.field("expires_on", &unix(token.expires_on()).to_string());
    if let Some(ext) = text(&fields.ext_expires_in) {
        object.text(",");
        object.field("ext_expires_in", &ext);
    }
    object.text(",");
    // adal reads not_before as a number, so a missing one becomes "now" rather than "".
    match text(&fields.not_before) {
        Some(not_before) => object.field("not_before", &not_before),
        None => object.field_part("not_before", Part::Now),
    }
    object.text(",");
    object.field("refresh_token", "");
    object.text(",");
    let resource = text(&fields.resource).unwrap_or_else(|| resource.to_owned());
    object.field("resource", &resource);
    object.text(",");
    let token_type = text(&fields.token_type).unwrap_or_else(|| "Bearer".to_owned());
    object.field("token_type", &token_type);
    object.text("}");
    object.finish()
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
    fn a_prepared_body_counts_from_each_answer() {
        // No not_before: it is the answer's time, as expires_in counts from it.
        let received = at(1_000_000);
        let v2 = token(
            json!({"access_token": "eyJ.sp.sig", "expires_in": 3599}),
            received,
        );
        let prepared = PreparedBody::new(&v2, &[], "https://vault.azure.net", Some("c-identity"));
        for later in [0, 1, 599, 3599, 4000] {
            let now = at(1_000_000 + later);
            assert_eq!(
                prepared.token_body(now),
                token_body(&v2, &[], &context(now))
            );
            assert_eq!(prepared.host_body(now), host_token_body(&v2, &context(now)));
            let body: Value = serde_json::from_str(&prepared.token_body(now)).unwrap();
            assert_eq!(
                body["expires_in"],
                3599u64.saturating_sub(later).to_string()
            );
            assert_eq!(body["not_before"], (1_000_000 + later).to_string());
        }
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
