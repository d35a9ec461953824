//! Tasks: `pq_put_task`, `pq_work`, retries, failures, privileges, as `#[pg_test]`s (each in
//! one rolled-back transaction). Committing and background workers are in `sessions`.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn setup() {
        Spi::run(
            r#"CREATE TABLE eaten (kind text, who text);
               CREATE FUNCTION eat(kind text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO eaten VALUES (kind, current_user) $$;
               CREATE FUNCTION rot(kind text) RETURNS void LANGUAGE plpgsql
                   AS $$ BEGIN INSERT INTO eaten VALUES (kind, 'rot');
                         RAISE EXCEPTION 'the % is rotten', kind USING ERRCODE = '22012'; END $$;
               SELECT pq_register_task('eat(text)'), pq_register_task('rot(text)');"#,
        )
        .unwrap();
    }

    #[pg_test]
    fn a_task_is_performed_with_python_pq_shape() {
        setup();
        let id = one::<i64>(r#"SELECT pq_put_task('t_ok', 'eat(text)', '["Cox"]')"#).unwrap();
        let shape = one::<pgrx::JsonB>(&format!("SELECT data FROM queue WHERE id = {id}"))
            .unwrap()
            .0;
        assert_eq!(
            shape,
            serde_json::json!({"function": "public.eat(text)", "args": ["Cox"], "kwargs": {},
                               "retried": 0, "max_retries": 0, "retry_in": "30s"})
        );
        let row = Spi::get_three::<i64, String, String>(
            "SELECT id, function, outcome FROM pq_work('t_ok')",
        )
        .unwrap();
        assert_eq!(
            row,
            (
                Some(id),
                Some("public.eat(text)".into()),
                Some("done".into())
            )
        );
        assert_eq!(
            one::<String>("SELECT string_agg(kind, ',') FROM eaten").as_deref(),
            Some("Cox")
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pq_work('t_ok')"), Some(0));
    }

    #[pg_test]
    fn arguments_convert_to_the_declared_types() {
        Spi::run(
            r#"CREATE TABLE got (a int, b text, c jsonb, d int[], e text, f bigint, g text[], h boolean);
               CREATE FUNCTION take(a int, b text, c jsonb, d int[], e text DEFAULT 'dflt',
                                    f bigint DEFAULT 0, g text[] DEFAULT '{}', h boolean DEFAULT false)
               RETURNS void LANGUAGE sql AS $$ INSERT INTO got VALUES (a, b, c, d, e, f, g, h) $$;
               SELECT pq_register_task('take(int, text, jsonb, int[], text, bigint, text[], boolean)');"#,
        )
        .unwrap();
        Spi::run(
            r#"SELECT pq_put_task('t_args', 'take', '[1, "two", {"k": [3]}, [4, 5]]',
                                  '{"f": 9000000000, "g": ["x,y", "q\"uote"], "h": true}')"#,
        )
        .unwrap();
        assert_eq!(
            one::<String>("SELECT outcome FROM pq_work('t_args')").as_deref(),
            Some("done")
        );
        let got = one::<String>(
            "SELECT format('%s|%s|%s|%s|%s|%s|%s|%s', a, b, c, d, e, f, g, h) FROM got",
        );
        assert_eq!(
            got.as_deref(),
            Some(r#"1|two|{"k": [3]}|{4,5}|dflt|9000000000|{"x,y","q\"uote"}|t"#)
        );
    }

    #[pg_test]
    fn failures_retry_then_fail_with_the_error_kept_and_can_be_requeued() {
        setup();
        let id = one::<i64>(r#"SELECT pq_put_task('t_fail', 'rot(text)', '["Cox"]', max_retries => 2, retry_in => '10s')"#)
            .unwrap();
        for attempt in 1..=3 {
            let (outcome, n, code) = Spi::get_three::<String, i32, String>(
                "SELECT outcome, attempt, sqlstate FROM pq_work('t_fail')",
            )
            .unwrap();
            assert_eq!(n, Some(attempt));
            assert_eq!(code.as_deref(), Some("22012"));
            if attempt < 3 {
                assert_eq!(outcome.as_deref(), Some("retry"));
                let check = format!(
                    "SELECT dequeued_at IS NULL
                            AND schedule_at BETWEEN now() + interval '10 seconds' AND clock_timestamp() + interval '10 seconds'
                            AND (data->>'retried')::int = {attempt}
                            AND jsonb_array_length(data->'errors') = {attempt}
                     FROM queue WHERE id = {id}"
                );
                assert_eq!(one::<bool>(&check), Some(true), "attempt {attempt}");
                // Not due yet, so not performed again...
                assert_eq!(
                    one::<i64>("SELECT count(*) FROM pq_work('t_fail')"),
                    Some(0)
                );
                // ...until retry_in has passed.
                Spi::run(&format!(
                    "UPDATE queue SET schedule_at = now() - interval '1 s' WHERE id = {id}"
                ))
                .unwrap();
            } else {
                assert_eq!(outcome.as_deref(), Some("failed"));
            }
        }
        let failed = Spi::get_three::<i64, String, String>(
            "SELECT id, sqlstate, message FROM pq_failed WHERE queue = 't_fail'",
        )
        .unwrap();
        assert_eq!(
            failed,
            (
                Some(id),
                Some("22012".into()),
                Some("the Cox is rotten".into())
            )
        );
        // Each failed attempt's writes were rolled back with it.
        assert_eq!(one::<i64>("SELECT count(*) FROM eaten"), Some(0));
        assert_eq!(one::<bool>(&format!("SELECT pq_requeue({id})")), Some(true));
        assert_eq!(
            one::<bool>(&format!("SELECT pq_requeue({id})")),
            Some(false)
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_failed WHERE queue = 't_fail'"),
            Some(0)
        );
        assert_eq!(one::<i32>("SELECT attempt FROM pq_work('t_fail')"), Some(1));
    }

    // A failed keyed job gives its key up; a new job may take it. Requeueing the failed one
    // then would make two pending jobs with one key: refused with 23505, nothing changed.
    #[pg_test]
    fn a_failed_keyed_job_is_not_requeued_beside_a_pending_job_with_its_key() {
        setup();
        let failed = one::<i64>(
            r#"SELECT pq_put_task('t_rekey', 'rot(text)', '["Cox"]', key => 'order-42')"#,
        )
        .unwrap();
        assert_eq!(
            one::<String>("SELECT outcome FROM pq_work('t_rekey')").as_deref(),
            Some("failed")
        );
        let pending = one::<i64>(
            r#"SELECT pq_put_task('t_rekey', 'eat(text)', '["Fuji"]', key => 'order-42')"#,
        )
        .unwrap();
        assert_ne!(pending, failed, "the failed job no longer holds its key");
        let refused = crate::plumbing::subxact::catching(|| {
            Spi::run(&format!("SELECT pq_requeue({failed})")).unwrap()
        })
        .expect("refused");
        assert_eq!(refused.sqlstate, "23505");
        assert!(
            refused.message.contains(&format!("job {pending}"))
                && refused.message.contains("order-42"),
            "{}",
            refused.message
        );
        let pending_with_key =
            "SELECT count(*) FROM queue WHERE q_name = 't_rekey' AND key = 'order-42' AND dequeued_at IS NULL";
        assert_eq!(one::<i64>(pending_with_key), Some(1));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_failed WHERE queue = 't_rekey'"),
            Some(1)
        );
        // Once the pending job is done, the failed one can come back, keeping its key.
        assert_eq!(
            one::<String>("SELECT outcome FROM pq_work('t_rekey')").as_deref(),
            Some("done")
        );
        assert_eq!(
            one::<bool>(&format!("SELECT pq_requeue({failed})")),
            Some(true)
        );
        assert_eq!(one::<i64>(pending_with_key), Some(1));
        // A put of the key now returns the requeued job.
        assert_eq!(
            one::<i64>(r#"SELECT pq_put('t_rekey', '{}', key => 'order-42')"#),
            Some(failed)
        );
    }

    #[pg_test]
    fn one_failing_task_does_not_undo_the_others() {
        setup();
        Spi::run(
            r#"SELECT pq_put_task('t_iso', 'eat(text)', '["Cox"]');
               SELECT pq_put_task('t_iso', 'rot(text)', '["Bad"]');
               SELECT pq_put_task('t_iso', 'eat(text)', '["Fuji"]');"#,
        )
        .unwrap();
        let outcomes =
            one::<String>("SELECT string_agg(outcome, ',' ORDER BY id) FROM pq_work('t_iso')");
        assert_eq!(outcomes.as_deref(), Some("done,failed,done"));
        assert_eq!(
            one::<String>("SELECT string_agg(kind, ',' ORDER BY kind) FROM eaten").as_deref(),
            Some("Cox,Fuji")
        );
    }

    #[pg_test]
    fn bad_tasks_are_rejected_at_enqueue() {
        setup();
        let cases = [
            (r#"SELECT pq_put_task('t_bad', 'nope(text)', '[]')"#, "nope"),
            (r#"SELECT pq_put_task('t_bad', 'eat(int)', '[]')"#, "eat"),
            (
                r#"SELECT pq_put_task('t_bad', 'eat(text)', '[1, 2]')"#,
                "takes 1 arguments",
            ),
            (
                r#"SELECT pq_put_task('t_bad', 'eat(text)', '[]', '{"colour": "red"}')"#,
                "no parameter named \"colour\"",
            ),
            (
                r#"SELECT pq_put_task('t_bad', 'eat(text)', '{"kind": 1}')"#,
                "args must be a JSON array",
            ),
            (
                r#"SELECT pq_put_task('t_bad', 'eat(text)', '[]', '[]')"#,
                "kwargs must be a JSON object",
            ),
            (
                r#"SELECT pq_put_task('t_bad', 'eat(text)', '["x"]', max_retries => -1)"#,
                "must not be negative",
            ),
            (
                r#"SELECT pq_put_task('t_bad', 'eat(text)', '["x"]', retry_in => '5x')"#,
                "\"5x\"",
            ),
        ];
        for (sql, fragment) in cases {
            let err =
                crate::plumbing::subxact::catching(|| Spi::run(sql).unwrap()).map(|f| f.message);
            let msg = err.unwrap_or_else(|| panic!("{sql} was accepted"));
            assert!(msg.contains(fragment), "{sql}: {msg:?} lacks {fragment:?}");
        }
    }

    #[pg_test]
    fn python_handlers_are_left_for_client_workers() {
        setup();
        Spi::run(
            r#"SELECT pq_put('t_mixed', '{"function": "tasks.eat", "args": ["Cox"], "kwargs": {}, "retried": 0, "max_retries": 0, "retry_in": "30s"}');
               SELECT pq_put_task('t_mixed', 'eat(text)', '["Fuji"]');"#,
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pq_work('t_mixed')"),
            Some(1)
        );
        assert_eq!(
            one::<String>("SELECT data->>'function' FROM pq_get('t_mixed')").as_deref(),
            Some("tasks.eat")
        );
    }

    /// A task runs as the role that enqueued it, whoever works it: with that role's
    /// privileges, no more (the worker may be more privileged) and no less.
    #[pg_test]
    fn tasks_run_as_their_enqueuer() {
        setup();
        Spi::run(
            r#"CREATE ROLE t_worker; CREATE ROLE t_producer;
               GRANT SELECT, UPDATE ON queue TO t_worker;
               GRANT INSERT, SELECT (id) ON queue TO t_producer;
               GRANT USAGE ON SEQUENCE queue_id_seq TO t_producer;
               GRANT INSERT ON eaten TO t_producer;
               CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('gold');
               GRANT SELECT ON secrets TO t_worker;
               CREATE FUNCTION peek() RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO eaten SELECT s, current_user FROM secrets $$;
               SELECT pq_register_task('peek()');
               SET LOCAL ROLE t_producer;
               SELECT pq_put_task('t_priv', 'eat(text)', '["Cox"]');
               SELECT pq_put_task('t_priv', 'peek()');
               SET LOCAL ROLE t_worker;"#,
        )
        .unwrap();
        let outcomes = one::<String>("SELECT string_agg(outcome || ':' || coalesce(sqlstate, ''), ',' ORDER BY id) FROM pq_work('t_priv')");
        Spi::run("RESET ROLE").unwrap();
        // peek() reads secrets, which the worker may read and its producer may not.
        assert_eq!(outcomes.as_deref(), Some("done:,failed:42501"));
        assert_eq!(
            one::<String>("SELECT string_agg(kind || '/' || who, ',') FROM eaten").as_deref(),
            Some("Cox/t_producer")
        );
    }

    #[pg_test]
    fn search_path_cannot_redirect_a_task() {
        setup();
        Spi::run(
            r#"SELECT pq_put_task('t_path', 'eat(text)', '["Cox"]');
               CREATE SCHEMA evil;
               CREATE FUNCTION evil.eat(kind text) RETURNS void LANGUAGE sql
                   AS $$ INSERT INTO public.eaten VALUES ('hijacked', 'evil') $$;
               SET LOCAL search_path = evil, public;"#,
        )
        .unwrap();
        assert_eq!(
            one::<String>("SELECT outcome FROM public.pq_work('t_path')").as_deref(),
            Some("done")
        );
        assert_eq!(
            one::<String>("SELECT kind FROM public.eaten").as_deref(),
            Some("Cox")
        );
    }

    // The grants a producer, a consumer and a worker need (see the README); without them a
    // role gets 42501 and reads nothing.
    fn sqlstate_of(sql: &str) -> Option<String> {
        crate::plumbing::subxact::catching(|| Spi::run(sql).unwrap()).map(|f| f.sqlstate)
    }

    #[pg_test]
    fn roles_get_exactly_what_they_are_granted() {
        Spi::run(
            r#"CREATE ROLE t_producer; CREATE ROLE t_consumer; CREATE ROLE t_worker; CREATE ROLE t_nobody;
               CREATE ROLE t_keyed_producer;
               GRANT INSERT, SELECT (id) ON queue TO t_producer;
               GRANT INSERT, SELECT (id, q_name, key, dequeued_at) ON queue TO t_keyed_producer;
               GRANT USAGE ON SEQUENCE queue_id_seq TO t_keyed_producer;
               GRANT USAGE ON SEQUENCE queue_id_seq TO t_producer;
               GRANT SELECT, UPDATE ON queue TO t_consumer, t_worker;
               CREATE TABLE t_done (kind text);
               CREATE FUNCTION t_task(kind text) RETURNS void LANGUAGE sql AS $$ INSERT INTO t_done VALUES (kind) $$;
               REVOKE EXECUTE ON FUNCTION t_task(text) FROM PUBLIC;
               GRANT EXECUTE ON FUNCTION t_task(text) TO t_worker;
               GRANT INSERT ON t_done TO t_worker;
               SELECT pq_register_task('t_task(text)');
               SELECT pq_put_task('t_roles_tasks', 't_task(text)', '["Cox"]');"#,
        )
        .unwrap();
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("t_producer", "SELECT pq_put('t_roles', '{}')", None),
            (
                "t_producer",
                "SELECT * FROM pq_put_many('t_roles', ARRAY['{}']::jsonb[])",
                None,
            ),
            (
                "t_producer",
                "SELECT * FROM pq_get('t_roles')",
                Some("42501"),
            ),
            ("t_producer", "SELECT pq_len('t_roles')", Some("42501")),
            ("t_consumer", "SELECT * FROM pq_get('t_roles')", None),
            ("t_consumer", "SELECT pq_len('t_roles')", None),
            ("t_consumer", "SELECT * FROM pq_stats()", None),
            ("t_consumer", "SELECT * FROM pq_stats", None),
            ("t_worker", "SELECT pq_requeue(id) FROM pq_failed", None),
            // A unique job's put looks for the pending job with its key first.
            (
                "t_producer",
                "SELECT pq_put('t_roles', '{}', key => 't_k')",
                Some("42501"),
            ),
            (
                "t_keyed_producer",
                "SELECT pq_put('t_roles', '{}', key => 't_k')",
                None,
            ),
            (
                "t_keyed_producer",
                "SELECT pq_len('t_roles')",
                Some("42501"),
            ),
            (
                "t_consumer",
                "SELECT pq_put('t_roles', '{}')",
                Some("42501"),
            ),
            ("t_consumer", "SELECT pq_clear('t_roles')", Some("42501")),
            ("t_worker", "SELECT * FROM pq_work('t_roles_tasks')", None),
            ("t_nobody", "SELECT pq_put('t_roles', '{}')", Some("42501")),
            ("t_nobody", "SELECT * FROM pq_get('t_roles')", Some("42501")),
            ("t_nobody", "SELECT pq_len('t_roles')", Some("42501")),
            ("t_nobody", "SELECT * FROM pq_stats()", Some("42501")),
            ("t_nobody", "SELECT * FROM pq_stats", Some("42501")),
            ("t_nobody", "SELECT * FROM pq_failed", Some("42501")),
            (
                "t_nobody",
                "SELECT pq_update('t_roles', 1, '{}')",
                Some("42501"),
            ),
            (
                "t_nobody",
                "SELECT * FROM pq_work('t_roles')",
                Some("42501"),
            ),
        ];
        for (role, sql, expected) in cases {
            let got = sqlstate_of(&format!("SET LOCAL ROLE {role}; {sql}"));
            Spi::run("RESET ROLE").unwrap();
            assert_eq!(got.as_deref(), *expected, "{role}: {sql}");
        }
        let done = Spi::get_one::<i64>("SELECT count(*) FROM t_done").unwrap();
        assert_eq!(
            done,
            Some(1),
            "the worker performed the task, as its enqueuer"
        );
    }
}
