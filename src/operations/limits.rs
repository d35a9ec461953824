//! Concurrency limits: `pq_set_limit('apples', 2)` lets at most two jobs of the queue be
//! claimed at once, across all sessions and workers.
//!
//! A limit of n is n slots, each a transaction-scoped advisory lock in the one-bigint key space
//! (a hash of table, queue and slot number; claims' own keys use the two-int4 space). A claim
//! from a limited queue takes a free slot right before it marks a job dequeued, and keeps it
//! until its transaction ends, as long as the job's own claim lasts: so no more than n claims
//! can ever hold one, and no row is written to count them. A slot taken for a job that another
//! session consumed first stays with the transaction and serves its next claim from the queue.
//! When the transaction ends, the queue's blocked getters wake: a slot is free.
//!
//! Like claims' keys, slot keys are advisory locks any role can take; a session that holds one
//! without claiming holds back one slot of the queue until it lets go.

use crate::operations::controls;
use crate::plumbing::error::{raise, require_new_queue};
use crate::plumbing::table::QueueTable;
use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::cell::RefCell;

/// Largest limit: each slot is one lock attempt when the queue is full.
pub const MAX_LIMIT: i32 = 1000;

/// Sets the concurrency limit of `queue` to `n` (NULL: no limit); returns the previous limit.
/// Needs UPDATE on the queue table.
///
/// ```sql
/// SELECT pq_set_limit('apples', 2);     -- at most two apples jobs in flight
/// SELECT pq_set_limit('apples', NULL);  -- no limit
/// ```
#[pg_extern(sql = false)]
fn pq_set_limit(queue: Option<&str>, n: Option<i32>, tbl: Option<pg_sys::Oid>) -> Option<i32> {
    let queue = require_new_queue(queue);
    if let Some(n) = n.filter(|n| !(1..=MAX_LIMIT).contains(n)) {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a concurrency limit is 1 to {MAX_LIMIT} jobs at once, got {n}"),
            "pass a limit such as 2, or NULL to remove it; pq_pause stops a queue",
        )
    }
    let table = QueueTable::resolve(tbl);
    controls::write::<i32>(
        include_str!("../queries/set_limit.sql"),
        &table,
        queue,
        Some(n.into()),
        "limit",
    )
}

/// A slot this transaction holds: which one, the subtransaction that took it, and the
/// subtransaction whose claim uses it (`None`: spare, for the next claim).
struct Held {
    table: pg_sys::Oid,
    queue: String,
    slot: u32,
    taken_in: pg_sys::SubTransactionId,
    used_in: Option<pg_sys::SubTransactionId>,
}

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// Takes a slot of (`table`, `queue`, limit `n`) for one claim: a spare one this transaction
/// holds, or a free one. False when all `n` are held (by others, or by this transaction's
/// other claims).
///
/// ```ignore
/// if limit.is_some_and(|n| !limits::take(table.oid, queue, n)) { return false; }
/// ```
pub fn take(table: pg_sys::Oid, queue: &str, n: u32) -> bool {
    let me = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let spare = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let spare = h
            .iter_mut()
            .find(|s| s.table == table && s.queue == queue && s.used_in.is_none());
        spare.map(|s| s.used_in = Some(me)).is_some()
    });
    if spare {
        return true;
    }
    let mine: Vec<u32> = HELD.with(|h| {
        h.borrow()
            .iter()
            .filter(|s| s.table == table && s.queue == queue)
            .map(|s| s.slot)
            .collect()
    });
    // Start where this backend's neighbours are unlikely to, to spare lock attempts.
    let start = unsafe { pg_sys::MyProcPid } as u32 % n;
    for i in (0..n).map(|i| (start + i) % n) {
        if mine.contains(&i) || !try_lock(key(table, queue, i)) {
            continue;
        }
        HELD.with(|h| {
            h.borrow_mut().push(Held {
                table,
                queue: queue.to_string(),
                slot: i,
                taken_in: me,
                used_in: Some(me),
            })
        });
        return true;
    }
    false
}

/// The claim that took a slot found its job consumed by someone else: the slot is spare again.
pub fn unused(table: pg_sys::Oid, queue: &str) {
    let me = unsafe { pg_sys::GetCurrentSubTransactionId() };
    HELD.with(|h| {
        if let Some(s) = h
            .borrow_mut()
            .iter_mut()
            .find(|s| s.table == table && s.queue == queue && s.used_in == Some(me))
        {
            s.used_in = None;
        }
    });
}

/// Subtransaction `sub` rolled back: the slots it took are released with its locks, and the
/// slots its claims used are spare again (those jobs are back in the queue).
pub fn on_subxact_abort(sub: pg_sys::SubTransactionId) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.retain(|s| s.taken_in < sub);
        for s in h.iter_mut() {
            if s.used_in.is_some_and(|u| u >= sub) {
                s.used_in = None;
            }
        }
    });
}

/// The transaction ended, releasing its slots: the (table, queue)s whose waiters may claim now.
pub fn on_xact_end() -> Vec<(pg_sys::Oid, String)> {
    let held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    let mut queues: Vec<(pg_sys::Oid, String)> =
        held.into_iter().map(|s| (s.table, s.queue)).collect();
    queues.sort_by(|a, b| (a.0.to_u32(), &a.1).cmp(&(b.0.to_u32(), &b.1)));
    queues.dedup();
    queues
}

/// A slot's advisory key: FNV-1a over (table, queue, slot), in the one-bigint key space.
fn key(table: pg_sys::Oid, queue: &str, slot: u32) -> i64 {
    let oid = table.to_u32().to_le_bytes();
    let slot = slot.to_le_bytes();
    crate::plumbing::hash::fnv1a64(&[b"pq-slot", &oid, queue.as_bytes(), &[0], &slot]) as i64
}

fn try_lock(key: i64) -> bool {
    unsafe {
        direct_function_call::<bool>(pg_sys::pg_try_advisory_xact_lock_int8, &[key.into_datum()])
    }
    .unwrap_or(false)
}
