//! Tests of the decisions together, one per upstream rule, and the invariants across them.

mod desired;
mod fixtures;
mod invariants;
mod machine;
mod reconcile;
mod settle;
