//! A desired AzureAssignedIdentity, how it is written, and when an existing object already
//! records it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::SecretReference;
use kube::ResourceExt;
use podid_api::names::{ASSIGNED_IDENTITY_FINALIZER, ASSIGNED_IDENTITY_NODE_LABEL};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, is_namespaced,
};

use crate::releasing::{RELEASING_ANNOTATION, Releasing, format_releasing};
use crate::{AssignedRecord, IdentityTarget, ObjectRef};

/// One pod matched to one identity through one binding: an AzureAssignedIdentity MIC wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Where the AzureAssignedIdentity lives (`default`, or the identity's namespace when
    /// namespaced) and its name (`<pod>-<podNamespace>-<identity>`).
    pub object: ObjectRef,
    pub pod: ObjectRef,
    pub node: String,
    /// The identity and binding as read, embedded whole: the node agent reads the snapshot.
    /// Shared with the watch caches and every assignment of the same identity or binding.
    pub identity: Arc<AzureIdentity>,
    pub binding: Arc<AzureIdentityBinding>,
    pub target: IdentityTarget,
}

impl Assignment {
    /// The identity's `clientID`, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.identity.spec.client_id.as_deref()
    }

    /// The new object to create: status `Created`, the `nodename` label and the finalizer.
    pub fn to_resource(&self) -> AzureAssignedIdentity {
        let mut object = AzureAssignedIdentity::new(&self.object.name, self.spec());
        object.metadata.namespace = Some(self.object.namespace.clone());
        self.label_and_finalize(&mut object);
        object.status = Some(created_status());
        object
    }

    /// The object that replaces `current` (same name, other content): `current`'s metadata
    /// (resourceVersion included, so a concurrent change fails the write), this spec, and
    /// status `Created` again because the identity must be confirmed anew. An identity the
    /// old content held on its machine and this one does not is listed in the releasing
    /// annotation, so MIC still removes it later.
    pub fn replacing(&self, current: &AssignedRecord) -> AzureAssignedIdentity {
        let mut object = AzureAssignedIdentity {
            metadata: current.metadata(),
            spec: self.spec(),
            status: Some(created_status()),
        };
        self.label_and_finalize(&mut object);
        let old = current.view();
        let kept = self.target.resource_id().map(|id| Releasing {
            node: self.node.clone(),
            resource_id: id.clone(),
        });
        let mut releasing = old.releasing.clone();
        releasing.extend(old.owned().filter(|owned| Some(owned) != kept.as_ref()));
        match format_releasing(&releasing) {
            Some(value) => {
                object
                    .annotations_mut()
                    .insert(RELEASING_ANNOTATION.to_owned(), value);
            }
            None => {
                object.annotations_mut().remove(RELEASING_ANNOTATION);
            }
        }
        object
    }

    /// Whether `current` already records this assignment, so it is kept as it is.
    ///
    /// Compared: the object's namespace and name, pod, pod namespace, node (field and label),
    /// and of the embedded identity and binding their namespace, name and every spec field a
    /// reader uses, plus the identity's namespaced annotation. Not compared: resourceVersions,
    /// uids and other metadata. **deviation:** upstream compared the embedded resourceVersions,
    /// so any edit of an identity or binding, a label or annotation included, rewrote the
    /// object and reset it to `Created`, and the node agent made the pod wait again. Objects
    /// written by upstream are recognised, so a cluster moving over keeps them.
    pub fn is_recorded_by(&self, current: &AssignedRecord) -> bool {
        let view = current.view();
        view.object == self.object
            && current.pod.as_deref() == Some(self.pod.name.as_str())
            && current.pod_namespace.as_deref() == Some(self.pod.namespace.as_str())
            && view.node.as_deref() == Some(self.node.as_str())
            && current.label(ASSIGNED_IDENTITY_NODE_LABEL) == Some(self.node.as_str())
            && current
                .identity
                .as_ref()
                .is_some_and(|identity| same_identity(identity, &self.identity))
            && current
                .binding
                .as_ref()
                .is_some_and(|binding| same_binding(binding, &self.binding))
    }

    fn spec(&self) -> AzureAssignedIdentitySpec {
        let mut identity = AzureIdentity::clone(&self.identity);
        let mut binding = AzureIdentityBinding::clone(&self.binding);
        // Field-manager bookkeeping is of no use to any reader and can be most of the size.
        identity.metadata.managed_fields = None;
        binding.metadata.managed_fields = None;
        AzureAssignedIdentitySpec {
            azure_identity_ref: Some(identity),
            azure_binding_ref: Some(binding),
            pod: Some(self.pod.name.clone()),
            pod_namespace: Some(self.pod.namespace.clone()),
            node_name: Some(self.node.clone()),
            replicas: None,
        }
    }

    fn label_and_finalize(&self, object: &mut AzureAssignedIdentity) {
        object
            .labels_mut()
            .insert(ASSIGNED_IDENTITY_NODE_LABEL.to_owned(), self.node.clone());
        if !object
            .finalizers()
            .iter()
            .any(|f| f == ASSIGNED_IDENTITY_FINALIZER)
        {
            object
                .finalizers_mut()
                .push(ASSIGNED_IDENTITY_FINALIZER.to_owned());
        }
    }
}

fn created_status() -> AzureAssignedIdentityStatus {
    AzureAssignedIdentityStatus {
        status: Some(AssignedIdentityState::Created),
        available_replicas: Some(1),
    }
}

fn same_identity(embedded: &AzureIdentity, live: &AzureIdentity) -> bool {
    ObjectRef::of(embedded) == ObjectRef::of(live)
        && is_namespaced(embedded) == is_namespaced(live)
        && identity_essentials(&embedded.spec) == identity_essentials(&live.spec)
}

fn same_binding(embedded: &AzureIdentityBinding, live: &AzureIdentityBinding) -> bool {
    ObjectRef::of(embedded) == ObjectRef::of(live)
        && binding_essentials(&embedded.spec) == binding_essentials(&live.spec)
}

/// The spec as its readers see it: an omitted type is 0, an empty string or list is absent
/// (upstream wrote neither), and the fields nothing reads (`adResourceID`, `replicas`) are left
/// out.
fn identity_essentials(spec: &AzureIdentitySpec) -> AzureIdentitySpec {
    // Starting from a copy, a field added to the spec later is compared as it is.
    let mut essentials = spec.clone();
    essentials.identity_type = Some(spec.identity_type());
    essentials.resource_id = non_empty(&spec.resource_id);
    essentials.client_id = non_empty(&spec.client_id);
    essentials.client_password = spec
        .client_password
        .as_ref()
        .map(|secret| SecretReference {
            name: non_empty(&secret.name),
            namespace: non_empty(&secret.namespace),
        })
        .filter(|secret| secret != &SecretReference::default());
    essentials.tenant_id = non_empty(&spec.tenant_id);
    essentials.auxiliary_tenant_ids = spec
        .auxiliary_tenant_ids
        .clone()
        .filter(|ids| !ids.is_empty());
    essentials.ad_endpoint = non_empty(&spec.ad_endpoint);
    essentials.ad_resource_id = None;
    essentials.replicas = None;
    essentials
}

/// `weight` is not compared: nothing reads it.
fn binding_essentials(spec: &AzureIdentityBindingSpec) -> (Option<String>, Option<String>) {
    (non_empty(&spec.azure_identity), non_empty(&spec.selector))
}

fn non_empty(text: &Option<String>) -> Option<String> {
    text.clone().filter(|t| !t.is_empty())
}
