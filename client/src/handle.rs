//! The two handles both clients share, generic over the connection: a queue
//! ([`QueueOf`]: a name and a payload type) and a task set ([`TasksOf`]: handlers and
//! defaults). The blocking client names them [`crate::Queue`] and [`crate::Tasks`], the
//! async one [`crate::asynchronous::Queue`] and [`crate::asynchronous::Tasks`]; each adds
//! only its own I/O (`put`, `get`, `work`, ...) in its own `impl` block.

use crate::TaskOptions;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

/// A named queue (Python's `pq['apples']`) of payloads of type `T`, over connection `P`.
///
/// ```no_run
/// # let pq: pq_client::Pq = todo!();
/// let apples: pq_client::Queue = pq.queue("apples");
/// assert_eq!(apples.name(), "apples");
/// ```
pub struct QueueOf<P, T = Value> {
    pub(crate) pq: P,
    pub(crate) name: String,
    payload: PhantomData<fn() -> T>,
}

impl<P: Clone, T> Clone for QueueOf<P, T> {
    fn clone(&self) -> Self {
        QueueOf::new(self.pq.clone(), &self.name)
    }
}

impl<P, T> QueueOf<P, T> {
    pub(crate) fn new(pq: P, name: &str) -> Self {
        QueueOf {
            pq,
            name: name.to_string(),
            payload: PhantomData,
        }
    }

    /// The queue's name.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// assert_eq!(pq.queue("apples").name(), "apples");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The task handlers (of type `H`) of one queue `Q`, and their workers.
///
/// ```no_run
/// # let pq: pq_client::Pq = todo!();
/// let tasks: pq_client::Tasks = pq.tasks("default");
/// ```
pub struct TasksOf<Q, H> {
    pub(crate) queue: Q,
    pub(crate) handlers: HashMap<String, H>,
    pub(crate) defaults: TaskOptions,
    pub(crate) timeout: Duration,
}

impl<Q: Clone, H: Clone> Clone for TasksOf<Q, H> {
    fn clone(&self) -> Self {
        TasksOf {
            queue: self.queue.clone(),
            handlers: self.handlers.clone(),
            defaults: self.defaults.clone(),
            timeout: self.timeout,
        }
    }
}

impl<Q, H> TasksOf<Q, H> {
    pub(crate) fn new(queue: Q) -> Self {
        TasksOf {
            queue,
            handlers: HashMap::new(),
            defaults: TaskOptions::default(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Sets the defaults of every task enqueued from here.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// use pq_client::TaskOptions;
    /// let tasks = pq.tasks("default").defaults(TaskOptions {
    ///     max_retries: 2, retry_in: "10s".into(), ..TaskOptions::default()
    /// });
    /// ```
    pub fn defaults(mut self, defaults: TaskOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// How long `work` waits (in the server) for each next job; default one second.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// let tasks = pq.tasks("default").timeout(std::time::Duration::from_millis(200));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Registers handler `h` as task `name`; Rust task names have no parentheses.
    pub(crate) fn insert_handler(&mut self, name: &str, h: H) -> &mut Self {
        assert!(
            !name.contains('('),
            "Rust task names have no parentheses: those are SQL tasks"
        );
        self.handlers.insert(name.to_string(), h);
        self
    }

    /// Starts a call of task `name`, to enqueue with arguments and per-call overrides
    /// (Python's `eat('Cox', _schedule_at='1m')`).
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let id = tasks.call("eat").arg("Cox").kwarg("slices", 4).enqueue()?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn call(&self, name: &str) -> CallOf<'_, Self> {
        CallOf {
            tasks: self,
            function: name.to_string(),
            args: vec![],
            kwargs: Map::new(),
            opts: self.defaults.clone(),
            key: None,
            unserializable: None,
        }
    }

    /// The registered task names: a worker claims only jobs naming one of them.
    pub(crate) fn names(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// One task call being built on task set `T`; `enqueue` puts it.
///
/// ```no_run
/// # let tasks: pq_client::Tasks = todo!();
/// tasks.call("eat").arg("Fuji").expected_at("2m").max_retries(3).enqueue()?;
/// # Ok::<(), pq_client::Error>(())
/// ```
pub struct CallOf<'t, T> {
    pub(crate) tasks: &'t T,
    pub(crate) function: String,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
    pub(crate) opts: TaskOptions,
    /// A unique task's key (see [`crate::Put::key`]).
    pub(crate) key: Option<String>,
    /// The first argument that did not serialize: `enqueue` raises it.
    unserializable: Option<String>,
}

impl<T> CallOf<'_, T> {
    /// Adds a positional argument; one that does not serialize makes `enqueue` fail with
    /// [`Error::Task`](crate::Error::Task).
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("eat").arg("Cox").arg(3);
    /// ```
    pub fn arg(mut self, value: impl serde::Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(v) => self.args.push(v),
            Err(e) => self.unserializable = self.unserializable.or(Some(e.to_string())),
        }
        self
    }

    /// Adds a named argument.
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("eat").kwarg("kind", "Cox");
    /// ```
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
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("eat").schedule_at("5m");
    /// ```
    pub fn schedule_at(mut self, when: impl Into<crate::When>) -> Self {
        self.opts.schedule_at = Some(when.into());
        self
    }

    /// Overrides `expected_at` for this call (Python's `_expected_at`).
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("eat").expected_at("2m");
    /// ```
    pub fn expected_at(mut self, when: impl Into<crate::When>) -> Self {
        self.opts.expected_at = Some(when.into());
        self
    }

    /// Overrides `max_retries` for this call.
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("eat").max_retries(3);
    /// ```
    pub fn max_retries(mut self, n: u32) -> Self {
        self.opts.max_retries = n;
        self
    }

    /// Overrides `retry_in` for this call.
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("eat").retry_in("10s");
    /// ```
    pub fn retry_in(mut self, spec: &str) -> Self {
        self.opts.retry_in = spec.into();
        self
    }

    /// A unique task: while a job of the queue with this key is pending, `enqueue` returns its
    /// id and puts nothing.
    ///
    /// ```no_run
    /// # let tasks: pq_client::Tasks = todo!();
    /// let call = tasks.call("invoice").arg(42).key("invoice-42");
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The arguments of [`crate::sql::PUT_TASK`] for this call into `queue` of `table`.
    pub(crate) fn task_args(self, queue: String, table: &str) -> TaskArgs {
        let (backoff, retry_max) = match self.opts.backoff {
            crate::Backoff::Fixed => (None, None),
            crate::Backoff::Exponential { max } => (Some("exponential".to_string()), max),
        };
        TaskArgs {
            queue,
            function: self.function,
            args: Value::Array(self.args),
            kwargs: Value::Object(self.kwargs),
            schedule_at: self.opts.schedule_at.as_ref().map(crate::When::to_spec),
            expected_at: self.opts.expected_at.as_ref().map(crate::When::to_spec),
            max_retries: i32::try_from(self.opts.max_retries).unwrap_or(i32::MAX),
            retry_in: self.opts.retry_in,
            table: table.to_string(),
            key: self.key,
            backoff,
            retry_max,
        }
    }

    /// The call, or the error of its first argument that did not serialize.
    pub(crate) fn checked(self) -> crate::Result<Self> {
        match self.unserializable {
            Some(message) => Err(crate::Error::Task {
                function: self.function,
                message: format!("an argument does not serialize to JSON: {message}"),
            }),
            None => Ok(self),
        }
    }
}

/// The message of a handler's panic, recorded as the task's error.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The arguments of one `pq_put_task` call, owned, for either client to send.
pub(crate) struct TaskArgs {
    queue: String,
    function: String,
    args: Value,
    kwargs: Value,
    schedule_at: Option<String>,
    expected_at: Option<String>,
    max_retries: i32,
    retry_in: String,
    table: String,
    key: Option<String>,
    backoff: Option<String>,
    retry_max: Option<String>,
}

/// A statement parameter with its type, as `query_typed` takes it.
pub(crate) type Param<'a> = (
    &'a (dyn postgres::types::ToSql + Sync),
    postgres::types::Type,
);

impl TaskArgs {
    /// `$1` to `$12` of [`crate::sql::PUT_TASK`].
    pub(crate) fn params(&self) -> [Param<'_>; 12] {
        use postgres::types::Type;
        [
            (&self.queue, Type::TEXT),
            (&self.function, Type::TEXT),
            (&self.args, Type::JSONB),
            (&self.kwargs, Type::JSONB),
            (&self.schedule_at, Type::TEXT),
            (&self.expected_at, Type::TEXT),
            (&self.max_retries, Type::INT4),
            (&self.retry_in, Type::TEXT),
            (&self.table, Type::TEXT),
            (&self.key, Type::TEXT),
            (&self.backoff, Type::TEXT),
            (&self.retry_max, Type::TEXT),
        ]
    }
}
