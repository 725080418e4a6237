//! The `aadpodidentity.k8s.io/v1` custom resources of AAD Pod Identity, wire-compatible with
//! upstream v1.8: AzureIdentity, AzureIdentityBinding, AzureAssignedIdentity and
//! AzurePodIdentityException, their CRDs with apply-time checks (refusals in the CRDs, warnings
//! in ValidatingAdmissionPolicies), the well-known names, and the small pure rules the
//! controller and the node agent share.

mod assigned;
mod binding;
mod cel;
mod crd;
mod exception;
mod identity;
mod kind;
pub mod legacy;
mod manifests;
pub mod names;
mod policy;
pub mod rules;
pub mod warnings;
#[cfg(test)]
mod wire_tests;

pub use assigned::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus,
};
pub use binding::{AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentityBindingStatus};
pub use crd::crds;
pub use exception::{
    AzurePodIdentityException, AzurePodIdentityExceptionSpec, AzurePodIdentityExceptionStatus,
    is_pod_excepted,
};
pub use identity::{
    AzureIdentity, AzureIdentitySpec, AzureIdentityStatus, IdentityType, RESOURCE_ID_PATTERN,
    is_namespaced, is_valid_resource_id,
};
pub use kind::SpecKind;
pub use manifests::{Manifest, WARNING_POLICIES_FILE, manifests, manifests_yaml};
pub use policy::{WarningPolicy, warning_policies};
