//! Jobs: what a claim hands to `pq_get`, blocking waits and `pq_work` (Python pq's `Job`).

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

/// A job's jsonb payload as PostgreSQL stored it: handed from the table to the caller
/// without decoding into Rust values and back.
#[derive(Clone, Copy)]
pub struct Payload(pub pg_sys::Datum);

pgrx::impl_sql_translatable!(Payload, "jsonb");

impl IntoDatum for Payload {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: the datum is a valid jsonb value in a context that outlives the call.
unsafe impl pgrx::callconv::BoxRet for Payload {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

/// A claimed job, as `pq_get` returns it (Python pq's `Job`).
pub struct Job {
    pub id: i64,
    /// The payload, copied out of SPI into the memory context given to [`claim`].
    pub data: Payload,
    /// Length of the JSON text, as Python pq's `Job.size`.
    pub size: i32,
    pub enqueued_at: TimestampWithTimeZone,
    pub schedule_at: Option<TimestampWithTimeZone>,
    pub expected_at: Option<TimestampWithTimeZone>,
    /// The role that enqueued the job (see `enqueuer`): the one a task runs as.
    pub enqueued_by: pg_sys::Oid,
}
