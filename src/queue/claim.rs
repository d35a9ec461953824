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
//! updates the row right after taking the key, so its transaction shows as the row's `xmax`
//! (read again when the key is found taken: the scan may have read the row between a
//! claimer's lock and its update). When the key is taken but no running transaction is
//! updating the row, nor a committed one changed it since, the job is claimed through its row
//! lock instead (the direct update of `dequeue`, or claim.sql's `FOR NO KEY UPDATE SKIP
//! LOCKED` and re-check, the statement that also settles what a direct update cannot; neither
//! waits for another transaction's lock):
//! a squatter can delay nothing, and exactly-once still holds because every claim re-checks
//! `dequeued_at IS NULL` on the latest row version. `pq_stats` counts squatted jobs apart.

use crate::plumbing::pinning::pinned;
use crate::plumbing::table::{QueueTable, Stmt};
use crate::queue::candidates::Candidate;
use crate::queue::heads::Key;
pub use crate::queue::job::{Job, Payload};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::direct_function_call;
use pgrx::prelude::*;
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
/// let jobs = claim::claim(&table, "apples", Only::All, 1, &mut memcx); // zero or one job
/// ```
///
/// On the direct path (see `candidates` and `dequeue`) no statement runs, so neither SPI nor
/// pq's pinned settings are set up (together, profiled, about a tenth of a prepared
/// `pq_get`); the statements of the other paths pin them around themselves ([`pinned`]).
pub fn claim(
    table: &QueueTable,
    queue: &str,
    only: Only<'_>,
    limit: usize,
    memcx: &mut PgMemoryContexts,
) -> Vec<Job> {
    // The table's lock first, as the executor takes it before its checks: a claim that waited
    // for a DDL transaction must see the privileges, policies and indexes it committed, not
    // those `QueueTable::resolve` found before (so resolve again, under the lock).
    // SAFETY: a lock kept to the end of the transaction, as the candidate read takes anyway.
    unsafe {
        let rel = pg_sys::table_open(table.oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    let table = &QueueTable::resolve(Some(table.oid));
    let controls = crate::operations::controls::of(table, queue);
    if controls.paused {
        // What the claim's UPDATE would refuse, refused here too: a role with no right to
        // claim learns nothing from a paused queue (and keeps no lock on it: the error ends
        // its transaction).
        use crate::plumbing::table::may_some;
        if !may_some(table.oid, pg_sys::ACL_SELECT) || !may_some(table.oid, pg_sys::ACL_UPDATE) {
            crate::plumbing::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied for table {}",
                    crate::plumbing::table::qualified_name(table.oid)
                ),
                "claiming needs SELECT and UPDATE on the queue table: GRANT SELECT, UPDATE ON queue TO worker_role",
            )
        }
        return Vec::new(); // see `pause`: its waiters wake on resume
    }
    // The queue's head (see `heads`), read before the cursor takes its snapshot. Only a plain
    // claim in READ COMMITTED may move it: a client worker's claim skips jobs it does not
    // admit, and an older snapshot (REPEATABLE READ) may not have seen jobs put since.
    let rls = crate::queue::candidates::row_security(table.oid);
    let advancing = matches!(only, Only::All)
        && unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32
        && !rls;
    let mut start = match only {
        Only::SqlTasks => None,
        _ => crate::queue::heads::start(table.oid, queue, advancing),
    };
    let ask = Ask {
        table,
        queue,
        only,
        limit,
        rls,
        slots: controls.limit,
    };
    let mut jobs = Vec::new();
    // What a pass allocates besides the jobs (index scans, tuples, SPI's results) lives in a
    // context of its own, freed after it.
    let mut pass = crate::plumbing::scratch::Scratch::new(c"pq claim");
    loop {
        let from = start.map_or(Key::MIN, |s| s.from);
        // SAFETY: everything kept from the pass is Rust-owned or in `memcx`.
        let passed = unsafe { pass.run(|| claim_from(&ask, from, &mut jobs, memcx)) };
        pass.reset();
        if let (Some(s), Some(to), true) = (&start, passed, advancing) {
            crate::queue::heads::advance(s, to.after());
        }
        if !jobs.is_empty() {
            return jobs;
        }
        // Nothing from the head: now and then, look from the start too (see `heads`).
        match start.as_ref().and_then(crate::queue::heads::rescan) {
            Some(s) => start = Some(s),
            None => return jobs,
        }
    }
}

/// What a claim asks for: up to `limit` jobs of `queue` in `table` that `only` admits; `rls`:
/// whether row-level security applies to this session's reads of the table; `slots`: the
/// queue's concurrency limit, if it has one (see `limits`).
struct Ask<'a> {
    table: &'a QueueTable,
    queue: &'a str,
    only: Only<'a>,
    limit: usize,
    rls: bool,
    slots: Option<u32>,
}

/// One pass of [`claim`] over the candidates from `from`, pushing claimed jobs to `jobs`.
/// Returns the key of the last unscheduled candidate in claim order before which every one was
/// claimed here or found consumed or being claimed (what the head may advance to).
fn claim_from(
    ask: &Ask<'_>,
    from: Key,
    jobs: &mut Vec<Job>,
    memcx: &mut PgMemoryContexts,
) -> Option<Key> {
    let Ask {
        table,
        queue,
        only,
        limit,
        rls,
        slots,
    } = *ask;
    let mut passed = None;
    let mut passing = true;
    // Decides on one candidate; false once `limit` jobs are claimed.
    let mut consider = |c: &Candidate| -> bool {
        if !only.admits(c.function.as_deref()) {
            passing = false;
            return true;
        }
        // Under the job's advisory lock, or, for a squatted job, by its row lock alone.
        let take = try_lock(table, c.id) || {
            // The key's holder may have updated the row since we read it (we read it between
            // its lock and its update): the row's header now says. A running updater is a
            // claimer; a row only locked (FOR SHARE, a foreign key's FOR KEY SHARE, ...) or
            // nobody is changing goes to its row lock, whose statement skips a lock it cannot
            // take and keeps the head before the job.
            let now = crate::queue::dequeue::xmax_now(c.row.0, c.row.1);
            if being_claimed(now) {
                false // being claimed by a running transaction: its abort lowers the head
            } else if now != pg_sys::InvalidTransactionId
                && unsafe { pg_sys::TransactionIdDidCommit(now) }
            {
                // Changed by a transaction that committed since our snapshot (a claim, or an
                // update that may have left it ready): the next claim's snapshot sees which.
                passing = false;
                false
            } else {
                true // squatted (or its claimer is between its lock and its update)
            }
        };
        let mut claimed = false;
        if take {
            // A limited queue: a slot first, or stop here (every slot is held).
            if slots.is_some_and(|n| !crate::operations::limits::take(table.oid, queue, n)) {
                return false;
            }
            // A job read from the indexes is marked dequeued directly where the table allows
            // (see `dequeue`); otherwise, or if its row changed, by SQL. Neither waits for a
            // row lock, and both re-check the latest row version, so a squatted job is taken
            // the same way as one under its key.
            use crate::queue::dequeue::{dequeue, Dequeued};
            let direct = if c.direct {
                dequeue(table, c.row.1, c.id, memcx)
            } else {
                Dequeued::ToSql
            };
            let job = match direct {
                Dequeued::Claimed(job) => Some(job),
                Dequeued::Consumed => None,
                Dequeued::Locked => {
                    passing = false; // as claim.sql's SKIP LOCKED below would leave it
                    None
                }
                Dequeued::ToSql => {
                    let job = claim_one(table, c.id, memcx);
                    if job.is_none() {
                        // Consumed since our snapshot, or skipped as locked by someone who may
                        // not be claiming it (SKIP LOCKED cannot say which): the head must not
                        // pass it.
                        passing = false;
                    }
                    job
                }
            };
            if job.is_none() && slots.is_some() {
                crate::operations::limits::unused(table.oid, queue);
            }
            if let Some(job) = job {
                // SAFETY: reads the current subtransaction's id.
                let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
                let entry = Claimed {
                    claimed_in: sub,
                    reported_in: None,
                };
                CLAIMED.with(|c| c.borrow_mut().insert((table.oid, job.id), entry));
                jobs.push(job);
                claimed = true;
            }
        }
        if claimed {
            // A due scheduled job is not behind the head; its rollback only wakes waiters.
            remember_claim(table, queue, (!c.scheduled).then_some(c.key));
        }
        if !c.scheduled && passing {
            passed = Some(c.key);
        }
        jobs.len() < limit
    };
    let with_functions = matches!(only, Only::AnyOf(_));
    let direct = match only {
        Only::SqlTasks => None, // their index is read by sql_task_candidates.sql
        _ => crate::queue::candidates::readable(table, rls),
    };
    match direct {
        None => sql_candidates(ask, from, &mut consider),
        Some(indexes) => crate::queue::candidates::read(
            table.oid,
            indexes,
            queue,
            clock().into_inner(),
            from,
            with_functions,
            consider,
        ),
    }
    passed
}

/// Visits the candidates from `from` through an SQL cursor (`candidates.sql`): for `pq_work`'s
/// SQL tasks, and for tables without the indexes `candidates::read` reads.
fn sql_candidates(ask: &Ask<'_>, from: Key, consider: &mut dyn FnMut(&Candidate) -> bool) {
    let (table, queue, only) = (ask.table, ask.queue, ask.only);
    let stmt = match only {
        Only::SqlTasks => Stmt::SqlTaskCandidates,
        _ => Stmt::Candidates,
    };
    let (at, id, null_id) = from.bounds();
    let ts = |t: i64| TimestampWithTimeZone::try_from(t).expect("a bound is a timestamptz");
    let with_functions = matches!(only, Only::AnyOf(_));
    pinned(|pinned| {
        Spi::connect(|client| {
            table.with_plan(pinned, client, stmt, |candidates| {
                let args: Vec<DatumWithOid> = match stmt {
                    Stmt::Candidates => vec![
                        queue.into(),
                        clock().into(),
                        i64::MAX.into(),
                        ts(at).into(),
                        id.into(),
                        null_id.into(),
                        with_functions.into(),
                    ],
                    _ => vec![queue.into(), clock().into(), i64::MAX.into()],
                };
                let mut cursor = client
                    .try_open_cursor(candidates, &args)
                    .unwrap_or_else(|e| panic!("opening candidates cursor: {e}"));
                let mut want = ask.limit as i64;
                loop {
                    let rows: Vec<Candidate> = cursor
                        .fetch(want)
                        .unwrap_or_else(|e| panic!("fetching candidates: {e}"))
                        .map(|row| Candidate {
                            id: row.get::<i64>(1).ok().flatten().expect("id is NOT NULL"),
                            function: row.get::<String>(2).ok().flatten(),
                            row: (
                                row.get::<pg_sys::Oid>(3).ok().flatten().expect("tableoid"),
                                row.get::<pg_sys::ItemPointerData>(4)
                                    .ok()
                                    .flatten()
                                    .expect("ctid"),
                            ),
                            key: Key {
                                expected_at: row
                                    .get::<TimestampWithTimeZone>(5)
                                    .ok()
                                    .flatten()
                                    .map(|t| t.into_inner()),
                                id: row.get::<i64>(1).ok().flatten().unwrap_or(0),
                            },
                            scheduled: row.get::<bool>(6).ok().flatten().unwrap_or(true),
                            direct: false,
                        })
                        .collect();
                    for c in &rows {
                        if !consider(c) {
                            return;
                        }
                    }
                    if (rows.len() as i64) < want {
                        return; // the cursor is exhausted
                    }
                    want = MORE_CANDIDATES;
                }
            })
        })
    });
}

thread_local! {
    /// The queues this transaction claimed from, each with its earliest unscheduled key: if
    /// it (or a subtransaction) rolls back, those jobs are ready again, so the queues' heads
    /// are lowered and their waiters woken (`wake::on_xact_event`).
    static CLAIMED_KEYS: std::cell::RefCell<Vec<(pg_sys::Oid, String, Option<Key>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Remembers a claim of (`table`, `queue`), with its key if it was unscheduled.
fn remember_claim(table: &QueueTable, queue: &str, key: Option<Key>) {
    crate::operations::metrics::count(table.oid, queue, |c| c.claims += 1);
    CLAIMED_KEYS.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter_mut().find(|(t, q, _)| *t == table.oid && q == queue) {
            Some(entry) => {
                entry.2 = match (entry.2, key) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            None => c.push((table.oid, queue.to_string(), key)),
        }
    });
}

/// The queues this transaction claimed from so far, with the earliest unscheduled key claimed
/// in each (kept: an outer transaction may still hold its claims after a subtransaction rolls
/// back).
pub fn claimed_keys() -> Vec<(pg_sys::Oid, String, Option<Key>)> {
    CLAIMED_KEYS.with(|c| c.borrow().clone())
}

thread_local! {
    /// The jobs this transaction claimed and has not yet recorded an outcome for, each with
    /// the subtransaction that claimed it: only these may be reported failed
    /// (`pq_task_failed`), so nobody can replay a done job as its enqueuer by marking it
    /// failed. Forgotten at commit and abort (`wake::on_xact_event`), and with the
    /// subtransaction that claimed them ([`on_subxact_abort`]): its rollback un-claims them.
    static CLAIMED: std::cell::RefCell<std::collections::HashMap<(pg_sys::Oid, i64), Claimed>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A job of [`CLAIMED`]: the subtransaction that claimed it, and the one that recorded its
/// outcome, if any.
struct Claimed {
    claimed_in: pg_sys::SubTransactionId,
    reported_in: Option<pg_sys::SubTransactionId>,
}

/// Subtransaction `sub` rolled back: its claims, and those of the subtransactions inside it
/// (all started after it, so numbered above it), are undone with it; so are the outcomes it
/// recorded (the claim may record one again).
pub fn on_subxact_abort(sub: pg_sys::SubTransactionId) {
    CLAIMED.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|_, j| j.claimed_in < sub);
        for j in c.values_mut() {
            if j.reported_in.is_some_and(|r| r >= sub) {
                j.reported_in = None;
            }
        }
    });
}

/// Whether this transaction claimed job `id` of `table` and has not recorded its outcome;
/// marks it recorded, so an outcome is recorded once (unless the subtransaction that recorded
/// it rolls back).
///
/// ```ignore
/// if !claim::take_claim(table.oid, id) { /* not ours to report */ }
/// ```
pub fn take_claim(table: pg_sys::Oid, id: i64) -> bool {
    CLAIMED.with(|c| match c.borrow_mut().get_mut(&(table, id)) {
        Some(j) if j.reported_in.is_none() => {
            // SAFETY: reads the current subtransaction's id.
            j.reported_in = Some(unsafe { pg_sys::GetCurrentSubTransactionId() });
            true
        }
        _ => false,
    })
}

/// Forgets every claim of the transaction that just ended.
pub fn forget_claims() {
    CLAIMED.with(|c| c.borrow_mut().clear());
    CLAIMED_KEYS.with(|c| c.borrow_mut().clear());
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

/// Whether the transaction updating the row whose `xmax` this is (from `dequeue::xmax_now`,
/// which leaves out locks and multixacts) is still running: a real claimer.
pub fn being_claimed(xmax: pg_sys::TransactionId) -> bool {
    xmax != pg_sys::InvalidTransactionId && unsafe { pg_sys::TransactionIdIsInProgress(xmax) }
}

/// Claims job `id` through claim.sql (under its advisory lock, or a squatted job by its row
/// lock alone), copying its payload into `memcx`.
fn claim_one(table: &QueueTable, id: i64, memcx: &mut PgMemoryContexts) -> Option<Job> {
    pinned(|pinned| {
        Spi::connect(|client| {
            table.with_plan(pinned, client, Stmt::Claim, |plan| {
                // pq's own write: it keeps the job's enqueuer (see `enqueuer`).
                let rows = crate::tasks::enqueuer::as_pq(table.oid, id, || {
                    client.select(plan, None, &[id.into()])
                })
                .unwrap_or_else(|e| panic!("claiming job {id}: {e}"));
                if rows.is_empty() {
                    return None; // claimed and committed by someone else since our snapshot
                }
                let row = rows.first();
                let col = |i| row.get_datum_by_ordinal(i).ok().flatten();
                let data = col(2).expect("data is NOT NULL");
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
        })
    })
}
