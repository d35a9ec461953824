//! Catalog reads without a statement, for the lookups a backend makes on its first call: the
//! same reads in SQL were parsed and planned each time, which cost a fresh backend's first
//! `pq_get` about 4 ms (finding the queue indexes), 1 ms (finding pq's own tables) and 1 ms
//! (reading the queue controls, a tiny table of pq's own read the same way).

use pgrx::prelude::*;

/// Calls `row` with each row of system catalog `catalog` whose column `attno` equals `key`
/// (compared with the function `eq`, e.g. `F_OIDEQ`), read through the catalog's index `index`
/// on that column under the catalog snapshot, as the relcache and syscache read them. No lock
/// is taken on anything but the catalog.
///
/// ```ignore
/// catalog::scan(pg_sys::IndexRelationId, pg_sys::IndexIndrelidIndexId, pg_sys::Anum_pg_index_indrelid,
///     pg_sys::F_OIDEQ, pg_sys::Datum::from(table), |row, desc| { /* ... */ });
/// ```
pub fn scan(
    catalog: pg_sys::Oid,
    index: u32,
    attno: u32,
    eq: u32,
    key: pg_sys::Datum,
    row: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) {
    read(
        catalog,
        Some(index),
        attno,
        eq,
        key,
        std::ptr::null_mut(),
        row,
    )
}

/// Like [`scan`], for one of pq's own small tables (`table`, read whole, no index) under the
/// newest snapshot: what other sessions committed, even inside a REPEATABLE READ transaction
/// (see `latest`).
///
/// ```ignore
/// catalog::scan_latest(controls, 1, pg_sys::F_OIDEQ, pg_sys::Datum::from(queue_table), |row, desc| {});
/// ```
pub fn scan_latest(
    table: pg_sys::Oid,
    attno: u32,
    eq: u32,
    key: pg_sys::Datum,
    row: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) {
    // SAFETY: the snapshot is registered for the scan and released after it (or by the
    // resource owner on error).
    unsafe {
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        read(table, None, attno, eq, key, snapshot, row);
        pg_sys::UnregisterSnapshot(snapshot);
    }
}

/// The scan of [`scan`] and [`scan_latest`]: through `index` if given, else of the whole
/// table; under `snapshot` (null: the catalog snapshot).
fn read(
    catalog: pg_sys::Oid,
    index: Option<u32>,
    attno: u32,
    eq: u32,
    key: pg_sys::Datum,
    snapshot: pg_sys::Snapshot,
    mut row: impl FnMut(pg_sys::HeapTuple, pg_sys::TupleDesc),
) {
    // SAFETY: a catalog scan as RelationGetIndexList does; each row is only used while the
    // scan is on it. An error raised meanwhile ends the scan and the lock by resource owner.
    unsafe {
        let rel = pg_sys::table_open(catalog, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let mut scankey: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut scankey,
            attno as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(eq),
            key,
        );
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::Oid::from(index.unwrap_or(0)),
            index.is_some(),
            snapshot,
            1,
            &mut scankey,
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            row(tuple, (*rel).rd_att);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
}

/// Column `attno` of catalog row `row` (of descriptor `desc`), `None` when NULL.
///
/// # Safety
/// `row` is a live row of a catalog whose descriptor is `desc`.
///
/// ```ignore
/// let predicate = unsafe { catalog::column(row, desc, pg_sys::Anum_pg_index_indpred) };
/// ```
pub unsafe fn column(
    row: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attno: u32,
) -> Option<pg_sys::Datum> {
    let mut null = false;
    // SAFETY: the caller's.
    let d = unsafe { pg_sys::heap_getattr(row, attno as i32, desc, &mut null) };
    (!null).then_some(d)
}

/// The `pg_class` row of relation `oid`, from the syscache, given to `f`.
///
/// ```ignore
/// let relam = catalog::with_class(oid, |c| c.relam);
/// ```
pub fn with_class<T>(
    oid: pg_sys::Oid,
    f: impl FnOnce(&pg_sys::FormData_pg_class) -> T,
) -> Option<T> {
    // SAFETY: a syscache lookup, released before returning.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(oid),
        );
        if tuple.is_null() {
            return None;
        }
        let value = f(&*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple));
        pg_sys::ReleaseSysCache(tuple);
        Some(value)
    }
}
