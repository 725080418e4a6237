//! The test kit against the real control plane: what later tests build on.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use podid_testkit::{
    TestEnv, apply_yaml, create_node, create_pod, delete_pod_now, node_with_provider_id,
    pod_on_node, set_pod_running, unique_name, wait_for,
};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn namespaces_are_fresh_and_usable() {
    let env = TestEnv::get().await;
    let first = env.namespace("testkit").await;
    let second = env.namespace("testkit").await;
    assert_ne!(first.name(), second.name());
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  k: v\n";
    let applied = apply_yaml(&env.admin(), first.name(), yaml).await.unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].namespace().as_deref(), Some(first.name()));
    let stored = Api::<ConfigMap>::namespaced(env.admin(), first.name())
        .get("settings")
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap()["k"], "v");
}

#[tokio::test]
async fn apply_yaml_is_idempotent_and_all_or_nothing() {
    let env = TestEnv::get().await;
    let ns = env.namespace("testkit-apply").await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: once\n";
    apply_yaml(&env.admin(), ns.name(), yaml).await.unwrap();
    apply_yaml(&env.admin(), ns.name(), yaml).await.unwrap();

    // The second document's kind does not exist, so the first is not applied either.
    let mixed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never\n---\n\
                 apiVersion: example.invalid/v1\nkind: Nothing\nmetadata:\n  name: x\n";
    let err = apply_yaml(&env.admin(), ns.name(), mixed)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Nothing"), "{err}");
    let names: Vec<_> = Api::<ConfigMap>::namespaced(env.admin(), ns.name())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(!names.contains(&"never".to_owned()), "{names:?}");
}

#[tokio::test]
async fn pods_get_bound_running_and_findable_by_ip() {
    let env = TestEnv::get().await;
    let ns = env.namespace("testkit-pods").await;
    let client = env.admin();
    let node_name = unique_name("node");
    let provider_id = "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines/0";
    let node = create_node(&client, &node_with_provider_id(&node_name, provider_id))
        .await
        .unwrap();
    assert_eq!(node.spec.unwrap().provider_id.as_deref(), Some(provider_id));

    let pod = pod_on_node("demo", &[("aadpodidbinding", "DEMO")], &node_name);
    create_pod(&client, ns.name(), &pod).await.unwrap();
    let running = set_pod_running(&client, ns.name(), "demo", "10.244.0.5", "10.0.0.1")
        .await
        .unwrap();
    let status = running.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));

    let pods: Api<Pod> = Api::all(client.clone());
    let by_ip = ListParams::default().fields(&format!(
        "status.podIP=10.244.0.5,spec.nodeName={node_name}"
    ));
    let found = pods.list(&by_ip).await.unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].namespace().as_deref(), Some(ns.name()));

    delete_pod_now(&client, ns.name(), "demo").await.unwrap();
    let pods_in_ns: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    wait_for("the bound pod to be gone", PATIENCE, || async {
        pods_in_ns
            .get_opt("demo")
            .await
            .ok()
            .filter(Option::is_none)
    })
    .await;
    Api::<Node>::all(client).get(&node_name).await.unwrap();
}

#[tokio::test]
async fn impersonated_clients_are_denied_without_rbac() {
    let env = TestEnv::get().await;
    let ns = env.namespace("testkit-rbac").await;
    let as_sa =
        Api::<ConfigMap>::namespaced(env.as_service_account(ns.name(), "nobody"), ns.name());
    let as_user = Api::<ConfigMap>::namespaced(env.as_user("alice", &["team"]), ns.name());
    for api in [as_sa, as_user] {
        match api.list(&ListParams::default()).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
            other => panic!("expected 403, got {other:?}"),
        }
    }
}
