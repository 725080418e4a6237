//! The Kubernetes writer: every write MIC makes to AzureAssignedIdentities, and the overlay
//! that keeps the controller's view ahead of its own watch (a cycle right after a write must
//! not see the object as it was before).

use std::collections::BTreeMap;
use std::time::Instant as StdInstant;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use podid_api::{AssignedIdentityState, AzureAssignedIdentity};
use serde_json::json;

use crate::ObjectRef;
use crate::metrics::{KubeOperation, Metrics};
use crate::releasing::RELEASING_ANNOTATION;

/// One write.
#[derive(Debug, Clone)]
pub enum Op {
    Create(AzureAssignedIdentity),
    Replace(AzureAssignedIdentity),
    Status(ObjectRef, AssignedIdentityState),
    Releasing(ObjectRef, Option<String>),
    Delete(ObjectRef),
}

impl Op {
    pub fn object(&self) -> ObjectRef {
        match self {
            Op::Create(object) | Op::Replace(object) => ObjectRef::of(object),
            Op::Status(object, _) | Op::Releasing(object, _) | Op::Delete(object) => object.clone(),
        }
    }

    fn operation(&self) -> KubeOperation {
        match self {
            Op::Create(_) => KubeOperation::assigned_identity_addition,
            Op::Replace(_) => KubeOperation::assigned_identity_update,
            Op::Status(..) | Op::Releasing(..) => {
                KubeOperation::update_azure_assigned_identity_status
            }
            Op::Delete(_) => KubeOperation::assigned_identity_deletion,
        }
    }
}

/// What a write left: the object as the API server returned it, or gone.
#[derive(Debug, Clone)]
pub enum Written {
    Object(Box<AzureAssignedIdentity>),
    Deleted,
}

/// Writes AzureAssignedIdentities.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    metrics: Metrics,
}

impl Writer {
    pub fn new(client: Client, metrics: Metrics) -> Self {
        Self { client, metrics }
    }

    /// Performs `op`. A create of an object that exists, a delete of one that is gone, count
    /// as done (the watch brings the truth).
    pub async fn write(&self, op: &Op) -> Result<Option<Written>, kube::Error> {
        let started = StdInstant::now();
        let result = self.send(op).await;
        match &result {
            Ok(_) => self.metrics.kube_ok(op.operation(), started.elapsed()),
            Err(_) => self.metrics.kube_error(op.operation()),
        }
        result
    }

    async fn send(&self, op: &Op) -> Result<Option<Written>, kube::Error> {
        let object = op.object();
        let api: Api<AzureAssignedIdentity> =
            Api::namespaced(self.client.clone(), &object.namespace);
        // managedFields go, as in the store: nothing reads them, and as JSON values they
        // weigh more than the rest of the object while it waits in the overlay.
        let written = |mut o: AzureAssignedIdentity| {
            o.metadata.managed_fields = None;
            Ok(Some(Written::Object(Box::new(o))))
        };
        match op {
            Op::Create(new) => match api.create(&PostParams::default(), new).await {
                Ok(created) => written(created),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                Err(error) => Err(error),
            },
            Op::Replace(new) => written(
                api.replace(&object.name, &PostParams::default(), new)
                    .await?,
            ),
            // No status subresource on this CRD: status goes through the main resource.
            Op::Status(_, state) => {
                let patch = json!({"status": {"status": state}});
                written(
                    api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?,
                )
            }
            Op::Releasing(_, value) => {
                let patch = json!({"metadata": {"annotations": {RELEASING_ANNOTATION: value}}});
                written(
                    api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?,
                )
            }
            Op::Delete(_) => {
                let gone =
                    |error: &kube::Error| matches!(error, kube::Error::Api(s) if s.code == 404);
                let patch = json!({"metadata": {"finalizers": null}});
                if let Err(error) = api
                    .patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    && !gone(&error)
                {
                    return Err(error);
                }
                match api.delete(&object.name, &DeleteParams::default()).await {
                    Ok(_) => Ok(Some(Written::Deleted)),
                    Err(error) if gone(&error) => Ok(Some(Written::Deleted)),
                    Err(error) => Err(error),
                }
            }
        }
    }
}

/// The controller's own writes not yet seen through the watch.
#[derive(Debug, Default)]
pub struct Overlay {
    writes: BTreeMap<ObjectRef, (Written, Option<u64>)>,
}

impl Overlay {
    pub fn record(&mut self, object: ObjectRef, written: Written) {
        let version = match &written {
            Written::Object(o) => resource_version(o),
            Written::Deleted => None,
        };
        self.writes.insert(object, (written, version));
    }

    /// `seen` (the watch's view) with this controller's newer writes applied. A write is
    /// forgotten once the watch shows it or something newer.
    pub fn merge(&mut self, seen: Vec<AzureAssignedIdentity>) -> Vec<AzureAssignedIdentity> {
        let mut objects: BTreeMap<ObjectRef, AzureAssignedIdentity> = seen
            .into_iter()
            .map(|object| (ObjectRef::of(&object), object))
            .collect();
        self.writes.retain(|key, (written, version)| {
            let current = objects.get(key);
            let caught_up = match (&*written, current) {
                (Written::Deleted, None) => true,
                (Written::Deleted, Some(_)) => false,
                (Written::Object(_), Some(seen)) => match (resource_version(seen), *version) {
                    (Some(seen), Some(mine)) => seen >= mine,
                    _ => true,
                },
                (Written::Object(_), None) => false,
            };
            if caught_up {
                return false;
            }
            match written {
                Written::Deleted => {
                    objects.remove(key);
                }
                Written::Object(object) => {
                    objects.insert(key.clone(), (**object).clone());
                }
            }
            true
        });
        objects.into_values().collect()
    }
}

/// The resourceVersion as a number: etcd's revisions are, and comparing them is the only way
/// to tell which of two views is newer. Anything else counts as unknown.
fn resource_version(object: &AzureAssignedIdentity) -> Option<u64> {
    object.resource_version()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use podid_api::AzureAssignedIdentitySpec;

    use super::*;

    fn aai(name: &str, version: &str, pod: &str) -> AzureAssignedIdentity {
        let mut object = AzureAssignedIdentity::new(
            name,
            AzureAssignedIdentitySpec {
                pod: Some(pod.into()),
                ..AzureAssignedIdentitySpec::default()
            },
        );
        object.metadata.namespace = Some("default".into());
        object.metadata.resource_version = Some(version.into());
        object
    }

    fn pods(objects: &[AzureAssignedIdentity]) -> Vec<(String, String)> {
        objects
            .iter()
            .map(|o| (o.name_any(), o.spec.pod.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn own_writes_show_until_the_watch_catches_up() {
        let mut overlay = Overlay::default();
        overlay.record(
            ObjectRef::new("default", "a"),
            Written::Object(Box::new(aai("a", "10", "new"))),
        );
        overlay.record(ObjectRef::new("default", "b"), Written::Deleted);
        let merged = overlay.merge(vec![aai("a", "9", "old"), aai("b", "8", "b")]);
        assert_eq!(pods(&merged), vec![("a".into(), "new".into())]);
        // The watch shows a newer version: it wins, and the write is forgotten.
        let merged = overlay.merge(vec![aai("a", "11", "other")]);
        assert_eq!(pods(&merged), vec![("a".into(), "other".into())]);
        assert!(overlay.writes.is_empty());
    }

    #[test]
    fn a_created_object_shows_before_the_watch_has_it() {
        let mut overlay = Overlay::default();
        overlay.record(
            ObjectRef::new("default", "a"),
            Written::Object(Box::new(aai("a", "3", "p"))),
        );
        assert_eq!(pods(&overlay.merge(vec![])).len(), 1);
        assert_eq!(pods(&overlay.merge(vec![aai("a", "3", "p")])).len(), 1);
        assert!(overlay.writes.is_empty());
    }
}
