//! The watches: caches of labelled pods, nodes, identities, bindings and
//! AzureAssignedIdentities, each object reduced as it arrives to what MIC reads (a pod to a
//! [`PodInfo`], an AzureAssignedIdentity to an [`AssignedRecord`] sharing its embedded
//! objects, no managedFields anywhere). Every change that can alter a decision wakes the
//! controller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use podid_api::names::POD_LABEL_KEY;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::{AssignedRecord, Embeds, NodeInfo, ObjectRef, PodInfo};

/// How the watches wake the controller, and how many input changes (pods, nodes, identities,
/// bindings: not the AzureAssignedIdentities MIC mostly writes itself) they saw: a burst of
/// inputs is waited for (`debounce.rs`).
#[derive(Debug, Default)]
pub struct Changes {
    inputs: AtomicU64,
    notify: Notify,
}

impl Changes {
    fn record(&self, input: bool) {
        if input {
            self.inputs.fetch_add(1, Ordering::Relaxed);
        }
        self.notify.notify_one();
    }

    /// Completes at the next change (or at once when one came since the last call).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Input changes so far.
    pub fn inputs(&self) -> u64 {
        self.inputs.load(Ordering::Relaxed)
    }
}

/// The caches; the watch tasks stop when this is dropped.
pub struct Stores {
    pods: Cache<PodInfo>,
    nodes: Cache<NodeInfo>,
    identities: Cache<AzureIdentity>,
    bindings: Cache<AzureIdentityBinding>,
    assigned: Cache<AssignedRecord>,
    _tasks: JoinSet<()>,
}

/// The caches' contents at one moment, shared with them (no object is copied).
pub struct Snapshot {
    pub pods: Vec<Arc<PodInfo>>,
    pub nodes: Vec<NodeInfo>,
    pub identities: Vec<Arc<AzureIdentity>>,
    pub bindings: Vec<Arc<AzureIdentityBinding>>,
    pub assigned: Vec<Arc<AssignedRecord>>,
}

impl Stores {
    /// Starts the watches; `changes` hears of every change that matters. AzureAssignedIdentities
    /// are recorded through `embeds`, which the writer shares.
    pub fn start(client: &Client, changes: Arc<Changes>, embeds: Arc<Mutex<Embeds>>) -> Self {
        let mut tasks = JoinSet::new();
        let pods = cache(
            &mut tasks,
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(POD_LABEL_KEY),
            |pod| PodInfo::of(&pod),
            // Status updates (conditions, IPs, containers) change nothing MIC keeps, and a pod
            // no scheduler has placed yet counts for nothing.
            Kind::Input(|old: Option<&PodInfo>, new: Option<&PodInfo>| {
                old.filter(|pod| pod.node().is_some()) != new.filter(|pod| pod.node().is_some())
            }),
            &changes,
        );
        let nodes = cache(
            &mut tasks,
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            |node| NodeInfo {
                name: node.metadata.name.unwrap_or_default(),
                provider_id: node.spec.and_then(|spec| spec.provider_id),
            },
            // A node's heartbeats change neither its name nor its providerID.
            Kind::Input(|old, new| old != new),
            &changes,
        );
        let identities = cache(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip::<AzureIdentity>,
            Kind::Input(|_, _| true),
            &changes,
        );
        let bindings = cache(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip::<AzureIdentityBinding>,
            Kind::Input(|_, _| true),
            &changes,
        );
        let assigned = cache(
            &mut tasks,
            Api::<AzureAssignedIdentity>::all(client.clone()),
            watcher::Config::default(),
            move |object| {
                AssignedRecord::new(
                    object,
                    &mut embeds.lock().unwrap_or_else(PoisonError::into_inner),
                )
            },
            Kind::Output,
            &changes,
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

    /// Waits until every cache has its first full list.
    pub async fn ready(&self) {
        futures::join!(
            self.pods.ready(),
            self.nodes.ready(),
            self.identities.ready(),
            self.bindings.ready(),
            self.assigned.ready(),
        );
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            pods: self.pods.snapshot(),
            nodes: self
                .nodes
                .snapshot()
                .iter()
                .map(|node| NodeInfo::clone(node))
                .collect(),
            identities: self.identities.snapshot(),
            bindings: self.bindings.snapshot(),
            assigned: self.assigned.snapshot(),
        }
    }
}

type Objects<T> = HashMap<ObjectRef, Arc<T>>;

/// What a watch's changes are to the controller.
enum Kind<T> {
    /// An input of the decisions; the function tells whether replacing the first (absent:
    /// new) by the second (absent: deleted) can change a decision. Other changes are not told.
    Input(fn(Option<&T>, Option<&T>) -> bool),
    /// What MIC mostly writes itself: every change wakes it, none makes a burst.
    Output,
}

/// One watch's objects, as reduced.
struct Cache<T> {
    objects: Arc<RwLock<Objects<T>>>,
    ready: watch::Receiver<bool>,
}

impl<T> Cache<T> {
    fn snapshot(&self) -> Vec<Arc<T>> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    async fn ready(&self) {
        // An error means the watch task ended, which happens only when the stores are dropped.
        let _ = self.ready.clone().wait_for(|ready| *ready).await;
    }
}

/// Watches `api`, keeping each object as `reduce` makes it. A relist (after the watch fell
/// behind) is collected aside and replaces the cache once complete, as kube's reflector does.
fn cache<K, T>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    mut reduce: impl FnMut(K) -> T + Send + 'static,
    kind: Kind<T>,
    changes: &Arc<Changes>,
) -> Cache<T>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    T: Send + Sync + 'static,
{
    let objects: Arc<RwLock<Objects<T>>> = Arc::default();
    let (ready_tx, ready) = watch::channel(false);
    let cache = Cache {
        objects: objects.clone(),
        ready,
    };
    let changes = changes.clone();
    tasks.spawn(async move {
        let tell = |old: Option<&T>, new: Option<&T>| match &kind {
            Kind::Input(matters) => {
                if matters(old, new) {
                    changes.record(true);
                }
            }
            Kind::Output => changes.record(false),
        };
        let write = || objects.write().unwrap_or_else(PoisonError::into_inner);
        let mut relist: Option<Objects<T>> = None;
        let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(object)) => {
                    let key = ObjectRef::of(&object);
                    let reduced = Arc::new(reduce(object));
                    let old = write().insert(key, reduced.clone());
                    tell(old.as_deref(), Some(&reduced));
                }
                Ok(Event::Delete(object)) => {
                    let old = write().remove(&ObjectRef::of(&object));
                    tell(old.as_deref(), None);
                }
                Ok(Event::Init) => relist = Some(HashMap::new()),
                Ok(Event::InitApply(object)) => {
                    let key = ObjectRef::of(&object);
                    relist
                        .get_or_insert_default()
                        .insert(key, Arc::new(reduce(object)));
                }
                Ok(Event::InitDone) => {
                    *write() = relist.take().unwrap_or_default();
                    ready_tx.send_replace(true);
                    // Anything may have changed while the watch was down.
                    changes.record(matches!(kind, Kind::Input(_)));
                }
                Err(error) => {
                    tracing::warn!(%error, kind = %K::kind(&Default::default()), "watch failed; retrying");
                }
            }
        }
    });
    cache
}

/// Nothing reads managedFields, and they can be most of an object's size.
fn strip<K: Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}
