//! Time specs: when a job becomes ready (`schedule_at`) or is expected (`expected_at`).
//!
//! A spec is a human duration from now (`'5m'`, `'90s'`, `'1h 30m'`, `'2h30m'`, `'1d'`, parsed
//! by humantime), a PostgreSQL `interval` from now, or an absolute `timestamptz`. Unlike Python
//! pq, which reads only the first unit (`'2h30m'` = 2 hours), every unit counts here.

use crate::error::raise;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// The largest timestamptz PostgreSQL can store (microseconds since 2000-01-01, `END_TIMESTAMP`).
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;

const VALID: &str = "use a duration such as '5m', '90s', '1h 30m' or '1d', \
                     or a timestamp such as '2026-11-24 12:00:00+00'";

/// Something that names a point in time relative to the current transaction's `now()`.
pub trait TimeSpec {
    /// The absolute time this spec names; `what` ("schedule_at") labels errors.
    fn resolve(self, what: &str) -> TimestampWithTimeZone;
}

/// Text: a humantime duration, or failing that an absolute timestamp.
///
/// `"5m"` is five minutes from now; `"2026-11-24 12:00+00"` is that instant.
impl TimeSpec for &str {
    fn resolve(self, what: &str) -> TimestampWithTimeZone {
        let spec = self.trim();
        if spec.contains('.') && looks_like_duration(spec) {
            raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid time spec {self:?} for {what}: fractions are not supported"),
                "write '1.5h' as '1h 30m'; durations look like '5m', '90s', '1h 30m' or '1d'",
            )
        }
        match humantime::parse_duration(spec) {
            Ok(d) => from_now(d.as_micros(), self, what),
            Err(_) if spec.starts_with('-') => raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid time spec {self:?} for {what}: durations cannot be negative"),
                VALID,
            ),
            // Digits then a unit (or nothing) is a duration attempt, not a timestamp: report the
            // duration error rather than a confusing timestamp one.
            Err(e) if looks_like_duration(spec) => raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid time spec {self:?} for {what}: {e}"),
                VALID,
            ),
            Err(_) => match spec.parse::<TimestampWithTimeZone>() {
                Ok(ts) => ts,
                Err(_) => raise(
                    ERRCODE_INVALID_DATETIME_FORMAT,
                    format!("invalid time spec {self:?} for {what}"),
                    VALID,
                ),
            },
        }
    }
}

/// A PostgreSQL interval from now; it must not be negative.
impl TimeSpec for Interval {
    fn resolve(self, what: &str) -> TimestampWithTimeZone {
        if self.months() < 0 || self.days() < 0 || self.micros() < 0 {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("{what} interval '{self}' is negative"),
                "use a positive interval such as interval '5 minutes'",
            )
        }
        // timestamptz + interval handles months and days in the session's time zone.
        unsafe {
            direct_function_call::<TimestampWithTimeZone>(
                pg_sys::timestamptz_pl_interval,
                &[now().into_datum(), self.into_datum()],
            )
        }
        .expect("timestamptz + interval is never NULL")
    }
}

/// An absolute instant, taken as it is.
impl TimeSpec for TimestampWithTimeZone {
    fn resolve(self, _what: &str) -> TimestampWithTimeZone {
        self
    }
}

/// Resolves an optional spec; NULL stays NULL (ready at once / no expectation).
pub fn resolve_opt<S: TimeSpec>(spec: Option<S>, what: &str) -> Option<TimestampWithTimeZone> {
    spec.map(|s| s.resolve(what))
}

/// `now()` of the current transaction, as Python pq's `now + delta`.
pub fn now() -> TimestampWithTimeZone {
    pgrx::datetime::now()
}

fn from_now(micros: u128, spec: &str, what: &str) -> TimestampWithTimeZone {
    let base = now().into_inner();
    let at = i64::try_from(micros).ok().and_then(|m| base.checked_add(m));
    match at {
        Some(at) if at < END_TIMESTAMP => {
            TimestampWithTimeZone::try_from(at).expect("checked above")
        }
        _ => raise(
            ERRCODE_DATETIME_FIELD_OVERFLOW,
            format!("time spec {spec:?} for {what} is too far in the future"),
            "use a duration of less than 290,000 years, such as '30d'",
        ),
    }
}

fn looks_like_duration(spec: &str) -> bool {
    let number = spec.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '+');
    spec.is_empty()
        || (number.len() < spec.len()
            && number
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c.is_ascii_alphabetic()))
}
