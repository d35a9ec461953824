//! Work: performing SQL-function tasks, `pq_work(queue, ...)`.
//!
//! Each claimed task job runs in its own subtransaction, so a failing task's writes are rolled
//! back while the others' are kept. Tasks run with the privileges and the `search_path` of
//! the caller of `pq_work`, never elevated; the function itself was fixed at enqueue time as a
//! schema-qualified signature, resolved here under a pinned `search_path`, so no path trick
//! can redirect it. On failure a job is rescheduled `retry_in` later with `retried + 1` while
//! `retried < max_retries`, else it is marked failed; either way its error (SQLSTATE,
//! message, attempt) is appended to `data.errors`, where the `pq_failed` view shows it.

use crate::claim::{claim, clock, Job, Only};
use crate::error::{raise, require_queue};
use crate::search_path::pinned;
use crate::subxact;
use crate::table::{QueueTable, Stmt};
use crate::task::{self, Task};
use crate::timespec::TimeSpec;
use pgrx::datum::{Interval, JsonB};
use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgSqlErrorCode::*};
use serde_json::{json, Value};
use std::time::Duration;

/// What happened to one job.
pub struct Outcome {
    pub id: i64,
    pub function: String,
    /// `done`, `retry` or `failed`.
    pub outcome: &'static str,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
}

/// How `work` looks for jobs.
pub struct Options {
    /// Stop as soon as nothing is ready (else wait up to `timeout` for each next job).
    pub burst: bool,
    pub timeout: Duration,
    pub max_jobs: Option<usize>,
}

/// Performs ready SQL tasks of `queue` until none is ready (burst), a wait times out, or
/// `max_jobs` were performed. Claims run in the caller's transaction.
///
/// ```ignore
/// let done = work::work(&table, "default", &Options { burst: true, timeout, max_jobs: None });
/// ```
pub fn work(table: &QueueTable, queue: &str, opts: &Options) -> Vec<Outcome> {
    let mut memcx = PgMemoryContexts::CurrentMemoryContext;
    let mut outcomes = Vec::new();
    while opts.max_jobs.is_none_or(|max| outcomes.len() < max) {
        let jobs = pinned(|| {
            if opts.burst {
                claim(table, queue, Only::SqlTasks, 1, &mut memcx)
            } else {
                crate::wait::get(
                    table,
                    queue,
                    Only::SqlTasks,
                    Some(opts.timeout),
                    1,
                    &mut memcx,
                )
            }
        });
        let Some(job) = jobs.into_iter().next() else {
            break;
        };
        outcomes.push(perform(table, &job));
    }
    outcomes
}

/// Runs one task in a subtransaction and records its outcome.
fn perform(table: &QueueTable, job: &Job) -> Outcome {
    let data: Value = unsafe { JsonB::from_datum(job.data.0, false) }
        .map(|j| j.0)
        .unwrap_or(Value::Null);
    let task: Task = match serde_json::from_value(data.clone()) {
        Ok(t) => t,
        Err(e) => {
            // Malformed task data: fail at once, keeping the job for inspection.
            let t = Task {
                function: data["function"].to_string(),
                args: vec![],
                kwargs: Default::default(),
                retried: 0,
                max_retries: 0,
                retry_in: "30s".into(),
            };
            return record(
                table,
                job.id,
                &data,
                &t,
                Some(("22023".into(), format!("malformed task data: {e}"))),
            );
        }
    };
    let error = subxact::catching(|| {
        let oid = pinned(|| {
            let name = std::ffi::CString::new(task.function.as_str()).unwrap_or_default();
            unsafe {
                direct_function_call::<pg_sys::Oid>(
                    pg_sys::regprocedurein,
                    &[name.as_c_str().into_datum()],
                )
            }
            .expect("regprocedure input never returns NULL")
        });
        Spi::connect(|client| {
            let call = pinned(|| task::build_call(client, oid, &task));
            // The task itself runs in the caller's search_path.
            task::run(client, &call.sql, &call.args);
        });
    });
    record(table, job.id, &data, &task, error)
}

/// Writes the outcome of a performed task to its job.
fn record(
    table: &QueueTable,
    id: i64,
    data: &Value,
    task: &Task,
    error: Option<(String, String)>,
) -> Outcome {
    let attempt = task.retried + 1;
    let mut outcome = Outcome {
        id,
        function: task.function.clone(),
        outcome: "done",
        attempt: attempt as i32,
        sqlstate: None,
        message: None,
    };
    let Some((sqlstate, message)) = error else {
        return outcome;
    };
    let retry = task.retried < task.max_retries;
    let mut errors = data
        .get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    errors.push(
        json!({ "attempt": attempt, "sqlstate": sqlstate, "message": message,
                        "at": clock().to_iso_string() }),
    );
    let (patch, due) = if retry {
        let due = pinned(|| task.retry_in.as_str().resolve("retry_in"));
        (json!({ "retried": attempt, "errors": errors }), Some(due))
    } else {
        (
            json!({ "errors": errors, "failed_at": clock().to_iso_string() }),
            None,
        )
    };
    let args = [id.into(), JsonB(patch).into(), retry.into(), due.into()];
    let queue = table
        .one::<String>(Stmt::TaskOutcome, &args)
        .unwrap_or_default();
    if retry {
        // Back in the queue: blocked workers should look again.
        crate::put::announce(table, &queue);
    }
    outcome.outcome = if retry { "retry" } else { "failed" };
    outcome.sqlstate = Some(sqlstate);
    outcome.message = Some(message);
    outcome
}

/// Performs ready SQL-function tasks of `queue` in the caller's transaction, one
/// subtransaction each; returns a row per job. `burst` (default) stops when nothing is ready;
/// otherwise each next job is waited for up to `timeout`. See `pq_work_loop` to commit after
/// each job.
///
/// ```sql
/// SELECT * FROM pq_work('default');
/// SELECT * FROM pq_work('default', burst => false, timeout => '5s', max_jobs => 100);
/// ```
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)]
fn pq_work(
    queue: Option<&str>,
    burst: Option<bool>,
    timeout: Option<Interval>,
    max_jobs: Option<i32>,
    tbl: Option<pg_sys::Oid>,
) -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(function, String),
        name!(outcome, String),
        name!(attempt, i32),
        name!(sqlstate, Option<String>),
        name!(message, Option<String>),
    ),
> {
    let queue = require_queue(queue);
    let timeout = timeout.map(|i| i.as_micros()).unwrap_or(1_000_000);
    if timeout < 0 {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "timeout must not be negative".into(),
            "pass a timeout such as '5s'",
        )
    }
    if let Some(n) = max_jobs.filter(|n| *n < 1) {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("max_jobs must be at least 1, got {n}"),
            "pass a count such as 100, or leave it out for no limit",
        )
    }
    let table = QueueTable::resolve(tbl);
    let opts = Options {
        burst: burst.unwrap_or(true),
        timeout: Duration::from_micros(timeout as u64),
        max_jobs: max_jobs.map(|n| n as usize),
    };
    let rows: Vec<_> = work(&table, queue, &opts)
        .into_iter()
        .map(|o| {
            (
                o.id,
                o.function,
                o.outcome.to_string(),
                o.attempt,
                o.sqlstate,
                o.message,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// For client workers (Rust, or any language): records that task job `id`, claimed in this
/// transaction, failed with `sqlstate` and `message`; retries or fails it exactly as
/// `pq_work` does. Returns `retry` or `failed`.
///
/// ```sql
/// SELECT pq_task_failed(42, 'P0001', 'no apples today');
/// ```
#[pg_extern(sql = false)]
fn pq_task_failed(
    id: Option<i64>,
    sqlstate: Option<&str>,
    message: Option<&str>,
    tbl: Option<pg_sys::Oid>,
) -> String {
    let id = crate::error::require(id, "id", "42");
    let table = QueueTable::resolve(tbl);
    let data = table.one::<JsonB>(Stmt::JobData, &[id.into()]);
    let Some(JsonB(data)) = data else {
        raise(
            ERRCODE_NO_DATA_FOUND,
            format!("no job with id {id}"),
            "pass the id of a task job you claimed",
        )
    };
    let task: Task = serde_json::from_value(data.clone()).unwrap_or_else(|e| {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("job {id} is not a task: {e}"),
            "task jobs look like {\"function\": \"eat\", \"args\": [], ...}",
        )
    });
    let error = (
        sqlstate.unwrap_or("P0001").to_string(),
        message.unwrap_or("").to_string(),
    );
    record(&table, id, &data, &task, Some(error))
        .outcome
        .to_string()
}

/// Puts a failed task job back in its queue with a fresh retry budget; true if it was failed.
///
/// ```sql
/// SELECT pq_requeue(id) FROM pq_failed;
/// ```
#[pg_extern(sql = false)]
fn pq_requeue(id: Option<i64>, tbl: Option<pg_sys::Oid>) -> bool {
    let id = crate::error::require(id, "id", "42");
    let table = QueueTable::resolve(tbl);
    let queue = table.one::<String>(Stmt::Requeue, &[id.into()]);
    match queue {
        Some(q) => {
            crate::put::announce(&table, &q);
            true
        }
        None => false,
    }
}
