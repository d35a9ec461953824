//! Operating queues, with several real connections: pause and resume, concurrency limits,
//! unique jobs, cancel, periodic jobs and retry backoff. Each test uses its own queue names.
#![cfg(test)]

use super::sessions::connect;
use postgres::Client;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn put(c: &mut Client, queue: &str) -> i64 {
    c.query_one("SELECT pq_put($1, '{}')", &[&queue])
        .unwrap()
        .get(0)
}

fn status(c: &mut Client, id: i64) -> Option<String> {
    c.query_one("SELECT pq_status($1)", &[&id]).unwrap().get(0)
}

/// Claims one job in the open transaction `tx`; its id, if any.
fn get_one(tx: &mut postgres::Transaction<'_>, queue: &str) -> Option<i64> {
    tx.query("SELECT id FROM pq_get($1)", &[&queue])
        .unwrap()
        .first()
        .map(|r| r.get(0))
}

#[test]
fn a_paused_queue_takes_puts_gives_nothing_and_wakes_its_waiters_on_resume() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_paused'); SELECT pq_resume('o_paused')")
        .unwrap();
    let id = put(&mut c, "o_paused");
    assert!(c
        .query_one("SELECT pq_pause('o_paused')", &[])
        .unwrap()
        .get::<_, bool>(0));
    assert!(!c
        .query_one("SELECT pq_pause('o_paused')", &[])
        .unwrap()
        .get::<_, bool>(0));
    // Puts still work; nothing is taken, by this session or a new one, nor by pq_work.
    let second = put(&mut c, "o_paused");
    let mut other = connect();
    for conn in [&mut c, &mut other] {
        assert!(conn
            .query("SELECT id FROM pq_get('o_paused')", &[])
            .unwrap()
            .is_empty());
        assert!(conn
            .query("SELECT * FROM pq_work('o_paused')", &[])
            .unwrap()
            .is_empty());
    }
    let row = c
        .query_one(
            "SELECT ready, paused FROM pq_stats WHERE queue = 'o_paused'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (2, true));
    // A blocked get waits through the pause and wakes on resume, well before its poll would.
    let waiter = thread::spawn(move || {
        let started = Instant::now();
        let mut tx = other.transaction().unwrap();
        let got: Vec<i64> = tx
            .query("SELECT id FROM pq_get('o_paused', '20s')", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().unwrap();
        (got, started.elapsed())
    });
    thread::sleep(Duration::from_millis(1500));
    assert!(c
        .query_one("SELECT pq_resume('o_paused')", &[])
        .unwrap()
        .get::<_, bool>(0));
    let resumed = Instant::now();
    let (got, waited) = waiter.join().unwrap();
    assert_eq!(got, vec![id], "the oldest job, after the resume");
    assert!(waited >= Duration::from_millis(1400), "taken while paused");
    assert!(
        resumed.elapsed() < Duration::from_millis(700),
        "woke {:?} after the resume",
        resumed.elapsed()
    );
    assert_eq!(status(&mut c, second).as_deref(), Some("ready"));
}

#[test]
fn a_concurrency_limit_holds_across_sessions_and_frees_at_commit() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_clear('o_limit'); SELECT pq_set_limit('o_limit', 2);
         SELECT pq_put_many('o_limit', (SELECT array_agg('{}'::jsonb) FROM generate_series(1, 10)))",
    )
    .unwrap();
    // Five sessions each claim in an open transaction: exactly two get a job.
    let mut conns: Vec<Client> = (0..5).map(|_| connect()).collect();
    let mut txs: Vec<_> = conns.iter_mut().map(|c| c.transaction().unwrap()).collect();
    let got: Vec<Option<i64>> = txs.iter_mut().map(|t| get_one(t, "o_limit")).collect();
    assert_eq!(got.iter().flatten().count(), 2, "{got:?}");
    // A batch claim is held to the limit too.
    let mut c2 = connect();
    let mut tx = c2.transaction().unwrap();
    assert!(tx
        .query("SELECT id FROM pq_get('o_limit', batch_size => 5)", &[])
        .unwrap()
        .is_empty());
    tx.rollback().unwrap();
    let row = c
        .query_one(
            "SELECT in_flight, concurrency_limit FROM pq_stats WHERE queue = 'o_limit'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, Option<i32>>(1)),
        (2, Some(2))
    );
    // A blocked get on the full queue wakes when a holder commits.
    let mut waiter_conn = connect();
    let waiter = thread::spawn(move || {
        let mut tx = waiter_conn.transaction().unwrap();
        let got = tx
            .query("SELECT id FROM pq_get('o_limit', '20s')", &[])
            .unwrap()
            .len();
        let at = Instant::now();
        tx.commit().unwrap();
        (got, at)
    });
    thread::sleep(Duration::from_millis(1500));
    let holder = got.iter().position(|g| g.is_some()).unwrap();
    let committed = Instant::now();
    txs.remove(holder).commit().unwrap();
    let (n, at) = waiter.join().unwrap();
    assert_eq!(n, 1);
    assert!(
        at.duration_since(committed) < Duration::from_millis(700),
        "woke {:?} after the slot freed",
        at.duration_since(committed)
    );
    for t in txs {
        t.rollback().unwrap();
    }
    // Removing the limit (it returns the previous one) lets everyone claim.
    let previous: Option<i32> = c
        .query_one("SELECT pq_set_limit('o_limit', NULL)", &[])
        .unwrap()
        .get(0);
    assert_eq!(previous, Some(2));
    let mut txs: Vec<_> = conns.iter_mut().map(|c| c.transaction().unwrap()).collect();
    let got: Vec<Option<i64>> = txs.iter_mut().map(|t| get_one(t, "o_limit")).collect();
    assert_eq!(got.iter().flatten().count(), 5, "{got:?}");
}

#[test]
fn four_workers_under_a_limit_of_two_drain_a_queue_exactly_once() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_clear('o_drain_limit'); SELECT pq_set_limit('o_drain_limit', 2);
         SELECT pq_put_many('o_drain_limit', (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 120) i))",
    )
    .unwrap();
    let expected: HashSet<i64> = c
        .query("SELECT id FROM queue WHERE q_name = 'o_drain_limit'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (holding, most, start) = (holding.clone(), most.clone(), start.clone());
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                let mut got = Vec::new();
                let mut idle = 0;
                while idle < 3 {
                    let mut tx = c.transaction().unwrap();
                    // Odd workers use a savepoint that they roll back now and then: the slot
                    // bookkeeping must survive subtransaction aborts.
                    if w % 2 == 1 && got.len() % 5 == 0 {
                        tx.batch_execute(
                            "SAVEPOINT s; SELECT * FROM pq_get('o_drain_limit'); ROLLBACK TO s",
                        )
                        .unwrap();
                    }
                    let rows = tx
                        .query("SELECT id FROM pq_get('o_drain_limit', '200ms')", &[])
                        .unwrap();
                    match rows.first() {
                        Some(r) => {
                            idle = 0;
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(3));
                            holding.fetch_sub(1, Ordering::SeqCst);
                            got.push(r.get::<_, i64>(0));
                        }
                        None => idle += 1,
                    }
                    tx.commit().unwrap();
                }
                got
            })
        })
        .collect();
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.join().unwrap());
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a job was taken twice");
    assert_eq!(unique, expected, "a job was lost");
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "{} jobs in flight",
        most.load(Ordering::SeqCst)
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "the limit was never reached"
    );
    c.batch_execute("SELECT pq_set_limit('o_drain_limit', NULL)")
        .unwrap();
}

#[test]
fn concurrent_puts_of_one_key_make_one_job_until_it_is_consumed() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_unique')").unwrap();
    let start = Arc::new(Barrier::new(8));
    let putters: Vec<_> = (0..8)
        .map(|i| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                let mut tx = c.transaction().unwrap();
                start.wait();
                let id: i64 = tx
                    .query_one(
                        "SELECT pq_put('o_unique', jsonb_build_object('putter', $1::int), key => 'order-42')",
                        &[&i],
                    )
                    .unwrap()
                    .get(0);
                // Hold the transaction open a little: the others must wait, then see it.
                thread::sleep(Duration::from_millis(20));
                tx.commit().unwrap();
                id
            })
        })
        .collect();
    let ids: HashSet<i64> = putters.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one id for every put: {ids:?}");
    let id = *ids.iter().next().unwrap();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM queue WHERE q_name = 'o_unique'", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "one row");
    // While the job is claimed by an open transaction, a put with its key returns it at once.
    let mut claimer = connect();
    let mut tx = claimer.transaction().unwrap();
    assert_eq!(get_one(&mut tx, "o_unique"), Some(id));
    let started = Instant::now();
    let again: i64 = c
        .query_one("SELECT pq_put('o_unique', '{}', key => 'order-42')", &[])
        .unwrap()
        .get(0);
    assert_eq!(again, id);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the put waited for the claim"
    );
    // Consumed: the key is free again.
    tx.commit().unwrap();
    let fresh: i64 = c
        .query_one("SELECT pq_put('o_unique', '{}', key => 'order-42')", &[])
        .unwrap()
        .get(0);
    assert_ne!(fresh, id);
    // Another key, or another queue, is another job.
    let other: i64 = c
        .query_one("SELECT pq_put('o_unique', '{}', key => 'order-43')", &[])
        .unwrap()
        .get(0);
    let elsewhere: i64 = c
        .query_one("SELECT pq_put('o_unique_2', '{}', key => 'order-42')", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        HashSet::from([fresh, other, elsewhere]).len(),
        3,
        "different keys or queues"
    );
    // pq_put_task and pq_put_many take keys too.
    let t1: i64 = c
        .query_one(
            "SELECT pq_put_task('o_unique', 'x.eat', '[]', external => true, key => 't')",
            &[],
        )
        .unwrap()
        .get(0);
    let many: Vec<i64> = c
        .query(
            "SELECT * FROM pq_put_many('o_unique', ARRAY['{}', '{}', '{}']::jsonb[], key => ARRAY['t', NULL, 'order-43'])",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(many[0], t1);
    assert_eq!(many[2], other);
    assert!(![t1, other, fresh].contains(&many[1]));
}

#[test]
fn a_repeatable_read_put_sees_a_key_committed_after_its_snapshot() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_unique_rr')").unwrap();
    let mut rr = connect();
    let mut tx = rr
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    tx.query_one("SELECT count(*) FROM queue", &[]).unwrap(); // the snapshot
    let id: i64 = c
        .query_one("SELECT pq_put('o_unique_rr', '{}', key => 'k')", &[])
        .unwrap()
        .get(0);
    let seen: i64 = tx
        .query_one("SELECT pq_put('o_unique_rr', '{}', key => 'k')", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, id);
    tx.commit().unwrap();
}

#[test]
fn cancel_stops_a_pending_job_and_a_running_claim_for_good() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_cancel')").unwrap();
    // Pending and scheduled jobs: never run.
    let ready = put(&mut c, "o_cancel");
    let later: i64 = c
        .query_one("SELECT pq_put('o_cancel', '[1, 2]', '1h')", &[])
        .unwrap()
        .get(0);
    assert_eq!(status(&mut c, later).as_deref(), Some("scheduled"));
    for id in [ready, later] {
        assert!(c
            .query_one("SELECT pq_cancel($1)", &[&id])
            .unwrap()
            .get::<_, bool>(0));
        assert_eq!(status(&mut c, id).as_deref(), Some("cancelled"));
        assert!(!c
            .query_one("SELECT pq_cancel($1)", &[&id])
            .unwrap()
            .get::<_, bool>(0));
    }
    // Its data is left as it was; cancelled_at says when.
    let row = c
        .query_one(
            "SELECT data::text, cancelled_at IS NOT NULL FROM queue WHERE id = $1",
            &[&later],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("[1, 2]".into(), true)
    );
    assert!(c
        .query("SELECT id FROM pq_get('o_cancel')", &[])
        .unwrap()
        .is_empty());
    // A job claimed by a transaction that is running: the claimer is cancelled, the job does
    // not come back.
    let running = put(&mut c, "o_cancel");
    let mut worker = connect();
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let claimer = thread::spawn(move || {
        let mut tx = worker.transaction().unwrap();
        let id = get_one(&mut tx, "o_cancel");
        claimed_tx.send(id).unwrap();
        // The job's work: long enough to be cancelled in the middle.
        let e = tx.batch_execute("SELECT pg_sleep(30)").unwrap_err();
        let code = e.as_db_error().map(|d| d.code().code().to_string());
        tx.rollback().unwrap();
        code
    });
    assert_eq!(claimed_rx.recv().unwrap(), Some(running));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(status(&mut c, running).as_deref(), Some("in_flight"));
    let started = Instant::now();
    assert!(c
        .query_one("SELECT pq_cancel($1)", &[&running])
        .unwrap()
        .get::<_, bool>(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(claimer.join().unwrap().as_deref(), Some("57014"));
    assert_eq!(status(&mut c, running).as_deref(), Some("cancelled"));
    assert!(c
        .query("SELECT id FROM pq_get('o_cancel')", &[])
        .unwrap()
        .is_empty());
    let row = c
        .query_one(
            "SELECT cancelled, done, ready FROM pq_stats WHERE queue = 'o_cancel'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (3, 0, 0)
    );
    // A done job is not cancelled.
    let done = put(&mut c, "o_cancel");
    c.batch_execute("SELECT * FROM pq_get('o_cancel')").unwrap();
    assert!(!c
        .query_one("SELECT pq_cancel($1)", &[&done])
        .unwrap()
        .get::<_, bool>(0));
    assert_eq!(status(&mut c, done).as_deref(), Some("done"));
}

/// The claimer of a squatted job (its key held by a session that is not claiming it, so the
/// job was claimed through its row lock) is the one pq_cancel stops, never the squatter
/// (review: the squatter's statement was cancelled and the claim went on).
#[test]
fn cancel_signals_the_claimer_of_a_squatted_job_not_the_squatter() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_cancel_sq')").unwrap();
    let id = put(&mut c, "o_cancel_sq");
    let mut squatter = connect();
    squatter
        .execute(
            "SELECT pg_advisory_lock('queue'::regclass::oid::int, $1::int)",
            &[&(id as i32)],
        )
        .unwrap();
    let squatting = thread::spawn(move || {
        let slept = squatter.batch_execute("SELECT pg_sleep(4)");
        squatter
            .batch_execute("SELECT pg_advisory_unlock_all()")
            .unwrap();
        slept.map_err(|e| e.to_string())
    });
    let mut worker = connect();
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let claimer = thread::spawn(move || {
        let mut tx = worker.transaction().unwrap();
        claimed_tx.send(get_one(&mut tx, "o_cancel_sq")).unwrap();
        let e = tx.batch_execute("SELECT pg_sleep(30)").unwrap_err();
        let code = e.as_db_error().map(|d| d.code().code().to_string());
        tx.rollback().unwrap();
        code
    });
    assert_eq!(
        claimed_rx.recv().unwrap(),
        Some(id),
        "claimed through its row lock"
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(status(&mut c, id).as_deref(), Some("in_flight"));
    assert!(c
        .query_one("SELECT pq_cancel($1)", &[&id])
        .unwrap()
        .get::<_, bool>(0));
    assert_eq!(claimer.join().unwrap().as_deref(), Some("57014"));
    assert_eq!(
        squatting.join().unwrap(),
        Ok(()),
        "the squatter was cancelled"
    );
    assert_eq!(status(&mut c, id).as_deref(), Some("cancelled"));
}

#[test]
fn cancel_gives_up_on_an_idle_claimer_and_respects_pg_cancel_backend_rules() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_clear('o_cancel_idle');
         DO $$ BEGIN CREATE ROLE o_canceller; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT SELECT, UPDATE ON queue TO o_canceller;",
    )
    .unwrap();
    let id = put(&mut c, "o_cancel_idle");
    let mut idle = connect();
    let mut tx = idle.transaction().unwrap();
    assert_eq!(get_one(&mut tx, "o_cancel_idle"), Some(id));
    // Not allowed to cancel a superuser's backend: pg_cancel_backend's own error.
    let e = c
        .batch_execute(&format!("SET ROLE o_canceller; SELECT pq_cancel({id})"))
        .unwrap_err();
    c.batch_execute("RESET ROLE").unwrap();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.code().code(), "42501", "{}", e.message());
    // Allowed, but the claimer is idle in its transaction: pq_cancel gives up, naming it.
    let e = c
        .query_one("SELECT pq_cancel($1, wait => '300ms')", &[&id])
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.code().code(), "55P03", "{}", e.message());
    assert!(
        e.message().contains("still claimed by backend"),
        "{}",
        e.message()
    );
    assert!(e.hint().unwrap_or("").contains("pg_terminate_backend"));
    tx.commit().unwrap();
    assert_eq!(status(&mut c, id).as_deref(), Some("done"));
}

#[test]
fn each_tick_of_a_periodic_job_puts_one_job_however_many_run_it() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_clear('o_periodic'); SELECT pq_unschedule('o_tick');
         DO $$ BEGIN CREATE ROLE o_scheduler; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT INSERT, SELECT ON queue TO o_scheduler; GRANT USAGE ON SEQUENCE queue_id_seq TO o_scheduler;",
    )
    .unwrap();
    // Scheduled by an unprivileged role: its jobs are put as that role, whoever runs them.
    c.batch_execute(
        "SET ROLE o_scheduler;
         SELECT pq_schedule('o_tick', '*/5 * * * *', 'o_periodic', '{\"tick\": true}');
         RESET ROLE",
    )
    .unwrap();
    let next: bool = c
        .query_one(
            "SELECT next_run > now() AND next_run <= now() + interval '5 minutes' \
             AND extract(minute FROM next_run)::int % 5 = 0 FROM pq_schedules WHERE name = 'o_tick'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(next, "the next tick is the next multiple of 5 minutes");
    // Ticks missed for a day: one job for all of them, then on from the next tick.
    c.batch_execute(
        "UPDATE pq_periodic SET next_run = now() - interval '1 day' WHERE name = 'o_tick'",
    )
    .unwrap();
    let start = Arc::new(Barrier::new(6));
    let runners: Vec<_> = (0..6)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                c.query_one("SELECT pq_run_schedules()", &[])
                    .unwrap()
                    .get::<_, i32>(0)
            })
        })
        .collect();
    let put: i32 = runners.into_iter().map(|r| r.join().unwrap()).sum();
    // The maintenance worker may have run it too; either way one job in all.
    let rows = c
        .query(
            "SELECT enqueued_by::text, data->>'tick' FROM queue WHERE q_name = 'o_periodic'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "runners put {put}");
    assert_eq!(rows[0].get::<_, String>(0), "o_scheduler");
    let row = c
        .query_one(
            "SELECT next_run > now(), last_job IS NOT NULL FROM pq_schedules WHERE name = 'o_tick'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (true, true));
    // Not due: nothing more.
    assert_eq!(
        c.query_one("SELECT pq_run_schedules()", &[])
            .unwrap()
            .get::<_, i32>(0),
        0
    );
    // Another role neither sees nor removes it.
    c.batch_execute(
        "DO $$ BEGIN CREATE ROLE o_stranger; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .unwrap();
    c.batch_execute("SET ROLE o_stranger").unwrap();
    let seen: i64 = c
        .query_one("SELECT count(*) FROM pq_schedules", &[])
        .unwrap()
        .get(0);
    let removed: bool = c
        .query_one("SELECT pq_unschedule('o_tick')", &[])
        .unwrap()
        .get(0);
    c.batch_execute("RESET ROLE").unwrap();
    assert_eq!((seen, removed), (0, false));
    assert!(c
        .query_one("SELECT pq_unschedule('o_tick')", &[])
        .unwrap()
        .get::<_, bool>(0));
}

#[test]
fn the_maintenance_worker_runs_due_periodic_jobs() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_clear('o_worker_tick'); SELECT pq_unschedule('o_worker_tick');
         SELECT pq_schedule('o_worker_tick', '* * * * *', 'o_worker_tick');
         UPDATE pq_periodic SET next_run = now() - interval '1 minute' WHERE name = 'o_worker_tick'",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = c
            .query_one("SELECT pq_len('o_worker_tick')", &[])
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker put nothing in 10 s");
        thread::sleep(Duration::from_millis(100));
    }
    c.batch_execute("SELECT pq_unschedule('o_worker_tick')")
        .unwrap();
}

#[test]
fn exponential_backoff_spreads_retries_and_keeps_the_task_shape() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_backoff')").unwrap();
    c.batch_execute(
        "SELECT pq_put_task('o_backoff', 'o.rot', '[]', external => true, max_retries => 5,
                            retry_in => '10s', backoff => 'exponential', retry_max => '30s')",
    )
    .unwrap();
    // Each failure of a client handler (recorded by pq_task_failed) waits longer.
    let mut waits = Vec::new();
    for _ in 0..4 {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("UPDATE queue SET schedule_at = NULL WHERE q_name = 'o_backoff'")
            .unwrap();
        let id: i64 = tx
            .query_one("SELECT id FROM pq_get('o_backoff')", &[])
            .unwrap()
            .get(0);
        tx.query_one("SELECT pq_task_failed($1, 'P0001', 'rotten')", &[&id])
            .unwrap();
        let wait: f64 = tx
            .query_one(
                "SELECT extract(epoch FROM schedule_at - clock_timestamp())::float8 FROM queue WHERE id = $1",
                &[&id],
            )
            .unwrap()
            .get(0);
        waits.push(wait);
        tx.commit().unwrap();
    }
    // 10 s, 20 s, 40 s capped to 30 s, 30 s: each times a jitter factor in [0.5, 1].
    for (wait, full) in waits.iter().zip([10.0, 20.0, 30.0, 30.0]) {
        assert!(
            *wait <= full + 0.5 && *wait >= full / 2.0 - 0.5,
            "{waits:?}"
        );
    }
    let shape: String = c
        .query_one(
            "SELECT concat_ws(',', data->>'retried', data->>'backoff', data->>'retry_in') FROM queue WHERE q_name = 'o_backoff'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(shape, "4,exponential,10s");
}

/// `pq_metrics()` of one queue: (metric, label) → value.
fn metrics(
    c: &mut Client,
    queue: &str,
) -> std::collections::HashMap<(String, Option<String>), f64> {
    c.query(
        "SELECT metric, label, value FROM pq_metrics() WHERE queue = $1",
        &[&queue],
    )
    .unwrap()
    .iter()
    .map(|r| ((r.get(0), r.get(1)), r.get(2)))
    .collect()
}

#[test]
fn metrics_count_what_committed_and_gauge_the_pending_jobs() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_metrics')").unwrap();
    let before = metrics(&mut c, "o_metrics");
    let counter = |m: &std::collections::HashMap<(String, Option<String>), f64>, name: &str| {
        m.get(&(name.to_string(), None)).copied().unwrap_or(0.0)
    };
    // Three puts commit; one rolls back, one is rolled back to a savepoint. (One string each:
    // a BEGIN in a multi-statement string takes the statements before it into its transaction.)
    for sql in [
        "SELECT pq_put('o_metrics', '{}'); SELECT pq_put('o_metrics', '{}', '1h')",
        "SELECT pq_put('o_metrics', '{}')",
        "BEGIN; SELECT pq_put('o_metrics', '{}'); ROLLBACK",
        "BEGIN; SAVEPOINT s; SELECT pq_put('o_metrics', '{}'); ROLLBACK TO s; COMMIT",
        // One claim commits, one rolls back; one job is then held by an open transaction.
        "SELECT * FROM pq_get('o_metrics')",
        "BEGIN; SELECT * FROM pq_get('o_metrics'); ROLLBACK",
    ] {
        c.batch_execute(sql).unwrap();
    }
    let mut holder = connect();
    let mut tx = holder.transaction().unwrap();
    assert!(get_one(&mut tx, "o_metrics").is_some());
    let m = metrics(&mut c, "o_metrics");
    assert_eq!(counter(&m, "pq_jobs_ready"), 0.0);
    assert_eq!(counter(&m, "pq_jobs_scheduled"), 1.0);
    assert_eq!(counter(&m, "pq_jobs_in_flight"), 1.0);
    assert_eq!(counter(&m, "pq_paused"), 0.0);
    // pq_jobs lists the same jobs by state.
    for (state, n) in [("ready", 0), ("scheduled", 1), ("in_flight", 1)] {
        let rows = c
            .query("SELECT id, status FROM pq_jobs('o_metrics', $1)", &[&state])
            .unwrap();
        assert_eq!(rows.len(), n, "{state}");
        assert!(rows.iter().all(|r| r.get::<_, String>(1) == state));
    }
    let e = c
        .query("SELECT * FROM pq_jobs('o_metrics', 'done')", &[])
        .unwrap_err();
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("22023"));
    assert_eq!(
        counter(&m, "pq_puts_total") - counter(&before, "pq_puts_total"),
        3.0
    );
    assert_eq!(
        counter(&m, "pq_claims_total") - counter(&before, "pq_claims_total"),
        1.0
    );
    tx.commit().unwrap();
    let m = metrics(&mut c, "o_metrics");
    assert_eq!(
        counter(&m, "pq_claims_total") - counter(&before, "pq_claims_total"),
        2.0
    );
    assert_eq!(counter(&m, "pq_jobs_in_flight"), 0.0);
    // A blocked get woken by a put: one more wake-up, in a bucket, within a second.
    let waits = counter(&m, "pq_wake_seconds_count");
    let mut waiter = connect();
    let pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let w = thread::spawn(move || {
        waiter
            .query("SELECT id FROM pq_get('o_metrics', '10s')", &[])
            .unwrap()
            .len()
    });
    // Put only once the waiter sleeps (under load its first check can take longer than any
    // fixed pause, and a job a check finds is no wake-up), and well into its longer sleeps
    // (re-checks at 0.1, 0.3, 0.7, 1.5 s), so the put is unlikely to meet a re-check.
    let t0 = Instant::now();
    while !c
        .query_one(
            "SELECT coalesce(bool_or(wait_event_type = 'Extension'), false) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "the getter never blocked");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(900));
    put(&mut c, "o_metrics");
    assert_eq!(w.join().unwrap(), 1);
    let m = metrics(&mut c, "o_metrics");
    assert_eq!(counter(&m, "pq_wake_seconds_count"), waits + 1.0);
    let within_a_second = m
        .get(&(
            "pq_wake_seconds_bucket".to_string(),
            Some("le=\"1\"".to_string()),
        ))
        .copied()
        .unwrap();
    assert_eq!(within_a_second, counter(&m, "pq_wake_seconds_count"));
    // Task outcomes; pause shows.
    for sql in [
        "SELECT pq_put_task('o_metrics', 'x.rot', '[]', external => true)",
        "BEGIN; SELECT pq_task_failed(id, 'P0001', 'rotten') FROM pq_get('o_metrics'); COMMIT",
        "SELECT pq_pause('o_metrics')",
    ] {
        c.batch_execute(sql).unwrap();
    }
    let m = metrics(&mut c, "o_metrics");
    let failed = |m: &std::collections::HashMap<(String, Option<String>), f64>| {
        m.get(&(
            "pq_tasks_total".to_string(),
            Some("outcome=\"failed\"".to_string()),
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(failed(&m) - failed(&before), 1.0);
    assert_eq!(counter(&m, "pq_paused"), 1.0);
    c.batch_execute("SELECT pq_resume('o_metrics')").unwrap();
}

#[test]
fn a_schedule_s_trigger_leaves_no_setting_in_the_runner_and_a_bad_schedule_stops_no_other() {
    let mut c = connect();
    c.batch_execute(
        "DO $$ BEGIN CREATE ROLE o_mallory; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         DROP SCHEMA IF EXISTS o_mal CASCADE; CREATE SCHEMA o_mal AUTHORIZATION o_mallory;
         SELECT pq_unschedule('o_mal_tick'); SELECT pq_unschedule('o_good_tick');
         DELETE FROM pq_periodic WHERE name IN ('o_never', 'o_gone_tick');
         DROP TABLE IF EXISTS o_gone;
         SELECT pq_clear('o_good'); SELECT pq_clear('o_never_q');",
    )
    .unwrap();
    // A schedule of an unprivileged role, into its own table, whose trigger tries to leave a
    // search_path (and a read-only default) behind in whoever runs the schedule.
    c.batch_execute(
        "SET ROLE o_mallory;
         SELECT pq_create_table('o_mal.jobs');
         CREATE FUNCTION o_mal.poison() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             PERFORM set_config('search_path', 'o_mal, pg_catalog, public', false);
             PERFORM set_config('default_transaction_read_only', 'on', false);
             RETURN NEW;
         END $f$;
         CREATE TRIGGER poison BEFORE INSERT ON o_mal.jobs FOR EACH ROW EXECUTE FUNCTION o_mal.poison();
         SELECT pq_schedule('o_mal_tick', '* * * * *', 'x', '{}', 'o_mal.jobs');
         RESET ROLE;
         SELECT pq_schedule('o_good_tick', '* * * * *', 'o_good');
         UPDATE pq_periodic SET next_run = now() - interval '1 minute' WHERE name IN ('o_mal_tick', 'o_good_tick');",
    )
    .unwrap();
    // A hand-written schedule that never recurs (any role may insert its own), and one whose
    // queue table was dropped.
    c.batch_execute(
        "INSERT INTO pq_periodic (name, cron, q_name, data, tbl, next_run)
         VALUES ('o_never', '0 0 31 2 *', 'o_never_q', '{}', 'queue', now() - interval '1 minute');
         SELECT pq_create_table('o_gone'); SELECT pq_schedule('o_gone_tick', '* * * * *', 'x', '{}', 'o_gone');
         DROP TABLE o_gone;
         UPDATE pq_periodic SET next_run = now() - interval '1 minute' WHERE name = 'o_gone_tick';",
    )
    .unwrap();
    let before: String = c.query_one("SHOW search_path", &[]).unwrap().get(0);
    c.query_one("SELECT pq_run_schedules()", &[]).unwrap();
    let after: String = c.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(
        after, before,
        "a schedule's trigger changed the runner's search_path"
    );
    let ro: String = c
        .query_one("SHOW default_transaction_read_only", &[])
        .unwrap()
        .get(0);
    assert_eq!(ro, "off");
    let mal: i64 = c
        .query_one(
            "SELECT count(*) FROM o_mal.jobs WHERE enqueued_by = 'o_mallory'::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(mal <= 1, "{mal}"); // the maintenance worker may have run it, once
    let good: i64 = c
        .query_one("SELECT count(*) FROM queue WHERE q_name = 'o_good'", &[])
        .unwrap()
        .get(0);
    assert_eq!(good, 1, "the good schedule ran despite the bad one");
    // Stopped by this runner, or by the maintenance worker if it held the schedule when this
    // runner came to it (then this one skipped it): wait for that commit.
    let deadline = Instant::now() + Duration::from_secs(10);
    let never = loop {
        let never: bool = c
            .query_one(
                "SELECT bool_and(next_run = 'infinity') FROM pq_periodic WHERE name IN ('o_never', 'o_gone_tick')",
                &[],
            )
            .unwrap()
            .get(0);
        if never || Instant::now() > deadline {
            break never;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        never,
        "a schedule with no next run, or whose table is gone, stops"
    );
    c.batch_execute(
        "SELECT pq_unschedule('o_good_tick'); DELETE FROM pq_periodic WHERE name IN ('o_never', 'o_mal_tick', 'o_gone_tick')",
    )
    .unwrap();
}

#[test]
fn pq_s_triggers_refuse_tables_of_another_layout() {
    let mut c = connect();
    c.batch_execute(
        "DROP TABLE IF EXISTS o_not_controls, o_not_queue;
         CREATE TABLE o_not_controls (a oid, b int8);
         CREATE TRIGGER x AFTER INSERT ON o_not_controls FOR EACH ROW EXECUTE FUNCTION pq_controls_changed();
         CREATE TABLE o_not_queue (id int8, enqueued_by oid, dequeued_at int, q_name int8, schedule_at int, expected_at int, data int);
         CREATE TRIGGER y BEFORE INSERT ON o_not_queue FOR EACH ROW EXECUTE FUNCTION pq_stamp_enqueuer();",
    )
    .unwrap();
    for sql in [
        "INSERT INTO o_not_controls VALUES ('queue'::regclass, 4096)",
        "INSERT INTO o_not_queue (id, q_name, schedule_at) VALUES (1, 4096, 1)",
    ] {
        let e = c.batch_execute(sql).unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), "42809", "{sql}: {}", db.message());
    }
    // A queue layout, but fired as a statement trigger (no row): refused too.
    c.batch_execute(
        "DROP TABLE IF EXISTS o_stmt_queue;
         CREATE TABLE o_stmt_queue (id bigint, q_name text, data jsonb, enqueued_by regrole,
             dequeued_at timestamptz, schedule_at timestamptz, expected_at timestamptz);
         CREATE TRIGGER st AFTER TRUNCATE ON o_stmt_queue FOR EACH STATEMENT EXECUTE FUNCTION pq_stamp_enqueuer();
         CREATE TRIGGER si BEFORE INSERT ON o_stmt_queue FOR EACH STATEMENT EXECUTE FUNCTION pq_stamp_enqueuer();",
    )
    .unwrap();
    for sql in [
        "TRUNCATE o_stmt_queue",
        "INSERT INTO o_stmt_queue (id) VALUES (1)",
    ] {
        let e = c.batch_execute(sql).unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), "39P01", "{sql}: {}", db.message());
    }
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
}

#[test]
fn a_repeatable_read_session_sees_a_pause_committed_after_its_snapshot() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_rr_pause'); SELECT pq_resume('o_rr_pause')")
        .unwrap();
    for _ in 0..3 {
        put(&mut c, "o_rr_pause");
    }
    let mut b = connect();
    let mut tx = b
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    tx.query_one("SELECT 1", &[]).unwrap();
    c.batch_execute("SELECT pq_pause('o_rr_pause')").unwrap();
    assert_eq!(
        get_one(&mut tx, "o_rr_pause"),
        None,
        "claimed from a paused queue"
    );
    tx.commit().unwrap();
    let mut tx = b.transaction().unwrap();
    assert_eq!(
        get_one(&mut tx, "o_rr_pause"),
        None,
        "and later, in READ COMMITTED"
    );
    tx.commit().unwrap();
    c.batch_execute("SELECT pq_resume('o_rr_pause')").unwrap();
}

#[test]
fn keyed_put_many_in_any_order_never_deadlocks() {
    let mut c = connect();
    c.batch_execute("SELECT pq_clear('o_keys_order')").unwrap();
    let start = Arc::new(Barrier::new(4));
    let putters: Vec<_> = (0..4)
        .map(|i| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                let orders = [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["b", "d", "a", "c"], ["c", "a", "d", "b"]];
                start.wait();
                for round in 0..20 {
                    let keys: Vec<String> = orders[(i + round) % 4].iter().map(|k| k.to_string()).collect();
                    c.query(
                        "SELECT * FROM pq_put_many('o_keys_order', ARRAY['{}', '{}', '{}', '{}']::jsonb[], key => $1)",
                        &[&keys],
                    )
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
                }
            })
        })
        .collect();
    for p in putters {
        p.join().unwrap();
    }
    let pending: i64 = c
        .query_one(
            "SELECT count(*) FROM queue WHERE q_name = 'o_keys_order' AND dequeued_at IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(pending, 4, "one pending job per key");
}
