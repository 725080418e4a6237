//! Small builders for the objects the decisions read.

use podid_api::names::{BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentityStatus, AzureIdentity,
    AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec, IdentityType,
};
use podid_azure::resource_id::ResourceId;
use serde_json::json;

use crate::{AssignedView, DesiredState, NodeIndex, NodeInfo, PodInfo, PodPhase};

pub const SUB: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";

pub fn uami(name: &str) -> ResourceId {
    ResourceId::user_assigned_identity(SUB, "identities", name)
}

/// A type-0 identity `namespace/name` whose resource ID and client ID derive from `name`.
pub fn identity(namespace: &str, name: &str) -> AzureIdentity {
    let mut identity = AzureIdentity::new(
        name,
        AzureIdentitySpec {
            identity_type: Some(IdentityType::UserAssignedManagedIdentity),
            resource_id: Some(uami(name).to_string()),
            client_id: Some(format!("client-{name}")),
            ..AzureIdentitySpec::default()
        },
    );
    identity.metadata.namespace = Some(namespace.into());
    identity.metadata.resource_version = Some("1".into());
    identity.metadata.uid = Some(format!("uid-{namespace}-{name}"));
    identity
}

pub fn service_principal(namespace: &str, name: &str) -> AzureIdentity {
    let mut identity = identity(namespace, name);
    identity.spec.identity_type = Some(IdentityType::ServicePrincipalSecret);
    identity.spec.resource_id = None;
    identity.spec.tenant_id = Some("tenant".into());
    identity
}

pub fn namespaced(mut identity: AzureIdentity) -> AzureIdentity {
    identity
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(BEHAVIOR_ANNOTATION.into(), BEHAVIOR_NAMESPACED.into());
    identity
}

pub fn binding(
    namespace: &str,
    name: &str,
    identity: &str,
    selector: &str,
) -> AzureIdentityBinding {
    let mut binding = AzureIdentityBinding::new(
        name,
        AzureIdentityBindingSpec {
            azure_identity: Some(identity.into()),
            selector: Some(selector.into()),
            weight: None,
        },
    );
    binding.metadata.namespace = Some(namespace.into());
    binding.metadata.resource_version = Some("1".into());
    binding
}

pub fn pod(namespace: &str, name: &str, selector: &str, node: &str) -> PodInfo {
    PodInfo {
        namespace: namespace.into(),
        name: name.into(),
        label: Some(selector.to_owned()),
        node_name: Some(node.into()),
        phase: PodPhase::Running,
    }
}

/// `node-<i>` is VM `vm-<i>`; `vmss-<set>-<i>` is instance `i` of scale set `set`.
pub fn node(name: &str) -> NodeInfo {
    let rg = format!("/subscriptions/{SUB}/resourceGroups/MC_nodes");
    let provider_id = match name.strip_prefix("vmss-") {
        Some(rest) => {
            let (set, instance) = rest.split_once('-').expect("vmss-<set>-<i>");
            format!(
                "azure://{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{set}/virtualMachines/{instance}"
            )
        }
        None => format!("azure://{rg}/providers/Microsoft.Compute/virtualMachines/vm-{name}"),
    };
    NodeInfo {
        name: name.into(),
        provider_id: Some(provider_id),
    }
}

pub fn nodes(names: &[&str]) -> NodeIndex {
    NodeIndex::new(&names.iter().map(|name| node(name)).collect::<Vec<_>>()).0
}

/// Views of objects recording the assignments of `state` with `status`.
pub fn views(state: &DesiredState, status: AssignedIdentityState) -> Vec<AssignedView> {
    state
        .assignments
        .values()
        .map(|assignment| {
            let mut object = assignment.to_resource();
            object.status = Some(AzureAssignedIdentityStatus {
                status: Some(status.clone()),
                available_replicas: Some(1),
            });
            AssignedView::of(&object)
        })
        .collect()
}

/// An AzureAssignedIdentity as upstream's MIC wrote it (its JSON, read back), for the pod,
/// identity and binding given, with `status`.
pub fn upstream_assigned(
    pod: &PodInfo,
    identity: &AzureIdentity,
    binding: &AzureIdentityBinding,
    namespace: &str,
    status: &str,
) -> AzureAssignedIdentity {
    let node = pod.node_name.clone().unwrap_or_default();
    let embed = |object: serde_json::Value| {
        let mut object = object;
        // Go clients serialize an unset timestamp as null; specs carry the stray metadata.
        object["metadata"]["creationTimestamp"] = serde_json::Value::Null;
        object["spec"]["metadata"] = json!({"creationTimestamp": null});
        object["status"] = json!({"availableReplicas": 0, "metadata": {"creationTimestamp": null}});
        object
    };
    serde_json::from_value(json!({
        "apiVersion": "aadpodidentity.k8s.io/v1",
        "kind": "AzureAssignedIdentity",
        "metadata": {
            "name": format!("{}-{}-{}", pod.name, pod.namespace, identity.metadata.name.as_deref().unwrap_or_default()),
            "namespace": namespace,
            "labels": {"nodename": node},
            "finalizers": ["azureassignedidentity.finalizers.aadpodidentity.k8s.io"],
            "resourceVersion": "4711",
            "uid": "aai-uid",
        },
        "spec": {
            "azureIdentityRef": embed(serde_json::to_value(identity).unwrap()),
            "azureBindingRef": embed(serde_json::to_value(binding).unwrap()),
            "metadata": {"creationTimestamp": null},
            "pod": pod.name,
            "podNamespace": pod.namespace,
            "nodename": node,
        },
        "status": {"status": status, "availableReplicas": 1, "metadata": {"creationTimestamp": null}},
    }))
    .expect("an upstream-shaped AzureAssignedIdentity decodes")
}
