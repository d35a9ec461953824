//! Get: the SQL face of claiming, `pq_get(queue, timeout, batch_size, tbl)`.

use crate::plumbing::error::{raise, require_queue};
use crate::plumbing::table::QueueTable;
use crate::queue::claim::{Job, Only};
use crate::queue::wait;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use pgrx::PgSqlErrorCode::*;
use std::time::Duration;

/// Claims up to `batch_size` ready jobs of `queue` for the current transaction, waiting up to
/// `timeout` (default `'0'`: no wait; NULL: until interrupted) for the first. Commit consumes
/// the jobs, rollback returns them. With `functions`, only task jobs naming one of them (a
/// client worker's handlers).
///
/// ```sql
/// BEGIN;
/// SELECT * FROM pq_get('apples');            -- zero or one row
/// SELECT * FROM pq_get('apples', '5s', 10);  -- wait up to 5 s, take up to 10
/// COMMIT;
/// ```
#[pg_extern(sql = false)]
fn pq_get(
    queue: Option<&str>,
    timeout: Option<Interval>,
    batch_size: Option<i32>,
    tbl: Option<pg_sys::Oid>,
    functions: Option<Vec<Option<String>>>,
    fcinfo: pg_sys::FunctionCallInfo,
) {
    let queue = require_queue(queue);
    let functions: Option<Vec<String>> = functions.map(|names| {
        names
            .into_iter()
            .map(|name| {
                name.unwrap_or_else(|| {
                    raise(
                        ERRCODE_NULL_VALUE_NOT_ALLOWED,
                        "functions must not contain NULL".into(),
                        "pass the handlers' names, e.g. functions => ARRAY['eat']",
                    )
                })
            })
            .collect()
    });
    let limit = match batch_size {
        Some(n) if n > 0 && n as usize > crate::queue::claim::MAX_CLAIMS => raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "batch_size must be at most {}, got {n}",
                crate::queue::claim::MAX_CLAIMS
            ),
            "each claimed job holds a lock until commit: take at most 1000 per transaction",
        ),
        other => crate::plumbing::error::at_least_one(
            other,
            "batch_size",
            "pass a batch size such as 10, or leave it out for one job",
        ) as usize,
    };
    let timeout = timeout.map(duration);
    let table = QueueTable::resolve(tbl);
    let only = functions.as_deref().map_or(Only::All, Only::AnyOf);
    // SAFETY: fcinfo is this call's; the rows are handed over in one tuplestore.
    let rows = unsafe { Rows::begin(fcinfo) };
    // Payloads stay in the caller's memory only until the tuplestore copies them. (This
    // context itself, not `CurrentMemoryContext`, which names whichever is current when used:
    // a claim's pass runs in a context of its own, reset after it.)
    // SAFETY: the current context, alive until the executor's next reset after this call.
    let mut memcx = PgMemoryContexts::For(unsafe { pg_sys::CurrentMemoryContext });
    let jobs = if timeout == Some(Duration::ZERO) {
        crate::queue::claim::claim(&table, queue, only, limit, &mut memcx)
    } else {
        if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
            raise(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                "pq_get cannot wait in a REPEATABLE READ or SERIALIZABLE transaction: its snapshot would never see new jobs".into(),
                "wait in a READ COMMITTED transaction, or pass timeout => '0'",
            )
        }
        wait::get(&table, queue, only, timeout, limit, &mut memcx)
    };
    for job in &jobs {
        rows.put(job);
    }
}

/// The rows of one `pq_get` call, returned all at once (materialize mode): the executor reads
/// them as they are, in the row type it expects, instead of calling the function once per row
/// and copying each (value-per-call), and the row type is not looked up again in `pg_proc`.
struct Rows {
    store: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
}

impl Rows {
    /// Sets up the call's result tuplestore.
    ///
    /// # Safety
    /// `fcinfo` is this set-returning call's.
    unsafe fn begin(fcinfo: pg_sys::FunctionCallInfo) -> Rows {
        unsafe {
            let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            // The row type the caller expects, when it says (it raises a clear error when the
            // call cannot take a set); otherwise the function's own.
            let expected = !rsinfo.is_null()
                && (*rsinfo).type_ == pg_sys::NodeTag::T_ReturnSetInfo
                && !(*rsinfo).expectedDesc.is_null();
            let flags = if expected {
                pg_sys::MAT_SRF_USE_EXPECTED_DESC
            } else {
                0
            };
            pg_sys::InitMaterializedSRF(fcinfo, flags);
            Rows {
                store: (*rsinfo).setResult,
                desc: (*rsinfo).setDesc,
            }
        }
    }

    /// Adds `job` as a row; the tuplestore copies what it refers to.
    fn put(&self, j: &Job) {
        let ts = |t: Option<TimestampWithTimeZone>| t.and_then(|t| t.into_datum());
        let datums = [
            j.id.into_datum(),
            Some(j.data.0),
            j.size.into_datum(),
            j.enqueued_at.into_datum(),
            ts(j.schedule_at),
            ts(j.expected_at),
        ];
        let mut nulls = datums.map(|d| d.is_none());
        let mut values = datums.map(|d| d.unwrap_or(pg_sys::Datum::from(0)));
        // SAFETY: six values of the six columns of pq_get's row type.
        unsafe {
            pg_sys::tuplestore_putvalues(
                self.store,
                self.desc,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        };
    }
}

/// A `timeout` argument as a wall-clock duration.
fn duration(i: Interval) -> Duration {
    crate::queue::timespec::non_negative(
        i,
        "timeout",
        "pass a timeout such as '5s', '0' for no wait, or NULL to wait until interrupted",
    )
}
