//! Unique jobs: `pq_put(..., key => 'order-42')`. While a job of the queue with that key is
//! pending (not yet consumed: ready, scheduled, or claimed by a transaction still running), a
//! put with the same key returns that job's id and inserts nothing. Once the job is consumed
//! (its claim committed, or it was cancelled), the key is free again.
//!
//! A unique index would make a put wait for a transaction that holds the job claimed (its
//! claim is an update of the row), possibly for as long as the job runs. Instead, a put takes a
//! transaction-scoped advisory lock on (table, queue, key), so puts of one key run one at a
//! time until each commits, and looks for a pending job with the newest snapshot (as foreign
//! key checks do), so even a REPEATABLE READ transaction sees a job committed after it began.

use crate::plumbing::error::raise;
use crate::plumbing::table::{qualified_name, QueueTable};

use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// Serializes the puts of `key` in (`table`, `queue`) until this transaction ends, then
/// returns the pending job with that key, if any: the put must return it instead of inserting.
///
/// ```ignore
/// if let Some(id) = unique::existing(&table, "orders", "order-42") { return id; }
/// ```
pub fn existing(table: &QueueTable, queue: &str, key: &str) -> Option<i64> {
    table.require_columns_of_0_5("unique jobs");
    check(key);
    lock(table, queue, key);
    lookup(table, queue, key)
}

/// Longest key, in bytes: keys are indexed, and a btree entry must fit a third of a page.
pub const MAX_KEY: usize = 1000;

/// Raises 22023 for an empty or too long key.
fn check(key: &str) {
    if key.is_empty() || key.len() > MAX_KEY {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "a job's key must be 1 to {MAX_KEY} bytes, got {}",
                key.len()
            ),
            "pass a key such as 'order-42' (hash a longer one), or NULL for a job without one",
        )
    }
}

/// Takes the locks of several `keys` of (`table`, `queue`) at once, in sorted order, before
/// their puts: two sessions putting the same keys in different orders then wait on each other
/// instead of deadlocking.
pub fn lock_all(table: &QueueTable, queue: &str, keys: &[Option<String>]) {
    table.require_columns_of_0_5("unique jobs");
    let mut sorted: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    for key in sorted {
        check(key);
        lock(table, queue, key);
    }
}

/// Waits for, then holds until the transaction ends, the advisory lock of (`table`, `queue`,
/// `key`): a hash in the one-bigint key space. A collision only serializes two keys' puts.
fn lock(table: &QueueTable, queue: &str, key: &str) {
    let oid = table.oid.to_u32().to_le_bytes();
    let h =
        crate::plumbing::hash::fnv1a64(&[b"pq-key", &oid, queue.as_bytes(), &[0], key.as_bytes()]);
    unsafe {
        direct_function_call::<()>(
            pg_sys::pg_advisory_xact_lock_int8,
            &[(h as i64).into_datum()],
        );
    }
}

/// The pending job with `key`, read with the latest snapshot rather than the transaction's.
fn lookup(table: &QueueTable, queue: &str, key: &str) -> Option<i64> {
    let sql =
        include_str!("../queries/key_lookup.sql").replace("{table}", &qualified_name(table.oid));
    let args = [
        (pg_sys::TEXTOID, queue.into_datum().expect("text")),
        (pg_sys::TEXTOID, key.into_datum().expect("text")),
    ];
    let mut id = None;
    crate::plumbing::pinning::pinned(|_| {
        crate::plumbing::latest::select(&sql, &args, |col| {
            id = id.or(col(1).map(|d| d.value() as i64));
        })
    });
    id
}
