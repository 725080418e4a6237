//! The HTTP side: four listeners, each routed by the core's [`route`], and the shared state
//! behind them ([`App`]).

mod answer;
mod proxy;
mod token;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kube::Client;
use podid_azure::credential::ImdsClient;
use podid_azure::http::{HttpError, HttpOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use url::Url;

use self::answer::Answer;
use crate::metrics::Metrics;
use crate::reply::ErrorReply;
use crate::request::{Listener, PodName, RawRequest, Route, RouteOptions, TokenQuery, route};
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
        // One IMDS client (no proxy, no redirects) for tokens and the proxy: one pool, one TLS
        // setup (each reqwest client loads the root certificates).
        let imds_http = settings.http.imds_client()?;
        let imds = ImdsClient::with_client(imds_http.clone(), settings.imds_endpoint.clone());
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
            proxy: imds_http,
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
    ) {
        let watches = tokio::spawn(self.state.clone().run_watches(kube));
        let (stop, stopped) = watch::channel(false);
        // The probe and metrics answer while the watches list; token requests wait for them.
        let probe = tokio::spawn(serve_listener(
            self.clone(),
            listeners.probe,
            Listener::Probe,
            stopped.clone(),
        ));
        let metrics = tokio::spawn(serve_listener(
            self.clone(),
            listeners.metrics,
            Listener::Metrics,
            stopped.clone(),
        ));
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
        let metadata = serve_listener(
            self.clone(),
            listeners.metadata,
            Listener::Metadata,
            stopped.clone(),
        );
        let host = serve_listener(self.clone(), listeners.host, Listener::Host, stopped);
        tokio::join!(metadata, host);
        watches.abort();
        let _ = tokio::join!(probe, metrics);
    }
}

/// Accepts connections on `listener` until `stopped`, then closes idle connections, lets the
/// requests in flight finish and returns once every connection is done.
async fn serve_listener(
    app: Arc<App>,
    listener: TcpListener,
    kind: Listener,
    mut stopped: watch::Receiver<bool>,
) {
    // Each connection holds a receiver; `closed()` completes when the last one is dropped.
    let (connections, _) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = until_stopped(&mut stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors or similar: give the system time, as hyper advises.
                tracing::error!(%error, ?kind, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // One write per answer: nothing gains from Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stopped = stopped.clone();
        let done = connections.subscribe();
        tokio::spawn(async move {
            serve_connection(app, kind, stream, peer, stopped).await;
            drop(done);
        });
    }
    drop(listener);
    connections.closed().await;
}

async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// HTTP/1.1 on one connection (IMDS speaks nothing else), until the client closes it or NMI
/// stops. A request is dropped when its client goes away, which ends any wait it is in.
async fn serve_connection(
    app: Arc<App>,
    kind: Listener,
    stream: TcpStream,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| respond(&app, kind, peer, request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = until_stopped(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// What a request needs once routed. Routing runs as the request arrives, before anything
/// waits, so the request (whose head shares the connection's read buffer) is dropped at once
/// and the buffer is reused for the next request instead of grown.
enum Work {
    Done(Answer),
    Token(TokenQuery, String),
    HostToken(PodName, TokenQuery, String),
    Proxy {
        method: String,
        path_and_query: String,
        headers: HeaderMap,
        body: Incoming,
    },
}

fn respond(
    app: &Arc<App>,
    kind: Listener,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Answer, Infallible>> + use<> {
    let work = route_request(app, kind, request);
    let app = app.clone();
    async move {
        Ok(match work {
            Work::Done(answer) => answer,
            Work::Token(query, path) => token::pod_token(&app, peer.ip(), query, &path).await,
            Work::HostToken(pod, query, path) => token::host_token(&app, pod, query, &path).await,
            Work::Proxy {
                method,
                path_and_query,
                headers,
                body,
            } => match Limited::new(body, MAX_BODY_BYTES).collect().await {
                Ok(body) => {
                    let imds = &app.settings.imds_endpoint;
                    let body = body.to_bytes();
                    proxy::forward(&app.proxy, imds, &method, &path_and_query, &headers, body).await
                }
                Err(_) => answer::error(&ErrorReply::invalid_request(
                    "the request body is too large or unreadable",
                )),
            },
        })
    }
}

fn route_request(app: &App, kind: Listener, request: Request<Incoming>) -> Work {
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
    match route(kind, app.settings.route, &raw) {
        Err(refusal) => Work::Done(answer::error(&refusal.reply())),
        Ok(Route::Redirect { location }) => Work::Done(answer::redirect(&location)),
        Ok(Route::Token(query)) => Work::Token(query, path.to_owned()),
        Ok(Route::HostToken { pod, query }) => Work::HostToken(pod, query, path.to_owned()),
        Ok(Route::Proxy {
            method,
            path_and_query,
        }) => {
            drop(headers);
            Work::Proxy {
                method,
                path_and_query,
                headers: parts.headers,
                body,
            }
        }
        Ok(Route::Health) => {
            let body = if app.is_active() { ACTIVE } else { NOT_ACTIVE };
            Work::Done(answer::text(
                200,
                "text/plain; charset=utf-8",
                body.to_owned(),
            ))
        }
        Ok(Route::Metrics) => Work::Done(match app.metrics.encode() {
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
        }),
    }
}
