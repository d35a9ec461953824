//! pq: a transactional job queue inside PostgreSQL, after Malthe Borch's Python `pq`.
//!
//! One table holds the jobs of every queue. `pq_put` enqueues JSON jobs, `pq_get` claims them
//! in the caller's transaction (commit consumes, rollback returns), with delayed scheduling,
//! priority and blocking waits. The modules, grouped by concept:
//!
//! | folder       | concept                                                            |
//! |--------------|--------------------------------------------------------------------|
//! | `queue`      | put, claim order, claiming, get, blocking waits, wake-ups, NOTIFY   |
//! | `tasks`      | task jobs, the registry, the sandbox they run in, `pq_work`, workers |
//! | `operations` | `pq_len`, `pq_stats`, `pq_clear`, `pq_update`, retention            |
//! | `plumbing`   | queue tables and statements, pinned settings, errors, hooks         |
//!
//! Each folder's `mod.rs` lists its modules, one per concept.
//!
//! ```sql
//! CREATE EXTENSION pq;
//! SELECT pq_put('apples', '{"kind":"Cox"}', '5m');
//! SELECT * FROM pq_get('apples');
//! ```

use pgrx::prelude::*;

mod operations;
mod plumbing;
mod queue;
mod tasks;

use operations::retention;
use plumbing::utility;
use queue::{heads, notify, wake};
use tasks::{sandbox, worker};

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
// The current API, whole: upgrade scripts (sql/pq--A--B.sql) only upgrade, and
// tests/python/test_upgrade.py checks an upgraded schema equals a fresh install's.
extension_sql_file!(
    "../sql/api.sql",
    name = "api",
    requires = ["schema"],
    finalize
);

/// Library load: hook the commit that wakes blocked getters; define the worker GUCs and,
/// when preloaded, register the background workers.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    quiet_backtraces();
    // SAFETY: registering callbacks once, at library load.
    unsafe {
        pg_sys::RegisterXactCallback(Some(wake::on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(wake::on_subxact_event), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(
            Some(plumbing::invalidation::on_relcache_invalidation),
            pg_sys::Datum::from(0),
        );
    }
    heads::init();
    operations::metrics::init();
    notify::init();
    crate::queue::layout::init();
    utility::init();
    sandbox::init();
    retention::init();
    worker::init();
}

/// Keeps Rust backtraces out of error reports. pgrx appends one to the DETAIL of every
/// PostgreSQL error that passes through Rust code (a utility statement under pq's hook, an
/// SPI statement) when `RUST_BACKTRACE` is set in the server's environment, as it often is on
/// a developer's machine: users would see a Rust stack under `relation "x" already exists`.
/// `PQ_BACKTRACE=1` in the server's environment keeps them, for debugging pq itself.
///
/// ```sh
/// PQ_BACKTRACE=1 RUST_BACKTRACE=1 pg_ctl -D data start
/// ```
fn quiet_backtraces() {
    if std::env::var_os("PQ_BACKTRACE").is_none_or(|v| v != "1") {
        // SAFETY: PostgreSQL processes are single-threaded; the library is loading, before
        // anything could read the environment concurrently.
        unsafe {
            std::env::remove_var("RUST_BACKTRACE");
            std::env::remove_var("RUST_LIB_BACKTRACE");
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

#[cfg(test)]
pub use tests::pg_test;
