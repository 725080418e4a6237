//! AzureIdentity: which Azure identity (managed identity or service principal) pods may use.

use std::borrow::Cow;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::SecretReference;
use kube::CustomResource;
use regex::Regex;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::names::{BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED};

// Every field is optional on the wire (upstream writes them with `omitempty`); what each identity
// type needs is checked at apply time (crate::rules refuses, crate::warnings warns).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzureIdentity",
    plural = "azureidentities",
    singular = "azureidentity",
    namespaced,
    status = "AzureIdentityStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "AzureIdentity is the specification of the identity data structure.",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type"}"#,
    printcolumn = r#"{"name": "ClientID", "type": "string", "jsonPath": ".spec.clientID"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
/// AzureIdentitySpec describes the credential specifications of an identity on Azure.
pub struct AzureIdentitySpec {
    /// 0 = user-assigned managed identity (also when omitted), 1 = service principal with a
    /// client secret, 2 = service principal with a PKCS#12 certificate.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<IdentityType>,
    /// User assigned MSI resource id.
    #[serde(rename = "resourceID", skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Both User Assigned MSI and SP can use this field.
    #[serde(rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Used for service principal
    #[serde(rename = "clientPassword", skip_serializing_if = "Option::is_none")]
    pub client_password: Option<SecretReference>,
    /// Service principal primary tenant id.
    #[serde(rename = "tenantID", skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Service principal auxiliary tenant ids
    #[serde(rename = "auxiliaryTenantIDs", skip_serializing_if = "Option::is_none")]
    pub auxiliary_tenant_ids: Option<Vec<String>>,
    /// For service principal. Option param for specifying the  AD details.
    #[serde(rename = "adResourceID", skip_serializing_if = "Option::is_none")]
    pub ad_resource_id: Option<String>,
    /// Authority base URL for service principals (upstream's default is
    /// `https://login.microsoftonline.com/`).
    #[serde(rename = "adEndpoint", skip_serializing_if = "Option::is_none")]
    pub ad_endpoint: Option<String>,
    /// Unused; kept for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// AzureIdentityStatus contains the replica status of the resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureIdentityStatus {
    /// Unused; kept for compatibility.
    #[serde(rename = "availableReplicas", skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
}

impl AzureIdentitySpec {
    /// The identity type, with an omitted `type` meaning a user-assigned managed identity.
    pub fn identity_type(&self) -> IdentityType {
        self.identity_type.unwrap_or_default()
    }
}

/// `spec.type` of an AzureIdentity. Unknown integers are kept rather than rejected while
/// decoding: the API server validates new objects, and old stored ones must stay readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
pub enum IdentityType {
    /// 0: a user-assigned managed identity, attached to the node and used through IMDS.
    #[default]
    UserAssignedManagedIdentity,
    /// 1: a service principal whose client secret is in the `clientPassword` Secret.
    ServicePrincipalSecret,
    /// 2: a service principal whose PKCS#12 certificate is in the `clientPassword` Secret.
    ServicePrincipalCertificate,
    /// Any other value (upstream treats it like a service principal in the controller and
    /// fails token requests for it in the node agent).
    Unknown(i64),
}

impl From<i64> for IdentityType {
    fn from(value: i64) -> Self {
        match value {
            0 => Self::UserAssignedManagedIdentity,
            1 => Self::ServicePrincipalSecret,
            2 => Self::ServicePrincipalCertificate,
            other => Self::Unknown(other),
        }
    }
}

impl From<IdentityType> for i64 {
    fn from(value: IdentityType) -> Self {
        match value {
            IdentityType::UserAssignedManagedIdentity => 0,
            IdentityType::ServicePrincipalSecret => 1,
            IdentityType::ServicePrincipalCertificate => 2,
            IdentityType::Unknown(other) => other,
        }
    }
}

impl JsonSchema for IdentityType {
    fn schema_name() -> Cow<'static, str> {
        "IdentityType".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // Plain integer like upstream's CRD; the allowed values are a validation rule on the spec
        // so that the error message can say what each value means.
        json_schema!({
            "description": "UserAssignedMSI or Service Principal",
            "type": "integer",
        })
    }
}

/// The pattern upstream checks a type-0 `spec.resourceID` against: unanchored and
/// case-insensitive, written in the syntax shared by Rust's `regex` and CEL's RE2.
pub const RESOURCE_ID_PATTERN: &str = "(?i)/subscriptions/(.+?)/resourcegroups/(.+?)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/(.+)";

static RESOURCE_ID_REGEX: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern; the unit tests compile it.
    Regex::new(RESOURCE_ID_PATTERN).expect("RESOURCE_ID_PATTERN is a valid regex")
});

/// Whether `resource_id` is acceptable as the ARM ID of a user-assigned managed identity, by
/// upstream's rule (a match anywhere in the string, letters compared case-insensitively).
pub fn is_valid_resource_id(resource_id: &str) -> bool {
    RESOURCE_ID_REGEX.is_match(resource_id)
}

/// Whether the identity carries `aadpodidentity.k8s.io/Behavior: namespaced` and so may only be
/// used by pods and bindings in its own namespace.
pub fn is_namespaced(identity: &AzureIdentity) -> bool {
    identity
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(BEHAVIOR_ANNOTATION))
        .is_some_and(|value| value == BEHAVIOR_NAMESPACED)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn identity_type_round_trips_known_and_unknown_integers() {
        for (number, kind) in [
            (0, IdentityType::UserAssignedManagedIdentity),
            (1, IdentityType::ServicePrincipalSecret),
            (2, IdentityType::ServicePrincipalCertificate),
            (3, IdentityType::Unknown(3)),
            (-1, IdentityType::Unknown(-1)),
        ] {
            assert_eq!(IdentityType::from(number), kind);
            assert_eq!(i64::from(kind), number);
            let decoded: IdentityType = serde_json::from_value(json!(number)).unwrap();
            assert_eq!(decoded, kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(number));
        }
    }

    #[test]
    fn omitted_type_means_user_assigned_managed_identity() {
        let spec: AzureIdentitySpec = serde_json::from_value(json!({"clientID": "x"})).unwrap();
        assert_eq!(spec.identity_type, None);
        assert_eq!(
            spec.identity_type(),
            IdentityType::UserAssignedManagedIdentity
        );
    }

    #[test]
    fn unknown_type_is_decoded_not_rejected() {
        let spec: AzureIdentitySpec = serde_json::from_value(json!({"type": 7})).unwrap();
        assert_eq!(spec.identity_type(), IdentityType::Unknown(7));
        assert_eq!(serde_json::to_value(&spec).unwrap(), json!({"type": 7}));
    }

    #[test]
    fn legacy_keys_do_not_fill_canonical_fields() {
        let spec: AzureIdentitySpec = serde_json::from_value(json!({
            "ResourceID": "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
            "resourceid": "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
            "ClientID": "c",
            "clientid": "c",
            "ClientPassword": {"name": "n", "namespace": "ns"},
            "TenantID": "t",
            "clientPassword": {"Name": "n", "Namespace": "ns"},
        }))
        .unwrap();
        assert_eq!(spec.resource_id, None);
        assert_eq!(spec.client_id, None);
        assert_eq!(spec.tenant_id, None);
        assert_eq!(spec.client_password, Some(SecretReference::default()));
    }

    #[test]
    fn resource_id_accepts_upstream_spellings() {
        for id in [
            "/subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourcegroups/Study4Dev-JE-AKS-Study4Dev-JE-AKSResource/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO",
            "/subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/External-DNS",
            "/SUBSCRIPTIONS/s/RESOURCEGROUPS/g/PROVIDERS/MICROSOFT.MANAGEDIDENTITY/USERASSIGNEDIDENTITIES/i",
            // Unanchored, like upstream: a prefix or suffix does not matter.
            "  /subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i/extra",
        ] {
            assert!(is_valid_resource_id(id), "{id}");
        }
    }

    #[test]
    fn resource_id_rejects_other_shapes() {
        for id in [
            "",
            "cb5569f2-8d09-4de1-a007-e02058e11d15",
            "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/",
            "/subscriptions/s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
            "/subscriptions/s/resourcegroups/g/providers/Microsoft.Compute/virtualMachines/vm",
        ] {
            assert!(!is_valid_resource_id(id), "{id}");
        }
    }

    fn identity_with_annotations(annotations: &[(&str, &str)]) -> AzureIdentity {
        let mut identity = AzureIdentity::new("id", AzureIdentitySpec::default());
        identity.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        identity
    }

    #[test]
    fn namespaced_behavior_needs_exact_key_and_value() {
        assert!(is_namespaced(&identity_with_annotations(&[(
            "aadpodidentity.k8s.io/Behavior",
            "namespaced"
        )])));
        assert!(!is_namespaced(&identity_with_annotations(&[(
            "aadpodidentity.k8s.io/Behavior",
            "Namespaced"
        )])));
        assert!(!is_namespaced(&identity_with_annotations(&[(
            "aadpodidentity.k8s.io/behavior",
            "namespaced"
        )])));
        assert!(!is_namespaced(&identity_with_annotations(&[])));
        assert!(!is_namespaced(&AzureIdentity::new(
            "id",
            AzureIdentitySpec::default()
        )));
    }

    proptest! {
        #[test]
        fn identity_type_conversion_is_lossless(number in any::<i64>()) {
            prop_assert_eq!(i64::from(IdentityType::from(number)), number);
        }

        #[test]
        fn resource_id_built_from_parts_is_valid(
            sub in "[a-zA-Z0-9-]{1,36}",
            group in "[a-zA-Z0-9_().-]{1,90}",
            name in "[a-zA-Z0-9_-]{1,128}",
        ) {
            let id = format!(
                "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            );
            prop_assert!(is_valid_resource_id(&id));
        }
    }
}
