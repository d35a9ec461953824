//! Time specs: when a job becomes ready (`schedule_at`) or is expected (`expected_at`).
//!
//! A spec is a human duration from now (`'5m'`, `'90s'`, `'1h 30m'`, `'2h30m'`, `'1d'`, parsed
//! by humantime), a PostgreSQL `interval` from now, or an absolute `timestamptz`. Unlike Python
//! pq, which reads only the first unit (`'2h30m'` = 2 hours), every unit counts here.

use crate::plumbing::error::raise;
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

/// What a text spec means before it meets the clock: pure, so it can be fuzzed without a
/// server (see the proptests below).
#[derive(Debug, PartialEq)]
pub enum Parsed<'a> {
    /// A duration from now: `'5m'`, `'1h 30m'`.
    After(std::time::Duration),
    /// Not a duration: left for PostgreSQL's `timestamptz` input.
    Timestamp(&'a str),
}

/// Why a text spec is not a duration, when it clearly tried to be one.
#[derive(Debug, PartialEq)]
pub enum SpecError {
    Negative,
    Fraction,
    Duration(String),
}

/// Classifies a text spec: a humantime duration, a failed attempt at one (digits then a unit,
/// a sign, a fraction, or nothing), or something for the timestamp parser.
///
/// ```ignore
/// assert_eq!(parse("1h 30m"), Ok(Parsed::After(Duration::from_secs(5400))));
/// ```
pub fn parse(spec: &str) -> Result<Parsed<'_>, SpecError> {
    let spec = spec.trim();
    if spec.contains('.') && looks_like_duration(spec) {
        return Err(SpecError::Fraction);
    }
    match humantime::parse_duration(spec) {
        Ok(d) => Ok(Parsed::After(d)),
        Err(_) if spec.starts_with('-') => Err(SpecError::Negative),
        Err(e) if looks_like_duration(spec) => Err(SpecError::Duration(e.to_string())),
        Err(_) => Ok(Parsed::Timestamp(spec)),
    }
}

/// A duration such as `"30s"` (a task's `timeout` or `retry_in`), or why it is not one.
///
/// ```ignore
/// assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
/// ```
pub fn duration(spec: &str) -> Result<std::time::Duration, String> {
    match parse(spec) {
        Ok(Parsed::After(d)) => Ok(d),
        _ => Err(format!("{spec:?} is not a duration such as '30s' or '5m'")),
    }
}

/// A non-negative interval as a wall-clock duration (a month counts 30 days, a day 24 hours);
/// a negative one is rejected with 22023, naming it as `what`.
///
/// ```ignore
/// let wait = timespec::non_negative(timeout, "timeout", "pass a timeout such as '5s'");
/// ```
pub fn non_negative(i: Interval, what: &str, hint: &str) -> std::time::Duration {
    let micros = i.as_micros();
    if micros < 0 {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{what} '{i}' is negative"),
            hint,
        )
    }
    std::time::Duration::from_micros(micros.min(u64::MAX as i128) as u64)
}

/// Text: a humantime duration, or failing that an absolute timestamp.
///
/// `"5m"` is five minutes from now; `"2026-11-24 12:00+00"` is that instant.
impl TimeSpec for &str {
    fn resolve(self, what: &str) -> TimestampWithTimeZone {
        let invalid = |why: String| -> ! {
            raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid time spec {self:?} for {what}{why}"),
                VALID,
            )
        };
        match parse(self) {
            Ok(Parsed::After(d)) => from_now(d.as_micros(), self, what),
            Ok(Parsed::Timestamp(ts)) => ts
                .parse::<TimestampWithTimeZone>()
                .unwrap_or_else(|_| invalid(String::new()))
                .resolve(what),
            // '-infinity' too is a timestamp, refused as one.
            Err(SpecError::Negative) => match self.trim().parse::<TimestampWithTimeZone>() {
                Ok(at) => at.resolve(what),
                Err(_) => invalid(": durations cannot be negative".into()),
            },
            Err(SpecError::Fraction) => raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid time spec {self:?} for {what}: fractions are not supported"),
                "write '1.5h' as '1h 30m'; durations look like '5m', '90s', '1h 30m' or '1d'",
            ),
            Err(SpecError::Duration(e)) => invalid(format!(": {e}")),
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

/// An absolute instant, taken as it is; but not `'infinity'` or `'-infinity'`: a job due at
/// `-infinity` has an age no arithmetic can take (`pq_stats` and `pq_metrics` failed for every
/// queue of the table with one such job), and one due at `infinity` is never due.
impl TimeSpec for TimestampWithTimeZone {
    fn resolve(self, what: &str) -> TimestampWithTimeZone {
        let raw = self.into_inner();
        if raw == i64::MIN || raw == i64::MAX {
            raise(
                ERRCODE_DATETIME_FIELD_OVERFLOW,
                format!("{what} '{self}' is not a finite time"),
                VALID,
            )
        }
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

#[cfg(test)]
mod fuzz {
    //! The text parser, fuzzed: no input panics, and every accepted duration round-trips
    //! through humantime's own formatting.
    use super::{parse, Parsed};
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_duration_like_input(s in "[-+ ]?[0-9.]{0,25}[ ]?[a-zA-Z]{0,8}([ ]?[0-9]{0,20}[a-z]{0,3}){0,3}") {
            let _ = parse(&s);
        }

        #[test]
        fn accepted_durations_round_trip(s in "[0-9]{1,12}[ ]?(ns|us|ms|s|m|h|d|w|sec|min|hours|days)( [0-9]{1,6}(s|m|h))?") {
            if let Ok(Parsed::After(d)) = parse(&s) {
                let text = humantime::format_duration(d).to_string();
                prop_assert_eq!(parse(&text), Ok(Parsed::After(d)), "{} -> {}", s, text);
            }
        }

        #[test]
        fn durations_format_and_parse_back(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let text = humantime::format_duration(d).to_string();
            prop_assert_eq!(parse(&text), Ok(Parsed::After(d)));
        }

        #[test]
        fn signs_and_fractions_are_never_durations(n in 0u32..100000, unit in "(s|m|h|d)") {
            let negative = format!("-{}{}", n, unit);
            let fraction = format!("{}.5{}", n, unit);
            prop_assert!(parse(&negative).is_err());
            prop_assert!(parse(&fraction).is_err());
        }
    }

    #[test]
    fn examples() {
        assert_eq!(parse("2h30m"), Ok(Parsed::After(Duration::from_secs(9000))));
        assert_eq!(parse("1d"), Ok(Parsed::After(Duration::from_secs(86400))));
        assert_eq!(
            parse("2026-11-24 12:00:00+00"),
            Ok(Parsed::Timestamp("2026-11-24 12:00:00+00"))
        );
        assert!(parse("5x").is_err() && parse("").is_err() && parse("5").is_err());
    }
}
