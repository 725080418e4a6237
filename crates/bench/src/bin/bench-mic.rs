//! `bench-mic`: podid's MIC or upstream's MIC (v1.8.17) against the real API server and the
//! Azure emulator, through a sequence of scenarios on 50 nodes in 5 scale sets with 20
//! identities. Prints one markdown row per scenario; `scripts/bench-mic` runs it inside a
//! loopback-only network namespace with its own control plane, once per MIC and setting.
//!
//! Layout: pod p has identity j = p % 20 and runs on scale set (j + (p/20) % 2) % 5, so each
//! identity lives on two scale sets and each scale set needs 8 identities. `move` puts new pods
//! on scale sets (j + 2 + (p/20) % 2) % 5: every scale set then needs 8 other identities.
//!
//! Scenarios (run in the order given; each starts from the state the previous left):
//! - `scale`: all pods created at once;
//! - `churn`: every second pod deleted and created again with the same name and node;
//! - `move`: a rolling move: new pods created on the moved layout, and once their identities
//!   are assigned, the old pods deleted (identities must reach some scale sets, then leave
//!   others).
//!
//! A scenario ends when every pod with a usable identity has an `Assigned` AzureAssignedIdentity,
//! no other AzureAssignedIdentity is left, and every scale set holds exactly the identities its
//! pods need; then it is watched for `--tail-secs` more, and counters are read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};
use podid_bench::emulator::{Counters, clear_counters, set_knobs, world};
use podid_bench::process::{Usage, find_by_exe_and_cwd, usage};
use podid_bench::stats::Latencies;
use podid_emulator::clock::ClockMode;
use podid_emulator::{StartOptions, WorldFile};
use podid_testkit::{AzureSide, UpstreamMic, UpstreamMicOptions};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(about = "Measures a MIC through scale and churn scenarios (see docs/benchmarks.md)")]
struct Args {
    #[arg(long, value_enum)]
    mic: Which,
    /// podid's `mic` binary (a release build).
    #[arg(long, default_value = "target/release/mic")]
    podid_mic: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// The emulator's long-running operation duration (ARM throttling is on, as by default).
    #[arg(long, default_value_t = 500)]
    lro_ms: u64,
    /// Identity 18 unassignable (MIC may not assign it) and identity 19 nonexistent.
    #[arg(long)]
    bad: bool,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "scale,churn,move"
    )]
    scenarios: Vec<Scenario>,
    /// Bound on one scenario; a scenario that has not settled by then is reported as such.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// How long a settled scenario is watched further before counters are read.
    #[arg(long, default_value_t = 10)]
    tail_secs: u64,
    /// Label of the run in the table (e.g. the setting).
    #[arg(long, default_value = "")]
    label: String,
    /// Print the table header first.
    #[arg(long)]
    header: bool,
    /// Keep the working directory (MIC's log) and print where it is.
    #[arg(long)]
    keep_logs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Which {
    Podid,
    Upstream,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Scenario {
    Scale,
    Churn,
    Move,
}

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SUBSCRIPTION: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
const NODE_RG: &str = "bench-nodes";
const NO_ROLE_RG: &str = "bench-no-role";
const MIC_CLIENT: &str = "11111111-1111-4111-8111-111111111111";
const MIC_SECRET: &str = "mic-secret";
const SCALE_SETS: usize = 5;
const INSTANCES: usize = 10;
const IDENTITIES: usize = 20;
const UNASSIGNABLE: usize = 18;
const NONEXISTENT: usize = 19;

fn identity_client_id(j: usize) -> String {
    format!("00000000-0000-4000-8000-{:012x}", 0xc0de00 + j)
}

fn identity_group(j: usize, bad: bool) -> &'static str {
    if bad && j == UNASSIGNABLE {
        NO_ROLE_RG
    } else {
        NODE_RG
    }
}

fn identity_id(j: usize, bad: bool) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/bench-id-{j}",
        identity_group(j, bad)
    )
}

fn usable(j: usize, bad: bool) -> bool {
    !bad || (j != UNASSIGNABLE && j != NONEXISTENT)
}

fn scale_set(s: usize) -> String {
    format!("bench-ss-{s}")
}

fn node(s: usize, k: usize) -> String {
    format!("node-{s}-{k}")
}

/// Where pod p runs: (scale set, instance), initially or after the move.
fn placement(p: usize, moved: bool) -> (usize, usize) {
    let j = p % IDENTITIES;
    let shift = if moved { 2 } else { 0 };
    (
        (j + shift + (p / IDENTITIES) % 2) % SCALE_SETS,
        (p / (2 * IDENTITIES)) % INSTANCES,
    )
}

fn world_yaml(bad: bool) -> String {
    let identities: Vec<Value> = (0..IDENTITIES)
        .filter(|&j| !(bad && j == NONEXISTENT))
        .map(|j| json!({"resourceGroup": identity_group(j, bad), "name": format!("bench-id-{j}"), "clientId": identity_client_id(j)}))
        .collect();
    let scale_sets: Vec<Value> = (0..SCALE_SETS)
        .map(|s| json!({
            "resourceGroup": NODE_RG, "name": scale_set(s),
            "instances": (0..INSTANCES).map(|k| json!({"instanceId": k.to_string()})).collect::<Vec<_>>(),
        }))
        .collect();
    let node_scope = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}");
    json!({
        "tenantId": TENANT,
        "subscriptions": [{"id": SUBSCRIPTION, "resourceGroups": [
            {"name": NODE_RG, "location": "eastus"}, {"name": NO_ROLE_RG, "location": "eastus"}]}],
        "userAssignedIdentities": identities,
        "virtualMachineScaleSets": scale_sets,
        "servicePrincipals": [{"clientId": MIC_CLIENT, "displayName": "mic", "secrets": [MIC_SECRET]}],
        // MIC may write the scale sets and assign the identities of the node group only.
        "roleAssignments": [
            {"principal": "mic", "role": "Virtual Machine Contributor", "scope": node_scope},
            {"principal": "mic", "role": "Managed Identity Operator", "scope": node_scope},
        ],
    })
    .to_string()
}

/// What the benchmark knows of pods and AzureAssignedIdentities, kept by a watch.
#[derive(Default)]
struct Tracker {
    /// AAI name → (pod, status).
    aais: HashMap<String, (String, String)>,
    pods: HashMap<String, PodTrack>,
}

struct PodTrack {
    created: Instant,
    identity: usize,
    /// When its AAI last became `Assigned` (None while it is not).
    assigned: Option<Instant>,
}

impl Tracker {
    fn pod_assigned(&self, pod: &str) -> bool {
        self.aais.values().any(|(p, s)| p == pod && s == "Assigned")
    }

    fn observe(&mut self, aai: &AzureAssignedIdentity, deleted: bool) {
        let name = aai.metadata.name.clone().unwrap_or_default();
        let pod = aai.spec.pod.clone().unwrap_or_default();
        let status = aai
            .status
            .as_ref()
            .and_then(|s| s.status.clone())
            .map(String::from)
            .unwrap_or_default();
        let was_assigned = self.pod_assigned(&pod);
        if deleted {
            self.aais.remove(&name);
        } else {
            self.aais.insert(name, (pod.clone(), status));
        }
        let is_assigned = self.pod_assigned(&pod);
        if let Some(track) = self.pods.get_mut(&pod) {
            if is_assigned && !was_assigned {
                track.assigned = Some(Instant::now());
            } else if !is_assigned {
                track.assigned = None;
            }
        }
    }
}

struct Bench {
    args: Args,
    kube: kube::Client,
    ns: String,
    http: reqwest::Client,
    admin: String,
    tracker: Arc<Mutex<Tracker>>,
    /// Pods now existing: name → p (its index in the layout) and whether it was moved.
    pods: BTreeMap<String, (usize, bool)>,
    /// Requests the benchmark itself made to the API server in the current scenario.
    own_requests: u64,
}

/// A MIC process, killed when dropped.
struct RunningMic {
    pid: u32,
    _podid: Option<Child>,
    _upstream: Option<UpstreamMic>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    podid_bench::init_logging();
    let args = Args::parse();
    // Upstream refuses outside a namespace with no route out; podid's MIC gets only loopback
    // endpoints, and the benchmark runs both in the same kind of namespace.
    podid_testkit::ensure_no_route_out()?;

    let dir = std::env::temp_dir().join(podid_testkit::unique_name("podid-bench-mic"));
    std::fs::create_dir_all(&dir)?;
    let emulator = podid_emulator::start(
        WorldFile::parse(&world_yaml(args.bad))?,
        StartOptions {
            ca_file: Some(dir.join("ca.pem")),
            clock: ClockMode::Wall,
        },
    )
    .await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let admin = emulator.endpoints.admin.clone();
    set_knobs(
        &http,
        &admin,
        &json!({"arm": {"lroDurationMs": args.lro_ms}}),
    )
    .await?;

    let env = podid_testkit::TestEnv::get().await;
    let kube = env.admin();
    let ns = env.namespace("bench-mic").await.name().to_owned();
    create_nodes_and_identities(&kube, &ns, args.bad).await?;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    spawn_watch(kube.clone(), tracker.clone()).await?;

    let mic = start_mic(&args, &emulator, env.kubeconfig_path(), &dir).await?;
    let mut bench = Bench {
        args,
        kube,
        ns,
        http,
        admin,
        tracker,
        pods: BTreeMap::new(),
        own_requests: 0,
    };
    if bench.args.header {
        println!("{}", header());
    }
    let scenarios = bench.args.scenarios.clone();
    let mut outcome = Ok(());
    for scenario in scenarios {
        match bench.run(scenario, &mic).await {
            Ok(row) => println!("{row}"),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    drop(mic);
    emulator.shutdown().await;
    if bench.args.keep_logs {
        eprintln!("logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

async fn create_nodes_and_identities(
    kube: &kube::Client,
    ns: &str,
    bad: bool,
) -> anyhow::Result<()> {
    for s in 0..SCALE_SETS {
        for k in 0..INSTANCES {
            let provider = format!(
                "azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{}/virtualMachines/{k}",
                scale_set(s)
            );
            podid_testkit::create_node(
                kube,
                &podid_testkit::node_with_provider_id(&node(s, k), &provider),
            )
            .await?;
        }
    }
    let identities: Api<AzureIdentity> = Api::namespaced(kube.clone(), ns);
    let bindings: Api<AzureIdentityBinding> = Api::namespaced(kube.clone(), ns);
    for j in 0..IDENTITIES {
        let identity: AzureIdentity = serde_json::from_value(json!({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
            "metadata": {"name": format!("id-{j}")},
            "spec": {"type": 0, "resourceID": identity_id(j, bad), "clientID": identity_client_id(j)},
        }))?;
        identities.create(&PostParams::default(), &identity).await?;
        let binding: AzureIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
            "metadata": {"name": format!("id-{j}-binding")},
            "spec": {"azureIdentity": format!("id-{j}"), "selector": format!("sel-{j}")},
        }))?;
        bindings.create(&PostParams::default(), &binding).await?;
    }
    Ok(())
}

/// Watches AzureAssignedIdentities of namespace `default` into the tracker; returns once the
/// first list is in.
async fn spawn_watch(kube: kube::Client, tracker: Arc<Mutex<Tracker>>) -> anyhow::Result<()> {
    let api: Api<AzureAssignedIdentity> = Api::namespaced(kube, "default");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Ok(watcher::Event::Apply(aai) | watcher::Event::InitApply(aai)) => {
                    t.observe(&aai, false)
                }
                Ok(watcher::Event::Delete(aai)) => t.observe(&aai, true),
                Ok(watcher::Event::InitDone) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Ok(watcher::Event::Init) => {}
                Err(error) => {
                    tracing::warn!(%error, "the AzureAssignedIdentity watch failed; retrying")
                }
            }
        }
    });
    ready_rx
        .await
        .context("the watch ended before its first list")
}

async fn start_mic(
    args: &Args,
    emulator: &podid_emulator::RunningEmulator,
    kubeconfig: &Path,
    dir: &Path,
) -> anyhow::Result<RunningMic> {
    let ca_file = dir.join("ca.pem");
    let arm = format!("{}/", emulator.endpoints.arm);
    let entra = format!("{}/", emulator.endpoints.entra);
    let started = Instant::now();
    let mic = match args.mic {
        Which::Upstream => {
            let mic = UpstreamMic::start(&UpstreamMicOptions {
                kubeconfig: kubeconfig.to_owned(),
                azure: AzureSide {
                    arm_base: arm,
                    entra_base: entra,
                    ca_file,
                    tenant_id: TENANT.into(),
                    client_id: MIC_CLIENT.into(),
                    client_secret: MIC_SECRET.into(),
                    subscription_id: SUBSCRIPTION.into(),
                    resource_group: NODE_RG.into(),
                },
                pod_namespace: "default".into(),
                instance: "bench".into(),
                leader_election_namespace: "default".into(),
                extra_args: Vec::new(),
            })
            .await?;
            let binary = podid_testkit::upstream_mic_binary()?.canonicalize()?;
            let mut pid = None;
            while pid.is_none() && started.elapsed() < Duration::from_secs(10) {
                pid = find_by_exe_and_cwd(&binary, &mic.dir().canonicalize()?).ok();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let pid = pid.context("upstream's MIC process")?;
            wait_until("upstream's MIC to lead", Duration::from_secs(60), || {
                mic.log().contains("successfully acquired lease")
            })
            .await?;
            RunningMic {
                pid,
                _podid: None,
                _upstream: Some(mic),
            }
        }
        Which::Podid => {
            let azure_json = dir.join("azure.json");
            let environment = dir.join("environment.json");
            std::fs::write(
                &environment,
                json!({"name": "AzureStackCloud", "resourceManagerEndpoint": arm, "activeDirectoryEndpoint": entra}).to_string(),
            )?;
            std::fs::write(
                &azure_json,
                json!({
                    "cloud": "AzureStackCloud", "tenantId": TENANT, "aadClientId": MIC_CLIENT,
                    "aadClientSecret": MIC_SECRET, "subscriptionId": SUBSCRIPTION,
                    "resourceGroup": NODE_RG, "vmType": "vmss", "useManagedIdentityExtension": false,
                })
                .to_string(),
            )?;
            let log_path = dir.join("mic.log");
            let log = std::fs::File::create(&log_path)?;
            let mut command = Command::new(&args.podid_mic);
            command
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .arg(format!("--cloudconfig={}", azure_json.display()))
                .arg(format!("--azure-ca-file={}", ca_file.display()))
                // Never the real IMDS: only loopback endpoints.
                .arg("--imds-endpoint=http://127.0.0.1:9/")
                // Port 0: the bound probe port is read from the log.
                .args([
                    "--http-probe-port=0",
                    "--prometheus-port=0",
                    "--log-format=json",
                ])
                .arg("--leader-election-instance=bench")
                .args(
                    std::env::var("BENCH_MIC_EXTRA")
                        .ok()
                        .iter()
                        .flat_map(|a| a.split_whitespace()),
                )
                .env("MIC_POD_NAMESPACE", "default")
                .env("AZURE_ENVIRONMENT_FILEPATH", &environment)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            podid_testkit::without_proxies(&mut command);
            let child = command
                .spawn()
                .with_context(|| format!("starting {}", args.podid_mic.display()))?;
            let pid = child.id().context("a pid")?;
            let http = reqwest::Client::builder().no_proxy().build()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let body = match podid_testkit::logged_listener(&log, "probe") {
                    Some(probe) => match http
                        .get(format!("http://127.0.0.1:{}/healthz", probe.port()))
                        .send()
                        .await
                    {
                        Ok(reply) => reply.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    },
                    None => String::new(),
                };
                if body == "Active" {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "podid's MIC did not lead within 60 s (log {})",
                    log_path.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            RunningMic {
                pid,
                _podid: Some(child),
                _upstream: None,
            }
        }
    };
    tracing::info!(mic = ?args.mic, seconds = started.elapsed().as_secs_f64(), "MIC leads");
    Ok(mic)
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `apiserver_request_total` summed by verb, without watches (counted when they end) and
/// without non-resource paths (`/metrics` itself).
async fn apiserver_requests(kube: &kube::Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = kube.request_text(request).await?;
    let mut by_verb = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\"")[..])
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let verb = label("verb");
        if verb == "WATCH" || label("resource").is_empty() {
            continue;
        }
        *by_verb.entry(verb).or_default() += value.parse::<f64>().unwrap_or_default() as u64;
    }
    Ok(by_verb)
}

impl Bench {
    fn expected_sets(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut sets: BTreeMap<String, BTreeSet<String>> = (0..SCALE_SETS)
            .map(|s| (scale_set(s), BTreeSet::new()))
            .collect();
        for &(p, moved) in self.pods.values() {
            let j = p % IDENTITIES;
            if usable(j, self.args.bad) {
                let (s, _) = placement(p, moved);
                sets.entry(scale_set(s))
                    .or_default()
                    .insert(format!("bench-id-{j}"));
            }
        }
        sets
    }

    async fn actual_sets(&self) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
        let snapshot = world(&self.http, &self.admin).await?;
        let mut sets = BTreeMap::new();
        for ss in snapshot["virtualMachineScaleSets"]
            .as_array()
            .context("scale sets")?
        {
            let names = ss["identity"]["userAssigned"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["id"].as_str()?.rsplit('/').next().map(str::to_owned))
                .collect();
            sets.insert(ss["name"].as_str().unwrap_or_default().to_owned(), names);
        }
        Ok(sets)
    }

    /// Why the state is not settled yet, or None.
    async fn unsettled(&self) -> anyhow::Result<Option<String>> {
        {
            let t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
            let waiting = self
                .pods
                .keys()
                .filter(|pod| {
                    t.pods.get(*pod).is_some_and(|track| {
                        usable(track.identity, self.args.bad) && track.assigned.is_none()
                    })
                })
                .count();
            if waiting > 0 {
                return Ok(Some(format!("{waiting} pods wait for Assigned")));
            }
            if t.aais.len() != self.pods.len() {
                return Ok(Some(format!(
                    "{} AzureAssignedIdentities for {} pods",
                    t.aais.len(),
                    self.pods.len()
                )));
            }
        }
        let (expected, actual) = (self.expected_sets(), self.actual_sets().await?);
        if expected != actual {
            let differ = expected
                .keys()
                .filter(|k| expected.get(*k) != actual.get(*k))
                .count();
            return Ok(Some(format!(
                "{differ} scale sets differ from what their pods need"
            )));
        }
        Ok(None)
    }

    async fn create_pods(&mut self, pods: Vec<(String, usize, bool)>) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.kube.clone(), &self.ns);
        self.own_requests += pods.len() as u64;
        let tracker = self.tracker.clone();
        let started = Instant::now();
        let mut done: Vec<Instant> = stream::iter(pods.iter().cloned())
            .map(|(name, p, moved)| {
                let (api, tracker) = (api.clone(), tracker.clone());
                async move {
                    let (s, k) = placement(p, moved);
                    let j = p % IDENTITIES;
                    let pod = podid_testkit::pod_on_node(
                        &name,
                        &[(podid_api::names::POD_LABEL_KEY, &format!("sel-{j}"))],
                        &node(s, k),
                    );
                    {
                        let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                        let assigned = t.pod_assigned(&name).then(Instant::now);
                        t.pods.insert(
                            name.clone(),
                            PodTrack {
                                created: Instant::now(),
                                identity: j,
                                assigned,
                            },
                        );
                    }
                    api.create(&PostParams::default(), &pod).await?;
                    anyhow::Ok(Instant::now())
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<_>>()
            .await?;
        // The longest pause between two creates, and how many came before it: what MIC's
        // debounce has to bridge (docs/benchmarks.md, MIC findings).
        done.sort();
        let (before, pause) = std::iter::once(started)
            .chain(done.iter().copied())
            .zip(&done)
            .map(|(previous, at)| at.saturating_duration_since(previous))
            .enumerate()
            .max_by_key(|(_, pause)| *pause)
            .unwrap_or_default();
        tracing::info!(
            pods = pods.len(),
            seconds = started.elapsed().as_secs_f64(),
            longest_pause_ms = pause.as_millis() as u64,
            created_before_it = before,
            "pods created"
        );
        for (name, p, moved) in pods {
            self.pods.insert(name, (p, moved));
        }
        Ok(())
    }

    async fn delete_pods(&mut self, names: Vec<String>) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.kube.clone(), &self.ns);
        self.own_requests += names.len() as u64;
        stream::iter(names.iter().cloned())
            .map(|name| {
                let api = api.clone();
                async move {
                    api.delete(&name, &DeleteParams::default().grace_period(0))
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<_>>()
            .await?;
        let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            self.pods.remove(&name);
            t.pods.remove(&name);
        }
        Ok(())
    }

    async fn settle(&self, deadline: Instant) -> anyhow::Result<Option<String>> {
        loop {
            let why = self.unsettled().await?;
            if why.is_none() || Instant::now() >= deadline {
                return Ok(why);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn run(&mut self, scenario: Scenario, mic: &RunningMic) -> anyhow::Result<String> {
        let n = self.args.pods;
        clear_counters(&self.http, &self.admin).await?;
        let api_before = apiserver_requests(&self.kube).await?;
        let cpu_before = usage(mic.pid)?.cpu_secs;
        self.own_requests = 0;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.args.timeout_secs);
        tracing::info!(?scenario, pods = n, "scenario starts");
        let mut measured: Vec<String> = Vec::new();
        let mut unsettled = None;
        match scenario {
            Scenario::Scale => {
                let pods: Vec<_> = (0..n).map(|p| (format!("pod-{p}"), p, false)).collect();
                measured.extend(pods.iter().map(|(name, _, _)| name.clone()));
                self.create_pods(pods).await?;
            }
            Scenario::Churn => {
                let victims: Vec<(String, usize, bool)> = self
                    .pods
                    .iter()
                    .filter(|(_, (p, _))| p % 2 == 0)
                    .map(|(name, &(p, moved))| (name.clone(), p, moved))
                    .collect();
                self.delete_pods(victims.iter().map(|v| v.0.clone()).collect())
                    .await?;
                measured.extend(victims.iter().map(|v| v.0.clone()));
                self.create_pods(victims).await?;
            }
            Scenario::Move => {
                let old: Vec<String> = self.pods.keys().cloned().collect();
                let pods: Vec<_> = (0..n).map(|p| (format!("moved-{p}"), p, true)).collect();
                measured.extend(pods.iter().map(|(name, _, _)| name.clone()));
                self.create_pods(pods).await?;
                // Rolling: old pods go once the new ones are served.
                unsettled = self.settle(deadline).await?;
                if unsettled.is_none() {
                    self.delete_pods(old).await?;
                }
            }
        }
        if unsettled.is_none() {
            unsettled = self.settle(deadline).await?;
        }
        let settled_after = started.elapsed();
        tokio::time::sleep(Duration::from_secs(self.args.tail_secs)).await;
        let still = self.unsettled().await?;

        let counters = Counters::read(&self.http, &self.admin).await?;
        let api_after = apiserver_requests(&self.kube).await?;
        let end = usage(mic.pid)?;
        let latency = {
            let t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
            let samples: Vec<Duration> = measured
                .iter()
                .filter_map(|pod| t.pods.get(pod))
                .filter_map(|track| Some(track.assigned?.saturating_duration_since(track.created)))
                .collect();
            Latencies::of(samples)
        };
        let api_delta: BTreeMap<String, u64> = api_after
            .iter()
            .map(|(verb, n)| {
                (
                    verb.clone(),
                    n - api_before.get(verb).copied().unwrap_or_default(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let api_total = api_delta
            .values()
            .sum::<u64>()
            .saturating_sub(self.own_requests);
        let usable_pods = measured
            .iter()
            .filter(|pod| {
                let p = self.pods.get(*pod).map_or(0, |(p, _)| *p);
                usable(p % IDENTITIES, self.args.bad)
            })
            .count();
        let row = Row {
            label: &self.args.label,
            mic: self.args.mic,
            scenario,
            pods: n,
            bad: self.args.bad,
            measured: usable_pods,
            latency,
            settled: unsettled.as_deref(),
            settled_after,
            still: still.as_deref(),
            counters: &counters,
            api_total,
            usage: Usage {
                peak_rss_kib: end.peak_rss_kib,
                cpu_secs: end.cpu_secs - cpu_before,
            },
        };
        tracing::info!(?scenario, ?api_delta, own = self.own_requests, counters = ?counters.0, "scenario done");
        if let Some(why) = &unsettled {
            tracing::warn!(?scenario, why, "not settled within the timeout");
        }
        Ok(row.render())
    }
}

struct Row<'a> {
    label: &'a str,
    mic: Which,
    scenario: Scenario,
    pods: usize,
    bad: bool,
    /// Pods created in the scenario whose identity is usable.
    measured: usize,
    latency: Latencies,
    settled: Option<&'a str>,
    settled_after: Duration,
    still: Option<&'a str>,
    counters: &'a Counters,
    api_total: u64,
    usage: Usage,
}

impl Row<'_> {
    /// Minimum ARM writes for the scenario: one PATCH per scale set whose identities change.
    fn minimum_writes(&self) -> usize {
        match self.scenario {
            Scenario::Scale => SCALE_SETS,
            Scenario::Churn => 0,
            // Adds before the old pods go, removals after.
            Scenario::Move => 2 * SCALE_SETS,
        }
    }

    fn render(&self) -> String {
        let c = self.counters;
        let gets = c.total("arm.vmss.get");
        let patches = c.total("arm.vmss.patch") + c.total("arm.vmss.put");
        let failed_writes =
            patches - c.with_status("arm.vmss.patch", "200") - c.with_status("arm.vmss.put", "200");
        let polls = c.total("arm.operation.get");
        let others: u64 =
            c.0.keys()
                .filter(|op| {
                    op.starts_with("arm.")
                        && ![
                            "arm.vmss.get",
                            "arm.vmss.patch",
                            "arm.vmss.put",
                            "arm.operation.get",
                        ]
                        .contains(&op.as_str())
                })
                .map(|op| c.total(op))
                .sum();
        let throttled = c.with_status("arm.", "429");
        let assigned = format!("{}/{}", self.latency.count, self.measured);
        let settled = match (self.settled, self.still) {
            (None, None) => format!("{:.1}", self.settled_after.as_secs_f64()),
            (None, Some(why)) => format!("{:.1} (then: {why})", self.settled_after.as_secs_f64()),
            (Some(why), _) => format!("no, after {:.0} s: {why}", self.settled_after.as_secs_f64()),
        };
        format!(
            "| {} | {} | {:?}{} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} ({} failed) / {} | {} | {} | {} | {} | {:.1} | {:.2} |",
            self.label,
            match self.mic {
                Which::Podid => "podid",
                Which::Upstream => "upstream",
            },
            self.scenario,
            if self.bad { " (bad ids)" } else { "" },
            self.pods,
            assigned,
            self.latency.p50_ms / 1e3,
            self.latency.p99_ms / 1e3,
            self.latency.max_ms / 1e3,
            settled,
            gets,
            patches,
            failed_writes,
            self.minimum_writes(),
            polls,
            others,
            throttled,
            self.api_total,
            self.usage.peak_rss_mib(),
            self.usage.cpu_secs,
        )
    }
}

/// The table header matching [`Row::render`].
fn header() -> &'static str {
    "| setting | MIC | scenario | pods | Assigned | p50 s | p99 s | max s | settled s | VMSS GET | VMSS PATCH (failed) / min | LRO polls | other ARM | 429s | API-server req | peak RSS MiB | CPU s |\n|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"
}
