//! Operating queues from Rust: pause and resume, concurrency limits, cancel and status,
//! periodic jobs. Each call is one call of the extension's function of the same name.

use crate::handle::Param;
use crate::queue::sql;
use crate::{Pq, Queue, Result};
use postgres::types::{FromSqlOwned, Type};
use serde::Serialize;
use std::time::SystemTime;

impl Pq {
    /// Runs `sql` with `params`; the first column of its one row.
    fn one<R: FromSqlOwned>(&self, sql: &str, params: &[Param<'_>]) -> Result<R> {
        Ok(self.conn()?.query_typed(sql, params)?[0].get(0))
    }

    /// Cancels job `id` (`pq_cancel`): a pending job never runs; a running claim of it is
    /// cancelled and the job does not come back. False if it is not pending.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// let cancelled = pq.cancel(42)?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn cancel(&self, id: i64) -> Result<bool> {
        let t = self.table_name();
        self.one(sql::CANCEL, &[(&id, Type::INT8), (&t, Type::TEXT)])
    }

    /// Job `id`'s status (`pq_status`): `ready`, `scheduled`, `in_flight`, `done`, `failed`
    /// or `cancelled`; `None` if there is no such job.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// assert_eq!(pq.status(42)?.as_deref(), Some("done"));
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn status(&self, id: i64) -> Result<Option<String>> {
        let t = self.table_name();
        self.one(sql::STATUS, &[(&id, Type::INT8), (&t, Type::TEXT)])
    }

    /// Removes periodic job `name` (`pq_unschedule`); true if it existed.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// pq.unschedule("nightly-report")?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn unschedule(&self, name: &str) -> Result<bool> {
        self.one(sql::UNSCHEDULE, &[(&name, Type::TEXT)])
    }

    /// Puts the jobs of every due periodic job (`pq_run_schedules`), for clusters without the
    /// maintenance worker; returns how many.
    pub fn run_schedules(&self) -> Result<i32> {
        self.one(sql::RUN_SCHEDULES, &[])
    }
}

impl<T> Queue<T> {
    /// Pauses the queue (`pq_pause`): it accepts puts, nothing takes its jobs. True if it
    /// was not paused.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// queue.pause()?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn pause(&self) -> Result<bool> {
        let t = self.pq.table_name();
        self.pq
            .one(sql::PAUSE, &[(&self.name, Type::TEXT), (&t, Type::TEXT)])
    }

    /// Resumes the queue (`pq_resume`) and wakes its blocked getters. True if it was paused.
    pub fn resume(&self) -> Result<bool> {
        let t = self.pq.table_name();
        self.pq
            .one(sql::RESUME, &[(&self.name, Type::TEXT), (&t, Type::TEXT)])
    }

    /// At most `n` of the queue's jobs claimed at once, across all sessions (`pq_set_limit`);
    /// `None` removes the limit. Returns the previous limit.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// queue.set_limit(Some(2))?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn set_limit(&self, n: Option<i32>) -> Result<Option<i32>> {
        let t = self.pq.table_name();
        let params: [Param<'_>; 3] = [(&self.name, Type::TEXT), (&t, Type::TEXT), (&n, Type::INT4)];
        self.pq.one(sql::SET_LIMIT, &params)
    }

    /// Puts `data` in this queue at every tick of `cron` (5 fields, UTC), as periodic job
    /// `name` (`pq_schedule`); returns its next run.
    ///
    /// ```no_run
    /// # let queue: pq_client::Queue = todo!();
    /// queue.schedule("nightly-report", "0 3 * * *", &serde_json::json!({"kind": "daily"}))?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn schedule(&self, name: &str, cron: &str, data: &impl Serialize) -> Result<SystemTime> {
        let data = serde_json::to_value(data)?;
        let t = self.pq.table_name();
        let params: [Param<'_>; 5] = [
            (&name, Type::TEXT),
            (&cron, Type::TEXT),
            (&self.name, Type::TEXT),
            (&data, Type::JSONB),
            (&t, Type::TEXT),
        ];
        self.pq.one(sql::SCHEDULE, &params)
    }
}
