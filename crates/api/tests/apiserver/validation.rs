//! Apply-time validation: invalid objects are refused with a message naming the fix, legacy
//! (pre-1.6) keys are refused instead of silently dropped, and every upstream form is accepted.

use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use podid_api::{AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};
use podid_testkit::TestEnv;
use serde_json::{Value, json};

const RESOURCE_ID: &str = "/subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourcegroups/Study4Dev-JE-AKS-Study4Dev-JE-AKSResource/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO";
const CLIENT_ID: &str = "cb5569f2-8d09-4de1-a007-e02058e11d15";
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Identity,
    Binding,
    Exception,
}

impl Kind {
    fn resource(self) -> ApiResource {
        match self {
            Kind::Identity => ApiResource::erase::<AzureIdentity>(&()),
            Kind::Binding => ApiResource::erase::<AzureIdentityBinding>(&()),
            Kind::Exception => ApiResource::erase::<AzurePodIdentityException>(&()),
        }
    }
}

fn object(kind: Kind, name: &str, annotations: Value, spec: Value) -> DynamicObject {
    let resource = kind.resource();
    serde_json::from_value(json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

/// Creates the object and returns the API server's refusal, or panics if it was accepted.
async fn refusal(api: &Api<DynamicObject>, object: &DynamicObject) -> kube::core::Status {
    match api.create(&PostParams::default(), object).await {
        Err(kube::Error::Api(status)) => *status,
        Ok(created) => panic!("accepted, expected a refusal: {:?}", created.data),
        Err(other) => panic!("expected a refusal from the API server, got {other}"),
    }
}

fn api(client: &kube::Client, namespace: &str, kind: Kind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.resource())
}

#[tokio::test]
async fn invalid_objects_are_refused_with_the_fix() {
    let env = TestEnv::get().await;
    let ns = env.namespace("invalid").await;
    let client = env.admin();
    let cases: Vec<(&str, Kind, Value, &str)> = vec![
        (
            "type-3",
            Kind::Identity,
            json!({"type": 3, "clientID": CLIENT_ID, "resourceID": RESOURCE_ID}),
            "spec.type must be 0",
        ),
        (
            "type-string",
            Kind::Identity,
            json!({"type": "0", "clientID": CLIENT_ID, "resourceID": RESOURCE_ID}),
            "spec.type",
        ),
        (
            "no-client-id",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID}),
            "spec.clientID is required",
        ),
        (
            "empty-client-id",
            Kind::Identity,
            json!({"type": 0, "clientID": "", "resourceID": RESOURCE_ID}),
            "spec.clientID is required",
        ),
        (
            "type-0-no-resource-id",
            Kind::Identity,
            json!({"type": 0, "clientID": CLIENT_ID}),
            "spec.resourceID is required",
        ),
        (
            "no-type-no-resource-id",
            Kind::Identity,
            json!({"clientID": CLIENT_ID}),
            "spec.resourceID is required",
        ),
        (
            "bad-resource-id",
            Kind::Identity,
            json!({"type": 0, "clientID": CLIENT_ID, "resourceID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"}),
            "spec.resourceID must be the ARM ID",
        ),
        (
            "sp-no-tenant",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "clientPassword": {"name": "s", "namespace": "default"}}),
            "spec.tenantID is required",
        ),
        (
            "sp-no-secret",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID}),
            "spec.clientPassword.name is required",
        ),
        (
            "cert-no-secret-ns",
            Kind::Identity,
            json!({"type": 2, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "s"}}),
            "spec.clientPassword.namespace is required",
        ),
        (
            "binding-no-selector",
            Kind::Binding,
            json!({"azureIdentity": "demo"}),
            "spec.selector is required",
        ),
        (
            "binding-empty-identity",
            Kind::Binding,
            json!({"azureIdentity": "", "selector": "DEMO"}),
            "spec.azureIdentity is required",
        ),
        (
            "exception-no-labels",
            Kind::Exception,
            json!({"podLabels": {}}),
            "spec.podLabels needs at least one label",
        ),
        (
            "exception-no-spec-fields",
            Kind::Exception,
            json!({}),
            "spec.podLabels needs at least one label",
        ),
    ];
    let mut failures = Vec::new();
    for (name, kind, spec, expected) in &cases {
        let status = refusal(
            &api(&client, ns.name(), *kind),
            &object(*kind, name, json!({}), spec.clone()),
        )
        .await;
        if status.code != 422 || !status.message.contains(expected) {
            failures.push(format!(
                "{name}: expected 422 with {expected:?}, got {} {:?}",
                status.code, status.message
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn legacy_keys_are_refused_naming_the_right_key() {
    let env = TestEnv::get().await;
    let ns = env.namespace("legacy").await;
    let client = env.admin();
    let cases: Vec<(&str, Kind, Value, &[&str])> = vec![
        (
            "capitalized",
            Kind::Identity,
            json!({"type": 0, "ResourceID": RESOURCE_ID, "ClientID": CLIENT_ID}),
            &["spelling of spec.resourceID", "spelling of spec.clientID"],
        ),
        (
            "lowercase",
            Kind::Identity,
            json!({"type": 0, "resourceid": RESOURCE_ID, "clientid": CLIENT_ID}),
            &["spelling of spec.resourceID", "spelling of spec.clientID"],
        ),
        (
            "mixed",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID, "ClientID": CLIENT_ID}),
            &["spelling of spec.clientID"],
        ),
        (
            "sp-capitalized",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "TenantID": TENANT_ID, "ClientPassword": {"name": "s", "namespace": "default"}}),
            &[
                "spelling of spec.tenantID",
                "spelling of spec.clientPassword",
            ],
        ),
        (
            "sp-secret-keys",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"Name": "s", "Namespace": "default"}}),
            &[
                "spelling of spec.clientPassword.name",
                "spelling of spec.clientPassword.namespace",
            ],
        ),
        (
            "binding",
            Kind::Binding,
            json!({"AzureIdentity": "demo", "Selector": "DEMO"}),
            &[
                "spelling of spec.azureIdentity",
                "spelling of spec.selector",
            ],
        ),
        (
            "binding-lowercase",
            Kind::Binding,
            json!({"azureidentity": "demo", "selector": "DEMO"}),
            &["spelling of spec.azureIdentity"],
        ),
        (
            "exception",
            Kind::Exception,
            json!({"PodLabels": {"app": "mic"}}),
            &["spelling of spec.podLabels"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, kind, spec, expected) in &cases {
        let status = refusal(
            &api(&client, ns.name(), *kind),
            &object(*kind, name, json!({}), spec.clone()),
        )
        .await;
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !status.message.contains(**e))
            .collect();
        if status.code != 422 || !missing.is_empty() {
            failures.push(format!(
                "{name}: expected 422 naming {missing:?}, got {} {:?}",
                status.code, status.message
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn every_upstream_form_is_accepted_and_kept() {
    let env = TestEnv::get().await;
    let ns = env.namespace("valid").await;
    let client = env.admin();
    let resource_groups_camel = RESOURCE_ID.replace("/resourcegroups/", "/resourceGroups/");
    let namespaced = json!({"aadpodidentity.k8s.io/Behavior": "namespaced"});
    let cases: Vec<(&str, Kind, Value, Value)> = vec![
        (
            "type-0-resourcegroups",
            Kind::Identity,
            json!({}),
            json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        ),
        (
            "type-0-resourcegroups-camel",
            Kind::Identity,
            json!({}),
            json!({"type": 0, "resourceID": resource_groups_camel, "clientID": CLIENT_ID}),
        ),
        (
            "type-omitted",
            Kind::Identity,
            json!({}),
            json!({"resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        ),
        (
            "type-1",
            Kind::Identity,
            json!({}),
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "auxiliaryTenantIDs": ["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"], "clientPassword": {"name": "sp-secret", "namespace": "default"}, "adEndpoint": "https://login.microsoftonline.com/"}),
        ),
        (
            "type-2",
            Kind::Identity,
            json!({}),
            json!({"type": 2, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "sp-cert", "namespace": "default"}}),
        ),
        (
            "namespaced",
            Kind::Identity,
            namespaced.clone(),
            json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        ),
        (
            "binding",
            Kind::Binding,
            json!({}),
            json!({"azureIdentity": "demo", "selector": "DEMO"}),
        ),
        (
            "binding-weight",
            Kind::Binding,
            json!({}),
            json!({"azureIdentity": "demo", "selector": "demo", "weight": 5}),
        ),
        (
            "exception",
            Kind::Exception,
            json!({}),
            json!({"podLabels": {"app": "mic", "component": "mic"}}),
        ),
    ];
    let mut failures = Vec::new();
    for (name, kind, annotations, spec) in cases {
        let sent = object(kind, name, annotations.clone(), spec.clone());
        match api(&client, ns.name(), kind)
            .create(&PostParams::default(), &sent)
            .await
        {
            Ok(stored) => {
                if stored.data["spec"] != spec {
                    failures.push(format!(
                        "{name}: sent {spec}, stored {}",
                        stored.data["spec"]
                    ));
                }
                let stored_annotations =
                    serde_json::to_value(stored.meta().annotations.clone().unwrap_or_default())
                        .unwrap();
                if annotations != json!({}) && stored_annotations != annotations {
                    failures.push(format!("{name}: annotations {stored_annotations}"));
                }
            }
            Err(e) => failures.push(format!("{name}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    let identities: Api<AzureIdentity> = Api::namespaced(client, ns.name());
    let namespaced_identity = identities.get("namespaced").await.unwrap();
    assert!(podid_api::is_namespaced(&namespaced_identity));
    assert!(!podid_api::is_namespaced(
        &identities.get("type-1").await.unwrap()
    ));
}
