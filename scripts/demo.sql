-- Python pq's apple examples (its documentation, chapters 3-5), in SQL.
\pset footer off
\timing off
\set ECHO queries

CREATE EXTENSION IF NOT EXISTS pq;

\echo
\echo '## Methods: put three apples, then get them back (first in, first out)'
SELECT pq_put('apples', '{"kind":"Cox"}');
SELECT pq_put('apples', '{"kind":"Arthur Turner"}');
SELECT pq_put('apples', '{"kind":"Golden Delicious"}');
SELECT pq_len('apples') AS ready;
SELECT id, data, size, schedule_at FROM pq_get('apples');
SELECT 'umm, ' || (data->>'kind') || ' apples taste good.' AS eat FROM pq_get('apples');
SELECT id, data FROM pq_get('apples', batch_size => 10);
SELECT count(*) AS left_over FROM pq_get('apples');

\echo
\echo '## Scheduling: not pulled until later'
SELECT pq_put('apples', '{"kind":"Cox"}', '5m') AS scheduled_in_5m;
SELECT count(*) AS returned_now FROM pq_get('apples');
SELECT pq_put('apples', '{"kind":"Jazz"}', '1s') AS due_in_1s;
\echo 'a blocking get waits in the server until the job is due (about a second):'
\timing on
SELECT data FROM pq_get('apples', timeout => '3s');
\timing off

\echo
\echo '## Priority: an earlier expected_at goes first'
SELECT pq_put('apples', '{"kind":"Braeburn"}', expected_at => '2h');
SELECT pq_put('apples', '{"kind":"Fuji"}', expected_at => '5m');
SELECT pq_put('apples', '{"kind":"Gala"}');
SELECT data->>'kind' AS kind, expected_at - now() AS expected_in FROM pq_get('apples', batch_size => 3);
\echo 'scheduling and priority combined: ready in 1h, then ranked by an expectation of 2h'
SELECT pq_put('apples', '{"kind":"Cox"}', '1h', '2h');

\echo
\echo '## Transactions: a job taken in a transaction that rolls back returns to the queue'
SELECT pq_put('apples', '{"kind":"Russet"}') AS russet;
BEGIN;
SELECT id, data FROM pq_get('apples');
\echo '... the work fails, so:'
ROLLBACK;
SELECT id, data FROM pq_get('apples');

\echo
\echo '## Stats per queue'
SELECT * FROM pq_stats;

\echo
\echo '## Tasks: a registered SQL function, performed by pq_work as the role that enqueued it'
CREATE TABLE IF NOT EXISTS eaten (kind text, eaten_by text);
CREATE OR REPLACE FUNCTION eat(kind text) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO eaten VALUES (kind, current_user) $$;
SELECT pq_register_task('eat(text)');
SELECT * FROM pq_tasks;
SELECT pq_put_task('default', 'eat(text)', '["Cox"]', max_retries => 2, retry_in => '10s');
SELECT id, function, outcome FROM pq_work('default');
SELECT * FROM eaten;
\echo 'an unregistered function is refused when enqueued (42501), and never run:'
DO $$
BEGIN
    PERFORM pq_put_task('default', 'pg_terminate_backend(int, bigint)', '[1]');
    RAISE EXCEPTION 'an unregistered function was accepted';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END
$$;

\echo
\echo '## Operating queues: pause, limits, unique jobs, cancel, periodic jobs'
SELECT pq_pause('pears') AS paused;
SELECT pq_put('pears', '{"kind":"Conference"}') AS put_while_paused;
SELECT count(*) AS taken_while_paused FROM pq_get('pears');
SELECT pq_resume('pears') AS resumed;
SELECT id, data FROM pq_get('pears');
SELECT pq_set_limit('pears', 2) AS previous_limit;
SELECT pq_put('orders', '{"order":42}', key => 'order-42') AS first,
       pq_put('orders', '{"order":42}', key => 'order-42') AS same_job;
SELECT pq_cancel(pq_put('orders', '{"order":43}')) AS cancelled;
SELECT pq_schedule('nightly-report', '0 3 * * *', 'reports', '{"kind":"daily"}') AS next_run;
SELECT name, cron, queue, next_run FROM pq_schedules;
SELECT pq_unschedule('nightly-report') AS unscheduled;
SELECT queue, ready, done, cancelled, paused, concurrency_limit FROM pq_stats;
