//! Operating queues: looking at them, changing them, and keeping their tables small.
//!
//! | module      | concept                                                         |
//! |-------------|-----------------------------------------------------------------|
//! | `admin`     | `pq_len`, `pq_clear`, `pq_update`, `pq_stats`                   |
//! | `retention` | `pq_purge` and the maintenance worker: finished jobs are deleted |

pub mod admin;
pub mod retention;
