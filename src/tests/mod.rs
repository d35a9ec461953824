//! Tests. Here and in `tasks`: `#[pg_test]`s, each inside one rolled-back transaction.
//! `sessions`, `security`, `heads`, `direct` and `operations`: several real connections to the same test
//! cluster, for what one transaction cannot show. (The client crate has its own tests, in `client/tests/`.)

mod direct;
mod heads;
mod operations;
mod security;
mod sessions;
mod tasks;

#[pgrx::pg_schema]
mod tests {
    use pgrx::datum::Interval;
    use pgrx::prelude::*;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The test cluster is ready, with this build of the extension; `sessions` tests call this
    /// first to start it.
    #[pg_test]
    fn cluster_ready() {
        assert_eq!(
            one::<String>("SELECT extversion FROM pg_extension WHERE extname = 'pq'").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[pg_test]
    fn put_then_get_returns_the_job_with_python_pq_columns() {
        let id = one::<i64>(r#"SELECT pq_put('t_basic', '{"kind":"Cox"}')"#).unwrap();
        let row = Spi::get_three::<i64, String, i32>(
            "SELECT id, data::text, size FROM pq_get('t_basic')",
        )
        .unwrap();
        assert_eq!(
            row,
            (Some(id), Some(r#"{"kind": "Cox"}"#.to_string()), Some(15))
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('t_basic')"),
            Some(0)
        );
        let dequeued = one::<bool>(&format!(
            "SELECT dequeued_at IS NOT NULL FROM queue WHERE id = {id}"
        ));
        assert_eq!(dequeued, Some(true));
    }

    /// pq_get hands its rows over all at once (materialize mode); every way SQL can call a
    /// set-returning function takes them: FROM, the select list (whole rows and fields),
    /// whole-row references, LATERAL, a PL/pgSQL loop and a batch.
    #[pg_test]
    fn pq_get_works_in_every_calling_form() {
        let put = |n: i32| {
            one::<i64>(&format!(
                "SELECT count(pq_put('t_forms', jsonb_build_object('n', g))) FROM generate_series(1, {n}) g"
            ))
        };
        put(9);
        let cases: [(&str, &str); 7] = [
            ("SELECT data->>'n' FROM pq_get('t_forms')", "1"),
            ("SELECT (pq_get('t_forms')).data->>'n'", "2"),
            ("SELECT (j).data->>'n' FROM (SELECT pq_get('t_forms') AS j) s", "3"),
            ("SELECT to_jsonb(j)->'data'->>'n' FROM pq_get('t_forms') j", "4"),
            ("SELECT j.data->>'n' FROM (VALUES ('t_forms')) v(q), LATERAL pq_get(v.q) j", "5"),
            (
                "SELECT string_agg(data->>'n', ',' ORDER BY id) FROM pq_get('t_forms', batch_size => 2)",
                "6,7",
            ),
            ("SELECT pq_get('t_forms')::text LIKE '%\"{\"\"n\"\": 8}\"%'", "true"),
        ];
        for (sql, want) in cases {
            let got = Spi::get_one::<String>(&format!("SELECT ({sql})::text"))
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(got.as_deref(), Some(want), "{sql}");
        }
        Spi::run(
            "CREATE FUNCTION tests.take_all(q text) RETURNS text LANGUAGE plpgsql AS $$
             DECLARE j record; seen text := '';
             BEGIN
               FOR j IN SELECT * FROM pq_get(q, batch_size => 5) LOOP seen := seen || (j.data->>'n'); END LOOP;
               RETURN seen;
             END $$",
        )
        .unwrap();
        assert_eq!(
            one::<String>("SELECT tests.take_all('t_forms')").as_deref(),
            Some("9")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('t_forms')"),
            Some(0)
        );
        // An empty claim is an empty set in the select list too.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM (SELECT pq_get('t_forms')) s"),
            Some(0)
        );
    }

    /// Payloads from 1 KB to 100 MB (compressible and not, so inline, compressed and TOASTed
    /// out of line) come back from pq_get byte for byte, one at a time and in one batch.
    #[pg_test]
    fn pq_get_returns_payloads_from_1_kb_to_100_mb_intact() {
        let blob = |bytes: i64, random: bool| {
            if random {
                format!("(SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, {}) g)", bytes / 32)
            } else {
                format!("repeat('apple', {})", bytes / 5)
            }
        };
        let sizes = [
            (1_000, true),
            (1_000_000, true),
            (1_000_000, false),
            (100_000_000, false),
        ];
        for batch in [1, 4] {
            let mut want = Vec::new();
            for (bytes, random) in sizes {
                let id = one::<i64>(&format!(
                    "SELECT pq_put('t_big', jsonb_build_object('blob', {}))",
                    blob(bytes, random)
                ))
                .unwrap();
                want.push(
                    one::<String>(&format!(
                        "SELECT md5(data::text) FROM queue WHERE id = {id}"
                    ))
                    .unwrap(),
                );
            }
            let got: Vec<String> = if batch == 1 {
                (0..sizes.len())
                    .map(|_| one::<String>("SELECT md5(data::text) FROM pq_get('t_big')").unwrap())
                    .collect()
            } else {
                let all = one::<String>(
                    "SELECT string_agg(md5(data::text), ',' ORDER BY id) FROM pq_get('t_big', batch_size => 4)",
                )
                .unwrap();
                all.split(',').map(str::to_string).collect()
            };
            assert_eq!(got, want, "batch_size {batch}");
        }
    }

    #[pg_test]
    fn the_readme_example_works_as_written() {
        let id = one::<i64>(r#"SELECT pq_put('apples', '{"kind":"Cox"}', '5m')"#).unwrap();
        let late = one::<bool>(&format!(
            "SELECT schedule_at - now() = interval '5 minutes' FROM queue WHERE id = {id}"
        ));
        assert_eq!(late, Some(true));
    }

    /// Every time-spec form, as text, interval and timestamptz, for schedule_at and expected_at.
    #[pg_test]
    fn time_specs_resolve_from_now() {
        let cases = [
            ("'5m'", "5 minutes"),
            ("'90s'", "90 seconds"),
            ("'1h 30m'", "90 minutes"),
            ("'2h30m'", "150 minutes"), // Python pq reads this as 2 hours
            ("'1d'", "1 day"),
            ("'2 hours'", "2 hours"),
            ("'0s'", "0"),
            ("interval '5 minutes'", "5 minutes"),
            ("now() + interval '3 hours'", "3 hours"),
            ("'2100-01-01 00:00:00+00'", "__absolute"),
        ];
        for (spec, expect) in cases {
            for column in ["schedule_at", "expected_at"] {
                let id = if column == "schedule_at" {
                    one::<i64>(&format!("SELECT pq_put('t_spec', '{{}}', {spec})"))
                } else {
                    one::<i64>(&format!(
                        "SELECT pq_put('t_spec', '{{}}', NULL::{ty}, {spec})",
                        ty = if spec.starts_with("interval") {
                            "interval"
                        } else if spec.starts_with("now()") {
                            "timestamptz"
                        } else {
                            "text"
                        }
                    ))
                }
                .unwrap();
                let check = if expect == "__absolute" {
                    format!("SELECT {column} = '2100-01-01 00:00:00+00' FROM queue WHERE id = {id}")
                } else {
                    format!(
                        "SELECT {column} - now() = interval '{expect}' FROM queue WHERE id = {id}"
                    )
                };
                assert_eq!(one::<bool>(&check), Some(true), "{spec} as {column}");
            }
        }
    }

    #[pg_test]
    fn priority_then_fifo_and_scheduled_jobs_wait() {
        Spi::run(
            r#"SELECT pq_put('t_order', '{"n":1}');
               SELECT pq_put('t_order', '{"n":2}', expected_at => '2h');
               SELECT pq_put('t_order', '{"n":3}', expected_at => '1h');
               SELECT pq_put('t_order', '{"n":4}');
               SELECT pq_put('t_order', '{"n":5}', '1h');
               SELECT pq_put('t_order', '{"n":6}', now() - interval '1 minute');"#,
        )
        .unwrap();
        let mut order = Vec::new();
        while let Some(n) = one::<i32>("SELECT (SELECT (data->>'n')::int FROM pq_get('t_order'))") {
            order.push(n);
        }
        // expected_at earliest first, then jobs without one by id; n=5 is not due yet.
        assert_eq!(order, vec![3, 2, 1, 4, 6]);
        assert_eq!(one::<i64>("SELECT pq_len('t_order')"), Some(0));
    }

    #[pg_test]
    fn batch_put_and_batch_get() {
        let ids: Vec<i64> = Spi::connect(|c| {
            c.select(
                r#"SELECT * FROM pq_put_many('t_batch', ARRAY['{"n":1}','{"n":2}','{"n":3}']::jsonb[])"#,
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<i64>(1).unwrap().unwrap())
            .collect()
        });
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in array order");
        let got = one::<String>(
            "SELECT string_agg(data->>'n', ',') FROM pq_get('t_batch', batch_size => 2)",
        );
        assert_eq!(got.as_deref(), Some("1,2"));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('t_batch', batch_size => 5)"),
            Some(1)
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_put_many('t_batch', '{}'::jsonb[])"),
            Some(0)
        );
    }

    #[pg_test]
    fn len_clear_update_channel() {
        Spi::run(
            r#"SELECT pq_put('t_admin', '{"a":1}'); SELECT pq_put('t_admin', '{"a":2}');
               SELECT pq_put('t_admin', '{"a":3}', '1h');"#,
        )
        .unwrap();
        assert_eq!(one::<i64>("SELECT pq_len('t_admin')"), Some(2));
        let id = one::<i64>("SELECT min(id) FROM queue WHERE q_name = 't_admin'").unwrap();
        assert_eq!(
            one::<bool>(&format!(
                r#"SELECT pq_update('t_admin', {id}, '{{"a":9}}')"#
            )),
            Some(true)
        );
        assert_eq!(
            one::<bool>(r#"SELECT pq_update('t_admin', -1, '{"a":9}')"#),
            Some(false)
        );
        assert_eq!(
            one::<bool>(r#"SELECT pq_update('other', -1, '{"a":9}')"#),
            Some(false)
        );
        assert_eq!(
            one::<String>("SELECT data->>'a' FROM pq_get('t_admin')").as_deref(),
            Some("9")
        );
        assert_eq!(one::<i64>("SELECT pq_clear('t_admin')"), Some(3));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM queue WHERE q_name = 't_admin'"),
            Some(0)
        );
        assert_eq!(
            one::<String>("SELECT pq_channel('apples')").as_deref(),
            Some("apples")
        );
        let long = "x".repeat(64);
        assert_eq!(
            one::<String>(&format!("SELECT pq_channel('{long}')")),
            one::<String>(&format!("SELECT 'pq_' || md5('{long}')"))
        );
    }

    #[pg_test]
    fn stats_count_ready_scheduled_done() {
        Spi::run(
            r#"SELECT pq_put('t_stats', '{}'); SELECT pq_put('t_stats', '{}');
               SELECT pq_put('t_stats', '{}', '1h'); SELECT pq_put('t_stats', '{}');"#,
        )
        .unwrap();
        Spi::run("SELECT * FROM pq_get('t_stats')").unwrap();
        // Our own claim is not yet committed, but this session sees its own update.
        let row = Spi::get_three::<i64, i64, i64>(
            "SELECT ready, scheduled, done FROM pq_stats WHERE queue = 't_stats'",
        )
        .unwrap();
        assert_eq!(row, (Some(2), Some(1), Some(1)));
        let age =
            one::<Interval>("SELECT oldest_ready_age FROM pq_stats() WHERE queue = 't_stats'");
        assert!(age.is_some());
    }

    #[pg_test]
    fn other_queue_tables_work_with_every_function() {
        Spi::run("SELECT pq_create_table('jobs'); CREATE SCHEMA app; SELECT pq_create_table('app.\"My Jobs\"')")
            .unwrap();
        // Names of 63 bytes, PostgreSQL's longest, alike but for the last: their index names are
        // shortened and hashed, so neither table's collide with the other's.
        let long: Vec<String> = ["a", "b"].map(|c| format!("{}{c}", "x".repeat(62))).into();
        for name in &long {
            Spi::run(&format!("SELECT pq_create_table('{name}')")).unwrap();
            let indexes = format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{name}'");
            assert_eq!(
                one::<i64>(&indexes),
                Some(7),
                "{name}: 6 indexes and the key"
            );
        }
        // pg_temp is the session's temporary schema, as in CREATE TABLE.
        Spi::run("SELECT pq_create_table('pg_temp.t_tempq')").unwrap();
        let temp = one::<String>(
            "SELECT relpersistence::text FROM pg_class WHERE oid = 'pg_temp.t_tempq'::regclass",
        );
        assert_eq!(temp.as_deref(), Some("t"), "a temporary table");
        let tables = ["'jobs'".to_string(), r#"'app."My Jobs"'"#.to_string()]
            .into_iter()
            .chain(long.iter().map(|name| format!("'{name}'")));
        for tbl in tables {
            let id =
                one::<i64>(&format!(r#"SELECT pq_put('q', '{{"x":1}}', tbl => {tbl})"#)).unwrap();
            Spi::run(&format!(
                "SELECT * FROM pq_put_many('q', ARRAY['{{}}']::jsonb[], tbl => {tbl})"
            ))
            .unwrap();
            assert_eq!(one::<i64>(&format!("SELECT pq_len('q', {tbl})")), Some(2));
            assert_eq!(
                one::<i64>("SELECT pq_len('q')"),
                Some(0),
                "default table untouched"
            );
            assert_eq!(
                one::<i64>(&format!("SELECT id FROM pq_get('q', tbl => {tbl})")),
                Some(id)
            );
            assert_eq!(
                one::<bool>(&format!("SELECT pq_update('q', {id}, '{{}}', {tbl})")),
                Some(true)
            );
            assert_eq!(
                one::<i64>(&format!("SELECT done FROM pq_stats({tbl})")),
                Some(1)
            );
            assert_eq!(one::<i64>(&format!("SELECT pq_clear('q', {tbl})")), Some(2));
        }
    }

    #[pg_test]
    fn blocking_get_returns_a_job_that_becomes_due() {
        Spi::run("SELECT pq_put('t_due', '{}', now() + interval '300 ms')").unwrap();
        // now() is the transaction start; the job is due 300 ms later by the clock.
        assert_eq!(one::<i64>("SELECT count(*) FROM pq_get('t_due')"), Some(0));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('t_due', '5s')"),
            Some(1)
        );
    }

    /// Claims read candidates straight from the ready and scheduled indexes only where both are
    /// what `pq_create_table` makes, found by definition, not by name (else candidates.sql).
    #[pg_test]
    fn the_queue_indexes_are_found_by_what_they_are() {
        const READY: &str = "WHERE dequeued_at IS NULL AND schedule_at IS NULL";
        const SCHEDULED: &str =
            "(q_name, schedule_at) WHERE dequeued_at IS NULL AND schedule_at IS NOT NULL";
        // (the ready index replacing pq_create_table's; None: keep it; whether claims read directly)
        let cases: &[(Option<String>, bool)] = &[
            (None, true),
            (Some(format!("(q_name, expected_at, id) {READY}")), true),
            (
                Some(
                    "(q_name, expected_at, id) WHERE schedule_at IS NULL AND dequeued_at IS NULL"
                        .into(),
                ),
                true,
            ),
            (
                Some(format!("(q_name, expected_at DESC, id) {READY}")),
                false,
            ),
            (
                Some(format!("(q_name COLLATE \"C\", expected_at, id) {READY}")),
                false,
            ),
            (
                Some(format!("(q_name, expected_at, id) INCLUDE (data) {READY}")),
                false,
            ),
            (
                Some(format!("(lower(q_name), expected_at, id) {READY}")),
                false,
            ),
            (Some(format!("(q_name, expected_at) {READY}")), false),
            (
                Some(format!(
                    "(q_name, expected_at, id) {READY} AND expected_at IS NULL"
                )),
                false,
            ),
            (
                Some(
                    "(q_name, expected_at, id) WHERE dequeued_at IS NULL OR schedule_at IS NULL"
                        .into(),
                ),
                false,
            ),
            (
                Some("(q_name, expected_at, id) WHERE dequeued_at IS NULL".into()),
                false,
            ),
            (Some("(q_name, expected_at, id)".into()), false),
            (Some(format!("USING hash (q_name) {READY}")), false),
        ];
        for (n, (ready, direct)) in cases.iter().enumerate() {
            let t = format!("t_find_{n}");
            Spi::run(&format!("SELECT pq_create_table('{t}')")).unwrap();
            if let Some(def) = ready {
                let def = def.replace("USING hash", "");
                let using = if ready
                    .as_deref()
                    .is_some_and(|d| d.starts_with("USING hash"))
                {
                    "USING hash "
                } else {
                    ""
                };
                Spi::run(&format!(
                    "DROP INDEX {t}_ready_idx; CREATE INDEX {t}_mine ON {t} {using}{def}"
                ))
                .unwrap_or_else(|e| panic!("{def}: {e}"));
            }
            let oid = one::<pg_sys::Oid>(&format!("SELECT '{t}'::regclass::oid")).unwrap();
            let found = crate::queue::candidates::find(oid);
            assert_eq!(found.is_some(), *direct, "ready index {ready:?}: {found:?}");
            if let Some(found) = found {
                let name = |o: pg_sys::Oid| {
                    one::<String>(&format!("SELECT {}::oid::regclass::text", o.to_u32())).unwrap()
                };
                let ready_name = if ready.is_some() {
                    format!("{t}_mine")
                } else {
                    format!("{t}_ready_idx")
                };
                assert_eq!(name(found.ready), ready_name);
                assert_eq!(name(found.scheduled), format!("{t}_scheduled_idx"));
            }
        }
        // Two of a kind: the older (lower oid) is read.
        Spi::run(&format!("SELECT pq_create_table('t_find_two'); CREATE INDEX t_find_two_again ON t_find_two {SCHEDULED}")).unwrap();
        let oid = one::<pg_sys::Oid>("SELECT 't_find_two'::regclass::oid").unwrap();
        let found = crate::queue::candidates::find(oid).expect("found");
        assert_eq!(
            one::<String>(&format!(
                "SELECT {}::oid::regclass::text",
                found.scheduled.to_u32()
            ))
            .as_deref(),
            Some("t_find_two_scheduled_idx")
        );
        // No scheduled index: no direct reads either.
        Spi::run("SELECT pq_create_table('t_find_none'); DROP INDEX t_find_none_scheduled_idx")
            .unwrap();
        let oid = one::<pg_sys::Oid>("SELECT 't_find_none'::regclass::oid").unwrap();
        assert_eq!(crate::queue::candidates::find(oid), None);
    }

    /// An index built over broken HOT chains (`indcheckxmin`, as CREATE INDEX sets it while an
    /// older snapshot can still see a HOT-updated row) is read directly only by transactions
    /// younger than its build, as the planner reads it; claims go through SQL meanwhile.
    #[pg_test]
    fn an_index_newer_than_the_transaction_s_snapshots_is_not_read_directly() {
        use crate::plumbing::table::QueueTable;
        use crate::queue::candidates::{find, readable};
        Spi::run(
            "SELECT pq_create_table('t_checkxmin'); SELECT pq_put('q', '{}', tbl => 't_checkxmin')",
        )
        .unwrap();
        let oid = one::<pg_sys::Oid>("SELECT 't_checkxmin'::regclass::oid").unwrap();
        assert_eq!(find(oid).and_then(|ix| ix.check_xmin), None);
        assert!(readable(&QueueTable::resolve(Some(oid)), false).is_some());
        // What index_build writes for a broken HOT chain; the ALTER invalidates the table's
        // cached lookups, as the index build does.
        Spi::run(
            "UPDATE pg_index SET indcheckxmin = true WHERE indexrelid = 't_checkxmin_ready_idx'::regclass;
             ALTER TABLE t_checkxmin SET (fillfactor = 100)",
        )
        .unwrap();
        let found = find(oid).expect("both indexes");
        let this = unsafe { pg_sys::GetCurrentTransactionId() };
        assert_eq!(found.check_xmin, Some(this), "the pg_index row's xmin");
        assert_eq!(readable(&QueueTable::resolve(Some(oid)), false), None);
        // Claims still work, through candidates.sql.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('q', tbl => 't_checkxmin')"),
            Some(1)
        );
    }

    /// pq's own tables are the extension's members, never a look-alike of the same name in its
    /// schema (review: before 0.5.0 added pq_queue_controls, anyone with CREATE there could add
    /// a view by that name, and every claim ran its function as the claimer).
    #[pg_test]
    fn only_the_extension_s_own_tables_are_used() {
        use crate::plumbing::table::extension_relation;
        assert!(extension_relation("pq_queue_controls").is_some());
        Spi::run("ALTER EXTENSION pq DROP TABLE pq_queue_controls").unwrap();
        assert_eq!(
            extension_relation("pq_queue_controls"),
            None,
            "not a member"
        );
        Spi::run(
            "ALTER TABLE pq_queue_controls RENAME TO t_old_controls; \
             CREATE VIEW pq_queue_controls AS SELECT * FROM t_old_controls",
        )
        .unwrap();
        assert_eq!(extension_relation("pq_queue_controls"), None, "a view");
        // Claims treat the queues as having no controls.
        Spi::run("SELECT pq_put('t_lookalike', '{}')").unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('t_lookalike')"),
            Some(1)
        );
    }

    /// A role that may not claim from a queue table gets 42501 from a paused queue too, as from
    /// any other (review: it got no rows, no error, and kept a lock on the table).
    #[pg_test(error = "permission denied for table public.t_paused_priv")]
    fn a_paused_queue_refuses_a_role_that_may_not_claim() {
        Spi::run(
            "SELECT pq_create_table('t_paused_priv'); SELECT pq_pause('q', tbl => 't_paused_priv'); \
             CREATE ROLE t_nobody; SET ROLE t_nobody",
        )
        .unwrap();
        Spi::run("SELECT * FROM pq_get('q', tbl => 't_paused_priv')").unwrap();
    }

    /// `pq_jobs(queue, 'ready')` lists jobs in the order claims take them: a due scheduled job
    /// with an earlier `expected_at` before an unscheduled one (review: it listed by
    /// `schedule_at` first).
    #[pg_test]
    fn ready_jobs_are_listed_in_claim_order() {
        Spi::run(
            "INSERT INTO queue (q_name, data, schedule_at, expected_at) \
             VALUES ('t_jobs_order', '{\"n\": 1}', now() - interval '1 s', now() + interval '1 h'); \
             SELECT pq_put('t_jobs_order', '{\"n\": 2}', expected_at => '5h'); \
             SELECT pq_put('t_jobs_order', '{\"n\": 3}')",
        )
        .unwrap();
        let listed = one::<String>(
            "SELECT string_agg(data->>'n', ',' ORDER BY ord) \
             FROM pq_jobs('t_jobs_order') WITH ORDINALITY AS j(id, status, e, s, x, data, err, ord)",
        );
        let claimed: Vec<String> = (0..3)
            .map(|_| one::<String>("SELECT data->>'n' FROM pq_get('t_jobs_order')").unwrap())
            .collect();
        assert_eq!(listed.as_deref(), Some("1,2,3"));
        assert_eq!(Some(claimed.join(",")), listed);
    }

    #[pg_test]
    fn blocking_get_times_out_empty() {
        let t0 = std::time::Instant::now();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_get('t_empty', '200ms')"),
            Some(0)
        );
        assert!(t0.elapsed() >= std::time::Duration::from_millis(200));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// Preloaded, with background workers for queues `bg_tasks` (see `sessions`) and
    /// `bg_security` (see `security`).
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pq'",
            "pq.worker_queues = 'bg_tasks,bg_security'",
            "pq.worker_database = 'pgrx_tests'",
            "pq.worker_role = 'postgres'",
            "pq.worker_allow_superuser = on",
            "pq.workers_per_queue = 2",
            "max_prepared_transactions = 5",
        ]
    }
}
