//! Dequeueing: marking a claimed job dequeued with the heap's own `heap_update`, without an
//! executor run, on tables whose layout makes that update's effects known (see `layout`).
//!
//! On such a table, all a claim's `UPDATE ... SET dequeued_at = now()` (claim.sql) does is
//! write a new row version and add it to the indexes whose predicate admits a dequeued job
//! (the primary key and `*_done_idx`); the `pq_enqueued_by` trigger changes nothing in a claim
//! (pq keeps the enqueuer, and a dequeued row is not pending). So the row is updated directly
//! when, besides the layout, the transaction is READ COMMITTED and may write, and the role
//! holds `UPDATE` on the table and `USAGE` on its schema (and, from `candidates::readable`,
//! `SELECT`, with no row-level security applying). Anything else goes through claim.sql, so the
//! executor's checks are never read around: this only leaves out work whose outcome is known.
//! A concurrent change to the row (`heap_update` returning anything but `TM_Ok`) is settled
//! here only where claim.sql's outcome is known too: a committed claim or delete (nothing to
//! take) and another transaction's running update (skipped, as `SKIP LOCKED` skips it); row
//! locks, multixacts and other committed updates go to claim.sql. What a claim returns is read
//! from the new row version, as `RETURNING` would.

use crate::plumbing::table::QueueTable;
use crate::queue::job::{Job, Payload};
use crate::queue::layout::{Columns, Layout};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

/// What [`dequeue`] did with a candidate.
pub enum Dequeued {
    /// Marked it dequeued: the job.
    Claimed(Job),
    /// Nothing: a transaction that committed after the candidate was read claimed (or deleted)
    /// it. (claim.sql would find the same, through a statement.)
    Consumed,
    /// Nothing: another running transaction is updating the row (a claimer that reached it
    /// first). claim.sql's `SKIP LOCKED` would skip it the same way, so the head must not
    /// pass it: that transaction may roll back, or not be a claim.
    Locked,
    /// Nothing: claim.sql decides (the table or transaction does not allow a direct write, or
    /// the row changed in a way only its re-check settles).
    ToSql,
}

/// Marks job `id`, the row version at `tid` in `table` (read by `candidates`), dequeued, if
/// the table and transaction allow it (see the module docs), copying its payload into
/// `memcx`.
///
/// ```ignore
/// match dequeue::dequeue(&table, tid, c.id, memcx) { Dequeued::ToSql => claim_one(...), ... }
/// ```
pub fn dequeue(
    table: &QueueTable,
    tid: pg_sys::ItemPointerData,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Dequeued {
    // SAFETY: plain globals. (The claim holds the table's lock since before its privilege
    // checks, see `claim`.)
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32
        || unsafe { pg_sys::XactReadOnly }
        || !crate::plumbing::table::may(table.oid, pg_sys::ACL_UPDATE)
        || !crate::plumbing::table::may_reach(table.oid)
    {
        return Dequeued::ToSql;
    }
    // SAFETY: the relation is opened with the lock an UPDATE takes, kept to the end of the
    // transaction as the executor keeps it; errors raised meanwhile release it by resource
    // owner.
    unsafe {
        let rel = pg_sys::table_open(table.oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let done = match crate::queue::layout::of(rel) {
            Some(layout) => update(rel, &layout, tid, id, memcx),
            None => Dequeued::ToSql,
        };
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        done
    }
}

/// Updates the row at `tid` (job `id`) to dequeued, adds its index entries, and reads the job
/// back; or says why not.
unsafe fn update(
    rel: pg_sys::Relation,
    layout: &Layout,
    mut tid: pg_sys::ItemPointerData,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Dequeued {
    unsafe {
        // An UPDATE of a table that publishes updates needs a replica identity (raises if not).
        pg_sys::CheckCmdReplicaIdentity(rel, pg_sys::CmdType::CMD_UPDATE);
        let cols = layout.columns;
        let desc = (*rel).rd_att;
        // The row version the candidate scan saw (its snapshot is still registered, so it
        // cannot have been pruned); only its contents are used, heap_update decides the rest.
        let Some((mut old, buffer)) = fetch_any(rel, tid) else {
            return Dequeued::ToSql;
        };
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
                false, // never wait for a row someone else holds (see the match below)
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
                false, // never wait for a row someone else holds (see the match below)
                &mut failure,
                &mut lockmode,
                &mut which,
            );
            // TU_Summarizing touches only BRIN-like indexes, which never classify as entries.
            (r, which == pg_sys::TU_UpdateIndexes::TU_All)
        };
        match result {
            pg_sys::TM_Result::TM_Ok => {}
            // These two committed after our read. A claim, or a delete, leaves nothing to take;
            // any other update (a requeue, a pq_update) may have left the job ready, and
            // claim.sql re-checks the newest version. Of the running ones (TM_BeingModified,
            // never waited for here), another transaction's update or delete is skipped as
            // claim.sql's SKIP LOCKED would skip it; a row lock (ours, which SKIP LOCKED does not
            // skip, or another's) or a multixact goes to claim.sql.
            pg_sys::TM_Result::TM_Deleted => return Dequeued::Consumed,
            pg_sys::TM_Result::TM_Updated if dequeued(rel, failure.ctid, cols) => {
                return Dequeued::Consumed
            }
            // Another transaction's update or delete, running.
            pg_sys::TM_Result::TM_BeingModified if updated_by_another(rel, tid) => {
                return Dequeued::Locked
            }
            _ => return Dequeued::ToSql,
        }
        if indexed {
            let dequeued_at = cols.dequeued_at as i16;
            layout.insert_entries(rel, new, |c| c != dequeued_at);
        }
        // As the executor does between statements: later reads in this transaction see it.
        pg_sys::CommandCounterIncrement();
        Dequeued::Claimed(job_of(new, desc, cols, id, memcx))
    }
}

/// The row version at `tid` of open table `rel`, whatever its visibility, with its buffer
/// pinned (the caller releases it); `None` if the slot holds no tuple.
unsafe fn fetch_any(
    rel: pg_sys::Relation,
    tid: pg_sys::ItemPointerData,
) -> Option<(pg_sys::HeapTupleData, pg_sys::Buffer)> {
    unsafe {
        let mut row: pg_sys::HeapTupleData = std::mem::zeroed();
        row.t_self = tid;
        let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
        pg_sys::heap_fetch(
            rel,
            &raw mut pg_sys::SnapshotAnyData,
            &mut row,
            &mut buffer,
            true,
        )
        .then_some((row, buffer))
    }
}

/// Whether the row version at `tid` (the one an update of our candidate made) is dequeued.
unsafe fn dequeued(rel: pg_sys::Relation, tid: pg_sys::ItemPointerData, cols: Columns) -> bool {
    unsafe {
        let Some((mut row, buffer)) = fetch_any(rel, tid) else {
            return false;
        };
        let mut null = false;
        pg_sys::heap_getattr(&mut row, cols.dequeued_at, (*rel).rd_att, &mut null);
        pg_sys::ReleaseBuffer(buffer);
        !null
    }
}

/// The transaction that updated or deleted the row version at `tid` of `table`, as its
/// header says: a claimer always updates the row, so a lock alone (of any strength, running or
/// ended) counts as none, and so does a multixact: a lock-only holder is no claimer, and
/// whoever holds the row is the claim's statement to skip (`InvalidTransactionId`: none).
///
/// ```ignore
/// let xmax = dequeue::xmax_now(table.oid, tid);
/// ```
pub fn xmax_now(table: pg_sys::Oid, tid: pg_sys::ItemPointerData) -> pg_sys::TransactionId {
    // SAFETY: the claim holds the table's lock (a partition's or child's, read through SQL,
    // is locked by that statement).
    unsafe {
        let rel = pg_sys::table_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let xmax = updater(rel, tid);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        xmax
    }
}

/// [`xmax_now`] of open table `rel`.
unsafe fn updater(rel: pg_sys::Relation, tid: pg_sys::ItemPointerData) -> pg_sys::TransactionId {
    unsafe {
        let mut xmax = pg_sys::InvalidTransactionId;
        // The buffer stays pinned while the header is read.
        if let Some((row, buffer)) = fetch_any(rel, tid) {
            let header = &*row.t_data;
            let mask = header.t_infomask as u32;
            // HEAP_XMAX_IS_LOCKED_ONLY (not a multixact here)
            let lock_only = mask & pg_sys::HEAP_XMAX_LOCK_ONLY != 0
                || mask & pg_sys::HEAP_LOCK_MASK == pg_sys::HEAP_XMAX_EXCL_LOCK;
            if mask & (pg_sys::HEAP_XMAX_INVALID | pg_sys::HEAP_XMAX_IS_MULTI) == 0 && !lock_only {
                xmax = header.t_choice.t_heap.t_xmax;
            }
            pg_sys::ReleaseBuffer(buffer);
        }
        xmax
    }
}

/// Whether a running transaction other than ours is updating (or deleting) the row version at
/// `tid`.
unsafe fn updated_by_another(rel: pg_sys::Relation, tid: pg_sys::ItemPointerData) -> bool {
    unsafe {
        let xmax = updater(rel, tid);
        crate::queue::claim::being_claimed(xmax)
            && !pg_sys::TransactionIdIsCurrentTransactionId(xmax)
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
