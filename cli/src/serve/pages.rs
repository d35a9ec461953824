//! The dashboard's pages, rendered on the server as plain HTML with one small stylesheet and
//! inline SVG charts: no scripts, no build step.

use super::{JobRow, Sample};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::time::Instant;

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The address of a queue's page: `/queues/{name}`, with `?failed` for its failed jobs. The
/// names `.` and `..` would be read as path steps (browsers resolve `%2E` too), so their pages
/// are at `/queue?name=...`.
///
/// ```ignore
/// assert_eq!(queue_url("apples", false), "/queues/apples");
/// assert_eq!(queue_url("..", true), "/queue?name=%2E%2E&failed");
/// ```
pub fn queue_url(queue: &str, failed: bool) -> String {
    if queue == "." || queue == ".." {
        let name = "%2E".repeat(queue.len());
        format!("/queue?name={name}{}", if failed { "&failed" } else { "" })
    } else {
        let failed = if failed { "?failed" } else { "" };
        format!("/queues/{}{failed}", path_segment(queue))
    }
}

/// A queue name as one URL path segment (percent-encoded).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:right}\
td:first-child,th:first-child{text-align:left}h1 a{color:inherit;text-decoration:none}\
.paused{color:#b00;font-weight:bold}form{display:inline}button{margin:0 .2em}\
code{font-size:.85em;color:#555}.note{color:#777}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{}</title><style>{STYLE}</style></head>\
         <body><h1><a href=\"/\">pq</a> · {}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    )
}

/// The value of `metric` for `queue` among `samples`.
fn value(samples: &[Sample], metric: &str, queue: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(m, q, l, _)| m == metric && q == queue && l.is_none())
        .map(|s| s.3)
}

/// A form posting `action` to `/act`, with the form nonce. Its button's element id is
/// `requeue-42` for a job, `pause-apples` for a queue.
fn button(nonce: &str, action: &str, queue: &str, job: Option<i64>) -> String {
    let id = job.map_or(String::new(), |id| {
        format!("<input type=hidden name=id value={id}>")
    });
    format!(
        "<form method=post action=/act><input type=hidden name=nonce value=\"{}\">\
         <input type=hidden name=action value={action}><input type=hidden name=queue value=\"{}\">{id}\
         <button id=\"{action}-{}\">{action}</button></form>",
        esc(nonce),
        esc(queue),
        job.map_or(path_segment(queue), |i| i.to_string())
    )
}

/// Claims per second between samples, as an SVG polyline.
fn chart(points: Option<&VecDeque<(Instant, f64)>>) -> String {
    let Some(points) = points.filter(|p| p.len() >= 2) else {
        return "<span class=note>collecting…</span>".into();
    };
    let rates: Vec<f64> = points
        .iter()
        .zip(points.iter().skip(1))
        .map(|((t0, v0), (t1, v1))| {
            ((v1 - v0).max(0.0)) / t1.duration_since(*t0).as_secs_f64().max(0.001)
        })
        .collect();
    let top = rates.iter().cloned().fold(1.0, f64::max);
    let (w, h) = (160.0, 30.0);
    let step = w / (rates.len().max(2) - 1) as f64;
    let line: Vec<String> = rates
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{:.1},{:.1}", i as f64 * step, h - r / top * h))
        .collect();
    format!(
        "<svg width={w} height={h} viewBox=\"0 0 {w} {h}\"><polyline fill=none stroke=#36c stroke-width=1.5 points=\"{}\"/></svg> \
         <span class=note>{:.1}/s</span>",
        line.join(" "),
        rates.last().copied().unwrap_or(0.0)
    )
}

/// Every queue with its counts and recent throughput.
pub fn index(
    table: &str,
    samples: &[Sample],
    history: &BTreeMap<String, VecDeque<(Instant, f64)>>,
    token: Option<&str>,
) -> String {
    let mut queues: Vec<&str> = samples.iter().map(|s| s.1.as_str()).collect();
    queues.sort();
    queues.dedup();
    let mut body = format!(
        "<p>Queue table <code>{}</code>. {}</p><table id=queues><tr><th>queue</th><th>ready</th><th>scheduled</th>\
         <th>in flight</th><th>oldest ready</th><th>limit</th><th>claims</th><th></th></tr>",
        esc(table),
        if token.is_some() { "" } else { "Read-only: open <code>/login?token=…</code> (printed by <code>pq serve</code>) to act." }
    );
    for q in queues {
        let n = |m| value(samples, m, q).unwrap_or(0.0);
        let paused = n("pq_paused") > 0.0;
        let actions = token.map_or(String::new(), |t| {
            button(t, if paused { "resume" } else { "pause" }, q, None)
        });
        let _ = write!(
            body,
            "<tr data-queue=\"{}\"><td><a href=\"{}\">{}</a>{}</td><td class=ready>{}</td><td>{}</td><td>{}</td>\
             <td>{:.0} s</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
            esc(q),
            esc(&queue_url(q, false)),
            esc(q),
            if paused { " <span class=paused>paused</span>" } else { "" },
            n("pq_jobs_ready"),
            n("pq_jobs_scheduled"),
            n("pq_jobs_in_flight"),
            n("pq_oldest_ready_seconds"),
            value(samples, "pq_concurrency_limit", q).map_or("–".into(), |l| l.to_string()),
            chart(history.get(q)),
        );
    }
    body.push_str("</table><p class=note>Counts from the pending jobs; claims need pq preloaded. <a href=/metrics>/metrics</a></p>");
    page("queues", &body)
}

/// One queue: its counts and its jobs by state, with their actions.
pub fn queue(
    queue: &str,
    samples: &[Sample],
    jobs: &[(&str, Vec<JobRow>)],
    token: Option<&str>,
    with_failed: bool,
) -> String {
    let n = |m| value(samples, m, queue).unwrap_or(0.0);
    let paused = n("pq_paused") > 0.0;
    let mut body = format!(
        "<p>{} ready, {} scheduled, {} in flight{}. {}</p>",
        n("pq_jobs_ready"),
        n("pq_jobs_scheduled"),
        n("pq_jobs_in_flight"),
        if paused {
            ", <span class=paused>paused</span>"
        } else {
            ""
        },
        token.map_or(String::new(), |t| button(
            t,
            if paused { "resume" } else { "pause" },
            queue,
            None
        )),
    );
    for (state, rows) in jobs {
        let _ = write!(
            body,
            "<h2>{}</h2><table id=\"{state}\"><tr><th>id</th><th>enqueued</th><th>scheduled</th><th>data</th>{}<th></th></tr>",
            state.replace('_', " "),
            if *state == "failed" { "<th>error</th>" } else { "" }
        );
        for (id, _, enqueued, scheduled, data, error) in rows {
            let action = match *state {
                "failed" => Some("requeue"),
                _ => Some("cancel"),
            };
            let act = match (token, action) {
                (Some(t), Some(a)) => button(t, a, queue, Some(*id)),
                _ => String::new(),
            };
            let _ = write!(
                body,
                "<tr id=\"job-{id}\"><td>{id}</td><td>{}</td><td>{}</td><td><code>{}</code></td>{}<td>{act}</td></tr>",
                esc(enqueued),
                esc(scheduled),
                esc(data),
                if *state == "failed" { format!("<td>{}</td>", esc(error)) } else { String::new() }
            );
        }
        if rows.is_empty() {
            body.push_str("<tr><td colspan=5 class=note>none</td></tr>");
        }
        body.push_str("</table>");
    }
    if !with_failed {
        let _ = write!(
            body,
            "<p><a id=show-failed href=\"{}\">failed jobs</a> <span class=note>(reads the table's done jobs)</span></p>",
            esc(&queue_url(queue, true))
        );
    }
    page(queue, &body)
}
