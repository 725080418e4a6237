//! Why an object contributed nothing to the desired state. Typed, so that the controller can
//! turn each into a log line, a metric or an event on the right object; `Display` gives the
//! message.

use crate::ObjectRef;

/// One skipped object and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Diagnostic {
    #[error("AzureIdentity {identity} is ignored: {problem}")]
    Identity {
        identity: ObjectRef,
        problem: IdentityProblem,
    },
    #[error("AzureIdentityBinding {binding} has no effect: {problem}")]
    Binding {
        binding: ObjectRef,
        problem: BindingProblem,
    },
    #[error("node {node} has no VM or scale set: {problem}")]
    Node { node: String, problem: NodeProblem },
    #[error("pod {pod}: {problem}")]
    Pod { pod: ObjectRef, problem: PodProblem },
    /// Two matches produce the same AzureAssignedIdentity name; the first in (pod, binding)
    /// order is kept, so the choice does not change from one cycle to the next.
    #[error(
        "AzureAssignedIdentity {name} for pod {pod} from binding {dropped} is skipped: the name is already used by pod {kept_pod} with binding {kept}"
    )]
    DuplicateName {
        name: String,
        pod: ObjectRef,
        dropped: ObjectRef,
        kept_pod: ObjectRef,
        kept: ObjectRef,
    },
}

/// Why an AzureIdentity cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityProblem {
    #[error("a user-assigned identity (type 0) needs spec.resourceID")]
    MissingResourceId,
    #[error("spec.resourceID {resource_id:?} is not an ARM resource ID: {reason}")]
    InvalidResourceId {
        resource_id: String,
        reason: &'static str,
    },
    #[error("spec.resourceID {resource_id:?} is not a user-assigned managed identity")]
    NotUserAssignedIdentity { resource_id: String },
}

/// Why an AzureIdentityBinding matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingProblem {
    #[error("spec.selector is empty, and pods with an empty aadpodidbinding label are ignored")]
    NoSelector,
    #[error("spec.azureIdentity is empty")]
    NoIdentityName,
    #[error("AzureIdentity {identity} does not exist")]
    IdentityNotFound { identity: ObjectRef },
    #[error("AzureIdentity {identity} cannot be used (see its own diagnostic)")]
    IdentityUnusable { identity: ObjectRef },
}

/// Why a node maps to no VM or scale set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeProblem {
    #[error("spec.providerID is empty")]
    NoProviderId,
    #[error("spec.providerID {provider_id:?} is not an Azure provider ID: {reason}")]
    UnparsableProviderId {
        provider_id: String,
        reason: &'static str,
    },
    #[error("spec.providerID {provider_id:?} names neither a VM nor a scale-set instance")]
    NotAMachine { provider_id: String },
}

/// Why a labelled, scheduled pod gets no (or not every) AzureAssignedIdentity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodProblem {
    #[error("no AzureIdentityBinding has the selector {selector:?} of its aadpodidbinding label")]
    NoMatchingBinding { selector: String },
    #[error("its node {node} is not known, so it gets no identity")]
    NodeNotFound { node: String },
    #[error(
        "binding {binding} is ignored: its identity is namespaced and the pod is in another namespace"
    )]
    BindingInOtherNamespace { binding: ObjectRef },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_object_and_the_reason() {
        let diagnostic = Diagnostic::Binding {
            binding: ObjectRef::new("team", "demo-binding"),
            problem: BindingProblem::IdentityNotFound {
                identity: ObjectRef::new("team", "demo"),
            },
        };
        assert_eq!(
            diagnostic.to_string(),
            "AzureIdentityBinding team/demo-binding has no effect: AzureIdentity team/demo does not exist"
        );
        let diagnostic = Diagnostic::Node {
            node: "kind-worker".into(),
            problem: NodeProblem::UnparsableProviderId {
                provider_id: "kind://docker/kind/kind-worker".into(),
                reason: "a provider ID starts with azure://",
            },
        };
        assert_eq!(
            diagnostic.to_string(),
            "node kind-worker has no VM or scale set: spec.providerID \"kind://docker/kind/kind-worker\" is not an Azure provider ID: a provider ID starts with azure://"
        );
    }
}
