//! Shared pieces of podid's benchmarks (`bench-mic`, `bench-nmi`): latency percentiles, a
//! process's peak RSS and CPU time from /proc, a small HTTP/1.1 client whose connections leave
//! from a chosen loopback address, and reading the emulator's counters.

pub mod emulator;
pub mod http1;
pub mod process;
pub mod stats;
