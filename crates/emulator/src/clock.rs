//! The emulator's clock. Every surface reads time from it (token lifetimes, LRO deadlines,
//! IMDS propagation and revocation windows, throttle buckets and windows, IMDS rate limits), so
//! tests move time instead of sleeping. Two modes:
//! - `wall`: wall time plus an offset that the admin API can move forward;
//! - `manual`: starts at the wall time of start (or reset) and moves only when advanced, so a
//!   test fully decides what "now" is.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How the clock moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Wall time plus whatever the clock was advanced by.
    #[default]
    Wall,
    /// Frozen: only [`Clock::advance`] moves it.
    Manual,
}

impl ClockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockMode::Wall => "wall",
            ClockMode::Manual => "manual",
        }
    }
}

impl fmt::Display for ClockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown clock mode {0:?} (expected wall or manual)")]
pub struct UnknownClockMode(String);

impl FromStr for ClockMode {
    type Err = UnknownClockMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wall" => Ok(ClockMode::Wall),
            "manual" => Ok(ClockMode::Manual),
            other => Err(UnknownClockMode(other.to_string())),
        }
    }
}

/// What the clock reads, relative to wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    /// `now = wall + ahead - behind` (behind only after switching from manual to wall).
    Wall { ahead: Duration, behind: Duration },
    /// `now` is fixed.
    Manual { at: SystemTime },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ClockState {
    reading: Reading,
    /// Total moved forward since start or reset, reported by the admin API.
    advanced: Duration,
}

impl ClockState {
    fn started(mode: ClockMode, wall: SystemTime) -> Self {
        let reading = match mode {
            ClockMode::Wall => Reading::Wall {
                ahead: Duration::ZERO,
                behind: Duration::ZERO,
            },
            ClockMode::Manual => Reading::Manual { at: wall },
        };
        Self {
            reading,
            advanced: Duration::ZERO,
        }
    }

    fn mode(&self) -> ClockMode {
        match self.reading {
            Reading::Wall { .. } => ClockMode::Wall,
            Reading::Manual { .. } => ClockMode::Manual,
        }
    }

    fn now(&self, wall: SystemTime) -> SystemTime {
        match self.reading {
            Reading::Wall { ahead, behind } => {
                let ahead = wall.checked_add(ahead).unwrap_or(wall);
                ahead.checked_sub(behind).unwrap_or(UNIX_EPOCH)
            }
            Reading::Manual { at } => at,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.advanced = self.advanced.saturating_add(by);
        match &mut self.reading {
            // Moving forward first uses up any lag, so the two never both grow.
            Reading::Wall { ahead, behind } => {
                if by >= *behind {
                    *ahead = ahead.saturating_add(by - *behind);
                    *behind = Duration::ZERO;
                } else {
                    *behind -= by;
                }
            }
            Reading::Manual { at } => *at = at.checked_add(by).unwrap_or(*at),
        }
    }

    /// Switches mode without a jump: the new mode continues from the current reading.
    fn set_mode(&mut self, mode: ClockMode, wall: SystemTime) {
        if mode == self.mode() {
            return;
        }
        let now = self.now(wall);
        self.reading = match mode {
            ClockMode::Manual => Reading::Manual { at: now },
            ClockMode::Wall => match now.duration_since(wall) {
                Ok(ahead) => Reading::Wall {
                    ahead,
                    behind: Duration::ZERO,
                },
                Err(e) => Reading::Wall {
                    ahead: Duration::ZERO,
                    behind: e.duration(),
                },
            },
        };
    }
}

/// The clock of one emulator instance.
#[derive(Debug)]
pub struct Clock {
    /// The mode chosen at start; a reset returns to it.
    start_mode: ClockMode,
    state: Mutex<ClockState>,
}

impl Clock {
    /// A clock reading the wall time now, in `mode`.
    pub fn new(mode: ClockMode) -> Self {
        Self {
            start_mode: mode,
            state: Mutex::new(ClockState::started(mode, SystemTime::now())),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.lock().now(SystemTime::now())
    }

    /// Unix seconds of [`Clock::now`].
    pub fn unix(&self) -> i64 {
        unix_seconds(self.now())
    }

    /// Moves the clock forward (in either mode).
    pub fn advance(&self, by: Duration) {
        self.lock().advance(by);
    }

    /// How far the clock has been moved forward since start or reset.
    pub fn advanced(&self) -> Duration {
        self.lock().advanced
    }

    pub fn mode(&self) -> ClockMode {
        self.lock().mode()
    }

    /// Switches mode; time continues from the current reading (no jump either way).
    pub fn set_mode(&self, mode: ClockMode) {
        self.lock().set_mode(mode, SystemTime::now());
    }

    /// Back to the mode chosen at start, reading the wall time now.
    pub fn reset(&self) {
        *self.lock() = ClockState::started(self.start_mode, SystemTime::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state is two plain values, always consistent; a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// RFC 3339 with seven fractional digits and `+00:00`, the form ARM uses in operation bodies.
pub fn arm_timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}+00:00",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_wall_clock_follows_wall_time_plus_what_it_was_advanced() {
        let mut state = ClockState::started(ClockMode::Wall, at(1000));
        assert_eq!(state.now(at(1000)), at(1000));
        assert_eq!(state.now(at(1007)), at(1007));
        state.advance(Duration::from_secs(3600));
        assert_eq!(state.now(at(1007)), at(4607));
        assert_eq!(state.advanced, Duration::from_secs(3600));
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let mut state = ClockState::started(ClockMode::Manual, at(1000));
        assert_eq!(state.now(at(5000)), at(1000));
        state.advance(Duration::from_millis(1500));
        assert_eq!(state.now(at(9000)), at(1000) + Duration::from_millis(1500));
        assert_eq!(state.advanced, Duration::from_millis(1500));
    }

    #[test]
    fn switching_modes_continues_from_the_current_reading() {
        let mut state = ClockState::started(ClockMode::Wall, at(1000));
        state.advance(Duration::from_secs(10));
        state.set_mode(ClockMode::Manual, at(1005));
        assert_eq!(state.mode(), ClockMode::Manual);
        assert_eq!(state.now(at(2000)), at(1015));
        // Back to wall time 100 s later: the frozen reading is now behind the wall.
        state.set_mode(ClockMode::Wall, at(1115));
        assert_eq!(state.now(at(1115)), at(1015));
        assert_eq!(state.now(at(1116)), at(1016));
        // Advancing uses up the lag before running ahead of the wall.
        state.advance(Duration::from_secs(30));
        assert_eq!(state.now(at(1116)), at(1046));
        state.advance(Duration::from_secs(100));
        assert_eq!(state.now(at(1116)), at(1146));
        assert_eq!(state.advanced, Duration::from_secs(140));
        // Setting the mode it already has changes nothing.
        let before = state;
        state.set_mode(ClockMode::Wall, at(9999));
        assert_eq!(state, before);
    }

    #[test]
    fn a_reset_returns_to_the_start_mode_and_forgets_advances() {
        let clock = Clock::new(ClockMode::Manual);
        clock.set_mode(ClockMode::Wall);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.advanced(), Duration::from_secs(3600));
        clock.reset();
        assert_eq!(clock.mode(), ClockMode::Manual);
        assert_eq!(clock.advanced(), Duration::ZERO);
        let frozen = clock.now();
        assert!(frozen <= SystemTime::now());
        assert_eq!(clock.now(), frozen);
    }

    #[test]
    fn modes_parse_from_their_names_only() {
        assert_eq!("wall".parse::<ClockMode>().ok(), Some(ClockMode::Wall));
        assert_eq!("manual".parse::<ClockMode>().ok(), Some(ClockMode::Manual));
        let err = "Manual".parse::<ClockMode>().expect_err("case matters");
        assert!(err.to_string().contains("wall or manual"), "{err}");
        for mode in [ClockMode::Wall, ClockMode::Manual] {
            assert_eq!(mode.to_string().parse::<ClockMode>().ok(), Some(mode));
        }
    }

    #[test]
    fn arm_timestamps_have_seven_fraction_digits() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        assert_eq!(arm_timestamp(t), "2026-01-01T00:00:00.1230000+00:00");
    }
}
