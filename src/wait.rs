//! Blocking waits: a `pq_get` with a timeout sleeps in the server until a job may be ready.
//!
//! A waiting backend sleeps on its own latch with a wait event of class `Extension` that
//! stands for (table, queue): its "tag". The tag is visible to every backend in its `PGPROC`,
//! so no shared memory of pq's own and no `shared_preload_libraries` are needed. A transaction
//! that put jobs remembers their tags and, right after its commit became visible, sets the
//! latch of every backend waiting with one of those tags: the waiter wakes within
//! milliseconds, re-checks the queue and claims the job. Hash collisions only cause a spurious
//! re-check.
//!
//! - PostgreSQL 15 and 16: the tag's 16-bit event id is a hash of (table, queue), shown in
//!   `pg_stat_activity` as `Extension`.
//! - PostgreSQL 17 and 18: extension wait events are names registered in shared memory
//!   (`WaitEventExtensionNew`, at most 128 per cluster for all extensions), so pq registers
//!   [`BUCKETS`] names, `PqQueue00` to `PqQueue31`, and hashes (table, queue) to one of them:
//!   `pg_stat_activity.wait_event` shows a pq wait by name, and a put wakes the waiters of 1/32
//!   of the queues (spurious re-checks for the others) instead of 1/65536.
//!
//! The sleep is also capped at [`POLL_MS`] as a safety net for wake-ups no put sends: a claimed
//! job returned by a rollback; a put committing while the waiter's own check waited on a lock
//! or on I/O (any such wait overwrites the advertised tag until the check ends); and a job
//! put by a prepared transaction, whose `COMMIT PREPARED` may run in another session. A waiter
//! whose queue has future jobs sleeps no longer than until the first of them is due.

use crate::claim::{claim, clock, Job, Only};
use crate::table::{QueueTable, Stmt};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Longest sleep between re-checks when no wake-up arrives, in milliseconds.
pub const POLL_MS: u64 = 100;

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
pub fn wake_on_commit(table: &QueueTable, queue: &str) {
    let t = tag(table, queue);
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains(&t) {
            p.push(t);
        }
    });
}

/// Transaction callback, registered in `_PG_init`: wakes waiters after commit, forgets on abort.
#[pg_guard]
pub unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
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

/// Claims up to `limit` jobs, waiting up to `timeout` (`None`: until interrupted) for the
/// first to become ready. Interruptible by `statement_timeout` and `pg_cancel_backend`.
///
/// ```ignore
/// let jobs = wait::get(&table, "apples", Only::All, Some(Duration::from_secs(5)), 1, &mut memcx);
/// ```
pub fn get(
    table: &QueueTable,
    queue: &str,
    only: Only<'_>,
    timeout: Option<Duration>,
    limit: usize,
    memcx: &mut PgMemoryContexts,
) -> Vec<Job> {
    let tag = tag(table, queue);
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        // Advertise the tag before checking, so that a put committing during the check sets
        // our latch and the sleep below returns at once. A lock or I/O wait inside the check
        // overwrites the tag until it ends (the poll cap covers a put in that instant), so it
        // is advertised again after the check.
        advertise(tag);
        // SAFETY: our own latch.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        let jobs = claim(table, queue, only, limit, memcx);
        if !jobs.is_empty() {
            advertise(0);
            return jobs;
        }
        advertise(tag);
        let mut sleep = Duration::from_millis(POLL_MS);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                advertise(0);
                return jobs;
            }
            sleep = sleep.min(left);
        }
        if let Some(due) = next_due(table, queue) {
            sleep = sleep.min(due);
        }
        advertise(0); // WaitLatch advertises it again for the sleep itself
        let ms = sleep.as_millis().max(1) as std::ffi::c_long;
        // SAFETY: sleeping on our own latch, as any backend does.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                ms,
                tag,
            );
        }
        check_for_interrupts!();
    }
}

/// Shows `tag` (0: none) as this backend's wait event, where wakers look for it.
fn advertise(tag: u32) {
    // SAFETY: my_wait_event_info points at this backend's own slot in its PGPROC.
    unsafe { std::ptr::write_volatile(pg_sys::my_wait_event_info, tag) };
}

/// How long until the next future job of `queue` is due, if there is one.
fn next_due(table: &QueueTable, queue: &str) -> Option<Duration> {
    let at = table.one::<TimestampWithTimeZone>(Stmt::NextDue, &[queue.into(), clock().into()]);
    let at = at?.into_inner();
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    Some(Duration::from_micros(at.saturating_sub(now).max(0) as u64))
}
