//! The CRDs against a real kube-apiserver (started by `podid-testkit`): installation, the user's
//! seed manifests, apply-time validation, the controller's AzureAssignedIdentity wire format and
//! RBAC. One test binary, so one control plane serves all of them.

#[path = "apiserver/assigned.rs"]
mod assigned;
#[path = "apiserver/json.rs"]
mod json;
#[path = "apiserver/rbac.rs"]
mod rbac;
#[path = "apiserver/seed.rs"]
mod seed;
#[path = "apiserver/validation.rs"]
mod validation;
