//! The checks behind each fuzz target, one module per target (`fuzz_targets/<name>.rs` only
//! calls `run`). Each `run` must not panic for any input; where the input allows it, it also
//! asserts an invariant (docs/fuzzing.md lists them).

pub mod api_decode;
pub mod azure_wire;
pub mod cloud_config;
pub mod matching;
pub mod nmi_request;
pub mod resource_id;

/// Splits `data` at the first `\0`: several inputs in one (the rest is empty without one).
pub(crate) fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}
