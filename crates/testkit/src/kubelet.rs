//! The control plane has no scheduler and no kubelet, so tests write what those would: a Pod
//! bound to a node and its running status, and Nodes with a cloud `providerID`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, NodeSpec, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Error;

/// Never pulled: nothing runs containers here.
const PLACEHOLDER_IMAGE: &str = "registry.invalid/podid/placeholder:1";

/// A one-container Pod already bound to `node_name` (as the scheduler would leave it).
pub fn pod_on_node(name: &str, labels: &[(&str, &str)], node_name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(to_map(labels)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node_name.to_owned()),
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some(PLACEHOLDER_IMAGE.to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// A Node with `spec.providerID`, e.g. an Azure VMSS instance ID.
pub fn node_with_provider_id(name: &str, provider_id: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(provider_id.to_owned()),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// The status a kubelet reports for a running, ready pod, as a real kubelet writes it: `podIPs[0]` equals
/// `podIP`, likewise for the host IP.
pub fn running_status(pod_ip: &str, host_ip: &str) -> serde_json::Value {
    json!({
        "status": {
            "phase": "Running",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    })
}

/// Creates `pod` in `namespace`.
pub async fn create_pod(client: &Client, namespace: &str, pod: &Pod) -> Result<Pod, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api.create(&PostParams::default(), pod).await?)
}

/// Marks a pod Running and Ready with the given IPs through the status subresource.
pub async fn set_pod_running(
    client: &Client,
    namespace: &str,
    name: &str,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Pod, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let status = running_status(pod_ip, host_ip);
    Ok(api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?)
}

/// Deletes a pod at once. A pod bound to a node would otherwise wait forever for a kubelet.
pub async fn delete_pod_now(client: &Client, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.delete(name, &DeleteParams::default().grace_period(0))
        .await?;
    Ok(())
}

/// Creates `node` (cluster-scoped).
pub async fn create_node(client: &Client, node: &Node) -> Result<Node, Error> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api.create(&PostParams::default(), node).await?)
}

fn to_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_is_bound_and_labelled() {
        let pod = pod_on_node("demo", &[("aadpodidbinding", "DEMO")], "node-1");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            pod.metadata
                .labels
                .unwrap()
                .get("aadpodidbinding")
                .map(String::as_str),
            Some("DEMO")
        );
    }

    #[test]
    fn running_status_keeps_ip_lists_consistent() {
        let status = running_status("10.244.0.5", "10.0.0.1");
        assert_eq!(
            status["status"]["podIPs"][0]["ip"],
            status["status"]["podIP"]
        );
        assert_eq!(
            status["status"]["hostIPs"][0]["ip"],
            status["status"]["hostIP"]
        );
        assert_eq!(status["status"]["phase"], "Running");
    }
}
