//! `pq-client`: the Rust client of the pq PostgreSQL extension, with the words of Python pq.
//!
//! It calls the extension's SQL functions (`pq_put`, `pq_get`, ...) and writes no queue SQL
//! of its own. One module per concept, as in the extension:
//!
//! | module        | concept                                                   |
//! |---------------|-----------------------------------------------------------|
//! | `pq`          | [`Pq`]: the connection (a client or a pool) and the table  |
//! | `queue`       | [`Queue`]: put, get (blocking), iteration, len, clear       |
//! | `job`         | [`Job`]: what get returns; typed payloads                  |
//! | `timespec`    | [`When`]: `"5m"`, a `Duration` or a `SystemTime`            |
//! | `transaction` | [`Tx`]: take a job, work it, write a result, atomically     |
//! | `task`        | [`Tasks`]: named handlers, enqueue, `work()` with retries   |
//! | `operations`  | pause, resume, limits, cancel, status, periodic jobs       |
//! | `handle`      | the queue, task set and call both clients share           |
//! | `error`       | [`Error`]: keeps the server's SQLSTATE                     |
//! | `asynchronous` | feature `async`: the same API over tokio-postgres + deadpool |
//!
//! ```no_run
//! use pq_client::Pq;
//! use serde_json::json;
//!
//! let client = postgres::Client::connect("host=localhost user=postgres", postgres::NoTls)?;
//! let pq = Pq::new(client);
//! pq.create()?;
//! let queue = pq.queue("apples");
//! queue.put(&json!({"kind": "Cox"}))?;
//! if let Some(job) = queue.get()? {
//!     println!("{job}: umm, {} apples taste good", job.data["kind"]);
//! }
//! # Ok::<(), pq_client::Error>(())
//! ```

#[cfg(feature = "async")]
pub mod asynchronous;
mod error;
mod handle;
mod job;
mod operations;
mod pq;
mod queue;
mod task;
mod timespec;
mod transaction;

pub use error::{Error, Result};
pub use handle::{CallOf, QueueOf, TasksOf};
pub use job::Job;
pub use pq::{Conn, Pool, Pq};
pub use queue::{sql, Iter, Put, Queue};
pub use task::{Backoff, Call, TaskCall, TaskOptions, Tasks};
pub use timespec::When;
pub use transaction::Tx;
