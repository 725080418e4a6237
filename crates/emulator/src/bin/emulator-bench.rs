//! `emulator-bench --scenario imds-token --requests N --concurrency C`: starts the emulator
//! in-process on loopback with rate limits off, drives one scenario with C keep-alive
//! connections from tokio tasks until N requests are answered, and prints one markdown table
//! row: scenario, requests, concurrency, req/s, p50 and p99 latency.
//!
//! The client is a minimal HTTP/1.1 keep-alive client over a TCP stream (one request in flight
//! per connection, `Content-Length` bodies), so the client costs little next to the server
//! it measures. A scenario is a request template plus the listener it targets; an HTTPS
//! scenario (ARM) needs a TLS stream in [`Connection`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::ImdsToken => "imds-token",
        }
    }

    /// The listener to connect to and the request to send on it.
    fn target(
        self,
        endpoints: &podid_emulator::Endpoints,
    ) -> anyhow::Result<(SocketAddr, Vec<u8>)> {
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
                Ok((address, request.into_bytes()))
            }
        }
    }
}

const MACHINE: &str = "bench-vm";

/// One VM with one user-assigned identity; IMDS rate limits off so the bench measures the
/// server, not the throttle.
const WORLD: &str = r#"
tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
subscriptions:
  - id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c
    resourceGroups: [{ name: bench-rg }]
userAssignedIdentities:
  - { resourceGroup: bench-rg, name: bench-identity, clientId: 0b6c0f5e-1111-4111-8111-111111111111 }
virtualMachines:
  - { resourceGroup: bench-rg, name: bench-vm, identity: { userAssigned: [bench-identity] } }
knobs:
  imds: { requestsPerSecond: 0, maxConcurrent: 0 }
"#;

/// A keep-alive HTTP/1.1 connection with one request in flight.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        stream.set_nodelay(true)?;
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

async fn drive(
    address: SocketAddr,
    request: Arc<Vec<u8>>,
    remaining: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let mut connection = Connection::open(address).await?;
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
    let (address, request) = args.scenario.target(&emulator.endpoints)?;

    // Warm-up: the first token answer signs with RSA; every later one comes from the cache.
    let warm = Connection::open(address).await?.exchange(&request).await?;
    if warm != 200 {
        bail!("the warm-up request answered {warm}");
    }

    let request = Arc::new(request);
    let remaining = Arc::new(AtomicU64::new(args.requests));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(drive(address, request.clone(), remaining.clone())))
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
