//! The sandbox a task runs in: as the role that enqueued it, from fixed settings, within a
//! time limit, leaving nothing behind.
//!
//! - **Identity.** The task runs as its job's `enqueued_by` (see `enqueuer`), as a
//!   `SECURITY DEFINER` function runs as its owner, and as a security-restricted operation:
//!   `SET ROLE`, `SET SESSION AUTHORIZATION` and temporary objects are refused inside, and the
//!   caller's identity comes back afterwards. So a job can do
//!   exactly what its enqueuer could have done by calling the function itself, whoever works it.
//! - **Settings.** Each task starts with `search_path = "$user", public, pg_temp` (no caller's
//!   path can redirect the names in its body) on top of the worker's other settings, and every
//!   setting it changes, `set_config(..., false)` included, is undone when it ends.
//! - **Time.** The task is cancelled after its `timeout` (job data, e.g. `"30s"`) or
//!   `pq.task_timeout` (default 10 minutes; 0 = none), and fails with 57014.
//! - **Locks.** Session-level advisory locks the task took are released when it ends.

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::time::Duration;

/// `pq.task_timeout`, in milliseconds.
static TASK_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10 * 60 * 1000);

/// The search_path every task starts from.
const TASK_SEARCH_PATH: &std::ffi::CStr = c"\"$user\", public, pg_temp";

/// Defines `pq.task_timeout`. Called from `_PG_init`.
pub fn init() {
    GucRegistry::define_int_guc(
        c"pq.task_timeout",
        c"Longest a task may run before it is cancelled (57014) and recorded as failed.",
        c"0 disables the limit. A task's own timeout (pq_put_task(..., timeout => '30s')) wins.",
        &TASK_TIMEOUT,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

/// The default task timeout, `None` when disabled.
pub fn default_timeout() -> Option<Duration> {
    let ms = TASK_TIMEOUT.get();
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

/// Runs `f` as `role`, as a `SECURITY DEFINER` function runs as its owner (`SET ROLE` refused
/// inside), with `flags` added to the security context. The caller's identity is restored
/// here on success; when `f` raises, the (sub)transaction's abort restores it.
///
/// ```ignore
/// sandbox::as_role(owner, 0, || write_registry());
/// ```
pub fn as_role<R>(role: pg_sys::Oid, flags: i32, f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    // SAFETY: plain calls into PostgreSQL's user-id machinery, paired below.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            role,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | flags,
        );
    }
    let r = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    r
}

/// Runs `f` as `role` from the task settings. On success the caller's identity and settings
/// are restored here; when `f` raises, the enclosing subtransaction's abort restores both.
pub fn run_as<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    // A security-restricted operation, as PostgreSQL runs index functions during maintenance:
    // besides SET ROLE, it refuses temporary objects, which would outlive the task in the
    // caller's session and could shadow its tables.
    as_role(role, pg_sys::SECURITY_RESTRICTED_OPERATION as i32, || {
        // SAFETY: a GUC nest level of our own, ended below (or by the abort).
        let level = unsafe {
            let level = pg_sys::NewGUCNestLevel();
            crate::plumbing::pinning::set_saved(
                c"search_path",
                TASK_SEARCH_PATH,
                pg_sys::GucContext::PGC_USERSET,
            );
            level
        };
        let r = f();
        // Undo every setting the task made, as an aborted subtransaction would.
        unsafe { pg_sys::AtEOXact_GUC(false, level) };
        r
    })
}

// utils/timeout.h is not in pgrx's bindings. TimeoutId is a C enum (an int); STATEMENT_TIMEOUT
// is 3 in PostgreSQL 15 to 18.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
unsafe extern "C-unwind" {
    fn enable_timeout_at(id: std::ffi::c_int, fin_time: pg_sys::TimestampTz);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
    fn get_timeout_active(id: std::ffi::c_int) -> bool;
    fn get_timeout_finish_time(id: std::ffi::c_int) -> pg_sys::TimestampTz;
}

/// A task's time limit, armed on the statement timer: firing cancels the task with 57014.
/// Dropping it restores the statement's own `statement_timeout`, if it had one.
pub struct Deadline {
    outer: Option<pg_sys::TimestampTz>,
    at: Option<pg_sys::TimestampTz>,
}

impl Deadline {
    /// Arms `limit` from now, or the statement's own deadline if that comes first.
    pub fn arm(limit: Option<Duration>) -> Deadline {
        // SAFETY: the timeout module is initialised in every backend and background worker
        // that has a database connection; these calls only read and set its timer.
        unsafe {
            let outer = get_timeout_active(STATEMENT_TIMEOUT)
                .then(|| get_timeout_finish_time(STATEMENT_TIMEOUT));
            let now = pg_sys::GetCurrentTimestamp();
            let at = limit.map(|d| now.saturating_add(d.as_micros().min(i64::MAX as u128) as i64));
            if let Some(at) = at {
                if outer.is_none_or(|o| at < o) {
                    enable_timeout_at(STATEMENT_TIMEOUT, at);
                }
            }
            Deadline { outer, at }
        }
    }

    /// Whether the task's own limit has passed (so a 57014 was its timeout).
    pub fn expired(&self) -> bool {
        self.at
            .is_some_and(|at| unsafe { pg_sys::GetCurrentTimestamp() } >= at)
            && self.outer.is_none_or(|o| self.at.is_some_and(|at| at < o))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if self.at.is_none() {
            return;
        }
        unsafe {
            disable_timeout(STATEMENT_TIMEOUT, false);
            if let Some(outer) = self.outer {
                enable_timeout_at(STATEMENT_TIMEOUT, outer);
            }
        }
    }
}

/// An advisory lock this backend holds, at either level.
#[derive(PartialEq)]
struct Held {
    tag: [u32; 4],
    mode: i32,
}

/// The advisory locks this backend holds now.
fn advisory_locks() -> Vec<(pg_sys::LOCKTAG, Held)> {
    let mut held = Vec::new();
    // SAFETY: GetLockStatusData returns a palloc'd snapshot of the lock table; we only read it.
    unsafe {
        let data = pg_sys::GetLockStatusData();
        for i in 0..(*data).nelements as usize {
            let lock = &*(*data).locks.add(i);
            let tag = lock.locktag;
            if lock.pid != pg_sys::MyProcPid
                || tag.locktag_type as u32 != pg_sys::LockTagType::LOCKTAG_ADVISORY
                || tag.locktag_lockmethodid as u32 != pg_sys::USER_LOCKMETHOD
            {
                continue;
            }
            for mode in [pg_sys::ShareLock as i32, pg_sys::ExclusiveLock as i32] {
                if lock.holdMask & (1 << mode) != 0 {
                    let key = Held {
                        tag: [
                            tag.locktag_field1,
                            tag.locktag_field2,
                            tag.locktag_field3,
                            tag.locktag_field4 as u32,
                        ],
                        mode,
                    };
                    held.push((tag, key));
                }
            }
        }
    }
    held
}

/// The session-level advisory locks a task may leave: taken as [`Locks::before`] the task,
/// released by [`Locks::release_new`] after it.
pub struct Locks(Vec<Held>);

impl Locks {
    pub fn before() -> Locks {
        Locks(advisory_locks().into_iter().map(|(_, h)| h).collect())
    }

    /// Releases the session-level hold of every advisory lock taken since [`Locks::before`];
    /// transaction-level ones stay until the transaction ends, as they should.
    pub fn release_new(self) {
        let new: Vec<_> = advisory_locks()
            .into_iter()
            .filter(|(_, h)| !self.0.contains(h))
            .collect();
        if new.is_empty() {
            return;
        }
        unsafe {
            // LockRelease warns about locks held only at transaction level: not for the log.
            let level = pg_sys::NewGUCNestLevel();
            crate::plumbing::pinning::set_saved(
                c"client_min_messages",
                c"error",
                pg_sys::GucContext::PGC_SUSET,
            );
            crate::plumbing::pinning::set_saved(
                c"log_min_messages",
                c"error",
                pg_sys::GucContext::PGC_SUSET,
            );
            for (tag, held) in &new {
                while pg_sys::LockRelease(tag, held.mode, true) {}
            }
            pg_sys::AtEOXact_GUC(true, level);
        }
    }
}
