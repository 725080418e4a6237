//! The request journal and per-operation counters that tests and benchmarks read, and the
//! middleware that fills them and applies fault rules on every surface.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use serde::Serialize;

use crate::faults::hold::HoldRequest;
use crate::faults::{ErrorFault, FaultAction, FaultRequest, Fired, Surface};
use crate::state::Shared;

/// Names the operation a handler performed (`arm.vmss.patch`); counters are kept per name.
/// Handlers return it as a response part: `(Operation("imds.token"), Json(body))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation(pub &'static str);

impl IntoResponseParts for Operation {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    pub seq: u64,
    /// Unix milliseconds on the emulator's clock.
    pub at_ms: i64,
    pub surface: Surface,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub operation: String,
    /// Set when a fault rule answered or delayed the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationCount {
    pub total: u64,
    pub by_status: BTreeMap<u16, u64>,
}

const JOURNAL_CAPACITY: usize = 20_000;

#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<JournalInner>,
}

#[derive(Debug, Default)]
struct JournalInner {
    next_seq: u64,
    entries: VecDeque<JournalEntry>,
    counts: BTreeMap<String, OperationCount>,
}

impl Journal {
    pub fn record(&self, mut entry: JournalEntry) {
        let mut inner = self.lock();
        inner.next_seq += 1;
        entry.seq = inner.next_seq;
        let count = inner.counts.entry(entry.operation.clone()).or_default();
        count.total += 1;
        *count.by_status.entry(entry.status).or_default() += 1;
        if inner.entries.len() == JOURNAL_CAPACITY {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
    }

    /// Entries after `since` (a sequence number), oldest first, optionally of one surface.
    pub fn entries(&self, since: u64, surface: Option<Surface>) -> Vec<JournalEntry> {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.seq > since && surface.is_none_or(|s| s == e.surface))
            .cloned()
            .collect()
    }

    pub fn counts(&self) -> BTreeMap<String, OperationCount> {
        self.lock().counts.clone()
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.counts.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a fault renderer may know about the request it answers instead of the handler.
pub struct FaultContext<'a> {
    pub shared: &'a Shared,
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// Renders a fault rule's `error` action in a surface's own error shape.
pub type FaultRenderer = fn(&ErrorFault, &FaultContext<'_>) -> Response;

/// Per-listener context of the [`observe`] middleware.
#[derive(Clone)]
pub struct Observed {
    pub shared: Arc<Shared>,
    pub surface: Surface,
    pub machine: Option<Arc<str>>,
    pub render_fault: FaultRenderer,
}

/// Applies fault rules, runs the handler, and journals the exchange.
pub async fn observe(State(o): State<Observed>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (response, fault_name) = match client_id_of(o.surface, req).await {
        Ok((req, client_id)) => handle(&o, req, client_id, (&method, &path), next).await,
        Err(refused) => (refused, None),
    };
    let operation = response
        .extensions()
        .get::<Operation>()
        .map_or("unrouted", |op| op.0);
    o.shared.journal.record(JournalEntry {
        seq: 0,
        at_ms: o
            .shared
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        surface: o.surface,
        machine: o.machine.as_deref().map(str::to_string),
        method,
        path,
        query,
        status: response.status().as_u16(),
        operation: operation.to_string(),
        fault: fault_name,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        user_agent,
    });
    response
}

/// Applies the first matching fault rule, else runs the handler; returns the answer and what
/// the fault did.
async fn handle(
    o: &Observed,
    req: Request,
    client_id: Option<String>,
    (method, path): (&str, &str),
    next: Next,
) -> (Response, Option<String>) {
    let fault = o.shared.faults.take(
        o.surface,
        &FaultRequest {
            method,
            path,
            machine: o.machine.as_deref(),
            client_id: client_id.as_deref(),
        },
    );
    match fault {
        Some(Fired {
            action: FaultAction::Delay { ms },
            ..
        }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            (next.run(req).await, Some(format!("delay {ms}ms")))
        }
        Some(Fired {
            rule,
            action: FaultAction::Hold,
        }) => {
            let holds = o.shared.faults.holds();
            holds
                .hold(HoldRequest {
                    rule,
                    surface: o.surface,
                    method: method.to_string(),
                    path: path.to_string(),
                    machine: o.machine.as_deref().map(str::to_string),
                    client_id,
                })
                .released()
                .await;
            (next.run(req).await, Some("hold".to_string()))
        }
        Some(Fired {
            action: FaultAction::Error(error),
            ..
        }) => {
            let context = FaultContext {
                shared: &o.shared,
                method,
                path,
                headers: req.headers(),
            };
            let mut resp = (o.render_fault)(&error, &context);
            resp.extensions_mut().insert(Operation("fault"));
            (resp, Some(format!("error {}", error.status)))
        }
        Some(Fired {
            action: FaultAction::LroFailure { .. },
            ..
        })
        | None => (next.run(req).await, None),
    }
}

/// The most an Entra request body may hold (a form is a few KiB; an assertion with a
/// certificate chain well under this).
pub const MAX_FORM_BYTES: usize = 1 << 20;

/// The client ID a fault rule may match on: the `client_id` query value, or for Entra the
/// `client_id` form field (the body is read and put back). An Entra body that cannot be read
/// within [`MAX_FORM_BYTES`] is refused with 413 rather than handed on empty, which would be
/// answered as a form missing its fields.
async fn client_id_of(
    surface: Surface,
    req: Request,
) -> Result<(Request, Option<String>), Response> {
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned())
    });
    if surface != Surface::Entra || from_query.is_some() {
        return Ok((req, from_query));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| body_too_large())?;
    let client_id = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned());
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        client_id,
    ))
}

/// 413 with a plain-text body: Entra's front end refuses such a request before the token
/// service sees it, so there is no AADSTS error to give.
fn body_too_large() -> Response {
    let text = format!("The request body exceeds {MAX_FORM_BYTES} bytes.");
    (
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        Operation("entra.rejected"),
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
