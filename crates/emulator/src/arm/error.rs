//! ARM's error envelope `{"error":{"code","message",…}}` and the wording of every error the
//! emulator answers with (azure-wire.md §3.7). Texts marked [E] in the reference are the
//! emulator's own guesses.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::armid::{self, ArmId};
use crate::world::World;

#[derive(Debug, Clone, PartialEq)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra headers: `WWW-Authenticate` on 401s, `Retry-After` on 429s.
    pub headers: Vec<(&'static str, String)>,
    /// The rarely used parts of the envelope, boxed to keep results small.
    pub more: Box<ErrorExtras>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorExtras {
    pub target: Option<String>,
    pub details: Vec<Value>,
    pub innererror: Option<Value>,
    /// `{"code", "message"}` without the `error` envelope: what some resource providers (Azure
    /// DNS) answer themselves.
    pub bare: bool,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
            more: Box::default(),
        }
    }

    pub fn with_target(mut self, target: &str) -> Self {
        self.more.target = Some(target.to_string());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn body(&self) -> Value {
        if self.more.bare {
            return json!({ "code": self.code, "message": self.message });
        }
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(target) = &self.more.target {
            error["target"] = json!(target);
        }
        if !self.more.details.is_empty() {
            error["details"] = json!(self.more.details);
        }
        if let Some(inner) = &self.more.innererror {
            error["innererror"] = inner.clone();
        }
        json!({ "error": error })
    }
}

pub fn missing_api_version() -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )
}

pub fn invalid_api_version(given: &str, minimum: &str) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidApiVersionParameter",
        format!(
            "The api-version '{given}' is invalid. The supported versions are '{minimum}' and later \
             (format 'YYYY-MM-DD' or 'YYYY-MM-DD-preview')."
        ),
    )
}

pub fn not_routed(method: &str, path: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("The emulator serves no ARM API at {method} {path}."),
    )
}

pub fn method_not_allowed(method: &str) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

pub fn invalid_body(problem: &str) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        format!("The request content was invalid and could not be deserialized: '{problem}'."),
    )
}

pub fn subscription_not_found(subscription: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "SubscriptionNotFound",
        format!("The subscription '{subscription}' could not be found."),
    )
}

pub fn resource_group_not_found(group: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{group}' could not be found."),
    )
}

/// 404 `ResourceGroupNotFound` unless the group exists.
pub fn require_group(world: &World, subscription: &str, group: &str) -> Result<(), ArmError> {
    if world
        .resource_groups
        .contains_key(armid::resource_group_id(subscription, group).key())
    {
        Ok(())
    } else {
        Err(resource_group_not_found(group))
    }
}

pub fn resource_not_found(resource_type: &str, name: &str, group: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{resource_type}/{name}' under resource group '{group}' was not found. \
             For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

/// A nested resource (a DNS record set) under a parent that does not exist.
pub fn parent_resource_not_found(parent: &str) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ParentResourceNotFound",
        format!(
            "Can not perform requested operation on nested resource. Parent resource '{parent}' not \
             found."
        ),
    )
}

/// Azure DNS's own answer for a record set that does not exist, without the envelope.
pub fn record_set_not_found(name: &str, group: &str, subscription: &str) -> ArmError {
    let mut error = ArmError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "The resource record '{name}' does not exist in resource group '{group}' of \
             subscription '{subscription}'."
        ),
    );
    error.more.bare = true;
    error
}

pub fn bad_request(message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub fn authorization_failed(
    client_id: &str,
    object_id: &str,
    action: &str,
    scope: &str,
) -> ArmError {
    ArmError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{client_id}' with object id '{object_id}' does not have authorization to \
             perform action '{action}' over scope '{scope}' or the scope is invalid. If access was \
             recently granted, please refresh your credentials."
        ),
    )
}

/// Every failing linked scope inside one pair of single quotes, comma-separated: MIC extracts
/// them with one regex match (docs/azure-wire.md §3.7).
pub fn linked_authorization_failed(
    client_id: &str,
    object_id: &str,
    write_action: &str,
    scope: &str,
    linked: &[String],
) -> ArmError {
    ArmError::new(
        StatusCode::FORBIDDEN,
        "LinkedAuthorizationFailed",
        format!(
            "The client '{client_id}' with object id '{object_id}' has permission to perform action \
             '{write_action}' on scope '{scope}'; however, it does not have permission to perform \
             action 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked \
             scope(s) '{}' or the linked scope(s) are invalid.",
            linked.join(",")
        ),
    )
}

/// 400 `FailedIdentityOperation`: CRP's wrapper around the identity service's inner error.
fn failed_identity_operation(resource: &ArmId, inner_message: &str) -> ArmError {
    let inner = json!({"error": {"code": "BadRequest", "message": inner_message}});
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "FailedIdentityOperation",
        format!(
            "Identity operation for resource '{resource}' failed with error 'Failed to perform \
             resource identity operation. Status: 'BadRequest'. Response: '{inner}'.'."
        ),
    )
}

pub fn identity_not_found(resource: &ArmId, identity: &str) -> ArmError {
    failed_identity_operation(
        resource,
        &format!(
            "Resource '{}' was not found.",
            identity.to_ascii_lowercase()
        ),
    )
}

pub fn too_many_identities(resource: &ArmId, count: usize, limit: usize) -> ArmError {
    failed_identity_operation(
        resource,
        &format!(
            "User Assigned Identities Number '{count}' Assign exceed limit '{limit}' in one request."
        ),
    )
}

pub fn invalid_parameter(target: &str, message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message).with_target(target)
}

pub fn conflict() -> ArmError {
    ArmError::new(
        StatusCode::CONFLICT,
        "Conflict",
        "The request failed due to conflict with a concurrent request. To resolve it, please refer \
         to https://aka.ms/activitylog to get more details on the conflicting requests.",
    )
}

pub fn marked_for_deletion(operation: &str, kind_name: &str, name: &str) -> ArmError {
    ArmError::new(
        StatusCode::CONFLICT,
        "OperationNotAllowed",
        format!(
            "Operation '{operation}' is not allowed on {kind_name} '{name}' since it is marked for \
             deletion. You can only retry the Delete operation (or wait for an ongoing one to \
             complete)."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_only_what_is_set() {
        let body = invalid_parameter("resourceIdentity.identityIds", "m").body();
        assert_eq!(
            body,
            json!({"error": {"code": "InvalidParameter", "message": "m", "target": "resourceIdentity.identityIds"}})
        );
        assert!(
            missing_api_version().body()["error"]
                .get("target")
                .is_none()
        );
    }

    #[test]
    fn the_missing_identity_is_quoted_in_lower_case_inside_the_wrapper() {
        let vm = ArmId::new(
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM",
        );
        let e = identity_not_found(
            &vm,
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ID1",
        );
        assert_eq!(
            e.message,
            "Identity operation for resource '/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM' \
             failed with error 'Failed to perform resource identity operation. Status: 'BadRequest'. Response: \
             '{\"error\":{\"code\":\"BadRequest\",\"message\":\"Resource '/subscriptions/s/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/id1' was not found.\"}}'.'."
        );
    }
}
