//! Blocking waits: a `pq_get` with a timeout sleeps in the server until a job may be ready.
//!
//! A waiting backend sleeps on its own latch with a wait event of class `Extension` whose
//! 16-bit event id is a hash of (table, queue): its "tag". The tag is visible to every backend
//! in its `PGPROC`, so no shared memory and no `shared_preload_libraries` are needed. A
//! transaction that put jobs remembers their tags and, right after its commit became visible,
//! sets the latch of every backend waiting with one of those tags: the waiter wakes within
//! milliseconds, re-checks the queue and claims the job. Hash collisions only cause a spurious
//! re-check. The sleep is also capped at [`POLL_MS`] as a safety net for wake-ups no put
//! sends: a claimed job returned by a rollback, or a put that commits in the instant between a
//! waiter's check and its sleep. A waiter whose queue has future jobs sleeps no longer than
//! until the first of them is due.

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
    event_class() | event_id(h)
}

#[cfg(not(any(feature = "pg17", feature = "pg18")))]
fn event_id(h: u32) -> u32 {
    (h ^ (h >> 16)) & 0xffff
}

/// PostgreSQL 17 made extension wait event ids names looked up in a registry; an unregistered
/// id would break `pg_stat_activity`, so every queue shares id 0 there (woken together).
#[cfg(any(feature = "pg17", feature = "pg18"))]
fn event_id(_h: u32) -> u32 {
    0
}

fn event_class() -> u32 {
    pg_sys::PG_WAIT_EXTENSION
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
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// Sets the latch of every backend sleeping under one of `tags`.
unsafe fn wake(tags: &[u32]) {
    let global = pg_sys::ProcGlobal;
    if global.is_null() {
        return;
    }
    let procs = std::slice::from_raw_parts_mut((*global).allProcs, (*global).allProcCount as usize);
    for proc in procs {
        // Read without a lock, as pg_stat_activity does: a stale value costs one spurious
        // wake-up or one missed one that the poll cap covers.
        let info = std::ptr::read_volatile(&proc.wait_event_info);
        if info != 0 && tags.contains(&info) {
            pg_sys::SetLatch(&mut proc.procLatch);
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
        unsafe {
            // Advertise the tag before checking, so a put committing during the check wakes us.
            *pg_sys::my_wait_event_info = tag;
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        let jobs = claim(table, queue, only, limit, memcx);
        unsafe { *pg_sys::my_wait_event_info = 0 };
        if !jobs.is_empty() {
            return jobs;
        }
        let mut sleep = Duration::from_millis(POLL_MS);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return jobs;
            }
            sleep = sleep.min(left);
        }
        if let Some(due) = next_due(table, queue) {
            sleep = sleep.min(due);
        }
        let ms = sleep.as_millis().max(1) as std::ffi::c_long;
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

/// How long until the next future job of `queue` is due, if there is one.
fn next_due(table: &QueueTable, queue: &str) -> Option<Duration> {
    let at: Option<TimestampWithTimeZone> = Spi::connect(|client| {
        table.with_plan(client, Stmt::NextDue, |plan| {
            client
                .select(plan, None, &[queue.into(), clock().into()])
                .ok()
                .and_then(|rows| {
                    rows.first()
                        .get_one::<TimestampWithTimeZone>()
                        .ok()
                        .flatten()
                })
        })
    });
    let at = at?.into_inner();
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    Some(Duration::from_micros(at.saturating_sub(now).max(0) as u64))
}
