//! Metrics: what `pq_metrics()` reports and `pq serve` exposes to Prometheus.
//!
//! Gauges (jobs ready, scheduled, in flight; the oldest ready job's age; paused; the
//! concurrency limit) are counted from the pending jobs only, through the ready and scheduled
//! indexes (`metrics_gauges.sql`): a table with ten million done jobs costs a scrape no more
//! than an empty one. Counters (jobs put, claimed, task outcomes) and the wake-up latency
//! histogram need pq preloaded: they live in shared memory, per (database, table, queue),
//! added at commit, so a rolled-back put or claim never counts. They are exact since the server
//! started, for up to [`SLOTS`] queues; past that the least recently counted queue's counters
//! start again from zero, as Prometheus counters may. Without preload `pq_metrics()` reports
//! the gauges only.

use crate::plumbing::queue_id::QueueId;
use crate::plumbing::table::QueueTable;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Queues counted at once.
const SLOTS: usize = 512;
/// Upper bounds of the wake-up latency histogram's buckets, in microseconds (then +Inf).
pub const BUCKETS_US: [u64; 7] = [500, 1_000, 2_500, 5_000, 10_000, 100_000, 1_000_000];

/// What a transaction adds to one queue's counters.
#[derive(Copy, Clone, Default, Debug, PartialEq)]
pub struct Counts {
    pub puts: u64,
    pub claims: u64,
    pub done: u64,
    pub retried: u64,
    pub failed: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.puts += o.puts;
        self.claims += o.claims;
        self.done += o.done;
        self.retried += o.retried;
        self.failed += o.failed;
    }
}

/// One queue's counters and wake-up latencies.
#[derive(Copy, Clone)]
pub struct Slot {
    id: QueueId,
    pub counts: Counts,
    /// Wake-ups per bucket of [`BUCKETS_US`] (the last: slower), their sum in microseconds.
    pub wakes: [u64; BUCKETS_US.len() + 1],
    pub wake_us: u64,
    used: u64,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            id: QueueId::FREE,
            counts: Counts::default(),
            wakes: [0; BUCKETS_US.len() + 1],
            wake_us: 0,
            used: 0,
        }
    }
}

impl Slot {
    /// The queue name of a slot in use.
    pub fn queue(&self) -> String {
        self.id.queue()
    }
}

#[derive(Copy, Clone)]
struct Table {
    slots: [Slot; SLOTS],
    clock: u64,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            slots: [Slot::default(); SLOTS],
            clock: 0,
        }
    }
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for Table {}

static METRICS: PgLwLock<Table> = unsafe { PgLwLock::new(c"pq_metrics") };
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Asks for the shared counters when pq is being preloaded. Called from `_PG_init`.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(METRICS);
        ACTIVE.store(true, Relaxed);
    }
}

/// Whether counters are kept (pq is preloaded).
pub fn active() -> bool {
    ACTIVE.load(Relaxed)
}

/// Runs `f` on the slot of (this database, `table`, `queue`), taking the least recently used
/// one for a queue not counted yet. Nothing for names longer than `queue_id::NAME_MAX`.
fn with_slot(table: pg_sys::Oid, queue: &str, f: impl FnOnce(&mut Slot)) {
    let Some(id) = QueueId::of(table, queue).filter(|_| active()) else {
        return;
    };
    let t = table.to_u32();
    let known = SLOT_OF.with(|c| c.borrow().get(&(t, queue.to_string())).copied());
    let mut m = METRICS.exclusive();
    m.clock += 1;
    let clock = m.clock;
    let found = known
        .filter(|&i| m.slots[i].id == id)
        .or_else(|| m.slots.iter().position(|s| s.id == id));
    let i = match found {
        Some(i) => i,
        None => {
            let i = (0..SLOTS)
                .min_by_key(|&i| m.slots[i].used)
                .expect("SLOTS > 0");
            m.slots[i] = Slot {
                id,
                ..Slot::default()
            };
            i
        }
    };
    m.slots[i].used = clock;
    f(&mut m.slots[i]);
    drop(m);
    SLOT_OF.with(|c| c.borrow_mut().insert((t, queue.to_string()), i));
}

thread_local! {
    /// Where this backend last found each queue's slot: checked under the lock, so the
    /// critical section is one comparison, not a search of every slot.
    static SLOT_OF: RefCell<std::collections::HashMap<(u32, String), usize>> =
        RefCell::new(std::collections::HashMap::new());
}

thread_local! {
    /// This transaction's counts per (table, queue, subtransaction that counted them), added to
    /// the shared ones at commit.
    static PENDING: RefCell<Vec<(pg_sys::Oid, String, pg_sys::SubTransactionId, Counts)>> =
        const { RefCell::new(Vec::new()) };
}

/// Counts, for this transaction, something that happened to a job of (`table`, `queue`).
///
/// ```ignore
/// metrics::count(table.oid, "apples", |c| c.claims += 1);
/// ```
pub fn count(table: pg_sys::Oid, queue: &str, f: impl FnOnce(&mut Counts)) {
    if !active() {
        return;
    }
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p
            .iter_mut()
            .find(|(t, q, s, _)| *t == table && q == queue && *s == sub)
        {
            Some((_, _, _, c)) => f(c),
            None => {
                let mut c = Counts::default();
                f(&mut c);
                p.push((table, queue.to_string(), sub, c));
            }
        }
    });
}

/// The transaction committed: its counts become the server's.
pub fn on_commit() {
    for (table, queue, _, counts) in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        with_slot(table, &queue, |s| s.counts.add(&counts));
    }
}

/// Subtransaction `sub` rolled back: what it (and its children) counted did not happen.
pub fn on_subxact_abort(sub: pg_sys::SubTransactionId) {
    PENDING.with(|p| p.borrow_mut().retain(|(_, _, s, _)| *s < sub));
}

/// The transaction rolled back (or was prepared: its end is counted nowhere): forget its counts.
pub fn forget() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// A blocked get of (`table`, `queue`) claimed a job `latency_us` after the commit that woke it.
pub fn woke(table: pg_sys::Oid, queue: &str, latency_us: u64) {
    with_slot(table, queue, |s| {
        let b = BUCKETS_US
            .iter()
            .position(|&le| latency_us <= le)
            .unwrap_or(BUCKETS_US.len());
        s.wakes[b] += 1;
        s.wake_us += latency_us;
    });
}

/// The counters of every queue of `table` in this database.
pub fn of(table: &QueueTable) -> Vec<Slot> {
    if !active() {
        return Vec::new();
    }
    let m = METRICS.share();
    m.slots
        .iter()
        .filter(|s| s.id.in_table(table.oid))
        .copied()
        .collect()
}

/// One sample: metric name, queue, an extra label (`outcome="done"`, `le="0.005"`), value.
type Sample = (String, String, Option<String>, f64);

/// The metrics of every queue of `tbl`, one row per sample, for `pq serve`'s `/metrics` and
/// anyone's own exporter: gauges always (`pq_jobs_ready`, `pq_jobs_scheduled`,
/// `pq_jobs_in_flight`, `pq_oldest_ready_seconds`, `pq_paused`, `pq_concurrency_limit`), and
/// with pq preloaded the counters `pq_puts_total`, `pq_claims_total`, `pq_tasks_total` (label
/// `outcome`) and the histogram `pq_wake_seconds` (`_bucket` with label `le`, `_sum`, `_count`).
///
/// ```sql
/// SELECT * FROM pq_metrics() WHERE queue = 'apples';
/// ```
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)]
fn pq_metrics(
    tbl: Option<pg_sys::Oid>,
) -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(queue, String),
        name!(label, Option<String>),
        name!(value, f64),
    ),
> {
    let table = QueueTable::resolve(tbl);
    let mut rows: Vec<Sample> = Vec::new();
    let gauge = |rows: &mut Vec<Sample>, m: &str, q: &str, v: f64| {
        rows.push((m.to_string(), q.to_string(), None, v))
    };
    let gauges: Vec<(String, i64, i64, i64, f64)> = crate::plumbing::pinning::pinned(|p| {
        Spi::connect(|client| {
            table.with_plan(
                p,
                client,
                crate::plumbing::table::Stmt::MetricsGauges,
                |plan| {
                    client
                        .select(plan, None, &[table.oid.into()])
                        .unwrap_or_else(|e| panic!("metrics: {e}"))
                        .map(|r| {
                            let n = |i| r.get::<i64>(i).ok().flatten().unwrap_or(0);
                            (
                                r.get::<String>(1).ok().flatten().unwrap_or_default(),
                                n(2),
                                n(3),
                                n(4),
                                r.get::<f64>(5).ok().flatten().unwrap_or(0.0),
                            )
                        })
                        .collect()
                },
            )
        })
    });
    let controls = crate::operations::controls::all(&table);
    let mut queues: Vec<String> = gauges.iter().map(|g| g.0.clone()).collect();
    for (queue, ready, scheduled, in_flight, oldest) in &gauges {
        gauge(&mut rows, "pq_jobs_ready", queue, *ready as f64);
        gauge(&mut rows, "pq_jobs_scheduled", queue, *scheduled as f64);
        gauge(&mut rows, "pq_jobs_in_flight", queue, *in_flight as f64);
        gauge(&mut rows, "pq_oldest_ready_seconds", queue, *oldest);
    }
    let slots = of(&table);
    queues.extend(controls.keys().cloned());
    queues.extend(slots.iter().map(Slot::queue));
    queues.sort();
    queues.dedup();
    for queue in &queues {
        if !gauges.iter().any(|g| &g.0 == queue) {
            for m in [
                "pq_jobs_ready",
                "pq_jobs_scheduled",
                "pq_jobs_in_flight",
                "pq_oldest_ready_seconds",
            ] {
                gauge(&mut rows, m, queue, 0.0);
            }
        }
        let c = controls.get(queue).copied().unwrap_or_default();
        gauge(&mut rows, "pq_paused", queue, c.paused as u8 as f64);
        if let Some(n) = c.limit {
            gauge(&mut rows, "pq_concurrency_limit", queue, n as f64);
        }
    }
    for s in &slots {
        let q = s.queue();
        let c = s.counts;
        gauge(&mut rows, "pq_puts_total", &q, c.puts as f64);
        gauge(&mut rows, "pq_claims_total", &q, c.claims as f64);
        for (outcome, n) in [("done", c.done), ("retry", c.retried), ("failed", c.failed)] {
            rows.push((
                "pq_tasks_total".into(),
                q.clone(),
                Some(format!("outcome=\"{outcome}\"")),
                n as f64,
            ));
        }
        let mut cumulative = 0;
        for (i, n) in s.wakes.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            rows.push((
                "pq_wake_seconds_bucket".into(),
                q.clone(),
                Some(format!("le=\"{le}\"")),
                cumulative as f64,
            ));
        }
        gauge(&mut rows, "pq_wake_seconds_sum", &q, s.wake_us as f64 / 1e6);
        gauge(&mut rows, "pq_wake_seconds_count", &q, cumulative as f64);
    }
    TableIterator::new(rows)
}
