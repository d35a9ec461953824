//! Tasks and workers: jobs that name a registered function, performed as the role that put
//! them, with retries.
//!
//! | module     | concept                                                        |
//! |------------|----------------------------------------------------------------|
//! | `enqueuer` | the trigger recording who enqueued a job (tasks run as them)    |
//! | `task`     | task jobs: `pq_put_task`, building a task's function call       |
//! | `registry` | `pq_register_task`: the only functions tasks may call           |
//! | `sandbox`  | a task's identity, settings, time limit, leftover locks         |
//! | `work`     | `pq_work`, `pq_requeue`: performing tasks, retries, failures    |
//! | `backoff`  | how long a failed task waits: `retry_in`, or exponential        |
//! | `worker`   | background workers performing tasks for configured queues      |

pub mod backoff;
pub mod enqueuer;
pub mod registry;
pub mod sandbox;
pub mod task;
pub mod work;
pub mod worker;
