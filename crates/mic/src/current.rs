//! Existing AzureAssignedIdentities as the Azure side of MIC needs them: where the identity
//! is, which one, and how far its assignment went.

use podid_api::{AssignedIdentityState, AzureAssignedIdentity, AzureIdentity};

use crate::releasing::{RELEASING_ANNOTATION, Releasing, parse_releasing};
use crate::{IdentityTarget, ObjectRef};

/// How far an AzureAssignedIdentity's assignment went, by `status.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No status or an empty one: written by a MIC older than 1.6, which had no `Created`.
    /// The node agent serves it like `Assigned`, and MIC treats it so.
    Legacy,
    /// Recorded; the identity is not confirmed on the machine yet.
    Created,
    /// The identity is on the machine.
    Assigned,
    /// No longer wanted; the record stays until MIC has removed the identity from the machine
    /// or decided not to. **deviation:** upstream wrote `Unassigned` only after the removal,
    /// just before deleting; podid writes it when the assignment ends, so the node agent stops
    /// serving at once rather than after ARM answers (and, with the grace period, later).
    Unassigned,
    /// A status no MIC writes; kept as it is.
    Unrecognised(String),
}

impl Progress {
    pub fn of(status: Option<&AssignedIdentityState>) -> Self {
        match status {
            None => Self::Legacy,
            Some(AssignedIdentityState::Created) => Self::Created,
            Some(AssignedIdentityState::Assigned) => Self::Assigned,
            Some(AssignedIdentityState::Unassigned) => Self::Unassigned,
            Some(AssignedIdentityState::Other(text)) if text.is_empty() => Self::Legacy,
            Some(AssignedIdentityState::Other(text)) => Self::Unrecognised(text.clone()),
        }
    }

    /// Whether the identity was confirmed on the machine by a MIC, so that MIC added it and
    /// may remove it. `Created` is not: the identity may have been there before (upstream
    /// never removed identities for `Created` objects either).
    pub fn owns_identity(&self) -> bool {
        matches!(self, Self::Legacy | Self::Assigned | Self::Unassigned)
    }
}

/// The parts of an existing AzureAssignedIdentity the machine planning reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedView {
    pub object: ObjectRef,
    pub progress: Progress,
    pub node: Option<String>,
    /// From the embedded identity; `None` when it is missing or has no usable target (such an
    /// object never had its identity assigned by MIC).
    pub target: Option<IdentityTarget>,
    pub client_id: Option<String>,
    /// Identities of earlier contents of the object still to be released.
    pub releasing: Vec<Releasing>,
}

impl AssignedView {
    pub fn of(assigned: &AzureAssignedIdentity) -> Self {
        let identity = assigned.spec.azure_identity_ref.as_ref();
        Self::from_parts(
            ObjectRef::of(assigned),
            assigned
                .status
                .as_ref()
                .and_then(|status| status.status.as_ref()),
            assigned.spec.node_name.clone(),
            identity,
            identity.and_then(|identity| IdentityTarget::of(&identity.spec).ok()),
            assigned
                .metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(RELEASING_ANNOTATION))
                .map(String::as_str),
        )
    }

    /// The view from an object's parts; `target` is that of `identity` (the caller may have
    /// it parsed already).
    pub(crate) fn from_parts(
        object: ObjectRef,
        status: Option<&AssignedIdentityState>,
        node: Option<String>,
        identity: Option<&AzureIdentity>,
        target: Option<IdentityTarget>,
        releasing: Option<&str>,
    ) -> Self {
        Self {
            object,
            progress: Progress::of(status),
            node: node.filter(|node| !node.is_empty()),
            target,
            client_id: identity.and_then(|identity| identity.spec.client_id.clone()),
            releasing: releasing.map(parse_releasing).unwrap_or_default(),
        }
    }

    /// The identity this object holds on its node's machine: its own, when confirmed there.
    pub fn owned(&self) -> Option<Releasing> {
        if !self.progress.owns_identity() {
            return None;
        }
        Some(Releasing {
            node: self.node.clone()?,
            resource_id: self.target.as_ref()?.resource_id()?.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use podid_api::{AzureAssignedIdentitySpec, AzureAssignedIdentityStatus};
    use serde_json::json;

    use super::*;

    #[test]
    fn every_upstream_status_value_maps_to_its_progress() {
        for (status, progress) in [
            (None, Progress::Legacy),
            (Some(""), Progress::Legacy),
            (Some("Created"), Progress::Created),
            (Some("Assigned"), Progress::Assigned),
            (Some("Unassigned"), Progress::Unassigned),
            (Some("assigned"), Progress::Unrecognised("assigned".into())),
        ] {
            let state = status.map(|s| AssignedIdentityState::from(s.to_owned()));
            assert_eq!(Progress::of(state.as_ref()), progress, "{status:?}");
        }
    }

    #[test]
    fn only_confirmed_assignments_own_their_identity() {
        assert!(Progress::Legacy.owns_identity());
        assert!(Progress::Assigned.owns_identity());
        assert!(Progress::Unassigned.owns_identity());
        assert!(!Progress::Created.owns_identity());
        assert!(!Progress::Unrecognised("x".into()).owns_identity());
    }

    #[test]
    fn a_view_reads_an_upstream_object() {
        let assigned: AzureAssignedIdentity = serde_json::from_value(json!({
            "apiVersion": "aadpodidentity.k8s.io/v1",
            "kind": "AzureAssignedIdentity",
            "metadata": {"name": "demo-default-demo", "namespace": "default"},
            "spec": {
                "azureIdentityRef": {
                    "apiVersion": "aadpodidentity.k8s.io/v1",
                    "kind": "AzureIdentity",
                    "metadata": {"name": "demo", "namespace": "default"},
                    "spec": {
                        "type": 0,
                        "resourceID": "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo",
                        "clientID": "c-1"
                    }
                },
                "pod": "demo", "podNamespace": "default", "nodename": "node-0"
            },
            "status": {"status": "Assigned", "availableReplicas": 1}
        }))
        .unwrap();
        let view = AssignedView::of(&assigned);
        assert_eq!(view.object, ObjectRef::new("default", "demo-default-demo"));
        assert_eq!(view.progress, Progress::Assigned);
        assert_eq!(view.node.as_deref(), Some("node-0"));
        assert_eq!(view.client_id.as_deref(), Some("c-1"));
        assert_eq!(
            view.target
                .as_ref()
                .and_then(IdentityTarget::resource_id)
                .map(|id| id.name().to_owned()),
            Some("demo".into())
        );
    }

    #[test]
    fn a_view_of_an_object_without_identity_has_no_target() {
        let mut assigned =
            AzureAssignedIdentity::new("orphan", AzureAssignedIdentitySpec::default());
        assigned.status = Some(AzureAssignedIdentityStatus::default());
        let view = AssignedView::of(&assigned);
        assert_eq!(view.target, None);
        assert_eq!(view.node, None);
        assert_eq!(view.progress, Progress::Legacy);
    }
}
