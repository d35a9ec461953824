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

use crate::table::QueueTable;
use pgrx::prelude::*;
use std::cell::RefCell;

/// Tells listeners (`NOTIFY`) and blocked getters about new jobs in `queue`, at commit.
///
/// ```ignore
/// wake::announce(&table, "apples");
/// ```
pub fn announce(table: &QueueTable, queue: &str) {
    crate::notify::notify(queue);
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
    // FNV-1a: stable, tiny, good enough to spread queues over 16 bits.
    let mut h: u32 = 0x811c9dc5;
    for b in table
        .oid
        .to_u32()
        .to_le_bytes()
        .iter()
        .chain(queue.as_bytes())
    {
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
    let t = tag(table, queue);
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains(&t) {
            p.push(t);
        }
    });
}

/// Transaction callback, registered in `_PG_init`: wakes waiters after commit, forgets on abort;
/// either way forgets the transaction's claims (see `claim::take_claim`).
#[pg_guard]
pub unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PREPARE
    ) {
        crate::claim::forget_claims();
    }
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let tags = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if !tags.is_empty() {
                wake(&tags);
            }
        }
        // A prepared transaction's COMMIT PREPARED may come from any session, later: its
        // waiters find its jobs by polling. Its tags must not leak into our next transaction.
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
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
