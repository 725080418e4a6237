//! The thin I/O loop around [`decide`]: read both locks, decide, write, sleep a retry period.

use std::future::Future;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::decide::{Candidate, Decision, Seen, StepDown, decide};
use crate::locks::{CallError, Fetched, Locks};
use crate::{LeaderConfig, LeaderError};

/// Starts leader election on its own task.
///
/// The receiver is `true` exactly while this process leads: it turns `true` after both locks
/// name this candidate and turns `false` the moment leadership cannot be shown (renew deadline
/// passed, or a lock names someone else), before anything else happens. After a loss the task
/// goes on as a candidate. When `shutdown` completes, the receiver turns `false`, the locks this
/// candidate holds are released so a standby takes over at its next try, and the task ends.
///
/// The task ends with an error only for what retrying cannot fix: invalid settings, or the API
/// server refusing the credentials or RBAC (401/403).
pub fn spawn<F>(
    client: Client,
    config: LeaderConfig,
    shutdown: F,
) -> (watch::Receiver<bool>, JoinHandle<Result<(), LeaderError>>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let (leading, receiver) = watch::channel(false);
    let task = tokio::spawn(async move {
        config.validate()?;
        let elector = Elector {
            locks: Locks::new(client, &config),
            config,
            leading,
            lease: None,
            endpoints: None,
            renewed: None,
            fetched: Fetched::default(),
        };
        elector.run(shutdown).await
    });
    (receiver, task)
}

struct Elector {
    config: LeaderConfig,
    locks: Locks,
    leading: watch::Sender<bool>,
    lease: Option<Seen>,
    endpoints: Option<Seen>,
    /// While leading: when the last successful renewal started.
    renewed: Option<Instant>,
    /// The objects as last read, for the release.
    fetched: Fetched,
}

impl Elector {
    async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), LeaderError> {
        tracing::info!(
            identity = %self.config.identity,
            lock = %format!("{}/{}", self.config.namespace, self.config.name),
            lease_duration = ?self.config.lease_duration,
            "starting leader election (Lease, honouring and mirroring upstream's Endpoints lock)"
        );
        tokio::pin!(shutdown);
        loop {
            let started = Instant::now();
            // A leader's round may last until its renew deadline, a candidate's as long.
            let deadline = self.renewed.unwrap_or(started) + self.config.renew_deadline;
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                outcome = tokio::time::timeout_at(deadline.into(), self.round()) => match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.failed(e)?,
                    Err(_) => tracing::warn!(identity = %self.config.identity, "the API server did not answer in time"),
                },
            }
            if self
                .renewed
                .is_some_and(|r| r + self.config.renew_deadline <= Instant::now())
            {
                self.step_down(&StepDown::RenewDeadline);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep_until((started + self.config.retry_period).into()) => {}
            }
        }
        self.release().await;
        Ok(())
    }

    async fn round(&mut self) -> Result<(), CallError> {
        self.fetched = self.locks.fetch().await?;
        // Seen after the answer: the holder renewed no later than that.
        let seen_at = Instant::now();
        self.lease = Some(Seen::update(
            self.lease.take(),
            self.fetched.lease_record(),
            seen_at,
        ));
        self.endpoints = Some(Seen::update(
            self.endpoints.take(),
            self.fetched.endpoints_record(&self.config),
            seen_at,
        ));
        let (Some(lease), Some(endpoints)) = (&self.lease, &self.endpoints) else {
            return Ok(());
        };
        let me = Candidate {
            identity: &self.config.identity,
            renewed: self.renewed,
            lease_duration: self.config.lease_duration,
            renew_deadline: self.config.renew_deadline,
        };
        match decide(&me, lease, endpoints, Instant::now(), Timestamp::now()) {
            Decision::Write(record) => {
                // Others count from when they see the write, which is after it was sent.
                let sent = Instant::now();
                self.locks
                    .write_lease(self.fetched.lease.as_ref(), &record)
                    .await?;
                self.locks
                    .write_endpoints(self.fetched.endpoints.as_ref(), &record)
                    .await?;
                if self.renewed.replace(sent).is_none() {
                    tracing::info!(identity = %self.config.identity, transitions = record.leader_transitions, "became leader");
                    self.leading.send_replace(true);
                }
            }
            Decision::Wait {
                lock,
                holder,
                until,
            } => {
                let left = until.map(|u| u.saturating_duration_since(Instant::now()));
                tracing::debug!(identity = %self.config.identity, %lock, %holder, ?left, "another holder's lock is live");
            }
            Decision::StepDown(why) => self.step_down(&why),
        }
        Ok(())
    }

    fn step_down(&mut self, why: &StepDown) {
        if self.renewed.take().is_some() {
            // First of all: whoever watches stops writing.
            self.leading.send_replace(false);
            tracing::warn!(identity = %self.config.identity, reason = %why, "lost leadership");
        }
    }

    /// Logs a failed call; ends the elector when retrying cannot help.
    fn failed(&self, e: CallError) -> Result<(), LeaderError> {
        match e.code() {
            Some(code @ (401 | 403)) => {
                self.leading.send_replace(false);
                Err(LeaderError::Refused {
                    action: e.action,
                    code,
                    message: e.source.to_string(),
                })
            }
            // Another candidate wrote between our read and write: it won this round.
            Some(409) => {
                tracing::debug!(identity = %self.config.identity, action = %e.action, "lost a write race");
                Ok(())
            }
            _ => {
                tracing::warn!(identity = %self.config.identity, action = %e.action, error = %e.source, "leader election call failed");
                Ok(())
            }
        }
    }

    /// Gives up leadership and releases every lock that names this candidate, so a standby
    /// does not wait out the lease. Best effort: a failure is logged, the lease then expires.
    async fn release(mut self) {
        self.step_down(&StepDown::Shutdown);
        let release = async {
            let fetched = self.locks.fetch().await?;
            let mine = |r: &Option<crate::LeaderRecord>| {
                r.as_ref()
                    .filter(|r| r.holder_identity == self.config.identity)
                    .cloned()
            };
            let now = Timestamp::now();
            if let Some(held) = mine(&fetched.lease_record()) {
                self.locks
                    .write_lease(fetched.lease.as_ref(), &held.released(now))
                    .await?;
            }
            if let Some(held) = mine(&fetched.endpoints_record(&self.config)) {
                self.locks
                    .write_endpoints(fetched.endpoints.as_ref(), &held.released(now))
                    .await?;
            }
            Ok::<_, CallError>(())
        };
        match tokio::time::timeout(self.config.renew_deadline, release).await {
            Ok(Ok(())) => {
                tracing::info!(identity = %self.config.identity, "leader election stopped; locks released")
            }
            Ok(Err(e)) => {
                tracing::warn!(identity = %self.config.identity, action = %e.action, error = %e.source, "could not release the lock; it expires after the lease duration")
            }
            Err(_) => {
                tracing::warn!(identity = %self.config.identity, "releasing the lock timed out; it expires after the lease duration")
            }
        }
    }
}
