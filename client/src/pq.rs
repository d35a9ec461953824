//! The entry point, Python pq's `PQ`: a connection (one client or a pool) and the queue table.

use crate::{Queue, Result, Tasks};
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

/// A connection pool of the kind [`Pq::with_pool`] takes.
pub type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Entry point: Python pq's `PQ`. Cheap to clone; `Send + Sync` (with a pool, each thread
/// gets its own connection; with one client, threads take turns on it, so a `Pq` over one
/// client must not be used again inside its own transaction or task handler on the same
/// thread: that waits on itself. Use a pool, or `tx.put` inside a transaction).
///
/// ```no_run
/// use pq_client::Pq;
/// let manager = r2d2_postgres::PostgresConnectionManager::new(
///     "host=localhost user=postgres".parse()?, postgres::NoTls);
/// let pq = Pq::with_pool(r2d2::Pool::new(manager)?).table("jobs");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Pq {
    source: Arc<Source>,
    table: Arc<str>,
}

enum Source {
    Client(Box<Mutex<Client>>),
    Pool(Pool),
}

/// A connection borrowed from a [`Pq`]: derefs to [`postgres::Client`]. Behind PgBouncer's
/// transaction pooling, use `query_typed` (one unnamed statement): `query`/`execute` with
/// parameters prepare named statements, which fail or collide there.
///
/// ```no_run
/// # let pq: pq_client::Pq = todo!();
/// let mut conn = pq.conn()?;
/// let rows = conn.query_typed("SELECT pq_len($1)", &[(&"apples", postgres::types::Type::TEXT)])?;
/// let n: i64 = rows[0].get(0);
/// # Ok::<(), pq_client::Error>(())
/// ```
pub enum Conn<'a> {
    Shared(MutexGuard<'a, Client>),
    Pooled(Box<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>>),
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        match self {
            Conn::Shared(c) => c,
            Conn::Pooled(c) => c,
        }
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        match self {
            Conn::Shared(c) => c,
            Conn::Pooled(c) => c,
        }
    }
}

impl Pq {
    /// Over one connection (Python's `PQ(conn)`).
    pub fn new(client: Client) -> Pq {
        Pq::from_source(Source::Client(Box::new(Mutex::new(client))))
    }

    /// Over a connection pool (Python's `PQ(pool=...)`): each thread its own connection.
    pub fn with_pool(pool: Pool) -> Pq {
        Pq::from_source(Source::Pool(pool))
    }

    fn from_source(source: Source) -> Pq {
        Pq {
            source: Arc::new(source),
            table: "queue".into(),
        }
    }

    /// The same connection, on another queue table (Python's `PQ(table=...)`); default
    /// `queue`. The name is resolved by the server as a `regclass`, never spliced into SQL.
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// let jobs = pq.clone().table("jobs");   // pq still uses `queue`
    /// ```
    pub fn table(self, table: &str) -> Pq {
        Pq {
            source: self.source,
            table: table.into(),
        }
    }

    /// The queue table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Makes sure the extension and the queue table exist (Python's `create()`).
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// pq.create()?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn create(&self) -> Result<()> {
        use postgres::types::Type;
        let mut c = self.conn()?;
        c.batch_execute(crate::sql::CREATE_EXTENSION)?;
        let table = [(
            &self.table_name().to_string() as &(dyn postgres::types::ToSql + Sync),
            Type::TEXT,
        )];
        let missing: bool = c.query_typed(crate::sql::TABLE_MISSING, &table)?[0].get(0);
        if missing {
            c.query_typed(crate::sql::CREATE_TABLE, &table)?;
        }
        Ok(())
    }

    /// A queue of JSON values (Python's `pq['apples']`).
    pub fn queue(&self, name: &str) -> Queue<serde_json::Value> {
        Queue::new(self.clone(), name)
    }

    /// A queue whose payloads are `T`, shared by producer and consumer.
    ///
    /// ```no_run
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Apple { kind: String }
    /// # let pq: pq_client::Pq = todo!();
    /// let apples = pq.typed_queue::<Apple>("apples");
    /// apples.put(&Apple { kind: "Cox".into() })?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn typed_queue<T>(&self, name: &str) -> Queue<T> {
        Queue::new(self.clone(), name)
    }

    /// The tasks of queue `name` (Python's `pq.tasks.PQ(...)[name]`).
    pub fn tasks(&self, name: &str) -> Tasks {
        Tasks::new(self.queue(name))
    }

    /// A connection: the shared client, or one from the pool (see [`Conn`]).
    pub fn conn(&self) -> Result<Conn<'_>> {
        Ok(match &*self.source {
            // A panic inside a transaction poisons the lock, but the transaction was rolled
            // back when it unwound, so the client is fine to use again.
            Source::Client(m) => Conn::Shared(m.lock().unwrap_or_else(|p| p.into_inner())),
            Source::Pool(p) => Conn::Pooled(Box::new(p.get()?)),
        })
    }
}
