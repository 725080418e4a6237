//! Per-machine rate limits of the token endpoint: a token bucket of `requestsPerSecond` on the
//! emulator clock and a cap of `maxConcurrent` requests in flight (azure-wire.md §1.1).
//! Enforced by a layer outside the journal layer; a refused request is marked with
//! [`Throttled`] and answered 429 by the handler, so it is journaled like any other.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::MachineContext;
use super::route::{self, Route};

/// Request extension: the limiter refused this request; retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: u64,
}

#[derive(Debug, Default)]
pub struct Limiter {
    bucket: Mutex<Bucket>,
    in_flight: AtomicU32,
}

/// A token bucket; `None` until first used (it starts full).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Bucket {
    state: Option<(f64, SystemTime)>,
}

impl Bucket {
    /// Takes one request's worth at `now`, or says how many whole seconds until one is there.
    pub fn take(&mut self, now: SystemTime, per_second: u32) -> Result<(), u64> {
        let rate = f64::from(per_second);
        let (level, last) = self.state.unwrap_or((rate, now));
        // The clock only moves backwards on an admin reset; treat that as no time passing.
        let elapsed = now.duration_since(last).map_or(0.0, |d| d.as_secs_f64());
        let level = (level + elapsed * rate).min(rate);
        if level >= 1.0 {
            self.state = Some((level - 1.0, now));
            Ok(())
        } else {
            self.state = Some((level, now));
            // With a whole number of requests per second, one request's worth refills within a
            // second at most.
            Err(1)
        }
    }
}

/// Holds one concurrency slot until dropped.
pub struct Permit<'a>(Option<&'a AtomicU32>);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(in_flight) = self.0 {
            in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Limiter {
    /// Admits one request under the current limits (0 = unlimited).
    pub fn admit(
        &self,
        now: SystemTime,
        per_second: u32,
        max_concurrent: u32,
    ) -> Result<Permit<'_>, Throttled> {
        let permit = if max_concurrent == 0 {
            Permit(None)
        } else {
            if self.in_flight.fetch_add(1, Ordering::AcqRel) >= max_concurrent {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                return Err(Throttled { retry_after: 1 });
            }
            Permit(Some(&self.in_flight))
        };
        if per_second > 0 {
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            // Dropping `permit` on refusal frees the slot again.
            bucket
                .take(now, per_second)
                .map_err(|retry_after| Throttled { retry_after })?;
        }
        Ok(permit)
    }

    /// Refills the bucket (admin reset). Requests in flight keep their slots.
    pub fn reset(&self) {
        *self.bucket.lock().unwrap_or_else(|p| p.into_inner()) = Bucket::default();
    }
}

/// The middleware: limits token requests only.
pub async fn enforce(State(ctx): State<MachineContext>, mut req: Request, next: Next) -> Response {
    if route::classify(req.uri().path()) != Route::Token {
        return next.run(req).await;
    }
    let knobs = ctx.knobs();
    match ctx.limiter.admit(
        ctx.shared.clock.now(),
        knobs.requests_per_second,
        knobs.max_concurrent,
    ) {
        Ok(_permit) => next.run(req).await,
        Err(throttled) => {
            req.extensions_mut().insert(throttled);
            next.run(req).await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_starts_full_and_refills_at_the_rate() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut bucket = Bucket::default();
        assert_eq!(bucket.take(t0, 2), Ok(()));
        assert_eq!(bucket.take(t0, 2), Ok(()));
        assert_eq!(bucket.take(t0, 2), Err(1));
        assert_eq!(bucket.take(t0 + Duration::from_millis(500), 2), Ok(()));
        assert_eq!(bucket.take(t0 + Duration::from_millis(500), 2), Err(1));
        assert_eq!(bucket.take(t0 + Duration::from_secs(60), 2), Ok(()));
        assert_eq!(bucket.take(t0 + Duration::from_secs(60), 2), Ok(()));
        assert_eq!(bucket.take(t0 + Duration::from_secs(60), 2), Err(1));
        // A clock moved backwards refills nothing but does not wedge the bucket either.
        assert_eq!(bucket.take(t0, 2), Err(1));
        assert_eq!(bucket.take(t0 + Duration::from_secs(61), 2), Ok(()));
    }

    #[test]
    fn concurrency_slots_are_returned_when_permits_drop() {
        let limiter = Limiter::default();
        let now = SystemTime::now();
        let first = limiter.admit(now, 0, 1).expect("first");
        assert_eq!(
            limiter.admit(now, 0, 1).err(),
            Some(Throttled { retry_after: 1 })
        );
        drop(first);
        assert!(limiter.admit(now, 0, 1).is_ok());
        assert!(limiter.admit(now, 0, 0).is_ok());
    }

    #[test]
    fn a_rate_refusal_frees_its_concurrency_slot() {
        let limiter = Limiter::default();
        let now = SystemTime::now();
        let held = limiter.admit(now, 1, 2).expect("first");
        assert!(limiter.admit(now, 1, 2).is_err());
        assert!(limiter.admit(now, 0, 2).is_ok());
        drop(held);
    }
}
