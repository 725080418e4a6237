//! podid's controller (MIC): the decisions, as pure functions of state.
//!
//! MIC matches pods to AzureIdentityBindings and AzureIdentities, records each match as an
//! AzureAssignedIdentity, and puts user-assigned identities on the VMs and VM scale sets that
//! run the pods. Every decision is here, with no Kubernetes or ARM call and no clock, so the
//! controller is a loop around them (docs/mic.md):
//!
//! 1. [`desired`]: pods, bindings, identities and nodes → the AzureAssignedIdentities wanted,
//!    with a typed [`Diagnostic`] for every object that contributed nothing;
//! 2. [`reconcile`]: existing AzureAssignedIdentities and the desired ones → the objects to
//!    create, replace, delete, and the status changes;
//! 3. [`plan_machines`]: per VM or scale set, the identities to add and to remove (an
//!    [`IdentityChange`](podid_azure::arm::IdentityChange) for `podid_azure::arm::plan_update`),
//!    never removing identities still needed, not added by MIC, immutable or the cluster's,
//!    and only after a grace period;
//! 4. [`settle`]: once a machine's identities are known after the write, which objects become
//!    `Assigned` and which can go.
//!
//! Around them, with the I/O: [`controller`] (watches, the cycle, the Kubernetes writer, the
//! per-machine ARM workers, events), [`azure`] (cloud config and ARM client), [`metrics`],
//! [`http`] (`/healthz`, `/metrics`) and [`flags`] (the `mic` command line).

mod assignment;
pub mod azure;
pub mod controller;
mod current;
pub mod desired;
pub mod diagnostics;
pub mod flags;
pub mod http;
mod inputs;
pub mod machine;
pub mod metrics;
mod nodes;
mod object_ref;
pub mod reconcile;
mod record;
pub mod releasing;
pub mod settle;
mod target;

pub use assignment::Assignment;
pub use current::{AssignedView, Progress};
pub use desired::{DesiredState, MatchOptions, desired};
pub use diagnostics::Diagnostic;
pub use inputs::{NodeInfo, PodInfo, PodPhase};
pub use machine::{MachinePlan, MachinePolicy, plan_machines};
pub use nodes::NodeIndex;
pub use object_ref::ObjectRef;
pub use reconcile::{AssignmentPlan, StatusChange, reconcile};
pub use record::{AssignedRecord, Embeds};
pub use settle::{Settlement, Waiting, settle};
pub use target::IdentityTarget;

#[cfg(test)]
mod tests;
