//! Cancel: `pq_cancel(id)` makes sure a job never runs, or stops the one claim of it that is
//! running. A cancelled job is consumed (its `dequeued_at` is set) and its `cancelled_at`
//! column says when, so it is neither done nor failed: `pq_status(id)` says `cancelled` and
//! `pq_stats` counts it apart. Its data is left as it was.
//!
//! A job claimed by a running transaction is cancelled in two steps. The claimer's backend is
//! sent a cancel, with `pg_cancel_backend`'s own privilege rules (the same role, a member of
//! `pg_signal_backend`, or a superuser): its statement fails, its transaction rolls back, and
//! the job would be ready again. But the cancelling update already waits for the claimer's row
//! lock, and takes the job as soon as the claimer lets go: no other claim gets in between. A
//! claimer that is idle in its transaction ignores the cancel; `pq_cancel` then gives up after
//! `wait` (default 10 s) with 55P03, naming the backend.

use crate::plumbing::error::require;
use crate::plumbing::pinning::{pinned, set_saved};
use crate::plumbing::table::{QueueTable, Stmt};
use crate::queue::claim::clock;

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// What a job is, as `pq_status` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ready,
    Scheduled,
    InFlight,
    Done,
    Failed,
    Cancelled,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Scheduled => "scheduled",
            Status::InFlight => "in_flight",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Job `id`'s status and, when it is in flight (its advisory key held while a transaction is
/// updating its row), the backend claiming it: the one running that transaction, or else the
/// key's holder (a squatter holds a key without claiming: the claimer of a squatted job is the
/// row's updater).
fn status(table: &QueueTable, id: i64) -> Option<(Status, Option<i32>)> {
    pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(p, client, Stmt::Status, |plan| {
                let rows = client
                    .select(plan, None, &[id.into(), clock().into()])
                    .unwrap_or_else(|e| panic!("job status: {e}"));
                if rows.is_empty() {
                    return None;
                }
                let row = rows.first();
                let flag = |i| row.get::<bool>(i).ok().flatten().unwrap_or(false);
                let held = row.get::<i32>(6).ok().flatten().filter(|_| flag(5));
                let updater = row.get::<i32>(7).ok().flatten();
                let holder = held.map(|key| updater.unwrap_or(key));
                let status = match (flag(1), flag(2), flag(3), holder.is_some(), flag(4)) {
                    (true, true, _, _, _) => Status::Cancelled,
                    (true, _, true, _, _) => Status::Failed,
                    (true, _, _, _, _) => Status::Done,
                    (false, _, _, true, _) => Status::InFlight,
                    (false, _, _, false, true) => Status::Scheduled,
                    _ => Status::Ready,
                };
                Some((status, holder))
            })
        })
    })
}

/// Job `id`'s status: `ready`, `scheduled`, `in_flight`, `done`, `failed` or `cancelled`;
/// NULL when the table has no such job (never put, cleared, or purged).
///
/// ```sql
/// SELECT pq_status(pq_put('apples', '{}'));   -- ready
/// ```
#[pg_extern(sql = false)]
fn pq_status(id: Option<i64>, tbl: Option<pg_sys::Oid>) -> Option<&'static str> {
    let id = require(id, "id", "42");
    let table = QueueTable::resolve(tbl);
    status(&table, id).map(|(s, _)| s.name())
}

/// Cancels job `id`: a pending or scheduled job never runs; a job claimed by a running
/// transaction has that transaction cancelled, and does not come back. Waits up to `wait` for
/// the claimer to let go. Returns false when the job is not pending (done, failed, already
/// cancelled, or unknown). Needs UPDATE on the queue table.
///
/// ```sql
/// SELECT pq_cancel(42);
/// SELECT pq_status(42);    -- cancelled
/// ```
#[pg_extern(sql = false)]
fn pq_cancel(id: Option<i64>, tbl: Option<pg_sys::Oid>, wait: Option<Interval>) -> bool {
    let id = require(id, "id", "42");
    let wait = crate::queue::timespec::non_negative(
        require(wait, "wait", "'10s'"),
        "wait",
        "pass how long to wait for a running claim to end, such as '10s'",
    );
    if wait.as_millis() > i32::MAX as u128 {
        crate::plumbing::error::raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("wait must be less than 24 days, got {wait:?}"),
            "pass how long to wait for a running claim to end, such as '10s'",
        )
    }
    let table = QueueTable::resolve(tbl);
    crate::operations::controls::require_update(&table, "cancel jobs of");
    table.require_columns_of_0_5("cancelled jobs");
    let Some((state, holder)) = status(&table, id) else {
        return false;
    };
    let mut claimer = None;
    match state {
        Status::Done | Status::Failed | Status::Cancelled => return false,
        Status::InFlight => {
            let pid = holder.unwrap_or(0);
            // Still that backend's claim right before the signal (a claimer that committed
            // meanwhile must not have its next statement cancelled; a tiny window remains, as
            // with any pg_cancel_backend by pid).
            let still =
                status(&table, id).is_some_and(|(s, h)| s == Status::InFlight && h == Some(pid));
            if pid != 0 && pid != unsafe { pg_sys::MyProcPid } && still {
                // pg_cancel_backend checks the caller's right to cancel that backend.
                pinned(|_| {
                    Spi::get_one_with_args::<bool>(
                        "SELECT pg_catalog.pg_cancel_backend($1)",
                        &[pid.into()],
                    )
                })
                .unwrap_or_else(|e| panic!("cancelling backend {pid}: {e}"));
                claimer = Some(pid);
            }
        }
        Status::Ready | Status::Scheduled => {}
    }
    mark_cancelled(&table, id, wait, claimer)
}

/// Runs `cancel.sql` with `lock_timeout = wait`, turning a timeout into an error that names
/// the claiming backend.
fn mark_cancelled(
    table: &QueueTable,
    id: i64,
    wait: std::time::Duration,
    claimer: Option<i32>,
) -> bool {
    let timeout = std::ffi::CString::new(format!("{}ms", wait.as_millis().max(1)))
        .expect("no NUL in a number");
    let mut queue = None;
    let failure = crate::plumbing::subxact::catching(|| unsafe {
        let level = pg_sys::NewGUCNestLevel();
        set_saved(c"lock_timeout", &timeout, pg_sys::GucContext::PGC_USERSET);
        // pq's own write: the job keeps its enqueuer.
        queue = crate::tasks::enqueuer::as_pq(table.oid, id, || {
            table.one::<String>(Stmt::Cancel, &[id.into(), clock().into()])
        });
        pg_sys::AtEOXact_GUC(true, level);
    });
    match failure {
        None => queue.is_some(),
        Some(f) if f.sqlstate == "55P03" => crate::plumbing::error::raise(
            ERRCODE_LOCK_NOT_AVAILABLE,
            format!(
                "job {id} is still claimed{} after {}ms",
                claimer.map_or(String::new(), |p| format!(" by backend {p}")),
                wait.as_millis()
            ),
            &match claimer {
                Some(p) => format!("its session may be idle in its transaction: SELECT pg_terminate_backend({p}) ends it; then pq_cancel again"),
                None => "wait longer, e.g. pq_cancel(id, wait => '1m'); a job held by a prepared transaction waits for its COMMIT PREPARED or ROLLBACK PREPARED".to_string(),
            },
        ),
        Some(f) => f.rethrow(),
    }
}
