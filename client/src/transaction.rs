//! Transactions: take a job, work it and write its result atomically.

use crate::queue::{get, put};
use crate::{Job, Put, Queue, Result};
use postgres::types::ToSql;
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

    /// Runs one of your statements in this transaction.
    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.tx.execute(sql, params)?)
    }

    /// Runs one of your queries in this transaction.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        Ok(self.tx.query(sql, params)?)
    }

    /// The underlying transaction, for anything else.
    pub fn client(&mut self) -> &mut postgres::Transaction<'c> {
        &mut self.tx
    }

    pub(crate) fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}
