//! Claiming: taking the next ready jobs of a queue for the current transaction.
//!
//! Candidates are read one at a time from a cursor in claim order. For each we try the job's
//! transaction-scoped advisory lock (`pg_try_advisory_xact_lock`); a job locked by another
//! transaction is skipped, never waited on. With the lock held we mark the job dequeued,
//! re-checking `dequeued_at IS NULL` on the latest row version: a transaction that claimed
//! and committed it after our snapshot was taken makes the update return nothing, and we move
//! on. The lock lives until our commit or rollback, so no other getter can take the job while
//! we work it; rollback returns it to the queue. No session-level lock is ever taken, so this
//! works behind transaction-pooling poolers.
//!
//! Advisory locks are only the fast path; the row decides. Any role can take any advisory lock,
//! so a session could hold a job's key without claiming it ("squatting"). A real claimer
//! updates the row right after taking the key, so its transaction shows as the row's `xmax`.
//! When the key is taken but no live transaction is updating the row, the job is claimed
//! through its row lock instead (`FOR UPDATE SKIP LOCKED`, then the same re-checked update):
//! a squatter can delay nothing, and exactly-once still holds because every claim re-checks
//! `dequeued_at IS NULL` on the latest row version. `pq_stats` counts squatted jobs apart.

pub use crate::job::{Job, Payload};
use crate::pinning::Pinned;
use crate::table::{QueueTable, Stmt};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgMemoryContexts;

/// Which jobs a claim may take, by their `data->>'function'`.
#[derive(Clone, Copy)]
pub enum Only<'a> {
    /// Every job (`pq_get`).
    All,
    /// SQL tasks: functions that are signatures, ending in `)` (`pq_work`); found by their own
    /// index, never by walking the queue's other jobs.
    SqlTasks,
    /// Functions with these names (a client worker's handlers).
    AnyOf(&'a [String]),
}

impl Only<'_> {
    fn admits(&self, function: Option<&str>) -> bool {
        match (self, function) {
            (Only::All, _) => true,
            // Its statement (sql_task_candidates.sql) returns only SQL tasks.
            (Only::SqlTasks, _) => true,
            (Only::AnyOf(names), Some(f)) => names.iter().any(|n| n == f),
            (_, None) => false,
        }
    }
}

/// Most jobs one call may claim: each holds an advisory lock until its transaction ends, and
/// the shared lock table is finite (`max_locks_per_transaction` × connections, 6,400 by
/// default), so a bigger claim could exhaust it and roll back all its work.
pub const MAX_CLAIMS: usize = 1000;

/// Candidates fetched from the cursor per round after the first; small, since each one costs
/// a lock attempt only when reached.
const MORE_CANDIDATES: i64 = 16;

/// Claims up to `limit` ready jobs of `queue` in `table` that `only` admits, without waiting. Payloads are
/// copied into `memcx`, which must outlive the caller's use of them (for an SRF: the query).
///
/// ```ignore
/// let jobs = pinned(|p| claim::claim(p, &table, "apples", Only::All, 1, &mut memcx)); // zero or one job
/// ```
pub fn claim(
    pinned: &Pinned,
    table: &QueueTable,
    queue: &str,
    only: Only<'_>,
    limit: usize,
    memcx: &mut PgMemoryContexts,
) -> Vec<Job> {
    Spi::connect(|client| {
        let mut jobs = Vec::new();
        let stmt = match only {
            Only::SqlTasks => Stmt::SqlTaskCandidates,
            _ => Stmt::Candidates,
        };
        table.with_plan(pinned, client, stmt, |candidates| {
            let mut cursor = client
                .try_open_cursor(candidates, &[queue.into(), clock().into(), i64::MAX.into()])
                .unwrap_or_else(|e| panic!("opening candidates cursor: {e}"));
            let mut want = limit as i64;
            loop {
                let rows: Vec<(i64, Option<String>, pg_sys::TransactionId)> = cursor
                    .fetch(want)
                    .unwrap_or_else(|e| panic!("fetching candidates: {e}"))
                    .map(|row| {
                        let id = row.get::<i64>(1).ok().flatten().expect("id is NOT NULL");
                        let xmax = row.get::<pg_sys::TransactionId>(3).ok().flatten();
                        let xmax = xmax.unwrap_or(pg_sys::InvalidTransactionId);
                        (id, row.get::<String>(2).ok().flatten(), xmax)
                    })
                    .collect();
                for (id, function, xmax) in &rows {
                    let id = *id;
                    if !only.admits(function.as_deref()) {
                        continue;
                    }
                    let stmt = if try_lock(table, id) {
                        Some(Stmt::Claim)
                    } else if !being_claimed(*xmax) {
                        Some(Stmt::ClaimSquatted)
                    } else {
                        None
                    };
                    if let Some(stmt) = stmt {
                        if let Some(job) = claim_one(pinned, client, table, stmt, id, memcx) {
                            jobs.push(job);
                            if jobs.len() == limit {
                                return;
                            }
                        }
                    }
                }
                if (rows.len() as i64) < want {
                    return; // the cursor is exhausted
                }
                want = MORE_CANDIDATES;
            }
        });
        jobs
    })
}

thread_local! {
    /// The jobs this transaction claimed and has not yet recorded an outcome for: only these
    /// may be reported failed (`pq_task_failed`), so nobody can replay a done job as its
    /// enqueuer by marking it failed. Forgotten at commit and abort (`wake::on_xact_event`).
    static CLAIMED: std::cell::RefCell<std::collections::HashSet<(pg_sys::Oid, i64)>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Whether this transaction claimed job `id` of `table` and has not recorded its outcome;
/// forgets it, so an outcome is recorded once.
///
/// ```ignore
/// if !claim::take_claim(table.oid, id) { /* not ours to report */ }
/// ```
pub fn take_claim(table: pg_sys::Oid, id: i64) -> bool {
    CLAIMED.with(|c| c.borrow_mut().remove(&(table, id)))
}

/// Forgets every claim of the transaction that just ended.
pub fn forget_claims() {
    CLAIMED.with(|c| c.borrow_mut().clear());
}

/// The wall clock, for readiness: `now()` is frozen at transaction start.
pub fn clock() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() })
        .expect("the clock is a valid timestamptz")
}

/// The advisory lock key of a job: (table oid, low 32 bits of id) in the two-int4 key space,
/// which neither collides with other tables' jobs nor with applications' one-bigint locks.
/// Ids 2^32 apart share a key; that only makes one skip the other for a moment.
fn try_lock(table: &QueueTable, id: i64) -> bool {
    let key1 = table.oid.to_u32() as i32;
    let key2 = id as i32;
    unsafe {
        direct_function_call::<bool>(
            pg_sys::pg_try_advisory_xact_lock_int4,
            &[key1.into_datum(), key2.into_datum()],
        )
    }
    .unwrap_or(false)
}

/// Whether a transaction that is still running is updating or locking the row whose `xmax`
/// this is: a real claimer. (A multixact id reads as not running, which costs one extra
/// `SKIP LOCKED` probe, never a wrong claim.)
fn being_claimed(xmax: pg_sys::TransactionId) -> bool {
    xmax != pg_sys::InvalidTransactionId && unsafe { pg_sys::TransactionIdIsInProgress(xmax) }
}

/// Claims job `id` with `stmt` (`Claim` under its advisory lock, `ClaimSquatted` by its row
/// lock), copying its payload into `memcx`.
fn claim_one(
    pinned: &Pinned,
    client: &SpiClient<'_>,
    table: &QueueTable,
    stmt: Stmt,
    id: i64,
    memcx: &mut PgMemoryContexts,
) -> Option<Job> {
    table.with_plan(pinned, client, stmt, |plan| {
        // pq's own write: it keeps the job's enqueuer (see `enqueuer`).
        let rows =
            crate::enqueuer::as_pq(table.oid, id, || client.select(plan, None, &[id.into()]))
                .unwrap_or_else(|e| panic!("claiming job {id}: {e}"));
        if rows.is_empty() {
            return None; // claimed and committed by someone else since our snapshot
        }
        let row = rows.first();
        let col = |i| row.get_datum_by_ordinal(i).ok().flatten();
        let data = col(2).expect("data is NOT NULL");
        CLAIMED.with(|c| c.borrow_mut().insert((table.oid, id)));
        Some(Job {
            id,
            // SAFETY: a jsonb varlena, copied into a context that outlives SPI.
            data: Payload(unsafe {
                memcx.switch_to(|_| {
                    pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(data.cast_mut_ptr()))
                })
            }),
            size: row.get(3).ok().flatten().unwrap_or(0),
            enqueued_at: row.get(4).ok().flatten().expect("enqueued_at is NOT NULL"),
            schedule_at: row.get(5).ok().flatten(),
            expected_at: row.get(6).ok().flatten(),
            enqueued_by: col(7).map_or(pg_sys::Oid::INVALID, |d| {
                pg_sys::Oid::from(d.value() as u32)
            }),
        })
    })
}
