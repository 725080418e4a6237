//! The admin API (plain HTTP on loopback): fault rules, the request journal and counters, the
//! clock, knobs, a world snapshot, and reset. Documented in docs/emulator.md.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{FaultRuleSpec, Surface};
use crate::knobs::Knobs;
use crate::state::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/health", get(|| async { "ok" }))
        .route("/admin/endpoints", get(endpoints))
        .route(
            "/admin/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/admin/faults/{id}", delete(remove_fault))
        .route("/admin/journal", get(journal).delete(clear_journal))
        .route("/admin/counters", get(counters))
        .route("/admin/clock", get(clock).post(advance_clock))
        .route("/admin/knobs", get(knobs).patch(patch_knobs))
        .route("/admin/reset", post(reset))
        .merge(crate::arm::admin_routes())
        .merge(crate::entra::admin_routes())
        .with_state(shared)
}

/// An admin API error: a status and a sentence saying what is wrong.
pub struct AdminError(pub StatusCode, pub String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Parses a JSON body, answering 400 with serde's description of what is wrong.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

async fn endpoints(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.endpoints()))
}

async fn add_fault(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    let spec: FaultRuleSpec = parse_body(&body)?;
    let rule = s
        .faults
        .add(spec)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!(rule))).into_response())
}

async fn list_faults(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.faults.list()))
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(
    State(s): State<Arc<Shared>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, AdminError> {
    if s.faults.remove(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no fault rule with id {id}"),
        ))
    }
}

#[derive(Deserialize)]
struct JournalQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    surface: Option<Surface>,
}

async fn journal(State(s): State<Arc<Shared>>, Query(q): Query<JournalQuery>) -> Json<Value> {
    Json(json!(s.journal.entries(q.since, q.surface)))
}

async fn clear_journal(State(s): State<Arc<Shared>>) -> StatusCode {
    s.journal.clear();
    StatusCode::NO_CONTENT
}

async fn counters(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.journal.counts()))
}

async fn clock(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "now": s.clock.unix(), "offsetSeconds": s.clock.offset().as_secs() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdvanceClock {
    advance_seconds: u64,
}

async fn advance_clock(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: AdvanceClock = parse_body(&body)?;
    s.clock
        .advance(std::time::Duration::from_secs(req.advance_seconds));
    Ok(clock(State(s)).await)
}

async fn knobs(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(s.knobs()))
}

/// A JSON merge patch (RFC 7386) over the current knobs; the result must still be valid knobs.
async fn patch_knobs(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    let patch: Value = parse_body(&body)?;
    let mut current = json!(s.knobs());
    merge(&mut current, &patch);
    let knobs: Knobs = serde_json::from_value(current)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, format!("invalid knobs: {e}")))?;
    s.set_knobs(knobs);
    Ok(Json(json!(s.knobs())))
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

async fn reset(State(s): State<Arc<Shared>>) -> Result<StatusCode, AdminError> {
    s.reset()
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_replaces_nested_values_and_removes_nulls() {
        let mut v = json!({"imds": {"a": 1, "b": 2}, "arm": {"c": 3}});
        merge(&mut v, &json!({"imds": {"a": 5, "b": null}}));
        assert_eq!(v, json!({"imds": {"a": 5}, "arm": {"c": 3}}));
    }
}
