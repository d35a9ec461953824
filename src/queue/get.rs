//! Get: the SQL face of claiming, `pq_get(queue, timeout, batch_size, tbl)`.

use crate::plumbing::error::{raise, require_queue};
use crate::plumbing::pinning::pinned;
use crate::plumbing::table::QueueTable;
use crate::queue::claim::{Job, Only, Payload};
use crate::queue::wait;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use pgrx::PgSqlErrorCode::*;
use std::time::Duration;

/// Claims up to `batch_size` ready jobs of `queue` for the current transaction, waiting up to
/// `timeout` (default `'0'`: no wait; NULL: until interrupted) for the first. Commit consumes
/// the jobs, rollback returns them. With `functions`, only task jobs naming one of them (a
/// client worker's handlers).
///
/// ```sql
/// BEGIN;
/// SELECT * FROM pq_get('apples');            -- zero or one row
/// SELECT * FROM pq_get('apples', '5s', 10);  -- wait up to 5 s, take up to 10
/// COMMIT;
/// ```
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)]
fn pq_get(
    queue: Option<&str>,
    timeout: Option<Interval>,
    batch_size: Option<i32>,
    tbl: Option<pg_sys::Oid>,
    functions: Option<Vec<String>>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(data, Payload),
        name!(size, i32),
        name!(enqueued_at, TimestampWithTimeZone),
        name!(schedule_at, Option<TimestampWithTimeZone>),
        name!(expected_at, Option<TimestampWithTimeZone>),
    ),
> {
    let queue = require_queue(queue);
    let limit = match batch_size {
        Some(n) if n > 0 && n as usize > crate::queue::claim::MAX_CLAIMS => raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "batch_size must be at most {}, got {n}",
                crate::queue::claim::MAX_CLAIMS
            ),
            "each claimed job holds a lock until commit: take at most 1000 per transaction",
        ),
        other => crate::plumbing::error::at_least_one(
            other,
            "batch_size",
            "pass a batch size such as 10, or leave it out for one job",
        ) as usize,
    };
    let timeout = timeout.map(duration);
    let table = QueueTable::resolve(tbl);
    let only = functions.as_deref().map_or(Only::All, Only::AnyOf);
    // Rows are handed out one per call; payloads must live as long as the query, in the
    // function's own context, not the per-call one the executor resets between rows.
    let mut memcx = PgMemoryContexts::For(unsafe { (*(*fcinfo).flinfo).fn_mcxt });
    let jobs = pinned(|p| {
        if timeout == Some(Duration::ZERO) {
            crate::queue::claim::claim(p, &table, queue, only, limit, &mut memcx)
        } else {
            if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
                raise(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                "pq_get cannot wait in a REPEATABLE READ or SERIALIZABLE transaction: its snapshot would never see new jobs".into(),
                "wait in a READ COMMITTED transaction, or pass timeout => '0'",
            )
            }
            wait::get(p, &table, queue, only, timeout, limit, &mut memcx)
        }
    });
    TableIterator::new(jobs.into_iter().map(row))
}

#[allow(clippy::type_complexity)]
fn row(
    j: Job,
) -> (
    i64,
    Payload,
    i32,
    TimestampWithTimeZone,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
) {
    (
        j.id,
        j.data,
        j.size,
        j.enqueued_at,
        j.schedule_at,
        j.expected_at,
    )
}

/// A `timeout` argument as a wall-clock duration.
fn duration(i: Interval) -> Duration {
    crate::queue::timespec::non_negative(
        i,
        "timeout",
        "pass a timeout such as '5s', '0' for no wait, or NULL to wait until interrupted",
    )
}
