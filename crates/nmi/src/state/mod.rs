//! What NMI knows of the cluster, fed by watches: this node's pods (by IP, O(1)), the
//! AzurePodIdentityExceptions, and either this node's AzureAssignedIdentities (standard mode)
//! or the AzureIdentityBindings and AzureIdentities (managed mode).
//!
//! Every change bumps a version on a `tokio::sync::watch` channel, so a request waiting for an
//! identity to be assigned wakes up on the change instead of polling.

mod facts;
mod store;

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use podid_api::names::ASSIGNED_IDENTITY_NODE_LABEL;
use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub use facts::{pod_facts, strip_assigned, strip_managed_fields};
pub use store::{ObjectKey, Store};

use crate::pods::{PodFacts, PodLookupError};

/// How identities reach pods (`--operation-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The controller writes AzureAssignedIdentities; NMI serves what they record.
    Standard,
    /// No controller: NMI matches pods to bindings and identities itself.
    Managed,
}

/// The watch-fed state of one node.
pub struct NodeState {
    node: String,
    mode: Mode,
    pods: RwLock<Store<PodFacts, IpAddr>>,
    exceptions: RwLock<Store<AzurePodIdentityException, String>>,
    assigned: RwLock<Store<AzureAssignedIdentity, ObjectKey>>,
    bindings: RwLock<Store<AzureIdentityBinding, String>>,
    identities: RwLock<Store<AzureIdentity, String>>,
    /// Standard mode: every binding's selector, so a pod that no binding selects is answered
    /// at once instead of waiting for an assignment the controller will never make.
    selectors: RwLock<Store<Selector, String>>,
    version: watch::Sender<u64>,
}

fn pod_ips(pod: &PodFacts) -> Vec<IpAddr> {
    pod.ips.iter().map(IpAddr::to_canonical).collect()
}

fn namespace_of<K: Resource>(object: &K) -> Vec<String> {
    vec![object.meta().namespace.clone().unwrap_or_default()]
}

/// The only part of a binding standard mode needs.
struct Selector(String);

fn selector_itself(selector: &Selector) -> Vec<String> {
    vec![selector.0.clone()]
}

fn binding_selector(binding: AzureIdentityBinding) -> Selector {
    Selector(binding.spec.selector.unwrap_or_default())
}

fn assigned_pod(aai: &AzureAssignedIdentity) -> Vec<ObjectKey> {
    let spec = &aai.spec;
    vec![(
        spec.pod_namespace.clone().unwrap_or_default(),
        spec.pod.clone().unwrap_or_default(),
    )]
}

/// A poisoned lock only means another thread panicked mid-update of an index; serving from
/// it beats taking the whole agent down.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl NodeState {
    pub fn new(node: &str, mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            node: node.to_owned(),
            mode,
            pods: RwLock::new(Store::new(pod_ips)),
            exceptions: RwLock::new(Store::new(namespace_of)),
            assigned: RwLock::new(Store::new(assigned_pod)),
            bindings: RwLock::new(Store::new(namespace_of)),
            identities: RwLock::new(Store::new(namespace_of)),
            selectors: RwLock::new(Store::new(selector_itself)),
            version: watch::channel(0).0,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The caller holding `source`, with the core's rules ([`crate::pods::pod_by_ip`]) applied
    /// to the few pods filed under that IP. Shared, not copied: this runs on every request.
    pub fn pod_by_ip(&self, source: IpAddr) -> Result<Arc<PodFacts>, PodLookupError> {
        let pods = read(&self.pods);
        let holders: Vec<&Arc<PodFacts>> = pods.filed_under(&source.to_canonical()).collect();
        if let [only] = holders.as_slice() {
            return crate::pods::pod_by_ip(source, std::slice::from_ref(&***only))
                .map(|_| Arc::clone(only));
        }
        let copies: Vec<PodFacts> = holders.iter().map(|pod| (***pod).clone()).collect();
        let found = crate::pods::pod_by_ip(source, &copies)?;
        let at = copies
            .iter()
            .position(|pod| std::ptr::eq(pod, found))
            .unwrap_or_default();
        Ok(Arc::clone(holders[at]))
    }

    /// The pod called `namespace/name` on this node, whatever its phase.
    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Result<PodFacts, PodLookupError> {
        let found: Vec<PodFacts> = read(&self.pods)
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|pod| (*pod).clone())
            .into_iter()
            .collect();
        crate::pods::pod_by_name(namespace, name, &found).cloned()
    }

    pub fn exceptions_in(&self, namespace: &str) -> Vec<AzurePodIdentityException> {
        cloned(read(&self.exceptions).lookup(&namespace.to_owned()))
    }

    /// The AzureAssignedIdentities recorded for the pod (this node's only: the watch selects
    /// them by label, and the core checks `spec.nodename` again).
    pub fn assigned_to(&self, namespace: &str, name: &str) -> Vec<AzureAssignedIdentity> {
        cloned(read(&self.assigned).lookup(&(namespace.to_owned(), name.to_owned())))
    }

    /// `decide` applied to the AzureAssignedIdentities recorded for the pod, read in place
    /// (under the store's read lock, so `decide` must not wait).
    pub fn with_assigned<R>(
        &self,
        namespace: &str,
        name: &str,
        decide: impl FnOnce(&[AzureAssignedIdentity]) -> R,
    ) -> R {
        let assigned = read(&self.assigned);
        let key = (namespace.to_owned(), name.to_owned());
        let mut recorded = assigned.filed_under(&key);
        match (recorded.next(), recorded.next()) {
            (None, _) => decide(&[]),
            (Some(only), None) => decide(std::slice::from_ref(&**only)),
            (Some(first), Some(second)) => {
                let all: Vec<AzureAssignedIdentity> = [first, second]
                    .into_iter()
                    .chain(recorded)
                    .map(|aai| (**aai).clone())
                    .collect();
                decide(&all)
            }
        }
    }

    /// Whether some AzureIdentityBinding selects pods labelled `aadpodidbinding: <label>`
    /// (standard mode; an empty label selects nothing, as the controller matches).
    pub fn is_selected(&self, label: &str) -> bool {
        !self.bindings_selecting(label).is_empty()
    }

    /// The AzureIdentityBindings (namespace, name) that select pods labelled
    /// `aadpodidbinding: <label>` now (standard mode).
    pub fn bindings_selecting(&self, label: &str) -> Vec<ObjectKey> {
        if label.is_empty() {
            return Vec::new();
        }
        read(&self.selectors).keys_under(&label.to_owned())
    }

    pub fn bindings_in(&self, namespace: &str) -> Vec<AzureIdentityBinding> {
        cloned(read(&self.bindings).lookup(&namespace.to_owned()))
    }

    pub fn identities_in(&self, namespace: &str) -> Vec<AzureIdentity> {
        cloned(read(&self.identities).lookup(&namespace.to_owned()))
    }

    /// A receiver that sees a new value after every change of any watched object.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Whether every watch of this mode has listed its objects once.
    pub fn is_synced(&self) -> bool {
        let common = read(&self.pods).is_synced() && read(&self.exceptions).is_synced();
        common
            && match self.mode {
                Mode::Standard => {
                    read(&self.assigned).is_synced() && read(&self.selectors).is_synced()
                }
                Mode::Managed => {
                    read(&self.bindings).is_synced() && read(&self.identities).is_synced()
                }
            }
    }

    /// Waits until [`NodeState::is_synced`].
    pub async fn wait_synced(&self) {
        let mut changes = self.changes();
        while !self.is_synced() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Runs the watches of this mode until the future is dropped. Watch errors are retried
    /// with kube's default backoff and logged; they never end the loop.
    pub async fn run_watches(self: Arc<Self>, client: Client) {
        let on_node = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let pods = self.clone().watch(
            Api::<Pod>::all(client.clone()),
            on_node,
            |state| &state.pods,
            |pod: Pod| pod_facts(&pod),
        );
        let exceptions = self.clone().watch(
            Api::<AzurePodIdentityException>::all(client.clone()),
            watcher::Config::default(),
            |state| &state.exceptions,
            strip_managed_fields,
        );
        match self.mode {
            Mode::Standard => {
                let labelled = watcher::Config::default()
                    .labels(&format!("{ASSIGNED_IDENTITY_NODE_LABEL}={}", self.node));
                let assigned = self.clone().watch(
                    Api::<AzureAssignedIdentity>::all(client.clone()),
                    labelled,
                    |state| &state.assigned,
                    strip_assigned,
                );
                let selectors = self.clone().watch(
                    Api::<AzureIdentityBinding>::all(client),
                    watcher::Config::default(),
                    |state| &state.selectors,
                    binding_selector,
                );
                futures::join!(pods, exceptions, assigned, selectors);
            }
            Mode::Managed => {
                let bindings = self.clone().watch(
                    Api::<AzureIdentityBinding>::all(client.clone()),
                    watcher::Config::default(),
                    |state| &state.bindings,
                    strip_managed_fields,
                );
                let identities = self.clone().watch(
                    Api::<AzureIdentity>::all(client),
                    watcher::Config::default(),
                    |state| &state.identities,
                    strip_managed_fields,
                );
                futures::join!(pods, exceptions, bindings, identities);
            }
        }
    }

    async fn watch<K, V, I>(
        self: Arc<Self>,
        api: Api<K>,
        config: watcher::Config,
        store: fn(&Self) -> &RwLock<Store<V, I>>,
        convert: fn(K) -> V,
    ) where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
        I: std::hash::Hash + Eq + Clone,
    {
        let kind = K::kind(&()).into_owned();
        let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    self.apply(store(&self), event, convert);
                    self.version.send_modify(|version| *version += 1);
                }
                Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
            }
        }
    }

    fn apply<K: Resource, V, I: std::hash::Hash + Eq + Clone>(
        &self,
        store: &RwLock<Store<V, I>>,
        event: Event<K>,
        convert: fn(K) -> V,
    ) {
        let key = |object: &K| (object.namespace().unwrap_or_default(), object.name_any());
        let mut store = write(store);
        match event {
            Event::Init => store.start_listing(),
            Event::InitApply(object) => store.listed(key(&object), convert(object)),
            Event::InitDone => store.finish_listing(),
            Event::Apply(object) => store.apply(key(&object), convert(object)),
            Event::Delete(object) => store.remove(&key(&object)),
        }
    }
}

fn cloned<V: Clone>(values: Vec<Arc<V>>) -> Vec<V> {
    values.iter().map(|value| (**value).clone()).collect()
}
