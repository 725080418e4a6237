//! Who is calling: the pod holding the connection's source IP on this node, and whether it is
//! excepted from identity checks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use podid_api::{AzurePodIdentityException, is_pod_excepted};

use crate::reply::{ErrorCode, ErrorReply};

/// Upstream looks for the caller's pod this many times before giving up (a pod that just
/// started may not be in the cache yet).
pub const POD_LOOKUP_ATTEMPTS: u32 = 5;
/// The pause between two looks.
pub const POD_LOOKUP_INTERVAL: Duration = Duration::from_millis(300);

/// What NMI reads from a pod on its node. The server fills this from its pod cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    /// `status.podIPs` (or `status.podIP`), those that parse.
    pub ips: Vec<IpAddr>,
    pub phase: PodPhase,
    pub labels: BTreeMap<String, String>,
    /// Name of the first owner of kind `ReplicaSet` (kind compared ignoring case).
    pub replica_set: Option<String>,
    /// `spec.hostNetwork`: the pod shares the node's IP, so its IP names no one pod.
    pub host_network: bool,
}

impl PodFacts {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `status.phase`, as far as NMI cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodPhase {
    /// Includes pods whose init containers run: they may already ask for tokens.
    Pending,
    Running,
    /// Not reported, `Succeeded`, `Failed`, `Unknown` or anything else.
    #[default]
    Other,
}

impl PodPhase {
    pub fn parse(phase: Option<&str>) -> Self {
        match phase {
            Some("Pending") => Self::Pending,
            Some("Running") => Self::Running,
            _ => Self::Other,
        }
    }

    /// Whether a pod in this phase can be the caller (upstream's rule: Pending or Running).
    fn may_call(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// Why the caller could not be told apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodLookupError {
    #[error("no Pending or Running pod on this node has IP {ip}")]
    NoPodWithIp { ip: IpAddr },
    #[error("{} Pending or Running pods on this node have IP {ip}: {}", .pods.len(), .pods.join(", "))]
    SeveralPodsWithIp { ip: IpAddr, pods: Vec<String> },
    #[error(
        "IP {ip} is the node's own (host-network pod {pod}): the calling pod cannot be told apart"
    )]
    HostNetwork { ip: IpAddr, pod: String },
    #[error("pod {namespace}/{name} is not on this node")]
    NoPodNamed { namespace: String, name: String },
}

impl PodLookupError {
    /// Whether looking again after [`POD_LOOKUP_INTERVAL`] may help (the cache may lag).
    pub fn is_worth_retrying(&self) -> bool {
        matches!(self, Self::NoPodWithIp { .. })
    }

    /// The answer once retrying is over: 500, as upstream (clients retry it, which suits a
    /// cache that lags behind a pod just started).
    pub fn reply(&self) -> ErrorReply {
        ErrorReply::new(500, ErrorCode::ServerError, self.to_string())
    }
}

/// The one Pending or Running pod holding `source`. An IPv4 address seen as IPv4-mapped IPv6
/// (a dual-stack listener) is compared as IPv4.
///
/// An IP held by a host-network pod is the node's own: any host process, and every other
/// host-network pod, calls from it, so it is refused rather than served as that pod.
pub fn pod_by_ip(source: IpAddr, pods: &[PodFacts]) -> Result<&PodFacts, PodLookupError> {
    let source = source.to_canonical();
    let mut holders: Vec<&PodFacts> = pods
        .iter()
        .filter(|pod| pod.phase.may_call())
        .filter(|pod| pod.ips.iter().any(|ip| ip.to_canonical() == source))
        .collect();
    if let Some(host) = holders
        .iter()
        .filter(|pod| pod.host_network)
        .map(|pod| pod.key())
        .min()
    {
        return Err(PodLookupError::HostNetwork {
            ip: source,
            pod: host,
        });
    }
    match holders.len() {
        0 => Err(PodLookupError::NoPodWithIp { ip: source }),
        1 => Ok(holders.remove(0)),
        _ => {
            let mut keys: Vec<String> = holders.iter().map(|pod| pod.key()).collect();
            keys.sort();
            Err(PodLookupError::SeveralPodsWithIp {
                ip: source,
                pods: keys,
            })
        }
    }
}

/// The pod named by a host-token request, whatever its phase; it must be on this node.
pub fn pod_by_name<'a>(
    namespace: &str,
    name: &str,
    pods: &'a [PodFacts],
) -> Result<&'a PodFacts, PodLookupError> {
    pods.iter()
        .find(|pod| pod.namespace == namespace && pod.name == name)
        .ok_or_else(|| PodLookupError::NoPodNamed {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}

/// Why a pod is served the node's own identity without any identity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassThrough {
    /// An AzurePodIdentityException in its namespace matches one of its labels.
    Exception,
    /// It is the controller (MIC), which authenticates to ARM with the node's identity.
    Controller,
}

/// Whether `pod` is excepted: by an AzurePodIdentityException of its namespace (any one label
/// equal, values ignoring case), or as the controller: in `mic_namespace` (`--MICNamespace`,
/// ignoring case) and owned by a ReplicaSet named `mic-…`.
///
/// Deviation: upstream's pattern `^mic-*` also matched any ReplicaSet starting with `mic`
/// (`microservice-…` in `default`); a Deployment called `mic` always has ReplicaSets `mic-<hash>`.
pub fn exception_for(
    pod: &PodFacts,
    exceptions: &[AzurePodIdentityException],
    mic_namespace: &str,
) -> Option<PassThrough> {
    if is_pod_excepted(&pod.namespace, &pod.labels, exceptions) {
        return Some(PassThrough::Exception);
    }
    let is_controller = pod.namespace.eq_ignore_ascii_case(mic_namespace)
        && pod
            .replica_set
            .as_deref()
            .is_some_and(|owner| owner.starts_with("mic-"));
    is_controller.then_some(PassThrough::Controller)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use podid_api::AzurePodIdentityExceptionSpec;
    use proptest::prelude::*;

    use super::*;

    fn pod(namespace: &str, name: &str, ip: &str, phase: PodPhase) -> PodFacts {
        PodFacts {
            namespace: namespace.into(),
            name: name.into(),
            ips: vec![ip.parse().unwrap()],
            phase,
            ..PodFacts::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn phases_parse_and_only_pending_and_running_may_call() {
        assert_eq!(PodPhase::parse(Some("Pending")), PodPhase::Pending);
        assert_eq!(PodPhase::parse(Some("Running")), PodPhase::Running);
        for other in [
            None,
            Some(""),
            Some("Succeeded"),
            Some("Failed"),
            Some("Unknown"),
            Some("running"),
        ] {
            assert_eq!(PodPhase::parse(other), PodPhase::Other, "{other:?}");
        }
    }

    #[test]
    fn the_one_pending_or_running_holder_is_the_caller() {
        let pods = [
            pod("a", "old", "10.0.0.5", PodPhase::Other),
            pod("a", "init", "10.0.0.5", PodPhase::Pending),
            pod("b", "web", "10.0.0.6", PodPhase::Running),
        ];
        assert_eq!(pod_by_ip(ip("10.0.0.5"), &pods).unwrap().name, "init");
        assert_eq!(pod_by_ip(ip("10.0.0.6"), &pods).unwrap().name, "web");
        // Through a dual-stack socket.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 6).to_ipv6_mapped());
        assert_eq!(pod_by_ip(mapped, &pods).unwrap().name, "web");
    }

    #[test]
    fn every_ip_of_a_dual_stack_pod_counts() {
        let mut web = pod("b", "web", "10.0.0.6", PodPhase::Running);
        web.ips.push(ip("fd00::6"));
        assert_eq!(pod_by_ip(ip("fd00::6"), &[web]).unwrap().name, "web");
    }

    #[test]
    fn no_holder_is_worth_retrying_several_are_not() {
        let pods = [
            pod("z", "b", "10.0.0.7", PodPhase::Running),
            pod("a", "c", "10.0.0.7", PodPhase::Pending),
        ];
        let none = pod_by_ip(ip("10.0.0.8"), &pods).unwrap_err();
        assert_eq!(none, PodLookupError::NoPodWithIp { ip: ip("10.0.0.8") });
        assert!(none.is_worth_retrying());
        let several = pod_by_ip(ip("10.0.0.7"), &pods).unwrap_err();
        assert_eq!(
            several.to_string(),
            "2 Pending or Running pods on this node have IP 10.0.0.7: a/c, z/b"
        );
        assert!(!several.is_worth_retrying());
        let reply = several.reply();
        assert_eq!((reply.status, reply.code), (500, ErrorCode::ServerError));
        assert_eq!(reply.description, several.to_string());
        assert!(pod_by_ip(IpAddr::V6(Ipv6Addr::LOCALHOST), &[]).is_err());
    }

    #[test]
    fn an_ip_held_by_a_host_network_pod_is_refused() {
        let mut host = pod("kube-system", "agent", "10.0.0.9", PodPhase::Running);
        host.host_network = true;
        let pods = [host, pod("a", "web", "10.0.0.9", PodPhase::Running)];
        let refused = pod_by_ip(ip("10.0.0.9"), &pods).unwrap_err();
        assert_eq!(
            refused,
            PodLookupError::HostNetwork {
                ip: ip("10.0.0.9"),
                pod: "kube-system/agent".into()
            }
        );
        assert!(!refused.is_worth_retrying());
        assert_eq!(pod_by_ip(ip("10.0.0.9"), &pods[..1]).unwrap_err(), refused);
    }

    #[test]
    fn host_requests_name_the_pod() {
        let pods = [pod("a", "p", "10.0.0.5", PodPhase::Other)];
        assert_eq!(pod_by_name("a", "p", &pods).unwrap().name, "p");
        assert_eq!(
            pod_by_name("b", "p", &pods),
            Err(PodLookupError::NoPodNamed {
                namespace: "b".into(),
                name: "p".into()
            })
        );
    }

    fn exception(namespace: &str, key: &str, value: &str) -> AzurePodIdentityException {
        let mut exception = AzurePodIdentityException::new(
            "exception",
            AzurePodIdentityExceptionSpec {
                pod_labels: Some([(key.to_owned(), value.to_owned())].into()),
            },
        );
        exception.metadata.namespace = Some(namespace.to_owned());
        exception
    }

    #[test]
    fn exceptions_apply_in_the_pods_namespace_only() {
        let mut excepted = pod("team", "p", "10.0.0.5", PodPhase::Running);
        excepted.labels = [("thispod".to_owned(), "ShouldExcept".to_owned())].into();
        let exceptions = [exception("team", "thispod", "shouldexcept")];
        assert_eq!(
            exception_for(&excepted, &exceptions, "default"),
            Some(PassThrough::Exception)
        );
        let elsewhere = [exception("other", "thispod", "shouldexcept")];
        assert_eq!(exception_for(&excepted, &elsewhere, "default"), None);
    }

    #[test]
    fn the_controller_is_excepted_by_namespace_and_replica_set() {
        let mut mic = pod("Default", "mic-7d9f-x", "10.0.0.5", PodPhase::Running);
        mic.replica_set = Some("mic-7d9f".into());
        assert_eq!(
            exception_for(&mic, &[], "default"),
            Some(PassThrough::Controller)
        );
        assert_eq!(exception_for(&mic, &[], "kube-system"), None);
        for owner in [
            None,
            Some("microservice-5c4b"),
            Some("aad-pod-identity-mic-1"),
            Some("mic"),
        ] {
            mic.replica_set = owner.map(Into::into);
            assert_eq!(exception_for(&mic, &[], "default"), None, "{owner:?}");
        }
    }

    proptest! {
        #[test]
        fn the_caller_holds_the_ip_and_the_answer_ignores_pod_order(
            owners in proptest::collection::vec((0u8..4, 0u8..3), 0..8),
            probe in 0u8..4,
        ) {
            let pods: Vec<PodFacts> = owners
                .iter()
                .enumerate()
                .map(|(i, (last, phase))| {
                    let phase = [PodPhase::Pending, PodPhase::Running, PodPhase::Other][usize::from(*phase)];
                    pod("ns", &format!("p{i}"), &format!("10.0.0.{last}"), phase)
                })
                .collect();
            let source = IpAddr::V4(Ipv4Addr::new(10, 0, 0, probe));
            let forward = pod_by_ip(source, &pods).map(|p| p.key());
            let mut reversed = pods.clone();
            reversed.reverse();
            prop_assert_eq!(&forward, &pod_by_ip(source, &reversed).map(|p| p.key()));
            if let Ok(key) = forward {
                let caller = pods.iter().find(|p| p.key() == key).unwrap();
                prop_assert!(caller.ips.contains(&source));
                prop_assert!(caller.phase != PodPhase::Other);
            }
        }
    }
}
