//! The Prometheus text exposition format (version 0.0.4) of `pq_metrics` samples.

use super::Sample;
use std::fmt::Write;

/// What each metric is, for `# HELP` and `# TYPE`.
const METRICS: &[(&str, &str, &str)] = &[
    ("pq_jobs_ready", "gauge", "Jobs ready to be claimed."),
    ("pq_jobs_scheduled", "gauge", "Jobs scheduled for later."),
    (
        "pq_jobs_in_flight",
        "gauge",
        "Jobs claimed by a transaction still running.",
    ),
    (
        "pq_oldest_ready_seconds",
        "gauge",
        "Age of the oldest ready job, in seconds.",
    ),
    ("pq_paused", "gauge", "1 when the queue is paused."),
    (
        "pq_concurrency_limit",
        "gauge",
        "The queue's concurrency limit, when it has one.",
    ),
    (
        "pq_puts_total",
        "counter",
        "Jobs put (committed) since the server started; needs pq preloaded.",
    ),
    (
        "pq_claims_total",
        "counter",
        "Jobs claimed (committed) since the server started; needs pq preloaded.",
    ),
    (
        "pq_tasks_total",
        "counter",
        "Task outcomes recorded (done, retry, failed); needs pq preloaded.",
    ),
    (
        "pq_wake_seconds",
        "histogram",
        "From a job's put to its claim by a blocked get that it woke; needs pq preloaded.",
    ),
];

/// A label value, escaped as the format requires (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders `samples` of queue table `table`, grouped by metric, each line labelled with the
/// table and queue.
///
/// ```ignore
/// let text = prometheus::render("queue", &samples);
/// ```
pub fn render(table: &str, samples: &[Sample]) -> String {
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let family: Vec<&Sample> = samples
            .iter()
            .filter(|(m, ..)| {
                m == name
                    || (*kind == "histogram"
                        && m.strip_prefix(name)
                            .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s)))
            })
            .collect();
        if family.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (metric, queue, label, value) in family {
            let extra = label.as_ref().map_or(String::new(), |l| format!(",{l}"));
            let _ = writeln!(
                out,
                "{metric}{{table=\"{}\",queue=\"{}\"{extra}}} {value}",
                escape(table),
                escape(queue)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_families_typed() {
        let samples = vec![
            (
                "pq_jobs_ready".to_string(),
                "a\"b\\c\nd".to_string(),
                None,
                3.0,
            ),
            (
                "pq_wake_seconds_bucket".to_string(),
                "q".to_string(),
                Some("le=\"0.001\"".to_string()),
                1.0,
            ),
            (
                "pq_wake_seconds_count".to_string(),
                "q".to_string(),
                None,
                1.0,
            ),
        ];
        let text = render("queue", &samples);
        assert!(text.contains("# TYPE pq_jobs_ready gauge\n"));
        assert!(text.contains("pq_jobs_ready{table=\"queue\",queue=\"a\\\"b\\\\c\\nd\"} 3\n"));
        assert!(text.contains("# TYPE pq_wake_seconds histogram\n"));
        assert!(
            text.contains("pq_wake_seconds_bucket{table=\"queue\",queue=\"q\",le=\"0.001\"} 1\n")
        );
    }
}
