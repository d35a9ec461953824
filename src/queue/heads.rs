//! Queue heads: where a claim starts reading a queue, so it skips the jobs already consumed.
//!
//! Every claim reads the ready index from the queue's first entry. The entries of jobs claimed
//! since the oldest snapshot any session still holds cannot be removed (VACUUM must keep them
//! for that snapshot), so while a session sits idle in a REPEATABLE READ transaction, each claim
//! walks every job claimed since then and throughput collapses (0.09x after 60 s, measured).
//! With pq preloaded, a small table in shared memory keeps each queue's *head*: a claim order
//! key (`expected_at NULLS LAST, id`) before which every unscheduled job is consumed or claimed
//! by a running transaction. A claim starts there and moves the head past what it passed.
//!
//! The head must never pass a job that is still ready. What can put one behind it:
//!
//! - a put that commits after a claimer took its snapshot, with a key below what that claimer
//!   passes (an id drawn early, an earlier `expected_at`);
//! - a claim that rolls back (its job is ready again);
//! - an update that makes a job ready or moves it earlier (requeue, `pq_update`, hand edits).
//!
//! Each of these *lowers* the head once it is visible to others (the trigger on every queue
//! table records puts and updates, the transaction callbacks record aborted claims; see
//! `wake`), and a claimer may only advance the head to below every key lowered since it read
//! the head, which it read before its snapshot. A lowering it cannot account for (the short
//! log of recent lowerings overflowed, its slot was reused) cancels its advance. A prepared
//! transaction ends in a session that never saw its puts or claims: `COMMIT PREPARED` and
//! `ROLLBACK PREPARED` reset every head of the database (`utility`). What nothing can see (rows
//! written with triggers disabled, a user trigger rewriting claim order after pq's) is found by
//! a full scan from the start of the queue, which each queue gets at least every
//! [`FULL_SCAN_EVERY_US`] and, when a claim from the head finds nothing, every
//! [`FULL_SCAN_IDLE_US`].
//!
//! Without `shared_preload_libraries = 'pq'` there is no shared table and every claim reads
//! from the start, as before. Scheduled jobs (`schedule_at` set) are read from their own index
//! and never affect the head; neither do SQL task claims (`pq_work`), which use theirs.

use crate::plumbing::queue_id::QueueId;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// A job's place in claim order: `expected_at` (raw `timestamptz`; `None` sorts last), then id.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct Key {
    pub expected_at: Option<i64>,
    pub id: i64,
}

impl Key {
    /// Before every job.
    pub const MIN: Key = Key {
        expected_at: Some(i64::MIN),
        id: i64::MIN,
    };

    /// The first key after this one: a head moved past a job starts after it, so the next
    /// claim does not read that job's entry again (at 4 clients, often one still being claimed).
    ///
    /// ```ignore
    /// assert!(key.after() > key);
    /// ```
    pub fn after(self) -> Key {
        Key {
            id: self.id.saturating_add(1),
            ..self
        }
    }

    /// The candidates statement's bounds for reading from this key: `($4, $5)` for the jobs
    /// with an `expected_at`, `$6` for the ids of those without.
    ///
    /// ```ignore
    /// let (at, id, null_id) = Key::MIN.bounds(); // everything
    /// ```
    pub fn bounds(self) -> (i64, i64, i64) {
        match self.expected_at {
            // Every job with an expected_at comes before this key: read none of them
            // (`(expected_at, id) >= ('infinity', max)`), and the others from `id`.
            None => (i64::MAX, i64::MAX, self.id),
            Some(at) => (at, self.id, i64::MIN),
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        let rank = |k: &Key| (k.expected_at.is_none(), k.expected_at.unwrap_or(0), k.id);
        rank(self).cmp(&rank(other))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Queues tracked at once; past that, the least recently used slot is given to a new queue.
const SLOTS: usize = 256;
/// Lowerings remembered per queue, so an advance can be clamped below all of them.
const LOG: usize = 16;
/// A queue's claims ignore its head at least this often (microseconds): finds anything the
/// trigger could not report.
pub const FULL_SCAN_EVERY_US: i64 = 10_000_000;
/// ... and this often when a claim from the head found nothing.
pub const FULL_SCAN_IDLE_US: i64 = 1_000_000;

#[derive(Copy, Clone)]
struct Slot {
    /// Whose head it is (longer names are claimed from the start, as without preload).
    id: QueueId,
    head: Key,
    /// When this slot was given to its queue (a sequence number).
    since: u64,
    /// The most recent lowerings, (sequence number, key), and the newest one forgotten.
    log: [(u64, Key); LOG],
    forgotten: u64,
    /// When a claim of this queue last read from the start (`GetCurrentTimestamp`): a plain
    /// claim ([0]) and a claim that cannot take every job ([1]: a client worker's, or one under
    /// row-level security), apart, so the latter never stand in for the former.
    last_full: [i64; 2],
    used: u64,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            id: QueueId::FREE,
            head: Key::MIN,
            since: 0,
            log: [(0, Key::MIN); LOG],
            forgotten: 0,
            last_full: [0; 2],
            used: 0,
        }
    }
}

impl Slot {
    /// Lowers the head to `key` as lowering number `seq`, logged so that advances of claims
    /// that read the head before it are clamped below it.
    fn lower(&mut self, seq: u64, key: Key) {
        let oldest = (0..LOG).min_by_key(|&i| self.log[i].0).expect("LOG > 0");
        self.forgotten = self.forgotten.max(self.log[oldest].0);
        self.log[oldest] = (seq, key);
        if key < self.head {
            self.head = key;
        }
    }
}

#[derive(Copy, Clone)]
struct Heads {
    slots: [Slot; SLOTS],
    /// Sequence numbers for slots and lowerings: never reused.
    seq: u64,
}

impl Default for Heads {
    fn default() -> Self {
        Heads {
            slots: [Slot::default(); SLOTS],
            seq: 1,
        }
    }
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for Heads {}

static HEADS: PgLwLock<Heads> = unsafe { PgLwLock::new(c"pq_heads") };
/// Whether this server preloaded pq, so that `HEADS` exists.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Asks for the shared table when pq is being preloaded. Called from `_PG_init`.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(HEADS);
        ACTIVE.store(true, Relaxed);
    }
}

/// Whether heads are kept (pq is preloaded).
pub fn active() -> bool {
    ACTIVE.load(Relaxed)
}

/// What a claim read before its snapshot: where to start, and what it needs to advance.
#[derive(Copy, Clone, Debug)]
pub struct Start {
    slot: usize,
    /// When it was read: a slot given to another queue since has a later `since`.
    seq: u64,
    /// Where to read from: the head, or [`Key::MIN`] for a full scan.
    pub from: Key,
    pub full: bool,
    /// Whether the claim can take every job (see `Slot::last_full`).
    plain: bool,
}

fn now() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Reads the head of (`table`, `queue`), giving the queue a slot if it has none. Call it before
/// the claim takes its snapshot. `None`: no heads (not preloaded, or the name is too long).
///
/// ```ignore
/// let start = heads::start(table.oid, "apples", true);
/// let from = start.map_or(Key::MIN, |s| s.from);
/// ```
pub fn start(table: pg_sys::Oid, queue: &str, plain: bool) -> Option<Start> {
    let id = QueueId::of(table, queue).filter(|_| active())?;
    let now = now();
    let mut heads = HEADS.exclusive();
    heads.seq += 1;
    let seq = heads.seq;
    let slot = match heads.slots.iter().position(|s| s.id == id) {
        Some(i) => i,
        None => {
            let i = (0..SLOTS)
                .min_by_key(|&i| (heads.slots[i].id.in_use(), heads.slots[i].used))
                .expect("SLOTS > 0");
            let s = &mut heads.slots[i];
            *s = Slot::default();
            s.id = id;
            s.since = seq;
            s.last_full = [now; 2];
            i
        }
    };
    let s = &mut heads.slots[slot];
    s.used = seq;
    let kind = usize::from(!plain);
    let full = s.since == seq || now - s.last_full[kind] >= FULL_SCAN_EVERY_US;
    if full {
        s.last_full[kind] = now;
    }
    Some(Start {
        slot,
        seq,
        from: if full { Key::MIN } else { s.head },
        full,
        plain,
    })
}

/// After a claim from the head found nothing: whether to look again from the start (at most
/// every [`FULL_SCAN_IDLE_US`] per queue). Returns the new start if so.
pub fn rescan(start: &Start) -> Option<Start> {
    if start.full {
        return None;
    }
    let now = now();
    let mut heads = HEADS.exclusive();
    heads.seq += 1;
    let seq = heads.seq;
    let s = &mut heads.slots[start.slot];
    let kind = usize::from(!start.plain);
    if s.since > start.seq || now - s.last_full[kind] < FULL_SCAN_IDLE_US {
        return None;
    }
    s.last_full[kind] = now;
    Some(Start {
        seq,
        from: Key::MIN,
        full: true,
        ..*start
    })
}

/// Moves the head of the queue `start` was read for up to `to` (every unscheduled job before
/// `to` having been found consumed or claimed), but never past a key lowered since `start`.
pub fn advance(start: &Start, to: Key) {
    let mut heads = HEADS.exclusive();
    let s = &mut heads.slots[start.slot];
    if s.since > start.seq || s.forgotten > start.seq {
        return; // given to another queue, or lowered in ways we no longer know
    }
    let to = s
        .log
        .iter()
        .filter(|(seq, _)| *seq > start.seq)
        .map(|(_, k)| *k)
        .fold(to, std::cmp::min);
    if to > s.head {
        s.head = to;
    }
}

/// Lowers the head of (`table`, `queue`) to `key`: a job there is ready again, or newly
/// visible. Call it once that is visible to other sessions (after commit or abort).
pub fn lower(table: pg_sys::Oid, queue: &str, key: Key) {
    let Some(id) = QueueId::of(table, queue).filter(|_| active()) else {
        return;
    };
    let mut heads = HEADS.exclusive();
    heads.seq += 1;
    let seq = heads.seq;
    let Some(s) = heads.slots.iter_mut().find(|s| s.id == id) else {
        return; // no slot: the queue's next claim reads from the start anyway
    };
    s.lower(seq, key);
}

/// Sends every head of this database back to the start of its queue, as if each had been
/// lowered to [`Key::MIN`]: after a prepared transaction ended (see `utility`).
pub fn reset_database() {
    if !active() {
        return;
    }
    let mut heads = HEADS.exclusive();
    heads.seq += 1;
    let seq = heads.seq;
    for s in heads
        .slots
        .iter_mut()
        .filter(|s| s.id.in_use() && s.id.in_this_database())
    {
        s.lower(seq, Key::MIN);
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::Key;
    use pgrx::prelude::*;

    #[pg_test]
    fn keys_sort_in_claim_order() {
        let k = |e: Option<i64>, id| Key { expected_at: e, id };
        let mut keys = vec![
            k(None, 1),
            k(Some(5), 9),
            k(Some(5), 2),
            k(None, 0),
            Key::MIN,
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                Key::MIN,
                k(Some(5), 2),
                k(Some(5), 9),
                k(None, 0),
                k(None, 1)
            ]
        );
        assert_eq!(k(None, 7).bounds(), (i64::MAX, i64::MAX, 7));
        assert_eq!(k(Some(3), 7).bounds(), (3, 7, i64::MIN));
    }
}
