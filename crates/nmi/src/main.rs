//! `nmi`: podid's node agent. Flags and startup are in `podid_nmi::agent`.

use clap::Parser;
use podid_nmi::agent::{self, Flags, LogFormat};
use tracing_subscriber::EnvFilter;

// One thread: NMI answers from memory (a cached token is ~15 µs of CPU), and every worker
// thread would bring its own malloc arena and stack (docs/benchmarks.md, NMI findings).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stderr, as MIC and upstream's klog.
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a container's log is a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match flags.log_format()? {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    agent::run(flags).await?;
    Ok(())
}
