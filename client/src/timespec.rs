//! Time specs for `schedule_at` and `expected_at`: what the extension accepts, from Rust.

use std::time::{Duration, SystemTime};

/// When a job becomes ready (`schedule_at`) or is expected (`expected_at`).
///
/// ```
/// use pq_client::When;
/// use std::time::{Duration, SystemTime};
/// let _: When = "5m".into();                          // a human duration, as in Python pq
/// let _: When = Duration::from_secs(90).into();       // from now
/// let _: When = SystemTime::now().into();             // an absolute time
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// A spec the extension parses: `"5m"`, `"1h 30m"`, `"2026-11-24 12:00:00+00"`.
    Spec(String),
    /// This long from now.
    After(Duration),
    /// At this instant.
    At(SystemTime),
}

impl When {
    /// The text form the extension's `pq_put` takes.
    pub(crate) fn to_spec(&self) -> String {
        match self {
            When::Spec(s) => s.clone(),
            When::After(d) => format!("{}us", d.as_micros()),
            When::At(t) => humantime::format_rfc3339_micros(*t).to_string(),
        }
    }
}

impl From<&str> for When {
    fn from(s: &str) -> Self {
        When::Spec(s.to_string())
    }
}

impl From<String> for When {
    fn from(s: String) -> Self {
        When::Spec(s)
    }
}

impl From<Duration> for When {
    fn from(d: Duration) -> Self {
        When::After(d)
    }
}

impl From<SystemTime> for When {
    fn from(t: SystemTime) -> Self {
        When::At(t)
    }
}
