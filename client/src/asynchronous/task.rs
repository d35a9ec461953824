//! Async tasks: named async handlers, enqueued with the extension's
//! `pq_put_task(..., external => true)` in the task shape Python pq uses, performed by
//! [`Tasks::work`] with retries recorded by `pq_task_failed`.
//!
//! As in the blocking client, a handler's name has no parentheses (`"eat"`): jobs whose
//! `function` is a SQL signature belong to the extension's `pq_work`, and a Rust worker
//! claims only jobs naming one of its registered handlers (`pq_get(..., functions => names)`).

use super::Queue;
use crate::queue::sql;
use crate::{Result, TaskCall};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tokio_postgres::types::Type;

type Handler =
    Arc<dyn Fn(TaskCall) -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

/// The async task handlers of one queue, and their workers. Cheap to clone (handlers are
/// shared), so several tokio tasks can work the same queue.
///
/// ```no_run
/// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
/// let mut tasks = pq.tasks("default");
/// tasks.register("eat", |(kind,): (String,)| async move {
///     println!("umm, {kind} apples taste good.");
///     Ok::<_, String>(())
/// });
/// tasks.call("eat").arg("Cox").schedule_at("1m").enqueue().await?;
/// tasks.work_burst().await?;
/// # Ok(()) }
/// ```
pub type Tasks = crate::handle::TasksOf<Queue, Handler>;

impl Tasks {
    /// Registers an async handler whose positional arguments decode as `A` (a tuple or a
    /// `Vec`).
    ///
    /// ```no_run
    /// # let mut tasks: pq_client::asynchronous::Tasks = todo!();
    /// tasks.register("eat", |(kind, n): (String, u32)| async move {
    ///     if n == 0 { return Err(format!("no {kind} apples")); }
    ///     Ok(())
    /// });
    /// ```
    pub fn register<A, E, F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        E: std::fmt::Display,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.register_call(name, move |call: TaskCall| {
            let f = f.clone();
            async move {
                let args = A::deserialize(Value::Array(call.args))
                    .map_err(|e| format!("bad args: {e}"))?;
                f(args).await.map_err(|e| e.to_string())
            }
        })
    }

    /// Registers an async handler given the whole [`TaskCall`] (job id, args and kwargs).
    ///
    /// ```no_run
    /// # let mut tasks: pq_client::asynchronous::Tasks = todo!();
    /// tasks.register_call("log", |call: pq_client::TaskCall| async move {
    ///     println!("job {}: {:?} {:?}", call.job_id, call.args, call.kwargs);
    ///     Ok::<_, String>(())
    /// });
    /// ```
    pub fn register_call<E, F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        E: std::fmt::Display,
        F: Fn(TaskCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    {
        self.insert_handler(
            name,
            Arc::new(move |c: TaskCall| f(c).map(|r| r.map_err(|e| e.to_string())).boxed()),
        )
    }

    /// Performs tasks forever, waiting for each next job (Python's `work()`); returns only
    /// on an error of the connection or the server (a failing task is not one).
    ///
    /// ```no_run
    /// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
    /// let worker = tokio::spawn(async move { tasks.work().await });
    /// # Ok(()) }
    /// ```
    pub async fn work(&self) -> Result<std::convert::Infallible> {
        loop {
            self.work_one().await?;
        }
    }

    /// Performs tasks until nothing is ready (Python's `work(burst=True)`); returns how many.
    ///
    /// ```no_run
    /// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
    /// println!("performed {} tasks", tasks.work_burst().await?);
    /// # Ok(()) }
    /// ```
    pub async fn work_burst(&self) -> Result<u64> {
        let mut n = 0;
        while self.work_one().await? {
            n += 1;
        }
        Ok(n)
    }

    /// Claims one task job naming a registered handler and performs it in one transaction:
    /// the claim commits with the handler's success, or the failure (an `Err` or a panic) is
    /// recorded by the extension's `pq_task_failed` (retry after `retry_in`, or failed for
    /// good). Returns false if no job came within the timeout.
    ///
    /// ```no_run
    /// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
    /// while tasks.work_one().await? {}
    /// # Ok(()) }
    /// ```
    pub async fn work_one(&self) -> Result<bool> {
        let names = self.names();
        let mut tx = self.queue.begin().await?;
        let Some(job) = tx.get_task(self.timeout, &names).await? else {
            tx.commit().await?;
            return Ok(false);
        };
        let (function, call) = TaskCall::of(&job);
        let outcome = match self.handlers.get(&function) {
            // A handler may panic making its future, or while it runs.
            Some(h) => match catch_unwind(AssertUnwindSafe(|| h(call))) {
                Ok(fut) => AssertUnwindSafe(fut)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| {
                        Err(format!("panicked: {}", crate::handle::panic_text(&p)))
                    }),
                Err(p) => Err(format!("panicked: {}", crate::handle::panic_text(&p))),
            },
            None => Err(format!("no handler named {function:?}")),
        };
        if let Err(message) = outcome {
            tx.query(
                sql::TASK_FAILED,
                &[
                    (&job.id, Type::INT8),
                    (&sql::RAISE_EXCEPTION, Type::TEXT),
                    (&message, Type::TEXT),
                    (&self.queue.pq.table_name(), Type::TEXT),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// One task call being built; [`Call::enqueue`] puts it.
///
/// ```no_run
/// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
/// tasks.call("eat").arg("Fuji").expected_at("2m").max_retries(3).enqueue().await?;
/// # Ok(()) }
/// ```
pub type Call<'t> = crate::handle::CallOf<'t, Tasks>;

impl Call<'_> {
    /// Enqueues the call as a task job with `pq_put_task(..., external => true)`; returns
    /// its id.
    ///
    /// ```no_run
    /// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
    /// let id = tasks.call("eat").arg("Cox").enqueue().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue(self) -> Result<i64> {
        let queue = &self.tasks.queue;
        let (pq, name) = (&queue.pq, queue.name.clone());
        let args = self.checked()?.task_args(name, pq.table_name());
        Ok(pq
            .conn()
            .await?
            .query_typed_one(sql::PUT_TASK, &args.params())
            .await?
            .get(0))
    }
}
