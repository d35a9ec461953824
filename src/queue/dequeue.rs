//! Dequeueing: marking a claimed job dequeued with the heap's own `heap_update`, without an
//! executor run, on tables whose layout makes that update's effects known (see `layout`).
//!
//! On such a table, all a claim's `UPDATE ... SET dequeued_at = now()` (claim.sql) does is
//! write a new row version and add it to the indexes whose predicate admits a dequeued job
//! (the primary key and `*_done_idx`); the `pq_enqueued_by` trigger changes nothing in a claim
//! (pq keeps the enqueuer, and a dequeued row is not pending). So the row is updated directly
//! when, besides the layout, the transaction is READ COMMITTED and may write, and the role
//! holds `UPDATE` on the table and `USAGE` on its schema (and, from `candidates::readable`,
//! `SELECT`, with no row-level security applying). Anything else, and any concurrent change to the row (`heap_update` returning
//! anything but `TM_Ok`), goes through claim.sql, so the executor's checks are never read
//! around: this only leaves out work whose outcome is known. What a claim returns is read from
//! the new row version, as `RETURNING` would.

use crate::plumbing::table::QueueTable;
use crate::queue::job::{Job, Payload};
use crate::queue::layout::{Columns, Layout};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

/// Marks job `id`, the row version at `tid` in `table` (read by `candidates`), dequeued, if
/// the table and transaction allow it (see the module docs), returning the job with its
/// payload copied into `memcx`. `None`: the caller runs claim.sql, which decides.
///
/// ```ignore
/// let job = dequeue::dequeue(&table, tid, c.id, memcx).or_else(|| claim_one(...));
/// ```
pub fn dequeue(
    table: &QueueTable,
    tid: pg_sys::ItemPointerData,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Option<Job> {
    // SAFETY: plain globals. (The claim holds the table's lock since before its privilege
    // checks, see `claim`.)
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32
        || unsafe { pg_sys::XactReadOnly }
        || !crate::plumbing::table::may(table.oid, pg_sys::ACL_UPDATE)
        || !crate::plumbing::table::may_reach(table.oid)
    {
        return None;
    }
    // SAFETY: the relation is opened with the lock an UPDATE takes, kept to the end of the
    // transaction as the executor keeps it; errors raised meanwhile release it by resource
    // owner.
    unsafe {
        let rel = pg_sys::table_open(table.oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let job =
            crate::queue::layout::of(rel).and_then(|layout| update(rel, &layout, tid, id, memcx));
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        job
    }
}

/// Updates the row at `tid` (job `id`) to dequeued, adds its index entries, and reads the job
/// back. `None` if the row changed since it was read: claim.sql then decides.
unsafe fn update(
    rel: pg_sys::Relation,
    layout: &Layout,
    mut tid: pg_sys::ItemPointerData,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Option<Job> {
    unsafe {
        // An UPDATE of a table that publishes updates needs a replica identity (raises if not).
        pg_sys::CheckCmdReplicaIdentity(rel, pg_sys::CmdType::CMD_UPDATE);
        let cols = layout.columns;
        let desc = (*rel).rd_att;
        // The row version the candidate scan saw (its snapshot is still registered, so it
        // cannot have been pruned); only its contents are used, heap_update decides the rest.
        let mut old: pg_sys::HeapTupleData = std::mem::zeroed();
        old.t_self = tid;
        let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
        if !pg_sys::heap_fetch(
            rel,
            &raw mut pg_sys::SnapshotAnyData,
            &mut old,
            &mut buffer,
            true,
        ) {
            return None;
        }
        let now = pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let mut column = cols.dequeued_at;
        let mut value = now;
        let mut null = false;
        let new = pg_sys::heap_modify_tuple_by_cols(
            &mut old,
            desc,
            1,
            &mut column,
            &mut value,
            &mut null,
        );
        pg_sys::ReleaseBuffer(buffer);
        (*new).t_tableOid = (*rel).rd_id;
        let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
        let mut lockmode: pg_sys::LockTupleMode::Type = 0;
        // A command of its own, as SPI gives each statement: the caller's statement (say, a
        // DELETE ... WHERE id IN (SELECT id FROM pq_get(...))) must see the row as changed by
        // an earlier command, not silently skip it as its own.
        pg_sys::CommandCounterIncrement();
        let cid = pg_sys::GetCurrentCommandId(true);
        #[cfg(feature = "pg15")]
        let (result, indexed) = {
            let r = pg_sys::heap_update(
                rel,
                &mut tid,
                new,
                cid,
                std::ptr::null_mut(),
                true,
                &mut failure,
                &mut lockmode,
            );
            // A heap-only (HOT) version needs no index entries.
            (
                r,
                (*(*new).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE == 0,
            )
        };
        #[cfg(not(feature = "pg15"))]
        let (result, indexed) = {
            let mut which: pg_sys::TU_UpdateIndexes::Type = pg_sys::TU_UpdateIndexes::TU_None;
            let r = pg_sys::heap_update(
                rel,
                &mut tid,
                new,
                cid,
                std::ptr::null_mut(),
                true,
                &mut failure,
                &mut lockmode,
                &mut which,
            );
            // TU_Summarizing touches only BRIN-like indexes, which never classify as entries.
            (r, which == pg_sys::TU_UpdateIndexes::TU_All)
        };
        if result != pg_sys::TM_Result::TM_Ok {
            return None; // changed meanwhile (claimed, updated, deleted): claim.sql re-checks
        }
        if indexed {
            let dequeued_at = cols.dequeued_at as i16;
            layout.insert_entries(rel, new, |c| c != dequeued_at);
        }
        // As the executor does between statements: later reads in this transaction see it.
        pg_sys::CommandCounterIncrement();
        Some(job_of(new, desc, cols, id, memcx))
    }
}

/// The job in row version `row`, its payload copied into `memcx`: what claim.sql's
/// `RETURNING` gives.
unsafe fn job_of(
    row: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    cols: Columns,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Job {
    unsafe {
        let get = |attno: i32| {
            let mut null = false;
            let d = pg_sys::heap_getattr(row, attno, desc, &mut null);
            (!null).then_some(d)
        };
        let ts = |attno: i32| get(attno).and_then(|d| TimestampWithTimeZone::from_datum(d, false));
        let data = get(cols.data).expect("data is NOT NULL");
        let data = memcx
            .switch_to(|_| pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(data.cast_mut_ptr())));
        Job {
            id,
            data: Payload(data),
            size: text_length(data),
            enqueued_at: ts(cols.enqueued_at).expect("enqueued_at is NOT NULL"),
            schedule_at: ts(cols.schedule_at),
            expected_at: ts(cols.expected_at),
            enqueued_by: cols
                .enqueued_by
                .and_then(get)
                .map_or(
                    pg_sys::Oid::INVALID,
                    |d| pg_sys::Oid::from(d.value() as u32),
                ),
        }
    }
}

/// `length(data::text)`: the characters of a jsonb's text form, in the database encoding.
unsafe fn text_length(data: pg_sys::Datum) -> i32 {
    unsafe {
        let text = pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(data)])
            .expect("jsonb_out returns a string");
        let text = text.cast_mut_ptr::<std::ffi::c_char>();
        let n =
            pg_sys::pg_mbstrlen_with_len(text, std::ffi::CStr::from_ptr(text).count_bytes() as i32);
        pg_sys::pfree(text.cast());
        n
    }
}
