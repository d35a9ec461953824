-- The SQL API. Bodies are Rust (src/*.rs); the declarations are written here by hand so the
-- table argument can be a regclass with a default bound to this extension's own table.
-- Every function pins search_path itself, in Rust, around the statements it runs (see
-- src/plumbing/pinning.rs), so a caller's hostile search_path cannot redirect them. Functions are
-- not STRICT, so a NULL gets a clear error, not a NULL.
--
-- tbl: the queue table, resolved by PostgreSQL in the caller's search_path ('jobs',
-- 'app.jobs'); unknown names raise 42P01 before pq runs.

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_text_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, text, text, regclass, text) IS
'Enqueues a job, returns its id. Times: a duration (''5m'', ''1h 30m'') or a timestamp. With key, a unique job: while a job of the queue with that key is pending, returns its id and inserts nothing. Example: SELECT pq_put(''apples'', ''{"kind":"Cox"}'', ''5m'', key => ''cox-1'')';

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at interval, expected_at interval DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_interval_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, interval, interval, regclass, text) IS
'Enqueues a job scheduled an interval from now. Example: SELECT pq_put(''apples'', ''{}'', interval ''5 minutes'')';

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at timestamptz, expected_at timestamptz DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_timestamptz_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, timestamptz, timestamptz, regclass, text) IS
'Enqueues a job scheduled at a time. Example: SELECT pq_put(''apples'', ''{}'', now() + interval ''1 hour'')';

CREATE FUNCTION pq_put_many(
    queue text, data jsonb[], schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text[] DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_many_wrapper';
COMMENT ON FUNCTION pq_put_many(text, jsonb[], text, text, regclass, text[]) IS
'Enqueues one job per array element; returns the ids in order. With key (one per element, NULL for none), unique jobs as in pq_put. Example: SELECT * FROM pq_put_many(''apples'', ARRAY[''{"kind":"Cox"}'']::jsonb[])';

CREATE FUNCTION pq_get(
    queue text, timeout interval DEFAULT '0', batch_size integer DEFAULT 1,
    tbl regclass DEFAULT '@extschema@.queue', functions text[] DEFAULT NULL)
RETURNS TABLE (id bigint, data jsonb, size integer, enqueued_at timestamptz,
               schedule_at timestamptz, expected_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1
AS 'MODULE_PATHNAME', 'pq_get_wrapper';
COMMENT ON FUNCTION pq_get(text, interval, integer, regclass, text[]) IS
'Claims up to batch_size ready jobs for this transaction, waiting up to timeout (NULL: until interrupted); with functions, only task jobs naming one of them. Example: SELECT * FROM pq_get(''apples'', ''5s'')';

CREATE FUNCTION pq_len(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pq_len_wrapper';
COMMENT ON FUNCTION pq_len(text, regclass) IS
'Number of ready jobs in a queue. Example: SELECT pq_len(''apples'')';

CREATE FUNCTION pq_clear(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_clear_wrapper';
COMMENT ON FUNCTION pq_clear(text, regclass) IS
'Deletes every job of a queue; returns how many. Example: SELECT pq_clear(''apples'')';

CREATE FUNCTION pq_update(queue text, id bigint, data jsonb, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_update_wrapper';
COMMENT ON FUNCTION pq_update(text, bigint, jsonb, regclass) IS
'Replaces a job''s data; true when the job exists. Example: SELECT pq_update(''apples'', 42, ''{"kind":"Bramley"}'')';

CREATE FUNCTION pq_purge(older_than interval DEFAULT NULL, max_rows integer DEFAULT 10000,
                         failed boolean DEFAULT false, tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_purge_wrapper';
COMMENT ON FUNCTION pq_purge(interval, integer, boolean, regclass) IS
'Deletes up to max_rows finished jobs dequeued longer ago than older_than (default pq.retention), oldest first; failed task jobs only with failed => true. Example: SELECT pq_purge(''1 day'')';

CREATE FUNCTION pq_channel(queue text)
RETURNS text LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pq_channel_wrapper';
COMMENT ON FUNCTION pq_channel(text) IS
'The NOTIFY channel pq_put signals for a queue. Example: SELECT pq_channel(''apples'')';

CREATE FUNCTION pq_stats(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (queue text, ready bigint, scheduled bigint, in_flight bigint, done bigint,
               oldest_ready_age interval, squatted bigint, cancelled bigint, paused boolean,
               concurrency_limit integer)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_stats_wrapper';
COMMENT ON FUNCTION pq_stats(regclass) IS
'Per-queue counts: ready, scheduled, in flight, done, oldest ready age, squatted (pending jobs whose lock key another session holds without claiming them), cancelled; whether the queue is paused, and its concurrency limit. Example: SELECT * FROM pq_stats()';

-- The views only call functions, which check the caller's privileges on the queue table
-- (security_invoker: nothing here is read with the view owner's).
CREATE VIEW pq_stats WITH (security_invoker = true) AS SELECT * FROM @extschema@.pq_stats();
COMMENT ON VIEW pq_stats IS 'pq_stats() of the extension''s queue table';
GRANT SELECT ON pq_stats TO PUBLIC;

-- Operating queues: pause, concurrency limits, cancel (src/operations/).
CREATE FUNCTION pq_pause(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_pause_wrapper';
COMMENT ON FUNCTION pq_pause(text, regclass) IS
'Pauses a queue: it still accepts puts, but nothing takes its jobs until pq_resume. True if it was not paused. Example: SELECT pq_pause(''apples'')';

CREATE FUNCTION pq_resume(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_resume_wrapper';
COMMENT ON FUNCTION pq_resume(text, regclass) IS
'Resumes a paused queue and wakes its blocked getters. True if it was paused. Example: SELECT pq_resume(''apples'')';

CREATE FUNCTION pq_set_limit(queue text, n integer, tbl regclass DEFAULT '@extschema@.queue')
RETURNS integer LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_set_limit_wrapper';
COMMENT ON FUNCTION pq_set_limit(text, integer, regclass) IS
'At most n jobs of the queue are claimed at once, across all sessions and workers; NULL removes the limit. Returns the previous limit. Example: SELECT pq_set_limit(''apples'', 2)';

CREATE FUNCTION pq_cancel(id bigint, tbl regclass DEFAULT '@extschema@.queue', wait interval DEFAULT '10s')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_cancel_wrapper';
COMMENT ON FUNCTION pq_cancel(bigint, regclass, interval) IS
'Cancels a job: a pending or scheduled one never runs; the transaction that holds a claimed one is cancelled (as pg_cancel_backend) and the job does not come back. False if the job is already done, failed or cancelled. Example: SELECT pq_cancel(42)';

CREATE FUNCTION pq_status(id bigint, tbl regclass DEFAULT '@extschema@.queue')
RETURNS text LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_status_wrapper';
COMMENT ON FUNCTION pq_status(bigint, regclass) IS
'A job''s state: ready, scheduled, in_flight, done, failed or cancelled; NULL when there is no such job (or it was purged). Example: SELECT pq_status(42)';

CREATE FUNCTION pq_metrics(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (metric text, queue text, label text, value double precision)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_metrics_wrapper';
COMMENT ON FUNCTION pq_metrics(regclass) IS
'Per-queue metrics, one row per sample: gauges from the pending jobs (ready, scheduled, in flight, oldest ready age, paused, limit) and, when pq is preloaded, counters (puts, claims, task outcomes) and the wake-up latency histogram. pq serve exposes them to Prometheus. Example: SELECT * FROM pq_metrics()';

CREATE FUNCTION pq_queue_table(tbl regclass) RETURNS regclass
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pq_queue_table_wrapper';
COMMENT ON FUNCTION pq_queue_table(regclass) IS
'tbl, if it is a queue table (42809 if not, 22004 for NULL). Example: SELECT pq_queue_table(''jobs'')';

CREATE FUNCTION pq_jobs(queue text, state text DEFAULT 'ready', max_rows integer DEFAULT 50,
                        tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, status text, enqueued_at timestamptz, schedule_at timestamptz,
               expected_at timestamptz, data jsonb, error text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF queue IS NULL OR queue = '' THEN
        RAISE EXCEPTION 'queue name must not be %', CASE WHEN queue IS NULL THEN 'NULL' ELSE 'empty' END
            USING ERRCODE = CASE WHEN queue IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
                  HINT = 'name the queue, e.g. pq_jobs(''apples'')';
    END IF;
    PERFORM @extschema@.pq_queue_table(tbl);
    IF state IS NULL OR state NOT IN ('ready', 'scheduled', 'in_flight', 'failed') THEN
        RAISE EXCEPTION 'unknown job state %', coalesce(quote_literal(left(state, 100)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass ''ready'', ''scheduled'', ''in_flight'' or ''failed''';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 1000 THEN
        RAISE EXCEPTION 'max_rows must be 1 to 1000, got %', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass a page size such as 50';
    END IF;
    IF state = 'failed' THEN
        -- Failed jobs are done jobs: this reads the table's done jobs (the dashboard's failed tab).
        RETURN QUERY EXECUTE format($q$
            SELECT q.id, 'failed'::text, q.enqueued_at, q.schedule_at, q.expected_at, q.data,
                   q.data->'errors'->-1->>'message'
            FROM %s q
            WHERE q.q_name = $1 AND q.dequeued_at IS NOT NULL AND q.data ? 'failed_at'
            ORDER BY q.dequeued_at DESC LIMIT $2 $q$, tbl) USING queue, max_rows;
        RETURN;
    END IF;
    -- Pending jobs only, in claim order (ready), by due time (scheduled); in flight: claimed by a
    -- running transaction, which holds its advisory key and is updating its row (as pq_stats
    -- counts them). No per-row function call: a queue with a million pending jobs is a scan.
    RETURN QUERY EXECUTE format($q$
        WITH held AS (
            SELECT DISTINCT l.objid FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
              AND l.classid = %1$L::regclass::oid
              AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
        ), jobs AS (
            SELECT q.*, (h.objid IS NOT NULL AND q.xmax <> '0'::xid) AS claimed
            FROM %1$s q LEFT JOIN held h ON h.objid = (q.id & 4294967295)::oid
            WHERE q.q_name = $1 AND q.dequeued_at IS NULL
        )
        SELECT j.id, $3, j.enqueued_at, j.schedule_at, j.expected_at, j.data, NULL::text
        FROM jobs j
        WHERE CASE $3 WHEN 'in_flight' THEN j.claimed
                      WHEN 'ready' THEN NOT j.claimed AND (j.schedule_at IS NULL OR j.schedule_at <= now())
                      ELSE NOT j.claimed AND j.schedule_at > now() END
        ORDER BY CASE WHEN $3 = 'ready' THEN NULL ELSE j.schedule_at END, j.expected_at NULLS LAST, j.id
        LIMIT $2 $q$, tbl) USING queue, max_rows, state;
END
$fn$;
COMMENT ON FUNCTION pq_jobs(text, text, integer, regclass) IS
'Up to max_rows jobs of a queue in a state: ready (in claim order), scheduled, in_flight, or failed (with the last error). Example: SELECT * FROM pq_jobs(''apples'', ''scheduled'')';

-- Periodic jobs (src/operations/periodic.rs).
CREATE FUNCTION pq_schedule(name text, cron text, queue text, data jsonb DEFAULT '{}',
                            tbl regclass DEFAULT '@extschema@.queue')
RETURNS timestamptz LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_schedule_wrapper';
COMMENT ON FUNCTION pq_schedule(text, text, text, jsonb, regclass) IS
'Creates or replaces a periodic job: at each tick of a 5-field cron schedule (UTC), one job with data is put in queue, as the role that scheduled it. Returns the next run. Example: SELECT pq_schedule(''nightly-report'', ''0 3 * * *'', ''reports'', ''{"kind":"daily"}'')';

CREATE FUNCTION pq_unschedule(name text)
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_unschedule_wrapper';
COMMENT ON FUNCTION pq_unschedule(text) IS
'Removes a periodic job; true if it existed. Example: SELECT pq_unschedule(''nightly-report'')';

CREATE FUNCTION pq_run_schedules()
RETURNS integer LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_run_schedules_wrapper';
COMMENT ON FUNCTION pq_run_schedules() IS
'Puts one job for every periodic job that is due (the maintenance worker calls it every second when pq is preloaded; elsewhere, call it from pg_cron). Returns how many. Example: SELECT pq_run_schedules()';

CREATE VIEW pq_schedules WITH (security_invoker = true) AS
SELECT name, cron, q_name AS queue, data, tbl, owner, next_run, last_run, last_job, created_at
FROM @extschema@.pq_periodic;
COMMENT ON VIEW pq_schedules IS 'Periodic jobs (of the roles you belong to), with their next and last run';
GRANT SELECT ON pq_schedules TO PUBLIC;

-- Tasks. pq_put_task resolves the function name, and pq_work runs tasks, in the caller's
-- search_path; pq's own statements run pinned.

CREATE FUNCTION pq_put_task(
    queue text, function text, args jsonb DEFAULT '[]', kwargs jsonb DEFAULT '{}',
    schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    max_retries integer DEFAULT 0, retry_in text DEFAULT '30s',
    tbl regclass DEFAULT '@extschema@.queue', external boolean DEFAULT false,
    timeout text DEFAULT NULL, key text DEFAULT NULL, backoff text DEFAULT NULL,
    retry_max text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_task_wrapper';
COMMENT ON FUNCTION pq_put_task(text, text, jsonb, jsonb, text, text, integer, text, regclass, boolean, text, text, text, text) IS
'Enqueues a task calling a registered SQL function, checked now (timeout: this task''s limit, default pq.task_timeout); with external => true, for a client handler (Python, Rust); key: a unique job as in pq_put; backoff => ''exponential'': retry after retry_in, then twice that, ... up to retry_max (default ''1h''), with jitter. Example: SELECT pq_put_task(''default'', ''eat(text)'', ''["Cox"]'', max_retries => 2)';

CREATE FUNCTION pq_work(
    queue text, burst boolean DEFAULT true, timeout interval DEFAULT '1s',
    max_jobs integer DEFAULT NULL, tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, function text, outcome text, attempt integer, sqlstate text, message text)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_work_wrapper';
COMMENT ON FUNCTION pq_work(text, boolean, interval, integer, regclass) IS
'Performs ready SQL tasks in this transaction, one subtransaction each. Example: SELECT * FROM pq_work(''default'')';

CREATE FUNCTION pq_requeue(id bigint, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_requeue_wrapper';
COMMENT ON FUNCTION pq_requeue(bigint, regclass) IS
'Puts a failed task job back in its queue. Example: SELECT pq_requeue(id) FROM pq_failed';

CREATE FUNCTION pq_task_failed(id bigint, sqlstate text, message text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS text LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_task_failed_wrapper';
COMMENT ON FUNCTION pq_task_failed(bigint, text, text, regclass) IS
'For client workers: records that a task job claimed in this transaction failed; retries or fails it as pq_work does and returns ''retry'' or ''failed''. Example: SELECT pq_task_failed(42, ''P0001'', ''no apples'')';

-- Commits after each job, so a long run never holds every claimed job until one final
-- commit. A procedure that commits cannot have a SET clause, so every name and operator here
-- is schema-qualified instead.
CREATE PROCEDURE pq_work_loop(
    queue text, max_jobs integer DEFAULT NULL, burst boolean DEFAULT true,
    timeout interval DEFAULT '1s', tbl regclass DEFAULT '@extschema@.queue')
LANGUAGE plpgsql
AS $proc$
DECLARE
    performed integer := 0;
    got integer;
BEGIN
    -- pq_work checks the other arguments; a count below 1 would otherwise do nothing silently.
    IF max_jobs OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_jobs must be at least 1, got %', max_jobs
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass a count such as 100, or leave it out to work until the queue is empty';
    END IF;
    LOOP
        EXIT WHEN max_jobs IS NOT NULL AND performed OPERATOR(pg_catalog.>=) max_jobs;
        SELECT pg_catalog.count(*) INTO got FROM @extschema@.pq_work(queue, burst, timeout, 1, tbl);
        EXIT WHEN got OPERATOR(pg_catalog.=) 0;
        performed := performed OPERATOR(pg_catalog.+) got;
        COMMIT;
    END LOOP;
END
$proc$;
COMMENT ON PROCEDURE pq_work_loop(text, integer, boolean, interval, regclass) IS
'Performs tasks, committing after each. Example: CALL pq_work_loop(''default'')';

-- A timestamptz written in job data, or NULL when it is not one: job data comes from producers,
-- and a bad value must not break the views that show failures.
CREATE FUNCTION pq_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION pq_timestamptz(text) IS
'The timestamptz in a text, or NULL if it is not one (for reading job data). Example: SELECT pq_timestamptz(data->>''failed_at'') FROM queue';

CREATE FUNCTION pq_failed(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, queue text, function text, retried integer, sqlstate text,
               message text, failed_at timestamptz, errors jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@.pq_queue_table(tbl);
    -- tbl is a regclass: formatted as its quoted, schema-qualified name, never raw text. Every
    -- field is read so that no payload a producer wrote can make this fail.
    RETURN QUERY EXECUTE format($q$
        SELECT q.id, q.q_name, q.data->>'function',
               CASE WHEN q.data->>'retried' ~ '^-?[0-9]{1,9}$' THEN (q.data->>'retried')::integer END,
               q.data->'errors'->-1->>'sqlstate', q.data->'errors'->-1->>'message',
               %s.pq_timestamptz(q.data->>'failed_at'),
               CASE WHEN jsonb_typeof(q.data->'errors') = 'array' THEN q.data->'errors' END
        FROM %s q
        WHERE q.dequeued_at IS NOT NULL AND q.data ? 'failed_at'
        ORDER BY q.id $q$, '@extschema@', tbl);
END
$fn$;
COMMENT ON FUNCTION pq_failed(regclass) IS
'Task jobs that failed for good, with their last error. Example: SELECT * FROM pq_failed(''jobs'')';

CREATE VIEW pq_failed WITH (security_invoker = true) AS SELECT * FROM @extschema@.pq_failed();
COMMENT ON VIEW pq_failed IS 'Task jobs that failed for good, with their last error';
GRANT SELECT ON pq_failed TO PUBLIC;

-- The task registry: only registered functions ever run as tasks, whoever enqueued them.
CREATE FUNCTION pq_register_task(function regprocedure)
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_register_task_wrapper';
COMMENT ON FUNCTION pq_register_task(regprocedure) IS
'Registers a function as a task (its owner or a superuser only); true if it was not registered yet. Example: SELECT pq_register_task(''eat(text)'')';

CREATE FUNCTION pq_unregister_task(function regprocedure)
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_unregister_task_wrapper';
COMMENT ON FUNCTION pq_unregister_task(regprocedure) IS
'Unregisters a task function (its owner or a superuser only); true if it was registered. Example: SELECT pq_unregister_task(''eat(text)'')';

CREATE VIEW pq_tasks AS
SELECT t.function, p.proowner::regrole AS owner, t.registered_by, t.registered_at
FROM @extschema@.pq_registered_tasks t
JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.function::pg_catalog.oid
ORDER BY t.function::pg_catalog.text;
COMMENT ON VIEW pq_tasks IS 'Functions registered as tasks, with their owner';
GRANT SELECT ON pq_tasks TO PUBLIC;
