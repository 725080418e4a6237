//! Polling until the API server shows what a test expects.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use crate::Error;

/// The result of one check: ready with a value, or not yet (with what was seen instead).
pub trait Observation {
    type Value;
    fn into_result(self) -> Result<Self::Value, String>;
}

impl<T> Observation for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "the check returned None".to_owned())
    }
}

impl<T, E: Debug> Observation for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Runs `check` until it yields a value; panics naming `what` and the last observation after
/// `timeout`.
///
/// `check` may return `Option<T>` or `Result<T, E>`; with a `Result` the last `Err` is reported.
pub async fn wait_for<F, Fut, O>(what: &str, timeout: Duration, check: F) -> O::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Observation,
{
    match try_wait_for(what, timeout, check).await {
        Ok(value) => value,
        Err(e) => panic!("{e}"),
    }
}

/// [`wait_for`] that returns [`Error::Timeout`] instead of panicking.
pub async fn try_wait_for<F, Fut, O>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<O::Value, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Observation,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let last = match check().await.into_result() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn returns_the_first_ready_value() {
        let calls = Cell::new(0);
        let value = wait_for("the third call", Duration::from_secs(10), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_last_observation() {
        let err = try_wait_for("a pod", Duration::from_secs(1), || async {
            Err::<(), _>("phase Pending")
        })
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("a pod"), "{message}");
        assert!(message.contains("phase Pending"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waiting for nothing")]
    async fn wait_for_panics_on_timeout() {
        wait_for("nothing", Duration::from_secs(1), || async { None::<()> }).await;
    }
}
