//! Wire-shape tests: the seed manifests and an upstream-written AzureAssignedIdentity decode into
//! the types and re-encode without losing anything.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use pretty_assertions::assert_eq;
use serde_json::Value;

use crate::names::{ASSIGNED_IDENTITY_FINALIZER, ASSIGNED_IDENTITY_NODE_LABEL};
use crate::{
    AssignedIdentityState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding,
    AzurePodIdentityException, IdentityType, is_namespaced, is_valid_resource_id,
};

fn seed_dir() -> PathBuf {
    // The seed story's manifests, as its user wrote them (examples/seed/README.md).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed")
}

fn test_data(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The documents of a multi-document YAML seed file, as JSON values.
fn seed_documents(file: &str) -> Vec<Value> {
    let path = seed_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read seed fixture {}: {err}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            serde::Deserialize::deserialize(document)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        })
        .collect()
}

/// Decodes `document` as `T` and checks that encoding it again gives back every field.
fn decode_losslessly<T>(document: &Value) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let decoded: T = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&decoded).unwrap(), document);
    decoded
}

fn documents_of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn seed_demo_identity_and_binding_decode_with_all_fields() {
    let documents = seed_documents("azureidentity-demo.yaml");
    assert_eq!(documents.len(), 2);
    let identity: AzureIdentity =
        decode_losslessly(documents_of_kind(&documents, "AzureIdentity")[0]);
    assert_eq!(identity.name_any(), "demo");
    assert_eq!(
        identity.spec.identity_type(),
        IdentityType::UserAssignedManagedIdentity
    );
    assert_eq!(
        identity.spec.client_id.as_deref(),
        Some("cb5569f2-8d09-4de1-a007-e02058e11d15")
    );
    assert!(is_valid_resource_id(
        identity.spec.resource_id.as_deref().unwrap()
    ));
    assert!(!is_namespaced(&identity));

    let binding: AzureIdentityBinding =
        decode_losslessly(documents_of_kind(&documents, "AzureIdentityBinding")[0]);
    assert_eq!(binding.spec.azure_identity.as_deref(), Some("demo"));
    assert_eq!(binding.spec.selector.as_deref(), Some("DEMO"));
}

#[test]
fn seed_external_dns_identity_decodes_with_resource_groups_camel_case() {
    let documents = seed_documents("external-dns-identity.yaml");
    let identity: AzureIdentity =
        decode_losslessly(documents_of_kind(&documents, "AzureIdentity")[0]);
    assert_eq!(identity.namespace().as_deref(), Some("external-dns"));
    let resource_id = identity.spec.resource_id.as_deref().unwrap();
    assert!(resource_id.contains("/resourceGroups/"));
    assert!(is_valid_resource_id(resource_id));

    let binding: AzureIdentityBinding =
        decode_losslessly(documents_of_kind(&documents, "AzureIdentityBinding")[0]);
    assert_eq!(
        binding.spec.azure_identity.as_deref(),
        Some("external-dns-access-azure-dns-identity")
    );
}

#[test]
fn seed_exceptions_decode_with_all_labels() {
    let documents = seed_documents("mic-exception.yaml");
    let exceptions: Vec<AzurePodIdentityException> =
        documents.iter().map(decode_losslessly).collect();
    assert_eq!(exceptions.len(), 2);
    let labels = exceptions[1].spec.pod_labels.as_ref().unwrap();
    assert_eq!(
        labels
            .get("kubernetes.azure.com/managedby")
            .map(String::as_str),
        Some("aks")
    );
}

#[test]
fn upstream_assigned_identity_round_trips_without_loss() {
    let document = test_data("aai.json");
    let assigned: AzureAssignedIdentity = decode_losslessly(&document);

    assert_eq!(assigned.name_any(), "demo-default-demo");
    assert_eq!(
        assigned
            .labels()
            .get(ASSIGNED_IDENTITY_NODE_LABEL)
            .map(String::as_str),
        Some("aks-agentpool-27437016-vmss000000")
    );
    assert_eq!(assigned.finalizers(), [ASSIGNED_IDENTITY_FINALIZER]);
    let status = assigned.status.as_ref().unwrap();
    assert_eq!(status.status, Some(AssignedIdentityState::Assigned));
    assert_eq!(status.available_replicas, Some(1));

    let identity = assigned.spec.azure_identity_ref.as_ref().unwrap();
    assert_eq!(identity.resource_version().as_deref(), Some("1294307"));
    assert_eq!(
        identity.uid().as_deref(),
        Some("c3a7e2d9-1f45-4b8c-9e62-7d0f4a1b5c38")
    );
    assert!(is_namespaced(identity));
    assert!(identity.metadata.managed_fields.is_some());
    let binding = assigned.spec.azure_binding_ref.as_ref().unwrap();
    assert_eq!(binding.resource_version().as_deref(), Some("1294311"));
    assert_eq!(
        assigned.spec.node_name.as_deref(),
        Some("aks-agentpool-27437016-vmss000000")
    );
}

/// Upstream's CRD declared a stray `metadata` object in every spec and status (left over from an
/// embedded ObjectMeta in its Go types); ours does not, so the API server prunes it. Those are
/// the only keys the types drop from what an upstream API server returns.
#[test]
fn upstream_raw_assigned_identity_loses_only_the_stray_metadata_objects() {
    let mut raw = test_data("aai-upstream-v1.8.17.json");
    let assigned: AzureAssignedIdentity = serde_json::from_value(raw.clone()).unwrap();
    for pointer in [
        "/spec",
        "/status",
        "/spec/azureIdentityRef/spec",
        "/spec/azureIdentityRef/status",
        "/spec/azureBindingRef/spec",
        "/spec/azureBindingRef/status",
    ] {
        let object = raw
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .unwrap();
        assert_eq!(
            object.remove("metadata"),
            Some(serde_json::json!({})),
            "{pointer}"
        );
    }
    assert_eq!(serde_json::to_value(&assigned).unwrap(), raw);
    assert_eq!(raw, test_data("aai.json"));
}

#[test]
fn empty_assigned_status_from_very_old_controllers_is_kept() {
    let mut document = test_data("aai.json");
    document["status"]["status"] = Value::String(String::new());
    let assigned: AzureAssignedIdentity = decode_losslessly(&document);
    assert_eq!(
        assigned.status.unwrap().status,
        Some(AssignedIdentityState::Other(String::new()))
    );
}
