//! Queues: put, get, iteration. Each call is one call of the extension's SQL function.

use crate::{Job, Pq, Result, Tx, When};
use postgres::types::Type;
use postgres::GenericClient;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The SQL this client runs, once each: calls of the extension's functions, with the table
/// passed as text and resolved by the server as `regclass`. Every statement is sent with its
/// parameter types (`query_typed`): one unnamed statement in one round trip, which a
/// transaction-pooling PgBouncer can route (named prepared statements break there).
/// ```
/// assert!(pq_client::sql::PUT.starts_with("SELECT pq_put("));
/// ```
pub mod sql {
    /// Enqueue one job: `pq_put(queue, data, schedule_at, expected_at, tbl, key)`.
    pub const PUT: &str = "SELECT pq_put($1, $2, $3, $4, $5::text::regclass, $6)";
    /// Enqueue many jobs in one statement; ids in order.
    pub const PUT_MANY: &str = "SELECT * FROM pq_put_many($1, $2, $3, $4, $5::text::regclass)";
    /// Claim one job, waiting up to `$2` seconds in the server.
    pub const GET: &str = "SELECT id, data, size, enqueued_at, schedule_at, expected_at \
                           FROM pq_get($1, make_interval(secs => $2), 1, $3::text::regclass, $4)";
    /// Ready jobs of a queue.
    pub const LEN: &str = "SELECT pq_len($1, $2::text::regclass)";
    /// Delete every job of a queue.
    pub const CLEAR: &str = "SELECT pq_clear($1, $2::text::regclass)";
    /// The SQLSTATE a failed client handler is recorded with: PL/pgSQL's `RAISE EXCEPTION`.
    pub const RAISE_EXCEPTION: &str = "P0001";
    /// Enqueue a task for a client handler: the extension writes the task's JSON.
    pub const PUT_TASK: &str = "SELECT pq_put_task($1, $2, $3, $4, $5, $6, $7, $8, \
                                $9::text::regclass, external => true, key => $10, \
                                backoff => $11, retry_max => $12)";
    /// Record a client task's failure (retry or fail it).
    pub const TASK_FAILED: &str = "SELECT pq_task_failed($1, $2, $3, $4::text::regclass)";
    /// Install the extension if needed.
    pub const CREATE_EXTENSION: &str = "CREATE EXTENSION IF NOT EXISTS pq";
    /// Whether a queue table is missing.
    pub const TABLE_MISSING: &str = "SELECT to_regclass($1) IS NULL";
    /// Create a queue table.
    pub const CREATE_TABLE: &str = "SELECT pq_create_table($1)";
    /// Perform SQL tasks, committing after each (the CLI's `work`).
    pub const WORK_LOOP: &str = "CALL pq_work_loop($1, NULL, $2, '60s', $3::text::regclass)";
    /// Pause a queue: `pq_pause(queue, tbl)`.
    pub const PAUSE: &str = "SELECT pq_pause($1, $2::text::regclass)";
    /// Resume a paused queue.
    pub const RESUME: &str = "SELECT pq_resume($1, $2::text::regclass)";
    /// Set (or with NULL remove) a queue's concurrency limit; the previous one.
    pub const SET_LIMIT: &str = "SELECT pq_set_limit($1, $3, $2::text::regclass)";
    /// Cancel a job by id.
    pub const CANCEL: &str = "SELECT pq_cancel($1, $2::text::regclass)";
    /// A job's status by id.
    pub const STATUS: &str = "SELECT pq_status($1, $2::text::regclass)";
    /// Create or replace a periodic job: name, cron, queue, data, table; its next run.
    pub const SCHEDULE: &str = "SELECT pq_schedule($1, $2, $3, $4, $5::text::regclass)";
    /// Remove a periodic job.
    pub const UNSCHEDULE: &str = "SELECT pq_unschedule($1)";
    /// Put the jobs of due periodic jobs.
    pub const RUN_SCHEDULES: &str = "SELECT pq_run_schedules()";
    /// Per-queue counts (the CLI's `stats`).
    pub const STATS: &str = "SELECT queue, ready, scheduled, in_flight, done, \
                             coalesce(oldest_ready_age::text, ''), cancelled, paused, \
                             concurrency_limit FROM pq_stats($1::text::regclass)";
}

/// How long `get` blocks by default, as Python pq's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Options of one put: when the job becomes ready, and when it is expected (its priority).
///
/// ```
/// use pq_client::Put;
/// let later = Put::default().schedule_at("5m").expected_at("1h");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Put {
    pub schedule_at: Option<When>,
    pub expected_at: Option<When>,
    /// A unique job's key: while a job of the queue with this key is pending, the put
    /// returns its id and inserts nothing.
    pub key: Option<String>,
}

impl Put {
    /// Not ready before then.
    pub fn schedule_at(mut self, when: impl Into<When>) -> Put {
        self.schedule_at = Some(when.into());
        self
    }

    /// Priority: earlier expectations are taken first.
    pub fn expected_at(mut self, when: impl Into<When>) -> Put {
        self.expected_at = Some(when.into());
        self
    }

    /// A unique job: while a job of the queue with this key is pending, the put returns
    /// that job's id and inserts nothing.
    ///
    /// ```
    /// let once = pq_client::Put::default().key("order-42");
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Put {
        self.key = Some(key.into());
        self
    }

    fn specs(&self) -> (Option<String>, Option<String>) {
        (
            self.schedule_at.as_ref().map(When::to_spec),
            self.expected_at.as_ref().map(When::to_spec),
        )
    }
}

/// A named queue (Python's `pq['apples']`) of payloads of type `T`.
pub type Queue<T = Value> = crate::handle::QueueOf<Pq, T>;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Enqueues a job, ready now; returns its id.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// let id = queue.put(&serde_json::json!({"kind": "Cox"}))?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn put(&self, data: &T) -> Result<i64> {
        self.put_with(data, Put::default())
    }

    /// Enqueues a job with a schedule or priority.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// use pq_client::Put;
    /// queue.put_with(&serde_json::json!({"kind": "Cox"}), Put::default().schedule_at("5m"))?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn put_with(&self, data: &T, opts: Put) -> Result<i64> {
        put(&mut *self.pq.conn()?, self, data, &opts)
    }

    /// Enqueues many jobs in one call; returns their ids in order.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// let ids = queue.put_many(&[serde_json::json!(1), serde_json::json!(2)], pq_client::Put::default())?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn put_many(&self, data: &[T], opts: Put) -> Result<Vec<i64>> {
        let values = data
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<Value>, _>>()?;
        let (s, e) = opts.specs();
        let table = self.pq.table_name();
        let rows = self.pq.conn()?.query_typed(
            sql::PUT_MANY,
            &[
                (&self.name, Type::TEXT),
                (&values, Type::JSONB_ARRAY),
                (&s, Type::TEXT),
                (&e, Type::TEXT),
                (&table, Type::TEXT),
            ],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes the next ready job, waiting up to one second (Python's `get()`); `None` if
    /// nothing became ready. The job is consumed: see [`Queue::transaction`] to work it
    /// atomically instead. The wait happens in the server, woken when a job is put.
    pub fn get(&self) -> Result<Option<Job<T>>> {
        self.get_timeout(DEFAULT_TIMEOUT)
    }

    /// Takes the next ready job, waiting up to `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<Job<T>>> {
        get(&mut *self.pq.conn()?, self, timeout, None)
    }

    /// Takes the next ready job without waiting.
    pub fn try_get(&self) -> Result<Option<Job<T>>> {
        self.get_timeout(Duration::ZERO)
    }

    /// Blocking iteration, as Python's `for job in queue`: each item waits up to one second
    /// and is `Ok(None)` when nothing came. It never ends by itself.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// for job in queue.iter() {
    ///     match job? {
    ///         Some(job) => println!("{job}"),
    ///         None => break, // nothing for a second
    ///     }
    /// }
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn iter(&self) -> Iter<T> {
        Iter {
            queue: self.clone(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Ready jobs (Python's `len(queue)`).
    // `is_empty` is below; clippy finds the async client's first (one generic type).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<i64> {
        Ok(self
            .pq
            .conn()?
            .query_typed(
                sql::LEN,
                &[
                    (&self.name, Type::TEXT),
                    (&self.pq.table_name(), Type::TEXT),
                ],
            )?
            .first()
            .map_or(0, |r| r.get(0)))
    }

    /// True when no job is ready.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Deletes every job of the queue; returns how many.
    pub fn clear(&self) -> Result<i64> {
        Ok(self
            .pq
            .conn()?
            .query_typed(
                sql::CLEAR,
                &[
                    (&self.name, Type::TEXT),
                    (&self.pq.table_name(), Type::TEXT),
                ],
            )?
            .first()
            .map_or(0, |r| r.get(0)))
    }

    /// Runs `f` in one transaction (Python's `with queue as cursor`): a job taken with
    /// [`Tx::get`], the work and its result commit together when `f` returns `Ok`, and roll
    /// back (returning the job to the queue) when it returns `Err` or panics.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// queue.transaction(|tx| {
    ///     if let Some(job) = tx.get()? {
    ///         let kind = job.data["kind"].as_str();
    ///         tx.execute("INSERT INTO eaten (kind) VALUES ($1)", &[(&kind, postgres::types::Type::TEXT)])?;
    ///     }
    ///     Ok::<_, pq_client::Error>(())
    /// })?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn transaction<R, E: From<crate::Error>>(
        &self,
        f: impl FnOnce(&mut Tx<'_, T>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = self.pq.conn()?;
        let tx = conn.transaction().map_err(crate::Error::from)?;
        let mut tx = Tx::new(tx, self.clone());
        // On Err the transaction is dropped uncommitted, which rolls it back; a panic unwinds
        // through the same drop.
        let result = f(&mut tx)?;
        tx.commit()?;
        Ok(result)
    }
}

/// Puts one job on any client or transaction.
pub(crate) fn put<T: Serialize>(
    c: &mut impl GenericClient,
    q: &Queue<T>,
    data: &T,
    opts: &Put,
) -> Result<i64> {
    let data = serde_json::to_value(data)?;
    let (s, e) = opts.specs();
    let table = q.pq.table_name();
    let rows = c.query_typed(
        sql::PUT,
        &[
            (&q.name, Type::TEXT),
            (&data, Type::JSONB),
            (&s, Type::TEXT),
            (&e, Type::TEXT),
            (&table, Type::TEXT),
            (&opts.key, Type::TEXT),
        ],
    )?;
    Ok(rows
        .first()
        .map(|r| r.get(0))
        .expect("pq_put returns the id"))
}

/// Claims one job on any client or transaction; `functions` restricts it to task handlers.
pub(crate) fn get<T>(
    c: &mut impl GenericClient,
    q: &Queue<T>,
    timeout: Duration,
    functions: Option<&[String]>,
) -> Result<Option<Job<T>>> {
    let secs = timeout.as_secs_f64();
    let functions = functions.map(|f| f.to_vec());
    let table = q.pq.table_name();
    let rows = c.query_typed(
        sql::GET,
        &[
            (&q.name, Type::TEXT),
            (&secs, Type::FLOAT8),
            (&table, Type::TEXT),
            (&functions, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(rows.first().map(Job::from_row))
}

/// Blocking iteration over a queue: see [`Queue::iter`].
pub struct Iter<T> {
    queue: Queue<T>,
    timeout: Duration,
}

impl<T> Iter<T> {
    /// Waits up to `timeout` per item instead of one second.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// for job in queue.iter().timeout(std::time::Duration::from_millis(200)).take(10) {
    ///     println!("{:?}", job?.map(|j| j.id));
    /// }
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<T> {
    type Item = Result<Option<Job<T>>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.queue.get_timeout(self.timeout))
    }
}
