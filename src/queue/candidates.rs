//! Candidates: the ready jobs of a queue in claim order, read straight from its two indexes.
//!
//! A claim needs only the first few entries of a queue's ready index: running a statement
//! for them (an SQL cursor over a three-arm merge) cost more than the rest of the claim
//! (profiled: executor start-up, portal and three index descents, a third of `pq_get`). So,
//! where a table has the indexes `pq_create_table` makes (found by what they are, not by
//! name), candidates are read with PostgreSQL's index access methods directly, on a fresh
//! snapshot, in the order and with the bounds of `candidates.sql`, which remains the way for
//! tables that lack them:
//!
//! 1. unscheduled jobs with an `expected_at`, from the queue's head (see `heads`);
//! 2. unscheduled jobs without one, by id, from the head;
//! 3. merged into both, the due scheduled jobs, read whole from the scheduled index and
//!    sorted (few, as in the SQL version).
//!
//! Only ids and `expected_at` are read (and, for a client worker's claim, the task
//! function): a skipped candidate's payload is never detoasted. Reading around the executor
//! must not read around its checks: only a session holding `SELECT` on the table, and to
//! which no row-level security applies, reads directly ([`readable`]); the claim itself is an
//! `UPDATE`, or its direct equivalent where the table's layout allows (see `dequeue`).

use crate::queue::heads::Key;
use pgrx::prelude::*;
use pgrx::{direct_function_call, PgMemoryContexts};

/// A candidate job: what claiming needs to decide whether and how to take it.
pub struct Candidate {
    pub id: i64,
    /// Its task function (`data->>'function'`), read only when asked for.
    pub function: Option<String>,
    /// The table holding the row version read (a partition or child when read through SQL)
    /// and its address there: its header says who is changing the row (`dequeue::xmax_now`).
    pub row: (pg_sys::Oid, pg_sys::ItemPointerData),
    pub key: Key,
    /// Whether it came from the scheduled index (such jobs never move a head).
    pub scheduled: bool,
    /// Whether it was read straight from the indexes, so `row` is a row version of the queue
    /// table itself that `dequeue` may update directly.
    pub direct: bool,
}

/// The ready and scheduled indexes of a queue table, if it has both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Indexes {
    pub ready: pg_sys::Oid,
    pub scheduled: pg_sys::Oid,
    /// Set when an index was built over broken HOT chains (`indcheckxmin`): the newest xmin of
    /// their `pg_index` rows, which a transaction's snapshots must all be younger than for it
    /// to read them (the planner's rule, see [`readable`]).
    pub check_xmin: Option<pg_sys::TransactionId>,
}

/// Finds the ready and scheduled indexes of table `oid`, whatever they are named: valid
/// B-trees (not partitioned indexes: only plain tables are read directly) on plain columns,
/// ascending, with `q_name`'s own collation (another could match other queues' names), over
/// `(q_name, expected_at, id)` where `dequeued_at IS NULL AND schedule_at IS NULL` (the ready
/// index) or `(q_name, schedule_at)` where `dequeued_at IS NULL AND schedule_at IS NOT NULL`
/// (the scheduled one), as `pq_create_table` makes them; the lowest oid of each kind. `None`
/// where a table lacks one: its claims use candidates.sql. Once per table and backend (`table`
/// caches it).
///
/// Read from the catalog (`plumbing::catalog`), without locking the table (any role may name
/// any table): a fresh backend's first claim spent about 4 ms planning the SQL this replaces.
///
/// ```ignore
/// let indexes = candidates::find(table_oid); // Some(Indexes { ready, scheduled })
/// ```
pub fn find(oid: pg_sys::Oid) -> Option<Indexes> {
    // Only a plain table without inheritance children is read directly: a partitioned one has
    // no heap or index data of its own (its partitions do), and a child's rows are the
    // table's to SQL but not in its indexes; both are claimed through candidates.sql.
    // (`relhassubclass`: adding a child changes the table's catalog row, so `table`'s cache
    // of `find` is dropped then; the flag can outlive the last child until the next VACUUM,
    // which only sends claims to SQL meanwhile.)
    let plain_table = crate::plumbing::catalog::with_class(oid, |c| {
        c.relkind as u8 == pg_sys::RELKIND_RELATION && !c.relhassubclass
    });
    if plain_table != Some(true) {
        return None;
    }
    let att = |name: &std::ffi::CStr| unsafe { pg_sys::get_attnum(oid, name.as_ptr()) };
    let (q_name, expected_at, id) = (att(c"q_name"), att(c"expected_at"), att(c"id"));
    let (schedule_at, dequeued_at) = (att(c"schedule_at"), att(c"dequeued_at"));
    let collation = unsafe {
        let (mut ty, mut typmod, mut coll) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
        pg_sys::get_atttypetypmodcoll(oid, q_name, &mut ty, &mut typmod, &mut coll);
        coll
    };
    let ready = [q_name, expected_at, id];
    let scheduled = [q_name, schedule_at];
    let (mut found_ready, mut found_scheduled) = (None, None);
    let mut check_xmin: [Option<pg_sys::TransactionId>; 2] = [None, None];
    use crate::plumbing::catalog;
    catalog::scan(
        pg_sys::IndexRelationId,
        pg_sys::IndexIndrelidIndexId,
        pg_sys::Anum_pg_index_indrelid,
        pg_sys::F_OIDEQ,
        pg_sys::Datum::from(oid),
        // SAFETY: a live pg_index row and its catalog's descriptor.
        |row, desc| unsafe {
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_index>(row);
            let index = form.indexrelid;
            let column = |attno: u32| catalog::column(row, desc, attno);
            let plain = form.indisvalid
                && form.indisready
                && form.indnkeyatts == form.indnatts
                && column(pg_sys::Anum_pg_index_indexprs).is_none()
                && catalog::with_class(index, |c| (c.relkind as u8, c.relam))
                    == Some((pg_sys::RELKIND_INDEX, pg_sys::BTREE_AM_OID));
            if !plain {
                return;
            }
            let keys = form.indkey.values.as_slice(form.indnatts as usize);
            let ascending = column(pg_sys::Anum_pg_index_indoption).is_some_and(|d| {
                let v = d.cast_mut_ptr::<pg_sys::int2vector>();
                (*v).values
                    .as_slice((*v).dim1 as usize)
                    .iter()
                    .all(|&o| o == 0)
            });
            let collated = column(pg_sys::Anum_pg_index_indcollation).is_some_and(|d| {
                let v = d.cast_mut_ptr::<pg_sys::oidvector>();
                (*v).dim1 > 0 && (*v).values.as_slice(1)[0] == collation
            });
            if !ascending || !collated {
                return;
            }
            // The predicate's null tests, in any order.
            let mut tests = column(pg_sys::Anum_pg_index_indpred)
                .and_then(|d| {
                    let text = pg_sys::text_to_cstring(d.cast_mut_ptr());
                    let node = pg_sys::stringToNode(text) as *mut pg_sys::Node;
                    pg_sys::pfree(text.cast());
                    crate::queue::layout::null_tests(node)
                })
                .unwrap_or_default();
            tests.sort();
            let wants = |is_scheduled: bool| {
                let mut want = vec![(dequeued_at, true), (schedule_at, !is_scheduled)];
                want.sort();
                tests == want
            };
            let xmin = form
                .indcheckxmin
                .then(|| pg_sys::HeapTupleHeaderGetXmin((*row).t_data));
            let lowest = |found: &mut Option<pg_sys::Oid>, check: &mut Option<_>| {
                if found.is_none_or(|f: pg_sys::Oid| index.to_u32() < f.to_u32()) {
                    *found = Some(index);
                    *check = xmin;
                }
            };
            if keys == ready && wants(false) {
                lowest(&mut found_ready, &mut check_xmin[0]);
            } else if keys == scheduled && wants(true) {
                lowest(&mut found_scheduled, &mut check_xmin[1]);
            }
        },
    );
    // SAFETY: a comparison of transaction ids.
    let newest = |a: pg_sys::TransactionId, b| unsafe {
        if pg_sys::TransactionIdPrecedes(a, b) {
            b
        } else {
            a
        }
    };
    Some(Indexes {
        ready: found_ready?,
        scheduled: found_scheduled?,
        check_xmin: check_xmin.into_iter().flatten().reduce(newest),
    })
}

/// Whether row-level security applies to this session's reads of table `oid`. Then claims go
/// through `candidates.sql`, where the executor applies the policies, and never move a head
/// (a job this session cannot see is not consumed for the others).
pub fn row_security(oid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog check, raising nothing (noError).
    unsafe {
        pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

/// The indexes of `table` that this session may read candidates from directly (claims and
/// waiters alike), given whether row security applies to it (`rls`, from [`row_security`]):
/// the table has them, the session holds `SELECT` on it (the executor's own check) and USAGE
/// on its schema (its name lookup's), and no row-level security applies. Otherwise
/// `candidates.sql` runs, so the executor checks column privileges and policies and raises its
/// usual `42501`. An index built over broken HOT chains is read, as the planner reads it, only
/// by transactions whose snapshots all began after its build (`TransactionXmin`): an older
/// snapshot may see row versions that it has no entries for.
///
/// ```ignore
/// let direct = candidates::readable(&table, candidates::row_security(table.oid));
/// ```
pub fn readable(table: &crate::plumbing::table::QueueTable, rls: bool) -> Option<Indexes> {
    table.indexes.filter(|ix| {
        // SAFETY: reads this backend's oldest snapshot xmin.
        let built_before_us = ix.check_xmin.is_none_or(|xmin| unsafe {
            pg_sys::TransactionIdPrecedes(xmin, pg_sys::TransactionXmin)
        });
        built_before_us
            && !rls
            && crate::plumbing::table::may(table.oid, pg_sys::ACL_SELECT)
            && crate::plumbing::table::may_reach(table.oid)
    })
}

/// When the first scheduled job of `queue` in `heap_oid` due after `after` (a raw
/// `timestamptz`) becomes due, read from the scheduled index as [`read`] reads it: what `next_due.sql` asks,
/// without a statement, so an idle blocked get's re-check plans and runs nothing (a statement
/// was most of 200 idle waiters' CPU). Same conditions as [`read`]: see [`readable`].
///
/// ```ignore
/// let due = candidates::next_due(table.oid, indexes, "apples", after); // Some(raw timestamptz)
/// ```
pub fn next_due(heap_oid: pg_sys::Oid, indexes: Indexes, queue: &str, after: i64) -> Option<i64> {
    // SAFETY: as in `read`: relations and the snapshot released here, or by the resource owner
    // if the scan raises; the tuple is read while the scan is on it.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let heap = pg_sys::table_open(heap_oid, lock);
        let sched = pg_sys::index_open(indexes.scheduled, lock);
        let desc = (*heap).rd_att;
        let due = crate::queue::layout::columns_of(desc).and_then(|cols| {
            let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
            let name = queue.into_datum().expect("a text datum");
            let due = Scan::scheduled(heap, sched, snapshot, name, Due::After(after))
                .next()
                .and_then(|t| {
                    let mut null = false;
                    let d = pg_sys::heap_getattr(t, cols.schedule_at, desc, &mut null);
                    (!null).then(|| d.value() as i64)
                });
            pg_sys::UnregisterSnapshot(snapshot);
            due
        });
        pg_sys::index_close(sched, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        due
    }
}

/// Which scheduled jobs a scan of the scheduled index reads (raw `timestamptz`s).
#[derive(Clone, Copy)]
enum Due {
    /// Due by then: `schedule_at <= t`.
    By(i64),
    /// Due after then: `schedule_at > t`.
    After(i64),
}

/// An open index scan with its scan keys; ended on drop.
struct Scan {
    desc: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
}

impl Scan {
    /// Begins a scan of `index` (on `heap`) with `keys`, on `snapshot`.
    unsafe fn new(
        heap: pg_sys::Relation,
        index: pg_sys::Relation,
        snapshot: pg_sys::Snapshot,
        keys: &mut [pg_sys::ScanKeyData],
    ) -> Scan {
        unsafe {
            let n = keys.len() as i32;
            #[cfg(not(feature = "pg18"))]
            let desc = pg_sys::index_beginscan(heap, index, snapshot, n, 0);
            #[cfg(feature = "pg18")]
            let desc = pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), n, 0);
            pg_sys::index_rescan(desc, keys.as_mut_ptr(), n, std::ptr::null_mut(), 0);
            Scan {
                desc,
                slot: pg_sys::table_slot_create(heap, std::ptr::null_mut()),
            }
        }
    }

    /// Begins a scan of `queue`'s (a text datum) jobs in the scheduled index `sched` by due
    /// time: those due by a time (a claim's) or after one (a waiter's next due time).
    unsafe fn scheduled(
        heap: pg_sys::Relation,
        sched: pg_sys::Relation,
        snapshot: pg_sys::Snapshot,
        queue: pg_sys::Datum,
        due: Due,
    ) -> Scan {
        let (strategy, proc_, at) = match due {
            Due::By(at) => (
                pg_sys::BTLessEqualStrategyNumber,
                pg_sys::F_TIMESTAMPTZ_LE,
                at,
            ),
            Due::After(at) => (
                pg_sys::BTGreaterStrategyNumber,
                pg_sys::F_TIMESTAMPTZ_GT,
                at,
            ),
        };
        unsafe {
            let collation = *(*sched).rd_indcollation;
            let mut keys = [
                key(
                    0,
                    1,
                    pg_sys::BTEqualStrategyNumber,
                    collation,
                    pg_sys::F_TEXTEQ,
                    queue,
                ),
                key(
                    0,
                    2,
                    strategy,
                    pg_sys::InvalidOid,
                    proc_,
                    pg_sys::Datum::from(at),
                ),
            ];
            // index_rescan copies the keys into the scan.
            Scan::new(heap, sched, snapshot, &mut keys)
        }
    }

    /// The next visible row, as a heap tuple valid until the next call.
    unsafe fn next(&mut self) -> Option<pg_sys::HeapTuple> {
        unsafe {
            if !pg_sys::index_getnext_slot(
                self.desc,
                pg_sys::ScanDirection::ForwardScanDirection,
                self.slot,
            ) {
                return None;
            }
            let mut free = false;
            Some(pg_sys::ExecFetchSlotHeapTuple(self.slot, false, &mut free))
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        unsafe {
            pg_sys::index_endscan(self.desc);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
        }
    }
}

fn key(
    flags: u32,
    attno: i16,
    strategy: u32,
    collation: pg_sys::Oid,
    proc_: u32,
    arg: pg_sys::Datum,
) -> pg_sys::ScanKeyData {
    // SAFETY: ScanKeyData is plain data; ScanKeyEntryInitialize fills every field.
    unsafe {
        let mut k: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyEntryInitialize(
            &mut k,
            flags as i32,
            attno,
            strategy as u16,
            pg_sys::InvalidOid,
            collation,
            pg_sys::Oid::from(proc_),
            arg,
        );
        k
    }
}

/// `data->>'function'` of a payload, detoasted in a memory context of its own that is freed at
/// once: a client worker skipping a thousand big jobs must not keep them all in memory.
fn task_function(data: pg_sys::Datum) -> Option<String> {
    let mut cx = PgMemoryContexts::new("pq candidate function");
    // SAFETY: `data` is a jsonb datum of the row being read; the result is copied into Rust.
    unsafe {
        cx.switch_to(|_| {
            direct_function_call::<String>(
                pg_sys::jsonb_object_field_text,
                &[Some(data), "function".into_datum()],
            )
        })
    }
}

/// How far past a head (in ids) a claim reads first (see `read`): a few claims' worth at 4
/// clients on a queue with ids of its own, small enough to stop a scan early in a leaf page.
const ID_WINDOW: i64 = 32;

/// Visits the candidates of `queue` in `heap_oid` at time `now` (a raw `timestamptz`), in claim
/// order from `from`, until `visit` returns false. `visit` may run statements (the claim
/// itself): the scans see only the snapshot taken here.
///
/// ```ignore
/// candidates::read(table.oid, indexes, "apples", now, Key::MIN, false, |c| { claim(c); true });
/// ```
#[allow(clippy::too_many_arguments)]
pub fn read(
    heap_oid: pg_sys::Oid,
    indexes: Indexes,
    queue: &str,
    now: i64,
    from: Key,
    with_functions: bool,
    mut visit: impl FnMut(&Candidate) -> bool,
) {
    // SAFETY: relations opened and closed here (locks kept to the end of the transaction, as
    // the executor does); the scans and the snapshot are released on drop, or by the resource
    // owner if a claim raises meanwhile.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let heap = pg_sys::table_open(heap_oid, lock);
        let ready = pg_sys::index_open(indexes.ready, lock);
        let sched = pg_sys::index_open(indexes.scheduled, lock);
        let desc = (*heap).rd_att;
        // The layout checked before the table was locked may have changed since: datums are
        // read by type, so check it again under the lock.
        let Some(cols) = crate::queue::layout::columns_of(desc) else {
            crate::plumbing::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!(
                    "{} is no longer a pq queue table: its columns changed",
                    crate::plumbing::table::qualified_name(heap_oid)
                ),
                "queue tables keep pq_create_table's columns and types",
            )
        };
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let name = queue.into_datum().expect("a text datum");
        let collation = |index: pg_sys::Relation| *(*index).rd_indcollation;
        let eq = |index| {
            key(
                0,
                1,
                pg_sys::BTEqualStrategyNumber,
                collation(index),
                pg_sys::F_TEXTEQ,
                name,
            )
        };
        let candidate = |t: pg_sys::HeapTuple, scheduled: bool| -> Candidate {
            let get = |attno: i32| {
                let mut null = false;
                let d = pgrx::pg_sys::heap_getattr(t, attno, desc, &mut null);
                (!null).then_some(d)
            };
            let id = get(cols.id).map_or(0, |d| d.value() as i64);
            Candidate {
                id,
                function: if with_functions {
                    get(cols.data).and_then(task_function)
                } else {
                    None
                },
                row: (heap_oid, (*t).t_self),
                key: Key {
                    expected_at: get(cols.expected_at).map(|d| d.value() as i64),
                    id,
                },
                scheduled,
                direct: true,
            }
        };

        // The due scheduled jobs, sorted into claim order.
        let mut due = Vec::new();
        {
            let mut scan = Scan::scheduled(heap, sched, snapshot, name, Due::By(now));
            while let Some(t) = scan.next() {
                due.push(candidate(t, true));
            }
        }
        due.sort_by_key(|c| std::cmp::Reverse(c.key)); // popped from the end, earliest first
        let mut go = true;
        // Yields the due jobs before `upto` (all of them for None), then says whether to go on.
        let mut flush =
            |upto: Option<Key>, go: &mut bool, visit: &mut dyn FnMut(&Candidate) -> bool| {
                while *go {
                    match due.last() {
                        Some(c) if upto.is_none_or(|k| c.key < k) => {
                            let c = due.pop().expect("just seen");
                            *go = visit(&c);
                        }
                        _ => break,
                    }
                }
            };
        // Walks one arm of the ready index, yielding before each entry the due jobs that
        // come before it.
        let mut walk = |keys: &mut [pg_sys::ScanKeyData], go: &mut bool| {
            let mut scan = Scan::new(heap, ready, snapshot, keys);
            while *go {
                let Some(t) = scan.next() else { break };
                let c = candidate(t, false);
                if c.key < from {
                    continue; // same expected_at, before the head's id
                }
                flush(Some(c.key), go, &mut visit);
                if *go {
                    *go = visit(&c);
                }
            }
        };
        // 1. Unscheduled jobs with an expected_at, from the head.
        if let Some(at) = from.expected_at {
            let ge = key(
                0,
                2,
                pg_sys::BTGreaterEqualStrategyNumber,
                pg_sys::InvalidOid,
                pg_sys::F_TIMESTAMPTZ_GE,
                pg_sys::Datum::from(at),
            );
            walk(&mut [eq(ready), ge], &mut go);
        }
        // 2. Unscheduled jobs without one, by id, from the head.
        if go {
            let start = if from.expected_at.is_none() {
                from.id
            } else {
                i64::MIN
            };
            let null = key(
                pg_sys::SK_ISNULL | pg_sys::SK_SEARCHNULL,
                2,
                0, // InvalidStrategy: an IS NULL key
                pg_sys::InvalidOid,
                0,
                pg_sys::Datum::from(0),
            );
            let id_key = |strategy, proc, id: i64| {
                key(
                    0,
                    3,
                    strategy,
                    pg_sys::InvalidOid,
                    proc,
                    pg_sys::Datum::from(id),
                )
            };
            let (ge, le) = (
                pg_sys::BTGreaterEqualStrategyNumber,
                pg_sys::BTLessEqualStrategyNumber,
            );
            // From a head among jobs without an expected_at, first the ids up to ID_WINDOW past
            // it: a btree scan reads every matching entry of the leaf page it starts on before
            // returning the first (on PostgreSQL 15 and 16 checking each one's keys, about 5 %
            // of a claim at 4 clients), and the window's end stops it there. Then the rest,
            // if the claim wants more.
            let rest = match start.checked_add(ID_WINDOW) {
                Some(end) if start != i64::MIN => {
                    walk(
                        &mut [
                            eq(ready),
                            null,
                            id_key(ge, pg_sys::F_INT8GE, start),
                            id_key(le, pg_sys::F_INT8LE, end),
                        ],
                        &mut go,
                    );
                    end.checked_add(1)
                }
                _ => Some(start),
            };
            if let (true, Some(from)) = (go, rest) {
                walk(
                    &mut [eq(ready), null, id_key(ge, pg_sys::F_INT8GE, from)],
                    &mut go,
                );
            }
        }
        // 3. The due scheduled jobs that come after every unscheduled one.
        flush(None, &mut go, &mut visit);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::index_close(sched, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::index_close(ready, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}
