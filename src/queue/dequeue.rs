//! Dequeueing: marking a claimed job dequeued with the heap's own `heap_update`, without an
//! executor run, on tables whose layout makes that update's effects known.
//!
//! A claim's `UPDATE ... SET dequeued_at = now() WHERE id = $1` (claim.sql) cost as much as
//! the rest of `pq_get` (profiled: executor start-up for one row, an index scan for a row
//! whose address we hold, the row lock a BEFORE trigger forces, the CHECK constraint parsed
//! again, six index predicates compiled). On a queue table as `pq_create_table` makes it,
//! all that update does is known: a new row version, and entries in the indexes whose
//! predicate admits a dequeued job (the primary key and `*_done_idx`); the `pq_enqueued_by`
//! trigger changes nothing in a claim (pq keeps the enqueuer, and a dequeued row is not
//! pending). So the row is updated directly when, checked on every claim:
//!
//! - the transaction is READ COMMITTED and the role holds `UPDATE` on the table (and, from
//!   `candidates::readable`, `SELECT`, with no row-level security applying);
//! - the table is a plain heap table, not a partition, whose triggers are all pq's own, with no
//!   stored generated column and no CHECK that reads `dequeued_at`;
//! - every index is a B-tree on plain columns that either leaves dequeued jobs out (its
//!   predicate has `dequeued_at IS NULL`) or has no predicate but `dequeued_at IS NOT NULL`,
//!   with unique ones checked at once, as the executor checks them.
//!
//! Anything else (a user's trigger or index, another isolation level) and any concurrent
//! change to the row (`heap_update` returning anything but `TM_Ok`) goes through claim.sql,
//! so the executor's checks are never read around: this only leaves out work whose outcome is
//! known. What a claim returns is read from the new row version, as `RETURNING` would.

use crate::plumbing::table::QueueTable;
use crate::queue::job::{Job, Payload};
use pgrx::prelude::*;
use pgrx::{PgList, PgMemoryContexts};
use std::cell::RefCell;
use std::collections::HashMap;

/// Column numbers of a queue table's rows.
#[derive(Clone, Copy)]
struct Columns {
    enqueued_at: i32,
    dequeued_at: i32,
    expected_at: i32,
    schedule_at: i32,
    data: i32,
    enqueued_by: Option<i32>,
}

/// An index a dequeued row gets an entry in: its key columns, and whether it is unique.
#[derive(Clone)]
struct Entry {
    index: pg_sys::Oid,
    columns: Vec<i16>,
    unique: bool,
}

/// What a table's layout lets a claim do, found once per table and kept until its definition
/// (or one of its indexes') changes.
#[derive(Clone)]
struct Layout {
    /// The table's indexes when it was classified (compared on every claim).
    indexes: Vec<pg_sys::Oid>,
    /// The ones a dequeued row gets an entry in.
    entries: Vec<Entry>,
    columns: Columns,
}

thread_local! {
    /// Per table: its layout, or `None` when claims must go through the executor.
    static LAYOUTS: RefCell<HashMap<pg_sys::Oid, Option<Layout>>> = RefCell::new(HashMap::new());
}

/// Marks job `id`, the row version at `tid` in `table` (read by `candidates`), dequeued, if
/// the table and transaction allow it (see the module docs), returning the job with its
/// payload copied into `memcx`. `None`: the caller runs claim.sql, which decides.
///
/// ```ignore
/// let job = dequeue::dequeue(&table, c.tid?, c.id, memcx).or_else(|| claim_one(...));
/// ```
pub fn dequeue(
    table: &QueueTable,
    tid: pg_sys::ItemPointerData,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Option<Job> {
    // SAFETY: the isolation level is a plain global.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32
        || !crate::plumbing::table::may(table.oid, pg_sys::ACL_UPDATE)
    {
        return None;
    }
    // SAFETY: the relation is opened with the lock an UPDATE takes, kept to the end of the
    // transaction as the executor keeps it; errors raised meanwhile release it by resource
    // owner.
    unsafe {
        let rel = pg_sys::table_open(table.oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let job = layout(rel).and_then(|layout| update(rel, &layout, tid, id, memcx));
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        job
    }
}

/// The layout of open table `rel`, if claims may update it directly.
unsafe fn layout(rel: pg_sys::Relation) -> Option<Layout> {
    unsafe {
        let oid = (*rel).rd_id;
        let indexes = index_list(rel);
        if let Some(stale) =
            crate::plumbing::invalidation::take(crate::plumbing::invalidation::Cache::Dequeue)
        {
            LAYOUTS.with(|l| {
                l.borrow_mut().retain(|t, layout| {
                    !stale(t)
                        && !layout
                            .as_ref()
                            .is_some_and(|layout| layout.indexes.iter().any(&stale))
                })
            });
        }
        let cached = LAYOUTS.with(|l| l.borrow().get(&oid).cloned());
        match cached {
            Some(layout) if layout.as_ref().is_none_or(|l| l.indexes == indexes) => layout,
            _ => {
                let layout = classify(rel, indexes);
                LAYOUTS.with(|l| l.borrow_mut().insert(oid, layout.clone()));
                layout
            }
        }
    }
}

/// The indexes of open table `rel`, as the relcache lists them.
unsafe fn index_list(rel: pg_sys::Relation) -> Vec<pg_sys::Oid> {
    unsafe {
        let list = PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(rel));
        list.iter_oid().collect()
    }
}

/// Works out whether claims may update open table `rel` (with `indexes`) directly.
unsafe fn classify(rel: pg_sys::Relation, indexes: Vec<pg_sys::Oid>) -> Option<Layout> {
    unsafe {
        let form = &*(*rel).rd_rel;
        if (*rel).rd_tableam != pg_sys::GetHeapamTableAmRoutine()
            || form.relispartition
            || form.relkind as u8 != pg_sys::RELKIND_RELATION
        {
            return None;
        }
        let desc = (*rel).rd_att;
        let col = |name: &std::ffi::CStr| {
            let n = pg_sys::SPI_fnumber(desc, name.as_ptr());
            (n > 0).then_some(n)
        };
        col(c"id")?;
        let columns = Columns {
            enqueued_at: col(c"enqueued_at")?,
            dequeued_at: col(c"dequeued_at")?,
            expected_at: col(c"expected_at")?,
            schedule_at: col(c"schedule_at")?,
            data: col(c"data")?,
            enqueued_by: col(c"enqueued_by"),
        };
        if !only_pq_triggers((*rel).trigdesc) || !constraints_allow(desc, columns.dequeued_at) {
            return None;
        }
        let mut entries = Vec::new();
        for &index in &indexes {
            match index_role(index, columns.dequeued_at)? {
                Some(entry) => entries.push(entry),
                None => {} // leaves dequeued jobs out
            }
        }
        Some(Layout {
            indexes,
            entries,
            columns,
        })
    }
}

/// Whether every trigger on the table is `pq_stamp_enqueuer()` (found by its C entry point,
/// whatever schema or name it has).
unsafe fn only_pq_triggers(triggers: *mut pg_sys::TriggerDesc) -> bool {
    if triggers.is_null() {
        return true;
    }
    unsafe {
        let triggers =
            std::slice::from_raw_parts((*triggers).triggers, (*triggers).numtriggers as usize);
        triggers.iter().all(|t| {
            let mut finfo: pg_sys::FmgrInfo = std::mem::zeroed();
            pg_sys::fmgr_info(t.tgfoid, &mut finfo);
            let ours = crate::tasks::enqueuer::pq_stamp_enqueuer_wrapper as *const () as usize;
            finfo.fn_addr.map(|f| f as usize) == Some(ours)
        })
    }
}

/// Whether the table has no stored generated column and no CHECK that reads `dequeued_at`
/// (pq's own, `length(q_name) > 0`, does not: a claim cannot break it).
unsafe fn constraints_allow(desc: pg_sys::TupleDesc, dequeued_at: i32) -> bool {
    unsafe {
        let constr = (*desc).constr;
        if constr.is_null() {
            return true;
        }
        if (*constr).has_generated_stored {
            return false;
        }
        let checks = std::slice::from_raw_parts((*constr).check, (*constr).num_check as usize);
        checks.iter().all(|c| {
            let expr = pg_sys::stringToNode(c.ccbin) as *mut pg_sys::Node;
            let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
            pg_sys::pull_varattnos(expr, 1, &mut attrs);
            !pg_sys::bms_is_member(
                dequeued_at - pg_sys::FirstLowInvalidHeapAttributeNumber,
                attrs,
            )
        })
    }
}

/// What a claim must do to index `oid`: `Some(None)` nothing (its predicate leaves dequeued
/// jobs out), `Some(Some(entry))` add an entry, `None` something this module does not do.
unsafe fn index_role(oid: pg_sys::Oid, dequeued_at: i32) -> Option<Option<Entry>> {
    unsafe {
        let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let role = (|| {
            let form = &*(*index).rd_index;
            if !form.indisready {
                return Some(None); // being built: the executor skips it too
            }
            let predicate =
                PgList::<pg_sys::Node>::from_pg(pg_sys::RelationGetIndexPredicate(index));
            let tests: Vec<Option<pg_sys::NullTestType::Type>> = predicate
                .iter_ptr()
                .map(|clause| null_test_of(clause, dequeued_at))
                .collect();
            if tests.contains(&Some(pg_sys::NullTestType::IS_NULL)) {
                return Some(None);
            }
            let admits_all = tests
                .iter()
                .all(|t| *t == Some(pg_sys::NullTestType::IS_NOT_NULL));
            let plain = pg_sys::RelationGetIndexExpressions(index).is_null();
            let btree = (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID;
            if !admits_all || !plain || !btree || form.indisexclusion {
                return None;
            }
            if form.indisunique && !form.indimmediate {
                return None; // deferred uniqueness: the executor's business
            }
            let keys = form.indkey.values.as_slice(form.indnatts as usize);
            if keys.iter().any(|&k| k <= 0) {
                return None;
            }
            Some(Some(Entry {
                index: oid,
                columns: keys.to_vec(),
                unique: form.indisunique,
            }))
        })();
        pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        role
    }
}

/// The kind of null test `clause` is on column `attno`, if it is one.
unsafe fn null_test_of(
    clause: *mut pg_sys::Node,
    attno: i32,
) -> Option<pg_sys::NullTestType::Type> {
    unsafe {
        if (*clause).type_ != pg_sys::NodeTag::T_NullTest {
            return None;
        }
        let test = clause as *mut pg_sys::NullTest;
        let arg = (*test).arg as *mut pg_sys::Node;
        if arg.is_null() || (*arg).type_ != pg_sys::NodeTag::T_Var {
            return None;
        }
        let var = arg as *mut pg_sys::Var;
        ((*var).varattno as i32 == attno).then_some((*test).nulltesttype)
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
            for entry in &layout.entries {
                insert_entry(rel, entry, new, desc, cols.dequeued_at);
            }
        }
        // As the executor does between statements: later reads in this transaction see it.
        pg_sys::CommandCounterIncrement();
        Some(job_of(new, desc, cols, id, memcx))
    }
}

/// Adds `new`'s entry to `entry`'s index, as `ExecInsertIndexTuples` would.
unsafe fn insert_entry(
    rel: pg_sys::Relation,
    entry: &Entry,
    new: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    dequeued_at: i32,
) {
    unsafe {
        let index = pg_sys::index_open(entry.index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let info = pg_sys::BuildIndexInfo(index);
        let mut values = Vec::with_capacity(entry.columns.len());
        let mut nulls = Vec::with_capacity(entry.columns.len());
        for &attno in &entry.columns {
            let mut null = false;
            values.push(pg_sys::heap_getattr(new, attno as i32, desc, &mut null));
            nulls.push(null);
        }
        // The executor's hint for bottom-up deletion: this update left the key alone.
        let unchanged = !entry.columns.contains(&(dequeued_at as i16));
        let check = if entry.unique {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
        } else {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
        };
        pg_sys::index_insert(
            index,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
            &mut (*new).t_self,
            rel,
            check,
            unchanged,
            info,
        );
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        pg_sys::index_insert_cleanup(index, info);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
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
