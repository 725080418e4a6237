//! `nmi`: podid's node agent. Flags and startup are in `podid_nmi::agent`.

use clap::Parser;
use podid_nmi::agent::{self, Flags, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match flags.log_format()? {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    agent::run(flags).await?;
    Ok(())
}
