//! MIC's two HTTP endpoints, as upstream: `/healthz` on the probe port (always 200; body
//! `Active` while this replica runs the cycle, else `Not Active`, no newline) and `/metrics`
//! on the Prometheus port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// The `/healthz` router.
pub fn health_router(active: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(active)
}

async fn healthz(State(active): State<Arc<AtomicBool>>) -> &'static str {
    if active.load(Ordering::SeqCst) {
        "Active"
    } else {
        "Not Active"
    }
}

/// The `/metrics` router.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn metrics_text(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Serves `router` on `address` until the process ends. The bound address is logged, so a
/// port of 0 (tests, a local sandbox) can be found.
pub async fn serve(name: &'static str, address: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    if let Ok(address) = listener.local_addr() {
        tracing::info!(listener = name, %address, "listening");
    }
    axum::serve(listener, router).await
}
