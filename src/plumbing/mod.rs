//! Plumbing the rest stands on: queue tables and their statements, pinned settings,
//! subtransactions, errors, and the utility hook.
//!
//! | module    | concept                                                        |
//! |-----------|----------------------------------------------------------------|
//! | `table`   | queue tables: resolving `regclass`, prepared statements         |
//! | `pinning` | pinning `search_path` and planner settings for pq's statements   |
//! | `subxact` | subtransactions that catch a task's error                       |
//! | `error`   | SQLSTATE-carrying errors for bad input                          |
//! | `utility` | the utility hook: `LISTEN`s, the end of prepared transactions   |
//! | `invalidation` | relcache invalidations, for the per-session caches         |
//! | `latest`  | reads with the newest snapshot (unique keys, queue controls)      |
//! | `queue_id` | (database, table, queue) in shared memory                     |
//! | `hash`    | FNV-1a: stable advisory lock keys and shared-memory slots        |
//! | `scratch` | memory contexts for work whose allocations die with it           |
//! | `catalog` | catalog reads without a statement (first-call lookups)           |

pub mod catalog;
pub mod error;
pub mod hash;
pub mod invalidation;
pub mod latest;
pub mod pinning;
pub mod queue_id;
pub mod scratch;
pub mod subxact;
pub mod table;
pub mod utility;
