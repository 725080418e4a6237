//! The watches: caches of labelled pods, nodes, identities, bindings and
//! AzureAssignedIdentities, each object reduced as it arrives to what MIC reads (a pod to a
//! [`PodInfo`], an AzureAssignedIdentity to an [`AssignedRecord`] sharing its embedded
//! objects, no managedFields anywhere). Every change wakes the controller.

use std::collections::HashMap;
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
    /// Starts the watches; `changed` is notified on every event. AzureAssignedIdentities are
    /// recorded through `embeds`, which the writer shares.
    pub fn start(client: &Client, changed: Arc<Notify>, embeds: Arc<Mutex<Embeds>>) -> Self {
        let mut tasks = JoinSet::new();
        let pods = cache(
            &mut tasks,
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(POD_LABEL_KEY),
            |pod| PodInfo::of(&pod),
            &changed,
        );
        let nodes = cache(
            &mut tasks,
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            |node| NodeInfo {
                name: node.metadata.name.unwrap_or_default(),
                provider_id: node.spec.and_then(|spec| spec.provider_id),
            },
            &changed,
        );
        let identities = cache(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip::<AzureIdentity>,
            &changed,
        );
        let bindings = cache(
            &mut tasks,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip::<AzureIdentityBinding>,
            &changed,
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
    changed: &Arc<Notify>,
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
    let changed = changed.clone();
    tasks.spawn(async move {
        let write = || objects.write().unwrap_or_else(PoisonError::into_inner);
        let mut relist: Option<Objects<T>> = None;
        let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(object)) => {
                    let key = ObjectRef::of(&object);
                    let reduced = Arc::new(reduce(object));
                    write().insert(key, reduced);
                }
                Ok(Event::Delete(object)) => {
                    write().remove(&ObjectRef::of(&object));
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
                }
                Err(error) => {
                    tracing::warn!(%error, kind = %K::kind(&Default::default()), "watch failed; retrying");
                }
            }
            changed.notify_one();
        }
    });
    cache
}

/// Nothing reads managedFields, and they can be most of an object's size.
fn strip<K: Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}
