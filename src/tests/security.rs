//! Tasks as a privilege boundary, tried as an attacker would, over real connections: no job may
//! run an unregistered function, borrow another role's identity, crash the server, poison a
//! queue, leak settings or locks into later work, or hide behind a squatted lock key.
#![cfg(test)]

use super::sessions::connect;
use postgres::Client;
use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

fn db_error(e: &postgres::Error) -> (String, String, String) {
    let d = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (
        d.code().code().to_string(),
        d.message().to_string(),
        d.hint().unwrap_or_default().to_string(),
    )
}

/// A role with the README's grants for `kind` (producer, consumer), created once per cluster.
fn role(c: &mut Client, name: &str, kind: &str) {
    let grants = match kind {
        "producer" => format!(
            "GRANT INSERT, SELECT (id) ON queue TO {name}; GRANT USAGE ON SEQUENCE queue_id_seq TO {name};"
        ),
        "consumer" => format!("GRANT SELECT, UPDATE ON queue TO {name};"),
        _ => String::new(),
    };
    c.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; {grants}"
    ))
    .unwrap();
}

/// Performs the ready tasks of `queue` as the test's superuser; (outcome, sqlstate, message) by id.
fn work(c: &mut Client, queue: &str) -> Vec<(String, Option<String>, Option<String>)> {
    c.query(
        "SELECT outcome, sqlstate, message FROM pq_work($1) ORDER BY id",
        &[&queue],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// Every route a job can take into the table (pq_put_task, pq_put, INSERT with a forged
/// enqueuer, pq_update) is checked: nothing unregistered or unauthorised ever runs, and a
/// registered task its producer may execute runs, as that producer.
#[test]
fn only_registered_tasks_their_enqueuer_may_execute_ever_run() {
    let mut admin = connect();
    role(&mut admin, "sec_producer", "producer");
    role(&mut admin, "sec_editor", "consumer");
    admin
        .batch_execute(
            r#"CREATE TABLE IF NOT EXISTS sec_log (what text, who text);
               GRANT INSERT ON sec_log TO sec_producer, sec_editor;
               CREATE OR REPLACE FUNCTION sec_eat(kind text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO sec_log VALUES ('eat ' || kind, current_user) $$;
               CREATE OR REPLACE FUNCTION sec_admin_only(x text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO sec_log VALUES ('admin ' || x, current_user) $$;
               CREATE OR REPLACE FUNCTION sec_unregistered(x text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO sec_log VALUES ('unregistered ' || x, current_user) $$;
               REVOKE EXECUTE ON FUNCTION sec_admin_only(text) FROM PUBLIC;
               SELECT pq_register_task('sec_eat(text)'), pq_register_task('sec_admin_only(text)');"#,
        )
        .unwrap();
    let mut producer = connect();
    producer.batch_execute("SET ROLE sec_producer").unwrap();

    // pq_put_task refuses an unregistered function, and one the producer may not execute.
    let e = producer
        .query_one(
            "SELECT pq_put_task('sec_q', 'sec_unregistered(text)', '[\"x\"]')",
            &[],
        )
        .unwrap_err();
    let (code, message, hint) = db_error(&e);
    assert_eq!(code, "42501");
    assert!(message.contains("not registered"), "{message}");
    assert!(
        hint.contains("pq_register_task('public.sec_unregistered(text)')"),
        "{hint}"
    );
    let e = producer
        .query_one(
            "SELECT pq_put_task('sec_q', 'sec_admin_only(text)', '[\"x\"]')",
            &[],
        )
        .unwrap_err();
    assert_eq!(db_error(&e).0, "42501");

    // Hand-written task JSON through pq_put and INSERT, the latter claiming to be postgres.
    producer
        .batch_execute(
            r#"SELECT pq_put('sec_q', '{"function": "public.sec_unregistered(text)", "args": ["put"]}');
               INSERT INTO queue (q_name, data, enqueued_by)
               VALUES ('sec_q', '{"function": "public.sec_admin_only(text)", "args": ["insert"]}', 'postgres');
               SELECT pq_put_task('sec_q', 'sec_eat(text)', '["Cox"]');"#,
        )
        .unwrap();
    let stamped: Vec<String> = admin
        .query(
            "SELECT enqueued_by::text FROM queue WHERE q_name = 'sec_q' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        stamped, ["sec_producer"; 3],
        "the forged enqueuer was overwritten"
    );

    // pq_update by another role rewrites a legitimate job to call sec_admin_only.
    let legit: i64 = admin
        .query_one(
            "SELECT pq_put_task('sec_q', 'sec_eat(text)', '[\"Fuji\"]')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut editor = connect();
    editor.batch_execute("SET ROLE sec_editor").unwrap();
    let updated: bool = editor
        .query_one(
            r#"SELECT pq_update('sec_q', $1, '{"function": "public.sec_admin_only(text)", "args": ["update"]}')"#,
            &[&legit],
        )
        .unwrap()
        .get(0);
    assert!(updated);

    let outcomes = work(&mut admin, "sec_q");
    let codes: Vec<_> = outcomes
        .iter()
        .map(|(o, s, _)| format!("{o}:{}", s.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        codes,
        ["failed:42501", "failed:42501", "done:", "failed:42501"]
    );
    assert!(outcomes[0]
        .2
        .as_deref()
        .unwrap()
        .contains("pq_register_task"));
    assert!(outcomes[1].2.as_deref().unwrap().contains("sec_producer"));
    assert!(outcomes[3].2.as_deref().unwrap().contains("sec_editor"));
    let log: Vec<(String, String)> = admin
        .query("SELECT what, who FROM sec_log ORDER BY what", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        log,
        [("eat Cox".to_string(), "sec_producer".to_string())],
        "only the registered, permitted task ran, as its producer"
    );
    // The refusals are final and visible as failures.
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM pq_failed WHERE queue = 'sec_q' AND sqlstate = '42501'"
        ),
        3
    );
}

/// Only a function's owner (or a superuser) registers or unregisters it; `pq_tasks` lists the
/// registry; after unregistering, waiting jobs are refused, never called.
#[test]
fn registering_a_task_is_for_its_owner() {
    let mut admin = connect();
    role(&mut admin, "sec_owner", "producer");
    role(&mut admin, "sec_other", "producer");
    admin
        .batch_execute(
            r#"CREATE SCHEMA IF NOT EXISTS sec_owned AUTHORIZATION sec_owner;
               GRANT USAGE ON SCHEMA sec_owned TO PUBLIC;
               SET ROLE sec_owner;
               CREATE TABLE IF NOT EXISTS sec_owned.log (x text);
               CREATE OR REPLACE FUNCTION sec_owned.mine(x text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO sec_owned.log VALUES (x) $$;
               RESET ROLE;"#,
        )
        .unwrap();
    let mut other = connect();
    other.batch_execute("SET ROLE sec_other").unwrap();
    let e = other
        .query_one("SELECT pq_register_task('sec_owned.mine(text)')", &[])
        .unwrap_err();
    let (code, message, _) = db_error(&e);
    assert_eq!(code, "42501");
    assert!(
        message.contains("must be owner of function sec_owned.mine(text)"),
        "{message}"
    );
    let e = other
        .query_one(
            "SELECT pq_register_task('pg_terminate_backend(int, bigint)')",
            &[],
        )
        .unwrap_err();
    assert_eq!(
        db_error(&e).0,
        "42501",
        "nobody registers functions they do not own"
    );

    let mut owner = connect();
    owner.batch_execute("SET ROLE sec_owner").unwrap();
    let first: bool = owner
        .query_one("SELECT pq_register_task('sec_owned.mine(text)')", &[])
        .unwrap()
        .get(0);
    let again: bool = owner
        .query_one("SELECT pq_register_task('sec_owned.mine(text)')", &[])
        .unwrap()
        .get(0);
    assert!(first && !again);
    let listed: String = admin
        .query_one(
            "SELECT owner::text || '/' || registered_by::text FROM pq_tasks WHERE function = 'sec_owned.mine(text)'::regprocedure",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, "sec_owner/sec_owner");
    owner
        .batch_execute("SELECT pq_put_task('sec_reg', 'sec_owned.mine(text)', '[\"before\"]')")
        .unwrap();
    assert_eq!(work(&mut admin, "sec_reg")[0].0, "done");

    owner
        .batch_execute("SELECT pq_put_task('sec_reg', 'sec_owned.mine(text)', '[\"after\"]')")
        .unwrap();
    let e = other
        .query_one("SELECT pq_unregister_task('sec_owned.mine(text)')", &[])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    let removed: bool = owner
        .query_one("SELECT pq_unregister_task('sec_owned.mine(text)')", &[])
        .unwrap()
        .get(0);
    assert!(removed);
    let refused = work(&mut admin, "sec_reg");
    assert_eq!(
        (refused[0].0.as_str(), refused[0].1.as_deref()),
        ("failed", Some("42501"))
    );
    assert_eq!(count(&mut admin, "SELECT count(*) FROM sec_owned.log"), 1);
}

/// Payloads from 1 KB to 100 MB reach the task intact through pq_work and the committing
/// loop (they were read from freed SPI memory once: garbage at 1 MB, a crash at 40 MB).
#[test]
fn big_payloads_reach_their_task_intact() {
    let mut c = connect();
    c.batch_execute(
        r#"CREATE TABLE IF NOT EXISTS sec_sizes (how text, n int, ok boolean);
           CREATE OR REPLACE FUNCTION sec_measure(how text, t text) RETURNS void LANGUAGE sql
               AS $$ INSERT INTO sec_sizes VALUES (how, length(t), t = repeat('a', length(t))) $$;
           SELECT pq_register_task('sec_measure(text, text)');"#,
    )
    .unwrap();
    let sizes = [1_000, 1_000_000, 10_000_000, 40_000_000, 100_000_000];
    for how in ["pq_work", "pq_work_loop"] {
        for n in sizes {
            c.execute(
                "SELECT pq_put_task('sec_big', 'sec_measure(text, text)', jsonb_build_array($1::text, repeat('a', $2)))",
                &[&how, &n],
            )
            .unwrap();
        }
        if how == "pq_work" {
            let done = work(&mut c, "sec_big");
            assert!(done.iter().all(|(o, _, _)| o == "done"), "{done:?}");
        } else {
            c.batch_execute("CALL pq_work_loop('sec_big')").unwrap();
        }
    }
    let got: Vec<(String, i32, bool)> = c
        .query("SELECT how, n, ok FROM sec_sizes ORDER BY how, n", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, i32, bool)> = ["pq_work", "pq_work_loop"]
        .iter()
        .flat_map(|h| sizes.iter().map(move |n| (h.to_string(), *n, true)))
        .collect();
    assert_eq!(got, want);
}

/// Malformed jobs are recorded as failed with their error and the valid job behind them runs,
/// in one pq_work call.
#[test]
fn malformed_jobs_fail_and_the_jobs_behind_them_run() {
    let mut c = connect();
    c.batch_execute(
        r#"CREATE TABLE IF NOT EXISTS sec_ran (x text);
           CREATE OR REPLACE FUNCTION sec_run(x text) RETURNS void LANGUAGE sql AS $$ INSERT INTO sec_ran VALUES (x) $$;
           SELECT pq_register_task('sec_run(text)');
           INSERT INTO queue (q_name, data) VALUES
            ('sec_poison', '{"function":"public.sec_run(text)","args":["a"],"retry_in":"bogus","max_retries":3,"kwargs":{"nope":1}}'),
            ('sec_poison', '{"function":"public.sec_run(text)","args":[1],"retried":9223372036854775807,"max_retries":9223372036854775807,"kwargs":{"nope":1}}'),
            ('sec_poison', '{"function":"public.sec_run(text)","args":[1e400]}'),
            ('sec_poison', ('{"function":"public.sec_run(text)","args":[' || repeat('[', 200) || repeat(']', 200) || ']}')::jsonb),
            ('sec_poison', '{"function":"public.sec_run(text)","args":"not an array"}'),
            ('sec_poison', '{"function":"public.sec_run(text)","args":["b"],"errors":"not an array","kwargs":{"nope":1}}'),
            ('sec_poison', '{"function":"public.sec_run(text)","args":["c"],"timeout":"soon"}'),
            ('sec_poison', '{"function":"no_such_function()"}'),
            ('sec_poison', '{"function":"public.sec_run(text)","args":["valid"]}');"#,
    )
    .unwrap();
    let outcomes = work(&mut c, "sec_poison");
    let verdicts: Vec<_> = outcomes.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
        verdicts,
        ["failed", "failed", "failed", "failed", "failed", "failed", "failed", "failed", "done"]
    );
    assert!(
        outcomes[0].2.as_deref().unwrap().contains("retry_in"),
        "{outcomes:?}"
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM sec_ran"), 1);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pq_failed WHERE queue = 'sec_poison'"
        ),
        8,
        "every malformed job is kept, failed, with its error"
    );
    assert_eq!(count(&mut c, "SELECT pq_len('sec_poison')"), 0);
}

/// A task's settings (set_config(..., false)), role changes and session advisory locks end with
/// the task: the next task, and the caller, see none of them.
#[test]
fn a_task_leaves_no_settings_or_locks_behind() {
    let mut c = connect();
    c.batch_execute(
        r#"CREATE TABLE IF NOT EXISTS sec_seen (path text, timeout text, app text);
           CREATE OR REPLACE FUNCTION sec_meddle() RETURNS void LANGUAGE plpgsql AS $$ BEGIN
               PERFORM set_config('search_path', 'nowhere', false);
               PERFORM set_config('statement_timeout', '1', false);
               PERFORM set_config('sec.app', 'meddled', false);
               PERFORM pg_advisory_lock(424242);
               PERFORM pg_advisory_lock_shared(434343);
           END $$;
           CREATE OR REPLACE FUNCTION sec_become() RETURNS void LANGUAGE plpgsql AS $$ BEGIN
               PERFORM set_config('role', 'pg_monitor', false); END $$;
           CREATE OR REPLACE FUNCTION sec_look() RETURNS void LANGUAGE sql AS $$
               INSERT INTO public.sec_seen VALUES (current_setting('search_path'),
                   current_setting('statement_timeout'), current_setting('sec.app', true)) $$;
           SELECT pq_register_task('sec_meddle()'), pq_register_task('sec_become()'), pq_register_task('sec_look()');
           SELECT pq_put_task('sec_side', 'sec_meddle()');
           SELECT pq_put_task('sec_side', 'sec_become()');
           SELECT pq_put_task('sec_side', 'sec_look()');"#,
    )
    .unwrap();
    let outcomes = work(&mut c, "sec_side");
    assert_eq!(outcomes[0].0, "done");
    assert_eq!(
        (outcomes[1].0.as_str(), outcomes[1].1.as_deref()),
        ("failed", Some("42501"))
    );
    assert_eq!(outcomes[2].0, "done");
    let seen = c
        .query_one("SELECT path, timeout, app FROM sec_seen", &[])
        .unwrap();
    assert_eq!(seen.get::<_, String>(0), "\"$user\", public, pg_temp");
    assert_eq!(seen.get::<_, String>(1), "0");
    assert_eq!(seen.get::<_, Option<String>>(2).unwrap_or_default(), "");
    let after = c
        .query_one(
            "SELECT current_setting('search_path'), current_setting('statement_timeout'), current_user::text,
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
            &[],
        )
        .unwrap();
    assert_eq!(after.get::<_, String>(0), "\"$user\", public");
    assert_eq!(after.get::<_, String>(1), "0");
    assert_eq!(after.get::<_, String>(2), "postgres");
    assert_eq!(
        after.get::<_, i64>(3),
        0,
        "the task's session locks were released"
    );
}

/// A task longer than its timeout is cancelled and recorded (57014); a cancel meant for the
/// whole statement still cancels pq_work, and the job goes back; a set-returning task's rows
/// are counted, not kept.
#[test]
fn timeouts_cancels_and_set_returning_tasks() {
    let mut c = connect();
    c.batch_execute(
        r#"CREATE OR REPLACE FUNCTION sec_sleep(s float8) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(s) $$;
           CREATE OR REPLACE FUNCTION sec_rows(n int) RETURNS SETOF text LANGUAGE sql
               AS $$ SELECT repeat('x', 100) FROM generate_series(1, n) $$;
           SELECT pq_register_task('sec_sleep(float8)'), pq_register_task('sec_rows(int)');
           SELECT pq_put_task('sec_time', 'sec_sleep(float8)', '[30]', timeout => '300ms');
           SELECT pq_put_task('sec_time', 'sec_rows(int)', '[5000000]');"#,
    )
    .unwrap();
    let t0 = Instant::now();
    let outcomes = work(&mut c, "sec_time");
    assert!(t0.elapsed() < Duration::from_secs(25));
    assert_eq!(outcomes[0].0, "failed");
    assert_eq!(outcomes[0].1.as_deref(), Some("57014"));
    assert!(outcomes[0]
        .2
        .as_deref()
        .unwrap()
        .contains("timed out after 300ms"));
    assert_eq!(outcomes[1].0, "done");

    c.batch_execute("SET pq.task_timeout = '200ms'; SELECT pq_put_task('sec_time2', 'sec_sleep(float8)', '[30]')")
        .unwrap();
    let outcomes = work(&mut c, "sec_time2");
    assert!(
        outcomes[0].2.as_deref().unwrap().contains("timed out"),
        "{outcomes:?}"
    );
    c.batch_execute("RESET pq.task_timeout").unwrap();

    // statement_timeout is the caller's: it ends pq_work, and the job returns to the queue.
    c.batch_execute("SELECT pq_put_task('sec_cancel', 'sec_sleep(float8)', '[30]'); SET statement_timeout = '300ms'")
        .unwrap();
    let e = c
        .query("SELECT * FROM pq_work('sec_cancel')", &[])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "57014");
    c.batch_execute("RESET statement_timeout").unwrap();
    assert_eq!(count(&mut c, "SELECT pq_len('sec_cancel')"), 1);
}

/// A role with no rights on the queue holds the advisory keys of jobs without claiming them:
/// pq_stats counts them as squatted, and getters claim them anyway, each exactly once.
#[test]
fn squatted_lock_keys_hide_no_job() {
    let mut c = connect();
    role(&mut c, "sec_squatter", "");
    let ids: Vec<i64> = c
        .query(
            "SELECT * FROM pq_put_many('sec_squat', (SELECT array_agg('{}'::jsonb) FROM generate_series(1, 400)))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut squatter = connect();
    squatter.batch_execute("SET ROLE sec_squatter").unwrap();
    let table: i32 = c
        .query_one("SELECT 'queue'::regclass::oid::int", &[])
        .unwrap()
        .get(0);
    for id in &ids[..200] {
        squatter
            .execute("SELECT pg_advisory_lock($1, $2)", &[&table, &(*id as i32)])
            .unwrap();
    }
    let stats = c
        .query_one(
            "SELECT ready, squatted, in_flight FROM pq_stats WHERE queue = 'sec_squat'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            stats.get::<_, i64>(0),
            stats.get::<_, i64>(1),
            stats.get::<_, i64>(2)
        ),
        (200, 200, 0)
    );
    let getters: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                let mut c = connect();
                let mut got = Vec::new();
                loop {
                    let rows = c
                        .query("SELECT id FROM pq_get('sec_squat', batch_size => 3)", &[])
                        .unwrap();
                    if rows.is_empty() {
                        return got;
                    }
                    got.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for g in getters {
        all.extend(g.join().unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (400, 400),
        "each job exactly once"
    );
    assert_eq!(count(&mut c, "SELECT pq_len('sec_squat')"), 0);
}

/// A squatter cannot hide a job behind a row lock that has ended: a committed `FOR UPDATE`
/// leaves its transaction in the row's header, which a claim must not take for a claimer
/// (nor a committed `FOR SHARE`, nor a rolled-back update).
#[test]
fn a_squatted_job_whose_row_was_locked_or_updated_before_is_still_claimed() {
    let mut c = connect();
    let table: i32 = c
        .query_one("SELECT 'queue'::regclass::oid::int", &[])
        .unwrap()
        .get(0);
    for before in [
        "SELECT id FROM queue WHERE id = $1 FOR UPDATE",
        "SELECT id FROM queue WHERE id = $1 FOR SHARE",
        "UPDATE queue SET data = data WHERE id = $1 AND false",
    ] {
        let id: i64 = c
            .query_one("SELECT pq_put('sec_locked_squat', '{}')", &[])
            .unwrap()
            .get(0);
        let mut locker = connect();
        let mut tx = locker.transaction().unwrap();
        tx.execute(before, &[&id]).unwrap();
        tx.commit().unwrap();
        // A rolled-back update leaves an aborted xmax.
        let mut tx = locker.transaction().unwrap();
        if before.starts_with("UPDATE") {
            tx.execute("UPDATE queue SET data = data WHERE id = $1", &[&id])
                .unwrap();
        }
        tx.rollback().unwrap();
        let mut squatter = connect();
        squatter
            .execute("SELECT pg_advisory_lock($1, $2)", &[&table, &(id as i32)])
            .unwrap();
        let got: Vec<i64> = c
            .query("SELECT id FROM pq_get('sec_locked_squat')", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, vec![id], "after {before}");
    }
}

/// pq_work finds SQL tasks through their own index: 20,000 jobs for client handlers in the
/// same queue are never read.
#[test]
fn sql_tasks_are_found_without_reading_other_jobs() {
    let mut c = connect();
    // A table of its own, so other tests' claims do not move its index statistics.
    c.batch_execute(
        r#"SELECT pq_create_table('sec_mixed_jobs') WHERE to_regclass('sec_mixed_jobs') IS NULL;
           SELECT pq_put_many('sec_mixed', (SELECT array_agg(jsonb_build_object('function', 'tasks.eat', 'args', jsonb_build_array(i))) FROM generate_series(1, 20000) i), tbl => 'sec_mixed_jobs');
           CREATE OR REPLACE FUNCTION sec_one() RETURNS void LANGUAGE sql AS 'SELECT';
           SELECT pq_register_task('sec_one()');
           SELECT pq_put_task('sec_mixed', 'sec_one()', tbl => 'sec_mixed_jobs');"#,
    )
    .unwrap();
    let work = |c: &mut Client| -> i64 {
        count(
            c,
            "SELECT count(*) FROM pq_work('sec_mixed', tbl => 'sec_mixed_jobs')",
        )
    };
    let read = |c: &mut Client| -> i64 {
        c.batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        c.query_one(
            "SELECT coalesce(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes WHERE indexrelname = 'sec_mixed_jobs_ready_idx'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let mut watcher = connect();
    let before = read(&mut watcher);
    assert_eq!(work(&mut c), 1);
    assert_eq!(work(&mut c), 0);
    c.batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    watcher
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .unwrap();
    let after = read(&mut watcher);
    assert!(
        after - before < 100,
        "pq_work read {} entries of the ready index",
        after - before
    );
    c.batch_execute("SELECT pq_clear('sec_mixed', 'sec_mixed_jobs')")
        .unwrap();
}

/// The background workers of `bg_security` (see `pg_test`): big payloads reach their task,
/// malformed jobs fail without stopping the worker, a task's session lock does not outlive it,
/// and a worker ended by pg_terminate_backend comes back.
#[test]
fn background_workers_survive_big_payloads_poison_locks_and_termination() {
    let mut c = connect();
    c.batch_execute(
        r#"CREATE TABLE IF NOT EXISTS sec_bg (n int, ok boolean);
           CREATE OR REPLACE FUNCTION sec_bg_measure(t text) RETURNS void LANGUAGE sql
               AS $$ INSERT INTO public.sec_bg VALUES (length(t), t = repeat('a', length(t))) $$;
           CREATE OR REPLACE FUNCTION sec_bg_lock() RETURNS void LANGUAGE sql
               AS $$ SELECT pg_advisory_lock(515151) $$;
           SELECT pq_register_task('sec_bg_measure(text)'), pq_register_task('sec_bg_lock()');
           INSERT INTO queue (q_name, data) VALUES
            ('bg_security', '{"function":"public.sec_bg_measure(text)","args":[1e400]}'),
            ('bg_security', '{"function":"public.sec_bg_measure(text)","args":["x"],"retry_in":"bogus","max_retries":1,"kwargs":{"nope":1}}');
           SELECT pq_put_task('bg_security', 'sec_bg_lock()');
           SELECT pq_put_task('bg_security', 'sec_bg_measure(text)', jsonb_build_array(repeat('a', n)))
           FROM unnest(ARRAY[1000, 1000000, 40000000, 100000000]) n;"#,
    )
    .unwrap();
    let wait_for = |c: &mut Client, sql: &str, want: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = count(c, sql);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{sql}: {got}, want {want}");
            thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(
        &mut c,
        "SELECT count(*) FROM queue WHERE q_name = 'bg_security' AND dequeued_at IS NULL",
        0,
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM sec_bg WHERE ok"), 4);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pq_failed WHERE queue = 'bg_security'"
        ),
        2
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 515151"
        ),
        0,
        "the task's session lock was released"
    );
    let workers =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pq worker bg_security'";
    wait_for(&mut c, workers, 2);
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pq worker bg_security'",
    )
    .unwrap();
    // Restarted by the postmaster five seconds later.
    thread::sleep(Duration::from_secs(1));
    wait_for(&mut c, workers, 2);
    c.batch_execute("SELECT pq_put_task('bg_security', 'sec_bg_measure(text)', '[\"after\"]')")
        .unwrap();
    wait_for(&mut c, "SELECT count(*) FROM sec_bg WHERE n = 5", 1);
    // A function created and registered while the workers wait is found (a fresh snapshot).
    c.batch_execute(
        r#"CREATE OR REPLACE FUNCTION sec_bg_late() RETURNS void LANGUAGE sql
               AS $$ INSERT INTO public.sec_bg VALUES (-1, true) $$;
           SELECT pq_register_task('sec_bg_late()');
           SELECT pq_put_task('bg_security', 'sec_bg_late()');"#,
    )
    .unwrap();
    wait_for(&mut c, "SELECT count(*) FROM sec_bg WHERE n = -1", 1);
}

/// What a review found after the first round, each a test: a table its owner controls cannot
/// vouch for another role; a task cannot plant temporary objects in the caller's session; a
/// consumer cannot replay another role's done task as that role; a task that swallows its
/// cancel and overruns is not done; a task's function is looked up as its enqueuer.
#[test]
fn owned_tables_temp_objects_replays_and_overruns_are_refused() {
    let mut admin = connect();
    role(&mut admin, "sec_mallory", "producer");
    role(&mut admin, "sec_cons", "consumer");
    admin
        .batch_execute(
            r#"CREATE SCHEMA IF NOT EXISTS sec_mal AUTHORIZATION sec_mallory;
               CREATE TABLE IF NOT EXISTS sec_paid (who text);
               GRANT INSERT ON sec_paid TO sec_mallory;
               CREATE OR REPLACE FUNCTION sec_pay() RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO public.sec_paid VALUES (current_user) $$;
               REVOKE EXECUTE ON FUNCTION sec_pay() FROM PUBLIC;
               SELECT pq_register_task('sec_pay()');
               SET ROLE sec_mallory;
               CREATE OR REPLACE FUNCTION sec_mal.pwn() RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO public.sec_paid VALUES ('pwned by ' || current_user) $$;
               CREATE OR REPLACE FUNCTION sec_mal.plant() RETURNS void LANGUAGE plpgsql
                   AS $$ BEGIN CREATE TEMP VIEW sec_planted AS SELECT 1 AS x; END $$;
               CREATE OR REPLACE FUNCTION sec_mal.stubborn() RETURNS void LANGUAGE plpgsql AS $$
                   DECLARE t0 timestamptz := clock_timestamp(); BEGIN
                   WHILE clock_timestamp() < t0 + interval '1.5 s' LOOP
                       BEGIN PERFORM pg_sleep(0.1); EXCEPTION WHEN query_canceled THEN NULL; END;
                   END LOOP; INSERT INTO public.sec_paid VALUES ('stubborn'); END $$;
               SELECT pq_register_task('sec_mal.pwn()'), pq_register_task('sec_mal.plant()'),
                      pq_register_task('sec_mal.stubborn()');
               RESET ROLE;"#,
        )
        .unwrap();
    let mut mallory = connect();
    mallory.batch_execute("SET ROLE sec_mallory").unwrap();
    // Her own table, claiming postgres enqueued the job: a temp table, and pq's own layout
    // with its trigger disabled.
    mallory
        .batch_execute(
            r#"CREATE TEMP TABLE sec_q (id bigserial PRIMARY KEY, enqueued_at timestamptz NOT NULL DEFAULT now(),
                   dequeued_at timestamptz, expected_at timestamptz, schedule_at timestamptz,
                   q_name text NOT NULL, data jsonb NOT NULL, enqueued_by regrole NOT NULL);
               INSERT INTO sec_q (q_name, data, enqueued_by) VALUES ('x', '{"function": "sec_mal.pwn()"}', 'postgres');
               SELECT pq_create_table('sec_mal.q2') WHERE to_regclass('sec_mal.q2') IS NULL;
               ALTER TABLE sec_mal.q2 DISABLE TRIGGER pq_enqueued_by;
               INSERT INTO sec_mal.q2 (q_name, data, enqueued_by) VALUES ('x', '{"function": "sec_mal.pwn()"}', 'postgres');"#,
        )
        .unwrap();
    for tbl in ["pg_temp.sec_q", "sec_mal.q2"] {
        let row = mallory
            .query_one(
                "SELECT outcome, sqlstate, message FROM pq_work('x', tbl => $1::text::regclass)",
                &[&tbl],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "failed", "{tbl}");
        assert_eq!(row.get::<_, String>(1), "42501", "{tbl}");
        assert!(row.get::<_, String>(2).contains("cannot vouch"), "{tbl}");
    }

    // A task cannot leave temporary objects in the session that works it.
    mallory
        .batch_execute("SELECT pq_put_task('sec_plant', 'sec_mal.plant()')")
        .unwrap();
    let planted = work(&mut admin, "sec_plant");
    assert_eq!(
        (planted[0].0.as_str(), planted[0].1.as_deref()),
        ("failed", Some("42501"))
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'sec_planted'"
        ),
        0
    );

    // A consumer puts back a done task that postgres enqueued: it now runs as the consumer.
    admin
        .batch_execute("SELECT pq_put_task('sec_replay', 'sec_pay()')")
        .unwrap();
    assert_eq!(work(&mut admin, "sec_replay")[0].0, "done");
    let mut cons = connect();
    cons.batch_execute(
        r#"SET ROLE sec_cons;
           UPDATE queue SET dequeued_at = NULL WHERE q_name = 'sec_replay';"#,
    )
    .unwrap();
    let replay = work(&mut admin, "sec_replay");
    assert_eq!(
        (replay[0].0.as_str(), replay[0].1.as_deref()),
        ("failed", Some("42501"))
    );
    assert!(replay[0].2.as_deref().unwrap().contains("sec_cons"));
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sec_paid WHERE who = 'postgres'"
        ),
        1
    );

    // Swallowing the cancel does not let a task overrun its limit and count as done.
    mallory
        .batch_execute(
            "SELECT pq_put_task('sec_overrun', 'sec_mal.stubborn()', timeout => '300ms')",
        )
        .unwrap();
    let overrun = work(&mut admin, "sec_overrun");
    assert_eq!(
        (overrun[0].0.as_str(), overrun[0].1.as_deref()),
        ("failed", Some("57014"))
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sec_paid WHERE who = 'stubborn'"
        ),
        0
    );

    // The function is found as its enqueuer: sec_cons has no USAGE on schema sec_mal.
    mallory
        .batch_execute("SELECT pq_put_task('sec_lookup', 'sec_mal.pwn()')")
        .unwrap();
    let mut worker = connect();
    worker.batch_execute("SET ROLE sec_cons").unwrap();
    let looked = work(&mut worker, "sec_lookup");
    assert_eq!(looked[0].0, "done", "{looked:?}");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sec_paid WHERE who = 'pwned by sec_mallory'"
        ),
        1
    );
}

/// What a second review found, each a test: a trigger on a table the attacker passes as `tbl`
/// cannot borrow pq's trust to rewrite another table's jobs; only the claiming transaction may
/// record a failure (no replay of done tasks); a task raising 57014 itself is an ordinary
/// failure, not a cancel of the whole run.
#[test]
fn second_review_trust_replays_and_fake_cancels() {
    let mut admin = connect();
    role(&mut admin, "sec_eve", "consumer");
    admin
        .batch_execute(
            r#"CREATE TABLE IF NOT EXISTS sec_ran2 (what text, who text);
               CREATE OR REPLACE FUNCTION sec_admin_job(x text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO public.sec_ran2 VALUES (x, current_user) $$;
               CREATE OR REPLACE FUNCTION sec_fake_cancel() RETURNS void LANGUAGE plpgsql
                   AS $$ BEGIN RAISE EXCEPTION 'fake cancel' USING ERRCODE = 'query_canceled'; END $$;
               SELECT pq_register_task('sec_admin_job(text)'), pq_register_task('sec_fake_cancel()');
               GRANT INSERT ON sec_ran2 TO sec_eve;"#,
        )
        .unwrap();
    // Eve (SELECT, UPDATE on queue) rewrites a pending job of postgres's from a trigger that
    // fires inside pq's claim on her own temp table.
    let job: i64 = admin
        .query_one(
            "SELECT pq_put_task('sec_trust', 'sec_admin_job(text)', '[\"legit\"]')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut eve = connect();
    eve.batch_execute(&format!(
        r#"SET ROLE sec_eve;
           CREATE TEMP TABLE t (id bigserial PRIMARY KEY, enqueued_at timestamptz NOT NULL DEFAULT now(),
               dequeued_at timestamptz, expected_at timestamptz, schedule_at timestamptz,
               q_name text NOT NULL, data jsonb NOT NULL, enqueued_by regrole NOT NULL DEFAULT current_user::text::regrole);
           CREATE FUNCTION pg_temp.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
               UPDATE public.queue SET data = data || '{{"args": ["hijacked"]}}', enqueued_by = 'postgres'
               WHERE id = {job}; RETURN NEW; END $$;
           CREATE TRIGGER zz BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION pg_temp.trg();
           INSERT INTO t (q_name, data) VALUES ('x', '{{}}');
           SELECT * FROM pq_get('x', tbl => 'pg_temp.t');"#
    ))
    .unwrap();
    let by: String = admin
        .query_one("SELECT enqueued_by::text FROM queue WHERE id = $1", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(by, "sec_eve", "the rewrite was stamped with its writer");
    let ran = work(&mut admin, "sec_trust");
    assert_eq!(ran[0].0, "done");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sec_ran2 WHERE who = 'postgres'"
        ),
        0
    );

    // A done job cannot be marked failed (and then requeued) by anyone but its claimer.
    let done: i64 = admin
        .query_one(
            "SELECT pq_put_task('sec_replay2', 'sec_admin_job(text)', '[\"once\"]')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(work(&mut admin, "sec_replay2")[0].0, "done");
    let e = eve
        .query_one("SELECT pq_task_failed($1, 'P0001', 'x')", &[&done])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sec_ran2 WHERE what = 'once'"
        ),
        1
    );

    // A task raising 57014 itself is recorded like any failure; the job behind it runs.
    admin
        .batch_execute(
            "SELECT pq_put_task('sec_fake', 'sec_fake_cancel()'); SELECT pq_put_task('sec_fake', 'sec_admin_job(text)', '[\"behind\"]')",
        )
        .unwrap();
    let outcomes = work(&mut admin, "sec_fake");
    assert_eq!(
        (
            outcomes[0].0.as_str(),
            outcomes[0].1.as_deref(),
            outcomes[1].0.as_str()
        ),
        ("failed", Some("57014"), "done")
    );
}

/// A squatter and an open FOR KEY SHARE (a foreign key check on the job) together hold
/// nothing back: that lock blocks no claim, so the job is not taken for one being claimed.
#[test]
fn a_squatted_job_under_an_open_key_share_lock_is_claimed() {
    let mut c = connect();
    let table: i32 = c
        .query_one("SELECT 'queue'::regclass::oid::int", &[])
        .unwrap()
        .get(0);
    let id: i64 = c
        .query_one("SELECT pq_put('sec_keyshare', '{}')", &[])
        .unwrap()
        .get(0);
    let mut squatter = connect();
    squatter
        .execute("SELECT pg_advisory_lock($1, $2)", &[&table, &(id as i32)])
        .unwrap();
    let mut locker = connect();
    let mut tx = locker.transaction().unwrap();
    tx.execute("SELECT 1 FROM queue WHERE id = $1 FOR KEY SHARE", &[&id])
        .unwrap();
    let got: Vec<i64> = c
        .query("SELECT id FROM pq_get('sec_keyshare')", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, vec![id]);
    tx.rollback().unwrap();
}

/// A failure recorded in a savepoint that rolls back is undone with it; the claim may record it
/// again (review: the second pq_task_failed got 55000 and the job was consumed with no retry).
#[test]
fn a_failure_recorded_in_a_rolled_back_savepoint_can_be_recorded_again() {
    let mut c = connect();
    let id: i64 = c
        .query_one(
            r#"SELECT pq_put('sec_refail', '{"function": "eat", "args": [], "kwargs": {}, "retried": 0, "max_retries": 3, "retry_in": "1s"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    let mut w = connect();
    w.batch_execute("BEGIN").unwrap();
    let got: i64 = w
        .query_one(
            "SELECT id FROM pq_get('sec_refail', functions => ARRAY['eat'])",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(got, id);
    w.batch_execute("SAVEPOINT a").unwrap();
    let first: String = w
        .query_one("SELECT pq_task_failed($1, 'P0001', 'x')", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(first, "retry");
    w.batch_execute("ROLLBACK TO SAVEPOINT a").unwrap();
    let again: String = w
        .query_one("SELECT pq_task_failed($1, 'P0001', 'x')", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(again, "retry");
    let e = w
        .query_one("SELECT pq_task_failed($1, 'P0001', 'x')", &[&id])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "55000", "an outcome is recorded once");
    w.batch_execute("ROLLBACK").unwrap();
}

/// A claim undone by ROLLBACK TO SAVEPOINT is no claim: its job cannot then be reported
/// failed (and so requeued and replayed as its enqueuer) once another worker has done it.
#[test]
fn a_claim_rolled_back_to_a_savepoint_cannot_replay_the_task() {
    let mut admin = connect();
    role(&mut admin, "sec_sp", "consumer");
    admin
        .batch_execute(
            r#"CREATE TABLE IF NOT EXISTS sec_sp_ran (x text);
               CREATE OR REPLACE FUNCTION sec_sp_job(x text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO public.sec_sp_ran VALUES (x) $$;
               SELECT pq_register_task('sec_sp_job(text)');"#,
        )
        .unwrap();
    let job: i64 = admin
        .query_one(
            "SELECT pq_put_task('sec_sp', 'sec_sp_job(text)', '[\"once\"]', max_retries => 5)",
            &[],
        )
        .unwrap()
        .get(0);
    let mut attacker = connect();
    attacker
        .batch_execute("SET ROLE sec_sp; BEGIN; SAVEPOINT s")
        .unwrap();
    let got: i64 = attacker
        .query_one("SELECT id FROM pq_get('sec_sp')", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, job);
    attacker.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    assert_eq!(work(&mut admin, "sec_sp")[0].0, "done");
    attacker
        .execute(
            "UPDATE queue SET dequeued_at = dequeued_at WHERE id = $1",
            &[&job],
        )
        .unwrap();
    let e = attacker
        .query_one("SELECT pq_task_failed($1, 'P0001', 'replay')", &[&job])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    attacker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut admin, "SELECT count(*) FROM sec_sp_ran"), 1);
}

/// What a third review found: a no-op UPDATE (which makes the caller the row's last writer)
/// does not let anyone but the claiming transaction report a done job failed; and a job whose
/// error message would echo 135 MB of its own data is recorded (message truncated), not left
/// at the head of the queue.
#[test]
fn third_review_noop_updates_and_huge_messages() {
    let mut admin = connect();
    role(&mut admin, "sec_r3", "consumer");
    admin
        .batch_execute(
            r#"CREATE TABLE IF NOT EXISTS sec_r3_ran (x text);
               CREATE OR REPLACE FUNCTION sec_r3_job(x text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO public.sec_r3_ran VALUES (x) $$;
               SELECT pq_register_task('sec_r3_job(text)');"#,
        )
        .unwrap();
    let done: i64 = admin
        .query_one(
            "SELECT pq_put_task('sec_r3', 'sec_r3_job(text)', '[\"once\"]', max_retries => 5)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(work(&mut admin, "sec_r3")[0].0, "done");
    let mut attacker = connect();
    attacker.batch_execute("SET ROLE sec_r3; BEGIN").unwrap();
    attacker
        .execute("UPDATE queue SET q_name = q_name WHERE id = $1", &[&done])
        .unwrap();
    let e = attacker
        .query_one("SELECT pq_task_failed($1, 'P0001', 'replay')", &[&done])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    attacker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut admin, "SELECT count(*) FROM sec_r3_ran"), 1);

    admin
        .batch_execute(
            r#"SELECT pq_put('sec_r3_big', jsonb_build_object('function', 'public.sec_r3_job(text)',
                   'args', '["x"]'::jsonb, 'timeout', repeat('x', 135000000)));
               SELECT pq_put_task('sec_r3_big', 'sec_r3_job(text)', '["behind"]');"#,
        )
        .unwrap();
    let outcomes = work(&mut admin, "sec_r3_big");
    assert_eq!(
        (
            outcomes[0].0.as_str(),
            outcomes[0].1.as_deref(),
            outcomes[1].0.as_str()
        ),
        ("failed", Some("22007"), "done")
    );
    assert!(outcomes[0].2.as_deref().unwrap().len() < 5000);
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sec_r3_ran WHERE x = 'behind'"
        ),
        1
    );
}
