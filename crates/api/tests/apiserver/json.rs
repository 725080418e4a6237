//! JSON comparisons shared by the API server tests.

use serde_json::Value;

/// Every key and value of `expected` is present and equal in `actual` (which may carry more, such
/// as server defaults); arrays must match element by element.
pub fn missing_from(expected: &Value, actual: &Value, path: &str) -> Vec<String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .flat_map(|(key, value)| match got.get(key) {
                Some(found) => missing_from(value, found, &format!("{path}.{key}")),
                None => vec![format!("{path}.{key} is gone")],
            })
            .collect(),
        (Value::Array(want), Value::Array(got)) if want.len() == got.len() => want
            .iter()
            .zip(got)
            .enumerate()
            .flat_map(|(i, (w, g))| missing_from(w, g, &format!("{path}[{i}]")))
            .collect(),
        _ if expected == actual => Vec::new(),
        _ => vec![format!("{path}: sent {expected}, got {actual}")],
    }
}

#[test]
fn missing_from_reports_paths() {
    let sent = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
    let got = serde_json::json!({"a": {"b": 1, "c": [1, 3], "extra": true}});
    assert_eq!(
        missing_from(&sent, &got, "spec"),
        ["spec.a.c[1]: sent 2, got 3", "spec.d is gone"]
    );
    assert!(missing_from(&sent, &sent, "spec").is_empty());
}
