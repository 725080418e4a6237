//! What a candidate does next, as a function of what it has seen: no API calls, no clock reads.
//!
//! Liveness is judged as client-go judges it, by this process's monotonic clock: a lock is live
//! while its record has not changed for less than the record's `leaseDurationSeconds`. The
//! record's own times are never compared with the local wall clock, so clock skew between
//! machines cannot make a live leader look expired.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::record::LeaderRecord;

/// The two locks: podid's own Lease, and upstream MIC's Endpoints lock of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Lease,
    Endpoints,
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lease => "Lease",
            Self::Endpoints => "Endpoints",
        })
    }
}

/// One lock's record (`None`: the object or its annotation is absent) and when this process first
/// saw it in this exact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub record: Option<LeaderRecord>,
    pub since: Instant,
}

impl Seen {
    /// The observation after reading `record` at `now`: `since` moves only when the record
    /// changed (client-go's `observedTime`).
    pub fn update(previous: Option<Seen>, record: Option<LeaderRecord>, now: Instant) -> Seen {
        match previous {
            Some(previous) if previous.record == record => previous,
            _ => Seen { record, since: now },
        }
    }

    /// The holder of a live record and when it expires; `None` when the lock is free: absent,
    /// released (no holder), or unchanged for its whole lease duration.
    pub fn live_holder(&self, now: Instant) -> Option<(&str, Option<Instant>)> {
        let record = self.record.as_ref()?;
        if record.holder_identity.is_empty() {
            return None;
        }
        let seconds = u64::try_from(record.lease_duration_seconds).unwrap_or(0);
        // A duration too large to add never expires.
        match self.since.checked_add(Duration::from_secs(seconds)) {
            Some(until) if until <= now => None,
            until => Some((record.holder_identity.as_str(), until)),
        }
    }
}

/// The candidate's own state.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub identity: &'a str,
    /// While leading: when the last successful renewal started.
    pub renewed: Option<Instant>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write this record to both locks: acquire, or renew.
    Write(LeaderRecord),
    /// Another holder's lock is live; try again later.
    Wait {
        lock: Lock,
        holder: String,
        until: Option<Instant>,
    },
    /// This process leads but can no longer show it: stop writing at once.
    StepDown(StepDown),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// The process is shutting down.
    Shutdown,
    /// No renewal succeeded within the renew deadline.
    RenewDeadline,
    /// A lock names someone else (an empty holder: someone else released it).
    TakenOver { lock: Lock, holder: String },
}

impl fmt::Display for StepDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown => f.write_str("shutting down"),
            Self::RenewDeadline => f.write_str("no renewal succeeded within the renew deadline"),
            Self::TakenOver { lock, holder } if holder.is_empty() => {
                write!(f, "the {lock} lock was released by someone else")
            }
            Self::TakenOver { lock, holder } => write!(f, "the {lock} lock now names {holder:?}"),
        }
    }
}

/// Decides from the candidate's state, both locks as seen, the monotonic `now` and the wall
/// clock `wall` (written into the record only).
pub fn decide(
    me: &Candidate<'_>,
    lease: &Seen,
    endpoints: &Seen,
    now: Instant,
    wall: Timestamp,
) -> Decision {
    let locks = [(Lock::Lease, lease), (Lock::Endpoints, endpoints)];
    if let Some(renewed) = me.renewed {
        if renewed
            .checked_add(me.renew_deadline)
            .is_none_or(|deadline| deadline <= now)
        {
            return Decision::StepDown(StepDown::RenewDeadline);
        }
        // Leading, so every present record should be ours; anything else was written by another.
        for (lock, seen) in locks {
            if let Some(record) = &seen.record
                && record.holder_identity != me.identity
            {
                return Decision::StepDown(StepDown::TakenOver {
                    lock,
                    holder: record.holder_identity.clone(),
                });
            }
        }
    } else {
        for (lock, seen) in locks {
            if let Some((holder, until)) = seen.live_holder(now)
                && holder != me.identity
            {
                return Decision::Wait {
                    lock,
                    holder: holder.to_owned(),
                    until,
                };
            }
        }
    }
    Decision::Write(next_record(me, lease, endpoints, wall))
}

/// The record to write: ours, keeping the acquire time while we already hold the Lease, and
/// counting a transition otherwise (client-go's rule). The count continues from the higher of the
/// two locks, so a takeover from upstream keeps counting.
fn next_record(
    me: &Candidate<'_>,
    lease: &Seen,
    endpoints: &Seen,
    wall: Timestamp,
) -> LeaderRecord {
    let transitions = [lease, endpoints]
        .iter()
        .filter_map(|seen| seen.record.as_ref())
        .map(|r| r.leader_transitions)
        .max();
    let held = lease
        .record
        .as_ref()
        .filter(|r| r.holder_identity == me.identity);
    let (acquire_time, leader_transitions) = match (held, transitions) {
        (Some(held), _) => (held.acquire_time.or(Some(wall)), transitions.unwrap_or(0)),
        (None, Some(t)) => (Some(wall), t.saturating_add(1)),
        (None, None) => (Some(wall), 0),
    };
    LeaderRecord {
        holder_identity: me.identity.to_owned(),
        lease_duration_seconds: lease_seconds(me.lease_duration),
        acquire_time,
        renew_time: Some(wall),
        leader_transitions,
    }
}

/// Whole seconds, rounded up so others never wait less than this process assumes.
pub fn lease_seconds(duration: Duration) -> i32 {
    let seconds = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    const LEASE: Duration = Duration::from_secs(15);
    const RENEW: Duration = Duration::from_millis(7500);

    fn wall() -> Timestamp {
        "2024-05-01T10:00:00Z".parse().unwrap()
    }

    fn record(holder: &str, seconds: i32, transitions: i32) -> LeaderRecord {
        LeaderRecord {
            holder_identity: holder.into(),
            lease_duration_seconds: seconds,
            acquire_time: Some("2024-05-01T09:00:00Z".parse().unwrap()),
            renew_time: Some("2024-05-01T09:59:59Z".parse().unwrap()),
            leader_transitions: transitions,
        }
    }

    fn seen(record: Option<LeaderRecord>, since: Instant) -> Seen {
        Seen { record, since }
    }

    fn candidate(renewed: Option<Instant>) -> Candidate<'static> {
        Candidate {
            identity: "podid-a",
            renewed,
            lease_duration: LEASE,
            renew_deadline: RENEW,
        }
    }

    #[test]
    fn free_locks_are_acquired_with_a_fresh_record() {
        let t0 = Instant::now();
        let decision = decide(
            &candidate(None),
            &seen(None, t0),
            &seen(None, t0),
            t0,
            wall(),
        );
        assert_eq!(
            decision,
            Decision::Write(LeaderRecord {
                holder_identity: "podid-a".into(),
                lease_duration_seconds: 15,
                acquire_time: Some(wall()),
                renew_time: Some(wall()),
                leader_transitions: 0,
            })
        );
    }

    #[test]
    fn a_live_upstream_endpoints_lock_blocks_until_it_stays_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let upstream = seen(Some(record("mic-old", 15, 7)), t0);
        let lease = seen(None, t0);
        let before = decide(
            &candidate(None),
            &lease,
            &upstream,
            t0 + Duration::from_secs(14),
            wall(),
        );
        assert_eq!(
            before,
            Decision::Wait {
                lock: Lock::Endpoints,
                holder: "mic-old".into(),
                until: Some(t0 + LEASE)
            }
        );
        let Decision::Write(taken) =
            decide(&candidate(None), &lease, &upstream, t0 + LEASE, wall())
        else {
            panic!("an expired lock is free");
        };
        assert_eq!(
            taken.leader_transitions, 8,
            "the count continues upstream's"
        );
        assert_eq!(taken.acquire_time, Some(wall()));
    }

    #[test]
    fn a_released_lock_is_free_at_once() {
        let t0 = Instant::now();
        let released = record("mic-old", 15, 2).released(wall());
        let decision = decide(
            &candidate(None),
            &seen(Some(released), t0),
            &seen(None, t0),
            t0,
            wall(),
        );
        assert!(matches!(decision, Decision::Write(r) if r.leader_transitions == 3));
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_the_count() {
        let t0 = Instant::now();
        let mine = record("podid-a", 15, 5);
        let decision = decide(
            &candidate(Some(t0)),
            &seen(Some(mine.clone()), t0),
            &seen(Some(mine.clone()), t0),
            t0 + Duration::from_secs(3),
            wall(),
        );
        assert_eq!(
            decision,
            Decision::Write(LeaderRecord {
                renew_time: Some(wall()),
                ..mine
            })
        );
    }

    #[test]
    fn a_restarted_holder_with_the_same_identity_takes_its_lock_back() {
        let t0 = Instant::now();
        let mine = record("podid-a", 15, 5);
        let decision = decide(
            &candidate(None),
            &seen(Some(mine.clone()), t0),
            &seen(Some(mine), t0),
            t0,
            wall(),
        );
        assert!(matches!(decision, Decision::Write(r) if r.leader_transitions == 5));
    }

    #[test]
    fn a_leader_steps_down_at_the_renew_deadline_even_if_the_locks_look_fine() {
        let t0 = Instant::now();
        let mine = seen(Some(record("podid-a", 15, 0)), t0);
        assert_eq!(
            decide(&candidate(Some(t0)), &mine, &mine, t0 + RENEW, wall()),
            Decision::StepDown(StepDown::RenewDeadline)
        );
    }

    #[test]
    fn a_leader_whose_lock_names_another_steps_down() {
        let t0 = Instant::now();
        let mine = seen(Some(record("podid-a", 15, 0)), t0);
        let theirs = seen(Some(record("intruder", 15, 1)), t0);
        assert_eq!(
            decide(&candidate(Some(t0)), &theirs, &mine, t0, wall()),
            Decision::StepDown(StepDown::TakenOver {
                lock: Lock::Lease,
                holder: "intruder".into()
            })
        );
        let released = seen(Some(record("x", 1, 0).released(wall())), t0);
        assert_eq!(
            decide(&candidate(Some(t0)), &mine, &released, t0, wall()),
            Decision::StepDown(StepDown::TakenOver {
                lock: Lock::Endpoints,
                holder: String::new()
            })
        );
    }

    #[test]
    fn a_leader_recreates_a_deleted_lock() {
        let t0 = Instant::now();
        let mine = seen(Some(record("podid-a", 15, 0)), t0);
        let decision = decide(&candidate(Some(t0)), &mine, &seen(None, t0), t0, wall());
        assert!(matches!(decision, Decision::Write(_)));
    }

    #[test]
    fn the_observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let first = Seen::update(None, Some(record("x", 15, 0)), t0);
        let same = Seen::update(Some(first.clone()), Some(record("x", 15, 0)), t1);
        assert_eq!(same.since, t0);
        let renewed = Seen::update(Some(same), Some(record("x", 15, 1)), t1);
        assert_eq!(renewed.since, t1);
    }

    #[test]
    fn absurd_durations_never_panic() {
        let t0 = Instant::now();
        let forever = seen(Some(record("x", i32::MAX, 0)), t0);
        assert!(
            forever
                .live_holder(t0 + Duration::from_secs(86_400))
                .is_some()
        );
        let negative = seen(Some(record("x", -5, 0)), t0);
        assert_eq!(negative.live_holder(t0), None);
        assert_eq!(lease_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(lease_seconds(Duration::MAX), i32::MAX);
    }

    fn arb_record() -> impl Strategy<Value = Option<LeaderRecord>> {
        prop::option::of(
            (
                prop::sample::select(vec!["", "podid-a", "podid-b", "mic-old"]),
                -2i32..30,
                0i32..5,
            )
                .prop_map(|(h, s, t)| record(h, s, t)),
        )
    }

    proptest! {
        /// The safety property: a candidate never writes over another holder's live lock, a
        /// leader never writes past its renew deadline or over a lock naming someone else, and
        /// what it writes always names itself.
        #[test]
        fn never_writes_over_a_live_holder(
            lease in arb_record(),
            endpoints in arb_record(),
            lease_age in 0u64..40_000,
            endpoints_age in 0u64..40_000,
            renewed_age in prop::option::of(0u64..20_000),
        ) {
            let base = Instant::now();
            let now = base + Duration::from_secs(60);
            let lease = seen(lease, now - Duration::from_millis(lease_age));
            let endpoints = seen(endpoints, now - Duration::from_millis(endpoints_age));
            let me = candidate(renewed_age.map(|a| now - Duration::from_millis(a)));
            match decide(&me, &lease, &endpoints, now, wall()) {
                Decision::Write(written) => {
                    prop_assert_eq!(written.holder_identity.as_str(), "podid-a");
                    prop_assert_eq!(written.lease_duration_seconds, 15);
                    for s in [&lease, &endpoints] {
                        if let Some((holder, _)) = s.live_holder(now) {
                            prop_assert_eq!(holder, "podid-a");
                        }
                        if me.renewed.is_some() && let Some(r) = &s.record {
                            prop_assert_eq!(r.holder_identity.as_str(), "podid-a");
                        }
                    }
                    if let Some(renewed) = me.renewed {
                        prop_assert!(now < renewed + RENEW);
                    }
                    let before = [&lease, &endpoints]
                        .iter()
                        .filter_map(|s| s.record.as_ref().map(|r| r.leader_transitions))
                        .max()
                        .unwrap_or(0);
                    prop_assert!(written.leader_transitions >= before);
                }
                Decision::Wait { holder, .. } => {
                    prop_assert!(me.renewed.is_none());
                    prop_assert_ne!(holder.as_str(), "podid-a");
                    prop_assert!(!holder.is_empty());
                }
                Decision::StepDown(_) => prop_assert!(me.renewed.is_some()),
            }
        }

        /// Liveness: two locks that are free (absent, released or expired) are always taken.
        #[test]
        fn free_locks_are_always_taken(
            lease in arb_record(),
            endpoints in arb_record(),
        ) {
            let base = Instant::now();
            let now = base + Duration::from_secs(60);
            let lease = seen(lease, base);
            let endpoints = seen(endpoints, base);
            let decision = decide(&candidate(None), &lease, &endpoints, now, wall());
            prop_assert!(matches!(decision, Decision::Write(_)), "{:?}", decision);
        }
    }
}
