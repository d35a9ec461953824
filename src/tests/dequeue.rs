//! Direct dequeueing (src/queue/dequeue.rs): claims that update the row without an executor
//! run must leave the table and every index as the `UPDATE` would, and must leave that path to
//! the executor whenever the table has something of a user's (a trigger, an index, a CHECK).
#![cfg(test)]

use super::sessions::connect;
use postgres::Client;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;

/// Every index of `table` checked by amcheck against the heap: each row version has its entry.
fn indexes_match_heap(c: &mut Client, table: &str) {
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .unwrap();
    let indexes = c
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1::text::regclass",
            &[&table],
        )
        .unwrap();
    assert!(indexes.len() >= 7, "{table} has pq's indexes");
    for row in indexes {
        let index: String = row.get(0);
        c.execute(
            "SELECT bt_index_check($1::text::regclass, heapallindexed => true)",
            &[&index],
        )
        .unwrap_or_else(|e| panic!("amcheck of {index}: {e}"));
    }
}

/// Claims every job of `queue` in `table` with 4 sessions, rolling back every fifth claim;
/// returns the ids taken, each once.
fn drain(table: &'static str, queue: &'static str) -> Vec<i64> {
    let start = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                start.wait();
                let mut got = Vec::new();
                let mut n = 0;
                loop {
                    n += 1;
                    let mut tx = c.transaction().unwrap();
                    let rows = tx
                        .query(
                            "SELECT id, size FROM pq_get($1, batch_size => $2, tbl => $3::text::regclass)",
                            &[&queue, &(1 + w % 2), &table],
                        )
                        .unwrap();
                    if rows.is_empty() {
                        tx.rollback().unwrap();
                        return got;
                    }
                    for r in &rows {
                        assert_eq!(r.get::<_, i32>(1), 8, "size is length(data::text)");
                    }
                    if n % 5 == 0 {
                        tx.rollback().unwrap();
                    } else {
                        got.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
                        tx.commit().unwrap();
                    }
                }
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect()
}

fn fill(c: &mut Client, table: &str, queue: &str, n: i32) -> HashSet<i64> {
    c.query(
        "SELECT pq_put($1::text, jsonb_build_object('n', i % 10), NULL::timestamptz,
                       CASE WHEN i % 3 = 0 THEN now() + i * interval '1s' END, $2::text::regclass)
         FROM generate_series(1, $3::int) i",
        &[&queue, &table, &n],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn direct_claims_take_each_job_once_and_keep_every_index_whole() {
    let mut c = connect();
    c.batch_execute("SELECT pq_create_table('dq_plain')")
        .unwrap();
    // One session alone: every claim goes direct (claim.sql would look each row up by its
    // primary key; only a race with another claimer sends one there).
    fill(&mut c, "dq_plain", "dq_alone", 50);
    {
        let mut alone = connect();
        for _ in 0..50 {
            let rows = alone
                .query("SELECT id FROM pq_get('dq_alone', tbl => 'dq_plain')", &[])
                .unwrap();
            assert_eq!(rows.len(), 1);
        }
    }
    let stats = "SELECT t.n_tup_upd, i.idx_scan FROM pg_stat_user_tables t
                 JOIN pg_stat_user_indexes i USING (relid)
                 WHERE t.relname = 'dq_plain' AND i.indexrelname = 'dq_plain_pkey'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (updates, lookups) = loop {
        // A session's counts reach the statistics when it ends.
        let row = c.query_one(stats, &[]).unwrap();
        let (u, l): (i64, i64) = (row.get(0), row.get(1));
        if u >= 50 || std::time::Instant::now() > deadline {
            break (u, l);
        }
        c.batch_execute("SELECT pg_stat_clear_snapshot(); SELECT pg_sleep(0.1)")
            .unwrap();
    };
    assert_eq!(updates, 50);
    assert_eq!(lookups, 0, "no claim looked its row up");
    // Four sessions, with rollbacks.
    let put = fill(&mut c, "dq_plain", "dq", 300);
    let got = drain("dq_plain", "dq");
    assert_eq!(got.len(), put.len(), "no job taken twice or lost");
    assert_eq!(got.iter().copied().collect::<HashSet<_>>(), put);
    let done: i64 = c
        .query_one(
            "SELECT count(*) FROM dq_plain WHERE dequeued_at IS NOT NULL AND enqueued_by = current_user::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(done, 350, "claims keep the enqueuer");
    indexes_match_heap(&mut c, "dq_plain");
}

#[test]
fn a_user_s_trigger_index_and_check_are_honoured_by_claims() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_create_table('dq_user');
         CREATE TABLE dq_user_log (id bigint, dequeued_at timestamptz);
         CREATE FUNCTION dq_user_log() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
         BEGIN INSERT INTO dq_user_log VALUES (NEW.id, NEW.dequeued_at); RETURN NEW; END $$;",
    )
    .unwrap();
    // 1. A user's trigger fires on every claim.
    c.batch_execute(
        "CREATE TRIGGER log AFTER UPDATE ON dq_user FOR EACH ROW EXECUTE FUNCTION dq_user_log()",
    )
    .unwrap();
    fill(&mut c, "dq_user", "dq", 40);
    assert_eq!(drain("dq_user", "dq").len(), 40);
    let logged: i64 = c
        .query_one(
            "SELECT count(DISTINCT id) FROM dq_user_log WHERE dequeued_at IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(logged, 40, "the user's trigger saw every claim");
    c.batch_execute("DROP TRIGGER log ON dq_user").unwrap();
    // 2. A user's index gets the claimed row versions (amcheck checks it with pq's).
    c.batch_execute("CREATE INDEX dq_user_by_data ON dq_user ((data->>'n'), enqueued_at)")
        .unwrap();
    fill(&mut c, "dq_user", "dq", 40);
    assert_eq!(drain("dq_user", "dq").len(), 40);
    indexes_match_heap(&mut c, "dq_user");
    c.batch_execute("DROP INDEX dq_user_by_data").unwrap();
    // 3. A CHECK that reads dequeued_at is checked on claims.
    c.batch_execute(
        "ALTER TABLE dq_user ADD CONSTRAINT never_claimed CHECK (dequeued_at IS NULL OR data->>'tag' IS DISTINCT FROM 'never')",
    )
    .unwrap();
    c.batch_execute("SELECT pq_put('dq7', '{\"tag\": \"never\"}', tbl => 'dq_user')")
        .unwrap();
    let err = c
        .query("SELECT id FROM pq_get('dq7', tbl => 'dq_user')", &[])
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::CHECK_VIOLATION),
        "{err}"
    );
    // And without the user's things, claims go direct again: the table is whole after them.
    c.batch_execute("ALTER TABLE dq_user DROP CONSTRAINT never_claimed")
        .unwrap();
    assert_eq!(
        c.query("SELECT id FROM pq_get('dq7', tbl => 'dq_user')", &[])
            .unwrap()
            .len(),
        1
    );
    fill(&mut c, "dq_user", "dq", 40);
    assert_eq!(drain("dq_user", "dq").len(), 40);
    indexes_match_heap(&mut c, "dq_user");
}

#[test]
fn a_claim_of_a_table_that_publishes_updates_needs_a_replica_identity() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_create_table('dq_pub');
         ALTER TABLE dq_pub REPLICA IDENTITY NOTHING;
         CREATE PUBLICATION dq_pub_updates FOR TABLE dq_pub WITH (publish = 'update');
         SELECT pq_put('dqp', '{}', tbl => 'dq_pub');",
    )
    .unwrap();
    let err = c
        .query("SELECT id FROM pq_get('dqp', tbl => 'dq_pub')", &[])
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err}"
    );
    c.batch_execute("DROP PUBLICATION dq_pub_updates").unwrap();
    assert_eq!(
        c.query("SELECT id FROM pq_get('dqp', tbl => 'dq_pub')", &[])
            .unwrap()
            .len(),
        1
    );
}
