//! Tests of the decisions together, one per upstream rule, and the invariants across them.

mod desired;
pub(crate) mod fixtures;
mod invariants;
mod machine;
mod reconcile;
mod settle;
