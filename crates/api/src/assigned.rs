//! AzureAssignedIdentity: the controller's record that a pod on a node uses an identity.

use std::borrow::Cow;

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{AzureIdentity, AzureIdentityBinding};

/// AzureAssignedIdentitySpec contains the relationship between an AzureIdentity and an
/// AzureIdentityBinding.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzureAssignedIdentity",
    plural = "azureassignedidentities",
    singular = "azureassignedidentity",
    namespaced,
    status = "AzureAssignedIdentityStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "AzureAssignedIdentity contains the identity <-> pod mapping which is matched."
)]
pub struct AzureAssignedIdentitySpec {
    /// The whole AzureIdentity (metadata including resourceVersion, spec, status) as it was when
    /// this assignment was created or last updated; the node agent uses this snapshot.
    #[serde(
        default,
        rename = "azureIdentityRef",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "embedded_resource_schema::<AzureIdentity>")]
    pub azure_identity_ref: Option<AzureIdentity>,
    /// The whole AzureIdentityBinding that matched the pod, shaped like `azureIdentityRef`.
    #[serde(
        default,
        rename = "azureBindingRef",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "embedded_resource_schema::<AzureIdentityBinding>")]
    pub azure_binding_ref: Option<AzureIdentityBinding>,
    /// Name of the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Namespace of the pod.
    #[serde(rename = "podNamespace", skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// Node of the pod (the key is all lowercase on the wire).
    #[serde(rename = "nodename", skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Unused; kept for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// AzureAssignedIdentityStatus contains the replica status of the resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureAssignedIdentityStatus {
    /// Where the assignment stands: `Created`, `Assigned` or `Unassigned`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<AssignedIdentityState>,
    /// Always 1 once created.
    #[serde(rename = "availableReplicas", skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
}

/// `status.status` of an AzureAssignedIdentity. Any other string (very old controllers wrote an
/// empty one) is kept as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum AssignedIdentityState {
    /// The object exists; the identity is not yet on the node.
    Created,
    /// The identity is assigned to the node; the node agent may hand out tokens.
    Assigned,
    /// The identity was removed from the node; the object is about to be deleted.
    Unassigned,
    /// Anything else, verbatim.
    Other(String),
}

impl AssignedIdentityState {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "Created",
            Self::Assigned => "Assigned",
            Self::Unassigned => "Unassigned",
            Self::Other(other) => other,
        }
    }
}

impl From<String> for AssignedIdentityState {
    fn from(value: String) -> Self {
        match value.as_str() {
            "Created" => Self::Created,
            "Assigned" => Self::Assigned,
            "Unassigned" => Self::Unassigned,
            _ => Self::Other(value),
        }
    }
}

impl From<AssignedIdentityState> for String {
    fn from(value: AssignedIdentityState) -> Self {
        match value {
            AssignedIdentityState::Other(other) => other,
            known => known.as_str().to_owned(),
        }
    }
}

impl JsonSchema for AssignedIdentityState {
    fn schema_name() -> Cow<'static, str> {
        "AssignedIdentityState".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // A free string like upstream's CRD: only the controller writes it, and old objects carry
        // an empty string.
        json_schema!({"type": "string"})
    }
}

/// Schema of a whole object embedded in another one (`x-kubernetes-embedded-resource`): the API
/// server then requires `apiVersion` and `kind` and keeps `metadata` as ObjectMeta, so the
/// embedded resourceVersion, uid and annotations survive.
fn embedded_resource_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = T::json_schema(generator);
    if let Some(object) = schema.as_object_mut() {
        // Upstream never required spec inside the embedded objects.
        object.remove("required");
        if let Some(properties) = object
            .get_mut("properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
            properties.insert("kind".into(), serde_json::json!({"type": "string"}));
            properties.insert("metadata".into(), serde_json::json!({"type": "object"}));
        }
        object.insert("x-kubernetes-embedded-resource".into(), true.into());
    }
    schema
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn state_round_trips_known_and_other_strings() {
        for (text, state) in [
            ("Created", AssignedIdentityState::Created),
            ("Assigned", AssignedIdentityState::Assigned),
            ("Unassigned", AssignedIdentityState::Unassigned),
            ("", AssignedIdentityState::Other(String::new())),
            ("assigned", AssignedIdentityState::Other("assigned".into())),
        ] {
            let decoded: AssignedIdentityState = serde_json::from_value(json!(text)).unwrap();
            assert_eq!(decoded, state);
            assert_eq!(decoded.as_str(), text);
            assert_eq!(serde_json::to_value(&decoded).unwrap(), json!(text));
        }
    }

    #[test]
    fn node_name_key_is_all_lowercase() {
        let spec = AzureAssignedIdentitySpec {
            node_name: Some("node-1".into()),
            pod_namespace: Some("default".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"nodename": "node-1", "podNamespace": "default"})
        );
    }
}
