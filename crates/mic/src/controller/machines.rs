//! What the controller remembers about each VM or scale set between cycles: its identities as
//! last read or written, whether a worker is on it, its backoff, the identities ARM refused
//! (quarantine) and when each identity was last needed there (the grace-period clock).
//!
//! Pure: every decision takes `now`, so the timing rules have unit tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use podid_azure::arm::{IdentityChange, MachineId, MachineIdentity, RateLimits, plan_update};
use podid_azure::resource_id::ResourceId;
use tokio::time::Instant;

use crate::MachinePlan;

/// Exponential backoff: `base` doubled per failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1 for the first).
    pub fn after(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// When counters say this few requests are left, writers pause for [`Timing::retry`]'s base
/// before ARM starts throttling.
pub const LOW_REMAINING: u64 = 5;

/// The timing rules of the Azure side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// After a failed ARM call (unless ARM said how long to wait).
    pub retry: Backoff,
    /// For an identity ARM refused.
    pub quarantine: Backoff,
    /// A machine's identities older than this are read again (the drift repair).
    pub refresh: Duration,
    /// A machine ARM is still updating is read again after this (upstream's poll delay).
    pub update_recheck: Duration,
    /// How long MIC waits for a running update before it sends its PATCH anyway, as upstream
    /// always did (a machine can stay `Updating` for good).
    pub update_hold: Duration,
}

/// A machine's identities as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    identity: MachineIdentity,
    at: Instant,
}

#[derive(Debug, Default)]
struct MachineState {
    observed: Option<Observed>,
    /// The last call failed: `observed` is the best knowledge for settling, but the machine is
    /// read again before the next PATCH.
    reread: bool,
    busy: bool,
    not_before: Option<Instant>,
    failures: u32,
    /// The last failure, for events, until the machine succeeds again.
    last_error: Option<String>,
    /// Since when reads have shown an update of the machine running.
    updating_since: Option<Instant>,
    /// What the running worker takes off the machine: still in `observed`, but not to be
    /// counted on.
    leaving: BTreeSet<ResourceId>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Quarantine {
    failures: u32,
    until: Option<Instant>,
}

/// What to do for one machine this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send; look again at `recheck` (drift refresh).
    Idle { recheck: Option<Instant> },
    /// A worker is on it; its result will trigger a cycle.
    Busy,
    /// Backing off until then.
    Wait(Instant),
    /// Start a worker.
    Work(Box<Job>),
}

/// The ARM work for one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub machine: MachineId,
    pub change: IdentityChange,
    /// The identities to plan against; `None`: GET the machine first.
    pub known: Option<MachineIdentity>,
    /// When the GET shows an update running, end without a PATCH and without taking its
    /// identities as held: the update's changes may not be in force yet.
    pub wait_for_update: bool,
}

/// How a worker ended.
#[derive(Debug)]
pub struct Outcome {
    pub machine: MachineId,
    /// The machine's identities after the work; `None` when they are not known (the call
    /// failed).
    pub identity: Option<MachineIdentity>,
    pub failure: Option<Failure>,
    /// Identities ARM refused, with its reason; the rest of the change went ahead.
    pub refused: Vec<(ResourceId, String)>,
    pub rate_limits: RateLimits,
    /// The machine's update was still running (see [`Job::wait_for_update`]).
    pub updating: bool,
}

/// A failed ARM call, as the backoff needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub retry_after: Option<Duration>,
    /// ARM throttled the whole subscription (`SubscriptionRequestsThrottled`).
    pub subscription_throttled: bool,
}

/// Everything the controller remembers about machines.
#[derive(Debug, Default)]
pub struct Machines {
    machines: HashMap<MachineId, MachineState>,
    /// Subscription ID (lowercase) → writes paused until.
    subscriptions: HashMap<String, Instant>,
    quarantine: BTreeMap<ResourceId, Quarantine>,
    /// When each identity MIC still owns on a machine stopped being needed there: the grace
    /// period's clock.
    unneeded_since: HashMap<(MachineId, ResourceId), Instant>,
}

impl Machines {
    /// How long `id` has not been needed on `machine`; `None` when it was needed at the last
    /// cycle (or never seen), so that its grace starts now.
    pub fn unneeded_for(
        &self,
        machine: &MachineId,
        id: &ResourceId,
        now: Instant,
    ) -> Option<Duration> {
        self.unneeded_since
            .get(&(machine.clone(), id.clone()))
            .map(|at| now.saturating_duration_since(*at))
    }

    /// Records the cycle's plans on the grace clock: an identity deferred or removed starts
    /// its grace now unless it had started already. A needed one has none: every change of
    /// the inputs runs a cycle, so an identity needed at the last cycle was needed until just
    /// now, however long ago that cycle ran. Entries for anything else are dropped, so the map
    /// stays as big as the plans.
    pub fn record_grace_clocks(&mut self, plans: &[MachinePlan], now: Instant) {
        let mut kept = HashMap::new();
        for plan in plans {
            for id in plan.deferred.keys().chain(&plan.change.remove) {
                let key = (plan.machine.clone(), id.clone());
                let since = self.unneeded_since.get(&key).copied().unwrap_or(now);
                kept.insert(key, since);
            }
        }
        self.unneeded_since = kept;
    }

    /// Identities not to add now (refused by ARM, their backoff running).
    pub fn quarantined(&self, now: Instant) -> BTreeSet<ResourceId> {
        self.quarantine
            .iter()
            .filter(|(_, q)| q.until.is_some_and(|until| until > now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What to do for `plan`'s machine now.
    pub fn step(&self, plan: &MachinePlan, now: Instant, timing: &Timing) -> Step {
        let state = self.machines.get(&plan.machine);
        if state.is_some_and(|s| s.busy) {
            return Step::Busy;
        }
        let subscription = self
            .subscriptions
            .get(
                &plan
                    .machine
                    .resource_id()
                    .subscription_id()
                    .to_ascii_lowercase(),
            )
            .copied();
        let not_before = state
            .and_then(|s| s.not_before)
            .into_iter()
            .chain(subscription)
            .max();
        if let Some(until) = not_before.filter(|until| *until > now) {
            return Step::Wait(until);
        }
        let fresh = state
            .filter(|s| !s.reread)
            .and_then(|s| s.observed.as_ref())
            .filter(|o| now.saturating_duration_since(o.at) < timing.refresh);
        let wait_for_update = state
            .and_then(|s| s.updating_since)
            .is_none_or(|since| now.saturating_duration_since(since) < timing.update_hold);
        let Some(observed) = fresh else {
            return Step::Work(Box::new(Job {
                machine: plan.machine.clone(),
                change: plan.change.clone(),
                known: None,
                wait_for_update,
            }));
        };
        let patches = plan_update(&observed.identity, &plan.change);
        if patches.is_empty() {
            return Step::Idle {
                recheck: Some(observed.at + timing.refresh),
            };
        }
        // A PATCH that drops the whole map removes every user-assigned identity, also ones
        // added since the cache was filled: only on a fresh read.
        let clears_map = patches
            .iter()
            .any(|patch| !patch.identity_type.user_assigned);
        Step::Work(Box::new(Job {
            machine: plan.machine.clone(),
            change: plan.change.clone(),
            known: (!clears_map).then(|| observed.identity.clone()),
            wait_for_update,
        }))
    }

    /// A worker started on `machine`, taking `removing` off it.
    pub fn start(&mut self, machine: &MachineId, removing: &BTreeSet<ResourceId>) {
        let state = self.machines.entry(machine.clone()).or_default();
        state.busy = true;
        state.leaving = removing.clone();
    }

    /// A worker ended: cache, backoff and quarantine follow its outcome.
    pub fn finish(&mut self, outcome: &Outcome, now: Instant, timing: &Timing) {
        let state = self.machines.entry(outcome.machine.clone()).or_default();
        state.busy = false;
        state.leaving.clear();
        state.reread = outcome.identity.is_none();
        state.updating_since = match (outcome.updating, &outcome.failure) {
            (true, _) => Some(state.updating_since.unwrap_or(now)),
            // A failed call does not say the update ended: the hold keeps its start, so a
            // PATCH after the hold that fails (409 while still updating) is retried with
            // backoff, not held back another 15 minutes.
            (false, Some(_)) => state.updating_since,
            (false, None) => None,
        };
        if let Some(identity) = &outcome.identity {
            state.observed = Some(Observed {
                identity: identity.clone(),
                at: now,
            });
        }
        let subscription = outcome
            .machine
            .resource_id()
            .subscription_id()
            .to_ascii_lowercase();
        match &outcome.failure {
            Some(failure) => {
                state.failures += 1;
                let wait = failure
                    .retry_after
                    .unwrap_or_else(|| timing.retry.after(state.failures));
                state.not_before = Some(now + wait);
                state.last_error = Some(failure.message.clone());
                if failure.subscription_throttled {
                    self.pause_subscription(&subscription, now + wait);
                }
            }
            None => {
                state.failures = 0;
                state.not_before = outcome.updating.then_some(now + timing.update_recheck);
                state.last_error = None;
            }
        }
        if outcome
            .rate_limits
            .subscription_writes
            .is_some_and(|left| left < LOW_REMAINING)
        {
            self.pause_subscription(&subscription, now + timing.retry.base);
        }
        if outcome
            .rate_limits
            .lowest_resource()
            .is_some_and(|(_, left)| left < LOW_REMAINING)
        {
            let state = self.machines.entry(outcome.machine.clone()).or_default();
            let paced = now + timing.retry.base;
            state.not_before = Some(state.not_before.map_or(paced, |t| t.max(paced)));
        }
        for (id, _) in &outcome.refused {
            let entry = self.quarantine.entry(id.clone()).or_default();
            // Machines whose PATCHes were planned together, before the first refusal came
            // back, refuse it in the same round: one failure, not one per machine.
            if entry.until.is_some_and(|until| until > now) {
                continue;
            }
            entry.failures += 1;
            entry.until = Some(now + timing.quarantine.after(entry.failures));
        }
        if let Some(identity) = &outcome.identity {
            // An identity on a machine is evidently assignable.
            self.quarantine
                .retain(|id, _| !identity.user_assigned.contains_key(id));
        }
    }

    /// Holds writes to `subscription` until `until`; a longer pause already set stays (a 429's
    /// `Retry-After` is not cut short by the low-remaining pacing of the same answer).
    fn pause_subscription(&mut self, subscription: &str, until: Instant) {
        let pause = self
            .subscriptions
            .entry(subscription.to_owned())
            .or_insert(until);
        *pause = (*pause).max(until);
    }

    /// When the quarantine of `id` ends, if it is quarantined.
    pub fn quarantined_until(&self, id: &ResourceId, now: Instant) -> Option<Instant> {
        self.quarantine
            .get(id)
            .and_then(|q| q.until)
            .filter(|until| *until > now)
    }

    /// The machine's last failure, while it has not succeeded since.
    pub fn last_error(&self, machine: &MachineId) -> Option<&str> {
        self.machines.get(machine)?.last_error.as_deref()
    }

    /// The user-assigned identities of every machine whose identities are known.
    pub fn observed(&self) -> HashMap<MachineId, BTreeSet<ResourceId>> {
        self.machines
            .iter()
            .filter_map(|(machine, state)| {
                let observed = state.observed.as_ref()?;
                Some((
                    machine.clone(),
                    observed.identity.user_assigned.keys().cloned().collect(),
                ))
            })
            .collect()
    }

    /// The identities a running worker is taking off each machine (machines with none left
    /// out): an assignment must not count on them.
    pub fn leaving(&self) -> HashMap<MachineId, BTreeSet<ResourceId>> {
        self.machines
            .iter()
            .filter(|(_, state)| !state.leaving.is_empty())
            .map(|(machine, state)| (machine.clone(), state.leaving.clone()))
            .collect()
    }

    /// The earliest moment a quarantine ends.
    pub fn next_quarantine_end(&self, now: Instant) -> Option<Instant> {
        self.quarantine
            .values()
            .filter_map(|q| q.until)
            .filter(|until| *until > now)
            .min()
    }

    /// Ends every backoff (the cloud config changed: the cause may be gone).
    pub fn forget_backoff(&mut self) {
        self.subscriptions.clear();
        for state in self.machines.values_mut() {
            state.not_before = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use podid_azure::arm::{MachineKind, UserAssignedIdentity};

    use super::*;

    const SUB: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";

    fn timing() -> Timing {
        Timing {
            retry: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            quarantine: Backoff {
                base: Duration::from_secs(30),
                max: Duration::from_secs(600),
            },
            refresh: Duration::from_secs(180),
            update_recheck: Duration::from_secs(5),
            update_hold: Duration::from_secs(900),
        }
    }

    fn uami(name: &str) -> ResourceId {
        ResourceId::user_assigned_identity(SUB, "rg", name)
    }

    fn machine() -> MachineId {
        MachineId::new(MachineKind::VirtualMachineScaleSet, SUB, "rg", "pool")
    }

    fn identity(ids: &[&str]) -> MachineIdentity {
        MachineIdentity {
            identity_type: if ids.is_empty() {
                podid_azure::arm::IdentityType::NONE
            } else {
                podid_azure::arm::IdentityType::USER_ASSIGNED
            },
            user_assigned: ids
                .iter()
                .map(|id| (uami(id), UserAssignedIdentity::default()))
                .collect(),
            ..MachineIdentity::default()
        }
    }

    fn plan(add: &[&str], remove: &[&str]) -> MachinePlan {
        MachinePlan {
            machine: machine(),
            needed: add.iter().map(|id| uami(id)).collect(),
            change: IdentityChange {
                add: add.iter().map(|id| uami(id)).collect(),
                remove: remove.iter().map(|id| uami(id)).collect(),
            },
            deferred: BTreeMap::new(),
            held_back: BTreeSet::new(),
        }
    }

    fn outcome(identity: Option<MachineIdentity>, failure: Option<Failure>) -> Outcome {
        Outcome {
            machine: machine(),
            identity,
            failure,
            refused: Vec::new(),
            rate_limits: RateLimits::default(),
            updating: false,
        }
    }

    #[test]
    fn an_unknown_machine_is_read_first() {
        let machines = Machines::default();
        let now = Instant::now();
        match machines.step(&plan(&["a"], &[]), now, &timing()) {
            Step::Work(job) => assert_eq!(job.known, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_fresh_cache_skips_the_read_and_a_satisfied_plan_sends_nothing() {
        let mut machines = Machines::default();
        let now = Instant::now();
        machines.start(&machine(), &BTreeSet::new());
        machines.finish(&outcome(Some(identity(&["a"])), None), now, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Idle {
                recheck: Some(now + timing().refresh)
            }
        );
        match machines.step(&plan(&["a", "b"], &[]), now, &timing()) {
            Step::Work(job) => assert_eq!(job.known, Some(identity(&["a"]))),
            other => panic!("{other:?}"),
        }
        // Removing the last identity clears the map: read again first.
        match machines.step(&plan(&[], &["a"]), now, &timing()) {
            Step::Work(job) => assert_eq!(job.known, None),
            other => panic!("{other:?}"),
        }
        // After the refresh interval the cache is stale.
        let later = now + timing().refresh;
        match machines.step(&plan(&["a"], &[]), later, &timing()) {
            Step::Work(job) => assert_eq!(job.known, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_running_update_is_read_again_later_without_a_failure_until_the_hold_ends() {
        let mut machines = Machines::default();
        let start = Instant::now();
        let wait_for_update =
            |machines: &Machines, now| match machines.step(&plan(&["a"], &[]), now, &timing()) {
                Step::Work(job) => {
                    assert_eq!(job.known, None, "the machine is read again");
                    job.wait_for_update
                }
                other => panic!("{other:?}"),
            };
        assert!(wait_for_update(&machines, start));
        let updating = Outcome {
            updating: true,
            ..outcome(None, None)
        };
        machines.finish(&updating, start, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), start, &timing()),
            Step::Wait(start + timing().update_recheck)
        );
        assert_eq!(machines.last_error(&machine()), None);
        let mut now = start;
        while now < start + timing().update_hold {
            now += timing().update_recheck;
            machines.finish(&updating, now, &timing());
        }
        // Still running after the hold: the next worker PATCHes anyway, as upstream did.
        assert!(!wait_for_update(&machines, now + timing().update_recheck));
        // That PATCH failing (409: the update still runs) does not start a new hold: the
        // next try, after the backoff, PATCHes again.
        let conflict = Failure {
            message: "Conflict".into(),
            retry_after: None,
            subscription_throttled: false,
        };
        machines.finish(&outcome(None, Some(conflict)), now, &timing());
        let retry = now + timing().retry.base;
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(retry)
        );
        assert!(!wait_for_update(&machines, retry));
        // A read that shows the update ended starts the clock afresh.
        machines.finish(&outcome(Some(identity(&[])), None), now, &timing());
        machines.finish(&updating, now, &timing());
        assert!(wait_for_update(&machines, now + timing().update_recheck));
        // No failure was counted: a real failure backs off from the base.
        let failure = Failure {
            message: "boom".into(),
            retry_after: None,
            subscription_throttled: false,
        };
        machines.finish(&outcome(None, Some(failure)), now, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(now + timing().retry.base)
        );
    }

    #[test]
    fn a_busy_machine_waits_for_its_worker_and_what_it_removes_is_leaving_until_it_ends() {
        let mut machines = Machines::default();
        let removing = BTreeSet::from([uami("b")]);
        machines.start(&machine(), &removing);
        assert_eq!(
            machines.step(&plan(&["a"], &[]), Instant::now(), &timing()),
            Step::Busy
        );
        assert_eq!(
            machines.leaving(),
            HashMap::from([(machine(), removing.clone())])
        );
        machines.finish(
            &outcome(Some(identity(&["a"])), None),
            Instant::now(),
            &timing(),
        );
        assert!(machines.leaving().is_empty());
    }

    #[test]
    fn failures_back_off_exponentially_or_as_arm_says() {
        let mut machines = Machines::default();
        let now = Instant::now();
        let failure = |retry_after| Failure {
            message: "boom".into(),
            retry_after,
            subscription_throttled: false,
        };
        machines.finish(&outcome(None, Some(failure(None))), now, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(now + Duration::from_secs(1))
        );
        machines.finish(&outcome(None, Some(failure(None))), now, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(now + Duration::from_secs(2))
        );
        machines.finish(
            &outcome(None, Some(failure(Some(Duration::from_secs(17))))),
            now,
            &timing(),
        );
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(now + Duration::from_secs(17))
        );
        assert_eq!(machines.last_error(&machine()), Some("boom"));
        machines.finish(&outcome(Some(identity(&[])), None), now, &timing());
        assert!(matches!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Work(_)
        ));
        assert_eq!(machines.last_error(&machine()), None);
    }

    #[test]
    fn a_throttled_subscription_pauses_its_other_machines() {
        let mut machines = Machines::default();
        let now = Instant::now();
        let mut throttled = outcome(
            None,
            Some(Failure {
                message: "429".into(),
                retry_after: Some(Duration::from_secs(9)),
                subscription_throttled: true,
            }),
        );
        throttled.machine = MachineId::new(MachineKind::VirtualMachine, SUB, "rg", "vm");
        // ARM's 429 also says no writes remain: that pacing must not shorten Retry-After.
        throttled.rate_limits.subscription_writes = Some(0);
        machines.finish(&throttled, now, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(now + Duration::from_secs(9))
        );
    }

    #[test]
    fn low_remaining_writes_pace_the_subscription() {
        let mut machines = Machines::default();
        let now = Instant::now();
        let mut paced = outcome(Some(identity(&[])), None);
        paced.rate_limits.subscription_writes = Some(2);
        machines.finish(&paced, now, &timing());
        assert_eq!(
            machines.step(&plan(&["a"], &[]), now, &timing()),
            Step::Wait(now + Duration::from_secs(1))
        );
    }

    #[test]
    fn refused_identities_are_quarantined_with_a_growing_capped_backoff() {
        let mut machines = Machines::default();
        let now = Instant::now();
        let mut refused = outcome(Some(identity(&["a"])), None);
        refused.refused = vec![(uami("bad"), "FailedIdentityOperation".into())];
        machines.finish(&refused, now, &timing());
        assert_eq!(machines.quarantined(now), BTreeSet::from([uami("bad")]));
        assert_eq!(
            machines.quarantined_until(&uami("bad"), now),
            Some(now + Duration::from_secs(30))
        );
        // Another machine refusing it in the same round does not double the wait.
        let soon = now + Duration::from_secs(1);
        machines.finish(&refused, soon, &timing());
        assert_eq!(
            machines.quarantined_until(&uami("bad"), soon),
            Some(now + Duration::from_secs(30))
        );
        let mut later = now + Duration::from_secs(30);
        assert!(machines.quarantined(later).is_empty());
        let mut waits = Vec::new();
        for _ in 0..6 {
            machines.finish(&refused, later, &timing());
            let until = machines.quarantined_until(&uami("bad"), later).unwrap();
            waits.push((until - later).as_secs());
            later = until;
        }
        assert_eq!(waits, [60, 120, 240, 480, 600, 600]);
        // Seen on a machine: assignable after all.
        machines.finish(&outcome(Some(identity(&["bad"])), None), later, &timing());
        assert!(machines.quarantined(later).is_empty());
    }

    #[test]
    fn the_grace_clock_starts_when_an_identity_stops_being_needed() {
        let mut machines = Machines::default();
        let t0 = Instant::now();
        machines.record_grace_clocks(&[plan(&["a"], &[])], t0);
        // Needed at the last cycle, however long ago: no grace has run (no cycle ran
        // meanwhile because nothing changed, so it was needed until now).
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(machines.unneeded_for(&machine(), &uami("a"), t1), None);
        // No longer needed (deferred), or never seen needed: the grace starts now.
        let mut deferred = plan(&[], &[]);
        deferred.deferred.insert(uami("a"), Duration::from_secs(30));
        deferred.deferred.insert(uami("b"), Duration::from_secs(30));
        machines.record_grace_clocks(std::slice::from_ref(&deferred), t1);
        let t2 = t1 + Duration::from_secs(10);
        for id in ["a", "b"] {
            assert_eq!(
                machines.unneeded_for(&machine(), &uami(id), t2),
                Some(Duration::from_secs(10))
            );
        }
        // Still unneeded at the next cycle: the clock keeps its start.
        machines.record_grace_clocks(std::slice::from_ref(&deferred), t2);
        assert_eq!(
            machines.unneeded_for(&machine(), &uami("a"), t2 + Duration::from_secs(5)),
            Some(Duration::from_secs(15))
        );
        // Needed again: no grace left running.
        machines.record_grace_clocks(&[plan(&["a"], &[])], t2);
        assert_eq!(machines.unneeded_for(&machine(), &uami("a"), t2), None);
        // Gone from every plan: forgotten.
        machines.record_grace_clocks(std::slice::from_ref(&deferred), t2);
        machines.record_grace_clocks(&[], t2);
        assert_eq!(machines.unneeded_for(&machine(), &uami("a"), t2), None);
    }
}
