//! `emulator-bench --scenario imds-token --requests N --concurrency C`: starts the emulator
//! in-process on loopback with rate limits off, drives one scenario with C keep-alive
//! connections from tokio tasks until N requests are answered, and prints one markdown table
//! row: scenario, requests, concurrency, req/s, p50 and p99 latency.
//!
//! The client is a minimal HTTP/1.1 keep-alive client over a TCP or TLS stream (one request in
//! flight per connection, `Content-Length` bodies), so the client costs little next to the
//! server it measures. A scenario is a request template plus the listener it targets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Measures the emulator's throughput and latency over loopback")]
struct Args {
    /// What to drive.
    #[arg(long, value_enum, default_value_t = Scenario::ImdsToken)]
    scenario: Scenario,
    /// Requests to send in total (after one warm-up request).
    #[arg(long, default_value_t = 50_000)]
    requests: u64,
    /// Connections, each driven by its own task with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// Print the markdown table header before the row.
    #[arg(long)]
    header: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// `GET /metadata/identity/oauth2/token` on one machine's IMDS (a cached token).
    ImdsToken,
    /// `GET` of a VM scale set over HTTPS, authenticated and authorized (RBAC) per request.
    ArmGet,
    /// `PATCH` of a scale set's identities (adding one that is already there) over HTTPS:
    /// authentication, RBAC incl. the linked `assign/action` check, validation, apply.
    ArmPatch,
    /// The same `PATCH` in asynchronous mode: every request starts a long-running operation
    /// (0 ms long, finished operations kept for 1 s), so the run shows whether completing and
    /// forgetting tens of thousands of operations slows ARM down.
    ArmPatchLro,
}

/// Where a scenario's requests go.
struct Target {
    address: SocketAddr,
    request: Vec<u8>,
    /// PEM of the CA to trust, for HTTPS listeners.
    tls_ca: Option<String>,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::ImdsToken => "imds-token",
            Scenario::ArmGet => "arm-get",
            Scenario::ArmPatch => "arm-patch",
            Scenario::ArmPatchLro => "arm-patch-lro",
        }
    }

    /// Knobs the scenario needs on top of the bench world's.
    fn knobs(self) -> Option<serde_json::Value> {
        match self {
            // Concurrent updates are allowed: each PATCH finishes the one before it, as a
            // controller retrying against a slow operation would.
            Scenario::ArmPatchLro => Some(serde_json::json!({"arm": {
                "lroMode": "async",
                "lroDurationMs": 0,
                "allowConcurrentUpdates": true,
                "operationRetentionSecs": 1,
            }})),
            _ => None,
        }
    }

    /// The listener to connect to and the request to send on it.
    fn target(self, emulator: &podid_emulator::RunningEmulator) -> anyhow::Result<Target> {
        let endpoints = &emulator.endpoints;
        match self {
            Scenario::ImdsToken => {
                let base = endpoints
                    .imds
                    .get(MACHINE)
                    .context("the bench world has no IMDS")?;
                let address = base
                    .strip_prefix("http://")
                    .and_then(|a| a.parse().ok())
                    .with_context(|| format!("unexpected IMDS address {base}"))?;
                let request = format!(
                    "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com HTTP/1.1\r\n\
                     Host: {address}\r\nMetadata: true\r\nUser-Agent: emulator-bench\r\n\r\n"
                );
                Ok(Target {
                    address,
                    request: request.into_bytes(),
                    tls_ca: None,
                })
            }
            Scenario::ArmGet | Scenario::ArmPatch | Scenario::ArmPatchLro => {
                let address = endpoints
                    .arm
                    .strip_prefix("https://")
                    .and_then(|a| a.parse().ok())
                    .with_context(|| format!("unexpected ARM address {}", endpoints.arm))?;
                let token = arm_token(emulator)?;
                let path = format!(
                    "/subscriptions/{SUBSCRIPTION}/resourceGroups/bench-rg/providers/Microsoft.Compute/virtualMachineScaleSets/bench-vmss?api-version=2019-12-01"
                );
                let body = format!(
                    r#"{{"identity":{{"type":"UserAssigned","userAssignedIdentities":{{"/subscriptions/{SUBSCRIPTION}/resourcegroups/bench-rg/providers/microsoft.managedidentity/userassignedidentities/bench-identity":{{}}}}}}}}"#
                );
                let (method, body) = match self {
                    Scenario::ArmPatch | Scenario::ArmPatchLro => ("PATCH", body),
                    _ => ("GET", String::new()),
                };
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: emulator-bench\r\n\r\n{body}",
                    body.len()
                );
                Ok(Target {
                    address,
                    request: request.into_bytes(),
                    tls_ca: Some(endpoints.ca_pem.clone()),
                })
            }
        }
    }
}

const SUBSCRIPTION: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
const BENCH_PRINCIPAL: &str = "0b6c0f5e-2222-4222-8222-222222222222";

/// An ARM token for the bench's service principal, minted by the emulator's own issuer.
fn arm_token(emulator: &podid_emulator::RunningEmulator) -> anyhow::Result<String> {
    let shared = &emulator.shared;
    let (tenant_id, object_id) = {
        let world = shared.world();
        let sp = world
            .service_principals
            .get(BENCH_PRINCIPAL)
            .context("the bench world has no service principal")?;
        (sp.tenant_id.clone(), sp.object_id.clone())
    };
    let request = podid_emulator::tokens::TokenRequest {
        tenant_id,
        resource: "https://management.azure.com/".into(),
        client_id: BENCH_PRINCIPAL.into(),
        object_id,
        subject: podid_emulator::tokens::Subject::ServicePrincipal { certificate: false },
        version: 1,
        lifetime_secs: 3600,
    };
    Ok(shared
        .tokens
        .issue(&request, shared.clock.unix())?
        .access_token)
}

const MACHINE: &str = "bench-vm";

/// One VM and one scale set with one user-assigned identity, and a service principal that may
/// update them. Rate limits and throttling are off and updates are synchronous, so the bench
/// measures the request path, not the throttle or the long-running-operation timer.
const WORLD: &str = r#"
tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
subscriptions:
  - id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c
    resourceGroups: [{ name: bench-rg }]
userAssignedIdentities:
  - { resourceGroup: bench-rg, name: bench-identity, clientId: 0b6c0f5e-1111-4111-8111-111111111111 }
virtualMachines:
  - { resourceGroup: bench-rg, name: bench-vm, identity: { userAssigned: [bench-identity] } }
virtualMachineScaleSets:
  - { resourceGroup: bench-rg, name: bench-vmss, identity: { userAssigned: [bench-identity] }, instances: [{ instanceId: "0" }] }
servicePrincipals:
  - { clientId: 0b6c0f5e-2222-4222-8222-222222222222, displayName: bench-mic, secrets: [bench] }
roleAssignments:
  - { principal: bench-mic, role: Virtual Machine Contributor, scope: /subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourceGroups/bench-rg }
  - { principal: bench-mic, role: Managed Identity Operator, scope: /subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourceGroups/bench-rg }
knobs:
  imds: { requestsPerSecond: 0, maxConcurrent: 0 }
  arm:
    lroMode: sync
    subscriptionReads: { capacity: 1.0e12, refillPerSecond: 1.0e12 }
    subscriptionWrites: { capacity: 1.0e12, refillPerSecond: 1.0e12 }
    computePolicies: { scaleSetGet: [], scaleSetUpdate: [] }
"#;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A keep-alive HTTP/1.1 connection with one request in flight.
struct Connection {
    stream: Box<dyn Io>,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(
        address: SocketAddr,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::from(address.ip());
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .context("TLS handshake")?,
                )
            }
            None => Box::new(tcp),
        };
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(8192),
        })
    }

    /// Sends `request` and reads the whole response; returns its status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let head_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await?;
        };
        let head =
            std::str::from_utf8(&self.buffer[..head_end]).context("response head is not UTF-8")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line in {head:?}"))?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
            .context("the response has no Content-Length")?;
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        Ok(status)
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Latencies of one connection's requests, and how many were not 200.
struct Outcome {
    latencies: Vec<Duration>,
    failures: u64,
}

/// A TLS connector that trusts only the emulator's CA.
fn tls_connector(ca_pem: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("the emulator CA is not PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn drive(
    address: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    request: Arc<Vec<u8>>,
    remaining: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let mut connection = Connection::open(address, tls.as_ref()).await?;
    let mut outcome = Outcome {
        latencies: Vec::new(),
        failures: 0,
    };
    // Each task claims one request at a time until the shared budget is spent.
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let started = Instant::now();
        let status = connection.exchange(&request).await?;
        outcome.latencies.push(started.elapsed());
        if status != 200 {
            outcome.failures += 1;
        }
    }
    Ok(outcome)
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let index = (sorted.len() * pct / 100).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.requests == 0 || args.concurrency == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    let world = podid_emulator::WorldFile::parse(WORLD)?;
    let emulator = podid_emulator::start(world, podid_emulator::StartOptions::default())
        .await
        .context("the emulator did not start")?;
    if let Some(knobs) = args.scenario.knobs() {
        emulator.shared.patch_knobs(&knobs)?;
    }
    let Target {
        address,
        request,
        tls_ca,
    } = args.scenario.target(&emulator)?;
    let tls = tls_ca.as_deref().map(tls_connector).transpose()?;

    // Warm-up: the first IMDS token answer signs with RSA; every later one comes from the cache.
    let warm = Connection::open(address, tls.as_ref())
        .await?
        .exchange(&request)
        .await?;
    if warm != 200 {
        bail!("the warm-up request answered {warm}");
    }

    let request = Arc::new(request);
    let remaining = Arc::new(AtomicU64::new(args.requests));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(drive(
                address,
                tls.clone(),
                request.clone(),
                remaining.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let outcome = task.await.context("a client task panicked")??;
        latencies.extend(outcome.latencies);
        failures += outcome.failures;
    }
    let elapsed = started.elapsed();
    emulator.shutdown().await;

    latencies.sort_unstable();
    // Precision loss only above 2^53 requests.
    #[allow(clippy::cast_precision_loss)]
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    if args.header {
        println!("| scenario | requests | concurrency | req/s | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|---:|");
    }
    println!(
        "| {} | {} | {} | {:.0} | {:.3} | {:.3} |",
        args.scenario.name(),
        latencies.len(),
        args.concurrency,
        rate,
        millis(percentile(&latencies, 50)),
        millis(percentile(&latencies, 99)),
    );
    if failures > 0 {
        bail!("{failures} of {} answers were not 200", latencies.len());
    }
    Ok(())
}
