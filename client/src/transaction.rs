//! Transactions: take a job, work it and write its result atomically.

use crate::queue::{get, put};
use crate::{Job, Put, Queue, Result};
use postgres::types::{ToSql, Type};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

/// A transaction on a queue's connection, given to [`Queue::transaction`]'s closure. Jobs
/// taken here are claimed until it ends; your own statements run in it too.
pub struct Tx<'c, T> {
    tx: postgres::Transaction<'c>,
    queue: Queue<T>,
}

impl<'c, T: Serialize + DeserializeOwned> Tx<'c, T> {
    pub(crate) fn new(tx: postgres::Transaction<'c>, queue: Queue<T>) -> Self {
        Tx { tx, queue }
    }

    /// Claims the next ready job for this transaction, without waiting.
    pub fn get(&mut self) -> Result<Option<Job<T>>> {
        self.get_timeout(Duration::ZERO)
    }

    /// Claims the next ready job, waiting up to `timeout`.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<Option<Job<T>>> {
        get(&mut self.tx, &self.queue, timeout, None)
    }

    /// Enqueues a job in this transaction: visible to getters when it commits.
    pub fn put(&mut self, data: &T) -> Result<i64> {
        put(&mut self.tx, &self.queue, data, &Put::default())
    }

    /// Runs one of your statements in this transaction; parameters come with their types, so
    /// it is sent as one unnamed statement (safe behind PgBouncer's transaction pooling, where a
    /// named prepared statement can collide with another client's). Returns the rows it
    /// affected or returned.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// use postgres::types::Type;
    /// queue.transaction(|tx| {
    ///     tx.execute("INSERT INTO eaten (kind) VALUES ($1)", &[(&"Cox", Type::TEXT)])?;
    ///     Ok::<_, pq_client::Error>(())
    /// })?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn execute(&mut self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<u64> {
        let mut rows = self.tx.query_typed_raw(sql, params.iter().cloned())?;
        while postgres::fallible_iterator::FallibleIterator::next(&mut rows)?.is_some() {}
        Ok(rows.rows_affected().unwrap_or(0))
    }

    /// Runs one of your queries in this transaction, parameters with their types (one unnamed
    /// statement, as [`Tx::execute`]).
    ///
    /// ```no_run
    /// # let mut tx: pq_client::Tx<'_, serde_json::Value> = todo!();
    /// let rows = tx.query("SELECT count(*) FROM eaten WHERE kind = $1", &[(&"Cox", postgres::types::Type::TEXT)])?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn query(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<postgres::Row>> {
        Ok(self.tx.query_typed(sql, params)?)
    }

    /// The underlying transaction, for anything else. Behind PgBouncer, use its `query_typed`
    /// methods: its `query`/`execute` prepare named statements.
    pub fn client(&mut self) -> &mut postgres::Transaction<'c> {
        &mut self.tx
    }

    pub(crate) fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}
