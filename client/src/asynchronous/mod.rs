//! The async API (feature `async`): the same words as the blocking client, over
//! `tokio-postgres` with a `deadpool-postgres` pool.
//!
//! | item                   | blocking twin        |
//! |------------------------|----------------------|
//! | [`Pq`]                 | [`crate::Pq`]        |
//! | [`Queue`]              | [`crate::Queue`]     |
//! | [`Iter`] (a `Stream`)  | [`crate::Iter`]      |
//! | [`Tx`]                 | [`crate::Tx`]        |
//! | [`Tasks`], [`Call`]    | [`crate::Tasks`], [`crate::Call`] |
//!
//! Plain data is shared with the blocking client: [`Job`](crate::Job), [`Put`](crate::Put),
//! [`When`](crate::When), [`TaskCall`](crate::TaskCall), [`TaskOptions`](crate::TaskOptions)
//! and [`Error`], and so is the SQL.
//!
//! **PgBouncer.** Every statement is sent unnamed with its parameter types
//! (`query_typed`), in one round trip, and `BEGIN`/`COMMIT` as simple queries: nothing is
//! prepared, so the client works behind PgBouncer in transaction pooling mode.
//!
//! **Waiting.** A `get` with a timeout waits in the server (`pq_get(queue, timeout)`, woken
//! when a job is put); the client only awaits the query, so the executor runs other tasks
//! meanwhile, even on a `current_thread` runtime.
//!
//! ```no_run
//! use pq_client::asynchronous::Pq;
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = deadpool_postgres::Config::new();
//! config.host = Some("localhost".into());
//! config.user = Some("postgres".into());
//! let pool = config.create_pool(
//!     Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)?;
//! let pq = Pq::new(pool);
//! pq.create().await?;
//! let queue = pq.queue("apples");
//! queue.put(&json!({"kind": "Cox"})).await?;
//! if let Some(job) = queue.get().await? {
//!     println!("{job}: umm, {} apples taste good", job.data["kind"]);
//! }
//! # Ok(()) }
//! ```

mod operations;
mod queue;
mod task;
mod transaction;

pub use queue::{Iter, Queue};
pub use task::{Call, Tasks};
pub use transaction::Tx;

use crate::{Error, Result};
use deadpool_postgres::{Object, Pool, PoolError};
use std::sync::Arc;
use tokio_postgres::types::Type;

/// Entry point of the async API: Python pq's `PQ`, over a `deadpool-postgres` pool. Cheap
/// to clone; `Send + Sync`: each concurrent call takes its own connection from the pool.
///
/// ```no_run
/// use pq_client::asynchronous::Pq;
/// # fn make() -> Result<(), Box<dyn std::error::Error>> {
/// let config: tokio_postgres::Config = "host=localhost user=postgres".parse()?;
/// let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
/// let pool = deadpool_postgres::Pool::builder(manager).max_size(16).build()?;
/// let pq = Pq::new(pool).table("jobs");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pq {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    table: String,
}

impl Pq {
    /// Over a connection pool (Python's `PQ(pool=...)`).
    ///
    /// ```no_run
    /// # let pool: deadpool_postgres::Pool = todo!();
    /// let pq = pq_client::asynchronous::Pq::new(pool);
    /// ```
    pub fn new(pool: Pool) -> Pq {
        Pq {
            inner: Arc::new(Inner {
                pool,
                table: "queue".into(),
            }),
        }
    }

    /// Uses another queue table (Python's `PQ(table=...)`); default `queue`. The name is
    /// resolved by the server as a `regclass`, never spliced into SQL.
    ///
    /// ```no_run
    /// # let pool: deadpool_postgres::Pool = todo!();
    /// let pq = pq_client::asynchronous::Pq::new(pool).table("jobs");
    /// assert_eq!(pq.table_name(), "jobs");
    /// ```
    pub fn table(self, table: &str) -> Pq {
        Pq {
            inner: Arc::new(Inner {
                pool: self.inner.pool.clone(),
                table: table.into(),
            }),
        }
    }

    /// The queue table's name.
    ///
    /// ```no_run
    /// # let pq: pq_client::asynchronous::Pq = todo!();
    /// println!("jobs live in {}", pq.table_name());
    /// ```
    pub fn table_name(&self) -> &str {
        &self.inner.table
    }

    /// The pool this `Pq` takes its connections from.
    ///
    /// ```no_run
    /// # let pq: pq_client::asynchronous::Pq = todo!();
    /// println!("{} connections", pq.pool().status().size);
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Makes sure the extension and the queue table exist (Python's `create()`).
    ///
    /// ```no_run
    /// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
    /// pq.create().await?;
    /// # Ok(()) }
    /// ```
    pub async fn create(&self) -> Result<()> {
        let c = self.conn().await?;
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS pq").await?;
        let missing: bool = c
            .query_typed_one(
                "SELECT to_regclass($1) IS NULL",
                &[(&self.table_name(), Type::TEXT)],
            )
            .await?
            .get(0);
        if missing {
            c.query_typed(
                "SELECT pq_create_table($1)",
                &[(&self.table_name(), Type::TEXT)],
            )
            .await?;
        }
        Ok(())
    }

    /// A queue of JSON values (Python's `pq['apples']`).
    ///
    /// ```no_run
    /// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
    /// let apples = pq.queue("apples");
    /// apples.put(&serde_json::json!({"kind": "Cox"})).await?;
    /// # Ok(()) }
    /// ```
    pub fn queue(&self, name: &str) -> Queue<serde_json::Value> {
        Queue::new(self.clone(), name)
    }

    /// A queue whose payloads are `T`, shared by producer and consumer.
    ///
    /// ```no_run
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Apple { kind: String }
    /// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
    /// let apples = pq.typed_queue::<Apple>("apples");
    /// apples.put(&Apple { kind: "Cox".into() }).await?;
    /// # Ok(()) }
    /// ```
    pub fn typed_queue<T>(&self, name: &str) -> Queue<T> {
        Queue::new(self.clone(), name)
    }

    /// The tasks of queue `name` (Python's `pq.tasks.PQ(...)[name]`).
    ///
    /// ```no_run
    /// # let pq: pq_client::asynchronous::Pq = todo!();
    /// let mut tasks = pq.tasks("default");
    /// tasks.register("eat", |(kind,): (String,)| async move {
    ///     println!("umm, {kind} apples taste good.");
    ///     Ok::<_, String>(())
    /// });
    /// ```
    pub fn tasks(&self, name: &str) -> Tasks {
        Tasks::new(self.queue(name))
    }

    /// A connection from the pool, for anything else. Send statements with `query_typed`
    /// to stay PgBouncer-friendly.
    ///
    /// ```no_run
    /// # async fn f(pq: pq_client::asynchronous::Pq) -> pq_client::Result<()> {
    /// use tokio_postgres::types::Type;
    /// let conn = pq.conn().await?;
    /// let n: i64 = conn
    ///     .query_typed_one("SELECT pq_len($1)", &[(&"apples", Type::TEXT)])
    ///     .await?
    ///     .get(0);
    /// # Ok(()) }
    /// ```
    pub async fn conn(&self) -> Result<Object> {
        Ok(self.inner.pool.get().await?)
    }
}

/// A server error met while the pool connected keeps its SQLSTATE ([`Error::Db`]); any other
/// pool failure (a timeout, a closed pool) is [`Error::AsyncPool`].
impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            other => Error::AsyncPool(other),
        }
    }
}
