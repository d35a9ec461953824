//! Tasks: named handlers, enqueued as jobs in the task shape the extension and Python pq use,
//! performed by [`Tasks::work`] with retries.
//!
//! A Rust handler's name has no parentheses (`"eat"`, like Python's `module.eat`): jobs whose
//! `function` is a SQL signature (`public.eat(text)`) belong to the extension's `pq_work`, and
//! a Rust worker only ever claims jobs naming one of its registered handlers.

use crate::queue::{get, sql};
use crate::{Queue, Result, When};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// What a handler is called with: the job's id, positional and named arguments.
///
/// ```no_run
/// # let mut tasks: pq_client::Tasks = todo!();
/// tasks.register_call("log", |call: &pq_client::TaskCall| {
///     println!("job {}: {:?} {:?}", call.job_id, call.args, call.kwargs);
///     Ok::<_, String>(())
/// });
/// ```
#[derive(Clone, Debug)]
pub struct TaskCall {
    pub job_id: i64,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
}

impl TaskCall {
    /// The function a task job names, and the call to make of it.
    pub(crate) fn of(job: &crate::Job) -> (String, TaskCall) {
        let function = job.data["function"].as_str().unwrap_or_default();
        let call = TaskCall {
            job_id: job.id,
            args: job.data["args"].as_array().cloned().unwrap_or_default(),
            kwargs: job.data["kwargs"].as_object().cloned().unwrap_or_default(),
        };
        (function.to_string(), call)
    }
}

type Handler = Arc<dyn Fn(&TaskCall) -> std::result::Result<(), String> + Send + Sync>;

/// Defaults for enqueued tasks (Python's `@queue.task(schedule_at=..., max_retries=...)`).
///
/// ```no_run
/// # let pq: pq_client::Pq = todo!();
/// use pq_client::TaskOptions;
/// let tasks = pq.tasks("default").defaults(TaskOptions {
///     max_retries: 2, retry_in: "10s".into(), ..TaskOptions::default()
/// });
/// ```
#[derive(Clone, Debug)]
pub struct TaskOptions {
    pub schedule_at: Option<When>,
    pub expected_at: Option<When>,
    pub max_retries: u32,
    pub retry_in: String,
    /// How retries wait: `retry_in` each time, or exponentially longer.
    pub backoff: Backoff,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            schedule_at: None,
            expected_at: None,
            max_retries: 0,
            retry_in: "30s".into(),
            backoff: Backoff::Fixed,
        }
    }
}

/// How a failed task's retries wait (the extension's `pq_put_task(..., backoff =>)`).
///
/// ```
/// use pq_client::{Backoff, TaskOptions};
/// let opts = TaskOptions {
///     max_retries: 5, retry_in: "10s".into(),
///     backoff: Backoff::Exponential { max: Some("10m".into()) },
///     ..TaskOptions::default()
/// };
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Backoff {
    /// Every retry waits `retry_in`, as in Python pq.
    #[default]
    Fixed,
    /// Retry k waits `retry_in × 2^k`, at most `max` (default one hour), with jitter.
    Exponential { max: Option<String> },
}

/// The task handlers of one queue, and their workers.
///
/// ```no_run
/// # let pq: pq_client::Pq = todo!();
/// let mut tasks = pq.tasks("default");
/// tasks.register("eat", |(kind,): (String,)| {
///     println!("umm, {kind} apples taste good.");
///     Ok::<_, String>(())
/// });
/// tasks.call("eat").arg("Cox").schedule_at("1m").enqueue()?;
/// tasks.work_burst()?;
/// # Ok::<(), pq_client::Error>(())
/// ```
pub type Tasks = crate::handle::TasksOf<Queue, Handler>;

impl Tasks {
    /// Registers a handler whose positional arguments decode as `A` (a tuple or a
    /// `Vec`): `|(kind,): (String,)| ...`.
    pub fn register<A, E, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        E: std::fmt::Display,
        F: Fn(A) -> std::result::Result<(), E> + Send + Sync + 'static,
    {
        self.register_call(name, move |call: &TaskCall| {
            let args = A::deserialize(Value::Array(call.args.clone()))
                .map_err(|e| format!("bad args: {e}"))?;
            f(args).map_err(|e| e.to_string())
        })
    }

    /// Registers a handler given the whole [`TaskCall`] (job id, args and kwargs).
    pub fn register_call<E, F>(&mut self, name: &str, f: F) -> &mut Self
    where
        E: std::fmt::Display,
        F: Fn(&TaskCall) -> std::result::Result<(), E> + Send + Sync + 'static,
    {
        self.insert_handler(
            name,
            Arc::new(move |c: &TaskCall| f(c).map_err(|e| e.to_string())),
        )
    }

    /// Performs tasks forever, waiting for each next job (Python's `work()`); returns only
    /// on an error of the connection or the server (a failing task is not one).
    pub fn work(&self) -> Result<std::convert::Infallible> {
        loop {
            self.work_one()?;
        }
    }

    /// Performs tasks until nothing is ready (Python's `work(burst=True)`); returns how many.
    pub fn work_burst(&self) -> Result<u64> {
        let mut n = 0;
        while self.work_one()? {
            n += 1;
        }
        Ok(n)
    }

    /// Claims one task job naming a registered handler and performs it in one transaction:
    /// the claim commits with the handler's success, or the failure is recorded by the
    /// extension's `pq_task_failed` (retry after `retry_in`, or failed for good). Returns
    /// false if no job came within the timeout.
    pub fn work_one(&self) -> Result<bool> {
        let names = self.names();
        let mut conn = self.queue.pq.conn()?;
        let mut tx = conn.transaction()?;
        let Some(job) = get(&mut tx, &self.queue, self.timeout, Some(&names))? else {
            tx.commit()?;
            return Ok(false);
        };
        let (function, call) = TaskCall::of(&job);
        let handler = self.handlers.get(&function).cloned();
        let outcome = match handler {
            Some(h) => catch_unwind(AssertUnwindSafe(|| h(&call)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", crate::handle::panic_text(&p)))),
            None => Err(format!("no handler named {function:?}")),
        };
        if let Err(message) = outcome {
            let table = self.queue.pq.table_name();
            tx.query_typed(
                sql::TASK_FAILED,
                &[
                    (&job.id, postgres::types::Type::INT8),
                    (&sql::RAISE_EXCEPTION, postgres::types::Type::TEXT),
                    (&message, postgres::types::Type::TEXT),
                    (&table, postgres::types::Type::TEXT),
                ],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }
}

/// One task call being built; [`Call::enqueue`] puts it.
pub type Call<'t> = crate::handle::CallOf<'t, Tasks>;

impl Call<'_> {
    /// Enqueues the call as a task job with `pq_put_task(..., external => true)`; returns
    /// its id.
    pub fn enqueue(self) -> Result<i64> {
        let queue = &self.tasks.queue;
        let (pq, name) = (&queue.pq, queue.name.clone());
        let args = self.checked()?.task_args(name, pq.table_name());
        Ok(pq.conn()?.query_typed(sql::PUT_TASK, &args.params())?[0].get(0))
    }
}
