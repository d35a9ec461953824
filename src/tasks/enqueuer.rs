//! Who enqueued a job. Every queue table has an `enqueued_by regrole` column and a
//! `pq_enqueued_by` trigger (sql/schema.sql) that stamps it with the current role, so a task
//! runs as, and is checked against, the role that really put it: plain `INSERT`s, Python pq's
//! `put` and `COPY` included. A producer cannot forge it:
//!
//! - an `INSERT` gets the inserting role, whatever it wrote;
//! - an `UPDATE` that changes `data` or `enqueued_by`, or puts a consumed job back
//!   (`dequeued_at` to NULL), makes the updating role the enqueuer: nobody can replay, retune
//!   or rewrite another role's task and have it run as that role. Only pq's own updates
//!   (claiming, recording an outcome, requeueing a failed task; see [`as_pq`]) keep it;
//! - superusers may write any value (a restore with `pg_restore` keeps the original roles).
//!
//! The trigger is written in Rust, not PL/pgSQL, so a put pays a few microseconds for it, and
//! it compares payloads as raw datums: an update that leaves `data` alone never decodes it.

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    /// The one row (table, job id) pq's own enqueuer-keeping statement is writing, if any.
    /// Only that row is trusted: code that runs meanwhile (a trigger on some other table the
    /// caller passed as `tbl`) gets no pass for any other row.
    static PQ_WRITING: Cell<Option<(pg_sys::Oid, i64)>> = const { Cell::new(None) };
}

/// Runs `f`, one of pq's own writes of job `id` in `table` that keep its enqueuer (claim,
/// outcome, requeue).
///
/// ```ignore
/// enqueuer::as_pq(table.oid, id, || client.select(plan, None, &[id.into()]));
/// ```
pub fn as_pq<R>(table: pg_sys::Oid, id: i64, f: impl FnOnce() -> R) -> R {
    let before = PQ_WRITING.with(|w| w.replace(Some((table, id))));
    // Reset on unwind too: a failed statement must not leave later writes trusted.
    struct Reset(Option<(pg_sys::Oid, i64)>);
    impl Drop for Reset {
        fn drop(&mut self) {
            PQ_WRITING.with(|w| w.set(self.0));
        }
    }
    let _reset = Reset(before);
    f()
}

/// The `pq_stamp_enqueuer()` trigger function, declared in sql/schema.sql.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_pq_stamp_enqueuer_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Stamps `enqueued_by` on a row being inserted or updated (a `BEFORE ... FOR EACH ROW`
/// trigger on every queue table).
///
/// ```sql
/// INSERT INTO queue (q_name, data, enqueued_by) VALUES ('q', '{}', 'postgres');
/// -- enqueued_by is the inserting role, unless that role is a superuser
/// ```
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pq_stamp_enqueuer_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: PostgreSQL calls a trigger function with TriggerData as the call context; we
    // check that before reading it, and read tuples only through the relation's descriptor.
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
            pgrx::error!("pq_stamp_enqueuer() is a trigger function");
        }
        let td = &*(context as *mut pg_sys::TriggerData);
        let event = td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
        let is_update = event == pg_sys::TRIGGER_EVENT_UPDATE;
        // Only as pq_create_table attaches it: BEFORE INSERT OR UPDATE ... FOR EACH ROW. Any
        // other use (a statement or TRUNCATE trigger has no row) is refused, not misread.
        let row_level = td.tg_event & pg_sys::TRIGGER_EVENT_ROW != 0;
        let before = td.tg_event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
        let insert_or_update = is_update || event == pg_sys::TRIGGER_EVENT_INSERT;
        if !(row_level && before && insert_or_update) || td.tg_trigtuple.is_null() {
            crate::plumbing::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                "pq_stamp_enqueuer() must be fired BEFORE INSERT OR UPDATE ... FOR EACH ROW".into(),
                "queue tables get it from pq_create_table('jobs'); do not attach it otherwise",
            )
        }
        let row = if is_update {
            td.tg_newtuple
        } else {
            td.tg_trigtuple
        };
        let desc = (*td.tg_relation).rd_att;
        let by = attnum(desc, c"enqueued_by");
        let me = pg_sys::GetUserId();
        let given = get(row, by, desc).map(|d| pg_sys::Oid::from(d.value() as u32));
        let keep = if pg_sys::superuser() {
            given.is_some()
        } else if is_update
            && PQ_WRITING.with(|w| w.get()) == Some(((*td.tg_relation).rd_id, row_id(row, desc)))
        {
            true
        } else if is_update {
            let old = td.tg_trigtuple;
            let data = attnum(desc, c"data");
            let dequeued = attnum(desc, c"dequeued_at");
            let owner_kept = given.is_some()
                && given == get(old, by, desc).map(|d| pg_sys::Oid::from(d.value() as u32));
            let requeued = get(old, dequeued, desc).is_some() && get(row, dequeued, desc).is_none();
            owner_kept && !requeued && same_data(get(old, data, desc), get(row, data, desc))
        } else {
            given == Some(me)
        };
        report_pending((*td.tg_relation).rd_id, row, desc, !is_update);
        if keep {
            return pg_sys::Datum::from(row);
        }
        let mut value = pg_sys::Datum::from(me);
        let mut null = false;
        let mut column = by;
        let stamped =
            pg_sys::heap_modify_tuple_by_cols(row, desc, 1, &mut column, &mut value, &mut null);
        pg_sys::Datum::from(stamped)
    }
}

/// Tells `wake` about a row that is pending (not dequeued) after this insert or update, so
/// its queue's waiters wake at commit and, if it is ready, its queue's head is lowered to it.
/// An inserted one is a put, counted (see `metrics`).
pub(crate) unsafe fn report_pending(
    table: pg_sys::Oid,
    row: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    insert: bool,
) {
    unsafe {
        if get(row, attnum(desc, c"dequeued_at"), desc).is_some() {
            return;
        }
        let Some(queue) = get(row, attnum(desc, c"q_name"), desc) else {
            return;
        };
        let queue = String::from_datum(queue, false).unwrap_or_default();
        if insert {
            crate::operations::metrics::count(table, &queue, |c| c.puts += 1);
        }
        let ready = get(row, attnum(desc, c"schedule_at"), desc)
            .is_none()
            .then(|| crate::queue::heads::Key {
                expected_at: get(row, attnum(desc, c"expected_at"), desc).map(|d| d.value() as i64),
                id: row_id(row, desc),
            });
        crate::queue::wake::on_pending(table, &queue, ready);
    }
}

/// The `id` of a queue table row.
unsafe fn row_id(row: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> i64 {
    unsafe { get(row, attnum(desc, c"id"), desc) }.map_or(0, |d| d.value() as i64)
}

/// The number of column `name`, checked to be of the queue layout's type: the trigger reads
/// datums by type, so on a table of another layout (anyone may attach it to their own tables)
/// it refuses instead of misreading them.
unsafe fn attnum(desc: pg_sys::TupleDesc, name: &std::ffi::CStr) -> i32 {
    let n = unsafe { pg_sys::SPI_fnumber(desc, name.as_ptr()) };
    let want = match name.to_bytes() {
        b"id" => pg_sys::INT8OID,
        b"enqueued_by" => pg_sys::REGROLEOID,
        b"data" => pg_sys::JSONBOID,
        b"q_name" => pg_sys::TEXTOID,
        _ => pg_sys::TIMESTAMPTZOID, // dequeued_at, schedule_at, expected_at
    };
    if n <= 0 || unsafe { pg_sys::SPI_gettypeid(desc, n) } != want {
        crate::plumbing::error::raise(
            pgrx::PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("pq_stamp_enqueuer() runs on queue tables only: this table's column {name:?} is missing or of another type"),
            "create queue tables with SELECT pq_create_table('jobs')",
        )
    }
    n
}

unsafe fn get(
    row: pg_sys::HeapTuple,
    attnum: i32,
    desc: pg_sys::TupleDesc,
) -> Option<pg_sys::Datum> {
    let mut null = false;
    let d = unsafe { pg_sys::heap_getattr(row, attnum, desc, &mut null) };
    (!null).then_some(d)
}

/// Whether a payload is unchanged: the same datum (often the same TOAST pointer), never decoded.
unsafe fn same_data(old: Option<pg_sys::Datum>, new: Option<pg_sys::Datum>) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => unsafe { same_bytes(old, new) },
        (old, new) => old.is_none() && new.is_none(),
    }
}

/// `datumIsEqual` for a varlena (not in pgrx's bindings): the same bytes, header included. An
/// unchanged TOASTed payload compares as its TOAST pointer, without being fetched.
unsafe fn same_bytes(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
    unsafe {
        let (a, b) = (
            a.cast_mut_ptr::<pg_sys::varlena>(),
            b.cast_mut_ptr::<pg_sys::varlena>(),
        );
        let (la, lb) = (pgrx::varlena::varsize_any(a), pgrx::varlena::varsize_any(b));
        la == lb
            && std::slice::from_raw_parts(a as *const u8, la)
                == std::slice::from_raw_parts(b as *const u8, lb)
    }
}
