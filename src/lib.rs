//! pq: a transactional job queue inside PostgreSQL, after Malthe Borch's Python `pq`.
//!
//! One table holds the jobs of every queue. `pq_put` enqueues JSON jobs, `pq_get` claims them
//! in the caller's transaction (commit consumes, rollback returns), with delayed scheduling,
//! priority and blocking waits. One module per concept:
//!
//! | module     | concept                                                        |
//! |------------|----------------------------------------------------------------|
//! | `timespec` | `'5m'`, intervals and timestamps as `schedule_at`/`expected_at` |
//! | `table`    | queue tables: resolving `regclass`, prepared statements         |
//! | `put`      | `pq_put`, `pq_put_many`                                         |
//! | `job`      | a claimed job and its payload, as `pq_get` returns it           |
//! | `candidates`| the ready jobs of a queue in claim order, from its indexes      |
//! | `claim`    | advisory-lock claiming of the next ready jobs                   |
//! | `heads`    | where each queue's claims start (shared memory, when preloaded) |
//! | `get`      | `pq_get`                                                        |
//! | `wait`     | blocking waits                                                  |
//! | `wake`     | waking waiters and listeners at commit (`announce`)             |
//! | `notify`   | `NOTIFY` on the queue's channel                                 |
//! | `admin`    | `pq_len`, `pq_clear`, `pq_update`, `pq_stats`                   |
//! | `enqueuer` | the trigger recording who enqueued a job (tasks run as them)    |
//! | `task`     | task jobs: `pq_put_task`, building a task's function call       |
//! | `registry` | `pq_register_task`: the only functions tasks may call           |
//! | `sandbox`  | a task's identity, settings, time limit, leftover locks         |
//! | `work`     | `pq_work`, `pq_requeue`: performing tasks, retries, failures    |
//! | `worker`   | background workers performing tasks for configured queues      |
//! | `retention`| `pq_purge` and the maintenance worker: finished jobs are deleted |
//! | `utility`  | the utility hook: `LISTEN`s, the end of prepared transactions   |
//! | `pinning`  | pinning `search_path` and planner settings for pq's statements   |
//! | `subxact`  | subtransactions that catch a task's error                       |
//! | `error`    | SQLSTATE-carrying errors for bad input                          |
//!
//! ```sql
//! CREATE EXTENSION pq;
//! SELECT pq_put('apples', '{"kind":"Cox"}', '5m');
//! SELECT * FROM pq_get('apples');
//! ```

use pgrx::prelude::*;

mod admin;
mod candidates;
mod claim;
mod enqueuer;
mod error;
mod get;
mod heads;
mod job;
mod notify;
mod pinning;
mod put;
mod registry;
mod retention;
mod sandbox;
mod subxact;
mod table;
mod task;
mod timespec;
mod utility;
mod wait;
mod wake;
mod work;
mod worker;

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
    // SAFETY: registering callbacks once, at library load.
    unsafe {
        pg_sys::RegisterXactCallback(Some(wake::on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(wake::on_subxact_event), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(
            Some(table::on_relcache_invalidation),
            pg_sys::Datum::from(0),
        );
    }
    heads::init();
    notify::init();
    utility::init();
    sandbox::init();
    retention::init();
    worker::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

#[cfg(test)]
pub use tests::pg_test;
