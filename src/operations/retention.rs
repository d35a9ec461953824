//! Retention: finished jobs are deleted after `pq.retention`, so the queue table stops growing.
//!
//! Python pq never deletes a job; a queue that runs for months then carries every job it ever
//! had. `pq_purge()` deletes done jobs dequeued longer ago than `pq.retention` (default one
//! day, as River keeps completed jobs), oldest first, in batches of [`BATCH`] found through the
//! `*_done_idx` index. Failed task jobs are kept until requeued or purged with
//! `failed => true`. With pq preloaded, a maintenance worker purges every queue table of
//! `pq.worker_database` every [`EVERY`], committing after each batch, as each table's owner;
//! elsewhere, call `pq_purge()` from cron or pg_cron.

use crate::plumbing::pinning::pinned;
use crate::plumbing::table::{QueueTable, Stmt};
use crate::tasks::sandbox::Deadline;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::time::Duration;

/// `pq.retention`, in seconds; -1 keeps finished jobs forever.
static RETENTION: GucSetting<i32> = GucSetting::<i32>::new(24 * 60 * 60);

/// Rows deleted per statement: short statements, short row locks.
pub const BATCH: i64 = 1000;

/// How often the maintenance worker purges.
const EVERY: Duration = Duration::from_secs(10);

/// How often it puts the jobs of due periodic jobs (see `periodic`).
const TICK: Duration = Duration::from_secs(1);

/// Most schedules it runs in one tick.
const TICK_MAX: usize = 1000;

/// Longest one batch of the maintenance worker may take (a trigger on the table runs in it).
const BATCH_LIMIT: Duration = Duration::from_secs(60);

/// Defines `pq.retention`. Called from `_PG_init`.
pub fn init() {
    GucRegistry::define_int_guc(
        c"pq.retention",
        c"How long finished jobs are kept before pq_purge() and the maintenance worker delete them.",
        c"-1 keeps them forever. Failed task jobs are kept until requeued or purged with failed => true.",
        &RETENTION,
        -1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

/// Deletes up to `max_rows` finished jobs of `tbl` dequeued before `older_than` ago (default:
/// `pq.retention`), in batches of 1000, oldest first; with `failed`, failed task jobs too.
/// Returns how many it deleted. Call it repeatedly (each call in its own transaction) to
/// purge more; the maintenance worker does so when pq is preloaded.
///
/// ```sql
/// SELECT pq_purge();                       -- what pq.retention says
/// SELECT pq_purge('1 hour', 50000);        -- done jobs older than an hour, up to 50,000
/// SELECT pq_purge('30 days', failed => true);
/// ```
#[pg_extern(sql = false)]
fn pq_purge(
    older_than: Option<Interval>,
    max_rows: Option<i32>,
    failed: Option<bool>,
    tbl: Option<pg_sys::Oid>,
) -> i64 {
    let table = QueueTable::resolve(tbl);
    let keep = match older_than {
        Some(i) => crate::queue::timespec::non_negative(
            i,
            "older_than",
            "pass how long to keep finished jobs, e.g. '1 day', or NULL for pq.retention",
        ),
        None => match retention() {
            Some(d) => d,
            None => return 0, // pq.retention = -1: keep everything
        },
    };
    let max_rows = crate::plumbing::error::at_least_one(
        max_rows,
        "max_rows",
        "pass how many jobs to delete at most, e.g. 10000",
    ) as i64;
    purge(&table, keep, max_rows, failed.unwrap_or(false))
}

/// `pq.retention`, `None` when finished jobs are kept forever.
pub fn retention() -> Option<Duration> {
    let s = RETENTION.get();
    (s >= 0).then(|| Duration::from_secs(s as u64))
}

/// Deletes up to `max_rows` finished jobs of `table` dequeued more than `keep` ago.
pub fn purge(table: &QueueTable, keep: Duration, max_rows: i64, failed: bool) -> i64 {
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let keep = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    let cutoff = TimestampWithTimeZone::try_from(now.saturating_sub(keep).max(i64::MIN + 1))
        .unwrap_or_else(|_| TimestampWithTimeZone::negative_infinity());
    let mut deleted = 0;
    while deleted < max_rows {
        let batch = BATCH.min(max_rows - deleted);
        let n = pinned(|p| {
            Spi::connect(|client| {
                table.with_plan(p, client, Stmt::Purge, |plan| {
                    client
                        .select(plan, None, &[cutoff.into(), batch.into(), failed.into()])
                        .map(|t| t.len() as i64)
                })
            })
        })
        .unwrap_or_else(|e| panic!("purging finished jobs: {e}"));
        deleted += n;
        if n < batch {
            break;
        }
    }
    deleted
}

/// When preloaded, registers the maintenance worker. Called from `worker::init`.
pub fn register_worker() {
    BackgroundWorkerBuilder::new("pq maintenance")
        .set_type("pq maintenance")
        .set_library("pq")
        .set_function("pq_maintenance_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// Puts the jobs of the due periodic jobs, one schedule per transaction, once the extension
/// (0.5.0 or later) is created in the worker's database; a failure is logged, and retried at the
/// next tick. At most [`TICK_MAX`] a tick, so purges still get their turn.
fn run_schedules() {
    for _ in 0..TICK_MAX {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        let ran = BackgroundWorker::transaction(|| {
            if pinned(|_| crate::plumbing::table::extension_relation("pq_periodic")).is_none() {
                return false;
            }
            let mut ran = false;
            if let Some(f) = crate::plumbing::subxact::catching(|| {
                ran = crate::operations::periodic::run_one().is_some();
            }) {
                if f.is_cancel() {
                    f.rethrow();
                }
                log!(
                    "pq maintenance: periodic jobs failed ({}: {})",
                    f.sqlstate,
                    f.message
                );
            }
            ran
        });
        if !ran {
            return;
        }
    }
}

/// The maintenance worker: every [`TICK`] puts the jobs of due periodic jobs, and every
/// [`EVERY`] purges every queue table of `pq.worker_database`
/// as the table's owner (so no trigger on it runs with more rights than its owner has), as a
/// task runs (settings a trigger changes are undone; [`BATCH_LIMIT`] a batch), committing
/// after each batch. It connects as the bootstrap superuser (purging another
/// role's table needs its owner's rights), so everything it runs is pinned and qualified, and
/// one table that fails (dropped meanwhile, a trigger that raises, a revoked privilege) is
/// logged and skipped: it never stops the others.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pq_maintenance_main(_arg: pg_sys::Datum) {
    // SIGTERM keeps PostgreSQL's own handler for background workers, which ends the worker at
    // once with FATAL: no trigger of a table it purges or a schedule it puts can catch that,
    // so pg_terminate_backend and a fast shutdown always work.
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    BackgroundWorker::connect_worker_to_spi(crate::tasks::worker::database().as_deref(), None);
    let mut purged = std::time::Instant::now();
    while BackgroundWorker::wait_latch(Some(TICK)) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        run_schedules();
        if purged.elapsed() < EVERY {
            continue;
        }
        purged = std::time::Instant::now();
        let Some(keep) = retention() else { continue };
        let tables = BackgroundWorker::transaction(|| {
            pinned(|_| {
                Spi::connect(|c| {
                    c.select(include_str!("../queries/queue_tables.sql"), None, &[])
                        .map(|rows| {
                            rows.map(|r| {
                                let t = r.get::<pg_sys::Oid>(1).ok().flatten();
                                let o = r.get::<pg_sys::Oid>(2).ok().flatten();
                                (t.unwrap_or_default(), o.unwrap_or_default())
                            })
                            .collect::<Vec<_>>()
                        })
                })
            })
            .unwrap_or_else(|e| panic!("listing queue tables: {e}"))
        });
        for (table, owner) in tables {
            // One batch per transaction, until a batch comes back short or fails.
            loop {
                if BackgroundWorker::sigterm_received() {
                    break;
                }
                let deleted = BackgroundWorker::transaction(|| {
                    let mut deleted = 0;
                    // As a task runs: as the owner, a security-restricted operation, with every
                    // setting a trigger changes undone, and a time limit.
                    let deadline = Deadline::arm(Some(BATCH_LIMIT));
                    let failure = crate::plumbing::subxact::catching(|| {
                        crate::tasks::sandbox::run_as(owner, || {
                            let table = QueueTable::resolve(Some(table));
                            deleted = purge(&table, keep, BATCH, false);
                        })
                    });
                    let timed_out = deadline.expired();
                    drop(deadline);
                    if let Some(f) = failure {
                        if f.is_cancel() && !timed_out {
                            f.rethrow();
                        }
                        log!(
                            "pq maintenance: purging table {} failed ({}: {}); skipped until the next round",
                            table.to_u32(),
                            f.sqlstate,
                            f.message
                        );
                        return 0;
                    }
                    deleted
                });
                if deleted < BATCH {
                    break;
                }
            }
        }
    }
    // SIGTERM: at shutdown nothing restarts it; after pg_terminate_backend, exiting with 1
    // has the postmaster start it again (exit 0 would end retention until the next restart).
    unsafe { pg_sys::proc_exit(1) };
}
