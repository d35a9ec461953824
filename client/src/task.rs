//! Tasks: named handlers, enqueued as jobs in the task shape the extension and Python pq use,
//! performed by [`Tasks::work`] with retries.
//!
//! A Rust handler's name has no parentheses (`"eat"`, like Python's `module.eat`): jobs whose
//! `function` is a SQL signature (`public.eat(text)`) belong to the extension's `pq_work`, and
//! a Rust worker only ever claims jobs naming one of its registered handlers.

use crate::queue::{get, sql};
use crate::{Put, Queue, Result, When};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

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
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            schedule_at: None,
            expected_at: None,
            max_retries: 0,
            retry_in: "30s".into(),
        }
    }
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
    pub fn defaults(mut self, defaults: TaskOptions) -> Tasks {
        self.defaults = defaults;
        self
    }

    /// How long `work` waits for each next job; default one second.
    pub fn timeout(mut self, timeout: Duration) -> Tasks {
        self.timeout = timeout;
        self
    }

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
        assert!(
            !name.contains('('),
            "Rust task names have no parentheses: those are SQL tasks"
        );
        self.handlers.insert(
            name.to_string(),
            Arc::new(move |c: &TaskCall| f(c).map_err(|e| e.to_string())),
        );
        self
    }

    /// Starts a call of task `name`, to enqueue with arguments and per-call overrides
    /// (Python's `eat('Cox', _schedule_at='1m')`).
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
        let names: Vec<String> = self.handlers.keys().cloned().collect();
        let mut conn = self.queue.pq.conn()?;
        let mut tx = conn.transaction()?;
        let Some(job) = get(&mut tx, &self.queue, self.timeout, Some(&names))? else {
            tx.commit()?;
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
        let handler = self.handlers.get(&function).cloned();
        let outcome = match handler {
            Some(h) => catch_unwind(AssertUnwindSafe(|| h(&call)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p)))),
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

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The builder methods of a task call, shared by the blocking [`Call`] and the async one: both
/// hold `args`, `kwargs`, `opts` and `unserializable`. `$tasks` is the type a doc example takes.
macro_rules! call_builder {
    ($tasks:literal) => {
        /// Adds a positional argument; one that does not serialize makes `enqueue` fail with
        /// [`Error::Task`](crate::Error::Task).
        ///
        #[doc = concat!("```no_run\n# let tasks: ", $tasks, " = todo!();\nlet call = tasks.call(\"eat\").arg(\"Cox\").arg(3);\n```")]
        pub fn arg(mut self, value: impl serde::Serialize) -> Self {
            match serde_json::to_value(value) {
                Ok(v) => self.args.push(v),
                Err(e) => self.unserializable = self.unserializable.or(Some(e.to_string())),
            }
            self
        }

        /// Adds a named argument.
        ///
        #[doc = concat!("```no_run\n# let tasks: ", $tasks, " = todo!();\nlet call = tasks.call(\"eat\").kwarg(\"kind\", \"Cox\");\n```")]
        pub fn kwarg(mut self, name: &str, value: impl serde::Serialize) -> Self {
            match serde_json::to_value(value) {
                Ok(v) => {
                    self.kwargs.insert(name.into(), v);
                }
                Err(e) => {
                    self.unserializable = self.unserializable.or(Some(format!("{name}: {e}")));
                }
            }
            self
        }

        /// Overrides `schedule_at` for this call (Python's `_schedule_at`).
        ///
        #[doc = concat!("```no_run\n# let tasks: ", $tasks, " = todo!();\nlet call = tasks.call(\"eat\").schedule_at(\"5m\");\n```")]
        pub fn schedule_at(mut self, when: impl Into<crate::When>) -> Self {
            self.opts.schedule_at = Some(when.into());
            self
        }

        /// Overrides `expected_at` for this call (Python's `_expected_at`).
        ///
        #[doc = concat!("```no_run\n# let tasks: ", $tasks, " = todo!();\nlet call = tasks.call(\"eat\").expected_at(\"2m\");\n```")]
        pub fn expected_at(mut self, when: impl Into<crate::When>) -> Self {
            self.opts.expected_at = Some(when.into());
            self
        }

        /// Overrides `max_retries` for this call.
        ///
        #[doc = concat!("```no_run\n# let tasks: ", $tasks, " = todo!();\nlet call = tasks.call(\"eat\").max_retries(3);\n```")]
        pub fn max_retries(mut self, n: u32) -> Self {
            self.opts.max_retries = n;
            self
        }

        /// Overrides `retry_in` for this call.
        ///
        #[doc = concat!("```no_run\n# let tasks: ", $tasks, " = todo!();\nlet call = tasks.call(\"eat\").retry_in(\"10s\");\n```")]
        pub fn retry_in(mut self, spec: &str) -> Self {
            self.opts.retry_in = spec.into();
            self
        }
    };
}
// The async client names it by path; the blocking one uses it in place.
#[cfg(feature = "async")]
pub(crate) use call_builder;

/// One task call being built; [`Call::enqueue`] puts it.
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
    call_builder!("pq_client::Tasks");

    /// Enqueues the call as a task job; returns its id.
    pub fn enqueue(self) -> Result<i64> {
        if let Some(message) = self.unserializable {
            return Err(crate::Error::Task {
                function: self.function,
                message: format!("an argument does not serialize to JSON: {message}"),
            });
        }
        let data = json!({
            "function": self.function, "args": self.args, "kwargs": self.kwargs,
            "retried": 0, "max_retries": self.opts.max_retries, "retry_in": self.opts.retry_in,
        });
        let put = Put {
            schedule_at: self.opts.schedule_at,
            expected_at: self.opts.expected_at,
        };
        self.tasks.queue.put_with(&data, put)
    }
}
