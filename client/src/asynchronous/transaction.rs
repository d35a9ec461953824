//! Async transactions: take a job, work it and write its result atomically.

use super::queue::{get, put};
use super::Queue;
use crate::{Job, Put, Result};
use deadpool_postgres::Object;
use futures::{FutureExt, TryStreamExt};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

/// A transaction on a pooled connection of its own, from [`Queue::begin`] or given to
/// [`Queue::transaction`]'s closure. Jobs taken here are claimed until it ends; your own
/// statements run in it too. It owns its connection, so it is `'static` and `Send`: it can
/// move into a spawned task. Dropped without [`Tx::commit`], it rolls back.
///
/// ```no_run
/// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
/// let mut tx = queue.begin().await?;
/// let job = tx.get().await?;
/// tx.rollback().await?; // the job is back in the queue
/// # Ok(()) }
/// ```
pub struct Tx<T> {
    conn: Object,
    queue: Queue<T>,
    open: bool,
}

impl<T> Tx<T> {
    /// `BEGIN` on a connection of the pool. The `Tx` exists before `BEGIN` is sent, so a
    /// cancelled `begin` still sends its `ROLLBACK`.
    pub(crate) async fn begin(queue: Queue<T>) -> Result<Tx<T>> {
        let conn = queue.pq.conn().await?;
        let tx = Tx {
            conn,
            queue,
            open: true,
        };
        tx.conn.batch_execute("BEGIN").await?;
        Ok(tx)
    }

    /// Commits: the jobs taken are consumed and your statements kept.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// let mut tx = queue.begin().await?;
    /// tx.put(&serde_json::json!({"kind": "Cox"})).await?;
    /// tx.commit().await?; // now getters see it
    /// # Ok(()) }
    /// ```
    pub async fn commit(mut self) -> Result<()> {
        self.end("COMMIT").await
    }

    /// Rolls back: the jobs taken return to the queue. Dropping the `Tx` does the same.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// let mut tx = queue.begin().await?;
    /// let _job = tx.get().await?;
    /// tx.rollback().await?;
    /// # Ok(()) }
    /// ```
    pub async fn rollback(mut self) -> Result<()> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, statement: &str) -> Result<()> {
        // Sent on the first poll: from then on Drop must not roll back.
        let result = self.conn.batch_execute(statement);
        self.open = false;
        Ok(result.await?)
    }

    /// Runs one of your statements in this transaction, unnamed with its parameter types
    /// (as `query_typed`); returns how many rows it affected.
    ///
    /// ```no_run
    /// # async fn f(mut tx: pq_client::asynchronous::Tx<serde_json::Value>) -> pq_client::Result<()> {
    /// use tokio_postgres::types::Type;
    /// tx.execute("INSERT INTO eaten (kind) VALUES ($1)", &[(&"Cox", Type::TEXT)]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64> {
        let rows = self
            .conn
            .query_typed_raw(sql, params.iter().map(|(p, t)| (*p, t.clone())))
            .await?;
        futures::pin_mut!(rows);
        while rows.try_next().await?.is_some() {}
        Ok(rows.rows_affected().unwrap_or(0))
    }

    /// Runs one of your queries in this transaction, unnamed with its parameter types.
    ///
    /// ```no_run
    /// # async fn f(mut tx: pq_client::asynchronous::Tx<serde_json::Value>) -> pq_client::Result<()> {
    /// use tokio_postgres::types::Type;
    /// let rows = tx.query("SELECT count(*) FROM eaten WHERE kind = $1", &[(&"Cox", Type::TEXT)]).await?;
    /// let n: i64 = rows[0].get(0);
    /// # Ok(()) }
    /// ```
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        Ok(self.conn.query_typed(sql, params).await?)
    }

    /// The connection, inside the transaction, for anything else (use `query_typed` to
    /// stay PgBouncer-friendly; do not end the transaction on it).
    ///
    /// ```no_run
    /// # async fn f(mut tx: pq_client::asynchronous::Tx<serde_json::Value>) -> pq_client::Result<()> {
    /// tx.client().batch_execute("SET LOCAL statement_timeout = '5s'").await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&mut self) -> &Client {
        &self.conn
    }
}

impl<T: Serialize + DeserializeOwned> Tx<T> {
    /// Claims the next ready job for this transaction, without waiting.
    ///
    /// ```no_run
    /// # async fn f(mut tx: pq_client::asynchronous::Tx<serde_json::Value>) -> pq_client::Result<()> {
    /// if let Some(job) = tx.get().await? { println!("{job}"); }
    /// # Ok(()) }
    /// ```
    pub async fn get(&mut self) -> Result<Option<Job<T>>> {
        self.get_timeout(Duration::ZERO).await
    }

    /// Claims the next ready job, waiting up to `timeout` (in the server).
    ///
    /// ```no_run
    /// # async fn f(mut tx: pq_client::asynchronous::Tx<serde_json::Value>) -> pq_client::Result<()> {
    /// let job = tx.get_timeout(std::time::Duration::from_secs(2)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_timeout(&mut self, timeout: Duration) -> Result<Option<Job<T>>> {
        get(&self.conn, &self.queue, timeout, None).await
    }

    /// Claims a task job naming one of `functions` (for [`super::Tasks`]).
    pub(crate) async fn get_task(
        &mut self,
        timeout: Duration,
        functions: &[String],
    ) -> Result<Option<Job<T>>> {
        get(&self.conn, &self.queue, timeout, Some(functions)).await
    }

    /// Enqueues a job in this transaction: visible to getters when it commits.
    ///
    /// ```no_run
    /// # async fn f(mut tx: pq_client::asynchronous::Tx<serde_json::Value>) -> pq_client::Result<()> {
    /// let id = tx.put(&serde_json::json!({"kind": "Cox"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put(&mut self, data: &T) -> Result<i64> {
        let data = serde_json::to_value(data)?;
        put(&self.conn, &self.queue, data, &Put::default()).await
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        if self.open {
            // As tokio_postgres::Transaction does: the first poll queues the ROLLBACK on the
            // connection (after anything still in flight); its answer is not awaited. The
            // connection then goes back to the pool, and its next user's statements follow
            // the ROLLBACK.
            let _ = self.conn.batch_execute("ROLLBACK").now_or_never();
        }
    }
}
