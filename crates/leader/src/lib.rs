//! Leader election for podid's controller (MIC).
//!
//! The lock is a `coordination.k8s.io/v1` Lease. During a migration from upstream AAD Pod
//! Identity, upstream's MIC leads through client-go's Endpoints lock of the same namespace and
//! name (`default/aad-pod-identity-mic`); podid reads that lock and never leads while it shows
//! a live holder other than itself, and it mirrors its own record into it, so an upstream MIC
//! started later waits for podid too (docs/leader.md). There are never two writers.
//!
//! Decisions are pure ([`decide`]); [`spawn`] runs the I/O loop.
//!
//! ```no_run
//! # async fn example(client: kube::Client) {
//! let config = podid_leader::LeaderConfig::new(podid_leader::hostname().unwrap());
//! let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
//! let (mut leading, task) = podid_leader::spawn(client, config, async move {
//!     let _ = shutdown_rx.await;
//! });
//! leading.wait_for(|leads| *leads).await.unwrap();
//! // … lead while `*leading.borrow()` …
//! let _ = shutdown_tx.send(());
//! task.await.unwrap().unwrap();
//! # }
//! ```

mod config;
pub mod decide;
mod elector;
mod error;
mod locks;
mod record;

pub use config::{DEFAULT_LEASE_DURATION, DEFAULT_NAME, DEFAULT_NAMESPACE, LeaderConfig, hostname};
pub use elector::spawn;
pub use error::LeaderError;
pub use locks::UNREADABLE_HOLDER;
pub use record::{LEADER_ANNOTATION, LeaderRecord};
