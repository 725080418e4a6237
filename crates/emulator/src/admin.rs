//! The admin API (plain HTTP on loopback): fault rules and the requests they hold, the request
//! journal and counters, the clock, knobs, a world snapshot, and reset. Documented in
//! docs/emulator.md.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::ClockMode;
use crate::faults::{FaultRuleSpec, Surface};
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
        .route("/admin/held", get(held))
        .route("/admin/held/release", post(release_held))
        .route("/admin/held/{id}/release", post(release_one))
        .route("/admin/journal", get(journal).delete(clear_journal))
        .route("/admin/counters", get(counters))
        .route("/admin/clock", get(clock).post(change_clock))
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HeldQuery {
    /// Only requests held by this rule.
    #[serde(default)]
    rule: Option<u64>,
    /// Answer only once this many are held (or the wait is over).
    #[serde(default)]
    at_least: Option<usize>,
    #[serde(default = "default_hold_wait")]
    wait_seconds: u64,
}

fn default_hold_wait() -> u64 {
    30
}

/// The longest a `GET /admin/held?atLeast=` may wait, so no admin request hangs for ever.
const MAX_HOLD_WAIT_SECS: u64 = 600;

async fn held(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HeldQuery>,
) -> Result<Json<Value>, AdminError> {
    let holds = s.faults.holds();
    let Some(at_least) = q.at_least else {
        return Ok(Json(json!(holds.list(q.rule))));
    };
    let wait = std::time::Duration::from_secs(q.wait_seconds.min(MAX_HOLD_WAIT_SECS));
    match holds.wait_for(at_least, q.rule, wait).await {
        Ok(held) => Ok(Json(json!(held))),
        Err(held) => Err(AdminError(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "{} request(s) held after waiting {} s, expected at least {at_least}",
                held.len(),
                wait.as_secs()
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReleaseQuery {
    #[serde(default)]
    rule: Option<u64>,
}

async fn release_held(State(s): State<Arc<Shared>>, Query(q): Query<ReleaseQuery>) -> Json<Value> {
    Json(json!({ "released": s.faults.holds().release_where(q.rule) }))
}

async fn release_one(
    State(s): State<Arc<Shared>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, AdminError> {
    if s.faults.holds().release(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no held request with id {id}"),
        ))
    }
}

async fn clock(State(s): State<Arc<Shared>>) -> Json<Value> {
    let now = s.clock.now();
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Json(json!({
        "now": crate::clock::unix_seconds(now),
        "nowMs": now_ms,
        "mode": s.clock.mode(),
        "offsetSeconds": s.clock.advanced().as_secs(),
    }))
}

/// `POST /admin/clock`: move forward by seconds and/or milliseconds, and/or switch mode.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClockChange {
    #[serde(default)]
    advance_seconds: Option<u64>,
    #[serde(default)]
    advance_ms: Option<u64>,
    #[serde(default)]
    mode: Option<ClockMode>,
}

async fn change_clock(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: ClockChange = parse_body(&body)?;
    if req.advance_seconds.is_none() && req.advance_ms.is_none() && req.mode.is_none() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "give advanceSeconds, advanceMs or mode".into(),
        ));
    }
    // A mode switch comes first, so an advance in the same request moves the new mode's time.
    if let Some(mode) = req.mode {
        s.clock.set_mode(mode);
    }
    let by = std::time::Duration::from_secs(req.advance_seconds.unwrap_or(0)).saturating_add(
        std::time::Duration::from_millis(req.advance_ms.unwrap_or(0)),
    );
    s.clock.advance(by);
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
    let knobs = s
        .patch_knobs(&patch)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(json!(knobs)))
}

async fn reset(State(s): State<Arc<Shared>>) -> Result<StatusCode, AdminError> {
    s.reset()
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
