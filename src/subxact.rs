//! Subtransactions: run a piece of work so that its failure rolls back only its own writes.

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Runs `f` in a subtransaction: commits it on success, rolls it back and returns the
/// error's (SQLSTATE, message) on failure, as PL/pgSQL's `EXCEPTION` block does.
///
/// ```ignore
/// if let Some((sqlstate, message)) = subxact::catching(|| run_task()) { /* record it */ }
/// ```
pub fn catching(
    f: impl FnOnce() + std::panic::UnwindSafe + std::panic::RefUnwindSafe,
) -> Option<(String, String)> {
    unsafe {
        let memcx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(memcx);
        let result = PgTryBuilder::new(|| {
            f();
            None
        })
        .catch_others(|e| {
            let report = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
                CaughtError::RustPanic { ereport, .. } => ereport,
            };
            Some((
                sqlstate(report.sql_error_code()),
                report.message().to_string(),
            ))
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
