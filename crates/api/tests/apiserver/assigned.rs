//! An AzureAssignedIdentity exactly as upstream's MIC v1.8.17 writes it survives the API server
//! and podid's types unchanged: the embedded identity and binding (with their resourceVersion,
//! uid and annotations), the `nodename` label, the finalizer, and the status.

use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use podid_api::{AssignedIdentityState, AzureAssignedIdentity};
use podid_testkit::{TestEnv, wait_for};
use serde_json::{Value, json};

/// The body upstream's MIC POSTs: `data/aai-upstream-v1.8.17.json` without the metadata the
/// server sets (resourceVersion, uid, creationTimestamp, generation, managedFields, namespace).
const UPSTREAM_AAI: &str = include_str!("../data/apiserver-aai-create.json");

/// Upstream's Go structs embed an empty ObjectMeta in every spec and status (`"metadata": {}`);
/// nothing reads it, and podid's schema does not declare it, so the API server drops it.
fn without_stray_metadata(value: &Value) -> Value {
    let mut value = value.clone();
    strip(&mut value, true);
    value
}

fn strip(value: &mut Value, is_spec_or_status: bool) {
    if let Value::Object(map) = value {
        if is_spec_or_status && map.get("metadata") == Some(&json!({})) {
            map.remove("metadata");
        }
        for (key, child) in map.iter_mut() {
            let child_is_spec_or_status = key == "spec" || key == "status";
            if child_is_spec_or_status || key == "azureIdentityRef" || key == "azureBindingRef" {
                strip(child, child_is_spec_or_status);
            }
        }
    }
}

#[tokio::test]
async fn upstream_assigned_identity_round_trips() {
    let env = TestEnv::get().await;
    let ns = env.namespace("aai").await;
    let client = env.admin();
    let original: Value = serde_json::from_str(UPSTREAM_AAI).unwrap();
    let name = original["metadata"]["name"].as_str().unwrap().to_owned();

    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::erase::<AzureAssignedIdentity>(&()),
    );
    let body: DynamicObject = serde_json::from_value(original.clone()).unwrap();
    raw.create(&PostParams::default(), &body).await.unwrap();

    // What the server stores: nothing of substance pruned.
    let stored = serde_json::to_value(raw.get(&name).await.unwrap()).unwrap();
    for part in ["spec", "status"] {
        assert_eq!(
            without_stray_metadata(&original[part]),
            stored[part],
            "{part} as stored by the API server"
        );
    }
    assert_eq!(
        stored["spec"]["azureIdentityRef"]["metadata"]["resourceVersion"],
        "1294307"
    );
    assert_eq!(
        stored["spec"]["azureBindingRef"]["metadata"]["resourceVersion"],
        "1294311"
    );

    // Through podid's types and back: identical.
    let typed: Api<AzureAssignedIdentity> = Api::namespaced(client.clone(), ns.name());
    let decoded = typed.get(&name).await.unwrap();
    assert_eq!(
        decoded.status.as_ref().and_then(|s| s.status.clone()),
        Some(AssignedIdentityState::Assigned)
    );
    assert_eq!(
        decoded.spec.node_name.as_deref(),
        Some("aks-agentpool-27437016-vmss000000")
    );
    let reencoded = serde_json::to_value(&decoded).unwrap();
    for part in ["spec", "status"] {
        assert_eq!(
            without_stray_metadata(&original[part]),
            reencoded[part],
            "{part} re-encoded"
        );
    }
    assert_eq!(
        original["metadata"]["labels"],
        reencoded["metadata"]["labels"]
    );
    assert_eq!(
        original["metadata"]["finalizers"],
        reencoded["metadata"]["finalizers"]
    );

    // The finalizer keeps it until removed, as MIC does before deleting.
    typed.delete(&name, &DeleteParams::default()).await.unwrap();
    let terminating = typed.get(&name).await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let remove_finalizers = json!({"metadata": {"finalizers": null}});
    typed
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&remove_finalizers),
        )
        .await
        .unwrap();
    wait_for(
        "the assigned identity to be deleted",
        Duration::from_secs(30),
        || async { typed.get_opt(&name).await.ok().filter(Option::is_none) },
    )
    .await;
}

#[test]
fn stray_metadata_is_stripped_from_spec_status_and_embedded_objects_only() {
    let spec = json!({
        "metadata": {},
        "pod": "demo",
        "azureIdentityRef": {
            "metadata": {"name": "x"},
            "spec": {"metadata": {}, "clientID": "c"},
            "status": {"metadata": {}},
        },
    });
    assert_eq!(
        without_stray_metadata(&spec),
        json!({
            "pod": "demo",
            "azureIdentityRef": {"metadata": {"name": "x"}, "spec": {"clientID": "c"}, "status": {}},
        })
    );
    let status = json!({"metadata": {"name": "kept, not empty"}, "status": "Assigned"});
    assert_eq!(without_stray_metadata(&status), status);
}
