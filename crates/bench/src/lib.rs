//! Shared pieces of podid's benchmarks (`bench-mic`, `bench-nmi`): latency percentiles, a
//! process's peak RSS and CPU time from /proc, a small HTTP/1.1 client whose connections leave
//! from a chosen loopback address, and reading the emulator's counters.

pub mod emulator;
pub mod http1;
pub mod process;
pub mod stats;

/// Logs to stderr (stdout carries the table), filtered by `RUST_LOG`, `info` by default.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
