//! Existing AzureAssignedIdentities as MIC keeps them between cycles: what the decisions read,
//! in a compact form, with the embedded identity and binding shared between every object that
//! embeds the same one. A Deployment of 10,000 pods makes 10,000 objects embedding one identity
//! and one binding; kept whole, they were most of MIC's memory.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};

use crate::releasing::RELEASING_ANNOTATION;
use crate::{AssignedView, IdentityTarget, ObjectRef};

/// An existing AzureAssignedIdentity: its [`AssignedView`], the fields
/// [`crate::Assignment::is_recorded_by`] compares, and the metadata a replacing write keeps
/// (what the API server lets a write set; it keeps the rest itself).
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedRecord {
    view: AssignedView,
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
    /// Lists rather than maps: an object has one label and rarely an annotation, and a map
    /// allocates room for eleven entries to hold one.
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    finalizers: Vec<String>,
    owner_references: Vec<OwnerReference>,
    pub(crate) pod: Option<String>,
    pub(crate) pod_namespace: Option<String>,
    pub(crate) identity: Option<Arc<AzureIdentity>>,
    pub(crate) binding: Option<Arc<AzureIdentityBinding>>,
}

impl AssignedRecord {
    /// The record of `object`, its embedded identity and binding shared through `embeds`.
    pub fn new(object: AzureAssignedIdentity, embeds: &mut Embeds) -> Self {
        let AzureAssignedIdentity {
            metadata,
            spec,
            status,
        } = object;
        let (identity, target) = match spec.azure_identity_ref {
            Some(identity) => {
                let (identity, target) = embeds.identity(identity);
                (Some(identity), target)
            }
            None => (None, None),
        };
        let binding = spec
            .azure_binding_ref
            .map(|binding| embeds.binding(binding));
        let annotations = pairs(metadata.annotations);
        let view = AssignedView::from_parts(
            ObjectRef::new(
                metadata.namespace.unwrap_or_default(),
                metadata.name.unwrap_or_default(),
            ),
            status.and_then(|status| status.status).as_ref(),
            spec.node_name,
            identity.as_deref(),
            target,
            annotations
                .iter()
                .find(|(key, _)| key == RELEASING_ANNOTATION)
                .map(|(_, value)| value.as_str()),
        );
        Self {
            view,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            labels: pairs(metadata.labels),
            annotations,
            finalizers: metadata.finalizers.unwrap_or_default(),
            owner_references: metadata.owner_references.unwrap_or_default(),
            pod: spec.pod,
            pod_namespace: spec.pod_namespace,
            identity,
            binding,
        }
    }

    /// What the machine planning reads.
    pub fn view(&self) -> &AssignedView {
        &self.view
    }

    pub fn object(&self) -> &ObjectRef {
        &self.view.object
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }

    /// The resourceVersion as a number: etcd's revisions are, and comparing them is the only
    /// way to tell which of two views of an object is newer. Anything else counts as unknown.
    pub fn revision(&self) -> Option<u64> {
        self.resource_version.as_deref()?.parse().ok()
    }

    /// The metadata a write over this object sends: the resourceVersion (so a concurrent change
    /// fails the write), uid, labels, annotations, finalizers and owners. The API server keeps
    /// the creation timestamp, generation and managed fields of the stored object.
    pub fn metadata(&self) -> ObjectMeta {
        let map = |pairs: &[(String, String)]| {
            (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
        };
        ObjectMeta {
            name: Some(self.view.object.name.clone()),
            namespace: Some(self.view.object.namespace.clone()),
            uid: self.uid.clone(),
            resource_version: self.resource_version.clone(),
            labels: map(&self.labels),
            annotations: map(&self.annotations),
            finalizers: (!self.finalizers.is_empty()).then(|| self.finalizers.clone()),
            owner_references: (!self.owner_references.is_empty())
                .then(|| self.owner_references.clone()),
            ..ObjectMeta::default()
        }
    }
}

impl From<AzureAssignedIdentity> for AssignedRecord {
    /// A record that shares nothing (tests, one-off reads).
    fn from(object: AzureAssignedIdentity) -> Self {
        Self::new(object, &mut Embeds::default())
    }
}

fn pairs(map: Option<std::collections::BTreeMap<String, String>>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = map.unwrap_or_default().into_iter().collect();
    pairs.shrink_to_fit();
    pairs
}

/// Embedded identities and bindings already seen, so that equal ones are stored once. An entry
/// is found by the embedded object's namespace, name, uid and resourceVersion and used only if
/// the content is equal too (upstream's MIC serialises the same version slightly differently).
#[derive(Debug, Default)]
pub struct Embeds {
    identities: HashMap<EmbedKey, (Weak<AzureIdentity>, Option<IdentityTarget>)>,
    bindings: HashMap<EmbedKey, Weak<AzureIdentityBinding>>,
    /// Entries after the last sweep of dropped objects; the next runs once there are twice
    /// as many.
    swept_at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EmbedKey {
    object: ObjectRef,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl EmbedKey {
    fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        Self {
            object: ObjectRef::new(
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            ),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }
    }
}

impl Embeds {
    /// The shared copy of `identity` (managed fields dropped: nothing reads them), and its
    /// target, parsed once.
    fn identity(
        &mut self,
        mut identity: AzureIdentity,
    ) -> (Arc<AzureIdentity>, Option<IdentityTarget>) {
        identity.metadata.managed_fields = None;
        let key = EmbedKey::of(&identity);
        if let Some((seen, target)) = self.identities.get(&key)
            && let Some(seen) = seen.upgrade()
            && *seen == identity
        {
            return (seen, target.clone());
        }
        let target = IdentityTarget::of(&identity.spec).ok();
        let shared = Arc::new(identity);
        self.identities
            .insert(key, (Arc::downgrade(&shared), target.clone()));
        self.sweep();
        (shared, target)
    }

    /// The shared copy of `binding`, managed fields dropped.
    fn binding(&mut self, mut binding: AzureIdentityBinding) -> Arc<AzureIdentityBinding> {
        binding.metadata.managed_fields = None;
        let key = EmbedKey::of(&binding);
        if let Some(seen) = self.bindings.get(&key).and_then(Weak::upgrade)
            && *seen == binding
        {
            return seen;
        }
        let shared = Arc::new(binding);
        self.bindings.insert(key, Arc::downgrade(&shared));
        self.sweep();
        shared
    }

    /// Drops the entries of objects no record holds any more, once the maps have doubled.
    fn sweep(&mut self) {
        let entries = self.identities.len() + self.bindings.len();
        if entries < 2 * self.swept_at.max(64) {
            return;
        }
        self.identities
            .retain(|_, (seen, _)| seen.strong_count() > 0);
        self.bindings.retain(|_, seen| seen.strong_count() > 0);
        self.swept_at = self.identities.len() + self.bindings.len();
    }
}

#[cfg(test)]
mod tests {
    use podid_api::names::{ASSIGNED_IDENTITY_FINALIZER, ASSIGNED_IDENTITY_NODE_LABEL};

    use super::*;
    use crate::Progress;
    use crate::tests::fixtures::{binding, identity, pod, upstream_assigned};

    fn assigned(pod_name: &str, resource_version: &str) -> AzureAssignedIdentity {
        let mut identity = identity("apps", "id");
        identity.metadata.resource_version = Some(resource_version.into());
        upstream_assigned(
            &pod("apps", pod_name, "sel", "node-0"),
            &identity,
            &binding("apps", "b", "id", "sel"),
            "default",
            "Assigned",
        )
    }

    #[test]
    fn records_embedding_the_same_version_share_it() {
        let mut embeds = Embeds::default();
        let a = AssignedRecord::new(assigned("a", "1"), &mut embeds);
        let b = AssignedRecord::new(assigned("b", "1"), &mut embeds);
        let c = AssignedRecord::new(assigned("c", "2"), &mut embeds);
        let (a_id, b_id, c_id) = (
            a.identity.as_ref().unwrap(),
            b.identity.as_ref().unwrap(),
            c.identity.as_ref().unwrap(),
        );
        assert!(Arc::ptr_eq(a_id, b_id));
        assert!(!Arc::ptr_eq(a_id, c_id));
        assert!(Arc::ptr_eq(
            a.binding.as_ref().unwrap(),
            c.binding.as_ref().unwrap()
        ));
        assert_eq!(a.view().target, c.view().target);
        assert!(a.view().target.is_some());
    }

    #[test]
    fn an_equal_key_with_other_content_is_not_shared() {
        let mut embeds = Embeds::default();
        let a = AssignedRecord::new(assigned("a", "1"), &mut embeds);
        let mut other = assigned("b", "1");
        other
            .spec
            .azure_identity_ref
            .as_mut()
            .unwrap()
            .spec
            .client_id = Some("else".into());
        let b = AssignedRecord::new(other, &mut embeds);
        assert_eq!(
            b.identity.as_ref().unwrap().spec.client_id.as_deref(),
            Some("else")
        );
        assert!(!Arc::ptr_eq(
            a.identity.as_ref().unwrap(),
            b.identity.as_ref().unwrap()
        ));
    }

    #[test]
    fn dropped_embeds_are_swept() {
        let mut embeds = Embeds::default();
        for version in 0..200 {
            drop(AssignedRecord::new(
                assigned("a", &version.to_string()),
                &mut embeds,
            ));
        }
        assert!(embeds.identities.len() + embeds.bindings.len() < 200);
    }

    #[test]
    fn a_record_keeps_what_a_write_over_it_needs() {
        let mut object = assigned("a", "1");
        object.metadata.managed_fields = Some(vec![Default::default()]);
        object.metadata.annotations =
            Some([(RELEASING_ANNOTATION.to_owned(), "node-9 /x".to_owned())].into());
        let record = AssignedRecord::from(object);
        assert_eq!(record.view().progress, Progress::Assigned);
        assert_eq!(record.view().node.as_deref(), Some("node-0"));
        assert_eq!(record.label(ASSIGNED_IDENTITY_NODE_LABEL), Some("node-0"));
        assert_eq!(record.revision(), Some(4711));
        let meta = record.metadata();
        assert_eq!(meta.name.as_deref(), Some("a-apps-id"));
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        assert_eq!(meta.resource_version.as_deref(), Some("4711"));
        assert_eq!(meta.uid.as_deref(), Some("aai-uid"));
        assert_eq!(
            meta.finalizers,
            Some(vec![ASSIGNED_IDENTITY_FINALIZER.to_owned()])
        );
        assert_eq!(meta.annotations.unwrap()[RELEASING_ANNOTATION], "node-9 /x");
        assert_eq!(meta.managed_fields, None);
    }
}
