//! ARM failures: what ARM said, whether to try again and when, and which identities it
//! refused.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::rate_limit::RateLimits;
use crate::credential::AuthError;
use crate::resource_id::{ResourceId, USER_ASSIGNED_IDENTITY_TYPE};

/// ARM's error object: `{"code", "message", "target"?, "details"?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ArmErrorBody {
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<ArmErrorBody>,
}

impl ArmErrorBody {
    /// Reads `{"error": {…}}`, or the bare object that some answers carry; `None` when the
    /// body is neither.
    pub(crate) fn read(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Envelope {
            error: ArmErrorBody,
        }
        serde_json::from_slice::<Envelope>(body)
            .map(|e| e.error)
            .or_else(|_| serde_json::from_slice::<ArmErrorBody>(body))
            .ok()
            .filter(|e| !e.code.is_empty() || !e.message.is_empty())
    }

    /// The user-assigned identities a `LinkedAuthorizationFailed` or `FailedIdentityOperation`
    /// error names (in its message or its details); empty for other codes.
    pub fn failing_identities(&self) -> Vec<ResourceId> {
        let names_identities = ["LinkedAuthorizationFailed", "FailedIdentityOperation"]
            .iter()
            .any(|c| self.code.eq_ignore_ascii_case(c));
        if !names_identities {
            return Vec::new();
        }
        let mut found = BTreeSet::new();
        let mut texts = vec![self.message.as_str()];
        texts.extend(self.details.iter().map(|d| d.message.as_str()));
        for text in texts {
            found.extend(identity_ids_in(text));
        }
        found.into_iter().collect()
    }
}

/// Every user-assigned identity ID in a message. ARM quotes them (`'<id1>,<id2>'`, or nested
/// in a quoted JSON response), so an ID runs from `/subscriptions/` to the next quote, comma,
/// or blank; anything that does not parse as an identity ID (the VM's own ID) is skipped.
fn identity_ids_in(text: &str) -> Vec<ResourceId> {
    const START: &str = "/subscriptions/";
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = lower[from..].find(START) {
        let start = from + offset;
        let end = text[start..]
            .find(|c: char| matches!(c, '\'' | '"' | ',' | '\\') || c.is_whitespace())
            .map_or(text.len(), |n| start + n);
        if let Ok(id) = ResourceId::parse(text[start..end].trim_end_matches('.'))
            && id.is_type(USER_ASSIGNED_IDENTITY_TYPE)
            && !found.contains(&id)
        {
            found.push(id);
        }
        from = end.max(start + START.len());
    }
    found
}

/// An ARM answer that was not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmStatusError {
    pub method: String,
    /// The request URL without its query.
    pub url: String,
    pub status: u16,
    /// Empty fields when the body was not ARM's error shape.
    pub error: ArmErrorBody,
    pub retry_after: Option<Duration>,
    pub rate_limits: RateLimits,
    /// `x-ms-request-id`, for support requests.
    pub request_id: Option<String>,
}

impl fmt::Display for ArmStatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: ARM answered {}",
            self.method, self.url, self.status
        )?;
        if !self.error.code.is_empty() {
            write!(f, " {}", self.error.code)?;
        }
        if !self.error.message.is_empty() {
            write!(f, ": {}", self.error.message)?;
        }
        Ok(())
    }
}

/// A long-running operation that ended `Failed` or `Canceled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationError {
    /// The operation's terminal status as ARM spelled it.
    pub status: String,
    pub error: ArmErrorBody,
    pub rate_limits: RateLimits,
}

/// An ARM call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("getting an ARM token: {0}")]
    Token(#[from] AuthError),
    #[error("{method} {url}: ARM did not answer: {source}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// 429: wait [`ArmError::retry_after`] before the next request of this kind. The client
    /// never waits and retries by itself.
    #[error("throttled: {0}")]
    Throttled(Box<ArmStatusError>),
    #[error("{0}")]
    Status(Box<ArmStatusError>),
    #[error("the operation ended {}: {} {}", .0.status, .0.error.code, .0.error.message)]
    OperationFailed(Box<OperationError>),
    #[error("the operation did not finish within {0:?}")]
    OperationTimedOut(Duration),
    #[error("{url}: {reason}")]
    InvalidResponse { url: String, reason: String },
    /// Upstream never PATCHed a machine ARM is deleting, and neither do we.
    #[error("{0} is being deleted")]
    Deleting(String),
}

impl ArmError {
    /// Whether the same call may succeed later: no answer, 429, 408, 5xx, a concurrent
    /// update (409 `Conflict`, `OperationPreempted`), an operation still running when the wait
    /// ended, or a token failure that is itself temporary.
    pub fn is_temporary(&self) -> bool {
        match self {
            ArmError::Token(e) => e.is_temporary(),
            ArmError::Transport { .. }
            | ArmError::Throttled(_)
            | ArmError::OperationTimedOut(_) => true,
            ArmError::Status(e) => match e.status {
                408 | 429 | 500..=599 => true,
                409 => ["Conflict", "OperationPreempted"]
                    .iter()
                    .any(|c| e.error.code.eq_ignore_ascii_case(c)),
                _ => false,
            },
            ArmError::OperationFailed(_)
            | ArmError::InvalidResponse { .. }
            | ArmError::Deleting(_) => false,
        }
    }

    /// The wait ARM asked for (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Throttled(e) | ArmError::Status(e) => e.retry_after,
            ArmError::Token(e) => e.retry_after(),
            _ => None,
        }
    }

    /// ARM's error code (`LinkedAuthorizationFailed`, `SubscriptionRequestsThrottled`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Throttled(e) | ArmError::Status(e) => Some(e.error.code.as_str()),
            ArmError::OperationFailed(e) => Some(e.error.code.as_str()),
            _ => None,
        }
        .filter(|c| !c.is_empty())
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Throttled(e) | ArmError::Status(e) => Some(e.status),
            ArmError::Token(e) => e.service().map(|s| s.status),
            _ => None,
        }
    }

    /// The counters of the answer that failed.
    pub fn rate_limits(&self) -> Option<&RateLimits> {
        match self {
            ArmError::Throttled(e) | ArmError::Status(e) => Some(&e.rate_limits),
            ArmError::OperationFailed(e) => Some(&e.rate_limits),
            _ => None,
        }
    }

    /// The identities ARM refused (`LinkedAuthorizationFailed`: no assign permission;
    /// `FailedIdentityOperation`: not found). The controller drops them and tries the rest.
    pub fn failing_identities(&self) -> Vec<ResourceId> {
        match self {
            ArmError::Throttled(e) | ArmError::Status(e) => e.error.failing_identities(),
            ArmError::OperationFailed(e) => e.error.failing_identities(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";

    fn uami(rg: &str, name: &str) -> ResourceId {
        ResourceId::user_assigned_identity(SUB, rg, name)
    }

    fn status_error(status: u16, code: &str, message: &str) -> ArmError {
        let e = ArmStatusError {
            method: "PATCH".into(),
            url: "https://arm/x".into(),
            status,
            error: ArmErrorBody {
                code: code.into(),
                message: message.into(),
                ..Default::default()
            },
            retry_after: None,
            rate_limits: RateLimits::default(),
            request_id: None,
        };
        if status == 429 {
            ArmError::Throttled(Box::new(e))
        } else {
            ArmError::Status(Box::new(e))
        }
    }

    #[test]
    fn linked_authorization_failed_names_every_quoted_identity() {
        let message = format!(
            "The client 'c' with object id 'o' has permission to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope '/subscriptions/{SUB}/resourceGroups/Node-RG/providers/Microsoft.Compute/virtualMachineScaleSets/pool0'; however, it does not have permission to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '/subscriptions/{SUB}/resourcegroups/Shared/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ext-1,/subscriptions/{SUB}/resourcegroups/Shared/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ext-2' or the linked scope(s) are invalid."
        );
        let e = status_error(403, "LinkedAuthorizationFailed", &message);
        assert_eq!(
            e.failing_identities(),
            vec![uami("Shared", "ext-1"), uami("Shared", "ext-2")]
        );
        assert!(!e.is_temporary());
    }

    #[test]
    fn failed_identity_operation_names_the_missing_identity_inside_nested_quotes() {
        let message = format!(
            "Identity operation for resource '/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm' failed with error 'Failed to perform resource identity operation. Status: 'BadRequest'. Response: '{{\"error\":{{\"code\":\"BadRequest\",\"message\":\"Resource '/subscriptions/{sub}/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/missing' was not found.\"}}}}'.'.",
            sub = SUB.to_ascii_lowercase()
        );
        let e = status_error(400, "FailedIdentityOperation", &message);
        assert_eq!(e.failing_identities(), vec![uami("rg", "missing")]);
    }

    #[test]
    fn the_limit_error_and_other_codes_name_no_identity() {
        let e = status_error(
            400,
            "FailedIdentityOperation",
            "Identity operation for resource 'x' failed with error 'User Assigned Identities Number '151' Assign exceed limit '150' in one request.'",
        );
        assert!(e.failing_identities().is_empty());
        let message = format!(
            "'/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a'"
        );
        assert!(
            status_error(400, "InvalidParameter", &message)
                .failing_identities()
                .is_empty()
        );
    }

    #[test]
    fn ids_in_details_and_with_unusual_names_are_found() {
        let body = ArmErrorBody {
            code: "linkedauthorizationfailed".into(),
            message: "see details".into(),
            target: None,
            details: vec![ArmErrorBody {
                code: "x".into(),
                message: format!(
                    "scope(s) '/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a.b(c)'."
                ),
                ..Default::default()
            }],
        };
        assert_eq!(body.failing_identities(), vec![uami("rg", "a.b(c)")]);
    }

    #[test]
    fn identity_extraction_never_panics_on_odd_text() {
        for text in [
            "",
            "/subscriptions/",
            "'/SUBSCRIPTIONS/",
            "ä/subscriptions/ä",
            "/subscriptions/x/resourceGroups/é,",
        ] {
            assert!(identity_ids_in(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn error_bodies_read_with_or_without_the_envelope() {
        let wrapped = ArmErrorBody::read(
            br#"{"error":{"code":"OperationNotAllowed","message":"m","details":[{"code":"TooManyRequests","target":"PutVM30Min","message":"{}"}]}}"#,
        )
        .unwrap();
        assert_eq!(wrapped.code, "OperationNotAllowed");
        assert_eq!(wrapped.details[0].target.as_deref(), Some("PutVM30Min"));
        assert_eq!(
            ArmErrorBody::read(br#"{"code":"C","message":"M"}"#)
                .unwrap()
                .code,
            "C"
        );
        assert_eq!(ArmErrorBody::read(b"<html>"), None);
        assert_eq!(ArmErrorBody::read(b"{}"), None);
    }

    #[test]
    fn temporary_failures_are_the_retryable_classes() {
        assert!(status_error(429, "SubscriptionRequestsThrottled", "").is_temporary());
        assert!(status_error(500, "InternalServerError", "").is_temporary());
        assert!(status_error(503, "", "").is_temporary());
        assert!(status_error(408, "", "").is_temporary());
        assert!(status_error(409, "Conflict", "").is_temporary());
        assert!(!status_error(409, "OperationNotAllowed", "").is_temporary());
        assert!(!status_error(403, "AuthorizationFailed", "").is_temporary());
        assert!(!status_error(404, "ResourceNotFound", "").is_temporary());
        assert!(!status_error(400, "InvalidParameter", "").is_temporary());
        assert!(!ArmError::Deleting("vm".into()).is_temporary());
        assert!(ArmError::OperationTimedOut(Duration::from_secs(1)).is_temporary());
        assert_eq!(status_error(429, "X", "").code(), Some("X"));
        assert_eq!(status_error(429, "", "").code(), None);
    }
}
