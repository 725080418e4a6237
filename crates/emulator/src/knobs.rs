//! Behaviour knobs, one group per surface. Set in the world file under `knobs:` and changed at
//! run time with `PATCH /admin/knobs` (a JSON merge of the same shape).

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::arm::ArmKnobs;
pub use crate::entra::EntraKnobs;
pub use crate::imds::ImdsKnobs;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Knobs {
    pub imds: ImdsKnobs,
    pub arm: ArmKnobs,
    pub entra: EntraKnobs,
}

/// A merge patch that would leave the knobs invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid knobs: {0}")]
pub struct InvalidKnobs(#[from] serde_json::Error);

impl Knobs {
    /// The knobs after a JSON merge patch (RFC 7386): objects merge, `null` removes (the knob
    /// goes back to its default), anything else replaces. The result must be valid knobs as a
    /// whole; `self` is never changed, so a refused patch changes nothing.
    pub fn merged(&self, patch: &Value) -> Result<Knobs, InvalidKnobs> {
        let mut value = serde_json::to_value(self)?;
        merge(&mut value, patch);
        Ok(serde_json::from_value(value)?)
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_replaces_nested_values_and_removes_nulls() {
        let mut v = json!({"imds": {"a": 1, "b": 2}, "arm": {"c": 3}});
        merge(&mut v, &json!({"imds": {"a": 5, "b": null}}));
        assert_eq!(v, json!({"imds": {"a": 5}, "arm": {"c": 3}}));
    }

    #[test]
    fn a_merged_patch_changes_only_what_it_names() {
        let mut knobs = Knobs::default();
        knobs.imds.max_concurrent = 9;
        let merged = knobs
            .merged(&json!({"arm": {"lroDurationMs": 7}, "imds": {"maxConcurrent": null}}))
            .expect("valid");
        let mut expected = Knobs::default();
        expected.arm.lro_duration_ms = 7;
        assert_eq!(merged, expected);
    }

    #[test]
    fn an_invalid_patch_is_refused_as_a_whole() {
        let knobs = Knobs::default();
        for patch in [
            json!({"arm": {"lroDurationMs": 7}, "imds": {"tokenVersion": 3}}),
            json!({"arm": {"lroDurationMs": -1}}),
            json!({"nope": 1}),
            json!([1]),
        ] {
            assert!(knobs.merged(&patch).is_err(), "{patch}");
        }
    }
}
