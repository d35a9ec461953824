//! One error type for the client, keeping the server's SQLSTATE and message.

/// What can go wrong talking to the pq extension.
///
/// ```no_run
/// # use pq_client::{Pq, Error};
/// # let pq: Pq = todo!();
/// match pq.queue("").put(&serde_json::json!(1)) {
///     Err(e) if e.sqlstate() == Some("22023") => eprintln!("bad argument: {e}"),
///     other => { other.unwrap(); }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server raised an error: `sqlstate` is its five-character code.
    #[error("{message} (SQLSTATE {sqlstate})")]
    Db {
        sqlstate: String,
        message: String,
        source: postgres::Error,
    },
    /// The connection failed or closed, or the driver failed without a server error.
    #[error("connection: {0}")]
    Connection(postgres::Error),
    /// No connection could be had from the pool.
    #[error("pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// No connection could be had from the async pool (feature `async`): a timeout, a
    /// closed pool. A server error while connecting is [`Error::Db`] or [`Error::Connection`].
    #[cfg(feature = "async")]
    #[error("pool: {0}")]
    AsyncPool(deadpool_postgres::PoolError),
    /// A payload did not (de)serialize to or from JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A Python pickle could not be decoded (not plain data, or not a pickle).
    #[error("pickle: {0}")]
    Pickle(String),
    /// A task call could not be enqueued: one of its arguments does not serialize to JSON.
    /// (A handler that fails or panics is recorded in the job, not raised.)
    #[error("task {function}: {message}")]
    Task { function: String, message: String },
}

impl Error {
    /// The server's SQLSTATE, if the server raised this error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Db { sqlstate, .. } => Some(sqlstate),
            _ => None,
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Error::Db {
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                source: e,
            },
            None => Error::Connection(e),
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
