//! The Kubernetes writer: every write MIC makes to AzureAssignedIdentities, and the overlay
//! that keeps the controller's view ahead of its own watch (a cycle right after a write must
//! not see the object as it was before).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant as StdInstant;

use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use podid_api::{AssignedIdentityState, AzureAssignedIdentity};
use serde_json::json;

use crate::metrics::{KubeOperation, Metrics};
use crate::releasing::RELEASING_ANNOTATION;
use crate::{AssignedRecord, Assignment, Embeds, ObjectRef};

/// One write.
#[derive(Debug, Clone)]
pub enum Op {
    /// Built into an object only when sent: a burst of thousands waits as assignments.
    Create(Assignment),
    /// Boxed: thousands of ops wait in a cycle, and a whole object is ten times the others.
    Replace(Box<AzureAssignedIdentity>),
    Status(ObjectRef, AssignedIdentityState),
    Releasing(ObjectRef, Option<String>),
    Delete(ObjectRef),
}

impl Op {
    pub fn object(&self) -> ObjectRef {
        match self {
            Op::Create(assignment) => assignment.object.clone(),
            Op::Replace(object) => ObjectRef::of(object.as_ref()),
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
    Object(Arc<AssignedRecord>),
    Deleted,
}

/// Writes AzureAssignedIdentities.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    metrics: Metrics,
    /// Shared with the watch, so that written objects share its embedded identities.
    embeds: Arc<Mutex<Embeds>>,
}

impl Writer {
    pub fn new(client: Client, metrics: Metrics, embeds: Arc<Mutex<Embeds>>) -> Self {
        Self {
            client,
            metrics,
            embeds,
        }
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
        let written = |o: AzureAssignedIdentity| {
            let record = AssignedRecord::new(
                o,
                &mut self.embeds.lock().unwrap_or_else(PoisonError::into_inner),
            );
            Ok(Some(Written::Object(Arc::new(record))))
        };
        match op {
            Op::Create(assignment) => {
                match api
                    .create(&PostParams::default(), &assignment.to_resource())
                    .await
                {
                    Ok(created) => written(created),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                    Err(error) => Err(error),
                }
            }
            Op::Replace(new) => written(
                api.replace(&object.name, &PostParams::default(), new.as_ref())
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
    writes: BTreeMap<ObjectRef, Written>,
}

impl Overlay {
    pub fn record(&mut self, object: ObjectRef, written: Written) {
        self.writes.insert(object, written);
    }

    /// `seen` (the watch's view) with this controller's newer writes applied. A write is
    /// forgotten once the watch shows it or something newer.
    pub fn merge(&mut self, seen: Vec<Arc<AssignedRecord>>) -> Vec<Arc<AssignedRecord>> {
        if self.writes.is_empty() {
            return seen;
        }
        {
            let seen: HashMap<&ObjectRef, &AssignedRecord> = seen
                .iter()
                .map(|record| (record.object(), record.as_ref()))
                .collect();
            self.writes.retain(|key, written| {
                let caught_up = match (&*written, seen.get(key)) {
                    (Written::Deleted, None) => true,
                    (Written::Deleted, Some(_)) => false,
                    (Written::Object(mine), Some(seen)) => match (seen.revision(), mine.revision())
                    {
                        (Some(seen), Some(mine)) => seen >= mine,
                        _ => true,
                    },
                    (Written::Object(_), None) => false,
                };
                !caught_up
            });
        }
        let mut merged: Vec<Arc<AssignedRecord>> = seen
            .into_iter()
            .filter(|record| !self.writes.contains_key(record.object()))
            .collect();
        merged.extend(self.writes.values().filter_map(|written| match written {
            Written::Object(record) => Some(record.clone()),
            Written::Deleted => None,
        }));
        merged
    }
}

#[cfg(test)]
mod tests {
    use podid_api::AzureAssignedIdentitySpec;

    use super::*;

    fn aai(name: &str, version: &str, pod: &str) -> Arc<AssignedRecord> {
        let mut object = AzureAssignedIdentity::new(
            name,
            AzureAssignedIdentitySpec {
                pod: Some(pod.into()),
                ..AzureAssignedIdentitySpec::default()
            },
        );
        object.metadata.namespace = Some("default".into());
        object.metadata.resource_version = Some(version.into());
        Arc::new(object.into())
    }

    fn pods(records: &[Arc<AssignedRecord>]) -> Vec<(String, String)> {
        let mut pods: Vec<(String, String)> = records
            .iter()
            .map(|r| (r.object().name.clone(), r.pod.clone().unwrap_or_default()))
            .collect();
        pods.sort();
        pods
    }

    #[test]
    fn own_writes_show_until_the_watch_catches_up() {
        let mut overlay = Overlay::default();
        overlay.record(
            ObjectRef::new("default", "a"),
            Written::Object(aai("a", "10", "new")),
        );
        overlay.record(ObjectRef::new("default", "b"), Written::Deleted);
        let merged = overlay.merge(vec![
            aai("a", "9", "old"),
            aai("b", "8", "b"),
            aai("c", "5", "c"),
        ]);
        assert_eq!(
            pods(&merged),
            vec![("a".into(), "new".into()), ("c".into(), "c".into())]
        );
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
            Written::Object(aai("a", "3", "p")),
        );
        assert_eq!(pods(&overlay.merge(vec![])).len(), 1);
        assert_eq!(pods(&overlay.merge(vec![aai("a", "3", "p")])).len(), 1);
        assert!(overlay.writes.is_empty());
    }
}
