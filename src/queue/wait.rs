//! Blocking waits: a `pq_get` with a timeout sleeps in the server until a job may be ready.
//!
//! A waiting backend sleeps on its own latch under its queue's wait event, its "tag" (see
//! `wake`), where a committing transaction that made a job of the queue ready finds it and
//! sets its latch: the waiter wakes within milliseconds, re-checks the queue and claims the
//! job. Every such commit wakes: a put (`pq_put`, a plain `INSERT`, `COPY`, Python pq's put:
//! the queue table's trigger reports each pending row), a requeue or retry, and the rollback of
//! a claim. The sleep is also capped as a safety net for what no commit announces: a put
//! committing while the waiter's own check waited on a lock or on I/O (any such wait
//! overwrites the advertised tag until the check ends), and a job put by a prepared
//! transaction, whose `COMMIT PREPARED` may run in another session. The cap starts at
//! [`POLL_MS`] and doubles with every quiet re-check up to [`MAX_POLL_MS`], so idle waiters
//! cost little (200 of them re-check a few hundred times a second in all). A waiter whose
//! queue has future jobs sleeps no longer than until the first of them is due.

use crate::plumbing::table::{QueueTable, Stmt};
use crate::queue::claim::{claim, clock, Job, Only};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::time::{Duration, Instant};

/// First sleep between re-checks when no wake-up arrives, in milliseconds.
pub const POLL_MS: u64 = 100;
/// Longest one, reached after a few quiet re-checks.
pub const MAX_POLL_MS: u64 = 1000;

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
    let tag = crate::queue::wake::tag(table, queue);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut poll = Duration::from_millis(POLL_MS);
    let mut woken = false;
    // Each re-check allocates (the claim's setup, next_due's arguments): in a context of its
    // own, emptied after it, so a long wait stays flat however often it is woken.
    let mut check = crate::plumbing::scratch::Scratch::new(c"pq wait");
    loop {
        check.reset();
        // Advertise the tag before checking, so that a put committing during the check sets
        // our latch and the sleep below returns at once. A lock or I/O wait inside the check
        // overwrites the tag until it ends (the poll cap covers a put in that instant), so it
        // is advertised again after the check.
        advertise(tag);
        // SAFETY: our own latch.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        // Before the claim: a job falling due while it runs is the next due (see `next_due`).
        let checked_at = clock();
        // SAFETY: the jobs' payloads go to `memcx`; the rest of a claim is Rust-owned.
        let jobs = unsafe { check.run(|| claim(table, queue, only, limit, memcx)) };
        if !jobs.is_empty() {
            advertise(0);
            if woken {
                // Woken by a commit: how long since the job was put (its transaction began).
                let now = clock().into_inner();
                let put = jobs[0].enqueued_at.into_inner();
                crate::operations::metrics::woke(
                    table.oid,
                    queue,
                    now.saturating_sub(put).max(0) as u64,
                );
            }
            return jobs;
        }
        advertise(tag);
        let mut sleep = poll;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                advertise(0);
                return jobs;
            }
            sleep = sleep.min(left);
        }
        // SAFETY: returns a Rust value.
        if let Some(due) = unsafe { check.run(|| next_due(table, queue, checked_at)) } {
            sleep = sleep.min(due);
        }
        // WaitLatch advertises the tag again for the sleep itself.
        advertise(0);
        // Rounded up: waking just before a job is due would find it not due yet.
        let ms = sleep.as_micros().div_ceil(1000).max(1) as std::ffi::c_long;
        // SAFETY: sleeping on our own latch, as any backend does.
        woken = unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                ms,
                tag,
            )
        } & pg_sys::WL_LATCH_SET as i32
            != 0;
        check_for_interrupts!();
        poll = if woken {
            Duration::from_millis(POLL_MS)
        } else {
            (poll * 2).min(Duration::from_millis(MAX_POLL_MS))
        };
    }
}

/// Shows `tag` (0: none) as this backend's wait event, where wakers look for it.
fn advertise(tag: u32) {
    // SAFETY: my_wait_event_info points at this backend's own slot in its PGPROC.
    unsafe { std::ptr::write_volatile(pg_sys::my_wait_event_info, tag) };
}

/// How long until the first job of `queue` scheduled after `after` is due (zero if it is due
/// already), if there is one. `after` is when the claim before began, so a job that fell due
/// while that claim ran (or while this read ran) is not missed: its waiter would otherwise
/// sleep a whole poll past it (measured: a job due in 350 ms came after 1.15 s). Read from the
/// scheduled index where a claim would read it directly (the claim just before holds the
/// table's lock and resolved its indexes under it), else by `next_due.sql`.
fn next_due(table: &QueueTable, queue: &str, after: TimestampWithTimeZone) -> Option<Duration> {
    use crate::queue::candidates;
    // The claim before holds the table's lock; a REVOKE or a policy committed since it took it
    // is read in here, as a lock acquisition would, before the rights are checked.
    // SAFETY: processes pending invalidation messages, as any lock acquisition does.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let table = &QueueTable::resolve(Some(table.oid));
    if crate::operations::controls::of(table, queue).paused {
        return None; // nothing falls due for a paused queue's waiters: resuming wakes them
    }
    let at = match candidates::readable(table, candidates::row_security(table.oid)) {
        Some(indexes) => candidates::next_due(table.oid, indexes, queue, after.into_inner()),
        None => table
            .one::<TimestampWithTimeZone>(Stmt::NextDue, &[queue.into(), after.into()])
            .map(|t| t.into_inner()),
    }?;
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    Some(Duration::from_micros(at.saturating_sub(now).max(0) as u64))
}
