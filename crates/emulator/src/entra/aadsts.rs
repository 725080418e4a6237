//! The AADSTS error table and the error body Entra ID sends (azure-wire.md §2.5). Validation
//! and the fault renderer both build errors from this one table, so a code always comes with
//! the same status, `error` and wording.

use std::time::SystemTime;

use axum::http::StatusCode;
use serde_json::{Value, json};

/// One row of the table: what Entra ID answers for an AADSTS code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub code: u32,
    pub status: u16,
    pub error: &'static str,
    /// The description after `AADSTS<code>: `; `{name}` placeholders are filled per request.
    pub text: &'static str,
}

/// Every AADSTS error the emulator produces (and that a fault rule's `aadsts` can force).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aadsts {
    MissingParameter,
    MissingField,
    UnsupportedGrantType,
    TenantNotFound,
    ApplicationNotFound,
    InvalidClientSecret,
    ExpiredClientSecret,
    NoCredential,
    UnsupportedAssertionType,
    MalformedAssertion,
    AssertionSubjectMismatch,
    AssertionAudienceMismatch,
    AssertionTimeRange,
    AssertionSignature,
    ResourceNotFound,
    ScopeWithoutDefault,
    InvalidScope,
    InvalidInstance,
    TemporarilyUnavailable,
    TokenIssuanceError,
}

impl Aadsts {
    pub const ALL: [Aadsts; 20] = [
        Aadsts::MissingParameter,
        Aadsts::MissingField,
        Aadsts::UnsupportedGrantType,
        Aadsts::TenantNotFound,
        Aadsts::ApplicationNotFound,
        Aadsts::InvalidClientSecret,
        Aadsts::ExpiredClientSecret,
        Aadsts::NoCredential,
        Aadsts::UnsupportedAssertionType,
        Aadsts::MalformedAssertion,
        Aadsts::AssertionSubjectMismatch,
        Aadsts::AssertionAudienceMismatch,
        Aadsts::AssertionTimeRange,
        Aadsts::AssertionSignature,
        Aadsts::ResourceNotFound,
        Aadsts::ScopeWithoutDefault,
        Aadsts::InvalidScope,
        Aadsts::InvalidInstance,
        Aadsts::TemporarilyUnavailable,
        Aadsts::TokenIssuanceError,
    ];

    /// The table. Texts marked [O] in azure-wire.md are real wording; the rest are ours.
    pub const fn entry(self) -> Entry {
        const fn e(code: u32, status: u16, error: &'static str, text: &'static str) -> Entry {
            Entry {
                code,
                status,
                error,
                text,
            }
        }
        match self {
            Aadsts::MissingParameter => e(
                900144,
                400,
                "invalid_request",
                "The request body must contain the following parameter: '{parameter}'.",
            ),
            Aadsts::MissingField => e(
                90014,
                400,
                "invalid_request",
                "The required field '{field}' is missing from the credential. Ensure that you \
                 have all the necessary parameters for the login request.",
            ),
            Aadsts::UnsupportedGrantType => e(
                70003,
                400,
                "unsupported_grant_type",
                "The app requested an unsupported grant type '{grant_type}'; this endpoint \
                 supports 'client_credentials'.",
            ),
            Aadsts::TenantNotFound => e(
                90002,
                400,
                "invalid_request",
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud.",
            ),
            Aadsts::ApplicationNotFound => e(
                700016,
                400,
                "unauthorized_client",
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may \
                 have sent your authentication request to the wrong tenant.",
            ),
            Aadsts::InvalidClientSecret => e(
                7000215,
                401,
                "invalid_client",
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{client_id}'.",
            ),
            Aadsts::ExpiredClientSecret => e(
                7000222,
                401,
                "invalid_client",
                "The provided client secret keys for app '{client_id}' are expired. Visit the \
                 Azure portal to create new keys for your app.",
            ),
            Aadsts::NoCredential => e(
                7000218,
                401,
                "invalid_client",
                "The request body must contain the following parameter: 'client_assertion' or \
                 'client_secret'.",
            ),
            Aadsts::UnsupportedAssertionType => e(
                50012,
                401,
                "invalid_client",
                "Client assertion type '{assertion_type}' is not supported; use \
                 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            ),
            Aadsts::MalformedAssertion => e(
                50027,
                400,
                "invalid_request",
                "JWT token is invalid or malformed: {reason}.",
            ),
            Aadsts::AssertionSubjectMismatch => e(
                700021,
                401,
                "invalid_client",
                "Client assertion application identifier doesn't match 'client_id' parameter: \
                 {reason}.",
            ),
            Aadsts::AssertionAudienceMismatch => e(
                700023,
                401,
                "invalid_client",
                "Client assertion audience claim does not match Realm issuer: '{audience}' is \
                 not this tenant's token endpoint ({expected}).",
            ),
            Aadsts::AssertionTimeRange => e(
                700024,
                401,
                "invalid_client",
                "Client assertion is not within its valid time range. Current time: {now}, \
                 assertion valid from {nbf}, expiry time of assertion {exp}.",
            ),
            Aadsts::AssertionSignature => e(
                700027,
                401,
                "invalid_client",
                "Client assertion failed signature validation. [Reason - {reason}, Thumbprint of \
                 key used by client: '{thumbprint}']",
            ),
            Aadsts::ResourceNotFound => e(
                500011,
                400,
                "invalid_resource",
                "The resource principal named {resource} was not found in the tenant named \
                 {tenant}. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You \
                 might have sent your authentication request to the wrong tenant.",
            ),
            Aadsts::ScopeWithoutDefault => e(
                1002012,
                400,
                "invalid_scope",
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI).",
            ),
            Aadsts::InvalidScope => e(
                70011,
                400,
                "invalid_scope",
                "The provided request must include a 'scope' input parameter. The provided value \
                 for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
            ),
            Aadsts::InvalidInstance => e(
                50049,
                400,
                "invalid_instance",
                "Unknown or invalid instance: {instance}.",
            ),
            Aadsts::TemporarilyUnavailable => e(
                90006,
                503,
                "temporarily_unavailable",
                "The service is temporarily unavailable. Please try again.",
            ),
            Aadsts::TokenIssuanceError => e(
                50000,
                500,
                "server_error",
                "There was an error issuing a token.",
            ),
        }
    }

    pub fn from_code(code: u32) -> Option<Aadsts> {
        Aadsts::ALL.into_iter().find(|a| a.entry().code == code)
    }
}

/// An Entra ID error, before the trace lines are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    pub code: u32,
    pub status: StatusCode,
    pub error: String,
    /// The description without the `AADSTS<code>: ` prefix and the trace lines.
    pub description: String,
    pub retry_after_secs: Option<u64>,
}

impl AadError {
    /// The table's error for `kind`, placeholders filled from `args` (`("client_id", id)`).
    pub fn new(kind: Aadsts, args: &[(&str, &str)]) -> Self {
        let entry = kind.entry();
        Self {
            code: entry.code,
            status: StatusCode::from_u16(entry.status).unwrap_or(StatusCode::BAD_REQUEST),
            error: entry.error.to_string(),
            description: fill(entry.text, args),
            retry_after_secs: None,
        }
    }
}

/// Replaces each `{name}` in one pass (so values from the request are never re-expanded); a
/// placeholder without an argument becomes `<name>`, as in errors forced by fault rules.
fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match args.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => out.push_str(value),
            None => {
                out.push('<');
                out.push_str(name);
                out.push('>');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The identifiers and time stamped into an error body.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: String,
    pub correlation_id: String,
    pub at: SystemTime,
}

/// `2026-01-01 00:00:00Z`, the form of AAD's `timestamp` field and trace line.
pub fn aad_timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The JSON error body (same shape on v1 and v2).
pub fn error_body(err: &AadError, trace: &Trace) -> Value {
    let timestamp = aad_timestamp(trace.at);
    json!({
        "error": err.error,
        "error_description": format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            err.code, err.description, trace.trace_id, trace.correlation_id, timestamp
        ),
        "error_codes": [err.code],
        "timestamp": timestamp,
        "trace_id": trace.trace_id,
        "correlation_id": trace.correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", err.code),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for kind in Aadsts::ALL {
            assert_eq!(Aadsts::from_code(kind.entry().code), Some(kind));
            assert!(StatusCode::from_u16(kind.entry().status).is_ok());
        }
        assert_eq!(Aadsts::from_code(1), None);
    }

    #[test]
    fn placeholders_are_filled_from_the_arguments() {
        let err = AadError::new(
            Aadsts::ApplicationNotFound,
            &[("client_id", "abc"), ("tenant", "t1")],
        );
        assert!(
            err.description.starts_with(
                "Application with identifier 'abc' was not found in the directory 't1'."
            )
        );
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.error, "unauthorized_client");
    }

    #[test]
    fn values_are_not_expanded_again_and_missing_ones_are_named() {
        assert_eq!(fill("a {x} b {y}", &[("x", "{y}")]), "a {y} b <y>");
        assert_eq!(fill("open { brace", &[]), "open { brace");
    }

    #[test]
    fn the_body_carries_the_code_and_the_three_trace_lines() {
        let err = AadError::new(Aadsts::InvalidClientSecret, &[("client_id", "app")]);
        let trace = Trace {
            trace_id: "t".into(),
            correlation_id: "c".into(),
            at: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        };
        let body = error_body(&err, &trace);
        let description = body["error_description"].as_str().expect("string");
        assert!(description.starts_with("AADSTS7000215: Invalid client secret provided."));
        assert!(
            description.ends_with(
                "\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2026-01-01 00:00:00Z"
            )
        );
        assert_eq!(body["error_codes"], json!([7000215]));
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["timestamp"], "2026-01-01 00:00:00Z");
        assert_eq!(
            body["error_uri"],
            "https://login.microsoftonline.com/error?code=7000215"
        );
    }
}
