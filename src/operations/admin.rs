//! Inspecting and tending queues: Python pq's `len(queue)`, `queue.clear()`, updating a
//! job's data, and per-queue statistics.

use crate::plumbing::error::{require, require_queue};
use crate::plumbing::pinning::pinned;
use crate::plumbing::table::{QueueTable, Stmt};
use pgrx::datum::{DatumWithOid, Internal, Interval};
use pgrx::prelude::*;

/// `tbl` itself if it is a queue table (a table with the queue layout), else 42809: for
/// functions written in SQL that take a queue table (`pq_jobs`, `pq_failed`), as every other
/// function checks it.
///
/// ```sql
/// SELECT pq_queue_table('jobs');   -- jobs
/// ```
#[pg_extern(sql = false)]
fn pq_queue_table(tbl: Option<pg_sys::Oid>) -> pg_sys::Oid {
    QueueTable::resolve(tbl).oid
}

/// Number of ready jobs in `queue` (undequeued, and not scheduled in the future).
///
/// ```sql
/// SELECT pq_len('apples');
/// ```
#[pg_extern(sql = false)]
fn pq_len(queue: Option<&str>, tbl: Option<pg_sys::Oid>) -> i64 {
    let queue = require_queue(queue);
    QueueTable::resolve(tbl)
        .one::<i64>(Stmt::Len, &[queue.into()])
        .unwrap_or(0)
}

/// Deletes every job of `queue`, done or pending; returns how many.
///
/// ```sql
/// SELECT pq_clear('apples');
/// ```
#[pg_extern(sql = false)]
fn pq_clear(queue: Option<&str>, tbl: Option<pg_sys::Oid>) -> i64 {
    let queue = require_queue(queue);
    let table = QueueTable::resolve(tbl);
    pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(p, client, Stmt::Clear, |plan| {
                client
                    .select(plan, None, &[queue.into()])
                    .map(|t| t.len() as i64)
            })
        })
    })
    .unwrap_or_else(|e| panic!("clearing {queue}: {e}"))
}

/// Replaces the data of job `id` in `queue`; true when the job exists.
///
/// ```sql
/// SELECT pq_update('apples', 42, '{"kind":"Bramley"}');
/// ```
#[pg_extern(sql = false)]
fn pq_update(
    queue: Option<&str>,
    id: Option<i64>,
    data: Option<Internal>,
    tbl: Option<pg_sys::Oid>,
) -> bool {
    let queue = require_queue(queue);
    let id = require(id, "id", "42");
    let data = require(
        data.and_then(Internal::unwrap),
        "data",
        "'{\"kind\":\"Cox\"}'",
    );
    // SAFETY: our jsonb argument, alive for the call.
    let data = unsafe { DatumWithOid::new(data, pg_sys::JSONBOID) };
    QueueTable::resolve(tbl)
        .one::<i64>(Stmt::Update, &[queue.into(), id.into(), data])
        .is_some()
}

/// Per-queue counts: ready, scheduled (future), in flight (claimed by an open transaction),
/// done, the age of the oldest ready job, squatted: pending jobs whose advisory lock key
/// a session holds without claiming them (they stay claimable; see `claim`), and cancelled;
/// then the queue's controls: paused, and its concurrency limit. A queue with controls but no
/// jobs has a row of zeros.
///
/// ```sql
/// SELECT * FROM pq_stats();   -- or the view: SELECT * FROM pq_stats;
/// ```
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)]
fn pq_stats(
    tbl: Option<pg_sys::Oid>,
) -> TableIterator<
    'static,
    (
        name!(queue, String),
        name!(ready, i64),
        name!(scheduled, i64),
        name!(in_flight, i64),
        name!(done, i64),
        name!(oldest_ready_age, Option<Interval>),
        name!(squatted, i64),
        name!(cancelled, i64),
        name!(paused, bool),
        name!(concurrency_limit, Option<i32>),
    ),
> {
    let table = QueueTable::resolve(tbl);
    let controls = crate::operations::controls::all(&table);
    let mut rows: Vec<_> = pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(p, client, Stmt::Stats, |plan| {
                client
                    .select(plan, None, &[table.oid.into()])
                    .unwrap_or_else(|e| panic!("stats: {e}"))
                    .map(|r| {
                        let count = |i| r.get::<i64>(i).ok().flatten().unwrap_or(0);
                        let queue = r.get::<String>(1).ok().flatten().unwrap_or_default();
                        let c = controls.get(&queue).copied().unwrap_or_default();
                        (
                            queue,
                            count(2),
                            count(3),
                            count(4),
                            count(5),
                            r.get::<Interval>(6).ok().flatten(),
                            count(7),
                            count(8),
                            c.paused,
                            c.limit.map(|n| n as i32),
                        )
                    })
                    .collect()
            })
        })
    });
    for (queue, c) in controls.iter() {
        if !rows.iter().any(|r| &r.0 == queue) {
            rows.push((
                queue.clone(),
                0,
                0,
                0,
                0,
                None,
                0,
                0,
                c.paused,
                c.limit.map(|n| n as i32),
            ));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    TableIterator::new(rows)
}
