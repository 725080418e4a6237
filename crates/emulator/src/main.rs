//! `azure-emulator --world <file>`: starts the emulator and prints where each surface listens.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "An Azure emulator (ARM, IMDS, Entra ID) for podid's tests and sandbox"
)]
struct Args {
    /// The world file (YAML or JSON); see docs/emulator.md.
    #[arg(long, env = "AZURE_EMULATOR_WORLD")]
    world: PathBuf,
    /// Where to write the CA certificate clients must trust (default: a file named after this
    /// process in the system temp dir, printed at start).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Also write the endpoints as JSON to this file (for scripts and tests).
    #[arg(long)]
    endpoints_file: Option<PathBuf>,
    /// How the emulator's clock moves: `wall` (wall time, moved forward by `POST /admin/clock`)
    /// or `manual` (frozen at start, moved only by `POST /admin/clock`).
    #[arg(long, default_value = "wall")]
    clock: podid_emulator::clock::ClockMode,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }

    let world = podid_emulator::WorldFile::load(&args.world)?;
    let ca_file = args.ca_file.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("azure-emulator-{}-ca.pem", std::process::id()))
    });
    let running = podid_emulator::start(
        world,
        podid_emulator::StartOptions {
            ca_file: Some(ca_file.clone()),
            clock: args.clock,
        },
    )
    .await
    .context("the emulator did not start")?;
    let e = &running.endpoints;
    println!("azure-emulator is running (world {})", args.world.display());
    println!("  ARM       {}/", e.arm);
    println!(
        "  Entra ID  {}/{}/",
        e.entra, running.shared.initial.tenant_id
    );
    println!("  admin     {}/admin/", e.admin);
    for (machine, url) in &e.imds {
        println!("  IMDS      {url}  ({machine})");
    }
    println!("  CA        {}", ca_file.display());
    if let Some(path) = &args.endpoints_file {
        std::fs::write(path, serde_json::to_vec_pretty(e)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    if args.ca_file.is_none() {
        // Ours to clean up: nobody asked for it to outlive the emulator.
        let _ = std::fs::remove_file(&ca_file);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
