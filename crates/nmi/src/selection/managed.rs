//! Managed mode: no controller and no AzureAssignedIdentities. The operator puts identities on
//! the machines; NMI matches the pod to bindings and identities of its own namespace and
//! answers at once.

use std::collections::BTreeSet;

use kube::ResourceExt;
use podid_api::names::POD_LABEL_KEY;
use podid_api::{AzureIdentity, AzureIdentityBinding};

use super::{Selected, SelectionError, choose};
use crate::pods::PodFacts;
use crate::request::RequestedIdentity;

/// The identity answering `requested` for `pod`: among the identities of the pod's namespace
/// named by a binding of that namespace whose `selector` equals the pod's `aadpodidbinding`
/// label, the first (by name) that the request names.
///
/// Deviation: a pod without the label (or with an empty one) gets nothing; upstream read the
/// missing label as `""` and matched it to bindings without a selector.
pub fn select_managed(
    pod: &PodFacts,
    requested: &RequestedIdentity,
    bindings: &[AzureIdentityBinding],
    identities: &[AzureIdentity],
) -> Result<Selected, SelectionError> {
    if let RequestedIdentity::ObjectId(_) = requested {
        return Err(SelectionError::ObjectIdNotSupported);
    }
    let in_pod_namespace = |namespace: Option<String>| namespace.as_deref() == Some(&pod.namespace);
    let label = pod
        .labels
        .get(POD_LABEL_KEY)
        .map(String::as_str)
        .filter(|value| !value.is_empty());
    let bound: BTreeSet<&str> = bindings
        .iter()
        .filter(|binding| in_pod_namespace(binding.namespace()))
        .filter(|binding| label.is_some() && binding.spec.selector.as_deref() == label)
        .filter_map(|binding| binding.spec.azure_identity.as_deref())
        .collect();
    let candidates: Vec<&AzureIdentity> = identities
        .iter()
        .filter(|identity| in_pod_namespace(identity.namespace()))
        .filter(|identity| bound.contains(identity.name_any().as_str()))
        .collect();
    choose(candidates, requested, pod.key())
}
