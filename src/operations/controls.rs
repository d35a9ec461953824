//! Queue controls: whether a queue is paused and how many of its jobs may be claimed at once,
//! kept in the table `pq_queue_controls` so they survive restarts and `pg_dump`.
//!
//! Every claim asks [`of`], so the answer comes from a per-session cache, loaded with one
//! read of the controls table per queue table (without a statement, see `load`). The table's trigger, `pq_controls_changed()`, invalidates the queue
//! table's relcache entry in every session when the writing transaction commits (however the
//! row was written: `pq_pause`, `pq_set_limit`, a plain `UPDATE`, `pg_restore`), which drops
//! that table's cached controls, and it wakes the queue's blocked getters at commit, so a resume
//! or a raised limit is seen at once.

use crate::plumbing::invalidation::Cache;
use crate::plumbing::table::QueueTable;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One queue's controls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// Nothing takes its jobs (`pq_pause`).
    pub paused: bool,
    /// At most this many of its jobs claimed at once (`pq_set_limit`).
    pub limit: Option<u32>,
}

thread_local! {
    /// Controls per queue table, by queue name (queues without controls are absent).
    static CACHE: RefCell<HashMap<pg_sys::Oid, Rc<HashMap<String, Controls>>>> =
        RefCell::new(HashMap::new());
}

/// The controls of `queue` in `table`, as committed (a blocked get that waits in one long
/// statement still sees a pause or resume of another session).
///
/// ```ignore
/// if controls::of(&table, "apples").paused { return vec![]; }
/// ```
pub fn of(table: &QueueTable, queue: &str) -> Controls {
    all(table).get(queue).copied().unwrap_or_default()
}

/// The controls of every queue of `table` that has some, as committed.
pub fn all(table: &QueueTable) -> Rc<HashMap<String, Controls>> {
    // SAFETY: processes pending invalidation messages, as any lock acquisition does.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if let Some(stale) = crate::plumbing::invalidation::take(Cache::Controls) {
        CACHE.with(|c| c.borrow_mut().retain(|oid, _| !stale(oid)));
    }
    let cached = CACHE.with(|c| c.borrow().get(&table.oid).cloned());
    cached.unwrap_or_else(|| {
        let loaded = Rc::new(load(table.oid));
        CACHE.with(|c| c.borrow_mut().insert(table.oid, loaded.clone()));
        loaded
    })
}

/// Reads the controls of `table`'s queues from `pq_queue_controls`, with the newest snapshot:
/// a session in a REPEATABLE READ transaction must not cache (and keep using afterwards)
/// controls its old snapshot saw. Read without a statement (a tiny table everyone may read),
/// so a backend's first claim plans nothing for it. A database whose extension predates the
/// controls table (not yet `ALTER EXTENSION pq UPDATE`d) has none.
fn load(table: pg_sys::Oid) -> HashMap<String, Controls> {
    let mut controls = HashMap::new();
    let Some((relation, _)) = crate::plumbing::table::extension_relation("pq_queue_controls")
    else {
        return controls;
    };
    let [tbl, queue, paused_at, limit] = layout(relation);
    crate::plumbing::catalog::scan_latest(
        relation,
        tbl,
        pg_sys::F_OIDEQ,
        pg_sys::Datum::from(table),
        // SAFETY: a live row of the controls table, its columns of the types checked.
        |row, desc| unsafe {
            let get = |attno| crate::plumbing::catalog::column(row, desc, attno);
            if let Some(queue) = get(queue).and_then(|d| String::from_datum(d, false)) {
                controls.insert(
                    queue,
                    Controls {
                        paused: get(paused_at).is_some(),
                        limit: get(limit).map(|d| (d.value() as i32).max(1) as u32),
                    },
                );
            }
        },
    );
    controls
}

/// The numbers of `pq_queue_controls`' columns `tbl`, `q_name`, `paused_at` and
/// `concurrency_limit`, checked to be of pq's types (rows are read by type).
fn layout(relation: pg_sys::Oid) -> [u32; 4] {
    let wanted = [
        (c"tbl", pg_sys::REGCLASSOID),
        (c"q_name", pg_sys::TEXTOID),
        (c"paused_at", pg_sys::TIMESTAMPTZOID),
        (c"concurrency_limit", pg_sys::INT4OID),
    ];
    wanted.map(|(name, ty)| {
        // SAFETY: catalog lookups.
        let attno = unsafe { pg_sys::get_attnum(relation, name.as_ptr()) };
        if attno <= 0 || unsafe { pg_sys::get_atttype(relation, attno) } != ty {
            crate::plumbing::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!(
                    "pq_queue_controls.{} is missing or of another type",
                    name.to_str().unwrap_or("?")
                ),
                "restore pq's table: ALTER EXTENSION pq UPDATE, or drop and create the extension",
            )
        }
        attno as u32
    })
}

/// The `pq_controls_changed()` trigger function, declared in sql/schema.sql.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_pq_controls_changed_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// After a row of `pq_queue_controls` changes: every session forgets the controls of its
/// queue table at commit, and the queue's blocked getters wake to look again.
///
/// ```sql
/// UPDATE pq_queue_controls SET paused_at = NULL WHERE q_name = 'apples'; -- as pq_resume
/// ```
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pq_controls_changed_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: called by PostgreSQL as a trigger; rows are read through their descriptor.
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
            pgrx::error!("pq_controls_changed() is a trigger function");
        }
        let td = &*(context as *mut pg_sys::TriggerData);
        let own = crate::plumbing::table::extension_relation("pq_queue_controls");
        if own.map(|(oid, _)| oid) != Some((*td.tg_relation).rd_id) {
            crate::plumbing::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                "pq_controls_changed() is the trigger of pq_queue_controls only".into(),
                "do not attach it to other tables",
            )
        }
        let event = td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
        if event == pg_sys::TRIGGER_EVENT_TRUNCATE {
            pg_sys::CacheInvalidateRelcacheAll();
            return pg_sys::Datum::from(0);
        }
        let desc = (*td.tg_relation).rd_att;
        let mut rows = vec![td.tg_trigtuple];
        if event == pg_sys::TRIGGER_EVENT_UPDATE {
            rows.push(td.tg_newtuple);
        }
        for row in rows.into_iter().filter(|r| !r.is_null()) {
            let (mut null_t, mut null_q) = (false, false);
            let tbl = pg_sys::heap_getattr(row, 1, desc, &mut null_t);
            let queue = pg_sys::heap_getattr(row, 2, desc, &mut null_q);
            if null_t || null_q {
                continue;
            }
            let tbl = pg_sys::Oid::from(tbl.value() as u32);
            if pg_sys::get_rel_name(tbl).is_null() {
                continue; // the controls of a dropped table
            }
            pg_sys::CacheInvalidateRelcacheByRelid(tbl);
            if let Some(queue) = String::from_datum(queue, false) {
                crate::queue::wake::on_pending(tbl, &queue, None);
            }
        }
        pg_sys::Datum::from(0)
    }
}

/// Runs `sql` (`{controls}` for the controls table) with (table, queue, `extra`) after checking
/// that the current role may UPDATE `table`, the privilege the controls of its queues need;
/// returns the first column of the first row, if any. `verb` names the action in errors.
pub fn write<T: FromDatum + IntoDatum>(
    sql: &str,
    table: &QueueTable,
    queue: &str,
    extra: Option<pgrx::datum::DatumWithOid<'_>>,
    verb: &str,
) -> Option<T> {
    require_update(table, &format!("{verb} queue {queue:?} of"));
    crate::plumbing::pinning::pinned(|_| {
        let Some((oid, owner)) = crate::plumbing::table::extension_relation("pq_queue_controls")
        else {
            crate::plumbing::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                "this database's pq has no queue controls yet".into(),
                "run ALTER EXTENSION pq UPDATE",
            )
        };
        let sql = sql.replace("{controls}", &crate::plumbing::table::qualified_name(oid));
        let mut args = vec![table.oid.into(), queue.into()];
        args.extend(extra);
        // As the controls table's owner (the privilege was checked above): no other role may
        // write the table, or lock it.
        crate::tasks::sandbox::as_role(owner, 0, || {
            Spi::connect_mut(|c| {
                let rows = c
                    .update(&sql, None, &args)
                    .unwrap_or_else(|e| panic!("queue controls: {e}"));
                if rows.is_empty() {
                    None
                } else {
                    rows.first()
                        .get_one::<T>()
                        .unwrap_or_else(|e| panic!("queue controls: {e}"))
                }
            })
        })
    })
}

/// Raises 42501 unless the current role may UPDATE `table`: the privilege that lets it change
/// the table's jobs, which the controls of its queues and cancelling its jobs need. `what`
/// says what was refused (`"pause queue \"apples\" of"`).
pub fn require_update(table: &QueueTable, what: &str) {
    if !crate::plumbing::table::may(table.oid, pg_sys::ACL_UPDATE) {
        let name = crate::plumbing::table::qualified_name(table.oid);
        crate::plumbing::error::raise(
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what} table {name}"),
            &format!("this needs UPDATE on the queue table: GRANT UPDATE ON {name} TO ..."),
        )
    }
}
