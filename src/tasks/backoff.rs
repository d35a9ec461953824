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
            Ok(exponential(base, task.retried, max, random()))
        }
        Some(other) => Err(format!("backoff {other:?} is not 'exponential'")),
    }
}

/// `base × 2^retried`, at most `max`, times `0.5 + jitter / 2` (`jitter` in [0, 1)).
fn exponential(base: Duration, retried: i64, max: Duration, jitter: f64) -> Duration {
    let full = base.as_secs_f64() * 2f64.powi(retried.clamp(0, 62) as i32);
    Duration::from_secs_f64(full.min(max.as_secs_f64()) * (0.5 + 0.5 * jitter))
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

    #[test]
    fn exponential_retries_double_with_jitter_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(60));
        for (retried, low, high) in [
            (0, 5.0, 10.0),
            (1, 10.0, 20.0),
            (2, 20.0, 40.0),
            (3, 30.0, 60.0),
            (20, 30.0, 60.0),
        ] {
            for jitter in [0.0, 0.25, 0.5, 0.999] {
                let d = exponential(base, retried, max, jitter).as_secs_f64();
                assert!(
                    (low..=high).contains(&d),
                    "retry {retried}: {d}s not in {low}..{high}"
                );
            }
        }
        let d = exponential(base, 1_000, DEFAULT_MAX, 0.7);
        assert!(d <= DEFAULT_MAX && d >= DEFAULT_MAX / 2, "{d:?}");
        // A negative count (hand-written data) is the first retry.
        assert_eq!(
            exponential(base, -3, max, 0.5),
            exponential(base, 0, max, 0.5)
        );
    }
}
