//! Put: enqueue jobs, in the caller's transaction.
//!
//! `pq_put` inserts one job and returns its id; `pq_put_many` inserts an array of payloads in
//! one statement. Both notify the queue's channel and wake blocked getters at commit. With a
//! `key`, a put is unique (see `unique`): it returns the pending job with that key, if any.

use crate::plumbing::error::{raise, require, require_new_queue};
use crate::plumbing::pinning::pinned;
use crate::plumbing::table::{QueueTable, Stmt};
use crate::queue::timespec::{resolve_opt, TimeSpec};
use pg_sys::BuiltinOid::{JSONBARRAYOID, JSONBOID};
use pgrx::datum::Internal;
use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

// jsonb arguments arrive as `Internal`: pgrx's raw-datum argument type, so payloads pass
// through to SPI as PostgreSQL stored them, never decoded into Rust values.

/// Inserts one job; the shared body of the three `pq_put` overloads.
fn put<S: TimeSpec>(
    queue: Option<&str>,
    data: Option<Internal>,
    schedule_at: Option<S>,
    expected_at: Option<S>,
    tbl: Option<pg_sys::Oid>,
    key: Option<&str>,
) -> i64 {
    let queue = require_new_queue(queue);
    let data = jsonb_arg(
        require(
            data.and_then(Internal::unwrap),
            "data",
            "'{\"kind\":\"Cox\"}'",
        ),
        JSONBOID,
    );
    let table = QueueTable::resolve(tbl);
    let schedule_at = resolve_opt(schedule_at, "schedule_at");
    let expected_at = resolve_opt(expected_at, "expected_at");
    insert(&table, queue, data, schedule_at, expected_at, key)
}

/// Inserts one job with `data` (a jsonb argument) and announces it; returns its id. With a
/// `key`, returns the pending job with that key instead, if there is one.
pub fn insert(
    table: &QueueTable,
    queue: &str,
    data: DatumWithOid<'_>,
    schedule_at: Option<TimestampWithTimeZone>,
    expected_at: Option<TimestampWithTimeZone>,
    key: Option<&str>,
) -> i64 {
    if let Some(key) = key {
        if let Some(id) = crate::queue::unique::existing(table, queue, key) {
            return id;
        }
    }
    // Straight into the heap where the table allows (see `enqueue`), else by SQL.
    let id = crate::queue::enqueue::enqueue(table, queue, &data, schedule_at, expected_at, key)
        .unwrap_or_else(|| {
            let mut args = vec![queue.into(), data, schedule_at.into(), expected_at.into()];
            let stmt = match key {
                None => Stmt::Put,
                Some(key) => {
                    args.push(key.into());
                    Stmt::PutKeyed
                }
            };
            table
                .one::<i64>(stmt, &args)
                .expect("INSERT ... RETURNING id returns the id")
        });
    crate::queue::wake::announce(table, queue);
    id
}

/// The `key` argument (0.5.0) of a `pq_put`, read by hand: the declarations of older versions
/// call the same symbols with five arguments until `ALTER EXTENSION pq UPDATE`.
fn key_arg(fcinfo: pg_sys::FunctionCallInfo) -> Option<String> {
    // SAFETY: the argument is read only when the caller passed it.
    unsafe {
        ((*fcinfo).nargs > 5)
            .then(|| pgrx::fcinfo::pg_getarg::<String>(fcinfo, 5))
            .flatten()
    }
}

/// Passes a jsonb (or jsonb[]) argument through to SPI as it is: no decoding into Rust.
fn jsonb_arg<'a>(datum: pg_sys::Datum, ty: pg_sys::BuiltinOid) -> DatumWithOid<'a> {
    // SAFETY: the datum is the caller's argument of exactly this type, alive for the call.
    unsafe { DatumWithOid::new(datum, ty.into()) }
}

/// `pq_put(queue, data, schedule_at text, expected_at text, tbl)`: time specs as text.
///
/// ```sql
/// SELECT pq_put('apples', '{"kind":"Cox"}', '5m');
/// SELECT pq_put('orders', '{"order":42}', key => 'order-42');  -- a unique job
/// ```
#[pg_extern(sql = false)]
fn pq_put_text(
    queue: Option<&str>,
    data: Option<Internal>,
    schedule_at: Option<&str>,
    expected_at: Option<&str>,
    tbl: Option<pg_sys::Oid>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    put(
        queue,
        data,
        schedule_at,
        expected_at,
        tbl,
        key_arg(fcinfo).as_deref(),
    )
}

/// `pq_put(queue, data, schedule_at interval, expected_at interval, tbl)`.
///
/// ```sql
/// SELECT pq_put('apples', '{"kind":"Cox"}', interval '5 minutes');
/// ```
#[pg_extern(sql = false)]
fn pq_put_interval(
    queue: Option<&str>,
    data: Option<Internal>,
    schedule_at: Option<Interval>,
    expected_at: Option<Interval>,
    tbl: Option<pg_sys::Oid>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    put(
        queue,
        data,
        schedule_at,
        expected_at,
        tbl,
        key_arg(fcinfo).as_deref(),
    )
}

/// `pq_put(queue, data, schedule_at timestamptz, expected_at timestamptz, tbl)`.
///
/// ```sql
/// SELECT pq_put('apples', '{"kind":"Cox"}', now() + interval '1 hour');
/// ```
#[pg_extern(sql = false)]
fn pq_put_timestamptz(
    queue: Option<&str>,
    data: Option<Internal>,
    schedule_at: Option<TimestampWithTimeZone>,
    expected_at: Option<TimestampWithTimeZone>,
    tbl: Option<pg_sys::Oid>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    put(
        queue,
        data,
        schedule_at,
        expected_at,
        tbl,
        key_arg(fcinfo).as_deref(),
    )
}

/// `pq_put_many(queue, data jsonb[], schedule_at, expected_at, tbl, key text[])`: one job per
/// array element, all with the same times, in one statement; returns the ids in array order.
/// With `key` (one per element), each element is a unique put.
///
/// ```sql
/// SELECT * FROM pq_put_many('apples', ARRAY['{"kind":"Cox"}', '{"kind":"Fuji"}']::jsonb[]);
/// SELECT * FROM pq_put_many('apples', ARRAY['{}', '{}']::jsonb[], key => ARRAY['a', 'b']);
/// ```
#[pg_extern(sql = false)]
fn pq_put_many(
    queue: Option<&str>,
    data: Option<Internal>,
    schedule_at: Option<&str>,
    expected_at: Option<&str>,
    tbl: Option<pg_sys::Oid>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, i64> {
    // SAFETY: the argument is read only when the caller passed it.
    let key: Option<Vec<Option<String>>> = unsafe {
        ((*fcinfo).nargs > 5)
            .then(|| pgrx::fcinfo::pg_getarg::<Vec<Option<String>>>(fcinfo, 5))
            .flatten()
    };
    let queue = require_new_queue(queue);
    let data = require(
        data.and_then(Internal::unwrap),
        "data",
        "ARRAY['{\"kind\":\"Cox\"}']::jsonb[]",
    );
    let has_nulls = unsafe {
        let array = pg_sys::pg_detoast_datum(data.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        pg_sys::array_contains_nulls(array)
    };
    if has_nulls {
        raise(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "data holds a NULL element; every job needs a JSON payload".into(),
            "remove the NULLs, or use 'null'::jsonb for a JSON null",
        )
    }
    let table = QueueTable::resolve(tbl);
    let schedule_at = resolve_opt(schedule_at, "schedule_at");
    let expected_at = resolve_opt(expected_at, "expected_at");
    if let Some(keys) = key {
        // Unique jobs, one put each, in array order: a key repeated within the array gets the
        // first element's id.
        let payloads = elements(data);
        if keys.len() != payloads.len() {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "key has {} elements but data has {}: one key per job",
                    keys.len(),
                    payloads.len()
                ),
                "pass one key per payload, NULL for a job without one, e.g. key => ARRAY['a', NULL]",
            )
        }
        if keys.len() > crate::queue::claim::MAX_CLAIMS {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("at most 1000 keyed jobs per call, got {}", keys.len()),
                "each key holds a lock until commit: put unique jobs 1000 at a time",
            )
        }
        crate::queue::unique::lock_all(&table, queue, &keys);
        let ids: Vec<i64> = payloads
            .into_iter()
            .zip(&keys)
            .map(|(d, k)| {
                let d = jsonb_arg(d, JSONBOID);
                insert(&table, queue, d, schedule_at, expected_at, k.as_deref())
            })
            .collect();
        return SetOfIterator::new(ids);
    }
    let data = jsonb_arg(data, JSONBARRAYOID);
    let ids: Vec<i64> = pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(p, client, Stmt::PutMany, |plan| {
                let args = [queue.into(), data, schedule_at.into(), expected_at.into()];
                client
                    .select(plan, None, &args)
                    .unwrap_or_else(|e| panic!("inserting jobs: {e}"))
                    .map(|row| row.get::<i64>(1).ok().flatten().expect("id"))
                    .collect()
            })
        })
    });
    if !ids.is_empty() {
        crate::queue::wake::announce(&table, queue);
    }
    SetOfIterator::new(ids)
}

/// The elements of a jsonb[] argument without NULLs, as datums valid for the call.
fn elements(array: pg_sys::Datum) -> Vec<pg_sys::Datum> {
    // SAFETY: a jsonb[] argument, detoasted into the call's context; its elements are varlenas
    // (typlen -1, not by value, int alignment), and the array has no NULLs (checked above).
    unsafe {
        let array = pg_sys::pg_detoast_datum(array.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut n = 0;
        pg_sys::deconstruct_array(
            array,
            pg_sys::JSONBOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
            &mut elems,
            &mut nulls,
            &mut n,
        );
        if n == 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(elems, n as usize).to_vec()
    }
}
