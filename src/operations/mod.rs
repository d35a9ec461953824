//! Operating queues: looking at them, changing them, and keeping their tables small.
//!
//! | module      | concept                                                         |
//! |-------------|-----------------------------------------------------------------|
//! | `admin`     | `pq_len`, `pq_clear`, `pq_update`, `pq_stats`                   |
//! | `retention` | `pq_purge` and the maintenance worker: finished jobs are deleted |
//! | `controls`  | per-queue controls (paused, limit), cached per session           |
//! | `pause`     | `pq_pause`, `pq_resume`                                          |
//! | `limits`    | `pq_set_limit`: concurrency slots                                |
//! | `cancel`    | `pq_cancel`, `pq_status`                                         |
//! | `periodic`  | `pq_schedule`, `pq_unschedule`, `pq_run_schedules`: cron jobs     |
//! | `metrics`   | `pq_metrics`: gauges from pending jobs, counters in shared memory |

pub mod admin;
pub mod cancel;
pub mod controls;
pub mod limits;
pub mod metrics;
pub mod pause;
pub mod periodic;
pub mod retention;
