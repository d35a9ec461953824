//! Operating queues, async: the blocking client's verbs (see `crate::operations`).

use super::{Pq, Queue};
use crate::handle::Param;
use crate::queue::sql;
use crate::Result;
use serde::Serialize;
use std::time::SystemTime;
use tokio_postgres::types::{FromSqlOwned, Type};

impl Pq {
    /// Runs `sql` with `params`; the first column of its one row.
    async fn one<R: FromSqlOwned>(&self, sql: &str, params: &[Param<'_>]) -> Result<R> {
        Ok(self
            .conn()
            .await?
            .query_typed_one(sql, params)
            .await?
            .get(0))
    }

    /// Cancels job `id` (`pq_cancel`); false if it is not pending.
    ///
    /// ```no_run
    /// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
    /// pq.cancel(42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, id: i64) -> Result<bool> {
        let t = self.table_name().to_string();
        self.one(sql::CANCEL, &[(&id, Type::INT8), (&t, Type::TEXT)])
            .await
    }

    /// Job `id`'s status (`pq_status`); `None` if there is no such job.
    pub async fn status(&self, id: i64) -> Result<Option<String>> {
        let t = self.table_name().to_string();
        self.one(sql::STATUS, &[(&id, Type::INT8), (&t, Type::TEXT)])
            .await
    }

    /// Removes periodic job `name` (`pq_unschedule`); true if it existed.
    pub async fn unschedule(&self, name: &str) -> Result<bool> {
        self.one(sql::UNSCHEDULE, &[(&name, Type::TEXT)]).await
    }

    /// Puts the jobs of every due periodic job (`pq_run_schedules`); returns how many.
    pub async fn run_schedules(&self) -> Result<i32> {
        self.one(sql::RUN_SCHEDULES, &[]).await
    }
}

impl<T> Queue<T> {
    /// Pauses the queue (`pq_pause`); true if it was not paused.
    ///
    /// ```no_run
    /// # async fn f(queue: pq_client::asynchronous::Queue) -> pq_client::Result<()> {
    /// queue.pause().await?;
    /// queue.resume().await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause(&self) -> Result<bool> {
        let t = self.pq.table_name().to_string();
        self.pq
            .one(sql::PAUSE, &[(&self.name, Type::TEXT), (&t, Type::TEXT)])
            .await
    }

    /// Resumes the queue (`pq_resume`); true if it was paused.
    pub async fn resume(&self) -> Result<bool> {
        let t = self.pq.table_name().to_string();
        self.pq
            .one(sql::RESUME, &[(&self.name, Type::TEXT), (&t, Type::TEXT)])
            .await
    }

    /// Sets the queue's concurrency limit (`pq_set_limit`; `None`: no limit); the previous.
    pub async fn set_limit(&self, n: Option<i32>) -> Result<Option<i32>> {
        let t = self.pq.table_name().to_string();
        let params: [Param<'_>; 3] = [(&self.name, Type::TEXT), (&t, Type::TEXT), (&n, Type::INT4)];
        self.pq.one(sql::SET_LIMIT, &params).await
    }

    /// Puts `data` in this queue at every tick of `cron`, as periodic job `name`
    /// (`pq_schedule`); returns its next run.
    pub async fn schedule(
        &self,
        name: &str,
        cron: &str,
        data: &impl Serialize,
    ) -> Result<SystemTime> {
        let data = serde_json::to_value(data)?;
        let t = self.pq.table_name().to_string();
        let params: [Param<'_>; 5] = [
            (&name, Type::TEXT),
            (&cron, Type::TEXT),
            (&self.name, Type::TEXT),
            (&data, Type::JSONB),
            (&t, Type::TEXT),
        ];
        self.pq.one(sql::SCHEDULE, &params).await
    }
}
