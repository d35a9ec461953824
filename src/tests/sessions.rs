//! Several real connections to the test cluster: what one transaction cannot show. Each test
//! uses its own queue names, so the tests can run in parallel.
#![cfg(test)]

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// A fresh connection to the test cluster, starting the cluster on first use.
pub(super) fn connect() -> Client {
    pgrx_tests::run_test(
        "cluster_ready",
        None,
        crate::pg_test::postgresql_conf_options(),
    )
    .expect("test cluster");
    pgrx_tests::client().expect("connect").0
}

/// Creates queue table `name`; with `sql_path`, without its ready index, so that claims read
/// it through SQL (`candidates.sql`) instead of from the indexes.
pub(super) fn queue_table(c: &mut Client, name: &str, sql_path: bool) {
    c.batch_execute(&format!("SELECT pq_create_table('{name}')"))
        .unwrap();
    if sql_path {
        c.batch_execute(&format!("DROP INDEX {name}_ready_idx"))
            .unwrap();
    }
}

/// Puts an empty job into queue `q` of `table`; its id.
pub(super) fn put_in(c: &mut Client, table: &str) -> i64 {
    c.query_one(
        &format!("SELECT pq_put('q', '{{}}', tbl => '{table}')"),
        &[],
    )
    .unwrap()
    .get(0)
}

/// Claims the next job of queue `q` of `table` without waiting; its id.
pub(super) fn get_in(c: &mut Client, table: &str) -> Option<i64> {
    c.query_opt(
        &format!("SELECT id FROM pq_get('q', tbl => '{table}')"),
        &[],
    )
    .unwrap()
    .map(|r| r.get(0))
}

fn put_n(c: &mut Client, queue: &str, n: i32) -> Vec<i64> {
    c.query(
        "SELECT * FROM pq_put_many($1, (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, $2::int) i))",
        &[&queue, &n],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn sqlstate(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("{e}"))
}

#[test]
fn four_getters_drain_thousands_exactly_once() {
    let mut c = connect();
    let ids: HashSet<i64> = put_n(&mut c, "s_drain", 4000).into_iter().collect();
    let start = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                let mut got = Vec::new();
                loop {
                    // Half the getters take one job per transaction, half take batches.
                    let batch = if w % 2 == 0 { 1 } else { 7 };
                    let mut tx = c.transaction().unwrap();
                    let rows = tx
                        .query(
                            "SELECT id FROM pq_get('s_drain', batch_size => $1)",
                            &[&batch],
                        )
                        .unwrap();
                    tx.commit().unwrap();
                    if rows.is_empty() {
                        return got;
                    }
                    got.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.join().unwrap());
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a job was taken twice");
    assert_eq!(unique, ids, "a job was lost");
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM queue WHERE q_name = 's_drain' AND dequeued_at IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn rollback_returns_the_job() {
    let mut c = connect();
    let id = put_n(&mut c, "s_rollback", 1)[0];
    let mut tx = c.transaction().unwrap();
    let got: i64 = tx
        .query_one("SELECT id FROM pq_get('s_rollback')", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, id);
    tx.rollback().unwrap();
    let again: i64 = c
        .query_one("SELECT id FROM pq_get('s_rollback')", &[])
        .unwrap()
        .get(0);
    assert_eq!(again, id);
}

#[test]
fn a_job_held_by_an_open_transaction_is_skipped_not_waited_on() {
    let mut a = connect();
    let mut b = connect();
    let ids = put_n(&mut a, "s_held", 2);
    let mut tx = a.transaction().unwrap();
    let held: i64 = tx
        .query_one("SELECT id FROM pq_get('s_held')", &[])
        .unwrap()
        .get(0);
    assert_eq!(held, ids[0]);
    b.batch_execute("SET statement_timeout = '2s'").unwrap();
    let next: i64 = b
        .query_one("SELECT id FROM pq_get('s_held')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next, ids[1]);
    assert!(b
        .query("SELECT id FROM pq_get('s_held')", &[])
        .unwrap()
        .is_empty());
    let in_flight: i64 = b
        .query_one("SELECT in_flight FROM pq_stats WHERE queue = 's_held'", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_flight, 1);
    tx.commit().unwrap();
}

#[test]
fn a_scheduled_job_is_not_returned_early_and_is_returned_once_due() {
    let mut c = connect();
    let id: i64 = c
        .query_one("SELECT pq_put('s_sched', '{}', '1s')", &[])
        .unwrap()
        .get(0);
    assert!(c
        .query("SELECT id FROM pq_get('s_sched')", &[])
        .unwrap()
        .is_empty());
    assert_eq!(
        c.query_one("SELECT pq_len('s_sched')", &[])
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    let t0 = Instant::now();
    let got: i64 = c
        .query_one("SELECT id FROM pq_get('s_sched', '10s')", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, id);
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// A blocked get whose queue's only job is scheduled wakes when that job is due, not at a later
/// poll (re-checks at 0.1, 0.3, 0.7, 1.5, 2.5, 3.5 s, so 0.7 s and 3.5 s here), on a table read
/// from its indexes and on one read through SQL alike, with another queue's job due earlier.
/// (Review: waking a moment before the due time, it slept a whole poll past it: a job
/// due in 350 ms came after 1.15 s, one due in 2.6 s after 3.6 s.)
#[test]
fn a_blocked_get_wakes_when_a_scheduled_job_is_due() {
    let mut c = connect();
    for (table, sql_path) in [("s_due_idx", false), ("s_due_sql", true)] {
        queue_table(&mut c, table, sql_path);
        for (due_ms, before_ms) in [(350, 600), (2600, 3200)] {
            c.batch_execute(&format!(
                "SELECT pq_put('other', '{{}}', '100ms', tbl => '{table}')"
            ))
            .unwrap();
            let id: i64 = c
                .query_one(
                    &format!("SELECT pq_put('q', '{{}}', '{due_ms}ms', tbl => '{table}')"),
                    &[],
                )
                .unwrap()
                .get(0);
            let t0 = Instant::now();
            let got: i64 = c
                .query_one(
                    &format!("SELECT id FROM pq_get('q', '10s', tbl => '{table}')"),
                    &[],
                )
                .unwrap()
                .get(0);
            let waited = t0.elapsed();
            assert_eq!(got, id, "{table}");
            assert!(
                waited >= Duration::from_millis(due_ms - 100)
                    && waited < Duration::from_millis(before_ms),
                "{table}: returned after {waited:?}, the job was due after {due_ms} ms"
            );
        }
    }
}

#[test]
fn a_blocked_get_wakes_on_a_put_from_another_session() {
    let mut c = connect();
    let waiter = thread::spawn(move || {
        let t0 = Instant::now();
        let row = c
            .query_one("SELECT data->>'n' FROM pq_get('s_wake', '30s')", &[])
            .unwrap();
        (row.get::<_, String>(0), t0.elapsed())
    });
    thread::sleep(Duration::from_millis(500));
    let mut p = connect();
    let put_at = Instant::now();
    p.execute(r#"SELECT pq_put('s_wake', '{"n":"7"}')"#, &[])
        .unwrap();
    let (n, waited) = waiter.join().unwrap();
    assert_eq!(n, "7");
    assert!(
        waited >= Duration::from_millis(400),
        "returned before the put: {waited:?}"
    );
    eprintln!("woke {:?} after the put", put_at.elapsed());
    assert!(put_at.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_blocked_get_is_interruptible() {
    let mut c = connect();
    c.batch_execute("SET statement_timeout = '300ms'").unwrap();
    let e = c
        .query("SELECT * FROM pq_get('s_cancel', NULL)", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    c.batch_execute("RESET statement_timeout").unwrap();
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);

    let mut other = connect();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        other
            .execute("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
    });
    let e = c
        .query("SELECT * FROM pq_get('s_cancel', '60s')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    canceller.join().unwrap();
}

#[test]
fn put_notifies_listeners_on_commit_only() {
    let mut listener = connect();
    listener.batch_execute("LISTEN s_notify").unwrap();
    let mut p = connect();
    let mut tx = p.transaction().unwrap();
    tx.execute("SELECT pq_put('s_notify', '{}')", &[]).unwrap();
    tx.rollback().unwrap();
    p.execute("SELECT pq_put('s_notify', '{}')", &[]).unwrap();
    let got: Vec<_> = listener
        .notifications()
        .timeout_iter(Duration::from_secs(5))
        .take(1)
        .collect()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].channel(), "s_notify");
    let more: Vec<_> = listener
        .notifications()
        .timeout_iter(Duration::from_millis(300))
        .collect()
        .unwrap();
    assert!(more.is_empty(), "the rolled-back put must not notify");
}

/// Bad input: the SQLSTATE, a message naming the value, and nothing written.
#[test]
fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let mut c = connect();
    let cases: &[(&str, &str, &str)] = &[
        ("SELECT pq_put('', '{}')", "22023", "must not be empty"),
        ("SELECT pq_put(NULL, '{}')", "22004", "must not be NULL"),
        (
            "SELECT pq_put('s_bad', NULL)",
            "22004",
            "data must not be NULL",
        ),
        ("SELECT pq_put('s_bad', 'not json')", "22P02", "json"),
        ("SELECT pq_put('s_bad', '{}', '5x')", "22007", "\"5x\""),
        ("SELECT pq_put('s_bad', '{}', '-5m')", "22007", "\"-5m\""),
        ("SELECT pq_put('s_bad', '{}', '')", "22007", "\"\""),
        ("SELECT pq_put('s_bad', '{}', '1.5h')", "22007", "\"1.5h\""),
        ("SELECT pq_put('s_bad', '{}', '5')", "22007", "\"5\""),
        ("SELECT pq_put('s_bad', '{}', 'soon')", "22007", "\"soon\""),
        (
            "SELECT pq_put('s_bad', '{}', '99999999999999d')",
            "22008",
            "too far",
        ),
        // Infinite times: an age nothing can compute (pq_stats failed for the whole table).
        (
            "SELECT pq_put('s_bad', '{}', '-infinity'::timestamptz)",
            "22008",
            "'-infinity' is not a finite time",
        ),
        (
            "SELECT pq_put('s_bad', '{}', '-infinity')",
            "22008",
            "schedule_at '-infinity' is not a finite time",
        ),
        (
            "SELECT pq_put('s_bad', '{}', 'infinity')",
            "22008",
            "'infinity' is not a finite time",
        ),
        (
            "SELECT pq_put('s_bad', '{}', NULL::timestamptz, '-infinity'::timestamptz)",
            "22008",
            "expected_at '-infinity'",
        ),
        (
            "SELECT pq_put('s_bad', '{}', expected_at => 'x1')",
            "22007",
            "expected_at",
        ),
        (
            "SELECT pq_put('s_bad', '{}', interval '-5 minutes')",
            "22023",
            "negative",
        ),
        (
            "SELECT pq_put('s_bad', '{}', tbl => 'nope')",
            "42P01",
            "nope",
        ),
        // Table names are regclass: PostgreSQL rejects malformed ones itself, before pq runs.
        (
            "SELECT pq_put('s_bad', '{}', tbl => 'queue; DROP TABLE queue')",
            "42602",
            "invalid name syntax",
        ),
        (
            "SELECT pq_put('s_bad', '{}', tbl => 'q\"x')",
            "42P01",
            "q\"x",
        ),
        (
            "SELECT pq_put('s_bad', '{}', tbl => 'pg_class')",
            "42809",
            "pg_class",
        ),
        (
            "SELECT pq_put_many('s_bad', ARRAY['{}', NULL]::jsonb[])",
            "22004",
            "NULL",
        ),
        (
            "SELECT pq_put_many('s_bad', NULL)",
            "22004",
            "data must not be NULL",
        ),
        ("SELECT * FROM pq_get('')", "22023", "must not be empty"),
        ("SELECT * FROM pq_get('s_bad', '-1s')", "22023", "negative"),
        (
            "SELECT * FROM pq_get('s_bad', batch_size => 0)",
            "22023",
            "got 0",
        ),
        (
            "SELECT * FROM pq_get('s_bad', tbl => 'nope')",
            "42P01",
            "nope",
        ),
        ("SELECT pq_len(NULL)", "22004", "must not be NULL"),
        ("SELECT pq_clear('')", "22023", "must not be empty"),
        (
            "SELECT pq_update('s_bad', NULL, '{}')",
            "22004",
            "id must not be NULL",
        ),
        ("SELECT pq_create_table('a.b.c')", "42602", "a.b.c"),
        (
            "SELECT pq_create_table('x; DROP TABLE queue')",
            "42602",
            "x; DROP TABLE queue",
        ),
        ("SELECT pq_create_table('')", "22023", "empty"),
        // Schema qualification, other users' tables, and PostgreSQL's own limits.
        // PostgreSQL 16 made regclass input of an unknown schema 42P01 (15: 3F000).
        ("SELECT pq_put('s_bad', '{}', tbl => 'nosuch.queue')", if cfg!(feature = "pg15") { "3F000" } else { "42P01" }, "nosuch"),
        ("SELECT pq_put('s_bad', '{}', tbl => 'pg_catalog.queue')", "42P01", "pg_catalog.queue"),
        ("SELECT pq_put('s_bad', '{}', tbl => 's_private_jobs')", "42501", "s_private_jobs"),
        ("SELECT * FROM pq_get('s_bad', tbl => 's_private_jobs')", "42501", "s_private_jobs"),
        ("SELECT pq_put('s_bad', to_jsonb(repeat('x', 300000000)))", "54000", "too long"),
        ("SELECT pq_put('s_bad', (SELECT jsonb_agg(repeat('x', 100000000)) FROM generate_series(1, 11)))", "54000", "exceeds the maximum"),
        ("SELECT pq_put('s_bad', (repeat('[', 100000) || repeat(']', 100000))::jsonb)", "54001", "stack depth"),
        ("SELECT pq_put('s_bad', '\"\\ud800\"')", "22P02", "json"),
        ("SELECT pq_put('s_bad', '{}', '99999999999999999999s')", "22007", "99999999999999999999s"),
        ("SELECT pq_put('s_bad', '{}', '9223372036854775807s')", "22008", "too far"),
        ("SELECT pq_put('s_bad', '{}', '300000y')", "22008", "too far"),
        ("SELECT pq_put('s_bad', '{}', '1 fortnight')", "22007", "1 fortnight"),
        ("SELECT pq_put('s_bad', '{}', interval '-1 day')", "22023", "negative"),
        ("SELECT pq_put('s_bad', '{}', '5m; DROP TABLE queue')", "22007", "DROP TABLE"),
        ("SELECT pq_put('s_bad''; DROP TABLE queue; --', NULL)", "22004", "data must not be NULL"),
        ("SELECT pq_put_task('s_bad', 'no_such_function', '[]')", "42883", "no_such_function"),
        ("SELECT pq_put_task('s_bad', 'pg_sleep(float8)', '[\"soon\"]')", "42501", "not registered"),
        ("SELECT pq_put_task('s_bad', 'x.eat(', '[]', external => true)", "22023", "parentheses"),
        ("SELECT pq_put_task('s_bad', NULL, '[]')", "22004", "function must not be NULL"),
        ("SELECT * FROM pq_work('s_bad', max_jobs => 0)", "22023", "got 0"),
        ("SELECT * FROM pq_work('s_bad', max_jobs => 1001)", "22023", "at most 1000"),
        ("SELECT * FROM pq_get('s_bad', batch_size => 1001)", "22023", "at most 1000"),
        ("SELECT * FROM pq_work('', max_jobs => 1)", "22023", "must not be empty"),
        ("SELECT pq_requeue(NULL)", "22004", "id must not be NULL"),
        ("SELECT pq_task_failed(-1, 'P0001', 'x')", "P0002", "no job with id -1"),
        ("SELECT * FROM pq_stats('nope')", "42P01", "nope"),
        ("SELECT pq_channel(NULL)", "22004", "must not be NULL"),
        ("SELECT * FROM pq_get('s_bad', batch_size => NULL)", "22023", "NULL"),
        ("SELECT * FROM pq_get('s_bad', batch_size => -1)", "22023", "got -1"),
        ("SELECT * FROM pq_get('s_bad', functions => ARRAY['eat', NULL])", "22004", "functions must not contain NULL"),
        // Operating queues (issue 16).
        ("SELECT pq_put('s_bad', '{}', key => '')", "22023", "key must be 1 to 1000 bytes"),
        ("SELECT pq_put('s_bad', '{}', key => repeat('k', 1001))", "22023", "got 1001"),
        ("SELECT * FROM pq_put_many('s_bad', ARRAY['{}', '{}']::jsonb[], key => ARRAY['a'])", "22023", "one key per job"),
        ("SELECT pq_pause('')", "22023", "must not be empty"),
        ("SELECT pq_pause('s_bad', tbl => 's_private_jobs')", "42501", "UPDATE"),
        ("SELECT pq_resume(NULL)", "22004", "must not be NULL"),
        ("SELECT pq_set_limit('s_bad', 0)", "22023", "got 0"),
        ("SELECT pq_set_limit('s_bad', 1001)", "22023", "got 1001"),
        ("SELECT pq_set_limit('s_bad', 2, tbl => 's_private_jobs')", "42501", "permission denied"),
        ("SELECT pq_cancel(1, tbl => 's_private_jobs')", "42501", "cancel jobs of"),
        ("SELECT pq_cancel(NULL)", "22004", "id must not be NULL"),
        ("SELECT pq_cancel(1, wait => '-1s')", "22023", "negative"),
        ("SELECT pq_status(1, tbl => 'nope')", "42P01", "nope"),
        ("SELECT pq_schedule('s_bad', '* * * *', 's_bad')", "22023", "\"* * * *\""),
        ("SELECT pq_schedule('s_bad', '61 * * * *', 's_bad')", "22023", "61 * * * *"),
        ("SELECT pq_schedule('s_bad', '0 0 * * * *', 's_bad')", "22023", "5 fields"),
        ("SELECT pq_schedule('', '* * * * *', 's_bad')", "22023", "must not be empty"),
        ("SELECT pq_schedule('s_bad', '* * * * *', 's_bad', tbl => 's_private_jobs')", "42501", "INSERT"),
        ("SELECT pq_schedule('s_bad', NULL, 's_bad')", "22004", "cron must not be NULL"),
        // Found by a review (0.5.1).
        ("SELECT * FROM pq_jobs(NULL)", "22004", "queue name must not be NULL"),
        ("SELECT * FROM pq_jobs('')", "22023", "must not be empty"),
        ("SELECT * FROM pq_jobs('s_bad', tbl => NULL)", "22004", "tbl must not be NULL"),
        ("SELECT * FROM pq_failed(NULL)", "22004", "tbl must not be NULL"),
        ("CALL pq_work_loop('s_bad', 0)", "22023", "got 0"),
        ("CALL pq_work_loop('s_bad', -1)", "22023", "got -1"),
        ("SELECT * FROM pq_work('s_bad', NULL)", "22004", "burst must not be NULL"),
        ("SELECT * FROM pq_work('s_bad', timeout => NULL)", "22004", "timeout must not be NULL"),
        ("SELECT pq_task_failed(1, 'nope', 'x')", "22023", "\"nope\""),
        ("SELECT pq_task_failed(1, 'p0001', 'x')", "22023", "'P0001'"),
        ("SELECT pq_task_failed(1, repeat('P', 100000), 'x')", "22023", "not an SQLSTATE"),
        ("SELECT pq_schedule('s_bad', repeat('* ', 100000), 's_bad')", "22023", "200000 bytes"),
        ("SELECT pq_create_table(repeat('x', 64))", "42622", "64 bytes"),
        ("SELECT pq_create_table('queue')", "42P07", "already exists"),
        ("SELECT pq_create_table('s_nosuch.jobs')", "3F000", "s_nosuch"),
        ("SELECT pq_create_table(repeat('s', 64) || '.jobs')", "42622", "schema name"),
        // Another relation has the name of one of its indexes.
        ("SELECT pq_create_table('s_collide')", "42P07", "cannot create queue table"),
        ("SELECT pq_create_table('s_enum')", "42P07", "type \"s_enum\" already exists"),
        ("SELECT pq_create_table('s_locked.jobs')", "42501", "permission denied for schema s_locked"),
        ("SELECT pq_create_table(repeat('a', 100000) || '.b.c')", "42602", "'...: at most schema.table"),
        // A huge bad value is not sent back whole.
        ("SELECT pq_put('s_bad', '{}', repeat('x', 100000))", "22007", "message cut, 1000"),
        ("SELECT pq_put_task('s_bad', repeat('x', 100000), '[]', external => true, backoff => repeat('b', 100000))", "22023", "message cut"),
        ("SELECT * FROM pq_jobs('s_bad', repeat('x', 100000))", "22023", "unknown job state 'xxx"),
        ("SELECT * FROM pq_jobs('s_bad', tbl => 'pg_class')", "42809", "pg_class"),
        ("SELECT * FROM pq_failed('pg_class')", "42809", "pg_class"),
        ("SELECT * FROM pq_jobs('s_bad', tbl => 's_view')", "42809", "s_view"),
        // Names are index keys: a write takes at most 1000 bytes (else 54000, naming nothing).
        ("SELECT pq_put(repeat('s_bad', 201), '{}')", "22023", "1005 bytes long"),
        ("SELECT pq_put_many(repeat('s_bad', 201), ARRAY['{}']::jsonb[])", "22023", "1005 bytes long"),
        ("SELECT pq_pause(repeat('s_bad', 201))", "22023", "1005 bytes long"),
        ("SELECT pq_set_limit(repeat('s_bad', 201), 2)", "22023", "1005 bytes long"),
        ("SELECT pq_schedule(repeat('s_bad', 201), '* * * * *', 's_bad')", "22023", "1005 bytes long"),
        ("SELECT pq_schedule('s_bad', '* * * * *', repeat('s_bad', 201))", "22023", "1005 bytes long"),
        ("SELECT pq_put_task('s_bad', 'x.eat', '[]', external => true, backoff => 'linear')", "22023", "\"linear\""),
        ("SELECT pq_put_task('s_bad', 'x.eat', '[]', external => true, backoff => 'exponential', retry_max => 'soon')", "22007", "retry_max"),
    ];
    c.batch_execute(
        "DROP VIEW IF EXISTS s_view; DROP TABLE IF EXISTS s_private_jobs; SELECT pq_create_table('s_private_jobs');
         DROP ROLE IF EXISTS s_stranger; CREATE ROLE s_stranger; DROP ROLE IF EXISTS s_visitor;
         ALTER TABLE s_private_jobs OWNER TO s_stranger;
         CREATE ROLE s_visitor; GRANT s_visitor TO postgres;
         DROP TABLE IF EXISTS s_collide_ready_idx; CREATE TABLE s_collide_ready_idx (i int);
         DROP TYPE IF EXISTS s_enum; CREATE TYPE s_enum AS ENUM ('a');
         DROP SCHEMA IF EXISTS s_locked CASCADE; CREATE SCHEMA s_locked;
         GRANT USAGE ON SCHEMA s_locked TO s_visitor;
         CREATE VIEW s_view AS SELECT * FROM s_private_jobs;",
    )
    .ok();
    // Other tests run in parallel on the same table: count what these inputs could have written.
    let written =
        "SELECT (SELECT count(*) FROM queue WHERE q_name LIKE 's\\_bad%' OR q_name = '') \
                   + (SELECT count(*) FROM s_private_jobs) \
                   + (SELECT count(*) FROM pq_periodic WHERE name LIKE 's\\_bad%' OR name = '') \
                   + (SELECT count(*) FROM pq_queue_controls WHERE q_name LIKE 's\\_bad%')";
    assert!(cases.len() >= 40, "{} hostile inputs", cases.len());
    let before: i64 = c.query_one(written, &[]).unwrap().get(0);
    for (sql, code, fragment) in cases {
        // Other users' tables are tried as an unprivileged role.
        let sql = if sql.contains("s_private_jobs") || sql.contains("s_locked") {
            format!("SET ROLE s_visitor; {sql}")
        } else {
            sql.to_string()
        };
        let e = c.batch_execute(&sql).expect_err(&sql);
        c.batch_execute("RESET ROLE").unwrap();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), *code, "{sql}: {}", db.message());
        let sql = &sql;
        let text = format!("{} {}", db.message(), db.hint().unwrap_or(""));
        assert!(
            text.contains(fragment),
            "{sql}: message {text:?} lacks {fragment:?}"
        );
        assert!(!text.contains("panicked"), "{sql}: {text}");
        assert!(
            text.len() < 2000,
            "{sql}: a message of {} bytes",
            text.len()
        );
        // pq's own statements stay out of what the caller sees.
        let context = db.where_().unwrap_or("");
        assert!(!context.contains("CREATE "), "{sql}: CONTEXT {context}");
        assert_no_backtrace(db, sql);
        // The session stays usable.
        assert_eq!(c.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
    }
    let after: i64 = c.query_one(written, &[]).unwrap().get(0);
    assert_eq!((before, after), (0, 0), "an error left a row behind");
    // Through the Rust client: a NUL is not valid text for PostgreSQL (nor for the queue).
    let pq = pq_client::Pq::new(connect());
    let e = pq.queue("s_bad\0").put(&serde_json::json!(1)).unwrap_err();
    assert!(
        e.sqlstate().is_some() || e.to_string().contains("nul"),
        "{e}"
    );
    let e = pq
        .queue("s_bad")
        .put(&serde_json::json!("\u{0}"))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("22P05"), "{e}");
    assert_eq!(
        pq.queue("s_bad").len().unwrap(),
        0,
        "the session stays usable"
    );
}

/// No error report carries a Rust backtrace, even with `RUST_BACKTRACE=1` in the server's
/// environment (scripts/test sets it, so this can fail).
fn assert_no_backtrace(db: &postgres::error::DbError, sql: &str) {
    let detail = db.detail().unwrap_or("");
    assert!(
        !detail.contains("pgrx") && !detail.contains("panic"),
        "{sql}: a Rust backtrace in DETAIL: {detail}"
    );
}

/// A failed utility statement, which passes through pq's utility hook, reports PostgreSQL's
/// own error and nothing more.
#[test]
fn a_failed_utility_statement_reports_postgresql_s_error_only() {
    let mut c = connect();
    for (sql, code) in [
        ("CREATE TABLE s_twice (); CREATE TABLE s_twice ()", "42P07"),
        ("BEGIN; VACUUM", "25001"),
        ("DROP TABLE s_never_made", "42P01"),
    ] {
        let e = c.batch_execute(sql).expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert_eq!(db.detail(), None, "{sql}");
        assert_no_backtrace(db, sql);
        c.batch_execute("ROLLBACK").unwrap();
    }
}

/// A hostile search_path cannot redirect what pq runs: every function pins its own.
#[test]
fn a_hostile_search_path_changes_nothing() {
    let mut c = connect();
    c.batch_execute(
        r#"CREATE SCHEMA IF NOT EXISTS evil;
           CREATE TABLE IF NOT EXISTS evil.queue (LIKE public.queue);
           CREATE OR REPLACE FUNCTION evil.now() RETURNS timestamptz
               LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
           CREATE OR REPLACE FUNCTION evil.length(text) RETURNS int
               LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked'; END $$;
           CREATE OR REPLACE FUNCTION evil.unnest(jsonb[]) RETURNS SETOF jsonb
               LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked'; END $$;
           SET search_path = evil, pg_catalog, public;"#,
    )
    .unwrap();
    let id: i64 = c
        .query_one("SELECT public.pq_put('s_path', '{}')", &[])
        .unwrap()
        .get(0);
    c.query(
        "SELECT * FROM public.pq_put_many('s_path', ARRAY['{}']::jsonb[])",
        &[],
    )
    .unwrap();
    let row = c
        .query_one(
            "SELECT id, size, enqueued_at > '2000-01-01' FROM public.pq_get('s_path')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), id);
    assert_eq!(row.get::<_, i32>(1), 2);
    assert!(row.get::<_, bool>(2));
    let evil: i64 = c
        .query_one("SELECT count(*) FROM evil.queue", &[])
        .unwrap()
        .get(0);
    assert_eq!(evil, 0);
    c.batch_execute("RESET search_path; DROP SCHEMA evil CASCADE")
        .unwrap();
}

fn create_task_functions(c: &mut Client, suffix: &str) {
    c.batch_execute(&format!(
        r#"CREATE TABLE IF NOT EXISTS eaten_{suffix} (kind text, at timestamptz DEFAULT clock_timestamp());
           CREATE OR REPLACE FUNCTION eat_{suffix}(kind text) RETURNS void LANGUAGE sql
               AS $$ INSERT INTO eaten_{suffix} (kind) VALUES (kind) $$;
           CREATE OR REPLACE FUNCTION rot_{suffix}(kind text) RETURNS void LANGUAGE plpgsql
               AS $$ BEGIN RAISE EXCEPTION 'rotten %', kind; END $$;
           SELECT pq_register_task('eat_{suffix}(text)'), pq_register_task('rot_{suffix}(text)');"#
    ))
    .unwrap();
}

/// `CALL pq_work_loop` commits after each job: another session sees each job's work as soon as
/// it is done, not at the end of the run.
#[test]
fn the_committing_procedure_commits_after_each_job() {
    let mut c = connect();
    create_task_functions(&mut c, "loop");
    c.batch_execute(
        r#"CREATE OR REPLACE FUNCTION slow_loop(n int) RETURNS void LANGUAGE sql
               AS $$ SELECT pg_sleep(0.3); INSERT INTO eaten_loop (kind) VALUES (n::text) $$;
           SELECT pq_register_task('slow_loop(int)');
           SELECT pq_put_task('s_loop', 'slow_loop(int)', format('[%s]', i)::jsonb) FROM generate_series(1, 5) i;"#,
    )
    .unwrap();
    let runner = thread::spawn(move || {
        c.batch_execute("CALL pq_work_loop('s_loop')").unwrap();
    });
    let mut watcher = connect();
    thread::sleep(Duration::from_millis(800));
    let midway: i64 = watcher
        .query_one("SELECT count(*) FROM eaten_loop", &[])
        .unwrap()
        .get(0);
    runner.join().unwrap();
    let done: i64 = watcher
        .query_one("SELECT count(*) FROM eaten_loop", &[])
        .unwrap()
        .get(0);
    assert!(
        (1..5).contains(&midway),
        "saw {midway} of 5 while the loop ran"
    );
    assert_eq!(done, 5);
    let left: i64 = watcher
        .query_one("SELECT pq_len('s_loop')", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// The test cluster preloads pq with two workers for queue `bg_tasks` (see `pg_test`): they
/// drain jobs put from another connection, and a failing task does not stop them.
#[test]
fn background_workers_drain_a_queue_while_jobs_are_put() {
    let mut c = connect();
    create_task_functions(&mut c, "bg");
    let n = 200;
    for i in 0..n {
        let f = if i % 50 == 7 {
            "rot_bg(text)"
        } else {
            "eat_bg(text)"
        };
        c.execute(
            "SELECT pq_put_task('bg_tasks', $1, jsonb_build_array($2::text))",
            &[&f, &i.to_string()],
        )
        .unwrap();
        if i % 20 == 0 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = c
            .query_one(
                "SELECT count(*) FROM queue WHERE q_name = 'bg_tasks' AND dequeued_at IS NULL",
                &[],
            )
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} jobs still pending");
        thread::sleep(Duration::from_millis(100));
    }
    let eaten: i64 = c
        .query_one("SELECT count(DISTINCT kind) FROM eaten_bg", &[])
        .unwrap()
        .get(0);
    let failed: i64 = c
        .query_one(
            "SELECT count(*) FROM pq_failed WHERE queue = 'bg_tasks'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(eaten, n as i64 - 4);
    assert_eq!(failed, 4);
    let workers: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pq worker' AND application_name = 'pq worker bg_tasks'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 2, "both workers still running");
}

/// pq_work is a claim path too: four sessions performing the same queue perform each task
/// exactly once.
#[test]
fn four_sessions_performing_tasks_perform_each_exactly_once() {
    let mut c = connect();
    create_task_functions(&mut c, "wdrain");
    c.batch_execute(
        "SELECT pq_put_task('s_work_drain', 'eat_wdrain(text)', jsonb_build_array(i::text)) FROM generate_series(1, 600) i",
    )
    .unwrap();
    let start = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                let mut performed = 0i64;
                loop {
                    let n: i64 = c
                        .query_one(
                            "SELECT count(*) FROM pq_work('s_work_drain', max_jobs => 5)",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    if n == 0 {
                        return performed;
                    }
                    performed += n;
                }
            })
        })
        .collect();
    let performed: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(performed, 600);
    let (rows, distinct): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), count(DISTINCT kind) FROM eaten_wdrain",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (rows, distinct),
        (600, 600),
        "each task performed exactly once"
    );
}

/// Two sessions creating the same queue table at once: the second waits for the first and, when
/// it commits, gets pq's 42P07 (not PostgreSQL's 23505 on pg_type, with pq's DDL in its context).
#[test]
fn a_queue_table_created_twice_at_once_is_refused_cleanly() {
    let mut a = connect();
    a.batch_execute("DROP TABLE IF EXISTS s_race").unwrap();
    a.batch_execute("BEGIN; SELECT pq_create_table('s_race')")
        .unwrap();
    let second = thread::spawn(|| {
        connect()
            .batch_execute("SELECT pq_create_table('s_race')")
            .unwrap_err()
    });
    thread::sleep(Duration::from_millis(300));
    a.batch_execute("COMMIT").unwrap();
    let e = second.join().unwrap();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42P07", "{}", db.message());
    assert!(
        db.message().contains("cannot create queue table"),
        "{}",
        db.message()
    );
    assert!(
        !db.where_().unwrap_or("").contains("CREATE "),
        "{:?}",
        db.where_()
    );
    a.batch_execute("DROP TABLE s_race").unwrap();
}

/// A session that used a queue table keeps working after the table is renamed or moved to
/// another schema: its cached plans named the old table.
#[test]
fn a_renamed_queue_table_keeps_working_in_the_same_session() {
    let mut c = connect();
    c.batch_execute(
        "DROP TABLE IF EXISTS s_renamed_b; DROP SCHEMA IF EXISTS s_moved CASCADE; CREATE SCHEMA s_moved;
         SELECT pq_create_table('s_renamed_a');",
    )
    .unwrap();
    c.batch_execute("SELECT pq_put('q', '{}', tbl => 's_renamed_a'); SELECT * FROM pq_get('q', tbl => 's_renamed_a')")
        .unwrap();
    c.batch_execute("ALTER TABLE s_renamed_a RENAME TO s_renamed_b")
        .unwrap();
    c.batch_execute("SELECT pq_put('q', '{}', tbl => 's_renamed_b')")
        .unwrap();
    c.batch_execute("ALTER TABLE s_renamed_b SET SCHEMA s_moved")
        .unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pq_get('q', tbl => 's_moved.s_renamed_b')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    c.batch_execute("DROP SCHEMA s_moved CASCADE").unwrap();
}

/// A blocked getter shows a pq wait event in pg_stat_activity: `Extension` on PostgreSQL 15
/// and 16, a registered name `PqQueueNN` on 17 and 18.
#[test]
fn a_blocked_get_shows_its_wait_event() {
    let mut waiter = connect();
    let pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let getter = thread::spawn(move || {
        waiter
            .query("SELECT * FROM pq_get('s_wait_event', '3s')", &[])
            .unwrap()
            .len()
    });
    let mut c = connect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while Instant::now() < deadline && seen.is_none() {
        seen = c
            .query_one(
                "SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Extension'",
                &[&pid],
            )
            .ok()
            .map(|r| r.get::<_, String>(0));
        thread::sleep(Duration::from_millis(20));
    }
    c.execute("SELECT pq_put('s_wait_event', '{}')", &[])
        .unwrap();
    assert_eq!(getter.join().unwrap(), 1);
    let seen = seen.expect("the getter waited under an Extension wait event");
    if cfg!(any(feature = "pg17", feature = "pg18")) {
        assert!(seen.starts_with("Extension/PqQueue"), "{seen}");
    } else {
        assert_eq!(seen, "Extension/Extension");
    }
}

/// A blocking get that is woken over and over and finds nothing for it keeps its memory flat:
/// each re-check allocates in a context emptied after it (review: every wake-up leaked about
/// 40 bytes, 140 MB an hour for a waiter on a queue taking 1,000 puts/s).
#[test]
fn a_blocking_get_woken_twenty_thousand_times_keeps_its_memory() {
    let mut c = connect();
    // The queue's only slot is held, so every wake-up re-checks and takes nothing.
    c.batch_execute(
        "SELECT pq_clear('s_mem'); SELECT pq_set_limit('s_mem', 1); SELECT pq_put('s_mem', '{}')",
    )
    .unwrap();
    let mut holder = connect();
    holder
        .batch_execute("BEGIN; SELECT * FROM pq_get('s_mem')")
        .unwrap();
    let mut waiter = connect();
    let pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let getter = thread::spawn(move || {
        waiter
            .query("SELECT * FROM pq_get('s_mem', '10min')", &[])
            .map(|r| r.len())
    });
    let puts = |c: &mut Client, n: i32| {
        c.batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{n} LOOP PERFORM pq_put('s_mem', '{{}}'); COMMIT; END LOOP; END $$"
        ))
        .unwrap()
    };
    puts(&mut c, 1_000); // caches and plans warm up
                         // A leak grows the waiter in every round; a context's block doubling or a cache filling
                         // grows it once, so the quietest round is the one that tells.
    let growth = growth_per_round(pid, 4, || puts(&mut c, 5_000));
    c.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let ended = getter.join().unwrap();
    holder.batch_execute("ROLLBACK").unwrap();
    c.batch_execute("SELECT pq_set_limit('s_mem', NULL); SELECT pq_clear('s_mem')")
        .unwrap();
    assert_eq!(
        sqlstate(&ended.expect_err("cancelled")),
        "57014",
        "the getter was still waiting"
    );
    eprintln!("the waiter's growth per round of 5,000 puts, kB: {growth:?}");
    assert!(
        growth.iter().min().unwrap() < &48,
        "the waiter's private memory grew in every round of 5,000 wake-ups: {growth:?} kB"
    );
}

/// The private memory (`RssAnon`, kB) of backend `pid` of the test cluster, on this machine.
fn private_kb(pid: i32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How much backend `pid`'s private memory grew over each of `rounds` runs of `work`, kB.
fn growth_per_round(pid: i32, rounds: usize, mut work: impl FnMut()) -> Vec<i64> {
    let mut last = private_kb(pid);
    (0..rounds)
        .map(|_| {
            work();
            let now = private_kb(pid);
            now - std::mem::replace(&mut last, now)
        })
        .collect()
}

/// A backend that rarely calls pq keeps its memory however many relations change meanwhile:
/// pq's caches are told of each change, in a bounded list (review: three entries per relcache
/// invalidation, kept until the cache was next used, about 150 bytes per temporary table).
#[test]
fn relcache_invalidations_do_not_grow_a_backend_that_does_not_call_pq() {
    let mut c = connect();
    c.batch_execute(
        "CREATE OR REPLACE PROCEDURE s_churn(n int) LANGUAGE plpgsql AS $$ BEGIN \
         FOR i IN 1..n LOOP CREATE TEMP TABLE s_churn_t (a int); DROP TABLE s_churn_t; COMMIT; \
         END LOOP; END $$; \
         SELECT pq_len('s_churn')",
    )
    .unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    c.batch_execute("CALL s_churn(500)").unwrap(); // caches warm up
    let growth = growth_per_round(pid, 3, || c.batch_execute("CALL s_churn(3000)").unwrap());
    assert!(
        growth.iter().min().unwrap() < &64,
        "the backend grew in every round of 3,000 invalidated tables: {growth:?} kB"
    );
}

/// A job another transaction holds without pq's key (Python pq's open claim, a pq_update, a
/// row lock, a delete) is skipped, never waited for, on the direct and the SQL path alike;
/// when that transaction rolls back, the next claim takes the job (the head did not pass it).
#[test]
fn a_row_held_by_a_transaction_without_the_key_is_skipped_not_waited_for() {
    let holds = [
        "UPDATE queue SET dequeued_at = now() WHERE id = $1",
        "UPDATE queue SET data = '{\"changed\": true}' WHERE id = $1",
        "SELECT 1 FROM queue WHERE id = $1 FOR UPDATE",
        "SELECT 1 FROM queue WHERE id = $1 FOR SHARE",
        "DELETE FROM queue WHERE id = $1",
    ];
    for direct in ["on", "off"] {
        for hold in holds {
            let mut c = connect();
            c.batch_execute(&format!(
                "SET pq.direct_writes = {direct}; SET statement_timeout = '5s'; SELECT pq_clear('s_rowheld')"
            ))
            .unwrap();
            let ids = put_n(&mut c, "s_rowheld", 2);
            let mut holder = connect();
            let mut tx = holder.transaction().unwrap();
            tx.execute(hold, &[&ids[0]]).unwrap();
            let t = Instant::now();
            let got: Vec<i64> = c
                .query("SELECT id FROM pq_get('s_rowheld')", &[])
                .unwrap_or_else(|e| panic!("{hold} (direct writes {direct}): {e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(got, vec![ids[1]], "{hold} (direct writes {direct})");
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{hold}: waited {:?}",
                t.elapsed()
            );
            tx.rollback().unwrap();
            let next: Vec<i64> = c
                .query("SELECT id FROM pq_get('s_rowheld')", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(
                next,
                vec![ids[0]],
                "after {hold} rolled back (direct writes {direct})"
            );
        }
    }
}
