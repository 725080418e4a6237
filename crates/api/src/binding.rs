//! AzureIdentityBinding: which pods (by their `aadpodidbinding` label) may use an AzureIdentity.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// AzureIdentityBindingSpec matches the pod with the Identity. Used to indicate the potential
/// matches to look for between the pod/deployment and the identities present.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzureIdentityBinding",
    plural = "azureidentitybindings",
    singular = "azureidentitybinding",
    namespaced,
    status = "AzureIdentityBindingStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "AzureIdentityBinding brings together the spec of matching pods and the identity which they can use.",
    printcolumn = r#"{"name": "AzureIdentity", "type": "string", "jsonPath": ".spec.azureIdentity"}"#,
    printcolumn = r#"{"name": "Selector", "type": "string", "jsonPath": ".spec.selector"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
pub struct AzureIdentityBindingSpec {
    /// Name of an AzureIdentity in the binding's own namespace.
    #[serde(rename = "azureIdentity", skip_serializing_if = "Option::is_none")]
    pub azure_identity: Option<String>,
    /// Matched exactly (case-sensitive) against the value of the pod label `aadpodidbinding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Documented upstream as a tie-breaker but never used; kept for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// AzureIdentityBindingStatus contains the status of an AzureIdentityBinding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureIdentityBindingStatus {
    /// Unused; kept for compatibility.
    #[serde(rename = "availableReplicas", skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spec_uses_upstream_keys() {
        let spec = AzureIdentityBindingSpec {
            azure_identity: Some("demo".into()),
            selector: Some("DEMO".into()),
            weight: Some(2),
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"azureIdentity": "demo", "selector": "DEMO", "weight": 2})
        );
    }

    #[test]
    fn legacy_keys_do_not_fill_canonical_fields() {
        let spec: AzureIdentityBindingSpec = serde_json::from_value(
            json!({"AzureIdentity": "demo", "azureidentity": "demo", "Selector": "DEMO"}),
        )
        .unwrap();
        assert_eq!(spec, AzureIdentityBindingSpec::default());
    }
}
