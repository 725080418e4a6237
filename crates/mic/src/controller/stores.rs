//! The watches: reflector stores of labelled pods, nodes, identities, bindings and
//! AzureAssignedIdentities, kept to what MIC reads (no managedFields, pods and nodes reduced
//! to the fields the decisions use). Every change wakes the controller.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, PodSpec, PodStatus};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use podid_api::names::POD_LABEL_KEY;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::{NodeInfo, PodInfo};

/// The stores; the watch tasks stop when this is dropped.
pub struct Stores {
    pods: Store<Pod>,
    nodes: Store<Node>,
    identities: Store<AzureIdentity>,
    bindings: Store<AzureIdentityBinding>,
    assigned: Store<AzureAssignedIdentity>,
    _tasks: JoinSet<()>,
}

/// The stores' contents at one moment, as the decisions take them.
pub struct Snapshot {
    pub pods: Vec<PodInfo>,
    pub nodes: Vec<NodeInfo>,
    pub identities: Vec<AzureIdentity>,
    pub bindings: Vec<AzureIdentityBinding>,
    pub assigned: Vec<AzureAssignedIdentity>,
}

impl Stores {
    /// Starts the watches; `changed` is notified on every event.
    pub fn start(client: &Client, changed: Arc<Notify>) -> Self {
        let mut tasks = JoinSet::new();
        let pods = watch(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default().labels(POD_LABEL_KEY),
            reduce_pod,
            &changed,
        );
        let nodes = watch(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            reduce_node,
            &changed,
        );
        let identities = watch(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip,
            &changed,
        );
        let bindings = watch(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip,
            &changed,
        );
        let assigned = watch(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip,
            &changed,
        );
        Self {
            pods,
            nodes,
            identities,
            bindings,
            assigned,
            _tasks: tasks,
        }
    }

    /// Waits until every store has its first full list.
    pub async fn ready(&self) {
        // An error means the watch task ended, which happens only when `self` is dropped.
        let _ = futures::try_join!(
            self.pods.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.identities.wait_until_ready(),
            self.bindings.wait_until_ready(),
            self.assigned.wait_until_ready(),
        );
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            pods: self
                .pods
                .state()
                .iter()
                .map(|pod| PodInfo::of(pod))
                .collect(),
            nodes: self
                .nodes
                .state()
                .iter()
                .map(|node| node_info(node))
                .collect(),
            identities: cloned(&self.identities),
            bindings: cloned(&self.bindings),
            assigned: cloned(&self.assigned),
        }
    }
}

fn cloned<K: Clone + Resource>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .state()
        .iter()
        .map(|object| (**object).clone())
        .collect()
}

fn watch<K>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    reduce: fn(&mut K),
    changed: &Arc<Notify>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let stream = reflector(
        writer,
        watcher(api, config).default_backoff().modify(reduce),
    );
    tasks.spawn(stream.for_each(move |event| {
        if let Err(error) = &event {
            tracing::warn!(%error, kind = %K::kind(&Default::default()), "watch failed; retrying");
        }
        changed.notify_one();
        futures::future::ready(())
    }));
    reader
}

fn strip<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

fn reduce_pod(pod: &mut Pod) {
    strip(pod);
    pod.meta_mut().annotations = None;
    pod.meta_mut().owner_references = None;
    pod.spec = Some(PodSpec {
        node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
        ..PodSpec::default()
    });
    pod.status = Some(PodStatus {
        phase: pod.status.as_ref().and_then(|status| status.phase.clone()),
        ..PodStatus::default()
    });
}

fn reduce_node(node: &mut Node) {
    strip(node);
    node.meta_mut().annotations = None;
    node.meta_mut().labels = None;
    node.spec = Some(NodeSpec {
        provider_id: node.spec.as_ref().and_then(|spec| spec.provider_id.clone()),
        ..NodeSpec::default()
    });
    node.status = None;
}

fn node_info(node: &Node) -> NodeInfo {
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        provider_id: node.spec.as_ref().and_then(|spec| spec.provider_id.clone()),
    }
}
