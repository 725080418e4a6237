//! `mic`: podid's controller. Parses upstream's flags, builds the clients, runs leader
//! election (podid-leader), `/healthz`, `/metrics` and the controller; exits 1 when
//! leadership is lost, as upstream did.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use kube::Client;
use podid_azure::arm::PollOptions;
use podid_azure::http::{DEFAULT_USER_AGENT, HttpOptions};
use podid_mic::azure::{AzureSource, process_environment};
use podid_mic::controller::{Controller, Stopped};
use podid_mic::flags::{Args, FORCE_NAMESPACED_ENV, POD_NAMESPACE_ENV};
use podid_mic::http::{health_router, metrics_router, serve};
use podid_mic::metrics::Metrics;
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    let args = Args::parse_go_style(std::env::args_os()).unwrap_or_else(|e| e.exit());
    init_logging(&args.log_format);
    // Upstream checks the namespace before --version.
    if std::env::var(POD_NAMESPACE_ENV)
        .unwrap_or_default()
        .is_empty()
    {
        bail!("{POD_NAMESPACE_ENV} is not set: MIC needs the namespace it runs in");
    }
    if args.version {
        println!("mic {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    // One thread: MIC waits on the API server and ARM, and its cycles are short; a second
    // worker only added wake-ups across threads (half of MIC's CPU in the 1,000-pod benchmark,
    // CPU the API server on the same node could use).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a container's log is a file. (Checked on stderr, where
        // the log goes.)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    for note in args.deprecations() {
        tracing::warn!("{note}");
    }
    let client = kube_client(&args.kubeconfig).await?;
    let source = azure_source(&args)?;
    let azure = match source.load() {
        Ok(azure) => Some(azure),
        // Upstream exits when the cloud client cannot be built.
        Err(error) => bail!("the Azure configuration is unusable: {error}"),
    };
    let (azure_tx, azure_rx) = watch::channel(azure);
    tokio::spawn(source.watch(azure_tx, args.cloudconfig_check_interval));

    let metrics = Metrics::new();
    let settings = args.settings(std::env::var(FORCE_NAMESPACED_ENV).ok().as_deref());
    let controller = Controller::new(client.clone(), azure_rx, settings, metrics.clone());
    let any = Ipv4Addr::UNSPECIFIED;
    let probe = SocketAddr::from((any, args.http_probe_port));
    let prometheus = SocketAddr::from((any, args.prometheus_port));
    let health = tokio::spawn(serve("probe", probe, health_router(controller.active())));
    let exporter = tokio::spawn(serve(
        "metrics",
        prometheus,
        metrics_router(metrics.clone()),
    ));

    let identity = if args.leader_election_instance.is_empty() {
        podid_leader::hostname()?
    } else {
        args.leader_election_instance.clone()
    };
    let config = podid_leader::LeaderConfig::new(identity)
        .with_lock(&args.leader_election_namespace, &args.leader_election_name)
        .with_lease_duration(args.leader_election_duration);
    metrics.leader_election_started();
    let (stop_election, election_stopped) = tokio::sync::oneshot::channel::<()>();
    let (leading, election) = podid_leader::spawn(client, config, async move {
        let _ = election_stopped.await;
    });

    let stopped = tokio::select! {
        stopped = controller.run(leading, shutdown_signal()) => stopped,
        result = health => bail!("the health endpoint stopped: {result:?}"),
        result = exporter => bail!("the metrics endpoint stopped: {result:?}"),
    };
    let _ = stop_election.send(());
    match election.await {
        Ok(Err(error)) => tracing::error!(%error, "leader election failed"),
        Err(error) => tracing::error!(%error, "leader election task failed"),
        Ok(Ok(())) => {}
    }
    match stopped {
        Stopped::Shutdown => Ok(()),
        Stopped::LostLeadership => {
            tracing::error!("lost leadership; exiting");
            std::process::exit(1)
        }
    }
}

async fn kube_client(kubeconfig: &str) -> anyhow::Result<Client> {
    let config = if kubeconfig.is_empty() {
        kube::Config::incluster().context("in-cluster Kubernetes configuration")?
    } else {
        let file = kube::config::Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("reading {kubeconfig}"))?;
        kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .with_context(|| format!("using {kubeconfig}"))?
    };
    Ok(Client::try_from(config)?)
}

fn azure_source(args: &Args) -> anyhow::Result<AzureSource> {
    let mut user_agent = DEFAULT_USER_AGENT.replace("podid/", "podid-mic/");
    if !args.custom_user_agent.is_empty() {
        user_agent = format!("{user_agent} {}", args.custom_user_agent);
    }
    let mut http = HttpOptions {
        user_agent,
        ..HttpOptions::default()
    };
    if let Some(ca) = &args.azure_ca_file {
        http = http
            .trusting_ca_file(ca)
            .with_context(|| format!("the CA file {}", ca.display()))?;
    }
    Ok(AzureSource {
        cloud_config: Some(PathBuf::from(&args.cloudconfig)).filter(|p| !p.as_os_str().is_empty()),
        http,
        imds_endpoint: args.imds_endpoint.clone(),
        poll: PollOptions::default(),
        environment: process_environment(),
    })
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
