//! Enqueueing: inserting a put's row with the heap's own `heap_insert`, without an executor
//! run, on tables whose layout makes that insert's effects known (see `layout`).
//!
//! On such a table, all put.sql's `INSERT ... RETURNING id` does is draw an id from the `id`
//! column's sequence, stamp `enqueued_at = now()`, let the `pq_enqueued_by` trigger stamp the
//! current role and report the pending job (waking waiters, lowering the queue's head,
//! counting the put), and add the row to the indexes whose predicate admits it. So a put does
//! exactly that itself when, besides the layout, the transaction may write and the role holds
//! `INSERT` on the table and `SELECT` on its `id` (for `RETURNING id`), with no row-level
//! security applying to it; `nextval` checks the
//! sequence's privileges as the column default would. Anything else goes through put.sql.

use crate::plumbing::table::QueueTable;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Inserts a job of `queue` with payload `data` (a jsonb datum) into `table`, if the table and
/// transaction allow it (see the module docs), returning its id. `None`: the caller runs
/// put.sql.
///
/// ```ignore
/// let id = enqueue::enqueue(&table, "apples", data, None, None, None).or_else(|| ...);
/// ```
pub fn enqueue(
    table: &QueueTable,
    queue: &str,
    data: &DatumWithOid<'_>,
    schedule_at: Option<TimestampWithTimeZone>,
    expected_at: Option<TimestampWithTimeZone>,
    key: Option<&str>,
) -> Option<i64> {
    // SAFETY: a plain global.
    if unsafe { pg_sys::XactReadOnly } {
        return None;
    }
    // SAFETY: the relation is opened with the lock an INSERT takes, kept to the end of the
    // transaction as the executor keeps it; errors raised meanwhile release it by resource
    // owner. The row is formed from datums of the right types for its columns.
    unsafe {
        let rel = pg_sys::table_open(table.oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        // Checked under the lock, as the executor checks: a put that waited for a DDL
        // transaction sees the privileges and policies it committed.
        if !crate::plumbing::table::may(table.oid, pg_sys::ACL_INSERT)
            || crate::queue::candidates::row_security(table.oid)
            || !crate::plumbing::table::may_reach(table.oid)
        {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return None;
        }
        // RETURNING id needs SELECT on it: without, put.sql raises the executor's 42501.
        let layout = crate::queue::layout::of(rel).filter(|l| {
            l.puttable.is_some()
                && (key.is_none() || l.columns.key.is_some())
                && crate::plumbing::table::may_read_column(table.oid, l.columns.id)
        });
        let id = layout.map(|layout| {
            let cols = layout.columns;
            let sequence = layout.puttable.expect("filtered");
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0); natts];
            let mut nulls = vec![true; natts];
            let mut set = |attno: i32, value: Option<pg_sys::Datum>| {
                if let Some(v) = value {
                    values[attno as usize - 1] = v;
                    nulls[attno as usize - 1] = false;
                }
            };
            // The column default, with its privilege check on the sequence.
            let id =
                pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[sequence.into_datum()])
                    .expect("nextval returns a value");
            set(cols.id, id.into_datum());
            set(
                cols.enqueued_at,
                Some(pg_sys::Datum::from(
                    pg_sys::GetCurrentTransactionStartTimestamp(),
                )),
            );
            set(cols.q_name, queue.into_datum());
            set(cols.data, data.datum().map(|d| d.sans_lifetime()));
            set(cols.schedule_at, schedule_at.into_datum());
            set(cols.expected_at, expected_at.into_datum());
            if let Some(by) = cols.enqueued_by {
                set(by, Some(pg_sys::Datum::from(pg_sys::GetUserId())));
            }
            if let (Some(column), Some(key)) = (cols.key, key) {
                set(column, key.into_datum());
            }
            let row = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::heap_insert(
                rel,
                row,
                pg_sys::GetCurrentCommandId(true),
                0,
                std::ptr::null_mut(),
            );
            layout.insert_entries(rel, row, |_| false);
            // What the trigger reports for an inserted row.
            crate::tasks::enqueuer::report_pending(table.oid, row, desc, true);
            // As the executor does between statements: later reads in this transaction see it.
            pg_sys::CommandCounterIncrement();
            id
        });
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        id
    }
}
