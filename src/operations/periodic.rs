//! Periodic jobs: `pq_schedule('nightly', '0 3 * * *', 'reports', '{"kind":"daily"}')` puts one
//! job in `reports` at 03:00 UTC every day.
//!
//! Schedules are rows of `pq_periodic` (view `pq_schedules`), each with its `next_run`.
//! `pq_run_schedules()` takes the due rows with `FOR UPDATE SKIP LOCKED`, puts one job for
//! each as the role that scheduled it, and moves `next_run` to the schedule's next tick after
//! now, in the same transaction: however many runners there are (the maintenance worker
//! every second when pq is preloaded, pg_cron elsewhere), each tick puts exactly one job, and
//! a crash before commit puts none and leaves the tick due. Ticks missed while nothing ran
//! (the server was down) are not replayed one by one: the first run afterwards puts one job for
//! all of them, and the schedule goes on from the next tick after now.
//!
//! A schedule's jobs are put as its owner, never as the runner (a superuser): a task a role
//! schedules runs as that role. Row security shows each role only its own schedules.

use crate::plumbing::error::{raise, require, require_queue};
use crate::plumbing::pinning::pinned;
use crate::plumbing::table::QueueTable;
use crate::queue::claim::clock;
use pgrx::datum::{DatumWithOid, JsonB, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::str::FromStr;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A parsed 5-field cron schedule (minute, hour, day of month, month, day of week), or an
/// alias such as `@hourly`, in UTC.
struct Schedule(croner::Cron);

impl Schedule {
    /// Parses `spec`, raising 22023 with a valid example when it is not a 5-field schedule.
    fn parse(spec: &str) -> Schedule {
        Schedule::try_parse(spec).unwrap_or_else(|| {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid cron schedule {spec:?}: expected 5 fields (minute hour day month weekday)"),
                "use a schedule such as '*/5 * * * *' (every 5 minutes), '0 3 * * *' (03:00 UTC daily) or '@hourly'",
            )
        })
    }

    fn try_parse(spec: &str) -> Option<Schedule> {
        let alias = spec.trim_start().starts_with('@');
        if !alias && spec.split_whitespace().count() != 5 {
            return None;
        }
        croner::Cron::from_str(spec.trim()).ok().map(Schedule)
    }

    /// The first tick strictly after `after`.
    fn next_after(&self, after: TimestampWithTimeZone) -> TimestampWithTimeZone {
        use chrono::TimeZone;
        let unix = after.into_inner().saturating_add(PG_EPOCH_MICROS);
        let next = chrono::Utc
            .timestamp_micros(unix)
            .single()
            .and_then(|t| self.0.find_next_occurrence(&t, false).ok());
        match next {
            Some(t) => TimestampWithTimeZone::try_from(t.timestamp_micros() - PG_EPOCH_MICROS)
                .unwrap_or(TimestampWithTimeZone::try_from(i64::MAX).expect("infinity")),
            None => raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "cron schedule {:?} has no next run",
                    self.0.pattern.to_string()
                ),
                "use a schedule that recurs, such as '0 3 * * *'",
            ),
        }
    }
}

/// The qualified name of `pq_periodic`. Runs under the pinned search_path.
fn periodic_table() -> String {
    match crate::plumbing::table::extension_relation("pq_periodic") {
        Some((oid, _)) => crate::plumbing::table::qualified_name(oid),
        None => raise(
            ERRCODE_UNDEFINED_TABLE,
            "this database's pq has no periodic jobs yet".into(),
            "run ALTER EXTENSION pq UPDATE",
        ),
    }
}

/// Runs `sql` (`{periodic}` for the table) with `args`; returns its rows' first columns.
fn run<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Vec<Option<T>> {
    let sql = sql.replace("{periodic}", &periodic_table());
    Spi::connect_mut(|c| {
        c.update(&sql, None, args)
            .unwrap_or_else(|e| panic!("periodic jobs: {e}"))
            .map(|r| r.get::<T>(1).ok().flatten())
            .collect()
    })
}

/// Creates (or replaces) periodic job `name`: at every tick of `cron` (5 fields, UTC), one job
/// with `data` is put in `queue` of `tbl`, as the current role, which needs INSERT on the
/// table. Returns the first run.
///
/// ```sql
/// SELECT pq_schedule('nightly-report', '0 3 * * *', 'reports', '{"kind":"daily"}');
/// SELECT pq_schedule('tick', '* * * * *', 'default', '{"function": "public.tick()"}');
/// ```
#[pg_extern(sql = false)]
fn pq_schedule(
    name: Option<&str>,
    cron: Option<&str>,
    queue: Option<&str>,
    data: Option<JsonB>,
    tbl: Option<pg_sys::Oid>,
) -> TimestampWithTimeZone {
    let name = require(name, "name", "'nightly-report'");
    if name.is_empty() {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a periodic job's name must not be empty".into(),
            "name it, e.g. 'nightly-report'",
        )
    }
    let cron = require(cron, "cron", "'0 3 * * *'");
    let schedule = Schedule::parse(cron);
    let queue = require_queue(queue);
    let data = require(data, "data", "'{\"kind\":\"daily\"}'");
    let table = QueueTable::resolve(tbl);
    let may_insert = unsafe {
        pg_sys::pg_class_aclcheck(
            table.oid,
            pg_sys::GetUserId(),
            pg_sys::ACL_INSERT as pg_sys::AclMode,
        ) == pg_sys::AclResult::ACLCHECK_OK
    };
    if !may_insert {
        let t = crate::plumbing::table::qualified_name(table.oid);
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to schedule jobs into table {t}"),
            &format!("a schedule puts jobs as you: you need INSERT on {t}"),
        )
    }
    let next = schedule.next_after(clock());
    pinned(|_| {
        run::<TimestampWithTimeZone>(
            include_str!("../queries/schedule.sql"),
            &[
                name.into(),
                cron.trim().into(),
                queue.into(),
                data.into(),
                table.oid.into(),
                next.into(),
            ],
        )
    })
    .into_iter()
    .next()
    .flatten()
    .unwrap_or(next)
}

/// Removes periodic job `name` (one of your own); true if it existed.
///
/// ```sql
/// SELECT pq_unschedule('nightly-report');
/// ```
#[pg_extern(sql = false)]
fn pq_unschedule(name: Option<&str>) -> bool {
    let name = require(name, "name", "'nightly-report'");
    pinned(|_| run::<bool>(include_str!("../queries/unschedule.sql"), &[name.into()]))
        .into_iter()
        .any(|r| r == Some(true))
}

/// Puts one job for every due periodic job (those the caller may see: all of them for a
/// superuser); returns how many it put. The maintenance worker calls it every second when pq is
/// preloaded; elsewhere, schedule it with pg_cron:
///
/// ```sql
/// SELECT cron.schedule('pq-periodic', '* * * * *', 'SELECT pq_run_schedules()');
/// ```
#[pg_extern(sql = false)]
fn pq_run_schedules() -> i32 {
    run_due()
}

/// One due schedule, as locked by `due_schedules.sql`.
struct Due {
    name: String,
    cron: String,
    queue: String,
    data: JsonB,
    tbl: pg_sys::Oid,
    owner: pg_sys::Oid,
}

/// [`pq_run_schedules`]: the body the maintenance worker calls too.
pub fn run_due() -> i32 {
    let now = clock();
    pinned(|_| {
        let sql =
            include_str!("../queries/due_schedules.sql").replace("{periodic}", &periodic_table());
        let due: Vec<Due> = Spi::connect_mut(|c| {
            c.update(&sql, None, &[now.into()])
                .unwrap_or_else(|e| panic!("periodic jobs: {e}"))
                .filter_map(|r| {
                    Some(Due {
                        name: r.get::<String>(1).ok().flatten()?,
                        cron: r.get::<String>(2).ok().flatten()?,
                        queue: r.get::<String>(3).ok().flatten()?,
                        data: r.get::<JsonB>(4).ok().flatten()?,
                        tbl: r.get::<pg_sys::Oid>(5).ok().flatten()?,
                        owner: r.get::<pg_sys::Oid>(6).ok().flatten()?,
                    })
                })
                .collect()
        });
        let mut put = 0;
        for d in due {
            let mut job = None;
            // As the owner, in a subtransaction: one schedule that cannot put (a dropped table,
            // a revoked privilege, a bad cron) is logged and moved on, never blocking the rest.
            let failure = crate::plumbing::subxact::catching(|| {
                crate::tasks::sandbox::as_role(
                    d.owner,
                    pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
                    || {
                        let table = QueueTable::resolve(Some(d.tbl));
                        let data = JsonB(d.data.0.clone());
                        job = Some(crate::queue::put::insert(
                            &table,
                            &d.queue,
                            data.into(),
                            None,
                            None,
                            None,
                        ));
                    },
                )
            });
            if let Some(f) = &failure {
                pgrx::warning!(
                    "pq: periodic job {:?} could not put its job ({}: {})",
                    d.name,
                    f.sqlstate,
                    f.message
                );
                job = None;
            }
            put += job.is_some() as i32;
            let next = match Schedule::try_parse(&d.cron) {
                Some(s) => s.next_after(now),
                // A schedule written by hand that does not parse tries again in an hour.
                None => {
                    TimestampWithTimeZone::try_from(now.into_inner() + 3_600_000_000).unwrap_or(now)
                }
            };
            run::<i32>(
                include_str!("../queries/schedule_ran.sql"),
                &[d.name.as_str().into(), next.into(), now.into(), job.into()],
            );
        }
        put
    })
}
