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
    if key.is_empty() {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a job's key must not be empty".into(),
            "pass a key such as 'order-42', or NULL for a job without one",
        )
    }
    lock(table, queue, key);
    lookup(table, queue, key)
}

/// Waits for, then holds until the transaction ends, the advisory lock of (`table`, `queue`,
/// `key`): a hash in the one-bigint key space. A collision only serializes two keys' puts.
fn lock(table: &QueueTable, queue: &str, key: &str) {
    let mut h: u64 = 0xcbf29ce484222325;
    let oid = table.oid.to_u32().to_le_bytes();
    let bytes = b"pq-key"
        .iter()
        .chain(oid.iter())
        .chain(queue.as_bytes())
        .chain([0u8].iter())
        .chain(key.as_bytes());
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
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
    let sql = std::ffi::CString::new(sql).expect("no NUL in a statement");
    crate::plumbing::pinning::pinned(|_| {
        Spi::connect(|_| unsafe {
            // SAFETY: SPI is connected; the plan, its arguments and its result live until
            // SPI_freeplan and the end of this closure.
            let mut types = [pg_sys::TEXTOID, pg_sys::TEXTOID];
            let plan = pg_sys::SPI_prepare(sql.as_ptr(), 2, types.as_mut_ptr());
            if plan.is_null() {
                let code = pg_sys::SPI_result;
                pgrx::error!("preparing the key lookup: SPI error {code}");
            }
            let mut values = [
                queue.into_datum().expect("text"),
                key.into_datum().expect("text"),
            ];
            let mut nulls = [b' ' as std::ffi::c_char; 2];
            let rc = pg_sys::SPI_execute_snapshot(
                plan,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                true,
                false,
                1,
            );
            let mut id = None;
            if rc == pg_sys::SPI_OK_SELECT as i32 && pg_sys::SPI_processed == 1 {
                let tt = pg_sys::SPI_tuptable;
                let mut null = false;
                let d = pg_sys::SPI_getbinval(*(*tt).vals, (*tt).tupdesc, 1, &mut null);
                if !null {
                    id = Some(d.value() as i64);
                }
            }
            pg_sys::SPI_freeplan(plan);
            id
        })
    })
}
