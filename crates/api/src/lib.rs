//! The `aadpodidentity.k8s.io/v1` custom resources of AAD Pod Identity, wire-compatible with
//! upstream v1.8: AzureIdentity, AzureIdentityBinding, AzureAssignedIdentity and
//! AzurePodIdentityException, their CRDs (with apply-time validation), the well-known names,
//! and the small pure rules the controller and the node agent share.

mod assigned;
mod binding;
mod crd;
mod exception;
mod identity;
pub mod names;
pub mod rules;
#[cfg(test)]
mod wire_tests;

pub use assigned::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus,
};
pub use binding::{AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentityBindingStatus};
pub use crd::{CrdManifest, crd_manifests, crds, crds_yaml};
pub use exception::{
    AzurePodIdentityException, AzurePodIdentityExceptionSpec, AzurePodIdentityExceptionStatus,
    is_pod_excepted,
};
pub use identity::{
    AzureIdentity, AzureIdentitySpec, AzureIdentityStatus, IdentityType, RESOURCE_ID_PATTERN,
    is_namespaced, is_valid_resource_id,
};
