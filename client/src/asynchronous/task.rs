//! Async tasks: named async handlers, enqueued with the extension's
//! `pq_put_task(..., external => true)` in the task shape Python pq uses, performed by
//! [`Tasks::work`] with retries recorded by `pq_task_failed`.
//!
//! As in the blocking client, a handler's name has no parentheses (`"eat"`): jobs whose
//! `function` is a SQL signature belong to the extension's `pq_work`, and a Rust worker
//! claims only jobs naming one of its registered handlers (`pq_get(..., functions => names)`).

use super::queue::specs;
use super::Queue;
use crate::queue::sql;
use crate::{Put, Result, TaskCall, TaskOptions};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::Type;

/// `pq_put_task` for a client handler: the extension writes the task's JSON.
const PUT_TASK: &str = "SELECT pq_put_task($1, $2, $3, $4, $5, $6, $7, $8, \
                        $9::text::regclass, external => true)";

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
#[derive(Clone)]
pub struct Tasks {
    queue: Queue,
    handlers: HashMap<String, Handler>,
    defaults: TaskOptions,
    timeout: Duration,
}

impl Tasks {
    pub(crate) fn new(queue: Queue) -> Tasks {
        Tasks {
            queue,
            handlers: HashMap::new(),
            defaults: TaskOptions::default(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Sets the defaults of every task enqueued from here.
    ///
    /// ```no_run
    /// # let pq: pq_client::asynchronous::Pq = todo!();
    /// use pq_client::TaskOptions;
    /// let tasks = pq.tasks("default").defaults(TaskOptions {
    ///     max_retries: 2, retry_in: "10s".into(), ..TaskOptions::default()
    /// });
    /// ```
    pub fn defaults(mut self, defaults: TaskOptions) -> Tasks {
        self.defaults = defaults;
        self
    }

    /// How long `work` waits (in the server) for each next job; default one second.
    ///
    /// ```no_run
    /// # let pq: pq_client::asynchronous::Pq = todo!();
    /// let tasks = pq.tasks("default").timeout(std::time::Duration::from_millis(200));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Tasks {
        self.timeout = timeout;
        self
    }

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
        assert!(
            !name.contains('('),
            "Rust task names have no parentheses: those are SQL tasks"
        );
        self.handlers.insert(
            name.to_string(),
            Arc::new(move |c: TaskCall| f(c).map(|r| r.map_err(|e| e.to_string())).boxed()),
        );
        self
    }

    /// Starts a call of task `name`, to enqueue with arguments and per-call overrides
    /// (Python's `eat('Cox', _schedule_at='1m')`).
    ///
    /// ```no_run
    /// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
    /// let id = tasks.call("eat").arg("Cox").kwarg("slices", 4).enqueue().await?;
    /// # Ok(()) }
    /// ```
    pub fn call(&self, name: &str) -> Call<'_> {
        Call {
            tasks: self,
            function: name.to_string(),
            args: vec![],
            kwargs: Map::new(),
            opts: self.defaults.clone(),
            unserializable: None,
        }
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
        let names: Vec<String> = self.handlers.keys().cloned().collect();
        let mut tx = self.queue.begin().await?;
        let Some(job) = tx.get_task(self.timeout, &names).await? else {
            tx.commit().await?;
            return Ok(false);
        };
        let function = job.data["function"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let call = TaskCall {
            job_id: job.id,
            args: job.data["args"].as_array().cloned().unwrap_or_default(),
            kwargs: job.data["kwargs"].as_object().cloned().unwrap_or_default(),
        };
        let outcome = match self.handlers.get(&function) {
            // A handler may panic making its future, or while it runs.
            Some(h) => match catch_unwind(AssertUnwindSafe(|| h(call))) {
                Ok(fut) => AssertUnwindSafe(fut)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p)))),
                Err(p) => Err(format!("panicked: {}", panic_text(&p))),
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

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// One task call being built; [`Call::enqueue`] puts it.
///
/// ```no_run
/// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
/// tasks.call("eat").arg("Fuji").expected_at("2m").max_retries(3).enqueue().await?;
/// # Ok(()) }
/// ```
pub struct Call<'t> {
    tasks: &'t Tasks,
    function: String,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    opts: TaskOptions,
    /// The first argument that did not serialize: `enqueue` raises it.
    unserializable: Option<String>,
}

impl Call<'_> {
    crate::task::call_builder!("pq_client::asynchronous::Tasks");

    /// Enqueues the call as a task job with `pq_put_task(..., external => true)`; returns
    /// its id.
    ///
    /// ```no_run
    /// # async fn f(tasks: pq_client::asynchronous::Tasks) -> pq_client::Result<()> {
    /// let id = tasks.call("eat").arg("Cox").enqueue().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue(self) -> Result<i64> {
        if let Some(message) = self.unserializable {
            return Err(crate::Error::Task {
                function: self.function,
                message: format!("an argument does not serialize to JSON: {message}"),
            });
        }
        let queue = &self.tasks.queue;
        let (s, e) = specs(&Put {
            schedule_at: self.opts.schedule_at,
            expected_at: self.opts.expected_at,
        });
        let max_retries = i32::try_from(self.opts.max_retries).unwrap_or(i32::MAX);
        let args = Value::Array(self.args);
        let kwargs = Value::Object(self.kwargs);
        Ok(queue
            .pq
            .conn()
            .await?
            .query_typed_one(
                PUT_TASK,
                &[
                    (&queue.name, Type::TEXT),
                    (&self.function, Type::TEXT),
                    (&args, Type::JSONB),
                    (&kwargs, Type::JSONB),
                    (&s, Type::TEXT),
                    (&e, Type::TEXT),
                    (&max_retries, Type::INT4),
                    (&self.opts.retry_in, Type::TEXT),
                    (&queue.pq.table_name(), Type::TEXT),
                ],
            )
            .await?
            .get(0))
    }
}
