//! The `nmi` binary's flags (upstream's, pflag-style: `--x=v` and `--x v`) and its startup:
//! kubenet check, Kubernetes client, listeners, the iptables loop, signals and shutdown.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use podid_azure::credential::{IMDS_ENDPOINT, PUBLIC_AUTHORITY};
use podid_azure::http::{HttpError, HttpOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::iptables::{Iptables, IptablesError, Redirect, SystemRunner, keep_synced};
use crate::port_guard::{self, PortGuard};
use crate::request::RouteOptions;
use crate::selection::RetryPolicy;
use crate::server::{App, Listeners, ServerError, Settings};
use crate::state::Mode;
use crate::tokens::SystemClock;

/// Go's `strconv.ParseBool`, which pflag uses for boolean flags.
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean")),
    }
}

/// NMI's flags. Upstream's names and defaults (docs/nmi.md, "Flags"), then podid's own.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nmi",
    version,
    about = "podid's node agent: IMDS tokens for pods"
)]
pub struct Flags {
    /// This node's name.
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node: String,
    #[arg(long = "nmi-listen-address", default_value = "127.0.0.1")]
    pub nmi_listen_address: Ipv4Addr,
    #[arg(long = "nmi-port", default_value_t = 2579)]
    pub nmi_port: u16,
    /// The address iptables redirects (not where NMI gets tokens: see --imds-endpoint).
    #[arg(long = "metadata-ip", default_value = "169.254.169.254")]
    pub metadata_ip: Ipv4Addr,
    #[arg(long = "metadata-port", default_value_t = 80)]
    pub metadata_port: u16,
    #[arg(long = "ipt-update-interval-sec", default_value_t = 60)]
    pub ipt_update_interval_sec: u64,
    #[arg(long = "forceNamespaced", env = "FORCENAMESPACED", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = go_bool,
          action = ArgAction::Set)]
    pub force_namespaced: bool,
    #[arg(long = "MICNamespace", default_value = "default")]
    pub mic_namespace: String,
    #[arg(long = "http-probe-port", default_value_t = 8080)]
    pub http_probe_port: u16,
    #[arg(long = "retry-attempts-for-created", default_value_t = 16)]
    pub retry_attempts_for_created: u32,
    #[arg(long = "retry-attempts-for-assigned", default_value_t = 4)]
    pub retry_attempts_for_assigned: u32,
    /// Seconds.
    #[arg(long = "find-identity-retry-interval", default_value_t = 5)]
    pub find_identity_retry_interval: u64,
    #[arg(long = "block-instance-metadata", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub block_instance_metadata: bool,
    #[arg(long = "metadata-header-required", default_value = "true", num_args = 0..=1,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub metadata_header_required: bool,
    #[arg(long = "prometheus-port", default_value_t = 9090)]
    pub prometheus_port: u16,
    /// `standard` or `managed` (any case).
    #[arg(long = "operation-mode", default_value = "standard")]
    pub operation_mode: String,
    #[arg(long = "allow-network-plugin-kubenet", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub allow_network_plugin_kubenet: bool,
    #[arg(long = "kubelet-config", default_value = "/etc/default/kubelet")]
    pub kubelet_config: PathBuf,
    #[arg(long = "set-retry-after-header", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub set_retry_after_header: bool,
    #[arg(long = "enable-conntrack-deletion", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub enable_conntrack_deletion: bool,
    /// `text` or `json`.
    #[arg(long = "log-format", default_value = "text")]
    pub log_format: String,
    /// A kubeconfig file; else `KUBECONFIG`, else the in-cluster configuration.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Deprecated: there is no pprof endpoint.
    #[arg(long = "enableProfile", num_args = 0..=1, default_missing_value = "true")]
    pub enable_profile: Option<String>,
    /// Deprecated: AzureAssignedIdentities are always watched for this node only.
    #[arg(long = "enableScaleFeatures", num_args = 0..=1, default_missing_value = "true")]
    pub enable_scale_features: Option<String>,
    /// Deprecated: klog's verbosity; use RUST_LOG.
    #[arg(short = 'v', long = "v")]
    pub verbosity: Option<String>,

    /// podid: the IMDS NMI itself calls for tokens and proxies to.
    #[arg(long = "imds-endpoint", default_value = IMDS_ENDPOINT)]
    pub imds_endpoint: Url,
    /// podid: the loopback port of `/host/token`.
    #[arg(long = "host-token-port", default_value_t = 2580)]
    pub host_token_port: u16,
    /// podid: keep the iptables redirect. `false` only for tests and a local sandbox: nothing
    /// then sends pods' traffic to NMI, and `/healthz` is `Active` at once.
    #[arg(long = "manage-iptables", default_value = "true", num_args = 0..=1,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub manage_iptables: bool,
    /// podid: PEM CA certificates trusted for Entra ID besides the system's (a private cloud,
    /// the emulator).
    #[arg(long = "extra-ca-file")]
    pub extra_ca_file: Option<PathBuf>,
    /// podid: the Entra ID authority for identities without `adEndpoint`.
    #[arg(long = "default-ad-endpoint", default_value = PUBLIC_AUTHORITY)]
    pub default_ad_endpoint: Url,
    /// podid: the CNI result cache (libcni's, read-only hostPath) the port guard reads to bind
    /// each pod's bridge port to its MAC and IPv4 (docs/nmi.md). Absent or unreadable:
    /// the guard is off, with one warning. Only with --manage-iptables.
    #[arg(long = "cni-results-dir", default_value = "/var/lib/cni/results")]
    pub cni_results_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("--node (or NODE_NAME) is required")]
    NoNode,
    #[error("--operation-mode {0:?} is neither standard nor managed")]
    UnknownMode(String),
    #[error(
        "managed mode not initialized in force namespaced mode: managed mode needs --forceNamespaced"
    )]
    ManagedNeedsNamespaced,
    #[error("--log-format {0:?} is neither text nor json")]
    UnknownLogFormat(String),
    #[error("reading the kubelet configuration {path}: {source}")]
    KubeletConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "AAD Pod Identity is not supported for Kubenet: {0} sets --network-plugin=kubenet (pods could spoof each other's IPs); pass --allow-network-plugin-kubenet to run anyway"
    )]
    Kubenet(PathBuf),
    #[error("Kubernetes configuration: {0}")]
    Kubeconfig(String),
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("iptables: {0}")]
    Iptables(#[from] IptablesError),
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Flags {
    pub fn log_format(&self) -> Result<LogFormat, AgentError> {
        match self.log_format.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(AgentError::UnknownLogFormat(other.to_owned())),
        }
    }

    /// The server's settings, with upstream's fatal combinations refused.
    pub fn settings(&self) -> Result<Settings, AgentError> {
        if self.node.is_empty() {
            return Err(AgentError::NoNode);
        }
        let mode = match self.operation_mode.to_lowercase().as_str() {
            "standard" => Mode::Standard,
            "managed" => Mode::Managed,
            _ => return Err(AgentError::UnknownMode(self.operation_mode.clone())),
        };
        if mode == Mode::Managed && !self.force_namespaced {
            return Err(AgentError::ManagedNeedsNamespaced);
        }
        let mut http = HttpOptions::default();
        if let Some(path) = &self.extra_ca_file {
            http = http.trusting_ca_file(path)?;
        }
        Ok(Settings {
            node: self.node.clone(),
            mode,
            force_namespaced: self.force_namespaced,
            mic_namespace: self.mic_namespace.clone(),
            route: RouteOptions {
                metadata_header_required: self.metadata_header_required,
                block_instance_metadata: self.block_instance_metadata,
            },
            retry: RetryPolicy {
                created_attempts: self.retry_attempts_for_created,
                assigned_attempts: self.retry_attempts_for_assigned,
                interval: Duration::from_secs(self.find_identity_retry_interval),
            },
            set_retry_after_header: self.set_retry_after_header,
            imds_endpoint: self.imds_endpoint.clone(),
            default_authority: self.default_ad_endpoint.clone(),
            http,
        })
    }

    /// Flags that no longer mean anything: accepted, each with a log line.
    pub fn deprecated(&self) -> Vec<&'static str> {
        [
            (self.enable_profile.is_some(), "--enableProfile (there is no pprof endpoint)"),
            (
                self.enable_scale_features.is_some(),
                "--enableScaleFeatures (AzureAssignedIdentities are always watched for this node only)",
            ),
            (self.verbosity.is_some(), "-v/--v (use RUST_LOG)"),
        ]
        .into_iter()
        .filter_map(|(given, text)| given.then_some(text))
        .collect()
    }
}

/// The port guard, when NMI manages iptables and the results directory can be read; else one
/// warning saying how to turn it on. Never an error: upstream's manifests mount nothing there.
fn guard_from_flags(flags: &Flags) -> Option<Arc<PortGuard>> {
    if !flags.manage_iptables {
        return None;
    }
    let dir = &flags.cni_results_dir;
    let off = |reason: String| {
        tracing::warn!(
            dir = %dir.display(),
            reason,
            "port guard off: pods on a bridge network can claim each other's addresses; mount the host's /var/lib/cni/results read-only at --cni-results-dir to turn it on (docs/install.md, \"Node network\")"
        );
        None
    };
    let guard = PortGuard::new(Arc::new(SystemRunner), dir.clone());
    match guard.usable() {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), table = port_guard::TABLE, "port guard on");
            Some(Arc::new(guard))
        }
        Err(error) => off(error.to_string()),
    }
}

/// Upstream's CVE-2021-1677 guard: refuse to run when the kubelet's defaults select kubenet.
pub fn check_kubenet(path: &Path) -> Result<(), AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::KubeletConfig {
        path: path.to_owned(),
        source,
    })?;
    if text.contains("--network-plugin=kubenet") {
        return Err(AgentError::Kubenet(path.to_owned()));
    }
    Ok(())
}

async fn kube_client(kubeconfig: Option<&Path>) -> Result<Client, AgentError> {
    let failed = |e: &dyn std::fmt::Display| AgentError::Kubeconfig(e.to_string());
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| failed(&e))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| failed(&e))?
        }
        None => kube::Config::incluster().map_err(|e| failed(&e))?,
    };
    Client::try_from(config).map_err(|e| failed(&e))
}

async fn bind(address: SocketAddr) -> Result<TcpListener, AgentError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| AgentError::Bind { address, source })
}

/// SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

/// Runs NMI until SIGTERM/SIGINT or an iptables failure. On the way out: the iptables rules are
/// removed first (new connections stop coming), then the listeners stop accepting and the
/// requests in flight finish.
pub async fn run(flags: Flags) -> Result<(), AgentError> {
    for flag in flags.deprecated() {
        tracing::warn!(flag, "deprecated flag accepted and ignored");
    }
    let settings = flags.settings()?;
    if flags.allow_network_plugin_kubenet {
        tracing::warn!("--allow-network-plugin-kubenet: the kubenet check is off");
    } else {
        check_kubenet(&flags.kubelet_config)?;
    }
    let kube = kube_client(flags.kubeconfig.as_deref()).await?;
    let app = App::new(settings, kube.clone(), Arc::new(SystemClock))?;
    let any = Ipv4Addr::UNSPECIFIED;
    let listeners = Listeners {
        metadata: bind((flags.nmi_listen_address, flags.nmi_port).into()).await?,
        host: bind((Ipv4Addr::LOCALHOST, flags.host_token_port).into()).await?,
        probe: bind((any, flags.http_probe_port).into()).await?,
        metrics: bind((any, flags.prometheus_port).into()).await?,
    };
    for (name, listener) in [
        ("metadata", &listeners.metadata),
        ("host", &listeners.host),
        ("probe", &listeners.probe),
        ("metrics", &listeners.metrics),
    ] {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(listener = name, %address, "listening");
        }
    }

    let (stop, mut stopping) = watch::channel(false);
    let stop = Arc::new(stop);
    let iptables = flags.manage_iptables.then(|| {
        let redirect = Redirect::new(
            flags.metadata_ip,
            flags.metadata_port,
            flags.nmi_listen_address,
            flags.nmi_port,
        );
        Arc::new(Iptables::new(Arc::new(SystemRunner), redirect))
    });
    let failure = Arc::new(std::sync::Mutex::new(None::<IptablesError>));
    match &iptables {
        Some(iptables) => {
            let (app, stop, iptables) = (app.clone(), stop.clone(), iptables.clone());
            let failure = failure.clone();
            let interval = Duration::from_secs(flags.ipt_update_interval_sec.max(1));
            let conntrack = flags.enable_conntrack_deletion;
            tokio::spawn(async move {
                let error = keep_synced(iptables, interval, conntrack, || app.mark_active()).await;
                tracing::error!(%error, "iptables failed; stopping");
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                let _ = stop.send(true);
            });
        }
        None => {
            tracing::warn!(
                "--manage-iptables=false: no iptables redirect (tests and sandbox only)"
            );
            app.mark_active();
        }
    }
    let guard = guard_from_flags(&flags);
    if let Some(guard) = &guard {
        let resync = Duration::from_secs(flags.ipt_update_interval_sec.max(1));
        tokio::spawn(port_guard::keep_guarding(guard.clone(), resync));
    }
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            terminated().await;
            let _ = stop.send(true);
        });
    }
    let cleanup = iptables.clone();
    let shutdown = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        if let Some(iptables) = cleanup {
            match tokio::task::spawn_blocking(move || iptables.remove()).await {
                Ok(Ok(())) => tracing::info!("iptables rules removed"),
                Ok(Err(error)) => tracing::error!(%error, "removing the iptables rules failed"),
                Err(error) => tracing::error!(%error, "removing the iptables rules failed"),
            }
        }
        if let Some(guard) = guard {
            match tokio::task::spawn_blocking(move || guard.remove()).await {
                Ok(Ok(())) => tracing::info!(table = port_guard::TABLE, "port guard table removed"),
                Ok(Err(error)) => tracing::error!(%error, "removing the port guard's rules failed"),
                Err(error) => tracing::error!(%error, "removing the port guard's rules failed"),
            }
        }
        tracing::info!("stopping: finishing the requests in flight");
    };
    app.serve(kube, listeners, shutdown).await;
    let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failed {
        Some(error) => Err(AgentError::Iptables(error)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("nmi").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_upstreams() {
        let flags = parse(&["--node", "n1"]);
        assert_eq!(flags.nmi_port, 2579);
        assert_eq!(flags.http_probe_port, 8080);
        assert_eq!(flags.prometheus_port, 9090);
        assert_eq!(flags.mic_namespace, "default");
        assert!(flags.metadata_header_required);
        assert!(!flags.block_instance_metadata);
        assert!(flags.manage_iptables);
        assert_eq!(flags.imds_endpoint.as_str(), "http://169.254.169.254/");
        let settings = flags.settings().unwrap();
        assert_eq!(settings.retry, RetryPolicy::default());
        assert_eq!(settings.mode, Mode::Standard);
    }

    #[test]
    fn both_pflag_spellings_and_go_booleans_are_accepted() {
        let flags = parse(&[
            "--node=n1",
            "--nmi-port",
            "3000",
            "--metadata-header-required=false",
            "--block-instance-metadata",
            "--forceNamespaced=T",
            "--operation-mode=MANAGED",
            "--enableScaleFeatures=true",
            "--enableProfile",
            "--manage-iptables=0",
        ]);
        assert_eq!(flags.nmi_port, 3000);
        assert!(!flags.metadata_header_required);
        assert!(flags.block_instance_metadata);
        assert!(!flags.manage_iptables);
        assert_eq!(flags.settings().unwrap().mode, Mode::Managed);
        assert_eq!(flags.deprecated().len(), 2);
    }

    #[test]
    fn upstreams_fatal_combinations_are_refused() {
        let managed = parse(&["--node=n1", "--operation-mode=managed"]);
        assert!(matches!(
            managed.settings(),
            Err(AgentError::ManagedNeedsNamespaced)
        ));
        let unknown = parse(&["--node=n1", "--operation-mode=other"]);
        assert!(matches!(
            unknown.settings(),
            Err(AgentError::UnknownMode(_))
        ));
        assert!(matches!(parse(&[]).settings(), Err(AgentError::NoNode)));
        assert!(Flags::try_parse_from(["nmi", "--block-instance-metadata=maybe"]).is_err());
    }

    #[test]
    fn kubenet_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet");
        std::fs::write(&path, "KUBELET_FLAGS=--network-plugin=kubenet --v=2\n").unwrap();
        assert!(matches!(check_kubenet(&path), Err(AgentError::Kubenet(_))));
        std::fs::write(&path, "KUBELET_FLAGS=--network-plugin=cni\n").unwrap();
        check_kubenet(&path).unwrap();
        assert!(matches!(
            check_kubenet(&dir.path().join("missing")),
            Err(AgentError::KubeletConfig { .. })
        ));
    }

    #[test]
    fn the_port_guard_is_off_without_its_directory_and_never_an_error() {
        let flags = parse(&["--node=n1"]);
        assert_eq!(flags.cni_results_dir, Path::new("/var/lib/cni/results"));
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        let off = parse(&[
            "--node=n1",
            &format!("--cni-results-dir={}", absent.display()),
        ]);
        assert!(guard_from_flags(&off).is_none());
        let here = format!("--cni-results-dir={}", dir.path().display());
        assert!(
            guard_from_flags(&parse(&["--node=n1", &here, "--manage-iptables=false"])).is_none()
        );
        assert!(guard_from_flags(&parse(&["--node=n1", &here])).is_some());
    }
}
