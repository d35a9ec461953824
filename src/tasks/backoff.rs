//! Retry backoff. By default every retry of a task waits `retry_in`, as in Python pq. With
//! `backoff => 'exponential'`, retry k (0 for the first) waits `retry_in × 2^k`, at most
//! `retry_max` (default one hour), times a random factor between 0.5 and 1 ("equal jitter"),
//! so the retries of many jobs failing together spread out instead of all returning at once.
//! The job keeps Python pq's task shape: `backoff` and `retry_max` are two more keys of its data,
//! which Python pq ignores.

use crate::plumbing::error::raise;
use crate::queue::timespec::duration;
use crate::tasks::task::Task;
use pgrx::PgSqlErrorCode::*;
use std::time::Duration;

/// The only backoff besides the fixed `retry_in`.
pub const EXPONENTIAL: &str = "exponential";

/// `retry_max` when a task sets none.
pub const DEFAULT_MAX: Duration = Duration::from_secs(3600);

/// Checks a task's `backoff` and `retry_max` arguments when it is enqueued.
///
/// ```ignore
/// backoff::check(Some("exponential"), Some("10m"));
/// ```
pub fn check(backoff: Option<&str>, retry_max: Option<&str>) {
    if let Some(b) = backoff.filter(|b| *b != EXPONENTIAL) {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown backoff {b:?}"),
            "pass backoff => 'exponential', or leave it out to retry every retry_in",
        )
    }
    if let Some(m) = retry_max {
        if let Err(e) = duration(m) {
            raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid retry_max: {e}"),
                "pass the longest wait between retries, such as '10m' or '1h'",
            )
        }
    }
}

/// How long to wait before retrying `task` after its failed attempt number `retried + 1`;
/// an error message when its data holds a bad `retry_in`, `backoff` or `retry_max`.
///
/// ```ignore
/// let wait = backoff::delay(&task)?; // retry_in, or retry_in × 2^retried with jitter
/// ```
pub fn delay(task: &Task) -> Result<Duration, String> {
    let base = duration(&task.retry_in).map_err(|e| format!("retry_in {e}"))?;
    match task.backoff.as_deref() {
        None => Ok(base),
        Some(EXPONENTIAL) => {
            let max = match task.retry_max.as_deref() {
                Some(m) => duration(m).map_err(|e| format!("retry_max {e}"))?,
                None => DEFAULT_MAX,
            };
            let factor = 2f64.powi(task.retried.clamp(0, 62) as i32);
            let wait = base.as_secs_f64() * factor;
            let wait = wait.min(max.as_secs_f64());
            Ok(Duration::from_secs_f64(wait * (0.5 + 0.5 * random())))
        }
        Some(other) => Err(format!("backoff {other:?} is not 'exponential'")),
    }
}

/// A uniform number in [0, 1) from PostgreSQL's own random source.
fn random() -> f64 {
    let mut bytes = [0u8; 8];
    // SAFETY: fills our buffer.
    let ok = unsafe { pgrx::pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) };
    if !ok {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(retried: i64, backoff: Option<&str>, retry_max: Option<&str>) -> Task {
        Task {
            function: "f()".into(),
            args: vec![],
            kwargs: Default::default(),
            retried,
            max_retries: 10,
            retry_in: "10s".into(),
            timeout: None,
            backoff: backoff.map(Into::into),
            retry_max: retry_max.map(Into::into),
        }
    }

    #[test]
    fn fixed_retries_wait_retry_in() {
        assert_eq!(delay(&task(3, None, None)), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn exponential_retries_double_with_jitter_up_to_retry_max() {
        for (retried, low, high) in [
            (0, 5.0, 10.0),
            (1, 10.0, 20.0),
            (3, 40.0, 80.0),
            (20, 30.0, 60.0),
        ] {
            for _ in 0..50 {
                let d = delay(&task(retried, Some(EXPONENTIAL), Some("1m")))
                    .unwrap()
                    .as_secs_f64();
                assert!(
                    (low..=high).contains(&d),
                    "retry {retried}: {d}s not in {low}..{high}"
                );
            }
        }
        let d = delay(&task(40, Some(EXPONENTIAL), None)).unwrap();
        assert!(d <= DEFAULT_MAX && d >= DEFAULT_MAX / 2, "{d:?}");
    }

    #[test]
    fn bad_shapes_are_reported_not_retried() {
        assert!(delay(&task(0, Some("linear"), None))
            .unwrap_err()
            .contains("linear"));
        assert!(delay(&task(0, Some(EXPONENTIAL), Some("soon")))
            .unwrap_err()
            .contains("retry_max"));
    }
}
