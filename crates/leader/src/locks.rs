//! Reading and writing the two lock objects. Every write carries the resourceVersion that was
//! read, so of two candidates writing after the same read, the API server accepts one.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};

use crate::LeaderConfig;
use crate::decide::{Lock, lease_seconds};
use crate::record::{LEADER_ANNOTATION, LeaderRecord};

/// Holder shown for an annotation that does not parse: someone wrote it, so it counts as held
/// until it has stayed unchanged for this candidate's own lease duration.
pub const UNREADABLE_HOLDER: &str = "<unreadable leader annotation>";

/// Both lock objects as last read (`None`: absent).
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub lease: Option<Lease>,
    pub endpoints: Option<Endpoints>,
}

impl Fetched {
    pub fn lease_record(&self) -> Option<LeaderRecord> {
        let lease = self.lease.as_ref()?;
        Some(
            lease
                .spec
                .as_ref()
                .map(LeaderRecord::from_lease)
                .unwrap_or_default(),
        )
    }

    /// The Endpoints record; `None` when the object or its annotation is absent.
    pub fn endpoints_record(&self, fallback: &LeaderConfig) -> Option<LeaderRecord> {
        let annotation = self
            .endpoints
            .as_ref()?
            .metadata
            .annotations
            .as_ref()?
            .get(LEADER_ANNOTATION)?;
        Some(
            LeaderRecord::from_annotation(annotation).unwrap_or_else(|_| LeaderRecord {
                holder_identity: UNREADABLE_HOLDER.to_owned(),
                lease_duration_seconds: lease_seconds(fallback.lease_duration),
                ..LeaderRecord::default()
            }),
        )
    }
}

/// A failed call, with what was tried.
#[derive(Debug)]
pub struct CallError {
    pub action: String,
    pub source: kube::Error,
}

impl CallError {
    fn new(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self { action, source }
    }

    /// The status code of an API error, if the API server answered.
    pub fn code(&self) -> Option<u16> {
        match &self.source {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }
}

pub struct Locks {
    leases: Api<Lease>,
    endpoints: Api<Endpoints>,
    namespace: String,
    name: String,
}

impl Locks {
    pub fn new(client: Client, config: &LeaderConfig) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), &config.namespace),
            endpoints: Api::namespaced(client, &config.namespace),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
        }
    }

    fn action(&self, verb: &str, lock: Lock) -> String {
        format!("{verb} {lock} {}/{}", self.namespace, self.name)
    }

    pub async fn fetch(&self) -> Result<Fetched, CallError> {
        let (lease, endpoints) = tokio::join!(
            self.leases.get_opt(&self.name),
            self.endpoints.get_opt(&self.name)
        );
        Ok(Fetched {
            lease: lease.map_err(CallError::new(self.action("get", Lock::Lease)))?,
            endpoints: endpoints.map_err(CallError::new(self.action("get", Lock::Endpoints)))?,
        })
    }

    /// Writes `record` into the Lease: a create when it was absent, else a replace of what was
    /// read (its resourceVersion included).
    pub async fn write_lease(
        &self,
        current: Option<&Lease>,
        record: &LeaderRecord,
    ) -> Result<(), CallError> {
        let pp = PostParams::default();
        match current {
            None => {
                let lease = Lease {
                    metadata: self.metadata(),
                    spec: Some(record.to_lease()),
                };
                self.leases
                    .create(&pp, &lease)
                    .await
                    .map_err(CallError::new(self.action("create", Lock::Lease)))?;
            }
            Some(current) => {
                let mut lease = current.clone();
                lease.spec = Some(record.to_lease());
                self.leases
                    .replace(&self.name, &pp, &lease)
                    .await
                    .map_err(CallError::new(self.action("update", Lock::Lease)))?;
            }
        }
        Ok(())
    }

    /// Writes `record` into the Endpoints annotation, keeping every other field as read.
    pub async fn write_endpoints(
        &self,
        current: Option<&Endpoints>,
        record: &LeaderRecord,
    ) -> Result<(), CallError> {
        let pp = PostParams::default();
        let annotate = |meta: &mut ObjectMeta| {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(LEADER_ANNOTATION.to_owned(), record.to_annotation());
        };
        match current {
            None => {
                let mut endpoints = Endpoints {
                    metadata: self.metadata(),
                    ..Endpoints::default()
                };
                annotate(endpoints.meta_mut());
                self.endpoints
                    .create(&pp, &endpoints)
                    .await
                    .map_err(CallError::new(self.action("create", Lock::Endpoints)))?;
            }
            Some(current) => {
                let mut endpoints = current.clone();
                annotate(endpoints.meta_mut());
                self.endpoints
                    .replace(&self.name, &pp, &endpoints)
                    .await
                    .map_err(CallError::new(self.action("update", Lock::Endpoints)))?;
            }
        }
        Ok(())
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints_with(annotation: Option<&str>) -> Fetched {
        let annotations =
            annotation.map(|a| BTreeMap::from([(LEADER_ANNOTATION.to_owned(), a.to_owned())]));
        Fetched {
            lease: None,
            endpoints: Some(Endpoints {
                metadata: ObjectMeta {
                    annotations,
                    ..ObjectMeta::default()
                },
                ..Endpoints::default()
            }),
        }
    }

    #[test]
    fn an_unreadable_annotation_counts_as_held_for_a_lease_duration() {
        let config = LeaderConfig::new("podid-0");
        let record = endpoints_with(Some("{not json"))
            .endpoints_record(&config)
            .unwrap();
        assert_eq!(record.holder_identity, UNREADABLE_HOLDER);
        assert_eq!(record.lease_duration_seconds, 15);
    }

    #[test]
    fn absent_objects_and_annotations_are_no_record() {
        let config = LeaderConfig::new("podid-0");
        assert_eq!(Fetched::default().endpoints_record(&config), None);
        assert_eq!(Fetched::default().lease_record(), None);
        assert_eq!(endpoints_with(None).endpoints_record(&config), None);
        let lease = Fetched {
            lease: Some(Lease::default()),
            endpoints: None,
        };
        assert_eq!(lease.lease_record(), Some(LeaderRecord::default()));
    }
}
