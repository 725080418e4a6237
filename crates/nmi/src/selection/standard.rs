//! Standard mode: the controller (MIC) records each pod's identities as AzureAssignedIdentities
//! and NMI serves only what is recorded for the pod on this node, waiting while an assignment
//! is `Created` but not yet `Assigned`.

use std::time::Duration;

use kube::ResourceExt;
use podid_api::{AssignedIdentityState, AzureAssignedIdentity, AzureIdentity, is_namespaced};

use crate::state::ObjectKey;

use super::{Selected, SelectionError, choose, matches_request, not_found};
use crate::request::RequestedIdentity;

/// Upstream's waiting: `--retry-attempts-for-created`, `--retry-attempts-for-assigned` and
/// `--find-identity-retry-interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Looks during which a pod with no matching AzureAssignedIdentity keeps waiting for one.
    pub created_attempts: u32,
    /// Further looks during which a `Created` one may still become `Assigned`.
    pub assigned_attempts: u32,
    pub interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            created_attempts: 16,
            assigned_attempts: 4,
            interval: Duration::from_secs(5),
        }
    }
}

/// What standard mode looks at for one request.
#[derive(Debug, Clone, Copy)]
pub struct StandardInputs<'a> {
    /// This node's name (`--node`).
    pub node: &'a str,
    pub pod_namespace: &'a str,
    pub pod_name: &'a str,
    /// The AzureAssignedIdentities NMI has cached (any node, any pod).
    pub assigned: &'a [AzureAssignedIdentity],
    /// `--forceNamespaced`: every identity serves only pods of its own namespace.
    pub force_namespaced: bool,
    /// The AzureIdentityBindings (namespace, name) whose selector is the pod's
    /// `aadpodidbinding` label now. An assignment counts only while its binding is among them,
    /// and when every one of them already has its assignment recorded, waiting cannot help.
    pub selecting_bindings: &'a [ObjectKey],
}

/// The outcome of one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Serve(Selected),
    /// Look again (`attempt + 1`) after this long; the server also stops when the client
    /// goes away.
    Wait(Duration),
    Fail(SelectionError),
}

/// Look number `attempt` (from 0) for the identity answering `requested` for the pod.
///
/// Upstream's rules: only AzureAssignedIdentities of this pod count, grouped by
/// `status.status`; the legacy empty status is served first, then `Assigned`; the first group
/// holding an identity that matches the request is the one served from. When none does, the
/// pod waits while a matching `Created` one exists, and for at most `created_attempts` looks
/// when none exists; after `created_attempts + assigned_attempts` looks it fails.
/// An assignment whose binding no longer selects the pod (its label changed, the binding was
/// deleted) is not served, even before the controller removes it (upstream served it until
/// then). A pod with nothing matching being assigned fails at the first look when no binding
/// selects it or every binding that does has its assignment recorded already (upstream made
/// it wait the 80 s of `created_attempts` for a 404).
///
/// Deviations, each documented in docs/nmi.md: assignments recorded for another node are
/// ignored; a namespaced identity outside the pod's namespace is dropped before grouping (upstream
/// dropped it after, and crashed when nothing was left); matching ignores case throughout;
/// the first identity is the first by namespace and name, not cache order; there is always at
/// least one look and no pause after the last.
pub fn select_standard(
    inputs: &StandardInputs,
    requested: &RequestedIdentity,
    retry: RetryPolicy,
    attempt: u32,
) -> Decision {
    if let RequestedIdentity::ObjectId(_) = requested {
        return Decision::Fail(SelectionError::ObjectIdNotSupported);
    }
    let pod = format!("{}/{}", inputs.pod_namespace, inputs.pod_name);
    let mut mine: Vec<(&AzureAssignedIdentity, &AzureIdentity)> = inputs
        .assigned
        .iter()
        .filter(|aai| is_for(aai, inputs) && still_bound(aai, inputs))
        .filter_map(|aai| Some((aai, aai.spec.azure_identity_ref.as_ref()?)))
        .filter(|(_, identity)| may_serve(identity, inputs))
        .collect();
    mine.sort_by_key(|(aai, _)| (aai.namespace(), aai.name_any()));

    let in_group = |group: Group| -> Vec<&AzureIdentity> {
        mine.iter()
            .filter(|(aai, _)| Group::of(aai) == Some(group))
            .map(|(_, identity)| *identity)
            .collect()
    };
    let holds_match =
        |identities: &[&AzureIdentity]| identities.iter().any(|i| matches_request(i, requested));
    for group in [Group::Legacy, Group::Assigned] {
        let identities = in_group(group);
        if holds_match(&identities) {
            return match choose(identities, requested, pod) {
                Ok(selected) => Decision::Serve(selected),
                Err(error) => Decision::Fail(error),
            };
        }
    }
    let being_assigned = holds_match(&in_group(Group::Created));
    let nothing_more_to_come = inputs.selecting_bindings.iter().all(|binding| {
        mine.iter()
            .any(|(aai, _)| binding_of(aai).as_ref() == Some(binding))
    });
    if !being_assigned && (nothing_more_to_come || attempt >= retry.created_attempts) {
        return Decision::Fail(not_found(pod, requested));
    }
    let looks = retry
        .created_attempts
        .saturating_add(retry.assigned_attempts);
    if attempt.saturating_add(1) >= looks {
        return Decision::Fail(SelectionError::NotYetAssigned { pod });
    }
    Decision::Wait(retry.interval)
}

/// The binding an assignment was made for, when it names one.
fn binding_of(aai: &AzureAssignedIdentity) -> Option<ObjectKey> {
    let binding = aai.spec.azure_binding_ref.as_ref()?;
    Some((binding.namespace()?, binding.metadata.name.clone()?))
}

/// Whether the assignment's binding still selects the pod. An assignment that names no
/// binding (hand-made or legacy) counts while any binding selects the pod.
fn still_bound(aai: &AzureAssignedIdentity, inputs: &StandardInputs) -> bool {
    match binding_of(aai) {
        Some(binding) => inputs.selecting_bindings.contains(&binding),
        None => !inputs.selecting_bindings.is_empty(),
    }
}

/// Whether the assignment is for this pod on this node.
fn is_for(aai: &AzureAssignedIdentity, inputs: &StandardInputs) -> bool {
    let spec = &aai.spec;
    spec.pod.as_deref() == Some(inputs.pod_name)
        && spec.pod_namespace.as_deref() == Some(inputs.pod_namespace)
        && spec.node_name.as_deref() == Some(inputs.node)
}

/// Whether the identity may serve a pod of this namespace.
fn may_serve(identity: &AzureIdentity, inputs: &StandardInputs) -> bool {
    let namespaced = inputs.force_namespaced || is_namespaced(identity);
    !namespaced || identity.namespace().as_deref() == Some(inputs.pod_namespace)
}

/// The groups upstream read, by `status.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// No status, or an empty one: written by very old controllers, served at once.
    Legacy,
    Assigned,
    Created,
}

impl Group {
    /// `None` for `Unassigned` and unknown states, which are never served.
    fn of(aai: &AzureAssignedIdentity) -> Option<Self> {
        match aai
            .status
            .as_ref()
            .and_then(|status| status.status.as_ref())
        {
            None => Some(Self::Legacy),
            Some(AssignedIdentityState::Other(other)) if other.is_empty() => Some(Self::Legacy),
            Some(AssignedIdentityState::Assigned) => Some(Self::Assigned),
            Some(AssignedIdentityState::Created) => Some(Self::Created),
            Some(AssignedIdentityState::Unassigned | AssignedIdentityState::Other(_)) => None,
        }
    }
}
