//! Subtransactions: run a piece of work so that its failure rolls back only its own writes.

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// An error caught at the end of a rolled-back subtransaction.
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    /// Where PostgreSQL raised it (`postgres.c` for the cancels of `ProcessInterrupts`).
    file: String,
    caught: CaughtError,
}

impl Failure {
    /// A statement cancel or timeout (57014) raised by PostgreSQL's interrupt handling: meant
    /// for the whole statement, not one task. A task that raises 57014 itself (`RAISE ...
    /// USING ERRCODE = 'query_canceled'`) is not a cancel: only `postgres.c` raises real ones.
    pub fn is_cancel(&self) -> bool {
        self.sqlstate == "57014" && self.file.ends_with("postgres.c")
    }

    /// Raises the error again, as if it had never been caught.
    pub fn rethrow(self) -> ! {
        self.caught.rethrow()
    }
}

/// Runs `f` in a subtransaction: commits it on success, rolls it back and returns the error on
/// failure, as PL/pgSQL's `EXCEPTION` block does. The rollback also restores the current user
/// and every setting `f` changed.
///
/// ```ignore
/// if let Some(failure) = subxact::catching(|| run_task()) { /* record failure.message */ }
/// ```
pub fn catching(f: impl FnOnce()) -> Option<Failure> {
    // What `f` left half-done is rolled back with the subtransaction: unwinding out of it is safe.
    let f = std::panic::AssertUnwindSafe(f);
    unsafe {
        let memcx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(memcx);
        let result = PgTryBuilder::new(move || {
            let f = f;
            (f.0)();
            None
        })
        .catch_others(|e| {
            let report = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
                CaughtError::RustPanic { ereport, .. } => ereport,
            };
            Some(Failure {
                sqlstate: sqlstate(report.sql_error_code()),
                message: report.message().to_string(),
                file: report.file().to_string(),
                caught: e,
            })
        })
        .execute();
        if result.is_none() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(memcx);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

/// The five-character SQLSTATE of an error code.
pub fn sqlstate(code: PgSqlErrorCode) -> String {
    let code = code as i32;
    (0..5)
        .map(|i| (((code >> (6 * i)) & 0x3f) as u8 + b'0') as char)
        .collect()
}
