//! Async queues: put, get, iteration as a `Stream`. Each call is one unnamed statement
//! calling the extension's SQL function (the blocking client's SQL, with parameter types).

use super::{Pq, Tx};
use crate::queue::{sql, DEFAULT_TIMEOUT};
use crate::{Job, Put, Result, When};
use futures::future::BoxFuture;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// A named queue (Python's `pq['apples']`) of payloads of type `T`, async.
///
/// ```no_run
/// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
/// let queue = pq.queue("apples");
/// queue.put(&serde_json::json!({"kind": "Cox"})).await?;
/// assert_eq!(queue.len().await?, 1);
/// # Ok(()) }
/// ```
pub type Queue<T = Value> = crate::handle::QueueOf<Pq, T>;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Enqueues a job, ready now; returns its id.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// let id = queue.put(&serde_json::json!({"kind": "Cox"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put(&self, data: &T) -> Result<i64> {
        self.put_with(data, Put::default()).await
    }

    /// Enqueues a job with a schedule or priority.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// use pq_client::Put;
    /// queue
    ///     .put_with(&serde_json::json!({"kind": "Cox"}), Put::default().schedule_at("5m"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_with(&self, data: &T, opts: Put) -> Result<i64> {
        let data = serde_json::to_value(data)?;
        put(&*self.pq.conn().await?, self, data, &opts).await
    }

    /// Enqueues many jobs in one statement (`pq_put_many`); returns their ids in order.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// use serde_json::json;
    /// let ids = queue.put_many(&[json!(1), json!(2)], pq_client::Put::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_many(&self, data: &[T], opts: Put) -> Result<Vec<i64>> {
        let values = data
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<Value>, _>>()?;
        let (s, e) = specs(&opts);
        let rows = self
            .pq
            .conn()
            .await?
            .query_typed(
                sql::PUT_MANY,
                &[
                    (&self.name, Type::TEXT),
                    (&values, Type::JSONB_ARRAY),
                    (&s, Type::TEXT),
                    (&e, Type::TEXT),
                    (&self.pq.table_name(), Type::TEXT),
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes the next ready job, waiting up to one second (Python's `get()`); `None` if
    /// nothing became ready. The wait happens in the server, woken when a job is put: the
    /// executor runs other tasks meanwhile.
    ///
    /// The job is consumed when the server answers: a `get` future dropped while it waits
    /// may lose the job it then takes. To bound the wait, pass a timeout
    /// ([`Queue::get_timeout`]) rather than racing the future; to keep the job until the
    /// work is done, take it in a transaction ([`Queue::begin`]).
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// if let Some(job) = queue.get().await? {
    ///     println!("{job}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<Option<Job<T>>> {
        self.get_timeout(DEFAULT_TIMEOUT).await
    }

    /// Takes the next ready job, waiting up to `timeout` (in the server).
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// let job = queue.get_timeout(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_timeout(&self, timeout: Duration) -> Result<Option<Job<T>>> {
        get(&*self.pq.conn().await?, self, timeout, None).await
    }

    /// Takes the next ready job without waiting.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// while let Some(job) = queue.try_get().await? {
    ///     println!("{job}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_get(&self) -> Result<Option<Job<T>>> {
        self.get_timeout(Duration::ZERO).await
    }

    /// Iteration as a [`futures::Stream`], as Python's `for job in queue`: each item waits
    /// up to one second and is `Ok(None)` when nothing came. It never ends by itself.
    ///
    /// The pending `get` lives in the stream, so `stream.next()` may be raced (in
    /// `tokio::select!`) without losing a job; dropping the stream itself while an item is
    /// pending may lose that job.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// use futures::StreamExt;
    /// let mut jobs = queue.iter();
    /// while let Some(job) = jobs.next().await {
    ///     match job? {
    ///         Some(job) => println!("{job}"),
    ///         None => break, // nothing for a second
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn iter(&self) -> Iter<T> {
        Iter {
            queue: self.clone(),
            timeout: DEFAULT_TIMEOUT,
            pending: None,
        }
    }

    /// Ready jobs (Python's `len(queue)`).
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// println!("{} apples", queue.len().await?);
    /// # Ok(()) }
    /// ```
    pub async fn len(&self) -> Result<i64> {
        self.scalar(sql::LEN).await
    }

    /// True when no job is ready.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// if queue.is_empty().await? { println!("no apples"); }
    /// # Ok(()) }
    /// ```
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Deletes every job of the queue; returns how many.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// let deleted = queue.clear().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<i64> {
        self.scalar(sql::CLEAR).await
    }

    async fn scalar(&self, sql: &str) -> Result<i64> {
        Ok(self
            .pq
            .conn()
            .await?
            .query_typed_one(
                sql,
                &[
                    (&self.name, Type::TEXT),
                    (&self.pq.table_name(), Type::TEXT),
                ],
            )
            .await?
            .get(0))
    }

    /// Starts a transaction on a connection of its own (Python's `with queue as cursor`):
    /// jobs taken with [`Tx::get`] stay claimed until [`Tx::commit`], and return to the
    /// queue on [`Tx::rollback`] or when the `Tx` is dropped (an error, a panic, a
    /// cancelled future).
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// use tokio_postgres::types::Type;
    /// let mut tx = queue.begin().await?;
    /// if let Some(job) = tx.get().await? {
    ///     let kind = job.data["kind"].as_str().unwrap_or_default().to_string();
    ///     tx.execute("INSERT INTO eaten (kind) VALUES ($1)", &[(&kind, Type::TEXT)]).await?;
    /// }
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<Tx<T>> {
        Tx::begin(self.clone()).await
    }

    /// Runs `f` in one transaction, like the blocking [`crate::Queue::transaction`]: a job
    /// taken with [`Tx::get`], the work and its result commit together when `f`'s future
    /// gives `Ok`, and roll back (returning the job to the queue) when it gives `Err`,
    /// panics or is dropped. `f` returns a boxed future borrowing the `Tx`.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// use tokio_postgres::types::Type;
    /// queue
    ///     .transaction(|tx| Box::pin(async move {
    ///         if let Some(job) = tx.get().await? {
    ///             let kind = job.data["kind"].as_str().unwrap_or_default().to_string();
    ///             tx.execute("INSERT INTO eaten (kind) VALUES ($1)", &[(&kind, Type::TEXT)])
    ///                 .await?;
    ///         }
    ///         Ok::<_, pq_client::Error>(())
    ///     }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<R, E, F>(&self, f: F) -> Result<R, E>
    where
        E: From<crate::Error>,
        F: for<'t> FnOnce(&'t mut Tx<T>) -> BoxFuture<'t, Result<R, E>>,
    {
        let mut tx = self.begin().await?;
        // On Err the Tx is dropped uncommitted, which rolls it back; a panic unwinds
        // through the same drop.
        let result = f(&mut tx).await?;
        tx.commit().await?;
        Ok(result)
    }
}

/// `(schedule_at, expected_at)` as the extension's text specs.
pub(super) fn specs(opts: &Put) -> (Option<String>, Option<String>) {
    (
        opts.schedule_at.as_ref().map(When::to_spec),
        opts.expected_at.as_ref().map(When::to_spec),
    )
}

/// Puts one job on a connection (in a transaction or not).
pub(crate) async fn put<T>(c: &Client, q: &Queue<T>, data: Value, opts: &Put) -> Result<i64> {
    let (s, e) = specs(opts);
    Ok(c.query_typed_one(
        sql::PUT,
        &[
            (&q.name, Type::TEXT),
            (&data, Type::JSONB),
            (&s, Type::TEXT),
            (&e, Type::TEXT),
            (&q.pq.table_name(), Type::TEXT),
            (&opts.key, Type::TEXT),
        ],
    )
    .await?
    .get(0))
}

/// Claims one job on a connection; `functions` restricts it to task handlers.
pub(crate) async fn get<T>(
    c: &Client,
    q: &Queue<T>,
    timeout: Duration,
    functions: Option<&[String]>,
) -> Result<Option<Job<T>>> {
    let secs = timeout.as_secs_f64();
    let rows = c
        .query_typed(
            sql::GET,
            &[
                (&q.name, Type::TEXT),
                (&secs, Type::FLOAT8),
                (&q.pq.table_name(), Type::TEXT),
                (&functions, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    Ok(rows.first().map(Job::from_row))
}

/// Iteration over a queue as a [`futures::Stream`]: see [`Queue::iter`].
pub struct Iter<T> {
    queue: Queue<T>,
    timeout: Duration,
    pending: Option<BoxFuture<'static, Result<Option<Job<T>>>>>,
}

impl<T> Iter<T> {
    /// Waits up to `timeout` per item instead of one second.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// use futures::StreamExt;
    /// let jobs = queue.iter().timeout(std::time::Duration::from_millis(200)).take(10);
    /// futures::pin_mut!(jobs);
    /// while let Some(job) = jobs.next().await {
    ///     println!("{:?}", job?.map(|j| j.id));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<T: Serialize + DeserializeOwned + 'static> futures::Stream for Iter<T> {
    type Item = Result<Option<Job<T>>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let pending = this.pending.get_or_insert_with(|| {
            let queue = this.queue.clone();
            let timeout = this.timeout;
            Box::pin(async move { queue.get_timeout(timeout).await })
        });
        let item = futures::ready!(pending.as_mut().poll(cx));
        this.pending = None;
        Poll::Ready(Some(item))
    }
}
