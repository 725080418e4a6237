//! An AzureAssignedIdentity exactly as upstream's MIC v1.8.17 writes it, or as it is exported from
//! an upstream cluster, applies with strict field validation and survives the API server
//! unchanged: the embedded identity and binding (with their resourceVersion, uid and
//! annotations), the stray `metadata` objects, the `nodename` label, the finalizer, and the
//! status. podid's types read everything but the stray `metadata`.

use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use podid_api::names::ASSIGNED_IDENTITY_FINALIZER;
use podid_api::{AssignedIdentityState, AzureAssignedIdentity};
use podid_testkit::{TestEnv, Written, create_strict, wait_for};
use serde_json::{Value, json};

/// The body upstream's MIC POSTs: `data/aai-upstream-v1.8.17.json` without the metadata the
/// server sets (resourceVersion, uid, creationTimestamp, generation, managedFields, namespace).
const UPSTREAM_AAI: &str = include_str!("../data/apiserver-aai-create.json");

/// Upstream's Go structs embed an empty ObjectMeta in every spec and status (`"metadata": {}`);
/// the CRD declares it, but nothing reads it, so podid's types leave it out.
fn without_stray_metadata(value: &Value) -> Value {
    rewrite_stray_metadata(value, None)
}

/// The API server advises a finalizer name with a path on every write of upstream's finalizer;
/// anything else (an unknown field, a policy) would be a warning podid caused.
fn assert_only_finalizer_advice(written: &Written) {
    let others: Vec<&String> = written
        .warnings
        .iter()
        .filter(|w| {
            !w.starts_with(&format!(
                "metadata.finalizers: \"{ASSIGNED_IDENTITY_FINALIZER}\": "
            ))
        })
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

/// `value` with every stray `metadata: {}` replaced by `replacement`.
fn with_stray_metadata(value: &Value, replacement: &Value) -> Value {
    rewrite_stray_metadata(value, Some(replacement))
}

/// `value` with every `metadata: {}` of a spec or status (also of the embedded identity and
/// binding) replaced by `replacement`, or removed when it is `None`.
fn rewrite_stray_metadata(value: &Value, replacement: Option<&Value>) -> Value {
    let mut value = value.clone();
    rewrite(&mut value, true, replacement);
    value
}

fn rewrite(value: &mut Value, is_spec_or_status: bool, replacement: Option<&Value>) {
    if let Value::Object(map) = value {
        if is_spec_or_status && map.get("metadata") == Some(&json!({})) {
            match replacement {
                Some(replacement) => map.insert("metadata".to_owned(), replacement.clone()),
                None => map.remove("metadata"),
            };
        }
        for (key, child) in map.iter_mut() {
            let child_is_spec_or_status = key == "spec" || key == "status";
            if child_is_spec_or_status || key == "azureIdentityRef" || key == "azureBindingRef" {
                rewrite(child, child_is_spec_or_status, replacement);
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
    let written = create_aai(&client, ns.name(), &original).await;
    assert_only_finalizer_advice(&written);

    // What the server stores: exactly what was sent.
    let stored = serde_json::to_value(raw.get(&name).await.unwrap()).unwrap();
    for part in ["spec", "status"] {
        assert_eq!(
            original[part], stored[part],
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

async fn create_aai(client: &kube::Client, namespace: &str, body: &Value) -> Written {
    create_strict(
        client,
        &ApiResource::erase::<AzureAssignedIdentity>(&()),
        namespace,
        &PostParams::default(),
        &serde_json::from_value(body.clone()).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("the AzureAssignedIdentity is refused: {e}"))
}

/// MIC serializes the empty ObjectMeta of its Go types as `{creationTimestamp: null}`; the API
/// server stores `{}`, which is what an export from an upstream cluster then carries.
#[tokio::test]
async fn mic_request_body_applies_strictly_and_is_stored_as_upstream_stored_it() {
    let env = TestEnv::get().await;
    let ns = env.namespace("aai-go").await;
    let client = env.admin();
    let stored_by_upstream: Value = serde_json::from_str(UPSTREAM_AAI).unwrap();
    let sent_by_mic = with_stray_metadata(&stored_by_upstream, &json!({"creationTimestamp": null}));
    assert_ne!(sent_by_mic, stored_by_upstream);

    let written = create_aai(&client, ns.name(), &sent_by_mic).await;
    assert_only_finalizer_advice(&written);
    for part in ["spec", "status"] {
        assert_eq!(
            written.object.data[part], stored_by_upstream[part],
            "{part} as stored by the API server"
        );
    }
}

#[test]
fn stray_metadata_is_replaced_in_spec_status_and_embedded_objects_only() {
    let spec = json!({
        "metadata": {},
        "azureIdentityRef": {
            "metadata": {},
            "spec": {"metadata": {}},
            "status": {"metadata": {}},
        },
    });
    assert_eq!(
        with_stray_metadata(&spec, &json!(1)),
        json!({
            "metadata": 1,
            "azureIdentityRef": {"metadata": {}, "spec": {"metadata": 1}, "status": {"metadata": 1}},
        })
    );
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
