//! From API objects to what NMI keeps of them: only what a decision reads, so memory follows
//! the number of this node's pods, not the size of their specs.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use podid_api::AzureAssignedIdentity;

use crate::pods::{PodFacts, PodPhase};

/// What a pod decision reads: name, labels, IPs, phase, owning ReplicaSet, host networking.
/// IPs that do not parse are dropped (they cannot match a socket address).
pub fn pod_facts(pod: &Pod) -> PodFacts {
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if let Some(ip) = status
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    let replica_set = pod
        .owner_references()
        .iter()
        .find(|owner| owner.kind.eq_ignore_ascii_case("ReplicaSet"))
        .map(|owner| owner.name.clone());
    PodFacts {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        ips,
        phase: PodPhase::parse(status.and_then(|s| s.phase.as_deref())),
        labels: pod.labels().clone(),
        replica_set,
        host_network: pod
            .spec
            .as_ref()
            .and_then(|spec| spec.host_network)
            .unwrap_or(false),
    }
}

/// Drops what no decision reads and can be large: managed fields and annotations other than
/// the namespaced-behaviour one, here and in the embedded identity; of the embedded binding
/// only its namespace and name are kept (whether it still selects the pod is checked against
/// the binding watch).
pub fn strip_assigned(mut aai: AzureAssignedIdentity) -> AzureAssignedIdentity {
    aai.metadata.managed_fields = None;
    aai.metadata.annotations = None;
    if let Some(identity) = aai.spec.azure_identity_ref.as_mut() {
        identity.metadata.managed_fields = None;
        if let Some(annotations) = identity.metadata.annotations.as_mut() {
            annotations.retain(|key, _| key == podid_api::names::BEHAVIOR_ANNOTATION);
        }
    }
    if let Some(binding) = aai.spec.azure_binding_ref.as_mut() {
        binding.metadata = kube::api::ObjectMeta {
            namespace: binding.metadata.namespace.take(),
            name: binding.metadata.name.take(),
            ..Default::default()
        };
        binding.spec = Default::default();
        binding.status = None;
    }
    aai
}

/// Drops managed fields, the one part of any object NMI never reads.
pub fn strip_managed_fields<K: kube::Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodIP, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    #[test]
    fn a_pod_keeps_its_ips_phase_owner_and_host_networking() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("team".into()),
                labels: Some([("aadpodidbinding".to_owned(), "web".to_owned())].into()),
                owner_references: Some(vec![OwnerReference {
                    kind: "replicaset".into(),
                    name: "web-5d4".into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                host_network: Some(true),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                pod_ip: Some("10.0.0.5".into()),
                pod_ips: Some(vec![
                    PodIP {
                        ip: "10.0.0.5".into(),
                    },
                    PodIP {
                        ip: "fd00::5".into(),
                    },
                    PodIP {
                        ip: "not an ip".into(),
                    },
                ]),
                ..PodStatus::default()
            }),
        };
        let facts = pod_facts(&pod);
        assert_eq!(facts.key(), "team/web-1");
        assert_eq!(
            facts.ips,
            [
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert_eq!(facts.phase, PodPhase::Pending);
        assert_eq!(facts.replica_set.as_deref(), Some("web-5d4"));
        assert!(facts.host_network);
        assert_eq!(facts.labels["aadpodidbinding"], "web");
    }

    #[test]
    fn a_pod_without_status_has_no_ip() {
        let facts = pod_facts(&Pod::default());
        assert!(facts.ips.is_empty());
        assert_eq!(facts.phase, PodPhase::Other);
        assert!(!facts.host_network);
    }
}
