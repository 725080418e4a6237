//! The HTTP side: four listeners, each routed by the core's [`route`], and the shared state
//! behind them ([`App`]).

mod answer;
mod proxy;
mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use kube::Client;
use podid_azure::credential::ImdsClient;
use podid_azure::http::{HttpError, HttpOptions};
use tokio::net::TcpListener;
use url::Url;

use crate::metrics::Metrics;
use crate::reply::ErrorReply;
use crate::request::{Listener, RawRequest, Route, RouteOptions, route};
use crate::selection::RetryPolicy;
use crate::state::{Mode, NodeState};
use crate::tokens::cache::REFRESH_MARGIN;
use crate::tokens::{Clock, Fetcher, TokenCache};

pub use proxy::MAX_BODY_BYTES;

/// The probe's bodies (no newline, as upstream).
pub const ACTIVE: &str = "Active";
pub const NOT_ACTIVE: &str = "Not Active";

/// What the server needs to know, from flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--node`.
    pub node: String,
    /// `--operation-mode`.
    pub mode: Mode,
    /// `--forceNamespaced`.
    pub force_namespaced: bool,
    /// `--MICNamespace`.
    pub mic_namespace: String,
    /// `--metadata-header-required`, `--block-instance-metadata`.
    pub route: RouteOptions,
    /// `--retry-attempts-for-created`, `--retry-attempts-for-assigned`,
    /// `--find-identity-retry-interval`.
    pub retry: RetryPolicy,
    /// `--set-retry-after-header`.
    pub set_retry_after_header: bool,
    /// The IMDS NMI itself calls, for tokens and the proxy (`--imds-endpoint`).
    pub imds_endpoint: Url,
    /// The Entra ID authority for identities without `adEndpoint`.
    pub default_authority: Url,
    /// HTTP clients for IMDS and Entra ID.
    pub http: HttpOptions,
}

/// The sockets NMI serves, bound by the caller.
pub struct Listeners {
    /// The pods' port (`--nmi-listen-address:--nmi-port`).
    pub metadata: TcpListener,
    /// `/host/token`, on loopback.
    pub host: TcpListener,
    /// `/healthz` (`--http-probe-port`).
    pub probe: TcpListener,
    /// `/metrics` (`--prometheus-port`).
    pub metrics: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("building an HTTP client: {0}")]
    Http(#[from] HttpError),
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
}

/// Everything a request reads.
pub struct App {
    settings: Settings,
    state: Arc<NodeState>,
    cache: TokenCache,
    fetcher: Fetcher,
    proxy: reqwest::Client,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    active: AtomicBool,
}

impl App {
    pub fn new(
        settings: Settings,
        kube: Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, ServerError> {
        let metrics = Arc::new(Metrics::new());
        let imds = ImdsClient::new(&settings.http, settings.imds_endpoint.clone())?;
        let fetcher = Fetcher::new(
            imds,
            settings.http.https_client()?,
            kube,
            settings.default_authority.clone(),
            metrics.clone(),
        );
        Ok(Arc::new(Self {
            state: NodeState::new(&settings.node, settings.mode),
            cache: TokenCache::new(clock.clone(), REFRESH_MARGIN),
            fetcher,
            // The IMDS client's settings: no proxy, no redirects; reqwest keeps connections.
            proxy: settings.http.imds_client()?,
            metrics,
            clock,
            active: AtomicBool::new(false),
            settings,
        }))
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `/healthz` answers `Active` from now on (after the first iptables sync).
    pub fn mark_active(&self) {
        self.active.store(true, Ordering::SeqCst);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Serves the four listeners until `shutdown` completes, then stops accepting and lets the
    /// requests in flight finish. The watches run alongside; requests are served once every
    /// watch has listed its objects, so no pod is refused for a cold cache.
    pub async fn serve(
        self: Arc<Self>,
        kube: Client,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let watches = tokio::spawn(self.state.clone().run_watches(kube));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let serve = |listener: TcpListener, kind: Listener| {
            let router = Router::new()
                .fallback(handle)
                .with_state((self.clone(), kind));
            let mut stopped = stopped.clone();
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
        };
        // The probe and metrics answer while the watches list; token requests wait for them.
        let probe = tokio::spawn(serve(listeners.probe, Listener::Probe).into_future());
        let metrics = tokio::spawn(serve(listeners.metrics, Listener::Metrics).into_future());
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let mut stopping = stopped.clone();
        tokio::select! {
            () = self.state.wait_synced() => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        tracing::info!(node = %self.settings.node, "state synced; serving tokens");
        let metadata = serve(listeners.metadata, Listener::Metadata).into_future();
        let host = serve(listeners.host, Listener::Host).into_future();
        let (metadata, host) = tokio::join!(metadata, host);
        watches.abort();
        let joined = |result: Result<std::io::Result<()>, tokio::task::JoinError>| {
            result.unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        metadata?;
        host?;
        joined(probe.await)?;
        joined(metrics.await)?;
        Ok(())
    }
}

type Context = (Arc<App>, Listener);

async fn handle(
    State((app, listener)): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let path = parts.uri.path();
    let raw = RawRequest {
        method: parts.method.as_str(),
        path,
        query: parts.uri.query().unwrap_or_default(),
        headers: &headers,
    };
    match route(listener, app.settings.route, &raw) {
        Err(refusal) => answer::error(&refusal.reply()),
        Ok(Route::Redirect { location }) => answer::redirect(&location),
        Ok(Route::Token(query)) => token::pod_token(&app, peer.ip(), query, path).await,
        Ok(Route::HostToken { pod, query }) => token::host_token(&app, pod, query, path).await,
        Ok(Route::Proxy {
            method,
            path_and_query,
        }) => match to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => {
                let imds = &app.settings.imds_endpoint;
                proxy::forward(
                    &app.proxy,
                    imds,
                    &method,
                    &path_and_query,
                    &parts.headers,
                    bytes,
                )
                .await
            }
            Err(_) => answer::error(&ErrorReply::invalid_request(
                "the request body is too large or unreadable",
            )),
        },
        Ok(Route::Health) => {
            let body = if app.is_active() { ACTIVE } else { NOT_ACTIVE };
            answer::text(200, "text/plain; charset=utf-8", body.to_owned())
        }
        Ok(Route::Metrics) => match app.metrics.encode() {
            Ok(text) => answer::text(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => answer::error(&ErrorReply::new(
                500,
                crate::reply::ErrorCode::ServerError,
                "encoding the metrics failed",
            )),
        },
    }
}
