//! Waking: telling blocked getters and listeners about new jobs, at commit.
//!
//! A blocked getter (`wait`) sleeps under a wait event of class `Extension` that stands for
//! (table, queue): its "tag", visible to every backend in its `PGPROC`, so no shared memory of
//! pq's own and no `shared_preload_libraries` are needed. A transaction that puts jobs (or
//! puts a task back for a retry, or requeues one) remembers their tags ([`announce`]) and,
//! right after its commit became visible, sets the latch of every backend waiting with one of
//! those tags. Hash collisions only cause a spurious re-check.
//!
//! - PostgreSQL 15 and 16: the tag's 16-bit event id is a hash of (table, queue), shown in
//!   `pg_stat_activity` as `Extension`.
//! - PostgreSQL 17 and 18: extension wait events are names registered in shared memory
//!   (`WaitEventExtensionNew`, at most 128 per cluster for all extensions), so pq registers
//!   32 names, `PqQueue00` to `PqQueue31`, and hashes (table, queue) to one of them:
//!   `pg_stat_activity.wait_event` shows a pq wait by name, and a put wakes the waiters of 1/32
//!   of the queues (spurious re-checks for the others) instead of 1/65536.

use crate::plumbing::table::QueueTable;
use crate::queue::heads::Key;
use pgrx::prelude::*;
use std::cell::RefCell;

/// Tells listeners (`NOTIFY`) and blocked getters about new jobs in `queue`, at commit.
///
/// ```ignore
/// wake::announce(&table, "apples");
/// ```
pub fn announce(table: &QueueTable, queue: &str) {
    crate::queue::notify::notify(queue);
    wake_on_commit(table, queue);
}

thread_local! {
    /// Tags of the queues this transaction put jobs into, woken at commit.
    static PENDING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Named wait events on PostgreSQL 17 and 18: (table, queue) hashes to one of these.
#[cfg(any(feature = "pg17", feature = "pg18"))]
pub const BUCKETS: u32 = 32;

/// The wait event a waiter on (`table`, `queue`) sleeps under.
pub fn tag(table: &QueueTable, queue: &str) -> u32 {
    tag_of(table.oid, queue)
}

fn tag_of(table: pg_sys::Oid, queue: &str) -> u32 {
    // FNV-1a: stable, tiny, good enough to spread queues over 16 bits.
    let mut h: u32 = 0x811c9dc5;
    for b in table.to_u32().to_le_bytes().iter().chain(queue.as_bytes()) {
        h = (h ^ *b as u32).wrapping_mul(0x01000193);
    }
    event(h)
}

#[cfg(not(any(feature = "pg17", feature = "pg18")))]
fn event(h: u32) -> u32 {
    pg_sys::PG_WAIT_EXTENSION | ((h ^ (h >> 16)) & 0xffff)
}

thread_local! {
    /// This backend's ids of the registered names, looked up once.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    static EVENTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// PostgreSQL 17 made extension wait events names registered in shared memory; an id that was
/// not registered would break `pg_stat_activity`. The first use registers (or finds) all names.
#[cfg(any(feature = "pg17", feature = "pg18"))]
fn event(h: u32) -> u32 {
    EVENTS.with(|e| {
        let mut e = e.borrow_mut();
        if e.is_empty() {
            for i in 0..BUCKETS {
                let name = std::ffi::CString::new(format!("PqQueue{i:02}")).expect("no NUL");
                // SAFETY: registers or finds a name in PostgreSQL's shared registry (under its lock).
                e.push(unsafe { pg_sys::WaitEventExtensionNew(name.as_ptr()) });
            }
        }
        e[(h % BUCKETS) as usize]
    })
}

/// Remembers that this transaction put into (`table`, `queue`), to wake its waiters at commit.
fn wake_on_commit(table: &QueueTable, queue: &str) {
    add_pending(tag(table, queue));
}

fn add_pending(t: u32) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains(&t) {
            p.push(t);
        }
    });
}

thread_local! {
    /// Jobs this transaction made ready (the trigger saw them put or put back), the earliest
    /// per queue: at commit their queues' heads are lowered to them (see `heads`).
    static READY: RefCell<Vec<(pg_sys::Oid, String, Key)>> = const { RefCell::new(Vec::new()) };
}

/// Called by the trigger on every queue table for a row that is pending after an `INSERT` or
/// `UPDATE`: at commit, wake the queue's waiters (whoever wrote the row: `pq_put`, a plain
/// `INSERT`, `COPY`, Python pq) and, if it is ready now, lower the queue's head to it.
///
/// ```ignore
/// wake::on_pending(table_oid, "apples", Some(Key { expected_at: None, id: 42 }));
/// ```
pub fn on_pending(table: pg_sys::Oid, queue: &str, ready: Option<Key>) {
    add_pending(tag_of(table, queue));
    let Some(key) = ready.filter(|_| crate::queue::heads::active()) else {
        return;
    };
    READY.with(|r| {
        let mut r = r.borrow_mut();
        match r.iter_mut().find(|(t, q, _)| *t == table && q == queue) {
            Some(entry) => entry.2 = entry.2.min(key),
            None => r.push((table, queue.to_string(), key)),
        }
    });
}

/// A claim of this transaction was rolled back: its job is ready again. Lowers the queue's
/// head to it and wakes the queue's waiters now (the rollback is already visible).
fn on_claims_rolled_back() {
    let claims = crate::queue::claim::claimed_keys();
    if claims.is_empty() {
        return;
    }
    let mut tags = Vec::with_capacity(claims.len());
    for (table, queue, key) in &claims {
        if let Some(key) = key {
            crate::queue::heads::lower(*table, queue, *key);
        }
        tags.push(tag_of(*table, queue));
    }
    // SAFETY: any backend is attached to shared memory.
    unsafe { wake(&tags) };
}

/// Transaction callback, registered in `_PG_init`: after commit, lowers heads and wakes
/// waiters; after abort, returns rolled-back claims to their heads and wakes their waiters;
/// either way forgets the transaction's claims (see `claim::take_claim`).
#[pg_guard]
pub unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_PRE_COMMIT => {
            crate::queue::notify::flush(false);
            return;
        }
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            crate::queue::notify::flush(true);
            return;
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            for (table, queue, key) in READY.with(|r| std::mem::take(&mut *r.borrow_mut())) {
                crate::queue::heads::lower(table, &queue, key);
            }
            slots_freed();
            crate::operations::metrics::on_commit();
            let tags = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if !tags.is_empty() {
                // SAFETY: any backend is attached to shared memory.
                unsafe { wake(&tags) };
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            on_claims_rolled_back();
            forget_pending();
            slots_freed();
            crate::operations::metrics::forget();
            let tags = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if !tags.is_empty() {
                // SAFETY: any backend is attached to shared memory.
                unsafe { wake(&tags) };
            }
        }
        // A prepared transaction's COMMIT PREPARED may come from any session, later: its
        // waiters find its jobs by polling, and its end resets the heads (see `utility`).
        // Its tags must not leak into our next transaction.
        pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            forget_pending();
            crate::operations::limits::on_xact_end();
            crate::operations::metrics::forget();
        }
        _ => return,
    }
    crate::queue::claim::forget_claims();
}

/// The transaction's concurrency slots (see `limits`) are released: their queues' waiters are
/// woken with the rest of its tags.
fn slots_freed() {
    for (table, queue) in crate::operations::limits::on_xact_end() {
        add_pending(tag_of(table, &queue));
    }
}

fn forget_pending() {
    crate::queue::notify::forget();
    PENDING.with(|p| p.borrow_mut().clear());
    READY.with(|r| r.borrow_mut().clear());
}

/// Subtransaction callback, registered in `_PG_init`: claims made in a rolled-back
/// subtransaction (a failed task in `pq_work`, a plpgsql EXCEPTION block) are ready again. The
/// transaction's earlier claims are returned to their heads too: harmless, as a head lower than
/// it could be only costs a few skipped entries.
#[pg_guard]
pub unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        on_claims_rolled_back();
        crate::queue::claim::on_subxact_abort(my);
        crate::operations::limits::on_subxact_abort(my);
        crate::operations::metrics::on_subxact_abort(my);
    }
}

/// Sets the latch of every backend sleeping under one of `tags`.
///
/// # Safety
/// Must run in a backend attached to shared memory (any backend after startup).
unsafe fn wake(tags: &[u32]) {
    // SAFETY: ProcGlobal and its allProcs array live in shared memory for the life of the
    // server; other processes write their entries concurrently, so no Rust reference is ever
    // made to them: each field is reached through a raw pointer and read volatile.
    unsafe {
        let global = pg_sys::ProcGlobal;
        if global.is_null() {
            return;
        }
        let procs = (*global).allProcs;
        for i in 0..(*global).allProcCount as usize {
            let proc = procs.add(i);
            // Read without a lock, as pg_stat_activity does: a stale value costs one spurious
            // wake-up or one missed one that the poll cap covers.
            let info = std::ptr::read_volatile(std::ptr::addr_of!((*proc).wait_event_info));
            if info != 0 && tags.contains(&info) {
                // SetLatch is made to be called on another process's latch.
                pg_sys::SetLatch(std::ptr::addr_of_mut!((*proc).procLatch));
            }
        }
    }
}
