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

use crate::plumbing::error::{raise, require, require_new_queue, require_short, MAX_NAME};
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
        require_short(
            spec,
            MAX_CRON,
            "cron schedule",
            "use a schedule such as '*/5 * * * *' (every 5 minutes) or '0 3 * * *' (03:00 UTC daily)",
        );
        Schedule::try_parse(spec).unwrap_or_else(|why| {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid cron schedule {spec:?}: {why}"),
                "use a schedule such as '*/5 * * * *' (every 5 minutes), '0 3 * * *' (03:00 UTC daily) or '@hourly'",
            )
        })
    }

    fn try_parse(spec: &str) -> Result<Schedule, String> {
        let alias = spec.trim_start().starts_with('@');
        if !alias && spec.split_whitespace().count() != 5 {
            return Err("expected 5 fields (minute hour day month weekday)".into());
        }
        croner::Cron::from_str(spec.trim())
            .map(Schedule)
            .map_err(|e| e.to_string())
    }

    /// The first tick strictly after `after`; `None` if the schedule never recurs.
    fn next_after(&self, after: TimestampWithTimeZone) -> Option<TimestampWithTimeZone> {
        use chrono::TimeZone;
        let unix = after.into_inner().saturating_add(PG_EPOCH_MICROS);
        let next = chrono::Utc
            .timestamp_micros(unix)
            .single()
            .and_then(|t| self.0.find_next_occurrence(&t, false).ok())?;
        TimestampWithTimeZone::try_from(next.timestamp_micros() - PG_EPOCH_MICROS).ok()
    }
}

/// The qualified name of `pq_periodic` and its owner, who alone writes it. Runs under the
/// pinned search_path.
fn periodic_table() -> (String, pg_sys::Oid) {
    match crate::plumbing::table::extension_relation("pq_periodic") {
        Some((oid, owner)) => (crate::plumbing::table::qualified_name(oid), owner),
        None => raise(
            ERRCODE_UNDEFINED_TABLE,
            "this database's pq has no periodic jobs yet".into(),
            "run ALTER EXTENSION pq UPDATE",
        ),
    }
}

/// Runs `sql` (`{periodic}` for the table) with `args`, as the table's owner; returns its rows'
/// first columns. The statements check the caller's rights themselves.
fn run<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Vec<Option<T>> {
    let (table, owner) = periodic_table();
    let sql = sql.replace("{periodic}", &table);
    crate::tasks::sandbox::as_role(owner, 0, || {
        Spi::connect_mut(|c| {
            c.update(&sql, None, args)
                .unwrap_or_else(|e| panic!("periodic jobs: {e}"))
                .map(|r| r.get::<T>(1).ok().flatten())
                .collect()
        })
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
    require_short(
        name,
        MAX_NAME,
        "a periodic job's name",
        "name it, e.g. 'nightly-report'",
    );
    if name.is_empty() {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a periodic job's name must not be empty".into(),
            "name it, e.g. 'nightly-report'",
        )
    }
    let cron = require(cron, "cron", "'0 3 * * *'");
    let schedule = Schedule::parse(cron);
    let queue = require_new_queue(queue);
    let data = require(data, "data", "'{\"kind\":\"daily\"}'");
    let size = data.0.to_string().len();
    if size > MAX_DATA {
        raise(
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("a periodic job's data is at most 1 MB, got {size} bytes"),
            "keep the job's data small: put a reference (an id, a path) to what it works on",
        )
    }
    let table = QueueTable::resolve(tbl);
    if !crate::plumbing::table::may(table.oid, pg_sys::ACL_INSERT) {
        let t = crate::plumbing::table::qualified_name(table.oid);
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to schedule jobs into table {t}"),
            &format!("a schedule puts jobs as you: you need INSERT on {t}"),
        )
    }
    let Some(next) = schedule.next_after(clock()) else {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cron schedule {cron:?} has no next run"),
            "use a schedule that recurs, such as '0 3 * * *'",
        )
    };
    let me = unsafe { pg_sys::GetUserId() };
    let replaced = pinned(|_| {
        run::<TimestampWithTimeZone>(
            include_str!("../queries/schedule.sql"),
            &[
                name.into(),
                cron.trim().into(),
                queue.into(),
                data.into(),
                table.oid.into(),
                next.into(),
                me.into(),
            ],
        )
    });
    match replaced.into_iter().next().flatten() {
        Some(next) => next,
        None => raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("periodic job {name:?} belongs to another role"),
            "pick another name, or ask its owner to pq_unschedule it",
        ),
    }
}

/// Removes periodic job `name` (one of your own); true if it existed.
///
/// ```sql
/// SELECT pq_unschedule('nightly-report');
/// ```
#[pg_extern(sql = false)]
fn pq_unschedule(name: Option<&str>) -> bool {
    let name = require(name, "name", "'nightly-report'");
    let me = unsafe { pg_sys::GetUserId() };
    pinned(|_| {
        run::<bool>(
            include_str!("../queries/unschedule.sql"),
            &[name.into(), me.into()],
        )
    })
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
    run_due(usize::MAX)
}

/// Longest one schedule's put may take: a slow put (a lock held on its table, a trigger that
/// sleeps) is cancelled and logged, and never holds up the other schedules for long.
const PUT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest `data` `pq_schedule` accepts: a schedule is a template, not a payload store.
pub const MAX_DATA: usize = 1 << 20;

/// The longest cron schedule accepted: real ones are a few dozen bytes, and it is stored with
/// the schedule and parsed again at every run.
const MAX_CRON: usize = 1000;

/// [`pq_run_schedules`], the body the maintenance worker calls too: one due schedule at a time
/// (`due_schedules.sql` locks one row), until none is due or `max` were run. Returns how many
/// jobs it put.
pub fn run_due(max: usize) -> i32 {
    let mut put = 0;
    for _ in 0..max {
        match run_one() {
            Some(true) => put += 1,
            Some(false) => {}
            None => break,
        }
    }
    put
}

/// Runs the first due schedule: `Some(true)` if it put its job, `Some(false)` if it could not
/// (logged), `None` if nothing is due.
///
/// Its put runs as a task runs (`sandbox::run_as`): as the schedule's owner, a
/// security-restricted operation, every setting it changes undone afterwards, within
/// [`PUT_LIMIT`]. So a trigger of the owner's cannot leave a setting behind in the runner's
/// session (a superuser's, or the maintenance worker's), and cannot stall it.
pub fn run_one() -> Option<bool> {
    let now = clock();
    let me = unsafe { pg_sys::GetUserId() };
    pinned(|_| {
        let (periodic, periodic_owner) = periodic_table();
        let sql = include_str!("../queries/due_schedules.sql").replace("{periodic}", &periodic);
        // The table is read and written as its owner, for the schedules whose owner's rights the
        // caller has; each put runs as its schedule's owner (below).
        crate::tasks::sandbox::as_role(periodic_owner, 0, || {
            Spi::connect_mut(|c| {
                let rows = c
                    .update(&sql, None, &[now.into(), me.into()])
                    .unwrap_or_else(|e| panic!("periodic jobs: {e}"));
                if rows.is_empty() {
                    return None;
                }
                let row = rows.first();
                let name = row.get::<String>(1).ok().flatten().unwrap_or_default();
                let cron = row.get::<String>(2).ok().flatten().unwrap_or_default();
                let queue = row.get::<String>(3).ok().flatten().unwrap_or_default();
                let data = row.get_datum_by_ordinal(4).ok().flatten();
                let tbl = row.get::<pg_sys::Oid>(5).ok().flatten();
                let owner = row
                    .get::<pg_sys::Oid>(6)
                    .ok()
                    .flatten()
                    .unwrap_or(pg_sys::Oid::INVALID);
                let next = Schedule::try_parse(&cron)
                    .ok()
                    .and_then(|s| s.next_after(now));
                let mut job = None;
                let owner_exists = !unsafe { pg_sys::GetUserNameFromId(owner, true) }.is_null();
                // A dropped table's schedule stops, rather than warn at every tick (and put
                // into whatever table is given its oid later).
                let table_exists =
                    tbl.is_some_and(|t| !unsafe { pg_sys::get_rel_name(t) }.is_null());
                let runnable = owner_exists && table_exists;
                if !owner_exists {
                    pgrx::warning!("pq: periodic job {name:?} belongs to a role that no longer exists; it stops (pq_unschedule it)");
                } else if !table_exists {
                    pgrx::warning!("pq: periodic job {name:?} puts into a queue table that no longer exists; it stops (pq_unschedule it)");
                } else if let (Some(data), Some(tbl)) = (data, tbl) {
                    let deadline = crate::tasks::sandbox::Deadline::arm(Some(PUT_LIMIT));
                    // Session-level advisory locks the owner's code takes are released after the
                    // put, as after a task: they must not stay with the runner.
                    let locks = crate::tasks::sandbox::Locks::before();
                    let failure = crate::plumbing::subxact::catching(|| {
                        crate::tasks::sandbox::run_as(owner, || {
                            let table = QueueTable::resolve(Some(tbl));
                            // SAFETY: a jsonb datum of the row above, alive until this SPI call ends.
                            let data = unsafe { DatumWithOid::new(data, pg_sys::JSONBOID) };
                            job = Some(crate::queue::put::insert(
                                &table, &queue, data, None, None, None,
                            ));
                        })
                    });
                    locks.release_new();
                    let timed_out = deadline.expired();
                    drop(deadline);
                    if let Some(f) = failure {
                        if f.is_cancel() && !timed_out {
                            f.rethrow(); // the runner's own statement was cancelled
                        }
                        pgrx::warning!(
                            "pq: periodic job {name:?} could not put its job ({}: {})",
                            f.sqlstate,
                            f.message
                        );
                        job = None;
                    }
                }
                let next = next.filter(|_| runnable);
                if next.is_none() && runnable {
                    pgrx::warning!("pq: periodic job {name:?} has a cron schedule {cron:?} with no next run; it stops");
                }
                // No next run (a hand-written schedule that does not parse, or never recurs): never.
                let next =
                    next.unwrap_or(TimestampWithTimeZone::try_from(i64::MAX).expect("infinity"));
                let ran =
                    include_str!("../queries/schedule_ran.sql").replace("{periodic}", &periodic);
                let args = [name.as_str().into(), next.into(), now.into(), job.into()];
                c.update(&ran, None, &args)
                    .unwrap_or_else(|e| panic!("periodic jobs: {e}"));
                Some(job.is_some())
            })
        })
    })
}
