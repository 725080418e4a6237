//! The request journal and per-operation counters that tests and benchmarks read, and the
//! middleware that fills them and applies fault rules on every surface.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use serde::Serialize;

use crate::faults::{ErrorFault, FaultAction, FaultRequest, Surface};
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

/// Renders a fault rule's `error` action in a surface's own error shape.
pub type FaultRenderer = fn(&ErrorFault) -> Response;

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
    let (req, client_id) = client_id_of(o.surface, req).await;
    let fault = o.shared.faults.take(
        o.surface,
        &FaultRequest {
            method: &method,
            path: &path,
            machine: o.machine.as_deref(),
            client_id: client_id.as_deref(),
        },
    );
    let (response, fault_name) = match fault {
        Some(FaultAction::Delay { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            (next.run(req).await, Some(format!("delay {ms}ms")))
        }
        Some(FaultAction::Error(error)) => {
            let mut resp = (o.render_fault)(&error);
            resp.extensions_mut().insert(Operation("fault"));
            (resp, Some(format!("error {}", error.status)))
        }
        Some(FaultAction::LroFailure { .. }) | None => (next.run(req).await, None),
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

/// The client ID a fault rule may match on: the `client_id` query value, or for Entra the
/// `client_id` form field (the body is read and put back).
async fn client_id_of(surface: Surface, req: Request) -> (Request, Option<String>) {
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned())
    });
    if surface != Surface::Entra || from_query.is_some() {
        return (req, from_query);
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, 1 << 20).await {
        Ok(bytes) => {
            let client_id = url::form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v.into_owned());
            (
                Request::from_parts(parts, axum::body::Body::from(bytes)),
                client_id,
            )
        }
        // An unreadable body is the handler's problem to report; give it an empty one.
        Err(_) => (Request::from_parts(parts, axum::body::Body::empty()), None),
    }
}
