//! The queue itself: putting jobs, claiming them in claim order, waiting for them and waking
//! the waiters.
//!
//! | module       | concept                                                         |
//! |--------------|-----------------------------------------------------------------|
//! | `timespec`   | `'5m'`, intervals and timestamps as `schedule_at`/`expected_at`  |
//! | `put`        | `pq_put`, `pq_put_many`                                          |
//! | `enqueue`    | inserting a put's row without an executor run                    |
//! | `unique`     | unique jobs: a put with a key returns the pending job with it    |
//! | `job`        | a claimed job and its payload, as `pq_get` returns it            |
//! | `candidates` | the ready jobs of a queue in claim order, from its indexes       |
//! | `claim`      | advisory-lock claiming of the next ready jobs                    |
//! | `dequeue`    | marking a claimed job dequeued without an executor run           |
//! | `layout`     | which tables pq may write without the executor, and their indexes |
//! | `heads`      | where each queue's claims start (shared memory, when preloaded)  |
//! | `get`        | `pq_get`                                                         |
//! | `wait`       | blocking waits                                                   |
//! | `wake`       | waking waiters and listeners at commit (`announce`)              |
//! | `notify`     | `NOTIFY` on the queue's channel                                  |

pub mod candidates;
pub mod claim;
pub mod dequeue;
pub mod enqueue;
pub mod get;
pub mod heads;
pub mod job;
pub mod layout;
pub mod notify;
pub mod put;
pub mod timespec;
pub mod unique;
pub mod wait;
pub mod wake;
