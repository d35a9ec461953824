//! Direct writes (src/queue/dequeue.rs, enqueue.rs, layout.rs): claims and puts that write
//! the row without an executor run must leave the table and every index as the `UPDATE` or
//! `INSERT` would, and must leave the write to the executor whenever the table has something
//! of a user's (a trigger, an index, a CHECK, a default) or the session may not write so.
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

/// Runs `sql` (statements, maybe opening a transaction), which must fail with `code`; rolls
/// back whatever it left open.
fn fails_with(c: &mut Client, sql: &str, code: &postgres::error::SqlState) {
    let err = c.batch_execute(sql).unwrap_err();
    assert_eq!(err.code(), Some(code), "{sql}: {err}");
    c.batch_execute("ROLLBACK").unwrap();
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

/// Calls of pq's trigger function in this session's transaction so far (needs
/// `track_functions = 'all'`): the executor fires it on every put and claim, direct writes
/// never do.
fn trigger_calls(c: &mut postgres::Transaction<'_>) -> i64 {
    c.query_one(
        "SELECT coalesce(pg_stat_get_xact_function_calls('pq_stamp_enqueuer()'::regprocedure), 0)",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn direct_puts_index_every_kind_of_job_as_an_insert_would() {
    let mut c = connect();
    c.batch_execute("SELECT pq_create_table('dp_plain'); SET track_functions = 'all'")
        .unwrap();
    // Every kind of put, from 4 sessions at once: plain, scheduled, with an expected_at, SQL
    // tasks (their own indexes), keyed.
    let start = Arc::new(Barrier::new(4));
    let putters: Vec<_> = (0..4)
        .map(|w| {
            let start = start.clone();
            thread::spawn(move || {
                let mut c = connect();
                c.batch_execute("SET track_functions = 'all'").unwrap();
                start.wait();
                let mut tx = c.transaction().unwrap();
                let ids: Vec<i64> = (0..60)
                    .map(|i| {
                        let sql = match i % 6 {
                            0 => "SELECT pq_put('dp', jsonb_build_object('i', $1::int), tbl => 'dp_plain')",
                            1 => "SELECT pq_put('dp', jsonb_build_object('i', $1::int), '1h', tbl => 'dp_plain')",
                            2 => "SELECT pq_put('dp', jsonb_build_object('i', $1::int), NULL::interval, interval '1s' * $1::int, 'dp_plain')",
                            3 => "SELECT pq_put('dp', jsonb_build_object('function', 'f(int)', 'i', $1::int), tbl => 'dp_plain')",
                            4 => "SELECT pq_put('dp', jsonb_build_object('function', 'f(int)', 'i', $1::int), '1h', tbl => 'dp_plain')",
                            _ => "SELECT pq_put('dp', jsonb_build_object('i', $1::int), tbl => 'dp_plain', key => 'k' || $1::int)",
                        };
                        tx.query_one(sql, &[&(w * 1000 + i)]).unwrap().get(0)
                    })
                    .collect();
                assert_eq!(trigger_calls(&mut tx), 0, "the puts went direct");
                tx.commit().unwrap();
                ids
            })
        })
        .collect();
    let ids: Vec<i64> = putters
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 240);
    let row = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE enqueued_by = current_user::regrole),
                    count(*) FILTER (WHERE key IS NOT NULL), count(*) FILTER (WHERE schedule_at IS NOT NULL)
             FROM dp_plain",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (240, 240, 40, 80)
    );
    indexes_match_heap(&mut c, "dp_plain");
    // The jobs are there for pq: ready ones in claim order, keys found, SQL tasks by pq_work's
    // own index (it has no such task registered here, so it only finds and refuses them).
    let earliest: i64 = c
        .query_one(
            "SELECT id FROM dp_plain WHERE expected_at IS NOT NULL AND schedule_at IS NULL AND dequeued_at IS NULL
             ORDER BY expected_at, id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let first: i64 = c
        .query_one("SELECT id FROM pq_get('dp', tbl => 'dp_plain')", &[])
        .unwrap()
        .get(0);
    assert_eq!(first, earliest, "the earliest expected_at is taken first");
    let again: i64 = c
        .query_one(
            "SELECT pq_put('dp', '{}', tbl => 'dp_plain', key => 'k5')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ids.contains(&again), "a keyed put finds the pending job");
    // Claims go direct too.
    let mut tx = c.transaction().unwrap();
    let got = tx
        .query(
            "SELECT id FROM pq_get('dp', batch_size => 50, tbl => 'dp_plain')",
            &[],
        )
        .unwrap();
    assert_eq!(got.len(), 50);
    assert_eq!(trigger_calls(&mut tx), 0, "the claims went direct");
    tx.commit().unwrap();
    indexes_match_heap(&mut c, "dp_plain");
}

#[test]
fn a_user_s_trigger_default_check_and_unique_index_are_honoured_by_puts() {
    let mut c = connect();
    c.batch_execute(
        "SELECT pq_create_table('dp_user');
         CREATE FUNCTION dp_user_seen() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.data := NEW.data || '{\"seen\": true}'; RETURN NEW; END $$;",
    )
    .unwrap();
    let put = |c: &mut Client, data: &str| -> Result<i64, postgres::Error> {
        c.query_one(
            "SELECT pq_put('dpu', $1::text::jsonb, tbl => 'dp_user')",
            &[&data],
        )
        .map(|r| r.get(0))
    };
    let data_of = |c: &mut Client, id: i64| -> String {
        c.query_one("SELECT data::text FROM dp_user WHERE id = $1", &[&id])
            .unwrap()
            .get(0)
    };
    // A user's BEFORE INSERT trigger runs on every put.
    c.batch_execute(
        "CREATE TRIGGER seen BEFORE INSERT ON dp_user FOR EACH ROW EXECUTE FUNCTION dp_user_seen()",
    )
    .unwrap();
    let id = put(&mut c, r#"{"n": 1}"#).unwrap();
    assert_eq!(data_of(&mut c, id), r#"{"n": 1, "seen": true}"#);
    c.batch_execute("DROP TRIGGER seen ON dp_user").unwrap();
    // A column of the user's with a default gets it.
    c.batch_execute("ALTER TABLE dp_user ADD COLUMN tenant text NOT NULL DEFAULT 'acme'")
        .unwrap();
    let id = put(&mut c, r#"{"n": 2}"#).unwrap();
    let tenant: String = c
        .query_one("SELECT tenant FROM dp_user WHERE id = $1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(tenant, "acme");
    c.batch_execute("ALTER TABLE dp_user DROP COLUMN tenant")
        .unwrap();
    // A CHECK of the user's is checked.
    c.batch_execute("ALTER TABLE dp_user ADD CONSTRAINT has_n CHECK (data ? 'n')")
        .unwrap();
    let err = put(&mut c, r#"{"m": 3}"#).unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::CHECK_VIOLATION),
        "{err}"
    );
    c.batch_execute("ALTER TABLE dp_user DROP CONSTRAINT has_n")
        .unwrap();
    // A unique index of plain columns (written directly) still refuses a duplicate.
    c.batch_execute("CREATE UNIQUE INDEX dp_user_one_per_time ON dp_user (q_name, expected_at)")
        .unwrap();
    let once = "SELECT pq_put('dpu', '{}', NULL::timestamptz, timestamptz '2030-01-01', 'dp_user')";
    c.batch_execute(once).unwrap();
    let err = c.batch_execute(once).unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
        "{err}"
    );
    c.batch_execute("DROP INDEX dp_user_one_per_time").unwrap();
    // A read-only transaction writes nothing.
    fails_with(
        &mut c,
        "BEGIN READ ONLY; SELECT pq_put('dpu', '{}', tbl => 'dp_user')",
        &postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION,
    );
    fails_with(
        &mut c,
        "BEGIN READ ONLY; SELECT * FROM pq_get('dpu', tbl => 'dp_user')",
        &postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION,
    );
    // The grants the executor wants are wanted: INSERT, the sequence, SELECT on id.
    c.batch_execute(
        "DO $$ BEGIN CREATE ROLE dp_producer; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT INSERT ON dp_user TO dp_producer;",
    )
    .unwrap();
    for (grant, code) in [
        ("", postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        (
            "GRANT USAGE ON SEQUENCE dp_user_id_seq TO dp_producer",
            postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
        ),
    ] {
        c.batch_execute(grant).unwrap();
        let err = c
            .batch_execute("SET ROLE dp_producer; SELECT pq_put('dpu', '{}', tbl => 'dp_user')")
            .unwrap_err();
        assert_eq!(err.code(), Some(&code), "{err}");
        c.batch_execute("RESET ROLE").unwrap();
    }
    c.batch_execute("GRANT SELECT (id) ON dp_user TO dp_producer")
        .unwrap();
    c.batch_execute(
        "SET ROLE dp_producer; SELECT pq_put('dpu', '{\"by\": 1}', tbl => 'dp_user'); RESET ROLE",
    )
    .unwrap();
    let enqueuer: String = c
        .query_one(
            "SELECT enqueued_by::text FROM dp_user WHERE data = '{\"by\": 1}'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(enqueuer, "dp_producer");
    indexes_match_heap(&mut c, "dp_user");
}

/// What a first review found the direct claim skipping: each must reach the executor.
#[test]
fn claims_leave_rules_checks_triggers_when_clauses_and_own_command_ids_to_the_executor() {
    let mut c = connect();
    let claim = |c: &mut Client, table: &str| -> Result<usize, postgres::Error> {
        c.query(
            "SELECT id FROM pq_get('dr', tbl => $1::text::regclass)",
            &[&table],
        )
        .map(|rows| rows.len())
    };
    let check_violation = Some(&postgres::error::SqlState::CHECK_VIOLATION);
    // A CHECK reading dequeued_at through the whole row.
    c.batch_execute(
        "SELECT pq_create_table('dr_row');
         ALTER TABLE dr_row ADD CONSTRAINT never_done CHECK ((to_jsonb(dr_row.*) ->> 'dequeued_at') IS NULL);
         SELECT pq_put('dr', '{}', tbl => 'dr_row');",
    )
    .unwrap();
    assert_eq!(claim(&mut c, "dr_row").unwrap_err().code(), check_violation);
    // A NOT VALID CHECK that the old row already breaks.
    c.batch_execute(
        "SELECT pq_create_table('dr_nv');
         SELECT pq_put('dr', '{\"a\": 1}', tbl => 'dr_nv');
         ALTER TABLE dr_nv ADD CONSTRAINT must_have_b CHECK (data ? 'b') NOT VALID;",
    )
    .unwrap();
    assert_eq!(claim(&mut c, "dr_nv").unwrap_err().code(), check_violation);
    // A rule.
    c.batch_execute(
        "SELECT pq_create_table('dr_rule');
         CREATE TABLE dr_audit (id bigint, at timestamptz);
         CREATE RULE audit_claim AS ON UPDATE TO dr_rule DO ALSO INSERT INTO dr_audit VALUES (old.id, new.dequeued_at);
         SELECT pq_put('dr', '{}', tbl => 'dr_rule');",
    )
    .unwrap();
    assert_eq!(claim(&mut c, "dr_rule").unwrap(), 1);
    let audited: i64 = c
        .query_one("SELECT count(*) FROM dr_audit WHERE at IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(audited, 1, "the rule ran");
    // pq's own trigger function attached again, with a WHEN clause of the user's.
    c.batch_execute(
        "SELECT pq_create_table('dr_when');
         CREATE TABLE dr_when_log (id bigint);
         CREATE FUNCTION dr_when_log(bigint) RETURNS boolean LANGUAGE sql
             SET search_path FROM CURRENT AS 'INSERT INTO dr_when_log VALUES ($1) RETURNING true';
         CREATE TRIGGER again BEFORE UPDATE ON dr_when FOR EACH ROW
             WHEN (dr_when_log(OLD.id)) EXECUTE FUNCTION pq_stamp_enqueuer();
         SELECT pq_put('dr', '{}', tbl => 'dr_when');",
    )
    .unwrap();
    assert_eq!(claim(&mut c, "dr_when").unwrap(), 1);
    let logged: i64 = c
        .query_one("SELECT count(*) FROM dr_when_log", &[])
        .unwrap()
        .get(0);
    assert_eq!(logged, 1, "the WHEN clause ran");
    // A statement that changes the rows pq_get just claimed sees them changed by an earlier
    // command, as with claim.sql, however warm the session's caches are.
    c.batch_execute(
        "SELECT pq_create_table('dr_cid');
         SELECT pq_put('dr', '{}', tbl => 'dr_cid') FROM generate_series(1, 3);",
    )
    .unwrap();
    for _ in 0..2 {
        let err = c
            .batch_execute(
                "DELETE FROM dr_cid WHERE id IN (SELECT id FROM pq_get('dr', tbl => 'dr_cid'))",
            )
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&postgres::error::SqlState::TRIGGERED_DATA_CHANGE_VIOLATION),
            "{err}"
        );
    }
    // pq.direct_writes = off: every put and claim through the executor (its trigger fires).
    c.batch_execute(
        "SELECT pq_create_table('dr_off'); SET track_functions = 'all'; SET pq.direct_writes = off",
    )
    .unwrap();
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "SELECT pq_put('dr', '{}', tbl => 'dr_off'); SELECT * FROM pq_get('dr', tbl => 'dr_off')",
    )
    .unwrap();
    assert_eq!(trigger_calls(&mut tx), 2);
    tx.commit().unwrap();
}

/// What a second review found the direct put skipping, each sent to the executor now: a
/// column whose type changed while the put waited (written as the old type, it crashed the
/// server), domains, a dropped default, a disabled trigger, a schema without USAGE.
#[test]
fn puts_leave_changed_types_domains_defaults_disabled_triggers_and_schemas_to_the_executor() {
    use postgres::error::SqlState;
    let mut a = connect();
    a.batch_execute("SELECT pq_create_table('dt_race')")
        .unwrap();
    // A holds the key; B's keyed put waits for it; C changes schedule_at's type meanwhile.
    let mut tx = a.transaction().unwrap();
    tx.batch_execute("SELECT pq_put('dt', '{}', tbl => 'dt_race', key => 'k')")
        .unwrap();
    let b = thread::spawn(|| {
        connect()
            .batch_execute("SELECT pq_put('dt', '{}', '5m', tbl => 'dt_race', key => 'k')")
            .map_err(|e| e.code().cloned())
    });
    thread::sleep(std::time::Duration::from_millis(300));
    let c = thread::spawn(|| {
        connect()
            .batch_execute(
                "BEGIN;
                 DROP TRIGGER pq_enqueued_by ON dt_race;
                 ALTER TABLE dt_race ALTER schedule_at TYPE text;
                 CREATE TRIGGER pq_enqueued_by BEFORE INSERT OR UPDATE ON dt_race
                     FOR EACH ROW EXECUTE FUNCTION pq_stamp_enqueuer();
                 COMMIT;",
            )
            .unwrap()
    });
    thread::sleep(std::time::Duration::from_millis(300));
    tx.rollback().unwrap();
    c.join().unwrap();
    assert_eq!(b.join().unwrap(), Err(Some(SqlState::WRONG_OBJECT_TYPE)));
    assert_eq!(
        a.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0),
        1,
        "the server is up"
    );

    let put = |c: &mut Client, table: &str| {
        c.query_one(
            "SELECT pq_put('dt', '{}', tbl => $1::text::regclass)",
            &[&table],
        )
        .map(|r| r.get::<_, i64>(0))
        .map_err(|e| e.code().cloned())
    };
    let mut c = connect();
    // Domains: a NOT NULL one refuses the NULL, a default one gives its default.
    c.batch_execute(
        "SELECT pq_create_table('dt_dom');
         CREATE DOMAIN dt_nn AS int NOT NULL;
         CREATE DOMAIN dt_def AS int DEFAULT 42;
         ALTER TABLE dt_dom ADD COLUMN d dt_def;",
    )
    .unwrap();
    let id = put(&mut c, "dt_dom").unwrap();
    let d: i32 = c
        .query_one("SELECT d FROM dt_dom WHERE id = $1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(d, 42);
    c.batch_execute("TRUNCATE dt_dom; ALTER TABLE dt_dom ADD COLUMN n dt_nn")
        .unwrap();
    assert_eq!(
        put(&mut c, "dt_dom"),
        Err(Some(SqlState::NOT_NULL_VIOLATION))
    );
    // No default on enqueued_at: the executor's NOT NULL violation.
    c.batch_execute(
        "SELECT pq_create_table('dt_nodef'); ALTER TABLE dt_nodef ALTER enqueued_at DROP DEFAULT",
    )
    .unwrap();
    assert_eq!(
        put(&mut c, "dt_nodef"),
        Err(Some(SqlState::NOT_NULL_VIOLATION))
    );
    // pq's trigger disabled: nothing stamps enqueued_by.
    c.batch_execute(
        "SELECT pq_create_table('dt_off'); ALTER TABLE dt_off DISABLE TRIGGER pq_enqueued_by",
    )
    .unwrap();
    assert_eq!(
        put(&mut c, "dt_off"),
        Err(Some(SqlState::NOT_NULL_VIOLATION))
    );
    // A schema the role may not use, though it may insert into the table.
    c.batch_execute(
        "CREATE SCHEMA dt_hidden; SELECT pq_create_table('dt_hidden.t');
         DO $$ BEGIN CREATE ROLE dt_producer; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT INSERT, SELECT (id) ON dt_hidden.t TO dt_producer;
         GRANT USAGE ON SEQUENCE dt_hidden.t_id_seq TO dt_producer;",
    )
    .unwrap();
    let oid: u32 = c
        .query_one("SELECT 'dt_hidden.t'::regclass::oid", &[])
        .unwrap()
        .get(0);
    let err = c
        .batch_execute(&format!(
            "SET ROLE dt_producer; SELECT pq_put('dt', '{{}}', tbl => {oid}::oid::regclass)"
        ))
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    c.batch_execute("RESET ROLE").unwrap();
}

/// A queue table with an inheritance child: the child's jobs are the table's (to SQL, and so
/// to claims), though its indexes do not hold them.
#[test]
fn a_child_table_s_jobs_are_claimed_through_its_parent() {
    let mut c = connect();
    // The session has claimed from the table before the child exists: what it cached of the
    // table must not outlive the child's creation.
    c.batch_execute(
        "SELECT pq_create_table('dk_parent');
         SELECT pq_put('dk', '{}', tbl => 'dk_parent');
         SELECT * FROM pq_get('dk', tbl => 'dk_parent');",
    )
    .unwrap();
    let mut other = connect();
    other.batch_execute(
        "CREATE TABLE dk_child () INHERITS (dk_parent);
         INSERT INTO dk_child (q_name, data, enqueued_by) VALUES ('dk', '{\"child\": true}', current_user::regrole);",
    )
    .unwrap();
    let rows = c
        .query(
            "SELECT data::text FROM pq_get('dk', tbl => 'dk_parent')",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "the child's job is claimed");
    assert_eq!(rows[0].get::<_, String>(0), r#"{"child": true}"#);
    let pending: i64 = c
        .query_one(
            "SELECT count(*) FROM dk_child WHERE dequeued_at IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}

/// A put or claim that waits for a DDL transaction must act on the privileges it committed
/// (checked under the table's lock, as the executor checks), not on those of before.
#[test]
fn a_write_that_waited_for_a_revoke_is_refused() {
    use postgres::error::SqlState;
    let mut owner = connect();
    owner
        .batch_execute(
            "SELECT pq_create_table('dv');
             DO $$ BEGIN CREATE ROLE dv_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT SELECT, INSERT, UPDATE ON dv TO dv_app;
             GRANT USAGE ON SEQUENCE dv_id_seq TO dv_app;
             SELECT pq_put('dv', '{}', tbl => 'dv') FROM generate_series(1, 3);",
        )
        .unwrap();
    for (revoke, sql) in [
        (
            "REVOKE INSERT ON dv FROM dv_app",
            "SELECT pq_put('dv', '{}', tbl => 'dv')",
        ),
        (
            "REVOKE SELECT ON dv FROM dv_app",
            "SELECT * FROM pq_get('dv', tbl => 'dv')",
        ),
    ] {
        let mut app = connect();
        app.batch_execute("SET ROLE dv_app").unwrap();
        app.batch_execute(sql).unwrap(); // warm: the table's checks and layout cached
        let mut tx = owner.transaction().unwrap();
        tx.batch_execute(&format!("LOCK TABLE dv; {revoke}"))
            .unwrap();
        let waiting = thread::spawn(move || app.batch_execute(sql).map_err(|e| e.code().cloned()));
        thread::sleep(std::time::Duration::from_millis(300));
        tx.commit().unwrap();
        assert_eq!(
            waiting.join().unwrap(),
            Err(Some(SqlState::INSUFFICIENT_PRIVILEGE)),
            "{revoke}"
        );
    }
}
