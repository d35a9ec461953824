//! Pause and resume: a paused queue still accepts puts, but `pq_get`, `pq_work` and the
//! background workers take nothing from it; blocked gets keep waiting and wake on resume. The
//! state lives in `pq_queue_controls` (see `controls`), so it survives restarts.

use crate::operations::controls;
use crate::plumbing::error::{require_new_queue, require_queue};
use crate::plumbing::table::QueueTable;
use pgrx::prelude::*;

/// Pauses `queue`: nothing claims its jobs until [`pq_resume`]. Returns true if it was not
/// paused. Needs UPDATE on the queue table.
///
/// ```sql
/// SELECT pq_pause('apples');
/// SELECT queue, paused FROM pq_stats;
/// ```
#[pg_extern(sql = false)]
fn pq_pause(queue: Option<&str>, tbl: Option<pg_sys::Oid>) -> bool {
    let queue = require_new_queue(queue);
    let table = QueueTable::resolve(tbl);
    let me = unsafe { pg_sys::GetUserId() };
    controls::write::<bool>(
        include_str!("../queries/pause.sql"),
        &table,
        queue,
        Some(me.into()),
        "pause",
    )
    .unwrap_or(false)
}

/// Resumes a paused `queue` and, at commit, wakes its blocked getters. Returns true if it was
/// paused.
///
/// ```sql
/// SELECT pq_resume('apples');
/// ```
#[pg_extern(sql = false)]
fn pq_resume(queue: Option<&str>, tbl: Option<pg_sys::Oid>) -> bool {
    let queue = require_queue(queue);
    let table = QueueTable::resolve(tbl);
    controls::write::<bool>(
        include_str!("../queries/resume.sql"),
        &table,
        queue,
        None,
        "resume",
    )
    .unwrap_or(false)
}
