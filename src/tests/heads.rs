//! Queue heads (src/queue/heads.rs), wake-ups from every commit, retention and `pq.notify = auto`,
//! with several real connections to the test cluster, which preloads pq (so heads are kept).
#![cfg(test)]

use super::sessions::{connect, get_in, put_in, queue_table};
use postgres::Client;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn get_one(c: &mut Client, queue: &str) -> Option<i64> {
    c.query_opt("SELECT id FROM pq_get($1)", &[&queue])
        .unwrap()
        .map(|r| r.get(0))
}

#[test]
fn a_job_committed_late_with_a_lower_id_is_still_claimed() {
    // A put draws its id, then commits after later puts were claimed and the head moved past
    // it: the commit lowers the head, so the next claim still finds it.
    let mut early = connect();
    let mut c = connect();
    let mut tx = early.transaction().unwrap();
    let late: i64 = tx
        .query_one("SELECT pq_put('h_late', '{\"n\": 0}')", &[])
        .unwrap()
        .get(0);
    let later: Vec<i64> = (1..=5)
        .map(|n| {
            c.query_one(
                "SELECT pq_put('h_late', jsonb_build_object('n', $1::int))",
                &[&n],
            )
            .unwrap()
            .get(0)
        })
        .collect();
    for id in &later {
        assert_eq!(get_one(&mut c, "h_late"), Some(*id));
    }
    assert_eq!(get_one(&mut c, "h_late"), None);
    tx.commit().unwrap();
    assert_eq!(get_one(&mut c, "h_late"), Some(late));
}

#[test]
fn a_rolled_back_claim_is_claimed_again_at_once() {
    let mut c = connect();
    let mut other = connect();
    for n in 0..3 {
        c.execute(
            "SELECT pq_put('h_rollback', jsonb_build_object('n', $1::int))",
            &[&n],
        )
        .unwrap();
    }
    let mut tx = other.transaction().unwrap();
    let first: i64 = tx
        .query_one("SELECT id FROM pq_get('h_rollback')", &[])
        .unwrap()
        .get(0);
    // Claims behind it move the head past it.
    let second = get_one(&mut c, "h_rollback").unwrap();
    assert!(second > first);
    tx.rollback().unwrap();
    assert_eq!(get_one(&mut c, "h_rollback"), Some(first));
    // And in a subtransaction (a plpgsql EXCEPTION block) rolled back alone.
    c.batch_execute(
        "DO $$ BEGIN
             BEGIN PERFORM * FROM pq_get('h_rollback'); RAISE EXCEPTION 'undo'; EXCEPTION WHEN OTHERS THEN END;
         END $$",
    )
    .unwrap();
    assert!(get_one(&mut c, "h_rollback").is_some());
    assert_eq!(get_one(&mut c, "h_rollback"), None);
}

#[test]
fn jobs_made_ready_by_hand_are_found() {
    // Updates that make a job ready or move it earlier lower the head (the trigger fires on
    // every column of claim order).
    let mut c = connect();
    let ids: Vec<i64> = (0..4)
        .map(|n| {
            c.query_one(
                "SELECT pq_put('h_hand', jsonb_build_object('n', $1::int))",
                &[&n],
            )
            .unwrap()
            .get(0)
        })
        .collect();
    for id in &ids {
        assert_eq!(get_one(&mut c, "h_hand"), Some(*id));
    }
    c.execute(
        "UPDATE queue SET dequeued_at = NULL WHERE id = $1",
        &[&ids[0]],
    )
    .unwrap();
    assert_eq!(get_one(&mut c, "h_hand"), Some(ids[0]));
    let scheduled: i64 = c
        .query_one("SELECT pq_put('h_hand', '{}', '1h')", &[])
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE queue SET schedule_at = NULL WHERE id = $1",
        &[&scheduled],
    )
    .unwrap();
    assert_eq!(get_one(&mut c, "h_hand"), Some(scheduled));
    // A job with no expected_at is behind one with any; moving another queue's job here too.
    let moved: i64 = c
        .query_one("SELECT pq_put('h_hand_other', '{}')", &[])
        .unwrap()
        .get(0);
    let last: i64 = c
        .query_one("SELECT pq_put('h_hand', '{}')", &[])
        .unwrap()
        .get(0);
    assert_eq!(get_one(&mut c, "h_hand"), Some(last));
    c.execute(
        "UPDATE queue SET q_name = 'h_hand' WHERE id = $1",
        &[&moved],
    )
    .unwrap();
    assert_eq!(get_one(&mut c, "h_hand"), Some(moved));
    let early: i64 = c
        .query_one("SELECT pq_put('h_hand', '{}')", &[])
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE queue SET expected_at = now() - interval '1 day' WHERE id = $1",
        &[&early],
    )
    .unwrap();
    assert_eq!(get_one(&mut c, "h_hand"), Some(early));
    assert_eq!(get_one(&mut c, "h_hand"), None);
}

#[test]
fn four_getters_with_rollbacks_and_a_held_snapshot_take_each_job_exactly_once() {
    // The head moves under concurrent claims, rollbacks (every fifth) and late puts, while a
    // REPEATABLE READ session holds its snapshot: every job is taken exactly once, none lost.
    let mut holder = connect();
    let mut snap = holder
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    snap.query_one("SELECT count(*) FROM pg_class", &[])
        .unwrap();
    let total = 4000;
    let start = Arc::new(Barrier::new(6));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                let mut ids = Vec::new();
                for n in 0..total / 2 {
                    // Some puts hold their id a moment before committing.
                    let mut tx = c.transaction().unwrap();
                    let id: i64 = tx
                        .query_one(
                            "SELECT pq_put('h_churn', jsonb_build_object('n', $1::int))",
                            &[&(p * total + n)],
                        )
                        .unwrap()
                        .get(0);
                    if n % 7 == 0 {
                        thread::sleep(Duration::from_millis(2));
                    }
                    tx.commit().unwrap();
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|w| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                let mut got = Vec::new();
                let mut idle = Instant::now();
                let mut k = 0;
                while idle.elapsed() < Duration::from_secs(3) {
                    let mut tx = c.transaction().unwrap();
                    let id: Option<i64> = tx
                        .query_opt("SELECT id FROM pq_get('h_churn', '100ms')", &[])
                        .unwrap()
                        .map(|r| r.get(0));
                    k += 1;
                    match id {
                        Some(_) if (k + w) % 5 == 0 => tx.rollback().unwrap(),
                        Some(id) => {
                            tx.commit().unwrap();
                            got.push(id);
                            idle = Instant::now();
                        }
                        None => tx.commit().unwrap(),
                    }
                }
                got
            })
        })
        .collect();
    let put: HashSet<i64> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let got: Vec<i64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    snap.rollback().unwrap();
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(got.len(), unique.len(), "a job was taken twice");
    assert_eq!(unique, put, "a job was lost");
}

#[test]
fn a_plain_insert_wakes_a_blocked_get_at_once() {
    // Python pq's put is a plain INSERT: the trigger reports it, so the waiter is woken at
    // commit rather than by its poll.
    let mut c = connect();
    let waiter = thread::spawn(|| {
        let mut c = connect();
        let t = Instant::now();
        let row = c
            .query_opt("SELECT id FROM pq_get('h_insert', '10s')", &[])
            .unwrap();
        (row.is_some(), Instant::now(), t)
    });
    // Let the waiter sleep through a few polls, so its cap has grown past what we measure.
    thread::sleep(Duration::from_millis(1500));
    c.execute(
        "INSERT INTO queue (q_name, data) VALUES ('h_insert', '{}')",
        &[],
    )
    .unwrap();
    let committed = Instant::now();
    let (got, returned, _) = waiter.join().unwrap();
    assert!(got);
    let latency = returned.saturating_duration_since(committed);
    assert!(
        latency < Duration::from_millis(300),
        "woken after {latency:?}, not at commit"
    );
}

#[test]
fn pq_purge_deletes_old_finished_jobs_and_keeps_the_rest() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_create_table('h_purge');
         INSERT INTO h_purge (q_name, data, dequeued_at)
             SELECT 'q', '{}', now() - interval '2 days' FROM generate_series(1, 2500);
         INSERT INTO h_purge (q_name, data, dequeued_at)
             SELECT 'q', '{}', now() - interval '1 minute' FROM generate_series(1, 10);
         INSERT INTO h_purge (q_name, data) SELECT 'q', '{}' FROM generate_series(1, 5);
         INSERT INTO h_purge (q_name, data, dequeued_at)
             VALUES ('q', '{\"function\": \"f()\", \"failed_at\": \"2026-01-01\"}', now() - interval '3 days');",
    )
    .unwrap();
    let count = |c: &mut Client, w: &str| -> i64 {
        c.query_one(&format!("SELECT count(*) FROM h_purge WHERE {w}"), &[])
            .unwrap()
            .get(0)
    };
    // Bounded per call; the default cut-off is pq.retention (one day).
    let n: i64 = c
        .query_one("SELECT pq_purge(max_rows => 2000, tbl => 'h_purge')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
    let n: i64 = c
        .query_one("SELECT pq_purge(tbl => 'h_purge')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    assert_eq!(count(&mut c, "dequeued_at IS NULL"), 5, "pending jobs stay");
    assert_eq!(count(&mut c, "dequeued_at > now() - interval '1 hour'"), 10);
    assert_eq!(count(&mut c, "data ? 'failed_at'"), 1, "failed jobs stay");
    let n: i64 = c
        .query_one(
            "SELECT pq_purge('1 day', failed => true, tbl => 'h_purge')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let n: i64 = c
        .query_one("SELECT pq_purge('0', tbl => 'h_purge')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    // Bad input: a clear error, nothing deleted.
    for (call, state) in [
        ("SELECT pq_purge('-1 day', tbl => 'h_purge')", "22023"),
        ("SELECT pq_purge(max_rows => 0, tbl => 'h_purge')", "22023"),
        ("SELECT pq_purge(tbl => 'pg_class')", "42809"),
    ] {
        let e = c.query_one(call, &[]).unwrap_err();
        assert_eq!(e.code().unwrap().code(), state, "{call}: {e}");
    }
    c.batch_execute("SET pq.retention = -1").ok(); // SIGHUP setting: refused in a session
    c.batch_execute("DROP TABLE h_purge").unwrap();
}

#[test]
fn puts_notify_only_channels_someone_listens_on() {
    use postgres::fallible_iterator::FallibleIterator;
    // pq is preloaded here, so pq.notify = auto sends NOTIFY only to channels some connected
    // session has listened on (tests.pq_listened shows the count). A transaction that sent
    // NOTIFY cannot be prepared (0A000): that tells whether a put sent one.
    let mut c = connect();
    let listened = |c: &mut Client, channel: &str| -> bool {
        c.query_one("SELECT tests.pq_listened($1)", &[&channel])
            .unwrap()
            .get(0)
    };
    let prepares = |c: &mut Client, queue: &str| -> Result<(), String> {
        c.batch_execute("BEGIN").unwrap();
        c.execute("SELECT pq_put($1, '{}')", &[&queue]).unwrap();
        match c.batch_execute(&format!("PREPARE TRANSACTION 'h_{queue}'")) {
            Ok(()) => {
                c.batch_execute(&format!("ROLLBACK PREPARED 'h_{queue}'"))
                    .unwrap();
                Ok(())
            }
            Err(e) => Err(e.code().map(|s| s.code().to_string()).unwrap_or_default()),
        }
    };
    let heard = |l: &mut Client| -> Vec<String> {
        let mut heard = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while heard.is_empty() && Instant::now() < deadline {
            l.batch_execute("SELECT 1").unwrap();
            let got: Vec<postgres::Notification> = l.notifications().iter().collect().unwrap();
            heard.extend(got.into_iter().map(|n| n.channel().to_string()));
        }
        heard
    };
    assert!(!listened(&mut c, "h_heard"));
    let mut listener = connect();
    listener.batch_execute("LISTEN h_heard").unwrap();
    assert!(listened(&mut c, "h_heard"));
    assert!(!listened(&mut c, "h_unheard"));
    c.execute("SELECT pq_put('h_heard', '{}')", &[]).unwrap();
    assert_eq!(heard(&mut listener), vec!["h_heard".to_string()]);
    // Decided just before commit: a session that starts to listen while the putting
    // transaction runs is notified.
    let mut late = connect();
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT pq_put('h_late_listener', '{}')", &[])
        .unwrap();
    late.batch_execute("LISTEN h_late_listener").unwrap();
    tx.commit().unwrap();
    assert_eq!(heard(&mut late), vec!["h_late_listener".to_string()]);
    // Under auto a prepared put sends nothing, heard or not (PostgreSQL cannot prepare a
    // NOTIFY: another session's LISTEN must not break a producer's two-phase commit); under on
    // it does, and PREPARE fails as with a NOTIFY of one's own; off never.
    assert_eq!(prepares(&mut c, "h_unheard"), Ok(()));
    assert_eq!(prepares(&mut c, "h_heard"), Ok(()), "auto broke a PREPARE");
    c.batch_execute("SET pq.notify = on").unwrap();
    assert_eq!(prepares(&mut c, "h_unheard"), Err("0A000".into()));
    c.batch_execute("SET pq.notify = off").unwrap();
    c.execute("SELECT pq_put('h_heard', '{}')", &[]).unwrap();
    assert!(heard(&mut listener).is_empty(), "pq.notify = off notified");
    c.batch_execute("RESET pq.notify").unwrap();
    // A listener that leaves is counted out.
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(5);
    while listened(&mut c, "h_heard") {
        assert!(
            Instant::now() < deadline,
            "a listener that left is still counted"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn claim_order_is_the_same_from_the_indexes_and_from_sql() {
    // Claims read candidates straight from the ready and scheduled indexes; a table without
    // them is read through candidates.sql. Both give the documented order: earliest
    // expected_at first (due scheduled jobs included), then the others by id.
    let mut c = connect();
    for (table, drop) in [("h_order_idx", false), ("h_order_sql", true)] {
        c.batch_execute(&format!("SELECT pq_create_table('{table}')"))
            .unwrap();
        if drop {
            c.batch_execute(&format!("DROP INDEX {table}_ready_idx"))
                .unwrap();
        }
        let put = |c: &mut Client, sql: &str| -> i64 {
            c.query_one(&sql.replace("TBL", table), &[]).unwrap().get(0)
        };
        let plain1 = put(&mut c, "SELECT pq_put('q', '{}', tbl => 'TBL')");
        let late = put(
            &mut c,
            "SELECT pq_put('q', '{}', expected_at => '2h', tbl => 'TBL')",
        );
        let soon = put(
            &mut c,
            "SELECT pq_put('q', '{}', expected_at => '1h', tbl => 'TBL')",
        );
        // Scheduled a moment ago (due now), with the earliest expected_at of all.
        let due = put(&mut c, "INSERT INTO TBL (q_name, data, schedule_at, expected_at) VALUES ('q', '{}', now() - interval '1 s', now()) RETURNING id");
        let future = put(&mut c, "SELECT pq_put('q', '{}', '1h', tbl => 'TBL')");
        let plain2 = put(&mut c, "SELECT pq_put('q', '{}', tbl => 'TBL')");
        let due_plain = put(&mut c, "INSERT INTO TBL (q_name, data, schedule_at) VALUES ('q', '{}', now() - interval '1 s') RETURNING id");
        let _ = future;
        let mut got = Vec::new();
        while let Some(r) = c
            .query_opt(
                &format!("SELECT id FROM pq_get('q', tbl => '{table}')"),
                &[],
            )
            .unwrap()
        {
            got.push(r.get::<_, i64>(0));
        }
        assert_eq!(
            got,
            vec![due, soon, late, plain1, plain2, due_plain],
            "{table}"
        );
        c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }
}

#[test]
fn row_security_is_applied_and_hidden_jobs_stay_for_others() {
    // Claims read candidates around the executor only where it would check nothing more: with
    // a policy on the table, a role sees (and claims) only its rows, and the jobs it cannot
    // see are still found by the others (its claims do not move the queue's head).
    let mut c = connect();
    c.batch_execute(
        "DO $$ BEGIN CREATE ROLE h_tenant; EXCEPTION WHEN duplicate_object THEN END $$;
         SELECT pq_create_table('h_rls');
         GRANT SELECT, UPDATE ON h_rls TO h_tenant;
         ALTER TABLE h_rls ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON h_rls TO h_tenant USING (data->>'tenant' = 'h_tenant');
         INSERT INTO h_rls (q_name, data)
             SELECT 'q', jsonb_build_object('tenant', CASE WHEN g % 2 = 0 THEN 'h_tenant' ELSE 'other' END, 'n', g)
             FROM generate_series(1, 10) g;",
    )
    .unwrap();
    let mut tenant = connect();
    tenant.batch_execute("SET ROLE h_tenant").unwrap();
    let mut mine = Vec::new();
    while let Some(r) = tenant
        .query_opt(
            "SELECT (data->>'n')::int FROM pq_get('q', tbl => 'h_rls')",
            &[],
        )
        .unwrap()
    {
        mine.push(r.get::<_, i32>(0));
    }
    assert_eq!(mine, vec![2, 4, 6, 8, 10]);
    let mut others = Vec::new();
    while let Some(r) = c
        .query_opt(
            "SELECT (data->>'n')::int FROM pq_get('q', tbl => 'h_rls')",
            &[],
        )
        .unwrap()
    {
        others.push(r.get::<_, i32>(0));
    }
    assert_eq!(others, vec![1, 3, 5, 7, 9]);
    tenant.batch_execute("RESET ROLE").unwrap();
    c.batch_execute("DROP TABLE h_rls").unwrap();
}

#[test]
fn a_partitioned_queue_table_is_claimed_through_sql() {
    // Only plain tables are read around the executor; a partitioned one (even a TEMP one that
    // any role can make) goes through candidates.sql.
    let mut c = connect();
    c.batch_execute(
        "CREATE TEMP TABLE h_parted (id bigserial, enqueued_at timestamptz NOT NULL DEFAULT now(),
             dequeued_at timestamptz, expected_at timestamptz, schedule_at timestamptz,
             q_name text NOT NULL, data jsonb NOT NULL) PARTITION BY LIST (q_name);
         CREATE TEMP TABLE h_parted_d PARTITION OF h_parted DEFAULT;
         CREATE INDEX ON h_parted (q_name, expected_at, id) WHERE dequeued_at IS NULL AND schedule_at IS NULL;
         CREATE INDEX ON h_parted (q_name, schedule_at) WHERE dequeued_at IS NULL AND schedule_at IS NOT NULL;
         INSERT INTO h_parted (q_name, data) SELECT 'q', jsonb_build_object('n', g) FROM generate_series(1, 3) g;",
    )
    .unwrap();
    let mut got = Vec::new();
    while let Some(r) = c
        .query_opt(
            "SELECT (data->>'n')::int FROM pq_get('q', tbl => 'h_parted')",
            &[],
        )
        .unwrap()
    {
        got.push(r.get::<_, i32>(0));
    }
    assert_eq!(got, vec![1, 2, 3]);
}

#[test]
fn the_maintenance_worker_purges_every_queue_table_and_skips_one_that_fails() {
    // The test cluster preloads pq, so the maintenance worker purges this database every
    // 10 s, with pq.retention at its default (1 day). A queue table whose purge raises comes
    // first (lower OID) and must not stop the next; a table merely carrying a trigger of that
    // name on another function is not a queue table at all.
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_create_table('h_mw_fails');
         CREATE FUNCTION h_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
         CREATE TRIGGER refuse BEFORE DELETE ON h_mw_fails FOR EACH ROW EXECUTE FUNCTION h_refuse();
         CREATE TABLE h_mw_fake (x int);
         CREATE FUNCTION pq_stamp_enqueuer_fake() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER pq_enqueued_by BEFORE INSERT ON h_mw_fake FOR EACH ROW EXECUTE FUNCTION pq_stamp_enqueuer_fake();
         SELECT pq_create_table('h_mw_ok');
         INSERT INTO h_mw_fails (q_name, data, dequeued_at) SELECT 'q', '{}', now() - interval '2 days' FROM generate_series(1, 3);
         INSERT INTO h_mw_ok (q_name, data, dequeued_at) SELECT 'q', '{}', now() - interval '2 days' FROM generate_series(1, 1500);
         INSERT INTO h_mw_ok (q_name, data) VALUES ('q', '{}');
         INSERT INTO h_mw_ok (q_name, data, dequeued_at) VALUES ('q', '{}', now());",
    )
    .unwrap();
    let left = |c: &mut Client| -> i64 {
        c.query_one("SELECT count(*) FROM h_mw_ok", &[])
            .unwrap()
            .get(0)
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while left(&mut c) > 2 {
        assert!(
            Instant::now() < deadline,
            "the maintenance worker did not purge h_mw_ok"
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(left(&mut c), 2, "the pending and the recent job stay");
    let kept: i64 = c
        .query_one("SELECT count(*) FROM h_mw_fails", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, 3);
    let workers: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pq maintenance'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 1, "the maintenance worker keeps running");
    c.batch_execute(
        "DROP TABLE h_mw_fails, h_mw_fake, h_mw_ok; DROP FUNCTION h_refuse(); DROP FUNCTION pq_stamp_enqueuer_fake();",
    )
    .unwrap();
}

#[test]
fn prepared_transactions_are_seen_as_soon_as_they_end() {
    // A prepared transaction ends in a session that never saw its puts or claims: COMMIT
    // PREPARED and ROLLBACK PREPARED send the database's heads back to the start, so its job
    // is found by the next claim, not only by the next periodic full scan.
    let mut c = connect();
    let mut p = connect();
    p.batch_execute("BEGIN").unwrap();
    let put: i64 = p
        .query_one("SELECT pq_put('h_2pc', '{\"n\": 0}')", &[])
        .unwrap()
        .get(0);
    // Nobody listens on h_2pc, so pq.notify = auto sends no NOTIFY (which could not be prepared).
    p.batch_execute("PREPARE TRANSACTION 'h_2pc_put'").unwrap();
    for n in 1..=3 {
        c.execute(
            "SELECT pq_put('h_2pc', jsonb_build_object('n', $1::int))",
            &[&n],
        )
        .unwrap();
    }
    for _ in 1..=3 {
        assert!(get_one(&mut c, "h_2pc").is_some());
    }
    c.batch_execute("COMMIT PREPARED 'h_2pc_put'").unwrap();
    assert_eq!(get_one(&mut c, "h_2pc"), Some(put));
    // A prepared claim rolled back.
    for n in 4..=6 {
        c.execute(
            "SELECT pq_put('h_2pc', jsonb_build_object('n', $1::int))",
            &[&n],
        )
        .unwrap();
    }
    p.batch_execute("BEGIN").unwrap();
    let held: i64 = p
        .query_one("SELECT id FROM pq_get('h_2pc')", &[])
        .unwrap()
        .get(0);
    p.batch_execute("PREPARE TRANSACTION 'h_2pc_get'").unwrap();
    assert!(get_one(&mut c, "h_2pc").is_some());
    assert!(get_one(&mut c, "h_2pc").is_some());
    assert_eq!(get_one(&mut c, "h_2pc"), None);
    c.batch_execute("ROLLBACK PREPARED 'h_2pc_get'").unwrap();
    assert_eq!(get_one(&mut c, "h_2pc"), Some(held));
}

/// A squatted job (its key held by a session that is not claiming it) whose row someone else
/// only locks is not passed by the head: once that lock ends, the next claim takes it, before
/// the jobs put after it (review: the head moved past it, and it came back only with a full
/// scan, 382 jobs later). A committed lock (a foreign key check's FOR KEY SHARE) holds nothing
/// back, on tables read from the indexes and through SQL alike (review: through SQL, such a
/// job was skipped for as long as the squatter held the key).
#[test]
fn a_squatted_job_behind_a_row_lock_keeps_its_place() {
    let mut c = connect();
    for (table, sql_path) in [("h_sq_idx", false), ("h_sq_sql", true)] {
        queue_table(&mut c, table, sql_path);
        let put = |c: &mut Client| put_in(c, table);
        let get = |c: &mut Client| get_in(c, table);
        let (j, k, l) = (put(&mut c), put(&mut c), put(&mut c));
        // A foreign key check's lock, committed: its xid stays in the row's header.
        c.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM {table} WHERE id = {j} FOR KEY SHARE; COMMIT"
        ))
        .unwrap();
        let mut squatter = connect();
        squatter
            .execute(
                "SELECT pg_advisory_lock($1::text::regclass::oid::int, $2::int)",
                &[&table, &(j as i32)],
            )
            .unwrap();
        let mut locker = connect();
        locker
            .batch_execute(&format!(
                "BEGIN; SELECT 1 FROM {table} WHERE id = {j} FOR SHARE"
            ))
            .unwrap();
        // Held: skipped, never waited for.
        let t0 = Instant::now();
        assert_eq!(
            get(&mut c),
            Some(k),
            "{table}: the next job, past the held one"
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "{table}: waited");
        locker.batch_execute("COMMIT").unwrap();
        assert_eq!(
            get(&mut c),
            Some(j),
            "{table}: the squatted job once its row lock ended, before {l}"
        );
        assert_eq!(get(&mut c), Some(l), "{table}");
        drop(squatter);
    }
}

/// A job whose row another transaction is updating (not a claim, so nothing lowers the head
/// when it ends) is skipped without waiting, and the head does not pass it: once that update
/// ends, committed or rolled back, the next claim takes it before the jobs put after it. On the
/// direct path the claim's own `heap_update` finds the running update; through SQL, `SKIP
/// LOCKED` does.
#[test]
fn a_job_being_updated_by_another_transaction_keeps_its_place() {
    let mut c = connect();
    for (table, sql_path) in [("h_upd_idx", false), ("h_upd_sql", true)] {
        queue_table(&mut c, table, sql_path);
        let put = |c: &mut Client| put_in(c, table);
        let get = |c: &mut Client| get_in(c, table);
        for end in ["ROLLBACK", "COMMIT"] {
            let (j, k, l) = (put(&mut c), put(&mut c), put(&mut c));
            // An update of a column the enqueuer trigger does not watch: no head is lowered
            // when it ends.
            let mut updater = connect();
            updater
                .batch_execute(&format!(
                    "BEGIN; UPDATE {table} SET enqueued_at = enqueued_at WHERE id = {j}"
                ))
                .unwrap();
            let t0 = Instant::now();
            assert_eq!(get(&mut c), Some(k), "{table}: past the row being updated");
            assert!(t0.elapsed() < Duration::from_secs(2), "{table}: waited");
            updater.batch_execute(end).unwrap();
            assert_eq!(get(&mut c), Some(j), "{table}, {end}: before {l}");
            assert_eq!(get(&mut c), Some(l), "{table}, {end}");
        }
    }
}

/// A queue whose ids are far apart (other queues' puts between them, more than a claim reads
/// first past its head) is still claimed in order, to its last job, and the jobs right after
/// the head are still taken first.
#[test]
fn jobs_far_apart_in_id_are_claimed_in_order() {
    let mut c = connect();
    let mut mine = Vec::new();
    for gap in [0, 1, 31, 32, 33, 100, 1000, 0, 2] {
        if gap > 0 {
            c.batch_execute(&format!(
                "SELECT pq_put_many('h_far_other', (SELECT array_agg('{{}}'::jsonb) FROM generate_series(1, {gap})))"
            ))
            .unwrap();
        }
        mine.push(
            c.query_one("SELECT pq_put('h_far', '{}')", &[])
                .unwrap()
                .get::<_, i64>(0),
        );
    }
    let got: Vec<i64> = std::iter::from_fn(|| get_one(&mut c, "h_far")).collect();
    assert_eq!(got, mine);
    c.batch_execute("SELECT pq_clear('h_far_other')").unwrap();
}
