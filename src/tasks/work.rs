//! Work: performing SQL-function tasks, `pq_work(queue, ...)`.
//!
//! Each claimed task job runs in its own subtransaction, so a failing task's writes are rolled
//! back while the others' are kept. Before anything is called the job must pass the
//! [`permit`]: its function is registered (`registry`) and the role that enqueued it
//! (`enqueuer`) may execute it. The task then runs in the [`sandbox`](crate::tasks::sandbox): as that
//! role, from fixed settings, within its time limit. Everything that reads the job's data
//! happens inside the subtransaction too, so a malformed job (a bad `retry_in`, a number JSON
//! cannot hold, a payload that is not a task) is recorded as failed, never aborting the run and
//! never blocking the jobs behind it. On failure a job is rescheduled `retry_in` later with
//! `retried + 1` while `retried < max_retries`, else it is marked failed; either way its error
//! (SQLSTATE, message, attempt) is appended to `data.errors`, where `pq_failed` shows it.

use crate::plumbing::error::{raise, require, require_queue};
use crate::plumbing::pinning::pinned;
use crate::plumbing::subxact::{self, Failure};
use crate::plumbing::table::{QueueTable, Stmt};
use crate::queue::claim::{claim, clock, Job, Only};
use crate::queue::timespec::duration;
use crate::tasks::sandbox::{self, Deadline, Locks};
use crate::tasks::task::{self, Task};
use pgrx::datum::{Interval, JsonB, TimestampWithTimeZone};
use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgSqlErrorCode::*};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::Duration;

/// What became of a performed job.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Done,
    Retry,
    Failed,
}

impl Verdict {
    /// As `pq_work` reports it: `done`, `retry` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Retry => "retry",
            Verdict::Failed => "failed",
        }
    }
}

/// What happened to one job.
pub struct Outcome {
    pub id: i64,
    pub function: String,
    pub outcome: Verdict,
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
    // Each job's payload is copied here, out of SPI (whose memory SPI_finish frees before the
    // task reads it), and freed after the job: a run of big payloads holds one at a time.
    let mut jobcx = PgMemoryContexts::new("pq job");
    let mut outcomes = Vec::new();
    while opts.max_jobs.is_none_or(|max| outcomes.len() < max) {
        let mut memcx = PgMemoryContexts::For(jobcx.value());
        let jobs = if opts.burst {
            claim(table, queue, Only::SqlTasks, 1, &mut memcx)
        } else {
            crate::queue::wait::get(
                table,
                queue,
                Only::SqlTasks,
                Some(opts.timeout),
                1,
                &mut memcx,
            )
        };
        let Some(job) = jobs.into_iter().next() else {
            break;
        };
        let outcome = perform(table, &job);
        if outcome.outcome == Verdict::Done {
            crate::operations::metrics::count(table.oid, queue, |c| c.done += 1);
        }
        outcomes.push(outcome);
        // SAFETY: nothing refers to the job's memory any more.
        unsafe { jobcx.reset() };
    }
    outcomes
}

/// The longest error message kept in a job's `errors`, in bytes.
const MAX_MESSAGE: usize = 4000;

/// SQLSTATEs pq records for jobs it refuses or cannot read.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
const INVALID_PARAMETER_VALUE: &str = "22023";
const INVALID_DATETIME_FORMAT: &str = "22007";

/// Why a job failed, and whether it may be retried.
struct Error {
    sqlstate: String,
    message: String,
    /// Refused or malformed: retrying cannot help.
    fatal: bool,
}

impl Error {
    fn fatal(sqlstate: &str, message: String) -> Error {
        Error {
            sqlstate: sqlstate.into(),
            message,
            fatal: true,
        }
    }
}

/// Runs one task in a subtransaction and records its outcome.
fn perform(table: &QueueTable, job: &Job) -> Outcome {
    let task: RefCell<Option<Task>> = RefCell::new(None);
    let refused: RefCell<Option<Error>> = RefCell::new(None);
    let locks = Locks::before();
    // A fresh snapshot for the whole job (in READ COMMITTED): a background worker's wait can
    // be long, and the task, its permit and its function's lookup must see what was committed
    // meanwhile (a function created and registered while the worker waited, for one).
    // SAFETY: pushed here and popped below on every path (the subtransaction catches errors).
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let deadline: RefCell<Option<Deadline>> = RefCell::new(None);
    let failure = subxact::catching(|| {
        let parsed: Task = match decode(job.data.0)
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        {
            Ok(t) => t,
            Err(e) => {
                *refused.borrow_mut() = Some(Error::fatal(
                    INVALID_PARAMETER_VALUE,
                    format!("malformed task data: {e}"),
                ));
                return;
            }
        };
        let limit = match parsed.timeout.as_deref().map(duration) {
            None => sandbox::default_timeout(),
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                *refused.borrow_mut() = Some(Error::fatal(
                    INVALID_DATETIME_FORMAT,
                    format!("task timeout: {e}"),
                ));
                return;
            }
        };
        *task.borrow_mut() = Some(parsed.clone());
        // Everything from here runs as the enqueuer: even looking up the function's name.
        sandbox::run_as(job.enqueued_by, || {
            // The signature stored at enqueue time, resolved under the pinned search_path.
            let oid = pinned(|_| task::resolve_function(&parsed.function));
            if let Err(e) = permit(table, oid, job.enqueued_by, &parsed.function) {
                *refused.borrow_mut() = Some(e);
                return;
            }
            Spi::connect(|client| {
                let call = pinned(|_| task::build_call(client, oid, &parsed));
                *deadline.borrow_mut() = Some(Deadline::arm(limit));
                task::run(client, &call.sql, &call.args);
            });
            // A task that swallowed its cancel and ran on past its limit does not count as
            // done: raising here rolls back everything it did.
            if deadline.borrow().as_ref().is_some_and(|d| d.expired()) {
                raise(
                    ERRCODE_QUERY_CANCELED,
                    "task ran past its time limit".into(),
                    "a task must not catch query_canceled; raise the limit with timeout => '...'",
                )
            }
        });
    });
    unsafe { pg_sys::PopActiveSnapshot() };
    let timed_out = deadline.take().is_some_and(|d| d.expired());
    locks.release_new();
    let task = task.take();
    let error = match (failure, refused.take()) {
        (Some(f), _) if f.is_cancel() && !timed_out => f.rethrow(),
        (Some(f), _) => Some(from_failure(f, timed_out, task.as_ref())),
        (None, refused) => refused,
    };
    let function = task
        .as_ref()
        .map_or_else(|| field(job.data.0, "function"), |t| t.function.clone());
    // Recorded here, once: the job is no longer this transaction's to report.
    crate::queue::claim::take_claim(table.oid, job.id);
    record(table, job.id, &function, task.as_ref(), error)
}

/// A top-level field of a jsonb payload as text, read by PostgreSQL (any payload, no decoding
/// into Rust): empty when missing or when the payload is not an object.
fn field(data: pg_sys::Datum, key: &str) -> String {
    unsafe {
        direct_function_call::<String>(
            pg_sys::jsonb_object_field_text,
            &[Some(data), key.into_datum()],
        )
    }
    .unwrap_or_default()
}

fn from_failure(f: Failure, timed_out: bool, task: Option<&Task>) -> Error {
    let message = if timed_out {
        let limit = task.and_then(|t| t.timeout.clone()).unwrap_or_else(|| {
            format!(
                "{}ms (pq.task_timeout)",
                sandbox::default_timeout().map_or(0, |d| d.as_millis())
            )
        });
        format!("task timed out after {limit}")
    } else {
        f.message
    };
    Error {
        sqlstate: f.sqlstate,
        message,
        // A task that is not a plain function cannot succeed on retry either.
        fatal: task.is_none(),
    }
}

/// A payload as JSON, or why it cannot be read as a task: a number JSON cannot hold (`1e400`),
/// nesting deeper than 128 levels.
fn decode(data: pg_sys::Datum) -> Result<Value, String> {
    let text = unsafe { direct_function_call::<&std::ffi::CStr>(pg_sys::jsonb_out, &[Some(data)]) }
        .map(|t| t.to_string_lossy())
        .unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// A job may run its task only if the function is registered and the role that enqueued the
/// job still exists and may execute it. Refusals are 42501 and final.
fn permit(
    table: &QueueTable,
    function: pg_sys::Oid,
    enqueuer: pg_sys::Oid,
    name: &str,
) -> Result<(), Error> {
    let (registered, role, allowed, vouched) = pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(p, client, Stmt::TaskPermit, |plan| {
                let rows = client
                    .select(
                        plan,
                        None,
                        &[function.into(), enqueuer.into(), table.oid.into()],
                    )
                    .unwrap_or_else(|e| panic!("checking task {name}: {e}"));
                let row = rows.first();
                let col = |i| {
                    row.get::<bool>(i)
                        .unwrap_or_else(|e| panic!("task permit: {e}"))
                };
                let role = row
                    .get::<String>(2)
                    .unwrap_or_else(|e| panic!("task permit: {e}"));
                (
                    col(1).unwrap_or(false),
                    role,
                    col(3).unwrap_or(false),
                    col(4).unwrap_or(false),
                )
            })
        })
    });
    let refuse = |message: String| Err(Error::fatal(INSUFFICIENT_PRIVILEGE, message));
    if !registered {
        return refuse(format!(
            "function {name} is not registered as a task; its owner can register it with SELECT pq_register_task('{name}')"
        ));
    }
    match role {
        None if enqueuer == pg_sys::Oid::INVALID => refuse(format!(
            "task {name} has no known enqueuer (queued before pq 0.3.0, or on a table not yet upgraded); an administrator can vouch for it: UPDATE <table> SET enqueued_by = '<role>' WHERE id = <id>"
        )),
        None => refuse(format!(
            "task {name} was enqueued by a role that no longer exists (OID {})",
            enqueuer.to_u32()
        )),
        Some(role) if !allowed => refuse(format!(
            "role {role}, which enqueued this task, may not execute function {name}"
        )),
        Some(role) if !vouched => refuse(format!(
            "the queue table cannot vouch that role {role} enqueued task {name}: its owner may write enqueued_by at will (or its pq_enqueued_by trigger is disabled)"
        )),
        Some(_) => Ok(()),
    }
}

/// Writes the outcome of a performed task to its job. Works on any payload, even one that is
/// not a task or not an object: the patch is applied in SQL, not by decoding the payload here.
fn record(
    table: &QueueTable,
    id: i64,
    function: &str,
    task: Option<&Task>,
    error: Option<Error>,
) -> Outcome {
    let retried = task.map_or(0, |t| t.retried);
    let attempt = retried.saturating_add(1);
    let mut outcome = Outcome {
        id,
        function: function.to_string(),
        outcome: Verdict::Done,
        attempt: attempt.clamp(0, i32::MAX as i64) as i32,
        sqlstate: None,
        message: None,
    };
    let Some(mut error) = error else {
        return outcome;
    };
    let mut due = None;
    if let Some(t) = task.filter(|t| !error.fatal && t.retried < t.max_retries) {
        match crate::tasks::backoff::delay(t) {
            Ok(d) => due = Some(later(d)),
            Err(e) => error.message = format!("{}; not retried: {e}", error.message),
        }
    }
    // Messages can echo job data (a bad value, a huge argument): keep them bounded.
    if error.message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !error.message.is_char_boundary(end) {
            end -= 1;
        }
        error.message = format!("{}… (truncated)", &error.message[..end]);
    }
    let entry = json!({ "attempt": attempt, "sqlstate": error.sqlstate, "message": error.message,
                        "at": clock().to_iso_string() });
    let args = [
        id.into(),
        JsonB(entry).into(),
        due.into(),
        attempt.into(),
        clock().into(),
    ];
    // In a subtransaction: a payload too big to take one more error (jsonb's 256 MB limit) must
    // not abort the run and leave the job at the head of the queue. It stays consumed, logged.
    let mut queue = String::new();
    if let Some(f) = crate::plumbing::subxact::catching(|| {
        queue = crate::tasks::enqueuer::as_pq(table.oid, id, || {
            table.one::<String>(Stmt::TaskOutcome, &args)
        })
        .unwrap_or_default();
    }) {
        pgrx::warning!(
            "pq: could not record the failure of job {id} ({}); it is consumed without a record",
            f.message
        );
        due = None;
    }
    if due.is_some() {
        // Back in the queue: blocked workers should look again.
        crate::queue::wake::announce(table, &queue);
    }
    outcome.outcome = if due.is_some() {
        Verdict::Retry
    } else {
        Verdict::Failed
    };
    let retried = due.is_some();
    crate::operations::metrics::count(table.oid, &queue, |c| {
        if retried {
            c.retried += 1
        } else {
            c.failed += 1
        }
    });
    outcome.sqlstate = Some(error.sqlstate);
    outcome.message = Some(error.message);
    outcome
}

/// The clock plus `d`, saturating at the largest timestamp.
fn later(d: Duration) -> TimestampWithTimeZone {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let at = clock()
        .into_inner()
        .saturating_add(micros)
        .min(9_223_371_331_200_000_000 - 1);
    TimestampWithTimeZone::try_from(at).unwrap_or_else(|_| clock())
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
    let burst = require(burst, "burst", "true");
    let timeout = require(timeout, "timeout", "'5s'").as_micros();
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
            "pass a count such as 100, or leave it out for up to 1000",
        )
    }
    if let Some(n) = max_jobs.filter(|n| *n as usize > crate::queue::claim::MAX_CLAIMS) {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "max_jobs must be at most {}, got {n}",
                crate::queue::claim::MAX_CLAIMS
            ),
            "each job holds a lock until commit: use CALL pq_work_loop(...) for long runs",
        )
    }
    let table = QueueTable::resolve(tbl);
    let opts = Options {
        burst,
        timeout: Duration::from_micros(timeout as u64),
        // One call claims at most MAX_CLAIMS jobs (one lock each until commit).
        max_jobs: Some(max_jobs.map_or(crate::queue::claim::MAX_CLAIMS, |n| n as usize)),
    };
    let rows: Vec<_> = work(&table, queue, &opts)
        .into_iter()
        .map(|o| {
            (
                o.id,
                o.function,
                o.outcome.as_str().to_string(),
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
    let id = require(id, "id", "42");
    // Recorded in the job and shown by pq_failed as an SQLSTATE: five digits or capitals.
    if let Some(code) = sqlstate.filter(|c| {
        c.len() != 5
            || !c
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    }) {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "sqlstate {} is not an SQLSTATE: five digits or capital letters",
                crate::plumbing::error::preview(code)
            ),
            "pass a code such as 'P0001' (raise_exception), or NULL for it",
        )
    }
    let table = QueueTable::resolve(tbl);
    let row = pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(p, client, Stmt::JobData, |plan| {
                let rows = client
                    .select(plan, None, &[id.into()])
                    .unwrap_or_else(|e| panic!("reading job {id}: {e}"));
                (!rows.is_empty()).then(|| {
                    let row = rows.first();
                    let fail = |e: pgrx::spi::SpiError| -> ! { panic!("reading job {id}: {e}") };
                    (
                        row.get::<JsonB>(1).unwrap_or_else(|e| fail(e)),
                        row.get::<pg_sys::TransactionId>(2)
                            .unwrap_or_else(|e| fail(e)),
                        row.get::<bool>(3).unwrap_or_else(|e| fail(e)),
                    )
                })
            })
        })
    });
    let Some((Some(JsonB(data)), Some(xmin), Some(claimed))) = row else {
        raise(
            ERRCODE_NO_DATA_FOUND,
            format!("no job with id {id}"),
            "pass the id of a task job you claimed",
        )
    };
    // Only the transaction that claimed a job may say how it went, once: otherwise anyone with
    // UPDATE could mark a done job failed and requeue it, replaying it as its enqueuer. (The
    // row's xmin alone would not do: any UPDATE, even a no-op, makes it the writer's.)
    // SAFETY: a lookup in this backend's own transaction state.
    if !claimed
        || !unsafe { pg_sys::TransactionIdIsCurrentTransactionId(xmin) }
        || !crate::queue::claim::take_claim(table.oid, id)
    {
        raise(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("job {id} is not claimed by this transaction"),
            "claim it first in this transaction (pq_get(..., functions => ...)), then record its failure",
        )
    }
    let task: Task = serde_json::from_value(data).unwrap_or_else(|e| {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("job {id} is not a task: {e}"),
            "task jobs look like {\"function\": \"eat\", \"args\": [], ...}",
        )
    });
    let error = Error {
        sqlstate: sqlstate.unwrap_or("P0001").to_string(),
        message: message.unwrap_or("").to_string(),
        fatal: false,
    };
    record(&table, id, &task.function, Some(&task), Some(error))
        .outcome
        .as_str()
        .to_string()
}

/// Puts a failed task job back in its queue with a fresh retry budget; true if it was failed.
///
/// ```sql
/// SELECT pq_requeue(id) FROM pq_failed;
/// ```
#[pg_extern(sql = false)]
fn pq_requeue(id: Option<i64>, tbl: Option<pg_sys::Oid>) -> bool {
    let id = require(id, "id", "42");
    let table = QueueTable::resolve(tbl);
    let queue = crate::tasks::enqueuer::as_pq(table.oid, id, || {
        if table.has_key {
            refuse_duplicate_key(&table, id);
        }
        table.one::<String>(Stmt::Requeue, &[id.into()])
    });
    match queue {
        Some(q) => {
            crate::queue::wake::announce(&table, &q);
            true
        }
        None => false,
    }
}

/// Raises 23505 if failed job `id` has a key that a pending job of its queue holds: requeued,
/// it would be a second pending job with that key. Otherwise the key's lock is held to the end
/// of the transaction, so a put of that key waits and then returns the requeued job.
fn refuse_duplicate_key(table: &QueueTable, id: i64) {
    let Some([queue, key]) = table
        .one::<Vec<String>>(Stmt::RequeueKey, &[id.into()])
        .and_then(|v| <[String; 2]>::try_from(v).ok())
    else {
        return;
    };
    if let Some(other) = crate::queue::unique::existing(table, &queue, &key) {
        raise(
            ERRCODE_UNIQUE_VIOLATION,
            format!("job {id} cannot be requeued: job {other} of queue '{queue}' is pending with its key '{key}'"),
            &format!("wait until job {other} is done, or cancel it (SELECT pq_cancel({other})), then requeue job {id}"),
        )
    }
}
