//! Who gets which identity: MIC's `desired` (pod ↔ binding ↔ identity), `reconcile` and
//! `plan_machines`, and NMI's `select_managed` and `select_standard`, on worlds built by
//! `arbitrary` from small pools of names (so that things match) and arbitrary text.
//!
//! Invariants ([`check_world`], shared with `api_decode`): every desired assignment's binding
//! selector equals its pod's label, binding and identity share a namespace, the pod is on a
//! known node, names and namespaces follow upstream's rules; NMI serves only an identity bound
//! to (managed) or recorded for (standard) the calling pod; and what MIC would record as
//! `Assigned` is what NMI serves.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use arbitrary::Arbitrary;
use k8s_openapi::api::core::v1::SecretReference;
use kube::ResourceExt;
use podid_api::names::{BEHAVIOR_ANNOTATION, POD_LABEL_KEY, assigned_identity_name};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, AzurePodIdentityException, IdentityType, is_namespaced,
};
use podid_mic::{AssignedRecord, AssignedView};
use podid_mic::{
    MachinePolicy, MatchOptions, NodeIndex, NodeInfo, PodInfo, desired, plan_machines, reconcile,
};
use podid_nmi::{
    Decision, PodFacts, PodPhase, RequestedIdentity, RetryPolicy, SelectionError, StandardInputs,
    exception_for, select_managed, select_standard,
};

const NAMESPACES: &[&str] = &["default", "team", "kube-system", "Team", "team-a"];
const NAMES: &[&str] = &["demo", "a", "a-b", "b", "b-c", "c", "mic-7d9f"];
const LABELS: &[&str] = &["demo", "Demo", "", "x", "demo "];
const CLIENT_IDS: &[&str] = &[
    "00000000-0000-0000-0000-00000000000a",
    "00000000-0000-0000-0000-00000000000A",
    "00000000-0000-0000-0000-00000000000b",
    "",
];
const RESOURCE_IDS: &[&str] = &[
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo",
    "/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.MANAGEDIDENTITY/USERASSIGNEDIDENTITIES/DEMO",
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other",
    "/subscriptions/s/resourceGroups/g",
    "",
];
const NODES: &[&str] = &["node-0", "node-1", ""];
const PROVIDER_IDS: &[&str] = &[
    "azure:///subscriptions/s/resourceGroups/mc_g/providers/Microsoft.Compute/virtualMachineScaleSets/pool0/virtualMachines/0",
    "azure:///subscriptions/s/resourceGroups/mc_g/providers/Microsoft.Compute/virtualMachines/vm1",
    "aws:///us-east-1a/i-0",
    "",
];
const PHASES: &[&str] = &["Running", "Pending", "Succeeded", "Failed", "Unknown", ""];
const STATES: &[&str] = &["Assigned", "Created", "Unassigned", "", "assigned"];

/// A string from a pool (so that things match), or any string.
#[derive(Debug, Arbitrary)]
pub enum Text {
    Pool(u8),
    Raw(String),
}

impl Text {
    fn pick(&self, pool: &[&str]) -> String {
        match self {
            Text::Pool(i) => pool[usize::from(*i) % pool.len()].to_owned(),
            Text::Raw(text) => text.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct Pod {
    namespace: Text,
    name: Text,
    label: Option<Text>,
    node: Option<Text>,
    phase: Option<Text>,
    ip: u8,
    replica_set: Option<Text>,
}

#[derive(Debug, Arbitrary)]
pub struct Binding {
    namespace: Text,
    name: Text,
    identity: Option<Text>,
    selector: Option<Text>,
}

#[derive(Debug, Arbitrary)]
pub struct Identity {
    namespace: Text,
    name: Text,
    kind: Option<i8>,
    client_id: Option<Text>,
    resource_id: Option<Text>,
    tenant_id: Option<Text>,
    secret: bool,
    auxiliary: Option<Vec<Text>>,
    namespaced: bool,
}

#[derive(Debug, Arbitrary)]
pub struct Assigned {
    namespace: Text,
    name: Text,
    /// Index of the identity embedded, if any.
    identity: Option<u8>,
    pod: Option<Text>,
    pod_namespace: Option<Text>,
    node: Option<Text>,
    state: Option<Text>,
}

#[derive(Debug, Arbitrary)]
pub struct Node {
    name: Text,
    provider_id: Option<Text>,
}

#[derive(Debug, Arbitrary)]
pub enum Request {
    Unspecified,
    ClientId(Text),
    ResourceId(Text),
    ObjectId(Text),
}

#[derive(Debug, Arbitrary)]
pub struct World {
    pods: Vec<Pod>,
    bindings: Vec<Binding>,
    identities: Vec<Identity>,
    assigned: Vec<Assigned>,
    nodes: Vec<Node>,
    requests: Vec<Request>,
    force_namespaced: bool,
    attempt: u8,
}

/// The decoded objects one check runs on.
#[derive(Debug, Default)]
pub struct Objects {
    pub pods: Vec<(PodInfo, PodFacts)>,
    pub bindings: Vec<AzureIdentityBinding>,
    pub identities: Vec<AzureIdentity>,
    pub assigned: Vec<AzureAssignedIdentity>,
    pub exceptions: Vec<AzurePodIdentityException>,
    pub nodes: Vec<NodeInfo>,
    pub requests: Vec<RequestedIdentity>,
}

impl Objects {
    /// Keeps the first object of each kind, namespace and name: the API server holds one.
    pub fn dedup(&mut self) {
        let mut seen = std::collections::BTreeSet::new();
        self.pods
            .retain(|(p, _)| seen.insert(("pod", p.namespace.clone(), p.name.clone())));
        self.bindings
            .retain(|o| seen.insert(("binding", o.namespace().unwrap_or_default(), o.name_any())));
        self.identities
            .retain(|o| seen.insert(("identity", o.namespace().unwrap_or_default(), o.name_any())));
        self.assigned
            .retain(|o| seen.insert(("assigned", o.namespace().unwrap_or_default(), o.name_any())));
        self.exceptions.retain(|o| {
            seen.insert(("exception", o.namespace().unwrap_or_default(), o.name_any()))
        });
        self.nodes
            .retain(|n| seen.insert(("node", String::new(), n.name.clone())));
    }
}

pub fn run(world: &World) {
    let mut objects = Objects::default();
    for (i, pod) in world.pods.iter().take(6).enumerate() {
        let namespace = pod.namespace.pick(NAMESPACES);
        let name = pod.name.pick(NAMES);
        let labels: BTreeMap<String, String> = pod
            .label
            .iter()
            .map(|l| (POD_LABEL_KEY.to_owned(), l.pick(LABELS)))
            .collect();
        let phase = pod.phase.as_ref().map(|p| p.pick(PHASES));
        let info = PodInfo {
            namespace: namespace.clone(),
            name: name.clone(),
            label: labels.get(POD_LABEL_KEY).cloned(),
            node_name: pod.node.as_ref().map(|n| n.pick(NODES)),
            phase: podid_mic::PodPhase::parse(phase.as_deref()),
        };
        let facts = PodFacts {
            namespace,
            name,
            ips: vec![IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                pod.ip,
                u8::try_from(i).unwrap_or(0),
            ))],
            phase: PodPhase::parse(phase.as_deref()),
            labels,
            replica_set: pod.replica_set.as_ref().map(|r| r.pick(NAMES)),
            host_network: pod.ip == 0,
        };
        objects.pods.push((info, facts));
    }
    for binding in world.bindings.iter().take(6) {
        let mut object = AzureIdentityBinding::new(
            &binding.name.pick(NAMES),
            AzureIdentityBindingSpec {
                azure_identity: binding.identity.as_ref().map(|t| t.pick(NAMES)),
                selector: binding.selector.as_ref().map(|t| t.pick(LABELS)),
                weight: None,
            },
        );
        object.metadata.namespace = Some(binding.namespace.pick(NAMESPACES));
        objects.bindings.push(object);
    }
    for identity in world.identities.iter().take(6) {
        let mut object = AzureIdentity::new(
            &identity.name.pick(NAMES),
            AzureIdentitySpec {
                identity_type: identity.kind.map(|k| IdentityType::from(i64::from(k))),
                resource_id: identity.resource_id.as_ref().map(|t| t.pick(RESOURCE_IDS)),
                client_id: identity.client_id.as_ref().map(|t| t.pick(CLIENT_IDS)),
                client_password: identity.secret.then(|| SecretReference {
                    name: Some("sp".into()),
                    namespace: Some("default".into()),
                }),
                tenant_id: identity.tenant_id.as_ref().map(|t| t.pick(CLIENT_IDS)),
                auxiliary_tenant_ids: identity
                    .auxiliary
                    .as_ref()
                    .map(|a| a.iter().take(8).map(|t| t.pick(CLIENT_IDS)).collect()),
                ..AzureIdentitySpec::default()
            },
        );
        object.metadata.namespace = Some(identity.namespace.pick(NAMESPACES));
        if identity.namespaced {
            object.metadata.annotations = Some(BTreeMap::from([(
                BEHAVIOR_ANNOTATION.to_owned(),
                "namespaced".to_owned(),
            )]));
        }
        objects.identities.push(object);
    }
    for assigned in world.assigned.iter().take(6) {
        let identity = assigned
            .identity
            .and_then(|i| {
                objects
                    .identities
                    .get(usize::from(i) % objects.identities.len().max(1))
            })
            .cloned();
        let mut object = AzureAssignedIdentity::new(
            &assigned.name.pick(NAMES),
            AzureAssignedIdentitySpec {
                azure_identity_ref: identity,
                pod: assigned.pod.as_ref().map(|t| t.pick(NAMES)),
                pod_namespace: assigned.pod_namespace.as_ref().map(|t| t.pick(NAMESPACES)),
                node_name: assigned.node.as_ref().map(|t| t.pick(NODES)),
                ..AzureAssignedIdentitySpec::default()
            },
        );
        object.metadata.namespace = Some(assigned.namespace.pick(NAMESPACES));
        object.status = assigned
            .state
            .as_ref()
            .map(|s| AzureAssignedIdentityStatus {
                status: Some(AssignedIdentityState::from(s.pick(STATES))),
                available_replicas: Some(1),
            });
        objects.assigned.push(object);
    }
    for node in world.nodes.iter().take(4) {
        objects.nodes.push(NodeInfo {
            name: node.name.pick(NODES),
            provider_id: node.provider_id.as_ref().map(|p| p.pick(PROVIDER_IDS)),
        });
    }
    objects.requests = world
        .requests
        .iter()
        .take(4)
        .map(|r| match r {
            Request::Unspecified => RequestedIdentity::Unspecified,
            Request::ClientId(t) => RequestedIdentity::ClientId(t.pick(CLIENT_IDS)),
            Request::ResourceId(t) => RequestedIdentity::ResourceId(t.pick(RESOURCE_IDS)),
            Request::ObjectId(t) => RequestedIdentity::ObjectId(t.pick(CLIENT_IDS)),
        })
        .collect();
    objects.dedup();
    check_world(
        &objects,
        world.force_namespaced,
        u32::from(world.attempt % 24),
    );
}

/// Runs MIC's and NMI's matching on `objects` and checks what they decide.
pub fn check_world(objects: &Objects, force_namespaced: bool, attempt: u32) {
    let pods: Vec<PodInfo> = objects.pods.iter().map(|(info, _)| info.clone()).collect();
    let (index, _) = NodeIndex::new(&objects.nodes);
    let options = MatchOptions { force_namespaced };
    let state = desired(
        &pods,
        &objects.bindings,
        &objects.identities,
        &index,
        options,
    );

    for (name, a) in &state.assignments {
        assert_eq!(name, &a.object.name);
        let pod = pods
            .iter()
            .find(|p| p.namespace == a.pod.namespace && p.name == a.pod.name)
            .expect("an assignment's pod exists");
        assert_eq!(
            a.binding.spec.selector.as_deref(),
            pod.selector(),
            "the binding's selector is not the pod's label"
        );
        assert!(pod.selector().is_some_and(|s| !s.is_empty()));
        assert_eq!(
            a.binding.namespace(),
            a.identity.namespace(),
            "binding and identity namespaces differ"
        );
        assert_eq!(
            a.binding.spec.azure_identity.as_deref(),
            Some(a.identity.name_any().as_str())
        );
        assert_eq!(Some(a.node.as_str()), pod.node());
        assert!(index.contains(&a.node), "assigned on an unknown node");
        assert!(!pod.phase.is_terminal(), "a finished pod keeps an identity");
        assert_eq!(
            a.object.name,
            assigned_identity_name(&pod.name, &pod.namespace, &a.identity.name_any())
        );
        if force_namespaced || is_namespaced(&a.identity) {
            assert_eq!(
                a.identity.namespace().as_deref(),
                Some(pod.namespace.as_str())
            );
            assert_eq!(a.object.namespace, pod.namespace);
        } else {
            assert_eq!(a.object.namespace, "default");
        }
        let resource = a.to_resource();
        assert_eq!(resource.spec.pod.as_deref(), Some(pod.name.as_str()));
        assert_eq!(
            resource.spec.pod_namespace.as_deref(),
            Some(pod.namespace.as_str())
        );
        assert_eq!(resource.spec.node_name.as_deref(), Some(a.node.as_str()));
        let json = serde_json::to_value(&resource).expect("an AAI serialises");
        let back: AzureAssignedIdentity = serde_json::from_value(json).expect("an AAI reads back");
        assert_eq!(back, resource);
    }
    let records: Vec<AssignedRecord> = objects
        .assigned
        .iter()
        .cloned()
        .map(AssignedRecord::from)
        .collect();
    let plan = reconcile(&records, &state);
    let _ = format!("{plan:?}");
    let views: Vec<AssignedView> = objects.assigned.iter().map(AssignedView::of).collect();
    let machines = plan_machines(&state, &views, &index, &MachinePolicy::default(), |_, _| {
        None
    });
    let _ = format!("{machines:?}");

    let retry = RetryPolicy::default();
    // What MIC wants, recorded as Assigned: what NMI serves in standard mode.
    let recorded: Vec<AzureAssignedIdentity> = state
        .assignments
        .values()
        .map(|a| {
            let mut r = a.to_resource();
            r.status = Some(AzureAssignedIdentityStatus {
                status: Some(AssignedIdentityState::Assigned),
                available_replicas: Some(1),
            });
            r
        })
        .collect();

    for (info, facts) in &objects.pods {
        let _ = exception_for(facts, &objects.exceptions, "kube-system");
        let node = info.node_name.as_deref().unwrap_or_default();
        // What NMI's binding watch says selects the pod (standard mode).
        let label = facts.labels.get(POD_LABEL_KEY).map_or("", String::as_str);
        let selecting: Vec<(String, String)> = objects
            .bindings
            .iter()
            .filter(|b| !label.is_empty() && b.spec.selector.as_deref() == Some(label))
            .map(|b| (b.namespace().unwrap_or_default(), b.name_any()))
            .collect();
        for requested in &objects.requests {
            if let Ok(selected) =
                select_managed(facts, requested, &objects.bindings, &objects.identities)
            {
                assert_eq!(
                    selected.identity.namespace, facts.namespace,
                    "managed mode served another namespace"
                );
                let label = facts
                    .labels
                    .get(POD_LABEL_KEY)
                    .expect("a served pod has the label");
                assert!(
                    objects.bindings.iter().any(|b| {
                        b.namespace().as_deref() == Some(facts.namespace.as_str())
                            && b.spec.selector.as_ref() == Some(label)
                            && b.spec.azure_identity.as_deref()
                                == Some(selected.identity.name.as_str())
                    }),
                    "managed mode served an unbound identity"
                );
            }
            let inputs = StandardInputs {
                node,
                pod_namespace: &facts.namespace,
                pod_name: &facts.name,
                assigned: &objects.assigned,
                force_namespaced,
                selecting_bindings: if attempt % 3 == 0 { &[] } else { &selecting },
            };
            match select_standard(&inputs, requested, retry, attempt) {
                Decision::Serve(selected) => assert!(
                    objects.assigned.iter().any(|aai| {
                        aai.spec.pod.as_deref() == Some(facts.name.as_str())
                            && aai.spec.pod_namespace.as_deref() == Some(facts.namespace.as_str())
                            && aai.spec.node_name.as_deref() == Some(node)
                            && aai.spec.azure_identity_ref.as_ref().is_some_and(|i| {
                                i.name_any() == selected.identity.name
                                    && i.namespace().unwrap_or_default()
                                        == selected.identity.namespace
                            })
                    }),
                    "standard mode served an identity not recorded for the pod"
                ),
                Decision::Wait(wait) => assert_eq!(wait, retry.interval),
                Decision::Fail(error) => {
                    let _ = error.reply(attempt % 2 == 0);
                }
            }
        }
        // Every pod MIC gave an identity is served one of its identities at the first look.
        let mine: Vec<&AzureIdentity> = state
            .assignments
            .values()
            .filter(|a| a.pod.namespace == info.namespace && a.pod.name == info.name)
            .map(|a| a.identity.as_ref())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let inputs = StandardInputs {
            node,
            pod_namespace: &info.namespace,
            pod_name: &info.name,
            assigned: &recorded,
            force_namespaced,
            selecting_bindings: &selecting,
        };
        match select_standard(&inputs, &RequestedIdentity::Unspecified, retry, 0) {
            Decision::Serve(selected) => assert!(mine.iter().any(|i| {
                i.name_any() == selected.identity.name
                    && i.namespace().unwrap_or_default() == selected.identity.namespace
            })),
            Decision::Fail(SelectionError::Unusable { .. }) => {}
            other => panic!(
                "MIC assigned {} identities to {}/{} and NMI answers {other:?}",
                mine.len(),
                info.namespace,
                info.name
            ),
        }
    }
}
