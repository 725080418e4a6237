//! `bench-nmi`: token requests through podid's NMI (a release binary run as a process, iptables
//! off, its IMDS the emulator's listener for one machine) from many pod IPs, at several
//! concurrencies, for cached tokens (hits) and tokens NMI must fetch (misses, each request a
//! distinct resource), and the same requests sent straight to the emulator's IMDS. Prints a
//! markdown table; `scripts/bench-nmi` runs it inside its own control plane.
//!
//! The pods exist only as API objects: each has `status.podIP` in 127.77.0.0/16 and an
//! `Assigned` AzureAssignedIdentity on this node, written here as MIC would write it. The load
//! generator's connections leave from the pods' IPs, so NMI sees each pod as its caller.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use podid_api::AzureAssignedIdentity;
use podid_bench::http1::Connection;
use podid_bench::process::{Resident, Usage, resident, usage};
use podid_bench::stats::Latencies;
use podid_emulator::clock::ClockMode;
use podid_emulator::{StartOptions, WorldFile};
use serde_json::json;
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(about = "Measures podid's NMI against direct IMDS calls (see docs/benchmarks.md)")]
struct Args {
    /// The `nmi` binary (built with the nmi-release profile).
    #[arg(long, default_value = "target/nmi-release/nmi")]
    nmi: PathBuf,
    /// Pods on the node, each with its own IP and AzureAssignedIdentity.
    #[arg(long, default_value_t = 250)]
    pods: usize,
    /// Identities the pods are spread over.
    #[arg(long, default_value_t = 10)]
    identities: usize,
    /// Requests per cache-hit row.
    #[arg(long, default_value_t = 50_000)]
    hit_requests: usize,
    /// Requests per cache-miss row (each one a resource nobody asked for before).
    #[arg(long, default_value_t = 5_000)]
    miss_requests: usize,
    /// Concurrencies (connections, each with one request in flight).
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    concurrency: Vec<usize>,
    /// Bound on each row's run time; a row that takes longer stops and says so.
    #[arg(long, default_value_t = 120)]
    row_timeout_secs: u64,
}

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SUBSCRIPTION: &str = "0b5e1f6c-7d3a-4e2b-9c8d-1a2b3c4d5e6f";
const GROUP: &str = "bench-rg";
const SCALE_SET: &str = "bench-pool";
const API_VERSION: &str = "2018-02-01";
const HIT_RESOURCE: &str = "https://management.azure.com/";

fn client_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{:012x}", 0xbe0000 + i)
}

fn identity_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/bench-id-{i}"
    )
}

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 77, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// A resource for the `n`th miss of a run: every request asks for one nobody asked for before.
fn miss_resource(run: &str, n: usize) -> String {
    format!("api://bench-{run}-{n}")
}

fn world(args: &Args, miss_runs: &[String]) -> String {
    let identities: Vec<_> = (0..args.identities)
        .map(|i| json!({"resourceGroup": GROUP, "name": format!("bench-id-{i}"), "clientId": client_id(i)}))
        .collect();
    let resources: Vec<String> = miss_runs
        .iter()
        .flat_map(|run| (0..args.miss_requests).map(move |n| miss_resource(run, n)))
        .collect();
    json!({
        "tenantId": TENANT,
        "subscriptions": [{"id": SUBSCRIPTION, "resourceGroups": [{"name": GROUP, "location": "eastus"}]}],
        "userAssignedIdentities": identities,
        "virtualMachineScaleSets": [{
            "resourceGroup": GROUP, "name": SCALE_SET,
            "identity": {"userAssigned": (0..args.identities).map(|i| format!("bench-id-{i}")).collect::<Vec<_>>()},
            "instances": [{"instanceId": "0"}],
        }],
        "resources": resources,
        // The benchmark measures NMI, not IMDS's per-machine limits.
        "knobs": {"imds": {"requestsPerSecond": 0, "maxConcurrent": 0}},
    })
    .to_string()
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Nmi,
    Direct,
}

struct Row {
    kind: &'static str,
    concurrency: usize,
    requests: usize,
    seconds: f64,
    latency: Latencies,
    /// NMI's CPU time for the row, per request (µs); None for direct rows.
    nmi_cpu_us: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    podid_bench::init_logging();
    let args = Args::parse();
    ensure!(args.pods <= 250 * 250, "at most 62500 pods (127.77.0.0/16)");
    let miss_runs: Vec<String> = args
        .concurrency
        .iter()
        .flat_map(|c| [format!("nmi-c{c}"), format!("direct-c{c}")])
        .collect();

    // The emulator, in this process (its CPU is not NMI's; NMI's is read from /proc).
    let dir = std::env::temp_dir().join(podid_testkit::unique_name("podid-bench-nmi"));
    std::fs::create_dir_all(&dir)?;
    let world = WorldFile::parse(&world(&args, &miss_runs))?;
    let emulator = podid_emulator::start(
        world,
        StartOptions {
            ca_file: Some(dir.join("ca.pem")),
            clock: ClockMode::Wall,
        },
    )
    .await?;
    let imds_url = emulator
        .endpoints
        .imds
        .values()
        .next()
        .context("the scale set's instance has an IMDS")?
        .clone();
    let imds: SocketAddr = imds_url.trim_start_matches("http://").parse()?;

    let env = podid_testkit::TestEnv::get().await;
    let kube = env.admin();
    let ns = env.namespace("bench-nmi").await;
    let node = podid_testkit::unique_name("bench-nmi-node");
    tracing::info!(pods = args.pods, %node, "creating pods and their assignments");
    create_pods(&kube, ns.name(), &node, &args).await?;

    let mut nmi = Nmi::start(&args.nmi, &node, env.kubeconfig_path(), &imds_url, &dir).await?;
    let result = measure(&args, &mut nmi, imds).await;
    let final_usage = usage(nmi.pid);
    nmi.stop().await;
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let (rows, after_hits) = result?;
    print_table(&args, &rows, after_hits, final_usage?);
    Ok(())
}

async fn create_pods(kube: &kube::Client, ns: &str, node: &str, args: &Args) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    let aais: Api<AzureAssignedIdentity> = Api::namespaced(kube.clone(), "default");
    let work: Vec<_> = (0..args.pods).collect();
    for chunk in work.chunks(25) {
        try_join_all(chunk.iter().map(|&i| {
            let (pods, aais) = (pods.clone(), aais.clone());
            async move {
                let name = format!("pod-{i}");
                let identity = i % args.identities;
                let selector = format!("bench-{identity}");
                let pod = podid_testkit::pod_on_node(
                    &name,
                    &[(podid_api::names::POD_LABEL_KEY, &selector)],
                    node,
                );
                pods.create(&PostParams::default(), &pod).await?;
                podid_testkit::set_pod_running(
                    kube,
                    ns,
                    &name,
                    &pod_ip(i).to_string(),
                    "10.0.0.1",
                )
                .await?;
                let aai: AzureAssignedIdentity = serde_json::from_value(json!({
                    "apiVersion": "aadpodidentity.k8s.io/v1",
                    "kind": "AzureAssignedIdentity",
                    "metadata": {"name": format!("{name}-{ns}-bench-{identity}"),
                                 "labels": {"nodename": node}},
                    "spec": {
                        "pod": name, "podNamespace": ns, "nodename": node,
                        "azureIdentityRef": {
                            "metadata": {"name": format!("bench-{identity}"), "namespace": ns},
                            "spec": {"type": 0, "resourceID": identity_id(identity), "clientID": client_id(identity)},
                        },
                        "azureBindingRef": {
                            "metadata": {"name": format!("bench-{identity}-binding"), "namespace": ns},
                            "spec": {"azureIdentity": format!("bench-{identity}"), "selector": selector},
                        },
                    },
                    "status": {"status": "Assigned", "availableReplicas": 1},
                }))?;
                aais.create(&PostParams::default(), &aai).await?;
                anyhow::Ok(())
            }
        }))
        .await?;
    }
    Ok(())
}

struct Nmi {
    child: Child,
    pid: u32,
    address: SocketAddr,
}

impl Nmi {
    /// Starts NMI on free loopback ports and waits until it is `Active`. A port can be taken
    /// between choosing it and NMI binding it (other processes share the machine), so a start
    /// whose process exits is tried again on other ports.
    async fn start(
        binary: &std::path::Path,
        node: &str,
        kubeconfig: &std::path::Path,
        imds: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        const STARTS: usize = 5;
        for start in 1..=STARTS {
            match Self::start_once(binary, node, kubeconfig, imds, dir).await? {
                Some(nmi) => return Ok(nmi),
                None => tracing::warn!(start, "nmi exited while starting; trying other ports"),
            }
        }
        bail!(
            "nmi exited {STARTS} times while starting (log in {})",
            dir.display()
        )
    }

    /// `None` when the process exited before it was `Active`.
    async fn start_once(
        binary: &std::path::Path,
        node: &str,
        kubeconfig: &std::path::Path,
        imds: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<Option<Self>> {
        let port = podid_testkit::free_loopback_port;
        let (nmi_port, probe, metrics, host) = (port()?, port()?, port()?, port()?);
        // No kubenet (upstream's guard reads the kubelet's defaults).
        let kubelet = dir.join("kubelet-defaults");
        std::fs::write(&kubelet, "KUBELET_FLAGS=--v=2\n")?;
        let log = std::fs::File::create(dir.join("nmi.log"))?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--node={node}"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--nmi-listen-address=127.0.0.1")
            .arg(format!("--nmi-port={nmi_port}"))
            .arg(format!("--http-probe-port={probe}"))
            .arg(format!("--prometheus-port={metrics}"))
            .arg(format!("--host-token-port={host}"))
            // Every endpoint is the emulator's loopback listener: nothing leaves the machine.
            .arg(format!("--imds-endpoint={imds}"))
            .arg("--default-ad-endpoint=https://127.0.0.1:9/")
            .arg(format!("--kubelet-config={}", kubelet.display()))
            .arg("--manage-iptables=false")
            // Its default logging (info) and environment, as deployed.
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        podid_testkit::without_proxies(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("nmi has a pid")?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(None);
            }
            let active = http
                .get(format!("http://127.0.0.1:{probe}/healthz"))
                .send()
                .await
                .ok()
                .map(|r| r.text());
            if let Some(body) = active
                && body.await.is_ok_and(|b| b == "Active")
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "nmi was not Active within 60 s (log in {})",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Some(Self {
            child,
            pid,
            address: SocketAddr::from(([127, 0, 0, 1], nmi_port)),
        }))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The request of pod `i` for `resource`: to NMI as a pod asks (no selector: NMI picks the
/// pod's identity), straight to IMDS as NMI asks it (the identity's client ID).
fn path(target: Target, args: &Args, i: usize, resource: &str) -> String {
    let resource = form_encode(resource);
    match target {
        Target::Nmi => {
            format!("/metadata/identity/oauth2/token?api-version={API_VERSION}&resource={resource}")
        }
        Target::Direct => format!(
            "/metadata/identity/oauth2/token?api-version={API_VERSION}&resource={resource}&client_id={}",
            client_id(i % args.identities)
        ),
    }
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn measure(
    args: &Args,
    nmi: &mut Nmi,
    imds: SocketAddr,
) -> anyhow::Result<(Vec<Row>, AfterHits)> {
    // Warm-up: NMI must have seen every pod (its watch) and cached each identity's token.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..args.pods {
        loop {
            let mut c = Connection::open(IpAddr::V4(pod_ip(i)), nmi.address).await?;
            let reply = c
                .get("169.254.169.254", &path(Target::Nmi, args, i, HIT_RESOURCE))
                .await?;
            if reply.status == 200 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "pod {i}: NMI answers {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut rows = Vec::new();
    let mut after_hits = AfterHits::default();
    // Hits first: NMI's memory after them is what 250 pods cost; misses add a token and
    // metric series per distinct resource.
    for (kind, requests) in [("hit", args.hit_requests), ("miss", args.miss_requests)] {
        if kind == "miss" {
            after_hits = AfterHits {
                usage: usage(nmi.pid)?,
                resident: resident(nmi.pid)?,
            };
        }
        for &concurrency in &args.concurrency {
            for target in [Target::Direct, Target::Nmi] {
                let server = if target == Target::Nmi {
                    nmi.address
                } else {
                    imds
                };
                let run = match target {
                    Target::Nmi => format!("nmi-c{concurrency}"),
                    Target::Direct => format!("direct-c{concurrency}"),
                };
                let before = usage(nmi.pid)?;
                let started = Instant::now();
                let latencies = tokio::time::timeout(
                    Duration::from_secs(args.row_timeout_secs),
                    drive(args, target, kind, &run, server, concurrency, requests),
                )
                .await
                .with_context(|| {
                    format!(
                        "{kind} c={concurrency} took over {} s",
                        args.row_timeout_secs
                    )
                })??;
                let seconds = started.elapsed().as_secs_f64();
                let after = usage(nmi.pid)?;
                let row = Row {
                    kind,
                    concurrency,
                    requests,
                    seconds,
                    latency: Latencies::of(latencies),
                    nmi_cpu_us: (target == Target::Nmi)
                        .then(|| (after.cpu_secs - before.cpu_secs) * 1e6 / requests as f64),
                };
                tracing::info!(
                    target = if target == Target::Nmi {
                        "nmi"
                    } else {
                        "direct"
                    },
                    kind,
                    concurrency,
                    rps = requests as f64 / seconds,
                    p50 = row.latency.p50_ms,
                    p99 = row.latency.p99_ms,
                    "row done"
                );
                rows.push(row);
            }
        }
    }
    Ok((rows, after_hits))
}

/// `requests` requests over `concurrency` workers. Worker w speaks for pods w, w+c, w+2c, …,
/// each over its own keep-alive connection from the pod's IP, in turn.
async fn drive(
    args: &Args,
    target: Target,
    kind: &'static str,
    run: &str,
    server: SocketAddr,
    concurrency: usize,
    requests: usize,
) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..concurrency).map(|w| {
        let next = next.clone();
        let run = run.to_owned();
        async move {
            let mut connections = Vec::new();
            for i in (w..args.pods).step_by(concurrency) {
                connections.push((i, Connection::open(IpAddr::V4(pod_ip(i)), server).await?));
            }
            if connections.is_empty() {
                // More workers than pods: this one shares pod w % pods.
                let i = w % args.pods;
                connections.push((i, Connection::open(IpAddr::V4(pod_ip(i)), server).await?));
            }
            let mut latencies = Vec::with_capacity(requests / concurrency + 1);
            let mut turn = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= requests {
                    break;
                }
                let count = connections.len();
                let (i, connection) = &mut connections[turn % count];
                turn += 1;
                let resource = if kind == "hit" {
                    HIT_RESOURCE.to_owned()
                } else {
                    miss_resource(&run, n)
                };
                let started = Instant::now();
                let reply = connection
                    .get("169.254.169.254", &path(target, args, *i, &resource))
                    .await?;
                latencies.push(started.elapsed());
                if reply.status != 200 {
                    bail!(
                        "pod {i}: {} {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    );
                }
            }
            anyhow::Ok(latencies)
        }
    });
    Ok(try_join_all(workers).await?.into_iter().flatten().collect())
}

/// NMI's memory once the warm-up and the cache-hit rows are done.
#[derive(Default)]
struct AfterHits {
    usage: Usage,
    resident: Resident,
}

fn print_table(args: &Args, rows: &[Row], after_hits: AfterHits, nmi: Usage) {
    println!(
        "| tokens | concurrency | direct req/s | NMI req/s | direct p50 ms | NMI p50 ms | direct p99 ms | NMI p99 ms | NMI adds at p99 ms | NMI CPU µs/req |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        let [direct, via] = pair else { continue };
        let rps = |r: &Row| r.requests as f64 / r.seconds;
        println!(
            "| {} ({} req) | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:+.3} | {:.1} |",
            if via.kind == "hit" {
                "cache hit"
            } else {
                "cache miss"
            },
            via.requests,
            via.concurrency,
            rps(direct),
            rps(via),
            direct.latency.p50_ms,
            via.latency.p50_ms,
            direct.latency.p99_ms,
            via.latency.p99_ms,
            via.latency.p99_ms - direct.latency.p99_ms,
            via.nmi_cpu_us.unwrap_or_default(),
        );
    }
    println!();
    println!(
        "NMI peak RSS {:.1} MiB with {} pods ({} identities) on its node after the warm-up and \
         the cache-hit rows (resident then: {:.1} MiB anonymous, {:.1} MiB file-backed code and \
         read-only data), {:.1} MiB after the cache-miss rows ({} distinct resources); NMI CPU \
         {:.1} s in all.",
        after_hits.usage.peak_rss_mib(),
        args.pods,
        args.identities,
        after_hits.resident.anon_mib(),
        after_hits.resident.file_mib(),
        nmi.peak_rss_mib(),
        args.miss_requests * args.concurrency.len(),
        nmi.cpu_secs
    );
}
