//! When a cycle runs after watch changes, and how long a burst of them is waited for
//! (docs/mic.md, "Debounce and bursts"). Pure: every decision takes `now`, so the timing rules have unit
//! tests.
//!
//! A scale set's PATCH carries what the cycle that started it saw; a pod that arrives after
//! it left needs a second PATCH and waits for the first one's operation to end. Bursts are
//! uneven: the ReplicaSet controller creates pods in batches of 1, 2, 4, … each after the
//! previous batch's creates returned, and a client opening new connections, or an API server
//! short of CPU, pauses for 100–300 ms between runs of events (docs/benchmarks.md, MIC
//! findings). So:
//!
//! * a lone change (one pod placed) runs a cycle once no change has come for `quiet`;
//! * once more than one input change (pods, nodes, identities, bindings; not the
//!   AzureAssignedIdentities, mostly MIC's own writes coming back) has come without a pause of
//!   `burst_quiet`, a burst is in progress: the cycle waits until it pauses for `burst_quiet`,
//!   at the latest `max` after its first change ([`Arrivals::hold`]). A cycle that runs during
//!   it anyway (a worker ended, a timer) holds back what a later change of the burst could
//!   undo or repeat;
//! * whatever comes, a cycle runs at the latest `max` after the first change it has not seen.

use std::time::Duration;

use tokio::time::Instant;

/// The timing rule; [`Debounce::default`] is MIC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// A cycle runs once no change has come for this long…
    pub quiet: Duration,
    /// …or, during a burst, no input change for this long.
    pub burst_quiet: Duration,
    /// The longest wait after the first change of either.
    pub max: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(100),
            // Longer than the pauses measured inside bursts on a loaded 2-core machine
            // (100–300 ms), small next to a scale set's PATCH.
            burst_quiet: Duration::from_millis(400),
            max: Duration::from_secs(1),
        }
    }
}

/// Changes from `first` to `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: Instant,
    last: Instant,
    changes: u64,
}

impl Span {
    fn at(now: Instant) -> Self {
        Self {
            first: now,
            last: now,
            changes: 0,
        }
    }
}

/// What the controller knows of recent changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Arrivals {
    /// Changes no cycle has seen yet.
    unseen: Option<Span>,
    /// The input changes of the current burst (kept across cycles until it pauses).
    burst: Option<Span>,
}

impl Arrivals {
    /// Records a wake-up by the watches at `now`, with `inputs` input changes since the last
    /// (0 when only AzureAssignedIdentities changed); returns when the cycle is due.
    pub fn record(&mut self, rule: &Debounce, inputs: u64, now: Instant) -> Instant {
        if inputs > 0 {
            if self
                .burst
                .is_some_and(|burst| now >= burst.last + rule.burst_quiet)
            {
                self.burst = None;
            }
            let burst = self.burst.get_or_insert(Span::at(now));
            burst.last = now;
            burst.changes += inputs;
        }
        let unseen = self.unseen.get_or_insert(Span::at(now));
        unseen.last = now;
        let (first, quiet) = (unseen.first, unseen.last + rule.quiet);
        let due = self.hold(rule, now).map_or(quiet, |until| until.max(quiet));
        due.min(first + rule.max)
    }

    /// The first change no cycle has seen, if any.
    pub fn first_unseen(&self) -> Option<Instant> {
        self.unseen.map(|span| span.first)
    }

    /// A cycle starts: it sees every change so far.
    pub fn seen(&mut self) {
        self.unseen = None;
    }

    /// While a burst is still arriving: until when it is held (its end, or `max` after its
    /// first change).
    pub fn hold(&self, rule: &Debounce, now: Instant) -> Option<Instant> {
        let burst = self.burst.filter(|burst| burst.changes > 1)?;
        let until = (burst.last + rule.burst_quiet).min(burst.first + rule.max);
        (until > now).then_some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    struct Clock {
        start: Instant,
        rule: Debounce,
        arrivals: Arrivals,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                rule: Debounce::default(),
                arrivals: Arrivals::default(),
            }
        }

        fn at(&self, ms: u32) -> Instant {
            self.start + ms * MS
        }

        /// `inputs` changes at `ms`; when the cycle is due, in ms from the start.
        fn change(&mut self, ms: u32, inputs: u64) -> Duration {
            let now = self.at(ms);
            self.arrivals.record(&self.rule, inputs, now) - self.start
        }

        /// Until when ARM waits at `ms`, in ms from the start.
        fn hold(&self, ms: u32) -> Option<Duration> {
            self.arrivals
                .hold(&self.rule, self.at(ms))
                .map(|until| until - self.start)
        }
    }

    #[test]
    fn a_lone_change_runs_a_cycle_after_the_short_pause_and_holds_nothing() {
        let mut clock = Clock::new();
        assert_eq!(clock.change(0, 1), 100 * MS);
        assert_eq!(clock.arrivals.first_unseen(), Some(clock.at(0)));
        clock.arrivals.seen();
        assert_eq!(clock.hold(100), None);
        assert_eq!(clock.arrivals.first_unseen(), None);
    }

    #[test]
    fn a_burst_waits_across_a_pause_within_it() {
        let mut clock = Clock::new();
        clock.change(0, 1);
        // Two pods, then a pause of 300 ms (new connections, a busy API server).
        assert_eq!(clock.change(20, 1), 420 * MS);
        assert_eq!(clock.hold(120), Some(420 * MS));
        assert_eq!(clock.change(320, 1), 720 * MS);
        assert_eq!(clock.hold(720), None);
    }

    #[test]
    fn several_inputs_at_one_wake_up_make_a_burst() {
        let mut clock = Clock::new();
        assert_eq!(clock.change(0, 3), 400 * MS);
    }

    #[test]
    fn mics_own_writes_wake_a_cycle_but_make_no_burst() {
        let mut clock = Clock::new();
        clock.change(0, 1);
        clock.arrivals.seen();
        // The echoes of the objects the cycle wrote.
        assert_eq!(clock.change(110, 0), 210 * MS);
        assert_eq!(clock.change(150, 0), 250 * MS);
        assert_eq!(clock.hold(250), None);
    }

    #[test]
    fn a_cycle_during_a_burst_sees_the_hold_and_echoes_do_not_end_it() {
        let mut clock = Clock::new();
        clock.change(0, 2);
        // A worker ended: a cycle runs at 50 ms, while the burst goes on.
        clock.arrivals.seen();
        assert_eq!(clock.hold(50), Some(400 * MS));
        // That cycle's writes come back: the next cycle still waits for the burst.
        assert_eq!(clock.change(60, 0), 400 * MS);
    }

    #[test]
    fn a_steady_stream_runs_a_cycle_every_maximum_and_holds_only_the_first() {
        let mut clock = Clock::new();
        let mut due = Duration::ZERO;
        for ms in (0..=950).step_by(50) {
            due = clock.change(ms, 1);
        }
        assert_eq!(due, 1000 * MS);
        clock.arrivals.seen();
        assert_eq!(clock.hold(1000), None);
        // Still arriving: cycles every `max` or after a short pause, nothing held.
        assert_eq!(clock.change(1050, 1), 1150 * MS);
        assert_eq!(clock.hold(1050), None);
    }

    #[test]
    fn a_burst_ends_with_its_pause() {
        let mut clock = Clock::new();
        clock.change(0, 2);
        clock.arrivals.seen();
        // 400 ms later a lone change is a new, lone arrival.
        assert_eq!(clock.change(400, 1), 500 * MS);
        assert_eq!(clock.hold(400), None);
        // A second one makes it a burst again, from its own first change.
        assert_eq!(clock.change(450, 1), 850 * MS);
        assert_eq!(clock.hold(450), Some(850 * MS));
    }
}
